/*
 * The load generator's precomputed-nonce report signatures (snp_signer_report_pooled) must be
 * indistinguishable to a verifier from snp_signer_report's: checked with OpenSSL's
 * EVP_DigestVerify over the signed bytes and with the KBS's own snp_report_verify_signature;
 * each nonce signs once, and a spent pool falls back to the ordinary signature.
 */
#include "ct_test_util.h"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>

#include "snp_signer.h"

static snp_signer *signer;
static snp_signer_vek *vek;

static int setup(void **state) {
  (void)state;
  ct_err err;
  uint8_t chip[64];
  memset(chip, 0xc1, sizeof chip);
  snp_tcb tcb = {.bootloader = 4, .snp = 22, .microcode = 213};
  if (snp_signer_new(SNP_GEN_MILAN, 2048, &signer, &err) != CT_OK) return -1;
  return snp_signer_vek_new(signer, chip, &tcb, false, &vek, &err) == CT_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  snp_signer_vek_free(vek);
  snp_signer_free(signer);
  return 0;
}

/* The signature fields back to DER, verified by OpenSSL over the signed part of the report. */
static bool ossl_verifies(const uint8_t raw[SNP_REPORT_SIZE]) {
  BIGNUM *r = BN_lebin2bn(raw + SNP_SIG_OFFSET, 72, NULL), *s = BN_lebin2bn(raw + SNP_SIG_OFFSET + 72, 72, NULL);
  ECDSA_SIG *sig = ECDSA_SIG_new();
  if (!sig || !ECDSA_SIG_set0(sig, r, s)) return false;
  unsigned char *der = NULL;
  int der_len = i2d_ECDSA_SIG(sig, &der);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  bool ok = der_len > 0 && md && EVP_DigestVerifyInit(md, NULL, EVP_sha384(), NULL, vek->key) == 1 &&
            EVP_DigestVerify(md, der, (size_t)der_len, raw, SNP_SIGNED_LEN) == 1;
  EVP_MD_CTX_free(md);
  OPENSSL_free(der);
  ECDSA_SIG_free(sig);
  return ok;
}

static bool kbs_verifies(const uint8_t raw[SNP_REPORT_SIZE]) {
  snp_report rep;
  ct_err err;
  snp_vek_info info = {.type = SNP_VEK_VCEK, .gen = SNP_GEN_MILAN, .hwid_len = 64, .tcb = vek->tcb};
  memcpy(info.hwid, vek->chip_id, 64);
  return snp_report_parse(raw, SNP_REPORT_SIZE, &rep, &err) == CT_OK &&
         snp_report_verify_signature(&rep, &info, vek->key, &err) == CT_OK;
}

static void test_pooled_signatures_verify_once_each(void **state) {
  (void)state;
  ct_err err;
  snp_signer_nonces *pool = NULL;
  CT_ASSERT_OK(snp_signer_nonces_new(vek, 8, 2, &pool, &err), &err);
  assert_int_equal(snp_signer_nonces_left(pool), 8);
  snp_signer_report_opts o;
  snp_signer_report_defaults(vek, SNP_GEN_MILAN, &o);
  uint8_t raw[SNP_REPORT_SIZE], plain[SNP_REPORT_SIZE], rs[8][48];
  for (int i = 0; i < 8; i++) {
    memset(o.report_data, i, sizeof o.report_data);
    bool pre = false;
    CT_ASSERT_OK(snp_signer_report_pooled(vek, pool, SNP_GEN_MILAN, &o, raw, &pre, &err), &err);
    assert_true(pre);
    assert_true(ossl_verifies(raw));
    assert_true(kbs_verifies(raw));
    /* Byte-identical to the ordinary signer outside the signature. */
    CT_ASSERT_OK(snp_signer_report(vek, SNP_GEN_MILAN, &o, plain, &err), &err);
    assert_memory_equal(raw, plain, SNP_SIGNED_LEN);
    assert_true(kbs_verifies(plain));
    /* No r twice: every pair is used once. */
    memcpy(rs[i], raw + SNP_SIG_OFFSET, 48);
    for (int j = 0; j < i; j++) assert_memory_not_equal(rs[i], rs[j], 48);
    /* A changed byte breaks it. */
    raw[SNP_OFF_REPORT_DATA] ^= 1;
    assert_false(ossl_verifies(raw));
  }
  assert_int_equal(snp_signer_nonces_left(pool), 0);
  bool pre = true;
  CT_ASSERT_OK(snp_signer_report_pooled(vek, pool, SNP_GEN_MILAN, &o, raw, &pre, &err), &err);
  assert_false(pre); /* spent: the ordinary signature */
  assert_true(ossl_verifies(raw));
  snp_signer_nonces_free(pool);
}

static void test_pool_bound_to_its_key(void **state) {
  (void)state;
  ct_err err;
  snp_signer_nonces *pool = NULL;
  snp_signer_vek *other = NULL;
  snp_tcb tcb = vek->tcb;
  CT_ASSERT_OK(snp_signer_vek_new(signer, vek->chip_id, &tcb, false, &other, &err), &err);
  CT_ASSERT_OK(snp_signer_nonces_new(vek, 1, 1, &pool, &err), &err);
  snp_signer_report_opts o;
  snp_signer_report_defaults(other, SNP_GEN_MILAN, &o);
  uint8_t raw[SNP_REPORT_SIZE];
  bool pre = false;
  assert_int_equal(snp_signer_report_pooled(other, pool, SNP_GEN_MILAN, &o, raw, &pre, &err), CT_EINVAL);
  assert_int_equal(snp_signer_nonces_new(vek, SNP_SIGNER_NONCES_MAX + 1u, 1, &(snp_signer_nonces *){NULL}, &err),
                   CT_EINVAL);
  snp_signer_nonces_free(pool);
  snp_signer_vek_free(other);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pooled_signatures_verify_once_each),
      cmocka_unit_test(test_pool_bound_to_its_key),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
