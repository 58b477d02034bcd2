/*
 * JOSE throughput on one core: ES256 JWS sign and verify of an EAR-sized payload (2 KiB), next to
 * raw EVP ECDSA P-256 sign/verify of the same bytes (so the ratio shows the JOSE overhead:
 * base64url, JSON header, DER <-> r||s), and JWE ECDH-ES+A256KW P-256 encrypt/decrypt of a
 * 1 KiB resource (one ephemeral key generation + two ECDH + KDF + key wrap + GCM).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ct_json.h"
#include "jose.h"

/* Process CPU time, so that other load on the shared machine does not skew the figures. */
static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

#define BENCH_SECONDS 1.0

typedef int (*bench_fn)(void *ctx);

/* Runs fn repeatedly for about BENCH_SECONDS of CPU time; returns operations per second. */
static double rate(bench_fn fn, void *ctx) {
  double start = now(), t = start;
  long n = 0;
  while (t - start < BENCH_SECONDS) {
    for (int i = 0; i < 16; i++) {
      if (fn(ctx) != 0) {
        fprintf(stderr, "jose_bench: operation failed\n");
        exit(1);
      }
    }
    n += 16;
    t = now();
  }
  return (double)n / (t - start);
}

typedef struct bench_ctx {
  jose_jwk *key;
  json_t *pub;
  uint8_t payload[2048];
  char *token;
  json_t *jwe;
  unsigned char *der;
  size_t der_len;
} bench_ctx;

static int do_sign(void *p) {
  bench_ctx *c = p;
  ct_err err;
  char *tok = NULL;
  if (jose_jws_sign("ES256", jose_jwk_pkey(c->key), NULL, c->payload, sizeof c->payload, &tok,
                    &err))
    return 1;
  free(tok);
  return 0;
}

static int do_verify(void *p) {
  bench_ctx *c = p;
  ct_err err;
  return jose_jws_verify(c->token, jose_jwk_pkey(c->key), "ES256", NULL, NULL, NULL, &err) ? 1 : 0;
}

static int do_raw_sign(void *p) {
  bench_ctx *c = p;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  unsigned char sig[128];
  size_t len = sizeof sig;
  int ok = EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, jose_jwk_pkey(c->key)) == 1 &&
           EVP_DigestSign(md, sig, &len, c->payload, sizeof c->payload) == 1;
  EVP_MD_CTX_free(md);
  return ok ? 0 : 1;
}

static int do_raw_verify(void *p) {
  bench_ctx *c = p;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, jose_jwk_pkey(c->key)) == 1 &&
           EVP_DigestVerify(md, c->der, c->der_len, c->payload, sizeof c->payload) == 1;
  EVP_MD_CTX_free(md);
  return ok ? 0 : 1;
}

static int do_encrypt(void *p) {
  bench_ctx *c = p;
  ct_err err;
  json_t *jwe = NULL;
  if (jose_jwe_encrypt(c->pub, c->payload, 1024, &jwe, &err)) return 1;
  json_decref(jwe);
  return 0;
}

static int do_decrypt(void *p) {
  bench_ctx *c = p;
  ct_err err;
  uint8_t *pt = NULL;
  size_t len = 0;
  if (jose_jwe_decrypt(c->key, c->jwe, &pt, &len, &err)) return 1;
  free(pt);
  return 0;
}

int main(void) {
  ct_err err;
  bench_ctx c;
  memset(&c, 0, sizeof c);
  for (size_t i = 0; i < sizeof c.payload; i++) c.payload[i] = (uint8_t)('a' + i % 26);
  jose_jwk *enc_key = NULL;
  if (jose_jwk_generate("ES256", NULL, &c.key, &err) ||
      jose_jws_sign("ES256", jose_jwk_pkey(c.key), NULL, c.payload, sizeof c.payload, &c.token,
                    &err) ||
      jose_jwk_generate("ECDH-ES+A256KW", "P-256", &enc_key, &err) ||
      jose_jwk_to_json(enc_key, &c.pub, &err) ||
      jose_jwe_encrypt(c.pub, c.payload, 1024, &c.jwe, &err)) {
    fprintf(stderr, "jose_bench: setup: %s\n", err.msg);
    return 1;
  }
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  c.der = malloc(128);
  c.der_len = 128;
  if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, jose_jwk_pkey(c.key)) != 1 ||
      EVP_DigestSign(md, c.der, &c.der_len, c.payload, sizeof c.payload) != 1)
    return 1;
  EVP_MD_CTX_free(md);

  double sign = rate(do_sign, &c), raw_sign = rate(do_raw_sign, &c);
  double verify = rate(do_verify, &c), raw_verify = rate(do_raw_verify, &c);
  jose_jwk *sig_key = c.key;
  c.key = enc_key;
  double enc = rate(do_encrypt, &c), dec = rate(do_decrypt, &c);
  c.key = sig_key;

  printf("ES256 JWS sign   (2 KiB payload): %9.0f /s  (raw EVP ECDSA P-256 sign:   %9.0f /s, %.0f%%)\n",
         sign, raw_sign, 100.0 * sign / raw_sign);
  printf("ES256 JWS verify (2 KiB payload): %9.0f /s  (raw EVP ECDSA P-256 verify: %9.0f /s, %.0f%%)\n",
         verify, raw_verify, 100.0 * verify / raw_verify);
  printf("JWE ECDH-ES+A256KW P-256 encrypt (1 KiB): %9.0f /s\n", enc);
  printf("JWE ECDH-ES+A256KW P-256 decrypt (1 KiB): %9.0f /s\n", dec);
  printf("RESULT es256_sign_per_s=%.0f es256_verify_per_s=%.0f jwe_p256_encrypt_per_s=%.0f "
         "jwe_p256_decrypt_per_s=%.0f raw_p256_sign_per_s=%.0f raw_p256_verify_per_s=%.0f\n",
         sign, verify, enc, dec, raw_sign, raw_verify);
  free(c.token);
  free(c.der);
  json_decref(c.pub);
  json_decref(c.jwe);
  jose_jwk_free(c.key);
  jose_jwk_free(enc_key);
  return 0;
}
