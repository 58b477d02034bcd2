/*
 * builtins_net.c - net.cidr_* built-ins (IPv4 and IPv6).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rego_bi.h"

typedef struct {
  int fam;          /* 4 or 6 */
  uint8_t a[16];    /* network address (v4 in the first 4 bytes) */
  int bits;         /* prefix length */
} cidr;

static int rego__nbytes(int fam) { return fam == 4 ? 4 : 16; }

static void rego__mask_to(cidr *c) {
  int nb = rego__nbytes(c->fam);
  for (int i = 0; i < nb; i++) {
    int keep = c->bits - i * 8;
    if (keep >= 8) continue;
    uint8_t keep_mask = (uint8_t)(keep <= 0 ? 0u : 0xFFu << (8 - keep)); /* the low byte */
    c->a[i] = (uint8_t)(c->a[i] & keep_mask);
  }
}

/* Parses "a.b.c.d/n", "x::y/n", or (allow_ip) a bare address. */
static bool rego__parse_cidr(const rv *s, bool allow_ip, cidr *c) {
  if (s->t != RV_STR || s->n >= 64) return false;
  char buf[64];
  memcpy(buf, s->u.s, s->n);
  buf[s->n] = 0;
  char *slash = strchr(buf, '/');
  memset(c, 0, sizeof(*c));
  if (slash) *slash = 0;
  else if (!allow_ip) return false;
  if (inet_pton(AF_INET, buf, c->a) == 1) c->fam = 4;
  else if (inet_pton(AF_INET6, buf, c->a) == 1) c->fam = 6;
  else return false;
  c->bits = rego__nbytes(c->fam) * 8;
  if (slash) {
    char *end;
    long b = strtol(slash + 1, &end, 10);
    if (!slash[1] || *end || b < 0 || b > c->bits) return false;
    c->bits = (int)b;
  }
  rego__mask_to(c);
  return true;
}

static bool rego__contains(const cidr *net, const cidr *x) {
  if (net->fam != x->fam || x->bits < net->bits) return false;
  cidr t = *x;
  t.bits = net->bits;
  rego__mask_to(&t);
  return !memcmp(t.a, net->a, (size_t)rego__nbytes(net->fam));
}

static rv *rego__fmt_cidr(rg_ev *ev, const cidr *c, bool with_bits) {
  char ip[64], out[80];
  inet_ntop(c->fam == 4 ? AF_INET : AF_INET6, c->a, ip, sizeof(ip));
  if (with_bits) snprintf(out, sizeof(out), "%s/%d", ip, c->bits);
  else snprintf(out, sizeof(out), "%s", ip);
  return rv_cstr(A, out);
}

static CT_RESULT rego__bi_cidr_contains(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "net.cidr_contains", 1, a[0], RV_STR));
  CT_GUARD(rg_bi_want(ev, "net.cidr_contains", 2, a[1], RV_STR));
  cidr n, x;
  if (!rego__parse_cidr(a[0], false, &n)) return rg_bi_fail(ev, "net.cidr_contains: invalid CIDR address: %s", a[0]->u.s);
  if (!rego__parse_cidr(a[1], true, &x)) return rg_bi_fail(ev, "net.cidr_contains: invalid CIDR or IP address: %s", a[1]->u.s);
  *out = rv_bool(rego__contains(&n, &x));
  return CT_OK;
}

static CT_RESULT rego__bi_cidr_intersects(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "net.cidr_intersects", 1, a[0], RV_STR));
  CT_GUARD(rg_bi_want(ev, "net.cidr_intersects", 2, a[1], RV_STR));
  cidr x, y;
  if (!rego__parse_cidr(a[0], false, &x)) return rg_bi_fail(ev, "net.cidr_intersects: invalid CIDR address: %s", a[0]->u.s);
  if (!rego__parse_cidr(a[1], false, &y)) return rg_bi_fail(ev, "net.cidr_intersects: invalid CIDR address: %s", a[1]->u.s);
  *out = rv_bool(rego__contains(&x, &y) || rego__contains(&y, &x));
  return CT_OK;
}

static CT_RESULT rego__bi_cidr_is_valid(rg_ev *ev, rv **a, rv **out) {
  (void)ev;
  cidr c;
  *out = rv_bool(a[0]->t == RV_STR && rego__parse_cidr(a[0], false, &c));
  return CT_OK;
}

static CT_RESULT rego__bi_cidr_expand(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "net.cidr_expand", 1, a[0], RV_STR));
  cidr c;
  if (!rego__parse_cidr(a[0], false, &c)) return rg_bi_fail(ev, "net.cidr_expand: invalid CIDR address: %s", a[0]->u.s);
  int host = rego__nbytes(c.fam) * 8 - c.bits;
  if (host > 16) return rg_bi_fail(ev, "net.cidr_expand: CIDR %s is too large to expand", a[0]->u.s);
  size_t cnt = (size_t)1 << host;
  rv **items = rg_alloc(A, cnt * sizeof(rv *));
  if (!items) return rg_bi_oom(ev);
  cidr cur = c;
  for (size_t i = 0; i < cnt; i++) {
    items[i] = rego__fmt_cidr(ev, &cur, false);
    if (!items[i]) return rg_bi_oom(ev);
    for (int b = rego__nbytes(c.fam) - 1; b >= 0; b--)
      if (++cur.a[b]) break;
  }
  RET(rv_set(A, items, cnt));
}

static int rego__cidr_cmp(const void *x, const void *y) {
  const cidr *p = x, *q = y;
  if (p->fam != q->fam) return p->fam - q->fam;
  int c = memcmp(p->a, q->a, (size_t)rego__nbytes(p->fam));
  if (c) return c;
  return p->bits - q->bits;
}

static CT_RESULT rego__bi_cidr_merge(rg_ev *ev, rv **a, rv **out) {
  rv *x = a[0];
  if (x->t != RV_ARR && x->t != RV_SET)
    return rg_bi_type(ev, "net.cidr_merge: operand 1 must be one of {array, set} but got %s", rg_type_name(x));
  cidr *cs = rg_alloc(A, (x->n + 1) * sizeof(cidr));
  if (!cs) return rg_bi_oom(ev);
  size_t n = 0;
  for (size_t i = 0; i < x->n; i++) {
    if (x->u.a[i]->t != RV_STR) return rg_bi_type(ev, "net.cidr_merge: operand 1 must contain strings");
    if (!rego__parse_cidr(x->u.a[i], true, &cs[n]))
      return rg_bi_fail(ev, "net.cidr_merge: IP address %s is invalid", x->u.a[i]->u.s);
    if (!memchr(x->u.a[i]->u.s, '/', x->u.a[i]->n)) {
      /* a bare address takes its classful default mask, as Go's net.IP.DefaultMask */
      if (cs[n].fam == 6) return rg_bi_fail(ev, "net.cidr_merge: IPv6 invalid: needs prefix length");
      uint8_t o = cs[n].a[0];
      cs[n].bits = o < 128 ? 8 : o < 192 ? 16 : o < 224 ? 24 : 32;
      rego__mask_to(&cs[n]);
    }
    n++;
  }
  if (n > 1) qsort(cs, n, sizeof(cidr), rego__cidr_cmp);
  /* drop networks contained in an earlier one, then merge sibling pairs until stable */
  bool changed = true;
  while (changed) {
    changed = false;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
      if (w && rego__contains(&cs[w - 1], &cs[i])) {
        changed = true;
        continue;
      }
      if (w && cs[w - 1].fam == cs[i].fam && cs[w - 1].bits == cs[i].bits && cs[i].bits > 0) {
        cidr parent = cs[i];
        parent.bits--;
        rego__mask_to(&parent);
        cidr p2 = cs[w - 1];
        p2.bits--;
        rego__mask_to(&p2);
        if (!memcmp(parent.a, p2.a, (size_t)rego__nbytes(parent.fam))) {
          cs[w - 1] = parent;
          changed = true;
          continue;
        }
      }
      cs[w++] = cs[i];
    }
    n = w;
    if (changed && n > 1) qsort(cs, n, sizeof(cidr), rego__cidr_cmp);
  }
  rv **items = rg_alloc(A, (n + 1) * sizeof(rv *));
  if (!items) return rg_bi_oom(ev);
  for (size_t i = 0; i < n; i++)
    if (!(items[i] = rego__fmt_cidr(ev, &cs[i], true))) return rg_bi_oom(ev);
  RET(rv_set(A, items, n));
}

/* Collects (key, cidr text) pairs from a string, array, set or object; array elements may be
 * tuples whose first element is the address. */
static CT_RESULT rego__collect(rg_ev *ev, int argn, rv *x, rv ***keys, rv ***vals, size_t *n) {
  size_t cap = x->t == RV_STR ? 1 : x->n;
  *keys = rg_alloc(A, (cap + 1) * sizeof(rv *));
  *vals = rg_alloc(A, (cap + 1) * sizeof(rv *));
  if (!*keys || !*vals) return rg_bi_oom(ev);
  *n = 0;
  if (x->t == RV_STR) {
    (*keys)[0] = x;
    (*vals)[0] = x;
    *n = 1;
    return CT_OK;
  }
  for (size_t i = 0; i < x->n; i++) {
    rv *k, *v;
    if (x->t == RV_ARR) {
      k = rv_int(A, (int64_t)i);
      v = x->u.a[i];
    } else if (x->t == RV_SET) {
      k = v = x->u.a[i];
    } else if (x->t == RV_OBJ) {
      k = x->u.o.k[i];
      v = x->u.o.v[i];
    } else
      return rg_bi_type(ev, "net.cidr_contains_matches: operand must be one of {string, array, set, object}");
    if (!k) return rg_bi_oom(ev);
    if (v->t == RV_ARR && v->n) v = v->u.a[0];
    if (v->t != RV_STR)
      return rg_bi_fail(ev, "net.cidr_contains_matches: operand %d: element must be string or non-empty array", argn);
    (*keys)[*n] = k;
    (*vals)[(*n)++] = v;
  }
  return CT_OK;
}

static CT_RESULT rego__bi_cidr_contains_matches(rg_ev *ev, rv **a, rv **out) {
  rv **k1, **v1, **k2, **v2;
  size_t n1, n2;
  CT_GUARD(rego__collect(ev, 1, a[0], &k1, &v1, &n1));
  CT_GUARD(rego__collect(ev, 2, a[1], &k2, &v2, &n2));
  rv **items = rg_alloc(A, (n1 * n2 + 1) * sizeof(rv *));
  if (!items) return rg_bi_oom(ev);
  size_t m = 0;
  for (size_t i = 0; i < n1; i++) {
    cidr c;
    if (!rego__parse_cidr(v1[i], false, &c))
      return rg_bi_fail(ev, "net.cidr_contains_matches: invalid CIDR address: %s", v1[i]->u.s);
    for (size_t j = 0; j < n2; j++) {
      cidr x;
      if (!rego__parse_cidr(v2[j], true, &x))
        return rg_bi_fail(ev, "net.cidr_contains_matches: invalid CIDR or IP address: %s", v2[j]->u.s);
      if (rego__contains(&c, &x)) {
        rv *pair[2] = {k1[i], k2[j]};
        if (!(items[m++] = rv_arr(A, pair, 2))) return rg_bi_oom(ev);
      }
    }
  }
  RET(rv_set(A, items, m));
}

const rg_builtin rg_builtins_net[] = {
    {"net.cidr_contains", 2, rego__bi_cidr_contains, false},
    {"net.cidr_intersects", 2, rego__bi_cidr_intersects, false},
    {"net.cidr_is_valid", 1, rego__bi_cidr_is_valid, false},
    {"net.cidr_expand", 1, rego__bi_cidr_expand, false},
    {"net.cidr_merge", 1, rego__bi_cidr_merge, false},
    {"net.cidr_contains_matches", 2, rego__bi_cidr_contains_matches, false},
    {NULL, 0, NULL, false},
};
