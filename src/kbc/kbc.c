/*
 * kbc.c - the KBS client (see kbc.h): RCAR over ct_http, token reuse, JWE decryption.
 */
#include "kbc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/pem.h>

#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_http.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_mem.h"
#include "jose.h"

#define KBC__URL_MAX 2048
#define KBC__TOKEN_SKEW_S 10
#define KBC__BACKOFF_CAP_MS 5000u
#define KBC__USER_AGENT "attestation-agent-kbs-client/coco-trust-0.1"

struct kbc_client {
  char url[KBC__URL_MAX];
  char *cert_pem;
  char tee[32];
  char key_alg[32];
  char key_crv[16];
  kbc_evidence_fn evidence;
  void *evidence_ud;
  char *init_data;
  int passport;
  unsigned attempts, backoff_ms;
  long timeout_s;
  ct_http_client *http; /* keeps the connection and the session cookie */
  char *token;
  int64_t token_exp; /* 0: no exp claim */
  jose_jwk *key;
  jose_jwk *fixed_key; /* rcar_key_pem, when given */
  kbc_stats stats;
  int token_rejected;  /* the last kbc_get failed on a 401 that re-attesting can fix */
};

/* --- helpers ---------------------------------------------------------------------------- */

static int kbc__seg_ok(const char *s, size_t n) {
  if (n == 0 || s[0] == '.') return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-' || c == '.'))
      return 0;
  }
  return 1;
}

static int kbc__query_ok(const char *q) {
  for (; *q; q++) {
    char c = *q;
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          strchr("_.-~=&%+", c)))
      return 0;
  }
  return 1;
}

/* Validates "seg/seg/...[?query]"; returns the number of segments or -1. */
static int kbc__path_segments(const char *path) {
  const char *q = strchr(path, '?');
  size_t plen = q ? (size_t)(q - path) : strlen(path);
  if (q && !kbc__query_ok(q + 1)) return -1;
  int n = 0;
  size_t start = 0;
  for (size_t i = 0; i <= plen; i++) {
    if (i == plen || path[i] == '/') {
      if (!kbc__seg_ok(path + start, i - start)) return -1;
      n++;
      start = i + 1;
    }
  }
  return n;
}

CT_RESULT kbc_parse_uri(const char *uri, char *plugin, size_t plugin_cap, char *path,
                        size_t path_cap, ct_err *err) {
  CT_ENSURE(uri, err, CT_EINVAL, "resource URI missing");
  size_t ulen = strnlen(uri, KBC_URI_MAX + 1);
  CT_ENSURE(ulen <= KBC_URI_MAX, err, CT_ELIMIT, "resource URI longer than %d bytes", KBC_URI_MAX);
  const char *sep = strstr(uri, "://");
  CT_ENSURE(sep && strncmp(uri, "kbs", 3) == 0, err, CT_EINVAL,
            "resource URI must look like kbs:///repo/type/tag");
  const char *pl = "resource";
  size_t pl_len = strlen(pl);
  if (sep != uri + 3) {
    CT_ENSURE(uri[3] == '+' && sep > uri + 4, err, CT_EINVAL,
              "resource URI scheme must be kbs or kbs+<plugin>");
    pl = uri + 4;
    pl_len = (size_t)(sep - pl);
    CT_ENSURE(kbc__seg_ok(pl, pl_len), err, CT_EINVAL, "resource URI has a malformed plugin name");
  }
  const char *p = strchr(sep + 3, '/'); /* skip [host[:port]] */
  CT_ENSURE(p, err, CT_EINVAL, "resource URI has no path");
  p++;
  int n = kbc__path_segments(p);
  CT_ENSURE(n > 0, err, CT_EINVAL,
            "resource URI path \"%s\": segments must match [A-Za-z0-9_-][A-Za-z0-9_.-]*", p);
  CT_ENSURE(!(pl_len == 8 && strncmp(pl, "resource", 8) == 0) || n == 3, err, CT_EINVAL,
            "resource URI path must be repo/type/tag (got %d segments)", n);
  CT_ENSURE(pl_len < plugin_cap && strlen(p) < path_cap, err, CT_ELIMIT, "resource URI too long");
  memcpy(plugin, pl, pl_len);
  plugin[pl_len] = 0;
  strcpy(path, p);
  return CT_OK;
}

CT_RESULT kbc_report_data(const char *nonce, const json_t *tee_pubkey, uint8_t out[48],
                          ct_err *err) {
  json_t *o = json_pack("{s:s,s:s,s:O}", "additional-evidence", "", "nonce", nonce, "tee-pubkey",
                        tee_pubkey);
  CT_ENSURE(o, err, CT_ENOMEM, "report data: out of memory");
  char *canon = NULL;
  size_t len = 0;
  ct_status st = ct_jcs_string(o, &canon, &len, err);
  json_decref(o);
  CT_GUARD(st);
  ct_sha384(canon, len, out);
  free(canon);
  return CT_OK;
}

/* --- client ----------------------------------------------------------------------------- */

static CT_RESULT kbc__copy(char *dst, size_t cap, const char *src, const char *what, ct_err *err) {
  CT_ENSURE(strlen(src) < cap, err, CT_ELIMIT, "kbc: %s \"%s\" is too long", what, src);
  strcpy(dst, src);
  return CT_OK;
}

static CT_RESULT kbc__key_alg(kbc_client *c, const char *alg, ct_err *err) {
  if (!alg || !strcmp(alg, "ECDH-ES+A256KW") || !strcmp(alg, "ECDH-ES+A256KW-P256")) {
    strcpy(c->key_alg, "ECDH-ES+A256KW");
    strcpy(c->key_crv, "P-256");
  } else if (!strcmp(alg, "ECDH-ES+A256KW-P521")) {
    strcpy(c->key_alg, "ECDH-ES+A256KW");
    strcpy(c->key_crv, "P-521");
  } else if (!strcmp(alg, "RSA-OAEP-256")) {
    strcpy(c->key_alg, "RSA-OAEP-256");
    c->key_crv[0] = 0;
  } else {
    return ct_fail(err, CT_EUNSUPPORTED,
                   "kbc: TEE key algorithm \"%s\" (use ECDH-ES+A256KW, ECDH-ES+A256KW-P521 or "
                   "RSA-OAEP-256)", alg);
  }
  return CT_OK;
}

/* Loads the fixed RCAR key and gives it the key-agreement algorithm its type implies. */
static CT_RESULT kbc__load_fixed_key(kbc_client *c, const char *pem, ct_err *err) {
  jose_jwk *k = NULL;
  CT_GUARD(jose_jwk_from_pem(pem, strlen(pem), NULL, &k, err));
  ct_status st = CT_OK;
  int type = EVP_PKEY_get_base_id(jose_jwk_pkey(k));
  if (!jose_jwk_is_private(k))
    st = ct_fail(err, CT_EINVAL, "kbc: the TEE key file holds no private key");
  else if (type != EVP_PKEY_EC && type != EVP_PKEY_RSA)
    st = ct_fail(err, CT_EUNSUPPORTED, "kbc: the TEE key must be EC (P-256, P-521) or RSA");
  else
    st = jose_jwk_from_pkey(jose_jwk_pkey(k), type == EVP_PKEY_EC ? "ECDH-ES+A256KW" : "RSA-OAEP-256",
                            &c->fixed_key, err);
  jose_jwk_free(k);
  return st;
}

static int64_t kbc__token_exp(const char *token) {
  uint8_t *payload = NULL;
  size_t len = 0;
  ct_err e;
  if (jose_jws_decode_unverified(token, NULL, &payload, &len, &e)) return 0;
  json_t *claims = NULL;
  int64_t exp = 0;
  if (ct_json_parse((const char *)payload, len, 32, &claims, &e) == CT_OK) {
    json_t *x = json_object_get(claims, "exp");
    if (json_is_integer(x)) exp = json_integer_value(x);
    else if (json_is_real(x)) exp = (int64_t)json_real_value(x);
    json_decref(claims);
  }
  free(payload);
  return exp;
}

static CT_RESULT kbc__set_token(kbc_client *c, const char *token, ct_err *err) {
  char *t = NULL;
  CT_GUARD(ct_strdup(token, &t, err));
  if (c->token) {
    ct_wipe(c->token, strlen(c->token));
    free(c->token);
  }
  c->token = t;
  c->token_exp = kbc__token_exp(token);
  return CT_OK;
}

CT_RESULT kbc_client_new(const char *url, const char *cert_pem, const kbc_opts *opts,
                         kbc_client **out, ct_err *err) {
  CT_ENSURE(url && (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8)), err, CT_EINVAL,
            "kbc: KBS URL must start with http:// or https:// (got \"%s\")", url ? url : "");
  kbc_opts none = {0};
  if (!opts) opts = &none;
  kbc_client *c = calloc(1, sizeof *c);
  CT_ENSURE(c, err, CT_ENOMEM, "kbc: out of memory");
  ct_status st = CT_OK;
  CT_GUARD_GOTO(st, kbc__copy(c->url, sizeof c->url, url, "KBS URL", err), fail);
  size_t ul = strlen(c->url);
  while (ul > 0 && c->url[ul - 1] == '/') c->url[--ul] = 0;
  if (cert_pem) CT_GUARD_GOTO(st, ct_strdup(cert_pem, &c->cert_pem, err), fail);
  if (opts->tee) CT_GUARD_GOTO(st, kbc__copy(c->tee, sizeof c->tee, opts->tee, "TEE", err), fail);
  CT_GUARD_GOTO(st, kbc__key_alg(c, opts->tee_key_alg, err), fail);
  c->evidence = opts->evidence;
  c->evidence_ud = opts->evidence_ud;
  if (opts->init_data_toml) CT_GUARD_GOTO(st, ct_strdup(opts->init_data_toml, &c->init_data, err), fail);
  c->attempts = opts->attempts ? opts->attempts : 5;
  c->backoff_ms = opts->backoff_ms ? opts->backoff_ms : 1000;
  c->timeout_s = opts->timeout_s > 0 ? opts->timeout_s : 60;
  if (opts->token || opts->tee_key_pem) {
    CT_ENSURE_GOTO(st, opts->token && opts->tee_key_pem, fail, err, CT_EINVAL,
                   "kbc: passport mode needs both an attestation token and the TEE key");
    c->passport = 1;
    CT_GUARD_GOTO(st, jose_jwk_from_pem(opts->tee_key_pem, strlen(opts->tee_key_pem), NULL, &c->key,
                                        err), fail);
    CT_ENSURE_GOTO(st, jose_jwk_is_private(c->key), fail, err, CT_EINVAL,
                   "kbc: the TEE key file holds no private key");
    CT_GUARD_GOTO(st, kbc__set_token(c, opts->token, err), fail);
  } else {
    CT_ENSURE_GOTO(st, c->tee[0] && c->evidence, fail, err, CT_EINVAL,
                   "kbc: RCAR mode needs a TEE name and an evidence provider");
    if (opts->rcar_key_pem) CT_GUARD_GOTO(st, kbc__load_fixed_key(c, opts->rcar_key_pem, err), fail);
  }
  ct_http_opts ho = {.ca_pem = c->cert_pem,
                     .no_proxy = 1,
                     .timeout_ms = c->timeout_s * 1000,
                     .connect_timeout_ms = (c->timeout_s < 10 ? c->timeout_s : 10) * 1000,
                     .max_body = (size_t)KBC_RESOURCE_MAX * 2,
                     .attempts = c->attempts,
                     .retry_on = CT_HTTP_RETRY_TRANSPORT | CT_HTTP_RETRY_5XX,
                     .backoff_ms = c->backoff_ms,
                     .backoff_max_ms = KBC__BACKOFF_CAP_MS,
                     .cookies = 1,
                     .user_agent = KBC__USER_AGENT,
                     .log_tag = "kbc"};
  CT_GUARD_GOTO(st, ct_http_client_new(&ho, &c->http, err), fail);
  *out = c;
  return CT_OK;
fail:
  kbc_client_free(c);
  return st;
}

void kbc_invalidate(kbc_client *c) {
  if (!c || c->passport) return;
  if (c->token) {
    ct_wipe(c->token, strlen(c->token));
    free(c->token);
    c->token = NULL;
  }
  jose_jwk_free(c->key);
  c->key = NULL;
  c->token_exp = 0;
}

void kbc_client_free(kbc_client *c) {
  if (!c) return;
  c->passport = 0;
  kbc_invalidate(c);
  jose_jwk_free(c->fixed_key);
  ct_http_client_free(c->http);
  free(c->cert_pem);
  free(c->init_data);
  free(c);
}

const char *kbc_token(const kbc_client *c) { return c ? c->token : NULL; }

void kbc_get_stats(const kbc_client *c, kbc_stats *out) { *out = c->stats; }

int kbc_token_rejected(const kbc_client *c) { return c->token_rejected; }

CT_RESULT kbc_tee_key_pem(const kbc_client *c, char **pem, ct_err *err) {
  CT_ENSURE(c->key, err, CT_ENOTFOUND, "kbc: no TEE key yet (attest first)");
  BIO *b = BIO_new(BIO_s_secmem());
  CT_ENSURE(b, err, CT_ENOMEM, "kbc: out of memory");
  ct_status st = CT_OK;
  if (PEM_write_bio_PrivateKey(b, jose_jwk_pkey(c->key), NULL, NULL, 0, NULL, NULL) != 1) {
    st = ct_fail_ossl(err, CT_ECRYPTO, "kbc: exporting the TEE key");
  } else {
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    st = ct_strndup(data, (size_t)n, pem, err);
  }
  BIO_free(b);
  return st;
}

/* --- HTTP ------------------------------------------------------------------------------- */

typedef struct kbc__resp {
  long status;
  ct_buf body;
} kbc__resp;

/* One HTTP exchange; transport failures and 5xx answers are retried with backoff. */
static CT_RESULT kbc__request(kbc_client *c, const char *path, const char *post_body,
                              int bearer, kbc__resp *r, ct_err *err) {
  char url[KBC__URL_MAX + KBC_URI_MAX + 16];
  int un = snprintf(url, sizeof url, "%s/kbs/v0/%s", c->url, path);
  CT_ENSURE(un > 0 && (size_t)un < sizeof url, err, CT_ELIMIT, "kbc: request URL too long");
  const char *hdr[4] = {"Accept: application/json"};
  size_t nh = 1;
  char *auth = NULL;
  if (post_body) hdr[nh++] = "Content-Type: application/json";
  if (bearer && c->token) {
    size_t n = strlen(c->token) + 32;
    auth = malloc(n);
    CT_ENSURE(auth, err, CT_ENOMEM, "kbc: out of memory");
    snprintf(auth, n, "Authorization: Bearer %s", c->token);
    hdr[nh++] = auth;
  }
  ct_http_req req = {.method = post_body ? "POST" : "GET", .url = url, .headers = hdr,
                     .body = post_body, .body_len = post_body ? strlen(post_body) : 0};
  ct_http_resp resp;
  ct_status st = ct_http_do(c->http, &req, &resp, err);
  if (auth) {
    ct_wipe(auth, strlen(auth));
    free(auth);
  }
  if (st) {
    ct_http_resp_free(&resp);
    return ct_err_prefix(err, "kbc: ");
  }
  if (resp.status >= 500) {
    st = ct_fail(err, CT_EIO, "kbc: %s answered HTTP %ld (after %u attempts)", url, resp.status,
                 resp.attempts);
    ct_http_resp_free(&resp);
    return st;
  }
  r->status = resp.status;
  r->body = resp.body;
  resp.body = (ct_buf){0};
  ct_http_resp_free(&resp);
  return CT_OK;
}

/* Turns a non-200 KBS answer into an error carrying Trustee's ErrorInformation. `variant`
 * receives the error type's last path segment ("PolicyDeny") or "". */
static CT_RESULT kbc__kbs_error(const char *what, kbc__resp *r, char *variant, size_t vcap,
                                ct_err *err) {
  variant[0] = 0;
  json_t *j = NULL;
  const char *detail = NULL;
  ct_err ignore;
  if (r->body.len && ct_json_parse((const char *)r->body.data, r->body.len, 8, &j, &ignore) == CT_OK &&
      json_is_object(j)) {
    const char *type = json_string_value(json_object_get(j, "type"));
    detail = json_string_value(json_object_get(j, "detail"));
    if (type) {
      const char *slash = strrchr(type, '/');
      snprintf(variant, vcap, "%s", slash ? slash + 1 : type);
    }
  }
  ct_status code = r->status == 404 ? CT_ENOTFOUND : r->status == 401 || r->status == 403 ? CT_EDENIED
                                                                                         : CT_EIO;
  /* Trustee answers a missing resource with 401 PluginInternalError; its detail tells. */
  if (!strcmp(variant, "PluginInternalError") && detail &&
      (strcasestr(detail, "not found") || strcasestr(detail, "notfound") ||
       strcasestr(detail, "no such file")))
    code = CT_ENOTFOUND;
  ct_status st = ct_fail(err, code, "%s: KBS answered HTTP %ld%s%s%s%.300s", what, r->status,
                         variant[0] ? " " : "", variant, detail ? ": " : "", detail ? detail : "");
  json_decref(j);
  return st;
}

static CT_RESULT kbc__json_body(kbc__resp *r, const char *what, json_t **out, ct_err *err) {
  ct_status st = ct_json_parse((const char *)r->body.data, r->body.len, 16, out, err);
  if (st) return ct_err_prefix(err, "%s: ", what);
  return CT_OK;
}

/* --- RCAR ------------------------------------------------------------------------------- */

/* Exactly the members Trustee's TeePubKey re-serialises, so both sides hash the same JSON. */
static CT_RESULT kbc__tee_pubkey(const jose_jwk *k, json_t **out, ct_err *err) {
  json_t *full = NULL;
  CT_GUARD(jose_jwk_to_json(k, &full, err));
  const char *kty = json_string_value(json_object_get(full, "kty"));
  static const char *const ec[] = {"kty", "crv", "alg", "x", "y", NULL};
  static const char *const rsa[] = {"kty", "alg", "n", "e", NULL};
  const char *const *keys = kty && !strcmp(kty, "RSA") ? rsa : ec;
  json_t *o = json_object();
  ct_status st = CT_OK;
  for (size_t i = 0; o && keys[i]; i++) {
    json_t *v = json_object_get(full, keys[i]);
    CT_ENSURE_GOTO(st, json_is_string(v), out, err, CT_EINTERNAL,
                   "kbc: generated key lacks JWK member %s", keys[i]);
    CT_ENSURE_GOTO(st, json_object_set(o, keys[i], v) == 0, out, err, CT_ENOMEM, "out of memory");
  }
  CT_ENSURE_GOTO(st, o, out, err, CT_ENOMEM, "kbc: out of memory");
  *out = o;
  o = NULL;
out:
  json_decref(o);
  json_decref(full);
  return st;
}

static CT_RESULT kbc__rcar(kbc_client *c, ct_err *err) {
  ct_status st = CT_OK;
  kbc__resp r = {0};
  json_t *req = NULL, *chal = NULL, *pub = NULL, *ev = NULL, *att = NULL, *tok = NULL;
  char *body = NULL;
  jose_jwk *key = NULL;
  char variant[64];

  req = json_pack("{s:s,s:s,s:s}", "version", KBC_PROTOCOL_VERSION, "tee", c->tee, "extra-params", "");
  CT_ENSURE_GOTO(st, req, out, err, CT_ENOMEM, "kbc: out of memory");
  CT_GUARD_GOTO(st, ct_json_dump(req, &body, err), out);
  CT_GUARD_GOTO(st, kbc__request(c, "auth", body, 0, &r, err), out);
  if (r.status != 200) {
    st = kbc__kbs_error("RCAR auth", &r, variant, sizeof variant, err);
    goto out;
  }
  CT_GUARD_GOTO(st, kbc__json_body(&r, "RCAR challenge", &chal, err), out);
  const char *nonce = NULL;
  CT_GUARD_GOTO(st, ct_json_get_string(chal, "nonce", "RCAR challenge", &nonce, err), out);
  CT_ENSURE_GOTO(st, strlen(nonce) <= 1024, out, err, CT_ELIMIT, "RCAR challenge: nonce too long");

  if (c->fixed_key)
    CT_GUARD_GOTO(st, jose_jwk_from_pkey(jose_jwk_pkey(c->fixed_key), jose_jwk_alg(c->fixed_key), &key, err), out);
  else
    CT_GUARD_GOTO(st, jose_jwk_generate(c->key_alg, c->key_crv[0] ? c->key_crv : NULL, &key, err), out);
  CT_GUARD_GOTO(st, kbc__tee_pubkey(key, &pub, err), out);
  uint8_t rd[48];
  CT_GUARD_GOTO(st, kbc_report_data(nonce, pub, rd, err), out);
  st = c->evidence(c->evidence_ud, rd, sizeof rd, &ev, err);
  if (st) {
    ct_err_prefix(err, "collecting %s evidence: ", c->tee);
    goto out;
  }
  att = json_pack("{s:{s:s,s:O},s:{s:O,s:s}}", "runtime-data", "nonce", nonce, "tee-pubkey", pub,
                  "tee-evidence", "primary_evidence", ev, "additional_evidence", "");
  CT_ENSURE_GOTO(st, att, out, err, CT_ENOMEM, "kbc: out of memory");
  if (c->init_data) {
    json_t *id = json_pack("{s:s,s:s}", "format", "toml", "body", c->init_data);
    CT_ENSURE_GOTO(st, id, out, err, CT_EINVAL, "kbc: init-data is not valid UTF-8");
    CT_GUARD_GOTO(st, ct_json_set_new(att, "init-data", id, err), out);
  }
  free(body);
  body = NULL;
  CT_GUARD_GOTO(st, ct_json_dump(att, &body, err), out);
  ct_buf_free(&r.body);
  CT_GUARD_GOTO(st, kbc__request(c, "attest", body, 0, &r, err), out);
  if (r.status != 200) {
    st = kbc__kbs_error("RCAR attest", &r, variant, sizeof variant, err);
    goto out;
  }
  CT_GUARD_GOTO(st, kbc__json_body(&r, "RCAR attest reply", &tok, err), out);
  const char *token = NULL;
  CT_GUARD_GOTO(st, ct_json_get_string(tok, "token", "RCAR attest reply", &token, err), out);
  CT_GUARD_GOTO(st, kbc__set_token(c, token, err), out);
  jose_jwk_free(c->key);
  c->key = key;
  key = NULL;
  c->stats.attestations++;
  CT_LOG_INFO_("kbc", "attested as %s to %s (token exp %lld)", c->tee, c->url,
               (long long)c->token_exp);
out:
  ct_buf_free(&r.body);
  free(body);
  json_decref(req);
  json_decref(chal);
  json_decref(pub);
  json_decref(ev);
  json_decref(att);
  json_decref(tok);
  jose_jwk_free(key);
  return st;
}

static int kbc__token_fresh(const kbc_client *c) {
  if (!c->token || !c->key) return 0;
  if (!c->token_exp) return 1;
  return (int64_t)time(NULL) + KBC__TOKEN_SKEW_S < c->token_exp;
}

CT_RESULT kbc_attest(kbc_client *c, ct_err *err) {
  if (kbc__token_fresh(c)) return CT_OK;
  if (c->passport)
    return ct_fail(err, CT_EEXPIRED, "kbc: the attestation token has expired (passport mode "
                                     "cannot re-attest)");
  kbc_invalidate(c);
  return kbc__rcar(c, err);
}

/* --- resources -------------------------------------------------------------------------- */

static int kbc__reattest_helps(const char *variant) {
  /* The token was rejected (expired, unknown signer after a KBS restart, ...): a fresh
   * attestation can fix that. A policy or plugin verdict on a valid token cannot. */
  return !variant[0] || !strcmp(variant, "TokenVerifierError") || !strcmp(variant, "TokenNotFound") ||
         !strcmp(variant, "AttestationError") || !strcmp(variant, "JweError");
}

CT_RESULT kbc_get(kbc_client *c, const char *plugin, const char *path, uint8_t **out, size_t *len,
                  ct_err *err) {
  CT_ENSURE(plugin && kbc__seg_ok(plugin, strlen(plugin)), err, CT_EINVAL,
            "kbc: malformed plugin name");
  CT_ENSURE(path && strlen(path) < KBC_URI_MAX && kbc__path_segments(path) > 0, err, CT_EINVAL,
            "kbc: malformed resource path \"%.200s\"", path ? path : "");
  char rel[KBC_URI_MAX + 80];
  snprintf(rel, sizeof rel, "%s/%s", plugin, path);
  ct_status st = CT_OK;
  c->token_rejected = 0;
  for (int round = 0;; round++) {
    CT_GUARD(kbc_attest(c, err));
    kbc__resp r = {0};
    CT_GUARD(kbc__request(c, rel, NULL, 1, &r, err));
    if (r.status == 200) {
      json_t *jwe = NULL;
      st = kbc__json_body(&r, "KBS response", &jwe, err);
      ct_buf_free(&r.body);
      CT_GUARD(st);
      st = jose_jwe_decrypt(c->key, jwe, out, len, err);
      json_decref(jwe);
      if (st) return ct_err_prefix(err, "decrypting %s: ", rel);
      c->stats.fetches++;
      return CT_OK;
    }
    char variant[64];
    st = kbc__kbs_error(rel, &r, variant, sizeof variant, err);
    ct_buf_free(&r.body);
    c->token_rejected = r.status == 401 && kbc__reattest_helps(variant);
    if (r.status == 401 && round == 0 && !c->passport && kbc__reattest_helps(variant)) {
      CT_LOG_INFO_("kbc", "token rejected for %s (%s), re-attesting", rel,
                   variant[0] ? variant : "-");
      kbc_invalidate(c);
      continue;
    }
    return st;
  }
}

CT_RESULT kbc_get_resource(kbc_client *c, const char *path, uint8_t **out, size_t *len,
                           ct_err *err) {
  CT_ENSURE(path && kbc__path_segments(path) == 3, err, CT_EINVAL,
            "kbc: resource path must be repo/type/tag (got \"%.200s\")", path ? path : "");
  return kbc_get(c, "resource", path, out, len, err);
}
