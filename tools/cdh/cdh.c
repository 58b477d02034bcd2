/*
 * cdh - the guest agent: attestation agent plus confidential data hub in one daemon.
 *
 *   cdh [options]                              serve the REST API on loopback (default :8006)
 *   cdh [options] get-resource kbs:///r/t/t    print the resource bytes
 *   cdh [options] unseal SECRET|-              print the unsealed secret
 *   cdh [options] token                        print {"token","tee_keypair"}
 *   cdh [options] evidence RUNTIME_DATA        print the evidence JSON
 *
 * Options: -c cdh.toml, --aa-config aa.toml, --initdata FILE, --listen HOST:PORT, --tee TEE,
 * --root DIR (prefix for /dev, /sys, /proc, /run paths), --tpm-tcti CONF, --tpm-ak-handle H
 * (generic TPM attester; default AA_TPM_AK_HANDLE or 0x81010002), --imds-url URL,
 * --sealed-key-dir DIR, --kbs-attempts N; passport mode (no attestation, a token obtained
 * elsewhere): --attestation-token FILE --tee-key-file FILE.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cdh.h"
#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_mem.h"

typedef struct cdh__args {
  const char *cdh_config, *aa_config, *initdata, *listen, *tee, *root, *tcti, *imds, *key_dir;
  const char *token_file, *tee_key_file, *eventlog;
  unsigned attempts;
  uint32_t ak_handle;
  int argi;
} cdh__args;

static void cdh__usage(void) {
  fprintf(stderr,
          "usage: cdh [-c cdh.toml] [--aa-config aa.toml] [--initdata FILE] [--listen HOST:PORT]\n"
          "           [--tee sample|snp|tdx|az-snp-vtpm|az-tdx-vtpm|tpm] [--root DIR]\n"
          "           [--tpm-tcti CONF] [--tpm-ak-handle H] [--imds-url URL] [--sealed-key-dir DIR] [--kbs-attempts N]\n"
          "           [--attestation-token FILE --tee-key-file FILE]   (passport mode)\n"
          "           [--eventlog-path FILE]   (AAEL, when aa.toml enables the event log)\n"
          "           [get-resource URI | unseal SECRET|- | token | evidence RUNTIME_DATA]\n");
}

static int cdh__parse_args(int argc, char **argv, cdh__args *a) {
  memset(a, 0, sizeof *a);
  a->listen = "127.0.0.1:8006";
  int i = 1;
  for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
    const char *o = argv[i];
    const char **dst = NULL;
    if (!strcmp(o, "-c") || !strcmp(o, "--config")) dst = &a->cdh_config;
    else if (!strcmp(o, "--aa-config")) dst = &a->aa_config;
    else if (!strcmp(o, "--initdata")) dst = &a->initdata;
    else if (!strcmp(o, "--listen")) dst = &a->listen;
    else if (!strcmp(o, "--tee")) dst = &a->tee;
    else if (!strcmp(o, "--root")) dst = &a->root;
    else if (!strcmp(o, "--tpm-tcti")) dst = &a->tcti;
    else if (!strcmp(o, "--imds-url")) dst = &a->imds;
    else if (!strcmp(o, "--sealed-key-dir")) dst = &a->key_dir;
    else if (!strcmp(o, "--attestation-token")) dst = &a->token_file;
    else if (!strcmp(o, "--tee-key-file")) dst = &a->tee_key_file;
    else if (!strcmp(o, "--eventlog-path")) dst = &a->eventlog;
    else if (!strcmp(o, "--kbs-attempts")) {
      if (i + 1 >= argc) return -1;
      a->attempts = (unsigned)strtoul(argv[++i], NULL, 10);
      continue;
    } else if (!strcmp(o, "--tpm-ak-handle")) {
      if (i + 1 >= argc) return -1;
      char *end = NULL;
      unsigned long v = strtoul(argv[++i], &end, 0);
      if (!end || *end || v == 0 || v > 0xffffffffUL) {
        fprintf(stderr, "cdh: --tpm-ak-handle needs a handle such as 0x81010002\n");
        return -1;
      }
      a->ak_handle = (uint32_t)v;
      continue;
    } else if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
      return -1;
    } else {
      fprintf(stderr, "cdh: unknown option %s\n", o);
      return -1;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "cdh: %s needs a value\n", o);
      return -1;
    }
    *dst = argv[++i];
  }
  a->argi = i;
  return 0;
}

static ct_status cdh__read_text(const char *path, char **text, size_t *len, ct_err *err) {
  uint8_t *d = NULL;
  CT_GUARD(ct_file_read(path, CDH_CONFIG_MAX, &d, len, err));
  *text = (char *)d;
  return CT_OK;
}

static int cdh__exists(const char *root, const char *abs, char *buf, size_t cap) {
  snprintf(buf, cap, "%s%s", root ? root : "", abs);
  return access(buf, R_OK) == 0;
}

/* Loads configuration in upstream's precedence: explicit files, then init-data entries, then
 * peer-pod files, then AA_KBC_PARAMS / the kernel command line. */
static ct_status cdh__load(const cdh__args *a, cdh_config *cfg, cdh_initdata *id, int *have_id,
                           ct_err *err) {
  char p[4096];
  *have_id = 0;
  if (a->initdata) {
    CT_GUARD(cdh_initdata_load(a->initdata, id, err));
    *have_id = 1;
  } else if (cdh__exists(a->root, "/run/peerpod/initdata", p, sizeof p) ||
             cdh__exists(a->root, "/run/confidential-containers/initdata/initdata.toml", p,
                         sizeof p)) {
    CT_GUARD(cdh_initdata_load(p, id, err));
    *have_id = 1;
  }
  char *text = NULL;
  size_t len = 0;
  const char *entry;
  if (a->cdh_config) {
    CT_GUARD(cdh__read_text(a->cdh_config, &text, &len, err));
    ct_status st = cdh_config_parse_cdh(text, len, cfg, err);
    free(text);
    if (st) return ct_err_prefix(err, "%s: ", a->cdh_config);
  } else if (*have_id && (entry = cdh_initdata_entry(id, "cdh.toml"))) {
    CT_GUARD(cdh_config_parse_cdh(entry, strlen(entry), cfg, err));
  } else if (cdh__exists(a->root, "/run/peerpod/cdh.toml", p, sizeof p)) {
    CT_GUARD(cdh__read_text(p, &text, &len, err));
    ct_status st = cdh_config_parse_cdh(text, len, cfg, err);
    free(text);
    CT_GUARD(st);
  }
  if (a->aa_config) {
    CT_GUARD(cdh__read_text(a->aa_config, &text, &len, err));
    ct_status st = cdh_config_parse_aa(text, len, cfg, err);
    free(text);
    if (st) return ct_err_prefix(err, "%s: ", a->aa_config);
  } else if (*have_id && (entry = cdh_initdata_entry(id, "aa.toml"))) {
    CT_GUARD(cdh_config_parse_aa(entry, strlen(entry), cfg, err));
  } else if (cdh__exists(a->root, "/run/peerpod/aa.toml", p, sizeof p)) {
    CT_GUARD(cdh__read_text(p, &text, &len, err));
    ct_status st = cdh_config_parse_aa(text, len, cfg, err);
    free(text);
    CT_GUARD(st);
  }
  snprintf(p, sizeof p, "%s/proc/cmdline", a->root ? a->root : "");
  CT_GUARD(cdh_config_kbc_params(cfg, p, err));
  if (access(p, R_OK) == 0) {
    CT_GUARD(cdh__read_text(p, &text, &len, err));
    ct_status st = cdh_config_cmdline_credentials(cfg, text, len, err);
    free(text);
    if (st) return ct_err_prefix(err, "kernel command line: ");
  }
  return CT_OK;
}

/* --- REST server ------------------------------------------------------------------------ */

typedef struct cdh__server {
  cdh_hub *hub;
  struct event_base *base;
} cdh__server;

static int cdh__status_for(ct_status st) {
  switch (st) {
  case CT_ENOTFOUND: return 404;
  case CT_EDENIED: return 403;
  case CT_EINVAL:
  case CT_ELIMIT: return 400;
  case CT_EUNSUPPORTED: return 501;
  case CT_EIO:
  case CT_EEXPIRED: return 502;
  default: return 500;
  }
}

static void cdh__reply(struct evhttp_request *req, int code, const char *type, const void *body,
                       size_t len) {
  struct evbuffer *b = evbuffer_new();
  if (b && len) evbuffer_add(b, body, len);
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
  evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", b);
  if (b) evbuffer_free(b);
}

static void cdh__reply_err(struct evhttp_request *req, const ct_err *err) {
  char msg[CT_ERR_MSG_MAX + 2];
  int n = snprintf(msg, sizeof msg, "%s\n", err->msg);
  cdh__reply(req, cdh__status_for(err->code), "text/plain", msg, (size_t)n);
}

static int cdh__peer_is_loopback(struct evhttp_request *req) {
  struct evhttp_connection *conn = evhttp_request_get_connection(req);
  const struct sockaddr *sa = conn ? evhttp_connection_get_addr(conn) : NULL;
  if (!sa) return 0;
  if (sa->sa_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
  if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a6) ||
           (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
  }
  return 0;
}

static void cdh__handle(struct evhttp_request *req, void *ud) {
  cdh__server *s = ud;
  ct_err err;
  ct_err_clear(&err);
  if (!cdh__peer_is_loopback(req)) {
    cdh__reply(req, 403, "text/plain", "loopback clients only\n", 22);
    return;
  }
  const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
  const char *path = u ? evhttp_uri_get_path(u) : NULL;
  const char *query = u ? evhttp_uri_get_query(u) : NULL;
  enum evhttp_cmd_type m = evhttp_request_get_command(req);
  if (!path) {
    cdh__reply(req, 400, "text/plain", "bad request\n", 12);
    return;
  }
  CT_LOG_DEBUG_("cdh", "%s %s", m == EVHTTP_REQ_POST ? "POST" : "GET", path);
  if (m == EVHTTP_REQ_GET && !strncmp(path, "/cdh/resource/", 14)) {
    char uri[KBC_URI_MAX + 16];
    if (strlen(path + 14) >= KBC_URI_MAX) {
      cdh__reply(req, 400, "text/plain", "resource path too long\n", 23);
      return;
    }
    snprintf(uri, sizeof uri, "kbs:///%s", path + 14);
    uint8_t *data = NULL;
    size_t len = 0;
    if (cdh_hub_get_resource(s->hub, uri, &data, &len, &err)) {
      CT_LOG_WARN_("cdh", "resource %s: %s", path + 14, err.msg);
      cdh__reply_err(req, &err);
      return;
    }
    cdh__reply(req, 200, "application/octet-stream", data, len);
    ct_wipe(data, len);
    free(data);
    return;
  }
  if (m == EVHTTP_REQ_POST && !strcmp(path, "/cdh/unseal")) {
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (n > CDH_SEALED_MAX) {
      cdh__reply(req, 413, "text/plain", "sealed secret too large\n", 24);
      return;
    }
    char *secret = malloc(n + 1);
    if (!secret) {
      cdh__reply(req, 500, "text/plain", "out of memory\n", 14);
      return;
    }
    evbuffer_remove(in, secret, n);
    while (n && (secret[n - 1] == '\n' || secret[n - 1] == '\r')) n--;
    secret[n] = 0;
    uint8_t *data = NULL;
    size_t len = 0;
    ct_status st = cdh_hub_unseal(s->hub, secret, n, &data, &len, &err);
    free(secret);
    if (st) {
      cdh__reply_err(req, &err);
      return;
    }
    cdh__reply(req, 200, "application/octet-stream", data, len);
    ct_wipe(data, len);
    free(data);
    return;
  }
  if (m == EVHTTP_REQ_GET && (!strcmp(path, "/aa/token") || !strcmp(path, "/aa/evidence"))) {
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (query && evhttp_parse_query_str(query, &q) != 0) {
      cdh__reply(req, 400, "text/plain", "malformed query\n", 16);
      return;
    }
    char *out = NULL;
    ct_status st;
    if (!strcmp(path, "/aa/token")) {
      const char *tt = evhttp_find_header(&q, "token_type");
      st = tt && !strcmp(tt, "kbs") ? cdh_hub_token(s->hub, &out, &err)
                                    : ct_fail(&err, CT_EINVAL, "token_type must be kbs");
    } else {
      const char *rd = evhttp_find_header(&q, "runtime_data");
      const char *enc = evhttp_find_header(&q, "encoding");
      uint8_t *raw = NULL;
      size_t rlen = 0;
      if (!rd) {
        st = ct_fail(&err, CT_EINVAL, "runtime_data is required");
      } else if (enc && !strcmp(enc, "base64")) {
        st = ct_b64_decode(CT_B64_ANY, rd, strlen(rd), &raw, &rlen, &err);
        if (!st) st = cdh_hub_evidence(s->hub, raw, rlen, &out, &err);
        free(raw);
      } else {
        st = cdh_hub_evidence(s->hub, (const uint8_t *)rd, strlen(rd), &out, &err);
      }
    }
    evhttp_clear_headers(&q);
    if (st) {
      cdh__reply_err(req, &err);
      return;
    }
    cdh__reply(req, 200, "application/json", out, strlen(out));
    ct_wipe(out, strlen(out));
    free(out);
    return;
  }
  if (m == EVHTTP_REQ_POST && !strcmp(path, "/aa/aael")) {
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *body = n <= 4 * GUEST_AAEL_FIELD_MAX ? malloc(n + 1) : NULL;
    json_t *j = NULL;
    ct_status st;
    if (!body) {
      st = ct_fail(&err, CT_ELIMIT, "request body too large");
    } else {
      evbuffer_remove(in, body, n);
      st = ct_json_parse(body, n, 4, &j, &err);
      free(body);
    }
    const char *d = NULL, *o = NULL, *c = NULL;
    if (!st) st = ct_json_get_string(j, "domain", "aael request", &d, &err);
    if (!st) st = ct_json_get_string(j, "operation", "aael request", &o, &err);
    if (!st) st = ct_json_get_string(j, "content", "aael request", &c, &err);
    int pcr = -1;
    json_t *ri = j ? json_object_get(j, "register_index") : NULL;
    if (!st && ri) {
      if (json_is_integer(ri) && json_integer_value(ri) >= 0 && json_integer_value(ri) < 24)
        pcr = (int)json_integer_value(ri);
      else
        st = ct_fail(&err, CT_EINVAL, "register_index must be 0..23");
    }
    if (!st) st = cdh_hub_measure(s->hub, d, o, c, pcr, &err);
    json_decref(j);
    if (st) {
      cdh__reply_err(req, &err);
      return;
    }
    static const char ok[] = "{\"success\":\"true\"}";
    cdh__reply(req, 200, "application/json", ok, sizeof ok - 1);
    return;
  }
  if (m == EVHTTP_REQ_GET && !strcmp(path, "/info")) {
    json_t *info = cdh_hub_info(s->hub);
    char *txt = info ? json_dumps(info, JSON_COMPACT) : NULL;
    json_decref(info);
    if (!txt) {
      cdh__reply(req, 500, "text/plain", "out of memory\n", 14);
      return;
    }
    cdh__reply(req, 200, "application/json", txt, strlen(txt));
    free(txt);
    return;
  }
  cdh__reply(req, 404, "text/plain", "no such endpoint\n", 17);
}

static void cdh__on_signal(evutil_socket_t fd, short what, void *ud) {
  (void)fd;
  (void)what;
  event_base_loopbreak(((cdh__server *)ud)->base);
}

/* Only loopback listen addresses: the API hands out secrets to whoever can connect. */
static ct_status cdh__parse_listen(const char *spec, char *host, size_t cap, unsigned *port,
                                   ct_err *err) {
  const char *colon = strrchr(spec, ':');
  CT_ENSURE(colon && colon != spec, err, CT_EINVAL, "--listen must be HOST:PORT");
  size_t hl = (size_t)(colon - spec);
  if (spec[0] == '[' && hl >= 2 && spec[hl - 1] == ']') {
    spec++;
    hl -= 2;
  }
  CT_ENSURE(hl < cap, err, CT_EINVAL, "--listen host too long");
  memcpy(host, spec, hl);
  host[hl] = 0;
  char *end = NULL;
  unsigned long p = strtoul(colon + 1, &end, 10);
  CT_ENSURE(end && !*end && p <= 65535, err, CT_EINVAL, "--listen port \"%s\" is invalid", colon + 1);
  if (!strcmp(host, "localhost")) strcpy(host, "127.0.0.1");
  struct in_addr a4;
  struct in6_addr a6;
  int loop = (inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127) ||
             (inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6));
  CT_ENSURE(loop, err, CT_EDENIED,
            "refusing to listen on %s: the CDH API serves secrets and binds to loopback only",
            host);
  *port = (unsigned)p;
  return CT_OK;
}

static int cdh__serve(cdh_hub *hub, const char *listen_spec) {
  ct_err err;
  char host[64];
  unsigned port = 0;
  if (cdh__parse_listen(listen_spec, host, sizeof host, &port, &err)) {
    fprintf(stderr, "cdh: %s\n", err.msg);
    return 2;
  }
  cdh__server s = {.hub = hub, .base = event_base_new()};
  struct evhttp *http = s.base ? evhttp_new(s.base) : NULL;
  if (!http) {
    fprintf(stderr, "cdh: cannot create the HTTP server\n");
    return 1;
  }
  evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
  evhttp_set_max_body_size(http, CDH_SEALED_MAX + 1024);
  evhttp_set_max_headers_size(http, 16 << 10);
  evhttp_set_gencb(http, cdh__handle, &s);
  struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(http, host, (uint16_t)port);
  if (!bs) {
    fprintf(stderr, "cdh: cannot listen on %s: %s\n", listen_spec, strerror(errno));
    evhttp_free(http);
    event_base_free(s.base);
    return 1;
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl);
  unsigned actual = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  struct event *sigint = evsignal_new(s.base, SIGINT, cdh__on_signal, &s);
  struct event *sigterm = evsignal_new(s.base, SIGTERM, cdh__on_signal, &s);
  event_add(sigint, NULL);
  event_add(sigterm, NULL);
  printf("cdh: listening on %s:%u\n", host, actual);
  fflush(stdout);
  CT_LOG_INFO_("cdh", "listening on %s:%u", host, actual);
  event_base_dispatch(s.base);
  event_free(sigint);
  event_free(sigterm);
  evhttp_free(http);
  event_base_free(s.base);
  return 0;
}

/* --- one-shot commands ------------------------------------------------------------------ */

static int cdh__write_all(const uint8_t *d, size_t n) {
  while (n) {
    ssize_t w = write(1, d, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return 1;
    d += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Reads a sealed secret from stdin (a pipe, not a regular file), bounded. */
static ct_status cdh__read_stdin(char **out, size_t *len, ct_err *err) {
  ct_buf b;
  ct_buf_init(&b, CDH_SEALED_MAX);
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) CT_GUARD(ct_buf_append(&b, chunk, n, err));
  if (ferror(stdin)) {
    ct_buf_free(&b);
    return ct_fail(err, CT_EIO, "reading stdin: %s", strerror(errno));
  }
  CT_GUARD(ct_buf_append(&b, "", 0, err));
  *out = (char *)ct_buf_take(&b, len);
  return CT_OK;
}

static int cdh__oneshot(cdh_hub *hub, int argc, char **argv, int i) {
  ct_err err;
  ct_err_clear(&err);
  const char *cmd = argv[i];
  uint8_t *out = NULL;
  size_t len = 0;
  char *txt = NULL;
  ct_status st;
  if (!strcmp(cmd, "get-resource") && i + 1 < argc) {
    st = cdh_hub_get_resource(hub, argv[i + 1], &out, &len, &err);
  } else if (!strcmp(cmd, "unseal") && i + 1 < argc) {
    char *secret = NULL;
    size_t n = 0;
    if (!strcmp(argv[i + 1], "-")) {
      st = cdh__read_stdin(&secret, &n, &err);
    } else {
      st = ct_strdup(argv[i + 1], &secret, &err);
      n = secret ? strlen(secret) : 0;
    }
    while (!st && n && (secret[n - 1] == '\n' || secret[n - 1] == '\r')) secret[--n] = 0;
    if (!st) st = cdh_hub_unseal(hub, secret, n, &out, &len, &err);
    free(secret);
  } else if (!strcmp(cmd, "token")) {
    st = cdh_hub_token(hub, &txt, &err);
  } else if (!strcmp(cmd, "evidence") && i + 1 < argc) {
    st = cdh_hub_evidence(hub, (const uint8_t *)argv[i + 1], strlen(argv[i + 1]), &txt, &err);
  } else {
    cdh__usage();
    return 2;
  }
  if (st) {
    fprintf(stderr, "cdh: %s\n", err.msg);
    return st == CT_ENOTFOUND ? 4 : st == CT_EDENIED ? 3 : 1;
  }
  int rc = txt ? cdh__write_all((uint8_t *)txt, strlen(txt)) || cdh__write_all((const uint8_t *)"\n", 1)
               : cdh__write_all(out, len);
  if (out) {
    ct_wipe(out, len);
    free(out);
  }
  if (txt) {
    ct_wipe(txt, strlen(txt));
    free(txt);
  }
  return rc;
}

int main(int argc, char **argv) {
  ct_log_init_from_env();
  cdh__args a;
  if (cdh__parse_args(argc, argv, &a)) {
    cdh__usage();
    return 2;
  }
  ct_err err;
  ct_err_clear(&err);
  cdh_config cfg = {0};
  cdh_initdata id = {0};
  int have_id = 0, rc = 1;
  cdh_hub *hub = NULL;
  if (cdh__load(&a, &cfg, &id, &have_id, &err)) {
    fprintf(stderr, "cdh: configuration: %s\n", err.msg);
    goto out;
  }
  guest_cfg g = {.root = a.root, .tpm_tcti = a.tcti, .tpm_ak_handle = a.ak_handle,
                 .imds_url = a.imds, .az_report_delay_ms = -1};
  char aael[4200];
  if (cfg.eventlog_enabled) {
    snprintf(aael, sizeof aael, "%s%s", a.eventlog ? "" : a.root ? a.root : "",
             a.eventlog ? a.eventlog : "/run/attestation-agent/eventlog");
    g.eventlog_path = aael;
  }
  guest_tee tee = GUEST_TEE_NONE;
  if (a.tee ? guest_tee_parse(a.tee, &tee, &err) : guest_tee_detect(&g, &tee, &err)) {
    fprintf(stderr, "cdh: TEE: %s\n", err.msg);
    goto out;
  }
  if (tee == GUEST_TEE_SAMPLE)
    CT_LOG_WARN_("cdh", "using the sample attester: evidence proves nothing (explicitly requested)");
  if (have_id) {
    if (guest_bind_init_data(&g, tee, id.digest, id.digest_len, &err)) {
      fprintf(stderr, "cdh: init-data binding failed: %s\n", err.msg);
      goto out;
    }
    CT_LOG_INFO_("cdh", "init-data (%s) bound to %s", id.algorithm, guest_tee_name(tee));
  }
  cdh_hub_opts ho = {.config = &cfg, .tee = tee, .guest = &g, .initdata = have_id ? &id : NULL,
                     .sealed_key_dir = a.key_dir, .kbs_attempts = a.attempts};
  char *token = NULL, *tee_key = NULL;
  size_t tlen = 0, klen = 0;
  ct_status hst = CT_OK;
  if (!a.token_file != !a.tee_key_file)
    hst = ct_fail(&err, CT_EINVAL, "passport mode needs both --attestation-token and --tee-key-file");
  else if (a.token_file && !(hst = cdh__read_text(a.token_file, &token, &tlen, &err)))
    hst = cdh__read_text(a.tee_key_file, &tee_key, &klen, &err);
  if (!hst && token) {
    while (tlen && (token[tlen - 1] == '\n' || token[tlen - 1] == '\r' || token[tlen - 1] == ' '))
      token[--tlen] = 0;
    ho.token = token;
    ho.tee_key_pem = tee_key;
  }
  if (!hst) hst = cdh_hub_new(&ho, &hub, &err);
  if (token) {
    ct_wipe(token, tlen);
    free(token);
  }
  if (tee_key) {
    ct_wipe(tee_key, klen);
    free(tee_key);
  }
  if (hst) {
    fprintf(stderr, "cdh: %s\n", err.msg);
    goto out;
  }
  if (a.argi < argc) {
    rc = cdh__oneshot(hub, argc, argv, a.argi);
    goto out;
  }
  if (cfg.ncreds && cdh_hub_provision_credentials(hub, &err))
    CT_LOG_ERROR_("cdh", "provisioning credentials: %s", err.msg);
  rc = cdh__serve(hub, a.listen);
out:
  cdh_hub_free(hub);
  cdh_initdata_free(&id);
  cdh_config_free(&cfg);
  return rc;
}
