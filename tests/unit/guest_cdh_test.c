/*
 * CDH configuration, init-data and sealed-secret tests (no KBS needed: a verified vault secret
 * gets as far as the resource fetch, which fails with "no KBS configured").
 */
#include "ct_test_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include "cdh.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_json.h"
#include "jose.h"

static void test_cdh_toml(void **state) {
  (void)state;
  ct_err err;
  cdh_config cfg = {0};
  const char *t = "socket = \"unix:///run/confidential-containers/cdh.sock\"\n"
                  "[kbc]\nname = \"cc_kbc\"\nurl = \"http://127.0.0.1:8080\"\n"
                  "kbs_cert = \"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\"\n"
                  "[[credentials]]\nresource_uri = \"kbs:///default/cred/one\"\n"
                  "path = \"/run/confidential-containers/cdh/kbs/one\"\n"
                  "[image]\nimage_security_policy_uri = \"kbs:///default/security-policy/test\"\n"
                  "some_undefined_field = 1\n";
  CT_ASSERT_OK(cdh_config_parse_cdh(t, strlen(t), &cfg, &err), &err);
  assert_string_equal(cfg.kbs_url, "http://127.0.0.1:8080");
  assert_non_null(strstr(cfg.kbs_cert, "BEGIN CERTIFICATE"));
  assert_int_equal(cfg.ncreds, 1);
  assert_string_equal(cfg.creds[0].resource_uri, "kbs:///default/cred/one");
  assert_string_equal(cfg.image_security_policy_uri, "kbs:///default/security-policy/test");
  assert_false(cfg.skip_sealed_secret_verification);
  /* A bad file changes nothing. */
  const char *bad[] = {"[kbc]\nname = \"offline_fs_kbc\"\n",
                       "[kbc]\nurl = 5\n",
                       "[[credentials]]\nresource_uri = \"kbs:///a/b\"\npath = \"/x\"\n",
                       "[[credentials]]\nresource_uri = \"kbs:///a/b/c\"\npath = \"rel\"\n",
                       "[[credentials]]\nresource_uri = \"kbs:///a/b/c\"\npath = \"/a/../etc\"\n",
                       "skip_sealed_secret_verification = \"yes\"\n",
                       "[kbc\n"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    if (cdh_config_parse_cdh(bad[i], strlen(bad[i]), &cfg, &err) == CT_OK) fail_msg("accepted %s", bad[i]);
    assert_string_equal(cfg.kbs_url, "http://127.0.0.1:8080");
    assert_int_equal(cfg.ncreds, 1);
  }
  const char *aa = "[token_configs.kbs]\nurl = \"https://kbs:8443\"\ncert = \"PEM\"\n"
                   "tee_key_algorithm = \"RSA-OAEP-256\"\n[eventlog_config]\nenable_eventlog = true\n"
                   "init_pcr = 23\n";
  CT_ASSERT_OK(cdh_config_parse_aa(aa, strlen(aa), &cfg, &err), &err);
  assert_string_equal(cfg.aa_kbs_url, "https://kbs:8443");
  assert_string_equal(cfg.aa_kbs_cert, "PEM");
  assert_string_equal(cfg.tee_key_alg, "RSA-OAEP-256");
  assert_true(cfg.eventlog_enabled);
  assert_int_equal(cfg.eventlog_init_pcr, 23);
  const char *bad_el[] = {"[eventlog_config]\ninit_pcr = 24\n", "[eventlog_config]\nenable_eventlog = 1\n"};
  for (size_t i = 0; i < 2; i++)
    if (cdh_config_parse_aa(bad_el[i], strlen(bad_el[i]), &cfg, &err) == CT_OK) fail_msg("accepted %s", bad_el[i]);
  assert_int_equal(cfg.eventlog_init_pcr, 23);
  const char *skip = "skip_sealed_secret_verification = true\n";
  CT_ASSERT_OK(cdh_config_parse_cdh(skip, strlen(skip), &cfg, &err), &err);
  assert_true(cfg.skip_sealed_secret_verification);
  assert_string_equal(cfg.kbs_url, "http://127.0.0.1:8080"); /* merged, not replaced */
  cdh_config_free(&cfg);
}

static void test_kbc_params(void **state) {
  (void)state;
  ct_err err;
  char dir[] = "/tmp/cdh-cmdline-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/cmdline", dir);
  FILE *f = fopen(path, "w");
  fputs("console=ttyS0 agent.aa_kbc_params=cc_kbc::http://10.0.0.1:8080 quiet\n", f);
  fclose(f);
  unsetenv("AA_KBC_PARAMS");
  cdh_config cfg = {0};
  CT_ASSERT_OK(cdh_config_kbc_params(&cfg, path, &err), &err);
  assert_string_equal(cfg.kbs_url, "http://10.0.0.1:8080");
  cdh_config_free(&cfg);
  setenv("AA_KBC_PARAMS", "cc_kbc::http://env:1", 1);
  CT_ASSERT_OK(cdh_config_kbc_params(&cfg, path, &err), &err);
  assert_string_equal(cfg.kbs_url, "http://env:1");
  cdh_config_free(&cfg);
  setenv("AA_KBC_PARAMS", "offline_fs_kbc::null", 1);
  assert_int_equal(cdh_config_kbc_params(&cfg, path, &err), CT_EUNSUPPORTED);
  setenv("AA_KBC_PARAMS", "cc_kbc:http://x", 1);
  assert_int_equal(cdh_config_kbc_params(&cfg, path, &err), CT_EINVAL);
  unsetenv("AA_KBC_PARAMS");
  cdh_config_free(&cfg);
  unlink(path);
  CT_ASSERT_OK(cdh_config_kbc_params(&cfg, path, &err), &err); /* absent: fine, no URL */
  assert_null(cfg.kbs_url);
  rmdir(dir);
}

static void test_cmdline_credentials(void **state) {
  (void)state;
  ct_err err;
  cdh_config cfg = {0};
  const char *ok = "quiet cdh.kbs_resources=kbs:///default/key/1::/run/confidential-containers/cdh/kbs/one,"
                   "kbs://kbs:8080/default/key/2::/run/confidential-containers/cdh/kbs/sub/two root=/dev/vda";
  CT_ASSERT_OK(cdh_config_cmdline_credentials(&cfg, ok, strlen(ok), &err), &err);
  assert_int_equal(cfg.ncreds, 2);
  assert_string_equal(cfg.creds[0].resource_uri, "kbs:///default/key/1");
  assert_string_equal(cfg.creds[0].path, "/run/confidential-containers/cdh/kbs/one");
  assert_string_equal(cfg.creds[1].resource_uri, "kbs://kbs:8080/default/key/2");
  /* The host controls the command line: nothing outside the credential directory, and one bad
   * entry rejects them all. */
  const char *bad[] = {
      "cdh.kbs_resources=kbs:///a/b/c::/etc/shadow",
      "cdh.kbs_resources=kbs:///a/b/c::/run/confidential-containers/cdh/kbs/../../../etc/x",
      "cdh.kbs_resources=kbs:///a/b/c::/run/confidential-containers/cdh/kbs/x,kbs:///a/b::/run/x",
      "cdh.kbs_resources=kbs:///a/b/c",
      "cdh.kbs_resources=kbs:///a/b/c::/run/confidential-containers/cdh/kbs/"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    if (cdh_config_cmdline_credentials(&cfg, bad[i], strlen(bad[i]), &err) == CT_OK)
      fail_msg("accepted %s", bad[i]);
    assert_int_equal(cfg.ncreds, 2);
  }
  CT_ASSERT_OK(cdh_config_cmdline_credentials(&cfg, "ro quiet", 8, &err), &err);
  assert_int_equal(cfg.ncreds, 2);
  cdh_config_free(&cfg);
}

static const char k_initdata[] =
    "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n"
    "\"cdh.toml\" = '''\n[kbc]\nname = \"cc_kbc\"\nurl = \"http://127.0.0.1:1\"\n'''\n"
    "\"policy.rego\" = '''package agent_policy\n'''\n";

static void test_initdata(void **state) {
  (void)state;
  ct_err err;
  cdh_initdata id;
  CT_ASSERT_OK(cdh_initdata_parse(k_initdata, strlen(k_initdata), &id, &err), &err);
  uint8_t want[48];
  ct_sha384(k_initdata, strlen(k_initdata), want);
  assert_int_equal(id.digest_len, 48);
  assert_memory_equal(id.digest, want, 48);
  assert_non_null(strstr(cdh_initdata_entry(&id, "cdh.toml"), "cc_kbc"));
  assert_null(cdh_initdata_entry(&id, "aa.toml"));
  cdh_initdata_free(&id);
  /* Peer pods hand the TOML over base64-encoded; the digest is over the decoded bytes. */
  char *b64 = NULL;
  CT_ASSERT_OK(ct_b64_encode(CT_B64_STD, (const uint8_t *)k_initdata, strlen(k_initdata), &b64, &err),
               &err);
  char path[] = "/tmp/cdh-initdata-XXXXXX";
  int fd = mkstemp(path);
  assert_true(write(fd, b64, strlen(b64)) > 0);
  assert_true(write(fd, "\n", 1) == 1);
  close(fd);
  CT_ASSERT_OK(cdh_initdata_load(path, &id, &err), &err);
  assert_memory_equal(id.digest, want, 48);
  cdh_initdata_free(&id);
  unlink(path);
  free(b64);
  const char *bad[] = {"version = \"0.1.0\"\nalgorithm = \"sha-256\"\n",
                       "algorithm = \"sha256\"\n",
                       "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nx = 1\n",
                       "version = \"0.1.0\"\nalgorithm = \"sha256\"\ndata = 3\n"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (cdh_initdata_parse(bad[i], strlen(bad[i]), &id, &err) == CT_OK) fail_msg("accepted %s", bad[i]);
}

/* Seals a payload the way guest-components' to_signed_base64_string does. */
static char *seal(jose_jwk *key, const char *kid, const char *payload) {
  ct_err err;
  json_t *hdr = json_pack("{s:s}", "kid", kid);
  char *jws = NULL;
  CT_ASSERT_OK(jose_jws_sign("ES256", jose_jwk_pkey(key), hdr, (const uint8_t *)payload,
                             strlen(payload), &jws, &err), &err);
  json_decref(hdr);
  char *out = malloc(strlen(jws) + 8);
  sprintf(out, "sealed.%s", jws);
  free(jws);
  return out;
}

static void test_sealed_secrets(void **state) {
  (void)state;
  ct_err err;
  jose_jwk *key = NULL, *other = NULL;
  CT_ASSERT_OK(jose_jwk_generate("ES256", NULL, &key, &err), &err);
  CT_ASSERT_OK(jose_jwk_generate("ES256", NULL, &other, &err), &err);
  char dir[] = "/tmp/cdh-sealed-XXXXXX";
  assert_non_null(mkdtemp(dir));
  json_t *pub = NULL;
  CT_ASSERT_OK(jose_jwk_to_json(key, &pub, &err), &err);
  char *pubtxt = json_dumps(pub, JSON_COMPACT);
  char kpath[300];
  snprintf(kpath, sizeof kpath, "%s/test-key", dir);
  FILE *f = fopen(kpath, "w");
  fputs(pubtxt, f);
  fclose(f);
  const char *vault = "{\"version\":\"0.1.0\",\"type\":\"vault\",\"provider\":\"kbs\",\"name\":"
                      "\"kbs:///one/2/trois\",\"provider_settings\":{},\"annotations\":{}}";
  char *good = seal(key, "test-key", vault);
  cdh_sealed s;
  CT_ASSERT_OK(cdh_sealed_parse(good, strlen(good), &s, &err), &err);
  assert_string_equal(json_string_value(json_object_get(s.header, "kid")), "test-key");
  assert_string_equal(json_string_value(json_object_get(s.payload, "name")), "kbs:///one/2/trois");
  cdh_sealed_free(&s);
  CT_ASSERT_OK(cdh_sealed_verify(good, strlen(good), pubtxt, strlen(pubtxt), &err), &err);

  cdh_config cfg = {0};
  guest_cfg g = {0};
  cdh_hub_opts o = {.config = &cfg, .tee = GUEST_TEE_SAMPLE, .guest = &g, .sealed_key_dir = dir};
  cdh_hub *h = NULL;
  CT_ASSERT_OK(cdh_hub_new(&o, &h, &err), &err);
  uint8_t *out = NULL;
  size_t len = 0;
  /* Verified: the hub goes on to fetch the vault resource, and there is no KBS here. */
  assert_int_equal(cdh_hub_unseal(h, good, strlen(good), &out, &len, &err), CT_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "no KBS configured"));
  /* Tampering anywhere, or another signer, fails before any fetch. */
  size_t offs[] = {10, strlen(good) / 2, strlen(good) - 5};
  for (size_t i = 0; i < 3; i++) {
    char *t = strdup(good);
    t[offs[i]] = t[offs[i]] == 'A' ? 'B' : 'A';
    ct_status st = cdh_hub_unseal(h, t, strlen(t), &out, &len, &err);
    assert_int_not_equal(st, CT_OK);
    assert_null(strstr(err.msg, "no KBS configured"));
    free(t);
  }
  char *forged = seal(other, "test-key", vault);
  assert_int_equal(cdh_hub_unseal(h, forged, strlen(forged), &out, &len, &err), CT_ECRYPTO);
  char *traversal = seal(key, "../test-key", vault);
  assert_int_equal(cdh_hub_unseal(h, traversal, strlen(traversal), &out, &len, &err), CT_EINVAL);
  char *envelope = seal(key, "test-key",
                        "{\"version\":\"0.1.0\",\"type\":\"envelope\",\"provider\":\"aliyun\","
                        "\"key_id\":\"x\",\"encrypted_key\":\"y\",\"encrypted_data\":\"z\","
                        "\"wrap_type\":\"A256GCM\",\"iv\":\"w\",\"provider_settings\":{},"
                        "\"annotations\":{}}");
  assert_int_equal(cdh_hub_unseal(h, envelope, strlen(envelope), &out, &len, &err), CT_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "envelope"));
  /* With verification skipped (cdh.toml), the forged secret's payload is used. */
  cfg.skip_sealed_secret_verification = true;
  assert_int_equal(cdh_hub_unseal(h, forged, strlen(forged), &out, &len, &err), CT_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "no KBS configured"));
  cdh_hub_free(h);
  const char *malformed[] = {"sealed.a.b", "sealed.a.b.c.d", "plain.text", "sealed...", "sealed.e30.e30.x"};
  for (size_t i = 0; i < sizeof malformed / sizeof *malformed; i++) {
    ct_status st = cdh_sealed_parse(malformed[i], strlen(malformed[i]), &s, &err);
    if (i == 4) { /* well-formed ({}.{}), only the signature is bogus */
      CT_ASSERT_OK(st, &err);
      cdh_sealed_free(&s);
    } else if (st == CT_OK) {
      fail_msg("parsed %s", malformed[i]);
    }
  }
  free(good);
  free(forged);
  free(traversal);
  free(envelope);
  free(pubtxt);
  json_decref(pub);
  jose_jwk_free(key);
  jose_jwk_free(other);
  unlink(kpath);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cdh_toml),
      cmocka_unit_test(test_kbc_params),
      cmocka_unit_test(test_cmdline_credentials),
      cmocka_unit_test(test_initdata),
      cmocka_unit_test(test_sealed_secrets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
