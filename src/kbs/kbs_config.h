/*
 * kbs_config.h - the KBS configuration: Trustee's kbs-config.toml, unchanged, for what we support.
 *
 * Supported sections: [http_server], [admin] (authorization_mode or the older insecure_api /
 * auth_public_key form), [attestation_token], [attestation_service] (coco_as_builtin),
 * [storage_backend], [[plugins]] (resource), [policy_engine]. An unknown key or a bad value is an
 * error naming it. Relative paths are used as given (relative to the working directory), as
 * Trustee does.
 */
#ifndef KBS_CONFIG_H
#define KBS_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "ct_status.h"
#include "kvs.h"

typedef enum kbs_admin_mode {
  KBS_ADMIN_DENY_ALL,
  KBS_ADMIN_INSECURE_ALLOW_ALL,
  KBS_ADMIN_AUTHENTICATED, /* bearer JWT from identity_providers + regex ACL on the role */
  KBS_ADMIN_LEGACY_KEY,    /* Trustee 1.0: any unexpired JWT signed by auth_public_key */
} kbs_admin_mode;

typedef struct kbs_identity_provider {
  char *issuer;         /* optional: must equal the token's iss */
  char *audience;       /* optional: must be among the token's aud */
  char *public_key_uri; /* PEM file (path or file://) */
  char *jwk_set_uri;    /* JWKS file (path or file://) */
} kbs_identity_provider;

typedef struct kbs_acl_rule {
  char *role;
  char *allowed_endpoints; /* regex anchored ^/kbs ... $ */
} kbs_acl_rule;

typedef struct kbs_config {
  /* [http_server] */
  char **sockets;
  size_t n_sockets;
  bool insecure_http;
  char *private_key;
  char *certificate;
  size_t payload_request_size_mib;
  unsigned worker_count;

  /* [admin] */
  kbs_admin_mode admin_mode;
  kbs_identity_provider *idps;
  size_t n_idps;
  kbs_acl_rule *acls;
  size_t n_acls;
  char *auth_public_key; /* legacy form */

  /* [attestation_token] */
  char **trusted_certs_paths;
  size_t n_trusted_certs_paths;
  char **trusted_jwk_sets;
  size_t n_trusted_jwk_sets;
  char **extra_teekey_paths;
  size_t n_extra_teekey_paths;
  bool insecure_header_jwk;

  /* [attestation_service] */
  bool as_enabled;
  bool enable_sample_tee;        /* the sample TEE takes evidence anyone can forge: off unless asked */
  unsigned as_timeout_min;       /* session lifetime */
  unsigned token_duration_min;
  char *issuer_name;
  char *developer_name;
  char *build_name;
  char *profile_name;
  bool verbose_token;
  char *signer_key_path;
  char *signer_cert_path;
  char *rvps_store_dir;          /* optional LocalJson/LocalFs store for reference values */
  char *snp_vcek_offline_dir;
  char *snp_kds_base_url;
  char *tdx_collateral_dir;
  char *tdx_pccs_url;
  char *tpm_trusted_ak_keys_dir;
  char *snp_insecure_test_only_roots; /* TESTS ONLY: see as_verifier_config */

  /* [storage_backend] */
  kvs_type storage_type;
  char *storage_dir;

  /* [[plugins]] resource */
  bool resource_plugin;
  char *resource_dir; /* legacy `type = "LocalFs", dir_path = ...` on the plugin */

  /* [policy_engine] */
  char *resource_policy_path;
} kbs_config;

/* Builds a configuration from the parsed TOML document. */
CT_RESULT kbs_config_from_json(const json_t *doc, kbs_config **out, ct_err *err);
/* Reads and parses a TOML file. */
CT_RESULT kbs_config_load(const char *path, kbs_config **out, ct_err *err);
void kbs_config_free(kbs_config *c);

#endif
