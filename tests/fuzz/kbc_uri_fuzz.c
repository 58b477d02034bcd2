/*
 * Fuzzes the resource URI parser used for kbs:// URIs from workloads, sealed secrets and
 * configuration.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kbc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096) return 0;
  char *s = malloc(size + 1);
  if (!s) return 0;
  memcpy(s, data, size);
  s[size] = 0;
  char plugin[64], path[KBC_URI_MAX];
  ct_err err;
  if (kbc_parse_uri(s, plugin, sizeof plugin, path, sizeof path, &err) == CT_OK &&
      (strstr(path, "/.") || strstr(path, "//") || path[0] == '/' || path[0] == '.'))
    abort();
  free(s);
  return 0;
}
