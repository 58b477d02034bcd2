/*
 * kbs_config.h - the KBS configuration: Trustee's kbs-config.toml, unchanged, for what we support.
 *
 * Supported sections: [http_server], [admin] (authorization_mode or the older insecure_api /
 * auth_public_key form), [attestation_token], [attestation_service] (coco_as_builtin),
 * [storage_backend] (Memory, LocalFs, LocalJson, Postgres, Redis; session_storage_type),
 * [[plugins]] (resource: KvStorage or Vault), [policy_engine], and our [audit]. An unknown key or
 * a bad value is an error naming it. Relative paths are used as given (relative to the working
 * directory), as Trustee does. docs/storage.md describes the storage keys.
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

typedef enum kbs_resource_backend { KBS_RESOURCE_KVSTORAGE, KBS_RESOURCE_VAULT } kbs_resource_backend;

/* [[plugins]] name = "resource", storage_backend_type = "Vault": upstream's keys (vault_url,
 * token, mount_path, verify_ssl, ca_certs) and ours (the rest). */
typedef struct kbs_vault_config {
  char *url;
  char *token;          /* secret: never logged; from token, token_file or VAULT_TOKEN */
  char *mount_path;     /* "secret" */
  bool verify_ssl;      /* default true (upstream: false); false needs an explicit setting */
  char **ca_certs;
  size_t n_ca_certs;
  unsigned kv_version;  /* 1 (upstream) or 2 */
  char *secret_path;    /* template over {repo} {type} {tag}; "{repo}/{type}/{tag}" */
  char *secret_field;   /* template; "data" */
  unsigned cache_ttl_s; /* 0: no cache */
  unsigned timeout_ms;  /* one fetch, queueing included; 5000 */
} kbs_vault_config;

typedef struct kbs_config {
  /* [http_server] */
  char **sockets;
  size_t n_sockets;
  bool insecure_http;
  bool reuse_port;               /* replicas share the listening port (SO_REUSEPORT) */
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
  char *rvps_file;               /* rvps_config.storage.file_path: Trustee's LocalJson list file */
  char *as_policy_dir;           /* attestation_token_broker.policy_dir: policies in <dir>/opa */
  char *snp_vcek_offline_dir;
  char *snp_kds_base_url;
  char *tdx_collateral_dir;
  char *tdx_pccs_url;
  char *tpm_trusted_ak_keys_dir;
  char *snp_insecure_test_only_roots; /* TESTS ONLY: see as_verifier_config */

  /* [storage_backend] */
  kvs_type storage_type;
  char *storage_dir;      /* the selected local backend's directory */
  char *local_fs_dir;     /* backends.local_fs.dir_path (for per-component type overrides) */
  char *local_json_dir;   /* backends.local_json.file_dir_path */
  char *pg_db, *pg_username, *pg_password, *pg_host; /* backends.postgres */
  unsigned pg_port;
  char *pg_url;           /* POSTGRES_URL (environment), as upstream */
  char *redis_url;        /* backends.redis.url, or REDIS_URL (environment) */
  unsigned storage_timeout_ms;  /* our timeout_ms: bound on one remote storage operation */
  /* session_storage_type: "Stateless" (cookie sealed with session_key_file), or a storage type
   * (upstream's meaning: where sessions live; here: where replicas share the cookie-sealing key
   * and the single-use nonce records). Unset: storage_type, as upstream. */
  bool session_stateless;
  bool session_storage_type_set; /* given explicitly (not defaulted to storage_type) */
  kvs_type session_storage_type;
  char *session_key_file;
  char **session_previous_key_files; /* older keys, still accepted for opening cookies */
  size_t n_session_previous_key_files;
  bool rvps_storage_type_set;        /* attestation_service.rvps_config.storage_type override */
  kvs_type rvps_storage_type;

  /* [[plugins]] resource */
  bool resource_plugin;
  char *resource_dir; /* legacy `type = "LocalFs", dir_path = ...` on the plugin */
  kbs_resource_backend resource_backend;
  kbs_vault_config vault;

  /* [audit] (ours): a file, or chains in the storage backend */
  char *audit_path;
  bool audit_storage;
  char *audit_replica; /* name of this replica's chain; default: the host name */

  /* [policy_engine] */
  char *resource_policy_path;
} kbs_config;

/* Fills a storage configuration of the given type from [storage_backend] (backends reused for
 * per-component overrides, as upstream). Strings stay owned by the configuration. */
void kbs_config_kvs(const kbs_config *c, kvs_type type, kvs_config *out);
/* Parses a storage type name as upstream does ("LocalFs" or "local_fs", ...). */
CT_RESULT kbs_config_storage_type(const char *name, const char *where, kvs_type *out, ct_err *err);

/* Builds a configuration from the parsed TOML document. */
CT_RESULT kbs_config_from_json(const json_t *doc, kbs_config **out, ct_err *err);
/* Reads and parses a TOML file. */
CT_RESULT kbs_config_load(const char *path, kbs_config **out, ct_err *err);
void kbs_config_free(kbs_config *c);

#endif
