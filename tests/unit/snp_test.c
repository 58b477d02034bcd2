/*
 * The snp verifier against the hardware vectors in ../shared/vectors/snp (expected results from
 * its README), single-bit tampering of every signed field, the offline VCEK store and the AMD
 * KDS fetch path (against a local HTTP server that first answers 429).
 */
#include "ct_test_util.h"

#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "as_verifier.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_json.h"
#include "snp.h"
#include "verify_cli.h"

extern char **environ;

static const as_verifier *verifier(void) {
  const as_verifier *v = as_verifier_find("snp");
  assert_non_null(v);
  return v;
}

/* Evidence {attestation_report: base64(raw), cert_chain: [{cert_type, data}]} (type NULL: none). */
static json_t *raw_evidence(const uint8_t *rep, size_t rep_len, const char *type, const uint8_t *der,
                            size_t der_len) {
  ct_err err;
  char *b64 = NULL;
  CT_ASSERT_OK(ct_b64_encode(CT_B64_STD, rep, rep_len, &b64, &err), &err);
  json_t *ev = json_pack("{s:s, s:n}", "attestation_report", b64, "cert_chain");
  free(b64);
  if (type) {
    json_t *data = json_array();
    for (size_t i = 0; i < der_len; i++) json_array_append_new(data, json_integer(der[i]));
    json_object_set_new(ev, "cert_chain",
                        json_pack("[{s:s, s:o}]", "cert_type", type, "data", data));
  }
  return ev;
}

static CT_RESULT run(const as_verifier_config *cfg, const json_t *ev, const uint8_t *rd,
                     size_t rd_len, const uint8_t *id, size_t id_len, json_t **claims, ct_err *err) {
  const as_verifier *v = verifier();
  void *st = NULL;
  CT_ASSERT_OK(v->create(cfg, &st, err), err);
  as_verify_request req = {.tee = "snp", .evidence = ev, .report_data = rd, .report_data_len = rd_len,
                           .init_data_digest = id, .init_data_digest_len = id_len};
  *claims = NULL;
  ct_status s = v->verify(st, &req, claims, err);
  v->destroy(st);
  return s;
}

static void expect_fail(const as_verifier_config *cfg, const json_t *ev, const uint8_t *rd,
                        size_t rd_len, const char *needle) {
  ct_err err;
  json_t *claims = NULL;
  ct_status s = run(cfg, ev, rd, rd_len, NULL, 0, &claims, &err);
  if (s == CT_OK) fail_msg("expected failure containing \"%s\", got success", needle);
  if (!strstr(err.msg, needle)) fail_msg("expected \"%s\" in \"%s\"", needle, err.msg);
  assert_null(claims);
}

/* The Genoa vector as raw report bytes and its VCEK (DER). The snp verifier refuses the Milan
 * test-report.bin (a version 2 report) as upstream does, so the full-verifier paths run on this
 * version 3 report; the lower-level checks still use both. */
static void genoa_raw(uint8_t **rep, size_t *rn, uint8_t **vcek, size_t *vn) {
  uint8_t *b = NULL;
  size_t n = 0;
  ct_err err;
  CT_READ_VECTOR("snp/genoa-evidence-with-vcek.json", &b, &n);
  json_t *ev = NULL;
  CT_ASSERT_OK(ct_json_parse((const char *)b, n, 16, &ev, &err), &err);
  free(b);
  snp_report r;
  CT_ASSERT_OK(snp_report_from_json(json_object_get(ev, "attestation_report"), &r, &err), &err);
  *rep = malloc(SNP_REPORT_SIZE);
  assert_non_null(*rep);
  memcpy(*rep, r.raw, SNP_REPORT_SIZE);
  *rn = SNP_REPORT_SIZE;
  json_t *data = json_object_get(json_array_get(json_object_get(ev, "cert_chain"), 0), "data");
  *vn = json_array_size(data);
  *vcek = malloc(*vn);
  assert_non_null(*vcek);
  for (size_t i = 0; i < *vn; i++) (*vcek)[i] = (uint8_t)json_integer_value(json_array_get(data, i));
  json_decref(ev);
}

#define GENOA_CHIP_ID                                                                              \
  "371c55d6d15cb50f16dc31d39a24e300caaabff4431e841111429b73ec45ad67"                               \
  "ea6e687ffae7bf84b54a5d0e6d79b3ef6ff0bd8b4cff94c2163af5c5de8718e8"

static void test_vcek_report_golden(void **state) {
  (void)state;
  uint8_t *rep = NULL, *vcek = NULL;
  size_t rn = 0, vn = 0;
  ct_err err;
  /* The Milan vector is a version 2 report: refused as too old, as upstream does. */
  CT_READ_VECTOR("snp/test-report.bin", &rep, &rn);
  CT_READ_VECTOR("snp/test-vcek.der", &vcek, &vn);
  json_t *ev = raw_evidence(rep, rn, "VCEK", vcek, vn);
  expect_fail(NULL, ev, NULL, 0, "version 2 is too old: version 3 or later is required");
  json_decref(ev);
  free(rep);
  free(vcek);

  genoa_raw(&rep, &rn, &vcek, &vn);
  ev = raw_evidence(rep, rn, "VCEK", vcek, vn);
  json_t *claims = NULL;
  CT_ASSERT_OK(run(NULL, ev, rep + SNP_OFF_REPORT_DATA, 64, rep + SNP_OFF_HOST_DATA, 32, &claims, &err), &err);
  assert_int_equal(json_integer_value(json_object_get(claims, "reported_tcb_bootloader")), 10);
  assert_int_equal(json_integer_value(json_object_get(claims, "reported_tcb_tee")), 0);
  assert_int_equal(json_integer_value(json_object_get(claims, "reported_tcb_snp")), 23);
  assert_int_equal(json_integer_value(json_object_get(claims, "reported_tcb_microcode")), 25);
  assert_true(json_is_boolean(json_object_get(claims, "policy_debug_allowed")));
  assert_string_equal(json_string_value(json_object_get(claims, "chip_id")), GENOA_CHIP_ID);
  char hex[129];
  ct_hex_into(rep + SNP_OFF_MEASUREMENT, 48, hex);
  assert_string_equal(json_string_value(json_object_get(claims, "measurement")), hex);
  ct_hex_into(rep + SNP_OFF_REPORT_DATA, 64, hex);
  assert_string_equal(json_string_value(json_object_get(claims, "report_data")), hex);
  assert_int_equal(strlen(json_string_value(json_object_get(claims, "init_data"))), 64);
  assert_int_equal(json_object_size(claims), 16);
  json_decref(claims);

  /* The wrong report data and the wrong init-data digest are refused, naming the field. */
  uint8_t wrong[48] = {1};
  expect_fail(NULL, ev, wrong, sizeof wrong, "REPORT_DATA mismatch: expected 01");
  CT_ASSERT_OK(run(NULL, ev, NULL, 0, NULL, 0, &claims, &err), &err);
  json_decref(claims);
  ct_status s = run(NULL, ev, NULL, 0, wrong, sizeof wrong, &claims, &err);
  assert_int_not_equal(s, CT_OK);
  assert_non_null(strstr(err.msg, "HOST_DATA (init-data digest) mismatch"));
  json_decref(ev);

  /* Byte 42 incremented: the report signature fails. */
  rep[42]++;
  ev = raw_evidence(rep, rn, "VCEK", vcek, vn);
  expect_fail(NULL, ev, NULL, 0, "signature (ECDSA P-384 over bytes 0x000-0x29F) does not verify");
  json_decref(ev);
  rep[42]--;
  /* VCEK byte 42 incremented: still a certificate, but the chain fails. */
  vcek[42]++;
  ev = raw_evidence(rep, rn, "VCEK", vcek, vn);
  expect_fail(NULL, ev, NULL, 0, "does not chain to AMD's Genoa ARK");
  json_decref(ev);
  vcek[42]--;
  /* Without any VCEK source the verifier says where it looked. */
  ev = raw_evidence(rep, rn, NULL, NULL, 0);
  expect_fail(NULL, ev, NULL, 0, "AMD KDS is not configured");
  json_decref(ev);
  free(rep);
  free(vcek);
}

/* One flipped bit in every byte of the signed body, and in every byte of r and s, is refused
 * with a specific reason. */
static void test_bit_flips(void **state) {
  (void)state;
  uint8_t *rep = NULL, *vcek = NULL;
  size_t rn = 0, vn = 0;
  ct_err err;
  CT_READ_VECTOR("snp/test-report.bin", &rep, &rn);
  CT_READ_VECTOR("snp/test-vcek.der", &vcek, &vn);
  snp_ctx *c = NULL;
  CT_ASSERT_OK(snp_ctx_new(NULL, &c, &err), &err);
  EVP_PKEY *k = NULL;
  snp_vek_info info;
  CT_ASSERT_OK(snp_vek_verify(c, vcek, vn, SNP_GEN_MILAN, SNP_VEK_VCEK, NULL, 0, &k, &info, &err), &err);
  static const char *reasons[] = {"does not verify with the VCEK", "version mismatch",
                                  "chip ID mismatch", "is not supported", "signature_algo",
                                  "is not Milan, Genoa or Turin"};
  for (size_t i = 0; i < SNP_SIG_OFFSET + 144; i++) {
    uint8_t bit = (uint8_t)(1u << (i % 8));
    rep[i] ^= bit;
    snp_report r;
    ct_status s = snp_report_parse(rep, rn, &r, &err);
    if (s == CT_OK) s = snp_report_verify_signature(&r, &info, k, &err);
    if (s == CT_OK) fail_msg("flipping bit %zu of byte 0x%zx was not detected", i % 8, i);
    bool known = false;
    for (size_t j = 0; j < sizeof reasons / sizeof *reasons; j++) known |= strstr(err.msg, reasons[j]) != NULL;
    if (!known) fail_msg("byte 0x%zx: unexpected reason \"%s\"", i, err.msg);
    if (i >= SNP_SIG_OFFSET) assert_non_null(strstr(err.msg, "does not verify"));
    rep[i] ^= bit;
  }
  /* A flipped reported_tcb SNP SPL names the SPL. */
  rep[0x186] ^= 1;
  snp_report r;
  CT_ASSERT_OK(snp_report_parse(rep, rn, &r, &err), &err);
  assert_int_not_equal(snp_report_verify_signature(&r, &info, k, &err), CT_OK);
  assert_non_null(strstr(err.msg, "SNP version mismatch: VEK certifies SPL 8, report's reported_tcb has 9"));
  EVP_PKEY_free(k);
  snp_ctx_free(c);
  free(rep);
  free(vcek);
}

static void test_vlek(void **state) {
  (void)state;
  uint8_t *rep = NULL, *vlek = NULL;
  size_t rn = 0, vn = 0;
  ct_err err;
  CT_READ_VECTOR("snp/test-vlek-report.bin", &rep, &rn);
  CT_READ_VECTOR("snp/test-vlek.der", &vlek, &vn);
  snp_ctx *c = NULL;
  CT_ASSERT_OK(snp_ctx_new(NULL, &c, &err), &err);
  snp_vek_info info;
  CT_ASSERT_OK(snp_vek_inspect(c, vlek, vn, SNP_GEN_MILAN, &info, &err), &err);
  assert_int_equal(info.type, SNP_VEK_VLEK);
  snp_ctx_free(c);
  json_t *ev = raw_evidence(rep, rn, "VLEK", vlek, vn);
  /* The signature verifies with the VLEK (chained to the ASVK); this report was requested at
   * VMPL 1, which the verifier then refuses, as Trustee does. */
  expect_fail(NULL, ev, NULL, 0, "VMPL check failed: expected 0, found 1");
  json_decref(ev);
  snp_report r;
  CT_ASSERT_OK(snp_report_parse(rep, rn, &r, &err), &err);
  c = NULL;
  CT_ASSERT_OK(snp_ctx_new(NULL, &c, &err), &err);
  EVP_PKEY *k = NULL;
  CT_ASSERT_OK(snp_vek_verify(c, vlek, vn, r.gen, SNP_VEK_VLEK, NULL, 0, &k, &info, &err), &err);
  CT_ASSERT_OK(snp_report_verify_signature(&r, &info, k, &err), &err);
  EVP_PKEY_free(k);
  snp_ctx_free(c);
  /* A VLEK presented as a VCEK is refused: it chains to the ASVK, not the ASK. */
  ev = raw_evidence(rep, rn, "VCEK", vlek, vn);
  expect_fail(NULL, ev, NULL, 0, "is signed by the ASVK (a VLEK)");
  json_decref(ev);
  vlek[42]++;
  ev = raw_evidence(rep, rn, "VLEK", vlek, vn);
  expect_fail(NULL, ev, NULL, 0, "does not chain to AMD's Milan ARK");
  json_decref(ev);
  free(rep);
  free(vlek);
}

static void test_field_vceks_parse(void **state) {
  (void)state;
  const char *files[] = {"snp/test-vcek.der", "snp/test-vcek-invalid-legacy.der",
                         "snp/test-vcek-invalid-new.der"};
  ct_err err;
  snp_ctx *c = NULL;
  CT_ASSERT_OK(snp_ctx_new(NULL, &c, &err), &err);
  for (size_t i = 0; i < 3; i++) {
    uint8_t *d = NULL;
    size_t n = 0;
    CT_READ_VECTOR(files[i], &d, &n);
    snp_vek_info info;
    CT_ASSERT_OK(snp_vek_inspect(c, d, n, SNP_GEN_MILAN, &info, &err), &err);
    assert_int_equal(info.type, SNP_VEK_VCEK);
    assert_int_equal(info.hwid_len, 64);
    free(d);
  }
  snp_ctx_free(c);
}

static void test_genoa_json_evidence(void **state) {
  (void)state;
  uint8_t *b = NULL;
  size_t n = 0;
  ct_err err;
  CT_READ_VECTOR("snp/genoa-evidence-with-vcek.json", &b, &n);
  json_t *ev = NULL;
  CT_ASSERT_OK(ct_json_parse((const char *)b, n, 16, &ev, &err), &err);
  json_t *jr = json_object_get(ev, "attestation_report");
  uint8_t rd[64], hd[32];
  for (size_t i = 0; i < 64; i++) rd[i] = (uint8_t)json_integer_value(json_array_get(json_object_get(jr, "report_data"), i));
  for (size_t i = 0; i < 32; i++) hd[i] = (uint8_t)json_integer_value(json_array_get(json_object_get(jr, "host_data"), i));
  json_t *claims = NULL;
  CT_ASSERT_OK(run(NULL, ev, rd, 64, hd, 32, &claims, &err), &err);
  assert_int_equal(json_integer_value(json_object_get(claims, "reported_tcb_bootloader")), 10);
  assert_int_equal(json_integer_value(json_object_get(claims, "reported_tcb_snp")), 23);
  assert_int_equal(json_integer_value(json_object_get(claims, "reported_tcb_microcode")), 25);
  assert_int_equal(json_integer_value(json_object_get(claims, "policy_abi_major")), 0);
  assert_true(json_is_true(json_object_get(claims, "policy_smt_allowed")));
  assert_true(json_is_false(json_object_get(claims, "policy_debug_allowed")));
  json_decref(claims);
  snp_report r;
  CT_ASSERT_OK(snp_report_from_json(jr, &r, &err), &err);
  assert_int_equal(r.gen, SNP_GEN_GENOA);
  /* A changed byte of a signed field in the JSON form breaks the signature. */
  json_t *meas = json_object_get(jr, "measurement");
  json_int_t m0 = json_integer_value(json_array_get(meas, 0));
  json_array_set_new(meas, 0, json_integer(m0 ^ 1));
  expect_fail(NULL, ev, NULL, 0, "does not verify with the VCEK");
  json_array_set_new(meas, 0, json_integer(m0));
  /* The Genoa VCEK does not chain to Milan's roots: a report claiming Milan is refused. */
  json_object_set_new(jr, "cpuid_mod_id", json_integer(1));
  expect_fail(NULL, ev, NULL, 0, "does not chain to AMD's Milan ARK");
  json_object_set_new(jr, "cpuid_mod_id", json_integer(160));
  json_object_set_new(jr, "vmpl", json_integer(-1));
  expect_fail(NULL, ev, NULL, 0, "\"vmpl\" must be an integer");
  json_decref(ev);
  free(b);
}

static void test_tcb_prefix(void **state) {
  (void)state;
  char p[48];
  snp_tcb t = {.bootloader = 2, .tee = 0, .snp = 6, .microcode = 21};
  snp_tcb_prefix(&t, p, sizeof p);
  assert_string_equal(p, "bl02_tee00_snp06_ucode21");
  snp_tcb u = {.bootloader = 3, .tee = 1, .snp = 8, .microcode = 15, .fmc = 5, .has_fmc = true};
  snp_tcb_prefix(&u, p, sizeof p);
  assert_string_equal(p, "bl03_tee01_snp08_ucode15_fmc05");
  assert_int_equal(snp_gen_from_cpuid(0x19, 0x01), SNP_GEN_MILAN);
  assert_int_equal(snp_gen_from_cpuid(0x19, 0x11), SNP_GEN_GENOA);
  assert_int_equal(snp_gen_from_cpuid(0x19, 0xA0), SNP_GEN_GENOA);
  assert_int_equal(snp_gen_from_cpuid(0x1A, 0x02), SNP_GEN_TURIN);
  assert_int_equal(snp_gen_from_cpuid(0x17, 0x01), SNP_GEN_UNKNOWN);
}

static void write_file(const char *path, const uint8_t *d, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(d, 1, n, f), n);
  fclose(f);
}

static void test_offline_store(void **state) {
  (void)state;
  uint8_t *rep = NULL, *vcek = NULL;
  size_t rn = 0, vn = 0;
  ct_err err;
  genoa_raw(&rep, &rn, &vcek, &vn);
  char dir[] = "/tmp/snp-store-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char hw[129], path[512];
  ct_hex_into(rep + SNP_OFF_CHIP_ID, 64, hw);
  snprintf(path, sizeof path, "%s/vcek", dir);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/vcek/%s", dir, hw);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/vcek/%s/bl10_tee00_snp23_ucode25_vcek.der", dir, hw);
  write_file(path, vcek, vn);
  as_verifier_config cfg = {.snp_vcek_offline_dir = dir};
  json_t *ev = raw_evidence(rep, rn, NULL, NULL, 0);
  json_t *claims = NULL;
  CT_ASSERT_OK(run(&cfg, ev, NULL, 0, NULL, 0, &claims, &err), &err);
  json_decref(claims);
  unlink(path);
  expect_fail(&cfg, ev, NULL, 0, "not in the evidence or the offline store");
  /* The flat legacy name is the fallback. */
  snprintf(path, sizeof path, "%s/vcek/%s/vcek.der", dir, hw);
  write_file(path, vcek, vn);
  CT_ASSERT_OK(run(&cfg, ev, NULL, 0, NULL, 0, &claims, &err), &err);
  json_decref(claims);
  unlink(path);
  snprintf(path, sizeof path, "%s/vcek/%s", dir, hw);
  rmdir(path);
  snprintf(path, sizeof path, "%s/vcek", dir);
  rmdir(path);
  rmdir(dir);
  json_decref(ev);
  free(rep);
  free(vcek);
}

/* A local stand-in for AMD KDS: the first request gets 429 (Retry-After: 1), later ones the
 * VCEK; every request path is appended to a log. */
static const char kds_server_py[] =
    "import http.server,sys\n"
    "vcek=open(sys.argv[1],'rb').read(); log=sys.argv[3]; n=[0]\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "  def do_GET(self):\n"
    "    n[0]+=1\n"
    "    open(log,'a').write(self.path+'\\n')\n"
    "    if n[0]==1:\n"
    "      self.send_response(429); self.send_header('Retry-After','1'); self.end_headers(); return\n"
    "    self.send_response(200); self.send_header('Content-Length',str(len(vcek))); self.end_headers(); self.wfile.write(vcek)\n"
    "  def log_message(self,*a): pass\n"
    "s=http.server.HTTPServer(('127.0.0.1',0),H)\n"
    "open(sys.argv[2]+'.tmp','w').write(str(s.server_address[1])); import os; os.rename(sys.argv[2]+'.tmp',sys.argv[2])\n"
    "s.serve_forever()\n";

/* Starts the local KDS stand-in serving `vcek_path`; returns its port. */
static int start_kds(const char *vcek_path, const char *portf, const char *logf, pid_t *pid) {
  char *argv[] = {"/usr/bin/python3", "-c", (char *)kds_server_py, (char *)vcek_path,
                  (char *)portf, (char *)logf, NULL};
  assert_int_equal(posix_spawn(pid, argv[0], NULL, NULL, argv, environ), 0);
  int port = 0;
  for (int i = 0; i < 100 && !port; i++) {
    FILE *f = fopen(portf, "r");
    if (f) { if (fscanf(f, "%d", &port) != 1) port = 0; fclose(f); }
    if (!port) usleep(50000);
  }
  assert_true(port > 0);
  return port;
}

static void test_kds_fetch_with_429_and_cache(void **state) {
  (void)state;
  uint8_t *rep = NULL, *vcek = NULL;
  size_t rn = 0, vn = 0;
  ct_err err;
  genoa_raw(&rep, &rn, &vcek, &vn);
  char dir[] = "/tmp/snp-kds-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char vpath[512], portf[512], logf[512], cache[512];
  snprintf(vpath, sizeof vpath, "%s/served-vcek.der", dir);
  write_file(vpath, vcek, vn);
  snprintf(portf, sizeof portf, "%s/port", dir);
  snprintf(logf, sizeof logf, "%s/requests.log", dir);
  snprintf(cache, sizeof cache, "%s/cache", dir);
  pid_t pid;
  int port = start_kds(vpath, portf, logf, &pid);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
  as_verifier_config cfg = {.snp_kds_base_url = url, .snp_kds_cache_dir = cache, .remote_wait_ms = 30000};
  json_t *ev = raw_evidence(rep, rn, NULL, NULL, 0);
  json_t *claims = NULL;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  CT_ASSERT_OK(run(&cfg, ev, NULL, 0, NULL, 0, &claims, &err), &err);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  json_decref(claims);
  /* The 429 was honoured: the retry came after the advertised second. */
  long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  assert_true(ms >= 900);
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  uint8_t *log = NULL;
  size_t ln = 0;
  CT_ASSERT_OK(ct_file_read(logf, 1 << 16, &log, &ln, &err), &err);
  char hw[129], want[512];
  ct_hex_into(rep + SNP_OFF_CHIP_ID, 64, hw);
  snprintf(want, sizeof want, "/vcek/v1/Genoa/%s?blSPL=10&teeSPL=00&snpSPL=23&ucodeSPL=25\n", hw);
  size_t wl = strlen(want);
  assert_int_equal(ln, 2 * wl);
  assert_memory_equal(log, want, wl);
  assert_memory_equal(log + wl, want, wl);
  free(log);
  /* The server is gone; the on-disk cache answers. */
  CT_ASSERT_OK(run(&cfg, ev, NULL, 0, NULL, 0, &claims, &err), &err);
  json_decref(claims);
  char cached[1024];
  snprintf(cached, sizeof cached, "%s/vcek/%s/bl10_tee00_snp23_ucode25_vcek.der", cache, hw);
  uint8_t *cd = NULL;
  size_t cn = 0;
  CT_ASSERT_OK(ct_file_read(cached, 1 << 16, &cd, &cn, &err), &err);
  assert_int_equal(cn, vn);
  assert_memory_equal(cd, vcek, vn);
  free(cd);
  /* Without the cache and with KDS down, the failure names the request. */
  as_verifier_config down = {.snp_kds_base_url = url, .remote_wait_ms = 30000};
  expect_fail(&down, ev, NULL, 0, "AMD KDS request http://127.0.0.1");
  unlink(cached);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
  json_decref(ev);
  free(rep);
  free(vcek);
}

/* A Turin report: the KDS request names the chip by the first 8 bytes of CHIP_ID and carries
 * the FMC SPL first; the answer must chain to the Turin roots. */
static void test_kds_turin_request(void **state) {
  (void)state;
  char vpath[4096];
  if (!ct_test_vector_path("snp/test-vcek.der", vpath, sizeof vpath)) skip();
  uint8_t raw[SNP_REPORT_SIZE] = {0};
  raw[0] = 3;             /* version */
  raw[0x34] = 1;          /* ECDSA P-384 */
  raw[0x188] = 0x1A;      /* family: Turin */
  raw[0x189] = 0x02;
  const uint8_t tcb[8] = {5, 3, 1, 8, 0, 0, 0, 15}; /* fmc, bl, tee, snp, -, -, -, ucode */
  memcpy(raw + 0x180, tcb, 8);
  for (int i = 0; i < 64; i++) raw[SNP_OFF_CHIP_ID + i] = (uint8_t)(0xa0 + i);
  ct_err err;
  snp_report r;
  CT_ASSERT_OK(snp_report_parse(raw, sizeof raw, &r, &err), &err);
  assert_int_equal(r.gen, SNP_GEN_TURIN);
  assert_int_equal(r.reported_tcb.fmc, 5);
  assert_int_equal(r.reported_tcb.microcode, 15);
  char dir[] = "/tmp/snp-turin-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char portf[512], logf[512], url[64];
  snprintf(portf, sizeof portf, "%s/port", dir);
  snprintf(logf, sizeof logf, "%s/requests.log", dir);
  pid_t pid;
  int port = start_kds(vpath, portf, logf, &pid);
  snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
  as_verifier_config cfg = {.snp_kds_base_url = url, .remote_wait_ms = 30000};
  snp_ctx *c = NULL;
  CT_ASSERT_OK(snp_ctx_new(&cfg, &c, &err), &err);
  uint8_t *der = NULL;
  size_t len = 0;
  CT_ASSERT_OK(snp_vcek_find(c, &r, r.gen, &der, &len, &err), &err);
  /* The stand-in serves a Milan VCEK: the Turin roots refuse it. */
  EVP_PKEY *k = NULL;
  snp_vek_info info;
  assert_int_not_equal(snp_vek_verify(c, der, len, r.gen, SNP_VEK_ANY, NULL, 0, &k, &info, &err), CT_OK);
  assert_non_null(strstr(err.msg, "does not chain to AMD's Turin ARK"));
  free(der);
  snp_ctx_free(c);
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  uint8_t *log = NULL;
  size_t ln = 0;
  CT_ASSERT_OK(ct_file_read(logf, 1 << 16, &log, &ln, &err), &err);
  const char *want = "/vcek/v1/Turin/a0a1a2a3a4a5a6a7?fmcSPL=05&blSPL=03&teeSPL=01&snpSPL=08&ucodeSPL=15\n";
  assert_true(ln >= strlen(want));
  assert_memory_equal(log + ln - strlen(want), want, strlen(want));
  free(log);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

typedef struct thr_arg {
  const as_verifier *v;
  void *state;
  const json_t *ev;
  int ok;
} thr_arg;

static void *thr_run(void *p) {
  thr_arg *a = p;
  for (int i = 0; i < 20; i++) {
    as_verify_request req = {.tee = "snp", .evidence = a->ev};
    json_t *claims = NULL;
    ct_err err;
    if (a->v->verify(a->state, &req, &claims, &err) == CT_OK) a->ok++;
    json_decref(claims);
  }
  return NULL;
}

/* Several threads verify on one verifier state at once (shared VEK cache). */
static void test_concurrent_verify(void **state) {
  (void)state;
  uint8_t *b = NULL;
  size_t n = 0;
  ct_err err;
  CT_READ_VECTOR("snp/genoa-evidence-with-vcek.json", &b, &n);
  json_t *ev = NULL;
  CT_ASSERT_OK(ct_json_parse((const char *)b, n, 16, &ev, &err), &err);
  free(b);
  const as_verifier *v = verifier();
  void *st = NULL;
  CT_ASSERT_OK(v->create(NULL, &st, &err), &err);
  pthread_t t[4];
  thr_arg a[4];
  for (int i = 0; i < 4; i++) {
    a[i] = (thr_arg){.v = v, .state = st, .ev = ev};
    assert_int_equal(pthread_create(&t[i], NULL, thr_run, &a[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(a[i].ok, 20);
  }
  v->destroy(st);
  json_decref(ev);
}

/* Appends {cert_type, data} with the DER of the idx-th certificate (0 ASK, 1 ARK, 2 ASVK) of a
 * pinned PEM bundle to the evidence's cert_chain. */
static void add_pinned(json_t *ev, const char *pem, int idx, const char *type) {
  BIO *bio = BIO_new_mem_buf(pem, -1);
  X509 *x = NULL;
  for (int i = 0; i <= idx; i++) {
    X509_free(x);
    x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
  }
  BIO_free(bio);
  assert_non_null(x);
  unsigned char *der = NULL;
  int n = i2d_X509(x, &der);
  X509_free(x);
  json_t *data = json_array();
  for (int i = 0; i < n; i++) json_array_append_new(data, json_integer(der[i]));
  OPENSSL_free(der);
  json_array_insert_new(json_object_get(ev, "cert_chain"), 0,
                        json_pack("{s:s, s:o}", "cert_type", type, "data", data));
}

/* A cert_chain carrying AMD's ARK and ASK (as the firmware's certificate table does) verifies;
 * an ARK of another generation is refused. */
static void test_chain_with_ark_ask(void **state) {
  (void)state;
  uint8_t *b = NULL;
  size_t n = 0;
  ct_err err;
  CT_READ_VECTOR("snp/genoa-evidence-with-vcek.json", &b, &n);
  json_t *ev = NULL;
  CT_ASSERT_OK(ct_json_parse((const char *)b, n, 16, &ev, &err), &err);
  free(b);
  add_pinned(ev, snp_amd_roots_genoa_pem, 0, "ASK");
  add_pinned(ev, snp_amd_roots_genoa_pem, 1, "ARK");
  json_t *claims = NULL;
  CT_ASSERT_OK(run(NULL, ev, NULL, 0, NULL, 0, &claims, &err), &err);
  json_decref(claims);
  add_pinned(ev, snp_amd_roots_milan_pem, 1, "ARK");
  expect_fail(NULL, ev, NULL, 0, "the ARK it carries is not AMD's pinned Genoa ARK");
  json_decref(ev);

  /* As upstream: an ASK in the chain must verify even though the pinned one would (a Genoa VCEK
   * with Milan's ASK is inconsistent evidence); a chain must carry a VEK (an empty one too). */
  CT_READ_VECTOR("snp/genoa-evidence-with-vcek.json", &b, &n);
  CT_ASSERT_OK(ct_json_parse((const char *)b, n, 16, &ev, &err), &err);
  free(b);
  json_t *vek = json_incref(json_array_get(json_object_get(ev, "cert_chain"), 0));
  add_pinned(ev, snp_amd_roots_milan_pem, 0, "ASK");
  expect_fail(NULL, ev, NULL, 0, "the ASK it carries is not signed by AMD's Genoa ARK");
  json_object_set_new(ev, "cert_chain", json_array());
  expect_fail(NULL, ev, NULL, 0, "a cert chain, if provided, must include a VCEK or VLEK");
  add_pinned(ev, snp_amd_roots_genoa_pem, 0, "ASK");
  expect_fail(NULL, ev, NULL, 0, "a cert chain, if provided, must include a VCEK or VLEK");
  /* Genoa's ASVK given as the ASK of a VCEK: signed by the right ARK, but it does not sign it. */
  json_object_set_new(ev, "cert_chain", json_pack("[O]", vek));
  add_pinned(ev, snp_amd_roots_genoa_pem, 2, "ASK");
  expect_fail(NULL, ev, NULL, 0, "the ASK it carries does not sign the VEK");
  json_decref(vek);
  json_decref(ev);
}

/* Runs the offline verify command; returns its exit code and what it printed. */
static int cli(char **argv, int argc, char **out, char **errs) {
  size_t ol = 0, el = 0;
  FILE *o = open_memstream(out, &ol), *e = open_memstream(errs, &el);
  int rc = as_verify_cli_run(argc, argv, o, e);
  fclose(o);
  fclose(e);
  return rc;
}

static void test_cli(void **state) {
  (void)state;
  uint8_t *rep = NULL, *vcek = NULL;
  size_t rn = 0, vn = 0;
  ct_err err;
  genoa_raw(&rep, &rn, &vcek, &vn);
  char dir[] = "/tmp/snp-cli-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char evp[512], vp[512], rtp[512], idp[512];
  snprintf(evp, sizeof evp, "%s/report.bin", dir);
  snprintf(vp, sizeof vp, "%s/vcek.der", dir);
  snprintf(rtp, sizeof rtp, "%s/runtime.json", dir);
  snprintf(idp, sizeof idp, "%s/initdata.toml", dir);
  write_file(evp, rep, rn);
  write_file(vp, vcek, vn);
  const char *rt = "{\"b\":1,\"a\":\"test\",\"c\":{\"d\":\"e\"}}";
  write_file(rtp, (const uint8_t *)rt, strlen(rt));
  const char *toml = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"a.txt\" = \"hi\"\n";
  write_file(idp, (const uint8_t *)toml, strlen(toml));
  char rd_hex[129];
  ct_hex_into(rep + SNP_OFF_REPORT_DATA, 64, rd_hex);
  char *out = NULL, *errs = NULL;

  char *ok[] = {"verify", "--tee", "snp", "--evidence", evp, "--report-data", rd_hex, "--collateral", dir};
  assert_int_equal(cli(ok, 9, &out, &errs), 0);
  assert_non_null(strstr(out, "\"chip_id\": \"371c55d6d15c"));
  assert_non_null(strstr(out, "\"reported_tcb_microcode\": 25"));
  free(out), free(errs);

  /* --runtime-data: SHA-384 of the JCS form is the expected report data, named in the refusal. */
  char *rtd[] = {"verify", "--tee", "snp", "--evidence", evp, "--runtime-data", rtp, "--collateral", dir};
  assert_int_equal(cli(rtd, 9, &out, &errs), 1);
  assert_non_null(strstr(errs, "REPORT_DATA mismatch: expected e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c4597480a186427c813ca941da78870c3"));
  free(out), free(errs);

  /* --init-data: the document's digest is compared with HOST_DATA. */
  uint8_t d[32];
  ct_sha256(toml, strlen(toml), d);
  char dh[65], needle[200];
  ct_hex_into(d, 32, dh);
  snprintf(needle, sizeof needle, "HOST_DATA (init-data digest) mismatch: expected %s", dh);
  char *idd[] = {"verify", "--tee", "snp", "--evidence", evp, "--report-data", rd_hex, "--init-data", idp, "--collateral", dir};
  assert_int_equal(cli(idd, 11, &out, &errs), 1);
  assert_non_null(strstr(errs, needle));
  free(out), free(errs);

  /* Without collateral the VCEK is missing; usage errors exit 2. */
  char *nocol[] = {"verify", "--tee", "snp", "--evidence", evp, "--report-data", rd_hex};
  assert_int_equal(cli(nocol, 7, &out, &errs), 1);
  assert_non_null(strstr(errs, "AMD KDS is not configured"));
  free(out), free(errs);
  char *bad[] = {"verify", "--tee", "snp", "--evidence", evp};
  assert_int_equal(cli(bad, 5, &out, &errs), 2);
  free(out), free(errs);
  char *badtee[] = {"verify", "--tee", "nope", "--evidence", evp, "--report-data", "00"};
  assert_int_equal(cli(badtee, 7, &out, &errs), 2);
  assert_non_null(strstr(errs, "no verifier for TEE \"nope\""));
  free(out), free(errs);

  unlink(evp), unlink(vp), unlink(rtp), unlink(idp);
  rmdir(dir);
  (void)err;
  free(rep);
  free(vcek);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vcek_report_golden),
      cmocka_unit_test(test_bit_flips),
      cmocka_unit_test(test_vlek),
      cmocka_unit_test(test_field_vceks_parse),
      cmocka_unit_test(test_genoa_json_evidence),
      cmocka_unit_test(test_tcb_prefix),
      cmocka_unit_test(test_offline_store),
      cmocka_unit_test(test_kds_fetch_with_429_and_cache),
      cmocka_unit_test(test_cli),
      cmocka_unit_test(test_kds_turin_request),
      cmocka_unit_test(test_concurrent_verify),
      cmocka_unit_test(test_chain_with_ark_ask),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
