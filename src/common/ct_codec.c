#include "ct_codec.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const char ct__b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char ct__b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Two output characters per 12 input bits: half the lookups and shifts of one character per 6
 * bits (tokens, JWEs and cookies are encoded on every handshake). Derived once from the
 * alphabets above. */
static char ct__b64_pairs_std[4096][2], ct__b64_pairs_url[4096][2];
static pthread_once_t ct__b64_pairs_once = PTHREAD_ONCE_INIT;

static void ct__b64_pairs_init(void) {
  for (unsigned k = 0; k < 4096; k++) {
    ct__b64_pairs_std[k][0] = ct__b64_std[k >> 6];
    ct__b64_pairs_std[k][1] = ct__b64_std[k & 63];
    ct__b64_pairs_url[k][0] = ct__b64_url[k >> 6];
    ct__b64_pairs_url[k][1] = ct__b64_url[k & 63];
  }
}

size_t ct_b64_encode_into(ct_b64_variant v, const uint8_t *in, size_t len, char *o) {
  const char *alpha = v == CT_B64_URL ? ct__b64_url : ct__b64_std;
  bool pad = v != CT_B64_URL;
  pthread_once(&ct__b64_pairs_once, ct__b64_pairs_init);
  const char(*pairs)[2] = v == CT_B64_URL ? ct__b64_pairs_url : ct__b64_pairs_std;
  size_t j = 0;
  size_t i = 0;
  for (; i + 2 < len; i += 3) {
    uint32_t n = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    memcpy(o + j, pairs[n >> 12], 2);
    memcpy(o + j + 2, pairs[n & 0xfff], 2);
    j += 4;
  }
  if (i < len) {
    uint32_t n = (uint32_t)in[i] << 16;
    if (i + 1 < len) n |= (uint32_t)in[i + 1] << 8;
    o[j++] = alpha[n >> 18 & 63];
    o[j++] = alpha[n >> 12 & 63];
    if (i + 1 < len) o[j++] = alpha[n >> 6 & 63];
    else if (pad) o[j++] = '=';
    if (pad) o[j++] = '=';
  }
  o[j] = 0;
  return j;
}

CT_RESULT ct_b64_encode(ct_b64_variant v, const uint8_t *in, size_t len, char **out, ct_err *err) {
  if (len > (SIZE_MAX / 4) * 3 - 3) return ct_fail(err, CT_ELIMIT, "base64 input too large");
  char *o = malloc(CT_B64_ENCODED_MAX(len) + 1);
  if (!o) return ct_fail(err, CT_ENOMEM, "out of memory encoding base64");
  ct_b64_encode_into(v, in, len, o);
  *out = o;
  return CT_OK;
}

/* Decoding tables, 0xff for a character outside the alphabet: a lookup per character instead of a
 * chain of range tests (base64 decoding runs on every token, JWE and cookie a request carries).
 * Derived once from the encoding alphabets above, so the two directions cannot disagree. */
static uint8_t ct__b64_dec_std[256], ct__b64_dec_url[256], ct__b64_dec_any[256];
static pthread_once_t ct__b64_dec_once = PTHREAD_ONCE_INIT;

static void ct__b64_dec_init(void) {
  memset(ct__b64_dec_std, 0xff, sizeof ct__b64_dec_std);
  memset(ct__b64_dec_url, 0xff, sizeof ct__b64_dec_url);
  memset(ct__b64_dec_any, 0xff, sizeof ct__b64_dec_any);
  for (uint8_t k = 0; k < 64; k++) {
    unsigned char s = (unsigned char)ct__b64_std[k], u = (unsigned char)ct__b64_url[k];
    ct__b64_dec_std[s] = ct__b64_dec_any[s] = k;
    ct__b64_dec_url[u] = ct__b64_dec_any[u] = k;
  }
}

/* Decodes into `o` (cap bytes), or into a new allocation when o is NULL (*o_alloc). */
static CT_RESULT ct__b64_decode(ct_b64_variant v, const char *in, size_t len, uint8_t *o, size_t cap, uint8_t **o_alloc,
                                size_t *out_len, ct_err *err) {
  size_t body = len;
  while (body > 0 && in[body - 1] == '=' && len - body < 2) body--;
  size_t pads = len - body;
  if (pads && v == CT_B64_URL) return ct_fail(err, CT_EINVAL, "base64url must not be padded");
  if (v == CT_B64_STD && len % 4 != 0)
    return ct_fail(err, CT_EINVAL, "standard base64 length %zu is not a multiple of 4", len);
  if (pads && len % 4 != 0) return ct_fail(err, CT_EINVAL, "base64 padding in the wrong place");
  if (body % 4 == 1) return ct_fail(err, CT_EINVAL, "base64 length %zu is impossible", len);
  pthread_once(&ct__b64_dec_once, ct__b64_dec_init);
  const uint8_t *t = v == CT_B64_URL ? ct__b64_dec_url : v == CT_B64_STD ? ct__b64_dec_std : ct__b64_dec_any;
  const unsigned char *u = (const unsigned char *)in;
  size_t olen = body / 4 * 3 + (body % 4 ? body % 4 - 1 : 0);
  uint8_t *mine = NULL;
  if (!o) {
    o = mine = malloc(olen + 1);
    if (!o) return ct_fail(err, CT_ENOMEM, "out of memory decoding base64");
  } else if (olen + 1 > cap) {
    return ct_fail(err, CT_ELIMIT, "base64 text decodes to %zu bytes, more than the %zu expected", olen, cap - 1);
  }
  size_t i = 0, j = 0;
  for (; i + 4 <= body; i += 4) {
    uint32_t a = t[u[i]], b = t[u[i + 1]], c = t[u[i + 2]], d = t[u[i + 3]];
    if ((a | b | c | d) & 0x80u) break; /* the tail loop finds the offending character */
    uint32_t n = a << 18 | b << 12 | c << 6 | d;
    o[j++] = (uint8_t)(n >> 16);
    o[j++] = (uint8_t)(n >> 8);
    o[j++] = (uint8_t)n;
  }
  uint32_t acc = 0;
  int bits = 0;
  for (; i < body; i++) {
    uint32_t val = t[u[i]];
    if (val & 0x80u) {
      free(mine);
      return ct_fail(err, CT_EINVAL, "invalid base64 character at offset %zu", i);
    }
    acc = acc << 6 | val;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      o[j++] = (uint8_t)(acc >> bits);
    }
  }
  /* Leftover bits must be zero, otherwise two encodings would decode to the same bytes. */
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    free(mine);
    return ct_fail(err, CT_EINVAL, "non-canonical base64 (trailing bits set)");
  }
  o[j] = 0;
  if (o_alloc) *o_alloc = mine;
  *out_len = j;
  return CT_OK;
}

CT_RESULT ct_b64_decode(ct_b64_variant v, const char *in, size_t len, uint8_t **out, size_t *out_len,
                        ct_err *err) {
  return ct__b64_decode(v, in, len, NULL, 0, out, out_len, err);
}

CT_RESULT ct_b64_decode_into(ct_b64_variant v, const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len,
                             ct_err *err) {
  CT_ENSURE(out && cap > 0, err, CT_EINVAL, "no buffer to decode base64 into");
  return ct__b64_decode(v, in, len, out, cap, NULL, out_len, err);
}

void ct_hex_into(const uint8_t *in, size_t len, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * len] = 0;
}

CT_RESULT ct_hex_encode(const uint8_t *in, size_t len, char **out, ct_err *err) {
  if (len > SIZE_MAX / 2 - 1) return ct_fail(err, CT_ELIMIT, "hex input too large");
  char *o = malloc(2 * len + 1);
  if (!o) return ct_fail(err, CT_ENOMEM, "out of memory encoding hex");
  ct_hex_into(in, len, o);
  *out = o;
  return CT_OK;
}

static int ct__hex_val(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

CT_RESULT ct_hex_decode(const char *in, size_t len, uint8_t **out, size_t *out_len, ct_err *err) {
  if (len % 2) return ct_fail(err, CT_EINVAL, "hex string has odd length %zu", len);
  uint8_t *o = malloc(len / 2 + 1);
  if (!o) return ct_fail(err, CT_ENOMEM, "out of memory decoding hex");
  for (size_t i = 0; i < len; i += 2) {
    int hi = ct__hex_val(in[i]), lo = ct__hex_val(in[i + 1]);
    if (hi < 0 || lo < 0) {
      free(o);
      return ct_fail(err, CT_EINVAL, "invalid hex digit at offset %zu", hi < 0 ? i : i + 1);
    }
    o[i / 2] = (uint8_t)(hi << 4 | lo);
  }
  o[len / 2] = 0;
  *out = o;
  *out_len = len / 2;
  return CT_OK;
}
