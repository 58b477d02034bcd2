/*
 * kbs_admin.c - the admin API (resource writes, resource and attestation policies, reference
 * values) and the resource policy's life: load at start-up, set, reload from shared storage.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_mem.h"
#include "ct_policies.h"
#include "kbs_internal.h"
#include "kbs_metrics.h"

/* Trustee's key for the stored resource policy; earlier versions of ours used the legacy one. */
#define KBS_RESOURCE_POLICY_KEY "resource-policy.rego"
#define KBS_RESOURCE_POLICY_KEY_LEGACY "resource-policy"

static CT_RESULT kbs__resource_policy_get(kbs_server *s, uint8_t **text, size_t *len, ct_err *err) {
  ct_status st = kvs_get(s->store, KBS_KBS_NS, KBS_RESOURCE_POLICY_KEY, text, len, err);
  if (st == CT_ENOTFOUND) st = kvs_get(s->store, KBS_KBS_NS, KBS_RESOURCE_POLICY_KEY_LEGACY, text, len, err);
  return st;
}

static CT_RESULT kbs__compile_resource_policy(const char *text, rego_policy **out, ct_err *err) {
  rego_module mod = {"resource-policy.rego", text};
  if (rego_compile(&mod, 1, NULL, out, err) != CT_OK) return ct_err_prefix(err, "resource policy does not compile: ");
  return CT_OK;
}

CT_RESULT kbs_resource_policy_set(kbs_server *s, const char *text, size_t len, bool persist, ct_err *err) {
  CT_ENSURE(len <= (1u << 20), err, CT_ELIMIT, "resource policy larger than 1 MiB");
  CT_ENSURE(!memchr(text, 0, len), err, CT_EINVAL, "resource policy contains a NUL byte");
  char *copy = NULL;
  CT_GUARD(ct_strndup(text, len, &copy, err));
  rego_policy *compiled = NULL;
  ct_status st = kbs__compile_resource_policy(copy, &compiled, err);
  if (st == CT_OK && persist) st = kvs_put(s->store, KBS_KBS_NS, KBS_RESOURCE_POLICY_KEY, copy, len, err);
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

CT_RESULT kbs_resource_policy_load(kbs_server *s, ct_err *err) {
  uint8_t *text = NULL;
  size_t len = 0;
  ct_status st = kbs__resource_policy_get(s, &text, &len, err);
  if (st == CT_ENOTFOUND && s->cfg->resource_policy_path) {
    st = ct_file_read(s->cfg->resource_policy_path, 1u << 20, &text, &len, err);
    if (st != CT_OK && st != CT_ENOTFOUND) return ct_err_prefix(err, "policy_engine.policy_path: ");
  }
  if (st == CT_ENOTFOUND)
    return kbs_resource_policy_set(s, ct_policy_resource_default, strlen(ct_policy_resource_default), false, err);
  CT_GUARD(st);
  st = kbs_resource_policy_set(s, (const char *)text, len, false, err);
  free(text);
  return st;
}

/* Replicas share storage but compile policies once: a policy stored through another replica is
 * picked up here. */
void kbs_resource_policy_reload(kbs_server *s) {
  uint8_t *text = NULL;
  size_t len = 0;
  ct_err err;
  if (kbs__resource_policy_get(s, &text, &len, &err) != CT_OK) return;
  uint8_t digest[32];
  ct_sha256(text, len, digest);
  pthread_rwlock_rdlock(&s->policy_lock);
  bool same = !memcmp(digest, s->resource_policy_digest, sizeof digest);
  pthread_rwlock_unlock(&s->policy_lock);
  if (!same) {
    if (kbs_resource_policy_set(s, (const char *)text, len, false, &err) == CT_OK)
      CT_LOG_INFO_("kbs", "resource policy reloaded from storage");
    else
      CT_LOG_WARN_("kbs", "resource policy in storage does not compile, keeping the current one: %s", err.msg);
  }
  free(text);
}

static bool kbs__admin_ok(kbs_server *s, const kbs_http_request *req, kbs_http_response *r, bool plugin_path) {
  ct_err err;
  if (kbs_admin_check(s->admin, kbs_http_header(req, "Authorization"), req->uri, &err) == CT_OK) return true;
  /* Trustee's quirk: failures on plugin paths surface as AdminAuthInitialization. */
  kbs_reply_error(r, plugin_path ? "AdminAuthInitialization" : "AdminAuthAccess", "Admin auth error: %s", err.msg);
  return false;
}

void kbs_handle_resource_put(kbs_server *s, const kbs_http_request *req, const char *rest, bool del,
                              kbs_http_response *r) {
  ct_err err;
  char parts[3][KBS_MAX_ID_PART + 1];
  if (kbs_resource_id(rest, parts, &err) != CT_OK) {
    kbs_reply_error(r, "InvalidRequestPath", "%s", err.msg);
    return;
  }
  if (!kbs__admin_ok(s, req, r, true)) return;
  char key[3 * KBS_MAX_ID_PART + 3];
  snprintf(key, sizeof key, "%s/%s/%s", parts[0], parts[1], parts[2]);
  ct_status st;
  if (s->vault && del)
    st = ct_fail(&err, CT_EUNSUPPORTED, "vault: delete %s: not supported through the KBS; delete the secret in Vault", key);
  else if (s->vault)
    st = vault_kv_put(s->vault, parts[0], parts[1], parts[2], req->body, req->body_len, &err);
  else if (del)
    st = kvs_delete(s->resources, KBS_RESOURCE_NS, key, &err);
  else
    st = kvs_put(s->resources, KBS_RESOURCE_NS, key, req->body, req->body_len, &err);
  if (st != CT_OK) {
    kbs_reply_error(r, "PluginInternalError", "Plugin internal error: %s", err.msg);
    return;
  }
  kbs_metrics_resource(key, 1);
  CT_LOG_INFO_("kbs", "resource %s %s (%zu bytes)", key, del ? "deleted" : "stored", del ? 0 : req->body_len);
  r->status = 200;
  r->content_type = "text/xml"; /* Trustee's quirk */
}

/* Decodes {"policy": "<base64url Rego>"} (padding tolerated, as clients differ). */
static CT_RESULT kbs__policy_text(const json_t *body, char **text, size_t *len, ct_err *err) {
  const char *b64;
  CT_GUARD(ct_json_get_string(body, "policy", "policy request", &b64, err));
  uint8_t *raw = NULL;
  if (ct_b64_decode(CT_B64_ANY, b64, strlen(b64), &raw, len, err) != CT_OK)
    return ct_err_prefix(err, "policy request: policy must be base64url: ");
  *text = (char *)raw;
  return CT_OK;
}

void kbs_handle_resource_policy(kbs_server *s, const kbs_http_request *req, kbs_http_response *r) {
  if (!kbs__admin_ok(s, req, r, false)) return;
  ct_err err;
  if (req->method == KBS_GET) {
    /* Trustee returns the list of policy ids, not the text. */
    kbs_reply_json(r, json_pack("[s]", "resource-policy"));
    return;
  }
  json_t *body = NULL;
  if (kbs_parse_json_body(req, &body, &err) != CT_OK) {
    kbs_reply_error(r, "SerdeError", "%s", err.msg);
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
    kbs_reply_error(r, "SerdeError", "%s", err.msg);
    return;
  }
  st = kbs_resource_policy_set(s, text, len, true, &err);
  free(text);
  if (st != CT_OK) {
    kbs_reply_error(r, "ParsePolicyError", "%s", err.msg);
    return;
  }
  r->status = 200;
}

void kbs_handle_attestation_policy(kbs_server *s, const kbs_http_request *req, kbs_http_response *r) {
  if (!kbs__admin_ok(s, req, r, false)) return;
  ct_err err;
  json_t *body = NULL;
  if (kbs_parse_json_body(req, &body, &err) != CT_OK) {
    kbs_reply_error(r, "SerdeError", "%s", err.msg);
    return;
  }
  const char *id = NULL;
  char *text = NULL;
  size_t len = 0;
  ct_status st = ct_json_get_string(body, "policy_id", "attestation policy request", &id, &err);
  if (st == CT_OK) st = kbs__policy_text(body, &text, &len, &err);
  if (st != CT_OK) {
    json_decref(body);
    kbs_reply_error(r, "SerdeError", "%s", err.msg);
    return;
  }
  st = as_set_policy(s->as, id, text, len, &err);
  json_decref(body);
  free(text);
  if (st != CT_OK) {
    kbs_reply_error(r, "AttestationError", "Set attestation policy failed: %s", err.msg);
    return;
  }
  r->status = 200;
}

void kbs_handle_reference_value(kbs_server *s, const kbs_http_request *req, const char *id, kbs_http_response *r) {
  if (!kbs__admin_ok(s, req, r, false)) return;
  ct_err err;
  if (req->method == KBS_GET) {
    json_t *v = NULL;
    if (rvps_query(s->rvps, id, &v, &err) != CT_OK) {
      kbs_reply_error(r, "RvpsError", "RVPS error: %s", err.msg);
      return;
    }
    if (!v) {  /* as upstream: an unknown id is an RvpsError, not a null value */
      kbs_reply_error(r, "RvpsError", "RVPS error: no reference value found for the given id: %s", id);
      return;
    }
    kbs_reply_json(r, v);
    return;
  }
  json_t *body = NULL;
  if (kbs_parse_json_body(req, &body, &err) != CT_OK) {
    kbs_reply_error(r, "SerdeError", "%s", err.msg);
    return;
  }
  ct_status st = rvps_register(s->rvps, body, &err);
  json_decref(body);
  if (st != CT_OK) {
    kbs_reply_error(r, "RvpsError", "RVPS error: %s", err.msg);
    return;
  }
  r->status = 200;
  r->content_type = "application/json";
}
