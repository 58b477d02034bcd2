/* libFuzzer target: the CCEL event log parser, JSON rendering and replay. */
#include <stddef.h>
#include <stdint.h>

#include "ccel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ct_err err;
  ccel_log log;
  if (ccel_parse(data, size, &log, &err) != CT_OK) return 0;
  json_t *arr = NULL;
  if (ccel_to_json(&log, &arr, &err) == CT_OK) json_decref(arr);
  uint8_t mr[64];
  size_t n;
  if (ccel_replay(&log, 1, CCEL_ALG_SHA384, mr, &n, &err) == CT_OK) mr[0] ^= 1;
  ccel_free(&log);
  return 0;
}
