/*
 * libFuzzer target for the KBS's HTTP request framer (src/kbs/kbs_http_frame.c).
 * Input: one byte of split seed, then the bytes a peer sends. The framer runs over the whole
 * input at once and again fed in pieces (sizes from the seed); both runs must produce the same
 * output, and that output must be what evhttp may safely parse: a sequence of request heads with
 * at most one Content-Length, no Transfer-Encoding, each followed by exactly that many body bytes,
 * ending (if the framer refused something) with the synthetic refusal and nothing after it.
 */
#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kbs_http_frame.h"

static struct evbuffer *run(const uint8_t *d, size_t n, uint8_t seed, bool pieces) {
  kbs_http_frame *f = NULL;
  ct_err err;
  if (kbs_http_frame_new(4096, &f, &err) != CT_OK) abort();
  struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
  size_t off = 0;
  unsigned step = 1u + (seed & 0x3f);
  while (off < n) {
    size_t k = pieces ? (n - off < step ? n - off : step) : n - off;
    evbuffer_add(in, d + off, k);
    off += k;
    bool cont = false;
    if (kbs_http_frame_feed(f, in, out, &cont) == KBS_HTTP_FRAME_FATAL) abort();
    step = step * 7 % 61 + 1;
  }
  evbuffer_free(in);
  kbs_http_frame_free(f);
  return out;
}

/* Checks the framed stream; aborts on anything evhttp could read two ways. */
static void check(const char *s, size_t n) {
  size_t pos = 0;
  while (pos < n) {
    const char *end = memmem(s + pos, n - pos, "\r\n\r\n", 4);
    if (!end) abort(); /* a head is only passed on complete */
    size_t hl = (size_t)(end - (s + pos)) + 4;
    size_t cl = 0;
    int ncl = 0;
    bool refusal = false;
    for (size_t i = pos; i < pos + hl - 2;) {
      const char *nl = memmem(s + i, pos + hl - i, "\r\n", 2);
      size_t ll = (size_t)(nl - (s + i));
      if (memchr(s + i, '\n', ll) || memchr(s + i, '\r', ll)) abort();
      if (ll > 15 && !strncasecmp(s + i, "Content-Length:", 15)) {
        ncl++;
        cl = strtoul(s + i + 15, NULL, 10);
      }
      if (ll > 18 && !strncasecmp(s + i, "Transfer-Encoding:", 18)) abort();
      if (ll > strlen(KBS_HTTP_FRAME_ERROR_HEADER) &&
          !strncasecmp(s + i, KBS_HTTP_FRAME_ERROR_HEADER ":", strlen(KBS_HTTP_FRAME_ERROR_HEADER) + 1))
        refusal = true;
      i += ll + 2;
    }
    if (ncl > 1) abort();
    pos += hl;
    if (cl > 4096 || (refusal && cl)) abort();
    if (pos + cl > n) break; /* the rest of the body has not arrived */
    pos += cl;
    if (refusal && pos != n) abort(); /* nothing after a refusal */
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > (1 << 16)) return 0;
  uint8_t seed = data[0];
  struct evbuffer *whole = run(data + 1, size - 1, seed, false), *parts = run(data + 1, size - 1, seed, true);
  size_t a = evbuffer_get_length(whole), b = evbuffer_get_length(parts);
  if (a != b) abort();
  const char *pa = (const char *)evbuffer_pullup(whole, -1), *pb = (const char *)evbuffer_pullup(parts, -1);
  if (a && memcmp(pa, pb, a)) abort();
  check(pa, a);
  evbuffer_free(whole);
  evbuffer_free(parts);
  return 0;
}
