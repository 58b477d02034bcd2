/*
 * builtins_jwt.c - io.jwt.verify_*, io.jwt.decode_verify, io.jwt.encode_sign(_raw).
 *
 * Semantics follow OPA's v1/topdown/tokens.go: keys come as one PEM block (CERTIFICATE or
 * PUBLIC KEY) or as a JWK / JWK Set JSON string; JWKs are parsed by the jose module, "oct" keys
 * (HMAC secrets) here. Signatures are checked with OpenSSL EVP. Every input is bounded.
 * io.jwt.decode lives in builtins_enc.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "ct_mem.h"
#include "jose.h"
#include "rego_bi.h"

#define JWT_TOKEN_MAX (1u << 20)   /* a compact token */
#define JWT_KEYSRC_MAX (1u << 20)  /* a PEM block or JWK (Set) text */
#define JWT_MAX_KEYS 256
#define JWT_MAX_NESTING 8          /* cty: JWT levels followed by decode_verify */
#define JWT_SIG_MAX 1024           /* decoded signature bytes (RSA 8192 = 1024) */

/* ---------------------------------------------------------------- algorithms */
enum { JK_RS, JK_PS, JK_ES, JK_ED, JK_HS };
typedef struct {
  const char *name;
  int kind;
  const char *md; /* NULL for EdDSA */
} jwt_alg;

static const jwt_alg jwt__algs[] = {
    {"RS256", JK_RS, "SHA256"}, {"RS384", JK_RS, "SHA384"}, {"RS512", JK_RS, "SHA512"},
    {"PS256", JK_PS, "SHA256"}, {"PS384", JK_PS, "SHA384"}, {"PS512", JK_PS, "SHA512"},
    {"ES256", JK_ES, "SHA256"}, {"ES384", JK_ES, "SHA384"}, {"ES512", JK_ES, "SHA512"},
    {"HS256", JK_HS, "SHA256"}, {"HS384", JK_HS, "SHA384"}, {"HS512", JK_HS, "SHA512"},
    {"EdDSA", JK_ED, NULL},
};

static const jwt_alg *rego__jwt__alg(const char *name) {
  for (size_t i = 0; i < sizeof(jwt__algs) / sizeof(jwt__algs[0]); i++)
    if (!strcmp(jwt__algs[i].name, name)) return &jwt__algs[i];
  return NULL;
}

/* ---------------------------------------------------------------- base64url */
static const char jwt__b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Decodes unpadded (or padded) base64url into arena memory. Returns the offset of the first
 * illegal byte, or -1 on success (as Go's base64 error "illegal base64 data at input byte N"). */
static long rego__jwt__b64u_dec(rg_arena *a, const char *s, size_t n, uint8_t **o, size_t *ol) {
  size_t end = n;
  while (end > 0 && s[end - 1] == '=') end--;
  if (n - end > 2 || (n != end && n % 4)) return (long)end;
  *o = rg_alloc(a, n + 1);
  if (!*o) return -2;
  uint32_t acc = 0;
  int bits = 0;
  size_t w = 0;
  for (size_t i = 0; i < end; i++) {
    const char *p = s[i] ? memchr(jwt__b64u, s[i], 64) : NULL;
    if (!p) return (long)i;
    acc = (acc << 6) | (uint32_t)(p - jwt__b64u);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      (*o)[w++] = (uint8_t)(acc >> bits);
    }
  }
  if (end % 4 == 1) return (long)end;
  *ol = w;
  return -1;
}

static char *rego__jwt__b64u_enc(rg_arena *a, const uint8_t *in, size_t n, size_t *olen) {
  char *o = rg_alloc(a, (n + 2) / 3 * 4 + 1);
  if (!o) return NULL;
  size_t w = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    o[w++] = jwt__b64u[(v >> 18) & 63];
    o[w++] = jwt__b64u[(v >> 12) & 63];
    if (i + 1 < n) o[w++] = jwt__b64u[(v >> 6) & 63];
    if (i + 2 < n) o[w++] = jwt__b64u[v & 63];
  }
  o[w] = 0;
  *olen = w;
  return o;
}

/* ---------------------------------------------------------------- keys */
typedef struct {
  char alg[16];      /* "" when the JWK has none */
  const char *kid;   /* arena; "" when none */
  EVP_PKEY *pk;      /* owned; NULL for an oct key */
  uint8_t *secret;   /* arena; oct key bytes */
  size_t slen;
} jwt_key;

typedef struct {
  jwt_key *k;
  size_t n;
} jwt_keys;

static void rego__jwt__keys_free(jwt_keys *ks) {
  if (!ks->k) return;
  for (size_t i = 0; i < ks->n; i++) {
    EVP_PKEY_free(ks->k[i].pk);
    if (ks->k[i].secret) ct_wipe(ks->k[i].secret, ks->k[i].slen);
  }
  free(ks->k);
  ks->k = NULL;
  ks->n = 0;
}

/* One JWK object into *k. Returns false with a reason in `why`. */
static bool rego__jwt__jwk_one(rg_arena *a, json_t *j, jwt_key *k, char *why, size_t whylen) {
  memset(k, 0, sizeof(*k));
  k->kid = "";
  const char *kty = json_string_value(json_object_get(j, "kty"));
  if (!kty) {
    snprintf(why, whylen, "invalid key type from JSON ()");
    return false;
  }
  const char *alg = json_string_value(json_object_get(j, "alg"));
  const char *kid = json_string_value(json_object_get(j, "kid"));
  if (alg) snprintf(k->alg, sizeof(k->alg), "%s", strlen(alg) < sizeof(k->alg) ? alg : "?");
  if (kid) {
    k->kid = rg_strndup(a, kid, strlen(kid));
    if (!k->kid) {
      snprintf(why, whylen, "out of memory");
      return false;
    }
  }
  if (!strcmp(kty, "oct")) {
    const char *kk = json_string_value(json_object_get(j, "k"));
    if (!kk) {
      snprintf(why, whylen, "required field k is missing");
      return false;
    }
    if (rego__jwt__b64u_dec(a, kk, strlen(kk), &k->secret, &k->slen) != -1) {
      snprintf(why, whylen, "failed to decode k");
      return false;
    }
    return true;
  }
  /* jose checks the alg against the key type; OPA skips unknown algs instead */
  json_t *c = json_deep_copy(j);
  if (!c) {
    snprintf(why, whylen, "out of memory");
    return false;
  }
  json_object_del(c, "alg");
  jose_jwk *jk = NULL;
  ct_err e = {0};
  ct_status r = jose_jwk_from_json(c, &jk, &e);
  json_decref(c);
  if (r != CT_OK) {
    snprintf(why, whylen, "%.180s", e.msg);
    return false;
  }
  k->pk = jose_jwk_pkey(jk);
  EVP_PKEY_up_ref(k->pk);
  jose_jwk_free(jk);
  return true;
}

/* OPA's parseKeysFromCertOrJWK: a PEM certificate / public key, or a JWK (Set). On failure
 * reports the OPA message through rg_bi_fail. Caller frees ks with jwt__keys_free. */
static CT_RESULT rego__jwt__keys_parse(rg_ev *ev, const char *fname, const rv *src, jwt_keys *ks) {
  memset(ks, 0, sizeof(*ks));
  if (src->n > JWT_KEYSRC_MAX) return rg_bi_fail(ev, "%s: key material larger than %u bytes", fname, JWT_KEYSRC_MAX);
  if (strstr(src->u.s, "-----BEGIN")) {
    BIO *b = BIO_new_mem_buf(src->u.s, (int)src->n);
    if (!b) return rg_bi_oom(ev);
    char *name = NULL, *hdr = NULL;
    unsigned char *der = NULL;
    long dlen = 0;
    if (PEM_read_bio(b, &name, &hdr, &der, &dlen) == 1) {
      /* Go's pem.Decode consumes the END line with its line break; anything after is extra */
      bool extra = BIO_pending(b) > 0;
      BIO_free(b);
      ct_status st = CT_OK;
      EVP_PKEY *pk = NULL;
      const unsigned char *p = der;
      if (extra) {
        st = rg_bi_fail(ev, "%s: extra data after a PEM certificate block", fname);
      } else if (!strcmp(name, "CERTIFICATE")) {
        X509 *x = d2i_X509(NULL, &p, dlen);
        if (!x || p != der + dlen) st = rg_bi_fail(ev, "%s: failed to parse a PEM certificate: x509: malformed certificate", fname);
        else if (!(pk = X509_get_pubkey(x))) st = rg_bi_fail(ev, "%s: failed to parse a PEM certificate: unsupported public key", fname);
        X509_free(x);
      } else if (!strcmp(name, "PUBLIC KEY")) {
        pk = d2i_PUBKEY(NULL, &p, dlen);
        if (!pk) st = rg_bi_fail(ev, "%s: failed to parse a PEM public key: asn1: structure error", fname);
      } else {
        st = rg_bi_fail(ev, "%s: failed to extract a Key from the PEM certificate", fname);
      }
      OPENSSL_free(name);
      OPENSSL_free(hdr);
      OPENSSL_free(der);
      if (st != CT_OK) {
        EVP_PKEY_free(pk);
        return st;
      }
      ks->k = calloc(1, sizeof(jwt_key));
      if (!ks->k) {
        EVP_PKEY_free(pk);
        return rg_bi_oom(ev);
      }
      ks->k[0].pk = pk;
      ks->k[0].kid = "";
      ks->n = 1;
      return CT_OK;
    }
    BIO_free(b);
    /* not a PEM block after all: Go falls through to the JWK parser */
  }
  json_error_t je;
  json_t *j = json_loadb(src->u.s, src->n, JSON_DECODE_ANY, &je);
  if (!j || !json_is_object(j)) {
    json_decref(j);
    return rg_bi_fail(ev, "%s: failed to parse a JWK key (set): %s", fname, j ? "not an object" : je.text);
  }
  json_t *arr = json_object_get(j, "keys");
  size_t cnt = json_is_array(arr) ? json_array_size(arr) : 1;
  if (cnt > JWT_MAX_KEYS) {
    json_decref(j);
    return rg_bi_fail(ev, "%s: failed to parse a JWK key (set): more than %d keys", fname, JWT_MAX_KEYS);
  }
  ks->k = calloc(cnt ? cnt : 1, sizeof(jwt_key));
  if (!ks->k) {
    json_decref(j);
    return rg_bi_oom(ev);
  }
  for (size_t i = 0; i < cnt; i++) {
    json_t *one = json_is_array(arr) ? json_array_get(arr, i) : j;
    char why[200];
    jwt_key k;
    if (!json_is_object(one) || !rego__jwt__jwk_one(A, one, &k, why, sizeof(why))) {
      if (!json_is_object(one)) snprintf(why, sizeof(why), "key is not an object");
      json_decref(j);
      rego__jwt__keys_free(ks);
      return rg_bi_fail(ev, "%s: failed to parse a JWK key (set): %s", fname, why);
    }
    if (k.alg[0] && !rego__jwt__alg(k.alg)) { /* unknown algorithms are skipped */
      EVP_PKEY_free(k.pk);
      continue;
    }
    ks->k[ks->n++] = k;
  }
  json_decref(j);
  return CT_OK;
}

static const jwt_key *rego__jwt__by_kid(const jwt_keys *ks, const char *kid) {
  for (size_t i = 0; i < ks->n; i++)
    if (!strcmp(ks->k[i].kid, kid)) return &ks->k[i];
  return NULL;
}

/* ---------------------------------------------------------------- sign / verify */
static bool rego__jwt__hmac(const jwt_alg *al, const uint8_t *key, size_t klen, const uint8_t *msg, size_t mlen,
                      uint8_t out[64], size_t *olen) {
  /* a zero-length HMAC key is legal; hand OpenSSL a non-NULL pointer */
  static const uint8_t empty[1];
  return EVP_Q_mac(NULL, "HMAC", NULL, al->md, NULL, klen ? key : empty, klen, msg, mlen, out, 64, olen) != NULL;
}

static bool rego__jwt__key_fits(const EVP_PKEY *pk, const jwt_alg *al) {
  switch (al->kind) {
  case JK_RS:
  case JK_PS:
    return EVP_PKEY_is_a(pk, "RSA") || EVP_PKEY_is_a(pk, "RSA-PSS");
  case JK_ES:
    return EVP_PKEY_is_a(pk, "EC");
  case JK_ED:
    return EVP_PKEY_is_a(pk, "ED25519");
  default:
    return false;
  }
}

/* True when `sig` is a valid signature of msg under key k with algorithm al. */
static bool rego__jwt__verify(const jwt_key *k, const jwt_alg *al, const uint8_t *msg, size_t mlen, const uint8_t *sig,
                        size_t slen) {
  if (al->kind == JK_HS) {
    if (k->pk) return false;
    uint8_t mac[64];
    size_t ml = 0;
    if (!rego__jwt__hmac(al, k->secret, k->slen, msg, mlen, mac, &ml)) return false;
    return ct_memeq(mac, ml, sig, slen);
  }
  if (!k->pk || !rego__jwt__key_fits(k->pk, al) || slen == 0 || slen > JWT_SIG_MAX) return false;
  unsigned char *der = NULL;
  const uint8_t *vsig = sig;
  size_t vlen = slen;
  if (al->kind == JK_ES) {
    /* JOSE's r||s into DER for OpenSSL (OPA splits the signature in halves) */
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)(slen / 2), NULL), *s = BN_bin2bn(sig + slen / 2, (int)(slen - slen / 2), NULL);
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
      BN_free(r);
      BN_free(s);
      ECDSA_SIG_free(es);
      return false;
    }
    int dl = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    if (dl <= 0) return false;
    vsig = der;
    vlen = (size_t)dl;
  }
  bool ok = false;
  EVP_MD_CTX *mc = EVP_MD_CTX_new();
  EVP_PKEY_CTX *pc = NULL;
  if (mc && EVP_DigestVerifyInit_ex(mc, &pc, al->md, NULL, NULL, k->pk, NULL) == 1) {
    bool setup = true;
    if (al->kind == JK_PS)
      setup = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
              EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_AUTO) == 1;
    else if (al->kind == JK_RS)
      setup = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1;
    ok = setup && EVP_DigestVerify(mc, vsig, vlen, msg, mlen) == 1;
  }
  EVP_MD_CTX_free(mc);
  OPENSSL_free(der);
  return ok;
}

/* Signs msg; the signature goes to arena memory. Returns false with a reason in why. */
static bool rego__jwt__sign(rg_arena *a, const jwt_key *k, const jwt_alg *al, const uint8_t *msg, size_t mlen,
                      uint8_t **sig, size_t *slen, char *why, size_t whylen) {
  if (al->kind == JK_HS) {
    if (k->pk) {
      snprintf(why, whylen, "invalid key type for %s: expected an oct key", al->name);
      return false;
    }
    *sig = rg_alloc(a, 64);
    if (!*sig || !rego__jwt__hmac(al, k->secret, k->slen, msg, mlen, *sig, slen)) {
      snprintf(why, whylen, "HMAC failed");
      return false;
    }
    return true;
  }
  if (!k->pk || !rego__jwt__key_fits(k->pk, al)) {
    snprintf(why, whylen, "invalid key type for %s", al->name);
    return false;
  }
  bool ok = false;
  unsigned char *raw = NULL;
  size_t rl = 0;
  EVP_MD_CTX *mc = EVP_MD_CTX_new();
  EVP_PKEY_CTX *pc = NULL;
  if (mc && EVP_DigestSignInit_ex(mc, &pc, al->md, NULL, NULL, k->pk, NULL) == 1) {
    bool setup = true;
    if (al->kind == JK_PS)
      setup = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
              EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) == 1;
    else if (al->kind == JK_RS)
      setup = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1;
    if (setup && EVP_DigestSign(mc, NULL, &rl, msg, mlen) == 1 && (raw = OPENSSL_malloc(rl ? rl : 1)) &&
        EVP_DigestSign(mc, raw, &rl, msg, mlen) == 1)
      ok = true;
  }
  EVP_MD_CTX_free(mc);
  if (!ok) {
    OPENSSL_free(raw);
    snprintf(why, whylen, "failed to sign payload using %s", al->name);
    return false;
  }
  if (al->kind == JK_ES) {
    /* DER into fixed-size r||s */
    int bits = EVP_PKEY_get_bits(k->pk);
    size_t fl = (size_t)(bits + 7) / 8;
    const unsigned char *p = raw;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)rl);
    OPENSSL_free(raw);
    *sig = es ? rg_alloc(a, 2 * fl) : NULL;
    ok = *sig && BN_bn2binpad(ECDSA_SIG_get0_r(es), *sig, (int)fl) == (int)fl &&
         BN_bn2binpad(ECDSA_SIG_get0_s(es), *sig + fl, (int)fl) == (int)fl;
    ECDSA_SIG_free(es);
    *slen = 2 * fl;
    if (!ok) snprintf(why, whylen, "failed to sign payload using %s", al->name);
    return ok;
  }
  *sig = rg_alloc(a, rl);
  if (*sig) memcpy(*sig, raw, rl);
  OPENSSL_free(raw);
  *slen = rl;
  if (!*sig) snprintf(why, whylen, "out of memory");
  return *sig != NULL;
}

/* ---------------------------------------------------------------- token parts */
typedef struct {
  const char *h, *p, *s; /* the three base64url sections */
  size_t hl, pl, sl;
  rv *hdr;               /* decoded header object (after jwt__header) */
  const char *alg, *kid, *cty;
  bool crit_unknown;
} jwt_tok;

/* OPA's decodeJWT: exactly three dot-separated sections. */
static CT_RESULT rego__jwt__split(rg_ev *ev, const char *fname, const rv *t, jwt_tok *tk) {
  CT_GUARD(rg_bi_want(ev, fname, 1, (rv *)t, RV_STR));
  if (t->n > JWT_TOKEN_MAX) return rg_bi_fail(ev, "%s: encoded JWT larger than %u bytes", fname, JWT_TOKEN_MAX);
  memset(tk, 0, sizeof(*tk));
  const char *s = t->u.s, *e = s + t->n;
  const char *d1 = memchr(s, '.', t->n);
  if (!d1) return rg_bi_fail(ev, "%s: encoded JWT had no period separators", fname);
  size_t parts = 1;
  for (const char *q = s; q < e; q++) parts += *q == '.';
  if (parts != 3) return rg_bi_fail(ev, "%s: encoded JWT must have 3 sections, found %zu", fname, parts);
  const char *d2 = memchr(d1 + 1, '.', (size_t)(e - d1 - 1));
  tk->h = s;
  tk->hl = (size_t)(d1 - s);
  tk->p = d1 + 1;
  tk->pl = (size_t)(d2 - d1 - 1);
  tk->s = d2 + 1;
  tk->sl = (size_t)(e - d2 - 1);
  return CT_OK;
}

static CT_RESULT rego__jwt__sig(rg_ev *ev, const char *fname, const jwt_tok *tk, uint8_t **sig, size_t *sl) {
  long bad = rego__jwt__b64u_dec(A, tk->s, tk->sl, sig, sl);
  if (bad == -2) return rg_bi_oom(ev);
  if (bad >= 0) return rg_bi_fail(ev, "%s: illegal base64 data at input byte %ld", fname, bad);
  return CT_OK;
}

/* decodeHeader + parseTokenHeader. */
static CT_RESULT rego__jwt__header(rg_ev *ev, const char *fname, jwt_tok *tk) {
  uint8_t *h;
  size_t hl;
  long bad = rego__jwt__b64u_dec(A, tk->h, tk->hl, &h, &hl);
  if (bad == -2) return rg_bi_oom(ev);
  if (bad >= 0)
    return rg_bi_fail(ev, "%s: JWT header had invalid encoding: illegal base64 data at input byte %ld", fname, bad);
  ct_err e = {0};
  rv *hdr;
  if (rg_json_parse(A, (const char *)h, hl, 64, &hdr, &e) != CT_OK)
    return rg_bi_fail(ev, "%s: bad JWT header: invalid JSON: %s", fname, e.msg);
  if (hdr->t != RV_OBJ) return rg_bi_fail(ev, "%s: bad JWT header: decoded JSON type was not an Object", fname);
  if (rv_obj_gets(hdr, "enc")) return rg_bi_fail(ev, "%s: JWT is a JWE object, which is not supported", fname);
  tk->hdr = hdr;
  tk->alg = tk->kid = tk->cty = "";
  const rv *crit = NULL;
  for (uint32_t i = 0; i < hdr->n; i++) {
    const rv *k = hdr->u.o.k[i], *v = hdr->u.o.v[i];
    if (k->t != RV_STR) continue;
    const char **where = !strcmp(k->u.s, "alg") ? &tk->alg
                         : !strcmp(k->u.s, "kid") ? &tk->kid
                         : !strcmp(k->u.s, "cty") ? &tk->cty
                                                  : NULL;
    if (where || !strcmp(k->u.s, "typ")) {
      if (v->t != RV_STR) return rg_bi_fail(ev, "%s: %s: must be a string", fname, k->u.s);
      if (where) *where = v->u.s;
    } else if (!strcmp(k->u.s, "crit")) {
      if (v->t != RV_ARR) return rg_bi_fail(ev, "%s: crit: must be a list", fname);
      bool any = false;
      for (uint32_t j = 0; j < v->n; j++) any |= v->u.a[j]->t == RV_STR;
      if (!any) return rg_bi_fail(ev, "%s: crit: must be a nonempty list", fname);
      crit = v;
    }
  }
  /* RFC 7515 4.1.11: a critical parameter we do not understand invalidates the token */
  if (crit) {
    static const char *const known[] = {"alg", "kid", "typ", "cty", "crit"};
    for (uint32_t j = 0; j < crit->n; j++) {
      const rv *c = crit->u.a[j];
      if (c->t != RV_STR || !rv_obj_gets(hdr, c->u.s)) continue;
      bool k = false;
      for (size_t q = 0; q < sizeof(known) / sizeof(known[0]); q++) k |= !strcmp(known[q], c->u.s);
      if (!k) tk->crit_unknown = true;
    }
  }
  return CT_OK;
}

/* The signing input "header.payload" (contiguous in the token). */
#define SIGNING_INPUT(tk) ((const uint8_t *)(tk).h), ((tk).hl + 1 + (tk).pl)

/* ---------------------------------------------------------------- io.jwt.verify_* */
static CT_RESULT rego__jwt__verify_asym(rg_ev *ev, const char *fname, const char *alg, rv **a, rv **out) {
  const jwt_alg *al = rego__jwt__alg(alg);
  jwt_tok tk;
  CT_GUARD(rego__jwt__split(ev, fname, a[0], &tk));
  CT_GUARD(rg_bi_want(ev, fname, 2, a[1], RV_STR));
  jwt_keys ks;
  CT_GUARD(rego__jwt__keys_parse(ev, fname, a[1], &ks));
  uint8_t *sig;
  size_t sl;
  ct_status st = rego__jwt__sig(ev, fname, &tk, &sig, &sl);
  if (st == CT_OK) st = rego__jwt__header(ev, fname, &tk);
  if (st != CT_OK) {
    rego__jwt__keys_free(&ks);
    return st;
  }
  bool ok = false;
  const jwt_key *byk = tk.kid[0] ? rego__jwt__by_kid(&ks, tk.kid) : NULL;
  if (byk) {
    ok = rego__jwt__verify(byk, al, SIGNING_INPUT(tk), sig, sl);
  } else {
    for (size_t i = 0; i < ks.n && !ok; i++) {
      if (ks.k[i].alg[0] && strcmp(ks.k[i].alg, tk.alg)) continue;
      ok = rego__jwt__verify(&ks.k[i], al, SIGNING_INPUT(tk), sig, sl);
    }
  }
  rego__jwt__keys_free(&ks);
  *out = rv_bool(ok);
  return CT_OK;
}

static CT_RESULT rego__bi_rs256(rg_ev *ev, rv **a, rv **out) { return rego__jwt__verify_asym(ev, "io.jwt.verify_rs256", "RS256", a, out); }
static CT_RESULT rego__bi_rs384(rg_ev *ev, rv **a, rv **out) { return rego__jwt__verify_asym(ev, "io.jwt.verify_rs384", "RS384", a, out); }
static CT_RESULT rego__bi_rs512(rg_ev *ev, rv **a, rv **out) { return rego__jwt__verify_asym(ev, "io.jwt.verify_rs512", "RS512", a, out); }
static CT_RESULT rego__bi_ps256(rg_ev *ev, rv **a, rv **out) { return rego__jwt__verify_asym(ev, "io.jwt.verify_ps256", "PS256", a, out); }
static CT_RESULT rego__bi_ps384(rg_ev *ev, rv **a, rv **out) { return rego__jwt__verify_asym(ev, "io.jwt.verify_ps384", "PS384", a, out); }
static CT_RESULT rego__bi_ps512(rg_ev *ev, rv **a, rv **out) { return rego__jwt__verify_asym(ev, "io.jwt.verify_ps512", "PS512", a, out); }
static CT_RESULT rego__bi_es256(rg_ev *ev, rv **a, rv **out) { return rego__jwt__verify_asym(ev, "io.jwt.verify_es256", "ES256", a, out); }
static CT_RESULT rego__bi_es384(rg_ev *ev, rv **a, rv **out) { return rego__jwt__verify_asym(ev, "io.jwt.verify_es384", "ES384", a, out); }
static CT_RESULT rego__bi_es512(rg_ev *ev, rv **a, rv **out) { return rego__jwt__verify_asym(ev, "io.jwt.verify_es512", "ES512", a, out); }
static CT_RESULT rego__bi_eddsa(rg_ev *ev, rv **a, rv **out) { return rego__jwt__verify_asym(ev, "io.jwt.verify_eddsa", "EdDSA", a, out); }

static CT_RESULT rego__jwt__verify_hs(rg_ev *ev, const char *fname, const char *alg, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, fname, 1, a[0], RV_STR));
  CT_GUARD(rg_bi_want(ev, fname, 2, a[1], RV_STR));
  jwt_tok tk;
  CT_GUARD(rego__jwt__split(ev, fname, a[0], &tk));
  uint8_t *sig;
  size_t sl;
  CT_GUARD(rego__jwt__sig(ev, fname, &tk, &sig, &sl));
  jwt_key k = {.kid = "", .secret = (uint8_t *)a[1]->u.s, .slen = a[1]->n};
  *out = rv_bool(rego__jwt__verify(&k, rego__jwt__alg(alg), SIGNING_INPUT(tk), sig, sl));
  return CT_OK;
}
static CT_RESULT rego__bi_hs256(rg_ev *ev, rv **a, rv **out) { return rego__jwt__verify_hs(ev, "io.jwt.verify_hs256", "HS256", a, out); }
static CT_RESULT rego__bi_hs384(rg_ev *ev, rv **a, rv **out) { return rego__jwt__verify_hs(ev, "io.jwt.verify_hs384", "HS384", a, out); }
static CT_RESULT rego__bi_hs512(rg_ev *ev, rv **a, rv **out) { return rego__jwt__verify_hs(ev, "io.jwt.verify_hs512", "HS512", a, out); }

/* ---------------------------------------------------------------- io.jwt.decode_verify */
typedef struct {
  jwt_keys keys;
  bool have_keys;
  const rv *secret;
  const char *alg, *iss, *aud;
  double time; /* ns */
} jwt_cons;

static CT_RESULT rego__jwt__time(rg_ev *ev, const char *fname, const rv *v, double *t) {
  if (v->t != RV_NUM) return rg_bi_fail(ev, "%s: token time constraint: must be a number", fname);
  *t = rv_num_dbl(v);
  if (*t < 0) return rg_bi_fail(ev, "%s: token time constraint: must not be negative", fname);
  return CT_OK;
}

static CT_RESULT rego__jwt__cons_parse(rg_ev *ev, const char *fname, const rv *o, jwt_cons *c) {
  memset(c, 0, sizeof(*c));
  c->alg = c->iss = c->aud = "";
  c->time = -1;
  for (uint32_t i = 0; i < o->n; i++) {
    const rv *k = o->u.o.k[i], *v = o->u.o.v[i];
    const char *name = k->t == RV_STR ? k->u.s : "";
    if (!strcmp(name, "cert")) {
      if (v->t != RV_STR) return rg_bi_fail(ev, "%s: cert constraint: must be a string", fname);
      if (c->have_keys) rego__jwt__keys_free(&c->keys);
      CT_GUARD(rego__jwt__keys_parse(ev, fname, v, &c->keys));
      c->have_keys = true;
    } else if (!strcmp(name, "time")) {
      CT_GUARD(rego__jwt__time(ev, fname, v, &c->time));
    } else if (!strcmp(name, "secret") || !strcmp(name, "alg") || !strcmp(name, "iss") || !strcmp(name, "aud")) {
      if (v->t != RV_STR) return rg_bi_fail(ev, "%s: %s constraint: must be a string", fname, name);
      if (name[0] == 's') c->secret = v->n ? v : NULL;
      else if (name[1] == 'l') c->alg = v->u.s;
      else if (name[0] == 'i') c->iss = v->u.s;
      else c->aud = v->u.s;
    } else {
      return rg_bi_fail(ev, "%s: unknown token validation constraint: %s", fname, name);
    }
  }
  if (c->time < 0) c->time = (double)rg_ev_now(ev);
  int nk = (c->have_keys ? 1 : 0) + (c->secret ? 1 : 0);
  if (nk > 1) return rg_bi_fail(ev, "%s: duplicate key constraints", fname);
  if (nk < 1) return rg_bi_fail(ev, "%s: no key constraint", fname);
  return CT_OK;
}

static bool rego__jwt__cons_verify(const jwt_cons *c, const jwt_tok *tk, const uint8_t *sig, size_t sl) {
  const jwt_alg *al = rego__jwt__alg(tk->alg);
  if (!al) return false;
  if (c->have_keys) {
    if (tk->kid[0]) {
      const jwt_key *k = rego__jwt__by_kid(&c->keys, tk->kid);
      if (k) return rego__jwt__verify(k, al, SIGNING_INPUT(*tk), sig, sl);
    }
    for (size_t i = 0; i < c->keys.n; i++) {
      if (c->keys.k[i].alg[0] && strcmp(c->keys.k[i].alg, tk->alg)) continue;
      if (rego__jwt__verify(&c->keys.k[i], al, SIGNING_INPUT(*tk), sig, sl)) return true;
    }
    return false;
  }
  if (al->kind != JK_HS) return false;
  jwt_key k = {.kid = "", .secret = (uint8_t *)c->secret->u.s, .slen = c->secret->n};
  return rego__jwt__verify(&k, al, SIGNING_INPUT(*tk), sig, sl);
}

static bool rego__jwt__aud_ok(const jwt_cons *c, const rv *aud) {
  if (aud->t == RV_STR) return !strcmp(aud->u.s, c->aud);
  if (aud->t != RV_ARR) return false;
  for (uint32_t i = 0; i < aud->n; i++)
    if (aud->u.a[i]->t == RV_STR && !strcmp(aud->u.a[i]->u.s, c->aud)) return true;
  return false;
}

static CT_RESULT rego__jwt__decode_verify(rg_ev *ev, const char *fname, rv **a, jwt_cons *c, rv **out) {
  rv *unverified_items[3] = {RV_FALSE, &rv_empty_obj_v, &rv_empty_obj_v};
  rv *unverified = rv_arr(A, unverified_items, 3);
  if (!unverified) return rg_bi_oom(ev);
  rv *tok = a[0];
  jwt_tok tk;
  uint8_t *pay = NULL;
  size_t pl = 0;
  for (int level = 0;; level++) {
    if (level >= JWT_MAX_NESTING) return rg_bi_fail(ev, "%s: JWT nested more than %d levels", fname, JWT_MAX_NESTING);
    CT_GUARD(rego__jwt__split(ev, fname, tok, &tk));
    CT_GUARD(rego__jwt__header(ev, fname, &tk));
    if (!tk.alg[0] || tk.crit_unknown) goto unver;
    if (c->alg[0] && strcmp(c->alg, tk.alg)) goto unver;
    uint8_t *sig;
    size_t sl;
    CT_GUARD(rego__jwt__sig(ev, fname, &tk, &sig, &sl));
    if (!rego__jwt__cons_verify(c, &tk, sig, sl)) goto unver;
    long bad = rego__jwt__b64u_dec(A, tk.p, tk.pl, &pay, &pl);
    if (bad == -2) return rg_bi_oom(ev);
    if (bad >= 0)
      return rg_bi_fail(ev, "%s: JWT payload had invalid encoding: illegal base64 data at input byte %ld", fname, bad);
    if (strcasecmp(tk.cty, "JWT")) break;
    tok = rv_str(A, (const char *)pay, pl);
    if (!tok) return rg_bi_oom(ev);
  }
  rv *payload;
  ct_err e = {0};
  if (rg_json_parse(A, (const char *)pay, pl, 64, &payload, &e) != CT_OK)
    return rg_bi_fail(ev, "%s: invalid JSON: %s", fname, e.msg);
  if (payload->t != RV_OBJ) return rg_bi_fail(ev, "%s: decoded JSON type was not an Object", fname);
  if (c->iss[0]) {
    const rv *iss = rv_obj_gets(payload, "iss");
    if (!iss || iss->t != RV_STR || strcmp(iss->u.s, c->iss)) goto unver;
  }
  const rv *aud = rv_obj_gets(payload, "aud");
  if (aud ? !rego__jwt__aud_ok(c, aud) : c->aud[0] != 0) goto unver;
  double now_s = c->time / 1e9;
  const rv *exp = rv_obj_gets(payload, "exp");
  if (exp) {
    if (exp->t != RV_NUM) return rg_bi_fail(ev, "%s: exp value must be a number", fname);
    if (now_s >= rv_num_dbl(exp)) goto unver;
  }
  const rv *nbf = rv_obj_gets(payload, "nbf");
  if (nbf) {
    if (nbf->t != RV_NUM) return rg_bi_fail(ev, "%s: nbf value must be a number", fname);
    if (now_s < rv_num_dbl(nbf)) goto unver;
  }
  rv *items[3] = {RV_TRUE, tk.hdr, payload};
  *out = rv_arr(A, items, 3);
  return *out ? CT_OK : rg_bi_oom(ev);
unver:
  *out = unverified;
  return CT_OK;
}

static CT_RESULT rego__bi_decode_verify(rg_ev *ev, rv **a, rv **out) {
  static const char fname[] = "io.jwt.decode_verify";
  CT_GUARD(rg_bi_want(ev, fname, 2, a[1], RV_OBJ));
  jwt_cons c;
  ct_status st = rego__jwt__cons_parse(ev, fname, a[1], &c);
  if (st == CT_OK) st = rego__jwt__decode_verify(ev, fname, a, &c, out);
  if (c.have_keys) rego__jwt__keys_free(&c.keys);
  return st;
}

/* ---------------------------------------------------------------- io.jwt.encode_sign */
static CT_RESULT rego__jwt__encode(rg_ev *ev, const char *fname, const char *hdr, size_t hl, const char *pay, size_t pln,
                             const char *jwk, size_t jl, rv **out) {
  if (hl > JWT_TOKEN_MAX || pln > JWT_TOKEN_MAX)
    return rg_bi_fail(ev, "%s: header or payload larger than %u bytes", fname, JWT_TOKEN_MAX);
  rv *src = rv_str(A, jwk, jl);
  if (!src) return rg_bi_oom(ev);
  /* the key: a JWK or a JWK Set (first key) */
  json_error_t je;
  json_t *jj = jl <= JWT_KEYSRC_MAX ? json_loadb(jwk, jl, 0, &je) : NULL;
  if (!jj) return rg_bi_fail(ev, "%s: failed to parse JWK: %s", fname, jl <= JWT_KEYSRC_MAX ? je.text : "too large");
  json_t *arr = json_object_get(jj, "keys");
  json_t *one = json_is_array(arr) ? json_array_get(arr, 0) : jj;
  if (json_is_array(arr) && !one) {
    json_decref(jj);
    return rg_bi_fail(ev, "%s: no keys found in JWK set", fname);
  }
  jwt_key k;
  char why[200];
  bool kok = rego__jwt__jwk_one(A, one, &k, why, sizeof(why));
  json_decref(jj);
  if (!kok) return rg_bi_fail(ev, "%s: failed to parse JWK: %s", fname, why);
  /* the alg header, read the way jwsbb reads it */
  ct_status st = CT_OK;
  size_t i = 0;
  while (i < hl && strchr(" \t\r\n", hdr[i])) i++;
  rv *h = NULL;
  ct_err e = {0};
  if (i == hl) {
    st = rg_bi_fail(ev, "%s: missing or invalid 'alg' header: cannot parse JSON: cannot parse empty string", fname);
  } else if (hdr[i] == '{' && rg_json_parse(A, hdr, hl, 64, &h, &e) != CT_OK) {
    st = rg_bi_fail(ev, "%s: missing or invalid 'alg' header: cannot parse JSON: %s", fname, e.msg);
  }
  const rv *alg = h && h->t == RV_OBJ ? rv_obj_gets(h, "alg") : NULL;
  const jwt_alg *al = NULL;
  if (st == CT_OK && (!alg || alg->t != RV_STR))
    st = rg_bi_fail(ev, "%s: missing or invalid 'alg' header: jwsbb: header \"alg\" not found", fname);
  if (st == CT_OK && !(al = rego__jwt__alg(alg->u.s))) st = rg_bi_fail(ev, "%s: unknown JWS algorithm: %s", fname, alg->u.s);
  if (st == CT_OK) {
    const rv *typ = rv_obj_gets(h, "typ");
    rv *pj;
    if ((!typ || typ->t != RV_STR || !strcmp(typ->u.s, "JWT")) && rg_json_parse(A, pay, pln, 64, &pj, &e) != CT_OK)
      st = rg_bi_fail(ev, "%s: type is JWT but payload is not JSON", fname);
  }
  size_t l1 = 0, l2 = 0, l3 = 0;
  char *e1 = NULL, *e2 = NULL, *e3 = NULL, *msg = NULL;
  uint8_t *sig = NULL;
  size_t sl = 0;
  if (st == CT_OK) {
    e1 = rego__jwt__b64u_enc(A, (const uint8_t *)hdr, hl, &l1);
    e2 = rego__jwt__b64u_enc(A, (const uint8_t *)pay, pln, &l2);
    msg = e1 && e2 ? rg_alloc(A, l1 + l2 + 2) : NULL;
    if (!msg) st = rg_bi_oom(ev);
  }
  if (st == CT_OK) {
    memcpy(msg, e1, l1);
    msg[l1] = '.';
    memcpy(msg + l1 + 1, e2, l2);
    if (!rego__jwt__sign(A, &k, al, (const uint8_t *)msg, l1 + 1 + l2, &sig, &sl, why, sizeof(why)))
      st = rg_bi_fail(ev, "%s: %s", fname, why);
  }
  if (st == CT_OK) {
    e3 = rego__jwt__b64u_enc(A, sig, sl, &l3);
    char *tok = e3 ? rg_alloc(A, l1 + l2 + l3 + 3) : NULL;
    if (!tok) st = rg_bi_oom(ev);
    else {
      memcpy(tok, msg, l1 + 1 + l2);
      tok[l1 + 1 + l2] = '.';
      memcpy(tok + l1 + 2 + l2, e3, l3);
      *out = rv_str(A, tok, l1 + l2 + l3 + 2);
      if (!*out) st = rg_bi_oom(ev);
    }
  }
  EVP_PKEY_free(k.pk);
  if (k.secret) ct_wipe(k.secret, k.slen);
  return st;
}

static CT_RESULT rego__jwt__json(rg_ev *ev, const rv *v, const char **s, size_t *n) {
  ct_buf b;
  ct_buf_init(&b, JWT_TOKEN_MAX);
  ct_err e = {0};
  if (rg_json_write(v, &b, false, 0, &e) != CT_OK) {
    ct_buf_free(&b);
    return rg_bi_fail(ev, "failed to marshal JWT value: %s", e.msg);
  }
  *s = rg_strndup(A, (const char *)b.data, b.len);
  *n = b.len;
  ct_buf_free(&b);
  return *s ? CT_OK : rg_bi_oom(ev);
}

static CT_RESULT rego__bi_encode_sign(rg_ev *ev, rv **a, rv **out) {
  static const char fname[] = "io.jwt.encode_sign";
  CT_GUARD(rg_bi_want(ev, fname, 1, a[0], RV_OBJ));
  CT_GUARD(rg_bi_want(ev, fname, 2, a[1], RV_OBJ));
  CT_GUARD(rg_bi_want(ev, fname, 3, a[2], RV_OBJ));
  const char *h, *p, *k;
  size_t hl, pl, kl;
  CT_GUARD(rego__jwt__json(ev, a[0], &h, &hl));
  CT_GUARD(rego__jwt__json(ev, a[1], &p, &pl));
  CT_GUARD(rego__jwt__json(ev, a[2], &k, &kl));
  return rego__jwt__encode(ev, fname, h, hl, p, pl, k, kl, out);
}

static CT_RESULT rego__bi_encode_sign_raw(rg_ev *ev, rv **a, rv **out) {
  static const char fname[] = "io.jwt.encode_sign_raw";
  CT_GUARD(rg_bi_want(ev, fname, 3, a[2], RV_STR));
  CT_GUARD(rg_bi_want(ev, fname, 1, a[0], RV_STR));
  CT_GUARD(rg_bi_want(ev, fname, 2, a[1], RV_STR));
  return rego__jwt__encode(ev, fname, a[0]->u.s, a[0]->n, a[1]->u.s, a[1]->n, a[2]->u.s, a[2]->n, out);
}

const rg_builtin rg_builtins_jwt[] = {
    {"io.jwt.verify_rs256", 2, rego__bi_rs256, false},
    {"io.jwt.verify_rs384", 2, rego__bi_rs384, false},
    {"io.jwt.verify_rs512", 2, rego__bi_rs512, false},
    {"io.jwt.verify_ps256", 2, rego__bi_ps256, false},
    {"io.jwt.verify_ps384", 2, rego__bi_ps384, false},
    {"io.jwt.verify_ps512", 2, rego__bi_ps512, false},
    {"io.jwt.verify_es256", 2, rego__bi_es256, false},
    {"io.jwt.verify_es384", 2, rego__bi_es384, false},
    {"io.jwt.verify_es512", 2, rego__bi_es512, false},
    {"io.jwt.verify_eddsa", 2, rego__bi_eddsa, false},
    {"io.jwt.verify_hs256", 2, rego__bi_hs256, false},
    {"io.jwt.verify_hs384", 2, rego__bi_hs384, false},
    {"io.jwt.verify_hs512", 2, rego__bi_hs512, false},
    {"io.jwt.decode_verify", 2, rego__bi_decode_verify, true},
    {"io.jwt.encode_sign", 3, rego__bi_encode_sign, true},
    {"io.jwt.encode_sign_raw", 3, rego__bi_encode_sign_raw, true},
    {NULL, 0, NULL, false},
};
