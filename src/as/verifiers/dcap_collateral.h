/*
 * dcap_collateral.h - Intel DCAP collateral for TDX: TCB Info, QE Identity (TD_QE) and CRLs,
 * read from a directory (air-gapped sites) or fetched from a PCS/PCCS with an on-disk cache;
 * signature checks over the raw received bytes; TCB evaluation with the DCAP supplemental claims.
 *
 * Directory layout (`tdx_collateral_dir`; the names the PCS responses are usually saved under):
 *   tcb-info-<FMSPC>.json | tcb-info.json | tcbInfo.json     body of GET /tdx/certification/v4/tcb
 *   tcb-info-issuer-chain.pem                                 its TCB-Info-Issuer-Chain header
 *   qe-identity.json | enclaveIdentity.json                   body of GET .../v4/qe/identity
 *   qe-identity-issuer-chain.pem                              its SGX-Enclave-Identity-Issuer-Chain
 *   pck-crl-platform.der | pck-crl-processor.der | pck.crl.der   optional PCK CRL (DER or PEM)
 *   root-ca.crl.der                                           optional Intel SGX Root CA CRL
 * A missing issuer-chain file falls back to the other one (both are the TCB Signing chain).
 * Without a directory, collateral comes from `tdx_pccs_url`, or Intel's PCS
 * (https://api.trustedservices.intel.com) when that is unset too, as Trustee's default QCNL
 * configuration does; `tdx_collateral_cache_dir` keeps the last responses for outages.
 */
#ifndef DCAP_COLLATERAL_H
#define DCAP_COLLATERAL_H

#include <jansson.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <time.h>

#include "ct_status.h"
#include "dcap_quote.h"

#define DCAP_COLLATERAL_MAX_BYTES (1u << 20)

typedef struct dcap_signed_json {
  char *body;            /* the whole response body as received */
  size_t body_len;
  const char *span;      /* raw bytes of the signed member's value, inside body */
  size_t span_len;
  json_t *doc;           /* parsed body */
  json_t *obj;           /* borrowed: doc[member] */
  uint8_t sig[64];
  STACK_OF(X509) *chain; /* issuer chain, signing certificate first */
} dcap_signed_json;

typedef struct dcap_collateral {
  dcap_signed_json tcb, qe;
  X509_CRL *pck_crl;  /* may be NULL */
  X509_CRL *root_crl; /* may be NULL */
} dcap_collateral;

void dcap_collateral_free(dcap_collateral *c);

/* Finds the top-level member `key` of the JSON object in buf[0..len) and returns the exact
 * byte span of its value. The document must be a single object; nesting is bounded. */
CT_RESULT dcap_json_member_span(const char *buf, size_t len, const char *key, const char **val,
                                size_t *val_len, ct_err *err);

/* Parses a PCS response body {"<member>": {...}, "signature": "<hex r||s>"} with the PEM issuer
 * chain (may be NULL, then set later). Takes ownership of nothing; copies body. */
CT_RESULT dcap_signed_json_parse(const char *body, size_t len, const char *member,
                                 const char *chain_pem, size_t chain_len, dcap_signed_json *out,
                                 ct_err *err);

/* Reads collateral for `fmspc` from a directory (layout above). */
CT_RESULT dcap_collateral_load_dir(const char *dir, const uint8_t fmspc[6], bool platform_ca,
                                   dcap_collateral **out, ct_err *err);

/* Collateral from a PCS/PCCS base URL (e.g. https://api.trustedservices.intel.com or
 * https://pccs.example:8081) takes these GETs (TCB info, QE identity, PCK CRL), which the caller
 * runs off the request threads (as_fetch.h) and hands to dcap_collateral_assemble. */
#define DCAP_COLLATERAL_GETS 3
#define DCAP_COLLATERAL_URL_MAX 2048
CT_RESULT dcap_collateral_urls(const char *base_url, const uint8_t fmspc[6], bool platform_ca,
                               char urls[DCAP_COLLATERAL_GETS][DCAP_COLLATERAL_URL_MAX], ct_err *err);
/* Builds the collateral from the responses to those GETs, writing each good response to
 * `cache_dir` when set and reading it back from there when the service did not answer. */
struct as_fetch_resp;
CT_RESULT dcap_collateral_assemble(const char *cache_dir, const uint8_t fmspc[6], bool platform_ca,
                                   char urls[DCAP_COLLATERAL_GETS][DCAP_COLLATERAL_URL_MAX],
                                   struct as_fetch_resp *resps, dcap_collateral **out, ct_err *err);

/* Checks both issuer chains to `root` (CRLs applied when present) and both signatures over the
 * raw spans, and the CRL signatures. `at` = 0 means now. */
CT_RESULT dcap_collateral_verify(const dcap_collateral *c, X509 *root, time_t at, ct_err *err);

/* The outcome of TCB evaluation, in the shape of DCAP's supplemental data. */
typedef struct dcap_tcb_result {
  char tcb_status[48];  /* Trustee's names: UpToDate, SWHardeningNeeded, ConfigurationNeeded, ... */
  bool acceptable;      /* false for Revoked and unknown statuses */
  time_t tcb_date;
  json_t *advisory_ids; /* array of strings (owned) */
  time_t earliest_issue, latest_issue, earliest_expiration;
  bool collateral_expired;
  long tcb_eval_num;
  long pck_crl_num, root_ca_crl_num;
} dcap_tcb_result;

void dcap_tcb_result_clear(dcap_tcb_result *r);

/* Evaluates the platform (PCK TCB + TD report TEE_TCB_SVN) against TCB Info, the TDX module
 * against its identity, and the QE report against the QE Identity. Fails when no TCB level
 * matches or an identity does not match; otherwise fills `res` (status may be Revoked: check
 * res->acceptable). `chain` is the PCK chain (for validity dates). */
CT_RESULT dcap_tcb_evaluate(const dcap_collateral *c, const dcap_quote *q, const dcap_pck_info *pck,
                            STACK_OF(X509) *pck_chain, time_t now, dcap_tcb_result *res, ct_err *err);

/* Adds tcb_status, tcb_date, advisory_ids, collateral_expiration_status, earliest/latest issue
 * and expiration dates, CRL numbers, tcb_eval_num, platform_provider_id, sgx_type, is_* and
 * root_key_id to `claims`, as Trustee's intel_dcap claims. */
CT_RESULT dcap_supplemental_claims(const dcap_tcb_result *r, const dcap_pck_info *pck, X509 *root,
                                   json_t *claims, ct_err *err);

/* "2025-10-27T13:07:17Z" <-> time_t (UTC). */
CT_RESULT dcap_parse_time(const char *s, time_t *out, ct_err *err);
void dcap_format_time(time_t t, char out[32]);

#endif
