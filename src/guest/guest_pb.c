/*
 * guest_pb.c - protobuf wire codec (see guest_pb.h).
 */
#include "guest_pb.h"

#include <stdlib.h>
#include <string.h>

static CT_RESULT guest_pb__varint(guest_pb_in *in, uint64_t *v, const char *what,
                                            ct_err *err) {
  uint64_t x = 0;
  for (unsigned shift = 0; shift < 70; shift += 7) {
    CT_ENSURE(in->p < in->end, err, CT_EINVAL, "protobuf: %s is truncated", what);
    uint8_t c = *in->p++;
    /* The tenth byte may only carry the top bit of a 64-bit value. */
    CT_ENSURE(shift < 63 || c <= 1, err, CT_EINVAL, "protobuf: %s overflows 64 bits", what);
    x |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = x;
      return CT_OK;
    }
  }
  return ct_fail(err, CT_EINVAL, "protobuf: %s is longer than 10 bytes", what);
}

CT_RESULT guest_pb_next(guest_pb_in *in, guest_pb_field *f, int *more, ct_err *err) {
  memset(f, 0, sizeof *f);
  if (in->p >= in->end) {
    *more = 0;
    return CT_OK;
  }
  uint64_t key = 0;
  CT_GUARD(guest_pb__varint(in, &key, "field key", err));
  uint64_t num = key >> 3;
  CT_ENSURE(num >= 1 && num <= 0x1fffffff, err, CT_EINVAL, "protobuf: field number %llu is invalid",
            (unsigned long long)num);
  f->num = (uint32_t)num;
  f->wire = (uint8_t)(key & 7);
  switch (f->wire) {
  case GUEST_PB_VARINT:
    CT_GUARD(guest_pb__varint(in, &f->u, "varint field", err));
    break;
  case GUEST_PB_I64:
  case GUEST_PB_I32: {
    size_t n = f->wire == GUEST_PB_I64 ? 8 : 4;
    CT_ENSURE((size_t)(in->end - in->p) >= n, err, CT_EINVAL, "protobuf: fixed field %u is truncated",
              f->num);
    for (size_t i = 0; i < n; i++) f->u |= (uint64_t)in->p[i] << (8 * i);
    in->p += n;
    break;
  }
  case GUEST_PB_LEN: {
    uint64_t n = 0;
    CT_GUARD(guest_pb__varint(in, &n, "length", err));
    CT_ENSURE(n <= (uint64_t)(in->end - in->p), err, CT_EINVAL,
              "protobuf: field %u claims %llu bytes but %zu remain", f->num,
              (unsigned long long)n, (size_t)(in->end - in->p));
    f->data = in->p;
    f->len = (size_t)n;
    in->p += n;
    break;
  }
  default:
    return ct_fail(err, CT_EINVAL, "protobuf: field %u has wire type %u (groups and unknown types "
                                   "are not accepted)", f->num, f->wire);
  }
  *more = 1;
  return CT_OK;
}

CT_RESULT guest_pb_string(const guest_pb_field *f, char *dst, size_t cap, const char *what,
                          ct_err *err) {
  CT_ENSURE(f->wire == GUEST_PB_LEN, err, CT_EINVAL, "protobuf: %s must be a string", what);
  CT_ENSURE(f->len < cap, err, CT_ELIMIT, "protobuf: %s is longer than %zu bytes", what, cap - 1);
  CT_ENSURE(!f->len || !memchr(f->data, 0, f->len), err, CT_EINVAL, "protobuf: %s holds a NUL byte",
            what);
  if (f->len) memcpy(dst, f->data, f->len);
  dst[f->len] = 0;
  return CT_OK;
}

CT_RESULT guest_pb_strdup(const guest_pb_field *f, size_t max, char **out, const char *what,
                          ct_err *err) {
  CT_ENSURE(f->wire == GUEST_PB_LEN, err, CT_EINVAL, "protobuf: %s must be a string", what);
  CT_ENSURE(f->len <= max, err, CT_ELIMIT, "protobuf: %s is longer than %zu bytes", what, max);
  char *s = malloc(f->len + 1);
  CT_ENSURE(s, err, CT_ENOMEM, "protobuf: out of memory");
  ct_status st = guest_pb_string(f, s, f->len + 1, what, err);
  if (st) {
    free(s);
    return st;
  }
  free(*out); /* proto3: the last occurrence of a field wins */
  *out = s;
  return CT_OK;
}

static CT_RESULT guest_pb__put_raw_varint(ct_buf *b, uint64_t v, ct_err *err) {
  uint8_t tmp[10];
  size_t n = 0;
  do {
    tmp[n] = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v) tmp[n] |= 0x80;
    n++;
  } while (v);
  return ct_buf_append(b, tmp, n, err);
}

CT_RESULT guest_pb_put_varint(ct_buf *b, uint32_t num, uint64_t v, ct_err *err) {
  if (!v) return CT_OK;
  CT_GUARD(guest_pb__put_raw_varint(b, (uint64_t)num << 3 | GUEST_PB_VARINT, err));
  return guest_pb__put_raw_varint(b, v, err);
}

CT_RESULT guest_pb_put_bytes(ct_buf *b, uint32_t num, const void *data, size_t len, int always,
                             ct_err *err) {
  if (!len && !always) return CT_OK;
  CT_GUARD(guest_pb__put_raw_varint(b, (uint64_t)num << 3 | GUEST_PB_LEN, err));
  CT_GUARD(guest_pb__put_raw_varint(b, len, err));
  return len ? ct_buf_append(b, data, len, err) : CT_OK;
}

CT_RESULT guest_pb_put_str(ct_buf *b, uint32_t num, const char *s, ct_err *err) {
  return guest_pb_put_bytes(b, num, s, s ? strlen(s) : 0, 0, err);
}
