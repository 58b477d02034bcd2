/*
 * kbs_loadgen - N concurrent clients, each doing the full sample RCAR handshake (auth, attest) and a
 * resource GET per iteration over one TLS keep-alive connection, for D seconds.
 *
 *   kbs_loadgen URL CA_PEM RESOURCE_PATH CLIENTS SECONDS
 *
 * Prints handshakes/s and latency percentiles of whole iterations; scripts/bench-kbs adds the KBS's
 * RSS and `openssl speed` figures of the same machine.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ct_codec.h"
#include "ct_file.h"
#include "kbc.h"

#define MAX_CLIENTS 256
#define MAX_SAMPLES (1u << 20)

typedef struct bench {
  const char *url, *path;
  char *ca;
  double seconds;
  atomic_uint n;
  double *lat_ms;
  atomic_ulong errors;
} bench;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static ct_status sample_evidence(void *ud, const uint8_t *rd, size_t len, json_t **ev, ct_err *err) {
  (void)ud;
  char *b64 = NULL;
  CT_GUARD(ct_b64_encode(CT_B64_STD, rd, len, &b64, err));
  *ev = json_pack("{s:s, s:s}", "svn", "1", "report_data", b64);
  free(b64);
  return *ev ? CT_OK : ct_fail(err, CT_ENOMEM, "out of memory");
}

static void *client(void *arg) {
  bench *b = arg;
  kbc_opts o = {.tee = "sample", .evidence = sample_evidence, .attempts = 1};
  kbc_client *c = NULL;
  ct_err err;
  if (kbc_client_new(b->url, b->ca, &o, &c, &err) != CT_OK) {
    fprintf(stderr, "kbs_loadgen: %s\n", err.msg);
    atomic_fetch_add(&b->errors, 1);
    return NULL;
  }
  double end = now_s() + b->seconds;
  while (now_s() < end) {
    double t0 = now_s();
    kbc_invalidate(c); /* a full handshake every iteration, not a cached token */
    uint8_t *out = NULL;
    size_t len = 0;
    if (kbc_get_resource(c, b->path, &out, &len, &err) != CT_OK) {
      if (atomic_fetch_add(&b->errors, 1) < 3) fprintf(stderr, "kbs_loadgen: %s\n", err.msg);
      continue;
    }
    free(out);
    unsigned i = atomic_fetch_add(&b->n, 1);
    if (i < MAX_SAMPLES) b->lat_ms[i] = (now_s() - t0) * 1000.0;
  }
  kbc_client_free(c);
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: kbs_loadgen URL CA_PEM RESOURCE_PATH CLIENTS SECONDS\n");
    return 2;
  }
  bench b = {.url = argv[1], .path = argv[3], .seconds = atof(argv[5])};
  int clients = atoi(argv[4]);
  if (clients < 1 || clients > MAX_CLIENTS || b.seconds <= 0) return 2;
  uint8_t *ca = NULL;
  size_t ca_len = 0;
  ct_err err;
  if (ct_file_read(argv[2], 1u << 20, &ca, &ca_len, &err) != CT_OK) {
    fprintf(stderr, "kbs_loadgen: %s\n", err.msg);
    return 1;
  }
  b.ca = (char *)ca;
  b.lat_ms = calloc(MAX_SAMPLES, sizeof *b.lat_ms);
  pthread_t th[MAX_CLIENTS];
  double t0 = now_s();
  for (int i = 0; i < clients; i++) pthread_create(&th[i], NULL, client, &b);
  for (int i = 0; i < clients; i++) pthread_join(th[i], NULL);
  double elapsed = now_s() - t0;
  unsigned n = atomic_load(&b.n);
  unsigned kept = n < MAX_SAMPLES ? n : MAX_SAMPLES;
  qsort(b.lat_ms, kept, sizeof *b.lat_ms, cmp_double);
  double p50 = kept ? b.lat_ms[kept / 2] : 0, p99 = kept ? b.lat_ms[(size_t)(kept * 0.99)] : 0;
  printf("clients=%d seconds=%.1f handshakes=%u errors=%lu handshakes_per_s=%.0f p50_ms=%.2f p99_ms=%.2f\n", clients,
         elapsed, n, atomic_load(&b.errors), n / elapsed, p50, p99);
  free(b.lat_ms);
  free(ca);
  return atomic_load(&b.errors) ? 1 : 0;
}
