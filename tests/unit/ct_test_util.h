/*
 * Shared helpers for cmocka unit tests.
 */
#ifndef CT_TEST_UTIL_H
#define CT_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ct_file.h"
#include "ct_status.h"

/* Skips are counted so that a test program tells ctest it skipped (exit status
 * CT_TEST_SKIP_CODE, the tests' SKIP_RETURN_CODE) instead of passing silently - and fails
 * under CI (CI set), where everything a test needs is installed. Every unit test includes this
 * header and calls skip() / cmocka_run_group_tests(), so both are wrapped here. */
#define CT_TEST_SKIP_CODE 77
static int ct_test__skips __attribute__((unused));
#undef skip
#define skip() (ct_test__skips++, _skip(__FILE__, __LINE__))

static inline int ct_test__finish(int failed) {
  if (failed || !ct_test__skips) return failed;
  if (getenv("CI")) {
    fprintf(stderr, "FAIL: %d test(s) skipped under CI, where nothing they need may be missing\n",
            ct_test__skips);
    return 1;
  }
  fprintf(stderr, "%d test(s) skipped: reported to ctest as skipped (exit %d)\n", ct_test__skips,
          CT_TEST_SKIP_CODE);
  return CT_TEST_SKIP_CODE;
}
#undef cmocka_run_group_tests
#define cmocka_run_group_tests(group_tests, group_setup, group_teardown)                           \
  ct_test__finish(_cmocka_run_group_tests(#group_tests, group_tests,                               \
                                          sizeof(group_tests) / sizeof((group_tests)[0]),          \
                                          group_setup, group_teardown))

/* Asserts a ct_status is CT_OK, printing the error message otherwise. */
#define CT_ASSERT_OK(expr, errp)                                                                   \
  do {                                                                                             \
    ct_status ct__s = (expr);                                                                      \
    if (ct__s != CT_OK) fail_msg("%s failed: %s", #expr, (errp)->msg);                             \
  } while (0)

/* Path of a file in ../shared/vectors, or NULL (with a skip message) when absent. */
static inline const char *ct_test_vector_path(const char *rel, char *buf, size_t cap) {
  const char *dir = getenv("CT_VECTORS_DIR");
  if (!dir) dir = "../shared/vectors";
  snprintf(buf, cap, "%s/%s", dir, rel);
  FILE *f = fopen(buf, "rb");
  if (!f) {
    /* On CI the vectors are always present: a missing file there must fail, not skip. */
    if (getenv("CI")) fail_msg("test vector %s missing in CI", buf);
    fprintf(stderr, "SKIP: test vector %s not present\n", buf);
    return NULL;
  }
  fclose(f);
  return buf;
}

/* Reads a test vector; skips the current test when absent. */
#define CT_READ_VECTOR(rel, data, len)                                                             \
  do {                                                                                             \
    char ct__path[4096];                                                                           \
    ct_err ct__e;                                                                                  \
    if (!ct_test_vector_path((rel), ct__path, sizeof ct__path)) {                                  \
      skip();                                                                                      \
    }                                                                                              \
    CT_ASSERT_OK(ct_file_read(ct__path, 64u << 20, (data), (len), &ct__e), &ct__e);                \
  } while (0)

#endif
