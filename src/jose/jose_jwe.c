/*
 * jose_jwe.c - JWE (placeholder until the implementation lands).
 */
#include "jose_internal.h"

ct_status jose_jwe_encrypt(const json_t *tee_pubkey, const uint8_t *plaintext, size_t len,
                           json_t **out_jwe, ct_err *err) {
  return ct_fail(err, CT_EUNSUPPORTED, "jwe: not implemented yet");
}

ct_status jose_jwe_decrypt(const jose_jwk *priv, const json_t *jwe, uint8_t **plaintext,
                           size_t *len, ct_err *err) {
  return ct_fail(err, CT_EUNSUPPORTED, "jwe: not implemented yet");
}
