/*
 * rego_int.h - internals shared by the Rego engine's files (values, AST, evaluator context).
 * Not installed; only the src/rego sources include it.
 */
#ifndef REGO_INT_H
#define REGO_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_buf.h"
#include "ct_status.h"
#include "rego.h"

/* ---------------------------------------------------------------- arena */
/* Bump allocator. Everything an evaluation (or a compiled policy) allocates lives in one arena,
 * freed at once; `limit` bounds the total (0 = unbounded). */
typedef struct rg_chunk rg_chunk;
typedef struct rg_arena {
  rg_chunk *head;
  size_t total;
  size_t limit;
  bool exceeded;
} rg_arena;
struct rg_chunk {
  rg_chunk *next;
  size_t cap, used;
  _Alignas(16) unsigned char mem[];
};
void *rg_alloc_slow(rg_arena *a, size_t n);
/* zeroed; NULL when out of memory or over the limit */
static inline void *rg_alloc(rg_arena *a, size_t n) {
  size_t r = (n + 15) & ~(size_t)15;
  rg_chunk *c = a->head;
  if (r && c && c->cap - c->used >= r) {
    void *p = c->mem + c->used;
    c->used += r;
    __builtin_memset(p, 0, r);
    return p;
  }
  return rg_alloc_slow(a, n);
}
char *rg_strndup(rg_arena *a, const char *s, size_t n);
void rg_arena_free(rg_arena *a);

/* ---------------------------------------------------------------- values */
/* Type order is OPA's sort order across types. */
enum { RV_NULL, RV_BOOL, RV_NUM, RV_STR, RV_ARR, RV_OBJ, RV_SET };
enum { RN_INT, RN_DBL, RN_BIG };

typedef struct rv rv;
struct rv {
  uint8_t t;
  uint8_t nk;   /* number kind */
  bool b;
  uint32_t n;   /* length of string / array / set / object */
  const char *lit; /* numbers written as literals: the original text, echoed on output */
  union {
    int64_t i;
    double d;
    const char *s; /* string bytes (n of them, NUL-terminated), or RN_BIG decimal integer text */
    rv **a;        /* array items; set items (sorted, unique) */
    struct {
      rv **k;      /* sorted, unique */
      rv **v;
    } o;
  } u;
};

extern rv rv_null_v, rv_true_v, rv_false_v, rv_empty_arr_v, rv_empty_obj_v, rv_empty_set_v;
#define RV_TRUE (&rv_true_v)
#define RV_FALSE (&rv_false_v)

rv *rv_bool(bool b);
rv *rv_int(rg_arena *a, int64_t i);
rv *rv_dbl(rg_arena *a, double d);      /* integral values that fit become RN_INT */
rv *rv_num_text(rg_arena *a, const char *txt, size_t n); /* a JSON/Rego number literal */
rv *rv_str(rg_arena *a, const char *s, size_t n);
rv *rv_cstr(rg_arena *a, const char *s);
rv *rv_arr(rg_arena *a, rv **items, size_t n);     /* copies the item pointers */
rv *rv_set(rg_arena *a, rv **items, size_t n);     /* sorts and de-duplicates a copy */
/* Builds an object; duplicate keys with equal values are merged. Returns NULL with *conflict
 * set when a key has two different values. */
rv *rv_obj(rg_arena *a, rv **keys, rv **vals, size_t n, bool *conflict);
int rv_cmp(const rv *x, const rv *y);
int rg_dec_cmp(const rv *x, const rv *y); /* exact comparison of two numbers' decimal values */
bool rv_eq(const rv *x, const rv *y);
rv *rv_obj_get(const rv *o, const rv *key);
rv *rv_obj_gets(const rv *o, const char *key);
bool rv_set_has(const rv *s, const rv *x);
bool rv_num_is_int(const rv *x, int64_t *out);
double rv_num_dbl(const rv *x);
bool rv_truthy_false(const rv *x); /* the value is boolean false */

/* JSON text <-> values (OPA number model). */
CT_RESULT rg_json_parse(rg_arena *a, const char *s, size_t n, size_t max_depth, rv **out, ct_err *err);
CT_RESULT rg_json_write(const rv *v, ct_buf *out, bool pretty, int indent, ct_err *err);
CT_RESULT rg_num_write(const rv *v, ct_buf *out, ct_err *err);
/* borrow: strings point into `j`, which must outlive the values */
CT_RESULT rg_from_jansson(rg_arena *a, const json_t *j, size_t depth, bool borrow, rv **out, ct_err *err);
CT_RESULT rg_to_jansson(const rv *v, json_t **out, ct_err *err);
/* Rego text of a value (strings quoted, sets as {..}), used by sprintf %v and messages. */
CT_RESULT rg_value_write_rego(const rv *v, ct_buf *out, ct_err *err);

/* ---------------------------------------------------------------- AST */
enum {
  T_SCALAR, /* null/bool/number/string: val */
  T_VAR,
  T_REF,    /* elems[0] head, elems[1..n) path */
  T_ARR,
  T_SET,
  T_OBJ,    /* elems: k0 v0 k1 v1 ... (n = 2 * pairs) */
  T_ACOMP,  /* elems[0] head, body */
  T_SCOMP,
  T_OCOMP,  /* elems[0] key, elems[1] value, body */
  T_CALL,   /* elems: args; fname; resolved target */
  T_DATA,   /* the root `data` */
  T_INPUT,  /* the root `input` */
  T_TMPL,   /* $"..{x}..": val = array of n+1 literal strings, elems = n expressions */
};

typedef struct rg_body rg_body;
typedef struct rg_term rg_term;
typedef struct rg_builtin rg_builtin;
typedef struct rg_node rg_node;

struct rg_term {
  uint8_t kind;
  bool ground;     /* no variables anywhere: val holds the constant */
  bool wildcard;   /* a `_` */
  bool generated;  /* a variable hoist.c introduced: bound by its own expression before any use */
  int row, col;
  rv *val;
  const char *name; /* var name / call name */
  int slot;         /* var slot in the rule frame */
  rg_term **elems;
  size_t n;
  rg_body *body;
  /* T_CALL targets */
  const rg_builtin *bi;
  int host;          /* index into host functions, or -1 */
  rg_node *fn;       /* user function node */
  rg_term *fnref;    /* call through a data ref (unresolved node) */
};

enum {
  E_TERM,   /* a: must be defined and not false */
  E_UNIFY,  /* a = b */
  E_ASSIGN, /* a := b */
  E_SOME,   /* some x, y (declaration only) */
  E_SOMEIN, /* some a, b in c  (a may be NULL) */
  E_EVERY,  /* every a, b in c { body } */
  E_NOT,    /* not sub */
  E_AND,    /* ops[0] and ops[1] ... (experimental logic operators) */
  E_OR,     /* ops[0] or ops[1] ... */
};

typedef struct rg_with {
  rg_term *target; /* ref: input..., data..., or a function name */
  rg_term *value;
} rg_with;

typedef struct rg_expr {
  uint8_t kind;
  int row, col;
  rg_term *a, *b, *c;
  rg_body *body;            /* every */
  struct rg_expr *sub;      /* not */
  rg_body *pre;             /* not: operands evaluated before the negation (hoist.c) */
  size_t npre_bind;         /* the first npre_bind of pre are nested calls, whose variables bind */
  rg_body **ops;            /* and / or operands */
  size_t nops;
  rg_with *with;
  size_t nwith;
} rg_expr;

struct rg_body {
  rg_expr **e;
  size_t n;
};

enum { R_COMPLETE, R_PSET, R_POBJ, R_FUNC, R_GENERAL /* ref head with a dynamic path: key is an array term */ };

typedef struct rg_rule {
  int kind;
  bool is_default;
  bool v0body;         /* written without `if` */
  bool multi;          /* R_GENERAL with `contains`: the leaf is a set */
  const char *file;
  int row, col;
  rg_term *key;        /* partial set element / partial object key */
  rg_term *value;      /* NULL => true */
  rg_term **args;
  size_t nargs;
  rg_body *body;
  struct rg_rule *els;
  int nslots;
  rg_node *node;
  struct rg_module *mod;
} rg_rule;

typedef struct rg_import {
  const char *alias;
  rg_term *path; /* ref */
} rg_import;

typedef struct rg_module {
  const char *file;
  rg_term *pkg;          /* ref data.a.b */
  const char **pkgpath;  /* path segments */
  size_t npkgpath;
  rg_import *imports;
  size_t nimports;
  rg_rule **rules;
  size_t nrules;
  bool v1;               /* import rego.v1 or v1 syntax seen */
  bool not_body;         /* future.keywords(.not) or rego.v2: `not` covers its whole expression */
} rg_module;

struct rg_node {
  const char *name;
  rg_node *parent;
  rg_node **kids;
  size_t nkids;
  rg_rule **rules;  /* definitions (not default) */
  size_t nrules;
  rg_rule *dflt;
  int kind;         /* -1 = no rules here */
  int id;
  size_t arity;     /* functions */
};

/* ---------------------------------------------------------------- parser */
CT_RESULT rg_parse_module(rg_arena *a, const char *file, const char *src, rg_module **out, ct_err *err);
CT_RESULT rg_parse_query(rg_arena *a, const char *src, rg_body **out, ct_err *err);

/* ---------------------------------------------------------------- policy */
typedef struct rg_qcache_entry rg_qcache_entry;

struct rego_policy {
  rg_arena arena;
  pthread_mutex_t qlock; /* guards qcache */
  rg_qcache_entry *qcache;
  rg_module **mods;
  size_t nmods;
  rg_node *root;
  int nnodes;
  rego_host_function *host;
  size_t nhost;
  rego_limits limits;
  bool reads_input; /* some rule or function refers to `input` */
};

typedef struct rg_compiled_query {
  rg_body *body;
  int nslots;
  const char **slotnames; /* user-visible names (NULL for generated) */
  bool reads_input;       /* the query itself refers to `input` */
} rg_compiled_query;

CT_RESULT rg_compile_query(const rego_policy *p, rg_arena *a, const char *query, rg_compiled_query *out,
                           ct_err *err);
rg_node *rg_node_child(const rg_node *n, const char *name);
/* hoist.c: OPA evaluates some operands of a negated expression outside the negation; these do the
 * same for every `not` in a rule (all its bodies) or a query body, taking new variable slots from
 * *nslots. */
CT_RESULT rg_hoist_rule(rg_arena *a, rg_rule *r, int *nslots, ct_err *err);
CT_RESULT rg_hoist_body(rg_arena *a, rg_body *b, bool query, int *nslots, ct_err *err);

/* ---------------------------------------------------------------- evaluation */
typedef struct rg_ev rg_ev;

/* A built-in: computes *out from args (NULL = undefined). Errors are reported with
 * rg_bi_fail / rg_bi_type so that they carry OPA's codes. */
typedef CT_RESULT (*rg_bi_fn)(rg_ev *ev, rv **args, rv **out);
struct rg_builtin {
  const char *name;
  int arity;      /* -1: variadic (print) */
  rg_bi_fn fn;
  bool nondet;
};
const rg_builtin *rg_builtin_find(const char *name);
/* Adds the OPA-only families (a NULL-terminated list of tables); called before main by
 * ct_rego_extras when it is linked. */
void rg_builtins_add_extras(const rg_builtin *const *tables);
/* Per-family registries, each NULL-terminated. The OPA-only ones (net to tmpl) are defined in
 * ct_rego_extras. */
extern const rg_builtin rg_builtins_core[];
extern const rg_builtin rg_builtins_str[];
extern const rg_builtin rg_builtins_coll[];
extern const rg_builtin rg_builtins_enc[];
extern const rg_builtin rg_builtins_time[];
extern const rg_builtin rg_builtins_regex[];
extern const rg_builtin rg_builtins_net[];
extern const rg_builtin rg_builtins_json[];
extern const rg_builtin rg_builtins_jwt[];
extern const rg_builtin rg_builtins_uri[];
extern const rg_builtin rg_builtins_graphql[];
extern const rg_builtin rg_builtins_x509[];
extern const rg_builtin rg_builtins_glob[];
extern const rg_builtin rg_builtins_yaml[];
extern const rg_builtin rg_builtins_tmpl[];
CT_RESULT rg_bi_walk(rg_ev *ev, rv **args, rv **out); /* a relation: one result per element */

rg_arena *rg_ev_arena(rg_ev *ev);
int64_t rg_ev_now(rg_ev *ev);
CT_RESULT rg_bi_fail(rg_ev *ev, const char *fmt, ...) CT_PRINTF(2, 3);  /* eval_builtin_error */
CT_RESULT rg_bi_type(rg_ev *ev, const char *fmt, ...) CT_PRINTF(2, 3);  /* eval_type_error */
CT_RESULT rg_bi_oom(rg_ev *ev);
/* Type check helper: fails with "NAME: operand N must be TYPE but got T". */
CT_RESULT rg_bi_want(rg_ev *ev, const char *name, int argn, rv *v, int type);
const char *rg_type_name(const rv *v);
struct bignum_st;
rv *rg_bn_to_rv(rg_arena *a, const struct bignum_st *b); /* exact integer value */

#endif
