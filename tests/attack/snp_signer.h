/*
 * snp_signer.h - a TEST-ONLY AMD SEV-SNP signer: makes its own ARK, ASK and ASVK (RSA-PSS,
 * SHA-384, as AMD's), VCEKs and VLEKs (ECDSA P-384 with AMD's hwID and SPL extensions), and
 * signs attestation reports with any field the caller chooses, in the serde JSON form our guest
 * attester (and Trustee's) sends.
 *
 * A KBS accepts what it signs only when its configuration names the roots file in
 * [attestation_service.verifier_config.snp_verifier] insecure_test_only_roots. Everything it
 * endorses is forged by construction; it exists so that the attack suite and the load generator
 * run the real SNP verification path (chain, extensions, P-384 signature, report checks) without
 * hardware. Never link it into a program that ships.
 */
#ifndef SNP_SIGNER_H
#define SNP_SIGNER_H

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"
#include "snp.h"

typedef struct snp_signer {
  snp_gen gen;
  EVP_PKEY *ark_key, *ask_key, *asvk_key;
  X509 *ark, *ask, *asvk;
} snp_signer;

/* An endorsement key: a VCEK (signed by the ASK, carries the chip's hwID) or a VLEK (ASVK). */
typedef struct snp_signer_vek {
  EVP_PKEY *key;
  uint8_t *der;
  size_t der_len;
  uint8_t chip_id[64];
  snp_tcb tcb;
  bool vlek;
} snp_signer_vek;

/* Every report field a test may want to set; snp_signer_report_defaults fills a good report. */
typedef struct snp_signer_report_opts {
  uint32_t version;    /* 2..5; 3 by default (carries CPUID) */
  uint32_t guest_svn;
  uint64_t policy;     /* bit 19 = debug allowed */
  uint32_t vmpl;
  uint64_t plat_info;
  uint8_t report_data[64];
  uint8_t measurement[48];
  uint8_t host_data[32];
  uint8_t chip_id[64];
  snp_tcb reported_tcb;
} snp_signer_report_opts;

/* New roots for generation `gen` (Milan, Genoa or Turin); `rsa_bits` for ARK/ASK/ASVK. */
CT_RESULT snp_signer_new(snp_gen gen, int rsa_bits, snp_signer **out, ct_err *err);
/* dir/roots.pem (ASK, ARK, ASVK: what the KBS trusts), dir/{ark,ask,asvk}.key. */
CT_RESULT snp_signer_save(const snp_signer *s, const char *dir, ct_err *err);
CT_RESULT snp_signer_load(const char *dir, snp_signer **out, ct_err *err);
void snp_signer_free(snp_signer *s);

/* A VCEK (vlek = false) for chip_id at TCB `tcb`, or a VLEK. */
CT_RESULT snp_signer_vek_new(const snp_signer *s, const uint8_t chip_id[64], const snp_tcb *tcb, bool vlek,
                             snp_signer_vek **out, ct_err *err);
/* dir/<name>.der, dir/<name>.key, dir/<name>.json ({chip_id, tcb, vlek}). */
CT_RESULT snp_signer_vek_save(const snp_signer_vek *v, const char *dir, const char *name, ct_err *err);
CT_RESULT snp_signer_vek_load(const char *dir, const char *name, snp_signer_vek **out, ct_err *err);
void snp_signer_vek_free(snp_signer_vek *v);

/* A good report for `v`: version 3 with `gen`'s CPUID, policy 0x30000 (SMT allowed, no debug),
 * VMPL 0, the VEK's chip id and TCB. */
void snp_signer_report_defaults(const snp_signer_vek *v, snp_gen gen, snp_signer_report_opts *o);
/* The raw 1184-byte report, signed by v. */
CT_RESULT snp_signer_report(const snp_signer_vek *v, snp_gen gen, const snp_signer_report_opts *o,
                            uint8_t raw[SNP_REPORT_SIZE], ct_err *err);
/* Precomputed ECDSA nonces for one VEK, for a load generator that must not spend a full P-384
 * signature per report on the machine it measures: each (r, k^-1 mod n) pair is computed ahead
 * (on `threads` threads) and signs exactly once; the signature is the same ECDSA P-384/SHA-384
 * over the same bytes as snp_signer_report's. The pool keeps a pointer to `v`. */
#define SNP_SIGNER_NONCES_MAX (1u << 20)
typedef struct snp_signer_nonces snp_signer_nonces;
CT_RESULT snp_signer_nonces_new(const snp_signer_vek *v, size_t count, unsigned threads, snp_signer_nonces **out,
                                ct_err *err);
/* Wipes the unused pairs and the private scalar. */
void snp_signer_nonces_free(snp_signer_nonces *p);
size_t snp_signer_nonces_left(const snp_signer_nonces *p);
/* snp_signer_report signed with the next unused pair of `pool` (*precomputed = true), or, once
 * the pool is spent (or pool is NULL), with an ordinary signature. Safe from several threads. */
CT_RESULT snp_signer_report_pooled(const snp_signer_vek *v, snp_signer_nonces *pool, snp_gen gen,
                                   const snp_signer_report_opts *o, uint8_t raw[SNP_REPORT_SIZE], bool *precomputed,
                                   ct_err *err);

/* Trustee's SNP evidence {"attestation_report": serde form, "cert_chain": [VCEK|VLEK] or null}. */
CT_RESULT snp_signer_evidence(const snp_signer_vek *v, const uint8_t raw[SNP_REPORT_SIZE], bool with_chain,
                              json_t **out, ct_err *err);

#endif
