/*
 * libFuzzer target for init-data. The first byte picks the entry point: even - the TOML document
 * itself (parse, claims, PCR8, regularisation); odd - the kata annotation (base64 of gzip),
 * whose decoded text is then parsed. Oracle: no crash or leak, every failure has a message, and
 * a parsed document's digest length matches its algorithm.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "initdata.h"

static void check_doc(const char *text, size_t len) {
  ct_err err;
  ct_err_clear(&err);
  initdata *d = NULL;
  if (initdata_parse(text, len, &d, &err) != CT_OK) {
    if (d || !err.msg[0]) abort();
    return;
  }
  size_t want = !strcmp(d->algorithm, "sha256") ? 32 : !strcmp(d->algorithm, "sha384") ? 48 : 64;
  if (d->digest_len != want || !json_is_object(d->data)) abort();
  json_t *claims = NULL;
  if (initdata_claims(d, &claims, &err) != CT_OK || !json_is_object(claims)) abort();
  json_decref(claims);
  uint8_t pcr[32], field[48];
  ct_status st = initdata_pcr8(d->digest, d->digest_len, pcr, &err);
  if ((st == CT_OK) != (d->digest_len == 32)) abort();
  initdata_regularize(d->digest, d->digest_len, field, sizeof field);
  initdata_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 512 * 1024) return 0;
  if ((data[0] & 1) == 0) {
    check_doc((const char *)data + 1, size - 1);
    return 0;
  }
  char *b64 = malloc(size);
  if (!b64) return 0;
  memcpy(b64, data + 1, size - 1);
  b64[size - 1] = '\0';
  char *toml = NULL;
  size_t len = 0;
  ct_err err;
  ct_err_clear(&err);
  if (initdata_decode_annotation(b64, &toml, &len, &err) == CT_OK) {
    if (len > INITDATA_MAX_SIZE || toml[len] != '\0') abort();
    check_doc(toml, len);
    free(toml);
  } else if (toml || !err.msg[0]) {
    abort();
  }
  free(b64);
  return 0;
}
