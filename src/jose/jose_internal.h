/*
 * jose_internal.h - helpers shared by the jose_*.c files; not part of the public API.
 */
#ifndef JOSE_INTERNAL_H
#define JOSE_INTERNAL_H

#include <openssl/ec.h>

#include "jose.h"

struct jose_jwk {
  EVP_PKEY *pkey;
  char *alg; /* NULL when absent */
  char *kid; /* NULL when absent */
  bool priv;
};

/* Checks that a key is of a supported type and size: EC P-256/384/521, RSA 2048..8192 bits,
 * Ed25519. */
CT_RESULT jose__check_pkey(EVP_PKEY *pkey, ct_err *err);

/* "P-256", "P-384", "P-521" for a supported EC key, NULL otherwise. */
const char *jose__ec_crv(EVP_PKEY *pkey);

/* Field size in bytes for a JOSE curve name, 0 if unsupported. */
size_t jose__crv_size(const char *crv);

/* True when a known JOSE alg may be used with this key type / curve. Unknown algs: false. */
bool jose__alg_suits_pkey(const char *alg, EVP_PKEY *pkey);
/* True when `alg` is one of the algorithm names this module knows (JWS or JWE). */
bool jose__alg_known(const char *alg);

/* Decodes base64url `in[0..len)`, refusing more than `max` decoded bytes (CT_ELIMIT). `what`
 * names the field in messages. */
CT_RESULT jose__b64u_decode(const char *in, size_t len, size_t max, const char *what,
                            uint8_t **out, size_t *out_len, ct_err *err);
/* Same for a string member of `obj` (required). */
CT_RESULT jose__b64u_member(const json_t *obj, const char *key, size_t max, const char *what,
                            uint8_t **out, size_t *out_len, ct_err *err);
/* Adds obj[key] = base64url(data). */
CT_RESULT jose__set_b64u(json_t *obj, const char *key, const uint8_t *data, size_t len,
                         ct_err *err);

/* Public-only JWK members for a key, without alg/kid (used for JWE epk and jose_jwk_to_json). */
CT_RESULT jose__pkey_public_json(EVP_PKEY *pkey, json_t **out, ct_err *err);

/* Big-endian affine x and y of an EC public key, each padded to `size` bytes. */
CT_RESULT jose__ec_xy(EVP_PKEY *pkey, size_t size, uint8_t *x, uint8_t *y, ct_err *err);

/* Generates an EC key on the JOSE curve `crv` ("P-256", "P-384", "P-521") from a cached group. */
CT_RESULT jose__ec_keygen(const char *crv, EVP_PKEY **out, ct_err *err);

/* The process's shared, read-only P-256 group (nistz256 method), or NULL when it could not be
 * made (callers then take the EVP path). */
const EC_GROUP *jose__p256_group(void);

/* For a public EC P-256 JWK: the checks of jose_jwk_from_json, with its messages, and the point
 * on jose__p256_group() in *out (not made when out is NULL; caller frees it), without an
 * EVP_PKEY. Any other JWK (other kty or curve, "d", no group) is left alone: *handled false,
 * CT_OK, and the caller takes the general path. */
CT_RESULT jose__p256_public_point(const json_t *jwk, EC_POINT **out, bool *handled, ct_err *err);

/* jose_jwe_encrypt, with the P-256 fast path off when !p256_fast (the tests compare the two). */
CT_RESULT jose__jwe_encrypt(const json_t *tee_pubkey, const uint8_t *plaintext, size_t len, bool p256_fast,
                            json_t **out_jwe, ct_err *err);

#endif
