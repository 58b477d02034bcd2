/*
 * graphql_validate.c - GraphQL schema building and query validation over the JSON AST.
 *
 * Follows gqlparser: a schema document is merged with the spec's built-in prelude and checked
 * (ValidateSchemaDocument); a query is walked once and the default rules report errors at the
 * walker's events, in rule-name order within an event. gqlparser's "did you mean" suggestions
 * are not reproduced. Errors format as OPA's formatGqlParserError does.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gq_int.h"
#include "graphql.h"

#define GQ_MAX_WALK_DEPTH 4000

/* A bounded text buffer for messages (silently truncates). */
typedef struct {
  char b[400];
  size_t n;
} sbuf;
static void rego__sb_printf(sbuf *o, const char *fmt, ...) CT_PRINTF(2, 3);
static void rego__sb_printf(sbuf *o, const char *fmt, ...) {
  if (o->n >= sizeof(o->b) - 1) return;
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(o->b + o->n, sizeof(o->b) - o->n, fmt, ap);
  va_end(ap);
  if (w > 0) o->n += (size_t)w < sizeof(o->b) - o->n ? (size_t)w : sizeof(o->b) - 1 - o->n;
}


/* The spec's built-in scalars, directives and introspection types (gqlparser's prelude). */
static const char gq_prelude[] =
    "scalar Int\nscalar Float\nscalar String\nscalar Boolean\nscalar ID\n"
    "directive @defer(if: Boolean = true, label: String) on FRAGMENT_SPREAD | INLINE_FRAGMENT\n"
    "directive @include(if: Boolean!) on FIELD | FRAGMENT_SPREAD | INLINE_FRAGMENT\n"
    "directive @skip(if: Boolean!) on FIELD | FRAGMENT_SPREAD | INLINE_FRAGMENT\n"
    "directive @deprecated(reason: String = \"No longer supported\") on FIELD_DEFINITION | "
    "ARGUMENT_DEFINITION | INPUT_FIELD_DEFINITION | ENUM_VALUE | DIRECTIVE_DEFINITION\n"
    "directive @specifiedBy(url: String!) on SCALAR\n"
    "directive @oneOf on INPUT_OBJECT\n"
    "type __Schema { description: String types: [__Type!]! queryType: __Type! mutationType: __Type "
    "subscriptionType: __Type directives: [__Directive!]! }\n"
    "type __Type { kind: __TypeKind! name: String description: String specifiedByURL: String "
    "fields(includeDeprecated: Boolean = false): [__Field!] interfaces: [__Type!] possibleTypes: [__Type!] "
    "enumValues(includeDeprecated: Boolean = false): [__EnumValue!] "
    "inputFields(includeDeprecated: Boolean = false): [__InputValue!] ofType: __Type isOneOf: Boolean }\n"
    "enum __TypeKind { SCALAR OBJECT INTERFACE UNION ENUM INPUT_OBJECT LIST NON_NULL }\n"
    "type __Field { name: String! description: String args(includeDeprecated: Boolean = false): [__InputValue!]! "
    "type: __Type! isDeprecated: Boolean! deprecationReason: String }\n"
    "type __InputValue { name: String! description: String type: __Type! defaultValue: String "
    "isDeprecated: Boolean! deprecationReason: String }\n"
    "type __EnumValue { name: String! description: String isDeprecated: Boolean! deprecationReason: String }\n"
    "type __Directive { name: String! description: String isRepeatable: Boolean! "
    "locations: [__DirectiveLocation!]! args(includeDeprecated: Boolean = false): [__InputValue!]! }\n"
    "enum __DirectiveLocation { QUERY MUTATION SUBSCRIPTION FIELD FRAGMENT_DEFINITION FRAGMENT_SPREAD "
    "INLINE_FRAGMENT VARIABLE_DEFINITION SCHEMA SCALAR OBJECT FIELD_DEFINITION ARGUMENT_DEFINITION INTERFACE "
    "UNION ENUM ENUM_VALUE INPUT_OBJECT INPUT_FIELD_DEFINITION }\n";

/* ---------------------------------------------------------------- AST access */

/* Typed member reads from an AST object: rego__ast_str/_bool/_obj/_list/_int return the member
 * `k` (or the empty value when absent or null). Shape errors (a member of the wrong form, as Go's
 * json.Unmarshal would reject) set bad. */
typedef struct {
  bool bad;
} shape;

static const char *rego__ast_str(shape *sh, const rv *o, const char *k) {
  rv *v = o && o->t == RV_OBJ ? rv_obj_gets(o, k) : NULL;
  if (!v || v->t == RV_NULL) return "";
  if (v->t != RV_STR) {
    sh->bad = true;
    return "";
  }
  return v->u.s;
}
static bool rego__ast_bool(shape *sh, const rv *o, const char *k) {
  rv *v = o && o->t == RV_OBJ ? rv_obj_gets(o, k) : NULL;
  if (!v || v->t == RV_NULL) return false;
  if (v->t != RV_BOOL) {
    sh->bad = true;
    return false;
  }
  return v->b;
}
static rv *rego__ast_obj(shape *sh, const rv *o, const char *k) {
  rv *v = o && o->t == RV_OBJ ? rv_obj_gets(o, k) : NULL;
  if (!v || v->t == RV_NULL) return NULL;
  if (v->t != RV_OBJ) {
    sh->bad = true;
    return NULL;
  }
  return v;
}
static const rv *const *rego__ast_list(shape *sh, const rv *o, const char *k, size_t *n) {
  rv *v = o && o->t == RV_OBJ ? rv_obj_gets(o, k) : NULL;
  *n = 0;
  if (!v || v->t == RV_NULL) return NULL;
  if (v->t != RV_ARR) {
    sh->bad = true;
    return NULL;
  }
  for (size_t i = 0; i < v->n; i++)
    if (v->u.a[i]->t != RV_OBJ && v->u.a[i]->t != RV_STR && v->u.a[i]->t != RV_NULL) sh->bad = true;
  *n = v->n;
  return (const rv *const *)v->u.a;
}
static int64_t rego__ast_int(shape *sh, const rv *o, const char *k) {
  rv *v = o && o->t == RV_OBJ ? rv_obj_gets(o, k) : NULL;
  int64_t i = 0;
  if (!v || v->t == RV_NULL) return 0;
  if (v->t != RV_NUM || !rv_num_is_int(v, &i)) sh->bad = true;
  return i;
}

/* ---------------------------------------------------------------- types */

static const char *rego__type_name(const rv *t, int depth) {
  shape sh = {0};
  while (t && depth++ < 2000) {
    const char *n = rego__ast_str(&sh, t, "NamedType");
    if (*n) return n;
    t = rego__ast_obj(&sh, t, "Elem");
  }
  return "";
}

static void rego__type_str(const rv *t, char *o, size_t cap, int depth) {
  shape sh = {0};
  if (!t || depth > 50) {
    snprintf(o, cap, "?");
    return;
  }
  const char *n = rego__ast_str(&sh, t, "NamedType");
  const char *nn = rego__ast_bool(&sh, t, "NonNull") ? "!" : "";
  if (*n) {
    snprintf(o, cap, "%s%s", n, nn);
    return;
  }
  char in[200];
  rego__type_str(rego__ast_obj(&sh, t, "Elem"), in, sizeof(in), depth + 1);
  snprintf(o, cap, "[%.200s]%s", in, nn);
}

/* gqlparser Type.IsCompatible */
static bool rego__type_compat(const rv *t, const rv *other, bool other_nonnull, int depth) {
  shape sh = {0};
  if (depth > 2000 || !t || !other) return false;
  if (strcmp(rego__ast_str(&sh, t, "NamedType"), rego__ast_str(&sh, other, "NamedType"))) return false;
  const rv *te = rego__ast_obj(&sh, t, "Elem"), *oe = rego__ast_obj(&sh, other, "Elem");
  if (te && !oe) return false;
  if (te && !rego__type_compat(te, oe, rego__ast_bool(&sh, oe, "NonNull"), depth + 1)) return false;
  if (other_nonnull) return rego__ast_bool(&sh, t, "NonNull");
  return true;
}

/* ---------------------------------------------------------------- schema */

typedef struct {
  const rv **v;
  size_t n, cap;
} vec;

typedef struct gq_def {
  const char *name, *kind;
  bool builtin;
  const rv *src;
  vec dirs, ifs, fields, types, enums; /* ifs / types hold string values */
  vec possible;                        /* gq_def* cast to rv* */
} gq_def;

typedef struct {
  const char *name;
  const rv *def;
  vec dirs;
} gq_dirdef;

typedef struct {
  const char **k;
  void **v;
  size_t n, cap;
} smap;

struct gq_schema {
  rg_arena *a;
  smap types, dirs;
  gq_def **deflist;
  size_t ndefs, capdefs;
  gq_def *query, *mutation, *subscription;
  const rv *typename_field, *schema_field, *type_field;
  bool oom;
};

static bool rego__vpush(rg_arena *a, vec *v, const void *x) {
  if (v->n == v->cap) {
    size_t nc = v->cap ? v->cap * 2 : 8;
    const rv **nv = rg_alloc(a, nc * sizeof(rv *));
    if (!nv) return false;
    if (v->n) memcpy(nv, v->v, v->n * sizeof(rv *));
    v->v = nv, v->cap = nc;
  }
  v->v[v->n++] = x;
  return true;
}
static bool rego__vcat(rg_arena *a, vec *v, const rv *const *items, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!rego__vpush(a, v, items[i])) return false;
  return true;
}

static size_t rego__shash(const char *s) {
  size_t h = 1469598103934665603ull;
  while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
  return h;
}
static void *rego__smap_get(const smap *m, const char *k) {
  if (!m->cap) return NULL;
  size_t h = rego__shash(k) & (m->cap - 1);
  while (m->k[h]) {
    if (!strcmp(m->k[h], k)) return m->v[h];
    h = (h + 1) & (m->cap - 1);
  }
  return NULL;
}
static bool rego__smap_put(rg_arena *a, smap *m, const char *k, void *v) {
  if ((m->n + 1) * 2 > m->cap) {
    size_t nc = m->cap ? m->cap * 2 : 64;
    const char **nk = rg_alloc(a, nc * sizeof(char *));
    void **nv = rg_alloc(a, nc * sizeof(void *));
    if (!nk || !nv) return false;
    for (size_t i = 0; i < m->cap; i++)
      if (m->k[i]) {
        size_t h = rego__shash(m->k[i]) & (nc - 1);
        while (nk[h]) h = (h + 1) & (nc - 1);
        nk[h] = m->k[i], nv[h] = m->v[i];
      }
    m->k = nk, m->v = nv, m->cap = nc;
  }
  size_t h = rego__shash(k) & (m->cap - 1);
  while (m->k[h] && strcmp(m->k[h], k)) h = (h + 1) & (m->cap - 1);
  if (!m->k[h]) m->n++;
  m->k[h] = k, m->v[h] = v;
  return true;
}

/* A map keyed by address (AST nodes, collected field maps), for the validator's side tables. */
typedef struct {
  const void **k;
  void **v;
  size_t n, cap;
} pmap;
static size_t rego__phash(const void *k) { return (size_t)(((uintptr_t)k >> 4) * 0x9E3779B97F4A7C15ull); }
static void *rego__pmap_get(const pmap *m, const void *k) {
  if (!m->cap) return NULL;
  size_t h = rego__phash(k) & (m->cap - 1);
  while (m->k[h]) {
    if (m->k[h] == k) return m->v[h];
    h = (h + 1) & (m->cap - 1);
  }
  return NULL;
}
static bool rego__pmap_put(rg_arena *a, pmap *m, const void *k, void *v) {
  if ((m->n + 1) * 2 > m->cap) {
    size_t nc = m->cap ? m->cap * 2 : 64;
    const void **nk = rg_alloc(a, nc * sizeof(void *));
    void **nv = rg_alloc(a, nc * sizeof(void *));
    if (!nk || !nv) return false;
    for (size_t i = 0; i < m->cap; i++)
      if (m->k[i]) {
        size_t h = rego__phash(m->k[i]) & (nc - 1);
        while (nk[h]) h = (h + 1) & (nc - 1);
        nk[h] = m->k[i], nv[h] = m->v[i];
      }
    m->k = nk, m->v = nv, m->cap = nc;
  }
  size_t h = rego__phash(k) & (m->cap - 1);
  while (m->k[h] && m->k[h] != k) h = (h + 1) & (m->cap - 1);
  if (!m->k[h]) m->n++;
  m->k[h] = k, m->v[h] = v;
  return true;
}

static gq_def *rego__sdef(const gq_schema *s, const char *name) { return rego__smap_get(&s->types, name); }

static const rv *rego__list_for_name(const vec *v, const char *name) {
  shape sh = {0};
  for (size_t i = 0; i < v->n; i++)
    if (!strcmp(rego__ast_str(&sh, v->v[i], "Name"), name)) return v->v[i];
  return NULL;
}
static const rv *rego__arr_for_name(const rv *o, const char *key, const char *name) {
  shape sh = {0};
  size_t n;
  const rv *const *it = rego__ast_list(&sh, o, key, &n);
  for (size_t i = 0; i < n; i++)
    if (!strcmp(rego__ast_str(&sh, it[i], "Name"), name)) return it[i];
  return NULL;
}

static bool rego__kind_in(const char *k, const char *list) {
  /* list: space-separated kinds */
  size_t n = strlen(k);
  for (const char *p = list; *p;) {
    const char *e = strchr(p, ' ');
    size_t m = e ? (size_t)(e - p) : strlen(p);
    if (m == n && !memcmp(p, k, n)) return true;
    if (!e) break;
    p = e + 1;
  }
  return false;
}
static bool rego__is_input_kind(const char *k) { return rego__kind_in(k, "SCALAR ENUM INPUT_OBJECT"); }
static bool rego__is_composite_kind(const char *k) { return rego__kind_in(k, "OBJECT INTERFACE UNION"); }
static bool rego__is_leaf_kind(const char *k) { return rego__kind_in(k, "ENUM SCALAR"); }

typedef struct {
  gq_schema *s;
  shape sh;
  char msg[400];
  bool failed;
  const rv *at;          /* the node errors are reported at (gqlparser's Position) */
  const gq_posmap *pm;   /* positions of the schema text, when parsed here */
  const rv *root_at[3];  /* schema entry points (query, mutation, subscription) */
} sv;

static bool rego__sv_fail(sv *c, const char *fmt, ...) CT_PRINTF(2, 3);
static bool rego__sv_fail(sv *c, const char *fmt, ...) {
  if (c->failed) return false;
  c->failed = true;
  long line, col;
  size_t w = 0;
  if (c->at && gq_pos_get(c->pm, c->at, &line, &col)) w = (size_t)snprintf(c->msg, sizeof(c->msg), "input:%ld:%ld: ", line, col);
  else w = (size_t)snprintf(c->msg, sizeof(c->msg), "input: ");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->msg + w, sizeof(c->msg) - w, fmt, ap);
  va_end(ap);
  return false;
}

static bool rego__reserved(sv *c, const char *name) {
  if (!strncmp(name, "__", 2))
    return rego__sv_fail(c, "Name \"%s\" must not begin with \"__\", which is reserved by GraphQL introspection.", name);
  return true;
}

/* no duplicate input object field names in a (default) value */
static bool rego__input_field_names(sv *c, const rv *v, int depth) {
  if (!v || depth > 2000) return true;
  size_t n;
  const rv *const *ch = rego__ast_list(&c->sh, v, "Children", &n);
  bool obj = rego__ast_int(&c->sh, v, "Kind") == 9;
  for (size_t i = 0; i < n; i++) {
    if (obj)
      for (size_t j = 0; j < i; j++)
        if (!strcmp(rego__ast_str(&c->sh, ch[i], "Name"), rego__ast_str(&c->sh, ch[j], "Name")))
          return rego__sv_fail(c, "There can be only one input field named \"%s\".", rego__ast_str(&c->sh, ch[i], "Name"));
    if (!rego__input_field_names(c, rego__ast_obj(&c->sh, ch[i], "Value"), depth + 1)) return false;
  }
  return true;
}

static bool rego__type_ref(sv *c, const rv *t) {
  if (!t) {
    c->sh.bad = true;
    return rego__sv_fail(c, "missing type");
  }
  const char *n = rego__type_name(t, 0);
  c->at = t;
  if (!rego__sdef(c->s, n)) return rego__sv_fail(c, "Undefined type %s.", n);
  return true;
}

static bool rego__validate_directives(sv *c, const rv *const *dirs, size_t nd, const char *loc, const char *current,
                                bool single) {
  for (size_t i = 0; i < nd; i++) {
    const rv *d = dirs[i];
    const char *name = rego__ast_str(&c->sh, d, "Name");
    c->at = d;
    if (!rego__reserved(c, name)) return false;
    if (current && !strcmp(name, current)) return rego__sv_fail(c, "Directive %s cannot refer to itself.", current);
    gq_dirdef *def = rego__smap_get(&c->s->dirs, name);
    if (!def) return rego__sv_fail(c, "Undefined directive %s.", name);
    if (single) {
      for (size_t j = 0; j < i; j++)
        if (!strcmp(rego__ast_str(&c->sh, dirs[j], "Name"), name) && !rego__ast_bool(&c->sh, def->def, "IsRepeatable"))
          return rego__sv_fail(c, "The directive %s can only be used once at this location.", name);
    }
    size_t nl;
    const rv *const *locs = rego__ast_list(&c->sh, def->def, "Locations", &nl);
    bool ok = false;
    for (size_t j = 0; j < nl; j++)
      if (locs[j]->t == RV_STR && !strcmp(locs[j]->u.s, loc)) ok = true;
    if (!ok) return rego__sv_fail(c, "Directive %s is not applicable on %s.", name, loc);
    size_t na;
    const rv *const *args = rego__ast_list(&c->sh, d, "Arguments", &na);
    for (size_t j = 0; j < na; j++) {
      const char *an = rego__ast_str(&c->sh, args[j], "Name");
      c->at = args[j];
      if (!rego__arr_for_name(def->def, "Arguments", an)) return rego__sv_fail(c, "Undefined argument %s for directive %s.", an, name);
      for (size_t k = 0; k < j; k++)
        if (!strcmp(rego__ast_str(&c->sh, args[k], "Name"), an)) return rego__sv_fail(c, "There can be only one argument named %s.", an);
    }
    size_t nda;
    const rv *const *dargs = rego__ast_list(&c->sh, def->def, "Arguments", &nda);
    for (size_t j = 0; j < nda; j++) {
      const rv *t = rego__ast_obj(&c->sh, dargs[j], "Type");
      if (rego__ast_bool(&c->sh, t, "NonNull") && !rego__ast_obj(&c->sh, dargs[j], "DefaultValue")) {
        const rv *arg = rego__arr_for_name(d, "Arguments", rego__ast_str(&c->sh, dargs[j], "Name"));
        c->at = d;
        if (!arg || rego__ast_int(&c->sh, rego__ast_obj(&c->sh, arg, "Value"), "Kind") == 6)
          return rego__sv_fail(c, "Argument %s for directive %s cannot be null.", rego__ast_str(&c->sh, dargs[j], "Name"), name);
      }
    }
    for (size_t j = 0; j < na; j++)
      if (!rego__input_field_names(c, rego__ast_obj(&c->sh, args[j], "Value"), 0)) return false;
  }
  return true;
}

static bool rego__validate_args(sv *c, const rv *const *args, size_t na, const char *current) {
  for (size_t i = 0; i < na; i++) {
    const rv *a = args[i];
    const rv *t = rego__ast_obj(&c->sh, a, "Type");
    c->at = a;
    if (!rego__reserved(c, rego__ast_str(&c->sh, a, "Name")) || !rego__type_ref(c, t)) return false;
    if (!rego__input_field_names(c, rego__ast_obj(&c->sh, a, "DefaultValue"), 0)) return false;
    gq_def *d = rego__sdef(c->s, rego__type_name(t, 0));
    c->at = a;
    if (!rego__is_input_kind(d->kind)) {
      char ts[256];
      rego__type_str(t, ts, sizeof(ts), 0);
      return rego__sv_fail(c, "cannot use %s as argument %s because %s is not a valid input type", ts,
                     rego__ast_str(&c->sh, a, "Name"), d->kind);
    }
    size_t nd;
    const rv *const *dirs = rego__ast_list(&c->sh, a, "Directives", &nd);
    if (!rego__validate_directives(c, dirs, nd, "ARGUMENT_DEFINITION", current, true)) return false;
  }
  return true;
}

static bool rego__possible_has(const gq_def *d, const char *name) {
  for (size_t i = 0; i < d->possible.n; i++)
    if (!strcmp(((const gq_def *)(const void *)d->possible.v[i])->name, name)) return true;
  return false;
}

static bool rego__covariant(sv *c, const rv *req, const rv *act, int depth) {
  if (depth > 2000 || !req || !act) return false;
  if (rego__ast_bool(&c->sh, req, "NonNull") && !rego__ast_bool(&c->sh, act, "NonNull")) return false;
  const char *rn = rego__ast_str(&c->sh, req, "NamedType");
  if (*rn) {
    if (!strcmp(rn, rego__ast_str(&c->sh, act, "NamedType"))) return true;
    gq_def *d = rego__sdef(c->s, rn);
    return d && rego__possible_has(d, rego__ast_str(&c->sh, act, "NamedType"));
  }
  const rv *re = rego__ast_obj(&c->sh, req, "Elem"), *ae = rego__ast_obj(&c->sh, act, "Elem");
  if (re && !ae) return false;
  return rego__covariant(c, re, ae, depth + 1);
}

static bool rego__vec_has_str(const vec *v, const char *s, size_t upto) {
  for (size_t i = 0; i < upto && i < v->n; i++)
    if (v->v[i]->t == RV_STR && !strcmp(v->v[i]->u.s, s)) return true;
  return false;
}

static bool rego__validate_implements(sv *c, gq_def *def, const char *iname) {
  gq_def *intf = rego__sdef(c->s, iname);
  c->at = def->src;
  if (!intf) return rego__sv_fail(c, "Undefined type \"%s\".", iname);
  if (strcmp(intf->kind, "INTERFACE")) return rego__sv_fail(c, "\"%s\" is a non interface type %s.", iname, intf->kind);
  if (!strcmp(intf->name, def->name))
    return rego__sv_fail(c, "Type %s cannot implement itself because it would create a circular reference.", def->name);
  for (size_t i = 0; i < intf->fields.n; i++) {
    const rv *rf = intf->fields.v[i];
    const char *fname = rego__ast_str(&c->sh, rf, "Name");
    const rv *ff = rego__list_for_name(&def->fields, fname);
    if (!ff) return rego__sv_fail(c, "For %s to implement %s it must have a field called %s.", def->name, intf->name, fname);
    c->at = ff;
    if (!rego__covariant(c, rego__ast_obj(&c->sh, rf, "Type"), rego__ast_obj(&c->sh, ff, "Type"), 0))
    {
      char ts[256];
      rego__type_str(rego__ast_obj(&c->sh, rf, "Type"), ts, sizeof(ts), 0);
      return rego__sv_fail(c, "For %s to implement %s the field %s must have type %s.", def->name, intf->name, fname, ts);
    }
    size_t nra, nfa;
    const rv *const *ra = rego__ast_list(&c->sh, rf, "Arguments", &nra);
    const rv *const *fa = rego__ast_list(&c->sh, ff, "Arguments", &nfa);
    for (size_t j = 0; j < nra; j++) {
      const rv *found = rego__arr_for_name(ff, "Arguments", rego__ast_str(&c->sh, ra[j], "Name"));
      if (!found)
        return rego__sv_fail(c, "For %s to implement %s the field %s must have the same arguments but it is missing %s.",
                       def->name, intf->name, fname, rego__ast_str(&c->sh, ra[j], "Name"));
      const rv *rt = rego__ast_obj(&c->sh, ra[j], "Type"), *ft = rego__ast_obj(&c->sh, found, "Type");
      c->at = found;
      if (!rego__type_compat(rt, ft, rego__ast_bool(&c->sh, ft, "NonNull"), 0))
        return rego__sv_fail(c, "For %s to implement %s the field %s must have the same arguments but %s has the wrong type.",
                       def->name, intf->name, fname, rego__ast_str(&c->sh, ra[j], "Name"));
    }
    for (size_t j = 0; j < nfa; j++)
      if (!rego__arr_for_name(rf, "Arguments", rego__ast_str(&c->sh, fa[j], "Name")) && rego__ast_bool(&c->sh, rego__ast_obj(&c->sh, fa[j], "Type"), "NonNull") &&
          !rego__ast_obj(&c->sh, fa[j], "DefaultValue"))
        return rego__sv_fail(c, "For %s to implement %s any additional arguments on %s must be optional or have a default value but %s is required.",
                       def->name, intf->name, fname, rego__ast_str(&c->sh, fa[j], "Name"));
  }
  c->at = def->src;
  for (size_t i = 0; i < intf->ifs.n; i++) {
    const char *tr = intf->ifs.v[i]->t == RV_STR ? intf->ifs.v[i]->u.s : "";
    if (!rego__vec_has_str(&def->ifs, tr, def->ifs.n)) {
      if (!strcmp(tr, def->name))
        return rego__sv_fail(c, "Type %s cannot implement %s because it would create a circular reference.", def->name, iname);
      return rego__sv_fail(c, "Type %s must implement %s because it is implemented by %s.", def->name, tr, iname);
    }
  }
  return true;
}

static bool rego__validate_definition(sv *c, gq_def *def) {
  bool input = !strcmp(def->kind, "INPUT_OBJECT");
  for (size_t i = 0; i < def->fields.n; i++) {
    const rv *f = def->fields.v[i];
    const char *fname = rego__ast_str(&c->sh, f, "Name");
    c->at = f;
    if (!rego__reserved(c, fname) || !rego__type_ref(c, rego__ast_obj(&c->sh, f, "Type"))) return false;
    c->at = f;
    if (!rego__input_field_names(c, rego__ast_obj(&c->sh, f, "DefaultValue"), 0)) return false;
    size_t na;
    const rv *const *args = rego__ast_list(&c->sh, f, "Arguments", &na);
    for (size_t j = 0; j < na; j++)
      for (size_t k = j + 1; k < na; k++)
        if (!strcmp(rego__ast_str(&c->sh, args[j], "Name"), rego__ast_str(&c->sh, args[k], "Name")) && (c->at = args[k]))
          return rego__sv_fail(c, "Argument %s.%s(%s:) can only be defined once.", def->name, fname, rego__ast_str(&c->sh, args[k], "Name"));
    if (!rego__validate_args(c, args, na, NULL)) return false;
    size_t nd;
    const rv *const *dirs = rego__ast_list(&c->sh, f, "Directives", &nd);
    if (!rego__validate_directives(c, dirs, nd, input ? "INPUT_FIELD_DEFINITION" : "FIELD_DEFINITION", NULL, true)) return false;
  }
  c->at = def->src;
  for (size_t i = 0; i < def->types.n; i++) {
    const char *t = def->types.v[i]->t == RV_STR ? def->types.v[i]->u.s : "";
    gq_def *td = rego__sdef(c->s, t);
    if (!td) return rego__sv_fail(c, "Undefined type \"%s\".", t);
    if (strcmp(td->kind, "OBJECT")) return rego__sv_fail(c, "%s type \"%s\" must be OBJECT.", def->kind, t);
  }
  for (size_t i = 0; i < def->ifs.n; i++) {
    const char *t = def->ifs.v[i]->t == RV_STR ? def->ifs.v[i]->u.s : "";
    if (rego__vec_has_str(&def->ifs, t, i)) return rego__sv_fail(c, "Type %s can only implement %s once.", def->name, t);
    if (!rego__validate_implements(c, def, t)) return false;
  }
  const char *k = def->kind;
  c->at = def->src;
  if (!strcmp(k, "OBJECT") || !strcmp(k, "INTERFACE")) {
    if (!def->fields.n) return rego__sv_fail(c, "%s %s: must define one or more fields.", k, def->name);
    for (size_t i = 0; i < def->fields.n; i++) {
      gq_def *td = rego__sdef(c->s, rego__type_name(rego__ast_obj(&c->sh, def->fields.v[i], "Type"), 0));
      c->at = def->fields.v[i];
      if (td && !rego__kind_in(td->kind, "SCALAR OBJECT INTERFACE UNION ENUM"))
        return rego__sv_fail(c, "%s %s: field must be one of SCALAR, OBJECT, INTERFACE, UNION, ENUM.", k, def->name);
    }
  } else if (!strcmp(k, "ENUM")) {
    if (!def->enums.n) return rego__sv_fail(c, "%s %s: must define one or more unique enum values.", k, def->name);
    for (size_t i = 0; i < def->enums.n; i++) {
      const char *vn = rego__ast_str(&c->sh, def->enums.v[i], "Name");
      c->at = def->enums.v[i];
      if (!rego__reserved(c, vn)) return false;
      if (!strcmp(vn, "true") || !strcmp(vn, "false") || !strcmp(vn, "null"))
        return rego__sv_fail(c, "%s %s: non-enum value %s.", k, def->name, vn);
      size_t nd;
      const rv *const *dirs = rego__ast_list(&c->sh, def->enums.v[i], "Directives", &nd);
      if (!rego__validate_directives(c, dirs, nd, "ENUM_VALUE", NULL, true)) return false;
    }
  } else if (input) {
    if (!def->fields.n) return rego__sv_fail(c, "%s %s: must define one or more input fields.", k, def->name);
    for (size_t i = 0; i < def->fields.n; i++) {
      gq_def *td = rego__sdef(c->s, rego__type_name(rego__ast_obj(&c->sh, def->fields.v[i], "Type"), 0));
      c->at = def->fields.v[i];
      if (td && !rego__kind_in(td->kind, "SCALAR ENUM INPUT_OBJECT"))
        return rego__sv_fail(c, "%s %s: field must be one of SCALAR, ENUM, INPUT_OBJECT.", td->kind,
                       rego__ast_str(&c->sh, def->fields.v[i], "Name"));
    }
  } else if (!strcmp(k, "UNION")) {
    c->at = def->src;
    if (!def->types.n) return rego__sv_fail(c, "%s %s: must define one or more member types.", k, def->name);
  }
  for (size_t i = 0; i < def->fields.n; i++)
    for (size_t j = i + 1; j < def->fields.n; j++)
      if (!strcmp(rego__ast_str(&c->sh, def->fields.v[i], "Name"), rego__ast_str(&c->sh, def->fields.v[j], "Name")) && (c->at = def->fields.v[j]))
        return rego__sv_fail(c, "Field %s.%s can only be defined once.", def->name, rego__ast_str(&c->sh, def->fields.v[j], "Name"));
  for (size_t i = 0; i < def->enums.n; i++)
    for (size_t j = i + 1; j < def->enums.n; j++)
      if (!strcmp(rego__ast_str(&c->sh, def->enums.v[i], "Name"), rego__ast_str(&c->sh, def->enums.v[j], "Name")) && (c->at = def->enums.v[j]))
        return rego__sv_fail(c, "Enum value %s.%s can only be defined once.", def->name, rego__ast_str(&c->sh, def->enums.v[j], "Name"));
  for (size_t i = 0; i < def->types.n; i++)
    for (size_t j = i + 1; j < def->types.n; j++)
      if (rv_eq(def->types.v[i], def->types.v[j]) && (c->at = def->types.v[j]))
        return rego__sv_fail(c, "Union type %s can only include type %s once.", def->name,
                       def->types.v[j]->t == RV_STR ? def->types.v[j]->u.s : "");
  c->at = def->src;
  if (!def->builtin && !rego__reserved(c, def->name)) return false;
  return rego__validate_directives(c, def->dirs.v, def->dirs.n, def->kind, NULL, false);
}

/* Input objects may not reference themselves through non-null fields. */
static bool rego__input_cycles(sv *c, gq_def *def, smap *visited, smap *onpath, vec *path, int depth) {
  if (rego__smap_get(visited, def->name)) return true;
  if (depth > 2000) return rego__sv_fail(c, "input object nesting too deep");
  /* onpath: type name -> index into path + 1 */
  if (!rego__smap_put(c->s->a, visited, def->name, def) ||
      !rego__smap_put(c->s->a, onpath, def->name, (void *)(uintptr_t)(path->n + 1))) {
    c->s->oom = true;
    return rego__sv_fail(c, "out of memory");
  }
  for (size_t i = 0; i < def->fields.n; i++) {
    const rv *t = rego__ast_obj(&c->sh, def->fields.v[i], "Type");
    if (!rego__ast_bool(&c->sh, t, "NonNull") || !*rego__ast_str(&c->sh, t, "NamedType")) continue;
    gq_def *ft = rego__sdef(c->s, rego__ast_str(&c->sh, t, "NamedType"));
    if (!ft || strcmp(ft->kind, "INPUT_OBJECT")) continue;
    if (!rego__vpush(c->s->a, path, def->fields.v[i])) {
      c->s->oom = true;
      return rego__sv_fail(c, "out of memory");
    }
    uintptr_t ci = (uintptr_t)rego__smap_get(onpath, ft->name);
    if (ci) {
      sbuf names = {.n = 0};
      names.b[0] = 0;
      for (size_t j = ci - 1; j < path->n; j++) rego__sb_printf(&names, "%s%s", j + 1 == ci ? "" : ".", rego__ast_str(&c->sh, path->v[j], "Name"));
      c->at = path->v[ci - 1];
      return rego__sv_fail(c, "Cannot reference Input Object \"%s\" within itself through a series of non-null fields: \"%s\".",
                     ft->name, names.b);
    }
    if (!rego__input_cycles(c, ft, visited, onpath, path, depth + 1)) return false;
    path->n--;
  }
  rego__smap_put(c->s->a, onpath, def->name, NULL); /* a NULL value reads as absent */
  return true;
}

static int rego__cmp_str(const void *x, const void *y) { return strcmp(*(const char *const *)x, *(const char *const *)y); }

static gq_def *rego__new_def(gq_schema *s, const char *name, const char *kind, bool builtin, const rv *src) {
  gq_def *d = rg_alloc(s->a, sizeof(*d));
  if (!d) return NULL;
  d->name = name, d->kind = kind, d->builtin = builtin, d->src = src;
  if (s->ndefs == s->capdefs) {
    size_t nc = s->capdefs ? s->capdefs * 2 : 64;
    gq_def **nl = rg_alloc(s->a, nc * sizeof(*nl));
    if (!nl) return NULL;
    if (s->ndefs) memcpy(nl, s->deflist, s->ndefs * sizeof(*nl));
    s->deflist = nl, s->capdefs = nc;
  }
  s->deflist[s->ndefs++] = d;
  return d;
}

static bool rego__add_members(sv *c, gq_def *d, const rv *src) {
  size_t n;
  const rv *const *it;
  rg_arena *a = c->s->a;
  it = rego__ast_list(&c->sh, src, "Directives", &n);
  if (!rego__vcat(a, &d->dirs, it, n)) return false;
  it = rego__ast_list(&c->sh, src, "Interfaces", &n);
  if (!rego__vcat(a, &d->ifs, it, n)) return false;
  it = rego__ast_list(&c->sh, src, "Fields", &n);
  if (!rego__vcat(a, &d->fields, it, n)) return false;
  it = rego__ast_list(&c->sh, src, "Types", &n);
  if (!rego__vcat(a, &d->types, it, n)) return false;
  it = rego__ast_list(&c->sh, src, "EnumValues", &n);
  return rego__vcat(a, &d->enums, it, n);
}

static const char *rego__def_kind(sv *c, const rv *src) {
  const char *k = rego__ast_str(&c->sh, src, "Kind");
  static const char *const kinds[] = {"SCALAR", "OBJECT", "INTERFACE", "UNION", "ENUM", "INPUT_OBJECT"};
  for (size_t i = 0; i < 6; i++)
    if (!strcmp(k, kinds[i])) return kinds[i];
  return k; /* an unknown kind (AST input): kept as is, fails later checks */
}

static bool rego__set_root(sv *c, const rv *const *ops, size_t n, bool *seen) {
  for (size_t i = 0; i < n; i++) {
    const char *op = rego__ast_str(&c->sh, ops[i], "Operation");
    c->at = ops[i];
    int idx = !strcmp(op, "query") ? 0 : !strcmp(op, "mutation") ? 1 : !strcmp(op, "subscription") ? 2 : -1;
    if (idx >= 0 && seen[idx]) return rego__sv_fail(c, "There can be only one %s type in schema.", op);
    if (idx >= 0) {
      seen[idx] = true;
      c->root_at[idx] = ops[i];
    }
    gq_def *d = rego__sdef(c->s, rego__ast_str(&c->sh, ops[i], "Type"));
    if (!d) return rego__sv_fail(c, "Schema root %s refers to a type %s that does not exist.", op, rego__ast_str(&c->sh, ops[i], "Type"));
    if (idx == 0) c->s->query = d;
    else if (idx == 1) c->s->mutation = d;
    else if (idx == 2) c->s->subscription = d;
  }
  return true;
}

static bool rego__load_doc(sv *c, const rv *doc, bool builtin, vec *defs) {
  gq_schema *s = c->s;
  size_t n;
  const rv *const *it = rego__ast_list(&c->sh, doc, "Definitions", &n);
  for (size_t i = 0; i < n; i++) {
    const char *name = rego__ast_str(&c->sh, it[i], "Name");
    c->at = it[i];
    if (rego__sdef(s, name)) return rego__sv_fail(c, "Cannot redeclare type %s.", name);
    gq_def *d = rego__new_def(s, name, rego__def_kind(c, it[i]), builtin || rego__ast_bool(&c->sh, it[i], "BuiltIn"), it[i]);
    if (!d || !rego__smap_put(s->a, &s->types, name, d) || !rego__add_members(c, d, it[i]) || !rego__vpush(s->a, defs, (rv *)(void *)d)) {
      s->oom = true;
      return rego__sv_fail(c, "out of memory");
    }
  }
  return true;
}

static bool rego__load_exts(sv *c, const rv *doc, vec *defs) {
  gq_schema *s = c->s;
  size_t n;
  const rv *const *it = rego__ast_list(&c->sh, doc, "Extensions", &n);
  for (size_t i = 0; i < n; i++) {
    const char *name = rego__ast_str(&c->sh, it[i], "Name");
    const char *kind = rego__def_kind(c, it[i]);
    gq_def *d = rego__sdef(s, name);
    c->at = it[i];
    if (!d) {
      d = rego__new_def(s, name, kind, rego__ast_bool(&c->sh, it[i], "BuiltIn"), it[i]);
      if (!d || !rego__smap_put(s->a, &s->types, name, d) || !rego__vpush(s->a, defs, (rv *)(void *)d)) {
        s->oom = true;
        return rego__sv_fail(c, "out of memory");
      }
    }
    if (strcmp(d->kind, kind))
      return rego__sv_fail(c, "Cannot extend type %s because the base type is a %s, not %s.", name, d->kind, kind);
    if (!rego__add_members(c, d, it[i])) {
      s->oom = true;
      return rego__sv_fail(c, "out of memory");
    }
  }
  return true;
}

static bool rego__add_possible(gq_schema *s, const char *name, gq_def *d) {
  gq_def *t = rego__sdef(s, name);
  if (!t) return true; /* gqlparser files it under a name with no type; never read back */
  return rego__vpush(s->a, &t->possible, (rv *)(void *)d);
}

static bool rego__load_dirs(sv *c, const rv *doc, bool prelude) {
  size_t n;
  const rv *const *it = rego__ast_list(&c->sh, doc, "Directives", &n);
  static const char *const pre[] = {"defer", "deprecated", "include", "oneOf", "skip", "specifiedBy"};
  for (size_t i = 0; i < n; i++) {
    const char *name = rego__ast_str(&c->sh, it[i], "Name");
    c->at = it[i];
    if (rego__smap_get(&c->s->dirs, name)) {
      bool ok = false;
      for (size_t j = 0; j < 6; j++) ok |= !strcmp(pre[j], name);
      if (!ok) return rego__sv_fail(c, "Cannot redeclare directive %s.", name);
    }
    gq_dirdef *d = rg_alloc(c->s->a, sizeof(*d));
    if (!d || !rego__smap_put(c->s->a, &c->s->dirs, name, d)) {
      c->s->oom = true;
      return rego__sv_fail(c, "out of memory");
    }
    d->name = name, d->def = it[i];
  }
  (void)prelude;
  return true;
}

static rv *rego__prelude_doc(rg_arena *a, ct_err *err) {
  rv *doc;
  if (gq_parse_schema(a, gq_prelude, sizeof(gq_prelude) - 1, &doc, err)) return NULL;
  return doc;
}

CT_RESULT gq_schema_build(rg_arena *a, const rv *schema_ast, const gq_posmap *pm, gq_schema **out, ct_err *err) {
  if (!schema_ast || schema_ast->t != RV_OBJ) return ct_fail(err, CT_EINVAL, "schema AST must be an object");
  gq_schema *s = rg_alloc(a, sizeof(*s));
  if (!s) return ct_fail(err, CT_ENOMEM, "out of memory");
  s->a = a;
  rv *pre = rego__prelude_doc(a, err);
  if (!pre) return err->code ? err->code : ct_fail(err, CT_ENOMEM, "out of memory");
  sv c = {.s = s, .pm = pm};
  vec defs = {0};
  const rv *docs[2] = {pre, schema_ast};
  bool ok = rego__load_doc(&c, pre, true, &defs) && rego__load_doc(&c, schema_ast, false, &defs) && rego__load_exts(&c, pre, &defs) &&
            rego__load_exts(&c, schema_ast, &defs);
  for (size_t i = 0; ok && i < defs.n; i++) {
    gq_def *d = (gq_def *)(void *)defs.v[i];
    if (!strcmp(d->kind, "UNION")) {
      for (size_t j = 0; ok && j < d->types.n; j++) {
        gq_def *m = rego__sdef(s, d->types.v[j]->t == RV_STR ? d->types.v[j]->u.s : "");
        if (m) ok = rego__vpush(a, &d->possible, (rv *)(void *)m);
      }
    } else if (!strcmp(d->kind, "INPUT_OBJECT") || !strcmp(d->kind, "OBJECT") || !strcmp(d->kind, "INTERFACE")) {
      for (size_t j = 0; ok && j < d->ifs.n; j++) ok = rego__add_possible(s, d->ifs.v[j]->t == RV_STR ? d->ifs.v[j]->u.s : "", d);
      if (ok && strcmp(d->kind, "INTERFACE")) ok = rego__vpush(a, &d->possible, (rv *)(void *)d);
    }
    if (!ok) {
      s->oom = true;
      rego__sv_fail(&c, "out of memory");
    }
  }
  ok = ok && rego__load_dirs(&c, pre, true) && rego__load_dirs(&c, schema_ast, false);
  /* directive extensions */
  for (size_t di = 0; ok && di < 2; di++) {
    size_t n;
    const rv *const *it = rego__ast_list(&c.sh, docs[di], "DirectiveExtensions", &n);
    for (size_t i = 0; ok && i < n; i++) {
      gq_dirdef *d = rego__smap_get(&s->dirs, rego__ast_str(&c.sh, it[i], "Name"));
      c.at = it[i];
      if (!d) ok = rego__sv_fail(&c, "Cannot extend directive @%s because it is not defined.", rego__ast_str(&c.sh, it[i], "Name"));
    }
  }
  size_t nsch = 0, nsch2 = 0;
  const rv *const *sch = ok ? rego__ast_list(&c.sh, schema_ast, "Schema", &nsch) : NULL;
  const rv *const *psch = ok ? rego__ast_list(&c.sh, pre, "Schema", &nsch2) : NULL;
  (void)psch;
  bool seen[3] = {false, false, false};
  if (ok && nsch > 1 && (c.at = sch[1])) ok = rego__sv_fail(&c, "Cannot have multiple schema entry points, consider schema extensions instead.");
  if (ok && nsch == 1) {
    size_t n, nd;
    const rv *const *ops = rego__ast_list(&c.sh, sch[0], "OperationTypes", &n);
    const rv *const *dirs = rego__ast_list(&c.sh, sch[0], "Directives", &nd);
    ok = rego__set_root(&c, ops, n, seen) && rego__validate_directives(&c, dirs, nd, "SCHEMA", NULL, true);
  }
  if (ok) {
    size_t ne;
    const rv *const *ext = rego__ast_list(&c.sh, schema_ast, "SchemaExtension", &ne);
    for (size_t i = 0; ok && i < ne; i++) {
      size_t n, nd;
      const rv *const *ops = rego__ast_list(&c.sh, ext[i], "OperationTypes", &n);
      const rv *const *dirs = rego__ast_list(&c.sh, ext[i], "Directives", &nd);
      ok = rego__set_root(&c, ops, n, seen) && rego__validate_directives(&c, dirs, nd, "SCHEMA", NULL, true);
    }
  }
  if (ok) {
    /* type definitions, in name order */
    const char **names = rg_alloc(a, (s->types.n + 1) * sizeof(char *));
    size_t k = 0;
    if (!names) {
      s->oom = true;
      ok = rego__sv_fail(&c, "out of memory");
    } else {
      for (size_t i = 0; i < s->types.cap; i++)
        if (s->types.k[i]) names[k++] = s->types.k[i];
      qsort(names, k, sizeof(char *), rego__cmp_str);
      for (size_t i = 0; ok && i < k; i++) ok = rego__validate_definition(&c, rego__sdef(s, names[i]));
      smap visited = {0}, onpath = {0};
      vec path = {0};
      for (size_t i = 0; ok && i < k; i++) {
        gq_def *d = rego__sdef(s, names[i]);
        if (!strcmp(d->kind, "INPUT_OBJECT")) ok = rego__input_cycles(&c, d, &visited, &onpath, &path, 0);
      }
    }
  }
  if (ok) {
    /* directive definitions */
    for (size_t i = 0; ok && i < s->dirs.cap; i++) {
      gq_dirdef *d = s->dirs.k[i] ? s->dirs.v[i] : NULL;
      if (!d) continue;
      size_t na, nd;
      const rv *const *args = rego__ast_list(&c.sh, d->def, "Arguments", &na);
      const rv *const *dirs = rego__ast_list(&c.sh, d->def, "Directives", &nd);
      c.at = d->def;
      ok = rego__reserved(&c, d->name);
      for (size_t j = 0; ok && j < na; j++)
        for (size_t m = j + 1; ok && m < na; m++)
          if (!strcmp(rego__ast_str(&c.sh, args[j], "Name"), rego__ast_str(&c.sh, args[m], "Name")) && (c.at = args[m]))
            ok = rego__sv_fail(&c, "Argument @%s(%s:) can only be defined once.", d->name, rego__ast_str(&c.sh, args[m], "Name"));
      ok = ok && rego__validate_directives(&c, dirs, nd, "DIRECTIVE_DEFINITION", d->name, true) &&
           rego__validate_args(&c, args, na, d->name);
    }
  }
  if (ok && nsch == 0) {
    if (!s->query) s->query = rego__sdef(s, "Query");
    if (!s->mutation) s->mutation = rego__sdef(s, "Mutation");
    if (!s->subscription) s->subscription = rego__sdef(s, "Subscription");
  }
  if (ok && s->query && strcmp(s->query->kind, "OBJECT") && (c.at = c.root_at[0] ? c.root_at[0] : s->query->src))
    ok = rego__sv_fail(&c, "Query root type must be Object type, it cannot be %s.", s->query->name);
  if (ok && s->mutation && strcmp(s->mutation->kind, "OBJECT") && (c.at = c.root_at[1] ? c.root_at[1] : s->mutation->src))
    ok = rego__sv_fail(&c, "Mutation root type must be Object type if provided, it cannot be %s.", s->mutation->name);
  if (ok && s->subscription && strcmp(s->subscription->kind, "OBJECT") &&
      (c.at = c.root_at[2] ? c.root_at[2] : s->subscription->src))
    ok = rego__sv_fail(&c, "Subscription root type must be Object type if provided, it cannot be %s.", s->subscription->name);
  if (s->oom) return ct_fail(err, CT_ENOMEM, "out of memory");
  if (c.sh.bad) return ct_fail(err, CT_EINVAL, "GraphQL parse error: schema AST has an unexpected shape");
  if (!ok) return ct_fail(err, CT_EINVAL, "Error in gqlparser SchemaDocument to Schema conversion: %s", c.msg);
  /* __schema / __type on the query root, __typename everywhere */
  rv *tn, *sch_f, *typ_f;
  ct_err e2;
  static const char intro[] = "type X { __typename: String __schema: __Schema! __type(name: String!): __Type }";
  if (gq_parse_schema(a, intro, sizeof(intro) - 1, &tn, &e2))
    return ct_fail(err, e2.code, "%s", e2.msg);
  shape sh = {0};
  size_t n;
  const rv *const *fs = rego__ast_list(&sh, rego__ast_list(&sh, tn, "Definitions", &n)[0], "Fields", &n);
  s->typename_field = fs[0], sch_f = (rv *)fs[1], typ_f = (rv *)fs[2];
  s->schema_field = sch_f, s->type_field = typ_f;
  *out = s;
  return CT_OK;
}

/* ---------------------------------------------------------------- query validation */

typedef struct {
  gq_schema *s;
  rg_arena *a;
  const gq_posmap *pm;
  shape sh;
  ct_buf errs;
  bool any, oom;
  const rv *doc;
  smap frags;             /* first fragment definition by name */
  const rv *cur;          /* current operation */
  smap validated;         /* fragment names walked in this operation/fragment */
  pmap used_vars;         /* variable definitions used */
  smap used_frags;        /* NoUnusedFragments */
  bool in_frag_defs;
  bool from_obj; /* the query came in as an AST object */
  smap seen_frag_names, seen_op_names, visited_frags;
  pmap objdef;            /* field -> parent type at its last walk (ObjectDefinition) */
  pmap ov_cache;          /* selection set -> collected fields and spreads */
  pmap ov_pairs;          /* fields map -> smap of fragment names -> mutual exclusivity + 1 */
  smap ov_frag_pairs;     /* fragment name -> smap of fragment names -> mutual exclusivity + 1 */
  smap mi_visiting, mi_memo; /* MaxIntrospectionDepth */
  int ov_depth;
  int depth;
} qv;

static void rego__qv_err(qv *q, const rv *at, const char *fmt, ...) CT_PRINTF(3, 4);
static void rego__qv_err(qv *q, const rv *at, const char *fmt, ...) {
  char m[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof(m), fmt, ap);
  va_end(ap);
  long line, col;
  ct_err e;
  if (q->errs.len > 8192) return;
  if (at && gq_pos_get(q->pm, at, &line, &col)) {
    if (ct_buf_printf(&q->errs, &e, "input:%ld:%ld: %s\n", line, col, m)) q->oom = true;
  } else if (ct_buf_printf(&q->errs, &e, "input: %s\n", m)) {
    q->oom = true;
  }
  q->any = true;
}

static void rego__qv_put(qv *q, smap *m, const char *k) {
  if (!rego__smap_put(q->a, m, k, (void *)1)) q->oom = true;
}

static const rv *rego__field_def(qv *q, const gq_def *parent, const char *name) {
  if (!strcmp(name, "__typename")) return q->s->typename_field;
  if (!parent) return NULL;
  const rv *f = rego__list_for_name(&parent->fields, name);
  if (!f && parent == q->s->query) {
    if (!strcmp(name, "__schema")) return q->s->schema_field;
    if (!strcmp(name, "__type")) return q->s->type_field;
  }
  return f;
}

static void rego__value_str(const rv *v, sbuf *b, int depth) {
  shape sh = {0};
  if (!v || depth > 100) return;
  int64_t k = rego__ast_int(&sh, v, "Kind");
  const char *raw = rego__ast_str(&sh, v, "Raw");
  size_t n;
  const rv *const *ch = rego__ast_list(&sh, v, "Children", &n);
  switch (k) {
    case 0: rego__sb_printf(b, "$%s", raw); break;
    case 3: case 4: {
      rego__sb_printf(b, "\"");
      for (const char *p = raw; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') rego__sb_printf(b, "\\%c", c);
        else if (c == '\n') rego__sb_printf(b, "%s", "\\n");
        else if (c == '\t') rego__sb_printf(b, "%s", "\\t");
        else if (c == '\r') rego__sb_printf(b, "%s", "\\r");
        else if (c == '\b') rego__sb_printf(b, "%s", "\\b");
        else if (c == '\f') rego__sb_printf(b, "%s", "\\f");
        else if (c < 0x20 || c == 0x7f) rego__sb_printf(b, "\\u00%02X", c);
        else rego__sb_printf(b, "%c", c);
      }
      rego__sb_printf(b, "\"");
      break;
    }
    case 8:
      rego__sb_printf(b, "%s", "[");
      for (size_t i = 0; i < n; i++) {
        if (i) rego__sb_printf(b, "%s", ",");
        rego__value_str(rego__ast_obj(&sh, ch[i], "Value"), b, depth + 1);
      }
      rego__sb_printf(b, "%s", "]");
      break;
    case 9:
      rego__sb_printf(b, "%s", "{");
      for (size_t i = 0; i < n; i++) {
        if (i) rego__sb_printf(b, "%s", ",");
        rego__sb_printf(b, "%s:", rego__ast_str(&sh, ch[i], "Name"));
        rego__value_str(rego__ast_obj(&sh, ch[i], "Value"), b, depth + 1);
      }
      rego__sb_printf(b, "%s", "}");
      break;
    default: rego__sb_printf(b, "%s", raw);
  }
}

/* A value's text for messages (gqlparser Value.String), truncated. */
static const char *rego__vstr(qv *q, const rv *v) {
  sbuf b = {.n = 0};
  b.b[0] = 0;
  rego__value_str(v, &b, 0);
  char *s = rg_strndup(q->a, b.b, b.n);
  return s ? s : "";
}

/* Go's Value.Value(nil) fails on unparsable Int/Float/Boolean literals */
static bool rego__value_parses(const rv *v, int depth) {
  shape sh = {0};
  if (!v || depth > 2000) return true;
  int64_t k = rego__ast_int(&sh, v, "Kind");
  const char *raw = rego__ast_str(&sh, v, "Raw");
  if (k == 1) {
    errno = 0;
    char *end;
    (void)strtoll(raw, &end, 10);
    return *raw && !*end && errno != ERANGE;
  }
  if (k == 2) {
    errno = 0;
    char *end;
    (void)strtod(raw, &end);
    return *raw && !*end && errno != ERANGE;
  }
  if (k == 5) return !strcmp(raw, "true") || !strcmp(raw, "false") || !strcmp(raw, "1") || !strcmp(raw, "0") ||
                     !strcmp(raw, "t") || !strcmp(raw, "f") || !strcmp(raw, "T") || !strcmp(raw, "F") ||
                     !strcmp(raw, "TRUE") || !strcmp(raw, "FALSE") || !strcmp(raw, "True") || !strcmp(raw, "False");
  if (k == 8 || k == 9) {
    size_t n;
    const rv *const *ch = rego__ast_list(&sh, v, "Children", &n);
    for (size_t i = 0; i < n; i++) {
      const rv *cv = rego__ast_obj(&sh, ch[i], "Value");
      if (k == 9 && rego__ast_int(&sh, cv, "Kind") == 0) continue; /* unset variable */
      if (!rego__value_parses(cv, depth + 1)) return false;
    }
  }
  return true;
}

/* ---------------------------------------------------------------- suggestions */
/* gqlparser's SuggestionList: options within a lexical distance (Levenshtein; a pure case change
 * counts 1) of 40 % of the typed length + 1, closest first. */
static size_t rego__lex_distance(const char *a, const char *b) {
  if (!strcmp(a, b)) return 0;
  size_t na = strlen(a), nb = strlen(b);
  if (na > 256 || nb > 256) return (size_t)-1;
  char la[257], lb[257];
  for (size_t i = 0; i <= na; i++) la[i] = (char)((a[i] >= 'A' && a[i] <= 'Z') ? a[i] + 32 : a[i]);
  for (size_t i = 0; i <= nb; i++) lb[i] = (char)((b[i] >= 'A' && b[i] <= 'Z') ? b[i] + 32 : b[i]);
  if (!strcmp(la, lb)) return 1;
  size_t row[257];
  for (size_t j = 0; j <= nb; j++) row[j] = j;
  for (size_t i = 1; i <= na; i++) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= nb; j++) {
      size_t cur = row[j];
      size_t cost = la[i - 1] == lb[j - 1] ? 0 : 1;
      size_t best = prev + cost;
      if (row[j] + 1 < best) best = row[j] + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      prev = cur;
    }
  }
  return row[nb];
}

/* Writes " <prefix> "A", "B", or "C"?" (quoted) or with bare names, or "" when nothing is close. */
static void rego__suggest(char *out, size_t cap, const char *prefix, const char *typed, const char *const *opts, size_t n,
                    bool quoted) {
  out[0] = 0;
  const char *pick[5];
  size_t dist[5], k = 0;
  size_t thr = (size_t)(strlen(typed) * 4 / 10) + 1;
  for (size_t i = 0; i < n; i++) {
    size_t d = rego__lex_distance(typed, opts[i]);
    if (d > thr) continue;
    /* stable insertion by distance, keeping the five closest */
    size_t at = k;
    while (at > 0 && dist[at - 1] > d) at--;
    if (at >= 5) continue;
    size_t end = k < 5 ? k : 4;
    for (size_t j = end; j > at; j--) pick[j] = pick[j - 1], dist[j] = dist[j - 1];
    pick[at] = opts[i], dist[at] = d;
    if (k < 5) k++;
  }
  if (!k) return;
  size_t w = (size_t)snprintf(out, cap, " %s ", prefix);
  const char *q = quoted ? "\"" : "";
  for (size_t i = 0; i < k && w < cap; i++) {
    const char *sep = !i ? "" : (k == 2 ? " or " : (i == k - 1 ? ", or " : ", "));
    w += (size_t)snprintf(out + w, cap - w, "%s%s%s%s", sep, q, pick[i], q);
  }
  if (w < cap) snprintf(out + w, cap - w, "?");
}

/* names of a list of definitions / arguments / enum values */
static const char **rego__names_of(qv *q, const rv *const *items, size_t n) {
  const char **o = rg_alloc(q->a, (n + 1) * sizeof(char *));
  if (!o) {
    q->oom = true;
    return NULL;
  }
  for (size_t i = 0; i < n; i++) o[i] = rego__ast_str(&q->sh, items[i], "Name");
  return o;
}

static void rego__unexpected_type(qv *q, const rv *v, const rv *expected, const gq_def *def) {
  char ts[256];
  rego__type_str(expected, ts, sizeof(ts), 0);
  const char *vs = rego__vstr(q, v);
  if (!strcmp(ts, "Int") || !strcmp(ts, "Int!")) {
    errno = 0;
    char *end;
    long long x = strtoll(rego__ast_str(&q->sh, v, "Raw"), &end, 10);
    bool range = (errno == ERANGE || x > 2147483647LL || x < -2147483648LL) && !*end && end != rego__ast_str(&q->sh, v, "Raw");
    if (range) rego__qv_err(q, v, "Int cannot represent non 32-bit signed integer value: %s", vs);
    else rego__qv_err(q, v, "Int cannot represent non-integer value: %s", vs);
  } else if (!strcmp(ts, "String") || !strcmp(ts, "String!") || !strcmp(ts, "[String]")) {
    rego__qv_err(q, v, "String cannot represent a non string value: %s", vs);
  } else if (!strcmp(ts, "Boolean") || !strcmp(ts, "Boolean!")) {
    rego__qv_err(q, v, "Boolean cannot represent a non boolean value: %s", vs);
  } else if (!strcmp(ts, "Float") || !strcmp(ts, "Float!")) {
    rego__qv_err(q, v, "Float cannot represent non numeric value: %s", vs);
  } else if (!strcmp(ts, "ID") || !strcmp(ts, "ID!")) {
    rego__qv_err(q, v, "ID cannot represent a non-string and non-integer value: %s", vs);
  } else if (def && !strcmp(def->kind, "ENUM")) {
    rego__qv_err(q, v, "Enum \"%s\" cannot represent non-enum value: %s.", ts, vs);
  } else {
    rego__qv_err(q, v, "Expected value of type \"%s\", found %s.", ts, vs);
  }
}

static bool rego__name_in(const gq_def *d, const char *list) { return rego__kind_in(d->name, list); }

/* OnValue observers, in rule order. */
static void rego__on_value(qv *q, const rv *v, const rv *expected, const gq_def *def, bool has_default, const rv *vardef) {
  int64_t k = rego__ast_int(&q->sh, v, "Kind");
  /* NoUndefinedVariables */
  if (q->cur && k == 0 && !vardef) {
    const char *on = rego__ast_str(&q->sh, q->cur, "Name");
    if (*on) rego__qv_err(q, v, "Variable \"%s\" is not defined by operation \"%s\".", rego__vstr(q, v), on);
    else rego__qv_err(q, v, "Variable \"%s\" is not defined.", rego__vstr(q, v));
  }
  size_t n;
  const rv *const *ch = rego__ast_list(&q->sh, v, "Children", &n);
  /* UniqueInputFieldNames */
  if (k == 9)
    for (size_t i = 0; i < n; i++)
      for (size_t j = 0; j < i; j++)
        if (!strcmp(rego__ast_str(&q->sh, ch[i], "Name"), rego__ast_str(&q->sh, ch[j], "Name"))) {
          rego__qv_err(q, ch[i], "There can be only one input field named \"%s\".", rego__ast_str(&q->sh, ch[i], "Name"));
          break;
        }
  /* ValuesOfCorrectType */
  if (def && expected) {
    char ts[256];
    rego__type_str(expected, ts, sizeof(ts), 0);
    bool skip = false;
    if (k == 6 && rego__ast_bool(&q->sh, expected, "NonNull")) rego__qv_err(q, v, "Expected value of type \"%s\", found %s.", ts, rego__vstr(q, v));
    if (!strcmp(def->kind, "SCALAR") && !rego__name_in(def, "Int Float String Boolean ID")) skip = true;
    if (!skip) {
      if (!rego__value_parses(v, 0)) rego__unexpected_type(q, v, expected, def);
      switch (k) {
        case 8:
          if (!rego__ast_obj(&q->sh, expected, "Elem")) rego__unexpected_type(q, v, expected, def);
          break;
        case 1:
          if (!rego__name_in(def, "Int Float ID")) rego__unexpected_type(q, v, expected, def);
          break;
        case 2:
          if (!rego__name_in(def, "Float")) rego__unexpected_type(q, v, expected, def);
          break;
        case 3: case 4:
          if (!strcmp(def->kind, "ENUM")) {
            char sg[300];
            const char **en = rego__names_of(q, def->enums.v, def->enums.n);
            rego__suggest(sg, sizeof(sg), "Did you mean the enum value", rego__ast_str(&q->sh, v, "Raw"), en, en ? def->enums.n : 0, true);
            rego__qv_err(q, v, "Enum \"%s\" cannot represent non-enum value: %s.%s", ts, rego__vstr(q, v), sg);
          }
          else if (!rego__name_in(def, "String ID")) rego__unexpected_type(q, v, expected, def);
          break;
        case 7:
          if (strcmp(def->kind, "ENUM")) rego__unexpected_type(q, v, expected, def);
          else if (!rego__list_for_name(&def->enums, rego__ast_str(&q->sh, v, "Raw")))
          {
            char sg[300];
            const char **en = rego__names_of(q, def->enums.v, def->enums.n);
            rego__suggest(sg, sizeof(sg), "Did you mean the enum value", rego__ast_str(&q->sh, v, "Raw"), en, en ? def->enums.n : 0, true);
            rego__qv_err(q, v, "Value \"%s\" does not exist in \"%s\" enum.%s", rego__vstr(q, v), ts, sg);
          }
          break;
        case 5:
          if (!rego__name_in(def, "Boolean")) rego__unexpected_type(q, v, expected, def);
          break;
        case 9: {
          for (size_t i = 0; i < def->fields.n; i++) {
            const rv *f = def->fields.v[i];
            if (!rego__ast_bool(&q->sh, rego__ast_obj(&q->sh, f, "Type"), "NonNull")) continue;
            bool found = false;
            for (size_t j = 0; j < n; j++) found |= !strcmp(rego__ast_str(&q->sh, ch[j], "Name"), rego__ast_str(&q->sh, f, "Name"));
            if (!found && !rego__ast_obj(&q->sh, f, "DefaultValue")) {
              char fts[256];
              rego__type_str(rego__ast_obj(&q->sh, f, "Type"), fts, sizeof(fts), 0);
              rego__qv_err(q, v, "Field \"%s.%s\" of required type \"%s\" was not provided.", def->name, rego__ast_str(&q->sh, f, "Name"), fts);
            }
          }
          for (size_t i = 0; i < def->dirs.n; i++) {
            if (strcmp(rego__ast_str(&q->sh, def->dirs.v[i], "Name"), "oneOf")) continue;
            if (n != 1) {
              rego__qv_err(q, v, "OneOf Input Object \"%s\" must specify exactly one key.", def->name);
              continue;
            }
            const rv *fv = rego__ast_obj(&q->sh, ch[0], "Value");
            if (!fv || rego__ast_int(&q->sh, fv, "Kind") == 6)
              rego__qv_err(q, fv, "Field \"%s.%s\" must be non-null.", def->name,
                     def->fields.n ? rego__ast_str(&q->sh, def->fields.v[0], "Name") : "");
          }
          for (size_t j = 0; j < n; j++)
            if (!rego__list_for_name(&def->fields, rego__ast_str(&q->sh, ch[j], "Name"))) {
              char sg[300];
              const char **fnames = rego__names_of(q, def->fields.v, def->fields.n);
              rego__suggest(sg, sizeof(sg), "Did you mean", rego__ast_str(&q->sh, ch[j], "Name"), fnames, fnames ? def->fields.n : 0, true);
              rego__qv_err(q, ch[j], "Field \"%s\" is not defined by type \"%s\".%s", rego__ast_str(&q->sh, ch[j], "Name"), def->name, sg);
            }
          break;
        }
        default: break;
      }
    }
  }
  /* VariablesInAllowedPosition */
  if (k == 0 && expected && vardef && q->cur) {
    bool nn = rego__ast_bool(&q->sh, expected, "NonNull");
    const rv *dv = rego__ast_obj(&q->sh, vardef, "DefaultValue");
    if (dv && rego__ast_int(&q->sh, dv, "Kind") != 6 && nn) nn = false;
    if (has_default) nn = false;
    const rv *vt = rego__ast_obj(&q->sh, vardef, "Type");
    if (!rego__type_compat(vt, expected, nn, 0)) {
      char a1[256], a2[256];
      rego__type_str(vt, a1, sizeof(a1), 0);
      rego__type_str(expected, a2, sizeof(a2), 0);
      rego__qv_err(q, v, "Variable \"%s\" of type \"%s\" used in position expecting type \"%s\".", rego__vstr(q, v), a1, a2);
    }
  }
  if (k == 9 && def) {
    bool oneof = false;
    for (size_t i = 0; i < def->dirs.n; i++) oneof |= !strcmp(rego__ast_str(&q->sh, def->dirs.v[i], "Name"), "oneOf");
    if (oneof)
      for (size_t j = 0; j < n; j++) {
        const rv *fv = rego__ast_obj(&q->sh, ch[j], "Value");
        if (!fv || rego__ast_int(&q->sh, fv, "Kind") != 0 || !q->cur) continue;
        const rv *vd = rego__arr_for_name(q->cur, "VariableDefinitions", "");
        size_t nv;
        const rv *const *vds = rego__ast_list(&q->sh, q->cur, "VariableDefinitions", &nv);
        vd = NULL;
        for (size_t m = 0; m < nv; m++)
          if (!strcmp(rego__ast_str(&q->sh, vds[m], "Variable"), rego__ast_str(&q->sh, fv, "Raw"))) {
            vd = vds[m];
            break;
          }
        if (vd && !rego__ast_bool(&q->sh, rego__ast_obj(&q->sh, vd, "Type"), "NonNull")) {
          char a1[256];
          rego__type_str(rego__ast_obj(&q->sh, vd, "Type"), a1, sizeof(a1), 0);
          rego__qv_err(q, vd, "Variable \"%s\" is of type \"%s\" but must be non-nullable to be used for OneOf Input Object \"%s\".",
                 rego__vstr(q, fv), a1, def->name);
        }
      }
  }
}

static const rv *rego__find_vardef(qv *q, const char *name) {
  size_t nv;
  const rv *const *vds = rego__ast_list(&q->sh, q->cur, "VariableDefinitions", &nv);
  for (size_t m = 0; m < nv; m++)
    if (!strcmp(rego__ast_str(&q->sh, vds[m], "Variable"), name)) return vds[m];
  return NULL;
}

static void rego__walk_value(qv *q, const rv *v, const rv *expected, const gq_def *def, bool has_default) {
  if (!v) return;
  if (++q->depth > GQ_MAX_WALK_DEPTH) {
    rego__qv_err(q, NULL, "exceeded maximum nesting depth of %d", GQ_MAX_WALK_DEPTH);
    q->depth--;
    return;
  }
  int64_t k = rego__ast_int(&q->sh, v, "Kind");
  const rv *vardef = NULL;
  if (k == 0 && q->cur) {
    vardef = rego__find_vardef(q, rego__ast_str(&q->sh, v, "Raw"));
    if (vardef && !rego__pmap_put(q->a, &q->used_vars, vardef, (void *)1)) q->oom = true;
  }
  size_t n;
  const rv *const *ch = rego__ast_list(&q->sh, v, "Children", &n);
  if (k == 9) {
    for (size_t i = 0; i < n; i++) {
      const rv *cv = rego__ast_obj(&q->sh, ch[i], "Value");
      const rv *cexp = rego__ast_obj(&q->sh, cv, "ExpectedType");
      const gq_def *cdef = NULL;
      bool chd = rego__ast_bool(&q->sh, cv, "ExpectedTypeHasDefault");
      if (def) {
        const rv *fd = rego__list_for_name(&def->fields, rego__ast_str(&q->sh, ch[i], "Name"));
        if (fd) {
          cexp = rego__ast_obj(&q->sh, fd, "Type");
          const rv *dv = rego__ast_obj(&q->sh, fd, "DefaultValue");
          chd = dv && rego__ast_int(&q->sh, dv, "Kind") != 6;
          cdef = rego__sdef(q->s, rego__type_name(cexp, 0));
        }
      }
      rego__walk_value(q, cv, cexp, cdef, chd);
    }
  }
  if (k == 8) {
    for (size_t i = 0; i < n; i++) {
      const rv *cv = rego__ast_obj(&q->sh, ch[i], "Value");
      const rv *cexp = rego__ast_obj(&q->sh, cv, "ExpectedType");
      const gq_def *cdef = NULL;
      if (expected && rego__ast_obj(&q->sh, expected, "Elem")) {
        cexp = rego__ast_obj(&q->sh, expected, "Elem");
        cdef = def;
      }
      rego__walk_value(q, cv, cexp, cdef, rego__ast_bool(&q->sh, cv, "ExpectedTypeHasDefault"));
    }
  }
  rego__on_value(q, v, expected, def, has_default, vardef);
  q->depth--;
}

static void rego__walk_argument(qv *q, const rv *argdef, const rv *arg) {
  const rv *v = rego__ast_obj(&q->sh, arg, "Value");
  if (!v) {
    q->sh.bad = true;
    return;
  }
  if (argdef) {
    const rv *t = rego__ast_obj(&q->sh, argdef, "Type");
    const rv *dv = rego__ast_obj(&q->sh, argdef, "DefaultValue");
    rego__walk_value(q, v, t, rego__sdef(q->s, rego__type_name(t, 0)), dv && rego__ast_int(&q->sh, dv, "Kind") != 6);
  } else {
    rego__walk_value(q, v, rego__ast_obj(&q->sh, v, "ExpectedType"), NULL, rego__ast_bool(&q->sh, v, "ExpectedTypeHasDefault"));
  }
}

static void rego__unique_args(qv *q, const rv *node) {
  size_t n;
  const rv *const *args = rego__ast_list(&q->sh, node, "Arguments", &n);
  for (size_t i = 0; i < n; i++) {
    int seen = 0;
    for (size_t j = 0; j < i; j++) seen += !strcmp(rego__ast_str(&q->sh, args[i], "Name"), rego__ast_str(&q->sh, args[j], "Name"));
    if (seen == 1) rego__qv_err(q, args[i], "There can be only one argument named \"%s\".", rego__ast_str(&q->sh, args[i], "Name"));
  }
}

static void rego__required_args(qv *q, const rv *node, const rv *def, const char *fmt_name, bool directive) {
  size_t nd, na;
  const rv *const *dargs = rego__ast_list(&q->sh, def, "Arguments", &nd);
  const rv *const *args = rego__ast_list(&q->sh, node, "Arguments", &na);
  for (size_t i = 0; i < nd; i++) {
    const rv *t = rego__ast_obj(&q->sh, dargs[i], "Type");
    if (!rego__ast_bool(&q->sh, t, "NonNull") || rego__ast_obj(&q->sh, dargs[i], "DefaultValue")) continue;
    bool found = false;
    for (size_t j = 0; j < na; j++) found |= !strcmp(rego__ast_str(&q->sh, args[j], "Name"), rego__ast_str(&q->sh, dargs[i], "Name"));
    if (found) continue;
    char ts[256];
    rego__type_str(t, ts, sizeof(ts), 0);
    if (directive)
      rego__qv_err(q, node, "Directive \"@%s\" argument \"%s\" of type \"%s\" is required, but it was not provided.", fmt_name,
             rego__ast_str(&q->sh, dargs[i], "Name"), ts);
    else
      rego__qv_err(q, node, "Field \"%s\" argument \"%s\" of type \"%s\" is required, but it was not provided.", fmt_name,
             rego__ast_str(&q->sh, dargs[i], "Name"), ts);
  }
}

static void rego__walk_directives(qv *q, const rv *const *dirs, size_t nd, const char *loc) {
  for (size_t i = 0; i < nd; i++) {
    const rv *d = dirs[i];
    const char *name = rego__ast_str(&q->sh, d, "Name");
    gq_dirdef *def = rego__smap_get(&q->s->dirs, name);
    size_t na;
    const rv *const *args = rego__ast_list(&q->sh, d, "Arguments", &na);
    for (size_t j = 0; j < na; j++)
      rego__walk_argument(q, def ? rego__arr_for_name(def->def, "Arguments", rego__ast_str(&q->sh, args[j], "Name")) : NULL, args[j]);
    /* KnownArgumentNames */
    if (def)
      for (size_t j = 0; j < na; j++)
        if (!rego__arr_for_name(def->def, "Arguments", rego__ast_str(&q->sh, args[j], "Name")))
        {
          size_t nda;
          const rv *const *dargs = rego__ast_list(&q->sh, def->def, "Arguments", &nda);
          const char **an = rego__names_of(q, dargs, nda);
          char sg[300];
          rego__suggest(sg, sizeof(sg), "Did you mean", rego__ast_str(&q->sh, args[j], "Name"), an, an ? nda : 0, true);
          rego__qv_err(q, d, "Unknown argument \"%s\" on directive \"@%s\".%s", rego__ast_str(&q->sh, args[j], "Name"), name, sg);
        }
    /* KnownDirectives */
    if (!def) {
      rego__qv_err(q, d, "Unknown directive \"@%s\".", name);
    } else {
      size_t nl;
      const rv *const *locs = rego__ast_list(&q->sh, def->def, "Locations", &nl);
      bool ok = false;
      for (size_t j = 0; j < nl; j++) ok |= locs[j]->t == RV_STR && !strcmp(locs[j]->u.s, loc);
      if (!ok) rego__qv_err(q, d, "Directive \"@%s\" may not be used on %s.", name, loc);
    }
    /* ProvidedRequiredArguments */
    if (def) rego__required_args(q, d, def->def, rego__ast_str(&q->sh, def->def, "Name"), true);
    /* UniqueArgumentNames */
    rego__unique_args(q, d);
  }
  /* UniqueDirectivesPerLocation */
  for (size_t i = 0; i < nd; i++) {
    const char *name = rego__ast_str(&q->sh, dirs[i], "Name");
    gq_dirdef *def = rego__smap_get(&q->s->dirs, name);
    bool seen = false;
    for (size_t j = 0; j < i; j++) seen |= !strcmp(rego__ast_str(&q->sh, dirs[j], "Name"), name);
    if (seen && (!def || !rego__ast_bool(&q->sh, def->def, "IsRepeatable")))
      rego__qv_err(q, dirs[i], "The directive \"@%s\" can only be used once at this location.", name);
  }
}

static void rego__walk_dirs_of(qv *q, const rv *node, const char *loc) {
  size_t nd;
  const rv *const *dirs = rego__ast_list(&q->sh, node, "Directives", &nd);
  rego__walk_directives(q, dirs, nd, loc);
}

static bool rego__fragment_possible(qv *q, const gq_def *parent, const char *frag_type) {
  if (!parent) return true;
  const gq_def *const *pdefs;
  size_t np;
  const gq_def *one[1] = {parent};
  if (!strcmp(parent->kind, "OBJECT")) pdefs = one, np = 1;
  else if (!strcmp(parent->kind, "INTERFACE") || !strcmp(parent->kind, "UNION"))
    pdefs = (const gq_def *const *)(const void *)parent->possible.v, np = parent->possible.n;
  else return true;
  const gq_def *fd = rego__sdef(q->s, frag_type);
  if (!fd || !rego__is_composite_kind(fd->kind)) return true;
  for (size_t i = 0; i < fd->possible.n; i++)
    for (size_t j = 0; j < np; j++)
      if (!strcmp(((const gq_def *)(const void *)fd->possible.v[i])->name, pdefs[j]->name)) return true;
  return false;
}

/* Which Go type a selection decodes to. Parsed documents carry Alias on fields and
 * TypeCondition on inline fragments; gqlparser decodes every selection of an AST handed in as
 * an object as a Field (its JSON decoder tries Field first, which accepts any object). */
enum { SEL_FIELD, SEL_SPREAD, SEL_INLINE };
static int rego__sel_kind(const qv *q, const rv *sel) {
  if (q->from_obj || rv_obj_gets(sel, "Alias")) return SEL_FIELD;
  if (rv_obj_gets(sel, "TypeCondition")) return SEL_INLINE;
  return SEL_SPREAD;
}


/* ---------------------------------------------------------------- OverlappingFieldsCanBeMerged */
/* gqlparser's algorithm (itself graphql-js's): fields with one response name must be the same
 * field with the same arguments unless their parents are distinct object types, must not return
 * conflicting types, and their sub-selections must merge, compared within a selection set,
 * against referenced fragments, and between fragments, with the same pair caches. */

typedef struct {
  vec names;  /* response names in first-seen order (rv strings are not needed: const char*) */
  vec lists;  /* per name: a vec* of fields */
  vec spreads;
} ov_fields;

typedef struct ov_conflict {
  const char *response;
  char msg[300];
  const rv *at;
  vec subs; /* ov_conflict* */
} ov_conflict;

static const char *rego__response_name(qv *q, const rv *f) {
  const char *al = rego__ast_str(&q->sh, f, "Alias");
  return *al ? al : rego__ast_str(&q->sh, f, "Name");
}

static void rego__ov_collect(qv *q, ov_fields *m, const rv *const *sels, size_t n, int depth) {
  if (depth > GQ_MAX_WALK_DEPTH) return;
  for (size_t i = 0; i < n && !q->oom; i++) {
    if (sels[i]->t != RV_OBJ) continue;
    int k = rego__sel_kind(q, sels[i]);
    if (k == SEL_FIELD) {
      const char *rn = rego__response_name(q, sels[i]);
      size_t j;
      for (j = 0; j < m->names.n; j++)
        if (!strcmp((const char *)(const void *)m->names.v[j], rn)) break;
      if (j == m->names.n) {
        vec *l = rg_alloc(q->a, sizeof(vec));
        if (!l || !rego__vpush(q->a, &m->names, (const rv *)(const void *)rn) || !rego__vpush(q->a, &m->lists, (const rv *)(void *)l)) {
          q->oom = true;
          return;
        }
      }
      if (!rego__vpush(q->a, (vec *)(void *)m->lists.v[j], sels[i])) q->oom = true;
    } else if (k == SEL_INLINE) {
      size_t cn;
      const rv *const *cs = rego__ast_list(&q->sh, sels[i], "SelectionSet", &cn);
      rego__ov_collect(q, m, cs, cn, depth + 1);
    } else if (!rego__vpush(q->a, &m->spreads, sels[i])) {
      q->oom = true;
    }
  }
}

/* Collected fields of a selection set (the array value under "SelectionSet"), cached. */
static ov_fields *rego__ov_get(qv *q, const rv *owner) {
  rv *set = owner && owner->t == RV_OBJ ? rv_obj_gets(owner, "SelectionSet") : NULL;
  static ov_fields empty;
  if (!set || set->t != RV_ARR || !set->n) return &empty; /* shared, like gqlparser's cache entry */
  ov_fields *m = rego__pmap_get(&q->ov_cache, set);
  if (m) return m;
  m = rg_alloc(q->a, sizeof(*m));
  if (!m) {
    q->oom = true;
    return &empty;
  }
  rego__ov_collect(q, m, (const rv *const *)set->u.a, set->n, 0);
  if (!rego__pmap_put(q->a, &q->ov_cache, set, m)) q->oom = true;
  return m;
}

static bool rego__same_value(qv *q, const rv *a, const rv *b, int depth);

static int rego__cmp_child(const void *x, const void *y) {
  shape sh = {0};
  return strcmp(rego__ast_str(&sh, *(const rv *const *)x, "Name"), rego__ast_str(&sh, *(const rv *const *)y, "Name"));
}

static bool rego__same_value(qv *q, const rv *a, const rv *b, int depth) {
  if (!a || !b) return a == b;
  if (depth > 200) return false;
  if (rego__ast_int(&q->sh, a, "Kind") != rego__ast_int(&q->sh, b, "Kind") || strcmp(rego__ast_str(&q->sh, a, "Raw"), rego__ast_str(&q->sh, b, "Raw"))) return false;
  size_t na, nb;
  const rv *const *ca = rego__ast_list(&q->sh, a, "Children", &na);
  const rv *const *cb = rego__ast_list(&q->sh, b, "Children", &nb);
  if (na != nb) return false;
  if (!na) return true;
  const rv **sa = rg_alloc(q->a, na * sizeof(rv *)), **sb = rg_alloc(q->a, nb * sizeof(rv *));
  if (!sa || !sb) {
    q->oom = true;
    return false;
  }
  memcpy(sa, ca, na * sizeof(rv *));
  memcpy(sb, cb, nb * sizeof(rv *));
  if (rego__ast_int(&q->sh, a, "Kind") == 9) {
    /* a stable sort by name: insertion sort keeps equal names in order */
    for (size_t i = 1; i < na; i++)
      for (size_t j = i; j > 0 && rego__cmp_child(&sa[j - 1], &sa[j]) > 0; j--) {
        const rv *t = sa[j];
        sa[j] = sa[j - 1], sa[j - 1] = t;
      }
    for (size_t i = 1; i < nb; i++)
      for (size_t j = i; j > 0 && rego__cmp_child(&sb[j - 1], &sb[j]) > 0; j--) {
        const rv *t = sb[j];
        sb[j] = sb[j - 1], sb[j - 1] = t;
      }
  }
  for (size_t i = 0; i < na; i++)
    if (strcmp(rego__ast_str(&q->sh, sa[i], "Name"), rego__ast_str(&q->sh, sb[i], "Name")) ||
        !rego__same_value(q, rego__ast_obj(&q->sh, sa[i], "Value"), rego__ast_obj(&q->sh, sb[i], "Value"), depth + 1))
      return false;
  return true;
}

static bool rego__same_arguments(qv *q, const rv *fa, const rv *fb) {
  size_t na, nb;
  const rv *const *aa = rego__ast_list(&q->sh, fa, "Arguments", &na);
  const rv *const *ab = rego__ast_list(&q->sh, fb, "Arguments", &nb);
  if (na != nb) return false;
  for (size_t i = 0; i < na; i++) {
    bool matched = false;
    for (size_t j = 0; j < nb && !matched; j++)
      matched = !strcmp(rego__ast_str(&q->sh, aa[i], "Name"), rego__ast_str(&q->sh, ab[j], "Name")) &&
                rego__same_value(q, rego__ast_obj(&q->sh, aa[i], "Value"), rego__ast_obj(&q->sh, ab[j], "Value"), 0);
    if (!matched) return false;
  }
  return true;
}

static bool rego__types_conflict(qv *q, const rv *t1, const rv *t2, int depth) {
  if (!t1 || !t2 || depth > 200) return false;
  const rv *e1 = rego__ast_obj(&q->sh, t1, "Elem"), *e2 = rego__ast_obj(&q->sh, t2, "Elem");
  if (rego__ast_bool(&q->sh, t1, "NonNull") != rego__ast_bool(&q->sh, t2, "NonNull") || (!e1) != (!e2)) return true;
  if (e1) return rego__types_conflict(q, e1, e2, depth + 1);
  const gq_def *d1 = rego__sdef(q->s, rego__ast_str(&q->sh, t1, "NamedType")), *d2 = rego__sdef(q->s, rego__ast_str(&q->sh, t2, "NamedType"));
  if (!d1 || !d2) return false; /* gqlparser would dereference nil; unreachable for validated schemas */
  if (rego__is_leaf_kind(d1->kind) || rego__is_leaf_kind(d2->kind)) return strcmp(d1->name, d2->name) != 0;
  return false;
}

static void rego__ov_between(qv *q, vec *out, bool mutex, ov_fields *a, ov_fields *b);
static void rego__ov_fields_fragment(qv *q, vec *out, bool mutex, ov_fields *m, const rv *spread);
static void rego__ov_fragments(qv *q, vec *out, bool mutex, const rv *sa, const rv *sb);

static vec rego__ov_sub_sets(qv *q, bool mutex, const rv *fa, const rv *fb) {
  vec out = {0};
  ov_fields *ma = rego__ov_get(q, fa), *mb = rego__ov_get(q, fb);
  rego__ov_between(q, &out, mutex, ma, mb);
  for (size_t i = 0; i < mb->spreads.n; i++) rego__ov_fields_fragment(q, &out, mutex, ma, mb->spreads.v[i]);
  for (size_t i = 0; i < ma->spreads.n; i++) rego__ov_fields_fragment(q, &out, mutex, mb, ma->spreads.v[i]);
  for (size_t i = 0; i < ma->spreads.n; i++)
    for (size_t j = 0; j < mb->spreads.n; j++) rego__ov_fragments(q, &out, mutex, ma->spreads.v[i], mb->spreads.v[j]);
  return out;
}

static ov_conflict *rego__ov_find(qv *q, bool parent_mutex, const rv *fa, const rv *fb) {
  const gq_def *pa = rego__pmap_get(&q->objdef, fa), *pb = rego__pmap_get(&q->objdef, fb);
  if (!pa || !pb) return NULL;
  if (++q->ov_depth > GQ_MAX_WALK_DEPTH) {
    q->ov_depth--;
    return NULL;
  }
  const rv *da = rego__field_def(q, pa, rego__ast_str(&q->sh, fa, "Name")), *db = rego__field_def(q, pb, rego__ast_str(&q->sh, fb, "Name"));
  bool mutex = parent_mutex;
  if (!mutex)
    mutex = strcmp(pa->name, pb->name) && !strcmp(pa->kind, "OBJECT") && !strcmp(pb->kind, "OBJECT") && da && db;
  ov_conflict tmp, *c = &tmp;
  memset(&tmp, 0, sizeof(tmp));
  c->response = rego__response_name(q, fa);
  c->at = fb;
  bool found = false;
  if (!mutex) {
    if (strcmp(rego__ast_str(&q->sh, fa, "Name"), rego__ast_str(&q->sh, fb, "Name"))) {
      snprintf(c->msg, sizeof(c->msg), "\"%s\" and \"%s\" are different fields", rego__ast_str(&q->sh, fa, "Name"), rego__ast_str(&q->sh, fb, "Name"));
      found = true;
    } else if (!rego__same_arguments(q, fa, fb)) {
      snprintf(c->msg, sizeof(c->msg), "they have differing arguments");
      found = true;
    }
  }
  if (!found && da && db && rego__types_conflict(q, rego__ast_obj(&q->sh, da, "Type"), rego__ast_obj(&q->sh, db, "Type"), 0)) {
    char t1[128], t2[128];
    rego__type_str(rego__ast_obj(&q->sh, da, "Type"), t1, sizeof(t1), 0);
    rego__type_str(rego__ast_obj(&q->sh, db, "Type"), t2, sizeof(t2), 0);
    snprintf(c->msg, sizeof(c->msg), "they return conflicting types \"%s\" and \"%s\"", t1, t2);
    found = true;
  }
  if (!found) {
    c->subs = rego__ov_sub_sets(q, mutex, fa, fb);
    found = c->subs.n > 0;
  }
  q->ov_depth--;
  if (!found) return NULL;
  c = rg_alloc(q->a, sizeof(*c));
  if (!c) {
    q->oom = true;
    return NULL;
  }
  *c = tmp;
  return c;
}

static void rego__ov_within(qv *q, vec *out, ov_fields *m) {
  for (size_t i = 0; i < m->names.n; i++) {
    const vec *l = (const vec *)(const void *)m->lists.v[i];
    for (size_t a = 0; a < l->n; a++)
      for (size_t b = a + 1; b < l->n; b++) {
        ov_conflict *c = rego__ov_find(q, false, l->v[a], l->v[b]);
        if (c && !rego__vpush(q->a, out, (const rv *)(void *)c)) q->oom = true;
      }
  }
}

static void rego__ov_between(qv *q, vec *out, bool mutex, ov_fields *a, ov_fields *b) {
  for (size_t i = 0; i < a->names.n && !q->oom; i++) {
    const char *rn = (const char *)(const void *)a->names.v[i];
    const vec *lb = NULL;
    for (size_t j = 0; j < b->names.n; j++)
      if (!strcmp((const char *)(const void *)b->names.v[j], rn)) lb = (const vec *)(const void *)b->lists.v[j];
    if (!lb) continue;
    const vec *la = (const vec *)(const void *)a->lists.v[i];
    for (size_t x = 0; x < la->n; x++)
      for (size_t y = 0; y < lb->n; y++) {
        ov_conflict *c = rego__ov_find(q, mutex, la->v[x], lb->v[y]);
        if (c && !rego__vpush(q->a, out, (const rv *)(void *)c)) q->oom = true;
      }
  }
}

/* orderedPairSet: Has(a, b, mutex) / Add(a, b, mutex), over an inner name map */
static bool rego__pair_has(const smap *inner, const char *b, bool mutex) {
  uintptr_t v = inner ? (uintptr_t)rego__smap_get(inner, b) : 0;
  if (!v) return false;
  return mutex ? true : v != 2;
}
static smap *rego__pair_inner(qv *q, smap *inner) {
  if (inner) return inner;
  inner = rg_alloc(q->a, sizeof(smap));
  if (!inner) q->oom = true;
  return inner;
}
static void rego__pair_add(qv *q, smap *inner, const char *b, bool mutex) {
  if (inner && !rego__smap_put(q->a, inner, b, (void *)(uintptr_t)(mutex ? 2 : 1))) q->oom = true;
}
static smap *rego__frag_inner(qv *q, const char *a) {
  smap *in = rego__smap_get(&q->ov_frag_pairs, a);
  if (!in) {
    in = rego__pair_inner(q, NULL);
    if (in && !rego__smap_put(q->a, &q->ov_frag_pairs, a, in)) q->oom = true;
  }
  return in;
}

static void rego__ov_fields_fragment(qv *q, vec *out, bool mutex, ov_fields *m, const rv *spread) {
  const char *fname = rego__ast_str(&q->sh, spread, "Name");
  smap *inner = rego__pmap_get(&q->ov_pairs, m);
  if (q->oom || rego__pair_has(inner, fname, mutex)) return;
  if (!inner) {
    inner = rego__pair_inner(q, NULL);
    if (inner && !rego__pmap_put(q->a, &q->ov_pairs, m, inner)) q->oom = true;
  }
  rego__pair_add(q, inner, fname, mutex);
  const rv *fd = rego__smap_get(&q->frags, fname);
  if (!fd) return;
  ov_fields *mb = rego__ov_get(q, fd);
  if (m == mb) return;
  if (++q->ov_depth > GQ_MAX_WALK_DEPTH) {
    q->ov_depth--;
    return;
  }
  rego__ov_between(q, out, mutex, m, mb);
  for (size_t i = 0; i < mb->spreads.n; i++) rego__ov_fields_fragment(q, out, mutex, m, mb->spreads.v[i]);
  q->ov_depth--;
}

static void rego__ov_fragments(qv *q, vec *out, bool mutex, const rv *sa, const rv *sb) {
  const char *na = rego__ast_str(&q->sh, sa, "Name"), *nb = rego__ast_str(&q->sh, sb, "Name");
  if (!strcmp(na, nb)) return;
  if (rego__pair_has(rego__smap_get(&q->ov_frag_pairs, na), nb, mutex)) return;
  rego__pair_add(q, rego__frag_inner(q, na), nb, mutex);
  rego__pair_add(q, rego__frag_inner(q, nb), na, mutex);
  const rv *fa = rego__smap_get(&q->frags, na), *fb = rego__smap_get(&q->frags, nb);
  if (!fa || !fb || q->oom) return;
  if (++q->ov_depth > GQ_MAX_WALK_DEPTH) {
    q->ov_depth--;
    return;
  }
  ov_fields *ma = rego__ov_get(q, fa), *mb = rego__ov_get(q, fb);
  rego__ov_between(q, out, mutex, ma, mb);
  for (size_t i = 0; i < mb->spreads.n; i++) rego__ov_fragments(q, out, mutex, sa, mb->spreads.v[i]);
  for (size_t i = 0; i < ma->spreads.n; i++) rego__ov_fragments(q, out, mutex, ma->spreads.v[i], sb);
  q->ov_depth--;
}

static void rego__ov_str(const ov_conflict *c, sbuf *b, int depth) {
  if (!c->subs.n || depth > 50) {
    rego__sb_printf(b, "%s", c->msg);
    return;
  }
  for (size_t i = 0; i < c->subs.n; i++) {
    const ov_conflict *s = (const ov_conflict *)(const void *)c->subs.v[i];
    rego__sb_printf(b, "subfields \"%s\" conflict because ", s->response);
    rego__ov_str(s, b, depth + 1);
    if (i + 1 != c->subs.n) rego__sb_printf(b, " and ");
  }
}

/* findConflictsWithinSelectionSet on a node's selection set, reporting each conflict. */
static void rego__overlapping(qv *q, const rv *node) {
  rv *set = rv_obj_gets(node, "SelectionSet");
  if (!set || set->t != RV_ARR || !set->n) return;
  vec out = {0};
  ov_fields *m = rego__ov_get(q, node);
  rego__ov_within(q, &out, m);
  for (size_t i = 0; i < m->spreads.n; i++) {
    rego__ov_fields_fragment(q, &out, false, m, m->spreads.v[i]);
    for (size_t j = i + 1; j < m->spreads.n; j++) rego__ov_fragments(q, &out, false, m->spreads.v[i], m->spreads.v[j]);
  }
  for (size_t i = 0; i < out.n; i++) {
    const ov_conflict *c = (const ov_conflict *)(const void *)out.v[i];
    sbuf b = {.n = 0};
    b.b[0] = 0;
    rego__ov_str(c, &b, 0);
    rego__qv_err(q, c->at, "Fields \"%s\" conflict because %s. Use different aliases on the fields to fetch both if this was intentional.",
           c->response, b.b);
  }
}

static void rego__walk_selection_set(qv *q, const gq_def *parent, const rv *node);

/* ---------------------------------------------------------------- MaxIntrospectionDepth */
/* An introspection field may not nest fields / interfaces / possibleTypes / inputFields three
 * deep (through fragments too); the fragment memo lives for the whole document, as in gqlparser. */
static bool rego__mi_set(qv *q, const rv *node, int depth, int guard);

static bool rego__mi_field(qv *q, const rv *f, int depth, int guard) {
  const char *n = rego__ast_str(&q->sh, f, "Name");
  if (!strcmp(n, "fields") || !strcmp(n, "interfaces") || !strcmp(n, "possibleTypes") || !strcmp(n, "inputFields")) {
    if (++depth >= 3) return true;
  }
  return rego__mi_set(q, f, depth, guard + 1);
}

static bool rego__mi_spread(qv *q, const rv *sp, int depth, int guard) {
  const char *name = rego__ast_str(&q->sh, sp, "Name");
  uintptr_t entry = (uintptr_t)rego__smap_get(&q->mi_visiting, name);
  if (entry) return depth > (int)(entry - 1);
  const rv *fd = rego__smap_get(&q->frags, name);
  if (!fd) return false;
  char key[300];
  snprintf(key, sizeof(key), "%d\x01%.250s", depth, name);
  uintptr_t memo = (uintptr_t)rego__smap_get(&q->mi_memo, key);
  if (memo) return memo == 2;
  if (!rego__smap_put(q->a, &q->mi_visiting, name, (void *)(uintptr_t)(depth + 1))) q->oom = true;
  bool ex = rego__mi_set(q, fd, depth, guard + 1);
  rego__smap_put(q->a, &q->mi_visiting, name, NULL);
  char *k = rg_strndup(q->a, key, strlen(key));
  if (!k || !rego__smap_put(q->a, &q->mi_memo, k, (void *)(uintptr_t)(ex ? 2 : 1))) q->oom = true;
  return ex;
}

static bool rego__mi_set(qv *q, const rv *node, int depth, int guard) {
  if (guard > GQ_MAX_WALK_DEPTH || q->oom) return false;
  size_t n;
  const rv *const *sels = rego__ast_list(&q->sh, node, "SelectionSet", &n);
  for (size_t i = 0; i < n; i++) {
    if (sels[i]->t != RV_OBJ) continue;
    int k = rego__sel_kind(q, sels[i]);
    if (k == SEL_FIELD && rego__mi_field(q, sels[i], depth, guard)) return true;
    if (k == SEL_SPREAD && rego__mi_spread(q, sels[i], depth, guard)) return true;
    if (k == SEL_INLINE && rego__mi_set(q, sels[i], depth, guard + 1)) return true;
  }
  return false;
}

/* FieldsOnCorrectType's hint: types of an abstract parent that have the field (interfaces used
 * most first, then by name), else similarly named fields. */
static void rego__field_suggestion(qv *q, const gq_def *parent, const char *name, char *out, size_t cap) {
  out[0] = 0;
  if (!strcmp(parent->kind, "INTERFACE") || !strcmp(parent->kind, "UNION")) {
    const char *names[64];
    int counts[64];
    size_t nn = 0, nobj = 0;
    const char *objs[64];
    for (size_t i = 0; i < parent->possible.n; i++) {
      const gq_def *pt = (const gq_def *)(const void *)parent->possible.v[i];
      if (!rego__list_for_name(&pt->fields, name)) continue;
      if (nobj < 64) objs[nobj++] = pt->name;
      for (size_t j = 0; j < pt->ifs.n; j++) {
        const char *in = pt->ifs.v[j]->t == RV_STR ? pt->ifs.v[j]->u.s : "";
        const gq_def *idef = rego__sdef(q->s, in);
        if (!idef || !rego__list_for_name(&idef->fields, name)) continue;
        size_t m;
        for (m = 0; m < nn; m++)
          if (!strcmp(names[m], in)) break;
        if (m == nn && nn < 64) names[nn] = in, counts[nn++] = 0;
        if (m < 64) counts[m]++;
      }
    }
    const char *all[128];
    int cnt[128];
    size_t k = 0;
    for (size_t i = 0; i < nn; i++) all[k] = names[i], cnt[k++] = counts[i];
    for (size_t i = 0; i < nobj; i++) all[k] = objs[i], cnt[k++] = 0;
    for (size_t i = 1; i < k; i++)
      for (size_t j = i; j > 0; j--) {
        int d = cnt[j] - cnt[j - 1];
        if (d > 0 || (d == 0 && strcmp(all[j - 1], all[j]) > 0)) {
          const char *t = all[j];
          int c = cnt[j];
          all[j] = all[j - 1], cnt[j] = cnt[j - 1];
          all[j - 1] = t, cnt[j - 1] = c;
        } else {
          break;
        }
      }
    if (k) {
      size_t w = (size_t)snprintf(out, cap, " Did you mean to use an inline fragment on ");
      size_t lim = k > 5 ? 5 : k;
      for (size_t i = 0; i < lim && w < cap; i++) {
        const char *sep = !i ? "" : (lim == 2 ? " or " : (i == lim - 1 ? ", or " : ", "));
        w += (size_t)snprintf(out + w, cap - w, "%s\"%s\"", sep, all[i]);
      }
      if (w < cap) snprintf(out + w, cap - w, "?");
      return;
    }
  }
  if (strcmp(parent->kind, "OBJECT") && strcmp(parent->kind, "INTERFACE")) return;
  const char **fn = rego__names_of(q, parent->fields.v, parent->fields.n);
  if (fn) rego__suggest(out, cap, "Did you mean", name, fn, parent->fields.n, true);
}

static void rego__walk_selection(qv *q, const gq_def *parent, const rv *sel) {
  int k = rego__sel_kind(q, sel);
  if (k == SEL_FIELD) {
    const char *name = rego__ast_str(&q->sh, sel, "Name");
    if (!rego__pmap_put(q->a, &q->objdef, sel, (void *)(uintptr_t)parent)) q->oom = true;
    const rv *def = rego__field_def(q, parent, name);
    const gq_def *next = def ? rego__sdef(q->s, rego__type_name(rego__ast_obj(&q->sh, def, "Type"), 0)) : NULL;
    size_t na;
    const rv *const *args = rego__ast_list(&q->sh, sel, "Arguments", &na);
    for (size_t i = 0; i < na; i++) rego__walk_argument(q, def ? rego__arr_for_name(def, "Arguments", rego__ast_str(&q->sh, args[i], "Name")) : NULL, args[i]);
    rego__walk_dirs_of(q, sel, "FIELD");
    rego__walk_selection_set(q, next, sel);
    /* FieldsOnCorrectType */
    if (parent && !def) {
      char sg[400];
      rego__field_suggestion(q, parent, name, sg, sizeof(sg));
      rego__qv_err(q, sel, "Cannot query field \"%s\" on type \"%s\".%s", name, parent->name, sg);
    }
    /* KnownArgumentNames */
    if (def && parent)
      for (size_t i = 0; i < na; i++)
        if (!rego__arr_for_name(def, "Arguments", rego__ast_str(&q->sh, args[i], "Name")))
        {
          size_t nda;
          const rv *const *dargs = rego__ast_list(&q->sh, def, "Arguments", &nda);
          const char **an = rego__names_of(q, dargs, nda);
          char sg[300];
          rego__suggest(sg, sizeof(sg), "Did you mean", rego__ast_str(&q->sh, args[i], "Name"), an, an ? nda : 0, true);
          rego__qv_err(q, sel, "Unknown argument \"%s\" on field \"%s.%s\".%s", rego__ast_str(&q->sh, args[i], "Name"), parent->name, name, sg);
        }
    /* MaxIntrospectionDepth */
    if ((!strcmp(name, "__schema") || !strcmp(name, "__type")) && rego__mi_field(q, sel, 0, 0))
      rego__qv_err(q, sel, "Maximum introspection depth exceeded");
    /* OverlappingFieldsCanBeMerged */
    if (q->cur) rego__overlapping(q, sel);
    /* ProvidedRequiredArguments */
    if (def) rego__required_args(q, sel, def, name, false);
    /* ScalarLeafs */
    if (def) {
      const gq_def *ft = rego__sdef(q->s, rego__type_name(rego__ast_obj(&q->sh, def, "Type"), 0));
      size_t ns;
      rego__ast_list(&q->sh, sel, "SelectionSet", &ns);
      if (ft && rego__is_leaf_kind(ft->kind) && ns)
        rego__qv_err(q, sel, "Field \"%s\" must not have a selection since type \"%s\" has no subfields.", name, ft->name);
      if (ft && !rego__is_leaf_kind(ft->kind) && !ns) {
        char ts[256];
        rego__type_str(rego__ast_obj(&q->sh, def, "Type"), ts, sizeof(ts), 0);
        rego__qv_err(q, sel, "Field \"%s\" of type \"%s\" must have a selection of subfields. Did you mean \"%s { ... }\"?", name, ts, name);
      }
    }
    /* UniqueArgumentNames */
    rego__unique_args(q, sel);
  } else if (k == SEL_INLINE) {
    const char *tc = rego__ast_str(&q->sh, sel, "TypeCondition");
    const gq_def *next = *tc ? rego__sdef(q->s, tc) : parent;
    rego__walk_dirs_of(q, sel, "INLINE_FRAGMENT");
    rego__walk_selection_set(q, next, sel);
    /* FragmentsOnCompositeTypes */
    const gq_def *ft = rego__sdef(q->s, tc);
    if (ft && !rego__is_composite_kind(ft->kind)) rego__qv_err(q, sel, "Fragment cannot condition on non composite type \"%s\".", tc);
    /* KnownTypeNames */
    if (*tc && !ft) rego__qv_err(q, sel, "Unknown type \"%s\".", tc);
    /* OverlappingFieldsCanBeMerged */
    rego__overlapping(q, sel);
    /* PossibleFragmentSpreads */
    if (!rego__fragment_possible(q, parent, tc))
      rego__qv_err(q, sel, "Fragment cannot be spread here as objects of type \"%s\" can never be of type \"%s\".", parent->name, tc);
  } else {
    const char *name = rego__ast_str(&q->sh, sel, "Name");
    const rv *fd = rego__smap_get(&q->frags, name);
    const gq_def *next = fd ? rego__sdef(q->s, rego__ast_str(&q->sh, fd, "TypeCondition")) : NULL;
    rego__walk_dirs_of(q, sel, "FRAGMENT_SPREAD");
    if (fd && !rego__smap_get(&q->validated, name)) {
      rego__qv_put(q, &q->validated, name);
      rego__walk_dirs_of(q, fd, "FRAGMENT_DEFINITION");
      rego__walk_selection_set(q, next, fd);
    }
    /* KnownFragmentNames */
    if (!fd) rego__qv_err(q, sel, "Unknown fragment \"%s\".", name);
    /* NoUnusedFragments */
    if (!q->in_frag_defs) rego__qv_put(q, &q->used_frags, name);
    /* PossibleFragmentSpreads */
    if (fd && !rego__fragment_possible(q, parent, rego__ast_str(&q->sh, fd, "TypeCondition")))
      rego__qv_err(q, sel, "Fragment \"%s\" cannot be spread here as objects of type \"%s\" can never be of type \"%s\".", name,
             parent->name, rego__ast_str(&q->sh, fd, "TypeCondition"));
  }
}

static void rego__walk_selection_set(qv *q, const gq_def *parent, const rv *node) {
  size_t n;
  const rv *const *sels = rego__ast_list(&q->sh, node, "SelectionSet", &n);
  if (++q->depth > GQ_MAX_WALK_DEPTH) {
    rego__qv_err(q, NULL, "exceeded maximum nesting depth of %d", GQ_MAX_WALK_DEPTH);
    q->depth--;
    return;
  }
  for (size_t i = 0; i < n && !q->oom; i++)
    if (sels[i]->t == RV_OBJ) rego__walk_selection(q, parent, sels[i]);
  q->depth--;
}

/* Spreads in a selection set, in gqlparser's (stack) order. */
static void rego__collect_spreads(qv *q, const rv *node, vec *out) {
  vec stack = {0};
  if (!rego__vpush(q->a, &stack, node)) {
    q->oom = true;
    return;
  }
  while (stack.n && !q->oom) {
    const rv *set = stack.v[--stack.n];
    size_t n;
    const rv *const *sels = rego__ast_list(&q->sh, set, "SelectionSet", &n);
    for (size_t i = 0; i < n; i++) {
      if (sels[i]->t != RV_OBJ) continue;
      bool ok = rego__sel_kind(q, sels[i]) == SEL_SPREAD ? rego__vpush(q->a, out, sels[i]) : rego__vpush(q->a, &stack, sels[i]);
      if (!ok) q->oom = true;
    }
  }
}

static const rv *rego__first_fragment(qv *q, const char *name) { return rego__smap_get(&q->frags, name); }

static void rego__frag_cycles(qv *q, const rv *frag, vec *path, smap *index, int depth) {
  const char *fname = rego__ast_str(&q->sh, frag, "Name");
  if (rego__smap_get(&q->visited_frags, fname)) return;
  if (depth > GQ_MAX_WALK_DEPTH) {
    rego__qv_err(q, NULL, "exceeded maximum nesting depth of %d", GQ_MAX_WALK_DEPTH);
    return;
  }
  rego__qv_put(q, &q->visited_frags, fname);
  vec spreads = {0};
  rego__collect_spreads(q, frag, &spreads);
  if (!spreads.n) return;
  if (!rego__smap_put(q->a, index, fname, (void *)(uintptr_t)(path->n + 1))) q->oom = true;
  for (size_t i = 0; i < spreads.n && !q->oom; i++) {
    const char *sn = rego__ast_str(&q->sh, spreads.v[i], "Name");
    uintptr_t ci = (uintptr_t)rego__smap_get(index, sn);
    if (!rego__vpush(q->a, path, spreads.v[i])) {
      q->oom = true;
      return;
    }
    if (!ci) {
      const rv *sf = rego__first_fragment(q, sn);
      if (sf) rego__frag_cycles(q, sf, path, index, depth + 1);
    } else {
      sbuf via = {.n = 0};
      via.b[0] = 0;
      for (size_t j = ci - 1; j + 1 < path->n; j++)
        rego__sb_printf(&via, "%s\"%s\"", j + 1 == ci ? " via " : ", ", rego__ast_str(&q->sh, path->v[j], "Name"));
      rego__qv_err(q, spreads.v[i], "Cannot spread fragment \"%s\" within itself%s.", sn, via.b);
    }
    path->n--;
  }
  rego__smap_put(q->a, index, fname, NULL);
}

static void rego__walk_operation(qv *q, const rv *op, size_t nops) {
  q->cur = op;
  size_t nv;
  const rv *const *vds = rego__ast_list(&q->sh, op, "VariableDefinitions", &nv);
  for (size_t i = 0; i < nv; i++) {
    /* KnownTypeNames */
    const char *tn = rego__type_name(rego__ast_obj(&q->sh, vds[i], "Type"), 0);
    if (!rego__sdef(q->s, tn)) rego__qv_err(q, vds[i], "Unknown type \"%s\".", tn);
  }
  const char *opn = rego__ast_str(&q->sh, op, "Operation");
  const gq_def *root = NULL;
  const char *loc = "QUERY";
  if (!strcmp(opn, "query") || !*opn) root = q->s->query;
  else if (!strcmp(opn, "mutation")) root = q->s->mutation, loc = "MUTATION";
  else if (!strcmp(opn, "subscription")) root = q->s->subscription, loc = "SUBSCRIPTION";
  else q->sh.bad = true;
  for (size_t i = 0; i < nv; i++) {
    const rv *dv = rego__ast_obj(&q->sh, vds[i], "DefaultValue");
    const rv *t = rego__ast_obj(&q->sh, vds[i], "Type");
    if (dv) rego__walk_value(q, dv, t, rego__sdef(q->s, rego__type_name(t, 0)), rego__ast_bool(&q->sh, dv, "ExpectedTypeHasDefault"));
    rego__walk_dirs_of(q, vds[i], "VARIABLE_DEFINITION");
  }
  rego__walk_dirs_of(q, op, loc);
  rego__walk_selection_set(q, root, op);
  const char *name = rego__ast_str(&q->sh, op, "Name");
  /* KnownRootType */
  if (!root) rego__qv_err(q, op, "Schema does not support operation type \"%s\"", opn);
  /* LoneAnonymousOperation */
  if (!*name && nops > 1) rego__qv_err(q, op, "This anonymous operation must be the only defined operation.");
  /* NoUnusedVariables */
  for (size_t i = 0; i < nv; i++) {
    if (rego__pmap_get(&q->used_vars, vds[i])) continue;
    if (*name) rego__qv_err(q, vds[i], "Variable \"$%s\" is never used in operation \"%s\".", rego__ast_str(&q->sh, vds[i], "Variable"), name);
    else rego__qv_err(q, vds[i], "Variable \"$%s\" is never used.", rego__ast_str(&q->sh, vds[i], "Variable"));
  }
  /* OverlappingFieldsCanBeMerged */
  rego__overlapping(q, op);
  /* SingleFieldSubscriptions */
  if (q->s->subscription && !strcmp(opn, "subscription")) {
    /* top-level field names through inline fragments and spreads, de-duplicated */
    vec fields = {0}, stack = {0};
    smap infrag = {0};
    if (!rego__vpush(q->a, &stack, op)) q->oom = true;
    /* gqlparser recurses depth-first in order; emulate with an explicit order-preserving walk */
    size_t nsel;
    const rv *const *sels = rego__ast_list(&q->sh, op, "SelectionSet", &nsel);
    const rv *const *wl[64];
    size_t wn[64], wi[64];
    int top = 0;
    wl[0] = sels, wn[0] = nsel, wi[0] = 0;
    while (top >= 0 && !q->oom) {
      if (wi[top] >= wn[top]) {
        top--;
        continue;
      }
      const rv *s = wl[top][wi[top]++];
      if (s->t != RV_OBJ) continue;
      int sk = rego__sel_kind(q, s);
      if (sk == SEL_FIELD) {
        if (!rego__vpush(q->a, &fields, s)) q->oom = true;
      } else if (top < 63) {
        const rv *src = s;
        if (sk == SEL_SPREAD) {
          const char *fn = rego__ast_str(&q->sh, s, "Name");
          src = rego__first_fragment(q, fn);
          if (!src) {
            top--; /* gqlparser returns from this level */
            continue;
          }
          if (rego__smap_get(&infrag, fn)) continue;
          if (!rego__smap_put(q->a, &infrag, fn, (void *)1)) q->oom = true;
        }
        size_t cn;
        const rv *const *cs = rego__ast_list(&q->sh, src, "SelectionSet", &cn);
        top++;
        wl[top] = cs, wn[top] = cn, wi[top] = 0;
      }
    }
    const char *label = *name ? NULL : "Anonymous Subscription";
    char lb[300];
    if (!label) {
      snprintf(lb, sizeof(lb), "Subscription \"%s\"", name);
      label = lb;
    }
    vec uniq = {0};
    for (size_t i = 0; i < fields.n; i++) {
      bool dup = false;
      for (size_t j = 0; j < uniq.n; j++) dup |= !strcmp(rego__ast_str(&q->sh, uniq.v[j], "Name"), rego__ast_str(&q->sh, fields.v[i], "Name"));
      if (!dup && !rego__vpush(q->a, &uniq, fields.v[i])) q->oom = true;
    }
    if (uniq.n > 1) rego__qv_err(q, uniq.v[1], "%s must select only one top level field.", label);
    for (size_t i = 0; i < uniq.n; i++)
      if (!strncmp(rego__ast_str(&q->sh, uniq.v[i], "Name"), "__", 2))
        rego__qv_err(q, uniq.v[i], "%s must not select an introspection top level field.", label);
  }
  /* UniqueOperationNames */
  if (rego__smap_get(&q->seen_op_names, name)) rego__qv_err(q, op, "There can be only one operation named \"%s\".", name);
  rego__qv_put(q, &q->seen_op_names, name);
  /* UniqueVariableNames */
  for (size_t i = 0; i < nv; i++) {
    int seen = 0;
    for (size_t j = 0; j < i; j++) seen += !strcmp(rego__ast_str(&q->sh, vds[i], "Variable"), rego__ast_str(&q->sh, vds[j], "Variable"));
    if (seen == 1) rego__qv_err(q, vds[i], "There can be only one variable named \"$%s\".", rego__ast_str(&q->sh, vds[i], "Variable"));
  }
  /* VariablesAreInputTypes */
  for (size_t i = 0; i < nv; i++) {
    const rv *t = rego__ast_obj(&q->sh, vds[i], "Type");
    const gq_def *d = rego__sdef(q->s, rego__type_name(t, 0));
    if (d && !rego__is_input_kind(d->kind)) {
      char ts[256];
      rego__type_str(t, ts, sizeof(ts), 0);
      rego__qv_err(q, vds[i], "Variable \"$%s\" cannot be non-input type \"%s\".", rego__ast_str(&q->sh, vds[i], "Variable"), ts);
    }
  }
  q->cur = NULL;
}

static void rego__walk_fragment(qv *q, const rv *frag) {
  const char *tc = rego__ast_str(&q->sh, frag, "TypeCondition");
  const gq_def *def = rego__sdef(q->s, tc);
  rego__walk_dirs_of(q, frag, "FRAGMENT_DEFINITION");
  rego__walk_selection_set(q, def, frag);
  const char *name = rego__ast_str(&q->sh, frag, "Name");
  /* FragmentsOnCompositeTypes */
  if (def && *tc && !rego__is_composite_kind(def->kind))
    rego__qv_err(q, frag, "Fragment \"%s\" cannot condition on non composite type \"%s\".", name, tc);
  /* KnownTypeNames */
  if (!def) {
    /* gqlparser offers every schema type (in map order); we offer them in name order */
    const char **tn = rg_alloc(q->a, (q->s->types.n + 1) * sizeof(char *));
    size_t k = 0;
    char sg[300] = "";
    if (tn) {
      for (size_t i = 0; i < q->s->types.cap; i++)
        if (q->s->types.k[i]) tn[k++] = q->s->types.k[i];
      qsort(tn, k, sizeof(char *), rego__cmp_str);
      rego__suggest(sg, sizeof(sg), "Did you mean", tc, tn, k, true);
    } else {
      q->oom = true;
    }
    rego__qv_err(q, frag, "Unknown type \"%s\".%s", tc, sg);
  }
  /* NoFragmentCycles */
  vec path = {0};
  smap index = {0};
  rego__frag_cycles(q, frag, &path, &index, 0);
  /* NoUnusedFragments */
  q->in_frag_defs = true;
  if (!rego__smap_get(&q->used_frags, name)) rego__qv_err(q, frag, "Fragment \"%s\" is never used.", name);
  /* OverlappingFieldsCanBeMerged */
  rego__overlapping(q, frag);
  /* UniqueFragmentNames */
  if (rego__smap_get(&q->seen_frag_names, name)) rego__qv_err(q, frag, "There can be only one fragment named \"%s\".", name);
  rego__qv_put(q, &q->seen_frag_names, name);
}

/* OPA's formatGqlParserError over the joined error list. */
static CT_RESULT rego__format_errors(const char *all, ct_err *err) {
  const char *p1 = strchr(all, ':');
  const char *p2 = p1 ? strchr(p1 + 1, ':') : NULL;
  const char *p3 = p2 ? strchr(p2 + 1, ':') : NULL;
  if (p3) {
    char *e1, *e2;
    unsigned long line = strtoul(p1 + 1, &e1, 10), col = strtoul(p2 + 1, &e2, 10);
    if (e1 == p2 && e2 == p3 && e1 != p1 + 1 && e2 != p2 + 1 && p1[1] >= '0' && p1[1] <= '9' && p2[1] >= '0' &&
        p2[1] <= '9') {
      const char *m = p3 + 1;
      while (*m == ' ') m++;
      size_t ml = strlen(m);
      if (ml >= 2 && m[ml - 2] == '.' && m[ml - 1] == '\n') ml -= 2;
      return ct_fail(err, CT_EINVAL, "%.*s in GraphQL string at location %lu:%lu", (int)ml, m, line, col);
    }
  }
  return ct_fail(err, CT_EINVAL, "GraphQL parse error: %s", all);
}

CT_RESULT gq_validate_query(rg_arena *a, const gq_schema *s, const rv *query_ast, const gq_posmap *pm, ct_err *err) {
  if (!query_ast || query_ast->t != RV_OBJ) return ct_fail(err, CT_EINVAL, "query AST must be an object");
  qv q;
  memset(&q, 0, sizeof(q));
  q.s = (gq_schema *)(uintptr_t)s, q.a = a, q.pm = pm, q.doc = query_ast;
  q.from_obj = !pm;
  ct_buf_init(&q.errs, 1u << 16);
  size_t nops, nfr;
  const rv *const *ops = rego__ast_list(&q.sh, query_ast, "Operations", &nops);
  const rv *const *frs = rego__ast_list(&q.sh, query_ast, "Fragments", &nfr);
  for (size_t i = 0; i < nfr; i++) {
    if (frs[i]->t != RV_OBJ) {
      q.sh.bad = true;
      continue;
    }
    const char *n = rego__ast_str(&q.sh, frs[i], "Name");
    if (!rego__smap_get(&q.frags, n) && !rego__smap_put(a, &q.frags, n, (void *)(uintptr_t)frs[i])) q.oom = true;
  }
  for (size_t i = 0; i < nops && !q.oom; i++) {
    if (ops[i]->t != RV_OBJ) {
      q.sh.bad = true;
      continue;
    }
    memset(&q.validated, 0, sizeof(q.validated));
    rego__walk_operation(&q, ops[i], nops);
  }
  for (size_t i = 0; i < nfr && !q.oom; i++) {
    if (frs[i]->t != RV_OBJ) continue;
    memset(&q.validated, 0, sizeof(q.validated));
    rego__walk_fragment(&q, frs[i]);
  }
  ct_status st = CT_OK;
  if (q.oom) st = ct_fail(err, CT_ENOMEM, "out of memory");
  else if (q.sh.bad) st = ct_fail(err, CT_EINVAL, "GraphQL parse error: query AST has an unexpected shape");
  else if (q.any) {
    ct_err e;
    if (ct_buf_append(&q.errs, "", 1, &e)) st = ct_fail(err, CT_ENOMEM, "out of memory");
    else st = rego__format_errors((const char *)q.errs.data, err);
  }
  ct_buf_free(&q.errs);
  return st;
}

/* ---------------------------------------------------------------- AST objects */
/* OPA turns an AST given as an object into gqlparser's Go structs (encoding/json) and back:
 * unknown keys vanish, missing ones take Go's zero values, every selection decodes as a Field,
 * and the result is pruned again. Struct layouts follow gqlparser's ast package (field names
 * matched exactly; Go's decoder would also accept other letter cases). */

typedef struct gq_sd gq_sd;
typedef struct {
  const char *name;
  char kind;            /* s string, b bool, i int, o struct, l list of struct, L list of string, c comment group */
  const gq_sd *sub;
} gq_fd;
struct gq_sd {
  const gq_fd *f;
  bool exact; /* decoded by gqlparser's own UnmarshalJSON (exact key names) */
};

static const gq_sd SD_type, SD_value, SD_child, SD_arg, SD_dir, SD_dirdef, SD_def, SD_fielddef, SD_argdef, SD_enumval,
    SD_vardef, SD_field, SD_op, SD_frag, SD_qdoc, SD_sdoc, SD_schemadef, SD_optype;

#define F(n, k, s) {n, k, s}
static const gq_fd FD_type[] = {F("NamedType", 's', NULL), F("Elem", 'o', &SD_type), F("NonNull", 'b', NULL), {0}};
static const gq_fd FD_value[] = {F("Raw", 's', NULL), F("Children", 'l', &SD_child), F("Kind", 'i', NULL),
                                 F("Comment", 'c', NULL), F("Definition", 'o', &SD_def),
                                 F("VariableDefinition", 'o', &SD_vardef), F("ExpectedType", 'o', &SD_type),
                                 F("ExpectedTypeHasDefault", 'b', NULL), {0}};
static const gq_fd FD_child[] = {F("Name", 's', NULL), F("Value", 'o', &SD_value), F("Comment", 'c', NULL), {0}};
static const gq_fd FD_arg[] = {F("Name", 's', NULL), F("Value", 'o', &SD_value), F("Comment", 'c', NULL), {0}};
static const gq_fd FD_dir[] = {F("Name", 's', NULL), F("Arguments", 'l', &SD_arg), F("ParentDefinition", 'o', &SD_def),
                               F("Definition", 'o', &SD_dirdef), F("Location", 's', NULL), {0}};
static const gq_fd FD_argdef[] = {F("Description", 's', NULL), F("Name", 's', NULL), F("DefaultValue", 'o', &SD_value),
                                  F("Type", 'o', &SD_type), F("Directives", 'l', &SD_dir),
                                  F("BeforeDescriptionComment", 'c', NULL), F("AfterDescriptionComment", 'c', NULL), {0}};
static const gq_fd FD_dirdef[] = {F("Description", 's', NULL), F("Name", 's', NULL), F("Arguments", 'l', &SD_argdef),
                                  F("Directives", 'l', &SD_dir), F("Locations", 'L', NULL), F("IsRepeatable", 'b', NULL),
                                  F("BeforeDescriptionComment", 'c', NULL), F("AfterDescriptionComment", 'c', NULL), {0}};
static const gq_fd FD_fielddef[] = {F("Description", 's', NULL), F("Name", 's', NULL), F("Arguments", 'l', &SD_argdef),
                                    F("DefaultValue", 'o', &SD_value), F("Type", 'o', &SD_type),
                                    F("Directives", 'l', &SD_dir), F("BeforeDescriptionComment", 'c', NULL),
                                    F("AfterDescriptionComment", 'c', NULL), {0}};
static const gq_fd FD_enumval[] = {F("Description", 's', NULL), F("Name", 's', NULL), F("Directives", 'l', &SD_dir),
                                   F("BeforeDescriptionComment", 'c', NULL), F("AfterDescriptionComment", 'c', NULL), {0}};
static const gq_fd FD_def[] = {F("Kind", 's', NULL), F("Description", 's', NULL), F("Name", 's', NULL),
                               F("Directives", 'l', &SD_dir), F("Interfaces", 'L', NULL), F("Fields", 'l', &SD_fielddef),
                               F("Types", 'L', NULL), F("EnumValues", 'l', &SD_enumval), F("BuiltIn", 'b', NULL),
                               F("BeforeDescriptionComment", 'c', NULL), F("AfterDescriptionComment", 'c', NULL),
                               F("EndOfDefinitionComment", 'c', NULL), {0}};
static const gq_fd FD_vardef[] = {F("Description", 's', NULL), F("Variable", 's', NULL), F("Type", 'o', &SD_type),
                                  F("DefaultValue", 'o', &SD_value), F("Directives", 'l', &SD_dir),
                                  F("Comment", 'c', NULL), F("Definition", 'o', &SD_def), F("Used", 'b', NULL), {0}};
/* gqlparser's own decoders for these keep only the listed keys */
static const gq_fd FD_field[] = {F("Alias", 's', NULL), F("Name", 's', NULL), F("Arguments", 'l', &SD_arg),
                                 F("Directives", 'l', &SD_dir), F("SelectionSet", 'l', &SD_field),
                                 F("Definition", 'o', &SD_fielddef), F("ObjectDefinition", 'o', &SD_def), {0}};
static const gq_fd FD_op[] = {F("Description", 's', NULL), F("Operation", 's', NULL), F("Name", 's', NULL),
                              F("VariableDefinitions", 'l', &SD_vardef), F("Directives", 'l', &SD_dir),
                              F("SelectionSet", 'l', &SD_field), {0}};
static const gq_fd FD_frag[] = {F("Description", 's', NULL), F("Name", 's', NULL),
                                F("VariableDefinition", 'l', &SD_vardef), F("TypeCondition", 's', NULL),
                                F("Directives", 'l', &SD_dir), F("SelectionSet", 'l', &SD_field),
                                F("Definition", 'o', &SD_def), {0}};
static const gq_fd FD_qdoc[] = {F("Operations", 'l', &SD_op), F("Fragments", 'l', &SD_frag), F("Comment", 'c', NULL), {0}};
static const gq_fd FD_optype[] = {F("Operation", 's', NULL), F("Type", 's', NULL), F("Comment", 'c', NULL), {0}};
static const gq_fd FD_schemadef[] = {F("Description", 's', NULL), F("Directives", 'l', &SD_dir),
                                     F("OperationTypes", 'l', &SD_optype), F("BeforeDescriptionComment", 'c', NULL),
                                     F("AfterDescriptionComment", 'c', NULL), F("EndOfDefinitionComment", 'c', NULL), {0}};
static const gq_fd FD_sdoc[] = {F("Schema", 'l', &SD_schemadef), F("SchemaExtension", 'l', &SD_schemadef),
                                F("Directives", 'l', &SD_dirdef), F("DirectiveExtensions", 'l', &SD_dirdef),
                                F("Definitions", 'l', &SD_def), F("Extensions", 'l', &SD_def), F("Comment", 'c', NULL), {0}};
#undef F
static const gq_sd SD_type = {FD_type, false}, SD_value = {FD_value, false}, SD_child = {FD_child, false}, SD_arg = {FD_arg, false},
                   SD_dir = {FD_dir, false}, SD_dirdef = {FD_dirdef, false}, SD_def = {FD_def, false}, SD_fielddef = {FD_fielddef, false},
                   SD_argdef = {FD_argdef, false}, SD_enumval = {FD_enumval, false}, SD_vardef = {FD_vardef, false},
                   SD_field = {FD_field, true}, SD_op = {FD_op, true}, SD_frag = {FD_frag, true}, SD_qdoc = {FD_qdoc, false},
                   SD_sdoc = {FD_sdoc, false}, SD_schemadef = {FD_schemadef, false}, SD_optype = {FD_optype, false};

typedef struct {
  rg_arena *a;
  bool bad, oom;
  char why[160];
} nz;

static void rego__nz_bad(nz *z, const char *key, const char *want) {
  if (z->bad) return;
  z->bad = true;
  snprintf(z->why, sizeof(z->why), "json: cannot unmarshal into field %s of type %s", key, want);
}

static rv *rego__nz_struct(nz *z, const rv *in, const gq_sd *sd, int depth);

static bool rego__ascii_fold_eq(const char *a, const char *b) {
  for (; *a && *b; a++, b++) {
    char x = (char)((*a >= 'A' && *a <= 'Z') ? *a + 32 : *a), y = (char)((*b >= 'A' && *b <= 'Z') ? *b + 32 : *b);
    if (x != y) return false;
  }
  return *a == *b;
}

/* The value encoding/json assigns to a struct field: keys are decoded in order (OPA serialises
 * objects with sorted keys), each matching its field exactly or case-insensitively, the last one
 * winning; null leaves a string / bool / int untouched but clears a pointer or slice. */
static rv *rego__nz_get(const rv *in, const char *name, bool exact, bool scalar) {
  if (exact) return rv_obj_gets(in, name);
  rv *v = NULL;
  for (size_t i = 0; i < in->n; i++) {
    const rv *k = in->u.o.k[i];
    if (k->t != RV_STR || !rego__ascii_fold_eq(k->u.s, name)) continue;
    if (scalar && in->u.o.v[i]->t == RV_NULL) continue;
    v = in->u.o.v[i];
  }
  return v;
}

/* a pruned list: nulls and empty objects dropped (OPA's pruning) */
static rv *rego__nz_list(nz *z, const rv *in, const char *key, const gq_sd *sd, bool strings, int depth) {
  if (in->t != RV_ARR) {
    rego__nz_bad(z, key, "array");
    return NULL;
  }
  rv **items = rg_alloc(z->a, (in->n + 1) * sizeof(rv *));
  if (!items) {
    z->oom = true;
    return NULL;
  }
  size_t k = 0;
  for (size_t i = 0; i < in->n; i++) {
    const rv *e = in->u.a[i];
    if (e->t == RV_NULL) continue; /* a nil pointer: pruned */
    if (strings) {
      if (e->t != RV_STR) {
        rego__nz_bad(z, key, "string");
        return NULL;
      }
      items[k++] = (rv *)(uintptr_t)e;
      continue;
    }
    rv *o = rego__nz_struct(z, e, sd, depth + 1);
    if (z->bad || z->oom) return NULL;
    if (o && o->n) items[k++] = o;
  }
  if (!k) return NULL;
  rv *r = rv_arr(z->a, items, k);
  if (!r) z->oom = true;
  return r;
}

static rv *rego__nz_comment(nz *z, const rv *in, const char *key) {
  if (in->t != RV_OBJ) {
    rego__nz_bad(z, key, "CommentGroup");
    return NULL;
  }
  rv *list = rego__nz_get(in, "List", false, false);
  if (!list || list->t == RV_NULL) return NULL;
  if (list->t != RV_ARR) {
    rego__nz_bad(z, "List", "array");
    return NULL;
  }
  rv **items = rg_alloc(z->a, (list->n + 1) * sizeof(rv *));
  if (!items) {
    z->oom = true;
    return NULL;
  }
  size_t k = 0;
  for (size_t i = 0; i < list->n; i++) {
    const rv *c = list->u.a[i];
    if (c->t == RV_NULL) continue;
    if (c->t != RV_OBJ) {
      rego__nz_bad(z, "List", "Comment");
      return NULL;
    }
    rv *v = rego__nz_get(c, "Value", false, true);
    if (v && v->t != RV_STR && v->t != RV_NULL) {
      rego__nz_bad(z, "Value", "string");
      return NULL;
    }
    rv *key_v = rv_cstr(z->a, "Value");
    rv *val = v && v->t == RV_STR ? v : rv_str(z->a, "", 0);
    if (!key_v || !val) {
      z->oom = true;
      return NULL;
    }
    items[k++] = rv_obj(z->a, &key_v, &val, 1, NULL);
    if (!items[k - 1]) {
      z->oom = true;
      return NULL;
    }
  }
  if (!k) return NULL;
  rv *arr = rv_arr(z->a, items, k), *lk = rv_cstr(z->a, "List");
  rv *r = arr && lk ? rv_obj(z->a, &lk, &arr, 1, NULL) : NULL;
  if (!r) z->oom = true;
  return r;
}

static rv *rego__nz_struct(nz *z, const rv *in, const gq_sd *sd, int depth) {
  if (depth > GQ_MAX_WALK_DEPTH) {
    rego__nz_bad(z, "(nesting)", "too deep");
    return NULL;
  }
  if (in->t != RV_OBJ) {
    rego__nz_bad(z, "(struct)", "object");
    return NULL;
  }
  rv *ks[16], *vs[16];
  size_t n = 0;
  for (const gq_fd *f = sd->f; f->name; f++) {
    rv *v = rego__nz_get(in, f->name, sd->exact, f->kind == 's' || f->kind == 'b' || f->kind == 'i'), *o = NULL;
    switch (f->kind) {
      case 's':
        if (v && v->t != RV_STR && v->t != RV_NULL) rego__nz_bad(z, f->name, "string");
        o = v && v->t == RV_STR ? v : rv_str(z->a, "", 0);
        break;
      case 'b':
        if (v && v->t != RV_BOOL && v->t != RV_NULL) rego__nz_bad(z, f->name, "bool");
        o = rv_bool(v && v->t == RV_BOOL && v->b);
        break;
      case 'i': {
        int64_t i = 0;
        if (v && v->t != RV_NULL && (v->t != RV_NUM || !rv_num_is_int(v, &i))) rego__nz_bad(z, f->name, "int");
        o = rv_int(z->a, i);
        break;
      }
      case 'o':
        if (v && v->t != RV_NULL) o = rego__nz_struct(z, v, f->sub, depth + 1);
        if (o && !o->n) o = NULL;
        break;
      case 'l':
      case 'L':
        if (v && v->t != RV_NULL) o = rego__nz_list(z, v, f->name, f->sub, f->kind == 'L', depth);
        break;
      case 'c':
        if (v && v->t != RV_NULL) o = rego__nz_comment(z, v, f->name);
        break;
      default: break;
    }
    if (z->bad || z->oom) return NULL;
    if (!o) {
      if (f->kind == 's' || f->kind == 'b' || f->kind == 'i') z->oom = true;
      continue;
    }
    ks[n] = rv_cstr(z->a, f->name);
    if (!ks[n]) {
      z->oom = true;
      return NULL;
    }
    vs[n++] = o;
  }
  rv *r = rv_obj(z->a, ks, vs, n, NULL);
  if (!r) z->oom = true;
  return r;
}

CT_RESULT gq_normalize(rg_arena *a, const rv *ast, bool schema, rv **out, ct_err *err) {
  nz z = {.a = a};
  rv *r = rego__nz_struct(&z, ast, schema ? &SD_sdoc : &SD_qdoc, 0);
  if (z.oom) return ct_fail(err, CT_ENOMEM, "out of memory");
  if (z.bad || !r) return ct_fail(err, CT_EINVAL, "%s", z.why[0] ? z.why : "json: cannot unmarshal GraphQL AST");
  *out = r;
  return CT_OK;
}
