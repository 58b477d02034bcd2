/*
 * ct_mem.h - secret-safe memory helpers.
 */
#ifndef CT_MEM_H
#define CT_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

/* Constant-time equality of two byte strings; lengths are compared first (lengths are public). */
bool ct_memeq(const void *a, size_t alen, const void *b, size_t blen);
/* Constant-time equality of two NUL-terminated strings (for tokens and session ids). */
bool ct_streq_secret(const char *a, const char *b);
/* Overwrites memory in a way the compiler cannot elide. */
void ct_wipe(void *p, size_t len);
/* Fills `out` from the OS random source. */
CT_RESULT ct_random(void *out, size_t len, ct_err *err);
/* strdup that reports failure through the error type. */
CT_RESULT ct_strdup(const char *s, char **out, ct_err *err);
/* Duplicates the first `n` bytes of `s` into a NUL-terminated string. */
CT_RESULT ct_strndup(const char *s, size_t n, char **out, ct_err *err);

#endif
