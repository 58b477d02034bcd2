/*
 * builtins_regex.c - regular expressions (PCRE2, UTF-8 mode; RE2 patterns as OPA accepts them)
 * and glob matching.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rego_bi.h"

static CT_RESULT rego__re_compile(rg_ev *ev, const char *name, const rv *pat, pcre2_code **out) {
  int ec;
  PCRE2_SIZE eo;
  *out = pcre2_compile((PCRE2_SPTR)pat->u.s, pat->n, PCRE2_UTF | PCRE2_DUPNAMES, &ec, &eo, NULL);
  if (!*out) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(ec, msg, sizeof(msg));
    return rg_bi_fail(ev, "%s: error parsing regexp: %s", name, (const char *)msg);
  }
  return CT_OK;
}

/* Calls fn for every non-overlapping match (up to max, -1 = all). */
typedef CT_RESULT (*re_cb)(rg_ev *ev, void *ctx, const rv *subj, PCRE2_SIZE *ov, int nc);

static CT_RESULT rego__re_each(rg_ev *ev, pcre2_code *re, const rv *subj, long max, re_cb cb, void *ctx) {
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
  if (!md) return rg_bi_oom(ev);
  PCRE2_SIZE start = 0;
  long count = 0;
  ct_status st = CT_OK;
  while (start <= subj->n && (max < 0 || count < max)) {
    int rc = pcre2_match(re, (PCRE2_SPTR)subj->u.s, subj->n, start, 0, md, NULL);
    if (rc < 0) break;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    st = cb(ev, ctx, subj, ov, rc);
    if (st) break;
    count++;
    if (ov[1] == ov[0]) {
      if (ov[1] >= subj->n) break;
      start = ov[1] + 1;
      while (start < subj->n && ((unsigned char)subj->u.s[start] & 0xC0) == 0x80) start++;
    } else
      start = ov[1];
  }
  pcre2_match_data_free(md);
  return st;
}

static CT_RESULT rego__bi_regex_match(rg_ev *ev, rv **a, rv **out) {
  WANT_S("regex.match", 0);
  WANT_S("regex.match", 1);
  pcre2_code *re;
  CT_GUARD(rego__re_compile(ev, "regex.match", a[0], &re));
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
  if (!md) {
    pcre2_code_free(re);
    return rg_bi_oom(ev);
  }
  int rc = pcre2_match(re, (PCRE2_SPTR)a[1]->u.s, a[1]->n, 0, 0, md, NULL);
  pcre2_match_data_free(md);
  pcre2_code_free(re);
  *out = rv_bool(rc >= 0);
  return CT_OK;
}

static CT_RESULT rego__bi_regex_is_valid(rg_ev *ev, rv **a, rv **out) {
  (void)ev;
  if (a[0]->t != RV_STR) {
    *out = RV_FALSE;
    return CT_OK;
  }
  int ec;
  PCRE2_SIZE eo;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)a[0]->u.s, a[0]->n, PCRE2_UTF, &ec, &eo, NULL);
  *out = rv_bool(re != NULL);
  pcre2_code_free(re);
  return CT_OK;
}

typedef struct {
  rv **items;
  size_t n, cap;
  size_t last;
  bool submatch;
  int ncap;
} re_acc;

static CT_RESULT rego__acc_push(rg_ev *ev, re_acc *c, rv *v) {
  if (!v) return rg_bi_oom(ev);
  if (c->n == c->cap) {
    size_t nc = c->cap ? c->cap * 2 : 8;
    rv **ni = rg_alloc(A, nc * sizeof(rv *));
    if (!ni) return rg_bi_oom(ev);
    if (c->n) memcpy(ni, c->items, c->n * sizeof(rv *));
    c->items = ni;
    c->cap = nc;
  }
  c->items[c->n++] = v;
  return CT_OK;
}

static CT_RESULT rego__cb_find(rg_ev *ev, void *ctx, const rv *subj, PCRE2_SIZE *ov, int nc) {
  re_acc *c = ctx;
  if (!c->submatch) return rego__acc_push(ev, c, rv_str(A, subj->u.s + ov[0], ov[1] - ov[0]));
  int total = c->ncap + 1;
  rv **g = rg_alloc(A, ((size_t)total + 1) * sizeof(rv *));
  if (!g) return rg_bi_oom(ev);
  for (int i = 0; i < total; i++) {
    if (i >= nc || ov[2 * i] == PCRE2_UNSET) g[i] = rv_str(A, "", 0);
    else g[i] = rv_str(A, subj->u.s + ov[2 * i], ov[2 * i + 1] - ov[2 * i]);
    if (!g[i]) return rg_bi_oom(ev);
  }
  return rego__acc_push(ev, c, rv_arr(A, g, (size_t)total));
}

static CT_RESULT rego__find_gen(rg_ev *ev, const char *name, rv **a, bool sub, rv **out) {
  WANT_S(name, 0);
  WANT_S(name, 1);
  CT_GUARD(rg_bi_want(ev, name, 3, a[2], RV_NUM));
  int64_t n;
  if (!rv_num_is_int(a[2], &n)) return rg_bi_type(ev, "%s: operand 3 must be integer", name);
  pcre2_code *re;
  CT_GUARD(rego__re_compile(ev, name, a[0], &re));
  re_acc c = {.submatch = sub};
  uint32_t cc = 0;
  pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &cc);
  c.ncap = (int)cc;
  ct_status st = rego__re_each(ev, re, a[1], n < 0 ? -1 : n, rego__cb_find, &c);
  pcre2_code_free(re);
  CT_GUARD(st);
  RET(rv_arr(A, c.items, c.n));
}
static CT_RESULT rego__bi_regex_find_n(rg_ev *ev, rv **a, rv **out) { return rego__find_gen(ev, "regex.find_n", a, false, out); }
static CT_RESULT rego__bi_regex_find_all_sub(rg_ev *ev, rv **a, rv **out) {
  return rego__find_gen(ev, "regex.find_all_string_submatch_n", a, true, out);
}

static CT_RESULT rego__cb_split(rg_ev *ev, void *ctx, const rv *subj, PCRE2_SIZE *ov, int nc) {
  (void)nc;
  re_acc *c = ctx;
  if (ov[1] == 0 && ov[0] == 0 && subj->n > 0) return CT_OK; /* Go: an empty match at 0 adds nothing */
  CT_GUARD(rego__acc_push(ev, c, rv_str(A, subj->u.s + c->last, ov[0] - c->last)));
  c->last = ov[1];
  return CT_OK;
}

static CT_RESULT rego__bi_regex_split(rg_ev *ev, rv **a, rv **out) {
  WANT_S("regex.split", 0);
  WANT_S("regex.split", 1);
  pcre2_code *re;
  CT_GUARD(rego__re_compile(ev, "regex.split", a[0], &re));
  re_acc c = {0};
  ct_status st = rego__re_each(ev, re, a[1], -1, rego__cb_split, &c);
  pcre2_code_free(re);
  CT_GUARD(st);
  CT_GUARD(rego__acc_push(ev, &c, rv_str(A, a[1]->u.s + c.last, a[1]->n - c.last)));
  RET(rv_arr(A, c.items, c.n));
}

typedef struct {
  ct_buf b;
  size_t last;
  const rv *repl;
} re_rep;

static CT_RESULT rego__cb_replace(rg_ev *ev, void *ctx, const rv *subj, PCRE2_SIZE *ov, int nc) {
  re_rep *r = ctx;
  ct_err e2;
  if (ct_buf_append(&r->b, subj->u.s + r->last, ov[0] - r->last, &e2)) return rg_bi_fail(ev, "regex.replace: too large");
  /* Go's Expand: $1, ${1}, $name, $$ */
  const char *t = r->repl->u.s;
  size_t tn = r->repl->n;
  for (size_t i = 0; i < tn; i++) {
    if (t[i] != '$' || i + 1 >= tn) {
      if (ct_buf_append(&r->b, &t[i], 1, &e2)) return rg_bi_fail(ev, "regex.replace: too large");
      continue;
    }
    if (t[i + 1] == '$') {
      if (ct_buf_append(&r->b, "$", 1, &e2)) return rg_bi_fail(ev, "regex.replace: too large");
      i++;
      continue;
    }
    size_t s0 = i + 1, s1;
    bool brace = t[s0] == '{';
    if (brace) s0++;
    s1 = s0;
    while (s1 < tn && (isalnum((unsigned char)t[s1]) || t[s1] == '_')) s1++;
    if (s1 == s0 || (brace && (s1 >= tn || t[s1] != '}'))) {
      if (ct_buf_append(&r->b, "$", 1, &e2)) return rg_bi_fail(ev, "regex.replace: too large");
      continue;
    }
    bool num = true;
    int gi = 0;
    for (size_t q = s0; q < s1; q++) {
      if (!isdigit((unsigned char)t[q])) num = false;
      else gi = gi * 10 + (t[q] - '0');
    }
    if (num && gi < nc && ov[2 * gi] != PCRE2_UNSET) {
      if (ct_buf_append(&r->b, subj->u.s + ov[2 * gi], ov[2 * gi + 1] - ov[2 * gi], &e2))
        return rg_bi_fail(ev, "regex.replace: too large");
    }
    i = brace ? s1 : s1 - 1;
  }
  r->last = ov[1];
  return CT_OK;
}

static CT_RESULT rego__bi_regex_replace(rg_ev *ev, rv **a, rv **out) {
  WANT_S("regex.replace", 0);
  WANT_S("regex.replace", 1);
  WANT_S("regex.replace", 2);
  pcre2_code *re;
  CT_GUARD(rego__re_compile(ev, "regex.replace", a[1], &re));
  re_rep r = {.repl = a[2]};
  ct_buf_init(&r.b, 1u << 26);
  ct_status st = rego__re_each(ev, re, a[0], -1, rego__cb_replace, &r);
  pcre2_code_free(re);
  ct_err e2;
  if (!st && ct_buf_append(&r.b, a[0]->u.s + r.last, a[0]->n - r.last, &e2)) st = rg_bi_fail(ev, "regex.replace: too large");
  if (!st) {
    *out = rv_str(A, r.b.data ? (const char *)r.b.data : "", r.b.len);
    if (!*out) st = rg_bi_oom(ev);
  }
  ct_buf_free(&r.b);
  return st;
}

/* ---------------------------------------------------------------- glob */
typedef struct {
  const char *delims;
  size_t nd;
} glob_ctx;

static bool rego__is_delim(const glob_ctx *g, char c) { return memchr(g->delims, c, g->nd) != NULL; }

static bool rego__glob_rec(const glob_ctx *g, const char *p, size_t pn, const char *s, size_t sn, int depth) {
  if (depth > 2000) return false;
  size_t i = 0, j = 0;
  while (i < pn) {
    char c = p[i];
    if (c == '*') {
      bool super = i + 1 < pn && p[i + 1] == '*';
      size_t np = i + (super ? 2 : 1);
      for (size_t k = j; k <= sn; k++) {
        if (rego__glob_rec(g, p + np, pn - np, s + k, sn - k, depth + 1)) return true;
        if (k < sn && !super && rego__is_delim(g, s[k])) return false;
      }
      return false;
    }
    if (c == '?') {
      if (j >= sn || rego__is_delim(g, s[j])) return false;
      j++;
      while (j < sn && ((unsigned char)s[j] & 0xC0) == 0x80) j++;
      i++;
      continue;
    }
    if (c == '[') {
      size_t e = i + 1;
      bool neg = e < pn && (p[e] == '!' || p[e] == '^');
      if (neg) e++;
      size_t cs = e;
      while (e < pn && p[e] != ']') e++;
      if (e >= pn || j >= sn) return false;
      bool hit = false;
      for (size_t q = cs; q < e; q++) {
        if (q + 2 < e && p[q + 1] == '-') {
          if (s[j] >= p[q] && s[j] <= p[q + 2]) hit = true;
          q += 2;
        } else if (p[q] == s[j])
          hit = true;
      }
      if (hit == neg) return false;
      i = e + 1;
      j++;
      continue;
    }
    if (c == '{') {
      /* alternatives */
      size_t e = i + 1;
      int lvl = 1;
      while (e < pn && lvl) {
        if (p[e] == '{') lvl++;
        else if (p[e] == '}') lvl--;
        if (lvl) e++;
      }
      if (e >= pn) return false;
      size_t a0 = i + 1;
      lvl = 0;
      for (size_t q = i + 1; q <= e; q++) {
        if (q < e && p[q] == '{') lvl++;
        if (q < e && p[q] == '}') lvl--;
        if (q == e || (p[q] == ',' && lvl == 0)) {
          size_t alen = q - a0, rest = pn - e - 1;
          char *np = malloc(alen + rest + 1);
          if (!np) return false;
          memcpy(np, p + a0, alen);
          memcpy(np + alen, p + e + 1, rest);
          bool ok = rego__glob_rec(g, np, alen + rest, s + j, sn - j, depth + 1);
          free(np);
          if (ok) return true;
          a0 = q + 1;
        }
      }
      return false;
    }
    if (c == '\\' && i + 1 < pn) {
      i++;
      c = p[i];
    }
    if (j >= sn || s[j] != c) return false;
    i++;
    j++;
  }
  return j == sn;
}

static CT_RESULT rego__bi_glob_match(rg_ev *ev, rv **a, rv **out) {
  WANT_S("glob.match", 0);
  WANT_S("glob.match", 2);
  char dl[64];
  size_t nd = 0;
  /* OPA: null = no delimiters; an empty array = the default delimiter '.' */
  if (a[1]->t == RV_NULL) {
  } else if (a[1]->t == RV_ARR) {
    if (!a[1]->n) dl[nd++] = '.';
    for (size_t i = 0; i < a[1]->n; i++) {
      rv *d = a[1]->u.a[i];
      if (d->t != RV_STR) return rg_bi_type(ev, "glob.match: operand 2 must be array of strings");
      for (size_t k = 0; k < d->n && nd < sizeof(dl); k++) dl[nd++] = d->u.s[k];
    }
  } else
    return rg_bi_type(ev, "glob.match: operand 2 must be one of {null, array} but got %s", rg_type_name(a[1]));
  glob_ctx g = {dl, nd};
  *out = rv_bool(rego__glob_rec(&g, a[0]->u.s, a[0]->n, a[2]->u.s, a[2]->n, 0));
  return CT_OK;
}

static CT_RESULT rego__bi_glob_quote_meta(rg_ev *ev, rv **a, rv **out) {
  WANT_S("glob.quote_meta", 0);
  char *o = rg_alloc(A, a[0]->n * 2 + 1);
  if (!o) return rg_bi_oom(ev);
  size_t w = 0;
  for (size_t i = 0; i < a[0]->n; i++) {
    if (strchr("*?\\[]{}", a[0]->u.s[i]) && a[0]->u.s[i]) o[w++] = '\\';
    o[w++] = a[0]->u.s[i];
  }
  RET(rv_str(A, o, w));
}

const rg_builtin rg_builtins_regex[] = {
    {"regex.match", 2, rego__bi_regex_match, false},
    {"re_match", 2, rego__bi_regex_match, false},
    {"regex.is_valid", 1, rego__bi_regex_is_valid, false},
    {"regex.find_n", 3, rego__bi_regex_find_n, false},
    {"regex.find_all_string_submatch_n", 3, rego__bi_regex_find_all_sub, false},
    {"regex.split", 2, rego__bi_regex_split, false},
    {"regex.replace", 3, rego__bi_regex_replace, false},
    {"glob.match", 3, rego__bi_glob_match, false},
    {"glob.quote_meta", 1, rego__bi_glob_quote_meta, false},
    {NULL, 0, NULL, false},
};
