/*
 * Azure HCL report parsing (see az_hcl.h).
 */
#include <stdlib.h>
#include <string.h>

#include "az_hcl.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_json.h"
#include "ct_reader.h"
#include "tpm_quote.h"

#define AZ_HCL_SIGNATURE 0x414c4348u /* "HCLA" little-endian */
#define AZ_HCL_HASH_SHA256 1

CT_RESULT az_hcl_parse(const uint8_t *buf, size_t len, az_hcl_report *out, ct_err *err) {
  CT_ENSURE(len >= AZ_HCL_VAR_DATA_OFFSET, err, CT_EINVAL,
            "HCL report: %zu bytes is shorter than the fixed part (%d bytes)", len,
            AZ_HCL_VAR_DATA_OFFSET);
  ct_reader rd;
  ct_reader_init(&rd, buf, len, "HCL report");
  uint32_t sig = ct_peek_u32le(&rd, 0, "header signature");
  az_hcl_report h;
  memset(&h, 0, sizeof h);
  h.report_type = ct_peek_u32le(&rd, AZ_HCL_IGVM_OFFSET + 8, "report_type");
  uint32_t hash_type = ct_peek_u32le(&rd, AZ_HCL_IGVM_OFFSET + 12, "report_data_hash_type");
  uint32_t var_len = ct_peek_u32le(&rd, AZ_HCL_IGVM_OFFSET + 16, "variable_data_size");
  CT_GUARD(ct_reader_status(&rd, err));
  CT_ENSURE(sig == AZ_HCL_SIGNATURE, err, CT_EINVAL,
            "HCL report: header signature is 0x%08x, expected \"HCLA\"", sig);
  if (h.report_type == AZ_HCL_REPORT_TYPE_SNP) h.hw_report_len = AZ_HCL_HW_AREA_SIZE;
  else if (h.report_type == AZ_HCL_REPORT_TYPE_TDX) h.hw_report_len = AZ_HCL_TD_REPORT_SIZE;
  else
    return ct_fail(err, CT_EINVAL, "HCL report: report_type %u is neither SNP (2) nor TDX (4)",
                   h.report_type);
  CT_ENSURE(hash_type == AZ_HCL_HASH_SHA256, err, CT_EUNSUPPORTED,
            "HCL report: report_data_hash_type %u is not SHA-256 (1)", hash_type);
  CT_ENSURE(var_len <= AZ_HCL_VAR_DATA_MAX && var_len <= len - AZ_HCL_VAR_DATA_OFFSET, err,
            CT_EINVAL, "HCL report: variable_data_size %u exceeds the %zu bytes present", var_len,
            len - AZ_HCL_VAR_DATA_OFFSET);
  h.hw_report = ct_peek_bytes(&rd, AZ_HCL_HEADER_SIZE, h.hw_report_len, "hardware report");
  h.var_data = ct_peek_bytes(&rd, AZ_HCL_VAR_DATA_OFFSET, var_len, "variable data");
  h.var_data_len = var_len;
  CT_GUARD(ct_reader_status(&rd, err));
  ct_sha256(h.var_data, h.var_data_len, h.var_data_sha256);
  *out = h;
  return CT_OK;
}

CT_RESULT az_hcl_var_data_json(const az_hcl_report *h, json_t **out, ct_err *err) {
  if (ct_json_parse((const char *)h->var_data, h->var_data_len, 16, out, err) != CT_OK)
    return ct_err_prefix(err, "HCL report: variable data is not JSON: ");
  CT_ENSURE(json_is_object(*out), err, CT_EINVAL, "HCL report: variable data is not an object");
  return CT_OK;
}

static CT_RESULT az__b64url_member(const json_t *jwk, const char *k, uint8_t **out, size_t *len,
                                   ct_err *err) {
  json_t *v = json_object_get(jwk, k);
  CT_ENSURE(json_is_string(v), err, CT_EINVAL, "HCL AK public key: JWK member \"%s\" missing", k);
  if (ct_b64_decode(CT_B64_ANY, json_string_value(v), json_string_length(v), out, len, err) != CT_OK)
    return ct_err_prefix(err, "HCL AK public key: JWK \"%s\": ", k);
  return CT_OK;
}

CT_RESULT az_hcl_ak_pub(const json_t *var_data, EVP_PKEY **out, ct_err *err) {
  json_t *keys = json_object_get(var_data, "keys");
  CT_ENSURE(json_is_array(keys), err, CT_EINVAL, "HCL AK public key: variable data has no keys");
  const json_t *jwk = NULL;
  for (size_t i = 0; i < json_array_size(keys); i++) {
    json_t *k = json_array_get(keys, i);
    json_t *kid = json_object_get(k, "kid");
    if (json_is_string(kid) && strcmp(json_string_value(kid), "HCLAkPub") == 0) {
      jwk = k;
      break;
    }
  }
  CT_ENSURE(jwk, err, CT_ENOTFOUND, "HCL AK public key: no key with kid \"HCLAkPub\"");
  json_t *kty = json_object_get(jwk, "kty");
  CT_ENSURE(json_is_string(kty) && strcmp(json_string_value(kty), "RSA") == 0, err,
            CT_EUNSUPPORTED, "HCL AK public key: kty is not RSA");
  uint8_t *n = NULL, *e = NULL;
  size_t nl = 0, el = 0;
  ct_status st = az__b64url_member(jwk, "n", &n, &nl, err);
  if (st == CT_OK) st = az__b64url_member(jwk, "e", &e, &el, err);
  if (st == CT_OK) st = tpm_rsa_public_key(n, nl, e, el, out, err);
  free(n);
  free(e);
  return st;
}

CT_RESULT az_hcl_user_data(const json_t *var_data, uint8_t **out, size_t *len, ct_err *err) {
  json_t *v = json_object_get(var_data, "user-data");
  CT_ENSURE(json_is_string(v), err, CT_EINVAL,
            "HCL report: variable data has no \"user-data\" string");
  if (ct_hex_decode(json_string_value(v), json_string_length(v), out, len, err) != CT_OK)
    return ct_err_prefix(err, "HCL report: user-data: ");
  return CT_OK;
}
