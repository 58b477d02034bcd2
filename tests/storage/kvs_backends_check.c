/*
 * kvs_backends_check - the same contract checked on every storage backend, the remote ones
 * against real servers: PostgreSQL (CT_PG_HOST/PORT/DB/USER/PASSWORD/PID) and Redis
 * (CT_REDIS_URL/PID), started by tests/e2e/services.py (see tests/storage/CMakeLists.txt).
 *
 * Contract: binary-safe values, overwrite, list, delete, namespaces apart, set-if-absent won by
 * exactly one of many concurrent writers, expiry, and for the remote backends: an error naming
 * the backend and operation within the timeout when the server stalls (SIGSTOP) or is gone, and
 * automatic reconnection when it is back.
 */
#include "ct_test_util.h"

#include <pthread.h>
#include <dirent.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "kvs.h"

#define THREADS 8

typedef struct backend {
  const char *name;
  kvs_config cfg;
  kvs *s;
  pid_t pid; /* remote server, for the stall test */
} backend;

static backend backends[5];
static size_t n_backends;
static char tmpdir_fs[] = "/tmp/kvs_checkXXXXXX", tmpdir_json[] = "/tmp/kvs_checkXXXXXX";

/* Signals a server and its children (PostgreSQL serves each connection from a child that runs
 * in a session of its own, so a process group does not reach it). */
static void signal_tree(pid_t pid, int sig) {
  kill(pid, sig);
  char cmd[96];
  snprintf(cmd, sizeof cmd, "pkill -%d -P %d", sig, (int)pid);
  if (system(cmd) < 0) fail_msg("pkill failed");
}

/* kill(SIGSTOP) returns before every thread has stopped (a Go server's busy thread may still
 * answer one more request): wait until /proc shows each of its threads stopped. */
static void wait_stopped(pid_t pid) {
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
  for (int tries = 0; tries < 200; tries++) {
    DIR *d = opendir(dir);
    if (!d) return;
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
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int setup(void **state) {
  (void)state;
  ct_err err;
  backends[n_backends++] = (backend){.name = "Memory", .cfg = {.type = KVS_MEMORY}};
  assert_non_null(mkdtemp(tmpdir_fs));
  backends[n_backends++] = (backend){.name = "LocalFs", .cfg = {.type = KVS_LOCAL_FS, .dir_path = tmpdir_fs}};
  assert_non_null(mkdtemp(tmpdir_json));
  backends[n_backends++] = (backend){.name = "LocalJson", .cfg = {.type = KVS_LOCAL_JSON, .dir_path = tmpdir_json}};
  if (getenv("CT_PG_PORT")) {
    backend b = {.name = "Postgres",
                 .cfg = {.type = KVS_POSTGRES,
                  .pg_host = getenv("CT_PG_HOST"),
                  .pg_port = (unsigned)atoi(getenv("CT_PG_PORT")),
                  .pg_db = getenv("CT_PG_DB"),
                  .pg_username = getenv("CT_PG_USER"),
                  .pg_password = getenv("CT_PG_PASSWORD"),
                  .timeout_ms = 10000}};
    b.pid = getenv("CT_PG_PID") ? atoi(getenv("CT_PG_PID")) : 0;
    backends[n_backends++] = b;
  } else if (getenv("CI")) {
    fail_msg("CT_PG_PORT not set under CI (run through tests/e2e/services.py)");
  }
  if (getenv("CT_REDIS_URL")) {
    backend b = {.name = "Redis", .cfg = {.type = KVS_REDIS, .redis_url = getenv("CT_REDIS_URL"), .timeout_ms = 10000}};
    b.pid = getenv("CT_REDIS_PID") ? atoi(getenv("CT_REDIS_PID")) : 0;
    backends[n_backends++] = b;
  } else if (getenv("CI")) {
    fail_msg("CT_REDIS_URL not set under CI (run through tests/e2e/services.py)");
  }
  for (size_t i = 0; i < n_backends; i++) CT_ASSERT_OK(kvs_open(&backends[i].cfg, &backends[i].s, &err), &err);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  for (size_t i = 0; i < n_backends; i++) kvs_close(backends[i].s);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s %s", tmpdir_fs, tmpdir_json);
  return system(cmd) == 0 ? 0 : -1;
}

static void test_basic(void **state) {
  (void)state;
  for (size_t i = 0; i < n_backends; i++) {
    kvs *s = backends[i].s;
    ct_err err;
    print_message("basic: %s\n", backends[i].name);
    uint8_t bin[256];
    for (int k = 0; k < 256; k++) bin[k] = (uint8_t)k;
    CT_ASSERT_OK(kvs_put(s, "repository", "one/two/three", bin, sizeof bin, &err), &err);
    CT_ASSERT_OK(kvs_put(s, "repository", "a/b/c", "x", 1, &err), &err);
    CT_ASSERT_OK(kvs_put(s, "repository", "empty/e/e", "", 0, &err), &err);
    uint8_t *v = NULL;
    size_t n = 0;
    CT_ASSERT_OK(kvs_get(s, "repository", "one/two/three", &v, &n, &err), &err);
    assert_int_equal(n, sizeof bin);
    assert_memory_equal(v, bin, sizeof bin);
    free(v);
    CT_ASSERT_OK(kvs_get(s, "repository", "empty/e/e", &v, &n, &err), &err);
    assert_int_equal(n, 0);
    free(v);
    CT_ASSERT_OK(kvs_put(s, "repository", "one/two/three", "new", 3, &err), &err);
    CT_ASSERT_OK(kvs_get(s, "repository", "one/two/three", &v, &n, &err), &err);
    assert_int_equal(n, 3);
    assert_memory_equal(v, "new", 3);
    free(v);
    json_t *keys = NULL;
    CT_ASSERT_OK(kvs_list(s, "repository", &keys, &err), &err);
    assert_int_equal(json_array_size(keys), 3);
    assert_string_equal(json_string_value(json_array_get(keys, 0)), "a/b/c");
    assert_string_equal(json_string_value(json_array_get(keys, 2)), "one/two/three");
    json_decref(keys);
    CT_ASSERT_OK(kvs_delete(s, "repository", "a/b/c", &err), &err);
    assert_int_equal(kvs_get(s, "repository", "a/b/c", &v, &n, &err), CT_ENOTFOUND);
    assert_int_equal(kvs_delete(s, "repository", "a/b/c", &err), CT_ENOTFOUND);
    assert_int_equal(kvs_get(s, "kbs", "one/two/three", &v, &n, &err), CT_ENOTFOUND);
    CT_ASSERT_OK(kvs_list(s, "reference_value", &keys, &err), &err);
    assert_int_equal(json_array_size(keys), 0);
    json_decref(keys);
    assert_int_equal(kvs_put(s, "repository", "../x", "x", 1, &err), CT_EINVAL);
    CT_ASSERT_OK(kvs_ping(s, &err), &err);
  }
}

typedef struct race {
  kvs *s;
  char key[64];
  int won;
} race;

static void *race_run(void *arg) {
  race *r = arg;
  ct_err err;
  bool inserted = false;
  if (kvs_put_nx(r->s, "kbs_protocol_session", r->key, "claimed", 7, 60, &inserted, &err) == CT_OK && inserted)
    r->won = 1;
  return NULL;
}

/* Set-if-absent: one winner among concurrent writers (separate handles, like replicas). */
static void test_put_if_absent(void **state) {
  (void)state;
  for (size_t i = 0; i < n_backends; i++) {
    print_message("put-if-absent: %s\n", backends[i].name);
    bool shared = kvs_is_shared(backends[i].s);
    kvs *handles[THREADS];
    race races[THREADS];
    pthread_t t[THREADS];
    char key[64];
    snprintf(key, sizeof key, "nonce/%ld-%zu", (long)time(NULL), i);
    for (int k = 0; k < THREADS; k++) {
      ct_err err;
      handles[k] = backends[i].s;
      if (shared) CT_ASSERT_OK(kvs_open(&backends[i].cfg, &handles[k], &err), &err);
      races[k] = (race){.s = handles[k]};
      snprintf(races[k].key, sizeof races[k].key, "%s", key);
    }
    for (int k = 0; k < THREADS; k++) pthread_create(&t[k], NULL, race_run, &races[k]);
    int winners = 0;
    for (int k = 0; k < THREADS; k++) {
      pthread_join(t[k], NULL);
      winners += races[k].won;
      if (shared) kvs_close(handles[k]);
    }
    assert_int_equal(winners, 1);
    ct_err err;
    bool inserted = true;
    CT_ASSERT_OK(kvs_put_nx(backends[i].s, "kbs_protocol_session", key, "again", 5, 0, &inserted, &err), &err);
    assert_false(inserted);
    uint8_t *v = NULL;
    size_t n = 0;
    CT_ASSERT_OK(kvs_get(backends[i].s, "kbs_protocol_session", key, &v, &n, &err), &err);
    assert_memory_equal(v, "claimed", 7);
    free(v);
  }
}

/* Entries with a TTL vanish for get, list and set-if-absent once expired; sweep removes them. */
static void test_expiry(void **state) {
  (void)state;
  ct_err err;
  for (size_t i = 0; i < n_backends; i++) {
    bool ins = false;
    CT_ASSERT_OK(kvs_put_nx(backends[i].s, "kbs_protocol_session", "ttl/a", "a", 1, 1, &ins, &err), &err);
    assert_true(ins);
    CT_ASSERT_OK(kvs_put_ttl(backends[i].s, "kbs_protocol_session", "ttl/b", "b", 1, 1, &err), &err);
    CT_ASSERT_OK(kvs_put(backends[i].s, "kbs_protocol_session", "keep", "k", 1, &err), &err);
  }
  sleep(2);
  for (size_t i = 0; i < n_backends; i++) {
    print_message("expiry: %s\n", backends[i].name);
    kvs *s = backends[i].s;
    uint8_t *v = NULL;
    size_t n = 0;
    assert_int_equal(kvs_get(s, "kbs_protocol_session", "ttl/a", &v, &n, &err), CT_ENOTFOUND);
    assert_int_equal(kvs_get(s, "kbs_protocol_session", "ttl/b", &v, &n, &err), CT_ENOTFOUND);
    json_t *keys = NULL;
    CT_ASSERT_OK(kvs_list(s, "kbs_protocol_session", &keys, &err), &err);
    for (size_t k = 0; k < json_array_size(keys); k++)
      assert_null(strstr(json_string_value(json_array_get(keys, k)), "ttl/"));
    json_decref(keys);
    bool ins = false;
    CT_ASSERT_OK(kvs_put_nx(s, "kbs_protocol_session", "ttl/a", "a2", 2, 60, &ins, &err), &err);
    assert_true(ins);
    CT_ASSERT_OK(kvs_sweep(s, "kbs_protocol_session", &err), &err);
    CT_ASSERT_OK(kvs_get(s, "kbs_protocol_session", "keep", &v, &n, &err), &err);
    free(v);
    CT_ASSERT_OK(kvs_get(s, "kbs_protocol_session", "ttl/a", &v, &n, &err), &err);
    assert_memory_equal(v, "a2", 2);
    free(v);
  }
}

/* A stalled server (SIGSTOP keeps its socket open and answers nothing) costs at most about the
 * timeout and gives an error naming backend and operation; once it continues, the same handle
 * works again. */
static void test_stall_and_recover(void **state) {
  (void)state;
  for (size_t i = 0; i < n_backends; i++) {
    if (!backends[i].pid) continue;
    print_message("stall: %s\n", backends[i].name);
    /* A handle with the short bound under test; the shared one keeps a generous bound for CI. */
    kvs_config short_cfg = backends[i].cfg;
    short_cfg.timeout_ms = 1500;
    kvs *s = NULL;
    ct_err err;
    CT_ASSERT_OK(kvs_open(&short_cfg, &s, &err), &err);
    CT_ASSERT_OK(kvs_put(s, "repository", "stall/x/y", "before", 6, &err), &err);
    signal_tree(backends[i].pid, SIGSTOP);
    wait_stopped(backends[i].pid);
    double t0 = now_s();
    uint8_t *v = NULL;
    size_t n = 0;
    ct_status st = kvs_get(s, "repository", "stall/x/y", &v, &n, &err);
    double took = now_s() - t0;
    signal_tree(backends[i].pid, SIGCONT);
    assert_int_equal(st, CT_EIO);
    print_message("  %.2f s: %s\n", took, err.msg);
    assert_true(took < 1.5 + 1.0);
    assert_non_null(strstr(err.msg, backends[i].cfg.type == KVS_POSTGRES ? "postgres: get repository/stall/x/y"
                                                                         : "redis: get repository/stall/x/y"));
    assert_null(strstr(err.msg, "before"));
    /* Reconnects by itself. */
    CT_ASSERT_OK(kvs_get(s, "repository", "stall/x/y", &v, &n, &err), &err);
    assert_memory_equal(v, "before", 6);
    free(v);
    kvs_close(s);
  }
}

/* Nothing listens: a prompt error, no hang. */
static void test_unreachable(void **state) {
  (void)state;
  kvs_config pg = {.type = KVS_POSTGRES, .pg_host = "127.0.0.1", .pg_port = 1, .timeout_ms = 1000};
  kvs_config rd = {.type = KVS_REDIS, .redis_url = "redis://127.0.0.1:1", .timeout_ms = 1000};
  kvs_config *cfgs[] = {&pg, &rd};
  for (size_t i = 0; i < 2; i++) {
    kvs *s = NULL;
    ct_err err;
    CT_ASSERT_OK(kvs_open(cfgs[i], &s, &err), &err);
    double t0 = now_s();
    assert_int_equal(kvs_put(s, "kbs", "resource-policy", "p", 1, &err), CT_EIO);
    assert_true(now_s() - t0 < 2.0);
    print_message("unreachable: %s\n", err.msg);
    assert_non_null(strstr(err.msg, i == 0 ? "postgres: put kbs/resource-policy" : "redis: put kbs/resource-policy"));
    assert_int_equal(kvs_ping(s, &err), CT_EIO);
    kvs_close(s);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_basic),
      cmocka_unit_test(test_put_if_absent),
      cmocka_unit_test(test_expiry),
      cmocka_unit_test(test_stall_and_recover),
      cmocka_unit_test(test_unreachable),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
