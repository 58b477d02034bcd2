#include "ct_test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include "as_service.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_file.h"
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

/* The same service without verbose_token: the token leaves out the additional evidence. */
static int setup_terse(void **state) {
  if (setup(state) != 0) return -1;
  fixture *f = *state;
  as_service_free(f->as);
  f->as = NULL;
  ct_err err;
  as_config cfg = {.store = f->store, .rvps = f->rv, .token_duration_min = 5, .enable_sample_tee = true};
  return as_service_new(&cfg, &f->as, &err) == CT_OK ? 0 : -1;
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

/* The token's payload is exactly the claims as jansson writes them with sorted keys: the EAR is
 * assembled from texts written separately (the annotated evidence once, spliced in), and any
 * difference would change signed bytes that clients and upstream tools read. */
static void assert_payload_is_dump(const char *token, const json_t *claims) {
  json_t *hdr = NULL;
  uint8_t *payload = NULL;
  size_t plen = 0;
  ct_err err;
  CT_ASSERT_OK(jose_jws_decode_unverified(token, &hdr, &payload, &plen, &err), &err);
  char *want = json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS);
  assert_non_null(want);
  assert_int_equal(plen, strlen(want));
  assert_memory_equal(payload, want, plen);
  free(want);
  free(payload);
  json_decref(hdr);
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
  /* verbose_token (set here) keeps additional-evidence in the token. */
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(ae, "runtime_data_claims"), "additional-evidence")), "");
  assert_payload_is_dump(token, claims);
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

static void test_terse_token_leaves_out_additional_evidence(void **state) {
  fixture *f = *state;
  char *token = NULL;
  json_t *claims = NULL;
  ct_err err;
  CT_ASSERT_OK(evaluate(f, NULL, false, &token, &claims, &err), &err);
  json_t *rdc = json_object_get(json_object_get(json_object_get(json_object_get(claims, "submods"), "cpu0"),
                                                "ear.veraison.annotated-evidence"),
                                "runtime_data_claims");
  assert_null(json_object_get(rdc, "additional-evidence"));
  assert_int_equal(json_object_size(rdc), 2);
  assert_string_equal(json_string_value(json_object_get(rdc, "nonce")), "bm9uY2U=");
  assert_string_equal(json_string_value(json_object_get(json_object_get(rdc, "tee-pubkey"), "x")), "AAAA");
  assert_payload_is_dump(token, claims);
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
  assert_payload_is_dump(token, claims);
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
  assert_payload_is_dump(token, claims);
  json_decref(claims);
  free(token);

  char *text = NULL;
  CT_ASSERT_OK(as_get_policy(f->as, "default_cpu", &text, &err), &err);
  assert_string_equal(text, warn);
  free(text);
  assert_int_equal(as_set_policy(f->as, "../evil", warn, strlen(warn), &err), CT_EINVAL);

  /* An extension may replace the annotated evidence itself (the text written for the size check
   * is then not the submodule's); escapes and non-ASCII text in extension values. */
  const char *replace = "package policy\nimport rego.v1\ntrust_claims := {\"hardware\": 2}\n"
                        "extensions := [{\"name\": \"ear.veraison.annotated-evidence\", \"key\": 1, \"value\": "
                        "{\"q\": \"\\\"\\\\\\n\u00e9\", \"n\": -9223372036854775807, \"r\": 0.1}}, "
                        "{\"name\": \"a\", \"key\": 2, \"value\": [1, \"\u4e2d\"]}]\n";
  CT_ASSERT_OK(as_set_policy(f->as, "default_cpu", replace, strlen(replace), &err), &err);
  CT_ASSERT_OK(evaluate(f, NULL, false, &token, &claims, &err), &err);
  cpu0 = json_object_get(json_object_get(claims, "submods"), "cpu0");
  assert_string_equal(json_string_value(json_object_get(json_object_get(cpu0, "ear.veraison.annotated-evidence"), "q")),
                      "\"\\\n\xc3\xa9");
  assert_payload_is_dump(token, claims);
  json_decref(claims);
  free(token);
}

/* Writes dir/<name> files as a Kubernetes volume does: into ..<stamp>/, with ..data pointing at
 * it and <name> -> ..data/<name>; a second call swaps ..data atomically, as a ConfigMap update. */
static void kube_volume(const char *dir, const char *stamp, const char *name, const char *text) {
  char p[512], q[512];
  ct_err err;
  mkdir(dir, 0755);
  snprintf(p, sizeof p, "%s/..%s", dir, stamp);
  assert_int_equal(mkdir(p, 0755), 0);
  snprintf(p, sizeof p, "%s/..%s/%s", dir, stamp, name);
  CT_ASSERT_OK(ct_file_write_atomic(p, text, strlen(text), 0644, &err), &err);
  snprintf(p, sizeof p, "%s/..data_tmp", dir);
  snprintf(q, sizeof q, "..%s", stamp);
  assert_int_equal(symlink(q, p), 0);
  snprintf(q, sizeof q, "%s/..data", dir);
  assert_int_equal(rename(p, q), 0);
  snprintf(p, sizeof p, "%s/%s", dir, name);
  snprintf(q, sizeof q, "..data/%s", name);
  if (symlink(q, p) != 0) assert_int_equal(errno, EEXIST);
}

static int executables_of(fixture *f) {
  char *token = NULL;
  json_t *claims = NULL;
  ct_err err;
  CT_ASSERT_OK(evaluate(f, NULL, false, &token, &claims, &err), &err);
  json_t *tv = json_object_get(json_object_get(json_object_get(claims, "submods"), "cpu0"), "ear.trustworthiness-vector");
  int v = (int)json_integer_value(json_object_get(tv, "executables"));
  json_decref(claims);
  free(token);
  return v;
}

/* Trustee 1.0's policy_dir and LocalJson reference-value file, as the pattern mounts them from
 * ConfigMaps: read through the volumes' links, followed across updates, written by the admin
 * API; a link out of the policy directory stops the service from starting. */
static void test_policy_dir_and_reference_value_file(void **state) {
  (void)state;
  char root[] = "/tmp/as_policy_dir_XXXXXX";
  assert_non_null(mkdtemp(root));
  char pol[64], rvdir[64], rvfile[128], p[400];
  snprintf(pol, sizeof pol, "%s/policies", root);
  mkdir(pol, 0755);
  snprintf(p, sizeof p, "%s/opa", pol);
  const char *policy = "package policy\nimport rego.v1\ndefault executables := 33\n"
                       "executables := 3 if query_reference_value(\"svn\") == [\"1\"]\n"
                       "trust_claims := {\"executables\": executables, \"hardware\": 2}\n";
  kube_volume(p, "2026_12_03_10_00_00.1", "default_cpu.rego", policy);
  snprintf(rvdir, sizeof rvdir, "%s/rvps", root);
  snprintf(rvfile, sizeof rvfile, "%s/reference-values.json", rvdir);
  kube_volume(rvdir, "2026_12_03_10_00_00.1", "reference-values.json",
              "[{\"name\": \"svn\", \"expiration\": \"2031-01-01T00:00:00Z\", \"value\": [\"1\"]}]");

  fixture g = {0};
  ct_err err;
  kvs_config kc = {.type = KVS_MEMORY};
  CT_ASSERT_OK(kvs_open(&kc, &g.store, &err), &err);
  CT_ASSERT_OK(rvps_new_file(rvfile, &g.rv, &err), &err);
  as_config cfg = {.store = g.store, .rvps = g.rv, .policy_dir = pol, .token_duration_min = 5,
                   .enable_sample_tee = true};
  CT_ASSERT_OK(as_service_new(&cfg, &g.as, &err), &err);
  assert_int_equal(executables_of(&g), 3);

  /* ConfigMap updates: the reference values at once, the policy on the next reload */
  kube_volume(rvdir, "2026_12_03_11_00_00.2", "reference-values.json",
              "[{\"name\": \"svn\", \"expiration\": \"2031-01-01T00:00:00Z\", \"value\": [\"2\"]}]");
  assert_int_equal(executables_of(&g), 33);
  kube_volume(p, "2026_12_03_11_00_00.2", "default_cpu.rego",
              "package policy\nimport rego.v1\ntrust_claims := {\"executables\": 4, \"hardware\": 2}\n");
  as_reload_policies(g.as);
  assert_int_equal(executables_of(&g), 4);

  /* the admin API writes the policy file and the reference-value list */
  const char *other = "package policy\nimport rego.v1\ntrust_claims := {\"hardware\": 2}\n";
  CT_ASSERT_OK(as_set_policy(g.as, "other_cpu", other, strlen(other), &err), &err);
  snprintf(p, sizeof p, "%s/opa/other_cpu.rego", pol);
  uint8_t *text = NULL;
  size_t len = 0;
  CT_ASSERT_OK(ct_file_read(p, 4096, &text, &len, &err), &err);
  assert_string_equal((char *)text, other);
  free(text);
  register_rv(&g, "{\"svn\": [\"1\"], \"tag\": 7}");
  assert_int_equal(executables_of(&g), 4);
  json_t *v = NULL;
  CT_ASSERT_OK(rvps_query(g.rv, "tag", &v, &err), &err);
  assert_int_equal(json_integer_value(v), 7);
  json_decref(v);
  CT_ASSERT_OK(ct_file_read(rvfile, 1 << 16, &text, &len, &err), &err);
  json_t *list = NULL;
  CT_ASSERT_OK(ct_json_parse((char *)text, len, 8, &list, &err), &err);
  free(text);
  assert_int_equal(json_array_size(list), 2); /* svn replaced, tag added: Trustee's list */
  assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1), "name")), "tag");
  assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "version")), "0.1.0");
  json_decref(list);
  as_service_free(g.as);
  rvps_free(g.rv);
  kvs_close(g.store);

  /* a policy linked out of the directory (or a malformed list) keeps the service from starting */
  snprintf(p, sizeof p, "%s/opa/evil.rego", pol);
  assert_int_equal(symlink("../../secret.rego", p), 0);
  snprintf(p, sizeof p, "%s/secret.rego", root);
  CT_ASSERT_OK(ct_file_write_atomic(p, other, strlen(other), 0600, &err), &err);
  CT_ASSERT_OK(kvs_open(&kc, &g.store, &err), &err);
  CT_ASSERT_OK(rvps_new(g.store, &g.rv, &err), &err);
  cfg.store = g.store;
  cfg.rvps = g.rv;
  assert_int_equal(as_service_new(&cfg, &g.as, &err), CT_EIO);
  if (!strstr(err.msg, "evil.rego") || !strstr(err.msg, "leads out of its directory")) fail_msg("%s", err.msg);
  rvps_free(g.rv);
  snprintf(p, sizeof p, "%s/bad.json", root);
  CT_ASSERT_OK(ct_file_write_atomic(p, "{\"svn\": 1}", 10, 0600, &err), &err);
  assert_int_equal(rvps_new_file(p, &g.rv, &err), CT_EINVAL);
  assert_non_null(strstr(err.msg, "not a JSON list"));
  kvs_close(g.store);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", root);
  assert_int_equal(system(cmd), 0);
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
      cmocka_unit_test_setup_teardown(test_terse_token_leaves_out_additional_evidence, setup_terse, teardown),
      cmocka_unit_test_setup_teardown(test_init_data_claims, setup, teardown),
      cmocka_unit_test_setup_teardown(test_policy_edge_cases, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_tee, setup, teardown),
      cmocka_unit_test(test_policy_dir_and_reference_value_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
