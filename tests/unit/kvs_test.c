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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_memory),
      cmocka_unit_test(test_local_fs),
      cmocka_unit_test(test_local_json),
      cmocka_unit_test(test_local_fs_layout),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
