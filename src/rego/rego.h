/*
 * rego.h - the coco-trust Rego policy engine (parser, compiler, top-down evaluator, built-ins).
 *
 * A policy is compiled once from one or more modules and is then immutable: rego_eval may be
 * called on the same rego_policy from many threads at once. Every evaluation allocates from its
 * own arena, bounded by rego_limits, and frees it before returning.
 *
 * Errors carry OPA-style codes as a prefix of err->msg ("rego_parse_error: policy.rego:3:5:
 * unexpected token", "eval_conflict_error: ...", "eval_builtin_error: ...").
 */
#ifndef REGO_H
#define REGO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "ct_status.h"

typedef struct rego_policy rego_policy; /* compiled, immutable; evaluated concurrently */

typedef struct rego_module {
  const char *name;   /* file name used in error messages */
  const char *source; /* NUL-terminated Rego text */
} rego_module;

/* A host function: args are Rego values converted to JSON (sets as sorted arrays); set *result to
 * a new reference, or leave it NULL for "undefined". Returning an error aborts evaluation with
 * eval_builtin_error. Called concurrently when the policy is evaluated from several threads. */
typedef CT_RESULT (*rego_host_fn)(void *ctx, json_t *const *args, size_t nargs, json_t **result,
                                  ct_err *err);
typedef struct rego_host_function {
  const char *name; /* e.g. "query_reference_value" or "ext.lookup" */
  size_t arity;
  rego_host_fn fn;
  void *ctx;
} rego_host_function;

/* 0 = default: 10M steps, depth 256, 256 MiB per evaluation. */
typedef struct rego_limits {
  size_t max_steps;
  size_t max_depth;
  size_t max_memory_bytes;
} rego_limits;

typedef struct rego_options {
  const rego_host_function *host_functions; /* copied by rego_compile */
  size_t n_host_functions;
  rego_limits limits;
} rego_options;

/* Parses and compiles the modules. On success *out is a new policy (free with rego_policy_free).
 * Parse errors: "rego_parse_error: file:row:col: msg"; compile errors: "rego_compile_error: ..."
 * / "rego_type_error: ..." / "rego_unsafe_var_error: ..." / "rego_recursion_error: ...". */
CT_RESULT rego_compile(const rego_module *modules, size_t n_modules, const rego_options *opts,
                       rego_policy **out, ct_err *err);
void rego_policy_free(rego_policy *p);

/* Evaluates a ref query such as "data.policy.allow" or "data.policy" against input/data (either
 * may be NULL). On success *result is a new reference, or NULL when the query is undefined.
 * The input is converted only when the policy or the query refers to `input` somewhere: one that
 * never does cannot see it, so it does not pay for it (nor can the input's size or depth fail it). */
CT_RESULT rego_eval(const rego_policy *p, const char *query, const json_t *input,
                    const json_t *data, json_t **result, ct_err *err);

/* rego_eval for several queries over the same input and data (results[i] for queries[i]), which
 * are converted to Rego values once instead of once per query. Each query is evaluated as
 * rego_eval would (its own rule caches, step budget and memory limit, the converted documents
 * counted in it), in order; the first error ends the call and leaves every result NULL. */
CT_RESULT rego_eval_queries(const rego_policy *p, const char *const *queries, size_t n, const json_t *input,
                            const json_t *data, json_t **results, ct_err *err);

/* Which definition decided a complete rule's value: the first definition whose body succeeded
 * (in source order, `else` branches included), or the rule's `default`. */
typedef struct rego_decision {
  bool defined;    /* the rule has a value */
  bool by_default; /* ... and it came from the `default` definition */
  char file[128];  /* module name as given to rego_compile */
  int row, col;    /* 1-based position of the deciding definition */
  size_t definitions; /* non-default definitions of the rule (an else chain counts once) */
} rego_decision;

/* Evaluates one complete rule ("data.pkg.rule") like rego_eval and also reports which definition
 * produced its value (for "why was this allowed/denied" explanations). CT_ENOTFOUND when the
 * reference does not name a complete rule of the policy. */
CT_RESULT rego_eval_decision(const rego_policy *p, const char *rule_ref, const json_t *input,
                             const json_t *data, json_t **result, rego_decision *why, ct_err *err);

/* Decodes a YAML stream like the policy built-in yaml.unmarshal (the first document; every
 * document must parse; YAML 1.2 core scalars; bounded size, depth and alias expansion). *out is a
 * new reference (JSON null for an empty stream). Errors read "yaml: line N: problem". Lives in
 * ct_rego_extras (with libyaml): link that library to use it. */
CT_RESULT rego_yaml_parse(const char *text, size_t len, json_t **out, ct_err *err);

/*
 * General queries (used by the CLI and the conformance runner). Input and data are JSON texts
 * (parsed with OPA's number model: integers of any size, decimals kept exactly); data may hold
 * several documents merged by the caller. The result is the JSON text of the list of solutions
 * in `opa eval --format json` shape:
 *   [{"expressions":[{"value":...,"text":"...","location":{"row":1,"col":1}}],"bindings":{...}}]
 * Caller frees *result_json with free().
 */
typedef struct rego_query_opts {
  const char *input_json; /* may be NULL (no input) */
  const char *data_json;  /* may be NULL (empty data) */
  const char *input_term; /* Rego term text (may hold sets); overrides input_json when set */
  bool strict_builtin_errors;
  int64_t now_ns; /* time.now_ns(); 0 = the real clock */
  /* Like `opa eval`: a query of one expression that does not iterate reports its value even
   * when it is false (`data.policy.allow` -> false rather than no result). Off, every
   * expression must be true, as in OPA's topdown tests. */
  bool capture_values;
} rego_query_opts;
CT_RESULT rego_query(const rego_policy *p, const char *query, const rego_query_opts *qo,
                     char **result_json, ct_err *err);

/* Lists the fully qualified names of rules whose last segment starts with "test_" (for
 * `rego test`). Caller frees each string and the array with free(). */
CT_RESULT rego_list_tests(const rego_policy *p, char ***names, size_t *n, ct_err *err);

#endif
