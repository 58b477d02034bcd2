/*
 * The JSON reader behind ct_json_parse: accepts exactly what jansson's json_loadb accepts with
 * JSON_REJECT_DUPLICATES | JSON_DECODE_ANY (and builds the same values), at a fraction of its
 * cost. jansson reads one character at a time through a validating stream (some 300 instructions
 * a byte); SEV-SNP evidence carries its report and certificate as a few thousand one-byte
 * integers, and parsing it cost more than a quarter of a handshake. Here plain runs of a string
 * are validated and copied at once and integers are accumulated in place.
 *
 * Kept equal to jansson by tests/unit/json_parse_test.c (both readers on crafted and mutated
 * inputs and every fuzz corpus) and the json_parse_fuzz target. One deliberate difference: jansson
 * drops a NUL byte that follows a number or literal (its read-ahead buffer takes NUL for "empty");
 * here it is refused like any other byte outside the grammar.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_buf.h"
#include "ct_json.h"
#include "ct_json_internal.h"

#define CT_JSON__MAX_NESTING 2047 /* jansson: 2048 levels counting the top-level value as 1; callers' max_depth is checked first */

typedef struct ct_json__reader {
  const unsigned char *start, *p, *end;
  ct_err *err;
  bool failed;
  /* Integers 0..255 are shared within one document: SNP evidence is thousands of byte values,
   * and one json_t per byte was most of what reading it cost. Safe because nothing changes a
   * JSON integer in place (json_integer_set is used nowhere). */
  json_t *small[256];
} ct_json__reader;

static json_t *ct_json__fail(ct_json__reader *r, const unsigned char *at, const char *fmt, ...) CT_PRINTF(3, 4);
static json_t *ct_json__fail(ct_json__reader *r, const unsigned char *at, const char *fmt, ...) {
  if (r->failed) return NULL;
  r->failed = true;
  int line = 1, col = 0;
  for (const unsigned char *q = r->start; q < at && q < r->end; q++) {
    if (*q == '\n') {
      line++;
      col = 0;
    } else {
      col++;
    }
  }
  char why[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  ct_fail(r->err, CT_EINVAL, "malformed JSON at line %d column %d: %s", line, col + 1, why);
  return NULL;
}

static void ct_json__ws(ct_json__reader *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static int ct_json__hex4(const unsigned char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    int c = p[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v << 4 | d;
  }
  return v;
}

static size_t ct_json__put_utf8(uint32_t cp, char *o) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | cp >> 6);
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | cp >> 12);
    o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | cp >> 18);
  o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Reads the string whose opening quote is at r->p. Without escapes it points into the input
 * (*out_own NULL); with them the decoded text is in *out_own (caller frees). */
static bool ct_json__string(ct_json__reader *r, const char **out, size_t *out_len, char **out_own) {
  const unsigned char *s = ++r->p, *end = r->end;
  *out_own = NULL;
  const unsigned char *q = s;
  for (;;) {
    while (q < end && *q >= 0x20 && *q < 0x80 && *q != '"' && *q != '\\') q++;
    if (q >= end) return ct_json__fail(r, q, "premature end of input"), false;
    if (*q == '"') {
      *out = (const char *)s;
      *out_len = (size_t)(q - s);
      r->p = q + 1;
      return true;
    }
    if (*q == '\\') break;
    if (*q < 0x20) return ct_json__fail(r, q, "control character 0x%x", *q), false;
    size_t k = ct_json__utf8_len(q, (size_t)(end - q));
    if (!k) return ct_json__fail(r, q, "unable to decode byte 0x%x", *q), false;
    q += k;
  }
  /* Escapes: decode into a buffer no longer than the rest of the input. */
  char *buf = malloc((size_t)(end - s) + 1);
  if (!buf) return ct_json__fail(r, q, "out of memory"), false;
  size_t n = (size_t)(q - s);
  memcpy(buf, s, n);
  while (q < end) {
    unsigned char c = *q;
    if (c == '"') {
      buf[n] = 0;
      *out = buf;
      *out_len = n;
      *out_own = buf;
      r->p = q + 1;
      return true;
    }
    if (c < 0x20) {
      free(buf);
      return ct_json__fail(r, q, "control character 0x%x", c), false;
    }
    if (c >= 0x80) {
      size_t k = ct_json__utf8_len(q, (size_t)(end - q));
      if (!k) {
        free(buf);
        return ct_json__fail(r, q, "unable to decode byte 0x%x", c), false;
      }
      memcpy(buf + n, q, k);
      n += k;
      q += k;
      continue;
    }
    if (c != '\\') {
      buf[n++] = (char)c;
      q++;
      continue;
    }
    if (q + 1 >= end) break;
    c = q[1];
    const char *simple = strchr("\"\\/bfnrt", c);
    if (c && simple) {
      static const char map[] = "\"\\/\b\f\n\r\t";
      buf[n++] = map[simple - "\"\\/bfnrt"];
      q += 2;
      continue;
    }
    if (c != 'u') {
      free(buf);
      return ct_json__fail(r, q, "invalid escape"), false;
    }
    int u = q + 6 <= end ? ct_json__hex4(q + 2) : -1;
    if (u < 0) {
      free(buf);
      return ct_json__fail(r, q, "invalid escape"), false;
    }
    uint32_t cp = (uint32_t)u;
    q += 6;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      int lo = q + 6 <= end && q[0] == '\\' && q[1] == 'u' ? ct_json__hex4(q + 2) : -1;
      if (lo < 0xDC00 || lo > 0xDFFF) {
        free(buf);
        return ct_json__fail(r, q, "invalid Unicode '\\u%04X'", cp), false;
      }
      cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
      q += 6;
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
      free(buf);
      return ct_json__fail(r, q, "invalid Unicode '\\u%04X'", cp), false;
    } else if (cp == 0) {
      free(buf);
      return ct_json__fail(r, q, "\\u0000 is not allowed without JSON_ALLOW_NUL"), false;
    }
    n += ct_json__put_utf8(cp, buf + n);
  }
  free(buf);
  return ct_json__fail(r, q, "premature end of input"), false;
}

static bool ct_json__digit(const unsigned char *p, const unsigned char *end) { return p < end && *p >= '0' && *p <= '9'; }

/* jansson's number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?; an integer when it
 * has neither fraction nor exponent (then it must fit json_int_t), else a double (that must not
 * overflow). */
static json_t *ct_json__number(ct_json__reader *r) {
  const unsigned char *s = r->p, *p = s, *end = r->end;
  bool neg = p < end && *p == '-';
  if (neg) p++;
  if (!ct_json__digit(p, end)) return ct_json__fail(r, s, "invalid token");
  if (*p == '0') {
    p++;
    if (ct_json__digit(p, end)) return ct_json__fail(r, s, "invalid token");
  } else {
    while (ct_json__digit(p, end)) p++;
  }
  bool real = false;
  if (p < end && *p == '.') {
    if (!ct_json__digit(p + 1, end)) return ct_json__fail(r, s, "invalid token");
    p += 2;
    while (ct_json__digit(p, end)) p++;
    real = true;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    const unsigned char *e = p + 1;
    if (e < end && (*e == '+' || *e == '-')) e++;
    if (!ct_json__digit(e, end)) return ct_json__fail(r, s, "invalid token");
    p = e;
    while (ct_json__digit(p, end)) p++;
    real = true;
  }
  r->p = p;
  if (!real) {
    /* Accumulated as a negative number: its range is one larger. */
    json_int_t v = 0;
    for (const unsigned char *d = s + neg; d < p; d++) {
      int digit = *d - '0';
      if (v < (INT64_MIN + digit) / 10)
        return ct_json__fail(r, s, neg ? "too big negative integer" : "too big integer");
      v = v * 10 - digit;
    }
    if (!neg) {
      if (v == INT64_MIN) return ct_json__fail(r, s, "too big integer");
      v = -v;
    }
    if (v >= 0 && v < 256) {
      if (!r->small[v] && !(r->small[v] = json_integer(v))) return ct_json__fail(r, s, "out of memory");
      return json_incref(r->small[v]);
    }
    json_t *j = json_integer(v);
    return j ? j : ct_json__fail(r, s, "out of memory");
  }
  char small[64], *text = small;
  size_t n = (size_t)(p - s);
  if (n >= sizeof small && !(text = malloc(n + 1))) return ct_json__fail(r, s, "out of memory");
  memcpy(text, s, n);
  text[n] = 0;
  errno = 0;
  double d = strtod(text, NULL);
  bool overflow = errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL);
  if (text != small) free(text);
  if (overflow) return ct_json__fail(r, s, "real number overflow");
  json_t *j = json_real(d);
  return j ? j : ct_json__fail(r, s, "out of memory");
}

static json_t *ct_json__value(ct_json__reader *r, int depth);

static json_t *ct_json__array(ct_json__reader *r, int depth) {
  json_t *a = json_array();
  if (!a) return ct_json__fail(r, r->p, "out of memory");
  r->p++;
  ct_json__ws(r);
  if (r->p < r->end && *r->p == ']') {
    r->p++;
    return a;
  }
  for (;;) {
    json_t *v = ct_json__value(r, depth + 1);
    if (!v || json_array_append_new(a, v) != 0) break;
    ct_json__ws(r);
    if (r->p < r->end && *r->p == ',') {
      r->p++;
      ct_json__ws(r);
      continue;
    }
    if (r->p < r->end && *r->p == ']') {
      r->p++;
      return a;
    }
    ct_json__fail(r, r->p, r->p < r->end ? "']' expected" : "premature end of input");
    break;
  }
  json_decref(a);
  return ct_json__fail(r, r->p, "out of memory");
}

static json_t *ct_json__object(ct_json__reader *r, int depth) {
  json_t *o = json_object();
  if (!o) return ct_json__fail(r, r->p, "out of memory");
  r->p++;
  ct_json__ws(r);
  if (r->p < r->end && *r->p == '}') {
    r->p++;
    return o;
  }
  for (;;) {
    if (r->p >= r->end || *r->p != '"') {
      ct_json__fail(r, r->p, r->p < r->end ? "string or '}' expected" : "premature end of input");
      break;
    }
    const unsigned char *key_at = r->p;
    const char *key;
    size_t key_len;
    char *own = NULL;
    if (!ct_json__string(r, &key, &key_len, &own)) break;
    ct_json__ws(r);
    if (r->p >= r->end || *r->p != ':') {
      free(own);
      ct_json__fail(r, r->p, r->p < r->end ? "':' expected" : "premature end of input");
      break;
    }
    r->p++;
    ct_json__ws(r);
    json_t *v = ct_json__value(r, depth + 1);
    if (!v) {
      free(own);
      break;
    }
    if (json_object_getn(o, key, key_len)) {
      free(own);
      json_decref(v);
      ct_json__fail(r, key_at, "duplicate object key");
      break;
    }
    int rc = json_object_setn_new_nocheck(o, key, key_len, v);
    free(own);
    if (rc != 0) {
      ct_json__fail(r, key_at, "out of memory");
      break;
    }
    ct_json__ws(r);
    if (r->p < r->end && *r->p == ',') {
      r->p++;
      ct_json__ws(r);
      continue;
    }
    if (r->p < r->end && *r->p == '}') {
      r->p++;
      return o;
    }
    ct_json__fail(r, r->p, r->p < r->end ? "'}' expected" : "premature end of input");
    break;
  }
  json_decref(o);
  return NULL;
}

static bool ct_json__alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

static json_t *ct_json__literal(ct_json__reader *r) {
  const unsigned char *s = r->p, *p = s;
  while (p < r->end && ct_json__alpha(*p)) p++;
  size_t n = (size_t)(p - s);
  json_t *v = n == 4 && !memcmp(s, "true", 4)    ? json_true()
              : n == 5 && !memcmp(s, "false", 5) ? json_false()
              : n == 4 && !memcmp(s, "null", 4)  ? json_null()
                                                 : NULL;
  if (!v) return ct_json__fail(r, s, "invalid token");
  r->p = p;
  return v;
}

static json_t *ct_json__value(ct_json__reader *r, int depth) {
  if (depth > CT_JSON__MAX_NESTING) return ct_json__fail(r, r->p, "maximum parsing depth reached");
  if (r->p >= r->end) return ct_json__fail(r, r->p, "premature end of input");
  unsigned char c = *r->p;
  if (c == '{') return ct_json__object(r, depth);
  if (c == '[') return ct_json__array(r, depth);
  if (c == '"') {
    const unsigned char *at = r->p;
    const char *s;
    size_t n;
    char *own = NULL;
    if (!ct_json__string(r, &s, &n, &own)) return NULL;
    json_t *v = json_stringn_nocheck(s, n);
    free(own);
    return v ? v : ct_json__fail(r, at, "out of memory");
  }
  if (c == '-' || (c >= '0' && c <= '9')) return ct_json__number(r);
  return ct_json__literal(r);
}

CT_RESULT ct_json__read(const char *buf, size_t len, json_t **out, ct_err *err) {
  ct_json__reader r = {.start = (const unsigned char *)buf, .p = (const unsigned char *)buf,
                       .end = (const unsigned char *)buf + len, .err = err};
  ct_json__ws(&r);
  json_t *v = ct_json__value(&r, 0);
  if (v) {
    ct_json__ws(&r);
    if (r.p != r.end) {
      json_decref(v);
      v = ct_json__fail(&r, r.p, "end of file expected");
    }
  }
  for (size_t i = 0; i < 256; i++) json_decref(r.small[i]);
  if (!v) {
    if (!r.failed) ct_json__fail(&r, r.p, "invalid token");
    return err ? err->code : CT_EINVAL;
  }
  *out = v;
  return CT_OK;
}
