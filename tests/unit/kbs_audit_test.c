#include "ct_test_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include "kbs_audit.h"

static void make_log(const char *path, int n) {
  unlink(path);
  kbs_audit *a = NULL;
  ct_err err;
  CT_ASSERT_OK(kbs_audit_open(path, &a, &err), &err);
  for (int i = 0; i < n; i++) {
    kbs_audit_event e = {.event = i % 2 ? "resource-refusal" : "resource-release", .tee = "sample",
                         .tee_key = "thumb", .path = "/kbs/v0/resource/a/b/c", .decision = i % 2 ? "deny" : "allow",
                         .reason = i % 2 ? "PolicyDeny" : NULL};
    CT_ASSERT_OK(kbs_audit_append(a, &e, &err), &err);
  }
  kbs_audit_close(a);
}

/* Rewrites the file keeping lines for which keep(lineno) is true, replacing line `edit` with
 * `replacement` when not NULL. */
static void rewrite(const char *path, int drop, int edit, const char *from, const char *to) {
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char buf[8192], out[65536] = "";
  int lineno = 0;
  while (fgets(buf, sizeof buf, f)) {
    lineno++;
    if (lineno == drop) continue;
    if (lineno == edit) {
      char *p = strstr(buf, from);
      assert_non_null(p);
      char tmp[8192];
      snprintf(tmp, sizeof tmp, "%.*s%s%s", (int)(p - buf), buf, to, p + strlen(from));
      strcat(out, tmp);
    } else {
      strcat(out, buf);
    }
  }
  fclose(f);
  f = fopen(path, "w");
  fputs(out, f);
  fclose(f);
}

static void test_chain(void **state) {
  (void)state;
  char path[] = "/tmp/kbs_audit_testXXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  ct_err err;
  size_t n = 0;
  make_log(path, 4);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  CT_ASSERT_OK(kbs_audit_verify_file(path, &n, &err), &err);
  assert_int_equal(n, 4);

  /* Reopening continues the chain. */
  kbs_audit *a = NULL;
  CT_ASSERT_OK(kbs_audit_open(path, &a, &err), &err);
  kbs_audit_event e = {.event = "admin-write", .path = "/kbs/v0/resource-policy", .decision = "allow"};
  CT_ASSERT_OK(kbs_audit_append(a, &e, &err), &err);
  kbs_audit_close(a);
  CT_ASSERT_OK(kbs_audit_verify_file(path, &n, &err), &err);
  assert_int_equal(n, 5);

  /* An edited line is named. */
  rewrite(path, 0, 2, "\"deny\"", "\"allow\"");
  assert_int_equal(kbs_audit_verify_file(path, &n, &err), CT_ECRYPTO);
  assert_non_null(strstr(err.msg, "line 2 "));
  assert_non_null(strstr(err.msg, "edited"));
  /* Refuses to append to a broken chain. */
  assert_int_not_equal(kbs_audit_open(path, &a, &err), CT_OK);

  /* A deleted line is named by its position. */
  make_log(path, 4);
  rewrite(path, 3, 0, NULL, NULL);
  assert_int_equal(kbs_audit_verify_file(path, &n, &err), CT_ECRYPTO);
  assert_non_null(strstr(err.msg, "line 3:"));
  assert_non_null(strstr(err.msg, "deleted"));

  /* A line from another chain (recomputed hash, wrong prev). */
  make_log(path, 3);
  char other[sizeof path + 8];
  snprintf(other, sizeof other, "%s.other", path);
  make_log(other, 3);
  FILE *f = fopen(other, "r");
  char l1[8192], l2[8192];
  assert_non_null(fgets(l1, sizeof l1, f));
  assert_non_null(fgets(l2, sizeof l2, f));
  fclose(f);
  f = fopen(path, "r");
  char m1[8192];
  assert_non_null(fgets(m1, sizeof m1, f));
  fclose(f);
  f = fopen(path, "w");
  fputs(m1, f);
  fputs(l2, f); /* seq 2 but chained to the other file's first entry */
  fclose(f);
  if (strcmp(m1, l1)) {
    assert_int_equal(kbs_audit_verify_file(path, &n, &err), CT_ECRYPTO);
    assert_non_null(strstr(err.msg, "line 2"));
  }

  /* A torn last line. */
  make_log(path, 2);
  f = fopen(path, "a");
  fputs("{\"seq\":3,", f);
  fclose(f);
  assert_int_equal(kbs_audit_verify_file(path, &n, &err), CT_EINVAL);
  assert_non_null(strstr(err.msg, "line 3: incomplete"));
  unlink(path);
  unlink(other);
}

/* Chains kept in a storage backend: written in order by a background thread, continued after a
 * restart, and an edited or deleted entry (the last one included, thanks to the head record) is
 * named. */
static void test_store_chain(void **state) {
  (void)state;
  char dir[] = "/tmp/kbs_audit_storeXXXXXX";
  assert_non_null(mkdtemp(dir));
  kvs_config kc = {.type = KVS_LOCAL_FS, .dir_path = dir};
  kvs *store = NULL;
  ct_err err;
  CT_ASSERT_OK(kvs_open(&kc, &store, &err), &err);
  for (int round = 0; round < 2; round++) {
    kbs_audit *a = NULL;
    CT_ASSERT_OK(kbs_audit_open_store(store, "replica-1", &a, &err), &err);
    for (int i = 0; i < 2; i++) {
      kbs_audit_event e = {.event = "resource-release", .tee = "sample", .path = "/kbs/v0/resource/a/b/c",
                           .decision = "allow"};
      CT_ASSERT_OK(kbs_audit_append(a, &e, &err), &err);
    }
    kbs_audit_close(a); /* drains the queue */
  }
  kbs_audit *other = NULL;
  CT_ASSERT_OK(kbs_audit_open_store(store, "replica-2", &other, &err), &err);
  kbs_audit_event e = {.event = "admin-write", .path = "/kbs/v0/resource-policy", .decision = "allow"};
  CT_ASSERT_OK(kbs_audit_append(other, &e, &err), &err);
  kbs_audit_close(other);
  size_t n = 0;
  CT_ASSERT_OK(kbs_audit_verify_store(store, "replica-1", &n, &err), &err);
  assert_int_equal(n, 4);
  CT_ASSERT_OK(kbs_audit_verify_store(store, NULL, &n, &err), &err);
  assert_int_equal(n, 5);

  /* Edit entry 2. */
  uint8_t *v = NULL;
  size_t len = 0;
  CT_ASSERT_OK(kvs_get(store, KBS_AUDIT_NS, "replica-1/000000000002", &v, &len, &err), &err);
  char *edited = strndup((char *)v, len);
  char *p = strstr(edited, "\"allow\"");
  assert_non_null(p);
  memcpy(p, "\"deny\" ", 7);
  CT_ASSERT_OK(kvs_put(store, KBS_AUDIT_NS, "replica-1/000000000002", edited, strlen(edited), &err), &err);
  assert_int_equal(kbs_audit_verify_store(store, "replica-1", &n, &err), CT_ECRYPTO);
  assert_non_null(strstr(err.msg, "replica-1/000000000002"));
  assert_non_null(strstr(err.msg, "edited"));
  assert_int_not_equal(kbs_audit_open_store(store, "replica-1", &other, &err), CT_OK);
  CT_ASSERT_OK(kvs_put(store, KBS_AUDIT_NS, "replica-1/000000000002", v, len, &err), &err);
  free(edited);
  free(v);
  /* Delete the last entry: the head record gives it away. */
  CT_ASSERT_OK(kvs_delete(store, KBS_AUDIT_NS, "replica-1/000000000004", &err), &err);
  assert_int_equal(kbs_audit_verify_store(store, NULL, &n, &err), CT_ECRYPTO);
  assert_non_null(strstr(err.msg, "entries #4..#4 were deleted"));
  kvs_close(store);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chain),
      cmocka_unit_test(test_store_chain),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
