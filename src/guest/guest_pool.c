/*
 * guest_pool.c - worker threads with completions delivered to a libevent loop (see
 * guest_pool.h).
 */
#include "guest_pool.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct guest_pool__job {
  guest_pool_work_fn work;
  guest_pool_done_fn done;
  void *ud;
  struct guest_pool__job *next;
} guest_pool__job;

struct guest_pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  guest_pool__job *head, *tail;   /* waiting to run (FIFO) */
  guest_pool__job *finished;      /* ran; `done` pending on the loop (LIFO, reversed on drain) */
  size_t queued, max_queued, running;
  unsigned long completed;
  int stopping;
  int efd;
  struct event *ev;
  pthread_t *threads;
  unsigned nthreads;
};

static void *guest_pool__worker(void *arg) {
  guest_pool *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->head && !p->stopping) pthread_cond_wait(&p->cv, &p->mu);
    if (p->stopping) break;
    guest_pool__job *j = p->head;
    p->head = j->next;
    if (!p->head) p->tail = NULL;
    p->queued--;
    p->running++;
    pthread_mutex_unlock(&p->mu);
    j->work(j->ud);
    pthread_mutex_lock(&p->mu);
    p->running--;
    j->next = p->finished;
    p->finished = j;
    uint64_t one = 1;
    /* An eventfd write only fails when the counter would overflow, which cannot happen here. */
    ssize_t w = write(p->efd, &one, sizeof one);
    (void)w;
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static void guest_pool__drain(guest_pool *p) {
  pthread_mutex_lock(&p->mu);
  guest_pool__job *list = p->finished;
  p->finished = NULL;
  pthread_mutex_unlock(&p->mu);
  guest_pool__job *rev = NULL;
  while (list) {
    guest_pool__job *n = list->next;
    list->next = rev;
    rev = list;
    list = n;
  }
  while (rev) {
    guest_pool__job *n = rev->next;
    rev->done(rev->ud, 0);
    free(rev);
    __atomic_add_fetch(&p->completed, 1, __ATOMIC_RELAXED);
    rev = n;
  }
}

static void guest_pool__on_event(evutil_socket_t fd, short what, void *ud) {
  (void)what;
  uint64_t v;
  ssize_t r = read(fd, &v, sizeof v);
  (void)r;
  guest_pool__drain(ud);
}

CT_RESULT guest_pool_new(struct event_base *base, unsigned threads, size_t max_queued,
                         guest_pool **out, ct_err *err) {
  CT_ENSURE(threads >= 1 && threads <= GUEST_POOL_THREADS_MAX, err, CT_EINVAL,
            "worker pool: thread count must be 1..%d", GUEST_POOL_THREADS_MAX);
  guest_pool *p = calloc(1, sizeof *p);
  CT_ENSURE(p, err, CT_ENOMEM, "worker pool: out of memory");
  p->max_queued = max_queued;
  p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  p->threads = calloc(threads, sizeof *p->threads);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  ct_status st = CT_OK;
  if (p->efd < 0 || !p->threads) {
    st = ct_fail(err, CT_ENOMEM, "worker pool: %s", p->efd < 0 ? strerror(errno) : "out of memory");
    goto fail;
  }
  p->ev = event_new(base, p->efd, EV_READ | EV_PERSIST, guest_pool__on_event, p);
  if (!p->ev || event_add(p->ev, NULL)) {
    st = ct_fail(err, CT_ENOMEM, "worker pool: cannot register the completion event");
    goto fail;
  }
  for (; p->nthreads < threads; p->nthreads++) {
    int rc = pthread_create(&p->threads[p->nthreads], NULL, guest_pool__worker, p);
    if (rc) {
      st = ct_fail(err, CT_ENOMEM, "worker pool: pthread_create: %s", strerror(rc));
      goto fail;
    }
  }
  *out = p;
  return CT_OK;
fail:
  guest_pool_free(p);
  return st;
}

CT_RESULT guest_pool_submit(guest_pool *p, guest_pool_work_fn work, guest_pool_done_fn done,
                            void *ud, ct_err *err) {
  guest_pool__job *j = calloc(1, sizeof *j);
  CT_ENSURE(j, err, CT_ENOMEM, "worker pool: out of memory");
  j->work = work;
  j->done = done;
  j->ud = ud;
  pthread_mutex_lock(&p->mu);
  if (p->queued >= p->max_queued || p->stopping) {
    size_t q = p->queued;
    int stopping = p->stopping;
    pthread_mutex_unlock(&p->mu);
    free(j);
    if (stopping) return ct_fail(err, CT_ELIMIT, "server shutting down: no new requests are taken");
    return ct_fail(err, CT_ELIMIT, "server busy: %zu requests are already waiting", q);
  }
  if (p->tail) p->tail->next = j;
  else p->head = j;
  p->tail = j;
  p->queued++;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return CT_OK;
}

void guest_pool_free(guest_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stopping = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (unsigned i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
  guest_pool__drain(p);
  for (guest_pool__job *j = p->head; j;) {
    guest_pool__job *n = j->next;
    j->done(j->ud, 1);
    free(j);
    j = n;
  }
  if (p->ev) event_free(p->ev);
  if (p->efd >= 0) close(p->efd);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->threads);
  free(p);
}

void guest_pool_get_stats(guest_pool *p, guest_pool_stats *out) {
  pthread_mutex_lock(&p->mu);
  out->queued = p->queued;
  out->running = p->running;
  pthread_mutex_unlock(&p->mu);
  out->completed = __atomic_load_n(&p->completed, __ATOMIC_RELAXED);
}
