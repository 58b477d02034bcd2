/*
 * parse.c - Rego lexer and recursive-descent parser producing the AST in rego_int.h.
 * Accepts Rego v1 syntax plus the v0 forms real policies use (bodies without `if`,
 * `default p = v`, `p[x] { }` partial sets, `import future.keywords...`).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rego_int.h"

enum {
  K_EOF, K_IDENT, K_NUM, K_STR,
  K_LBRACE, K_RBRACE, K_LBRACK, K_RBRACK, K_LPAREN, K_RPAREN,
  K_DOT, K_COMMA, K_SEMI, K_COLON, K_BAR, K_AMP,
  K_UNIFY, K_ASSIGN, K_EQ, K_NE, K_LT, K_GT, K_LE, K_GE,
  K_PLUS, K_MINUS, K_STAR, K_SLASH, K_PCT,
  K_TMPL, /* $"..." or $`...`: s/n = the raw text between the quotes; raw flag in `n` high bit */
};

typedef struct {
  int k;
  bool nl; /* a newline precedes this token */
  bool raw; /* K_TMPL written with backquotes */
  int row, col;
  const char *s; /* ident/num text, or decoded string */
  size_t n;
} rg_tok;

#define RG_MAX_PARSE_DEPTH 200
/* Operator chains (`1-1-1-...`) and nested calls build one AST level per operator without any
 * bracket, so RG_MAX_PARSE_DEPTH does not see them; the compiler's passes recurse once per AST
 * level. Every module and query is checked against this bound once it is parsed, so no later
 * recursive pass can run out of stack on an admin-supplied policy. */
#define RG_MAX_AST_DEPTH 1000

typedef struct {
  rg_arena *a;
  const char *file;
  const char *src;
  size_t len, pos;
  int row, col;
  rg_tok t;       /* current */
  rg_tok peek;    /* lookahead when has_peek */
  bool has_peek;
  ct_err *err;
  int depth;
  int nwild;
  bool v1;
  bool logic; /* `and` / `or` keywords imported (future.keywords.and/or) */
} rg_ps;

static CT_RESULT rego__ps_fail(rg_ps *p, int row, int col, const char *fmt, ...) CT_PRINTF(4, 5);
static CT_RESULT rego__ps_fail(rg_ps *p, int row, int col, const char *fmt, ...) {
  char msg[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return ct_fail(p->err, CT_EINVAL, "rego_parse_error: %s:%d:%d: %s", p->file, row, col, msg);
}

#define OOM(p) ct_fail((p)->err, CT_ENOMEM, "rego: out of memory while parsing")

/* ---------------------------------------------------------------- lexer */
static int rego__lx_hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static size_t rego__lx_utf8(char *o, uint32_t cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

static CT_RESULT rego__lx_next(rg_ps *p, rg_tok *t) {
  bool nl = false;
  for (;;) {
    if (p->pos >= p->len) break;
    char c = p->src[p->pos];
    if (c == '\n') {
      nl = true;
      p->row++;
      p->col = 1;
      p->pos++;
    } else if (c == ' ' || c == '\t' || c == '\r') {
      p->pos++;
      p->col++;
    } else if (c == '#') {
      while (p->pos < p->len && p->src[p->pos] != '\n') p->pos++;
    } else break;
  }
  memset(t, 0, sizeof(*t));
  t->nl = nl;
  t->row = p->row;
  t->col = p->col;
  if (p->pos >= p->len) {
    t->k = K_EOF;
    return CT_OK;
  }
  const char *s = p->src + p->pos;
  char c = *s;
  size_t n = 1;
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
    while (p->pos + n < p->len) {
      char d = s[n];
      if ((d >= 'a' && d <= 'z') || (d >= 'A' && d <= 'Z') || d == '_' || (d >= '0' && d <= '9')) n++;
      else break;
    }
    t->k = K_IDENT;
    t->s = s;
    t->n = n;
  } else if (c >= '0' && c <= '9') {
    while (p->pos + n < p->len && s[n] >= '0' && s[n] <= '9') n++;
    if (p->pos + n + 1 < p->len && s[n] == '.' && s[n + 1] >= '0' && s[n + 1] <= '9') {
      n++;
      while (p->pos + n < p->len && s[n] >= '0' && s[n] <= '9') n++;
    }
    if (p->pos + n < p->len && (s[n] == 'e' || s[n] == 'E')) {
      size_t m = n + 1;
      if (p->pos + m < p->len && (s[m] == '+' || s[m] == '-')) m++;
      if (p->pos + m < p->len && s[m] >= '0' && s[m] <= '9') {
        n = m;
        while (p->pos + n < p->len && s[n] >= '0' && s[n] <= '9') n++;
      }
    }
    t->k = K_NUM;
    t->s = s;
    t->n = n;
  } else if (c == '$' && p->pos + 1 < p->len && (s[1] == '"' || s[1] == '`')) {
    /* template string: find the closing quote outside {...} expressions */
    char q = s[1];
    size_t i = 2;
    int depth = 0;
    bool closed = false;
    while (p->pos + i < p->len) {
      char d = s[i];
      if (d == '\\' && q == '"' && depth == 0) {
        i += 2;
        continue;
      }
      if (d == '\\' && q == '`' && depth == 0 && p->pos + i + 1 < p->len && s[i + 1] == '{') {
        i += 2;
        continue;
      }
      if (depth > 0 && (d == '"' || d == '`')) {
        /* a string inside an expression */
        size_t j = i + 1;
        while (p->pos + j < p->len && s[j] != d) j += (d == '"' && s[j] == '\\') ? 2 : 1;
        i = j + 1;
        continue;
      }
      if (d == '{') depth++;
      else if (d == '}' && depth > 0) depth--;
      else if (d == q && depth == 0) {
        closed = true;
        break;
      } else if (d == '\n') {
        if (q == '"' && depth == 0) break;
        p->row++;
        p->col = 1 - (int)(i + 1);
      }
      i++;
    }
    if (!closed) return rego__ps_fail(p, t->row, t->col, "non-terminated template string");
    t->k = K_TMPL;
    t->raw = q == '`';
    t->s = s + 2;
    t->n = i - 2;
    n = i + 1;
  } else if (c == '"') {
    char *buf = rg_alloc(p->a, p->len - p->pos + 1);
    if (!buf) return OOM(p);
    size_t w = 0;
    for (;;) {
      if (p->pos + n >= p->len || s[n] == '\n') return rego__ps_fail(p, t->row, t->col, "non-terminated string");
      char d = s[n];
      if (d == '"') {
        n++;
        break;
      }
      if (d != '\\') {
        buf[w++] = d;
        n++;
        continue;
      }
      if (p->pos + n + 1 >= p->len) return rego__ps_fail(p, t->row, t->col, "non-terminated string");
      d = s[n + 1];
      n += 2;
      switch (d) {
        case '"': buf[w++] = '"'; break;
        case '\\': buf[w++] = '\\'; break;
        case '/': buf[w++] = '/'; break;
        case 'b': buf[w++] = '\b'; break;
        case 'f': buf[w++] = '\f'; break;
        case 'n': buf[w++] = '\n'; break;
        case 'r': buf[w++] = '\r'; break;
        case 't': buf[w++] = '\t'; break;
        case 'u': {
          uint32_t cp = 0;
          for (int k = 0; k < 4; k++) {
            int h = p->pos + n < p->len ? rego__lx_hex(s[n]) : -1;
            if (h < 0) return rego__ps_fail(p, t->row, t->col, "invalid \\u escape in string");
            cp = cp * 16 + (uint32_t)h;
            n++;
          }
          if (cp >= 0xD800 && cp < 0xDC00 && p->pos + n + 6 <= p->len && s[n] == '\\' && s[n + 1] == 'u') {
            uint32_t lo = 0;
            bool ok = true;
            for (size_t k = 2; k < 6; k++) {
              int h = rego__lx_hex(s[n + k]);
              if (h < 0) ok = false;
              else lo = lo * 16 + (uint32_t)h;
            }
            if (ok && lo >= 0xDC00 && lo < 0xE000) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
              n += 6;
            }
          }
          w += rego__lx_utf8(buf + w, cp);
          break;
        }
        default: return rego__ps_fail(p, t->row, t->col, "invalid escape sequence in string");
      }
    }
    buf[w] = 0;
    t->k = K_STR;
    t->s = buf;
    t->n = w;
  } else if (c == '`') {
    while (p->pos + n < p->len && s[n] != '`') n++;
    if (p->pos + n >= p->len) return rego__ps_fail(p, t->row, t->col, "non-terminated raw string");
    t->k = K_STR;
    t->s = rg_strndup(p->a, s + 1, n - 1);
    if (!t->s) return OOM(p);
    t->n = n - 1;
    for (size_t i = 1; i < n; i++)
      if (s[i] == '\n') {
        p->row++;
        p->col = 1 - (int)(i + 1);
      }
    n++;
  } else {
    char d = p->pos + 1 < p->len ? s[1] : 0;
    switch (c) {
      case '{': t->k = K_LBRACE; break;
      case '}': t->k = K_RBRACE; break;
      case '[': t->k = K_LBRACK; break;
      case ']': t->k = K_RBRACK; break;
      case '(': t->k = K_LPAREN; break;
      case ')': t->k = K_RPAREN; break;
      case '.': t->k = K_DOT; break;
      case ',': t->k = K_COMMA; break;
      case ';': t->k = K_SEMI; break;
      case '|': t->k = K_BAR; break;
      case '&': t->k = K_AMP; break;
      case '+': t->k = K_PLUS; break;
      case '-': t->k = K_MINUS; break;
      case '*': t->k = K_STAR; break;
      case '/': t->k = K_SLASH; break;
      case '%': t->k = K_PCT; break;
      case ':':
        if (d == '=') { t->k = K_ASSIGN; n = 2; } else t->k = K_COLON;
        break;
      case '=':
        if (d == '=') { t->k = K_EQ; n = 2; } else t->k = K_UNIFY;
        break;
      case '!':
        if (d == '=') { t->k = K_NE; n = 2; } else return rego__ps_fail(p, t->row, t->col, "illegal token '!'");
        break;
      case '<':
        if (d == '=') { t->k = K_LE; n = 2; } else t->k = K_LT;
        break;
      case '>':
        if (d == '=') { t->k = K_GE; n = 2; } else t->k = K_GT;
        break;
      default: return rego__ps_fail(p, t->row, t->col, "illegal token '%c'", c);
    }
  }
  p->pos += n;
  p->col += (int)n;
  return CT_OK;
}

static CT_RESULT rego__ps_adv(rg_ps *p) {
  if (p->has_peek) {
    p->t = p->peek;
    p->has_peek = false;
    return CT_OK;
  }
  return rego__lx_next(p, &p->t);
}

static CT_RESULT rego__ps_peek(rg_ps *p, rg_tok **out) {
  if (!p->has_peek) {
    CT_GUARD(rego__lx_next(p, &p->peek));
    p->has_peek = true;
  }
  *out = &p->peek;
  return CT_OK;
}

static bool rego__is_kw_raw(const rg_tok *t, const char *kw) {
  return t->k == K_IDENT && t->n == strlen(kw) && !memcmp(t->s, kw, t->n);
}

/* A keyword directly followed by '.' is the first segment of a reference (if.foo, data.x.as). */
static bool rego__kw_dotted(rg_ps *p) {
  if (p->t.k != K_IDENT) return false;
  rg_tok *pk;
  if (rego__ps_peek(p, &pk) != CT_OK) return false;
  return pk->k == K_DOT && pk->row == p->t.row && pk->col == p->t.col + (int)p->t.n;
}

static bool rego__is_kw(const rg_tok *t, const char *kw) { return rego__is_kw_raw(t, kw); }

static bool rego__is_reserved(const rg_tok *t) {
  static const char *const kws[] = {"if", "contains", "in", "every", "some", "not", "with", "as",
                                    "default", "else", "import", "package", NULL};
  for (int i = 0; kws[i]; i++)
    if (rego__is_kw(t, kws[i])) return true;
  return false;
}

static const char *rego__tok_desc(const rg_tok *t) {
  static _Thread_local char b[64];
  switch (t->k) {
    case K_EOF: return "EOF";
    case K_IDENT: snprintf(b, sizeof(b), "ident %.*s", (int)(t->n > 40 ? 40 : t->n), t->s); return b;
    case K_NUM: return "number";
    case K_STR: return "string";
    default: return "token";
  }
}

static CT_RESULT rego__ps_expect(rg_ps *p, int k, const char *what) {
  if (p->t.k != k) return rego__ps_fail(p, p->t.row, p->t.col, "unexpected %s, expected %s", rego__tok_desc(&p->t), what);
  return rego__ps_adv(p);
}

/* ---------------------------------------------------------------- term constructors */
static rg_term *rego__mk_term(rg_ps *p, int kind, int row, int col) {
  rg_term *t = rg_alloc(p->a, sizeof(rg_term));
  if (!t) return NULL;
  t->kind = (uint8_t)kind;
  t->row = row;
  t->col = col;
  t->slot = -1;
  t->host = -1;
  return t;
}

static rg_term *rego__mk_scalar(rg_ps *p, rv *v, int row, int col) {
  rg_term *t = rego__mk_term(p, T_SCALAR, row, col);
  if (!t || !v) return NULL;
  t->val = v;
  t->ground = true;
  return t;
}

static rg_term *rego__mk_call(rg_ps *p, const char *name, rg_term *x, rg_term *y, int row, int col) {
  rg_term *t = rego__mk_term(p, T_CALL, row, col);
  if (!t) return NULL;
  t->name = name;
  t->n = y ? 2 : 1;
  t->elems = rg_alloc(p->a, 2 * sizeof(rg_term *));
  if (!t->elems) return NULL;
  t->elems[0] = x;
  t->elems[1] = y;
  return t;
}

/* Growable pointer vector backed by malloc; moved into the arena when done. */
typedef struct {
  void **v;
  size_t n, cap;
} pvec;
static bool rego__pv_push(pvec *v, void *x) {
  if (v->n == v->cap) {
    size_t nc = v->cap ? v->cap * 2 : 8;
    void **nv = realloc(v->v, nc * sizeof(void *));
    if (!nv) return false;
    v->v = nv;
    v->cap = nc;
  }
  v->v[v->n++] = x;
  return true;
}
static void **rego__pv_done(rg_ps *p, pvec *v) {
  void **out = rg_alloc(p->a, (v->n + 1) * sizeof(void *));
  if (out && v->n) memcpy(out, v->v, v->n * sizeof(void *));
  free(v->v);
  v->v = NULL;
  return out;
}

/* ---------------------------------------------------------------- terms */
static CT_RESULT rego__ps_term(rg_ps *p, bool nopipe, rg_term **out); /* `in` level */
static CT_RESULT rego__ps_body_until(rg_ps *p, int close, rg_body **out);
static CT_RESULT rego__ps_expr(rg_ps *p, rg_expr **out);
static CT_RESULT rego__ps_expr_plain(rg_ps *p, rg_expr **out);
typedef struct ps_mark ps_mark;
struct ps_mark {
  size_t pos;
  int row, col, depth;
  rg_tok t, peek;
  bool has_peek;
  ct_err err;
};
static void rego__ps_save(rg_ps *p, ps_mark *m);
static void rego__ps_restore(rg_ps *p, const ps_mark *m);
static CT_RESULT rego__ps_logic_atom(rg_ps *p, rg_body **out);
static CT_RESULT rego__ps_rel(rg_ps *p, bool nopipe, rg_term **out);
static CT_RESULT rego__ps_kv_in(rg_ps *p, rg_term *k, rg_term **out);
static CT_RESULT rego__ps_template(rg_ps *p, const rg_tok *t, rg_term **out);

static CT_RESULT rego__ps_var_or_ref(rg_ps *p, rg_term *head, rg_term **out) {
  /* Ref continuation: .ident, [term], (args) */
  rg_term *t = head;
  pvec path = {0};
  ct_status st = CT_OK;
  for (;;) {
    if (p->t.k == K_DOT && !p->t.nl) {
      CT_GUARD_GOTO(st, rego__ps_adv(p), fail);
      if (p->t.k != K_IDENT) {
        st = rego__ps_fail(p, p->t.row, p->t.col, "unexpected %s, expected ident after '.'", rego__tok_desc(&p->t));
        goto fail;
      }
      rg_term *k = rego__mk_scalar(p, rv_str(p->a, p->t.s, p->t.n), p->t.row, p->t.col);
      if (!k || !rego__pv_push(&path, k)) { st = OOM(p); goto fail; }
      CT_GUARD_GOTO(st, rego__ps_adv(p), fail);
    } else if (p->t.k == K_LBRACK && !p->t.nl) {
      CT_GUARD_GOTO(st, rego__ps_adv(p), fail);
      rg_term *k;
      CT_GUARD_GOTO(st, rego__ps_term(p, false, &k), fail);
      if (!rego__pv_push(&path, k)) { st = OOM(p); goto fail; }
      CT_GUARD_GOTO(st, rego__ps_expect(p, K_RBRACK, "']'"), fail);
    } else if (p->t.k == K_LPAREN && !p->t.nl &&
               (t->kind == T_VAR || (t->kind == T_REF && path.n == 0) || path.n > 0)) {
      /* A call: the callee must be a var or a ref of static names. */
      ct_buf nb;
      ct_buf_init(&nb, 4096);
      rg_term *base = t;
      if (base->kind == T_REF && path.n == 0) {
        /* already-built ref (should not happen) */
      }
      bool ok = base->kind == T_VAR;
      if (ok) st = ct_buf_append_str(&nb, base->name, p->err);
      for (size_t i = 0; ok && !st && i < path.n; i++) {
        rg_term *e = path.v[i];
        if (e->kind != T_SCALAR || e->val->t != RV_STR) ok = false;
        else st = ct_buf_printf(&nb, p->err, ".%s", e->val->u.s);
      }
      if (st) { ct_buf_free(&nb); goto fail; }
      if (!ok) {
        ct_buf_free(&nb);
        st = rego__ps_fail(p, p->t.row, p->t.col, "illegal call: callee must be a name");
        goto fail;
      }
      rg_term *c = rego__mk_term(p, T_CALL, base->row, base->col);
      if (!c) { ct_buf_free(&nb); st = OOM(p); goto fail; }
      c->name = rg_strndup(p->a, (const char *)nb.data, nb.len);
      ct_buf_free(&nb);
      /* keep the callee as a ref for resolution */
      rg_term *fr = rego__mk_term(p, T_REF, base->row, base->col);
      if (!fr || !c->name) { st = OOM(p); goto fail; }
      fr->n = path.n + 1;
      fr->elems = rg_alloc(p->a, fr->n * sizeof(rg_term *));
      if (!fr->elems) { st = OOM(p); goto fail; }
      fr->elems[0] = base;
      for (size_t i = 0; i < path.n; i++) fr->elems[i + 1] = path.v[i];
      path.n = 0;
      c->fnref = fr;
      CT_GUARD_GOTO(st, rego__ps_adv(p), fail);
      pvec args = {0};
      while (p->t.k != K_RPAREN) {
        rg_term *a;
        st = rego__ps_term(p, false, &a);
        if (!st && !rego__pv_push(&args, a)) st = OOM(p);
        if (st) { free(args.v); goto fail; }
        if (p->t.k == K_COMMA) {
          st = rego__ps_adv(p);
          if (st) { free(args.v); goto fail; }
        } else if (p->t.k != K_RPAREN) {
          free(args.v);
          st = rego__ps_fail(p, p->t.row, p->t.col, "unexpected %s, expected ',' or ')'", rego__tok_desc(&p->t));
          goto fail;
        }
      }
      c->n = args.n;
      c->elems = (rg_term **)rego__pv_done(p, &args);
      if (!c->elems) { st = OOM(p); goto fail; }
      CT_GUARD_GOTO(st, rego__ps_adv(p), fail);
      t = c;
    } else break;
    if (path.n && (p->t.k != K_DOT && p->t.k != K_LBRACK && p->t.k != K_LPAREN)) break;
    if (path.n && (p->t.nl)) break;
    if (!path.n) continue;
    if (p->t.k == K_LPAREN) continue;
    continue;
  }
  if (path.n) {
    rg_term *r = rego__mk_term(p, T_REF, t->row, t->col);
    if (!r) { st = OOM(p); goto fail; }
    r->n = path.n + 1;
    r->elems = rg_alloc(p->a, r->n * sizeof(rg_term *));
    if (!r->elems) { st = OOM(p); goto fail; }
    r->elems[0] = t;
    for (size_t i = 0; i < path.n; i++) r->elems[i + 1] = path.v[i];
    t = r;
  }
  free(path.v);
  *out = t;
  return CT_OK;
fail:
  free(path.v);
  return st;
}

/* Splits a template string into literal parts and {expression}s, each parsed on its own. */
static CT_RESULT rego__ps_template(rg_ps *p, const rg_tok *t, rg_term **out) {
  const char *s = t->s;
  size_t n = t->n;
  char *lit = rg_alloc(p->a, n + 1);
  if (!lit) return OOM(p);
  size_t w = 0;
  pvec lits = {0}, exprs = {0};
  ct_status st = CT_OK;
  for (size_t i = 0; i < n && !st;) {
    char c = s[i];
    if (c == '\\' && i + 1 < n && s[i + 1] == '{') {
      lit[w++] = '{';
      i += 2;
      continue;
    }
    if (c == '\\' && !t->raw && i + 1 < n) {
      char d = s[i + 1];
      i += 2;
      switch (d) {
        case 'n': lit[w++] = '\n'; break;
        case 't': lit[w++] = '\t'; break;
        case 'r': lit[w++] = '\r'; break;
        case 'b': lit[w++] = '\b'; break;
        case 'f': lit[w++] = '\f'; break;
        case '/': lit[w++] = '/'; break;
        case '"': lit[w++] = '"'; break;
        case '\\': lit[w++] = '\\'; break;
        case 'u': {
          uint32_t cp = 0;
          for (int k = 0; k < 4 && i < n; k++, i++) cp = cp * 16 + (uint32_t)(rego__lx_hex(s[i]) < 0 ? 0 : rego__lx_hex(s[i]));
          w += rego__lx_utf8(lit + w, cp);
          break;
        }
        default: st = rego__ps_fail(p, t->row, t->col, "invalid escape sequence in template string");
      }
      continue;
    }
    if (c != '{') {
      lit[w++] = c;
      i++;
      continue;
    }
    /* an expression: up to the matching brace */
    size_t j = i + 1;
    int depth = 1;
    while (j < n && depth) {
      char d = s[j];
      if (d == '"' || d == '`') {
        size_t k = j + 1;
        while (k < n && s[k] != d) k += (d == '"' && s[k] == '\\') ? 2 : 1;
        j = k + 1;
        continue;
      }
      if (d == '{') depth++;
      else if (d == '}') depth--;
      if (depth) j++;
    }
    if (depth) {
      st = rego__ps_fail(p, t->row, t->col, "unterminated expression in template string");
      break;
    }
    rv *lv = rv_str(p->a, lit, w);
    if (!lv || !rego__pv_push(&lits, lv)) {
      st = OOM(p);
      break;
    }
    w = 0;
    char *src = rg_strndup(p->a, s + i + 1, j - i - 1);
    if (!src) {
      st = OOM(p);
      break;
    }
    rg_ps sub = {.a = p->a, .file = p->file, .src = src, .len = j - i - 1, .row = t->row, .col = t->col,
                 .err = p->err, .depth = p->depth + 1, .nwild = p->nwild + 1000, .logic = p->logic};
    rg_term *e = NULL;
    st = rego__ps_adv(&sub);
    if (!st) st = rego__ps_term(&sub, false, &e);
    if (!st && sub.t.k != K_EOF) st = rego__ps_fail(p, t->row, t->col, "unexpected text in template expression");
    p->nwild = sub.nwild;
    if (!st && !rego__pv_push(&exprs, e)) st = OOM(p);
    i = j + 1;
  }
  rv *lv = st ? NULL : rv_str(p->a, lit, w);
  if (!st && (!lv || !rego__pv_push(&lits, lv))) st = OOM(p);
  if (st) {
    free(lits.v);
    free(exprs.v);
    return st;
  }
  rg_term *r = rego__mk_term(p, T_TMPL, t->row, t->col);
  if (!r) {
    free(lits.v);
    free(exprs.v);
    return OOM(p);
  }
  size_t nl = lits.n;
  rv **lv2 = (rv **)rego__pv_done(p, &lits);
  r->val = lv2 ? rv_arr(p->a, lv2, nl) : NULL;
  r->n = exprs.n;
  r->elems = (rg_term **)rego__pv_done(p, &exprs);
  if (!r->val || !r->elems) return OOM(p);
  *out = r;
  return CT_OK;
}

static CT_RESULT rego__ps_comp_body(rg_ps *p, int close, rg_body **out) {
  return rego__ps_body_until(p, close, out);
}

static CT_RESULT rego__ps_primary(rg_ps *p, rg_term **out) {
  rg_tok t = p->t;
  rg_term *r = NULL;
  if (++p->depth > RG_MAX_PARSE_DEPTH) return rego__ps_fail(p, t.row, t.col, "nesting too deep");
  ct_status st = CT_OK;
  switch (t.k) {
    case K_NUM:
      r = rego__mk_scalar(p, rv_num_text(p->a, t.s, t.n), t.row, t.col);
      if (!r) return OOM(p);
      CT_GUARD(rego__ps_adv(p));
      break;
    case K_STR:
      r = rego__mk_scalar(p, rv_str(p->a, t.s, t.n), t.row, t.col);
      if (!r) return OOM(p);
      CT_GUARD(rego__ps_adv(p));
      break;
    case K_TMPL:
      CT_GUARD(rego__ps_template(p, &t, &r));
      CT_GUARD(rego__ps_adv(p));
      break;
    case K_MINUS: {
      CT_GUARD(rego__ps_adv(p));
      if (p->t.k == K_NUM && p->t.row == t.row && p->t.col == t.col + 1) {
        char *txt = rg_alloc(p->a, p->t.n + 2);
        if (!txt) return OOM(p);
        txt[0] = '-';
        memcpy(txt + 1, p->t.s, p->t.n);
        r = rego__mk_scalar(p, rv_num_text(p->a, txt, p->t.n + 1), t.row, t.col);
        if (!r) return OOM(p);
        CT_GUARD(rego__ps_adv(p));
      } else {
        rg_term *x;
        CT_GUARD(rego__ps_primary(p, &x));
        rg_term *zero = rego__mk_scalar(p, rv_int(p->a, 0), t.row, t.col);
        r = rego__mk_call(p, "minus", zero, x, t.row, t.col);
        if (!r || !zero) return OOM(p);
      }
      break;
    }
    case K_IDENT: {
      if ((rego__is_kw(&t, "true") || rego__is_kw(&t, "false") || rego__is_kw(&t, "null")) && !rego__kw_dotted(p)) {
        r = rego__mk_scalar(p, t.s[0] == 'n' ? &rv_null_v : rv_bool(t.s[0] == 't'), t.row, t.col);
        if (!r) return OOM(p);
        CT_GUARD(rego__ps_adv(p));
        break;
      }
      if (rego__is_kw(&t, "set")) {
        rg_tok *pk;
        CT_GUARD(rego__ps_peek(p, &pk));
        if (pk->k == K_LPAREN && !pk->nl) {
          CT_GUARD(rego__ps_adv(p));
          CT_GUARD(rego__ps_adv(p));
          CT_GUARD(rego__ps_expect(p, K_RPAREN, "')' (set() takes no arguments)"));
          r = rego__mk_term(p, T_SET, t.row, t.col);
          if (!r) return OOM(p);
          break;
        }
      }
      if (rego__is_reserved(&t)) {
        rg_tok *pk;
        CT_GUARD(rego__ps_peek(p, &pk));
        if (!(rego__is_kw(&t, "contains") && pk->k == K_LPAREN && !pk->nl) && !rego__kw_dotted(p))
          return rego__ps_fail(p, t.row, t.col, "unexpected %s keyword", rego__tok_desc(&t));
      }
      r = rego__mk_term(p, T_VAR, t.row, t.col);
      if (!r) return OOM(p);
      r->name = rg_strndup(p->a, t.s, t.n);
      if (!r->name) return OOM(p);
      if (!strcmp(r->name, "_")) {
        r->wildcard = true;
        char wn[32];
        snprintf(wn, sizeof(wn), "$_%d", p->nwild++);
        r->name = rg_strndup(p->a, wn, strlen(wn));
        if (!r->name) return OOM(p);
      }
      CT_GUARD(rego__ps_adv(p));
      break;
    }
    case K_LPAREN: {
      CT_GUARD(rego__ps_adv(p));
      CT_GUARD(rego__ps_term(p, false, &r));
      if (p->t.k == K_COMMA) {
        /* (k, v in coll) */
        CT_GUARD(rego__ps_adv(p));
        CT_GUARD(rego__ps_kv_in(p, r, &r));
      }
      CT_GUARD(rego__ps_expect(p, K_RPAREN, "')'"));
      break;
    }
    case K_LBRACK: {
      CT_GUARD(rego__ps_adv(p));
      pvec items = {0};
      if (p->t.k != K_RBRACK) {
        rg_term *first;
        CT_GUARD(rego__ps_term(p, true, &first));
        if (p->t.k == K_BAR) {
          CT_GUARD(rego__ps_adv(p));
          r = rego__mk_term(p, T_ACOMP, t.row, t.col);
          if (!r) return OOM(p);
          r->elems = rg_alloc(p->a, sizeof(rg_term *));
          if (!r->elems) return OOM(p);
          r->elems[0] = first;
          r->n = 1;
          CT_GUARD(rego__ps_comp_body(p, K_RBRACK, &r->body));
          CT_GUARD(rego__ps_expect(p, K_RBRACK, "']'"));
          break;
        }
        if (!rego__pv_push(&items, first)) return OOM(p);
        while (p->t.k == K_COMMA) {
          st = rego__ps_adv(p);
          if (!st && p->t.k == K_RBRACK) break;
          rg_term *x = NULL;
          if (!st) st = rego__ps_term(p, false, &x);
          if (!st && !rego__pv_push(&items, x)) st = OOM(p);
          if (st) { free(items.v); return st; }
        }
      }
      st = rego__ps_expect(p, K_RBRACK, "']' or ','");
      if (st) { free(items.v); return st; }
      r = rego__mk_term(p, T_ARR, t.row, t.col);
      if (!r) { free(items.v); return OOM(p); }
      r->n = items.n;
      r->elems = (rg_term **)rego__pv_done(p, &items);
      if (!r->elems) return OOM(p);
      break;
    }
    case K_LBRACE: {
      CT_GUARD(rego__ps_adv(p));
      if (p->t.k == K_RBRACE) {
        CT_GUARD(rego__ps_adv(p));
        r = rego__mk_term(p, T_OBJ, t.row, t.col);
        if (!r) return OOM(p);
        break;
      }
      rg_term *first;
      CT_GUARD(rego__ps_term(p, true, &first));
      if (p->t.k == K_COLON) {
        CT_GUARD(rego__ps_adv(p));
        rg_term *v1;
        CT_GUARD(rego__ps_term(p, true, &v1));
        if (p->t.k == K_BAR) {
          CT_GUARD(rego__ps_adv(p));
          r = rego__mk_term(p, T_OCOMP, t.row, t.col);
          if (!r) return OOM(p);
          r->elems = rg_alloc(p->a, 2 * sizeof(rg_term *));
          if (!r->elems) return OOM(p);
          r->elems[0] = first;
          r->elems[1] = v1;
          r->n = 2;
          CT_GUARD(rego__ps_comp_body(p, K_RBRACE, &r->body));
          CT_GUARD(rego__ps_expect(p, K_RBRACE, "'}'"));
          break;
        }
        pvec items = {0};
        if (!rego__pv_push(&items, first) || !rego__pv_push(&items, v1)) { free(items.v); return OOM(p); }
        while (p->t.k == K_COMMA) {
          st = rego__ps_adv(p);
          if (!st && p->t.k == K_RBRACE) break;
          rg_term *k = NULL, *v = NULL;
          if (!st) st = rego__ps_term(p, false, &k);
          if (!st) st = rego__ps_expect(p, K_COLON, "':'");
          if (!st) st = rego__ps_term(p, false, &v);
          if (!st && (!rego__pv_push(&items, k) || !rego__pv_push(&items, v))) st = OOM(p);
          if (st) { free(items.v); return st; }
        }
        st = rego__ps_expect(p, K_RBRACE, "'}' or ','");
        if (st) { free(items.v); return st; }
        r = rego__mk_term(p, T_OBJ, t.row, t.col);
        if (!r) { free(items.v); return OOM(p); }
        r->n = items.n;
        r->elems = (rg_term **)rego__pv_done(p, &items);
        if (!r->elems) return OOM(p);
        break;
      }
      if (p->t.k == K_BAR) {
        CT_GUARD(rego__ps_adv(p));
        r = rego__mk_term(p, T_SCOMP, t.row, t.col);
        if (!r) return OOM(p);
        r->elems = rg_alloc(p->a, sizeof(rg_term *));
        if (!r->elems) return OOM(p);
        r->elems[0] = first;
        r->n = 1;
        CT_GUARD(rego__ps_comp_body(p, K_RBRACE, &r->body));
        CT_GUARD(rego__ps_expect(p, K_RBRACE, "'}'"));
        break;
      }
      pvec items = {0};
      if (!rego__pv_push(&items, first)) return OOM(p);
      while (p->t.k == K_COMMA) {
        st = rego__ps_adv(p);
        if (!st && p->t.k == K_RBRACE) break;
        rg_term *x = NULL;
        if (!st) st = rego__ps_term(p, false, &x);
        if (!st && !rego__pv_push(&items, x)) st = OOM(p);
        if (st) { free(items.v); return st; }
      }
      st = rego__ps_expect(p, K_RBRACE, "'}' or ','");
      if (st) { free(items.v); return st; }
      r = rego__mk_term(p, T_SET, t.row, t.col);
      if (!r) { free(items.v); return OOM(p); }
      r->n = items.n;
      r->elems = (rg_term **)rego__pv_done(p, &items);
      if (!r->elems) return OOM(p);
      break;
    }
    default:
      return rego__ps_fail(p, t.row, t.col, "unexpected %s", rego__tok_desc(&t));
  }
  p->depth--;
  if (r->kind == T_SCALAR && (r->val->t == RV_NUM || r->val->t == RV_BOOL || r->val->t == RV_NULL))
    return (*out = r), CT_OK;
  return rego__ps_var_or_ref(p, r, out);
}

static CT_RESULT rego__ps_factor(rg_ps *p, rg_term **out) {
  CT_GUARD(rego__ps_primary(p, out));
  while ((p->t.k == K_STAR || p->t.k == K_SLASH || p->t.k == K_PCT) && !p->t.nl) {
    rg_tok op = p->t;
    CT_GUARD(rego__ps_adv(p));
    rg_term *y;
    CT_GUARD(rego__ps_primary(p, &y));
    *out = rego__mk_call(p, op.k == K_STAR ? "mul" : op.k == K_SLASH ? "div" : "rem", *out, y, op.row, op.col);
    if (!*out) return OOM(p);
  }
  return CT_OK;
}

static CT_RESULT rego__ps_arith(rg_ps *p, rg_term **out) {
  CT_GUARD(rego__ps_factor(p, out));
  while ((p->t.k == K_PLUS || p->t.k == K_MINUS) && !p->t.nl) {
    rg_tok op = p->t;
    CT_GUARD(rego__ps_adv(p));
    rg_term *y;
    CT_GUARD(rego__ps_factor(p, &y));
    *out = rego__mk_call(p, op.k == K_PLUS ? "plus" : "minus", *out, y, op.row, op.col);
    if (!*out) return OOM(p);
  }
  return CT_OK;
}

static CT_RESULT rego__ps_and(rg_ps *p, rg_term **out) {
  CT_GUARD(rego__ps_arith(p, out));
  while (p->t.k == K_AMP && !p->t.nl) {
    rg_tok op = p->t;
    CT_GUARD(rego__ps_adv(p));
    rg_term *y;
    CT_GUARD(rego__ps_arith(p, &y));
    *out = rego__mk_call(p, "and", *out, y, op.row, op.col);
    if (!*out) return OOM(p);
  }
  return CT_OK;
}

static CT_RESULT rego__ps_or(rg_ps *p, bool nopipe, rg_term **out) {
  CT_GUARD(rego__ps_and(p, out));
  while (!nopipe && p->t.k == K_BAR && !p->t.nl) {
    rg_tok op = p->t;
    CT_GUARD(rego__ps_adv(p));
    rg_term *y;
    CT_GUARD(rego__ps_and(p, &y));
    *out = rego__mk_call(p, "or", *out, y, op.row, op.col);
    if (!*out) return OOM(p);
  }
  return CT_OK;
}

static CT_RESULT rego__ps_rel(rg_ps *p, bool nopipe, rg_term **out) {
  CT_GUARD(rego__ps_or(p, nopipe, out));
  for (;;) {
    const char *fn = NULL;
    switch (p->t.k) {
      case K_EQ: fn = "equal"; break;
      case K_NE: fn = "neq"; break;
      case K_LT: fn = "lt"; break;
      case K_GT: fn = "gt"; break;
      case K_LE: fn = "lte"; break;
      case K_GE: fn = "gte"; break;
      default: break;
    }
    if (!fn || p->t.nl) return CT_OK;
    rg_tok op = p->t;
    CT_GUARD(rego__ps_adv(p));
    rg_term *y;
    CT_GUARD(rego__ps_or(p, nopipe, &y));
    *out = rego__mk_call(p, fn, *out, y, op.row, op.col);
    if (!*out) return OOM(p);
  }
}

static CT_RESULT rego__ps_term(rg_ps *p, bool nopipe, rg_term **out) {
  CT_GUARD(rego__ps_rel(p, nopipe, out));
  while (rego__is_kw(&p->t, "in") && !p->t.nl) {
    rg_tok op = p->t;
    CT_GUARD(rego__ps_adv(p));
    rg_term *y;
    CT_GUARD(rego__ps_rel(p, nopipe, &y));
    *out = rego__mk_call(p, "internal.member_2", *out, y, op.row, op.col);
    if (!*out) return OOM(p);
  }
  return CT_OK;
}

/* For `k, v in c`: v was parsed greedily, so `k, x in a in b` arrives as v = member_2(x in a, b);
 * the outermost membership supplies the collection. */
static CT_RESULT rego__ps_kv_in(rg_ps *p, rg_term *k, rg_term **out) {
  rg_term *v;
  CT_GUARD(rego__ps_term(p, false, &v));
  rg_term *c = NULL;
  if (rego__is_kw(&p->t, "in")) {
    CT_GUARD(rego__ps_adv(p));
    CT_GUARD(rego__ps_rel(p, false, &c));
  } else if (v->kind == T_CALL && v->name && !strcmp(v->name, "internal.member_2") && !v->fnref) {
    c = v->elems[1];
    v = v->elems[0];
  } else
    return rego__ps_fail(p, p->t.row, p->t.col, "unexpected ',' in expression");
  rg_term *call = rego__mk_term(p, T_CALL, k->row, k->col);
  if (!call) return OOM(p);
  call->name = "internal.member_3";
  call->n = 3;
  call->elems = rg_alloc(p->a, 3 * sizeof(rg_term *));
  if (!call->elems) return OOM(p);
  call->elems[0] = k;
  call->elems[1] = v;
  call->elems[2] = c;
  *out = call;
  return CT_OK;
}

/* ---------------------------------------------------------------- expressions */
static rg_expr *rego__mk_expr(rg_ps *p, int kind, int row, int col) {
  rg_expr *e = rg_alloc(p->a, sizeof(rg_expr));
  if (!e) return NULL;
  e->kind = (uint8_t)kind;
  e->row = row;
  e->col = col;
  return e;
}

static CT_RESULT rego__ps_with(rg_ps *p, rg_expr *e) {
  pvec ws = {0};
  while (rego__is_kw(&p->t, "with") && !rego__kw_dotted(p)) {
    ct_status st = rego__ps_adv(p);
    rg_with *w = st ? NULL : rg_alloc(p->a, sizeof(rg_with));
    if (!st && !w) st = OOM(p);
    if (st) { free(ws.v); return st; }
    st = rego__ps_rel(p, false, &w->target);
    if (!st && !rego__is_kw(&p->t, "as")) st = rego__ps_fail(p, p->t.row, p->t.col, "expected 'as' in with modifier");
    if (!st) st = rego__ps_adv(p);
    if (!st) st = rego__ps_term(p, false, &w->value);
    if (!st && !rego__pv_push(&ws, w)) st = OOM(p);
    if (st) { free(ws.v); return st; }
  }
  if (!ws.n) return CT_OK;
  e->with = rg_alloc(p->a, ws.n * sizeof(rg_with));
  if (!e->with) { free(ws.v); return OOM(p); }
  for (size_t i = 0; i < ws.n; i++) e->with[i] = *(rg_with *)ws.v[i];
  e->nwith = ws.n;
  free(ws.v);
  return CT_OK;
}

static CT_RESULT rego__ps_expr_inner(rg_ps *p, rg_expr **out) {
  rg_tok t = p->t;
  if (rego__is_kw(&t, "some") && !rego__kw_dotted(p)) {
    CT_GUARD(rego__ps_adv(p));
    pvec xs = {0};
    ct_status st;
    for (;;) {
      rg_term *x;
      st = rego__ps_rel(p, false, &x);
      if (!st && !rego__pv_push(&xs, x)) st = OOM(p);
      if (st) { free(xs.v); return st; }
      if (p->t.k != K_COMMA) break;
      st = rego__ps_adv(p);
      if (st) { free(xs.v); return st; }
    }
    if (rego__is_kw(&p->t, "in")) {
      if (xs.n > 2) { free(xs.v); return rego__ps_fail(p, t.row, t.col, "unexpected assignment in some: too many variables"); }
      rg_expr *e = rego__mk_expr(p, E_SOMEIN, t.row, t.col);
      if (!e) { free(xs.v); return OOM(p); }
      e->a = xs.n == 2 ? xs.v[0] : NULL;
      e->b = xs.v[xs.n - 1];
      free(xs.v);
      CT_GUARD(rego__ps_adv(p));
      CT_GUARD(rego__ps_rel(p, false, &e->c));
      *out = e;
      return CT_OK;
    }
    rg_expr *e = rego__mk_expr(p, E_SOME, t.row, t.col);
    if (!e) { free(xs.v); return OOM(p); }
    for (size_t i = 0; i < xs.n; i++) {
      rg_term *x = xs.v[i];
      if (x->kind != T_VAR) { free(xs.v); return rego__ps_fail(p, x->row, x->col, "expected var in some declaration"); }
    }
    e->body = rg_alloc(p->a, sizeof(rg_body));
    if (!e->body) { free(xs.v); return OOM(p); }
    /* store declared vars as terms in body->e as a term list */
    e->a = rego__mk_term(p, T_ARR, t.row, t.col);
    if (!e->a) { free(xs.v); return OOM(p); }
    e->a->n = xs.n;
    e->a->elems = (rg_term **)rego__pv_done(p, &xs);
    if (!e->a->elems) return OOM(p);
    *out = e;
    return CT_OK;
  }
  if (rego__is_kw(&t, "every") && !rego__kw_dotted(p)) {
    CT_GUARD(rego__ps_adv(p));
    rg_expr *e = rego__mk_expr(p, E_EVERY, t.row, t.col);
    if (!e) return OOM(p);
    rg_term *x;
    CT_GUARD(rego__ps_rel(p, false, &x));
    if (p->t.k == K_COMMA) {
      CT_GUARD(rego__ps_adv(p));
      e->a = x;
      CT_GUARD(rego__ps_rel(p, false, &e->b));
    } else e->b = x;
    if (!rego__is_kw(&p->t, "in")) return rego__ps_fail(p, p->t.row, p->t.col, "expected 'in' in every");
    CT_GUARD(rego__ps_adv(p));
    CT_GUARD(rego__ps_rel(p, false, &e->c));
    CT_GUARD(rego__ps_expect(p, K_LBRACE, "'{' after every ... in ..."));
    CT_GUARD(rego__ps_body_until(p, K_RBRACE, &e->body));
    CT_GUARD(rego__ps_expect(p, K_RBRACE, "'}'"));
    *out = e;
    return CT_OK;
  }
  if (rego__is_kw(&t, "not") && !rego__kw_dotted(p)) {
    if (++p->depth > RG_MAX_PARSE_DEPTH) return rego__ps_fail(p, t.row, t.col, "nesting too deep");
    CT_GUARD(rego__ps_adv(p));
    rg_expr *e = rego__mk_expr(p, E_NOT, t.row, t.col);
    if (!e) return OOM(p);
    if (p->logic && p->t.k == K_LPAREN) {
      /* not (a or b) */
      ps_mark m;
      rego__ps_save(p, &m);
      rg_body *b = NULL;
      if (rego__ps_logic_atom(p, &b) == CT_OK && b->n == 1 && (b->e[0]->kind == E_AND || b->e[0]->kind == E_OR)) {
        e->body = b;
        p->depth--;
        *out = e;
        return CT_OK;
      }
      rego__ps_restore(p, &m);
    }
    if (p->t.k == K_LBRACE) {
      /* `not { ... }` negates a whole body, unless the braces are an object/set literal */
      size_t save_pos = p->pos;
      int save_row = p->row, save_col = p->col;
      rg_tok save_t = p->t;
      bool save_peek = p->has_peek;
      rg_tok save_pk = p->peek;
      int save_depth = p->depth;
      CT_GUARD(rego__ps_adv(p));
      ct_err saved_err = *p->err;
      ct_status st = rego__ps_body_until(p, K_RBRACE, &e->body);
      if (st == CT_OK && p->t.k == K_RBRACE) {
        CT_GUARD(rego__ps_adv(p));
        p->depth = save_depth - 1;
        *out = e;
        return CT_OK;
      }
      /* not a body: rewind and parse an expression */
      *p->err = saved_err;
      e->body = NULL;
      p->pos = save_pos;
      p->row = save_row;
      p->col = save_col;
      p->t = save_t;
      p->has_peek = save_peek;
      p->peek = save_pk;
      p->depth = save_depth;
    }
    CT_GUARD(rego__ps_expr_inner(p, &e->sub));
    p->depth--;
    *out = e;
    return CT_OK;
  }
  rg_term *a;
  CT_GUARD(rego__ps_term(p, false, &a));
  if (p->t.k == K_COMMA) {
    /* k, v in coll */
    CT_GUARD(rego__ps_adv(p));
    CT_GUARD(rego__ps_kv_in(p, a, &a));
  }
  if ((p->t.k == K_UNIFY || p->t.k == K_ASSIGN) && !p->t.nl) {
    rg_expr *e = rego__mk_expr(p, p->t.k == K_UNIFY ? E_UNIFY : E_ASSIGN, p->t.row, p->t.col);
    if (!e) return OOM(p);
    e->row = a->row;
    e->col = a->col;
    CT_GUARD(rego__ps_adv(p));
    e->a = a;
    CT_GUARD(rego__ps_term(p, false, &e->b));
    *out = e;
    return CT_OK;
  }
  rg_expr *e = rego__mk_expr(p, E_TERM, a->row, a->col);
  if (!e) return OOM(p);
  e->a = a;
  *out = e;
  return CT_OK;
}

static CT_RESULT rego__ps_expr_plain(rg_ps *p, rg_expr **out) {
  CT_GUARD(rego__ps_expr_inner(p, out));
  return rego__ps_with(p, *out);
}

/* ---------------------------------------------------------------- and / or */

static void rego__ps_save(rg_ps *p, ps_mark *m) {
  m->pos = p->pos;
  m->row = p->row;
  m->col = p->col;
  m->depth = p->depth;
  m->t = p->t;
  m->peek = p->peek;
  m->has_peek = p->has_peek;
  m->err = *p->err;
}

static void rego__ps_restore(rg_ps *p, const ps_mark *m) {
  p->pos = m->pos;
  p->row = m->row;
  p->col = m->col;
  p->depth = m->depth;
  p->t = m->t;
  p->peek = m->peek;
  p->has_peek = m->has_peek;
  *p->err = m->err;
}

static bool rego__ends_operand(rg_ps *p) {
  return rego__is_kw(&p->t, "and") || rego__is_kw(&p->t, "or") || p->t.k == K_RPAREN || p->t.k == K_RBRACE ||
         p->t.k == K_SEMI || p->t.k == K_EOF || p->t.k == K_RBRACK || p->t.nl || rego__is_kw(&p->t, "with");
}

static CT_RESULT rego__ps_logic_or(rg_ps *p, rg_body **out);

static rg_body *rego__one_body(rg_ps *p, rg_expr *e) {
  rg_body *b = rg_alloc(p->a, sizeof(rg_body));
  if (!b) return NULL;
  b->e = rg_alloc(p->a, sizeof(rg_expr *));
  if (!b->e) return NULL;
  b->e[0] = e;
  b->n = 1;
  return b;
}

/* atom := '(' or ')' | '{' body '}' | literal -- the first two only when they are followed by
 * and/or/end; otherwise they are parsed again as an ordinary expression. */
static CT_RESULT rego__ps_logic_atom(rg_ps *p, rg_body **out) {
  if (++p->depth > RG_MAX_PARSE_DEPTH) return rego__ps_fail(p, p->t.row, p->t.col, "nesting too deep");
  ps_mark m;
  rego__ps_save(p, &m);
  ct_status st;
  if (p->t.k == K_LPAREN || p->t.k == K_LBRACE) {
    bool paren = p->t.k == K_LPAREN;
    st = rego__ps_adv(p);
    rg_body *b = NULL;
    if (!st && paren) {
      rg_expr *ex = NULL;
      st = rego__ps_expr(p, &ex);
      if (!st && !(b = rego__one_body(p, ex))) st = OOM(p);
    } else if (!st)
      st = rego__ps_body_until(p, K_RBRACE, &b);
    if (!st && p->t.k == (paren ? K_RPAREN : K_RBRACE)) {
      st = rego__ps_adv(p);
      if (!st && rego__ends_operand(p)) {
        *out = b;
        p->depth--;
        return CT_OK;
      }
    }
    rego__ps_restore(p, &m);
  }
  rg_expr *e;
  st = rego__ps_expr_inner(p, &e);
  if (st) return st;
  *out = rego__one_body(p, e);
  p->depth--;
  return *out ? CT_OK : OOM(p);
}

static CT_RESULT rego__ps_logic_chain(rg_ps *p, const char *kw, int kind, ct_status (*sub)(rg_ps *, rg_body **),
                                rg_body **out) {
  int row = p->t.row, col = p->t.col;
  rg_body *first;
  CT_GUARD(sub(p, &first));
  if (!rego__is_kw(&p->t, kw)) {
    *out = first;
    return CT_OK;
  }
  pvec ops = {0};
  if (!rego__pv_push(&ops, first)) return OOM(p);
  while (rego__is_kw(&p->t, kw)) {
    rg_body *b = NULL;
    ct_status st = rego__ps_adv(p);
    if (!st) st = sub(p, &b);
    if (!st && !rego__pv_push(&ops, b)) st = OOM(p);
    if (st) {
      free(ops.v);
      return st;
    }
  }
  rg_expr *e = rego__mk_expr(p, kind, row, col);
  if (!e) {
    free(ops.v);
    return OOM(p);
  }
  e->nops = ops.n;
  e->ops = (rg_body **)rego__pv_done(p, &ops);
  if (!e->ops) return OOM(p);
  *out = rego__one_body(p, e);
  return *out ? CT_OK : OOM(p);
}

static CT_RESULT rego__ps_logic_and(rg_ps *p, rg_body **out) { return rego__ps_logic_chain(p, "and", E_AND, rego__ps_logic_atom, out); }
static CT_RESULT rego__ps_logic_or(rg_ps *p, rg_body **out) { return rego__ps_logic_chain(p, "or", E_OR, rego__ps_logic_and, out); }

static CT_RESULT rego__ps_expr(rg_ps *p, rg_expr **out) {
  if (!p->logic) return rego__ps_expr_plain(p, out);
  rg_body *b;
  CT_GUARD(rego__ps_logic_or(p, &b));
  if (b->n == 1) {
    *out = b->e[0];
    return rego__ps_with(p, *out);
  }
  /* a braced or parenthesised group on its own: an AND of one operand */
  rg_expr *e = rego__mk_expr(p, E_AND, b->e[0]->row, b->e[0]->col);
  if (!e) return OOM(p);
  e->ops = rg_alloc(p->a, sizeof(rg_body *));
  if (!e->ops) return OOM(p);
  e->ops[0] = b;
  e->nops = 1;
  *out = e;
  return rego__ps_with(p, e);
}

static CT_RESULT rego__ps_body_until_inner(rg_ps *p, int close, rg_body **out);

/* Parses expressions until `close` (not consumed); bodies nest (every, comprehensions). */
static CT_RESULT rego__ps_body_until(rg_ps *p, int close, rg_body **out) {
  if (++p->depth > RG_MAX_PARSE_DEPTH) return rego__ps_fail(p, p->t.row, p->t.col, "nesting too deep");
  ct_status st = rego__ps_body_until_inner(p, close, out);
  p->depth--;
  return st;
}

static CT_RESULT rego__ps_body_until_inner(rg_ps *p, int close, rg_body **out) {
  pvec es = {0};
  ct_status st = CT_OK;
  while (p->t.k != close) {
    if (p->t.k == K_EOF) { st = rego__ps_fail(p, p->t.row, p->t.col, "unexpected EOF in body"); goto fail; }
    rg_expr *e;
    CT_GUARD_GOTO(st, rego__ps_expr(p, &e), fail);
    if (!rego__pv_push(&es, e)) { st = OOM(p); goto fail; }
    if (p->t.k == K_SEMI) {
      CT_GUARD_GOTO(st, rego__ps_adv(p), fail);
    } else if (p->t.k != close && !p->t.nl) {
      st = rego__ps_fail(p, p->t.row, p->t.col, "unexpected %s, expected end of expression", rego__tok_desc(&p->t));
      goto fail;
    }
  }
  if (!es.n) { st = rego__ps_fail(p, p->t.row, p->t.col, "found empty body"); goto fail; }
  rg_body *b = rg_alloc(p->a, sizeof(rg_body));
  if (!b) { st = OOM(p); goto fail; }
  b->n = es.n;
  b->e = (rg_expr **)rego__pv_done(p, &es);
  if (!b->e) return OOM(p);
  *out = b;
  return CT_OK;
fail:
  free(es.v);
  return st;
}

/* ---------------------------------------------------------------- rules and modules */
static rg_body *rego__true_body(rg_ps *p, int row, int col) {
  rg_body *b = rg_alloc(p->a, sizeof(rg_body));
  rg_expr *e = rego__mk_expr(p, E_TERM, row, col);
  if (!b || !e) return NULL;
  e->a = rego__mk_scalar(p, RV_TRUE, row, col);
  b->e = rg_alloc(p->a, sizeof(rg_expr *));
  if (!b->e || !e->a) return NULL;
  b->e[0] = e;
  b->n = 1;
  return b;
}

/* After the head: `if body`, `if expr`, `{ body }`, or nothing. Sets *had_if, *had_body. */
static CT_RESULT rego__ps_rule_body(rg_ps *p, rg_rule *r, bool *had_if) {
  *had_if = false;
  if (rego__is_kw(&p->t, "if") && !rego__kw_dotted(p)) {
    *had_if = true;
    CT_GUARD(rego__ps_adv(p));
    if (p->t.k == K_LBRACE) {
      size_t save_pos = p->pos;
      int save_row = p->row, save_col = p->col, save_depth = p->depth;
      rg_tok save_t = p->t, save_pk = p->peek;
      bool save_peek = p->has_peek;
      ct_err saved_err = *p->err;
      CT_GUARD(rego__ps_adv(p));
      ct_status st = rego__ps_body_until(p, K_RBRACE, &r->body);
      if (!st) return rego__ps_expect(p, K_RBRACE, "'}'");
      /* `if {k: v | ...}`: an expression starting with a brace */
      *p->err = saved_err;
      p->pos = save_pos;
      p->row = save_row;
      p->col = save_col;
      p->depth = save_depth;
      p->t = save_t;
      p->peek = save_pk;
      p->has_peek = save_peek;
      ct_err e1 = {0};
      (void)e1;
      rg_expr *ex;
      ct_status st2 = rego__ps_expr(p, &ex);
      if (st2) return st;
      r->body = rg_alloc(p->a, sizeof(rg_body));
      if (!r->body) return OOM(p);
      r->body->e = rg_alloc(p->a, sizeof(rg_expr *));
      if (!r->body->e) return OOM(p);
      r->body->e[0] = ex;
      r->body->n = 1;
      return CT_OK;
    }
    rg_expr *e;
    CT_GUARD(rego__ps_expr(p, &e));
    r->body = rg_alloc(p->a, sizeof(rg_body));
    if (!r->body) return OOM(p);
    r->body->e = rg_alloc(p->a, sizeof(rg_expr *));
    if (!r->body->e) return OOM(p);
    r->body->e[0] = e;
    r->body->n = 1;
    return CT_OK;
  }
  if (p->t.k == K_LBRACE && !p->t.nl) {
    r->v0body = true;
    CT_GUARD(rego__ps_adv(p));
    CT_GUARD(rego__ps_body_until(p, K_RBRACE, &r->body));
    return rego__ps_expect(p, K_RBRACE, "'}'");
  }
  r->body = rego__true_body(p, r->row, r->col);
  return r->body ? CT_OK : OOM(p);
}

static CT_RESULT rego__ps_rule(rg_ps *p, rg_module *m, pvec *rules) {
  rg_tok start = p->t;
  bool is_default = false;
  if (rego__is_kw(&start, "default") && !rego__kw_dotted(p)) {
    is_default = true;
    CT_GUARD(rego__ps_adv(p));
  }
  if (p->t.k != K_IDENT || (rego__is_reserved(&p->t) && !rego__kw_dotted(p)))
    return rego__ps_fail(p, p->t.row, p->t.col, "unexpected %s, expected rule", rego__tok_desc(&p->t));
  rg_rule *r = rg_alloc(p->a, sizeof(rg_rule));
  if (!r) return OOM(p);
  r->file = p->file;
  r->row = start.row;
  r->col = start.col;
  r->is_default = is_default;
  r->mod = m;
  /* Head reference: name(.name | [term])* */
  rg_term *head;
  rg_term *nm = rego__mk_term(p, T_VAR, p->t.row, p->t.col);
  if (!nm) return OOM(p);
  nm->name = rg_strndup(p->a, p->t.s, p->t.n);
  if (!nm->name) return OOM(p);
  CT_GUARD(rego__ps_adv(p));
  pvec path = {0};
  ct_status st = CT_OK;
  if (!rego__pv_push(&path, nm)) return OOM(p);
  for (;;) {
    if (p->t.k == K_DOT && !p->t.nl) {
      st = rego__ps_adv(p);
      if (!st && p->t.k != K_IDENT) st = rego__ps_fail(p, p->t.row, p->t.col, "expected ident after '.'");
      rg_term *k = st ? NULL : rego__mk_scalar(p, rv_str(p->a, p->t.s, p->t.n), p->t.row, p->t.col);
      if (!st && (!k || !rego__pv_push(&path, k))) st = OOM(p);
      if (!st) st = rego__ps_adv(p);
    } else if (p->t.k == K_LBRACK && !p->t.nl) {
      rg_term *k = NULL;
      st = rego__ps_adv(p);
      if (!st) st = rego__ps_term(p, false, &k);
      if (!st && !rego__pv_push(&path, k)) st = OOM(p);
      if (!st) st = rego__ps_expect(p, K_RBRACK, "']'");
    } else break;
    if (st) { free(path.v); return st; }
  }
  head = rego__mk_term(p, T_REF, nm->row, nm->col);
  if (!head) { free(path.v); return OOM(p); }
  head->n = path.n;
  head->elems = (rg_term **)rego__pv_done(p, &path);
  if (!head->elems) return OOM(p);
  /* function args */
  if (p->t.k == K_LPAREN && !p->t.nl) {
    CT_GUARD(rego__ps_adv(p));
    pvec args = {0};
    while (p->t.k != K_RPAREN) {
      rg_term *a;
      st = rego__ps_term(p, false, &a);
      if (!st && !rego__pv_push(&args, a)) st = OOM(p);
      if (!st && p->t.k == K_COMMA) st = rego__ps_adv(p);
      else if (!st && p->t.k != K_RPAREN) st = rego__ps_fail(p, p->t.row, p->t.col, "expected ',' or ')'");
      if (st) { free(args.v); return st; }
    }
    st = rego__ps_adv(p);
    if (st) { free(args.v); return st; }
    r->kind = R_FUNC;
    r->nargs = args.n;
    r->args = (rg_term **)rego__pv_done(p, &args);
    if (!r->args) return OOM(p);
  }
  bool has_value = false, is_contains = false;
  if (rego__is_kw(&p->t, "contains") && !p->t.nl) {
    CT_GUARD(rego__ps_adv(p));
    CT_GUARD(rego__ps_term(p, false, &r->key));
    is_contains = true;
  } else if ((p->t.k == K_UNIFY || p->t.k == K_ASSIGN) && !p->t.nl) {
    CT_GUARD(rego__ps_adv(p));
    CT_GUARD(rego__ps_term(p, false, &r->value));
    has_value = true;
  }
  bool had_if;
  CT_GUARD(rego__ps_rule_body(p, r, &had_if));
  if (had_if) m->v1 = true;
  /* classify */
  rg_term *last = head->elems[head->n - 1];
  bool last_dyn = head->n > 1 && !(last->kind == T_SCALAR && last->val->t == RV_STR);
  size_t static_n = head->n;
  size_t first_dyn = head->n;
  for (size_t i = 1; i < head->n; i++)
    if (!(head->elems[i]->kind == T_SCALAR && head->elems[i]->val->t == RV_STR)) {
      first_dyn = i;
      break;
    }
  if (r->kind != R_FUNC && first_dyn < head->n && (first_dyn < head->n - 1 || is_contains)) {
    /* general ref head: a.b[x].c[y] := v / a[x] contains y */
    rg_term *kp = rego__mk_term(p, T_ARR, head->row, head->col);
    if (!kp) return OOM(p);
    kp->n = head->n - first_dyn;
    kp->elems = head->elems + first_dyn;
    if (is_contains) {
      r->value = r->key;
      r->multi = true;
    }
    r->key = kp;
    r->kind = R_GENERAL;
    static_n = first_dyn;
  } else if (r->kind == R_FUNC) {
    /* value defaults to true */
  } else if (is_contains) {
    r->kind = R_PSET;
  } else if (last_dyn) {
    static_n = head->n - 1;
    if (has_value || had_if || m->v1) {
      r->kind = R_POBJ;
      r->key = last;
    } else {
      r->kind = R_PSET;
      r->key = last;
    }
  } else r->kind = R_COMPLETE;
  for (size_t i = 1; i < static_n; i++) {
    rg_term *e = head->elems[i];
    if (!(e->kind == T_SCALAR && e->val->t == RV_STR))
      return rego__ps_fail(p, e->row, e->col, "rule head ref may only contain a variable in its last position");
  }
  if (!r->value && r->kind != R_PSET) r->value = rego__mk_scalar(p, RV_TRUE, r->row, r->col);
  if (r->kind != R_PSET && !r->value) return OOM(p);
  /* keep head path in r->args for non-functions?  store separately via a REF term */
  rg_term *hp = rego__mk_term(p, T_REF, head->row, head->col);
  if (!hp) return OOM(p);
  hp->elems = head->elems;
  hp->n = static_n;
  r->node = (rg_node *)hp; /* temporarily: head path ref, replaced by the compiler */
  if (!rego__pv_push(rules, r)) return OOM(p);
  /* else chain */
  rg_rule *prev = r;
  while (rego__is_kw(&p->t, "else") && !rego__kw_dotted(p)) {
    rg_tok et = p->t;
    CT_GUARD(rego__ps_adv(p));
    rg_rule *e = rg_alloc(p->a, sizeof(rg_rule));
    if (!e) return OOM(p);
    *e = *r;
    e->els = NULL;
    e->row = et.row;
    e->col = et.col;
    e->value = NULL;
    if ((p->t.k == K_UNIFY || p->t.k == K_ASSIGN) && !p->t.nl) {
      CT_GUARD(rego__ps_adv(p));
      CT_GUARD(rego__ps_term(p, false, &e->value));
    } else {
      e->value = rego__mk_scalar(p, RV_TRUE, et.row, et.col);
      if (!e->value) return OOM(p);
    }
    CT_GUARD(rego__ps_rule_body(p, e, &had_if));
    prev->els = e;
    prev = e;
  }
  if (r->is_default && r->kind == R_FUNC) {
    /* default f(_) := v */
  }
  return CT_OK;
}

static CT_RESULT rego__ps_ref_path(rg_ps *p, rg_term **out) {
  if (p->t.k != K_IDENT) return rego__ps_fail(p, p->t.row, p->t.col, "expected name");
  return rego__ps_primary(p, out);
}

/* ---------------------------------------------------------------- AST depth bound */
/* Recursion here stops at RG_MAX_AST_DEPTH, so the check itself is bounded. */
static CT_RESULT rego__parse__too_deep(rg_ps *p, int row, int col) {
  return rego__ps_fail(p, row, col, "expression nested too deeply (more than %d levels of operators, calls, "
                              "collections or bodies)", RG_MAX_AST_DEPTH);
}
static CT_RESULT rego__parse__depth_body(rg_ps *p, const rg_body *b, int d, int row, int col);
static CT_RESULT rego__parse__depth_term(rg_ps *p, const rg_term *t, int d) {
  if (!t) return CT_OK;
  if (d > RG_MAX_AST_DEPTH) return rego__parse__too_deep(p, t->row, t->col);
  for (size_t i = 0; i < t->n; i++)
    if (t->elems) CT_GUARD(rego__parse__depth_term(p, t->elems[i], d + 1));
  CT_GUARD(rego__parse__depth_term(p, t->fnref, d + 1));
  return rego__parse__depth_body(p, t->body, d + 1, t->row, t->col);
}
static CT_RESULT rego__parse__depth_expr(rg_ps *p, const rg_expr *e, int d) {
  if (!e) return CT_OK;
  if (d > RG_MAX_AST_DEPTH) return rego__parse__too_deep(p, e->row, e->col);
  CT_GUARD(rego__parse__depth_term(p, e->a, d + 1));
  CT_GUARD(rego__parse__depth_term(p, e->b, d + 1));
  CT_GUARD(rego__parse__depth_term(p, e->c, d + 1));
  CT_GUARD(rego__parse__depth_body(p, e->body, d + 1, e->row, e->col));
  CT_GUARD(rego__parse__depth_expr(p, e->sub, d + 1));
  for (size_t i = 0; i < e->nops; i++) CT_GUARD(rego__parse__depth_body(p, e->ops[i], d + 1, e->row, e->col));
  for (size_t i = 0; i < e->nwith; i++) {
    CT_GUARD(rego__parse__depth_term(p, e->with[i].target, d + 1));
    CT_GUARD(rego__parse__depth_term(p, e->with[i].value, d + 1));
  }
  return CT_OK;
}
static CT_RESULT rego__parse__depth_body(rg_ps *p, const rg_body *b, int d, int row, int col) {
  if (!b) return CT_OK;
  if (d > RG_MAX_AST_DEPTH) return rego__parse__too_deep(p, row, col);
  for (size_t i = 0; i < b->n; i++) CT_GUARD(rego__parse__depth_expr(p, b->e[i], d + 1));
  return CT_OK;
}
static CT_RESULT rego__parse__depth_rule(rg_ps *p, const rg_rule *r) {
  /* else chains are walked iteratively by the compiler and the evaluator */
  for (const rg_rule *x = r; x; x = x->els) {
    CT_GUARD(rego__parse__depth_term(p, x->key, 1));
    CT_GUARD(rego__parse__depth_term(p, x->value, 1));
    for (size_t i = 0; i < x->nargs; i++) CT_GUARD(rego__parse__depth_term(p, x->args[i], 1));
    CT_GUARD(rego__parse__depth_body(p, x->body, 1, x->row, x->col));
  }
  return CT_OK;
}

CT_RESULT rg_parse_module(rg_arena *a, const char *file, const char *src, rg_module **out, ct_err *err) {
  rg_ps p = {.a = a, .file = file ? file : "policy.rego", .src = src, .len = strlen(src), .row = 1, .col = 1, .err = err};
  rg_module *m = rg_alloc(a, sizeof(rg_module));
  if (!m) return OOM(&p);
  m->file = p.file;
  CT_GUARD(rego__ps_adv(&p));
  if (!rego__is_kw(&p.t, "package")) return rego__ps_fail(&p, p.t.row, p.t.col, "expected package declaration");
  CT_GUARD(rego__ps_adv(&p));
  CT_GUARD(rego__ps_ref_path(&p, &m->pkg));
  /* package path segments */
  {
    rg_term *pk = m->pkg;
    size_t n = pk->kind == T_REF ? pk->n : 1;
    m->pkgpath = rg_alloc(a, n * sizeof(char *));
    if (!m->pkgpath) return OOM(&p);
    for (size_t i = 0; i < n; i++) {
      rg_term *e = pk->kind == T_REF ? pk->elems[i] : pk;
      if (e->kind == T_VAR && i == 0) m->pkgpath[i] = e->name;
      else if (e->kind == T_SCALAR && e->val->t == RV_STR) m->pkgpath[i] = e->val->u.s;
      else return rego__ps_fail(&p, e->row, e->col, "package name must be a static reference");
    }
    m->npkgpath = n;
  }
  pvec imps = {0}, rules = {0};
  ct_status st = CT_OK;
  while (rego__is_kw(&p.t, "import") && !rego__kw_dotted(&p)) {
    rg_tok it = p.t;
    CT_GUARD_GOTO(st, rego__ps_adv(&p), fail);
    rg_import *im = rg_alloc(a, sizeof(rg_import));
    if (!im) { st = OOM(&p); goto fail; }
    CT_GUARD_GOTO(st, rego__ps_ref_path(&p, &im->path), fail);
    if (rego__is_kw(&p.t, "as")) {
      CT_GUARD_GOTO(st, rego__ps_adv(&p), fail);
      if (p.t.k != K_IDENT) { st = rego__ps_fail(&p, p.t.row, p.t.col, "expected alias name"); goto fail; }
      im->alias = rg_strndup(a, p.t.s, p.t.n);
      CT_GUARD_GOTO(st, rego__ps_adv(&p), fail);
    }
    rg_term *ip = im->path;
    rg_term *root = ip->kind == T_REF ? ip->elems[0] : ip;
    if (root->kind != T_VAR ||
        (strcmp(root->name, "data") && strcmp(root->name, "input") && strcmp(root->name, "future") &&
         strcmp(root->name, "rego"))) {
      st = rego__ps_fail(&p, it.row, it.col, "invalid import: path must begin with input, data, future or rego");
      goto fail;
    }
    /* The alias and the import checks below read every element after the root as a string: an
     * import path is static (fuzz-long finding: `import data.x[input.k]` dereferenced NULL). */
    for (size_t i = 1; ip->kind == T_REF && i < ip->n; i++)
      if (ip->elems[i]->kind != T_SCALAR || !ip->elems[i]->val || ip->elems[i]->val->t != RV_STR) {
        st = rego__ps_fail(&p, ip->elems[i]->row, ip->elems[i]->col, "unexpected ref token: expecting string");
        goto fail;
      }
    if (!strcmp(root->name, "rego")) m->v1 = true;
    if (!strcmp(root->name, "rego") && ip->kind == T_REF && ip->n == 2 && ip->elems[1]->kind == T_SCALAR &&
        ip->elems[1]->val->t == RV_STR && !strcmp(ip->elems[1]->val->u.s, "v2"))
      p.logic = m->not_body = true;
    if (!strcmp(root->name, "future") && ip->kind == T_REF && ip->n == 2) p.logic = true; /* future.keywords */
    if (!strcmp(root->name, "future") && ip->kind == T_REF &&
        (ip->n == 2 || (ip->n == 3 && ip->elems[2]->kind == T_SCALAR && ip->elems[2]->val->t == RV_STR &&
                        !strcmp(ip->elems[2]->val->u.s, "not"))))
      m->not_body = true;
    if (!strcmp(root->name, "future") && ip->kind == T_REF && ip->n == 3 && ip->elems[2]->kind == T_SCALAR &&
        ip->elems[2]->val->t == RV_STR &&
        (!strcmp(ip->elems[2]->val->u.s, "and") || !strcmp(ip->elems[2]->val->u.s, "or")))
      p.logic = true;
    if (!im->alias) {
      rg_term *last = ip->kind == T_REF ? ip->elems[ip->n - 1] : ip;
      im->alias = last->kind == T_VAR ? last->name : last->val->t == RV_STR ? last->val->u.s : NULL;
    }
    if (!rego__pv_push(&imps, im)) { st = OOM(&p); goto fail; }
  }
  while (p.t.k != K_EOF) {
    if (rego__is_kw(&p.t, "import") && !rego__kw_dotted(&p)) { st = rego__ps_fail(&p, p.t.row, p.t.col, "import must come before rules"); goto fail; }
    if (rego__is_kw(&p.t, "package") && !rego__kw_dotted(&p)) { st = rego__ps_fail(&p, p.t.row, p.t.col, "unexpected package declaration"); goto fail; }
    CT_GUARD_GOTO(st, rego__ps_rule(&p, m, &rules), fail);
  }
  m->nimports = imps.n;
  m->imports = rg_alloc(a, (imps.n + 1) * sizeof(rg_import));
  if (!m->imports) { st = OOM(&p); goto fail; }
  for (size_t i = 0; i < imps.n; i++) m->imports[i] = *(rg_import *)imps.v[i];
  free(imps.v);
  imps.v = NULL;
  m->nrules = rules.n;
  m->rules = (rg_rule **)rego__pv_done(&p, &rules);
  if (!m->rules) return OOM(&p);
  for (size_t i = 0; i < m->nrules; i++) CT_GUARD(rego__parse__depth_rule(&p, m->rules[i]));
  *out = m;
  return CT_OK;
fail:
  free(imps.v);
  free(rules.v);
  return st;
}

CT_RESULT rg_parse_query(rg_arena *a, const char *src, rg_body **out, ct_err *err) {
  rg_ps p = {.a = a, .file = "query", .src = src, .len = strlen(src), .row = 1, .col = 1, .err = err};
  CT_GUARD(rego__ps_adv(&p));
  CT_GUARD(rego__ps_body_until(&p, K_EOF, out));
  return rego__parse__depth_body(&p, *out, 0, 1, 1);
}
