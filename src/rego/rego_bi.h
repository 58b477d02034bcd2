/*
 * rego_bi.h - shorthands shared by the built-in implementations (builtins_*.c). Each assumes the
 * built-in signature `(rg_ev *ev, rv **a, rv **out)`.
 */
#ifndef REGO_BI_H
#define REGO_BI_H

#include "rego_int.h"

/* The evaluation's arena, for building result values. */
#define A (rg_ev_arena(ev))

/* Returns `v` as the result; a NULL `v` (allocation failed) is an out-of-memory error. */
#define RET(v)                                                                                     \
  do {                                                                                             \
    *out = (v);                                                                                    \
    if (!*out) return rg_bi_oom(ev);                                                               \
    return CT_OK;                                                                                  \
  } while (0)

/* Operand `i` (0-based) of built-in `name` must be a string. */
#define WANT_S(name, i) CT_GUARD(rg_bi_want(ev, name, (i) + 1, a[i], RV_STR))

#endif
