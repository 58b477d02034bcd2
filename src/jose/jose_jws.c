/*
 * jose_jws.c - JWS compact serialization (RFC 7515) and JWT time checks (RFC 7519).
 */
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "jose_internal.h"

typedef enum { JOSE__SIG_EC, JOSE__SIG_RSA, JOSE__SIG_PSS, JOSE__SIG_ED } jose__sig_kind;

typedef struct jose__sig_alg {
  const char *name;
  jose__sig_kind kind;
  const EVP_MD *(*md)(void); /* NULL for EdDSA */
  size_t coord;    /* ECDSA: bytes of r and of s */
} jose__sig_alg;

static const jose__sig_alg jose__sig_algs[] = {
    {"ES256", JOSE__SIG_EC, EVP_sha256, 32},  {"ES384", JOSE__SIG_EC, EVP_sha384, 48},
    {"ES512", JOSE__SIG_EC, EVP_sha512, 66},  {"RS256", JOSE__SIG_RSA, EVP_sha256, 0},
    {"RS384", JOSE__SIG_RSA, EVP_sha384, 0},  {"RS512", JOSE__SIG_RSA, EVP_sha512, 0},
    {"PS256", JOSE__SIG_PSS, EVP_sha256, 0},  {"PS384", JOSE__SIG_PSS, EVP_sha384, 0},
    {"PS512", JOSE__SIG_PSS, EVP_sha512, 0},  {"EdDSA", JOSE__SIG_ED, NULL, 0},
};

static const jose__sig_alg *jose__sig_alg_find(const char *name) {
  for (size_t i = 0; name && i < sizeof jose__sig_algs / sizeof jose__sig_algs[0]; i++)
    if (strcmp(jose__sig_algs[i].name, name) == 0) return &jose__sig_algs[i];
  return NULL;
}

/* Resolves the algorithm and checks that the key may be used with it. */
static CT_RESULT jose__sig_setup(const char *alg, EVP_PKEY *key, const jose__sig_alg **out,
                                 ct_err *err) {
  CT_ENSURE(alg, err, CT_EINVAL, "jws: no algorithm");
  const jose__sig_alg *a = jose__sig_alg_find(alg);
  CT_ENSURE(a, err, CT_EUNSUPPORTED, "jws: algorithm \"%.32s\" is not supported", alg);
  CT_GUARD(jose__check_pkey(key, err));
  CT_ENSURE(jose__alg_suits_pkey(alg, key), err, CT_ECRYPTO,
            "jws: algorithm %s does not match the %s key", alg,
            jose__ec_crv(key) ? jose__ec_crv(key) : EVP_PKEY_get0_type_name(key));
  *out = a;
  return CT_OK;
}

/* Initialises a digest-sign or digest-verify context with the algorithm's padding. */
static CT_RESULT jose__md_init(const jose__sig_alg *a, EVP_PKEY *key, bool sign, EVP_MD_CTX **out,
                               ct_err *err) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  CT_ENSURE(md, err, CT_ENOMEM, "jws: out of memory");
  EVP_PKEY_CTX *pctx = NULL;
  /* The static EVP_MD objects avoid a by-name provider fetch on every call. */
  const EVP_MD *digest = a->md ? a->md() : NULL;
  int ok = sign ? EVP_DigestSignInit(md, &pctx, digest, NULL, key)
                : EVP_DigestVerifyInit(md, &pctx, digest, NULL, key);
  if (ok == 1 && a->kind == JOSE__SIG_PSS)
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, digest) == 1;
  else if (ok == 1 && a->kind == JOSE__SIG_RSA)
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1;
  if (ok != 1) {
    EVP_MD_CTX_free(md);
    return ct_fail_ossl(err, CT_ECRYPTO, "jws: cannot set up %s", a->name);
  }
  *out = md;
  return CT_OK;
}

/* ECDSA: DER signature -> fixed-size big-endian r || s. */
static CT_RESULT jose__ecdsa_der_to_raw(const uint8_t *der, size_t der_len, size_t coord,
                                        uint8_t *raw, ct_err *err) {
  const unsigned char *p = der;
  ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
  CT_ENSURE(sig, err, CT_EINTERNAL, "jws: cannot parse the ECDSA signature");
  const BIGNUM *r = NULL, *s = NULL;
  ECDSA_SIG_get0(sig, &r, &s);
  bool ok = BN_bn2binpad(r, raw, (int)coord) == (int)coord &&
            BN_bn2binpad(s, raw + coord, (int)coord) == (int)coord;
  ECDSA_SIG_free(sig);
  CT_ENSURE(ok, err, CT_EINTERNAL, "jws: ECDSA signature does not fit the curve");
  return CT_OK;
}

/* ECDSA: fixed-size r || s -> DER. */
static CT_RESULT jose__ecdsa_raw_to_der(const uint8_t *raw, size_t coord, uint8_t **der,
                                        size_t *der_len, ct_err *err) {
  ECDSA_SIG *sig = ECDSA_SIG_new();
  BIGNUM *r = BN_bin2bn(raw, (int)coord, NULL), *s = BN_bin2bn(raw + coord, (int)coord, NULL);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
    ECDSA_SIG_free(sig);
    BN_free(r);
    BN_free(s);
    return ct_fail(err, CT_ENOMEM, "jws: out of memory");
  }
  unsigned char *buf = NULL;
  int n = i2d_ECDSA_SIG(sig, &buf);
  ECDSA_SIG_free(sig);
  CT_ENSURE(n > 0, err, CT_ENOMEM, "jws: out of memory");
  *der = buf;
  *der_len = (size_t)n;
  return CT_OK;
}

/* ---- ECDSA signing through a prepared context ----------------------------------------------
 * In OpenSSL 3.0 EVP_DigestSignInit makes a key context, fetches the signature method and the
 * digest (the provider fetches the digest again), and EVP_DigestSignFinal duplicates that
 * context: with the key checks, ~38,000 of the ~388,000 instructions of a KBS EAR token
 * (callgrind). An ECDSA signature is a signature of the message's
 * digest, so the digest is computed with an EVP_MD fetched once, and signed through an
 * EVP_PKEY_CTX that was sign-initialised once per key and per thread (a context must not be used
 * by two threads at once; the KBS signs on several). */

static EVP_MD *jose__ec_mds[3]; /* SHA-256, SHA-384, SHA-512; NULL: that alg takes the EVP path */
static pthread_once_t jose__ec_mds_once = PTHREAD_ONCE_INIT;

/* Each thread's last prepared context. It holds a reference to its key, so that no other key can
 * be created at the same address while the entry exists: a match by address is the same key. */
typedef struct jose__ec_signer {
  EVP_PKEY_CTX *ctx;
  const EVP_PKEY *key;
  const jose__sig_alg *alg;
  /* The digest state after "<hdr64>." for the last header signed under this key and alg: a
   * signer issues all its tokens under one header (the attestation service's carries its
   * certificate chain, ~40 % of the bytes hashed per token), so it is hashed once. */
  EVP_MD_CTX *prefix, *work;
  char *hdr64; /* NULL: `prefix` holds nothing usable */
  size_t hdr64_len;
} jose__ec_signer;

/* Headers longer than this are hashed per token rather than kept per thread. */
#define JOSE__PREFIX_MAX (64u << 10)

static pthread_key_t jose__ec_signer_key;
static bool jose__ec_signer_key_ok;

static void jose__ec_signer_free(void *p) {
  jose__ec_signer *s = p;
  if (!s) return;
  EVP_PKEY_CTX_free(s->ctx);
  EVP_MD_CTX_free(s->prefix);
  EVP_MD_CTX_free(s->work);
  free(s->hdr64);
  free(s);
}

static void jose__ec_mds_init(void) {
  static const char *const names[3] = {"SHA2-256", "SHA2-384", "SHA2-512"};
  for (size_t i = 0; i < 3; i++) jose__ec_mds[i] = EVP_MD_fetch(NULL, names[i], NULL);
  jose__ec_signer_key_ok = pthread_key_create(&jose__ec_signer_key, jose__ec_signer_free) == 0;
  ERR_clear_error();
}

/* The fetched digest for an ECDSA alg, or NULL when it could not be fetched. */
static EVP_MD *jose__ec_md(const jose__sig_alg *a) {
  pthread_once(&jose__ec_mds_once, jose__ec_mds_init);
  return jose__ec_mds[a->coord == 32 ? 0 : a->coord == 48 ? 1 : 2];
}

/* A sign-initialised context for `key` under ECDSA alg `a`: this thread's cached one when it was
 * made for the same key and alg (the key's suitability was checked when it was made), else a new
 * one after jose__sig_setup's checks, which replaces the cached one. *entry is the thread's
 * cache entry holding it, or NULL when it could not be cached: the caller then frees *out. */
static CT_RESULT jose__ec_sign_ctx(const jose__sig_alg *a, EVP_PKEY *key, EVP_MD *md, EVP_PKEY_CTX **out,
                                   jose__ec_signer **entry, ct_err *err) {
  jose__ec_signer *s = jose__ec_signer_key_ok ? pthread_getspecific(jose__ec_signer_key) : NULL;
  *entry = NULL;
  if (s && s->ctx && s->key == key && s->alg == a) {
    *out = s->ctx;
    *entry = s;
    return CT_OK;
  }
  const jose__sig_alg *checked = NULL;
  CT_GUARD(jose__sig_setup(a->name, key, &checked, err));
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
  if (!ctx || EVP_PKEY_sign_init(ctx) != 1 || EVP_PKEY_CTX_set_signature_md(ctx, md) != 1) {
    EVP_PKEY_CTX_free(ctx);
    return ct_fail_ossl(err, CT_ECRYPTO, "jws: cannot set up %s", a->name);
  }
  if (!s && jose__ec_signer_key_ok && (s = calloc(1, sizeof *s)) && pthread_setspecific(jose__ec_signer_key, s) != 0) {
    free(s);
    s = NULL;
  }
  *out = ctx;
  if (!s) return CT_OK; /* not cached: correct, only slower */
  EVP_PKEY_CTX_free(s->ctx); /* drops the previous key's reference */
  s->ctx = ctx;
  s->key = key;
  s->alg = a;
  free(s->hdr64); /* the prefix was hashed for another key or digest */
  s->hdr64 = NULL;
  *entry = s;
  return CT_OK;
}

/* The digest of tbs = "<hdr64>.<pay64>" (hdr_len: the length of hdr64), through the entry's
 * prefix state when it has one for this header (made now when it has none). */
static CT_RESULT jose__ec_digest(jose__ec_signer *s, EVP_MD *md, const uint8_t *tbs, size_t len, size_t hdr_len,
                                 uint8_t *hash, unsigned int *hash_len, ct_err *err) {
  if (!s || hdr_len >= len || hdr_len > JOSE__PREFIX_MAX) {
    if (EVP_Digest(tbs, len, hash, hash_len, md, NULL) != 1)
      return ct_fail_ossl(err, CT_ECRYPTO, "jws: hashing the signing input failed");
    return CT_OK;
  }
  if (!s->hdr64 || s->hdr64_len != hdr_len || memcmp(s->hdr64, tbs, hdr_len) != 0) {
    free(s->hdr64);
    s->hdr64 = NULL;
    if ((!s->prefix && !(s->prefix = EVP_MD_CTX_new())) || (!s->work && !(s->work = EVP_MD_CTX_new())))
      return ct_fail(err, CT_ENOMEM, "jws: out of memory");
    if (EVP_DigestInit_ex2(s->prefix, md, NULL) != 1 || EVP_DigestUpdate(s->prefix, tbs, hdr_len + 1) != 1)
      return ct_fail_ossl(err, CT_ECRYPTO, "jws: hashing the signing input failed");
    CT_ENSURE((s->hdr64 = malloc(hdr_len)), err, CT_ENOMEM, "jws: out of memory");
    memcpy(s->hdr64, tbs, hdr_len);
    s->hdr64_len = hdr_len;
  }
  if (EVP_MD_CTX_copy_ex(s->work, s->prefix) != 1 || EVP_DigestUpdate(s->work, tbs + hdr_len + 1, len - hdr_len - 1) != 1 ||
      EVP_DigestFinal_ex(s->work, hash, hash_len) != 1)
    return ct_fail_ossl(err, CT_ECRYPTO, "jws: hashing the signing input failed");
  return CT_OK;
}

/* ECDSA signature of tbs = "<hdr64>.<pay64>" (hdr_len: the length of hdr64) as raw r || s
 * (2 * a->coord bytes). */
static CT_RESULT jose__ec_sign_raw(const jose__sig_alg *a, EVP_PKEY *key, EVP_MD *md, const uint8_t *tbs, size_t len,
                                   size_t hdr_len, uint8_t *raw, ct_err *err) {
  EVP_PKEY_CTX *ctx = NULL;
  jose__ec_signer *entry = NULL;
  CT_GUARD(jose__ec_sign_ctx(a, key, md, &ctx, &entry, err));
  uint8_t hash[EVP_MAX_MD_SIZE], der[256]; /* a P-521 DER signature is at most 139 bytes */
  unsigned int hash_len = 0;
  size_t der_len = sizeof der;
  ct_status st = jose__ec_digest(entry, md, tbs, len, hdr_len, hash, &hash_len, err);
  if (!st && EVP_PKEY_sign(ctx, der, &der_len, hash, hash_len) != 1)
    st = ct_fail_ossl(err, CT_ECRYPTO, "jws: %s signing failed", a->name);
  if (!entry) EVP_PKEY_CTX_free(ctx);
  if (!st) st = jose__ecdsa_der_to_raw(der, der_len, a->coord, raw, err);
  return st;
}

/* Serialises a header preserving member order (alg first). */
static CT_RESULT jose__header_string(const char *alg, const json_t *extra, char **out,
                                     ct_err *err) {
  CT_ENSURE(!extra || json_is_object(extra), err, CT_EINVAL, "jws: extra header must be an object");
  CT_ENSURE(!extra || !json_object_get(extra, "alg"), err, CT_EINVAL,
            "jws: extra header must not carry \"alg\"");
  json_t *h = json_object();
  CT_ENSURE(h, err, CT_ENOMEM, "jws: out of memory");
  ct_status st = ct_json_set_new(h, "alg", json_string(alg), err);
  const char *k;
  json_t *v;
  if (!st && extra) {
    json_object_foreach((json_t *)extra, k, v) {
      if (json_object_set(h, k, v) != 0) {
        st = ct_fail(err, CT_ENOMEM, "jws: out of memory");
        break;
      }
    }
  }
  char *s = st ? NULL : json_dumps(h, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(h);
  if (st) return st;
  CT_ENSURE(s, err, CT_ENOMEM, "jws: cannot serialise the header");
  *out = s;
  return CT_OK;
}

CT_RESULT jose_jws_header_b64(const char *alg, const json_t *extra_header, char **out, ct_err *err) {
  char *hdr = NULL;
  CT_GUARD(jose__header_string(alg, extra_header, &hdr, err));
  ct_status st = ct_b64_encode(CT_B64_URL, (const uint8_t *)hdr, strlen(hdr), out, err);
  free(hdr);
  return st;
}

CT_RESULT jose_jws_sign(const char *alg, EVP_PKEY *key, const json_t *extra_header,
                        const uint8_t *payload, size_t payload_len, char **out_compact,
                        ct_err *err) {
  char *hdr64 = NULL;
  CT_GUARD(jose_jws_header_b64(alg, extra_header, &hdr64, err));
  ct_status st = jose_jws_sign_b64header(alg, key, hdr64, payload, payload_len, out_compact, err);
  free(hdr64);
  return st;
}

CT_RESULT jose_jws_sign_b64header(const char *alg, EVP_PKEY *key, const char *hdr64, const uint8_t *payload,
                                  size_t payload_len, char **out_compact, ct_err *err) {
  const jose__sig_alg *a = jose__sig_alg_find(alg);
  /* ECDSA with its digest at hand checks the key in jose__ec_sign_ctx, once per key and thread. */
  EVP_MD *ec_md = a && a->kind == JOSE__SIG_EC && key ? jose__ec_md(a) : NULL;
  if (!ec_md) CT_GUARD(jose__sig_setup(alg, key, &a, err));
  CT_ENSURE(payload || payload_len == 0, err, CT_EINVAL, "jws: no payload");
  CT_ENSURE(payload_len <= JOSE_JWS_MAX / 4 * 3, err, CT_ELIMIT, "jws: payload of %zu bytes is "
            "too large", payload_len);
  ct_status st = CT_OK;
  char *pay64 = NULL, *sig64 = NULL;
  uint8_t *sig = NULL, raw[132];
  EVP_MD_CTX *md = NULL;
  ct_buf out;
  ct_buf_init(&out, JOSE_JWS_MAX);
  CT_GUARD_GOTO(st, ct_b64_encode(CT_B64_URL, payload, payload_len, &pay64, err), done);
  CT_GUARD_GOTO(st, ct_buf_append_str(&out, hdr64, err), done);
  CT_GUARD_GOTO(st, ct_buf_append(&out, ".", 1, err), done);
  CT_GUARD_GOTO(st, ct_buf_append_str(&out, pay64, err), done);
  size_t sig_len = 0;
  const uint8_t *sig_out = raw;
  if (ec_md) {
    CT_GUARD_GOTO(st, jose__ec_sign_raw(a, key, ec_md, out.data, out.len, strlen(hdr64), raw, err), done);
    sig_len = 2 * a->coord;
  } else {
    CT_GUARD_GOTO(st, jose__md_init(a, key, true, &md, err), done);
    if (EVP_DigestSign(md, NULL, &sig_len, out.data, out.len) != 1 || !(sig = malloc(sig_len)) ||
        EVP_DigestSign(md, sig, &sig_len, out.data, out.len) != 1) {
      st = ct_fail_ossl(err, CT_ECRYPTO, "jws: %s signing failed", alg);
      goto done;
    }
    sig_out = sig;
    if (a->kind == JOSE__SIG_EC) {
      CT_GUARD_GOTO(st, jose__ecdsa_der_to_raw(sig, sig_len, a->coord, raw, err), done);
      sig_out = raw;
      sig_len = 2 * a->coord;
    }
  }
  CT_GUARD_GOTO(st, ct_b64_encode(CT_B64_URL, sig_out, sig_len, &sig64, err), done);
  CT_GUARD_GOTO(st, ct_buf_append(&out, ".", 1, err), done);
  CT_GUARD_GOTO(st, ct_buf_append_str(&out, sig64, err), done);
  *out_compact = (char *)ct_buf_take(&out, NULL);
done:
  ct_buf_free(&out);
  EVP_MD_CTX_free(md);
  free(pay64);
  free(sig64);
  free(sig);
  return st;
}

typedef struct jose__jws_parts {
  const char *hdr64, *pay64, *sig64;
  size_t hdr64_len, pay64_len, sig64_len;
  json_t *header;
  uint8_t *payload, *sig;
  size_t payload_len, sig_len;
} jose__jws_parts;

static void jose__jws_parts_free(jose__jws_parts *p) {
  json_decref(p->header);
  free(p->payload);
  free(p->sig);
  memset(p, 0, sizeof *p);
}

/* Splits into exactly three parts and decodes each; the header must be a JSON object with a
 * string "alg" and without "crit". */
static CT_RESULT jose__jws_split(const char *compact, jose__jws_parts *p, ct_err *err) {
  memset(p, 0, sizeof *p);
  CT_ENSURE(compact, err, CT_EINVAL, "jws: no token");
  size_t total = strnlen(compact, JOSE_JWS_MAX + 1);
  CT_ENSURE(total <= JOSE_JWS_MAX, err, CT_ELIMIT, "jws: token longer than %u bytes",
            JOSE_JWS_MAX);
  const char *d1 = memchr(compact, '.', total);
  const char *d2 = d1 ? memchr(d1 + 1, '.', total - (size_t)(d1 + 1 - compact)) : NULL;
  CT_ENSURE(d2, err, CT_EINVAL, "jws: compact serialization needs three dot-separated parts");
  CT_ENSURE(!memchr(d2 + 1, '.', total - (size_t)(d2 + 1 - compact)), err, CT_EINVAL,
            "jws: more than three parts (a JWE?)");
  p->hdr64 = compact;
  p->hdr64_len = (size_t)(d1 - compact);
  p->pay64 = d1 + 1;
  p->pay64_len = (size_t)(d2 - d1 - 1);
  p->sig64 = d2 + 1;
  p->sig64_len = total - (size_t)(d2 + 1 - compact);
  ct_status st = CT_OK;
  uint8_t *hdr = NULL;
  size_t hdr_len = 0;
  CT_GUARD_GOTO(st, jose__b64u_decode(p->hdr64, p->hdr64_len, JOSE_HEADER_MAX, "jws header", &hdr,
                                      &hdr_len, err), fail);
  st = ct_json_parse((const char *)hdr, hdr_len, JOSE_JSON_DEPTH, &p->header, err);
  free(hdr);
  if (st) {
    ct_err_prefix(err, "jws header: ");
    goto fail;
  }
  CT_ENSURE_GOTO(st, json_is_object(p->header), fail, err, CT_EINVAL,
                 "jws header: must be a JSON object");
  const char *alg = NULL;
  CT_GUARD_GOTO(st, ct_json_get_string(p->header, "alg", "jws header", &alg, err), fail);
  CT_ENSURE_GOTO(st, !json_object_get(p->header, "crit"), fail, err, CT_EUNSUPPORTED,
                 "jws header: \"crit\" extensions are not supported");
  CT_GUARD_GOTO(st, jose__b64u_decode(p->pay64, p->pay64_len, JOSE_JWS_MAX, "jws payload",
                                      &p->payload, &p->payload_len, err), fail);
  CT_GUARD_GOTO(st, jose__b64u_decode(p->sig64, p->sig64_len, JOSE_RSA_MAX_BITS / 8,
                                      "jws signature", &p->sig, &p->sig_len, err), fail);
  return CT_OK;
fail:
  jose__jws_parts_free(p);
  return st;
}

static void jose__jws_hand_out(jose__jws_parts *p, json_t **header, uint8_t **payload,
                               size_t *payload_len) {
  if (header) {
    *header = p->header;
    p->header = NULL;
  }
  if (payload) {
    *payload = p->payload;
    p->payload = NULL;
  }
  if (payload_len) *payload_len = p->payload_len;
  jose__jws_parts_free(p);
}

CT_RESULT jose_jws_decode_unverified(const char *compact, json_t **header, uint8_t **payload,
                                     size_t *payload_len, ct_err *err) {
  jose__jws_parts p;
  CT_GUARD(jose__jws_split(compact, &p, err));
  jose__jws_hand_out(&p, header, payload, payload_len);
  return CT_OK;
}

CT_RESULT jose_jws_verify(const char *compact, EVP_PKEY *key, const char *allowed_alg,
                          json_t **header, uint8_t **payload, size_t *payload_len, ct_err *err) {
  jose__jws_parts p;
  CT_GUARD(jose__jws_split(compact, &p, err));
  ct_status st = CT_OK;
  EVP_MD_CTX *md = NULL;
  uint8_t *der = NULL;
  const char *alg = json_string_value(json_object_get(p.header, "alg"));
  if (allowed_alg)
    CT_ENSURE_GOTO(st, strcmp(alg, allowed_alg) == 0, done, err, CT_ECRYPTO,
                   "jws: header algorithm \"%.32s\" is not the expected %s", alg, allowed_alg);
  const jose__sig_alg *a = NULL;
  CT_GUARD_GOTO(st, jose__sig_setup(alg, key, &a, err), done);
  const uint8_t *sig = p.sig;
  size_t sig_len = p.sig_len;
  if (a->kind == JOSE__SIG_EC) {
    CT_ENSURE_GOTO(st, p.sig_len == 2 * a->coord, done, err, CT_ECRYPTO,
                   "jws: %s signature must be %zu bytes, found %zu", alg, 2 * a->coord,
                   p.sig_len);
    CT_GUARD_GOTO(st, jose__ecdsa_raw_to_der(p.sig, a->coord, &der, &sig_len, err), done);
    sig = der;
  } else if (a->kind != JOSE__SIG_ED) {
    size_t mod = (size_t)EVP_PKEY_get_size(key);
    CT_ENSURE_GOTO(st, p.sig_len == mod, done, err, CT_ECRYPTO,
                   "jws: %s signature must be %zu bytes, found %zu", alg, mod, p.sig_len);
  }
  CT_GUARD_GOTO(st, jose__md_init(a, key, false, &md, err), done);
  size_t signed_len = p.hdr64_len + 1 + p.pay64_len;
  if (EVP_DigestVerify(md, sig, sig_len, (const uint8_t *)p.hdr64, signed_len) != 1) {
    ERR_clear_error();
    st = ct_fail(err, CT_ECRYPTO, "jws: %s signature does not verify", alg);
    goto done;
  }
done:
  EVP_MD_CTX_free(md);
  OPENSSL_free(der);
  if (st) {
    jose__jws_parts_free(&p);
    return st;
  }
  jose__jws_hand_out(&p, header, payload, payload_len);
  return CT_OK;
}

/* Reads a NumericDate member; absent yields *present = false. */
static CT_RESULT jose__numeric_date(const json_t *claims, const char *key, bool *present,
                                    int64_t *out, ct_err *err) {
  json_t *v = json_object_get(claims, key);
  *present = v != NULL;
  if (!v) return CT_OK;
  if (json_is_integer(v)) {
    *out = (int64_t)json_integer_value(v);
    return CT_OK;
  }
  CT_ENSURE(json_is_real(v), err, CT_EINVAL, "jwt: claim \"%s\" must be a number", key);
  double d = json_real_value(v);
  CT_ENSURE(d > -9.0e18 && d < 9.0e18, err, CT_EINVAL, "jwt: claim \"%s\" is out of range", key);
  *out = (int64_t)d;
  return CT_OK;
}

CT_RESULT jose_jwt_check_times(const json_t *claims, int64_t now, int64_t leeway, bool require_exp,
                               ct_err *err) {
  CT_ENSURE(json_is_object(claims), err, CT_EINVAL, "jwt: claims must be a JSON object");
  CT_ENSURE(leeway >= 0 && leeway <= 86400 * 365, err, CT_EINVAL, "jwt: bad leeway %lld",
            (long long)leeway);
  bool has_exp = false, has_nbf = false;
  int64_t exp = 0, nbf = 0;
  CT_GUARD(jose__numeric_date(claims, "exp", &has_exp, &exp, err));
  CT_GUARD(jose__numeric_date(claims, "nbf", &has_nbf, &nbf, err));
  CT_ENSURE(has_exp || !require_exp, err, CT_EINVAL, "jwt: required claim \"exp\" is missing");
  /* Compare as now - leeway > exp, which cannot overflow for sane `now` and bounded leeway. */
  if (has_exp)
    CT_ENSURE(now - leeway <= exp, err, CT_EEXPIRED,
              "jwt: token expired at %lld (now %lld, leeway %llds)", (long long)exp,
              (long long)now, (long long)leeway);
  if (has_nbf)
    CT_ENSURE(now + leeway >= nbf, err, CT_EDENIED,
              "jwt: token not valid before %lld (now %lld, leeway %llds)", (long long)nbf,
              (long long)now, (long long)leeway);
  return CT_OK;
}

CT_RESULT jose_admin_token(const jose_jwk *key, const char *issuer, int64_t ttl_s, char **token, ct_err *err) {
  CT_ENSURE(key && jose_jwk_is_private(key), err, CT_EINVAL, "admin token: the signing key must be a private key");
  CT_ENSURE(ttl_s > 0 && ttl_s <= 24 * 3600, err, CT_EINVAL, "admin token: lifetime %lld s is not within 1 s..24 h",
            (long long)ttl_s);
  EVP_PKEY *pk = jose_jwk_pkey(key);
  int id = EVP_PKEY_get_base_id(pk);
  const char *alg = id == EVP_PKEY_ED25519 ? "EdDSA" : id == EVP_PKEY_EC ? "ES256" : id == EVP_PKEY_RSA ? "RS256" : NULL;
  CT_ENSURE(alg, err, CT_EUNSUPPORTED, "admin token: key type is not Ed25519, EC P-256 or RSA");
  int64_t now = (int64_t)time(NULL);
  json_t *claims = json_pack("{s:I, s:I, s:s, s:s}", "iat", (json_int_t)now, "exp", (json_int_t)(now + ttl_s), "role",
                             "admin", "iss", issuer ? issuer : "coco-trust");
  json_t *hdr = json_pack("{s:s}", "typ", "JWT");
  char *payload = claims ? json_dumps(claims, JSON_COMPACT) : NULL;
  ct_status st = payload && hdr ? jose_jws_sign(alg, pk, hdr, (const uint8_t *)payload, strlen(payload), token, err)
                                : ct_fail(err, CT_ENOMEM, "admin token: out of memory");
  free(payload);
  json_decref(hdr);
  json_decref(claims);
  return st;
}
