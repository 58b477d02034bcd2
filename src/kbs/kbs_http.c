#include "kbs_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <event2/util.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ct_log.h"
#include "ct_mem.h"
#include "kbs_http_frame.h"

#define KBS_HTTP_MAX_WORKERS 64
#define KBS_HTTP_MAX_SOCKETS 16
#define KBS_HTTP_MAX_HEADERS (2 * KBS_HTTP_FRAME_MAX_HEAD)

typedef struct kbs_http__worker {
  struct kbs_http_server *server;
  struct event_base *base;
  struct evhttp *http;
  struct event *stop_check;
  struct kbs_http__conn *conns;
  pthread_t thread;
  bool started;
  /* Accept balancing (kbs_http__balance): the loop's live connections, whether its listeners
   * accept (read by other loops, changed only by this one), an event other loops fire to make it
   * look again, its listeners, and whether they rest after an accept error. */
  atomic_uint live;
  atomic_bool accepting;
  struct event *rebalance;
  struct evconnlistener *listeners[KBS_HTTP_MAX_SOCKETS];
  size_t n_listeners;
  bool paused;
} kbs_http__worker;

/* A request handed from a loop thread to the compute pool. It owns copies of everything a handler
 * reads, because the loop may free the evhttp request (peer closed) while the job is queued. */
/* A job's life with respect to deferral (see kbs_http_defer). */
typedef enum kbs_http__state {
  KBS_HTTP__RUNNING,  /* a pool thread runs its handler or continuation */
  KBS_HTTP__DEFERRED, /* ... and the handler deferred it */
  KBS_HTTP__PARKED,   /* deferred, handler returned: waits for resume/offload/done */
  KBS_HTTP__QUEUED,
} kbs_http__state;

typedef struct kbs_http__job {
  struct kbs_http_server *server;
  pthread_mutex_t mu;             /* state, next_fn/next_arg/next_pool */
  kbs_http__state state;
  kbs_http_continuation next_fn;  /* NULL: run the server's handler */
  void *next_arg;
  int next_pool;                  /* 0 compute, 1 blocking, -1 finished (send the reply) */
  bool action;                    /* resume/offload/done arrived while DEFERRED */
  struct kbs_http__worker *loop;  /* the loop that owns the connection and sends the reply */
  struct evhttp_request *ereq;    /* touched only on the owning loop thread */
  struct evhttp_connection *evcon;
  bool dead;                      /* the connection closed: never touch ereq again */
  kbs_http_request req;
  kbs_http_response resp;
  char *uri, *query, *authorization, *cookie;
  uint8_t *body;
  struct kbs_http__job *next;
} kbs_http__job;

#define KBS_HTTP_MAX_QUEUE 4096
#define KBS_HTTP_JOIN_MAX ((size_t)16 << 10) /* one TLS record's payload */
#define KBS_HTTP_MAX_POOL 64
#define KBS_HTTP_HANDLER_STACK ((size_t)8 << 20)

typedef struct kbs_http__queue {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct kbs_http__job *head, *tail;
  size_t len;
  unsigned n_threads;
  pthread_t threads[KBS_HTTP_MAX_POOL];
  bool started[KBS_HTTP_MAX_POOL];
  bool blocking;
  struct kbs_http_server *server;
} kbs_http__queue;

struct kbs_http_server {
  atomic_bool stopping;
  kbs_http__queue blocking; /* kbs_http_pending_offload */
  unsigned n_blocking;
  /* Compute pool: handlers run here, in global FIFO order, so a connection's position on a loop
   * does not decide its latency (SO_REUSEPORT splits connections unevenly across loops). */
  kbs_http__queue compute;
  kbs_http_handler handler;
  kbs_http_inline_fn runs_inline;
  void *ctx;
  SSL_CTX *ssl;
  size_t max_body;
  unsigned n_workers;
  bool balance; /* loops share one listening socket: keep their connection counts even */
  kbs_http__worker workers[KBS_HTTP_MAX_WORKERS];
  int ports[KBS_HTTP_MAX_SOCKETS];
  int listen_fds[KBS_HTTP_MAX_SOCKETS]; /* the first loop's listeners (owned by its evhttp) */
};

const char *kbs_http_header(const kbs_http_request *req, const char *name) { return req->header(req, name); }



/* "IPv4:port" or "[IPv6]:port"; port 0 asks the kernel for a free port (tests use it). */
static CT_RESULT kbs_http__parse_addr(const char *spec, struct sockaddr_storage *ss, socklen_t *len,
                                      ct_err *err) {
  memset(ss, 0, sizeof *ss);
  char host[64];
  const char *colon = strrchr(spec, ':');
  CT_ENSURE(colon && colon != spec, err, CT_EINVAL, "http_server.sockets: \"%s\" is not an IP:port address", spec);
  const char *h = spec;
  size_t hlen = (size_t)(colon - spec);
  if (h[0] == '[') {
    CT_ENSURE(hlen >= 2 && h[hlen - 1] == ']', err, CT_EINVAL, "http_server.sockets: \"%s\": bad IPv6 brackets", spec);
    h++;
    hlen -= 2;
  }
  CT_ENSURE(hlen < sizeof host, err, CT_EINVAL, "http_server.sockets: \"%s\": address too long", spec);
  memcpy(host, h, hlen);
  host[hlen] = 0;
  char *end = NULL;
  long port = strtol(colon + 1, &end, 10);
  CT_ENSURE(colon[1] && *end == 0 && port >= 0 && port <= 65535, err, CT_EINVAL,
            "http_server.sockets: \"%s\": port must be 0-65535", spec);
  struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    *len = sizeof *v4;
  } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    *len = sizeof *v6;
  } else {
    return ct_fail(err, CT_EINVAL, "http_server.sockets: \"%s\" is not an IP:port address", spec);
  }
  return CT_OK;
}

/* Without reuse_port the socket is bound exclusively (SO_REUSEADDR only lets a restart reuse a
 * port in TIME_WAIT; it never joins a live listener) and every loop accepts on a dup of it. With
 * reuse_port each loop has its own SO_REUSEPORT listener, which other processes may join.
 * TCP_NODELAY is inherited by accepted sockets on Linux. */
static CT_RESULT kbs_http__listen(const struct sockaddr_storage *ss, socklen_t len, bool reuse_port, int *fd_out,
                                  int *port_out, ct_err *err) {
  int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ct_fail(err, CT_EIO, "socket: %s", strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (bind(fd, (const struct sockaddr *)ss, len) != 0 || listen(fd, 1024) != 0) {
    int e = errno;
    close(fd);
    if (e == EADDRINUSE && !reuse_port)
      return ct_fail(err, CT_EIO, "cannot listen: address in use (another process serves this port; replicas "
                     "that share a port need [http_server] reuse_port = true in every one of them)");
    return ct_fail(err, CT_EIO, "cannot listen: %s", strerror(e));
  }
  struct sockaddr_storage bound;
  socklen_t blen = sizeof bound;
  getsockname(fd, (struct sockaddr *)&bound, &blen);
  *port_out = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
  *fd_out = fd;
  return CT_OK;
}

/* Per connection: the framer (kbs_http_frame.h) rewrites the connection's input buffer in place,
 * from a callback that runs when bytes arrive and before evhttp's read callback sees them. The
 * buffer then holds only framed requests (`framed` bytes at its front, which evhttp drains);
 * bytes the framer cannot use yet wait in `pending`. Replies go out unchanged.
 * libevent has no hook for "evhttp freed this bufferevent", so each connection holds a reference
 * on its bufferevent and the loop's periodic check releases connections whose bufferevent evhttp
 * has freed (bufferevent_free clears its callbacks); their socket closes then, within 200 ms.
 * The reference also gives the lingering close after a refusal: evhttp has sent the answer and
 * shut the socket down for writing, and the connection keeps reading and dropping what the peer
 * still sends until it closes, the framer's byte budget is spent or KBS_HTTP_LINGER_MS pass. */
typedef struct kbs_http__conn {
  struct kbs_http__conn *prev, *next; /* the loop's connections */
  kbs_http_frame *frame;
  struct bufferevent *bev;
  struct evbuffer *pending, *scratch;
  size_t framed;
  bool busy;
  int64_t freed_at; /* ms when evhttp was seen to have freed the bufferevent, 0 before */
} kbs_http__conn;

#define KBS_HTTP_LINGER_MS 2000

static int64_t kbs_http__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* evhttp frees a connection's bufferevent with bufferevent_free, which clears its callbacks. */
static bool kbs_http__conn_released(kbs_http__conn *c) {
  if (c->freed_at) return true;
  bufferevent_data_cb rd = NULL, wr = NULL;
  bufferevent_event_cb ev = NULL;
  bufferevent_getcb(c->bev, &rd, &wr, &ev, NULL);
  if (rd || wr || ev) return false;
  c->freed_at = kbs_http__now_ms();
  return true;
}

static void kbs_http__conn_free(kbs_http__conn *c) {
  if (!c) return;
  kbs_http_frame_free(c->frame);
  if (c->pending) evbuffer_free(c->pending);
  if (c->scratch) evbuffer_free(c->scratch);
  free(c);
}

static void kbs_http__frame_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg) {
  kbs_http__conn *c = arg;
  if (c->busy) return; /* our own rewrite below */
  if (kbs_http__conn_released(c)) { /* lingering close, or waiting for the sweep */
    c->busy = true;
    bool unused = false;
    evbuffer_add_buffer(c->pending, buf);
    if (kbs_http_frame_lingering(c->frame)) kbs_http_frame_feed(c->frame, c->pending, c->scratch, &unused);
    evbuffer_drain(c->pending, evbuffer_get_length(c->pending));
    evbuffer_drain(c->scratch, evbuffer_get_length(c->scratch));
    evbuffer_drain(buf, evbuffer_get_length(buf));
    if (!kbs_http_frame_lingering(c->frame)) bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    c->busy = false;
    return;
  }
  c->framed = info->n_deleted >= c->framed ? 0 : c->framed - info->n_deleted;
  size_t len = evbuffer_get_length(buf);
  if (len <= c->framed) {
    c->framed = len;
    return;
  }
  c->busy = true;
  evbuffer_remove_buffer(buf, c->scratch, c->framed);
  evbuffer_add_buffer(c->pending, buf);
  bool send_continue = false;
  if (kbs_http_frame_feed(c->frame, c->pending, c->scratch, &send_continue) == KBS_HTTP_FRAME_FATAL) {
    /* out of memory: nothing more is passed on; the connection times out */
    evbuffer_drain(c->pending, evbuffer_get_length(c->pending));
    CT_LOG_WARN_("kbs", "http: out of memory framing a request; connection abandoned");
  }
  evbuffer_prepend_buffer(buf, c->scratch);
  c->framed = evbuffer_get_length(buf);
  c->busy = false;
  if (send_continue) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    bufferevent_write(c->bev, cont, sizeof cont - 1);
  }
}

/* Every loop accepts on the same socket, and whichever wakes first takes a connection: a burst
 * of 32 keep-alive clients was split 8/24, so the clients of the busier loop waited three times as
 * long and p99 followed them. A loop accepts only while it has no more live connections than the
 * least loaded one; the least loaded always accepts, so a connection never waits for a loop that
 * will not take it. Each loop changes only its own listeners (on its own thread). */
static unsigned kbs_http__least_live(const kbs_http_server *s) {
  unsigned least = UINT_MAX;
  for (unsigned i = 0; i < s->n_workers; i++) {
    unsigned n = atomic_load(&s->workers[i].live);
    if (n < least) least = n;
  }
  return least;
}

static void kbs_http__balance_apply(kbs_http__worker *w) {
  bool want = atomic_load(&w->live) <= kbs_http__least_live(w->server);
  if (want == atomic_load(&w->accepting)) return;
  atomic_store(&w->accepting, want);
  if (w->paused) return; /* kbs_http__accept_resume applies it */
  for (size_t k = 0; k < w->n_listeners; k++) {
    if (want) evconnlistener_enable(w->listeners[k]);
    else evconnlistener_disable(w->listeners[k]);
  }
}

static void kbs_http__rebalance_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  kbs_http__balance_apply(arg);
}

/* After loop `self`'s count changed: it looks again now, and every other loop whose answer
 * changed is asked to (event_active is safe across threads with evthread_use_pthreads). */
static void kbs_http__balance(kbs_http__worker *self) {
  kbs_http_server *s = self->server;
  if (!s->balance) return;
  kbs_http__balance_apply(self);
  unsigned least = kbs_http__least_live(s);
  for (unsigned i = 0; i < s->n_workers; i++) {
    kbs_http__worker *w = &s->workers[i];
    if (w == self || !w->rebalance) continue;
    bool want = atomic_load(&w->live) <= least;
    if (want != atomic_load(&w->accepting)) event_active(w->rebalance, EV_TIMEOUT, 0);
  }
}

static struct bufferevent *kbs_http__bevcb(struct event_base *base, void *arg) {
  kbs_http__worker *w = arg;
  kbs_http_server *s = w->server;
  kbs_http__conn *c = calloc(1, sizeof *c);
  ct_err err;
  if (!c || kbs_http_frame_new(s->max_body, &c->frame, &err) != CT_OK || !(c->pending = evbuffer_new()) ||
      !(c->scratch = evbuffer_new())) {
    kbs_http__conn_free(c);
    return NULL;
  }
  if (s->ssl) {
    SSL *ssl = SSL_new(s->ssl);
    c->bev = ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE)
                 : NULL;
  } else {
    c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
  }
  if (!c->bev || !evbuffer_add_cb(bufferevent_get_input(c->bev), kbs_http__frame_cb, c)) {
    if (c->bev) bufferevent_free(c->bev);
    kbs_http__conn_free(c);
    return NULL;
  }
  bufferevent_incref(c->bev);
  c->next = w->conns;
  if (w->conns) w->conns->prev = c;
  w->conns = c;
  atomic_fetch_add(&w->live, 1);
  kbs_http__balance(w);
  return c->bev;
}

/* Releases the connections whose bufferevent evhttp freed (see kbs_http__conn); all of them when
 * `all` (the loop is gone). */
static void kbs_http__conns_sweep(kbs_http__worker *w, bool all) {
  int64_t now = kbs_http__now_ms();
  bool freed = false;
  for (kbs_http__conn *c = w->conns, *next; c; c = next) {
    next = c->next;
    if (!all) {
      if (!kbs_http__conn_released(c)) continue;
      /* still lingering: the peer has not closed and has budget and time left */
      if ((bufferevent_get_enabled(c->bev) & EV_READ) && kbs_http_frame_lingering(c->frame) &&
          now - c->freed_at < KBS_HTTP_LINGER_MS)
        continue;
    }
    if (c->prev) c->prev->next = c->next;
    else w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    evbuffer_remove_cb(bufferevent_get_input(c->bev), kbs_http__frame_cb, c);
    bufferevent_decref(c->bev);
    kbs_http__conn_free(c);
    atomic_fetch_sub(&w->live, 1);
    freed = true;
  }
  if (freed && !all) kbs_http__balance(w);
}

static kbs_http_method kbs_http__method(enum evhttp_cmd_type t) {
  switch (t) {
  case EVHTTP_REQ_GET: return KBS_GET;
  case EVHTTP_REQ_POST: return KBS_POST;
  case EVHTTP_REQ_PUT: return KBS_PUT;
  case EVHTTP_REQ_DELETE: return KBS_DELETE;
  default: return KBS_OTHER;
  }
}

static const char *kbs_http__job_header(const kbs_http_request *req, const char *name) {
  const kbs_http__job *j = req->native;
  if (!strcasecmp(name, "Authorization")) return j->authorization;
  if (!strcasecmp(name, "Cookie")) return j->cookie;
  return NULL;
}

static void kbs_http__job_free(kbs_http__job *j) {
  pthread_mutex_destroy(&j->mu);
  ct_buf_free_secret(&j->resp.body);
  if (j->body) {
    ct_wipe(j->body, j->req.body_len);
    free(j->body);
  }
  free(j->req.path);
  free(j->uri);
  free(j->query);
  if (j->authorization) ct_wipe(j->authorization, strlen(j->authorization));
  free(j->authorization);
  free(j->cookie);
  free(j);
}

static void kbs_http__send(struct evhttp_request *ereq, kbs_http_response *resp) {
  struct evkeyvalq *oh = evhttp_request_get_output_headers(ereq);
  if (resp->content_type) evhttp_add_header(oh, "Content-Type", resp->content_type);
  if (resp->set_cookie[0]) evhttp_add_header(oh, "Set-Cookie", resp->set_cookie);
  struct evbuffer *out = evbuffer_new();
  if (out && resp->body.len) evbuffer_add(out, resp->body.data, resp->body.len);
  struct evhttp_connection *evcon = evhttp_request_get_connection(ereq);
  evhttp_send_reply(ereq, resp->status, resp->status < 400 ? "OK" : "Error", out);
  if (out) evbuffer_free(out);
  /* The head and the body sit in separate chunks of the output, and the TLS bufferevent writes
   * each chunk as its own record and write(2). Written later by the loop, so joined here a small
   * reply leaves in one record. */
  struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
  struct evbuffer *o = bev ? bufferevent_get_output(bev) : NULL;
  if (o && evbuffer_get_length(o) <= KBS_HTTP_JOIN_MAX) evbuffer_pullup(o, -1);
}

/* Runs on the owning loop when the peer closes while its request is still being handled. */
static void kbs_http__conn_closed(struct evhttp_connection *evcon, void *arg) {
  (void)evcon;
  ((kbs_http__job *)arg)->dead = true;
}

/* Runs on the owning loop once the pool has built the response. */
static void kbs_http__complete(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  kbs_http__job *j = arg;
  if (!j->dead) {
    evhttp_connection_set_closecb(j->evcon, NULL, NULL);
    kbs_http__send(j->ereq, &j->resp);
  }
  kbs_http__job_free(j);
}

static _Thread_local kbs_http__job *kbs_http__current; /* the job this pool thread runs */
static _Thread_local bool kbs_http__blocking_thread;

static void kbs_http__finish(kbs_http__job *j) {
  /* Hand the reply back to the connection's loop; if that fails the loop is gone (shutdown)
   * and evhttp_free releases the request. */
  struct timeval now = {0, 0};
  if (event_base_once(j->loop->base, -1, EV_TIMEOUT, kbs_http__complete, j, &now) != 0) kbs_http__job_free(j);
}

static void kbs_http__enqueue(kbs_http__queue *q, kbs_http__job *j) {
  pthread_mutex_lock(&q->lock);
  j->next = NULL;
  if (q->tail) q->tail->next = j;
  else q->head = j;
  q->tail = j;
  q->len++;
  pthread_cond_signal(&q->cond);
  pthread_mutex_unlock(&q->lock);
}

/* Carries out what was asked for a deferred job (called with j->mu not held). */
static void kbs_http__dispatch_next(kbs_http__job *j) {
  if (j->next_pool < 0) {
    kbs_http__finish(j);
  } else {
    j->state = KBS_HTTP__QUEUED;
    kbs_http__enqueue(j->next_pool == 1 ? &j->server->blocking : &j->server->compute, j);
  }
}

/* Runs one job's handler or continuation, then parks it or passes it on. True when the reply is
 * ready to send (the handler did not defer): the caller sends it. */
static bool kbs_http__run_handler(kbs_http_server *s, kbs_http__job *j) {
  pthread_mutex_lock(&j->mu);
  j->state = KBS_HTTP__RUNNING;
  kbs_http_continuation fn = j->next_fn;
  void *arg = j->next_arg;
  j->next_fn = NULL;
  j->next_arg = NULL;
  j->action = false;
  pthread_mutex_unlock(&j->mu);
  kbs_http__current = j;
  if (fn) fn(s->ctx, &j->req, &j->resp, arg);
  else s->handler(s->ctx, &j->req, &j->resp);
  kbs_http__current = NULL;
  pthread_mutex_lock(&j->mu);
  if (j->state == KBS_HTTP__RUNNING) {
    pthread_mutex_unlock(&j->mu);
    return true;
  }
  bool act = j->action;
  if (!act) j->state = KBS_HTTP__PARKED;
  pthread_mutex_unlock(&j->mu);
  if (act) kbs_http__dispatch_next(j);
  return false;
}

/* Runs one job on a pool thread, then replies, parks it or passes it on. */
static void kbs_http__run_job(kbs_http_server *s, kbs_http__job *j) {
  if (kbs_http__run_handler(s, j)) kbs_http__finish(j);
}

static void *kbs_http__queue_run(void *arg) {
  kbs_http__queue *q = arg;
  kbs_http_server *s = q->server;
  kbs_http__blocking_thread = q->blocking;
  for (;;) {
    pthread_mutex_lock(&q->lock);
    while (!q->head && !atomic_load(&s->stopping)) pthread_cond_wait(&q->cond, &q->lock);
    kbs_http__job *j = q->head;
    if (j) {
      q->head = j->next;
      if (!q->head) q->tail = NULL;
      q->len--;
    }
    pthread_mutex_unlock(&q->lock);
    if (!j) return NULL; /* stopping and drained */
    kbs_http__run_job(s, j);
  }
}

kbs_http_pending *kbs_http_defer(const kbs_http_request *req) {
  kbs_http__job *j = req->native;
  if (!j || j != kbs_http__current) return NULL; /* synthetic requests (fuzzing) cannot defer */
  pthread_mutex_lock(&j->mu);
  j->state = KBS_HTTP__DEFERRED;
  pthread_mutex_unlock(&j->mu);
  return (kbs_http_pending *)j;
}

static void kbs_http__post(kbs_http_pending *p, kbs_http_continuation fn, void *arg, int pool) {
  kbs_http__job *j = (kbs_http__job *)p;
  pthread_mutex_lock(&j->mu);
  j->next_fn = fn;
  j->next_arg = arg;
  j->next_pool = pool;
  if (j->state == KBS_HTTP__DEFERRED) {
    /* The deferring handler still runs: it passes the job on when it returns. */
    j->action = true;
    pthread_mutex_unlock(&j->mu);
    return;
  }
  pthread_mutex_unlock(&j->mu);
  kbs_http__dispatch_next(j);
}

void kbs_http_pending_resume(kbs_http_pending *p, kbs_http_continuation fn, void *arg) { kbs_http__post(p, fn, arg, 0); }
void kbs_http_pending_offload(kbs_http_pending *p, kbs_http_continuation fn, void *arg) { kbs_http__post(p, fn, arg, 1); }
void kbs_http_pending_done(kbs_http_pending *p) { kbs_http__post(p, NULL, NULL, -1); }
kbs_http_response *kbs_http_pending_response(kbs_http_pending *p) { return &((kbs_http__job *)p)->resp; }
bool kbs_http_on_blocking_thread(void) { return kbs_http__blocking_thread; }

bool kbs_http_is_deferred(const kbs_http_request *req) {
  kbs_http__job *j = req->native;
  if (!j || j != kbs_http__current) return false;
  pthread_mutex_lock(&j->mu);
  bool d = j->state != KBS_HTTP__RUNNING;
  pthread_mutex_unlock(&j->mu);
  return d;
}

static char *kbs_http__dup(const char *v) { return v ? strdup(v) : NULL; }

/* Refusals of the HTTP layer: the status, Trustee's error shape and a closed connection. */
static void kbs_http__refuse(struct evhttp_request *ereq, int status, const char *why) {
  char body[512];
  json_t *e = json_pack("{s:s, s:s}", "type", "https://github.com/confidential-containers/kbs/errors/HttpError",
                        "detail", why);
  char *text = e ? json_dumps(e, JSON_COMPACT) : NULL;
  snprintf(body, sizeof body, "%s", text ? text : "{}");
  free(text);
  json_decref(e);
  struct evkeyvalq *oh = evhttp_request_get_output_headers(ereq);
  evhttp_add_header(oh, "Content-Type", "application/json");
  evhttp_add_header(oh, "Connection", "close");
  struct evbuffer *out = evbuffer_new();
  if (out) evbuffer_add(out, body, strlen(body));
  const char *reason = status == 413 ? "Payload Too Large" : status == 431 ? "Request Header Fields Too Large"
                       : status == 501 ? "Not Implemented" : "Bad Request";
  evhttp_send_reply(ereq, status, reason, out);
  if (out) evbuffer_free(out);
}

static bool kbs_http__utf8(const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned char c = s[i];
    size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (!len || i + len > n) return false;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1fu : len == 3 ? c & 0x0fu : c & 0x07u;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3fu);
    }
    /* overlong forms, surrogates, beyond U+10FFFF */
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

static void kbs_http__dispatch(struct evhttp_request *ereq, void *arg) {
  kbs_http__worker *w = arg;
  kbs_http_server *s = w->server;
  struct evkeyvalq *in_headers = evhttp_request_get_input_headers(ereq);
  const char *refusal = evhttp_find_header(in_headers, KBS_HTTP_FRAME_ERROR_HEADER);
  if (refusal) { /* only the framer writes it: "<status> <reason>" */
    char *end = NULL;
    long status = strtol(refusal, &end, 10);
    kbs_http__refuse(ereq, status >= 400 && status < 600 ? (int)status : 400, end && *end ? end + 1 : "bad request");
    return;
  }
  kbs_http__job *j = calloc(1, sizeof *j);
  if (!j) {
    evhttp_send_error(ereq, 503, "Out of memory");
    return;
  }
  pthread_mutex_init(&j->mu, NULL);
  j->server = s;
  j->loop = w;
  j->ereq = ereq;
  j->evcon = evhttp_request_get_connection(ereq);
  j->resp.status = 500;
  ct_buf_init(&j->resp.body, 64u << 20);
  kbs_http_request *req = &j->req;
  req->native = j;
  req->header = kbs_http__job_header;
  req->method = kbs_http__method(evhttp_request_get_command(ereq));
  const struct evhttp_uri *parsed = evhttp_request_get_evhttp_uri(ereq);
  const char *raw_path = parsed ? evhttp_uri_get_path(parsed) : NULL;
  size_t decoded_len = 0;
  req->path = evhttp_uridecode(raw_path ? raw_path : "/", 0, &decoded_len);
  req->path_len = decoded_len;
  if (!req->path || !kbs_http__utf8((const unsigned char *)req->path, decoded_len)) {
    kbs_http__refuse(ereq, 400, req->path ? "the request path does not decode to UTF-8" : "the request path does not decode");
    kbs_http__job_free(j);
    return;
  }
  j->uri = kbs_http__dup(evhttp_request_get_uri(ereq));
  j->query = kbs_http__dup(parsed ? evhttp_uri_get_query(parsed) : NULL);
  j->authorization = kbs_http__dup(evhttp_find_header(in_headers, "Authorization"));
  j->cookie = kbs_http__dup(evhttp_find_header(in_headers, "Cookie"));
  struct evbuffer *in = evhttp_request_get_input_buffer(ereq);
  req->body_len = evbuffer_get_length(in);
  j->body = malloc(req->body_len + 1);
  bool ok = req->path && j->uri && j->body;
  if (ok && req->body_len) evbuffer_copyout(in, j->body, req->body_len);
  if (j->body) j->body[req->body_len] = 0;
  req->uri = j->uri;
  req->query = j->query;
  req->body = j->body;
  if (!ok) {
    evhttp_send_error(ereq, 503, "Out of memory");
    kbs_http__job_free(j);
    return;
  }
  if (s->runs_inline && s->runs_inline(s->ctx, req)) {
    /* CPU work that never waits on the network: run it here, sparing the request the round trip
     * through the compute pool (two thread wake-ups and a cross-thread reply) that cost more CPU
     * than the handler itself for a small request. */
    if (kbs_http__run_handler(s, j)) {
      kbs_http__send(ereq, &j->resp);
      kbs_http__job_free(j);
    } else {
      /* Deferred: finished later through kbs_http__complete on this loop, which runs after this
       * returns, so the close callback is in place before it can be needed. */
      evhttp_connection_set_closecb(j->evcon, kbs_http__conn_closed, j);
    }
    return;
  }
  j->state = KBS_HTTP__QUEUED;
  kbs_http__queue *q = &s->compute;
  pthread_mutex_lock(&q->lock);
  bool full = q->len >= KBS_HTTP_MAX_QUEUE;
  if (!full) {
    if (q->tail) q->tail->next = j;
    else q->head = j;
    q->tail = j;
    q->len++;
    pthread_cond_signal(&q->cond);
  }
  pthread_mutex_unlock(&q->lock);
  if (full) {
    evhttp_send_error(ereq, 503, "Busy");
    kbs_http__job_free(j);
    return;
  }
  evhttp_connection_set_closecb(j->evcon, kbs_http__conn_closed, j);
}

static void kbs_http__accept_resume(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  kbs_http__worker *w = arg;
  w->paused = false;
  for (size_t k = 0; k < w->n_listeners; k++) {
    if (atomic_load(&w->accepting)) evconnlistener_enable(w->listeners[k]);
    else evconnlistener_disable(w->listeners[k]);
  }
}

/* accept() failing for lack of descriptors or memory leaves the connection queued, so the loop
 * would retry at once: a core spinning and, by libevent's default, a log line per failure
 * (millions a minute, found by the attack suite's fd_exhaustion case). The listener rests for
 * 100 ms instead and the failure is logged at most once a second. */
/* The loop a thread runs: libevent hands the error callback evhttp's argument, not ours. */
static _Thread_local kbs_http__worker *kbs_http__self;

static void kbs_http__accept_error(struct evconnlistener *l, void *arg) {
  (void)arg;
  kbs_http__worker *w = kbs_http__self;
  int e = EVUTIL_SOCKET_ERROR();
  static _Atomic long last_log;
  long now = (long)time(NULL);
  long prev = atomic_load(&last_log);
  if (now != prev && atomic_compare_exchange_strong(&last_log, &prev, now))
    CT_LOG_WARN_("kbs", "accept failed (%s): not accepting connections for 100 ms", evutil_socket_error_to_string(e));
  evconnlistener_disable(l);
  struct timeval pause = {0, 100 * 1000};
  if (!w) {
    evconnlistener_enable(l);
    return;
  }
  w->paused = true;
  if (event_base_once(w->base, -1, EV_TIMEOUT, kbs_http__accept_resume, w, &pause) != 0)
    kbs_http__accept_resume(-1, 0, w);
}

/* The default soft limit (often 1024) would make a few hundred idle clients enough to stop
 * new connections; the hard limit is what the administrator granted. */
static void kbs_http__raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) CT_LOG_WARN_("kbs", "cannot raise the open-file limit: %s", strerror(errno));
}

/* A loopbreak sent before a loop starts is lost, so each loop also polls the stop flag. */
static void kbs_http__stop_check(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  kbs_http__worker *w = arg;
  kbs_http__conns_sweep(w, false);
  if (atomic_load(&w->server->stopping)) event_base_loopbreak(w->base);
}

static void *kbs_http__run(void *arg) {
  kbs_http__worker *w = arg;
  kbs_http__self = w;
  event_base_dispatch(w->base);
  return NULL;
}

static CT_RESULT kbs_http__ssl_ctx(const kbs_http_config *cfg, SSL_CTX **out, ct_err *err) {
  CT_ENSURE(cfg->cert_path && cfg->key_path, err, CT_EINVAL,
            "http_server: HTTPS needs both private_key and certificate (or set insecure_http = true)");
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) return ct_fail_ossl(err, CT_ECRYPTO, "cannot create a TLS context");
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_path) != 1) {
    SSL_CTX_free(ctx);
    return ct_fail_ossl(err, CT_EINVAL, "http_server.certificate: cannot load %s", cfg->cert_path);
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key_path, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    SSL_CTX_free(ctx);
    return ct_fail_ossl(err, CT_EINVAL, "http_server.private_key: cannot load %s or it does not match "
                        "the certificate", cfg->key_path);
  }
  *out = ctx;
  return CT_OK;
}

CT_RESULT kbs_http_start(const kbs_http_config *cfg, kbs_http_handler handler, void *ctx,
                         kbs_http_server **out, ct_err *err) {
  CT_ENSURE(cfg->n_sockets > 0 && cfg->n_sockets <= KBS_HTTP_MAX_SOCKETS, err, CT_EINVAL,
            "http_server.sockets must list 1 to %d addresses", KBS_HTTP_MAX_SOCKETS);
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, (void (*)(void))evthread_use_pthreads);
  kbs_http__raise_fd_limit();
  kbs_http_server *s = calloc(1, sizeof *s);
  CT_ENSURE(s, err, CT_ENOMEM, "out of memory");
  s->handler = handler;
  s->runs_inline = cfg->runs_inline;
  s->ctx = ctx;
  kbs_http__queue *queues[2] = {&s->compute, &s->blocking};
  for (int i = 0; i < 2; i++) {
    pthread_mutex_init(&queues[i]->lock, NULL);
    pthread_cond_init(&queues[i]->cond, NULL);
    queues[i]->server = s;
    queues[i]->blocking = i == 1;
  }
  s->n_blocking = cfg->blocking_threads ? cfg->blocking_threads : 8;
  if (s->n_blocking > KBS_HTTP_MAX_POOL) s->n_blocking = KBS_HTTP_MAX_POOL;
  s->max_body = cfg->max_body;
  unsigned n = cfg->workers ? cfg->workers : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
  if (n == 0) n = 1;
  if (n > KBS_HTTP_MAX_WORKERS) n = KBS_HTTP_MAX_WORKERS;
  s->balance = n > 1 && !cfg->reuse_port; /* with reuse_port the kernel spreads connections */
  ct_status st = CT_OK;
  if (cfg->tls) CT_GUARD_GOTO(st, kbs_http__ssl_ctx(cfg, &s->ssl, err), fail);

  struct timeval tv = {cfg->timeout_seconds ? cfg->timeout_seconds : 30, 0};
  for (unsigned i = 0; i < n; i++) {
    kbs_http__worker *w = &s->workers[i];
    w->server = s;
    /* The changelist folds the epoll_ctl calls a request's read/write toggling makes within one
     * loop turn (libevent's caveat, dup()ed descriptors, does not apply: evhttp owns them). */
    struct event_config *ec = event_config_new();
    if (ec) event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = ec ? event_base_new_with_config(ec) : NULL;
    if (ec) event_config_free(ec);
    w->http = w->base ? evhttp_new(w->base) : NULL;
    CT_ENSURE_GOTO(st, w->http, fail, err, CT_ENOMEM, "cannot create an event loop");
    s->n_workers = i + 1;
    evhttp_set_max_body_size(w->http, (ev_ssize_t)cfg->max_body);
    /* the framer bounds the head (KBS_HTTP_FRAME_MAX_HEAD) and answers 431 with a body; the head
     * it passes on is never larger, so this is only a backstop */
    evhttp_set_max_headers_size(w->http, KBS_HTTP_MAX_HEADERS);
    evhttp_set_timeout_tv(w->http, &tv);
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE);
    evhttp_set_default_content_type(w->http, "application/json");
    evhttp_set_gencb(w->http, kbs_http__dispatch, w);
    struct timeval poll = {0, 200 * 1000};
    w->stop_check = event_new(w->base, -1, EV_PERSIST, kbs_http__stop_check, w);
    CT_ENSURE_GOTO(st, w->stop_check && event_add(w->stop_check, &poll) == 0, fail, err, CT_ENOMEM,
                   "cannot create an event");
    evhttp_set_bevcb(w->http, kbs_http__bevcb, w);
    for (size_t k = 0; k < cfg->n_sockets; k++) {
      struct sockaddr_storage ss;
      socklen_t len = 0;
      int fd = -1, port = 0;
      CT_GUARD_GOTO(st, kbs_http__parse_addr(cfg->sockets[k], &ss, &len, err), fail);
      if (i > 0 && !cfg->reuse_port) {
        /* the other loops accept on the first loop's socket */
        fd = fcntl(s->listen_fds[k], F_DUPFD_CLOEXEC, 0);
        CT_ENSURE_GOTO(st, fd >= 0, fail, err, CT_EIO, "http_server.sockets \"%s\": dup: %s", cfg->sockets[k],
                       strerror(errno));
      } else {
        /* Port 0 asks for any port: the first worker picks it, the others join the same one. */
        if (i > 0 && s->ports[k]) {
          if (ss.ss_family == AF_INET6) ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)s->ports[k]);
          else ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)s->ports[k]);
        }
        if (kbs_http__listen(&ss, len, cfg->reuse_port, &fd, &port, err) != CT_OK) {
          st = ct_err_prefix(err, "http_server.sockets \"%s\": ", cfg->sockets[k]);
          goto fail;
        }
        s->ports[k] = port;
        if (i == 0) s->listen_fds[k] = fd;
      }
      struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(w->http, fd);
      if (!bound) {
        close(fd);
        st = ct_fail(err, CT_EIO, "cannot accept on %s", cfg->sockets[k]);
        goto fail;
      }
      struct evconnlistener *lev = evhttp_bound_socket_get_listener(bound);
      evconnlistener_set_error_cb(lev, kbs_http__accept_error);
      w->listeners[w->n_listeners++] = lev;
    }
    atomic_store(&w->accepting, true);
    w->rebalance = event_new(w->base, -1, 0, kbs_http__rebalance_cb, w);
    CT_ENSURE_GOTO(st, w->rebalance, fail, err, CT_ENOMEM, "cannot create an event");
  }
  *out = s;
  return CT_OK;
fail:
  kbs_http_stop(s);
  return st;
}

CT_RESULT kbs_http_run(kbs_http_server *s, ct_err *err) {
  /* As many handler threads as loops: the work is CPU-bound. */
  s->compute.n_threads = s->n_workers < KBS_HTTP_MAX_POOL ? s->n_workers : KBS_HTTP_MAX_POOL;
  s->blocking.n_threads = s->n_blocking;
  /* Handlers evaluate Rego policies, whose evaluator stops at a fraction of the thread's stack:
   * give them a known stack rather than whatever `ulimit -s` the service was started with. */
  pthread_attr_t at;
  CT_ENSURE(pthread_attr_init(&at) == 0, err, CT_ENOMEM, "cannot create thread attributes");
  pthread_attr_setstacksize(&at, KBS_HTTP_HANDLER_STACK);
  kbs_http__queue *queues[2] = {&s->compute, &s->blocking};
  for (int k = 0; k < 2; k++) {
    for (unsigned i = 0; i < queues[k]->n_threads; i++) {
      if (pthread_create(&queues[k]->threads[i], &at, kbs_http__queue_run, queues[k]) != 0) {
        pthread_attr_destroy(&at);
        return ct_fail(err, CT_EIO, "cannot start handler thread %u", i);
      }
      queues[k]->started[i] = true;
    }
  }
  /* The loops run handlers too (runs_inline): the same stack. */
  for (unsigned i = 0; i < s->n_workers; i++) {
    if (pthread_create(&s->workers[i].thread, &at, kbs_http__run, &s->workers[i]) != 0) {
      pthread_attr_destroy(&at);
      return ct_fail(err, CT_EIO, "cannot start worker thread %u", i);
    }
    s->workers[i].started = true;
  }
  pthread_attr_destroy(&at);
  return CT_OK;
}

unsigned kbs_http_loop_connections(const kbs_http_server *s, unsigned loop) {
  return s && loop < s->n_workers ? atomic_load(&s->workers[loop].live) : 0;
}

int kbs_http_bound_port(const kbs_http_server *s, size_t socket_index) {
  return socket_index < KBS_HTTP_MAX_SOCKETS ? s->ports[socket_index] : 0;
}

void kbs_http_stop(kbs_http_server *s) {
  if (!s) return;
  atomic_store(&s->stopping, true);
  /* Handlers first: they may still hand replies to the loops. */
  kbs_http__queue *queues[2] = {&s->compute, &s->blocking};
  for (int k = 0; k < 2; k++) {
    pthread_mutex_lock(&queues[k]->lock);
    pthread_cond_broadcast(&queues[k]->cond);
    pthread_mutex_unlock(&queues[k]->lock);
  }
  for (int k = 0; k < 2; k++)
    for (unsigned i = 0; i < queues[k]->n_threads; i++)
      if (queues[k]->started[i]) pthread_join(queues[k]->threads[i], NULL);
  for (unsigned i = 0; i < s->n_workers; i++)
    if (s->workers[i].base) event_base_loopbreak(s->workers[i].base);
  for (unsigned i = 0; i < s->n_workers; i++)
    if (s->workers[i].started) pthread_join(s->workers[i].thread, NULL);
  /* the teardown below runs each loop once more, after the loops before it were freed */
  s->balance = false;
  for (unsigned i = 0; i < s->n_workers; i++) {
    /* Connections whose peer just closed still have their teardown queued in the loop: let it
     * run, so that nothing (a TLS session, its buffers) outlives the server. */
    for (int k = 0; k < 4 && s->workers[i].base; k++) event_base_loop(s->workers[i].base, EVLOOP_NONBLOCK);
    if (s->workers[i].stop_check) event_free(s->workers[i].stop_check);
    if (s->workers[i].rebalance) event_free(s->workers[i].rebalance);
    if (s->workers[i].http) evhttp_free(s->workers[i].http);
    kbs_http__conns_sweep(&s->workers[i], true);
    if (s->workers[i].base) event_base_free(s->workers[i].base);
  }
  for (int k = 0; k < 2; k++) {
    for (kbs_http__job *j = queues[k]->head, *n; j; j = n) { /* queued but never handled */
      n = j->next;
      kbs_http__job_free(j);
    }
    pthread_cond_destroy(&queues[k]->cond);
    pthread_mutex_destroy(&queues[k]->lock);
  }
  if (s->ssl) SSL_CTX_free(s->ssl);
  free(s);
}
