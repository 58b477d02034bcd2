/*
 * kbs_handshake.c - the RCAR handshake: POST /kbs/v0/auth and POST /kbs/v0/attest.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ct_codec.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_mem.h"
#include "jose.h"
#include "kbs_internal.h"
#include "kbs_metrics.h"

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

static CT_RESULT kbs__check_version(const char *v, ct_err *err) {
  const char *p = v;
  unsigned major = 0, minor = 0, patch = 0;
  bool ok = kbs__semver_part(&p, &major) && *p++ == '.' && kbs__semver_part(&p, &minor) && *p++ == '.' &&
            kbs__semver_part(&p, &patch) && *p == 0 && major == 0 && minor >= 1 && minor <= 4;
  CT_ENSURE(ok, err, CT_EINVAL, "KBS Client Protocol Version Mismatch: expect =0.4.0 (0.1.x-0.4.x accepted) while the "
            "request is %.32s", v);
  return CT_OK;
}

const char *kbs_session_cookie(const kbs_http_request *req, char out[KBS_COOKIE_MAX]) {
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

/* Appends the decimal digits of v (>= 0), at least `width` of them. */
static char *kbs__digits(char *p, unsigned v, int width) {
  char tmp[12];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v || n < width);
  while (n) *p++ = tmp[--n];
  return p;
}

/* "kbs-session-id=<id>; Expires=<IMF-fixdate>", as snprintf and strftime's
 * "%a, %d %b %Y %H:%M:%S GMT" in the C locale write it (the KBS never sets another), without
 * their format machinery on every handshake. */
static void kbs__set_cookie(kbs_http_response *r, const char *id, time_t expires) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  struct tm tm;
  if (!gmtime_r(&expires, &tm) || tm.tm_year < 1000 - 1900 || tm.tm_year > 9999 - 1900) {
    /* outside four-digit years (never, for a session expiry): the library's own formatting */
    char when[64];
    strftime(when, sizeof when, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(r->set_cookie, sizeof r->set_cookie, "kbs-session-id=%s; Expires=%s", id, when);
    return;
  }
  /* an id longer than the header holds is cut where snprintf would cut it, below */
  char text[sizeof r->set_cookie + 64], *p = text;
  size_t idn = strnlen(id, sizeof r->set_cookie);
  memcpy(p, "kbs-session-id=", 15);
  p += 15;
  memcpy(p, id, idn);
  p += idn;
  memcpy(p, "; Expires=", 10);
  p += 10;
  memcpy(p, days[tm.tm_wday % 7], 3);
  p += 3;
  *p++ = ',';
  *p++ = ' ';
  p = kbs__digits(p, (unsigned)tm.tm_mday, 2);
  *p++ = ' ';
  memcpy(p, months[tm.tm_mon % 12], 3);
  p += 3;
  *p++ = ' ';
  p = kbs__digits(p, (unsigned)(tm.tm_year + 1900), 1);
  *p++ = ' ';
  p = kbs__digits(p, (unsigned)tm.tm_hour, 2);
  *p++ = ':';
  p = kbs__digits(p, (unsigned)tm.tm_min, 2);
  *p++ = ':';
  p = kbs__digits(p, (unsigned)tm.tm_sec, 2);
  memcpy(p, " GMT", 5);
  p += 4;
  size_t n = (size_t)(p - text);
  if (n >= sizeof r->set_cookie) n = sizeof r->set_cookie - 1; /* snprintf's truncation */
  memcpy(r->set_cookie, text, n);
  r->set_cookie[n] = 0;
}

void kbs_handle_auth(kbs_server *s, const kbs_http_request *req, kbs_http_response *r) {
  kbs_metrics_inc(KBS_M_AUTH_REQUESTS);
  ct_err err;
  json_t *body = NULL;
  if (kbs_parse_json_body(req, &body, &err) != CT_OK) {
    kbs_metrics_inc(KBS_M_AUTH_ERRORS);
    kbs_reply_error(r, "AttestationError", "RCAR handshake Auth failed: %s", err.msg);
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
    /* Refused here already so that a client learns it before building evidence (the attestation
     * service refuses it too). */
    else if (!strcmp(tee, "sample") && s->cfg->as_enabled && !s->cfg->enable_sample_tee)
      st = ct_fail(&err, CT_EDENIED, "the sample TEE is disabled (its evidence can be forged): set "
                   "[attestation_service] enable_sample_tee = true only for tests and demos");
  }
  if (st == CT_OK && !json_object_get(body, "extra-params"))
    st = ct_fail(&err, CT_EINVAL, "auth request: member \"extra-params\" is missing");
  char id[KBS_COOKIE_MAX], nonce[KBS_NONCE_B64_LEN + 1];
  time_t expires;
  if (st == CT_OK) st = kbs_sessions_create(s->sessions, tee, s->cfg->as_timeout_min * 60u, id, nonce, &expires, &err);
  json_decref(body);
  if (st != CT_OK) {
    kbs_metrics_inc(KBS_M_AUTH_ERRORS);
    kbs_reply_error(r, "AttestationError", "RCAR handshake Auth failed: %s", err.msg);
    return;
  }
  kbs_metrics_inc(KBS_M_AUTH_SUCCESSES);
  kbs__set_cookie(r, id, expires);
  kbs_reply_json(r, json_pack("{s:s, s:s}", "nonce", nonce, "extra-params", ""));
}

/* An object of string members, as json_pack("{s:s, ...}") builds it without parsing a format and
 * checking again what is known good: the keys are literals and the values strings the JSON
 * reader produced (UTF-8, no NUL) or base64. NULL when out of memory. */
static json_t *kbs__string_members(json_t *o, size_t n, const char *const kv[][2]) {
  for (size_t i = 0; o && i < n; i++) {
    if (json_object_set_new_nocheck(o, kv[i][0], json_string_nocheck(kv[i][1])) != 0) {
      json_decref(o);
      o = NULL;
    }
  }
  return o;
}

/* Re-serialises the client's TEE key with exactly the members Trustee hashes: unknown JWK
 * members (kid, use, ...) never reach report_data. */
static CT_RESULT kbs__canonical_teekey(const json_t *jwk, json_t **out, ct_err *err) {
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
    const char *const kv[][2] = {{"kty", kty}, {"crv", crv}, {"alg", alg}, {"x", x}, {"y", y}};
    c = kbs__string_members(json_object(), 5, kv);
  } else if (!strcmp(kty, "RSA")) {
    const char *n = json_string_value(json_object_get(jwk, "n"));
    const char *e = json_string_value(json_object_get(jwk, "e"));
    CT_ENSURE(n && e, err, CT_EINVAL, "runtime-data: RSA tee-pubkey needs n and e");
    CT_ENSURE(!strcmp(alg, "RSA-OAEP-256") || !strcmp(alg, "RSA1_5"), err, CT_EINVAL,
              "runtime-data: RSA tee-pubkey alg must be RSA-OAEP-256 or RSA1_5");
    const char *const kv[][2] = {{"kty", kty}, {"alg", alg}, {"n", n}, {"e", e}};
    c = kbs__string_members(json_object(), 4, kv);
  } else {
    return ct_fail(err, CT_EINVAL, "runtime-data: tee-pubkey kty %.16s is not EC or RSA", kty);
  }
  CT_ENSURE(c, err, CT_ENOMEM, "out of memory");
  /* The key must be usable: a point off the curve would make every later JWE fail. */
  if (jose_jwk_check_json(c, err) != CT_OK) {
    json_decref(c);
    return ct_err_prefix(err, "runtime-data: tee-pubkey: ");
  }
  *out = c;
  return CT_OK;
}

static CT_RESULT kbs__do_attest(kbs_server *s, const kbs_session_view *sv, const json_t *body, char **token,
                                json_t **claims, ct_err *err) {
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
  json_t *rt = json_object();
  if (rt && json_object_set_new_nocheck(rt, "tee-pubkey", teekey) == 0) { /* teekey is rt's either way */
    const char *const kv[][2] = {{"nonce", sv->nonce}, {"additional-evidence", additional_str}};
    rt = kbs__string_members(rt, 2, kv);
  } else {
    if (!rt) json_decref(teekey);
    json_decref(rt);
    rt = NULL;
  }
  CT_ENSURE(rt, err, CT_ENOMEM, "out of memory");
  as_request areq = {.tee = sv->tee, .evidence = primary, .runtime_data = rt, .init_data_toml = init_body,
                     .init_data_len = init_len, .policy_id = "default"};
  ct_status st = as_evaluate(s->as, &areq, token, claims, err);
  json_decref(rt);
  return st;
}

static void kbs__sid_key(const char *prefix, const kbs_session_view *sv, char out[64]) {
  char hex[2 * KBS_SID_LEN + 1];
  ct_hex_into(sv->sid, KBS_SID_LEN, hex);
  hex[2 * KBS_SID_LEN] = 0;
  snprintf(out, 64, "%s/%s", prefix, hex);
}

/* Session records live a little longer than the session, so that a clock step between replicas
 * never lets one expire early. */
static unsigned kbs__record_ttl(const kbs_session_view *sv) {
  time_t left = sv->expires - time(NULL);
  return (unsigned)(left > 0 ? left : 1) + 60;
}

CT_RESULT kbs_session_claim_nonce(kbs_server *s, const kbs_session_view *sv, bool attested_here, ct_err *err) {
  CT_ENSURE(!attested_here, err, CT_EDENIED, "this session is already attested and its nonce was used: a replayed "
            "/attest (nonces are single-use; start again with /auth)");
  if (!s->session_shared) return kbs_sessions_claim_nonce(s->sessions, sv, err);
  char key[64];
  kbs__sid_key("nonce", sv, key);
  bool inserted = false;
  if (kvs_put_nx(s->session_store, KBS_SESSION_NS, key, "used", 4, kbs__record_ttl(sv), &inserted, err) != CT_OK)
    return ct_err_prefix(err, "session storage (%s): cannot record the nonce as used: ",
                         kvs_type_name(kvs_get_type(s->session_store)));
  CT_ENSURE(inserted, err, CT_EDENIED, "this session's nonce was already used (on this or another replica): a "
            "replayed /attest (nonces are single-use; start again with /auth)");
  return CT_OK;
}

void kbs_session_share_token(kbs_server *s, const kbs_session_view *sv, const char *token) {
  if (!s->session_shared) return;
  char key[64];
  kbs__sid_key("attested", sv, key);
  ct_err err;
  if (kvs_put_ttl(s->session_store, KBS_SESSION_NS, key, token, strlen(token), kbs__record_ttl(sv), &err) != CT_OK)
    CT_LOG_WARN_("kbs", "the attested session is not shared with other replicas (its cookie works here only): %s",
                 err.msg);
}

char *kbs_session_shared_token(kbs_server *s, const kbs_session_view *sv) {
  if (!s->session_shared) return NULL;
  char key[64];
  kbs__sid_key("attested", sv, key);
  uint8_t *v = NULL;
  size_t n = 0;
  ct_err err;
  ct_status st = kvs_get(s->session_store, KBS_SESSION_NS, key, &v, &n, &err);
  if (st != CT_OK) {
    if (st != CT_ENOTFOUND) CT_LOG_WARN_("kbs", "looking up a session attested on another replica: %s", err.msg);
    return NULL;
  }
  return (char *)v;
}

/* {"token":"..."} as kbs_reply_json writes it, without packing the token (several KiB) into a
 * JSON value first: that copy and its UTF-8 check cost more than writing the reply. */
static void kbs__reply_token(kbs_http_response *r, const char *token) {
  ct_err e;
  if (ct_buf_append(&r->body, "{\"token\":", 9, &e) != CT_OK ||
      ct_json_write_string(token, strlen(token), &r->body, &e) != CT_OK || ct_buf_append(&r->body, "}", 1, &e) != CT_OK) {
    kbs_reply_error(r, "SerdeError", "cannot serialise the response");
    return;
  }
  r->status = 200;
  r->content_type = "application/json";
}

void kbs_handle_attest(kbs_server *s, const kbs_http_request *req, kbs_http_response *r) {
  kbs_metrics_inc(KBS_M_ATTESTATION_REQUESTS);
  ct_err err;
  char idbuf[KBS_COOKIE_MAX];
  const char *id = kbs_session_cookie(req, idbuf);
  if (!id) {
    kbs_metrics_inc(KBS_M_ATTESTATION_ERRORS);
    kbs_reply_error(r, "AttestationError", "RCAR handshake Attest failed: no kbs-session-id cookie; call /auth first");
    return;
  }
  kbs_session_view sv;
  ct_status st = kbs_sessions_get(s->sessions, id, &sv, &err);
  if (st != CT_OK) {
    kbs_metrics_inc(KBS_M_ATTESTATION_ERRORS);
    kbs_reply_error(r, "AttestationError", "RCAR handshake Attest failed: %s", err.msg);
    return;
  }
  kbs__set_cookie(r, id, sv.expires);
  kbs_session_view_clear(&sv);
  /* A nonce is single-use: a second /attest for a session, here or on any replica sharing the
   * session storage, is a replay. (Trustee answers a repeated /attest with the session's token;
   * a client that lost it starts again with /auth.) */
  json_t *body = NULL, *claims = NULL;
  char *token = NULL;
  /* The nonce is spent only by an attestation that passed: spent on any well-formed request, an
   * unauthenticated client filled the single-use records with /auth + junk /attest and every
   * attestation was refused until they expired (the attack suite's nonce_records_exhaustion).
   * A replay of a passing /attest still finds its nonce spent. */
  st = sv.attested ? kbs_session_claim_nonce(s, &sv, true, &err) : kbs_parse_json_body(req, &body, &err);
  if (st == CT_OK) st = kbs__do_attest(s, &sv, body, &token, &claims, &err);
  if (st == CT_OK) st = kbs_session_claim_nonce(s, &sv, sv.attested, &err);
  json_decref(body);
  /* The claims the token was written from: the session keeps them parsed, for resource requests. */
  if (st == CT_OK) st = kbs_sessions_attest(s->sessions, &sv, token, claims, &err);
  json_decref(claims);
  if (st != CT_OK) {
    kbs_metrics_attestation(sv.tee, 0);
    kbs_reply_error(r, "AttestationError", "RCAR handshake Attest failed: %s", err.msg);
    free(token);
    return;
  }
  kbs_session_share_token(s, &sv, token);
  kbs_metrics_attestation(sv.tee, 1);
  kbs__reply_token(r, token);
  free(token);
}
