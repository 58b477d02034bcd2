/*
 * kbs_internal.h - what the KBS server's files share. The server is split by concern:
 *   kbs_server.c     start-up, routing, replies, shutdown
 *   kbs_handshake.c  RCAR: /auth and /attest
 *   kbs_resource.c   resource reads under the resource policy
 *   kbs_admin.c      the admin API: resources, resource and attestation policies, reference values
 */
#ifndef KBS_INTERNAL_H
#define KBS_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "as_service.h"
#include "ct_status.h"
#include "kbs_audit.h"
#include "kbs_auth.h"
#include "kbs_http.h"
#include "kbs_server.h"
#include "kbs_session.h"
#include "kvs.h"
#include "rego.h"
#include "rvps.h"
#include "vault_kv.h"

#define KBS_ERR_PREFIX "https://github.com/confidential-containers/kbs/errors/"
#define KBS_RESOURCE_NS "repository"
#define KBS_KBS_NS "kbs"
#define KBS_MAX_ATTESTED_SESSIONS 2048
#define KBS_MAX_ID_PART 128
#define KBS_JSON_DEPTH 32
#define KBS_SESSION_NS "kbs_protocol_session"

struct kbs_server {
  const kbs_config *cfg;
  kvs *store;
  kvs *resources;          /* the legacy plugin dir_path, or the main store */
  kvs *rv_store;           /* rvps_config storage, or the main store */
  kvs *session_store;      /* session_storage_type's store (often the main store) */
  bool session_shared;     /* replicas share nonce and attested-session records through it */
  vault_kv *vault;         /* the resource plugin's Vault backend, or NULL */
  pthread_rwlock_t vault_lock; /* readers submit reads; shutdown takes it to stop them */
  bool vault_closed;
  kbs_audit *audit;        /* [audit] path, or NULL */
  pthread_mutex_t health_lock;
  char *health;            /* NULL: ready; else why not (from the last probe, never secret) */
  rvps *rvps;
  as_service *as;
  kbs_sessions *sessions;
  kbs_token_verifier *tokens;
  kbs_admin *admin;
  pthread_rwlock_t policy_lock;
  rego_policy *resource_policy;
  uint8_t resource_policy_digest[32]; /* of the text in force, to notice changes in shared storage */
  kbs_http_server *http;
};

/* --- replies and request bodies (kbs_server.c) ---------------------------------------------------- */

/* Trustee's ErrorInformation; 404 only for InvalidRequestPath and PluginNotFound, else 401. The
 * detail adds the reason upstream keeps in its log, never secret material. */
void kbs_reply_error(kbs_http_response *r, const char *variant, const char *fmt, ...) CT_PRINTF(3, 4);
/* A 200 answer with `body` (consumed) as compact JSON. */
void kbs_reply_json(kbs_http_response *r, json_t *body);
/* The request body as a JSON object (bounded depth). */
CT_RESULT kbs_parse_json_body(const kbs_http_request *req, json_t **out, ct_err *err);

/* True when handling this request may wait on a remote backend (it then runs on the blocking
 * pool). */
bool kbs_store_is_remote(const kvs *k);
/* Appends to the audit log when one is configured; failures are logged, never fatal. */
void kbs_audit_note(kbs_server *s, const char *event, const json_t *claims, const char *tee, const char *path,
                    const char *decision, const char *reason);

/* --- RCAR handshake (kbs_handshake.c) -------------------------------------------------------------- */

/* The kbs-session-id cookie's value, copied into `out`; NULL when absent or oversized. */
const char *kbs_session_cookie(const kbs_http_request *req, char out[KBS_COOKIE_MAX]);
void kbs_handle_auth(kbs_server *s, const kbs_http_request *req, kbs_http_response *r);
void kbs_handle_attest(kbs_server *s, const kbs_http_request *req, kbs_http_response *r);
/* Marks a session's nonce used (in the shared session storage, or in this process): CT_EDENIED
 * for a replay. */
CT_RESULT kbs_session_claim_nonce(kbs_server *s, const kbs_session_view *sv, bool attested_here, ct_err *err);
/* Shares an attested session's token with the replicas (shared session storage only). */
void kbs_session_share_token(kbs_server *s, const kbs_session_view *sv, const char *token);
/* The token of a session attested on another replica, or NULL (caller frees). */
char *kbs_session_shared_token(kbs_server *s, const kbs_session_view *sv);

/* --- resources (kbs_resource.c) -------------------------------------------------------------------- */

/* Splits "repo/type/tag" (exactly three parts) and validates each part. */
CT_RESULT kbs_resource_id(const char *rest, char parts[3][KBS_MAX_ID_PART + 1], ct_err *err);
void kbs_handle_resource_get(kbs_server *s, const kbs_http_request *req, const char *rest, kbs_http_response *r);

/* --- admin API and policies (kbs_admin.c) ---------------------------------------------------------- */

void kbs_handle_resource_put(kbs_server *s, const kbs_http_request *req, const char *rest, bool del,
                             kbs_http_response *r);
void kbs_handle_resource_policy(kbs_server *s, const kbs_http_request *req, kbs_http_response *r);
void kbs_handle_attestation_policy(kbs_server *s, const kbs_http_request *req, kbs_http_response *r);
void kbs_handle_reference_value(kbs_server *s, const kbs_http_request *req, const char *id, kbs_http_response *r);
/* Compiles and installs a resource policy (stored first when `persist`). */
CT_RESULT kbs_resource_policy_set(kbs_server *s, const char *text, size_t len, bool persist, ct_err *err);
/* The policy in force at start-up: storage, else policy_engine.policy_path, else the default. */
CT_RESULT kbs_resource_policy_load(kbs_server *s, ct_err *err);
/* Picks up a policy another replica stored. */
void kbs_resource_policy_reload(kbs_server *s);

#endif
