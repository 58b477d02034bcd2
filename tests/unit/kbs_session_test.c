/*
 * The attested-session cache keeps a token's claims parsed: what it keeps must be exactly what
 * parsing the token's payload gives (resource policies, audit records and refusal messages read
 * them), and claims that would not parse back keep the token instead.
 */
#include "ct_test_util.h"

#include "as_service.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_json.h"
#include "jose.h"
#include "kbs_session.h"
#include "kvs.h"
#include "rvps.h"

static json_t *payload_parsed(const char *token) {
  const char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
  assert_non_null(d2);
  uint8_t *payload = NULL;
  size_t plen = 0;
  ct_err err;
  CT_ASSERT_OK(ct_b64_decode(CT_B64_URL, d1 + 1, (size_t)(d2 - d1 - 1), &payload, &plen, &err), &err);
  json_t *v = NULL;
  CT_ASSERT_OK(ct_json_parse((const char *)payload, plen, KBS_SESSION_CLAIMS_DEPTH, &v, &err), &err);
  free(payload);
  return v;
}

/* Equal values with their members in the same order. */
static void assert_same_json(const json_t *a, const json_t *b) {
  assert_true(json_equal(a, b));
  char *ta = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY), *tb = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
  assert_non_null(ta);
  assert_non_null(tb);
  assert_string_equal(ta, tb);
  free(ta);
  free(tb);
}

/* Attests a fresh session with token + claims and reads back what the cache kept. */
static void attest_and_get(kbs_sessions *ss, const char *token, const json_t *claims, kbs_session_view *v) {
  char cookie[KBS_COOKIE_MAX], nonce[KBS_NONCE_B64_LEN + 1];
  time_t exp;
  ct_err err;
  CT_ASSERT_OK(kbs_sessions_create(ss, "sample", 300, cookie, nonce, &exp, &err), &err);
  CT_ASSERT_OK(kbs_sessions_get(ss, cookie, v, &err), &err);
  assert_false(v->attested);
  CT_ASSERT_OK(kbs_sessions_attest(ss, v, token, claims, &err), &err);
  CT_ASSERT_OK(kbs_sessions_get(ss, cookie, v, &err), &err);
  assert_true(v->attested);
}

static void test_claims_are_the_payload_parsed(void **state) {
  (void)state;
  ct_err err;
  kvs *store = NULL;
  rvps *rv = NULL;
  kvs_config kc = {.type = KVS_MEMORY};
  CT_ASSERT_OK(kvs_open(&kc, &store, &err), &err);
  CT_ASSERT_OK(rvps_new(store, &rv, &err), &err);
  as_service *as = NULL;
  as_config cfg = {.store = store, .rvps = rv, .token_duration_min = 5, .enable_sample_tee = true};
  CT_ASSERT_OK(as_service_new(&cfg, &as, &err), &err);
  kbs_sessions *ss = NULL;
  CT_ASSERT_OK(kbs_sessions_new(16, NULL, &ss, &err), &err);
  /* The default policy, then one whose extensions carry escapes, non-ASCII text, reals and keys
   * that sort differently from the order they were written in. */
  const char *policies[] = {
      NULL,
      "package policy\nimport rego.v1\ntrust_claims := {\"hardware\": 2, \"executables\": 3}\n"
      "extensions := [{\"name\": \"z.last\", \"key\": 1, \"value\": {\"b\": 0.1, \"a\": \"\\\"\\\\\\n\\u00e9\\u4e2d\", "
      "\"A\": [1e300, -0.5, 9223372036854775807], \"\": null}}, {\"name\": \"0first\", \"key\": 2, \"value\": true}]\n"};
  for (size_t i = 0; i < sizeof policies / sizeof *policies; i++) {
    if (policies[i]) CT_ASSERT_OK(as_set_policy(as, "default_cpu", policies[i], strlen(policies[i]), &err), &err);
    json_t *rt = json_pack("{s:{s:s, s:s}, s:s, s:s}", "tee-pubkey", "kty", "EC", "y", "B", "nonce", "bm9uY2U=",
                           "additional-evidence", "");
    char *canon = NULL;
    size_t clen = 0;
    CT_ASSERT_OK(ct_jcs_string(rt, &canon, &clen, &err), &err);
    uint8_t d[48];
    ct_sha384(canon, clen, d);
    free(canon);
    char *b64 = NULL;
    CT_ASSERT_OK(ct_b64_encode(CT_B64_STD, d, sizeof d, &b64, &err), &err);
    json_t *ev = json_pack("{s:s, s:s, s:{s:i, s:i}}", "svn", "1", "report_data", b64, "platform_version", "minor", 2,
                           "major", 1);
    free(b64);
    as_request req = {.tee = "sample", .evidence = ev, .runtime_data = rt};
    char *token = NULL;
    json_t *claims = NULL;
    CT_ASSERT_OK(as_evaluate(as, &req, &token, &claims, &err), &err);
    kbs_session_view v;
    attest_and_get(ss, token, claims, &v);
    assert_null(v.token);
    assert_non_null(v.claims);
    json_t *want = payload_parsed(token);
    assert_same_json(v.claims, want);
    CT_ASSERT_OK(jose_jwt_check_times(v.claims, (int64_t)time(NULL), 60, true, &err), &err);
    json_decref(want);
    kbs_session_view_clear(&v);
    json_decref(claims);
    free(token);
    json_decref(ev);
    json_decref(rt);
  }
  kbs_sessions_free(ss);
  as_service_free(as);
  rvps_free(rv);
  kvs_close(store);
}

static json_t *nested(int levels) {
  json_t *v = json_integer(1);
  for (int i = 0; i < levels; i++) v = i % 2 ? json_pack("{s:o}", "k", v) : json_pack("[o]", v);
  return v;
}

/* A resource request parses the token's payload with a depth limit and refuses NUL characters:
 * claims it would refuse are not kept parsed, the token is, and the request fails as before. */
static void test_claims_that_would_not_parse_keep_the_token(void **state) {
  (void)state;
  ct_err err;
  kbs_sessions *ss = NULL;
  CT_ASSERT_OK(kbs_sessions_new(16, NULL, &ss, &err), &err);
  kbs_session_view v;
  json_t *deep_ok = nested(KBS_SESSION_CLAIMS_DEPTH), *too_deep = nested(KBS_SESSION_CLAIMS_DEPTH + 1);
  attest_and_get(ss, "h.p.s", deep_ok, &v);
  assert_non_null(v.claims);
  assert_true(json_equal(v.claims, deep_ok));
  kbs_session_view_clear(&v);
  attest_and_get(ss, "h.p.s", too_deep, &v);
  assert_null(v.claims);
  assert_string_equal(v.token, "h.p.s");
  kbs_session_view_clear(&v);

  json_t *nul_value = json_pack("{s:s%}", "k", "a\0b", (size_t)3);
  attest_and_get(ss, "h.p.s", nul_value, &v);
  assert_null(v.claims);
  assert_string_equal(v.token, "h.p.s");
  kbs_session_view_clear(&v);
  json_t *nul_key = json_object();
  json_object_setn_new(nul_key, "a\0b", 3, json_true());
  attest_and_get(ss, "h.p.s", nul_key, &v);
  assert_null(v.claims);
  kbs_session_view_clear(&v);
  /* Without claims the token is kept, as before. */
  attest_and_get(ss, "h.p.s", NULL, &v);
  assert_null(v.claims);
  assert_string_equal(v.token, "h.p.s");
  kbs_session_view_clear(&v);

  json_decref(deep_ok);
  json_decref(too_deep);
  json_decref(nul_value);
  json_decref(nul_key);
  kbs_sessions_free(ss);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_claims_are_the_payload_parsed),
      cmocka_unit_test(test_claims_that_would_not_parse_keep_the_token),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
