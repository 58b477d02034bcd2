/*
 * kbs_resource.c - GET /kbs/v0/resource/<repo>/<type>/<tag>: the token's claims, the resource
 * policy's verdict and the JWE-wrapped secret.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/http.h>

#include "ct_codec.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "jose.h"
#include "ct_log.h"
#include "kbs_internal.h"
#include "kbs_metrics.h"

/* Trustee: each part matches [A-Za-z0-9_-]+[A-Za-z0-9_.-]* (no leading dot), bounded here. */
static CT_RESULT kbs__check_id_part(const char *part, const char *what, ct_err *err) {
  size_t n = strlen(part);
  CT_ENSURE(n > 0, err, CT_EINVAL, "resource %s is empty", what);
  CT_ENSURE(n <= KBS_MAX_ID_PART, err, CT_EINVAL, "resource %s is longer than %d characters", what, KBS_MAX_ID_PART);
  CT_ENSURE(part[0] != '.', err, CT_EINVAL, "resource %s \"%.64s\" starts with a dot", what, part);
  for (size_t i = 0; i < n; i++) {
    char c = part[i];
    CT_ENSURE((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
                  c == '.',
              err, CT_EINVAL, "resource %s \"%.64s\" has a character outside [A-Za-z0-9_.-]", what, part);
  }
  return CT_OK;
}

/* Splits "repo/type/tag" (exactly three parts) and validates each part. */
CT_RESULT kbs_resource_id(const char *rest, char parts[3][KBS_MAX_ID_PART + 1], ct_err *err) {
  static const char *const names[] = {"repository", "type", "tag"};
  const char *p = rest;
  for (int i = 0; i < 3; i++) {
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    CT_ENSURE((i < 2) == (slash != NULL), err, CT_EINVAL,
              "resource path must be <repository>/<type>/<tag> (exactly three parts)");
    CT_ENSURE(n <= KBS_MAX_ID_PART, err, CT_EINVAL, "resource %s is longer than %d characters", names[i],
              KBS_MAX_ID_PART);
    memcpy(parts[i], p, n);
    parts[i][n] = 0;
    CT_GUARD(kbs__check_id_part(parts[i], names[i], err));
    p = slash ? slash + 1 : p + n;
  }
  return CT_OK;
}

/* Evaluates data.policy.allow: input = token claims, data = {plugin, resource-path, query}. */
static CT_RESULT kbs__policy_allows(kbs_server *s, const json_t *claims, char parts[3][KBS_MAX_ID_PART + 1],
                                    const char *query, bool *allowed, ct_err *err) {
  json_t *q = json_object();
  if (query) {
    char *dup = NULL;
    CT_GUARD(ct_strdup(query, &dup, err));
    char *save = NULL;
    size_t n = 0;
    for (char *kv = strtok_r(dup, "&", &save); kv && n < 32; kv = strtok_r(NULL, "&", &save), n++) {
      char *eq = strchr(kv, '=');
      if (eq) *eq = 0;
      /* Percent-decoded like Trustee's query map; a value that does not decode to UTF-8 is
       * dropped rather than handed to the policy half-formed. */
      char *key = evhttp_uridecode(kv, 1, NULL), *val = evhttp_uridecode(eq ? eq + 1 : "", 1, NULL);
      if (key && val) json_object_set_new(q, key, json_string(val));
      free(key);
      free(val);
    }
    free(dup);
  }
  json_t *data = json_pack("{s:s, s:[s,s,s], s:o}", "plugin", "resource", "resource-path", parts[0], parts[1], parts[2],
                           "query", q);
  CT_ENSURE(data, err, CT_ENOMEM, "out of memory");
  json_t *result = NULL;
  kbs_metrics_inc(KBS_M_POLICY_EVALUATIONS);
  pthread_rwlock_rdlock(&s->policy_lock);
  ct_status st = rego_eval(s->resource_policy, "data.policy.allow", claims, data, &result, err);
  pthread_rwlock_unlock(&s->policy_lock);
  json_decref(data);
  if (st != CT_OK) {
    kbs_metrics_inc(KBS_M_POLICY_ERRORS);
    return st;
  }
  *allowed = json_is_true(result);
  json_decref(result);
  kbs_metrics_inc(*allowed ? KBS_M_POLICY_APPROVALS : KBS_M_POLICY_VIOLATIONS);
  return CT_OK;
}

/* The TEE key the resource is encrypted to (Trustee kbs/src/token: first hit wins). */
static const json_t *kbs__find_teekey(const kbs_server *s, const json_t *claims) {
  const char *defaults[] = {"/tdx/attester_runtime_data/tee-pubkey", "/tdx/attester_user_data/tee-pubkey",
                            "/customized_claims/runtime_data/tee-pubkey",
                            "/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey",
                            "/tee-pubkey"};
  size_t n = s->cfg->n_extra_teekey_paths + 5;
  for (size_t i = 0; i < n; i++) {
    const char *path = i < s->cfg->n_extra_teekey_paths ? s->cfg->extra_teekey_paths[i]
                                                        : defaults[i - s->cfg->n_extra_teekey_paths];
    const json_t *cur = claims;
    char seg[256];
    const char *p = path;
    while (cur && *p == '/') {
      p++;
      size_t len = strcspn(p, "/");
      if (len >= sizeof seg) {
        cur = NULL;
        break;
      }
      memcpy(seg, p, len);
      seg[len] = 0;
      cur = json_object_get(cur, seg);
      p += len;
    }
    if (cur && json_is_object(cur)) return cur;
  }
  return NULL;
}

/* "cpu0: ear.status=warning (configuration=0 executables=33 hardware=2)": the part of a token that
 * usually explains a denial, and none of it secret. */
static void kbs__appraisal_summary(const json_t *claims, char *out, size_t cap) {
  size_t n = 0;
  out[0] = 0;
  json_t *submods = json_object_get(claims, "submods");
  const char *name;
  json_t *sm;
  json_object_foreach(submods, name, sm) {
    const char *status = json_string_value(json_object_get(sm, "ear.status"));
    int w = snprintf(out + n, cap - n, "%s%.32s: ear.status=%.20s", n ? "; " : "", name, status ? status : "?");
    if (w < 0 || (size_t)w >= cap - n) return;
    n += (size_t)w;
    json_t *tv = json_object_get(sm, "ear.trustworthiness-vector");
    const char *claim;
    json_t *v;
    bool first = true;
    json_object_foreach(tv, claim, v) {
      if (!json_is_integer(v) || json_integer_value(v) == 0) continue;
      w = snprintf(out + n, cap - n, "%s%.24s=%lld", first ? " (" : " ", claim, (long long)json_integer_value(v));
      if (w < 0 || (size_t)w >= cap - n) return;
      n += (size_t)w;
      first = false;
    }
    if (!first && n + 1 < cap) {
      out[n++] = ')';
      out[n] = 0;
    }
  }
  if (!n) snprintf(out, cap, "the token carries no appraisal");
}

/* "/kbs/v0/resource/<key>" (the audit path), as snprintf would write it into `path`. */
static void kbs__resource_path(char *path, size_t cap, const char *key) {
  static const char prefix[] = "/kbs/v0/resource/";
  size_t room = cap - 1, pn = sizeof prefix - 1 < room ? sizeof prefix - 1 : room, kn = strlen(key);
  if (kn > room - pn) kn = room - pn;
  memcpy(path, prefix, pn);
  memcpy(path + pn, key, kn);
  path[pn + kn] = 0;
}

/* Encrypts the secret to the token's TEE key and answers; consumes `secret` and `claims`. */
static void kbs__release(kbs_server *s, kbs_http_response *r, json_t *claims, const char *tee, const char *key,
                         uint8_t *secret, size_t len) {
  ct_err err;
  char path[3 * KBS_MAX_ID_PART + 24];
  kbs__resource_path(path, sizeof path, key);
  const json_t *teekey = kbs__find_teekey(s, claims);
  json_t *jwe = NULL;
  ct_status st;
  if (!teekey) st = ct_fail(&err, CT_EINVAL, "the token carries no TEE public key to encrypt the resource to");
  else st = jose_jwe_encrypt(teekey, secret, len, &jwe, &err);
  ct_wipe(secret, len);
  free(secret);
  if (st != CT_OK) {
    kbs_audit_note(s, "resource-refusal", claims, tee, path, "error", err.msg);
    json_decref(claims);
    kbs_reply_error(r, "JweError", "JWE error: %s", err.msg);
    return;
  }
  kbs_audit_note(s, "resource-release", claims, tee, path, "allow", NULL);
  json_decref(claims);
  kbs_metrics_resource(key, 0);
  kbs_reply_json(r, jwe);
}

static void kbs__fetch_failed(kbs_server *s, kbs_http_response *r, json_t *claims, const char *tee, const char *key,
                              ct_status st, const char *why) {
  char path[3 * KBS_MAX_ID_PART + 24];
  snprintf(path, sizeof path, "/kbs/v0/resource/%s", key);
  kbs_audit_note(s, "resource-refusal", claims, tee, path, "error", st == CT_ENOTFOUND ? "not found" : why);
  json_decref(claims);
  kbs_reply_error(r, "PluginInternalError", "Plugin internal error: resource %s: %s", key,
                  st == CT_ENOTFOUND && !strstr(why, "vault") ? "not found" : why);
}

/* A Vault read in flight: completes on the HTTP pool's thread, continues on the compute pool. */
typedef struct kbs__vault_read {
  kbs_server *s;
  kbs_http_pending *p;
  json_t *claims;
  char tee[32];
  char key[3 * KBS_MAX_ID_PART + 3];
  ct_status st;
  uint8_t *secret;
  size_t len;
  char why[CT_ERR_MSG_MAX];
} kbs__vault_read;

static void kbs__vault_continue(void *ctx, const kbs_http_request *req, kbs_http_response *r, void *arg) {
  (void)ctx;
  (void)req;
  kbs__vault_read *vr = arg;
  if (vr->st == CT_OK) kbs__release(vr->s, r, vr->claims, vr->tee[0] ? vr->tee : NULL, vr->key, vr->secret, vr->len);
  else kbs__fetch_failed(vr->s, r, vr->claims, vr->tee[0] ? vr->tee : NULL, vr->key, vr->st, vr->why);
  free(vr);
}

static void kbs__vault_done(void *ud, ct_status st, uint8_t *value, size_t len, const ct_err *err) {
  kbs__vault_read *vr = ud;
  vr->st = st;
  vr->secret = value;
  vr->len = len;
  if (st != CT_OK) snprintf(vr->why, sizeof vr->why, "%s", err ? err->msg : "vault read failed");
  kbs_http_pending_resume(vr->p, kbs__vault_continue, vr);
}

/* Reads the secret from Vault without holding this thread; consumes claims. */
static void kbs__vault_fetch(kbs_server *s, const kbs_http_request *req, kbs_http_response *r, json_t *claims,
                             const char *tee, const char *key, char parts[3][KBS_MAX_ID_PART + 1]) {
  ct_err err;
  kbs_http_pending *p = kbs_http_defer(req);
  if (!p) { /* a synthetic request (fuzzing): read in place */
    uint8_t *secret = NULL;
    size_t len = 0;
    ct_status st = vault_kv_get(s->vault, parts[0], parts[1], parts[2], &secret, &len, &err);
    if (st == CT_OK) kbs__release(s, r, claims, tee, key, secret, len);
    else kbs__fetch_failed(s, r, claims, tee, key, st, err.msg);
    return;
  }
  kbs__vault_read *vr = calloc(1, sizeof *vr);
  if (!vr) {
    kbs__fetch_failed(s, r, claims, tee, key, CT_ENOMEM, "out of memory");
    kbs_http_pending_done(p);
    return;
  }
  *vr = (kbs__vault_read){.s = s, .p = p, .claims = claims};
  snprintf(vr->tee, sizeof vr->tee, "%s", tee ? tee : "");
  snprintf(vr->key, sizeof vr->key, "%s", key);
  pthread_rwlock_rdlock(&s->vault_lock);
  ct_status st = s->vault_closed ? ct_fail(&err, CT_EIO, "vault: the KBS is shutting down")
                                 : vault_kv_get_async(s->vault, parts[0], parts[1], parts[2], kbs__vault_done, vr, &err);
  pthread_rwlock_unlock(&s->vault_lock);
  if (st != CT_OK) {
    kbs__fetch_failed(s, r, claims, tee, key, st, err.msg);
    free(vr);
    kbs_http_pending_done(p);
  }
}

/* Claims of a token this KBS issued into an attested session (ours, held server-side or in the
 * shared session storage): used as stored, their expiry still applies. */
static CT_RESULT kbs__session_claims(const char *token, json_t **claims, ct_err *err) {
  /* Only the payload is decoded: the header (our signer's, with its certificate chain) would
   * cost as much again on every resource request and tells nothing here. */
  const char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
  CT_ENSURE(d2, err, CT_EINVAL, "the session's token is not a compact JWS");
  uint8_t *payload = NULL;
  size_t plen = 0;
  ct_status st = ct_b64_decode(CT_B64_URL, d1 + 1, (size_t)(d2 - d1 - 1), &payload, &plen, err);
  if (st == CT_OK) st = ct_json_parse((const char *)payload, plen, 64, claims, err);
  free(payload);
  if (st == CT_OK && jose_jwt_check_times(*claims, (int64_t)time(NULL), 60, true, err) != CT_OK) {
    json_decref(*claims);
    *claims = NULL;
    st = CT_EEXPIRED;
  }
  return st;
}

void kbs_handle_resource_get(kbs_server *s, const kbs_http_request *req, const char *rest, kbs_http_response *r) {
  ct_err err;
  char parts[3][KBS_MAX_ID_PART + 1];
  if (kbs_resource_id(rest, parts, &err) != CT_OK) {
    kbs_reply_error(r, "InvalidRequestPath", "%s", err.msg);
    return;
  }
  /* A token this KBS issued into an attested session is held server-side and never was out of
   * our hands, so its claims are used as stored (their expiry still applies); any other token
   * is verified in full. Trustee re-verifies the session token: same outcome, one ES256
   * verification less per request. A session attested on another replica is found in the
   * shared session storage. */
  json_t *claims = NULL;
  ct_status st = CT_OK;
  char idbuf[KBS_COOKIE_MAX], tee[32] = "";
  const char *id = kbs_session_cookie(req, idbuf);
  if (id) {
    kbs_session_view sv;
    if (kbs_sessions_get(s->sessions, id, &sv, &err) == CT_OK) {
      snprintf(tee, sizeof tee, "%s", sv.tee);
      if (sv.claims) {
        /* Parsed once when the session attested: their expiry still applies, as above. */
        if (jose_jwt_check_times(sv.claims, (int64_t)time(NULL), 60, true, &err) != CT_OK) {
          kbs_session_view_clear(&sv);
          kbs_reply_error(r, "TokenVerifierError", "Token Verifier error: the session's attestation token: %s", err.msg);
          return;
        }
        claims = sv.claims;
        sv.claims = NULL;
      }
      char *token = claims ? NULL : sv.token ? sv.token : kbs_session_shared_token(s, &sv);
      if (token) {
        /* A token from the shared storage was issued by some replica: verified in full (a
         * rotated signer's tokens, or rows written by someone else, are not taken on trust). */
        st = sv.token ? kbs__session_claims(token, &claims, &err) : kbs_token_verify(s->tokens, token, &claims, &err);
        /* Remembered here too: the next request with this cookie needs no storage read. */
        ct_err ignored;
        if (st == CT_OK && !sv.token && kbs_sessions_attest(s->sessions, &sv, token, NULL, &ignored) != CT_OK)
          CT_LOG_WARN_("kbs", "caching a session attested elsewhere: %s", ignored.msg);
        free(token);
        if (st != CT_OK) {
          kbs_reply_error(r, "TokenVerifierError", "Token Verifier error: the session's attestation token: %s", err.msg);
          return;
        }
      }
    }
  }
  if (!claims) {
    tee[0] = 0;
    const char *auth = kbs_http_header(req, "Authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7)) {
      kbs_reply_error(r, "TokenNotFound", "Attestation Token not found: no attested session cookie and no "
                 "\"Authorization: Bearer\" header");
      return;
    }
    st = kbs_token_verify(s->tokens, auth + 7, &claims, &err);
    if (st != CT_OK) {
      kbs_reply_error(r, "TokenVerifierError", "Token Verifier error: %s", err.msg);
      return;
    }
  }
  char key[3 * KBS_MAX_ID_PART + 3], path[3 * KBS_MAX_ID_PART + 24];
  /* three validated parts of at most KBS_MAX_ID_PART each: "a/b/c" always fits */
  size_t n0 = strlen(parts[0]), n1 = strlen(parts[1]), n2 = strlen(parts[2]);
  memcpy(key, parts[0], n0);
  key[n0] = '/';
  memcpy(key + n0 + 1, parts[1], n1);
  key[n0 + 1 + n1] = '/';
  memcpy(key + n0 + n1 + 2, parts[2], n2 + 1);
  kbs__resource_path(path, sizeof path, key);
  const char *tee_name = tee[0] ? tee : NULL;
  bool allowed = false;
  if (kbs__policy_allows(s, claims, parts, req->query, &allowed, &err) != CT_OK) {
    kbs_audit_note(s, "resource-refusal", claims, tee_name, path, "error", err.msg);
    json_decref(claims);
    kbs_reply_error(r, "PolicyEngineError", "Policy Engine error: %s", err.msg);
    return;
  }
  if (!allowed) {
    char why[512];
    kbs__appraisal_summary(claims, why, sizeof why);
    kbs_audit_note(s, "resource-refusal", claims, tee_name, path, "deny", why);
    json_decref(claims);
    kbs_reply_error(r, "PolicyDeny", "Access denied by policy: resource policy rule data.policy.allow is not true for "
               "%s/%s/%s with this token's claims (%s)", parts[0], parts[1], parts[2], why);
    return;
  }
  if (s->vault) {
    kbs__vault_fetch(s, req, r, claims, tee_name, key, parts);
    return;
  }
  uint8_t *secret = NULL;
  size_t len = 0;
  st = kvs_get(s->resources, KBS_RESOURCE_NS, key, &secret, &len, &err);
  if (st != CT_OK) {
    kbs__fetch_failed(s, r, claims, tee_name, key, st, err.msg);
    return;
  }
  kbs__release(s, r, claims, tee_name, key, secret, len);
}
