#include "az_vtpm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_json.h"
#include "ct_mem.h"

CT_RESULT az_vtpm_hex_member(const char *tee, const json_t *o, const char *k, size_t max, uint8_t **out,
                             size_t *len, ct_err *err) {
  json_t *v = json_object_get(o, k);
  CT_ENSURE(json_is_string(v) && json_string_length(v) <= 2 * max, err, CT_EINVAL,
            "%s evidence: tpm_quote.%s must be a hex string of at most %zu bytes", tee, k, max);
  if (ct_hex_decode(json_string_value(v), json_string_length(v), out, len, err) != CT_OK)
    return ct_err_prefix(err, "%s evidence: tpm_quote.%s: ", tee, k);
  return CT_OK;
}

CT_RESULT az_vtpm_int_bytes(const char *tee, const json_t *a, const char *what, size_t max, uint8_t **out,
                            size_t *len, ct_err *err) {
  CT_ENSURE(json_is_array(a) && json_array_size(a) <= max, err, CT_EINVAL,
            "%s evidence: %s must be an array of at most %zu byte values", tee, what, max);
  size_t n = json_array_size(a);
  uint8_t *b = malloc(n ? n : 1);
  CT_ENSURE(b, err, CT_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(a, i);
    if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > 255) {
      free(b);
      return ct_fail(err, CT_EINVAL, "%s evidence: %s[%zu] is not a byte value", tee, what, i);
    }
    b[i] = (uint8_t)json_integer_value(e);
  }
  *out = b;
  *len = n;
  return CT_OK;
}

CT_RESULT az_vtpm_check_nonce(const char *tee, const tpm_attest *a, const uint8_t *report_data, size_t len,
                              ct_err *err) {
  if (ct_memeq(a->extra_data, a->extra_data_len, report_data, len)) return CT_OK;
  char want[129] = "", got[129] = "";
  if (len <= 64) ct_hex_into(report_data, len, want);
  if (a->extra_data_len <= 64) ct_hex_into(a->extra_data, a->extra_data_len, got);
  return ct_fail(err, CT_ECRYPTO, "%s: TPM quote nonce (extraData) does not match the expected report data: "
                 "expected %s, found %s", tee, want, got);
}

const uint8_t *az_vtpm_pcr(const uint8_t (*pcrs)[32], const unsigned *pcr_no, size_t n, unsigned index) {
  for (size_t i = 0; i < n; i++)
    if (pcr_no[i] == index) return pcrs[i];
  return NULL;
}

CT_RESULT az_vtpm_check_init_data(const char *tee, const uint8_t (*pcrs)[32], const unsigned *pcr_no, size_t n,
                                  const uint8_t *digest, size_t digest_len, ct_err *err) {
  if (!digest) return CT_OK;
  CT_ENSURE(digest_len == 32, err, CT_EINVAL,
            "%s: init-data digest is %zu bytes; PCR%d binding needs a SHA-256 digest (32 bytes)", tee, digest_len,
            AZ_VTPM_INITDATA_PCR);
  const uint8_t *pcr8 = az_vtpm_pcr(pcrs, pcr_no, n, AZ_VTPM_INITDATA_PCR);
  CT_ENSURE(pcr8, err, CT_EINVAL, "%s: the quote does not cover PCR%d", tee, AZ_VTPM_INITDATA_PCR);
  uint8_t in[64] = {0}, want[32];
  memcpy(in + 32, digest, 32);
  ct_sha256(in, sizeof in, want);
  if (memcmp(want, pcr8, 32) == 0) return CT_OK;
  char w[65], g[65];
  ct_hex_into(want, 32, w);
  ct_hex_into(pcr8, 32, g);
  return ct_fail(err, CT_ECRYPTO, "%s: init-data mismatch: PCR%d is %s, expected SHA-256(0^32 || digest) = %s", tee,
                 AZ_VTPM_INITDATA_PCR, g, w);
}

CT_RESULT az_vtpm_claims(json_t *claims, const uint8_t (*pcrs)[32], const unsigned *pcr_no, size_t n,
                         const tpm_attest *a, ct_err *err) {
  json_t *tpm = json_object();
  CT_ENSURE(tpm, err, CT_ENOMEM, "out of memory building vTPM claims");
  ct_status st = CT_OK;
  for (size_t i = 0; i < n && st == CT_OK; i++) {
    char k[8], hex[65];
    snprintf(k, sizeof k, "pcr%02u", pcr_no[i]);
    ct_hex_into(pcrs[i], 32, hex);
    st = ct_json_set_new(tpm, k, json_string(hex), err);
  }
  if (st != CT_OK) {
    json_decref(tpm);
    return st;
  }
  CT_GUARD(ct_json_set_new(claims, "tpm", tpm, err));
  char nonce[129] = "";
  if (a->extra_data_len <= 64) ct_hex_into(a->extra_data, a->extra_data_len, nonce);
  CT_GUARD(ct_json_set_new(claims, "report_data", json_string(nonce), err));
  const uint8_t *pcr8 = az_vtpm_pcr(pcrs, pcr_no, n, AZ_VTPM_INITDATA_PCR);
  if (pcr8) {
    char hex[65];
    ct_hex_into(pcr8, 32, hex);
    CT_GUARD(ct_json_set_new(claims, "init_data", json_string(hex), err));
  }
  return CT_OK;
}
