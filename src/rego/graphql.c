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
static uint32_t u8dec(const unsigned char *s, size_t n, size_t *w) {
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

static size_t u8enc(uint32_t r, char *o) {
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

static gq_tok lx_tok(gq_lex *l, int kind, const char *v, size_t vn) {
  gq_tok t = {kind, v, vn, l->line, l->start_runes - l->line_start + 1};
  return t;
}
static gq_tok lx_raw(gq_lex *l, int kind) { return lx_tok(l, kind, l->s + l->start, l->end - l->start); }
static gq_tok lx_err(gq_lex *l) {
  gq_tok t = {TK_INVALID, "", 0, l->line, l->end_runes - l->line_start + 1};
  return t;
}

static void lx_ws(gq_lex *l) {
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

static bool lx_accept(gq_lex *l, const char *set) {
  if (l->end >= l->n || !l->s[l->end] || !strchr(set, l->s[l->end])) return false;
  l->end++, l->end_runes++;
  return true;
}
static int lx_digits(gq_lex *l) {
  int k = 0;
  while (l->end < l->n && l->s[l->end] >= '0' && l->s[l->end] <= '9') l->end++, l->end_runes++, k++;
  return k;
}

static gq_tok lx_number(gq_lex *l) {
  bool flt = false;
  l->end--, l->end_runes--;
  lx_accept(l, "-");
  if (lx_accept(l, "0")) {
    int k = lx_digits(l);
    if (k) {
      l->end -= (size_t)k, l->end_runes -= k;
      return lx_err(l);
    }
  } else if (!lx_digits(l)) {
    return lx_err(l);
  }
  if (lx_accept(l, ".")) {
    flt = true;
    if (!lx_digits(l)) return lx_err(l);
  }
  if (lx_accept(l, "eE")) {
    flt = true;
    lx_accept(l, "-+");
    if (!lx_digits(l)) return lx_err(l);
  }
  return lx_raw(l, flt ? TK_FLOAT : TK_INT);
}

static int hexd(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
static bool unhex4(const char *s, uint32_t *r) {
  *r = 0;
  for (int i = 0; i < 4; i++) {
    int d = hexd((unsigned char)s[i]);
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
static void ab_put(abuf *b, const char *s, size_t n) {
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
static void ab_rune(abuf *b, uint32_t r) {
  char t[4];
  ab_put(b, t, u8enc(r, t));
}

static gq_tok lx_string(gq_lex *l, bool *oom) {
  abuf b = {l->a, NULL, 0, 0, false};
  bool esc = false;
  l->start++, l->start_runes++;
  while (l->end < l->n) {
    unsigned char c = (unsigned char)l->s[l->end];
    if (c == '\n' || c == '\r') break;
    if (c < 0x20 && c != '\t') return lx_err(l);
    if (c == '"') {
      gq_tok t = lx_raw(l, TK_STRING);
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
        return lx_err(l);
      }
      if (!esc) {
        esc = true;
        ab_put(&b, l->s + l->start, l->end - l->start);
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
            int d = hexd((unsigned char)q[k]);
            if (d < 0) break;
            r = (r << 4) | (uint32_t)d;
            k++;
          }
          if (!ok) {
            l->end++, l->end_runes++;
            return lx_err(l);
          }
          l->end += 3 + k, l->end_runes += 3 + (long)k;
          ab_rune(&b, r);
          continue;
        }
        if (l->end + 6 >= l->n) {
          l->end++, l->end_runes++;
          return lx_err(l);
        }
        uint32_t r;
        if (!unhex4(l->s + l->end + 2, &r)) {
          l->end++, l->end_runes++;
          return lx_err(l);
        }
        l->end += 6, l->end_runes += 6;
        if (r >= 0xD800 && r < 0xDC00 && l->end + 6 < l->n) {
          uint32_t r2;
          const char *nx = l->s + l->end;
          if (nx[0] == '\\' && nx[1] == 'u' && unhex4(nx + 2, &r2) && r2 >= 0xDC00 && r2 <= 0xDFFF) {
            r = 0x10000 + ((r - 0xD800) << 10) + (r2 - 0xDC00);
            l->end += 6, l->end_runes += 6;
          }
        }
        ab_rune(&b, r);
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
            return lx_err(l);
        }
        ab_put(&b, &o, 1);
        l->end += 2, l->end_runes += 2;
      }
      continue;
    }
    size_t w = 1;
    uint32_t r = c;
    if (c >= 127) r = u8dec((const unsigned char *)l->s + l->end, l->n - l->end, &w);
    if (esc) {
      if (c < 127) ab_put(&b, (const char *)&l->s[l->end], 1);
      else ab_rune(&b, r);
    }
    l->end += w, l->end_runes++;
  }
  return lx_err(l);
}

static long lead_ws(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t') return (long)i;
  return 0x7fffffff;
}

/* gqlparser's blockStringValue: common indentation (first line included in the computation,
 * but not trimmed) and blank leading / trailing lines removed. */
static char *block_value(rg_arena *a, const char *raw, size_t n, size_t *outn) {
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
    long ind = lead_ws(ls[i], ln[i]);
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
  while (s0 < e0 && lead_ws(ls[s0], ln[s0]) == 0x7fffffff) s0++;
  while (s0 < e0 && lead_ws(ls[e0 - 1], ln[e0 - 1]) == 0x7fffffff) e0--;
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

static gq_tok lx_block(gq_lex *l, bool *oom) {
  abuf b = {l->a, NULL, 0, 0, false};
  l->start += 3, l->start_runes += 3;
  l->end += 2, l->end_runes += 2;
  while (l->end < l->n) {
    unsigned char c = (unsigned char)l->s[l->end];
    if (c == '"') {
      size_t q = 1, i = l->end + 1;
      while (i < l->n && l->s[i] == '"') q++, i++;
      if (q >= 3) {
        for (size_t j = 0; j < q - 3; j++) ab_put(&b, "\"", 1);
        size_t vn = 0;
        char *v = b.oom ? NULL : block_value(l->a, b.p ? b.p : "", b.n, &vn);
        if (!v) *oom = true;
        gq_tok t = lx_tok(l, TK_BLOCK, v ? v : "", vn);
        l->end += q, l->end_runes += (long)q;
        return t;
      }
    }
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') return lx_err(l);
    if (c == '\\' && l->end + 4 <= l->n && !memcmp(l->s + l->end, "\\\"\"\"", 4)) {
      ab_put(&b, "\"\"\"", 3);
      l->end += 4, l->end_runes += 4;
    } else if (c == '\r') {
      if (l->end + 1 < l->n && l->s[l->end + 1] == '\n') l->end++, l->end_runes++;
      ab_put(&b, "\n", 1);
      l->end++, l->end_runes++, l->line++;
      l->line_start = l->end_runes;
    } else {
      size_t w = 1;
      if (c >= 127) {
        uint32_t r = u8dec((const unsigned char *)l->s + l->end, l->n - l->end, &w);
        ab_rune(&b, r);
      } else {
        ab_put(&b, (const char *)&l->s[l->end], 1);
      }
      l->end += w, l->end_runes++;
      if (c == '\n') {
        l->line++;
        l->line_start = l->end_runes;
      }
    }
  }
  return lx_err(l);
}

static gq_tok lx_next(gq_lex *l, bool *oom) {
  lx_ws(l);
  l->start = l->end, l->start_runes = l->end_runes;
  if (l->end >= l->n) return lx_raw(l, TK_EOF);
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
        return lx_tok(l, TK_SPREAD, "", 0);
      }
      break;
    case '#':
      while (l->end < l->n) {
        size_t w;
        uint32_t r = u8dec((const unsigned char *)l->s + l->end, l->n - l->end, &w);
        if (r > 0x1f || r == '\t') l->end += w, l->end_runes++;
        else break;
      }
      return lx_raw(l, TK_COMMENT);
    case '"':
      if (l->n > l->start + 2 && l->s[l->start + 1] == '"' && l->s[l->start + 2] == '"') return lx_block(l, oom);
      return lx_string(l, oom);
    default:
      if (c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        while (l->end < l->n) {
          char d = l->s[l->end];
          if ((d >= '0' && d <= '9') || (d >= 'A' && d <= 'Z') || (d >= 'a' && d <= 'z') || d == '_') l->end++, l->end_runes++;
          else break;
        }
        return lx_raw(l, TK_NAME);
      }
      if (c == '-' || (c >= '0' && c <= '9')) return lx_number(l);
  }
  if (k >= 0) return lx_tok(l, k, "", 0);
  l->end--, l->end_runes--;
  return lx_err(l);
}

/* ---------------------------------------------------------------- parser machinery */

static void quote(char *o, size_t cap, const char *s, size_t n) {
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
      uint32_t r = u8dec((const unsigned char *)s + i, n - i, &cw);
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

static void p_error(gq_p *p, const gq_tok *t, const char *fmt, ...) CT_PRINTF(3, 4);
static void p_error(gq_p *p, const gq_tok *t, const char *fmt, ...) {
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
static void p_oom(gq_p *p) {
  if (p->failed) return;
  p->failed = p->oom = true;
  snprintf(p->msg, sizeof(p->msg), "GraphQL parse error: out of memory");
}

/* tok.String(): kind, plus the quoted value when there is one */
static const char *tok_str(const gq_tok *t, char *buf, size_t cap) {
  if (!t->vn) return tk_str[t->kind];
  char q[CT_ERR_MSG_MAX];
  quote(q, sizeof(q), t->v, t->vn); /* error messages are bounded by ct_err anyway */
  snprintf(buf, cap, "%s %s", tk_str[t->kind], q);
  return buf;
}

static rv *mk_obj2(gq_p *p, const char *k, rv *v) {
  rv *ks = rv_cstr(p->a, k);
  if (!ks || !v) return NULL;
  return rv_obj(p->a, &ks, &v, 1, NULL);
}

static gq_tok p_peek(gq_p *p);

/* Collects a run of comment tokens into the current comment group (gqlparser's
 * consumeCommentGroup); called with a comment token already peeked. */
static void p_comment_group(gq_p *p) {
  if (p->consuming || p->failed) return;
  p->consuming = true;
  rv *items[64];
  size_t n = 0, total = 0;
  rv *acc = NULL;
  for (;;) {
    gq_tok t = p_peek(p);
    if (p->failed || t.kind != TK_COMMENT) break;
    /* next() */
    p->tokens++;
    p->peeked = false;
    p->comment = NULL;
    p->prev = t;
    rv *val = rv_str(p->a, t.v, t.vn);
    rv *c = val ? mk_obj2(p, "Value", val) : NULL;
    if (!c) {
      p_oom(p);
      break;
    }
    if (n == 64) { /* flush into acc */
      rv **all = rg_alloc(p->a, (total + n) * sizeof(rv *));
      if (!all) {
        p_oom(p);
        break;
      }
      if (acc) memcpy(all, acc->u.a, total * sizeof(rv *));
      memcpy(all + total, items, n * sizeof(rv *));
      acc = rv_arr(p->a, all, total + n);
      total += n, n = 0;
      if (!acc) {
        p_oom(p);
        break;
      }
    }
    items[n++] = c;
  }
  if (!p->failed) {
    rv **all = rg_alloc(p->a, (total + n + 1) * sizeof(rv *));
    if (!all) {
      p_oom(p);
    } else {
      if (acc) memcpy(all, acc->u.a, total * sizeof(rv *));
      memcpy(all + total, items, n * sizeof(rv *));
      p->comment = rv_arr(p->a, all, total + n);
      if (!p->comment) p_oom(p);
    }
  }
  p->consuming = false;
}

static gq_tok p_peek(gq_p *p) {
  if (p->failed) return p->prev;
  if (!p->peeked) {
    bool oom = false;
    p->peek_tok = lx_next(&p->lx, &oom);
    p->peeked = true;
    if (oom) {
      p_oom(p);
      return p->prev;
    }
    if (p->peek_tok.kind == TK_COMMENT) p_comment_group(p);
  }
  return p->peek_tok;
}

static gq_tok p_next(gq_p *p) {
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
    p->prev = lx_next(&p->lx, &oom);
    if (oom) p_oom(p);
    else if (p->prev.kind == TK_COMMENT) p_comment_group(p);
  }
  if (p->prev.kind == TK_INVALID && !p->failed) {
    /* a lexer error surfaces when the bad token is consumed */
    p_error(p, &p->prev, "Unexpected %s", tk_str[TK_INVALID]);
  }
  return p->prev;
}

static bool p_skip(gq_p *p, int kind) {
  if (p->failed) return false;
  if (p_peek(p).kind != kind) return false;
  p_next(p);
  return true;
}

static gq_tok p_expect(gq_p *p, int kind, rv **comment) {
  gq_tok t = p_peek(p);
  if (comment) *comment = p->comment;
  if (t.kind == kind) return p_next(p);
  p_error(p, &t, "Expected %s, found %s", tk_str[kind], tk_str[t.kind]);
  return t;
}

static gq_tok p_expect_kw(gq_p *p, const char *kw, rv **comment) {
  gq_tok t = p_peek(p);
  if (comment) *comment = p->comment;
  if (t.kind == TK_NAME && t.vn == strlen(kw) && !memcmp(t.v, kw, t.vn)) return p_next(p);
  char b[CT_ERR_MSG_MAX + 32];
  p_error(p, &t, "Expected \"%s\", found %s", kw, tok_str(&t, b, sizeof(b)));
  return t;
}

static void p_unexpected_tok(gq_p *p, const gq_tok *t) {
  char b[CT_ERR_MSG_MAX + 32];
  p_error(p, t, "Unexpected %s", tok_str(t, b, sizeof(b)));
}
static void p_unexpected(gq_p *p) {
  gq_tok t = p_peek(p);
  p_unexpected_tok(p, &t);
}

static bool p_enter(gq_p *p) {
  if (p->depth >= GQ_MAX_DEPTH) {
    gq_tok t = p_peek(p);
    p_error(p, &t, "exceeded maximum nesting depth of %d", GQ_MAX_DEPTH);
    return false;
  }
  p->depth++;
  return true;
}

static bool tok_is(const gq_tok *t, const char *s) { return t->vn == strlen(s) && !memcmp(t->v, s, t->vn); }

/* ---------------------------------------------------------------- builders */

/* object builder applying OPA's pruning: nulls and empty arrays / objects are left out */
typedef struct {
  rv *k[20], *v[20];
  size_t n;
} ob;
static void ob_put(ob *o, gq_p *p, const char *key, rv *v) {
  if (!v || ((v->t == RV_ARR || v->t == RV_OBJ) && v->n == 0)) return;
  rv *k = rv_cstr(p->a, key);
  if (!k) {
    p_oom(p);
    return;
  }
  o->k[o->n] = k, o->v[o->n++] = v;
}
static void ob_str(ob *o, gq_p *p, const char *key, const char *s, size_t n) {
  rv *v = rv_str(p->a, s ? s : "", s ? n : 0);
  if (!v) p_oom(p);
  ob_put(o, p, key, v);
}
static void ob_cstr(ob *o, gq_p *p, const char *key, const char *s) { ob_str(o, p, key, s, s ? strlen(s) : 0); }
static void ob_tok(ob *o, gq_p *p, const char *key, const gq_tok *t) { ob_str(o, p, key, t->v, t->vn); }
static void ob_bool(ob *o, gq_p *p, const char *key, bool b) { ob_put(o, p, key, rv_bool(b)); }
static void ob_comment(ob *o, gq_p *p, const char *key, rv *group) {
  if (!group || !group->n) return;
  rv *g = mk_obj2(p, "List", group);
  if (!g) p_oom(p);
  ob_put(o, p, key, g);
}
static rv *ob_done(ob *o, gq_p *p, long line, long col) {
  if (p->failed) return NULL;
  rv *r = rv_obj(p->a, o->k, o->v, o->n, NULL);
  if (!r) {
    p_oom(p);
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
static void ls_add(lst *l, gq_p *p, rv *x) {
  if (p->failed || !x) return;
  if (x->t == RV_OBJ && !x->n) return;
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 8;
    rv **nv = rg_alloc(p->a, nc * sizeof(rv *));
    if (!nv) {
      p_oom(p);
      return;
    }
    if (l->n) memcpy(nv, l->v, l->n * sizeof(rv *));
    l->v = nv, l->cap = nc;
  }
  l->v[l->n++] = x;
}
static rv *ls_done(lst *l, gq_p *p) {
  if (p->failed || !l->n) return NULL;
  rv *r = rv_arr(p->a, l->v, l->n);
  if (!r) p_oom(p);
  return r;
}

static rv *join_comments(gq_p *p, rv *before, rv *after) {
  if (!before) return after;
  if (!after) return before;
  rv **all = rg_alloc(p->a, (before->n + after->n) * sizeof(rv *));
  if (!all) {
    p_oom(p);
    return NULL;
  }
  memcpy(all, before->u.a, before->n * sizeof(rv *));
  memcpy(all + before->n, after->u.a, after->n * sizeof(rv *));
  rv *r = rv_arr(p->a, all, before->n + after->n);
  if (!r) p_oom(p);
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

static desc_t p_description(gq_p *p) {
  desc_t d = {"", 0, NULL, false, {0}};
  gq_tok t = p_peek(p);
  if (t.kind != TK_BLOCK && t.kind != TK_STRING) return d;
  d.present = true;
  d.comment = p->comment;
  d.tok = p_next(p);
  d.text = d.tok.v, d.n = d.tok.vn;
  return d;
}

static gq_tok p_name(gq_p *p) { return p_expect(p, TK_NAME, NULL); }

static rv *p_value(gq_p *p, bool is_const);

static rv *mk_value(gq_p *p, int kind, const char *raw, size_t rn, rv *children, rv *comment, long line, long col) {
  ob o = {.n = 0};
  ob_str(&o, p, "Raw", raw, rn);
  ob_put(&o, p, "Children", children);
  rv *kv = rv_int(p->a, kind);
  if (!kv) p_oom(p);
  ob_put(&o, p, "Kind", kv);
  ob_comment(&o, p, "Comment", comment);
  ob_bool(&o, p, "ExpectedTypeHasDefault", false);
  return ob_done(&o, p, line, col);
}

static rv *p_list(gq_p *p, bool is_const) {
  if (!p_enter(p)) return NULL;
  gq_tok pos = p_peek(p);
  rv *comment = p->comment;
  lst items = {0};
  if (p_skip(p, TK_BRACKETL)) {
    while (p_peek(p).kind != TK_BRACKETR && !p->failed) {
      rv *v = p_value(p, is_const);
      ob o = {.n = 0};
      ob_cstr(&o, p, "Name", "");
      ob_put(&o, p, "Value", v);
      ls_add(&items, p, ob_done(&o, p, 0, 0));
    }
    p_next(p);
  }
  p->depth--;
  return mk_value(p, 8, "", 0, ls_done(&items, p), comment, pos.line, pos.col);
}

static rv *p_object(gq_p *p, bool is_const) {
  if (!p_enter(p)) return NULL;
  gq_tok pos = p_peek(p);
  rv *comment = p->comment;
  lst items = {0};
  if (p_skip(p, TK_BRACEL)) {
    while (p_peek(p).kind != TK_BRACER && !p->failed) {
      gq_tok fp = p_peek(p);
      ob o = {.n = 0};
      ob_comment(&o, p, "Comment", p->comment);
      gq_tok nm = p_name(p);
      ob_tok(&o, p, "Name", &nm);
      p_expect(p, TK_COLON, NULL);
      ob_put(&o, p, "Value", p_value(p, is_const));
      ls_add(&items, p, ob_done(&o, p, fp.line, fp.col));
    }
    p_next(p);
  }
  p->depth--;
  return mk_value(p, 9, "", 0, ls_done(&items, p), comment, pos.line, pos.col);
}

static rv *p_value(gq_p *p, bool is_const) {
  gq_tok t = p_peek(p);
  int kind;
  switch (t.kind) {
    case TK_BRACKETL: return p_list(p, is_const);
    case TK_BRACEL: return p_object(p, is_const);
    case TK_DOLLAR: {
      if (is_const) {
        p_unexpected(p);
        return NULL;
      }
      p_expect(p, TK_DOLLAR, NULL);
      gq_tok nm = p_name(p);
      return mk_value(p, 0, nm.v, nm.vn, NULL, p->comment, t.line, t.col);
    }
    case TK_INT: kind = 1; break;
    case TK_FLOAT: kind = 2; break;
    case TK_STRING: kind = 3; break;
    case TK_BLOCK: kind = 4; break;
    case TK_NAME:
      kind = tok_is(&t, "true") || tok_is(&t, "false") ? 5 : tok_is(&t, "null") ? 6 : 7;
      break;
    default:
      p_unexpected(p);
      return NULL;
  }
  p_next(p);
  return mk_value(p, kind, t.v, t.vn, NULL, p->comment, t.line, t.col);
}

static rv *p_arguments(gq_p *p, bool is_const) {
  lst items = {0};
  if (!p_skip(p, TK_PARENL)) return NULL;
  bool called = false;
  while (p_peek(p).kind != TK_PARENR && !p->failed) {
    called = true;
    gq_tok pos = p_peek(p);
    ob o = {.n = 0};
    ob_comment(&o, p, "Comment", p->comment);
    gq_tok nm = p_name(p);
    ob_tok(&o, p, "Name", &nm);
    p_expect(p, TK_COLON, NULL);
    ob_put(&o, p, "Value", p_value(p, is_const));
    ls_add(&items, p, ob_done(&o, p, pos.line, pos.col));
  }
  if (!called) {
    gq_tok t = p_peek(p);
    p_error(p, &t, "expected at least one definition, found %s", tk_str[t.kind]);
    return NULL;
  }
  p_next(p);
  return ls_done(&items, p);
}

static rv *p_directives(gq_p *p, bool is_const) {
  lst items = {0};
  while (p_peek(p).kind == TK_AT) {
    if (p->failed) break;
    p_expect(p, TK_AT, NULL);
    gq_tok pos = p_peek(p);
    gq_tok nm = p_name(p);
    rv *args = p_arguments(p, is_const);
    ob o = {.n = 0};
    ob_tok(&o, p, "Name", &nm);
    ob_put(&o, p, "Arguments", args);
    ob_cstr(&o, p, "Location", "");
    ls_add(&items, p, ob_done(&o, p, pos.line, pos.col));
  }
  return ls_done(&items, p);
}

static rv *p_type(gq_p *p) {
  ob o = {.n = 0};
  gq_tok pos;
  if (p_skip(p, TK_BRACKETL)) {
    if (!p_enter(p)) return NULL;
    pos = p_peek(p);
    rv *elem = p_type(p);
    p_expect(p, TK_BRACKETR, NULL);
    p->depth--;
    ob_put(&o, p, "Elem", elem);
    ob_cstr(&o, p, "NamedType", "");
  } else {
    pos = p_peek(p);
    gq_tok nm = p_name(p);
    ob_tok(&o, p, "NamedType", &nm);
  }
  ob_bool(&o, p, "NonNull", p_skip(p, TK_BANG));
  return ob_done(&o, p, pos.line, pos.col);
}

/* ---------------------------------------------------------------- query documents */

static rv *p_selection_set_opt(gq_p *p);

static rv *p_selection_set_req(gq_p *p) {
  gq_tok t = p_peek(p);
  if (t.kind != TK_BRACEL) {
    p_error(p, &t, "Expected %s, found %s", tk_str[TK_BRACEL], tk_str[t.kind]);
    return NULL;
  }
  return p_selection_set_opt(p);
}

static rv *p_field(gq_p *p) {
  gq_tok pos = p_peek(p);
  rv *comment = p->comment;
  gq_tok alias = p_name(p), name = alias;
  if (p_skip(p, TK_COLON)) name = p_name(p);
  rv *args = p_arguments(p, false);
  rv *dirs = p_directives(p, false);
  rv *sel = NULL;
  if (p_peek(p).kind == TK_BRACEL) sel = p_selection_set_opt(p);
  ob o = {.n = 0};
  ob_tok(&o, p, "Alias", &alias);
  ob_tok(&o, p, "Name", &name);
  ob_put(&o, p, "Arguments", args);
  ob_put(&o, p, "Directives", dirs);
  ob_put(&o, p, "SelectionSet", sel);
  ob_comment(&o, p, "Comment", comment);
  return ob_done(&o, p, pos.line, pos.col);
}

static rv *p_fragment(gq_p *p) {
  rv *comment;
  p_expect(p, TK_SPREAD, &comment);
  gq_tok pk = p_peek(p);
  ob o = {.n = 0};
  if (pk.kind == TK_NAME && !tok_is(&pk, "on")) {
    gq_tok nm = p_name(p);
    rv *dirs = p_directives(p, false);
    ob_tok(&o, p, "Name", &nm);
    ob_put(&o, p, "Directives", dirs);
    ob_comment(&o, p, "Comment", comment);
    return ob_done(&o, p, pk.line, pk.col);
  }
  gq_tok tc = {0};
  tc.v = "";
  if (tok_is(&pk, "on")) {
    p_next(p);
    tc = p_name(p);
  }
  rv *dirs = p_directives(p, false);
  rv *sel = p_selection_set_req(p);
  ob_tok(&o, p, "TypeCondition", &tc);
  ob_put(&o, p, "Directives", dirs);
  ob_put(&o, p, "SelectionSet", sel);
  ob_comment(&o, p, "Comment", comment);
  return ob_done(&o, p, pk.line, pk.col);
}

static rv *p_selection_set_opt(gq_p *p) {
  if (!p_enter(p)) return NULL;
  lst items = {0};
  if (p_skip(p, TK_BRACEL)) {
    bool called = false;
    while (p_peek(p).kind != TK_BRACER && !p->failed) {
      called = true;
      ls_add(&items, p, p_peek(p).kind == TK_SPREAD ? p_fragment(p) : p_field(p));
    }
    if (!called) {
      gq_tok t = p_peek(p);
      p_error(p, &t, "expected at least one definition, found %s", tk_str[t.kind]);
    }
    p_next(p);
  }
  p->depth--;
  return ls_done(&items, p);
}

static rv *p_var_defs(gq_p *p) {
  lst items = {0};
  if (!p_skip(p, TK_PARENL)) return NULL;
  bool called = false;
  while (p_peek(p).kind != TK_PARENR && !p->failed) {
    called = true;
    desc_t d = p_description(p);
    gq_tok pos = p_peek(p);
    rv *comment = join_comments(p, d.comment, p->comment);
    p_expect(p, TK_DOLLAR, NULL);
    gq_tok var = p_name(p);
    p_expect(p, TK_COLON, NULL);
    rv *type = p_type(p);
    rv *dflt = NULL;
    if (p_skip(p, TK_EQUALS)) dflt = p_value(p, true);
    rv *dirs = p_directives(p, false);
    ob o = {.n = 0};
    ob_str(&o, p, "Description", d.text, d.n);
    ob_tok(&o, p, "Variable", &var);
    ob_put(&o, p, "Type", type);
    ob_put(&o, p, "DefaultValue", dflt);
    ob_put(&o, p, "Directives", dirs);
    ob_comment(&o, p, "Comment", comment);
    ob_bool(&o, p, "Used", false);
    ls_add(&items, p, ob_done(&o, p, pos.line, pos.col));
  }
  if (!called) {
    gq_tok t = p_peek(p);
    p_error(p, &t, "expected at least one definition, found %s", tk_str[t.kind]);
    return NULL;
  }
  p_next(p);
  return ls_done(&items, p);
}

static const char *p_op_type(gq_p *p) {
  gq_tok t = p_next(p);
  if (tok_is(&t, "query")) return "query";
  if (tok_is(&t, "mutation")) return "mutation";
  if (tok_is(&t, "subscription")) return "subscription";
  p_unexpected_tok(p, &t);
  return "";
}

static rv *p_operation(gq_p *p, desc_t d) {
  ob o = {.n = 0};
  gq_tok pos = p_peek(p);
  if (pos.kind == TK_BRACEL) {
    if (d.present) {
      gq_tok pv = p->prev;
      p_unexpected_tok(p, &pv);
    }
    rv *sel = p_selection_set_req(p);
    ob_cstr(&o, p, "Description", "");
    ob_cstr(&o, p, "Name", "");
    ob_cstr(&o, p, "Operation", "query");
    ob_put(&o, p, "SelectionSet", sel);
    /* gqlparser reads the comment after parsing the selection set (Go evaluates the calls
     * in a composite literal first) */
    ob_comment(&o, p, "Comment", p->comment);
    return ob_done(&o, p, pos.line, pos.col);
  }
  rv *comment = join_comments(p, d.comment, p->comment);
  const char *op = p_op_type(p);
  gq_tok name = {0};
  name.v = "";
  if (p_peek(p).kind == TK_NAME) name = p_next(p);
  rv *vars = p_var_defs(p);
  rv *dirs = p_directives(p, false);
  rv *sel = p_selection_set_req(p);
  ob_str(&o, p, "Description", d.text, d.n);
  ob_cstr(&o, p, "Operation", op);
  ob_tok(&o, p, "Name", &name);
  ob_put(&o, p, "VariableDefinitions", vars);
  ob_put(&o, p, "Directives", dirs);
  ob_put(&o, p, "SelectionSet", sel);
  ob_comment(&o, p, "Comment", comment);
  return ob_done(&o, p, pos.line, pos.col);
}

static gq_tok p_fragment_name(gq_p *p) {
  gq_tok t = p_peek(p);
  if (tok_is(&t, "on")) {
    p_unexpected(p);
    return t;
  }
  return p_name(p);
}

static rv *p_fragment_def(gq_p *p, desc_t d) {
  gq_tok pos = p_peek(p);
  rv *comment = join_comments(p, d.comment, p->comment);
  p_expect_kw(p, "fragment", NULL);
  gq_tok name = p_fragment_name(p);
  rv *vars = p_var_defs(p);
  p_expect_kw(p, "on", NULL);
  gq_tok tc = p_name(p);
  rv *dirs = p_directives(p, false);
  rv *sel = p_selection_set_req(p);
  ob o = {.n = 0};
  ob_str(&o, p, "Description", d.text, d.n);
  ob_tok(&o, p, "Name", &name);
  ob_put(&o, p, "VariableDefinition", vars);
  ob_tok(&o, p, "TypeCondition", &tc);
  ob_put(&o, p, "Directives", dirs);
  ob_put(&o, p, "SelectionSet", sel);
  ob_comment(&o, p, "Comment", comment);
  return ob_done(&o, p, pos.line, pos.col);
}

static void p_init(gq_p *p, rg_arena *a, const char *src, size_t n, gq_posmap *pm) {
  memset(p, 0, sizeof(*p));
  p->a = a;
  p->pm = pm;
  p->lx.a = a;
  p->lx.s = src;
  p->lx.n = n;
  p->lx.line = 1;
  p->prev.v = "";
}

static CT_RESULT p_finish(gq_p *p, rv *doc, rv **out, ct_err *err) {
  if (p->failed) return ct_fail(err, p->oom ? CT_ENOMEM : CT_EINVAL, "%s", p->msg);
  if (!doc) return ct_fail(err, CT_ENOMEM, "GraphQL parse error: out of memory");
  *out = doc;
  return CT_OK;
}

CT_RESULT gq_parse_query_pm(rg_arena *a, const char *src, size_t n, gq_posmap *pm, rv **out, ct_err *err) {
  if (n > GQ_MAX_DOC_BYTES)
    return ct_fail(err, CT_ELIMIT, "GraphQL parse error: input: document larger than %u bytes", GQ_MAX_DOC_BYTES);
  gq_p p;
  p_init(&p, a, src, n, pm);
  lst ops = {0}, frags = {0};
  while (p_peek(&p).kind != TK_EOF) {
    if (p.failed) break;
    desc_t d = p_description(&p);
    gq_tok t = p_peek(&p);
    if (t.kind == TK_NAME) {
      if (tok_is(&t, "query") || tok_is(&t, "mutation") || tok_is(&t, "subscription"))
        ls_add(&ops, &p, p_operation(&p, d));
      else if (tok_is(&t, "fragment"))
        ls_add(&frags, &p, p_fragment_def(&p, d));
      else
        p_unexpected(&p);
    } else if (t.kind == TK_BRACEL) {
      ls_add(&ops, &p, p_operation(&p, d));
    } else {
      p_unexpected(&p);
    }
  }
  ob o = {.n = 0};
  ob_put(&o, &p, "Operations", ls_done(&ops, &p));
  ob_put(&o, &p, "Fragments", ls_done(&frags, &p));
  return p_finish(&p, ob_done(&o, &p, 0, 0), out, err);
}

CT_RESULT gq_parse_query(rg_arena *a, const char *src, size_t n, rv **out, ct_err *err) {
  return gq_parse_query_pm(a, src, n, NULL, out, err);
}

/* ---------------------------------------------------------------- schema documents */

static rv *p_input_value(gq_p *p, bool arg) {
  desc_t d = p_description(p);
  ob o = {.n = 0};
  if (d.n) {
    ob_comment(&o, p, "BeforeDescriptionComment", d.comment);
    ob_str(&o, p, "Description", d.text, d.n);
  } else {
    ob_cstr(&o, p, "Description", "");
  }
  gq_tok pos = p_peek(p);
  ob_comment(&o, p, "AfterDescriptionComment", p->comment);
  gq_tok nm = p_name(p);
  ob_tok(&o, p, "Name", &nm);
  rv *args = NULL;
  if (!arg) args = NULL;
  p_expect(p, TK_COLON, NULL);
  ob_put(&o, p, "Type", p_type(p));
  if (p_skip(p, TK_EQUALS)) ob_put(&o, p, "DefaultValue", p_value(p, true));
  ob_put(&o, p, "Directives", p_directives(p, true));
  (void)args;
  return ob_done(&o, p, pos.line, pos.col);
}

static rv *p_arg_defs(gq_p *p) {
  lst items = {0};
  if (!p_skip(p, TK_PARENL)) return NULL;
  bool called = false;
  while (p_peek(p).kind != TK_PARENR && !p->failed) {
    called = true;
    ls_add(&items, p, p_input_value(p, true));
  }
  if (!called) {
    gq_tok t = p_peek(p);
    p_error(p, &t, "expected at least one definition, found %s", tk_str[t.kind]);
    return NULL;
  }
  p_next(p);
  return ls_done(&items, p);
}

static rv *p_field_def(gq_p *p) {
  desc_t d = p_description(p);
  ob o = {.n = 0};
  if (d.n) {
    ob_comment(&o, p, "BeforeDescriptionComment", d.comment);
    ob_str(&o, p, "Description", d.text, d.n);
  } else {
    ob_cstr(&o, p, "Description", "");
  }
  gq_tok pos = p_peek(p);
  ob_comment(&o, p, "AfterDescriptionComment", p->comment);
  gq_tok nm = p_name(p);
  ob_tok(&o, p, "Name", &nm);
  ob_put(&o, p, "Arguments", p_arg_defs(p));
  p_expect(p, TK_COLON, NULL);
  ob_put(&o, p, "Type", p_type(p));
  ob_put(&o, p, "Directives", p_directives(p, true));
  return ob_done(&o, p, pos.line, pos.col);
}

static rv *p_enum_value_def(gq_p *p) {
  desc_t d = p_description(p);
  ob o = {.n = 0};
  if (d.n) {
    ob_comment(&o, p, "BeforeDescriptionComment", d.comment);
    ob_str(&o, p, "Description", d.text, d.n);
  } else {
    ob_cstr(&o, p, "Description", "");
  }
  gq_tok pos = p_peek(p);
  ob_comment(&o, p, "AfterDescriptionComment", p->comment);
  gq_tok nm = p_name(p);
  ob_tok(&o, p, "Name", &nm);
  ob_put(&o, p, "Directives", p_directives(p, true));
  return ob_done(&o, p, pos.line, pos.col);
}

/* `{ item+ }` (gqlparser's some()); returns the comment group before the closing brace */
static rv *p_some_braces(gq_p *p, lst *items, rv *(*item)(gq_p *), bool *present) {
  *present = false;
  if (!p_skip(p, TK_BRACEL)) return NULL;
  *present = true;
  bool called = false;
  while (p_peek(p).kind != TK_BRACER && !p->failed) {
    called = true;
    ls_add(items, p, item(p));
  }
  if (!called) {
    gq_tok t = p_peek(p);
    p_error(p, &t, "expected at least one definition, found %s", tk_str[t.kind]);
    return NULL;
  }
  rv *c = p->comment;
  p_next(p);
  return c;
}

static rv *p_input_field_def(gq_p *p) { return p_input_value(p, false); }

static rv *p_implements(gq_p *p) {
  lst items = {0};
  gq_tok t = p_peek(p);
  if (!tok_is(&t, "implements")) return NULL;
  p_next(p);
  p_skip(p, TK_AMP);
  do {
    gq_tok nm = p_name(p);
    rv *s = rv_str(p->a, nm.v, nm.vn);
    if (!s) p_oom(p);
    ls_add(&items, p, s);
  } while (p_skip(p, TK_AMP) && !p->failed);
  return ls_done(&items, p);
}

static rv *p_union_members(gq_p *p) {
  lst items = {0};
  if (!p_skip(p, TK_EQUALS)) return NULL;
  p_skip(p, TK_PIPE);
  do {
    gq_tok nm = p_name(p);
    rv *s = rv_str(p->a, nm.v, nm.vn);
    if (!s) p_oom(p);
    else if (p->pm && !p->failed) gq_pos_put(p->pm, s, nm.line, nm.col); /* TypePositions */
    ls_add(&items, p, s);
  } while (p_skip(p, TK_PIPE) && !p->failed);
  return ls_done(&items, p);
}

static rv *p_op_type_def(gq_p *p) {
  gq_tok pos = p_peek(p);
  ob o = {.n = 0};
  ob_comment(&o, p, "Comment", p->comment);
  ob_cstr(&o, p, "Operation", p_op_type(p));
  p_expect(p, TK_COLON, NULL);
  gq_tok nm = p_name(p);
  ob_tok(&o, p, "Type", &nm);
  return ob_done(&o, p, pos.line, pos.col);
}

static const char *const dir_locs[] = {"QUERY", "MUTATION", "SUBSCRIPTION", "FIELD", "FRAGMENT_DEFINITION",
                                       "FRAGMENT_SPREAD", "INLINE_FRAGMENT", "VARIABLE_DEFINITION", "SCHEMA",
                                       "SCALAR", "OBJECT", "FIELD_DEFINITION", "ARGUMENT_DEFINITION",
                                       "INTERFACE", "UNION", "ENUM", "ENUM_VALUE", "INPUT_OBJECT",
                                       "INPUT_FIELD_DEFINITION", "DIRECTIVE_DEFINITION", NULL};

static rv *p_dir_location(gq_p *p) {
  gq_tok t = p_expect(p, TK_NAME, NULL);
  if (p->failed) return NULL;
  for (int i = 0; dir_locs[i]; i++)
    if (tok_is(&t, dir_locs[i])) {
      rv *s = rv_cstr(p->a, dir_locs[i]);
      if (!s) p_oom(p);
      return s;
    }
  p_unexpected_tok(p, &t);
  return NULL;
}

/* A type definition (or extension when `ext`): scalar / type / interface / union / enum / input. */
static rv *p_type_def(gq_p *p, desc_t d, bool ext, rv *ext_comment) {
  ob o = {.n = 0};
  gq_tok kw = p_peek(p);
  rv *after = ext_comment;
  if (!ext) {
    if (kw.kind != TK_NAME) {
      p_unexpected(p);
      return NULL;
    }
    p_expect(p, TK_NAME, &after);
  } else {
    p_next(p);
  }
  gq_tok pos = p_peek(p);
  const char *kind = tok_is(&kw, "scalar") ? "SCALAR" : tok_is(&kw, "type") ? "OBJECT"
                     : tok_is(&kw, "interface") ? "INTERFACE" : tok_is(&kw, "union") ? "UNION"
                     : tok_is(&kw, "enum") ? "ENUM" : "INPUT_OBJECT";
  if (!ext) ob_comment(&o, p, "BeforeDescriptionComment", d.comment);
  ob_str(&o, p, "Description", d.text, d.n);
  ob_comment(&o, p, "AfterDescriptionComment", after);
  ob_cstr(&o, p, "Kind", kind);
  gq_tok nm = p_name(p);
  ob_tok(&o, p, "Name", &nm);
  ob_bool(&o, p, "BuiltIn", false);
  bool has_any = false;
  rv *ifs = NULL, *dirs = NULL, *end = NULL;
  lst items = {0};
  bool present = false;
  if (!strcmp(kind, "OBJECT") || !strcmp(kind, "INTERFACE")) {
    ifs = p_implements(p);
    dirs = p_directives(p, true);
    end = p_some_braces(p, &items, p_field_def, &present);
    ob_put(&o, p, "Interfaces", ifs);
    ob_put(&o, p, "Fields", ls_done(&items, p));
    has_any = ifs || dirs || items.n;
  } else if (!strcmp(kind, "SCALAR")) {
    dirs = p_directives(p, true);
    has_any = dirs != NULL;
  } else if (!strcmp(kind, "UNION")) {
    dirs = p_directives(p, true);
    rv *types = p_union_members(p);
    ob_put(&o, p, "Types", types);
    has_any = dirs || types;
  } else if (!strcmp(kind, "ENUM")) {
    dirs = p_directives(p, true);
    end = p_some_braces(p, &items, p_enum_value_def, &present);
    ob_put(&o, p, "EnumValues", ls_done(&items, p));
    has_any = dirs || items.n;
  } else {
    dirs = p_directives(p, !ext);
    end = p_some_braces(p, &items, p_input_field_def, &present);
    ob_put(&o, p, "Fields", ls_done(&items, p));
    has_any = dirs || items.n;
  }
  ob_put(&o, p, "Directives", dirs);
  ob_comment(&o, p, "EndOfDefinitionComment", end);
  if (ext && !has_any) p_unexpected(p);
  return ob_done(&o, p, pos.line, pos.col);
}

static rv *p_schema_def(gq_p *p, desc_t d, bool ext, rv *ext_comment) {
  rv *after = ext_comment;
  p_expect_kw(p, "schema", ext ? NULL : &after);
  gq_tok pos = p_peek(p);
  ob o = {.n = 0};
  if (!ext) ob_comment(&o, p, "BeforeDescriptionComment", d.comment);
  ob_str(&o, p, "Description", ext ? "" : d.text, ext ? 0 : d.n);
  ob_comment(&o, p, "AfterDescriptionComment", after);
  rv *dirs = p_directives(p, true);
  lst items = {0};
  bool present;
  rv *end = p_some_braces(p, &items, p_op_type_def, &present);
  ob_put(&o, p, "Directives", dirs);
  ob_put(&o, p, "OperationTypes", ls_done(&items, p));
  ob_comment(&o, p, "EndOfDefinitionComment", end);
  if (ext && !dirs && !items.n) p_unexpected(p);
  return ob_done(&o, p, pos.line, pos.col);
}

static rv *p_directive_def(gq_p *p, desc_t d, bool ext, rv *ext_comment) {
  rv *after = ext_comment;
  p_expect_kw(p, "directive", ext ? NULL : &after);
  p_expect(p, TK_AT, NULL);
  gq_tok pos = p_peek(p);
  ob o = {.n = 0};
  if (!ext) ob_comment(&o, p, "BeforeDescriptionComment", d.comment);
  ob_str(&o, p, "Description", ext ? "" : d.text, ext ? 0 : d.n);
  ob_comment(&o, p, "AfterDescriptionComment", after);
  gq_tok nm = p_name(p);
  ob_tok(&o, p, "Name", &nm);
  if (ext) {
    rv *dirs = p_directives(p, true);
    ob_put(&o, p, "Directives", dirs);
    ob_bool(&o, p, "IsRepeatable", false);
    if (!dirs) p_unexpected(p);
    return ob_done(&o, p, pos.line, pos.col);
  }
  ob_put(&o, p, "Arguments", p_arg_defs(p));
  ob_put(&o, p, "Directives", p_directives(p, true));
  gq_tok pk = p_peek(p);
  bool rep = false;
  if (pk.kind == TK_NAME && tok_is(&pk, "repeatable")) {
    rep = true;
    p_skip(p, TK_NAME);
  }
  ob_bool(&o, p, "IsRepeatable", rep);
  p_expect_kw(p, "on", NULL);
  lst locs = {0};
  p_skip(p, TK_PIPE);
  ls_add(&locs, p, p_dir_location(p));
  while (p_skip(p, TK_PIPE) && !p->failed) ls_add(&locs, p, p_dir_location(p));
  ob_put(&o, p, "Locations", ls_done(&locs, p));
  return ob_done(&o, p, pos.line, pos.col);
}

CT_RESULT gq_parse_schema_pm(rg_arena *a, const char *src, size_t n, gq_posmap *pm, rv **out, ct_err *err) {
  if (n > GQ_MAX_DOC_BYTES)
    return ct_fail(err, CT_ELIMIT, "GraphQL parse error: input: document larger than %u bytes", GQ_MAX_DOC_BYTES);
  gq_p p;
  p_init(&p, a, src, n, pm);
  lst schema = {0}, schema_ext = {0}, dirs = {0}, dir_ext = {0}, defs = {0}, exts = {0};
  while (p_peek(&p).kind != TK_EOF) {
    if (p.failed) break;
    desc_t d = {"", 0, NULL, false, {0}};
    gq_tok t = p_peek(&p);
    if (t.kind == TK_BLOCK || t.kind == TK_STRING) d = p_description(&p);
    t = p_peek(&p);
    if (t.kind != TK_NAME) {
      p_unexpected(&p);
      break;
    }
    if (tok_is(&t, "scalar") || tok_is(&t, "type") || tok_is(&t, "interface") || tok_is(&t, "union") ||
        tok_is(&t, "enum") || tok_is(&t, "input")) {
      ls_add(&defs, &p, p_type_def(&p, d, false, NULL));
    } else if (tok_is(&t, "schema")) {
      ls_add(&schema, &p, p_schema_def(&p, d, false, NULL));
    } else if (tok_is(&t, "directive")) {
      ls_add(&dirs, &p, p_directive_def(&p, d, false, NULL));
    } else if (tok_is(&t, "extend")) {
      if (d.n) {
        gq_tok pv = p.prev;
        p_unexpected_tok(&p, &pv);
      }
      rv *c;
      p_expect_kw(&p, "extend", &c);
      gq_tok k = p_peek(&p);
      desc_t none = {"", 0, NULL, false, {0}};
      if (tok_is(&k, "schema")) ls_add(&schema_ext, &p, p_schema_def(&p, none, true, c));
      else if (tok_is(&k, "scalar") || tok_is(&k, "type") || tok_is(&k, "interface") || tok_is(&k, "union") ||
               tok_is(&k, "enum") || tok_is(&k, "input"))
        ls_add(&exts, &p, p_type_def(&p, none, true, c));
      else if (tok_is(&k, "directive"))
        ls_add(&dir_ext, &p, p_directive_def(&p, none, true, c));
      else
        p_unexpected(&p);
    } else {
      p_unexpected(&p);
      break;
    }
  }
  ob o = {.n = 0};
  ob_put(&o, &p, "Schema", ls_done(&schema, &p));
  ob_put(&o, &p, "SchemaExtension", ls_done(&schema_ext, &p));
  ob_put(&o, &p, "Directives", ls_done(&dirs, &p));
  ob_put(&o, &p, "DirectiveExtensions", ls_done(&dir_ext, &p));
  ob_put(&o, &p, "Definitions", ls_done(&defs, &p));
  ob_put(&o, &p, "Extensions", ls_done(&exts, &p));
  ob_comment(&o, &p, "Comment", p.comment);
  return p_finish(&p, ob_done(&o, &p, 0, 0), out, err);
}

CT_RESULT gq_parse_schema(rg_arena *a, const char *src, size_t n, rv **out, ct_err *err) {
  return gq_parse_schema_pm(a, src, n, NULL, out, err);
}

/* ---------------------------------------------------------------- position map */

static size_t pm_hash(const rv *k) { return (size_t)(((uintptr_t)k >> 4) * 0x9E3779B97F4A7C15ull); }

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
        size_t h = pm_hash(m->e[i].k) & (nc - 1);
        while (ne[h].k) h = (h + 1) & (nc - 1);
        ne[h] = m->e[i];
      }
    m->e = ne, m->cap = nc;
  }
  size_t h = pm_hash(k) & (m->cap - 1);
  while (m->e[h].k && m->e[h].k != k) h = (h + 1) & (m->cap - 1);
  if (!m->e[h].k) m->n++;
  m->e[h].k = k, m->e[h].line = line, m->e[h].col = col;
}

bool gq_pos_get(const gq_posmap *m, const rv *k, long *line, long *col) {
  if (!m || !m->cap || !k) return false;
  size_t h = pm_hash(k) & (m->cap - 1);
  while (m->e[h].k) {
    if (m->e[h].k == k) {
      *line = m->e[h].line, *col = m->e[h].col;
      return true;
    }
    h = (h + 1) & (m->cap - 1);
  }
  return false;
}
