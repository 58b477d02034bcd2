/*
 * cdh_sealed.c - sealed secrets: `sealed.` + a JWS compact serialisation (ES256, kid).
 */
#include <stdlib.h>
#include <string.h>

#include "cdh.h"
#include "ct_codec.h"
#include "ct_json.h"
#include "jose.h"

static CT_RESULT cdh__sealed_part(const char *p, size_t n, const char *what, json_t **out,
                                  ct_err *err) {
  uint8_t *raw = NULL;
  size_t len = 0;
  ct_status st = ct_b64_decode(CT_B64_URL, p, n, &raw, &len, err);
  if (st) return ct_err_prefix(err, "sealed secret %s: ", what);
  st = ct_json_parse((char *)raw, len, 8, out, err);
  free(raw);
  if (st) return ct_err_prefix(err, "sealed secret %s: ", what);
  if (!json_is_object(*out)) {
    json_decref(*out);
    *out = NULL;
    return ct_fail(err, CT_EINVAL, "sealed secret %s: not a JSON object", what);
  }
  return CT_OK;
}

CT_RESULT cdh_sealed_parse(const char *secret, size_t len, cdh_sealed *out, ct_err *err) {
  memset(out, 0, sizeof *out);
  CT_ENSURE(len <= CDH_SEALED_MAX, err, CT_ELIMIT, "sealed secret longer than %u bytes",
            CDH_SEALED_MAX);
  CT_ENSURE(len > 7 && !memcmp(secret, "sealed.", 7), err, CT_EINVAL,
            "sealed secret must start with \"sealed.\"");
  const char *parts[3];
  size_t plen[3];
  const char *p = secret + 7, *end = secret + len;
  for (int i = 0; i < 3; i++) {
    const char *dot = i < 2 ? memchr(p, '.', (size_t)(end - p)) : end;
    CT_ENSURE(dot, err, CT_EINVAL, "sealed secret must have four '.'-separated sections");
    parts[i] = p;
    plen[i] = (size_t)(dot - p);
    p = dot + (i < 2);
  }
  CT_ENSURE(!memchr(parts[2], '.', plen[2]), err, CT_EINVAL,
            "sealed secret must have four '.'-separated sections");
  CT_GUARD(cdh__sealed_part(parts[0], plen[0], "header", &out->header, err));
  ct_status st = cdh__sealed_part(parts[1], plen[1], "payload", &out->payload, err);
  if (st) cdh_sealed_free(out);
  return st;
}

CT_RESULT cdh_sealed_verify(const char *secret, size_t len, const char *jwk_json, size_t jwk_len,
                            ct_err *err) {
  CT_ENSURE(len > 7 && len <= CDH_SEALED_MAX && !memcmp(secret, "sealed.", 7), err, CT_EINVAL,
            "malformed sealed secret");
  json_t *j = NULL;
  CT_GUARD(ct_json_parse(jwk_json, jwk_len, 8, &j, err));
  jose_jwk *k = NULL;
  ct_status st = jose_jwk_from_json(j, &k, err);
  json_decref(j);
  if (st) return ct_err_prefix(err, "sealed secret verification key: ");
  char *compact = strndup(secret + 7, len - 7);
  if (!compact) {
    jose_jwk_free(k);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  json_t *hdr = NULL;
  uint8_t *payload = NULL;
  size_t plen = 0;
  st = jose_jws_verify(compact, jose_jwk_pkey(k), "ES256", &hdr, &payload, &plen, err);
  if (st) ct_err_prefix(err, "sealed secret signature: ");
  json_decref(hdr);
  free(payload);
  free(compact);
  jose_jwk_free(k);
  return st;
}

void cdh_sealed_free(cdh_sealed *s) {
  if (!s) return;
  json_decref(s->header);
  json_decref(s->payload);
  s->header = s->payload = NULL;
}
