#include "ct_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_mem.h"

void ct_buf_init(ct_buf *b, size_t max) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->max = max;
}

static CT_RESULT ct_buf__reserve(ct_buf *b, size_t extra, ct_err *err) {
  if (extra > b->max || b->len > b->max - extra) {
    size_t max = b->max;
    ct_buf_free(b);
    return ct_fail(err, CT_ELIMIT, "buffer would exceed its cap of %zu bytes", max);
  }
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return CT_OK;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  uint8_t *p = realloc(b->data, cap);
  if (!p) {
    ct_buf_free(b);
    return ct_fail(err, CT_ENOMEM, "out of memory growing a buffer to %zu bytes", cap);
  }
  b->data = p;
  b->cap = cap;
  return CT_OK;
}

CT_RESULT ct_buf_append(ct_buf *b, const void *data, size_t len, ct_err *err) {
  CT_GUARD(ct_buf__reserve(b, len, err));
  if (len) memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = 0;
  return CT_OK;
}

CT_RESULT ct_buf_append_str(ct_buf *b, const char *s, ct_err *err) {
  return ct_buf_append(b, s, strlen(s), err);
}

CT_RESULT ct_buf_printf(ct_buf *b, ct_err *err, const char *fmt, ...) {
  /* Short texts (headers, numbers) are formatted once, on the stack, instead of measured first
   * and formatted again. */
  char small[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) return ct_fail(err, CT_EINTERNAL, "bad format string");
  if ((size_t)n < sizeof small) return ct_buf_append(b, small, (size_t)n, err);
  CT_GUARD(ct_buf__reserve(b, (size_t)n, err));
  va_start(ap, fmt);
  vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return CT_OK;
}

void ct_buf_reset(ct_buf *b) {
  b->len = 0;
  if (b->data) b->data[0] = 0;
}

void ct_buf_free(ct_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void ct_buf_free_secret(ct_buf *b) {
  if (b->data) ct_wipe(b->data, b->cap);
  ct_buf_free(b);
}

uint8_t *ct_buf_take(ct_buf *b, size_t *len) {
  uint8_t *p = b->data;
  if (len) *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}
