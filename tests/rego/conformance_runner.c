/*
 * conformance_runner - runs OPA compliance cases (converted from YAML to one JSON array by
 * conformance.py) through the coco-trust Rego engine and prints one line per case:
 *   PASS|FAIL|SKIP <TAB> file <TAB> note <TAB> reason
 * The comparison follows OPA's own harness (v1/topdown/exported_test.go): the result is a set
 * of binding objects; with sort_bindings each binding array is sorted; errors match by code
 * and by message substring.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_buf.h"
#include "ct_file.h"
#include "rego.h"
#include "rego_int.h"

static char *to_text(const rv *v) {
  ct_buf b;
  ct_err e;
  ct_buf_init(&b, 1u << 30);
  if (rg_json_write(v, &b, false, 0, &e)) {
    ct_buf_free(&b);
    return NULL;
  }
  return (char *)ct_buf_take(&b, NULL);
}

static int cmp_q(const void *x, const void *y) { return rv_cmp(*(rv *const *)x, *(rv *const *)y); }

/* Result JSON (list of {expressions, bindings}) -> set of binding objects. */
static rv *result_set(rg_arena *a, rv *res, bool sort_bindings, bool ignore_gen) {
  rv **items = rg_alloc(a, (res->n + 1) * sizeof(rv *));
  for (size_t i = 0; i < res->n; i++) {
    rv *b = rv_obj_gets(res->u.a[i], "bindings");
    if (!b) b = &rv_empty_obj_v;
    rv **ks = rg_alloc(a, (b->n + 1) * sizeof(rv *)), **vs = rg_alloc(a, (b->n + 1) * sizeof(rv *));
    size_t m = 0;
    for (size_t j = 0; j < b->n; j++) {
      if (ignore_gen && b->u.o.k[j]->t == RV_STR && !strncmp(b->u.o.k[j]->u.s, "__localq", 8)) continue;
      rv *v = b->u.o.v[j];
      if (sort_bindings && v->t == RV_ARR && v->n > 1) {
        v = rv_arr(a, v->u.a, v->n);
        qsort(v->u.a, v->n, sizeof(rv *), cmp_q);
      }
      ks[m] = b->u.o.k[j];
      vs[m++] = v;
    }
    items[i] = rv_obj(a, ks, vs, m, NULL);
  }
  return rv_set(a, items, res->n);
}

static rv *want_set(rg_arena *a, rv *want) {
  return rv_set(a, want->u.a, want->n);
}

static void out(const char *verdict, const char *file, const char *note, const char *reason) {
  printf("%s\t%s\t%s\t", verdict, file, note);
  for (const char *p = reason; *p; p++) putchar(*p == '\n' || *p == '\t' ? ' ' : *p);
  putchar('\n');
}

static const char *sget(rv *o, const char *k) {
  rv *v = rv_obj_gets(o, k);
  return v && v->t == RV_STR ? v->u.s : NULL;
}

static bool unimplemented(const char *msg, char *name, size_t cap) {
  const char *p = strstr(msg, "undefined function ");
  if (!p) return false;
  snprintf(name, cap, "%s", p + strlen("undefined function "));
  return true;
}

static void run_case(rv *c) {
  rg_arena a = {0};
  const char *file = sget(c, "file"), *note = sget(c, "note"), *query = sget(c, "query");
  char reason[1200];
  rv *mods = rv_obj_gets(c, "modules");
  size_t nm = mods && mods->t == RV_ARR ? mods->n : 0;
  rego_module *ms = calloc(nm + 1, sizeof(rego_module));
  char names[64][32];
  for (size_t i = 0; i < nm && i < 64; i++) {
    snprintf(names[i], sizeof(names[i]), "test-%zu.rego", i);
    ms[i].name = names[i];
    ms[i].source = mods->u.a[i]->u.s;
  }
  const char *want_code = sget(c, "want_error_code"), *want_err = sget(c, "want_error");
  rv *want = rv_obj_gets(c, "want_result");
  rv *sb = rv_obj_gets(c, "sort_bindings"), *ig = rv_obj_gets(c, "ignore_generated_vars");
  rv *strict = rv_obj_gets(c, "strict_error");
  ct_err err = {0};
  rego_policy *p = NULL;
  char *data = NULL, *input = NULL, *res = NULL;
  char fname[200];
  if (rego_compile(ms, nm < 64 ? nm : 64, NULL, &p, &err)) {
    if (unimplemented(err.msg, fname, sizeof(fname))) {
      snprintf(reason, sizeof(reason), "unimplemented built-in %s", fname);
      out("SKIP", file, note, reason);
    } else if ((want_code && strstr(err.msg, want_code)) || (want_err && strstr(err.msg, want_err))) {
      out("PASS", file, note, "");
    } else {
      snprintf(reason, sizeof(reason), "compile error: %s", err.msg);
      out("FAIL", file, note, reason);
    }
    goto done;
  }
  rv *d = rv_obj_gets(c, "data");
  if (d) data = to_text(d);
  rv *in = rv_obj_gets(c, "input");
  const char *in_term = sget(c, "input_term");
  if (in_term) {
    /* passed as a Rego term (sets stay sets) */
  } else if (in)
    input = to_text(in);
  rego_query_opts qo = {.input_json = input, .data_json = data, .strict_builtin_errors = strict && strict->b,
                        .now_ns = 0, .input_term = in_term};
  if (rego_query(p, query, &qo, &res, &err)) {
    if (unimplemented(err.msg, fname, sizeof(fname))) {
      snprintf(reason, sizeof(reason), "unimplemented built-in %s", fname);
      out("SKIP", file, note, reason);
    } else if (want_code || want_err) {
      bool ok = true;
      if (want_code && strncmp(err.msg, want_code, strlen(want_code))) ok = false;
      if (want_err && !strstr(err.msg, want_err)) {
        /* OPA prints "file:row: code: msg"; ours is "code: file:row:col: msg" */
        char alt[CT_ERR_MSG_MAX + 64];
        char code[64] = "", efile[128] = "";
        int row = 0, col = 0, off = 0;
        if (sscanf(err.msg, "%63[^:]: %127[^:]:%d:%d: %n", code, efile, &row, &col, &off) == 4 && off > 0) {
          snprintf(alt, sizeof(alt), "%s:%d: %s: %s", efile, row, code, err.msg + off);
          if (!strstr(alt, want_err)) ok = false;
        } else
          ok = false;
      }
      if (ok) out("PASS", file, note, "");
      else {
        snprintf(reason, sizeof(reason), "want error %s %s, got: %s", want_code ? want_code : "",
                 want_err ? want_err : "", err.msg);
        out("FAIL", file, note, reason);
      }
    } else {
      snprintf(reason, sizeof(reason), "unexpected error: %s", err.msg);
      out("FAIL", file, note, reason);
    }
    goto done;
  }
  if (want_code || want_err) {
    snprintf(reason, sizeof(reason), "want error %s %s, got result %.300s", want_code ? want_code : "",
             want_err ? want_err : "", res);
    out("FAIL", file, note, reason);
    goto done;
  }
  if (!want) {
    out("SKIP", file, note, "case has no want_result");
    goto done;
  }
  rv *got;
  if (rg_json_parse(&a, res, strlen(res), 0, &got, &err)) {
    snprintf(reason, sizeof(reason), "bad result JSON: %s", err.msg);
    out("FAIL", file, note, reason);
    goto done;
  }
  rv *gs = result_set(&a, got, sb && sb->b, ig && ig->b);
  rv *ws = want_set(&a, want);
  if (rv_eq(gs, ws)) out("PASS", file, note, "");
  else {
    char *g = to_text(gs), *w = to_text(ws);
    snprintf(reason, sizeof(reason), "want %.500s got %.500s", w, g);
    out("FAIL", file, note, reason);
    free(g);
    free(w);
  }
done:
  fflush(stdout);
  free(ms);
  free(data);
  free(input);
  free(res);
  rego_policy_free(p);
  rg_arena_free(&a);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: rego_conformance CASES.json\n");
    return 2;
  }
  uint8_t *txt;
  size_t len;
  ct_err err = {0};
  if (ct_file_read(argv[1], 1u << 30, &txt, &len, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return 2;
  }
  rg_arena a = {0};
  rv *cases;
  if (rg_json_parse(&a, (const char *)txt, len, 0, &cases, &err) || cases->t != RV_ARR) {
    fprintf(stderr, "cases: %s\n", err.msg);
    return 2;
  }
  const char *only = getenv("REGO_CASE");
  for (size_t i = 0; i < cases->n; i++) {
    if (only && !strstr(sget(cases->u.a[i], "note"), only)) continue;
    run_case(cases->u.a[i]);
  }
  rg_arena_free(&a);
  free(txt);
  return 0;
}
