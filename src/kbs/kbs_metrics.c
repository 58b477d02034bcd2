#include "kbs_metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define KBS_M_LABELS 128 /* label values kept per labelled counter; more are folded into "other" */

static atomic_ullong kbs__counters[KBS_M_COUNT];
static atomic_llong kbs__active;

static const char *const kbs__names[KBS_M_COUNT][2] = {
    {"kbs_http_requests_total", "Total count of HTTP requests to KBS protocol endpoints."},
    {"kbs_auth_requests_total", "Total count of authentication (RCAR handshake) requests."},
    {"kbs_auth_successes_total", "Total count of successful authentication requests."},
    {"kbs_auth_errors_total", "Total count of errors during authentication processing."},
    {"kbs_attestation_requests_total", "Total count of attestation requests."},
    {"kbs_attestation_errors_total", "Total count of errors during attestation processing."},
    {"kbs_policy_evaluations_total", "Total count of KBS policy evaluations."},
    {"kbs_policy_approvals_total", "Total count of requests approved by KBS policy."},
    {"kbs_policy_violations_total", "Total count of requests denied by KBS policy."},
    {"kbs_policy_errors_total", "Total count of errors during KBS policy evaluation."},
};

typedef struct kbs__labelled {
  char label[KBS_M_LABELS][96];
  unsigned long long value[KBS_M_LABELS];
  size_t n;
} kbs__labelled;

static pthread_mutex_t kbs__lock = PTHREAD_MUTEX_INITIALIZER;
static kbs__labelled kbs__att_ok, kbs__att_fail, kbs__reads, kbs__writes;

static const double kbs__dur_buckets[] = {0.0005, 0.001, 0.005, 0.01, 0.05, 0.5, 1};
static const double kbs__size_buckets[] = {32, 128, 512, 2048, 8192};
static unsigned long long kbs__dur[8], kbs__req_size[6], kbs__resp_size[6];
static double kbs__dur_sum, kbs__req_sum, kbs__resp_sum;
static unsigned long long kbs__observations;

void kbs_metrics_inc(kbs_counter c) { atomic_fetch_add(&kbs__counters[c], 1); }

static void kbs__bump(kbs__labelled *l, const char *label) {
  pthread_mutex_lock(&kbs__lock);
  size_t i;
  for (i = 0; i < l->n; i++)
    if (!strcmp(l->label[i], label)) break;
  if (i == l->n) {
    if (l->n == KBS_M_LABELS) {
      label = "other";
      for (i = 0; i < l->n; i++)
        if (!strcmp(l->label[i], label)) break;
      if (i == l->n) i = KBS_M_LABELS - 1;
    } else {
      l->n++;
    }
    /* Only [A-Za-z0-9._/-] reach here (ids are validated), so no label escaping is needed. */
    snprintf(l->label[i], sizeof l->label[i], "%s", label);
  }
  l->value[i]++;
  pthread_mutex_unlock(&kbs__lock);
}

void kbs_metrics_attestation(const char *tee, int success) {
  kbs__bump(success ? &kbs__att_ok : &kbs__att_fail, tee);
}

void kbs_metrics_resource(const char *path, int write) { kbs__bump(write ? &kbs__writes : &kbs__reads, path); }

static void kbs__observe(unsigned long long *counts, const double *bounds, size_t nb, double v) {
  size_t i = 0;
  while (i < nb && v > bounds[i]) i++;
  counts[i]++;
}

void kbs_metrics_request(double seconds, size_t request_bytes, size_t response_bytes) {
  pthread_mutex_lock(&kbs__lock);
  kbs__observe(kbs__dur, kbs__dur_buckets, 7, seconds);
  kbs__observe(kbs__req_size, kbs__size_buckets, 5, (double)request_bytes);
  kbs__observe(kbs__resp_size, kbs__size_buckets, 5, (double)response_bytes);
  kbs__dur_sum += seconds;
  kbs__req_sum += (double)request_bytes;
  kbs__resp_sum += (double)response_bytes;
  kbs__observations++;
  pthread_mutex_unlock(&kbs__lock);
}

void kbs_metrics_connections(int delta) { atomic_fetch_add(&kbs__active, delta); }

static CT_RESULT kbs__histogram(ct_buf *out, const char *name, const char *help, const unsigned long long *counts,
                                const double *bounds, size_t nb, double sum, ct_err *err) {
  CT_GUARD(ct_buf_printf(out, err, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name));
  unsigned long long cum = 0;
  for (size_t i = 0; i < nb; i++) {
    cum += counts[i];
    CT_GUARD(ct_buf_printf(out, err, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], cum));
  }
  cum += counts[nb];
  return ct_buf_printf(out, err, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %g\n%s_count %llu\n", name, cum, name, sum,
                       name, cum);
}

static CT_RESULT kbs__labelled_render(ct_buf *out, const char *name, const char *label_name, const char *help,
                                      const kbs__labelled *l, ct_err *err) {
  CT_GUARD(ct_buf_printf(out, err, "# HELP %s %s\n# TYPE %s counter\n", name, help, name));
  for (size_t i = 0; i < l->n; i++)
    CT_GUARD(ct_buf_printf(out, err, "%s{%s=\"%s\"} %llu\n", name, label_name, l->label[i], l->value[i]));
  return CT_OK;
}

CT_RESULT kbs_metrics_render(ct_buf *out, ct_err *err) {
  CT_GUARD(ct_buf_printf(out, err, "# HELP kbs_build_info KBS binary build information.\n# TYPE kbs_build_info gauge\n"
                         "kbs_build_info{version=\"0.1.0\",git_hash=\"\",build_date=\"\"} 1\n"));
  for (int i = 0; i < KBS_M_COUNT; i++)
    CT_GUARD(ct_buf_printf(out, err, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", kbs__names[i][0], kbs__names[i][1],
                           kbs__names[i][0], kbs__names[i][0], (unsigned long long)atomic_load(&kbs__counters[i])));
  CT_GUARD(ct_buf_printf(out, err, "# HELP kbs_http_active_connections Count of HTTP connections currently being "
                         "processed.\n# TYPE kbs_http_active_connections gauge\nkbs_http_active_connections %lld\n",
                         (long long)atomic_load(&kbs__active)));
  pthread_mutex_lock(&kbs__lock);
  ct_status st = kbs__histogram(out, "kbs_http_request_duration_seconds", "Distribution of request handling duration "
                                "in seconds.", kbs__dur, kbs__dur_buckets, 7, kbs__dur_sum, err);
  if (st == CT_OK) st = kbs__histogram(out, "kbs_http_request_size_bytes", "Distribution of request body sizes in bytes.",
                                       kbs__req_size, kbs__size_buckets, 5, kbs__req_sum, err);
  if (st == CT_OK) st = kbs__histogram(out, "kbs_http_response_size_bytes", "Distribution of response body sizes in "
                                       "bytes.", kbs__resp_size, kbs__size_buckets, 5, kbs__resp_sum, err);
  if (st == CT_OK) st = kbs__labelled_render(out, "kbs_attestation_successes_total", "tee_type",
                                             "Total count of successful attestations.", &kbs__att_ok, err);
  if (st == CT_OK) st = kbs__labelled_render(out, "kbs_attestation_failures_total", "tee_type",
                                             "Total count of failed attestations.", &kbs__att_fail, err);
  if (st == CT_OK) st = kbs__labelled_render(out, "kbs_resource_reads_total", "resource_path",
                                             "Count of resource read operations.", &kbs__reads, err);
  if (st == CT_OK) st = kbs__labelled_render(out, "kbs_resource_writes_total", "resource_path",
                                             "Count of resource write operations.", &kbs__writes, err);
  pthread_mutex_unlock(&kbs__lock);
  return st;
}
