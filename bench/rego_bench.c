/*
 * rego_bench - evaluations per second of the shipped default CPU attestation policy
 * (policies/attestation/default_cpu.rego) on a sample-TEE claims input, compiled once and
 * evaluated N times through rego_eval (input converted from jansson on every call, as the
 * attestation service does). When the real `opa` binary is available (PATH or ~/go/bin), the
 * same policy, input and query are measured with `opa bench` in the same run.
 *
 * query_reference_value is defined in Rego over data.reference for both engines, so they run
 * identical Rego. Ends with: RESULT rego_evals_per_s=... opa_evals_per_s=... speedup=...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ct_policies.h"
#include "rego.h"

static const char RV_MODULE[] =
    "package policy\n\nquery_reference_value(id) := data.reference[id]\n";
static const char INPUT[] =
    "{\"sample\": {\"svn\": \"1\", \"launch_digest\": \"abcde\", \"debug\": false,"
    " \"platform_version\": {\"major\": 1, \"minor\": 1}},"
    " \"init_data_claims\": {\"agent_policy_claims\": {\"containers\": ["
    "{\"OCI\": {\"Annotations\": {\"io.kubernetes.cri.image-name\": \"pause\"}, \"Process\": {\"User\": {\"UID\": 65535}}}},"
    "{\"OCI\": {\"Annotations\": {\"io.kubernetes.cri.image-name\": \"nginx\"}, \"Process\": {\"User\": {\"UID\": 0}}}}]}}}";
static const char DATA[] =
    "{\"reference\": {\"launch_digest\": [\"abcde\"], \"svn\": [\"1\"], \"major_version\": 1,"
    " \"minimum_minor_version\": 1}}";
static const char QUERY[] = "data.policy.trust_claims";

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fputs(text, f);
  return fclose(f);
}

/* Runs `opa bench` on the same policy; returns evaluations per second or 0. */
static double opa_bench(void) {
  const char *opa = NULL;
  char home_opa[512];
  if (system("command -v opa >/dev/null 2>&1") == 0) opa = "opa";
  else {
    const char *home = getenv("HOME");
    snprintf(home_opa, sizeof(home_opa), "%s/go/bin/opa", home ? home : "/root");
    if (access(home_opa, X_OK) == 0) opa = home_opa;
    else if (access("/root/go/bin/opa", X_OK) == 0) opa = "/root/go/bin/opa";
  }
  if (!opa) return 0;
  char dir[] = "/tmp/rego_bench.XXXXXX";
  if (!mkdtemp(dir)) return 0;
  char p1[600], p2[600], p3[600], p4[600], cmd[4096];
  snprintf(p1, sizeof(p1), "%s/policy.rego", dir);
  snprintf(p2, sizeof(p2), "%s/rv.rego", dir);
  snprintf(p3, sizeof(p3), "%s/input.json", dir);
  snprintf(p4, sizeof(p4), "%s/data.json", dir);
  double eps = 0;
  if (write_file(p1, ct_policy_default_cpu) || write_file(p2, RV_MODULE) || write_file(p3, INPUT) ||
      write_file(p4, DATA))
    goto done;
  snprintf(cmd, sizeof(cmd), "%s bench --format json -d %s -d %s -d %s -i %s '%s' 2>/dev/null", opa, p1, p2, p4, p3,
           QUERY);
  FILE *f = popen(cmd, "r");
  if (!f) goto done;
  static char out[1 << 20];
  size_t n = 0, r;
  while (n < sizeof(out) - 1 && (r = fread(out + n, 1, sizeof(out) - 1 - n, f)) > 0) n += r;
  out[n] = 0;
  pclose(f);
  json_error_t je;
  json_t *j = json_loads(out, 0, &je);
  /* opa bench --format json: N iterations took T nanoseconds */
  double iters = j ? json_number_value(json_object_get(j, "N")) : 0;
  double total = j ? json_number_value(json_object_get(j, "T")) : 0;
  if (iters > 0 && total > 0) eps = iters / (total / 1e9);
  json_decref(j);
done:
  unlink(p1);
  unlink(p2);
  unlink(p3);
  unlink(p4);
  rmdir(dir);
  return eps;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 10000;
  rego_module mods[2] = {{"default_cpu.rego", ct_policy_default_cpu}, {"rv.rego", RV_MODULE}};
  ct_err err = {0};
  rego_policy *p = NULL;
  double t0 = now_s();
  if (rego_compile(mods, 2, NULL, &p, &err)) {
    fprintf(stderr, "compile: %s\n", err.msg);
    return 1;
  }
  double tc = now_s() - t0;
  json_error_t je;
  json_t *in = json_loads(INPUT, 0, &je), *data = json_loads(DATA, 0, &je);
  json_t *res = NULL;
  if (rego_eval(p, QUERY, in, data, &res, &err)) {
    fprintf(stderr, "eval: %s\n", err.msg);
    return 1;
  }
  char *txt = json_dumps(res, JSON_COMPACT | JSON_SORT_KEYS);
  printf("trust_claims: %s\n", txt);
  free(txt);
  json_decref(res);
  /* The machine is shared: report the best of 5 rounds (opa: best of 2 runs). */
  double dt = 1e30;
  for (int round = 0; round < 5; round++) {
    t0 = now_s();
    for (long i = 0; i < n; i++) {
      if (rego_eval(p, QUERY, in, data, &res, &err)) {
        fprintf(stderr, "eval: %s\n", err.msg);
        return 1;
      }
      json_decref(res);
    }
    double r = now_s() - t0;
    if (r < dt) dt = r;
  }
  double ours = (double)n / dt;
  printf("compile: %.3f ms\n", tc * 1e3);
  printf("rego: %ld evaluations (best of 5 rounds) in %.3f s: %.0f evals/s (%.2f us/eval)\n", n, dt, ours, dt / (double)n * 1e6);
  double theirs = 0;
  for (int round = 0; round < 2 && !getenv("REGO_BENCH_NO_OPA"); round++) {
    double x = opa_bench();
    if (x > theirs) theirs = x;
  }
  if (theirs > 0) printf("opa bench: %.0f evals/s (%.2f us/eval)\n", theirs, 1e6 / theirs);
  else printf("opa bench: opa binary not available (scripts/install-test-tools)\n");
  printf("RESULT rego_evals_per_s=%.0f opa_evals_per_s=%.0f speedup=%.2f\n", ours, theirs,
         theirs > 0 ? ours / theirs : 0.0);
  json_decref(in);
  json_decref(data);
  rego_policy_free(p);
  return 0;
}
