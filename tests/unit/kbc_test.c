/*
 * KBS client unit tests that need no KBS: URI parsing, the runtime-data hash Trustee recomputes,
 * option validation and transport failure handling. The RCAR exchange itself is exercised
 * against the real KBS in tests/e2e/test_cdh*.py.
 */
#include "ct_test_util.h"

#include <openssl/pem.h>
#include <time.h>

#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_json.h"
#include "jose.h"
#include "kbc.h"

static void test_parse_uri(void **state) {
  (void)state;
  ct_err err;
  char plugin[32], path[256];
  CT_ASSERT_OK(kbc_parse_uri("kbs:///default/key/test", plugin, sizeof plugin, path, sizeof path, &err),
               &err);
  assert_string_equal(plugin, "resource");
  assert_string_equal(path, "default/key/test");
  CT_ASSERT_OK(kbc_parse_uri("kbs://kbs.example:8080/a/b/c.d-e_f", plugin, sizeof plugin, path,
                             sizeof path, &err), &err);
  assert_string_equal(path, "a/b/c.d-e_f");
  CT_ASSERT_OK(kbc_parse_uri("kbs+sample:///x/y?q=1&r=2", plugin, sizeof plugin, path, sizeof path,
                             &err), &err);
  assert_string_equal(plugin, "sample");
  assert_string_equal(path, "x/y?q=1&r=2");
  const char *bad[] = {"kbs:///a/b",        "kbs:///a/b/c/d",     "kbs:///a/../c",
                       "kbs:///a/.b/c",     "kbs:///a//c",        "http:///a/b/c",
                       "kbs:/a/b/c",        "kbs+:///a/b/c",      "kbs:///a/b/c?x=<y>",
                       "kbs:///a/b/c%2f",   "kbs:///a b/c/d",     "kbsx:///a/b/c",
                       "kbs+a/b:///x/y/z",  "", "kbs://"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (kbc_parse_uri(bad[i], plugin, sizeof plugin, path, sizeof path, &err) == CT_OK)
      fail_msg("accepted %s", bad[i]);
  char longuri[2000];
  memset(longuri, 'a', sizeof longuri - 1);
  longuri[sizeof longuri - 1] = 0;
  memcpy(longuri, "kbs:///", 7);
  assert_int_equal(kbc_parse_uri(longuri, plugin, sizeof plugin, path, sizeof path, &err), CT_ELIMIT);
}

/* The hash input is JCS of {additional-evidence, nonce, tee-pubkey}: sorted, no spaces. */
static void test_report_data_matches_trustee_canonical_form(void **state) {
  (void)state;
  ct_err err;
  json_t *jwk = json_pack("{s:s,s:s,s:s,s:s,s:s}", "kty", "EC", "crv", "P-256", "alg",
                          "ECDH-ES+A256KW", "x", "WbbP-4aqDOD9iEu8qNc5Ks3mHMbRM8KgwvXXNf5lkD0", "y",
                          "Nf0AJfMc6aPrm5N6VfyP4GCOaxxUIpJOnbqyKa9Ni_g");
  uint8_t rd[48];
  CT_ASSERT_OK(kbc_report_data("q1Zx/abc+def=", jwk, rd, &err), &err);
  const char *canon =
      "{\"additional-evidence\":\"\",\"nonce\":\"q1Zx/abc+def=\",\"tee-pubkey\":{\"alg\":"
      "\"ECDH-ES+A256KW\",\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":"
      "\"WbbP-4aqDOD9iEu8qNc5Ks3mHMbRM8KgwvXXNf5lkD0\",\"y\":"
      "\"Nf0AJfMc6aPrm5N6VfyP4GCOaxxUIpJOnbqyKa9Ni_g\"}}";
  uint8_t want[48];
  ct_sha384(canon, strlen(canon), want);
  assert_memory_equal(rd, want, 48);
  json_decref(jwk);
}

static CT_RESULT never_called(void *ud, const uint8_t *rd, size_t len, json_t **ev, ct_err *err) {
  (void)rd;
  (void)len;
  (void)ev;
  (*(int *)ud)++;
  return ct_fail(err, CT_EINTERNAL, "evidence must not be requested");
}

static void test_options(void **state) {
  (void)state;
  ct_err err;
  kbc_client *c = NULL;
  int calls = 0;
  kbc_opts o = {.tee = "sample", .evidence = never_called, .evidence_ud = &calls};
  assert_int_equal(kbc_client_new("ftp://kbs", NULL, &o, &c, &err), CT_EINVAL);
  assert_int_equal(kbc_client_new("http://kbs", NULL, NULL, &c, &err), CT_EINVAL);
  o.tee_key_alg = "A128KW";
  assert_int_equal(kbc_client_new("http://kbs", NULL, &o, &c, &err), CT_EUNSUPPORTED);
  o.tee_key_alg = NULL;
  o.token = "a.b.c";
  assert_int_equal(kbc_client_new("http://kbs", NULL, &o, &c, &err), CT_EINVAL);
  assert_non_null(strstr(err.msg, "passport"));
  o.token = NULL;
  CT_ASSERT_OK(kbc_client_new("http://127.0.0.1:1/", NULL, &o, &c, &err), &err);
  uint8_t *out = NULL;
  size_t len = 0;
  assert_int_equal(kbc_get_resource(c, "a/b", &out, &len, &err), CT_EINVAL);
  assert_int_equal(kbc_get_resource(c, "a/../b", &out, &len, &err), CT_EINVAL);
  assert_int_equal(kbc_get(c, "bad/plugin", "a/b/c", &out, &len, &err), CT_EINVAL);
  assert_null(kbc_token(c));
  char *pem = NULL;
  assert_int_equal(kbc_tee_key_pem(c, &pem, &err), CT_ENOTFOUND);
  kbc_client_free(c);
  assert_int_equal(calls, 0);
}

/* Nothing listens on port 1: bounded retries, then a transport error naming the URL. */
static void test_transport_failure_is_bounded(void **state) {
  (void)state;
  ct_err err;
  kbc_client *c = NULL;
  int calls = 0;
  kbc_opts o = {.tee = "sample", .evidence = never_called, .evidence_ud = &calls, .attempts = 3,
                .backoff_ms = 10, .timeout_s = 2};
  CT_ASSERT_OK(kbc_client_new("http://127.0.0.1:1", NULL, &o, &c, &err), &err);
  uint8_t *out = NULL;
  size_t len = 0;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  assert_int_equal(kbc_get_resource(c, "default/key/one", &out, &len, &err), CT_EIO);
  clock_gettime(CLOCK_MONOTONIC, &b);
  assert_non_null(strstr(err.msg, "127.0.0.1:1/kbs/v0/auth"));
  assert_non_null(strstr(err.msg, "after 3 attempts"));
  assert_int_equal(calls, 0);
  kbc_stats s;
  kbc_get_stats(c, &s);
  assert_int_equal(s.attestations, 0);
  kbc_client_free(c);
}

/* Passport mode: the key comes from PEM and an expired token is reported without contacting
 * anyone (there is no attester to renew it). */
static void test_passport_expired_token(void **state) {
  (void)state;
  ct_err err;
  jose_jwk *k = NULL;
  CT_ASSERT_OK(jose_jwk_generate("ES256", NULL, &k, &err), &err);
  char claims[128];
  snprintf(claims, sizeof claims, "{\"exp\":%lld}", (long long)time(NULL) - 100);
  char *jwt = NULL;
  CT_ASSERT_OK(jose_jws_sign("ES256", jose_jwk_pkey(k), NULL, (const uint8_t *)claims,
                             strlen(claims), &jwt, &err), &err);
  jose_jwk *tee = NULL;
  CT_ASSERT_OK(jose_jwk_generate("ECDH-ES+A256KW", "P-256", &tee, &err), &err);
  /* Export the TEE key through an RCAR-less client is not possible; build the PEM directly. */
  BIO *b = BIO_new(BIO_s_mem());
  assert_int_equal(PEM_write_bio_PrivateKey(b, jose_jwk_pkey(tee), NULL, NULL, 0, NULL, NULL), 1);
  char *pem = NULL;
  long n = BIO_get_mem_data(b, &pem);
  char *pemz = strndup(pem, (size_t)n);
  BIO_free(b);
  kbc_opts o = {.token = jwt, .tee_key_pem = pemz};
  kbc_client *c = NULL;
  CT_ASSERT_OK(kbc_client_new("http://127.0.0.1:1", NULL, &o, &c, &err), &err);
  assert_string_equal(kbc_token(c), jwt);
  char *back = NULL;
  CT_ASSERT_OK(kbc_tee_key_pem(c, &back, &err), &err);
  assert_non_null(strstr(back, "BEGIN PRIVATE KEY"));
  free(back);
  uint8_t *out = NULL;
  size_t len = 0;
  assert_int_equal(kbc_get_resource(c, "a/b/c", &out, &len, &err), CT_EEXPIRED);
  kbc_client_free(c);
  o.tee_key_pem = "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n";
  assert_int_not_equal(kbc_client_new("http://127.0.0.1:1", NULL, &o, &c, &err), CT_OK);
  free(pemz);
  free(jwt);
  jose_jwk_free(k);
  jose_jwk_free(tee);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_uri),
      cmocka_unit_test(test_report_data_matches_trustee_canonical_form),
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_transport_failure_is_bounded),
      cmocka_unit_test(test_passport_expired_token),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
