/*
 * builtins_jwt.c - io.jwt.verify_* (JWS signature checks; keys from PEM certificates, PEM public
 * keys, a JWK or a JWK set, HMAC secrets for HS*), built on the project's jose module.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "jose.h"
#include "rego_int.h"

#define A (rg_ev_arena(ev))

static ct_status check_sections(rg_ev *ev, const char *name, const rv *tok) {
  size_t dots = 0;
  for (size_t i = 0; i < tok->n; i++) dots += tok->u.s[i] == '.';
  if (dots == 0) return rg_bi_fail(ev, "%s: encoded JWT had no period separators", name);
  if (dots != 2) return rg_bi_fail(ev, "%s: encoded JWT must have 3 sections, found %zu", name, dots + 1);
  return CT_OK;
}

/* Every key in `keytext` (PEM certificate(s), PEM key, JWK or JWKS JSON). Caller frees. */
static ct_status load_keys(rg_ev *ev, const char *name, const rv *keytext, EVP_PKEY ***out, size_t *n) {
  *out = NULL;
  *n = 0;
  const char *s = keytext->u.s;
  size_t len = keytext->n;
  size_t cap = 8;
  EVP_PKEY **keys = calloc(cap, sizeof(EVP_PKEY *));
  if (!keys) return rg_bi_oom(ev);
  ct_err e2 = {0};
  if (strstr(s, "-----BEGIN CERTIFICATE-----")) {
    BIO *b = BIO_new_mem_buf(s, (int)len);
    X509 *x;
    while (b && *n < cap && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
      EVP_PKEY *k = X509_get_pubkey(x);
      if (k) keys[(*n)++] = k;
      X509_free(x);
    }
    BIO_free(b);
  } else if (strstr(s, "-----BEGIN")) {
    jose_jwk *k = NULL;
    if (jose_jwk_from_pem(s, len, NULL, &k, &e2) == CT_OK) {
      EVP_PKEY *pk = jose_jwk_pkey(k);
      if (pk && EVP_PKEY_up_ref(pk)) keys[(*n)++] = pk;
      jose_jwk_free(k);
    }
  } else {
    json_error_t je;
    json_t *j = json_loadb(s, len, 0, &je);
    json_t *arr = j ? json_object_get(j, "keys") : NULL;
    size_t cnt = arr ? json_array_size(arr) : (j ? 1 : 0);
    for (size_t i = 0; i < cnt && *n < cap; i++) {
      json_t *kj = arr ? json_array_get(arr, i) : j;
      jose_jwk *k = NULL;
      if (jose_jwk_from_json(kj, &k, &e2) == CT_OK) {
        EVP_PKEY *pk = jose_jwk_pkey(k);
        if (pk && EVP_PKEY_up_ref(pk)) keys[(*n)++] = pk;
        jose_jwk_free(k);
      }
    }
    json_decref(j);
  }
  if (!*n) {
    free(keys);
    if (strstr(s, "-----BEGIN CERTIFICATE-----"))
      return rg_bi_fail(ev, "%s: failed to extract a Key from the PEM certificate", name);
    if (strstr(s, "-----BEGIN")) return rg_bi_fail(ev, "%s: failed to parse a PEM key", name);
    return rg_bi_fail(ev, "%s: failed to parse a JWK key (set)", name);
  }
  *out = keys;
  return CT_OK;
}

static ct_status verify_asym(rg_ev *ev, const char *name, const char *alg, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, name, 1, a[0], RV_STR));
  CT_GUARD(rg_bi_want(ev, name, 2, a[1], RV_STR));
  CT_GUARD(check_sections(ev, name, a[0]));
  EVP_PKEY **keys;
  size_t n;
  CT_GUARD(load_keys(ev, name, a[1], &keys, &n));
  bool ok = false;
  for (size_t i = 0; i < n; i++) {
    ct_err e2 = {0};
    if (!ok && jose_jws_verify(a[0]->u.s, keys[i], alg, NULL, NULL, NULL, &e2) == CT_OK) ok = true;
    EVP_PKEY_free(keys[i]);
  }
  free(keys);
  *out = rv_bool(ok);
  return CT_OK;
}

static int b64u_val(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

static ct_status verify_hs(rg_ev *ev, const char *name, const char *md, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, name, 1, a[0], RV_STR));
  CT_GUARD(rg_bi_want(ev, name, 2, a[1], RV_STR));
  CT_GUARD(check_sections(ev, name, a[0]));
  const char *s = a[0]->u.s;
  const char *d2 = strrchr(s, '.');
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t ml = 0;
  static const unsigned char empty[1] = {0};
  if (!EVP_Q_mac(NULL, "HMAC", NULL, md, NULL, a[1]->n ? (const void *)a[1]->u.s : empty, a[1]->n,
                 (const unsigned char *)s, (size_t)(d2 - s), mac, sizeof(mac), &ml))
    return rg_bi_fail(ev, "%s: HMAC failed", name);
  /* decode the signature */
  size_t sl = strlen(d2 + 1);
  unsigned char *sig = rg_alloc(A, sl + 1);
  if (!sig) return rg_bi_oom(ev);
  size_t w = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < sl; i++) {
    if (d2[1 + i] == '=') break;
    int v = b64u_val(d2[1 + i]);
    if (v < 0) return rg_bi_fail(ev, "%s: JWT signature had invalid encoding", name);
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      sig[w++] = (unsigned char)(acc >> bits);
    }
  }
  *out = rv_bool(w == ml && CRYPTO_memcmp(sig, mac, ml) == 0);
  return CT_OK;
}

#define ASYM(fn, nm, alg) \
  static ct_status fn(rg_ev *ev, rv **a, rv **out) { return verify_asym(ev, nm, alg, a, out); }
ASYM(bi_rs256, "io.jwt.verify_rs256", "RS256")
ASYM(bi_rs384, "io.jwt.verify_rs384", "RS384")
ASYM(bi_rs512, "io.jwt.verify_rs512", "RS512")
ASYM(bi_ps256, "io.jwt.verify_ps256", "PS256")
ASYM(bi_ps384, "io.jwt.verify_ps384", "PS384")
ASYM(bi_ps512, "io.jwt.verify_ps512", "PS512")
ASYM(bi_es256, "io.jwt.verify_es256", "ES256")
ASYM(bi_es384, "io.jwt.verify_es384", "ES384")
ASYM(bi_es512, "io.jwt.verify_es512", "ES512")
ASYM(bi_eddsa, "io.jwt.verify_eddsa", "EdDSA")
static ct_status bi_hs256(rg_ev *ev, rv **a, rv **out) { return verify_hs(ev, "io.jwt.verify_hs256", "SHA256", a, out); }
static ct_status bi_hs384(rg_ev *ev, rv **a, rv **out) { return verify_hs(ev, "io.jwt.verify_hs384", "SHA384", a, out); }
static ct_status bi_hs512(rg_ev *ev, rv **a, rv **out) { return verify_hs(ev, "io.jwt.verify_hs512", "SHA512", a, out); }

const rg_builtin rg_builtins_jwt[] = {
    {"io.jwt.verify_rs256", 2, bi_rs256, false},
    {"io.jwt.verify_rs384", 2, bi_rs384, false},
    {"io.jwt.verify_rs512", 2, bi_rs512, false},
    {"io.jwt.verify_ps256", 2, bi_ps256, false},
    {"io.jwt.verify_ps384", 2, bi_ps384, false},
    {"io.jwt.verify_ps512", 2, bi_ps512, false},
    {"io.jwt.verify_es256", 2, bi_es256, false},
    {"io.jwt.verify_es384", 2, bi_es384, false},
    {"io.jwt.verify_es512", 2, bi_es512, false},
    {"io.jwt.verify_eddsa", 2, bi_eddsa, false},
    {"io.jwt.verify_hs256", 2, bi_hs256, false},
    {"io.jwt.verify_hs384", 2, bi_hs384, false},
    {"io.jwt.verify_hs512", 2, bi_hs512, false},
    {NULL, 0, NULL, false},
};
