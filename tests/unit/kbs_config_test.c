#include "ct_test_util.h"

#include "kbs_config.h"
#include "toml.h"

static CT_RESULT parse(const char *text, kbs_config **out, ct_err *err) {
  json_t *doc = NULL;
  CT_GUARD(toml_parse(text, strlen(text), &doc, err));
  ct_status st = kbs_config_from_json(doc, out, err);
  json_decref(doc);
  return st;
}

static void test_full_config(void **state) {
  (void)state;
  const char *text =
      "[http_server]\nsockets = [\"0.0.0.0:8080\"]\ninsecure_http = false\nprivate_key = \"/k\"\ncertificate = \"/c\"\n"
      "payload_request_size = 4\nworker_count = 3\n"
      "[admin]\nauthorization_mode = \"AuthenticatedAuthorization\"\n"
      "[admin.authentication.bearer_jwt]\nidentity_providers = [{ issuer = \"me\", audience = \"kbs\", "
      "public_key_uri = \"/admin.pub\" }]\n"
      "[admin.authorization.regex_acl]\nacls = [{ role = \"admin\", allowed_endpoints = \"^/kbs/v0/.+$\" }]\n"
      "[attestation_token]\ntrusted_certs_paths = [\"/ca.pem\"]\nextra_teekey_paths = [\"/x/y\"]\n"
      "[attestation_service]\ntype = \"coco_as_builtin\"\ntimeout = 7\n"
      "[attestation_service.attestation_token_broker]\nduration_min = 9\nverbose_token = false\n"
      "[attestation_service.attestation_token_broker.signer]\nkey_path = \"/tk\"\ncert_path = \"/tc\"\n"
      "[attestation_service.rvps_config]\ntype = \"BuiltIn\"\n"
      "[attestation_service.verifier_config.snp_verifier]\nvcek_sources = [{ type = \"OfflineStore\", path = \"/vcek\" }]\n"
      "[storage_backend]\nstorage_type = \"LocalJson\"\n[storage_backend.backends.local_json]\nfile_dir_path = \"/j\"\n"
      "[[plugins]]\nname = \"resource\"\n";
  kbs_config *c = NULL;
  ct_err err;
  CT_ASSERT_OK(parse(text, &c, &err), &err);
  assert_int_equal(c->n_sockets, 1);
  assert_string_equal(c->sockets[0], "0.0.0.0:8080");
  assert_int_equal(c->payload_request_size_mib, 4);
  assert_int_equal(c->worker_count, 3);
  assert_int_equal(c->admin_mode, KBS_ADMIN_AUTHENTICATED);
  assert_int_equal(c->n_idps, 1);
  assert_string_equal(c->idps[0].audience, "kbs");
  assert_int_equal(c->n_acls, 1);
  assert_int_equal(c->as_timeout_min, 7);
  assert_int_equal(c->token_duration_min, 9);
  assert_false(c->verbose_token);
  assert_string_equal(c->signer_cert_path, "/tc");
  assert_string_equal(c->snp_vcek_offline_dir, "/vcek");
  assert_null(c->snp_kds_base_url); /* only the configured source */
  assert_int_equal(c->storage_type, KVS_LOCAL_JSON);
  assert_string_equal(c->storage_dir, "/j");
  assert_true(c->resource_plugin);
  kbs_config_free(c);
}

/* The pattern's Trustee 1.0 chart configuration (trustee-chart 0.2.1). */
static void test_pattern_legacy_config(void **state) {
  (void)state;
  const char *text =
      "[http_server]\nsockets = [\"0.0.0.0:8080\"]\ninsecure_http = false\nprivate_key = \"/etc/https-key/tls.key\"\n"
      "certificate = \"/etc/https-cert/tls.crt\"\n"
      "[admin]\ninsecure_api = false\nauth_public_key = \"/etc/auth-secret/publicKey\"\n"
      "[attestation_token]\ninsecure_key = false\nattestation_token_type = \"CoCo\"\n"
      "trusted_certs_paths = [\"/etc/attestation-cert/tls.crt\"]\n"
      "[attestation_service]\ntype = \"coco_as_builtin\"\nwork_dir = \"/opt/confidential-containers/attestation-service\"\n"
      "policy_engine = \"opa\"\n"
      "[attestation_service.attestation_token_broker]\ntype = \"Ear\"\npolicy_dir = \"/opt/x/policies\"\n"
      "[attestation_service.attestation_token_broker.signer]\nkey_path = \"/etc/attestation-cert/tls.key\"\n"
      "cert_path = \"/etc/attestation-cert/tls.crt\"\n"
      "[attestation_service.attestation_token_config]\nduration_min = 5\n"
      "[attestation_service.rvps_config]\ntype = \"BuiltIn\"\n"
      "[attestation_service.rvps_config.storage]\ntype = \"LocalJson\"\n"
      "file_path = \"/opt/confidential-containers/rvps/reference-values/reference-values.json\"\n"
      "[[plugins]]\nname = \"resource\"\ntype = \"LocalFs\"\ndir_path = \"/opt/confidential-containers/kbs/repository\"\n"
      "[policy_engine]\npolicy_path = \"/opt/confidential-containers/opa/policy.rego\"\n";
  kbs_config *c = NULL;
  ct_err err;
  CT_ASSERT_OK(parse(text, &c, &err), &err);
  assert_int_equal(c->admin_mode, KBS_ADMIN_LEGACY_KEY);
  assert_string_equal(c->auth_public_key, "/etc/auth-secret/publicKey");
  assert_string_equal(c->resource_dir, "/opt/confidential-containers/kbs/repository");
  assert_string_equal(c->resource_policy_path, "/opt/confidential-containers/opa/policy.rego");
  /* Trustee 1.0's LocalJson file and policy directory are used as such (not a store beside them) */
  assert_string_equal(c->rvps_file, "/opt/confidential-containers/rvps/reference-values/reference-values.json");
  assert_null(c->rvps_store_dir);
  assert_string_equal(c->as_policy_dir, "/opt/x/policies");
  assert_string_equal(c->snp_kds_base_url, "https://kdsintf.amd.com"); /* Trustee's default source */
  kbs_config_free(c);
}

static void expect_error(const char *text, const char *needle) {
  kbs_config *c = NULL;
  ct_err err;
  ct_status st = parse(text, &c, &err);
  if (st == CT_OK) {
    kbs_config_free(c);
    fail_msg("accepted: %s", text);
  }
  if (!strstr(err.msg, needle)) fail_msg("error \"%s\" does not mention \"%s\"", err.msg, needle);
}

static void test_refusals(void **state) {
  (void)state;
  const char *ok_http = "[http_server]\ninsecure_http = true\n";
  const char *ok_admin = "[admin]\nauthorization_mode = \"DenyAll\"\n";
  const char *ok_token = "[attestation_token]\ninsecure_header_jwk = true\n";
  char buf[2048];
  expect_error("[admin]\nauthorization_mode = \"DenyAll\"\n", "[http_server]");
  expect_error(ok_http, "[admin]");
  snprintf(buf, sizeof buf, "%s%s%s[http_server2]\n", ok_http, ok_admin, ok_token);
  expect_error(buf, "unknown key \"http_server2\"");
  snprintf(buf, sizeof buf, "[http_server]\ninsecure_http = true\nsockts = []\n%s%s", ok_admin, ok_token);
  expect_error(buf, "unknown key \"sockts\" in [http_server]");
  snprintf(buf, sizeof buf, "[http_server]\ninsecure_http = false\n%s%s", ok_admin, ok_token);
  expect_error(buf, "private_key and certificate");
  /* a reference-value file and a store directory (or a store type) are two stores */
  const char *as_rv = "[attestation_service]\n[attestation_service.rvps_config]\n";
  snprintf(buf, sizeof buf, "%s%s%s%s[attestation_service.rvps_config.storage]\nfile_path = \"/r/rv.json\"\n"
           "dir_path = \"/r\"\n", ok_http, ok_admin, ok_token, as_rv);
  expect_error(buf, "file_path (a LocalJson file) and dir_path");
  snprintf(buf, sizeof buf, "%s%s%s%sstorage_type = \"Redis\"\n[attestation_service.rvps_config.storage]\n"
           "file_path = \"/r/rv.json\"\n", ok_http, ok_admin, ok_token, as_rv);
  expect_error(buf, "storage_type and storage.file_path");
  snprintf(buf, sizeof buf, "%s[admin]\nauthorization_mode = \"Maybe\"\n%s", ok_http, ok_token);
  expect_error(buf, "\"Maybe\" is not one of");
  snprintf(buf, sizeof buf, "%s[admin]\ntype = \"DenyAll\"\n%s", ok_http, ok_token);
  expect_error(buf, "unknown key \"type\" in [admin]");
  snprintf(buf, sizeof buf, "%s[admin]\nauthorization_mode = \"AuthenticatedAuthorization\"\n%s", ok_http, ok_token);
  expect_error(buf, "identity_providers");
  snprintf(buf, sizeof buf,
           "%s[admin]\nauthorization_mode = \"AuthenticatedAuthorization\"\n[admin.authentication.bearer_jwt]\n"
           "identity_providers = [{ public_key_uri = \"/k\" }]\n[admin.authorization.regex_acl]\n"
           "acls = [{ role = \"admin\", allowed_endpoints = \"/kbs/.*\" }]\n%s", ok_http, ok_token);
  expect_error(buf, "must start with ^/kbs");
  /* Trustee refuses to start when no token could ever be verified. */
  snprintf(buf, sizeof buf, "%s%s[attestation_token]\ninsecure_header_jwk = false\n", ok_http, ok_admin);
  expect_error(buf, "no trust anchor");
  snprintf(buf, sizeof buf, "%s%s%s[attestation_service]\ntype = \"intel_ta\"\n", ok_http, ok_admin, ok_token);
  expect_error(buf, "not supported");
  snprintf(buf, sizeof buf, "%s%s%s[http_server.x]\n", ok_http, ok_admin, ok_token);
  expect_error(buf, "unknown key \"x\" in [http_server]");
  snprintf(buf, sizeof buf, "[http_server]\ninsecure_http = true\npayload_request_size = 0\n%s%s", ok_admin, ok_token);
  expect_error(buf, "payload_request_size");
  snprintf(buf, sizeof buf, "%s%s%s[[plugins]]\nname = \"nebula-ca\"\n", ok_http, ok_admin, ok_token);
  expect_error(buf, "nebula-ca");
}

static void test_defaults(void **state) {
  (void)state;
  kbs_config *c = NULL;
  ct_err err;
  CT_ASSERT_OK(parse("[http_server]\ninsecure_http = true\n[admin]\n[attestation_token]\ninsecure_header_jwk = true\n",
                     &c, &err), &err);
  assert_string_equal(c->sockets[0], "127.0.0.1:8080");
  assert_int_equal(c->payload_request_size_mib, 2);
  assert_int_equal(c->admin_mode, KBS_ADMIN_DENY_ALL);
  assert_false(c->as_enabled);
  assert_int_equal(c->storage_type, KVS_MEMORY);
  kbs_config_free(c);
}

#define BASE "[http_server]\ninsecure_http = true\n[admin]\n[attestation_token]\ninsecure_header_jwk = true\n"

/* Upstream's storage and plugin keys, accepted unchanged, and ours beside them. */
static void test_storage_config(void **state) {
  (void)state;
  kbs_config *c = NULL;
  ct_err err;
  CT_ASSERT_OK(parse(BASE "[storage_backend]\nstorage_type = \"postgres\"\n"
                          "[storage_backend.backends.postgres]\ndb = \"kbs\"\nusername = \"u\"\npassword = \"p\"\n"
                          "port = 6432\nhost = \"db\"\n[storage_backend.backends.local_json]\nfile_dir_path = \"/j\"\n"
                          "[attestation_service]\ntype = \"coco_as_builtin\"\n"
                          "[attestation_service.rvps_config]\ntype = \"BuiltIn\"\nstorage_type = \"LocalJson\"\n"
                          "[[plugins]]\nname = \"resource\"\nstorage_backend_type = \"kvstorage\"\n",
                     &c, &err), &err);
  assert_int_equal(c->storage_type, KVS_POSTGRES);
  assert_string_equal(c->pg_username, "u");
  assert_string_equal(c->pg_password, "p");
  assert_int_equal(c->pg_port, 6432);
  assert_true(c->rvps_storage_type_set);
  assert_int_equal(c->rvps_storage_type, KVS_LOCAL_JSON);
  assert_int_equal(c->session_storage_type, KVS_POSTGRES); /* upstream: falls back to storage_type */
  assert_false(c->session_stateless);
  assert_int_equal(c->resource_backend, KBS_RESOURCE_KVSTORAGE);
  kvs_config kc;
  kbs_config_kvs(c, KVS_LOCAL_JSON, &kc);
  assert_string_equal(kc.dir_path, "/j");
  kbs_config_free(c);

  CT_ASSERT_OK(parse(BASE "[storage_backend]\nstorage_type = \"Redis\"\nsession_storage_type = \"Stateless\"\n"
                          "session_key_file = \"/k\"\nsession_previous_key_files = [\"/old1\", \"/old2\"]\n"
                          "[storage_backend.backends.redis]\nurl = \"redis://10.0.0.1:6380/2\"\n"
                          "[[plugins]]\nname = \"resource\"\nstorage_backend_type = \"Vault\"\n"
                          "vault_url = \"https://vault:8200\"\ntoken = \"s.abc\"\nca_certs = [\"/ca.pem\"]\n"
                          "kv_version = 2\nsecret_path = \"hub/{type}\"\nsecret_field = \"{tag}\"\n"
                          "cache_ttl_seconds = 30\n[audit]\npath = \"/var/log/kbs-audit.jsonl\"\n",
                     &c, &err), &err);
  assert_int_equal(c->storage_type, KVS_REDIS);
  assert_string_equal(c->redis_url, "redis://10.0.0.1:6380/2");
  assert_true(c->session_stateless);
  assert_string_equal(c->session_key_file, "/k");
  assert_int_equal(c->n_session_previous_key_files, 2);
  assert_int_equal(c->resource_backend, KBS_RESOURCE_VAULT);
  assert_string_equal(c->vault.mount_path, "secret");
  assert_true(c->vault.verify_ssl);
  assert_int_equal(c->vault.kv_version, 2);
  assert_string_equal(c->vault.secret_path, "hub/{type}");
  assert_string_equal(c->vault.secret_field, "{tag}");
  assert_int_equal(c->vault.cache_ttl_s, 30);
  assert_string_equal(c->audit_path, "/var/log/kbs-audit.jsonl");
  kbs_config_free(c);

  /* Upstream's Vault defaults: mount "secret", KV v1, value under "data". */
  CT_ASSERT_OK(parse(BASE "[[plugins]]\nname = \"resource\"\nstorage_backend_type = \"vault\"\n"
                          "vault_url = \"http://127.0.0.1:8200\"\ntoken = \"t\"\nverify_ssl = false\n",
                     &c, &err), &err);
  assert_int_equal(c->vault.kv_version, 1);
  assert_string_equal(c->vault.secret_path, "{repo}/{type}/{tag}");
  assert_string_equal(c->vault.secret_field, "data");
  assert_false(c->vault.verify_ssl);
  kbs_config_free(c);

  expect_error(BASE "[storage_backend]\nstorage_type = \"Etcd\"\n", "\"Etcd\" is not supported");
  expect_error(BASE "[storage_backend.backends.postgres]\ndatabase = \"x\"\n", "unknown key \"database\"");
  expect_error(BASE "[[plugins]]\nname = \"resource\"\nstorage_backend_type = \"Aliyun\"\n", "not supported");
  expect_error(BASE "[[plugins]]\nname = \"resource\"\nstorage_backend_type = \"Vault\"\n", "vault_url");
  expect_error(BASE "[[plugins]]\nname = \"resource\"\nstorage_backend_type = \"Vault\"\n"
                    "vault_url = \"http://v\"\ntoken = \"t\"\nsecret_path = \"{repo}/{secret}\"\n",
               "only {repo}, {type} and {tag}");
  expect_error(BASE "[storage_backend]\nsession_storage_type = \"Sticky\"\n", "session_storage_type");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_config),
      cmocka_unit_test(test_pattern_legacy_config),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_storage_config),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
