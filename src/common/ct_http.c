/*
 * ct_http.c - the one HTTP client path (see ct_http.h).
 */
#include "ct_http.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ct_log.h"
#include "ct_mem.h"

#define CT_HTTP__DEFAULT_TIMEOUT_MS 60000L
#define CT_HTTP__DEFAULT_CONNECT_MS 10000L
#define CT_HTTP__DEFAULT_BACKOFF_MS 500u
#define CT_HTTP__DEFAULT_BACKOFF_MAX_MS 5000u
#define CT_HTTP__DEFAULT_DEADLINE_MS 120000L
#define CT_HTTP__RETRY_AFTER_SANE_S 60 /* a longer Retry-After is no hint we follow */
#define CT_HTTP__USER_AGENT "coco-trust/0.1"

static pthread_once_t ct_http__once = PTHREAD_ONCE_INIT;
static void ct_http__global_init(void) { (void)curl_global_init(CURL_GLOBAL_DEFAULT); }

static uint64_t ct_http__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void ct_http__sleep_ms(uint64_t ms) {
  struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* --- options ---------------------------------------------------------------------------- */

/* The string members of ct_http_opts, so that a copy can own them. */
#define CT_HTTP__OPT_STRINGS(X)                                                                    \
  X(ca_file) X(ca_pem) X(client_cert_file) X(client_key_file) X(client_cert_pem)                   \
  X(client_key_pem) X(proxy) X(user_agent) X(log_tag)

static void ct_http__opts_free(ct_http_opts *o) {
#define CT_HTTP__FREE(f)                                                                           \
  if (o->f) {                                                                                      \
    ct_wipe((char *)o->f, strlen(o->f));                                                           \
    free((char *)o->f);                                                                            \
  }
  CT_HTTP__OPT_STRINGS(CT_HTTP__FREE)
#undef CT_HTTP__FREE
  memset(o, 0, sizeof *o);
}

/* Deep-copies `src` (NULL: defaults) into `dst` and fills in the defaults. */
static CT_RESULT ct_http__opts_copy(ct_http_opts *dst, const ct_http_opts *src, ct_err *err) {
  ct_http_opts none = {0};
  *dst = src ? *src : none;
#define CT_HTTP__DUP(f) dst->f = NULL;
  CT_HTTP__OPT_STRINGS(CT_HTTP__DUP)
#undef CT_HTTP__DUP
  if (src) {
#define CT_HTTP__DUP(f)                                                                            \
  if (src->f && !(dst->f = strdup(src->f))) goto nomem;
    CT_HTTP__OPT_STRINGS(CT_HTTP__DUP)
#undef CT_HTTP__DUP
  }
  if (dst->timeout_ms <= 0) dst->timeout_ms = CT_HTTP__DEFAULT_TIMEOUT_MS;
  if (dst->connect_timeout_ms <= 0)
    dst->connect_timeout_ms = dst->timeout_ms < CT_HTTP__DEFAULT_CONNECT_MS ? dst->timeout_ms
                                                                            : CT_HTTP__DEFAULT_CONNECT_MS;
  if (!dst->max_body) dst->max_body = CT_HTTP_DEFAULT_MAX_BODY;
  if (!dst->attempts) dst->attempts = 1;
  if (!dst->backoff_ms) dst->backoff_ms = CT_HTTP__DEFAULT_BACKOFF_MS;
  if (!dst->backoff_max_ms) dst->backoff_max_ms = CT_HTTP__DEFAULT_BACKOFF_MAX_MS;
  if (dst->deadline_ms <= 0) dst->deadline_ms = CT_HTTP__DEFAULT_DEADLINE_MS;
  return CT_OK;
nomem:
  ct_http__opts_free(dst);
  return ct_fail(err, CT_ENOMEM, "http: out of memory");
}

static const char *ct_http__method(const ct_http_req *r) { return r->method ? r->method : "GET"; }

static CT_RESULT ct_http__check_req(const ct_http_req *r, ct_err *err) {
  CT_ENSURE(r && r->url, err, CT_EINVAL, "http: request without a URL");
  CT_ENSURE(strnlen(r->url, CT_HTTP_URL_MAX + 1) <= CT_HTTP_URL_MAX, err, CT_ELIMIT,
            "http: URL longer than %d bytes", CT_HTTP_URL_MAX);
  CT_ENSURE(!strncasecmp(r->url, "http://", 7) || !strncasecmp(r->url, "https://", 8), err,
            CT_EINVAL, "http: %.300s: only http:// and https:// URLs are supported", r->url);
  const char *m = ct_http__method(r);
  size_t ml = strlen(m);
  CT_ENSURE(ml > 0 && ml <= 16 && strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == ml, err, CT_EINVAL,
            "http: malformed method \"%.20s\"", m);
  return CT_OK;
}

/* --- responses -------------------------------------------------------------------------- */

static void ct_http__resp_init(ct_http_resp *r, size_t max_body) {
  r->status = 0;
  r->cause[0] = 0;
  ct_buf_init(&r->body, max_body);
  ct_buf_init(&r->hdr__, CT_HTTP_HEADERS_MAX);
  r->nhdr__ = 0;
}

void ct_http_resp_free(ct_http_resp *r) {
  if (!r) return;
  ct_buf_free(&r->body);
  ct_buf_free(&r->hdr__);
  r->nhdr__ = 0;
}

int ct_http_resp_header_at(const ct_http_resp *r, size_t i, const char **name, const char **value) {
  if (!r || i >= r->nhdr__) return 0;
  const char *p = (const char *)r->hdr__.data;
  for (size_t k = 0; k < i; k++) {
    p += strlen(p) + 1;
    p += strlen(p) + 1;
  }
  *name = p;
  *value = p + strlen(p) + 1;
  return 1;
}

const char *ct_http_resp_header(const ct_http_resp *r, const char *name) {
  const char *n, *v;
  for (size_t i = 0; ct_http_resp_header_at(r, i, &n, &v); i++)
    if (!strcasecmp(n, name)) return v;
  return NULL;
}

/* --- one attempt ------------------------------------------------------------------------ */

typedef struct ct_http__xfer {
  ct_http_resp *resp;
  struct curl_slist *hdrs;
  bool body_over, hdr_over;
  char errbuf[CURL_ERROR_SIZE];
  /* Streaming (req->sink): decided on the attempt's first body bytes, from the status. */
  CURL *h;
  ct_http_sink_fn sink;
  void *sink_ud;
  size_t max_body, sunk;
  int to_sink;            /* -1: not decided yet, 0: buffer, 1: sink */
  bool sink_failed;
  ct_err sink_err;
} ct_http__xfer;

static size_t ct_http__on_body(char *p, size_t sz, size_t n, void *ud) {
  ct_http__xfer *x = ud;
  size_t len = sz * n;
  ct_err e;
  if (x->to_sink < 0) {
    long status = 0;
    x->to_sink = x->sink && curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
                 status >= 200 && status <= 299;
  }
  if (x->to_sink) {
    if (len > x->max_body - x->sunk) {
      x->body_over = true;
      return 0;
    }
    if (x->sink(x->sink_ud, (const uint8_t *)p, len, &x->sink_err) != CT_OK) {
      x->sink_failed = true;
      return 0;
    }
    x->sunk += len;
    return len;
  }
  if (ct_buf_append(&x->resp->body, p, len, &e) != CT_OK) {
    x->body_over = true;
    return 0;
  }
  return len;
}

static size_t ct_http__on_header(char *p, size_t sz, size_t n, void *ud) {
  ct_http__xfer *x = ud;
  ct_http_resp *r = x->resp;
  size_t len = sz * n;
  /* A new status line starts a new header block (after 100 Continue, a proxy CONNECT, ...):
   * only the final response's headers are kept. */
  if (len >= 5 && !memcmp(p, "HTTP/", 5)) {
    ct_buf_free(&r->hdr__);
    ct_buf_init(&r->hdr__, CT_HTTP_HEADERS_MAX);
    r->nhdr__ = 0;
    return len;
  }
  while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r')) len--;
  const char *colon = memchr(p, ':', len);
  if (!colon || colon == p) return sz * n; /* blank line, folded continuation: not kept */
  size_t nl = (size_t)(colon - p), vs = nl + 1;
  while (vs < len && (p[vs] == ' ' || p[vs] == '\t')) vs++;
  size_t ve = len;
  while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t')) ve--;
  static const char nul = 0;
  ct_err e;
  if (ct_buf_append(&r->hdr__, p, nl, &e) || ct_buf_append(&r->hdr__, &nul, 1, &e) ||
      ct_buf_append(&r->hdr__, p + vs, ve - vs, &e) || ct_buf_append(&r->hdr__, &nul, 1, &e)) {
    x->hdr_over = true;
    return 0;
  }
  r->nhdr__++;
  return sz * n;
}

static void ct_http__xfer_clear(ct_http__xfer *x) {
  for (struct curl_slist *s = x->hdrs; s; s = s->next) ct_wipe(s->data, strlen(s->data));
  curl_slist_free_all(x->hdrs);
  x->hdrs = NULL;
}

#define CT_HTTP__SET(h, opt, val)                                                                  \
  do {                                                                                             \
    if (curl_easy_setopt((h), (opt), (val)) != CURLE_OK) goto setopt_failed;                       \
  } while (0)

/* Configures `h` (fresh, or reused with the same opts) for one attempt of `r`. */
static CT_RESULT ct_http__setup(CURL *h, const ct_http_opts *o, const ct_http_req *r,
                                ct_http__xfer *x, long timeout_ms, ct_err *err) {
  const char *m = ct_http__method(r);
  x->body_over = x->hdr_over = false;
  x->errbuf[0] = 0;
  x->h = h;
  x->sink = r->sink;
  x->sink_ud = r->sink_ud;
  x->max_body = o->max_body;
  x->sunk = 0;
  x->to_sink = -1;
  x->sink_failed = false;
  ct_err_clear(&x->sink_err);
  for (const char *const *l = r->headers; l && *l; l++) {
    struct curl_slist *n = curl_slist_append(x->hdrs, *l);
    CT_ENSURE(n, err, CT_ENOMEM, "http: out of memory");
    x->hdrs = n;
  }
  CT_HTTP__SET(h, CURLOPT_URL, r->url);
  CT_HTTP__SET(h, CURLOPT_PROTOCOLS_STR, "http,https");
  CT_HTTP__SET(h, CURLOPT_NOSIGNAL, 1L);
  CT_HTTP__SET(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  CT_HTTP__SET(h, CURLOPT_ERRORBUFFER, x->errbuf);
  CT_HTTP__SET(h, CURLOPT_TIMEOUT_MS, timeout_ms);
  CT_HTTP__SET(h, CURLOPT_CONNECTTIMEOUT_MS,
               o->connect_timeout_ms < timeout_ms ? o->connect_timeout_ms : timeout_ms);
  CT_HTTP__SET(h, CURLOPT_USERAGENT, o->user_agent ? o->user_agent : CT_HTTP__USER_AGENT);
  CT_HTTP__SET(h, CURLOPT_WRITEFUNCTION, ct_http__on_body);
  CT_HTTP__SET(h, CURLOPT_WRITEDATA, x);
  CT_HTTP__SET(h, CURLOPT_HEADERFUNCTION, ct_http__on_header);
  CT_HTTP__SET(h, CURLOPT_HEADERDATA, x);
  CT_HTTP__SET(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_body);
  CT_HTTP__SET(h, CURLOPT_HTTPHEADER, x->hdrs);
  if (o->no_proxy) CT_HTTP__SET(h, CURLOPT_NOPROXY, "*");
  else if (o->proxy) CT_HTTP__SET(h, CURLOPT_PROXY, o->proxy);
  if (o->ca_pem) {
    struct curl_blob b = {.data = (void *)o->ca_pem, .len = strlen(o->ca_pem), .flags = CURL_BLOB_COPY};
    CT_HTTP__SET(h, CURLOPT_CAINFO_BLOB, &b);
  } else if (o->ca_file) {
    CT_HTTP__SET(h, CURLOPT_CAINFO, o->ca_file);
  }
  if (o->insecure) {
    CT_HTTP__SET(h, CURLOPT_SSL_VERIFYPEER, 0L);
    CT_HTTP__SET(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (o->client_cert_pem) {
    struct curl_blob b = {.data = (void *)o->client_cert_pem, .len = strlen(o->client_cert_pem),
                          .flags = CURL_BLOB_COPY};
    CT_HTTP__SET(h, CURLOPT_SSLCERT_BLOB, &b);
    CT_HTTP__SET(h, CURLOPT_SSLCERTTYPE, "PEM");
  } else if (o->client_cert_file) {
    CT_HTTP__SET(h, CURLOPT_SSLCERT, o->client_cert_file);
  }
  if (o->client_key_pem) {
    struct curl_blob b = {.data = (void *)o->client_key_pem, .len = strlen(o->client_key_pem),
                          .flags = CURL_BLOB_COPY};
    CT_HTTP__SET(h, CURLOPT_SSLKEY_BLOB, &b);
    CT_HTTP__SET(h, CURLOPT_SSLKEYTYPE, "PEM");
  } else if (o->client_key_file) {
    CT_HTTP__SET(h, CURLOPT_SSLKEY, o->client_key_file);
  }
  /* A reused handle remembers the previous request's method and body: set all of them. */
  CT_HTTP__SET(h, CURLOPT_CUSTOMREQUEST, (char *)NULL);
  CT_HTTP__SET(h, CURLOPT_NOBODY, 0L);
  if (r->body || !strcmp(m, "POST")) {
    CT_HTTP__SET(h, CURLOPT_POSTFIELDS, r->body ? r->body : "");
    CT_HTTP__SET(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(r->body ? r->body_len : 0));
    if (strcmp(m, "POST")) CT_HTTP__SET(h, CURLOPT_CUSTOMREQUEST, m);
  } else {
    CT_HTTP__SET(h, CURLOPT_POSTFIELDS, (char *)NULL);
    CT_HTTP__SET(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
    CT_HTTP__SET(h, CURLOPT_HTTPGET, 1L);
    if (!strcmp(m, "HEAD")) CT_HTTP__SET(h, CURLOPT_NOBODY, 1L);
    else if (strcmp(m, "GET")) CT_HTTP__SET(h, CURLOPT_CUSTOMREQUEST, m);
  }
  return CT_OK;
setopt_failed:
  return ct_fail(err, CT_EINTERNAL, "http: %s %.300s: libcurl refused an option", m, r->url);
}

typedef enum {
  CT_HTTP__GOT_RESPONSE,
  CT_HTTP__TIMEOUT,
  CT_HTTP__TRANSPORT,
  CT_HTTP__TOO_BIG,
  CT_HTTP__SINK_FAILED, /* the caller's sink refused the body: its code and message */
} ct_http__outcome;

/* Classifies a finished attempt and records the cause. */
static ct_http__outcome ct_http__finish(CURL *h, CURLcode rc, ct_http__xfer *x, const ct_http_opts *o) {
  ct_http_resp *r = x->resp;
  r->status = 0;
  long status = 0;
  if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK) r->status = status;
  if (rc == CURLE_OK) return CT_HTTP__GOT_RESPONSE;
  if (x->sink_failed) {
    snprintf(r->cause, sizeof r->cause, "%.200s",
             x->sink_err.msg[0] ? x->sink_err.msg : "the sink refused the body");
    return CT_HTTP__SINK_FAILED;
  }
  if (x->body_over || rc == CURLE_FILESIZE_EXCEEDED) {
    snprintf(r->cause, sizeof r->cause, "response body larger than the %zu-byte limit", o->max_body);
    return CT_HTTP__TOO_BIG;
  }
  if (x->hdr_over) {
    snprintf(r->cause, sizeof r->cause, "response headers larger than %u bytes", CT_HTTP_HEADERS_MAX);
    return CT_HTTP__TOO_BIG;
  }
  snprintf(r->cause, sizeof r->cause, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
  return rc == CURLE_OPERATION_TIMEDOUT ? CT_HTTP__TIMEOUT : CT_HTTP__TRANSPORT;
}

/* The delay before the next attempt, or -1 when this outcome is final. */
static long ct_http__retry_delay(const ct_http_opts *o, ct_http__outcome oc, const ct_http_resp *r,
                                 const ct_http__xfer *x, unsigned attempt) {
  if (attempt >= o->attempts || x->sunk) return -1;
  bool retry = false;
  switch (oc) {
  case CT_HTTP__GOT_RESPONSE:
    retry = (r->status == 429 && (o->retry_on & CT_HTTP_RETRY_429)) ||
            (r->status >= 500 && r->status <= 599 && (o->retry_on & CT_HTTP_RETRY_5XX));
    break;
  case CT_HTTP__TIMEOUT:
    retry = o->retry_on & (CT_HTTP_RETRY_TIMEOUT | CT_HTTP_RETRY_TRANSPORT);
    break;
  case CT_HTTP__TRANSPORT:
    retry = o->retry_on & CT_HTTP_RETRY_TRANSPORT;
    break;
  case CT_HTTP__TOO_BIG:
  case CT_HTTP__SINK_FAILED:
    break;
  }
  if (!retry) return -1;
  uint64_t d = o->backoff_ms;
  for (unsigned i = 1; i < attempt && d < o->backoff_max_ms; i++) d *= 2;
  if (d > o->backoff_max_ms) d = o->backoff_max_ms;
  const char *ra = oc == CT_HTTP__GOT_RESPONSE ? ct_http_resp_header(r, "Retry-After") : NULL;
  if (ra && o->retry_after_max_ms) {
    char *end = NULL;
    long s = strtol(ra, &end, 10);
    if (end != ra && *end == 0 && s >= 0 && s <= CT_HTTP__RETRY_AFTER_SANE_S) {
      d = (uint64_t)s * 1000u;
      if (d > o->retry_after_max_ms) d = o->retry_after_max_ms;
    }
  }
  return (long)d;
}

static void ct_http__log_retry(const ct_http_opts *o, const ct_http_req *r, const ct_http_resp *resp,
                               unsigned attempt, long delay_ms) {
  char cause[300];
  if (resp->cause[0]) snprintf(cause, sizeof cause, "%s", resp->cause);
  else snprintf(cause, sizeof cause, "HTTP %ld", resp->status);
  ct_log(CT_LOG_WARN, o->log_tag ? o->log_tag : "http",
         "event=http_retry method=%s url=%.300s attempt=%u wait_ms=%ld cause=\"%s\"",
         ct_http__method(r), r->url, attempt, delay_ms, cause);
}

static CT_RESULT ct_http__fail(const ct_http_req *r, ct_http_resp *resp, ct_http__outcome oc,
                               const ct_http__xfer *x, ct_err *err) {
  ct_buf_free(&resp->body);
  char tries[40] = "";
  if (resp->attempts > 1) snprintf(tries, sizeof tries, " (after %u attempts)", resp->attempts);
  ct_status code = oc == CT_HTTP__TOO_BIG ? CT_ELIMIT : CT_EIO;
  /* The sink's own message in full (resp->cause holds only its first 200 bytes). */
  const char *cause = resp->cause;
  if (oc == CT_HTTP__SINK_FAILED && x->sink_err.code) {
    code = x->sink_err.code;
    cause = x->sink_err.msg;
  }
  return ct_fail(err, code, "%s %.300s: %s%s", ct_http__method(r), r->url, cause, tries);
}

/* --- synchronous ------------------------------------------------------------------------ */

struct ct_http_client {
  ct_http_opts o;
  CURL *h;
  ct_http__xfer x; /* lives as long as the handle, which points at its buffers */
};

CT_RESULT ct_http_client_new(const ct_http_opts *opts, ct_http_client **out, ct_err *err) {
  pthread_once(&ct_http__once, ct_http__global_init);
  ct_http_client *c = calloc(1, sizeof *c);
  CT_ENSURE(c, err, CT_ENOMEM, "http: out of memory");
  ct_status st = ct_http__opts_copy(&c->o, opts, err);
  if (st) {
    free(c);
    return st;
  }
  c->h = curl_easy_init();
  /* The in-memory cookie engine; curl_easy_reset keeps it and the cookies. */
  if (c->h && c->o.cookies && curl_easy_setopt(c->h, CURLOPT_COOKIEFILE, "") != CURLE_OK) {
    curl_easy_cleanup(c->h);
    c->h = NULL;
  }
  if (!c->h) {
    ct_http_client_free(c);
    return ct_fail(err, CT_ENOMEM, "http: cannot create a libcurl handle");
  }
  *out = c;
  return CT_OK;
}

void ct_http_client_free(ct_http_client *c) {
  if (!c) return;
  if (c->h) curl_easy_cleanup(c->h);
  ct_http__opts_free(&c->o);
  free(c);
}

CT_RESULT ct_http_do(ct_http_client *c, const ct_http_req *req, ct_http_resp *resp, ct_err *err) {
  memset(resp, 0, sizeof *resp);
  CT_GUARD(ct_http__check_req(req, err));
  ct_http__xfer *x = &c->x;
  x->resp = resp;
  for (unsigned attempt = 1;; attempt++) {
    ct_http_resp_free(resp);
    ct_http__resp_init(resp, c->o.max_body);
    resp->attempts = attempt;
    /* The handle is reused as it is (not reset): it keeps its connection and its cookies. */
    ct_status st = ct_http__setup(c->h, &c->o, req, x, c->o.timeout_ms, err);
    if (st) {
      ct_http__xfer_clear(x);
      ct_http_resp_free(resp);
      return st;
    }
    CURLcode rc = curl_easy_perform(c->h);
    ct_http__xfer_clear(x);
    ct_http__outcome oc = ct_http__finish(c->h, rc, x, &c->o);
    long delay = ct_http__retry_delay(&c->o, oc, resp, x, attempt);
    if (delay < 0) {
      if (oc == CT_HTTP__GOT_RESPONSE) return CT_OK;
      return ct_http__fail(req, resp, oc, x, err);
    }
    ct_http__log_retry(&c->o, req, resp, attempt, delay);
    ct_http__sleep_ms((uint64_t)delay);
  }
}

CT_RESULT ct_http_call(const ct_http_opts *opts, const ct_http_req *req, ct_http_resp *resp,
                       ct_err *err) {
  ct_http_client *c = NULL;
  memset(resp, 0, sizeof *resp);
  CT_GUARD(ct_http_client_new(opts, &c, err));
  ct_status st = ct_http_do(c, req, resp, err);
  ct_http_client_free(c);
  return st;
}

/* --- asynchronous ----------------------------------------------------------------------- */

#define CT_HTTP__SOURCE_MAX 300

typedef struct ct_http__job {
  struct ct_http__job *next;
  ct_http_opts o;
  ct_http_req req;        /* points into the copies below */
  char *method, *url;
  char **hdr_lines;       /* NULL-terminated */
  uint8_t *body;
  size_t body_len;
  char source[CT_HTTP__SOURCE_MAX];
  ct_http_done_fn done;
  void *ud;
  uint64_t deadline, ready_at;
  unsigned attempt;
  CURL *h;
  ct_http__xfer x;
  ct_http_resp resp;
} ct_http__job;

struct ct_http_pool {
  ct_http_pool_opts o;
  pthread_t thread;
  pthread_mutex_t mu;
  CURLM *multi;
  ct_http__job *incoming, **incoming_tail; /* under mu */
  unsigned queued;                         /* under mu: submitted and not yet completed */
  bool stop;                               /* under mu */
  /* I/O thread only: */
  ct_http__job *waiting, *active;
};

static void ct_http__job_free(ct_http__job *j) {
  if (!j) return;
  if (j->h) curl_easy_cleanup(j->h);
  ct_http__xfer_clear(&j->x);
  ct_http_resp_free(&j->resp);
  ct_http__opts_free(&j->o);
  for (char **l = j->hdr_lines; l && *l; l++) {
    ct_wipe(*l, strlen(*l));
    free(*l);
  }
  free(j->hdr_lines);
  if (j->body) ct_wipe(j->body, j->body_len);
  free(j->body);
  free(j->method);
  free(j->url);
  free(j);
}

/* "scheme://host:port" of a URL, the default concurrency source. */
static CT_RESULT ct_http__source_of(const char *url, char *out, size_t cap, ct_err *err) {
  CURLU *u = curl_url();
  CT_ENSURE(u, err, CT_ENOMEM, "http: out of memory");
  char *scheme = NULL, *host = NULL, *port = NULL;
  ct_status st = CT_OK;
  if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
    st = ct_fail(err, CT_EINVAL, "http: %.300s: malformed URL", url);
  } else {
    int n = snprintf(out, cap, "%s://%s:%s", scheme, host, port);
    if (n < 0 || (size_t)n >= cap) st = ct_fail(err, CT_ELIMIT, "http: %.300s: host name too long", url);
  }
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return st;
}

static CT_RESULT ct_http__job_new(const ct_http_opts *opts, const ct_http_req *req,
                                  const char *source, ct_http__job **out, ct_err *err) {
  CT_GUARD(ct_http__check_req(req, err));
  ct_http__job *j = calloc(1, sizeof *j);
  CT_ENSURE(j, err, CT_ENOMEM, "http: out of memory");
  ct_status st = ct_http__opts_copy(&j->o, opts, err);
  if (st) {
    free(j);
    return st;
  }
  if (source) {
    if (strlen(source) >= sizeof j->source) {
      st = ct_fail(err, CT_ELIMIT, "http: source name too long");
      goto fail;
    }
    strcpy(j->source, source);
  } else {
    CT_GUARD_GOTO(st, ct_http__source_of(req->url, j->source, sizeof j->source, err), fail);
  }
  size_t nh = 0;
  while (req->headers && req->headers[nh]) nh++;
  j->method = strdup(ct_http__method(req));
  j->url = strdup(req->url);
  j->hdr_lines = calloc(nh + 1, sizeof *j->hdr_lines);
  CT_ENSURE_GOTO(st, j->method && j->url && j->hdr_lines, fail, err, CT_ENOMEM, "http: out of memory");
  for (size_t i = 0; i < nh; i++)
    CT_ENSURE_GOTO(st, (j->hdr_lines[i] = strdup(req->headers[i])), fail, err, CT_ENOMEM,
                   "http: out of memory");
  if (req->body) {
    j->body = malloc(req->body_len ? req->body_len : 1);
    CT_ENSURE_GOTO(st, j->body, fail, err, CT_ENOMEM, "http: out of memory");
    memcpy(j->body, req->body, req->body_len);
    j->body_len = req->body_len;
  }
  j->req = (ct_http_req){.method = j->method, .url = j->url,
                         .headers = (const char *const *)j->hdr_lines, .body = j->body,
                         .body_len = j->body_len, .sink = req->sink, .sink_ud = req->sink_ud};
  j->x.resp = &j->resp;
  *out = j;
  return CT_OK;
fail:
  ct_http__job_free(j);
  return st;
}

/* Runs the completion callback and releases the job (I/O thread). */
static void ct_http__complete(ct_http_pool *p, ct_http__job *j, ct_status st, const ct_err *e) {
  ct_err ok = {0};
  /* The slot is free before the callback runs, so that a caller woken by it can submit again. */
  pthread_mutex_lock(&p->mu);
  p->queued--;
  pthread_mutex_unlock(&p->mu);
  j->done(j->ud, st, &j->resp, st ? e : &ok);
  ct_http__job_free(j);
}

static void ct_http__complete_fail(ct_http_pool *p, ct_http__job *j, ct_status code, const char *why) {
  ct_err e;
  snprintf(j->resp.cause, sizeof j->resp.cause, "%s", why);
  ct_buf_free(&j->resp.body);
  ct_fail(&e, code, "%s %.300s: %s", j->method, j->url, why);
  ct_http__complete(p, j, code, &e);
}

static unsigned ct_http__active_for(const ct_http_pool *p, const char *source, unsigned *total) {
  unsigned n = 0, t = 0;
  for (const ct_http__job *a = p->active; a; a = a->next, t++)
    if (!strcmp(a->source, source)) n++;
  *total = t;
  return n;
}

/* Starts one attempt of `j` on the multi handle; on failure completes the job. */
static void ct_http__start(ct_http_pool *p, ct_http__job *j, uint64_t now) {
  ct_err e;
  ct_err_clear(&e);
  j->attempt++;
  ct_http_resp_free(&j->resp);
  ct_http__resp_init(&j->resp, j->o.max_body);
  j->resp.attempts = j->attempt;
  if (!j->h) j->h = curl_easy_init();
  if (!j->h) {
    ct_http__complete_fail(p, j, CT_ENOMEM, "cannot create a libcurl handle");
    return;
  }
  long left = (long)(j->deadline - now);
  long t = j->o.timeout_ms < left ? j->o.timeout_ms : left;
  if (ct_http__setup(j->h, &j->o, &j->req, &j->x, t, &e) != CT_OK ||
      curl_easy_setopt(j->h, CURLOPT_PRIVATE, j) != CURLE_OK ||
      curl_multi_add_handle(p->multi, j->h) != CURLM_OK) {
    ct_http__xfer_clear(&j->x);
    if (!e.code) ct_fail(&e, CT_EINTERNAL, "%s %.300s: libcurl refused the transfer", j->method, j->url);
    ct_http__complete(p, j, e.code, &e);
    return;
  }
  j->next = p->active;
  p->active = j;
}

/* Expires and starts waiting jobs; returns the poll timeout until the next job becomes due. */
static long ct_http__schedule(ct_http_pool *p, uint64_t now) {
  long wait = 1000;
  ct_http__job **pp = &p->waiting;
  while (*pp) {
    ct_http__job *j = *pp;
    if (now >= j->deadline) {
      *pp = j->next;
      char why[96];
      snprintf(why, sizeof why, "not completed within the %ld ms deadline%s", j->o.deadline_ms,
               j->attempt ? " (waiting to retry)" : " (waiting for a connection slot)");
      ct_http__complete_fail(p, j, CT_EIO, why);
      continue;
    }
    unsigned total = 0, mine = ct_http__active_for(p, j->source, &total);
    if (j->ready_at <= now && total < p->o.max_active && mine < p->o.max_per_source) {
      *pp = j->next;
      ct_http__start(p, j, now);
      continue;
    }
    /* A job waiting for a slot is woken by the completion that frees one; else by its timer. */
    uint64_t next = j->ready_at > now && j->ready_at < j->deadline ? j->ready_at : j->deadline;
    long due = (long)(next - now);
    if (due < wait) wait = due;
    pp = &j->next;
  }
  return wait;
}

static void ct_http__append_waiting(ct_http_pool *p, ct_http__job *j) {
  j->next = NULL;
  ct_http__job **pp = &p->waiting;
  while (*pp) pp = &(*pp)->next;
  *pp = j;
}

static void ct_http__on_done(ct_http_pool *p, CURL *h, CURLcode rc, uint64_t now) {
  ct_http__job *j = NULL;
  if (curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&j) != CURLE_OK || !j) return;
  curl_multi_remove_handle(p->multi, h);
  for (ct_http__job **pp = &p->active; *pp; pp = &(*pp)->next)
    if (*pp == j) {
      *pp = j->next;
      break;
    }
  ct_http__xfer_clear(&j->x);
  ct_http__outcome oc = ct_http__finish(h, rc, &j->x, &j->o);
  long delay = ct_http__retry_delay(&j->o, oc, &j->resp, &j->x, j->attempt);
  if (delay >= 0 && now + (uint64_t)delay < j->deadline) {
    ct_http__log_retry(&j->o, &j->req, &j->resp, j->attempt, delay);
    j->ready_at = now + (uint64_t)delay;
    ct_http__append_waiting(p, j);
    return;
  }
  if (oc == CT_HTTP__GOT_RESPONSE) {
    ct_http__complete(p, j, CT_OK, NULL);
  } else {
    ct_err e;
    ct_status st = ct_http__fail(&j->req, &j->resp, oc, &j->x, &e);
    ct_http__complete(p, j, st, &e);
  }
}

static void *ct_http__thread(void *arg) {
  ct_http_pool *p = arg;
  for (;;) {
    pthread_mutex_lock(&p->mu);
    ct_http__job *in = p->incoming;
    p->incoming = NULL;
    p->incoming_tail = &p->incoming;
    bool stop = p->stop;
    pthread_mutex_unlock(&p->mu);
    while (in) {
      ct_http__job *n = in->next;
      ct_http__append_waiting(p, in);
      in = n;
    }
    if (stop) break;
    long wait = ct_http__schedule(p, ct_http__now_ms());
    int running = 0;
    curl_multi_perform(p->multi, &running);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(p->multi, &left)))
      if (m->msg == CURLMSG_DONE) ct_http__on_done(p, m->easy_handle, m->data.result, ct_http__now_ms());
    /* Completions may have freed slots or queued retries: schedule again before sleeping. */
    long w2 = ct_http__schedule(p, ct_http__now_ms());
    if (w2 < wait) wait = w2;
    if (wait < 0) wait = 0;
    curl_multi_poll(p->multi, NULL, 0, (int)wait, NULL);
  }
  while (p->active) {
    ct_http__job *j = p->active;
    p->active = j->next;
    curl_multi_remove_handle(p->multi, j->h);
    ct_http__complete_fail(p, j, CT_EIO, "cancelled (HTTP pool shut down)");
  }
  while (p->waiting) {
    ct_http__job *j = p->waiting;
    p->waiting = j->next;
    ct_http__complete_fail(p, j, CT_EIO, "cancelled (HTTP pool shut down)");
  }
  return NULL;
}

CT_RESULT ct_http_pool_new(const ct_http_pool_opts *opts, ct_http_pool **out, ct_err *err) {
  pthread_once(&ct_http__once, ct_http__global_init);
  ct_http_pool *p = calloc(1, sizeof *p);
  CT_ENSURE(p, err, CT_ENOMEM, "http: out of memory");
  if (opts) p->o = *opts;
  if (!p->o.max_per_source) p->o.max_per_source = 4;
  if (!p->o.max_active) p->o.max_active = 32;
  if (!p->o.max_queued) p->o.max_queued = 1024;
  p->incoming_tail = &p->incoming;
  pthread_mutex_init(&p->mu, NULL);
  p->multi = curl_multi_init();
  if (!p->multi) {
    pthread_mutex_destroy(&p->mu);
    free(p);
    return ct_fail(err, CT_ENOMEM, "http: cannot create a libcurl multi handle");
  }
  if (pthread_create(&p->thread, NULL, ct_http__thread, p) != 0) {
    curl_multi_cleanup(p->multi);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return ct_fail(err, CT_EIO, "http: cannot start the I/O thread");
  }
  *out = p;
  return CT_OK;
}

void ct_http_pool_free(ct_http_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stop = true;
  pthread_mutex_unlock(&p->mu);
  curl_multi_wakeup(p->multi);
  pthread_join(p->thread, NULL);
  curl_multi_cleanup(p->multi);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

CT_RESULT ct_http_submit(ct_http_pool *p, const ct_http_opts *opts, const ct_http_req *req,
                         const char *source, ct_http_done_fn done, void *ud, ct_err *err) {
  CT_ENSURE(p && done, err, CT_EINVAL, "http: submit needs a pool and a completion callback");
  ct_http__job *j = NULL;
  CT_GUARD(ct_http__job_new(opts, req, source, &j, err));
  j->done = done;
  j->ud = ud;
  uint64_t now = ct_http__now_ms();
  j->deadline = now + (uint64_t)j->o.deadline_ms;
  j->ready_at = now;
  pthread_mutex_lock(&p->mu);
  bool full = p->queued >= p->o.max_queued, stopping = p->stop;
  if (!full && !stopping) {
    p->queued++;
    *p->incoming_tail = j;
    p->incoming_tail = &j->next;
  }
  pthread_mutex_unlock(&p->mu);
  if (full || stopping) {
    ct_status st = ct_fail(err, stopping ? CT_EIO : CT_ELIMIT, "%s %.300s: %s", j->method, j->url,
                           stopping ? "the HTTP pool is shutting down"
                                    : "too many HTTP requests queued");
    ct_http__job_free(j);
    return st;
  }
  curl_multi_wakeup(p->multi);
  return CT_OK;
}

typedef struct ct_http__waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  ct_status st;
  ct_err err;
  ct_http_resp resp;
} ct_http__waiter;

static void ct_http__wake(void *ud, ct_status st, ct_http_resp *resp, const ct_err *err) {
  ct_http__waiter *w = ud;
  pthread_mutex_lock(&w->mu);
  w->st = st;
  w->err = *err;
  w->resp = *resp; /* moves the buffers: the job must not free them */
  memset(resp, 0, sizeof *resp);
  w->done = true;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

CT_RESULT ct_http_pool_do(ct_http_pool *p, const ct_http_opts *opts, const ct_http_req *req,
                          const char *source, ct_http_resp *resp, ct_err *err) {
  memset(resp, 0, sizeof *resp);
  ct_http__waiter w = {.done = false};
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  ct_status st = ct_http_submit(p, opts, req, source, ct_http__wake, &w, err);
  if (st == CT_OK) {
    pthread_mutex_lock(&w.mu);
    while (!w.done) pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    *resp = w.resp;
    st = w.st;
    if (st && err) *err = w.err;
  }
  pthread_cond_destroy(&w.cv);
  pthread_mutex_destroy(&w.mu);
  return st;
}
