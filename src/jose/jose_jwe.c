/*
 * jose_jwe.c - JWE (RFC 7516) as Trustee's KBS emits it: flattened JSON, enc A256GCM, alg
 * ECDH-ES+A256KW (P-256/P-521), RSA-OAEP-256 or RSA1_5 (trustee: kbs/src/jwe/mod.rs).
 */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <string.h>

#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "jose_internal.h"

#define JOSE__CEK_LEN 32
#define JOSE__IV_LEN 12
#define JOSE__TAG_LEN 16
#define JOSE__KW_LEN (JOSE__CEK_LEN + 8)
#define JOSE__PARTY_MAX 1024 /* decoded apu / apv */

static const char JOSE__ECDH_KW[] = "ECDH-ES+A256KW";

static void jose__be32(uint8_t out[4], uint32_t v) {
  out[0] = (uint8_t)(v >> 24);
  out[1] = (uint8_t)(v >> 16);
  out[2] = (uint8_t)(v >> 8);
  out[3] = (uint8_t)v;
}

/* JWA section 4.6.2 Concat KDF with SHA-256 for a 256-bit key: one round,
 * SHA-256(BE32(1) || Z || BE32(len alg) || alg || BE32(len apu) || apu || BE32(len apv) || apv ||
 * BE32(256)). Trustee always uses empty apu/apv. */
static CT_RESULT jose__concat_kdf(const uint8_t *z, size_t z_len, const uint8_t *apu,
                                  size_t apu_len, const uint8_t *apv, size_t apv_len,
                                  uint8_t kek[32], ct_err *err) {
  uint8_t be[4];
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  CT_ENSURE(md, err, CT_ENOMEM, "jwe: out of memory");
  int ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
  jose__be32(be, 1);
  ok = ok && EVP_DigestUpdate(md, be, 4) == 1 && EVP_DigestUpdate(md, z, z_len) == 1;
  jose__be32(be, (uint32_t)strlen(JOSE__ECDH_KW));
  ok = ok && EVP_DigestUpdate(md, be, 4) == 1 &&
       EVP_DigestUpdate(md, JOSE__ECDH_KW, strlen(JOSE__ECDH_KW)) == 1;
  jose__be32(be, (uint32_t)apu_len);
  ok = ok && EVP_DigestUpdate(md, be, 4) == 1 && (!apu_len || EVP_DigestUpdate(md, apu, apu_len));
  jose__be32(be, (uint32_t)apv_len);
  ok = ok && EVP_DigestUpdate(md, be, 4) == 1 && (!apv_len || EVP_DigestUpdate(md, apv, apv_len));
  jose__be32(be, 256);
  unsigned int out_len = 0;
  ok = ok && EVP_DigestUpdate(md, be, 4) == 1 && EVP_DigestFinal_ex(md, kek, &out_len) == 1 &&
       out_len == 32;
  EVP_MD_CTX_free(md);
  if (!ok) return ct_fail_ossl(err, CT_EINTERNAL, "jwe: concat KDF failed");
  return CT_OK;
}

/* ECDH shared secret Z (the x-coordinate, field-size bytes) between `priv` and `peer`. */
static CT_RESULT jose__ecdh(EVP_PKEY *priv, EVP_PKEY *peer, uint8_t *z, size_t *z_len,
                            ct_err *err) {
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, priv, NULL);
  CT_ENSURE(ctx, err, CT_ENOMEM, "jwe: out of memory");
  size_t cap = *z_len;
  /* The peer was validated when its JWK was imported (jose_jwk_from_json), so the derive step
   * does not validate it again: that second check doubled the cost of every ECDH. */
  int ok = EVP_PKEY_derive_init(ctx) == 1 && EVP_PKEY_derive_set_peer_ex(ctx, peer, 0) == 1 &&
           EVP_PKEY_derive(ctx, NULL, z_len) == 1 && *z_len <= cap &&
           EVP_PKEY_derive(ctx, z, z_len) == 1;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) return ct_fail_ossl(err, CT_ECRYPTO, "jwe: ECDH key agreement failed");
  return CT_OK;
}

/* AES-256 in ECB and GCM, fetched once: an implicit fetch (EVP_aes_256_gcm()) looks the
 * implementation up in the provider store on every init. NULL falls back to the implicit one. */
static EVP_CIPHER *jose__ecb_cipher, *jose__gcm_cipher;
static pthread_once_t jose__ciphers_once = PTHREAD_ONCE_INIT;

static void jose__ciphers_init(void) {
  jose__ecb_cipher = EVP_CIPHER_fetch(NULL, "AES-256-ECB", NULL);
  jose__gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
  ERR_clear_error();
}

static const EVP_CIPHER *jose__gcm_impl(void) {
  pthread_once(&jose__ciphers_once, jose__ciphers_init);
  return jose__gcm_cipher ? jose__gcm_cipher : EVP_aes_256_gcm();
}

/* RFC 3394 section 2.2.1 wrap with the default IV, over AES-256-ECB. OpenSSL 3.0's AES-WRAP
 * cipher runs the 24 block encryptions in its portable C AES (about 48,000 instructions per
 * wrapped CEK, a tenth of an ECDH); the ECB cipher uses the CPU's AES instructions. Unwrapping
 * (the guest's side) stays with OpenSSL's AES-WRAP, which checks the IV. */
static CT_RESULT jose__aes_kw_wrap(const uint8_t kek[32], const uint8_t *in, size_t in_len,
                                   uint8_t *out, size_t *out_len, ct_err *err) {
  CT_ENSURE(in_len % 8 == 0 && in_len >= 16 && in_len <= JOSE__CEK_LEN, err, CT_EINVAL,
            "jwe: AES key wrap input of %zu bytes", in_len);
  pthread_once(&jose__ciphers_once, jose__ciphers_init);
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  CT_ENSURE(ctx, err, CT_ENOMEM, "jwe: out of memory");
  const EVP_CIPHER *ecb = jose__ecb_cipher ? jose__ecb_cipher : EVP_aes_256_ecb();
  size_t n = in_len / 8;
  uint8_t a[8], b[16];
  memset(a, 0xa6, sizeof a);
  memcpy(out + 8, in, in_len);
  int ok = EVP_EncryptInit_ex(ctx, ecb, NULL, kek, NULL) == 1 && EVP_CIPHER_CTX_set_padding(ctx, 0) == 1;
  for (uint64_t j = 0; ok && j < 6; j++) {
    for (size_t i = 1; ok && i <= n; i++) {
      uint8_t *r = out + 8 * i;
      memcpy(b, a, 8);
      memcpy(b + 8, r, 8);
      int got = 0;
      ok = EVP_EncryptUpdate(ctx, b, &got, b, 16) == 1 && got == 16;
      uint64_t t = n * j + i;
      for (int k = 0; k < 8; k++) a[k] = (uint8_t)(b[k] ^ (uint8_t)(t >> (56 - 8 * k)));
      memcpy(r, b + 8, 8);
    }
  }
  EVP_CIPHER_CTX_free(ctx);
  ct_wipe(b, sizeof b);
  if (!ok) {
    ct_wipe(out, in_len + 8);
    ERR_clear_error();
    return ct_fail(err, CT_ECRYPTO, "jwe: AES key wrap failed");
  }
  memcpy(out, a, 8);
  *out_len = in_len + 8;
  return CT_OK;
}

/* RFC 3394 AES-256 key wrap (encrypt) or unwrap (!encrypt) of a 32-byte CEK. */
static CT_RESULT jose__aes_kw(bool encrypt, const uint8_t kek[32], const uint8_t *in,
                              size_t in_len, uint8_t *out, size_t *out_len, ct_err *err) {
  if (encrypt) return jose__aes_kw_wrap(kek, in, in_len, out, out_len, err);
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  CT_ENSURE(ctx, err, CT_ENOMEM, "jwe: out of memory");
  EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  int n = 0, fin = 0;
  int ok = EVP_CipherInit_ex(ctx, EVP_aes_256_wrap(), NULL, kek, NULL, encrypt ? 1 : 0) == 1 &&
           EVP_CipherUpdate(ctx, out, &n, in, (int)in_len) == 1 &&
           EVP_CipherFinal_ex(ctx, out + n, &fin) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) {
    ERR_clear_error();
    return ct_fail(err, CT_ECRYPTO, "jwe: AES key %s failed", encrypt ? "wrap" : "unwrap");
  }
  *out_len = (size_t)n + (size_t)fin;
  return CT_OK;
}

/* Sets RSA padding for the JWE alg on an encrypt/decrypt context. */
static bool jose__rsa_padding(EVP_PKEY_CTX *ctx, bool oaep256) {
  if (!oaep256) return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1;
  return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) == 1;
}

/* AES-256-GCM with a 12-byte IV and 16-byte tag. On decryption a wrong tag fails. */
static CT_RESULT jose__gcm(bool encrypt, const uint8_t key[32], const uint8_t iv[12],
                           const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t len,
                           uint8_t *out, uint8_t tag[16], ct_err *err) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  CT_ENSURE(ctx, err, CT_ENOMEM, "jwe: out of memory");
  int n = 0;
  int ok = EVP_CipherInit_ex(ctx, jose__gcm_impl(), NULL, NULL, NULL, encrypt ? 1 : 0) == 1 &&
           EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, JOSE__IV_LEN, NULL) == 1 &&
           EVP_CipherInit_ex(ctx, NULL, NULL, key, iv, encrypt ? 1 : 0) == 1 &&
           EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len) == 1;
  size_t done = 0;
  while (ok && done < len) { /* the EVP length is an int */
    size_t chunk = len - done > (1u << 30) ? (1u << 30) : len - done;
    ok = EVP_CipherUpdate(ctx, out + done, &n, in + done, (int)chunk) == 1 && (size_t)n == chunk;
    done += chunk;
  }
  if (ok && !encrypt)
    ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, JOSE__TAG_LEN, tag) == 1;
  ok = ok && EVP_CipherFinal_ex(ctx, out + done, &n) == 1;
  if (ok && encrypt) ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, JOSE__TAG_LEN, tag) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) {
    ERR_clear_error();
    return ct_fail(err, CT_ECRYPTO, "jwe: AES-GCM %s failed", encrypt ? "encryption" : "decryption");
  }
  return CT_OK;
}

/* ---- encryption ---------------------------------------------------------------------------- */

/* Derives the KEK from Z, wraps the CEK under it and appends the protected header with the
 * ephemeral public key (x, y: `size` bytes each) to `hdr`. */
static CT_RESULT jose__ecdh_finish(const uint8_t *z, size_t z_len, const char *crv, const uint8_t *x,
                                   const uint8_t *y, size_t size, const uint8_t cek[32], uint8_t *ek,
                                   size_t *ek_len, ct_buf *hdr, ct_err *err) {
  ct_status st = CT_OK;
  uint8_t kek[32];
  char *x64 = NULL, *y64 = NULL;
  CT_GUARD_GOTO(st, jose__concat_kdf(z, z_len, NULL, 0, NULL, 0, kek, err), done);
  CT_GUARD_GOTO(st, jose__aes_kw(true, kek, cek, JOSE__CEK_LEN, ek, ek_len, err), done);
  CT_GUARD_GOTO(st, ct_b64_encode(CT_B64_URL, x, size, &x64, err), done);
  CT_GUARD_GOTO(st, ct_b64_encode(CT_B64_URL, y, size, &y64, err), done);
  /* serde_json's order in Trustee: alg, enc, then the other fields sorted (epk: crv,kty,x,y). */
  st = ct_buf_printf(hdr, err,
                     "{\"alg\":\"%s\",\"enc\":\"A256GCM\",\"epk\":{\"crv\":\"%s\",\"kty\":\"EC\","
                     "\"x\":\"%s\",\"y\":\"%s\"}}",
                     JOSE__ECDH_KW, crv, x64, y64);
done:
  ct_wipe(kek, sizeof kek);
  free(x64);
  free(y64);
  return st;
}

/* Wraps the CEK for an EC key through EVP (P-521, and P-256 when the shared group is missing);
 * appends the protected header to `hdr`. */
static CT_RESULT jose__wrap_ecdh(EVP_PKEY *peer, const uint8_t cek[32], uint8_t *ek,
                                 size_t *ek_len, ct_buf *hdr, ct_err *err) {
  const char *crv = jose__ec_crv(peer);
  CT_ENSURE(crv && (strcmp(crv, "P-256") == 0 || strcmp(crv, "P-521") == 0), err, CT_EUNSUPPORTED,
            "jwe: curve %s with ECDH-ES+A256KW is not supported (P-256, P-521)",
            crv ? crv : "?");
  size_t size = jose__crv_size(crv);
  ct_status st = CT_OK;
  uint8_t z[66], x[66], y[66];
  size_t z_len = sizeof z;
  EVP_PKEY *eph = NULL;
  CT_GUARD_GOTO(st, jose__ec_keygen(crv, &eph, err), done);
  CT_GUARD_GOTO(st, jose__ecdh(eph, peer, z, &z_len, err), done);
  CT_GUARD_GOTO(st, jose__ec_xy(eph, size, x, y, err), done);
  st = jose__ecdh_finish(z, z_len, crv, x, y, size, cek, ek, ek_len, hdr, err);
done:
  ct_wipe(z, sizeof z);
  EVP_PKEY_free(eph); /* OpenSSL clears the ephemeral private scalar */
  return st;
}

/* The same for a P-256 peer point on the shared group, without EVP: an ephemeral scalar d
 * uniform in [1, n-1] from OpenSSL's private DRBG (as its own EC key generation draws it),
 * E = d*G and Z = x(d*Q) by EC_POINT_mul, which for P-256 is the constant-time nistz256 code
 * that EVP's key generation and ECDH reach too. What this skips is EVP's per-operation work -
 * a key object and its group copy for the ephemeral key and for the peer, the derive context,
 * the export of the ephemeral public key: a P-256 JWE costs ~0.89 million instructions instead
 * of ~1.03 million (callgrind), nearly all of it now the two scalar multiplications. */
static CT_RESULT jose__wrap_ecdh_p256(const EC_POINT *q, const uint8_t cek[32], uint8_t *ek, size_t *ek_len,
                                      ct_buf *hdr, ct_err *err) {
  const EC_GROUP *g = jose__p256_group();
  CT_ENSURE(g, err, CT_EINTERNAL, "jwe: no P-256 group");
  ct_status st = CT_OK;
  uint8_t z[32], x[32], y[32];
  BN_CTX *bn = BN_CTX_secure_new();
  BIGNUM *d = BN_secure_new();
  EC_POINT *e = EC_POINT_new(g), *shared = EC_POINT_new(g);
  BIGNUM *zx = NULL, *ex = NULL, *ey = NULL;
  if (bn) {
    BN_CTX_start(bn);
    zx = BN_CTX_get(bn);
    ex = BN_CTX_get(bn);
    ey = BN_CTX_get(bn);
  }
  CT_ENSURE_GOTO(st, bn && d && e && shared && ey, done, err, CT_ENOMEM, "jwe: out of memory");
  /* The scalar only ever goes through constant-time code. */
  BN_set_flags(d, BN_FLG_CONSTTIME);
  do {
    if (BN_priv_rand_range_ex(d, EC_GROUP_get0_order(g), 0, bn) != 1) {
      st = ct_fail_ossl(err, CT_ECRYPTO, "jwe: drawing the ephemeral P-256 key failed");
      goto done;
    }
  } while (BN_is_zero(d));
  if (EC_POINT_mul(g, e, d, NULL, NULL, bn) != 1 || EC_POINT_get_affine_coordinates(g, e, ex, ey, bn) != 1 ||
      BN_bn2binpad(ex, x, 32) != 32 || BN_bn2binpad(ey, y, 32) != 32) {
    st = ct_fail_ossl(err, CT_ECRYPTO, "jwe: computing the ephemeral P-256 public key failed");
    goto done;
  }
  /* Q was checked to be on the curve when it was decoded, and with cofactor 1 and d in
   * [1, n-1], d*Q is never the point at infinity (get_affine_coordinates would refuse it). */
  if (EC_POINT_mul(g, shared, NULL, q, d, bn) != 1 || EC_POINT_get_affine_coordinates(g, shared, zx, NULL, bn) != 1 ||
      BN_bn2binpad(zx, z, 32) != 32) {
    st = ct_fail_ossl(err, CT_ECRYPTO, "jwe: ECDH key agreement failed");
    goto done;
  }
  st = jose__ecdh_finish(z, sizeof z, "P-256", x, y, 32, cek, ek, ek_len, hdr, err);
done:
  ct_wipe(z, sizeof z);
  BN_clear_free(d);
  EC_POINT_clear_free(shared);
  EC_POINT_free(e);
  if (zx) BN_clear(zx);
  if (bn) BN_CTX_end(bn);
  BN_CTX_free(bn);
  return st;
}

static CT_RESULT jose__wrap_rsa(EVP_PKEY *peer, const char *alg, const uint8_t cek[32],
                                uint8_t **ek, size_t *ek_len, ct_buf *hdr, ct_err *err) {
  bool oaep = strcmp(alg, "RSA-OAEP-256") == 0;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, peer, NULL);
  CT_ENSURE(ctx, err, CT_ENOMEM, "jwe: out of memory");
  size_t len = 0;
  uint8_t *buf = NULL;
  int ok = EVP_PKEY_encrypt_init(ctx) == 1 && jose__rsa_padding(ctx, oaep) &&
           EVP_PKEY_encrypt(ctx, NULL, &len, cek, JOSE__CEK_LEN) == 1 && (buf = malloc(len)) &&
           EVP_PKEY_encrypt(ctx, buf, &len, cek, JOSE__CEK_LEN) == 1;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) {
    free(buf);
    return ct_fail_ossl(err, CT_ECRYPTO, "jwe: RSA encryption of the CEK failed");
  }
  *ek = buf;
  *ek_len = len;
  return ct_buf_printf(hdr, err, "{\"alg\":\"%s\",\"enc\":\"A256GCM\"}", alg);
}

CT_RESULT jose_jwe_encrypt(const json_t *tee_pubkey, const uint8_t *plaintext, size_t len,
                           json_t **out_jwe, ct_err *err) {
  return jose__jwe_encrypt(tee_pubkey, plaintext, len, true, out_jwe, err);
}

CT_RESULT jose__jwe_encrypt(const json_t *tee_pubkey, const uint8_t *plaintext, size_t len, bool p256_fast,
                            json_t **out_jwe, ct_err *err) {
  CT_ENSURE(plaintext || len == 0, err, CT_EINVAL, "jwe: no plaintext");
  CT_ENSURE(len <= JOSE_JWE_PLAINTEXT_MAX, err, CT_ELIMIT,
            "jwe: plaintext of %zu bytes exceeds the limit of %u", len, JOSE_JWE_PLAINTEXT_MAX);
  CT_ENSURE(json_is_object(tee_pubkey), err, CT_EINVAL, "jwe: tee-pubkey must be a JSON object");
  const char *alg = NULL;
  CT_GUARD(ct_json_get_string(tee_pubkey, "alg", "tee-pubkey", &alg, err));
  bool ecdh = strcmp(alg, JOSE__ECDH_KW) == 0;
  CT_ENSURE(ecdh || strcmp(alg, "RSA-OAEP-256") == 0 || strcmp(alg, "RSA1_5") == 0, err,
            CT_EUNSUPPORTED, "jwe: algorithm \"%.32s\" is not supported (ECDH-ES+A256KW, "
            "RSA-OAEP-256, RSA1_5)", alg);
  jose_jwk *peer = NULL;
  EC_POINT *q = NULL; /* a P-256 key's point, then peer stays NULL */
  bool p256 = false;
  ct_status st = CT_OK;
  if (ecdh && p256_fast) st = jose__p256_public_point(tee_pubkey, &q, &p256, err);
  if (!st && !p256) st = jose_jwk_from_json(tee_pubkey, &peer, err);
  if (st) return ct_err_prefix(err, "jwe: tee-pubkey: ");

  uint8_t cek[JOSE__CEK_LEN], iv[JOSE__IV_LEN], tag[JOSE__TAG_LEN], kw[JOSE__KW_LEN];
  uint8_t *rsa_ek = NULL, *ct = NULL;
  size_t ek_len = 0;
  ct_buf hdr;
  ct_buf_init(&hdr, 4096);
  char *hdr64 = NULL;
  json_t *o = NULL;
  CT_GUARD_GOTO(st, ct_random(cek, sizeof cek, err), done);
  CT_GUARD_GOTO(st, ct_random(iv, sizeof iv, err), done);
  if (p256)
    CT_GUARD_GOTO(st, jose__wrap_ecdh_p256(q, cek, kw, &ek_len, &hdr, err), done);
  else if (ecdh)
    CT_GUARD_GOTO(st, jose__wrap_ecdh(jose_jwk_pkey(peer), cek, kw, &ek_len, &hdr, err), done);
  else
    CT_GUARD_GOTO(st, jose__wrap_rsa(jose_jwk_pkey(peer), alg, cek, &rsa_ek, &ek_len, &hdr, err),
                  done);
  CT_GUARD_GOTO(st, ct_b64_encode(CT_B64_URL, hdr.data, hdr.len, &hdr64, err), done);
  ct = malloc(len + 1);
  CT_ENSURE_GOTO(st, ct, done, err, CT_ENOMEM, "jwe: out of memory");
  /* AAD = ASCII(BASE64URL(UTF8(protected header))), RFC 7516 section 5.1 step 14. */
  CT_GUARD_GOTO(st, jose__gcm(true, cek, iv, (const uint8_t *)hdr64, strlen(hdr64), plaintext, len,
                              ct, tag, err), done);
  o = json_object();
  CT_ENSURE_GOTO(st, o, done, err, CT_ENOMEM, "jwe: out of memory");
  CT_GUARD_GOTO(st, ct_json_set_new(o, "protected", json_string(hdr64), err), done);
  CT_GUARD_GOTO(st, jose__set_b64u(o, "encrypted_key", ecdh ? kw : rsa_ek, ek_len, err), done);
  CT_GUARD_GOTO(st, jose__set_b64u(o, "iv", iv, sizeof iv, err), done);
  CT_GUARD_GOTO(st, jose__set_b64u(o, "ciphertext", ct, len, err), done);
  CT_GUARD_GOTO(st, jose__set_b64u(o, "tag", tag, sizeof tag, err), done);
  *out_jwe = o;
  o = NULL;
done:
  ct_wipe(cek, sizeof cek);
  json_decref(o);
  free(ct);
  free(rsa_ek);
  free(hdr64);
  ct_buf_free(&hdr);
  jose_jwk_free(peer);
  EC_POINT_free(q);
  return st;
}

/* ---- decryption ---------------------------------------------------------------------------- */

typedef struct jose__jwe_in {
  const char *prot64; /* borrowed */
  size_t prot64_len;
  const char *aad64; /* borrowed; NULL when absent */
  size_t aad64_len;
  uint8_t *ek, *iv, *ct, *tag;
  size_t ek_len, iv_len, ct_len, tag_len;
  json_t *header;
} jose__jwe_in;

static void jose__jwe_in_free(jose__jwe_in *in) {
  free(in->ek);
  free(in->iv);
  free(in->ct);
  free(in->tag);
  json_decref(in->header);
  memset(in, 0, sizeof *in);
}

/* Gets the five parts from a flattened JSON object or a compact string. */
static CT_RESULT jose__jwe_split(const json_t *jwe, jose__jwe_in *in, ct_err *err) {
  const char *part[5];
  size_t part_len[5];
  static const char *const names[5] = {"protected", "encrypted_key", "iv", "ciphertext", "tag"};
  if (json_is_string(jwe)) {
    const char *s = json_string_value(jwe);
    size_t n = json_string_length(jwe), start = 0, k = 0;
    CT_ENSURE(n <= JOSE_JWE_MAX, err, CT_ELIMIT, "jwe: %zu bytes exceed the limit", n);
    for (size_t i = 0; i <= n && k < 6; i++) {
      if (i == n || s[i] == '.') {
        if (k < 5) {
          part[k] = s + start;
          part_len[k] = i - start;
        }
        k++;
        start = i + 1;
      }
    }
    CT_ENSURE(k == 5, err, CT_EINVAL, "jwe: compact serialization needs five dot-separated parts");
  } else {
    CT_ENSURE(json_is_object(jwe), err, CT_EINVAL, "jwe: must be a JSON object or a compact string");
    CT_ENSURE(!json_object_get(jwe, "recipients"), err, CT_EUNSUPPORTED,
              "jwe: only the flattened serialization is supported (no \"recipients\")");
    size_t total = 0;
    for (size_t i = 0; i < 5; i++) {
      CT_GUARD(ct_json_get_string(jwe, names[i], "jwe", &part[i], err));
      part_len[i] = json_string_length(json_object_get(jwe, names[i]));
      total += part_len[i];
    }
    CT_ENSURE(total <= JOSE_JWE_MAX, err, CT_ELIMIT, "jwe: %zu bytes exceed the limit", total);
    json_t *aad = json_object_get(jwe, "aad");
    if (aad) {
      CT_ENSURE(json_is_string(aad) && json_string_length(aad) <= JOSE_HEADER_MAX, err, CT_EINVAL,
                "jwe: \"aad\" must be a string of at most %u bytes", JOSE_HEADER_MAX);
      in->aad64 = json_string_value(aad);
      in->aad64_len = json_string_length(aad);
      uint8_t *tmp = NULL; /* validate its alphabet */
      size_t tmp_len = 0;
      CT_GUARD(jose__b64u_decode(in->aad64, in->aad64_len, JOSE_HEADER_MAX, "jwe aad", &tmp,
                                 &tmp_len, err));
      free(tmp);
    }
  }
  CT_ENSURE(part_len[0] > 0, err, CT_EINVAL, "jwe: empty protected header");
  in->prot64 = part[0];
  in->prot64_len = part_len[0];
  uint8_t *hdr = NULL;
  size_t hdr_len = 0;
  CT_GUARD(jose__b64u_decode(part[0], part_len[0], JOSE_HEADER_MAX, "jwe protected", &hdr,
                             &hdr_len, err));
  ct_status st = ct_json_parse((const char *)hdr, hdr_len, JOSE_JSON_DEPTH, &in->header, err);
  free(hdr);
  if (st) return ct_err_prefix(err, "jwe protected header: ");
  CT_ENSURE(json_is_object(in->header), err, CT_EINVAL, "jwe protected header: must be an object");
  /* Flattened JSON may carry more parameters in "unprotected" and "header" (jwcrypto puts epk
   * there); RFC 7516 section 7.2.1 requires the three sets of names to be disjoint. */
  static const char *const extra[2] = {"unprotected", "header"};
  for (size_t i = 0; json_is_object(jwe) && i < 2; i++) {
    json_t *more = json_object_get(jwe, extra[i]);
    if (!more) continue;
    CT_ENSURE(json_is_object(more), err, CT_EINVAL, "jwe: \"%s\" must be an object", extra[i]);
    const char *k;
    json_t *v;
    json_object_foreach(more, k, v) {
      CT_ENSURE(!json_object_get(in->header, k), err, CT_EINVAL,
                "jwe: header parameter \"%.64s\" appears twice", k);
      CT_ENSURE(strcmp(k, "crit") != 0, err, CT_EINVAL, "jwe: \"crit\" must be protected");
      CT_ENSURE(json_object_set(in->header, k, v) == 0, err, CT_ENOMEM, "jwe: out of memory");
    }
  }
  CT_GUARD(jose__b64u_decode(part[1], part_len[1], JOSE_RSA_MAX_BITS / 8, "jwe encrypted_key",
                             &in->ek, &in->ek_len, err));
  CT_GUARD(jose__b64u_decode(part[2], part_len[2], 64, "jwe iv", &in->iv, &in->iv_len, err));
  CT_GUARD(jose__b64u_decode(part[3], part_len[3], JOSE_JWE_MAX, "jwe ciphertext", &in->ct,
                             &in->ct_len, err));
  CT_GUARD(jose__b64u_decode(part[4], part_len[4], 64, "jwe tag", &in->tag, &in->tag_len, err));
  CT_ENSURE(in->iv_len == JOSE__IV_LEN, err, CT_EINVAL, "jwe: iv must be %d bytes, found %zu",
            JOSE__IV_LEN, in->iv_len);
  CT_ENSURE(in->tag_len == JOSE__TAG_LEN, err, CT_EINVAL, "jwe: tag must be %d bytes, found %zu",
            JOSE__TAG_LEN, in->tag_len);
  return CT_OK;
}

/* Optional base64url apu/apv header member. */
static CT_RESULT jose__party(const json_t *hdr, const char *key, uint8_t **out, size_t *len,
                             ct_err *err) {
  *out = NULL;
  *len = 0;
  if (!json_object_get(hdr, key)) return CT_OK;
  return jose__b64u_member(hdr, key, JOSE__PARTY_MAX, "jwe header", out, len, err);
}

static CT_RESULT jose__unwrap_ecdh(const jose_jwk *priv, const jose__jwe_in *in, uint8_t cek[32],
                                   ct_err *err) {
  json_t *epk = json_object_get(in->header, "epk");
  CT_ENSURE(json_is_object(epk), err, CT_EINVAL, "jwe: ECDH-ES+A256KW needs an \"epk\" object");
  CT_ENSURE(!json_object_get(epk, "d"), err, CT_EINVAL, "jwe: \"epk\" must be a public key");
  const char *kty = json_string_value(json_object_get(epk, "kty"));
  CT_ENSURE(kty && strcmp(kty, "EC") == 0, err, CT_EUNSUPPORTED, "jwe: \"epk\" must be an EC key");
  CT_ENSURE(in->ek_len == JOSE__KW_LEN, err, CT_EINVAL, "jwe: encrypted_key must be %d bytes, "
            "found %zu", JOSE__KW_LEN, in->ek_len);
  jose_jwk *eph = NULL;
  ct_status st = jose_jwk_from_json(epk, &eph, err);
  if (st) return ct_err_prefix(err, "jwe epk: ");
  const char *mine = jose__ec_crv(priv->pkey), *theirs = jose__ec_crv(eph->pkey);
  uint8_t *apu = NULL, *apv = NULL, z[66], kek[32];
  size_t apu_len = 0, apv_len = 0, z_len = sizeof z, cek_len = 0;
  CT_ENSURE_GOTO(st, mine && theirs && strcmp(mine, theirs) == 0, done, err, CT_EINVAL,
                 "jwe: epk curve %s does not match the key's %s", theirs ? theirs : "?",
                 mine ? mine : "?");
  CT_GUARD_GOTO(st, jose__party(in->header, "apu", &apu, &apu_len, err), done);
  CT_GUARD_GOTO(st, jose__party(in->header, "apv", &apv, &apv_len, err), done);
  CT_GUARD_GOTO(st, jose__ecdh(priv->pkey, eph->pkey, z, &z_len, err), done);
  CT_GUARD_GOTO(st, jose__concat_kdf(z, z_len, apu, apu_len, apv, apv_len, kek, err), done);
  uint8_t out[JOSE__KW_LEN + 16];
  st = jose__aes_kw(false, kek, in->ek, in->ek_len, out, &cek_len, err);
  if (!st && cek_len != JOSE__CEK_LEN) st = ct_fail(err, CT_ECRYPTO, "jwe: unwrapped CEK size");
  if (!st) memcpy(cek, out, JOSE__CEK_LEN);
  ct_wipe(out, sizeof out);
done:
  ct_wipe(z, sizeof z);
  ct_wipe(kek, sizeof kek);
  free(apu);
  free(apv);
  jose_jwk_free(eph);
  return st;
}

/* RSA key transport. For RSA1_5 a failed or wrong-sized decryption silently yields a random CEK,
 * so that the only observable failure is the GCM tag (RFC 7516 section 11.5, Bleichenbacher). */
static CT_RESULT jose__unwrap_rsa(const jose_jwk *priv, const char *alg, const jose__jwe_in *in,
                                  uint8_t cek[32], ct_err *err) {
  size_t mod = (size_t)EVP_PKEY_get_size(priv->pkey);
  CT_ENSURE(in->ek_len == mod, err, CT_EINVAL, "jwe: encrypted_key must be %zu bytes, found %zu",
            mod, in->ek_len);
  bool oaep = strcmp(alg, "RSA-OAEP-256") == 0;
  uint8_t fallback[JOSE__CEK_LEN];
  CT_GUARD(ct_random(fallback, sizeof fallback, err));
  uint8_t *buf = malloc(mod);
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, priv->pkey, NULL);
  size_t len = mod;
  int ok = buf && ctx && EVP_PKEY_decrypt_init(ctx) == 1 && jose__rsa_padding(ctx, oaep) &&
           EVP_PKEY_decrypt(ctx, buf, &len, in->ek, in->ek_len) == 1;
  EVP_PKEY_CTX_free(ctx);
  ERR_clear_error();
  ct_status st = CT_OK;
  if (!buf) {
    st = ct_fail(err, CT_ENOMEM, "jwe: out of memory");
  } else if (oaep) {
    if (ok && len == JOSE__CEK_LEN)
      memcpy(cek, buf, JOSE__CEK_LEN);
    else
      st = ct_fail(err, CT_ECRYPTO, "jwe: decryption failed");
  } else {
    /* Branch-free select between the decrypted and the fallback CEK. */
    uint8_t good = (uint8_t)(0u - (uint8_t)(ok && len == JOSE__CEK_LEN));
    for (size_t i = 0; i < JOSE__CEK_LEN; i++)
      cek[i] = (uint8_t)((buf[i % mod] & good) | (fallback[i] & (uint8_t)~good));
  }
  if (buf) ct_wipe(buf, mod);
  free(buf);
  ct_wipe(fallback, sizeof fallback);
  return st;
}

CT_RESULT jose_jwe_decrypt(const jose_jwk *priv, const json_t *jwe, uint8_t **plaintext,
                           size_t *len, ct_err *err) {
  CT_ENSURE(priv && priv->priv, err, CT_EINVAL, "jwe: decryption needs a private key");
  jose__jwe_in in;
  memset(&in, 0, sizeof in);
  ct_status st = CT_OK;
  uint8_t cek[JOSE__CEK_LEN];
  uint8_t *aad = NULL, *pt = NULL;
  CT_GUARD_GOTO(st, jose__jwe_split(jwe, &in, err), done);
  const char *alg = NULL, *enc = NULL;
  CT_GUARD_GOTO(st, ct_json_get_string(in.header, "alg", "jwe protected header", &alg, err), done);
  CT_GUARD_GOTO(st, ct_json_get_string(in.header, "enc", "jwe protected header", &enc, err), done);
  CT_ENSURE_GOTO(st, strcmp(enc, "A256GCM") == 0, done, err, CT_EUNSUPPORTED,
                 "jwe: content encryption \"%.32s\" is not supported (A256GCM)", enc);
  CT_ENSURE_GOTO(st, !json_object_get(in.header, "crit") && !json_object_get(in.header, "zip"),
                 done, err, CT_EUNSUPPORTED, "jwe: \"crit\" and \"zip\" are not supported");
  CT_ENSURE_GOTO(st, !priv->alg || strcmp(priv->alg, alg) == 0, done, err, CT_ECRYPTO,
                 "jwe: algorithm \"%.32s\" is not the key's %s", alg, priv->alg);
  bool ecdh = strcmp(alg, JOSE__ECDH_KW) == 0;
  CT_ENSURE_GOTO(st, ecdh || strcmp(alg, "RSA-OAEP-256") == 0 || strcmp(alg, "RSA1_5") == 0, done,
                 err, CT_EUNSUPPORTED, "jwe: algorithm \"%.32s\" is not supported", alg);
  CT_ENSURE_GOTO(st, jose__alg_suits_pkey(alg, priv->pkey), done, err, CT_ECRYPTO,
                 "jwe: algorithm %s does not suit the private key", alg);
  st = ecdh ? jose__unwrap_ecdh(priv, &in, cek, err) : jose__unwrap_rsa(priv, alg, &in, cek, err);
  if (st == CT_ECRYPTO) st = ct_fail(err, CT_ECRYPTO, "jwe: decryption failed");
  if (st) goto done;

  /* AAD: the protected string, plus "." and the aad member when present (RFC 7516 5.2 step 14). */
  size_t aad_len = in.prot64_len + (in.aad64 ? 1 + in.aad64_len : 0);
  aad = malloc(aad_len + 1);
  pt = malloc(in.ct_len + 1);
  CT_ENSURE_GOTO(st, aad && pt, done, err, CT_ENOMEM, "jwe: out of memory");
  memcpy(aad, in.prot64, in.prot64_len);
  if (in.aad64) {
    aad[in.prot64_len] = '.';
    memcpy(aad + in.prot64_len + 1, in.aad64, in.aad64_len);
  }
  st = jose__gcm(false, cek, in.iv, aad, aad_len, in.ct, in.ct_len, pt, in.tag, err);
  if (st) {
    st = ct_fail(err, CT_ECRYPTO, "jwe: decryption failed");
    ct_wipe(pt, in.ct_len);
    goto done;
  }
  pt[in.ct_len] = 0;
  *plaintext = pt;
  *len = in.ct_len;
  pt = NULL;
done:
  ct_wipe(cek, sizeof cek);
  free(pt);
  free(aad);
  jose__jwe_in_free(&in);
  return st;
}
