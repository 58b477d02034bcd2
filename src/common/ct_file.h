/*
 * ct_file.h - bounded whole-file reads and atomic writes.
 */
#ifndef CT_FILE_H
#define CT_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

/* Reads the whole file into a malloc'd buffer (NUL-terminated, not counted in *len).
 * A file larger than `max` bytes is refused with CT_ELIMIT. */
CT_RESULT ct_file_read(const char *path, size_t max, uint8_t **out, size_t *len, ct_err *err);
/* Writes through a temporary file and rename(2), so a reader never sees half a file.
 * `mode` is applied to the new file (e.g. 0600 for secrets). */
CT_RESULT ct_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
                               ct_err *err);

/* The same relative to an open directory (openat(2) family), so that a process can keep using a
 * directory it opened before dropping privileges or before its path became unreachable. */
CT_RESULT ct_file_read_at(int dirfd, const char *name, size_t max, uint8_t **out, size_t *len, ct_err *err);
CT_RESULT ct_file_write_atomic_at(int dirfd, const char *name, const void *data, size_t len, unsigned mode,
                                  ct_err *err);
/* Reads `name` below the directory dirfd, following symbolic links only while their resolution
 * stays beneath dirfd and on its mount (openat2 RESOLVE_BENEATH | RESOLVE_NO_XDEV |
 * RESOLVE_NO_MAGICLINKS): the `<key> -> ..data/<key>` links of a Kubernetes Secret or ConfigMap
 * volume resolve, a link out of the directory (absolute, `..`, another mount, /proc) is refused.
 * For read-only inputs in a configured directory, never for a store (docs/compatibility.md). Without
 * openat2 (kernel before 5.6, or a seccomp filter refusing it) no link is followed at all. */
CT_RESULT ct_file_read_beneath(int dirfd, const char *name, size_t max, uint8_t **out, size_t *len, ct_err *err);

#endif
