/*
 * toml.c - TOML 1.0 recursive-descent parser into jansson values.
 *
 * The tree is built directly as jansson objects and arrays. What TOML needs beyond JSON -
 * whether a table was defined by a [header], created implicitly by a longer header, created by
 * dotted keys, or is a sealed inline table, and whether an array is an array of tables - lives
 * in a side table keyed by the container's address (toml__meta).
 */
#include "toml.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_buf.h"
#include "ct_file.h"

enum {
  TOML__IMPLICIT = 1, /* created as a prefix of a [header] path */
  TOML__EXPLICIT = 2, /* defined by its own [header] or [[header]] */
  TOML__DOTTED = 4,   /* created by a dotted key */
  TOML__INLINE = 8,   /* an inline table: sealed once parsed */
  TOML__AOT = 16,     /* an array created by [[header]] */
};

#define TOML__MAX_KEY_PARTS TOML_MAX_DEPTH
#define TOML__STR_MAX ((size_t)64 << 20)

typedef struct toml__slot {
  const json_t *key;
  unsigned flags;
} toml__slot;

typedef struct toml__p {
  const char *s;
  size_t n, i;
  ct_err *err;
  json_t *root;
  json_t *cur;         /* the table key/value lines go into */
  size_t cur_depth;    /* JSON nesting depth of cur (root = 1) */
  toml__slot *meta;    /* open addressing, power-of-two capacity */
  size_t meta_cap, meta_used;
  size_t values;
} toml__p;

typedef struct toml__key {
  char *part[TOML__MAX_KEY_PARTS];
  size_t n;
  size_t at; /* offset of the key's first character, for messages */
} toml__key;

/* ---------------------------------------------------------------- errors */

/* Fails with "line L, column C: msg" for byte offset `at`. */
CT_PRINTF(4, 5)
static CT_RESULT toml__fail(toml__p *p, size_t at, ct_status code, const char *fmt, ...) {
  if (at > p->n) at = p->n;
  size_t line = 1, col = 1;
  for (size_t k = 0; k < at; k++) {
    unsigned char c = (unsigned char)p->s[k];
    if (c == '\n') {
      line++;
      col = 1;
    } else if ((c & 0xC0) != 0x80) {
      col++;
    }
  }
  char what[CT_ERR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return ct_fail(p->err, code, "line %zu, column %zu: %s", line, col, what);
}

static CT_RESULT toml__oom(toml__p *p) { return ct_fail(p->err, CT_ENOMEM, "toml: out of memory"); }

/* Renders a key (or its first `n` parts) as a.b.c for messages. */
static const char *toml__keystr(const toml__key *k, size_t n, char *buf, size_t cap) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t j = 0; j < n && used + 1 < cap; j++) {
    int w = snprintf(buf + used, cap - used, "%s%s", j ? "." : "", k->part[j]);
    if (w < 0) break;
    used += (size_t)w;
  }
  if (used >= cap && cap > 4) memcpy(buf + cap - 4, "...", 4);
  return buf;
}

static void toml__key_free(toml__key *k) {
  for (size_t j = 0; j < k->n; j++) free(k->part[j]);
  k->n = 0;
}

/* ---------------------------------------------------------------- metadata side table */

static size_t toml__hash(const json_t *v, size_t cap) {
  uint64_t x = (uint64_t)(uintptr_t)v;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return (size_t)x & (cap - 1);
}

static unsigned toml__flags(const toml__p *p, const json_t *v) {
  if (!p->meta_cap) return 0;
  for (size_t h = toml__hash(v, p->meta_cap);; h = (h + 1) & (p->meta_cap - 1)) {
    if (!p->meta[h].key) return 0;
    if (p->meta[h].key == v) return p->meta[h].flags;
  }
}

static CT_RESULT toml__set_flags(toml__p *p, const json_t *v, unsigned flags) {
  if ((p->meta_used + 1) * 2 > p->meta_cap) {
    size_t ncap = p->meta_cap ? p->meta_cap * 2 : 256;
    toml__slot *nm = calloc(ncap, sizeof *nm);
    if (!nm) return toml__oom(p);
    for (size_t j = 0; j < p->meta_cap; j++) {
      if (!p->meta[j].key) continue;
      size_t h = toml__hash(p->meta[j].key, ncap);
      while (nm[h].key) h = (h + 1) & (ncap - 1);
      nm[h] = p->meta[j];
    }
    free(p->meta);
    p->meta = nm;
    p->meta_cap = ncap;
  }
  size_t h = toml__hash(v, p->meta_cap);
  while (p->meta[h].key && p->meta[h].key != v) h = (h + 1) & (p->meta_cap - 1);
  if (!p->meta[h].key) p->meta_used++;
  p->meta[h].key = v;
  p->meta[h].flags = flags;
  return CT_OK;
}

/* Counts one more value against TOML_MAX_VALUES. */
static CT_RESULT toml__count(toml__p *p, size_t at) {
  if (++p->values > TOML_MAX_VALUES)
    return toml__fail(p, at, CT_ELIMIT, "more than %d values in one document", TOML_MAX_VALUES);
  return CT_OK;
}

/* Creates an empty table with `flags`, stored under `key` in `parent`. */
static CT_RESULT toml__new_table(toml__p *p, json_t *parent, const char *key, unsigned flags,
                                 size_t at, json_t **out) {
  CT_GUARD(toml__count(p, at));
  json_t *t = json_object();
  if (!t) return toml__oom(p);
  if (json_object_set_new(parent, key, t) != 0) return toml__oom(p);
  CT_GUARD(toml__set_flags(p, t, flags));
  *out = t;
  return CT_OK;
}

/* ---------------------------------------------------------------- lexing helpers */

static int toml__peek(const toml__p *p, size_t ahead) {
  return p->i + ahead < p->n ? (unsigned char)p->s[p->i + ahead] : -1;
}

static bool toml__is_bare(int c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

static bool toml__is_digit(int c) { return c >= '0' && c <= '9'; }

static void toml__skip_ws(toml__p *p) {
  while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t')) p->i++;
}

/* True (and consumes it) at LF or CRLF. */
static bool toml__newline(toml__p *p) {
  if (toml__peek(p, 0) == '\n') {
    p->i++;
    return true;
  }
  if (toml__peek(p, 0) == '\r' && toml__peek(p, 1) == '\n') {
    p->i += 2;
    return true;
  }
  return false;
}

/* Control characters other than tab are not allowed in comments or strings. */
static bool toml__is_control(int c) { return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f; }

static CT_RESULT toml__skip_comment(toml__p *p) {
  if (toml__peek(p, 0) != '#') return CT_OK;
  while (p->i < p->n && p->s[p->i] != '\n') {
    int c = (unsigned char)p->s[p->i];
    if (c == '\r' && toml__peek(p, 1) == '\n') break;
    if (toml__is_control(c))
      return toml__fail(p, p->i, CT_EINVAL, "control character U+%04X in a comment", c);
    p->i++;
  }
  return CT_OK;
}

/* After a statement: optional whitespace and comment, then a newline or the end. */
static CT_RESULT toml__end_line(toml__p *p, const char *after) {
  toml__skip_ws(p);
  CT_GUARD(toml__skip_comment(p));
  if (p->i >= p->n || toml__newline(p)) return CT_OK;
  return toml__fail(p, p->i, CT_EINVAL, "expected a newline after %s", after);
}

/* Skips whitespace, newlines and comments (inside arrays). */
static CT_RESULT toml__skip_ws_nl(toml__p *p) {
  for (;;) {
    toml__skip_ws(p);
    CT_GUARD(toml__skip_comment(p));
    if (!toml__newline(p)) return CT_OK;
  }
}

/* Rejects malformed UTF-8 (overlong forms, surrogates, values above U+10FFFF) anywhere. */
static CT_RESULT toml__check_utf8(toml__p *p) {
  const unsigned char *s = (const unsigned char *)p->s;
  size_t k = 0;
  while (k < p->n) {
    unsigned c = s[k];
    if (c < 0x80) {
      k++;
      continue;
    }
    size_t need;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      cp = c & 0x07;
    } else {
      return toml__fail(p, k, CT_EINVAL, "invalid UTF-8 byte 0x%02X", c);
    }
    if (k + need >= p->n)
      return toml__fail(p, k, CT_EINVAL, "truncated UTF-8 sequence");
    for (size_t j = 1; j <= need; j++) {
      if ((s[k + j] & 0xC0) != 0x80) return toml__fail(p, k, CT_EINVAL, "invalid UTF-8 sequence");
      cp = (cp << 6) | (s[k + j] & 0x3F);
    }
    if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return toml__fail(p, k, CT_EINVAL, "invalid UTF-8 sequence (overlong, surrogate or out of range)");
    k += need + 1;
  }
  return CT_OK;
}

static CT_RESULT toml__put_utf8(toml__p *p, ct_buf *b, uint32_t cp) {
  uint8_t u[4];
  size_t n;
  if (cp < 0x80) {
    u[0] = (uint8_t)cp;
    n = 1;
  } else if (cp < 0x800) {
    u[0] = (uint8_t)(0xC0 | (cp >> 6));
    u[1] = (uint8_t)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    u[0] = (uint8_t)(0xE0 | (cp >> 12));
    u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (uint8_t)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    u[0] = (uint8_t)(0xF0 | (cp >> 18));
    u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (uint8_t)(0x80 | (cp & 0x3F));
    n = 4;
  }
  return ct_buf_append(b, u, n, p->err);
}

/* ---------------------------------------------------------------- strings */

/* Handles one escape after the backslash at p->i - 1 (basic strings). */
static CT_RESULT toml__escape(toml__p *p, ct_buf *b) {
  size_t at = p->i - 1;
  int c = toml__peek(p, 0);
  const char *simple = NULL;
  switch (c) {
  case 'b': simple = "\b"; break;
  case 't': simple = "\t"; break;
  case 'n': simple = "\n"; break;
  case 'f': simple = "\f"; break;
  case 'r': simple = "\r"; break;
  case '"': simple = "\""; break;
  case '\\': simple = "\\"; break;
  case 'u':
  case 'U': {
    size_t digits = c == 'u' ? 4 : 8;
    uint32_t cp = 0;
    for (size_t j = 1; j <= digits; j++) {
      int h = toml__peek(p, j);
      unsigned v;
      if (h >= '0' && h <= '9') v = (unsigned)(h - '0');
      else if (h >= 'a' && h <= 'f') v = (unsigned)(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v = (unsigned)(h - 'A' + 10);
      else return toml__fail(p, at, CT_EINVAL, "bad escape: \\%c needs %zu hex digits", c, digits);
      if (cp > 0x10FFFF) break;
      cp = (cp << 4) | v;
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return toml__fail(p, at, CT_EINVAL, "bad escape: \\%c is not a Unicode scalar value", c);
    if (cp == 0)
      return toml__fail(p, at, CT_EINVAL, "bad escape: U+0000 is not supported in strings");
    p->i += 1 + digits;
    return toml__put_utf8(p, b, cp);
  }
  default:
    if (c < 0) return toml__fail(p, at, CT_EINVAL, "unterminated string");
    if (c >= 0x20 && c < 0x7f)
      return toml__fail(p, at, CT_EINVAL, "bad escape sequence '\\%c'", c);
    return toml__fail(p, at, CT_EINVAL, "bad escape sequence (backslash followed by 0x%02X)", c);
  }
  p->i++;
  return ct_buf_append(b, simple, 1, p->err);
}

/* Parses a string starting at p->i (on its first quote) into a malloc'd NUL-terminated string.
 * `allow_multi` is false for keys. */
static CT_RESULT toml__string(toml__p *p, bool allow_multi, char **out, size_t *out_len) {
  size_t start = p->i;
  char q = p->s[p->i];
  bool literal = q == '\'';
  bool multi = toml__peek(p, 1) == q && toml__peek(p, 2) == q;
  if (multi && !allow_multi)
    return toml__fail(p, start, CT_EINVAL, "multi-line strings cannot be keys");
  ct_buf b;
  ct_buf_init(&b, TOML__STR_MAX);
  ct_status st = CT_OK;
  if (multi) {
    p->i += 3;
    (void)toml__newline(p); /* a newline right after the delimiter is trimmed */
  } else {
    p->i += 1;
  }
  for (;;) {
    int c = toml__peek(p, 0);
    if (c < 0) {
      st = toml__fail(p, start, CT_EINVAL, "unterminated string");
      goto fail;
    }
    if (c == q) {
      if (!multi) {
        p->i++;
        break;
      }
      size_t run = 0;
      while (toml__peek(p, run) == q) run++;
      if (run < 3) {
        CT_GUARD_GOTO(st, ct_buf_append(&b, p->s + p->i, run, p->err), fail);
        p->i += run;
        continue;
      }
      if (run > 5) {
        st = toml__fail(p, p->i, CT_EINVAL, "too many quotes at the end of a multi-line string");
        goto fail;
      }
      CT_GUARD_GOTO(st, ct_buf_append(&b, p->s + p->i, run - 3, p->err), fail);
      p->i += run;
      break;
    }
    if (c == '\n' || (c == '\r' && toml__peek(p, 1) == '\n')) {
      if (!multi) {
        st = toml__fail(p, start, CT_EINVAL, "unterminated string (newline before the closing quote)");
        goto fail;
      }
      (void)toml__newline(p);
      CT_GUARD_GOTO(st, ct_buf_append(&b, "\n", 1, p->err), fail);
      continue;
    }
    if (toml__is_control(c)) {
      st = toml__fail(p, p->i, CT_EINVAL, "control character U+%04X in a string", c);
      goto fail;
    }
    if (c == '\\' && !literal) {
      if (multi) {
        /* A line-ending backslash swallows the newline and all whitespace that follows. */
        size_t k = p->i + 1;
        while (k < p->n && (p->s[k] == ' ' || p->s[k] == '\t')) k++;
        if (k < p->n && (p->s[k] == '\n' || (p->s[k] == '\r' && k + 1 < p->n && p->s[k + 1] == '\n'))) {
          p->i = k;
          for (;;) {
            toml__skip_ws(p);
            if (!toml__newline(p)) break;
          }
          continue;
        }
      }
      p->i++;
      CT_GUARD_GOTO(st, toml__escape(p, &b), fail);
      continue;
    }
    CT_GUARD_GOTO(st, ct_buf_append(&b, p->s + p->i, 1, p->err), fail);
    p->i++;
  }
  if (!b.data) {
    *out = calloc(1, 1);
    if (!*out) return toml__oom(p);
    *out_len = 0;
    return CT_OK;
  }
  if (memchr(b.data, 0, b.len)) {
    st = toml__fail(p, start, CT_EINVAL, "NUL characters are not supported in strings");
    goto fail;
  }
  *out = (char *)ct_buf_take(&b, out_len);
  return CT_OK;
fail:
  ct_buf_free(&b);
  return st;
}

/* ---------------------------------------------------------------- keys */

static CT_RESULT toml__simple_key(toml__p *p, char **out) {
  int c = toml__peek(p, 0);
  if (c == '"' || c == '\'') {
    size_t len;
    return toml__string(p, false, out, &len);
  }
  size_t start = p->i;
  while (p->i < p->n && toml__is_bare((unsigned char)p->s[p->i])) p->i++;
  if (p->i == start) {
    if (c < 0 || c == '\n' || c == '\r')
      return toml__fail(p, start, CT_EINVAL, "expected a key");
    if (c >= 0x20 && c < 0x7f)
      return toml__fail(p, start, CT_EINVAL, "expected a key, found '%c'", c);
    return toml__fail(p, start, CT_EINVAL, "expected a key (bare keys are A-Z a-z 0-9 _ -)");
  }
  *out = strndup(p->s + start, p->i - start);
  return *out ? CT_OK : toml__oom(p);
}

/* key = simple-key *( ws "." ws simple-key ) */
static CT_RESULT toml__key_parse(toml__p *p, toml__key *k) {
  k->n = 0;
  k->at = p->i;
  for (;;) {
    if (k->n == TOML__MAX_KEY_PARTS) {
      toml__key_free(k);
      return toml__fail(p, p->i, CT_ELIMIT, "key has more than %d parts", TOML__MAX_KEY_PARTS);
    }
    ct_status st = toml__simple_key(p, &k->part[k->n]);
    if (st) {
      toml__key_free(k);
      return st;
    }
    k->n++;
    toml__skip_ws(p);
    if (toml__peek(p, 0) != '.') return CT_OK;
    p->i++;
    toml__skip_ws(p);
  }
}

/* ---------------------------------------------------------------- values */

static CT_RESULT toml__value(toml__p *p, size_t depth, json_t **out);

/* Reads `n` digits at p->i into *v; false if they are not all digits. */
static bool toml__digits(toml__p *p, size_t off, size_t n, int *v) {
  int x = 0;
  for (size_t j = 0; j < n; j++) {
    int c = toml__peek(p, off + j);
    if (!toml__is_digit(c)) return false;
    x = x * 10 + (c - '0');
  }
  *v = x;
  return true;
}

static bool toml__leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

/* HH:MM:SS(.frac)? at p->i + off; returns its length or 0. */
static size_t toml__time_len(toml__p *p, size_t off, bool *range_ok) {
  int h, m, s;
  if (!toml__digits(p, off, 2, &h) || toml__peek(p, off + 2) != ':' ||
      !toml__digits(p, off + 3, 2, &m) || toml__peek(p, off + 5) != ':' ||
      !toml__digits(p, off + 6, 2, &s))
    return 0;
  *range_ok = h <= 23 && m <= 59 && s <= 60;
  size_t len = 8;
  if (toml__peek(p, off + len) == '.') {
    size_t d = 0;
    while (toml__is_digit(toml__peek(p, off + len + 1 + d))) d++;
    if (d == 0) return 0;
    len += 1 + d;
  }
  return len;
}

/* Offset date-time, local date-time, local date or local time. */
static CT_RESULT toml__datetime(toml__p *p, json_t **out) {
  size_t start = p->i;
  size_t len = 0;
  bool ok = true;
  char buf[128];
  size_t used = 0;
  int y, mo, d;
  if (toml__digits(p, 0, 4, &y) && toml__peek(p, 4) == '-') {
    if (!toml__digits(p, 5, 2, &mo) || toml__peek(p, 7) != '-' || !toml__digits(p, 8, 2, &d))
      return toml__fail(p, start, CT_EINVAL, "invalid date (expected YYYY-MM-DD)");
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && toml__leap(y)))
      return toml__fail(p, start, CT_EINVAL, "invalid date: month or day out of range");
    memcpy(buf, p->s + start, 10);
    used = len = 10;
    int sep = toml__peek(p, 10);
    bool time_ok = true;
    size_t tl = 0;
    if (sep == 'T' || sep == 't' || sep == ' ') tl = toml__time_len(p, 11, &time_ok);
    if (tl == 0 && (sep == 'T' || sep == 't'))
      return toml__fail(p, start, CT_EINVAL, "invalid date-time: expected HH:MM:SS after '%c'", sep);
    if (tl) {
      if (!time_ok) return toml__fail(p, start, CT_EINVAL, "invalid time: hour, minute or second out of range");
      if (tl > 80) return toml__fail(p, start, CT_ELIMIT, "date-time fraction too long");
      buf[used++] = 'T';
      memcpy(buf + used, p->s + start + 11, tl);
      used += tl;
      len = 11 + tl;
      int z = toml__peek(p, len);
      if (z == 'Z' || z == 'z') {
        buf[used++] = 'Z';
        len++;
      } else if (z == '+' || z == '-') {
        int oh, om;
        if (!toml__digits(p, len + 1, 2, &oh) || toml__peek(p, len + 3) != ':' ||
            !toml__digits(p, len + 4, 2, &om))
          return toml__fail(p, start, CT_EINVAL, "invalid date-time offset (expected +HH:MM)");
        if (oh > 23 || om > 59)
          return toml__fail(p, start, CT_EINVAL, "invalid date-time offset: out of range");
        memcpy(buf + used, p->s + start + len, 6);
        used += 6;
        len += 6;
      }
    }
  } else {
    len = toml__time_len(p, 0, &ok);
    if (len == 0) return toml__fail(p, start, CT_EINVAL, "invalid time (expected HH:MM:SS)");
    if (!ok) return toml__fail(p, start, CT_EINVAL, "invalid time: hour, minute or second out of range");
    if (len > 100) return toml__fail(p, start, CT_ELIMIT, "time fraction too long");
    memcpy(buf, p->s + start, len);
    used = len;
  }
  if (toml__is_bare(toml__peek(p, len)) || toml__peek(p, len) == ':' || toml__peek(p, len) == '.')
    return toml__fail(p, start, CT_EINVAL, "invalid date-time");
  p->i += len;
  *out = json_stringn(buf, used);
  return *out ? CT_OK : toml__oom(p);
}

/* Copies digits at s[j..] with underscores each between two digits (of the given base) into
 * buf; returns the new j or (size_t)-1 on a misplaced underscore / no digits. */
static size_t toml__digit_run(const char *s, size_t j, size_t end, int base, char *buf, size_t *bl,
                              size_t cap) {
  size_t start = j;
  bool prev_digit = false;
  for (; j < end; j++) {
    char c = s[j];
    bool dig = base == 16 ? ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
               : base == 8 ? (c >= '0' && c <= '7')
               : base == 2 ? (c == '0' || c == '1')
                           : (c >= '0' && c <= '9');
    if (dig) {
      if (*bl + 1 >= cap) return (size_t)-2;
      buf[(*bl)++] = c;
      prev_digit = true;
    } else if (c == '_') {
      if (!prev_digit || j + 1 >= end) return (size_t)-1;
      prev_digit = false;
    } else {
      break;
    }
  }
  if (j == start || !prev_digit) return (size_t)-1;
  return j;
}

static CT_RESULT toml__number(toml__p *p, json_t **out) {
  size_t start = p->i, end = p->i;
  /* The token: everything that can belong to a number. */
  while (end < p->n) {
    char c = p->s[end];
    if (toml__is_bare((unsigned char)c) || c == '+' || c == '.' ||
        ((c == '-' || c == '+') && end > start))
      end++;
    else
      break;
  }
  const char *s = p->s;
  size_t tl = end - start;
  if (tl > 512) return toml__fail(p, start, CT_ELIMIT, "number too long");
  char buf[600];
  size_t bl = 0;
  size_t j = start;
  bool neg = false, sign = false;
  if (s[j] == '+' || s[j] == '-') {
    neg = s[j] == '-';
    sign = true;
    j++;
  }
  const char *rest = s + j;
  size_t rl = end - j;
  if ((rl == 3 && (!memcmp(rest, "inf", 3) || !memcmp(rest, "nan", 3))))
    return toml__fail(p, start, CT_EINVAL, "inf and nan cannot be represented in JSON");
  if (rl >= 2 && rest[0] == '0' && (rest[1] == 'x' || rest[1] == 'o' || rest[1] == 'b')) {
    int base = rest[1] == 'x' ? 16 : rest[1] == 'o' ? 8 : 2;
    if (sign) return toml__fail(p, start, CT_EINVAL, "invalid number: a sign is not allowed on hex, octal or binary integers");
    size_t k = toml__digit_run(s, j + 2, end, base, buf, &bl, sizeof buf);
    if (k == (size_t)-2) return toml__fail(p, start, CT_ELIMIT, "number too long");
    if (k != end)
      return toml__fail(p, start, CT_EINVAL, "invalid number: bad %s integer",
                        base == 16 ? "hexadecimal" : base == 8 ? "octal" : "binary");
    buf[bl] = '\0';
    errno = 0;
    unsigned long long v = strtoull(buf, NULL, base);
    if (errno == ERANGE || v > (unsigned long long)INT64_MAX)
      return toml__fail(p, start, CT_EINVAL, "integer overflow: does not fit in 64 bits (signed)");
    *out = json_integer((json_int_t)v);
    p->i = end;
    return *out ? CT_OK : toml__oom(p);
  }
  if (neg) buf[bl++] = '-';
  size_t int_start = j;
  size_t k = toml__digit_run(s, j, end, 10, buf, &bl, sizeof buf);
  if (k == (size_t)-2) return toml__fail(p, start, CT_ELIMIT, "number too long");
  if (k == (size_t)-1) return toml__fail(p, start, CT_EINVAL, "invalid number");
  if (s[int_start] == '0' && k - int_start > 1)
    return toml__fail(p, start, CT_EINVAL, "invalid number: leading zeros are not allowed");
  bool is_float = false;
  if (k < end && s[k] == '.') {
    is_float = true;
    buf[bl++] = '.';
    k = toml__digit_run(s, k + 1, end, 10, buf, &bl, sizeof buf);
    if (k == (size_t)-2) return toml__fail(p, start, CT_ELIMIT, "number too long");
    if (k == (size_t)-1)
      return toml__fail(p, start, CT_EINVAL, "invalid number: a decimal point needs digits on both sides");
  }
  if (k < end && (s[k] == 'e' || s[k] == 'E')) {
    is_float = true;
    buf[bl++] = 'e';
    k++;
    if (k < end && (s[k] == '+' || s[k] == '-')) buf[bl++] = s[k++];
    k = toml__digit_run(s, k, end, 10, buf, &bl, sizeof buf);
    if (k == (size_t)-2) return toml__fail(p, start, CT_ELIMIT, "number too long");
    if (k == (size_t)-1) return toml__fail(p, start, CT_EINVAL, "invalid number: bad exponent");
  }
  if (k != end) return toml__fail(p, start, CT_EINVAL, "invalid number");
  buf[bl] = '\0';
  if (is_float) {
    errno = 0;
    double v = strtod(buf, NULL);
    if (!isfinite(v)) return toml__fail(p, start, CT_EINVAL, "float out of range");
    *out = json_real(v);
  } else {
    errno = 0;
    long long v = strtoll(buf, NULL, 10);
    if (errno == ERANGE)
      return toml__fail(p, start, CT_EINVAL, "integer overflow: does not fit in 64 bits (signed)");
    *out = json_integer((json_int_t)v);
  }
  p->i = end;
  return *out ? CT_OK : toml__oom(p);
}

static CT_RESULT toml__check_depth(toml__p *p, size_t depth) {
  if (depth > TOML_MAX_DEPTH)
    return toml__fail(p, p->i, CT_ELIMIT, "nesting deeper than %d levels", TOML_MAX_DEPTH);
  return CT_OK;
}

static CT_RESULT toml__array(toml__p *p, size_t depth, json_t **out) {
  CT_GUARD(toml__check_depth(p, depth));
  size_t start = p->i;
  p->i++; /* '[' */
  json_t *a = json_array();
  if (!a) return toml__oom(p);
  ct_status st;
  for (;;) {
    CT_GUARD_GOTO(st, toml__skip_ws_nl(p), fail);
    if (toml__peek(p, 0) == ']') break;
    if (toml__peek(p, 0) < 0) {
      st = toml__fail(p, start, CT_EINVAL, "unterminated array");
      goto fail;
    }
    json_t *v = NULL;
    CT_GUARD_GOTO(st, toml__value(p, depth + 1, &v), fail);
    if (json_array_append_new(a, v) != 0) {
      st = toml__oom(p);
      goto fail;
    }
    CT_GUARD_GOTO(st, toml__skip_ws_nl(p), fail);
    int c = toml__peek(p, 0);
    if (c == ',') {
      p->i++;
      continue;
    }
    if (c == ']') break;
    st = toml__fail(p, c < 0 ? start : p->i, CT_EINVAL,
                    c < 0 ? "unterminated array" : "expected ',' or ']' in an array");
    goto fail;
  }
  p->i++; /* ']' */
  *out = a;
  return CT_OK;
fail:
  json_decref(a);
  return st;
}

/* Inserts key = value under `t` following the dotted-key rules; consumes `v`. */
static CT_RESULT toml__insert(toml__p *p, json_t *t, const toml__key *k, json_t *v) {
  char ks[256], ps[256];
  for (size_t j = 0; j + 1 < k->n; j++) {
    json_t *child = json_object_get(t, k->part[j]);
    if (!child) {
      ct_status st = toml__new_table(p, t, k->part[j], TOML__DOTTED, k->at, &child);
      if (st) {
        json_decref(v);
        return st;
      }
    } else {
      unsigned f = toml__flags(p, child);
      if (!json_is_object(child) || (f & (TOML__EXPLICIT | TOML__INLINE)) || !f) {
        json_decref(v);
        const char *why = !json_is_object(child) ? (f & TOML__AOT ? "an array of tables" : "a value")
                          : (f & TOML__INLINE) ? "an inline table"
                                               : "a table defined by a [header]";
        return toml__fail(p, k->at, CT_EINVAL, "cannot add key '%s': '%s' is already %s",
                          toml__keystr(k, k->n, ks, sizeof ks), toml__keystr(k, j + 1, ps, sizeof ps),
                          why);
      }
      if (!(f & TOML__DOTTED)) {
        ct_status st = toml__set_flags(p, child, f | TOML__DOTTED);
        if (st) {
          json_decref(v);
          return st;
        }
      }
    }
    t = child;
  }
  const char *last = k->part[k->n - 1];
  if (json_object_get(t, last)) {
    json_decref(v);
    return toml__fail(p, k->at, CT_EINVAL, "duplicate key '%s'", toml__keystr(k, k->n, ks, sizeof ks));
  }
  if (json_object_set_new(t, last, v) != 0) return toml__oom(p);
  return CT_OK;
}

static CT_RESULT toml__inline_table(toml__p *p, size_t depth, json_t **out) {
  CT_GUARD(toml__check_depth(p, depth));
  size_t start = p->i;
  p->i++; /* '{' */
  json_t *t = json_object();
  if (!t) return toml__oom(p);
  ct_status st;
  toml__key k = {0};
  CT_GUARD_GOTO(st, toml__set_flags(p, t, TOML__EXPLICIT), fail);
  toml__skip_ws(p);
  if (toml__peek(p, 0) == '}') {
    p->i++;
    goto done;
  }
  for (;;) {
    toml__skip_ws(p);
    if (toml__peek(p, 0) == '}') {
      st = toml__fail(p, p->i, CT_EINVAL, "trailing comma is not allowed in an inline table");
      goto fail;
    }
    CT_GUARD_GOTO(st, toml__key_parse(p, &k), fail);
    if (toml__peek(p, 0) != '=') {
      st = toml__fail(p, p->i, CT_EINVAL, "expected '=' after a key");
      goto fail;
    }
    p->i++;
    toml__skip_ws(p);
    CT_GUARD_GOTO(st, toml__check_depth(p, depth + k.n), fail);
    json_t *v = NULL;
    CT_GUARD_GOTO(st, toml__value(p, depth + k.n, &v), fail);
    CT_GUARD_GOTO(st, toml__insert(p, t, &k, v), fail);
    toml__key_free(&k);
    toml__skip_ws(p);
    int c = toml__peek(p, 0);
    if (c == ',') {
      p->i++;
      continue;
    }
    if (c == '}') {
      p->i++;
      break;
    }
    st = toml__fail(p, c < 0 ? start : p->i, CT_EINVAL,
                    c < 0 ? "unterminated inline table"
                    : (c == '\n' || c == '\r') ? "newlines are not allowed in an inline table"
                                               : "expected ',' or '}' in an inline table");
    goto fail;
  }
done:
  CT_GUARD_GOTO(st, toml__set_flags(p, t, TOML__EXPLICIT | TOML__INLINE), fail);
  *out = t;
  return CT_OK;
fail:
  toml__key_free(&k);
  json_decref(t);
  return st;
}

/* `depth` is the nesting depth the value would have if it is a container. */
static CT_RESULT toml__value(toml__p *p, size_t depth, json_t **out) {
  size_t at = p->i;
  CT_GUARD(toml__count(p, at));
  int c = toml__peek(p, 0);
  if (c == '"' || c == '\'') {
    char *s = NULL;
    size_t len = 0;
    CT_GUARD(toml__string(p, true, &s, &len));
    *out = json_stringn(s, len);
    free(s);
    return *out ? CT_OK : toml__oom(p);
  }
  if (c == '[') return toml__array(p, depth, out);
  if (c == '{') return toml__inline_table(p, depth, out);
  if (c == 't' || c == 'f') {
    const char *word = c == 't' ? "true" : "false";
    size_t wl = strlen(word);
    if (p->n - p->i >= wl && !memcmp(p->s + p->i, word, wl) && !toml__is_bare(toml__peek(p, wl))) {
      p->i += wl;
      *out = json_boolean(c == 't');
      return CT_OK;
    }
    return toml__fail(p, at, CT_EINVAL, "invalid value (strings must be quoted)");
  }
  if (toml__is_digit(c)) {
    if (toml__is_digit(toml__peek(p, 1)) && toml__peek(p, 2) == ':') return toml__datetime(p, out);
    if (toml__is_digit(toml__peek(p, 1)) && toml__is_digit(toml__peek(p, 2)) &&
        toml__is_digit(toml__peek(p, 3)) && toml__peek(p, 4) == '-')
      return toml__datetime(p, out);
    return toml__number(p, out);
  }
  if (c == '+' || c == '-' || c == 'i' || c == 'n') return toml__number(p, out);
  if (c < 0 || c == '\n' || c == '\r' || c == '#' || c == ',' || c == ']' || c == '}')
    return toml__fail(p, at, CT_EINVAL, "expected a value");
  return toml__fail(p, at, CT_EINVAL, "invalid value (strings must be quoted)");
}

/* ---------------------------------------------------------------- statements */

/* [a.b.c] or [[a.b.c]] */
static CT_RESULT toml__header(toml__p *p) {
  size_t at = p->i;
  bool aot = toml__peek(p, 1) == '[';
  p->i += aot ? 2 : 1;
  toml__skip_ws(p);
  toml__key k = {0};
  CT_GUARD(toml__key_parse(p, &k));
  ct_status st;
  char ks[256], ps[256];
  if (toml__peek(p, 0) != ']' || (aot && toml__peek(p, 1) != ']')) {
    st = toml__fail(p, p->i, CT_EINVAL, aot ? "expected ']]' to close an array-of-tables header"
                                            : "expected ']' to close a table header");
    goto out;
  }
  p->i += aot ? 2 : 1;
  json_t *t = p->root;
  size_t depth = 1;
  for (size_t j = 0; j + 1 < k.n; j++) {
    json_t *child = json_object_get(t, k.part[j]);
    depth++;
    if (!child) {
      CT_GUARD_GOTO(st, toml__new_table(p, t, k.part[j], TOML__IMPLICIT, at, &child), out);
    } else {
      unsigned f = toml__flags(p, child);
      if (json_is_array(child) && (f & TOML__AOT)) {
        child = json_array_get(child, json_array_size(child) - 1);
        depth++;
      } else if (!json_is_object(child) || (f & TOML__INLINE) || !f) {
        st = toml__fail(p, at, CT_EINVAL, "cannot define table [%s]: '%s' is already %s",
                        toml__keystr(&k, k.n, ks, sizeof ks), toml__keystr(&k, j + 1, ps, sizeof ps),
                        json_is_object(child) ? "an inline table" : "a value");
        goto out;
      }
    }
    t = child;
  }
  depth++;
  const char *last = k.part[k.n - 1];
  json_t *child = json_object_get(t, last);
  toml__keystr(&k, k.n, ks, sizeof ks);
  if (aot) {
    if (!child) {
      CT_GUARD_GOTO(st, toml__count(p, at), out);
      child = json_array();
      if (!child || json_object_set_new(t, last, child) != 0) {
        st = toml__oom(p);
        goto out;
      }
      CT_GUARD_GOTO(st, toml__set_flags(p, child, TOML__AOT), out);
    } else if (!json_is_array(child) || !(toml__flags(p, child) & TOML__AOT)) {
      st = toml__fail(p, at, CT_EINVAL, "cannot define array of tables [[%s]]: '%s' is already %s",
                      ks, ks, json_is_array(child) ? "a static array" : json_is_object(child) ? "a table" : "a value");
      goto out;
    }
    depth++;
    CT_GUARD_GOTO(st, toml__check_depth(p, depth), out);
    CT_GUARD_GOTO(st, toml__count(p, at), out);
    json_t *elem = json_object();
    if (!elem || json_array_append_new(child, elem) != 0) {
      st = toml__oom(p);
      goto out;
    }
    CT_GUARD_GOTO(st, toml__set_flags(p, elem, TOML__EXPLICIT), out);
    p->cur = elem;
  } else {
    CT_GUARD_GOTO(st, toml__check_depth(p, depth), out);
    if (!child) {
      CT_GUARD_GOTO(st, toml__new_table(p, t, last, TOML__EXPLICIT, at, &child), out);
    } else {
      unsigned f = toml__flags(p, child);
      if (!json_is_object(child) || f != TOML__IMPLICIT) {
        const char *why = json_is_array(child) ? (f & TOML__AOT ? "an array of tables" : "a value")
                          : !json_is_object(child) ? "a value"
                          : (f & TOML__INLINE)     ? "an inline table"
                          : (f & TOML__DOTTED)     ? "a table defined by dotted keys"
                                                   : "defined (table redefinition)";
        st = toml__fail(p, at, CT_EINVAL, "cannot define table [%s]: it is already %s", ks, why);
        goto out;
      }
      CT_GUARD_GOTO(st, toml__set_flags(p, child, TOML__IMPLICIT | TOML__EXPLICIT), out);
    }
    p->cur = child;
  }
  p->cur_depth = depth;
  st = toml__end_line(p, "a table header");
out:
  toml__key_free(&k);
  return st;
}

static CT_RESULT toml__keyval(toml__p *p) {
  toml__key k = {0};
  CT_GUARD(toml__key_parse(p, &k));
  ct_status st;
  if (toml__peek(p, 0) != '=') {
    st = toml__fail(p, p->i, CT_EINVAL, "expected '=' after a key");
    goto out;
  }
  p->i++;
  toml__skip_ws(p);
  size_t depth = p->cur_depth + k.n;
  CT_GUARD_GOTO(st, toml__check_depth(p, depth), out);
  json_t *v = NULL;
  CT_GUARD_GOTO(st, toml__value(p, depth, &v), out);
  CT_GUARD_GOTO(st, toml__insert(p, p->cur, &k, v), out);
  st = toml__end_line(p, "a value");
out:
  toml__key_free(&k);
  return st;
}

CT_RESULT toml_parse(const char *text, size_t len, json_t **out, ct_err *err) {
  if (!text && len) return ct_fail(err, CT_EINVAL, "toml: no input");
  toml__p p = {.s = text ? text : "", .n = len, .err = err};
  ct_status st;
  CT_GUARD(toml__check_utf8(&p));
  if (p.n >= 3 && !memcmp(p.s, "\xEF\xBB\xBF", 3)) p.i = 3; /* byte order mark */
  p.root = json_object();
  if (!p.root) return toml__oom(&p);
  p.cur = p.root;
  p.cur_depth = 1;
  CT_GUARD_GOTO(st, toml__set_flags(&p, p.root, TOML__EXPLICIT), fail);
  while (p.i < p.n) {
    toml__skip_ws(&p);
    int c = toml__peek(&p, 0);
    if (c < 0) break;
    if (c == '#' || c == '\n' || c == '\r') {
      CT_GUARD_GOTO(st, toml__end_line(&p, "a comment"), fail);
    } else if (c == '[') {
      CT_GUARD_GOTO(st, toml__header(&p), fail);
    } else {
      CT_GUARD_GOTO(st, toml__keyval(&p), fail);
    }
  }
  free(p.meta);
  *out = p.root;
  return CT_OK;
fail:
  free(p.meta);
  json_decref(p.root);
  return st;
}

CT_RESULT toml_parse_file(const char *path, json_t **out, ct_err *err) {
  uint8_t *data = NULL;
  size_t len = 0;
  ct_status st = ct_file_read(path, TOML_FILE_MAX, &data, &len, err);
  if (st) return st;
  st = toml_parse((const char *)data, len, out, err);
  free(data);
  if (st) ct_err_prefix(err, "%s: ", path);
  return st;
}
