/*
 * Fuzzes the CDH's parsers of untrusted text: cdh.toml, aa.toml, init-data (from the host) and
 * sealed secrets (from the control plane), kernel command line credentials (from the host). The first byte selects the parser.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cdh.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > (64u << 10)) return 0;
  const char *t = (const char *)data + 1;
  size_t n = size - 1;
  ct_err err;
  switch (data[0] % 5) {
  case 0: {
    cdh_config c = {0};
    if (cdh_config_parse_cdh(t, n, &c, &err) == CT_OK && c.ncreds > CDH_MAX_CREDENTIALS) abort();
    cdh_config_free(&c);
    break;
  }
  case 1: {
    cdh_config c = {0};
    if (cdh_config_parse_aa(t, n, &c, &err) == CT_OK && c.ncreds) abort();
    cdh_config_free(&c);
    break;
  }
  case 2: {
    cdh_initdata d;
    if (cdh_initdata_parse(t, n, &d, &err) == CT_OK) {
      if (d.digest_len != 32 && d.digest_len != 48 && d.digest_len != 64) abort();
      cdh_initdata_free(&d);
    }
    break;
  }
  case 4: {
    cdh_config c = {0};
    if (cdh_config_cmdline_credentials(&c, t, n, &err) == CT_OK)
      for (size_t i = 0; i < c.ncreds; i++)
        if (strncmp(c.creds[i].path, CDH_CMDLINE_CRED_DIR, strlen(CDH_CMDLINE_CRED_DIR))) abort();
    cdh_config_free(&c);
    break;
  }
  default: {
    cdh_sealed s;
    if (cdh_sealed_parse(t, n, &s, &err) == CT_OK) cdh_sealed_free(&s);
  }
  }
  return 0;
}
