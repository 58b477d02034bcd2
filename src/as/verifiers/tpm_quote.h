/*
 * tpm_quote.h - TPM 2.0 quotes: a bounded TPMS_ATTEST unmarshaller, quote signature checks and
 * the PCR digest check. Shared by the az-snp-vtpm, az-tdx-vtpm and tpm verifiers.
 *
 * Wire format (TPM 2.0 Library, Part 2): all integers big-endian. TPMS_ATTEST = magic (u32,
 * TPM_GENERATED_VALUE), type (u16), qualifiedSigner (TPM2B_NAME), extraData (TPM2B_DATA),
 * clockInfo (u64 clock, u32 resetCount, u32 restartCount, u8 safe), firmwareVersion (u64),
 * then for a quote TPMS_QUOTE_INFO = pcrSelect (TPML_PCR_SELECTION) and pcrDigest (TPM2B).
 * This is an own unmarshaller (no tss2 headers, so it can sit next to jansson).
 */
#ifndef TPM_QUOTE_H
#define TPM_QUOTE_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

#define TPM_GENERATED_VALUE 0xff544347u
#define TPM_ST_ATTEST_QUOTE 0x8018
#define TPM_ALG_RSASSA 0x0014
#define TPM_ALG_RSAPSS 0x0016
#define TPM_ALG_ECDSA 0x0018
#define TPM_ALG_SHA1 0x0004
#define TPM_ALG_SHA256 0x000B
#define TPM_ALG_SHA384 0x000C
#define TPM_ALG_SHA512 0x000D

#define TPM_PCR_BANKS_MAX 8
#define TPM_PCR_SELECT_MAX 4 /* bytes of pcrSelect: up to 32 PCRs */
#define TPM_PCRS_MAX 32

typedef struct tpm_pcr_bank {
  uint16_t hash_alg;
  uint8_t size_of_select;
  uint8_t select[TPM_PCR_SELECT_MAX];
} tpm_pcr_bank;

/* A parsed quote. The pointers point into the caller's message buffer. */
typedef struct tpm_attest {
  uint32_t magic;
  uint16_t type;
  const uint8_t *qualified_signer;
  size_t qualified_signer_len;
  const uint8_t *extra_data;
  size_t extra_data_len;
  uint64_t clock;
  uint32_t reset_count, restart_count;
  uint8_t safe;
  uint64_t firmware_version;
  size_t n_banks;
  tpm_pcr_bank banks[TPM_PCR_BANKS_MAX];
  const uint8_t *pcr_digest;
  size_t pcr_digest_len;
} tpm_attest;

/* Unmarshals a TPMS_ATTEST of type quote; the whole buffer must be consumed. Checks the magic
 * and type; checks nothing cryptographic. */
CT_RESULT tpm_attest_parse(const uint8_t *msg, size_t len, tpm_attest *out, ct_err *err);

/* Verifies an RSASSA-PKCS1-v1_5 SHA-256 signature (the raw signature bytes, as Azure's vTPM
 * evidence carries them) over the marshalled TPMS_ATTEST with an RSA AK. */
CT_RESULT tpm_quote_verify_rsassa_sha256(EVP_PKEY *ak, const uint8_t *msg, size_t msg_len,
                                         const uint8_t *sig, size_t sig_len, ct_err *err);

/* Verifies a marshalled TPMT_SIGNATURE (RSASSA, RSAPSS or ECDSA with SHA-256/384/512) over the
 * TPMS_ATTEST with the AK. */
CT_RESULT tpm_quote_verify_tpmt_signature(EVP_PKEY *ak, const uint8_t *msg, size_t msg_len,
                                          const uint8_t *sig, size_t sig_len, ct_err *err);

/* Checks that the quote selects only SHA-256 banks and exactly `n` PCRs, and that
 * SHA-256(pcrs[0] || ... || pcrs[n-1]) equals pcrDigest (values in selection order, the TPM's
 * order). If `pcr_numbers` is not NULL it receives the PCR number of each value. */
CT_RESULT tpm_quote_check_pcrs(const tpm_attest *a, const uint8_t (*pcrs)[32], size_t n,
                               unsigned *pcr_numbers, ct_err *err);

/* Builds an RSA public key from big-endian modulus and exponent (e.g. a JWK's n and e).
 * Caller frees with EVP_PKEY_free. */
CT_RESULT tpm_rsa_public_key(const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len,
                             EVP_PKEY **out, ct_err *err);

#endif
