/*
 * builtins_glob.c - regex.globs_match: whether two "globs" (the small regex dialect of
 * github.com/yashtewari/glob-intersection, which OPA uses) have a non-empty intersection.
 *
 * Syntax: a token is a character, '.' (any character) or a set "[...]" of characters and
 * ranges a-z (no negation); a token may carry one flag, '*' (zero or more) or '+' (one or
 * more); '\' escapes the next character. Error messages follow the library's wording.
 *
 * Each glob is a chain NFA (one state per token; '*' loops). The intersection is non-empty when
 * the product automaton reaches both ends, found by a breadth-first search over state pairs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rego_bi.h"

#define GLOB_MAX_RUNES 2048 /* per glob: bounds the product search to (2048*2+1)^2 states */

typedef struct {
  bool any;            /* '.' */
  uint32_t (*r)[2];    /* inclusive ranges (arena) */
  size_t nr;
  bool star;           /* zero or more ('+' is expanded into one plain token and one starred) */
} gl_tok;

typedef struct {
  gl_tok *t;
  size_t n;
} gl_glob;

/* Decodes UTF-8 into runes (invalid bytes become U+FFFD, as Go's []rune(string) does). */
static size_t rego__gl_runes(const char *s, size_t n, uint32_t *out, size_t cap) {
  size_t w = 0;
  for (size_t i = 0; i < n && w < cap;) {
    unsigned char c = (unsigned char)s[i];
    uint32_t r;
    size_t len;
    if (c < 0x80) r = c, len = 1;
    else if ((c & 0xe0) == 0xc0) r = c & 0x1f, len = 2;
    else if ((c & 0xf0) == 0xe0) r = c & 0x0f, len = 3;
    else if ((c & 0xf8) == 0xf0) r = c & 0x07, len = 4;
    else r = 0xfffd, len = 1;
    if (len > 1) {
      bool ok = i + len <= n;
      for (size_t k = 1; ok && k < len; k++) {
        unsigned char cc = (unsigned char)s[i + k];
        if ((cc & 0xc0) != 0x80) ok = false;
        else r = (r << 6) | (cc & 0x3f);
      }
      if (!ok) r = 0xfffd, len = 1;
    }
    out[w++] = r;
    i += len;
  }
  return w;
}

static void rego__gl_utf8(const uint32_t *r, size_t n, char *out, size_t cap) {
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t c = r[i];
    char b[4];
    size_t l;
    if (c < 0x80) b[0] = (char)c, l = 1;
    else if (c < 0x800) b[0] = (char)(0xc0 | c >> 6), b[1] = (char)(0x80 | (c & 0x3f)), l = 2;
    else if (c < 0x10000)
      b[0] = (char)(0xe0 | c >> 12), b[1] = (char)(0x80 | ((c >> 6) & 0x3f)), b[2] = (char)(0x80 | (c & 0x3f)), l = 3;
    else
      b[0] = (char)(0xf0 | c >> 18), b[1] = (char)(0x80 | ((c >> 12) & 0x3f)), b[2] = (char)(0x80 | ((c >> 6) & 0x3f)),
      b[3] = (char)(0x80 | (c & 0x3f)), l = 4;
    if (w + l + 1 > cap) break;
    memcpy(out + w, b, l);
    w += l;
  }
  out[w] = 0;
}

typedef struct {
  const uint32_t *in;
  size_t n;
  char err[512];
} gl_lex;

static bool rego__gl_fail(gl_lex *lx, size_t pos, const char *msg) {
  char txt[256];
  rego__gl_utf8(lx->in, lx->n, txt, sizeof(txt));
  snprintf(lx->err, sizeof(lx->err), "input:%s, pos:%zu, %s: the input provided is invalid", txt, pos, msg);
  return false;
}

/* The rune at *i (after a possible backslash); false at the end or on a trailing backslash. */
static bool rego__gl_next(gl_lex *lx, size_t *i, uint32_t *r, bool *esc, bool *end) {
  *end = false;
  if (*i >= lx->n) {
    *end = true;
    return false;
  }
  if (lx->in[*i] == '\\') {
    if (*i + 1 >= lx->n) return rego__gl_fail(lx, *i, "input ends with a \\ (escape) character");
    *r = lx->in[*i + 1];
    *esc = true;
    *i += 2;
    return true;
  }
  *r = lx->in[(*i)++];
  *esc = false;
  return true;
}

static bool rego__gl_add_range(rg_arena *a, gl_tok *t, uint32_t lo, uint32_t hi, size_t *cap) {
  if (t->nr == *cap) {
    size_t nc = *cap ? *cap * 2 : 8;
    uint32_t(*nr)[2] = rg_alloc(a, nc * sizeof(*nr));
    if (!nr) return false;
    if (t->nr) memcpy(nr, t->r, t->nr * sizeof(*nr));
    t->r = nr;
    *cap = nc;
  }
  t->r[t->nr][0] = lo;
  t->r[t->nr][1] = hi;
  t->nr++;
  return true;
}

/* Tokenizes one glob. Returns 1 on success, 0 with lx->err, -1 when out of memory. */
static int rego__gl_parse(rg_arena *a, gl_lex *lx, gl_glob *g) {
  g->t = rg_alloc(a, (2 * lx->n + 1) * sizeof(gl_tok));
  if (!g->t) return -1;
  g->n = 0;
  size_t i = 0;
  for (;;) {
    uint32_t r;
    bool esc, end;
    if (!rego__gl_next(lx, &i, &r, &esc, &end)) {
      if (end) return 1;
      return 0;
    }
    gl_tok t = {0};
    size_t cap = 0;
    if (!esc && r == '.') {
      t.any = true;
    } else if (!esc && r == ']') {
      return rego__gl_fail(lx, i, "set-close ']' with no preceding '['") ? 1 : 0;
    } else if (!esc && r == '[') {
      bool complete = false, prev_ok = false;
      uint32_t prev = 0;
      for (;;) {
        if (!rego__gl_next(lx, &i, &r, &esc, &end)) {
          if (end) break;
          return 0;
        }
        if (!esc && r == '-') {
          if (!prev_ok) return rego__gl_fail(lx, i, "range character '-' must be preceded by a Unicode character") ? 1 : 0;
          if (i >= lx->n - 1) return rego__gl_fail(lx, i, "range character '-' must be followed by a Unicode character") ? 1 : 0;
          if (!rego__gl_next(lx, &i, &r, &esc, &end)) return 0;
          if (!esc && (r == ']' || r == '-'))
            return rego__gl_fail(lx, i, "range character '-' cannot be followed by a special symbol") ? 1 : 0;
          if (r < prev) {
            char m[128], rb[8], pb[8];
            rego__gl_utf8(&r, 1, rb, sizeof(rb));
            rego__gl_utf8(&prev, 1, pb, sizeof(pb));
            snprintf(m, sizeof(m), "range is out of order: '%s' comes before '%s' in Unicode", rb, pb);
            return rego__gl_fail(lx, i, m) ? 1 : 0;
          }
          if (!rego__gl_add_range(a, &t, prev, r, &cap)) return -1;
          prev_ok = false;
        } else if (!esc && r == ']') {
          complete = true;
          break;
        } else {
          if (!rego__gl_add_range(a, &t, r, r, &cap)) return -1;
          prev = r;
          prev_ok = true;
        }
      }
      if (!complete) return rego__gl_fail(lx, i, "found [ without matching ]") ? 1 : 0;
    } else if (!esc && (r == '*' || r == '+')) {
      char m[64];
      snprintf(m, sizeof(m), "flag '%c' must be preceded by a non-flag", (char)r);
      return rego__gl_fail(lx, i, m) ? 1 : 0;
    } else {
      if (!rego__gl_add_range(a, &t, r, r, &cap)) return -1;
    }
    /* an optional flag */
    char flag = 0;
    if (i < lx->n && (lx->in[i] == '*' || lx->in[i] == '+')) flag = (char)lx->in[i++];
    if (flag == '+') {
      g->t[g->n++] = t;
      t.star = true;
    } else if (flag == '*')
      t.star = true;
    g->t[g->n++] = t;
  }
}

static bool rego__gl_set_nonempty(const gl_tok *t) { return t->any || t->nr > 0; }

static bool rego__gl_meet(const gl_tok *x, const gl_tok *y) {
  if (x->any) return rego__gl_set_nonempty(y);
  if (y->any) return rego__gl_set_nonempty(x);
  for (size_t i = 0; i < x->nr; i++)
    for (size_t j = 0; j < y->nr; j++)
      if (x->r[i][0] <= y->r[j][1] && y->r[j][0] <= x->r[i][1]) return true;
  return false;
}

/* Breadth-first search over (position in g1, position in g2). */
static int rego__gl_intersect(const gl_glob *g1, const gl_glob *g2) {
  size_t w = g2->n + 1, total = (g1->n + 1) * w;
  uint8_t *seen = calloc(total, 1);
  size_t *queue = malloc(total * sizeof(size_t));
  if (!seen || !queue) {
    free(seen);
    free(queue);
    return -1;
  }
  size_t qh = 0, qt = 0;
  queue[qt++] = 0;
  seen[0] = 1;
  bool found = false;
  while (qh < qt && !found) {
    size_t s = queue[qh++], i = s / w, j = s % w;
    if (i == g1->n && j == g2->n) {
      found = true;
      break;
    }
    size_t next[3];
    size_t nn = 0;
    if (i < g1->n && g1->t[i].star) next[nn++] = (i + 1) * w + j;
    if (j < g2->n && g2->t[j].star) next[nn++] = i * w + j + 1;
    if (i < g1->n && j < g2->n && rego__gl_meet(&g1->t[i], &g2->t[j]))
      next[nn++] = (g1->t[i].star ? i : i + 1) * w + (g2->t[j].star ? j : j + 1);
    for (size_t k = 0; k < nn; k++)
      if (!seen[next[k]]) {
        seen[next[k]] = 1;
        queue[qt++] = next[k];
      }
  }
  free(seen);
  free(queue);
  return found;
}

static CT_RESULT rego__bi_globs_match(rg_ev *ev, rv **a, rv **out) {
  static const char fname[] = "regex.globs_match";
  CT_GUARD(rg_bi_want(ev, fname, 1, a[0], RV_STR));
  CT_GUARD(rg_bi_want(ev, fname, 2, a[1], RV_STR));
  gl_glob g[2];
  for (int k = 0; k < 2; k++) {
    if (a[k]->n > 4 * GLOB_MAX_RUNES) return rg_bi_fail(ev, "%s: glob longer than %d characters", fname, GLOB_MAX_RUNES);
    uint32_t *runes = rg_alloc(A, (a[k]->n + 1) * sizeof(uint32_t));
    if (!runes) return rg_bi_oom(ev);
    gl_lex lx = {.in = runes, .n = rego__gl_runes(a[k]->u.s, a[k]->n, runes, a[k]->n + 1)};
    if (lx.n > GLOB_MAX_RUNES) return rg_bi_fail(ev, "%s: glob longer than %d characters", fname, GLOB_MAX_RUNES);
    int r = rego__gl_parse(A, &lx, &g[k]);
    if (r < 0) return rg_bi_oom(ev);
    if (r == 0 || lx.err[0]) return rg_bi_fail(ev, "%s: %s", fname, lx.err);
  }
  int r = rego__gl_intersect(&g[0], &g[1]);
  if (r < 0) return rg_bi_oom(ev);
  *out = rv_bool(r == 1);
  return CT_OK;
}

const rg_builtin rg_builtins_glob[] = {
    {"regex.globs_match", 2, rego__bi_globs_match, false},
    {NULL, 0, NULL, false},
};
