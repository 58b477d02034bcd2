/*
 * as_verifier.h - the interface every hardware-evidence verifier implements.
 *
 * A verifier checks that evidence is signed through the vendor's chain and bound to the
 * expected report data and init-data digest, then returns the claims Trustee's verifier of the
 * same name returns (same names, same value types), so that Trustee policies run unchanged.
 *
 * Each verifier lives in src/as/verifiers/<name>_verifier.c and defines
 *     const as_verifier as_verifier_<name>;
 * The build generates the registry from the file names, so adding a verifier touches no
 * shared file.
 */
#ifndef AS_VERIFIER_H
#define AS_VERIFIER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

/* Settings shared by all verifiers (the [attestation_service.verifier_config] section). Any
 * field may be NULL/0 when not configured. Strings are owned by the caller. */
typedef struct as_verifier_config {
  const char *snp_vcek_offline_dir;   /* Trustee OfflineStore layout */
  const char *snp_kds_base_url;       /* e.g. https://kdsintf.amd.com; NULL disables KDS */
  const char *snp_kds_cache_dir;      /* on-disk cache of fetched VCEKs */
  const char *tdx_collateral_dir;     /* air-gapped collateral: tcbInfo, QE identity, CRLs */
  const char *tdx_pccs_url;           /* PCS/PCCS base URL; NULL disables fetching */
  const char *tdx_collateral_cache_dir;
  const char *tpm_trusted_ak_keys_dir;/* directory of trusted AK public keys (PEM) */
  /* TESTS ONLY: a PEM file (ASK, ARK, ASVK) whose ARK replaces AMD's pinned ARK of the
   * generation its CN names; its subject must say TEST-ONLY. Evidence it endorses is forged by
   * construction (the attack suite and the synthetic-SNP load generator make it). */
  const char *snp_insecure_test_only_roots;
  /* Longest wait of a request for a fetch from AMD KDS or Intel PCS/PCCS it started (as_fetch.h):
   * 0 = AS_FETCH_DEFAULT_WAIT_MS (20 ms); beyond, the fetch goes on in the background and the
   * request gets a retryable error. */
  long remote_wait_ms;
} as_verifier_config;

/* What the attestation service asks a verifier to check. */
typedef struct as_verify_request {
  const char *tee;                    /* Trustee's Tee string, e.g. "az-snp-vtpm" */
  const json_t *evidence;             /* the evidence JSON exactly as the client sent it */
  const uint8_t *report_data;         /* expected report data; NULL = not provided */
  size_t report_data_len;
  const uint8_t *init_data_digest;    /* expected init-data digest; NULL = not provided */
  size_t init_data_digest_len;
} as_verify_request;

typedef struct as_verifier {
  const char *tee;       /* Trustee's Tee string this verifier serves */
  const char *tee_class; /* "cpu" for CPU TEEs, "gpu" for devices */
  /* Optional: builds per-instance state (pinned roots, caches). May be NULL. */
  CT_RESULT (*create)(const as_verifier_config *cfg, void **state, ct_err *err);
  /* Optional: releases what create built. */
  void (*destroy)(void *state);
  /* Verifies the evidence. On success *claims is a new JSON object (caller owns it). On
   * failure err says precisely which check failed (field, expected vs found). Must be safe to
   * call from several threads at once on the same state. */
  CT_RESULT (*verify)(void *state, const as_verify_request *req, json_t **claims, ct_err *err);
} as_verifier;

/* The verifier serving `tee`, or NULL when none is built in. */
const as_verifier *as_verifier_find(const char *tee);
/* All built-in verifiers; *count receives their number. */
const as_verifier *const *as_verifier_all(size_t *count);

#endif
