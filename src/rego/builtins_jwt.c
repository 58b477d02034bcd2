/*
 * builtins_jwt.c - io.jwt.verify_* (JWS signature checks; keys from PEM certificates, PEM public
 * keys, a JWK or a JWK set, HMAC secrets for HS*), built on the project's jose module.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/rsa.h>
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

/* ---------------------------------------------------------------- io.jwt.decode_verify */
static bool b64u_decode(rg_ev *ev, const char *s, size_t n, char **out, size_t *ol) {
  char *o = rg_alloc(A, n + 1);
  if (!o) return false;
  size_t w = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '=') break;
    int v = b64u_val(s[i]);
    if (v < 0) return false;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      o[w++] = (char)(acc >> bits);
    }
  }
  o[w] = 0;
  *out = o;
  *ol = w;
  return true;
}

static bool hs_ok(const char *tok, const char *dot2, const rv *secret, const char *md, const char *sig, size_t sl) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t ml = 0;
  static const unsigned char empty[1] = {0};
  if (!EVP_Q_mac(NULL, "HMAC", NULL, md, NULL, secret->n ? (const void *)secret->u.s : empty, secret->n,
                 (const unsigned char *)tok, (size_t)(dot2 - tok), mac, sizeof(mac), &ml))
    return false;
  return sl == ml && CRYPTO_memcmp(sig, mac, ml) == 0;
}

static ct_status bi_decode_verify(rg_ev *ev, rv **a, rv **out) {
  static const char name[] = "io.jwt.decode_verify";
  CT_GUARD(rg_bi_want(ev, name, 1, a[0], RV_STR));
  CT_GUARD(rg_bi_want(ev, name, 2, a[1], RV_OBJ));
  rv *cert = NULL, *secret = NULL, *alg = NULL, *iss = NULL, *aud = NULL;
  double now = (double)rg_ev_now(ev);
  for (size_t i = 0; i < a[1]->n; i++) {
    rv *k = a[1]->u.o.k[i], *v = a[1]->u.o.v[i];
    const char *kn = k->t == RV_STR ? k->u.s : "";
    if (!strcmp(kn, "cert")) cert = v;
    else if (!strcmp(kn, "secret")) secret = v;
    else if (!strcmp(kn, "alg")) alg = v;
    else if (!strcmp(kn, "iss")) iss = v;
    else if (!strcmp(kn, "aud")) aud = v;
    else if (!strcmp(kn, "time")) {
      if (v->t != RV_NUM) return rg_bi_fail(ev, "%s: time constraint: must be a number", name);
      now = rv_num_dbl(v);
    } else
      return rg_bi_fail(ev, "%s: unknown token validation constraint: %s", name, kn);
    if (v->t != RV_STR && strcmp(kn, "time")) return rg_bi_fail(ev, "%s: %s constraint: must be a string", name, kn);
  }
  if (cert && secret) return rg_bi_fail(ev, "%s: duplicate key constraints", name);
  if (!cert && !secret) return rg_bi_fail(ev, "%s: no key constraint", name);
  rv *unv[3] = {RV_FALSE, &rv_empty_obj_v, &rv_empty_obj_v};
  rv *unverified = rv_arr(A, unv, 3);
  if (!unverified) return rg_bi_oom(ev);
  EVP_PKEY **keys = NULL;
  size_t nkeys = 0;
  if (cert) CT_GUARD(load_keys(ev, name, cert, &keys, &nkeys));
  rv *tok = a[0], *hdr = NULL, *pay = NULL;
  ct_status st = CT_OK;
  *out = unverified;
  for (int depth = 0; depth < 8; depth++) {
    if ((st = check_sections(ev, name, tok))) goto done;
    const char *s = tok->u.s, *d1 = strchr(s, '.'), *d2 = strrchr(s, '.');
    char *hj, *pj, *sig;
    size_t hl, pl, sl;
    if (!b64u_decode(ev, s, (size_t)(d1 - s), &hj, &hl)) {
      st = rg_bi_fail(ev, "%s: JWT header had invalid encoding", name);
      goto done;
    }
    ct_err e2;
    if (rg_json_parse(A, hj, hl, 100, &hdr, &e2) || hdr->t != RV_OBJ) {
      st = rg_bi_fail(ev, "%s: JWT header had invalid encoding: %s", name, e2.msg);
      goto done;
    }
    rv *halg = rv_obj_gets(hdr, "alg");
    if (!halg || halg->t != RV_STR) goto done; /* invalid header: unverified */
    if (alg && !(alg->n == halg->n && !memcmp(alg->u.s, halg->u.s, alg->n))) goto done;
    if (!b64u_decode(ev, d2 + 1, strlen(d2 + 1), &sig, &sl)) {
      st = rg_bi_fail(ev, "%s: JWT signature had invalid encoding", name);
      goto done;
    }
    bool ok = false;
    if (secret) {
      const char *md = !strcmp(halg->u.s, "HS256") ? "SHA256" : !strcmp(halg->u.s, "HS384") ? "SHA384"
                       : !strcmp(halg->u.s, "HS512") ? "SHA512" : NULL;
      ok = md && hs_ok(s, d2, secret, md, sig, sl);
    } else {
      for (size_t i = 0; i < nkeys && !ok; i++) {
        ct_err e3 = {0};
        ok = jose_jws_verify(s, keys[i], halg->u.s, NULL, NULL, NULL, &e3) == CT_OK;
      }
    }
    if (!ok) goto done;
    if (!b64u_decode(ev, d1 + 1, (size_t)(d2 - d1 - 1), &pj, &pl)) {
      st = rg_bi_fail(ev, "%s: JWT payload had invalid encoding", name);
      goto done;
    }
    rv *cty = rv_obj_gets(hdr, "cty");
    if (cty && cty->t == RV_STR && !strcasecmp(cty->u.s, "JWT")) {
      tok = rv_str(A, pj, pl);
      if (!tok) {
        st = rg_bi_oom(ev);
        goto done;
      }
      continue;
    }
    if (rg_json_parse(A, pj, pl, 100, &pay, &e2) || pay->t != RV_OBJ) {
      st = rg_bi_fail(ev, "%s: JWT payload had invalid encoding", name);
      goto done;
    }
    break;
  }
  if (!pay) goto done;
  if (iss) {
    rv *t = rv_obj_gets(pay, "iss");
    if (!t || !rv_eq(t, iss)) goto done;
  }
  rv *ta = rv_obj_gets(pay, "aud");
  if (ta) {
    bool okaud = false;
    if (aud) {
      if (ta->t == RV_STR) okaud = rv_eq(ta, aud);
      else if (ta->t == RV_ARR)
        for (size_t i = 0; i < ta->n && !okaud; i++) okaud = rv_eq(ta->u.a[i], aud);
    }
    if (!okaud) goto done;
  } else if (aud && aud->n)
    goto done;
  rv *exp = rv_obj_gets(pay, "exp");
  if (exp) {
    if (exp->t != RV_NUM) {
      st = rg_bi_fail(ev, "%s: exp value must be a number", name);
      goto done;
    }
    if (now / 1e9 >= rv_num_dbl(exp)) goto done;
  }
  rv *nbf = rv_obj_gets(pay, "nbf");
  if (nbf) {
    if (nbf->t != RV_NUM) {
      st = rg_bi_fail(ev, "%s: nbf value must be a number", name);
      goto done;
    }
    if (now / 1e9 < rv_num_dbl(nbf)) goto done;
  }
  {
    rv *ver[3] = {RV_TRUE, hdr, pay};
    *out = rv_arr(A, ver, 3);
    if (!*out) st = rg_bi_oom(ev);
  }
done:
  for (size_t i = 0; i < nkeys; i++) EVP_PKEY_free(keys[i]);
  free(keys);
  return st;
}

/* ---------------------------------------------------------------- io.jwt.encode_sign */
static const char b64url_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static ct_status b64u_append(rg_ev *ev, ct_buf *b, const uint8_t *in, size_t n) {
  ct_err e2;
  char q[4];
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    size_t k = 0;
    q[k++] = b64url_chars[(v >> 18) & 63];
    q[k++] = b64url_chars[(v >> 12) & 63];
    if (i + 1 < n) q[k++] = b64url_chars[(v >> 6) & 63];
    if (i + 2 < n) q[k++] = b64url_chars[v & 63];
    if (ct_buf_append(b, q, k, &e2)) return rg_bi_fail(ev, "io.jwt.encode_sign: token too large");
  }
  return CT_OK;
}

/* Signs header_text.payload_text with the JWK in key_text; the algorithm comes from the header. */
static ct_status sign_raw(rg_ev *ev, const char *name, const char *htxt, size_t hl, const char *ptxt, size_t pl,
                          const char *ktxt, size_t kl, rv **out) {
  ct_err e2 = {0};
  rv *hdr, *key;
  if (!hl) return rg_bi_fail(ev, "%s: missing or invalid 'alg' header: cannot parse JSON: cannot parse empty string", name);
  if (rg_json_parse(A, htxt, hl, 100, &hdr, &e2) || hdr->t != RV_OBJ)
    return rg_bi_fail(ev, "%s: missing or invalid 'alg' header: cannot parse JSON", name);
  rv *alg = rv_obj_gets(hdr, "alg");
  if (!alg || alg->t != RV_STR)
    return rg_bi_fail(ev, "%s: missing or invalid 'alg' header: jwsbb: header \"alg\" not found", name);
  static const char *const algs[] = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384",
                                     "PS512", "ES256", "ES384", "ES512", "EdDSA", NULL};
  bool known = false;
  for (int i = 0; algs[i]; i++) known = known || !strcmp(algs[i], alg->u.s);
  if (!known) return rg_bi_fail(ev, "%s: unknown JWS algorithm: %s", name, alg->u.s);
  rv *typ = rv_obj_gets(hdr, "typ");
  rv *pv;
  if (typ && typ->t == RV_STR && !strcmp(typ->u.s, "JWT") &&
      (rg_json_parse(A, ptxt, pl, 100, &pv, &e2) || pv->t != RV_OBJ))
    return rg_bi_fail(ev, "%s: type is JWT but payload is not JSON", name);
  if (rg_json_parse(A, ktxt, kl, 100, &key, &e2) || key->t != RV_OBJ) return rg_bi_fail(ev, "%s: invalid JWK", name);
  ct_buf b;
  ct_buf_init(&b, 1u << 24);
  ct_status st = b64u_append(ev, &b, (const uint8_t *)htxt, hl);
  if (!st) st = ct_buf_append(&b, ".", 1, &e2);
  if (!st) st = b64u_append(ev, &b, (const uint8_t *)ptxt, pl);
  if (st) {
    ct_buf_free(&b);
    return st;
  }
  size_t signing_len = b.len;
  uint8_t sig[1024];
  size_t sl = 0;
  const char *a = alg->u.s;
  const char *md = NULL;
  if (!strcmp(a + 2, "256")) md = "SHA256";
  else if (!strcmp(a + 2, "384")) md = "SHA384";
  else if (!strcmp(a + 2, "512")) md = "SHA512";
  if (a[0] == 'H' && a[1] == 'S' && md) {
    rv *k = rv_obj_gets(key, "k");
    char *secret = NULL;
    size_t seclen = 0;
    if (!k || k->t != RV_STR || !b64u_decode(ev, k->u.s, k->n, &secret, &seclen)) {
      ct_buf_free(&b);
      return rg_bi_fail(ev, "%s: HS algorithms need an oct JWK with k", name);
    }
    static const unsigned char empty[1] = {0};
    if (!EVP_Q_mac(NULL, "HMAC", NULL, md, NULL, seclen ? (const void *)secret : empty, seclen, b.data, signing_len,
                   sig, sizeof(sig), &sl))
      st = rg_bi_fail(ev, "%s: HMAC failed", name);
  } else {
    /* asymmetric: through the jose module's JWK parser, signed here (the header is the caller's) */
    json_t *kj = NULL;
    char *ktmp = rg_strndup(A, ktxt, kl);
    json_error_t je;
    if (ktmp) kj = json_loads(ktmp, 0, &je);
    jose_jwk *jk = NULL;
    if (!kj || jose_jwk_from_json(kj, &jk, &e2) != CT_OK) {
      json_decref(kj);
      ct_buf_free(&b);
      return rg_bi_fail(ev, "%s: invalid JWK: %s", name, e2.msg);
    }
    json_decref(kj);
    EVP_PKEY *pk = jose_jwk_pkey(jk);
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    bool eddsa = !strcmp(a, "EdDSA");
    const char *dg = eddsa ? NULL : md;
    int ok = mc && (eddsa || dg) && EVP_DigestSignInit_ex(mc, &pc, dg, NULL, NULL, pk, NULL) == 1;
    if (ok && a[0] == 'P' && a[1] == 'S')
      ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) == 1;
    uint8_t der[1024];
    size_t dl = sizeof(der);
    if (ok) ok = EVP_DigestSign(mc, der, &dl, b.data, signing_len) == 1;
    if (ok && a[0] == 'E' && a[1] == 'S') {
      /* DER ECDSA-Sig-Value -> fixed-size r || s */
      const unsigned char *pp = der;
      ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &pp, (long)dl);
      size_t half = !strcmp(md, "SHA256") ? 32 : !strcmp(md, "SHA384") ? 48 : 66;
      ok = es && BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, (int)half) > 0 &&
           BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + half, (int)half) > 0;
      sl = 2 * half;
      ECDSA_SIG_free(es);
    } else if (ok) {
      memcpy(sig, der, dl);
      sl = dl;
    }
    EVP_MD_CTX_free(mc);
    jose_jwk_free(jk);
    if (!ok) st = rg_bi_fail(ev, "%s: signing with %s failed", name, a);
  }
  if (!st) st = ct_buf_append(&b, ".", 1, &e2);
  if (!st) st = b64u_append(ev, &b, sig, sl);
  if (!st) {
    *out = rv_str(A, (const char *)b.data, b.len);
    if (!*out) st = rg_bi_oom(ev);
  }
  ct_buf_free(&b);
  return st;
}

static ct_status bi_encode_sign_raw(rg_ev *ev, rv **a, rv **out) {
  for (int i = 0; i < 3; i++) CT_GUARD(rg_bi_want(ev, "io.jwt.encode_sign_raw", i + 1, a[i], RV_STR));
  return sign_raw(ev, "io.jwt.encode_sign_raw", a[0]->u.s, a[0]->n, a[1]->u.s, a[1]->n, a[2]->u.s, a[2]->n, out);
}

static ct_status bi_encode_sign(rg_ev *ev, rv **a, rv **out) {
  for (int i = 0; i < 3; i++) CT_GUARD(rg_bi_want(ev, "io.jwt.encode_sign", i + 1, a[i], RV_OBJ));
  ct_buf t[3];
  ct_err e2;
  ct_status st = CT_OK;
  for (int i = 0; i < 3; i++) {
    ct_buf_init(&t[i], 1u << 24);
    if (!st && rg_json_write(a[i], &t[i], false, 0, &e2)) st = rg_bi_fail(ev, "io.jwt.encode_sign: %s", e2.msg);
  }
  if (!st)
    st = sign_raw(ev, "io.jwt.encode_sign", (const char *)t[0].data, t[0].len, (const char *)t[1].data, t[1].len,
                  (const char *)t[2].data, t[2].len, out);
  for (int i = 0; i < 3; i++) ct_buf_free(&t[i]);
  return st;
}

const rg_builtin rg_builtins_jwt[] = {
    {"io.jwt.encode_sign_raw", 3, bi_encode_sign_raw, true},
    {"io.jwt.encode_sign", 3, bi_encode_sign, true},
    {"io.jwt.decode_verify", 2, bi_decode_verify, false},
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
