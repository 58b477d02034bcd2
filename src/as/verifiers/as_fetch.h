/*
 * as_fetch.h - verification collateral (AMD KDS VCEKs, Intel PCS/PCCS TCB info) fetched off the
 * request threads.
 *
 * Evidence names what must be fetched (a chip ID, an FMSPC), so an unauthenticated request can
 * make the KBS go to the network. A request thread never waits on it for long: a fetcher is one
 * remote source with a background I/O thread (ct_http_pool) that caps the requests it has open,
 * runs each fetch once however many requests ask for the same key, remembers failures for a
 * while (negative cache) and bounds how many fetches may be pending. A request that misses the
 * verifier's cache waits at most `wait_ms` after the fetch started; later ones do not wait at all
 * and get a retryable error while the fetch goes on - the client attests again a moment later
 * and finds the result cached.
 */
#ifndef AS_FETCH_H
#define AS_FETCH_H

#include <pthread.h>
#include <stddef.h>

#include "ct_buf.h"
#include "ct_http.h"
#include "ct_status.h"

#define AS_FETCH_MAX_GETS 4
#define AS_FETCH_MAX_PENDING 64     /* fetches queued or running per source; beyond: refused */
#define AS_FETCH_NEGATIVE_MAX 256   /* failures remembered per source */
#define AS_FETCH_NEGATIVE_TTL_S 30  /* how long a failure is remembered */
#define AS_FETCH_DEFAULT_WAIT_MS 20 /* longest wait of a request thread, from the fetch's start */
#define AS_FETCH_DEFAULT_MAX_CONCURRENT 2

typedef struct as_fetcher as_fetcher;

/* One GET's outcome, handed to the finish function. */
typedef struct as_fetch_resp {
  ct_status st;     /* transport outcome (CT_OK: a response came, whatever its status) */
  long status;      /* HTTP status */
  ct_buf body;
  ct_buf hdrs;      /* "name\0value\0" pairs of the response headers */
  size_t nhdrs;
  char cause[CT_ERR_MSG_MAX]; /* on failure: why */
} as_fetch_resp;

/* The value of the i-th response header; 0 past the last. */
int as_fetch_resp_header_at(const as_fetch_resp *r, size_t i, const char **name, const char **value);

/* Turns the responses of a fetch's GETs into the verifier's cached result. Runs on the fetcher's
 * I/O thread (it must not block on the network); `ctx` is the verifier state, alive while the
 * fetcher is. An error here is what waiting and later requests are told (and it is remembered). */
typedef CT_RESULT (*as_fetch_finish_fn)(void *ctx, const char *key, as_fetch_resp *resps, size_t n,
                                        ct_err *err);

typedef struct as_fetcher_config {
  const char *name;        /* "AMD KDS", "Intel PCS" (messages and logs) */
  unsigned max_concurrent; /* requests open at once to the source; 0: AS_FETCH_DEFAULT_MAX_CONCURRENT */
  long wait_ms;            /* 0: AS_FETCH_DEFAULT_WAIT_MS; < 0: no wait */
} as_fetcher_config;

CT_RESULT as_fetcher_new(const as_fetcher_config *cfg, as_fetcher **out, ct_err *err);
/* The fetcher in *slot, created on first use under `lock` (verifier states that never fetch start
 * no thread). */
CT_RESULT as_fetcher_get(as_fetcher **slot, pthread_mutex_t *lock, const as_fetcher_config *cfg, as_fetcher **out,
                         ct_err *err);
/* Cancels what is still pending (finish functions are not called for it) and joins the I/O
 * thread. Safe with NULL. */
void as_fetcher_free(as_fetcher *f);

/*
 * Called by a verifier on a request thread after its cache missed `key`:
 *  - CT_OK: the fetch ran (now or within the wait) and its finish function succeeded: look in
 *    the cache again;
 *  - CT_EIO with a "retry" message: the fetch goes on in the background (or too many are pending);
 *  - another error: the fetch failed, now or within the last AS_FETCH_NEGATIVE_TTL_S seconds.
 * `gets`, `opts` and `key` are copied.
 */
CT_RESULT as_fetch(as_fetcher *f, const char *key, const char *const *urls, size_t n_urls,
                   const ct_http_opts *opts, as_fetch_finish_fn finish, void *ctx, ct_err *err);

#endif
