/*
 * coco.h - the pattern CLI: init-data, reference values and secrets for the Confidential
 * Containers pattern (docs/pattern.md). One file per verb family; this header holds what they share.
 */
#ifndef COCO_H
#define COCO_H

#include <stdbool.h>
#include <stddef.h>

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

int coco_initdata_main(int argc, char **argv);
int coco_refvalues_main(int argc, char **argv);
int coco_secrets_main(int argc, char **argv);

#endif
