/*
 * builtins_graphql.c - graphql.parse_query, graphql.parse_schema, graphql.schema_is_valid,
 * graphql.is_valid, graphql.parse and graphql.parse_and_verify (OPA v1 semantics; the GraphQL
 * work itself is in graphql.c / graphql_validate.c).
 */
#include <string.h>

#include "gq_int.h"
#include "graphql.h"
#include "rego_bi.h"

/* A query or schema operand: a string is parsed, an object is normalized as an AST. Returns CT_OK
 * with *doc NULL when the operand has another type. */
static CT_RESULT rego__operand_doc(rg_ev *ev, rv *v, bool schema, gq_posmap *pm, rv **doc, ct_err *err) {
  *doc = NULL;
  if (v->t == RV_STR)
    return schema ? gq_parse_schema_pm(A, v->u.s, v->n, pm, doc, err) : gq_parse_query_pm(A, v->u.s, v->n, pm, doc, err);
  if (v->t == RV_OBJ) return gq_normalize(A, v, schema, doc, err);
  return CT_OK;
}

/* Maps a failure of the GraphQL code to the built-in's error (out of memory stays fatal). */
static CT_RESULT rego__gq_fail(rg_ev *ev, const char *name, const ct_err *e) {
  if (e->code == CT_ENOMEM) return rg_bi_oom(ev);
  return rg_bi_fail(ev, "%s: %s", name, e->msg);
}

static CT_RESULT rego__bi_parse_query(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "graphql.parse_query", 1, a[0], RV_STR));
  ct_err e = {0};
  if (gq_parse_query(A, a[0]->u.s, a[0]->n, out, &e)) return rego__gq_fail(ev, "graphql.parse_query", &e);
  return CT_OK;
}

static CT_RESULT rego__bi_parse_schema(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "graphql.parse_schema", 1, a[0], RV_STR));
  ct_err e = {0};
  if (gq_parse_schema(A, a[0]->u.s, a[0]->n, out, &e)) return rego__gq_fail(ev, "graphql.parse_schema", &e);
  return CT_OK;
}

static CT_RESULT rego__bi_schema_is_valid(rg_ev *ev, rv **a, rv **out) {
  ct_err e = {0};
  rv *doc;
  gq_schema *s;
  *out = RV_FALSE;
  if (rego__operand_doc(ev, a[0], true, NULL, &doc, &e)) return e.code == CT_ENOMEM ? rg_bi_oom(ev) : CT_OK;
  if (!doc) return CT_OK;
  if (gq_schema_build(A, doc, NULL, &s, &e)) return e.code == CT_ENOMEM ? rg_bi_oom(ev) : CT_OK;
  *out = RV_TRUE;
  return CT_OK;
}

static CT_RESULT rego__bi_is_valid(rg_ev *ev, rv **a, rv **out) {
  ct_err e = {0};
  rv *q, *sd;
  gq_schema *s;
  gq_posmap *pm = rg_alloc(A, sizeof(*pm));
  if (!pm) return rg_bi_oom(ev);
  pm->a = A;
  *out = RV_FALSE;
  if (rego__operand_doc(ev, a[0], false, pm, &q, &e) || !q) return e.code == CT_ENOMEM ? rg_bi_oom(ev) : CT_OK;
  if (rego__operand_doc(ev, a[1], true, NULL, &sd, &e) || !sd) return e.code == CT_ENOMEM ? rg_bi_oom(ev) : CT_OK;
  if (gq_schema_build(A, sd, NULL, &s, &e)) return e.code == CT_ENOMEM ? rg_bi_oom(ev) : CT_OK;
  if (gq_validate_query(A, s, q, a[0]->t == RV_STR ? pm : NULL, &e)) return e.code == CT_ENOMEM ? rg_bi_oom(ev) : CT_OK;
  *out = RV_TRUE;
  return CT_OK;
}

/* Shared by graphql.parse (errors) and graphql.parse_and_verify (false on any error). */
static CT_RESULT rego__parse_both(rg_ev *ev, rv **a, rv **q, rv **sd, ct_err *e, bool *type_err, int *which) {
  gq_posmap *pm = rg_alloc(A, sizeof(*pm)), *spm = rg_alloc(A, sizeof(*spm));
  gq_schema *s;
  *type_err = false;
  if (!pm || !spm) return ct_fail(e, CT_ENOMEM, "out of memory");
  pm->a = A, spm->a = A;
  *which = 1;
  CT_GUARD(rego__operand_doc(ev, a[0], false, pm, q, e));
  if (!*q) {
    *type_err = true;
    return CT_EINVAL;
  }
  *which = 2;
  CT_GUARD(rego__operand_doc(ev, a[1], true, spm, sd, e));
  if (!*sd) {
    *type_err = true;
    return CT_EINVAL;
  }
  CT_GUARD(gq_schema_build(A, *sd, a[1]->t == RV_STR ? spm : NULL, &s, e));
  return gq_validate_query(A, s, *q, a[0]->t == RV_STR ? pm : NULL, e);
}

static CT_RESULT rego__bi_parse(rg_ev *ev, rv **a, rv **out) {
  ct_err e = {0};
  rv *q = NULL, *sd = NULL;
  bool type_err;
  int which;
  if (rego__parse_both(ev, a, &q, &sd, &e, &type_err, &which)) {
    if (type_err)
      /* OPA numbers this operand from 0 (builtins.NewOperandTypeErr(0, ...)) */
      return rg_bi_type(ev, "graphql.parse: operand %d must be one of {string, object} but got %s", which - 1,
                        rg_type_name(a[which - 1]));
    return rego__gq_fail(ev, "graphql.parse", &e);
  }
  rv *items[2] = {q, sd};
  *out = rv_arr(A, items, 2);
  return *out ? CT_OK : rg_bi_oom(ev);
}

static CT_RESULT rego__bi_parse_and_verify(rg_ev *ev, rv **a, rv **out) {
  ct_err e = {0};
  rv *q = NULL, *sd = NULL;
  bool type_err;
  int which;
  if (rego__parse_both(ev, a, &q, &sd, &e, &type_err, &which)) {
    if (e.code == CT_ENOMEM) return rg_bi_oom(ev);
    rv *items[3] = {RV_FALSE, &rv_empty_obj_v, &rv_empty_obj_v};
    *out = rv_arr(A, items, 3);
  } else {
    rv *items[3] = {RV_TRUE, q, sd};
    *out = rv_arr(A, items, 3);
  }
  return *out ? CT_OK : rg_bi_oom(ev);
}

const rg_builtin rg_builtins_graphql[] = {
    {"graphql.parse_query", 1, rego__bi_parse_query, false},
    {"graphql.parse_schema", 1, rego__bi_parse_schema, false},
    {"graphql.schema_is_valid", 1, rego__bi_schema_is_valid, false},
    {"graphql.is_valid", 2, rego__bi_is_valid, false},
    {"graphql.parse", 2, rego__bi_parse, false},
    {"graphql.parse_and_verify", 2, rego__bi_parse_and_verify, false},
    {NULL, 0, NULL, false},
};
