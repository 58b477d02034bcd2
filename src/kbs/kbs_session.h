/*
 * kbs_session.h - RCAR sessions (Trustee kbs/src/attestation/session.rs), in memory.
 *
 * Ids are 32 lower-case hex digits (a random UUID v4 without dashes), the cookie Trustee sets.
 * A session lives `timeout` seconds from /auth; /attest does not extend it. The table is
 * bounded: when full, expired sessions are swept, and if it is still full /auth is refused.
 */
#ifndef KBS_SESSION_H
#define KBS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "ct_status.h"

#define KBS_SESSION_ID_LEN 32
#define KBS_NONCE_B64_LEN 44

typedef struct kbs_session_view {
  char tee[32];
  char nonce[KBS_NONCE_B64_LEN + 1];
  time_t expires;
  bool attested;
  char *token; /* copy, caller frees; NULL unless attested */
} kbs_session_view;

typedef struct kbs_sessions kbs_sessions;

CT_RESULT kbs_sessions_new(size_t max_sessions, kbs_sessions **out, ct_err *err);
void kbs_sessions_free(kbs_sessions *s);
/* Creates an Authed session; fills id (33 bytes) and the nonce (standard base64 of 32 bytes). */
CT_RESULT kbs_sessions_create(kbs_sessions *s, const char *tee, unsigned timeout_s, char id[KBS_SESSION_ID_LEN + 1],
                              char nonce[KBS_NONCE_B64_LEN + 1], time_t *expires, ct_err *err);
/* Looks a session up; CT_ENOTFOUND for unknown ids, CT_EEXPIRED (and removal) for expired ones. */
CT_RESULT kbs_sessions_get(kbs_sessions *s, const char *id, kbs_session_view *view, ct_err *err);
/* Moves a session to Attested with its token. */
CT_RESULT kbs_sessions_attest(kbs_sessions *s, const char *id, const char *token, ct_err *err);
/* Removes expired sessions; returns how many. */
size_t kbs_sessions_sweep(kbs_sessions *s);

#endif
