#include "ct_test_util.h"

#include <openssl/evp.h>

#include "as_service.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_json.h"
#include "jose.h"

typedef struct fixture {
  kvs *store;
  rvps *rv;
  as_service *as;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  ct_err err;
  kvs_config kc = {.type = KVS_MEMORY};
  if (kvs_open(&kc, &f->store, &err) != CT_OK || rvps_new(f->store, &f->rv, &err) != CT_OK) return -1;
  as_config cfg = {.store = f->store, .rvps = f->rv, .token_duration_min = 5, .verbose_token = true,
                   .enable_sample_tee = true};
  if (as_service_new(&cfg, &f->as, &err) != CT_OK) {
    fprintf(stderr, "as_service_new: %s\n", err.msg);
    return -1;
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  as_service_free(f->as);
  rvps_free(f->rv);
  kvs_close(f->store);
  free(f);
  return 0;
}

/* Builds sample evidence whose report_data binds `runtime` the way the KBS hashes it. */
static json_t *sample_evidence(const json_t *runtime, bool tamper) {
  char *canon = NULL;
  size_t len = 0;
  ct_err err;
  if (ct_jcs_string(runtime, &canon, &len, &err) != CT_OK) return NULL;
  uint8_t d[48];
  ct_sha384(canon, len, d);
  free(canon);
  if (tamper) d[0] ^= 1;
  char *b64 = NULL;
  if (ct_b64_encode(CT_B64_STD, d, sizeof d, &b64, &err) != CT_OK) return NULL;
  json_t *ev = json_pack("{s:s, s:s}", "svn", "1", "report_data", b64);
  free(b64);
  return ev;
}

static json_t *runtime_data(void) {
  return json_pack("{s:{s:s, s:s, s:s, s:s, s:s}, s:s, s:s}", "tee-pubkey", "kty", "EC", "crv", "P-256", "alg",
                   "ECDH-ES+A256KW", "x", "AAAA", "y", "BBBB", "nonce", "bm9uY2U=", "additional-evidence", "");
}

static CT_RESULT evaluate(fixture *f, const char *init_data, bool tamper, char **token, json_t **claims, ct_err *err) {
  json_t *rt = runtime_data();
  json_t *ev = sample_evidence(rt, tamper);
  as_request req = {.tee = "sample", .evidence = ev, .runtime_data = rt, .init_data_toml = init_data,
                    .init_data_len = init_data ? strlen(init_data) : 0};
  ct_status st = as_evaluate(f->as, &req, token, claims, err);
  json_decref(ev);
  json_decref(rt);
  return st;
}

static void register_rv(fixture *f, const char *json) {
  ct_err err;
  char *b64 = NULL;
  CT_ASSERT_OK(ct_b64_encode(CT_B64_STD, (const uint8_t *)json, strlen(json), &b64, &err), &err);
  json_t *msg = json_pack("{s:s, s:s, s:s}", "version", "0.1.0", "type", "sample", "payload", b64);
  CT_ASSERT_OK(rvps_register(f->rv, msg, &err), &err);
  json_decref(msg);
  free(b64);
}

static void test_ear_layout_contraindicated_without_reference_values(void **state) {
  fixture *f = *state;
  char *token = NULL;
  json_t *claims = NULL;
  ct_err err;
  CT_ASSERT_OK(evaluate(f, NULL, false, &token, &claims, &err), &err);
  assert_string_equal(json_string_value(json_object_get(claims, "eat_profile")),
                      "tag:github.com,2024:confidential-containers/Trustee");
  assert_string_equal(json_string_value(json_object_get(claims, "iss")), "CoCo-Attestation-Service");
  json_int_t iat = json_integer_value(json_object_get(claims, "iat"));
  assert_int_equal(json_integer_value(json_object_get(claims, "exp")) - iat, 300);
  assert_non_null(json_object_get(json_object_get(claims, "ear.verifier-id"), "developer"));
  json_t *cpu0 = json_object_get(json_object_get(claims, "submods"), "cpu0");
  assert_non_null(cpu0);
  /* hardware 97 without reference values: contraindicated, as Trustee's default policy. */
  assert_string_equal(json_string_value(json_object_get(cpu0, "ear.status")), "contraindicated");
  json_t *tv = json_object_get(cpu0, "ear.trustworthiness-vector");
  assert_int_equal(json_integer_value(json_object_get(tv, "hardware")), 97);
  assert_int_equal(json_integer_value(json_object_get(tv, "executables")), 33);
  assert_int_equal(json_integer_value(json_object_get(tv, "configuration")), 2);
  assert_string_equal(json_string_value(json_object_get(cpu0, "ear.appraisal-policy-id")), "default");
  json_t *ae = json_object_get(cpu0, "ear.veraison.annotated-evidence");
  assert_string_equal(json_string_value(json_object_get(json_object_get(ae, "sample"), "launch_digest")), "abcde");
  /* report_data moves to the top of the annotated evidence, with the runtime data beside it. */
  assert_non_null(json_object_get(ae, "report_data"));
  assert_null(json_object_get(json_object_get(ae, "sample"), "report_data"));
  assert_string_equal(json_string_value(json_object_get(json_object_get(ae, "runtime_data_claims"), "nonce")),
                      "bm9uY2U=");
  /* The token verifies with the header's key and carries the same claims. */
  json_t *hdr = NULL;
  uint8_t *payload = NULL;
  size_t plen = 0;
  CT_ASSERT_OK(jose_jws_decode_unverified(token, &hdr, &payload, &plen, &err), &err);
  assert_string_equal(json_string_value(json_object_get(hdr, "alg")), "ES256");
  assert_string_equal(json_string_value(json_object_get(hdr, "typ")), "JWT");
  jose_jwk *k = NULL;
  CT_ASSERT_OK(jose_jwk_from_json(json_object_get(hdr, "jwk"), &k, &err), &err);
  json_t *h2 = NULL;
  uint8_t *p2 = NULL;
  size_t l2 = 0;
  CT_ASSERT_OK(jose_jws_verify(token, jose_jwk_pkey(k), "ES256", &h2, &p2, &l2, &err), &err);
  jose_jwk_free(k);
  json_decref(h2);
  free(p2);
  free(payload);
  json_decref(hdr);
  json_decref(claims);
  free(token);
}

static void test_affirming_with_reference_values(void **state) {
  fixture *f = *state;
  register_rv(f, "{\"svn\":[\"1\"],\"launch_digest\":[\"abcde\"],\"major_version\":1,\"minimum_minor_version\":1}");
  char *token = NULL;
  json_t *claims = NULL;
  ct_err err;
  CT_ASSERT_OK(evaluate(f, NULL, false, &token, &claims, &err), &err);
  json_t *cpu0 = json_object_get(json_object_get(claims, "submods"), "cpu0");
  assert_string_equal(json_string_value(json_object_get(cpu0, "ear.status")), "affirming");
  json_t *tv = json_object_get(cpu0, "ear.trustworthiness-vector");
  assert_int_equal(json_integer_value(json_object_get(tv, "executables")), 3);
  assert_int_equal(json_integer_value(json_object_get(tv, "hardware")), 2);
  json_decref(claims);
  free(token);
}

static void test_report_data_must_bind(void **state) {
  fixture *f = *state;
  char *token = NULL;
  ct_err err;
  assert_int_equal(evaluate(f, NULL, true, &token, NULL, &err), CT_ECRYPTO);
  assert_non_null(strstr(err.msg, "report_data"));
  assert_null(token);
}

static void test_init_data_claims(void **state) {
  fixture *f = *state;
  const char *toml = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"cdh.toml\" = '''\n[kbc]\nname = \"cc_kbc\"\n"
                     "url = \"https://kbs:8080\"\n'''\n";
  char *token = NULL;
  json_t *claims = NULL;
  ct_err err;
  CT_ASSERT_OK(evaluate(f, toml, false, &token, &claims, &err), &err);
  json_t *ae = json_object_get(json_object_get(json_object_get(claims, "submods"), "cpu0"),
                               "ear.veraison.annotated-evidence");
  uint8_t d[32];
  ct_sha256(toml, strlen(toml), d);
  char *b64 = NULL;
  CT_ASSERT_OK(ct_b64_encode(CT_B64_STD, d, 32, &b64, &err), &err);
  assert_string_equal(json_string_value(json_object_get(ae, "init_data")), b64);
  free(b64);
  json_t *cdh = json_object_get(json_object_get(ae, "init_data_claims"), "cdh.toml");
  assert_string_equal(json_string_value(json_object_get(json_object_get(cdh, "kbc"), "url")), "https://kbs:8080");
  json_decref(claims);
  free(token);
  assert_int_not_equal(evaluate(f, "version = \"0.1.0\"\nalgorithm = \"md5\"\n[data]\n", false, &token, NULL, &err), CT_OK);
  assert_non_null(strstr(err.msg, "init-data"));
  assert_non_null(strstr(err.msg, "md5"));
}

static void test_policy_edge_cases(void **state) {
  fixture *f = *state;
  ct_err err;
  char *token = NULL;
  const char *bad = "package policy\nthis is not rego";
  assert_int_not_equal(as_set_policy(f->as, "default_cpu", bad, strlen(bad), &err), CT_OK);
  /* A policy that failed to compile changed nothing: evaluation still uses the default. */
  CT_ASSERT_OK(evaluate(f, NULL, false, &token, NULL, &err), &err);
  free(token);

  const char *empty = "package policy\nimport rego.v1\ntrust_claims := {}\n";
  CT_ASSERT_OK(as_set_policy(f->as, "default_cpu", empty, strlen(empty), &err), &err);
  assert_int_equal(evaluate(f, NULL, false, &token, NULL, &err), CT_EINVAL);
  assert_non_null(strstr(err.msg, "at least one policy claim"));

  const char *unknown = "package policy\nimport rego.v1\ntrust_claims := {\"karma\": 2}\n";
  CT_ASSERT_OK(as_set_policy(f->as, "default_cpu", unknown, strlen(unknown), &err), &err);
  assert_int_equal(evaluate(f, NULL, false, &token, NULL, &err), CT_EINVAL);
  assert_non_null(strstr(err.msg, "karma"));

  const char *range = "package policy\nimport rego.v1\ntrust_claims := {\"hardware\": 300}\n";
  CT_ASSERT_OK(as_set_policy(f->as, "default_cpu", range, strlen(range), &err), &err);
  assert_int_equal(evaluate(f, NULL, false, &token, NULL, &err), CT_EINVAL);

  /* No trust_claims rule: every claim 0, status none. */
  const char *none = "package policy\nimport rego.v1\nx := 1\n";
  CT_ASSERT_OK(as_set_policy(f->as, "default_cpu", none, strlen(none), &err), &err);
  json_t *claims = NULL;
  CT_ASSERT_OK(evaluate(f, NULL, false, &token, &claims, &err), &err);
  json_t *cpu0 = json_object_get(json_object_get(claims, "submods"), "cpu0");
  assert_string_equal(json_string_value(json_object_get(cpu0, "ear.status")), "none");
  assert_int_equal(json_object_size(json_object_get(cpu0, "ear.trustworthiness-vector")), 8);
  json_decref(claims);
  free(token);

  /* Warning tier and extensions. */
  const char *warn = "package policy\nimport rego.v1\ntrust_claims := {\"hardware\": 2, \"configuration\": 40}\n"
                     "extensions := [{\"name\": \"ear.trustee.identifiers\", \"key\": -18, \"value\": {\"validated\": {}}}]\n";
  CT_ASSERT_OK(as_set_policy(f->as, "default_cpu", warn, strlen(warn), &err), &err);
  CT_ASSERT_OK(evaluate(f, NULL, false, &token, &claims, &err), &err);
  cpu0 = json_object_get(json_object_get(claims, "submods"), "cpu0");
  assert_string_equal(json_string_value(json_object_get(cpu0, "ear.status")), "warning");
  assert_non_null(json_object_get(cpu0, "ear.trustee.identifiers"));
  json_decref(claims);
  free(token);

  char *text = NULL;
  CT_ASSERT_OK(as_get_policy(f->as, "default_cpu", &text, &err), &err);
  assert_string_equal(text, warn);
  free(text);
  assert_int_equal(as_set_policy(f->as, "../evil", warn, strlen(warn), &err), CT_EINVAL);
}

static void test_unknown_tee(void **state) {
  fixture *f = *state;
  json_t *rt = runtime_data();
  json_t *ev = json_object();
  as_request req = {.tee = "nvidia", .evidence = ev, .runtime_data = rt};
  char *token = NULL;
  ct_err err;
  assert_int_equal(as_evaluate(f->as, &req, &token, NULL, &err), CT_EUNSUPPORTED);
  json_decref(ev);
  json_decref(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_ear_layout_contraindicated_without_reference_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_affirming_with_reference_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_report_data_must_bind, setup, teardown),
      cmocka_unit_test_setup_teardown(test_init_data_claims, setup, teardown),
      cmocka_unit_test_setup_teardown(test_policy_edge_cases, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_tee, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
