/*
 * Unit tests for the Rego io.jwt.* built-ins (src/rego/builtins_jwt.c): keys and tokens are made
 * here with OpenSSL and the jose module, and results are cross-checked against jose_jws_verify
 * and a direct HMAC.
 */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ct_codec.h"
#include "ct_test_util.h"
#include "jose.h"
#include "rego.h"

static const char policy_src[] =
    "package t\n"
    "rs256 := io.jwt.verify_rs256(input.tok, input.key)\n"
    "ps256 := io.jwt.verify_ps256(input.tok, input.key)\n"
    "es256 := io.jwt.verify_es256(input.tok, input.key)\n"
    "eddsa := io.jwt.verify_eddsa(input.tok, input.key)\n"
    "hs256 := io.jwt.verify_hs256(input.tok, input.key)\n"
    "dv := io.jwt.decode_verify(input.tok, input.cons)\n"
    "raw := io.jwt.encode_sign_raw(input.h, input.p, input.key)\n"
    "enc := io.jwt.encode_sign(input.ho, input.po, input.ko)\n";

static rego_policy *policy(void) {
  ct_err err = {0};
  rego_module m = {"jwt.rego", policy_src};
  rego_policy *p = NULL;
  CT_ASSERT_OK(rego_compile(&m, 1, NULL, &p, &err), &err);
  return p;
}

/* Evaluates data.t.<rule> with `input` (a jansson object, consumed); returns the result (or
 * NULL when undefined). Fails the test on an evaluation error. */
static json_t *run(const rego_policy *p, const char *rule, json_t *input) {
  ct_err err = {0};
  char q[64];
  snprintf(q, sizeof(q), "data.t.%s", rule);
  json_t *res = NULL;
  ct_status st = rego_eval(p, q, input, NULL, &res, &err);
  json_decref(input);
  if (st != CT_OK) fail_msg("%s: %s", q, err.msg);
  return res;
}

/* Evaluates with strict built-in errors and expects an error containing `want`. */
static void run_err(const rego_policy *p, const char *rule, json_t *input, const char *want) {
  ct_err err = {0};
  char q[64];
  snprintf(q, sizeof(q), "x = data.t.%s", rule);
  char *in = json_dumps(input, JSON_COMPACT);
  json_decref(input);
  rego_query_opts qo = {.input_json = in, .strict_builtin_errors = true};
  char *res = NULL;
  ct_status st = rego_query(p, q, &qo, &res, &err);
  free(in);
  if (st == CT_OK) fail_msg("%s: expected an error with '%s', got %s", rule, want, res);
  if (!strstr(err.msg, want)) fail_msg("%s: error '%s' lacks '%s'", rule, err.msg, want);
}

static bool run_bool(const rego_policy *p, const char *rule, json_t *input) {
  json_t *r = run(p, rule, input);
  assert_non_null(r);
  assert_true(json_is_boolean(r));
  bool b = json_is_true(r);
  json_decref(r);
  return b;
}

static char *sign(const char *alg, EVP_PKEY *k, const char *extra_hdr, const char *payload) {
  ct_err err = {0};
  json_t *h = extra_hdr ? json_loads(extra_hdr, 0, NULL) : NULL;
  char *tok = NULL;
  CT_ASSERT_OK(jose_jws_sign(alg, k, h, (const uint8_t *)payload, strlen(payload), &tok, &err), &err);
  json_decref(h);
  return tok;
}

static char *pubkey_pem(EVP_PKEY *k) {
  BIO *b = BIO_new(BIO_s_mem());
  assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
  char *p = NULL;
  long n = BIO_get_mem_data(b, &p);
  char *s = strndup(p, (size_t)n);
  BIO_free(b);
  return s;
}

static char *cert_pem(EVP_PKEY *k) {
  X509 *x = X509_new();
  assert_non_null(x);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, k);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"jwt-test", -1, -1, 0);
  X509_set_issuer_name(x, n);
  assert_true(X509_sign(x, k, EVP_sha256()) > 0);
  BIO *b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, x);
  char *p = NULL;
  long len = BIO_get_mem_data(b, &p);
  char *s = strndup(p, (size_t)len);
  BIO_free(b);
  X509_free(x);
  return s;
}

static char *b64u(const uint8_t *d, size_t n) {
  ct_err err = {0};
  char *s = NULL;
  CT_ASSERT_OK(ct_b64_encode(CT_B64_URL, d, n, &s, &err), &err);
  return s;
}

/* A private JWK for an EC P-256 or Ed25519 key (the jose module only exports public JWKs). */
static json_t *private_jwk(const jose_jwk *k) {
  ct_err err = {0};
  json_t *j = NULL;
  CT_ASSERT_OK(jose_jwk_to_json(k, &j, &err), &err);
  EVP_PKEY *pk = jose_jwk_pkey(k);
  uint8_t d[66];
  size_t dl = sizeof(d);
  if (EVP_PKEY_is_a(pk, "ED25519")) {
    assert_int_equal(EVP_PKEY_get_raw_private_key(pk, d, &dl), 1);
  } else {
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_PRIV_KEY, &bn), 1);
    dl = 32;
    assert_int_equal(BN_bn2binpad(bn, d, 32), 32);
    BN_clear_free(bn);
  }
  char *ds = b64u(d, dl);
  json_object_set_new(j, "d", json_string(ds));
  free(ds);
  return j;
}

static json_t *in_tok_key(const char *tok, const char *key) { return json_pack("{s:s,s:s}", "tok", tok, "key", key); }

/* ---------------------------------------------------------------- tests */
static void test_rsa(void **state) {
  (void)state;
  ct_err err = {0};
  rego_policy *p = policy();
  jose_jwk *k = NULL, *other = NULL;
  CT_ASSERT_OK(jose_jwk_generate("RS256", NULL, &k, &err), &err);
  CT_ASSERT_OK(jose_jwk_generate("RS256", NULL, &other, &err), &err);
  char *pem = pubkey_pem(jose_jwk_pkey(k)), *cert = cert_pem(jose_jwk_pkey(k));
  char *opem = pubkey_pem(jose_jwk_pkey(other));
  char *rs = sign("RS256", jose_jwk_pkey(k), NULL, "{\"iss\":\"me\"}");
  char *ps = sign("PS256", jose_jwk_pkey(k), NULL, "{\"iss\":\"me\"}");
  assert_true(run_bool(p, "rs256", in_tok_key(rs, pem)));
  assert_true(run_bool(p, "rs256", in_tok_key(rs, cert)));
  assert_false(run_bool(p, "rs256", in_tok_key(rs, opem)));
  assert_true(run_bool(p, "ps256", in_tok_key(ps, pem)));
  assert_false(run_bool(p, "ps256", in_tok_key(rs, pem))); /* wrong padding */
  assert_false(run_bool(p, "es256", in_tok_key(rs, pem))); /* wrong key type */
  /* a flipped signature byte */
  char *bad = strdup(rs);
  size_t n = strlen(bad);
  bad[n - 3] = bad[n - 3] == 'A' ? 'B' : 'A';
  assert_false(run_bool(p, "rs256", in_tok_key(bad, pem)));
  /* a JWK Set with the right key behind a kid */
  json_t *pub = NULL;
  CT_ASSERT_OK(jose_jwk_to_json(k, &pub, &err), &err);
  json_object_set_new(pub, "kid", json_string("k1"));
  json_t *setj = json_pack("{s:[o]}", "keys", pub);
  char *set = json_dumps(setj, JSON_COMPACT);
  json_decref(setj);
  assert_true(run_bool(p, "rs256", in_tok_key(rs, set)));
  free(set);
  free(bad);
  free(rs);
  free(ps);
  free(pem);
  free(cert);
  free(opem);
  jose_jwk_free(k);
  jose_jwk_free(other);
  rego_policy_free(p);
}

static void test_ec_eddsa_decode_verify(void **state) {
  (void)state;
  ct_err err = {0};
  rego_policy *p = policy();
  jose_jwk *ec = NULL, *ed = NULL;
  CT_ASSERT_OK(jose_jwk_generate("ES256", NULL, &ec, &err), &err);
  CT_ASSERT_OK(jose_jwk_generate("EdDSA", NULL, &ed, &err), &err);
  char *ecpem = pubkey_pem(jose_jwk_pkey(ec)), *edpem = pubkey_pem(jose_jwk_pkey(ed));
  char *tok = sign("ES256", jose_jwk_pkey(ec), "{\"typ\":\"JWT\"}",
                   "{\"iss\":\"me\",\"aud\":[\"x\",\"y\"],\"exp\":2000,\"nbf\":1000}");
  char *edtok = sign("EdDSA", jose_jwk_pkey(ed), NULL, "{\"sub\":\"s\"}");
  assert_true(run_bool(p, "es256", in_tok_key(tok, ecpem)));
  assert_false(run_bool(p, "es256", in_tok_key(tok, edpem)));
  assert_true(run_bool(p, "eddsa", in_tok_key(edtok, edpem)));
  assert_false(run_bool(p, "eddsa", in_tok_key(edtok, ecpem)));

  /* decode_verify: within the time window, with matching iss and aud */
  json_t *r = run(p, "dv", json_pack("{s:s,s:{s:s,s:s,s:s,s:I}}", "tok", tok, "cons", "cert", ecpem, "iss", "me", "aud",
                                     "y", "time", (json_int_t)1500000000000LL));
  char *got = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
  assert_string_equal(got, "[true,{\"alg\":\"ES256\",\"typ\":\"JWT\"},{\"aud\":[\"x\",\"y\"],\"exp\":2000,\"iss\":\"me\",\"nbf\":1000}]");
  free(got);
  json_decref(r);
  static const char unver[] = "[false,{},{}]";
  struct {
    const char *iss, *aud;
    json_int_t t;
  } bad[] = {{"me", "z", 1500000000000LL}, {"you", "x", 1500000000000LL}, {"me", "x", 2000000000000LL},
             {"me", "x", 999000000000LL}, {"me", "", 1500000000000LL}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    r = run(p, "dv", json_pack("{s:s,s:{s:s,s:s,s:s,s:I}}", "tok", tok, "cons", "cert", ecpem, "iss", bad[i].iss,
                               "aud", bad[i].aud, "time", bad[i].t));
    got = json_dumps(r, JSON_COMPACT);
    if (strcmp(got, unver)) fail_msg("case %zu: got %s", i, got);
    free(got);
    json_decref(r);
  }
  /* the alg constraint */
  r = run(p, "dv", json_pack("{s:s,s:{s:s,s:s,s:s,s:I}}", "tok", tok, "cons", "cert", ecpem, "alg", "ES384", "aud",
                             "x", "time", (json_int_t)1500000000000LL));
  got = json_dumps(r, JSON_COMPACT);
  assert_string_equal(got, unver);
  free(got);
  json_decref(r);

  /* constraint errors */
  run_err(p, "dv", json_pack("{s:s,s:{}}", "tok", tok, "cons"), "no key constraint");
  run_err(p, "dv", json_pack("{s:s,s:{s:s,s:s}}", "tok", tok, "cons", "cert", ecpem, "secret", "s"),
          "duplicate key constraints");
  run_err(p, "dv", json_pack("{s:s,s:{s:s,s:s}}", "tok", tok, "cons", "cert", ecpem, "bogus", "s"),
          "unknown token validation constraint: bogus");
  run_err(p, "dv", json_pack("{s:s,s:{s:s,s:i}}", "tok", tok, "cons", "cert", ecpem, "time", -1),
          "must not be negative");
  free(tok);
  free(edtok);
  free(ecpem);
  free(edpem);
  jose_jwk_free(ec);
  jose_jwk_free(ed);
  rego_policy_free(p);
}

static void test_hmac_and_encode(void **state) {
  (void)state;
  ct_err err = {0};
  rego_policy *p = policy();
  static const char secret[] = "s3cr3t-key-for-hs256";
  char *k64 = b64u((const uint8_t *)secret, strlen(secret));
  json_t *oct = json_pack("{s:s,s:s}", "kty", "oct", "k", k64);
  char *octs = json_dumps(oct, JSON_COMPACT);
  static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", pay[] = "{\"iss\":\"joe\"}";
  json_t *r = run(p, "raw", json_pack("{s:s,s:s,s:s}", "h", hdr, "p", pay, "key", octs));
  const char *tok = json_string_value(r);
  assert_non_null(tok);
  /* the signature is HMAC-SHA256 over the two first sections, computed independently */
  const char *dot2 = strrchr(tok, '.');
  uint8_t mac[32];
  unsigned ml = 0;
  HMAC(EVP_sha256(), secret, (int)strlen(secret), (const uint8_t *)tok, (size_t)(dot2 - tok), mac, &ml);
  char *want = b64u(mac, ml);
  assert_string_equal(dot2 + 1, want);
  free(want);
  assert_true(run_bool(p, "hs256", in_tok_key(tok, secret)));
  assert_false(run_bool(p, "hs256", in_tok_key(tok, "other")));
  json_t *dv = run(p, "dv", json_pack("{s:s,s:{s:s}}", "tok", tok, "cons", "secret", secret));
  char *got = json_dumps(dv, JSON_COMPACT | JSON_SORT_KEYS);
  assert_string_equal(got, "[true,{\"alg\":\"HS256\",\"typ\":\"JWT\"},{\"iss\":\"joe\"}]");
  free(got);
  json_decref(dv);
  json_decref(r);

  /* encode_sign with an EC and an Ed25519 private JWK, checked by jose_jws_verify */
  const char *algs[] = {"ES256", "EdDSA"};
  for (size_t i = 0; i < 2; i++) {
    jose_jwk *k = NULL;
    CT_ASSERT_OK(jose_jwk_generate(algs[i], NULL, &k, &err), &err);
    json_t *priv = private_jwk(k);
    r = run(p, "enc", json_pack("{s:{s:s},s:{s:s,s:i},s:o}", "ho", "alg", algs[i], "po", "sub", "a<b", "n", 5, "ko",
                                priv));
    assert_non_null(json_string_value(r));
    json_t *h = NULL;
    uint8_t *pl = NULL;
    size_t pll = 0;
    CT_ASSERT_OK(jose_jws_verify(json_string_value(r), jose_jwk_pkey(k), algs[i], &h, &pl, &pll, &err), &err);
    assert_string_equal((const char *)pl, "{\"n\":5,\"sub\":\"a\\u003cb\"}");
    free(pl);
    json_decref(h);
    json_decref(r);
    jose_jwk_free(k);
  }

  /* encode errors, as OPA words them */
  run_err(p, "raw", json_pack("{s:s,s:s,s:s}", "h", "", "p", pay, "key", octs), "cannot parse empty string");
  run_err(p, "raw", json_pack("{s:s,s:s,s:s}", "h", "{}", "p", pay, "key", octs), "header \"alg\" not found");
  run_err(p, "raw", json_pack("{s:s,s:s,s:s}", "h", "{\"alg\":\"none\"}", "p", pay, "key", octs),
          "unknown JWS algorithm: none");
  run_err(p, "raw", json_pack("{s:s,s:s,s:s}", "h", hdr, "p", "e", "key", octs), "type is JWT but payload is not JSON");
  run_err(p, "raw", json_pack("{s:s,s:s,s:s}", "h", "{\"alg\":\"ES256\"}", "p", pay, "key", octs), "invalid key type");
  free(octs);
  free(k64);
  json_decref(oct);
  rego_policy_free(p);
}

static void test_malformed(void **state) {
  (void)state;
  ct_err err = {0};
  rego_policy *p = policy();
  jose_jwk *k = NULL;
  CT_ASSERT_OK(jose_jwk_generate("ES256", NULL, &k, &err), &err);
  char *pem = pubkey_pem(jose_jwk_pkey(k));
  char *tok = sign("ES256", jose_jwk_pkey(k), NULL, "{}");
  run_err(p, "es256", in_tok_key("abc", pem), "encoded JWT had no period separators");
  run_err(p, "es256", in_tok_key("a.b", pem), "encoded JWT must have 3 sections, found 2");
  run_err(p, "es256", in_tok_key("a.b.c.d", pem), "encoded JWT must have 3 sections, found 4");
  run_err(p, "es256", in_tok_key(tok, "not a key"), "failed to parse a JWK key (set)");
  char *extra = NULL;
  assert_true(asprintf(&extra, "%sjunk", pem) > 0);
  run_err(p, "es256", in_tok_key(tok, extra), "extra data after a PEM certificate block");
  run_err(p, "es256", in_tok_key(tok, "-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n"),
          "failed to extract a Key from the PEM certificate");
  run_err(p, "es256", in_tok_key("e30.e30.!!", pem), "illegal base64 data at input byte 0");
  run_err(p, "es256", in_tok_key("eyJlbmMiOiJ4In0.e30.AAAA", pem), "JWE object");
  /* an oversized token is refused, not processed */
  size_t big = (1u << 20) + 16;
  char *huge = malloc(big + 1);
  memset(huge, 'A', big);
  huge[10] = '.';
  huge[20] = '.';
  huge[big] = 0;
  run_err(p, "es256", in_tok_key(huge, pem), "encoded JWT larger than");
  free(huge);
  free(extra);
  free(tok);
  free(pem);
  jose_jwk_free(k);
  rego_policy_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rsa),
      cmocka_unit_test(test_ec_eddsa_decode_verify),
      cmocka_unit_test(test_hmac_and_encode),
      cmocka_unit_test(test_malformed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
