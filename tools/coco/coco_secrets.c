/*
 * coco_secrets.c - `coco secrets load`: the pattern's values-secret file (format 2.0, as
 * validatedpatterns' vault_utils reads it) into Vault/OpenBao or straight into a KBS.
 *
 *   secrets:
 *   - name: kbsres1              # Vault: <mount>/<prefix>/kbsres1 (KV v2), one field per key
 *     vaultPrefixes: [hub]       # default [hub]
 *     fields:
 *     - name: key1
 *       value: ''                # a value, or
 *       path: ~/file             # a file's contents (~ is $HOME; relative: --base-dir or the YAML's folder)
 *       onMissingValue: generate # error (default) | generate: 24 random alphanumerics
 *       base64: true             # store base64(value)
 *
 * Vault: a field that already exists is kept unless the YAML gives its value (or path), so
 * loading twice does not rotate generated secrets; `override: true` regenerates it.
 * KBS: every hub secret becomes resources kbs:///default/<type>/<field>, named as the pattern's
 * trustee chart names the Kubernetes Secrets its ExternalSecrets create (attestationStatus ->
 * attestation-status, securityPolicyConfig -> security-policy, ...). pcrStash becomes reference
 * values (snp_/tdx_pcrNN; PCR8 from --initdata); kbsPublicKey (the admin key itself) and
 * non-hub secrets (global: sshKey) are not resources. The KBS cannot read a resource back, so a
 * generated field is new on every load.
 *
 * Nothing secret is printed: only names, sizes and what was done.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coco.h"
#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_http.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "jose.h"
#include "rego.h"

#define COCO__SECRETS_MAX 256
#define COCO__FIELDS_MAX 64
#define COCO__VALUE_MAX (1u << 20)
#define COCO__GEN_LEN 24

static int coco__secrets_usage(void) {
  fprintf(stderr,
          "usage: coco secrets load VALUES-SECRET.yaml\n"
          "         (--vault-url URL [--vault-token-file FILE] [--vault-cacert PEM] [--vault-mount secret]\n"
          "          | --kbs-url URL [--kbs-cert PEM] (--admin-key KEY | --admin-token-file FILE) [--initdata FILE])\n"
          "         [--base-dir DIR] [--dry-run]\n"
          "The Vault token comes from --vault-token-file or the environment (VAULT_TOKEN, BAO_TOKEN).\n");
  return 2;
}

typedef struct coco__load {
  const char *file, *vault_url, *vault_token_file, *vault_cacert, *mount;
  const char *kbs_url, *kbs_cert, *admin_key, *admin_token_file, *initdata, *base_dir;
  bool dry_run;
  char *token;        /* Vault token or KBS admin token (secret) */
  char yaml_dir[4096];
} coco__load;

/* One resolved field: the value bytes (secret) and where they came from. */
typedef struct coco__field {
  char name[128];
  char *value; /* NULL: generate (or keep an existing Vault value) */
  size_t len;
  bool generate, override;
  const char *origin; /* "value", "file", "generated" */
} coco__field;

static bool coco__safe_name(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max || !strcmp(s, ".") || !strcmp(s, "..")) return false;
  for (size_t i = 0; i < n; i++)
    if (!(isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '_' || s[i] == '.')) return false;
  return true;
}

static void coco__fields_free(coco__field *f, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (f[i].value) {
      ct_wipe(f[i].value, f[i].len);
      free(f[i].value);
    }
  }
}

static CT_RESULT coco__generate(coco__field *f, ct_err *err) {
  static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  uint8_t rnd[COCO__GEN_LEN * 2];
  f->value = malloc(COCO__GEN_LEN + 1);
  CT_ENSURE(f->value, err, CT_ENOMEM, "out of memory");
  size_t n = 0;
  while (n < COCO__GEN_LEN) {
    CT_GUARD(ct_random(rnd, sizeof rnd, err));
    /* rejection sampling: 62 symbols, no modulo bias */
    for (size_t i = 0; i < sizeof rnd && n < COCO__GEN_LEN; i++)
      if (rnd[i] < 248) f->value[n++] = alnum[rnd[i] % 62];
  }
  ct_wipe(rnd, sizeof rnd);
  f->value[n] = '\0';
  f->len = n;
  f->origin = "generated";
  return CT_OK;
}

static CT_RESULT coco__read_path(const coco__load *l, const char *path, char **out, size_t *len, ct_err *err) {
  char full[4096];
  int n;
  if (!strncmp(path, "~/", 2)) {
    const char *home = getenv("HOME");
    CT_ENSURE(home && *home, err, CT_EINVAL, "path %s: HOME is not set", path);
    n = snprintf(full, sizeof full, "%s/%s", home, path + 2);
  } else if (path[0] == '/') {
    n = snprintf(full, sizeof full, "%s", path);
  } else {
    n = snprintf(full, sizeof full, "%s/%s", l->base_dir ? l->base_dir : l->yaml_dir, path);
  }
  CT_ENSURE(n > 0 && (size_t)n < sizeof full, err, CT_ELIMIT, "path %.64s...: longer than %zu bytes", path,
            sizeof full - 1);
  return coco_read(full, COCO__VALUE_MAX, out, len, err);
}

/* Resolves the fields of one secret (values and files; generation is decided per target). */
static CT_RESULT coco__resolve(const coco__load *l, const char *secret, const json_t *fields, coco__field *out,
                               size_t *n, ct_err *err) {
  *n = 0;
  CT_ENSURE(json_is_array(fields) && json_array_size(fields) > 0, err, CT_EINVAL,
            "secret %s: fields must be a non-empty list", secret);
  CT_ENSURE(json_array_size(fields) <= COCO__FIELDS_MAX, err, CT_ELIMIT, "secret %s: more than %d fields", secret,
            COCO__FIELDS_MAX);
  size_t i;
  json_t *fd;
  json_array_foreach(fields, i, fd) {
    coco__field *f = &out[*n];
    memset(f, 0, sizeof *f);
    const char *name = json_string_value(json_object_get(fd, "name"));
    CT_ENSURE(name && coco__safe_name(name, sizeof f->name - 1), err, CT_EINVAL,
              "secret %s: field %zu has no name of letters, digits, '-', '_' or '.'", secret, i + 1);
    snprintf(f->name, sizeof f->name, "%s", name);
    const json_t *value = json_object_get(fd, "value");
    const char *path = json_string_value(json_object_get(fd, "path"));
    const char *missing = json_string_value(json_object_get(fd, "onMissingValue"));
    const json_t *ini = json_object_get(fd, "ini_file");
    CT_ENSURE(!ini, err, CT_EUNSUPPORTED, "secret %s field %s: ini_file is not supported", secret, name);
    CT_ENSURE(!value || json_is_string(value) || json_is_null(value), err, CT_EINVAL,
              "secret %s field %s: value must be a string", secret, name);
    f->override = json_is_true(json_object_get(fd, "override"));
    bool b64 = json_is_true(json_object_get(fd, "base64"));
    (*n)++;
    if (json_string_length(value) > 0) {
      CT_ENSURE(json_string_length(value) <= COCO__VALUE_MAX, err, CT_ELIMIT, "secret %s field %s: value over %u bytes",
                secret, name, COCO__VALUE_MAX);
      CT_GUARD(ct_strndup(json_string_value(value), json_string_length(value), &f->value, err));
      f->len = json_string_length(value);
      f->origin = "value";
    } else if (path) {
      ct_status st = coco__read_path(l, path, &f->value, &f->len, err);
      if (st) return ct_err_prefix(err, "secret %s field %s: ", secret, name);
      f->origin = "file";
    } else if (missing && !strcmp(missing, "generate")) {
      f->generate = true;
      f->origin = "generated";
      continue;
    } else if (missing && !strcmp(missing, "prompt")) {
      return ct_fail(err, CT_EUNSUPPORTED, "secret %s field %s: onMissingValue prompt needs a terminal; give a value "
                     "or a path", secret, name);
    } else {
      return ct_fail(err, CT_EINVAL, "secret %s field %s: no value, no path and onMissingValue is not generate",
                     secret, name);
    }
    if (b64) {
      char *enc = NULL;
      ct_status st = ct_b64_encode(CT_B64_STD, (const uint8_t *)f->value, f->len, &enc, err);
      ct_wipe(f->value, f->len);
      free(f->value);
      f->value = enc;
      f->len = enc ? strlen(enc) : 0;
      CT_GUARD(st);
    }
  }
  return CT_OK;
}

/* --- HTTP ------------------------------------------------------------------------------------- */

static CT_RESULT coco__http(const coco__load *l, const char *method, const char *url, const char *auth_header,
                            const char *ctype, const void *body, size_t len, ct_http_resp *resp, ct_err *err) {
  char auth[8192], ct[128];
  const char *headers[3] = {NULL, NULL, NULL};
  size_t nh = 0;
  if (auth_header) {
    snprintf(auth, sizeof auth, "%s%s", auth_header, l->token);
    headers[nh++] = auth;
  }
  if (ctype) {
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    headers[nh++] = ct;
  }
  ct_http_opts o = {.ca_file = l->vault_url ? l->vault_cacert : l->kbs_cert, .timeout_ms = 30000,
                    .max_body = 4u << 20, .log_tag = "coco"};
  ct_http_req rq = {.method = method, .url = url, .headers = headers, .body = body, .body_len = len};
  ct_status st = ct_http_call(&o, &rq, resp, err);
  ct_wipe(auth, sizeof auth);
  return st;
}

/* "HTTP 403: {detail}" from a Vault ({"errors":[...]}) or KBS ({"type","detail"}) error body. */
static CT_RESULT coco__http_refused(const char *what, const ct_http_resp *r, ct_err *err) {
  json_t *e = NULL;
  ct_err ignored;
  const char *detail = NULL;
  if (r->body.len && ct_json_parse((const char *)r->body.data, r->body.len, 8, &e, &ignored) == CT_OK) {
    detail = json_string_value(json_object_get(e, "detail"));
    if (!detail) detail = json_string_value(json_array_get(json_object_get(e, "errors"), 0));
  }
  ct_status st = ct_fail(err, r->status == 401 || r->status == 403 ? CT_EDENIED : CT_EIO, "%s: HTTP %ld%s%.300s", what,
                         r->status, detail ? ": " : "", detail ? detail : "");
  json_decref(e);
  return st;
}

/* --- Vault ------------------------------------------------------------------------------------ */

static CT_RESULT coco__vault_secret(coco__load *l, const char *prefix, const char *secret, coco__field *f, size_t n,
                                    ct_err *err) {
  char url[4096], what[512];
  snprintf(url, sizeof url, "%s/v1/%s/data/%s/%s", l->vault_url, l->mount, prefix, secret);
  snprintf(what, sizeof what, "vault %s/%s/%s", l->mount, prefix, secret);
  /* Existing values: kept for generated fields (loading twice must not rotate them). */
  json_t *existing = NULL;
  bool need_existing = false;
  for (size_t i = 0; i < n; i++) need_existing = need_existing || (f[i].generate && !f[i].override);
  ct_status st = CT_OK;
  if (need_existing && !l->dry_run) {
    ct_http_resp r = {0};
    CT_GUARD(coco__http(l, "GET", url, "X-Vault-Token: ", NULL, NULL, 0, &r, err));
    json_t *doc = NULL;
    if (r.status == 200) {
      st = ct_json_parse((const char *)r.body.data, r.body.len, 16, &doc, err);
      if (!st) existing = json_incref(json_object_get(json_object_get(doc, "data"), "data"));
    } else if (r.status != 404) {
      st = coco__http_refused(what, &r, err);
    }
    json_decref(doc);
    ct_http_resp_free(&r);
    CT_GUARD(st);
  }
  json_t *data = json_object();
  ct_buf report;
  ct_buf_init(&report, 1u << 16);
  CT_ENSURE(data, err, CT_ENOMEM, "out of memory");
  for (size_t i = 0; i < n && !st; i++) {
    const char *how = f[i].origin;
    const char *keep = f[i].generate && !f[i].override ? json_string_value(json_object_get(existing, f[i].name)) : NULL;
    if (keep) {
      st = ct_json_set_new(data, f[i].name, json_string(keep), err);
      how = "kept";
    } else {
      if (f[i].generate && !f[i].value) st = coco__generate(&f[i], err);
      if (!st) {
        json_t *s = json_stringn(f[i].value, f[i].len);
        st = s ? ct_json_set_new(data, f[i].name, s, err)
               : ct_fail(err, CT_EINVAL, "%s field %s: the value is not UTF-8 text (use base64: true)", what, f[i].name);
      }
    }
    if (!st) st = ct_buf_printf(&report, err, "%s%s (%s)", i ? ", " : "", f[i].name, how);
  }
  if (!st && !l->dry_run) {
    json_t *body = json_pack("{s:O}", "data", data);
    char *text = NULL;
    st = body ? ct_json_dump(body, &text, err) : ct_fail(err, CT_ENOMEM, "out of memory");
    json_decref(body);
    ct_http_resp r = {0};
    if (!st) st = coco__http(l, "POST", url, "X-Vault-Token: ", "application/json", text, strlen(text), &r, err);
    if (!st && r.status != 200 && r.status != 204) st = coco__http_refused(what, &r, err);
    ct_http_resp_free(&r);
    if (text) {
      ct_wipe(text, strlen(text));
      free(text);
    }
  }
  if (!st) printf("%s%s: %s\n", l->dry_run ? "would write " : "", what, report.data ? (char *)report.data : "");
  ct_buf_free(&report);
  /* the JSON held secret strings: jansson frees them without wiping; keep the copies short-lived */
  json_decref(data);
  json_decref(existing);
  return st;
}

/* --- KBS -------------------------------------------------------------------------------------- */

/* The Kubernetes Secret names the pattern's trustee chart gives its ExternalSecrets' targets,
 * which the Trustee operator publishes as kbs:///default/<name>/<key>. */
static const char *coco__kbs_type(const char *secret) {
  static const char *const map[][2] = {{"attestationStatus", "attestation-status"},
                                       {"securityPolicyConfig", "security-policy"},
                                       {"cosignKeys", "cosign-keys"},
                                       {"coSignKeys", "cosign-keys"}};
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (!strcmp(secret, map[i][0])) return map[i][1];
  return secret;
}

static CT_RESULT coco__kbs_post(coco__load *l, const char *path, const char *ctype, const void *body, size_t len,
                                const char *what, ct_err *err) {
  char url[4096];
  snprintf(url, sizeof url, "%s%s", l->kbs_url, path);
  ct_http_resp r = {0};
  ct_status st = coco__http(l, "POST", url, "Authorization: Bearer ", ctype, body, len, &r, err);
  if (!st && r.status != 200) st = coco__http_refused(what, &r, err);
  ct_http_resp_free(&r);
  return st;
}

static CT_RESULT coco__kbs_secret(coco__load *l, const char *secret, coco__field *f, size_t n, ct_err *err) {
  if (!strcmp(secret, "kbsPublicKey")) {
    printf("kbs: %s skipped (the KBS's own admin key: the kbs chart mounts it)\n", secret);
    return CT_OK;
  }
  if (!strcmp(secret, "pcrStash")) {
    /* The measurements become reference values, as the pattern's ACM policy builds them. */
    const coco__field *js = NULL;
    for (size_t i = 0; i < n; i++)
      if (!strcmp(f[i].name, "json") && f[i].value) js = &f[i];
    CT_ENSURE(js, err, CT_EINVAL, "secret pcrStash: no field \"json\" with the measurements");
    json_t *doc = NULL, *values = NULL;
    uint8_t pcr8[32];
    CT_GUARD(ct_json_parse(js->value, js->len, 16, &doc, err));
    ct_status st = l->initdata ? coco_initdata_pcr8_of(l->initdata, pcr8, err) : CT_OK;
    if (!st) st = coco_refvalues_build(doc, "pcrStash", l->initdata ? pcr8 : NULL, NULL, &values, err);
    json_decref(doc);
    char *msg = NULL;
    if (!st) st = coco_refvalues_message(values, &msg, err);
    if (!st && !l->dry_run) st = coco__kbs_post(l, "/kbs/v0/reference-value", "application/json", msg, strlen(msg),
                                                "kbs reference values", err);
    if (!st) printf("%skbs: reference values from pcrStash: %zu (snp_/tdx_ pcr03, pcr08%s, pcr09, pcr11, pcr12)\n",
                    l->dry_run ? "would register " : "", json_object_size(values),
                    l->initdata ? " from --initdata" : " from the file");
    free(msg);
    json_decref(values);
    return st;
  }
  const char *type = coco__kbs_type(secret);
  for (size_t i = 0; i < n; i++) {
    if (f[i].generate && !f[i].value) CT_GUARD(coco__generate(&f[i], err));
    char path[512], what[512];
    snprintf(path, sizeof path, "/kbs/v0/resource/default/%s/%s", type, f[i].name);
    snprintf(what, sizeof what, "kbs resource default/%s/%s", type, f[i].name);
    if (!l->dry_run)
      CT_GUARD(coco__kbs_post(l, path, "application/octet-stream", f[i].value, f[i].len, what, err));
    printf("%s%s: %zu bytes (%s)\n", l->dry_run ? "would write " : "", what, f[i].len, f[i].origin);
  }
  return CT_OK;
}

/* --- driver ----------------------------------------------------------------------------------- */

static CT_RESULT coco__token(coco__load *l, ct_err *err) {
  if (l->vault_url) {
    if (l->vault_token_file) {
      size_t len = 0;
      CT_GUARD(coco_read(l->vault_token_file, 8192, &l->token, &len, err));
      while (len && strchr(" \t\r\n", l->token[len - 1])) l->token[--len] = '\0';
    } else {
      const char *t = getenv("VAULT_TOKEN");
      if (!t || !*t) t = getenv("BAO_TOKEN");
      CT_ENSURE(t && *t, err, CT_EINVAL, "no Vault token: give --vault-token-file or set VAULT_TOKEN");
      CT_GUARD(ct_strdup(t, &l->token, err));
    }
    CT_ENSURE(*l->token && !strpbrk(l->token, "\r\n"), err, CT_EINVAL, "the Vault token is empty or not one line");
    return CT_OK;
  }
  if (l->admin_token_file) {
    size_t len = 0;
    CT_GUARD(coco_read(l->admin_token_file, 8192, &l->token, &len, err));
    while (len && strchr(" \t\r\n", l->token[len - 1])) l->token[--len] = '\0';
    CT_ENSURE(*l->token && !strpbrk(l->token, "\r\n"), err, CT_EINVAL, "the admin token is empty or not one line");
    return CT_OK;
  }
  char *pem = NULL;
  size_t len = 0;
  CT_GUARD(coco_read(l->admin_key, 1u << 20, &pem, &len, err));
  jose_jwk *key = NULL;
  ct_status st = jose_jwk_from_pem(pem, len, NULL, &key, err);
  ct_wipe(pem, len);
  free(pem);
  if (st) return ct_err_prefix(err, "%s: ", l->admin_key);
  st = jose_admin_token(key, "coco", 600, &l->token, err);
  jose_jwk_free(key);
  return st;
}

static CT_RESULT coco__load_all(coco__load *l, ct_err *err) {
  char *text = NULL;
  size_t len = 0;
  CT_GUARD(coco_read(l->file, COCO_FILE_MAX, &text, &len, err));
  json_t *doc = NULL;
  ct_status st = rego_yaml_parse(text, len, &doc, err);
  ct_wipe(text, len);
  free(text);
  if (st) return ct_err_prefix(err, "%s: ", l->file);
  json_t *ver = json_object_get(doc, "version");
  json_t *secrets = json_object_get(doc, "secrets");
  if (!(json_is_string(ver) && !strcmp(json_string_value(ver), "2.0")) && !(json_is_real(ver) && json_real_value(ver) == 2.0))
    st = ct_fail(err, CT_EUNSUPPORTED, "%s: version must be \"2.0\" (the values-secret format the pattern uses)", l->file);
  else if (!json_is_array(secrets) || json_array_size(secrets) > COCO__SECRETS_MAX)
    st = ct_fail(err, CT_EINVAL, "%s: secrets must be a list of at most %d entries", l->file, COCO__SECRETS_MAX);
  if (!st && !l->dry_run) st = coco__token(l, err);
  coco__field *fields = calloc(COCO__FIELDS_MAX, sizeof *fields);
  if (!st && !fields) st = ct_fail(err, CT_ENOMEM, "out of memory");
  size_t i;
  json_t *s;
  json_array_foreach(secrets, i, s) {
    if (st) break;
    const char *name = json_string_value(json_object_get(s, "name"));
    if (!name || !coco__safe_name(name, 128)) {
      st = ct_fail(err, CT_EINVAL, "%s: secret %zu has no name of letters, digits, '-', '_' or '.'", l->file, i + 1);
      break;
    }
    json_t *prefixes = json_object_get(s, "vaultPrefixes");
    if (prefixes && (!json_is_array(prefixes) || json_array_size(prefixes) == 0 || json_array_size(prefixes) > 8)) {
      st = ct_fail(err, CT_EINVAL, "secret %s: vaultPrefixes must be a list of 1 to 8 names", name);
      break;
    }
    size_t nf = 0;
    st = coco__resolve(l, name, json_object_get(s, "fields"), fields, &nf, err);
    if (!st && l->vault_url) {
      if (!prefixes) {
        st = coco__vault_secret(l, "hub", name, fields, nf, err);
      } else {
        size_t k;
        json_t *p;
        json_array_foreach(prefixes, k, p) {
          const char *pfx = json_string_value(p);
          if (!pfx || !coco__safe_name(pfx, 64)) st = ct_fail(err, CT_EINVAL, "secret %s: bad vault prefix", name);
          if (!st) st = coco__vault_secret(l, pfx, name, fields, nf, err);
          if (st) break;
        }
      }
    } else if (!st) {
      bool hub = !prefixes;
      size_t k;
      json_t *p;
      json_array_foreach(prefixes, k, p) hub = hub || (json_is_string(p) && !strcmp(json_string_value(p), "hub"));
      if (hub) st = coco__kbs_secret(l, name, fields, nf, err);
      else printf("kbs: %s skipped (not a hub secret)\n", name);
    }
    coco__fields_free(fields, nf);
  }
  free(fields);
  json_decref(doc);
  return st;
}

int coco_secrets_main(int argc, char **argv) {
  if (argc < 1 || strcmp(argv[0], "load") != 0) return coco__secrets_usage();
  coco__load l = {.mount = "secret"};
  bool bad = false;
  for (int i = 1; i < argc && !bad; i++) {
    if (coco_opt(argc, argv, &i, "--vault-url", &l.vault_url, &bad) ||
        coco_opt(argc, argv, &i, "--vault-token-file", &l.vault_token_file, &bad) ||
        coco_opt(argc, argv, &i, "--vault-cacert", &l.vault_cacert, &bad) ||
        coco_opt(argc, argv, &i, "--vault-mount", &l.mount, &bad) || coco_opt(argc, argv, &i, "--kbs-url", &l.kbs_url, &bad) ||
        coco_opt(argc, argv, &i, "--kbs-cert", &l.kbs_cert, &bad) ||
        coco_opt(argc, argv, &i, "--admin-key", &l.admin_key, &bad) ||
        coco_opt(argc, argv, &i, "--admin-token-file", &l.admin_token_file, &bad) ||
        coco_opt(argc, argv, &i, "--initdata", &l.initdata, &bad) || coco_opt(argc, argv, &i, "--base-dir", &l.base_dir, &bad))
      continue;
    if (!strcmp(argv[i], "--dry-run")) l.dry_run = true;
    else if (argv[i][0] != '-' && !l.file) l.file = argv[i];
    else {
      fprintf(stderr, "coco: secrets load: unexpected argument %s\n", argv[i]);
      bad = true;
    }
  }
  if (bad || !l.file || (!l.vault_url == !l.kbs_url)) return coco__secrets_usage();
  if (l.kbs_url && !l.dry_run && !l.admin_key == !l.admin_token_file) {
    fprintf(stderr, "coco: secrets load: the KBS needs exactly one of --admin-key and --admin-token-file\n");
    return 2;
  }
  if (!coco__safe_name(l.mount, 64)) {
    fprintf(stderr, "coco: secrets load: --vault-mount must be a plain name\n");
    return 2;
  }
  const char *url = l.vault_url ? l.vault_url : l.kbs_url;
  if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0) {
    fprintf(stderr, "coco: secrets load: %s must start with https:// or http://\n", url);
    return 2;
  }
  /* trailing slashes would double in the API paths */
  char *u = (char *)url;
  for (size_t n = strlen(u); n > 8 && u[n - 1] == '/'; n--) u[n - 1] = '\0';
  const char *slash = strrchr(l.file, '/');
  if (slash) snprintf(l.yaml_dir, sizeof l.yaml_dir, "%.*s", (int)(slash - l.file), l.file);
  else snprintf(l.yaml_dir, sizeof l.yaml_dir, ".");
  ct_err err = {0};
  ct_status st = coco__load_all(&l, &err);
  if (l.token) {
    ct_wipe(l.token, strlen(l.token));
    free(l.token);
  }
  return st ? coco_fail("secrets load", &err) : 0;
}
