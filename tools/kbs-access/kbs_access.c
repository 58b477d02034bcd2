/*
 * kbs-access - the pattern's kbs-access demo: a small web page in a confidential pod that shows
 * whether attestation succeeded and the secret the KBS released, obtained through the CDH API
 * (http://127.0.0.1:8006/cdh/resource/...), masked until revealed.
 *
 *   kbs-access [--listen HOST:PORT] [--cdh-url URL] [--resource REPO/TYPE/TAG] [--refresh SECONDS]
 *
 *   GET  /          the page (status; the secret as dots with its length)
 *   POST /reveal    the page with the secret shown
 *   POST /refresh   fetch again now
 *   GET  /healthz   200 "ok" while the server runs (liveness; says nothing about attestation)
 *   GET  /status    {"attested":bool,"detail":"...","bytes":N,"fetched_at":"..."} (no secret)
 *
 * A fetcher thread talks to the CDH (at start, every --refresh seconds, and on /refresh); request
 * handlers only read its last result, so no request waits on the network. The secret lives only
 * in memory, wiped when replaced, and never reaches the log. Pages carry a strict CSP and
 * Cache-Control: no-store.
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_http.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_mem.h"

#define KA_SECRET_MAX (64u << 10)
#define KA_PAGE_MAX (512u << 10)

typedef struct ka_state {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  bool stop, kick, fetched;
  bool attested;
  char detail[768];     /* status text (CDH's refusal, transport error); never secret */
  uint8_t *secret;      /* released bytes, or NULL */
  size_t secret_len;
  char fetched_at[32];
  unsigned fetches;
  /* configuration */
  char url[2048];       /* <cdh>/cdh/resource/<repo>/<type>/<tag> */
  char resource[512];
  unsigned refresh_s;
} ka_state;

static void ka__usage(void) {
  fprintf(stderr, "usage: kbs-access [--listen HOST:PORT] [--cdh-url URL] [--resource REPO/TYPE/TAG] "
                  "[--refresh SECONDS]\n");
}

/* --- the fetcher -------------------------------------------------------------------------------- */

static void ka__fetch_once(ka_state *s) {
  ct_http_opts o = {.timeout_ms = 30000, .max_body = KA_SECRET_MAX, .no_proxy = 1, .log_tag = "kbs-access"};
  ct_http_req rq = {.method = "GET", .url = s->url};
  ct_http_resp r = {0};
  ct_err err = {0};
  ct_status st = ct_http_call(&o, &rq, &r, &err);
  bool ok = st == CT_OK && r.status == 200;
  char detail[768];
  uint8_t *secret = NULL;
  size_t len = 0;
  if (ok) {
    secret = ct_buf_take(&r.body, &len);
    snprintf(detail, sizeof detail, "the KBS released %s after attestation", s->resource);
  } else if (st) {
    snprintf(detail, sizeof detail, "the confidential data hub cannot be reached: %.300s", err.msg);
  } else {
    /* the CDH's refusal text names the KBS's reason (PolicyDeny, not found, ...) */
    size_t n = r.body.len < 160 ? r.body.len : 160;
    char body[161] = "";
    for (size_t i = 0; i < n; i++) body[i] = (r.body.data[i] >= 0x20 && r.body.data[i] < 0x7f) ? (char)r.body.data[i] : ' ';
    body[n] = '\0';
    snprintf(detail, sizeof detail, "the KBS did not release %s (HTTP %ld): %s", s->resource, r.status, body);
  }
  if (r.body.data) ct_wipe(r.body.data, r.body.len);
  ct_http_resp_free(&r);
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  pthread_mutex_lock(&s->lock);
  if (s->secret) {
    ct_wipe(s->secret, s->secret_len);
    free(s->secret);
  }
  s->secret = secret;
  s->secret_len = len;
  s->attested = ok;
  s->fetched = true;
  s->fetches++;
  snprintf(s->detail, sizeof s->detail, "%s", detail);
  strftime(s->fetched_at, sizeof s->fetched_at, "%Y-%m-%dT%H:%M:%SZ", &tm);
  pthread_mutex_unlock(&s->lock);
  CT_LOG_INFO_("kbs-access", "fetch resource=%s attested=%s bytes=%zu", s->resource, ok ? "yes" : "no", len);
}

static void *ka__fetcher(void *ud) {
  ka_state *s = ud;
  for (;;) {
    ka__fetch_once(s);
    pthread_mutex_lock(&s->lock);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += s->refresh_s;
    while (!s->stop && !s->kick)
      if (pthread_cond_timedwait(&s->wake, &s->lock, &until) != 0) break;
    bool stop = s->stop;
    s->kick = false;
    pthread_mutex_unlock(&s->lock);
    if (stop) return NULL;
  }
}

/* --- the page ---------------------------------------------------------------------------------- */

static CT_RESULT ka__html_escape(ct_buf *b, const uint8_t *s, size_t n, ct_err *err) {
  for (size_t i = 0; i < n; i++) {
    switch (s[i]) {
      case '<': CT_GUARD(ct_buf_append_str(b, "&lt;", err)); break;
      case '>': CT_GUARD(ct_buf_append_str(b, "&gt;", err)); break;
      case '&': CT_GUARD(ct_buf_append_str(b, "&amp;", err)); break;
      case '"': CT_GUARD(ct_buf_append_str(b, "&quot;", err)); break;
      case '\'': CT_GUARD(ct_buf_append_str(b, "&#39;", err)); break;
      default: CT_GUARD(ct_buf_append(b, &s[i], 1, err));
    }
  }
  return CT_OK;
}

/* Text that is printable UTF-8 is shown as is; anything else as hex. */
static bool ka__printable(const uint8_t *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((s[i] < 0x20 && s[i] != '\n' && s[i] != '\t') || s[i] == 0x7f) return false;
  json_t *j = json_stringn((const char *)s, n);
  bool ok = j != NULL;
  json_decref(j);
  return ok;
}

static CT_RESULT ka__page(ka_state *s, bool reveal, ct_buf *b, ct_err *err) {
  pthread_mutex_lock(&s->lock);
  ct_status st = ct_buf_printf(
      b, err,
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<title>kbs-access</title><style>"
      "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}"
      ".ok{color:#116329}.bad{color:#a40e26}code,pre{background:#f2f4f7;padding:.2rem .4rem;border-radius:4px}"
      "pre{padding:1rem;white-space:pre-wrap;word-break:break-all}button{font-size:1rem;padding:.4rem 1rem}"
      "form{display:inline}</style></head><body>\n"
      "<h1>Confidential Containers: kbs-access</h1>\n"
      "<p>Resource <code>kbs:///%s</code>, fetched through the confidential data hub.</p>\n",
      s->resource);
  if (!st && !s->fetched) {
    st = ct_buf_append_str(b, "<p id=\"status\" class=\"bad\" data-attested=\"pending\">Attestation in progress...</p>\n", err);
  } else if (!st) {
    st = ct_buf_printf(b, err, "<p id=\"status\" class=\"%s\" data-attested=\"%s\"><strong>%s</strong>: ",
                       s->attested ? "ok" : "bad", s->attested ? "yes" : "no",
                       s->attested ? "Attestation succeeded" : "Not attested");
    if (!st) st = ka__html_escape(b, (const uint8_t *)s->detail, strlen(s->detail), err);
    if (!st) st = ct_buf_printf(b, err, " <small>(%s)</small></p>\n", s->fetched_at);
  }
  if (!st && s->secret) {
    if (reveal) {
      st = ct_buf_append_str(b, "<h2>Secret</h2>\n<pre id=\"secret\" data-revealed=\"yes\">", err);
      if (!st && ka__printable(s->secret, s->secret_len)) {
        st = ka__html_escape(b, s->secret, s->secret_len, err);
      } else if (!st) {
        char *hex = NULL;
        st = ct_hex_encode(s->secret, s->secret_len, &hex, err);
        if (!st) st = ct_buf_printf(b, err, "(binary, hex) %s", hex);
        if (hex) {
          ct_wipe(hex, strlen(hex));
          free(hex);
        }
      }
      if (!st) st = ct_buf_append_str(b, "</pre>\n<form method=\"get\" action=\"/\"><button id=\"hide\">Hide</button></form>\n", err);
    } else {
      st = ct_buf_printf(b, err,
                         "<h2>Secret</h2>\n<pre id=\"secret\" data-revealed=\"no\">%.*s</pre>"
                         "<p>%zu bytes, masked.</p>\n"
                         "<form method=\"post\" action=\"/reveal\"><button id=\"reveal\">Reveal</button></form>\n",
                         (int)(s->secret_len < 32 ? s->secret_len : 32),
                         "********************************", s->secret_len);
    }
  }
  pthread_mutex_unlock(&s->lock);
  if (!st)
    st = ct_buf_append_str(b, " <form method=\"post\" action=\"/refresh\"><button id=\"refresh\">Fetch again</button></form>\n"
                              "</body></html>\n", err);
  return st;
}

/* For fixed texts into a page buffer: a failure only shortens the reply. */
static void ka__text(ct_buf *b, const char *s) {
  ct_err ignored;
  if (ct_buf_append_str(b, s, &ignored) != CT_OK) return;
}

static void ka__reply(struct evhttp_request *req, int code, const char *type, const ct_buf *b, bool secret) {
  struct evkeyvalq *h = evhttp_request_get_output_headers(req);
  evhttp_add_header(h, "Content-Type", type);
  evhttp_add_header(h, "Cache-Control", "no-store");
  evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
  evhttp_add_header(h, "X-Frame-Options", "DENY");
  evhttp_add_header(h, "Referrer-Policy", "no-referrer");
  evhttp_add_header(h, "Content-Security-Policy",
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'");
  struct evbuffer *out = evbuffer_new();
  if (out && b->len) evbuffer_add(out, b->data, b->len);
  evhttp_send_reply(req, code, code == 200 ? "OK" : code == 303 ? "See Other" : "Error", out);
  if (out) evbuffer_free(out);
  (void)secret; /* the evbuffer copy is freed by libevent; the page buffer is wiped by the caller */
}

static void ka__handle(struct evhttp_request *req, void *ud) {
  ka_state *s = ud;
  const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
  const char *path = u ? evhttp_uri_get_path(u) : NULL;
  enum evhttp_cmd_type m = evhttp_request_get_command(req);
  ct_buf b;
  ct_buf_init(&b, KA_PAGE_MAX);
  ct_err err = {0};
  if (!path) path = "/";
  if (!strcmp(path, "/healthz") && m == EVHTTP_REQ_GET) {
    ka__text(&b, "ok\n");
    ka__reply(req, 200, "text/plain; charset=utf-8", &b, false);
  } else if (!strcmp(path, "/status") && m == EVHTTP_REQ_GET) {
    pthread_mutex_lock(&s->lock);
    json_t *j = json_pack("{s:b, s:s, s:I, s:s, s:I}", "attested", s->attested, "detail", s->detail, "bytes",
                          (json_int_t)s->secret_len, "fetched_at", s->fetched_at, "fetches", (json_int_t)s->fetches);
    pthread_mutex_unlock(&s->lock);
    char *txt = NULL;
    if (j && ct_json_dump(j, &txt, &err) == CT_OK) ka__text(&b, txt);
    free(txt);
    json_decref(j);
    ka__reply(req, 200, "application/json", &b, false);
  } else if ((!strcmp(path, "/") && m == EVHTTP_REQ_GET) || (!strcmp(path, "/reveal") && m == EVHTTP_REQ_POST)) {
    if (ka__page(s, m == EVHTTP_REQ_POST, &b, &err) == CT_OK) {
      ka__reply(req, 200, "text/html; charset=utf-8", &b, true);
    } else {
      ct_buf_reset(&b);
      ka__text(&b, "page too large\n");
      ka__reply(req, 500, "text/plain; charset=utf-8", &b, false);
    }
  } else if (!strcmp(path, "/refresh") && m == EVHTTP_REQ_POST) {
    pthread_mutex_lock(&s->lock);
    s->kick = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Location", "/");
    ka__reply(req, 303, "text/plain; charset=utf-8", &b, false);
  } else {
    ka__text(&b, "not found\n");
    ka__reply(req, 404, "text/plain; charset=utf-8", &b, false);
  }
  ct_buf_free_secret(&b);
}

/* --- main -------------------------------------------------------------------------------------- */

static void ka__on_signal(evutil_socket_t fd, short what, void *ud) {
  (void)fd;
  (void)what;
  event_base_loopbreak(ud);
}

static bool ka__valid_resource(const char *r) {
  int segs = 1;
  if (!*r || r[0] == '/' || strlen(r) > 300) return false;
  for (const char *p = r; *p; p++) {
    if (*p == '/') {
      if (p[1] == '/' || p[1] == '\0') return false;
      segs++;
    } else if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                 *p == '_' || *p == '.')) {
      return false;
    }
  }
  return segs == 3 && !strstr(r, "..");
}

int main(int argc, char **argv) {
  const char *listen = "0.0.0.0:5000", *cdh = "http://127.0.0.1:8006", *resource = "default/kbsres1/key3";
  unsigned refresh = 30;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    const char *eq = strchr(a, '=');
    char name[64];
    if (eq && !strncmp(a, "--", 2) && (size_t)(eq - a) < sizeof name) {
      snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
      v = eq + 1;
      a = name;
    } else if (i + 1 < argc && !strncmp(a, "--", 2) && strcmp(a, "--help") != 0) {
      v = argv[++i];
    }
    if (!v) {
      ka__usage();
      return 2;
    }
    if (!strcmp(a, "--listen")) listen = v;
    else if (!strcmp(a, "--cdh-url")) cdh = v;
    else if (!strcmp(a, "--resource")) resource = v;
    else if (!strcmp(a, "--refresh")) {
      char *end = NULL;
      unsigned long n = strtoul(v, &end, 10);
      if (!end || *end || n < 1 || n > 86400) {
        fprintf(stderr, "kbs-access: --refresh needs 1..86400 seconds\n");
        return 2;
      }
      refresh = (unsigned)n;
    } else {
      ka__usage();
      return 2;
    }
  }
  ct_log_init_from_env();
  if (!ka__valid_resource(resource)) {
    fprintf(stderr, "kbs-access: --resource \"%.64s\" is not REPO/TYPE/TAG\n", resource);
    return 2;
  }
  if (strncmp(cdh, "http://", 7) != 0 && strncmp(cdh, "https://", 8) != 0) {
    fprintf(stderr, "kbs-access: --cdh-url must be an http(s) URL\n");
    return 2;
  }
  char host[256];
  const char *colon = strrchr(listen, ':');
  unsigned long port = colon ? strtoul(colon + 1, NULL, 10) : 0;
  if (!colon || (size_t)(colon - listen) >= sizeof host || port > 65535) {
    fprintf(stderr, "kbs-access: --listen needs HOST:PORT\n");
    return 2;
  }
  snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);

  static ka_state s;
  pthread_mutex_init(&s.lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_cond_init(&s.wake, &ca);
  s.refresh_s = refresh;
  snprintf(s.resource, sizeof s.resource, "%s", resource);
  size_t cl = strlen(cdh);
  while (cl && cdh[cl - 1] == '/') cl--;
  if ((size_t)snprintf(s.url, sizeof s.url, "%.*s/cdh/resource/%s", (int)cl, cdh, resource) >= sizeof s.url) {
    fprintf(stderr, "kbs-access: --cdh-url is too long\n");
    return 2;
  }
  snprintf(s.detail, sizeof s.detail, "not fetched yet");

  signal(SIGPIPE, SIG_IGN);
  struct event_base *base = event_base_new();
  struct evhttp *http = base ? evhttp_new(base) : NULL;
  if (!http) {
    fprintf(stderr, "kbs-access: out of memory\n");
    return 1;
  }
  evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
  evhttp_set_max_body_size(http, 4096);
  evhttp_set_max_headers_size(http, 16 << 10);
  evhttp_set_timeout(http, 30);
  evhttp_set_gencb(http, ka__handle, &s);
  struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(http, host, (uint16_t)port);
  if (!bs) {
    fprintf(stderr, "kbs-access: cannot listen on %s\n", listen);
    return 1;
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl);
  unsigned actual = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  struct event *sigint = evsignal_new(base, SIGINT, ka__on_signal, base);
  struct event *sigterm = evsignal_new(base, SIGTERM, ka__on_signal, base);
  if (!sigint || !sigterm || event_add(sigint, NULL) || event_add(sigterm, NULL)) {
    fprintf(stderr, "kbs-access: cannot install signal handlers\n");
    return 1;
  }
  pthread_t fetcher;
  if (pthread_create(&fetcher, NULL, ka__fetcher, &s) != 0) {
    fprintf(stderr, "kbs-access: cannot start the fetcher thread\n");
    return 1;
  }
  printf("kbs-access: listening on %s:%u\n", host, actual);
  fflush(stdout);
  event_base_dispatch(base);

  pthread_mutex_lock(&s.lock);
  s.stop = true;
  pthread_cond_signal(&s.wake);
  pthread_mutex_unlock(&s.lock);
  pthread_join(fetcher, NULL);
  if (s.secret) {
    ct_wipe(s.secret, s.secret_len);
    free(s.secret);
  }
  event_free(sigint);
  event_free(sigterm);
  evhttp_free(http);
  event_base_free(base);
  return 0;
}
