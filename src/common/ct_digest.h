/*
 * ct_digest.h - one-shot message digests by name ("sha256", "sha384", "sha512").
 */
#ifndef CT_DIGEST_H
#define CT_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

#define CT_DIGEST_MAX 64

/* Looks up a digest by its Trustee/init-data name; unknown names are CT_EUNSUPPORTED. */
CT_RESULT ct_digest(const char *alg, const void *data, size_t len, uint8_t out[CT_DIGEST_MAX],
                    size_t *out_len, ct_err *err);
void ct_sha256(const void *data, size_t len, uint8_t out[32]);
void ct_sha384(const void *data, size_t len, uint8_t out[48]);

#endif
