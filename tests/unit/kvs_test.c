#include "ct_test_util.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvs.h"

static void exercise(kvs_type type) {
  char dir[] = "/tmp/kvs_testXXXXXX";
  assert_non_null(mkdtemp(dir));
  kvs_config cfg = {.type = type, .dir_path = dir};
  kvs *s = NULL;
  ct_err err;
  CT_ASSERT_OK(kvs_open(&cfg, &s, &err), &err);
  CT_ASSERT_OK(kvs_put(s, "repository", "one/two/three", "abc\0def", 7, &err), &err);
  CT_ASSERT_OK(kvs_put(s, "repository", "a/b/c", "x", 1, &err), &err);
  uint8_t *v = NULL;
  size_t n = 0;
  CT_ASSERT_OK(kvs_get(s, "repository", "one/two/three", &v, &n, &err), &err);
  assert_int_equal(n, 7);
  assert_memory_equal(v, "abc\0def", 7);
  free(v);
  CT_ASSERT_OK(kvs_put(s, "repository", "one/two/three", "new", 3, &err), &err);
  CT_ASSERT_OK(kvs_get(s, "repository", "one/two/three", &v, &n, &err), &err);
  assert_int_equal(n, 3);
  free(v);
  json_t *keys = NULL;
  CT_ASSERT_OK(kvs_list(s, "repository", &keys, &err), &err);
  assert_int_equal(json_array_size(keys), 2);
  assert_string_equal(json_string_value(json_array_get(keys, 0)), "a/b/c");
  assert_string_equal(json_string_value(json_array_get(keys, 1)), "one/two/three");
  json_decref(keys);
  CT_ASSERT_OK(kvs_delete(s, "repository", "a/b/c", &err), &err);
  assert_int_equal(kvs_get(s, "repository", "a/b/c", &v, &n, &err), CT_ENOTFOUND);
  assert_int_equal(kvs_delete(s, "repository", "a/b/c", &err), CT_ENOTFOUND);
  /* Namespaces are separate. */
  assert_int_equal(kvs_get(s, "kbs", "one/two/three", &v, &n, &err), CT_ENOTFOUND);
  /* Bad keys are refused before touching anything. */
  assert_int_equal(kvs_put(s, "repository", "../etc/passwd", "x", 1, &err), CT_EINVAL);
  assert_int_equal(kvs_put(s, "repository", "a b", "x", 1, &err), CT_EINVAL);
  assert_int_equal(kvs_put(s, "repository", "", "x", 1, &err), CT_EINVAL);
  kvs_close(s);
  if (type != KVS_MEMORY) {
    /* Data survives a reopen. */
    CT_ASSERT_OK(kvs_open(&cfg, &s, &err), &err);
    CT_ASSERT_OK(kvs_get(s, "repository", "one/two/three", &v, &n, &err), &err);
    assert_memory_equal(v, "new", 3);
    free(v);
    kvs_close(s);
  }
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

static void test_memory(void **state) { (void)state; exercise(KVS_MEMORY); }
static void test_local_fs(void **state) { (void)state; exercise(KVS_LOCAL_FS); }
static void test_local_json(void **state) { (void)state; exercise(KVS_LOCAL_JSON); }

static void test_local_fs_layout(void **state) {
  (void)state;
  char dir[] = "/tmp/kvs_testXXXXXX";
  assert_non_null(mkdtemp(dir));
  kvs_config cfg = {.type = KVS_LOCAL_FS, .dir_path = dir};
  kvs *s = NULL;
  ct_err err;
  CT_ASSERT_OK(kvs_open(&cfg, &s, &err), &err);
  CT_ASSERT_OK(kvs_put(s, "repository", "one/two/three", "v", 1, &err), &err);
  kvs_close(s);
  /* Trustee's LocalFs writes '/' in keys as the four characters \x2F. */
  char path[256];
  snprintf(path, sizeof path, "%s/repository/one\\x2Ftwo\\x2Fthree", dir);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* Nothing below the storage directory is followed: a symlink planted as a namespace directory
 * or as an entry is refused for reads and replaced (never written through) by writes. New
 * directories are 0700 and files 0600 whatever the umask, and no temporary file is left. */
static void test_local_fs_no_symlinks(void **state) {
  (void)state;
  char dir[] = "/tmp/kvs_testXXXXXX", outside[] = "/tmp/kvs_outsideXXXXXX";
  assert_non_null(mkdtemp(dir));
  assert_non_null(mkdtemp(outside));
  mode_t old = umask(0);
  kvs_config cfg = {.type = KVS_LOCAL_FS, .dir_path = dir};
  kvs *s = NULL;
  ct_err err;
  CT_ASSERT_OK(kvs_open(&cfg, &s, &err), &err);
  CT_ASSERT_OK(kvs_put(s, "repository", "a/b/c", "v", 1, &err), &err);
  char path[512], target[512];
  struct stat sb;
  snprintf(path, sizeof path, "%s/repository", dir);
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0700);
  snprintf(path, sizeof path, "%s/repository/a\\x2Fb\\x2Fc", dir);
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);

  /* An entry that is a symlink to a file outside. */
  snprintf(target, sizeof target, "%s/victim", outside);
  write_file(target, "outside-secret");
  snprintf(path, sizeof path, "%s/repository/x\\x2Fy\\x2Fz", dir);
  assert_int_equal(symlink(target, path), 0);
  uint8_t *v = NULL;
  size_t n = 0;
  assert_int_equal(kvs_get(s, "repository", "x/y/z", &v, &n, &err), CT_EIO);
  assert_non_null(strstr(err.msg, "symbolic link"));
  CT_ASSERT_OK(kvs_put(s, "repository", "x/y/z", "new", 3, &err), &err);
  assert_int_equal(lstat(path, &sb), 0);
  assert_true(S_ISREG(sb.st_mode));
  CT_ASSERT_OK(kvs_get(s, "repository", "x/y/z", &v, &n, &err), &err);
  assert_memory_equal(v, "new", 3);
  free(v);
  uint8_t *o = NULL;
  CT_ASSERT_OK(ct_file_read(target, 100, &o, &n, &err), &err);
  assert_memory_equal(o, "outside-secret", 14);
  free(o);

  /* A namespace directory that is a symlink to a directory outside. */
  snprintf(path, sizeof path, "%s/kbs", dir);
  assert_int_equal(symlink(outside, path), 0);
  assert_int_equal(kvs_put(s, "kbs", "victim", "x", 1, &err), CT_EIO);
  assert_non_null(strstr(err.msg, "symbolic link"));
  assert_int_equal(kvs_get(s, "kbs", "victim", &v, &n, &err), CT_EIO);
  CT_ASSERT_OK(ct_file_read(target, 100, &o, &n, &err), &err);
  assert_memory_equal(o, "outside-secret", 14);
  free(o);

  /* No temporary file survives a write; listings show keys only. */
  json_t *keys = NULL;
  CT_ASSERT_OK(kvs_list(s, "repository", &keys, &err), &err);
  assert_int_equal(json_array_size(keys), 2);
  json_decref(keys);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s/repository | grep '^\\.')\"", dir);
  assert_int_equal(system(cmd), 0);
  kvs_close(s);
  umask(old);
  snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, outside);
  assert_int_equal(system(cmd), 0);
}

/* Keys follow upstream's rules: no leading '.' or '/'. */
static void test_key_rules(void **state) {
  (void)state;
  ct_err err;
  assert_int_equal(kvs_check_key(".hidden", &err), CT_EINVAL);
  assert_int_equal(kvs_check_key("/abs", &err), CT_EINVAL);
  CT_ASSERT_OK(kvs_check_key("default/key/tag.v1", &err), &err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_memory),
      cmocka_unit_test(test_local_fs),
      cmocka_unit_test(test_local_json),
      cmocka_unit_test(test_local_fs_layout),
      cmocka_unit_test(test_local_fs_no_symlinks),
      cmocka_unit_test(test_key_rules),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
