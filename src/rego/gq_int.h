/*
 * gq_int.h - internals shared by graphql.c (parser) and graphql_validate.c (validator).
 */
#ifndef REGO_GQ_INT_H
#define REGO_GQ_INT_H

#include "graphql.h"

/* Source positions of AST nodes (the pruned AST has none), keyed by node address. */
typedef struct {
  const rv *k;
  long line, col;
} gq_posent;
typedef struct gq_posmap {
  rg_arena *a;
  gq_posent *e;
  size_t n, cap;
  bool failed;
} gq_posmap;
void gq_pos_put(gq_posmap *m, const rv *k, long line, long col);
bool gq_pos_get(const gq_posmap *m, const rv *k, long *line, long *col);

CT_RESULT gq_parse_query_pm(rg_arena *a, const char *src, size_t n, gq_posmap *pm, rv **out, ct_err *err);
CT_RESULT gq_parse_schema_pm(rg_arena *a, const char *src, size_t n, gq_posmap *pm, rv **out, ct_err *err);

#endif
