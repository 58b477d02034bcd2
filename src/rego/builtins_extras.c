/*
 * builtins_extras.c - registers the OPA-only built-in families with the registry
 * (builtins.c). Part of ct_rego_extras: linking that library whole (ct_rego_full) is what turns
 * them on; the conformance and differential suites, the unit tests and `rego-opa` do.
 */
#include "rego_int.h"

static const rg_builtin *const rego__extra_tables[] = {
    rg_builtins_net,  rg_builtins_jwt,  rg_builtins_uri,  rg_builtins_graphql,
    rg_builtins_x509, rg_builtins_glob, rg_builtins_yaml, rg_builtins_tmpl, NULL};

__attribute__((constructor)) static void rego__register_extras(void) {
  rg_builtins_add_extras(rego__extra_tables);
}
