#include "ct_status.h"

#include <openssl/err.h>
#include <stdio.h>
#include <string.h>

ct_status ct_vfail(ct_err *err, ct_status code, const char *fmt, va_list ap) {
  if (err) {
    err->code = code;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  }
  return code;
}

ct_status ct_fail(ct_err *err, ct_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ct_vfail(err, code, fmt, ap);
  va_end(ap);
  return code;
}

ct_status ct_err_prefix(ct_err *err, const char *fmt, ...) {
  if (!err) return CT_EINTERNAL;
  char prefix[CT_ERR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  size_t plen = strnlen(prefix, sizeof prefix - 1);
  size_t mlen = strnlen(err->msg, sizeof err->msg - 1);
  if (plen + mlen >= sizeof err->msg) mlen = sizeof err->msg - 1 - plen;
  memmove(err->msg + plen, err->msg, mlen);
  memcpy(err->msg, prefix, plen);
  err->msg[plen + mlen] = '\0';
  return err->code;
}

void ct_err_clear(ct_err *err) {
  if (!err) return;
  err->code = CT_OK;
  err->msg[0] = '\0';
}

const char *ct_status_name(ct_status st) {
  switch (st) {
  case CT_OK: return "ok";
  case CT_EINVAL: return "invalid input";
  case CT_ENOMEM: return "out of memory";
  case CT_ELIMIT: return "limit exceeded";
  case CT_EIO: return "I/O error";
  case CT_ECRYPTO: return "cryptographic check failed";
  case CT_ENOTFOUND: return "not found";
  case CT_EDENIED: return "denied";
  case CT_EEXPIRED: return "expired";
  case CT_EUNSUPPORTED: return "unsupported";
  case CT_EINTERNAL: return "internal error";
  }
  return "unknown status";
}

ct_status ct_fail_ossl(ct_err *err, ct_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ct_vfail(err, code, fmt, ap);
  va_end(ap);
  unsigned long e = ERR_get_error();
  if (err && e != 0) {
    char detail[256];
    ERR_error_string_n(e, detail, sizeof detail);
    size_t used = strlen(err->msg);
    snprintf(err->msg + used, sizeof err->msg - used, " (openssl: %s)", detail);
  }
  ERR_clear_error();
  return code;
}
