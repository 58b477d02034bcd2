/*
 * Unit tests for the GraphQL parser / validator behind the Rego graphql.* built-ins
 * (src/rego/graphql*.c): OPA's AST shape (pruning, comments, block strings), OPA's error
 * messages and locations, schema and query validation, bounds, and the built-ins end to end.
 */
#include <stdlib.h>
#include <string.h>

#include "ct_buf.h"
#include "ct_test_util.h"
#include "gq_int.h"
#include "graphql.h"
#include "rego.h"
#include "rego_int.h"

static char *to_json(const rv *v) {
  ct_buf b;
  ct_err e;
  ct_buf_init(&b, 1u << 24);
  if (rg_json_write(v, &b, false, 0, &e)) fail_msg("json write: %s", e.msg);
  return (char *)ct_buf_take(&b, NULL);
}

static void expect_query_ast(const char *src, const char *want) {
  rg_arena a = {0};
  ct_err err = {0};
  rv *doc = NULL;
  CT_ASSERT_OK(gq_parse_query(&a, src, strlen(src), &doc, &err), &err);
  char *got = to_json(doc);
  if (strcmp(got, want)) fail_msg("query %s:\n got  %s\n want %s", src, got, want);
  free(got);
  rg_arena_free(&a);
}

static void expect_schema_ast(const char *src, const char *want) {
  rg_arena a = {0};
  ct_err err = {0};
  rv *doc = NULL;
  CT_ASSERT_OK(gq_parse_schema(&a, src, strlen(src), &doc, &err), &err);
  char *got = to_json(doc);
  if (strcmp(got, want)) fail_msg("schema %s:\n got  %s\n want %s", src, got, want);
  free(got);
  rg_arena_free(&a);
}

static void expect_parse_error(bool schema, const char *src, const char *want) {
  rg_arena a = {0};
  ct_err err = {0};
  rv *doc = NULL;
  ct_status st = schema ? gq_parse_schema(&a, src, strlen(src), &doc, &err) : gq_parse_query(&a, src, strlen(src), &doc, &err);
  assert_int_not_equal(st, CT_OK);
  if (strcmp(err.msg, want)) fail_msg("%s: got error '%s', want '%s'", src, err.msg, want);
  rg_arena_free(&a);
}

static void test_query_ast(void **state) {
  (void)state;
  expect_query_ast("{hero {name}}",
                   "{\"Operations\":[{\"Description\":\"\",\"Name\":\"\",\"Operation\":\"query\",\"SelectionSet\":[{"
                   "\"Alias\":\"hero\",\"Name\":\"hero\",\"SelectionSet\":[{\"Alias\":\"name\",\"Name\":\"name\"}]}]}]}");
  /* variables, list / non-null types, default values, values of every kind */
  expect_query_ast(
      "query Q($a: [Int!]! = [1], $b: E = X) { f(x: $a, s: \"s\\u00e9\", o: {k: null, b: true, f: 1.5}) }",
      "{\"Operations\":[{\"Description\":\"\",\"Name\":\"Q\",\"Operation\":\"query\",\"SelectionSet\":[{\"Alias\":\"f\","
      "\"Arguments\":[{\"Name\":\"x\",\"Value\":{\"ExpectedTypeHasDefault\":false,\"Kind\":0,\"Raw\":\"a\"}},{\"Name\":"
      "\"s\",\"Value\":{\"ExpectedTypeHasDefault\":false,\"Kind\":3,\"Raw\":\"s\xc3\xa9\"}},{\"Name\":\"o\",\"Value\":{"
      "\"Children\":[{\"Name\":\"k\",\"Value\":{\"ExpectedTypeHasDefault\":false,\"Kind\":6,\"Raw\":\"null\"}},{\"Name\":"
      "\"b\",\"Value\":{\"ExpectedTypeHasDefault\":false,\"Kind\":5,\"Raw\":\"true\"}},{\"Name\":\"f\",\"Value\":{"
      "\"ExpectedTypeHasDefault\":false,\"Kind\":2,\"Raw\":\"1.5\"}}],\"ExpectedTypeHasDefault\":false,\"Kind\":9,"
      "\"Raw\":\"\"}}],\"Name\":\"f\"}],\"VariableDefinitions\":[{\"DefaultValue\":{\"Children\":[{\"Name\":\"\","
      "\"Value\":{\"ExpectedTypeHasDefault\":false,\"Kind\":1,\"Raw\":\"1\"}}],\"ExpectedTypeHasDefault\":false,"
      "\"Kind\":8,\"Raw\":\"\"},\"Description\":\"\",\"Type\":{\"Elem\":{\"NamedType\":\"Int\",\"NonNull\":true},"
      "\"NamedType\":\"\",\"NonNull\":true},\"Used\":false,\"Variable\":\"a\"},{\"DefaultValue\":{"
      "\"ExpectedTypeHasDefault\":false,\"Kind\":7,\"Raw\":\"X\"},\"Description\":\"\",\"Type\":{\"NamedType\":\"E\","
      "\"NonNull\":false},\"Used\":false,\"Variable\":\"b\"}]}]}");
  /* comments attach where gqlparser attaches them (checked against opa 1.22.3); an anonymous
   * operation's leading comment is dropped */
  expect_query_ast("# c0\nquery Q # c1\n{ # c5\n f # c6\n ... # c10\n on T { g } }",
                   "{\"Operations\":[{\"Comment\":{\"List\":[{\"Value\":\"# c0\"}]},\"Description\":\"\",\"Name\":\"Q\","
                   "\"Operation\":\"query\",\"SelectionSet\":[{\"Alias\":\"f\",\"Comment\":{\"List\":[{\"Value\":\"# c5\"}]},"
                   "\"Name\":\"f\"},{\"Comment\":{\"List\":[{\"Value\":\"# c6\"}]},\"SelectionSet\":[{\"Alias\":\"g\",\"Name\":"
                   "\"g\"}],\"TypeCondition\":\"T\"}]}]}");
  expect_query_ast("# lost\n{ a }", "{\"Operations\":[{\"Description\":\"\",\"Name\":\"\",\"Operation\":\"query\","
                                    "\"SelectionSet\":[{\"Alias\":\"a\",\"Name\":\"a\"}]}]}");
  /* fragments and spreads */
  expect_query_ast("{ ...F } fragment F on T @d { x }",
                   "{\"Fragments\":[{\"Description\":\"\",\"Directives\":[{\"Location\":\"\",\"Name\":\"d\"}],\"Name\":\"F\","
                   "\"SelectionSet\":[{\"Alias\":\"x\",\"Name\":\"x\"}],\"TypeCondition\":\"T\"}],\"Operations\":[{"
                   "\"Description\":\"\",\"Name\":\"\",\"Operation\":\"query\",\"SelectionSet\":[{\"Name\":\"F\"}]}]}");
  expect_query_ast("", "{}");
}

static void test_schema_ast(void **state) {
  (void)state;
  /* block string indentation, descriptions, comments, end-of-definition comments */
  expect_schema_ast("\"\"\"\n    Hello\n      world\n  \"\"\"\ntype Q { # c2\n a(x: Int = 1): [String!] # c3\n}\n# tail",
                    "{\"Comment\":{\"List\":[{\"Value\":\"# tail\"}]},\"Definitions\":[{\"BuiltIn\":false,\"Description\":"
                    "\"Hello\\n  world\",\"EndOfDefinitionComment\":{\"List\":[{\"Value\":\"# c3\"}]},\"Fields\":[{"
                    "\"AfterDescriptionComment\":{\"List\":[{\"Value\":\"# c2\"}]},\"Arguments\":[{\"DefaultValue\":{"
                    "\"ExpectedTypeHasDefault\":false,\"Kind\":1,\"Raw\":\"1\"},\"Description\":\"\",\"Name\":\"x\","
                    "\"Type\":{\"NamedType\":\"Int\",\"NonNull\":false}}],\"Description\":\"\",\"Name\":\"a\",\"Type\":{"
                    "\"Elem\":{\"NamedType\":\"String\",\"NonNull\":true},\"NamedType\":\"\",\"NonNull\":false}}],\"Kind\":"
                    "\"OBJECT\",\"Name\":\"Q\"}]}");
  expect_schema_ast("directive @d(a: Int) repeatable on | FIELD | QUERY\nunion U = | A | B\nextend schema @d",
                    "{\"Definitions\":[{\"BuiltIn\":false,\"Description\":\"\",\"Kind\":\"UNION\",\"Name\":\"U\","
                    "\"Types\":[\"A\",\"B\"]}],\"Directives\":[{\"Arguments\":[{\"Description\":\"\",\"Name\":\"a\","
                    "\"Type\":{\"NamedType\":\"Int\",\"NonNull\":false}}],\"Description\":\"\",\"IsRepeatable\":true,"
                    "\"Locations\":[\"FIELD\",\"QUERY\"],\"Name\":\"d\"}],\"SchemaExtension\":[{\"Description\":\"\","
                    "\"Directives\":[{\"Location\":\"\",\"Name\":\"d\"}]}]}");
}

static void test_parse_errors(void **state) {
  (void)state;
  /* messages and locations as OPA reports them */
  expect_parse_error(false, "{", "Expected Name, found <EOF> in GraphQL string at location 1:2");
  expect_parse_error(false, "{ a { } }", "expected at least one definition, found } in GraphQL string at location 1:7");
  expect_parse_error(false, "notanoperation Foo { field }", "Unexpected Name \"notanoperation\" in GraphQL string at location 1:1");
  expect_parse_error(false, "{ ...MissingOn }\nfragment MissingOn Type", "Expected \"on\", found Name \"Type\" in GraphQL string at location 2:20");
  expect_parse_error(false, "{__typename{...}}", "Expected {, found } in GraphQL string at location 1:16");
  expect_parse_error(false, "{ a(x: \"unterminated) }", "Unexpected <Invalid> in GraphQL string at location 1:24");
  expect_parse_error(true, "type Hello {}", "expected at least one definition, found } in GraphQL string at location 1:13");
  expect_parse_error(true, "union Hello = | | Wo", "Expected Name, found | in GraphQL string at location 1:17");
  expect_parse_error(true, "extend scalar X", "Unexpected <EOF> in GraphQL string at location 1:16");
  expect_parse_error(true, "\"desc\" extend type X { a: Int }", "Unexpected String \"desc\" in GraphQL string at location 1:2");
}

static void test_bounds(void **state) {
  (void)state;
  /* nesting beyond gqlparser's limit is an error, not a stack overflow */
  size_t depth = 5000;
  char *deep = malloc(depth * 2 + 8);
  assert_non_null(deep);
  size_t w = 0;
  for (size_t i = 0; i < depth; i++) deep[w++] = '{', deep[w++] = 'a';
  deep[w] = 0;
  rg_arena a = {0};
  ct_err err = {0};
  rv *doc;
  assert_int_not_equal(gq_parse_query(&a, deep, w, &doc, &err), CT_OK);
  assert_non_null(strstr(err.msg, "exceeded maximum nesting depth of 1000"));
  /* lists too */
  w = 0;
  memcpy(deep, "{a(x:", 5), w = 5;
  for (size_t i = 0; i < depth; i++) deep[w++] = '[';
  deep[w] = 0;
  assert_int_not_equal(gq_parse_query(&a, deep, w, &doc, &err), CT_OK);
  assert_non_null(strstr(err.msg, "exceeded maximum nesting depth"));
  free(deep);
  /* oversized documents are refused up front */
  size_t big = GQ_MAX_DOC_BYTES + 1;
  char *huge = malloc(big);
  assert_non_null(huge);
  memset(huge, ' ', big);
  assert_int_equal(gq_parse_schema(&a, huge, big, &doc, &err), CT_ELIMIT);
  free(huge);
  /* embedded NUL and invalid UTF-8 are ordinary lexer errors */
  assert_int_not_equal(gq_parse_query(&a, "{ a\0 }", 6, &doc, &err), CT_OK);
  assert_int_not_equal(gq_parse_query(&a, "{ \xff }", 5, &doc, &err), CT_OK);
  rg_arena_free(&a);
}

static CT_RESULT build(rg_arena *a, const char *schema, gq_schema **s, ct_err *err) {
  rv *doc;
  CT_GUARD(gq_parse_schema(a, schema, strlen(schema), &doc, err));
  return gq_schema_build(a, doc, NULL, s, err);
}

static void expect_schema_valid(const char *schema, bool want) {
  rg_arena a = {0};
  ct_err err = {0};
  gq_schema *s;
  ct_status st = build(&a, schema, &s, &err);
  if ((st == CT_OK) != want) fail_msg("schema %s: valid=%d (%s), want %d", schema, st == CT_OK, err.msg, want);
  rg_arena_free(&a);
}

static void test_schema_validation(void **state) {
  (void)state;
  expect_schema_valid("type Query { a: Int }", true);
  expect_schema_valid("extend type Query { a: Int }", true);
  expect_schema_valid("type Query { a: Nope }", false);                       /* undefined type */
  expect_schema_valid("type Query { a: Int a: String }", false);              /* duplicate field */
  expect_schema_valid("type Query { a: Int }\ntype Query { b: Int }", false); /* redeclared */
  expect_schema_valid("scalar String", false);                                /* clashes with the prelude */
  expect_schema_valid("interface I { a: Int }\ntype Query implements I { b: Int }", false);
  expect_schema_valid("interface I { a: Int }\ntype Query implements I { a: Int }", true);
  expect_schema_valid("union U = A\ntype A { a: Int }\ntype Query { u: U }", true);
  expect_schema_valid("union U = Int\ntype Query { u: U }", false);          /* union member not an object */
  expect_schema_valid("input In { a: In! }\ntype Query { f(i: In): Int }", false); /* non-null cycle */
  expect_schema_valid("input In { a: In }\ntype Query { f(i: In): Int }", true);
  expect_schema_valid("type Query { f(i: Query): Int }", false);              /* argument not an input type */
  expect_schema_valid("enum E { A A }", false);
  expect_schema_valid("enum E { true }", false);
  expect_schema_valid("type Query { a: Int @deprecated @deprecated }", false); /* not repeatable */
  expect_schema_valid("type Query { a: Int @skip(if: true) }", false);         /* wrong location */
  expect_schema_valid("type __Q { a: Int }", false);                           /* reserved name */
  expect_schema_valid("schema { query: Nope }", false);
  expect_schema_valid("scalar Query", false); /* root must be an object */
}

static void expect_schema_error(const char *schema, const char *want) {
  rg_arena a = {0};
  ct_err err = {0};
  gq_schema *s;
  rv *doc;
  gq_posmap pm = {.a = &a};
  CT_ASSERT_OK(gq_parse_schema_pm(&a, schema, strlen(schema), &pm, &doc, &err), &err);
  assert_int_not_equal(gq_schema_build(&a, doc, &pm, &s, &err), CT_OK);
  if (strcmp(err.msg, want)) fail_msg("schema %s: got '%s', want '%s'", schema, err.msg, want);
  rg_arena_free(&a);
}

static void test_schema_errors(void **state) {
  (void)state;
  /* messages and positions as OPA reports them */
  const char *pre = "Error in gqlparser SchemaDocument to Schema conversion: input:";
  char want[512];
  snprintf(want, sizeof(want), "%s1:17: Undefined type Nope.", pre);
  expect_schema_error("type Query { a: Nope }", want);
  snprintf(want, sizeof(want), "%s1:53: For Query to implement I the field a must have type String.", pre);
  expect_schema_error("interface I { a: String } type Query implements I { a: Int }", want);
  snprintf(want, sizeof(want),
           "%s1:37: Cannot reference Input Object \"B\" within itself through a series of non-null fields: \"d.a\".", pre);
  expect_schema_error("input In { a: B! } input B { c: Int d: In! } type Query { a(i: In): Int }", want);
  snprintf(want, sizeof(want), "%s1:15: Union type U can only include type A once.", pre);
  expect_schema_error("union U = A | A type A { a: Int } type Query { u: U }", want);
  snprintf(want, sizeof(want), "%s1:8: Cannot redeclare type String.", pre);
  expect_schema_error("scalar String", want);
}

static void expect_query(const char *schema, const char *query, const char *want_err) {
  rg_arena a = {0};
  ct_err err = {0};
  gq_schema *s;
  rv *doc;
  gq_posmap pm = {.a = &a};
  CT_ASSERT_OK(build(&a, schema, &s, &err), &err);
  CT_ASSERT_OK(gq_parse_query_pm(&a, query, strlen(query), &pm, &doc, &err), &err);
  ct_status st = gq_validate_query(&a, s, doc, &pm, &err);
  if (!want_err) {
    if (st) fail_msg("query %s: unexpected error %s", query, err.msg);
  } else if (st == CT_OK || strcmp(err.msg, want_err)) {
    fail_msg("query %s: got %s '%s', want '%s'", query, st ? "error" : "ok", st ? err.msg : "", want_err);
  }
  rg_arena_free(&a);
}

static void test_query_validation(void **state) {
  (void)state;
  const char *sch = "type Query { hero(ep: Ep!): Hero, n(x: Int): Int, s: String }\n"
                    "enum Ep { A B }\n"
                    "interface Hero { name: String }\n"
                    "type Droid implements Hero { name: String, fn: String }\n"
                    "type Human implements Hero { name: String, height: Int }\n"
                    "input In { a: Int! }\n"
                    "type Mutation { m(i: In): Int }";
  expect_query(sch, "{ hero(ep: A) { name ... on Droid { fn } } }", NULL);
  expect_query(sch, "query Q($e: Ep! = B) { hero(ep: $e) { __typename name } }", NULL);
  expect_query(sch, "{ __schema { types { name } } }", NULL);
  expect_query(sch, "query {\n  hero { name }\n}",
               "Field \"hero\" argument \"ep\" of type \"Ep!\" is required, but it was not provided in GraphQL string at location 2:3");
  expect_query(sch, "{ nope }", "Cannot query field \"nope\" on type \"Query\" in GraphQL string at location 1:3");
  expect_query(sch, "{ n(x: \"a\") }", "Int cannot represent non-integer value: \"a\"\n in GraphQL string at location 1:9");
  expect_query(sch, "{ s(y: 1) }", "Unknown argument \"y\" on field \"Query.s\" in GraphQL string at location 1:3");
  expect_query(sch, "{ s { a } }",
               "Cannot query field \"a\" on type \"String\".\ninput:1:3: Field \"s\" must not have a selection since type "
               "\"String\" has no subfields in GraphQL string at location 1:7");
  expect_query(sch, "query Q($v: Int) { s }", "Variable \"$v\" is never used in operation \"Q\" in GraphQL string at location 1:9");
  expect_query(sch, "{ n(x: $v) }", "Variable \"$v\" is not defined in GraphQL string at location 1:8");
  expect_query(sch, "mutation { m(i: {}) }",
               "Field \"In.a\" of required type \"Int!\" was not provided in GraphQL string at location 1:17");
  expect_query(sch, "{ s } fragment F on Query { s }", "Fragment \"F\" is never used in GraphQL string at location 1:7");
  expect_query(sch, "{ ...F } fragment F on Query { ...G } fragment G on Query { ...F }",
               "Cannot spread fragment \"F\" within itself via \"G\" in GraphQL string at location 1:64");
  expect_query(sch, "{ hero(ep: A) { ... on Query { s } } }",
               "Fragment cannot be spread here as objects of type \"Hero\" can never be of type \"Query\" in GraphQL string at location 1:21");
  expect_query(sch, "subscription { s }", "Schema does not support operation type \"subscription\"\n in GraphQL string at location 1:1");
  expect_query(sch, "{ s @skip(if: true) @skip(if: false) }",
               "The directive \"@skip\" can only be used once at this location in GraphQL string at location 1:22");
  /* OverlappingFieldsCanBeMerged (messages checked against opa 1.22.3) */
  const char *pets = "type Query { dog: Dog, pet: Pet }\ninterface Pet { name: String }\n"
                     "type Dog implements Pet { name: String, nick: String, age: Int }\n"
                     "type Cat implements Pet { name: String, meow: String, age: String }";
  expect_query(pets, "{ dog { name } dog { nick: name } }", NULL);
  expect_query(pets, "{ pet { ... on Dog { x: name } ... on Cat { x: meow } } }", NULL);
  expect_query(pets, "{ dog { name: nick } dog { name } }",
               "Fields \"dog\" conflict because subfields \"name\" conflict because \"nick\" and \"name\" are different "
               "fields. Use different aliases on the fields to fetch both if this was intentional in GraphQL string at location 1:22");
  expect_query(pets, "{ pet { ... on Dog { age } ... on Cat { age } } }",
               "Fields \"age\" conflict because they return conflicting types \"Int\" and \"String\". Use different aliases on "
               "the fields to fetch both if this was intentional in GraphQL string at location 1:41");
  expect_query(pets, "{ dog { ...A ...B } } fragment A on Dog { x: name } fragment B on Dog { x: nick }",
               "Fields \"x\" conflict because \"name\" and \"nick\" are different fields. Use different aliases on the fields "
               "to fetch both if this was intentional in GraphQL string at location 1:73");
  expect_query(sch, "{ n(x: 1) n(x: 2) }",
               "Fields \"n\" conflict because they have differing arguments. Use different aliases on the fields to fetch both "
               "if this was intentional in GraphQL string at location 1:11");
  /* "did you mean" hints and the introspection depth limit (checked against opa 1.22.3) */
  expect_query(pets, "{ pet { nme } }",
               "Cannot query field \"nme\" on type \"Pet\". Did you mean \"name\"?\n in GraphQL string at location 1:9");
  expect_query(pets, "{ pet { nick } }",
               "Cannot query field \"nick\" on type \"Pet\". Did you mean to use an inline fragment on \"Dog\"?\n in GraphQL "
               "string at location 1:9");
  expect_query(sch, "{ hero(ep: C) { name } }",
               "Value \"C\" does not exist in \"Ep!\" enum. Did you mean the enum value \"A\" or \"B\"?\n in GraphQL string at "
               "location 1:12");
  expect_query(sch, "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }",
               "Maximum introspection depth exceeded\n in GraphQL string at location 1:3");
  /* two errors: OPA keeps the first location and everything after it */
  expect_query("type Query { longfieldname: Int }", "{ a b }",
               "Cannot query field \"a\" on type \"Query\".\ninput:1:5: Cannot query field \"b\" on type \"Query\" in GraphQL string at location 1:3");
}

/* The built-ins through the engine, including an AST handed back in as an object. */
static void test_builtins(void **state) {
  (void)state;
  const char *src =
      "package g\n"
      "schema := `type Query { a(x: Int!): Int }`\n"
      "ok := graphql.is_valid(`{ a(x: 1) }`, schema)\n"
      "bad := graphql.is_valid(`{ a }`, schema)\n"
      "ast_ok := graphql.is_valid(graphql.parse_query(`{ a(x: 1) }`), graphql.parse_schema(schema))\n"
      "sv := graphql.schema_is_valid(`type Query { a: Nope }`)\n"
      "pv := graphql.parse_and_verify(`{ a }`, schema)\n"
      "p := graphql.parse(`{ a(x: 2) }`, schema)[0].Operations[0].SelectionSet[0].Arguments[0].Value.Raw\n"
      /* AST objects round-trip like OPA's Go structs: zero values filled in, unknown keys dropped */
      "rt := graphql.parse_and_verify({\"Operations\": [{\"Operation\": \"query\", \"SelectionSet\": [{\"Alias\": \"a\", "
      "\"Name\": \"a\", \"Extra\": 1, \"Arguments\": [{\"Name\": \"x\", \"Value\": {\"Kind\": 1, \"Raw\": \"3\"}}]}]}]}, schema)[1]\n"
      /* an inline fragment handed in as an object decodes as a field named "" (gqlparser) */
      "inl := graphql.is_valid(graphql.parse_query(`{ ... on Query { a(x: 1) } }`), schema)\n"
      "shape := graphql.schema_is_valid({\"Definitions\": \"x\"})\n";
  rego_module m = {"g.rego", src};
  rego_policy *p = NULL;
  ct_err err = {0};
  CT_ASSERT_OK(rego_compile(&m, 1, NULL, &p, &err), &err);
  json_t *res = NULL;
  CT_ASSERT_OK(rego_eval(p, "data.g", NULL, NULL, &res, &err), &err);
  json_t *want = json_loads("{\"ok\":true,\"bad\":false,\"ast_ok\":true,\"sv\":false,\"pv\":[false,{},{}],\"p\":\"2\","
                        "\"inl\":false,\"shape\":false,\"rt\":{\"Operations\":[{\"Description\":\"\",\"Name\":\"\","
                        "\"Operation\":\"query\",\"SelectionSet\":[{\"Alias\":\"a\",\"Arguments\":[{\"Name\":\"x\","
                        "\"Value\":{\"ExpectedTypeHasDefault\":false,\"Kind\":1,\"Raw\":\"3\"}}],\"Name\":\"a\"}]}]}}", 0, NULL);
  json_object_del(res, "schema");
  if (!json_equal(res, want)) {
    char *g = json_dumps(res, JSON_SORT_KEYS);
    fail_msg("got %s", g);
    free(g);
  }
  json_decref(want);
  json_decref(res);
  /* graphql.parse reports validation errors */
  rego_query_opts qo = {.strict_builtin_errors = true};
  char *out = NULL;
  assert_int_not_equal(rego_query(p, "graphql.parse(`{ a }`, data.g.schema)", &qo, &out, &err), CT_OK);
  free(out);
  if (!strstr(err.msg, "graphql.parse: Field \"a\" argument \"x\" of type \"Int!\" is required, but it was not "
                       "provided in GraphQL string at location 1:3"))
    fail_msg("got %s", err.msg);
  rego_policy_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_query_ast),      cmocka_unit_test(test_schema_ast),
      cmocka_unit_test(test_parse_errors),   cmocka_unit_test(test_bounds),
      cmocka_unit_test(test_schema_validation), cmocka_unit_test(test_query_validation),
      cmocka_unit_test(test_schema_errors),  cmocka_unit_test(test_builtins),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
