#include "ct_digest.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

CT_RESULT ct_digest(const char *alg, const void *data, size_t len, uint8_t out[CT_DIGEST_MAX],
                    size_t *out_len, ct_err *err) {
  if (!strcmp(alg, "sha256")) {
    SHA256(data, len, out);
    *out_len = 32;
  } else if (!strcmp(alg, "sha384")) {
    SHA384(data, len, out);
    *out_len = 48;
  } else if (!strcmp(alg, "sha512")) {
    SHA512(data, len, out);
    *out_len = 64;
  } else {
    return ct_fail(err, CT_EUNSUPPORTED, "unsupported digest algorithm \"%s\" (expected sha256, "
                   "sha384 or sha512)", alg);
  }
  return CT_OK;
}

void ct_sha256(const void *data, size_t len, uint8_t out[32]) { SHA256(data, len, out); }
void ct_sha384(const void *data, size_t len, uint8_t out[48]) { SHA384(data, len, out); }
