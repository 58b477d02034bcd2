/*
 * tdx verifier: Trustee's golden claims (tdx_quote_4.dat + CCEL_data), quote v4/v5 parsing, the
 * PCK/QE/attestation-key signature chain on real quotes, single-bit tamper tests, collateral
 * signatures over the raw bytes of the Intel samples, TCB evaluation, the verifier end to end.
 */
#include "ct_test_util.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/ecdsa.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "as_verifier.h"
#include "ct_codec.h"
#include "ct_file.h"
#include "tdx.h"
#include "tdx_test_env.h"

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
static CT_RESULT tdx_test__sigchain(const uint8_t *quote, size_t ql, ct_err *err) {
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

/* Every byte of every signed or binding region, one bit each: header, TD report body, quote
 * signature, attestation key, QE report, QE report signature, QE authentication data. */
static void test_tamper_sweep(void **s) {
  (void)s;
  const char *files[] = {"tdx/tdx_quote_4.dat", "tdx/tdx_quote_5.dat"};
  for (size_t fi = 0; fi < 2; fi++) {
    uint8_t *quote = NULL;
    size_t ql = 0;
    CT_READ_VECTOR(files[fi], &quote, &ql);
    ct_err err;
    dcap_quote q;
    CT_ASSERT_OK(dcap_quote_parse(quote, ql, &q, &err), &err);
    size_t end = (size_t)(q.qe_auth - quote) + q.qe_auth_len;
    size_t sig_start = (size_t)(q.signature - quote), checked = 0;
    for (size_t off = 0; off < end; off++) {
      /* The signature-data length and certification-data header are structure, not content. */
      if (off >= q.signed_len && off < sig_start) continue;
      if (off >= sig_start + 128 && off < sig_start + 134) continue;
      if (off >= (size_t)(q.qe_auth - quote) - 2 && off < (size_t)(q.qe_auth - quote)) continue;
      quote[off] ^= 0x10;
      ct_status st = tdx_test__sigchain(quote, ql, &err);
      quote[off] ^= 0x10;
      if (st == CT_OK) fail_msg("%s: bit flip at offset %zu accepted", files[fi], off);
      checked++;
    }
    assert_true(checked >= q.signed_len + 128 + DCAP_QE_REPORT_LEN + 64 + q.qe_auth_len);
    free(quote);
  }
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


static void test_tcb_levels(void **s) {
  (void)s;
  tdx_test_quote t;
  if (!tdx_test__load("tdx/tdx_quote_5.dat", &t)) skip();
  char *tcb0 = tdx_test__read_text("tdx/tcbInfo.json"), *qe0 = tdx_test__read_text("tdx/enclaveIdentity.json");
  char fm[64];
  snprintf(fm, sizeof fm, "\"fmspc\":\"%s\"", t.fmspc);
  char *tcbf = tdx_test__replace(tcb0, "\"fmspc\":\"00A06D080000\"", fm);
  char *tcb = tdx_test__fit_sgx(tcbf, t.pck.cpusvn);
  free(tcbf);
  ct_err err;
  dcap_tcb_result r;
  /* As published (FMSPC aside): TDX module 1.5 identity TDX_01 (ISVSVN 5 >= 4), platform level 1. */
  CT_ASSERT_OK(tdx_test__eval(&t, tcb, qe0, 0, &r, &err), &err);
  assert_string_equal(r.tcb_status, "UpToDate");
  assert_true(r.acceptable);
  char d[32];
  dcap_format_time(r.tcb_date, d);
  assert_string_equal(d, "2024-03-13T00:00:00Z");
  assert_int_equal(r.tcb_eval_num, 17);
  assert_true(r.collateral_expired); /* the samples' nextUpdate is 2025-11-26 */
  dcap_tcb_result_clear(&r);
  time_t before;
  CT_ASSERT_OK(dcap_parse_time("2025-11-01T00:00:00Z", &before, &err), &err);
  CT_ASSERT_OK(tdx_test__eval(&t, tcb, qe0, before, &r, &err), &err);
  assert_false(r.collateral_expired);
  dcap_format_time(r.earliest_expiration, d);
  assert_string_equal(d, "2025-11-26T13:07:17Z");
  dcap_tcb_result_clear(&r);

  /* Level 1 requires a higher PCESVN than the PCK certificate's (13): level 2 (OutOfDate). */
  char *t2 = tdx_test__replace(tcb, "\"pcesvn\":13", "\"pcesvn\":14");
  CT_ASSERT_OK(tdx_test__eval(&t, t2, qe0, 0, &r, &err), &err);
  assert_string_equal(r.tcb_status, "OutOfDate");
  assert_true(r.acceptable);
  dcap_format_time(r.tcb_date, d);
  assert_string_equal(d, "2018-01-04T00:00:00Z");
  dcap_tcb_result_clear(&r);
  free(t2);

  /* A TDX component above the report's TEE_TCB_SVN[2] (2) in every level: no level. */
  t2 = tdx_test__replace(tcb, "\"tdxtcbcomponents\":[{\"svn\":5", "\"tdxtcbcomponents\":[{\"svn\":5");
  char *t3 = t2;
  for (int i = 0; i < 2; i++) {
    char *at = strstr(t3, "\"tdxtcbcomponents\"");
    assert_non_null(at);
    char *third = at;
    for (int k = 0; k < 3; k++) third = strstr(third + 1, "{\"svn\":");
    third[7] = '3'; /* component 2: 2 -> 3 */
    t3 = at + 1;
  }
  assert_int_equal(tdx_test__eval(&t, t2, qe0, 0, &r, &err), CT_EDENIED);
  assert_non_null(strstr(err.msg, "TCB level not supported"));
  free(t2);

  /* Revoked platform level: evaluation succeeds but the status is terminal. */
  t2 = tdx_test__replace(tcb, "\"tcbStatus\":\"UpToDate\"}]}", "\"tcbStatus\":\"UpToDate\"}]}");
  free(t2);
  char *lvl = strstr(tcb, "\"tcbLevels\":[{\"tcb\":{\"sgxtcbcomponents\"");
  assert_non_null(lvl);
  char *st1 = strstr(lvl, "\"tcbStatus\":\"UpToDate\"");
  char *rev = malloc(strlen(tcb) + 16);
  size_t pre = (size_t)(st1 - tcb);
  memcpy(rev, tcb, pre);
  strcpy(rev + pre, "\"tcbStatus\":\"Revoked\"");
  strcat(rev, st1 + strlen("\"tcbStatus\":\"UpToDate\""));
  CT_ASSERT_OK(tdx_test__eval(&t, rev, qe0, 0, &r, &err), &err);
  assert_string_equal(r.tcb_status, "Revoked");
  assert_false(r.acceptable);
  dcap_tcb_result_clear(&r);
  free(rev);

  /* QE identity: out-of-date QE downgrades; wrong MRSIGNER and too-low ISVSVN are rejected. */
  char *qe = tdx_test__replace(qe0, "\"isvsvn\":4},\"tcbDate\":\"2024-03-13T00:00:00Z\",\"tcbStatus\":\"UpToDate\"",
                               "\"isvsvn\":4},\"tcbDate\":\"2024-03-13T00:00:00Z\",\"tcbStatus\":\"OutOfDate\"");
  CT_ASSERT_OK(tdx_test__eval(&t, tcb, qe, 0, &r, &err), &err);
  assert_string_equal(r.tcb_status, "OutOfDate");
  dcap_tcb_result_clear(&r);
  free(qe);
  qe = tdx_test__replace(qe0, "\"isvsvn\":4}", "\"isvsvn\":7}");
  assert_int_equal(tdx_test__eval(&t, tcb, qe, 0, &r, &err), CT_EDENIED);
  assert_non_null(strstr(err.msg, "QE ISVSVN 6"));
  free(qe);
  qe = tdx_test__replace(qe0, "\"mrsigner\":\"DC9E", "\"mrsigner\":\"DD9E");
  assert_int_equal(tdx_test__eval(&t, tcb, qe, 0, &r, &err), CT_EDENIED);
  assert_non_null(strstr(err.msg, "MRSIGNER"));
  free(qe);
  qe = tdx_test__replace(qe0, "\"isvprodid\":2", "\"isvprodid\":1");
  assert_int_equal(tdx_test__eval(&t, tcb, qe, 0, &r, &err), CT_EDENIED);
  free(qe);

  /* TDX module identity: unknown major version, and a module SVN below every level. */
  t2 = tdx_test__replace(tcb, "\"id\":\"TDX_01\"", "\"id\":\"TDX_02\"");
  assert_int_equal(tdx_test__eval(&t, t2, qe0, 0, &r, &err), CT_EDENIED);
  assert_non_null(strstr(err.msg, "TDX_01"));
  free(t2);
  t2 = tdx_test__replace(tcb, "\"isvsvn\":4},\"tcbDate\":\"2024-03-13T00:00:00Z\",\"tcbStatus\":\"UpToDate\"},{\"tcb\":{\"isvsvn\":2}",
                         "\"isvsvn\":6},\"tcbDate\":\"2024-03-13T00:00:00Z\",\"tcbStatus\":\"UpToDate\"},{\"tcb\":{\"isvsvn\":6}");
  assert_int_equal(tdx_test__eval(&t, t2, qe0, 0, &r, &err), CT_EDENIED);
  assert_non_null(strstr(err.msg, "TDX module SVN 5"));
  free(t2);

  /* The samples as published are for another FMSPC. */
  assert_int_equal(tdx_test__eval(&t, tcb0, qe0, 0, &r, &err), CT_EDENIED);
  assert_non_null(strstr(err.msg, "FMSPC"));
  free(tcb);
  free(tcb0);
  free(qe0);
  tdx_test__unload(&t);
}

/* TDX 1.0 quote (TEE_TCB_SVN 03 00 05...): module major 0 uses tdxModule and compares all 16
 * TDX components, so the published levels (component 0 = 5) do not cover SVN 3. */
static void test_tcb_tdx10(void **s) {
  (void)s;
  tdx_test_quote t;
  if (!tdx_test__load("tdx/tdx_quote_4.dat", &t)) skip();
  char *tcb0 = tdx_test__read_text("tdx/tcbInfo.json"), *qe0 = tdx_test__read_text("tdx/enclaveIdentity.json");
  char fm[64];
  snprintf(fm, sizeof fm, "\"fmspc\":\"%s\"", t.fmspc);
  char *tcb = tdx_test__replace(tcb0, "\"fmspc\":\"00A06D080000\"", fm);
  ct_err err;
  dcap_tcb_result r;
  assert_int_equal(tdx_test__eval(&t, tcb, qe0, 0, &r, &err), CT_EDENIED);
  assert_non_null(strstr(err.msg, "TCB level not supported"));
  free(tcb0);
  tdx_test__unload(&t);
  free(tcb);
  free(qe0);
}

static CT_RESULT tdx_test__verify(tdx_state *st, const uint8_t *quote, size_t ql, const uint8_t *ccel, size_t cl,
                                  const uint8_t *rd, size_t rdl, const uint8_t *id, size_t idl, json_t **claims,
                                  ct_err *err) {
  char *qb = NULL, *cb = NULL;
  CT_ASSERT_OK(ct_b64_encode(CT_B64_STD, quote, ql, &qb, err), err);
  if (ccel) CT_ASSERT_OK(ct_b64_encode(CT_B64_STD, ccel, cl, &cb, err), err);
  json_t *ev = json_pack("{s:s,s:o}", "quote", qb, "cc_eventlog", cb ? json_string(cb) : json_null());
  as_verify_request req = {.tee = "tdx", .evidence = ev, .report_data = rd, .report_data_len = rdl,
                           .init_data_digest = id, .init_data_digest_len = idl};
  const as_verifier *v = as_verifier_find("tdx");
  assert_non_null(v);
  ct_status s = v->verify(st, &req, claims, err);
  json_decref(ev);
  free(qb);
  free(cb);
  return s;
}

static void test_verifier_end_to_end(void **s) {
  (void)s;
  tdx_test_quote t;
  if (!tdx_test__load("tdx/tdx_quote_5.dat", &t)) skip();
  tdx_test_env env;
  if (!tdx_test__env(&t, &env)) skip();
  as_verifier_config cfg = {.tdx_collateral_dir = env.dir};
  tdx_state *st = NULL;
  ct_err err;
  CT_ASSERT_OK(tdx_state_new(&cfg, env.root_pem, 0, &st, &err), &err);
  json_t *claims = NULL;
  const uint8_t *rd = t.q.body + DCAP_TD_REPORT_DATA;
  uint8_t init[32] = {0};
  CT_ASSERT_OK(tdx_test__verify(st, t.raw, t.len, NULL, 0, rd, 64, init, 32, &claims, &err), &err);
  assert_string_equal(json_string_value(json_object_get(claims, "tcb_status")), "UpToDate");
  assert_string_equal(json_string_value(json_object_get(claims, "collateral_expiration_status")), "1");
  assert_string_equal(json_string_value(json_object_get(claims, "tcb_date")), "2024-03-13T00:00:00Z");
  assert_string_equal(json_string_value(json_object_get(claims, "sgx_type")), "Scalable");
  assert_int_equal(json_integer_value(json_object_get(claims, "tcb_eval_num")), 17);
  assert_true(json_is_array(json_object_get(claims, "advisory_ids")));
  assert_true(json_is_boolean(json_object_get(claims, "is_smt_enabled")));
  assert_non_null(json_object_get(claims, "platform_instance_id"));
  assert_string_equal(json_string_value(json_object_get(claims, "root_key_id")),
                      "46e403bd34f05a3f2817ab9badcaacc7ffc98e0f261008cd30dae936cace18d5dcf58eef31463613de1570d516200993");
  json_decref(claims);

  /* report_data shorter than 64 bytes is zero-padded: the quote's is not, so it fails. */
  uint8_t bad[64];
  memcpy(bad, rd, 64);
  bad[63] ^= 1;
  assert_int_equal(tdx_test__verify(st, t.raw, t.len, NULL, 0, bad, 64, NULL, 0, &claims, &err), CT_EDENIED);
  assert_non_null(strstr(err.msg, "REPORT_DATA"));
  assert_int_equal(tdx_test__verify(st, t.raw, t.len, NULL, 0, rd, 32, NULL, 0, &claims, &err), CT_EDENIED);
  uint8_t init_bad[32];
  memset(init_bad, 1, sizeof init_bad);
  assert_int_equal(tdx_test__verify(st, t.raw, t.len, NULL, 0, NULL, 0, init_bad, 32, &claims, &err), CT_EDENIED);
  assert_non_null(strstr(err.msg, "MRCONFIGID"));
  /* A flipped bit in the TD report body. */
  t.raw[54 + DCAP_TD_MR_TD] ^= 1;
  assert_int_equal(tdx_test__verify(st, t.raw, t.len, NULL, 0, NULL, 0, NULL, 0, &claims, &err), CT_ECRYPTO);
  assert_non_null(strstr(err.msg, "quote signature"));
  t.raw[54 + DCAP_TD_MR_TD] ^= 1;
  /* Malformed evidence. */
  json_t *ev = json_pack("{s:s}", "quote", "not base64!");
  as_verify_request req = {.tee = "tdx", .evidence = ev};
  assert_int_not_equal(as_verifier_find("tdx")->verify(st, &req, &claims, &err), CT_OK);
  json_decref(ev);
  tdx_state_free(st);

  /* The real Intel root does not anchor the test signing chain. */
  CT_ASSERT_OK(tdx_state_new(&cfg, NULL, 0, &st, &err), &err);
  assert_int_equal(tdx_test__verify(st, t.raw, t.len, NULL, 0, NULL, 0, NULL, 0, &claims, &err), CT_ECRYPTO);
  assert_non_null(strstr(err.msg, "TCB Info signature"));
  tdx_state_free(st);

  /* A tampered TCB Info body after signing. */
  char p[512];
  snprintf(p, sizeof p, "%s/tcb-info.json", env.dir);
  uint8_t *body = NULL;
  size_t bl = 0;
  CT_ASSERT_OK(ct_file_read(p, 1 << 20, &body, &bl, &err), &err);
  char *mod = tdx_test__replace((char *)body, "\"tcbStatus\":\"OutOfDate\"", "\"tcbStatus\":\"UpToDate\"");
  tdx_test__write(env.dir, "tcb-info.json", mod);
  CT_ASSERT_OK(tdx_state_new(&cfg, env.root_pem, 0, &st, &err), &err);
  assert_int_equal(tdx_test__verify(st, t.raw, t.len, NULL, 0, NULL, 0, NULL, 0, &claims, &err), CT_ECRYPTO);
  assert_non_null(strstr(err.msg, "TCB Info signature"));
  tdx_state_free(st);
  /* Restore the signed body, then revoke the TCB signing certificate in a root CA CRL. */
  tdx_test__write(env.dir, "tcb-info.json", (char *)body);
  X509_CRL *crl = X509_CRL_new();
  X509_CRL_set_version(crl, 1);
  X509_CRL_set_issuer_name(crl, X509_get_subject_name(env.root));
  ASN1_TIME *now = ASN1_TIME_set(NULL, time(NULL) - 60), *next = ASN1_TIME_set(NULL, time(NULL) + 86400);
  X509_CRL_set1_lastUpdate(crl, now);
  X509_CRL_set1_nextUpdate(crl, next);
  X509_REVOKED *rv = X509_REVOKED_new();
  X509_REVOKED_set_serialNumber(rv, X509_get_serialNumber(env.signer));
  X509_REVOKED_set_revocationDate(rv, now);
  X509_CRL_add0_revoked(crl, rv);
  assert_true(X509_CRL_sign(crl, env.root_key, EVP_sha256()) > 0);
  unsigned char *der = NULL;
  int dl = i2d_X509_CRL(crl, &der);
  snprintf(p, sizeof p, "%s/root-ca.crl.der", env.dir);
  CT_ASSERT_OK(ct_file_write_atomic(p, der, (size_t)dl, 0600, &err), &err);
  OPENSSL_free(der);
  X509_CRL_free(crl);
  ASN1_TIME_free(now);
  ASN1_TIME_free(next);
  CT_ASSERT_OK(tdx_state_new(&cfg, env.root_pem, 0, &st, &err), &err);
  assert_int_equal(tdx_test__verify(st, t.raw, t.len, NULL, 0, NULL, 0, NULL, 0, &claims, &err), CT_ECRYPTO);
  assert_non_null(strstr(err.msg, "revoked"));
  tdx_state_free(st);
  free(mod);
  free(body);
  tdx_test__env_free(&env);
  tdx_test__unload(&t);
}

/* tdx_quote_4.dat with CCEL_data: Trustee's own RTMR test pins CCEL_data to RTMR0
 * 2dc71230..., while the quote carries e940da7c...: the pair is a parsing fixture, and the
 * replay check must reject it. Without the event log the quote verifies. */
static void test_verifier_ccel_replay(void **s) {
  (void)s;
  tdx_test_quote t;
  if (!tdx_test__load("tdx/tdx_quote_4.dat", &t)) skip();
  uint8_t *ccel = NULL;
  size_t cl = 0;
  CT_READ_VECTOR("tdx/CCEL_data", &ccel, &cl);
  tdx_test_env env;
  if (!tdx_test__env(&t, &env)) skip();
  as_verifier_config cfg = {.tdx_collateral_dir = env.dir};
  tdx_state *st = NULL;
  ct_err err;
  CT_ASSERT_OK(tdx_state_new(&cfg, env.root_pem, 0, &st, &err), &err);
  json_t *claims = NULL;
  CT_ASSERT_OK(tdx_test__verify(st, t.raw, t.len, NULL, 0, NULL, 0, NULL, 0, &claims, &err), &err);
  /* PCESVN 11 is below level 1 (13): level 2, OutOfDate, which Trustee accepts. */
  assert_string_equal(json_string_value(json_object_get(claims, "tcb_status")), "OutOfDate");
  json_decref(claims);
  assert_int_equal(tdx_test__verify(st, t.raw, t.len, ccel, cl, NULL, 0, NULL, 0, &claims, &err), CT_EDENIED);
  assert_non_null(strstr(err.msg, "does not replay to RTMR0"));
  assert_non_null(strstr(err.msg, "2dc712306a963ead"));
  /* A broken event log is a parse error. */
  assert_int_not_equal(tdx_test__verify(st, t.raw, t.len, ccel, 40, NULL, 0, NULL, 0, &claims, &err), CT_OK);
  assert_non_null(strstr(err.msg, "Parse CC Eventlog failed"));
  tdx_state_free(st);
  tdx_test__env_free(&env);
  tdx_test__unload(&t);
  free(ccel);
}

/* The registered verifier (create() with the pinned Intel root) on the Intel samples: the real
 * TCB Signing chain and signatures pass, and the quote is refused for the FMSPC mismatch. */
static void test_verifier_intel_samples(void **s) {
  (void)s;
  const char *dir = tdx_test__collateral_dir(NULL, 0);
  if (!dir) skip();
  uint8_t *quote = NULL;
  size_t ql = 0;
  CT_READ_VECTOR("tdx/tdx_quote_5.dat", &quote, &ql);
  as_verifier_config cfg = {.tdx_collateral_dir = dir};
  const as_verifier *v = as_verifier_find("tdx");
  void *st = NULL;
  ct_err err;
  CT_ASSERT_OK(v->create(&cfg, &st, &err), &err);
  json_t *claims = NULL;
  assert_int_equal(tdx_test__verify(st, quote, ql, NULL, 0, NULL, 0, NULL, 0, &claims, &err), CT_EDENIED);
  assert_non_null(strstr(err.msg, "FMSPC 00a06d080000"));
  assert_non_null(strstr(err.msg, "90c06f000000"));
  v->destroy(st);
  tdx_test__rmdir();
  free(quote);
}

typedef struct tdx_test_thread {
  tdx_state *st;
  const uint8_t *quote;
  size_t len;
  int ok;
} tdx_test_thread;

static void *tdx_test__worker(void *arg) {
  tdx_test_thread *t = arg;
  for (int i = 0; i < 25; i++) {
    ct_err err;
    json_t *c = NULL;
    if (tdx_verify_quote(t->st, t->quote, t->len, NULL, 0, NULL, 0, NULL, NULL, &c, &err) == CT_OK) {
      t->ok++;
      json_decref(c);
    }
  }
  return NULL;
}

/* One state, four threads: the collateral and PCK caches are shared safely. */
static void test_verifier_threads(void **s) {
  (void)s;
  tdx_test_quote t;
  if (!tdx_test__load("tdx/tdx_quote_5.dat", &t)) skip();
  tdx_test_env env;
  if (!tdx_test__env(&t, &env)) skip();
  as_verifier_config cfg = {.tdx_collateral_dir = env.dir};
  tdx_state *st = NULL;
  ct_err err;
  CT_ASSERT_OK(tdx_state_new(&cfg, env.root_pem, 0, &st, &err), &err);
  pthread_t th[4];
  tdx_test_thread w[4];
  for (int i = 0; i < 4; i++) {
    w[i] = (tdx_test_thread){.st = st, .quote = t.raw, .len = t.len};
    assert_int_equal(pthread_create(&th[i], NULL, tdx_test__worker, &w[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(w[i].ok, 25);
  }
  tdx_state_free(st);
  tdx_test__env_free(&env);
  tdx_test__unload(&t);
}

/* ---- PCCS fetching against a local python http.server on 127.0.0.1 ---------------------------- */

static const char tdx_test_pccs_py[] =
    "import sys, urllib.parse, http.server\n"
    "d = sys.argv[1]\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def log_message(self, *a): pass\n"
    "    def do_GET(self):\n"
    "        u = urllib.parse.urlparse(self.path)\n"
    "        with open(d + '/requests.log', 'a') as f: f.write(self.path + '\\n')\n"
    "        chain = urllib.parse.quote(open(d + '/tcb-info-issuer-chain.pem').read())\n"
    "        if u.path == '/tdx/certification/v4/tcb':\n"
    "            body, hdr = open(d + '/tcb-info.json', 'rb').read(), 'TCB-Info-Issuer-Chain'\n"
    "        elif u.path == '/tdx/certification/v4/qe/identity':\n"
    "            body, hdr = open(d + '/qe-identity.json', 'rb').read(), 'SGX-Enclave-Identity-Issuer-Chain'\n"
    "        else:\n"
    "            self.send_response(404); self.end_headers(); return\n"
    "        self.send_response(200)\n"
    "        self.send_header(hdr, chain)\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers(); self.wfile.write(body)\n"
    "s = http.server.HTTPServer(('127.0.0.1', 0), H)\n"
    "sys.stdout.write('%d\\n' % s.server_address[1]); sys.stdout.flush()\n"
    "s.serve_forever()\n";

static void test_pccs_fetch_and_cache(void **s) {
  (void)s;
  tdx_test_quote t;
  if (!tdx_test__load("tdx/tdx_quote_5.dat", &t)) skip();
  tdx_test_env env;
  if (!tdx_test__env(&t, &env)) skip();
  char script[512], cache[512], log[512];
  snprintf(script, sizeof script, "%s/pccs.py", env.dir);
  snprintf(cache, sizeof cache, "%s/cache", env.dir);
  snprintf(log, sizeof log, "%s/requests.log", env.dir);
  tdx_test__write(env.dir, "pccs.py", tdx_test_pccs_py);
  mkdir(cache, 0700);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    execl("/usr/bin/python3", "python3", script, env.dir, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  char portbuf[16] = {0};
  ssize_t n = 0;
  while (n < (ssize_t)sizeof portbuf - 1 && !strchr(portbuf, '\n')) {
    ssize_t r = read(fds[0], portbuf + n, sizeof portbuf - 1 - (size_t)n);
    if (r <= 0) break;
    n += r;
  }
  assert_true(n > 0);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/", atoi(portbuf));
  as_verifier_config cfg = {.tdx_pccs_url = url, .tdx_collateral_cache_dir = cache, .remote_wait_ms = 30000};
  tdx_state *st = NULL;
  ct_err err;
  CT_ASSERT_OK(tdx_state_new(&cfg, env.root_pem, 0, &st, &err), &err);
  json_t *claims = NULL;
  CT_ASSERT_OK(tdx_test__verify(st, t.raw, t.len, NULL, 0, NULL, 0, NULL, 0, &claims, &err), &err);
  assert_string_equal(json_string_value(json_object_get(claims, "tcb_status")), "UpToDate");
  json_decref(claims);
  /* Second verification: served from the in-memory cache, no new request. */
  uint8_t *reqs = NULL;
  size_t rl1 = 0, rl2 = 0;
  CT_ASSERT_OK(ct_file_read(log, 1 << 20, &reqs, &rl1, &err), &err);
  assert_non_null(strstr((char *)reqs, "/tdx/certification/v4/tcb?fmspc="));
  free(reqs);
  CT_ASSERT_OK(tdx_test__verify(st, t.raw, t.len, NULL, 0, NULL, 0, NULL, 0, &claims, &err), &err);
  json_decref(claims);
  CT_ASSERT_OK(ct_file_read(log, 1 << 20, &reqs, &rl2, &err), &err);
  free(reqs);
  assert_int_equal(rl1, rl2);
  tdx_state_free(st);
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  close(fds[0]);
  /* PCCS gone: a new instance falls back to the on-disk cache. */
  CT_ASSERT_OK(tdx_state_new(&cfg, env.root_pem, 0, &st, &err), &err);
  CT_ASSERT_OK(tdx_test__verify(st, t.raw, t.len, NULL, 0, NULL, 0, NULL, 0, &claims, &err), &err);
  json_decref(claims);
  tdx_state_free(st);
  /* Neither PCCS nor cache: a clear I/O error. */
  as_verifier_config nocache = {.tdx_pccs_url = url, .remote_wait_ms = 30000};
  CT_ASSERT_OK(tdx_state_new(&nocache, env.root_pem, 0, &st, &err), &err);
  assert_int_equal(tdx_test__verify(st, t.raw, t.len, NULL, 0, NULL, 0, NULL, 0, &claims, &err), CT_EIO);
  tdx_state_free(st);
  char p[600];
  const char *files[] = {"tcb-info-90C06F000000.json", "tcb-info-issuer-chain.pem", "qe-identity.json",
                         "qe-identity-issuer-chain.pem"};
  for (size_t i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/%s", cache, files[i]);
    unlink(p);
  }
  rmdir(cache);
  unlink(script);
  unlink(log);
  tdx_test__env_free(&env);
  tdx_test__unload(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_golden_claims),
      cmocka_unit_test(test_quote_v5),
      cmocka_unit_test(test_parse_truncations),
      cmocka_unit_test(test_signature_chain_real_quotes),
      cmocka_unit_test(test_tamper),
      cmocka_unit_test(test_tamper_sweep),
      cmocka_unit_test(test_span_scanner),
      cmocka_unit_test(test_collateral_signatures),
      cmocka_unit_test(test_tcb_evaluation),
      cmocka_unit_test(test_tcb_levels),
      cmocka_unit_test(test_tcb_tdx10),
      cmocka_unit_test(test_verifier_end_to_end),
      cmocka_unit_test(test_verifier_ccel_replay),
      cmocka_unit_test(test_pccs_fetch_and_cache),
      cmocka_unit_test(test_verifier_intel_samples),
      cmocka_unit_test(test_verifier_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
