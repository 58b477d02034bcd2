/*
 * rego - command-line front end of the coco-trust Rego engine.
 *
 *   rego eval [-d FILE.rego|FILE.json]... [-i INPUT.json] [--format json|raw|pretty]
 *             [--strict-builtin-errors] QUERY
 *   rego test FILE.rego...
 *
 * `eval --format json` prints the same structure as `opa eval --format json`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_buf.h"
#include "ct_file.h"
#include "rego.h"
#include "rego_int.h"

#define MAX_FILE (64u << 20)

static void usage(void) {
  fprintf(stderr,
          "usage: rego eval [-d FILE.rego|FILE.json]... [-i INPUT.json] [--format json|raw|pretty] "
          "[--strict-builtin-errors] QUERY\n"
          "       rego test FILE.rego...\n");
}

/* Re-indents compact JSON text (keeping member order), 2 spaces like opa. */
static void print_pretty(const char *s, FILE *o) {
  int ind = 0;
  bool str = false;
  for (size_t i = 0; s[i]; i++) {
    char c = s[i];
    if (str) {
      fputc(c, o);
      if (c == '\\' && s[i + 1]) fputc(s[++i], o);
      else if (c == '"') str = false;
      continue;
    }
    switch (c) {
      case '"': str = true; fputc(c, o); break;
      case '{':
      case '[':
        if (s[i + 1] == (c == '{' ? '}' : ']')) {
          fputc(c, o);
          fputc(s[++i], o);
          break;
        }
        fputc(c, o);
        ind++;
        fputc('\n', o);
        for (int k = 0; k < ind; k++) fputs("  ", o);
        break;
      case '}':
      case ']':
        ind--;
        fputc('\n', o);
        for (int k = 0; k < ind; k++) fputs("  ", o);
        fputc(c, o);
        break;
      case ',':
        fputc(c, o);
        fputc('\n', o);
        for (int k = 0; k < ind; k++) fputs("  ", o);
        break;
      case ':': fputs(": ", o); break;
      default: fputc(c, o);
    }
  }
  fputc('\n', o);
}

/* Prints an error as opa does: {"errors":[{"message","code","location"}]} */
static void print_error(const ct_err *err, const char *format) {
  const char *m = err->msg;
  const char *colon = strstr(m, ": ");
  char code[64] = "rego_error";
  const char *rest = m;
  if (colon && (size_t)(colon - m) < sizeof(code) && strchr(m, '_') && strchr(m, '_') < colon) {
    memcpy(code, m, (size_t)(colon - m));
    code[colon - m] = 0;
    rest = colon + 2;
  }
  if (strcmp(format, "json")) {
    fprintf(stderr, "%s\n", m);
    return;
  }
  /* file:row:col: */
  char file[256] = "";
  int row = 0, col = 0;
  const char *msg = rest;
  const char *c1 = strchr(rest, ':');
  if (c1 && (size_t)(c1 - rest) < sizeof(file) && sscanf(c1, ":%d:%d:", &row, &col) == 2) {
    memcpy(file, rest, (size_t)(c1 - rest));
    file[c1 - rest] = 0;
    const char *p = strstr(c1 + 1, ": ");
    msg = p ? p + 2 : c1;
  }
  ct_buf b;
  ct_err e2;
  ct_buf_init(&b, 1 << 20);
  rv mv = {.t = RV_STR, .n = (uint32_t)strlen(msg), .u.s = msg};
  rv cv = {.t = RV_STR, .n = (uint32_t)strlen(code), .u.s = code};
  rv fv = {.t = RV_STR, .n = (uint32_t)strlen(file), .u.s = file};
  ct_status st = ct_buf_append_str(&b, "{\"errors\":[{\"message\":", &e2);
  if (!st) st = rg_json_write(&mv, &b, false, 0, &e2);
  if (!st) st = ct_buf_append_str(&b, ",\"code\":", &e2);
  if (!st) st = rg_json_write(&cv, &b, false, 0, &e2);
  if (!st && row) {
    st = ct_buf_append_str(&b, ",\"location\":{\"file\":", &e2);
    if (!st) st = rg_json_write(&fv, &b, false, 0, &e2);
    if (!st) st = ct_buf_printf(&b, &e2, ",\"row\":%d,\"col\":%d}", row, col);
  }
  if (!st) st = ct_buf_append_str(&b, "}]}", &e2);
  if (!st) print_pretty((const char *)b.data, stdout);
  ct_buf_free(&b);
}

typedef struct {
  rego_module *mods;
  size_t nmods;
  char **datas;
  size_t ndatas;
} inputs;

static int load_file(const char *path, char **out) {
  ct_err err = {0};
  uint8_t *data = NULL;
  size_t len = 0;
  if (ct_file_read(path, MAX_FILE, &data, &len, &err)) {
    fprintf(stderr, "rego: %s\n", err.msg);
    return -1;
  }
  *out = malloc(len + 1);
  if (!*out) return -1;
  memcpy(*out, data, len);
  (*out)[len] = 0;
  free(data);
  return 0;
}

/* Merges the -d JSON documents into one object text (top-level keys). */
static char *merge_data(inputs *in) {
  if (!in->ndatas) return NULL;
  if (in->ndatas == 1) return strdup(in->datas[0]);
  ct_buf b;
  ct_err e2;
  ct_buf_init(&b, 1u << 30);
  if (ct_buf_append_str(&b, "{", &e2)) return NULL;
  bool first = true;
  for (size_t i = 0; i < in->ndatas; i++) {
    const char *s = in->datas[i];
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    if (*s != '{') continue;
    const char *e = strrchr(s, '}');
    if (!e) continue;
    const char *inner = s + 1;
    size_t len = (size_t)(e - inner);
    bool empty = true;
    for (size_t k = 0; k < len; k++)
      if (!strchr(" \n\t\r", inner[k])) empty = false;
    if (empty) continue;
    if (!first && ct_buf_append_str(&b, ",", &e2)) return NULL;
    if (ct_buf_append(&b, inner, len, &e2)) return NULL;
    first = false;
  }
  if (ct_buf_append_str(&b, "}", &e2)) return NULL;
  return (char *)ct_buf_take(&b, NULL);
}

static int cmd_eval(int argc, char **argv) {
  inputs in = {0};
  const char *input_path = NULL, *format = "json", *query = NULL;
  bool strict = false;
  in.mods = calloc((size_t)argc + 1, sizeof(rego_module));
  in.datas = calloc((size_t)argc + 1, sizeof(char *));
  if (!in.mods || !in.datas) return 2;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if ((!strcmp(a, "-d") || !strcmp(a, "--data")) && i + 1 < argc) {
      const char *f = argv[++i];
      char *txt;
      if (load_file(f, &txt)) return 2;
      size_t fl = strlen(f);
      if (fl > 5 && !strcmp(f + fl - 5, ".json")) in.datas[in.ndatas++] = txt;
      else {
        in.mods[in.nmods].name = f;
        in.mods[in.nmods++].source = txt;
      }
    } else if ((!strcmp(a, "-i") || !strcmp(a, "--input")) && i + 1 < argc) {
      input_path = argv[++i];
    } else if ((!strcmp(a, "-f") || !strcmp(a, "--format")) && i + 1 < argc) {
      format = argv[++i];
    } else if (!strncmp(a, "--format=", 9)) {
      format = a + 9;
    } else if (!strcmp(a, "--strict-builtin-errors")) {
      strict = true;
    } else if (a[0] == '-' && a[1]) {
      usage();
      return 2;
    } else query = a;
  }
  if (!query) {
    usage();
    return 2;
  }
  char *input = NULL;
  if (input_path && load_file(input_path, &input)) return 2;
  char *data = merge_data(&in);
  ct_err err = {0};
  rego_policy *p = NULL;
  int rc = 0;
  char *res = NULL;
  if (rego_compile(in.mods, in.nmods, NULL, &p, &err)) {
    print_error(&err, format);
    rc = 1;
  } else {
    rego_query_opts qo = {.input_json = input, .data_json = data, .strict_builtin_errors = strict,
                          .capture_values = true};
    if (rego_query(p, query, &qo, &res, &err)) {
      print_error(&err, format);
      rc = 1;
    }
  }
  if (!rc) {
    if (!strcmp(format, "json")) {
      if (!strcmp(res, "[]")) printf("{}\n");
      else {
        size_t n = strlen(res) + 32;
        char *full = malloc(n);
        if (!full) return 2;
        snprintf(full, n, "{\"result\":%s}", res);
        print_pretty(full, stdout);
        free(full);
      }
    } else {
      /* raw / pretty: the value of the first expression of each result */
      rg_arena a = {0};
      rv *v = NULL;
      if (rg_json_parse(&a, res, strlen(res), 0, &v, &err) == CT_OK && v->t == RV_ARR) {
        for (size_t i = 0; i < v->n; i++) {
          rv *ex = rv_obj_gets(v->u.a[i], "expressions");
          if (!ex || ex->t != RV_ARR || !ex->n) continue;
          rv *val = rv_obj_gets(ex->u.a[0], "value");
          if (!val) continue;
          ct_buf b;
          ct_buf_init(&b, 1u << 30);
          bool pretty = !strcmp(format, "pretty");
          if (!pretty && val->t == RV_STR) printf("%s\n", val->u.s);
          else if (rg_json_write(val, &b, pretty, 0, &err) == CT_OK) printf("%s\n", (const char *)b.data);
          ct_buf_free(&b);
        }
      }
      rg_arena_free(&a);
    }
  }
  free(res);
  rego_policy_free(p);
  for (size_t i = 0; i < in.nmods; i++) free((char *)in.mods[i].source);
  for (size_t i = 0; i < in.ndatas; i++) free(in.datas[i]);
  free(in.mods);
  free(in.datas);
  free(input);
  free(data);
  return rc;
}

static int cmd_test(int argc, char **argv) {
  rego_module *mods = calloc((size_t)argc + 1, sizeof(rego_module));
  char **datas = calloc((size_t)argc + 1, sizeof(char *));
  size_t nm = 0, nd = 0;
  if (!mods || !datas) return 2;
  for (int i = 0; i < argc; i++) {
    char *txt;
    if (load_file(argv[i], &txt)) return 2;
    size_t fl = strlen(argv[i]);
    if (fl > 5 && !strcmp(argv[i] + fl - 5, ".json")) datas[nd++] = txt;
    else {
      mods[nm].name = argv[i];
      mods[nm++].source = txt;
    }
  }
  inputs in = {mods, nm, datas, nd};
  char *data = merge_data(&in);
  ct_err err = {0};
  rego_policy *p = NULL;
  if (rego_compile(mods, nm, NULL, &p, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  char **names = NULL;
  size_t n = 0, pass = 0, fail = 0;
  if (rego_list_tests(p, &names, &n, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    char *res = NULL;
    rego_query_opts qo = {.data_json = data};
    ct_err e2 = {0};
    bool ok = false;
    if (rego_query(p, names[i], &qo, &res, &e2) == CT_OK) {
      /* passes when defined and not false */
      ok = strcmp(res, "[]") != 0 && !strstr(res, "{\"value\":false,");
    } else {
      printf("%s: ERROR: %s\n", names[i], e2.msg);
    }
    if (ok) pass++;
    else {
      fail++;
      printf("%s: FAIL\n", names[i]);
    }
    free(res);
    free(names[i]);
  }
  free(names);
  printf("--------------------------------------------------------------------------------\n");
  if (fail) printf("PASS: %zu/%zu\nFAIL: %zu/%zu\n", pass, n, fail, n);
  else printf("PASS: %zu/%zu\n", pass, n);
  rego_policy_free(p);
  for (size_t i = 0; i < nm; i++) free((char *)mods[i].source);
  for (size_t i = 0; i < nd; i++) free(datas[i]);
  free(mods);
  free(datas);
  free(data);
  return fail ? 2 : 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage();
    return 2;
  }
  if (!strcmp(argv[1], "eval")) return cmd_eval(argc - 2, argv + 2);
  if (!strcmp(argv[1], "test")) return cmd_test(argc - 2, argv + 2);
  usage();
  return 2;
}
