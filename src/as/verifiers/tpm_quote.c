/*
 * TPM 2.0 quote parsing and verification (see tpm_quote.h). Every read goes through ct_reader,
 * bounded by the remaining input; a short or over-long structure is an error, never a read past
 * the buffer.
 */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <string.h>

#include "ct_digest.h"
#include "ct_mem.h"
#include "ct_reader.h"
#include "tpm_quote.h"

/* A TPM2B: u16 size then that many bytes, at most `max`. False when truncated or too long (the
 * reader then has failed). */
static bool tpm__2b(ct_reader *r, size_t max, const char *field, const uint8_t **p, size_t *len) {
  uint16_t n = ct_read_u16be(r, field);
  if (ct_reader_ok(r) && n > max) ct_reader_fail(r, field, "longer than allowed");
  *p = ct_read_bytes(r, n, field);
  *len = n;
  return ct_reader_ok(r);
}

CT_RESULT tpm_attest_parse(const uint8_t *msg, size_t len, tpm_attest *out, ct_err *err) {
  tpm_attest a;
  memset(&a, 0, sizeof a);
  ct_reader r;
  ct_reader_init(&r, msg, len, "TPM quote");
  a.magic = ct_read_u32be(&r, "magic");
  a.type = ct_read_u16be(&r, "type");
  CT_ENSURE(ct_reader_ok(&r), err, CT_EINVAL, "TPM quote: message too short for a TPMS_ATTEST header");
  CT_ENSURE(a.magic == TPM_GENERATED_VALUE, err, CT_EINVAL,
            "TPM quote: magic is 0x%08x, expected TPM_GENERATED_VALUE 0xff544347", a.magic);
  CT_ENSURE(a.type == TPM_ST_ATTEST_QUOTE, err, CT_EINVAL,
            "TPM quote: attestation type is 0x%04x, expected TPM_ST_ATTEST_QUOTE 0x8018", a.type);
  /* TPMU_NAME is at most a digest plus its algorithm; TPMU_HA at most 64 bytes. */
  CT_ENSURE(tpm__2b(&r, 2 + 64, "qualifiedSigner", &a.qualified_signer, &a.qualified_signer_len), err,
            CT_EINVAL, "TPM quote: qualifiedSigner is truncated or too long");
  CT_ENSURE(tpm__2b(&r, 64, "extraData", &a.extra_data, &a.extra_data_len), err, CT_EINVAL,
            "TPM quote: extraData is truncated or longer than 64 bytes");
  a.clock = ct_read_u64be(&r, "clock");
  a.reset_count = ct_read_u32be(&r, "resetCount");
  a.restart_count = ct_read_u32be(&r, "restartCount");
  a.safe = ct_read_u8(&r, "safe");
  a.firmware_version = ct_read_u64be(&r, "firmwareVersion");
  CT_ENSURE(ct_reader_ok(&r), err, CT_EINVAL, "TPM quote: clockInfo/firmwareVersion truncated");
  uint32_t count = ct_read_u32be(&r, "pcrSelect count");
  CT_ENSURE(ct_reader_ok(&r), err, CT_EINVAL, "TPM quote: pcrSelect truncated");
  CT_ENSURE(count <= TPM_PCR_BANKS_MAX, err, CT_EINVAL,
            "TPM quote: pcrSelect has %u banks, at most %d supported", count, TPM_PCR_BANKS_MAX);
  a.n_banks = count;
  for (uint32_t i = 0; i < count; i++) {
    tpm_pcr_bank *b = &a.banks[i];
    b->hash_alg = ct_read_u16be(&r, "pcrSelect hash");
    b->size_of_select = ct_read_u8(&r, "sizeofSelect");
    CT_ENSURE(ct_reader_ok(&r), err, CT_EINVAL, "TPM quote: pcrSelect bank %u truncated", i);
    CT_ENSURE(b->size_of_select <= TPM_PCR_SELECT_MAX && ct_reader_remaining(&r) >= b->size_of_select,
              err, CT_EINVAL, "TPM quote: pcrSelect bank %u has a bad sizeofSelect %u", i,
              b->size_of_select);
    const uint8_t *sel = ct_read_bytes(&r, b->size_of_select, "pcrSelect");
    if (sel) memcpy(b->select, sel, b->size_of_select);
  }
  CT_ENSURE(tpm__2b(&r, 64, "pcrDigest", &a.pcr_digest, &a.pcr_digest_len), err, CT_EINVAL,
            "TPM quote: pcrDigest is truncated or longer than 64 bytes");
  CT_ENSURE(ct_reader_remaining(&r) == 0, err, CT_EINVAL,
            "TPM quote: %zu unexpected bytes after the TPMS_ATTEST", ct_reader_remaining(&r));
  CT_GUARD(ct_reader_status(&r, err));
  *out = a;
  return CT_OK;
}

static const EVP_MD *tpm__md(uint16_t alg) {
  switch (alg) {
  case TPM_ALG_SHA256: return EVP_sha256();
  case TPM_ALG_SHA384: return EVP_sha384();
  case TPM_ALG_SHA512: return EVP_sha512();
  default: return NULL;
  }
}

/* One-shot verification; `pss` selects RSASSA-PSS (salt = digest length, as TPMs sign). */
static bool tpm__verify(EVP_PKEY *k, const EVP_MD *md, bool pss, const uint8_t *msg, size_t len,
                        const uint8_t *sig, size_t sig_len) {
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  EVP_PKEY_CTX *pc = NULL;
  bool ok = c && EVP_DigestVerifyInit(c, &pc, md, NULL, k) == 1;
  if (ok && EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA)
    ok = EVP_PKEY_CTX_set_rsa_padding(pc, pss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING) == 1 &&
         (!pss || EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_AUTO) == 1);
  ok = ok && EVP_DigestVerify(c, sig, sig_len, msg, len) == 1;
  EVP_MD_CTX_free(c);
  ERR_clear_error();
  return ok;
}

CT_RESULT tpm_quote_verify_rsassa_sha256(EVP_PKEY *ak, const uint8_t *msg, size_t msg_len,
                                         const uint8_t *sig, size_t sig_len, ct_err *err) {
  CT_ENSURE(ak && EVP_PKEY_get_base_id(ak) == EVP_PKEY_RSA, err, CT_EINVAL,
            "TPM quote: the AK is not an RSA key");
  CT_ENSURE(tpm__verify(ak, EVP_sha256(), false, msg, msg_len, sig, sig_len), err, CT_ECRYPTO,
            "TPM quote: signature (RSASSA-SHA256) is not made by the AK");
  return CT_OK;
}

CT_RESULT tpm_quote_verify_tpmt_signature(EVP_PKEY *ak, const uint8_t *msg, size_t msg_len,
                                          const uint8_t *sig, size_t sig_len, ct_err *err) {
  ct_reader r;
  ct_reader_init(&r, sig, sig_len, "TPM quote signature");
  uint16_t alg = ct_read_u16be(&r, "sigAlg"), hash = ct_read_u16be(&r, "hash");
  CT_ENSURE(ct_reader_ok(&r), err, CT_EINVAL, "TPM quote: TPMT_SIGNATURE truncated");
  const EVP_MD *md = tpm__md(hash);
  CT_ENSURE(md, err, CT_EUNSUPPORTED, "TPM quote: signature hash algorithm 0x%04x unsupported", hash);
  bool ok = false;
  if (alg == TPM_ALG_RSASSA || alg == TPM_ALG_RSAPSS) {
    const uint8_t *s;
    size_t n;
    CT_ENSURE(tpm__2b(&r, 512, "signature", &s, &n) && ct_reader_remaining(&r) == 0, err, CT_EINVAL,
              "TPM quote: RSA signature malformed");
    CT_ENSURE(EVP_PKEY_get_base_id(ak) == EVP_PKEY_RSA, err, CT_EINVAL,
              "TPM quote: RSA signature but the AK is not RSA");
    ok = tpm__verify(ak, md, alg == TPM_ALG_RSAPSS, msg, msg_len, s, n);
  } else if (alg == TPM_ALG_ECDSA) {
    const uint8_t *rp, *sp;
    size_t rn, sn;
    CT_ENSURE(tpm__2b(&r, 66, "signatureR", &rp, &rn) && tpm__2b(&r, 66, "signatureS", &sp, &sn) &&
                  ct_reader_remaining(&r) == 0, err,
              CT_EINVAL, "TPM quote: ECDSA signature malformed");
    CT_ENSURE(EVP_PKEY_get_base_id(ak) == EVP_PKEY_EC, err, CT_EINVAL,
              "TPM quote: ECDSA signature but the AK is not an EC key");
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *br = BN_bin2bn(rp, (int)rn, NULL), *bs = BN_bin2bn(sp, (int)sn, NULL);
    unsigned char *der = NULL;
    int dl = -1;
    if (es && br && bs && ECDSA_SIG_set0(es, br, bs) == 1) {
      br = bs = NULL;
      dl = i2d_ECDSA_SIG(es, &der);
    }
    BN_free(br);
    BN_free(bs);
    ECDSA_SIG_free(es);
    CT_ENSURE(dl > 0, err, CT_ENOMEM, "out of memory");
    ok = tpm__verify(ak, md, false, msg, msg_len, der, (size_t)dl);
    OPENSSL_free(der);
  } else {
    return ct_fail(err, CT_EUNSUPPORTED, "TPM quote: signature algorithm 0x%04x unsupported", alg);
  }
  CT_ENSURE(ok, err, CT_ECRYPTO, "TPM quote: signature is not made by the AK");
  return CT_OK;
}

CT_RESULT tpm_quote_check_pcrs(const tpm_attest *a, const uint8_t (*pcrs)[32], size_t n,
                               unsigned *pcr_numbers, ct_err *err) {
  size_t selected = 0;
  for (size_t b = 0; b < a->n_banks; b++) {
    const tpm_pcr_bank *bk = &a->banks[b];
    bool any = false;
    for (unsigned i = 0; i < bk->size_of_select * 8u; i++) {
      if (!(bk->select[i / 8] >> (i % 8) & 1)) continue;
      any = true;
      if (selected < n && pcr_numbers) pcr_numbers[selected] = i;
      selected++;
    }
    CT_ENSURE(!any || bk->hash_alg == TPM_ALG_SHA256, err, CT_EUNSUPPORTED,
              "TPM quote: PCR bank 0x%04x selected; only SHA-256 PCRs are supported",
              bk->hash_alg);
  }
  CT_ENSURE(selected == n, err, CT_EINVAL,
            "TPM quote: it selects %zu PCRs but the evidence carries %zu values", selected, n);
  CT_ENSURE(a->pcr_digest_len == 32, err, CT_EINVAL,
            "TPM quote: pcrDigest is %zu bytes, expected 32 (SHA-256)", a->pcr_digest_len);
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  uint8_t d[32];
  unsigned dl = 0;
  bool ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1;
  for (size_t i = 0; ok && i < n; i++) ok = EVP_DigestUpdate(c, pcrs[i], 32) == 1;
  ok = ok && EVP_DigestFinal_ex(c, d, &dl) == 1;
  EVP_MD_CTX_free(c);
  CT_ENSURE(ok, err, CT_ENOMEM, "out of memory hashing PCRs");
  CT_ENSURE(memcmp(d, a->pcr_digest, 32) == 0, err, CT_ECRYPTO,
            "TPM quote: digest of the PCR values does not match pcrDigest in the quote");
  return CT_OK;
}

CT_RESULT tpm_rsa_public_key(const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len,
                             EVP_PKEY **out, ct_err *err) {
  CT_ENSURE(n_len >= 128 && n_len <= 1024 && e_len >= 1 && e_len <= 8, err, CT_EINVAL,
            "RSA key: modulus of %zu bytes or exponent of %zu bytes out of range", n_len, e_len);
  BIGNUM *bn = BN_bin2bn(n, (int)n_len, NULL), *be = BN_bin2bn(e, (int)e_len, NULL);
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM *params = NULL;
  EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
  EVP_PKEY *k = NULL;
  bool ok = bn && be && bld && pc && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1 &&
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1 &&
            (params = OSSL_PARAM_BLD_to_param(bld)) != NULL && EVP_PKEY_fromdata_init(pc) == 1 &&
            EVP_PKEY_fromdata(pc, &k, EVP_PKEY_PUBLIC_KEY, params) == 1;
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  EVP_PKEY_CTX_free(pc);
  BN_free(bn);
  BN_free(be);
  if (!ok) {
    EVP_PKEY_free(k);
    return ct_fail_ossl(err, CT_EINVAL, "RSA key: modulus/exponent do not form a public key");
  }
  *out = k;
  return CT_OK;
}
