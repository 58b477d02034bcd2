/*
 * libFuzzer target for the TOML parser. Oracle: no crash or leak, every failure carries a
 * positioned message, and every success is an object that serialises to JSON the strict JSON
 * parser accepts within the same depth bound.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ct_json.h"
#include "toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 256 * 1024) return 0;
  ct_err err;
  ct_err_clear(&err);
  json_t *v = NULL;
  ct_status st = toml_parse((const char *)data, size, &v, &err);
  if (st != CT_OK) {
    if (v != NULL || err.msg[0] == '\0') abort();
    if (st != CT_ENOMEM && strncmp(err.msg, "line ", 5) != 0) abort();
    return 0;
  }
  if (!json_is_object(v)) abort();
  char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  if (!s) abort();
  json_t *back = NULL;
  if (ct_json_parse(s, strlen(s), TOML_MAX_DEPTH, &back, &err) != CT_OK) abort();
  if (!json_equal(v, back)) abort();
  json_decref(back);
  free(s);
  json_decref(v);
  return 0;
}
