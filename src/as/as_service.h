/*
 * as_service.h - the built-in attestation service (Trustee attestation-service, coco_as_builtin).
 *
 * Pipeline for one attestation: re-derive report_data = SHA-384(JCS(runtime data)), digest the
 * init-data, run the TEE's verifier, build the annotated evidence, evaluate the attestation
 * policy "<policy>_<tee class>" (rules trust_claims and extensions) into an AR4SI appraisal, and
 * sign an EAR token (ES256). Thread-safe: evaluations run concurrently; policy updates swap in a
 * new compiled policy atomically.
 */
#ifndef AS_SERVICE_H
#define AS_SERVICE_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>

#include "as_verifier.h"
#include "ct_status.h"
#include "kvs.h"
#include "rvps.h"

typedef struct as_config {
  kvs *store;                         /* policies live in namespace attestation_service_policy */
  const char *policy_dir;             /* Trustee 1.0's attestation_token_broker.policy_dir: when set,
                                         policies are the files <policy_dir>/opa/<id>.rego instead */
  rvps *rvps;                         /* reference values for query_reference_value */
  as_verifier_config verifiers;
  unsigned token_duration_min;
  const char *issuer_name;
  const char *developer_name;
  const char *build_name;
  const char *profile_name;
  bool verbose_token;
  bool enable_sample_tee;             /* false: evidence of the (forgeable) sample TEE is refused */
  const char *signer_key_path;        /* PEM P-256 key; NULL = ephemeral key */
  const char *signer_cert_path;       /* PEM chain, leaf first; goes into the header jwk x5c */
} as_config;

typedef struct as_service as_service;

/* Evidence fields, init-data and runtime data end up in the token's claims: both are bounded,
 * and an attestation whose claims or token would be larger is refused (nothing is issued). */
#define AS_CLAIMS_MAX ((size_t)64 << 10) /* the EAR payload, as JSON */
#define AS_TOKEN_MAX ((size_t)96 << 10)  /* the signed EAR token */

CT_RESULT as_service_new(const as_config *cfg, as_service **out, ct_err *err);
void as_service_free(as_service *as);

/* Compiles and stores an attestation policy; a policy that does not compile changes nothing. */
CT_RESULT as_set_policy(as_service *as, const char *policy_id, const char *rego, size_t len, ct_err *err);
/* Recompiles stored policies whose text changed since they were loaded (another replica wrote
 * them to shared storage). Failures keep the policy in force and are logged. */
void as_reload_policies(as_service *as);
/* Returns the stored policy text (caller frees). */
CT_RESULT as_get_policy(as_service *as, const char *policy_id, char **rego, ct_err *err);

typedef struct as_request {
  const char *tee;
  const json_t *evidence;          /* primary evidence */
  const json_t *runtime_data;      /* the object whose JCS SHA-384 must equal report_data */
  const char *init_data_toml;      /* NULL when absent */
  size_t init_data_len;
  const char *policy_id;           /* NULL = "default" */
} as_request;

/* Verifies and appraises. On success *token is the signed EAR (caller frees) and, if `claims` is
 * not NULL, *claims the token's claims (new reference). Failures say which check failed. */
CT_RESULT as_evaluate(as_service *as, const as_request *req, char **token, json_t **claims, ct_err *err);

/* The signer's public key (borrowed), for KBSs that trust their own tokens in tests. */
EVP_PKEY *as_signer_key(const as_service *as);

#endif
