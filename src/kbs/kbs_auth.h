/*
 * kbs_auth.h - who may call what: attestation-token verification (resource access) and admin
 * authorization (Trustee kbs/src/crypto/jwt.rs, kbs/src/admin/).
 */
#ifndef KBS_AUTH_H
#define KBS_AUTH_H

#include <jansson.h>

#include "ct_status.h"
#include "kbs_config.h"

typedef struct kbs_token_verifier kbs_token_verifier;

CT_RESULT kbs_token_verifier_new(const kbs_config *cfg, kbs_token_verifier **out, ct_err *err);
void kbs_token_verifier_free(kbs_token_verifier *v);
/* Verifies an EAR/JWT: key from the header jwk (x5c-endorsed, or trusted as-is when
 * insecure_header_jwk) or from a trusted JWKS by kid; then exp (60 s leeway). *claims is new. */
CT_RESULT kbs_token_verify(const kbs_token_verifier *v, const char *jwt, json_t **claims, ct_err *err);

typedef struct kbs_admin kbs_admin;

CT_RESULT kbs_admin_new(const kbs_config *cfg, kbs_admin **out, ct_err *err);
void kbs_admin_free(kbs_admin *a);
/* Decides an admin request. `authorization` is the raw Authorization header (may be NULL),
 * `uri` the request URI with query. CT_EDENIED with the reason when refused. */
CT_RESULT kbs_admin_check(const kbs_admin *a, const char *authorization, const char *uri, ct_err *err);

#endif
