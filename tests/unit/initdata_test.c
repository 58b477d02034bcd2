#include "ct_test_util.h"

#include <openssl/evp.h>
#include <zlib.h>

#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_json.h"
#include "initdata.h"

static const char INITDATA_DOC[] =
    "version = \"0.1.0\"\n"
    "algorithm = \"ALG\"\n"
    "\n"
    "[data]\n"
    "\"aa.toml\" = '''\n"
    "[token_configs]\n"
    "[token_configs.coco_as]\n"
    "url = 'http://127.0.0.1:8080'\n"
    "\n"
    "[token_configs.kbs]\n"
    "url = 'http://127.0.0.1:8080'\n"
    "cert = \"\"\"\n"
    "-----BEGIN CERTIFICATE-----\n"
    "MIIB\n"
    "-----END CERTIFICATE-----\n"
    "\"\"\"\n"
    "'''\n"
    "\n"
    "\"cdh.toml\" = '''\n"
    "socket = 'unix:///run/confidential-containers/cdh.sock'\n"
    "credentials = []\n"
    "\n"
    "[kbc]\n"
    "name = 'cc_kbc'\n"
    "url = 'http://127.0.0.1:8080'\n"
    "\n"
    "[image]\n"
    "image_security_policy_uri = 'kbs:///default/security-policy/test'\n"
    "'''\n"
    "\n"
    "\"policy.rego\" = '''\n"
    "package agent_policy\n"
    "\n"
    "import future.keywords.in\n"
    "\n"
    "default CreateContainerRequest := false\n"
    "default ExecProcessRequest := false\n"
    "\n"
    "CreateContainerRequest if {\n"
    "  some c in policy_data.containers\n"
    "  input.OCI.Annotations[\"io.kubernetes.cri.image-name\"] == c.OCI.Annotations[\"io.kubernetes.cri.image-name\"]\n"
    "}\n"
    "\n"
    "policy_data := {\n"
    "  \"containers\": [\n"
    "    {\"OCI\": {\"Annotations\": {\"io.kubernetes.cri.image-name\": \"bitnami/nginx:latest\"},\n"
    "             \"Process\": {\"Args\": [\"/opt/bitnami/scripts/nginx/entrypoint.sh\"]}}}\n"
    "  ],\n"
    "  \"request_defaults\": {\"ExecProcessRequest\": {\"allowed_commands\": []}}\n"
    "}\n"
    "'''\n"
    "\"extra.json\" = '{\"k\": 1}'\n";

/* The document with ALG replaced by `alg`. */
static char *doc_with(const char *alg) {
  const char *at = strstr(INITDATA_DOC, "ALG");
  size_t pre = (size_t)(at - INITDATA_DOC);
  size_t n = strlen(INITDATA_DOC) - 3 + strlen(alg);
  char *s = malloc(n + 1);
  memcpy(s, INITDATA_DOC, pre);
  strcpy(s + pre, alg);
  strcat(s, at + 3);
  return s;
}

static void ossl_digest(const char *name, const void *data, size_t len, uint8_t *out, unsigned *out_len) {
  const EVP_MD *md = EVP_get_digestbyname(name);
  assert_non_null(md);
  assert_int_equal(EVP_Digest(data, len, out, out_len, md, NULL), 1);
}

static void test_digest_per_algorithm(void **state) {
  (void)state;
  const char *algs[] = {"sha256", "sha384", "sha512"};
  const char *ossl[] = {"SHA256", "SHA384", "SHA512"};
  const size_t lens[] = {32, 48, 64};
  for (size_t i = 0; i < 3; i++) {
    char *doc = doc_with(algs[i]);
    ct_err err;
    initdata *d = NULL;
    CT_ASSERT_OK(initdata_parse(doc, strlen(doc), &d, &err), &err);
    assert_string_equal(d->version, "0.1.0");
    assert_string_equal(d->algorithm, algs[i]);
    assert_int_equal(d->digest_len, lens[i]);
    uint8_t want[64];
    unsigned wl = 0;
    ossl_digest(ossl[i], doc, strlen(doc), want, &wl);
    assert_int_equal(wl, lens[i]);
    assert_memory_equal(d->digest, want, wl);
    assert_int_equal(json_object_size(d->data), 4);
    assert_non_null(strstr(json_string_value(json_object_get(d->data, "cdh.toml")), "cc_kbc"));
    initdata_free(d);
    /* Raw bytes: one extra trailing newline changes the digest. */
    size_t n = strlen(doc);
    char *doc2 = malloc(n + 2);
    memcpy(doc2, doc, n);
    memcpy(doc2 + n, "\n", 2);
    CT_ASSERT_OK(initdata_parse(doc2, n + 1, &d, &err), &err);
    assert_memory_not_equal(d->digest, want, wl);
    initdata_free(d);
    free(doc2);
    free(doc);
  }
}

static void test_claims(void **state) {
  (void)state;
  char *doc = doc_with("sha384");
  ct_err err;
  initdata *d = NULL;
  CT_ASSERT_OK(initdata_parse(doc, strlen(doc), &d, &err), &err);
  json_t *claims = NULL;
  CT_ASSERT_OK(initdata_claims(d, &claims, &err), &err);
  const char *want =
      "{\"aa.toml\":{\"token_configs\":{\"coco_as\":{\"url\":\"http://127.0.0.1:8080\"},"
      "\"kbs\":{\"url\":\"http://127.0.0.1:8080\",\"cert\":\"-----BEGIN CERTIFICATE-----\\nMIIB\\n"
      "-----END CERTIFICATE-----\\n\"}}},"
      "\"cdh.toml\":{\"socket\":\"unix:///run/confidential-containers/cdh.sock\",\"credentials\":[],"
      "\"kbc\":{\"name\":\"cc_kbc\",\"url\":\"http://127.0.0.1:8080\"},"
      "\"image\":{\"image_security_policy_uri\":\"kbs:///default/security-policy/test\"}},"
      "\"agent_policy_claims\":{\"containers\":[{\"OCI\":{\"Annotations\":{\"io.kubernetes.cri.image-name\":"
      "\"bitnami/nginx:latest\"},\"Process\":{\"Args\":[\"/opt/bitnami/scripts/nginx/entrypoint.sh\"]}}}],"
      "\"request_defaults\":{\"ExecProcessRequest\":{\"allowed_commands\":[]}}},"
      "\"extra.json\":\"{\\\"k\\\": 1}\"}";
  json_t *w = NULL;
  CT_ASSERT_OK(ct_json_parse(want, strlen(want), 64, &w, &err), &err);
  if (!json_equal(claims, w)) fail_msg("claims: %s", json_dumps(claims, JSON_SORT_KEYS | JSON_COMPACT));
  /* The init-data itself is unchanged. */
  assert_true(json_is_string(json_object_get(d->data, "policy.rego")));
  json_decref(w);
  json_decref(claims);
  initdata_free(d);
  free(doc);

  /* As upstream: entries that do not parse stay strings; policy_data must run to the end. */
  const char *odd =
      "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n"
      "\"aa.toml\" = \"not = = toml\"\n"
      "\"cdh.toml\" = \"\"\n"
      "\"policy.rego\" = \"\"\"package agent_policy\npolicy_data := {\"a\": 1}\nallow := true\n\"\"\"\n";
  CT_ASSERT_OK(initdata_parse(odd, strlen(odd), &d, &err), &err);
  CT_ASSERT_OK(initdata_claims(d, &claims, &err), &err);
  assert_string_equal(json_string_value(json_object_get(claims, "aa.toml")), "not = = toml");
  assert_true(json_is_object(json_object_get(claims, "cdh.toml")));
  assert_int_equal(json_object_size(json_object_get(claims, "cdh.toml")), 0);
  assert_true(json_is_string(json_object_get(claims, "policy.rego")));
  assert_null(json_object_get(claims, "agent_policy_claims"));
  json_decref(claims);
  initdata_free(d);

  const char *tail =
      "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n"
      "\"policy.rego\" = \"\"\"package agent_policy\npolicy_data := {\"a\": [1, {\"b\": null}]}\n\n\"\"\"\n";
  CT_ASSERT_OK(initdata_parse(tail, strlen(tail), &d, &err), &err);
  CT_ASSERT_OK(initdata_claims(d, &claims, &err), &err);
  assert_null(json_object_get(claims, "policy.rego"));
  assert_int_equal(json_array_size(json_object_get(json_object_get(claims, "agent_policy_claims"), "a")), 2);
  json_decref(claims);
  initdata_free(d);
}

static void test_rejects(void **state) {
  (void)state;
  struct {
    const char *doc, *needle;
    ct_status code;
  } cases[] = {
      {"version = \"0.1.0\"\nalgorithm = \"md5\"\n[data]\n", "unsupported algorithm \"md5\"", CT_EINVAL},
      {"version = \"0.1.0\"\nalgorithm = \"SHA256\"\n[data]\n", "unsupported algorithm", CT_EINVAL},
      {"version = \"0.1.0\"\nalgorithm = \"sha-256\"\n[data]\n", "unsupported algorithm", CT_EINVAL},
      {"algorithm = \"sha256\"\n[data]\n", "version", CT_EINVAL},
      {"version = \"0.1.0\"\n[data]\n", "algorithm", CT_EINVAL},
      {"version = \"0.1.0\"\nalgorithm = \"sha256\"\n", "data", CT_EINVAL},
      {"version = 1\nalgorithm = \"sha256\"\n[data]\n", "version", CT_EINVAL},
      {"version = \"0.1.0\"\nalgorithm = \"sha256\"\ndata = \"x\"\n", "data", CT_EINVAL},
      {"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nk = 1\n", "data entry \"k\" must be a string", CT_EINVAL},
      {"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nk.x = \"v\"\n", "data entry \"k\" must be a string", CT_EINVAL},
      {"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nk = \"a\"\nk = \"b\"\n", "init-data: line 5, column 1: duplicate key 'k'", CT_EINVAL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ct_err err;
    ct_err_clear(&err);
    initdata *d = NULL;
    ct_status st = initdata_parse(cases[i].doc, strlen(cases[i].doc), &d, &err);
    if (st != cases[i].code) fail_msg("case %zu: status %d (%s)", i, st, err.msg);
    assert_null(d);
    if (!strstr(err.msg, cases[i].needle)) fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.msg, cases[i].needle);
  }
  /* Members other than version/algorithm/data are ignored, any version string is taken. */
  const char *ok = "version = \"0.2.0\"\nalgorithm = \"sha512\"\nextra = 1\n[data]\n";
  ct_err err;
  initdata *d = NULL;
  CT_ASSERT_OK(initdata_parse(ok, strlen(ok), &d, &err), &err);
  assert_int_equal(json_object_size(d->data), 0);
  initdata_free(d);
  initdata_free(NULL);
  /* Size bound. */
  char *big = calloc(1, INITDATA_MAX_SIZE + 2);
  memset(big, '#', INITDATA_MAX_SIZE + 1);
  assert_int_equal(initdata_parse(big, INITDATA_MAX_SIZE + 1, &d, &err), CT_ELIMIT);
  free(big);
}

static void test_regularize_and_pcr8(void **state) {
  (void)state;
  uint8_t dig[64];
  for (size_t i = 0; i < sizeof dig; i++) dig[i] = (uint8_t)(0xA0 + i);
  uint8_t out[64];
  /* SNP HOST_DATA: a sha384 digest is truncated to 32 bytes. */
  memset(out, 0xEE, sizeof out);
  initdata_regularize(dig, 48, out, 32);
  assert_memory_equal(out, dig, 32);
  assert_int_equal(out[32], 0xEE);
  /* TDX MRCONFIGID: a sha256 digest is zero-padded to 48 bytes. */
  memset(out, 0xEE, sizeof out);
  initdata_regularize(dig, 32, out, 48);
  assert_memory_equal(out, dig, 32);
  for (size_t i = 32; i < 48; i++) assert_int_equal(out[i], 0);
  assert_int_equal(out[48], 0xEE);
  initdata_regularize(dig, 64, out, 64);
  assert_memory_equal(out, dig, 64);
  initdata_regularize(NULL, 0, out, 16);
  for (size_t i = 0; i < 16; i++) assert_int_equal(out[i], 0);

  /* PCR8 = sha256(0^32 || sha256(toml)), checked against OpenSSL's SHA-256 with EVP_MD_CTX. */
  char *doc = doc_with("sha256");
  ct_err err;
  initdata *d = NULL;
  CT_ASSERT_OK(initdata_parse(doc, strlen(doc), &d, &err), &err);
  uint8_t pcr[32];
  CT_ASSERT_OK(initdata_pcr8(d->digest, d->digest_len, pcr, &err), &err);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  uint8_t zeros[32] = {0}, want[32];
  unsigned wl = 0;
  assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
  assert_int_equal(EVP_DigestUpdate(ctx, zeros, 32), 1);
  assert_int_equal(EVP_DigestUpdate(ctx, d->digest, 32), 1);
  assert_int_equal(EVP_DigestFinal_ex(ctx, want, &wl), 1);
  EVP_MD_CTX_free(ctx);
  assert_memory_equal(pcr, want, 32);
  initdata_free(d);
  free(doc);
  /* Fixed vector: PCR8 for sha256 of the empty string. */
  uint8_t e[32];
  ct_sha256("", 0, e);
  CT_ASSERT_OK(initdata_pcr8(e, 32, pcr, &err), &err);
  char hex[65];
  ct_hex_into(pcr, 32, hex);
  uint8_t buf[64] = {0};
  memcpy(buf + 32, e, 32);
  uint8_t w2[32];
  unsigned w2l;
  ossl_digest("SHA256", buf, 64, w2, &w2l);
  assert_memory_equal(pcr, w2, 32);
  /* A 48-byte digest is an error, not a crash (trustee panics here). */
  assert_int_equal(initdata_pcr8(dig, 48, pcr, &err), CT_EINVAL);
  assert_non_null(strstr(err.msg, "32-byte"));
  assert_int_equal(initdata_pcr8(dig, 0, pcr, &err), CT_EINVAL);
}

/* gzip with zlib, then standard base64. */
static char *annotation_of(const void *data, size_t len) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  uLong cap = deflateBound(&zs, (uLong)len) + 64;
  uint8_t *gz = malloc(cap);
  zs.next_in = (Bytef *)(uintptr_t)data;
  zs.avail_in = (uInt)len;
  zs.next_out = gz;
  zs.avail_out = (uInt)cap;
  assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
  size_t gl = cap - zs.avail_out;
  deflateEnd(&zs);
  char *b64 = NULL;
  ct_err err;
  CT_ASSERT_OK(ct_b64_encode(CT_B64_STD, gz, gl, &b64, &err), &err);
  free(gz);
  return b64;
}

static void test_annotation(void **state) {
  (void)state;
  ct_err err;
  /* Made with `gzip -9 -n -c initdata.toml | base64 -w 60`. */
  const char *from_gzip =
      "H4sIAAAAAAACAxWMQQqDMBBF93MKmU12YyK0FaEnESnT1ppgzEgy7fmb8Hfv\n"
      "8f5vzSVI6u4dWnJkEThukoP6o7HiebhcEeY3Ky+AzKRyRKzOGAOzyr6mx0vS\n"
      "J2yF9mdZ4JtjK73qOfW9G25k69w02rG+t+oPkuQbhnQAAAA=\n";
  const char *plain = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"aa.toml\" = '''\n"
                      "[token_configs.kbs]\nurl = \"http://127.0.0.1:8080\"\n'''\n";
  char *toml = NULL;
  size_t len = 0;
  CT_ASSERT_OK(initdata_decode_annotation(from_gzip, &toml, &len, &err), &err);
  assert_int_equal(len, strlen(plain));
  assert_memory_equal(toml, plain, len);
  initdata *d = NULL;
  CT_ASSERT_OK(initdata_parse(toml, len, &d, &err), &err);
  char hex[129];
  ct_hex_into(d->digest, d->digest_len, hex);
  assert_string_equal(hex, "f720c6a7c898557f761a019154496b5ff0b6d40900cf7b9f85a8c9599f4d2363");
  initdata_free(d);
  free(toml);

  /* Round trip of the full document through zlib's gzip. */
  char *doc = doc_with("sha384");
  char *b64 = annotation_of(doc, strlen(doc));
  CT_ASSERT_OK(initdata_decode_annotation(b64, &toml, &len, &err), &err);
  assert_int_equal(len, strlen(doc));
  assert_memory_equal(toml, doc, len);
  assert_int_equal(toml[len], '\0');
  free(toml);
  free(b64);
  free(doc);

  /* Errors. */
  assert_int_equal(initdata_decode_annotation("", &toml, &len, &err), CT_EINVAL);
  assert_int_equal(initdata_decode_annotation("This is not valid base64!", &toml, &len, &err), CT_EINVAL);
  assert_non_null(strstr(err.msg, "init-data annotation"));
  char *nogz = NULL;
  CT_ASSERT_OK(ct_b64_encode(CT_B64_STD, (const uint8_t *)"raw uncompressed data", 21, &nogz, &err), &err);
  assert_int_equal(initdata_decode_annotation(nogz, &toml, &len, &err), CT_EINVAL);
  assert_non_null(strstr(err.msg, "not valid gzip"));
  free(nogz);
  /* Truncated stream. */
  char *trunc = annotation_of(plain, strlen(plain));
  size_t tl = strlen(trunc);
  trunc[tl - 8] = '\0';
  assert_int_equal(initdata_decode_annotation(trunc, &toml, &len, &err), CT_EINVAL);
  free(trunc);
  /* Decompression bomb: 1 MiB + 1 of zeros compresses to ~1 KiB but exceeds the cap. */
  size_t bl = INITDATA_MAX_SIZE + 1;
  char *bomb_in = calloc(1, bl);
  char *bomb = annotation_of(bomb_in, bl);
  assert_true(strlen(bomb) < 8192);
  assert_int_equal(initdata_decode_annotation(bomb, &toml, &len, &err), CT_ELIMIT);
  assert_non_null(strstr(err.msg, "decompressed size"));
  free(bomb);
  /* Exactly at the cap is fine. */
  bomb = annotation_of(bomb_in, bl - 1);
  CT_ASSERT_OK(initdata_decode_annotation(bomb, &toml, &len, &err), &err);
  assert_int_equal(len, INITDATA_MAX_SIZE);
  free(toml);
  free(bomb);
  free(bomb_in);
  /* Trailing bytes after the gzip member are refused. */
  char *good = annotation_of(plain, strlen(plain));
  uint8_t *raw = NULL;
  size_t rl = 0;
  CT_ASSERT_OK(ct_b64_decode(CT_B64_STD, good, strlen(good), &raw, &rl, &err), &err);
  uint8_t *longer = malloc(rl + 2);
  memcpy(longer, raw, rl);
  memcpy(longer + rl, "xx", 2);
  char *bad = NULL;
  CT_ASSERT_OK(ct_b64_encode(CT_B64_STD, longer, rl + 2, &bad, &err), &err);
  assert_int_equal(initdata_decode_annotation(bad, &toml, &len, &err), CT_EINVAL);
  assert_non_null(strstr(err.msg, "2 unexpected bytes after the gzip stream"));
  free(bad);
  free(longer);
  free(raw);
  free(good);
}

/* initdata_encode_annotation: a gzip member (mtime 0, no name) in one line of standard base64,
 * which the decoder and zlib read back byte for byte. */
static void test_encode_annotation(void **state) {
  (void)state;
  ct_err err;
  char *doc = doc_with("sha256");
  char *b64 = NULL;
  CT_ASSERT_OK(initdata_encode_annotation(doc, strlen(doc), &b64, &err), &err);
  assert_null(strchr(b64, '\n'));
  assert_memory_equal(b64, "H4sI", 4);
  uint8_t *gz = NULL;
  size_t gz_len = 0;
  CT_ASSERT_OK(ct_b64_decode(CT_B64_STD, b64, strlen(b64), &gz, &gz_len, &err), &err);
  assert_true(gz_len > 18);
  assert_int_equal(gz[0], 0x1f);
  assert_int_equal(gz[1], 0x8b);
  assert_int_equal(gz[3] & 0x08, 0); /* no file name */
  assert_memory_equal(gz + 4, "\0\0\0\0", 4); /* mtime 0: the same TOML always encodes the same */
  free(gz);
  char *toml = NULL;
  size_t len = 0;
  CT_ASSERT_OK(initdata_decode_annotation(b64, &toml, &len, &err), &err);
  assert_int_equal(len, strlen(doc));
  assert_memory_equal(toml, doc, len);
  char *again = NULL;
  CT_ASSERT_OK(initdata_encode_annotation(doc, strlen(doc), &again, &err), &err);
  assert_string_equal(again, b64);
  free(again);
  free(toml);
  free(b64);
  free(doc);
  /* The empty document encodes too; oversize input is refused before compressing. */
  CT_ASSERT_OK(initdata_encode_annotation("", 0, &b64, &err), &err);
  CT_ASSERT_OK(initdata_decode_annotation(b64, &toml, &len, &err), &err);
  assert_int_equal(len, 0);
  free(toml);
  free(b64);
  assert_int_equal(initdata_encode_annotation("x", INITDATA_MAX_SIZE + 1, &b64, &err), CT_ELIMIT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_digest_per_algorithm),
      cmocka_unit_test(test_claims),
      cmocka_unit_test(test_rejects),
      cmocka_unit_test(test_regularize_and_pcr8),
      cmocka_unit_test(test_annotation),
      cmocka_unit_test(test_encode_annotation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
