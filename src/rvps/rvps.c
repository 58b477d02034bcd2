#include "rvps.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ct_codec.h"
#include "ct_json.h"

#define RVPS_NS "reference_value"

struct rvps {
  kvs *store;
};

CT_RESULT rvps_new(kvs *store, rvps **out, ct_err *err) {
  rvps *r = calloc(1, sizeof *r);
  CT_ENSURE(r, err, CT_ENOMEM, "out of memory");
  r->store = store;
  *out = r;
  return CT_OK;
}

void rvps_free(rvps *r) { free(r); }

static CT_RESULT rvps__store(rvps *r, const char *name, json_t *value, ct_err *err) {
  CT_GUARD(kvs_check_key(name, err));
  time_t exp = time(NULL) + 365 * 24 * 3600;
  struct tm tm;
  gmtime_r(&exp, &tm);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  json_t *rec = json_pack("{s:s, s:s, s:s, s:O}", "version", "0.1.0", "name", name, "expiration", when,
                          "value", value);
  CT_ENSURE(rec, err, CT_ENOMEM, "out of memory");
  char *text = NULL;
  ct_status st = ct_json_dump(rec, &text, err);
  json_decref(rec);
  if (st == CT_OK) st = kvs_put(r->store, RVPS_NS, name, text, strlen(text), err);
  free(text);
  return st;
}

CT_RESULT rvps_register(rvps *r, const json_t *message, ct_err *err) {
  const char *version, *type, *payload;
  CT_GUARD(ct_json_get_string(message, "version", "reference value message", &version, err));
  CT_ENSURE(!strcmp(version, "0.1.0"), err, CT_EINVAL,
            "reference value message: version \"%s\" is not 0.1.0", version);
  CT_GUARD(ct_json_get_string(message, "type", "reference value message", &type, err));
  CT_ENSURE(!strcmp(type, "sample"), err, CT_EUNSUPPORTED,
            "reference value message: type \"%s\" is not supported (only sample)", type);
  CT_GUARD(ct_json_get_string(message, "payload", "reference value message", &payload, err));
  uint8_t *raw = NULL;
  size_t raw_len = 0;
  if (ct_b64_decode(CT_B64_STD, payload, strlen(payload), &raw, &raw_len, err) != CT_OK)
    return ct_err_prefix(err, "reference value message: payload: ");
  json_t *values = NULL;
  ct_status st = ct_json_parse((const char *)raw, raw_len, 32, &values, err);
  free(raw);
  if (st != CT_OK) return ct_err_prefix(err, "reference value message: payload: ");
  if (!json_is_object(values)) {
    json_decref(values);
    return ct_fail(err, CT_EINVAL, "reference value message: payload must be a JSON object of name -> value");
  }
  /* Check every name first so that a bad message stores nothing. */
  const char *name;
  json_t *v;
  json_object_foreach(values, name, v) {
    if (kvs_check_key(name, err) != CT_OK) {
      ct_err_prefix(err, "reference value name \"%.64s\": ", name);
      json_decref(values);
      return err->code;
    }
  }
  json_object_foreach(values, name, v) {
    st = rvps__store(r, name, v, err);
    if (st != CT_OK) break;
  }
  json_decref(values);
  return st;
}

CT_RESULT rvps_query(rvps *r, const char *id, json_t **value, ct_err *err) {
  *value = NULL;
  if (kvs_check_key(id, err) != CT_OK) return CT_OK; /* an impossible id is simply unknown */
  uint8_t *data = NULL;
  size_t len = 0;
  ct_status st = kvs_get(r->store, RVPS_NS, id, &data, &len, err);
  if (st == CT_ENOTFOUND) return CT_OK;
  CT_GUARD(st);
  json_t *rec = NULL;
  st = ct_json_parse((const char *)data, len, 64, &rec, err);
  free(data);
  CT_GUARD(st);
  json_t *v = json_object_get(rec, "value");
  if (v) *value = json_incref(v);
  json_decref(rec);
  return CT_OK;
}
