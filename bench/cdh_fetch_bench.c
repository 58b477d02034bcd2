/*
 * cdh_fetch_bench - resource fetch latency through the CDH with a cached token, on loopback:
 * a real kbs (TLS, EAR tokens, Rego policy) and a real `cdh --tee sample`; the client keeps one
 * HTTP connection to the CDH, as a workload polling its secret would.
 *
 * Prints p50/p90/p99 and ends with `RESULT cdh_fetch_p50_ms=… p99_ms=…`.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ct_buf.h"
#include "ct_file.h"
#include "ct_http.h"
#include "jose.h"

#define N_FETCH 2000

static char g_dir[256], g_bin[PATH_MAX];

static int sh(const char *fmt, ...) CT_PRINTF(1, 2);
static int sh(const char *fmt, ...) {
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof cmd) return -1;
  return system(cmd);
}

/* Starts `argv` with stdout on a pipe; waits for a line starting with `ready` and returns the
 * number at its end (the port). */
static pid_t spawn(char *const argv[], const char *log, const char *ready, int *port) {
  int fds[2];
  if (pipe(fds)) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    FILE *l = fopen(log, "w");
    if (l) dup2(fileno(l), 2);
    close(fds[0]);
    execv(argv[0], argv);
    _exit(127);
  }
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, ready, strlen(ready))) {
      char *c = strrchr(line, ':');
      char *sp = strrchr(line, ' ');
      *port = atoi((c && c > sp ? c : sp) + 1);
      return pid;
    }
  }
  fprintf(stderr, "cdh_fetch_bench: %s did not start (see %s)\n", argv[0], log);
  return -1;
}

/* CPU seconds (user + system) a child has used so far. */
static double cpu_s(pid_t pid) {
  char p[64], buf[1024];
  snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(p, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *c = strrchr(buf, ')');
  unsigned long ut = 0, st = 0;
  /* fields after the command: state(3) ... utime(14) stime(15) */
  if (c && sscanf(c + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static const char k_policy[] =
    "package policy\n\nimport rego.v1\n\ndefault allow := false\n\nallow if {\n"
    "\tinput.submods.cpu0[\"ear.veraison.annotated-evidence\"].sample\n}\n";

int main(int argc, char **argv) {
  (void)argc;
  char self[1024];
  snprintf(self, sizeof self, "%s", argv[0]);
  char rel[1100];
  snprintf(rel, sizeof rel, "%s/../bin", dirname(self));
  if (!realpath(rel, g_bin)) {
    printf("cdh_fetch_bench: no bin directory next to %s; skipped\n", argv[0]);
    return 0;
  }
  char kbs_bin[PATH_MAX + 16], cli_bin[PATH_MAX + 16], cdh_bin[PATH_MAX + 16];
  snprintf(kbs_bin, sizeof kbs_bin, "%s/kbs", g_bin);
  snprintf(cli_bin, sizeof cli_bin, "%s/kbs-client", g_bin);
  snprintf(cdh_bin, sizeof cdh_bin, "%s/cdh", g_bin);
  if (access(kbs_bin, X_OK) || access(cli_bin, X_OK) || access(cdh_bin, X_OK)) {
    printf("cdh_fetch_bench: kbs, kbs-client or cdh not built; skipped\n");
    return 0;
  }
  snprintf(g_dir, sizeof g_dir, "/tmp/cdh-bench-XXXXXX");
  if (!mkdtemp(g_dir)) return 1;
  const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
  if (sh("cd %s && openssl req -x509 %s -keyout tls.key -out tls.crt -days 1 -subj /CN=127.0.0.1 "
         "-addext subjectAltName=IP:127.0.0.1 2>/dev/null && "
         "openssl req -x509 %s -keyout ca.key -out ca.crt -days 1 -subj /CN=bench-ca "
         "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null && "
         "openssl req %s -keyout signer.key -out signer.csr -subj /CN=bench-signer 2>/dev/null && "
         "openssl x509 -req -in signer.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out signer.crt "
         "-days 1 2>/dev/null && openssl genpkey -algorithm ed25519 -out admin.key && "
         "openssl pkey -in admin.key -pubout -out admin.pub", g_dir, ec, ec, ec)) {
    fprintf(stderr, "cdh_fetch_bench: openssl failed\n");
    return 1;
  }
  char path[600];
  snprintf(path, sizeof path, "%s/kbs.toml", g_dir);
  FILE *f = fopen(path, "w");
  fprintf(f,
          "[http_server]\nsockets = [\"127.0.0.1:0\"]\nprivate_key = \"%1$s/tls.key\"\n"
          "certificate = \"%1$s/tls.crt\"\n\n[admin]\nauthorization_mode = \"AuthenticatedAuthorization\"\n\n"
          "[admin.authentication.bearer_jwt]\nidentity_providers = [{ public_key_uri = \"%1$s/admin.pub\" }]\n\n"
          "[admin.authorization.regex_acl]\nacls = [{ role = \"admin\", allowed_endpoints = \"^/kbs/v0/.+$\" }]\n\n"
          "[attestation_token]\ntrusted_certs_paths = [\"%1$s/ca.crt\"]\n\n"
          "[attestation_service]\ntype = \"coco_as_builtin\"\nenable_sample_tee = true\n\n"
          "[attestation_service.attestation_token_broker]\nduration_min = 30\n\n"
          "[attestation_service.attestation_token_broker.signer]\nkey_path = \"%1$s/signer.key\"\n"
          "cert_path = \"%1$s/signer.crt\"\n\n[storage_backend]\nstorage_type = \"LocalFs\"\n\n"
          "[storage_backend.backends.local_fs]\ndir_path = \"%1$s/storage\"\n\n[[plugins]]\nname = \"resource\"\n",
          g_dir);
  fclose(f);
  char log[600];
  snprintf(log, sizeof log, "%s/kbs.log", g_dir);
  char *kargv[] = {kbs_bin, "--config-file", path, NULL};
  int kport = 0, cport = 0, rc = 1;
  pid_t kbs = spawn(kargv, log, "kbs: ready on port ", &kport), cdh = -1;
  if (kbs < 0) goto out;

  /* Admin token (EdDSA JWT) for kbs-client. */
  ct_err err;
  uint8_t *pem = NULL;
  size_t plen = 0;
  snprintf(path, sizeof path, "%s/admin.key", g_dir);
  jose_jwk *ak = NULL;
  if (ct_file_read(path, 1 << 16, &pem, &plen, &err) ||
      jose_jwk_from_pem((char *)pem, plen, "EdDSA", &ak, &err)) {
    fprintf(stderr, "cdh_fetch_bench: admin key: %s\n", err.msg);
    free(pem);
    goto out;
  }
  free(pem);
  char claims[128];
  snprintf(claims, sizeof claims, "{\"role\":\"admin\",\"exp\":%lld}", (long long)time(NULL) + 3600);
  char *jwt = NULL;
  if (jose_jws_sign("EdDSA", jose_jwk_pkey(ak), NULL, (uint8_t *)claims, strlen(claims), &jwt, &err)) {
    fprintf(stderr, "cdh_fetch_bench: admin token: %s\n", err.msg);
    jose_jwk_free(ak);
    goto out;
  }
  jose_jwk_free(ak);
  snprintf(path, sizeof path, "%s/admin-token", g_dir);
  f = fopen(path, "w");
  fputs(jwt, f);
  fclose(f);
  free(jwt);
  snprintf(path, sizeof path, "%s/policy.rego", g_dir);
  f = fopen(path, "w");
  fputs(k_policy, f);
  fclose(f);
  if (sh("cd %1$s && head -c 32 /dev/urandom > secret && "
         "%2$s --url https://127.0.0.1:%3$d --cert-file tls.crt config --admin-token-file admin-token "
         "set-resource --path bench/key/one --resource-file secret >/dev/null && "
         "%2$s --url https://127.0.0.1:%3$d --cert-file tls.crt config --admin-token-file admin-token "
         "set-resource-policy --policy-file policy.rego >/dev/null", g_dir, cli_bin, kport)) {
    fprintf(stderr, "cdh_fetch_bench: kbs-client configuration failed\n");
    goto out;
  }
  snprintf(path, sizeof path, "%s/cdh.toml", g_dir);
  uint8_t *cert = NULL;
  size_t clen = 0;
  char certp[600];
  snprintf(certp, sizeof certp, "%s/tls.crt", g_dir);
  if (ct_file_read(certp, 1 << 16, &cert, &clen, &err)) goto out;
  f = fopen(path, "w");
  fprintf(f, "[kbc]\nname = \"cc_kbc\"\nurl = \"https://127.0.0.1:%d\"\nkbs_cert = '''%s'''\n", kport,
          (char *)cert);
  fclose(f);
  free(cert);
  snprintf(log, sizeof log, "%s/cdh.log", g_dir);
  char *cargv[] = {cdh_bin, "-c", path, "--tee", "sample", "--listen", "127.0.0.1:0",
                   "--cdh-socket", "none", "--aa-socket", "none", NULL};
  cdh = spawn(cargv, log, "cdh: listening on ", &cport);
  if (cdh < 0) goto out;

  ct_http_client *h = NULL;
  ct_http_opts ho = {.no_proxy = 1, .max_body = 1 << 16};
  if (ct_http_client_new(&ho, &h, &err)) goto out;
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/cdh/resource/bench/key/one", cport);
  ct_http_req req = {.url = url};
  ct_http_resp resp;
  double *ms = calloc(N_FETCH, sizeof *ms);
  struct timespec t0, t1, a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  int ok = 1;
  double cdh_cpu0 = 0, kbs_cpu0 = 0;
  for (int i = -1; i < N_FETCH && ok; i++) { /* i = -1 attests and is not counted */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ct_status hst = ct_http_do(h, &req, &resp, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (hst || resp.status != 200 || resp.body.len != 32) {
      fprintf(stderr, "cdh_fetch_bench: fetch %d failed (%s, HTTP %ld)\n", i, hst ? err.msg : "ok",
              resp.status);
      ok = 0;
    }
    if (i == -1) {
      printf("first fetch (RCAR + fetch): %.2f ms\n",
             (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
      clock_gettime(CLOCK_MONOTONIC, &a);
      cdh_cpu0 = cpu_s(cdh);
      kbs_cpu0 = cpu_s(kbs);
    } else {
      ms[i] = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    }
    ct_http_resp_free(&resp);
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  ct_http_client_free(h);
  if (ok) {
    qsort(ms, N_FETCH, sizeof *ms, cmp_double);
    double total = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    printf("fetches: %d over one keep-alive connection, %.0f fetch/s\n", N_FETCH, N_FETCH / total);
    printf("CPU per fetch: cdh %.3f ms, kbs %.3f ms (machine load shows as latency above CPU)\n",
           (cpu_s(cdh) - cdh_cpu0) * 1e3 / N_FETCH, (cpu_s(kbs) - kbs_cpu0) * 1e3 / N_FETCH);
    printf("latency ms: p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n", ms[N_FETCH / 2],
           ms[N_FETCH * 9 / 10], ms[N_FETCH * 99 / 100], ms[N_FETCH - 1]);
    printf("RESULT cdh_fetch_p50_ms=%.3f p99_ms=%.3f\n", ms[N_FETCH / 2], ms[N_FETCH * 99 / 100]);
    rc = 0;
  }
  free(ms);
out:
  if (cdh > 0) {
    kill(cdh, SIGTERM);
    waitpid(cdh, NULL, 0);
  }
  if (kbs > 0) {
    kill(kbs, SIGTERM);
    waitpid(kbs, NULL, 0);
  }
  if (rc) fprintf(stderr, "cdh_fetch_bench: logs kept in %s\n", g_dir);
  else sh("rm -rf '%s'", g_dir);
  return rc;
}
