/*
 * jose_x5c.c - x5c trust and JWK Sets (placeholder until the implementation lands).
 */
#include "jose_internal.h"

ct_status jose_x5c_verify(const json_t *jwk_with_x5c, X509_STORE *trust, ct_err *err) {
  return ct_fail(err, CT_EUNSUPPORTED, "x5c: not implemented yet");
}
ct_status jose_trust_store_load(const char *const *pem_paths, size_t n, X509_STORE **out,
                                ct_err *err) {
  return ct_fail(err, CT_EUNSUPPORTED, "trust store: not implemented yet");
}
ct_status jose_jwks_load(const char *path_or_file_uri, jose_jwks **out, ct_err *err) {
  return ct_fail(err, CT_EUNSUPPORTED, "jwks: not implemented yet");
}
ct_status jose_jwks_from_json(const json_t *set, jose_jwks **out, ct_err *err) {
  return ct_fail(err, CT_EUNSUPPORTED, "jwks: not implemented yet");
}
const jose_jwk *jose_jwks_find(const jose_jwks *set, const char *kid) { return NULL; }
size_t jose_jwks_count(const jose_jwks *set) { return 0; }
const jose_jwk *jose_jwks_get(const jose_jwks *set, size_t i) { return NULL; }
void jose_jwks_free(jose_jwks *set) {}
