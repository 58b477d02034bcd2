/*
 * vault_kv.h - resources read from HashiCorp Vault / OpenBao KV secrets engines (Trustee's Vault
 * resource backend, plus KV v2 and path/field templates).
 *
 * A resource repo/type/tag is the field secret_field of the secret secret_path under the mount
 * mount_path, both templates over {repo}, {type} and {tag}. Upstream's layout (KV v1, path
 * "{repo}/{type}/{tag}", field "data") is the default; the validated pattern's is KV v2 with
 * secret_path = "hub/{type}", secret_field = "{tag}" (kbs:///default/kbsres1/key3 = field key3 of
 * secret/hub/kbsres1). A string field is served as its bytes (as upstream); any other JSON value
 * as its compact JSON text.
 *
 * Reads go through a ct_http pool: vault_kv_get_async never blocks the caller (its completion
 * runs on the pool's I/O thread) and is bounded by timeout_ms, queueing included. Values may be
 * cached for cache_ttl_s (0: every read asks Vault). Errors name "vault", the operation and the
 * secret path, never the token or a value.
 */
#ifndef VAULT_KV_H
#define VAULT_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

typedef struct vault_kv_config {
  const char *url;          /* http(s)://host:port */
  const char *token;
  const char *mount_path;   /* "secret" */
  bool verify_ssl;
  const char *const *ca_certs; /* PEM files trusted for the server's certificate */
  size_t n_ca_certs;
  unsigned kv_version;      /* 1 or 2 */
  const char *secret_path;  /* "{repo}/{type}/{tag}" */
  const char *secret_field; /* "data" */
  unsigned cache_ttl_s;
  unsigned timeout_ms;
} vault_kv_config;

typedef struct vault_kv vault_kv;

CT_RESULT vault_kv_new(const vault_kv_config *cfg, vault_kv **out, ct_err *err);
void vault_kv_free(vault_kv *v);

/* Completion of an asynchronous read: on CT_OK the callee owns `value` (free after ct_wipe);
 * otherwise `err` says why (CT_ENOTFOUND: no such secret or field). Runs on the HTTP pool's I/O
 * thread, or in the caller when the value came from the cache: it must not block. */
typedef void (*vault_kv_done_fn)(void *ud, ct_status st, uint8_t *value, size_t len, const ct_err *err);

/* Starts a read. On CT_OK `done` runs exactly once; on failure (queue full) it never runs. */
CT_RESULT vault_kv_get_async(vault_kv *v, const char *repo, const char *type, const char *tag, vault_kv_done_fn done,
                             void *ud, ct_err *err);
/* Blocking read (callers that may wait: tests, tools). */
CT_RESULT vault_kv_get(vault_kv *v, const char *repo, const char *type, const char *tag, uint8_t **value, size_t *len,
                       ct_err *err);
/* Blocking write of the whole secret {field: value}. Refused when secret_field is a template
 * (several resources share one secret; writing one would drop the others) and for values that
 * are not UTF-8 text (a KV field holds a string), as upstream. */
CT_RESULT vault_kv_put(vault_kv *v, const char *repo, const char *type, const char *tag, const void *value, size_t len,
                       ct_err *err);
/* Vault answers, is unsealed and accepts the token (blocking; for /readyz probes). */
CT_RESULT vault_kv_ping(vault_kv *v, ct_err *err);

#endif
