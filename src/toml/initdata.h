/*
 * initdata.h - the Confidential Containers init-data document (trustee kbs/docs/initdata.md).
 *
 *   version = "0.1.0"
 *   algorithm = "sha256" | "sha384" | "sha512"
 *   [data]
 *   "aa.toml" = '''...'''   "cdh.toml" = '''...'''   "policy.rego" = '''...'''   (name -> string)
 *
 * The digest is `algorithm` applied to the raw bytes of the TOML text, exactly as Trustee's AS
 * (parse_init_data), the attestation agent and the kata agent compute it. As in Trustee, any
 * version string is accepted and members other than version/algorithm/data are ignored.
 */
#ifndef INITDATA_H
#define INITDATA_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

/* Largest init-data document accepted (compressed or not). */
#define INITDATA_MAX_SIZE (1u << 20)

typedef struct initdata {
  char *version;
  char *algorithm;
  json_t *data;         /* object: name -> string, as in the TOML [data] table */
  uint8_t digest[64];   /* algorithm(raw TOML bytes) */
  size_t digest_len;    /* 32, 48 or 64 */
} initdata;

/* Parses and digests an init-data document of at most INITDATA_MAX_SIZE bytes. On success *out
 * is owned by the caller, who frees it with initdata_free. Errors: TOML syntax (with line and
 * column), missing or mistyped version/algorithm/data, a non-string data value, or an algorithm
 * other than sha256/sha384/sha512. */
CT_RESULT initdata_parse(const char *toml_text, size_t len, initdata **out, ct_err *err);
void initdata_free(initdata *d);

/* The claims Trustee's AS derives from init-data (attestation-service parse_init_data): the data
 * map, where "cdh.toml" and "aa.toml" are replaced by their parsed JSON objects when they parse
 * as TOML, and "policy.rego" is replaced by "agent_policy_claims" = the JSON value that starts at
 * the '{' of the first `policy_data := {` and runs to the end of the policy text, when that parses
 * as JSON. Entries that do not parse stay as their strings, as upstream does. *claims is a new
 * reference the caller releases with json_decref. */
CT_RESULT initdata_claims(const initdata *d, json_t **claims, ct_err *err);

/* Fits a digest to a TEE field of out_len bytes: truncates, or copies and zero-pads. SNP
 * HOST_DATA: 32, TDX MRCONFIGID: 48, Trustee's verifier regularize_data: 64. */
void initdata_regularize(const uint8_t *digest, size_t digest_len, uint8_t *out, size_t out_len);

/* The vTPM PCR8 value after one extend of an all-zero PCR: sha256(32 zero bytes || digest).
 * The digest must be 32 bytes (algorithm "sha256"); anything else is CT_EINVAL. */
CT_RESULT initdata_pcr8(const uint8_t *digest, size_t digest_len, uint8_t out[32], ct_err *err);

/* Decodes the pod annotation io.katacontainers.config.hypervisor.cc_init_data: standard base64
 * (surrounding whitespace ignored) of a gzip stream holding the TOML. The decompressed text is
 * capped at INITDATA_MAX_SIZE. On success *out is a malloc'd NUL-terminated buffer of *out_len
 * bytes (the raw TOML, whose digest is the init-data digest); the caller frees it. */
CT_RESULT initdata_decode_annotation(const char *b64, char **out, size_t *out_len, ct_err *err);

/* The inverse: gzip (one member, no file name, mtime 0, maximum compression) of the TOML text,
 * then standard base64 on one line, as `gzip | base64 -w0` makes it for the pod annotation.
 * *out is a malloc'd NUL-terminated string the caller frees. */
CT_RESULT initdata_encode_annotation(const char *toml_text, size_t len, char **out, ct_err *err);

#endif
