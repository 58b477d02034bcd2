/*
 * vault_kv_check - the Vault resource backend against a real OpenBao dev server (VAULT_ADDR,
 * VAULT_TOKEN, CT_BAO_BIN, CT_BAO_PID from tests/e2e/services.py): the pattern's KV v2 mapping,
 * upstream's KV v1 layout, the cache, and the failures (missing secret or field, wrong token,
 * read-only mapping, non-text value, stalled and sealed server) with their messages.
 */
#include "ct_test_util.h"

#include <dirent.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "vault_kv.h"

static const char *addr, *token;

static void bao(const char *args) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "\"%s\" %s >/dev/null", getenv("CT_BAO_BIN"), args);
  if (system(cmd) != 0) fail_msg("failed: %s", cmd);
}

static unsigned timeout_ms = 10000; /* generous: CI runs this under ASan beside other suites */

static vault_kv *client(unsigned kv, const char *mount, const char *path, const char *field, unsigned ttl,
                        const char *tok) {
  vault_kv_config c = {.url = addr, .token = tok ? tok : token, .mount_path = mount, .verify_ssl = true,
                       .kv_version = kv, .secret_path = path, .secret_field = field, .cache_ttl_s = ttl,
                       .timeout_ms = timeout_ms};
  vault_kv *v = NULL;
  ct_err err;
  CT_ASSERT_OK(vault_kv_new(&c, &v, &err), &err);
  return v;
}

static void expect_val(vault_kv *v, const char *repo, const char *type, const char *tag, const char *want) {
  uint8_t *val = NULL;
  size_t n = 0;
  ct_err err;
  CT_ASSERT_OK(vault_kv_get(v, repo, type, tag, &val, &n, &err), &err);
  assert_int_equal(n, strlen(want));
  assert_memory_equal(val, want, n);
  free(val);
}

static void expect_err(vault_kv *v, const char *repo, const char *type, const char *tag, ct_status code,
                         const char *needle) {
  uint8_t *val = NULL;
  size_t n = 0;
  ct_err err;
  ct_status st = vault_kv_get(v, repo, type, tag, &val, &n, &err);
  if (st == CT_OK) free(val);
  print_message("%s/%s/%s: %s\n", repo, type, tag, st == CT_OK ? "(ok)" : err.msg);
  assert_int_equal(st, code);
  assert_non_null(strstr(err.msg, needle));
}

static void test_pattern_kv2(void **state) {
  (void)state;
  bao("kv put secret/hub/kbsres1 key1=one key2=two key3=three");
  vault_kv *v = client(2, "secret", "hub/{type}", "{tag}", 0, NULL);
  expect_val(v, "default", "kbsres1", "key3", "three");
  expect_val(v, "default", "kbsres1", "key1", "one");
  expect_err(v, "default", "kbsres1", "key9", CT_ENOTFOUND, "no field \"key9\" (fields: key1, key2, key3)");
  expect_err(v, "default", "nosuch", "key1", CT_ENOTFOUND, "vault: get hub/nosuch: no such secret");
  ct_err err;
  assert_int_equal(vault_kv_put(v, "default", "kbsres1", "key1", "x", 1, &err), CT_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "read-only"));
  vault_kv_free(v);
  v = client(2, "secret", "hub/{type}", "{tag}", 0, "not-the-token");
  expect_err(v, "default", "kbsres1", "key3", CT_EDENIED, "permission denied (HTTP 403)");
  assert_null(strstr(err.msg, "not-the-token"));
  vault_kv_free(v);
}

static void test_upstream_kv1(void **state) {
  (void)state;
  bao("secrets enable -path=kv1 -version=1 kv");
  vault_kv *v = client(1, "kv1", NULL, NULL, 0, NULL);
  ct_err err;
  CT_ASSERT_OK(vault_kv_put(v, "default", "key", "k1", "hello vault", 11, &err), &err);
  expect_val(v, "default", "key", "k1", "hello vault");
  assert_int_equal(vault_kv_put(v, "default", "key", "bin", "\xff\xfe", 2, &err), CT_EINVAL);
  assert_non_null(strstr(err.msg, "not UTF-8"));
  bao("kv put kv1/default/key/other data=from-bao");
  expect_val(v, "default", "key", "other", "from-bao");
  vault_kv_free(v);
  /* A KV v2 mount read as v1 says so. */
  v = client(1, "secret", "hub/{type}", "{tag}", 0, NULL);
  expect_err(v, "default", "kbsres1", "key3", CT_ENOTFOUND, "kv_version = 1");
  vault_kv_free(v);
}

static void test_cache(void **state) {
  (void)state;
  bao("kv put secret/hub/cached k=v1");
  vault_kv *cached = client(2, "secret", "hub/{type}", "{tag}", 60, NULL);
  vault_kv *plain = client(2, "secret", "hub/{type}", "{tag}", 0, NULL);
  expect_val(cached, "default", "cached", "k", "v1");
  bao("kv put secret/hub/cached k=v2");
  expect_val(cached, "default", "cached", "k", "v1"); /* within the TTL */
  expect_val(plain, "default", "cached", "k", "v2");
  vault_kv_free(cached);
  vault_kv_free(plain);
}

/* kill(SIGSTOP) returns before every thread has stopped (a Go server's busy thread may still
 * answer one more request): wait until /proc shows each of its threads stopped. */
static void wait_stopped(pid_t pid) {
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
  for (int tries = 0; tries < 3000; tries++) { /* 30 s: a loaded machine schedules late */
    DIR *d = opendir(dir);
    if (!d) fail_msg("OpenBao (pid %d) is gone", (int)pid);
    bool all = true;
    struct dirent *de;
    while ((de = readdir(d))) {
      if (de->d_name[0] == '.') continue;
      char path[384], buf[512];
      snprintf(path, sizeof path, "%s/%s/stat", dir, de->d_name);
      FILE *f = fopen(path, "r");
      if (!f) continue;
      size_t n = fread(buf, 1, sizeof buf - 1, f);
      fclose(f);
      buf[n] = 0;
      char *close_paren = strrchr(buf, ')');
      if (close_paren && close_paren[1] == ' ' && close_paren[2] != 'T' && close_paren[2] != 't') all = false;
    }
    closedir(d);
    if (all) return;
    usleep(10000);
  }
  fail_msg("OpenBao (pid %d) did not stop within 30 s of SIGSTOP", (int)pid);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Last: leaves the server sealed. */
static void test_stalled_and_sealed(void **state) {
  (void)state;
  /* The bound under test is the stalled client's; the checks after the server resumes use the
   * generous one, so a loaded machine's slow resume is not mistaken for a failure. */
  timeout_ms = 1500;
  vault_kv *stalled = client(2, "secret", "hub/{type}", "{tag}", 0, NULL);
  timeout_ms = 10000;
  vault_kv *v = client(2, "secret", "hub/{type}", "{tag}", 0, NULL);
  pid_t pid = atoi(getenv("CT_BAO_PID"));
  kill(pid, SIGSTOP);
  wait_stopped(pid);
  double t0 = now_s();
  expect_err(stalled, "default", "kbsres1", "key3", CT_EIO, "vault: get hub/kbsres1: no reply within 1500 ms");
  double took = now_s() - t0;
  kill(pid, SIGCONT);
  print_message("stalled: %.2f s\n", took);
  assert_true(took < 3.0);
  ct_err err;
  CT_ASSERT_OK(vault_kv_ping(v, &err), &err);
  /* the client that saw the stall reconnects by itself */
  expect_val(stalled, "default", "kbsres1", "key3", "three");
  vault_kv_free(stalled);
  bao("operator seal");
  expect_err(v, "default", "kbsres1", "key3", CT_EIO, "sealed");
  assert_int_equal(vault_kv_ping(v, &err), CT_EIO);
  vault_kv_free(v);
}

int main(void) {
  addr = getenv("VAULT_ADDR");
  token = getenv("VAULT_TOKEN");
  if (!addr || !token || !getenv("CT_BAO_BIN")) {
    fprintf(stderr, "run through tests/e2e/services.py run openbao -- ...\n");
    return getenv("CI") ? 1 : 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pattern_kv2),
      cmocka_unit_test(test_upstream_kv1),
      cmocka_unit_test(test_cache),
      cmocka_unit_test(test_stalled_and_sealed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
