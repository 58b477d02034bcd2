/* libFuzzer target: the Azure HCL report parser, its variable-data JSON (AK JWK, user-data) and
 * the embedded SNP report. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "az_hcl.h"
#include "snp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ct_err err;
  az_hcl_report h;
  if (az_hcl_parse(data, size, &h, &err) != CT_OK) return 0;
  snp_report r;
  if (h.report_type == AZ_HCL_REPORT_TYPE_SNP &&
      snp_report_parse(h.hw_report, h.hw_report_len, &r, &err) == CT_OK && r.version == 0)
    __builtin_trap();
  json_t *var = NULL;
  if (az_hcl_var_data_json(&h, &var, &err) != CT_OK) return 0;
  EVP_PKEY *ak = NULL;
  if (az_hcl_ak_pub(var, &ak, &err) == CT_OK) EVP_PKEY_free(ak);
  uint8_t *u = NULL;
  size_t ul = 0;
  if (az_hcl_user_data(var, &u, &ul, &err) == CT_OK) free(u);
  json_decref(var);
  return 0;
}
