/*
 * Unit tests for the Rego engine (src/rego): Trustee-style attestation and resource policies
 * (written here, equivalent in logic to the upstream ones), host functions, errors, limits and
 * concurrent evaluation.
 */
#include <pthread.h>

#include "ct_test_util.h"
#include "rego.h"

/* ---------------------------------------------------------------- helpers */
static rego_policy *compile1(const char *src, const rego_options *opts) {
  ct_err err = {0};
  rego_module m = {"test.rego", src};
  rego_policy *p = NULL;
  CT_ASSERT_OK(rego_compile(&m, 1, opts, &p, &err), &err);
  return p;
}

static json_t *js(const char *txt) {
  json_error_t je;
  json_t *j = json_loads(txt, JSON_DECODE_ANY, &je);
  if (!j) fail_msg("bad test JSON: %s", je.text);
  return j;
}

/* Evaluates and compares the canonical JSON of the result ("undefined" for NULL). */
static void expect_eval(const rego_policy *p, const char *query, const char *input, const char *data,
                        const char *want) {
  ct_err err = {0};
  json_t *in = input ? js(input) : NULL, *d = data ? js(data) : NULL, *res = NULL;
  CT_ASSERT_OK(rego_eval(p, query, in, d, &res, &err), &err);
  char *got = res ? json_dumps(res, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : strdup("undefined");
  if (strcmp(got, want)) fail_msg("%s: got %s, want %s", query, got, want);
  free(got);
  json_decref(res);
  json_decref(in);
  json_decref(d);
}

static void expect_error(const rego_policy *p, const char *query, const char *input, const char *prefix) {
  ct_err err = {0};
  json_t *in = input ? js(input) : NULL, *res = NULL;
  ct_status st = rego_eval(p, query, in, NULL, &res, &err);
  if (st == CT_OK) fail_msg("%s: expected an error starting with %s", query, prefix);
  if (strncmp(err.msg, prefix, strlen(prefix))) fail_msg("error %s does not start with %s", err.msg, prefix);
  assert_null(res);
  json_decref(in);
}

/* A reference-value store for query_reference_value. */
static CT_RESULT rvps_lookup(void *ctx, json_t *const *args, size_t nargs, json_t **result, ct_err *err) {
  json_t *store = ctx;
  CT_ENSURE(nargs == 1 && json_is_string(args[0]), err, CT_EINVAL, "query_reference_value: want one string");
  json_t *v = json_object_get(store, json_string_value(args[0]));
  *result = v ? json_incref(v) : NULL;
  return CT_OK;
}

static CT_RESULT failing_host(void *ctx, json_t *const *args, size_t nargs, json_t **result, ct_err *err) {
  (void)ctx; (void)args; (void)nargs; (void)result;
  return ct_fail(err, CT_EIO, "backend unavailable");
}

/* Returns a fresh value each call (the engine must copy it before the reference is dropped). */
static CT_RESULT greet_host(void *ctx, json_t *const *args, size_t nargs, json_t **result, ct_err *err) {
  (void)ctx;
  CT_ENSURE(nargs == 1 && json_is_string(args[0]), err, CT_EINVAL, "greet: want one string");
  char buf[128];
  snprintf(buf, sizeof(buf), "hello %s", json_string_value(args[0]));
  *result = json_pack("{s:s,s:[s,i]}", "text", buf, "parts", buf, 7);
  return CT_OK;
}

static void test_host_fresh_values(void **state) {
  (void)state;
  rego_host_function hf = {"ext.greet", 1, greet_host, NULL};
  rego_options o = {.host_functions = &hf, .n_host_functions = 1};
  rego_policy *p = compile1("package x\nimport rego.v1\n"
                            "p := concat(\"|\", [ext.greet(\"a\").text, ext.greet(\"b\").parts[0], upper(ext.greet(\"c\").text)])\n",
                            &o);
  expect_eval(p, "data.x.p", NULL, NULL, "\"hello a|hello b|HELLO C\"");
  rego_policy_free(p);
}

/* Equivalent in logic to Trustee's ear_default_policy_cpu.rego (sample, SNP and TDX parts). */
static const char CPU_POLICY[] =
    "package policy\n"
    "\n"
    "import rego.v1\n"
    "\n"
    "default executables := 33\n"
    "default hardware := 97\n"
    "default configuration := 36\n"
    "default file_system := 0\n"
    "\n"
    "trust_claims := {\n"
    "\t\"executables\": executables,\n"
    "\t\"hardware\": hardware,\n"
    "\t\"configuration\": configuration,\n"
    "\t\"file-system\": file_system,\n"
    "}\n"
    "\n"
    "executables := 3 if {\n"
    "\tinput.sample\n"
    "\tinput.sample.launch_digest in query_reference_value(\"launch_digest\")\n"
    "}\n"
    "\n"
    "hardware := 2 if {\n"
    "\tinput.sample\n"
    "\tinput.sample.svn in query_reference_value(\"svn\")\n"
    "\tinput.sample.platform_version.major == query_reference_value(\"major_version\")\n"
    "\tinput.sample.platform_version.minor >= query_reference_value(\"minimum_minor_version\")\n"
    "}\n"
    "\n"
    "configuration := 2 if {\n"
    "\tinput.sample\n"
    "\tinput.sample.debug == false\n"
    "}\n"
    "\n"
    "configuration := 2 if {\n"
    "\tinput.snp\n"
    "\tinput.snp.evidence.policy.debug_allowed == false\n"
    "\tinput.snp.evidence.plat_info.smt_enabled == query_reference_value(\"snp_smt_enabled\")\n"
    "}\n"
    "\n"
    "# a comment between the rule and its else branch\n"
    "else := 3 if {\n"
    "\tinput.snp\n"
    "\tinput.snp.evidence.policy.debug_allowed == false\n"
    "}\n"
    "\n"
    "executables := 3 if {\n"
    "\tinput.tdx\n"
    "\tinput.tdx.quote.body.rtmr_1 in query_reference_value(\"rtmr_1\")\n"
    "\ttdx_kernel_ok\n"
    "}\n"
    "\n"
    "else := 4 if {\n"
    "\tinput.tdx\n"
    "\tinput.tdx.quote.body.rtmr_1 in query_reference_value(\"rtmr_1\")\n"
    "}\n"
    "\n"
    "hardware := 2 if {\n"
    "\tinput[\"az-tdx-vtpm\"]\n"
    "\tinput[\"az-tdx-vtpm\"].quote.header.tee_type == \"81000000\"\n"
    "}\n"
    "\n"
    "tdx_kernel_ok if {\n"
    "\tevent := input.tdx.uefi_event_logs[_]\n"
    "\tevent.type_name == \"EV_EFI_BOOT_SERVICES_APPLICATION\"\n"
    "\t\"File(kernel)\" in event.details.device_paths\n"
    "\tdigest := event.digests[_]\n"
    "\tdigest.digest == query_reference_value(\"tdvfkernel\")\n"
    "}\n"
    "\n"
    "extensions := [{\"name\": \"ear.trustee.identifiers\", \"key\": -18,\n"
    "\t\"value\": {\"validated\": validated_identifiers}}]\n"
    "\n"
    "validated_identifiers := object.union_n([container_images_id, container_uids_id])\n"
    "\n"
    "container_images := [img |\n"
    "    container := input[\"init_data_claims\"][\"agent_policy_claims\"][\"containers\"][_]\n"
    "    img := container[\"OCI\"][\"Annotations\"][\"io.kubernetes.cri.image-name\"]\n"
    "]\n"
    "\n"
    "container_images_id := {\"container_images\": container_images} if {\n"
    "    count(container_images) > 0\n"
    "} else := {}\n"
    "\n"
    "container_uids := [uid |\n"
    "    container := input[\"init_data_claims\"][\"agent_policy_claims\"][\"containers\"][_]\n"
    "    uid := container[\"OCI\"][\"Process\"][\"User\"][\"UID\"]\n"
    "]\n"
    "\n"
    "container_uids_id := {\"container_uids\": container_uids} if {\n"
    "    count(container_uids) > 0\n"
    "} else := {}\n";

static const char RV_STORE[] =
    "{\"launch_digest\": [\"abcde\"], \"svn\": [\"1\"], \"major_version\": 1, \"minimum_minor_version\": 1,"
    " \"snp_smt_enabled\": true, \"rtmr_1\": [\"r1\"], \"tdvfkernel\": \"kd\"}";

static rego_policy *cpu_policy(json_t *store) {
  static rego_host_function hf;
  hf = (rego_host_function){"query_reference_value", 1, rvps_lookup, store};
  rego_options o = {.host_functions = &hf, .n_host_functions = 1};
  return compile1(CPU_POLICY, &o);
}

/* ---------------------------------------------------------------- tests */
static void test_cpu_policy_sample(void **state) {
  (void)state;
  json_t *store = js(RV_STORE);
  rego_policy *p = cpu_policy(store);
  const char *good =
      "{\"sample\": {\"svn\": \"1\", \"launch_digest\": \"abcde\", \"debug\": false,"
      " \"platform_version\": {\"major\": 1, \"minor\": 2}}}";
  expect_eval(p, "data.policy.trust_claims", good, NULL,
              "{\"configuration\":2,\"executables\":3,\"file-system\":0,\"hardware\":2}");
  const char *bad =
      "{\"sample\": {\"svn\": \"2\", \"launch_digest\": \"zzz\", \"debug\": true,"
      " \"platform_version\": {\"major\": 1, \"minor\": 0}}}";
  expect_eval(p, "data.policy.trust_claims", bad, NULL,
              "{\"configuration\":36,\"executables\":33,\"file-system\":0,\"hardware\":97}");
  expect_eval(p, "data.policy.trust_claims", "{}", NULL,
              "{\"configuration\":36,\"executables\":33,\"file-system\":0,\"hardware\":97}");
  expect_eval(p, "data.policy.trust_claims", NULL, NULL,
              "{\"configuration\":36,\"executables\":33,\"file-system\":0,\"hardware\":97}");
  rego_policy_free(p);
  json_decref(store);
}

static void test_cpu_policy_else_and_tdx(void **state) {
  (void)state;
  json_t *store = js(RV_STORE);
  rego_policy *p = cpu_policy(store);
  /* SNP: first branch fails (smt mismatch), else branch gives 3 */
  expect_eval(p, "data.policy.configuration",
              "{\"snp\": {\"evidence\": {\"policy\": {\"debug_allowed\": false}, \"plat_info\": {\"smt_enabled\": false}}}}",
              NULL, "3");
  expect_eval(p, "data.policy.configuration",
              "{\"snp\": {\"evidence\": {\"policy\": {\"debug_allowed\": false}, \"plat_info\": {\"smt_enabled\": true}}}}",
              NULL, "2");
  const char *tdx_full =
      "{\"tdx\": {\"quote\": {\"body\": {\"rtmr_1\": \"r1\"}}, \"uefi_event_logs\": ["
      "{\"type_name\": \"EV_OTHER\", \"details\": {}, \"digests\": []},"
      "{\"type_name\": \"EV_EFI_BOOT_SERVICES_APPLICATION\", \"details\": {\"device_paths\": [\"File(kernel)\"]},"
      " \"digests\": [{\"digest\": \"nope\"}, {\"digest\": \"kd\"}]}]}}";
  expect_eval(p, "data.policy.executables", tdx_full, NULL, "3");
  const char *tdx_grub = "{\"tdx\": {\"quote\": {\"body\": {\"rtmr_1\": \"r1\"}}, \"uefi_event_logs\": []}}";
  expect_eval(p, "data.policy.executables", tdx_grub, NULL, "4");
  expect_eval(p, "data.policy.hardware", "{\"az-tdx-vtpm\": {\"quote\": {\"header\": {\"tee_type\": \"81000000\"}}}}",
              NULL, "2");
  rego_policy_free(p);
  json_decref(store);
}

static void test_cpu_policy_extensions(void **state) {
  (void)state;
  json_t *store = js(RV_STORE);
  rego_policy *p = cpu_policy(store);
  const char *in =
      "{\"init_data_claims\": {\"agent_policy_claims\": {\"containers\": ["
      "{\"OCI\": {\"Annotations\": {\"io.kubernetes.cri.image-name\": \"pause\"}, \"Process\": {\"User\": {\"UID\": 65535}}}},"
      "{\"OCI\": {\"Annotations\": {\"io.kubernetes.cri.image-name\": \"nginx\"}, \"Process\": {\"User\": {\"UID\": 0}}}}]}}}";
  expect_eval(p, "data.policy.extensions", in, NULL,
              "[{\"key\":-18,\"name\":\"ear.trustee.identifiers\",\"value\":{\"validated\":"
              "{\"container_images\":[\"pause\",\"nginx\"],\"container_uids\":[65535,0]}}}]");
  expect_eval(p, "data.policy.validated_identifiers", "{}", NULL, "{}");
  rego_policy_free(p);
  json_decref(store);
}

/* rego_eval_queries gives what rego_eval gives query by query: the same values (undefined
 * included), the same first error (and then no results), the same limits. */
static void expect_same_as_one_by_one(const rego_policy *p, const char *const *queries, size_t n, const char *input,
                                      const char *data) {
  json_t *in = input ? js(input) : NULL, *d = data ? js(data) : NULL;
  json_t *batch[8] = {0};
  ct_err e1 = {0}, e2 = {0};
  ct_status want = CT_OK;
  char *texts[8] = {0};
  for (size_t i = 0; i < n && want == CT_OK; i++) {
    json_t *r = NULL;
    want = rego_eval(p, queries[i], in, d, &r, &e1);
    texts[i] = r ? json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : strdup("undefined");
    json_decref(r);
  }
  ct_status got = rego_eval_queries(p, queries, n, in, d, batch, &e2);
  assert_int_equal(got, want);
  for (size_t i = 0; i < n; i++) {
    if (want != CT_OK) {
      assert_null(batch[i]);
      continue;
    }
    char *t = batch[i] ? json_dumps(batch[i], JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : strdup("undefined");
    assert_string_equal(t, texts[i]);
    free(t);
  }
  if (want != CT_OK) assert_string_equal(e2.msg, e1.msg);
  for (size_t i = 0; i < n; i++) {
    free(texts[i]);
    json_decref(batch[i]);
  }
  json_decref(in);
  json_decref(d);
}

static void test_eval_queries(void **state) {
  (void)state;
  json_t *store = js(RV_STORE);
  rego_policy *p = cpu_policy(store);
  const char *q[] = {"data.policy.trust_claims", "data.policy.extensions", "data.policy.configuration",
                     "data.policy.nope"};
  const char *inputs[] = {
      "{\"sample\": {\"svn\": \"1\", \"launch_digest\": \"abcde\", \"debug\": false,"
      " \"platform_version\": {\"major\": 1, \"minor\": 2}}}",
      "{}", NULL,
      "{\"init_data_claims\": {\"agent_policy_claims\": {\"containers\": ["
      "{\"OCI\": {\"Annotations\": {\"io.kubernetes.cri.image-name\": \"pause\"}, \"Process\": {\"User\": {\"UID\": 1}}}}]}}}"};
  for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
    expect_same_as_one_by_one(p, q, 4, inputs[i], "{}");
    expect_same_as_one_by_one(p, q, 4, inputs[i], NULL);
  }
  rego_policy_free(p);
  json_decref(store);

  /* `with input as`, a runtime error in the second query, a query that does not compile. */
  p = compile1("package policy\nimport rego.v1\n"
               "a := input.x\n"
               "b := v if {\n  v := c with input as {\"x\": 5}\n}\n"
               "c := input.x + 1\n"
               "boom := 1 / input.zero\n"
               "d := data.extra.v\n", NULL);
  const char *ok[] = {"data.policy.a", "data.policy.b", "data.policy.c", "data.policy.d", "data.policy.a"};
  expect_same_as_one_by_one(p, ok, 5, "{\"x\": 1, \"zero\": 0}", "{\"extra\": {\"v\": [1, 2]}}");
  const char *second_fails[] = {"data.policy.a", "data.policy.boom", "data.policy.c"};
  expect_same_as_one_by_one(p, second_fails, 3, "{\"x\": 1, \"zero\": 0}", NULL);
  const char *bad_query[] = {"data.policy.a", "1 + 1"};
  expect_same_as_one_by_one(p, bad_query, 2, "{\"x\": 1}", NULL);
  rego_policy_free(p);

  /* The memory limit counts the converted input in every evaluation, as rego_eval does. */
  rego_options lim = {.limits = {.max_memory_bytes = 1u << 20}};
  p = compile1("package policy\nimport rego.v1\nn := count(input.big)\nm := [x | some x in input.big]\n", &lim);
  json_t *big = json_array();
  for (int i = 0; i < 20000; i++) json_array_append_new(big, json_integer(i));
  json_t *in = json_pack("{s:o}", "big", big);
  char *text = json_dumps(in, JSON_COMPACT);
  const char *nm[] = {"data.policy.n", "data.policy.m"};
  expect_same_as_one_by_one(p, nm, 2, text, NULL); /* fails: 20,000 values over 1 MiB */
  free(text);
  json_decref(in);
  expect_same_as_one_by_one(p, nm, 2, "{\"big\": [1, 2, 3]}", NULL);
  rego_policy_free(p);
}

/* Only a policy or query that refers to `input` has it converted: an input-free policy answers
 * whatever the input (even one too deep to convert), and a query, an import or a `with` that
 * names input still sees it. */
static void test_input_converted_only_when_read(void **state) {
  (void)state;
  rego_policy *p = compile1("package policy\nimport rego.v1\ndefault allow := true\n", NULL);
  json_t *deep = json_integer(1);
  for (int i = 0; i < 600; i++) deep = json_pack("[o]", deep);
  json_t *res = NULL;
  ct_err err = {0};
  CT_ASSERT_OK(rego_eval(p, "data.policy.allow", deep, NULL, &res, &err), &err);
  assert_true(json_is_true(res));
  json_decref(res);
  const char *q[] = {"data.policy.allow", "data.policy.allow"};
  json_t *two[2] = {0};
  CT_ASSERT_OK(rego_eval_queries(p, q, 2, deep, NULL, two, &err), &err);
  assert_true(json_is_true(two[0]) && json_is_true(two[1]));
  json_decref(two[0]);
  json_decref(two[1]);
  /* the query reads it: converted, and refused when too deep as before */
  assert_int_not_equal(rego_eval(p, "input", deep, NULL, &res, &err), CT_OK);
  assert_non_null(strstr(err.msg, "nested too deeply"));
  expect_eval(p, "input.x", "{\"x\": 5}", NULL, "5");
  const char *mixed[] = {"data.policy.allow", "input.x"};
  expect_same_as_one_by_one(p, mixed, 2, "{\"x\": [1]}", NULL);
  json_decref(deep);
  rego_policy_free(p);
  p = compile1("package policy\nimport rego.v1\nimport input.y as z\ndefault allow := false\nallow if z == 1\n", NULL);
  expect_eval(p, "data.policy.allow", "{\"y\": 1}", NULL, "true");
  rego_policy_free(p);
  p = compile1("package policy\nimport rego.v1\nv := data.q.w\nallow := x if {\n  x := v with input.k as 2\n}\n", NULL);
  expect_eval(p, "data.policy.allow", "{\"k\": 1}", "{\"q\": {\"w\": 3}}", "3");
  rego_policy_free(p);
}

/* Resource policies equivalent to kbs/sample_policies (default, allow_all, deny_all, affirming). */
static void test_resource_policies(void **state) {
  (void)state;
  rego_policy *def = compile1(
      "package policy\n\ndefault allow = false\n\nplugin = data.plugin\n\n"
      "allow if {\n\tplugin == \"resource\"\n"
      "\tinput.trust_context.attestation_summary.verification_result == true\n}\n",
      NULL);
  const char *ok_in = "{\"trust_context\": {\"attestation_summary\": {\"verification_result\": true}}}";
  expect_eval(def, "data.policy.allow", ok_in, "{\"plugin\": \"resource\", \"resource-path\": [\"a\",\"b\",\"c\"]}", "true");
  expect_eval(def, "data.policy.allow", ok_in, "{\"plugin\": \"other\"}", "false");
  expect_eval(def, "data.policy.allow", "{}", "{\"plugin\": \"resource\"}", "false");
  rego_policy_free(def);

  rego_policy *all = compile1("package policy\nimport rego.v1\ndefault allow := false\n"
                              "allow if { data.plugin == \"resource\" }\n", NULL);
  expect_eval(all, "data.policy.allow", NULL, "{\"plugin\": \"resource\"}", "true");
  expect_eval(all, "data.policy.allow", NULL, "{\"plugin\": \"x\"}", "false");
  rego_policy_free(all);

  rego_policy *deny = compile1("package policy\nimport rego.v1\ndefault allow := false\n", NULL);
  expect_eval(deny, "data.policy.allow", "{}", "{\"plugin\": \"resource\"}", "false");
  rego_policy_free(deny);

  rego_policy *aff = compile1(
      "package policy\nimport rego.v1\n\ndefault allow = false\n\n"
      "allow if {\n    not any_not_affirming\n    count(input.submods) > 0\n\n}\n\n"
      "any_not_affirming if {\n    some _, submod in input.submods\n"
      "    submod[\"ear.status\"] != \"affirming\"\n}\n",
      NULL);
  expect_eval(aff, "data.policy.allow", "{\"submods\": {\"cpu0\": {\"ear.status\": \"affirming\"}}}", NULL, "true");
  expect_eval(aff, "data.policy.allow",
              "{\"submods\": {\"cpu0\": {\"ear.status\": \"affirming\"}, \"gpu0\": {\"ear.status\": \"warning\"}}}", NULL,
              "false");
  expect_eval(aff, "data.policy.allow", "{\"submods\": {}}", NULL, "false");
  rego_policy_free(aff);

  /* policy with leading blank lines and data-indexed comparisons (policy_4 style) */
  rego_policy *p4 = compile1(
      "# comment\n\n\n\npackage policy\n\ndefault allow = false\n\ninput_tcb := input[\"tcb-status\"]\n\n"
      "allow if {\n    count(data[\"resource-path\"]) == 3\n    data.plugin == \"resource\"\n\n\n"
      "    input[\"submods\"][\"cpu0\"][\"ear.veraison.annotated-evidence\"][\"sample\"][\"productId\"] == "
      "data[\"resource-path\"][1]\n}\n\n\n",
      NULL);
  expect_eval(p4, "data.policy.allow",
              "{\"submods\": {\"cpu0\": {\"ear.veraison.annotated-evidence\": {\"sample\": {\"productId\": \"p\"}}}}}",
              "{\"plugin\": \"resource\", \"resource-path\": [\"r\", \"p\", \"k\"]}", "true");
  expect_eval(p4, "data.policy.allow", "{}", "{\"plugin\": \"resource\", \"resource-path\": [\"r\", \"p\", \"k\"]}",
              "false");
  rego_policy_free(p4);
}

static void test_language_core(void **state) {
  (void)state;
  rego_policy *p = compile1(
      "package t\nimport rego.v1\n"
      "s contains x if { some x in [3, 1, 2, 1] }\n"
      "o[k] := v if { some k, v in {\"a\": 1, \"b\": 2} }\n"
      "f(x) := x * 2\n"
      "f2(x, y) := z if { z := x + y }\n"
      "g := [f(1), f2(2, 3), count(s), sum([1, 2.5]), 7 / 2, 8 / 2, 7 % 3]\n"
      "evens := {x | some x in numbers.range(1, 10); x % 2 == 0}\n"
      "obj := {k: v | some k in [\"x\", \"y\"]; v := upper(k)}\n"
      "all_pos if { every x in [1, 2, 3] { x > 0 } }\n"
      "not_all if { not every_big }\n"
      "every_big if { every x in [1, 20] { x > 10 } }\n"
      "w := x if { x := input.a with input.a as 42 }\n"
      "big := 123456789012345678901234567890\n"
      "str := concat(\"/\", [\"a\", sprintf(\"%d-%s\", [5, \"z\"]), trim_space(\"  q \")])\n"
      "reordered := x if { x > 1; x = 2 }\n",
      NULL);
  expect_eval(p, "data.t.s", NULL, NULL, "[1,2,3]");
  expect_eval(p, "data.t.o", NULL, NULL, "{\"a\":1,\"b\":2}");
  expect_eval(p, "data.t.g", NULL, NULL, "[2,5,3,3.5,3.5,4,1]");
  expect_eval(p, "data.t.evens", NULL, NULL, "[2,4,6,8,10]");
  expect_eval(p, "data.t.obj", NULL, NULL, "{\"x\":\"X\",\"y\":\"Y\"}");
  expect_eval(p, "data.t.all_pos", NULL, NULL, "true");
  expect_eval(p, "data.t.not_all", NULL, NULL, "true");
  expect_eval(p, "data.t.every_big", NULL, NULL, "undefined");
  expect_eval(p, "data.t.w", NULL, NULL, "42");
  expect_eval(p, "data.t.str", NULL, NULL, "\"a/5-z/q\"");
  expect_eval(p, "data.t.missing", NULL, NULL, "undefined");
  expect_eval(p, "data.t.reordered", NULL, NULL, "2");
  rego_policy_free(p);
}

/* `not` over undefined operands, as OPA: call arguments that are refs, nested calls and ref
 * indexes are evaluated before the negation (undefined fails the body); operands of =/== and
 * plain terms stay inside it (undefined makes the negation true). */
static void test_negation_operands(void **state) {
  (void)state;
  rego_policy *p = compile1("package n\nimport rego.v1\nrefs := [1, 2]\nf(x) if x == 1\n"
                            "in_ref if not input.x in refs\n"
                            "call_arg if not f(input.x)\n"
                            "neq if not input.x != 1\n"
                            "nested_call if not count(input.xs) == 1\n"
                            "index if not input.y[input.k]\n"
                            "array_head if not [input.x][0] == 1\n"
                            "local_field if { v := input.y; not v.b in refs }\n"
                            "helper if not g(input)\ng(i) if i.x in refs\n"
                            "eq if not input.x == 1\n"
                            "unify if not input.x = 1\n"
                            "term if not input.x.y\n"
                            "iter if not count(input.ys[_]) == 1\n",
                            NULL);
  const char *names[] = {"in_ref", "call_arg", "neq", "nested_call", "index", "array_head", "local_field"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    char q[64];
    snprintf(q, sizeof(q), "data.n.%s", names[i]);
    expect_eval(p, q, "{\"y\": {}}", NULL, "undefined");
  }
  expect_eval(p, "data.n.in_ref", "{\"x\": 3}", NULL, "true");
  expect_eval(p, "data.n.in_ref", "{\"x\": 2}", NULL, "undefined");
  expect_eval(p, "data.n.index", "{\"y\": {\"a\": false}, \"k\": \"a\"}", NULL, "true");
  expect_eval(p, "data.n.local_field", "{\"y\": {\"b\": 3}}", NULL, "true");
  expect_eval(p, "data.n.helper", "{}", NULL, "true");
  expect_eval(p, "data.n.eq", "{}", NULL, "true");
  expect_eval(p, "data.n.unify", "{}", NULL, "true");
  expect_eval(p, "data.n.term", "{}", NULL, "true");
  /* variables of a nested call bind outside the negation */
  expect_eval(p, "data.n.iter", "{\"ys\": [[1], [1, 2]]}", NULL, "true");
  expect_eval(p, "data.n.iter", "{\"ys\": [[1]]}", NULL, "undefined");
  /* in a query == stays a call, so its ref operands are evaluated first */
  const char *queries[][2] = {{"not input.x == 1", "[]"}, {"not input.x = 1", "true"}};
  for (size_t i = 0; i < 2; i++) {
    ct_err err = {0};
    char *out = NULL;
    rego_query_opts qo = {.input_json = "{}"};
    CT_ASSERT_OK(rego_query(p, queries[i][0], &qo, &out, &err), &err);
    if (strcmp(queries[i][1], "[]") ? !strstr(out, "\"value\":true") : strcmp(out, "[]"))
      fail_msg("%s: got %s", queries[i][0], out);
    free(out);
  }
  rego_policy_free(p);

  /* importing the `not` keyword: the negation covers its operands */
  p = compile1("package n\nimport rego.v1\nimport future.keywords.not\nin_ref if not input.x in [1]\n", NULL);
  expect_eval(p, "data.n.in_ref", "{}", NULL, "true");
  rego_policy_free(p);

  /* `_` in a negation can never be bound */
  ct_err err = {0};
  rego_module m = {"w.rego", "package n\nimport rego.v1\nr if not input.xs[_] == [1]\n"};
  assert_int_not_equal(rego_compile(&m, 1, NULL, &p, &err), CT_OK);
  assert_non_null(strstr(err.msg, "rego_unsafe_var_error: w.rego:3:"));
  assert_non_null(strstr(err.msg, "var _ is unsafe"));
}

static void test_errors(void **state) {
  (void)state;
  ct_err err = {0};
  rego_policy *p = NULL;
  rego_module m = {"bad.rego", "package x\n\nallow if {\n  1 +\n"};
  assert_int_not_equal(rego_compile(&m, 1, NULL, &p, &err), CT_OK);
  assert_null(p);
  assert_non_null(strstr(err.msg, "rego_parse_error: bad.rego:"));
  rego_module m2 = {"t.rego", "package x\np := undefined_fn(1)\n"};
  assert_int_not_equal(rego_compile(&m2, 1, NULL, &p, &err), CT_OK);
  assert_non_null(strstr(err.msg, "rego_type_error"));
  rego_module m4 = {"u.rego", "package x\nimport rego.v1\np if {\n  y > 1\n}\n"};
  assert_int_not_equal(rego_compile(&m4, 1, NULL, &p, &err), CT_OK);
  assert_non_null(strstr(err.msg, "rego_unsafe_var_error: u.rego:4:3: var y is unsafe"));
  rego_module m3 = {"t.rego", "package x\np := 1 if { x := 1; x := 2 }\n"};
  assert_int_not_equal(rego_compile(&m3, 1, NULL, &p, &err), CT_OK);
  assert_non_null(strstr(err.msg, "rego_compile_error"));

  p = compile1("package x\nimport rego.v1\np := 1 if input.a\np := 2 if input.b\n"
               "f(x) := 1 if x > 0\nf(x) := 2 if x > 1\nq := f(5)\n", NULL);
  expect_eval(p, "data.x.p", "{\"a\": true}", NULL, "1");
  expect_error(p, "data.x.p", "{\"a\": true, \"b\": true}", "eval_conflict_error: t");
  expect_error(p, "data.x.q", NULL, "eval_conflict_error");
  rego_policy_free(p);

  /* a failing host function aborts with eval_builtin_error */
  rego_host_function hf = {"ext.lookup", 1, failing_host, NULL};
  rego_options o = {.host_functions = &hf, .n_host_functions = 1};
  p = compile1("package x\nimport rego.v1\np if ext.lookup(\"k\") == 1\n", &o);
  expect_error(p, "data.x.p", NULL, "eval_builtin_error: ext.lookup: backend unavailable");
  rego_policy_free(p);
}

static void test_limits(void **state) {
  (void)state;
  rego_options o = {.limits = {.max_steps = 5000}};
  rego_policy *p = compile1("package x\nimport rego.v1\n"
                            "p := count([1 | some i in numbers.range(1, 100000); i > 0])\n", &o);
  expect_error(p, "data.x.p", NULL, "eval_step_limit_error");
  rego_policy_free(p);
  rego_options o2 = {.limits = {.max_memory_bytes = 1 << 20}};
  p = compile1("package x\nimport rego.v1\np := count([[i, j] | some i in numbers.range(1, 2000); "
               "some j in numbers.range(1, 100)])\n", &o2);
  expect_error(p, "data.x.p", NULL, "eval_memory_limit_error");
  rego_policy_free(p);
  rego_options o3 = {.limits = {.max_depth = 3}};
  p = compile1("package x\nimport rego.v1\na := b + 1\nb := c + 1\nc := d + 1\nd := e + 1\ne := 1\n", &o3);
  expect_error(p, "data.x.a", NULL, "eval_depth_limit_error");
  rego_policy_free(p);
  p = compile1("package x\nimport rego.v1\na := b\nb := a\n", NULL);
  expect_error(p, "data.x.a", NULL, "rego_recursion_error");
  rego_policy_free(p);
}

typedef struct {
  const rego_policy *p;
  int ok;
} thr_arg;

static void *thr_main(void *arg) {
  thr_arg *t = arg;
  ct_err err = {0};
  json_t *in = json_pack("{s:{s:s,s:s,s:b,s:{s:i,s:i}}}", "sample", "svn", "1", "launch_digest", "abcde", "debug", 0,
                         "platform_version", "major", 1, "minor", 2);
  for (int i = 0; i < 300; i++) {
    json_t *res = NULL;
    if (rego_eval(t->p, "data.policy.trust_claims", in, NULL, &res, &err) != CT_OK) break;
    if (json_integer_value(json_object_get(res, "executables")) == 3 &&
        json_integer_value(json_object_get(res, "hardware")) == 2)
      t->ok++;
    json_decref(res);
  }
  json_decref(in);
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  json_t *store = js(RV_STORE);
  rego_policy *p = cpu_policy(store);
  pthread_t th[4];
  thr_arg args[4];
  for (int i = 0; i < 4; i++) {
    args[i] = (thr_arg){p, 0};
    assert_int_equal(pthread_create(&th[i], NULL, thr_main, &args[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(args[i].ok, 300);
  }
  rego_policy_free(p);
  json_decref(store);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cpu_policy_sample),
      cmocka_unit_test(test_cpu_policy_else_and_tdx),
      cmocka_unit_test(test_cpu_policy_extensions),
      cmocka_unit_test(test_eval_queries),
      cmocka_unit_test(test_input_converted_only_when_read),
      cmocka_unit_test(test_resource_policies),
      cmocka_unit_test(test_language_core),
      cmocka_unit_test(test_negation_operands),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_threads),
      cmocka_unit_test(test_host_fresh_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
