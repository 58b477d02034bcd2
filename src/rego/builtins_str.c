/*
 * builtins_str.c - string built-ins and sprintf (Go fmt verbs as OPA uses them).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rego_bi.h"

static const char *rego__memfind(const char *h, size_t hn, const char *n, size_t nn) {
  if (!nn) return h;
  if (nn > hn) return NULL;
  for (size_t i = 0; i + nn <= hn; i++)
    if (h[i] == n[0] && !memcmp(h + i, n, nn)) return h + i;
  return NULL;
}

static size_t rego__u8count(const char *s, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++)
    if (((unsigned char)s[i] & 0xC0) != 0x80) c++;
  return c;
}

/* byte offset of the rune with index r (or n when past the end) */
static size_t rego__u8off(const char *s, size_t n, size_t r) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++)
    if (((unsigned char)s[i] & 0xC0) != 0x80) {
      if (c == r) return i;
      c++;
    }
  return n;
}

static CT_RESULT rego__bi_concat(rg_ev *ev, rv **a, rv **out) {
  WANT_S("concat", 0);
  rv *c = a[1];
  if (c->t != RV_ARR && c->t != RV_SET)
    return rg_bi_type(ev, "concat: operand 2 must be one of {array, set} but got %s", rg_type_name(c));
  ct_buf b;
  ct_buf_init(&b, 1u << 28);
  ct_err e2;
  for (size_t i = 0; i < c->n; i++) {
    if (c->u.a[i]->t != RV_STR) {
      ct_buf_free(&b);
      return rg_bi_type(ev, "concat: operand 2 must be one of {set[string], array[string]} but got %s[any]",
                        c->t == RV_ARR ? "array" : "set");
    }
    if ((i && ct_buf_append(&b, a[0]->u.s, a[0]->n, &e2)) || ct_buf_append(&b, c->u.a[i]->u.s, c->u.a[i]->n, &e2)) {
      ct_buf_free(&b);
      return rg_bi_fail(ev, "concat: result too large");
    }
  }
  *out = rv_str(A, b.data ? (const char *)b.data : "", b.len);
  ct_buf_free(&b);
  if (!*out) return rg_bi_oom(ev);
  return CT_OK;
}

static CT_RESULT rego__bi_contains(rg_ev *ev, rv **a, rv **out) {
  WANT_S("contains", 0);
  WANT_S("contains", 1);
  *out = rv_bool(rego__memfind(a[0]->u.s, a[0]->n, a[1]->u.s, a[1]->n) != NULL);
  return CT_OK;
}
static CT_RESULT rego__bi_startswith(rg_ev *ev, rv **a, rv **out) {
  WANT_S("startswith", 0);
  WANT_S("startswith", 1);
  *out = rv_bool(a[1]->n <= a[0]->n && !memcmp(a[0]->u.s, a[1]->u.s, a[1]->n));
  return CT_OK;
}
static CT_RESULT rego__bi_endswith(rg_ev *ev, rv **a, rv **out) {
  WANT_S("endswith", 0);
  WANT_S("endswith", 1);
  *out = rv_bool(a[1]->n <= a[0]->n && !memcmp(a[0]->u.s + a[0]->n - a[1]->n, a[1]->u.s, a[1]->n));
  return CT_OK;
}

static CT_RESULT rego__bi_indexof(rg_ev *ev, rv **a, rv **out) {
  WANT_S("indexof", 0);
  WANT_S("indexof", 1);
  const char *p = rego__memfind(a[0]->u.s, a[0]->n, a[1]->u.s, a[1]->n);
  RET(rv_int(A, p ? (int64_t)rego__u8count(a[0]->u.s, (size_t)(p - a[0]->u.s)) : -1));
}

static CT_RESULT rego__bi_indexof_n(rg_ev *ev, rv **a, rv **out) {
  WANT_S("indexof_n", 0);
  WANT_S("indexof_n", 1);
  rv **items = rg_alloc(A, (a[0]->n + 1) * sizeof(rv *));
  if (!items) return rg_bi_oom(ev);
  size_t m = 0;
  for (size_t off = 0; off <= a[0]->n;) {
    const char *p = rego__memfind(a[0]->u.s + off, a[0]->n - off, a[1]->u.s, a[1]->n);
    if (!p) break;
    items[m] = rv_int(A, (int64_t)rego__u8count(a[0]->u.s, (size_t)(p - a[0]->u.s)));
    if (!items[m++]) return rg_bi_oom(ev);
    off = (size_t)(p - a[0]->u.s) + (a[1]->n ? a[1]->n : 1);
  }
  RET(rv_arr(A, items, m));
}

static CT_RESULT rego__casemap(rg_ev *ev, rv *x, const char *name, int up, rv **out) {
  CT_GUARD(rg_bi_want(ev, name, 1, x, RV_STR));
  char *s = rg_strndup(A, x->u.s, x->n);
  if (!s) return rg_bi_oom(ev);
  for (size_t i = 0; i < x->n; i++)
    if (!((unsigned char)s[i] & 0x80)) s[i] = (char)(up ? toupper((unsigned char)s[i]) : tolower((unsigned char)s[i]));
  RET(rv_str(A, s, x->n));
}
static CT_RESULT rego__bi_lower(rg_ev *ev, rv **a, rv **out) { return rego__casemap(ev, a[0], "lower", 0, out); }
static CT_RESULT rego__bi_upper(rg_ev *ev, rv **a, rv **out) { return rego__casemap(ev, a[0], "upper", 1, out); }

static CT_RESULT rego__replace_n(rg_ev *ev, rv *s, rv *old, rv *nw, long max, rv **out) {
  ct_buf b;
  ct_buf_init(&b, 1u << 28);
  ct_err e2;
  size_t off = 0;
  long done = 0;
  ct_status st = CT_OK;
  if (!old->n) {
    /* Go: empty old inserts `new` before each rune and at the end */
    for (size_t i = 0; i <= s->n && !st; i++) {
      if (i == s->n || ((unsigned char)s->u.s[i] & 0xC0) != 0x80) {
        if (max < 0 || done < max) {
          st = ct_buf_append(&b, nw->u.s, nw->n, &e2);
          done++;
        }
      }
      if (i < s->n && !st) st = ct_buf_append(&b, s->u.s + i, 1, &e2);
    }
  } else {
    while (!st) {
      const char *p = (max < 0 || done < max) ? rego__memfind(s->u.s + off, s->n - off, old->u.s, old->n) : NULL;
      if (!p) {
        st = ct_buf_append(&b, s->u.s + off, s->n - off, &e2);
        break;
      }
      size_t pos = (size_t)(p - s->u.s);
      st = ct_buf_append(&b, s->u.s + off, pos - off, &e2);
      if (!st) st = ct_buf_append(&b, nw->u.s, nw->n, &e2);
      off = pos + old->n;
      done++;
    }
  }
  if (st) {
    ct_buf_free(&b);
    return rg_bi_fail(ev, "replace: result too large");
  }
  *out = rv_str(A, b.data ? (const char *)b.data : "", b.len);
  ct_buf_free(&b);
  if (!*out) return rg_bi_oom(ev);
  return CT_OK;
}

static CT_RESULT rego__bi_replace(rg_ev *ev, rv **a, rv **out) {
  WANT_S("replace", 0);
  WANT_S("replace", 1);
  WANT_S("replace", 2);
  return rego__replace_n(ev, a[0], a[1], a[2], -1, out);
}

static CT_RESULT rego__bi_strings_replace_n(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "strings.replace_n", 1, a[0], RV_OBJ));
  CT_GUARD(rg_bi_want(ev, "strings.replace_n", 2, a[1], RV_STR));
  rv *cur = a[1];
  for (size_t i = 0; i < a[0]->n; i++) {
    if (a[0]->u.o.k[i]->t != RV_STR) return rg_bi_type(ev, "strings.replace_n: operand 1 non-string key found in pattern object");
    if (a[0]->u.o.v[i]->t != RV_STR) return rg_bi_type(ev, "strings.replace_n: operand 1 non-string value found in pattern object");
  }
  /* Go's NewReplacer: an empty old string matches at every rune boundary */
  rv *empty_new = NULL;
  for (size_t k = 0; k < a[0]->n; k++)
    if (!a[0]->u.o.k[k]->n) empty_new = a[0]->u.o.v[k];
  /* Go's strings.NewReplacer: left-to-right, first matching pattern in argument order (sorted keys here) */
  ct_buf b;
  ct_buf_init(&b, 1u << 28);
  ct_err e2;
  size_t i = 0;
  ct_status st = CT_OK;
  while (i <= cur->n && !st) {
    bool hit = false;
    if (empty_new) st = ct_buf_append(&b, empty_new->u.s, empty_new->n, &e2);
    if (i >= cur->n || st) break;
    for (size_t k = 0; k < a[0]->n && i < cur->n; k++) {
      rv *old = a[0]->u.o.k[k];
      if (old->n && old->n <= cur->n - i && !memcmp(cur->u.s + i, old->u.s, old->n)) {
        st = ct_buf_append(&b, a[0]->u.o.v[k]->u.s, a[0]->u.o.v[k]->n, &e2);
        i += old->n;
        hit = true;
        break;
      }
    }
    if (hit || st) continue;
    size_t j = i + 1;
    while (j < cur->n && ((unsigned char)cur->u.s[j] & 0xC0) == 0x80) j++;
    st = ct_buf_append(&b, cur->u.s + i, j - i, &e2);
    i = j;
  }
  if (st) {
    ct_buf_free(&b);
    return rg_bi_fail(ev, "strings.replace_n: result too large");
  }
  *out = rv_str(A, b.data ? (const char *)b.data : "", b.len);
  ct_buf_free(&b);
  if (!*out) return rg_bi_oom(ev);
  return CT_OK;
}

static CT_RESULT rego__bi_split(rg_ev *ev, rv **a, rv **out) {
  WANT_S("split", 0);
  WANT_S("split", 1);
  rv *s = a[0], *d = a[1];
  rv **items = rg_alloc(A, (s->n + 2) * sizeof(rv *));
  if (!items) return rg_bi_oom(ev);
  size_t m = 0;
  if (!d->n) {
    for (size_t i = 0; i < s->n;) {
      size_t j = i + 1;
      while (j < s->n && ((unsigned char)s->u.s[j] & 0xC0) == 0x80) j++;
      items[m] = rv_str(A, s->u.s + i, j - i);
      if (!items[m++]) return rg_bi_oom(ev);
      i = j;
    }
    RET(rv_arr(A, items, m));
  }
  size_t off = 0;
  for (;;) {
    const char *p = rego__memfind(s->u.s + off, s->n - off, d->u.s, d->n);
    size_t end = p ? (size_t)(p - s->u.s) : s->n;
    items[m] = rv_str(A, s->u.s + off, end - off);
    if (!items[m++]) return rg_bi_oom(ev);
    if (!p) break;
    off = end + d->n;
  }
  RET(rv_arr(A, items, m));
}

/* OPA: n > 0 keeps the first n parts, n < 0 the last |n| parts, 0 none */
static CT_RESULT rego__bi_split_n(rg_ev *ev, rv **a, rv **out) {
  WANT_S("strings.split_n", 0);
  WANT_S("strings.split_n", 1);
  CT_GUARD(rg_bi_want(ev, "strings.split_n", 3, a[2], RV_NUM));
  int64_t lim;
  if (!rv_num_is_int(a[2], &lim))
    return rg_bi_type(ev, "strings.split_n: operand 3 must be integer number but got floating-point number");
  rv *all;
  CT_GUARD(rego__bi_split(ev, a, &all));
  if (lim == 0) RET(rv_arr(A, NULL, 0));
  size_t n = all->n, k = (size_t)(lim < 0 ? -lim : lim);
  if (k >= n) {
    *out = all;
    return CT_OK;
  }
  RET(rv_arr(A, lim > 0 ? all->u.a : all->u.a + (n - k), k));
}

static CT_RESULT rego__bi_substring(rg_ev *ev, rv **a, rv **out) {
  WANT_S("substring", 0);
  CT_GUARD(rg_bi_want(ev, "substring", 2, a[1], RV_NUM));
  CT_GUARD(rg_bi_want(ev, "substring", 3, a[2], RV_NUM));
  int64_t st, ln;
  if (!rv_num_is_int(a[1], &st)) return rg_bi_fail(ev, "substring: operand 2 must be integer number but got floating-point number");
  if (!rv_num_is_int(a[2], &ln)) return rg_bi_fail(ev, "substring: operand 3 must be integer number but got floating-point number");
  if (st < 0) return rg_bi_fail(ev, "substring: negative offset");
  size_t runes = rego__u8count(a[0]->u.s, a[0]->n);
  if ((uint64_t)st >= runes) RET(rv_str(A, "", 0));
  size_t b0 = rego__u8off(a[0]->u.s, a[0]->n, (size_t)st);
  size_t b1 = (ln < 0 || (uint64_t)(st + ln) >= runes) ? a[0]->n : rego__u8off(a[0]->u.s, a[0]->n, (size_t)(st + ln));
  RET(rv_str(A, a[0]->u.s + b0, b1 - b0));
}

/* trim helpers: cutset is a set of runes */
static bool rego__in_cutset(const char *cs, size_t csn, const char *r, size_t rn) {
  for (size_t i = 0; i < csn;) {
    size_t j = i + 1;
    while (j < csn && ((unsigned char)cs[j] & 0xC0) == 0x80) j++;
    if (j - i == rn && !memcmp(cs + i, r, rn)) return true;
    i = j;
  }
  return false;
}

static CT_RESULT rego__trim_gen(rg_ev *ev, rv *s, const char *cs, size_t csn, bool left, bool right, rv **out) {
  size_t b = 0, e = s->n;
  while (left && b < e) {
    size_t j = b + 1;
    while (j < e && ((unsigned char)s->u.s[j] & 0xC0) == 0x80) j++;
    if (!rego__in_cutset(cs, csn, s->u.s + b, j - b)) break;
    b = j;
  }
  while (right && e > b) {
    size_t j = e - 1;
    while (j > b && ((unsigned char)s->u.s[j] & 0xC0) == 0x80) j--;
    if (!rego__in_cutset(cs, csn, s->u.s + j, e - j)) break;
    e = j;
  }
  RET(rv_str(A, s->u.s + b, e - b));
}

static CT_RESULT rego__bi_trim(rg_ev *ev, rv **a, rv **out) {
  WANT_S("trim", 0);
  WANT_S("trim", 1);
  return rego__trim_gen(ev, a[0], a[1]->u.s, a[1]->n, true, true, out);
}
static CT_RESULT rego__bi_trim_left(rg_ev *ev, rv **a, rv **out) {
  WANT_S("trim_left", 0);
  WANT_S("trim_left", 1);
  return rego__trim_gen(ev, a[0], a[1]->u.s, a[1]->n, true, false, out);
}
static CT_RESULT rego__bi_trim_right(rg_ev *ev, rv **a, rv **out) {
  WANT_S("trim_right", 0);
  WANT_S("trim_right", 1);
  return rego__trim_gen(ev, a[0], a[1]->u.s, a[1]->n, false, true, out);
}
static CT_RESULT rego__bi_trim_space(rg_ev *ev, rv **a, rv **out) {
  WANT_S("trim_space", 0);
  static const char ws[] = " \t\n\r\v\f\xc2\x85\xc2\xa0";
  return rego__trim_gen(ev, a[0], ws, sizeof(ws) - 1, true, true, out);
}
static CT_RESULT rego__bi_trim_prefix(rg_ev *ev, rv **a, rv **out) {
  WANT_S("trim_prefix", 0);
  WANT_S("trim_prefix", 1);
  if (a[1]->n <= a[0]->n && !memcmp(a[0]->u.s, a[1]->u.s, a[1]->n)) RET(rv_str(A, a[0]->u.s + a[1]->n, a[0]->n - a[1]->n));
  *out = a[0];
  return CT_OK;
}
static CT_RESULT rego__bi_trim_suffix(rg_ev *ev, rv **a, rv **out) {
  WANT_S("trim_suffix", 0);
  WANT_S("trim_suffix", 1);
  if (a[1]->n <= a[0]->n && !memcmp(a[0]->u.s + a[0]->n - a[1]->n, a[1]->u.s, a[1]->n))
    RET(rv_str(A, a[0]->u.s, a[0]->n - a[1]->n));
  *out = a[0];
  return CT_OK;
}

static CT_RESULT rego__bi_strings_reverse(rg_ev *ev, rv **a, rv **out) {
  WANT_S("strings.reverse", 0);
  rv *s = a[0];
  char *buf = rg_alloc(A, s->n + 1);
  if (!buf) return rg_bi_oom(ev);
  size_t w = s->n;
  for (size_t i = 0; i < s->n;) {
    size_t j = i + 1;
    while (j < s->n && ((unsigned char)s->u.s[j] & 0xC0) == 0x80) j++;
    w -= j - i;
    memcpy(buf + w, s->u.s + i, j - i);
    i = j;
  }
  RET(rv_str(A, buf, s->n));
}

static CT_RESULT rego__bi_strings_count(rg_ev *ev, rv **a, rv **out) {
  WANT_S("strings.count", 0);
  WANT_S("strings.count", 1);
  if (!a[1]->n) RET(rv_int(A, (int64_t)rego__u8count(a[0]->u.s, a[0]->n) + 1));
  int64_t c = 0;
  for (size_t off = 0;;) {
    const char *p = rego__memfind(a[0]->u.s + off, a[0]->n - off, a[1]->u.s, a[1]->n);
    if (!p) break;
    c++;
    off = (size_t)(p - a[0]->u.s) + a[1]->n;
  }
  RET(rv_int(A, c));
}

static CT_RESULT rego__any_fix(rg_ev *ev, rv **a, bool prefix, rv **out) {
  const char *name = prefix ? "strings.any_prefix_match" : "strings.any_suffix_match";
  rv *lists[2] = {a[0], a[1]};
  rv *one[2] = {a[0], a[1]};
  rv **items[2];
  size_t n[2];
  for (int k = 0; k < 2; k++) {
    rv *x = lists[k];
    if (x->t == RV_STR) {
      items[k] = &one[k];
      n[k] = 1;
    } else if (x->t == RV_ARR || x->t == RV_SET) {
      items[k] = x->u.a;
      n[k] = x->n;
      for (size_t i = 0; i < x->n; i++)
        if (x->u.a[i]->t != RV_STR)
          return rg_bi_type(ev, "%s: operand %d must be %s of strings but got %s containing %s", name, k + 1,
                            x->t == RV_ARR ? "array" : "set", x->t == RV_ARR ? "array" : "set", rg_type_name(x->u.a[i]));
    } else
      return rg_bi_type(ev, "%s: operand %d must be one of {string, set, array} but got %s", name, k + 1, rg_type_name(x));
  }
  for (size_t i = 0; i < n[0]; i++)
    for (size_t j = 0; j < n[1]; j++) {
      rv *s = items[0][i], *f = items[1][j];
      if (f->n <= s->n && !memcmp(prefix ? s->u.s : s->u.s + s->n - f->n, f->u.s, f->n)) {
        *out = RV_TRUE;
        return CT_OK;
      }
    }
  *out = RV_FALSE;
  return CT_OK;
}
static CT_RESULT rego__bi_any_prefix(rg_ev *ev, rv **a, rv **out) { return rego__any_fix(ev, a, true, out); }
static CT_RESULT rego__bi_any_suffix(rg_ev *ev, rv **a, rv **out) { return rego__any_fix(ev, a, false, out); }

static CT_RESULT rego__bi_format_int(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "format_int", 1, a[0], RV_NUM));
  CT_GUARD(rg_bi_want(ev, "format_int", 2, a[1], RV_NUM));
  int64_t base;
  if (!rv_num_is_int(a[1], &base) || (base != 2 && base != 8 && base != 10 && base != 16))
    return rg_bi_type(ev, "format_int: operand 2 must be one of {2, 8, 10, 16}");
  if (a[0]->nk == RN_BIG) {
    /* arbitrary precision: repeated division of the decimal text */
    const char *t = a[0]->u.s;
    bool neg = t[0] == '-';
    if (neg) t++;
    size_t n = strlen(t);
    char *num = rg_strndup(A, t, n), *res = rg_alloc(A, n * 4 + 4);
    if (!num || !res) return rg_bi_oom(ev);
    size_t rl = 0;
    for (;;) {
      bool zero = true;
      int rem = 0;
      for (size_t i = 0; i < n; i++) {
        int cur = rem * 10 + (num[i] - '0');
        num[i] = (char)('0' + cur / (int)base);
        rem = cur % (int)base;
        if (num[i] != '0') zero = false;
      }
      res[rl++] = "0123456789abcdef"[rem];
      if (zero) break;
    }
    if (neg) res[rl++] = '-';
    for (size_t i = 0; i < rl / 2; i++) {
      char c = res[i];
      res[i] = res[rl - 1 - i];
      res[rl - 1 - i] = c;
    }
    RET(rv_str(A, res, rl));
  }
  double d = rv_num_dbl(a[0]);
  d = d < 0 ? ceil(d) : floor(d);
  int64_t v = (int64_t)d;
  int64_t iv;
  if (rv_num_is_int(a[0], &iv)) v = iv;
  char buf[80];
  size_t w = sizeof(buf);
  buf[--w] = 0;
  bool neg = v < 0;
  uint64_t u = neg ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    buf[--w] = "0123456789abcdef"[u % (uint64_t)base];
    u /= (uint64_t)base;
  } while (u);
  if (neg) buf[--w] = '-';
  RET(rv_cstr(A, buf + w));
}

/* ---------------------------------------------------------------- sprintf */
/* The format specs passed to snprintf are built from the user's format string after checking
 * that they only hold flags, width and precision, followed by a verb we select. */
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static CT_RESULT rego__fmt_value(rg_ev *ev, rv *v, ct_buf *b) {
  ct_err e2;
  if (v->t == RV_STR) {
    if (ct_buf_append(b, v->u.s, v->n, &e2)) return rg_bi_fail(ev, "sprintf: result too large");
    return CT_OK;
  }
  if (rg_value_write_rego(v, b, &e2)) return rg_bi_fail(ev, "sprintf: result too large");
  return CT_OK;
}

static CT_RESULT rego__bi_sprintf(rg_ev *ev, rv **a, rv **out) {
  WANT_S("sprintf", 0);
  CT_GUARD(rg_bi_want(ev, "sprintf", 2, a[1], RV_ARR));
  const char *f = a[0]->u.s;
  size_t fn = a[0]->n, ai = 0;
  rv *args = a[1];
  ct_buf b;
  ct_buf_init(&b, 1u << 26);
  ct_err e2;
  ct_status st = CT_OK;
  for (size_t i = 0; i < fn && !st; i++) {
    if (f[i] != '%') {
      st = ct_buf_append(&b, f + i, 1, &e2);
      continue;
    }
    if (i + 1 < fn && f[i + 1] == '%') {
      st = ct_buf_append(&b, "%", 1, &e2);
      i++;
      continue;
    }
    /* flags/width/precision */
    char spec[32] = "%";
    size_t sp = 1;
    i++;
    while (i < fn && strchr("+- #0123456789.", f[i]) && sp < 24) spec[sp++] = f[i++];
    if (i >= fn) {
      st = ct_buf_append_str(&b, "%!(NOVERB)", &e2);
      break;
    }
    char verb = f[i];
    if (ai >= args->n) {
      st = ct_buf_printf(&b, &e2, "%%!%c(MISSING)", verb);
      continue;
    }
    rv *v = args->u.a[ai++];
    char tmp[512];
    switch (verb) {
      case 'v':
      case 's':
        if (v->t == RV_NUM && verb == 'v') {
          st = rg_num_write(v, &b, &e2);
        } else st = rego__fmt_value(ev, v, &b);
        break;
      case 'd':
      case 'x':
      case 'X':
      case 'o':
      case 'b':
      case 'c':
        if (v->t == RV_NUM) {
          int64_t iv;
          if (rv_num_is_int(v, &iv) && (v->nk != RN_DBL || v->u.d == floor(v->u.d))) {
            if (verb == 'b') {
              char bb[70];
              size_t w = sizeof(bb);
              bb[--w] = 0;
              uint64_t u = iv < 0 ? (uint64_t)0 - (uint64_t)iv : (uint64_t)iv;
              do {
                bb[--w] = (char)('0' + (u & 1));
                u >>= 1;
              } while (u);
              if (iv < 0) bb[--w] = '-';
              st = ct_buf_append_str(&b, bb + w, &e2);
            } else if (verb == 'c') {
              char u8[5] = {0};
              uint32_t cp = (uint32_t)iv;
              if (cp < 0x80) u8[0] = (char)cp;
              else if (cp < 0x800) { u8[0] = (char)(0xC0 | (cp >> 6)); u8[1] = (char)(0x80 | (cp & 0x3F)); }
              else { u8[0] = (char)(0xE0 | (cp >> 12)); u8[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); u8[2] = (char)(0x80 | (cp & 0x3F)); }
              st = ct_buf_append_str(&b, u8, &e2);
            } else {
              spec[sp++] = 'l';
              spec[sp++] = 'l';
              spec[sp++] = verb;
              spec[sp] = 0;
              snprintf(tmp, sizeof(tmp), spec, (long long)iv);
              st = ct_buf_append_str(&b, tmp, &e2);
            }
          } else if (v->nk == RN_BIG) {
            st = ct_buf_append_str(&b, v->u.s, &e2);
          } else {
            snprintf(tmp, sizeof(tmp), "%%!%c(big.Float=", verb);
            st = ct_buf_append_str(&b, tmp, &e2);
            if (!st) st = rg_num_write(v, &b, &e2);
            if (!st) st = ct_buf_append_str(&b, ")", &e2);
          }
        } else if (v->t == RV_STR && (verb == 'x' || verb == 'X')) {
          for (size_t k = 0; k < v->n && !st; k++)
            st = ct_buf_printf(&b, &e2, verb == 'x' ? "%02x" : "%02X", (unsigned char)v->u.s[k]);
        } else {
          snprintf(tmp, sizeof(tmp), "%%!%c(", verb);
          st = ct_buf_append_str(&b, tmp, &e2);
          if (!st) st = rego__fmt_value(ev, v, &b);
          if (!st) st = ct_buf_append_str(&b, ")", &e2);
        }
        break;
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G':
        if (v->t == RV_NUM) {
          spec[sp++] = verb;
          spec[sp] = 0;
          snprintf(tmp, sizeof(tmp), spec, rv_num_dbl(v));
          st = ct_buf_append_str(&b, tmp, &e2);
        } else {
          snprintf(tmp, sizeof(tmp), "%%!%c(", verb);
          st = ct_buf_append_str(&b, tmp, &e2);
          if (!st) st = rego__fmt_value(ev, v, &b);
          if (!st) st = ct_buf_append_str(&b, ")", &e2);
        }
        break;
      case 't':
        if (v->t == RV_BOOL) st = ct_buf_append_str(&b, v->b ? "true" : "false", &e2);
        else {
          st = ct_buf_append_str(&b, "%!t(", &e2);
          if (!st) st = rego__fmt_value(ev, v, &b);
          if (!st) st = ct_buf_append_str(&b, ")", &e2);
        }
        break;
      case 'q':
        if (v->t == RV_STR) st = rg_json_write(v, &b, false, 0, &e2);
        else st = rego__fmt_value(ev, v, &b);
        break;
      default:
        snprintf(tmp, sizeof(tmp), "%%!%c(", verb);
        st = ct_buf_append_str(&b, tmp, &e2);
        if (!st) st = rego__fmt_value(ev, v, &b);
        if (!st) st = ct_buf_append_str(&b, ")", &e2);
    }
  }
  if (!st && ai < args->n) {
    st = ct_buf_append_str(&b, "%!(EXTRA ", &e2);
    for (size_t k = ai; k < args->n && !st; k++) {
      if (k > ai) st = ct_buf_append_str(&b, ", ", &e2);
      if (!st) st = ct_buf_printf(&b, &e2, "%s=", args->u.a[k]->t == RV_STR ? "string" : "*ast.Term");
      if (!st) st = rego__fmt_value(ev, args->u.a[k], &b);
    }
    if (!st) st = ct_buf_append_str(&b, ")", &e2);
  }
  if (st) {
    ct_buf_free(&b);
    return st == CT_EINVAL ? st : rg_bi_fail(ev, "sprintf: result too large");
  }
  *out = rv_str(A, b.data ? (const char *)b.data : "", b.len);
  ct_buf_free(&b);
  if (!*out) return rg_bi_oom(ev);
  return CT_OK;
}

const rg_builtin rg_builtins_str[] = {
    {"concat", 2, rego__bi_concat, false},
    {"contains", 2, rego__bi_contains, false},
    {"startswith", 2, rego__bi_startswith, false},
    {"endswith", 2, rego__bi_endswith, false},
    {"indexof", 2, rego__bi_indexof, false},
    {"indexof_n", 2, rego__bi_indexof_n, false},
    {"lower", 1, rego__bi_lower, false},
    {"upper", 1, rego__bi_upper, false},
    {"replace", 3, rego__bi_replace, false},
    {"strings.replace_n", 2, rego__bi_strings_replace_n, false},
    {"split", 2, rego__bi_split, false},
    {"strings.split_n", 3, rego__bi_split_n, false},
    {"substring", 3, rego__bi_substring, false},
    {"trim", 2, rego__bi_trim, false},
    {"trim_left", 2, rego__bi_trim_left, false},
    {"trim_right", 2, rego__bi_trim_right, false},
    {"trim_space", 1, rego__bi_trim_space, false},
    {"trim_prefix", 2, rego__bi_trim_prefix, false},
    {"trim_suffix", 2, rego__bi_trim_suffix, false},
    {"strings.reverse", 1, rego__bi_strings_reverse, false},
    {"strings.count", 2, rego__bi_strings_count, false},
    {"strings.any_prefix_match", 2, rego__bi_any_prefix, false},
    {"strings.any_suffix_match", 2, rego__bi_any_suffix, false},
    {"format_int", 2, rego__bi_format_int, false},
    {"sprintf", 2, rego__bi_sprintf, false},
    {NULL, 0, NULL, false},
};
