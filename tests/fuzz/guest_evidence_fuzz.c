/*
 * Fuzzes the parsers that read device output: the SNP report and certificate table, and the
 * Azure HCL report and the CCEL table trimming. The first byte selects the parser.
 */
#include <stdint.h>
#include <stdlib.h>

#include "guest_attester.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  ct_err err;
  json_t *out = NULL;
  uint32_t type;
  const uint8_t *hw, *var;
  size_t hw_len, var_len;
  size_t keep = 0;
  switch (data[0] % 4) {
  case 0:
    if (guest_snp_report_to_json(data + 1, size - 1, &out, &err) == CT_OK) json_decref(out);
    break;
  case 1:
    if (guest_snp_cert_table_to_json(data + 1, size - 1, &out, &err) == CT_OK) json_decref(out);
    break;
  case 3:
    if (guest_tdx_trim_ccel(data + 1, size - 1, &keep, &err) == CT_OK && keep + 8 > size - 1) abort();
    break;
  default:
    if (guest_hcl_parse(data + 1, size - 1, &type, &hw, &hw_len, &var, &var_len, &err) == CT_OK &&
        var + var_len > data + size)
      abort();
  }
  return 0;
}
