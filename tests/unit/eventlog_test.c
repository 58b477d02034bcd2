/*
 * CCEL event log parser: Trustee's eventlog goldens (CCEL_data_* -> *_out.json), RTMR replay
 * values from Trustee's test_rtmr_integrity, and malformed input.
 */
#include "ct_test_util.h"

#include <jansson.h>

#include "ccel.h"
#include "ct_codec.h"
#include "ct_reader.h"

/* Prints the first differing event to make golden failures readable. */
static void eventlog__diff(const json_t *want, const json_t *got) {
  size_t n = json_array_size(want) < json_array_size(got) ? json_array_size(want) : json_array_size(got);
  for (size_t i = 0; i < n; i++) {
    if (!json_equal(json_array_get(want, i), json_array_get(got, i))) {
      char *a = json_dumps(json_array_get(want, i), JSON_SORT_KEYS | JSON_COMPACT);
      char *b = json_dumps(json_array_get(got, i), JSON_SORT_KEYS | JSON_COMPACT);
      fprintf(stderr, "event %zu differs\n want %.1500s\n got  %.1500s\n", i, a, b);
      free(a);
      free(b);
      return;
    }
  }
  fprintf(stderr, "event counts differ: want %zu got %zu\n", json_array_size(want), json_array_size(got));
}

static void eventlog__golden(const char *bin, const char *golden) {
  uint8_t *data = NULL, *exp = NULL;
  size_t len = 0, elen = 0;
  CT_READ_VECTOR(bin, &data, &len);
  CT_READ_VECTOR(golden, &exp, &elen);
  ct_err err;
  ccel_log log;
  CT_ASSERT_OK(ccel_parse(data, len, &log, &err), &err);
  json_t *arr = NULL;
  CT_ASSERT_OK(ccel_to_json(&log, &arr, &err), &err);
  json_error_t jerr;
  json_t *want = json_loadb((const char *)exp, elen, 0, &jerr);
  assert_non_null(want);
  json_t *want_arr = json_object_get(want, "uefi_event_logs");
  if (!json_equal(want_arr, arr)) eventlog__diff(want_arr, arr);
  assert_true(json_equal(want_arr, arr));
  json_decref(want);
  json_decref(arr);
  ccel_free(&log);
  free(data);
  free(exp);
}

static void test_golden_ovmf(void **s) { (void)s; eventlog__golden("eventlog/CCEL_data_ovmf", "eventlog/CCEL_data_ovmf_out.json"); }
static void test_golden_grub(void **s) { (void)s; eventlog__golden("eventlog/CCEL_data_grub", "eventlog/CCEL_data_grub_out.json"); }
static void test_golden_csv(void **s) { (void)s; eventlog__golden("eventlog/CCEL_data_csv", "eventlog/CCEL_data_csv_out.json"); }

static void eventlog__replay(const char *bin, const char *const rtmr[4]) {
  uint8_t *data = NULL;
  size_t len = 0;
  CT_READ_VECTOR(bin, &data, &len);
  ct_err err;
  ccel_log log;
  CT_ASSERT_OK(ccel_parse(data, len, &log, &err), &err);
  for (uint32_t i = 0; i < 4; i++) {
    uint8_t mr[64];
    size_t n = 0;
    CT_ASSERT_OK(ccel_replay(&log, i + 1, CCEL_ALG_SHA384, mr, &n, &err), &err);
    assert_int_equal(n, 48);
    char hex[129];
    ct_hex_into(mr, n, hex);
    assert_string_equal(hex, rtmr[i]);
  }
  ccel_free(&log);
  free(data);
}

/* Expected values: Trustee deps/eventlog test_rtmr_integrity. */
static void test_replay_ovmf(void **s) {
  (void)s;
  const char *const r[4] = {
      "8566f998798db09443b244c62de9a3041fb02e2e6936c4396d784bba2e90177329ec5aba3bb484404f2ab9cc90abe193",
      "775b9f6bfe99f8a31396f0d0218e67ffa796d3b96ccf961cbb0deba48c79c00f082cda1a5567c1c16305f1fc210c13c6",
      "94eaf7a7bf398ed8d888c91057ae0261802e4f3df084213a76ca7f0b5055ac9d2241de43cd58d9e8b49c503bbf25f34a",
      "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"};
  eventlog__replay("eventlog/CCEL_data_ovmf", r);
}

static void test_replay_grub(void **s) {
  (void)s;
  const char *const r[4] = {
      "cec0a104f691f60da2387fea3c2de00c4ac035e2bb479ff02edcce69039d9e9907f0b3e55031da3dc7038f423adebd79",
      "6c289e0c62182d41ebe97bdbc9872d10998a08eaa86adcdc684001a363207ee72942c7522cdf00a4bbc3d784bed7b670",
      "08919d017ba0e52cd6d966351c7de16fe76c1d3d3d3da4554239e4c7d16cb8b82a94e7eaea3a0e6e18eb690b999fd31e",
      "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"};
  eventlog__replay("eventlog/CCEL_data_grub", r);
}

static void test_replay_tdx_ccel(void **s) {
  (void)s;
  const char *const r[4] = {
      "2dc712306a963eadb894ad47dbaa17df44814151555aee11cbb843becca88950ffd079664902e6f22c66f7c8213543f4",
      "0fa3be56af61208bbd179dc7b124988eb929319154663c539d6f46445ecac2fec287075047ff7bd1922829fec28cd3cf",
      "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
      "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"};
  eventlog__replay("tdx/CCEL_data", r);
}

/* Every truncation of a real log either parses or fails cleanly; a flipped digest changes the
 * replayed value. */
static void test_truncations_and_flip(void **s) {
  (void)s;
  uint8_t *data = NULL;
  size_t len = 0;
  CT_READ_VECTOR("eventlog/CCEL_data_ovmf", &data, &len);
  ct_err err;
  size_t ok = 0, bad = 0;
  for (size_t cut = 0; cut < 6000 && cut < len; cut += 7) {
    ccel_log log;
    if (ccel_parse(data, cut, &log, &err) == CT_OK) {
      ok++;
      ccel_free(&log);
    } else {
      bad++;
      assert_true(strlen(err.msg) > 0);
    }
  }
  assert_true(bad > 0);
  ccel_log log;
  CT_ASSERT_OK(ccel_parse(data, len, &log, &err), &err);
  uint8_t before[64], after[64];
  size_t n;
  CT_ASSERT_OK(ccel_replay(&log, 1, CCEL_ALG_SHA384, before, &n, &err), &err);
  ccel_free(&log);
  /* The first EV_PCR_EVENT2 digest byte: after the spec ID event header. */
  ct_reader rd;
  ct_reader_init(&rd, data, len, "event log");
  size_t first = 32 + (size_t)ct_peek_u16le(&rd, 28, "spec ID event size") + 8 + 4 + 2;
  CT_ASSERT_OK(ct_reader_status(&rd, &err), &err);
  data[first] ^= 1;
  CT_ASSERT_OK(ccel_parse(data, len, &log, &err), &err);
  CT_ASSERT_OK(ccel_replay(&log, 1, CCEL_ALG_SHA384, after, &n, &err), &err);
  assert_memory_not_equal(before, after, 48);
  ccel_free(&log);
  free(data);
}

static void test_malformed(void **s) {
  (void)s;
  ct_err err;
  ccel_log log;
  uint8_t junk[64] = {0};
  assert_int_not_equal(ccel_parse(junk, sizeof junk, &log, &err), CT_OK); /* type 0 first event */
  assert_int_not_equal(ccel_parse(junk, 3, &log, &err), CT_OK);
  /* A spec ID event claiming 1000 algorithms. */
  uint8_t spec[32 + 29] = {0};
  spec[4] = 3;
  spec[28] = 29;
  spec[32 + 24] = 0xe8;
  spec[32 + 25] = 0x03;
  assert_int_not_equal(ccel_parse(spec, sizeof spec, &log, &err), CT_OK);
  assert_non_null(strstr(err.msg, "algorithms"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_golden_ovmf),    cmocka_unit_test(test_golden_grub),
      cmocka_unit_test(test_golden_csv),     cmocka_unit_test(test_replay_ovmf),
      cmocka_unit_test(test_replay_grub),    cmocka_unit_test(test_replay_tdx_ccel),
      cmocka_unit_test(test_truncations_and_flip), cmocka_unit_test(test_malformed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
