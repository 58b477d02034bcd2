#include "ct_json.h"
#include "ct_json_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ct_buf_append with its common case inline: the writers append a punctuation character or a
 * short run several times per member, and the call and its checks cost more than the copy. The
 * slow path is ct_buf_append itself, so growth, the cap and its errors are unchanged. */
static inline CT_RESULT ct_json__put(ct_buf *b, const void *p, size_t n, ct_err *err) {
  if (n <= b->max && b->len <= b->max - n && b->cap && b->len + n < b->cap) {
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return CT_OK;
  }
  return ct_buf_append(b, p, n, err);
}

#if defined(__SSE2__)
/* Whether sixteen bytes are all printable ASCII other than '"' and '\\' (the bytes the string
 * writers copy as they are): a signed compare below 0x20 also catches the bytes >= 0x80. */
static bool ct_json__block_plain(const unsigned char *p) {
  __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
  __m128i special = _mm_or_si128(_mm_cmplt_epi8(x, _mm_set1_epi8(0x20)),
                                 _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')), _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))));
  return _mm_movemask_epi8(special) == 0;
}
#endif

/* jansson has no depth option below its compile-time 2048, so scan first. Strings are skipped
 * so that brackets inside them do not count. */
static CT_RESULT ct_json__check_depth(const char *buf, size_t len, size_t max_depth, ct_err *err) {
  size_t depth = 0;
  bool in_str = false;
  for (size_t i = 0; i < len; i++) {
#if defined(__SSE2__)
    /* Sixteen bytes without a quote, backslash or bracket change nothing here ('[', ']' and '\\'
     * OR 0x20 are '{', '}' and '|'). */
    while (len - i >= 16) {
      __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(buf + i)), y = _mm_or_si128(x, _mm_set1_epi8(0x20));
      __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')), _mm_cmpeq_epi8(y, _mm_set1_epi8('{'))),
                                 _mm_or_si128(_mm_cmpeq_epi8(y, _mm_set1_epi8('}')), _mm_cmpeq_epi8(y, _mm_set1_epi8('|'))));
      if (_mm_movemask_epi8(hit)) break;
      i += 16;
    }
    if (i >= len) break;
#endif
    char c = buf[i];
    if (in_str) {
      if (c == '\\') i++;
      else if (c == '"') in_str = false;
      continue;
    }
    if (c == '"') in_str = true;
    else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        return ct_fail(err, CT_ELIMIT, "JSON nesting deeper than %zu at offset %zu", max_depth, i);
    } else if ((c == ']' || c == '}') && depth > 0) depth--;
  }
  return CT_OK;
}

/* ct_json_parse.c: what json_loadb(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY) accepts, faster. */
CT_RESULT ct_json__read(const char *buf, size_t len, json_t **out, ct_err *err);

CT_RESULT ct_json_parse(const char *buf, size_t len, size_t max_depth, json_t **out, ct_err *err) {
  CT_GUARD(ct_json__check_depth(buf, len, max_depth, err));
  return ct_json__read(buf, len, out, err);
}

/* "%" JSON_INTEGER_FORMAT without snprintf: integers are most members of a token's claims, and
 * the format machinery cost more than the rest of their serialisation. */
static size_t ct_json__format_int(json_int_t v, char out[24]) {
  char tmp[24];
  size_t n = 0;
  /* Through unsigned arithmetic, so that the most negative value has a magnitude too. */
  unsigned long long m = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  do {
    tmp[n++] = (char)('0' + m % 10);
    m /= 10;
  } while (m);
  size_t k = 0;
  if (v < 0) out[k++] = '-';
  while (n) out[k++] = tmp[--n];
  out[k] = 0;
  return k;
}

/* --- RFC 8785 ------------------------------------------------------------------------------ */

/* Decodes one UTF-8 sequence (input already validated by jansson). */
static uint32_t ct_json__utf8_next(const unsigned char **p) {
  const unsigned char *s = *p;
  uint32_t cp;
  int n;
  if (s[0] < 0x80) { cp = s[0]; n = 1; }
  else if ((s[0] & 0xE0) == 0xC0) { cp = s[0] & 0x1F; n = 2; }
  else if ((s[0] & 0xF0) == 0xE0) { cp = s[0] & 0x0F; n = 3; }
  else { cp = s[0] & 0x07; n = 4; }
  for (int i = 1; i < n; i++) cp = cp << 6 | (s[i] & 0x3F);
  *p = s + n;
  return cp;
}

/* Splits a code point into UTF-16 units; returns the count (1 or 2). */
static int ct_json__utf16(uint32_t cp, uint16_t u[2]) {
  if (cp < 0x10000) { u[0] = (uint16_t)cp; return 1; }
  cp -= 0x10000;
  u[0] = (uint16_t)(0xD800 + (cp >> 10));
  u[1] = (uint16_t)(0xDC00 + (cp & 0x3FF));
  return 2;
}

static int ct_json__cmp_utf16(const char *a, const char *b) {
  const unsigned char *pa = (const unsigned char *)a, *pb = (const unsigned char *)b;
  uint16_t ua[2], ub[2];
  int na = 0, nb = 0, ia = 0, ib = 0;
  for (;;) {
    if (ia == na) {
      if (!*pa) { na = 0; } else { na = ct_json__utf16(ct_json__utf8_next(&pa), ua); }
      ia = 0;
    }
    if (ib == nb) {
      if (!*pb) { nb = 0; } else { nb = ct_json__utf16(ct_json__utf8_next(&pb), ub); }
      ib = 0;
    }
    if (na == 0 || nb == 0) return (na != 0) - (nb != 0);
    if (ua[ia] != ub[ib]) return ua[ia] < ub[ib] ? -1 : 1;
    ia++;
    ib++;
  }
}

static int ct_json__key_cmp(const void *x, const void *y) {
  return ct_json__cmp_utf16(*(const char *const *)x, *(const char *const *)y);
}

/* Minimal escaping (RFC 8785 section 3.2.2.2); the runs between escapes are copied at once. */
static CT_RESULT ct_json__jcs_string(const char *s, size_t len, ct_buf *out, ct_err *err) {
  CT_GUARD(ct_json__put(out, "\"", 1, err));
  size_t run = 0;
  for (size_t i = 0; i < len; i++) {
#if defined(__SSE2__)
    while (len - i >= 16 && ct_json__block_plain((const unsigned char *)s + i)) i += 16;
    if (i >= len) break;
#endif
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    const char *esc = NULL;
    char tmp[8];
    switch (c) {
    case '"': esc = "\\\""; break;
    case '\\': esc = "\\\\"; break;
    case '\b': esc = "\\b"; break;
    case '\f': esc = "\\f"; break;
    case '\n': esc = "\\n"; break;
    case '\r': esc = "\\r"; break;
    case '\t': esc = "\\t"; break;
    default:
      snprintf(tmp, sizeof tmp, "\\u%04x", c);
      esc = tmp;
    }
    if (i > run) CT_GUARD(ct_json__put(out, s + run, i - run, err));
    CT_GUARD(ct_json__put(out, esc, strlen(esc), err));
    run = i + 1;
  }
  if (len > run) CT_GUARD(ct_json__put(out, s + run, len - run, err));
  return ct_json__put(out, "\"", 1, err);
}

/* ECMAScript Number.prototype.toString for finite doubles, as RFC 8785 section 3.2.2.3 asks. */
static CT_RESULT ct_json__jcs_number(double v, ct_buf *out, ct_err *err) {
  if (!isfinite(v)) return ct_fail(err, CT_EINVAL, "JCS cannot encode NaN or infinity");
  if (v == 0) return ct_buf_append_str(out, "0", err);
  char tmp[40];
  int prec;
  for (prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
    if (strtod(tmp, NULL) == v) break;
  }
  /* tmp is "[-]d.ddde[+-]xx": pull out the significant digits and the decimal exponent. */
  char digits[24];
  size_t k = 0;
  const char *p = tmp;
  bool neg = false;
  if (*p == '-') { neg = true; p++; }
  for (; *p && *p != 'e'; p++)
    if (*p != '.') digits[k++] = *p;
  while (k > 1 && digits[k - 1] == '0') k--;
  digits[k] = 0;
  int n = atoi(p + 1) + 1; /* position of the decimal point relative to the digits */
  if (neg) CT_GUARD(ct_buf_append(out, "-", 1, err));
  int ki = (int)k;
  if (ki <= n && n <= 21) {
    CT_GUARD(ct_buf_append(out, digits, k, err));
    for (int i = 0; i < n - ki; i++) CT_GUARD(ct_buf_append(out, "0", 1, err));
  } else if (0 < n && n <= 21) {
    CT_GUARD(ct_buf_append(out, digits, (size_t)n, err));
    CT_GUARD(ct_buf_append(out, ".", 1, err));
    CT_GUARD(ct_buf_append(out, digits + n, k - (size_t)n, err));
  } else if (-6 < n && n <= 0) {
    CT_GUARD(ct_buf_append(out, "0.", 2, err));
    for (int i = 0; i < -n; i++) CT_GUARD(ct_buf_append(out, "0", 1, err));
    CT_GUARD(ct_buf_append(out, digits, k, err));
  } else {
    CT_GUARD(ct_buf_append(out, digits, 1, err));
    if (k > 1) {
      CT_GUARD(ct_buf_append(out, ".", 1, err));
      CT_GUARD(ct_buf_append(out, digits + 1, k - 1, err));
    }
    CT_GUARD(ct_buf_printf(out, err, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1)));
  }
  return CT_OK;
}

static CT_RESULT ct_json__jcs(const json_t *v, ct_buf *out, int depth, ct_err *err) {
  if (depth > 256) return ct_fail(err, CT_ELIMIT, "JSON value too deep to canonicalise");
  switch (json_typeof(v)) {
  case JSON_NULL: return ct_buf_append_str(out, "null", err);
  case JSON_TRUE: return ct_buf_append_str(out, "true", err);
  case JSON_FALSE: return ct_buf_append_str(out, "false", err);
  case JSON_INTEGER: {
    json_int_t i = json_integer_value(v);
    /* Beyond 2^53 an ES6 number cannot hold the value exactly; format as the double does. */
    if (i > (1LL << 53) || i < -(1LL << 53)) return ct_json__jcs_number((double)i, out, err);
    char num[24];
    return ct_buf_append(out, num, ct_json__format_int(i, num), err);
  }
  case JSON_REAL: return ct_json__jcs_number(json_real_value(v), out, err);
  case JSON_STRING: return ct_json__jcs_string(json_string_value(v), json_string_length(v), out, err);
  case JSON_ARRAY: {
    CT_GUARD(ct_buf_append(out, "[", 1, err));
    for (size_t i = 0; i < json_array_size(v); i++) {
      if (i) CT_GUARD(ct_buf_append(out, ",", 1, err));
      CT_GUARD(ct_json__jcs(json_array_get(v, i), out, depth + 1, err));
    }
    return ct_buf_append(out, "]", 1, err);
  }
  case JSON_OBJECT: {
    size_t n = json_object_size(v);
    const char **keys = n ? malloc(n * sizeof *keys) : NULL;
    if (n && !keys) return ct_fail(err, CT_ENOMEM, "out of memory canonicalising JSON");
    size_t i = 0;
    const char *key;
    json_t *member;
    json_object_foreach((json_t *)v, key, member) keys[i++] = key;
    if (n) qsort(keys, n, sizeof *keys, ct_json__key_cmp); /* qsort(NULL, 0) is undefined */
    ct_status st = ct_buf_append(out, "{", 1, err);
    for (i = 0; st == CT_OK && i < n; i++) {
      if (i) st = ct_buf_append(out, ",", 1, err);
      if (st == CT_OK) st = ct_json__jcs_string(keys[i], strlen(keys[i]), out, err);
      if (st == CT_OK) st = ct_buf_append(out, ":", 1, err);
      if (st == CT_OK) st = ct_json__jcs(json_object_get(v, keys[i]), out, depth + 1, err);
    }
    free(keys);
    CT_GUARD(st);
    return ct_buf_append(out, "}", 1, err);
  }
  }
  return ct_fail(err, CT_EINTERNAL, "unknown JSON type");
}

CT_RESULT ct_jcs_append(const json_t *value, ct_buf *out, ct_err *err) {
  return ct_json__jcs(value, out, 0, err);
}

CT_RESULT ct_jcs_string(const json_t *value, char **out, size_t *out_len, ct_err *err) {
  ct_buf b;
  ct_buf_init(&b, 64u << 20);
  CT_GUARD(ct_json__jcs(value, &b, 0, err));
  if (!b.data) CT_GUARD(ct_buf_append(&b, "", 0, err));
  *out = (char *)ct_buf_take(&b, out_len);
  return CT_OK;
}

static const char *ct_json__type_name(const json_t *v) {
  if (!v) return "absent";
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_INTEGER: return "an integer";
  case JSON_REAL: return "a number";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  case JSON_NULL: return "null";
  }
  return "unknown";
}

CT_RESULT ct_json_get_string(const json_t *obj, const char *key, const char *what, const char **out,
                             ct_err *err) {
  json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
  CT_ENSURE(json_is_string(v), err, CT_EINVAL, "%s: member \"%s\" must be a string, found %s", what,
            key, ct_json__type_name(v));
  *out = json_string_value(v);
  return CT_OK;
}

CT_RESULT ct_json_opt_string(const json_t *obj, const char *key, const char *what, const char **out,
                             ct_err *err) {
  json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
  if (!v || json_is_null(v)) {
    *out = NULL;
    return CT_OK;
  }
  return ct_json_get_string(obj, key, what, out, err);
}

CT_RESULT ct_json_get_object(const json_t *obj, const char *key, const char *what, json_t **out,
                             ct_err *err) {
  json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
  CT_ENSURE(json_is_object(v), err, CT_EINVAL, "%s: member \"%s\" must be an object, found %s", what,
            key, ct_json__type_name(v));
  *out = v;
  return CT_OK;
}

CT_RESULT ct_json_get_int(const json_t *obj, const char *key, const char *what, int64_t *out,
                          ct_err *err) {
  json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
  CT_ENSURE(json_is_integer(v), err, CT_EINVAL, "%s: member \"%s\" must be an integer, found %s",
            what, key, ct_json__type_name(v));
  *out = json_integer_value(v);
  return CT_OK;
}

/* --- compact output, byte-identical to json_dumps ------------------------------------------------ */

size_t ct_json__utf8_len(const unsigned char *p, size_t n) {
  if (p[0] >= 0xC2 && p[0] <= 0xDF) return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
  if (p[0] >= 0xE0 && p[0] <= 0xEF) {
    unsigned lo = p[0] == 0xE0 ? 0xA0 : 0x80, hi = p[0] == 0xED ? 0x9F : 0xBF;
    return n >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
  }
  if (p[0] >= 0xF0 && p[0] <= 0xF4) {
    unsigned lo = p[0] == 0xF0 ? 0x90 : 0x80, hi = p[0] == 0xF4 ? 0x8F : 0xBF;
    return n >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80 ? 4 : 0;
  }
  return 0;
}

/* Eight bytes at a time: whether any of them is a control character, '"', '\\' or not ASCII
 * (the only bytes the writers look at one by one). */
static bool ct_json__word_plain(const unsigned char *p) {
  uint64_t w;
  memcpy(&w, p, sizeof w);
  const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
  uint64_t quote = w ^ (ones * '"'), bslash = w ^ (ones * '\\');
  /* (x - n) & ~x has a byte's high bit set when some byte of x is below n (n <= 0x80): a byte
   * below 0x20, or a zero byte of quote / bslash, is a '"' or '\\'. A borrow can only mark a
   * byte above one that really is special, so "none found" is exact. */
  uint64_t special = ((w - ones * 0x20) & ~w) | ((quote - ones) & ~quote) | ((bslash - ones) & ~bslash);
  return !((w | special) & highs);
}


/* Copies runs of characters that need no escape in one append: jansson escapes character by
 * character, which made serialising the multi-KiB tokens and JWEs a tenth of a handshake. */
static CT_RESULT ct_json__write_string(const char *str, size_t n, ct_buf *out, ct_err *err) {
  const unsigned char *s = (const unsigned char *)str;
  CT_GUARD(ct_json__put(out, "\"", 1, err));
  size_t run = 0, i = 0;
  while (i < n) {
#if defined(__SSE2__)
    if (n - i >= 16 && ct_json__block_plain(s + i)) {
      i += 16;
      continue;
    }
#endif
    if (n - i >= 8 && ct_json__word_plain(s + i)) {
      i += 8;
      continue;
    }
    unsigned char c = s[i];
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      i++;
      continue;
    }
    if (c >= 0x80) {
      size_t k = ct_json__utf8_len(s + i, n - i);
      CT_ENSURE(k, err, CT_EINVAL, "JSON string is not valid UTF-8");
      i += k;
      continue;
    }
    if (i > run) CT_GUARD(ct_json__put(out, s + run, i - run, err));
    char esc[8];
    switch (c) {
    case '"': memcpy(esc, "\\\"", 3); break;
    case '\\': memcpy(esc, "\\\\", 3); break;
    case '\b': memcpy(esc, "\\b", 3); break;
    case '\f': memcpy(esc, "\\f", 3); break;
    case '\n': memcpy(esc, "\\n", 3); break;
    case '\r': memcpy(esc, "\\r", 3); break;
    case '\t': memcpy(esc, "\\t", 3); break;
    default: snprintf(esc, sizeof esc, "\\u%04X", c); break;
    }
    CT_GUARD(ct_json__put(out, esc, strlen(esc), err));
    run = ++i;
  }
  if (i > run) CT_GUARD(ct_json__put(out, s + run, i - run, err));
  return ct_json__put(out, "\"", 1, err);
}

typedef struct ct_json__member {
  const char *key;
  size_t len;
  const json_t *value;
} ct_json__member;

static int ct_json__member_cmp(const void *a, const void *b) {
  const ct_json__member *x = a, *y = b;
  int r = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);
  return r ? r : (x->len > y->len) - (x->len < y->len);
}

/* A value inside the one being written whose text the caller already has. */
typedef struct ct_json__splice {
  const json_t *value;
  const char *text;
  size_t len;
} ct_json__splice;

/* Objects are small (claims, headers): insertion sort, one comparison per member when they are in
 * order already, costs a fraction of qsort's calls through a function pointer. */
static void ct_json__sort_members(ct_json__member *m, size_t n) {
  if (n > 16) {
    qsort(m, n, sizeof *m, ct_json__member_cmp);
    return;
  }
  for (size_t i = 1; i < n; i++) {
    ct_json__member x = m[i];
    size_t j = i;
    while (j > 0 && ct_json__member_cmp(&m[j - 1], &x) > 0) {
      m[j] = m[j - 1];
      j--;
    }
    m[j] = x;
  }
}

static CT_RESULT ct_json__write(const json_t *v, bool sort_keys, const ct_json__splice *sp, ct_buf *out, int depth,
                                ct_err *err) {
  CT_ENSURE(depth <= 2048, err, CT_ELIMIT, "JSON value too deep to serialise");
  if (sp && v == sp->value) return ct_json__put(out, sp->text, sp->len, err);
  switch (json_typeof(v)) {
  case JSON_NULL: return ct_json__put(out, "null", 4, err);
  case JSON_TRUE: return ct_json__put(out, "true", 4, err);
  case JSON_FALSE: return ct_json__put(out, "false", 5, err);
  case JSON_INTEGER: {
    char num[24];
    return ct_json__put(out, num, ct_json__format_int(json_integer_value(v), num), err);
  }
  case JSON_REAL: {
    /* Rare on these paths; jansson keeps its own number formatting. */
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    CT_ENSURE(text, err, CT_ENOMEM, "out of memory serialising JSON");
    ct_status st = ct_json__put(out, text, strlen(text), err);
    free(text);
    return st;
  }
  case JSON_STRING: return ct_json__write_string(json_string_value(v), json_string_length(v), out, err);
  case JSON_ARRAY: {
    CT_GUARD(ct_json__put(out, "[", 1, err));
    for (size_t i = 0; i < json_array_size(v); i++) {
      if (i) CT_GUARD(ct_json__put(out, ",", 1, err));
      CT_GUARD(ct_json__write(json_array_get(v, i), sort_keys, sp, out, depth + 1, err));
    }
    return ct_json__put(out, "]", 1, err);
  }
  case JSON_OBJECT: {
    size_t n = json_object_size(v);
    ct_json__member stack[16], *m = n <= 16 ? stack : malloc(n * sizeof *m);
    CT_ENSURE(m, err, CT_ENOMEM, "out of memory serialising JSON");
    size_t i = 0;
    for (void *it = json_object_iter((json_t *)v); it && i < n; it = json_object_iter_next((json_t *)v, it), i++) {
      m[i].key = json_object_iter_key(it);
      m[i].len = json_object_iter_key_len(it);
      m[i].value = json_object_iter_value(it);
    }
    if (sort_keys) ct_json__sort_members(m, i);
    ct_status st = ct_json__put(out, "{", 1, err);
    for (size_t k = 0; st == CT_OK && k < i; k++) {
      if (k) st = ct_json__put(out, ",", 1, err);
      if (st == CT_OK) st = ct_json__write_string(m[k].key, m[k].len, out, err);
      if (st == CT_OK) st = ct_json__put(out, ":", 1, err);
      if (st == CT_OK) st = ct_json__write(m[k].value, sort_keys, sp, out, depth + 1, err);
    }
    if (m != stack) free(m);
    CT_GUARD(st);
    return ct_json__put(out, "}", 1, err);
  }
  }
  return ct_fail(err, CT_EINVAL, "unknown JSON type");
}

CT_RESULT ct_json_write(const json_t *value, bool sort_keys, ct_buf *out, ct_err *err) {
  CT_ENSURE(value, err, CT_EINVAL, "no JSON value to serialise");
  return ct_json__write(value, sort_keys, NULL, out, 0, err);
}

CT_RESULT ct_json_write_spliced(const json_t *value, bool sort_keys, const json_t *inner, const char *inner_text,
                                size_t inner_len, ct_buf *out, ct_err *err) {
  CT_ENSURE(value && inner && inner_text, err, CT_EINVAL, "no JSON value to serialise");
  ct_json__splice sp = {inner, inner_text, inner_len};
  return ct_json__write(value, sort_keys, &sp, out, 0, err);
}

CT_RESULT ct_json_write_string(const char *s, size_t len, ct_buf *out, ct_err *err) {
  return ct_json__write_string(s, len, out, err);
}

CT_RESULT ct_json_dump(const json_t *value, char **out, ct_err *err) {
  ct_buf b;
  ct_buf_init(&b, SIZE_MAX);
  if (ct_json_write(value, true, &b, err) != CT_OK) {
    ct_buf_free(&b);
    return err->code;
  }
  if (!b.data) CT_GUARD(ct_buf_append(&b, "", 0, err));
  *out = (char *)ct_buf_take(&b, NULL);
  CT_ENSURE(*out, err, CT_ENOMEM, "out of memory serialising JSON");
  return CT_OK;
}

/* --- a parsed copy without the text ------------------------------------------------------------ */

/* What ct_json_parse takes back from the writer's text: valid UTF-8 without NUL characters. */
static bool ct_json__readable(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
    if (n - i >= 8) {
      uint64_t w;
      memcpy(&w, s + i, sizeof w);
      const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
      if (!(((w - ones) & ~w) & highs) && !(w & highs)) {
        i += 8;
        continue;
      }
    }
    if (!s[i]) return false;
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    size_t k = ct_json__utf8_len(s + i, n - i);
    if (!k) return false;
    i += k;
  }
  return true;
}

/* At least what jansson 2.14 allocates for a value, allocator overhead included (a number 24-byte
 * struct; a string 32 bytes plus its copy; an array 40 bytes plus 8 per slot, doubled as it
 * grows; an object 72 bytes, 16 per hashtable bucket - at most two per member, eight at first -
 * and a 57-byte pair plus the key per member), so that a cache of copies can be bounded by
 * bytes. */
#define CT_JSON__COST_NUMBER 32u
#define CT_JSON__COST_STRING 80u
#define CT_JSON__COST_ARRAY 128u
#define CT_JSON__COST_ELEMENT 16u
#define CT_JSON__COST_OBJECT 256u
#define CT_JSON__COST_MEMBER 112u

static CT_RESULT ct_json__sorted_copy(const json_t *v, size_t level, size_t max_depth, json_t **out, size_t *bytes,
                                      ct_err *err) {
  *out = NULL;
  switch (json_typeof(v)) {
  case JSON_NULL: *out = json_null(); break;
  case JSON_TRUE: *out = json_true(); break;
  case JSON_FALSE: *out = json_false(); break;
  case JSON_INTEGER: *out = json_integer(json_integer_value(v)); break;
  case JSON_REAL: *out = json_real(json_real_value(v)); break;
  case JSON_STRING: {
    const char *str = json_string_value(v);
    size_t n = json_string_length(v);
    CT_ENSURE(ct_json__readable(str, n), err, CT_EINVAL, "a JSON string holds a NUL character or is not UTF-8");
    *out = json_stringn_nocheck(str, n);
    *bytes += CT_JSON__COST_STRING + n;
    CT_ENSURE(*out, err, CT_ENOMEM, "out of memory copying JSON");
    return CT_OK;
  }
  case JSON_ARRAY: {
    CT_ENSURE(level + 1 <= max_depth, err, CT_ELIMIT, "JSON nesting deeper than %zu", max_depth);
    json_t *a = json_array();
    CT_ENSURE(a, err, CT_ENOMEM, "out of memory copying JSON");
    for (size_t i = 0; i < json_array_size(v); i++) {
      json_t *e = NULL;
      ct_status st = ct_json__sorted_copy(json_array_get(v, i), level + 1, max_depth, &e, bytes, err);
      if (st == CT_OK && json_array_append_new(a, e) != 0) st = ct_fail(err, CT_ENOMEM, "out of memory copying JSON");
      if (st != CT_OK) {
        json_decref(a);
        return st;
      }
      *bytes += CT_JSON__COST_ELEMENT;
    }
    *out = a;
    *bytes += CT_JSON__COST_ARRAY;
    return CT_OK;
  }
  case JSON_OBJECT: {
    CT_ENSURE(level + 1 <= max_depth, err, CT_ELIMIT, "JSON nesting deeper than %zu", max_depth);
    size_t n = json_object_size(v);
    ct_json__member stack[16], *m = n <= 16 ? stack : malloc(n * sizeof *m);
    CT_ENSURE(m, err, CT_ENOMEM, "out of memory copying JSON");
    size_t i = 0;
    for (void *it = json_object_iter((json_t *)v); it && i < n; it = json_object_iter_next((json_t *)v, it), i++) {
      m[i].key = json_object_iter_key(it);
      m[i].len = json_object_iter_key_len(it);
      m[i].value = json_object_iter_value(it);
    }
    /* the order ct_json_dump writes, which a parse keeps */
    ct_json__sort_members(m, i);
    json_t *o = json_object();
    ct_status st = o ? CT_OK : ct_fail(err, CT_ENOMEM, "out of memory copying JSON");
    for (size_t k = 0; st == CT_OK && k < i; k++) {
      json_t *e = NULL;
      if (!ct_json__readable(m[k].key, m[k].len))
        st = ct_fail(err, CT_EINVAL, "a JSON key holds a NUL character or is not UTF-8");
      if (st == CT_OK) st = ct_json__sorted_copy(m[k].value, level + 1, max_depth, &e, bytes, err);
      if (st == CT_OK && json_object_setn_new_nocheck(o, m[k].key, m[k].len, e) != 0)
        st = ct_fail(err, CT_ENOMEM, "out of memory copying JSON");
      *bytes += CT_JSON__COST_MEMBER + m[k].len;
    }
    if (m != stack) free(m);
    if (st != CT_OK) {
      json_decref(o);
      return st;
    }
    *out = o;
    *bytes += CT_JSON__COST_OBJECT;
    return CT_OK;
  }
  }
  CT_ENSURE(*out, err, CT_ENOMEM, "out of memory copying JSON");
  *bytes += CT_JSON__COST_NUMBER; /* counted for null and booleans too, which are shared */
  return CT_OK;
}

CT_RESULT ct_json_sorted_copy(const json_t *value, size_t max_depth, json_t **out, size_t *bytes, ct_err *err) {
  CT_ENSURE(value, err, CT_EINVAL, "no JSON value to copy");
  size_t total = 0;
  CT_GUARD(ct_json__sorted_copy(value, 0, max_depth, out, &total, err));
  if (bytes) *bytes = total;
  return CT_OK;
}

CT_RESULT ct_json_set_new(json_t *obj, const char *key, json_t *value, ct_err *err) {
  if (!value) return ct_fail(err, CT_ENOMEM, "out of memory building JSON member \"%s\"", key);
  if (json_object_set_new(obj, key, value) != 0)
    return ct_fail(err, CT_ENOMEM, "out of memory setting JSON member \"%s\"", key);
  return CT_OK;
}
