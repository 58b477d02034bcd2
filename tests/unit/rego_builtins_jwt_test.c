/*
 * Unit tests for the Rego built-in families added beside the engine's core: uri.* and uuid.*
 * (src/rego/builtins_uri.c), crypto.x509.* and crypto.parse_private_keys
 * (src/rego/builtins_x509.c), regex.globs_match (builtins_glob.c), yaml.* (builtins_yaml.c),
 * strings.render_template (builtins_tmpl.c). Each expression is evaluated through the public API and its
 * JSON result compared with what OPA returns; certificates and keys are made here with OpenSSL.
 */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ct_test_util.h"
#include "rego.h"

static const char *g_input; /* input JSON for the next evaluations (NULL: none) */

/* Evaluates `x = <expr>` and returns the JSON text of x (or "undefined"); caller frees. */
static char *eval_expr(const char *expr, bool strict, char **errmsg) {
  ct_err err = {0};
  rego_policy *p = NULL;
  CT_ASSERT_OK(rego_compile(NULL, 0, NULL, &p, &err), &err);
  char q[4096];
  snprintf(q, sizeof(q), "x = %s", expr);
  rego_query_opts qo = {.input_json = g_input, .strict_builtin_errors = strict};
  char *res = NULL;
  ct_status st = rego_query(p, q, &qo, &res, &err);
  rego_policy_free(p);
  if (st != CT_OK) {
    if (!errmsg) fail_msg("%s: %s", expr, err.msg);
    *errmsg = strdup(err.msg);
    return NULL;
  }
  json_t *j = json_loads(res, 0, NULL);
  free(res);
  assert_non_null(j);
  json_t *x = json_array_size(j) ? json_object_get(json_object_get(json_array_get(j, 0), "bindings"), "x") : NULL;
  char *out = x ? json_dumps(x, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : strdup("undefined");
  json_decref(j);
  return out;
}

static void expect(const char *expr, const char *want) {
  char *got = eval_expr(expr, false, NULL);
  if (strcmp(got, want)) fail_msg("%s: got %s, want %s", expr, got, want);
  free(got);
}

static void expect_err(const char *expr, const char *want) {
  char *msg = NULL;
  char *got = eval_expr(expr, true, &msg);
  if (got) fail_msg("%s: expected an error with '%s', got %s", expr, want, got);
  if (!strstr(msg, want)) fail_msg("%s: error '%s' lacks '%s'", expr, msg, want);
  free(msg);
}

static void test_uri_parse(void **state) {
  (void)state;
  expect("uri.parse(\"https://u:p@example.com:8443/a%2Fb/c?x=1&y#frag\")",
         "{\"fragment\":\"frag\",\"hostname\":\"example.com\",\"path\":\"/a/b/c\",\"port\":\"8443\","
         "\"raw_path\":\"/a%2Fb/c\",\"raw_query\":\"x=1&y\",\"scheme\":\"https\"}");
  /* an escape that the default encoding reproduces collapses raw_path to path */
  expect("uri.parse(\"http://h/a%20b\")", "{\"hostname\":\"h\",\"path\":\"/a b\",\"raw_path\":\"/a b\",\"scheme\":\"http\"}");
  expect("uri.parse(\"HTTP://[fe80::1%25eth0]:80/\")",
         "{\"hostname\":\"fe80::1%eth0\",\"path\":\"/\",\"port\":\"80\",\"raw_path\":\"/\",\"scheme\":\"http\"}");
  expect("uri.parse(\"urn:isbn:123\")", "{\"scheme\":\"urn\"}");
  expect("uri.parse(\"/rel/path?q\")", "{\"path\":\"/rel/path\",\"raw_path\":\"/rel/path\",\"raw_query\":\"q\"}");
  expect_err("uri.parse(\"http://exa%6dple.com/\")", "parse \"http://exa%6dple.com/\": invalid URL escape \"%6d\"");
  expect_err("uri.parse(\"http://h:8a/\")", "invalid port \":8a\" after host");
  expect_err("uri.parse(\"http://[::1/\")", "missing ']' in host");
  expect_err("uri.parse(\"1:x\")", "first path segment in URL cannot contain colon");
  expect_err("uri.parse(\"http://h/\\u0001\")", "invalid control character");
  expect_err("uri.parse(\"http://h/#%zz\")", "invalid URL escape \"%zz\"");
  expect("uri.is_valid(\"https://example.com\")", "true");
  expect("uri.is_valid(\"\")", "false");
  expect("uri.is_valid(\"http://a b@h/\")", "false");
  expect("uri.is_valid(\"http://h%41/\")", "false");
  expect("uri.is_valid(\"http://h%c3%a9/\")", "true");
}

static void test_uuid(void **state) {
  (void)state;
  expect("uuid.parse(\"f81d4fae-7dec-11d0-a765-00a0c91e6bf6\")",
         "{\"clocksequence\":10085,\"macvariables\":\"global:unicast\",\"nodeid\":\"00-a0-c9-1e-6b-f6\","
         "\"time\":854991792216875000,\"variant\":\"RFC4122\",\"version\":1}");
  expect("uuid.parse(\"00000000-0000-4000-c000-000000000000\")", "{\"variant\":\"Microsoft\",\"version\":4}");
  expect("uuid.parse(\"00000000-0000-4000-8000-00000000000\")", "undefined");
  expect("uuid.parse(\"00000000x0000-4000-8000-000000000000\")", "undefined");
  expect("uuid.parse(\"urn:uuid:00000000-0000-4000-8000-00000000000g\")", "undefined");
  /* the same key gives the same UUID within an evaluation, other keys differ */
  expect("uuid.rfc4122(\"a\") == uuid.rfc4122(\"a\")", "true");
  expect("uuid.rfc4122(\"a\") == uuid.rfc4122(\"b\")", "false");
  expect("uuid.parse(uuid.rfc4122(\"k\"))", "{\"variant\":\"RFC4122\",\"version\":4}");
  expect("regex.match(\"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$\", uuid.rfc4122(\"z\"))", "true");
  /* two evaluations give different UUIDs for the same key */
  char *u1 = eval_expr("uuid.rfc4122(\"same\")", false, NULL);
  char *u2 = eval_expr("uuid.rfc4122(\"same\")", false, NULL);
  assert_string_not_equal(u1, u2);
  free(u1);
  free(u2);
}

/* ---------------------------------------------------------------- x509 */
static EVP_PKEY *gen(const char *type) {
  EVP_PKEY *k = !strcmp(type, "EC") ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048);
  assert_non_null(k);
  return k;
}

/* A certificate for `key` with common name cn, signed by (issuer, ikey) or self-signed. */
static X509 *mkcert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *ikey, bool ca, const char *san) {
  X509 *x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), ca ? 1 : 4242);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"coco", -1, -1, 0);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
  X509_add_ext(x, e, -1);
  X509_EXTENSION_free(e);
  if (san) {
    e = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
  }
  assert_true(X509_sign(x, ikey ? ikey : key, EVP_sha256()) > 0);
  return x;
}

static char *pem_of(X509 *x, EVP_PKEY *priv) {
  BIO *b = BIO_new(BIO_s_mem());
  if (x) PEM_write_bio_X509(b, x);
  if (priv) PEM_write_bio_PrivateKey(b, priv, NULL, NULL, 0, NULL, NULL);
  char *p = NULL;
  long n = BIO_get_mem_data(b, &p);
  char *s = strndup(p, (size_t)n);
  BIO_free(b);
  return s;
}

static void set_input(json_t *in) {
  static char *buf;
  free(buf);
  buf = in ? json_dumps(in, JSON_COMPACT) : NULL;
  json_decref(in);
  g_input = buf;
}

static void test_x509(void **state) {
  (void)state;
  EVP_PKEY *rk = gen("EC"), *lk = gen("RSA"), *other = gen("EC");
  X509 *root = mkcert(rk, "Test Root", NULL, NULL, true, NULL);
  X509 *leaf = mkcert(lk, "leaf.example", root, rk, false, "DNS:leaf.example,DNS:alt.example,URI:spiffe://x/y");
  char *rootp = pem_of(root, NULL), *leafp = pem_of(leaf, NULL), *lkp = pem_of(NULL, lk), *okp = pem_of(NULL, other);
  char *chain = NULL, *bad_order = NULL, *two_keys = NULL;
  assert_true(asprintf(&chain, "%s%s", rootp, leafp) > 0);
  assert_true(asprintf(&bad_order, "%s%s", leafp, rootp) > 0);
  assert_true(asprintf(&two_keys, "%s%s", lkp, okp) > 0);
  set_input(json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "chain", chain, "bad", bad_order, "leaf", leafp, "lk", lkp, "ok", okp,
                      "keys", two_keys));
  expect("[c.Subject.CommonName | c := crypto.x509.parse_certificates(input.chain)[_]]", "[\"Test Root\",\"leaf.example\"]");
  expect("crypto.x509.parse_certificates(input.leaf)[0].DNSNames", "[\"leaf.example\",\"alt.example\"]");
  expect("crypto.x509.parse_certificates(input.leaf)[0].URIStrings", "[\"spiffe://x/y\"]");
  expect("crypto.x509.parse_certificates(input.chain)[0].URIStrings", "null");
  expect("[c.IsCA | c := crypto.x509.parse_certificates(input.chain)[_]]", "[true,false]");
  expect("crypto.x509.parse_certificates(input.leaf)[0].SerialNumber", "4242");
  expect("crypto.x509.parse_certificates(input.leaf)[0].Subject.Organization", "[\"coco\"]");
  expect("crypto.x509.parse_certificates(input.leaf)[0].Issuer.CommonName", "\"Test Root\"");
  expect("crypto.x509.parse_certificates(input.leaf)[0].PublicKey.E", "65537");
  /* base64 of the PEM is accepted as well */
  expect("crypto.x509.parse_certificates(base64.encode(input.leaf))[0].Subject.CommonName", "\"leaf.example\"");
  expect_err("crypto.x509.parse_certificates(\"!!\")", "illegal base64 data at input byte 0");
  /* chain verification: root first, leaf last; the result is leaf first */
  expect("[crypto.x509.parse_and_verify_certificates(input.chain)[0], [c.Subject.CommonName | c := "
         "crypto.x509.parse_and_verify_certificates(input.chain)[1][_]]]",
         "[true,[\"leaf.example\",\"Test Root\"]]");
  expect("crypto.x509.parse_and_verify_certificates(input.bad)", "[false,[]]");
  expect("crypto.x509.parse_and_verify_certificates(input.leaf)", "[false,[]]");
  /* key pair: the leaf's DER comes back; a key that does not match is an error */
  expect("crypto.x509.parse_keypair(input.leaf, input.lk).Certificate[0] == crypto.x509.parse_certificates(input.leaf)[0].Raw",
         "true");
  expect_err("crypto.x509.parse_keypair(input.leaf, input.ok)", "private key does not match public key");
  /* private keys */
  expect("count(crypto.parse_private_keys(input.keys))", "2");
  expect("crypto.parse_private_keys(\"\")", "null");
  expect("crypto.parse_private_keys(\"nope\")", "[]");
  expect("crypto.x509.parse_rsa_private_key(input.lk).e", "\"AQAB\"");
  expect("object.keys(crypto.x509.parse_rsa_private_key(input.lk))", "[\"d\",\"dp\",\"dq\",\"e\",\"kty\",\"n\",\"p\",\"q\",\"qi\"]");
  expect_err("crypto.x509.parse_rsa_private_key(\"invalid\")", "illegal base64");
  set_input(NULL);
  free(chain);
  free(bad_order);
  free(two_keys);
  free(rootp);
  free(leafp);
  free(lkp);
  free(okp);
  X509_free(root);
  X509_free(leaf);
  EVP_PKEY_free(rk);
  EVP_PKEY_free(lk);
  EVP_PKEY_free(other);
}

static void test_csr(void **state) {
  (void)state;
  EVP_PKEY *k = gen("EC");
  X509_REQ *r = X509_REQ_new();
  X509_NAME *n = X509_REQ_get_subject_name(r);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"csr.example", -1, -1, 0);
  X509_REQ_set_pubkey(r, k);
  assert_true(X509_REQ_sign(r, k, EVP_sha256()) > 0);
  BIO *b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509_REQ(b, r);
  char *p = NULL;
  long len = BIO_get_mem_data(b, &p);
  char *pem = strndup(p, (size_t)len);
  BIO_free(b);
  set_input(json_pack("{s:s}", "csr", pem));
  expect("crypto.x509.parse_certificate_request(input.csr).Subject.CommonName", "\"csr.example\"");
  expect("crypto.x509.parse_certificate_request(base64.encode(input.csr)).PublicKeyAlgorithm", "3");
  expect_err("crypto.x509.parse_certificate_request(\"YmFkc3RyaW5n\")", "crypto.x509.parse_certificate_request");
  set_input(NULL);
  free(pem);
  X509_REQ_free(r);
  EVP_PKEY_free(k);
}

/* ---------------------------------------------------------------- regex.globs_match */
static void test_globs_match(void **state) {
  (void)state;
  expect("regex.globs_match(\"a.a.[0-9]+z\", \".b.b2359825792*594823z\")", "true");
  expect("regex.globs_match(\"[a-z]+\", \"[0-9]*\")", "false"); /* '+' needs one letter, the other only digits */
  expect("regex.globs_match(\"[a-z]+\", \"[0-9]+\")", "false");
  expect("regex.globs_match(\"ab*c\", \"a.c\")", "true");
  expect("regex.globs_match(\"ab*c\", \"a[xy]c\")", "false");
  expect("regex.globs_match(\"x*\", \"y*\")", "true"); /* the empty string */
  expect("regex.globs_match(\"x+\", \"y*\")", "false");
  expect("regex.globs_match(\"\\\\.\", \".\")", "true");
  expect("regex.globs_match(\"\\\\.\", \"a\")", "false");
  expect("regex.globs_match(\"é+\", \"[à-ê]\")", "true");
  expect("regex.globs_match(\"[]\", \".*\")", "false");
  expect_err("regex.globs_match(\"pqrs]\", \"[a-b]+\")",
             "input:pqrs], pos:5, set-close ']' with no preceding '[': the input provided is invalid");
  expect_err("regex.globs_match(\"a**\", \"a\")", "flag '*' must be preceded by a non-flag");
  expect_err("regex.globs_match(\"[a-\", \"a\")", "range character '-' must be followed by a Unicode character");
  expect_err("regex.globs_match(\"[z-a]\", \"a\")", "range is out of order");
  expect_err("regex.globs_match(\"[ab\", \"a\")", "found [ without matching ]");
}

/* ---------------------------------------------------------------- yaml */
static void test_yaml(void **state) {
  (void)state;
  expect("yaml.unmarshal(\"a: 1\\nb: [x, 'y', \\\"2\\\"]\\nc: {d: null, e: ~, f: true, g: yes, h: 1.5, i: 0x1F}\\n\")",
         "{\"a\":1,\"b\":[\"x\",\"y\",\"2\"],\"c\":{\"d\":null,\"e\":null,\"f\":true,\"g\":\"yes\",\"h\":1.5,\"i\":31}}");
  /* the first document is returned; a later one must still parse */
  expect("yaml.unmarshal(\"a: 1\\n---\\nb: 2\\n\")", "{\"a\":1}");
  expect("yaml.is_valid(\"a: 1\\n---\\n\\tb: 2\\n\")", "false");
  expect("yaml.unmarshal(\"k: 1\\nk: 2\\n\")", "{\"k\":2}");
  expect("yaml.unmarshal(\"x: &a [1, 2]\\ny: *a\\n\")", "{\"x\":[1,2],\"y\":[1,2]}");
  expect("yaml.unmarshal(\"\")", "null");
  expect_err("yaml.unmarshal(\"[1,2,3\")", "yaml: line 1: did not find expected ',' or ']'");
  expect("yaml.is_valid(\"{\\\"json\\\": \\\"ok\\\"}\")", "true");
  expect("yaml.is_valid(1)", "false");
  /* strings that would read back as other types are quoted; the round trip is exact */
  expect("yaml.unmarshal(yaml.marshal({\"a\": [\"true\", \"1\", \"null\", \"\", \"x: y\"], \"b\": {1, 2}, \"c\": 2.5}))",
         "{\"a\":[\"true\",\"1\",\"null\",\"\",\"x: y\"],\"b\":[1,2],\"c\":2.5}");
  expect("yaml.marshal({\"k\": [1, \"v\"]})", "\"k:\\n- 1\\n- v\\n\"");
  /* an alias bomb is bounded, not expanded without limit */
  expect_err("yaml.unmarshal(\"a: &a [x,x,x,x,x,x,x,x,x,x]\\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\\n"
             "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\\nf: [*e,*e,*e,*e]\\n\")",
             "too many values");
}

/* ---------------------------------------------------------------- strings.render_template */
static void tmpl(const char *t, const char *vars, const char *want) {
  char expr[1024], w[512];
  snprintf(expr, sizeof(expr), "strings.render_template(input.t, %s)", vars);
  set_input(json_pack("{s:s}", "t", t));
  json_t *ws = json_string(want);
  char *wj = json_dumps(ws, JSON_ENCODE_ANY);
  snprintf(w, sizeof(w), "%s", wj);
  free(wj);
  json_decref(ws);
  expect(expr, w);
  set_input(NULL);
}

static void test_render_template(void **state) {
  (void)state;
  tmpl("{{.a.b}}-{{.n}}", "{\"a\": {\"b\": \"x\"}, \"n\": 12}", "x-12");
  tmpl("{{range $i, $v := .l}}{{if $i}},{{end}}{{$v}}{{end}}", "{\"l\": [\"p\", \"q\", \"r\"]}", "p,q,r");
  tmpl("{{range $k, $v := .m}}{{$k}}={{$v}};{{end}}", "{\"m\": {\"b\": 2, \"a\": 1}}", "a=1;b=2;");
  tmpl("{{range .l}}[{{.}}]{{else}}none{{end}}", "{\"l\": []}", "none");
  tmpl("{{if eq .x \"a\"}}A{{else if eq .x \"b\"}}B{{else}}C{{end}}", "{\"x\": \"b\"}", "B");
  tmpl("{{with .o}}{{.k}}{{end}}{{with .missing}}no{{else}}dflt{{end}}", "{\"o\": {\"k\": \"v\"}}", "vdflt");
  tmpl("a  {{- .x -}}  b", "{\"x\": 1}", "a1b");
  tmpl("{{/* note */}}{{$n := len .l}}{{$n}} {{index .l 1}} {{.l | len}}", "{\"l\": [5, 6]}", "2 6 2");
  tmpl("{{printf \"%s:%v%%\" .s .n}} {{print 1 2}} {{.l}} {{.m}}", "{\"s\": \"k\", \"n\": 3, \"l\": [1, \"a\"], \"m\": {\"z\": true}}",
       "k:3% 1 2 [1 a] map[z:true]");
  tmpl("{{and .t .f}} {{or .f .t}} {{not .t}} {{lt 1 2}} {{ge \"a\" \"b\"}}", "{\"t\": true, \"f\": false}", "false true false true false");
  tmpl("{{.nope}} {{.a.nope}}", "{\"a\": {}}", "<undefined> <undefined>");
  set_input(json_pack("{s:s}", "t", "{{if .x}}unterminated"));
  expect_err("strings.render_template(input.t, {})", "template: template:1: unexpected EOF");
  set_input(json_pack("{s:s}", "t", "{{nosuchfn 1}}"));
  expect_err("strings.render_template(input.t, {})", "function \"nosuchfn\" not defined");
  set_input(json_pack("{s:s}", "t", "{{.s.x}}"));
  expect_err("strings.render_template(input.t, {\"s\": \"str\"})", "can't evaluate field x");
  set_input(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_uri_parse),
      cmocka_unit_test(test_uuid),
      cmocka_unit_test(test_x509),
      cmocka_unit_test(test_csr),
      cmocka_unit_test(test_globs_match),
      cmocka_unit_test(test_yaml),
      cmocka_unit_test(test_render_template),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
