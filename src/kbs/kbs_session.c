#include "kbs_session.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "ct_codec.h"
#include "ct_mem.h"

typedef struct kbs__session {
  char id[KBS_SESSION_ID_LEN + 1];
  char tee[32];
  char nonce[KBS_NONCE_B64_LEN + 1];
  time_t expires;
  char *token;
  struct kbs__session *next;
} kbs__session;

#define KBS_BUCKETS 4096

struct kbs_sessions {
  pthread_mutex_t lock;
  size_t max;
  size_t count;
  kbs__session *buckets[KBS_BUCKETS];
};

ct_status kbs_sessions_new(size_t max_sessions, kbs_sessions **out, ct_err *err) {
  kbs_sessions *s = calloc(1, sizeof *s);
  CT_ENSURE(s, err, CT_ENOMEM, "out of memory");
  pthread_mutex_init(&s->lock, NULL);
  s->max = max_sessions;
  *out = s;
  return CT_OK;
}

static void kbs__session_free(kbs__session *e) {
  free(e->token);
  free(e);
}

void kbs_sessions_free(kbs_sessions *s) {
  if (!s) return;
  for (size_t b = 0; b < KBS_BUCKETS; b++)
    for (kbs__session *e = s->buckets[b], *n; e; e = n) {
      n = e->next;
      kbs__session_free(e);
    }
  pthread_mutex_destroy(&s->lock);
  free(s);
}

/* Ids are random, so their first hex digits are already a uniform hash. */
static size_t kbs__bucket(const char *id) {
  size_t h = 0;
  for (int i = 0; i < 6 && id[i]; i++) h = h * 16 + (size_t)(id[i] <= '9' ? id[i] - '0' : id[i] - 'a' + 10);
  return h % KBS_BUCKETS;
}

static size_t kbs__sweep_locked(kbs_sessions *s, time_t now) {
  size_t removed = 0;
  for (size_t b = 0; b < KBS_BUCKETS; b++) {
    for (kbs__session **pp = &s->buckets[b]; *pp;) {
      if ((*pp)->expires <= now) {
        kbs__session *e = *pp;
        *pp = e->next;
        kbs__session_free(e);
        s->count--;
        removed++;
      } else {
        pp = &(*pp)->next;
      }
    }
  }
  return removed;
}

size_t kbs_sessions_sweep(kbs_sessions *s) {
  pthread_mutex_lock(&s->lock);
  size_t n = kbs__sweep_locked(s, time(NULL));
  pthread_mutex_unlock(&s->lock);
  return n;
}

ct_status kbs_sessions_create(kbs_sessions *s, const char *tee, unsigned timeout_s, char id[KBS_SESSION_ID_LEN + 1],
                              char nonce[KBS_NONCE_B64_LEN + 1], time_t *expires, ct_err *err) {
  uint8_t raw[16 + 32];
  CT_GUARD(ct_random(raw, sizeof raw, err));
  raw[6] = (uint8_t)((raw[6] & 0x0f) | 0x40); /* UUID version 4 */
  raw[8] = (uint8_t)((raw[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  kbs__session *e = calloc(1, sizeof *e);
  CT_ENSURE(e, err, CT_ENOMEM, "out of memory");
  ct_hex_into(raw, 16, e->id);
  char *b64 = NULL;
  ct_status st = ct_b64_encode(CT_B64_STD, raw + 16, 32, &b64, err);
  if (st != CT_OK) {
    free(e);
    return st;
  }
  memcpy(e->nonce, b64, KBS_NONCE_B64_LEN + 1);
  free(b64);
  snprintf(e->tee, sizeof e->tee, "%s", tee);
  time_t now = time(NULL);
  e->expires = now + (time_t)timeout_s;
  pthread_mutex_lock(&s->lock);
  if (s->count >= s->max) kbs__sweep_locked(s, now);
  if (s->count >= s->max) {
    pthread_mutex_unlock(&s->lock);
    free(e);
    return ct_fail(err, CT_ELIMIT, "too many concurrent sessions (limit %zu); retry later", s->max);
  }
  size_t b = kbs__bucket(e->id);
  e->next = s->buckets[b];
  s->buckets[b] = e;
  s->count++;
  pthread_mutex_unlock(&s->lock);
  memcpy(id, e->id, KBS_SESSION_ID_LEN + 1);
  memcpy(nonce, e->nonce, KBS_NONCE_B64_LEN + 1);
  *expires = e->expires;
  return CT_OK;
}

static bool kbs__valid_id(const char *id) {
  if (strlen(id) != KBS_SESSION_ID_LEN) return false;
  for (const char *p = id; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
  return true;
}

static kbs__session **kbs__find(kbs_sessions *s, const char *id) {
  kbs__session **pp = &s->buckets[kbs__bucket(id)];
  for (; *pp; pp = &(*pp)->next)
    if (ct_memeq((*pp)->id, KBS_SESSION_ID_LEN, id, KBS_SESSION_ID_LEN)) return pp;
  return NULL;
}

ct_status kbs_sessions_get(kbs_sessions *s, const char *id, kbs_session_view *view, ct_err *err) {
  CT_ENSURE(kbs__valid_id(id), err, CT_ENOTFOUND, "session cookie is not a session id");
  memset(view, 0, sizeof *view);
  ct_status st = CT_OK;
  pthread_mutex_lock(&s->lock);
  kbs__session **pp = kbs__find(s, id);
  if (!pp) {
    st = ct_fail(err, CT_ENOTFOUND, "unknown session (never created, expired and swept, or created by another KBS)");
  } else if ((*pp)->expires <= time(NULL)) {
    kbs__session *e = *pp;
    *pp = e->next;
    kbs__session_free(e);
    s->count--;
    st = ct_fail(err, CT_EEXPIRED, "session expired");
  } else {
    kbs__session *e = *pp;
    memcpy(view->tee, e->tee, sizeof view->tee);
    memcpy(view->nonce, e->nonce, sizeof view->nonce);
    view->expires = e->expires;
    view->attested = e->token != NULL;
    if (e->token) st = ct_strdup(e->token, &view->token, err);
  }
  pthread_mutex_unlock(&s->lock);
  return st;
}

ct_status kbs_sessions_attest(kbs_sessions *s, const char *id, const char *token, ct_err *err) {
  char *copy = NULL;
  CT_GUARD(ct_strdup(token, &copy, err));
  ct_status st = CT_OK;
  pthread_mutex_lock(&s->lock);
  kbs__session **pp = kbs__valid_id(id) ? kbs__find(s, id) : NULL;
  if (!pp) {
    st = ct_fail(err, CT_ENOTFOUND, "session vanished during attestation");
    free(copy);
  } else {
    free((*pp)->token);
    (*pp)->token = copy;
  }
  pthread_mutex_unlock(&s->lock);
  return st;
}
