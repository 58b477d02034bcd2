/*
 * Unit tests for rego_eval_decision: which definition of a complete rule decided its value
 * (what `coco initdata explain-policy` reports for the kata agent policy).
 */
#include "ct_test_util.h"
#include "rego.h"

static const char POLICY[] =
    "package agent_policy\n"                                                  /* 1 */
    "import rego.v1\n"                                                        /* 2 */
    "default ExecProcessRequest := false\n"                                   /* 3 */
    "default CreateContainerRequest := true\n"                                /* 4 */
    "ExecProcessRequest if {\n"                                               /* 5 */
    "  concat(\" \", input.process.Args) in policy_data.allowed_commands\n"  /* 6 */
    "}\n"                                                                     /* 7 */
    "ExecProcessRequest if input.process.Args[0] == \"true\"\n"             /* 8 */
    "level := \"a\" if input.x == 1\n"                                        /* 9 */
    "else := \"b\" if input.x == 2\n"                                         /* 10 */
    "policy_data := {\"allowed_commands\": [\"curl http://x/status\"]}\n"    /* 11 */
    "items contains 1\n";                                                     /* 12 */

static rego_policy *compile_policy(void) {
  ct_err err = {0};
  rego_module m = {"policy.rego", POLICY};
  rego_policy *p = NULL;
  CT_ASSERT_OK(rego_compile(&m, 1, NULL, &p, &err), &err);
  return p;
}

static void decide(const rego_policy *p, const char *ref, const char *input, json_t **value, rego_decision *why) {
  ct_err err = {0};
  json_error_t je;
  json_t *in = input ? json_loads(input, 0, &je) : NULL;
  CT_ASSERT_OK(rego_eval_decision(p, ref, in, NULL, value, why, &err), &err);
  json_decref(in);
}

static void test_default_decides(void **state) {
  (void)state;
  rego_policy *p = compile_policy();
  json_t *v = NULL;
  rego_decision why;
  decide(p, "data.agent_policy.ExecProcessRequest", "{\"process\":{\"Args\":[\"sh\"]}}", &v, &why);
  assert_true(json_is_false(v));
  assert_true(why.defined && why.by_default);
  assert_string_equal(why.file, "policy.rego");
  assert_int_equal(why.row, 3);
  assert_int_equal(why.definitions, 2);
  json_decref(v);
  decide(p, "data.agent_policy.CreateContainerRequest", NULL, &v, &why);
  assert_true(json_is_true(v) && why.by_default && why.row == 4 && why.definitions == 0);
  json_decref(v);
  rego_policy_free(p);
}

static void test_rule_body_decides(void **state) {
  (void)state;
  rego_policy *p = compile_policy();
  json_t *v = NULL;
  rego_decision why;
  decide(p, "data.agent_policy.ExecProcessRequest", "{\"process\":{\"Args\":[\"curl\",\"http://x/status\"]}}", &v, &why);
  assert_true(json_is_true(v) && why.defined && !why.by_default);
  assert_int_equal(why.row, 5);
  json_decref(v);
  decide(p, "data.agent_policy.ExecProcessRequest", "{\"process\":{\"Args\":[\"true\"]}}", &v, &why);
  assert_true(json_is_true(v) && !why.by_default);
  assert_int_equal(why.row, 8);
  json_decref(v);
  /* an else branch is reported at its own position */
  decide(p, "data.agent_policy.level", "{\"x\":2}", &v, &why);
  assert_string_equal(json_string_value(v), "b");
  assert_int_equal(why.row, 10);
  json_decref(v);
  decide(p, "data.agent_policy.level", "{\"x\":1}", &v, &why);
  assert_int_equal(why.row, 9);
  json_decref(v);
  rego_policy_free(p);
}

static void test_undefined_and_not_a_rule(void **state) {
  (void)state;
  rego_policy *p = compile_policy();
  json_t *v = NULL;
  rego_decision why;
  decide(p, "data.agent_policy.level", "{\"x\":3}", &v, &why);
  assert_null(v);
  assert_false(why.defined);
  assert_int_equal(why.definitions, 1); /* an else chain is one definition */
  ct_err err = {0};
  assert_int_equal(rego_eval_decision(p, "data.agent_policy.FooRequest", NULL, NULL, &v, &why, &err), CT_ENOTFOUND);
  assert_non_null(strstr(err.msg, "FooRequest"));
  /* partial sets and packages are not single-valued rules */
  assert_int_equal(rego_eval_decision(p, "data.agent_policy.items", NULL, NULL, &v, &why, &err), CT_ENOTFOUND);
  assert_int_equal(rego_eval_decision(p, "data.agent_policy", NULL, NULL, &v, &why, &err), CT_ENOTFOUND);
  assert_int_equal(rego_eval_decision(p, "input.x", NULL, NULL, &v, &why, &err), CT_ENOTFOUND);
  rego_policy_free(p);
}

/* A rule that calls the watched rule through another rule still reports the watched one. */
static void test_decision_through_dependency(void **state) {
  (void)state;
  ct_err err = {0};
  rego_module m = {"p.rego",
                   "package p\nimport rego.v1\ndefault allow := false\nallow if ok\nok if input.a\n"};
  rego_policy *p = NULL;
  CT_ASSERT_OK(rego_compile(&m, 1, NULL, &p, &err), &err);
  json_t *v = NULL;
  rego_decision why;
  decide(p, "data.p.allow", "{\"a\":true}", &v, &why);
  assert_true(json_is_true(v) && !why.by_default && why.row == 4);
  json_decref(v);
  rego_policy_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_default_decides),
      cmocka_unit_test(test_rule_body_decides),
      cmocka_unit_test(test_undefined_and_not_a_rule),
      cmocka_unit_test(test_decision_through_dependency),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
