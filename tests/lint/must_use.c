/*
 * lint.must-use compiles this file twice: as it is (it must compile), and with CT_LINT_IGNORE
 * defined, where a file-static helper's status and a library function's status are ignored -
 * the compiler must refuse that.
 */
#include "ct_buf.h"
#include "ct_status.h"

static CT_RESULT lint__helper(ct_err *err) { return ct_fail(err, CT_EINVAL, "refused"); }

int main(void) {
  ct_err err;
  ct_buf b;
  ct_buf_init(&b, 16);
#ifdef CT_LINT_IGNORE
  lint__helper(&err);
  ct_buf_append(&b, "x", 1, &err);
#else
  if (lint__helper(&err) == CT_OK) return 1;
  if (ct_buf_append(&b, "x", 1, &err) != CT_OK) return 1;
#endif
  ct_buf_free(&b);
  return 0;
}
