/*
 * builtins_time.c - built-ins of the time family.
 */
#include "rego_int.h"

const rg_builtin rg_builtins_time[] = {
    {NULL, 0, NULL, false},
};
