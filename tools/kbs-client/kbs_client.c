/*
 * kbs-client - Trustee's kbs-client verbs and flags, on coco-trust's libraries.
 *
 *   kbs-client [--url URL] [--cert-file PEM] attest [--tee-key-file PEM] [INIT_DATA]
 *   kbs-client ... get-resource --path R/T/T [--tee-key-file PEM --attestation-token FILE] [INIT_DATA]
 *   kbs-client ... config (--admin-token-file F | --auth-private-key F) SUBCOMMAND ...
 *       set-resource --path R/T/T --resource-file F | delete-resource --path R/T/T
 *       set-resource-policy (--policy-file F | --allow-all | --deny-all | --affirming | --default)
 *       set-attestation-policy [--type rego] [--id ID] --policy-file F
 *       set-sample-reference-value NAME VALUE [--as-integer | --as-bool | --as-single-value]
 *       get-reference-value --id ID
 *
 * Attestation uses the sample TEE (this tool runs outside a TEE). Exit status 0 on success, 1 on
 * a refused or failed call (the KBS's reason is printed), 2 on bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "ct_policies.h"
#include "jose.h"
#include "kbc.h"
#include "kbs_client_http.h"

#define KC_MAX_RESPONSE (64u << 20)

typedef struct kc_opts {
  const char *url;
  const char *cert_file;
  const char *tee_key_file;
  const char *token_file;
  const char *init_data;
  const char *path;
} kc_opts;

static int kc__usage(void) {
  fprintf(stderr,
          "usage: kbs-client [--url URL] [--cert-file PEM] COMMAND\n"
          "  attest [--tee-key-file PEM] [INIT_DATA]\n"
          "  get-resource --path R/T/T [--tee-key-file PEM --attestation-token FILE] [INIT_DATA]\n"
          "  config (--admin-token-file F | --auth-private-key F) set-resource --path R/T/T --resource-file F\n"
          "  config ... delete-resource --path R/T/T\n"
          "  config ... set-resource-policy (--policy-file F | --allow-all | --deny-all | --affirming | --default)\n"
          "  config ... set-attestation-policy [--type rego] [--id ID] --policy-file F\n"
          "  config ... set-sample-reference-value NAME VALUE [--as-integer | --as-bool | --as-single-value]\n"
          "  config ... get-reference-value --id ID\n");
  return 2;
}

/* Prints the KBS's error body (type and detail) for a failed call. */
static int kc__http_failure(const char *what, long status, const ct_buf *body) {
  json_t *e = NULL;
  ct_err err;
  if (body->len && ct_json_parse((const char *)body->data, body->len, 8, &e, &err) == CT_OK && json_is_object(e)) {
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *detail = json_string_value(json_object_get(e, "detail"));
    const char *variant = type ? strrchr(type, '/') : NULL;
    fprintf(stderr, "kbs-client: %s refused (HTTP %ld, %s): %s\n", what, status, variant ? variant + 1 : "?",
            detail ? detail : "");
  } else {
    fprintf(stderr, "kbs-client: %s failed with HTTP %ld\n", what, status);
  }
  json_decref(e);
  return 1;
}

static int kc__fail(const char *what, const ct_err *err) {
  fprintf(stderr, "kbs-client: %s: %s\n", what, err->msg);
  return 1;
}

/* --- attestation (the shared KBS client library) ---------------------------------------------- */

/* This tool runs outside a TEE: it attests with the sample TEE's evidence. */
static CT_RESULT kc__sample_evidence(void *ud, const uint8_t *report_data, size_t len, json_t **evidence, ct_err *err) {
  (void)ud;
  char *b64 = NULL;
  CT_GUARD(ct_b64_encode(CT_B64_STD, report_data, len, &b64, err));
  *evidence = json_pack("{s:s, s:s}", "svn", "1", "report_data", b64);
  free(b64);
  return *evidence ? CT_OK : ct_fail(err, CT_ENOMEM, "out of memory");
}

static int kc__read_text(const char *path, const char *what, char **out) {
  ct_err err;
  uint8_t *data = NULL;
  size_t len = 0;
  if (ct_file_read(path, 1u << 20, &data, &len, &err) != CT_OK) return kc__fail(what, &err);
  while (len && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' ')) data[--len] = 0;
  *out = (char *)data;
  return 0;
}

/* A client for RCAR (sample evidence, optionally a fixed TEE key) or, with a token, passport mode. */
static int kc__client(const kc_opts *o, kbc_client **out) {
  char *ca = NULL, *key = NULL, *token = NULL;
  int rc = 0;
  if (o->cert_file) rc = kc__read_text(o->cert_file, "--cert-file", &ca);
  if (!rc && o->tee_key_file) rc = kc__read_text(o->tee_key_file, "--tee-key-file", &key);
  if (!rc && o->token_file) rc = kc__read_text(o->token_file, "--attestation-token", &token);
  if (!rc) {
    kbc_opts ko = {.tee = "sample", .evidence = kc__sample_evidence, .init_data_toml = o->init_data, .attempts = 1};
    if (token) {
      ko.token = token;
      ko.tee_key_pem = key;
    } else {
      ko.rcar_key_pem = key;
    }
    ct_err err;
    if (kbc_client_new(o->url, ca, &ko, out, &err) != CT_OK) rc = kc__fail("client", &err);
  }
  free(ca);
  if (key) ct_wipe(key, strlen(key));
  free(key);
  free(token);
  return rc;
}

static int kc__attest(const kc_opts *o) {
  kbc_client *c = NULL;
  int rc = kc__client(o, &c);
  if (rc) return rc;
  ct_err err;
  if (kbc_attest(c, &err) != CT_OK) rc = kc__fail("attest", &err);
  else printf("%s\n", kbc_token(c));
  kbc_client_free(c);
  return rc;
}

static int kc__get_resource(const kc_opts *o) {
  if (!o->path) return kc__usage();
  if (o->token_file && !o->tee_key_file) {
    fprintf(stderr, "kbs-client: --attestation-token needs --tee-key-file (the key the token binds)\n");
    return 2;
  }
  kbc_client *c = NULL;
  int rc = kc__client(o, &c);
  if (rc) return rc;
  ct_err err;
  uint8_t *secret = NULL;
  size_t len = 0;
  char *b64 = NULL;
  if (kbc_get_resource(c, o->path, &secret, &len, &err) != CT_OK) rc = kc__fail("get-resource", &err);
  else if (ct_b64_encode(CT_B64_STD, secret, len, &b64, &err) != CT_OK) rc = kc__fail("encoding", &err);
  else printf("%s\n", b64);
  if (secret) ct_wipe(secret, len);
  free(secret);
  free(b64);
  kbc_client_free(c);
  return rc;
}

/* Loads a PEM private key (the admin's signing key). */
static CT_RESULT kc__load_key(const char *path, jose_jwk **key, ct_err *err) {
  uint8_t *pem = NULL;
  size_t len = 0;
  CT_GUARD(ct_file_read(path, 1u << 20, &pem, &len, err));
  ct_status st = jose_jwk_from_pem((const char *)pem, len, NULL, key, err);
  ct_wipe(pem, len);
  free(pem);
  if (st != CT_OK) return ct_err_prefix(err, "%s: ", path);
  return CT_OK;
}

/* --- admin ----------------------------------------------------------------------------------- */

/* A short-lived admin token signed with the admin's private key (Trustee 1.0's simple admin). */
static CT_RESULT kc__sign_admin_token(const char *key_path, char **token, ct_err *err) {
  jose_jwk *key = NULL;
  CT_GUARD(kc__load_key(key_path, &key, err));
  ct_status st = jose_admin_token(key, "kbs-client", 7200, token, err);
  jose_jwk_free(key);
  return st;
}

static int kc__admin_call(kc_http *h, const char *what, const char *method, const char *path, const char *ctype,
                          const void *body, size_t len, bool print_body) {
  ct_err err;
  ct_buf out;
  ct_buf_init(&out, KC_MAX_RESPONSE);
  long status = 0;
  if (kc_http_call(h, method, path, ctype, body, len, &status, &out, &err) != CT_OK) return kc__fail(what, &err);
  int rc = 0;
  if (status != 200) rc = kc__http_failure(what, status, &out);
  else if (print_body) printf("%.*s\n", (int)out.len, out.data ? (const char *)out.data : "");
  ct_buf_free(&out);
  return rc;
}

static int kc__post_policy(kc_http *h, const char *what, const char *path, const char *id, const char *text, size_t len) {
  ct_err err;
  char *b64 = NULL;
  if (ct_b64_encode(CT_B64_URL, (const uint8_t *)text, len, &b64, &err) != CT_OK) return kc__fail(what, &err);
  json_t *body = id ? json_pack("{s:s, s:s, s:s}", "type", "rego", "policy_id", id, "policy", b64)
                    : json_pack("{s:s}", "policy", b64);
  free(b64);
  char *s = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  int rc = kc__admin_call(h, what, "POST", path, "application/json", s, strlen(s), false);
  free(s);
  return rc;
}

static int kc__read_arg_file(const char *path, uint8_t **data, size_t *len) {
  ct_err err;
  if (!path) return kc__usage();
  if (ct_file_read(path, 64u << 20, data, len, &err) != CT_OK) return kc__fail("reading", &err);
  return 0;
}

static int kc__config(kc_http *h, int argc, char **argv) {
  const char *token_file = NULL, *private_key = NULL;
  int i = 0;
  for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
    if (!strcmp(argv[i], "--admin-token-file") && i + 1 < argc) token_file = argv[++i];
    else if (!strcmp(argv[i], "--auth-private-key") && i + 1 < argc) private_key = argv[++i];
    else return kc__usage();
  }
  if (i >= argc) return kc__usage();
  ct_err err;
  char *token = NULL;
  if (private_key) {
    if (kc__sign_admin_token(private_key, &token, &err) != CT_OK) return kc__fail("admin key", &err);
  } else {
    char home[1024];
    const char *h_env = getenv("HOME");
    if (!token_file && h_env) {
      snprintf(home, sizeof home, "%s/.trustee/admin-token", h_env);
      FILE *f = fopen(home, "r");
      if (f) {
        fclose(f);
        token_file = home;
      }
    }
    if (token_file) {
      int rc = kc__read_text(token_file, "admin token", &token);
      if (rc) return rc;
    }
  }
  h->bearer = token;
  const char *cmd = argv[i++];
  const char *path = NULL, *file = NULL, *id = NULL, *preset = NULL;
  /* As upstream's client: the value is a string unless --as-integer / --as-bool, and a
   * one-member list unless --as-single-value (the flags combine). */
  const char *kind = "string";
  bool single = false;
  const char *positional[2] = {NULL, NULL};
  int npos = 0;
  for (; i < argc; i++) {
    if (!strcmp(argv[i], "--path") && i + 1 < argc) path = argv[++i];
    else if ((!strcmp(argv[i], "--resource-file") || !strcmp(argv[i], "--policy-file")) && i + 1 < argc) file = argv[++i];
    else if (!strcmp(argv[i], "--id") && i + 1 < argc) id = argv[++i];
    else if (!strcmp(argv[i], "--type") && i + 1 < argc) i++;
    else if (!strcmp(argv[i], "--allow-all") || !strcmp(argv[i], "--deny-all") || !strcmp(argv[i], "--affirming") ||
             !strcmp(argv[i], "--default")) preset = argv[i];
    else if (!strcmp(argv[i], "--as-integer")) kind = "int";
    else if (!strcmp(argv[i], "--as-bool")) kind = "bool";
    else if (!strcmp(argv[i], "--as-single-value")) single = true;
    else if (argv[i][0] != '-' && npos < 2) positional[npos++] = argv[i];
    else {
      free(token);
      return kc__usage();
    }
  }
  int rc = 2;
  uint8_t *data = NULL;
  size_t len = 0;
  char url[1024];
  if (!strcmp(cmd, "set-resource") && path && file) {
    rc = kc__read_arg_file(file, &data, &len);
    snprintf(url, sizeof url, "/kbs/v0/resource/%s", path);
    if (!rc) rc = kc__admin_call(h, "set-resource", "POST", url, "application/octet-stream", data, len, false);
  } else if (!strcmp(cmd, "delete-resource") && path) {
    snprintf(url, sizeof url, "/kbs/v0/resource/%s", path);
    rc = kc__admin_call(h, "delete-resource", "DELETE", url, NULL, NULL, 0, false);
  } else if (!strcmp(cmd, "set-resource-policy") && (file || preset)) {
    if (file) {
      rc = kc__read_arg_file(file, &data, &len);
      if (!rc) rc = kc__post_policy(h, "set-resource-policy", "/kbs/v0/resource-policy", NULL, (char *)data, len);
    } else {
      /* Trustee's quirk: --default uploads the deny-all policy. */
      const char *text = !strcmp(preset, "--allow-all") ? ct_policy_resource_allow_all
                         : !strcmp(preset, "--affirming") ? ct_policy_resource_affirming
                                                          : ct_policy_resource_deny_all;
      rc = kc__post_policy(h, "set-resource-policy", "/kbs/v0/resource-policy", NULL, text, strlen(text));
    }
  } else if (!strcmp(cmd, "set-attestation-policy") && file) {
    rc = kc__read_arg_file(file, &data, &len);
    if (!rc) rc = kc__post_policy(h, "set-attestation-policy", "/kbs/v0/attestation-policy", id ? id : "default_cpu",
                                  (char *)data, len);
  } else if (!strcmp(cmd, "set-sample-reference-value") && npos == 2) {
    char *end = NULL;
    long long n = strtoll(positional[1], &end, 10);
    if ((!strcmp(kind, "int") && (!*positional[1] || *end)) ||
        (!strcmp(kind, "bool") && strcmp(positional[1], "true") && strcmp(positional[1], "false"))) {
      fprintf(stderr, "kbs-client: set-sample-reference-value: \"%s\" is not %s\n", positional[1],
              !strcmp(kind, "int") ? "an integer" : "true or false");
      free(token);
      return 2;
    }
    json_t *scalar = !strcmp(kind, "int")    ? json_integer(n)
                     : !strcmp(kind, "bool") ? json_boolean(!strcmp(positional[1], "true"))
                                             : json_string(positional[1]);
    json_t *v = single ? scalar : json_pack("[o]", scalar);
    json_t *values = json_object();
    json_object_set_new(values, positional[0], v);
    char *vs = json_dumps(values, JSON_COMPACT);
    json_decref(values);
    char *b64 = NULL;
    if (ct_b64_encode(CT_B64_STD, (const uint8_t *)vs, strlen(vs), &b64, &err) != CT_OK) rc = kc__fail("encoding", &err);
    else {
      json_t *msg = json_pack("{s:s, s:s, s:s}", "version", "0.1.0", "type", "sample", "payload", b64);
      char *ms = json_dumps(msg, JSON_COMPACT);
      rc = kc__admin_call(h, "set-sample-reference-value", "POST", "/kbs/v0/reference-value", "application/json", ms,
                          strlen(ms), false);
      free(ms);
      json_decref(msg);
    }
    free(b64);
    free(vs);
  } else if (!strcmp(cmd, "get-reference-value") && id) {
    snprintf(url, sizeof url, "/kbs/v0/reference-value/%s", id);
    rc = kc__admin_call(h, "get-reference-value", "GET", url, NULL, NULL, 0, true);
  } else {
    rc = kc__usage();
  }
  free(data);
  free(token);
  h->bearer = NULL;
  return rc;
}

int main(int argc, char **argv) {
  kc_opts o = {.url = "http://127.0.0.1:8080"};
  int i = 1;
  for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
    if (!strcmp(argv[i], "--url") && i + 1 < argc) o.url = argv[++i];
    else if (!strcmp(argv[i], "--cert-file") && i + 1 < argc) o.cert_file = argv[++i];
    else return kc__usage();
  }
  if (i >= argc) return kc__usage();
  kc_http h = {.base_url = o.url, .cert_file = o.cert_file};
  const char *cmd = argv[i++];
  if (!strcmp(cmd, "config")) {
    int rc = kc__config(&h, argc - i, argv + i);
    kc_http_close(&h);
    return rc;
  }
  for (; i < argc; i++) {
    if (!strcmp(argv[i], "--tee-key-file") && i + 1 < argc) o.tee_key_file = argv[++i];
    else if (!strcmp(argv[i], "--attestation-token") && i + 1 < argc) o.token_file = argv[++i];
    else if (!strcmp(argv[i], "--path") && i + 1 < argc) o.path = argv[++i];
    else if (argv[i][0] != '-' && !o.init_data) o.init_data = argv[i];
    else return kc__usage();
  }
  if (!strcmp(cmd, "attest")) return kc__attest(&o);
  if (!strcmp(cmd, "get-resource")) return kc__get_resource(&o);
  return kc__usage();
}
