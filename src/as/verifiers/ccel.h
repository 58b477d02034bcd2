/*
 * ccel.h - Confidential Computing Event Log (TCG2 crypto-agile format) parser and replay.
 *
 * Parses the raw event log area (as exposed by the ACPI CCEL table, or a TPM event log) the way
 * Trustee's `eventlog` crate does: the first event must be the TCG_EfiSpecIdEvent, which gives
 * the digest size of every algorithm; parsing stops at an all-0xFF or all-0x00 header. Each event
 * is rendered with the crate's JSON shape (`details`, `digest_matches_event`, `digests`, `event`,
 * `index`, `type_name`) and can be replayed into a measurement register value.
 */
#ifndef CCEL_H
#define CCEL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

#define CCEL_MAX_EVENTS 65536u        /* more events than any real boot produces */
#define CCEL_MAX_DIGESTS_PER_EVENT 8u /* one per bank; real logs carry 1-3 */
#define CCEL_MAX_LOG_BYTES (16u << 20)

/* TCG algorithm identifiers (TPM_ALG_ID) the parser knows. */
enum {
  CCEL_ALG_SHA1 = 0x0004,
  CCEL_ALG_SHA256 = 0x000B,
  CCEL_ALG_SHA384 = 0x000C,
  CCEL_ALG_SHA512 = 0x000D,
  CCEL_ALG_SM3 = 0x0012,
};

typedef struct ccel_digest {
  uint16_t alg;
  uint16_t len;
  const uint8_t *value; /* points into the log's own copy of the input */
} ccel_digest;

typedef struct ccel_event {
  uint32_t index; /* CC measurement register index (TDX: RTMR[n] is index n+1) */
  uint32_t type;
  const uint8_t *data;
  size_t data_len;
  size_t ndigests;
  ccel_digest digests[CCEL_MAX_DIGESTS_PER_EVENT];
  json_t *details; /* parsed event details, owned by the log */
} ccel_event;

typedef struct ccel_log {
  uint8_t *raw; /* private copy of the input */
  size_t raw_len;
  ccel_event *events;
  size_t count;
} ccel_log;

/* Parses `len` bytes. On success *out owns its memory (release with ccel_free); on failure *out
 * is left empty. */
CT_RESULT ccel_parse(const uint8_t *data, size_t len, ccel_log *out, ct_err *err);
void ccel_free(ccel_log *log);

/* The `uefi_event_logs` array (new reference). */
CT_RESULT ccel_to_json(const ccel_log *log, json_t **out, ct_err *err);

/* Replays every digest of algorithm `alg` for register `index`, starting from zeros:
 * mr = H(mr || digest). out must hold 64 bytes; *out_len receives the digest size. */
CT_RESULT ccel_replay(const ccel_log *log, uint32_t index, uint16_t alg, uint8_t out[64],
                      size_t *out_len, ct_err *err);

/* The TCG name of an event type ("EV_SEPARATOR"), or NULL when unknown. */
const char *ccel_event_type_name(uint32_t type);

#endif
