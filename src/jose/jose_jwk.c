/*
 * jose_jwk.c - JSON Web Keys (RFC 7517/7518/8037) <-> EVP_PKEY.
 */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>
#include <pthread.h>
#include <string.h>

#include "ct_codec.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "jose_internal.h"

/* The largest key component we ever decode: an 8192-bit RSA modulus. */
#define JOSE__MAX_COMPONENT (JOSE_RSA_MAX_BITS / 8)
#define JOSE__MAX_RSA_E 8

typedef struct jose__curve {
  const char *crv;   /* JOSE name */
  const char *group; /* OpenSSL group name */
  size_t size;       /* field size in bytes */
} jose__curve;

static const jose__curve jose__curves[] = {
    {"P-256", "prime256v1", 32},
    {"P-384", "secp384r1", 48},
    {"P-521", "secp521r1", 66},
};

static const jose__curve *jose__curve_by_crv(const char *crv) {
  for (size_t i = 0; crv && i < sizeof jose__curves / sizeof jose__curves[0]; i++)
    if (strcmp(jose__curves[i].crv, crv) == 0) return &jose__curves[i];
  return NULL;
}

/* One parameters-only key per curve, built once. OpenSSL 3 rebuilds an EC group (with its
 * precomputation) for every key made by name; copying the parameters of a template instead makes
 * key import about 3x and key generation about 1.7x cheaper on the KBS hot path. */
static EVP_PKEY *jose__templates[sizeof jose__curves / sizeof jose__curves[0]];
static pthread_once_t jose__templates_once = PTHREAD_ONCE_INIT;

static void jose__templates_init(void) {
  for (size_t i = 0; i < sizeof jose__curves / sizeof jose__curves[0]; i++) {
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", jose__curves[i].group);
    EVP_PKEY *t = k ? EVP_PKEY_new() : NULL;
    if (t && EVP_PKEY_copy_parameters(t, k) != 1) {
      EVP_PKEY_free(t);
      t = NULL;
    }
    EVP_PKEY_free(k);
    jose__templates[i] = t; /* NULL falls back to building by name */
  }
}

static EVP_PKEY *jose__template(const jose__curve *c) {
  pthread_once(&jose__templates_once, jose__templates_init);
  return jose__templates[c - jose__curves];
}

/* One P-256 group for the whole process, used read-only (EC_POINT_mul, oct2point and the affine
 * conversion take it const). Made by NID it carries OpenSSL's nistz256 method, the same as an
 * EVP P-256 key's, but a key check or a JWE through it skips EVP's per-key group copy, parameter
 * export and provider dispatch: a TEE key's check costs ~21,000 instructions instead of ~56,000
 * (callgrind). NULL (no memory at start-up) sends every caller to the EVP path. */
static EC_GROUP *jose__p256;
static pthread_once_t jose__p256_once = PTHREAD_ONCE_INIT;

static void jose__p256_init(void) {
  jose__p256 = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
  ERR_clear_error();
}

const EC_GROUP *jose__p256_group(void) {
  pthread_once(&jose__p256_once, jose__p256_init);
  return jose__p256;
}

CT_RESULT jose__ec_keygen(const char *crv, EVP_PKEY **out, ct_err *err) {
  const jose__curve *c = jose__curve_by_crv(crv);
  CT_ENSURE(c, err, CT_EUNSUPPORTED, "EC curve \"%s\" is not supported", crv ? crv : "?");
  EVP_PKEY *t = jose__template(c);
  EVP_PKEY *k = NULL;
  if (t) {
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, t, NULL);
    if (!ctx || EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_keygen(ctx, &k) != 1) k = NULL;
    EVP_PKEY_CTX_free(ctx);
  } else {
    k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", c->group);
  }
  if (!k) return ct_fail_ossl(err, CT_ECRYPTO, "EC %s key generation failed", crv);
  *out = k;
  return CT_OK;
}

/* A public EC key from its uncompressed point, through the curve's template. Setting the point
 * checks that it lies on the curve. */
static CT_RESULT jose__ec_public_from_point(const jose__curve *c, const uint8_t *pub, size_t len, EVP_PKEY **out,
                                            ct_err *err) {
  EVP_PKEY *t = jose__template(c);
  EVP_PKEY *k = t ? EVP_PKEY_new() : NULL;
  if (!k || EVP_PKEY_copy_parameters(k, t) != 1 || EVP_PKEY_set1_encoded_public_key(k, pub, len) != 1) {
    EVP_PKEY_free(k);
    return ct_fail_ossl(err, CT_EINVAL, "jwk: the EC public point is not on %s", c->crv);
  }
  *out = k;
  return CT_OK;
}

size_t jose__crv_size(const char *crv) {
  const jose__curve *c = jose__curve_by_crv(crv);
  return c ? c->size : 0;
}

const char *jose__ec_crv(EVP_PKEY *pkey) {
  if (!pkey || EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC) return NULL;
  char group[64];
  size_t glen = 0;
  if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                     &glen) != 1) {
    ERR_clear_error();
    return NULL;
  }
  for (size_t i = 0; i < sizeof jose__curves / sizeof jose__curves[0]; i++)
    if (strcmp(jose__curves[i].group, group) == 0) return jose__curves[i].crv;
  return NULL;
}

CT_RESULT jose__check_pkey(EVP_PKEY *pkey, ct_err *err) {
  CT_ENSURE(pkey, err, CT_EINVAL, "jwk: no key");
  switch (EVP_PKEY_get_base_id(pkey)) {
  case EVP_PKEY_EC:
    CT_ENSURE(jose__ec_crv(pkey), err, CT_EUNSUPPORTED,
              "jwk: only the EC curves P-256, P-384 and P-521 are supported");
    return CT_OK;
  case EVP_PKEY_RSA: {
    int bits = EVP_PKEY_get_bits(pkey);
    CT_ENSURE(bits >= JOSE_RSA_MIN_BITS && bits <= JOSE_RSA_MAX_BITS, err, CT_EUNSUPPORTED,
              "jwk: RSA modulus of %d bits is outside %d..%d", bits, JOSE_RSA_MIN_BITS,
              JOSE_RSA_MAX_BITS);
    return CT_OK;
  }
  case EVP_PKEY_ED25519:
    return CT_OK;
  default:
    return ct_fail(err, CT_EUNSUPPORTED,
                   "jwk: key type %s is not supported (EC, RSA or Ed25519 only)",
                   EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "?");
  }
}

bool jose__alg_known(const char *alg) {
  static const char *const known[] = {"ES256", "ES384", "ES512", "RS256", "RS384",
                                      "RS512", "PS256", "PS384", "PS512", "EdDSA",
                                      "ECDH-ES+A256KW", "RSA-OAEP-256", "RSA1_5"};
  for (size_t i = 0; alg && i < sizeof known / sizeof known[0]; i++)
    if (strcmp(known[i], alg) == 0) return true;
  return false;
}

/* `crv` is the JOSE curve of an EC key, NULL for any other key type. */
static bool jose__alg_suits(const char *alg, int id, const char *crv) {
  if (!alg) return false;
  if (strcmp(alg, "ES256") == 0) return crv && strcmp(crv, "P-256") == 0;
  if (strcmp(alg, "ES384") == 0) return crv && strcmp(crv, "P-384") == 0;
  if (strcmp(alg, "ES512") == 0) return crv && strcmp(crv, "P-521") == 0;
  if (strcmp(alg, "ECDH-ES+A256KW") == 0) return crv != NULL;
  if (strcmp(alg, "EdDSA") == 0) return id == EVP_PKEY_ED25519;
  if (strcmp(alg, "RSA-OAEP-256") == 0 || strcmp(alg, "RSA1_5") == 0) return id == EVP_PKEY_RSA;
  if ((alg[0] == 'R' || alg[0] == 'P') && alg[1] == 'S' &&
      (strcmp(alg + 2, "256") == 0 || strcmp(alg + 2, "384") == 0 || strcmp(alg + 2, "512") == 0))
    return id == EVP_PKEY_RSA;
  return false;
}

bool jose__alg_suits_pkey(const char *alg, EVP_PKEY *pkey) {
  if (!alg || !pkey) return false;
  return jose__alg_suits(alg, EVP_PKEY_get_base_id(pkey), jose__ec_crv(pkey));
}

CT_RESULT jose__b64u_decode(const char *in, size_t len, size_t max, const char *what,
                            uint8_t **out, size_t *out_len, ct_err *err) {
  /* Refuse before allocating: 4 characters carry 3 bytes. */
  CT_ENSURE(len / 4 * 3 <= max + 3, err, CT_ELIMIT, "%s: %zu base64url characters exceed the "
            "limit of %zu bytes", what, len, max);
  ct_status st = ct_b64_decode(CT_B64_URL, in, len, out, out_len, err);
  if (st) return ct_err_prefix(err, "%s: ", what);
  if (*out_len > max) {
    ct_wipe(*out, *out_len);
    free(*out);
    *out = NULL;
    return ct_fail(err, CT_ELIMIT, "%s: %zu bytes exceed the limit of %zu", what, *out_len, max);
  }
  return CT_OK;
}

CT_RESULT jose__b64u_member(const json_t *obj, const char *key, size_t max, const char *what,
                            uint8_t **out, size_t *out_len, ct_err *err) {
  const char *s = NULL;
  CT_GUARD(ct_json_get_string(obj, key, what, &s, err));
  char label[96];
  snprintf(label, sizeof label, "%s \"%s\"", what, key);
  return jose__b64u_decode(s, json_string_length(json_object_get(obj, key)), max, label, out,
                           out_len, err);
}

CT_RESULT jose__set_b64u(json_t *obj, const char *key, const uint8_t *data, size_t len,
                         ct_err *err) {
  char *s = NULL;
  CT_GUARD(ct_b64_encode(CT_B64_URL, data, len, &s, err));
  json_t *v = json_string(s);
  free(s);
  CT_ENSURE(v, err, CT_ENOMEM, "jwk: out of memory");
  return ct_json_set_new(obj, key, v, err);
}

/* Decodes a fixed-length member (EC coordinate or private scalar, Ed25519 key). */
static CT_RESULT jose__fixed_member(const json_t *obj, const char *key, size_t want, uint8_t *out,
                                    ct_err *err) {
  uint8_t *buf = NULL;
  size_t len = 0;
  CT_GUARD(jose__b64u_member(obj, key, want, "jwk", &buf, &len, err));
  bool ok = len == want;
  if (ok) memcpy(out, buf, want);
  ct_wipe(buf, len);
  free(buf);
  CT_ENSURE(ok, err, CT_EINVAL, "jwk: member \"%s\" must be %zu bytes, found %zu", key, want, len);
  return CT_OK;
}

/* Builds a key through EVP_PKEY_fromdata. */
static CT_RESULT jose__fromdata(const char *type, OSSL_PARAM_BLD *bld, bool priv, EVP_PKEY **out,
                                ct_err *err) {
  ct_status st = CT_OK;
  OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
  EVP_PKEY *pkey = NULL;
  CT_ENSURE_GOTO(st, params && ctx, done, err, CT_ENOMEM, "jwk: out of memory");
  if (EVP_PKEY_fromdata_init(ctx) != 1 ||
      EVP_PKEY_fromdata(ctx, &pkey, priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) != 1) {
    st = ct_fail_ossl(err, CT_EINVAL, "jwk: the %s key components are invalid", type);
    goto done;
  }
  *out = pkey;
done:
  OSSL_PARAM_free(params); /* the secure part is cleared by OpenSSL */
  EVP_PKEY_CTX_free(ctx);
  return st;
}

/* Runs OpenSSL's EC key validation. Public keys: the point is on the curve and not at infinity
 * (the quick check; with cofactor 1 on P-256/384/521 that also puts it in the group, and it
 * skips a scalar multiplication). Private keys: also the scalar range and that it yields the
 * public point. */
static CT_RESULT jose__validate(EVP_PKEY *pkey, bool priv, ct_err *err) {
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
  CT_ENSURE(ctx, err, CT_ENOMEM, "jwk: out of memory");
  int ok = priv ? EVP_PKEY_check(ctx) : EVP_PKEY_public_check_quick(ctx);
  EVP_PKEY_CTX_free(ctx);
  if (ok != 1)
    return ct_fail_ossl(err, CT_EINVAL, "jwk: %s key fails validation",
                        priv ? "private" : "public");
  return CT_OK;
}

/* crv, x and y of an EC JWK as an uncompressed point (1 + 2 * c->size bytes of `pub`); *priv
 * says whether it carries "d". */
static CT_RESULT jose__ec_point_json(const json_t *jwk, const jose__curve **curve, uint8_t pub[1 + 2 * 66],
                                     bool *priv, ct_err *err) {
  const char *crv = NULL;
  CT_GUARD(ct_json_get_string(jwk, "crv", "EC jwk", &crv, err));
  const jose__curve *c = jose__curve_by_crv(crv);
  CT_ENSURE(c, err, CT_EUNSUPPORTED, "jwk: EC curve \"%s\" is not supported (P-256, P-384, "
            "P-521)", crv);
  pub[0] = 0x04;
  CT_GUARD(jose__fixed_member(jwk, "x", c->size, pub + 1, err));
  CT_GUARD(jose__fixed_member(jwk, "y", c->size, pub + 1 + c->size, err));
  *priv = json_object_get(jwk, "d") != NULL;
  *curve = c;
  return CT_OK;
}

static CT_RESULT jose__ec_from_json(const json_t *jwk, EVP_PKEY **out, bool *priv, ct_err *err) {
  const jose__curve *c = NULL;
  uint8_t pub[1 + 2 * 66];
  uint8_t d[66];
  CT_GUARD(jose__ec_point_json(jwk, &c, pub, priv, err));
  if (!*priv && jose__template(c)) {
    /* Decoding the point already validates it: OpenSSL's oct2point refuses coordinates outside
     * the field and points off the curve (with cofactor 1 that is the group), and the 0x04 form
     * cannot encode infinity. jose__validate would redo exactly that on every imported key (a
     * TEE key twice per handshake). */
    return jose__ec_public_from_point(c, pub, 1 + 2 * c->size, out, err);
  }
  ct_status st = CT_OK;
  BIGNUM *bn = NULL;
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  CT_ENSURE_GOTO(st, bld, done, err, CT_ENOMEM, "jwk: out of memory");
  if (*priv) {
    CT_GUARD_GOTO(st, jose__fixed_member(jwk, "d", c->size, d, err), done);
    bn = BN_secure_new();
    CT_ENSURE_GOTO(st, bn && BN_bin2bn(d, (int)c->size, bn), done, err, CT_ENOMEM,
                   "jwk: out of memory");
  }
  CT_ENSURE_GOTO(st,
                 OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, c->group, 0) &&
                     OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub,
                                                      1 + 2 * c->size) &&
                     (!bn || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bn)),
                 done, err, CT_ENOMEM, "jwk: out of memory");
  CT_GUARD_GOTO(st, jose__fromdata("EC", bld, *priv, out, err), done);
  st = jose__validate(*out, *priv, err);
  if (st) {
    EVP_PKEY_free(*out);
    *out = NULL;
  }
done:
  ct_wipe(d, sizeof d);
  BN_clear_free(bn);
  OSSL_PARAM_BLD_free(bld);
  return st;
}

/* Decodes an RSA big-number member into a (secure, for private parts) BIGNUM. */
static CT_RESULT jose__rsa_bn(const json_t *jwk, const char *key, size_t max, bool secret,
                              BIGNUM **out, ct_err *err) {
  uint8_t *buf = NULL;
  size_t len = 0;
  CT_GUARD(jose__b64u_member(jwk, key, max, "RSA jwk", &buf, &len, err));
  ct_status st = CT_OK;
  if (len == 0) st = ct_fail(err, CT_EINVAL, "jwk: RSA member \"%s\" is empty", key);
  BIGNUM *bn = st ? NULL : (secret ? BN_secure_new() : BN_new());
  if (!st && (!bn || !BN_bin2bn(buf, (int)len, bn)))
    st = ct_fail(err, CT_ENOMEM, "jwk: out of memory");
  ct_wipe(buf, len);
  free(buf);
  if (st) {
    BN_clear_free(bn);
    return st;
  }
  *out = bn;
  return CT_OK;
}

static CT_RESULT jose__rsa_from_json(const json_t *jwk, EVP_PKEY **out, bool *priv, ct_err *err) {
  static const char *const crt_members[] = {"p", "q", "dp", "dq", "qi"};
  static const char *const crt_params[] = {
      OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2, OSSL_PKEY_PARAM_RSA_EXPONENT1,
      OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
  ct_status st = CT_OK;
  BIGNUM *n = NULL, *e = NULL, *d = NULL, *crt[5] = {NULL};
  OSSL_PARAM_BLD *bld = NULL;
  *priv = json_object_get(jwk, "d") != NULL;
  CT_GUARD_GOTO(st, jose__rsa_bn(jwk, "n", JOSE__MAX_COMPONENT, false, &n, err), done);
  CT_GUARD_GOTO(st, jose__rsa_bn(jwk, "e", JOSE__MAX_RSA_E, false, &e, err), done);
  int bits = BN_num_bits(n);
  CT_ENSURE_GOTO(st, bits >= JOSE_RSA_MIN_BITS && bits <= JOSE_RSA_MAX_BITS, done, err,
                 CT_EUNSUPPORTED, "jwk: RSA modulus of %d bits is outside %d..%d", bits,
                 JOSE_RSA_MIN_BITS, JOSE_RSA_MAX_BITS);
  CT_ENSURE_GOTO(st, BN_is_odd(e) && !BN_is_one(e), done, err, CT_EINVAL,
                 "jwk: RSA public exponent must be odd and greater than 1");
  CT_ENSURE_GOTO(st, BN_is_odd(n), done, err, CT_EINVAL, "jwk: RSA modulus must be odd");
  size_t ncrt = 0;
  for (size_t i = 0; i < 5; i++) ncrt += json_object_get(jwk, crt_members[i]) != NULL;
  if (*priv) {
    CT_GUARD_GOTO(st, jose__rsa_bn(jwk, "d", JOSE__MAX_COMPONENT, true, &d, err), done);
    CT_ENSURE_GOTO(st, ncrt == 0 || ncrt == 5, done, err, CT_EINVAL,
                   "jwk: RSA private key needs all of p, q, dp, dq, qi or none of them");
    for (size_t i = 0; i < ncrt; i++)
      CT_GUARD_GOTO(st, jose__rsa_bn(jwk, crt_members[i], JOSE__MAX_COMPONENT, true, &crt[i], err),
                    done);
  } else {
    CT_ENSURE_GOTO(st, ncrt == 0, done, err, CT_EINVAL,
                   "jwk: RSA CRT members without the private exponent d");
  }
  bld = OSSL_PARAM_BLD_new();
  CT_ENSURE_GOTO(st, bld, done, err, CT_ENOMEM, "jwk: out of memory");
  int ok = OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
           OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
  if (d) ok = ok && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d);
  for (size_t i = 0; i < 5 && crt[i]; i++)
    ok = ok && OSSL_PARAM_BLD_push_BN(bld, crt_params[i], crt[i]);
  CT_ENSURE_GOTO(st, ok, done, err, CT_ENOMEM, "jwk: out of memory");
  /* No EVP_PKEY_public_check here: its Miller-Rabin test on n is randomised and can reject a
   * valid modulus (openssl#13995); the cheap structural checks above are deterministic. */
  CT_GUARD_GOTO(st, jose__fromdata("RSA", bld, *priv, out, err), done);
done:
  BN_free(n);
  BN_free(e);
  BN_clear_free(d);
  for (size_t i = 0; i < 5; i++) BN_clear_free(crt[i]);
  OSSL_PARAM_BLD_free(bld);
  return st;
}

static CT_RESULT jose__okp_from_json(const json_t *jwk, EVP_PKEY **out, bool *priv, ct_err *err) {
  const char *crv = NULL;
  CT_GUARD(ct_json_get_string(jwk, "crv", "OKP jwk", &crv, err));
  CT_ENSURE(strcmp(crv, "Ed25519") == 0, err, CT_EUNSUPPORTED,
            "jwk: OKP curve \"%s\" is not supported (Ed25519 only)", crv);
  uint8_t x[32], d[32];
  CT_GUARD(jose__fixed_member(jwk, "x", 32, x, err));
  *priv = json_object_get(jwk, "d") != NULL;
  if (!*priv) {
    *out = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, x, 32);
    if (!*out) return ct_fail_ossl(err, CT_EINVAL, "jwk: invalid Ed25519 public key");
    return CT_OK;
  }
  CT_GUARD(jose__fixed_member(jwk, "d", 32, d, err));
  EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key_ex(NULL, "ED25519", NULL, d, 32);
  ct_wipe(d, sizeof d);
  if (!pkey) return ct_fail_ossl(err, CT_EINVAL, "jwk: invalid Ed25519 private key");
  uint8_t derived[32];
  size_t dlen = sizeof derived;
  if (EVP_PKEY_get_raw_public_key(pkey, derived, &dlen) != 1 || dlen != 32 ||
      memcmp(derived, x, 32) != 0) {
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return ct_fail(err, CT_EINVAL, "jwk: Ed25519 \"x\" does not belong to \"d\"");
  }
  *out = pkey;
  return CT_OK;
}

static CT_RESULT jose__jwk_new(EVP_PKEY *pkey /* consumed */, bool priv, const char *alg,
                               const char *kid, jose_jwk **out, ct_err *err) {
  jose_jwk *k = calloc(1, sizeof *k);
  ct_status st = CT_OK;
  CT_ENSURE_GOTO(st, k, fail, err, CT_ENOMEM, "jwk: out of memory");
  k->pkey = pkey;
  k->priv = priv;
  if (alg) CT_GUARD_GOTO(st, ct_strdup(alg, &k->alg, err), fail);
  if (kid) CT_GUARD_GOTO(st, ct_strdup(kid, &k->kid, err), fail);
  *out = k;
  return CT_OK;
fail:
  if (k) {
    free(k->alg);
    free(k);
  }
  EVP_PKEY_free(pkey);
  return st;
}

/* An "alg" we know must suit the key; an unknown one is kept (it only matters to callers).
 * `crv` is the key's JOSE curve (NULL when not EC), `type` names it otherwise. */
static CT_RESULT jose__check_alg_for(const char *alg, int id, const char *crv, const char *type, ct_err *err) {
  if (!alg) return CT_OK;
  CT_ENSURE(strlen(alg) <= 64, err, CT_EINVAL, "jwk: \"alg\" is too long");
  if (jose__alg_known(alg))
    CT_ENSURE(jose__alg_suits(alg, id, crv), err, CT_EINVAL, "jwk: algorithm %s does not suit a %s key", alg,
              crv ? crv : type);
  return CT_OK;
}

static CT_RESULT jose__check_alg(const char *alg, EVP_PKEY *pkey, ct_err *err) {
  if (!alg) return CT_OK;
  return jose__check_alg_for(alg, EVP_PKEY_get_base_id(pkey), jose__ec_crv(pkey), EVP_PKEY_get0_type_name(pkey),
                             err);
}

/* The members every JWK is checked for first, in jose_jwk_from_json's order. */
static CT_RESULT jose__jwk_common(const json_t *jwk, const char **kty, const char **alg, const char **kid,
                                  ct_err *err) {
  CT_ENSURE(json_is_object(jwk), err, CT_EINVAL, "jwk: must be a JSON object");
  CT_GUARD(ct_json_get_string(jwk, "kty", "jwk", kty, err));
  CT_GUARD(ct_json_opt_string(jwk, "alg", "jwk", alg, err));
  CT_GUARD(ct_json_opt_string(jwk, "kid", "jwk", kid, err));
  CT_ENSURE(!*kid || strlen(*kid) <= 1024, err, CT_ELIMIT, "jwk: \"kid\" is longer than 1024");
  return CT_OK;
}

CT_RESULT jose__p256_public_point(const json_t *jwk, EC_POINT **out, bool *handled, ct_err *err) {
  *handled = false;
  const char *kty = NULL, *alg = NULL, *kid = NULL;
  CT_GUARD(jose__jwk_common(jwk, &kty, &alg, &kid, err));
  const EC_GROUP *g = jose__p256_group();
  const char *crv = json_string_value(json_object_get(jwk, "crv"));
  /* Only a key the general path would read as a public P-256 key is taken here; anything else
   * (another or no curve, a private key) goes there, to its usual checks and messages. */
  if (!g || strcmp(kty, "EC") != 0 || !crv || strcmp(crv, "P-256") != 0 || json_object_get(jwk, "d")) return CT_OK;
  const jose__curve *c = NULL;
  uint8_t pub[1 + 2 * 66];
  bool priv = false;
  CT_GUARD(jose__ec_point_json(jwk, &c, pub, &priv, err));
  /* oct2point sets the affine coordinates, which refuses a coordinate outside [0, p) and a point
   * off the curve; P-256 has cofactor 1, so on the curve is in the group; the 0x04 form cannot
   * encode infinity. These are the checks jose__ec_public_from_point gets from the same call. */
  EC_POINT *q = EC_POINT_new(g);
  if (!q || EC_POINT_oct2point(g, q, pub, 1 + 2 * c->size, NULL) != 1) {
    EC_POINT_free(q);
    return ct_fail_ossl(err, CT_EINVAL, "jwk: the EC public point is not on %s", crv);
  }
  ct_status st = jose__check_alg_for(alg, EVP_PKEY_EC, crv, "EC", err);
  if (st || !out) EC_POINT_free(q);
  if (st) return st;
  if (out) *out = q;
  *handled = true;
  return CT_OK;
}

CT_RESULT jose_jwk_check_json(const json_t *jwk, ct_err *err) {
  bool handled = false;
  CT_GUARD(jose__p256_public_point(jwk, NULL, &handled, err));
  if (handled) return CT_OK;
  jose_jwk *k = NULL;
  CT_GUARD(jose_jwk_from_json(jwk, &k, err));
  jose_jwk_free(k);
  return CT_OK;
}

CT_RESULT jose_jwk_from_json(const json_t *jwk, jose_jwk **out, ct_err *err) {
  const char *kty = NULL, *alg = NULL, *kid = NULL;
  CT_GUARD(jose__jwk_common(jwk, &kty, &alg, &kid, err));
  EVP_PKEY *pkey = NULL;
  bool priv = false;
  if (strcmp(kty, "EC") == 0)
    CT_GUARD(jose__ec_from_json(jwk, &pkey, &priv, err));
  else if (strcmp(kty, "RSA") == 0)
    CT_GUARD(jose__rsa_from_json(jwk, &pkey, &priv, err));
  else if (strcmp(kty, "OKP") == 0)
    CT_GUARD(jose__okp_from_json(jwk, &pkey, &priv, err));
  else
    return ct_fail(err, CT_EUNSUPPORTED, "jwk: key type \"%s\" is not supported (EC, RSA, OKP)",
                   kty);
  ct_status st = jose__check_alg(alg, pkey, err);
  if (st) {
    EVP_PKEY_free(pkey);
    return st;
  }
  return jose__jwk_new(pkey, priv, alg, kid, out, err);
}

/* Whether the key holds private material. */
static bool jose__pkey_has_private(EVP_PKEY *pkey) {
  bool priv = false;
  if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_ED25519) {
    size_t len = 0;
    priv = EVP_PKEY_get_raw_private_key(pkey, NULL, &len) == 1 && len > 0;
  } else {
    BIGNUM *bn = NULL;
    const char *param = EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA ? OSSL_PKEY_PARAM_RSA_D
                                                                   : OSSL_PKEY_PARAM_PRIV_KEY;
    priv = EVP_PKEY_get_bn_param(pkey, param, &bn) == 1 && bn != NULL;
    BN_clear_free(bn);
  }
  ERR_clear_error();
  return priv;
}

CT_RESULT jose_jwk_from_pkey(EVP_PKEY *pkey, const char *alg, jose_jwk **out, ct_err *err) {
  CT_GUARD(jose__check_pkey(pkey, err));
  CT_GUARD(jose__check_alg(alg, pkey, err));
  CT_ENSURE(EVP_PKEY_up_ref(pkey) == 1, err, CT_EINTERNAL, "jwk: cannot reference the key");
  return jose__jwk_new(pkey, jose__pkey_has_private(pkey), alg, NULL, out, err);
}

CT_RESULT jose_jwk_from_pem(const char *pem, size_t len, const char *alg, jose_jwk **out,
                            ct_err *err) {
  CT_ENSURE(pem && len > 0, err, CT_EINVAL, "pem key: empty input");
  CT_ENSURE(len <= JOSE_FILE_MAX, err, CT_ELIMIT, "pem key: %zu bytes exceed the limit", len);
  EVP_PKEY *pkey = NULL;
  OSSL_DECODER_CTX *dctx =
      OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", NULL, NULL, 0, NULL, NULL);
  CT_ENSURE(dctx, err, CT_ENOMEM, "pem key: out of memory");
  const unsigned char *p = (const unsigned char *)pem;
  size_t left = len;
  int ok = OSSL_DECODER_from_data(dctx, &p, &left);
  OSSL_DECODER_CTX_free(dctx);
  if (ok != 1 || !pkey) {
    EVP_PKEY_free(pkey);
    return ct_fail_ossl(err, CT_EINVAL,
                        "pem key: no unencrypted PEM public or private key could be read");
  }
  ERR_clear_error();
  ct_status st = jose_jwk_from_pkey(pkey, alg, out, err);
  EVP_PKEY_free(pkey);
  return st;
}

/* Reads the point as one octet string (OpenSSL's default point format for EC keys is
 * uncompressed): two BIGNUM parameter exports (x, y) cost about three times as much on the JWE
 * hot path. */
CT_RESULT jose__ec_xy(EVP_PKEY *pkey, size_t size, uint8_t *x, uint8_t *y, ct_err *err) {
  uint8_t pub[1 + 2 * 66];
  size_t len = 0;
  if (size > 66 || EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub, &len) != 1 ||
      len != 1 + 2 * size || pub[0] != 0x04)
    return ct_fail_ossl(err, CT_EINTERNAL, "jwk: cannot read the EC public point");
  memcpy(x, pub + 1, size);
  memcpy(y, pub + 1 + size, size);
  return CT_OK;
}

CT_RESULT jose__pkey_public_json(EVP_PKEY *pkey, json_t **out, ct_err *err) {
  CT_GUARD(jose__check_pkey(pkey, err));
  json_t *o = json_object();
  CT_ENSURE(o, err, CT_ENOMEM, "jwk: out of memory");
  ct_status st = CT_OK;
  int id = EVP_PKEY_get_base_id(pkey);
  if (id == EVP_PKEY_EC) {
    const char *crv = jose__ec_crv(pkey);
    size_t size = jose__crv_size(crv);
    uint8_t x[66], y[66];
    CT_GUARD_GOTO(st, jose__ec_xy(pkey, size, x, y, err), fail);
    CT_GUARD_GOTO(st, ct_json_set_new(o, "kty", json_string("EC"), err), fail);
    CT_GUARD_GOTO(st, ct_json_set_new(o, "crv", json_string(crv), err), fail);
    CT_GUARD_GOTO(st, jose__set_b64u(o, "x", x, size, err), fail);
    CT_GUARD_GOTO(st, jose__set_b64u(o, "y", y, size, err), fail);
  } else if (id == EVP_PKEY_RSA) {
    BIGNUM *n = NULL, *e = NULL;
    uint8_t *buf = NULL;
    if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n) != 1 ||
        EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) != 1 ||
        !(buf = malloc((size_t)BN_num_bytes(n) + 8))) {
      BN_free(n);
      BN_free(e);
      st = ct_fail_ossl(err, CT_EINTERNAL, "jwk: cannot read the RSA public key");
      goto fail;
    }
    st = ct_json_set_new(o, "kty", json_string("RSA"), err);
    if (!st) st = jose__set_b64u(o, "n", buf, (size_t)BN_bn2bin(n, buf), err);
    if (!st) st = jose__set_b64u(o, "e", buf, (size_t)BN_bn2bin(e, buf), err);
    free(buf);
    BN_free(n);
    BN_free(e);
    if (st) goto fail;
  } else {
    uint8_t x[32];
    size_t xlen = sizeof x;
    CT_ENSURE_GOTO(st, EVP_PKEY_get_raw_public_key(pkey, x, &xlen) == 1 && xlen == 32, fail, err,
                   CT_EINTERNAL, "jwk: cannot read the Ed25519 public key");
    CT_GUARD_GOTO(st, ct_json_set_new(o, "kty", json_string("OKP"), err), fail);
    CT_GUARD_GOTO(st, ct_json_set_new(o, "crv", json_string("Ed25519"), err), fail);
    CT_GUARD_GOTO(st, jose__set_b64u(o, "x", x, 32, err), fail);
  }
  *out = o;
  return CT_OK;
fail:
  json_decref(o);
  return st;
}

CT_RESULT jose_jwk_to_json(const jose_jwk *k, json_t **out, ct_err *err) {
  CT_ENSURE(k, err, CT_EINVAL, "jwk: no key");
  json_t *o = NULL;
  CT_GUARD(jose__pkey_public_json(k->pkey, &o, err));
  ct_status st = CT_OK;
  if (k->alg) CT_GUARD_GOTO(st, ct_json_set_new(o, "alg", json_string(k->alg), err), fail);
  if (k->kid) CT_GUARD_GOTO(st, ct_json_set_new(o, "kid", json_string(k->kid), err), fail);
  *out = o;
  return CT_OK;
fail:
  json_decref(o);
  return st;
}

CT_RESULT jose_jwk_generate(const char *alg, const char *crv, jose_jwk **out, ct_err *err) {
  CT_ENSURE(alg, err, CT_EINVAL, "jwk generate: no algorithm");
  EVP_PKEY *pkey = NULL;
  const char *want_crv = NULL;
  if (strcmp(alg, "ES256") == 0) want_crv = "P-256";
  else if (strcmp(alg, "ES384") == 0) want_crv = "P-384";
  else if (strcmp(alg, "ES512") == 0) want_crv = "P-521";
  else if (strcmp(alg, "ECDH-ES+A256KW") == 0) want_crv = crv ? crv : "P-256";
  if (want_crv) {
    CT_ENSURE(!crv || strcmp(crv, want_crv) == 0, err, CT_EINVAL,
              "jwk generate: curve %s does not suit %s", crv, alg);
    const jose__curve *c = jose__curve_by_crv(want_crv);
    CT_ENSURE(c, err, CT_EUNSUPPORTED, "jwk generate: curve %s is not supported", want_crv);
    if (jose__ec_keygen(c->crv, &pkey, err) != CT_OK) pkey = NULL;
  } else if (strcmp(alg, "EdDSA") == 0) {
    CT_ENSURE(!crv || strcmp(crv, "Ed25519") == 0, err, CT_EUNSUPPORTED,
              "jwk generate: EdDSA supports only Ed25519");
    pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  } else if (jose__alg_known(alg)) { /* the remaining known algs are all RSA */
    CT_ENSURE(!crv, err, CT_EINVAL, "jwk generate: %s takes no curve", alg);
    pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
  } else {
    return ct_fail(err, CT_EUNSUPPORTED, "jwk generate: algorithm \"%s\" is not supported", alg);
  }
  if (!pkey) return ct_fail_ossl(err, CT_ECRYPTO, "jwk generate: key generation failed");
  return jose__jwk_new(pkey, true, alg, NULL, out, err);
}

EVP_PKEY *jose_jwk_pkey(const jose_jwk *k) { return k ? k->pkey : NULL; }
const char *jose_jwk_alg(const jose_jwk *k) { return k ? k->alg : NULL; }
const char *jose_jwk_kid(const jose_jwk *k) { return k ? k->kid : NULL; }
bool jose_jwk_is_private(const jose_jwk *k) { return k && k->priv; }

bool jose_jwk_public_equal(const jose_jwk *a, const jose_jwk *b) {
  if (!a || !b) return false;
  int r = EVP_PKEY_eq(a->pkey, b->pkey);
  ERR_clear_error();
  return r == 1;
}

void jose_jwk_free(jose_jwk *k) {
  if (!k) return;
  EVP_PKEY_free(k->pkey); /* OpenSSL clears private key material on free */
  free(k->alg);
  free(k->kid);
  free(k);
}
