/*
 * Verifier throughput on one core: snp (Trustee JSON evidence with an embedded Genoa VCEK) and
 * az-snp-vtpm (evidence v1), with the VEK chain verification cached as in steady state, next
 * to `openssl speed` for ECDSA P-384 and RSA-2048 verification measured in the same run.
 * A verification of either kind costs one P-384 verification plus parsing, so the ratio to the
 * raw P-384 verify rate shows the verifier's overhead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ec.h>
#include <openssl/evp.h>

#include "as_verifier.h"
#include "ct_file.h"
#include "ct_json.h"

/* CPU time of this process, like `openssl speed` (which divides by user CPU time unless given
 * -elapsed), so that other load on a shared machine does not skew the ratio. */
static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static json_t *load(const char *rel) {
  const char *dir = getenv("CT_VECTORS_DIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir ? dir : "../shared/vectors", rel);
  uint8_t *b = NULL;
  size_t n = 0;
  ct_err err;
  json_t *j = NULL;
  if (ct_file_read(path, 1 << 20, &b, &n, &err) != CT_OK ||
      ct_json_parse((const char *)b, n, 16, &j, &err) != CT_OK) {
    fprintf(stderr, "verifier_bench: %s\n", err.msg);
    free(b);
    return NULL;
  }
  free(b);
  return j;
}

/* Verifications per second over ~2 s, after a warm-up that fills the chain cache. */
static double rate(const char *tee, const json_t *ev, const uint8_t *rd, size_t rd_len) {
  const as_verifier *v = as_verifier_find(tee);
  void *st = NULL;
  ct_err err;
  if (!v || v->create(NULL, &st, &err) != CT_OK) return 0;
  as_verify_request req = {.tee = tee, .evidence = ev, .report_data = rd, .report_data_len = rd_len};
  long n = 0;
  double t0 = 0, t = 0;
  for (int warm = 1;; warm = 0) {
    json_t *claims = NULL;
    if (v->verify(st, &req, &claims, &err) != CT_OK) {
      fprintf(stderr, "verifier_bench: %s refused: %s\n", tee, err.msg);
      v->destroy(st);
      return 0;
    }
    json_decref(claims);
    if (warm) {
      t0 = now();
      continue;
    }
    n++;
    if ((n & 15) == 0 && (t = now()) - t0 >= 2.0) break;
  }
  v->destroy(st);
  return (double)n / (t - t0);
}

/* Raw P-384 verifications/s in this process (EVP_PKEY_verify of a prehashed digest, as
 * `openssl speed` does): a baseline taken under the same load as the verifier figures. */
static double inproc_p384(void) {
  EVP_PKEY *k = EVP_EC_gen("P-384");
  unsigned char dg[48] = {1}, sig[160];
  size_t sl = sizeof sig;
  EVP_PKEY_CTX *sc = k ? EVP_PKEY_CTX_new(k, NULL) : NULL;
  EVP_PKEY_CTX *vc = k ? EVP_PKEY_CTX_new(k, NULL) : NULL;
  double r = 0;
  if (sc && vc && EVP_PKEY_sign_init(sc) == 1 && EVP_PKEY_sign(sc, sig, &sl, dg, 48) == 1 &&
      EVP_PKEY_verify_init(vc) == 1) {
    long n = 0;
    double t0 = now(), t = t0;
    while (t - t0 < 1.0) {
      if (EVP_PKEY_verify(vc, sig, sl, dg, 48) != 1) break;
      if ((++n & 15) == 0) t = now();
    }
    r = (double)n / (t - t0);
  }
  EVP_PKEY_CTX_free(sc);
  EVP_PKEY_CTX_free(vc);
  EVP_PKEY_free(k);
  return r;
}

/* The verify/s column of `openssl speed -seconds 2 <alg>` on the line containing `prefix`. */
static double openssl_verify_rate(const char *alg, const char *prefix) {
  char cmd[128], line[512];
  snprintf(cmd, sizeof cmd, "openssl speed -seconds 2 %s 2>/dev/null", alg);
  FILE *p = popen(cmd, "r");
  if (!p) return 0;
  double r = 0;
  while (fgets(line, sizeof line, p)) {
    if (!strstr(line, prefix)) continue;
    char *last = strrchr(line, ' ');
    if (last) r = atof(last + 1);
  }
  pclose(p);
  return r;
}

int main(void) {
  json_t *snp = load("snp/genoa-evidence-with-vcek.json");
  json_t *az = load("az-snp-vtpm/evidence-v1.json");
  if (!snp || !az) {
    printf("verifier_bench: vectors absent, nothing measured\nRESULT snp_verifs_per_s=0 "
           "az_snp_vtpm_verifs_per_s=0 openssl_p384_verify_per_s=0 ratio=0\n");
    return 0;
  }
  double base1 = inproc_p384();
  double snp_rate = rate("snp", snp, NULL, 0);
  double az_rate = rate("az-snp-vtpm", az, (const uint8_t *)"challenge", 9);
  double base = (base1 + inproc_p384()) / 2;
  double p384 = openssl_verify_rate("ecdsap384", "384 bits ecdsa");
  double rsa = openssl_verify_rate("rsa2048", "rsa 2048 bits");
  printf("snp verifications/s (1 core, chain cached):         %10.1f\n", snp_rate);
  printf("az-snp-vtpm verifications/s (1 core, chain cached): %10.1f\n", az_rate);
  printf("openssl speed ecdsap384 verify/s:                   %10.1f\n", p384);
  printf("openssl speed rsa2048 verify/s:                     %10.1f\n", rsa);
  double ratio = p384 > 0 ? snp_rate / p384 : 0;
  double az_ratio = p384 > 0 ? az_rate / p384 : 0;
  printf("in-process P-384 verify/s (same load):              %10.1f\n", base);
  printf("snp / P-384 verify: %.3f   az-snp-vtpm / P-384 verify: %.3f   (in-process baseline: "
         "%.3f / %.3f)\n", ratio, az_ratio, base > 0 ? snp_rate / base : 0,
         base > 0 ? az_rate / base : 0);
  printf("RESULT snp_verifs_per_s=%.1f az_snp_vtpm_verifs_per_s=%.1f openssl_p384_verify_per_s=%.1f "
         "openssl_rsa2048_verify_per_s=%.1f ratio=%.3f az_ratio=%.3f inproc_p384_verify_per_s=%.1f "
         "inproc_ratio=%.3f\n",
         snp_rate, az_rate, p384, rsa, ratio, az_ratio, base, base > 0 ? snp_rate / base : 0);
  json_decref(snp);
  json_decref(az);
  return 0;
}
