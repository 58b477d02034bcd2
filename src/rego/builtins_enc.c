/*
 * builtins_enc.c - encodings (base64, base64url, hex, urlquery, JSON), hashes and HMACs,
 * units, semver and bit operations.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "rego_bi.h"

/* ---------------------------------------------------------------- base64 */
static const char b64std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static rv *rego__b64enc(rg_ev *ev, const uint8_t *in, size_t n, const char *alpha, bool pad) {
  char *o = rg_alloc(A, (n + 2) / 3 * 4 + 1);
  if (!o) return NULL;
  size_t w = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    o[w++] = alpha[(v >> 18) & 63];
    o[w++] = alpha[(v >> 12) & 63];
    if (i + 1 < n) o[w++] = alpha[(v >> 6) & 63];
    else if (pad) o[w++] = '=';
    if (i + 2 < n) o[w++] = alpha[v & 63];
    else if (pad) o[w++] = '=';
  }
  return rv_str(A, o, w);
}

/* Returns the byte offset of the first illegal character, or -1 on success. */
static long rego__b64dec(const char *s, size_t n, const char *alpha, bool need_pad, uint8_t *o, size_t *olen) {
  uint32_t acc = 0;
  int bits = 0;
  size_t w = 0, i;
  size_t end = n;
  while (end > 0 && s[end - 1] == '=') end--;
  size_t npad = n - end;
  if (npad > 2) return (long)end + 2;
  if (need_pad && n % 4) return (long)(n - n % 4 + (n % 4 == 1 ? 0 : n % 4)) > (long)n ? (long)n : (long)(n / 4 * 4);
  if (npad && (n % 4)) return (long)end;
  for (i = 0; i < end; i++) {
    const char *p = memchr(alpha, s[i], 64);
    if (!p || !s[i]) return (long)i;
    acc = (acc << 6) | (uint32_t)(p - alpha);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      o[w++] = (uint8_t)(acc >> bits);
    }
  }
  if ((end % 4) == 1) return (long)end;
  if (npad && (end + npad) % 4) return (long)end;
  *olen = w;
  return -1;
}

static CT_RESULT rego__bi_b64_encode(rg_ev *ev, rv **a, rv **out) {
  WANT_S("base64.encode", 0);
  RET(rego__b64enc(ev, (const uint8_t *)a[0]->u.s, a[0]->n, b64std, true));
}
static CT_RESULT rego__bi_b64url_encode(rg_ev *ev, rv **a, rv **out) {
  WANT_S("base64url.encode", 0);
  RET(rego__b64enc(ev, (const uint8_t *)a[0]->u.s, a[0]->n, b64url, true));
}
static CT_RESULT rego__bi_b64url_encode_np(rg_ev *ev, rv **a, rv **out) {
  WANT_S("base64url.encode_no_pad", 0);
  RET(rego__b64enc(ev, (const uint8_t *)a[0]->u.s, a[0]->n, b64url, false));
}
static CT_RESULT rego__bi_b64_decode(rg_ev *ev, rv **a, rv **out) {
  WANT_S("base64.decode", 0);
  uint8_t *o = rg_alloc(A, a[0]->n + 1);
  if (!o) return rg_bi_oom(ev);
  size_t ol;
  long bad = rego__b64dec(a[0]->u.s, a[0]->n, b64std, true, o, &ol);
  if (bad >= 0) return rg_bi_fail(ev, "base64.decode: illegal base64 data at input byte %ld", bad);
  RET(rv_str(A, (const char *)o, ol));
}
static CT_RESULT rego__bi_b64_is_valid(rg_ev *ev, rv **a, rv **out) {
  WANT_S("base64.is_valid", 0);
  uint8_t *o = rg_alloc(A, a[0]->n + 1);
  if (!o) return rg_bi_oom(ev);
  size_t ol;
  *out = rv_bool(rego__b64dec(a[0]->u.s, a[0]->n, b64std, true, o, &ol) < 0);
  return CT_OK;
}
static CT_RESULT rego__bi_b64url_decode(rg_ev *ev, rv **a, rv **out) {
  WANT_S("base64url.decode", 0);
  uint8_t *o = rg_alloc(A, a[0]->n + 1);
  if (!o) return rg_bi_oom(ev);
  size_t ol;
  long bad = rego__b64dec(a[0]->u.s, a[0]->n, b64url, false, o, &ol);
  if (bad >= 0) return rg_bi_fail(ev, "base64url.decode: illegal base64 data at input byte %ld", bad);
  RET(rv_str(A, (const char *)o, ol));
}

/* ---------------------------------------------------------------- io.jwt.decode */
static CT_RESULT rego__jwt_part(rg_ev *ev, const char *what, const char *s, size_t n, uint8_t **o, size_t *ol) {
  *o = rg_alloc(A, n + 1);
  if (!*o) return rg_bi_oom(ev);
  /* JWS uses unpadded base64url; tolerate padding */
  long bad = rego__b64dec(s, n, b64url, false, *o, ol);
  if (bad >= 0) return rg_bi_fail(ev, "io.jwt.decode: JWT %s had invalid encoding: illegal base64 data at input byte %ld", what, bad);
  return CT_OK;
}

static CT_RESULT rego__bi_jwt_decode(rg_ev *ev, rv **a, rv **out) {
  WANT_S("io.jwt.decode", 0);
  const char *s = a[0]->u.s;
  size_t n = a[0]->n;
  const char *d1 = memchr(s, '.', n);
  if (!d1) return rg_bi_fail(ev, "io.jwt.decode: encoded JWT had no period separators");
  const char *d2 = memchr(d1 + 1, '.', (size_t)(s + n - d1 - 1));
  if (!d2) return rg_bi_fail(ev, "io.jwt.decode: encoded JWT must have 3 sections, found 2");
  if (memchr(d2 + 1, '.', (size_t)(s + n - d2 - 1)))
    return rg_bi_fail(ev, "io.jwt.decode: encoded JWT must have 3 sections, found more");
  uint8_t *h, *p, *sig;
  size_t hl, pl, sl;
  CT_GUARD(rego__jwt_part(ev, "header", s, (size_t)(d1 - s), &h, &hl));
  rv *hdr;
  ct_err e2;
  if (rg_json_parse(A, (const char *)h, hl, 100, &hdr, &e2) || hdr->t != RV_OBJ)
    return rg_bi_fail(ev, "io.jwt.decode: JWT header had invalid encoding: %s", e2.msg);
  if (rv_obj_gets(hdr, "enc")) return rg_bi_fail(ev, "io.jwt.decode: JWT is a JWE object, which is not supported");
  CT_GUARD(rego__jwt_part(ev, "payload", d1 + 1, (size_t)(d2 - d1 - 1), &p, &pl));
  CT_GUARD(rego__jwt_part(ev, "signature", d2 + 1, (size_t)(s + n - d2 - 1), &sig, &sl));
  rv *pay;
  rv *cty = rv_obj_gets(hdr, "cty");
  if (cty && cty->t == RV_STR && !strcasecmp(cty->u.s, "JWT")) {
    /* a nested JWT: decode the inner token */
    rv *inner = NULL;
    if (rg_json_parse(A, (const char *)p, pl, 4, &inner, &e2) || inner->t != RV_STR)
      inner = rv_str(A, (const char *)p, pl);
    if (!inner) return rg_bi_oom(ev);
    return rego__bi_jwt_decode(ev, &inner, out);
  }
  if (rg_json_parse(A, (const char *)p, pl, 100, &pay, &e2)) {
    return rg_bi_fail(ev, "io.jwt.decode: JWT payload had invalid encoding: %s", e2.msg);
  }
  (void)cty;
  char *hex = rg_alloc(A, sl * 2 + 1);
  if (!hex) return rg_bi_oom(ev);
  for (size_t i = 0; i < sl; i++) snprintf(hex + 2 * i, 3, "%02x", sig[i]);
  rv *items[3] = {hdr, pay, rv_str(A, hex, sl * 2)};
  if (!items[2]) return rg_bi_oom(ev);
  RET(rv_arr(A, items, 3));
}

/* ---------------------------------------------------------------- hex */
static CT_RESULT rego__bi_hex_encode(rg_ev *ev, rv **a, rv **out) {
  WANT_S("hex.encode", 0);
  char *o = rg_alloc(A, a[0]->n * 2 + 1);
  if (!o) return rg_bi_oom(ev);
  for (size_t i = 0; i < a[0]->n; i++) snprintf(o + 2 * i, 3, "%02x", (unsigned char)a[0]->u.s[i]);
  RET(rv_str(A, o, a[0]->n * 2));
}
static int rego__hexv(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
static CT_RESULT rego__bi_hex_decode(rg_ev *ev, rv **a, rv **out) {
  WANT_S("hex.decode", 0);
  const char *s = a[0]->u.s;
  size_t n = a[0]->n;
  char *o = rg_alloc(A, n / 2 + 1);
  if (!o) return rg_bi_oom(ev);
  for (size_t i = 0; i + 1 < n; i += 2) {
    int h = rego__hexv(s[i]), l = rego__hexv(s[i + 1]);
    if (h < 0) return rg_bi_fail(ev, "hex.decode: invalid byte: U+%04X '%c'", (unsigned char)s[i], s[i]);
    if (l < 0) return rg_bi_fail(ev, "hex.decode: invalid byte: U+%04X '%c'", (unsigned char)s[i + 1], s[i + 1]);
    o[i / 2] = (char)(h * 16 + l);
  }
  if (n % 2) {
    if (rego__hexv(s[n - 1]) < 0) return rg_bi_fail(ev, "hex.decode: invalid byte: U+%04X '%c'", (unsigned char)s[n - 1], s[n - 1]);
    return rg_bi_fail(ev, "hex.decode: encoding/hex: odd length hex string");
  }
  RET(rv_str(A, o, n / 2));
}

/* ---------------------------------------------------------------- urlquery */
static bool rego__url_unreserved(unsigned char c) { return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~'; }

static CT_RESULT rego__urlq_append(rg_ev *ev, ct_buf *b, const char *s, size_t n) {
  ct_err e2;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    ct_status st;
    if (rego__url_unreserved(c)) st = ct_buf_append(b, &s[i], 1, &e2);
    else if (c == ' ') st = ct_buf_append(b, "+", 1, &e2);
    else st = ct_buf_printf(b, &e2, "%%%02X", c);
    if (st) return rg_bi_fail(ev, "urlquery: result too large");
  }
  return CT_OK;
}

static CT_RESULT rego__bi_urlquery_encode(rg_ev *ev, rv **a, rv **out) {
  WANT_S("urlquery.encode", 0);
  ct_buf b;
  ct_buf_init(&b, 1u << 26);
  ct_status st = rego__urlq_append(ev, &b, a[0]->u.s, a[0]->n);
  if (!st) *out = rv_str(A, b.data ? (const char *)b.data : "", b.len);
  ct_buf_free(&b);
  if (!st && !*out) return rg_bi_oom(ev);
  return st;
}

static CT_RESULT rego__urlq_decode(rg_ev *ev, const char *s, size_t n, rv **out) {
  char *o = rg_alloc(A, n + 1);
  if (!o) return rg_bi_oom(ev);
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '+') o[w++] = ' ';
    else if (s[i] == '%') {
      if (i + 2 >= n + 0 && i + 2 > n - 1 + 1) return rg_bi_fail(ev, "urlquery.decode: invalid URL escape \"%.*s\"", (int)(n - i), s + i);
      int h = i + 1 < n ? rego__hexv(s[i + 1]) : -1, l = i + 2 < n ? rego__hexv(s[i + 2]) : -1;
      if (h < 0 || l < 0) return rg_bi_fail(ev, "urlquery.decode: invalid URL escape \"%.*s\"", (int)(n - i < 3 ? n - i : 3), s + i);
      o[w++] = (char)(h * 16 + l);
      i += 2;
    } else
      o[w++] = s[i];
  }
  RET(rv_str(A, o, w));
}

static CT_RESULT rego__bi_urlquery_decode(rg_ev *ev, rv **a, rv **out) {
  WANT_S("urlquery.decode", 0);
  return rego__urlq_decode(ev, a[0]->u.s, a[0]->n, out);
}

static CT_RESULT rego__bi_urlquery_encode_object(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "urlquery.encode_object", 1, a[0], RV_OBJ));
  ct_buf b;
  ct_err e2;
  ct_buf_init(&b, 1u << 26);
  ct_status st = CT_OK;
  bool first = true;
  for (size_t i = 0; i < a[0]->n && !st; i++) {
    rv *k = a[0]->u.o.k[i], *v = a[0]->u.o.v[i];
    if (k->t != RV_STR) {
      st = rg_bi_type(ev, "urlquery.encode_object: operand 1 must be object[string: any]");
      break;
    }
    rv *one[1] = {v};
    rv **vals = one;
    size_t nv = 1;
    if (v->t == RV_ARR || v->t == RV_SET) {
      vals = v->u.a;
      nv = v->n;
    } else if (v->t != RV_STR) {
      st = rg_bi_type(ev, "urlquery.encode_object: operand 1 must be object[string: any]");
      break;
    }
    for (size_t j = 0; j < nv && !st; j++) {
      if (vals[j]->t != RV_STR) {
        st = rg_bi_type(ev, "urlquery.encode_object: operand 1 must be object[string: any]");
        break;
      }
      if (!first) st = ct_buf_append(&b, "&", 1, &e2);
      first = false;
      if (!st) st = rego__urlq_append(ev, &b, k->u.s, k->n);
      if (!st) st = ct_buf_append(&b, "=", 1, &e2);
      if (!st) st = rego__urlq_append(ev, &b, vals[j]->u.s, vals[j]->n);
    }
  }
  if (!st) {
    *out = rv_str(A, b.data ? (const char *)b.data : "", b.len);
    if (!*out) st = rg_bi_oom(ev);
  }
  ct_buf_free(&b);
  return st;
}

static CT_RESULT rego__bi_urlquery_decode_object(rg_ev *ev, rv **a, rv **out) {
  WANT_S("urlquery.decode_object", 0);
  const char *s = a[0]->u.s;
  size_t n = a[0]->n;
  rv **ks = rg_alloc(A, (n + 2) * sizeof(rv *)), **vs = rg_alloc(A, (n + 2) * sizeof(rv *));
  if (!ks || !vs) return rg_bi_oom(ev);
  size_t m = 0;
  for (size_t i = 0; i <= n;) {
    size_t j = i;
    while (j < n && s[j] != '&' && s[j] != ';') j++;
    if (j > i) {
      const char *eq = memchr(s + i, '=', j - i);
      rv *k, *v;
      CT_GUARD(rego__urlq_decode(ev, s + i, eq ? (size_t)(eq - (s + i)) : j - i, &k));
      if (eq) CT_GUARD(rego__urlq_decode(ev, eq + 1, (size_t)(s + j - eq - 1), &v));
      else v = rv_str(A, "", 0);
      if (!v) return rg_bi_oom(ev);
      /* append to the key's array */
      size_t q;
      for (q = 0; q < m && !rv_eq(ks[q], k); q++) {}
      if (q == m) {
        ks[m] = k;
        vs[m++] = rv_arr(A, &v, 1);
      } else {
        rv **items = rg_alloc(A, (vs[q]->n + 1) * sizeof(rv *));
        if (!items) return rg_bi_oom(ev);
        memcpy(items, vs[q]->u.a, vs[q]->n * sizeof(rv *));
        items[vs[q]->n] = v;
        vs[q] = rv_arr(A, items, vs[q]->n + 1);
      }
      if (!vs[q < m ? q : m - 1]) return rg_bi_oom(ev);
    }
    i = j + 1;
  }
  RET(rv_obj(A, ks, vs, m, NULL));
}

/* ---------------------------------------------------------------- JSON */
static CT_RESULT rego__bi_json_marshal(rg_ev *ev, rv **a, rv **out) {
  ct_buf b;
  ct_err e2;
  ct_buf_init(&b, 1u << 28);
  if (rg_json_write(a[0], &b, false, 0, &e2)) {
    ct_buf_free(&b);
    return rg_bi_fail(ev, "json.marshal: %s", e2.msg);
  }
  *out = rv_str(A, (const char *)b.data, b.len);
  ct_buf_free(&b);
  if (!*out) return rg_bi_oom(ev);
  return CT_OK;
}

/* Go's json.MarshalIndent layout with a prefix on every line (OPA also puts it first). */
static CT_RESULT rego__json_indent(const rv *v, ct_buf *b, const rv *prefix, const rv *indent, int depth, ct_err *err) {
  if ((v->t != RV_ARR && v->t != RV_SET && v->t != RV_OBJ) || !v->n) {
    if (v->t == RV_SET && !v->n) return ct_buf_append_str(b, "[]", err);
    return rg_json_write(v, b, false, 0, err);
  }
  CT_GUARD(ct_buf_append_str(b, v->t == RV_OBJ ? "{" : "[", err));
  for (size_t i = 0; i < v->n; i++) {
    if (i) CT_GUARD(ct_buf_append_str(b, ",", err));
    CT_GUARD(ct_buf_append_str(b, "\n", err));
    CT_GUARD(ct_buf_append(b, prefix->u.s, prefix->n, err));
    for (int d = 0; d <= depth; d++) CT_GUARD(ct_buf_append(b, indent->u.s, indent->n, err));
    if (v->t == RV_OBJ) {
      CT_GUARD(rg_json_write(v->u.o.k[i], b, false, 0, err));
      CT_GUARD(ct_buf_append_str(b, ": ", err));
      CT_GUARD(rego__json_indent(v->u.o.v[i], b, prefix, indent, depth + 1, err));
    } else
      CT_GUARD(rego__json_indent(v->u.a[i], b, prefix, indent, depth + 1, err));
  }
  CT_GUARD(ct_buf_append_str(b, "\n", err));
  CT_GUARD(ct_buf_append(b, prefix->u.s, prefix->n, err));
  for (int d = 0; d < depth; d++) CT_GUARD(ct_buf_append(b, indent->u.s, indent->n, err));
  return ct_buf_append_str(b, v->t == RV_OBJ ? "}" : "]", err);
}

static CT_RESULT rego__bi_json_marshal_opts(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "json.marshal_with_options", 2, a[1], RV_OBJ));
  rv *o = a[1];
  bool pretty = false, explicit_pretty = false;
  rv tab = {.t = RV_STR, .n = 1, .u.s = "\t"}, none = {.t = RV_STR, .n = 0, .u.s = ""};
  rv *indent = &tab, *prefix = &none;
  for (size_t i = 0; i < o->n; i++) {
    rv *k = o->u.o.k[i], *v = o->u.o.v[i];
    const char *kn = k->t == RV_STR ? k->u.s : "";
    if (!strcmp(kn, "pretty")) {
      if (v->t != RV_BOOL) return rg_bi_type(ev, "json.marshal_with_options: pretty must be a boolean");
      pretty = v->b;
      explicit_pretty = true;
    } else if (!strcmp(kn, "indent")) {
      if (v->t != RV_STR) return rg_bi_type(ev, "json.marshal_with_options: indent must be a string");
      indent = v;
      if (!explicit_pretty) pretty = true;
    } else if (!strcmp(kn, "prefix")) {
      if (v->t != RV_STR) return rg_bi_type(ev, "json.marshal_with_options: prefix must be a string");
      prefix = v;
      if (!explicit_pretty) pretty = true;
    } else
      return rg_bi_type(ev, "json.marshal_with_options: object contained unknown key \"%s\"", kn);
  }
  if (!pretty) return rego__bi_json_marshal(ev, a, out);
  ct_buf b;
  ct_err e2;
  ct_buf_init(&b, 1u << 28);
  ct_status st = ct_buf_append(&b, prefix->u.s, prefix->n, &e2);
  if (!st) st = rego__json_indent(a[0], &b, prefix, indent, 0, &e2);
  if (st) {
    ct_buf_free(&b);
    return rg_bi_fail(ev, "json.marshal_with_options: %s", e2.msg);
  }
  *out = rv_str(A, (const char *)b.data, b.len);
  ct_buf_free(&b);
  if (!*out) return rg_bi_oom(ev);
  return CT_OK;
}

/* OPA refuses numbers whose exponent goes beyond what big.Float supports */
static bool rego__num_in_range(const rv *v) {
  switch (v->t) {
    case RV_NUM:
      if (v->nk == RN_DBL && v->lit) {
        const char *e = strpbrk(v->lit, "eE");
        if (e && labs(strtol(e + 1, NULL, 10)) > 10000) return false;
      }
      return true;
    case RV_ARR:
    case RV_SET:
      for (size_t i = 0; i < v->n; i++)
        if (!rego__num_in_range(v->u.a[i])) return false;
      return true;
    case RV_OBJ:
      for (size_t i = 0; i < v->n; i++)
        if (!rego__num_in_range(v->u.o.v[i])) return false;
      return true;
    default: return true;
  }
}

static CT_RESULT rego__bi_json_unmarshal(rg_ev *ev, rv **a, rv **out) {
  WANT_S("json.unmarshal", 0);
  ct_err e2;
  if (rg_json_parse(A, a[0]->u.s, a[0]->n, 1000, out, &e2)) return rg_bi_fail(ev, "json.unmarshal: %s", e2.msg);
  if (!rego__num_in_range(*out)) {
    *out = NULL;
    return rg_bi_fail(ev, "json.unmarshal: number out of range");
  }
  return CT_OK;
}

static CT_RESULT rego__bi_json_is_valid(rg_ev *ev, rv **a, rv **out) {
  if (a[0]->t != RV_STR) {
    *out = RV_FALSE;
    return CT_OK;
  }
  ct_err e2;
  rv *v;
  *out = rv_bool(rg_json_parse(A, a[0]->u.s, a[0]->n, 1000, &v, &e2) == CT_OK);
  return CT_OK;
}

/* ---------------------------------------------------------------- hashes */
static CT_RESULT rego__digest_hex(rg_ev *ev, const char *name, const EVP_MD *md, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, name, 1, a[0], RV_STR));
  unsigned char h[EVP_MAX_MD_SIZE];
  unsigned int hl = 0;
  if (!EVP_Digest(a[0]->u.s, a[0]->n, h, &hl, md, NULL)) return rg_bi_fail(ev, "%s: digest failed", name);
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  for (unsigned i = 0; i < hl; i++) snprintf(hex + 2 * i, 3, "%02x", h[i]);
  RET(rv_str(A, hex, 2 * hl));
}
static CT_RESULT rego__bi_md5(rg_ev *ev, rv **a, rv **out) { return rego__digest_hex(ev, "crypto.md5", EVP_md5(), a, out); }
static CT_RESULT rego__bi_sha1(rg_ev *ev, rv **a, rv **out) { return rego__digest_hex(ev, "crypto.sha1", EVP_sha1(), a, out); }
static CT_RESULT rego__bi_sha256(rg_ev *ev, rv **a, rv **out) { return rego__digest_hex(ev, "crypto.sha256", EVP_sha256(), a, out); }

static CT_RESULT rego__hmac_hex(rg_ev *ev, const char *name, const char *dg, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, name, 1, a[0], RV_STR));
  CT_GUARD(rg_bi_want(ev, name, 2, a[1], RV_STR));
  unsigned char h[EVP_MAX_MD_SIZE];
  size_t hl = 0;
  static const unsigned char empty[1] = {0};
  if (!EVP_Q_mac(NULL, "HMAC", NULL, dg, NULL, a[1]->n ? (const void *)a[1]->u.s : empty, a[1]->n,
                 (const unsigned char *)a[0]->u.s, a[0]->n, h, sizeof(h), &hl))
    return rg_bi_fail(ev, "%s: HMAC failed", name);
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  for (size_t i = 0; i < hl; i++) snprintf(hex + 2 * i, 3, "%02x", h[i]);
  RET(rv_str(A, hex, 2 * hl));
}
static CT_RESULT rego__bi_hmac_md5(rg_ev *ev, rv **a, rv **out) { return rego__hmac_hex(ev, "crypto.hmac.md5", "MD5", a, out); }
static CT_RESULT rego__bi_hmac_sha1(rg_ev *ev, rv **a, rv **out) { return rego__hmac_hex(ev, "crypto.hmac.sha1", "SHA1", a, out); }
static CT_RESULT rego__bi_hmac_sha256(rg_ev *ev, rv **a, rv **out) { return rego__hmac_hex(ev, "crypto.hmac.sha256", "SHA256", a, out); }
static CT_RESULT rego__bi_hmac_sha512(rg_ev *ev, rv **a, rv **out) { return rego__hmac_hex(ev, "crypto.hmac.sha512", "SHA512", a, out); }
static CT_RESULT rego__bi_hmac_equal(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "crypto.hmac.equal", 1, a[0], RV_STR));
  CT_GUARD(rg_bi_want(ev, "crypto.hmac.equal", 2, a[1], RV_STR));
  *out = rv_bool(a[0]->n == a[1]->n && CRYPTO_memcmp(a[0]->u.s, a[1]->u.s, a[0]->n) == 0);
  return CT_OK;
}

/* ---------------------------------------------------------------- units */
/* Splits "12.5Ki" into number and unit like OPA's extractNumAndUnit; -1 = exponent too large. */
static int rego__split_num_unit(const char *s, size_t n, size_t *numlen) {
  size_t first = n;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool isnum = (c >= '0' && c <= '9') || c == '.';
    if (!isnum && c != 'e' && c != 'E' && c != '+' && c != '-') {
      first = i;
      break;
    }
    if (c == 'e' || c == 'E') {
      if (i == n - 1 || (!isdigit((unsigned char)s[i + 1]) && s[i + 1] != '+' && s[i + 1] != '-')) {
        first = i;
        break;
      }
      if (s[i + 1] == '+' || s[i + 1] == '-') i++;
      size_t e0 = i + 1, e1 = e0;
      while (e1 < n && isdigit((unsigned char)s[e1])) e1++;
      if (e1 - e0 > 6) return -1;
    }
  }
  *numlen = first;
  return 0;
}

/* Parses a decimal number text into mantissa (BN) and a power of ten. */
static bool rego__dec_to_bn(const char *s, size_t n, BIGNUM **m, long *pow10) {
  char *digits = malloc(n + 2);
  if (!digits) return false;
  size_t w = 0;
  long frac = 0, e = 0;
  bool in_frac = false, any = false;
  size_t i = 0;
  if (i < n && (s[i] == '+' || s[i] == '-')) digits[w++] = s[i++];
  for (; i < n && s[i] != 'e' && s[i] != 'E'; i++) {
    if (s[i] == '.') {
      if (in_frac) {
        free(digits);
        return false;
      }
      in_frac = true;
      continue;
    }
    if (!isdigit((unsigned char)s[i])) {
      free(digits);
      return false;
    }
    digits[w++] = s[i];
    any = true;
    if (in_frac) frac++;
  }
  if (i < n) {
    char eb[16];
    size_t el = n - i - 1;
    if (el == 0 || el >= sizeof(eb)) {
      free(digits);
      return false;
    }
    memcpy(eb, s + i + 1, el);
    eb[el] = 0;
    char *end;
    e = strtol(eb, &end, 10);
    if (*end) {
      free(digits);
      return false;
    }
  }
  digits[w] = 0;
  bool ok = any && BN_dec2bn(m, digits[0] == '+' ? digits + 1 : digits) > 0;
  free(digits);
  *pow10 = e - frac;
  return ok;
}

/* value = m * 10^p * mul / div; integer result, or decimal text with `prec` digits when inexact
 * (prec < 0: truncate to an integer). */
static CT_RESULT rego__scaled(rg_ev *ev, BIGNUM *m, long p, uint64_t mul, uint64_t div, int prec, rv **out) {
  BN_CTX *bc = BN_CTX_new();
  BIGNUM *num = BN_dup(m), *den = BN_new(), *t = BN_new(), *q = BN_new(), *r = BN_new();
  ct_status st = CT_OK;
  if (!bc || !num || !den || !t || !q || !r) {
    st = rg_bi_oom(ev);
    goto done;
  }
  BN_set_word(t, mul);
  BN_mul(num, num, t, bc);
  BN_set_word(den, div);
  BIGNUM *ten = BN_new();
  if (!ten) {
    st = rg_bi_oom(ev);
    goto done;
  }
  BN_set_word(ten, 10);
  BN_set_word(t, (unsigned long)(p < 0 ? -p : p));
  BIGNUM *pw = BN_new();
  if (!pw) {
    BN_free(ten);
    st = rg_bi_oom(ev);
    goto done;
  }
  BN_exp(pw, ten, t, bc);
  if (p >= 0) BN_mul(num, num, pw, bc);
  else BN_mul(den, den, pw, bc);
  BN_div(q, r, num, den, bc);
  if (BN_is_zero(r) || prec < 0) {
    *out = rg_bn_to_rv(A, q);
  } else {
    /* rounded decimal with prec digits: (num * 10^prec * 2 + den) / (2 * den), sign-aware */
    BN_set_word(t, (unsigned long)prec);
    BN_exp(pw, ten, t, bc);
    BIGNUM *n2 = BN_new();
    if (!n2) {
      st = rg_bi_oom(ev);
    } else {
      bool neg = BN_is_negative(num);
      BN_set_negative(num, 0);
      BN_mul(n2, num, pw, bc);
      BN_lshift1(n2, n2);
      BN_add(n2, n2, den);
      BN_lshift1(den, den);
      BN_div(q, NULL, n2, den, bc);
      char *txt = BN_bn2dec(q);
      if (txt) {
        size_t L = strlen(txt);
        char buf[512];
        size_t w = 0;
        if (neg) buf[w++] = '-';
        if (L <= (size_t)prec) {
          buf[w++] = '0';
          buf[w++] = '.';
          for (size_t z = L; z < (size_t)prec; z++) buf[w++] = '0';
          memcpy(buf + w, txt, L);
          w += L;
        } else {
          memcpy(buf + w, txt, L - (size_t)prec);
          w += L - (size_t)prec;
          buf[w++] = '.';
          memcpy(buf + w, txt + L - prec, (size_t)prec);
          w += (size_t)prec;
        }
        *out = rv_num_text(A, buf, w);
        OPENSSL_free(txt);
      }
      BN_free(n2);
    }
  }
  BN_free(ten);
  BN_free(pw);
  if (!st && !*out) st = rg_bi_oom(ev);
done:
  BN_free(num);
  BN_free(den);
  BN_free(t);
  BN_free(q);
  BN_free(r);
  BN_CTX_free(bc);
  return st;
}

static CT_RESULT rego__bi_units_parse(rg_ev *ev, rv **a, rv **out) {
  WANT_S("units.parse", 0);
  char *s = rg_alloc(A, a[0]->n + 1);
  if (!s) return rg_bi_oom(ev);
  size_t n = 0;
  for (size_t i = 0; i < a[0]->n; i++)
    if (a[0]->u.s[i] != '"') s[n++] = a[0]->u.s[i];
  if (memchr(s, ' ', n)) return rg_bi_fail(ev, "units.parse: spaces not allowed in resource strings");
  size_t nl;
  if (rego__split_num_unit(s, n, &nl) < 0) return rg_bi_fail(ev, "units.parse: exponent too large");
  if (!nl) return rg_bi_fail(ev, "units.parse: no amount provided");
  char unit[16] = "";
  size_t ul = n - nl;
  if (ul >= sizeof(unit)) return rg_bi_fail(ev, "units.parse: unit %.*s not recognized", (int)ul, s + nl);
  memcpy(unit, s + nl, ul);
  for (size_t i = 1; i < ul; i++) unit[i] = (char)tolower((unsigned char)unit[i]);
  static const struct {
    const char *u;
    uint64_t mul;
  } tab[] = {{"", 1}, {"k", 1000}, {"K", 1000}, {"ki", 1024}, {"Ki", 1024}, {"M", 1000000}, {"mi", 1048576},
             {"Mi", 1048576}, {"g", 1000000000}, {"G", 1000000000}, {"gi", 1073741824}, {"Gi", 1073741824},
             {"t", 1000000000000ULL}, {"T", 1000000000000ULL}, {"ti", 1099511627776ULL}, {"Ti", 1099511627776ULL},
             {"p", 1000000000000000ULL}, {"P", 1000000000000000ULL}, {"pi", 1125899906842624ULL},
             {"Pi", 1125899906842624ULL}, {"e", 1000000000000000000ULL}, {"E", 1000000000000000000ULL},
             {"ei", 1152921504606846976ULL}, {"Ei", 1152921504606846976ULL}};
  uint64_t mul = 0, div = 1;
  if (!strcmp(unit, "m")) {
    mul = 1;
    div = 1000;
  }
  for (size_t i = 0; !mul && i < sizeof(tab) / sizeof(tab[0]); i++)
    if (!strcmp(tab[i].u, unit)) mul = tab[i].mul;
  if (!mul) return rg_bi_fail(ev, "units.parse: unit %s not recognized", unit);
  BIGNUM *m = NULL;
  long p;
  if (!rego__dec_to_bn(s, nl, &m, &p)) {
    BN_free(m);
    return rg_bi_fail(ev, "units.parse: could not parse amount to a number");
  }
  ct_status st = rego__scaled(ev, m, p, mul, div, 10, out);
  BN_free(m);
  return st;
}

static CT_RESULT rego__bi_units_parse_bytes(rg_ev *ev, rv **a, rv **out) {
  WANT_S("units.parse_bytes", 0);
  char *s = rg_alloc(A, a[0]->n + 1);
  if (!s) return rg_bi_oom(ev);
  size_t n = 0;
  for (size_t i = 0; i < a[0]->n; i++)
    if (a[0]->u.s[i] != '"') s[n++] = (char)tolower((unsigned char)a[0]->u.s[i]);
  if (memchr(s, ' ', n)) return rg_bi_fail(ev, "units.parse_bytes: spaces not allowed in resource strings");
  size_t nl;
  if (rego__split_num_unit(s, n, &nl) < 0) return rg_bi_fail(ev, "units.parse_bytes: exponent too large");
  if (!nl) return rg_bi_fail(ev, "units.parse_bytes: no byte amount provided");
  char unit[16] = "";
  size_t ul = n - nl;
  if (ul >= sizeof(unit)) return rg_bi_fail(ev, "units.parse_bytes: byte unit %.*s not recognized", (int)ul, s + nl);
  memcpy(unit, s + nl, ul);
  static const struct {
    const char *u1, *u2;
    uint64_t mul;
  } tab[] = {{"", "", 1}, {"kb", "k", 1000}, {"kib", "ki", 1024}, {"mb", "m", 1000000}, {"mib", "mi", 1048576},
             {"gb", "g", 1000000000}, {"gib", "gi", 1073741824}, {"tb", "t", 1000000000000ULL},
             {"tib", "ti", 1099511627776ULL}, {"pb", "p", 1000000000000000ULL}, {"pib", "pi", 1125899906842624ULL},
             {"eb", "e", 1000000000000000000ULL}, {"eib", "ei", 1152921504606846976ULL}};
  uint64_t mul = 0;
  for (size_t i = 0; !mul && i < sizeof(tab) / sizeof(tab[0]); i++)
    if (!strcmp(tab[i].u1, unit) || !strcmp(tab[i].u2, unit)) mul = tab[i].mul;
  if (!mul) return rg_bi_fail(ev, "units.parse_bytes: byte unit %s not recognized", unit);
  BIGNUM *m = NULL;
  long p;
  if (!rego__dec_to_bn(s, nl, &m, &p)) {
    BN_free(m);
    return rg_bi_fail(ev, "units.parse_bytes: could not parse byte amount to a number");
  }
  ct_status st = rego__scaled(ev, m, p, mul, 1, -1, out);
  BN_free(m);
  return st;
}

/* ---------------------------------------------------------------- semver */
typedef struct {
  int64_t maj, min, pat;
  const char *pre;
  size_t npre;
} semver;

static bool rego__semver_parse(const char *s, size_t n, semver *v) {
  memset(v, 0, sizeof(*v));
  size_t i = 0;
  int64_t *parts[3] = {&v->maj, &v->min, &v->pat};
  for (int k = 0; k < 3; k++) {
    if (i >= n || !isdigit((unsigned char)s[i])) return false;
    if (s[i] == '0' && i + 1 < n && isdigit((unsigned char)s[i + 1])) return false;
    int64_t x = 0;
    while (i < n && isdigit((unsigned char)s[i])) {
      if (x > 100000000000000LL) return false;
      x = x * 10 + (s[i++] - '0');
    }
    *parts[k] = x;
    if (k < 2) {
      if (i >= n || s[i] != '.') return false;
      i++;
    }
  }
  size_t pre0 = 0, pre1 = 0;
  if (i < n && s[i] == '-') {
    pre0 = ++i;
    while (i < n && s[i] != '+') {
      if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.') return false;
      i++;
    }
    pre1 = i;
    if (pre1 == pre0) return false;
    /* identifiers: non-empty, numeric ones without leading zeros */
    size_t st = pre0;
    for (size_t j = pre0; j <= pre1; j++)
      if (j == pre1 || s[j] == '.') {
        if (j == st) return false;
        bool num = true;
        for (size_t q = st; q < j; q++)
          if (!isdigit((unsigned char)s[q])) num = false;
        if (num && j - st > 1 && s[st] == '0') return false;
        st = j + 1;
      }
  }
  if (i < n && s[i] == '+') {
    size_t b0 = ++i;
    while (i < n) {
      if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.') return false;
      i++;
    }
    if (i == b0) return false;
  }
  if (i != n) return false;
  v->pre = s + pre0;
  v->npre = pre1 - pre0;
  return true;
}

static int rego__semver_cmp(const semver *a, const semver *b) {
  if (a->maj != b->maj) return a->maj < b->maj ? -1 : 1;
  if (a->min != b->min) return a->min < b->min ? -1 : 1;
  if (a->pat != b->pat) return a->pat < b->pat ? -1 : 1;
  if (!a->npre || !b->npre) return a->npre ? -1 : b->npre ? 1 : 0;
  size_t i = 0, j = 0;
  while (i < a->npre && j < b->npre) {
    size_t ie = i, je = j;
    while (ie < a->npre && a->pre[ie] != '.') ie++;
    while (je < b->npre && b->pre[je] != '.') je++;
    bool an = true, bn = true;
    for (size_t q = i; q < ie; q++) an = an && isdigit((unsigned char)a->pre[q]);
    for (size_t q = j; q < je; q++) bn = bn && isdigit((unsigned char)b->pre[q]);
    int c;
    if (an && bn) c = (ie - i) != (je - j) ? ((ie - i) < (je - j) ? -1 : 1) : memcmp(a->pre + i, b->pre + j, ie - i);
    else if (an) c = -1;
    else if (bn) c = 1;
    else {
      size_t m = (ie - i) < (je - j) ? ie - i : je - j;
      c = memcmp(a->pre + i, b->pre + j, m);
      if (!c) c = (ie - i) < (je - j) ? -1 : (ie - i) > (je - j);
    }
    if (c) return c < 0 ? -1 : 1;
    i = ie + 1;
    j = je + 1;
  }
  if (i < a->npre + 1 && j >= b->npre + 1) return 1;
  if (j < b->npre + 1 && i >= a->npre + 1) return -1;
  return 0;
}

static CT_RESULT rego__bi_semver_is_valid(rg_ev *ev, rv **a, rv **out) {
  (void)ev;
  semver v;
  *out = rv_bool(a[0]->t == RV_STR && rego__semver_parse(a[0]->u.s, a[0]->n, &v));
  return CT_OK;
}

static CT_RESULT rego__bi_semver_compare(rg_ev *ev, rv **a, rv **out) {
  WANT_S("semver.compare", 0);
  WANT_S("semver.compare", 1);
  semver x, y;
  if (!rego__semver_parse(a[0]->u.s, a[0]->n, &x))
    return rg_bi_fail(ev, "semver.compare: operand 1: string \"%s\" is not a valid SemVer", a[0]->u.s);
  if (!rego__semver_parse(a[1]->u.s, a[1]->n, &y))
    return rg_bi_fail(ev, "semver.compare: operand 2: string \"%s\" is not a valid SemVer", a[1]->u.s);
  RET(rv_int(A, rego__semver_cmp(&x, &y)));
}

/* ---------------------------------------------------------------- bits */
static CT_RESULT rego__ints2(rg_ev *ev, const char *name, rv **a, int64_t *x, int64_t *y) {
  CT_GUARD(rg_bi_want(ev, name, 1, a[0], RV_NUM));
  CT_GUARD(rg_bi_want(ev, name, 2, a[1], RV_NUM));
  if (!rv_num_is_int(a[0], x) || a[0]->nk == RN_BIG) return rg_bi_type(ev, "%s: operand 1 must be integer number but got floating-point number", name);
  if (!rv_num_is_int(a[1], y) || a[1]->nk == RN_BIG) return rg_bi_type(ev, "%s: operand 2 must be integer number but got floating-point number", name);
  return CT_OK;
}
static CT_RESULT rego__bi_bits_or(rg_ev *ev, rv **a, rv **out) { int64_t x, y; CT_GUARD(rego__ints2(ev, "bits.or", a, &x, &y)); RET(rv_int(A, x | y)); }
static CT_RESULT rego__bi_bits_and(rg_ev *ev, rv **a, rv **out) { int64_t x, y; CT_GUARD(rego__ints2(ev, "bits.and", a, &x, &y)); RET(rv_int(A, x & y)); }
static CT_RESULT rego__bi_bits_xor(rg_ev *ev, rv **a, rv **out) { int64_t x, y; CT_GUARD(rego__ints2(ev, "bits.xor", a, &x, &y)); RET(rv_int(A, x ^ y)); }
static CT_RESULT rego__bi_bits_lsh(rg_ev *ev, rv **a, rv **out) {
  int64_t x, y;
  CT_GUARD(rego__ints2(ev, "bits.lsh", a, &x, &y));
  if (y < 0) return rg_bi_type(ev, "bits.lsh: operand 2 must be an unsigned integer number but got a negative integer");
  if (y >= 63 || (x != 0 && (x > (INT64_MAX >> y) || x < (INT64_MIN >> y)))) {
    BIGNUM *b = BN_new();
    if (!b) return rg_bi_oom(ev);
    BN_set_word(b, (unsigned long)(x < 0 ? -(uint64_t)x : (uint64_t)x));
    if (y > 100000) {
      BN_free(b);
      return rg_bi_fail(ev, "bits.lsh: shift too large");
    }
    BN_lshift(b, b, (int)y);
    BN_set_negative(b, x < 0);
    *out = rg_bn_to_rv(A, b);
    BN_free(b);
    if (!*out) return rg_bi_oom(ev);
    return CT_OK;
  }
  RET(rv_int(A, (int64_t)((uint64_t)x << y)));
}
static CT_RESULT rego__bi_bits_rsh(rg_ev *ev, rv **a, rv **out) {
  int64_t x, y;
  CT_GUARD(rego__ints2(ev, "bits.rsh", a, &x, &y));
  if (y < 0) return rg_bi_type(ev, "bits.rsh: operand 2 must be an unsigned integer number but got a negative integer");
  RET(rv_int(A, y >= 63 ? (x < 0 ? -1 : 0) : x >> y));
}
static CT_RESULT rego__bi_bits_negate(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "bits.negate", 1, a[0], RV_NUM));
  int64_t x;
  if (!rv_num_is_int(a[0], &x)) return rg_bi_type(ev, "bits.negate: operand 1 must be integer number but got floating-point number");
  RET(rv_int(A, ~x));
}

const rg_builtin rg_builtins_enc[] = {
    {"base64.encode", 1, rego__bi_b64_encode, false},
    {"base64.decode", 1, rego__bi_b64_decode, false},
    {"base64.is_valid", 1, rego__bi_b64_is_valid, false},
    {"base64url.encode", 1, rego__bi_b64url_encode, false},
    {"base64url.encode_no_pad", 1, rego__bi_b64url_encode_np, false},
    {"base64url.decode", 1, rego__bi_b64url_decode, false},
    {"hex.encode", 1, rego__bi_hex_encode, false},
    {"io.jwt.decode", 1, rego__bi_jwt_decode, false},
    {"hex.decode", 1, rego__bi_hex_decode, false},
    {"urlquery.encode", 1, rego__bi_urlquery_encode, false},
    {"urlquery.decode", 1, rego__bi_urlquery_decode, false},
    {"urlquery.encode_object", 1, rego__bi_urlquery_encode_object, false},
    {"urlquery.decode_object", 1, rego__bi_urlquery_decode_object, false},
    {"json.marshal", 1, rego__bi_json_marshal, false},
    {"json.marshal_with_options", 2, rego__bi_json_marshal_opts, false},
    {"json.unmarshal", 1, rego__bi_json_unmarshal, false},
    {"json.is_valid", 1, rego__bi_json_is_valid, false},
    {"crypto.md5", 1, rego__bi_md5, false},
    {"crypto.sha1", 1, rego__bi_sha1, false},
    {"crypto.sha256", 1, rego__bi_sha256, false},
    {"crypto.hmac.md5", 2, rego__bi_hmac_md5, false},
    {"crypto.hmac.sha1", 2, rego__bi_hmac_sha1, false},
    {"crypto.hmac.sha256", 2, rego__bi_hmac_sha256, false},
    {"crypto.hmac.sha512", 2, rego__bi_hmac_sha512, false},
    {"crypto.hmac.equal", 2, rego__bi_hmac_equal, false},
    {"units.parse", 1, rego__bi_units_parse, false},
    {"units.parse_bytes", 1, rego__bi_units_parse_bytes, false},
    {"semver.is_valid", 1, rego__bi_semver_is_valid, false},
    {"semver.compare", 2, rego__bi_semver_compare, false},
    {"bits.or", 2, rego__bi_bits_or, false},
    {"bits.and", 2, rego__bi_bits_and, false},
    {"bits.xor", 2, rego__bi_bits_xor, false},
    {"bits.lsh", 2, rego__bi_bits_lsh, false},
    {"bits.rsh", 2, rego__bi_bits_rsh, false},
    {"bits.negate", 1, rego__bi_bits_negate, false},
    {NULL, 0, NULL, false},
};
