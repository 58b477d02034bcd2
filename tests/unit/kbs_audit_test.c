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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chain),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
