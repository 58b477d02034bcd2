/*
 * ct_buf.h - a growable byte buffer with a hard size cap (after curl's dynbuf).
 *
 * The buffer owns its storage. On any failure it frees itself, so a caller never sees a
 * half-built value. The contents are always followed by a NUL byte (not counted in len), so a
 * text buffer can be used as a C string.
 */
#ifndef CT_BUF_H
#define CT_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

typedef struct ct_buf {
  uint8_t *data;
  size_t len;
  size_t cap;
  size_t max; /* appending beyond this many bytes fails with CT_ELIMIT */
} ct_buf;

void ct_buf_init(ct_buf *b, size_t max);
CT_RESULT ct_buf_append(ct_buf *b, const void *data, size_t len, ct_err *err);
CT_RESULT ct_buf_append_str(ct_buf *b, const char *s, ct_err *err);
CT_RESULT ct_buf_printf(ct_buf *b, ct_err *err, const char *fmt, ...) CT_PRINTF(3, 4);
/* Empties the buffer but keeps its storage. */
void ct_buf_reset(ct_buf *b);
/* Releases the storage; wipes it first if `secret`. */
void ct_buf_free(ct_buf *b);
void ct_buf_free_secret(ct_buf *b);
/* Hands the storage to the caller (who frees it with free()); the buffer is left empty. */
uint8_t *ct_buf_take(ct_buf *b, size_t *len);

#endif
