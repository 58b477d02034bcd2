/*
 * guest_ttrpc.c - ttRPC framing, Request/Response codec and the unix-socket server (see
 * guest_ttrpc.h).
 */
#include "guest_ttrpc.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ct_log.h"
#include "guest_pb.h"

/* The protocol keeps the first length byte zero (reserved), so nothing at or above 16 MiB is a
 * frame: such a header means the stream is not ttRPC, and the connection is closed. */
#define GUEST_TTRPC__PROTOCOL_MAX (16u << 20)
/* Stop reading a connection whose peer does not read its responses. */
#define GUEST_TTRPC__OUTPUT_HIGH (8u << 20)
#define GUEST_TTRPC__STATUS_MSG_MAX 1024

/* --- codec ------------------------------------------------------------------------------- */

void guest_ttrpc_header_parse(const uint8_t in[GUEST_TTRPC_HEADER_LEN], guest_ttrpc_header *h) {
  h->length = (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
  h->stream = (uint32_t)in[4] << 24 | (uint32_t)in[5] << 16 | (uint32_t)in[6] << 8 | in[7];
  h->type = in[8];
  h->flags = in[9];
}

void guest_ttrpc_header_write(const guest_ttrpc_header *h, uint8_t out[GUEST_TTRPC_HEADER_LEN]) {
  for (int i = 0; i < 4; i++) {
    out[i] = (uint8_t)(h->length >> (24 - 8 * i));
    out[4 + i] = (uint8_t)(h->stream >> (24 - 8 * i));
  }
  out[8] = h->type;
  out[9] = h->flags;
}

CT_RESULT guest_ttrpc_request_decode(const uint8_t *data, size_t len, guest_ttrpc_request *r,
                                     ct_err *err) {
  memset(r, 0, sizeof *r);
  guest_pb_in in = guest_pb_in_make(data, len);
  guest_pb_field f;
  int more = 1;
  for (;;) {
    CT_GUARD(guest_pb_next(&in, &f, &more, err));
    if (!more) break;
    switch (f.num) {
    case 1:
      CT_GUARD(guest_pb_string(&f, r->service, sizeof r->service, "ttrpc request service", err));
      break;
    case 2:
      CT_GUARD(guest_pb_string(&f, r->method, sizeof r->method, "ttrpc request method", err));
      break;
    case 3:
      CT_ENSURE(f.wire == GUEST_PB_LEN, err, CT_EINVAL, "ttrpc request: payload must be bytes");
      r->payload = f.data;
      r->payload_len = f.len;
      break;
    case 4:
      CT_ENSURE(f.wire == GUEST_PB_VARINT, err, CT_EINVAL,
                "ttrpc request: timeout_nano must be a varint");
      r->timeout_nano = (int64_t)f.u;
      break;
    case 5:
      CT_ENSURE(f.wire == GUEST_PB_LEN, err, CT_EINVAL,
                "ttrpc request: metadata must be a KeyValue message");
      r->metadata++;
      break;
    default:
      break; /* unknown fields are skipped, as proto3 requires */
    }
  }
  CT_ENSURE(r->service[0] && r->method[0], err, CT_EINVAL,
            "ttrpc request: service and method are required");
  return CT_OK;
}

CT_RESULT guest_ttrpc_request_encode(const char *service, const char *method, const uint8_t *payload,
                                     size_t len, ct_buf *out, ct_err *err) {
  CT_GUARD(guest_pb_put_str(out, 1, service, err));
  CT_GUARD(guest_pb_put_str(out, 2, method, err));
  return guest_pb_put_bytes(out, 3, payload, len, 0, err);
}

CT_RESULT guest_ttrpc_response_encode(int code, const char *message, const uint8_t *payload,
                                      size_t len, ct_buf *out, ct_err *err) {
  if (code != GUEST_RPC_OK) {
    ct_buf st;
    ct_buf_init(&st, GUEST_TTRPC__STATUS_MSG_MAX + 32);
    size_t mlen = message ? strnlen(message, GUEST_TTRPC__STATUS_MSG_MAX) : 0;
    ct_status s = guest_pb_put_varint(&st, 1, (uint64_t)(uint32_t)code, err);
    if (!s) s = guest_pb_put_bytes(&st, 2, message, mlen, 0, err);
    if (!s) s = guest_pb_put_bytes(out, 1, st.data, st.len, 1, err);
    ct_buf_free(&st);
    return s;
  }
  return guest_pb_put_bytes(out, 2, payload, len, 0, err);
}

CT_RESULT guest_ttrpc_response_decode(const uint8_t *data, size_t len, int *code, char *msg,
                                      size_t cap, const uint8_t **payload, size_t *plen,
                                      ct_err *err) {
  *code = 0;
  if (cap) msg[0] = 0;
  *payload = NULL;
  *plen = 0;
  guest_pb_in in = guest_pb_in_make(data, len);
  guest_pb_field f;
  int more = 1;
  for (;;) {
    CT_GUARD(guest_pb_next(&in, &f, &more, err));
    if (!more) break;
    if (f.num == 2 && f.wire == GUEST_PB_LEN) {
      *payload = f.data;
      *plen = f.len;
    } else if (f.num == 1 && f.wire == GUEST_PB_LEN) {
      guest_pb_in sin = guest_pb_in_make(f.data, f.len);
      guest_pb_field sf;
      int smore = 1;
      for (;;) {
        CT_GUARD(guest_pb_next(&sin, &sf, &smore, err));
        if (!smore) break;
        if (sf.num == 1 && sf.wire == GUEST_PB_VARINT) *code = (int)(int32_t)sf.u;
        if (sf.num == 2 && sf.wire == GUEST_PB_LEN && cap) {
          size_t n = sf.len < cap - 1 ? sf.len : cap - 1;
          memcpy(msg, sf.data, n);
          msg[n] = 0;
        }
      }
    }
  }
  return CT_OK;
}

int guest_ttrpc_code_for(ct_status st) {
  switch (st) {
  case CT_OK: return GUEST_RPC_OK;
  case CT_EINVAL: return GUEST_RPC_INVALID_ARGUMENT;
  case CT_ENOTFOUND: return GUEST_RPC_NOT_FOUND;
  case CT_EDENIED:
  case CT_ECRYPTO: return GUEST_RPC_PERMISSION_DENIED;
  case CT_ELIMIT:
  case CT_ENOMEM: return GUEST_RPC_RESOURCE_EXHAUSTED;
  case CT_EUNSUPPORTED: return GUEST_RPC_UNIMPLEMENTED;
  case CT_EIO:
  case CT_EEXPIRED: return GUEST_RPC_UNAVAILABLE;
  default: return GUEST_RPC_INTERNAL;
  }
}

/* --- server ------------------------------------------------------------------------------ */

typedef struct guest_ttrpc__conn {
  guest_ttrpc_server *srv;
  struct bufferevent *bev;
  struct guest_ttrpc__conn *prev, *next;
  unsigned refs;      /* 1 while open, plus one per call not yet released */
  int closed;
  size_t inflight;    /* calls not yet answered */
  uint64_t discard;   /* bytes of a refused oversized frame still to skip */
  struct guest_ttrpc_call *calls; /* held by handlers */
} guest_ttrpc__conn;

struct guest_ttrpc_call {
  guest_ttrpc__conn *conn;
  uint32_t stream;
  struct guest_ttrpc_call *prev, *next; /* in conn->calls */
  struct event *deadline;               /* NULL: no timeout_nano */
  int64_t timeout_ms;
  int answered;                         /* DEADLINE_EXCEEDED went out already */
  guest_ttrpc_cancel_fn cancel;
  void *cancel_ud;
};

struct guest_ttrpc_server {
  struct event_base *base;
  struct evconnlistener *listener;
  char *path;
  const guest_ttrpc_method *methods;
  size_t nmethods;
  void *ud;
  guest_ttrpc__conn *conns;
  size_t nconns;
  guest_ttrpc_stats stats;
};

static void guest_ttrpc__unref(guest_ttrpc__conn *c) {
  if (--c->refs == 0) free(c);
}

/* Tells the call's handler to abandon it (once). The handler may release the call from the
 * callback: nothing here touches it afterwards. */
static void guest_ttrpc__cancel(guest_ttrpc_call *call) {
  guest_ttrpc_cancel_fn fn = call->cancel;
  call->cancel = NULL;
  if (call->deadline) event_del(call->deadline);
  if (fn) fn(call, call->cancel_ud);
}

static void guest_ttrpc__close(guest_ttrpc__conn *c, const char *why) {
  if (c->closed) return;
  if (why) CT_LOG_WARN_("ttrpc", "closing connection on %s: %s", c->srv->path, why);
  c->closed = 1; /* from here on nothing is sent */
  /* Nobody is left to answer: the handlers' work is abandoned. */
  c->refs++;
  for (guest_ttrpc_call *k = c->calls, *next; k; k = next) {
    next = k->next;
    guest_ttrpc__cancel(k);
  }
  c->refs--;
  bufferevent_free(c->bev);
  c->bev = NULL;
  if (c->prev) c->prev->next = c->next;
  else c->srv->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->srv->nconns--;
  c->srv = NULL;
  guest_ttrpc__unref(c);
}

static void guest_ttrpc__send(guest_ttrpc__conn *c, uint32_t stream, int code, const char *msg,
                              const uint8_t *payload, size_t len) {
  if (c->closed) return;
  ct_err err;
  ct_buf body;
  ct_buf_init(&body, GUEST_TTRPC_FRAME_MAX);
  if (guest_ttrpc_response_encode(code, msg, payload, len, &body, &err)) {
    /* Only the payload can exceed the frame bound: tell the client instead. */
    ct_buf_free(&body);
    ct_buf_init(&body, GUEST_TTRPC_FRAME_MAX);
    char m[128];
    snprintf(m, sizeof m, "response of %zu bytes exceeds the ttrpc frame limit of %u bytes", len,
             GUEST_TTRPC_FRAME_MAX);
    if (guest_ttrpc_response_encode(GUEST_RPC_RESOURCE_EXHAUSTED, m, NULL, 0, &body, &err)) {
      ct_buf_free(&body);
      guest_ttrpc__close(c, "cannot encode a response");
      return;
    }
  }
  uint8_t hdr[GUEST_TTRPC_HEADER_LEN];
  guest_ttrpc_header h = {.length = (uint32_t)body.len, .stream = stream,
                          .type = GUEST_TTRPC_RESPONSE, .flags = 0};
  guest_ttrpc_header_write(&h, hdr);
  struct evbuffer *out = bufferevent_get_output(c->bev);
  if (evbuffer_add(out, hdr, sizeof hdr) || (body.len && evbuffer_add(out, body.data, body.len))) {
    ct_buf_free_secret(&body);
    guest_ttrpc__close(c, "out of memory");
    return;
  }
  /* Payloads carry secrets (resources, tokens, keys): wipe our copy. */
  ct_buf_free_secret(&body);
  if (evbuffer_get_length(out) > GUEST_TTRPC__OUTPUT_HIGH) bufferevent_disable(c->bev, EV_READ);
}

void guest_ttrpc_reply(guest_ttrpc_call *call, int code, const char *message, const uint8_t *payload,
                       size_t len) {
  guest_ttrpc__conn *c = call->conn;
  if (!call->answered) {
    guest_ttrpc__send(c, call->stream, code, message, payload, len);
    c->inflight--;
  }
  if (call->prev) call->prev->next = call->next;
  else c->calls = call->next;
  if (call->next) call->next->prev = call->prev;
  if (call->deadline) event_free(call->deadline);
  free(call);
  guest_ttrpc__unref(c);
}

void guest_ttrpc_call_on_cancel(guest_ttrpc_call *call, guest_ttrpc_cancel_fn fn, void *ud) {
  call->cancel = fn;
  call->cancel_ud = ud;
}

static void guest_ttrpc__expired(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  guest_ttrpc_call *call = arg;
  guest_ttrpc__conn *c = call->conn;
  char msg[128];
  snprintf(msg, sizeof msg, "deadline exceeded: no answer within the call's timeout of %lld ms",
           (long long)call->timeout_ms);
  CT_LOG_INFO_("ttrpc", "stream %u: %s; cancelling its work", call->stream, msg);
  guest_ttrpc__send(c, call->stream, GUEST_RPC_DEADLINE_EXCEEDED, msg, NULL, 0);
  call->answered = 1;
  c->inflight--;
  if (c->srv) c->srv->stats.deadline_exceeded++;
  guest_ttrpc__cancel(call);
}

void guest_ttrpc_reply_err(guest_ttrpc_call *call, const ct_err *err) {
  guest_ttrpc_reply(call, guest_ttrpc_code_for(err->code), err->msg, NULL, 0);
}

static const guest_ttrpc_method *guest_ttrpc__find(const guest_ttrpc_server *s, const char *service,
                                                   const char *method, int *service_known) {
  *service_known = 0;
  for (size_t i = 0; i < s->nmethods; i++) {
    if (strcmp(s->methods[i].service, service)) continue;
    *service_known = 1;
    if (!strcmp(s->methods[i].method, method)) return &s->methods[i];
  }
  return NULL;
}

static void guest_ttrpc__dispatch(guest_ttrpc__conn *c, const guest_ttrpc_header *h,
                                  const uint8_t *data) {
  guest_ttrpc_server *s = c->srv;
  ct_err err;
  guest_ttrpc_request req;
  if (guest_ttrpc_request_decode(data, h->length, &req, &err)) {
    s->stats.refused_frames++;
    guest_ttrpc__send(c, h->stream, GUEST_RPC_INVALID_ARGUMENT, err.msg, NULL, 0);
    return;
  }
  if (h->flags & GUEST_TTRPC_FLAG_REMOTE_OPEN) {
    guest_ttrpc__send(c, h->stream, GUEST_RPC_UNIMPLEMENTED,
                      "streaming calls are not supported by this server", NULL, 0);
    return;
  }
  int known = 0;
  const guest_ttrpc_method *m = guest_ttrpc__find(s, req.service, req.method, &known);
  if (!m) {
    char msg[GUEST_TTRPC_NAME_MAX * 2 + 32];
    if (known) snprintf(msg, sizeof msg, "method %s.%s is not implemented", req.service, req.method);
    else snprintf(msg, sizeof msg, "service %s is not implemented", req.service);
    CT_LOG_INFO_("ttrpc", "%s", msg);
    guest_ttrpc__send(c, h->stream, GUEST_RPC_UNIMPLEMENTED, msg, NULL, 0);
    return;
  }
  if (c->inflight >= GUEST_TTRPC_INFLIGHT_MAX) {
    guest_ttrpc__send(c, h->stream, GUEST_RPC_RESOURCE_EXHAUSTED,
                      "too many calls in flight on this connection", NULL, 0);
    return;
  }
  if (req.timeout_nano < 0) {
    /* containerd's client computes the timeout from its deadline: already past. */
    s->stats.deadline_exceeded++;
    guest_ttrpc__send(c, h->stream, GUEST_RPC_DEADLINE_EXCEEDED,
                      "deadline exceeded: the call's deadline had passed when it arrived", NULL, 0);
    return;
  }
  guest_ttrpc_call *call = calloc(1, sizeof *call);
  if (call && req.timeout_nano > 0) {
    call->deadline = evtimer_new(s->base, guest_ttrpc__expired, call);
    int64_t ns = req.timeout_nano;
    struct timeval tv = {.tv_sec = (time_t)(ns / 1000000000), .tv_usec = (suseconds_t)(ns % 1000000000 / 1000)};
    call->timeout_ms = ns / 1000000;
    if (!call->deadline || evtimer_add(call->deadline, &tv) != 0) {
      if (call->deadline) event_free(call->deadline);
      free(call);
      call = NULL;
    }
  }
  if (!call) {
    guest_ttrpc__send(c, h->stream, GUEST_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
    return;
  }
  call->conn = c;
  call->stream = h->stream;
  call->next = c->calls;
  if (c->calls) c->calls->prev = call;
  c->calls = call;
  c->refs++;
  c->inflight++;
  s->stats.calls++;
  CT_LOG_DEBUG_("ttrpc", "%s/%s stream %u", req.service, req.method, h->stream);
  m->fn(call, &req, s->ud);
}

static void guest_ttrpc__on_read(struct bufferevent *bev, void *ud) {
  guest_ttrpc__conn *c = ud;
  struct evbuffer *in = bufferevent_get_input(bev);
  /* A handler may answer synchronously and the connection may close under us: hold it. */
  c->refs++;
  while (!c->closed) {
    size_t avail = evbuffer_get_length(in);
    if (c->discard) {
      size_t n = avail < c->discard ? avail : (size_t)c->discard;
      if (!n) break;
      evbuffer_drain(in, n);
      c->discard -= n;
      continue;
    }
    if (avail < GUEST_TTRPC_HEADER_LEN) break;
    uint8_t hb[GUEST_TTRPC_HEADER_LEN];
    evbuffer_copyout(in, hb, sizeof hb);
    guest_ttrpc_header h;
    guest_ttrpc_header_parse(hb, &h);
    char why[96];
    if (h.length >= GUEST_TTRPC__PROTOCOL_MAX) {
      c->srv->stats.refused_frames++;
      snprintf(why, sizeof why, "frame length %u is not a ttrpc frame", h.length);
      guest_ttrpc__close(c, why);
      break;
    }
    if (h.type != GUEST_TTRPC_REQUEST || h.stream % 2 != 1) {
      c->srv->stats.refused_frames++;
      snprintf(why, sizeof why, "%s (type %u, stream %u)",
               h.stream % 2 != 1 ? "client stream ids must be odd"
               : h.type == GUEST_TTRPC_DATA ? "data frames (streaming) are not supported"
                                             : "unexpected frame type",
               h.type, h.stream);
      guest_ttrpc__close(c, why);
      break;
    }
    if (h.length > GUEST_TTRPC_FRAME_MAX) {
      c->srv->stats.refused_frames++;
      evbuffer_drain(in, GUEST_TTRPC_HEADER_LEN);
      c->discard = h.length;
      snprintf(why, sizeof why, "message length %u exceeds the maximum message size of %u", h.length,
               GUEST_TTRPC_FRAME_MAX);
      CT_LOG_WARN_("ttrpc", "%s", why);
      guest_ttrpc__send(c, h.stream, GUEST_RPC_RESOURCE_EXHAUSTED, why, NULL, 0);
      continue;
    }
    if (avail < GUEST_TTRPC_HEADER_LEN + (size_t)h.length) break;
    evbuffer_drain(in, GUEST_TTRPC_HEADER_LEN);
    uint8_t *data = h.length ? malloc(h.length) : NULL;
    if (h.length && !data) {
      guest_ttrpc__close(c, "out of memory");
      break;
    }
    if (h.length) evbuffer_remove(in, data, h.length);
    guest_ttrpc__dispatch(c, &h, data ? data : (const uint8_t *)"");
    if (data) {
      /* Requests carry sealed secrets and key-unwrap parameters. */
      memset(data, 0, h.length);
      free(data);
    }
  }
  guest_ttrpc__unref(c);
}

static void guest_ttrpc__on_write(struct bufferevent *bev, void *ud) {
  (void)ud;
  /* Output drained below the low watermark: resume reading a connection paused for it. */
  bufferevent_enable(bev, EV_READ);
}

static void guest_ttrpc__on_event(struct bufferevent *bev, short what, void *ud) {
  (void)bev;
  guest_ttrpc__conn *c = ud;
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) guest_ttrpc__close(c, NULL);
}

static void guest_ttrpc__on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                                   int socklen, void *ud) {
  (void)l;
  (void)sa;
  (void)socklen;
  guest_ttrpc_server_adopt(ud, fd);
}

void guest_ttrpc_server_adopt(guest_ttrpc_server *s, int fd) {
  if (s->nconns >= GUEST_TTRPC_CONN_MAX) {
    CT_LOG_WARN_("ttrpc", "refusing a connection on %s: %d connections open", s->path,
                 GUEST_TTRPC_CONN_MAX);
    evutil_closesocket(fd);
    return;
  }
  evutil_make_socket_nonblocking(fd);
  guest_ttrpc__conn *c = calloc(1, sizeof *c);
  struct bufferevent *bev =
      c ? bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
  if (!bev) {
    free(c);
    evutil_closesocket(fd);
    return;
  }
  c->srv = s;
  c->bev = bev;
  c->refs = 1;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  s->stats.connections++;
  bufferevent_setcb(bev, guest_ttrpc__on_read, guest_ttrpc__on_write, guest_ttrpc__on_event, c);
  bufferevent_setwatermark(bev, EV_WRITE, GUEST_TTRPC__OUTPUT_HIGH / 2, 0);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static CT_RESULT guest_ttrpc__mkdirs(const char *path, ct_err *err) {
  char p[sizeof(((struct sockaddr_un *)0)->sun_path)];
  snprintf(p, sizeof p, "%s", path);
  for (char *q = p + 1; *q; q++) {
    if (*q != '/') continue;
    *q = 0;
    CT_ENSURE(mkdir(p, 0755) == 0 || errno == EEXIST, err, CT_EIO, "ttrpc: mkdir %s: %s", p,
              strerror(errno));
    *q = '/';
  }
  return CT_OK;
}

static CT_RESULT guest_ttrpc__listen(const char *path, int *out, ct_err *err) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  CT_ENSURE(strlen(path) < sizeof sa.sun_path, err, CT_ELIMIT,
            "ttrpc: socket path %s is longer than %zu bytes", path, sizeof sa.sun_path - 1);
  strcpy(sa.sun_path, path);
  CT_GUARD(guest_ttrpc__mkdirs(path, err));
  struct stat st;
  if (lstat(path, &st) == 0) {
    CT_ENSURE(S_ISSOCK(st.st_mode), err, CT_EINVAL,
              "ttrpc: %s exists and is not a socket; refusing to replace it", path);
    CT_ENSURE(unlink(path) == 0, err, CT_EIO, "ttrpc: removing the stale socket %s: %s", path,
              strerror(errno));
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  CT_ENSURE(fd >= 0, err, CT_EIO, "ttrpc: socket: %s", strerror(errno));
  /* The socket hands out secrets: it is created 0600 (no window with wider modes). */
  mode_t old = umask(0177);
  int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
  int e = errno;
  umask(old);
  if (rc != 0 || listen(fd, 64) != 0) {
    if (rc == 0) e = errno;
    close(fd);
    return ct_fail(err, CT_EIO, "ttrpc: cannot listen on %s: %s", path, strerror(e));
  }
  *out = fd;
  return CT_OK;
}

CT_RESULT guest_ttrpc_server_new(struct event_base *base, const char *path,
                                 const guest_ttrpc_method *methods, size_t n, void *ud,
                                 guest_ttrpc_server **out, ct_err *err) {
  if (path && !strncmp(path, "unix://", 7)) path += 7;
  int fd = -1;
  if (path) CT_GUARD(guest_ttrpc__listen(path, &fd, err));
  guest_ttrpc_server *s = calloc(1, sizeof *s);
  char *p = strdup(path ? path : "(adopted connections)");
  struct evconnlistener *l =
      s && p && path ? evconnlistener_new(base, guest_ttrpc__on_accept, s,
                                          LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd)
                     : NULL;
  if (!s || !p || (path && !l)) {
    free(s);
    free(p);
    if (fd >= 0) {
      close(fd);
      unlink(path);
    }
    return ct_fail(err, CT_ENOMEM, "ttrpc: cannot create the listener for %s", path ? path : "-");
  }
  s->base = base;
  s->listener = l;
  s->path = p;
  s->methods = methods;
  s->nmethods = n;
  s->ud = ud;
  *out = s;
  return CT_OK;
}

void guest_ttrpc_server_free(guest_ttrpc_server *s) {
  if (!s) return;
  if (s->listener) {
    evconnlistener_free(s->listener);
    unlink(s->path);
  }
  while (s->conns) guest_ttrpc__close(s->conns, NULL);
  free(s->path);
  free(s);
}

void guest_ttrpc_get_stats(const guest_ttrpc_server *s, guest_ttrpc_stats *out) { *out = s->stats; }
