/*
 * Our attesters' evidence goes through this project's verifiers (which follow Trustee's
 * verifiers): the wire format is accepted, and a changed report data is refused.
 */
#include "ct_test_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include "as_verifier.h"
#include "ccel.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "guest_internal.h"
#include "ct_json.h"
#include "guest_attester.h"
#include "snp.h"

static void run_verifier(const char *tee, const json_t *ev, const uint8_t *rd, size_t rdlen,
                         ct_status expect) {
  const as_verifier *v = as_verifier_find(tee);
  if (!v) {
    fprintf(stderr, "SKIP: no %s verifier built in\n", tee);
    skip();
  }
  as_verifier_config vc = {0};
  void *state = NULL;
  ct_err err;
  if (v->create) CT_ASSERT_OK(v->create(&vc, &state, &err), &err);
  as_verify_request req = {.tee = tee, .evidence = ev, .report_data = rd, .report_data_len = rdlen};
  json_t *claims = NULL;
  ct_status st = v->verify(state, &req, &claims, &err);
  if (st != expect) fail_msg("%s verifier: status %d (%s), expected %d", tee, st, err.msg, expect);
  json_decref(claims);
  if (v->destroy) v->destroy(state);
}

static void test_sample_roundtrip(void **state) {
  (void)state;
  ct_err err;
  uint8_t rd[48];
  memset(rd, 7, sizeof rd);
  json_t *ev = NULL;
  CT_ASSERT_OK(guest_get_evidence(NULL, GUEST_TEE_SAMPLE, rd, sizeof rd, &ev, &err), &err);
  run_verifier("sample", ev, rd, sizeof rd, CT_OK);
  rd[0] ^= 1;
  run_verifier("sample", ev, rd, sizeof rd, CT_ECRYPTO);
  json_decref(ev);
}

/* The Genoa vector's raw report and VCEK: a version 3 report, which the snp verifier requires
 * (as upstream does). */
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

static void test_snp_roundtrip(void **state) {
  (void)state;
  uint8_t *report = NULL, *vcek = NULL;
  size_t rlen = 0, vlen = 0;
  genoa_raw(&report, &rlen, &vcek, &vlen);
  char root[] = "/tmp/guest-interop-XXXXXX";
  assert_non_null(mkdtemp(root));
  char dir[512], p[600];
  snprintf(dir, sizeof dir, "%s/sys/kernel/config/tsm/report/e1", root);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
  assert_int_equal(system(cmd), 0);
  static const uint8_t guid[16] = {0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64,
                                   0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd};
  size_t tlen = 48 + vlen;
  uint8_t *table = calloc(1, tlen);
  memcpy(table, guid, 16);
  uint32_t off = 48, l = (uint32_t)vlen;
  memcpy(table + 16, &off, 4);
  memcpy(table + 20, &l, 4);
  memcpy(table + 48, vcek, vlen);
  struct { const char *name; const void *d; size_t n; } files[] = {
      {"provider", "sev_guest\n", 10}, {"generation", "1\n", 2}, {"outblob", report, rlen},
      {"auxblob", table, tlen}};
  for (size_t i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, files[i].name);
    FILE *f = fopen(p, "wb");
    fwrite(files[i].d, 1, files[i].n, f);
    fclose(f);
  }
  guest_cfg cfg = {.root = root, .tsm_entry = "e1"};
  ct_err err;
  json_t *ev = NULL;
  /* The fixture's report was signed over its own report data, which we pass as expected. */
  CT_ASSERT_OK(guest_get_evidence(&cfg, GUEST_TEE_SNP, report + 0x50, 64, &ev, &err), &err);
  run_verifier("snp", ev, report + 0x50, 64, CT_OK);
  uint8_t other[64];
  memcpy(other, report + 0x50, 64);
  other[3] ^= 1;
  run_verifier("snp", ev, other, 64, CT_ECRYPTO);
  json_decref(ev);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  assert_int_equal(system(cmd), 0);
  free(table);
  free(report);
  free(vcek);
}

/* Runtime measurements appended to the real CCEL parse with this project's CC event log parser
 * (Trustee's eventlog crate rules), and replay to the RTMR3 value the extends produce. */
static void test_aael_parses_as_cc_eventlog(void **state) {
  (void)state;
  uint8_t *ccel = NULL;
  size_t clen = 0;
  CT_READ_VECTOR("tdx/CCEL_data", &ccel, &clen);
  char root[] = "/tmp/guest-aael-XXXXXX";
  assert_non_null(mkdtemp(root));
  char cmd[600], p[600], logpath[600];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s/sys/class/misc/tdx_guest/measurements' '%s/sys/firmware/acpi/tables/data'",
           root, root);
  assert_int_equal(system(cmd), 0);
  snprintf(p, sizeof p, "%s/sys/firmware/acpi/tables/data/CCEL", root);
  FILE *f = fopen(p, "wb");
  fwrite(ccel, 1, clen, f);
  fclose(f);
  snprintf(p, sizeof p, "%s/sys/class/misc/tdx_guest/measurements/rtmr3:sha384", root);
  fclose(fopen(p, "wb"));
  snprintf(logpath, sizeof logpath, "%s/aael", root);
  guest_cfg cfg = {.root = root, .eventlog_path = logpath};
  ct_err err;
  const char *ops[] = {"PullImage", "CreateContainer"};
  uint8_t rtmr3[48] = {0};
  for (int i = 0; i < 2; i++) {
    CT_ASSERT_OK(guest_runtime_measure(&cfg, GUEST_TEE_TDX, 17, "github.com/confidential-containers",
                                       ops[i], "{\"image\":\"busybox\"}", &err), &err);
    uint8_t *d = NULL;
    size_t dl = 0;
    CT_ASSERT_OK(ct_file_read(p, 64, &d, &dl, &err), &err);
    assert_int_equal(dl, 48);
    uint8_t cat[96];
    memcpy(cat, rtmr3, 48);
    memcpy(cat + 48, d, 48);
    ct_sha384(cat, sizeof cat, rtmr3); /* what the TDX module computes */
    free(d);
  }
  char *b64 = NULL;
  CT_ASSERT_OK(guest_tdx_eventlog(&cfg, &b64, &err), &err);
  uint8_t *el = NULL;
  size_t elen = 0;
  CT_ASSERT_OK(ct_b64_decode(CT_B64_STD, b64, strlen(b64), &el, &elen, &err), &err);
  ccel_log log = {0};
  CT_ASSERT_OK(ccel_parse(el, elen, &log, &err), &err);
  assert_true(log.count > 2);
  const ccel_event *last = &log.events[log.count - 1];
  assert_int_equal(last->index, 4);
  assert_int_equal(last->type, 6);
  assert_int_equal(last->ndigests, 1);
  assert_int_equal(last->digests[0].alg, CCEL_ALG_SHA384);
  uint8_t mr[64];
  size_t mlen = 0;
  CT_ASSERT_OK(ccel_replay(&log, 4, CCEL_ALG_SHA384, mr, &mlen, &err), &err);
  assert_int_equal(mlen, 48);
  assert_memory_equal(mr, rtmr3, 48);
  ccel_free(&log);
  free(el);
  free(b64);
  /* Without a CCEL the fixed spec-id header makes the AAEL parseable on its own. */
  snprintf(p, sizeof p, "%s/sys/firmware/acpi/tables/data/CCEL", root);
  unlink(p);
  CT_ASSERT_OK(guest_tdx_eventlog(&cfg, &b64, &err), &err);
  CT_ASSERT_OK(ct_b64_decode(CT_B64_STD, b64, strlen(b64), &el, &elen, &err), &err);
  CT_ASSERT_OK(ccel_parse(el, elen, &log, &err), &err);
  CT_ASSERT_OK(ccel_replay(&log, 4, CCEL_ALG_SHA384, mr, &mlen, &err), &err);
  assert_memory_equal(mr, rtmr3, 48);
  ccel_free(&log);
  free(el);
  free(b64);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  assert_int_equal(system(cmd), 0);
  free(ccel);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sample_roundtrip),
      cmocka_unit_test(test_snp_roundtrip),
      cmocka_unit_test(test_aael_parses_as_cc_eventlog),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
