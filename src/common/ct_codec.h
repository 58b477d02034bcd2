/*
 * ct_codec.h - base64 (standard and URL-safe) and hex encoders and decoders.
 *
 * Encoders return a malloc'd NUL-terminated string. Decoders return a malloc'd byte array
 * (with an extra NUL byte after it, not counted) and reject any character outside the chosen
 * alphabet, so a decoded value always round-trips.
 */
#ifndef CT_CODEC_H
#define CT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

typedef enum ct_b64_variant {
  CT_B64_STD,       /* RFC 4648 section 4, '=' padding required on decode, emitted on encode */
  CT_B64_URL,       /* RFC 4648 section 5 without padding (JOSE) */
  CT_B64_ANY,       /* decode only: either alphabet, padding optional (for lenient peers) */
} ct_b64_variant;

CT_RESULT ct_b64_encode(ct_b64_variant v, const uint8_t *in, size_t len, char **out, ct_err *err);
CT_RESULT ct_b64_decode(ct_b64_variant v, const char *in, size_t len, uint8_t **out, size_t *out_len,
                        ct_err *err);
/* The same without an allocation, for small fixed-size values on the stack (cookies, nonces).
 * Encoding writes at most CT_B64_ENCODED_MAX(len) characters and a NUL, and returns the length;
 * decoding writes the bytes and a NUL into out[0..cap), CT_ELIMIT when they do not fit. */
#define CT_B64_ENCODED_MAX(len) (((len) + 2) / 3 * 4)
size_t ct_b64_encode_into(ct_b64_variant v, const uint8_t *in, size_t len, char *out);
CT_RESULT ct_b64_decode_into(ct_b64_variant v, const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len,
                             ct_err *err);

/* Lower-case hex. */
CT_RESULT ct_hex_encode(const uint8_t *in, size_t len, char **out, ct_err *err);
/* Accepts upper or lower case; odd length or a non-hex digit is an error. */
CT_RESULT ct_hex_decode(const char *in, size_t len, uint8_t **out, size_t *out_len, ct_err *err);
/* Writes 2*len+1 bytes into `out`; for fixed-size fields on the stack. */
void ct_hex_into(const uint8_t *in, size_t len, char *out);

#endif
