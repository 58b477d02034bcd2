/*
 * json_parse_fuzz - differential: ct_json_parse's reader and jansson's json_loadb
 * (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY) must accept the same inputs with equal values. The
 * only allowed difference is an input with a NUL byte that jansson accepts (it drops a NUL after
 * a number or literal) and ours refuses.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_json.h"

CT_RESULT ct_json__read(const char *buf, size_t len, json_t **out, ct_err *err);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (64u << 10)) return 0;
  json_error_t jerr;
  json_t *want = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
  json_t *got = NULL;
  ct_err err;
  ct_status st = ct_json__read((const char *)data, size, &got, &err);
  bool same = want ? st == CT_OK && json_equal(want, got) : st != CT_OK;
  if (!same && want && st != CT_OK && memchr(data, 0, size)) same = true;
  if (!same) {
    fprintf(stderr, "json readers disagree: jansson %s, ours %s\n", want ? "accepts" : jerr.text,
            st == CT_OK ? "accepts" : err.msg);
    abort();
  }
  json_decref(want);
  json_decref(got);
  return 0;
}
