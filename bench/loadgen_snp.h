/*
 * loadgen_snp.h - the load generator's synthetic-SNP mode: TEST-ONLY roots and one VCEK per
 * simulated chip (tests/attack/snp_signer), a fresh P-384-signed report per handshake with the
 * right report_data, so that the KBS runs the real SNP path at its real cost. The KBS must be
 * configured with [attestation_service.verifier_config.snp_verifier] insecure_test_only_roots =
 * "<dir>/roots.pem".
 */
#ifndef LOADGEN_SNP_H
#define LOADGEN_SNP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct loadgen_snp loadgen_snp;

/* Makes dir/roots.pem and `chips` VCEKs (chip0..chipN-1) with distinct chip ids. 0 on success. */
int loadgen_snp_init(const char *dir, int chips);
/* Loads what loadgen_snp_init made; NULL (after a message on stderr) on failure. */
loadgen_snp *loadgen_snp_open(const char *dir);
void loadgen_snp_close(loadgen_snp *s);
/* Precomputes `total` report-signature nonces (loadgen_snp.c), shared among the chips as
 * `clients` clients use them, on `threads` threads. Reports beyond them are signed the ordinary
 * way and counted as fallbacks. 0 on success. */
int loadgen_snp_presign(loadgen_snp *s, unsigned clients, size_t total, unsigned threads);
/* Reports signed so far with a precomputed nonce, and without one. */
void loadgen_snp_counts(loadgen_snp *s, unsigned long *precomputed, unsigned long *fallback);
/* The /attest body for client `client` (its chip is client % chips): runtime-data with `nonce`
 * and `teekey`, and SNP evidence signed over report_data `rd`. malloc'd text, NULL on failure. */
char *loadgen_snp_attest_body(loadgen_snp *s, unsigned client, const char *nonce, const json_t *teekey,
                              const uint8_t rd[48]);

#endif
