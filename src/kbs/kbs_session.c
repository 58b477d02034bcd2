#include "kbs_session.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_codec.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "ct_reader.h"

/* Sealed cookie plaintext: version(1) | expires(8, big-endian) | session id(16) | nonce(32) | tee.
 * The cookie is "v1." + base64url(iv(12) | ciphertext | tag(16)). */
#define KBS_PLAIN_FIXED (1 + 8 + KBS_SID_LEN + 32)
#define KBS_TEE_MAX 31
#define KBS_BUCKETS 4096
/* Single-use nonce records: open addressing, a power of two of slots, at most half full. A record
 * lives until its session expires, so the table holds attestations/s x session timeout: it grows
 * from KBS_NONCE_SET to KBS_NONCE_SET_MAX (1 M live records, 48 MiB, 3,500 attestations/s at the
 * default 5-minute timeout) and shrinks back in the sweep. (A fixed 32,768 records refused every
 * attestation after ~20 s at 1,500/s: make soak found it.) */
#define KBS_NONCE_SET 65536
#define KBS_NONCE_SET_MAX (1u << 21)

typedef struct kbs__entry {
  uint8_t sid[KBS_SID_LEN];
  time_t expires;
  json_t *claims;                    /* the token's payload, parsed; or NULL and: */
  char *token;
  size_t size;                       /* what the entry costs, counted against the byte budget */
  struct kbs__entry *hnext;          /* hash chain */
  struct kbs__entry *prev, *next;    /* LRU list, most recent first */
} kbs__entry;

typedef struct kbs__used {
  uint8_t sid[KBS_SID_LEN];
  time_t expires; /* 0: free slot */
} kbs__used;

struct kbs_sessions {
  /* Fetched once: EVP_aes_256_gcm() makes every EVP_CipherInit_ex look the cipher up in the
   * provider tables again, and every request opens its cookie (a third of the sealing cost). */
  EVP_CIPHER *gcm;
  uint8_t key[32];
  uint8_t old_keys[KBS_MAX_OLD_KEYS][32];
  size_t n_old_keys;
  kbs__used *used; /* nonces of sessions attested here */
  size_t n_used, used_cap;
  pthread_mutex_t lock;
  size_t max, count, bytes;
  kbs__entry *buckets[KBS_BUCKETS];
  kbs__entry *head, *tail;
};

CT_RESULT kbs_sessions_new(size_t max_attested, const uint8_t *key, kbs_sessions **out, ct_err *err) {
  kbs_sessions *s = calloc(1, sizeof *s);
  CT_ENSURE(s, err, CT_ENOMEM, "out of memory");
  if (key) memcpy(s->key, key, sizeof s->key);
  else if (ct_random(s->key, sizeof s->key, err) != CT_OK) {
    free(s);
    return CT_ECRYPTO;
  }
  pthread_mutex_init(&s->lock, NULL);
  s->gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
  if (!s->gcm) {
    kbs_sessions_free(s);
    return ct_fail_ossl(err, CT_ECRYPTO, "session cookies: the AES-256-GCM cipher is not available");
  }
  s->max = max_attested ? max_attested : 1;
  s->used_cap = KBS_NONCE_SET;
  s->used = calloc(s->used_cap, sizeof *s->used);
  if (!s->used) {
    kbs_sessions_free(s);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  *out = s;
  return CT_OK;
}

static void kbs__entry_free(kbs__entry *e) {
  json_decref(e->claims);
  free(e->token);
  free(e);
}

void kbs_session_view_clear(kbs_session_view *view) {
  json_decref(view->claims);
  view->claims = NULL;
  free(view->token);
  view->token = NULL;
}

void kbs_sessions_free(kbs_sessions *s) {
  if (!s) return;
  for (kbs__entry *e = s->head, *n; e; e = n) {
    n = e->next;
    kbs__entry_free(e);
  }
  ct_wipe(s->key, sizeof s->key);
  ct_wipe(s->old_keys, sizeof s->old_keys);
  free(s->used);
  EVP_CIPHER_free(s->gcm);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

/* --- sealing ------------------------------------------------------------------------------------ */

static CT_RESULT kbs__gcm(const EVP_CIPHER *gcm, const uint8_t key[32], bool enc, const uint8_t iv[12],
                          const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16], ct_err *err) {
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  CT_ENSURE(c, err, CT_ENOMEM, "out of memory");
  int n = 0, ok = EVP_CipherInit_ex(c, gcm, NULL, key, iv, enc ? 1 : 0) == 1 &&
                  EVP_CipherUpdate(c, out, &n, in, (int)len) == 1;
  if (ok && !enc) ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1;
  int fin = 0;
  if (ok) ok = EVP_CipherFinal_ex(c, out + n, &fin) == 1;
  if (ok && enc) ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
  EVP_CIPHER_CTX_free(c);
  return ok ? CT_OK : ct_fail(err, CT_ENOTFOUND, "session cookie was not issued by this KBS");
}

/* `iv` is 12 random bytes drawn by the caller with the session's own random bytes: one draw per
 * session instead of two (each costs a lock and a DRBG call). */
static CT_RESULT kbs__seal(const kbs_sessions *s, const uint8_t iv[12], const uint8_t *plain, size_t len,
                           char cookie[KBS_COOKIE_MAX], ct_err *err) {
  uint8_t blob[12 + KBS_PLAIN_FIXED + KBS_TEE_MAX + 16];
  _Static_assert(3 + CT_B64_ENCODED_MAX(sizeof blob) + 1 <= KBS_COOKIE_MAX, "a sealed cookie fits KBS_COOKIE_MAX");
  memcpy(blob, iv, 12);
  CT_GUARD(kbs__gcm(s->gcm, s->key, true, blob, plain, len, blob + 12, blob + 12 + len, err));
  memcpy(cookie, "v1.", 3);
  ct_b64_encode_into(CT_B64_URL, blob, 12 + len + 16, cookie + 3);
  return CT_OK;
}

static CT_RESULT kbs__open(const kbs_sessions *s, const char *cookie, uint8_t *plain, size_t *len, ct_err *err) {
  CT_ENSURE(!strncmp(cookie, "v1.", 3) && strlen(cookie) < KBS_COOKIE_MAX, err, CT_ENOTFOUND,
            "session cookie was not issued by this KBS");
  uint8_t blob[KBS_COOKIE_MAX];
  size_t n = 0;
  if (ct_b64_decode_into(CT_B64_URL, cookie + 3, strlen(cookie + 3), blob, sizeof blob, &n, err) != CT_OK)
    return ct_fail(err, CT_ENOTFOUND, "session cookie was not issued by this KBS");
  ct_status st = CT_OK;
  if (n < 12 + KBS_PLAIN_FIXED + 16 || n > 12 + KBS_PLAIN_FIXED + KBS_TEE_MAX + 16) {
    st = ct_fail(err, CT_ENOTFOUND, "session cookie was not issued by this KBS");
  } else {
    st = kbs__gcm(s->gcm, s->key, false, blob, blob + 12, n - 28, plain, blob + n - 16, err);
    /* Rotation: cookies sealed under a previous key stay valid until they expire. */
    for (size_t i = 0; st != CT_OK && i < s->n_old_keys; i++)
      st = kbs__gcm(s->gcm, s->old_keys[i], false, blob, blob + 12, n - 28, plain, blob + n - 16, err);
  }
  if (st == CT_OK) *len = n - 28;
  return st;
}

CT_RESULT kbs_sessions_create(kbs_sessions *s, const char *tee, unsigned timeout_s, char cookie[KBS_COOKIE_MAX],
                              char nonce[KBS_NONCE_B64_LEN + 1], time_t *expires, ct_err *err) {
  size_t tee_len = strlen(tee);
  CT_ENSURE(tee_len <= KBS_TEE_MAX, err, CT_EINVAL, "tee name too long");
  uint8_t plain[KBS_PLAIN_FIXED + KBS_TEE_MAX];
  time_t exp = time(NULL) + (time_t)timeout_s;
  plain[0] = 1;
  for (int i = 0; i < 8; i++) plain[1 + i] = (uint8_t)((uint64_t)exp >> (56 - 8 * i));
  uint8_t rnd[KBS_SID_LEN + 32 + 12]; /* session id, nonce, the cookie's IV */
  CT_GUARD(ct_random(rnd, sizeof rnd, err));
  memcpy(plain + 9, rnd, KBS_SID_LEN + 32);
  memcpy(plain + KBS_PLAIN_FIXED, tee, tee_len);
  ct_b64_encode_into(CT_B64_STD, plain + 9 + KBS_SID_LEN, 32, nonce);
  *expires = exp;
  ct_status st = kbs__seal(s, rnd + KBS_SID_LEN + 32, plain, KBS_PLAIN_FIXED + tee_len, cookie, err);
  ct_wipe(rnd, sizeof rnd);
  ct_wipe(plain, sizeof plain);
  return st;
}

/* --- attested-token LRU ------------------------------------------------------------------------- */

/* The session id is random: any two of its bytes, in host order, spread the buckets. */
static size_t kbs__bucket(const uint8_t sid[KBS_SID_LEN]) {
  uint16_t h;
  memcpy(&h, sid, sizeof h);
  return h % KBS_BUCKETS;
}

static kbs__entry **kbs__find(kbs_sessions *s, const uint8_t sid[KBS_SID_LEN]) {
  for (kbs__entry **pp = &s->buckets[kbs__bucket(sid)]; *pp; pp = &(*pp)->hnext)
    if (ct_memeq((*pp)->sid, KBS_SID_LEN, sid, KBS_SID_LEN)) return pp;
  return NULL;
}

static void kbs__unlink(kbs_sessions *s, kbs__entry **pp) {
  kbs__entry *e = *pp;
  *pp = e->hnext;
  if (e->prev) e->prev->next = e->next;
  else s->head = e->next;
  if (e->next) e->next->prev = e->prev;
  else s->tail = e->prev;
  s->count--;
  s->bytes -= e->size;
  kbs__entry_free(e);
}

static void kbs__to_front(kbs_sessions *s, kbs__entry *e) {
  if (s->head == e) return;
  if (e->prev) e->prev->next = e->next;
  if (e->next) e->next->prev = e->prev;
  else s->tail = e->prev;
  e->prev = NULL;
  e->next = s->head;
  if (s->head) s->head->prev = e;
  s->head = e;
  if (!s->tail) s->tail = e;
}

CT_RESULT kbs_sessions_get(kbs_sessions *s, const char *cookie, kbs_session_view *view, ct_err *err) {
  memset(view, 0, sizeof *view);
  uint8_t plain[KBS_PLAIN_FIXED + KBS_TEE_MAX];
  size_t len = 0;
  CT_GUARD(kbs__open(s, cookie, plain, &len, err));
  CT_ENSURE(plain[0] == 1 && len >= KBS_PLAIN_FIXED, err, CT_ENOTFOUND, "session cookie has an unknown version");
  ct_reader pr;
  ct_reader_init(&pr, plain, len, "session cookie");
  view->expires = (time_t)ct_peek_u64be(&pr, 1, "expiry");
  CT_ENSURE(view->expires > time(NULL), err, CT_EEXPIRED, "session expired");
  memcpy(view->sid, plain + 9, KBS_SID_LEN);
  memcpy(view->tee, plain + KBS_PLAIN_FIXED, len - KBS_PLAIN_FIXED);
  view->tee[len - KBS_PLAIN_FIXED] = 0;
  ct_b64_encode_into(CT_B64_STD, plain + 9 + KBS_SID_LEN, 32, view->nonce);
  ct_status st = CT_OK;
  pthread_mutex_lock(&s->lock);
  kbs__entry **pp = kbs__find(s, plain + 9);
  if (pp) {
    view->attested = true;
    kbs__to_front(s, *pp);
    if ((*pp)->claims) view->claims = json_incref((*pp)->claims);
    else st = ct_strdup((*pp)->token, &view->token, err);
  }
  pthread_mutex_unlock(&s->lock);
  return st;
}

CT_RESULT kbs_sessions_attest(kbs_sessions *s, const kbs_session_view *view, const char *token, const json_t *claims,
                              ct_err *err) {
  size_t tl = strlen(token);
  CT_ENSURE(tl <= KBS_SESSION_TOKEN_MAX, err, CT_ELIMIT, "attestation token of %zu bytes: more than the limit of %zu",
            tl, KBS_SESSION_TOKEN_MAX);
  kbs__entry *e = calloc(1, sizeof *e);
  CT_ENSURE(e, err, CT_ENOMEM, "out of memory");
  size_t claims_bytes = 0;
  ct_err ignored;
  if (claims && ct_json_sorted_copy(claims, KBS_SESSION_CLAIMS_DEPTH, &e->claims, &claims_bytes, &ignored) == CT_OK) {
    e->size = sizeof *e + claims_bytes;
  } else if (ct_strdup(token, &e->token, err) == CT_OK) {
    e->size = sizeof *e + tl + 1;
  } else {
    free(e);
    return CT_ENOMEM;
  }
  memcpy(e->sid, view->sid, KBS_SID_LEN);
  e->expires = view->expires;
  pthread_mutex_lock(&s->lock);
  kbs__entry **old = kbs__find(s, e->sid);
  if (old) kbs__unlink(s, old);
  while ((s->count >= s->max || s->bytes + e->size > KBS_SESSION_TOKENS_BYTES) && s->tail)
    kbs__unlink(s, kbs__find(s, s->tail->sid));
  size_t b = kbs__bucket(e->sid);
  e->hnext = s->buckets[b];
  s->buckets[b] = e;
  e->next = s->head;
  if (s->head) s->head->prev = e;
  s->head = e;
  if (!s->tail) s->tail = e;
  s->count++;
  s->bytes += e->size;
  pthread_mutex_unlock(&s->lock);
  return CT_OK;
}

CT_RESULT kbs_sessions_add_old_key(kbs_sessions *s, const uint8_t key[32], ct_err *err) {
  CT_ENSURE(s->n_old_keys < KBS_MAX_OLD_KEYS, err, CT_ELIMIT, "more than %d previous session keys", KBS_MAX_OLD_KEYS);
  memcpy(s->old_keys[s->n_old_keys++], key, 32);
  return CT_OK;
}

/* Linear probing from a hash of the (random) session id; deletion by rebuilding in the sweep. */
static size_t kbs__used_slot(const uint8_t sid[KBS_SID_LEN], size_t cap) {
  size_t h = 0;
  memcpy(&h, sid, sizeof h);
  return h & (cap - 1);
}

/* A table of `cap` slots with the records of `from` that expire after `now`; NULL when out of
 * memory. */
static kbs__used *kbs__used_rebuild(const kbs__used *from, size_t from_cap, size_t cap, time_t now, size_t *kept) {
  kbs__used *fresh = calloc(cap, sizeof *fresh);
  if (!fresh) return NULL;
  *kept = 0;
  for (size_t i = 0; i < from_cap; i++) {
    const kbs__used *u = &from[i];
    if (!u->expires || u->expires <= now) continue;
    size_t j = kbs__used_slot(u->sid, cap);
    while (fresh[j].expires) j = (j + 1) & (cap - 1);
    fresh[j] = *u;
    (*kept)++;
  }
  return fresh;
}

CT_RESULT kbs_sessions_claim_nonce(kbs_sessions *s, const kbs_session_view *v, ct_err *err) {
  time_t now = time(NULL);
  ct_status st = CT_OK;
  pthread_mutex_lock(&s->lock);
  if (s->n_used >= s->used_cap / 2 && s->used_cap < KBS_NONCE_SET_MAX) {
    size_t kept = 0;
    kbs__used *bigger = kbs__used_rebuild(s->used, s->used_cap, s->used_cap * 2, now, &kept);
    if (bigger) {
      free(s->used);
      s->used = bigger;
      s->used_cap *= 2;
      s->n_used = kept;
    }
  }
  size_t i = kbs__used_slot(v->sid, s->used_cap);
  for (;; i = (i + 1) & (s->used_cap - 1)) {
    kbs__used *u = &s->used[i];
    if (!u->expires) {
      if (s->n_used >= s->used_cap / 2) {
        st = ct_fail(err, CT_ELIMIT, "%zu sessions are being attested at once: cannot guarantee single-use nonces "
                     "for more; retry shortly", s->n_used);
        break;
      }
      memcpy(u->sid, v->sid, KBS_SID_LEN);
      u->expires = v->expires > now ? v->expires : now + 1;
      s->n_used++;
      break;
    }
    if (!memcmp(u->sid, v->sid, KBS_SID_LEN)) {
      st = ct_fail(err, CT_EDENIED, "this session's nonce was already used: a replayed /attest (nonces are "
                   "single-use; start again with /auth)");
      break;
    }
  }
  pthread_mutex_unlock(&s->lock);
  return st;
}

size_t kbs_sessions_sweep(kbs_sessions *s) {
  /* Expired nonce records go; the table is rebuilt so that probe chains stay intact, at a size
   * that fits what is left (a burst's table does not stay large, nor its sweeps slow). */
  time_t then = time(NULL);
  pthread_mutex_lock(&s->lock);
  if (s->n_used) {
    size_t live = 0;
    for (size_t i = 0; i < s->used_cap; i++) live += s->used[i].expires > then;
    size_t cap = KBS_NONCE_SET;
    while (cap < KBS_NONCE_SET_MAX && cap < live * 4) cap *= 2;
    size_t kept = 0;
    kbs__used *fresh = kbs__used_rebuild(s->used, s->used_cap, cap, then, &kept);
    if (fresh) {
      free(s->used);
      s->used = fresh;
      s->used_cap = cap;
      s->n_used = kept;
    }
  }
  pthread_mutex_unlock(&s->lock);

  size_t removed = 0;
  time_t now = time(NULL);
  pthread_mutex_lock(&s->lock);
  for (kbs__entry *e = s->head, *n; e; e = n) {
    n = e->next;
    if (e->expires <= now) {
      kbs__unlink(s, kbs__find(s, e->sid));
      removed++;
    }
  }
  pthread_mutex_unlock(&s->lock);
  return removed;
}

void kbs_sessions_counts(kbs_sessions *s, size_t *attested, size_t *nonce_records) {
  pthread_mutex_lock(&s->lock);
  *attested = s->count;
  *nonce_records = s->n_used;
  pthread_mutex_unlock(&s->lock);
}
