#include "as_fetch.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ct_log.h"

typedef struct as_fetch__job as_fetch__job;

struct as_fetch__job {
  as_fetch__job *next;
  as_fetcher *f;
  char *key;
  as_fetch_finish_fn finish;
  void *ctx;
  as_fetch_resp resps[AS_FETCH_MAX_GETS];
  size_t n, outstanding;
  int64_t started_ms;
  unsigned refs; /* the fetcher's table while pending + each waiting request thread */
  bool done;
  ct_status st;
  ct_err err;
};

typedef struct as_fetch__neg {
  char *key;
  int64_t until_ms;
  ct_status st;
  char msg[CT_ERR_MSG_MAX];
} as_fetch__neg;

struct as_fetcher {
  char name[64];
  long wait_ms;
  ct_http_pool *pool;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  as_fetch__job *pending; /* running fetches, at most AS_FETCH_MAX_PENDING */
  size_t n_pending;
  bool stopping;
  as_fetch__neg neg[AS_FETCH_NEGATIVE_MAX];
};

static int64_t as_fetch__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int as_fetch_resp_header_at(const as_fetch_resp *r, size_t i, const char **name, const char **value) {
  if (i >= r->nhdrs) return 0;
  const char *p = (const char *)r->hdrs.data;
  for (size_t k = 0; k < i; k++) {
    p += strlen(p) + 1;
    p += strlen(p) + 1;
  }
  *name = p;
  *value = p + strlen(p) + 1;
  return 1;
}

CT_RESULT as_fetcher_new(const as_fetcher_config *cfg, as_fetcher **out, ct_err *err) {
  as_fetcher *f = calloc(1, sizeof *f);
  CT_ENSURE(f, err, CT_ENOMEM, "out of memory");
  snprintf(f->name, sizeof f->name, "%s", cfg && cfg->name ? cfg->name : "remote source");
  f->wait_ms = cfg && cfg->wait_ms ? cfg->wait_ms : AS_FETCH_DEFAULT_WAIT_MS;
  unsigned conc = cfg && cfg->max_concurrent ? cfg->max_concurrent : AS_FETCH_DEFAULT_MAX_CONCURRENT;
  ct_http_pool_opts po = {.max_per_source = conc, .max_active = conc,
                          .max_queued = AS_FETCH_MAX_PENDING * AS_FETCH_MAX_GETS};
  pthread_mutex_init(&f->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&f->cv, &ca);
  pthread_condattr_destroy(&ca);
  ct_status st = ct_http_pool_new(&po, &f->pool, err);
  if (st) {
    as_fetcher_free(f);
    return ct_err_prefix(err, "%s fetcher: ", f->name);
  }
  *out = f;
  return CT_OK;
}

CT_RESULT as_fetcher_get(as_fetcher **slot, pthread_mutex_t *lock, const as_fetcher_config *cfg, as_fetcher **out,
                         ct_err *err) {
  pthread_mutex_lock(lock);
  ct_status st = *slot ? CT_OK : as_fetcher_new(cfg, slot, err);
  *out = *slot;
  pthread_mutex_unlock(lock);
  return st;
}

static void as_fetch__job_release(as_fetch__job *j) {
  if (--j->refs) return;
  for (size_t i = 0; i < j->n; i++) {
    ct_buf_free(&j->resps[i].body);
    ct_buf_free(&j->resps[i].hdrs);
  }
  free(j->key);
  free(j);
}

void as_fetcher_free(as_fetcher *f) {
  if (!f) return;
  pthread_mutex_lock(&f->mu);
  f->stopping = true;
  pthread_mutex_unlock(&f->mu);
  /* Completes every queued or running request (as cancelled) on the I/O thread, then joins it. */
  ct_http_pool_free(f->pool);
  pthread_mutex_lock(&f->mu);
  /* request threads may still wait on a job: the verifier is torn down only when no request
   * runs, so nobody does; release what is left */
  while (f->pending) {
    as_fetch__job *j = f->pending;
    f->pending = j->next;
    as_fetch__job_release(j);
  }
  pthread_mutex_unlock(&f->mu);
  for (size_t i = 0; i < AS_FETCH_NEGATIVE_MAX; i++) free(f->neg[i].key);
  pthread_cond_destroy(&f->cv);
  pthread_mutex_destroy(&f->mu);
  free(f);
}

/* Under f->mu. */
static as_fetch__neg *as_fetch__neg_find(as_fetcher *f, const char *key, int64_t now) {
  for (size_t i = 0; i < AS_FETCH_NEGATIVE_MAX; i++)
    if (f->neg[i].key && f->neg[i].until_ms > now && !strcmp(f->neg[i].key, key)) return &f->neg[i];
  return NULL;
}

/* Under f->mu: remembers a failure, replacing the entry closest to expiry. */
static void as_fetch__neg_add(as_fetcher *f, const char *key, ct_status st, const char *msg, int64_t now) {
  as_fetch__neg *slot = &f->neg[0];
  for (size_t i = 0; i < AS_FETCH_NEGATIVE_MAX; i++) {
    as_fetch__neg *e = &f->neg[i];
    if (!e->key || e->until_ms <= now || !strcmp(e->key, key)) {
      slot = e;
      break;
    }
    if (e->until_ms < slot->until_ms) slot = e;
  }
  char *k = strdup(key);
  if (!k) return;
  free(slot->key);
  slot->key = k;
  slot->until_ms = now + AS_FETCH_NEGATIVE_TTL_S * 1000;
  slot->st = st;
  snprintf(slot->msg, sizeof slot->msg, "%s", msg);
}

/* On the I/O thread: all GETs of a job are in. */
static void as_fetch__complete(as_fetch__job *j) {
  as_fetcher *f = j->f;
  ct_err e = {0};
  ct_status st = CT_OK;
  bool cancelled = false;
  pthread_mutex_lock(&f->mu);
  cancelled = f->stopping;
  pthread_mutex_unlock(&f->mu);
  if (cancelled) st = ct_fail(&e, CT_EIO, "%s: cancelled (shutting down)", f->name);
  else st = j->finish(j->ctx, j->key, j->resps, j->n, &e);
  pthread_mutex_lock(&f->mu);
  j->st = st;
  j->err = e;
  j->done = true;
  int64_t now = as_fetch__now_ms();
  if (st) {
    if (!cancelled) {
      as_fetch__neg_add(f, j->key, st, e.msg, now);
      CT_LOG_WARN_("as", "event=fetch_failed source=\"%s\" key=\"%.80s\" reason=\"%s\"", f->name, j->key, e.msg);
    }
  }
  for (as_fetch__job **pp = &f->pending; *pp; pp = &(*pp)->next)
    if (*pp == j) {
      *pp = j->next;
      f->n_pending--;
      break;
    }
  pthread_cond_broadcast(&f->cv);
  as_fetch__job_release(j);
  pthread_mutex_unlock(&f->mu);
}

typedef struct {
  as_fetch__job *job;
  size_t i;
} as_fetch__get_ud;

static void as_fetch__done(void *ud, ct_status st, ct_http_resp *resp, const ct_err *err) {
  as_fetch__get_ud *g = ud;
  as_fetch__job *j = g->job;
  as_fetch_resp *r = &j->resps[g->i];
  free(g);
  pthread_mutex_lock(&j->f->mu);
  r->st = st;
  r->status = resp->status;
  if (st) snprintf(r->cause, sizeof r->cause, "%s", err->msg);
  else {
    r->body = resp->body;
    resp->body = (ct_buf){0};
    ct_buf_init(&r->hdrs, CT_HTTP_HEADERS_MAX);
    const char *n, *v;
    ct_err e2;
    for (size_t i = 0; ct_http_resp_header_at(resp, i, &n, &v); i++)
      if (ct_buf_append(&r->hdrs, n, strlen(n) + 1, &e2) == CT_OK &&
          ct_buf_append(&r->hdrs, v, strlen(v) + 1, &e2) == CT_OK)
        r->nhdrs++;
  }
  bool last = --j->outstanding == 0;
  pthread_mutex_unlock(&j->f->mu);
  if (last) as_fetch__complete(j);
}

static CT_RESULT as_fetch__retry_msg(as_fetcher *f, const char *key, ct_err *err) {
  return ct_fail(err, CT_EIO,
                 "%s: fetching what this evidence needs (%.80s) in the background; attest again in a few seconds",
                 f->name, key);
}

CT_RESULT as_fetch(as_fetcher *f, const char *key, const char *const *urls, size_t n_urls,
                   const ct_http_opts *opts, as_fetch_finish_fn finish, void *ctx, ct_err *err) {
  CT_ENSURE(n_urls > 0 && n_urls <= AS_FETCH_MAX_GETS, err, CT_EINTERNAL, "as_fetch: 1..%d URLs",
            AS_FETCH_MAX_GETS);
  int64_t now = as_fetch__now_ms();
  pthread_mutex_lock(&f->mu);
  as_fetch__neg *neg = as_fetch__neg_find(f, key, now);
  if (neg) {
    int64_t failed_ms = neg->until_ms - AS_FETCH_NEGATIVE_TTL_S * 1000;
    ct_status st = ct_fail(err, neg->st, "%s (failed %lld s ago; not asked again for %lld s)", neg->msg,
                           (long long)((now - failed_ms) / 1000), (long long)((neg->until_ms - now + 999) / 1000));
    pthread_mutex_unlock(&f->mu);
    return st;
  }
  as_fetch__job *j = NULL;
  for (as_fetch__job *p = f->pending; p; p = p->next)
    if (!strcmp(p->key, key)) j = p;
  if (!j) {
    if (f->stopping || f->n_pending >= AS_FETCH_MAX_PENDING) {
      pthread_mutex_unlock(&f->mu);
      return ct_fail(err, CT_EIO, "%s: %d fetches are already pending; attest again in a few seconds", f->name,
                     AS_FETCH_MAX_PENDING);
    }
    j = calloc(1, sizeof *j);
    if (!j || !(j->key = strdup(key))) {
      free(j);
      pthread_mutex_unlock(&f->mu);
      return ct_fail(err, CT_ENOMEM, "out of memory");
    }
    j->f = f;
    j->finish = finish;
    j->ctx = ctx;
    j->n = n_urls;
    j->outstanding = n_urls;
    j->started_ms = now;
    j->refs = 1;
    /* The table's reference keeps the job until it completes; the completion may run as soon
     * as the first submit returns, so all submits happen under the lock (the I/O thread's
     * completion takes it too). */
    size_t submitted = 0;
    ct_status st = CT_OK;
    ct_err se;
    for (size_t i = 0; i < n_urls && st == CT_OK; i++) {
      as_fetch__get_ud *g = malloc(sizeof *g);
      if (!g) {
        st = ct_fail(&se, CT_ENOMEM, "out of memory");
        break;
      }
      *g = (as_fetch__get_ud){j, i};
      ct_http_req req = {.url = urls[i]};
      st = ct_http_submit(f->pool, opts, &req, f->name, as_fetch__done, g, &se);
      if (st) free(g);
      else submitted++;
    }
    if (st && !submitted) {
      pthread_mutex_unlock(&f->mu);
      as_fetch__job_release(j);
      return ct_fail(err, st, "%s: %s", f->name, se.msg);
    }
    /* A partly submitted job completes with the missing GETs failed. */
    for (size_t i = submitted; i < n_urls; i++) {
      j->resps[i].st = st;
      snprintf(j->resps[i].cause, sizeof j->resps[i].cause, "%s", se.msg);
    }
    j->outstanding -= n_urls - submitted;
    j->next = f->pending;
    f->pending = j;
    f->n_pending++;
  }
  /* Only the first moments of a fetch are waited for, so requests that keep arriving for a
   * source that does not answer do not each hold a thread. */
  int64_t until = j->started_ms + (f->wait_ms > 0 ? f->wait_ms : 0);
  j->refs++;
  while (!j->done && as_fetch__now_ms() < until) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t left = until - as_fetch__now_ms();
    ts.tv_sec += left / 1000;
    ts.tv_nsec += (left % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&f->cv, &f->mu, &ts);
  }
  ct_status st;
  if (!j->done) st = as_fetch__retry_msg(f, key, err);
  else if (j->st) st = ct_fail(err, j->st, "%s", j->err.msg);
  else st = CT_OK;
  as_fetch__job_release(j);
  pthread_mutex_unlock(&f->mu);
  return st;
}
