/*
 * Attester tests against fixture trees (configfs-tsm entries pre-populated with real hardware
 * reports from ../shared/vectors); no TEE hardware and no network needed.
 */
#include "ct_test_util.h"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_json.h"
#include "guest_attester.h"

static char g_root[256];

static void mkdirs(const char *rel) {
  char p[1024];
  snprintf(p, sizeof p, "%s%s", g_root, rel);
  for (char *s = p + strlen(g_root) + 1; *s; s++)
    if (*s == '/') {
      *s = 0;
      mkdir(p, 0700);
      *s = '/';
    }
  mkdir(p, 0700);
}

static void put(const char *rel, const void *data, size_t len) {
  char p[1024];
  snprintf(p, sizeof p, "%s%s", g_root, rel);
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  fclose(f);
}

static void get(const char *rel, uint8_t **data, size_t *len) {
  char p[1024];
  ct_err err;
  snprintf(p, sizeof p, "%s%s", g_root, rel);
  CT_ASSERT_OK(ct_file_read(p, 1 << 20, data, len, &err), &err);
}

static int setup(void **state) {
  (void)state;
  snprintf(g_root, sizeof g_root, "/tmp/guest-attester-XXXXXX");
  assert_non_null(mkdtemp(g_root));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
  assert_int_equal(system(cmd), 0);
  return 0;
}

static guest_cfg fixture_cfg(void) {
  guest_cfg cfg = {.root = g_root, .tsm_entry = "e1", .az_report_delay_ms = 0};
  return cfg;
}

static void test_names(void **state) {
  (void)state;
  ct_err err;
  guest_tee t;
  const char *names[] = {"sample", "snp", "tdx", "az-snp-vtpm", "az-tdx-vtpm", "tpm"};
  for (size_t i = 0; i < 6; i++) {
    CT_ASSERT_OK(guest_tee_parse(names[i], &t, &err), &err);
    assert_string_equal(guest_tee_name(t), names[i]);
  }
  assert_int_equal(guest_tee_parse("sgx-bogus", &t, &err), CT_EUNSUPPORTED);
}

static void test_sample_evidence(void **state) {
  (void)state;
  ct_err err;
  uint8_t rd[48];
  for (int i = 0; i < 48; i++) rd[i] = (uint8_t)i;
  json_t *ev = NULL;
  CT_ASSERT_OK(guest_get_evidence(NULL, GUEST_TEE_SAMPLE, rd, sizeof rd, &ev, &err), &err);
  char *s = NULL;
  CT_ASSERT_OK(ct_json_dump(ev, &s, &err), &err);
  char *b64 = NULL;
  CT_ASSERT_OK(ct_b64_encode(CT_B64_STD, rd, sizeof rd, &b64, &err), &err);
  char want[256];
  snprintf(want, sizeof want, "{\"report_data\":\"%s\",\"svn\":\"1\"}", b64);
  assert_string_equal(s, want);
  free(s);
  free(b64);
  json_decref(ev);
  uint8_t big[65] = {0};
  assert_int_equal(guest_get_evidence(NULL, GUEST_TEE_SAMPLE, big, sizeof big, &ev, &err), CT_EINVAL);
}

static void test_detect_never_falls_back_to_sample(void **state) {
  (void)state;
  ct_err err;
  guest_cfg cfg = fixture_cfg();
  guest_tee t = GUEST_TEE_NONE;
  assert_int_equal(guest_tee_detect(&cfg, &t, &err), CT_ENOTFOUND);
  assert_non_null(strstr(err.msg, "--tee sample"));
  mkdirs("/sys/devices/platform/sev-guest");
  CT_ASSERT_OK(guest_tee_detect(&cfg, &t, &err), &err);
  assert_int_equal(t, GUEST_TEE_SNP);
  mkdirs("/dev");
  put("/dev/tdx_guest", "", 0);
  CT_ASSERT_OK(guest_tee_detect(&cfg, &t, &err), &err);
  assert_int_equal(t, GUEST_TEE_TDX);
}

/* Builds an SNP extended-report certificate table holding one VCEK. */
static uint8_t *cert_table(const uint8_t *vcek, size_t len, size_t *out_len) {
  static const uint8_t guid[16] = {0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64,
                                   0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd};
  size_t total = 48 + len;
  uint8_t *t = calloc(1, total);
  memcpy(t, guid, 16);
  uint32_t off = 48, l = (uint32_t)len;
  memcpy(t + 16, &off, 4);
  memcpy(t + 20, &l, 4);
  memcpy(t + 48, vcek, len);
  *out_len = total;
  return t;
}

static void json_bytes(const json_t *a, uint8_t *out, size_t n) {
  assert_true(json_is_array(a));
  assert_int_equal(json_array_size(a), n);
  for (size_t i = 0; i < n; i++) out[i] = (uint8_t)json_integer_value(json_array_get(a, i));
}

/* Verifies the report signature from the JSON form (r, s little-endian) against the raw bytes,
 * proving the serde mapping of the signature and the certificate table. */
static int snp_json_signature_ok(const json_t *ev, const uint8_t *raw) {
  const json_t *rep = json_object_get(ev, "attestation_report");
  const json_t *sig = json_object_get(rep, "signature");
  uint8_t r[72], s[72], rb[48], sb[48];
  json_bytes(json_object_get(sig, "r"), r, 72);
  json_bytes(json_object_get(sig, "s"), s, 72);
  for (int i = 0; i < 48; i++) {
    rb[i] = r[47 - i];
    sb[i] = s[47 - i];
  }
  const json_t *c0 = json_array_get(json_object_get(ev, "cert_chain"), 0);
  assert_string_equal(json_string_value(json_object_get(c0, "cert_type")), "VCEK");
  size_t n = json_array_size(json_object_get(c0, "data"));
  uint8_t *der = malloc(n);
  json_bytes(json_object_get(c0, "data"), der, n);
  const uint8_t *p = der;
  X509 *x = d2i_X509(NULL, &p, (long)n);
  assert_non_null(x);
  EVP_PKEY *pk = X509_get0_pubkey(x);
  ECDSA_SIG *es = ECDSA_SIG_new();
  ECDSA_SIG_set0(es, BN_bin2bn(rb, 48, NULL), BN_bin2bn(sb, 48, NULL));
  unsigned char *dsig = NULL;
  int dlen = i2d_ECDSA_SIG(es, &dsig);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = EVP_DigestVerifyInit(md, NULL, EVP_sha384(), NULL, pk) == 1 &&
           EVP_DigestVerify(md, dsig, (size_t)dlen, raw, 0x2A0) == 1;
  EVP_MD_CTX_free(md);
  OPENSSL_free(dsig);
  ECDSA_SIG_free(es);
  X509_free(x);
  free(der);
  return ok;
}

static void test_snp_tsm_evidence_real_report(void **state) {
  (void)state;
  uint8_t *report = NULL, *vcek = NULL;
  size_t rlen = 0, vlen = 0;
  CT_READ_VECTOR("snp/test-report.bin", &report, &rlen);
  CT_READ_VECTOR("snp/test-vcek.der", &vcek, &vlen);
  size_t tlen = 0;
  uint8_t *table = cert_table(vcek, vlen, &tlen);
  mkdirs("/sys/kernel/config/tsm/report/e1");
  put("/sys/kernel/config/tsm/report/e1/provider", "sev_guest\n", 10);
  put("/sys/kernel/config/tsm/report/e1/generation", "1\n", 2);
  put("/sys/kernel/config/tsm/report/e1/outblob", report, rlen);
  put("/sys/kernel/config/tsm/report/e1/auxblob", table, tlen);
  guest_cfg cfg = fixture_cfg();
  ct_err err;
  uint8_t rd[48];
  memset(rd, 0xab, sizeof rd);
  json_t *ev = NULL;
  CT_ASSERT_OK(guest_get_evidence(&cfg, GUEST_TEE_SNP, rd, sizeof rd, &ev, &err), &err);
  /* The inblob is the report data zero-padded to 64 bytes; VMPL 0 requested. */
  uint8_t *in = NULL, *priv = NULL;
  size_t inlen = 0, plen = 0;
  get("/sys/kernel/config/tsm/report/e1/inblob", &in, &inlen);
  assert_int_equal(inlen, 64);
  assert_memory_equal(in, rd, 48);
  for (int i = 48; i < 64; i++) assert_int_equal(in[i], 0);
  get("/sys/kernel/config/tsm/report/e1/privlevel", &priv, &plen);
  assert_string_equal((char *)priv, "0\n");
  const json_t *rep = json_object_get(ev, "attestation_report");
  assert_int_equal(json_integer_value(json_object_get(rep, "version")), 2);
  assert_true(json_is_null(json_object_get(rep, "cpuid_fam_id")));
  assert_true(json_is_null(json_object_get(json_object_get(rep, "reported_tcb"), "fmc")));
  uint8_t md[48];
  json_bytes(json_object_get(rep, "measurement"), md, 48);
  assert_memory_equal(md, report + 0x90, 48);
  assert_true(snp_json_signature_ok(ev, report));
  /* One flipped bit in the signed part and the same JSON no longer verifies. */
  report[42] ^= 1;
  assert_false(snp_json_signature_ok(ev, report));
  json_decref(ev);
  free(in);
  free(priv);

  /* A second writer (generation 2) and a wrong provider are refused. */
  put("/sys/kernel/config/tsm/report/e1/generation", "2\n", 2);
  assert_int_equal(guest_get_evidence(&cfg, GUEST_TEE_SNP, rd, sizeof rd, &ev, &err), CT_EIO);
  assert_non_null(strstr(err.msg, "generation"));
  put("/sys/kernel/config/tsm/report/e1/generation", "1\n", 2);
  put("/sys/kernel/config/tsm/report/e1/provider", "tdx_guest\n", 10);
  assert_int_equal(guest_get_evidence(&cfg, GUEST_TEE_SNP, rd, sizeof rd, &ev, &err), CT_ENOTFOUND);
  free(report);
  free(vcek);
  free(table);
}

/* Inverse of the serde mapping, for the round-trip check against Trustee's own JSON. */
static void put_bytes(uint8_t *dst, const json_t *a, size_t n) { json_bytes(a, dst, n); }
static void put_le(uint8_t *dst, uint64_t v, int n) {
  for (int i = 0; i < n; i++) dst[i] = (uint8_t)(v >> (8 * i));
}
static void put_tcb(uint8_t *dst, const json_t *t) {
  memset(dst, 0, 8);
  dst[0] = (uint8_t)json_integer_value(json_object_get(t, "bootloader"));
  dst[1] = (uint8_t)json_integer_value(json_object_get(t, "tee"));
  dst[6] = (uint8_t)json_integer_value(json_object_get(t, "snp"));
  dst[7] = (uint8_t)json_integer_value(json_object_get(t, "microcode"));
}

static void test_snp_json_matches_trustee_vector(void **state) {
  (void)state;
  uint8_t *data = NULL;
  size_t len = 0;
  CT_READ_VECTOR("snp/genoa-evidence-with-vcek.json", &data, &len);
  ct_err err;
  json_t *ev = NULL;
  CT_ASSERT_OK(ct_json_parse((char *)data, len, 16, &ev, &err), &err);
  const json_t *j = json_object_get(ev, "attestation_report");
  uint8_t r[1184] = {0};
#define I(k) json_integer_value(json_object_get(j, k))
#define O(k) json_object_get(j, k)
  put_le(r, (uint64_t)I("version"), 4);
  put_le(r + 4, (uint64_t)I("guest_svn"), 4);
  put_le(r + 8, (uint64_t)I("policy"), 8);
  put_bytes(r + 0x10, O("family_id"), 16);
  put_bytes(r + 0x20, O("image_id"), 16);
  put_le(r + 0x30, (uint64_t)I("vmpl"), 4);
  put_le(r + 0x34, (uint64_t)I("sig_algo"), 4);
  put_tcb(r + 0x38, O("current_tcb"));
  put_le(r + 0x40, (uint64_t)I("plat_info"), 8);
  put_le(r + 0x48, (uint64_t)I("key_info"), 4);
  put_bytes(r + 0x50, O("report_data"), 64);
  put_bytes(r + 0x90, O("measurement"), 48);
  put_bytes(r + 0xC0, O("host_data"), 32);
  put_bytes(r + 0xE0, O("id_key_digest"), 48);
  put_bytes(r + 0x110, O("author_key_digest"), 48);
  put_bytes(r + 0x140, O("report_id"), 32);
  put_bytes(r + 0x160, O("report_id_ma"), 32);
  put_tcb(r + 0x180, O("reported_tcb"));
  r[0x188] = (uint8_t)I("cpuid_fam_id");
  r[0x189] = (uint8_t)I("cpuid_mod_id");
  r[0x18A] = (uint8_t)I("cpuid_step");
  put_bytes(r + 0x1A0, O("chip_id"), 64);
  put_tcb(r + 0x1E0, O("committed_tcb"));
  const json_t *cur = O("current"), *com = O("committed");
  r[0x1E8] = (uint8_t)json_integer_value(json_object_get(cur, "build"));
  r[0x1E9] = (uint8_t)json_integer_value(json_object_get(cur, "minor"));
  r[0x1EA] = (uint8_t)json_integer_value(json_object_get(cur, "major"));
  r[0x1EC] = (uint8_t)json_integer_value(json_object_get(com, "build"));
  r[0x1ED] = (uint8_t)json_integer_value(json_object_get(com, "minor"));
  r[0x1EE] = (uint8_t)json_integer_value(json_object_get(com, "major"));
  put_tcb(r + 0x1F0, O("launch_tcb"));
  put_bytes(r + 0x2A0, json_object_get(O("signature"), "r"), 72);
  put_bytes(r + 0x2A0 + 72, json_object_get(O("signature"), "s"), 72);
#undef I
#undef O
  json_t *mine = NULL;
  CT_ASSERT_OK(guest_snp_report_to_json(r, sizeof r, &mine, &err), &err);
  /* Trustee's vector predates the v5 mitigation-vector members; ours add them as null. */
  assert_true(json_is_null(json_object_get(mine, "launch_mit_vector")));
  json_object_del(mine, "launch_mit_vector");
  json_object_del(mine, "current_mit_vector");
  assert_true(json_equal(mine, j));
  /* And the raw bytes rebuilt from our JSON carry a valid VCEK signature. */
  json_t *wrapped = json_pack("{s:O,s:O}", "attestation_report", mine, "cert_chain",
                              json_object_get(ev, "cert_chain"));
  assert_true(snp_json_signature_ok(wrapped, r));
  json_decref(wrapped);
  json_decref(mine);
  json_decref(ev);
  free(data);
}

static void test_snp_cert_table_bounds(void **state) {
  (void)state;
  ct_err err;
  json_t *out = NULL;
  uint8_t t[72] = {1};
  uint32_t off = 48, len = 100;
  memcpy(t + 16, &off, 4);
  memcpy(t + 20, &len, 4);
  assert_int_equal(guest_snp_cert_table_to_json(t, sizeof t, &out, &err), CT_EINVAL);
  assert_int_equal(guest_snp_cert_table_to_json(t, 20, &out, &err), CT_EINVAL);
  len = 24;
  memcpy(t + 20, &len, 4);
  CT_ASSERT_OK(guest_snp_cert_table_to_json(t, sizeof t, &out, &err), &err);
  assert_int_equal(json_array_size(out), 1);
  assert_non_null(json_object_get(json_object_get(json_array_get(out, 0), "cert_type"), "OTHER"));
  json_decref(out);
  uint8_t r[1184] = {9};
  assert_int_equal(guest_snp_report_to_json(r, sizeof r, &out, &err), CT_EUNSUPPORTED);
  assert_int_equal(guest_snp_report_to_json(r, 100, &out, &err), CT_EINVAL);
}

static void test_tdx_tsm_evidence_and_mrconfigid(void **state) {
  (void)state;
  uint8_t *quote = NULL, *ccel = NULL;
  size_t qlen = 0, clen = 0;
  CT_READ_VECTOR("tdx/tdx_quote_4.dat", &quote, &qlen);
  CT_READ_VECTOR("tdx/CCEL_data", &ccel, &clen);
  mkdirs("/sys/kernel/config/tsm/report/e1");
  mkdirs("/sys/firmware/acpi/tables/data");
  put("/sys/kernel/config/tsm/report/e1/provider", "tdx_guest\n", 10);
  put("/sys/kernel/config/tsm/report/e1/generation", "1\n", 2);
  put("/sys/kernel/config/tsm/report/e1/outblob", quote, qlen);
  put("/sys/firmware/acpi/tables/data/CCEL", ccel, clen);
  guest_cfg cfg = fixture_cfg();
  ct_err err;
  uint8_t rd[48];
  memset(rd, 0x5a, sizeof rd);
  json_t *ev = NULL;
  CT_ASSERT_OK(guest_get_evidence(&cfg, GUEST_TEE_TDX, rd, sizeof rd, &ev, &err), &err);
  const char *q64 = json_string_value(json_object_get(ev, "quote"));
  uint8_t *q = NULL;
  size_t n = 0;
  CT_ASSERT_OK(ct_b64_decode(CT_B64_STD, q64, strlen(q64), &q, &n, &err), &err);
  assert_int_equal(n, qlen);
  assert_memory_equal(q, quote, qlen);
  free(q);
  /* cc_eventlog: the CCEL up to its end marker, then an 8-byte all-ones end flag. */
  const char *e64 = json_string_value(json_object_get(ev, "cc_eventlog"));
  CT_ASSERT_OK(ct_b64_decode(CT_B64_STD, e64, strlen(e64), &q, &n, &err), &err);
  size_t keep = 0;
  CT_ASSERT_OK(guest_tdx_trim_ccel(ccel, clen, &keep, &err), &err);
  assert_true(keep > 1000 && keep < clen);
  assert_int_equal(n, keep + 8);
  assert_memory_equal(q, ccel, keep);
  for (size_t i = keep; i < n; i++) assert_int_equal(q[i], 0xff);
  free(q);
  json_decref(ev);
  uint8_t *in = NULL;
  size_t inlen = 0;
  get("/sys/kernel/config/tsm/report/e1/inblob", &in, &inlen);
  assert_int_equal(inlen, 64);
  assert_memory_equal(in, rd, 48);
  free(in);
  /* MRCONFIGID of the vector quote (offset 48 + 184) binds; any other digest is denied. */
  CT_ASSERT_OK(guest_bind_init_data(&cfg, GUEST_TEE_TDX, quote + 232, 48, &err), &err);
  uint8_t other[32] = {1};
  assert_int_equal(guest_bind_init_data(&cfg, GUEST_TEE_TDX, other, 32, &err), CT_EDENIED);
  /* An empty outblob (broken quote service) is a clear error. */
  put("/sys/kernel/config/tsm/report/e1/outblob", "", 0);
  assert_int_equal(guest_get_evidence(&cfg, GUEST_TEE_TDX, rd, sizeof rd, &ev, &err), CT_EIO);
  assert_non_null(strstr(err.msg, "empty outblob"));
  free(quote);
  free(ccel);
}

/* A runtime measurement on TDX: one TCG2 entry in the AAEL, RTMR3 extended with its SHA-384, and
 * the entry appended to the CCEL in the evidence where a CCEL parser finds it. */
static void test_tdx_runtime_measurement(void **state) {
  (void)state;
  uint8_t *quote = NULL, *ccel = NULL;
  size_t qlen = 0, clen = 0;
  CT_READ_VECTOR("tdx/tdx_quote_4.dat", &quote, &qlen);
  CT_READ_VECTOR("tdx/CCEL_data", &ccel, &clen);
  mkdirs("/sys/kernel/config/tsm/report/e1");
  mkdirs("/sys/firmware/acpi/tables/data");
  mkdirs("/sys/class/misc/tdx_guest/measurements");
  put("/sys/kernel/config/tsm/report/e1/provider", "tdx_guest\n", 10);
  put("/sys/kernel/config/tsm/report/e1/generation", "1\n", 2);
  put("/sys/kernel/config/tsm/report/e1/outblob", quote, qlen);
  put("/sys/firmware/acpi/tables/data/CCEL", ccel, clen);
  put("/sys/class/misc/tdx_guest/measurements/rtmr3:sha384", "", 0);
  char logpath[512];
  snprintf(logpath, sizeof logpath, "%s/run/attestation-agent/eventlog", g_root);
  guest_cfg cfg = fixture_cfg();
  ct_err err;
  /* Disabled unless an event log is configured; sample has no registers. */
  assert_int_equal(guest_runtime_measure(&cfg, GUEST_TEE_TDX, 17, "d", "o", "c", &err), CT_EUNSUPPORTED);
  cfg.eventlog_path = logpath;
  assert_int_equal(guest_runtime_measure(&cfg, GUEST_TEE_SAMPLE, 17, "d", "o", "c", &err),
                   CT_EUNSUPPORTED);
  assert_int_equal(guest_runtime_measure(&cfg, GUEST_TEE_TDX, 17, "two words", "o", "c", &err), CT_EINVAL);
  assert_int_equal(guest_runtime_measure(&cfg, GUEST_TEE_TDX, 17, "d", "o", "a\nb", &err), CT_EINVAL);
  const char *content = "{\"image\":\"docker.io/library/busybox:latest\",\"digest\":\"sha256:abc\"}";
  CT_ASSERT_OK(guest_runtime_measure(&cfg, GUEST_TEE_TDX, 17, "github.com/confidential-containers",
                                     "PullImage", content, &err), &err);
  /* The entry: MR index 4 (RTMR3 + 1), EV_EVENT_TAG, one SHA-384 digest, tagged event. */
  char text[256];
  snprintf(text, sizeof text, "github.com/confidential-containers PullImage %s", content);
  size_t tl = strlen(text);
  uint8_t tagged[300];
  memcpy(tagged, "LEAA", 4); /* 0x4141454c little-endian */
  uint32_t l32 = (uint32_t)tl;
  memcpy(tagged + 4, &l32, 4);
  memcpy(tagged + 8, text, tl);
  uint8_t d384[48];
  ct_sha384(tagged, tl + 8, d384);
  uint8_t *log = NULL, *rtmr = NULL;
  size_t loglen = 0, rlen = 0;
  CT_ASSERT_OK(ct_file_read(logpath, 1 << 20, &log, &loglen, &err), &err);
  assert_int_equal(loglen, 4 + 4 + 4 + 2 + 48 + 4 + tl + 8);
  uint32_t u;
  memcpy(&u, log, 4);
  assert_int_equal(u, 4);
  memcpy(&u, log + 4, 4);
  assert_int_equal(u, 6);
  memcpy(&u, log + 8, 4);
  assert_int_equal(u, 1);
  assert_int_equal(log[12], 0x0c);
  assert_memory_equal(log + 14, d384, 48);
  memcpy(&u, log + 62, 4);
  assert_int_equal(u, tl + 8);
  assert_memory_equal(log + 66, tagged, tl + 8);
  get("/sys/class/misc/tdx_guest/measurements/rtmr3:sha384", &rtmr, &rlen);
  assert_int_equal(rlen, 48);
  assert_memory_equal(rtmr, d384, 48);
  /* The evidence log is CCEL ++ AAEL ++ end flag, and parses through to our entry. */
  uint8_t rd[48] = {0};
  json_t *ev = NULL;
  CT_ASSERT_OK(guest_get_evidence(&cfg, GUEST_TEE_TDX, rd, sizeof rd, &ev, &err), &err);
  const char *e64 = json_string_value(json_object_get(ev, "cc_eventlog"));
  uint8_t *el = NULL;
  size_t elen = 0, keep = 0, all = 0;
  CT_ASSERT_OK(ct_b64_decode(CT_B64_STD, e64, strlen(e64), &el, &elen, &err), &err);
  CT_ASSERT_OK(guest_tdx_trim_ccel(ccel, clen, &keep, &err), &err);
  assert_int_equal(elen, keep + loglen + 8);
  assert_memory_equal(el + keep, log, loglen);
  CT_ASSERT_OK(guest_tdx_trim_ccel(el, elen, &all, &err), &err);
  assert_int_equal(all, keep + loglen);
  /* Without a CCEL, the fixed spec-id header stands in front of the AAEL. */
  char ccel_path[512];
  snprintf(ccel_path, sizeof ccel_path, "%s/sys/firmware/acpi/tables/data/CCEL", g_root);
  unlink(ccel_path);
  json_decref(ev);
  free(el);
  CT_ASSERT_OK(guest_get_evidence(&cfg, GUEST_TEE_TDX, rd, sizeof rd, &ev, &err), &err);
  e64 = json_string_value(json_object_get(ev, "cc_eventlog"));
  CT_ASSERT_OK(ct_b64_decode(CT_B64_STD, e64, strlen(e64), &el, &elen, &err), &err);
  assert_int_equal(elen, 73 + loglen + 8);
  CT_ASSERT_OK(guest_tdx_trim_ccel(el, elen, &all, &err), &err);
  assert_int_equal(all, 73 + loglen);
  json_decref(ev);
  free(el);
  free(log);
  free(rtmr);
  free(quote);
  free(ccel);
}

static void test_snp_hostdata_binding(void **state) {
  (void)state;
  uint8_t *report = NULL;
  size_t rlen = 0;
  CT_READ_VECTOR("snp/test-report.bin", &report, &rlen);
  memset(report + 0xC0, 0, 32);
  uint8_t digest[48];
  ct_sha384("init", 4, digest);
  memcpy(report + 0xC0, digest, 32); /* sha384 digests are truncated to HOST_DATA's 32 bytes */
  mkdirs("/sys/kernel/config/tsm/report/e1");
  put("/sys/kernel/config/tsm/report/e1/provider", "sev_guest\n", 10);
  put("/sys/kernel/config/tsm/report/e1/generation", "1\n", 2);
  put("/sys/kernel/config/tsm/report/e1/outblob", report, rlen);
  guest_cfg cfg = fixture_cfg();
  ct_err err;
  CT_ASSERT_OK(guest_bind_init_data(&cfg, GUEST_TEE_SNP, digest, 48, &err), &err);
  digest[0] ^= 1;
  assert_int_equal(guest_bind_init_data(&cfg, GUEST_TEE_SNP, digest, 48, &err), CT_EDENIED);
  /* Without a certificate table the evidence carries cert_chain null (Trustee fetches it). */
  json_t *ev = NULL;
  CT_ASSERT_OK(guest_get_evidence(&cfg, GUEST_TEE_SNP, digest, 48, &ev, &err), &err);
  assert_true(json_is_null(json_object_get(ev, "cert_chain")));
  json_decref(ev);
  /* ... and so does an empty one (a zero terminator only). */
  uint8_t empty[4096] = {0};
  put("/sys/kernel/config/tsm/report/e1/auxblob", empty, sizeof empty);
  CT_ASSERT_OK(guest_get_evidence(&cfg, GUEST_TEE_SNP, digest, 48, &ev, &err), &err);
  assert_true(json_is_null(json_object_get(ev, "cert_chain")));
  json_decref(ev);
  free(report);
}

static void test_hcl_report_vector(void **state) {
  (void)state;
  uint8_t *hcl = NULL;
  size_t len = 0;
  CT_READ_VECTOR("az-snp-vtpm/hcl-report.bin", &hcl, &len);
  ct_err err;
  uint32_t type = 0;
  const uint8_t *hw = NULL, *var = NULL;
  size_t hw_len = 0, var_len = 0;
  CT_ASSERT_OK(guest_hcl_parse(hcl, len, &type, &hw, &hw_len, &var, &var_len, &err), &err);
  assert_int_equal(type, GUEST_HCL_TYPE_SNP);
  assert_int_equal(hw_len, 1184);
  uint8_t d[32];
  ct_sha256(var, var_len, d);
  assert_memory_equal(d, hw + 0x50, 32);
  assert_non_null(memmem(var, var_len, "HCLAkPub", 8));
  assert_int_equal(guest_hcl_parse(hcl, 100, &type, NULL, NULL, NULL, NULL, &err), CT_EINVAL);
  hcl[1232] = 0xff;
  hcl[1233] = 0xff;
  assert_int_equal(guest_hcl_parse(hcl, len, &type, NULL, NULL, NULL, NULL, &err), CT_EINVAL);
  free(hcl);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_sample_evidence),
      cmocka_unit_test_setup_teardown(test_detect_never_falls_back_to_sample, setup, teardown),
      cmocka_unit_test_setup_teardown(test_snp_tsm_evidence_real_report, setup, teardown),
      cmocka_unit_test(test_snp_json_matches_trustee_vector),
      cmocka_unit_test(test_snp_cert_table_bounds),
      cmocka_unit_test_setup_teardown(test_tdx_tsm_evidence_and_mrconfigid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_snp_hostdata_binding, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tdx_runtime_measurement, setup, teardown),
      cmocka_unit_test(test_hcl_report_vector),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
