/*
 * kbs_server.c - the KBS's start-up, routing, replies and shutdown (the handlers live in
 * kbs_handshake.c, kbs_resource.c and kbs_admin.c; see kbs_internal.h).
 */
#include "kbs_server.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_mem.h"
#include "kbs_internal.h"
#include "kbs_metrics.h"

/* --- replies ---------------------------------------------------------------------------------- */

void kbs_reply_error(kbs_http_response *r, const char *variant, const char *fmt, ...) {
  char detail[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  r->status = (!strcmp(variant, "InvalidRequestPath") || !strcmp(variant, "PluginNotFound")) ? 404 : 401;
  r->content_type = "application/json";
  ct_buf_reset(&r->body);
  char type[160];
  snprintf(type, sizeof type, KBS_ERR_PREFIX "%s", variant);
  json_t *e = json_pack("{s:s, s:s}", "type", type, "detail", detail);
  char *text = e ? json_dumps(e, JSON_COMPACT) : NULL;
  ct_err ignored;
  if (!text || ct_buf_append_str(&r->body, text, &ignored) != CT_OK) r->status = 500;
  free(text);
  json_decref(e);
  CT_LOG_INFO_("kbs", "refused: %s: %s", variant, detail);
}

void kbs_reply_json(kbs_http_response *r, json_t *body) {
  /* Any JSON value: a reference value registered with --as-single-value is a bare string. */
  char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(body);
  ct_err e;
  if (!text || ct_buf_append_str(&r->body, text, &e) != CT_OK) {
    free(text);
    kbs_reply_error(r, "SerdeError", "cannot serialise the response");
    return;
  }
  free(text);
  r->status = 200;
  r->content_type = "application/json";
}

ct_status kbs_parse_json_body(const kbs_http_request *req, json_t **out, ct_err *err) {
  CT_ENSURE(req->body_len > 0, err, CT_EINVAL, "request body is empty; a JSON object is required");
  CT_GUARD(ct_json_parse((const char *)req->body, req->body_len, KBS_JSON_DEPTH, out, err));
  if (!json_is_object(*out)) {
    json_decref(*out);
    *out = NULL;
    return ct_fail(err, CT_EINVAL, "request body must be a JSON object");
  }
  return CT_OK;
}

/* --- routing ---------------------------------------------------------------------------------- */

static void kbs__route(kbs_server *s, const kbs_http_request *req, kbs_http_response *r) {
  const char *path = req->path;
  if (!strcmp(path, "/healthz") && req->method == KBS_GET) {
    r->status = 200;
    return;
  }
  if (!strcmp(path, "/metrics") && req->method == KBS_GET) {
    ct_err err;
    if (kbs_metrics_render(&r->body, &err) != CT_OK) {
      kbs_reply_error(r, "PrometheusError", "%s", err.msg);
      return;
    }
    r->status = 200;
    r->content_type = "text/plain; version=0.0.4";
    return;
  }
  if (strlen(path) != req->path_len) {
    kbs_reply_error(r, "InvalidRequestPath", "request path contains a NUL character");
    return;
  }
  if (strncmp(path, "/kbs/v0/", 8)) {
    kbs_reply_error(r, "InvalidRequestPath", "Invalid request path %.200s", path);
    return;
  }
  const char *rest = path + 8;
  bool as = s->as != NULL;
  if (!strcmp(rest, "auth") && req->method == KBS_POST && as) { kbs_handle_auth(s, req, r); return; }
  if (!strcmp(rest, "attest") && req->method == KBS_POST && as) { kbs_handle_attest(s, req, r); return; }
  if (!strcmp(rest, "resource-policy") && (req->method == KBS_POST || req->method == KBS_GET))
    { kbs_handle_resource_policy(s, req, r); return; }
  if (!strcmp(rest, "attestation-policy") && req->method == KBS_POST && as) { kbs_handle_attestation_policy(s, req, r); return; }
  if (!strcmp(rest, "reference-value") && req->method == KBS_POST && as) { kbs_handle_reference_value(s, req, NULL, r); return; }
  if (!strncmp(rest, "reference-value/", 16) && req->method == KBS_GET && as) {
    ct_err err;
    if (kvs_check_key(rest + 16, &err) != CT_OK) { kbs_reply_error(r, "InvalidRequestPath", "reference value id: %s", err.msg); return; }
    { kbs_handle_reference_value(s, req, rest + 16, r); return; }
  }
  if (!strncmp(rest, "resource/", 9) && s->cfg->resource_plugin) {
    if (req->method == KBS_GET) { kbs_handle_resource_get(s, req, rest + 9, r); return; }
    if (req->method == KBS_POST || req->method == KBS_PUT) { kbs_handle_resource_put(s, req, rest + 9, false, r); return; }
    if (req->method == KBS_DELETE) { kbs_handle_resource_put(s, req, rest + 9, true, r); return; }
  }
  size_t n = strcspn(rest, "/");
  kbs_reply_error(r, "PluginNotFound", "Plugin %.*s not found (or method not allowed on it)", (int)(n < 64 ? n : 64), rest);
}

static void kbs__handle(void *ctx, const kbs_http_request *req, kbs_http_response *r) {
  kbs_server *s = ctx;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  kbs_metrics_connections(1);
  kbs__route(s, req, r);
  kbs_metrics_connections(-1);
  if (strcmp(req->path, "/metrics")) {
    kbs_metrics_inc(KBS_M_HTTP_REQUESTS);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    kbs_metrics_request((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, req->body_len,
                        r->body.len);
  }
}

/* --- lifecycle -------------------------------------------------------------------------------- */

/* Everything that needs root (keys, certificates, storage directories) is open by now; the
 * KBS serves requests as an unprivileged user. */
static ct_status kbs__drop_privileges(kbs_server *s, const char *user, ct_err *err) {
  struct passwd *pw = getpwnam(user);
  CT_ENSURE(pw, err, CT_EINVAL, "KBS_USER \"%s\" does not exist", user);
  CT_GUARD(kvs_chown(s->store, pw->pw_uid, pw->pw_gid, err));
  if (s->resources != s->store) CT_GUARD(kvs_chown(s->resources, pw->pw_uid, pw->pw_gid, err));
  if (s->rv_store != s->store) CT_GUARD(kvs_chown(s->rv_store, pw->pw_uid, pw->pw_gid, err));
  CT_ENSURE(setgroups(0, NULL) == 0 && setgid(pw->pw_gid) == 0 && setuid(pw->pw_uid) == 0, err, CT_EIO,
            "cannot switch to user %s: %s", user, strerror(errno));
  CT_ENSURE(setuid(0) != 0, err, CT_EINTERNAL, "privileges could be regained after dropping them");
  CT_LOG_INFO_("kbs", "running as %s (uid %u)", user, (unsigned)pw->pw_uid);
  return CT_OK;
}

/* KBS_SESSION_KEY_FILE names 32 random bytes (raw, or 64 hex digits) shared by the replicas of
 * one KBS, so that a handshake begun on one replica can finish on another. The variable keeps
 * the TOML configuration identical to Trustee's. */
static ct_status kbs__session_key(uint8_t key[32], bool *shared, ct_err *err) {
  const char *path = getenv("KBS_SESSION_KEY_FILE");
  *shared = false;
  if (!path || !*path) return CT_OK;
  uint8_t *data = NULL;
  size_t len = 0;
  if (ct_file_read(path, 4096, &data, &len, err) != CT_OK) return ct_err_prefix(err, "KBS_SESSION_KEY_FILE: ");
  while (len && (data[len - 1] == '\n' || data[len - 1] == '\r')) len--;
  ct_status st = CT_OK;
  if (len == 32) {
    memcpy(key, data, 32);
  } else if (len == 64) {
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    st = ct_hex_decode((const char *)data, 64, &raw, &raw_len, err);
    if (st == CT_OK) memcpy(key, raw, 32);
    if (raw) ct_wipe(raw, raw_len);
    free(raw);
  } else {
    st = ct_fail(err, CT_EINVAL, "KBS_SESSION_KEY_FILE %s must hold 32 bytes or 64 hex digits (found %zu bytes)",
                 path, len);
  }
  ct_wipe(data, len);
  free(data);
  if (st == CT_OK) *shared = true;
  return st;
}

ct_status kbs_server_create(const kbs_config *cfg, kbs_server **out, ct_err *err) {
  kbs_server *s = calloc(1, sizeof *s);
  CT_ENSURE(s, err, CT_ENOMEM, "out of memory");
  s->cfg = cfg;
  pthread_rwlock_init(&s->policy_lock, NULL);
  ct_status st;
  kvs_config kc = {.type = cfg->storage_type, .dir_path = cfg->storage_dir};
  CT_GUARD_GOTO(st, kvs_open(&kc, &s->store, err), fail);
  s->resources = s->store;
  if (cfg->resource_dir) {
    kvs_config rc = {.type = KVS_LOCAL_FS, .dir_path = cfg->resource_dir};
    CT_GUARD_GOTO(st, kvs_open(&rc, &s->resources, err), fail);
  }
  uint8_t session_key[32];
  bool shared_key = false;
  CT_GUARD_GOTO(st, kbs__session_key(session_key, &shared_key, err), fail);
  st = kbs_sessions_new(KBS_MAX_ATTESTED_SESSIONS, shared_key ? session_key : NULL, &s->sessions, err);
  ct_wipe(session_key, sizeof session_key);
  if (st != CT_OK) goto fail;
  CT_GUARD_GOTO(st, kbs_token_verifier_new(cfg, &s->tokens, err), fail);
  CT_GUARD_GOTO(st, kbs_admin_new(cfg, &s->admin, err), fail);
  s->rv_store = s->store;
  if (cfg->rvps_store_dir) {
    kvs_config rc = {.type = KVS_LOCAL_JSON, .dir_path = cfg->rvps_store_dir};
    if (kvs_open(&rc, &s->rv_store, err) != CT_OK) {
      s->rv_store = s->store;
      st = ct_err_prefix(err, "attestation_service.rvps_config.storage: ");
      goto fail;
    }
  }
  CT_GUARD_GOTO(st, rvps_new(s->rv_store, &s->rvps, err), fail);
  if (cfg->as_enabled) {
    as_config ac = {
        .store = s->store,
        .rvps = s->rvps,
        .verifiers = {.snp_vcek_offline_dir = cfg->snp_vcek_offline_dir, .snp_kds_base_url = cfg->snp_kds_base_url,
                      .tdx_collateral_dir = cfg->tdx_collateral_dir, .tdx_pccs_url = cfg->tdx_pccs_url,
                      .tpm_trusted_ak_keys_dir = cfg->tpm_trusted_ak_keys_dir,
                      .snp_insecure_test_only_roots = cfg->snp_insecure_test_only_roots},
        .token_duration_min = cfg->token_duration_min,
        .issuer_name = cfg->issuer_name,
        .developer_name = cfg->developer_name,
        .build_name = cfg->build_name,
        .profile_name = cfg->profile_name,
        .verbose_token = cfg->verbose_token,
        .enable_sample_tee = cfg->enable_sample_tee,
        .signer_key_path = cfg->signer_key_path,
        .signer_cert_path = cfg->signer_cert_path,
    };
    CT_GUARD_GOTO(st, as_service_new(&ac, &s->as, err), fail);
  }
  CT_GUARD_GOTO(st, kbs_resource_policy_load(s, err), fail);
  *out = s;
  return CT_OK;
fail:
  kbs_server_stop(s);
  return st;
}

void kbs_server_handle(kbs_server *s, const kbs_http_request *req, kbs_http_response *resp) {
  kbs__handle(s, req, resp);
}

ct_status kbs_server_start(const kbs_config *cfg, const char *run_as, kbs_server **out, ct_err *err) {
  kbs_server *s = NULL;
  CT_GUARD(kbs_server_create(cfg, &s, err));
  kbs_http_config hc = {
      .sockets = (const char *const *)cfg->sockets,
      .n_sockets = cfg->n_sockets,
      .tls = !cfg->insecure_http,
      .cert_path = cfg->certificate,
      .key_path = cfg->private_key,
      .max_body = cfg->payload_request_size_mib << 20,
      .workers = cfg->worker_count,
      .timeout_seconds = 30,
  };
  ct_status st;
  CT_GUARD_GOTO(st, kbs_http_start(&hc, kbs__handle, s, &s->http, err), fail);
  if (run_as) CT_GUARD_GOTO(st, kbs__drop_privileges(s, run_as, err), fail);
  CT_GUARD_GOTO(st, kbs_http_run(s->http, err), fail);
  *out = s;
  return CT_OK;
fail:
  kbs_server_stop(s);
  return st;
}

int kbs_server_port(const kbs_server *s, size_t i) { return s->http ? kbs_http_bound_port(s->http, i) : 0; }

void kbs_server_tick(kbs_server *s) {
  kbs_sessions_sweep(s->sessions);
  kbs_resource_policy_reload(s);
  if (s->as) as_reload_policies(s->as);
}

void kbs_server_stop(kbs_server *s) {
  if (!s) return;
  if (s->http) kbs_http_stop(s->http);
  as_service_free(s->as);
  rvps_free(s->rvps);
  kbs_admin_free(s->admin);
  kbs_token_verifier_free(s->tokens);
  kbs_sessions_free(s->sessions);
  rego_policy_free(s->resource_policy);
  if (s->resources != s->store) kvs_close(s->resources);
  if (s->rv_store && s->rv_store != s->store) kvs_close(s->rv_store);
  kvs_close(s->store);
  pthread_rwlock_destroy(&s->policy_lock);
  free(s);
}
