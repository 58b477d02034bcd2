/*
 * ct_status.h - the project's must-use result type and guard macros.
 *
 * Every function that can fail returns a ct_status and, when it fails, fills the caller's
 * ct_err with a message that says what failed and why. CT_OK is zero, so `if (st)` means
 * failure. Functions are declared with CT_RESULT so that an ignored status is a compile error.
 */
#ifndef CT_STATUS_H
#define CT_STATUS_H

#include <stdarg.h>
#include <stddef.h>

#define CT_MUST_USE __attribute__((warn_unused_result))
#define CT_PRINTF(fmt_idx, args_idx) __attribute__((format(printf, fmt_idx, args_idx)))

typedef enum ct_status {
  CT_OK = 0,
  CT_EINVAL,    /* malformed or out-of-range input from the caller or the wire */
  CT_ENOMEM,    /* allocation failed */
  CT_ELIMIT,    /* a configured or built-in bound was exceeded */
  CT_EIO,       /* file, socket or remote service failure */
  CT_ECRYPTO,   /* a signature, MAC, certificate or key check failed */
  CT_ENOTFOUND, /* the named object does not exist */
  CT_EDENIED,   /* a policy or authorization decision said no */
  CT_EEXPIRED,  /* a session, token or certificate is past its lifetime */
  CT_EUNSUPPORTED, /* a valid request for something not implemented or not enabled */
  CT_EINTERNAL, /* a broken invariant: a bug, never the caller's fault */
} ct_status;

/* The result type for declarations: `CT_RESULT foo(...);` */
#define CT_RESULT CT_MUST_USE ct_status

#define CT_ERR_MSG_MAX 512

/* An error report. The message is always NUL-terminated and never holds secret material. */
typedef struct ct_err {
  ct_status code;
  char msg[CT_ERR_MSG_MAX];
} ct_err;

/* The error-report helpers below return the code they record, so that `return ct_fail(...)`
 * reads naturally. They cannot fail themselves, so they are the only functions returning
 * ct_status that are not CT_RESULT: calling one as a statement loses nothing. */

/* Sets `err` (which may be NULL) to `code` and the formatted message; returns `code`. */
ct_status ct_fail(ct_err *err, ct_status code, const char *fmt, ...) CT_PRINTF(3, 4);
ct_status ct_vfail(ct_err *err, ct_status code, const char *fmt, va_list ap);

/* Prepends context to an existing message: "reading config: " + "bad key". Returns err->code. */
ct_status ct_err_prefix(ct_err *err, const char *fmt, ...) CT_PRINTF(2, 3);

/* Clears an error report to CT_OK and an empty message. */
void ct_err_clear(ct_err *err);

/* A short stable name for a status code ("invalid input", "limit exceeded", ...). */
const char *ct_status_name(ct_status st);

/* Appends OpenSSL's queued errors (if any) to the message and clears the queue. */
ct_status ct_fail_ossl(ct_err *err, ct_status code, const char *fmt, ...) CT_PRINTF(3, 4);

/* Propagates a failed status unchanged. */
#define CT_GUARD(expr)                                                                             \
  do {                                                                                             \
    ct_status ct__st = (expr);                                                                     \
    if (ct__st != CT_OK) return ct__st;                                                            \
  } while (0)

/* Fails with `code` and a formatted message unless `cond` holds. */
#define CT_ENSURE(cond, err, code, ...)                                                            \
  do {                                                                                             \
    if (!(cond)) return ct_fail((err), (code), __VA_ARGS__);                                       \
  } while (0)

/* For functions with cleanup: stores the status in `st` and jumps to `label` on failure. */
#define CT_GUARD_GOTO(st, expr, label)                                                             \
  do {                                                                                             \
    (st) = (expr);                                                                                 \
    if ((st) != CT_OK) goto label;                                                                 \
  } while (0)

#define CT_ENSURE_GOTO(st, cond, label, err, code, ...)                                            \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      (st) = ct_fail((err), (code), __VA_ARGS__);                                                  \
      goto label;                                                                                  \
    }                                                                                              \
  } while (0)

#endif
