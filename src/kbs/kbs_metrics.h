/*
 * kbs_metrics.h - Prometheus counters with Trustee's metric names (kbs/docs/metrics.md).
 */
#ifndef KBS_METRICS_H
#define KBS_METRICS_H

#include <stddef.h>

#include "ct_buf.h"
#include "ct_status.h"

typedef enum kbs_counter {
  KBS_M_HTTP_REQUESTS,
  KBS_M_AUTH_REQUESTS,
  KBS_M_AUTH_SUCCESSES,
  KBS_M_AUTH_ERRORS,
  KBS_M_ATTESTATION_REQUESTS,
  KBS_M_ATTESTATION_ERRORS,
  KBS_M_POLICY_EVALUATIONS,
  KBS_M_POLICY_APPROVALS,
  KBS_M_POLICY_VIOLATIONS,
  KBS_M_POLICY_ERRORS,
  KBS_M_COUNT
} kbs_counter;

void kbs_metrics_inc(kbs_counter c);
void kbs_metrics_attestation(const char *tee, int success);
void kbs_metrics_resource(const char *path, int write);
void kbs_metrics_request(double seconds, size_t request_bytes, size_t response_bytes);
void kbs_metrics_connections(int delta);
CT_RESULT kbs_metrics_render(ct_buf *out, ct_err *err);

#endif
