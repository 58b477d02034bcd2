/*
 * builtins_enc.c - built-ins of the enc family.
 */
#include "rego_int.h"

const rg_builtin rg_builtins_enc[] = {
    {NULL, 0, NULL, false},
};
