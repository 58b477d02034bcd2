/*
 * value.c - arena allocator, Rego values (OPA ordering), JSON text in/out with OPA's number
 * model, and conversion to/from jansson.
 */
#include <errno.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rego_int.h"

/* ---------------------------------------------------------------- arena */
/* struct rg_chunk is in rego_int.h (rg_alloc's inline fast path) */

#define RG_CHUNK 65536

/* Each thread keeps a few standard chunks for its next evaluation, so evaluating a policy in a
 * loop does not return 64 KiB to malloc and ask for it again every time. */
#define RG_SPARE_MAX 4
static _Thread_local rg_chunk *rg_spare[RG_SPARE_MAX];
static _Thread_local int rg_nspare;
static _Thread_local bool rg_spare_registered;
static pthread_key_t rg_spare_key;
static pthread_once_t rg_spare_once = PTHREAD_ONCE_INIT;

static void rego__spare_release(void *unused) {
  (void)unused;
  while (rg_nspare) free(rg_spare[--rg_nspare]);
}
static void rego__spare_init(void) { (void)pthread_key_create(&rg_spare_key, rego__spare_release); }

void *rg_alloc_slow(rg_arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (n == 0) n = 16;
  rg_chunk *c = a->head;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > RG_CHUNK / 4 ? n : RG_CHUNK;
    if (a->limit && a->total + cap + sizeof(rg_chunk) > a->limit) {
      a->exceeded = true;
      return NULL;
    }
    rg_chunk *nc = (cap == RG_CHUNK && rg_nspare) ? rg_spare[--rg_nspare] : malloc(sizeof(rg_chunk) + cap);
    if (!nc) {
      a->exceeded = true;
      return NULL;
    }
    nc->cap = cap;
    nc->used = 0;
    a->total += cap + sizeof(rg_chunk);
    if (cap == RG_CHUNK || !c) {
      nc->next = a->head;
      a->head = nc;
    } else {
      /* A big block: keep the current chunk at the head so its free space stays usable. */
      nc->next = c->next;
      c->next = nc;
    }
    c = nc;
  }
  void *p = c->mem + c->used;
  c->used += n;
  memset(p, 0, n);
  return p;
}

char *rg_strndup(rg_arena *a, const char *s, size_t n) {
  char *p = rg_alloc(a, n + 1);
  if (!p) return NULL;
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

void rg_arena_free(rg_arena *a) {
  rg_chunk *c = a->head;
  while (c) {
    rg_chunk *nx = c->next;
    if (c->cap == RG_CHUNK && rg_nspare < RG_SPARE_MAX) {
      if (!rg_spare_registered) {
        /* frees this thread's spares when it exits */
        (void)pthread_once(&rg_spare_once, rego__spare_init);
        (void)pthread_setspecific(rg_spare_key, (void *)1);
        rg_spare_registered = true;
      }
      rg_spare[rg_nspare++] = c;
    } else
      free(c);
    c = nx;
  }
  a->head = NULL;
  a->total = 0;
}

/* ---------------------------------------------------------------- constructors */
rv rv_null_v = {.t = RV_NULL};
rv rv_true_v = {.t = RV_BOOL, .b = true};
rv rv_false_v = {.t = RV_BOOL, .b = false};
rv rv_empty_arr_v = {.t = RV_ARR};
rv rv_empty_obj_v = {.t = RV_OBJ};
rv rv_empty_set_v = {.t = RV_SET};

rv *rv_bool(bool b) { return b ? RV_TRUE : RV_FALSE; }

rv *rv_int(rg_arena *a, int64_t i) {
  rv *v = rg_alloc(a, sizeof(rv));
  if (!v) return NULL;
  v->t = RV_NUM;
  v->nk = RN_INT;
  v->u.i = i;
  return v;
}

rv *rv_dbl(rg_arena *a, double d) {
  if (d == floor(d) && fabs(d) < 9007199254740992.0) return rv_int(a, (int64_t)d);
  rv *v = rg_alloc(a, sizeof(rv));
  if (!v) return NULL;
  v->t = RV_NUM;
  v->nk = RN_DBL;
  v->u.d = d;
  return v;
}

rv *rv_num_text(rg_arena *a, const char *txt, size_t n) {
  bool integral = true;
  for (size_t i = 0; i < n; i++)
    if (txt[i] == '.' || txt[i] == 'e' || txt[i] == 'E') integral = false;
  char tmp[64];
  if (integral) {
    if (n < sizeof(tmp)) {
      memcpy(tmp, txt, n);
      tmp[n] = 0;
      errno = 0;
      char *end;
      long long ll = strtoll(tmp, &end, 10);
      if (errno == 0 && *end == 0) return rv_int(a, ll);
    }
    rv *v = rg_alloc(a, sizeof(rv));
    if (!v) return NULL;
    v->t = RV_NUM;
    v->nk = RN_BIG;
    v->u.s = rg_strndup(a, txt, n);
    v->n = (uint32_t)n;
    return v->u.s ? v : NULL;
  }
  char *buf = rg_strndup(a, txt, n);
  if (!buf) return NULL;
  rv *v = rg_alloc(a, sizeof(rv));
  if (!v) return NULL;
  v->t = RV_NUM;
  v->nk = RN_DBL;
  v->u.d = strtod(buf, NULL);
  v->lit = buf;
  return v;
}

rv *rv_str(rg_arena *a, const char *s, size_t n) {
  rv *v = rg_alloc(a, sizeof(rv));
  if (!v) return NULL;
  v->t = RV_STR;
  v->n = (uint32_t)n;
  v->u.s = rg_strndup(a, s, n);
  return v->u.s ? v : NULL;
}

rv *rv_cstr(rg_arena *a, const char *s) { return rv_str(a, s, strlen(s)); }

rv *rv_arr(rg_arena *a, rv **items, size_t n) {
  rv *v = rg_alloc(a, sizeof(rv));
  if (!v) return NULL;
  v->t = RV_ARR;
  v->n = (uint32_t)n;
  if (n) {
    v->u.a = rg_alloc(a, n * sizeof(rv *));
    if (!v->u.a) return NULL;
    memcpy(v->u.a, items, n * sizeof(rv *));
  }
  return v;
}

static int rego__rv__cmp_q(const void *x, const void *y) { return rv_cmp(*(rv *const *)x, *(rv *const *)y); }

rv *rv_set(rg_arena *a, rv **items, size_t n) {
  rv *v = rv_arr(a, items, n);
  if (!v) return NULL;
  v->t = RV_SET;
  if (n > 1) {
    qsort(v->u.a, n, sizeof(rv *), rego__rv__cmp_q);
    size_t w = 1;
    for (size_t i = 1; i < n; i++)
      if (rv_cmp(v->u.a[w - 1], v->u.a[i]) != 0) v->u.a[w++] = v->u.a[i];
    v->n = (uint32_t)w;
  }
  return v;
}

typedef struct {
  rv *k, *v;
} rv__kv;
static int rego__rv__kv_cmp(const void *x, const void *y) {
  return rv_cmp(((const rv__kv *)x)->k, ((const rv__kv *)y)->k);
}

rv *rv_obj(rg_arena *a, rv **keys, rv **vals, size_t n, bool *conflict) {
  if (conflict) *conflict = false;
  rv *o = rg_alloc(a, sizeof(rv));
  if (!o) return NULL;
  o->t = RV_OBJ;
  if (!n) return o;
  rv__kv small[16];
  rv__kv *kv = n <= 16 ? small : malloc(n * sizeof(rv__kv));
  if (!kv) return NULL;
  for (size_t i = 0; i < n; i++) kv[i] = (rv__kv){keys[i], vals[i]};
  if (n <= 16) {
    /* insertion sort: small objects dominate (JSON input, rule documents) */
    for (size_t i = 1; i < n; i++) {
      rv__kv x = kv[i];
      size_t j = i;
      while (j > 0 && rv_cmp(kv[j - 1].k, x.k) > 0) {
        kv[j] = kv[j - 1];
        j--;
      }
      kv[j] = x;
    }
  } else
    qsort(kv, n, sizeof(rv__kv), rego__rv__kv_cmp);
  o->u.o.k = rg_alloc(a, n * sizeof(rv *));
  o->u.o.v = rg_alloc(a, n * sizeof(rv *));
  if (!o->u.o.k || !o->u.o.v) {
    if (kv != small) free(kv);
    return NULL;
  }
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    if (w && rv_cmp(o->u.o.k[w - 1], kv[i].k) == 0) {
      if (!rv_eq(o->u.o.v[w - 1], kv[i].v)) {
        if (kv != small) free(kv);
        if (conflict) *conflict = true;
        return NULL;
      }
      continue;
    }
    o->u.o.k[w] = kv[i].k;
    o->u.o.v[w] = kv[i].v;
    w++;
  }
  o->n = (uint32_t)w;
  if (kv != small) free(kv);
  return o;
}

/* ---------------------------------------------------------------- comparison */
static int rego__rv__bigcmp(const char *x, const char *y) {
  /* both decimal integer texts (optional '-') */
  bool nx = x[0] == '-', ny = y[0] == '-';
  if (nx != ny) return nx ? -1 : 1;
  if (nx) {
    x++;
    y++;
  }
  size_t lx = strlen(x), ly = strlen(y);
  int c = lx < ly ? -1 : lx > ly ? 1 : strcmp(x, y);
  if (c > 0) c = 1;
  if (c < 0) c = -1;
  return nx ? -c : c;
}

double rv_num_dbl(const rv *x) {
  switch (x->nk) {
    case RN_INT: return (double)x->u.i;
    case RN_DBL: return x->u.d;
    default: return strtod(x->u.s, NULL);
  }
}

/* Decimal text of a number: the literal, an integer, or the shortest round-trip double. */
static void rego__rv__numtext(const rv *x, char *buf, size_t cap, const char **out) {
  if (x->nk == RN_BIG) {
    *out = x->u.s;
    return;
  }
  if (x->nk == RN_DBL && x->lit) {
    *out = x->lit;
    return;
  }
  if (x->nk == RN_INT) snprintf(buf, cap, "%lld", (long long)x->u.i);
  else {
    for (int prec = 1; prec <= 17; prec++) {
      snprintf(buf, cap, "%.*g", prec, x->u.d);
      if (strtod(buf, NULL) == x->u.d) break;
    }
  }
  *out = buf;
}

/* value = 0.DIGITS * 10^exp, digits without leading/trailing zeros; zero has no digits */
typedef struct {
  bool neg;
  char d[400];
  size_t nd;
  long exp;
} rv__dec;

static void rego__rv__dec_parse(const char *s, rv__dec *o) {
  memset(o, 0, sizeof(*o));
  if (*s == '-') {
    o->neg = true;
    s++;
  } else if (*s == '+')
    s++;
  long point = -1, n = 0;
  bool lead = true;
  long lead_zeros_after_point = 0;
  for (; *s && *s != 'e' && *s != 'E'; s++) {
    if (*s == '.') {
      point = n;
      continue;
    }
    if (*s < '0' || *s > '9') break;
    if (lead && *s == '0') {
      if (point >= 0) lead_zeros_after_point++;
      else {
        /* leading integer zero: does not count */
      }
      continue;
    }
    lead = false;
    if (o->nd < sizeof(o->d) - 1) o->d[o->nd++] = *s;
    n++;
  }
  long e = 0;
  if (*s == 'e' || *s == 'E') e = strtol(s + 1, NULL, 10);
  /* integer digits count */
  long intdigits = point >= 0 ? point : n;
  if (point >= 0 && intdigits == 0) intdigits = -lead_zeros_after_point;
  while (o->nd && o->d[o->nd - 1] == '0') o->nd--;
  o->exp = intdigits + e;
  if (!o->nd) o->neg = false;
}

int rg_dec_cmp(const rv *x, const rv *y) {
  char b1[64], b2[64];
  const char *t1, *t2;
  rego__rv__numtext(x, b1, sizeof(b1), &t1);
  rego__rv__numtext(y, b2, sizeof(b2), &t2);
  rv__dec a, b;
  rego__rv__dec_parse(t1, &a);
  rego__rv__dec_parse(t2, &b);
  int sa = a.nd ? (a.neg ? -1 : 1) : 0, sb = b.nd ? (b.neg ? -1 : 1) : 0;
  if (sa != sb) return sa < sb ? -1 : 1;
  if (!sa) return 0;
  int mag;
  if (a.exp != b.exp) mag = a.exp < b.exp ? -1 : 1;
  else {
    size_t m = a.nd < b.nd ? a.nd : b.nd;
    int c = memcmp(a.d, b.d, m);
    if (c) mag = c < 0 ? -1 : 1;
    else mag = a.nd < b.nd ? -1 : a.nd > b.nd ? 1 : 0;
  }
  return sa < 0 ? -mag : mag;
}

static int rego__rv__numcmp(const rv *x, const rv *y) {
  if (x->nk == RN_INT && y->nk == RN_INT) return x->u.i < y->u.i ? -1 : x->u.i > y->u.i;
  if (x->nk == RN_BIG && y->nk == RN_BIG) return rego__rv__bigcmp(x->u.s, y->u.s);
  if (x->nk == RN_BIG && y->nk == RN_INT) {
    char t[32];
    snprintf(t, sizeof(t), "%lld", (long long)y->u.i);
    return rego__rv__bigcmp(x->u.s, t);
  }
  if (y->nk == RN_BIG && x->nk == RN_INT) return -rego__rv__numcmp(y, x);
  double a = rv_num_dbl(x), b = rv_num_dbl(y);
  if (a < b) return -1;
  if (a > b) return 1;
  /* equal as doubles: decide exactly on the decimal texts (0.1 vs 0.10000000000000001, 1e400) */
  return rg_dec_cmp(x, y);
}

int rv_cmp(const rv *x, const rv *y) {
  if (x == y) return 0;
  if (x->t != y->t) return x->t < y->t ? -1 : 1;
  switch (x->t) {
    case RV_NULL: return 0;
    case RV_BOOL: return (int)x->b - (int)y->b;
    case RV_NUM: return rego__rv__numcmp(x, y);
    case RV_STR: {
      size_t m = x->n < y->n ? x->n : y->n;
      int c = memcmp(x->u.s, y->u.s, m);
      if (c) return c < 0 ? -1 : 1;
      return x->n < y->n ? -1 : x->n > y->n;
    }
    case RV_ARR:
    case RV_SET: {
      size_t m = x->n < y->n ? x->n : y->n;
      for (size_t i = 0; i < m; i++) {
        int c = rv_cmp(x->u.a[i], y->u.a[i]);
        if (c) return c;
      }
      return x->n < y->n ? -1 : x->n > y->n;
    }
    case RV_OBJ: {
      size_t m = x->n < y->n ? x->n : y->n;
      for (size_t i = 0; i < m; i++) {
        int c = rv_cmp(x->u.o.k[i], y->u.o.k[i]);
        if (c) return c;
        c = rv_cmp(x->u.o.v[i], y->u.o.v[i]);
        if (c) return c;
      }
      return x->n < y->n ? -1 : x->n > y->n;
    }
  }
  return 0;
}

bool rv_eq(const rv *x, const rv *y) { return rv_cmp(x, y) == 0; }

static long rego__rv__find(rv *const *arr, size_t n, const rv *key) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = rv_cmp(arr[mid], key);
    if (c == 0) return (long)mid;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

rv *rv_obj_get(const rv *o, const rv *key) {
  if (o->t != RV_OBJ || !o->n) return NULL;
  long i = rego__rv__find(o->u.o.k, o->n, key);
  return i < 0 ? NULL : o->u.o.v[i];
}

rv *rv_obj_gets(const rv *o, const char *key) {
  rv k = {.t = RV_STR, .n = (uint32_t)strlen(key), .u.s = key};
  return rv_obj_get(o, &k);
}

bool rv_set_has(const rv *s, const rv *x) { return s->n && rego__rv__find(s->u.a, s->n, x) >= 0; }

bool rv_num_is_int(const rv *x, int64_t *out) {
  if (x->t != RV_NUM) return false;
  if (x->nk == RN_INT) {
    *out = x->u.i;
    return true;
  }
  if (x->nk == RN_DBL && x->u.d == floor(x->u.d) && fabs(x->u.d) < 9.2e18) {
    *out = (int64_t)x->u.d;
    return true;
  }
  return false;
}

bool rv_truthy_false(const rv *x) { return x->t == RV_BOOL && !x->b; }

/* ---------------------------------------------------------------- JSON parse */
typedef struct {
  rg_arena *a;
  const char *s;
  size_t n, i, depth, max_depth;
  ct_err *err;
} rg__jp;

static CT_RESULT rego__jfail(rg__jp *p, const char *what) {
  return ct_fail(p->err, CT_EINVAL, "invalid JSON at offset %zu: %s", p->i, what);
}

static void rego__jws(rg__jp *p) {
  while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
    p->i++;
}

static int rego__hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static size_t rego__utf8_put(char *o, uint32_t cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

static CT_RESULT rego__jstr(rg__jp *p, rv **out) {
  p->i++; /* opening quote */
  size_t start = p->i;
  bool esc = false;
  while (p->i < p->n && p->s[p->i] != '"') {
    if ((unsigned char)p->s[p->i] < 0x20) return rego__jfail(p, "control character in string");
    if (p->s[p->i] == '\\') {
      esc = true;
      p->i++;
    }
    p->i++;
  }
  if (p->i >= p->n) return rego__jfail(p, "unterminated string");
  size_t end = p->i++;
  if (!esc) {
    *out = rv_str(p->a, p->s + start, end - start);
    return *out ? CT_OK : ct_fail(p->err, CT_ENOMEM, "out of memory");
  }
  char *buf = rg_alloc(p->a, end - start + 1);
  if (!buf) return ct_fail(p->err, CT_ENOMEM, "out of memory");
  size_t w = 0;
  for (size_t i = start; i < end; i++) {
    char c = p->s[i];
    if (c != '\\') {
      buf[w++] = c;
      continue;
    }
    c = p->s[++i];
    switch (c) {
      case '"': buf[w++] = '"'; break;
      case '\\': buf[w++] = '\\'; break;
      case '/': buf[w++] = '/'; break;
      case 'b': buf[w++] = '\b'; break;
      case 'f': buf[w++] = '\f'; break;
      case 'n': buf[w++] = '\n'; break;
      case 'r': buf[w++] = '\r'; break;
      case 't': buf[w++] = '\t'; break;
      case 'u': {
        uint32_t cp = 0;
        if (i + 4 >= end + 0 && i + 4 > end) return rego__jfail(p, "bad \\u escape");
        for (size_t k = 1; k <= 4; k++) {
          int h = rego__hex(p->s[i + k]);
          if (h < 0) return rego__jfail(p, "bad \\u escape");
          cp = cp * 16 + (uint32_t)h;
        }
        i += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < end + 1 && p->s[i + 1] == '\\' && p->s[i + 2] == 'u') {
          uint32_t lo = 0;
          bool ok = true;
          for (size_t k = 3; k <= 6; k++) {
            int h = rego__hex(p->s[i + k]);
            if (h < 0) ok = false;
            else lo = lo * 16 + (uint32_t)h;
          }
          if (ok && lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
          } else cp = 0xFFFD;
        } else if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD;
        w += rego__utf8_put(buf + w, cp);
        break;
      }
      default: return rego__jfail(p, "bad escape");
    }
  }
  rv *v = rg_alloc(p->a, sizeof(rv));
  if (!v) return ct_fail(p->err, CT_ENOMEM, "out of memory");
  v->t = RV_STR;
  v->n = (uint32_t)w;
  buf[w] = 0;
  v->u.s = buf;
  *out = v;
  return CT_OK;
}

static CT_RESULT rego__jval(rg__jp *p, rv **out);

static CT_RESULT rego__jcoll(rg__jp *p, bool obj, rv **out) {
  if (++p->depth > p->max_depth) return rego__jfail(p, "nesting too deep");
  p->i++;
  size_t cap = 8, n = 0;
  rv **ks = malloc(cap * sizeof(rv *)), **vs = malloc(cap * sizeof(rv *));
  ct_status st = CT_OK;
  if (!ks || !vs) {
    st = ct_fail(p->err, CT_ENOMEM, "out of memory");
    goto done;
  }
  rego__jws(p);
  char close = obj ? '}' : ']';
  if (p->i < p->n && p->s[p->i] == close) {
    p->i++;
  } else {
    for (;;) {
      if (n == cap) {
        cap *= 2;
        rv **nk = realloc(ks, cap * sizeof(rv *));
        if (nk) ks = nk;
        rv **nv = realloc(vs, cap * sizeof(rv *));
        if (nv) vs = nv;
        if (!nk || !nv) {
          st = ct_fail(p->err, CT_ENOMEM, "out of memory");
          goto done;
        }
      }
      rego__jws(p);
      if (obj) {
        if (p->i >= p->n || p->s[p->i] != '"') {
          st = rego__jfail(p, "expected object key");
          goto done;
        }
        CT_GUARD_GOTO(st, rego__jstr(p, &ks[n]), done);
        rego__jws(p);
        if (p->i >= p->n || p->s[p->i] != ':') {
          st = rego__jfail(p, "expected ':'");
          goto done;
        }
        p->i++;
      }
      CT_GUARD_GOTO(st, rego__jval(p, &vs[n]), done);
      n++;
      rego__jws(p);
      if (p->i < p->n && p->s[p->i] == ',') {
        p->i++;
        continue;
      }
      if (p->i < p->n && p->s[p->i] == close) {
        p->i++;
        break;
      }
      st = rego__jfail(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
      goto done;
    }
  }
  if (obj) {
    /* Later duplicate keys win, as in Go's encoding/json. */
    for (size_t i = 0; i < n; i++)
      for (size_t j = i + 1; j < n; j++)
        if (ks[j] && ks[i] && rv_eq(ks[i], ks[j])) {
          vs[i] = vs[j];
          ks[j] = NULL;
        }
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
      if (ks[i]) {
        ks[w] = ks[i];
        vs[w++] = vs[i];
      }
    *out = rv_obj(p->a, ks, vs, w, NULL);
  } else {
    *out = rv_arr(p->a, vs, n);
  }
  if (!*out) st = ct_fail(p->err, CT_ENOMEM, "out of memory");
done:
  free(ks);
  free(vs);
  p->depth--;
  return st;
}

static CT_RESULT rego__jval(rg__jp *p, rv **out) {
  rego__jws(p);
  if (p->i >= p->n) return rego__jfail(p, "unexpected end of input");
  char c = p->s[p->i];
  if (c == '{' || c == '[') return rego__jcoll(p, c == '{', out);
  if (c == '"') return rego__jstr(p, out);
  if (p->n - p->i >= 4 && !memcmp(p->s + p->i, "true", 4)) {
    p->i += 4;
    *out = RV_TRUE;
    return CT_OK;
  }
  if (p->n - p->i >= 5 && !memcmp(p->s + p->i, "false", 5)) {
    p->i += 5;
    *out = RV_FALSE;
    return CT_OK;
  }
  if (p->n - p->i >= 4 && !memcmp(p->s + p->i, "null", 4)) {
    p->i += 4;
    *out = &rv_null_v;
    return CT_OK;
  }
  if (c == '-' || (c >= '0' && c <= '9')) {
    size_t st = p->i;
    if (p->s[p->i] == '-') p->i++;
    if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return rego__jfail(p, "bad number");
    if (p->s[p->i] == '0' && p->i + 1 < p->n && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9')
      return rego__jfail(p, "leading zero");
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    if (p->i < p->n && p->s[p->i] == '.') {
      p->i++;
      if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return rego__jfail(p, "bad number");
      while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
      p->i++;
      if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
      if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return rego__jfail(p, "bad number");
      while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    }
    *out = rv_num_text(p->a, p->s + st, p->i - st);
    return *out ? CT_OK : ct_fail(p->err, CT_ENOMEM, "out of memory");
  }
  return rego__jfail(p, "unexpected character");
}

CT_RESULT rg_json_parse(rg_arena *a, const char *s, size_t n, size_t max_depth, rv **out, ct_err *err) {
  rg__jp p = {.a = a, .s = s, .n = n, .max_depth = max_depth ? max_depth : 1000, .err = err};
  CT_GUARD(rego__jval(&p, out));
  rego__jws(&p);
  if (p.i != p.n) return rego__jfail(&p, "trailing characters");
  return CT_OK;
}

/* ---------------------------------------------------------------- JSON write */
CT_RESULT rg_num_write(const rv *v, ct_buf *out, ct_err *err) {
  char t[64];
  switch (v->nk) {
    case RN_INT: snprintf(t, sizeof(t), "%lld", (long long)v->u.i); break;
    case RN_BIG: return ct_buf_append_str(out, v->u.s, err);
    default: {
      if (v->lit) return ct_buf_append_str(out, v->lit, err);
      double d = v->u.d;
      if (!isfinite(d)) return ct_buf_append_str(out, "null", err);
      /* shortest representation that round-trips, in Go's 'g'-like style */
      /* computed decimals: 15 significant digits, like OPA's decimal arithmetic (0.1+0.2 = 0.3) */
      snprintf(t, sizeof(t), "%.15g", d);
      /* Go prints exponents as e+21 / e-07 -> e+21 / e-07; normalise "e-05" style to "e-05" */
      char *e = strchr(t, 'e');
      if (e) {
        /* Go: 1e+21, 1e-07 */
        char mant[40], ex[16];
        size_t ml = (size_t)(e - t);
        memcpy(mant, t, ml);
        mant[ml] = 0;
        int expo = atoi(e + 1);
        if (expo >= -4 && expo < 21) {
          snprintf(t, sizeof(t), "%.17f", d);
          /* fall back to fixed with trailing zero trim */
          for (int prec = 0; prec <= 20; prec++) {
            snprintf(t, sizeof(t), "%.*f", prec, d);
            if (fabs(strtod(t, NULL) - d) <= fabs(d) * 1e-15) break;
          }
        } else {
          snprintf(ex, sizeof(ex), "e%c%02d", expo < 0 ? '-' : '+', expo < 0 ? -expo : expo);
          snprintf(t, sizeof(t), "%s%s", mant, ex);
        }
      }
    }
  }
  return ct_buf_append_str(out, t, err);
}

static CT_RESULT rego__jstr_write(const char *s, size_t n, ct_buf *out, ct_err *err) {
  static const char hexd[] = "0123456789abcdef";
  CT_GUARD(ct_buf_append(out, "\"", 1, err));
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *rep = NULL;
    char u[7];
    if (c == '"') rep = "\\\"";
    else if (c == '\\') rep = "\\\\";
    else if (c == '\n') rep = "\\n";
    else if (c == '\r') rep = "\\r";
    else if (c == '\t') rep = "\\t";
    else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
      u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0';
      u[4] = hexd[c >> 4]; u[5] = hexd[c & 15]; u[6] = 0;
      rep = u;
    }
    if (rep) {
      CT_GUARD(ct_buf_append(out, s + i - run, run, err));
      run = 0;
      CT_GUARD(ct_buf_append_str(out, rep, err));
    } else run++;
  }
  CT_GUARD(ct_buf_append(out, s + n - run, run, err));
  return ct_buf_append(out, "\"", 1, err);
}

static CT_RESULT rego__nl(ct_buf *out, bool pretty, int indent, ct_err *err) {
  if (!pretty) return CT_OK;
  CT_GUARD(ct_buf_append(out, "\n", 1, err));
  for (int i = 0; i < indent; i++) CT_GUARD(ct_buf_append(out, "  ", 2, err));
  return CT_OK;
}

/* Object keys that are not strings are written as the JSON text of the key, like OPA does. */
CT_RESULT rg_json_write(const rv *v, ct_buf *out, bool pretty, int indent, ct_err *err) {
  switch (v->t) {
    case RV_NULL: return ct_buf_append_str(out, "null", err);
    case RV_BOOL: return ct_buf_append_str(out, v->b ? "true" : "false", err);
    case RV_NUM: return rg_num_write(v, out, err);
    case RV_STR: return rego__jstr_write(v->u.s, v->n, out, err);
    case RV_ARR:
    case RV_SET:
      CT_GUARD(ct_buf_append(out, "[", 1, err));
      for (size_t i = 0; i < v->n; i++) {
        if (i) CT_GUARD(ct_buf_append(out, ",", 1, err));
        CT_GUARD(rego__nl(out, pretty, indent + 1, err));
        CT_GUARD(rg_json_write(v->u.a[i], out, pretty, indent + 1, err));
      }
      if (v->n) CT_GUARD(rego__nl(out, pretty, indent, err));
      return ct_buf_append(out, "]", 1, err);
    case RV_OBJ: {
      CT_GUARD(ct_buf_append(out, "{", 1, err));
      /* string keys are already sorted; non-string keys sort before/after by type, which can
       * differ from the order of their text: sort the text forms when any key is not a string */
      for (size_t i = 0; i < v->n; i++) {
        if (i) CT_GUARD(ct_buf_append(out, ",", 1, err));
        CT_GUARD(rego__nl(out, pretty, indent + 1, err));
        const rv *k = v->u.o.k[i];
        if (k->t == RV_STR) CT_GUARD(rego__jstr_write(k->u.s, k->n, out, err));
        else {
          ct_buf kb;
          ct_buf_init(&kb, 1 << 24);
          CT_GUARD(rg_json_write(k, &kb, false, 0, err));
          ct_status st = rego__jstr_write((const char *)kb.data, kb.len, out, err);
          ct_buf_free(&kb);
          CT_GUARD(st);
        }
        CT_GUARD(ct_buf_append_str(out, pretty ? ": " : ":", err));
        CT_GUARD(rg_json_write(v->u.o.v[i], out, pretty, indent + 1, err));
      }
      if (v->n) CT_GUARD(rego__nl(out, pretty, indent, err));
      return ct_buf_append(out, "}", 1, err);
    }
  }
  return CT_OK;
}

CT_RESULT rg_value_write_rego(const rv *v, ct_buf *out, ct_err *err) {
  switch (v->t) {
    case RV_ARR:
    case RV_SET:
      if (v->t == RV_SET && !v->n) return ct_buf_append_str(out, "set()", err);
      CT_GUARD(ct_buf_append(out, v->t == RV_SET ? "{" : "[", 1, err));
      for (size_t i = 0; i < v->n; i++) {
        if (i) CT_GUARD(ct_buf_append(out, ", ", 2, err));
        CT_GUARD(rg_value_write_rego(v->u.a[i], out, err));
      }
      return ct_buf_append(out, v->t == RV_SET ? "}" : "]", 1, err);
    case RV_OBJ:
      CT_GUARD(ct_buf_append(out, "{", 1, err));
      for (size_t i = 0; i < v->n; i++) {
        if (i) CT_GUARD(ct_buf_append(out, ", ", 2, err));
        CT_GUARD(rg_value_write_rego(v->u.o.k[i], out, err));
        CT_GUARD(ct_buf_append(out, ": ", 2, err));
        CT_GUARD(rg_value_write_rego(v->u.o.v[i], out, err));
      }
      return ct_buf_append(out, "}", 1, err);
    default: return rg_json_write(v, out, false, 0, err);
  }
}

/* ---------------------------------------------------------------- jansson */
CT_RESULT rg_from_jansson(rg_arena *a, const json_t *j, size_t depth, bool borrow, rv **out, ct_err *err) {
  CT_ENSURE(depth < 512, err, CT_ELIMIT, "rego: JSON value nested too deeply");
  switch (json_typeof(j)) {
    case JSON_NULL: *out = &rv_null_v; return CT_OK;
    case JSON_TRUE: *out = RV_TRUE; return CT_OK;
    case JSON_FALSE: *out = RV_FALSE; return CT_OK;
    case JSON_INTEGER: *out = rv_int(a, (int64_t)json_integer_value(j)); break;
    case JSON_REAL: *out = rv_dbl(a, json_real_value(j)); break;
    case JSON_STRING: {
      if (!borrow) {
        *out = rv_str(a, json_string_value(j), json_string_length(j));
        break;
      }
      /* borrowed: the caller's JSON outlives the evaluation */
      rv *v = rg_alloc(a, sizeof(rv));
      if (v) {
        v->t = RV_STR;
        v->n = (uint32_t)json_string_length(j);
        v->u.s = json_string_value(j);
      }
      *out = v;
      break;
    }
    case JSON_ARRAY: {
      size_t n = json_array_size(j);
      rv *v = rv_arr(a, NULL, 0);
      CT_ENSURE(v, err, CT_ENOMEM, "out of memory");
      if (n) {
        v->u.a = rg_alloc(a, n * sizeof(rv *));
        CT_ENSURE(v->u.a, err, CT_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) CT_GUARD(rg_from_jansson(a, json_array_get(j, i), depth + 1, borrow, &v->u.a[i], err));
        v->n = (uint32_t)n;
      }
      *out = v;
      return CT_OK;
    }
    case JSON_OBJECT: {
      size_t n = json_object_size(j);
      rv **ks = rg_alloc(a, (n + 1) * sizeof(rv *)), **vs = rg_alloc(a, (n + 1) * sizeof(rv *));
      CT_ENSURE(ks && vs, err, CT_ENOMEM, "out of memory");
      size_t i = 0;
      const char *key;
      json_t *val;
      json_object_foreach((json_t *)j, key, val) {
        if (borrow) {
          ks[i] = rg_alloc(a, sizeof(rv));
          CT_ENSURE(ks[i], err, CT_ENOMEM, "out of memory");
          ks[i]->t = RV_STR;
          ks[i]->n = (uint32_t)strlen(key);
          ks[i]->u.s = key;
        } else {
          ks[i] = rv_cstr(a, key);
          CT_ENSURE(ks[i], err, CT_ENOMEM, "out of memory");
        }
        CT_GUARD(rg_from_jansson(a, val, depth + 1, borrow, &vs[i], err));
        i++;
      }
      *out = rv_obj(a, ks, vs, i, NULL);
      break;
    }
  }
  CT_ENSURE(*out, err, CT_ENOMEM, "out of memory");
  return CT_OK;
}

CT_RESULT rg_to_jansson(const rv *v, json_t **out, ct_err *err) {
  json_t *j = NULL;
  switch (v->t) {
    case RV_NULL: j = json_null(); break;
    case RV_BOOL: j = json_boolean(v->b); break;
    case RV_NUM:
      if (v->nk == RN_INT) j = json_integer((json_int_t)v->u.i);
      else j = json_real(rv_num_dbl(v));
      break;
    case RV_STR: j = json_stringn(v->u.s, v->n); break;
    case RV_ARR:
    case RV_SET:
      j = json_array();
      for (size_t i = 0; j && i < v->n; i++) {
        json_t *e;
        ct_status st = rg_to_jansson(v->u.a[i], &e, err);
        if (st) {
          json_decref(j);
          return st;
        }
        if (json_array_append_new(j, e)) {
          json_decref(j);
          j = NULL;
        }
      }
      break;
    case RV_OBJ:
      j = json_object();
      for (size_t i = 0; j && i < v->n; i++) {
        json_t *e;
        ct_status st = rg_to_jansson(v->u.o.v[i], &e, err);
        if (st) {
          json_decref(j);
          return st;
        }
        const rv *k = v->u.o.k[i];
        char *ktxt = NULL;
        if (k->t != RV_STR) {
          ct_buf kb;
          ct_buf_init(&kb, 1 << 24);
          st = rg_json_write(k, &kb, false, 0, err);
          if (st) {
            json_decref(e);
            json_decref(j);
            return st;
          }
          ktxt = (char *)ct_buf_take(&kb, NULL);
        }
        int r = ktxt ? json_object_set_new(j, ktxt, e) : json_object_setn_new(j, k->u.s, k->n, e);
        free(ktxt);
        if (r) {
          json_decref(j);
          j = NULL;
        }
      }
      break;
  }
  CT_ENSURE(j, err, CT_ENOMEM, "rego: out of memory converting a value to JSON");
  *out = j;
  return CT_OK;
}
