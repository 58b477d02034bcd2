/*
 * builtins_yaml.c - yaml.unmarshal, yaml.marshal, yaml.is_valid on libyaml.
 *
 * OPA (internal/yaml on go-yaml v3) decodes every document of the stream (an error in any of
 * them fails) and keeps the first; plain scalars resolve as YAML 1.2 core (null/~, true/false,
 * decimal/0x/0o/0b integers, floats; yes/no stay strings; timestamps stay strings); mapping keys
 * become strings and a repeated key keeps its last value. Marshal emits block style with
 * sorted keys, quoting strings that would read back as another type. Sizes, depth and the
 * number of nodes produced (aliases included) are bounded.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "rego_bi.h"

#define YAML_INPUT_MAX (4u << 20)
#define YAML_DEPTH_MAX 64
#define YAML_NODES_MAX 200000 /* values produced while expanding one document (alias bombs) */
#define YAML_OUTPUT_MAX (16u << 20)

/* ---------------------------------------------------------------- scalars */
static bool rego__ym_all(const char *s, size_t n, const char *set) {
  if (!n) return false;
  for (size_t i = 0; i < n; i++)
    if (!s[i] || !strchr(set, s[i])) return false;
  return true;
}

enum { YS_STR, YS_NULL, YS_TRUE, YS_FALSE, YS_INT, YS_FLOAT, YS_SPECIAL };

/* Classifies a plain scalar the way go-yaml v3 resolves it. */
static int rego__ym_resolve(const char *s, size_t n) {
  static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
  static const char *const trues[] = {"true", "True", "TRUE"};
  static const char *const falses[] = {"false", "False", "FALSE"};
  for (size_t i = 0; i < 5; i++)
    if (strlen(nulls[i]) == n && !memcmp(s, nulls[i], n)) return YS_NULL;
  for (size_t i = 0; i < 3; i++) {
    if (strlen(trues[i]) == n && !memcmp(s, trues[i], n)) return YS_TRUE;
    if (strlen(falses[i]) == n && !memcmp(s, falses[i], n)) return YS_FALSE;
  }
  const char *p = s;
  size_t m = n;
  if (m && (*p == '-' || *p == '+')) p++, m--;
  if (m > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'o' || p[1] == 'b')) {
    const char *set = p[1] == 'x' ? "0123456789abcdefABCDEF" : p[1] == 'o' ? "01234567" : "01";
    if (rego__ym_all(p + 2, m - 2, set)) return YS_INT;
  }
  if (rego__ym_all(p, m, "0123456789")) return YS_INT;
  static const char *const specials[] = {".inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN"};
  for (size_t i = 0; i < 6; i++)
    if (strlen(specials[i]) == m && !memcmp(p, specials[i], m) && (i < 3 || p == s)) return YS_SPECIAL;
  /* [0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)? or \.[0-9]+(...)? */
  size_t i = 0, digits = 0;
  while (i < m && p[i] >= '0' && p[i] <= '9') i++, digits++;
  if (i < m && p[i] == '.') {
    i++;
    while (i < m && p[i] >= '0' && p[i] <= '9') i++, digits++;
  }
  if (!digits) return YS_STR;
  if (i < m && (p[i] == 'e' || p[i] == 'E')) {
    i++;
    if (i < m && (p[i] == '-' || p[i] == '+')) i++;
    size_t e0 = i;
    while (i < m && p[i] >= '0' && p[i] <= '9') i++;
    if (i == e0) return YS_STR;
  }
  return i == m ? YS_FLOAT : YS_STR;
}

static rv *rego__ym_number(rg_arena *a, const char *s, size_t n, int kind) {
  char buf[128];
  if (n >= sizeof(buf)) return NULL;
  memcpy(buf, s, n);
  buf[n] = 0;
  const char *p = buf;
  bool neg = false;
  if (*p == '+' || *p == '-') neg = *p++ == '-';
  if (kind == YS_INT && p[0] == '0' && (p[1] == 'x' || p[1] == 'o' || p[1] == 'b')) {
    errno = 0;
    unsigned long long v = strtoull(p + 2, NULL, p[1] == 'x' ? 16 : p[1] == 'o' ? 8 : 2);
    if (errno || v > (unsigned long long)INT64_MAX) return rv_dbl(a, neg ? -(double)v : (double)v);
    return rv_int(a, neg ? -(int64_t)v : (int64_t)v);
  }
  if (kind == YS_INT) {
    while (p[0] == '0' && p[1]) p++; /* decimal, leading zeros dropped */
    char t[130];
    snprintf(t, sizeof(t), "%s%s", neg ? "-" : "", p);
    return rv_num_text(a, t, strlen(t));
  }
  double d = strtod(buf, NULL);
  if (!isfinite(d)) return NULL;
  return rv_dbl(a, d);
}

/* ---------------------------------------------------------------- load */
typedef struct {
  rg_arena *a;
  yaml_document_t *doc;
  size_t produced;
  char err[256];
} ym_ld;

static rv *rego__ym_value(ym_ld *l, yaml_node_t *nd, int depth);

static rv *rego__ym_fail(ym_ld *l, const char *msg) {
  if (!l->err[0]) snprintf(l->err, sizeof(l->err), "%s", msg);
  return NULL;
}

/* The key text of a mapping key (go-yaml decodes into map[string]any after jsonable). */
static rv *rego__ym_key(ym_ld *l, yaml_node_t *k) {
  if (!k || k->type != YAML_SCALAR_NODE) return rego__ym_fail(l, "yaml: unsupported map key: only scalar keys can become JSON object keys");
  return rv_str(l->a, (const char *)k->data.scalar.value, k->data.scalar.length);
}

static rv *rego__ym_value(ym_ld *l, yaml_node_t *nd, int depth) {
  if (!nd) return rego__ym_fail(l, "yaml: dangling node");
  if (depth > YAML_DEPTH_MAX) return rego__ym_fail(l, "yaml: document nested too deeply");
  if (++l->produced > YAML_NODES_MAX) return rego__ym_fail(l, "yaml: document expands to too many values");
  switch (nd->type) {
  case YAML_SCALAR_NODE: {
    const char *s = (const char *)nd->data.scalar.value;
    size_t n = nd->data.scalar.length;
    int kind = nd->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? rego__ym_resolve(s, n) : YS_STR;
    if (nd->tag && !strcmp((const char *)nd->tag, YAML_STR_TAG) && nd->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
      kind = YS_STR;
    switch (kind) {
    case YS_NULL: return &rv_null_v;
    case YS_TRUE: return RV_TRUE;
    case YS_FALSE: return RV_FALSE;
    case YS_INT:
    case YS_FLOAT: {
      rv *r = rego__ym_number(l->a, s, n, kind);
      return r ? r : rego__ym_fail(l, "yaml: number out of range");
    }
    case YS_SPECIAL: return rego__ym_fail(l, "json: unsupported value: a YAML infinity or NaN");
    default: return rv_str(l->a, s, n);
    }
  }
  case YAML_SEQUENCE_NODE: {
    size_t n = (size_t)(nd->data.sequence.items.top - nd->data.sequence.items.start);
    rv **items = n ? rg_alloc(l->a, n * sizeof(rv *)) : NULL;
    if (n && !items) return NULL;
    for (size_t i = 0; i < n; i++)
      if (!(items[i] = rego__ym_value(l, yaml_document_get_node(l->doc, nd->data.sequence.items.start[i]), depth + 1)))
        return NULL;
    return rv_arr(l->a, items, n);
  }
  case YAML_MAPPING_NODE: {
    size_t n = (size_t)(nd->data.mapping.pairs.top - nd->data.mapping.pairs.start);
    rv **ks = n ? rg_alloc(l->a, n * sizeof(rv *)) : NULL, **vs = n ? rg_alloc(l->a, n * sizeof(rv *)) : NULL;
    if (n && (!ks || !vs)) return NULL;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
      yaml_node_pair_t *pr = &nd->data.mapping.pairs.start[i];
      rv *k = rego__ym_key(l, yaml_document_get_node(l->doc, pr->key));
      rv *v = k ? rego__ym_value(l, yaml_document_get_node(l->doc, pr->value), depth + 1) : NULL;
      if (!k || !v) return NULL;
      /* a repeated key keeps its last value */
      size_t j = 0;
      while (j < m && !rv_eq(ks[j], k)) j++;
      ks[j] = k;
      vs[j] = v;
      if (j == m) m++;
    }
    bool conflict;
    return rv_obj(l->a, ks, vs, m, &conflict);
  }
  default:
    return rego__ym_fail(l, "yaml: unexpected node");
  }
}

/* Parses the whole stream; *first receives the first document's value (NULL for an empty
 * stream). Returns false with `err` set on a syntax or conversion error. */
static bool rego__ym_load(rg_arena *a, const char *s, size_t n, bool want_value, rv **first, char *err, size_t errlen, bool *oom) {
  yaml_parser_t p;
  *first = NULL;
  *oom = false;
  if (!yaml_parser_initialize(&p)) {
    *oom = true;
    return false;
  }
  yaml_parser_set_input_string(&p, (const unsigned char *)s, n);
  bool ok = true, have_first = false;
  for (;;) {
    yaml_document_t doc;
    if (!yaml_parser_load(&p, &doc)) {
      const yaml_mark_t *mk = p.context ? &p.context_mark : &p.problem_mark;
      snprintf(err, errlen, "yaml: line %zu: %s", mk->line + 1, p.problem ? p.problem : "parse error");
      ok = false;
      break;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
      yaml_document_delete(&doc);
      break;
    }
    if (!have_first) {
      have_first = true;
      if (want_value) {
        ym_ld l = {.a = a, .doc = &doc};
        *first = rego__ym_value(&l, root, 0);
        if (!*first) {
          if (l.err[0]) snprintf(err, errlen, "%s", l.err);
          else *oom = true;
          ok = false;
        }
      }
    }
    yaml_document_delete(&doc);
    if (!ok) break;
  }
  yaml_parser_delete(&p);
  return ok;
}

static CT_RESULT rego__bi_yaml_unmarshal(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "yaml.unmarshal", 1, a[0], RV_STR));
  if (a[0]->n > YAML_INPUT_MAX) return rg_bi_fail(ev, "yaml.unmarshal: input larger than %u bytes", YAML_INPUT_MAX);
  char err[256];
  bool oom;
  rv *v;
  if (!rego__ym_load(A, a[0]->u.s, a[0]->n, true, &v, err, sizeof(err), &oom))
    return oom ? rg_bi_oom(ev) : rg_bi_fail(ev, "yaml.unmarshal: %s", err);
  *out = v ? v : &rv_null_v;
  return CT_OK;
}

static CT_RESULT rego__bi_yaml_is_valid(rg_ev *ev, rv **a, rv **out) {
  char err[256];
  bool oom = false;
  rv *v;
  bool ok = a[0]->t == RV_STR && a[0]->n <= YAML_INPUT_MAX && rego__ym_load(A, a[0]->u.s, a[0]->n, true, &v, err, sizeof(err), &oom);
  if (oom) return rg_bi_oom(ev);
  *out = rv_bool(ok);
  return CT_OK;
}

/* Public: the same decoding for callers outside policies (coco secrets load reads the pattern's
 * values-secret YAML with it). */
CT_RESULT rego_yaml_parse(const char *text, size_t len, json_t **out, ct_err *err) {
  *out = NULL;
  CT_ENSURE(len <= YAML_INPUT_MAX, err, CT_ELIMIT, "yaml: input larger than %u bytes", YAML_INPUT_MAX);
  rg_arena a = {0};
  a.limit = 64u << 20;
  char msg[256] = "";
  bool oom = false;
  rv *v = NULL;
  ct_status st = CT_OK;
  if (!rego__ym_load(&a, text, len, true, &v, msg, sizeof msg, &oom))
    st = oom ? ct_fail(err, CT_ENOMEM, "yaml: out of memory") : ct_fail(err, CT_EINVAL, "%s", msg);
  else
    st = rg_to_jansson(v ? v : &rv_null_v, out, err);
  rg_arena_free(&a);
  return st;
}

/* ---------------------------------------------------------------- emit */
static int rego__ym_write(void *data, unsigned char *buf, size_t size) {
  ct_err e;
  return ct_buf_append(data, buf, size, &e) == CT_OK;
}

static bool rego__ym_scalar(yaml_emitter_t *em, const char *s, size_t n, bool quote) {
  yaml_event_t e;
  yaml_scalar_style_t st = quote ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE;
  return yaml_scalar_event_initialize(&e, NULL, NULL, (yaml_char_t *)s, (int)n, 1, 1, st) && yaml_emitter_emit(em, &e);
}

static bool rego__ym_emit(yaml_emitter_t *em, const rv *v, int depth) {
  if (depth > YAML_DEPTH_MAX) return false;
  yaml_event_t e;
  switch (v->t) {
  case RV_NULL: return rego__ym_scalar(em, "null", 4, false);
  case RV_BOOL: return v->b ? rego__ym_scalar(em, "true", 4, false) : rego__ym_scalar(em, "false", 5, false);
  case RV_NUM: {
    ct_buf b;
    ct_buf_init(&b, 4096);
    ct_err er;
    bool ok = rg_num_write(v, &b, &er) == CT_OK && rego__ym_scalar(em, (const char *)b.data, b.len, false);
    ct_buf_free(&b);
    return ok;
  }
  case RV_STR: {
    bool quote = rego__ym_resolve(v->u.s, v->n) != YS_STR;
    return rego__ym_scalar(em, v->u.s, v->n, quote);
  }
  case RV_ARR:
  case RV_SET:
    if (!yaml_sequence_start_event_initialize(&e, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE) || !yaml_emitter_emit(em, &e))
      return false;
    for (uint32_t i = 0; i < v->n; i++)
      if (!rego__ym_emit(em, v->u.a[i], depth + 1)) return false;
    return yaml_sequence_end_event_initialize(&e) && yaml_emitter_emit(em, &e);
  case RV_OBJ:
    if (!yaml_mapping_start_event_initialize(&e, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) || !yaml_emitter_emit(em, &e))
      return false;
    for (uint32_t i = 0; i < v->n; i++) {
      const rv *k = v->u.o.k[i];
      if (k->t == RV_STR) {
        if (!rego__ym_scalar(em, k->u.s, k->n, rego__ym_resolve(k->u.s, k->n) != YS_STR)) return false;
      } else {
        ct_buf b;
        ct_buf_init(&b, 1u << 16);
        ct_err er;
        bool ok = rg_json_write(k, &b, false, 0, &er) == CT_OK && rego__ym_scalar(em, (const char *)b.data, b.len, true);
        ct_buf_free(&b);
        if (!ok) return false;
      }
      if (!rego__ym_emit(em, v->u.o.v[i], depth + 1)) return false;
    }
    return yaml_mapping_end_event_initialize(&e) && yaml_emitter_emit(em, &e);
  default:
    return false;
  }
}

static CT_RESULT rego__bi_yaml_marshal(rg_ev *ev, rv **a, rv **out) {
  yaml_emitter_t em;
  if (!yaml_emitter_initialize(&em)) return rg_bi_oom(ev);
  ct_buf b;
  ct_buf_init(&b, YAML_OUTPUT_MAX);
  yaml_emitter_set_output(&em, rego__ym_write, &b);
  yaml_emitter_set_indent(&em, 2);
  yaml_emitter_set_unicode(&em, 1);
  yaml_emitter_set_width(&em, -1);
  yaml_event_t e;
  bool ok = yaml_stream_start_event_initialize(&e, YAML_UTF8_ENCODING) && yaml_emitter_emit(&em, &e) &&
            yaml_document_start_event_initialize(&e, NULL, NULL, NULL, 1) && yaml_emitter_emit(&em, &e) &&
            rego__ym_emit(&em, a[0], 0) && yaml_document_end_event_initialize(&e, 1) && yaml_emitter_emit(&em, &e) &&
            yaml_stream_end_event_initialize(&e) && yaml_emitter_emit(&em, &e) && yaml_emitter_flush(&em);
  const char *problem = em.problem;
  yaml_emitter_delete(&em);
  if (!ok) {
    ct_buf_free(&b);
    return rg_bi_fail(ev, "yaml.marshal: %s", problem ? problem : "value cannot be written as YAML");
  }
  *out = rv_str(A, b.len ? (const char *)b.data : "", b.len);
  ct_buf_free(&b);
  return *out ? CT_OK : rg_bi_oom(ev);
}

const rg_builtin rg_builtins_yaml[] = {
    {"yaml.unmarshal", 1, rego__bi_yaml_unmarshal, false},
    {"yaml.marshal", 1, rego__bi_yaml_marshal, false},
    {"yaml.is_valid", 1, rego__bi_yaml_is_valid, false},
    {NULL, 0, NULL, false},
};
