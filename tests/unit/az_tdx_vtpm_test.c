/*
 * az-tdx-vtpm verifier: the Azure TDX CVM vector (evidence-v1.json with report data
 * "challenge"), its parts (hcl-report.bin, td-quote.bin, tpm-quote-v1.json), and tamper tests.
 * The TD quote's collateral is Intel's sample fitted to the quote's FMSPC and signed by a test CA
 * (tdx_test_env.h), since the published samples are for another platform.
 */
#include "ct_test_util.h"

#include "as_verifier.h"
#include "az_hcl.h"
#include "tdx_test_env.h"
#include "tpm_quote.h"

typedef struct azt_fixture {
  tdx_test_quote tq;
  tdx_test_env env;
  tdx_state *st;
  json_t *ev;
} azt_fixture;

static bool azt__setup(azt_fixture *f) {
  memset(f, 0, sizeof *f);
  if (!tdx_test__load("az-tdx-vtpm/td-quote.bin", &f->tq)) return false;
  if (!tdx_test__env(&f->tq, &f->env)) return false;
  as_verifier_config cfg = {.tdx_collateral_dir = f->env.dir};
  ct_err err;
  CT_ASSERT_OK(tdx_state_new(&cfg, f->env.root_pem, 0, &f->st, &err), &err);
  char *text = tdx_test__read_text("az-tdx-vtpm/evidence-v1.json");
  if (!text) return false;
  f->ev = json_loads(text, 0, NULL);
  free(text);
  assert_non_null(f->ev);
  return true;
}

static void azt__teardown(azt_fixture *f) {
  json_decref(f->ev);
  tdx_state_free(f->st);
  tdx_test__env_free(&f->env);
  tdx_test__unload(&f->tq);
}

static CT_RESULT azt__verify(azt_fixture *f, const json_t *ev, const char *rd, const uint8_t *init,
                             size_t init_len, json_t **claims, ct_err *err) {
  as_verify_request req = {.tee = "az-tdx-vtpm", .evidence = ev, .report_data = (const uint8_t *)rd,
                           .report_data_len = rd ? strlen(rd) : 0, .init_data_digest = init,
                           .init_data_digest_len = init_len};
  const as_verifier *v = as_verifier_find("az-tdx-vtpm");
  assert_non_null(v);
  return v->verify(f->st, &req, claims, err);
}

static void test_golden(void **s) {
  (void)s;
  azt_fixture f;
  if (!azt__setup(&f)) skip();
  ct_err err;
  json_t *c = NULL;
  CT_ASSERT_OK(azt__verify(&f, f.ev, "challenge", NULL, 0, &c, &err), &err);
  assert_string_equal(json_string_value(json_object_get(c, "report_data")), "6368616c6c656e6765");
  json_t *tpm = json_object_get(c, "tpm");
  assert_int_equal(json_object_size(tpm), 24);
  assert_string_equal(json_string_value(json_object_get(tpm, "pcr00")),
                      "782b20b10f55cc46e2142cc2145d548698073e5beb82752c8d7f9279f0d8a273");
  assert_string_equal(json_string_value(json_object_get(c, "init_data")),
                      json_string_value(json_object_get(tpm, "pcr08")));
  /* The TD quote claims and DCAP supplemental claims are there too. */
  assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(c, "quote"), "header"), "version")), "0400");
  assert_non_null(json_object_get(c, "td_attributes"));
  assert_non_null(json_object_get(c, "tcb_status"));
  assert_non_null(json_object_get(c, "platform_instance_id"));
  json_decref(c);
  /* The serde Vec<u8> form (arrays of byte values) is accepted too. */
  json_t *ev = json_deep_copy(f.ev);
  const char *keys[] = {"hcl_report", "td_quote"};
  for (int k = 0; k < 2; k++) {
    const char *b64 = json_string_value(json_object_get(ev, keys[k]));
    uint8_t *raw = NULL;
    size_t n = 0;
    CT_ASSERT_OK(ct_b64_decode(CT_B64_ANY, b64, strlen(b64), &raw, &n, &err), &err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, json_integer(raw[i]));
    json_object_set_new(ev, keys[k], arr);
    free(raw);
  }
  CT_ASSERT_OK(azt__verify(&f, ev, "challenge", NULL, 0, &c, &err), &err);
  json_decref(c);
  json_array_set_new(json_object_get(ev, "td_quote"), 3, json_integer(256));
  assert_int_equal(azt__verify(&f, ev, "challenge", NULL, 0, &c, &err), CT_EINVAL);
  json_decref(ev);
  azt__teardown(&f);
}

/* The parts: HCL var-data digest is the TD report data; the quote's nonce is "challenge". */
static void test_parts(void **s) {
  (void)s;
  uint8_t *hcl = NULL, *td = NULL;
  size_t hl = 0, tl = 0;
  CT_READ_VECTOR("az-tdx-vtpm/hcl-report.bin", &hcl, &hl);
  CT_READ_VECTOR("az-tdx-vtpm/td-quote.bin", &td, &tl);
  ct_err err;
  az_hcl_report h;
  CT_ASSERT_OK(az_hcl_parse(hcl, hl, &h, &err), &err);
  assert_int_equal(h.report_type, AZ_HCL_REPORT_TYPE_TDX);
  dcap_quote q;
  CT_ASSERT_OK(dcap_quote_parse(td, tl, &q, &err), &err);
  assert_memory_equal(h.var_data_sha256, q.body + DCAP_TD_REPORT_DATA, 32);
  /* Trustee's test: byte 0x0880 incremented -> the var-data digest no longer matches. */
  hcl[0x0880]++;
  CT_ASSERT_OK(az_hcl_parse(hcl, hl, &h, &err), &err);
  assert_memory_not_equal(h.var_data_sha256, q.body + DCAP_TD_REPORT_DATA, 32);
  free(hcl);
  free(td);
}

static json_t *azt__tpm(json_t *ev) { return json_object_get(ev, "tpm_quote"); }

/* Replaces hex string member k of o by a copy with one nibble changed at hex index i. */
static void azt__flip_hex(json_t *o, const char *k, size_t i) {
  char *v = strdup(json_string_value(json_object_get(o, k)));
  v[i] = v[i] == '0' ? '1' : '0';
  json_object_set_new(o, k, json_string(v));
  free(v);
}

static void test_tamper(void **s) {
  (void)s;
  azt_fixture f;
  if (!azt__setup(&f)) skip();
  ct_err err;
  json_t *c = NULL, *ev;

  assert_int_equal(azt__verify(&f, f.ev, "challengf", NULL, 0, &c, &err), CT_ECRYPTO);
  assert_non_null(strstr(err.msg, "nonce (extraData) does not match"));
  assert_int_not_equal(azt__verify(&f, f.ev, NULL, NULL, 0, &c, &err), CT_OK);

  ev = json_deep_copy(f.ev);
  azt__flip_hex(azt__tpm(ev), "signature", 0);
  assert_int_equal(azt__verify(&f, ev, "challenge", NULL, 0, &c, &err), CT_ECRYPTO);
  assert_non_null(strstr(err.msg, "failed to verify vTPM quote"));
  json_decref(ev);

  ev = json_deep_copy(f.ev);
  azt__flip_hex(azt__tpm(ev), "message", 40);
  assert_int_not_equal(azt__verify(&f, ev, "challenge", NULL, 0, &c, &err), CT_OK);
  assert_non_null(strstr(err.msg, "vTPM quote"));
  json_decref(ev);

  ev = json_deep_copy(f.ev);
  json_t *pcrs = json_object_get(azt__tpm(ev), "pcrs");
  char *p5 = strdup(json_string_value(json_array_get(pcrs, 5)));
  p5[10] = p5[10] == 'a' ? 'b' : 'a';
  json_array_set_new(pcrs, 5, json_string(p5));
  free(p5);
  assert_int_equal(azt__verify(&f, ev, "challenge", NULL, 0, &c, &err), CT_ECRYPTO);
  assert_non_null(strstr(err.msg, "digest of PCRs"));
  json_decref(ev);

  /* HCL report: a var-data byte outside the AK (Trustee's 0x0880), and one inside the AK. */
  uint8_t *hcl = NULL;
  size_t hl = 0;
  CT_ASSERT_OK(ct_b64_decode(CT_B64_ANY, json_string_value(json_object_get(f.ev, "hcl_report")),
                             strlen(json_string_value(json_object_get(f.ev, "hcl_report"))), &hcl, &hl, &err), &err);
  size_t offs[2] = {0x0880, 0};
  az_hcl_report h;
  CT_ASSERT_OK(az_hcl_parse(hcl, hl, &h, &err), &err);
  const char *n = memmem(h.var_data, h.var_data_len, "\"n\":\"", 5);
  assert_non_null(n);
  offs[1] = (size_t)((const uint8_t *)n - hcl) + 20;
  const char *why[2] = {"report data mismatch", "vTPM quote"};
  for (int i = 0; i < 2; i++) {
    hcl[offs[i]] = hcl[offs[i]] == 'A' ? 'B' : 'A';
    char *b64 = NULL;
    CT_ASSERT_OK(ct_b64_encode(CT_B64_STD, hcl, hl, &b64, &err), &err);
    ev = json_deep_copy(f.ev);
    json_object_set_new(ev, "hcl_report", json_string(b64));
    assert_int_not_equal(azt__verify(&f, ev, "challenge", NULL, 0, &c, &err), CT_OK);
    if (!strstr(err.msg, why[i])) fail_msg("HCL flip at %#zx: %s", offs[i], err.msg);
    json_decref(ev);
    free(b64);
    hcl[offs[i]] = hcl[offs[i]] == 'B' ? 'A' : 'B';
  }
  free(hcl);

  /* TD quote: one bit in the TD report body. */
  uint8_t *td = NULL;
  size_t tl = 0;
  CT_ASSERT_OK(ct_b64_decode(CT_B64_ANY, json_string_value(json_object_get(f.ev, "td_quote")),
                             strlen(json_string_value(json_object_get(f.ev, "td_quote"))), &td, &tl, &err), &err);
  td[48 + DCAP_TD_MR_TD] ^= 1;
  char *b64 = NULL;
  CT_ASSERT_OK(ct_b64_encode(CT_B64_URL, td, tl, &b64, &err), &err);
  ev = json_deep_copy(f.ev);
  json_object_set_new(ev, "td_quote", json_string(b64));
  assert_int_equal(azt__verify(&f, ev, "challenge", NULL, 0, &c, &err), CT_ECRYPTO);
  assert_non_null(strstr(err.msg, "TD quote"));
  assert_non_null(strstr(err.msg, "quote signature"));
  json_decref(ev);
  free(b64);
  free(td);

  /* init-data: PCR8 must be SHA-256(0^32 || digest); 48-byte digests are refused. */
  uint8_t init[48] = {0};
  assert_int_equal(azt__verify(&f, f.ev, "challenge", init, 32, &c, &err), CT_ECRYPTO);
  assert_non_null(strstr(err.msg, "init-data mismatch"));
  assert_int_equal(azt__verify(&f, f.ev, "challenge", init, 48, &c, &err), CT_EINVAL);

  /* An SNP HCL report is not accepted here. */
  char *snp = tdx_test__read_text("az-snp-vtpm/evidence-v1.json");
  if (snp) {
    json_t *se = json_loads(snp, 0, NULL);
    ev = json_deep_copy(f.ev);
    json_object_set(ev, "hcl_report", json_object_get(se, "hcl_report"));
    assert_int_not_equal(azt__verify(&f, ev, "challenge", NULL, 0, &c, &err), CT_OK);
    assert_non_null(strstr(err.msg, "not a TDX report"));
    json_decref(ev);
    json_decref(se);
    free(snp);
  }
  azt__teardown(&f);
}

static json_t *azt__int_array(const uint8_t *b, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(b[i]));
  return a;
}

static json_t *azt__hex_to_ints(const json_t *hex) {
  uint8_t *raw = NULL;
  size_t n = 0;
  ct_err err;
  CT_ASSERT_OK(ct_hex_decode(json_string_value(hex), json_string_length(hex), &raw, &n, &err), &err);
  json_t *a = azt__int_array(raw, n);
  free(raw);
  return a;
}

/* Issue 13, finding 9: evidence in the older guest-components format (no "version"; every byte
 * field in serde's default form, a JSON array of byte values, pcrs as arrays of 32) was refused
 * as invalid input; Trustee accepts it. The v1 vector rewritten into that form verifies with the
 * same claims. */
static void test_regress_09_az_tdx_vtpm_v0(void **s) {
  (void)s;
  azt_fixture f;
  if (!azt__setup(&f)) skip();
  ct_err err;
  json_t *v0 = json_object();
  json_t *q1 = azt__tpm(f.ev), *q0 = json_object();
  json_object_set_new(q0, "signature", azt__hex_to_ints(json_object_get(q1, "signature")));
  json_object_set_new(q0, "message", azt__hex_to_ints(json_object_get(q1, "message")));
  json_t *pcrs = json_array();
  for (size_t i = 0; i < json_array_size(json_object_get(q1, "pcrs")); i++)
    json_array_append_new(pcrs, azt__hex_to_ints(json_array_get(json_object_get(q1, "pcrs"), i)));
  json_object_set_new(q0, "pcrs", pcrs);
  json_object_set_new(v0, "tpm_quote", q0);
  const char *keys[] = {"hcl_report", "td_quote"};
  for (int k = 0; k < 2; k++) {
    const char *b64 = json_string_value(json_object_get(f.ev, keys[k]));
    uint8_t *raw = NULL;
    size_t n = 0;
    CT_ASSERT_OK(ct_b64_decode(CT_B64_ANY, b64, strlen(b64), &raw, &n, &err), &err);
    json_object_set_new(v0, keys[k], azt__int_array(raw, n));
    free(raw);
  }
  json_t *c0 = NULL, *c1 = NULL;
  CT_ASSERT_OK(azt__verify(&f, v0, "challenge", NULL, 0, &c0, &err), &err);
  CT_ASSERT_OK(azt__verify(&f, f.ev, "challenge", NULL, 0, &c1, &err), &err);
  assert_true(json_equal(c0, c1));
  assert_string_equal(json_string_value(json_object_get(c0, "report_data")), "6368616c6c656e6765");
  json_decref(c0);
  json_decref(c1);
  /* still verified: another nonce, a changed PCR */
  assert_int_not_equal(azt__verify(&f, v0, "challengf", NULL, 0, &c0, &err), CT_OK);
  json_t *pcr0 = json_array_get(json_object_get(q0, "pcrs"), 0);
  json_array_set_new(pcr0, 0, json_integer((json_integer_value(json_array_get(pcr0, 0)) + 1) & 0xff));
  assert_int_not_equal(azt__verify(&f, v0, "challenge", NULL, 0, &c0, &err), CT_OK);
  /* without a version the byte fields must be in the v0 form */
  json_object_set(q0, "signature", json_object_get(q1, "signature"));
  assert_int_equal(azt__verify(&f, v0, "challenge", NULL, 0, &c0, &err), CT_EINVAL);
  assert_non_null(strstr(err.msg, "tpm_quote.signature must be an array of at most 1024 byte values"));
  json_decref(v0);
  azt__teardown(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_regress_09_az_tdx_vtpm_v0),
      cmocka_unit_test(test_golden),
      cmocka_unit_test(test_parts),
      cmocka_unit_test(test_tamper),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
