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
