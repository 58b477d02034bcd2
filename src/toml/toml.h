/*
 * toml.h - a strict TOML 1.0 parser producing jansson values.
 *
 * Tables become objects, arrays arrays, strings strings, integers integers (int64; hex, octal,
 * binary and underscores accepted), floats reals, booleans booleans. Date-times become strings
 * in RFC 3339 form as written (the date/time separator is normalised to 'T' and a 'z' offset to
 * 'Z'): offset date-time, local date-time, local date and local time are all kept as strings.
 * inf and nan are refused: JSON cannot carry them. Deliberate deviations from TOML 1.0: the
 * escape \u0000 is refused (it cannot survive C strings; ct_json_parse refuses it too), and
 * fractional seconds are kept as written. scripts/toml-test-suite checks conformance against
 * the toml-test suite (ctest "toml-test-suite", skipped when the suite is not cached).
 *
 * Errors read "line L, column C: what" (columns count characters, both are 1-based). Bounds:
 * nesting depth (tables, arrays and inline tables together) at most TOML_MAX_DEPTH, at most
 * TOML_MAX_VALUES values per document; the caller bounds the document size.
 */
#ifndef TOML_H
#define TOML_H

#include <jansson.h>
#include <stddef.h>

#include "ct_status.h"

#define TOML_MAX_DEPTH 64
#define TOML_MAX_VALUES 1000000
#define TOML_FILE_MAX (4u << 20)

/* Parses text[0..len) (need not be NUL-terminated). On success *out is a new reference to an
 * object; the caller releases it with json_decref. On failure *out is untouched. */
CT_RESULT toml_parse(const char *text, size_t len, json_t **out, ct_err *err);

/* Reads a file of at most TOML_FILE_MAX bytes and parses it; errors are prefixed with the path. */
CT_RESULT toml_parse_file(const char *path, json_t **out, ct_err *err);

#endif
