/*
 * kbs_session.h - RCAR sessions without a session store.
 *
 * Trustee keeps every session in a KV store for its whole lifetime, so memory grows with the
 * handshake rate times the timeout and replicas need a shared store. Here the Authed state (TEE,
 * nonce, expiry) travels in the kbs-session-id cookie itself, sealed with AES-256-GCM under a key
 * only the KBS holds: it costs no memory and any KBS holding the key can continue the handshake.
 * Only attested sessions are remembered, in a bounded LRU of their tokens; a client whose entry
 * was evicted gets TokenNotFound and re-attests, or sends its token as a Bearer.
 *
 * Clients treat the cookie as opaque (upstream clients store and echo it), so its format is free.
 */
#ifndef KBS_SESSION_H
#define KBS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ct_status.h"

#define KBS_COOKIE_MAX 192
#define KBS_NONCE_B64_LEN 44

typedef struct kbs_session_view {
  char tee[32];
  char nonce[KBS_NONCE_B64_LEN + 1];
  time_t expires;
  bool attested;
  char *token; /* copy, caller frees; NULL unless attested and still cached */
} kbs_session_view;

typedef struct kbs_sessions kbs_sessions;

/* `max_attested` bounds the attested-token cache. `key` (32 bytes) seals the cookies; replicas
 * that share it continue each other's handshakes. NULL draws a random key. */
CT_RESULT kbs_sessions_new(size_t max_attested, const uint8_t *key, kbs_sessions **out, ct_err *err);
void kbs_sessions_free(kbs_sessions *s);
/* Starts a session: fills the cookie value, the nonce (standard base64 of 32 random bytes) and
 * the expiry. */
CT_RESULT kbs_sessions_create(kbs_sessions *s, const char *tee, unsigned timeout_s, char cookie[KBS_COOKIE_MAX],
                              char nonce[KBS_NONCE_B64_LEN + 1], time_t *expires, ct_err *err);
/* Opens a cookie: CT_ENOTFOUND when it was not sealed by this KBS, CT_EEXPIRED when too old. */
CT_RESULT kbs_sessions_get(kbs_sessions *s, const char *cookie, kbs_session_view *view, ct_err *err);
/* Remembers the token issued to a session until the session expires or is evicted. */
CT_RESULT kbs_sessions_attest(kbs_sessions *s, const char *cookie, const char *token, ct_err *err);
/* Drops expired tokens; returns how many. */
size_t kbs_sessions_sweep(kbs_sessions *s);

#endif
