/*
 * crypto_floor - the cryptography one sample handshake + resource GET cannot avoid, N times:
 * ECDH P-256 (the JWE to the TEE key), ES256 sign (the EAR token) and ES256 verify (Trustee
 * verifies the token on every GET), each through a fresh EVP context as the KBS uses them.
 * scripts/bench-kbs BENCH_CALLGRIND=1 counts its instructions as the floor of the KBS's.
 *
 *   crypto_floor N
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 100;
  EVP_PKEY *a = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), *b = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  if (!a || !b) return 1;
  unsigned char msg[2048] = {1}, sig[128], secret[64];
  for (int i = 0; i < n; i++) {
    size_t sl = sizeof secret, gl = sizeof sig;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(a, NULL);
    int ok = c && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, b) == 1 &&
             EVP_PKEY_derive(c, secret, &sl) == 1;
    EVP_PKEY_CTX_free(c);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    ok = ok && m && EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, a) == 1 &&
         EVP_DigestSign(m, sig, &gl, msg, sizeof msg) == 1;
    EVP_MD_CTX_free(m);
    m = EVP_MD_CTX_new();
    ok = ok && m && EVP_DigestVerifyInit(m, NULL, EVP_sha256(), NULL, a) == 1 &&
         EVP_DigestVerify(m, sig, gl, msg, sizeof msg) == 1;
    EVP_MD_CTX_free(m);
    if (!ok) return 1;
  }
  EVP_PKEY_free(a);
  EVP_PKEY_free(b);
  return 0;
}
