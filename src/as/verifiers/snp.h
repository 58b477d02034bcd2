/*
 * snp.h - AMD SEV-SNP attestation reports and their endorsement keys, shared by the `snp` and
 * `az-snp-vtpm` verifiers.
 *
 * A report is 1184 bytes (SEV-SNP Firmware ABI, ATTESTATION_REPORT, versions 2 to 5); its
 * signature (ECDSA P-384 / SHA-384, r and s as 72-byte little-endian fields at 0x2A0) covers
 * bytes 0x000-0x29F. The key that signs it is a VCEK (chip- and TCB-specific, signed by the
 * ASK) or a VLEK (signed by the ASVK); ASK and ASVK are signed by the ARK of the processor
 * generation. The ARKs, ASKs and ASVKs of Milan, Genoa and Turin are pinned in amd_roots.c.
 *
 * snp_ctx holds the pinned roots, the VCEK sources (offline store, AMD KDS with an on-disk
 * cache) and a cache of verified endorsement keys keyed by the SHA-256 of their DER, so that a
 * repeated VCEK costs one hash instead of a chain verification. It is safe to use from several
 * threads at once.
 */
#ifndef SNP_H
#define SNP_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "as_verifier.h"
#include "ct_status.h"

#define SNP_REPORT_SIZE 1184
#define SNP_SIGNED_LEN 0x2A0
#define SNP_SIG_OFFSET 0x2A0
#define SNP_REPORT_VERSION_MIN 2
#define SNP_REPORT_VERSION_MAX 5

extern const char snp_amd_roots_milan_pem[];
extern const char snp_amd_roots_genoa_pem[];
extern const char snp_amd_roots_turin_pem[];

typedef enum snp_gen {
  SNP_GEN_UNKNOWN = 0,
  SNP_GEN_MILAN,
  SNP_GEN_GENOA,
  SNP_GEN_TURIN,
} snp_gen;

/* "Milan", "Genoa", "Turin" (KDS product names), or "unknown". */
const char *snp_gen_name(snp_gen g);

/* A TCB_VERSION. `has_fmc` only for Turin, whose layout differs. */
typedef struct snp_tcb {
  uint8_t bootloader, tee, snp, microcode, fmc;
  bool has_fmc;
} snp_tcb;

/* A parsed report. `raw` is the exact 1184-byte form; the pointers point into it. */
typedef struct snp_report {
  uint8_t raw[SNP_REPORT_SIZE];
  uint32_t version, guest_svn, vmpl, sig_algo;
  uint64_t policy, plat_info;
  bool has_cpuid; /* version >= 3 */
  uint8_t cpuid_fam, cpuid_mod, cpuid_step;
  snp_gen gen; /* from CPUID; SNP_GEN_UNKNOWN for a v2 report until a VEK names it */
  snp_tcb reported_tcb;
} snp_report;

#define SNP_OFF_REPORT_DATA 0x50
#define SNP_OFF_MEASUREMENT 0x90
#define SNP_OFF_HOST_DATA 0xC0
#define SNP_OFF_CHIP_ID 0x1A0

/* Parses the raw 1184-byte form. Checks the size and version range and, for v3+, the CPUID
 * generation; verifies nothing cryptographic. */
CT_RESULT snp_report_parse(const uint8_t *buf, size_t len, snp_report *out, ct_err *err);

/* Rebuilds the raw form from the serde JSON form of the `sev` crate's AttestationReport
 * (integers; byte arrays as JSON integer arrays; signature {r,s}), as Trustee's SNP evidence
 * carries it, then parses it. A JSON string is taken as standard base64 of the raw form. */
CT_RESULT snp_report_from_json(const json_t *j, snp_report *out, ct_err *err);

/* The generation from the family/model of a v3+ report (SNP_GEN_UNKNOWN if not recognised). */
snp_gen snp_gen_from_cpuid(uint8_t family, uint8_t model);

/* Re-decodes reported_tcb for generation `g` (Turin has its own layout). */
void snp_report_set_gen(snp_report *r, snp_gen g);

/* Trustee's offline-store file prefix, e.g. "bl02_tee00_snp06_ucode21" or, with an FMC SPL,
 * "bl03_tee01_snp08_ucode15_fmc05". `out` must hold 48 bytes. */
void snp_tcb_prefix(const snp_tcb *t, char *out, size_t cap);

/* ------------------------------------------------------------------------------------------ */

typedef enum snp_vek_type { SNP_VEK_ANY = 0, SNP_VEK_VCEK, SNP_VEK_VLEK } snp_vek_type;

/* What a verified endorsement key certifies. */
typedef struct snp_vek_info {
  snp_vek_type type;
  snp_gen gen;
  uint8_t hwid[64];
  size_t hwid_len; /* 0 when the certificate carries no hwID (VLEK) */
  snp_tcb tcb;     /* the SPL extensions */
} snp_vek_info;

typedef struct snp_ctx snp_ctx;

/* Loads the pinned roots and copies the VCEK-source settings of `cfg` (may be NULL).
 * Caller frees with snp_ctx_free. */
CT_RESULT snp_ctx_new(const as_verifier_config *cfg, snp_ctx **out, ct_err *err);
void snp_ctx_free(snp_ctx *ctx);

/* Verifies a VEK certificate (DER) up to the pinned ARK of `gen` (SNP_GEN_UNKNOWN: the
 * generation named by the certificate's issuer), via ASK (VCEK) or ASVK (VLEK); `want` may
 * demand a type. `extra` (may be NULL) are DER intermediates from the evidence (ASK/ARK),
 * used only as untrusted path candidates; an ARK there must be the pinned one.
 * On success *pkey is a new reference to the VEK's public key (caller frees with
 * EVP_PKEY_free) and *info describes the certificate. Results are cached by DER hash. */
typedef struct snp_der {
  const uint8_t *der;
  size_t len;
} snp_der;
CT_RESULT snp_vek_verify(snp_ctx *ctx, const uint8_t *der, size_t len, snp_gen gen,
                         snp_vek_type want, const snp_der *extra, size_t n_extra, EVP_PKEY **pkey,
                         snp_vek_info *info, ct_err *err);

/* Upstream's rule for a cert_chain that carries CA certificates: an ARK entry must be AMD's
 * pinned ARK of `gen`; an ASK entry must be signed by that ARK and must itself sign the VEK
 * (`vek`, DER). A chain whose ASK does not verify is refused even when the pinned ASK would
 * have verified the VEK: the evidence is internally inconsistent. */
CT_RESULT snp_vek_check_supplied_ca(snp_ctx *ctx, snp_gen gen, const uint8_t *vek, size_t vek_len,
                                    const snp_der *ca, bool is_ark, ct_err *err);

/* Reads the hwID and SPL extensions of a VEK certificate without verifying its chain (for
 * diagnostics and tests); `gen` selects whether an FMC SPL is expected (Turin). */
CT_RESULT snp_vek_inspect(snp_ctx *ctx, const uint8_t *der, size_t len, snp_gen gen,
                          snp_vek_info *info, ct_err *err);

/* Finds the VCEK for a report in the configured offline store, then the on-disk KDS cache,
 * then AMD KDS (fetching, with backoff on HTTP 429, and caching it). *der is malloc'd (caller
 * frees). CT_ENOTFOUND when no source has it or none is configured. */
CT_RESULT snp_vcek_find(snp_ctx *ctx, const snp_report *r, snp_gen gen, uint8_t **der,
                        size_t *len, ct_err *err);

/* Checks that `info` matches the report (hwID = CHIP_ID for a VCEK unless CHIP_ID is masked;
 * the four SPLs, and FMC on Turin, = REPORTED_TCB), then the report signature with `pkey`. */
CT_RESULT snp_report_verify_signature(const snp_report *r, const snp_vek_info *info,
                                      EVP_PKEY *pkey, ct_err *err);

/* Trustee's regularize_data: zero-pad or truncate `in` to `len` bytes into `out`. */
void snp_regularize(const uint8_t *in, size_t in_len, uint8_t *out, size_t len);

/* Guest-policy and platform-info bits as Trustee names them. */
static inline unsigned snp_policy_abi_minor(uint64_t p) { return (unsigned)(p & 0xff); }
static inline unsigned snp_policy_abi_major(uint64_t p) { return (unsigned)((p >> 8) & 0xff); }
static inline bool snp_policy_smt(uint64_t p) { return (p >> 16) & 1; }
static inline bool snp_policy_migrate_ma(uint64_t p) { return (p >> 18) & 1; }
static inline bool snp_policy_debug(uint64_t p) { return (p >> 19) & 1; }
static inline bool snp_policy_single_socket(uint64_t p) { return (p >> 20) & 1; }
static inline bool snp_plat_smt_enabled(uint64_t p) { return p & 1; }
static inline bool snp_plat_tsme_enabled(uint64_t p) { return (p >> 1) & 1; }

#endif
