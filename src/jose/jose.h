/*
 * jose.h - JSON Web Key, Signature (JWS/JWT) and Encryption (JWE) on OpenSSL 3 EVP + jansson.
 *
 * Scope is what Trustee and guest-components put on the wire:
 *  - JWK: EC P-256/P-384/P-521, RSA (2048..8192 bits), OKP Ed25519; public or private.
 *  - JWS compact: ES256/384/512, RS256/384/512, PS256/384/512, EdDSA. Never "none", never HS*.
 *  - JWE flattened JSON exactly as Trustee's KBS emits it (kbs/src/jwe/mod.rs): enc A256GCM,
 *    alg ECDH-ES+A256KW (P-256, P-521), RSA-OAEP-256 or RSA1_5; GCM AAD = ASCII of "protected".
 *  - x5c trust for attestation tokens (kbs/src/crypto/jwt.rs) and JWK Sets for kid lookup.
 *
 * Every input is bounded (see the JOSE_*_MAX constants). Secrets (private keys, CEKs, KEKs,
 * ECDH shared secrets) are wiped after use. Outputs are owned by the caller as documented.
 */
#ifndef JOSE_H
#define JOSE_H

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

/* Bounds on inputs. */
#define JOSE_JWS_MAX (8u << 20)        /* compact JWS/JWT length in bytes */
#define JOSE_JWE_MAX (32u << 20)       /* serialized JWE member lengths, summed */
#define JOSE_JWE_PLAINTEXT_MAX (16u << 20) /* plaintext accepted by jose_jwe_encrypt */
#define JOSE_HEADER_MAX (64u << 10)    /* decoded protected header (JWS and JWE) */
#define JOSE_JSON_DEPTH 16             /* nesting depth of parsed headers */
#define JOSE_RSA_MIN_BITS 2048
#define JOSE_RSA_MAX_BITS 8192
#define JOSE_X5C_MAX_CERTS 16
#define JOSE_X5C_MAX_CERT_BYTES (64u << 10)
#define JOSE_JWKS_MAX_KEYS 256
#define JOSE_FILE_MAX (1u << 20)       /* JWKS and trust-anchor PEM files */

/* ---- JWK ----------------------------------------------------------------------------------- */

/* A key (public or private) plus its optional JOSE "alg" and "kid"; owns one EVP_PKEY. */
typedef struct jose_jwk jose_jwk;

/* Parses a JWK object: kty EC (crv P-256/P-384/P-521, x, y, optional d), RSA (n, e, optional
 * d with all of p, q, dp, dq, qi or none of them) or OKP (crv Ed25519, x, optional d).
 * Coordinates must be full length. Points are checked to be on the curve; an "alg" member must
 * suit the key type. Unknown members are ignored. Caller frees *out with jose_jwk_free. */
CT_RESULT jose_jwk_from_json(const json_t *jwk, jose_jwk **out, ct_err *err);

/* Checks a JWK exactly as jose_jwk_from_json does (the same checks and errors) without keeping
 * the key: for a public EC P-256 key only its point is decoded, no EVP_PKEY is built (the KBS
 * checks each TEE key it is given this way). */
CT_RESULT jose_jwk_check_json(const json_t *jwk, ct_err *err);

/* Wraps an existing key (up-ref'd: the caller keeps its own reference). `alg` may be NULL. */
CT_RESULT jose_jwk_from_pkey(EVP_PKEY *pkey, const char *alg, jose_jwk **out, ct_err *err);

/* Reads a PEM public key (SPKI or PKCS#1 RSA) or unencrypted private key (PKCS#8, SEC1,
 * PKCS#1). `alg` may be NULL. */
CT_RESULT jose_jwk_from_pem(const char *pem, size_t len, const char *alg, jose_jwk **out,
                            ct_err *err);

/* The PUBLIC members only: {kty,crv,x,y} / {kty,n,e} / {kty,crv,x}, then "alg" and "kid" when
 * set. EC coordinates are zero-padded to the field size. Caller json_decref()s *out. */
CT_RESULT jose_jwk_to_json(const jose_jwk *k, json_t **out, ct_err *err);

/* Generates a fresh private key for `alg`: ES256/ES384/ES512 and ECDH-ES+A256KW (EC),
 * RS*, PS*, RSA-OAEP-256 and RSA1_5 (RSA 2048), EdDSA (Ed25519). `crv` may be NULL for the
 * algorithm's default (P-256 for ECDH-ES+A256KW); it must agree with the alg otherwise. */
CT_RESULT jose_jwk_generate(const char *alg, const char *crv, jose_jwk **out, ct_err *err);

EVP_PKEY *jose_jwk_pkey(const jose_jwk *k); /* borrowed */
const char *jose_jwk_alg(const jose_jwk *k); /* may be NULL */
const char *jose_jwk_kid(const jose_jwk *k); /* may be NULL */
bool jose_jwk_is_private(const jose_jwk *k);
/* True when both keys have the same public component. */
bool jose_jwk_public_equal(const jose_jwk *a, const jose_jwk *b);
void jose_jwk_free(jose_jwk *k);

/* ---- JWS / JWT ----------------------------------------------------------------------------- */

/* Signs `payload` as a compact JWS. The protected header is {"alg":alg} followed by the members
 * of `extra_header` in their order (e.g. typ, jwk, kid); `extra_header` must not carry "alg".
 * The key must suit the algorithm (curve, RSA size). Caller frees *out_compact. */
CT_RESULT jose_jws_sign(const char *alg, EVP_PKEY *key, const json_t *extra_header,
                        const uint8_t *payload, size_t payload_len, char **out_compact,
                        ct_err *err);
/* The protected header jose_jws_sign writes, base64url-encoded, and signing under it: a signer
 * that issues many tokens under one header (the attestation service's, with its certificate
 * chain) encodes it once. ECDSA (ES256/384/512) signs through a context prepared once per key
 * and per thread: the thread keeps a reference to the last EC key it signed with until it signs
 * with another or exits, and the key must not be modified once it has signed. */
CT_RESULT jose_jws_header_b64(const char *alg, const json_t *extra_header, char **out, ct_err *err);
CT_RESULT jose_jws_sign_b64header(const char *alg, EVP_PKEY *key, const char *header_b64, const uint8_t *payload,
                                  size_t payload_len, char **out_compact, ct_err *err);

/* A short-lived KBS admin token, as Trustee's kbs-client makes with --auth-private-key:
 * {"iat","exp":iat+ttl_s,"role":"admin","iss":issuer} signed with `key` (a private key: Ed25519
 * as EdDSA, EC P-256 as ES256, RSA as RS256), header {"alg","typ":"JWT"}. */
CT_RESULT jose_admin_token(const jose_jwk *key, const char *issuer, int64_t ttl_s, char **token, ct_err *err);

/* Splits a compact JWS and decodes header and payload WITHOUT verifying anything (use it only
 * to choose a key by kid/jwk). Any out pointer may be NULL. Caller json_decref()s *header and
 * free()s *payload (NUL-terminated, not counted in *payload_len). */
CT_RESULT jose_jws_decode_unverified(const char *compact, json_t **header, uint8_t **payload,
                                     size_t *payload_len, ct_err *err);

/* Verifies a compact JWS with `key`. With `allowed_alg` NULL the header's alg is used; otherwise
 * the header's alg must equal it. The alg must be one of the supported signature algorithms and
 * match the key type and curve ("none", HS*, RS* with an EC key, ... are rejected). A "crit"
 * header is rejected. Outputs as for jose_jws_decode_unverified, filled only on success. */
CT_RESULT jose_jws_verify(const char *compact, EVP_PKEY *key, const char *allowed_alg,
                          json_t **header, uint8_t **payload, size_t *payload_len, ct_err *err);

/* JWT time checks on a claims object: `exp` (required when require_exp) must satisfy
 * now <= exp + leeway, else CT_EEXPIRED; `nbf`, when present, must satisfy nbf - leeway <= now,
 * else CT_EDENIED. Non-numeric exp/nbf or a missing required exp is CT_EINVAL. */
CT_RESULT jose_jwt_check_times(const json_t *claims, int64_t now, int64_t leeway, bool require_exp,
                               ct_err *err);

/* ---- JWE ----------------------------------------------------------------------------------- */

/* Encrypts for a TeePubKey JWK ({kty:"EC",crv:"P-256"|"P-521",alg:"ECDH-ES+A256KW",x,y} or
 * {kty:"RSA",alg:"RSA-OAEP-256"|"RSA1_5",n,e}) into a new flattened JWE object whose members
 * are, in this order, protected, encrypted_key, iv, ciphertext, tag (json_dumps without
 * JSON_SORT_KEYS keeps the order). The protected header is byte-identical to Trustee's:
 * {"alg":…,"enc":"A256GCM"[,"epk":{"crv","kty","x","y"}]}. Caller json_decref()s *out_jwe. */
CT_RESULT jose_jwe_encrypt(const json_t *tee_pubkey, const uint8_t *plaintext, size_t len,
                           json_t **out_jwe, ct_err *err);

/* Decrypts a flattened JWE object (or a JSON string holding the compact serialization) with a
 * private key. When the key has an alg, the JWE's alg must equal it. Every failure after the
 * header checks is reported as one CT_ECRYPTO "decryption failed". Caller frees *plaintext
 * (NUL-terminated, not counted in *len) and should ct_wipe it when it is a secret. */
CT_RESULT jose_jwe_decrypt(const jose_jwk *priv, const json_t *jwe, uint8_t **plaintext,
                           size_t *len, ct_err *err);

/* ---- Token key trust ----------------------------------------------------------------------- */

/* Trustee's endorsement check for a token header's jwk: the jwk (RSA or EC) must carry a
 * non-empty x5c (standard base64 DER, '\n' tolerated); the leaf certificate's public key must
 * equal the jwk; the chain (x5c[1..] as untrusted intermediates) must verify against `trust`.
 * X509_V_FLAG_X509_STRICT is never enabled. Failures are CT_ECRYPTO (CT_EINVAL for shape). */
CT_RESULT jose_x5c_verify(const json_t *jwk_with_x5c, X509_STORE *trust, ct_err *err);

/* Loads PEM certificates (one or many per file; each file must hold at least one) into a new
 * store. Caller frees *out with X509_STORE_free. */
CT_RESULT jose_trust_store_load(const char *const *pem_paths, size_t n, X509_STORE **out,
                                ct_err *err);

/* A JWK Set, for kid lookup. */
typedef struct jose_jwks jose_jwks;
/* Loads {"keys":[…]} from a file path or file:// URI. Every key must parse. */
CT_RESULT jose_jwks_load(const char *path_or_file_uri, jose_jwks **out, ct_err *err);
/* Parses an already-decoded JWK Set object. */
CT_RESULT jose_jwks_from_json(const json_t *set, jose_jwks **out, ct_err *err);
/* The first key whose "kid" equals `kid`, or NULL. Borrowed from the set. */
const jose_jwk *jose_jwks_find(const jose_jwks *set, const char *kid);
size_t jose_jwks_count(const jose_jwks *set);
const jose_jwk *jose_jwks_get(const jose_jwks *set, size_t i);
void jose_jwks_free(jose_jwks *set);

#endif
