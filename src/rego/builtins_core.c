/*
 * builtins_core.c - comparison, arithmetic, membership, aggregates, types, and set operators.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>

#include "rego_bi.h"

static CT_RESULT rego__bi_equal(rg_ev *ev, rv **a, rv **out) { (void)ev; *out = rv_bool(rv_eq(a[0], a[1])); return CT_OK; }
static CT_RESULT rego__bi_neq(rg_ev *ev, rv **a, rv **out) { (void)ev; *out = rv_bool(!rv_eq(a[0], a[1])); return CT_OK; }
static CT_RESULT rego__bi_lt(rg_ev *ev, rv **a, rv **out) { (void)ev; *out = rv_bool(rv_cmp(a[0], a[1]) < 0); return CT_OK; }
static CT_RESULT rego__bi_gt(rg_ev *ev, rv **a, rv **out) { (void)ev; *out = rv_bool(rv_cmp(a[0], a[1]) > 0); return CT_OK; }
static CT_RESULT rego__bi_lte(rg_ev *ev, rv **a, rv **out) { (void)ev; *out = rv_bool(rv_cmp(a[0], a[1]) <= 0); return CT_OK; }
static CT_RESULT rego__bi_gte(rg_ev *ev, rv **a, rv **out) { (void)ev; *out = rv_bool(rv_cmp(a[0], a[1]) >= 0); return CT_OK; }

/* ---------------------------------------------------------------- numbers */
static bool rego__big_or_dbl(const rv *x) { return x->nk != RN_INT; }

/* ---------------------------------------------------------------- big integers (OpenSSL BN) */
static bool rego__int_text(const rv *x, char *buf, size_t cap, const char **out) {
  if (x->nk == RN_BIG) {
    *out = x->u.s;
    return true;
  }
  int64_t i;
  if (x->nk == RN_INT || (rv_num_is_int(x, &i) && x->nk == RN_DBL && !x->lit)) {
    snprintf(buf, cap, "%lld", (long long)(x->nk == RN_INT ? x->u.i : (int64_t)x->u.d));
    *out = buf;
    return true;
  }
  if (x->nk == RN_DBL && x->lit) {
    /* an integral literal such as 1e30 or 2.0: expand the decimal text exactly */
    const char *t = x->lit;
    size_t w = 0;
    long frac = 0, e = 0;
    bool in_frac = false;
    if (*t == '-') buf[w++] = *t++;
    for (; *t && *t != 'e' && *t != 'E'; t++) {
      if (*t == '.') {
        in_frac = true;
        continue;
      }
      if (w + 2 >= cap) return false;
      buf[w++] = *t;
      if (in_frac) frac++;
    }
    if (*t) e = strtol(t + 1, NULL, 10);
    long shift = e - frac;
    if (shift < 0) {
      for (long z = 0; z < -shift; z++) {
        if (w == 0 || buf[w - 1] != '0') return false;
        w--;
      }
    } else {
      if (shift > 300 || w + (size_t)shift + 1 >= cap) return false;
      for (long z = 0; z < shift; z++) buf[w++] = '0';
    }
    buf[w] = 0;
    if (w == 0 || (w == 1 && buf[0] == '-')) return false;
    *out = buf;
    return true;
  }
  return false;
}

rv *rg_bn_to_rv(rg_arena *a, const struct bignum_st *b) {
  char *t = BN_bn2dec(b);
  if (!t) return NULL;
  rv *v = rv_num_text(a, t, strlen(t));
  OPENSSL_free(t);
  return v;
}

/* Exact integer arithmetic; returns false when an operand is not an integer. */
static CT_RESULT rego__big_arith(rg_ev *ev, int op, const rv *x, const rv *y, rv **out, bool *handled) {
  char b1[400], b2[400];
  const char *t1, *t2;
  *handled = false;
  if (!rego__int_text(x, b1, sizeof(b1), &t1) || !rego__int_text(y, b2, sizeof(b2), &t2)) return CT_OK;
  BIGNUM *p = NULL, *q = NULL, *r = BN_new(), *m = BN_new();
  BN_CTX *bc = BN_CTX_new();
  ct_status st = CT_OK;
  if (!r || !m || !bc || !BN_dec2bn(&p, t1) || !BN_dec2bn(&q, t2)) {
    st = rg_bi_oom(ev);
    goto done;
  }
  *handled = true;
  switch (op) {
    case '+': BN_add(r, p, q); break;
    case '-': BN_sub(r, p, q); break;
    case '*': BN_mul(r, p, q, bc); break;
    case '%':
      if (BN_is_zero(q)) {
        st = rg_bi_fail(ev, "rem: modulo by zero");
        goto done;
      }
      BN_div(NULL, r, p, q, bc);
      break;
    case '/':
      if (BN_is_zero(q)) {
        st = rg_bi_fail(ev, "div: divide by zero");
        goto done;
      }
      BN_div(r, m, p, q, bc);
      if (!BN_is_zero(m)) {
        *handled = false; /* not exact: decimal result */
        goto done;
      }
      break;
  }
  *out = rg_bn_to_rv(rg_ev_arena(ev), r);
  if (!*out) st = rg_bi_oom(ev);
done:
  BN_free(p);
  BN_free(q);
  BN_free(r);
  BN_free(m);
  BN_CTX_free(bc);
  return st;
}

static CT_RESULT rego__arith(rg_ev *ev, const char *name, int op, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, name, 1, a[0], RV_NUM));
  CT_GUARD(rg_bi_want(ev, name, 2, a[1], RV_NUM));
  rv *x = a[0], *y = a[1];
  if (!rego__big_or_dbl(x) && !rego__big_or_dbl(y)) {
    int64_t r;
    bool ovf = false;
    switch (op) {
      case '+': ovf = __builtin_add_overflow(x->u.i, y->u.i, &r); break;
      case '-': ovf = __builtin_sub_overflow(x->u.i, y->u.i, &r); break;
      case '*': ovf = __builtin_mul_overflow(x->u.i, y->u.i, &r); break;
      case '/':
        if (y->u.i == 0) return rg_bi_fail(ev, "div: divide by zero");
        if (x->u.i % y->u.i == 0 && !(x->u.i == INT64_MIN && y->u.i == -1)) {
          RET(rv_int(A, x->u.i / y->u.i));
        }
        RET(rv_dbl(A, (double)x->u.i / (double)y->u.i));
      case '%':
        if (y->u.i == 0) return rg_bi_fail(ev, "rem: modulo by zero");
        if (y->u.i == -1) RET(rv_int(A, 0));
        RET(rv_int(A, x->u.i % y->u.i));
      default: ovf = true;
    }
    if (!ovf) RET(rv_int(A, r));
  }
  {
    bool handled;
    CT_GUARD(rego__big_arith(ev, op, x, y, out, &handled));
    if (handled) return CT_OK;
  }
  double dx = rv_num_dbl(x), dy = rv_num_dbl(y), r;
  switch (op) {
    case '+': r = dx + dy; break;
    case '-': r = dx - dy; break;
    case '*': r = dx * dy; break;
    case '/':
      if (dy == 0) return rg_bi_fail(ev, "div: divide by zero");
      r = dx / dy;
      break;
    default: {
      int64_t ix, iy;
      if (!rv_num_is_int(x, &ix) || !rv_num_is_int(y, &iy))
        return rg_bi_fail(ev, "rem: modulo on floating-point number");
      if (iy == 0) return rg_bi_fail(ev, "rem: modulo by zero");
      RET(rv_int(A, iy == -1 ? 0 : ix % iy));
    }
  }
  if (!isfinite(r)) return rg_bi_fail(ev, "%s: result out of range", name);
  /* integral results of huge magnitude keep integer form */
  if (r == floor(r) && fabs(r) >= 9007199254740992.0 && fabs(r) < 1e300) {
    char t[400];
    snprintf(t, sizeof(t), "%.0f", r);
    RET(rv_num_text(A, t, strlen(t)));
  }
  RET(rv_dbl(A, r));
}

static rv *rego__set_op(rg_ev *ev, rv *x, rv *y, int op) {
  rv **items = rg_alloc(A, (x->n + y->n + 1) * sizeof(rv *));
  if (!items) return NULL;
  size_t n = 0;
  if (op == '|') {
    for (size_t i = 0; i < x->n; i++) items[n++] = x->u.a[i];
    for (size_t i = 0; i < y->n; i++) items[n++] = y->u.a[i];
  } else if (op == '&') {
    for (size_t i = 0; i < x->n; i++)
      if (rv_set_has(y, x->u.a[i])) items[n++] = x->u.a[i];
  } else {
    for (size_t i = 0; i < x->n; i++)
      if (!rv_set_has(y, x->u.a[i])) items[n++] = x->u.a[i];
  }
  return rv_set(A, items, n);
}

static CT_RESULT rego__bi_plus(rg_ev *ev, rv **a, rv **out) { return rego__arith(ev, "plus", '+', a, out); }
static CT_RESULT rego__bi_minus(rg_ev *ev, rv **a, rv **out) {
  if (a[0]->t == RV_SET && a[1]->t == RV_SET) RET(rego__set_op(ev, a[0], a[1], '-'));
  if ((a[0]->t == RV_SET) != (a[1]->t == RV_SET) && (a[0]->t == RV_SET || a[0]->t == RV_NUM))
    return rg_bi_type(ev, "minus: operand 2 must be %s but got %s", a[0]->t == RV_SET ? "set" : "number",
                      rg_type_name(a[1]));
  if (a[0]->t != RV_NUM && a[0]->t != RV_SET)
    return rg_bi_type(ev, "minus: operand 1 must be one of {number, set} but got %s", rg_type_name(a[0]));
  return rego__arith(ev, "minus", '-', a, out);
}
static CT_RESULT rego__bi_mul(rg_ev *ev, rv **a, rv **out) { return rego__arith(ev, "mul", '*', a, out); }
static CT_RESULT rego__bi_div(rg_ev *ev, rv **a, rv **out) { return rego__arith(ev, "div", '/', a, out); }
static CT_RESULT rego__bi_rem(rg_ev *ev, rv **a, rv **out) { return rego__arith(ev, "rem", '%', a, out); }

static CT_RESULT rego__bi_or(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "or", 1, a[0], RV_SET));
  CT_GUARD(rg_bi_want(ev, "or", 2, a[1], RV_SET));
  RET(rego__set_op(ev, a[0], a[1], '|'));
}
static CT_RESULT rego__bi_and(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "and", 1, a[0], RV_SET));
  CT_GUARD(rg_bi_want(ev, "and", 2, a[1], RV_SET));
  RET(rego__set_op(ev, a[0], a[1], '&'));
}

static CT_RESULT rego__num1(rg_ev *ev, const char *name, rv *x, double (*f)(double), rv **out) {
  CT_GUARD(rg_bi_want(ev, name, 1, x, RV_NUM));
  if (x->nk == RN_INT) RET(x);
  RET(rv_dbl(A, f(rv_num_dbl(x))));
}
static CT_RESULT rego__bi_round(rg_ev *ev, rv **a, rv **out) { return rego__num1(ev, "round", a[0], round, out); }
static CT_RESULT rego__bi_ceil(rg_ev *ev, rv **a, rv **out) { return rego__num1(ev, "ceil", a[0], ceil, out); }
static CT_RESULT rego__bi_floor(rg_ev *ev, rv **a, rv **out) { return rego__num1(ev, "floor", a[0], floor, out); }
static CT_RESULT rego__bi_abs(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "abs", 1, a[0], RV_NUM));
  if (a[0]->nk == RN_INT && a[0]->u.i != INT64_MIN) RET(a[0]->u.i < 0 ? rv_int(A, -a[0]->u.i) : a[0]);
  if (a[0]->nk == RN_BIG) RET(a[0]->u.s[0] == '-' ? rv_num_text(A, a[0]->u.s + 1, strlen(a[0]->u.s + 1)) : a[0]);
  RET(rv_dbl(A, fabs(rv_num_dbl(a[0]))));
}

static CT_RESULT rego__bi_numbers_range(rg_ev *ev, rv **a, rv **out) {
  int64_t x, y;
  CT_GUARD(rg_bi_want(ev, "numbers.range", 1, a[0], RV_NUM));
  CT_GUARD(rg_bi_want(ev, "numbers.range", 2, a[1], RV_NUM));
  if (!rv_num_is_int(a[0], &x)) return rg_bi_type(ev, "numbers.range: operand 1 must be integer number but got floating-point number");
  if (!rv_num_is_int(a[1], &y)) return rg_bi_type(ev, "numbers.range: operand 2 must be integer number but got floating-point number");
  int64_t n = (x <= y ? y - x : x - y) + 1;
  if (n > 10000000) return rg_bi_fail(ev, "numbers.range: range too large");
  rv **items = rg_alloc(A, (size_t)n * sizeof(rv *));
  if (!items) return rg_bi_oom(ev);
  for (int64_t i = 0; i < n; i++) {
    items[i] = rv_int(A, x <= y ? x + i : x - i);
    if (!items[i]) return rg_bi_oom(ev);
  }
  RET(rv_arr(A, items, (size_t)n));
}

static CT_RESULT rego__bi_numbers_range_step(rg_ev *ev, rv **a, rv **out) {
  int64_t x, y, s;
  if (!rv_num_is_int(a[0], &x) || !rv_num_is_int(a[1], &y) || !rv_num_is_int(a[2], &s))
    return rg_bi_fail(ev, "numbers.range_step: operands must be integer numbers");
  if (s <= 0) return rg_bi_fail(ev, "numbers.range_step: step must be a positive integer");
  int64_t n = (x <= y ? y - x : x - y) / s + 1;
  if (n > 10000000) return rg_bi_fail(ev, "numbers.range_step: range too large");
  rv **items = rg_alloc(A, (size_t)n * sizeof(rv *));
  if (!items) return rg_bi_oom(ev);
  for (int64_t i = 0; i < n; i++) {
    items[i] = rv_int(A, x <= y ? x + i * s : x - i * s);
    if (!items[i]) return rg_bi_oom(ev);
  }
  RET(rv_arr(A, items, (size_t)n));
}

/* ---------------------------------------------------------------- membership */
static CT_RESULT rego__bi_member2(rg_ev *ev, rv **a, rv **out) {
  (void)ev;
  rv *x = a[0], *c = a[1];
  bool r = false;
  switch (c->t) {
    case RV_SET: r = rv_set_has(c, x); break;
    case RV_ARR:
      for (size_t i = 0; i < c->n && !r; i++) r = rv_eq(c->u.a[i], x);
      break;
    case RV_OBJ:
      for (size_t i = 0; i < c->n && !r; i++) r = rv_eq(c->u.o.v[i], x);
      break;
    default: break;
  }
  *out = rv_bool(r);
  return CT_OK;
}

static CT_RESULT rego__bi_member3(rg_ev *ev, rv **a, rv **out) {
  (void)ev;
  rv *k = a[0], *v = a[1], *c = a[2];
  bool r = false;
  switch (c->t) {
    case RV_SET: r = rv_set_has(c, v) && rv_eq(k, v); break;
    case RV_ARR: {
      int64_t i;
      if (k->t == RV_NUM && rv_num_is_int(k, &i) && i >= 0 && (uint64_t)i < c->n) r = rv_eq(c->u.a[i], v);
      break;
    }
    case RV_OBJ: {
      rv *x = rv_obj_get(c, k);
      r = x && rv_eq(x, v);
      break;
    }
    default: break;
  }
  *out = rv_bool(r);
  return CT_OK;
}

/* ---------------------------------------------------------------- aggregates */
/* Rune count as Go decodes UTF-8: each byte of an invalid sequence counts as one rune. */
static size_t rego__utf8_len(const char *s, size_t n) {
  size_t c = 0, i = 0;
  const unsigned char *u = (const unsigned char *)s;
  while (i < n) {
    unsigned char b = u[i];
    size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; k++)
      if ((u[i + k] & 0xC0) != 0x80) ok = false;
    if (ok && len == 2 && b < 0xC2) ok = false;
    if (ok && len == 3) {
      uint32_t cp = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(u[i + 1] & 0x3F) << 6) | (u[i + 2] & 0x3F);
      if (cp < 0x800 || (cp >= 0xD800 && cp < 0xE000)) ok = false;
    }
    if (ok && len == 4) {
      uint32_t cp = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(u[i + 1] & 0x3F) << 12) |
                    ((uint32_t)(u[i + 2] & 0x3F) << 6) | (u[i + 3] & 0x3F);
      if (cp < 0x10000 || cp > 0x10FFFF) ok = false;
    }
    i += ok ? len : 1;
    c++;
  }
  return c;
}

static CT_RESULT rego__bi_count(rg_ev *ev, rv **a, rv **out) {
  rv *x = a[0];
  switch (x->t) {
    case RV_STR: RET(rv_int(A, (int64_t)rego__utf8_len(x->u.s, x->n)));
    case RV_ARR:
    case RV_SET:
    case RV_OBJ: RET(rv_int(A, x->n));
    default:
      return rg_bi_type(ev, "count: operand 1 must be one of {array, object, set, string} but got %s", rg_type_name(x));
  }
}

static CT_RESULT rego__agg_nums(rg_ev *ev, const char *name, rv *x, bool prod, rv **out) {
  if (x->t != RV_ARR && x->t != RV_SET)
    return rg_bi_type(ev, "%s: operand 1 must be one of {array, set} but got %s", name, rg_type_name(x));
  rv *acc = rv_int(A, prod ? 1 : 0);
  if (!acc) return rg_bi_oom(ev);
  for (size_t i = 0; i < x->n; i++) {
    if (x->u.a[i]->t != RV_NUM)
      return rg_bi_type(ev, "%s: operand 1 must be one of {set[number], array[number]} but got %s", name,
                        x->t == RV_ARR ? "array[any]" : "set[any]");
    rv *args[2] = {acc, x->u.a[i]};
    CT_GUARD(rego__arith(ev, name, prod ? '*' : '+', args, &acc));
  }
  *out = acc;
  return CT_OK;
}
static CT_RESULT rego__bi_sum(rg_ev *ev, rv **a, rv **out) { return rego__agg_nums(ev, "sum", a[0], false, out); }
static CT_RESULT rego__bi_product(rg_ev *ev, rv **a, rv **out) { return rego__agg_nums(ev, "product", a[0], true, out); }

static CT_RESULT rego__minmax(rg_ev *ev, const char *name, rv *x, int sign, rv **out) {
  if (x->t != RV_ARR && x->t != RV_SET)
    return rg_bi_type(ev, "%s: operand 1 must be one of {array, set} but got %s", name, rg_type_name(x));
  *out = NULL;
  for (size_t i = 0; i < x->n; i++)
    if (!*out || rv_cmp(x->u.a[i], *out) * sign > 0) *out = x->u.a[i];
  return CT_OK;
}
static CT_RESULT rego__bi_max(rg_ev *ev, rv **a, rv **out) { return rego__minmax(ev, "max", a[0], 1, out); }
static CT_RESULT rego__bi_min(rg_ev *ev, rv **a, rv **out) { return rego__minmax(ev, "min", a[0], -1, out); }

static int rego__cmp_q(const void *x, const void *y) { return rv_cmp(*(rv *const *)x, *(rv *const *)y); }
static CT_RESULT rego__bi_sort(rg_ev *ev, rv **a, rv **out) {
  rv *x = a[0];
  if (x->t == RV_SET) RET(rv_arr(A, x->u.a, x->n));
  if (x->t != RV_ARR) return rg_bi_type(ev, "sort: operand 1 must be one of {array, set} but got %s", rg_type_name(x));
  rv *r = rv_arr(A, x->u.a, x->n);
  if (!r) return rg_bi_oom(ev);
  if (r->n > 1) qsort(r->u.a, r->n, sizeof(rv *), rego__cmp_q);
  *out = r;
  return CT_OK;
}

/* ---------------------------------------------------------------- types */
static CT_RESULT rego__is_t(rv *x, int t, rv **out) {
  *out = x->t == t ? RV_TRUE : NULL; /* OPA: is_* returns false? no: undefined when false is wrong */
  *out = rv_bool(x->t == t);
  return CT_OK;
}
static CT_RESULT rego__bi_is_number(rg_ev *ev, rv **a, rv **out) { (void)ev; return rego__is_t(a[0], RV_NUM, out); }
static CT_RESULT rego__bi_is_string(rg_ev *ev, rv **a, rv **out) { (void)ev; return rego__is_t(a[0], RV_STR, out); }
static CT_RESULT rego__bi_is_boolean(rg_ev *ev, rv **a, rv **out) { (void)ev; return rego__is_t(a[0], RV_BOOL, out); }
static CT_RESULT rego__bi_is_array(rg_ev *ev, rv **a, rv **out) { (void)ev; return rego__is_t(a[0], RV_ARR, out); }
static CT_RESULT rego__bi_is_set(rg_ev *ev, rv **a, rv **out) { (void)ev; return rego__is_t(a[0], RV_SET, out); }
static CT_RESULT rego__bi_is_object(rg_ev *ev, rv **a, rv **out) { (void)ev; return rego__is_t(a[0], RV_OBJ, out); }
static CT_RESULT rego__bi_is_null(rg_ev *ev, rv **a, rv **out) { (void)ev; return rego__is_t(a[0], RV_NULL, out); }
static CT_RESULT rego__bi_type_name(rg_ev *ev, rv **a, rv **out) { RET(rv_cstr(A, rg_type_name(a[0]))); }

static CT_RESULT rego__bi_to_number(rg_ev *ev, rv **a, rv **out) {
  rv *x = a[0];
  switch (x->t) {
    case RV_NULL: RET(rv_int(A, 0));
    case RV_BOOL: RET(rv_int(A, x->b ? 1 : 0));
    case RV_NUM: *out = x; return CT_OK;
    case RV_STR: {
      rv *v;
      ct_err e2 = {0};
      const char *s = x->u.s;
      size_t n = x->n;
      {
        const char *q = s + (n && (s[0] == '+' || s[0] == '-'));
        if (!strcasecmp(q, "nan") || !strcasecmp(q, "inf") || !strcasecmp(q, "infinity"))
          return rg_bi_type(ev, "to_number: operand 1 must be a finite number but got %s", s);
      }
      if (n && s[0] == '+') return rg_bi_fail(ev, "to_number: strconv.ParseFloat: parsing \"%s\": invalid syntax", s);
      if (rg_json_parse(A, s, n, 1, &v, &e2) != CT_OK || v->t != RV_NUM) {
        /* Go accepts forms JSON does not (".5", "1.", "0x1p3", "Inf") */
        char *end;
        double d = strtod(s, &end);
        if (!n || *end || isnan(d) || isinf(d))
          return rg_bi_fail(ev, "to_number: strconv.ParseFloat: parsing \"%s\": invalid syntax", s);
        RET(rv_dbl(A, d));
      }
      *out = v;
      return CT_OK;
    }
    default:
      return rg_bi_type(ev, "to_number: operand 1 must be one of {null, boolean, number, string} but got %s",
                        rg_type_name(x));
  }
}

static CT_RESULT rego__bi_opa_runtime(rg_ev *ev, rv **a, rv **out) {
  (void)ev;
  (void)a;
  *out = &rv_empty_obj_v;
  return CT_OK;
}

/* Policies must not reach the network from the trust plane: http.send exists (so that policies
 * mocking it with `with` compile and run) but always fails. */
static CT_RESULT rego__bi_http_send(rg_ev *ev, rv **a, rv **out) {
  (void)a;
  (void)out;
  return rg_bi_fail(ev, "http.send: disabled in coco-trust (policies cannot make network requests)");
}

static CT_RESULT rego__bi_print(rg_ev *ev, rv **a, rv **out) {
  (void)ev;
  (void)a;
  *out = RV_TRUE;
  return CT_OK;
}

const rg_builtin rg_builtins_core[] = {
    {"equal", 2, rego__bi_equal, false},
    {"neq", 2, rego__bi_neq, false},
    {"lt", 2, rego__bi_lt, false},
    {"gt", 2, rego__bi_gt, false},
    {"lte", 2, rego__bi_lte, false},
    {"gte", 2, rego__bi_gte, false},
    {"plus", 2, rego__bi_plus, false},
    {"minus", 2, rego__bi_minus, false},
    {"mul", 2, rego__bi_mul, false},
    {"div", 2, rego__bi_div, false},
    {"rem", 2, rego__bi_rem, false},
    {"or", 2, rego__bi_or, false},
    {"and", 2, rego__bi_and, false},
    {"round", 1, rego__bi_round, false},
    {"ceil", 1, rego__bi_ceil, false},
    {"floor", 1, rego__bi_floor, false},
    {"abs", 1, rego__bi_abs, false},
    {"numbers.range", 2, rego__bi_numbers_range, false},
    {"numbers.range_step", 3, rego__bi_numbers_range_step, false},
    {"internal.member_2", 2, rego__bi_member2, false},
    {"internal.member_3", 3, rego__bi_member3, false},
    {"count", 1, rego__bi_count, false},
    {"sum", 1, rego__bi_sum, false},
    {"product", 1, rego__bi_product, false},
    {"max", 1, rego__bi_max, false},
    {"min", 1, rego__bi_min, false},
    {"sort", 1, rego__bi_sort, false},
    {"is_number", 1, rego__bi_is_number, false},
    {"is_string", 1, rego__bi_is_string, false},
    {"is_boolean", 1, rego__bi_is_boolean, false},
    {"is_array", 1, rego__bi_is_array, false},
    {"is_set", 1, rego__bi_is_set, false},
    {"is_object", 1, rego__bi_is_object, false},
    {"is_null", 1, rego__bi_is_null, false},
    {"type_name", 1, rego__bi_type_name, false},
    {"to_number", 1, rego__bi_to_number, false},
    {"print", -1, rego__bi_print, false},
    {"opa.runtime", 0, rego__bi_opa_runtime, true},
    {"http.send", 1, rego__bi_http_send, true},
    {NULL, 0, NULL, false},
};
