/*
 * eval.c - the top-down evaluator: continuation-passing search with unification, backtracking
 * through a binding trail, rule/function evaluation with per-evaluation caches, `with`, and the
 * public rego_eval / rego_query entry points.
 *
 * Every evaluation owns an arena (values, frames, caches) bounded by the policy's memory limit;
 * the compiled policy is only read, so concurrent evaluations are safe.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rego_int.h"

#define RG_HALT ((ct_status)99) /* internal: stop enumerating (not an error) */

typedef struct rk rk;
typedef CT_RESULT (*rk_fn)(rg_ev *ev, const rk *k, rv *v);
struct rk {
  rk_fn fn;
};
#define KCALL(ev, k, v) ((k)->fn((ev), (k), (v)))

typedef struct rg_override {
  const void *target; /* rg_builtin*, rg_node*, or host index + 1 cast */
  rg_term *repl;      /* function call term (T_CALL with no args) or value term */
  rv *value;          /* constant replacement */
  const void *repl_target;
  const rg_builtin *repl_bi;
  rg_node *repl_fn;
  int repl_host;
} rg_override;

typedef struct rg_dover {
  rv **path;
  size_t n;
  rv *value;
} rg_dover;

struct rg_ev {
  const rego_policy *p;
  rg_arena a;
  rv *input;
  rv *data;
  rv **slots;
  rv ***trail;
  size_t ntrail, captrail;
  rv **cache;
  uint8_t *cstate;
  size_t steps, depth;
  uintptr_t stack_floor; /* evaluation stops with eval_depth_limit_error below this address */
  ct_err *err;
  bool strict;
  int64_t now;
  rg_override *ov;
  size_t nov;
  rg_dover *dov;
  size_t ndov;
  rv **exprvals; /* query mode: value of each top-level expression */
  const rg_expr *capture; /* query mode: this expression's value is a result even when false */
  const char *file; /* module of the rule being evaluated (error locations) */
  const rg_body *qbody;
  const rg_node *watch;  /* rego_eval_decision: the rule whose deciding definition is recorded */
  rego_decision *why;
};

/* ---------------------------------------------------------------- errors */
static CT_RESULT rego__ev_fail(rg_ev *ev, const char *code, const char *file, int row, int col, const char *fmt, ...)
    CT_PRINTF(6, 7);
static CT_RESULT rego__ev_fail(rg_ev *ev, const char *code, const char *file, int row, int col, const char *fmt, ...) {
  char msg[360];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (file) return ct_fail(ev->err, CT_EINVAL, "%s: %s:%d:%d: %s", code, file, row, col, msg);
  return ct_fail(ev->err, CT_EINVAL, "%s: %s", code, msg);
}

static CT_RESULT rego__ev_oom(rg_ev *ev) {
  if (ev->a.exceeded)
    return ct_fail(ev->err, CT_ELIMIT, "eval_memory_limit_error: evaluation exceeded the memory limit of %zu bytes",
                   ev->p->limits.max_memory_bytes);
  return ct_fail(ev->err, CT_ENOMEM, "rego: out of memory");
}

rg_arena *rg_ev_arena(rg_ev *ev) { return &ev->a; }
int64_t rg_ev_now(rg_ev *ev) {
  if (!ev->now) {
    /* read once per evaluation, on first use, so every call sees the same instant */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ev->now = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
  }
  return ev->now;
}
CT_RESULT rg_bi_oom(rg_ev *ev) { return rego__ev_oom(ev); }

CT_RESULT rg_bi_fail(rg_ev *ev, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return ct_fail(ev->err, CT_EINVAL, "eval_builtin_error: %s", msg);
}

CT_RESULT rg_bi_type(rg_ev *ev, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return ct_fail(ev->err, CT_EINVAL, "eval_type_error: %s", msg);
}

const char *rg_type_name(const rv *v) {
  static const char *const names[] = {"null", "boolean", "number", "string", "array", "object", "set"};
  return names[v->t];
}

CT_RESULT rg_bi_want(rg_ev *ev, const char *name, int argn, rv *v, int type) {
  static const char *const names[] = {"null", "boolean", "number", "string", "array", "object", "set"};
  if (v->t == type) return CT_OK;
  return rg_bi_type(ev, "%s: operand %d must be %s but got %s", name, argn, names[type], rg_type_name(v));
}

/* ---------------------------------------------------------------- bindings */
static CT_RESULT rego__bind(rg_ev *ev, int slot, rv *v) {
  if (ev->ntrail == ev->captrail) {
    /* the trail lives in the arena: grow by doubling (the old block is simply abandoned) */
    size_t nc = ev->captrail ? ev->captrail * 2 : 128;
    rv ***nt = rg_alloc(&ev->a, nc * sizeof(rv **));
    if (!nt) return rego__ev_oom(ev);
    if (ev->ntrail) memcpy(nt, ev->trail, ev->ntrail * sizeof(rv **));
    ev->trail = nt;
    ev->captrail = nc;
  }
  ev->slots[slot] = v;
  ev->trail[ev->ntrail++] = &ev->slots[slot];
  return CT_OK;
}

static void rego__undo(rg_ev *ev, size_t mark) {
  while (ev->ntrail > mark) *ev->trail[--ev->ntrail] = NULL;
}

/* The evaluator passes continuations, so its stack grows with every conjunct, argument, element
 * and nested rule on the current proof path -- a policy's shape does not bound it. Instead each
 * thread's own stack is measured once and an evaluation stops with a clear error while a reserve
 * (1/8 of the stack, 64 KiB..1 MiB, for built-ins and libc) is still free. */
#define EVAL_STACK_FALLBACK ((uintptr_t)512 << 10) /* budget when the thread's stack is unknown */
static _Thread_local uintptr_t eval__tl_floor;
static uintptr_t rego__eval__stack_floor(void) {
  if (eval__tl_floor) return eval__tl_floor;
  uintptr_t here = (uintptr_t)__builtin_frame_address(0), floor = 0;
  pthread_attr_t at;
  if (pthread_getattr_np(pthread_self(), &at) == 0) {
    void *lo = NULL;
    size_t sz = 0;
    if (pthread_attr_getstack(&at, &lo, &sz) == 0 && here > (uintptr_t)lo && here - (uintptr_t)lo <= sz) {
      size_t reserve = sz / 8;
      if (reserve < ((size_t)64 << 10)) reserve = (size_t)64 << 10;
      if (reserve > ((size_t)1 << 20)) reserve = (size_t)1 << 20;
      if ((uintptr_t)lo + reserve < here) floor = (uintptr_t)lo + reserve;
    }
    pthread_attr_destroy(&at);
  }
  if (!floor) floor = here > EVAL_STACK_FALLBACK ? here - EVAL_STACK_FALLBACK : 1;
  eval__tl_floor = floor;
  return floor;
}

static CT_RESULT rego__eval__too_deep(rg_ev *ev) {
  return ct_fail(ev->err, CT_ELIMIT,
                 "eval_depth_limit_error: evaluation too deep: the policy nests rules, expressions or "
                 "conjunctions beyond what the evaluator's stack allows");
}
#define EVAL_STACK_CHECK(ev)                                                                        \
  do {                                                                                              \
    if ((uintptr_t)__builtin_frame_address(0) < (ev)->stack_floor) return rego__eval__too_deep(ev);       \
  } while (0)

static CT_RESULT rego__step(rg_ev *ev) {
  EVAL_STACK_CHECK(ev);
  if (++ev->steps > ev->p->limits.max_steps)
    return ct_fail(ev->err, CT_ELIMIT, "eval_step_limit_error: evaluation exceeded the limit of %zu steps",
                   ev->p->limits.max_steps);
  return CT_OK;
}

/* ---------------------------------------------------------------- forward decls */
static CT_RESULT rego__eval_term(rg_ev *ev, rg_term *t, const rk *k);
static CT_RESULT rego__eval_body(rg_ev *ev, const rg_body *b, size_t i, const rk *k);
static CT_RESULT rego__eval_expr(rg_ev *ev, const rg_expr *e, const rk *k);
static CT_RESULT rego__match(rg_ev *ev, rg_term *t, rv *v, const rk *k);
static CT_RESULT rego__rule_doc(rg_ev *ev, rg_node *n, rv **out);
static CT_RESULT rego__call_value(rg_ev *ev, rg_term *call, rv **args, size_t nargs, rv **out);

/* ---------------------------------------------------------------- small value helpers */
typedef struct {
  rv **v;
  size_t n, cap;
} vvec;
static bool rego__vv_push(rg_ev *ev, vvec *v, rv *x) {
  if (v->n == v->cap) {
    size_t nc = v->cap ? v->cap * 2 : 8;
    rv **nv = rg_alloc(&ev->a, nc * sizeof(rv *));
    if (!nv) return false;
    if (v->n) memcpy(nv, v->v, v->n * sizeof(rv *));
    v->v = nv;
    v->cap = nc;
  }
  v->v[v->n++] = x;
  return true;
}

/* Looks `key` up in a collection value; NULL = undefined. */
static rv *rego__lookup(rv *coll, rv *key) {
  switch (coll->t) {
    case RV_OBJ: return rv_obj_get(coll, key);
    case RV_ARR: {
      int64_t i;
      if (key->t != RV_NUM || !rv_num_is_int(key, &i) || (key->nk == RN_DBL && key->u.d != floor(key->u.d)))
        return NULL;
      if (i < 0 || (uint64_t)i >= coll->n) return NULL;
      return coll->u.a[i];
    }
    case RV_SET: return rv_set_has(coll, key) ? key : NULL;
    default: return NULL;
  }
}

/* ---------------------------------------------------------------- body */
typedef struct {
  rk k;
  const rg_body *b;
  size_t i;
  const rk *next;
} k_body;

static CT_RESULT rego__k_body_fn(rg_ev *ev, const rk *k, rv *v) {
  (void)v;
  const k_body *kb = (const k_body *)k;
  return rego__eval_body(ev, kb->b, kb->i, kb->next);
}

static CT_RESULT rego__eval_with(rg_ev *ev, const rg_expr *e, const rk *k);

static CT_RESULT rego__eval_body(rg_ev *ev, const rg_body *b, size_t i, const rk *k) {
  if (i == b->n) return KCALL(ev, k, NULL);
  CT_GUARD(rego__step(ev));
  k_body kb = {{rego__k_body_fn}, b, i + 1, k};
  const rg_expr *e = b->e[i];
  if (e->nwith) return rego__eval_with(ev, e, &kb.k);
  return rego__eval_expr(ev, e, &kb.k);
}

/* ---------------------------------------------------------------- expressions */
typedef struct {
  rk k;
  const rk *next;
  const rg_expr *e;
} k_truthy;

static CT_RESULT rego__k_truthy_fn(rg_ev *ev, const rk *k, rv *v) {
  const k_truthy *kt = (const k_truthy *)k;
  if (rv_truthy_false(v) && kt->e != ev->capture) return CT_OK;
  if (ev->exprvals && ev->qbody) {
    for (size_t i = 0; i < ev->qbody->n; i++)
      if (ev->qbody->e[i] == kt->e) ev->exprvals[i] = v;
  }
  return KCALL(ev, kt->next, NULL);
}

static CT_RESULT rego__k_halt_fn(rg_ev *ev, const rk *k, rv *v) {
  (void)ev;
  (void)k;
  (void)v;
  return RG_HALT;
}
static const rk k_halt = {rego__k_halt_fn};

/* some k, v in coll */
typedef struct {
  rk k;
  const rg_expr *e;
  const rk *next;
  rv *val;
} k_somein2;

static CT_RESULT rego__k_somein_val(rg_ev *ev, const rk *k, rv *v) {
  (void)v;
  const k_somein2 *ks = (const k_somein2 *)k;
  return rego__match(ev, ks->e->b, ks->val, ks->next);
}

typedef struct {
  rk k;
  const rg_expr *e;
  const rk *next;
} k_coll;

static CT_RESULT rego__record_true(rg_ev *ev, const rg_expr *e) {
  if (ev->exprvals && ev->qbody)
    for (size_t i = 0; i < ev->qbody->n; i++)
      if (ev->qbody->e[i] == e) ev->exprvals[i] = RV_TRUE;
  return CT_OK;
}

typedef struct {
  rk k;
  const rg_expr *e;
  const rk *next;
} k_rec;
static CT_RESULT rego__k_rec_fn(rg_ev *ev, const rk *k, rv *v) {
  (void)v;
  const k_rec *kr = (const k_rec *)k;
  CT_GUARD(rego__record_true(ev, kr->e));
  return KCALL(ev, kr->next, NULL);
}

static CT_RESULT rego__k_somein_coll(rg_ev *ev, const rk *k, rv *coll) {
  const k_coll *kc = (const k_coll *)k;
  const rg_expr *e = kc->e;
  k_somein2 k2 = {{rego__k_somein_val}, e, kc->next, NULL};
  if (coll->t != RV_ARR && coll->t != RV_OBJ && coll->t != RV_SET) return CT_OK;
  for (size_t i = 0; i < coll->n; i++) {
    CT_GUARD(rego__step(ev));
    rv *key, *val;
    if (coll->t == RV_ARR) {
      key = NULL;
      val = coll->u.a[i];
      if (e->a) {
        key = rv_int(&ev->a, (int64_t)i);
        if (!key) return rego__ev_oom(ev);
      }
    } else if (coll->t == RV_SET) {
      key = val = coll->u.a[i];
    } else {
      key = coll->u.o.k[i];
      val = coll->u.o.v[i];
    }
    k2.val = val;
    ct_status st;
    if (e->a) st = rego__match(ev, e->a, key, &k2.k);
    else st = rego__match(ev, e->b, val, kc->next);
    if (st) return st;
  }
  return CT_OK;
}

/* every k, v in coll { body } */
static CT_RESULT rego__k_every_coll(rg_ev *ev, const rk *k, rv *coll) {
  const k_coll *kc = (const k_coll *)k;
  const rg_expr *e = kc->e;
  if (coll->t == RV_ARR || coll->t == RV_OBJ || coll->t == RV_SET) {
    for (size_t i = 0; i < coll->n; i++) {
      CT_GUARD(rego__step(ev));
      rv *key, *val;
      if (coll->t == RV_ARR) {
        key = rv_int(&ev->a, (int64_t)i);
        if (!key) return rego__ev_oom(ev);
        val = coll->u.a[i];
      } else if (coll->t == RV_SET) key = val = coll->u.a[i];
      else {
        key = coll->u.o.k[i];
        val = coll->u.o.v[i];
      }
      size_t mark = ev->ntrail;
      ct_status st = CT_OK;
      if (e->a) st = rego__bind(ev, e->a->slot, key);
      if (!st) {
        /* the value may be a pattern; bind it and run the body once */
        k_body kb = {{rego__k_body_fn}, e->body, 0, &k_halt};
        st = rego__match(ev, e->b, val, &kb.k);
      }
      rego__undo(ev, mark);
      if (st == RG_HALT) continue;
      if (st) return st;
      return CT_OK; /* this element has no solution: every fails */
    }
  } else {
    return CT_OK; /* a non-iterable domain: every is false */
  }
  CT_GUARD(rego__record_true(ev, e));
  return KCALL(ev, kc->next, NULL);
}

static bool rego__term_has_unbound(rg_ev *ev, const rg_term *t) {
  switch (t->kind) {
    case T_VAR: return ev->slots[t->slot] == NULL;
    case T_ARR:
      for (size_t i = 0; i < t->n; i++)
        if (rego__term_has_unbound(ev, t->elems[i])) return true;
      return false;
    case T_OBJ:
      for (size_t i = 1; i < t->n; i += 2)
        if (rego__term_has_unbound(ev, t->elems[i])) return true;
      return false;
    default: return false;
  }
}

typedef struct {
  rk k;
  rg_term *pat;
  const rk *next;
} k_match;
static CT_RESULT rego__k_match_fn(rg_ev *ev, const rk *k, rv *v) {
  const k_match *km = (const k_match *)k;
  return rego__match(ev, km->pat, v, km->next);
}

static CT_RESULT rego__unify(rg_ev *ev, rg_term *a, rg_term *b, const rk *k);

typedef struct {
  rk k;
  rg_term *a, *b;
  size_t i;
  const rk *next;
} k_unify_arr;
static CT_RESULT rego__k_unify_arr_fn(rg_ev *ev, const rk *k, rv *v) {
  (void)v;
  const k_unify_arr *ku = (const k_unify_arr *)k;
  if (ku->i == ku->a->n) return KCALL(ev, ku->next, NULL);
  k_unify_arr nx = {{rego__k_unify_arr_fn}, ku->a, ku->b, ku->i + 1, ku->next};
  return rego__unify(ev, ku->a->elems[ku->i], ku->b->elems[ku->i], &nx.k);
}

static CT_RESULT rego__unify(rg_ev *ev, rg_term *a, rg_term *b, const rk *k) {
  EVAL_STACK_CHECK(ev);
  bool ua = rego__term_has_unbound(ev, a), ub = rego__term_has_unbound(ev, b);
  if (ua && ub) {
    if (a->kind == T_ARR && b->kind == T_ARR) {
      if (a->n != b->n) return CT_OK;
      k_unify_arr ku = {{rego__k_unify_arr_fn}, a, b, 0, k};
      return rego__k_unify_arr_fn(ev, &ku.k, NULL);
    }
    if (a->kind == T_OBJ && b->kind == T_OBJ) {
      /* {k: x, ...} = {k: y, ...}: same ground keys, values unified pairwise */
      if (a->n != b->n) return CT_OK;
      size_t np = a->n / 2;
      rg_term *va = rg_alloc(&ev->a, sizeof(rg_term)), *vb = rg_alloc(&ev->a, sizeof(rg_term));
      rg_term **ea = rg_alloc(&ev->a, (np + 1) * sizeof(rg_term *)), **eb = rg_alloc(&ev->a, (np + 1) * sizeof(rg_term *));
      if (!va || !vb || !ea || !eb) return rego__ev_oom(ev);
      for (size_t i = 0; i < np; i++) {
        rg_term *ka = a->elems[2 * i];
        if (!ka->ground) return rego__ev_fail(ev, "rego_unsafe_var_error", NULL, 0, 0, "object key in pattern is not ground");
        size_t j = 0;
        while (j < np && !(b->elems[2 * j]->ground && rv_eq(b->elems[2 * j]->val, ka->val))) j++;
        if (j == np) return CT_OK;
        ea[i] = a->elems[2 * i + 1];
        eb[i] = b->elems[2 * j + 1];
      }
      va->kind = vb->kind = T_ARR;
      va->n = vb->n = np;
      va->elems = ea;
      vb->elems = eb;
      va->slot = vb->slot = -1;
      k_unify_arr ku = {{rego__k_unify_arr_fn}, va, vb, 0, k};
      return rego__k_unify_arr_fn(ev, &ku.k, NULL);
    }
    if (a->kind == T_VAR && b->kind == T_VAR)
      return rego__ev_fail(ev, "rego_unsafe_var_error", NULL, 0, 0, "var %s is unsafe", a->name);
    if (a->kind == T_VAR || b->kind == T_VAR) {
      /* var = [pattern]: cannot be ground */
      return rego__ev_fail(ev, "rego_unsafe_var_error", NULL, 0, 0, "var %s is unsafe",
                     a->kind == T_VAR ? a->name : b->name);
    }
    return CT_OK;
  }
  if (ua) {
    k_match km = {{rego__k_match_fn}, a, k};
    return rego__eval_term(ev, b, &km.k);
  }
  k_match km = {{rego__k_match_fn}, b, k};
  return rego__eval_term(ev, a, &km.k);
}

/* The negation proper, once the operands hoist.c moved before it are bound. */
static CT_RESULT rego__eval_not(rg_ev *ev, const rg_expr *e, const rk *k) {
  size_t mark = ev->ntrail;
  ct_status st;
  if (!e->sub) st = rego__eval_body(ev, e->body, 0, &k_halt);
  else if (e->sub->nwith) st = rego__eval_with(ev, e->sub, &k_halt);
  else st = rego__eval_expr(ev, e->sub, &k_halt);
  rego__undo(ev, mark);
  if (st == RG_HALT) return CT_OK;
  if (st) return st;
  CT_GUARD(rego__record_true(ev, e));
  return KCALL(ev, k, NULL);
}

typedef struct {
  rk k;
  const rg_expr *e;
  const rk *next;
} k_not;
static CT_RESULT rego__k_not_fn(rg_ev *ev, const rk *k, rv *v) {
  (void)v;
  const k_not *kn = (const k_not *)k;
  return rego__eval_not(ev, kn->e, kn->next);
}

static CT_RESULT rego__eval_expr(rg_ev *ev, const rg_expr *e, const rk *k) {
  switch (e->kind) {
    case E_TERM: {
      k_truthy kt = {{rego__k_truthy_fn}, k, e};
      return rego__eval_term(ev, e->a, &kt.k);
    }
    case E_UNIFY:
    case E_ASSIGN: {
      k_rec kr = {{rego__k_rec_fn}, e, k};
      return rego__unify(ev, e->a, e->b, &kr.k);
    }
    case E_SOME: return KCALL(ev, k, NULL);
    case E_SOMEIN: {
      k_rec kr = {{rego__k_rec_fn}, e, k};
      k_coll kc = {{rego__k_somein_coll}, e, &kr.k};
      return rego__eval_term(ev, e->c, &kc.k);
    }
    case E_EVERY: {
      k_coll kc = {{rego__k_every_coll}, e, k};
      return rego__eval_term(ev, e->c, &kc.k);
    }
    case E_AND:
    case E_OR: {
      /* short-circuit; succeeds at most once, operands' bindings stay inside */
      bool want_all = e->kind == E_AND, ok = want_all;
      for (size_t i = 0; i < e->nops; i++) {
        size_t mark = ev->ntrail;
        ct_status st = rego__eval_body(ev, e->ops[i], 0, &k_halt);
        rego__undo(ev, mark);
        if (st && st != RG_HALT) return st;
        bool found = st == RG_HALT;
        if (want_all && !found) {
          ok = false;
          break;
        }
        if (!want_all && found) {
          ok = true;
          break;
        }
      }
      if (!ok) return CT_OK;
      CT_GUARD(rego__record_true(ev, e));
      return KCALL(ev, k, NULL);
    }
    case E_NOT:
      if (e->pre) {
        /* hoist.c: these operands are evaluated outside the negation; undefined fails the body */
        k_not kn = {{rego__k_not_fn}, e, k};
        return rego__eval_body(ev, e->pre, 0, &kn.k);
      }
      return rego__eval_not(ev, e, k);
  }
  return CT_OK;
}

/* ---------------------------------------------------------------- match (pattern vs value) */
typedef struct {
  rk k;
  rg_term *t;
  rv *v;
  size_t i;
  const rk *next;
} k_match_arr;
static CT_RESULT rego__k_match_arr_fn(rg_ev *ev, const rk *k, rv *unused) {
  (void)unused;
  const k_match_arr *km = (const k_match_arr *)k;
  if (km->t->kind == T_ARR) {
    if (km->i == km->t->n) return KCALL(ev, km->next, NULL);
    k_match_arr nx = {{rego__k_match_arr_fn}, km->t, km->v, km->i + 1, km->next};
    return rego__match(ev, km->t->elems[km->i], km->v->u.a[km->i], &nx.k);
  }
  /* object: pairs */
  if (km->i * 2 == km->t->n) return KCALL(ev, km->next, NULL);
  k_match_arr nx = {{rego__k_match_arr_fn}, km->t, km->v, km->i + 1, km->next};
  rg_term *kt = km->t->elems[km->i * 2];
  rv *key = kt->ground ? kt->val : (kt->kind == T_VAR ? ev->slots[kt->slot] : NULL);
  if (!key) return rego__ev_fail(ev, "rego_unsafe_var_error", NULL, 0, 0, "object key in pattern is not ground");
  rv *val = rv_obj_get(km->v, key);
  if (!val) return CT_OK;
  return rego__match(ev, km->t->elems[km->i * 2 + 1], val, &nx.k);
}

typedef struct {
  rk k;
  rv *v;
  const rk *next;
} k_eq;
static CT_RESULT rego__k_eq_fn(rg_ev *ev, const rk *k, rv *x) {
  const k_eq *ke = (const k_eq *)k;
  if (!rv_eq(ke->v, x)) return CT_OK;
  return KCALL(ev, ke->next, NULL);
}

static CT_RESULT rego__match(rg_ev *ev, rg_term *t, rv *v, const rk *k) {
  EVAL_STACK_CHECK(ev);
  if (t->ground) {
    if (!rv_eq(t->val, v)) return CT_OK;
    return KCALL(ev, k, NULL);
  }
  switch (t->kind) {
    case T_VAR: {
      rv *cur = ev->slots[t->slot];
      if (cur) return rv_eq(cur, v) ? KCALL(ev, k, NULL) : CT_OK;
      size_t mark = ev->ntrail;
      CT_GUARD(rego__bind(ev, t->slot, v));
      ct_status st = KCALL(ev, k, NULL);
      rego__undo(ev, mark);
      return st;
    }
    case T_ARR:
      if (rego__term_has_unbound(ev, t)) {
        if (v->t != RV_ARR || v->n != t->n) return CT_OK;
        k_match_arr km = {{rego__k_match_arr_fn}, t, v, 0, k};
        return rego__k_match_arr_fn(ev, &km.k, NULL);
      }
      break;
    case T_OBJ:
      if (rego__term_has_unbound(ev, t)) {
        if (v->t != RV_OBJ || v->n * 2 != t->n) return CT_OK;
        k_match_arr km = {{rego__k_match_arr_fn}, t, v, 0, k};
        return rego__k_match_arr_fn(ev, &km.k, NULL);
      }
      break;
    default: break;
  }
  k_eq ke = {{rego__k_eq_fn}, v, k};
  return rego__eval_term(ev, t, &ke.k);
}

/* ---------------------------------------------------------------- refs */
static CT_RESULT rego__walk(rg_ev *ev, rv *v, rg_term *ref, size_t i, const rk *k);

typedef struct {
  rk k;
  rv *coll;
  rg_term *ref;
  size_t i;
  const rk *next;
} k_walkkey;
static CT_RESULT rego__k_walkkey_fn(rg_ev *ev, const rk *k, rv *key) {
  const k_walkkey *kw = (const k_walkkey *)k;
  rv *x = rego__lookup(kw->coll, key);
  if (!x) return CT_OK;
  return rego__walk(ev, x, kw->ref, kw->i + 1, kw->next);
}

typedef struct {
  rk k;
  rv *val;
  rg_term *ref;
  size_t i;
  const rk *next;
} k_pkey;
static CT_RESULT rego__k_pkey_fn(rg_ev *ev, const rk *k, rv *unused) {
  (void)unused;
  const k_pkey *kp = (const k_pkey *)k;
  return rego__walk(ev, kp->val, kp->ref, kp->i + 1, kp->next);
}

static CT_RESULT rego__walk(rg_ev *ev, rv *v, rg_term *ref, size_t i, const rk *k) {
  EVAL_STACK_CHECK(ev);
  if (i == ref->n) return KCALL(ev, k, v);
  rg_term *e = ref->elems[i];
  if (e->ground) {
    rv *x = rego__lookup(v, e->val);
    if (!x) return CT_OK;
    return rego__walk(ev, x, ref, i + 1, k);
  }
  if (e->kind == T_VAR && !ev->slots[e->slot]) {
    if (v->t != RV_ARR && v->t != RV_OBJ && v->t != RV_SET) return CT_OK;
    for (size_t j = 0; j < v->n; j++) {
      CT_GUARD(rego__step(ev));
      rv *key, *val;
      if (v->t == RV_ARR) {
        key = rv_int(&ev->a, (int64_t)j);
        if (!key) return rego__ev_oom(ev);
        val = v->u.a[j];
      } else if (v->t == RV_SET) key = val = v->u.a[j];
      else {
        key = v->u.o.k[j];
        val = v->u.o.v[j];
      }
      size_t mark = ev->ntrail;
      CT_GUARD(rego__bind(ev, e->slot, key));
      ct_status st = rego__walk(ev, val, ref, i + 1, k);
      rego__undo(ev, mark);
      if (st) return st;
    }
    return CT_OK;
  }
  if (e->kind == T_VAR) {
    rv *x = rego__lookup(v, ev->slots[e->slot]);
    if (!x) return CT_OK;
    return rego__walk(ev, x, ref, i + 1, k);
  }
  if ((e->kind == T_ARR || e->kind == T_OBJ) && rego__term_has_unbound(ev, e)) {
    /* a pattern as key: enumerate the keys that match it */
    if (v->t != RV_ARR && v->t != RV_OBJ && v->t != RV_SET) return CT_OK;
    for (size_t j = 0; j < v->n; j++) {
      CT_GUARD(rego__step(ev));
      rv *key = v->t == RV_OBJ ? v->u.o.k[j] : v->t == RV_SET ? v->u.a[j] : rv_int(&ev->a, (int64_t)j);
      if (!key) return rego__ev_oom(ev);
      rv *val = v->t == RV_OBJ ? v->u.o.v[j] : v->u.a[j];
      k_pkey kp = {{rego__k_pkey_fn}, val, ref, i, k};
      CT_GUARD(rego__match(ev, e, key, &kp.k));
    }
    return CT_OK;
  }
  k_walkkey kw = {{rego__k_walkkey_fn}, v, ref, i, k};
  return rego__eval_term(ev, e, &kw.k);
}

/* data documents: rule tree + base data */
static CT_RESULT rego__data_doc(rg_ev *ev, rg_node *n, rv *base, rv **out);

static rv *rego__dov_find(rg_ev *ev, rv **path, size_t n, bool *below) {
  *below = false;
  rv *hit = NULL;
  for (size_t i = 0; i < ev->ndov; i++) {
    rg_dover *d = &ev->dov[i];
    if (d->n < n) {
      bool pre = true;
      for (size_t j = 0; j < d->n && pre; j++)
        if (!rv_eq(d->path[j], path[j])) pre = false;
      if (pre) {
        /* override above this path: the overridden value is walked, handled by caller */
      }
      continue;
    }
    bool pre = true;
    for (size_t j = 0; j < n && pre; j++)
      if (!rv_eq(d->path[j], path[j])) pre = false;
    if (!pre) continue;
    if (d->n == n) hit = d->value;
    else *below = true;
  }
  return hit;
}

static CT_RESULT rego__eval_data(rg_ev *ev, rg_node *n, rv *base, rg_term *ref, size_t i, rv **path, const rk *k);

typedef struct {
  rk k;
  rg_node *n;
  rv *base;
  rg_term *ref;
  size_t i;
  rv **path;
  const rk *next;
} k_datakey;

static CT_RESULT rego__data_step(rg_ev *ev, rg_node *n, rv *base, rg_term *ref, size_t i, rv **path, rv *key,
                           const rk *k) {
  rg_node *child = NULL;
  if (n && key->t == RV_STR) child = rg_node_child(n, key->u.s);
  rv *b2 = base && base->t == RV_OBJ ? rv_obj_get(base, key) : NULL;
  path[i - 1] = key;
  if (!child && !b2 && !ev->ndov) return CT_OK;
  return rego__eval_data(ev, child, b2, ref, i + 1, path, k);
}

static CT_RESULT rego__k_datakey_fn(rg_ev *ev, const rk *k, rv *key) {
  const k_datakey *kd = (const k_datakey *)k;
  return rego__data_step(ev, kd->n, kd->base, kd->ref, kd->i, kd->path, key, kd->next);
}

static CT_RESULT rego__eval_data(rg_ev *ev, rg_node *n, rv *base, rg_term *ref, size_t i, rv **path, const rk *k) {
  EVAL_STACK_CHECK(ev);
  bool below = false;
  if (ev->ndov) {
    rv *ov = rego__dov_find(ev, path, i - 1, &below);
    if (ov) return rego__walk(ev, ov, ref, i, k);
    if (!n && !base && !below) return CT_OK;
  }
  if (!n && !below) {
    /* plain base document from here on */
    if (!base) return CT_OK;
    return rego__walk(ev, base, ref, i, k);
  }
  if (n && n->kind >= 0) {
    if (n->kind == R_FUNC) return CT_OK;
    rv *doc;
    CT_GUARD(rego__rule_doc(ev, n, &doc));
    if (!doc) return CT_OK;
    return rego__walk(ev, doc, ref, i, k);
  }
  if (i == ref->n) {
    rv *doc;
    CT_GUARD(rego__data_doc(ev, n, base, &doc));
    if (!doc) return CT_OK;
    if (ev->ndov) {
      /* apply overrides below this path */
      for (size_t d = 0; d < ev->ndov; d++) {
        rg_dover *o = &ev->dov[d];
        if (o->n <= i - 1) continue;
        bool pre = true;
        for (size_t j = 0; j < i - 1 && pre; j++)
          if (!rv_eq(o->path[j], path[j])) pre = false;
        if (!pre) continue;
        /* set o->path[i-1..] in doc */
        rv *root = doc;
        rv *vals[64];
        size_t depth = o->n - (i - 1);
        if (depth > 64) continue;
        rv *cur = root;
        for (size_t j = 0; j < depth; j++) {
          vals[j] = cur;
          cur = cur && cur->t == RV_OBJ ? rv_obj_get(cur, o->path[i - 1 + j]) : NULL;
        }
        rv *nv = o->value;
        for (size_t j = depth; j-- > 0;) {
          rv *parent = vals[j] && vals[j]->t == RV_OBJ ? vals[j] : &rv_empty_obj_v;
          rv **ks = rg_alloc(&ev->a, (parent->n + 1) * sizeof(rv *));
          rv **vs = rg_alloc(&ev->a, (parent->n + 1) * sizeof(rv *));
          if (!ks || !vs) return rego__ev_oom(ev);
          size_t m = 0;
          for (size_t q = 0; q < parent->n; q++)
            if (!rv_eq(parent->u.o.k[q], o->path[i - 1 + j])) {
              ks[m] = parent->u.o.k[q];
              vs[m++] = parent->u.o.v[q];
            }
          ks[m] = o->path[i - 1 + j];
          vs[m++] = nv;
          nv = rv_obj(&ev->a, ks, vs, m, NULL);
          if (!nv) return rego__ev_oom(ev);
        }
        doc = nv;
      }
    }
    return KCALL(ev, k, doc);
  }
  rg_term *e = ref->elems[i];
  if (e->ground) return rego__data_step(ev, n, base, ref, i, path, e->val, k);
  if (e->kind == T_VAR && !ev->slots[e->slot]) {
    /* enumerate child names and base keys */
    vvec keys = {0};
    if (n)
      for (size_t j = 0; j < n->nkids; j++) {
        rv *kv = rv_cstr(&ev->a, n->kids[j]->name);
        if (!kv || !rego__vv_push(ev, &keys, kv)) return rego__ev_oom(ev);
      }
    if (base && base->t == RV_OBJ)
      for (size_t j = 0; j < base->n; j++)
        if (!rego__vv_push(ev, &keys, base->u.o.k[j])) return rego__ev_oom(ev);
    rv *ks = rv_set(&ev->a, keys.v, keys.n);
    if (!ks) return rego__ev_oom(ev);
    for (size_t j = 0; j < ks->n; j++) {
      size_t mark = ev->ntrail;
      CT_GUARD(rego__bind(ev, e->slot, ks->u.a[j]));
      ct_status st = rego__data_step(ev, n, base, ref, i, path, ks->u.a[j], k);
      rego__undo(ev, mark);
      if (st) return st;
    }
    return CT_OK;
  }
  k_datakey kd = {{rego__k_datakey_fn}, n, base, ref, i, path, k};
  return rego__eval_term(ev, e, &kd.k);
}

static CT_RESULT rego__data_doc(rg_ev *ev, rg_node *n, rv *base, rv **out) {
  *out = NULL;
  if (!n) {
    *out = base;
    return CT_OK;
  }
  if (n->kind >= 0) {
    if (n->kind == R_FUNC) return CT_OK;
    return rego__rule_doc(ev, n, out);
  }
  size_t cap = n->nkids + (base && base->t == RV_OBJ ? base->n : 0) + 1;
  rv **ks = rg_alloc(&ev->a, cap * sizeof(rv *)), **vs = rg_alloc(&ev->a, cap * sizeof(rv *));
  if (!ks || !vs) return rego__ev_oom(ev);
  size_t m = 0;
  for (size_t j = 0; j < n->nkids; j++) {
    rg_node *c = n->kids[j];
    rv *b2 = base && base->t == RV_OBJ ? rv_obj_gets(base, c->name) : NULL;
    rv *d;
    CT_GUARD(rego__data_doc(ev, c, b2, &d));
    if (!d) continue;
    ks[m] = rv_cstr(&ev->a, c->name);
    if (!ks[m]) return rego__ev_oom(ev);
    vs[m++] = d;
  }
  if (base && base->t == RV_OBJ)
    for (size_t j = 0; j < base->n; j++) {
      rv *kk = base->u.o.k[j];
      if (kk->t == RV_STR && rg_node_child(n, kk->u.s)) continue;
      ks[m] = kk;
      vs[m++] = base->u.o.v[j];
    }
  *out = rv_obj(&ev->a, ks, vs, m, NULL);
  if (!*out) return rego__ev_oom(ev);
  return CT_OK;
}

typedef struct {
  rk k;
  rg_term *ref;
  const rk *next;
} k_headwalk;
static CT_RESULT rego__k_headwalk_fn(rg_ev *ev, const rk *k, rv *v) {
  const k_headwalk *kh = (const k_headwalk *)k;
  return rego__walk(ev, v, kh->ref, 1, kh->next);
}

static CT_RESULT rego__eval_ref(rg_ev *ev, rg_term *t, const rk *k) {
  rg_term *h = t->elems[0];
  if (h->kind == T_DATA) {
    rv **path = rg_alloc(&ev->a, (t->n + 1) * sizeof(rv *));
    if (!path) return rego__ev_oom(ev);
    return rego__eval_data(ev, ev->p->root, ev->data, t, 1, path, k);
  }
  if (h->kind == T_INPUT) {
    if (!ev->input) return CT_OK;
    return rego__walk(ev, ev->input, t, 1, k);
  }
  if (h->kind == T_VAR) {
    rv *v = ev->slots[h->slot];
    if (!v) return rego__ev_fail(ev, "rego_unsafe_var_error", NULL, 0, 0, "var %s is unsafe", h->name);
    return rego__walk(ev, v, t, 1, k);
  }
  k_headwalk kh = {{rego__k_headwalk_fn}, t, k};
  return rego__eval_term(ev, h, &kh.k);
}

/* ---------------------------------------------------------------- rules */
typedef struct {
  rk k;
  rg_rule *r;
  rv **result;
  bool *found;
  bool func; /* conflict message wording */
} k_ruleval;

static const char *rego__node_path(rg_ev *ev, const rg_node *n);

static CT_RESULT rego__k_ruleval_store(rg_ev *ev, const rk *k, rv *v) {
  const k_ruleval *kr = (const k_ruleval *)k;
  if (!*kr->result) {
    *kr->result = v;
    *kr->found = true;
    return CT_OK;
  }
  if (!rv_eq(*kr->result, v)) {
    if (kr->func)
      return rego__ev_fail(ev, "eval_conflict_error", kr->r->file, kr->r->row, kr->r->col,
                     "function %s produced conflicting values for the same inputs", rego__node_path(ev, kr->r->node));
    return rego__ev_fail(ev, "eval_conflict_error", kr->r->file, kr->r->row, kr->r->col,
                   "rule %s produced conflicting values", rego__node_path(ev, kr->r->node));
  }
  *kr->found = true;
  return CT_OK;
}

typedef struct {
  rk k;
  rg_rule *r;
  k_ruleval *store;
} k_rulebody;

static CT_RESULT rego__k_rulebody_fn(rg_ev *ev, const rk *k, rv *v) {
  (void)v;
  const k_rulebody *kb = (const k_rulebody *)k;
  return rego__eval_term(ev, kb->r->value, &kb->store->k);
}

/* partial set / object collection */
typedef struct {
  rk k;
  rg_rule *r;
  vvec *keys, *vals;
} k_partial;

typedef struct {
  rk k;
  const k_partial *kp;
  rv *key;
} k_partial_val;

static CT_RESULT rego__k_partial_val_fn(rg_ev *ev, const rk *k, rv *v) {
  const k_partial_val *kv = (const k_partial_val *)k;
  if (!rego__vv_push(ev, kv->kp->keys, kv->key) || !rego__vv_push(ev, kv->kp->vals, v)) return rego__ev_oom(ev);
  return CT_OK;
}

static CT_RESULT rego__k_partial_key_fn(rg_ev *ev, const rk *k, rv *key) {
  const k_partial *kp = (const k_partial *)k;
  if (kp->r->kind == R_PSET) {
    if (!rego__vv_push(ev, kp->keys, key)) return rego__ev_oom(ev);
    return CT_OK;
  }
  k_partial_val kv = {{rego__k_partial_val_fn}, kp, key};
  return rego__eval_term(ev, kp->r->value, &kv.k);
}

static CT_RESULT rego__k_partial_body_fn(rg_ev *ev, const rk *k, rv *v) {
  (void)v;
  const k_partial *kp = (const k_partial *)k;
  k_partial kk = *kp;
  kk.k.fn = rego__k_partial_key_fn;
  return rego__eval_term(ev, kp->r->key, &kk.k);
}

typedef struct {
  rv **slots;
  const char *file;
} frame_save;

/* ---------------------------------------------------------------- object documents (ref heads) */
typedef struct mt mt;
struct mt {
  rv *leaf;     /* value at this path */
  bool is_set;  /* leaf collects a set (contains) */
  vvec set;
  rv **keys;
  mt **kids;
  size_t n, cap;
};

static CT_RESULT rego__mt_conflict(rg_ev *ev, rg_node *n) {
  rg_rule *r = n->nrules ? n->rules[0] : NULL;
  return rego__ev_fail(ev, "eval_conflict_error", r ? r->file : NULL, r ? r->row : 0, r ? r->col : 0,
                 "object keys must be unique");
}

static CT_RESULT rego__mt_insert(rg_ev *ev, rg_node *node, mt *t, rv **path, size_t np, rv *value, bool multi) {
  for (size_t d = 0; d < np; d++) {
    if (t->leaf || t->is_set) return rego__mt_conflict(ev, node);
    mt *k = NULL;
    for (size_t i = 0; i < t->n; i++)
      if (rv_eq(t->keys[i], path[d])) {
        k = t->kids[i];
        break;
      }
    if (!k) {
      if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 4;
        rv **nk = rg_alloc(&ev->a, nc * sizeof(rv *));
        mt **nm = rg_alloc(&ev->a, nc * sizeof(mt *));
        if (!nk || !nm) return rego__ev_oom(ev);
        if (t->n) {
          memcpy(nk, t->keys, t->n * sizeof(rv *));
          memcpy(nm, t->kids, t->n * sizeof(mt *));
        }
        t->keys = nk;
        t->kids = nm;
        t->cap = nc;
      }
      k = rg_alloc(&ev->a, sizeof(mt));
      if (!k) return rego__ev_oom(ev);
      t->keys[t->n] = path[d];
      t->kids[t->n++] = k;
    }
    t = k;
  }
  if (multi) {
    if (t->leaf || t->n) return rego__mt_conflict(ev, node);
    t->is_set = true;
    if (!rego__vv_push(ev, &t->set, value)) return rego__ev_oom(ev);
    return CT_OK;
  }
  if (t->n || t->is_set) return rego__mt_conflict(ev, node);
  if (t->leaf && !rv_eq(t->leaf, value)) return rego__mt_conflict(ev, node);
  t->leaf = value;
  return CT_OK;
}

/* Merges the document of a rule defined below the node: objects merge key by key, sets by element. */
static CT_RESULT rego__mt_merge(rg_ev *ev, rg_node *node, mt *t, rv **path, size_t np, rv *value) {
  if (value->t == RV_OBJ && value->n) {
    rv **p2 = rg_alloc(&ev->a, (np + 1) * sizeof(rv *));
    if (!p2) return rego__ev_oom(ev);
    memcpy(p2, path, np * sizeof(rv *));
    for (size_t i = 0; i < value->n; i++) {
      p2[np] = value->u.o.k[i];
      CT_GUARD(rego__mt_merge(ev, node, t, p2, np + 1, value->u.o.v[i]));
    }
    return CT_OK;
  }
  if (value->t == RV_SET && value->n) {
    for (size_t i = 0; i < value->n; i++) CT_GUARD(rego__mt_insert(ev, node, t, path, np, value->u.a[i], true));
    return CT_OK;
  }
  return rego__mt_insert(ev, node, t, path, np, value, false);
}

static rv *rego__mt_value(rg_ev *ev, mt *t) {
  if (t->leaf) return t->leaf;
  if (t->is_set) return rv_set(&ev->a, t->set.v, t->set.n);
  rv **vs = rg_alloc(&ev->a, (t->n + 1) * sizeof(rv *));
  if (!vs) return NULL;
  for (size_t i = 0; i < t->n; i++)
    if (!(vs[i] = rego__mt_value(ev, t->kids[i]))) return NULL;
  return rv_obj(&ev->a, t->keys, vs, t->n, NULL);
}

typedef struct {
  rk k;
  rg_rule *r;
  rg_node *node;
  mt *root;
  rv *keys;
} k_gen;

static CT_RESULT rego__k_gen_val(rg_ev *ev, const rk *k, rv *v) {
  const k_gen *kg = (const k_gen *)k;
  return rego__mt_insert(ev, kg->node, kg->root, kg->keys->u.a, kg->keys->n, v, kg->r->multi);
}

static CT_RESULT rego__k_gen_keys(rg_ev *ev, const rk *k, rv *keys) {
  const k_gen *kg = (const k_gen *)k;
  k_gen nx = *kg;
  nx.k.fn = rego__k_gen_val;
  nx.keys = keys;
  return rego__eval_term(ev, kg->r->value, &nx.k);
}

static CT_RESULT rego__k_gen_pobj_key(rg_ev *ev, const rk *k, rv *key) {
  const k_gen *kg = (const k_gen *)k;
  k_gen nx = *kg;
  nx.k.fn = rego__k_gen_val;
  nx.keys = rv_arr(&ev->a, &key, 1);
  if (!nx.keys) return rego__ev_oom(ev);
  return rego__eval_term(ev, kg->r->value, &nx.k);
}

static CT_RESULT rego__k_gen_body(rg_ev *ev, const rk *k, rv *v) {
  (void)v;
  const k_gen *kg = (const k_gen *)k;
  k_gen nx = *kg;
  nx.k.fn = kg->r->kind == R_GENERAL ? rego__k_gen_keys : rego__k_gen_pobj_key;
  return rego__eval_term(ev, kg->r->key, &nx.k);
}

static CT_RESULT rego__enter_frame(rg_ev *ev, const rg_rule *r, frame_save *saved);
static void rego__leave_frame(rg_ev *ev, frame_save *saved);
static CT_RESULT rego__data_doc(rg_ev *ev, rg_node *n, rv *base, rv **out);

/* The document of a node defined by partial-object or general ref-head rules, merged with the
 * documents of rules defined below it. */
static CT_RESULT rego__object_doc(rg_ev *ev, rg_node *n, rv **out) {
  mt root = {0};
  for (size_t i = 0; i < n->nrules; i++) {
    rg_rule *x = n->rules[i];
    k_gen kg = {{rego__k_gen_body}, x, n, &root, NULL};
    frame_save saved;
    CT_GUARD(rego__enter_frame(ev, x, &saved));
    ct_status st = rego__eval_body(ev, x->body, 0, &kg.k);
    rego__leave_frame(ev, &saved);
    if (st) return st;
  }
  for (size_t i = 0; i < n->nkids; i++) {
    rv *d;
    CT_GUARD(rego__data_doc(ev, n->kids[i], NULL, &d));
    if (!d) continue;
    rv *key = rv_cstr(&ev->a, n->kids[i]->name);
    if (!key) return rego__ev_oom(ev);
    CT_GUARD(rego__mt_merge(ev, n, &root, &key, 1, d));
  }
  if (!root.n && n->dflt) {
    *out = n->dflt->value->val;
    return CT_OK;
  }
  *out = rego__mt_value(ev, &root);
  if (!*out) return rego__ev_oom(ev);
  return CT_OK;
}

static CT_RESULT rego__enter_frame(rg_ev *ev, const rg_rule *r, frame_save *saved) {
  if (++ev->depth > ev->p->limits.max_depth)
    return ct_fail(ev->err, CT_ELIMIT, "eval_depth_limit_error: %s:%d:%d: evaluation exceeded the depth limit of %zu",
                   r->file, r->row, r->col, ev->p->limits.max_depth);
  saved->slots = ev->slots;
  saved->file = ev->file;
  ev->slots = rg_alloc(&ev->a, ((size_t)r->nslots + 1) * sizeof(rv *));
  if (!ev->slots) {
    ev->slots = saved->slots;
    ev->depth--;
    return rego__ev_oom(ev);
  }
  ev->file = r->file;
  return CT_OK;
}

static void rego__leave_frame(rg_ev *ev, frame_save *saved) {
  ev->slots = saved->slots;
  ev->file = saved->file;
  ev->depth--;
}

static CT_RESULT rego__first_value(rg_ev *ev, rg_term *t, rv **out);

static CT_RESULT rego__default_value(rg_ev *ev, rg_rule *d, rv **out) {
  if (d->value->ground) {
    *out = d->value->val;
    return CT_OK;
  }
  frame_save saved;
  CT_GUARD(rego__enter_frame(ev, d, &saved));
  ct_status st = rego__first_value(ev, d->value, out);
  rego__leave_frame(ev, &saved);
  return st;
}

/* "data.a.b" for messages */
static const char *rego__node_path(rg_ev *ev, const rg_node *n) {
  const rg_node *chain[64];
  size_t nc = 0, len = 0;
  for (const rg_node *x = n; x && nc < 64; x = x->parent) {
    chain[nc++] = x;
    len += strlen(x->name) + 1;
  }
  char *s = rg_alloc(&ev->a, len + 1);
  if (!s) return n->name;
  for (size_t i = nc; i-- > 0;) {
    strcat(s, chain[i]->name);
    if (i) strcat(s, ".");
  }
  return s;
}

static void rego__record_decision(rego_decision *why, const rg_rule *r) {
  why->defined = true;
  why->by_default = r->is_default;
  snprintf(why->file, sizeof why->file, "%s", r->file ? r->file : "");
  why->row = r->row;
  why->col = r->col;
}

static CT_RESULT rego__rule_doc_compute(rg_ev *ev, rg_node *n, rv **out) {
  *out = NULL;
  if (n->kind == R_COMPLETE) {
    rv *result = NULL;
    const rg_rule *decided = NULL;
    for (size_t i = 0; i < n->nrules; i++) {
      for (rg_rule *x = n->rules[i]; x; x = x->els) {
        bool found = false;
        k_ruleval store = {{rego__k_ruleval_store}, x, &result, &found, false};
        k_rulebody kb = {{rego__k_rulebody_fn}, x, &store};
        frame_save saved;
        CT_GUARD(rego__enter_frame(ev, x, &saved));
        ct_status st = rego__eval_body(ev, x->body, 0, &kb.k);
        rego__leave_frame(ev, &saved);
        if (st) return st;
        if (found && !decided) decided = x;
        if (found) break;
      }
    }
    if (!result && n->dflt) {
      CT_GUARD(rego__default_value(ev, n->dflt, &result));
      if (result) decided = n->dflt;
    }
    if (n == ev->watch && decided) rego__record_decision(ev->why, decided);
    *out = result;
    return CT_OK;
  }
  if (n->kind == R_GENERAL || (n->kind == R_POBJ && n->nkids)) return rego__object_doc(ev, n, out);
  vvec keys = {0}, vals = {0};
  for (size_t i = 0; i < n->nrules; i++) {
    rg_rule *x = n->rules[i];
    k_partial kp = {{rego__k_partial_body_fn}, x, &keys, &vals};
    frame_save saved;
    CT_GUARD(rego__enter_frame(ev, x, &saved));
    ct_status st = rego__eval_body(ev, x->body, 0, &kp.k);
    rego__leave_frame(ev, &saved);
    if (st) return st;
  }
  if (n->kind == R_PSET) {
    *out = rv_set(&ev->a, keys.v, keys.n);
    if (!*out) return rego__ev_oom(ev);
    return CT_OK;
  }
  bool conflict = false;
  *out = rv_obj(&ev->a, keys.v, vals.v, keys.n, &conflict);
  if (conflict) {
    rg_rule *r = n->rules[0];
    return rego__ev_fail(ev, "eval_conflict_error", r->file, r->row, r->col, "object keys must be unique");
  }
  if (!*out) return rego__ev_oom(ev);
  if (!keys.n && n->dflt) *out = n->dflt->value->val;
  return CT_OK;
}

static CT_RESULT rego__rule_doc(rg_ev *ev, rg_node *n, rv **out) {
  uint8_t st = ev->cstate[n->id];
  if (st == 2) {
    *out = ev->cache[n->id];
    return CT_OK;
  }
  if (st == 1) {
    rg_rule *r = n->nrules ? n->rules[0] : n->dflt;
    return rego__ev_fail(ev, "rego_recursion_error", r ? r->file : NULL, r ? r->row : 0, r ? r->col : 0,
                   "rule %s is recursive", n->name);
  }
  ev->cstate[n->id] = 1;
  ct_status s = rego__rule_doc_compute(ev, n, out);
  if (s) {
    ev->cstate[n->id] = 0;
    return s;
  }
  ev->cstate[n->id] = 2;
  ev->cache[n->id] = *out;
  return CT_OK;
}

/* ---------------------------------------------------------------- functions */
typedef struct {
  rk k;
  rg_rule *r;
  rv **args;
  size_t i;
  k_rulebody *body;
} k_fargs;

static CT_RESULT rego__k_fargs_fn(rg_ev *ev, const rk *k, rv *v) {
  (void)v;
  const k_fargs *ka = (const k_fargs *)k;
  if (ka->i == ka->r->nargs) return rego__eval_body(ev, ka->r->body, 0, &ka->body->k);
  k_fargs nx = *ka;
  nx.i++;
  return rego__match(ev, ka->r->args[ka->i], ka->args[ka->i], &nx.k);
}

static CT_RESULT rego__call_func(rg_ev *ev, rg_node *n, rv **args, rv **out) {
  rv *result = NULL;
  for (size_t i = 0; i < n->nrules; i++) {
    for (rg_rule *x = n->rules[i]; x; x = x->els) {
      bool found = false;
      k_ruleval store = {{rego__k_ruleval_store}, x, &result, &found, true};
      k_rulebody kb = {{rego__k_rulebody_fn}, x, &store};
      k_fargs ka = {{rego__k_fargs_fn}, x, args, 0, &kb};
      frame_save saved;
      CT_GUARD(rego__enter_frame(ev, x, &saved));
      ct_status st = rego__k_fargs_fn(ev, &ka.k, NULL);
      rego__leave_frame(ev, &saved);
      if (st) return st;
      if (found) break;
    }
  }
  if (!result && n->dflt) CT_GUARD(rego__default_value(ev, n->dflt, &result));
  *out = result;
  return CT_OK;
}

static CT_RESULT rego__call_host(rg_ev *ev, int idx, rv **args, size_t nargs, rv **out) {
  const rego_host_function *h = &ev->p->host[idx];
  json_t *jargs[16] = {0};
  ct_status st = CT_OK;
  if (nargs > 16) return rego__ev_fail(ev, "eval_builtin_error", NULL, 0, 0, "%s: too many arguments", h->name);
  for (size_t i = 0; i < nargs && !st; i++) st = rg_to_jansson(args[i], &jargs[i], ev->err);
  json_t *res = NULL;
  if (!st) {
    ct_err herr = {0};
    st = h->fn(h->ctx, jargs, nargs, &res, &herr);
    if (st) st = ct_fail(ev->err, st, "eval_builtin_error: %s: %s", h->name, herr.msg);
  }
  for (size_t i = 0; i < nargs; i++) json_decref(jargs[i]);
  if (st) {
    json_decref(res);
    return st;
  }
  *out = NULL;
  if (res) {
    st = rg_from_jansson(&ev->a, res, 0, false, out, ev->err); /* res is freed below */
    json_decref(res);
  }
  return st;
}

static const rg_override *rego__find_override(rg_ev *ev, const rg_term *call) {
  for (size_t i = ev->nov; i-- > 0;) {
    const rg_override *o = &ev->ov[i];
    if ((call->bi && o->target == call->bi) || (call->fn && o->target == call->fn) ||
        (call->host >= 0 && o->target == (const void *)&ev->p->host[call->host]))
      return o;
  }
  return NULL;
}

static CT_RESULT rego__call_value(rg_ev *ev, rg_term *call, rv **args, size_t nargs, rv **out) {
  *out = NULL;
  const rg_override *o = ev->nov ? rego__find_override(ev, call) : NULL;
  if (o) {
    if (o->value) {
      *out = o->value;
      return CT_OK;
    }
    rg_term fake = *call;
    fake.bi = o->repl_bi;
    fake.fn = o->repl_fn;
    fake.host = o->repl_host;
    /* a mock runs with no function mocks in force (mocks never call other mocks, and a mock
     * calling the function it replaces reaches the original) */
    size_t saved = ev->nov;
    ev->nov = 0;
    ct_status st = rego__call_value(ev, &fake, args, nargs, out);
    ev->nov = saved;
    return st;
  }
  if (call->fn) return rego__call_func(ev, call->fn, args, out);
  if (call->host >= 0) return rego__call_host(ev, call->host, args, nargs, out);
  const rg_builtin *bi = call->bi;
  if (!bi) return rego__ev_fail(ev, "rego_type_error", NULL, 0, 0, "undefined function %s", call->name);
  ct_status st = bi->fn(ev, args, out);
  if (st == CT_EINVAL && !ev->strict && strncmp(ev->err->msg, "eval_conflict_error", 19) != 0) {
    /* OPA: without strict-builtin-errors, a failing built-in makes the expression undefined */
    ct_err_clear(ev->err);
    *out = NULL;
    return CT_OK;
  }
  if (st == CT_EINVAL) {
    /* "code: msg" -> "code: file:row:col: msg" */
    char *colon = strstr(ev->err->msg, ": ");
    if (colon) {
      char code[64];
      size_t cl = (size_t)(colon - ev->err->msg);
      if (cl < sizeof(code)) {
        memcpy(code, ev->err->msg, cl);
        code[cl] = 0;
        char rest[CT_ERR_MSG_MAX];
        snprintf(rest, sizeof(rest), "%s", colon + 2);
        (void)ct_fail(ev->err, st, "%s: %s:%d:%d: %s", code, ev->file ? ev->file : "query", call->row, call->col,
                      rest);
      }
    }
  }
  return st;
}

typedef struct {
  rk k;
  rg_term *t;
  rv **vals;
  size_t i, nin;
  rg_term *outt;
  const rk *next;
  const uint8_t *order; /* argument evaluation order: refs and calls before bare variables */
} k_cargs;

typedef struct {
  rk k;
  const rk *next;
} k_true;
static CT_RESULT rego__k_true_fn(rg_ev *ev, const rk *k, rv *v) {
  (void)v;
  return KCALL(ev, ((const k_true *)k)->next, RV_TRUE);
}

static CT_RESULT rego__call_finish(rg_ev *ev, rg_term *t, rv **vals, size_t nin, rg_term *outt, const rk *k) {
  rv *out;
  CT_GUARD(rego__call_value(ev, t, vals, nin, &out));
  if (!out) return CT_OK;
  if (t->bi && t->bi->fn == rg_bi_walk && !(ev->nov && rego__find_override(ev, t))) {
    /* a relation: every element is one result */
    for (size_t i = 0; i < out->n; i++) {
      CT_GUARD(rego__step(ev));
      ct_status st;
      if (outt) {
        k_true kt = {{rego__k_true_fn}, k};
        st = rego__match(ev, outt, out->u.a[i], &kt.k);
      } else
        st = KCALL(ev, k, out->u.a[i]);
      if (st) return st;
    }
    return CT_OK;
  }
  if (outt) {
    k_true kt = {{rego__k_true_fn}, k};
    return rego__match(ev, outt, out, &kt.k);
  }
  return KCALL(ev, k, out);
}

static CT_RESULT rego__k_cargs_fn(rg_ev *ev, const rk *k, rv *v) {
  const k_cargs *ka = (const k_cargs *)k;
  ka->vals[ka->order[ka->i]] = v;
  if (ka->i + 1 == ka->nin) return rego__call_finish(ev, ka->t, ka->vals, ka->nin, ka->outt, ka->next);
  k_cargs nx = *ka;
  nx.i++;
  return rego__eval_term(ev, ka->t->elems[ka->order[nx.i]], &nx.k);
}

static CT_RESULT rego__eval_call(rg_ev *ev, rg_term *t, const rk *k) {
  CT_GUARD(rego__step(ev));
  long arity;
  if (t->fn) arity = (long)t->fn->arity;
  else if (t->host >= 0) arity = (long)ev->p->host[t->host].arity;
  else arity = t->bi ? t->bi->arity : -1;
  size_t nin = t->n;
  rg_term *outt = NULL;
  if (arity >= 0) {
    if ((long)t->n == arity + 1) {
      nin = (size_t)arity;
      outt = t->elems[arity];
    } else if ((long)t->n != arity)
      return rego__ev_fail(ev, "rego_type_error", NULL, 0, 0, "%s: arity mismatch: %zu arguments, want %ld", t->name, t->n,
                     arity);
  }
  rv *fast[8];
  rv **vals = nin <= 8 ? fast : rg_alloc(&ev->a, nin * sizeof(rv *));
  if (!vals) return rego__ev_oom(ev);
  bool simple = true;
  for (size_t i = 0; i < nin; i++) {
    rg_term *a = t->elems[i];
    if (a->ground) vals[i] = a->val;
    else if (a->kind == T_VAR && ev->slots[a->slot]) vals[i] = ev->slots[a->slot];
    else {
      simple = false;
      break;
    }
  }
  if (simple) return rego__call_finish(ev, t, vals, nin, outt, k);
  if (vals == fast) {
    vals = rg_alloc(&ev->a, (nin + 1) * sizeof(rv *));
    if (!vals) return rego__ev_oom(ev);
  }
  if (nin > 255) return rego__ev_fail(ev, "rego_type_error", NULL, 0, 0, "%s: too many arguments", t->name);
  uint8_t *order = rg_alloc(&ev->a, nin + 1);
  if (!order) return rego__ev_oom(ev);
  size_t w = 0;
  for (size_t i = 0; i < nin; i++)
    if (t->elems[i]->kind != T_VAR) order[w++] = (uint8_t)i;
  for (size_t i = 0; i < nin; i++)
    if (t->elems[i]->kind == T_VAR) order[w++] = (uint8_t)i;
  k_cargs ka = {{rego__k_cargs_fn}, t, vals, 0, nin, outt, k, order};
  return rego__eval_term(ev, t->elems[order[0]], &ka.k);
}

/* ---------------------------------------------------------------- collections and comprehensions */
typedef struct {
  rk k;
  rg_term *t;
  rv **vals;
  size_t i;
  const rk *next;
} k_el;

static CT_RESULT rego__build_coll(rg_ev *ev, rg_term *t, rv **vals, const rk *k) {
  rv *v = NULL;
  if (t->kind == T_ARR) v = rv_arr(&ev->a, vals, t->n);
  else if (t->kind == T_SET) v = rv_set(&ev->a, vals, t->n);
  else {
    size_t np = t->n / 2;
    rv **ks = rg_alloc(&ev->a, (np + 1) * sizeof(rv *)), **vs = rg_alloc(&ev->a, (np + 1) * sizeof(rv *));
    if (!ks || !vs) return rego__ev_oom(ev);
    for (size_t i = 0; i < np; i++) {
      ks[i] = vals[2 * i];
      vs[i] = vals[2 * i + 1];
    }
    bool conflict = false;
    v = rv_obj(&ev->a, ks, vs, np, &conflict);
    if (conflict) return rego__ev_fail(ev, "eval_conflict_error", NULL, 0, 0, "object keys must be unique");
  }
  if (!v) return rego__ev_oom(ev);
  return KCALL(ev, k, v);
}

static CT_RESULT rego__k_el_fn(rg_ev *ev, const rk *k, rv *v) {
  const k_el *ke = (const k_el *)k;
  ke->vals[ke->i] = v;
  if (ke->i + 1 == ke->t->n) return rego__build_coll(ev, ke->t, ke->vals, ke->next);
  k_el nx = *ke;
  nx.i++;
  return rego__eval_term(ev, ke->t->elems[nx.i], &nx.k);
}

static CT_RESULT rego__eval_coll(rg_ev *ev, rg_term *t, const rk *k) {
  rv **vals = rg_alloc(&ev->a, (t->n + 1) * sizeof(rv *));
  if (!vals) return rego__ev_oom(ev);
  bool simple = true;
  for (size_t i = 0; i < t->n; i++) {
    rg_term *a = t->elems[i];
    if (a->ground) vals[i] = a->val;
    else if (a->kind == T_VAR && ev->slots[a->slot]) vals[i] = ev->slots[a->slot];
    else {
      simple = false;
      break;
    }
  }
  if (simple || !t->n) return rego__build_coll(ev, t, vals, k);
  k_el ke = {{rego__k_el_fn}, t, vals, 0, k};
  return rego__eval_term(ev, t->elems[0], &ke.k);
}

typedef struct {
  rk k;
  rg_term *t;
  vvec *keys, *vals;
  rv *key;
} k_comp;

static CT_RESULT rego__k_comp_val(rg_ev *ev, const rk *k, rv *v) {
  const k_comp *kc = (const k_comp *)k;
  if (kc->t->kind == T_OCOMP) {
    if (!rego__vv_push(ev, kc->keys, kc->key) || !rego__vv_push(ev, kc->vals, v)) return rego__ev_oom(ev);
  } else if (!rego__vv_push(ev, kc->keys, v))
    return rego__ev_oom(ev);
  return CT_OK;
}

static CT_RESULT rego__k_comp_key(rg_ev *ev, const rk *k, rv *key) {
  const k_comp *kc = (const k_comp *)k;
  k_comp nx = *kc;
  nx.k.fn = rego__k_comp_val;
  nx.key = key;
  return rego__eval_term(ev, kc->t->elems[1], &nx.k);
}

static CT_RESULT rego__k_comp_body(rg_ev *ev, const rk *k, rv *v) {
  (void)v;
  const k_comp *kc = (const k_comp *)k;
  k_comp nx = *kc;
  nx.k.fn = kc->t->kind == T_OCOMP ? rego__k_comp_key : rego__k_comp_val;
  return rego__eval_term(ev, kc->t->elems[0], &nx.k);
}

static CT_RESULT rego__eval_comp(rg_ev *ev, rg_term *t, const rk *k) {
  vvec keys = {0}, vals = {0};
  k_comp kc = {{rego__k_comp_body}, t, &keys, &vals, NULL};
  CT_GUARD(rego__eval_body(ev, t->body, 0, &kc.k));
  rv *v;
  if (t->kind == T_ACOMP) v = rv_arr(&ev->a, keys.v, keys.n);
  else if (t->kind == T_SCOMP) v = rv_set(&ev->a, keys.v, keys.n);
  else {
    bool conflict = false;
    v = rv_obj(&ev->a, keys.v, vals.v, keys.n, &conflict);
    if (conflict) return rego__ev_fail(ev, "eval_conflict_error", NULL, 0, 0, "object keys must be unique");
  }
  if (!v) return rego__ev_oom(ev);
  return KCALL(ev, k, v);
}

static CT_RESULT rego__first_value(rg_ev *ev, rg_term *t, rv **out);

/* $"...{x}...": strings are inserted as they are, other values in Rego syntax, undefined
 * expressions as <undefined>. */
static CT_RESULT rego__eval_template(rg_ev *ev, rg_term *t, const rk *k) {
  ct_buf b;
  ct_buf_init(&b, 1u << 26);
  ct_err e2;
  ct_status st = CT_OK;
  for (size_t i = 0; i <= t->n && !st; i++) {
    rv *lit = t->val->u.a[i];
    st = ct_buf_append(&b, lit->u.s, lit->n, &e2);
    if (st || i == t->n) break;
    rv *v = NULL;
    st = rego__first_value(ev, t->elems[i], &v);
    if (st) break;
    if (!v) st = ct_buf_append_str(&b, "<undefined>", &e2);
    else if (v->t == RV_STR) st = ct_buf_append(&b, v->u.s, v->n, &e2);
    else st = rg_value_write_rego(v, &b, &e2);
  }
  if (st) {
    ct_buf_free(&b);
    return st == CT_ELIMIT ? ct_fail(ev->err, CT_ELIMIT, "eval_builtin_error: template string too large") : st;
  }
  rv *out = rv_str(&ev->a, b.data ? (const char *)b.data : "", b.len);
  ct_buf_free(&b);
  if (!out) return rego__ev_oom(ev);
  return KCALL(ev, k, out);
}

static CT_RESULT rego__eval_term(rg_ev *ev, rg_term *t, const rk *k) {
  EVAL_STACK_CHECK(ev);
  if (t->ground) return KCALL(ev, k, t->val);
  switch (t->kind) {
    case T_VAR: {
      rv *v = ev->slots[t->slot];
      if (!v) return rego__ev_fail(ev, "rego_unsafe_var_error", NULL, 0, 0, "var %s is unsafe", t->wildcard ? "_" : t->name);
      return KCALL(ev, k, v);
    }
    case T_INPUT:
      if (!ev->input) return CT_OK;
      return KCALL(ev, k, ev->input);
    case T_DATA: {
      rg_term *one[1] = {t};
      rg_term ref = {.kind = T_REF, .n = 1, .elems = one, .slot = -1, .host = -1};
      rv *path[1];
      return rego__eval_data(ev, ev->p->root, ev->data, &ref, 1, path, k);
    }
    case T_REF: return rego__eval_ref(ev, t, k);
    case T_ARR:
    case T_SET:
    case T_OBJ: return rego__eval_coll(ev, t, k);
    case T_ACOMP:
    case T_SCOMP:
    case T_OCOMP: return rego__eval_comp(ev, t, k);
    case T_CALL: return rego__eval_call(ev, t, k);
    case T_TMPL: return rego__eval_template(ev, t, k);
    default: return rego__ev_fail(ev, "eval_internal_error", NULL, 0, 0, "unexpected term kind %d", t->kind);
  }
}

/* ---------------------------------------------------------------- with */
typedef struct {
  rk k;
  rv **out;
} k_first;
static CT_RESULT rego__k_first_fn(rg_ev *ev, const rk *k, rv *v) {
  (void)ev;
  *((const k_first *)k)->out = v;
  return RG_HALT;
}

static CT_RESULT rego__first_value(rg_ev *ev, rg_term *t, rv **out) {
  *out = NULL;
  k_first kf = {{rego__k_first_fn}, out};
  ct_status st = rego__eval_term(ev, t, &kf.k);
  if (st == RG_HALT) return CT_OK;
  return st;
}

static rv *rego__set_path(rg_ev *ev, rv *root, rv **path, size_t n, rv *value) {
  if (!n) return value;
  rv *obj = root && root->t == RV_OBJ ? root : &rv_empty_obj_v;
  rv *child = rv_obj_get(obj, path[0]);
  rv *nc = rego__set_path(ev, child, path + 1, n - 1, value);
  if (!nc) return NULL;
  rv **ks = rg_alloc(&ev->a, (obj->n + 1) * sizeof(rv *)), **vs = rg_alloc(&ev->a, (obj->n + 1) * sizeof(rv *));
  if (!ks || !vs) return NULL;
  size_t m = 0;
  for (size_t i = 0; i < obj->n; i++)
    if (!rv_eq(obj->u.o.k[i], path[0])) {
      ks[m] = obj->u.o.k[i];
      vs[m++] = obj->u.o.v[i];
    }
  ks[m] = path[0];
  vs[m++] = nc;
  return rv_obj(&ev->a, ks, vs, m, NULL);
}

typedef struct {
  rv *input;
  rg_override *ov;
  size_t nov;
  rg_dover *dov;
  size_t ndov;
  rv **cache;
  uint8_t *cstate;
} with_state;

static void rego__ws_save(rg_ev *ev, with_state *s) {
  s->input = ev->input;
  s->ov = ev->ov;
  s->nov = ev->nov;
  s->dov = ev->dov;
  s->ndov = ev->ndov;
  s->cache = ev->cache;
  s->cstate = ev->cstate;
}
static void rego__ws_load(rg_ev *ev, const with_state *s) {
  ev->input = s->input;
  ev->ov = s->ov;
  ev->nov = s->nov;
  ev->dov = s->dov;
  ev->ndov = s->ndov;
  ev->cache = s->cache;
  ev->cstate = s->cstate;
}

typedef struct {
  rk k;
  with_state outer, inner;
  const rk *next;
} k_unwith;

static CT_RESULT rego__k_unwith_fn(rg_ev *ev, const rk *k, rv *v) {
  const k_unwith *ku = (const k_unwith *)k;
  rego__ws_load(ev, &ku->outer);
  ct_status st = KCALL(ev, ku->next, v);
  rego__ws_load(ev, &ku->inner);
  return st;
}

static CT_RESULT rego__eval_with(rg_ev *ev, const rg_expr *e, const rk *k) {
  k_unwith ku = {{rego__k_unwith_fn}, {0}, {0}, k};
  rego__ws_save(ev, &ku.outer);
  rg_override *ov = rg_alloc(&ev->a, (ev->nov + e->nwith) * sizeof(rg_override));
  rg_dover *dov = rg_alloc(&ev->a, (ev->ndov + e->nwith) * sizeof(rg_dover));
  if (!ov || !dov) return rego__ev_oom(ev);
  if (ev->nov) memcpy(ov, ev->ov, ev->nov * sizeof(rg_override));
  if (ev->ndov) memcpy(dov, ev->dov, ev->ndov * sizeof(rg_dover));
  size_t nov = ev->nov, ndov = ev->ndov;
  rv *input = ev->input;
  for (size_t i = 0; i < e->nwith; i++) {
    rg_with *w = &e->with[i];
    rg_term *t = w->target;
    rv *val = NULL;
    rg_term *vt = w->value;
    bool fnrepl = false;
    if (t->kind == T_CALL) {
      /* function mock: the value may name a function */
      rg_override *o = &ov[nov];
      memset(o, 0, sizeof(*o));
      o->target = t->fn ? (const void *)t->fn : t->host >= 0 ? (const void *)&ev->p->host[t->host] : (const void *)t->bi;
      o->repl_host = -1;
      if (vt->kind == T_CALL && vt->n == 0 && vt->fnref) {
        o->repl_bi = vt->bi;
        o->repl_fn = vt->fn;
        o->repl_host = vt->host;
        fnrepl = true;
      }
      if (!fnrepl) {
        CT_GUARD(rego__first_value(ev, vt, &val));
        if (!val) return CT_OK;
        o->value = val;
      }
      nov++;
      continue;
    }
    CT_GUARD(rego__first_value(ev, vt, &val));
    if (!val) return CT_OK;
    rg_term *head = t->kind == T_REF ? t->elems[0] : t;
    size_t np = t->kind == T_REF ? t->n - 1 : 0;
    rv **path = rg_alloc(&ev->a, (np + 1) * sizeof(rv *));
    if (!path) return rego__ev_oom(ev);
    for (size_t j = 0; j < np; j++) {
      CT_GUARD(rego__first_value(ev, t->elems[j + 1], &path[j]));
      if (!path[j]) return CT_OK;
    }
    if (head->kind == T_INPUT) {
      input = rego__set_path(ev, input, path, np, val);
      if (!input) return rego__ev_oom(ev);
    } else {
      dov[ndov].path = path;
      dov[ndov].n = np;
      dov[ndov].value = val;
      ndov++;
    }
  }
  ev->input = input;
  ev->ov = ov;
  ev->nov = nov;
  ev->dov = dov;
  ev->ndov = ndov;
  ev->cache = rg_alloc(&ev->a, ((size_t)ev->p->nnodes + 1) * sizeof(rv *));
  ev->cstate = rg_alloc(&ev->a, (size_t)ev->p->nnodes + 1);
  if (!ev->cache || !ev->cstate) {
    rego__ws_load(ev, &ku.outer);
    return rego__ev_oom(ev);
  }
  rego__ws_save(ev, &ku.inner);
  ct_status st = rego__eval_expr(ev, e, &ku.k);
  rego__ws_load(ev, &ku.outer);
  return st;
}

/* ---------------------------------------------------------------- entry points */
static CT_RESULT rego__ev_init(rg_ev *ev, const rego_policy *p, ct_err *err) {
  memset(ev, 0, sizeof(*ev));
  ev->p = p;
  ev->err = err;
  ev->stack_floor = rego__eval__stack_floor();
  ev->a.limit = p->limits.max_memory_bytes;
  ev->cache = rg_alloc(&ev->a, ((size_t)p->nnodes + 1) * sizeof(rv *));
  ev->cstate = rg_alloc(&ev->a, (size_t)p->nnodes + 1);
  if (!ev->cache || !ev->cstate) return rego__ev_oom(ev);
  return CT_OK;
}

static void rego__ev_free(rg_ev *ev) { rg_arena_free(&ev->a); }

typedef struct {
  rk k;
  rv **out;
} k_result;

/* Compiled queries of rego_eval, kept per policy: the KBS and the attestation service evaluate
 * the same few queries over and over. Entries are immutable once published. */
#define RG_QCACHE_MAX 32
struct rg_qcache_entry {
  rg_qcache_entry *next;
  char *query;
  rg_arena arena;
  rg_compiled_query q;
};

void rg_qcache_free(rego_policy *p) {
  rg_qcache_entry *e = p->qcache;
  while (e) {
    rg_qcache_entry *nx = e->next;
    free(e->query);
    rg_arena_free(&e->arena);
    free(e);
    e = nx;
  }
  p->qcache = NULL;
}

static CT_RESULT rego__cached_query(const rego_policy *cp, const char *query, rg_compiled_query *out, bool *hit, ct_err *err) {
  rego_policy *p = (rego_policy *)cp; /* only the mutex-guarded cache is written */
  *hit = false;
  pthread_mutex_lock(&p->qlock);
  size_t n = 0;
  for (rg_qcache_entry *e = p->qcache; e; e = e->next, n++)
    if (!strcmp(e->query, query)) {
      *out = e->q;
      *hit = true;
      pthread_mutex_unlock(&p->qlock);
      return CT_OK;
    }
  ct_status st = CT_OK;
  if (n < RG_QCACHE_MAX && strlen(query) < 4096) {
    rg_qcache_entry *e = calloc(1, sizeof(*e));
    if (e && (e->query = strdup(query)) != NULL) {
      st = rg_compile_query(p, &e->arena, query, &e->q, err);
      if (!st) {
        e->next = p->qcache;
        p->qcache = e;
        *out = e->q;
        *hit = true;
        e = NULL;
      }
    }
    if (e) {
      free(e->query);
      rg_arena_free(&e->arena);
      free(e);
    }
  }
  pthread_mutex_unlock(&p->qlock);
  return st;
}

/* The compiled form of a query that names one value (data.policy.allow): from the policy's cache,
 * or compiled into the evaluation's arena. */
static CT_RESULT rego__single_query(const rego_policy *p, rg_ev *ev, const char *query, rg_compiled_query *q,
                                   ct_err *err) {
  bool hit = false;
  CT_GUARD(rego__cached_query(p, query, q, &hit, err));
  if (!hit) CT_GUARD(rg_compile_query(p, &ev->a, query, q, err));
  if (q->body->n != 1 || q->body->e[0]->kind != E_TERM || q->body->e[0]->nwith)
    return ct_fail(err, CT_EINVAL, "rego_eval: query must be a single reference such as data.policy.allow");
  return CT_OK;
}

/* Evaluates `q` with the input and data the evaluation holds; *result stays NULL when the value is
 * undefined. */
static CT_RESULT rego__single_value(rg_ev *ev, const rg_compiled_query *q, json_t **result, ct_err *err) {
  ev->slots = rg_alloc(&ev->a, ((size_t)q->nslots + 1) * sizeof(rv *));
  if (!ev->slots) return rego__ev_oom(ev);
  rv *out = NULL;
  ct_status st = rego__first_value(ev, q->body->e[0]->a, &out);
  if (st == CT_EINVAL && ev->a.exceeded) st = rego__ev_oom(ev);
  if (!st && out) st = rg_to_jansson(out, result, err);
  return st;
}

CT_RESULT rego_eval(const rego_policy *p, const char *query, const json_t *input, const json_t *data,
                    json_t **result, ct_err *err) {
  *result = NULL;
  CT_ENSURE(p && query, err, CT_EINVAL, "rego_eval: missing policy or query");
  rg_ev ev;
  ct_status st = rego__ev_init(&ev, p, err);
  rg_compiled_query q;
  if (!st) st = rego__single_query(p, &ev, query, &q, err);
  /* A policy and query that never refer to `input` cannot see it: not converted (a resource
   * policy such as allow-all would pay for the whole token's claims on every request). */
  if (!st && input && (p->reads_input || q.reads_input)) st = rg_from_jansson(&ev.a, input, 0, true, &ev.input, err);
  if (!st && data) st = rg_from_jansson(&ev.a, data, 0, true, &ev.data, err);
  if (!st) st = rego__single_value(&ev, &q, result, err);
  rego__ev_free(&ev);
  return st;
}

CT_RESULT rego_eval_queries(const rego_policy *p, const char *const *queries, size_t n, const json_t *input,
                            const json_t *data, json_t **results, ct_err *err) {
  for (size_t i = 0; i < n; i++) results[i] = NULL;
  CT_ENSURE(p && queries, err, CT_EINVAL, "rego_eval: missing policy or query");
  /* input and data are converted once, after the first query compiled (where rego_eval would),
   * into an arena that outlives the evaluations; each evaluation's own arena gets what the memory
   * limit leaves beside them, as rego_eval's single arena would. */
  rg_arena docs = {.limit = p->limits.max_memory_bytes};
  rv *in = NULL, *dt = NULL;
  bool converted = false, input_converted = false;
  ct_status st = CT_OK;
  for (size_t i = 0; !st && i < n; i++) {
    CT_ENSURE_GOTO(st, queries[i], done, err, CT_EINVAL, "rego_eval: missing policy or query");
    rg_ev ev;
    st = rego__ev_init(&ev, p, err);
    rg_compiled_query q;
    if (!st) st = rego__single_query(p, &ev, queries[i], &q, err);
    /* input only for a policy or query that refers to it, as in rego_eval */
    if (!st && input && !input_converted && (p->reads_input || q.reads_input)) {
      st = rg_from_jansson(&docs, input, 0, true, &in, err);
      input_converted = true;
    }
    if (!st && !converted) {
      if (data) st = rg_from_jansson(&docs, data, 0, true, &dt, err);
      converted = true;
    }
    if (!st) {
      ev.input = in;
      ev.data = dt;
      ev.a.limit = docs.total < ev.a.limit ? ev.a.limit - docs.total : 1;
      st = rego__single_value(&ev, &q, &results[i], err);
    }
    rego__ev_free(&ev);
  }
done:
  rg_arena_free(&docs);
  if (st)
    for (size_t i = 0; i < n; i++) {
      json_decref(results[i]);
      results[i] = NULL;
    }
  return st;
}

/* The rule node a plain "data.a.b" reference names, or NULL. */
static const rg_node *rego__rule_node(const rego_policy *p, const char *ref) {
  if (strncmp(ref, "data.", 5) != 0) return NULL;
  const rg_node *n = p->root;
  const char *s = ref + 5;
  while (n && *s) {
    const char *dot = strchr(s, '.');
    size_t len = dot ? (size_t)(dot - s) : strlen(s);
    char seg[256];
    if (len == 0 || len >= sizeof seg) return NULL;
    memcpy(seg, s, len);
    seg[len] = '\0';
    n = rg_node_child(n, seg);
    s += len + (dot ? 1 : 0);
  }
  return n;
}

CT_RESULT rego_eval_decision(const rego_policy *p, const char *rule_ref, const json_t *input,
                             const json_t *data, json_t **result, rego_decision *why, ct_err *err) {
  *result = NULL;
  memset(why, 0, sizeof *why);
  CT_ENSURE(p && rule_ref && strlen(rule_ref) < 1024, err, CT_EINVAL,
            "rego_eval_decision: missing policy or rule reference");
  const rg_node *n = rego__rule_node(p, rule_ref);
  CT_ENSURE(n && n->kind == R_COMPLETE, err, CT_ENOTFOUND,
            "rego_eval_decision: %s is not a rule with a single value in this policy", rule_ref);
  rg_ev ev;
  ct_status st = rego__ev_init(&ev, p, err);
  ev.watch = n;
  ev.why = why;
  rg_compiled_query q;
  if (!st) st = rg_compile_query(p, &ev.a, rule_ref, &q, err);
  if (!st) {
    ev.slots = rg_alloc(&ev.a, ((size_t)q.nslots + 1) * sizeof(rv *));
    if (!ev.slots) st = rego__ev_oom(&ev);
  }
  if (!st && input) st = rg_from_jansson(&ev.a, input, 0, true, &ev.input, err);
  if (!st && data) st = rg_from_jansson(&ev.a, data, 0, true, &ev.data, err);
  rv *out = NULL;
  if (!st) {
    st = rego__first_value(&ev, q.body->e[0]->a, &out);
    if (st == CT_EINVAL && ev.a.exceeded) st = rego__ev_oom(&ev);
  }
  if (!st && out) st = rg_to_jansson(out, result, err);
  if (st) memset(why, 0, sizeof *why);
  else why->definitions = n->nrules;
  rego__ev_free(&ev);
  return st;
}

/* query mode: collect every solution */
typedef struct {
  rk k;
  rg_compiled_query *q;
  ct_buf *out;
  size_t nres;
  const char *src;
} k_qres;

static CT_RESULT rego__text_of_expr(const char *src, const rg_body *b, size_t i, ct_buf *out, ct_err *err) {
  /* the text of expression i: from its start to the start of the next (trimmed) */
  const rg_expr *e = b->e[i];
  int row = 1, col = 1;
  size_t start = 0, end = strlen(src);
  for (size_t j = 0; src[j]; j++) {
    if (row == e->row && col == e->col) {
      start = j;
      break;
    }
    if (src[j] == '\n') {
      row++;
      col = 1;
    } else col++;
  }
  if (i + 1 < b->n) {
    const rg_expr *nx = b->e[i + 1];
    row = 1;
    col = 1;
    for (size_t j = 0; src[j]; j++) {
      if (row == nx->row && col == nx->col) {
        end = j;
        break;
      }
      if (src[j] == '\n') {
        row++;
        col = 1;
      } else col++;
    }
  }
  while (end > start && (src[end - 1] == ' ' || src[end - 1] == '\n' || src[end - 1] == ';' || src[end - 1] == '\t'))
    end--;
  rv tmp = {.t = RV_STR, .n = (uint32_t)(end - start), .u.s = src + start};
  return rg_json_write(&tmp, out, false, 0, err);
}

static CT_RESULT rego__k_qres_fn(rg_ev *ev, const rk *k, rv *v) {
  (void)v;
  k_qres *kq = (k_qres *)k;
  ct_buf *o = kq->out;
  ct_err *err = ev->err;
  if (kq->nres++) CT_GUARD(ct_buf_append_str(o, ",", err));
  CT_GUARD(ct_buf_append_str(o, "{\"expressions\":[", err));
  const rg_body *b = kq->q->body;
  for (size_t i = 0; i < b->n; i++) {
    if (i) CT_GUARD(ct_buf_append_str(o, ",", err));
    CT_GUARD(ct_buf_append_str(o, "{\"value\":", err));
    CT_GUARD(rg_json_write(ev->exprvals[i] ? ev->exprvals[i] : RV_TRUE, o, false, 0, err));
    CT_GUARD(ct_buf_append_str(o, ",\"text\":", err));
    CT_GUARD(rego__text_of_expr(kq->src, b, i, o, err));
    CT_GUARD(ct_buf_printf(o, err, ",\"location\":{\"row\":%d,\"col\":%d}}", b->e[i]->row, b->e[i]->col));
  }
  CT_GUARD(ct_buf_append_str(o, "]", err));
  bool any = false;
  for (int s = 0; s < kq->q->nslots; s++) {
    const char *name = kq->q->slotnames[s];
    if (!name || !ev->slots[s]) continue;
    CT_GUARD(ct_buf_append_str(o, any ? "," : ",\"bindings\":{", err));
    any = true;
    rv nm = {.t = RV_STR, .n = (uint32_t)strlen(name), .u.s = name};
    CT_GUARD(rg_json_write(&nm, o, false, 0, err));
    CT_GUARD(ct_buf_append_str(o, ":", err));
    CT_GUARD(rg_json_write(ev->slots[s], o, false, 0, err));
  }
  if (any) CT_GUARD(ct_buf_append_str(o, "}", err));
  return ct_buf_append_str(o, "}", err);
}

/* OPA's test for whether a query iterates (then a false value is no result): a ref with a
 * variable after its head, or the relation built-in walk; comprehensions do not count. */
static bool rego__eval__iterates(const rg_term *t) {
  if (!t || t->kind == T_ACOMP || t->kind == T_SCOMP || t->kind == T_OCOMP) return false;
  if (t->kind == T_REF)
    for (size_t i = 1; i < t->n; i++)
      if (t->elems[i]->kind == T_VAR) return true;
  if (t->kind == T_CALL && t->name && !strcmp(t->name, "walk")) return true;
  for (size_t i = 0; i < t->n; i++)
    if (t->elems && rego__eval__iterates(t->elems[i])) return true;
  return false;
}

static const rg_expr *rego__eval__capture_expr(const rg_body *b) {
  if (b->n != 1) return NULL;
  const rg_expr *e = b->e[0];
  if (e->kind != E_TERM || rego__eval__iterates(e->a)) return NULL;
  if (e->a->kind == T_CALL && e->a->name && !strcmp(e->a->name, "print")) return NULL; /* no value */
  return e;
}

CT_RESULT rego_query(const rego_policy *p, const char *query, const rego_query_opts *qo, char **result_json,
                     ct_err *err) {
  *result_json = NULL;
  rg_ev ev;
  ct_status st = rego__ev_init(&ev, p, err);
  rg_compiled_query q;
  if (!st) st = rg_compile_query(p, &ev.a, query, &q, err);
  if (!st && qo && qo->input_json)
    st = rg_json_parse(&ev.a, qo->input_json, strlen(qo->input_json), 0, &ev.input, err);
  if (!st && qo && qo->data_json) st = rg_json_parse(&ev.a, qo->data_json, strlen(qo->data_json), 0, &ev.data, err);
  if (!st && qo && qo->input_term) {
    /* the input given as a Rego term: compile and evaluate it as a one-expression query */
    rg_compiled_query tq;
    st = rg_compile_query(p, &ev.a, qo->input_term, &tq, err);
    if (!st && (tq.body->n != 1 || tq.body->e[0]->kind != E_TERM))
      st = ct_fail(err, CT_EINVAL, "rego_query: input_term must be a single term");
    if (!st) {
      ev.slots = rg_alloc(&ev.a, ((size_t)tq.nslots + 1) * sizeof(rv *));
      if (!ev.slots) st = rego__ev_oom(&ev);
    }
    if (!st) st = rego__first_value(&ev, tq.body->e[0]->a, &ev.input);
  }
  if (!st && qo) {
    ev.strict = qo->strict_builtin_errors;
    if (qo->now_ns) ev.now = qo->now_ns;
  }
  if (!st) {
    ev.slots = rg_alloc(&ev.a, ((size_t)q.nslots + 1) * sizeof(rv *));
    ev.exprvals = rg_alloc(&ev.a, (q.body->n + 1) * sizeof(rv *));
    ev.qbody = q.body;
    if (qo && qo->capture_values) ev.capture = rego__eval__capture_expr(q.body);
    if (!ev.slots || !ev.exprvals) st = rego__ev_oom(&ev);
  }
  ct_buf out;
  ct_buf_init(&out, 1u << 30);
  if (!st) st = ct_buf_append_str(&out, "[", err);
  if (!st) {
    k_qres kq = {{rego__k_qres_fn}, &q, &out, 0, query};
    st = rego__eval_body(&ev, q.body, 0, &kq.k);
    if (st == CT_EINVAL && ev.a.exceeded) st = rego__ev_oom(&ev);
  }
  if (!st) st = ct_buf_append_str(&out, "]", err);
  if (!st) *result_json = (char *)ct_buf_take(&out, NULL);
  ct_buf_free(&out);
  rego__ev_free(&ev);
  return st;
}

CT_RESULT rego_list_tests(const rego_policy *p, char ***names, size_t *n, ct_err *err) {
  *names = NULL;
  *n = 0;
  size_t cap = 0;
  /* depth-first over the tree */
  rg_node *stack[512];
  size_t sp = 0;
  stack[sp++] = p->root;
  while (sp) {
    rg_node *nd = stack[--sp];
    for (size_t i = nd->nkids; i-- > 0;)
      if (sp < 512) stack[sp++] = nd->kids[i];
    if (nd->kind >= 0 && nd->kind != R_FUNC && !strncmp(nd->name, "test_", 5)) {
      char path[1024] = "";
      const rg_node *chain[128];
      size_t nc = 0;
      for (const rg_node *x = nd; x && nc < 128; x = x->parent) chain[nc++] = x;
      for (size_t i = nc; i-- > 0;) {
        strncat(path, chain[i]->name, sizeof(path) - strlen(path) - 1);
        if (i) strncat(path, ".", sizeof(path) - strlen(path) - 1);
      }
      if (*n == cap) {
        cap = cap ? cap * 2 : 16;
        char **nn = realloc(*names, cap * sizeof(char *));
        CT_ENSURE(nn, err, CT_ENOMEM, "out of memory");
        *names = nn;
      }
      (*names)[*n] = strdup(path);
      CT_ENSURE((*names)[*n], err, CT_ENOMEM, "out of memory");
      (*n)++;
    }
  }
  return CT_OK;
}
