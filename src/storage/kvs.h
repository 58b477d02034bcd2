/*
 * kvs.h - namespaced key-value storage (Trustee's key-value-storage crate).
 *
 * Namespaces in use: "repository" (resources), "kbs_protocol_session", "attestation_service_policy",
 * "reference_value", "kbs". Keys are limited to [A-Za-z0-9._/-], at most KVS_MAX_KEY bytes, and
 * never contain "..". Values are opaque bytes of at most KVS_MAX_VALUE bytes.
 *
 * All functions are thread-safe.
 */
#ifndef KVS_H
#define KVS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

#define KVS_MAX_KEY 512
#define KVS_MAX_VALUE (64u << 20)

typedef enum kvs_type { KVS_MEMORY, KVS_LOCAL_FS, KVS_LOCAL_JSON } kvs_type;

typedef struct kvs_config {
  kvs_type type;
  const char *dir_path; /* LocalFs: one file per key; LocalJson: one <ns>.json per namespace */
} kvs_config;

typedef struct kvs kvs;

CT_RESULT kvs_open(const kvs_config *cfg, kvs **out, ct_err *err);
void kvs_close(kvs *s);

/* Checks a key against the allowed alphabet and length; used by callers to reject ids early. */
CT_RESULT kvs_check_key(const char *key, ct_err *err);

/* Stores a copy of value[0..len) under ns/key, replacing any previous value. */
CT_RESULT kvs_put(kvs *s, const char *ns, const char *key, const void *value, size_t len, ct_err *err);
/* Fetches a copy (caller frees with free(); NUL-terminated, not counted). CT_ENOTFOUND if absent. */
CT_RESULT kvs_get(kvs *s, const char *ns, const char *key, uint8_t **value, size_t *len, ct_err *err);
/* Removes ns/key; CT_ENOTFOUND if absent. */
CT_RESULT kvs_delete(kvs *s, const char *ns, const char *key, ct_err *err);
/* Hands the storage directory and what it holds (two levels) to uid:gid, before the process
 * drops root. A no-op for the memory backend. */
CT_RESULT kvs_chown(kvs *s, unsigned uid, unsigned gid, ct_err *err);
/* Lists the keys of a namespace as a new JSON array of strings, sorted. */
CT_RESULT kvs_list(kvs *s, const char *ns, json_t **keys, ct_err *err);

#endif
