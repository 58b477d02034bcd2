/* libFuzzer target: the SEV-SNP report parsers (raw 1184-byte form and the sev serde JSON form)
 * and the report signature check against a fixed P-384 key. */
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ct_json.h"
#include "snp.h"

static EVP_PKEY *fuzz_key(void) {
  static EVP_PKEY *k;
  if (!k) k = EVP_EC_gen("P-384");
  return k;
}

static void check(snp_report *r) {
  snp_vek_info info;
  memset(&info, 0, sizeof info);
  info.type = SNP_VEK_VCEK;
  info.gen = r->gen;
  info.hwid_len = 64;
  memcpy(info.hwid, r->raw + SNP_OFF_CHIP_ID, 64);
  info.tcb = r->reported_tcb;
  ct_err err;
  if (snp_report_verify_signature(r, &info, fuzz_key(), &err) == CT_OK) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ct_err err;
  snp_report r;
  if (snp_report_parse(data, size, &r, &err) == CT_OK) check(&r);
  json_t *j = NULL;
  if (ct_json_parse((const char *)data, size, 16, &j, &err) == CT_OK) {
    json_t *jr = json_is_object(j) && json_object_get(j, "attestation_report")
                     ? json_object_get(j, "attestation_report") : j;
    if (snp_report_from_json(jr, &r, &err) == CT_OK) check(&r);
    json_decref(j);
  }
  return 0;
}
