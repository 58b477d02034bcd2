/*
 * builtins.c - the built-in registry: one NULL-terminated table per family
 * (builtins_*.c), searched by name at compile time.
 *
 * The OPA-only families (GraphQL, YAML, templates, x509, JWT verify/sign, globs, net.cidr,
 * uuid/uri) live in the separate library ct_rego_extras, which adds its tables here when it is
 * linked (builtins_extras.c); the programs the project ships link without it.
 */
#include <string.h>

#include "rego_int.h"

static const rg_builtin *const rg_tables[] = {rg_builtins_core, rg_builtins_str,  rg_builtins_coll,
                                              rg_builtins_enc,  rg_builtins_time, rg_builtins_regex,
                                              rg_builtins_json};

/* Set once, before main, by ct_rego_extras' constructor; read-only afterwards. */
static const rg_builtin *const *rg_extra_tables;

void rg_builtins_add_extras(const rg_builtin *const *tables) { rg_extra_tables = tables; }

const rg_builtin *rg_builtin_find(const char *name) {
  for (size_t t = 0; t < sizeof(rg_tables) / sizeof(rg_tables[0]); t++)
    for (const rg_builtin *b = rg_tables[t]; b->name; b++)
      if (!strcmp(b->name, name)) return b;
  for (size_t t = 0; rg_extra_tables && rg_extra_tables[t]; t++)
    for (const rg_builtin *b = rg_extra_tables[t]; b->name; b++)
      if (!strcmp(b->name, name)) return b;
  return NULL;
}
