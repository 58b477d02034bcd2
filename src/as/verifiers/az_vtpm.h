/*
 * az_vtpm.h - the vTPM checks shared by the Azure confidential VM verifiers (az-snp-vtpm and
 * az-tdx-vtpm): quote members, the nonce, the init-data PCR and the `tpm` claims. `tee` names the
 * verifier in every message.
 */
#ifndef AZ_VTPM_H
#define AZ_VTPM_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"
#include "tpm_quote.h"

/* Trustee binds init-data into PCR8: SHA-256(32 zero bytes || init-data digest). */
#define AZ_VTPM_INITDATA_PCR 8

/* Decodes tpm_quote.<k>, a hex string of at most `max` bytes (caller frees *out). */
CT_RESULT az_vtpm_hex_member(const char *tee, const json_t *o, const char *k, size_t max, uint8_t **out,
                             size_t *len, ct_err *err);
/* Decodes `a`, serde's default form of Vec<u8> (a JSON array of byte values) of at most `max`
 * bytes, as the legacy (v0) evidence carries its byte fields (caller frees *out). */
CT_RESULT az_vtpm_int_bytes(const char *tee, const json_t *a, const char *what, size_t max, uint8_t **out,
                            size_t *len, ct_err *err);
/* The quote's extraData must be this session's report data, byte for byte. */
CT_RESULT az_vtpm_check_nonce(const char *tee, const tpm_attest *a, const uint8_t *report_data, size_t len,
                              ct_err *err);
/* The quoted value of PCR `index`, or NULL when the quote does not cover it. */
const uint8_t *az_vtpm_pcr(const uint8_t (*pcrs)[32], const unsigned *pcr_no, size_t n, unsigned index);
/* With an init-data digest, PCR8 must equal SHA-256(0^32 || digest); without one, nothing to check. */
CT_RESULT az_vtpm_check_init_data(const char *tee, const uint8_t (*pcrs)[32], const unsigned *pcr_no, size_t n,
                                  const uint8_t *digest, size_t digest_len, ct_err *err);
/* Adds Trustee's vTPM claims to `claims`: "tpm" {pcrNN: hex}, "report_data" (hex of the quote
 * nonce) and, when the quote covers PCR8, "init_data" (its hex). */
CT_RESULT az_vtpm_claims(json_t *claims, const uint8_t (*pcrs)[32], const unsigned *pcr_no, size_t n,
                         const tpm_attest *a, ct_err *err);

#endif
