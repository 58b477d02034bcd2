/* TOML text through the KBS configuration builder: every input is a configuration or a clear
 * error; never a crash or a leak. */
#include <stdint.h>
#include <stdlib.h>

#include "kbs_config.h"
#include "toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *doc = NULL;
  ct_err err;
  if (toml_parse((const char *)data, size, &doc, &err) != CT_OK) return 0;
  kbs_config *cfg = NULL;
  if (kbs_config_from_json(doc, &cfg, &err) == CT_OK) kbs_config_free(cfg);
  json_decref(doc);
  return 0;
}
