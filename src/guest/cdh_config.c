/*
 * cdh_config.c - aa.toml / cdh.toml, aa_kbc_params, and init-data parsing.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cdh.h"
#include "cdh_image.h"
#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "initdata.h"
#include "toml.h"

/* Replaces *dst with a copy of the optional string member `key` of `obj`. */
static CT_RESULT cdh__opt_str(const json_t *obj, const char *key, const char *what, char **dst,
                              ct_err *err) {
  if (!obj) return CT_OK;
  const char *v = NULL;
  CT_GUARD(ct_json_opt_string(obj, key, what, &v, err));
  if (!v) return CT_OK;
  char *copy = NULL;
  CT_GUARD(ct_strdup(v, &copy, err));
  free(*dst);
  *dst = copy;
  return CT_OK;
}

static const json_t *cdh__table(const json_t *doc, const char *key, const char *what, ct_err *err,
                                ct_status *st) {
  const json_t *t = json_object_get(doc, key);
  if (t && !json_is_object(t)) *st = ct_fail(err, CT_EINVAL, "%s: [%s] must be a table", what, key);
  return json_is_object(t) ? t : NULL;
}

CT_RESULT cdh_config_parse_cdh(const char *text, size_t len, cdh_config *cfg, ct_err *err) {
  CT_ENSURE(len <= CDH_CONFIG_MAX, err, CT_ELIMIT, "cdh.toml larger than %u bytes", CDH_CONFIG_MAX);
  json_t *doc = NULL;
  ct_status st = toml_parse(text, len, &doc, err);
  if (st) return ct_err_prefix(err, "cdh.toml: ");
  /* Build aside, swap in on success. */
  cdh_config n = {0};
  const json_t *kbc = cdh__table(doc, "kbc", "cdh.toml", err, &st);
  if (st) goto out;
  if (kbc) {
    const char *name = NULL;
    CT_GUARD_GOTO(st, ct_json_opt_string(kbc, "name", "cdh.toml [kbc]", &name, err), out);
    CT_ENSURE_GOTO(st, !name || !strcmp(name, "cc_kbc"), out, err, CT_EUNSUPPORTED,
                   "cdh.toml: [kbc] name \"%s\" is not supported (only cc_kbc)", name);
    CT_GUARD_GOTO(st, cdh__opt_str(kbc, "url", "cdh.toml [kbc]", &n.kbs_url, err), out);
    CT_GUARD_GOTO(st, cdh__opt_str(kbc, "kbs_cert", "cdh.toml [kbc]", &n.kbs_cert, err), out);
  }
  const json_t *creds = json_object_get(doc, "credentials");
  if (creds) {
    CT_ENSURE_GOTO(st, json_is_array(creds), out, err, CT_EINVAL,
                   "cdh.toml: credentials must be an array of tables");
    CT_ENSURE_GOTO(st, json_array_size(creds) <= CDH_MAX_CREDENTIALS, out, err, CT_ELIMIT,
                   "cdh.toml: more than %d credentials", CDH_MAX_CREDENTIALS);
    size_t i;
    const json_t *c;
    json_array_foreach(creds, i, c) {
      const char *uri = NULL, *path = NULL;
      CT_GUARD_GOTO(st, ct_json_get_string(c, "resource_uri", "cdh.toml [[credentials]]", &uri, err), out);
      CT_GUARD_GOTO(st, ct_json_get_string(c, "path", "cdh.toml [[credentials]]", &path, err), out);
      char plugin[64], p[KBC_URI_MAX];
      CT_GUARD_GOTO(st, kbc_parse_uri(uri, plugin, sizeof plugin, p, sizeof p, err), out);
      CT_ENSURE_GOTO(st, path[0] == '/' && !strstr(path, "/../") &&
                             (strlen(path) < 3 || strcmp(path + strlen(path) - 3, "/..")),
                     out, err, CT_EINVAL, "cdh.toml: credential path \"%s\" must be absolute", path);
      CT_GUARD_GOTO(st, ct_strdup(uri, &n.creds[n.ncreds].resource_uri, err), out);
      n.ncreds++;
      CT_GUARD_GOTO(st, ct_strdup(path, &n.creds[n.ncreds - 1].path, err), out);
    }
  }
  const json_t *image = cdh__table(doc, "image", "cdh.toml", err, &st);
  if (st) goto out;
  CT_GUARD_GOTO(st, cdh__opt_str(image, "image_security_policy_uri", "cdh.toml [image]",
                                 &n.image_security_policy_uri, err), out);
  CT_GUARD_GOTO(st, cdh__opt_str(image, "image_security_policy", "cdh.toml [image]",
                                 &n.image_security_policy, err), out);
  CT_GUARD_GOTO(st, cdh__opt_str(image, "authenticated_registry_credentials_uri", "cdh.toml [image]",
                                 &n.registry_credentials_uri, err), out);
  CT_GUARD_GOTO(st, cdh__opt_str(image, "registry_configuration_uri", "cdh.toml [image]",
                                 &n.registry_configuration_uri, err), out);
  const json_t *rc = image ? cdh__table(image, "registry_config", "cdh.toml [image]", err, &st) : NULL;
  if (st) goto out;
  if (rc) {
    /* Checked now (a bad configuration fails start-up, not the first pull), kept as text. */
    json_t *copy = json_deep_copy(rc);
    CT_ENSURE_GOTO(st, copy, out, err, CT_ENOMEM, "out of memory");
    st = cdh_regconf_check(copy, err);
    if (!st) {
      n.registry_config = json_dumps(copy, JSON_COMPACT);
      if (!n.registry_config) st = ct_fail(err, CT_ENOMEM, "out of memory");
    }
    json_decref(copy);
    if (st) {
      ct_err_prefix(err, "cdh.toml [image.registry_config]: ");
      goto out;
    }
  }
  const json_t *roots = image ? json_object_get(image, "extra_root_certificates") : NULL;
  if (roots) {
    CT_ENSURE_GOTO(st, json_is_array(roots) && json_array_size(roots) <= 64, out, err, CT_EINVAL,
                   "cdh.toml: [image] extra_root_certificates must be an array of PEM strings");
    ct_buf pem;
    ct_buf_init(&pem, CDH_CONFIG_MAX);
    size_t i;
    const json_t *c;
    json_array_foreach(roots, i, c) {
      CT_ENSURE_GOTO(st, json_is_string(c) && strstr(json_string_value(c), "-----BEGIN CERTIFICATE-----"),
                     roots_out, err, CT_EINVAL,
                     "cdh.toml: [image] extra_root_certificates[%zu] is not a PEM certificate", i);
      CT_GUARD_GOTO(st, ct_buf_printf(&pem, err, "%s\n", json_string_value(c)), roots_out);
    }
    n.extra_root_certificates = (char *)ct_buf_take(&pem, NULL);
  roots_out:
    ct_buf_free(&pem);
    if (st) goto out;
  }
  const json_t *proxy = image ? cdh__table(image, "image_pull_proxy", "cdh.toml [image]", err, &st) : NULL;
  if (st) goto out;
  CT_GUARD_GOTO(st, cdh__opt_str(proxy, "https_proxy", "cdh.toml [image.image_pull_proxy]",
                                 &n.https_proxy, err), out);
  CT_GUARD_GOTO(st, cdh__opt_str(proxy, "http_proxy", "cdh.toml [image.image_pull_proxy]",
                                 &n.http_proxy, err), out);
  CT_GUARD_GOTO(st, cdh__opt_str(proxy, "no_proxy", "cdh.toml [image.image_pull_proxy]",
                                 &n.no_proxy, err), out);
  CT_GUARD_GOTO(st, cdh__opt_str(doc, "socket", "cdh.toml", &n.socket, err), out);
  const json_t *aa = cdh__table(doc, "aa", "cdh.toml", err, &st);
  if (st) goto out;
  CT_GUARD_GOTO(st, cdh__opt_str(aa, "aa_socket", "cdh.toml [aa]", &n.aa_socket, err), out);
  const json_t *skip = json_object_get(doc, "skip_sealed_secret_verification");
  CT_ENSURE_GOTO(st, !skip || json_is_boolean(skip), out, err, CT_EINVAL,
                 "cdh.toml: skip_sealed_secret_verification must be a boolean");
  /* Merge: set members replace the old ones. */
  if (n.kbs_url) { free(cfg->kbs_url); cfg->kbs_url = n.kbs_url; n.kbs_url = NULL; }
  if (n.kbs_cert) { free(cfg->kbs_cert); cfg->kbs_cert = n.kbs_cert; n.kbs_cert = NULL; }
#define CDH__TAKE(field)                                                                           \
  if (n.field) {                                                                                   \
    free(cfg->field);                                                                              \
    cfg->field = n.field;                                                                          \
    n.field = NULL;                                                                                \
  }
  CDH__TAKE(image_security_policy_uri)
  CDH__TAKE(image_security_policy)
  CDH__TAKE(registry_credentials_uri)
  CDH__TAKE(registry_configuration_uri)
  CDH__TAKE(registry_config)
  CDH__TAKE(extra_root_certificates)
  CDH__TAKE(https_proxy)
  CDH__TAKE(http_proxy)
  CDH__TAKE(no_proxy)
  CDH__TAKE(socket)
  CDH__TAKE(aa_socket)
#undef CDH__TAKE
  if (creds) {
    for (size_t i = 0; i < cfg->ncreds; i++) {
      free(cfg->creds[i].resource_uri);
      free(cfg->creds[i].path);
    }
    memcpy(cfg->creds, n.creds, sizeof n.creds);
    cfg->ncreds = n.ncreds;
    n.ncreds = 0;
  }
  if (skip) cfg->skip_sealed_secret_verification = json_is_true(skip);
out:
  cdh_config_free(&n);
  json_decref(doc);
  return st;
}

CT_RESULT cdh_config_parse_aa(const char *text, size_t len, cdh_config *cfg, ct_err *err) {
  CT_ENSURE(len <= CDH_CONFIG_MAX, err, CT_ELIMIT, "aa.toml larger than %u bytes", CDH_CONFIG_MAX);
  json_t *doc = NULL;
  ct_status st = toml_parse(text, len, &doc, err);
  if (st) return ct_err_prefix(err, "aa.toml: ");
  cdh_config n = {0};
  const json_t *tc = cdh__table(doc, "token_configs", "aa.toml", err, &st);
  const json_t *kbs = st ? NULL : cdh__table(tc, "kbs", "aa.toml [token_configs]", err, &st);
  if (st) goto out;
  CT_GUARD_GOTO(st, cdh__opt_str(kbs, "url", "aa.toml [token_configs.kbs]", &n.aa_kbs_url, err), out);
  CT_GUARD_GOTO(st, cdh__opt_str(kbs, "cert", "aa.toml [token_configs.kbs]", &n.aa_kbs_cert, err), out);
  CT_GUARD_GOTO(st, cdh__opt_str(kbs, "tee_key_algorithm", "aa.toml [token_configs.kbs]",
                                 &n.tee_key_alg, err), out);
  if (!n.tee_key_alg)
    CT_GUARD_GOTO(st, cdh__opt_str(doc, "tee_key_algorithm", "aa.toml", &n.tee_key_alg, err), out);
  const json_t *el = cdh__table(doc, "eventlog_config", "aa.toml", err, &st);
  if (st) goto out;
  const json_t *en = json_object_get(el, "enable_eventlog"), *ip = json_object_get(el, "init_pcr");
  CT_ENSURE_GOTO(st, !en || json_is_boolean(en), out, err, CT_EINVAL,
                 "aa.toml: [eventlog_config] enable_eventlog must be a boolean");
  CT_ENSURE_GOTO(st, !ip || (json_is_integer(ip) && json_integer_value(ip) >= 0 &&
                             json_integer_value(ip) < 24),
                 out, err, CT_EINVAL, "aa.toml: [eventlog_config] init_pcr must be 0..23");
  if (n.aa_kbs_url) { free(cfg->aa_kbs_url); cfg->aa_kbs_url = n.aa_kbs_url; n.aa_kbs_url = NULL; }
  if (n.aa_kbs_cert) { free(cfg->aa_kbs_cert); cfg->aa_kbs_cert = n.aa_kbs_cert; n.aa_kbs_cert = NULL; }
  if (n.tee_key_alg) { free(cfg->tee_key_alg); cfg->tee_key_alg = n.tee_key_alg; n.tee_key_alg = NULL; }
  if (en) cfg->eventlog_enabled = json_is_true(en);
  if (ip) cfg->eventlog_init_pcr = (int)json_integer_value(ip);
out:
  cdh_config_free(&n);
  json_decref(doc);
  return st;
}

/* "cc_kbc::<url>"; anything else (offline_fs_kbc, ...) is not a KBS. */
static CT_RESULT cdh__kbc_param(const char *v, size_t n, cdh_config *cfg, ct_err *err) {
  const char *sep = NULL;
  for (size_t i = 0; i + 1 < n; i++)
    if (v[i] == ':' && v[i + 1] == ':') {
      sep = v + i;
      break;
    }
  CT_ENSURE(sep, err, CT_EINVAL, "aa_kbc_params must read <kbc>::<url>");
  CT_ENSURE((size_t)(sep - v) == 6 && !strncmp(v, "cc_kbc", 6), err, CT_EUNSUPPORTED,
            "aa_kbc_params names KBC \"%.*s\"; only cc_kbc is supported", (int)(sep - v), v);
  return ct_strndup(sep + 2, n - (size_t)(sep + 2 - v), &cfg->kbs_url, err);
}

CT_RESULT cdh_config_kbc_params(cdh_config *cfg, const char *cmdline_path, ct_err *err) {
  if (cfg->kbs_url || cfg->aa_kbs_url) return CT_OK;
  const char *env = getenv("AA_KBC_PARAMS");
  if (env && *env) return cdh__kbc_param(env, strlen(env), cfg, err);
  if (!cmdline_path || access(cmdline_path, R_OK) != 0) return CT_OK;
  uint8_t *cmd = NULL;
  size_t len = 0;
  CT_GUARD(ct_file_read(cmdline_path, 64 << 10, &cmd, &len, err));
  static const char key[] = "agent.aa_kbc_params=";
  ct_status st = CT_OK;
  for (size_t i = 0; i < len;) {
    while (i < len && isspace(cmd[i])) i++;
    size_t s = i;
    while (i < len && !isspace(cmd[i])) i++;
    if (i - s > sizeof key - 1 && !memcmp(cmd + s, key, sizeof key - 1)) {
      st = cdh__kbc_param((char *)cmd + s + sizeof key - 1, i - s - (sizeof key - 1), cfg, err);
      break;
    }
  }
  free(cmd);
  if (st) ct_err_prefix(err, "kernel command line: ");
  return st;
}

CT_RESULT cdh_config_cmdline_credentials(cdh_config *cfg, const char *cmd, size_t len,
                                         ct_err *err) {
  static const char key[] = "cdh.kbs_resources=";
  const char *v = NULL;
  size_t vlen = 0;
  for (size_t i = 0; i < len;) {
    while (i < len && isspace((unsigned char)cmd[i])) i++;
    size_t s = i;
    while (i < len && !isspace((unsigned char)cmd[i])) i++;
    if (i - s >= sizeof key - 1 && !memcmp(cmd + s, key, sizeof key - 1)) {
      v = cmd + s + sizeof key - 1;
      vlen = i - s - (sizeof key - 1);
      break;
    }
  }
  if (!v) return CT_OK;
  /* Validate everything first, then append: a bad entry changes nothing. */
  cdh_credential add[CDH_MAX_CREDENTIALS];
  size_t n = 0;
  ct_status st = CT_OK;
  for (size_t i = 0; i < vlen && !st;) {
    size_t e = i;
    while (e < vlen && v[e] != ',') e++;
    if (e > i) {
      const char *item = v + i, *sep = NULL;
      size_t ilen = e - i;
      for (size_t k = 0; k + 1 < ilen && !sep; k++) /* upstream: split_once("::") */
        if (item[k] == ':' && item[k + 1] == ':') sep = item + k;
      if (!sep) {
        st = ct_fail(err, CT_EINVAL, "cdh.kbs_resources: entry without <uri>::<path>");
        break;
      }
      CT_ENSURE_GOTO(st, cfg->ncreds + n < CDH_MAX_CREDENTIALS, fail, err, CT_ELIMIT,
                     "cdh.kbs_resources: more than %d credentials", CDH_MAX_CREDENTIALS);
      char *uri = NULL, *path = NULL;
      CT_GUARD_GOTO(st, ct_strndup(item, (size_t)(sep - item), &uri, err), fail);
      st = ct_strndup(sep + 2, ilen - (size_t)(sep + 2 - item), &path, err);
      add[n].resource_uri = uri;
      add[n].path = path;
      n++;
      if (st) goto fail;
      char plugin[64], p[KBC_URI_MAX];
      CT_GUARD_GOTO(st, kbc_parse_uri(uri, plugin, sizeof plugin, p, sizeof p, err), fail);
      size_t pl = strlen(path);
      CT_ENSURE_GOTO(st, !strncmp(path, CDH_CMDLINE_CRED_DIR, sizeof CDH_CMDLINE_CRED_DIR - 1) &&
                             pl > sizeof CDH_CMDLINE_CRED_DIR - 1 && !strstr(path, "/..") &&
                             !strstr(path, "//"),
                     fail, err, CT_EDENIED,
                     "cdh.kbs_resources: path \"%.200s\" is outside %s", path, CDH_CMDLINE_CRED_DIR);
    }
    i = e + 1;
  }
  if (st) goto fail;
  memcpy(cfg->creds + cfg->ncreds, add, n * sizeof *add);
  cfg->ncreds += n;
  return CT_OK;
fail:
  for (size_t k = 0; k < n; k++) {
    free(add[k].resource_uri);
    free(add[k].path);
  }
  return st;
}

void cdh_config_free(cdh_config *cfg) {
  free(cfg->kbs_url);
  free(cfg->kbs_cert);
  free(cfg->aa_kbs_url);
  free(cfg->aa_kbs_cert);
  free(cfg->tee_key_alg);
  free(cfg->image_security_policy_uri);
  free(cfg->image_security_policy);
  free(cfg->registry_credentials_uri);
  free(cfg->registry_configuration_uri);
  free(cfg->registry_config);
  free(cfg->extra_root_certificates);
  free(cfg->https_proxy);
  free(cfg->http_proxy);
  free(cfg->no_proxy);
  free(cfg->socket);
  free(cfg->aa_socket);
  for (size_t i = 0; i < cfg->ncreds; i++) {
    free(cfg->creds[i].resource_uri);
    free(cfg->creds[i].path);
  }
  memset(cfg, 0, sizeof *cfg);
}

/* --- init-data ------------------------------------------------------------------------- */

/* Validation and digest come from the shared init-data module (same rules as Trustee's AS); the
 * hub keeps the exact text (sent in /attest) and the data table (configuration entries). */
CT_RESULT cdh_initdata_parse(const char *text, size_t len, cdh_initdata *out, ct_err *err) {
  memset(out, 0, sizeof *out);
  CT_ENSURE(len <= CDH_CONFIG_MAX, err, CT_ELIMIT, "init-data larger than %u bytes", CDH_CONFIG_MAX);
  initdata *d = NULL;
  ct_status st = initdata_parse(text, len, &d, err);
  if (st) return ct_err_prefix(err, "init-data: ");
  CT_ENSURE_GOTO(st, strlen(d->algorithm) < sizeof out->algorithm, fail, err, CT_EINVAL,
                 "init-data: algorithm name too long");
  strcpy(out->algorithm, d->algorithm);
  memcpy(out->digest, d->digest, d->digest_len);
  out->digest_len = d->digest_len;
  CT_GUARD_GOTO(st, ct_strndup(text, len, &out->text, err), fail);
  out->len = len;
  out->doc = json_pack("{s:o}", "data", d->data ? json_incref(d->data) : json_object());
  CT_ENSURE_GOTO(st, out->doc, fail, err, CT_ENOMEM, "init-data: out of memory");
  initdata_free(d);
  return CT_OK;
fail:
  initdata_free(d);
  cdh_initdata_free(out);
  return st;
}

CT_RESULT cdh_initdata_load(const char *path, cdh_initdata *out, ct_err *err) {
  uint8_t *raw = NULL;
  size_t len = 0;
  CT_GUARD(ct_file_read(path, CDH_CONFIG_MAX, &raw, &len, err));
  /* Peer pods store base64 of the TOML; TOML text always holds '=' after a key or a newline,
   * base64 never holds a newline in the middle or spaces, so try base64 first. */
  size_t n = len;
  while (n && isspace(raw[n - 1])) n--;
  uint8_t *dec = NULL;
  size_t dlen = 0;
  ct_err ignore;
  ct_status st;
  if (n && ct_b64_decode(CT_B64_ANY, (char *)raw, n, &dec, &dlen, &ignore) == CT_OK &&
      cdh_initdata_parse((char *)dec, dlen, out, &ignore) == CT_OK) {
    st = CT_OK;
  } else {
    st = cdh_initdata_parse((char *)raw, len, out, err);
    if (st) ct_err_prefix(err, "%s: ", path);
  }
  free(dec);
  free(raw);
  return st;
}

const char *cdh_initdata_entry(const cdh_initdata *d, const char *name) {
  if (!d || !d->doc) return NULL;
  return json_string_value(json_object_get(json_object_get(d->doc, "data"), name));
}

void cdh_initdata_free(cdh_initdata *d) {
  if (!d) return;
  free(d->text);
  json_decref(d->doc);
  memset(d, 0, sizeof *d);
}
