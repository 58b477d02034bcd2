/*
 * ct_json.h - strict JSON input (jansson) and RFC 8785 canonical output.
 *
 * Everything that arrives from the wire or a file goes through ct_json_parse: it bounds the
 * size and nesting depth, and rejects duplicate keys, lone surrogates and NUL characters.
 */
#ifndef CT_JSON_H
#define CT_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_buf.h"
#include "ct_status.h"

#define CT_JSON_DEFAULT_MAX_DEPTH 64

/* Parses exactly one JSON value from buf[0..len). `max_depth` bounds array/object nesting.
 * On success *out holds a new reference. */
CT_RESULT ct_json_parse(const char *buf, size_t len, size_t max_depth, json_t **out, ct_err *err);

/* RFC 8785 (JCS) serialisation: sorted keys (UTF-16 order), ES6 number formatting, minimal
 * escaping. Appends to `out`. */
CT_RESULT ct_jcs_append(const json_t *value, ct_buf *out, ct_err *err);
/* Convenience: returns a malloc'd NUL-terminated canonical string. */
CT_RESULT ct_jcs_string(const json_t *value, char **out, size_t *out_len, ct_err *err);

/* Typed member access with clear errors. `what` names the enclosing object in messages. */
CT_RESULT ct_json_get_string(const json_t *obj, const char *key, const char *what, const char **out,
                             ct_err *err);
/* Like ct_json_get_string but absent or null yields *out = NULL. */
CT_RESULT ct_json_opt_string(const json_t *obj, const char *key, const char *what, const char **out,
                             ct_err *err);
CT_RESULT ct_json_get_object(const json_t *obj, const char *key, const char *what, json_t **out,
                             ct_err *err);
CT_RESULT ct_json_get_int(const json_t *obj, const char *key, const char *what, int64_t *out,
                          ct_err *err);

/* Compact serialisation with sorted keys into a malloc'd string. */
CT_RESULT ct_json_dump(const json_t *value, char **out, ct_err *err);
/* Appends the text json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY, plus JSON_SORT_KEYS when
 * `sort_keys`) writes, byte for byte, without its per-character cost. On failure (a string that
 * is not UTF-8, as json_dumps) part of the text may have been appended. */
CT_RESULT ct_json_write(const json_t *value, bool sort_keys, ct_buf *out, ct_err *err);

/* ct_json_write, except that `inner` (wherever it occurs inside `value`) is written as
 * inner_text[0..inner_len), which must be what ct_json_write(inner, sort_keys) writes: a value
 * that was serialised already (to measure it) is not serialised again. */
CT_RESULT ct_json_write_spliced(const json_t *value, bool sort_keys, const json_t *inner, const char *inner_text,
                                size_t inner_len, ct_buf *out, ct_err *err);
/* The JSON string literal of s[0..len) (UTF-8), as ct_json_write writes a string value. */
CT_RESULT ct_json_write_string(const char *s, size_t len, ct_buf *out, ct_err *err);

/* The value ct_json_parse(ct_json_dump(value), max_depth) gives, without writing and reading the
 * text: a deep copy whose objects hold their members in sorted order. Fails where that parse would
 * fail (CT_ELIMIT: nesting deeper than max_depth; CT_EINVAL: a string or key with a NUL character
 * or not UTF-8). `bytes`, when set, receives an estimate of the memory the copy holds. */
CT_RESULT ct_json_sorted_copy(const json_t *value, size_t max_depth, json_t **out, size_t *bytes, ct_err *err);

/* json_object_set_new that reports allocation failure; always consumes `value`. */
CT_RESULT ct_json_set_new(json_t *obj, const char *key, json_t *value, ct_err *err);

#endif
