/*
 * ct_reader.h - a bounded cursor over untrusted bytes: the one way binary formats are read.
 *
 * Every read is checked against the end of the buffer. The first failed read makes the reader
 * fail for good (every later read returns 0 / NULL and changes nothing) and remembers which
 * field it was after, so a parser reads a whole structure and checks once:
 *
 *   ct_reader r;
 *   ct_reader_init(&r, data, len, "TDX quote");
 *   uint16_t version = ct_read_u16le(&r, "header version");
 *   const uint8_t *body = ct_read_bytes(&r, 584, "TD report body");
 *   CT_GUARD(ct_reader_status(&r, err));
 *   -> "TDX quote: truncated at offset 48: TD report body needs 584 bytes, 100 remain"
 *
 * `what` and field names are not copied: pass string literals (or strings that outlive the
 * reader). Values read after a failure are 0, so a parser may use them before it checks, but
 * must not trust them.
 */
#ifndef CT_READER_H
#define CT_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

typedef struct ct_reader {
  const uint8_t *data;
  size_t len, off;
  const char *what;       /* the structure, for messages ("TDX quote") */
  /* the first failure, if any */
  const char *fail_field;
  const char *fail_why;   /* NULL: truncation; else a caller's reason (ct_reader_fail) */
  size_t fail_off, fail_need;
} ct_reader;

void ct_reader_init(ct_reader *r, const void *data, size_t len, const char *what);

/* Sequential reads at the cursor; the cursor moves past what was read. */
uint8_t ct_read_u8(ct_reader *r, const char *field);
uint16_t ct_read_u16le(ct_reader *r, const char *field);
uint32_t ct_read_u32le(ct_reader *r, const char *field);
uint64_t ct_read_u64le(ct_reader *r, const char *field);
uint16_t ct_read_u16be(ct_reader *r, const char *field);
uint32_t ct_read_u32be(ct_reader *r, const char *field);
uint64_t ct_read_u64be(ct_reader *r, const char *field);
/* `n` bytes in place (NULL on failure; a pointer into the buffer, not a copy). */
const uint8_t *ct_read_bytes(ct_reader *r, size_t n, const char *field);
void ct_read_skip(ct_reader *r, size_t n, const char *field);

/* Reads at absolute offset `off` from the reader's start; the cursor does not move. For
 * fixed-layout structures (an SNP report, a TD report body). */
uint8_t ct_peek_u8(ct_reader *r, size_t off, const char *field);
uint16_t ct_peek_u16le(ct_reader *r, size_t off, const char *field);
uint32_t ct_peek_u32le(ct_reader *r, size_t off, const char *field);
uint64_t ct_peek_u64le(ct_reader *r, size_t off, const char *field);
uint16_t ct_peek_u16be(ct_reader *r, size_t off, const char *field);
uint32_t ct_peek_u32be(ct_reader *r, size_t off, const char *field);
uint64_t ct_peek_u64be(ct_reader *r, size_t off, const char *field);
const uint8_t *ct_peek_bytes(ct_reader *r, size_t off, size_t n, const char *field);

/* Consumes `n` bytes and returns a reader over exactly those (named `field`); a reader that
 * has failed, or holds fewer than `n` bytes, yields a failed sub-reader. The sub-reader's
 * failures do not reach the parent: check it with ct_reader_status. */
ct_reader ct_reader_sub(ct_reader *r, size_t n, const char *field);

/* Marks the reader failed (if it had not failed yet) for a reason other than truncation:
 * "TDX quote: at offset 52: body size: must be 584 or 648". */
void ct_reader_fail(ct_reader *r, const char *field, const char *why);

size_t ct_reader_remaining(const ct_reader *r); /* 0 once failed */
size_t ct_reader_offset(const ct_reader *r);
bool ct_reader_ok(const ct_reader *r);
/* CT_OK, or CT_EINVAL with a message naming the structure, the offset and the field. */
CT_RESULT ct_reader_status(const ct_reader *r, ct_err *err);

#endif
