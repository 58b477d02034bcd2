/*
 * guest_tpm.h - the few TPM 2.0 operations the attesters need, behind a plain C interface.
 *
 * Implemented in guest_tpm.c with tss2-esys; this header deliberately includes no tss2 header
 * (libtss2 pulls in json-c, whose names clash with jansson).
 */
#ifndef GUEST_TPM_H
#define GUEST_TPM_H

#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

#define GUEST_TPM_PCRS 24
#define GUEST_TPM_NV_MAX 8192

typedef struct guest_tpm guest_tpm;

/* Opens a TPM through a tss2 TCTI configuration string ("device:/dev/tpmrm0",
 * "swtpm:host=127.0.0.1,port=2321"). Caller closes with guest_tpm_close. */
CT_RESULT guest_tpm_open(const char *tcti, guest_tpm **out, ct_err *err);
void guest_tpm_close(guest_tpm *t);

/* Reads the whole NV index (owner authorisation, empty password). Caller frees *out. */
CT_RESULT guest_tpm_nv_read(guest_tpm *t, uint32_t index, uint8_t **out, size_t *len, ct_err *err);
/* Writes `data` to an NV index, (re)defining it owner read/write with exactly `len` bytes. */
CT_RESULT guest_tpm_nv_write(guest_tpm *t, uint32_t index, const uint8_t *data, size_t len,
                             ct_err *err);

typedef struct guest_tpm_quote {
  uint8_t *message;    /* marshalled TPMS_ATTEST */
  size_t message_len;
  uint8_t *sig_raw;    /* the raw RSASSA signature bytes */
  size_t sig_raw_len;
  uint8_t *sig_marshalled; /* the marshalled TPMT_SIGNATURE */
  size_t sig_marshalled_len;
  uint8_t pcrs[GUEST_TPM_PCRS][32]; /* sha256 PCR0..23 read right after the quote */
} guest_tpm_quote;

/* TPM2_Quote over sha256 PCR0..23 with the persistent RSA AK `ak_handle`; `nonce` becomes
 * extraData. Caller releases with guest_tpm_quote_free. */
CT_RESULT guest_tpm_quote_pcrs(guest_tpm *t, uint32_t ak_handle, const uint8_t *nonce,
                               size_t nonce_len, guest_tpm_quote *q, ct_err *err);
void guest_tpm_quote_free(guest_tpm_quote *q);

/* The AK's public key as DER SubjectPublicKeyInfo. Caller frees *der. */
CT_RESULT guest_tpm_ak_spki(guest_tpm *t, uint32_t ak_handle, uint8_t **der, size_t *len,
                            ct_err *err);

CT_RESULT guest_tpm_pcr_read(guest_tpm *t, uint8_t pcrs[GUEST_TPM_PCRS][32], ct_err *err);
CT_RESULT guest_tpm_pcr_extend(guest_tpm *t, unsigned pcr, const uint8_t digest[32], ct_err *err);

#endif
