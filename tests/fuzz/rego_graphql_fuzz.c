/*
 * libFuzzer target for the GraphQL lexer / parser / validator behind the Rego graphql.*
 * built-ins. Input: "<query>\n----\n<schema>" (the schema part optional). Both documents are
 * parsed; when both parse, the schema is built and the query validated, and the parsed ASTs are
 * also fed back in as AST objects (the path policies use). An input that is a JSON object is
 * taken as a query and a schema AST object. Everything must end in a result or a clean error,
 * and normalising an AST object twice must give the same value as once.
 */
#include <stdint.h>
#include <string.h>

#include "gq_int.h"
#include "graphql.h"

/* AST-object path: normalisation is idempotent; the result builds / validates without crashing. */
static int object_path(rg_arena *a, const rv *obj) {
  ct_err err = {0};
  rv *q1, *q2, *s1, *s2;
  gq_schema *sch;
  int invalid = 0;
  if (gq_normalize(a, obj, false, &q1, &err) == CT_OK) {
    if (gq_normalize(a, q1, false, &q2, &err) != CT_OK || !rv_eq(q1, q2)) __builtin_trap();
  } else {
    q1 = NULL;
  }
  if (gq_normalize(a, obj, true, &s1, &err) == CT_OK) {
    if (gq_normalize(a, s1, true, &s2, &err) != CT_OK || !rv_eq(s1, s2)) __builtin_trap();
    if (gq_schema_build(a, s1, NULL, &sch, &err) == CT_OK && q1) invalid += gq_validate_query(a, sch, q1, NULL, &err) != CT_OK;
  }
  return invalid;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 1 << 16) return 0;
  if (size && data[0] == '{') {
    rg_arena ja = {0};
    ja.limit = 256u << 20;
    ct_err jerr = {0};
    rv *obj;
    int r = 0;
    if (rg_json_parse(&ja, (const char *)data, size, 64, &obj, &jerr) == CT_OK && obj->t == RV_OBJ) r = object_path(&ja, obj);
    rg_arena_free(&ja);
    if (r < 0) return 0;
  }
  const char *s = (const char *)data;
  size_t qn = size;
  const char *schema = NULL;
  size_t sn = 0;
  for (size_t i = 0; i + 6 <= size; i++)
    if (!memcmp(s + i, "\n----\n", 6)) {
      qn = i;
      schema = s + i + 6;
      sn = size - i - 6;
      break;
    }
  rg_arena a = {0};
  a.limit = 256u << 20;
  ct_err err = {0};
  gq_posmap pm = {.a = &a};
  rv *q = NULL, *sd = NULL;
  gq_schema *sch = NULL;
  bool qok = gq_parse_query_pm(&a, s, qn, &pm, &q, &err) == CT_OK;
  /* the query text is also tried as a schema document */
  rv *tmp;
  int invalid = 0;
  if (gq_parse_schema(&a, s, qn, &tmp, &err) == CT_OK && gq_schema_build(&a, tmp, NULL, &sch, &err) == CT_OK && qok)
    invalid += gq_validate_query(&a, sch, q, &pm, &err) != CT_OK;
  if (qok) invalid += object_path(&a, q);
  if (schema && gq_parse_schema(&a, schema, sn, &sd, &err) == CT_OK && gq_schema_build(&a, sd, NULL, &sch, &err) == CT_OK &&
      qok) {
    invalid += object_path(&a, sd);
    invalid += gq_validate_query(&a, sch, q, &pm, &err) != CT_OK;
    invalid += gq_validate_query(&a, sch, q, NULL, &err) != CT_OK;
  }
  rg_arena_free(&a);
  return invalid < 0; /* always 0; keeps the results used */
}
