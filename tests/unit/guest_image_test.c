/*
 * Image pull pieces without a registry: reference parsing, policy scope lookup, and layer
 * unpacking against hostile tar archives built here with libarchive.
 */
#include "ct_test_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cdh.h"
#include "cdh_image.h"

static void test_references(void **state) {
  (void)state;
  ct_err err;
  cdh_image_ref r;
  char buf[1200];
  CT_ASSERT_OK(cdh_image_ref_parse("busybox", &r, &err), &err);
  cdh_image_ref_whole(&r, buf, sizeof buf);
  assert_string_equal(buf, "docker.io/library/busybox:latest");
  CT_ASSERT_OK(cdh_image_ref_parse("127.0.0.1:5000/test/app:v1", &r, &err), &err);
  assert_string_equal(r.registry, "127.0.0.1:5000");
  assert_string_equal(r.repository, "test/app");
  assert_string_equal(r.tag, "v1");
  CT_ASSERT_OK(cdh_image_ref_parse("Quay.IO/org/app@sha256:"
                                   "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                                   &r, &err), &err);
  assert_string_equal(r.registry, "quay.io");
  assert_string_equal(r.tag, "");
  cdh_image_ref_name(&r, buf, sizeof buf);
  assert_string_equal(buf, "quay.io/org/app");
  CT_ASSERT_OK(cdh_image_ref_parse("index.docker.io/library/alpine:3", &r, &err), &err);
  assert_string_equal(r.registry, "docker.io");
  CT_ASSERT_OK(cdh_image_ref_parse("localhost/x", &r, &err), &err);
  assert_string_equal(r.registry, "localhost");
  const char *bad[] = {"", "UPPER/case", "a//b", "x:", "x@sha256:abc", "repo:tag with space",
                       "-lead", "a/b/../c", "host:5000/../x"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (cdh_image_ref_parse(bad[i], &r, &err) == CT_OK) fail_msg("accepted \"%s\"", bad[i]);
}

static void test_policy_scopes(void **state) {
  (void)state;
  ct_err err;
  const char *text =
      "{\"default\":[{\"type\":\"reject\"}],\"transports\":{\"docker\":{"
      "\"registry.example.com:8443/org/app:v1\":[{\"type\":\"insecureAcceptAnything\"}],"
      "\"registry.example.com:8443/org\":[{\"type\":\"sigstoreSigned\",\"keyData\":\"eA==\"}],"
      "\"*.example.com\":[{\"type\":\"reject\"}],"
      "\"\":[{\"type\":\"insecureAcceptAnything\"}]}}}";
  json_t *p = NULL;
  CT_ASSERT_OK(cdh_policy_parse(text, strlen(text), &p, &err), &err);
  cdh_image_ref r;
  char scope[1200];
  CT_ASSERT_OK(cdh_image_ref_parse("registry.example.com:8443/org/app:v1", &r, &err), &err);
  cdh_policy_requirements(p, &r, scope, sizeof scope);
  assert_string_equal(scope, "docker:registry.example.com:8443/org/app:v1");
  CT_ASSERT_OK(cdh_image_ref_parse("registry.example.com:8443/org/app:v2", &r, &err), &err);
  cdh_policy_requirements(p, &r, scope, sizeof scope);
  assert_string_equal(scope, "docker:registry.example.com:8443/org");
  CT_ASSERT_OK(cdh_image_ref_parse("registry.example.com:8443/other/app", &r, &err), &err);
  cdh_policy_requirements(p, &r, scope, sizeof scope);
  assert_string_equal(scope, "docker:*.example.com");
  CT_ASSERT_OK(cdh_image_ref_parse("quay.io/x/y", &r, &err), &err);
  cdh_policy_requirements(p, &r, scope, sizeof scope);
  assert_string_equal(scope, "docker:\"\"");
  json_decref(p);
  const char *no_transport = "{\"default\":[{\"type\":\"insecureAcceptAnything\"}]}";
  CT_ASSERT_OK(cdh_policy_parse(no_transport, strlen(no_transport), &p, &err), &err);
  cdh_policy_requirements(p, &r, scope, sizeof scope);
  assert_string_equal(scope, "default");
  json_decref(p);
  const char *bad[] = {
      "{}", "[]", "{\"default\":{}}", "{\"default\":[{\"type\":\"bogus\"}]}",
      "{\"default\":[{\"type\":\"sigstoreSigned\"}]}",
      "{\"default\":[{\"type\":\"sigstoreSigned\",\"keyPath\":\"a\",\"keyData\":\"b\"}]}",
      "{\"default\":[{\"type\":\"sigstoreSigned\",\"keyPath\":\"a\",\"signedIdentity\":{\"type\":\"x\"}}]}",
      "{\"default\":[],\"transports\":{\"docker\":{\"a\":{}}}}"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    p = NULL;
    if (cdh_policy_parse(bad[i], strlen(bad[i]), &p, &err) == CT_OK) fail_msg("accepted %s", bad[i]);
  }
}

/* --- layers --------------------------------------------------------------------------------- */

typedef struct member {
  const char *name;
  char type;           /* 'f' file, 'd' dir, 'l' symlink, 'h' hard link, 'c' char device */
  const char *data;    /* file contents or link target */
} member;

static uint8_t *make_tar(const member *m, size_t n, int gzip, size_t *len) {
  struct archive *a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (gzip) archive_write_add_filter_gzip(a);
  size_t cap = 1 << 20;
  uint8_t *buf = malloc(cap);
  size_t used = 0;
  assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
  for (size_t i = 0; i < n; i++) {
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, m[i].name);
    archive_entry_set_mtime(e, 1700000000, 0);
    switch (m[i].type) {
    case 'd':
      archive_entry_set_filetype(e, AE_IFDIR);
      archive_entry_set_perm(e, 0755);
      break;
    case 'l':
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_symlink(e, m[i].data);
      archive_entry_set_perm(e, 0777);
      break;
    case 'h':
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_hardlink(e, m[i].data);
      break;
    case 'c':
      archive_entry_set_filetype(e, AE_IFCHR);
      archive_entry_set_rdevmajor(e, 1);
      archive_entry_set_rdevminor(e, 3);
      break;
    default:
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0640);
      archive_entry_set_size(e, (la_int64_t)strlen(m[i].data));
    }
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    if (m[i].type == 'f') archive_write_data(a, m[i].data, strlen(m[i].data));
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  *len = used;
  return buf;
}

static char root[PATH_MAX];

static int setup(void **state) {
  (void)state;
  char tmpl[] = "/tmp/cdh-unpack-XXXXXX";
  assert_non_null(mkdtemp(tmpl));
  assert_non_null(realpath(tmpl, root));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  cdh_unpack_clear(root);
  rmdir(root);
  return 0;
}

static CT_RESULT unpack(const member *m, size_t n, int gzip, ct_err *err) {
  size_t len = 0;
  uint8_t *tar = make_tar(m, n, gzip, &len);
  cdh_unpack_state us = {0};
  ct_status st = cdh_unpack_layer(root, tar, len, &us, err);
  free(tar);
  return st;
}

static int exists(const char *rel) {
  char p[PATH_MAX + 64];
  struct stat st;
  snprintf(p, sizeof p, "%s/%s", root, rel);
  return lstat(p, &st) == 0;
}

static void test_unpack_and_whiteouts(void **state) {
  (void)state;
  ct_err err;
  const member base[] = {{"./etc/", 'd', NULL},        {"./etc/motd", 'f', "hello\n"},
                         {"bin/tool", 'f', "#!x\n"},    {"bin/alias", 'l', "/bin/tool"},
                         {"lib/rel", 'l', "../bin/tool"}, {"bin/hard", 'h', "bin/tool"},
                         {"opaque/old", 'f', "old\n"},  {"dev/null", 'c', NULL}};
  CT_ASSERT_OK(unpack(base, sizeof base / sizeof *base, 1, &err), &err);
  assert_true(exists("etc/motd") && exists("bin/alias") && exists("bin/hard") && exists("opaque/old"));
  assert_false(exists("dev/null")); /* device nodes are skipped */
  const member upper[] = {{"etc/.wh.motd", 'f', ""},
                          {"opaque/.wh..wh..opq", 'f', ""},
                          {"opaque/new", 'f', "new\n"},
                          {"bin/alias", 'f', "now a file\n"}};
  CT_ASSERT_OK(unpack(upper, sizeof upper / sizeof *upper, 0, &err), &err);
  assert_false(exists("etc/motd"));
  assert_false(exists("opaque/old"));
  assert_true(exists("opaque/new"));
  struct stat st;
  char p[PATH_MAX + 64];
  snprintf(p, sizeof p, "%s/bin/alias", root);
  assert_int_equal(lstat(p, &st), 0);
  assert_true(S_ISREG(st.st_mode)); /* replaced, not written through */
}

static void test_hostile_layers(void **state) {
  (void)state;
  ct_err err;
  struct {
    member m[2];
    size_t n;
    const char *reason;
  } cases[] = {
      {{{"../escape", 'f', "x"}}, 1, "climbs out"},
      {{{"a/../../escape", 'f', "x"}}, 1, "climbs out"},
      {{{"/etc/evil", 'f', "x"}}, 1, "absolute path"},
      {{{"a/link", 'l', "../../x"}}, 1, "escapes the tree"},
      {{{"link", 'l', "/tmp"}, {"link/pwned", 'f', "x"}}, 2, "through the symlink"},
      {{{"h", 'h', "../outside"}}, 1, "climbs out"},
      {{{"h", 'h', "missing"}}, 1, "no such file"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    ct_status st = unpack(cases[i].m, cases[i].n, 1, &err);
    if (st == CT_OK) fail_msg("case %zu accepted", i);
    if (!strstr(err.msg, cases[i].reason)) fail_msg("case %zu: %s", i, err.msg);
    cdh_unpack_clear(root);
  }
  assert_int_equal(access("/tmp/pwned", F_OK), -1);
  /* Garbage is not a layer. */
  cdh_unpack_state us = {0};
  assert_int_not_equal(cdh_unpack_layer(root, (const uint8_t *)"not a tar at all", 16, &us, &err), CT_OK);
}

/* The sources for `ref` as "kind ref[ (http)]" joined by ", ". */
static CT_RESULT sources_of(const json_t *doc, const char *ref, char *out, size_t cap, ct_err *err) {
  cdh_image_ref r;
  CT_GUARD(cdh_image_ref_parse(ref, &r, err));
  cdh_pull_source src[CDH_SOURCES_MAX];
  size_t n = 0;
  CT_GUARD(cdh_regconf_sources(doc, &r, src, CDH_SOURCES_MAX, &n, err));
  out[0] = 0;
  for (size_t i = 0; i < n; i++) {
    char w[CDH_IMAGE_REF_MAX + 64];
    cdh_image_ref_whole(&src[i].ref, w, sizeof w);
    size_t used = strlen(out);
    snprintf(out + used, cap - used, "%s%s %s%s", i ? ", " : "", src[i].kind, w, src[i].insecure ? " (http)" : "");
  }
  return CT_OK;
}

static void test_registry_configuration(void **state) {
  (void)state;
  ct_err err;
  /* image-rs's documented example (with a rule for docker.io). */
  const char *conf = "unqualified-search-registries = [\"docker.io\", \"example1.com\"]\n"
                     "[[registry]]\nprefix = \"example.com/banned\"\nblocked = true\n"
                     "[[registry]]\nprefix = \"example.com/foo\"\ninsecure = false\nblocked = false\n"
                     "location = \"internal-registry-for-example.com/bar\"\n"
                     "[[registry.mirror]]\nlocation = \"example-mirror-0.local/mirror-for-foo\"\n"
                     "[[registry.mirror]]\nlocation = \"example-mirror-1.local/mirrors/foo\"\ninsecure = true\n"
                     "[[registry]]\nlocation = \"docker.io\"\n"
                     "[[registry.mirror]]\nlocation = \"123456.mirror.aliyuncs.com\"\n"
                     "[[registry]]\nprefix = \"*.corp.example\"\nlocation = \"mirror.local:5000/corp\"\n"
                     "[[registry]]\nlocation = \"localhost:5000\"\ninsecure = true\n";
  json_t *doc = NULL;
  CT_ASSERT_OK(cdh_regconf_parse(conf, strlen(conf), &doc, &err), &err);
  char got[4096];
  struct {
    const char *ref, *want;
  } cases[] = {
      {"example.com/foo/app:v1",
       "mirror example-mirror-0.local/mirror-for-foo/app:v1, mirror example-mirror-1.local/mirrors/foo/app:v1 (http), "
       "remapped internal-registry-for-example.com/bar/app:v1"},
      {"example.com/banned-suffix/image:tag", "original example.com/banned-suffix/image:tag"},
      {"quay.io/x/y@sha256:" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
       "original quay.io/x/y@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
      {"bar:tag", "mirror 123456.mirror.aliyuncs.com/library/bar:tag, unqualified-search docker.io/library/bar:tag, "
                  "unqualified-search example1.com/bar:tag"},
      {"foo/bar:tag", "mirror 123456.mirror.aliyuncs.com/foo/bar:tag, unqualified-search docker.io/foo/bar:tag, "
                      "unqualified-search example1.com/foo/bar:tag"},
      {"a.b.corp.example/team/app:1", "remapped mirror.local:5000/corp/team/app:1"},
      {"corp.example/team/app:1", "original corp.example/team/app:1"},
      /* Prefixes match from the start: another host ending in a prefix is not that registry. */
      {"evil-example.com/foo/app:v1", "original evil-example.com/foo/app:v1"},
      {"localhost:5000/app:1", "original localhost:5000/app:1 (http)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    CT_ASSERT_OK(sources_of(doc, cases[i].ref, got, sizeof got, &err), &err);
    if (strcmp(got, cases[i].want)) fail_msg("%s: got \"%s\", want \"%s\"", cases[i].ref, got, cases[i].want);
  }
  assert_int_equal(sources_of(doc, "example.com/banned/image:tag", got, sizeof got, &err), CT_EDENIED);
  assert_non_null(strstr(err.msg, "example.com/banned/image:tag is blocked by the registry configuration"));
  assert_non_null(strstr(err.msg, "example.com/banned"));
  /* No configuration: the reference alone. */
  CT_ASSERT_OK(sources_of(NULL, "bar:tag", got, sizeof got, &err), &err);
  assert_string_equal(got, "original docker.io/library/bar:tag");
  json_decref(doc);
  /* Refused as upstream refuses them, naming the rule. */
  const char *bad[] = {"[[registry]]\ninsecure = true\n", "[[registry]]\nprefix = \"*.example.com\"\n",
                       "[[registry]]\nlocation = \"a.io\"\n[[registry.mirror]]\ninsecure = true\n",
                       "[[registry]]\nlocation = 5\n", "[[registry]]\nlocation = \"a.io\"\nblocked = \"yes\"\n",
                       "unqualified-search-registries = \"docker.io\"\n", "registry = 1\n", "[[registry"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    doc = NULL;
    if (cdh_regconf_parse(bad[i], strlen(bad[i]), &doc, &err) == CT_OK) fail_msg("accepted %s", bad[i]);
    assert_non_null(strstr(err.msg, "registry configuration"));
  }
}

static void test_image_config(void **state) {
  (void)state;
  ct_err err;
  cdh_config cfg = {0};
  const char *t = "socket = \"unix:///tmp/x/cdh.sock\"\n[aa]\naa_socket = \"/tmp/x/aa.sock\"\n"
                  "[image]\nimage_security_policy = '{\"default\":[{\"type\":\"reject\"}]}'\n"
                  "authenticated_registry_credentials_uri = \"kbs:///default/credential/r\"\n"
                  "extra_root_certificates = [\"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\"]\n"
                  "max_concurrent_layer_downloads_per_image = 3\n"
                  "registry_configuration_uri = \"kbs:///default/registry-configuration/test\"\n"
                  "[image.image_pull_proxy]\nhttps_proxy = \"http://127.0.0.1:3128\"\nno_proxy = \"a.b\"\n";
  CT_ASSERT_OK(cdh_config_parse_cdh(t, strlen(t), &cfg, &err), &err);
  assert_string_equal(cfg.socket, "unix:///tmp/x/cdh.sock");
  assert_string_equal(cfg.aa_socket, "/tmp/x/aa.sock");
  assert_non_null(strstr(cfg.image_security_policy, "reject"));
  assert_string_equal(cfg.registry_credentials_uri, "kbs:///default/credential/r");
  assert_non_null(strstr(cfg.extra_root_certificates, "BEGIN CERTIFICATE"));
  assert_string_equal(cfg.https_proxy, "http://127.0.0.1:3128");
  assert_string_equal(cfg.no_proxy, "a.b");
  assert_string_equal(cfg.registry_configuration_uri, "kbs:///default/registry-configuration/test");
  const char *inline_rc = "[image.registry_config]\n[[image.registry_config.registry]]\nlocation = \"r.io\"\n"
                          "[[image.registry_config.registry.mirror]]\nlocation = \"m.io\"\n";
  CT_ASSERT_OK(cdh_config_parse_cdh(inline_rc, strlen(inline_rc), &cfg, &err), &err);
  assert_non_null(strstr(cfg.registry_config, "\"m.io\""));
  const char *bad[] = {"[image]\nextra_root_certificates = \"not an array\"\n",
                       "[image]\nextra_root_certificates = [\"no pem here\"]\n",
                       "[image]\nimage_pull_proxy = 5\n", "[aa]\naa_socket = 1\n",
                       "[image.registry_config]\n[[image.registry_config.registry]]\ninsecure = true\n"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (cdh_config_parse_cdh(bad[i], strlen(bad[i]), &cfg, &err) == CT_OK) fail_msg("accepted %s", bad[i]);
  assert_string_equal(cfg.https_proxy, "http://127.0.0.1:3128"); /* a bad file changes nothing */
  cdh_config_free(&cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_references),
      cmocka_unit_test(test_policy_scopes),
      cmocka_unit_test(test_image_config),
      cmocka_unit_test(test_registry_configuration),
      cmocka_unit_test_setup_teardown(test_unpack_and_whiteouts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_hostile_layers, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
