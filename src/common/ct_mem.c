#include "ct_mem.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

bool ct_memeq(const void *a, size_t alen, const void *b, size_t blen) {
  if (alen != blen) return false;
  if (alen == 0) return true;
  return CRYPTO_memcmp(a, b, alen) == 0;
}

bool ct_streq_secret(const char *a, const char *b) {
  if (!a || !b) return false;
  return ct_memeq(a, strlen(a), b, strlen(b));
}

void ct_wipe(void *p, size_t len) {
  if (p && len) OPENSSL_cleanse(p, len);
}

CT_RESULT ct_random(void *out, size_t len, ct_err *err) {
  if (len > INT32_MAX) return ct_fail(err, CT_ELIMIT, "random request too large");
  if (RAND_bytes(out, (int)len) != 1) return ct_fail_ossl(err, CT_ECRYPTO, "OS random source failed");
  return CT_OK;
}

CT_RESULT ct_strdup(const char *s, char **out, ct_err *err) {
  return ct_strndup(s, strlen(s), out, err);
}

CT_RESULT ct_strndup(const char *s, size_t n, char **out, ct_err *err) {
  char *p = malloc(n + 1);
  if (!p) return ct_fail(err, CT_ENOMEM, "out of memory copying a %zu-byte string", n);
  memcpy(p, s, n);
  p[n] = 0;
  *out = p;
  return CT_OK;
}
