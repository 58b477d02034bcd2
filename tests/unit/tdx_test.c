/*
 * tdx verifier: Trustee's golden claims (tdx_quote_4.dat + CCEL_data), quote v4/v5 parsing, the
 * PCK/QE/attestation-key signature chain on real quotes, single-bit tamper tests, collateral
 * signatures over the raw bytes of the Intel samples, TCB evaluation, the verifier end to end.
 */
#include "ct_test_util.h"

#include <jansson.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include "as_verifier.h"
#include "ct_codec.h"
#include "ct_file.h"
#include "tdx.h"

/* Intel SGX TCB Signing certificate (2025-05-06 .. 2032-05-06), public Intel certificate data:
 * the issuer of the TCB Info / QE Identity samples in vectors/tdx (their signatures verify with
 * its key). Normally delivered in the TCB-Info-Issuer-Chain header of a PCS response. */
static const char tdx_test_tcb_signing_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIICjTCCAjKgAwIBAgIUfjiC1ftVKUpASY5FhAPpFJG99FUwCgYIKoZIzj0EAwIw\n"
    "aDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENv\n"
    "cnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJ\n"
    "BgNVBAYTAlVTMB4XDTI1MDUwNjA5MjUwMFoXDTMyMDUwNjA5MjUwMFowbDEeMBwG\n"
    "A1UEAwwVSW50ZWwgU0dYIFRDQiBTaWduaW5nMRowGAYDVQQKDBFJbnRlbCBDb3Jw\n"
    "b3JhdGlvbjEUMBIGA1UEBwwLU2FudGEgQ2xhcmExCzAJBgNVBAgMAkNBMQswCQYD\n"
    "VQQGEwJVUzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABENFG8xzydWRfK92bmGv\n"
    "P+mAh91PEyV7Jh6FGJd5ndE9aBH7R3E4A7ubrlh/zN3C4xvpoouGlirMba+W2lju\n"
    "ypajgbUwgbIwHwYDVR0jBBgwFoAUImUM1lqdNInzg7SVUr9QGzknBqwwUgYDVR0f\n"
    "BEswSTBHoEWgQ4ZBaHR0cHM6Ly9jZXJ0aWZpY2F0ZXMudHJ1c3RlZHNlcnZpY2Vz\n"
    "LmludGVsLmNvbS9JbnRlbFNHWFJvb3RDQS5kZXIwHQYDVR0OBBYEFH44gtX7VSlK\n"
    "QEmORYQD6RSRvfRVMA4GA1UdDwEB/wQEAwIGwDAMBgNVHRMBAf8EAjAAMAoGCCqG\n"
    "SM49BAMCA0kAMEYCIQDdmmRuAo3qCO8TC1IoJMITAoOEw4dlgEBHzSz1TuMSTAIh\n"
    "AKVTqOkt59+co0O3m3hC+v5Fb00FjYWcgeu3EijOULo5\n"
    "-----END CERTIFICATE-----\n";

static void tdx_test__diff(const json_t *want, const json_t *got, const char *path) {
  if (json_equal(want, got)) return;
  if (json_is_object(want) && json_is_object(got)) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)want, k, v) {
      char p[512];
      snprintf(p, sizeof p, "%s.%s", path, k);
      tdx_test__diff(v, json_object_get(got, k), p);
    }
    json_object_foreach((json_t *)got, k, v) if (!json_object_get(want, k)) fprintf(stderr, "extra %s.%s\n", path, k);
    return;
  }
  char *a = want ? json_dumps(want, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
  char *b = got ? json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
  fprintf(stderr, "%s differs:\n want %.600s\n got  %.600s\n", path, a ? a : "(missing)", b ? b : "(missing)");
  free(a);
  free(b);
}

/* ---- parsing and golden claims -------------------------------------------------------------- */

static void test_golden_claims(void **s) {
  (void)s;
  uint8_t *quote = NULL, *ccel = NULL, *exp = NULL;
  size_t ql = 0, cl = 0, el = 0;
  CT_READ_VECTOR("tdx/tdx_quote_4.dat", &quote, &ql);
  CT_READ_VECTOR("tdx/CCEL_data", &ccel, &cl);
  CT_READ_VECTOR("tdx/parse_tdx_claims_expected.json", &exp, &el);
  ct_err err;
  dcap_quote q;
  CT_ASSERT_OK(dcap_quote_parse(quote, ql, &q, &err), &err);
  assert_int_equal(q.version, 4);
  assert_int_equal(ql, 4936);
  ccel_log log;
  CT_ASSERT_OK(ccel_parse(ccel, cl, &log, &err), &err);
  STACK_OF(X509) *chain = NULL;
  CT_ASSERT_OK(dcap_pck_chain_load(&q, &chain, &err), &err);
  dcap_pck_info pck;
  CT_ASSERT_OK(dcap_pck_info_read(sk_X509_value(chain, 0), &pck, &err), &err);
  json_t *claims = NULL;
  CT_ASSERT_OK(tdx_claims_build(&q, &log, &pck, &claims, &err), &err);
  json_t *want = json_loadb((const char *)exp, el, 0, NULL);
  assert_non_null(want);
  tdx_test__diff(want, claims, "");
  assert_true(json_equal(want, claims));
  json_decref(want);
  json_decref(claims);
  sk_X509_pop_free(chain, X509_free);
  ccel_free(&log);
  free(quote);
  free(ccel);
  free(exp);
}

static void test_quote_v5(void **s) {
  (void)s;
  uint8_t *quote = NULL;
  size_t ql = 0;
  CT_READ_VECTOR("tdx/tdx_quote_5.dat", &quote, &ql);
  ct_err err;
  dcap_quote q;
  CT_ASSERT_OK(dcap_quote_parse(quote, ql, &q, &err), &err);
  assert_int_equal(q.version, 5);
  assert_int_equal(q.body_type, 3);
  json_t *claims = NULL;
  CT_ASSERT_OK(tdx_claims_build(&q, NULL, NULL, &claims, &err), &err);
  json_t *qj = json_object_get(claims, "quote");
  assert_string_equal(json_string_value(json_object_get(qj, "type")), "0300");
  assert_string_equal(json_string_value(json_object_get(qj, "size")), "88020000");
  assert_string_equal(json_string_value(json_object_get(json_object_get(qj, "header"), "version")), "0500");
  assert_non_null(json_object_get(json_object_get(qj, "body"), "tee_tcb_svn2"));
  assert_non_null(json_object_get(json_object_get(qj, "body"), "mr_servicetd"));
  assert_null(json_object_get(claims, "uefi_event_logs"));
  json_decref(claims);
  free(quote);
}

static void test_parse_truncations(void **s) {
  (void)s;
  uint8_t *quote = NULL;
  size_t ql = 0;
  CT_READ_VECTOR("tdx/tdx_quote_4.dat", &quote, &ql);
  ct_err err;
  dcap_quote q;
  for (size_t cut = 0; cut < ql; cut++) assert_int_not_equal(dcap_quote_parse(quote, cut, &q, &err), CT_OK);
  quote[0] = 3;
  assert_int_equal(dcap_quote_parse(quote, ql, &q, &err), CT_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "version 3"));
  free(quote);
}

/* ---- signature chain and tamper tests ------------------------------------------------------- */

/* Runs the full signature chain (no collateral) on a quote buffer. */
static ct_status tdx_test__sigchain(const uint8_t *quote, size_t ql, ct_err *err) {
  dcap_quote q;
  CT_GUARD(dcap_quote_parse(quote, ql, &q, err));
  STACK_OF(X509) *chain = NULL;
  CT_GUARD(dcap_pck_chain_load(&q, &chain, err));
  dcap_pck_info pck;
  ct_status st = dcap_pck_info_read(sk_X509_value(chain, 0), &pck, err);
  if (st == CT_OK) st = dcap_verify_chain(chain, NULL, 0, err);
  if (st == CT_OK) st = dcap_verify_signatures(&q, sk_X509_value(chain, 0), err);
  sk_X509_pop_free(chain, X509_free);
  return st;
}

static void test_signature_chain_real_quotes(void **s) {
  (void)s;
  const char *files[] = {"tdx/tdx_quote_4.dat", "tdx/tdx_quote_5.dat", "az-tdx-vtpm/td-quote.bin"};
  for (size_t i = 0; i < 3; i++) {
    uint8_t *quote = NULL;
    size_t ql = 0;
    CT_READ_VECTOR(files[i], &quote, &ql);
    ct_err err;
    CT_ASSERT_OK(tdx_test__sigchain(quote, ql, &err), &err);
    free(quote);
  }
}

/* Flips one bit at `off` and expects a failure whose message contains `why`. */
static void tdx_test__flip(uint8_t *quote, size_t ql, size_t off, const char *why) {
  quote[off] ^= 0x01;
  ct_err err;
  ct_status st = tdx_test__sigchain(quote, ql, &err);
  quote[off] ^= 0x01;
  if (st == CT_OK) fail_msg("bit flip at %zu accepted (expected: %s)", off, why);
  if (!strstr(err.msg, why)) fail_msg("bit flip at %zu: \"%s\" does not mention \"%s\"", off, err.msg, why);
}

static void test_tamper(void **s) {
  (void)s;
  uint8_t *quote = NULL;
  size_t ql = 0;
  CT_READ_VECTOR("tdx/tdx_quote_4.dat", &quote, &ql);
  ct_err err;
  dcap_quote q;
  CT_ASSERT_OK(dcap_quote_parse(quote, ql, &q, &err), &err);
  size_t sig = (size_t)(q.signature - quote), ak = (size_t)(q.att_key - quote);
  size_t qer = (size_t)(q.qe_report - quote), qes = (size_t)(q.qe_report_sig - quote);
  size_t auth = (size_t)(q.qe_auth - quote), pem = (size_t)(q.pck_chain - quote);
  tdx_test__flip(quote, ql, 12, "quote signature");                      /* header: vendor id */
  tdx_test__flip(quote, ql, 30, "quote signature");                      /* header: user data */
  tdx_test__flip(quote, ql, 48 + DCAP_TD_MR_TD, "quote signature");      /* body: MRTD */
  tdx_test__flip(quote, ql, 48 + DCAP_TD_REPORT_DATA + 5, "quote signature");
  tdx_test__flip(quote, ql, 48 + DCAP_TD_RTMR0 + 47, "quote signature");
  tdx_test__flip(quote, ql, sig + 3, "quote signature");
  tdx_test__flip(quote, ql, sig + 40, "quote signature");
  tdx_test__flip(quote, ql, ak + 10, "attestation key");                 /* att key bound by QE */
  tdx_test__flip(quote, ql, qer + DCAP_QE_MRSIGNER, "QE report signature");
  tdx_test__flip(quote, ql, qer + DCAP_QE_REPORT_DATA, "QE report signature");
  tdx_test__flip(quote, ql, qes + 1, "QE report signature");
  tdx_test__flip(quote, ql, qes + 63, "QE report signature");
  if (q.qe_auth_len) tdx_test__flip(quote, ql, auth, "QE report data");
  /* A bit inside the PCK certificate's base64 body (the signature value near its end): the
   * certificate no longer verifies under its issuer. */
  const char *end = strstr((const char *)quote + pem, "-----END CERTIFICATE-----");
  assert_non_null(end);
  size_t in_sig = (size_t)((const uint8_t *)end - quote) - 20;
  quote[in_sig] = quote[in_sig] == 'A' ? 'B' : 'A';
  CT_ASSERT_OK(dcap_quote_parse(quote, ql, &q, &err), &err);
  assert_int_not_equal(tdx_test__sigchain(quote, ql, &err), CT_OK);
  assert_true(strstr(err.msg, "PCK chain") != NULL || strstr(err.msg, "PCK certificate") != NULL);
  free(quote);
}

/* ---- collateral ---------------------------------------------------------------------------- */

static char tdx_test_dir[256];

/* A collateral directory with the Intel samples and the TCB signing chain. */
static const char *tdx_test__collateral_dir(const char *tcb_override, size_t tcb_len) {
  snprintf(tdx_test_dir, sizeof tdx_test_dir, "/tmp/tdx_test_collateral_%d", (int)getpid());
  mkdir(tdx_test_dir, 0700);
  uint8_t *tcb = NULL, *qe = NULL;
  size_t tl = 0, qel = 0;
  char p[4096];
  ct_err err;
  if (!ct_test_vector_path("tdx/tcbInfo.json", p, sizeof p)) return NULL;
  CT_ASSERT_OK(ct_file_read(p, 1 << 20, &tcb, &tl, &err), &err);
  if (!ct_test_vector_path("tdx/enclaveIdentity.json", p, sizeof p)) return NULL;
  CT_ASSERT_OK(ct_file_read(p, 1 << 20, &qe, &qel, &err), &err);
  snprintf(p, sizeof p, "%s/tcb-info.json", tdx_test_dir);
  CT_ASSERT_OK(ct_file_write_atomic(p, tcb_override ? (const uint8_t *)tcb_override : tcb,
                                    tcb_override ? tcb_len : tl, 0600, &err), &err);
  snprintf(p, sizeof p, "%s/qe-identity.json", tdx_test_dir);
  CT_ASSERT_OK(ct_file_write_atomic(p, qe, qel, 0600, &err), &err);
  snprintf(p, sizeof p, "%s/tcb-info-issuer-chain.pem", tdx_test_dir);
  CT_ASSERT_OK(ct_file_write_atomic(p, tdx_test_tcb_signing_pem, strlen(tdx_test_tcb_signing_pem), 0600, &err), &err);
  free(tcb);
  free(qe);
  return tdx_test_dir;
}

static void tdx_test__rmdir(void) {
  char p[512];
  const char *names[] = {"tcb-info.json", "qe-identity.json", "tcb-info-issuer-chain.pem"};
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s/%s", tdx_test_dir, names[i]);
    unlink(p);
  }
  rmdir(tdx_test_dir);
}

static void test_collateral_signatures(void **s) {
  (void)s;
  const char *dir = tdx_test__collateral_dir(NULL, 0);
  if (!dir) skip();
  ct_err err;
  uint8_t fmspc[6] = {0};
  dcap_collateral *c = NULL;
  CT_ASSERT_OK(dcap_collateral_load_dir(dir, fmspc, true, &c, &err), &err);
  X509 *root = NULL;
  CT_ASSERT_OK(dcap_intel_root(&root, &err), &err);
  CT_ASSERT_OK(dcap_collateral_verify(c, root, 0, &err), &err);
  dcap_collateral_free(c);
  tdx_test__rmdir();

  /* Same JSON value, different bytes (a space after a colon): the raw-span signature fails. */
  uint8_t *tcb = NULL;
  size_t tl = 0;
  CT_READ_VECTOR("tdx/tcbInfo.json", &tcb, &tl);
  char *alt = malloc(tl + 2);
  const char *colon = strstr((const char *)tcb, "\"id\":");
  size_t at = (size_t)(colon - (const char *)tcb) + 5;
  memcpy(alt, tcb, at);
  alt[at] = ' ';
  memcpy(alt + at + 1, tcb + at, tl - at);
  dir = tdx_test__collateral_dir(alt, tl + 1);
  CT_ASSERT_OK(dcap_collateral_load_dir(dir, fmspc, true, &c, &err), &err);
  assert_int_equal(dcap_collateral_verify(c, root, 0, &err), CT_ECRYPTO);
  assert_non_null(strstr(err.msg, "TCB Info signature"));
  dcap_collateral_free(c);
  tdx_test__rmdir();

  /* One changed digit in the signed span. */
  memcpy(alt, tcb, tl);
  char *num = strstr(alt, "\"tcbEvaluationDataNumber\":17");
  assert_non_null(num);
  num[strlen("\"tcbEvaluationDataNumber\":1")] = '8';
  dir = tdx_test__collateral_dir(alt, tl);
  CT_ASSERT_OK(dcap_collateral_load_dir(dir, fmspc, true, &c, &err), &err);
  assert_int_equal(dcap_collateral_verify(c, root, 0, &err), CT_ECRYPTO);
  dcap_collateral_free(c);
  tdx_test__rmdir();

  /* A duplicated signed member is refused by the span scanner / strict parser. */
  const char *dup = "{\"tcbInfo\":{\"id\":\"TDX\"},\"tcbInfo\":{\"id\":\"SGX\"},\"signature\":\"00\"}";
  dcap_signed_json sj;
  assert_int_not_equal(dcap_signed_json_parse(dup, strlen(dup), "tcbInfo", NULL, 0, &sj, &err), CT_OK);
  X509_free(root);
  free(alt);
  free(tcb);
}

static void test_span_scanner(void **s) {
  (void)s;
  ct_err err;
  const char *v;
  size_t n;
  const char *doc = " { \"a\" : [1, {\"x\":\"}\\\"\"}] , \"tcbInfo\" :{\"k\":\"v\"} ,\"signature\":\"ab\"}";
  CT_ASSERT_OK(dcap_json_member_span(doc, strlen(doc), "tcbInfo", &v, &n, &err), &err);
  assert_int_equal(n, strlen("{\"k\":\"v\"}"));
  assert_memory_equal(v, "{\"k\":\"v\"}", n);
  CT_ASSERT_OK(dcap_json_member_span(doc, strlen(doc), "signature", &v, &n, &err), &err);
  assert_memory_equal(v, "\"ab\"", n);
  assert_int_not_equal(dcap_json_member_span(doc, strlen(doc), "missing", &v, &n, &err), CT_OK);
  const char *bad[] = {"[1]", "{\"tcbInfo\":", "{\"tcbInfo\":{\"a\":1}", "{\"tcbInfo\" 1}", "{"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_not_equal(dcap_json_member_span(bad[i], strlen(bad[i]), "tcbInfo", &v, &n, &err), CT_OK);
}

/* TCB evaluation of the real v5 quote against the Intel samples (FMSPC permitting). */
static void test_tcb_evaluation(void **s) {
  (void)s;
  const char *dir = tdx_test__collateral_dir(NULL, 0);
  if (!dir) skip();
  const char *files[] = {"tdx/tdx_quote_4.dat", "tdx/tdx_quote_5.dat", "az-tdx-vtpm/td-quote.bin"};
  for (size_t i = 0; i < 3; i++) {
    uint8_t *quote = NULL;
    size_t ql = 0;
    CT_READ_VECTOR(files[i], &quote, &ql);
    ct_err err;
    dcap_quote q;
    CT_ASSERT_OK(dcap_quote_parse(quote, ql, &q, &err), &err);
    STACK_OF(X509) *chain = NULL;
    CT_ASSERT_OK(dcap_pck_chain_load(&q, &chain, &err), &err);
    dcap_pck_info pck;
    CT_ASSERT_OK(dcap_pck_info_read(sk_X509_value(chain, 0), &pck, &err), &err);
    dcap_collateral *c = NULL;
    CT_ASSERT_OK(dcap_collateral_load_dir(dir, pck.fmspc, pck.platform_ca, &c, &err), &err);
    dcap_tcb_result r;
    char fm[13];
    ct_hex_into(pck.fmspc, 6, fm);
    ct_status st = dcap_tcb_evaluate(c, &q, &pck, chain, 0, &r, &err);
    fprintf(stderr, "%s: fmspc %s platform_ca %d sgx_type %d pcesvn %u -> %s %s\n", files[i], fm,
            pck.platform_ca, pck.sgx_type, pck.pcesvn, st == CT_OK ? r.tcb_status : "error",
            st == CT_OK ? "" : err.msg);
    if (st == CT_OK) dcap_tcb_result_clear(&r);
    dcap_collateral_free(c);
    sk_X509_pop_free(chain, X509_free);
    free(quote);
  }
  tdx_test__rmdir();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_golden_claims),
      cmocka_unit_test(test_quote_v5),
      cmocka_unit_test(test_parse_truncations),
      cmocka_unit_test(test_signature_chain_real_quotes),
      cmocka_unit_test(test_tamper),
      cmocka_unit_test(test_span_scanner),
      cmocka_unit_test(test_collateral_signatures),
      cmocka_unit_test(test_tcb_evaluation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
