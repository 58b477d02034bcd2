/*
 * guest_pb.h - the small protobuf wire codec the ttRPC services need: a field iterator over a
 * bounded input (zero-copy: strings and bytes point into the input) and field writers onto a
 * capped ct_buf. proto3 rules: defaults are omitted on output, unknown fields are skipped on
 * input, groups (wire types 3 and 4) are refused.
 */
#ifndef GUEST_PB_H
#define GUEST_PB_H

#include <stddef.h>
#include <stdint.h>

#include "ct_buf.h"
#include "ct_status.h"

enum { GUEST_PB_VARINT = 0, GUEST_PB_I64 = 1, GUEST_PB_LEN = 2, GUEST_PB_I32 = 5 };

typedef struct guest_pb_field {
  uint32_t num;
  uint8_t wire;
  uint64_t u;          /* VARINT, I64 and I32 values */
  const uint8_t *data; /* LEN: the bytes (borrowed from the input) */
  size_t len;
} guest_pb_field;

typedef struct guest_pb_in {
  const uint8_t *p, *end;
} guest_pb_in;

static inline guest_pb_in guest_pb_in_make(const void *data, size_t len) {
  guest_pb_in in = {(const uint8_t *)data, (const uint8_t *)data + len};
  return in;
}

/* Reads the next field. *more is 0 at the end of the input (and the function returns CT_OK). */
CT_RESULT guest_pb_next(guest_pb_in *in, guest_pb_field *f, int *more, ct_err *err);

/* Copies a LEN field into a NUL-terminated string: refuses embedded NULs and lengths >= cap. */
CT_RESULT guest_pb_string(const guest_pb_field *f, char *dst, size_t cap, const char *what,
                          ct_err *err);
/* The same into a new allocation (at most `max` bytes). Caller frees. */
CT_RESULT guest_pb_strdup(const guest_pb_field *f, size_t max, char **out, const char *what,
                          ct_err *err);

CT_RESULT guest_pb_put_varint(ct_buf *b, uint32_t num, uint64_t v, ct_err *err);
/* A LEN field; omitted when len == 0 (proto3 default) unless `always`. */
CT_RESULT guest_pb_put_bytes(ct_buf *b, uint32_t num, const void *data, size_t len, int always,
                             ct_err *err);
CT_RESULT guest_pb_put_str(ct_buf *b, uint32_t num, const char *s, ct_err *err);

#endif
