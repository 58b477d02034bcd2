/*
 * graphql.c - GraphQL lexer and parser producing OPA's pruned JSON AST.
 *
 * The parser follows gqlparser's grammar and, because the AST exposes comments, its token
 * machinery too: peek() skips comment tokens and remembers them as the "current comment group",
 * next() forgets it, and each AST node records the group current at the same point gqlparser
 * reads it. The first error wins; we stop there (gqlparser keeps going but discards the AST).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "graphql.h"
#include "gq_int.h"

enum {
  TK_INVALID,
  TK_EOF,
  TK_BANG,
  TK_DOLLAR,
  TK_AMP,
  TK_PARENL,
  TK_PARENR,
  TK_SPREAD,
  TK_COLON,
  TK_EQUALS,
  TK_AT,
  TK_BRACKETL,
  TK_BRACKETR,
  TK_BRACEL,
  TK_BRACER,
  TK_PIPE,
  TK_NAME,
  TK_INT,
  TK_FLOAT,
  TK_STRING,
  TK_BLOCK,
  TK_COMMENT,
};

static const char *const tk_str[] = {"<Invalid>", "<EOF>", "!", "$", "&", "(", ")", "...", ":", "=", "@",
                                     "[", "]", "{", "}", "|", "Name", "Int", "Float", "String",
                                     "BlockString", "Comment"};

typedef struct {
  int kind;
  const char *v;
  size_t vn;
  long line, col;
} gq_tok;

typedef struct {
  rg_arena *a;
  const char *s;
  size_t n;
  size_t start, end;
  long start_runes, end_runes, line, line_start;
} gq_lex;

typedef struct {
  gq_lex lx;
  rg_arena *a;
  gq_posmap *pm;
  bool failed, oom;
  char msg[CT_ERR_MSG_MAX];
  bool peeked;
  gq_tok peek_tok, prev;
  rv *comment; /* array of {Value} objects, or NULL */
  bool consuming;
  long tokens;
  int depth;
} gq_p;

/* ---------------------------------------------------------------- lexer */

/* Decodes one UTF-8 sequence like Go's utf8.DecodeRuneInString: invalid -> U+FFFD, width 1. */
static uint32_t rego__u8dec(const unsigned char *s, size_t n, size_t *w) {
  *w = 1;
  if (!n) return 0xFFFD;
  unsigned c = s[0];
  if (c < 0x80) return c;
  int len;
  uint32_t r, min;
  if ((c & 0xE0) == 0xC0) len = 2, r = c & 0x1F, min = 0x80;
  else if ((c & 0xF0) == 0xE0) len = 3, r = c & 0x0F, min = 0x800;
  else if ((c & 0xF8) == 0xF0) len = 4, r = c & 0x07, min = 0x10000;
  else return 0xFFFD;
  if ((size_t)len > n) return 0xFFFD;
  for (int i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0xFFFD;
    r = (r << 6) | (s[i] & 0x3F);
  }
  if (r < min || r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF)) return 0xFFFD;
  *w = (size_t)len;
  return r;
}

static size_t rego__u8enc(uint32_t r, char *o) {
  if (r >= 0xD800 && r <= 0xDFFF) r = 0xFFFD;
  if (r > 0x10FFFF) r = 0xFFFD;
  if (r < 0x80) {
    o[0] = (char)r;
    return 1;
  }
  if (r < 0x800) {
    o[0] = (char)(0xC0 | (r >> 6));
    o[1] = (char)(0x80 | (r & 0x3F));
    return 2;
  }
  if (r < 0x10000) {
    o[0] = (char)(0xE0 | (r >> 12));
    o[1] = (char)(0x80 | ((r >> 6) & 0x3F));
    o[2] = (char)(0x80 | (r & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (r >> 18));
  o[1] = (char)(0x80 | ((r >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((r >> 6) & 0x3F));
  o[3] = (char)(0x80 | (r & 0x3F));
  return 4;
}

static gq_tok rego__lx_tok(gq_lex *l, int kind, const char *v, size_t vn) {
  gq_tok t = {kind, v, vn, l->line, l->start_runes - l->line_start + 1};
  return t;
}
static gq_tok rego__lx_raw(gq_lex *l, int kind) { return rego__lx_tok(l, kind, l->s + l->start, l->end - l->start); }
static gq_tok rego__lx_err(gq_lex *l) {
  gq_tok t = {TK_INVALID, "", 0, l->line, l->end_runes - l->line_start + 1};
  return t;
}

static void rego__lx_ws(gq_lex *l) {
  while (l->end < l->n) {
    unsigned char c = (unsigned char)l->s[l->end];
    if (c == '\t' || c == ' ' || c == ',') {
      l->end++, l->end_runes++;
    } else if (c == '\n') {
      l->end++, l->end_runes++, l->line++;
      l->line_start = l->end_runes;
    } else if (c == '\r') {
      l->end++, l->end_runes++, l->line++;
      l->line_start = l->end_runes;
      if (l->end < l->n && l->s[l->end] == '\n') l->end++, l->end_runes++;
    } else if (c == 0xEF && l->end + 2 < l->n && (unsigned char)l->s[l->end + 1] == 0xBB &&
               (unsigned char)l->s[l->end + 2] == 0xBF) {
      l->end += 3, l->end_runes++;
    } else {
      return;
    }
  }
}

static bool rego__lx_accept(gq_lex *l, const char *set) {
  if (l->end >= l->n || !l->s[l->end] || !strchr(set, l->s[l->end])) return false;
  l->end++, l->end_runes++;
  return true;
}
static int rego__lx_digits(gq_lex *l) {
  int k = 0;
  while (l->end < l->n && l->s[l->end] >= '0' && l->s[l->end] <= '9') l->end++, l->end_runes++, k++;
  return k;
}

static gq_tok rego__lx_number(gq_lex *l) {
  bool flt = false;
  l->end--, l->end_runes--;
  rego__lx_accept(l, "-");
  if (rego__lx_accept(l, "0")) {
    int k = rego__lx_digits(l);
    if (k) {
      l->end -= (size_t)k, l->end_runes -= k;
      return rego__lx_err(l);
    }
  } else if (!rego__lx_digits(l)) {
    return rego__lx_err(l);
  }
  if (rego__lx_accept(l, ".")) {
    flt = true;
    if (!rego__lx_digits(l)) return rego__lx_err(l);
  }
  if (rego__lx_accept(l, "eE")) {
    flt = true;
    rego__lx_accept(l, "-+");
    if (!rego__lx_digits(l)) return rego__lx_err(l);
  }
  return rego__lx_raw(l, flt ? TK_FLOAT : TK_INT);
}

static int rego__hexd(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
static bool rego__unhex4(const char *s, uint32_t *r) {
  *r = 0;
  for (int i = 0; i < 4; i++) {
    int d = rego__hexd((unsigned char)s[i]);
    if (d < 0) return false;
    *r = (*r << 4) | (uint32_t)d;
  }
  return true;
}

/* A growable byte buffer in the arena (strings and block strings). */
typedef struct {
  rg_arena *a;
  char *p;
  size_t n, cap;
  bool oom;
} abuf;
static void rego__ab_put(abuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t nc = b->cap ? b->cap * 2 : 64;
    while (nc < b->n + n + 1) nc *= 2;
    char *np = rg_alloc(b->a, nc);
    if (!np) {
      b->oom = true;
      return;
    }
    if (b->n) memcpy(np, b->p, b->n);
    b->p = np, b->cap = nc;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}
static void rego__ab_rune(abuf *b, uint32_t r) {
  char t[4];
  rego__ab_put(b, t, rego__u8enc(r, t));
}

static gq_tok rego__lx_string(gq_lex *l, bool *oom) {
  abuf b = {l->a, NULL, 0, 0, false};
  bool esc = false;
  l->start++, l->start_runes++;
  while (l->end < l->n) {
    unsigned char c = (unsigned char)l->s[l->end];
    if (c == '\n' || c == '\r') break;
    if (c < 0x20 && c != '\t') return rego__lx_err(l);
    if (c == '"') {
      gq_tok t = rego__lx_raw(l, TK_STRING);
      if (esc) {
        if (b.oom) *oom = true;
        t.v = b.p ? b.p : "", t.vn = b.n;
      }
      l->end++, l->end_runes++;
      return t;
    }
    if (c == '\\') {
      if (l->end + 1 >= l->n) {
        l->end++, l->end_runes++;
        return rego__lx_err(l);
      }
      if (!esc) {
        esc = true;
        rego__ab_put(&b, l->s + l->start, l->end - l->start);
      }
      unsigned char e = (unsigned char)l->s[l->end + 1];
      if (e == 'u') {
        if (l->end + 2 < l->n && l->s[l->end + 2] == '{') {
          uint32_t r = 0;
          size_t k = 0;
          const char *q = l->s + l->end + 3;
          size_t qn = l->n - (l->end + 3);
          bool ok = false;
          while (k < qn && k <= 8) {
            if (q[k] == '}') {
              k++;
              ok = k != 1 && r <= 0x10FFFF && !(r >= 0xD800 && r <= 0xDFFF);
              break;
            }
            int d = rego__hexd((unsigned char)q[k]);
            if (d < 0) break;
            r = (r << 4) | (uint32_t)d;
            k++;
          }
          if (!ok) {
            l->end++, l->end_runes++;
            return rego__lx_err(l);
          }
          l->end += 3 + k, l->end_runes += 3 + (long)k;
          rego__ab_rune(&b, r);
          continue;
        }
        if (l->end + 6 >= l->n) {
          l->end++, l->end_runes++;
          return rego__lx_err(l);
        }
        uint32_t r;
        if (!rego__unhex4(l->s + l->end + 2, &r)) {
          l->end++, l->end_runes++;
          return rego__lx_err(l);
        }
        l->end += 6, l->end_runes += 6;
        if (r >= 0xD800 && r < 0xDC00 && l->end + 6 < l->n) {
          uint32_t r2;
          const char *nx = l->s + l->end;
          if (nx[0] == '\\' && nx[1] == 'u' && rego__unhex4(nx + 2, &r2) && r2 >= 0xDC00 && r2 <= 0xDFFF) {
            r = 0x10000 + ((r - 0xD800) << 10) + (r2 - 0xDC00);
            l->end += 6, l->end_runes += 6;
          }
        }
        rego__ab_rune(&b, r);
      } else {
        char o;
        switch (e) {
          case '"': case '/': case '\\': o = (char)e; break;
          case 'b': o = '\b'; break;
          case 'f': o = '\f'; break;
          case 'n': o = '\n'; break;
          case 'r': o = '\r'; break;
          case 't': o = '\t'; break;
          default:
            l->end++, l->end_runes++;
            return rego__lx_err(l);
        }
        rego__ab_put(&b, &o, 1);
        l->end += 2, l->end_runes += 2;
      }
      continue;
    }
    size_t w = 1;
    uint32_t r = c;
    if (c >= 127) r = rego__u8dec((const unsigned char *)l->s + l->end, l->n - l->end, &w);
    if (esc) {
      if (c < 127) rego__ab_put(&b, (const char *)&l->s[l->end], 1);
      else rego__ab_rune(&b, r);
    }
    l->end += w, l->end_runes++;
  }
  return rego__lx_err(l);
}

static long rego__lead_ws(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t') return (long)i;
  return 0x7fffffff;
}

/* gqlparser's blockStringValue: common indentation (first line included in the computation,
 * but not trimmed) and blank leading / trailing lines removed. */
static char *rego__block_value(rg_arena *a, const char *raw, size_t n, size_t *outn) {
  size_t nl = 1;
  for (size_t i = 0; i < n; i++) nl += raw[i] == '\n';
  const char **ls = rg_alloc(a, nl * sizeof(char *));
  size_t *ln = rg_alloc(a, nl * sizeof(size_t));
  char *o = rg_alloc(a, n + 1);
  if (!ls || !ln || !o) return NULL;
  size_t k = 0, st = 0;
  for (size_t i = 0; i <= n; i++)
    if (i == n || raw[i] == '\n') {
      ls[k] = raw + st, ln[k++] = i - st;
      st = i + 1;
    }
  long common = 0x7fffffff;
  for (size_t i = 0; i < k; i++) {
    long ind = rego__lead_ws(ls[i], ln[i]);
    if (ind < (long)ln[i] && ind < common) {
      common = ind;
      if (!common) break;
    }
  }
  if (common != 0x7fffffff)
    for (size_t i = 1; i < k; i++) {
      if (ln[i] < (size_t)common) ln[i] = 0;
      else ls[i] += common, ln[i] -= (size_t)common;
    }
  size_t s0 = 0, e0 = k;
  while (s0 < e0 && rego__lead_ws(ls[s0], ln[s0]) == 0x7fffffff) s0++;
  while (s0 < e0 && rego__lead_ws(ls[e0 - 1], ln[e0 - 1]) == 0x7fffffff) e0--;
  size_t w = 0;
  for (size_t i = s0; i < e0; i++) {
    if (i > s0) o[w++] = '\n';
    memcpy(o + w, ls[i], ln[i]);
    w += ln[i];
  }
  o[w] = 0;
  *outn = w;
  return o;
}

static gq_tok rego__lx_block(gq_lex *l, bool *oom) {
  abuf b = {l->a, NULL, 0, 0, false};
  l->start += 3, l->start_runes += 3;
  l->end += 2, l->end_runes += 2;
  while (l->end < l->n) {
    unsigned char c = (unsigned char)l->s[l->end];
    if (c == '"') {
      size_t q = 1, i = l->end + 1;
      while (i < l->n && l->s[i] == '"') q++, i++;
      if (q >= 3) {
        for (size_t j = 0; j < q - 3; j++) rego__ab_put(&b, "\"", 1);
        size_t vn = 0;
        char *v = b.oom ? NULL : rego__block_value(l->a, b.p ? b.p : "", b.n, &vn);
        if (!v) *oom = true;
        gq_tok t = rego__lx_tok(l, TK_BLOCK, v ? v : "", vn);
        l->end += q, l->end_runes += (long)q;
        return t;
      }
    }
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') return rego__lx_err(l);
    if (c == '\\' && l->end + 4 <= l->n && !memcmp(l->s + l->end, "\\\"\"\"", 4)) {
      rego__ab_put(&b, "\"\"\"", 3);
      l->end += 4, l->end_runes += 4;
    } else if (c == '\r') {
      if (l->end + 1 < l->n && l->s[l->end + 1] == '\n') l->end++, l->end_runes++;
      rego__ab_put(&b, "\n", 1);
      l->end++, l->end_runes++, l->line++;
      l->line_start = l->end_runes;
    } else {
      size_t w = 1;
      if (c >= 127) {
        uint32_t r = rego__u8dec((const unsigned char *)l->s + l->end, l->n - l->end, &w);
        rego__ab_rune(&b, r);
      } else {
        rego__ab_put(&b, (const char *)&l->s[l->end], 1);
      }
      l->end += w, l->end_runes++;
      if (c == '\n') {
        l->line++;
        l->line_start = l->end_runes;
      }
    }
  }
  return rego__lx_err(l);
}

static gq_tok rego__lx_next(gq_lex *l, bool *oom) {
  rego__lx_ws(l);
  l->start = l->end, l->start_runes = l->end_runes;
  if (l->end >= l->n) return rego__lx_raw(l, TK_EOF);
  unsigned char c = (unsigned char)l->s[l->start];
  l->end++, l->end_runes++;
  int k = -1;
  switch (c) {
    case '!': k = TK_BANG; break;
    case '$': k = TK_DOLLAR; break;
    case '&': k = TK_AMP; break;
    case '(': k = TK_PARENL; break;
    case ')': k = TK_PARENR; break;
    case ':': k = TK_COLON; break;
    case '=': k = TK_EQUALS; break;
    case '@': k = TK_AT; break;
    case '[': k = TK_BRACKETL; break;
    case ']': k = TK_BRACKETR; break;
    case '{': k = TK_BRACEL; break;
    case '}': k = TK_BRACER; break;
    case '|': k = TK_PIPE; break;
    case '.':
      if (l->n > l->start + 2 && l->s[l->start + 1] == '.' && l->s[l->start + 2] == '.') {
        l->end += 2, l->end_runes += 2;
        return rego__lx_tok(l, TK_SPREAD, "", 0);
      }
      break;
    case '#':
      while (l->end < l->n) {
        size_t w;
        uint32_t r = rego__u8dec((const unsigned char *)l->s + l->end, l->n - l->end, &w);
        if (r > 0x1f || r == '\t') l->end += w, l->end_runes++;
        else break;
      }
      return rego__lx_raw(l, TK_COMMENT);
    case '"':
      if (l->n > l->start + 2 && l->s[l->start + 1] == '"' && l->s[l->start + 2] == '"') return rego__lx_block(l, oom);
      return rego__lx_string(l, oom);
    default:
      if (c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        while (l->end < l->n) {
          char d = l->s[l->end];
          if ((d >= '0' && d <= '9') || (d >= 'A' && d <= 'Z') || (d >= 'a' && d <= 'z') || d == '_') l->end++, l->end_runes++;
          else break;
        }
        return rego__lx_raw(l, TK_NAME);
      }
      if (c == '-' || (c >= '0' && c <= '9')) return rego__lx_number(l);
  }
  if (k >= 0) return rego__lx_tok(l, k, "", 0);
  l->end--, l->end_runes--;
  return rego__lx_err(l);
}

/* ---------------------------------------------------------------- parser machinery */

static void rego__quote(char *o, size_t cap, const char *s, size_t n) {
  size_t w = 0;
  if (cap < 8) return;
  o[w++] = '"';
  for (size_t i = 0; i < n && w + 8 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') o[w++] = '\\', o[w++] = (char)c;
    else if (c == '\n') o[w++] = '\\', o[w++] = 'n';
    else if (c == '\t') o[w++] = '\\', o[w++] = 't';
    else if (c == '\r') o[w++] = '\\', o[w++] = 'r';
    else if (c < 0x20 || c == 0x7f) w += (size_t)snprintf(o + w, cap - w, "\\x%02x", c);
    else if (c >= 0x80) {
      /* strconv.Quote: valid UTF-8 kept, invalid bytes escaped */
      size_t cw;
      uint32_t r = rego__u8dec((const unsigned char *)s + i, n - i, &cw);
      if (r == 0xFFFD && cw == 1) {
        w += (size_t)snprintf(o + w, cap - w, "\\x%02x", c);
      } else {
        memcpy(o + w, s + i, cw);
        w += cw, i += cw - 1;
      }
    } else o[w++] = (char)c;
  }
  o[w++] = '"';
  o[w] = 0;
}

static void rego__p_error(gq_p *p, const gq_tok *t, const char *fmt, ...) CT_PRINTF(3, 4);
static void rego__p_error(gq_p *p, const gq_tok *t, const char *fmt, ...) {
  if (p->failed) return;
  p->failed = true;
  char m[CT_ERR_MSG_MAX - 128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof(m), fmt, ap);
  va_end(ap);
  /* OPA reads the location back with ParseUint: a negative column (block strings spanning lines
   * make gqlparser compute one) falls back to the raw error text */
  if (t->line < 0 || t->col < 0) snprintf(p->msg, sizeof(p->msg), "GraphQL parse error: input:%ld:%ld: %s", t->line, t->col, m);
  else snprintf(p->msg, sizeof(p->msg), "%s in GraphQL string at location %ld:%ld", m, t->line, t->col);
}
static void rego__p_oom(gq_p *p) {
  if (p->failed) return;
  p->failed = p->oom = true;
  snprintf(p->msg, sizeof(p->msg), "GraphQL parse error: out of memory");
}

/* tok.String(): kind, plus the quoted value when there is one */
static const char *rego__tok_str(const gq_tok *t, char *buf, size_t cap) {
  if (!t->vn) return tk_str[t->kind];
  char q[CT_ERR_MSG_MAX];
  rego__quote(q, sizeof(q), t->v, t->vn); /* error messages are bounded by ct_err anyway */
  snprintf(buf, cap, "%s %s", tk_str[t->kind], q);
  return buf;
}

static rv *rego__mk_obj2(gq_p *p, const char *k, rv *v) {
  rv *ks = rv_cstr(p->a, k);
  if (!ks || !v) return NULL;
  return rv_obj(p->a, &ks, &v, 1, NULL);
}

static gq_tok rego__p_peek(gq_p *p);

/* Collects a run of comment tokens into the current comment group (gqlparser's
 * consumeCommentGroup); called with a comment token already peeked. */
static void rego__p_comment_group(gq_p *p) {
  if (p->consuming || p->failed) return;
  p->consuming = true;
  rv *items[64];
  size_t n = 0, total = 0;
  rv *acc = NULL;
  for (;;) {
    gq_tok t = rego__p_peek(p);
    if (p->failed || t.kind != TK_COMMENT) break;
    /* next() */
    p->tokens++;
    p->peeked = false;
    p->comment = NULL;
    p->prev = t;
    rv *val = rv_str(p->a, t.v, t.vn);
    rv *c = val ? rego__mk_obj2(p, "Value", val) : NULL;
    if (!c) {
      rego__p_oom(p);
      break;
    }
    if (n == 64) { /* flush into acc */
      rv **all = rg_alloc(p->a, (total + n) * sizeof(rv *));
      if (!all) {
        rego__p_oom(p);
        break;
      }
      if (acc) memcpy(all, acc->u.a, total * sizeof(rv *));
      memcpy(all + total, items, n * sizeof(rv *));
      acc = rv_arr(p->a, all, total + n);
      total += n, n = 0;
      if (!acc) {
        rego__p_oom(p);
        break;
      }
    }
    items[n++] = c;
  }
  if (!p->failed) {
    rv **all = rg_alloc(p->a, (total + n + 1) * sizeof(rv *));
    if (!all) {
      rego__p_oom(p);
    } else {
      if (acc) memcpy(all, acc->u.a, total * sizeof(rv *));
      memcpy(all + total, items, n * sizeof(rv *));
      p->comment = rv_arr(p->a, all, total + n);
      if (!p->comment) rego__p_oom(p);
    }
  }
  p->consuming = false;
}

static gq_tok rego__p_peek(gq_p *p) {
  if (p->failed) return p->prev;
  if (!p->peeked) {
    bool oom = false;
    p->peek_tok = rego__lx_next(&p->lx, &oom);
    p->peeked = true;
    if (oom) {
      rego__p_oom(p);
      return p->prev;
    }
    if (p->peek_tok.kind == TK_COMMENT) rego__p_comment_group(p);
  }
  return p->peek_tok;
}

static gq_tok rego__p_next(gq_p *p) {
  if (p->failed) return p->prev;
  if (++p->tokens > GQ_MAX_TOKENS) {
    p->failed = true;
    snprintf(p->msg, sizeof(p->msg), "GraphQL parse error: input: exceeded token limit of %d", GQ_MAX_TOKENS);
    return p->prev;
  }
  if (p->peeked) {
    p->peeked = false;
    p->comment = NULL;
    p->prev = p->peek_tok;
  } else {
    bool oom = false;
    p->prev = rego__lx_next(&p->lx, &oom);
    if (oom) rego__p_oom(p);
    else if (p->prev.kind == TK_COMMENT) rego__p_comment_group(p);
  }
  if (p->prev.kind == TK_INVALID && !p->failed) {
    /* a lexer error surfaces when the bad token is consumed */
    rego__p_error(p, &p->prev, "Unexpected %s", tk_str[TK_INVALID]);
  }
  return p->prev;
}

static bool rego__p_skip(gq_p *p, int kind) {
  if (p->failed) return false;
  if (rego__p_peek(p).kind != kind) return false;
  rego__p_next(p);
  return true;
}

static gq_tok rego__p_expect(gq_p *p, int kind, rv **comment) {
  gq_tok t = rego__p_peek(p);
  if (comment) *comment = p->comment;
  if (t.kind == kind) return rego__p_next(p);
  rego__p_error(p, &t, "Expected %s, found %s", tk_str[kind], tk_str[t.kind]);
  return t;
}

static gq_tok rego__p_expect_kw(gq_p *p, const char *kw, rv **comment) {
  gq_tok t = rego__p_peek(p);
  if (comment) *comment = p->comment;
  if (t.kind == TK_NAME && t.vn == strlen(kw) && !memcmp(t.v, kw, t.vn)) return rego__p_next(p);
  char b[CT_ERR_MSG_MAX + 32];
  rego__p_error(p, &t, "Expected \"%s\", found %s", kw, rego__tok_str(&t, b, sizeof(b)));
  return t;
}

static void rego__p_unexpected_tok(gq_p *p, const gq_tok *t) {
  char b[CT_ERR_MSG_MAX + 32];
  rego__p_error(p, t, "Unexpected %s", rego__tok_str(t, b, sizeof(b)));
}
static void rego__p_unexpected(gq_p *p) {
  gq_tok t = rego__p_peek(p);
  rego__p_unexpected_tok(p, &t);
}

static bool rego__p_enter(gq_p *p) {
  if (p->depth >= GQ_MAX_DEPTH) {
    gq_tok t = rego__p_peek(p);
    rego__p_error(p, &t, "exceeded maximum nesting depth of %d", GQ_MAX_DEPTH);
    return false;
  }
  p->depth++;
  return true;
}

static bool rego__tok_is(const gq_tok *t, const char *s) { return t->vn == strlen(s) && !memcmp(t->v, s, t->vn); }

/* ---------------------------------------------------------------- builders */

/* object builder applying OPA's pruning: nulls and empty arrays / objects are left out */
typedef struct {
  rv *k[20], *v[20];
  size_t n;
} ob;
static void rego__ob_put(ob *o, gq_p *p, const char *key, rv *v) {
  if (!v || ((v->t == RV_ARR || v->t == RV_OBJ) && v->n == 0)) return;
  rv *k = rv_cstr(p->a, key);
  if (!k) {
    rego__p_oom(p);
    return;
  }
  o->k[o->n] = k, o->v[o->n++] = v;
}
static void rego__ob_str(ob *o, gq_p *p, const char *key, const char *s, size_t n) {
  rv *v = rv_str(p->a, s ? s : "", s ? n : 0);
  if (!v) rego__p_oom(p);
  rego__ob_put(o, p, key, v);
}
static void rego__ob_cstr(ob *o, gq_p *p, const char *key, const char *s) { rego__ob_str(o, p, key, s, s ? strlen(s) : 0); }
static void rego__ob_tok(ob *o, gq_p *p, const char *key, const gq_tok *t) { rego__ob_str(o, p, key, t->v, t->vn); }
static void rego__ob_bool(ob *o, gq_p *p, const char *key, bool b) { rego__ob_put(o, p, key, rv_bool(b)); }
static void rego__ob_comment(ob *o, gq_p *p, const char *key, rv *group) {
  if (!group || !group->n) return;
  rv *g = rego__mk_obj2(p, "List", group);
  if (!g) rego__p_oom(p);
  rego__ob_put(o, p, key, g);
}
static rv *rego__ob_done(ob *o, gq_p *p, long line, long col) {
  if (p->failed) return NULL;
  rv *r = rv_obj(p->a, o->k, o->v, o->n, NULL);
  if (!r) {
    rego__p_oom(p);
    return NULL;
  }
  if (p->pm && line > 0) gq_pos_put(p->pm, r, line, col);
  return r;
}

/* growable list of values */
typedef struct {
  rv **v;
  size_t n, cap;
} lst;
static void rego__ls_add(lst *l, gq_p *p, rv *x) {
  if (p->failed || !x) return;
  if (x->t == RV_OBJ && !x->n) return;
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 8;
    rv **nv = rg_alloc(p->a, nc * sizeof(rv *));
    if (!nv) {
      rego__p_oom(p);
      return;
    }
    if (l->n) memcpy(nv, l->v, l->n * sizeof(rv *));
    l->v = nv, l->cap = nc;
  }
  l->v[l->n++] = x;
}
static rv *rego__ls_done(lst *l, gq_p *p) {
  if (p->failed || !l->n) return NULL;
  rv *r = rv_arr(p->a, l->v, l->n);
  if (!r) rego__p_oom(p);
  return r;
}

static rv *rego__join_comments(gq_p *p, rv *before, rv *after) {
  if (!before) return after;
  if (!after) return before;
  rv **all = rg_alloc(p->a, (before->n + after->n) * sizeof(rv *));
  if (!all) {
    rego__p_oom(p);
    return NULL;
  }
  memcpy(all, before->u.a, before->n * sizeof(rv *));
  memcpy(all + before->n, after->u.a, after->n * sizeof(rv *));
  rv *r = rv_arr(p->a, all, before->n + after->n);
  if (!r) rego__p_oom(p);
  return r;
}

/* ---------------------------------------------------------------- shared grammar */

typedef struct {
  const char *text;
  size_t n;
  rv *comment;
  bool present;
  gq_tok tok;
} desc_t;

static desc_t rego__p_description(gq_p *p) {
  desc_t d = {"", 0, NULL, false, {0}};
  gq_tok t = rego__p_peek(p);
  if (t.kind != TK_BLOCK && t.kind != TK_STRING) return d;
  d.present = true;
  d.comment = p->comment;
  d.tok = rego__p_next(p);
  d.text = d.tok.v, d.n = d.tok.vn;
  return d;
}

static gq_tok rego__p_name(gq_p *p) { return rego__p_expect(p, TK_NAME, NULL); }

static rv *rego__p_value(gq_p *p, bool is_const);

static rv *rego__mk_value(gq_p *p, int kind, const char *raw, size_t rn, rv *children, rv *comment, long line, long col) {
  ob o = {.n = 0};
  rego__ob_str(&o, p, "Raw", raw, rn);
  rego__ob_put(&o, p, "Children", children);
  rv *kv = rv_int(p->a, kind);
  if (!kv) rego__p_oom(p);
  rego__ob_put(&o, p, "Kind", kv);
  rego__ob_comment(&o, p, "Comment", comment);
  rego__ob_bool(&o, p, "ExpectedTypeHasDefault", false);
  return rego__ob_done(&o, p, line, col);
}

static rv *rego__p_list(gq_p *p, bool is_const) {
  if (!rego__p_enter(p)) return NULL;
  gq_tok pos = rego__p_peek(p);
  rv *comment = p->comment;
  lst items = {0};
  if (rego__p_skip(p, TK_BRACKETL)) {
    while (rego__p_peek(p).kind != TK_BRACKETR && !p->failed) {
      rv *v = rego__p_value(p, is_const);
      ob o = {.n = 0};
      rego__ob_cstr(&o, p, "Name", "");
      rego__ob_put(&o, p, "Value", v);
      rego__ls_add(&items, p, rego__ob_done(&o, p, 0, 0));
    }
    rego__p_next(p);
  }
  p->depth--;
  return rego__mk_value(p, 8, "", 0, rego__ls_done(&items, p), comment, pos.line, pos.col);
}

static rv *rego__p_object(gq_p *p, bool is_const) {
  if (!rego__p_enter(p)) return NULL;
  gq_tok pos = rego__p_peek(p);
  rv *comment = p->comment;
  lst items = {0};
  if (rego__p_skip(p, TK_BRACEL)) {
    while (rego__p_peek(p).kind != TK_BRACER && !p->failed) {
      gq_tok fp = rego__p_peek(p);
      ob o = {.n = 0};
      rego__ob_comment(&o, p, "Comment", p->comment);
      gq_tok nm = rego__p_name(p);
      rego__ob_tok(&o, p, "Name", &nm);
      rego__p_expect(p, TK_COLON, NULL);
      rego__ob_put(&o, p, "Value", rego__p_value(p, is_const));
      rego__ls_add(&items, p, rego__ob_done(&o, p, fp.line, fp.col));
    }
    rego__p_next(p);
  }
  p->depth--;
  return rego__mk_value(p, 9, "", 0, rego__ls_done(&items, p), comment, pos.line, pos.col);
}

static rv *rego__p_value(gq_p *p, bool is_const) {
  gq_tok t = rego__p_peek(p);
  int kind;
  switch (t.kind) {
    case TK_BRACKETL: return rego__p_list(p, is_const);
    case TK_BRACEL: return rego__p_object(p, is_const);
    case TK_DOLLAR: {
      if (is_const) {
        rego__p_unexpected(p);
        return NULL;
      }
      rego__p_expect(p, TK_DOLLAR, NULL);
      gq_tok nm = rego__p_name(p);
      return rego__mk_value(p, 0, nm.v, nm.vn, NULL, p->comment, t.line, t.col);
    }
    case TK_INT: kind = 1; break;
    case TK_FLOAT: kind = 2; break;
    case TK_STRING: kind = 3; break;
    case TK_BLOCK: kind = 4; break;
    case TK_NAME:
      kind = rego__tok_is(&t, "true") || rego__tok_is(&t, "false") ? 5 : rego__tok_is(&t, "null") ? 6 : 7;
      break;
    default:
      rego__p_unexpected(p);
      return NULL;
  }
  rego__p_next(p);
  return rego__mk_value(p, kind, t.v, t.vn, NULL, p->comment, t.line, t.col);
}

static rv *rego__p_arguments(gq_p *p, bool is_const) {
  lst items = {0};
  if (!rego__p_skip(p, TK_PARENL)) return NULL;
  bool called = false;
  while (rego__p_peek(p).kind != TK_PARENR && !p->failed) {
    called = true;
    gq_tok pos = rego__p_peek(p);
    ob o = {.n = 0};
    rego__ob_comment(&o, p, "Comment", p->comment);
    gq_tok nm = rego__p_name(p);
    rego__ob_tok(&o, p, "Name", &nm);
    rego__p_expect(p, TK_COLON, NULL);
    rego__ob_put(&o, p, "Value", rego__p_value(p, is_const));
    rego__ls_add(&items, p, rego__ob_done(&o, p, pos.line, pos.col));
  }
  if (!called) {
    gq_tok t = rego__p_peek(p);
    rego__p_error(p, &t, "expected at least one definition, found %s", tk_str[t.kind]);
    return NULL;
  }
  rego__p_next(p);
  return rego__ls_done(&items, p);
}

static rv *rego__p_directives(gq_p *p, bool is_const) {
  lst items = {0};
  while (rego__p_peek(p).kind == TK_AT) {
    if (p->failed) break;
    rego__p_expect(p, TK_AT, NULL);
    gq_tok pos = rego__p_peek(p);
    gq_tok nm = rego__p_name(p);
    rv *args = rego__p_arguments(p, is_const);
    ob o = {.n = 0};
    rego__ob_tok(&o, p, "Name", &nm);
    rego__ob_put(&o, p, "Arguments", args);
    rego__ob_cstr(&o, p, "Location", "");
    rego__ls_add(&items, p, rego__ob_done(&o, p, pos.line, pos.col));
  }
  return rego__ls_done(&items, p);
}

static rv *rego__p_type(gq_p *p) {
  ob o = {.n = 0};
  gq_tok pos;
  if (rego__p_skip(p, TK_BRACKETL)) {
    if (!rego__p_enter(p)) return NULL;
    pos = rego__p_peek(p);
    rv *elem = rego__p_type(p);
    rego__p_expect(p, TK_BRACKETR, NULL);
    p->depth--;
    rego__ob_put(&o, p, "Elem", elem);
    rego__ob_cstr(&o, p, "NamedType", "");
  } else {
    pos = rego__p_peek(p);
    gq_tok nm = rego__p_name(p);
    rego__ob_tok(&o, p, "NamedType", &nm);
  }
  rego__ob_bool(&o, p, "NonNull", rego__p_skip(p, TK_BANG));
  return rego__ob_done(&o, p, pos.line, pos.col);
}

/* ---------------------------------------------------------------- query documents */

static rv *rego__p_selection_set_opt(gq_p *p);

static rv *rego__p_selection_set_req(gq_p *p) {
  gq_tok t = rego__p_peek(p);
  if (t.kind != TK_BRACEL) {
    rego__p_error(p, &t, "Expected %s, found %s", tk_str[TK_BRACEL], tk_str[t.kind]);
    return NULL;
  }
  return rego__p_selection_set_opt(p);
}

static rv *rego__p_field(gq_p *p) {
  gq_tok pos = rego__p_peek(p);
  rv *comment = p->comment;
  gq_tok alias = rego__p_name(p), name = alias;
  if (rego__p_skip(p, TK_COLON)) name = rego__p_name(p);
  rv *args = rego__p_arguments(p, false);
  rv *dirs = rego__p_directives(p, false);
  rv *sel = NULL;
  if (rego__p_peek(p).kind == TK_BRACEL) sel = rego__p_selection_set_opt(p);
  ob o = {.n = 0};
  rego__ob_tok(&o, p, "Alias", &alias);
  rego__ob_tok(&o, p, "Name", &name);
  rego__ob_put(&o, p, "Arguments", args);
  rego__ob_put(&o, p, "Directives", dirs);
  rego__ob_put(&o, p, "SelectionSet", sel);
  rego__ob_comment(&o, p, "Comment", comment);
  return rego__ob_done(&o, p, pos.line, pos.col);
}

static rv *rego__p_fragment(gq_p *p) {
  rv *comment;
  rego__p_expect(p, TK_SPREAD, &comment);
  gq_tok pk = rego__p_peek(p);
  ob o = {.n = 0};
  if (pk.kind == TK_NAME && !rego__tok_is(&pk, "on")) {
    gq_tok nm = rego__p_name(p);
    rv *dirs = rego__p_directives(p, false);
    rego__ob_tok(&o, p, "Name", &nm);
    rego__ob_put(&o, p, "Directives", dirs);
    rego__ob_comment(&o, p, "Comment", comment);
    return rego__ob_done(&o, p, pk.line, pk.col);
  }
  gq_tok tc = {0};
  tc.v = "";
  if (rego__tok_is(&pk, "on")) {
    rego__p_next(p);
    tc = rego__p_name(p);
  }
  rv *dirs = rego__p_directives(p, false);
  rv *sel = rego__p_selection_set_req(p);
  rego__ob_tok(&o, p, "TypeCondition", &tc);
  rego__ob_put(&o, p, "Directives", dirs);
  rego__ob_put(&o, p, "SelectionSet", sel);
  rego__ob_comment(&o, p, "Comment", comment);
  return rego__ob_done(&o, p, pk.line, pk.col);
}

static rv *rego__p_selection_set_opt(gq_p *p) {
  if (!rego__p_enter(p)) return NULL;
  lst items = {0};
  if (rego__p_skip(p, TK_BRACEL)) {
    bool called = false;
    while (rego__p_peek(p).kind != TK_BRACER && !p->failed) {
      called = true;
      rego__ls_add(&items, p, rego__p_peek(p).kind == TK_SPREAD ? rego__p_fragment(p) : rego__p_field(p));
    }
    if (!called) {
      gq_tok t = rego__p_peek(p);
      rego__p_error(p, &t, "expected at least one definition, found %s", tk_str[t.kind]);
    }
    rego__p_next(p);
  }
  p->depth--;
  return rego__ls_done(&items, p);
}

static rv *rego__p_var_defs(gq_p *p) {
  lst items = {0};
  if (!rego__p_skip(p, TK_PARENL)) return NULL;
  bool called = false;
  while (rego__p_peek(p).kind != TK_PARENR && !p->failed) {
    called = true;
    desc_t d = rego__p_description(p);
    gq_tok pos = rego__p_peek(p);
    rv *comment = rego__join_comments(p, d.comment, p->comment);
    rego__p_expect(p, TK_DOLLAR, NULL);
    gq_tok var = rego__p_name(p);
    rego__p_expect(p, TK_COLON, NULL);
    rv *type = rego__p_type(p);
    rv *dflt = NULL;
    if (rego__p_skip(p, TK_EQUALS)) dflt = rego__p_value(p, true);
    rv *dirs = rego__p_directives(p, false);
    ob o = {.n = 0};
    rego__ob_str(&o, p, "Description", d.text, d.n);
    rego__ob_tok(&o, p, "Variable", &var);
    rego__ob_put(&o, p, "Type", type);
    rego__ob_put(&o, p, "DefaultValue", dflt);
    rego__ob_put(&o, p, "Directives", dirs);
    rego__ob_comment(&o, p, "Comment", comment);
    rego__ob_bool(&o, p, "Used", false);
    rego__ls_add(&items, p, rego__ob_done(&o, p, pos.line, pos.col));
  }
  if (!called) {
    gq_tok t = rego__p_peek(p);
    rego__p_error(p, &t, "expected at least one definition, found %s", tk_str[t.kind]);
    return NULL;
  }
  rego__p_next(p);
  return rego__ls_done(&items, p);
}

static const char *rego__p_op_type(gq_p *p) {
  gq_tok t = rego__p_next(p);
  if (rego__tok_is(&t, "query")) return "query";
  if (rego__tok_is(&t, "mutation")) return "mutation";
  if (rego__tok_is(&t, "subscription")) return "subscription";
  rego__p_unexpected_tok(p, &t);
  return "";
}

static rv *rego__p_operation(gq_p *p, desc_t d) {
  ob o = {.n = 0};
  gq_tok pos = rego__p_peek(p);
  if (pos.kind == TK_BRACEL) {
    if (d.present) {
      gq_tok pv = p->prev;
      rego__p_unexpected_tok(p, &pv);
    }
    rv *sel = rego__p_selection_set_req(p);
    rego__ob_cstr(&o, p, "Description", "");
    rego__ob_cstr(&o, p, "Name", "");
    rego__ob_cstr(&o, p, "Operation", "query");
    rego__ob_put(&o, p, "SelectionSet", sel);
    /* gqlparser reads the comment after parsing the selection set (Go evaluates the calls
     * in a composite literal first) */
    rego__ob_comment(&o, p, "Comment", p->comment);
    return rego__ob_done(&o, p, pos.line, pos.col);
  }
  rv *comment = rego__join_comments(p, d.comment, p->comment);
  const char *op = rego__p_op_type(p);
  gq_tok name = {0};
  name.v = "";
  if (rego__p_peek(p).kind == TK_NAME) name = rego__p_next(p);
  rv *vars = rego__p_var_defs(p);
  rv *dirs = rego__p_directives(p, false);
  rv *sel = rego__p_selection_set_req(p);
  rego__ob_str(&o, p, "Description", d.text, d.n);
  rego__ob_cstr(&o, p, "Operation", op);
  rego__ob_tok(&o, p, "Name", &name);
  rego__ob_put(&o, p, "VariableDefinitions", vars);
  rego__ob_put(&o, p, "Directives", dirs);
  rego__ob_put(&o, p, "SelectionSet", sel);
  rego__ob_comment(&o, p, "Comment", comment);
  return rego__ob_done(&o, p, pos.line, pos.col);
}

static gq_tok rego__p_fragment_name(gq_p *p) {
  gq_tok t = rego__p_peek(p);
  if (rego__tok_is(&t, "on")) {
    rego__p_unexpected(p);
    return t;
  }
  return rego__p_name(p);
}

static rv *rego__p_fragment_def(gq_p *p, desc_t d) {
  gq_tok pos = rego__p_peek(p);
  rv *comment = rego__join_comments(p, d.comment, p->comment);
  rego__p_expect_kw(p, "fragment", NULL);
  gq_tok name = rego__p_fragment_name(p);
  rv *vars = rego__p_var_defs(p);
  rego__p_expect_kw(p, "on", NULL);
  gq_tok tc = rego__p_name(p);
  rv *dirs = rego__p_directives(p, false);
  rv *sel = rego__p_selection_set_req(p);
  ob o = {.n = 0};
  rego__ob_str(&o, p, "Description", d.text, d.n);
  rego__ob_tok(&o, p, "Name", &name);
  rego__ob_put(&o, p, "VariableDefinition", vars);
  rego__ob_tok(&o, p, "TypeCondition", &tc);
  rego__ob_put(&o, p, "Directives", dirs);
  rego__ob_put(&o, p, "SelectionSet", sel);
  rego__ob_comment(&o, p, "Comment", comment);
  return rego__ob_done(&o, p, pos.line, pos.col);
}

static void rego__p_init(gq_p *p, rg_arena *a, const char *src, size_t n, gq_posmap *pm) {
  memset(p, 0, sizeof(*p));
  p->a = a;
  p->pm = pm;
  p->lx.a = a;
  p->lx.s = src;
  p->lx.n = n;
  p->lx.line = 1;
  p->prev.v = "";
}

static CT_RESULT rego__p_finish(gq_p *p, rv *doc, rv **out, ct_err *err) {
  if (p->failed) return ct_fail(err, p->oom ? CT_ENOMEM : CT_EINVAL, "%s", p->msg);
  if (!doc) return ct_fail(err, CT_ENOMEM, "GraphQL parse error: out of memory");
  *out = doc;
  return CT_OK;
}

CT_RESULT gq_parse_query_pm(rg_arena *a, const char *src, size_t n, gq_posmap *pm, rv **out, ct_err *err) {
  if (n > GQ_MAX_DOC_BYTES)
    return ct_fail(err, CT_ELIMIT, "GraphQL parse error: input: document larger than %u bytes", GQ_MAX_DOC_BYTES);
  gq_p p;
  rego__p_init(&p, a, src, n, pm);
  lst ops = {0}, frags = {0};
  while (rego__p_peek(&p).kind != TK_EOF) {
    if (p.failed) break;
    desc_t d = rego__p_description(&p);
    gq_tok t = rego__p_peek(&p);
    if (t.kind == TK_NAME) {
      if (rego__tok_is(&t, "query") || rego__tok_is(&t, "mutation") || rego__tok_is(&t, "subscription"))
        rego__ls_add(&ops, &p, rego__p_operation(&p, d));
      else if (rego__tok_is(&t, "fragment"))
        rego__ls_add(&frags, &p, rego__p_fragment_def(&p, d));
      else
        rego__p_unexpected(&p);
    } else if (t.kind == TK_BRACEL) {
      rego__ls_add(&ops, &p, rego__p_operation(&p, d));
    } else {
      rego__p_unexpected(&p);
    }
  }
  ob o = {.n = 0};
  rego__ob_put(&o, &p, "Operations", rego__ls_done(&ops, &p));
  rego__ob_put(&o, &p, "Fragments", rego__ls_done(&frags, &p));
  return rego__p_finish(&p, rego__ob_done(&o, &p, 0, 0), out, err);
}

CT_RESULT gq_parse_query(rg_arena *a, const char *src, size_t n, rv **out, ct_err *err) {
  return gq_parse_query_pm(a, src, n, NULL, out, err);
}

/* ---------------------------------------------------------------- schema documents */

static rv *rego__p_input_value(gq_p *p, bool arg) {
  desc_t d = rego__p_description(p);
  ob o = {.n = 0};
  if (d.n) {
    rego__ob_comment(&o, p, "BeforeDescriptionComment", d.comment);
    rego__ob_str(&o, p, "Description", d.text, d.n);
  } else {
    rego__ob_cstr(&o, p, "Description", "");
  }
  gq_tok pos = rego__p_peek(p);
  rego__ob_comment(&o, p, "AfterDescriptionComment", p->comment);
  gq_tok nm = rego__p_name(p);
  rego__ob_tok(&o, p, "Name", &nm);
  rv *args = NULL;
  if (!arg) args = NULL;
  rego__p_expect(p, TK_COLON, NULL);
  rego__ob_put(&o, p, "Type", rego__p_type(p));
  if (rego__p_skip(p, TK_EQUALS)) rego__ob_put(&o, p, "DefaultValue", rego__p_value(p, true));
  rego__ob_put(&o, p, "Directives", rego__p_directives(p, true));
  (void)args;
  return rego__ob_done(&o, p, pos.line, pos.col);
}

static rv *rego__p_arg_defs(gq_p *p) {
  lst items = {0};
  if (!rego__p_skip(p, TK_PARENL)) return NULL;
  bool called = false;
  while (rego__p_peek(p).kind != TK_PARENR && !p->failed) {
    called = true;
    rego__ls_add(&items, p, rego__p_input_value(p, true));
  }
  if (!called) {
    gq_tok t = rego__p_peek(p);
    rego__p_error(p, &t, "expected at least one definition, found %s", tk_str[t.kind]);
    return NULL;
  }
  rego__p_next(p);
  return rego__ls_done(&items, p);
}

static rv *rego__p_field_def(gq_p *p) {
  desc_t d = rego__p_description(p);
  ob o = {.n = 0};
  if (d.n) {
    rego__ob_comment(&o, p, "BeforeDescriptionComment", d.comment);
    rego__ob_str(&o, p, "Description", d.text, d.n);
  } else {
    rego__ob_cstr(&o, p, "Description", "");
  }
  gq_tok pos = rego__p_peek(p);
  rego__ob_comment(&o, p, "AfterDescriptionComment", p->comment);
  gq_tok nm = rego__p_name(p);
  rego__ob_tok(&o, p, "Name", &nm);
  rego__ob_put(&o, p, "Arguments", rego__p_arg_defs(p));
  rego__p_expect(p, TK_COLON, NULL);
  rego__ob_put(&o, p, "Type", rego__p_type(p));
  rego__ob_put(&o, p, "Directives", rego__p_directives(p, true));
  return rego__ob_done(&o, p, pos.line, pos.col);
}

static rv *rego__p_enum_value_def(gq_p *p) {
  desc_t d = rego__p_description(p);
  ob o = {.n = 0};
  if (d.n) {
    rego__ob_comment(&o, p, "BeforeDescriptionComment", d.comment);
    rego__ob_str(&o, p, "Description", d.text, d.n);
  } else {
    rego__ob_cstr(&o, p, "Description", "");
  }
  gq_tok pos = rego__p_peek(p);
  rego__ob_comment(&o, p, "AfterDescriptionComment", p->comment);
  gq_tok nm = rego__p_name(p);
  rego__ob_tok(&o, p, "Name", &nm);
  rego__ob_put(&o, p, "Directives", rego__p_directives(p, true));
  return rego__ob_done(&o, p, pos.line, pos.col);
}

/* `{ item+ }` (gqlparser's some()); returns the comment group before the closing brace */
static rv *rego__p_some_braces(gq_p *p, lst *items, rv *(*item)(gq_p *), bool *present) {
  *present = false;
  if (!rego__p_skip(p, TK_BRACEL)) return NULL;
  *present = true;
  bool called = false;
  while (rego__p_peek(p).kind != TK_BRACER && !p->failed) {
    called = true;
    rego__ls_add(items, p, item(p));
  }
  if (!called) {
    gq_tok t = rego__p_peek(p);
    rego__p_error(p, &t, "expected at least one definition, found %s", tk_str[t.kind]);
    return NULL;
  }
  rv *c = p->comment;
  rego__p_next(p);
  return c;
}

static rv *rego__p_input_field_def(gq_p *p) { return rego__p_input_value(p, false); }

static rv *rego__p_implements(gq_p *p) {
  lst items = {0};
  gq_tok t = rego__p_peek(p);
  if (!rego__tok_is(&t, "implements")) return NULL;
  rego__p_next(p);
  rego__p_skip(p, TK_AMP);
  do {
    gq_tok nm = rego__p_name(p);
    rv *s = rv_str(p->a, nm.v, nm.vn);
    if (!s) rego__p_oom(p);
    rego__ls_add(&items, p, s);
  } while (rego__p_skip(p, TK_AMP) && !p->failed);
  return rego__ls_done(&items, p);
}

static rv *rego__p_union_members(gq_p *p) {
  lst items = {0};
  if (!rego__p_skip(p, TK_EQUALS)) return NULL;
  rego__p_skip(p, TK_PIPE);
  do {
    gq_tok nm = rego__p_name(p);
    rv *s = rv_str(p->a, nm.v, nm.vn);
    if (!s) rego__p_oom(p);
    else if (p->pm && !p->failed) gq_pos_put(p->pm, s, nm.line, nm.col); /* TypePositions */
    rego__ls_add(&items, p, s);
  } while (rego__p_skip(p, TK_PIPE) && !p->failed);
  return rego__ls_done(&items, p);
}

static rv *rego__p_op_type_def(gq_p *p) {
  gq_tok pos = rego__p_peek(p);
  ob o = {.n = 0};
  rego__ob_comment(&o, p, "Comment", p->comment);
  rego__ob_cstr(&o, p, "Operation", rego__p_op_type(p));
  rego__p_expect(p, TK_COLON, NULL);
  gq_tok nm = rego__p_name(p);
  rego__ob_tok(&o, p, "Type", &nm);
  return rego__ob_done(&o, p, pos.line, pos.col);
}

static const char *const dir_locs[] = {"QUERY", "MUTATION", "SUBSCRIPTION", "FIELD", "FRAGMENT_DEFINITION",
                                       "FRAGMENT_SPREAD", "INLINE_FRAGMENT", "VARIABLE_DEFINITION", "SCHEMA",
                                       "SCALAR", "OBJECT", "FIELD_DEFINITION", "ARGUMENT_DEFINITION",
                                       "INTERFACE", "UNION", "ENUM", "ENUM_VALUE", "INPUT_OBJECT",
                                       "INPUT_FIELD_DEFINITION", "DIRECTIVE_DEFINITION", NULL};

static rv *rego__p_dir_location(gq_p *p) {
  gq_tok t = rego__p_expect(p, TK_NAME, NULL);
  if (p->failed) return NULL;
  for (int i = 0; dir_locs[i]; i++)
    if (rego__tok_is(&t, dir_locs[i])) {
      rv *s = rv_cstr(p->a, dir_locs[i]);
      if (!s) rego__p_oom(p);
      return s;
    }
  rego__p_unexpected_tok(p, &t);
  return NULL;
}

/* A type definition (or extension when `ext`): scalar / type / interface / union / enum / input. */
static rv *rego__p_type_def(gq_p *p, desc_t d, bool ext, rv *ext_comment) {
  ob o = {.n = 0};
  gq_tok kw = rego__p_peek(p);
  rv *after = ext_comment;
  if (!ext) {
    if (kw.kind != TK_NAME) {
      rego__p_unexpected(p);
      return NULL;
    }
    rego__p_expect(p, TK_NAME, &after);
  } else {
    rego__p_next(p);
  }
  gq_tok pos = rego__p_peek(p);
  const char *kind = rego__tok_is(&kw, "scalar") ? "SCALAR" : rego__tok_is(&kw, "type") ? "OBJECT"
                     : rego__tok_is(&kw, "interface") ? "INTERFACE" : rego__tok_is(&kw, "union") ? "UNION"
                     : rego__tok_is(&kw, "enum") ? "ENUM" : "INPUT_OBJECT";
  if (!ext) rego__ob_comment(&o, p, "BeforeDescriptionComment", d.comment);
  rego__ob_str(&o, p, "Description", d.text, d.n);
  rego__ob_comment(&o, p, "AfterDescriptionComment", after);
  rego__ob_cstr(&o, p, "Kind", kind);
  gq_tok nm = rego__p_name(p);
  rego__ob_tok(&o, p, "Name", &nm);
  rego__ob_bool(&o, p, "BuiltIn", false);
  bool has_any = false;
  rv *ifs = NULL, *dirs = NULL, *end = NULL;
  lst items = {0};
  bool present = false;
  if (!strcmp(kind, "OBJECT") || !strcmp(kind, "INTERFACE")) {
    ifs = rego__p_implements(p);
    dirs = rego__p_directives(p, true);
    end = rego__p_some_braces(p, &items, rego__p_field_def, &present);
    rego__ob_put(&o, p, "Interfaces", ifs);
    rego__ob_put(&o, p, "Fields", rego__ls_done(&items, p));
    has_any = ifs || dirs || items.n;
  } else if (!strcmp(kind, "SCALAR")) {
    dirs = rego__p_directives(p, true);
    has_any = dirs != NULL;
  } else if (!strcmp(kind, "UNION")) {
    dirs = rego__p_directives(p, true);
    rv *types = rego__p_union_members(p);
    rego__ob_put(&o, p, "Types", types);
    has_any = dirs || types;
  } else if (!strcmp(kind, "ENUM")) {
    dirs = rego__p_directives(p, true);
    end = rego__p_some_braces(p, &items, rego__p_enum_value_def, &present);
    rego__ob_put(&o, p, "EnumValues", rego__ls_done(&items, p));
    has_any = dirs || items.n;
  } else {
    dirs = rego__p_directives(p, !ext);
    end = rego__p_some_braces(p, &items, rego__p_input_field_def, &present);
    rego__ob_put(&o, p, "Fields", rego__ls_done(&items, p));
    has_any = dirs || items.n;
  }
  rego__ob_put(&o, p, "Directives", dirs);
  rego__ob_comment(&o, p, "EndOfDefinitionComment", end);
  if (ext && !has_any) rego__p_unexpected(p);
  return rego__ob_done(&o, p, pos.line, pos.col);
}

static rv *rego__p_schema_def(gq_p *p, desc_t d, bool ext, rv *ext_comment) {
  rv *after = ext_comment;
  rego__p_expect_kw(p, "schema", ext ? NULL : &after);
  gq_tok pos = rego__p_peek(p);
  ob o = {.n = 0};
  if (!ext) rego__ob_comment(&o, p, "BeforeDescriptionComment", d.comment);
  rego__ob_str(&o, p, "Description", ext ? "" : d.text, ext ? 0 : d.n);
  rego__ob_comment(&o, p, "AfterDescriptionComment", after);
  rv *dirs = rego__p_directives(p, true);
  lst items = {0};
  bool present;
  rv *end = rego__p_some_braces(p, &items, rego__p_op_type_def, &present);
  rego__ob_put(&o, p, "Directives", dirs);
  rego__ob_put(&o, p, "OperationTypes", rego__ls_done(&items, p));
  rego__ob_comment(&o, p, "EndOfDefinitionComment", end);
  if (ext && !dirs && !items.n) rego__p_unexpected(p);
  return rego__ob_done(&o, p, pos.line, pos.col);
}

static rv *rego__p_directive_def(gq_p *p, desc_t d, bool ext, rv *ext_comment) {
  rv *after = ext_comment;
  rego__p_expect_kw(p, "directive", ext ? NULL : &after);
  rego__p_expect(p, TK_AT, NULL);
  gq_tok pos = rego__p_peek(p);
  ob o = {.n = 0};
  if (!ext) rego__ob_comment(&o, p, "BeforeDescriptionComment", d.comment);
  rego__ob_str(&o, p, "Description", ext ? "" : d.text, ext ? 0 : d.n);
  rego__ob_comment(&o, p, "AfterDescriptionComment", after);
  gq_tok nm = rego__p_name(p);
  rego__ob_tok(&o, p, "Name", &nm);
  if (ext) {
    rv *dirs = rego__p_directives(p, true);
    rego__ob_put(&o, p, "Directives", dirs);
    rego__ob_bool(&o, p, "IsRepeatable", false);
    if (!dirs) rego__p_unexpected(p);
    return rego__ob_done(&o, p, pos.line, pos.col);
  }
  rego__ob_put(&o, p, "Arguments", rego__p_arg_defs(p));
  rego__ob_put(&o, p, "Directives", rego__p_directives(p, true));
  gq_tok pk = rego__p_peek(p);
  bool rep = false;
  if (pk.kind == TK_NAME && rego__tok_is(&pk, "repeatable")) {
    rep = true;
    rego__p_skip(p, TK_NAME);
  }
  rego__ob_bool(&o, p, "IsRepeatable", rep);
  rego__p_expect_kw(p, "on", NULL);
  lst locs = {0};
  rego__p_skip(p, TK_PIPE);
  rego__ls_add(&locs, p, rego__p_dir_location(p));
  while (rego__p_skip(p, TK_PIPE) && !p->failed) rego__ls_add(&locs, p, rego__p_dir_location(p));
  rego__ob_put(&o, p, "Locations", rego__ls_done(&locs, p));
  return rego__ob_done(&o, p, pos.line, pos.col);
}

CT_RESULT gq_parse_schema_pm(rg_arena *a, const char *src, size_t n, gq_posmap *pm, rv **out, ct_err *err) {
  if (n > GQ_MAX_DOC_BYTES)
    return ct_fail(err, CT_ELIMIT, "GraphQL parse error: input: document larger than %u bytes", GQ_MAX_DOC_BYTES);
  gq_p p;
  rego__p_init(&p, a, src, n, pm);
  lst schema = {0}, schema_ext = {0}, dirs = {0}, dir_ext = {0}, defs = {0}, exts = {0};
  while (rego__p_peek(&p).kind != TK_EOF) {
    if (p.failed) break;
    desc_t d = {"", 0, NULL, false, {0}};
    gq_tok t = rego__p_peek(&p);
    if (t.kind == TK_BLOCK || t.kind == TK_STRING) d = rego__p_description(&p);
    t = rego__p_peek(&p);
    if (t.kind != TK_NAME) {
      rego__p_unexpected(&p);
      break;
    }
    if (rego__tok_is(&t, "scalar") || rego__tok_is(&t, "type") || rego__tok_is(&t, "interface") || rego__tok_is(&t, "union") ||
        rego__tok_is(&t, "enum") || rego__tok_is(&t, "input")) {
      rego__ls_add(&defs, &p, rego__p_type_def(&p, d, false, NULL));
    } else if (rego__tok_is(&t, "schema")) {
      rego__ls_add(&schema, &p, rego__p_schema_def(&p, d, false, NULL));
    } else if (rego__tok_is(&t, "directive")) {
      rego__ls_add(&dirs, &p, rego__p_directive_def(&p, d, false, NULL));
    } else if (rego__tok_is(&t, "extend")) {
      if (d.n) {
        gq_tok pv = p.prev;
        rego__p_unexpected_tok(&p, &pv);
      }
      rv *c;
      rego__p_expect_kw(&p, "extend", &c);
      gq_tok k = rego__p_peek(&p);
      desc_t none = {"", 0, NULL, false, {0}};
      if (rego__tok_is(&k, "schema")) rego__ls_add(&schema_ext, &p, rego__p_schema_def(&p, none, true, c));
      else if (rego__tok_is(&k, "scalar") || rego__tok_is(&k, "type") || rego__tok_is(&k, "interface") || rego__tok_is(&k, "union") ||
               rego__tok_is(&k, "enum") || rego__tok_is(&k, "input"))
        rego__ls_add(&exts, &p, rego__p_type_def(&p, none, true, c));
      else if (rego__tok_is(&k, "directive"))
        rego__ls_add(&dir_ext, &p, rego__p_directive_def(&p, none, true, c));
      else
        rego__p_unexpected(&p);
    } else {
      rego__p_unexpected(&p);
      break;
    }
  }
  ob o = {.n = 0};
  rego__ob_put(&o, &p, "Schema", rego__ls_done(&schema, &p));
  rego__ob_put(&o, &p, "SchemaExtension", rego__ls_done(&schema_ext, &p));
  rego__ob_put(&o, &p, "Directives", rego__ls_done(&dirs, &p));
  rego__ob_put(&o, &p, "DirectiveExtensions", rego__ls_done(&dir_ext, &p));
  rego__ob_put(&o, &p, "Definitions", rego__ls_done(&defs, &p));
  rego__ob_put(&o, &p, "Extensions", rego__ls_done(&exts, &p));
  rego__ob_comment(&o, &p, "Comment", p.comment);
  return rego__p_finish(&p, rego__ob_done(&o, &p, 0, 0), out, err);
}

CT_RESULT gq_parse_schema(rg_arena *a, const char *src, size_t n, rv **out, ct_err *err) {
  return gq_parse_schema_pm(a, src, n, NULL, out, err);
}

/* ---------------------------------------------------------------- position map */

static size_t rego__pm_hash(const rv *k) { return (size_t)(((uintptr_t)k >> 4) * 0x9E3779B97F4A7C15ull); }

void gq_pos_put(gq_posmap *m, const rv *k, long line, long col) {
  if (m->failed) return;
  if ((m->n + 1) * 2 > m->cap) {
    size_t nc = m->cap ? m->cap * 2 : 256;
    gq_posent *ne = rg_alloc(m->a, nc * sizeof(gq_posent));
    if (!ne) {
      m->failed = true;
      return;
    }
    for (size_t i = 0; i < m->cap; i++)
      if (m->e[i].k) {
        size_t h = rego__pm_hash(m->e[i].k) & (nc - 1);
        while (ne[h].k) h = (h + 1) & (nc - 1);
        ne[h] = m->e[i];
      }
    m->e = ne, m->cap = nc;
  }
  size_t h = rego__pm_hash(k) & (m->cap - 1);
  while (m->e[h].k && m->e[h].k != k) h = (h + 1) & (m->cap - 1);
  if (!m->e[h].k) m->n++;
  m->e[h].k = k, m->e[h].line = line, m->e[h].col = col;
}

bool gq_pos_get(const gq_posmap *m, const rv *k, long *line, long *col) {
  if (!m || !m->cap || !k) return false;
  size_t h = rego__pm_hash(k) & (m->cap - 1);
  while (m->e[h].k) {
    if (m->e[h].k == k) {
      *line = m->e[h].line, *col = m->e[h].col;
      return true;
    }
    h = (h + 1) & (m->cap - 1);
  }
  return false;
}
