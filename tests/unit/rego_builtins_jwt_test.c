/*
 * Unit tests for the Rego built-in families added beside the engine's core: uri.* and uuid.*
 * (src/rego/builtins_uri.c). Each expression is evaluated through the public API and its
 * JSON result compared with what OPA returns.
 */
#include "ct_test_util.h"
#include "rego.h"

/* Evaluates `x = <expr>` and returns the JSON text of x (or "undefined"); caller frees. */
static char *eval_expr(const char *expr, bool strict, char **errmsg) {
  ct_err err = {0};
  rego_policy *p = NULL;
  CT_ASSERT_OK(rego_compile(NULL, 0, NULL, &p, &err), &err);
  char q[4096];
  snprintf(q, sizeof(q), "x = %s", expr);
  rego_query_opts qo = {.strict_builtin_errors = strict};
  char *res = NULL;
  ct_status st = rego_query(p, q, &qo, &res, &err);
  rego_policy_free(p);
  if (st != CT_OK) {
    if (!errmsg) fail_msg("%s: %s", expr, err.msg);
    *errmsg = strdup(err.msg);
    return NULL;
  }
  json_t *j = json_loads(res, 0, NULL);
  free(res);
  assert_non_null(j);
  json_t *x = json_array_size(j) ? json_object_get(json_object_get(json_array_get(j, 0), "bindings"), "x") : NULL;
  char *out = x ? json_dumps(x, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : strdup("undefined");
  json_decref(j);
  return out;
}

static void expect(const char *expr, const char *want) {
  char *got = eval_expr(expr, false, NULL);
  if (strcmp(got, want)) fail_msg("%s: got %s, want %s", expr, got, want);
  free(got);
}

static void expect_err(const char *expr, const char *want) {
  char *msg = NULL;
  char *got = eval_expr(expr, true, &msg);
  if (got) fail_msg("%s: expected an error with '%s', got %s", expr, want, got);
  if (!strstr(msg, want)) fail_msg("%s: error '%s' lacks '%s'", expr, msg, want);
  free(msg);
}

static void test_uri_parse(void **state) {
  (void)state;
  expect("uri.parse(\"https://u:p@example.com:8443/a%2Fb/c?x=1&y#frag\")",
         "{\"fragment\":\"frag\",\"hostname\":\"example.com\",\"path\":\"/a/b/c\",\"port\":\"8443\","
         "\"raw_path\":\"/a%2Fb/c\",\"raw_query\":\"x=1&y\",\"scheme\":\"https\"}");
  /* an escape that the default encoding reproduces collapses raw_path to path */
  expect("uri.parse(\"http://h/a%20b\")", "{\"hostname\":\"h\",\"path\":\"/a b\",\"raw_path\":\"/a b\",\"scheme\":\"http\"}");
  expect("uri.parse(\"HTTP://[fe80::1%25eth0]:80/\")",
         "{\"hostname\":\"fe80::1%eth0\",\"path\":\"/\",\"port\":\"80\",\"raw_path\":\"/\",\"scheme\":\"http\"}");
  expect("uri.parse(\"urn:isbn:123\")", "{\"scheme\":\"urn\"}");
  expect("uri.parse(\"/rel/path?q\")", "{\"path\":\"/rel/path\",\"raw_path\":\"/rel/path\",\"raw_query\":\"q\"}");
  expect_err("uri.parse(\"http://exa%6dple.com/\")", "parse \"http://exa%6dple.com/\": invalid URL escape \"%6d\"");
  expect_err("uri.parse(\"http://h:8a/\")", "invalid port \":8a\" after host");
  expect_err("uri.parse(\"http://[::1/\")", "missing ']' in host");
  expect_err("uri.parse(\"1:x\")", "first path segment in URL cannot contain colon");
  expect_err("uri.parse(\"http://h/\\u0001\")", "invalid control character");
  expect_err("uri.parse(\"http://h/#%zz\")", "invalid URL escape \"%zz\"");
  expect("uri.is_valid(\"https://example.com\")", "true");
  expect("uri.is_valid(\"\")", "false");
  expect("uri.is_valid(\"http://a b@h/\")", "false");
  expect("uri.is_valid(\"http://h%41/\")", "false");
  expect("uri.is_valid(\"http://h%c3%a9/\")", "true");
}

static void test_uuid(void **state) {
  (void)state;
  expect("uuid.parse(\"f81d4fae-7dec-11d0-a765-00a0c91e6bf6\")",
         "{\"clocksequence\":10085,\"macvariables\":\"global:unicast\",\"nodeid\":\"00-a0-c9-1e-6b-f6\","
         "\"time\":854991792216875000,\"variant\":\"RFC4122\",\"version\":1}");
  expect("uuid.parse(\"00000000-0000-4000-c000-000000000000\")", "{\"variant\":\"Microsoft\",\"version\":4}");
  expect("uuid.parse(\"00000000-0000-4000-8000-00000000000\")", "undefined");
  expect("uuid.parse(\"00000000x0000-4000-8000-000000000000\")", "undefined");
  expect("uuid.parse(\"urn:uuid:00000000-0000-4000-8000-00000000000g\")", "undefined");
  /* the same key gives the same UUID within an evaluation, other keys differ */
  expect("uuid.rfc4122(\"a\") == uuid.rfc4122(\"a\")", "true");
  expect("uuid.rfc4122(\"a\") == uuid.rfc4122(\"b\")", "false");
  expect("uuid.parse(uuid.rfc4122(\"k\"))", "{\"variant\":\"RFC4122\",\"version\":4}");
  expect("regex.match(\"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$\", uuid.rfc4122(\"z\"))", "true");
  /* two evaluations give different UUIDs for the same key */
  char *u1 = eval_expr("uuid.rfc4122(\"same\")", false, NULL);
  char *u2 = eval_expr("uuid.rfc4122(\"same\")", false, NULL);
  assert_string_not_equal(u1, u2);
  free(u1);
  free(u2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_uri_parse),
      cmocka_unit_test(test_uuid),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
