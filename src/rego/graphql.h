/*
 * graphql.h - a GraphQL lexer, parser and validator for the Rego graphql.* built-ins.
 *
 * Documents are parsed straight into OPA's pruned JSON AST (the shape OPA produces by
 * serialising vektah/gqlparser's AST and dropping Position, nulls and empty collections), as
 * Rego values allocated in the caller's arena. Validation works on that same shape, so ASTs
 * handed back in by a policy (objects instead of strings) are validated the same way.
 * Internal to src/rego.
 */
#ifndef REGO_GRAPHQL_H
#define REGO_GRAPHQL_H

#include "rego_int.h"

/* Bounds on one document (OPA has none; these only stop hostile inputs). */
#define GQ_MAX_DOC_BYTES (4u << 20)
#define GQ_MAX_TOKENS 1000000
#define GQ_MAX_DEPTH 1000 /* gqlparser's own nesting limit */

/* Parse a query / schema document. On a syntax error, fails with CT_EINVAL and err->msg set
 * to OPA's message ("Expected Name, found } in GraphQL string at location 1:9"). Values live in
 * arena `a`. */
CT_RESULT gq_parse_query(rg_arena *a, const char *src, size_t n, rv **out, ct_err *err);
CT_RESULT gq_parse_schema(rg_arena *a, const char *src, size_t n, rv **out, ct_err *err);

typedef struct gq_schema gq_schema;
typedef struct gq_posmap gq_posmap; /* node positions of a parsed document (gq_int.h) */

/* Builds a schema from a (parsed or policy-supplied) schema AST merged with the built-in
 * prelude, applying gqlparser's schema validation. Fails with CT_EINVAL and a message when the
 * schema is invalid ("...: input:L:C: msg" with positions from `pm`, which may be NULL). */
CT_RESULT gq_schema_build(rg_arena *a, const rv *schema_ast, const gq_posmap *pm, gq_schema **out, ct_err *err);

/* Validates a query AST against a schema with gqlparser's default rules; fails with CT_EINVAL
 * and the first error ("... in GraphQL string at location L:C") when invalid. `pm` holds the
 * positions of a query parsed from text; NULL for a query given as an AST object. */
CT_RESULT gq_validate_query(rg_arena *a, const gq_schema *s, const rv *query_ast, const gq_posmap *pm, ct_err *err);

/* Round-trips an AST handed in as an object the way OPA does (through gqlparser's Go structs):
 * unknown keys dropped, zero values filled in, every selection a field, pruned. Fails with
 * CT_EINVAL when a key has the wrong JSON type. */
CT_RESULT gq_normalize(rg_arena *a, const rv *ast, bool schema, rv **out, ct_err *err);

#endif
