/*
 * guest_pool.h - worker threads for the guest daemon's blocking work (KBS round trips, image
 * pulls, device set-up), so that the event loop that serves REST and ttRPC never waits on the
 * network. A job's `work` runs on a worker; its `done` runs afterwards on the loop thread
 * (woken through an eventfd), where it answers the request.
 */
#ifndef GUEST_POOL_H
#define GUEST_POOL_H

#include <stddef.h>

#include "ct_status.h"

struct event_base;

#define GUEST_POOL_THREADS_MAX 256

typedef struct guest_pool guest_pool;

typedef void (*guest_pool_work_fn)(void *job);
/* `cancelled` is 1 when the pool was freed before the job ran (work was not called). */
typedef void (*guest_pool_done_fn)(void *job, int cancelled);

CT_RESULT guest_pool_new(struct event_base *base, unsigned threads, size_t max_queued,
                         guest_pool **out, ct_err *err);
/* Queues a job. CT_ELIMIT when max_queued jobs are already waiting. */
CT_RESULT guest_pool_submit(guest_pool *p, guest_pool_work_fn work, guest_pool_done_fn done,
                            void *job, ct_err *err);
/* Stops the workers (a running job finishes first), cancels queued jobs and calls every
 * pending `done` on the calling thread. */
void guest_pool_free(guest_pool *p);

typedef struct guest_pool_stats {
  size_t queued, running;
  unsigned long completed;
} guest_pool_stats;
void guest_pool_get_stats(guest_pool *p, guest_pool_stats *out);

#endif
