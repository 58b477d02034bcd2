/*
 * ct_json_internal.h - what the JSON reader (ct_json_parse.c) and writer (ct_json.c) share; not
 * part of the public API.
 */
#ifndef CT_JSON_INTERNAL_H
#define CT_JSON_INTERNAL_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at p[0..n) (jansson's rules: no overlongs, surrogates or
 * code points past U+10FFFF), or 0. Both sides must agree with jansson's utf8_check. */
size_t ct_json__utf8_len(const unsigned char *p, size_t n);

#endif
