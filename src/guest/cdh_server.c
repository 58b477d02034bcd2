/*
 * cdh_server.c - REST and ttRPC front ends of the guest daemon (see cdh_server.h).
 *
 * Every request becomes an operation (cdh__op) that runs on the worker pool; the callers
 * waiting for it (REST requests, ttRPC calls) hang off the operation and are answered together
 * when it completes. Resource operations are keyed by their normalised URI, so a request for a
 * resource already being fetched joins that fetch instead of starting another.
 */
#include "cdh_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_mem.h"
#include "guest_pb.h"
#include "guest_pool.h"
#include "guest_ttrpc.h"

typedef enum cdh__kind {
  CDH__RESOURCE,
  CDH__UNSEAL,
  CDH__TOKEN,
  CDH__EVIDENCE,
  CDH__ADDITIONAL_EVIDENCE,
  CDH__MEASURE,
  CDH__PULL_IMAGE,
  CDH__UNWRAP_KEY,
  CDH__SECURE_MOUNT,
} cdh__kind;

typedef struct cdh__server cdh__server;

typedef struct cdh__op cdh__op;

typedef struct cdh__waiter {
  struct cdh__waiter *next;
  struct evhttp_request *req; /* a REST caller ... */
  guest_ttrpc_call *call;     /* ... or a ttRPC one */
  cdh__op *op;
} cdh__waiter;

struct cdh__op {
  cdh__server *srv;
  cdh__kind kind;
  /* Set (loop thread) when every caller has gone (deadline passed, connection closed): the
   * work stops where it can (a pull between chunks and entries) and nobody is answered. */
  atomic_int cancel;
  char *key;                  /* resource: the normalised URI, the single-flight key */
  uint8_t *in;                /* secret, runtime data, key-provider input (wiped) */
  size_t inlen;
  char *a, *b, *c;            /* measure: domain, operation, content; pull: image, bundle */
  int pcr;
  cdh_mount_request *mount;
  ct_status st;
  ct_err err;
  uint8_t *out;               /* the answer (wiped: resources, tokens and keys are secrets) */
  size_t outlen;
  cdh__waiter *waiters;
  size_t nwaiters;
  struct cdh__op *next;       /* in srv->flights while a resource fetch is running */
};

struct cdh__server {
  cdh_hub *hub;
  struct event_base *base;
  guest_pool *pool;
  cdh__op *flights;
  unsigned long coalesced;    /* requests that joined a running fetch */
  unsigned long ops;          /* operations started */
  unsigned long cancelled;    /* operations abandoned by all their callers */
};

/* --- operations ------------------------------------------------------------------------- */

static const char *cdh__kind_name(cdh__kind k) {
  static const char *const names[] = {"resource", "unseal", "token", "evidence",
                                      "additional evidence", "runtime measurement", "image pull",
                                      "key unwrap", "secure mount"};
  return names[k];
}

static void cdh__op_free(cdh__op *op) {
  if (op->in) {
    ct_wipe(op->in, op->inlen);
    free(op->in);
  }
  if (op->out) {
    ct_wipe(op->out, op->outlen);
    free(op->out);
  }
  free(op->key);
  free(op->a);
  free(op->b);
  free(op->c);
  cdh_mount_request_free(op->mount);
  while (op->waiters) {
    cdh__waiter *w = op->waiters;
    op->waiters = w->next;
    free(w);
  }
  free(op);
}

static void cdh__work(void *ud) {
  cdh__op *op = ud;
  cdh_hub *h = op->srv->hub;
  ct_err *err = &op->err;
  char *txt = NULL;
  ct_status st;
  if (atomic_load(&op->cancel)) {
    op->st = ct_fail(err, CT_EEXPIRED, "cancelled before it started: no caller is waiting");
    return;
  }
  switch (op->kind) {
  case CDH__RESOURCE:
    st = cdh_hub_get_resource(h, op->key, &op->out, &op->outlen, err);
    break;
  case CDH__UNSEAL:
    st = cdh_hub_unseal(h, (const char *)op->in, op->inlen, &op->out, &op->outlen, err);
    break;
  case CDH__TOKEN:
    st = cdh_hub_token(h, &txt, err);
    break;
  case CDH__EVIDENCE:
    st = cdh_hub_evidence(h, op->in, op->inlen, &txt, err);
    break;
  case CDH__ADDITIONAL_EVIDENCE:
    st = cdh_hub_additional_evidence(h, op->in, op->inlen, &txt, err);
    break;
  case CDH__MEASURE:
    st = cdh_hub_measure(h, op->a, op->b, op->c, op->pcr, err);
    break;
  case CDH__PULL_IMAGE:
    st = cdh_hub_pull_image(h, op->a, op->b, &op->cancel, &txt, err);
    break;
  case CDH__UNWRAP_KEY:
    st = cdh_hub_unwrap_key(h, op->in, op->inlen, &op->out, &op->outlen, err);
    break;
  case CDH__SECURE_MOUNT:
    st = cdh_hub_secure_mount(h, op->mount, err);
    break;
  default:
    st = ct_fail(err, CT_EINTERNAL, "unknown operation");
  }
  if (txt) {
    op->out = (uint8_t *)txt;
    op->outlen = strlen(txt);
  }
  op->st = st;
  if (st) {
    err->code = st;
    if (atomic_load(&op->cancel))
      CT_LOG_INFO_("cdh", "%s%s%s abandoned (no caller is waiting): %s", cdh__kind_name(op->kind),
                   op->key ? " " : "", op->key ? op->key : "", err->msg);
    else
      CT_LOG_WARN_("cdh", "%s%s%s: %s", cdh__kind_name(op->kind), op->key ? " " : "",
                   op->key ? op->key : "", err->msg);
  }
}

/* The protobuf field that carries the answer in each ttRPC response (0: empty message). */
static uint32_t cdh__pb_field(cdh__kind k) {
  return k == CDH__MEASURE || k == CDH__SECURE_MOUNT ? 0 : 1;
}

static int cdh__http_status(ct_status st) {
  switch (st) {
  case CT_ENOTFOUND: return 404;
  case CT_EDENIED: return 403;
  case CT_EINVAL: return 400;
  case CT_ELIMIT: return 503;
  case CT_EUNSUPPORTED: return 501;
  case CT_EIO:
  case CT_EEXPIRED: return 502;
  default: return 500;
  }
}

static void cdh__rest_reply(struct evhttp_request *req, int code, const char *type, const void *body,
                            size_t len) {
  struct evbuffer *b = evbuffer_new();
  if (b && len) evbuffer_add(b, body, len);
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
  evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", b);
  if (b) evbuffer_free(b);
}

static void cdh__rest_reply_err(struct evhttp_request *req, const ct_err *err) {
  char msg[CT_ERR_MSG_MAX + 2];
  int n = snprintf(msg, sizeof msg, "%s\n", err->msg);
  cdh__rest_reply(req, cdh__http_status(err->code), "text/plain", msg, (size_t)n);
}

static void cdh__answer(cdh__op *op, cdh__waiter *w) {
  if (w->req) {
    if (op->st) {
      cdh__rest_reply_err(w->req, &op->err);
    } else if (op->kind == CDH__MEASURE) {
      static const char ok[] = "{\"success\":\"true\"}";
      cdh__rest_reply(w->req, 200, "application/json", ok, sizeof ok - 1);
    } else {
      int json = op->kind == CDH__TOKEN || op->kind == CDH__EVIDENCE ||
                 op->kind == CDH__ADDITIONAL_EVIDENCE || op->kind == CDH__UNWRAP_KEY;
      cdh__rest_reply(w->req, 200, json ? "application/json" : "application/octet-stream",
                      op->out, op->outlen);
    }
    return;
  }
  if (op->st) {
    guest_ttrpc_reply_err(w->call, &op->err);
    return;
  }
  uint32_t field = cdh__pb_field(op->kind);
  if (!field) {
    guest_ttrpc_reply(w->call, GUEST_RPC_OK, NULL, NULL, 0);
    return;
  }
  ct_err err;
  ct_buf msg;
  ct_buf_init(&msg, GUEST_TTRPC_FRAME_MAX + 16);
  if (guest_pb_put_bytes(&msg, field, op->out, op->outlen, 0, &err)) {
    guest_ttrpc_reply(w->call, GUEST_RPC_RESOURCE_EXHAUSTED,
                      "the answer exceeds the ttrpc message limit", NULL, 0);
  } else {
    guest_ttrpc_reply(w->call, GUEST_RPC_OK, NULL, msg.data, msg.len);
  }
  ct_buf_free_secret(&msg);
}

static void cdh__unflight(cdh__server *s, cdh__op *op) {
  for (cdh__op **pp = &s->flights; *pp; pp = &(*pp)->next)
    if (*pp == op) {
      *pp = op->next;
      op->next = NULL;
      break;
    }
}

static void cdh__done(void *ud, int cancelled) {
  cdh__op *op = ud;
  cdh__server *s = op->srv;
  if (cancelled) {
    op->st = ct_fail(&op->err, CT_EUNSUPPORTED, "cdh is shutting down");
  }
  if (op->key) cdh__unflight(s, op);
  /* Waiters were pushed at the head; answer in arrival order. */
  cdh__waiter *rev = NULL;
  while (op->waiters) {
    cdh__waiter *w = op->waiters;
    op->waiters = w->next;
    w->next = rev;
    rev = w;
  }
  op->waiters = rev;
  for (cdh__waiter *w = op->waiters; w; w = w->next) cdh__answer(op, w);
  cdh__op_free(op);
}

/* A ttRPC caller has gone (its deadline passed, it was answered DEADLINE_EXCEEDED; or it hung
 * up): it leaves the operation, and an operation nobody waits for any more is cancelled. */
static void cdh__waiter_gone(guest_ttrpc_call *call, void *ud) {
  cdh__waiter *w = ud;
  cdh__op *op = w->op;
  for (cdh__waiter **pp = &op->waiters; *pp; pp = &(*pp)->next)
    if (*pp == w) {
      *pp = w->next;
      break;
    }
  op->nwaiters--;
  free(w);
  guest_ttrpc_reply(call, GUEST_RPC_OK, NULL, NULL, 0); /* releases it; nothing is sent */
  if (op->nwaiters == 0 && !atomic_load(&op->cancel)) {
    atomic_store(&op->cancel, 1);
    op->srv->cancelled++;
    /* Later callers for the same resource start a fetch of their own. */
    if (op->key) cdh__unflight(op->srv, op);
    CT_LOG_INFO_("cdh", "%s%s%s: every caller has gone; cancelling", cdh__kind_name(op->kind),
                 op->key ? " " : "", op->key ? op->key : "");
  }
}

static CT_RESULT cdh__add_waiter(cdh__op *op, struct evhttp_request *req, guest_ttrpc_call *call,
                                 ct_err *err) {
  CT_ENSURE(op->nwaiters < CDH_FLIGHT_WAITERS_MAX, err, CT_ELIMIT,
            "too many callers are waiting for %s", op->key ? op->key : "this operation");
  cdh__waiter *w = calloc(1, sizeof *w);
  CT_ENSURE(w, err, CT_ENOMEM, "out of memory");
  w->req = req;
  w->call = call;
  w->op = op;
  w->next = op->waiters;
  op->waiters = w;
  op->nwaiters++;
  if (call) guest_ttrpc_call_on_cancel(call, cdh__waiter_gone, w);
  return CT_OK;
}

static void cdh__fail_caller(struct evhttp_request *req, guest_ttrpc_call *call, const ct_err *err) {
  if (req) cdh__rest_reply_err(req, err);
  else guest_ttrpc_reply_err(call, err);
}

/* Starts `op` for one caller (takes ownership of op in every case). */
static void cdh__start(cdh__server *s, cdh__op *op, struct evhttp_request *req,
                       guest_ttrpc_call *call) {
  ct_err err;
  op->srv = s;
  if (cdh__add_waiter(op, req, call, &err) ||
      guest_pool_submit(s->pool, cdh__work, cdh__done, op, &err)) {
    cdh__fail_caller(req, call, &err);
    cdh__op_free(op);
    return;
  }
  s->ops++;
  if (op->key) {
    op->next = s->flights;
    s->flights = op;
  }
}

static cdh__op *cdh__op_new(cdh__kind kind, ct_err *err) {
  cdh__op *op = calloc(1, sizeof *op);
  if (!op) ct_fail(err, CT_ENOMEM, "out of memory");
  else op->kind = kind;
  return op;
}

/* Normalises a resource URI ("kbs://host/r/t/t", "kbs:///r/t/t", "r/t/t") so that every
 * spelling of one resource shares a fetch. */
static CT_RESULT cdh__resource_key(const char *uri, char **out, ct_err *err) {
  char plugin[64], path[KBC_URI_MAX], full[KBC_URI_MAX + 16];
  if (strncmp(uri, "kbs", 3) != 0) {
    CT_ENSURE(strlen(uri) < KBC_URI_MAX, err, CT_ELIMIT, "resource path too long");
    snprintf(full, sizeof full, "kbs:///%s", uri);
    uri = full;
  }
  CT_GUARD(kbc_parse_uri(uri, plugin, sizeof plugin, path, sizeof path, err));
  size_t n = strlen(plugin) + strlen(path) + 16;
  char *k = malloc(n);
  CT_ENSURE(k, err, CT_ENOMEM, "out of memory");
  if (!strcmp(plugin, "resource")) snprintf(k, n, "kbs:///%s", path);
  else snprintf(k, n, "kbs+%s:///%s", plugin, path);
  *out = k;
  return CT_OK;
}

static void cdh__get_resource(cdh__server *s, const char *uri, struct evhttp_request *req,
                              guest_ttrpc_call *call) {
  ct_err err;
  char *key = NULL;
  if (cdh__resource_key(uri, &key, &err)) {
    cdh__fail_caller(req, call, &err);
    return;
  }
  for (cdh__op *f = s->flights; f; f = f->next) {
    if (strcmp(f->key, key) != 0) continue;
    free(key);
    if (cdh__add_waiter(f, req, call, &err)) cdh__fail_caller(req, call, &err);
    else s->coalesced++;
    return;
  }
  cdh__op *op = cdh__op_new(CDH__RESOURCE, &err);
  if (!op) {
    free(key);
    cdh__fail_caller(req, call, &err);
    return;
  }
  op->key = key;
  cdh__start(s, op, req, call);
}

/* --- REST --------------------------------------------------------------------------------- */

static int cdh__peer_is_loopback(struct evhttp_request *req) {
  struct evhttp_connection *conn = evhttp_request_get_connection(req);
  const struct sockaddr *sa = conn ? evhttp_connection_get_addr(conn) : NULL;
  if (!sa) return 0;
  if (sa->sa_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
  if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
  }
  return 0;
}

/* Copies a request body (at most `max` bytes) into a NUL-terminated allocation. */
static CT_RESULT cdh__body(struct evhttp_request *req, size_t max, uint8_t **out, size_t *len,
                           ct_err *err) {
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t n = evbuffer_get_length(in);
  CT_ENSURE(n <= max, err, CT_ELIMIT, "request body larger than %zu bytes", max);
  uint8_t *b = malloc(n + 1);
  CT_ENSURE(b, err, CT_ENOMEM, "out of memory");
  evbuffer_remove(in, b, n);
  b[n] = 0;
  *out = b;
  *len = n;
  return CT_OK;
}

static CT_RESULT cdh__rest_runtime_data(struct evkeyvalq *q, cdh__op *op, ct_err *err) {
  const char *rd = evhttp_find_header(q, "runtime_data");
  const char *enc = evhttp_find_header(q, "encoding");
  CT_ENSURE(rd, err, CT_EINVAL, "runtime_data is required");
  if (enc && !strcmp(enc, "base64"))
    return ct_b64_decode(CT_B64_ANY, rd, strlen(rd), &op->in, &op->inlen, err);
  CT_ENSURE(!enc, err, CT_EINVAL, "encoding must be base64 when given");
  op->inlen = strlen(rd);
  op->in = (uint8_t *)strdup(rd);
  CT_ENSURE(op->in, err, CT_ENOMEM, "out of memory");
  return CT_OK;
}

static CT_RESULT cdh__rest_aael(struct evhttp_request *req, cdh__op *op, ct_err *err) {
  uint8_t *body = NULL;
  size_t n = 0;
  CT_GUARD(cdh__body(req, 4 * GUEST_AAEL_FIELD_MAX, &body, &n, err));
  json_t *j = NULL;
  ct_status st = ct_json_parse((const char *)body, n, 4, &j, err);
  free(body);
  const char *d = NULL, *o = NULL, *c = NULL;
  if (!st) st = ct_json_get_string(j, "domain", "aael request", &d, err);
  if (!st) st = ct_json_get_string(j, "operation", "aael request", &o, err);
  if (!st) st = ct_json_get_string(j, "content", "aael request", &c, err);
  op->pcr = -1;
  json_t *ri = j ? json_object_get(j, "register_index") : NULL;
  if (!st && ri) {
    if (json_is_integer(ri) && json_integer_value(ri) >= 0 && json_integer_value(ri) < 24)
      op->pcr = (int)json_integer_value(ri);
    else
      st = ct_fail(err, CT_EINVAL, "register_index must be 0..23");
  }
  if (!st && (!(op->a = strdup(d)) || !(op->b = strdup(o)) || !(op->c = strdup(c))))
    st = ct_fail(err, CT_ENOMEM, "out of memory");
  json_decref(j);
  return st;
}

static void cdh__handle(struct evhttp_request *req, void *ud) {
  cdh__server *s = ud;
  ct_err err;
  ct_err_clear(&err);
  if (!cdh__peer_is_loopback(req)) {
    cdh__rest_reply(req, 403, "text/plain", "loopback clients only\n", 22);
    return;
  }
  const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
  const char *path = u ? evhttp_uri_get_path(u) : NULL;
  const char *query = u ? evhttp_uri_get_query(u) : NULL;
  enum evhttp_cmd_type m = evhttp_request_get_command(req);
  if (!path) {
    cdh__rest_reply(req, 400, "text/plain", "bad request\n", 12);
    return;
  }
  CT_LOG_DEBUG_("cdh", "%s %s", m == EVHTTP_REQ_POST ? "POST" : "GET", path);
  if (m == EVHTTP_REQ_GET && !strncmp(path, "/cdh/resource/", 14)) {
    if (strlen(path + 14) >= KBC_URI_MAX) {
      cdh__rest_reply(req, 400, "text/plain", "resource path too long\n", 23);
      return;
    }
    cdh__get_resource(s, path + 14, req, NULL);
    return;
  }
  if (m == EVHTTP_REQ_GET && !strcmp(path, "/info")) {
    json_t *info = cdh_hub_info(s->hub);
    guest_pool_stats ps = {0};
    guest_pool_get_stats(s->pool, &ps);
    if (info) {
      json_object_set_new(info, "coalesced_requests", json_integer((json_int_t)s->coalesced));
      json_object_set_new(info, "operations", json_integer((json_int_t)s->ops));
      json_object_set_new(info, "cancelled_operations", json_integer((json_int_t)s->cancelled));
      json_object_set_new(info, "queued", json_integer((json_int_t)ps.queued));
      json_object_set_new(info, "running", json_integer((json_int_t)ps.running));
    }
    char *txt = info ? json_dumps(info, JSON_COMPACT) : NULL;
    json_decref(info);
    if (!txt) {
      cdh__rest_reply(req, 500, "text/plain", "out of memory\n", 14);
      return;
    }
    cdh__rest_reply(req, 200, "application/json", txt, strlen(txt));
    free(txt);
    return;
  }
  cdh__kind kind;
  if (m == EVHTTP_REQ_POST && !strcmp(path, "/cdh/unseal")) kind = CDH__UNSEAL;
  else if (m == EVHTTP_REQ_GET && !strcmp(path, "/aa/token")) kind = CDH__TOKEN;
  else if (m == EVHTTP_REQ_GET && !strcmp(path, "/aa/evidence")) kind = CDH__EVIDENCE;
  else if (m == EVHTTP_REQ_GET && !strcmp(path, "/aa/additional-evidence"))
    kind = CDH__ADDITIONAL_EVIDENCE;
  else if (m == EVHTTP_REQ_POST && !strcmp(path, "/aa/aael")) kind = CDH__MEASURE;
  else {
    cdh__rest_reply(req, 404, "text/plain", "no such endpoint\n", 17);
    return;
  }
  cdh__op *op = cdh__op_new(kind, &err);
  if (!op) {
    cdh__rest_reply_err(req, &err);
    return;
  }
  struct evkeyvalq q;
  TAILQ_INIT(&q);
  ct_status st = CT_OK;
  if (query && evhttp_parse_query_str(query, &q) != 0)
    st = ct_fail(&err, CT_EINVAL, "malformed query");
  if (!st && kind == CDH__UNSEAL) {
    st = cdh__body(req, CDH_SEALED_MAX, &op->in, &op->inlen, &err);
    while (!st && op->inlen && (op->in[op->inlen - 1] == '\n' || op->in[op->inlen - 1] == '\r'))
      op->in[--op->inlen] = 0;
  } else if (!st && kind == CDH__TOKEN) {
    const char *tt = evhttp_find_header(&q, "token_type");
    if (!tt || strcmp(tt, "kbs")) st = ct_fail(&err, CT_EINVAL, "token_type must be kbs");
  } else if (!st && (kind == CDH__EVIDENCE || kind == CDH__ADDITIONAL_EVIDENCE)) {
    st = cdh__rest_runtime_data(&q, op, &err);
  } else if (!st && kind == CDH__MEASURE) {
    st = cdh__rest_aael(req, op, &err);
  }
  evhttp_clear_headers(&q);
  if (st) {
    err.code = st;
    cdh__rest_reply_err(req, &err);
    cdh__op_free(op);
    return;
  }
  cdh__start(s, op, req, NULL);
}

CT_RESULT cdh_server_parse_listen(const char *spec, char *host, size_t cap, unsigned *port,
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
  if (!strcmp(host, "localhost")) snprintf(host, cap, "127.0.0.1");
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

/* --- ttRPC services --------------------------------------------------------------------- */

/* Decodes the request message fields this server reads: strings/bytes by field number. */
typedef struct cdh__pb_arg {
  uint32_t num;
  uint8_t **bytes; /* bytes field (NUL-terminated copy) ... */
  size_t *len;
  size_t max;
  int *present;    /* set when the field appears (optional scalars) */
  uint64_t *u;     /* ... or a varint field */
} cdh__pb_arg;

static CT_RESULT cdh__pb_decode(const guest_ttrpc_request *r, cdh__pb_arg *args, size_t n,
                                ct_err *err) {
  guest_pb_in in = guest_pb_in_make(r->payload, r->payload_len);
  guest_pb_field f;
  int more = 1;
  for (;;) {
    CT_GUARD(guest_pb_next(&in, &f, &more, err));
    if (!more) return CT_OK;
    for (size_t i = 0; i < n; i++) {
      cdh__pb_arg *a = &args[i];
      if (a->num != f.num) continue;
      if (a->present) *a->present = 1;
      if (a->u) {
        CT_ENSURE(f.wire == GUEST_PB_VARINT, err, CT_EINVAL, "%s: field %u must be a varint",
                  r->method, f.num);
        *a->u = f.u;
        continue;
      }
      CT_ENSURE(f.wire == GUEST_PB_LEN, err, CT_EINVAL, "%s: field %u must be bytes", r->method,
                f.num);
      CT_ENSURE(f.len <= a->max, err, CT_ELIMIT, "%s: field %u is larger than %zu bytes", r->method,
                f.num, a->max);
      uint8_t *b = malloc(f.len + 1);
      CT_ENSURE(b, err, CT_ENOMEM, "out of memory");
      if (f.len) memcpy(b, f.data, f.len);
      b[f.len] = 0;
      if (*a->bytes) {
        ct_wipe(*a->bytes, *a->len);
        free(*a->bytes);
      }
      *a->bytes = b;
      *a->len = f.len;
    }
  }
}

static CT_RESULT cdh__text_arg(const uint8_t *b, size_t len, const char *what, ct_err *err) {
  CT_ENSURE(!b || strlen((const char *)b) == len, err, CT_EINVAL, "%s holds a NUL byte", what);
  return CT_OK;
}

static void cdh__tt_start(guest_ttrpc_call *call, cdh__op *op, ct_status st, ct_err *err, void *ud) {
  if (st) {
    err->code = st;
    guest_ttrpc_reply_err(call, err);
    cdh__op_free(op);
    return;
  }
  cdh__start(ud, op, NULL, call);
}

static void cdh__tt_get_resource(guest_ttrpc_call *call, const guest_ttrpc_request *r, void *ud) {
  ct_err err;
  uint8_t *path = NULL;
  size_t len = 0;
  cdh__pb_arg args[] = {{.num = 1, .bytes = &path, .len = &len, .max = KBC_URI_MAX}};
  ct_status st = cdh__pb_decode(r, args, 1, &err);
  if (!st) st = cdh__text_arg(path, len, "ResourcePath", &err);
  if (!st && !path) st = ct_fail(&err, CT_EINVAL, "GetResource: ResourcePath is required");
  if (st) {
    err.code = st;
    guest_ttrpc_reply_err(call, &err);
  } else {
    cdh__get_resource(ud, (const char *)path, NULL, call);
  }
  free(path);
}

static void cdh__tt_simple(guest_ttrpc_call *call, const guest_ttrpc_request *r, void *ud,
                           cdh__kind kind, size_t max, int required, const char *what) {
  ct_err err;
  cdh__op *op = cdh__op_new(kind, &err);
  if (!op) {
    guest_ttrpc_reply_err(call, &err);
    return;
  }
  cdh__pb_arg args[] = {{.num = 1, .bytes = &op->in, .len = &op->inlen, .max = max}};
  ct_status st = cdh__pb_decode(r, args, 1, &err);
  if (!st && required && !op->inlen) st = ct_fail(&err, CT_EINVAL, "%s: %s is required", r->method, what);
  cdh__tt_start(call, op, st, &err, ud);
}

static void cdh__tt_unseal(guest_ttrpc_call *call, const guest_ttrpc_request *r, void *ud) {
  cdh__tt_simple(call, r, ud, CDH__UNSEAL, CDH_SEALED_MAX, 1, "secret");
}

static void cdh__tt_unwrap(guest_ttrpc_call *call, const guest_ttrpc_request *r, void *ud) {
  cdh__tt_simple(call, r, ud, CDH__UNWRAP_KEY, 1u << 20, 1, "KeyProviderKeyWrapProtocolInput");
}

static void cdh__tt_pull(guest_ttrpc_call *call, const guest_ttrpc_request *r, void *ud) {
  ct_err err;
  cdh__op *op = cdh__op_new(CDH__PULL_IMAGE, &err);
  if (!op) {
    guest_ttrpc_reply_err(call, &err);
    return;
  }
  size_t la = 0, lb = 0;
  cdh__pb_arg args[] = {{.num = 1, .bytes = (uint8_t **)&op->a, .len = &la, .max = 4096},
                        {.num = 2, .bytes = (uint8_t **)&op->b, .len = &lb, .max = 4096}};
  ct_status st = cdh__pb_decode(r, args, 2, &err);
  if (!st) st = cdh__text_arg((uint8_t *)op->a, la, "image_url", &err);
  if (!st) st = cdh__text_arg((uint8_t *)op->b, lb, "bundle_path", &err);
  if (!st && !la) st = ct_fail(&err, CT_EINVAL, "PullImage: image_url is required");
  if (!st && !lb) st = ct_fail(&err, CT_EINVAL, "PullImage: bundle_path is required");
  cdh__tt_start(call, op, st, &err, ud);
}

static CT_RESULT cdh__mount_decode(const guest_ttrpc_request *r, cdh_mount_request **out,
                                   ct_err *err) {
  cdh_mount_request *m = NULL;
  CT_GUARD(cdh_mount_request_new(&m, err));
  guest_pb_in in = guest_pb_in_make(r->payload, r->payload_len);
  guest_pb_field f;
  int more = 1;
  ct_status st = CT_OK;
  for (;;) {
    CT_GUARD_GOTO(st, guest_pb_next(&in, &f, &more, err), fail);
    if (!more) break;
    if (f.num == 1) {
      CT_GUARD_GOTO(st, guest_pb_strdup(&f, 64, &m->volume_type, "volume_type", err), fail);
    } else if (f.num == 4) {
      CT_GUARD_GOTO(st, guest_pb_strdup(&f, 4096, &m->mount_point, "mount_point", err), fail);
    } else if (f.num == 3) {
      char *flag = NULL;
      CT_GUARD_GOTO(st, guest_pb_strdup(&f, 256, &flag, "flags", err), fail);
      st = cdh_mount_request_add_flag(m, flag, err);
      free(flag);
      CT_GUARD_GOTO(st, st, fail);
    } else if (f.num == 2) {
      CT_ENSURE_GOTO(st, f.wire == GUEST_PB_LEN, fail, err, CT_EINVAL, "options must be a map");
      guest_pb_in e = guest_pb_in_make(f.data, f.len);
      guest_pb_field ef;
      int emore = 1;
      char *k = NULL, *v = NULL;
      for (;;) {
        st = guest_pb_next(&e, &ef, &emore, err);
        if (st || !emore) break;
        if (ef.num == 1) st = guest_pb_strdup(&ef, 256, &k, "options key", err);
        else if (ef.num == 2) st = guest_pb_strdup(&ef, CDH_SEALED_MAX, &v, "options value", err);
        if (st) break;
      }
      if (!st) st = cdh_mount_request_set_option(m, k ? k : "", v ? v : "", err);
      free(k);
      if (v) {
        ct_wipe(v, strlen(v));
        free(v);
      }
      CT_GUARD_GOTO(st, st, fail);
    }
  }
  *out = m;
  return CT_OK;
fail:
  cdh_mount_request_free(m);
  return st;
}

static void cdh__tt_mount(guest_ttrpc_call *call, const guest_ttrpc_request *r, void *ud) {
  ct_err err;
  cdh__op *op = cdh__op_new(CDH__SECURE_MOUNT, &err);
  if (!op) {
    guest_ttrpc_reply_err(call, &err);
    return;
  }
  ct_status st = cdh__mount_decode(r, &op->mount, &err);
  cdh__tt_start(call, op, st, &err, ud);
}

static void cdh__tt_evidence(guest_ttrpc_call *call, const guest_ttrpc_request *r, void *ud) {
  cdh__tt_simple(call, r, ud, CDH__EVIDENCE, 4096, 0, "RuntimeData");
}

static void cdh__tt_additional(guest_ttrpc_call *call, const guest_ttrpc_request *r, void *ud) {
  cdh__tt_simple(call, r, ud, CDH__ADDITIONAL_EVIDENCE, 4096, 0, "RuntimeData");
}

static void cdh__tt_token(guest_ttrpc_call *call, const guest_ttrpc_request *r, void *ud) {
  ct_err err;
  uint8_t *tt = NULL;
  size_t len = 0;
  cdh__pb_arg args[] = {{.num = 1, .bytes = &tt, .len = &len, .max = 64}};
  ct_status st = cdh__pb_decode(r, args, 1, &err);
  if (!st && (!tt || strcmp((char *)tt, "kbs")))
    st = ct_fail(&err, CT_EINVAL, "GetToken: TokenType \"%s\" is not supported (kbs is)",
                 tt ? (char *)tt : "");
  free(tt);
  cdh__op *op = st ? NULL : cdh__op_new(CDH__TOKEN, &err);
  if (!op) {
    if (!st) st = CT_ENOMEM;
    err.code = st;
    guest_ttrpc_reply_err(call, &err);
    return;
  }
  cdh__tt_start(call, op, CT_OK, &err, ud);
}

static void cdh__tt_measure(guest_ttrpc_call *call, const guest_ttrpc_request *r, void *ud) {
  ct_err err;
  cdh__op *op = cdh__op_new(CDH__MEASURE, &err);
  if (!op) {
    guest_ttrpc_reply_err(call, &err);
    return;
  }
  size_t la = 0, lb = 0, lc = 0;
  uint64_t reg = 0;
  int has_reg = 0;
  cdh__pb_arg args[] = {
      {.num = 1, .bytes = (uint8_t **)&op->a, .len = &la, .max = GUEST_AAEL_FIELD_MAX},
      {.num = 2, .bytes = (uint8_t **)&op->b, .len = &lb, .max = GUEST_AAEL_FIELD_MAX},
      {.num = 3, .bytes = (uint8_t **)&op->c, .len = &lc, .max = GUEST_AAEL_FIELD_MAX},
      {.num = 4, .u = &reg, .present = &has_reg}};
  ct_status st = cdh__pb_decode(r, args, 4, &err);
  if (!st) st = cdh__text_arg((uint8_t *)op->a, la, "Domain", &err);
  if (!st) st = cdh__text_arg((uint8_t *)op->b, lb, "Operation", &err);
  if (!st) st = cdh__text_arg((uint8_t *)op->c, lc, "Content", &err);
  for (char **p = &op->a; !st && p <= &op->c; p++)
    if (!*p && !(*p = strdup(""))) st = ct_fail(&err, CT_ENOMEM, "out of memory");
  if (!st && has_reg && reg >= 24)
    st = ct_fail(&err, CT_EINVAL, "ExtendRuntimeMeasurement: RegisterIndex must be 0..23");
  op->pcr = has_reg ? (int)reg : -1;
  cdh__tt_start(call, op, st, &err, ud);
}

static void cdh__tt_tee(guest_ttrpc_call *call, const guest_ttrpc_request *r, void *ud) {
  cdh__server *s = ud;
  ct_err err;
  ct_buf b;
  ct_buf_init(&b, 256);
  if (guest_pb_put_str(&b, 1, cdh_hub_tee_name(s->hub), &err)) guest_ttrpc_reply_err(call, &err);
  else guest_ttrpc_reply(call, GUEST_RPC_OK, NULL, b.data, b.len);
  ct_buf_free(&b);
}

static const guest_ttrpc_method cdh__cdh_methods[] = {
    {"api.GetResourceService", "GetResource", cdh__tt_get_resource},
    {"api.SealedSecretService", "UnsealSecret", cdh__tt_unseal},
    {"api.ImagePullService", "PullImage", cdh__tt_pull},
    {"api.SecureMountService", "SecureMount", cdh__tt_mount},
    {"keyprovider.KeyProviderService", "UnWrapKey", cdh__tt_unwrap},
};

static const guest_ttrpc_method cdh__aa_methods[] = {
    {"attestation_agent.AttestationAgentService", "GetEvidence", cdh__tt_evidence},
    {"attestation_agent.AttestationAgentService", "GetAdditionalEvidence", cdh__tt_additional},
    {"attestation_agent.AttestationAgentService", "GetToken", cdh__tt_token},
    {"attestation_agent.AttestationAgentService", "ExtendRuntimeMeasurement", cdh__tt_measure},
    {"attestation_agent.AttestationAgentService", "GetTeeType", cdh__tt_tee},
};

/* --- the loop ----------------------------------------------------------------------------- */

static void cdh__on_signal(evutil_socket_t fd, short what, void *ud) {
  (void)fd;
  (void)what;
  event_base_loopbreak(ud);
}

/* A live server already on `path` (connect succeeds): never steal its socket. */
static int cdh__socket_in_use(const char *path) {
  if (!strncmp(path, "unix://", 7)) path += 7;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sa.sun_path) return 0;
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  int live = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
  close(fd);
  return live;
}

static CT_RESULT cdh__open_ttrpc(cdh__server *s, const char *path, int optional, const char *name,
                                 const guest_ttrpc_method *m, size_t n, guest_ttrpc_server **out,
                                 ct_err *err) {
  *out = NULL;
  if (!path) return CT_OK;
  ct_status st = cdh__socket_in_use(path)
                     ? ct_fail(err, CT_EIO, "ttrpc: another server is listening on %s", path)
                     : guest_ttrpc_server_new(s->base, path, m, n, s, out, err);
  if (st && optional) {
    CT_LOG_WARN_("cdh", "%s ttrpc service not started: %s", name, err->msg);
    return CT_OK;
  }
  if (!st) CT_LOG_INFO_("cdh", "ttrpc %s service on %s", name, path);
  return st;
}

static const char *cdh__socket_path(const char *path) { return !strncmp(path, "unix://", 7) ? path + 7 : path; }

CT_RESULT cdh_server_run(const cdh_server_opts *o, ct_err *err) {
  char host[64];
  unsigned port = 0;
  if (o->listen) CT_GUARD(cdh_server_parse_listen(o->listen, host, sizeof host, &port, err));
  cdh__server s = {.hub = o->hub};
  struct evhttp *http = NULL;
  guest_ttrpc_server *cdh_tt = NULL, *aa_tt = NULL;
  unsigned rest_port = 0;
  struct event *sigint = NULL, *sigterm = NULL;
  ct_status st = CT_OK;
  s.base = event_base_new();
  CT_ENSURE_GOTO(st, s.base, out, err, CT_ENOMEM, "cdh: cannot create the event loop");
  /* Before anything announces readiness: a supervisor may stop us as soon as it reads it. */
  sigint = evsignal_new(s.base, SIGINT, cdh__on_signal, s.base);
  sigterm = evsignal_new(s.base, SIGTERM, cdh__on_signal, s.base);
  CT_ENSURE_GOTO(st, sigint && sigterm && !event_add(sigint, NULL) && !event_add(sigterm, NULL),
                 out, err, CT_ENOMEM, "cdh: cannot install signal handlers");
  signal(SIGPIPE, SIG_IGN);
  CT_GUARD_GOTO(st, guest_pool_new(s.base, o->workers ? o->workers : CDH_DEFAULT_WORKERS,
                                   CDH_QUEUE_MAX, &s.pool, err), out);
  if (o->listen) {
    http = evhttp_new(s.base);
    CT_ENSURE_GOTO(st, http, out, err, CT_ENOMEM, "cdh: cannot create the HTTP server");
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_max_body_size(http, CDH_SEALED_MAX + 1024);
    evhttp_set_max_headers_size(http, 16 << 10);
    evhttp_set_timeout(http, 120);
    evhttp_set_gencb(http, cdh__handle, &s);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(http, host, (uint16_t)port);
    CT_ENSURE_GOTO(st, bs, out, err, CT_EIO, "cdh: cannot listen on %s: %s", o->listen,
                   strerror(errno));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl);
    unsigned actual = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                               : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    rest_port = actual;
    CT_LOG_INFO_("cdh", "REST API on %s:%u", host, actual);
  }
  CT_GUARD_GOTO(st, cdh__open_ttrpc(&s, o->cdh_socket, o->cdh_socket_optional, "cdh",
                                    cdh__cdh_methods,
                                    sizeof cdh__cdh_methods / sizeof *cdh__cdh_methods, &cdh_tt,
                                    err), out);
  CT_GUARD_GOTO(st, cdh__open_ttrpc(&s, o->aa_socket, o->aa_socket_optional, "aa", cdh__aa_methods,
                                    sizeof cdh__aa_methods / sizeof *cdh__aa_methods, &aa_tt, err),
                out);
  /* Readiness is announced once every listener is open: a line printed before a later listener
   * failed still reached a supervisor (or test) at exit, which then called a daemon that was gone. */
  if (o->listen) printf("cdh: listening on %s:%u\n", host, rest_port);
  if (cdh_tt) printf("cdh: ttrpc cdh on %s\n", cdh__socket_path(o->cdh_socket));
  if (aa_tt) printf("cdh: ttrpc aa on %s\n", cdh__socket_path(o->aa_socket));
  fflush(stdout);
  event_base_dispatch(s.base);
  CT_LOG_INFO_("cdh", "shutting down");
out:
  /* ttRPC listeners first (their calls detach: answers are dropped), then the pool, whose
   * cancelled and finished operations answer their callers. */
  guest_ttrpc_server_free(cdh_tt);
  guest_ttrpc_server_free(aa_tt);
  guest_pool_free(s.pool);
  /* evhttp frees requests still pending on its connections, so every REST caller must have
   * been answered (by the pool's completions above) before it goes. */
  if (http) evhttp_free(http);
  if (sigint) event_free(sigint);
  if (sigterm) event_free(sigterm);
  if (s.base) event_base_free(s.base);
  return st;
}
