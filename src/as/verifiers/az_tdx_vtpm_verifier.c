/*
 * The `az-tdx-vtpm` verifier (Trustee deps/verifier/src/az_tdx_vtpm): an Azure confidential VM
 * where TDX sits behind a paravisor that exposes a vTPM.
 *
 * Evidence v1: {"version":1, "tpm_quote":{"signature":<hex>, "message":<hex TPMS_ATTEST>,
 * "pcrs":[<hex>...]}, "hcl_report":<base64url>, "td_quote":<base64url DCAP quote>} (the two
 * byte fields are also accepted as JSON arrays of byte values, serde's default Vec<u8> form).
 * Legacy v0 (older guest-components; no "version"): the same members with every byte field in
 * serde's default form - signature, message, hcl_report and td_quote as arrays of byte values,
 * pcrs as arrays of 32 byte values - as Trustee still accepts.
 *
 * Checks, in Trustee's order: the TPM quote is signed (RSASSA-SHA256) by the AK published in
 * the HCL variable data; its nonce (extraData) equals the expected report data exactly;
 * SHA-256 of the PCR values equals its pcrDigest; the TD quote verifies through DCAP (the tdx
 * verifier's chain, collateral and TCB checks); the TD report's REPORT_DATA[0..32] equals
 * SHA-256(HCL variable data); PCR8 = SHA-256(32 zero bytes || init-data digest).
 * Claims: the TD quote's parsed claims plus the DCAP supplemental claims, then `tpm.pcrNN`,
 * `report_data` = hex(TPM nonce) and `init_data` = hex(PCR8), as Trustee's extend_claim.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_verifier.h"
#include "az_hcl.h"
#include "az_vtpm.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "tdx.h"
#include "tpm_quote.h"

#define AZT__MAX_B64 (256u << 10)

typedef struct azt__ev {
  uint8_t *hcl, *td, *msg, *sig;
  size_t hcl_len, td_len, msg_len, sig_len;
  uint8_t (*pcrs)[32];
  size_t n_pcrs;
} azt__ev;

static void azt__ev_free(azt__ev *e) {
  free(e->hcl);
  free(e->td);
  free(e->msg);
  free(e->sig);
  free(e->pcrs);
}

static CT_RESULT azt__b64(const json_t *o, const char *k, uint8_t **out, size_t *len, ct_err *err) {
  json_t *v = json_object_get(o, k);
  if (json_is_array(v)) return az_vtpm_int_bytes("az-tdx-vtpm", v, k, AZT__MAX_B64, out, len, err);
  CT_ENSURE(json_is_string(v) && json_string_length(v) <= AZT__MAX_B64, err, CT_EINVAL,
            "az-tdx-vtpm evidence: %s must be a base64url string", k);
  if (ct_b64_decode(CT_B64_ANY, json_string_value(v), json_string_length(v), out, len, err) != CT_OK)
    return ct_err_prefix(err, "az-tdx-vtpm evidence: %s: ", k);
  return CT_OK;
}

/* The v0 tpm_quote: the az-tdx-vtpm crate's Quote in serde's default form. */
static CT_RESULT azt__parse_v0_quote(const json_t *q, azt__ev *e, ct_err *err) {
  CT_GUARD(az_vtpm_int_bytes("az-tdx-vtpm", json_object_get(q, "signature"), "tpm_quote.signature", 1024, &e->sig,
                             &e->sig_len, err));
  CT_GUARD(az_vtpm_int_bytes("az-tdx-vtpm", json_object_get(q, "message"), "tpm_quote.message", 4096, &e->msg,
                             &e->msg_len, err));
  json_t *a = json_object_get(q, "pcrs");
  CT_ENSURE(json_is_array(a) && json_array_size(a) <= TPM_PCRS_MAX, err, CT_EINVAL,
            "az-tdx-vtpm evidence: tpm_quote.pcrs must be an array of at most %d PCR values", TPM_PCRS_MAX);
  e->n_pcrs = json_array_size(a);
  e->pcrs = calloc(e->n_pcrs ? e->n_pcrs : 1, 32);
  CT_ENSURE(e->pcrs, err, CT_ENOMEM, "out of memory");
  for (size_t i = 0; i < e->n_pcrs; i++) {
    uint8_t *b = NULL;
    size_t n = 0;
    CT_GUARD(az_vtpm_int_bytes("az-tdx-vtpm", json_array_get(a, i), "tpm_quote.pcrs[]", 32, &b, &n, err));
    bool ok = n == 32;
    if (ok) memcpy(e->pcrs[i], b, 32);
    free(b);
    CT_ENSURE(ok, err, CT_EINVAL, "az-tdx-vtpm evidence: tpm_quote.pcrs[%zu] is %zu bytes, expected 32", i, n);
  }
  return CT_OK;
}

static CT_RESULT azt__parse(const json_t *ev, azt__ev *e, ct_err *err) {
  memset(e, 0, sizeof *e);
  CT_ENSURE(json_is_object(ev), err, CT_EINVAL, "az-tdx-vtpm evidence must be a JSON object");
  json_t *ver = json_object_get(ev, "version");
  CT_ENSURE(!ver || (json_is_integer(ver) && json_integer_value(ver) == 1), err, CT_EUNSUPPORTED,
            "az-tdx-vtpm evidence: version must be 1");
  json_t *q = json_object_get(ev, "tpm_quote");
  CT_ENSURE(json_is_object(q), err, CT_EINVAL, "az-tdx-vtpm evidence: tpm_quote is missing");
  if (!ver) {
    CT_GUARD(azt__parse_v0_quote(q, e, err));
    CT_GUARD(az_vtpm_int_bytes("az-tdx-vtpm", json_object_get(ev, "hcl_report"), "hcl_report", AZT__MAX_B64,
                               &e->hcl, &e->hcl_len, err));
    return az_vtpm_int_bytes("az-tdx-vtpm", json_object_get(ev, "td_quote"), "td_quote", AZT__MAX_B64, &e->td,
                             &e->td_len, err);
  }
  CT_GUARD(az_vtpm_hex_member("az-tdx-vtpm", q, "signature", 1024, &e->sig, &e->sig_len, err));
  CT_GUARD(az_vtpm_hex_member("az-tdx-vtpm", q, "message", 4096, &e->msg, &e->msg_len, err));
  json_t *a = json_object_get(q, "pcrs");
  CT_ENSURE(json_is_array(a) && json_array_size(a) <= TPM_PCRS_MAX, err, CT_EINVAL,
            "az-tdx-vtpm evidence: pcrs must be an array of at most %d hex values", TPM_PCRS_MAX);
  e->n_pcrs = json_array_size(a);
  e->pcrs = calloc(e->n_pcrs ? e->n_pcrs : 1, 32);
  CT_ENSURE(e->pcrs, err, CT_ENOMEM, "out of memory");
  for (size_t i = 0; i < e->n_pcrs; i++) {
    json_t *v = json_array_get(a, i);
    uint8_t *b = NULL;
    size_t n = 0;
    CT_ENSURE(json_is_string(v), err, CT_EINVAL, "az-tdx-vtpm evidence: pcrs[%zu] is not hex", i);
    if (ct_hex_decode(json_string_value(v), json_string_length(v), &b, &n, err) != CT_OK)
      return ct_err_prefix(err, "az-tdx-vtpm evidence: pcrs[%zu]: ", i);
    bool ok = n == 32;
    if (ok) memcpy(e->pcrs[i], b, 32);
    free(b);
    CT_ENSURE(ok, err, CT_EINVAL, "az-tdx-vtpm evidence: pcrs[%zu] is %zu bytes, expected 32", i, n);
  }
  CT_GUARD(azt__b64(ev, "hcl_report", &e->hcl, &e->hcl_len, err));
  CT_GUARD(azt__b64(ev, "td_quote", &e->td, &e->td_len, err));
  return CT_OK;
}

static CT_RESULT azt__create(const as_verifier_config *cfg, void **state, ct_err *err) {
  tdx_state *s = NULL;
  CT_GUARD(tdx_state_new(cfg, NULL, 0, &s, err));
  *state = s;
  return CT_OK;
}

static void azt__destroy(void *state) { tdx_state_free(state); }

static CT_RESULT azt__verify(void *state, const as_verify_request *req, json_t **claims, ct_err *err) {
  tdx_state *s = state;
  CT_ENSURE(s, err, CT_EINTERNAL, "az-tdx-vtpm verifier used without create()");
  CT_ENSURE(req->report_data, err, CT_EINVAL, "az-tdx-vtpm: unexpected empty report data (the TPM "
            "quote nonce is required)");
  azt__ev e;
  json_t *var = NULL, *c = NULL;
  EVP_PKEY *ak = NULL;
  ct_status st = azt__parse(req->evidence, &e, err);
  if (st) goto out;
  az_hcl_report h;
  tpm_attest a;
  unsigned pcr_no[TPM_PCRS_MAX];
  CT_GUARD_GOTO(st, az_hcl_parse(e.hcl, e.hcl_len, &h, err), out);
  CT_ENSURE_GOTO(st, h.report_type == AZ_HCL_REPORT_TYPE_TDX, out, err, CT_EINVAL,
                 "az-tdx-vtpm: HCL report carries report type %u, not a TDX report (4)", h.report_type);
  /* 1. TPM quote signed by the AK from the HCL variable data. */
  if ((st = az_hcl_var_data_json(&h, &var, err)) != CT_OK || (st = az_hcl_ak_pub(var, &ak, err)) != CT_OK) {
    ct_err_prefix(err, "az-tdx-vtpm: failed to get AKpub: ");
    goto out;
  }
  st = tpm_quote_verify_rsassa_sha256(ak, e.msg, e.msg_len, e.sig, e.sig_len, err);
  if (st) {
    ct_err_prefix(err, "az-tdx-vtpm: failed to verify vTPM quote: ");
    goto out;
  }
  CT_GUARD_GOTO(st, tpm_attest_parse(e.msg, e.msg_len, &a, err), out);
  /* 2. Nonce. */
  CT_GUARD_GOTO(st, az_vtpm_check_nonce("az-tdx-vtpm", &a, req->report_data, req->report_data_len, err), out);
  /* 3. PCR digest. */
  st = tpm_quote_check_pcrs(&a, (const uint8_t(*)[32])e.pcrs, e.n_pcrs, pcr_no, err);
  if (st) {
    ct_err_prefix(err, "az-tdx-vtpm: digest of PCRs does not match digest in Quote: ");
    goto out;
  }
  /* 4. The TD quote through DCAP. */
  dcap_quote q;
  st = tdx_verify_quote(s, e.td, e.td_len, NULL, 0, NULL, 0, NULL, &q, &c, err);
  if (st) {
    ct_err_prefix(err, "az-tdx-vtpm: TD quote: ");
    goto out;
  }
  /* 5. The variable data (hence the AK) is bound to the TD report. */
  if (memcmp(h.var_data_sha256, q.body + DCAP_TD_REPORT_DATA, 32) != 0) {
    char want[65], got[65];
    ct_hex_into(h.var_data_sha256, 32, want);
    ct_hex_into(q.body + DCAP_TD_REPORT_DATA, 32, got);
    st = ct_fail(err, CT_ECRYPTO, "az-tdx-vtpm: TDX Quote report data mismatch: SHA-256 of the HCL "
                 "variable data is %s, TD REPORT_DATA[0..32] is %s", want, got);
    goto out;
  }
  /* 6. init-data in PCR8. */
  CT_GUARD_GOTO(st, az_vtpm_check_init_data("az-tdx-vtpm", (const uint8_t(*)[32])e.pcrs, pcr_no, e.n_pcrs,
                                            req->init_data_digest, req->init_data_digest_len, err), out);
  /* Claims: the TD claims, then Trustee's extend_claim. */
  st = az_vtpm_claims(c, (const uint8_t(*)[32])e.pcrs, pcr_no, e.n_pcrs, &a, err);
  if (st) goto out;
  *claims = c;
  c = NULL;
out:
  json_decref(c);
  json_decref(var);
  EVP_PKEY_free(ak);
  azt__ev_free(&e);
  return st;
}

const as_verifier as_verifier_az_tdx_vtpm = {
    .tee = "az-tdx-vtpm",
    .tee_class = "cpu",
    .create = azt__create,
    .destroy = azt__destroy,
    .verify = azt__verify,
};
