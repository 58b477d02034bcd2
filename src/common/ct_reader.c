/*
 * ct_reader.c - the bounded cursor (see ct_reader.h).
 */
#include "ct_reader.h"

void ct_reader_init(ct_reader *r, const void *data, size_t len, const char *what) {
  *r = (ct_reader){.data = data, .len = data ? len : 0, .what = what ? what : "input"};
}

static void ct_reader__fail(ct_reader *r, size_t off, size_t need, const char *field, const char *why) {
  if (r->fail_field) return;
  r->fail_field = field ? field : "field";
  r->fail_why = why;
  r->fail_off = off;
  r->fail_need = need;
}

/* The `n` bytes at `off`, or NULL (and the reader fails) when they are not all there. */
static const uint8_t *ct_reader__at(ct_reader *r, size_t off, size_t n, const char *field) {
  if (r->fail_field) return NULL;
  if (off > r->len || n > r->len - off) {
    ct_reader__fail(r, off, n, field, NULL);
    return NULL;
  }
  return r->data + off;
}

static const uint8_t *ct_reader__take(ct_reader *r, size_t n, const char *field) {
  const uint8_t *p = ct_reader__at(r, r->off, n, field);
  if (p) r->off += n;
  return p;
}

static uint64_t ct_reader__le(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = n; i-- > 0;) v = v << 8 | p[i];
  return v;
}

static uint64_t ct_reader__be(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

#define CT_READER__INT(type, suffix, n, order)                                                     \
  type ct_read_##suffix(ct_reader *r, const char *field) {                                         \
    const uint8_t *p = ct_reader__take(r, n, field);                                               \
    return p ? (type)ct_reader__##order(p, n) : 0;                                                 \
  }                                                                                                \
  type ct_peek_##suffix(ct_reader *r, size_t off, const char *field) {                             \
    const uint8_t *p = ct_reader__at(r, off, n, field);                                            \
    return p ? (type)ct_reader__##order(p, n) : 0;                                                 \
  }

CT_READER__INT(uint8_t, u8, 1, le)
CT_READER__INT(uint16_t, u16le, 2, le)
CT_READER__INT(uint32_t, u32le, 4, le)
CT_READER__INT(uint64_t, u64le, 8, le)
CT_READER__INT(uint16_t, u16be, 2, be)
CT_READER__INT(uint32_t, u32be, 4, be)
CT_READER__INT(uint64_t, u64be, 8, be)

const uint8_t *ct_read_bytes(ct_reader *r, size_t n, const char *field) {
  return ct_reader__take(r, n, field);
}

void ct_read_skip(ct_reader *r, size_t n, const char *field) { (void)ct_reader__take(r, n, field); }

const uint8_t *ct_peek_bytes(ct_reader *r, size_t off, size_t n, const char *field) {
  return ct_reader__at(r, off, n, field);
}

ct_reader ct_reader_sub(ct_reader *r, size_t n, const char *field) {
  ct_reader s;
  const uint8_t *p = ct_reader__take(r, n, field);
  ct_reader_init(&s, p, p ? n : 0, field);
  if (!p) ct_reader__fail(&s, 0, n, field, NULL);
  return s;
}

void ct_reader_fail(ct_reader *r, const char *field, const char *why) {
  ct_reader__fail(r, r->off, 0, field, why ? why : "invalid");
}

size_t ct_reader_remaining(const ct_reader *r) { return r->fail_field ? 0 : r->len - r->off; }

size_t ct_reader_offset(const ct_reader *r) { return r->off; }

bool ct_reader_ok(const ct_reader *r) { return !r->fail_field; }

CT_RESULT ct_reader_status(const ct_reader *r, ct_err *err) {
  if (!r->fail_field) return CT_OK;
  if (r->fail_why)
    return ct_fail(err, CT_EINVAL, "%s: at offset %zu: %s: %s", r->what, r->fail_off, r->fail_field,
                   r->fail_why);
  size_t left = r->fail_off <= r->len ? r->len - r->fail_off : 0;
  return ct_fail(err, CT_EINVAL, "%s: truncated at offset %zu: %s needs %zu bytes, %zu remain",
                 r->what, r->fail_off, r->fail_field, r->fail_need, left);
}
