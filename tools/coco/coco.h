/*
 * coco.h - the pattern CLI: init-data, reference values and secrets for the Confidential
 * Containers pattern (docs/pattern.md). One file per verb family; this header holds what they share.
 */
#ifndef COCO_H
#define COCO_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <stdint.h>

#include "ct_status.h"

/* Largest input file any verb reads (init-data, policies, measurements, values-secret). */
#define COCO_FILE_MAX (4u << 20)

/* Reads a whole file (or standard input for "-") of at most `max` bytes, NUL-terminated. */
CT_RESULT coco_read(const char *path, size_t max, char **text, size_t *len, ct_err *err);
/* Writes to `path` atomically with `mode`, or to standard output when path is NULL or "-". */
CT_RESULT coco_write(const char *path, const void *data, size_t len, unsigned mode, ct_err *err);
/* Prints "coco: <what>: <err->msg>" and returns the exit status for a failure (1). */
int coco_fail(const char *what, const ct_err *err);
/* Option parsing: is argv[*i] the option `name`? Then *val is its value and *i advances.
 * A missing value prints a message and sets *bad. */
bool coco_opt(int argc, char **argv, int *i, const char *name, const char **val, bool *bad);

/* The pattern's reference values from a measurements document ({"measurements":{"sha256":
 * {"pcr03":..}}}): {"<prefix>_pcrNN": ["hex"]} for PCR 03, 08, 09, 11, 12 and each prefix of the
 * comma-separated list (NULL: "snp,tdx"). A given pcr8 replaces the document's PCR8. `what`
 * names the document in errors. */
CT_RESULT coco_refvalues_build(const json_t *measurements, const char *what, const uint8_t *pcr8, const char *prefixes,
                               json_t **values, ct_err *err);
/* The RVPS Message (sample type) registering `values`: the body of POST /kbs/v0/reference-value. */
CT_RESULT coco_refvalues_message(const json_t *values, char **message, ct_err *err);
/* PCR8 after one extend with the sha256 digest of the init-data file at `path`. */
CT_RESULT coco_initdata_pcr8_of(const char *path, uint8_t pcr8[32], ct_err *err);

int coco_initdata_main(int argc, char **argv);
int coco_refvalues_main(int argc, char **argv);
int coco_secrets_main(int argc, char **argv);
int coco_kbs_seed_main(int argc, char **argv);

#endif
