/*
 * ct_http.h - the project's one HTTP client path (libcurl underneath).
 *
 * Every outbound HTTP exchange goes through here, so timeouts, the response size cap, TLS trust,
 * proxy handling, retries and error texts are decided once:
 *  - HTTP/1.1 always (Trustee's actix server mishandles HTTP/2 on admin paths and the upstream
 *    clients speak HTTP/1.1); only http:// and https://; redirects are not followed (the caller
 *    sees the 3xx and its Location).
 *  - A response body larger than `max_body` is refused with CT_ELIMIT, never truncated.
 *  - A body may stream to a caller's sink instead of memory (ct_http_req.sink), under the same cap.
 *  - Errors read "<METHOD> <URL>: <cause>" and never carry request headers or bodies (which may
 *    hold tokens or secrets); header copies made here are wiped before they are freed.
 *  - Retries happen only when the caller asks (`attempts` > 1 and `retry_on`), with exponential
 *    backoff and, optionally, the server's Retry-After.
 *
 * Two ways to call:
 *  - synchronous: ct_http_call (one shot) or a ct_http_client, which keeps one libcurl handle
 *    (connection keep-alive) and, when asked, an in-memory cookie jar across requests. A client
 *    is not thread-safe: one per thread, or serialise its use.
 *  - asynchronous: a ct_http_pool owns one background I/O thread driving curl_multi. Requests
 *    are queued with ct_http_submit and complete through a callback. The pool caps concurrent
 *    requests per source (a named pool, or the URL's scheme://host:port) and in total, bounds
 *    its queue, and bounds each request's whole life (queueing, attempts, backoff) by
 *    `deadline_ms`. Use it so that no request thread waits on the network.
 */
#ifndef CT_HTTP_H
#define CT_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "ct_buf.h"
#include "ct_status.h"

#define CT_HTTP_DEFAULT_MAX_BODY (16u << 20)
#define CT_HTTP_HEADERS_MAX (256u << 10) /* all response header lines together */
#define CT_HTTP_URL_MAX 8192

/* When to retry (opts.retry_on). Nothing is retried unless asked. */
enum {
  CT_HTTP_RETRY_TIMEOUT = 1u << 0,   /* the attempt timed out */
  CT_HTTP_RETRY_TRANSPORT = 1u << 1, /* any transport failure (includes timeouts) */
  CT_HTTP_RETRY_429 = 1u << 2,       /* HTTP 429 Too Many Requests */
  CT_HTTP_RETRY_5XX = 1u << 3,       /* HTTP 500-599 */
};

typedef struct ct_http_opts {
  /* TLS trust: a CA bundle file and/or in-memory PEM (one wins: the PEM). Neither: the system
   * store. `insecure` turns peer and host verification off (explicit opt-in only). */
  const char *ca_file;
  const char *ca_pem;
  int insecure;
  /* Optional client certificate and key, as files or as in-memory PEM. */
  const char *client_cert_file, *client_key_file;
  const char *client_cert_pem, *client_key_pem;
  /* Proxy: NULL follows the environment (http_proxy, https_proxy, no_proxy); a URL names one
   * explicitly. `no_proxy` set never uses a proxy, whatever the environment says. */
  const char *proxy;
  int no_proxy;
  long connect_timeout_ms; /* 0: min(10 s, timeout_ms) */
  long timeout_ms;         /* whole exchange, per attempt; 0: 60 s */
  size_t max_body;         /* 0: CT_HTTP_DEFAULT_MAX_BODY */
  unsigned attempts;       /* 0 or 1: a single attempt */
  unsigned retry_on;       /* CT_HTTP_RETRY_* flags */
  unsigned backoff_ms;     /* first retry delay, doubled each retry; 0: 500 ms */
  unsigned backoff_max_ms; /* cap on one delay; 0: 5 s */
  /* > 0: a Retry-After of at most 60 s replaces the backoff delay, capped at this value. */
  unsigned retry_after_max_ms;
  int cookies;             /* ct_http_client only: keep an in-memory cookie jar */
  const char *user_agent;  /* NULL: "coco-trust/0.1" */
  const char *log_tag;     /* module name for the retry warnings; NULL: "http" */
  /* ct_http_pool only: the request's whole life (queue wait, attempts, backoff); 0: 2 minutes. */
  long deadline_ms;
} ct_http_opts;

/* A streaming sink for response bodies: gets the body of a 2xx response piece by piece as it
 * arrives. CT_OK continues; a failure aborts the transfer, and the call fails with the sink's code
 * and its message as the cause ("<METHOD> <URL>: <message>"). */
typedef CT_RESULT (*ct_http_sink_fn)(void *ud, const uint8_t *data, size_t len, ct_err *err);

typedef struct ct_http_req {
  const char *method;           /* NULL: "GET" */
  const char *url;
  const char *const *headers;   /* NULL-terminated "Name: value" lines; may be NULL */
  const void *body;             /* NULL: no body */
  size_t body_len;
  /* Optional: a 2xx response's body goes to `sink` instead of resp->body, so it never has to fit
   * in memory (other statuses keep their body in resp->body, for the caller's error text).
   * `max_body` caps the bytes delivered, refused as for buffered bodies (CT_ELIMIT, same text).
   * An attempt that has delivered bytes to the sink is never retried (they cannot be taken
   * back); the caller starts over instead. With ct_http_submit the sink runs on the pool's I/O
   * thread, and `sink_ud` must outlive the request. */
  ct_http_sink_fn sink;
  void *sink_ud;
} ct_http_req;

typedef struct ct_http_resp {
  long status;        /* status of the final attempt; 0 when no response came */
  ct_buf body;        /* NUL-terminated; take it with ct_buf_take to keep it */
  unsigned attempts;  /* attempts made */
  char cause[256];    /* on failure, the cause alone ("Connection refused", ...) */
  ct_buf hdr__;       /* private: "name\0value\0" pairs of the final response */
  size_t nhdr__;
} ct_http_resp;

/* The value of the first response header called `name` (case-insensitive), or NULL. */
const char *ct_http_resp_header(const ct_http_resp *r, const char *name);
/* Response headers in order: returns 0 past the last one. */
int ct_http_resp_header_at(const ct_http_resp *r, size_t i, const char **name, const char **value);
void ct_http_resp_free(ct_http_resp *r);

/* --- synchronous ------------------------------------------------------------------------ */

typedef struct ct_http_client ct_http_client;

/* `opts` is copied. */
CT_RESULT ct_http_client_new(const ct_http_opts *opts, ct_http_client **out, ct_err *err);
void ct_http_client_free(ct_http_client *c);

/* Performs `req` (with retries as configured). CT_OK means a response arrived, whatever its
 * status: resp->status tells. Transport failures are CT_EIO, an oversized body CT_ELIMIT; on
 * failure resp holds no body but still carries `attempts`, `cause` and the last status. */
CT_RESULT ct_http_do(ct_http_client *c, const ct_http_req *req, ct_http_resp *resp, ct_err *err);

/* One request with a throw-away client. */
CT_RESULT ct_http_call(const ct_http_opts *opts, const ct_http_req *req, ct_http_resp *resp,
                       ct_err *err);

/* --- asynchronous ----------------------------------------------------------------------- */

typedef struct ct_http_pool ct_http_pool;

typedef struct ct_http_pool_opts {
  unsigned max_per_source; /* concurrent requests per source; 0: 4 */
  unsigned max_active;     /* concurrent requests in total; 0: 32 */
  unsigned max_queued;     /* requests waiting or running; beyond, ct_http_submit fails; 0: 1024 */
} ct_http_pool_opts;

/* Completion: `st` and `err` as ct_http_do would give them; `resp` is valid only during the
 * call (take the body with ct_buf_take to keep it). Runs ON THE POOL'S I/O THREAD: it must not
 * block; it may call ct_http_submit, and must not call ct_http_pool_free. */
typedef void (*ct_http_done_fn)(void *ud, ct_status st, ct_http_resp *resp, const ct_err *err);

/* Starts the I/O thread. `opts` may be NULL for defaults. */
CT_RESULT ct_http_pool_new(const ct_http_pool_opts *opts, ct_http_pool **out, ct_err *err);
/* Stops the I/O thread; requests still queued or running complete first with CT_EIO
 * ("cancelled"), on the I/O thread. Safe with NULL. */
void ct_http_pool_free(ct_http_pool *p);

/* Queues `req` (everything, headers and body included, is copied). `source` names the
 * concurrency pool it counts against; NULL uses the URL's scheme://host:port. On CT_OK, `done`
 * runs exactly once; on failure (queue full: CT_ELIMIT; bad URL) it never runs. */
CT_RESULT ct_http_submit(ct_http_pool *p, const ct_http_opts *opts, const ct_http_req *req,
                         const char *source, ct_http_done_fn done, void *ud, ct_err *err);

/* Submits and waits for completion: for callers on a worker thread that may block but still
 * want the pool's per-source cap. Must not be called on the pool's I/O thread. */
CT_RESULT ct_http_pool_do(ct_http_pool *p, const ct_http_opts *opts, const ct_http_req *req,
                          const char *source, ct_http_resp *resp, ct_err *err);

#endif
