/*
 * kvs.h - namespaced key-value storage (Trustee's key-value-storage crate).
 *
 * Backends: Memory, LocalFs (one file per key, Trustee's layout), LocalJson (one <ns>.json per
 * namespace), Postgres (libpq; one table per namespace, as upstream) and Redis (hiredis; keys
 * "<ns>:<key>", as upstream; any server speaking the Redis protocol, Valkey included).
 *
 * Namespaces in use: "repository" (resources), "kbs_protocol_session", "attestation_service_policy",
 * "reference_value", "kbs". Keys are limited to [A-Za-z0-9._/-], at most KVS_MAX_KEY bytes, and
 * never contain "..". Values are opaque bytes of at most KVS_MAX_VALUE bytes.
 *
 * Every operation on a remote backend is bounded by the configured timeout (connect, send and
 * reply together) and fails with CT_EIO and a message naming the backend and the operation
 * ("postgres: get repository/a/b/c: no reply within 3000 ms"); values never appear in messages.
 * A broken connection is dropped and the next operation reconnects, so a backend that comes
 * back is used again without a restart. Writes are atomic: a reader sees the old value or the
 * new one, never a mix (rename(2) for LocalFs/LocalJson, one statement for PostgreSQL, one
 * command for Redis).
 *
 * Remote backends block the calling thread for up to the timeout: call them from threads that
 * may wait (the KBS runs such requests on its storage pool, never on its compute pool).
 *
 * All functions are thread-safe.
 */
#ifndef KVS_H
#define KVS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

#define KVS_MAX_KEY 512
#define KVS_MAX_VALUE (64u << 20)
#define KVS_MAX_LIST 100000u

typedef enum kvs_type { KVS_MEMORY, KVS_LOCAL_FS, KVS_LOCAL_JSON, KVS_POSTGRES, KVS_REDIS } kvs_type;

typedef struct kvs_config {
  kvs_type type;
  const char *dir_path; /* LocalFs: one file per key; LocalJson: one <ns>.json per namespace */
  /* Postgres (upstream's backends.postgres keys). `url` (a libpq connection URI, upstream's
   * POSTGRES_URL) replaces the others when set. */
  const char *pg_db, *pg_username, *pg_password, *pg_host;
  unsigned pg_port;
  const char *pg_url;
  /* Redis: redis://[user:password@]host[:port][/db] or unix:///path/to/socket[?db=N]. */
  const char *redis_url;
  unsigned timeout_ms; /* remote backends: bound on one operation; 0 = 3000 */
  unsigned pool_size;  /* remote backends: connections kept; 0 = 4 */
} kvs_config;

typedef struct kvs kvs;

CT_RESULT kvs_open(const kvs_config *cfg, kvs **out, ct_err *err);
void kvs_close(kvs *s);

/* "Memory", "LocalFs", "LocalJson", "Postgres" or "Redis". */
const char *kvs_type_name(kvs_type t);
kvs_type kvs_get_type(const kvs *s);
/* True for backends several processes can share safely (LocalFs on a shared directory,
 * Postgres, Redis): the KBS keeps replica-wide state there. */
bool kvs_is_shared(const kvs *s);

/* Checks a key against the allowed alphabet and length; used by callers to reject ids early. */
CT_RESULT kvs_check_key(const char *key, ct_err *err);

/* Stores a copy of value[0..len) under ns/key, replacing any previous value. */
CT_RESULT kvs_put(kvs *s, const char *ns, const char *key, const void *value, size_t len, ct_err *err);
/* Stores value under ns/key only when no live entry exists (set-if-absent: PostgreSQL INSERT ...
 * ON CONFLICT, Redis SET NX, LocalFs link(2) of a complete temporary file). *inserted tells
 * whether this call created it. `ttl_s` > 0 makes the entry expire after that many seconds
 * (gets stop seeing it; kvs_sweep removes it); 0 keeps it. */
CT_RESULT kvs_put_nx(kvs *s, const char *ns, const char *key, const void *value, size_t len, unsigned ttl_s,
                     bool *inserted, ct_err *err);
/* Like kvs_put with an expiry (ttl_s > 0). */
CT_RESULT kvs_put_ttl(kvs *s, const char *ns, const char *key, const void *value, size_t len, unsigned ttl_s,
                      ct_err *err);
/* Fetches a copy (caller frees with free(); NUL-terminated, not counted). CT_ENOTFOUND if absent. */
CT_RESULT kvs_get(kvs *s, const char *ns, const char *key, uint8_t **value, size_t *len, ct_err *err);
/* Removes ns/key; CT_ENOTFOUND if absent. */
CT_RESULT kvs_delete(kvs *s, const char *ns, const char *key, ct_err *err);
/* Lists the keys of a namespace as a new JSON array of strings, sorted (at most KVS_MAX_LIST). */
CT_RESULT kvs_list(kvs *s, const char *ns, json_t **keys, ct_err *err);
/* Removes expired entries of a namespace (a no-op where the backend expires them itself). */
CT_RESULT kvs_sweep(kvs *s, const char *ns, ct_err *err);
/* Checks that the backend answers (PostgreSQL SELECT 1, Redis PING, the directory is writable). */
CT_RESULT kvs_ping(kvs *s, ct_err *err);
/* Hands the storage directory and what it holds (two levels) to uid:gid, before the process
 * drops root, and takes group and other permissions away (entries made by older versions or by
 * hand become 0700 / 0600). Symbolic links are neither followed nor changed. A no-op for the
 * other backends. */
CT_RESULT kvs_chown(kvs *s, unsigned uid, unsigned gid, ct_err *err);

#endif
