/*
 * builtins.c - the built-in registry: one NULL-terminated table per family
 * (builtins_*.c), searched by name at compile time.
 */
#include <string.h>

#include "rego_int.h"

static const rg_builtin *const rg_tables[] = {rg_builtins_core, rg_builtins_str,  rg_builtins_coll,
                                              rg_builtins_enc,  rg_builtins_time, rg_builtins_regex, rg_builtins_net, rg_builtins_json, rg_builtins_jwt,
                                              rg_builtins_uri,
                                              rg_builtins_graphql, rg_builtins_x509, rg_builtins_glob, rg_builtins_yaml, rg_builtins_tmpl};

const rg_builtin *rg_builtin_find(const char *name) {
  for (size_t t = 0; t < sizeof(rg_tables) / sizeof(rg_tables[0]); t++)
    for (const rg_builtin *b = rg_tables[t]; b->name; b++)
      if (!strcmp(b->name, name)) return b;
  return NULL;
}
