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

#include <jansson.h>

#include "ct_status.h"

#define KBS_COOKIE_MAX 192
#define KBS_NONCE_B64_LEN 44

#define KBS_SID_LEN 16
#define KBS_MAX_OLD_KEYS 8

typedef struct kbs_session_view {
  uint8_t sid[KBS_SID_LEN]; /* the session's random id (names its shared records) */
  char tee[32];
  char nonce[KBS_NONCE_B64_LEN + 1];
  time_t expires;
  bool attested;
  /* When attested and still cached, one of: the token's claims as its payload parses (a new
   * reference, shared and read-only), or the token itself (a copy). Release both with
   * kbs_session_view_clear. */
  json_t *claims;
  char *token;
} kbs_session_view;

void kbs_session_view_clear(kbs_session_view *view);

typedef struct kbs_sessions kbs_sessions;

/* The attested-token cache is bounded by count (max_attested) and by bytes (a token's length,
 * or what its parsed claims hold): the least recently used go first, so attacker-sized claims
 * cannot grow the KBS without bound. */
#define KBS_SESSION_TOKEN_MAX ((size_t)128 << 10)   /* a longer token is refused */
#define KBS_SESSION_TOKENS_BYTES ((size_t)64 << 20) /* all cached tokens and claims together */
/* Cached claims are what the token's payload parses to: the depth resource requests parse it with. */
#define KBS_SESSION_CLAIMS_DEPTH 64

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
/* Adds an older cookie-sealing key: cookies sealed with it still open (key rotation across
 * replicas: new key first, old one kept until its cookies expired). At most KBS_MAX_OLD_KEYS. */
CT_RESULT kbs_sessions_add_old_key(kbs_sessions *s, const uint8_t key[32], ct_err *err);
/* Marks the session's nonce as used in this process: CT_EDENIED when it already was (a replayed
 * /attest). Records live until the session expires; `max_live` of them are kept (beyond that,
 * CT_ELIMIT rather than forgetting a live one). Replicas share this through their backend. */
CT_RESULT kbs_sessions_claim_nonce(kbs_sessions *s, const kbs_session_view *v, ct_err *err);
/* Remembers the token issued to the session `view` names until the session expires or is
 * evicted (CT_ELIMIT for a token longer than KBS_SESSION_TOKEN_MAX). `claims` (borrowed, may be
 * NULL) is the value the token's payload was written from: the session then keeps what its
 * payload parses to (ct_json_sorted_copy) instead of the token, so that resource requests do not
 * decode and parse it each time; claims that would not parse back are not kept (the token is). */
CT_RESULT kbs_sessions_attest(kbs_sessions *s, const kbs_session_view *view, const char *token, const json_t *claims,
                              ct_err *err);
/* Drops expired tokens; returns how many. */
size_t kbs_sessions_sweep(kbs_sessions *s);
/* How many sessions hold a cached token, and how many single-use nonce records are live (the
 * /metrics gauges kbs_attested_sessions and kbs_nonce_records). */
void kbs_sessions_counts(kbs_sessions *s, size_t *attested, size_t *nonce_records);

#endif
