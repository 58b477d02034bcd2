#include "kbs_config.h"

#include <stdlib.h>
#include <string.h>

#include "ct_file.h"
#include "ct_mem.h"
#include "toml.h"

/* Rejects members of `table` that are not in the NULL-terminated `allowed` list. Serde's
 * deny_unknown_fields behaviour, which turns a typo into an error instead of a silent default. */
static CT_RESULT kbs_config__only(const json_t *table, const char *section, const char *const *allowed,
                                  ct_err *err) {
  const char *key;
  json_t *v = NULL;
  json_object_foreach((json_t *)table, key, v) {
    bool ok = false;
    for (size_t i = 0; allowed[i]; i++)
      if (!strcmp(key, allowed[i])) ok = true;
    CT_ENSURE(ok, err, CT_EINVAL, "unknown key \"%s\" in [%s]", key, section);
  }
  return CT_OK;
}

static CT_RESULT kbs_config__table(const json_t *parent, const char *key, const char *section,
                                   json_t **out, ct_err *err) {
  json_t *v = json_object_get(parent, key);
  if (!v) {
    *out = NULL;
    return CT_OK;
  }
  CT_ENSURE(json_is_object(v), err, CT_EINVAL, "[%s] must be a table", section);
  *out = v;
  return CT_OK;
}

static CT_RESULT kbs_config__str(const json_t *t, const char *key, const char *section, char **out,
                                 ct_err *err) {
  json_t *v = t ? json_object_get(t, key) : NULL;
  if (!v) return CT_OK;
  CT_ENSURE(json_is_string(v), err, CT_EINVAL, "%s.%s must be a string", section, key);
  free(*out);
  *out = NULL;
  return ct_strdup(json_string_value(v), out, err);
}

static CT_RESULT kbs_config__bool(const json_t *t, const char *key, const char *section, bool *out,
                                  ct_err *err) {
  json_t *v = t ? json_object_get(t, key) : NULL;
  if (!v) return CT_OK;
  CT_ENSURE(json_is_boolean(v), err, CT_EINVAL, "%s.%s must be true or false", section, key);
  *out = json_is_true(v);
  return CT_OK;
}

static CT_RESULT kbs_config__uint(const json_t *t, const char *key, const char *section, unsigned min,
                                  unsigned max, unsigned *out, ct_err *err) {
  json_t *v = t ? json_object_get(t, key) : NULL;
  if (!v) return CT_OK;
  CT_ENSURE(json_is_integer(v), err, CT_EINVAL, "%s.%s must be an integer", section, key);
  json_int_t i = json_integer_value(v);
  CT_ENSURE(i >= min && i <= max, err, CT_EINVAL, "%s.%s = %lld is outside %u..%u", section, key,
            (long long)i, min, max);
  *out = (unsigned)i;
  return CT_OK;
}

static CT_RESULT kbs_config__strs(const json_t *t, const char *key, const char *section, char ***out,
                                  size_t *n, ct_err *err) {
  json_t *v = t ? json_object_get(t, key) : NULL;
  if (!v) return CT_OK;
  CT_ENSURE(json_is_array(v), err, CT_EINVAL, "%s.%s must be an array of strings", section, key);
  size_t count = json_array_size(v);
  CT_ENSURE(count <= 64, err, CT_ELIMIT, "%s.%s has more than 64 entries", section, key);
  char **arr = calloc(count ? count : 1, sizeof *arr);
  CT_ENSURE(arr, err, CT_ENOMEM, "out of memory");
  *out = arr;
  for (size_t i = 0; i < count; i++) {
    json_t *s = json_array_get(v, i);
    CT_ENSURE(json_is_string(s), err, CT_EINVAL, "%s.%s[%zu] must be a string", section, key, i);
    CT_GUARD(ct_strdup(json_string_value(s), &arr[i], err));
    *n = i + 1;
  }
  return CT_OK;
}

static CT_RESULT kbs_config__http(const json_t *doc, kbs_config *c, ct_err *err) {
  json_t *t = NULL;
  CT_GUARD(kbs_config__table(doc, "http_server", "http_server", &t, err));
  CT_ENSURE(t, err, CT_EINVAL, "missing [http_server] section (Trustee requires it)");
  static const char *const keys[] = {"sockets", "insecure_http", "private_key", "certificate",
                                     "payload_request_size", "worker_count", "reuse_port", NULL};
  CT_GUARD(kbs_config__only(t, "http_server", keys, err));
  CT_GUARD(kbs_config__strs(t, "sockets", "http_server", &c->sockets, &c->n_sockets, err));
  CT_GUARD(kbs_config__bool(t, "insecure_http", "http_server", &c->insecure_http, err));
  CT_GUARD(kbs_config__bool(t, "reuse_port", "http_server", &c->reuse_port, err));
  CT_GUARD(kbs_config__str(t, "private_key", "http_server", &c->private_key, err));
  CT_GUARD(kbs_config__str(t, "certificate", "http_server", &c->certificate, err));
  unsigned mib = 2, workers = 0;
  CT_GUARD(kbs_config__uint(t, "payload_request_size", "http_server", 1, 1024, &mib, err));
  CT_GUARD(kbs_config__uint(t, "worker_count", "http_server", 1, 64, &workers, err));
  c->payload_request_size_mib = mib;
  c->worker_count = workers;
  if (c->n_sockets == 0) {
    free(c->sockets);
    c->sockets = calloc(1, sizeof *c->sockets);
    CT_ENSURE(c->sockets, err, CT_ENOMEM, "out of memory");
    CT_GUARD(ct_strdup("127.0.0.1:8080", &c->sockets[0], err));
    c->n_sockets = 1;
  }
  if (!c->insecure_http)
    CT_ENSURE(c->private_key && c->certificate, err, CT_EINVAL,
              "[http_server] needs private_key and certificate unless insecure_http = true");
  return CT_OK;
}

static CT_RESULT kbs_config__admin(const json_t *doc, kbs_config *c, ct_err *err) {
  json_t *t = NULL;
  CT_GUARD(kbs_config__table(doc, "admin", "admin", &t, err));
  CT_ENSURE(t, err, CT_EINVAL, "missing [admin] section (Trustee requires it)");
  static const char *const keys[] = {"authorization_mode", "authentication", "authorization",
                                     "insecure_api", "auth_public_key", NULL};
  CT_GUARD(kbs_config__only(t, "admin", keys, err));
  char *mode = NULL;
  CT_GUARD(kbs_config__str(t, "authorization_mode", "admin", &mode, err));
  bool insecure_api = false;
  CT_GUARD(kbs_config__bool(t, "insecure_api", "admin", &insecure_api, err));
  CT_GUARD(kbs_config__str(t, "auth_public_key", "admin", &c->auth_public_key, err));
  bool legacy = json_object_get(t, "insecure_api") || c->auth_public_key;
  if (mode && legacy) {
    free(mode);
    return ct_fail(err, CT_EINVAL, "[admin] mixes authorization_mode with the older insecure_api / "
                   "auth_public_key keys; use one form");
  }
  if (legacy) {
    c->admin_mode = insecure_api ? KBS_ADMIN_INSECURE_ALLOW_ALL
                    : c->auth_public_key ? KBS_ADMIN_LEGACY_KEY : KBS_ADMIN_DENY_ALL;
    CT_ENSURE(!json_object_get(t, "authentication") && !json_object_get(t, "authorization"), err,
              CT_EINVAL, "[admin] authentication/authorization need authorization_mode");
    return CT_OK;
  }
  ct_status st = CT_OK;
  if (!mode || !strcmp(mode, "DenyAll")) c->admin_mode = KBS_ADMIN_DENY_ALL;
  else if (!strcmp(mode, "InsecureAllowAll")) c->admin_mode = KBS_ADMIN_INSECURE_ALLOW_ALL;
  else if (!strcmp(mode, "AuthenticatedAuthorization")) c->admin_mode = KBS_ADMIN_AUTHENTICATED;
  else st = ct_fail(err, CT_EINVAL, "admin.authorization_mode = \"%s\" is not one of InsecureAllowAll, "
                    "DenyAll, AuthenticatedAuthorization", mode);
  free(mode);
  CT_GUARD(st);

  json_t *authn = NULL, *bearer = NULL, *authz = NULL, *acl = NULL;
  CT_GUARD(kbs_config__table(t, "authentication", "admin.authentication", &authn, err));
  CT_GUARD(kbs_config__table(t, "authorization", "admin.authorization", &authz, err));
  if (authn) {
    static const char *const k[] = {"bearer_jwt", NULL};
    CT_GUARD(kbs_config__only(authn, "admin.authentication", k, err));
    CT_GUARD(kbs_config__table(authn, "bearer_jwt", "admin.authentication.bearer_jwt", &bearer, err));
  }
  if (authz) {
    static const char *const k[] = {"regex_acl", NULL};
    CT_GUARD(kbs_config__only(authz, "admin.authorization", k, err));
    CT_GUARD(kbs_config__table(authz, "regex_acl", "admin.authorization.regex_acl", &acl, err));
  }
  if (bearer) {
    static const char *const k[] = {"identity_providers", "insecure_header_jwk",
                                    "insecure_public_key_from_uri", NULL};
    CT_GUARD(kbs_config__only(bearer, "admin.authentication.bearer_jwt", k, err));
    json_t *idps = json_object_get(bearer, "identity_providers");
    if (idps) {
      CT_ENSURE(json_is_array(idps) && json_array_size(idps) <= 32, err, CT_EINVAL,
                "admin.authentication.bearer_jwt.identity_providers must be an array (at most 32)");
      c->idps = calloc(json_array_size(idps) + 1, sizeof *c->idps);
      CT_ENSURE(c->idps, err, CT_ENOMEM, "out of memory");
      for (size_t i = 0; i < json_array_size(idps); i++) {
        json_t *e = json_array_get(idps, i);
        CT_ENSURE(json_is_object(e), err, CT_EINVAL, "identity_providers[%zu] must be a table", i);
        static const char *const ik[] = {"issuer", "audience", "public_key_uri", "jwk_set_uri", NULL};
        CT_GUARD(kbs_config__only(e, "admin.authentication.bearer_jwt.identity_providers", ik, err));
        kbs_identity_provider *p = &c->idps[i];
        c->n_idps = i + 1;
        CT_GUARD(kbs_config__str(e, "issuer", "identity_providers", &p->issuer, err));
        CT_GUARD(kbs_config__str(e, "audience", "identity_providers", &p->audience, err));
        CT_GUARD(kbs_config__str(e, "public_key_uri", "identity_providers", &p->public_key_uri, err));
        CT_GUARD(kbs_config__str(e, "jwk_set_uri", "identity_providers", &p->jwk_set_uri, err));
        CT_ENSURE(p->public_key_uri || p->jwk_set_uri, err, CT_EINVAL,
                  "identity_providers[%zu] needs public_key_uri or jwk_set_uri", i);
      }
    }
  }
  if (acl) {
    static const char *const k[] = {"acls", NULL};
    CT_GUARD(kbs_config__only(acl, "admin.authorization.regex_acl", k, err));
    json_t *acls = json_object_get(acl, "acls");
    if (acls) {
      CT_ENSURE(json_is_array(acls) && json_array_size(acls) <= 64, err, CT_EINVAL,
                "admin.authorization.regex_acl.acls must be an array (at most 64)");
      c->acls = calloc(json_array_size(acls) + 1, sizeof *c->acls);
      CT_ENSURE(c->acls, err, CT_ENOMEM, "out of memory");
      for (size_t i = 0; i < json_array_size(acls); i++) {
        json_t *e = json_array_get(acls, i);
        CT_ENSURE(json_is_object(e), err, CT_EINVAL, "acls[%zu] must be a table", i);
        static const char *const ak[] = {"role", "allowed_endpoints", NULL};
        CT_GUARD(kbs_config__only(e, "admin.authorization.regex_acl.acls", ak, err));
        kbs_acl_rule *r = &c->acls[i];
        c->n_acls = i + 1;
        CT_GUARD(kbs_config__str(e, "role", "acls", &r->role, err));
        CT_GUARD(kbs_config__str(e, "allowed_endpoints", "acls", &r->allowed_endpoints, err));
        CT_ENSURE(r->role && r->allowed_endpoints, err, CT_EINVAL,
                  "acls[%zu] needs role and allowed_endpoints", i);
        size_t n = strlen(r->allowed_endpoints);
        CT_ENSURE(!strncmp(r->allowed_endpoints, "^/kbs", 5) && n > 5 &&
                      r->allowed_endpoints[n - 1] == '$',
                  err, CT_EINVAL, "acls[%zu].allowed_endpoints \"%s\" must start with ^/kbs and end "
                  "with $", i, r->allowed_endpoints);
      }
    }
  }
  if (c->admin_mode == KBS_ADMIN_AUTHENTICATED)
    CT_ENSURE(c->n_idps > 0, err, CT_EINVAL, "authorization_mode = \"AuthenticatedAuthorization\" needs "
              "[admin.authentication.bearer_jwt] identity_providers");
  return CT_OK;
}

static CT_RESULT kbs_config__token(const json_t *doc, kbs_config *c, ct_err *err) {
  json_t *t = NULL;
  CT_GUARD(kbs_config__table(doc, "attestation_token", "attestation_token", &t, err));
  if (!t) return CT_OK;
  static const char *const keys[] = {"trusted_certs_paths", "trusted_jwk_sets", "extra_teekey_paths",
                                     "insecure_header_jwk", "insecure_key", "attestation_token_type",
                                     NULL};
  CT_GUARD(kbs_config__only(t, "attestation_token", keys, err));
  CT_GUARD(kbs_config__strs(t, "trusted_certs_paths", "attestation_token", &c->trusted_certs_paths,
                            &c->n_trusted_certs_paths, err));
  CT_GUARD(kbs_config__strs(t, "trusted_jwk_sets", "attestation_token", &c->trusted_jwk_sets,
                            &c->n_trusted_jwk_sets, err));
  CT_GUARD(kbs_config__strs(t, "extra_teekey_paths", "attestation_token", &c->extra_teekey_paths,
                            &c->n_extra_teekey_paths, err));
  CT_GUARD(kbs_config__bool(t, "insecure_header_jwk", "attestation_token", &c->insecure_header_jwk, err));
  /* Trustee 1.0 spelling of the same switch. */
  CT_GUARD(kbs_config__bool(t, "insecure_key", "attestation_token", &c->insecure_header_jwk, err));
  return CT_OK;
}

static CT_RESULT kbs_config__as(const json_t *doc, kbs_config *c, ct_err *err) {
  json_t *t = NULL;
  CT_GUARD(kbs_config__table(doc, "attestation_service", "attestation_service", &t, err));
  if (!t) return CT_OK;
  static const char *const keys[] = {"type", "timeout", "attestation_token_broker", "rvps_config",
                                     "verifier_config", "work_dir", "policy_engine",
                                     "attestation_token_config", "policy_ids", "enable_sample_tee", NULL};
  CT_GUARD(kbs_config__only(t, "attestation_service", keys, err));
  char *type = NULL;
  CT_GUARD(kbs_config__str(t, "type", "attestation_service", &type, err));
  bool builtin = !type || !strcmp(type, "coco_as_builtin");
  ct_status st = builtin ? CT_OK
                         : ct_fail(err, CT_EUNSUPPORTED, "attestation_service.type = \"%s\" is not "
                                   "supported (only coco_as_builtin)", type);
  free(type);
  CT_GUARD(st);
  c->as_enabled = true;
  CT_GUARD(kbs_config__bool(t, "enable_sample_tee", "attestation_service", &c->enable_sample_tee, err));
  CT_GUARD(kbs_config__uint(t, "timeout", "attestation_service", 1, 24 * 60, &c->as_timeout_min, err));

  json_t *broker = NULL;
  CT_GUARD(kbs_config__table(t, "attestation_token_broker", "attestation_service.attestation_token_broker",
                             &broker, err));
  if (broker) {
    static const char *const bk[] = {"type", "duration_min", "issuer_name", "developer_name",
                                     "build_name", "profile_name", "verbose_token", "signer",
                                     "policy_dir", NULL};
    CT_GUARD(kbs_config__only(broker, "attestation_service.attestation_token_broker", bk, err));
    char *btype = NULL;
    CT_GUARD(kbs_config__str(broker, "type", "attestation_token_broker", &btype, err));
    st = !btype || !strcmp(btype, "Ear") ? CT_OK
         : ct_fail(err, CT_EUNSUPPORTED, "attestation_token_broker.type = \"%s\" is not supported "
                   "(only Ear)", btype);
    free(btype);
    CT_GUARD(st);
    CT_GUARD(kbs_config__uint(broker, "duration_min", "attestation_token_broker", 1, 24 * 60,
                              &c->token_duration_min, err));
    CT_GUARD(kbs_config__str(broker, "issuer_name", "attestation_token_broker", &c->issuer_name, err));
    CT_GUARD(kbs_config__str(broker, "developer_name", "attestation_token_broker", &c->developer_name, err));
    CT_GUARD(kbs_config__str(broker, "build_name", "attestation_token_broker", &c->build_name, err));
    CT_GUARD(kbs_config__str(broker, "profile_name", "attestation_token_broker", &c->profile_name, err));
    CT_GUARD(kbs_config__bool(broker, "verbose_token", "attestation_token_broker", &c->verbose_token, err));
    CT_GUARD(kbs_config__str(broker, "policy_dir", "attestation_token_broker", &c->as_policy_dir, err));
    json_t *signer = NULL;
    CT_GUARD(kbs_config__table(broker, "signer", "attestation_token_broker.signer", &signer, err));
    if (signer) {
      static const char *const sk[] = {"key_path", "cert_path", "cert_url", NULL};
      CT_GUARD(kbs_config__only(signer, "attestation_service.attestation_token_broker.signer", sk, err));
      CT_GUARD(kbs_config__str(signer, "key_path", "signer", &c->signer_key_path, err));
      CT_GUARD(kbs_config__str(signer, "cert_path", "signer", &c->signer_cert_path, err));
      CT_ENSURE(c->signer_key_path, err, CT_EINVAL, "attestation_token_broker.signer needs key_path");
    }
  }
  json_t *tcfg = NULL;
  CT_GUARD(kbs_config__table(t, "attestation_token_config", "attestation_service.attestation_token_config",
                             &tcfg, err));
  if (tcfg) {
    static const char *const tk[] = {"duration_min", NULL};
    CT_GUARD(kbs_config__only(tcfg, "attestation_service.attestation_token_config", tk, err));
    CT_GUARD(kbs_config__uint(tcfg, "duration_min", "attestation_token_config", 1, 24 * 60,
                              &c->token_duration_min, err));
  }
  json_t *rvps = NULL;
  CT_GUARD(kbs_config__table(t, "rvps_config", "attestation_service.rvps_config", &rvps, err));
  if (rvps) {
    static const char *const rk[] = {"type", "storage", "extractors", "storage_type", NULL};
    CT_GUARD(kbs_config__only(rvps, "attestation_service.rvps_config", rk, err));
    char *rtype = NULL;
    CT_GUARD(kbs_config__str(rvps, "type", "rvps_config", &rtype, err));
    st = !rtype || !strcmp(rtype, "BuiltIn") ? CT_OK
         : ct_fail(err, CT_EUNSUPPORTED, "rvps_config.type = \"%s\" is not supported (only BuiltIn)", rtype);
    free(rtype);
    CT_GUARD(st);
    char *rvps_type = NULL;
    CT_GUARD(kbs_config__str(rvps, "storage_type", "rvps_config", &rvps_type, err));
    if (rvps_type) {
      st = kbs_config_storage_type(rvps_type, "attestation_service.rvps_config.storage_type", &c->rvps_storage_type, err);
      free(rvps_type);
      CT_GUARD(st);
      c->rvps_storage_type_set = true;
    }
    json_t *storage = NULL;
    CT_GUARD(kbs_config__table(rvps, "storage", "attestation_service.rvps_config.storage", &storage, err));
    if (storage) {
      static const char *const sk[] = {"type", "file_path", "dir_path", NULL};
      CT_GUARD(kbs_config__only(storage, "attestation_service.rvps_config.storage", sk, err));
      CT_GUARD(kbs_config__str(storage, "dir_path", "rvps_config.storage", &c->rvps_store_dir, err));
      /* Trustee 1.0's LocalJson: the reference values are one JSON list file */
      CT_GUARD(kbs_config__str(storage, "file_path", "rvps_config.storage", &c->rvps_file, err));
      CT_ENSURE(!c->rvps_file || !c->rvps_store_dir, err, CT_EINVAL,
                "attestation_service.rvps_config.storage: file_path (a LocalJson file) and dir_path (a store "
                "directory) name two stores; keep one");
    }
    CT_ENSURE(!c->rvps_file || !c->rvps_storage_type_set, err, CT_EINVAL,
              "attestation_service.rvps_config: storage_type and storage.file_path name two stores; keep one");
  }
  json_t *vc = NULL;
  CT_GUARD(kbs_config__table(t, "verifier_config", "attestation_service.verifier_config", &vc, err));
  if (vc) {
    static const char *const vk[] = {"snp_verifier", "dcap_verifier", "tpm_verifier", NULL};
    CT_GUARD(kbs_config__only(vc, "attestation_service.verifier_config", vk, err));
    json_t *snp = NULL, *dcap = NULL, *tpm = NULL;
    CT_GUARD(kbs_config__table(vc, "snp_verifier", "verifier_config.snp_verifier", &snp, err));
    CT_GUARD(kbs_config__table(vc, "dcap_verifier", "verifier_config.dcap_verifier", &dcap, err));
    CT_GUARD(kbs_config__table(vc, "tpm_verifier", "verifier_config.tpm_verifier", &tpm, err));
    if (snp) {
      static const char *const k[] = {"vcek_sources", "insecure_test_only_roots", NULL};
      CT_GUARD(kbs_config__only(snp, "attestation_service.verifier_config.snp_verifier", k, err));
      CT_GUARD(kbs_config__str(snp, "insecure_test_only_roots", "snp_verifier", &c->snp_insecure_test_only_roots, err));
      json_t *src = json_object_get(snp, "vcek_sources");
      for (size_t i = 0; json_is_array(src) && i < json_array_size(src); i++) {
        json_t *e = json_array_get(src, i);
        const char *ty = json_string_value(json_object_get(e, "type"));
        if (ty && !strcmp(ty, "OfflineStore"))
          CT_GUARD(kbs_config__str(e, "path", "vcek_sources", &c->snp_vcek_offline_dir, err));
        else if (ty && !strcmp(ty, "KDS"))
          CT_GUARD(kbs_config__str(e, "base_url", "vcek_sources", &c->snp_kds_base_url, err));
        else
          return ct_fail(err, CT_EINVAL, "snp_verifier.vcek_sources[%zu].type must be KDS or OfflineStore", i);
      }
    }
    if (dcap) {
      static const char *const k[] = {"collateral_service", "collateral_dir", "tcb_update_type", NULL};
      CT_GUARD(kbs_config__only(dcap, "attestation_service.verifier_config.dcap_verifier", k, err));
      char *svc = NULL;
      CT_GUARD(kbs_config__str(dcap, "collateral_service", "dcap_verifier", &svc, err));
      if (svc && !strncmp(svc, "file://", 7)) {
        CT_GUARD(ct_strdup(svc + 7, &c->tdx_collateral_dir, err));
        free(svc);
      } else {
        c->tdx_pccs_url = svc;
      }
      CT_GUARD(kbs_config__str(dcap, "collateral_dir", "dcap_verifier", &c->tdx_collateral_dir, err));
    }
    if (tpm) {
      static const char *const k[] = {"trusted_ak_keys_dir", "max_trusted_ak_keys", NULL};
      CT_GUARD(kbs_config__only(tpm, "attestation_service.verifier_config.tpm_verifier", k, err));
      CT_GUARD(kbs_config__str(tpm, "trusted_ak_keys_dir", "tpm_verifier", &c->tpm_trusted_ak_keys_dir, err));
    }
  }
  return CT_OK;
}

CT_RESULT kbs_config_storage_type(const char *name, const char *where, kvs_type *out, ct_err *err) {
  static const struct {
    const char *name, *alias;
    kvs_type type;
  } types[] = {{"Memory", "memory", KVS_MEMORY},       {"LocalFs", "local_fs", KVS_LOCAL_FS},
               {"LocalJson", "local_json", KVS_LOCAL_JSON}, {"Postgres", "postgres", KVS_POSTGRES},
               {"Redis", "redis", KVS_REDIS}};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
    if (!strcmp(name, types[i].name) || !strcmp(name, types[i].alias)) {
      *out = types[i].type;
      return CT_OK;
    }
  }
  return ct_fail(err, CT_EUNSUPPORTED, "%s = \"%s\" is not supported (Memory, LocalFs, LocalJson, Postgres, Redis)",
                 where, name);
}

void kbs_config_kvs(const kbs_config *c, kvs_type type, kvs_config *out) {
  *out = (kvs_config){
      .type = type,
      .dir_path = type == KVS_LOCAL_FS ? c->local_fs_dir : c->local_json_dir,
      .pg_db = c->pg_db,
      .pg_username = c->pg_username,
      .pg_password = c->pg_password,
      .pg_host = c->pg_host,
      .pg_port = c->pg_port,
      .pg_url = c->pg_url,
      .redis_url = c->redis_url,
      .timeout_ms = c->storage_timeout_ms,
  };
}

static CT_RESULT kbs_config__storage(const json_t *doc, kbs_config *c, ct_err *err) {
  json_t *t = NULL;
  CT_GUARD(kbs_config__table(doc, "storage_backend", "storage_backend", &t, err));
  /* Upstream reads these from the environment so that credentials stay out of the file. */
  const char *pg_url = getenv("POSTGRES_URL"), *redis_url = getenv("REDIS_URL");
  if (pg_url && *pg_url) CT_GUARD(ct_strdup(pg_url, &c->pg_url, err));
  if (t) {
    static const char *const keys[] = {"storage_type", "backends", "session_storage_type", "session_key_file",
                                       "session_previous_key_files", "timeout_ms", NULL};
    CT_GUARD(kbs_config__only(t, "storage_backend", keys, err));
  }
  char *type = NULL;
  CT_GUARD(kbs_config__str(t, "storage_type", "storage_backend", &type, err));
  ct_status st = type ? kbs_config_storage_type(type, "storage_backend.storage_type", &c->storage_type, err) : CT_OK;
  free(type);
  CT_GUARD(st);
  unsigned timeout = 3000;
  CT_GUARD(kbs_config__uint(t, "timeout_ms", "storage_backend", 100, 600000, &timeout, err));
  c->storage_timeout_ms = timeout;
  json_t *backends = NULL;
  CT_GUARD(kbs_config__table(t, "backends", "storage_backend.backends", &backends, err));
  if (backends) {
    static const char *const bk[] = {"local_fs", "local_json", "postgres", "redis", NULL};
    CT_GUARD(kbs_config__only(backends, "storage_backend.backends", bk, err));
    json_t *fs = NULL, *js = NULL, *pg = NULL, *rd = NULL;
    CT_GUARD(kbs_config__table(backends, "local_fs", "storage_backend.backends.local_fs", &fs, err));
    CT_GUARD(kbs_config__table(backends, "local_json", "storage_backend.backends.local_json", &js, err));
    CT_GUARD(kbs_config__table(backends, "postgres", "storage_backend.backends.postgres", &pg, err));
    CT_GUARD(kbs_config__table(backends, "redis", "storage_backend.backends.redis", &rd, err));
    if (fs) {
      static const char *const k[] = {"dir_path", NULL};
      CT_GUARD(kbs_config__only(fs, "storage_backend.backends.local_fs", k, err));
      CT_GUARD(kbs_config__str(fs, "dir_path", "storage_backend.backends.local_fs", &c->local_fs_dir, err));
    }
    if (js) {
      static const char *const k[] = {"file_dir_path", NULL};
      CT_GUARD(kbs_config__only(js, "storage_backend.backends.local_json", k, err));
      CT_GUARD(kbs_config__str(js, "file_dir_path", "storage_backend.backends.local_json", &c->local_json_dir, err));
    }
    if (pg) {
      /* `table` exists in upstream's struct but is replaced by the namespace. */
      static const char *const k[] = {"db", "username", "password", "port", "host", "table", NULL};
      CT_GUARD(kbs_config__only(pg, "storage_backend.backends.postgres", k, err));
      CT_GUARD(kbs_config__str(pg, "db", "storage_backend.backends.postgres", &c->pg_db, err));
      CT_GUARD(kbs_config__str(pg, "username", "storage_backend.backends.postgres", &c->pg_username, err));
      CT_GUARD(kbs_config__str(pg, "password", "storage_backend.backends.postgres", &c->pg_password, err));
      CT_GUARD(kbs_config__str(pg, "host", "storage_backend.backends.postgres", &c->pg_host, err));
      CT_GUARD(kbs_config__uint(pg, "port", "storage_backend.backends.postgres", 1, 65535, &c->pg_port, err));
    }
    if (rd) {
      static const char *const k[] = {"url", NULL};
      CT_GUARD(kbs_config__only(rd, "storage_backend.backends.redis", k, err));
      CT_GUARD(kbs_config__str(rd, "url", "storage_backend.backends.redis", &c->redis_url, err));
    }
  }
  if (redis_url && *redis_url) {
    free(c->redis_url);
    c->redis_url = NULL;
    CT_GUARD(ct_strdup(redis_url, &c->redis_url, err));
  }
  if (!c->local_fs_dir) CT_GUARD(ct_strdup("/opt/confidential-containers/storage/local_fs", &c->local_fs_dir, err));
  if (!c->local_json_dir)
    CT_GUARD(ct_strdup("/opt/confidential-containers/storage/local_json", &c->local_json_dir, err));
  if (c->storage_type == KVS_LOCAL_FS) CT_GUARD(ct_strdup(c->local_fs_dir, &c->storage_dir, err));
  if (c->storage_type == KVS_LOCAL_JSON) CT_GUARD(ct_strdup(c->local_json_dir, &c->storage_dir, err));

  char *sess = NULL;
  CT_GUARD(kbs_config__str(t, "session_storage_type", "storage_backend", &sess, err));
  c->session_storage_type = c->storage_type;
  c->session_storage_type_set = sess != NULL;
  if (sess && !strcmp(sess, "Stateless")) c->session_stateless = true;
  else if (sess) st = kbs_config_storage_type(sess, "storage_backend.session_storage_type", &c->session_storage_type, err);
  free(sess);
  CT_GUARD(st);
  CT_GUARD(kbs_config__str(t, "session_key_file", "storage_backend", &c->session_key_file, err));
  CT_GUARD(kbs_config__strs(t, "session_previous_key_files", "storage_backend", &c->session_previous_key_files,
                            &c->n_session_previous_key_files, err));
  CT_ENSURE(!c->n_session_previous_key_files || c->session_key_file || getenv("KBS_SESSION_KEY_FILE"), err, CT_EINVAL,
            "storage_backend.session_previous_key_files needs session_key_file (the current key)");
  return CT_OK;
}

/* "{repo}/{type}/{tag}" style templates: only those three names, braces balanced. */
static CT_RESULT kbs_config__template(const char *t, const char *what, ct_err *err) {
  CT_ENSURE(*t && strlen(t) <= 512, err, CT_EINVAL, "%s must be 1 to 512 characters", what);
  for (const char *p = t; *p; p++) {
    if (*p == '}') return ct_fail(err, CT_EINVAL, "%s: unmatched '}'", what);
    if (*p != '{') continue;
    if (!strncmp(p, "{repo}", 6)) p += 5;
    else if (!strncmp(p, "{type}", 6)) p += 5;
    else if (!strncmp(p, "{tag}", 5)) p += 4;
    else return ct_fail(err, CT_EINVAL, "%s: only {repo}, {type} and {tag} may be substituted", what);
  }
  return CT_OK;
}

static CT_RESULT kbs_config__vault(const json_t *e, size_t i, kbs_config *c, ct_err *err) {
  kbs_vault_config *v = &c->vault;
  char where[64];
  snprintf(where, sizeof where, "plugins[%zu] (Vault)", i);
  CT_GUARD(kbs_config__str(e, "vault_url", where, &v->url, err));
  CT_ENSURE(v->url && (!strncmp(v->url, "http://", 7) || !strncmp(v->url, "https://", 8)), err, CT_EINVAL,
            "%s needs vault_url = \"http(s)://host:port\"", where);
  CT_GUARD(kbs_config__str(e, "token", where, &v->token, err));
  char *token_file = NULL;
  CT_GUARD(kbs_config__str(e, "token_file", where, &token_file, err));
  if (token_file) {
    CT_ENSURE(!v->token, err, CT_EINVAL, "%s: give token or token_file, not both", where);
    uint8_t *data = NULL;
    size_t len = 0;
    ct_status st = ct_file_read(token_file, 4096, &data, &len, err);
    if (st != CT_OK) ct_err_prefix(err, "%s.token_file: ", where);
    free(token_file);
    CT_GUARD(st);
    while (len && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' ')) data[--len] = 0;
    v->token = (char *)data;
  }
  if (!v->token && getenv("VAULT_TOKEN")) CT_GUARD(ct_strdup(getenv("VAULT_TOKEN"), &v->token, err));
  CT_ENSURE(v->token && *v->token, err, CT_EINVAL, "%s needs a token (token, token_file or VAULT_TOKEN)", where);
  for (const char *p = v->token; *p; p++)
    CT_ENSURE(*p > ' ' && *p < 127, err, CT_EINVAL, "%s: the token holds a character that cannot go in a header", where);
  CT_GUARD(kbs_config__str(e, "mount_path", where, &v->mount_path, err));
  if (!v->mount_path) CT_GUARD(ct_strdup("secret", &v->mount_path, err));
  v->verify_ssl = true;
  CT_GUARD(kbs_config__bool(e, "verify_ssl", where, &v->verify_ssl, err));
  CT_GUARD(kbs_config__strs(e, "ca_certs", where, &v->ca_certs, &v->n_ca_certs, err));
  v->kv_version = 1;
  CT_GUARD(kbs_config__uint(e, "kv_version", where, 1, 2, &v->kv_version, err));
  CT_GUARD(kbs_config__str(e, "secret_path", where, &v->secret_path, err));
  CT_GUARD(kbs_config__str(e, "secret_field", where, &v->secret_field, err));
  if (!v->secret_path) CT_GUARD(ct_strdup("{repo}/{type}/{tag}", &v->secret_path, err));
  if (!v->secret_field) CT_GUARD(ct_strdup("data", &v->secret_field, err));
  CT_GUARD(kbs_config__template(v->secret_path, "secret_path", err));
  CT_GUARD(kbs_config__template(v->secret_field, "secret_field", err));
  CT_GUARD(kbs_config__uint(e, "cache_ttl_seconds", where, 0, 24 * 3600, &v->cache_ttl_s, err));
  v->timeout_ms = 5000;
  CT_GUARD(kbs_config__uint(e, "timeout_ms", where, 100, 120000, &v->timeout_ms, err));
  for (const char *p = v->mount_path; *p; p++)
    CT_ENSURE((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
                  *p == '-' || *p == '/' || *p == '.',
              err, CT_EINVAL, "%s.mount_path has a character outside [A-Za-z0-9_./-]", where);
  return CT_OK;
}

static CT_RESULT kbs_config__plugins(const json_t *doc, kbs_config *c, ct_err *err) {
  json_t *p = json_object_get(doc, "plugins");
  if (!p) return CT_OK;
  CT_ENSURE(json_is_array(p), err, CT_EINVAL, "[[plugins]] must be an array of tables");
  for (size_t i = 0; i < json_array_size(p); i++) {
    json_t *e = json_array_get(p, i);
    CT_ENSURE(json_is_object(e), err, CT_EINVAL, "plugins[%zu] must be a table", i);
    const char *name = json_string_value(json_object_get(e, "name"));
    CT_ENSURE(name, err, CT_EINVAL, "plugins[%zu] needs a name", i);
    CT_ENSURE(!strcmp(name, "resource"), err, CT_EUNSUPPORTED,
              "plugins[%zu]: plugin \"%s\" is not supported (only resource)", i, name);
    CT_ENSURE(!c->resource_plugin, err, CT_EINVAL, "plugins[%zu]: the resource plugin is configured twice", i);
    /* The backend is named by storage_backend_type (upstream's docs), `backend` (its serde tag in
     * some releases) or, in older configs, `type` ("LocalFs" + dir_path, or "Vault"). */
    const char *tag = NULL, *tag_key = NULL;
    static const char *const tag_keys[] = {"storage_backend_type", "backend", "type"};
    for (size_t k = 0; k < 3; k++) {
      json_t *v = json_object_get(e, tag_keys[k]);
      if (!v) continue;
      CT_ENSURE(json_is_string(v) && !tag, err, CT_EINVAL,
                "plugins[%zu]: give the backend once, as a string (storage_backend_type)", i);
      tag = json_string_value(v);
      tag_key = tag_keys[k];
    }
    if (!tag || !strcmp(tag, "KvStorage") || !strcmp(tag, "kvstorage")) {
      static const char *const k[] = {"name", "storage_backend_type", "backend", NULL};
      CT_GUARD(kbs_config__only(e, "plugins", k, err));
      c->resource_backend = KBS_RESOURCE_KVSTORAGE;
    } else if (!strcmp(tag, "LocalFs") && !strcmp(tag_key, "type")) {
      static const char *const k[] = {"name", "type", "dir_path", NULL};
      CT_GUARD(kbs_config__only(e, "plugins", k, err));
      CT_GUARD(kbs_config__str(e, "dir_path", "plugins", &c->resource_dir, err));
      c->resource_backend = KBS_RESOURCE_KVSTORAGE;
    } else if (!strcmp(tag, "Vault") || !strcmp(tag, "vault")) {
      static const char *const k[] = {"name", "storage_backend_type", "backend", "type", "vault_url", "token",
                                      "token_file", "mount_path", "verify_ssl", "ca_certs", "kv_version",
                                      "secret_path", "secret_field", "cache_ttl_seconds", "timeout_ms", NULL};
      CT_GUARD(kbs_config__only(e, "plugins (Vault)", k, err));
      CT_GUARD(kbs_config__vault(e, i, c, err));
      c->resource_backend = KBS_RESOURCE_VAULT;
    } else {
      return ct_fail(err, CT_EUNSUPPORTED, "plugins[%zu].%s = \"%s\" is not supported (KvStorage, Vault)", i, tag_key,
                     tag);
    }
    c->resource_plugin = true;
  }
  return CT_OK;
}

static CT_RESULT kbs_config__audit(const json_t *doc, kbs_config *c, ct_err *err) {
  json_t *t = NULL;
  CT_GUARD(kbs_config__table(doc, "audit", "audit", &t, err));
  if (!t) return CT_OK;
  static const char *const keys[] = {"path", "storage", "replica", NULL};
  CT_GUARD(kbs_config__only(t, "audit", keys, err));
  CT_GUARD(kbs_config__str(t, "path", "audit", &c->audit_path, err));
  CT_GUARD(kbs_config__bool(t, "storage", "audit", &c->audit_storage, err));
  CT_GUARD(kbs_config__str(t, "replica", "audit", &c->audit_replica, err));
  CT_ENSURE(!c->audit_path != !c->audit_storage, err, CT_EINVAL,
            "[audit] needs either path = FILE or storage = true (the [storage_backend])");
  return CT_OK;
}

static CT_RESULT kbs_config__policy_engine(const json_t *doc, kbs_config *c, ct_err *err) {
  json_t *t = NULL;
  CT_GUARD(kbs_config__table(doc, "policy_engine", "policy_engine", &t, err));
  if (!t) return CT_OK;
  static const char *const keys[] = {"policy_path", NULL};
  CT_GUARD(kbs_config__only(t, "policy_engine", keys, err));
  return kbs_config__str(t, "policy_path", "policy_engine", &c->resource_policy_path, err);
}

CT_RESULT kbs_config_from_json(const json_t *doc, kbs_config **out, ct_err *err) {
  CT_ENSURE(json_is_object(doc), err, CT_EINVAL, "configuration must be a table");
  static const char *const top[] = {"http_server", "admin", "attestation_token", "attestation_service",
                                    "storage_backend", "plugins", "policy_engine", "audit", NULL};
  CT_GUARD(kbs_config__only(doc, "top level", top, err));
  kbs_config *c = calloc(1, sizeof *c);
  CT_ENSURE(c, err, CT_ENOMEM, "out of memory");
  c->as_timeout_min = 5;
  c->token_duration_min = 5;
  c->verbose_token = true;
  c->storage_type = KVS_MEMORY;
  ct_status st;
  CT_GUARD_GOTO(st, kbs_config__http(doc, c, err), fail);
  CT_GUARD_GOTO(st, kbs_config__admin(doc, c, err), fail);
  CT_GUARD_GOTO(st, kbs_config__token(doc, c, err), fail);
  CT_GUARD_GOTO(st, kbs_config__as(doc, c, err), fail);
  CT_GUARD_GOTO(st, kbs_config__storage(doc, c, err), fail);
  CT_GUARD_GOTO(st, kbs_config__plugins(doc, c, err), fail);
  CT_GUARD_GOTO(st, kbs_config__policy_engine(doc, c, err), fail);
  CT_GUARD_GOTO(st, kbs_config__audit(doc, c, err), fail);
  /* Trustee refuses to start when it could not verify any attestation token. */
  CT_ENSURE_GOTO(st, c->n_trusted_certs_paths || c->n_trusted_jwk_sets || c->insecure_header_jwk, fail, err,
                 CT_EINVAL,
                 "[attestation_token] configures no trust anchor (trusted_certs_paths, trusted_jwk_sets) "
                 "and insecure_header_jwk = false: no attestation token could ever be verified");
  /* As Trustee: without configured vcek_sources the SNP verifier asks AMD's KDS. */
  if (c->as_enabled && !c->snp_kds_base_url && !c->snp_vcek_offline_dir)
    CT_GUARD_GOTO(st, ct_strdup("https://kdsintf.amd.com", &c->snp_kds_base_url, err), fail);
  if (c->issuer_name == NULL) CT_GUARD_GOTO(st, ct_strdup("CoCo-Attestation-Service", &c->issuer_name, err), fail);
  if (c->developer_name == NULL)
    CT_GUARD_GOTO(st, ct_strdup("https://confidentialcontainers.org", &c->developer_name, err), fail);
  if (c->build_name == NULL) CT_GUARD_GOTO(st, ct_strdup("coco-trust attestation-service 0.1.0", &c->build_name, err), fail);
  if (c->profile_name == NULL)
    CT_GUARD_GOTO(st, ct_strdup("tag:github.com,2024:confidential-containers/Trustee", &c->profile_name, err), fail);
  *out = c;
  return CT_OK;
fail:
  kbs_config_free(c);
  return st;
}

CT_RESULT kbs_config_load(const char *path, kbs_config **out, ct_err *err) {
  json_t *doc = NULL;
  if (toml_parse_file(path, &doc, err) != CT_OK) return ct_err_prefix(err, "%s: ", path);
  ct_status st = kbs_config_from_json(doc, out, err);
  json_decref(doc);
  if (st != CT_OK) ct_err_prefix(err, "%s: ", path);
  return st;
}

static void kbs_config__free_strs(char **v, size_t n) {
  for (size_t i = 0; v && i < n; i++) free(v[i]);
  free(v);
}

void kbs_config_free(kbs_config *c) {
  if (!c) return;
  kbs_config__free_strs(c->sockets, c->n_sockets);
  free(c->private_key);
  free(c->certificate);
  for (size_t i = 0; c->idps && i < c->n_idps; i++) {
    free(c->idps[i].issuer);
    free(c->idps[i].audience);
    free(c->idps[i].public_key_uri);
    free(c->idps[i].jwk_set_uri);
  }
  free(c->idps);
  for (size_t i = 0; c->acls && i < c->n_acls; i++) {
    free(c->acls[i].role);
    free(c->acls[i].allowed_endpoints);
  }
  free(c->acls);
  free(c->auth_public_key);
  kbs_config__free_strs(c->trusted_certs_paths, c->n_trusted_certs_paths);
  kbs_config__free_strs(c->trusted_jwk_sets, c->n_trusted_jwk_sets);
  kbs_config__free_strs(c->extra_teekey_paths, c->n_extra_teekey_paths);
  free(c->issuer_name);
  free(c->developer_name);
  free(c->build_name);
  free(c->profile_name);
  free(c->signer_key_path);
  free(c->signer_cert_path);
  free(c->rvps_store_dir);
  free(c->rvps_file);
  free(c->as_policy_dir);
  free(c->snp_vcek_offline_dir);
  free(c->snp_kds_base_url);
  free(c->tdx_collateral_dir);
  free(c->tdx_pccs_url);
  free(c->tpm_trusted_ak_keys_dir);
  free(c->snp_insecure_test_only_roots);
  free(c->storage_dir);
  free(c->local_fs_dir);
  free(c->local_json_dir);
  free(c->pg_db);
  free(c->pg_username);
  if (c->pg_password) ct_wipe(c->pg_password, strlen(c->pg_password));
  free(c->pg_password);
  free(c->pg_host);
  if (c->pg_url) ct_wipe(c->pg_url, strlen(c->pg_url));
  free(c->pg_url);
  if (c->redis_url) ct_wipe(c->redis_url, strlen(c->redis_url));
  free(c->redis_url);
  free(c->session_key_file);
  kbs_config__free_strs(c->session_previous_key_files, c->n_session_previous_key_files);
  free(c->vault.url);
  if (c->vault.token) ct_wipe(c->vault.token, strlen(c->vault.token));
  free(c->vault.token);
  free(c->vault.mount_path);
  kbs_config__free_strs(c->vault.ca_certs, c->vault.n_ca_certs);
  free(c->vault.secret_path);
  free(c->vault.secret_field);
  free(c->audit_path);
  free(c->audit_replica);
  free(c->resource_dir);
  free(c->resource_policy_path);
  free(c);
}
