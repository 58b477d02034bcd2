/*
 * libFuzzer target for the Rego engine: parser, compiler and evaluator.
 * Input: "<module>\n----\n<query>\n----\n<input JSON>" (later parts optional; the query defaults
 * to "data"). Evaluation runs under small limits so that every input ends quickly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rego.h"

static char *part(const char *s, size_t n, size_t *off) {
  const char *sep = "\n----\n";
  size_t start = *off;
  if (start > n) return NULL;
  const char *end = NULL;
  for (size_t i = start; i + 6 <= n; i++)
    if (!memcmp(s + i, sep, 6)) {
      end = s + i;
      break;
    }
  size_t len = end ? (size_t)(end - (s + start)) : n - start;
  *off = end ? start + len + 6 : n + 1;
  char *p = malloc(len + 1);
  if (!p) return NULL;
  memcpy(p, s + start, len);
  p[len] = 0;
  if (strlen(p) != len) {
    /* embedded NUL: cut there, like a C string would */
  }
  return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 1 << 16) return 0;
  const char *s = (const char *)data;
  size_t off = 0;
  char *mod = part(s, size, &off), *query = part(s, size, &off), *input = part(s, size, &off);
  if (!mod) goto done;
  rego_module m = {"fuzz.rego", mod};
  rego_options o = {.limits = {.max_steps = 20000, .max_depth = 32, .max_memory_bytes = 32u << 20}};
  rego_policy *p = NULL;
  ct_err err = {0};
  if (rego_compile(&m, 1, &o, &p, &err) == CT_OK) {
    char *res = NULL;
    rego_query_opts qo = {.input_json = input, .now_ns = 1};
    if (rego_query(p, query && *query ? query : "data", &qo, &res, &err) == CT_OK) free(res);
    json_t *jr = NULL;
    if (rego_eval(p, "data", NULL, NULL, &jr, &err) == CT_OK) json_decref(jr);
    rego_policy_free(p);
  }
done:
  free(mod);
  free(query);
  free(input);
  return 0;
}
