/*
 * kbs_server.c - the KBS's start-up, routing, replies and shutdown (the handlers live in
 * kbs_handshake.c, kbs_resource.c and kbs_admin.c; see kbs_internal.h).
 */
#include "kbs_server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_digest.h"
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
  ct_err e;
  ct_status st = body ? ct_json_write(body, false, &r->body, &e) : CT_ENOMEM;
  json_decref(body);
  if (st != CT_OK) {
    kbs_reply_error(r, "SerdeError", "cannot serialise the response");
    return;
  }
  r->status = 200;
  r->content_type = "application/json";
}

CT_RESULT kbs_parse_json_body(const kbs_http_request *req, json_t **out, ct_err *err) {
  CT_ENSURE(req->body_len > 0, err, CT_EINVAL, "request body is empty; a JSON object is required");
  CT_GUARD(ct_json_parse((const char *)req->body, req->body_len, KBS_JSON_DEPTH, out, err));
  if (!json_is_object(*out)) {
    json_decref(*out);
    *out = NULL;
    return ct_fail(err, CT_EINVAL, "request body must be a JSON object");
  }
  return CT_OK;
}

/* --- audit ------------------------------------------------------------------------------------ */

/* The TEE an EAR appraised: the annotated evidence's member that is not one of the AS's own. */
static const char *kbs__claims_tee(const json_t *claims) {
  const char *name;
  json_t *sm;
  json_object_foreach((json_t *)json_object_get(claims, "submods"), name, sm) {
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(sm, "ear.veraison.annotated-evidence"), k, v) {
      if (strcmp(k, "init_data") && strcmp(k, "init_data_claims") && strcmp(k, "report_data") &&
          strcmp(k, "runtime_data_claims"))
        return k;
    }
  }
  return NULL;
}

/* RFC 7638 thumbprint (SHA-256, base64url) of the TEE key a resource is encrypted to. */
static void kbs__thumbprint(const json_t *claims, const kbs_config *cfg, char *out, size_t cap) {
  out[0] = 0;
  const char *paths[] = {"/tdx/attester_runtime_data/tee-pubkey", "/customized_claims/runtime_data/tee-pubkey",
                         "/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey", "/tee-pubkey"};
  (void)cfg;
  const json_t *jwk = NULL;
  for (size_t i = 0; i < 4 && !jwk; i++) {
    const json_t *cur = claims;
    char seg[128];
    for (const char *p = paths[i]; cur && *p == '/';) {
      p++;
      size_t n = strcspn(p, "/");
      if (n >= sizeof seg) cur = NULL;
      if (!cur) break;
      memcpy(seg, p, n);
      seg[n] = 0;
      cur = json_object_get(cur, seg);
      p += n;
    }
    if (json_is_object(cur)) jwk = cur;
  }
  if (!jwk) return;
  const char *kty = json_string_value(json_object_get(jwk, "kty"));
  json_t *req = NULL;
  if (kty && !strcmp(kty, "EC"))
    req = json_pack("{s:O?, s:s, s:O?, s:O?}", "crv", json_object_get(jwk, "crv"), "kty", kty, "x",
                    json_object_get(jwk, "x"), "y", json_object_get(jwk, "y"));
  else if (kty && !strcmp(kty, "RSA"))
    req = json_pack("{s:O?, s:s, s:O?}", "e", json_object_get(jwk, "e"), "kty", kty, "n", json_object_get(jwk, "n"));
  char *jcs = NULL;
  size_t n = 0;
  ct_err err;
  if (req && ct_jcs_string(req, &jcs, &n, &err) == CT_OK) {
    uint8_t d[32];
    ct_sha256(jcs, n, d);
    char *b64 = NULL;
    if (ct_b64_encode(CT_B64_URL, d, sizeof d, &b64, &err) == CT_OK) snprintf(out, cap, "%s", b64);
    free(b64);
  }
  free(jcs);
  json_decref(req);
}

void kbs_audit_note(kbs_server *s, const char *event, const json_t *claims, const char *tee, const char *path,
                    const char *decision, const char *reason) {
  if (!s->audit) return;
  char digest[65] = "", thumb[64] = "";
  ct_err err;
  if (claims) {
    char *jcs = NULL;
    size_t n = 0;
    if (ct_jcs_string(claims, &jcs, &n, &err) == CT_OK) {
      uint8_t d[32];
      ct_sha256(jcs, n, d);
      ct_hex_into(d, sizeof d, digest);
      digest[64] = 0;
    }
    free(jcs);
    kbs__thumbprint(claims, s->cfg, thumb, sizeof thumb);
    if (!tee) tee = kbs__claims_tee(claims);
  }
  kbs_audit_event e = {.event = event, .tee = tee, .tee_key = thumb[0] ? thumb : NULL,
                       .claims_sha256 = digest[0] ? digest : NULL, .path = path, .decision = decision, .reason = reason};
  if (kbs_audit_append(s->audit, &e, &err) != CT_OK) CT_LOG_WARN_("kbs", "%s", err.msg);
}

/* --- routing ---------------------------------------------------------------------------------- */

bool kbs_store_is_remote(const kvs *k) {
  return k && (kvs_get_type(k) == KVS_POSTGRES || kvs_get_type(k) == KVS_REDIS);
}

/* /readyz: the backends as the last probe (kbs_server_tick) found them. Probing here would make
 * a request wait on the network. */
static void kbs__readyz(kbs_server *s, kbs_http_response *r) {
  pthread_mutex_lock(&s->health_lock);
  json_t *body = s->health ? json_pack("{s:s, s:s}", "status", "unavailable", "reason", s->health)
                           : json_pack("{s:s}", "status", "ready");
  pthread_mutex_unlock(&s->health_lock);
  bool ready = body && !json_object_get(body, "reason");
  kbs_reply_json(r, body ? body : json_object());
  if (!ready) r->status = 503;
}

/* Requests whose handling may wait on a remote storage backend (PostgreSQL, Redis, a Vault
 * write). They run on the blocking pool, so a slow backend never holds a compute thread:
 * /auth, /healthz and other handshakes go on. Vault reads need not: they are asynchronous. */
static bool kbs__needs_blocking(kbs_server *s, const kbs_http_request *req) {
  const char *rest = req->path + (strncmp(req->path, "/kbs/v0/", 8) ? strlen(req->path) : 8);
  if (!*rest) return false;
  bool remote_main = kbs_store_is_remote(s->store) || kbs_store_is_remote(s->rv_store);
  bool remote_session = s->session_shared && kbs_store_is_remote(s->session_store);
  if (!strcmp(rest, "auth")) return false;
  if (!strcmp(rest, "attest")) return remote_session;
  if (!strncmp(rest, "resource/", 9) && req->method == KBS_GET) {
    char buf[KBS_COOKIE_MAX];
    return (!s->vault && kbs_store_is_remote(s->resources)) || (remote_session && kbs_session_cookie(req, buf));
  }
  /* The admin API. */
  return remote_main || kbs_store_is_remote(s->resources) || (s->vault && !strncmp(rest, "resource/", 9));
}

/* The handshake and resource reads run on the event loop that read them (kbs_http_inline_fn):
 * they are CPU work, and the hand-off to the compute pool and back cost more than /auth itself.
 * Only what cannot wait on the network qualifies: nothing kbs__needs_blocking sends to the
 * blocking pool, and /attest only for TEEs whose verifiers never fetch collateral (SNP and TDX
 * ones may wait for AMD KDS / Intel PCS, which must not stall every connection of a loop). A
 * Vault read defers as it does on the pool. */
static bool kbs__runs_inline(void *ctx, const kbs_http_request *req) {
  kbs_server *s = ctx;
  if (strncmp(req->path, "/kbs/v0/", 8) || kbs__needs_blocking(s, req)) return false;
  const char *rest = req->path + 8;
  if (req->method == KBS_GET) return !strncmp(rest, "resource/", 9) && s->cfg->resource_plugin;
  if (req->method != KBS_POST || !s->as) return false;
  if (!strcmp(rest, "auth")) return true;
  if (strcmp(rest, "attest")) return false;
  char buf[KBS_COOKIE_MAX];
  const char *id = kbs_session_cookie(req, buf);
  kbs_session_view sv;
  ct_err err;
  if (!id || kbs_sessions_get(s->sessions, id, &sv, &err) != CT_OK) return true; /* refused at once */
  kbs_session_view_clear(&sv);
  return !strcmp(sv.tee, "sample") || !strcmp(sv.tee, "tpm");
}

static void kbs__route(kbs_server *s, const kbs_http_request *req, kbs_http_response *r) {
  const char *path = req->path;
  if (!strcmp(path, "/healthz") && req->method == KBS_GET) {
    r->status = 200;
    return;
  }
  if (!strcmp(path, "/readyz") && req->method == KBS_GET) {
    kbs__readyz(s, r);
    return;
  }
  if (!strcmp(path, "/metrics") && req->method == KBS_GET) {
    ct_err err;
    size_t attested = 0, nonces = 0;
    kbs_sessions_counts(s->sessions, &attested, &nonces);
    if (kbs_metrics_render(&r->body, &err) != CT_OK ||
        ct_buf_printf(&r->body, &err,
                      "# HELP kbs_attested_sessions Sessions whose attestation token this KBS holds.\n"
                      "# TYPE kbs_attested_sessions gauge\nkbs_attested_sessions %zu\n"
                      "# HELP kbs_nonce_records Live single-use nonce records (sessions attested here, until they "
                      "expire).\n# TYPE kbs_nonce_records gauge\nkbs_nonce_records %zu\n",
                      attested, nonces) != CT_OK) {
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

static void kbs__handle(void *ctx, const kbs_http_request *req, kbs_http_response *r);

/* Every admin write (and its refusal) goes to the audit log: decided here, after the handler,
 * so that no admin path can forget it. */
static void kbs__audit_admin(kbs_server *s, const kbs_http_request *req, const kbs_http_response *r) {
  if (!s->audit || req->method == KBS_GET || strncmp(req->path, "/kbs/v0/", 8)) return;
  const char *rest = req->path + 8;
  if (!strcmp(rest, "auth") || !strcmp(rest, "attest")) return;
  char reason[600] = "";
  if (r->status != 200 && r->body.len) {
    json_t *e = NULL;
    ct_err ignored;
    if (ct_json_parse((const char *)r->body.data, r->body.len, 4, &e, &ignored) == CT_OK) {
      const char *type = json_string_value(json_object_get(e, "type"));
      const char *detail = json_string_value(json_object_get(e, "detail"));
      const char *variant = type && strrchr(type, '/') ? strrchr(type, '/') + 1 : "error";
      snprintf(reason, sizeof reason, "%.64s: %.500s", variant, detail ? detail : "");
      json_decref(e);
    }
  }
  const char *decision = r->status == 200 ? "allow" : strstr(reason, "AdminAuth") ? "deny" : "error";
  kbs_audit_note(s, req->method == KBS_DELETE ? "admin-delete" : "admin-write", NULL, NULL, req->path, decision,
                 reason[0] ? reason : NULL);
}

static void kbs__handle_blocking(void *ctx, const kbs_http_request *req, kbs_http_response *r, void *arg) {
  (void)arg;
  kbs__handle(ctx, req, r);
}

static void kbs__handle(void *ctx, const kbs_http_request *req, kbs_http_response *r) {
  kbs_server *s = ctx;
  if (!kbs_http_on_blocking_thread() && kbs__needs_blocking(s, req)) {
    kbs_http_pending *p = kbs_http_defer(req);
    if (p) {
      kbs_http_pending_offload(p, kbs__handle_blocking, NULL);
      return;
    }
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  kbs_metrics_connections(1);
  kbs__route(s, req, r);
  kbs_metrics_connections(-1);
  /* A deferred reply is finished on another thread: its response is not ours to read. */
  if (kbs_http_is_deferred(req)) return;
  kbs__audit_admin(s, req, r);
  if (strcmp(req->path, "/metrics")) {
    kbs_metrics_inc(KBS_M_HTTP_REQUESTS);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    kbs_metrics_request((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, req->body_len,
                        r->body.len);
  }
}

/* --- lifecycle -------------------------------------------------------------------------------- */

/* The attestation policy directory is written through the admin API like the store, so it
 * becomes the service user's too, with its regular files (rvps_chown does the same for the
 * reference-value file). A read-only mount (a Kubernetes ConfigMap) stays as it is, and so does a
 * directory reached through a link; no link is followed. */
static CT_RESULT kbs__chown_input(const char *path, uid_t uid, gid_t gid, ct_err *err) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ELOOP) return CT_OK;
  CT_ENSURE(fd >= 0, err, CT_EIO, "cannot open %s: %s", path, strerror(errno));
  if (fchown(fd, uid, gid) != 0 && errno != EROFS) {
    int e = errno;
    close(fd);
    return ct_fail(err, CT_EIO, "cannot hand %s to the service user: %s", path, strerror(e));
  }
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return ct_fail(err, CT_EIO, "cannot list %s: %s", path, strerror(errno));
  }
  struct dirent *e;
  ct_status st = CT_OK;
  while (st == CT_OK && (e = readdir(d)) != NULL) {
    struct stat sb;
    if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode))
      continue;
    if (fchownat(dirfd(d), e->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0 && errno != EROFS)
      st = ct_fail(err, CT_EIO, "cannot hand %s/%s to the service user: %s", path, e->d_name, strerror(errno));
  }
  closedir(d);
  return st;
}

/* Everything that needs root (keys, certificates, storage directories) is open by now; the
 * KBS serves requests as a user of its own, which owns the storage (0700 directories, 0600
 * files). A user other processes run as could read every secret and rewrite the policies, so
 * the accounts that conventionally are shared are refused. */
static CT_RESULT kbs__drop_privileges(kbs_server *s, const char *user, ct_err *err) {
  struct passwd *pw = getpwnam(user);
  CT_ENSURE(pw, err, CT_EINVAL,
            "KBS_USER \"%s\" does not exist: started as root, the KBS serves as a dedicated user that owns its "
            "storage; create it (useradd --system --no-create-home --shell /usr/sbin/nologin %s; "
            "scripts/install-deps does) or name another with KBS_USER", user, user);
  CT_ENSURE(pw->pw_uid != 0, err, CT_EINVAL, "KBS_USER \"%s\" has uid 0: use KBS_USER=root to serve as root", user);
  CT_ENSURE(strcmp(pw->pw_name, "nobody") && pw->pw_uid != 65534 && strcmp(pw->pw_name, "daemon") &&
                strcmp(pw->pw_name, "www-data"),
            err, CT_EINVAL,
            "KBS_USER \"%s\" is an account other services share: any process running as it could read every "
            "secret in the storage and rewrite the resource policy; create a dedicated user (useradd --system "
            "--no-create-home --shell /usr/sbin/nologin %s) and name it with KBS_USER",
            user, KBS_DEFAULT_USER);
  if (s->cfg->as_enabled && s->cfg->as_policy_dir) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/opa", s->cfg->as_policy_dir);
    CT_GUARD(kbs__chown_input(dir, pw->pw_uid, pw->pw_gid, err));
  }
  CT_GUARD(rvps_chown(s->rvps, pw->pw_uid, pw->pw_gid, err));
  CT_GUARD(kvs_chown(s->store, pw->pw_uid, pw->pw_gid, err));
  if (s->resources != s->store) CT_GUARD(kvs_chown(s->resources, pw->pw_uid, pw->pw_gid, err));
  if (s->rv_store != s->store) CT_GUARD(kvs_chown(s->rv_store, pw->pw_uid, pw->pw_gid, err));
  if (s->session_store != s->store) CT_GUARD(kvs_chown(s->session_store, pw->pw_uid, pw->pw_gid, err));
  CT_ENSURE(setgroups(0, NULL) == 0 && setgid(pw->pw_gid) == 0 && setuid(pw->pw_uid) == 0, err, CT_EIO,
            "cannot switch to user %s: %s", user, strerror(errno));
  CT_ENSURE(setuid(0) != 0, err, CT_EINTERNAL, "privileges could be regained after dropping them");
  CT_LOG_INFO_("kbs", "running as %s (uid %u)", user, (unsigned)pw->pw_uid);
  return CT_OK;
}

/* A cookie-sealing key file holds 32 random bytes (raw, or 64 hex digits). Replicas of one KBS
 * share it (storage_backend.session_key_file, or KBS_SESSION_KEY_FILE), so that a handshake
 * begun on one replica can finish on another. */
static CT_RESULT kbs__read_key_file(const char *what, const char *path, uint8_t key[32], ct_err *err) {
  uint8_t *data = NULL;
  size_t len = 0;
  if (ct_file_read(path, 4096, &data, &len, err) != CT_OK) return ct_err_prefix(err, "%s: ", what);
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
    st = ct_fail(err, CT_EINVAL, "%s %s must hold 32 bytes or 64 hex digits (found %zu bytes)", what, path, len);
  }
  ct_wipe(data, len);
  free(data);
  return st;
}

/* The sealing key: a key file when configured; otherwise, when session_storage_type names a
 * backend the replicas share (upstream's meaning: sessions live there), one random key the first
 * replica stores there and the others read; otherwise a random key of this process (sessions do
 * not outlive it). */
static CT_RESULT kbs__session_key(kbs_server *s, uint8_t key[32], bool *have, ct_err *err) {
  const kbs_config *cfg = s->cfg;
  const char *env = getenv("KBS_SESSION_KEY_FILE");
  *have = false;
  if (cfg->session_key_file) {
    CT_GUARD(kbs__read_key_file("storage_backend.session_key_file", cfg->session_key_file, key, err));
    *have = true;
  } else if (env && *env) {
    CT_GUARD(kbs__read_key_file("KBS_SESSION_KEY_FILE", env, key, err));
    *have = true;
  } else if (s->session_shared && cfg->session_storage_type_set && !cfg->session_stateless) {
    uint8_t fresh[32];
    CT_GUARD(ct_random(fresh, sizeof fresh, err));
    bool inserted = false;
    ct_status st = kvs_put_nx(s->session_store, KBS_SESSION_NS, "cookie-sealing-key", fresh, sizeof fresh, 0,
                              &inserted, err);
    ct_wipe(fresh, sizeof fresh);
    uint8_t *v = NULL;
    size_t n = 0;
    if (st == CT_OK) st = kvs_get(s->session_store, KBS_SESSION_NS, "cookie-sealing-key", &v, &n, err);
    if (st == CT_OK && n != 32) st = ct_fail(err, CT_EINVAL, "the shared cookie-sealing key in storage is not 32 bytes");
    if (st == CT_OK) memcpy(key, v, 32);
    if (v) ct_wipe(v, n);
    free(v);
    if (st != CT_OK) return ct_err_prefix(err, "session storage (%s): ", kvs_type_name(kvs_get_type(s->session_store)));
    *have = true;
  }
  return CT_OK;
}

static CT_RESULT kbs__open_vault(kbs_server *s, ct_err *err) {
  const kbs_vault_config *v = &s->cfg->vault;
  vault_kv_config vc = {.url = v->url, .token = v->token, .mount_path = v->mount_path, .verify_ssl = v->verify_ssl,
                        .ca_certs = (const char *const *)v->ca_certs, .n_ca_certs = v->n_ca_certs,
                        .kv_version = v->kv_version, .secret_path = v->secret_path, .secret_field = v->secret_field,
                        .cache_ttl_s = v->cache_ttl_s, .timeout_ms = v->timeout_ms};
  CT_GUARD(vault_kv_new(&vc, &s->vault, err));
  CT_LOG_INFO_("kbs", "resources from Vault %s (mount %s, KV v%u, path \"%s\", field \"%s\", cache %u s)", v->url,
               v->mount_path, v->kv_version, v->secret_path, v->secret_field, v->cache_ttl_s);
  return CT_OK;
}

static CT_RESULT kbs__open_store(const kbs_config *cfg, kvs_type type, kvs **out, ct_err *err) {
  kvs_config kc;
  kbs_config_kvs(cfg, type, &kc);
  if (kvs_open(&kc, out, err) != CT_OK) return ct_err_prefix(err, "storage_backend (%s): ", kvs_type_name(type));
  return CT_OK;
}

CT_RESULT kbs_server_create(const kbs_config *cfg, kbs_server **out, ct_err *err) {
  kbs_server *s = calloc(1, sizeof *s);
  CT_ENSURE(s, err, CT_ENOMEM, "out of memory");
  s->cfg = cfg;
  pthread_rwlock_init(&s->policy_lock, NULL);
  pthread_rwlock_init(&s->vault_lock, NULL);
  pthread_mutex_init(&s->health_lock, NULL);
  ct_status st;
  CT_GUARD_GOTO(st, kbs__open_store(cfg, cfg->storage_type, &s->store, err), fail);
  s->resources = s->store;
  if (cfg->resource_dir) {
    kvs_config rc = {.type = KVS_LOCAL_FS, .dir_path = cfg->resource_dir};
    CT_GUARD_GOTO(st, kvs_open(&rc, &s->resources, err), fail);
  }
  if (cfg->resource_plugin && cfg->resource_backend == KBS_RESOURCE_VAULT) CT_GUARD_GOTO(st, kbs__open_vault(s, err), fail);
  kvs_type sess_type = cfg->session_stateless ? cfg->storage_type : cfg->session_storage_type;
  s->session_store = s->store;
  if (sess_type != cfg->storage_type) CT_GUARD_GOTO(st, kbs__open_store(cfg, sess_type, &s->session_store, err), fail);
  /* Replica mode is asked for by naming the session storage, or by a shared cookie key: only
   * then do nonce and attested-session records go to storage (a lone KBS keeps them in memory). */
  const char *env_key = getenv("KBS_SESSION_KEY_FILE");
  bool replicas = (cfg->session_storage_type_set && !cfg->session_stateless) || cfg->session_key_file ||
                  (env_key && *env_key);
  s->session_shared = replicas && kvs_is_shared(s->session_store);
  uint8_t session_key[32];
  bool have_key = false;
  CT_GUARD_GOTO(st, kbs__session_key(s, session_key, &have_key, err), fail);
  st = kbs_sessions_new(KBS_MAX_ATTESTED_SESSIONS, have_key ? session_key : NULL, &s->sessions, err);
  ct_wipe(session_key, sizeof session_key);
  if (st != CT_OK) goto fail;
  for (size_t i = 0; i < cfg->n_session_previous_key_files; i++) {
    uint8_t old[32];
    st = kbs__read_key_file("storage_backend.session_previous_key_files", cfg->session_previous_key_files[i], old, err);
    if (st == CT_OK) st = kbs_sessions_add_old_key(s->sessions, old, err);
    ct_wipe(old, sizeof old);
    if (st != CT_OK) goto fail;
  }
  CT_LOG_INFO_("kbs", "sessions: %s cookie key; nonces single-use %s", have_key ? "shared" : "per-process",
               s->session_shared ? "across replicas (shared storage)" : "within this process only");
  if (cfg->audit_path) CT_GUARD_GOTO(st, kbs_audit_open(cfg->audit_path, &s->audit, err), fail);
  if (cfg->audit_storage) {
    char host[65] = "kbs";
    if (!cfg->audit_replica && gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "kbs");
    CT_GUARD_GOTO(st, kbs_audit_open_store(s->store, cfg->audit_replica ? cfg->audit_replica : host, &s->audit, err),
                  fail);
  }
  CT_GUARD_GOTO(st, kbs_token_verifier_new(cfg, &s->tokens, err), fail);
  CT_GUARD_GOTO(st, kbs_admin_new(cfg, &s->admin, err), fail);
  s->rv_store = s->store;
  if (cfg->rvps_storage_type_set && cfg->rvps_storage_type != cfg->storage_type) {
    if (kbs__open_store(cfg, cfg->rvps_storage_type, &s->rv_store, err) != CT_OK) {
      s->rv_store = s->store;
      st = ct_err_prefix(err, "attestation_service.rvps_config.storage_type: ");
      goto fail;
    }
  } else if (cfg->rvps_store_dir) {
    kvs_config rc = {.type = KVS_LOCAL_JSON, .dir_path = cfg->rvps_store_dir};
    if (kvs_open(&rc, &s->rv_store, err) != CT_OK) {
      s->rv_store = s->store;
      st = ct_err_prefix(err, "attestation_service.rvps_config.storage: ");
      goto fail;
    }
  }
  if (cfg->rvps_file) CT_GUARD_GOTO(st, rvps_new_file(cfg->rvps_file, &s->rvps, err), fail);
  else CT_GUARD_GOTO(st, rvps_new(s->rv_store, &s->rvps, err), fail);
  if (cfg->as_enabled) {
    as_config ac = {
        .store = s->store,
        .policy_dir = cfg->as_policy_dir,
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

/* Private keys are read once, at start-up (as root when started as root): they should be readable
 * by their owner alone. Not refused (an operator's layout is theirs), but said loudly. */
static void kbs__check_secret_file(const char *what, const char *path) {
  struct stat st;
  if (!path || lstat(path, &st) != 0) return;
  if (S_ISLNK(st.st_mode)) return; /* a managed secret mount (Kubernetes) links to a 0400/0600 file */
  if (st.st_mode & 077)
    CT_LOG_WARN_("kbs", "%s %s is readable or writable by group or others (mode %04o): secrets belong in files "
                 "of mode 0600 owned by root or by the user the KBS serves as", what, path, (unsigned)(st.st_mode & 07777));
}

CT_RESULT kbs_server_start(const kbs_config *cfg, const char *run_as, kbs_server **out, ct_err *err) {
  kbs__check_secret_file("http_server.private_key", cfg->private_key);
  kbs__check_secret_file("attestation_token_broker.signer.key_path", cfg->signer_key_path);
  kbs__check_secret_file("session_key_file", cfg->session_key_file);
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
      .reuse_port = cfg->reuse_port,
      .runs_inline = kbs__runs_inline,
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

/* Probes every backend (bounded by their timeouts) for /readyz; logs changes. */
static void kbs__probe(kbs_server *s) {
  char why[1024] = "";
  ct_err err;
  kvs *stores[] = {s->store, s->resources, s->rv_store, s->session_store};
  const char *names[] = {"storage", "resource storage", "reference value storage", "session storage"};
  for (size_t i = 0; i < 4; i++) {
    bool seen = false;
    for (size_t j = 0; j < i; j++) seen |= stores[j] == stores[i];
    if (seen || !stores[i] || kvs_ping(stores[i], &err) == CT_OK) continue;
    size_t n = strlen(why);
    snprintf(why + n, sizeof why - n, "%s%s (%s): %s", n ? "; " : "", names[i], kvs_type_name(kvs_get_type(stores[i])),
             err.msg);
  }
  if (s->vault && vault_kv_ping(s->vault, &err) != CT_OK) {
    size_t n = strlen(why);
    snprintf(why + n, sizeof why - n, "%sresource backend (Vault): %s", n ? "; " : "", err.msg);
  }
  pthread_mutex_lock(&s->health_lock);
  bool changed = (s->health == NULL) != (why[0] == 0) || (s->health && strcmp(s->health, why));
  free(s->health);
  s->health = why[0] ? strdup(why) : NULL;
  pthread_mutex_unlock(&s->health_lock);
  if (changed && why[0]) CT_LOG_WARN_("kbs", "not ready: %s", why);
  else if (changed) CT_LOG_INFO_("kbs", "ready: every backend answers");
}

void kbs_server_tick(kbs_server *s) {
  kbs_sessions_sweep(s->sessions);
  kbs_resource_policy_reload(s);
  if (s->as) as_reload_policies(s->as);
  kbs__probe(s);
  static unsigned ticks;
  ct_err err;
  /* Expired nonce and session records in shared storage (Redis expires its own). */
  if (s->session_shared && ++ticks % 30 == 0 && kvs_sweep(s->session_store, KBS_SESSION_NS, &err) != CT_OK)
    CT_LOG_WARN_("kbs", "sweeping expired session records: %s", err.msg);
}

void kbs_server_stop(kbs_server *s) {
  if (!s) return;
  /* Vault reads in flight complete (cancelled) into the still-running pools; none start after. */
  pthread_rwlock_wrlock(&s->vault_lock);
  s->vault_closed = true;
  vault_kv_free(s->vault);
  s->vault = NULL;
  pthread_rwlock_unlock(&s->vault_lock);
  if (s->http) kbs_http_stop(s->http);
  as_service_free(s->as);
  rvps_free(s->rvps);
  kbs_admin_free(s->admin);
  kbs_token_verifier_free(s->tokens);
  kbs_sessions_free(s->sessions);
  rego_policy_free(s->resource_policy);
  if (s->resources != s->store) kvs_close(s->resources);
  if (s->rv_store && s->rv_store != s->store) kvs_close(s->rv_store);
  if (s->session_store && s->session_store != s->store) kvs_close(s->session_store);
  kbs_audit_close(s->audit); /* its writer thread stores into s->store */
  kvs_close(s->store);
  free(s->health);
  pthread_mutex_destroy(&s->health_lock);
  pthread_rwlock_destroy(&s->vault_lock);
  pthread_rwlock_destroy(&s->policy_lock);
  free(s);
}
