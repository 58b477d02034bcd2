/*
 * builtins_time.c - time built-ins (UTC; nanoseconds since the Unix epoch as in OPA).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rego_bi.h"

/* days from civil (proleptic Gregorian), Howard Hinnant's algorithm */
static int64_t rego__days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static void rego__civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t yy = yoe + era * 400;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yy + (*m <= 2);
}

static int64_t rego__floordiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

/* Operand: ns, or [ns, tz] (only UTC offsets supported). Sets seconds offset. */
static CT_RESULT rego__time_operand(rg_ev *ev, const char *name, rv *x, int64_t *ns, int64_t *off) {
  *off = 0;
  rv *n = x;
  if (x->t == RV_ARR) {
    if (x->n < 1 || x->n > 3) return rg_bi_type(ev, "%s: operand 1 must be number or array", name);
    n = x->u.a[0];
    if (x->n >= 2) {
      rv *tz = x->u.a[1];
      if (tz->t != RV_STR) return rg_bi_type(ev, "%s: timezone must be a string", name);
      if (tz->n && strcmp(tz->u.s, "UTC") && strcmp(tz->u.s, "Local"))
        return rg_bi_fail(ev, "%s: unknown time zone %s", name, tz->u.s);
    }
  }
  if (n->t != RV_NUM) return rg_bi_type(ev, "%s: operand 1 must be one of {number, array} but got %s", name, rg_type_name(n));
  if (!rv_num_is_int(n, ns)) {
    double d = rv_num_dbl(n);
    if (d > 9.2e18 || d < -9.2e18) return rg_bi_fail(ev, "%s: timestamp too big", name);
    *ns = (int64_t)d;
  }
  if (n->nk == RN_BIG) return rg_bi_fail(ev, "%s: timestamp too big", name);
  return CT_OK;
}

static CT_RESULT rego__bi_now_ns(rg_ev *ev, rv **a, rv **out) {
  (void)a;
  RET(rv_int(A, rg_ev_now(ev)));
}

/* Parses RFC 3339 into ns; false on syntax error. */
static bool rego__parse_rfc3339(const char *s, size_t n, int64_t *sec, int64_t *nsec) {
  int Y, M, D, h, m, se;
  if (n < 20) return false;
  for (size_t i = 0; i < 19; i++) {
    if (i == 4 || i == 7) {
      if (s[i] != '-') return false;
    } else if (i == 10) {
      if (s[i] != 'T' && s[i] != 't') return false;
    } else if (i == 13 || i == 16) {
      if (s[i] != ':') return false;
    } else if (!isdigit((unsigned char)s[i]))
      return false;
  }
  Y = atoi(s);
  M = (s[5] - '0') * 10 + s[6] - '0';
  D = (s[8] - '0') * 10 + s[9] - '0';
  h = (s[11] - '0') * 10 + s[12] - '0';
  m = (s[14] - '0') * 10 + s[15] - '0';
  se = (s[17] - '0') * 10 + s[18] - '0';
  if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || se > 59) return false;
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
  if (D > mdays[M - 1] || (M == 2 && D == 29 && !leap)) return false;
  size_t i = 19;
  int64_t frac = 0;
  if (i < n && s[i] == '.') {
    i++;
    int digits = 0;
    while (i < n && isdigit((unsigned char)s[i])) {
      if (digits < 9) {
        frac = frac * 10 + (s[i] - '0');
        digits++;
      }
      i++;
    }
    if (!digits) return false;
    while (digits++ < 9) frac *= 10;
  }
  int64_t off = 0;
  if (i < n && (s[i] == 'Z' || s[i] == 'z')) i++;
  else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
    int oh = (s[i + 1] - '0') * 10 + s[i + 2] - '0', om = (s[i + 4] - '0') * 10 + s[i + 5] - '0';
    if (oh > 23 || om > 59) return false;
    off = (oh * 3600 + om * 60) * (s[i] == '-' ? -1 : 1);
    i += 6;
  } else
    return false;
  if (i != n) return false;
  *sec = rego__days_from_civil(Y, M, D) * 86400 + h * 3600 + m * 60 + se - off;
  *nsec = frac;
  return true;
}

static CT_RESULT rego__ns_of(rg_ev *ev, const char *name, int64_t sec, int64_t nsec, rv **out) {
  int64_t r;
  if (sec < 0 && nsec > 0) {
    sec++;
    nsec -= 1000000000;
  }
  if (__builtin_mul_overflow(sec, (int64_t)1000000000, &r) || __builtin_add_overflow(r, nsec, &r))
    return rg_bi_fail(ev, "%s: time outside of valid range", name);
  RET(rv_int(A, r));
}

static CT_RESULT rego__bi_parse_rfc3339_ns(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "time.parse_rfc3339_ns", 1, a[0], RV_STR));
  int64_t sec, nsec;
  if (!rego__parse_rfc3339(a[0]->u.s, a[0]->n, &sec, &nsec))
    return rg_bi_fail(ev, "time.parse_rfc3339_ns: parsing time \"%s\" as \"2006-01-02T15:04:05Z07:00\": cannot parse",
                      a[0]->u.s);
  return rego__ns_of(ev, "time.parse_rfc3339_ns", sec, nsec, out);
}

static const char *const month_names[] = {"January", "February", "March",     "April",   "May",      "June",
                                          "July",    "August",   "September", "October", "November", "December"};
static const char *const day_names[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};

/* A subset of Go's reference-time layouts. */
static bool rego__parse_layout(const char *lay, const char *s, int64_t *sec, int64_t *nsec) {
  int64_t Y = 1;
  int M = 1, D = 1, h = 0, mi = 0, se = 0, pm = -1;
  int64_t frac = 0, off = 0;
  size_t i = 0, j = 0, ln = strlen(lay), sn = strlen(s);
#define NUM(width, dst)                                                       \
  do {                                                                        \
    int _v = 0, _k = 0;                                                       \
    while (_k < (width) && j < sn && isdigit((unsigned char)s[j])) {          \
      _v = _v * 10 + (s[j++] - '0');                                          \
      _k++;                                                                   \
    }                                                                         \
    if (!_k) return false;                                                    \
    (dst) = _v;                                                               \
  } while (0)
  while (i < ln) {
    const char *L = lay + i;
    if (!strncmp(L, "2006", 4)) { int y; NUM(4, y); Y = y; i += 4; }
    else if (!strncmp(L, "January", 7)) {
      bool ok = false;
      for (int k = 0; k < 12 && !ok; k++) if (!strncmp(s + j, month_names[k], strlen(month_names[k]))) { M = k + 1; j += strlen(month_names[k]); ok = true; }
      if (!ok) return false;
      i += 7;
    } else if (!strncmp(L, "Jan", 3)) {
      bool ok = false;
      for (int k = 0; k < 12 && !ok; k++) if (!strncmp(s + j, month_names[k], 3)) { M = k + 1; j += 3; ok = true; }
      if (!ok) return false;
      i += 3;
    } else if (!strncmp(L, "Monday", 6)) {
      bool ok = false;
      for (int k = 0; k < 7 && !ok; k++) if (!strncmp(s + j, day_names[k], strlen(day_names[k]))) { j += strlen(day_names[k]); ok = true; }
      if (!ok) return false;
      i += 6;
    } else if (!strncmp(L, "Mon", 3)) {
      bool ok = false;
      for (int k = 0; k < 7 && !ok; k++) if (!strncmp(s + j, day_names[k], 3)) { j += 3; ok = true; }
      if (!ok) return false;
      i += 3;
    } else if (!strncmp(L, "01", 2)) { NUM(2, M); i += 2; }
    else if (!strncmp(L, "02", 2)) { NUM(2, D); i += 2; }
    else if (!strncmp(L, "_2", 2)) { if (s[j] == ' ') j++; NUM(2, D); i += 2; }
    else if (!strncmp(L, "15", 2)) { NUM(2, h); i += 2; }
    else if (!strncmp(L, "03", 2)) { NUM(2, h); i += 2; }
    else if (!strncmp(L, "04", 2)) { NUM(2, mi); i += 2; }
    else if (!strncmp(L, "05", 2)) { NUM(2, se); i += 2; }
    else if (!strncmp(L, "06", 2)) { int y; NUM(2, y); Y = y >= 69 ? 1900 + y : 2000 + y; i += 2; }
    else if (!strncmp(L, "PM", 2)) { if (!strncmp(s + j, "PM", 2)) pm = 1; else if (!strncmp(s + j, "AM", 2)) pm = 0; else return false; j += 2; i += 2; }
    else if (!strncmp(L, "MST", 3)) { while (j < sn && isupper((unsigned char)s[j])) j++; i += 3; }
    else if (!strncmp(L, "Z07:00", 6) || !strncmp(L, "-07:00", 6) || !strncmp(L, "Z0700", 5) || !strncmp(L, "-0700", 5)) {
      bool z = L[0] == 'Z', colon = L[3] == ':';
      if (z && (s[j] == 'Z')) j++;
      else {
        if (s[j] != '+' && s[j] != '-') return false;
        int sign = s[j++] == '-' ? -1 : 1, oh, om;
        NUM(2, oh);
        if (colon) { if (s[j] != ':') return false; j++; }
        NUM(2, om);
        off = sign * (oh * 3600 + om * 60);
      }
      i += colon ? 6 : 5;
    } else if (L[0] == '.' && (L[1] == '0' || L[1] == '9')) {
      size_t k = 1;
      while (L[k] == L[1]) k++;
      if (s[j] == '.') {
        j++;
        int digits = 0;
        while (j < sn && isdigit((unsigned char)s[j])) {
          if (digits < 9) { frac = frac * 10 + (s[j] - '0'); digits++; }
          j++;
        }
        while (digits++ < 9) frac *= 10;
      } else if (L[1] == '0')
        return false;
      i += k;
    } else {
      if (j >= sn || s[j] != L[0]) return false;
      i++;
      j++;
    }
    /* fractional seconds after "05" even when the layout has none */
    if (i >= 2 && !strncmp(lay + i - 2, "05", 2) && s[j] == '.' && lay[i] != '.') {
      j++;
      int digits = 0;
      while (j < sn && isdigit((unsigned char)s[j])) {
        if (digits < 9) { frac = frac * 10 + (s[j] - '0'); digits++; }
        j++;
      }
      while (digits++ < 9) frac *= 10;
    }
  }
#undef NUM
  if (j != sn) return false;
  if (pm == 1 && h < 12) h += 12;
  if (pm == 0 && h == 12) h = 0;
  if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || mi > 59 || se > 59) return false;
  *sec = rego__days_from_civil(Y, M, D) * 86400 + h * 3600 + mi * 60 + se - off;
  *nsec = frac;
  return true;
}

static CT_RESULT rego__bi_parse_ns(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "time.parse_ns", 1, a[0], RV_STR));
  CT_GUARD(rg_bi_want(ev, "time.parse_ns", 2, a[1], RV_STR));
  int64_t sec, nsec;
  if (!rego__parse_layout(a[0]->u.s, a[1]->u.s, &sec, &nsec))
    return rg_bi_fail(ev, "time.parse_ns: parsing time \"%s\" as \"%s\": cannot parse", a[1]->u.s, a[0]->u.s);
  return rego__ns_of(ev, "time.parse_ns", sec, nsec, out);
}

static CT_RESULT rego__bi_parse_duration_ns(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "time.parse_duration_ns", 1, a[0], RV_STR));
  const char *s = a[0]->u.s;
  size_t n = a[0]->n, i = 0;
  bool neg = false;
  if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
  if (i == n) goto bad;
  if (n - i == 1 && s[i] == '0') RET(rv_int(A, 0));
  long double total = 0;
  while (i < n) {
    size_t st = i;
    while (i < n && (isdigit((unsigned char)s[i]) || s[i] == '.')) i++;
    if (i == st) goto bad;
    char num[64];
    if (i - st >= sizeof(num)) goto bad;
    memcpy(num, s + st, i - st);
    num[i - st] = 0;
    long double v = strtold(num, NULL);
    size_t us = i;
    while (i < n && !isdigit((unsigned char)s[i]) && s[i] != '.') i++;
    size_t ul = i - us;
    long double mul;
    if (ul == 2 && !strncmp(s + us, "ns", 2)) mul = 1;
    else if ((ul == 2 && !strncmp(s + us, "us", 2)) || (ul == 3 && !strncmp(s + us, "\xc2\xb5s", 3)) ||
             (ul == 3 && !strncmp(s + us, "\xce\xbcs", 3)))
      mul = 1e3;
    else if (ul == 2 && !strncmp(s + us, "ms", 2)) mul = 1e6;
    else if (ul == 1 && s[us] == 's') mul = 1e9;
    else if (ul == 1 && s[us] == 'm') mul = 60e9;
    else if (ul == 1 && s[us] == 'h') mul = 3600e9;
    else goto bad;
    total += v * mul;
  }
  if (total > 9.223372036854775807e18L) goto bad;
  RET(rv_int(A, (int64_t)(neg ? -total : total)));
bad:
  return rg_bi_fail(ev, "time.parse_duration_ns: time: invalid duration \"%s\"", s);
}

static void rego__split_ns(int64_t ns, int64_t off, int64_t *days, int64_t *secs) {
  int64_t sec = rego__floordiv(ns, 1000000000) + off;
  *days = rego__floordiv(sec, 86400);
  *secs = sec - *days * 86400;
}

static CT_RESULT rego__bi_date(rg_ev *ev, rv **a, rv **out) {
  int64_t ns, off, days, secs, y;
  int m, d;
  CT_GUARD(rego__time_operand(ev, "time.date", a[0], &ns, &off));
  rego__split_ns(ns, off, &days, &secs);
  rego__civil_from_days(days, &y, &m, &d);
  rv *items[3] = {rv_int(A, y), rv_int(A, m), rv_int(A, d)};
  if (!items[0] || !items[1] || !items[2]) return rg_bi_oom(ev);
  RET(rv_arr(A, items, 3));
}

static CT_RESULT rego__bi_clock(rg_ev *ev, rv **a, rv **out) {
  int64_t ns, off, days, secs;
  CT_GUARD(rego__time_operand(ev, "time.clock", a[0], &ns, &off));
  rego__split_ns(ns, off, &days, &secs);
  rv *items[3] = {rv_int(A, secs / 3600), rv_int(A, secs / 60 % 60), rv_int(A, secs % 60)};
  if (!items[0] || !items[1] || !items[2]) return rg_bi_oom(ev);
  RET(rv_arr(A, items, 3));
}

static CT_RESULT rego__bi_weekday(rg_ev *ev, rv **a, rv **out) {
  int64_t ns, off, days, secs;
  CT_GUARD(rego__time_operand(ev, "time.weekday", a[0], &ns, &off));
  rego__split_ns(ns, off, &days, &secs);
  int64_t wd = (days % 7 + 7 + 4) % 7; /* 1970-01-01 was a Thursday */
  RET(rv_cstr(A, day_names[wd]));
}

static CT_RESULT rego__bi_add_date(rg_ev *ev, rv **a, rv **out) {
  int64_t ns, off, days, secs, y, dy, dm, dd;
  int m, d;
  CT_GUARD(rego__time_operand(ev, "time.add_date", a[0], &ns, &off));
  if (!rv_num_is_int(a[1], &dy) || !rv_num_is_int(a[2], &dm) || !rv_num_is_int(a[3], &dd))
    return rg_bi_type(ev, "time.add_date: years, months and days must be integers");
  rego__split_ns(ns, off, &days, &secs);
  rego__civil_from_days(days, &y, &m, &d);
  int64_t ny = y + dy, nm = m + dm;
  /* normalise month like Go's time.Date */
  ny += rego__floordiv(nm - 1, 12);
  nm = nm - 1 - rego__floordiv(nm - 1, 12) * 12 + 1;
  int64_t nd = rego__days_from_civil(ny, nm, 1) + d - 1 + dd;
  int64_t sub = ns % 1000000000;
  if (sub < 0) sub += 1000000000;
  int64_t sec = nd * 86400 + secs - off;
  if (sec > 9223372036LL || sec < -9223372036LL) return rg_bi_fail(ev, "time.add_date: time outside of valid range");
  return rego__ns_of(ev, "time.add_date", sec, sub, out);
}

static CT_RESULT rego__bi_diff(rg_ev *ev, rv **a, rv **out) {
  int64_t n1, n2, o1, o2;
  CT_GUARD(rego__time_operand(ev, "time.diff", a[0], &n1, &o1));
  CT_GUARD(rego__time_operand(ev, "time.diff", a[1], &n2, &o2));
  if (n1 > n2) {
    int64_t t = n1;
    n1 = n2;
    n2 = t;
  }
  int64_t d1, s1, d2, s2, y1, y2;
  int m1, dd1, m2, dd2;
  rego__split_ns(n1, o1, &d1, &s1);
  rego__split_ns(n2, o2, &d2, &s2);
  rego__civil_from_days(d1, &y1, &m1, &dd1);
  rego__civil_from_days(d2, &y2, &m2, &dd2);
  int64_t year = y2 - y1, month = m2 - m1, day = dd2 - dd1;
  int64_t hour = s2 / 3600 - s1 / 3600, min = s2 / 60 % 60 - s1 / 60 % 60, sec = s2 % 60 - s1 % 60;
  if (sec < 0) { sec += 60; min--; }
  if (min < 0) { min += 60; hour--; }
  if (hour < 0) { hour += 24; day--; }
  if (day < 0) {
    /* days in the month before y2-m2 */
    int pm = m2 - 1;
    int64_t py = y2;
    if (pm < 1) { pm = 12; py--; }
    int64_t dim = rego__days_from_civil(pm == 12 ? py + 1 : py, pm == 12 ? 1 : pm + 1, 1) - rego__days_from_civil(py, pm, 1);
    day += dim;
    month--;
  }
  if (month < 0) { month += 12; year--; }
  rv *items[6] = {rv_int(A, year), rv_int(A, month), rv_int(A, day), rv_int(A, hour), rv_int(A, min), rv_int(A, sec)};
  for (int i = 0; i < 6; i++)
    if (!items[i]) return rg_bi_oom(ev);
  RET(rv_arr(A, items, 6));
}

static CT_RESULT rego__bi_format(rg_ev *ev, rv **a, rv **out) {
  int64_t ns, off, days, secs, y;
  int m, d;
  CT_GUARD(rego__time_operand(ev, "time.format", a[0], &ns, &off));
  if (a[0]->t == RV_ARR && a[0]->n == 3) return rg_bi_fail(ev, "time.format: custom layouts are not supported");
  rego__split_ns(ns, off, &days, &secs);
  rego__civil_from_days(days, &y, &m, &d);
  int64_t frac = ns % 1000000000;
  if (frac < 0) frac += 1000000000;
  char buf[96], fr[16] = "";
  if (frac) {
    snprintf(fr, sizeof(fr), ".%09lld", (long long)frac);
    size_t l = strlen(fr);
    while (fr[l - 1] == '0') fr[--l] = 0;
  }
  snprintf(buf, sizeof(buf), "%04lld-%02d-%02dT%02lld:%02lld:%02lld%sZ", (long long)y, m, d, (long long)(secs / 3600),
           (long long)(secs / 60 % 60), (long long)(secs % 60), fr);
  RET(rv_cstr(A, buf));
}

const rg_builtin rg_builtins_time[] = {
    {"time.now_ns", 0, rego__bi_now_ns, true},
    {"time.parse_rfc3339_ns", 1, rego__bi_parse_rfc3339_ns, false},
    {"time.parse_ns", 2, rego__bi_parse_ns, false},
    {"time.parse_duration_ns", 1, rego__bi_parse_duration_ns, false},
    {"time.date", 1, rego__bi_date, false},
    {"time.clock", 1, rego__bi_clock, false},
    {"time.weekday", 1, rego__bi_weekday, false},
    {"time.add_date", 4, rego__bi_add_date, false},
    {"time.diff", 2, rego__bi_diff, false},
    {"time.format", 1, rego__bi_format, false},
    {NULL, 0, NULL, false},
};
