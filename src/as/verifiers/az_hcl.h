/*
 * az_hcl.h - the Azure paravisor (HCL) attestation report, shared by the az-snp-vtpm and
 * az-tdx-vtpm verifiers.
 *
 * Layout (kinvolk/azure-cvm-tooling, az-cvm-vtpm hcl): a 32-byte header (u32 signature "HCLA",
 * version, report_size, request_type, status, 3 reserved), then a 1184-byte hardware-report area
 * (an SNP report of 1184 bytes, or a TDX TD report in its first 1024), then IGVM request data
 * (u32 data_size, version, report_type (2 SNP, 4 TDX), report_data_hash_type (1 SHA-256),
 * variable_data_size) followed by the variable data: JSON with the vTPM keys as JWKs
 * ({"keys":[{"kid":"HCLAkPub","kty":"RSA","n":..,"e":..},..], "vm-configuration":{..},
 * "user-data":"<hex>"}). SHA-256 of the variable data is the first 32 bytes of the hardware
 * report's REPORT_DATA. Integers are little-endian.
 */
#ifndef AZ_HCL_H
#define AZ_HCL_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

#define AZ_HCL_HEADER_SIZE 32
#define AZ_HCL_HW_AREA_SIZE 1184
#define AZ_HCL_TD_REPORT_SIZE 1024
#define AZ_HCL_IGVM_OFFSET (AZ_HCL_HEADER_SIZE + AZ_HCL_HW_AREA_SIZE)
#define AZ_HCL_VAR_DATA_OFFSET (AZ_HCL_IGVM_OFFSET + 20)
#define AZ_HCL_VAR_DATA_MAX (64u << 10)
#define AZ_HCL_REPORT_TYPE_SNP 2
#define AZ_HCL_REPORT_TYPE_TDX 4

/* A parsed HCL report. The pointers point into the caller's buffer. */
typedef struct az_hcl_report {
  uint32_t report_type;
  const uint8_t *hw_report; /* the SNP report (1184) or the TD report (1024) */
  size_t hw_report_len;
  const uint8_t *var_data;
  size_t var_data_len;
  uint8_t var_data_sha256[32];
} az_hcl_report;

/* Parses and bounds-checks the layout; requires the SHA-256 report-data hash type. */
CT_RESULT az_hcl_parse(const uint8_t *buf, size_t len, az_hcl_report *out, ct_err *err);

/* Parses the variable data as strict JSON (caller json_decref's *out). */
CT_RESULT az_hcl_var_data_json(const az_hcl_report *h, json_t **out, ct_err *err);

/* The vTPM attestation key: the RSA JWK with kid "HCLAkPub" in the variable data.
 * Caller frees with EVP_PKEY_free. */
CT_RESULT az_hcl_ak_pub(const json_t *var_data, EVP_PKEY **out, ct_err *err);

/* The hex-decoded "user-data" member of the variable data (caller frees *out). */
CT_RESULT az_hcl_user_data(const json_t *var_data, uint8_t **out, size_t *len, ct_err *err);

#endif
