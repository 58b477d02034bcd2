/*
 * The shipped default CPU attestation policy on real hardware claims: the verifiers' output for
 * the SNP and Azure SNP vTPM vectors, appraised with reference values that match (affirming) and
 * without any (contraindicated), as Trustee's default policy does.
 */
#include "ct_test_util.h"

#include "as_verifier.h"
#include "ct_codec.h"
#include "ct_json.h"
#include "ct_policies.h"
#include "rego.h"

/* query_reference_value backed by a JSON object of id -> value. */
static CT_RESULT rv_lookup(void *ctx, json_t *const *args, size_t nargs, json_t **result, ct_err *err) {
  (void)err;
  json_t *v = nargs == 1 ? json_object_get(ctx, json_string_value(args[0])) : NULL;
  *result = v ? json_incref(v) : json_null();
  return CT_OK;
}

static json_t *verify_vector(const char *tee, const char *file, const uint8_t *rd, size_t rd_len) {
  uint8_t *data = NULL;
  size_t len = 0;
  char path[4096];
  if (!ct_test_vector_path(file, path, sizeof path)) return NULL;
  ct_err err;
  CT_ASSERT_OK(ct_file_read(path, 1u << 20, &data, &len, &err), &err);
  json_t *evidence = NULL;
  CT_ASSERT_OK(ct_json_parse((const char *)data, len, 64, &evidence, &err), &err);
  free(data);
  const as_verifier *v = as_verifier_find(tee);
  assert_non_null(v);
  as_verifier_config cfg = {0};
  void *state = NULL;
  if (v->create) CT_ASSERT_OK(v->create(&cfg, &state, &err), &err);
  as_verify_request req = {.tee = tee, .evidence = evidence, .report_data = rd, .report_data_len = rd_len};
  json_t *claims = NULL;
  CT_ASSERT_OK(v->verify(state, &req, &claims, &err), &err);
  if (v->destroy) v->destroy(state);
  json_decref(evidence);
  /* As the attestation service does: report_data and init_data move out of the TEE's claims. */
  json_object_del(claims, "report_data");
  json_object_del(claims, "init_data");
  json_t *annotated = json_object();
  json_object_set_new(annotated, tee, claims);
  return annotated;
}

static json_t *appraise(const json_t *annotated, json_t *rvs) {
  rego_host_function fns[] = {{"query_reference_value", 1, rv_lookup, rvs}};
  rego_options opts = {.host_functions = fns, .n_host_functions = 1};
  rego_module mod = {"default_cpu.rego", ct_policy_default_cpu};
  rego_policy *p = NULL;
  ct_err err;
  CT_ASSERT_OK(rego_compile(&mod, 1, &opts, &p, &err), &err);
  json_t *trust = NULL;
  CT_ASSERT_OK(rego_eval(p, "data.policy.trust_claims", annotated, NULL, &trust, &err), &err);
  rego_policy_free(p);
  assert_non_null(trust);
  return trust;
}

static void expect_vector(json_t *trust, int executables, int hardware, int configuration) {
  assert_int_equal(json_integer_value(json_object_get(trust, "executables")), executables);
  assert_int_equal(json_integer_value(json_object_get(trust, "hardware")), hardware);
  assert_int_equal(json_integer_value(json_object_get(trust, "configuration")), configuration);
  json_decref(trust);
}

static void test_snp_genoa(void **state) {
  (void)state;
  uint8_t *rd = NULL;
  size_t rd_len = 0;
  ct_err err;
  const char *hex = "7e7320889600c7ac133aea7b896c51f41026002982292a7369559796999c1bf929eef3ff23c46e858f0b1982f9a92b17"
                    "c51b578d958cde6b0c92978f150cf9b0";
  CT_ASSERT_OK(ct_hex_decode(hex, strlen(hex), &rd, &rd_len, &err), &err);
  json_t *ann = verify_vector("snp", "snp/genoa-evidence-with-vcek.json", rd, rd_len);
  free(rd);
  if (!ann) skip();
  json_t *c = json_object_get(ann, "snp");
  json_t *none = json_object();
  expect_vector(appraise(ann, none), 33, 97, 3); /* debug off, no reference values */
  json_t *rvs = json_pack("{s:[O], s:[O], s:[O], s:[O], s:[O], s:O, s:O, s:O, s:O, s:O, s:O}",
                          "snp_launch_measurement", json_object_get(c, "measurement"), "snp_bootloader",
                          json_object_get(c, "reported_tcb_bootloader"), "snp_microcode",
                          json_object_get(c, "reported_tcb_microcode"), "snp_snp_svn", json_object_get(c, "reported_tcb_snp"),
                          "snp_tee_svn", json_object_get(c, "reported_tcb_tee"), "snp_smt_enabled",
                          json_object_get(c, "platform_smt_enabled"), "snp_tsme_enabled",
                          json_object_get(c, "platform_tsme_enabled"), "snp_guest_abi_major",
                          json_object_get(c, "policy_abi_major"), "snp_guest_abi_minor",
                          json_object_get(c, "policy_abi_minor"), "snp_single_socket",
                          json_object_get(c, "policy_single_socket"), "snp_smt_allowed",
                          json_object_get(c, "policy_smt_allowed"));
  expect_vector(appraise(ann, rvs), 3, 2, 2);
  /* A different launch measurement is not recognised. */
  json_object_set_new(rvs, "snp_launch_measurement", json_pack("[s]", "00"));
  expect_vector(appraise(ann, rvs), 33, 2, 2);
  json_decref(rvs);
  json_decref(none);
  json_decref(ann);
}

static void test_az_snp_vtpm(void **state) {
  (void)state;
  json_t *ann = verify_vector("az-snp-vtpm", "az-snp-vtpm/evidence-v1.json", (const uint8_t *)"challenge", 9);
  if (!ann) skip();
  json_t *c = json_object_get(ann, "az-snp-vtpm");
  json_t *none = json_object();
  expect_vector(appraise(ann, none), 33, 97, 36);
  json_t *rvs = json_pack("{s:[O], s:[O], s:[O], s:[O], s:[O], s:[O], s:[O], s:[O], s:[O], s:[O], s:[O], s:[O]}",
                          "measurement", json_object_get(c, "measurement"), "snp_pcr11",
                          json_object_get(json_object_get(c, "tpm"), "pcr11"), "tcb_bootloader",
                          json_object_get(c, "reported_tcb_bootloader"), "tcb_microcode",
                          json_object_get(c, "reported_tcb_microcode"), "tcb_snp", json_object_get(c, "reported_tcb_snp"),
                          "tcb_tee", json_object_get(c, "reported_tcb_tee"), "smt_enabled",
                          json_object_get(c, "platform_smt_enabled"), "tsme_enabled",
                          json_object_get(c, "platform_tsme_enabled"), "abi_major", json_object_get(c, "policy_abi_major"),
                          "abi_minor", json_object_get(c, "policy_abi_minor"), "single_socket",
                          json_object_get(c, "policy_single_socket"), "smt_allowed",
                          json_object_get(c, "policy_smt_allowed"));
  expect_vector(appraise(ann, rvs), 3, 2, 2);
  json_decref(rvs);
  json_decref(none);
  json_decref(ann);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_snp_genoa),
      cmocka_unit_test(test_az_snp_vtpm),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
