/* libFuzzer target: the TPMS_ATTEST unmarshaller, the PCR selection/digest check, and the
 * TPMT_SIGNATURE parser. Input: u16 big-endian length of the TPMS_ATTEST, the TPMS_ATTEST, then
 * a TPMT_SIGNATURE (checked with a fixed RSA key). */
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tpm_quote.h"

static EVP_PKEY *fuzz_key(void) {
  static EVP_PKEY *k;
  if (!k) {
    uint8_t n[256], e[3] = {1, 0, 1};
    memset(n, 0xc3, sizeof n);
    ct_err err;
    if (tpm_rsa_public_key(n, sizeof n, e, sizeof e, &k, &err) != CT_OK) __builtin_trap();
  }
  return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t ml = (size_t)data[0] << 8 | data[1];
  if (ml > size - 2) ml = size - 2;
  const uint8_t *msg = data + 2, *sig = msg + ml;
  size_t sl = size - 2 - ml;
  ct_err err;
  tpm_attest a;
  if (tpm_attest_parse(msg, ml, &a, &err) == CT_OK) {
    uint8_t pcrs[TPM_PCRS_MAX][32];
    memset(pcrs, 0, sizeof pcrs);
    unsigned no[TPM_PCRS_MAX];
    for (size_t n = 0; n <= TPM_PCRS_MAX; n += 8)
      if (tpm_quote_check_pcrs(&a, (const uint8_t(*)[32])pcrs, n, no, &err) == CT_OK) break;
  }
  if (tpm_quote_verify_tpmt_signature(fuzz_key(), msg, ml, sig, sl, &err) == CT_OK) __builtin_trap();
  if (tpm_quote_verify_rsassa_sha256(fuzz_key(), msg, ml, sig, sl, &err) == CT_OK) __builtin_trap();
  return 0;
}
