/*
 * builtins_coll.c - arrays, sets and objects.
 */
#include <stdio.h>
#include <string.h>

#include "rego_bi.h"

static CT_RESULT rego__bi_array_concat(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "array.concat", 1, a[0], RV_ARR));
  CT_GUARD(rg_bi_want(ev, "array.concat", 2, a[1], RV_ARR));
  rv **items = rg_alloc(A, (a[0]->n + a[1]->n + 1) * sizeof(rv *));
  if (!items) return rg_bi_oom(ev);
  if (a[0]->n) memcpy(items, a[0]->u.a, a[0]->n * sizeof(rv *));
  if (a[1]->n) memcpy(items + a[0]->n, a[1]->u.a, a[1]->n * sizeof(rv *));
  RET(rv_arr(A, items, a[0]->n + a[1]->n));
}

static CT_RESULT rego__bi_array_slice(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "array.slice", 1, a[0], RV_ARR));
  CT_GUARD(rg_bi_want(ev, "array.slice", 2, a[1], RV_NUM));
  CT_GUARD(rg_bi_want(ev, "array.slice", 3, a[2], RV_NUM));
  int64_t s, e;
  if (!rv_num_is_int(a[1], &s) || !rv_num_is_int(a[2], &e)) return rg_bi_fail(ev, "array.slice: indices must be integers");
  int64_t n = a[0]->n;
  if (s < 0) s = 0;
  if (e > n) e = n;
  if (s >= e) RET(rv_arr(A, NULL, 0));
  RET(rv_arr(A, a[0]->u.a + s, (size_t)(e - s)));
}

static CT_RESULT rego__bi_array_reverse(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "array.reverse", 1, a[0], RV_ARR));
  rv *r = rv_arr(A, a[0]->u.a, a[0]->n);
  if (!r) return rg_bi_oom(ev);
  for (size_t i = 0; i < r->n / 2; i++) {
    rv *t = r->u.a[i];
    r->u.a[i] = r->u.a[r->n - 1 - i];
    r->u.a[r->n - 1 - i] = t;
  }
  *out = r;
  return CT_OK;
}

static CT_RESULT rego__flatten_into(rg_ev *ev, rv *x, rv ***items, size_t *n, size_t *cap) {
  for (size_t i = 0; i < x->n; i++) {
    rv *e = x->u.a[i];
    if (e->t == RV_ARR && x != e && (x->t == RV_SET)) {
      continue;
    }
    if (*n == *cap) {
      size_t nc = *cap ? *cap * 2 : 16;
      rv **ni = rg_alloc(A, nc * sizeof(rv *));
      if (!ni) return rg_bi_oom(ev);
      if (*n) memcpy(ni, *items, *n * sizeof(rv *));
      *items = ni;
      *cap = nc;
    }
    (*items)[(*n)++] = e;
  }
  return CT_OK;
}

static CT_RESULT rego__bi_array_flatten(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "array.flatten", 1, a[0], RV_ARR));
  rv **items = NULL;
  size_t n = 0, cap = 0;
  for (size_t i = 0; i < a[0]->n; i++) {
    rv *e = a[0]->u.a[i];
    if (e->t == RV_ARR) CT_GUARD(rego__flatten_into(ev, e, &items, &n, &cap));
    else {
      rv one = {.t = RV_SET, .n = 1};
      rv *ep[1] = {e};
      one.u.a = ep;
      one.t = RV_ARR;
      CT_GUARD(rego__flatten_into(ev, &one, &items, &n, &cap));
    }
  }
  RET(rv_arr(A, items, n));
}

/* ---------------------------------------------------------------- objects */
static CT_RESULT rego__bi_object_get(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "object.get", 1, a[0], RV_OBJ));
  rv *key = a[1];
  if (key->t == RV_ARR) {
    rv *cur = a[0];
    for (size_t i = 0; i < key->n; i++) {
      rv *nx = NULL;
      if (cur->t == RV_OBJ) nx = rv_obj_get(cur, key->u.a[i]);
      else if (cur->t == RV_ARR) {
        int64_t j;
        if (rv_num_is_int(key->u.a[i], &j) && j >= 0 && (uint64_t)j < cur->n) nx = cur->u.a[j];
      } else if (cur->t == RV_SET && rv_set_has(cur, key->u.a[i])) nx = key->u.a[i];
      if (!nx) {
        *out = a[2];
        return CT_OK;
      }
      cur = nx;
    }
    *out = cur;
    return CT_OK;
  }
  rv *v = rv_obj_get(a[0], key);
  *out = v ? v : a[2];
  return CT_OK;
}

static CT_RESULT rego__bi_object_keys(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "object.keys", 1, a[0], RV_OBJ));
  RET(rv_set(A, a[0]->u.o.k, a[0]->n));
}

static CT_RESULT rego__keyset(rg_ev *ev, const char *name, rv *x, rv **out) {
  if (x->t == RV_SET) {
    *out = x;
    return CT_OK;
  }
  if (x->t == RV_ARR) RET(rv_set(A, x->u.a, x->n));
  if (x->t == RV_OBJ) RET(rv_set(A, x->u.o.k, x->n));
  return rg_bi_type(ev, "%s: operand 2 must be one of {object, set, array} but got %s", name, rg_type_name(x));
}

static CT_RESULT rego__obj_filter(rg_ev *ev, rv *o, rv *keys, bool keep, rv **out) {
  rv **ks = rg_alloc(A, (o->n + 1) * sizeof(rv *)), **vs = rg_alloc(A, (o->n + 1) * sizeof(rv *));
  if (!ks || !vs) return rg_bi_oom(ev);
  size_t m = 0;
  for (size_t i = 0; i < o->n; i++)
    if (rv_set_has(keys, o->u.o.k[i]) == keep) {
      ks[m] = o->u.o.k[i];
      vs[m++] = o->u.o.v[i];
    }
  RET(rv_obj(A, ks, vs, m, NULL));
}

static CT_RESULT rego__bi_object_remove(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "object.remove", 1, a[0], RV_OBJ));
  rv *ks;
  CT_GUARD(rego__keyset(ev, "object.remove", a[1], &ks));
  return rego__obj_filter(ev, a[0], ks, false, out);
}

static CT_RESULT rego__bi_object_filter(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "object.filter", 1, a[0], RV_OBJ));
  rv *ks;
  CT_GUARD(rego__keyset(ev, "object.filter", a[1], &ks));
  return rego__obj_filter(ev, a[0], ks, true, out);
}

/* Recursive merge: values from b win, objects merge. */
static rv *rego__merge(rg_ev *ev, rv *x, rv *y) {
  if (x->t != RV_OBJ || y->t != RV_OBJ) return y;
  rv **ks = rg_alloc(A, (x->n + y->n + 1) * sizeof(rv *)), **vs = rg_alloc(A, (x->n + y->n + 1) * sizeof(rv *));
  if (!ks || !vs) return NULL;
  size_t m = 0;
  for (size_t i = 0; i < x->n; i++) {
    rv *yv = rv_obj_get(y, x->u.o.k[i]);
    ks[m] = x->u.o.k[i];
    vs[m] = yv ? rego__merge(ev, x->u.o.v[i], yv) : x->u.o.v[i];
    if (!vs[m]) return NULL;
    m++;
  }
  for (size_t i = 0; i < y->n; i++)
    if (!rv_obj_get(x, y->u.o.k[i])) {
      ks[m] = y->u.o.k[i];
      vs[m++] = y->u.o.v[i];
    }
  return rv_obj(A, ks, vs, m, NULL);
}

static CT_RESULT rego__bi_object_union(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "object.union", 1, a[0], RV_OBJ));
  CT_GUARD(rg_bi_want(ev, "object.union", 2, a[1], RV_OBJ));
  RET(rego__merge(ev, a[0], a[1]));
}

static CT_RESULT rego__bi_object_union_n(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "object.union_n", 1, a[0], RV_ARR));
  rv *acc = &rv_empty_obj_v;
  for (size_t i = 0; i < a[0]->n; i++) {
    if (a[0]->u.a[i]->t != RV_OBJ)
      return rg_bi_type(ev, "object.union_n: operand 1 must be array[object[any: any]] but got array[any]");
    acc = rego__merge(ev, acc, a[0]->u.a[i]);
    if (!acc) return rg_bi_oom(ev);
  }
  *out = acc;
  return CT_OK;
}

static bool rego__subset(rv *sup, rv *sub) {
  if (sup->t == RV_OBJ && sub->t == RV_OBJ) {
    for (size_t i = 0; i < sub->n; i++) {
      rv *v = rv_obj_get(sup, sub->u.o.k[i]);
      if (!v) return false;
      if (v->t == RV_OBJ && sub->u.o.v[i]->t == RV_OBJ) {
        if (!rego__subset(v, sub->u.o.v[i])) return false;
      } else if (!rv_eq(v, sub->u.o.v[i]))
        return false;
    }
    return true;
  }
  if (sup->t == RV_SET && sub->t == RV_SET) {
    for (size_t i = 0; i < sub->n; i++)
      if (!rv_set_has(sup, sub->u.a[i])) return false;
    return true;
  }
  if (sup->t == RV_ARR && sub->t == RV_ARR) {
    /* contiguous sub-array */
    if (!sub->n) return true;
    for (size_t s = 0; s + sub->n <= sup->n; s++) {
      bool ok = true;
      for (size_t j = 0; j < sub->n && ok; j++) ok = rv_eq(sup->u.a[s + j], sub->u.a[j]);
      if (ok) return true;
    }
    return false;
  }
  if (sup->t == RV_ARR && sub->t == RV_SET) {
    for (size_t i = 0; i < sub->n; i++) {
      bool f = false;
      for (size_t j = 0; j < sup->n && !f; j++) f = rv_eq(sup->u.a[j], sub->u.a[i]);
      if (!f) return false;
    }
    return true;
  }
  return false;
}

static CT_RESULT rego__bi_object_subset(rg_ev *ev, rv **a, rv **out) {
  rv *sup = a[0], *sub = a[1];
  bool ok_types = (sup->t == RV_OBJ && sub->t == RV_OBJ) || (sup->t == RV_SET && sub->t == RV_SET) ||
                  (sup->t == RV_ARR && (sub->t == RV_ARR || sub->t == RV_SET));
  if (!ok_types)
    return rg_bi_type(ev, "object.subset: both arguments must be objects, sets, or arrays");
  *out = rv_bool(rego__subset(sup, sub));
  return CT_OK;
}

/* ---------------------------------------------------------------- sets */
static CT_RESULT rego__bi_intersection(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "intersection", 1, a[0], RV_SET));
  if (!a[0]->n) RET(rv_set(A, NULL, 0));
  for (size_t i = 0; i < a[0]->n; i++)
    if (a[0]->u.a[i]->t != RV_SET) return rg_bi_type(ev, "intersection: operand 1 must be set[set[any]]");
  rv *first = a[0]->u.a[0];
  rv **items = rg_alloc(A, (first->n + 1) * sizeof(rv *));
  if (!items) return rg_bi_oom(ev);
  size_t m = 0;
  for (size_t i = 0; i < first->n; i++) {
    bool all = true;
    for (size_t j = 1; j < a[0]->n && all; j++) all = rv_set_has(a[0]->u.a[j], first->u.a[i]);
    if (all) items[m++] = first->u.a[i];
  }
  RET(rv_set(A, items, m));
}

static CT_RESULT rego__bi_union(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "union", 1, a[0], RV_SET));
  size_t total = 0;
  for (size_t i = 0; i < a[0]->n; i++) {
    if (a[0]->u.a[i]->t != RV_SET) return rg_bi_type(ev, "union: operand 1 must be set[set[any]]");
    total += a[0]->u.a[i]->n;
  }
  rv **items = rg_alloc(A, (total + 1) * sizeof(rv *));
  if (!items) return rg_bi_oom(ev);
  size_t m = 0;
  for (size_t i = 0; i < a[0]->n; i++)
    for (size_t j = 0; j < a[0]->u.a[i]->n; j++) items[m++] = a[0]->u.a[i]->u.a[j];
  RET(rv_set(A, items, m));
}

const rg_builtin rg_builtins_coll[] = {
    {"array.concat", 2, rego__bi_array_concat, false},
    {"array.slice", 3, rego__bi_array_slice, false},
    {"array.reverse", 1, rego__bi_array_reverse, false},
    {"array.flatten", 1, rego__bi_array_flatten, false},
    {"object.get", 3, rego__bi_object_get, false},
    {"object.keys", 1, rego__bi_object_keys, false},
    {"object.remove", 2, rego__bi_object_remove, false},
    {"object.filter", 2, rego__bi_object_filter, false},
    {"object.union", 2, rego__bi_object_union, false},
    {"object.union_n", 1, rego__bi_object_union_n, false},
    {"object.subset", 2, rego__bi_object_subset, false},
    {"intersection", 1, rego__bi_intersection, false},
    {"union", 1, rego__bi_union, false},
    {NULL, 0, NULL, false},
};

/* ---------------------------------------------------------------- json.filter / json.remove */
typedef struct {
  rv **seg;
  size_t n;
} jpath;

/* Paths: strings "a/b/0" (leading '/' optional, "~1" = '/', "~0" = '~') or arrays of keys. */
static CT_RESULT rego__parse_paths(rg_ev *ev, const char *name, rv *ps, jpath **out, size_t *np) {
  if (ps->t != RV_ARR && ps->t != RV_SET)
    return rg_bi_type(ev, "%s: operand 2 must be one of {set, array} but got %s", name, rg_type_name(ps));
  jpath *p = rg_alloc(A, (ps->n + 1) * sizeof(jpath));
  if (!p) return rg_bi_oom(ev);
  for (size_t i = 0; i < ps->n; i++) {
    rv *x = ps->u.a[i];
    if (x->t == RV_ARR) {
      p[i].seg = x->u.a;
      p[i].n = x->n;
      continue;
    }
    if (x->t != RV_STR)
      return rg_bi_type(ev, "%s: operand 2 must be one of {set, array} containing string paths or array of path segments but got %s",
                        name, rg_type_name(x));
    const char *s = x->u.s;
    size_t n = x->n, st = 0;
    if (n && s[0] == '/') st = 1;
    rv **segs = rg_alloc(A, (n + 2) * sizeof(rv *));
    if (!segs) return rg_bi_oom(ev);
    size_t m = 0;
    if (st < n || n == 0) {
      for (size_t j = st; j <= n; j++)
        if (j == n || s[j] == '/') {
          char *buf = rg_alloc(A, j - st + 1);
          if (!buf) return rg_bi_oom(ev);
          size_t w = 0;
          for (size_t q = st; q < j; q++) {
            if (s[q] == '~' && q + 1 < j && (s[q + 1] == '0' || s[q + 1] == '1')) {
              buf[w++] = s[q + 1] == '0' ? '~' : '/';
              q++;
            } else
              buf[w++] = s[q];
          }
          if (!(segs[m++] = rv_str(A, buf, w))) return rg_bi_oom(ev);
          st = j + 1;
        }
    }
    p[i].seg = segs;
    p[i].n = (n == 0 || (n == 1 && s[0] == '/')) ? 0 : m;
  }
  *out = p;
  *np = ps->n;
  return CT_OK;
}

static bool rego__seg_match(rv *key, rv *seg, bool is_array) {
  if (rv_eq(key, seg)) return true;
  if (is_array && seg->t == RV_STR && key->t == RV_NUM) {
    char b[32];
    int64_t i;
    if (!rv_num_is_int(key, &i)) return false;
    snprintf(b, sizeof(b), "%lld", (long long)i);
    return strlen(b) == seg->n && !memcmp(b, seg->u.s, seg->n);
  }
  return false;
}

/* Keeps only the given paths (depth d into each path). */
static rv *rego__jfilter(rg_ev *ev, rv *v, jpath *p, size_t np, size_t d) {
  for (size_t i = 0; i < np; i++)
    if (p[i].n == d) return v;
  if (v->t != RV_OBJ && v->t != RV_ARR && v->t != RV_SET) return NULL;
  size_t n = v->n;
  rv **ks = rg_alloc(A, (n + 1) * sizeof(rv *)), **vs = rg_alloc(A, (n + 1) * sizeof(rv *));
  jpath *sub = rg_alloc(A, (np + 1) * sizeof(jpath));
  if (!ks || !vs || !sub) return NULL;
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    rv *key = v->t == RV_OBJ ? v->u.o.k[i] : v->t == RV_SET ? v->u.a[i] : rv_int(A, (int64_t)i);
    rv *val = v->t == RV_OBJ ? v->u.o.v[i] : v->u.a[i];
    if (!key) return NULL;
    size_t ns = 0;
    for (size_t j = 0; j < np; j++)
      if (p[j].n > d && rego__seg_match(key, p[j].seg[d], v->t == RV_ARR)) sub[ns++] = p[j];
    if (!ns) continue;
    rv *f = rego__jfilter(ev, val, sub, ns, d + 1);
    if (!f) continue;
    ks[m] = key;
    vs[m++] = f;
  }
  if (v->t == RV_OBJ) return rv_obj(A, ks, vs, m, NULL);
  if (v->t == RV_SET) return rv_set(A, vs, m);
  return rv_arr(A, vs, m);
}

static rv *rego__jremove(rg_ev *ev, rv *v, jpath *p, size_t np, size_t d) {
  if (v->t != RV_OBJ && v->t != RV_ARR && v->t != RV_SET) return v;
  size_t n = v->n;
  rv **ks = rg_alloc(A, (n + 1) * sizeof(rv *)), **vs = rg_alloc(A, (n + 1) * sizeof(rv *));
  jpath *sub = rg_alloc(A, (np + 1) * sizeof(jpath));
  if (!ks || !vs || !sub) return NULL;
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    rv *key = v->t == RV_OBJ ? v->u.o.k[i] : v->t == RV_SET ? v->u.a[i] : rv_int(A, (int64_t)i);
    rv *val = v->t == RV_OBJ ? v->u.o.v[i] : v->u.a[i];
    if (!key) return NULL;
    bool drop = false;
    size_t ns = 0;
    for (size_t j = 0; j < np; j++)
      if (p[j].n > d && rego__seg_match(key, p[j].seg[d], v->t == RV_ARR)) {
        if (p[j].n == d + 1) drop = true;
        else sub[ns++] = p[j];
      }
    if (drop) continue;
    rv *r = ns ? rego__jremove(ev, val, sub, ns, d + 1) : val;
    if (!r) return NULL;
    ks[m] = key;
    vs[m++] = r;
  }
  if (v->t == RV_OBJ) return rv_obj(A, ks, vs, m, NULL);
  if (v->t == RV_SET) return rv_set(A, vs, m);
  return rv_arr(A, vs, m);
}

static CT_RESULT rego__bi_json_filter(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "json.filter", 1, a[0], RV_OBJ));
  jpath *p;
  size_t np;
  CT_GUARD(rego__parse_paths(ev, "json.filter", a[1], &p, &np));
  if (!np) RET(rv_obj(A, NULL, NULL, 0, NULL));
  *out = rego__jfilter(ev, a[0], p, np, 0);
  if (!*out) *out = rv_obj(A, NULL, NULL, 0, NULL);
  if (!*out) return rg_bi_oom(ev);
  return CT_OK;
}

static CT_RESULT rego__bi_json_remove(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "json.remove", 1, a[0], RV_OBJ));
  jpath *p;
  size_t np;
  CT_GUARD(rego__parse_paths(ev, "json.remove", a[1], &p, &np));
  RET(rego__jremove(ev, a[0], p, np, 0));
}


/* ---------------------------------------------------------------- walk and graphs */
typedef struct {
  rv **v;
  size_t n, cap;
} acc_t;

static CT_RESULT rego__acc_add(rg_ev *ev, acc_t *a, rv *x) {
  if (!x) return rg_bi_oom(ev);
  if (a->n == a->cap) {
    size_t nc = a->cap ? a->cap * 2 : 16;
    rv **nv = rg_alloc(A, nc * sizeof(rv *));
    if (!nv) return rg_bi_oom(ev);
    if (a->n) memcpy(nv, a->v, a->n * sizeof(rv *));
    a->v = nv;
    a->cap = nc;
  }
  a->v[a->n++] = x;
  return CT_OK;
}

/* walk(x): every [path, value] pair, pre-order (a relation: the evaluator iterates the result) */
static CT_RESULT rego__walk_into(rg_ev *ev, rv *v, rv **path, size_t depth, acc_t *acc) {
  if (depth > 10000) return rg_bi_fail(ev, "walk: too deep");
  rv *pair[2] = {rv_arr(A, path, depth), v};
  if (!pair[0]) return rg_bi_oom(ev);
  CT_GUARD(rego__acc_add(ev, acc, rv_arr(A, pair, 2)));
  if (v->t != RV_ARR && v->t != RV_OBJ && v->t != RV_SET) return CT_OK;
  rv **p2 = rg_alloc(A, (depth + 2) * sizeof(rv *));
  if (!p2) return rg_bi_oom(ev);
  if (depth) memcpy(p2, path, depth * sizeof(rv *));
  for (size_t i = 0; i < v->n; i++) {
    rv *k = v->t == RV_OBJ ? v->u.o.k[i] : v->t == RV_SET ? v->u.a[i] : rv_int(A, (int64_t)i);
    if (!k) return rg_bi_oom(ev);
    p2[depth] = k;
    CT_GUARD(rego__walk_into(ev, v->t == RV_OBJ ? v->u.o.v[i] : v->u.a[i], p2, depth + 1, acc));
  }
  return CT_OK;
}

CT_RESULT rg_bi_walk(rg_ev *ev, rv **a, rv **out) {
  acc_t acc = {0};
  CT_GUARD(rego__walk_into(ev, a[0], NULL, 0, &acc));
  RET(rv_arr(A, acc.v, acc.n));
}

static rv *rego__edges_of(rv *graph, rv *node) {
  rv *e = rv_obj_get(graph, node);
  return e && (e->t == RV_ARR || e->t == RV_SET) ? e : NULL;
}

static CT_RESULT rego__bi_graph_reachable(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "graph.reachable", 1, a[0], RV_OBJ));
  if (a[1]->t != RV_ARR && a[1]->t != RV_SET)
    return rg_bi_type(ev, "graph.reachable: operand 2 must be one of {array, set} but got %s", rg_type_name(a[1]));
  acc_t seen = {0}, queue = {0};
  for (size_t i = 0; i < a[1]->n; i++) CT_GUARD(rego__acc_add(ev, &queue, a[1]->u.a[i]));
  for (size_t q = 0; q < queue.n; q++) {
    rv *node = queue.v[q];
    bool dup = false;
    for (size_t i = 0; i < seen.n && !dup; i++) dup = rv_eq(seen.v[i], node);
    if (dup) continue;
    if (!rv_obj_get(a[0], node)) continue;
    CT_GUARD(rego__acc_add(ev, &seen, node));
    rv *e = rego__edges_of(a[0], node);
    for (size_t i = 0; e && i < e->n; i++) CT_GUARD(rego__acc_add(ev, &queue, e->u.a[i]));
  }
  RET(rv_set(A, seen.v, seen.n));
}

static CT_RESULT rego__paths_from(rg_ev *ev, rv *g, rv *node, rv **path, size_t depth, acc_t *acc) {
  if (depth > 1000) return rg_bi_fail(ev, "graph.reachable_paths: too deep");
  for (size_t i = 0; i < depth; i++)
    if (rv_eq(path[i], node)) return rego__acc_add(ev, acc, rv_arr(A, path, depth)); /* cycle: stop */
  if (!rv_obj_get(g, node)) return depth ? rego__acc_add(ev, acc, rv_arr(A, path, depth)) : CT_OK;
  rv **p2 = rg_alloc(A, (depth + 2) * sizeof(rv *));
  if (!p2) return rg_bi_oom(ev);
  if (depth) memcpy(p2, path, depth * sizeof(rv *));
  p2[depth] = node;
  rv *e = rego__edges_of(g, node);
  bool any = false;
  for (size_t i = 0; e && i < e->n; i++) {
    any = true;
    CT_GUARD(rego__paths_from(ev, g, e->u.a[i], p2, depth + 1, acc));
  }
  if (!any) return rego__acc_add(ev, acc, rv_arr(A, p2, depth + 1));
  return CT_OK;
}

static CT_RESULT rego__bi_graph_reachable_paths(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "graph.reachable_paths", 1, a[0], RV_OBJ));
  if (a[1]->t != RV_ARR && a[1]->t != RV_SET)
    return rg_bi_type(ev, "graph.reachable_paths: operand 2 must be one of {array, set} but got %s", rg_type_name(a[1]));
  acc_t acc = {0};
  for (size_t i = 0; i < a[1]->n; i++) CT_GUARD(rego__paths_from(ev, a[0], a[1]->u.a[i], NULL, 0, &acc));
  RET(rv_set(A, acc.v, acc.n));
}


/* ---------------------------------------------------------------- json.patch (RFC 6902) */
/* Splits a JSON pointer ("/a/b/0", "~0" = '~', "~1" = '/'); path arrays are taken as is. */
static bool rego__pointer_segs(rg_ev *ev, rv *p, rv ***segs, size_t *n) {
  if (p->t == RV_ARR) {
    *segs = p->u.a;
    *n = p->n;
    return true;
  }
  if (p->t != RV_STR) return false;
  if (!p->n) {
    *segs = NULL;
    *n = 0;
    return true;
  }
  if (p->n == 1 && p->u.s[0] == '/') {
    /* "/" addresses the key "" */
    *segs = rg_alloc(A, sizeof(rv *));
    if (!*segs || !((*segs)[0] = rv_str(A, "", 0))) return false;
    *n = 1;
    return true;
  }
  jpath jp;
  rv one = {.t = RV_ARR, .n = 1};
  rv *pp[1] = {p};
  one.u.a = pp;
  jpath *all;
  size_t np;
  if (rego__parse_paths(ev, "json.patch", &one, &all, &np) != CT_OK) return false;
  jp = all[0];
  *segs = jp.seg;
  *n = jp.n;
  return true;
}

/* Returns a copy of `doc` with `fn` applied at path[0..n). op: 'a' add, 'r' remove, 'p' replace */
static rv *rego__patch_at(rg_ev *ev, rv *doc, rv **path, size_t n, int op, rv *value, bool *ok) {
  if (!n) {
    if (op == 'r') {
      *ok = false;
      return NULL;
    }
    return value;
  }
  rv *key = path[0];
  if (doc->t == RV_OBJ) {
    rv *cur = rv_obj_get(doc, key);
    if (n > 1 || op != 'a') {
      if (!cur) {
        *ok = false;
        return NULL;
      }
    }
    rv **ks = rg_alloc(A, (doc->n + 1) * sizeof(rv *)), **vs = rg_alloc(A, (doc->n + 1) * sizeof(rv *));
    if (!ks || !vs) return NULL;
    size_t m = 0;
    for (size_t i = 0; i < doc->n; i++) {
      if (rv_eq(doc->u.o.k[i], key)) continue;
      ks[m] = doc->u.o.k[i];
      vs[m++] = doc->u.o.v[i];
    }
    if (n == 1 && op == 'r') return rv_obj(A, ks, vs, m, NULL);
    rv *nv = n == 1 ? value : rego__patch_at(ev, cur, path + 1, n - 1, op, value, ok);
    if (!*ok || !nv) return NULL;
    ks[m] = key;
    vs[m++] = nv;
    return rv_obj(A, ks, vs, m, NULL);
  }
  if (doc->t == RV_SET) {
    /* sets: the path segment is the element */
    bool has = rv_set_has(doc, key);
    rv **items = rg_alloc(A, (doc->n + 2) * sizeof(rv *));
    if (!items) return NULL;
    size_t m = 0;
    for (size_t i = 0; i < doc->n; i++)
      if (!rv_eq(doc->u.a[i], key)) items[m++] = doc->u.a[i];
    if (n == 1) {
      if (op == 'r' && !has) {
        *ok = false;
        return NULL;
      }
      if (op != 'r') items[m++] = value;
      return rv_set(A, items, m);
    }
    if (!has) {
      *ok = false;
      return NULL;
    }
    rv *nv = rego__patch_at(ev, key, path + 1, n - 1, op, value, ok);
    if (!*ok || !nv) return NULL;
    items[m++] = nv;
    return rv_set(A, items, m);
  }
  if (doc->t == RV_ARR) {
    int64_t idx = -1;
    if (key->t == RV_STR && key->n == 1 && key->u.s[0] == '-') idx = doc->n;
    else if (key->t == RV_STR) {
      char *end;
      char tmp[32];
      if (!key->n || key->n >= sizeof(tmp)) {
        *ok = false;
        return NULL;
      }
      memcpy(tmp, key->u.s, key->n);
      tmp[key->n] = 0;
      idx = strtoll(tmp, &end, 10);
      if (*end || (key->n > 1 && tmp[0] == '0') || tmp[0] == '-' || tmp[0] == '+') idx = -1;
    } else if (key->t == RV_NUM && !rv_num_is_int(key, &idx))
      idx = -1;
    bool insert = n == 1 && op == 'a';
    if (idx < 0 || (uint64_t)idx > doc->n || (!insert && (uint64_t)idx == doc->n)) {
      *ok = false;
      return NULL;
    }
    rv **items = rg_alloc(A, (doc->n + 2) * sizeof(rv *));
    if (!items) return NULL;
    size_t m = 0;
    for (size_t i = 0; i <= doc->n; i++) {
      if ((int64_t)i == idx) {
        if (insert) items[m++] = value;
        else if (n == 1 && op == 'r') {
        } else if (n == 1 && op == 'p')
          items[m++] = value;
        else {
          rv *nv = rego__patch_at(ev, doc->u.a[i], path + 1, n - 1, op, value, ok);
          if (!*ok || !nv) return NULL;
          items[m++] = nv;
        }
        if (!insert) continue;
      }
      if (i < doc->n) items[m++] = doc->u.a[i];
    }
    return rv_arr(A, items, m);
  }
  *ok = false;
  return NULL;
}

static rv *rego__get_at(rv *doc, rv **path, size_t n) {
  for (size_t i = 0; i < n && doc; i++) {
    rv *key = path[i];
    if (doc->t == RV_OBJ) doc = rv_obj_get(doc, key);
    else if (doc->t == RV_SET) doc = rv_set_has(doc, key) ? key : NULL;
    else if (doc->t == RV_ARR) {
      int64_t idx = -1;
      if (key->t == RV_STR && key->n && key->n < 31) {
        char tmp[32], *end;
        memcpy(tmp, key->u.s, key->n);
        tmp[key->n] = 0;
        idx = strtoll(tmp, &end, 10);
        if (*end || (key->n > 1 && tmp[0] == '0') || tmp[0] == '-' || tmp[0] == '+') idx = -1;
      } else if (key->t == RV_NUM && !rv_num_is_int(key, &idx))
        idx = -1;
      doc = idx >= 0 && (uint64_t)idx < doc->n ? doc->u.a[idx] : NULL;
    } else
      doc = NULL;
  }
  return doc;
}

static CT_RESULT rego__bi_json_patch(rg_ev *ev, rv **a, rv **out) {
  if (a[1]->t != RV_ARR) return rg_bi_type(ev, "json.patch: operand 2 must be array but got %s", rg_type_name(a[1]));
  rv *doc = a[0];
  for (size_t i = 0; i < a[1]->n; i++) {
    rv *p = a[1]->u.a[i];
    if (p->t != RV_OBJ) return rg_bi_type(ev, "json.patch: operand 2 must be an array of objects");
    rv *op = rv_obj_gets(p, "op"), *path = rv_obj_gets(p, "path"), *value = rv_obj_gets(p, "value"),
       *from = rv_obj_gets(p, "from");
    rv **segs, **fsegs = NULL;
    size_t ns, nf = 0;
    if (!op || op->t != RV_STR || !path || !rego__pointer_segs(ev, path, &segs, &ns)) return CT_OK; /* undefined */
    if (from && !rego__pointer_segs(ev, from, &fsegs, &nf)) return CT_OK;
    bool ok = true;
    const char *o = op->u.s;
    if (!strcmp(o, "add") || !strcmp(o, "replace")) {
      if (!value) return CT_OK;
      doc = rego__patch_at(ev, doc, segs, ns, o[0] == 'a' ? 'a' : 'p', value, &ok);
    } else if (!strcmp(o, "remove")) {
      doc = rego__patch_at(ev, doc, segs, ns, 'r', NULL, &ok);
    } else if (!strcmp(o, "move") || !strcmp(o, "copy")) {
      if (!from) return CT_OK;
      rv *v = rego__get_at(doc, fsegs, nf);
      if (!v) return CT_OK;
      if (o[0] == 'm') doc = rego__patch_at(ev, doc, fsegs, nf, 'r', NULL, &ok);
      if (ok && doc) doc = rego__patch_at(ev, doc, segs, ns, 'a', v, &ok);
    } else if (!strcmp(o, "test")) {
      rv *v = rego__get_at(doc, segs, ns);
      if (!v || !value || !rv_eq(v, value)) return CT_OK;
    } else
      return CT_OK;
    if (!ok) return CT_OK;
    if (!doc) return rg_bi_oom(ev);
  }
  *out = doc;
  return CT_OK;
}

const rg_builtin rg_builtins_json[] = {
    {"walk", 1, rg_bi_walk, false},
    {"json.patch", 2, rego__bi_json_patch, false},
    {"graph.reachable", 2, rego__bi_graph_reachable, false},
    {"graph.reachable_paths", 2, rego__bi_graph_reachable_paths, false},
    {"json.filter", 2, rego__bi_json_filter, false},
    {"json.remove", 2, rego__bi_json_remove, false},
    {NULL, 0, NULL, false},
};
