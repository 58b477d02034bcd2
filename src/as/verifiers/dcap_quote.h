/*
 * dcap_quote.h - Intel DCAP quote (v4/v5, ECDSA-256 attestation key) parsing and the signature
 * chain check: quote -> attestation key -> QE report -> PCK certificate -> Intel SGX Root CA.
 *
 * The parser is bounded and copies nothing: every pointer in dcap_quote points into the caller's
 * buffer, which must outlive it.
 */
#ifndef DCAP_QUOTE_H
#define DCAP_QUOTE_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

#define DCAP_QUOTE_MAX_BYTES (64u << 10)
#define DCAP_HEADER_LEN 48u
#define DCAP_TDX10_BODY_LEN 584u
#define DCAP_TDX15_BODY_LEN 648u
#define DCAP_QE_REPORT_LEN 384u
#define DCAP_TEE_TDX 0x81u

/* Offsets inside a TD report body (TDX 1.0; 1.5 appends tee_tcb_svn2 and mr_servicetd). */
enum {
  DCAP_TD_TEE_TCB_SVN = 0, DCAP_TD_MR_SEAM = 16, DCAP_TD_MRSIGNER_SEAM = 64,
  DCAP_TD_SEAM_ATTRIBUTES = 112, DCAP_TD_TD_ATTRIBUTES = 120, DCAP_TD_XFAM = 128,
  DCAP_TD_MR_TD = 136, DCAP_TD_MR_CONFIG_ID = 184, DCAP_TD_MR_OWNER = 232,
  DCAP_TD_MR_OWNER_CONFIG = 280, DCAP_TD_RTMR0 = 328, DCAP_TD_REPORT_DATA = 520,
  DCAP_TD_TEE_TCB_SVN2 = 584, DCAP_TD_MR_SERVICETD = 600,
};

/* Offsets inside the SGX report body of the QE report. */
enum {
  DCAP_QE_CPUSVN = 0, DCAP_QE_MISCSELECT = 16, DCAP_QE_ATTRIBUTES = 48, DCAP_QE_MRENCLAVE = 64,
  DCAP_QE_MRSIGNER = 128, DCAP_QE_ISVPRODID = 256, DCAP_QE_ISVSVN = 258, DCAP_QE_REPORT_DATA = 320,
};

typedef struct dcap_quote {
  const uint8_t *raw;
  size_t len;
  uint16_t version;      /* 4 or 5 */
  uint16_t att_key_type; /* 2 = ECDSA-256-with-P-256 */
  uint32_t tee_type;     /* 0x81 = TDX */
  const uint8_t *header; /* 48 bytes */
  uint16_t body_type;    /* v5: 2 = TDX 1.0, 3 = TDX 1.5; v4: 2 */
  uint32_t body_size;
  const uint8_t *v5_type_size; /* v5: the 6 bytes (u16 type, u32 size) after the header */
  const uint8_t *body;
  size_t signed_len;           /* header .. end of body: what the attestation key signed */
  const uint8_t *signature;    /* 64: r || s big-endian */
  const uint8_t *att_key;      /* 64: x || y */
  const uint8_t *qe_report;    /* 384 */
  const uint8_t *qe_report_sig;/* 64 */
  const uint8_t *qe_auth;
  size_t qe_auth_len;
  const uint8_t *pck_chain;    /* certification data type 5: PEM chain, leaf first */
  size_t pck_chain_len;
} dcap_quote;

CT_RESULT dcap_quote_parse(const uint8_t *data, size_t len, dcap_quote *q, ct_err *err);

/* The PCK platform identity read from the PCK certificate's SGX extension
 * (OID 1.2.840.113741.1.13.1). */
typedef struct dcap_pck_info {
  uint8_t ppid[16];
  uint8_t cpusvn[16];   /* the 16 SGX TCB component SVNs (…13.1.2.1 – .2.16) */
  uint16_t pcesvn;
  uint8_t pceid[2];
  uint8_t fmspc[6];
  int sgx_type;         /* 0 standard, 1 scalable, 2 scalable with integrity */
  bool has_instance_id;
  uint8_t platform_instance_id[16];
  bool has_config;
  bool dynamic_platform, cached_keys, smt_enabled;
  bool platform_ca;     /* issued by the "Platform" CA (else "Processor") */
} dcap_pck_info;

/* Loads the PEM chain from certification data (leaf first). At most 8 certs. Caller frees the
 * stack with sk_X509_pop_free(chain, X509_free). */
CT_RESULT dcap_pck_chain_load(const dcap_quote *q, STACK_OF(X509) **chain, ct_err *err);

/* Reads the SGX extension of a PCK certificate. */
CT_RESULT dcap_pck_info_read(X509 *pck, dcap_pck_info *info, ct_err *err);

/* Verifies the chain (leaf first) to the pinned Intel SGX Root CA, with optional CRLs (may be
 * NULL). `at` = 0 means now. */
CT_RESULT dcap_verify_chain(STACK_OF(X509) *chain, STACK_OF(X509_CRL) *crls, time_t at, ct_err *err);
/* The same with an already loaded trust anchor. */
CT_RESULT dcap_verify_chain_to(STACK_OF(X509) *chain, X509 *root, STACK_OF(X509_CRL) *crls,
                               time_t at, ct_err *err);

/* The pinned Intel SGX Root CA (a new reference; caller frees with X509_free). */
CT_RESULT dcap_intel_root(X509 **out, ct_err *err);

/* The signature checks of the quote: QE report signed by the PCK key, QE report data binding
 * the attestation key and QE authentication data, and the quote signed by the attestation key. */
CT_RESULT dcap_verify_signatures(const dcap_quote *q, X509 *pck, ct_err *err);
/* The same with the PCK public key. */
CT_RESULT dcap_verify_signatures_key(const dcap_quote *q, EVP_PKEY *pck_key, ct_err *err);

/* ECDSA P-256/SHA-256 check of a raw r||s (big-endian, 64 bytes) signature. */
CT_RESULT dcap_ecdsa_p256_verify(EVP_PKEY *key, const uint8_t *msg, size_t msg_len,
                                 const uint8_t sig[64], const char *what, ct_err *err);

#endif
