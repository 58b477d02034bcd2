#include "kbs_server.h"

#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "as_service.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_mem.h"
#include "ct_policies.h"
#include <event2/http.h>
#include "jose.h"
#include "kbs_auth.h"
#include "kbs_http.h"
#include "kbs_metrics.h"
#include "kbs_session.h"
#include "kvs.h"
#include "rego.h"
#include "rvps.h"

#define KBS_ERR_PREFIX "https://github.com/confidential-containers/kbs/errors/"
#define KBS_RESOURCE_NS "repository"
#define KBS_KBS_NS "kbs"
#define KBS_MAX_ATTESTED_SESSIONS 2048
#define KBS_MAX_ID_PART 128
#define KBS_JSON_DEPTH 32

struct kbs_server {
  const kbs_config *cfg;
  kvs *store;
  kvs *resources;          /* the legacy plugin dir_path, or the main store */
  kvs *rv_store;           /* rvps_config storage, or the main store */
  rvps *rvps;
  as_service *as;
  kbs_sessions *sessions;
  kbs_token_verifier *tokens;
  kbs_admin *admin;
  pthread_rwlock_t policy_lock;
  rego_policy *resource_policy;
  uint8_t resource_policy_digest[32]; /* of the text in force, to notice changes in shared storage */
  kbs_http_server *http;
};

/* --- responses ---------------------------------------------------------------------------------- */

/* Trustee's ErrorInformation; 404 only for InvalidRequestPath and PluginNotFound, else 401. The
 * detail adds the reason upstream keeps in its log, never secret material. */
static void kbs__error(kbs_http_response *r, const char *variant, const char *fmt, ...) CT_PRINTF(3, 4);
static void kbs__error(kbs_http_response *r, const char *variant, const char *fmt, ...) {
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

static void kbs__json(kbs_http_response *r, json_t *body) {
  /* Any JSON value: a reference value registered with --as-single-value is a bare string. */
  char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(body);
  ct_err e;
  if (!text || ct_buf_append_str(&r->body, text, &e) != CT_OK) {
    free(text);
    kbs__error(r, "SerdeError", "cannot serialise the response");
    return;
  }
  free(text);
  r->status = 200;
  r->content_type = "application/json";
}

static ct_status kbs__parse_body(const kbs_http_request *req, json_t **out, ct_err *err) {
  CT_ENSURE(req->body_len > 0, err, CT_EINVAL, "request body is empty; a JSON object is required");
  CT_GUARD(ct_json_parse((const char *)req->body, req->body_len, KBS_JSON_DEPTH, out, err));
  if (!json_is_object(*out)) {
    json_decref(*out);
    *out = NULL;
    return ct_fail(err, CT_EINVAL, "request body must be a JSON object");
  }
  return CT_OK;
}

/* --- identifiers -------------------------------------------------------------------------------- */

/* Trustee: each part matches [A-Za-z0-9_-]+[A-Za-z0-9_.-]* (no leading dot), bounded here. */
static ct_status kbs__check_id_part(const char *part, const char *what, ct_err *err) {
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
static ct_status kbs__resource_id(const char *rest, char parts[3][KBS_MAX_ID_PART + 1], ct_err *err) {
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

/* --- resource policy ----------------------------------------------------------------------------- */

static ct_status kbs__compile_resource_policy(const char *text, rego_policy **out, ct_err *err) {
  rego_module mod = {"resource-policy.rego", text};
  if (rego_compile(&mod, 1, NULL, out, err) != CT_OK) return ct_err_prefix(err, "resource policy does not compile: ");
  return CT_OK;
}

static ct_status kbs__set_resource_policy(kbs_server *s, const char *text, size_t len, bool persist, ct_err *err) {
  CT_ENSURE(len <= (1u << 20), err, CT_ELIMIT, "resource policy larger than 1 MiB");
  CT_ENSURE(!memchr(text, 0, len), err, CT_EINVAL, "resource policy contains a NUL byte");
  char *copy = NULL;
  CT_GUARD(ct_strndup(text, len, &copy, err));
  rego_policy *compiled = NULL;
  ct_status st = kbs__compile_resource_policy(copy, &compiled, err);
  if (st == CT_OK && persist) st = kvs_put(s->store, KBS_KBS_NS, "resource-policy", copy, len, err);
  free(copy);
  CT_GUARD(st);
  pthread_rwlock_wrlock(&s->policy_lock);
  rego_policy *old = s->resource_policy;
  s->resource_policy = compiled;
  ct_sha256(text, len, s->resource_policy_digest);
  pthread_rwlock_unlock(&s->policy_lock);
  rego_policy_free(old);
  return CT_OK;
}

/* Evaluates data.policy.allow: input = token claims, data = {plugin, resource-path, query}. */
static ct_status kbs__policy_allows(kbs_server *s, const json_t *claims, char parts[3][KBS_MAX_ID_PART + 1],
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

/* --- RCAR ---------------------------------------------------------------------------------------- */

static const char *const kbs__tees[] = {"az-snp-vtpm", "az-tdx-vtpm", "nvidia", "sgx", "snp", "tdx", "cca", "csv",
                                        "se", "hygondcu", "tpm", "sample", "sampledevice", NULL};

/* Trustee requires =0.4.0; older clients whose messages have the 0.4.0 shape are accepted too.
 * Strict semver digits: no sign, no spaces, no leading zeros. */
static bool kbs__semver_part(const char **p, unsigned *out) {
  const char *s = *p;
  if (*s < '0' || *s > '9' || (*s == '0' && s[1] >= '0' && s[1] <= '9')) return false;
  unsigned v = 0;
  while (*s >= '0' && *s <= '9' && v < 100000) v = v * 10 + (unsigned)(*s++ - '0');
  *out = v;
  *p = s;
  return true;
}

static ct_status kbs__check_version(const char *v, ct_err *err) {
  const char *p = v;
  unsigned major = 0, minor = 0, patch = 0;
  bool ok = kbs__semver_part(&p, &major) && *p++ == '.' && kbs__semver_part(&p, &minor) && *p++ == '.' &&
            kbs__semver_part(&p, &patch) && *p == 0 && major == 0 && minor >= 1 && minor <= 4;
  CT_ENSURE(ok, err, CT_EINVAL, "KBS Client Protocol Version Mismatch: expect =0.4.0 (0.1.x-0.4.x accepted) while the "
            "request is %.32s", v);
  return CT_OK;
}

static const char *kbs__cookie_session(const kbs_http_request *req, char out[KBS_COOKIE_MAX]) {
  const char *c = kbs_http_header(req, "Cookie");
  while (c) {
    while (*c == ' ' || *c == ';') c++;
    if (!strncmp(c, "kbs-session-id=", 15)) {
      c += 15;
      size_t n = strcspn(c, "; ");
      if (n == 0 || n >= KBS_COOKIE_MAX) return NULL;
      memcpy(out, c, n);
      out[n] = 0;
      return out;
    }
    c = strchr(c, ';');
  }
  return NULL;
}

static void kbs__set_cookie(kbs_http_response *r, const char *id, time_t expires) {
  struct tm tm;
  gmtime_r(&expires, &tm);
  char when[64];
  strftime(when, sizeof when, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  snprintf(r->set_cookie, sizeof r->set_cookie, "kbs-session-id=%s; Expires=%s", id, when);
}

static void kbs__auth(kbs_server *s, const kbs_http_request *req, kbs_http_response *r) {
  kbs_metrics_inc(KBS_M_AUTH_REQUESTS);
  ct_err err;
  json_t *body = NULL;
  if (kbs__parse_body(req, &body, &err) != CT_OK) {
    kbs_metrics_inc(KBS_M_AUTH_ERRORS);
    kbs__error(r, "AttestationError", "RCAR handshake Auth failed: %s", err.msg);
    return;
  }
  const char *version = NULL, *tee = NULL;
  ct_status st = ct_json_get_string(body, "version", "auth request", &version, &err);
  if (st == CT_OK) st = kbs__check_version(version, &err);
  if (st == CT_OK) st = ct_json_get_string(body, "tee", "auth request", &tee, &err);
  if (st == CT_OK) {
    bool known = false;
    for (size_t i = 0; kbs__tees[i]; i++) known |= !strcmp(tee, kbs__tees[i]);
    if (!known) st = ct_fail(&err, CT_EINVAL, "unknown tee \"%.32s\"", tee);
  }
  if (st == CT_OK && !json_object_get(body, "extra-params"))
    st = ct_fail(&err, CT_EINVAL, "auth request: member \"extra-params\" is missing");
  char id[KBS_COOKIE_MAX], nonce[KBS_NONCE_B64_LEN + 1];
  time_t expires;
  if (st == CT_OK) st = kbs_sessions_create(s->sessions, tee, s->cfg->as_timeout_min * 60u, id, nonce, &expires, &err);
  json_decref(body);
  if (st != CT_OK) {
    kbs_metrics_inc(KBS_M_AUTH_ERRORS);
    kbs__error(r, "AttestationError", "RCAR handshake Auth failed: %s", err.msg);
    return;
  }
  kbs_metrics_inc(KBS_M_AUTH_SUCCESSES);
  kbs__set_cookie(r, id, expires);
  kbs__json(r, json_pack("{s:s, s:s}", "nonce", nonce, "extra-params", ""));
}

/* Re-serialises the client's TEE key with exactly the members Trustee hashes: unknown JWK
 * members (kid, use, ...) never reach report_data. */
static ct_status kbs__canonical_teekey(const json_t *jwk, json_t **out, ct_err *err) {
  CT_ENSURE(json_is_object(jwk), err, CT_EINVAL, "runtime-data: tee-pubkey must be a JWK object");
  const char *kty = json_string_value(json_object_get(jwk, "kty"));
  const char *alg = json_string_value(json_object_get(jwk, "alg"));
  CT_ENSURE(kty && alg, err, CT_EINVAL, "runtime-data: tee-pubkey needs kty and alg");
  json_t *c;
  if (!strcmp(kty, "EC")) {
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    const char *x = json_string_value(json_object_get(jwk, "x"));
    const char *y = json_string_value(json_object_get(jwk, "y"));
    CT_ENSURE(crv && x && y, err, CT_EINVAL, "runtime-data: EC tee-pubkey needs crv, x and y");
    CT_ENSURE(!strcmp(alg, "ECDH-ES+A256KW"), err, CT_EINVAL, "runtime-data: EC tee-pubkey alg must be ECDH-ES+A256KW");
    CT_ENSURE(!strcmp(crv, "P-256") || !strcmp(crv, "P-521"), err, CT_EINVAL,
              "runtime-data: tee-pubkey curve %.16s is not P-256 or P-521", crv);
    c = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", kty, "crv", crv, "alg", alg, "x", x, "y", y);
  } else if (!strcmp(kty, "RSA")) {
    const char *n = json_string_value(json_object_get(jwk, "n"));
    const char *e = json_string_value(json_object_get(jwk, "e"));
    CT_ENSURE(n && e, err, CT_EINVAL, "runtime-data: RSA tee-pubkey needs n and e");
    CT_ENSURE(!strcmp(alg, "RSA-OAEP-256") || !strcmp(alg, "RSA1_5"), err, CT_EINVAL,
              "runtime-data: RSA tee-pubkey alg must be RSA-OAEP-256 or RSA1_5");
    c = json_pack("{s:s, s:s, s:s, s:s}", "kty", kty, "alg", alg, "n", n, "e", e);
  } else {
    return ct_fail(err, CT_EINVAL, "runtime-data: tee-pubkey kty %.16s is not EC or RSA", kty);
  }
  CT_ENSURE(c, err, CT_ENOMEM, "out of memory");
  /* The key must be usable: a point off the curve would make every later JWE fail. */
  jose_jwk *k = NULL;
  if (jose_jwk_from_json(c, &k, err) != CT_OK) {
    json_decref(c);
    return ct_err_prefix(err, "runtime-data: tee-pubkey: ");
  }
  jose_jwk_free(k);
  *out = c;
  return CT_OK;
}

static ct_status kbs__do_attest(kbs_server *s, const kbs_session_view *sv, const json_t *body, char **token,
                                ct_err *err) {
  json_t *runtime, *evidence;
  CT_GUARD(ct_json_get_object(body, "runtime-data", "attestation", &runtime, err));
  CT_GUARD(ct_json_get_object(body, "tee-evidence", "attestation", &evidence, err));
  const char *nonce;
  CT_GUARD(ct_json_get_string(runtime, "nonce", "runtime-data", &nonce, err));
  CT_ENSURE(ct_streq_secret(nonce, sv->nonce), err, CT_ECRYPTO,
            "runtime-data nonce does not match the nonce issued for this session");
  json_t *primary = json_object_get(evidence, "primary_evidence");
  CT_ENSURE(primary && !json_is_null(primary), err, CT_EINVAL, "tee-evidence: primary_evidence is missing");
  json_t *additional = json_object_get(evidence, "additional_evidence");
  const char *additional_str = "";
  if (additional && !json_is_null(additional)) {
    CT_ENSURE(json_is_string(additional), err, CT_EINVAL, "tee-evidence: additional_evidence must be a JSON string");
    additional_str = json_string_value(additional);
  }
  const char *init_body = NULL;
  size_t init_len = 0;
  json_t *init = json_object_get(body, "init-data");
  if (init && !json_is_null(init)) {
    const char *format;
    CT_GUARD(ct_json_get_string(init, "format", "init-data", &format, err));
    CT_ENSURE(!strcmp(format, "toml"), err, CT_EUNSUPPORTED, "init-data format \"%.16s\" is not supported (only toml)",
              format);
    CT_GUARD(ct_json_get_string(init, "body", "init-data", &init_body, err));
    init_len = strlen(init_body);
  }
  json_t *teekey = NULL;
  CT_GUARD(kbs__canonical_teekey(json_object_get(runtime, "tee-pubkey"), &teekey, err));
  json_t *rt = json_pack("{s:o, s:s, s:s}", "tee-pubkey", teekey, "nonce", sv->nonce, "additional-evidence",
                         additional_str);
  CT_ENSURE(rt, err, CT_ENOMEM, "out of memory");
  as_request areq = {.tee = sv->tee, .evidence = primary, .runtime_data = rt, .init_data_toml = init_body,
                     .init_data_len = init_len, .policy_id = "default"};
  ct_status st = as_evaluate(s->as, &areq, token, NULL, err);
  json_decref(rt);
  return st;
}

static void kbs__attest(kbs_server *s, const kbs_http_request *req, kbs_http_response *r) {
  kbs_metrics_inc(KBS_M_ATTESTATION_REQUESTS);
  ct_err err;
  char idbuf[KBS_COOKIE_MAX];
  const char *id = kbs__cookie_session(req, idbuf);
  if (!id) {
    kbs_metrics_inc(KBS_M_ATTESTATION_ERRORS);
    kbs__error(r, "AttestationError", "RCAR handshake Attest failed: no kbs-session-id cookie; call /auth first");
    return;
  }
  kbs_session_view sv;
  ct_status st = kbs_sessions_get(s->sessions, id, &sv, &err);
  if (st != CT_OK) {
    kbs_metrics_inc(KBS_M_ATTESTATION_ERRORS);
    kbs__error(r, "AttestationError", "RCAR handshake Attest failed: %s", err.msg);
    return;
  }
  kbs__set_cookie(r, id, sv.expires);
  if (sv.attested) {
    /* Idempotent, as Trustee: a repeated /attest returns the session's token. */
    kbs__json(r, json_pack("{s:s}", "token", sv.token));
    free(sv.token);
    return;
  }
  json_t *body = NULL;
  char *token = NULL;
  st = kbs__parse_body(req, &body, &err);
  if (st == CT_OK) st = kbs__do_attest(s, &sv, body, &token, &err);
  json_decref(body);
  if (st == CT_OK) st = kbs_sessions_attest(s->sessions, id, token, &err);
  if (st != CT_OK) {
    kbs_metrics_attestation(sv.tee, 0);
    kbs__error(r, "AttestationError", "RCAR handshake Attest failed: %s", err.msg);
    free(token);
    return;
  }
  kbs_metrics_attestation(sv.tee, 1);
  kbs__json(r, json_pack("{s:s}", "token", token));
  free(token);
}

/* --- resources ----------------------------------------------------------------------------------- */

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

static void kbs__resource_get(kbs_server *s, const kbs_http_request *req, const char *rest, kbs_http_response *r) {
  ct_err err;
  char parts[3][KBS_MAX_ID_PART + 1];
  if (kbs__resource_id(rest, parts, &err) != CT_OK) {
    kbs__error(r, "InvalidRequestPath", "%s", err.msg);
    return;
  }
  /* A token this KBS issued into an attested session is held server-side and never was out of
   * our hands, so its claims are used as stored (their expiry still applies); any other token
   * is verified in full. Trustee re-verifies the session token: same outcome, one ES256
   * verification less per request. */
  json_t *claims = NULL;
  ct_status st = CT_OK;
  char idbuf[KBS_COOKIE_MAX];
  const char *id = kbs__cookie_session(req, idbuf);
  if (id) {
    kbs_session_view sv;
    if (kbs_sessions_get(s->sessions, id, &sv, &err) == CT_OK && sv.token) {
      json_t *hdr = NULL;
      uint8_t *payload = NULL;
      size_t plen = 0;
      st = jose_jws_decode_unverified(sv.token, &hdr, &payload, &plen, &err);
      json_decref(hdr);
      if (st == CT_OK) st = ct_json_parse((const char *)payload, plen, 64, &claims, &err);
      free(payload);
      free(sv.token);
      if (st == CT_OK && jose_jwt_check_times(claims, (int64_t)time(NULL), 60, true, &err) != CT_OK) st = CT_EEXPIRED;
      if (st != CT_OK) {
        json_decref(claims);
        kbs__error(r, "TokenVerifierError", "Token Verifier error: the session's attestation token: %s", err.msg);
        return;
      }
    }
  }
  if (!claims) {
    const char *auth = kbs_http_header(req, "Authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7)) {
      kbs__error(r, "TokenNotFound", "Attestation Token not found: no attested session cookie and no "
                 "\"Authorization: Bearer\" header");
      return;
    }
    st = kbs_token_verify(s->tokens, auth + 7, &claims, &err);
    if (st != CT_OK) {
      kbs__error(r, "TokenVerifierError", "Token Verifier error: %s", err.msg);
      return;
    }
  }
  bool allowed = false;
  if (kbs__policy_allows(s, claims, parts, req->query, &allowed, &err) != CT_OK) {
    json_decref(claims);
    kbs__error(r, "PolicyEngineError", "Policy Engine error: %s", err.msg);
    return;
  }
  if (!allowed) {
    char why[512];
    kbs__appraisal_summary(claims, why, sizeof why);
    json_decref(claims);
    kbs__error(r, "PolicyDeny", "Access denied by policy: resource policy rule data.policy.allow is not true for "
               "%s/%s/%s with this token's claims (%s)", parts[0], parts[1], parts[2], why);
    return;
  }
  char key[3 * KBS_MAX_ID_PART + 3];
  snprintf(key, sizeof key, "%s/%s/%s", parts[0], parts[1], parts[2]);
  uint8_t *secret = NULL;
  size_t len = 0;
  st = kvs_get(s->resources, KBS_RESOURCE_NS, key, &secret, &len, &err);
  if (st != CT_OK) {
    json_decref(claims);
    kbs__error(r, "PluginInternalError", "Plugin internal error: resource %s: %s", key,
               st == CT_ENOTFOUND ? "not found" : err.msg);
    return;
  }
  const json_t *teekey = kbs__find_teekey(s, claims);
  json_t *jwe = NULL;
  if (!teekey) st = ct_fail(&err, CT_EINVAL, "the token carries no TEE public key to encrypt the resource to");
  else st = jose_jwe_encrypt(teekey, secret, len, &jwe, &err);
  ct_wipe(secret, len);
  free(secret);
  json_decref(claims);
  if (st != CT_OK) {
    kbs__error(r, "JweError", "JWE error: %s", err.msg);
    return;
  }
  kbs_metrics_resource(key, 0);
  kbs__json(r, jwe);
}

/* --- admin --------------------------------------------------------------------------------------- */

static bool kbs__admin_ok(kbs_server *s, const kbs_http_request *req, kbs_http_response *r, bool plugin_path) {
  ct_err err;
  if (kbs_admin_check(s->admin, kbs_http_header(req, "Authorization"), req->uri, &err) == CT_OK) return true;
  /* Trustee's quirk: failures on plugin paths surface as AdminAuthInitialization. */
  kbs__error(r, plugin_path ? "AdminAuthInitialization" : "AdminAuthAccess", "Admin auth error: %s", err.msg);
  return false;
}

static void kbs__resource_put(kbs_server *s, const kbs_http_request *req, const char *rest, bool del,
                              kbs_http_response *r) {
  ct_err err;
  char parts[3][KBS_MAX_ID_PART + 1];
  if (kbs__resource_id(rest, parts, &err) != CT_OK) {
    kbs__error(r, "InvalidRequestPath", "%s", err.msg);
    return;
  }
  if (!kbs__admin_ok(s, req, r, true)) return;
  char key[3 * KBS_MAX_ID_PART + 3];
  snprintf(key, sizeof key, "%s/%s/%s", parts[0], parts[1], parts[2]);
  ct_status st = del ? kvs_delete(s->resources, KBS_RESOURCE_NS, key, &err)
                     : kvs_put(s->resources, KBS_RESOURCE_NS, key, req->body, req->body_len, &err);
  if (st != CT_OK) {
    kbs__error(r, "PluginInternalError", "Plugin internal error: %s", err.msg);
    return;
  }
  kbs_metrics_resource(key, 1);
  CT_LOG_INFO_("kbs", "resource %s %s (%zu bytes)", key, del ? "deleted" : "stored", del ? 0 : req->body_len);
  r->status = 200;
  r->content_type = "text/xml"; /* Trustee's quirk */
}

/* Decodes {"policy": "<base64url Rego>"} (padding tolerated, as clients differ). */
static ct_status kbs__policy_text(const json_t *body, char **text, size_t *len, ct_err *err) {
  const char *b64;
  CT_GUARD(ct_json_get_string(body, "policy", "policy request", &b64, err));
  uint8_t *raw = NULL;
  if (ct_b64_decode(CT_B64_ANY, b64, strlen(b64), &raw, len, err) != CT_OK)
    return ct_err_prefix(err, "policy request: policy must be base64url: ");
  *text = (char *)raw;
  return CT_OK;
}

static void kbs__resource_policy(kbs_server *s, const kbs_http_request *req, kbs_http_response *r) {
  if (!kbs__admin_ok(s, req, r, false)) return;
  ct_err err;
  if (req->method == KBS_GET) {
    /* Trustee returns the list of policy ids, not the text. */
    kbs__json(r, json_pack("[s]", "resource-policy"));
    return;
  }
  json_t *body = NULL;
  if (kbs__parse_body(req, &body, &err) != CT_OK) {
    kbs__error(r, "SerdeError", "%s", err.msg);
    return;
  }
  char *text = NULL;
  size_t len = 0;
  ct_status st = kbs__policy_text(body, &text, &len, &err);
  json_t *extra;
  const char *k;
  json_object_foreach(body, k, extra) {
    if (st == CT_OK && strcmp(k, "policy")) st = ct_fail(&err, CT_EINVAL, "unknown member \"%.32s\"", k);
  }
  json_decref(body);
  if (st != CT_OK) {
    free(text);
    kbs__error(r, "SerdeError", "%s", err.msg);
    return;
  }
  st = kbs__set_resource_policy(s, text, len, true, &err);
  free(text);
  if (st != CT_OK) {
    kbs__error(r, "ParsePolicyError", "%s", err.msg);
    return;
  }
  r->status = 200;
}

static void kbs__attestation_policy(kbs_server *s, const kbs_http_request *req, kbs_http_response *r) {
  if (!kbs__admin_ok(s, req, r, false)) return;
  ct_err err;
  json_t *body = NULL;
  if (kbs__parse_body(req, &body, &err) != CT_OK) {
    kbs__error(r, "SerdeError", "%s", err.msg);
    return;
  }
  const char *id = NULL;
  char *text = NULL;
  size_t len = 0;
  ct_status st = ct_json_get_string(body, "policy_id", "attestation policy request", &id, &err);
  if (st == CT_OK) st = kbs__policy_text(body, &text, &len, &err);
  if (st != CT_OK) {
    json_decref(body);
    kbs__error(r, "SerdeError", "%s", err.msg);
    return;
  }
  st = as_set_policy(s->as, id, text, len, &err);
  json_decref(body);
  free(text);
  if (st != CT_OK) {
    kbs__error(r, "AttestationError", "Set attestation policy failed: %s", err.msg);
    return;
  }
  r->status = 200;
}

static void kbs__reference_value(kbs_server *s, const kbs_http_request *req, const char *id, kbs_http_response *r) {
  if (!kbs__admin_ok(s, req, r, false)) return;
  ct_err err;
  if (req->method == KBS_GET) {
    json_t *v = NULL;
    if (rvps_query(s->rvps, id, &v, &err) != CT_OK) {
      kbs__error(r, "RvpsError", "RVPS error: %s", err.msg);
      return;
    }
    if (!v) {  /* as upstream: an unknown id is an RvpsError, not a null value */
      kbs__error(r, "RvpsError", "RVPS error: no reference value found for the given id: %s", id);
      return;
    }
    kbs__json(r, v);
    return;
  }
  json_t *body = NULL;
  if (kbs__parse_body(req, &body, &err) != CT_OK) {
    kbs__error(r, "SerdeError", "%s", err.msg);
    return;
  }
  ct_status st = rvps_register(s->rvps, body, &err);
  json_decref(body);
  if (st != CT_OK) {
    kbs__error(r, "RvpsError", "RVPS error: %s", err.msg);
    return;
  }
  r->status = 200;
  r->content_type = "application/json";
}

/* --- routing ------------------------------------------------------------------------------------- */

static void kbs__route(kbs_server *s, const kbs_http_request *req, kbs_http_response *r) {
  const char *path = req->path;
  if (!strcmp(path, "/healthz") && req->method == KBS_GET) {
    r->status = 200;
    return;
  }
  if (!strcmp(path, "/metrics") && req->method == KBS_GET) {
    ct_err err;
    if (kbs_metrics_render(&r->body, &err) != CT_OK) {
      kbs__error(r, "PrometheusError", "%s", err.msg);
      return;
    }
    r->status = 200;
    r->content_type = "text/plain; version=0.0.4";
    return;
  }
  if (strlen(path) != req->path_len) {
    kbs__error(r, "InvalidRequestPath", "request path contains a NUL character");
    return;
  }
  if (strncmp(path, "/kbs/v0/", 8)) {
    kbs__error(r, "InvalidRequestPath", "Invalid request path %.200s", path);
    return;
  }
  const char *rest = path + 8;
  bool as = s->as != NULL;
  if (!strcmp(rest, "auth") && req->method == KBS_POST && as) { kbs__auth(s, req, r); return; }
  if (!strcmp(rest, "attest") && req->method == KBS_POST && as) { kbs__attest(s, req, r); return; }
  if (!strcmp(rest, "resource-policy") && (req->method == KBS_POST || req->method == KBS_GET))
    { kbs__resource_policy(s, req, r); return; }
  if (!strcmp(rest, "attestation-policy") && req->method == KBS_POST && as) { kbs__attestation_policy(s, req, r); return; }
  if (!strcmp(rest, "reference-value") && req->method == KBS_POST && as) { kbs__reference_value(s, req, NULL, r); return; }
  if (!strncmp(rest, "reference-value/", 16) && req->method == KBS_GET && as) {
    ct_err err;
    if (kvs_check_key(rest + 16, &err) != CT_OK) { kbs__error(r, "InvalidRequestPath", "reference value id: %s", err.msg); return; }
    { kbs__reference_value(s, req, rest + 16, r); return; }
  }
  if (!strncmp(rest, "resource/", 9) && s->cfg->resource_plugin) {
    if (req->method == KBS_GET) { kbs__resource_get(s, req, rest + 9, r); return; }
    if (req->method == KBS_POST || req->method == KBS_PUT) { kbs__resource_put(s, req, rest + 9, false, r); return; }
    if (req->method == KBS_DELETE) { kbs__resource_put(s, req, rest + 9, true, r); return; }
  }
  size_t n = strcspn(rest, "/");
  kbs__error(r, "PluginNotFound", "Plugin %.*s not found (or method not allowed on it)", (int)(n < 64 ? n : 64), rest);
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

/* --- lifecycle ------------------------------------------------------------------------------------ */

static ct_status kbs__load_resource_policy(kbs_server *s, ct_err *err) {
  uint8_t *text = NULL;
  size_t len = 0;
  ct_status st = kvs_get(s->store, KBS_KBS_NS, "resource-policy", &text, &len, err);
  if (st == CT_ENOTFOUND && s->cfg->resource_policy_path) {
    st = ct_file_read(s->cfg->resource_policy_path, 1u << 20, &text, &len, err);
    if (st != CT_OK && st != CT_ENOTFOUND) return ct_err_prefix(err, "policy_engine.policy_path: ");
  }
  if (st == CT_ENOTFOUND)
    return kbs__set_resource_policy(s, ct_policy_resource_default, strlen(ct_policy_resource_default), false, err);
  CT_GUARD(st);
  st = kbs__set_resource_policy(s, (const char *)text, len, false, err);
  free(text);
  return st;
}

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
                      .tpm_trusted_ak_keys_dir = cfg->tpm_trusted_ak_keys_dir},
        .token_duration_min = cfg->token_duration_min,
        .issuer_name = cfg->issuer_name,
        .developer_name = cfg->developer_name,
        .build_name = cfg->build_name,
        .profile_name = cfg->profile_name,
        .verbose_token = cfg->verbose_token,
        .signer_key_path = cfg->signer_key_path,
        .signer_cert_path = cfg->signer_cert_path,
    };
    CT_GUARD_GOTO(st, as_service_new(&ac, &s->as, err), fail);
  }
  CT_GUARD_GOTO(st, kbs__load_resource_policy(s, err), fail);
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

/* Replicas share storage but compile policies once: a policy stored through another replica is
 * picked up here. */
static void kbs__reload_resource_policy(kbs_server *s) {
  uint8_t *text = NULL;
  size_t len = 0;
  ct_err err;
  if (kvs_get(s->store, KBS_KBS_NS, "resource-policy", &text, &len, &err) != CT_OK) return;
  uint8_t digest[32];
  ct_sha256(text, len, digest);
  pthread_rwlock_rdlock(&s->policy_lock);
  bool same = !memcmp(digest, s->resource_policy_digest, sizeof digest);
  pthread_rwlock_unlock(&s->policy_lock);
  if (!same) {
    if (kbs__set_resource_policy(s, (const char *)text, len, false, &err) == CT_OK)
      CT_LOG_INFO_("kbs", "resource policy reloaded from storage");
    else
      CT_LOG_WARN_("kbs", "resource policy in storage does not compile, keeping the current one: %s", err.msg);
  }
  free(text);
}

void kbs_server_tick(kbs_server *s) {
  kbs_sessions_sweep(s->sessions);
  kbs__reload_resource_policy(s);
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
