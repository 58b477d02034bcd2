#include "kbs_auth.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <openssl/x509.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ct_file.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "jose.h"

#define KBS_JWT_LEEWAY 60
#define KBS_MAX_JWT (256u << 10)

struct kbs_token_verifier {
  X509_STORE *store;
  jose_jwks *jwks[64];
  size_t n_jwks;
  bool insecure_header_jwk;
};

static const char *kbs__strip_file_uri(const char *uri) { return strncmp(uri, "file://", 7) ? uri : uri + 7; }

CT_RESULT kbs_token_verifier_new(const kbs_config *cfg, kbs_token_verifier **out, ct_err *err) {
  kbs_token_verifier *v = calloc(1, sizeof *v);
  CT_ENSURE(v, err, CT_ENOMEM, "out of memory");
  v->insecure_header_jwk = cfg->insecure_header_jwk;
  ct_status st = CT_OK;
  if (cfg->n_trusted_certs_paths) {
    st = jose_trust_store_load((const char *const *)cfg->trusted_certs_paths, cfg->n_trusted_certs_paths, &v->store, err);
    if (st != CT_OK) ct_err_prefix(err, "attestation_token.trusted_certs_paths: ");
  }
  for (size_t i = 0; st == CT_OK && i < cfg->n_trusted_jwk_sets && i < 64; i++) {
    const char *uri = cfg->trusted_jwk_sets[i];
    if (!strncmp(uri, "https://", 8) || !strncmp(uri, "http://", 7)) {
      st = ct_fail(err, CT_EUNSUPPORTED, "attestation_token.trusted_jwk_sets: remote JWKS \"%s\" is not supported; "
                   "use a file (air-gapped sites copy the JWKS next to the KBS)", uri);
      break;
    }
    st = jose_jwks_load(uri, &v->jwks[i], err);
    if (st == CT_OK) v->n_jwks = i + 1;
    else ct_err_prefix(err, "attestation_token.trusted_jwk_sets[%zu]: ", i);
  }
  if (st != CT_OK) {
    kbs_token_verifier_free(v);
    return st;
  }
  *out = v;
  return CT_OK;
}

void kbs_token_verifier_free(kbs_token_verifier *v) {
  if (!v) return;
  if (v->store) X509_STORE_free(v->store);
  for (size_t i = 0; i < v->n_jwks; i++) jose_jwks_free(v->jwks[i]);
  free(v);
}

static CT_RESULT kbs__claims_from_payload(const uint8_t *payload, size_t len, json_t **claims, ct_err *err) {
  CT_GUARD(ct_json_parse((const char *)payload, len, 64, claims, err));
  if (!json_is_object(*claims)) {
    json_decref(*claims);
    *claims = NULL;
    return ct_fail(err, CT_EINVAL, "token payload is not a JSON object");
  }
  return CT_OK;
}

CT_RESULT kbs_token_verify(const kbs_token_verifier *v, const char *jwt, json_t **claims, ct_err *err) {
  CT_ENSURE(strlen(jwt) <= KBS_MAX_JWT, err, CT_ELIMIT, "token longer than %u bytes", KBS_MAX_JWT);
  json_t *header = NULL;
  uint8_t *payload = NULL;
  size_t payload_len = 0;
  CT_GUARD(jose_jws_decode_unverified(jwt, &header, &payload, &payload_len, err));
  free(payload);
  payload = NULL;
  json_t *hjwk = json_object_get(header, "jwk");
  const char *kid = json_string_value(json_object_get(header, "kid"));
  jose_jwk *owned = NULL;
  const jose_jwk *key = NULL;
  ct_status st = CT_OK;
  if (json_is_object(hjwk)) {
    if (!v->insecure_header_jwk) {
      json_t *x5c = json_object_get(hjwk, "x5c");
      if (!json_is_array(x5c) || json_array_size(x5c) == 0)
        st = ct_fail(err, CT_ECRYPTO, "token header jwk has no x5c chain and insecure_header_jwk is false");
      else if (!v->store)
        st = ct_fail(err, CT_ECRYPTO, "token header jwk carries an x5c chain but no trusted_certs_paths are configured");
      else if (jose_x5c_verify(hjwk, v->store, err) != CT_OK)
        st = ct_err_prefix(err, "token signer is not trusted: ");
    }
    if (st == CT_OK) st = jose_jwk_from_json(hjwk, &owned, err);
    key = owned;
  } else if (kid) {
    for (size_t i = 0; i < v->n_jwks && !key; i++) key = jose_jwks_find(v->jwks[i], kid);
    if (!key) st = ct_fail(err, CT_ECRYPTO, "token kid \"%.64s\" is in no trusted JWK set", kid);
  } else {
    st = ct_fail(err, CT_ECRYPTO, "token header has neither jwk nor kid: no way to find its key");
  }
  json_decref(header);
  header = NULL;
  if (st == CT_OK) {
    st = jose_jws_verify(jwt, jose_jwk_pkey(key), jose_jwk_alg(key), &header, &payload, &payload_len, err);
    if (st != CT_OK) ct_err_prefix(err, "token signature: ");
  }
  jose_jwk_free(owned);
  json_decref(header);
  if (st == CT_OK) st = kbs__claims_from_payload(payload, payload_len, claims, err);
  free(payload);
  CT_GUARD(st);
  st = jose_jwt_check_times(*claims, (int64_t)time(NULL), KBS_JWT_LEEWAY, true, err);
  if (st != CT_OK) {
    json_decref(*claims);
    *claims = NULL;
    return ct_err_prefix(err, "token: ");
  }
  return CT_OK;
}

/* --- admin ------------------------------------------------------------------------------------ */

typedef struct kbs__idp {
  char *issuer, *audience;
  jose_jwk *key;
  jose_jwks *jwks;
} kbs__idp;

typedef struct kbs__acl {
  char *role;
  pcre2_code *re;
} kbs__acl;

struct kbs_admin {
  kbs_admin_mode mode;
  kbs__idp idps[33];
  size_t n_idps;
  kbs__acl acls[65];
  size_t n_acls;
};

static CT_RESULT kbs__load_pem_key(const char *uri, jose_jwk **out, ct_err *err) {
  const char *path = kbs__strip_file_uri(uri);
  CT_ENSURE(strncmp(uri, "http", 4), err, CT_EUNSUPPORTED, "remote admin key \"%s\" is not supported; use a file", uri);
  uint8_t *pem = NULL;
  size_t len = 0;
  CT_GUARD(ct_file_read(path, 1u << 20, &pem, &len, err));
  ct_status st = jose_jwk_from_pem((const char *)pem, len, NULL, out, err);
  free(pem);
  if (st != CT_OK) ct_err_prefix(err, "%s: ", path);
  return st;
}

CT_RESULT kbs_admin_new(const kbs_config *cfg, kbs_admin **out, ct_err *err) {
  kbs_admin *a = calloc(1, sizeof *a);
  CT_ENSURE(a, err, CT_ENOMEM, "out of memory");
  a->mode = cfg->admin_mode;
  ct_status st = CT_OK;
  if (a->mode == KBS_ADMIN_LEGACY_KEY) {
    st = kbs__load_pem_key(cfg->auth_public_key, &a->idps[0].key, err);
    if (st == CT_OK) a->n_idps = 1;
    else ct_err_prefix(err, "admin.auth_public_key: ");
  }
  for (size_t i = 0; st == CT_OK && a->mode == KBS_ADMIN_AUTHENTICATED && i < cfg->n_idps && i < 32; i++) {
    const kbs_identity_provider *p = &cfg->idps[i];
    kbs__idp *d = &a->idps[i];
    a->n_idps = i + 1;
    if (p->issuer) st = ct_strdup(p->issuer, &d->issuer, err);
    if (st == CT_OK && p->audience) st = ct_strdup(p->audience, &d->audience, err);
    if (st == CT_OK && p->public_key_uri) st = kbs__load_pem_key(p->public_key_uri, &d->key, err);
    if (st == CT_OK && p->jwk_set_uri) st = jose_jwks_load(p->jwk_set_uri, &d->jwks, err);
    if (st != CT_OK) ct_err_prefix(err, "admin identity_providers[%zu]: ", i);
  }
  for (size_t i = 0; st == CT_OK && i < cfg->n_acls && i < 64; i++) {
    int code;
    PCRE2_SIZE off;
    a->acls[i].re = pcre2_compile((PCRE2_SPTR)cfg->acls[i].allowed_endpoints, PCRE2_ZERO_TERMINATED, 0, &code, &off, NULL);
    if (!a->acls[i].re) {
      PCRE2_UCHAR msg[128];
      pcre2_get_error_message(code, msg, sizeof msg);
      st = ct_fail(err, CT_EINVAL, "admin acls[%zu].allowed_endpoints: %s at offset %zu", i, (char *)msg, (size_t)off);
      break;
    }
    a->n_acls = i + 1;
    st = ct_strdup(cfg->acls[i].role, &a->acls[i].role, err);
  }
  if (st != CT_OK) {
    kbs_admin_free(a);
    return st;
  }
  *out = a;
  return CT_OK;
}

void kbs_admin_free(kbs_admin *a) {
  if (!a) return;
  for (size_t i = 0; i < a->n_idps; i++) {
    free(a->idps[i].issuer);
    free(a->idps[i].audience);
    jose_jwk_free(a->idps[i].key);
    if (a->idps[i].jwks) jose_jwks_free(a->idps[i].jwks);
  }
  for (size_t i = 0; i < a->n_acls; i++) {
    free(a->acls[i].role);
    pcre2_code_free(a->acls[i].re);
  }
  free(a);
}

static bool kbs__aud_matches(const json_t *claims, const char *aud) {
  json_t *v = json_object_get(claims, "aud");
  if (json_is_string(v)) return !strcmp(json_string_value(v), aud);
  for (size_t i = 0; json_is_array(v) && i < json_array_size(v); i++)
    if (json_is_string(json_array_get(v, i)) && !strcmp(json_string_value(json_array_get(v, i)), aud)) return true;
  return false;
}

/* Verifies the JWT against one identity provider; on success *claims is new. */
static CT_RESULT kbs__verify_with_idp(const kbs__idp *d, const char *jwt, json_t **claims, ct_err *err) {
  const jose_jwk *key = d->key;
  if (!key && d->jwks) {
    json_t *h = NULL;
    uint8_t *p = NULL;
    size_t pl;
    CT_GUARD(jose_jws_decode_unverified(jwt, &h, &p, &pl, err));
    free(p);
    const char *kid = json_string_value(json_object_get(h, "kid"));
    key = kid ? jose_jwks_find(d->jwks, kid) : NULL;
    json_decref(h);
    CT_ENSURE(key, err, CT_EDENIED, "no key with the token's kid in the identity provider's JWK set");
  }
  CT_ENSURE(key, err, CT_EINTERNAL, "identity provider without a key");
  json_t *header = NULL;
  uint8_t *payload = NULL;
  size_t len = 0;
  ct_err why;
  if (jose_jws_verify(jwt, jose_jwk_pkey(key), NULL, &header, &payload, &len, &why) != CT_OK)
    return ct_fail(err, CT_EDENIED, "admin token signature does not verify: %s", why.msg);
  json_decref(header);
  ct_status st = kbs__claims_from_payload(payload, len, claims, err);
  free(payload);
  CT_GUARD(st);
  if (jose_jwt_check_times(*claims, (int64_t)time(NULL), KBS_JWT_LEEWAY, true, &why) != CT_OK) {
    st = ct_fail(err, CT_EDENIED, "admin token rejected: %s", why.msg);
  } else if (d->issuer && !(json_is_string(json_object_get(*claims, "iss")) &&
                            !strcmp(json_string_value(json_object_get(*claims, "iss")), d->issuer))) {
    st = ct_fail(err, CT_EDENIED, "admin token issuer does not match \"%s\"", d->issuer);
  } else if (d->audience && !kbs__aud_matches(*claims, d->audience)) {
    st = ct_fail(err, CT_EDENIED, "admin token audience does not include \"%s\"", d->audience);
  }
  if (st != CT_OK) {
    json_decref(*claims);
    *claims = NULL;
  }
  return st;
}

CT_RESULT kbs_admin_check(const kbs_admin *a, const char *authorization, const char *uri, ct_err *err) {
  switch (a->mode) {
  case KBS_ADMIN_INSECURE_ALLOW_ALL: return CT_OK;
  case KBS_ADMIN_DENY_ALL:
    return ct_fail(err, CT_EDENIED, "admin API is disabled (authorization_mode = DenyAll)");
  default: break;
  }
  CT_ENSURE(authorization && !strncasecmp(authorization, "Bearer ", 7), err, CT_EDENIED,
            "admin request has no \"Authorization: Bearer <JWT>\" header");
  const char *jwt = authorization + 7;
  CT_ENSURE(strlen(jwt) <= KBS_MAX_JWT, err, CT_EDENIED, "admin token too long");
  ct_err last;
  ct_fail(&last, CT_EDENIED, "no identity provider configured");
  for (size_t i = 0; i < a->n_idps; i++) {
    json_t *claims = NULL;
    if (kbs__verify_with_idp(&a->idps[i], jwt, &claims, &last) != CT_OK) continue;
    if (a->mode == KBS_ADMIN_LEGACY_KEY) {
      json_decref(claims);
      return CT_OK;
    }
    const char *role = json_string_value(json_object_get(claims, "role"));
    if (!role) {
      json_decref(claims);
      return ct_fail(err, CT_EDENIED, "admin token has no string \"role\" claim");
    }
    for (size_t k = 0; k < a->n_acls; k++) {
      if (strcmp(a->acls[k].role, role)) continue;
      pcre2_match_data *md = pcre2_match_data_create_from_pattern(a->acls[k].re, NULL);
      int rc = md ? pcre2_match(a->acls[k].re, (PCRE2_SPTR)uri, strlen(uri), 0, 0, md, NULL) : -1;
      pcre2_match_data_free(md);
      if (rc >= 0) {
        json_decref(claims);
        return CT_OK;
      }
    }
    ct_status st = ct_fail(err, CT_EDENIED, "role \"%.64s\" is not allowed to call %.200s by any admin ACL", role, uri);
    json_decref(claims);
    return st;
  }
  return ct_fail(err, CT_EDENIED, "admin token not accepted by any identity provider (last reason: %s)", last.msg);
}
