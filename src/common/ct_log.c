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

void ct_log(ct_log_level level, const char *module, const char *fmt, ...) {
  if (level < ct_log__min) return;
  static const char *names[] = {"debug", "info", "warn", "error"};
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* Quotes and newlines would break the one-line logfmt record. */
  for (char *p = msg; *p; p++)
    if (*p == '"' || *p == '\n' || *p == '\r') *p = '\'';
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  fprintf(stderr, "ts=%s.%03ldZ level=%s module=%s msg=\"%s\"\n", when, ts.tv_nsec / 1000000,
          names[level], module, msg);
}
