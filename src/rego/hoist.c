/*
 * hoist.c - the operands OPA evaluates before a negation.
 *
 * `not expr` is true when expr has no solution, but OPA's compiler first moves parts of expr
 * into ordinary expressions placed before the negation, so when one of those parts is undefined
 * the whole body fails instead of the negation succeeding:
 *
 *   - a call nested in an operand (`not count(input.x) == 1`, `not input.x + 1 == 2`) is bound
 *     to a new variable first (OPA's RewriteExprTerms); so is a composite or comprehension used
 *     as the head of a ref (`not [input.x][0] == 1`). Variables in these calls may bind, like in
 *     any other expression (`not count(input.xs[_]) == 1` iterates);
 *   - an argument of a call that is a ref (`input.x`, `data.p.r`, a rule, `local.field`) or a
 *     composite holding refs is bound first (RewriteDynamicTerms): `not input.x in refs`,
 *     `not f(input.x)`, `not input.x != 1`, `not startswith(input.x, "a")`;
 *   - the operands of `=` (and of `==` in modules, which OPA rewrites to `=`, but not in
 *     queries) and a plain term stay inside the negation, only refs in their index positions
 *     are bound first: `not input.x == 1` and `not input.x.y` are true when input.x is undefined,
 *     `not input.a[input.k]` is undefined when input.k is.
 *
 * The moved expressions go to expr->pre of the `not` and the evaluator runs them, under the
 * same `with` modifiers, before negating the rest. Comprehensions are always defined, so moving
 * them would change nothing and they stay where they are. A module importing the `not` keyword
 * (future.keywords.not, future.keywords or rego.v2) gets OPA's newer rule instead: the negation
 * covers the whole expression, operands included, so nothing moves there.
 */
#include <stdio.h>
#include <string.h>

#include "rego_int.h"

typedef struct {
  rg_arena *a;
  bool query;
  int *nslots;
  ct_err *err;
  const rg_expr *sub; /* the negated expression being rewritten */
  rg_expr **pre;
  size_t npre, cap;
} rego__hoister;

static CT_RESULT rego__oom(rego__hoister *h) {
  return ct_fail(h->err, CT_ENOMEM, "rego: out of memory while compiling");
}

/* Replaces *tp by a new variable, preceded by `variable = *tp`. */
static CT_RESULT rego__bind(rego__hoister *h, rg_term **tp) {
  rg_term *t = *tp;
  rg_term *v = rg_alloc(h->a, sizeof(rg_term));
  rg_expr *e = rg_alloc(h->a, sizeof(rg_expr));
  if (!v || !e) return rego__oom(h);
  CT_ENSURE(*h->nslots < (1 << 24), h->err, CT_ELIMIT, "rego: too many variables in a rule");
  v->kind = T_VAR;
  v->generated = true;
  v->name = "$hoisted";
  v->slot = (*h->nslots)++;
  v->host = -1;
  v->row = t->row;
  v->col = t->col;
  e->kind = E_UNIFY;
  e->row = t->row;
  e->col = t->col;
  e->a = v;
  e->b = t;
  e->with = h->sub->with;
  e->nwith = h->sub->nwith;
  if (h->npre == h->cap) {
    size_t nc = h->cap ? h->cap * 2 : 8;
    rg_expr **np = rg_alloc(h->a, nc * sizeof(rg_expr *));
    if (!np) return rego__oom(h);
    if (h->npre) memcpy(np, h->pre, h->npre * sizeof(rg_expr *));
    h->pre = np;
    h->cap = nc;
  }
  h->pre[h->npre++] = e;
  *tp = v;
  return CT_OK;
}

static bool rego__is_comp(const rg_term *t) {
  return t->kind == T_ACOMP || t->kind == T_SCOMP || t->kind == T_OCOMP;
}

/* Nested calls, and composite heads of refs (OPA's RewriteExprTerms). */
static CT_RESULT rego__expand(rego__hoister *h, rg_term **tp) {
  rg_term *t = *tp;
  if (!t || t->ground || t->generated) return CT_OK;
  switch (t->kind) {
    case T_CALL:
      for (size_t i = 0; i < t->n; i++) CT_GUARD(rego__expand(h, &t->elems[i]));
      /* print() produces no value to bind */
      if (t->bi && t->bi->arity < 0) return CT_OK;
      return rego__bind(h, tp);
    case T_REF: {
      for (size_t i = 0; i < t->n; i++) CT_GUARD(rego__expand(h, &t->elems[i]));
      rg_term *head = t->elems[0];
      if (!head->ground && (head->kind == T_ARR || head->kind == T_SET || head->kind == T_OBJ || rego__is_comp(head)))
        return rego__bind(h, &t->elems[0]);
      return CT_OK;
    }
    case T_ARR:
    case T_SET:
    case T_OBJ:
      for (size_t i = 0; i < t->n; i++) CT_GUARD(rego__expand(h, &t->elems[i]));
      return CT_OK;
    default: return CT_OK;
  }
}

/* An argument of a call: refs are bound whole, composites element by element
 * (OPA's rewriteDynamicsOne). */
static CT_RESULT rego__dyn_one(rego__hoister *h, rg_term **tp) {
  rg_term *t = *tp;
  if (!t || t->ground || t->generated) return CT_OK;
  switch (t->kind) {
    case T_REF:
      for (size_t i = 1; i < t->n; i++) CT_GUARD(rego__dyn_one(h, &t->elems[i]));
      return rego__bind(h, tp);
    case T_INPUT:
    case T_DATA: return rego__bind(h, tp);
    case T_ARR:
    case T_SET:
    case T_OBJ:
      for (size_t i = 0; i < t->n; i++) CT_GUARD(rego__dyn_one(h, &t->elems[i]));
      return CT_OK;
    default: return CT_OK;
  }
}

/* An operand of `=` or a term expression: a ref stays, its index positions are bound
 * (OPA's rewriteDynamicsInTerm). */
static CT_RESULT rego__dyn_in_term(rego__hoister *h, rg_term **tp) {
  rg_term *t = *tp;
  if (!t || t->ground || t->generated) return CT_OK;
  switch (t->kind) {
    case T_REF:
      for (size_t i = 1; i < t->n; i++) CT_GUARD(rego__dyn_one(h, &t->elems[i]));
      return CT_OK;
    case T_INPUT:
    case T_DATA:
    case T_ACOMP:
    case T_SCOMP:
    case T_OCOMP: return CT_OK;
    default: return rego__dyn_one(h, tp);
  }
}

static bool rego__is_equal(const rg_term *t) {
  return t->kind == T_CALL && t->bi && !t->fn && t->host < 0 && !strcmp(t->bi->name, "equal") && t->n == 2;
}

static CT_RESULT rego__negation(rego__hoister *h, rg_expr *e) {
  rg_expr *s = e->sub;
  if (!s || e->pre) return CT_OK;
  h->sub = s;
  h->pre = NULL;
  h->npre = h->cap = 0;
  size_t nbind = 0;
  if (s->kind == E_TERM && s->a->kind == T_CALL) {
    rg_term *call = s->a;
    for (size_t i = 0; i < call->n; i++) CT_GUARD(rego__expand(h, &call->elems[i]));
    nbind = h->npre;
    if (!h->query && rego__is_equal(call)) {
      CT_GUARD(rego__dyn_in_term(h, &call->elems[0]));
      CT_GUARD(rego__dyn_in_term(h, &call->elems[1]));
    } else {
      for (size_t i = 0; i < call->n; i++) CT_GUARD(rego__dyn_one(h, &call->elems[i]));
    }
  } else if (s->kind == E_TERM) {
    CT_GUARD(rego__expand(h, &s->a));
    nbind = h->npre;
    CT_GUARD(rego__dyn_in_term(h, &s->a));
  } else if (s->kind == E_UNIFY) {
    CT_GUARD(rego__expand(h, &s->a));
    CT_GUARD(rego__expand(h, &s->b));
    nbind = h->npre;
    CT_GUARD(rego__dyn_in_term(h, &s->a));
    CT_GUARD(rego__dyn_in_term(h, &s->b));
  }
  if (!h->npre) return CT_OK;
  rg_body *pre = rg_alloc(h->a, sizeof(rg_body));
  if (!pre) return rego__oom(h);
  pre->e = h->pre;
  pre->n = h->npre;
  e->pre = pre;
  e->npre_bind = nbind;
  return CT_OK;
}

static CT_RESULT rego__body(rego__hoister *h, rg_body *b);

/* Comprehensions anywhere in a term have bodies of their own. */
static CT_RESULT rego__term(rego__hoister *h, rg_term *t) {
  if (!t || t->ground) return CT_OK;
  if (rego__is_comp(t) && t->body) CT_GUARD(rego__body(h, t->body));
  for (size_t i = 0; i < t->n; i++) CT_GUARD(rego__term(h, t->elems[i]));
  return CT_OK;
}

static CT_RESULT rego__expr(rego__hoister *h, rg_expr *e) {
  if (e->kind == E_NOT) CT_GUARD(rego__negation(h, e));
  CT_GUARD(rego__term(h, e->a));
  CT_GUARD(rego__term(h, e->b));
  CT_GUARD(rego__term(h, e->c));
  for (size_t i = 0; i < e->nwith; i++) CT_GUARD(rego__term(h, e->with[i].value));
  if (e->sub) CT_GUARD(rego__expr(h, e->sub));
  if (e->pre)
    for (size_t i = 0; i < e->pre->n; i++) CT_GUARD(rego__term(h, e->pre->e[i]->b));
  if (e->body) CT_GUARD(rego__body(h, e->body));
  for (size_t i = 0; i < e->nops; i++) CT_GUARD(rego__body(h, e->ops[i]));
  return CT_OK;
}

static CT_RESULT rego__body(rego__hoister *h, rg_body *b) {
  for (size_t i = 0; b && i < b->n; i++) CT_GUARD(rego__expr(h, b->e[i]));
  return CT_OK;
}

CT_RESULT rg_hoist_body(rg_arena *a, rg_body *b, bool query, int *nslots, ct_err *err) {
  rego__hoister h = {.a = a, .query = query, .nslots = nslots, .err = err};
  return rego__body(&h, b);
}

CT_RESULT rg_hoist_rule(rg_arena *a, rg_rule *r, int *nslots, ct_err *err) {
  /* with the `not` keyword of future.keywords (or rego.v2) a negation covers its operands */
  if (r->mod && r->mod->not_body) return CT_OK;
  rego__hoister h = {.a = a, .nslots = nslots, .err = err};
  for (rg_rule *x = r; x; x = x->els) {
    CT_GUARD(rego__term(&h, x->key));
    CT_GUARD(rego__term(&h, x->value));
    CT_GUARD(rego__body(&h, x->body));
  }
  return CT_OK;
}
