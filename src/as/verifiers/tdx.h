/*
 * tdx.h - internals of the tdx verifier shared with az-tdx-vtpm, tests, fuzzers and benchmarks.
 */
#ifndef TDX_H
#define TDX_H

#include <jansson.h>
#include <time.h>

#include "as_verifier.h"
#include "ccel.h"
#include "dcap_collateral.h"
#include "dcap_quote.h"

/* Trustee's parsed claims for a quote (and optional event log and PCK identity):
 * quote.header/body (hex), quote.type/size for v5, td_attributes, uefi_event_logs,
 * report_data, init_data, platform_instance_id. New reference in *out. */
CT_RESULT tdx_claims_build(const dcap_quote *q, const ccel_log *log, const dcap_pck_info *pck,
                           json_t **out, ct_err *err);

/* Per-instance state of the tdx verifier. */
typedef struct tdx_state tdx_state;

/* `collateral_root_pem` (may be NULL = the pinned Intel SGX Root CA) is the trust anchor for the
 * TCB Info / QE Identity signing chains; tests pass their own. `now` = 0 means the clock. */
CT_RESULT tdx_state_new(const as_verifier_config *cfg, const char *collateral_root_pem, time_t now,
                        tdx_state **out, ct_err *err);
void tdx_state_free(tdx_state *st);

/* Full quote verification (signatures, chain, collateral/TCB, report data, MRCONFIGID), without
 * the event log. On success *claims holds the quote claims plus the DCAP supplemental claims,
 * and *q_out (optional) the parsed quote pointing into `quote`. */
CT_RESULT tdx_verify_quote(tdx_state *st, const uint8_t *quote, size_t quote_len,
                           const uint8_t *report_data, size_t report_data_len,
                           const uint8_t *init_data, size_t init_data_len, const ccel_log *log,
                           dcap_quote *q_out, json_t **claims, ct_err *err);

#endif
