#include "ct_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static ct_log_level ct_log__min = CT_LOG_INFO;

void ct_log_set_level(ct_log_level level) { ct_log__min = level; }

void ct_log_init_from_env(void) {
  const char *v = getenv("CT_LOG");
  if (!v) return;
  if (!strcmp(v, "debug")) ct_log__min = CT_LOG_DEBUG;
  else if (!strcmp(v, "info")) ct_log__min = CT_LOG_INFO;
  else if (!strcmp(v, "warn")) ct_log__min = CT_LOG_WARN;
  else if (!strcmp(v, "error")) ct_log__min = CT_LOG_ERROR;
}

/* Length of the valid UTF-8 sequence at p (no overlongs, surrogates or code points past
 * U+10FFFF), or 0. */
static size_t ct_log__utf8(const unsigned char *p) {
  if (p[0] >= 0xC2 && p[0] <= 0xDF) return (p[1] & 0xC0) == 0x80 ? 2 : 0;
  if (p[0] >= 0xE0 && p[0] <= 0xEF) {
    unsigned lo = p[0] == 0xE0 ? 0xA0 : 0x80, hi = p[0] == 0xED ? 0x9F : 0xBF;
    return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
  }
  if (p[0] >= 0xF0 && p[0] <= 0xF4) {
    unsigned lo = p[0] == 0xF0 ? 0x90 : 0x80, hi = p[0] == 0xF4 ? 0x8F : 0xBF;
    return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80 ? 4 : 0;
  }
  return 0;
}

/* Messages carry request data (paths, names): quotes and newlines would break the one-line
 * logfmt record, other control bytes would reach terminals, and invalid UTF-8 log shippers.
 * Quotes and line breaks become ', the rest \xNN. */
static void ct_log__escape(const char *in, char *out, size_t cap) {
  const unsigned char *p = (const unsigned char *)in;
  size_t n = 0;
  while (*p && n + 5 < cap) {
    size_t k = *p >= 0x20 && *p < 0x7F ? 1 : *p >= 0x80 ? ct_log__utf8(p) : 0;
    if (*p == '"' || *p == '\n' || *p == '\r') {
      out[n++] = '\'';
      p++;
    } else if (k) {
      memcpy(out + n, p, k);
      n += k;
      p += k;
    } else {
      n += (size_t)snprintf(out + n, cap - n, "\\x%02X", *p++);
    }
  }
  out[n] = 0;
}

void ct_log(ct_log_level level, const char *module, const char *fmt, ...) {
  if (level < ct_log__min) return;
  static const char *names[] = {"debug", "info", "warn", "error"};
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char safe[4 * sizeof msg];
  ct_log__escape(msg, safe, sizeof safe);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  fprintf(stderr, "ts=%s.%03ldZ level=%s module=%s msg=\"%s\"\n", when, ts.tv_nsec / 1000000,
          names[level], module, safe);
}
