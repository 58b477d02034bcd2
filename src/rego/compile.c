/*
 * compile.c - builds the rule tree from parsed modules, resolves names (locals, rules, imports,
 * input/data, built-ins, host functions), assigns variable slots, folds constants and checks
 * the static properties OPA reports at compile time.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rego_int.h"

typedef struct rc_scope rc_scope;
struct rc_scope {
  rc_scope *parent;
  const char **names;
  int *slots;
  bool *decl; /* introduced by := or some */
  size_t n, cap;
};

typedef struct {
  const rego_policy *p;
  rg_arena *a;
  rg_module *mod; /* NULL for queries */
  rg_node *pkg;
  int nslots;
  ct_err *err;
  const char *file;
  const char ***slotnames;
  int *uses;          /* references per slot */
  size_t cap_uses;
  rg_term **decls;    /* vars declared by some / every (must be used) */
  size_t ndecls, cap_decls;
  bool *reads_input;  /* set when a term refers to `input` (the policy's or the query's flag) */
} rc_ctx;

static void rego__note_use(rc_ctx *c, int slot) {
  if ((size_t)slot >= c->cap_uses) {
    size_t nc = c->cap_uses ? c->cap_uses * 2 : 64;
    while (nc <= (size_t)slot) nc *= 2;
    int *nu = rg_alloc(c->a, nc * sizeof(int));
    if (!nu) return;
    if (c->cap_uses) memcpy(nu, c->uses, c->cap_uses * sizeof(int));
    c->uses = nu;
    c->cap_uses = nc;
  }
  c->uses[slot]++;
}

static void rego__note_decl(rc_ctx *c, rg_term *t) {
  if (!t || t->kind != T_VAR || t->wildcard) return;
  if (c->ndecls == c->cap_decls) {
    size_t nc = c->cap_decls ? c->cap_decls * 2 : 16;
    rg_term **nd = rg_alloc(c->a, nc * sizeof(rg_term *));
    if (!nd) return;
    if (c->ndecls) memcpy(nd, c->decls, c->ndecls * sizeof(rg_term *));
    c->decls = nd;
    c->cap_decls = nc;
  }
  c->decls[c->ndecls++] = t;
}

static void rego__note_decl_pattern(rc_ctx *c, rg_term *t) {
  if (!t) return;
  if (t->kind == T_VAR) rego__note_decl(c, t);
  else if (t->kind == T_ARR || t->kind == T_OBJ)
    for (size_t i = 0; i < t->n; i++)
      if (t->kind == T_ARR || i % 2) rego__note_decl_pattern(c, t->elems[i]);
}

static CT_RESULT rego__rc_fail(rc_ctx *c, const char *code, int row, int col, const char *fmt, ...) CT_PRINTF(5, 6);
static CT_RESULT rego__rc_fail(rc_ctx *c, const char *code, int row, int col, const char *fmt, ...) {
  char msg[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return ct_fail(c->err, CT_EINVAL, "%s: %s:%d:%d: %s", code, c->file, row, col, msg);
}
#define RC_OOM(c) ct_fail((c)->err, CT_ENOMEM, "rego: out of memory while compiling")

/* ---------------------------------------------------------------- rule tree */
/* Children are kept sorted by name (node_get), so lookups bisect. */
rg_node *rg_node_child(const rg_node *n, const char *name) {
  size_t lo = 0, hi = n->nkids;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(n->kids[mid]->name, name);
    if (!c) return n->kids[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

static rg_node *rego__node_get(rego_policy *p, rg_node *n, const char *name) {
  rg_node *k = rg_node_child(n, name);
  if (k) return k;
  k = rg_alloc(&p->arena, sizeof(rg_node));
  if (!k) return NULL;
  k->name = name;
  k->parent = n;
  k->kind = -1;
  k->id = p->nnodes++;
  rg_node **nk = rg_alloc(&p->arena, (n->nkids + 1) * sizeof(rg_node *));
  if (!nk) return NULL;
  /* keep children sorted by name so enumeration follows OPA's key order */
  size_t pos = 0;
  while (pos < n->nkids && strcmp(n->kids[pos]->name, name) < 0) pos++;
  if (pos) memcpy(nk, n->kids, pos * sizeof(rg_node *));
  nk[pos] = k;
  if (n->nkids > pos) memcpy(nk + pos + 1, n->kids + pos, (n->nkids - pos) * sizeof(rg_node *));
  n->kids = nk;
  n->nkids++;
  return k;
}

/* ---------------------------------------------------------------- scopes */
static int rego__scope_find(rc_scope *s, const char *name, rc_scope **where) {
  for (; s; s = s->parent)
    for (size_t i = 0; i < s->n; i++)
      if (!strcmp(s->names[i], name)) {
        if (where) *where = s;
        return s->slots[i];
      }
  return -1;
}

static CT_RESULT rego__scope_add(rc_ctx *c, rc_scope *s, const char *name, bool decl, int *slot) {
  if (s->n == s->cap) {
    size_t nc = s->cap ? s->cap * 2 : 16;
    const char **nn = rg_alloc(c->a, nc * sizeof(char *));
    int *ns = rg_alloc(c->a, nc * sizeof(int));
    bool *nd = rg_alloc(c->a, nc * sizeof(bool));
    if (!nn || !ns || !nd) return RC_OOM(c);
    if (s->n) {
      memcpy(nn, s->names, s->n * sizeof(char *));
      memcpy(ns, s->slots, s->n * sizeof(int));
      memcpy(nd, s->decl, s->n * sizeof(bool));
    }
    s->names = nn;
    s->slots = ns;
    s->decl = nd;
    s->cap = nc;
  }
  s->names[s->n] = name;
  s->slots[s->n] = c->nslots++;
  s->decl[s->n] = decl;
  *slot = s->slots[s->n];
  s->n++;
  return CT_OK;
}

static const rg_import *rego__find_import(rc_ctx *c, const char *name) {
  if (!c->mod) return NULL;
  for (size_t i = 0; i < c->mod->nimports; i++) {
    const rg_import *im = &c->mod->imports[i];
    if (im->alias && !strcmp(im->alias, name)) {
      rg_term *root = im->path->kind == T_REF ? im->path->elems[0] : im->path;
      if (root->kind == T_VAR && (!strcmp(root->name, "future") || !strcmp(root->name, "rego"))) continue;
      return im;
    }
  }
  return NULL;
}

static bool rego__is_global(rc_ctx *c, const char *name) {
  if (!strcmp(name, "input") || !strcmp(name, "data")) return true;
  if (rego__find_import(c, name)) return true;
  if (c->pkg && rg_node_child(c->pkg, name)) return true;
  return false;
}

/* ---------------------------------------------------------------- pass 1: declare */
static CT_RESULT rego__declare_pattern_vars(rc_ctx *c, rc_scope *s, rg_term *t, bool decl);

static CT_RESULT rego__declare_term(rc_ctx *c, rc_scope *s, rg_term *t) {
  if (!t) return CT_OK;
  switch (t->kind) {
    case T_VAR:
      if (rego__scope_find(s, t->name, NULL) >= 0 || rego__is_global(c, t->name)) return CT_OK;
      {
        int slot;
        return rego__scope_add(c, s, t->name, false, &slot);
      }
    case T_ACOMP:
    case T_SCOMP:
    case T_OCOMP:
      return CT_OK; /* own scope */
    case T_CALL:
      for (size_t i = 0; i < t->n; i++) CT_GUARD(rego__declare_term(c, s, t->elems[i]));
      return CT_OK;
    default:
      for (size_t i = 0; i < t->n; i++) CT_GUARD(rego__declare_term(c, s, t->elems[i]));
      return CT_OK;
  }
}

static CT_RESULT rego__declare_pattern_vars(rc_ctx *c, rc_scope *s, rg_term *t, bool decl) {
  if (!t) return CT_OK;
  if (t->kind == T_VAR) {
    rc_scope *where = NULL;
    if (rego__scope_find(s, t->name, &where) >= 0 && where == s) {
      if (decl) {
        for (size_t i = 0; i < s->n; i++)
          if (!strcmp(s->names[i], t->name) && s->decl[i] && !t->wildcard)
            return rego__rc_fail(c, "rego_compile_error", t->row, t->col, "var %s assigned above", t->name);
        /* became declared */
        for (size_t i = 0; i < s->n; i++)
          if (!strcmp(s->names[i], t->name)) s->decl[i] = true;
      }
      return CT_OK;
    }
    int slot;
    return rego__scope_add(c, s, t->name, decl, &slot);
  }
  if (t->kind == T_ARR || t->kind == T_OBJ) {
    for (size_t i = 0; i < t->n; i++) {
      if (t->kind == T_OBJ && i % 2 == 0) continue;
      CT_GUARD(rego__declare_pattern_vars(c, s, t->elems[i], decl));
    }
    return CT_OK;
  }
  return CT_OK;
}

static CT_RESULT rego__declare_expr(rc_ctx *c, rc_scope *s, rg_expr *e) {
  switch (e->kind) {
    case E_SOME:
      for (size_t i = 0; i < e->a->n; i++) {
        rg_term *v = e->a->elems[i];
        rc_scope *where = NULL;
        if (rego__scope_find(s, v->name, &where) >= 0 && where == s) continue;
        int slot;
        CT_GUARD(rego__scope_add(c, s, v->name, true, &slot));
      }
      return CT_OK;
    case E_SOMEIN:
      CT_GUARD(rego__declare_pattern_vars(c, s, e->a, true));
      CT_GUARD(rego__declare_pattern_vars(c, s, e->b, true));
      return rego__declare_term(c, s, e->c);
    case E_ASSIGN:
      if (e->a->kind != T_VAR && e->a->kind != T_ARR && e->a->kind != T_OBJ)
        return rego__rc_fail(c, "rego_parse_error", e->row, e->col, "cannot assign to %s",
                       e->a->kind == T_REF ? "ref" : e->a->kind == T_CALL ? "call" : "value");
      CT_GUARD(rego__declare_term(c, s, e->b));
      return rego__declare_pattern_vars(c, s, e->a, true);
    case E_UNIFY:
      CT_GUARD(rego__declare_term(c, s, e->a));
      return rego__declare_term(c, s, e->b);
    case E_TERM: return rego__declare_term(c, s, e->a);
    case E_NOT: return e->sub ? rego__declare_expr(c, s, e->sub) : CT_OK;
    case E_AND:
    case E_OR: return CT_OK;
    case E_EVERY: return rego__declare_term(c, s, e->c);
  }
  return CT_OK;
}

/* ---------------------------------------------------------------- pass 2: resolve */
static CT_RESULT rego__resolve_term(rc_ctx *c, rc_scope *s, rg_term **tp);
static CT_RESULT rego__resolve_body(rc_ctx *c, rc_scope *parent, rg_body *b, rc_scope **out_scope);

static rg_term *rego__data_ref(rc_ctx *c, const char **path, size_t n, int row, int col) {
  rg_term *r = rg_alloc(c->a, sizeof(rg_term));
  if (!r) return NULL;
  r->kind = T_REF;
  r->row = row;
  r->col = col;
  r->slot = -1;
  r->host = -1;
  r->n = n + 1;
  r->elems = rg_alloc(c->a, r->n * sizeof(rg_term *));
  rg_term *d = rg_alloc(c->a, sizeof(rg_term));
  if (!r->elems || !d) return NULL;
  d->kind = T_DATA;
  d->slot = -1;
  d->host = -1;
  d->row = row;
  d->col = col;
  r->elems[0] = d;
  for (size_t i = 0; i < n; i++) {
    rg_term *k = rg_alloc(c->a, sizeof(rg_term));
    if (!k) return NULL;
    k->kind = T_SCALAR;
    k->ground = true;
    k->slot = -1;
    k->host = -1;
    k->val = rv_cstr(c->a, path[i]);
    if (!k->val) return NULL;
    r->elems[i + 1] = k;
  }
  return r;
}

/* Copies a term tree shallowly enough that resolution can rewrite it per use site. */
static rg_term *rego__term_dup(rc_ctx *c, const rg_term *t) {
  rg_term *d = rg_alloc(c->a, sizeof(rg_term));
  if (!d) return NULL;
  *d = *t;
  if (t->n) {
    d->elems = rg_alloc(c->a, t->n * sizeof(rg_term *));
    if (!d->elems) return NULL;
    for (size_t i = 0; i < t->n; i++) {
      d->elems[i] = t->elems[i] ? rego__term_dup(c, t->elems[i]) : NULL;
      if (t->elems[i] && !d->elems[i]) return NULL;
    }
  }
  return d;
}

/* Resolves a bare name in value position. */
static CT_RESULT rego__resolve_var(rc_ctx *c, rc_scope *s, rg_term **tp) {
  rg_term *t = *tp;
  int slot = rego__scope_find(s, t->name, NULL);
  if (slot >= 0) {
    t->slot = slot;
    rego__note_use(c, slot);
    return CT_OK;
  }
  if (!strcmp(t->name, "input")) {
    t->kind = T_INPUT;
    *c->reads_input = true;
    return CT_OK;
  }
  if (!strcmp(t->name, "data")) {
    t->kind = T_DATA;
    return CT_OK;
  }
  const rg_import *im = rego__find_import(c, t->name);
  if (im) {
    rg_term *d = rego__term_dup(c, im->path);
    if (!d) return RC_OOM(c);
    d->row = t->row;
    d->col = t->col;
    rc_scope empty = {0};
    *tp = d;
    return rego__resolve_term(c, &empty, tp);
  }
  if (c->pkg && rg_node_child(c->pkg, t->name)) {
    const char *path[64];
    size_t n = 0;
    for (size_t i = 0; c->mod && i < c->mod->npkgpath && n < 62; i++) {
      if (i == 0 && !strcmp(c->mod->pkgpath[0], "data")) continue;
      path[n++] = c->mod->pkgpath[i];
    }
    path[n++] = t->name;
    rg_term *r = rego__data_ref(c, path, n, t->row, t->col);
    if (!r) return RC_OOM(c);
    *tp = r;
    return CT_OK;
  }
  /* not declared in pass 1: declare in the innermost scope (e.g. head-only vars) */
  CT_GUARD(rego__scope_add(c, s, t->name, false, &slot));
  t->slot = slot;
  rego__note_use(c, slot);
  return CT_OK;
}

static CT_RESULT rego__resolve_call(rc_ctx *c, rc_scope *s, rg_term *t) {
  for (size_t i = 0; i < t->n; i++) CT_GUARD(rego__resolve_term(c, s, &t->elems[i]));
  if (!t->fnref) {
    /* operator call (equal, plus, internal.member_2, ...) */
    t->bi = rg_builtin_find(t->name);
    if (!t->bi) return rego__rc_fail(c, "rego_type_error", t->row, t->col, "undefined function %s", t->name);
    return CT_OK;
  }
  rg_term *fr = t->fnref;
  rg_term *head = fr->elems[0];
  /* local variable callee? */
  if (head->kind == T_VAR && rego__scope_find(s, head->name, NULL) >= 0 && fr->n == 1 && !rg_builtin_find(t->name))
    return rego__rc_fail(c, "rego_type_error", t->row, t->col, "undefined function %s", t->name);
  /* Resolve to a node: package rules, imports, data refs. */
  const char *path[128];
  size_t n = 0;
  rg_node *node = NULL;
  bool via_data = false;
  if (head->kind == T_VAR && !strcmp(head->name, "data")) {
    via_data = true;
  } else if (head->kind == T_VAR && rego__find_import(c, head->name)) {
    const rg_import *im = rego__find_import(c, head->name);
    rg_term *ip = im->path;
    rg_term *root = ip->kind == T_REF ? ip->elems[0] : ip;
    if (root->kind == T_VAR && !strcmp(root->name, "data")) {
      via_data = true;
      for (size_t i = 1; ip->kind == T_REF && i < ip->n && n < 120; i++)
        path[n++] = ip->elems[i]->val->u.s;
    }
  } else if (head->kind == T_VAR && c->pkg && rg_node_child(c->pkg, head->name)) {
    via_data = true;
    for (size_t i = 0; c->mod && i < c->mod->npkgpath && n < 120; i++) {
      if (i == 0 && !strcmp(c->mod->pkgpath[0], "data")) continue;
      path[n++] = c->mod->pkgpath[i];
    }
    path[n++] = head->name;
  }
  if (via_data) {
    for (size_t i = 1; i < fr->n && n < 127; i++) path[n++] = fr->elems[i]->val->u.s;
    node = c->p->root;
    for (size_t i = 0; node && i < n; i++) node = rg_node_child(node, path[i]);
    if (node && node->kind == R_FUNC) {
      t->fn = node;
      return CT_OK;
    }
    if (node && node->kind >= 0)
      return rego__rc_fail(c, "rego_type_error", t->row, t->col, "%s is not a function", t->name);
  }
  t->bi = rg_builtin_find(t->name);
  if (t->bi) return CT_OK;
  for (size_t i = 0; i < c->p->nhost; i++)
    if (!strcmp(c->p->host[i].name, t->name)) {
      t->host = (int)i;
      return CT_OK;
    }
  return rego__rc_fail(c, "rego_type_error", t->row, t->col, "undefined function %s", t->name);
}

static void rego__fold_ground(rc_ctx *c, rg_term *t) {
  if (t->kind == T_SCALAR) {
    t->ground = true;
    return;
  }
  if (t->kind != T_ARR && t->kind != T_SET && t->kind != T_OBJ) return;
  for (size_t i = 0; i < t->n; i++)
    if (!t->elems[i]->ground) return;
  rv **vs = rg_alloc(c->a, (t->n + 1) * sizeof(rv *));
  if (!vs) return;
  for (size_t i = 0; i < t->n; i++) vs[i] = t->elems[i]->val;
  rv *v = NULL;
  if (t->kind == T_ARR) v = rv_arr(c->a, vs, t->n);
  else if (t->kind == T_SET) v = rv_set(c->a, vs, t->n);
  else {
    rv **ks = rg_alloc(c->a, (t->n / 2 + 1) * sizeof(rv *)), **vv = rg_alloc(c->a, (t->n / 2 + 1) * sizeof(rv *));
    if (!ks || !vv) return;
    for (size_t i = 0; i < t->n / 2; i++) {
      ks[i] = vs[2 * i];
      vv[i] = vs[2 * i + 1];
    }
    bool conflict;
    v = rv_obj(c->a, ks, vv, t->n / 2, &conflict);
  }
  if (v) {
    t->val = v;
    t->ground = true;
  }
}

static CT_RESULT rego__resolve_comp(rc_ctx *c, rc_scope *s, rg_term *t) {
  rc_scope *inner = NULL;
  CT_GUARD(rego__resolve_body(c, s, t->body, &inner));
  for (size_t i = 0; i < t->n; i++) CT_GUARD(rego__resolve_term(c, inner, &t->elems[i]));
  return CT_OK;
}

static CT_RESULT rego__resolve_term(rc_ctx *c, rc_scope *s, rg_term **tp) {
  rg_term *t = *tp;
  switch (t->kind) {
    case T_SCALAR: return CT_OK;
    case T_VAR: return rego__resolve_var(c, s, tp);
    case T_REF: {
      CT_GUARD(rego__resolve_term(c, s, &t->elems[0]));
      for (size_t i = 1; i < t->n; i++) CT_GUARD(rego__resolve_term(c, s, &t->elems[i]));
      rg_term *h = t->elems[0];
      if (h->kind == T_REF) {
        /* flatten a ref whose head resolved to a ref (rule or import) */
        rg_term **ne = rg_alloc(c->a, (h->n + t->n - 1) * sizeof(rg_term *));
        if (!ne) return RC_OOM(c);
        memcpy(ne, h->elems, h->n * sizeof(rg_term *));
        memcpy(ne + h->n, t->elems + 1, (t->n - 1) * sizeof(rg_term *));
        t->elems = ne;
        t->n = h->n + t->n - 1;
      }
      return CT_OK;
    }
    case T_ARR:
    case T_SET:
    case T_OBJ:
      for (size_t i = 0; i < t->n; i++) CT_GUARD(rego__resolve_term(c, s, &t->elems[i]));
      rego__fold_ground(c, t);
      return CT_OK;
    case T_ACOMP:
    case T_SCOMP:
    case T_OCOMP: return rego__resolve_comp(c, s, t);
    case T_CALL: return rego__resolve_call(c, s, t);
    case T_TMPL:
      for (size_t i = 0; i < t->n; i++) CT_GUARD(rego__resolve_term(c, s, &t->elems[i]));
      return CT_OK;
    default: return CT_OK;
  }
}

/* `with f as g`: when the value names a function (built-in or user), it becomes a call term
 * without arguments that the evaluator uses as the replacement. */
static CT_RESULT rego__resolve_with_fn_value(rc_ctx *c, rc_scope *s, rg_with *w, bool *done) {
  *done = false;
  rg_term *v = w->value;
  rg_term *head = v->kind == T_REF ? v->elems[0] : v;
  if (head->kind != T_VAR || rego__scope_find(s, head->name, NULL) >= 0) return CT_OK;
  char name[256] = "";
  size_t n = v->kind == T_REF ? v->n : 1;
  for (size_t i = 0; i < n; i++) {
    rg_term *e = v->kind == T_REF ? v->elems[i] : v;
    const char *seg = e->kind == T_VAR ? e->name : (e->kind == T_SCALAR && e->val->t == RV_STR) ? e->val->u.s : NULL;
    if (!seg) return CT_OK;
    if (i) strncat(name, ".", sizeof(name) - strlen(name) - 1);
    strncat(name, seg, sizeof(name) - strlen(name) - 1);
  }
  rg_term *call = rg_alloc(c->a, sizeof(rg_term));
  if (!call) return RC_OOM(c);
  call->kind = T_CALL;
  call->row = v->row;
  call->col = v->col;
  call->slot = -1;
  call->host = -1;
  call->name = rg_strndup(c->a, name, strlen(name));
  if (!call->name) return RC_OOM(c);
  if (v->kind == T_REF) call->fnref = v;
  else {
    rg_term *fr = rg_alloc(c->a, sizeof(rg_term));
    if (!fr) return RC_OOM(c);
    fr->kind = T_REF;
    fr->n = 1;
    fr->elems = rg_alloc(c->a, sizeof(rg_term *));
    if (!fr->elems) return RC_OOM(c);
    fr->elems[0] = v;
    call->fnref = fr;
  }
  ct_err saved = *c->err;
  if (rego__resolve_call(c, s, call) != CT_OK) {
    *c->err = saved;
    return CT_OK; /* not a function: an ordinary value */
  }
  w->value = call;
  *done = true;
  return CT_OK;
}

static CT_RESULT rego__resolve_with(rc_ctx *c, rc_scope *s, rg_with *w) {
  bool done = false;
  if (w->value->kind == T_VAR || w->value->kind == T_REF) CT_GUARD(rego__resolve_with_fn_value(c, s, w, &done));
  if (!done) CT_GUARD(rego__resolve_term(c, s, &w->value));
  rg_term *t = w->target;
  rg_term *head = t->kind == T_REF ? t->elems[0] : t;
  if (head->kind != T_VAR)
    return rego__rc_fail(c, "rego_type_error", t->row, t->col, "with keyword target must reference existing input, data, or a function");
  if (!strcmp(head->name, "input") || !strcmp(head->name, "data")) {
    head->kind = !strcmp(head->name, "input") ? T_INPUT : T_DATA;
    if (head->kind == T_INPUT) *c->reads_input = true;
    for (size_t i = 1; t->kind == T_REF && i < t->n; i++) CT_GUARD(rego__resolve_term(c, s, &t->elems[i]));
    return CT_OK;
  }
  /* a function (built-in or user) or a rule via package name */
  rg_term *call = rg_alloc(c->a, sizeof(rg_term));
  if (!call) return RC_OOM(c);
  call->kind = T_CALL;
  call->row = t->row;
  call->col = t->col;
  call->slot = -1;
  call->host = -1;
  /* build dotted name */
  char name[256] = "";
  size_t n = t->kind == T_REF ? t->n : 1;
  for (size_t i = 0; i < n; i++) {
    rg_term *e = t->kind == T_REF ? t->elems[i] : t;
    const char *seg = e->kind == T_VAR ? e->name : (e->kind == T_SCALAR && e->val->t == RV_STR) ? e->val->u.s : NULL;
    if (!seg) return rego__rc_fail(c, "rego_type_error", t->row, t->col, "invalid with target");
    if (i) strncat(name, ".", sizeof(name) - strlen(name) - 1);
    strncat(name, seg, sizeof(name) - strlen(name) - 1);
  }
  call->name = rg_strndup(c->a, name, strlen(name));
  if (!call->name) return RC_OOM(c);
  if (t->kind == T_REF) call->fnref = t;
  else {
    rg_term *fr = rg_alloc(c->a, sizeof(rg_term));
    if (!fr) return RC_OOM(c);
    fr->kind = T_REF;
    fr->n = 1;
    fr->elems = rg_alloc(c->a, sizeof(rg_term *));
    if (!fr->elems) return RC_OOM(c);
    fr->elems[0] = t;
    call->fnref = fr;
  }
  /* a rule (non-function) in the package: treat as data ref */
  if (head && c->pkg && rg_node_child(c->pkg, head->name)) {
    rg_node *nd = rg_node_child(c->pkg, head->name);
    for (size_t i = 1; nd && t->kind == T_REF && i < t->n; i++)
      nd = t->elems[i]->kind == T_SCALAR && t->elems[i]->val->t == RV_STR ? rg_node_child(nd, t->elems[i]->val->u.s) : NULL;
    if (nd && nd->kind != R_FUNC) {
      rg_term *tt = t;
      CT_GUARD(rego__resolve_term(c, s, &tt));
      w->target = tt;
      return CT_OK;
    }
  }
  ct_status st = rego__resolve_call(c, s, call);
  if (st) return st;
  w->target = call;
  return CT_OK;
}

static CT_RESULT rego__resolve_expr(rc_ctx *c, rc_scope *s, rg_expr *e) {
  for (size_t i = 0; i < e->nwith; i++) CT_GUARD(rego__resolve_with(c, s, &e->with[i]));
  switch (e->kind) {
    case E_SOME:
      for (size_t i = 0; i < e->a->n; i++) {
        rego__note_decl(c, e->a->elems[i]);
        CT_GUARD(rego__resolve_term(c, s, &e->a->elems[i]));
      }
      return CT_OK;
    case E_SOMEIN:
      if (e->a) CT_GUARD(rego__resolve_term(c, s, &e->a));
      CT_GUARD(rego__resolve_term(c, s, &e->b));
      return rego__resolve_term(c, s, &e->c);
    case E_ASSIGN:
    case E_UNIFY:
      CT_GUARD(rego__resolve_term(c, s, &e->a));
      return rego__resolve_term(c, s, &e->b);
    case E_TERM: return rego__resolve_term(c, s, &e->a);
    case E_NOT:
      if (e->sub) return rego__resolve_expr(c, s, e->sub);
      return rego__resolve_body(c, s, e->body, NULL);
    case E_AND:
    case E_OR:
      for (size_t i = 0; i < e->nops; i++) CT_GUARD(rego__resolve_body(c, s, e->ops[i], NULL));
      return CT_OK;
    case E_EVERY: {
      CT_GUARD(rego__resolve_term(c, s, &e->c));
      rc_scope *inner = rg_alloc(c->a, sizeof(rc_scope));
      if (!inner) return RC_OOM(c);
      inner->parent = s;
      int slot;
      if (e->a) {
        if (e->a->kind != T_VAR) return rego__rc_fail(c, "rego_parse_error", e->row, e->col, "every key must be a variable");
        CT_GUARD(rego__scope_add(c, inner, e->a->name, true, &slot));
      }
      CT_GUARD(rego__declare_pattern_vars(c, inner, e->b, true));
      rego__note_decl(c, e->a);
      rego__note_decl_pattern(c, e->b);
      if (e->a) CT_GUARD(rego__resolve_term(c, inner, &e->a));
      CT_GUARD(rego__resolve_term(c, inner, &e->b));
      for (size_t i = 0; i < e->body->n; i++) CT_GUARD(rego__declare_expr(c, inner, e->body->e[i]));
      for (size_t i = 0; i < e->body->n; i++) CT_GUARD(rego__resolve_expr(c, inner, e->body->e[i]));
      return CT_OK;
    }
  }
  return CT_OK;
}

static CT_RESULT rego__resolve_body(rc_ctx *c, rc_scope *parent, rg_body *b, rc_scope **out_scope) {
  rc_scope *s = rg_alloc(c->a, sizeof(rc_scope));
  if (!s) return RC_OOM(c);
  s->parent = parent;
  for (size_t i = 0; i < b->n; i++) CT_GUARD(rego__declare_expr(c, s, b->e[i]));
  for (size_t i = 0; i < b->n; i++) CT_GUARD(rego__resolve_expr(c, s, b->e[i]));
  if (out_scope) *out_scope = s;
  return CT_OK;
}

/* ---------------------------------------------------------------- safety reordering */
/* Like OPA, expressions of a body are reordered so that each runs after the expressions that
 * bind its input variables ("x > 1; x := 2" evaluates the assignment first). An expression keeps
 * its place when its inputs are bound; a body whose inputs can never be bound is left for the
 * evaluator, which reports rego_unsafe_var_error. */
typedef struct {
  uint8_t *in, *out; /* per-slot flags */
  int n;
  bool negated; /* inside `not`, where `_` can never be bound either */
} varsets;

static void rego__vs_mark(uint8_t *set, const varsets *v, const rg_term *t) {
  if (t->slot >= 0 && t->slot < v->n && !t->generated && (!t->wildcard || v->negated)) set[t->slot] = 1;
}

static void rego__collect_vars(const rg_term *t, bool out_pos, varsets *v);
static void rego__collect_body_free(const rg_body *b, varsets *v);

static void rego__collect_vars(const rg_term *t, bool out_pos, varsets *v) {
  if (!t || t->ground) return;
  switch (t->kind) {
    case T_VAR: rego__vs_mark(out_pos ? v->out : v->in, v, t); return;
    case T_ARR:
      for (size_t i = 0; i < t->n; i++) rego__collect_vars(t->elems[i], out_pos, v);
      return;
    case T_OBJ:
      for (size_t i = 0; i < t->n; i++) rego__collect_vars(t->elems[i], out_pos && (i % 2), v);
      return;
    case T_SET:
    case T_TMPL:
      for (size_t i = 0; i < t->n; i++) rego__collect_vars(t->elems[i], false, v);
      return;
    case T_REF:
      rego__collect_vars(t->elems[0], false, v);
      /* index positions enumerate: variables and patterns there are outputs */
      for (size_t i = 1; i < t->n; i++) rego__collect_vars(t->elems[i], true, v);
      return;
    case T_CALL: {
      long arity = t->fn ? (long)t->fn->arity : t->bi ? t->bi->arity : -1;
      for (size_t i = 0; i < t->n; i++)
        rego__collect_vars(t->elems[i], arity >= 0 && (long)i == arity, v);
      return;
    }
    case T_ACOMP:
    case T_SCOMP:
    case T_OCOMP: {
      /* free variables of a closure are inputs */
      varsets inner = {calloc((size_t)v->n + 1, 1), calloc((size_t)v->n + 1, 1), v->n, false};
      if (!inner.in || !inner.out) {
        free(inner.in);
        free(inner.out);
        return;
      }
      rego__collect_body_free(t->body, &inner);
      for (size_t i = 0; i < t->n; i++) rego__collect_vars(t->elems[i], false, &inner);
      for (int i = 0; i < v->n; i++)
        if (inner.in[i] && !inner.out[i]) v->in[i] = 1;
      free(inner.in);
      free(inner.out);
      return;
    }
    default: return;
  }
}

static void rego__collect_expr(const rg_expr *e, varsets *v) {
  for (size_t i = 0; i < e->nwith; i++) rego__collect_vars(e->with[i].value, false, v);
  switch (e->kind) {
    case E_TERM: rego__collect_vars(e->a, false, v); break;
    case E_UNIFY:
    case E_ASSIGN:
      rego__collect_vars(e->a, true, v);
      rego__collect_vars(e->b, true, v);
      break;
    case E_SOMEIN:
      rego__collect_vars(e->a, true, v);
      rego__collect_vars(e->b, true, v);
      rego__collect_vars(e->c, false, v);
      break;
    case E_EVERY: rego__collect_vars(e->c, false, v); break;
    case E_NOT:
      if (e->sub) {
        /* nested calls moved before the negation bind like any expression (hoist.c) */
        for (size_t i = 0; e->pre && i < e->npre_bind; i++) rego__collect_expr(e->pre->e[i], v);
        varsets inner = {calloc((size_t)v->n + 1, 1), calloc((size_t)v->n + 1, 1), v->n, true};
        if (inner.in && inner.out) {
          rego__collect_expr(e->sub, &inner);
          for (size_t i = e->npre_bind; e->pre && i < e->pre->n; i++) rego__collect_expr(e->pre->e[i], &inner);
          /* negation binds nothing: every variable it mentions must be bound before */
          for (int i = 0; i < v->n; i++)
            if (inner.in[i] || inner.out[i]) v->in[i] = 1;
        }
        free(inner.in);
        free(inner.out);
      }
      break;
    default: break;
  }
}

static void rego__collect_body_free(const rg_body *b, varsets *v) {
  for (size_t i = 0; i < b->n; i++) rego__collect_expr(b->e[i], v);
}

static void rego__reorder_body(rg_body *b, uint8_t *bound, int n);

static void rego__reorder_nested(rg_term *t, uint8_t *bound, int n) {
  if (!t || t->ground) return;
  if ((t->kind == T_ACOMP || t->kind == T_SCOMP || t->kind == T_OCOMP) && t->body) {
    uint8_t *copy = malloc((size_t)n + 1);
    if (copy) {
      memcpy(copy, bound, (size_t)n);
      rego__reorder_body(t->body, copy, n);
      free(copy);
    }
  }
  for (size_t i = 0; i < t->n; i++) rego__reorder_nested(t->elems[i], bound, n);
}

static const rg_term *rego__find_var_term(const rg_term *t, int slot) {
  if (!t) return NULL;
  if (t->kind == T_VAR && t->slot == slot) return t;
  for (size_t i = 0; i < t->n; i++) {
    const rg_term *r = rego__find_var_term(t->elems[i], slot);
    if (r) return r;
  }
  return NULL;
}

static const rg_term *rego__find_var(const rg_expr *e, int slot) {
  const rg_term *r = rego__find_var_term(e->a, slot);
  if (!r) r = rego__find_var_term(e->b, slot);
  if (!r) r = rego__find_var_term(e->c, slot);
  if (!r && e->sub) r = rego__find_var(e->sub, slot);
  for (size_t i = 0; !r && e->pre && i < e->pre->n; i++) r = rego__find_var(e->pre->e[i], slot);
  for (size_t i = 0; !r && i < e->nwith; i++) r = rego__find_var_term(e->with[i].value, slot);
  return r;
}

static void rego__reorder_body_ex(rg_body *b, uint8_t *bound, int n, const rg_term **report_unsafe);

static void rego__reorder_body(rg_body *b, uint8_t *bound, int n) { rego__reorder_body_ex(b, bound, n, NULL); }

static void rego__reorder_body_ex(rg_body *b, uint8_t *bound, int n, const rg_term **report_unsafe) {
  if (!b || b->n > 4096) return;
  size_t cnt = b->n;
  rg_expr **order = malloc(cnt * sizeof(rg_expr *));
  bool *placed = calloc(cnt, sizeof(bool));
  varsets *vs = calloc(cnt, sizeof(varsets));
  bool ok = order && placed && vs;
  for (size_t i = 0; ok && i < cnt; i++) {
    vs[i] = (varsets){calloc((size_t)n + 1, 1), calloc((size_t)n + 1, 1), n, false};
    if (!vs[i].in || !vs[i].out) ok = false;
    else rego__collect_expr(b->e[i], &vs[i]);
  }
  size_t w = 0;
  while (ok && w < cnt) {
    size_t pick = cnt;
    for (size_t i = 0; i < cnt && pick == cnt; i++) {
      if (placed[i]) continue;
      bool ready = true;
      /* a variable the expression binds itself (x == input.a[x]) is not an input */
      for (int k = 0; k < n && ready; k++)
        if (vs[i].in[k] && !vs[i].out[k] && !bound[k]) ready = false;
      if (ready) pick = i;
    }
    if (pick == cnt) {
      /* nothing is ready: keep the rest in written order (and remember the culprit) */
      for (size_t i = 0; i < cnt && report_unsafe && !*report_unsafe; i++) {
        if (placed[i]) continue;
        for (int k = 0; k < n && !*report_unsafe; k++)
          if (vs[i].in[k] && !vs[i].out[k] && !bound[k]) *report_unsafe = rego__find_var(b->e[i], k);
      }
      for (size_t i = 0; i < cnt; i++)
        if (!placed[i]) {
          placed[i] = true;
          order[w++] = b->e[i];
        }
      break;
    }
    placed[pick] = true;
    order[w++] = b->e[pick];
    rg_expr *e = b->e[pick];
    /* nested bodies see what is bound at this point */
    if (e->kind == E_TERM) rego__reorder_nested(e->a, bound, n);
    if (e->kind == E_UNIFY || e->kind == E_ASSIGN) {
      rego__reorder_nested(e->a, bound, n);
      rego__reorder_nested(e->b, bound, n);
    }
    for (int k = 0; k < n; k++)
      if (vs[pick].out[k]) bound[k] = 1;
  }
  if (ok && w == cnt) memcpy(b->e, order, cnt * sizeof(rg_expr *));
  for (size_t i = 0; vs && i < cnt; i++) {
    free(vs[i].in);
    free(vs[i].out);
  }
  free(vs);
  free(order);
  free(placed);
}

/* Reorders every body of the rule; *unsafe receives the first variable that can never be bound. */
static void rego__reorder_rule(rg_rule *r, const rg_term **unsafe) {
  int n = r->nslots;
  uint8_t *bound = calloc((size_t)n + 1, 1);
  if (!bound) return;
  for (rg_rule *x = r; x; x = x->els) {
    memset(bound, 0, (size_t)n);
    varsets args = {bound, calloc((size_t)n + 1, 1), n, false};
    if (!args.out) break;
    for (size_t i = 0; i < x->nargs; i++) {
      rego__collect_vars(x->args[i], true, &args);
      rego__collect_vars(x->args[i], false, &args);
    }
    for (int k = 0; k < n; k++)
      if (args.out[k]) bound[k] = 1;
    free(args.out);
    rego__reorder_body_ex(x->body, bound, n, *unsafe ? NULL : unsafe);
  }
  free(bound);
}

/* OPA rejects variables introduced by `some` / `every` that nothing else refers to. */
static CT_RESULT rego__check_unused(rc_ctx *c) {
  for (size_t i = 0; i < c->ndecls; i++) {
    rg_term *t = c->decls[i];
    if (t->slot >= 0 && (size_t)t->slot < c->cap_uses && c->uses[t->slot] <= 1)
      return rego__rc_fail(c, "rego_compile_error", t->row, t->col, "declared var %s unused", t->name);
  }
  return CT_OK;
}

static CT_RESULT rego__compile_rule(rc_ctx *c, rg_rule *r) {
  c->nslots = 0;
  c->ndecls = 0;
  if (c->cap_uses) memset(c->uses, 0, c->cap_uses * sizeof(int));
  c->file = r->file;
  rc_scope *s = rg_alloc(c->a, sizeof(rc_scope));
  if (!s) return RC_OOM(c);
  for (size_t i = 0; i < r->nargs; i++) CT_GUARD(rego__declare_pattern_vars(c, s, r->args[i], false));
  for (size_t i = 0; i < r->nargs; i++) CT_GUARD(rego__resolve_term(c, s, &r->args[i]));
  for (rg_rule *x = r; x; x = x->els) {
    /* the body shares the head's scope (head vars are bound by the body) */
    for (size_t i = 0; i < x->body->n; i++) CT_GUARD(rego__declare_expr(c, s, x->body->e[i]));
    for (size_t i = 0; i < x->body->n; i++) CT_GUARD(rego__resolve_expr(c, s, x->body->e[i]));
    if (x->key) CT_GUARD(rego__resolve_term(c, s, &x->key));
    if (x->value) CT_GUARD(rego__resolve_term(c, s, &x->value));
  }
  CT_GUARD(rg_hoist_rule(c->a, r, &c->nslots, c->err));
  for (rg_rule *x = r; x; x = x->els) x->nslots = c->nslots;
  CT_GUARD(rego__check_unused(c));
  const rg_term *unsafe = NULL;
  rego__reorder_rule(r, &unsafe);
  if (unsafe)
    return rego__rc_fail(c, "rego_unsafe_var_error", unsafe->row, unsafe->col, "var %s is unsafe",
                         unsafe->wildcard ? "_" : unsafe->name);
  if (r->is_default && r->value && !r->value->ground && r->value->kind != T_ACOMP && r->value->kind != T_SCOMP &&
      r->value->kind != T_OCOMP && r->value->kind != T_ARR && r->value->kind != T_OBJ && r->value->kind != T_SET &&
      r->value->kind != T_CALL)
    return rego__rc_fail(c, "rego_type_error", r->row, r->col, "default rule value cannot contain variables");
  return CT_OK;
}

/* ---------------------------------------------------------------- public */
static CT_RESULT rego__add_rule_to_tree(rego_policy *p, rg_module *m, rg_rule *r, ct_err *err) {
  rg_term *hp = (rg_term *)r->node;
  rg_node *n = p->root;
  for (size_t i = 0; i < m->npkgpath; i++) {
    if (i == 0 && !strcmp(m->pkgpath[0], "data")) continue;
    n = rego__node_get(p, n, m->pkgpath[i]);
    if (!n) return ct_fail(err, CT_ENOMEM, "rego: out of memory");
  }
  for (size_t i = 0; i < hp->n; i++) {
    rg_term *e = hp->elems[i];
    n = rego__node_get(p, n, i == 0 ? e->name : e->val->u.s);
    if (!n) return ct_fail(err, CT_ENOMEM, "rego: out of memory");
  }
  for (rg_rule *x = r; x; x = x->els) x->node = n;
  bool objlike = (n->kind == R_POBJ || n->kind == R_GENERAL) && (r->kind == R_POBJ || r->kind == R_GENERAL);
  if (objlike && n->kind != r->kind) n->kind = R_GENERAL;
  if (n->kind >= 0 && n->kind != r->kind && !objlike)
    return ct_fail(err, CT_EINVAL, "rego_type_error: %s:%d:%d: conflicting rules %s found", r->file, r->row, r->col,
                   n->name);
  if (r->kind == R_FUNC && n->kind == R_FUNC && n->arity != r->nargs)
    return ct_fail(err, CT_EINVAL, "rego_type_error: %s:%d:%d: conflicting rules %s found (arity)", r->file, r->row,
                   r->col, n->name);
  if (!objlike) n->kind = r->kind;
  n->arity = r->nargs;
  if (r->is_default) {
    if (n->dflt)
      return ct_fail(err, CT_EINVAL, "rego_type_error: %s:%d:%d: multiple default rules %s found", r->file, r->row,
                     r->col, n->name);
    n->dflt = r;
    return CT_OK;
  }
  rg_rule **nr = rg_alloc(&p->arena, (n->nrules + 1) * sizeof(rg_rule *));
  if (!nr) return ct_fail(err, CT_ENOMEM, "rego: out of memory");
  if (n->nrules) memcpy(nr, n->rules, n->nrules * sizeof(rg_rule *));
  nr[n->nrules++] = r;
  n->rules = nr;
  return CT_OK;
}

static rg_node *rego__pkg_node(rego_policy *p, rg_module *m) {
  rg_node *n = p->root;
  for (size_t i = 0; i < m->npkgpath; i++) {
    if (i == 0 && !strcmp(m->pkgpath[0], "data")) continue;
    n = rego__node_get(p, n, m->pkgpath[i]);
    if (!n) return NULL;
  }
  return n;
}

CT_RESULT rego_compile(const rego_module *modules, size_t n_modules, const rego_options *opts,
                       rego_policy **out, ct_err *err) {
  *out = NULL;
  CT_ENSURE(n_modules <= 10000, err, CT_ELIMIT, "rego: too many modules");
  rego_policy *p = calloc(1, sizeof(*p));
  CT_ENSURE(p, err, CT_ENOMEM, "rego: out of memory");
  pthread_mutex_init(&p->qlock, NULL);
  ct_status st = CT_OK;
  p->root = rg_alloc(&p->arena, sizeof(rg_node));
  p->mods = rg_alloc(&p->arena, (n_modules + 1) * sizeof(rg_module *));
  if (!p->root || !p->mods) {
    st = ct_fail(err, CT_ENOMEM, "rego: out of memory");
    goto fail;
  }
  p->root->kind = -1;
  p->root->name = "data";
  p->nnodes = 1;
  if (opts) {
    p->limits = opts->limits;
    if (opts->n_host_functions) {
      p->host = rg_alloc(&p->arena, opts->n_host_functions * sizeof(rego_host_function));
      if (!p->host) {
        st = ct_fail(err, CT_ENOMEM, "rego: out of memory");
        goto fail;
      }
      for (size_t i = 0; i < opts->n_host_functions; i++) {
        p->host[i] = opts->host_functions[i];
        p->host[i].name = rg_strndup(&p->arena, opts->host_functions[i].name, strlen(opts->host_functions[i].name));
        if (!p->host[i].name) {
          st = ct_fail(err, CT_ENOMEM, "rego: out of memory");
          goto fail;
        }
      }
      p->nhost = opts->n_host_functions;
    }
  }
  if (!p->limits.max_steps) p->limits.max_steps = 10000000;
  if (!p->limits.max_depth) p->limits.max_depth = 256;
  if (!p->limits.max_memory_bytes) p->limits.max_memory_bytes = 256u << 20;
  for (size_t i = 0; i < n_modules; i++) {
    CT_ENSURE_GOTO(st, modules[i].source, fail, err, CT_EINVAL, "rego: module %zu has no source", i);
    const char *fname = modules[i].name ? modules[i].name : "policy.rego";
    fname = rg_strndup(&p->arena, fname, strlen(fname));
    CT_ENSURE_GOTO(st, fname, fail, err, CT_ENOMEM, "rego: out of memory");
    CT_GUARD_GOTO(st, rg_parse_module(&p->arena, fname, modules[i].source, &p->mods[i], err), fail);
    p->nmods++;
  }
  for (size_t i = 0; i < p->nmods; i++) {
    rg_module *m = p->mods[i];
    CT_ENSURE_GOTO(st, rego__pkg_node(p, m), fail, err, CT_ENOMEM, "rego: out of memory");
    for (size_t j = 0; j < m->nrules; j++) CT_GUARD_GOTO(st, rego__add_rule_to_tree(p, m, m->rules[j], err), fail);
  }
  for (size_t i = 0; i < p->nmods; i++) {
    rg_module *m = p->mods[i];
    rc_ctx c = {.p = p, .a = &p->arena, .mod = m, .pkg = rego__pkg_node(p, m), .err = err, .file = m->file,
                .reads_input = &p->reads_input};
    for (size_t j = 0; j < m->nrules; j++) CT_GUARD_GOTO(st, rego__compile_rule(&c, m->rules[j]), fail);
  }
  *out = p;
  return CT_OK;
fail:
  rego_policy_free(p);
  return st;
}

void rg_qcache_free(rego_policy *p);

void rego_policy_free(rego_policy *p) {
  if (!p) return;
  rg_qcache_free(p);
  pthread_mutex_destroy(&p->qlock);
  rg_arena_free(&p->arena);
  free(p);
}

/* Query variable names are recorded so bindings can be reported. */
CT_RESULT rg_compile_query(const rego_policy *p, rg_arena *a, const char *query, rg_compiled_query *out,
                           ct_err *err) {
  memset(out, 0, sizeof(*out));
  CT_GUARD(rg_parse_query(a, query, &out->body, err));
  out->reads_input = false;
  rc_ctx c = {.p = p, .a = a, .err = err, .file = "query", .reads_input = &out->reads_input};
  rc_scope *s = NULL;
  CT_GUARD(rego__resolve_body(&c, NULL, out->body, &s));
  CT_GUARD(rg_hoist_body(a, out->body, true, &c.nslots, err));
  CT_GUARD(rego__check_unused(&c));
  /* query expressions are reordered too (bindings stay with their expressions) */
  {
    uint8_t *bound = calloc((size_t)c.nslots + 1, 1);
    if (bound) {
      rego__reorder_body(out->body, bound, c.nslots);
      free(bound);
    }
  }
  out->nslots = c.nslots;
  out->slotnames = rg_alloc(a, (size_t)(c.nslots + 1) * sizeof(char *));
  if (!out->slotnames) return ct_fail(err, CT_ENOMEM, "rego: out of memory");
  for (size_t i = 0; i < s->n; i++)
    if (s->names[i][0] != '$') out->slotnames[s->slots[i]] = s->names[i];
  return CT_OK;
}
