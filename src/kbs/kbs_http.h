/*
 * kbs_http.h - the KBS's HTTP(S) server: libevent evhttp, one event loop per worker thread,
 * all accepting on one listening socket per address (or, with reuse_port, each with its own
 * SO_REUSEPORT listener), TLS through bufferevent_openssl.
 *
 * Loops do I/O and TLS only; handlers run on a pool of as many threads, fed in one FIFO order
 * across all connections. A handler gets copies of the request line, the Authorization and
 * Cookie headers and the body (bounded by max_body), so it never touches libevent objects.
 */
#ifndef KBS_HTTP_H
#define KBS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_buf.h"
#include "ct_status.h"

typedef enum kbs_http_method { KBS_GET, KBS_POST, KBS_PUT, KBS_DELETE, KBS_OTHER } kbs_http_method;

typedef struct kbs_http_request {
  kbs_http_method method;
  const char *uri;    /* as received: path and query */
  char *path;         /* percent-decoded path without the query */
  size_t path_len;    /* decoded length: larger than strlen(path) when the path held %00 */
  const char *query;  /* raw query string without '?', or NULL */
  const uint8_t *body;
  size_t body_len;
  /* Header lookup (case-insensitive name); NULL when absent. The server provides Authorization
   * and Cookie; synthetic requests (fuzzing, tests) provide their own. */
  const char *(*header)(const struct kbs_http_request *req, const char *name);
  void *native;       /* struct evhttp_request *, or the header source of a synthetic request */
} kbs_http_request;

/* Returns a request header or NULL. */
const char *kbs_http_header(const kbs_http_request *req, const char *name);

typedef struct kbs_http_response {
  int status;
  const char *content_type; /* static string or NULL */
  ct_buf body;
  char set_cookie[320];
} kbs_http_response;

typedef void (*kbs_http_handler)(void *ctx, const kbs_http_request *req, kbs_http_response *resp);

/* --- replies that wait --------------------------------------------------------------------
 * A handler that needs slow I/O (a remote storage backend, Vault) must not hold a compute
 * thread. It calls kbs_http_defer: when it returns, no reply is sent; the request and response
 * stay valid until the reply is finished with kbs_http_pending_done, or the work continues with
 * kbs_http_pending_resume (on the compute pool) or kbs_http_pending_offload (on the blocking
 * pool, whose threads may wait on the network). A continuation may defer again. resume, offload
 * and done may be called from any thread, also before the deferring handler returned. */
typedef struct kbs_http_pending kbs_http_pending;
typedef void (*kbs_http_continuation)(void *ctx, const kbs_http_request *req, kbs_http_response *resp, void *arg);
/* Only from inside a handler or continuation, for the request it was given. */
kbs_http_pending *kbs_http_defer(const kbs_http_request *req);
void kbs_http_pending_resume(kbs_http_pending *p, kbs_http_continuation fn, void *arg);
void kbs_http_pending_offload(kbs_http_pending *p, kbs_http_continuation fn, void *arg);
void kbs_http_pending_done(kbs_http_pending *p);
kbs_http_response *kbs_http_pending_response(kbs_http_pending *p);
/* True once the handler running this request deferred it (its response is no longer its own). */
bool kbs_http_is_deferred(const kbs_http_request *req);
/* True on a blocking-pool thread (where waiting on I/O is allowed). */
bool kbs_http_on_blocking_thread(void);

/* Decides, on the loop thread, whether a request's handler may run right there: only for work
 * that never waits on I/O (it may still defer). NULL: every request goes to the compute pool. */
typedef bool (*kbs_http_inline_fn)(void *ctx, const kbs_http_request *req);

typedef struct kbs_http_config {
  const char *const *sockets; /* "IP:port" or "[IPv6]:port" */
  size_t n_sockets;
  bool tls;
  const char *cert_path;
  const char *key_path;
  size_t max_body;           /* bytes */
  unsigned workers;          /* event-loop threads; 0 = number of CPUs */
  unsigned blocking_threads; /* threads for kbs_http_pending_offload; 0 = 8 */
  unsigned timeout_seconds;  /* idle/read/write timeout per connection */
  /* SO_REUSEPORT: other processes (replicas) may listen on the same port and the kernel splits
   * connections between them. Off, a port that another process serves fails start-up with
   * "address in use", so a stale or misconfigured instance never silently takes traffic. */
  bool reuse_port;
  kbs_http_inline_fn runs_inline;
} kbs_http_config;

typedef struct kbs_http_server kbs_http_server;

/* Loads the TLS key and certificate and binds every socket for every worker; serves nothing
 * until kbs_http_run. Split in two so a root process can drop privileges in between. */
CT_RESULT kbs_http_start(const kbs_http_config *cfg, kbs_http_handler handler, void *ctx,
                         kbs_http_server **out, ct_err *err);
/* Starts the worker threads. */
CT_RESULT kbs_http_run(kbs_http_server *s, ct_err *err);
/* Ports actually bound (useful when a config asks for port 0). */
int kbs_http_bound_port(const kbs_http_server *s, size_t socket_index);
/* Live connections of event loop `loop` (0 past the last): what accept balancing keeps even. */
unsigned kbs_http_loop_connections(const kbs_http_server *s, unsigned loop);
/* Stops the loops, joins the threads and frees everything. */
void kbs_http_stop(kbs_http_server *s);

#endif
