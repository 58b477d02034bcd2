/*
 * builtins_tmpl.c - strings.render_template: a subset of Go's text/template, as OPA uses it
 * (template executed over the variables object; "<no value>" printed as "<undefined>").
 *
 * Supported: text with {{ }} actions and {{- -}} trimming, template comments, pipelines with
 * '|', fields (.a.b, $x.a), variables ($, $x := ..., $x = ...), literals (strings, raw strings,
 * numbers, true, false, nil), parenthesised pipelines, if / else if / else, range (with
 * $i, $v := ... and else), with, and the functions and, or, not, len, index, eq, ne, lt, le, gt,
 * ge, print, println, printf (%v %s %d %q %%). Values print as Go's fmt %v does for the
 * decoded JSON (maps as map[k:v], arrays as [a b]). Template size, nesting, output size and
 * steps are bounded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rego_bi.h"

#define TM_SRC_MAX (64u << 10)
#define TM_OUT_MAX (1u << 20)
#define TM_DEPTH_MAX 32
#define TM_STEPS_MAX 1000000
#define TM_VARS_MAX 64

/* ---------------------------------------------------------------- AST */
enum { N_TEXT, N_ACTION, N_IF, N_RANGE, N_WITH };
enum { O_FIELD, O_VAR, O_DOT, O_STR, O_NUM, O_BOOL, O_NIL, O_FUNC, O_PIPE };

typedef struct tm_pipe tm_pipe;
typedef struct tm_list tm_list;

typedef struct {
  int kind;
  const char *name;     /* O_VAR: "$x"; O_FUNC: name */
  const char **fields;  /* trailing .a.b */
  size_t nfields;
  rv *lit;              /* literals */
  tm_pipe *pipe;        /* O_PIPE */
} tm_operand;

typedef struct {
  tm_operand *ops;      /* ops[0] may be a function name */
  size_t n;
} tm_cmd;

struct tm_pipe {
  const char *decl[2];  /* declared variables */
  size_t ndecl;
  bool assign;          /* '=' rather than ':=' */
  tm_cmd *cmds;
  size_t n;
};

typedef struct tm_node {
  int kind;
  const char *text;
  size_t len;
  tm_pipe *pipe;
  tm_list *body, *els;
} tm_node;

struct tm_list {
  tm_node **n;
  size_t len, cap;
};

/* ---------------------------------------------------------------- parser */
typedef struct {
  rg_arena *a;
  const char *s, *end, *p; /* whole source, current position */
  char err[256];
  int depth;
} tm_ps;

static bool rego__tm_perr(tm_ps *ps, const char *msg) {
  if (!ps->err[0]) {
    int line = 1;
    for (const char *q = ps->s; q < ps->p && q < ps->end; q++) line += *q == '\n';
    snprintf(ps->err, sizeof(ps->err), "template: template:%d: %s", line, msg);
  }
  return false;
}

static bool rego__tm_push(rg_arena *a, tm_list *l, tm_node *n) {
  if (l->len == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 8;
    tm_node **nn = rg_alloc(a, nc * sizeof(*nn));
    if (!nn) return false;
    if (l->len) memcpy(nn, l->n, l->len * sizeof(*nn));
    l->n = nn;
    l->cap = nc;
  }
  l->n[l->len++] = n;
  return true;
}

static void rego__tm_ws(tm_ps *ps) {
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\r' || *ps->p == '\n')) ps->p++;
}

static bool rego__tm_at_close(tm_ps *ps) {
  rego__tm_ws(ps);
  return (ps->end - ps->p >= 2 && !strncmp(ps->p, "}}", 2)) || (ps->end - ps->p >= 3 && !strncmp(ps->p, "-}}", 3) && ps->p[-1] == ' ');
}

static bool rego__tm_ident_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

static const char *rego__tm_word(tm_ps *ps) {
  const char *b = ps->p;
  while (ps->p < ps->end && rego__tm_ident_char(*ps->p)) ps->p++;
  return rg_strndup(ps->a, b, (size_t)(ps->p - b));
}

static tm_pipe *rego__tm_pipeline(tm_ps *ps, char close);

static bool rego__tm_fields(tm_ps *ps, tm_operand *o) {
  const char *f[32];
  size_t n = 0;
  while (ps->p < ps->end && *ps->p == '.' && ps->p + 1 < ps->end && rego__tm_ident_char(ps->p[1])) {
    ps->p++;
    if (n == 32) return rego__tm_perr(ps, "field chain too long");
    if (!(f[n++] = rego__tm_word(ps))) return false;
  }
  if (n) {
    o->fields = rg_alloc(ps->a, n * sizeof(char *));
    if (!o->fields) return false;
    memcpy(o->fields, f, n * sizeof(char *));
    o->nfields = n;
  }
  return true;
}

static bool rego__tm_operand_parse(tm_ps *ps, tm_operand *o) {
  memset(o, 0, sizeof(*o));
  rego__tm_ws(ps);
  if (ps->p >= ps->end) return rego__tm_perr(ps, "unclosed action");
  char c = *ps->p;
  if (c == '.') {
    if (ps->p + 1 < ps->end && rego__tm_ident_char(ps->p[1])) {
      o->kind = O_FIELD;
      return rego__tm_fields(ps, o);
    }
    ps->p++;
    o->kind = O_DOT;
    return true;
  }
  if (c == '$') {
    const char *b = ps->p++;
    while (ps->p < ps->end && rego__tm_ident_char(*ps->p)) ps->p++;
    o->kind = O_VAR;
    o->name = rg_strndup(ps->a, b, (size_t)(ps->p - b));
    return o->name && rego__tm_fields(ps, o);
  }
  if (c == '"' || c == '`') {
    const char *b = ++ps->p;
    char *buf = rg_alloc(ps->a, (size_t)(ps->end - b) + 1);
    if (!buf) return false;
    size_t w = 0;
    while (ps->p < ps->end && *ps->p != c) {
      if (c == '"' && *ps->p == '\\' && ps->p + 1 < ps->end) {
        ps->p++;
        char e = *ps->p;
        buf[w++] = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
      } else
        buf[w++] = *ps->p;
      ps->p++;
    }
    if (ps->p >= ps->end) return rego__tm_perr(ps, "unterminated quoted string");
    ps->p++;
    o->kind = O_STR;
    o->lit = rv_str(ps->a, buf, w);
    return o->lit != NULL;
  }
  if ((c >= '0' && c <= '9') || c == '-' || c == '+') {
    const char *b = ps->p++;
    while (ps->p < ps->end && (rego__tm_ident_char(*ps->p) || *ps->p == '.' || *ps->p == '+' || *ps->p == '-')) ps->p++;
    o->kind = O_NUM;
    o->lit = rv_num_text(ps->a, b, (size_t)(ps->p - b));
    if (!o->lit) return rego__tm_perr(ps, "bad number syntax");
    return true;
  }
  if (c == '(') {
    ps->p++;
    o->kind = O_PIPE;
    if (!(o->pipe = rego__tm_pipeline(ps, ')'))) return false;
    return rego__tm_fields(ps, o);
  }
  if (rego__tm_ident_char(c)) {
    const char *w = rego__tm_word(ps);
    if (!w) return false;
    if (!strcmp(w, "true") || !strcmp(w, "false")) {
      o->kind = O_BOOL;
      o->lit = rv_bool(w[0] == 't');
    } else if (!strcmp(w, "nil")) {
      o->kind = O_NIL;
    } else {
      o->kind = O_FUNC;
      o->name = w;
    }
    return true;
  }
  char m[64];
  snprintf(m, sizeof(m), "unexpected \"%c\" in command", c);
  return rego__tm_perr(ps, m);
}

/* A pipeline up to "}}" (close '}') or ")" (close ')'). */
static tm_pipe *rego__tm_pipeline(tm_ps *ps, char close) {
  tm_pipe *pp = rg_alloc(ps->a, sizeof(*pp));
  if (!pp) return NULL;
  /* declarations: $x := / $i, $v := / $x = */
  const char *save = ps->p;
  rego__tm_ws(ps);
  if (ps->p < ps->end && *ps->p == '$') {
    const char *names[2];
    size_t nn = 0;
    for (;;) {
      const char *b = ps->p;
      if (ps->p >= ps->end || *ps->p != '$') break;
      ps->p++;
      while (ps->p < ps->end && rego__tm_ident_char(*ps->p)) ps->p++;
      names[nn++] = rg_strndup(ps->a, b, (size_t)(ps->p - b));
      rego__tm_ws(ps);
      if (nn < 2 && ps->p < ps->end && *ps->p == ',') {
        ps->p++;
        rego__tm_ws(ps);
        continue;
      }
      break;
    }
    if (ps->end - ps->p >= 2 && !strncmp(ps->p, ":=", 2)) {
      ps->p += 2;
      memcpy(pp->decl, names, nn * sizeof(char *));
      pp->ndecl = nn;
    } else if (nn == 1 && ps->p < ps->end && *ps->p == '=' && (ps->p + 1 >= ps->end || ps->p[1] != '=')) {
      ps->p++;
      pp->decl[0] = names[0];
      pp->ndecl = 1;
      pp->assign = true;
    } else {
      ps->p = save;
    }
  }
  tm_cmd cmds[16];
  size_t nc = 0;
  for (;;) {
    tm_operand ops[16];
    size_t no = 0;
    for (;;) {
      rego__tm_ws(ps);
      if (close == ')' ? (ps->p < ps->end && *ps->p == ')') : rego__tm_at_close(ps)) break;
      if (ps->p < ps->end && *ps->p == '|') break;
      if (no == 16) return rego__tm_perr(ps, "too many operands"), NULL;
      if (!rego__tm_operand_parse(ps, &ops[no++])) return NULL;
    }
    if (!no) return rego__tm_perr(ps, "missing value for command"), NULL;
    if (nc == 16) return rego__tm_perr(ps, "pipeline too long"), NULL;
    cmds[nc].ops = rg_alloc(ps->a, no * sizeof(tm_operand));
    if (!cmds[nc].ops) return NULL;
    memcpy(cmds[nc].ops, ops, no * sizeof(tm_operand));
    cmds[nc++].n = no;
    if (ps->p < ps->end && *ps->p == '|') {
      ps->p++;
      continue;
    }
    break;
  }
  if (close == ')') ps->p++;
  pp->cmds = rg_alloc(ps->a, nc * sizeof(tm_cmd));
  if (!pp->cmds) return NULL;
  memcpy(pp->cmds, cmds, nc * sizeof(tm_cmd));
  pp->n = nc;
  return pp;
}

/* Consumes the closing "}}" or "-}}" (trimming the following white space). */
static bool rego__tm_close(tm_ps *ps) {
  rego__tm_ws(ps);
  if (ps->end - ps->p >= 3 && !strncmp(ps->p, "-}}", 3)) {
    ps->p += 3;
    rego__tm_ws(ps);
    return true;
  }
  if (ps->end - ps->p >= 2 && !strncmp(ps->p, "}}", 2)) {
    ps->p += 2;
    return true;
  }
  return rego__tm_perr(ps, "unclosed action");
}

/* Parses a list of nodes until {{end}} / {{else}} (returned in *stop: 0 end of input, 1 end,
 * 2 else, 3 else if). */
static tm_list *rego__tm_list_parse(tm_ps *ps, int *stop) {
  tm_list *l = rg_alloc(ps->a, sizeof(*l));
  if (!l) return NULL;
  if (++ps->depth > TM_DEPTH_MAX) return rego__tm_perr(ps, "nesting too deep"), NULL;
  *stop = 0;
  while (ps->p < ps->end) {
    const char *open = strstr(ps->p, "{{");
    const char *tend = open ? open : ps->end;
    bool trim_left = open && open + 2 < ps->end && open[2] == '-' && open + 3 < ps->end &&
                     (open[3] == ' ' || open[3] == '\t' || open[3] == '\n' || open[3] == '\r');
    const char *te = tend;
    if (trim_left)
      while (te > ps->p && (te[-1] == ' ' || te[-1] == '\t' || te[-1] == '\n' || te[-1] == '\r')) te--;
    if (te > ps->p) {
      tm_node *t = rg_alloc(ps->a, sizeof(*t));
      if (!t) return NULL;
      t->kind = N_TEXT;
      t->text = ps->p;
      t->len = (size_t)(te - ps->p);
      if (!rego__tm_push(ps->a, l, t)) return NULL;
    }
    if (!open) {
      ps->p = ps->end;
      break;
    }
    ps->p = open + (trim_left ? 3 : 2);
    rego__tm_ws(ps);
    if (ps->end - ps->p >= 2 && !strncmp(ps->p, "/*", 2)) {
      const char *ce = strstr(ps->p, "*/");
      if (!ce) return rego__tm_perr(ps, "unclosed comment"), NULL;
      ps->p = ce + 2;
      if (!rego__tm_close(ps)) return NULL;
      continue;
    }
    const char *kw = ps->p;
    while (ps->p < ps->end && rego__tm_ident_char(*ps->p)) ps->p++;
    size_t kl = (size_t)(ps->p - kw);
#define KW(s) (kl == strlen(s) && !strncmp(kw, s, kl))
    if (KW("end")) {
      if (!rego__tm_close(ps)) return NULL;
      *stop = 1;
      break;
    }
    if (KW("else")) {
      rego__tm_ws(ps);
      if (ps->end - ps->p >= 2 && !strncmp(ps->p, "if", 2) && !rego__tm_ident_char(ps->p[2])) {
        ps->p += 2;
        *stop = 3; /* the caller parses the condition */
        break;
      }
      if (!rego__tm_close(ps)) return NULL;
      *stop = 2;
      break;
    }
    tm_node *n = rg_alloc(ps->a, sizeof(*n));
    if (!n) return NULL;
    if (KW("if") || KW("range") || KW("with")) {
      n->kind = KW("if") ? N_IF : KW("range") ? N_RANGE : N_WITH;
      if (!(n->pipe = rego__tm_pipeline(ps, '}')) || !rego__tm_close(ps)) return NULL;
      int st;
      if (!(n->body = rego__tm_list_parse(ps, &st))) return NULL;
      tm_node *cur = n;
      while (st == 3) { /* else if: a nested if in the else branch */
        tm_node *in = rg_alloc(ps->a, sizeof(*in));
        tm_list *el = rg_alloc(ps->a, sizeof(*el));
        if (!in || !el || !rego__tm_push(ps->a, el, in)) return NULL;
        in->kind = N_IF;
        if (!(in->pipe = rego__tm_pipeline(ps, '}')) || !rego__tm_close(ps)) return NULL;
        if (!(in->body = rego__tm_list_parse(ps, &st))) return NULL;
        cur->els = el;
        cur = in;
      }
      if (st == 2) {
        if (!(cur->els = rego__tm_list_parse(ps, &st))) return NULL;
        if (st != 1) return rego__tm_perr(ps, "expected end; found else"), NULL;
      }
      if (st != 1) return rego__tm_perr(ps, "unexpected EOF"), NULL;
    } else {
      ps->p = kw;
      n->kind = N_ACTION;
      if (!(n->pipe = rego__tm_pipeline(ps, '}')) || !rego__tm_close(ps)) return NULL;
    }
#undef KW
    if (!rego__tm_push(ps->a, l, n)) return NULL;
  }
  ps->depth--;
  return l;
}

/* ---------------------------------------------------------------- execution */
typedef struct {
  rg_arena *a;
  ct_buf out;
  const char *vname[TM_VARS_MAX];
  rv *vval[TM_VARS_MAX];
  size_t nv;
  size_t steps;
  char err[256];
} tm_ex;

/* NULL value = Go's "no value" (a missing map key / nil). */
static bool rego__tm_xerr(tm_ex *x, const char *msg) {
  if (!x->err[0]) snprintf(x->err, sizeof(x->err), "template: template: %s", msg);
  return false;
}

static bool rego__tm_truth(const rv *v) {
  if (!v) return false;
  switch (v->t) {
  case RV_NULL: return false;
  case RV_BOOL: return v->b;
  case RV_NUM: return rv_num_dbl(v) != 0;
  case RV_STR:
  case RV_ARR:
  case RV_OBJ:
  case RV_SET: return v->n > 0;
  default: return true;
  }
}

static bool rego__tm_print(tm_ex *x, const rv *v, ct_buf *b) {
  ct_err e;
  if (!v) return ct_buf_append_str(b, "<no value>", &e) == CT_OK;
  switch (v->t) {
  case RV_NULL: return ct_buf_append_str(b, "<nil>", &e) == CT_OK;
  case RV_BOOL: return ct_buf_append_str(b, v->b ? "true" : "false", &e) == CT_OK;
  case RV_NUM: return rg_num_write(v, b, &e) == CT_OK;
  case RV_STR: return ct_buf_append(b, v->u.s, v->n, &e) == CT_OK;
  case RV_ARR:
  case RV_SET:
    if (ct_buf_append_str(b, "[", &e)) return false;
    for (uint32_t i = 0; i < v->n; i++)
      if ((i && ct_buf_append_str(b, " ", &e)) || !rego__tm_print(x, v->u.a[i], b)) return false;
    return ct_buf_append_str(b, "]", &e) == CT_OK;
  case RV_OBJ:
    if (ct_buf_append_str(b, "map[", &e)) return false;
    for (uint32_t i = 0; i < v->n; i++)
      if ((i && ct_buf_append_str(b, " ", &e)) || !rego__tm_print(x, v->u.o.k[i], b) || ct_buf_append_str(b, ":", &e) ||
          !rego__tm_print(x, v->u.o.v[i], b))
        return false;
    return ct_buf_append_str(b, "]", &e) == CT_OK;
  default: return false;
  }
}

static bool rego__tm_field(tm_ex *x, rv *v, const char *f, rv **out) {
  if (!v) {
    *out = NULL;
    return true;
  }
  if (v->t != RV_OBJ) {
    char m[160];
    snprintf(m, sizeof(m), "can't evaluate field %.64s in type %s", f, rg_type_name(v));
    return rego__tm_xerr(x, m);
  }
  *out = rv_obj_gets(v, f);
  return true;
}

static bool rego__tm_pipe_eval(tm_ex *x, tm_pipe *pp, rv *dot, rv **out);

static bool rego__tm_var(tm_ex *x, const char *name, rv **out) {
  for (size_t i = x->nv; i-- > 0;)
    if (!strcmp(x->vname[i], name)) {
      *out = x->vval[i];
      return true;
    }
  char m[96];
  snprintf(m, sizeof(m), "undefined variable: %.64s", name);
  return rego__tm_xerr(x, m);
}

static bool rego__tm_operand_eval(tm_ex *x, tm_operand *o, rv *dot, rv **out) {
  rv *v = NULL;
  switch (o->kind) {
  case O_DOT: v = dot; break;
  case O_FIELD: v = dot; break;
  case O_VAR:
    if (!rego__tm_var(x, o->name, &v)) return false;
    break;
  case O_STR:
  case O_NUM:
  case O_BOOL: v = o->lit; break;
  case O_NIL: v = &rv_null_v; break;
  case O_PIPE:
    if (!rego__tm_pipe_eval(x, o->pipe, dot, &v)) return false;
    break;
  default: return rego__tm_xerr(x, "unexpected operand");
  }
  for (size_t i = 0; i < o->nfields; i++)
    if (!rego__tm_field(x, v, o->fields[i], &v)) return false;
  *out = v;
  return true;
}

static int rego__tm_cmp(const rv *a, const rv *b, bool *ok) {
  *ok = a && b && a->t == b->t && (a->t == RV_NUM || a->t == RV_STR);
  return *ok ? rv_cmp(a, b) : 0;
}

static bool rego__tm_printf(tm_ex *x, rv **args, size_t n, ct_buf *b) {
  ct_err e;
  if (!n || !args[0] || args[0]->t != RV_STR) return rego__tm_xerr(x, "printf: format must be a string");
  const char *f = args[0]->u.s;
  size_t ai = 1;
  for (size_t i = 0; i < args[0]->n; i++) {
    if (f[i] != '%' || i + 1 >= args[0]->n) {
      if (ct_buf_append(b, &f[i], 1, &e)) return false;
      continue;
    }
    char c = f[++i];
    if (c == '%') {
      if (ct_buf_append_str(b, "%", &e)) return false;
      continue;
    }
    if (ai >= n) {
      if (ct_buf_printf(b, &e, "%%!%c(MISSING)", c)) return false;
      continue;
    }
    rv *v = args[ai++];
    if (c == 'q' && v && v->t == RV_STR) {
      if (rg_json_write(v, b, false, 0, &e)) return false;
    } else if (!rego__tm_print(x, v, b))
      return false;
  }
  return true;
}

/* Calls a built-in template function. */
static bool rego__tm_call(tm_ex *x, const char *fn, rv **args, size_t n, rv **out) {
  rg_arena *a = x->a;
#define NEED(k)                                                       \
  do {                                                                \
    if (n != (k)) {                                                   \
      char m_[96];                                                    \
      snprintf(m_, sizeof(m_), "wrong number of args for %s", fn);   \
      return rego__tm_xerr(x, m_);                                          \
    }                                                                 \
  } while (0)
  if (!strcmp(fn, "and") || !strcmp(fn, "or")) {
    if (!n) return rego__tm_xerr(x, "wrong number of args for and/or");
    bool isand = fn[0] == 'a';
    for (size_t i = 0; i < n; i++)
      if (rego__tm_truth(args[i]) != isand || i == n - 1) {
        *out = args[i];
        return true;
      }
  }
  if (!strcmp(fn, "not")) {
    NEED(1);
    *out = rv_bool(!rego__tm_truth(args[0]));
    return true;
  }
  if (!strcmp(fn, "len")) {
    NEED(1);
    if (!args[0] || args[0]->t < RV_STR) return rego__tm_xerr(x, "error calling len: len of this type");
    *out = rv_int(a, args[0]->t == RV_STR ? (int64_t)args[0]->n : (int64_t)args[0]->n);
    return *out != NULL;
  }
  if (!strcmp(fn, "index")) {
    if (!n) return rego__tm_xerr(x, "wrong number of args for index");
    rv *v = args[0];
    for (size_t i = 1; i < n; i++) {
      if (!v) return rego__tm_xerr(x, "error calling index: index of untyped nil");
      if (v->t == RV_OBJ) v = rv_obj_gets(v, args[i] && args[i]->t == RV_STR ? args[i]->u.s : "");
      else if (v->t == RV_ARR) {
        int64_t k;
        if (!args[i] || !rv_num_is_int(args[i], &k) || k < 0 || k >= (int64_t)v->n) return rego__tm_xerr(x, "error calling index: index out of range");
        v = v->u.a[k];
      } else
        return rego__tm_xerr(x, "error calling index: can't index item");
    }
    *out = v;
    return true;
  }
  static const char *const cmps[] = {"eq", "ne", "lt", "le", "gt", "ge"};
  for (int c = 0; c < 6; c++)
    if (!strcmp(fn, cmps[c])) {
      if (n < 2) return rego__tm_xerr(x, "missing argument for comparison");
      if (c == 0) {
        bool any = false;
        for (size_t i = 1; i < n; i++) any |= args[0] && args[i] && rv_eq(args[0], args[i]);
        *out = rv_bool(any);
        return true;
      }
      if (c == 1) {
        *out = rv_bool(!(args[0] && args[1] && rv_eq(args[0], args[1])));
        return true;
      }
      bool ok;
      int r = rego__tm_cmp(args[0], args[1], &ok);
      if (!ok) return rego__tm_xerr(x, "incompatible types for comparison");
      *out = rv_bool(c == 2 ? r < 0 : c == 3 ? r <= 0 : c == 4 ? r > 0 : r >= 0);
      return true;
    }
  if (!strcmp(fn, "print") || !strcmp(fn, "println") || !strcmp(fn, "printf")) {
    ct_buf b;
    ct_buf_init(&b, TM_OUT_MAX);
    ct_err e;
    bool ok = true;
    if (fn[5] == 'f') ok = rego__tm_printf(x, args, n, &b);
    else
      for (size_t i = 0; i < n && ok; i++) {
        /* print adds spaces between operands when neither is a string; println always */
        if (i && (fn[5] == 'l' || ((!args[i - 1] || args[i - 1]->t != RV_STR) && (!args[i] || args[i]->t != RV_STR))))
          ok = ct_buf_append_str(&b, " ", &e) == CT_OK;
        ok = ok && rego__tm_print(x, args[i], &b);
      }
    if (ok && fn[5] == 'l') ok = ct_buf_append_str(&b, "\n", &e) == CT_OK;
    *out = ok ? rv_str(a, b.len ? (const char *)b.data : "", b.len) : NULL;
    ct_buf_free(&b);
    return *out ? true : rego__tm_xerr(x, "output too large");
  }
#undef NEED
  char m[96];
  snprintf(m, sizeof(m), "function \"%.64s\" not defined", fn);
  return rego__tm_xerr(x, m);
}

static bool rego__tm_pipe_eval(tm_ex *x, tm_pipe *pp, rv *dot, rv **out) {
  rv *prev = NULL;
  bool have_prev = false;
  for (size_t c = 0; c < pp->n; c++) {
    if (++x->steps > TM_STEPS_MAX) return rego__tm_xerr(x, "too many steps");
    tm_cmd *cm = &pp->cmds[c];
    rv *v;
    if (cm->ops[0].kind == O_FUNC) {
      rv *args[18];
      size_t na = 0;
      for (size_t i = 1; i < cm->n; i++)
        if (!rego__tm_operand_eval(x, &cm->ops[i], dot, &args[na++])) return false;
      if (have_prev) args[na++] = prev;
      if (!rego__tm_call(x, cm->ops[0].name, args, na, &v)) return false;
    } else {
      if (cm->n > 1 || have_prev) return rego__tm_xerr(x, "can't give argument to non-function");
      if (!rego__tm_operand_eval(x, &cm->ops[0], dot, &v)) return false;
    }
    prev = v;
    have_prev = true;
  }
  if (pp->ndecl == 1) {
    if (pp->assign) {
      bool found = false;
      for (size_t i = x->nv; i-- > 0 && !found;)
        if (!strcmp(x->vname[i], pp->decl[0])) {
          x->vval[i] = prev;
          found = true;
        }
      if (!found) return rego__tm_xerr(x, "undefined variable");
    } else {
      if (x->nv == TM_VARS_MAX) return rego__tm_xerr(x, "too many variables");
      x->vname[x->nv] = pp->decl[0];
      x->vval[x->nv++] = prev;
    }
  }
  *out = prev;
  return true;
}

static bool rego__tm_exec(tm_ex *x, tm_list *l, rv *dot);

static bool rego__tm_exec_node(tm_ex *x, tm_node *n, rv *dot) {
  ct_err e;
  if (++x->steps > TM_STEPS_MAX) return rego__tm_xerr(x, "too many steps");
  size_t mark = x->nv;
  bool ok = true;
  switch (n->kind) {
  case N_TEXT: return ct_buf_append(&x->out, n->text, n->len, &e) == CT_OK || rego__tm_xerr(x, "output too large");
  case N_ACTION: {
    rv *v;
    if (!rego__tm_pipe_eval(x, n->pipe, dot, &v)) return false;
    if (n->pipe->ndecl) return true; /* declarations print nothing; the variable stays in scope */
    return rego__tm_print(x, v, &x->out) || rego__tm_xerr(x, "output too large");
  }
  case N_IF:
  case N_WITH: {
    rv *v;
    if (!rego__tm_pipe_eval(x, n->pipe, dot, &v)) return false;
    if (rego__tm_truth(v)) ok = rego__tm_exec(x, n->body, n->kind == N_WITH ? v : dot);
    else if (n->els) ok = rego__tm_exec(x, n->els, dot);
    break;
  }
  case N_RANGE: {
    /* the declared variables are bound per element, not to the whole pipeline */
    size_t nd = n->pipe->ndecl;
    n->pipe->ndecl = 0;
    rv *v;
    ok = rego__tm_pipe_eval(x, n->pipe, dot, &v);
    n->pipe->ndecl = nd;
    if (!ok) return false;
    size_t cnt = v && (v->t == RV_ARR || v->t == RV_SET || v->t == RV_OBJ) ? v->n : 0;
    if (v && v->t != RV_ARR && v->t != RV_SET && v->t != RV_OBJ && v->t != RV_NULL) {
      if (v->t == RV_NUM) {
        int64_t k;
        if (!rv_num_is_int(v, &k) || k < 0) return rego__tm_xerr(x, "range can't iterate over this value");
        cnt = (size_t)k;
      } else
        return rego__tm_xerr(x, "range can't iterate over this value");
    }
    if (!cnt) {
      if (n->els) ok = rego__tm_exec(x, n->els, dot);
      break;
    }
    for (size_t i = 0; i < cnt && ok; i++) {
      rv *key = v->t == RV_OBJ ? v->u.o.k[i] : rv_int(x->a, (int64_t)i);
      rv *elem = v->t == RV_OBJ ? v->u.o.v[i] : v->t == RV_NUM ? key : v->u.a[i];
      if (!key) return rego__tm_xerr(x, "out of memory");
      size_t m2 = x->nv;
      if (x->nv + 2 > TM_VARS_MAX) return rego__tm_xerr(x, "too many variables");
      if (nd == 1) {
        x->vname[x->nv] = n->pipe->decl[0];
        x->vval[x->nv++] = elem;
      } else if (nd == 2) {
        x->vname[x->nv] = n->pipe->decl[0];
        x->vval[x->nv++] = key;
        x->vname[x->nv] = n->pipe->decl[1];
        x->vval[x->nv++] = elem;
      }
      ok = rego__tm_exec(x, n->body, elem);
      x->nv = m2;
    }
    break;
  }
  default: return rego__tm_xerr(x, "bad node");
  }
  x->nv = mark;
  return ok;
}

static bool rego__tm_exec(tm_ex *x, tm_list *l, rv *dot) {
  size_t mark = x->nv;
  for (size_t i = 0; i < l->len; i++)
    if (!rego__tm_exec_node(x, l->n[i], dot)) return false;
  x->nv = mark;
  return true;
}

static CT_RESULT rego__bi_render_template(rg_ev *ev, rv **a, rv **out) {
  static const char fname[] = "strings.render_template";
  CT_GUARD(rg_bi_want(ev, fname, 1, a[0], RV_STR));
  CT_GUARD(rg_bi_want(ev, fname, 2, a[1], RV_OBJ));
  if (a[0]->n > TM_SRC_MAX) return rg_bi_fail(ev, "%s: template larger than %u bytes", fname, TM_SRC_MAX);
  tm_ps ps = {.a = A, .s = a[0]->u.s, .end = a[0]->u.s + a[0]->n, .p = a[0]->u.s};
  int stop;
  tm_list *root = rego__tm_list_parse(&ps, &stop);
  if (root && stop != 0) {
    root = NULL;
    rego__tm_perr(&ps, stop == 1 ? "unexpected {{end}}" : "unexpected {{else}}");
  }
  if (!root) return ps.err[0] ? rg_bi_fail(ev, "%s: %s", fname, ps.err) : rg_bi_oom(ev);
  tm_ex *x = calloc(1, sizeof(*x));
  if (!x) return rg_bi_oom(ev);
  x->a = A;
  ct_buf_init(&x->out, TM_OUT_MAX);
  x->vname[0] = "$";
  x->vval[0] = a[1];
  x->nv = 1;
  ct_status st = CT_OK;
  if (!rego__tm_exec(x, root, a[1])) {
    st = x->err[0] ? rg_bi_fail(ev, "%s: %s", fname, x->err) : rg_bi_oom(ev);
  } else {
    /* OPA reports Go's "<no value>" as "<undefined>" */
    ct_buf r;
    ct_buf_init(&r, TM_OUT_MAX + (TM_OUT_MAX / 10) * 2);
    ct_err e;
    const char *s = x->out.len ? (const char *)x->out.data : "";
    size_t n = x->out.len, i = 0;
    bool ok = true;
    while (i < n && ok) {
      if (n - i >= 10 && !memcmp(s + i, "<no value>", 10)) {
        ok = ct_buf_append_str(&r, "<undefined>", &e) == CT_OK;
        i += 10;
      } else
        ok = ct_buf_append(&r, s + i++, 1, &e) == CT_OK;
    }
    *out = ok ? rv_str(A, r.len ? (const char *)r.data : "", r.len) : NULL;
    ct_buf_free(&r);
    if (!*out) st = ok ? rg_bi_oom(ev) : rg_bi_fail(ev, "%s: output too large", fname);
  }
  ct_buf_free(&x->out);
  free(x);
  return st;
}

const rg_builtin rg_builtins_tmpl[] = {
    {"strings.render_template", 2, rego__bi_render_template, false},
    {NULL, 0, NULL, false},
};
