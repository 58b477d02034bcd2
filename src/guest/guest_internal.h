/*
 * guest_internal.h - per-TEE entry points shared between the files of src/guest.
 */
#ifndef GUEST_INTERNAL_H
#define GUEST_INTERNAL_H

#include <jansson.h>

#include "guest_attester.h"

CT_RESULT guest_sample_evidence(const uint8_t *rd, size_t len, json_t **ev, ct_err *err);
CT_RESULT guest_snp_evidence(const guest_cfg *cfg, const uint8_t *rd, size_t len, json_t **ev,
                             ct_err *err);
CT_RESULT guest_snp_get_report(const guest_cfg *cfg, const uint8_t rd[64], uint8_t report[1184],
                               uint8_t **certs, size_t *certs_len, ct_err *err);
CT_RESULT guest_snp_bind(const guest_cfg *cfg, const uint8_t *digest, size_t len, ct_err *err);
CT_RESULT guest_tdx_evidence(const guest_cfg *cfg, const uint8_t *rd, size_t len, json_t **ev,
                             ct_err *err);
CT_RESULT guest_tdx_eventlog(const guest_cfg *cfg, char **out, ct_err *err);
CT_RESULT guest_tdx_bind(const guest_cfg *cfg, const uint8_t *digest, size_t len, ct_err *err);
/* The TCTI for TPM-based attesters: cfg->tpm_tcti, else a device under cfg->root. `generic`
 * selects the generic TPM attester's rules (AA_TPM_DEVICE, /dev/tpm0..2). */
CT_RESULT guest_tpm_tcti(const guest_cfg *cfg, int generic, char *buf, size_t cap, ct_err *err);
/* Reads the HCL report type through the vTPM (for detection). */
CT_RESULT guest_az_probe(const guest_cfg *cfg, uint32_t *report_type, ct_err *err);
CT_RESULT guest_az_evidence(const guest_cfg *cfg, guest_tee tee, const uint8_t *rd, size_t len,
                            json_t **ev, ct_err *err);
CT_RESULT guest_tpm_evidence(const guest_cfg *cfg, const uint8_t *rd, size_t len, json_t **ev,
                             ct_err *err);
CT_RESULT guest_tpm_bind(const guest_cfg *cfg, guest_tee tee, const uint8_t *digest, size_t len,
                         ct_err *err);
/* URL-safe base64 with '=' padding (serde_with's UrlSafe). Caller frees. */
CT_RESULT guest_b64url_padded(const uint8_t *in, size_t len, char **out, ct_err *err);

#endif
