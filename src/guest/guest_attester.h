/*
 * guest_attester.h - hardware evidence collection inside a confidential guest.
 *
 * One entry point per TEE produces the evidence JSON exactly as upstream guest-components'
 * attesters do, so that an unmodified Trustee verifies it. Every device, sysfs and configfs
 * path is taken relative to `cfg->root` so that tests run against fixture trees; TPM access
 * goes through a tss2 TCTI string so that tests run against swtpm.
 */
#ifndef GUEST_ATTESTER_H
#define GUEST_ATTESTER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

typedef enum guest_tee {
  GUEST_TEE_NONE = 0,
  GUEST_TEE_SAMPLE,
  GUEST_TEE_SNP,
  GUEST_TEE_TDX,
  GUEST_TEE_AZ_SNP_VTPM,
  GUEST_TEE_AZ_TDX_VTPM,
  GUEST_TEE_TPM,
} guest_tee;

#define GUEST_REPORT_DATA_MAX 64
#define GUEST_TPM_AK_DEFAULT 0x81010002u
/* Bytes of report data the generic TPM attester binds in the quote nonce (upstream's size). */
#define GUEST_TPM_REPORT_DATA 32
#define GUEST_AZ_AK_HANDLE 0x81000003u
#define GUEST_AZ_HCL_NV 0x01400001u
#define GUEST_AZ_REPORT_DATA_NV 0x01400002u

typedef struct guest_cfg {
  /* Prefix for every absolute device/sysfs/configfs path; "" or NULL means the real system. */
  const char *root;
  /* tss2 TCTI configuration ("device:/dev/tpmrm0", "swtpm:host=127.0.0.1,port=2321").
   * NULL: the first of /dev/tpmrm0, /dev/tpm0..2 under root (or AA_TPM_DEVICE for `tpm`). */
  const char *tpm_tcti;
  /* Generic TPM attester AK handle; 0 means AA_TPM_AK_HANDLE or GUEST_TPM_AK_DEFAULT. */
  uint32_t tpm_ak_handle;
  /* Azure IMDS base URL; NULL means http://169.254.169.254. */
  const char *imds_url;
  /* Paravisor delay between writing report data and reading the HCL report; <0: 3000 ms. */
  int az_report_delay_ms;
  /* Fixed configfs TSM entry name (tests pre-populate it); NULL: a fresh random name. */
  const char *tsm_entry;
  /* The AA runtime event log (AAEL); NULL: runtime measurements are not enabled. TDX evidence
   * appends it to the CC event log. Not prefixed with `root`. */
  const char *eventlog_path;
} guest_cfg;

/* "sample", "snp", ... as spelt in kbs-types; NULL for GUEST_TEE_NONE. */
const char *guest_tee_name(guest_tee tee);
CT_RESULT guest_tee_parse(const char *name, guest_tee *out, ct_err *err);

/* Detects the platform in upstream's order (tdx, az-tdx-vtpm, az-snp-vtpm, snp, tpm). Never
 * returns sample: without hardware this fails with CT_ENOTFOUND listing what was probed. */
CT_RESULT guest_tee_detect(const guest_cfg *cfg, guest_tee *out, ct_err *err);

/* Collects evidence binding `report_data` (at most 64 bytes; each TEE pads or truncates it to
 * its hardware field as upstream does). *evidence is a new reference (caller json_decref). */
CT_RESULT guest_get_evidence(const guest_cfg *cfg, guest_tee tee, const uint8_t *report_data,
                             size_t report_data_len, json_t **evidence, ct_err *err);

/* Binds the init-data digest to the TEE: SNP compares HOST_DATA, TDX compares MRCONFIGID,
 * TPM-based TEEs extend sha256 PCR8 (digest must be 32 bytes; the caller extends once),
 * sample accepts anything. A mismatch is CT_EDENIED. */
CT_RESULT guest_bind_init_data(const guest_cfg *cfg, guest_tee tee, const uint8_t *digest,
                               size_t digest_len, ct_err *err);

/* Records a runtime measurement as upstream's attestation agent does: one TCG2 EV_EVENT_TAG
 * entry holding the tagged event {"AAEL", len, "domain operation content"} is appended to
 * cfg->eventlog_path, then its digest (sha384 on TDX, sha256 on TPMs) is extended into the
 * register for `pcr` (TDX: RTMR by the PCR map, written to the sysfs rtmr<N>:sha384 file; TPMs:
 * the sha256 PCR itself). Domain and operation are single words; no part holds a newline.
 * CT_EUNSUPPORTED for TEEs without runtime registers (sample, snp). */
#define GUEST_AAEL_FIELD_MAX 4096
CT_RESULT guest_runtime_measure(const guest_cfg *cfg, guest_tee tee, unsigned pcr,
                                const char *domain, const char *operation, const char *content,
                                ct_err *err);

/* --- per-TEE pieces, exposed for tests and fuzzing ------------------------------------- */

#define GUEST_SNP_REPORT_SIZE 1184

/* Converts a raw 1184-byte SNP attestation report into the serde form of sev's
 * AttestationReport (byte arrays as integer arrays, signature {r,s}). */
CT_RESULT guest_snp_report_to_json(const uint8_t *report, size_t len, json_t **out, ct_err *err);
/* Parses an SNP extended-report certificate table (GUID, offset, length entries ending with a
 * zero entry) into sev's CertTableEntry serde form: [{"cert_type":"VCEK","data":[..]}, ...]. */
CT_RESULT guest_snp_cert_table_to_json(const uint8_t *table, size_t len, json_t **out, ct_err *err);

/* Reads one configfs-tsm report: checks `provider` (e.g. "tdx_guest"), optionally writes
 * `privlevel`, writes `inblob`, reads `outblob` (and `auxblob` when aux != NULL) and requires
 * `generation` <= 1. Caller frees *out and *aux with free(). */
CT_RESULT guest_tsm_report(const guest_cfg *cfg, const char *provider, int privlevel,
                           const uint8_t *inblob, size_t inlen, uint8_t **out, size_t *out_len,
                           uint8_t **aux, size_t *aux_len, ct_err *err);

/* HCL report (Azure paravisor) helpers: report type (2 SNP, 4 TDX), the embedded hardware report
 * and the VarData section. Pointers refer into `hcl`. */
#define GUEST_HCL_TYPE_SNP 2u
#define GUEST_HCL_TYPE_TDX 4u
CT_RESULT guest_hcl_parse(const uint8_t *hcl, size_t len, uint32_t *report_type,
                          const uint8_t **hw_report, size_t *hw_len, const uint8_t **var_data,
                          size_t *var_len, ct_err *err);

/* Length of a CCEL table up to its end marker (upstream trim_ccel). */
CT_RESULT guest_tdx_trim_ccel(const uint8_t *ccel, size_t len, size_t *out, ct_err *err);

/* Joins cfg->root and an absolute path into buf. */
CT_RESULT guest_path(const guest_cfg *cfg, const char *abs, char *buf, size_t cap, ct_err *err);

#endif
