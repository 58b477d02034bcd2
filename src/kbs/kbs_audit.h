/*
 * kbs_audit.h - the KBS audit log: every resource release and refusal and every admin write, one
 * JSON object per line, hash-chained (beyond upstream, which keeps none).
 *
 * A line holds {"seq", "time", "event", "tee", "tee_key", "claims_sha256", "path", "decision",
 * "reason", "prev", "hash"} (absent members omitted): "hash" is the SHA-256 (hex) of the line's
 * RFC 8785 (JCS) serialisation without "hash", and "prev" the previous line's "hash" (64 zeros
 * for the first). Secret values never appear: a release records which resource went to which
 * TEE key (RFC 7638 thumbprint) under which appraisal (digest of the token's claims).
 *
 * Checking (kbs_audit_verify_file, `kbs audit verify FILE`) names the first broken line: an
 * edited line fails its own hash, a deleted line shows as a gap in "seq", a reordered or
 * substituted one as a "prev" that does not match. Removing lines at the end cannot be seen
 * from the file alone; compare the last "seq"/"hash" with one kept elsewhere (the KBS logs it).
 *
 * One chain per process: replicas write files of their own, or keep their chains in the KBS's
 * storage backend (kbs_audit_open_store): entry N of replica R is the key "R/<N, 12 digits>" of
 * the namespace "audit", and "R/head" holds "N <hash>" of the last one. A background thread
 * writes them in order (a slow or down backend never holds a request); entries wait in a bounded
 * queue and are retried until stored.
 */
#ifndef KBS_AUDIT_H
#define KBS_AUDIT_H

#include <stddef.h>

#include "ct_status.h"
#include "kvs.h"

#define KBS_AUDIT_NS "audit"

typedef struct kbs_audit kbs_audit;

typedef struct kbs_audit_event {
  const char *event;         /* "resource-release", "resource-refusal", "admin-write", ... */
  const char *tee;           /* client TEE type, or NULL */
  const char *tee_key;       /* RFC 7638 thumbprint (base64url) of the TEE key, or NULL */
  const char *claims_sha256; /* hex digest of the JCS of the appraisal claims, or NULL */
  const char *path;          /* request path */
  const char *decision;      /* "allow", "deny", "error" */
  const char *reason;        /* why, for refusals and errors, or NULL */
} kbs_audit_event;

/* Opens (creating 0600, never through a symlink) and continues the chain found in the file. */
CT_RESULT kbs_audit_open(const char *path, kbs_audit **out, ct_err *err);
void kbs_audit_close(kbs_audit *a);
/* Continues (or starts) replica `replica`'s chain in `store` (borrowed; must outlive the log). */
CT_RESULT kbs_audit_open_store(kvs *store, const char *replica, kbs_audit **out, ct_err *err);
/* Checks the chains kept in a store: one replica, or every replica found. */
CT_RESULT kbs_audit_verify_store(kvs *store, const char *replica, size_t *entries, ct_err *err);
/* Appends one entry (thread-safe; a file gets one write(2) per line, O_APPEND). */
CT_RESULT kbs_audit_append(kbs_audit *a, const kbs_audit_event *e, ct_err *err);
/* Checks a whole file. CT_OK with *entries; otherwise err names the first broken line. */
CT_RESULT kbs_audit_verify_file(const char *path, size_t *entries, ct_err *err);
/* `kbs audit verify FILE` | `kbs audit verify --config KBS.toml [--replica NAME]`: prints the
 * outcome; returns the exit status. */
int kbs_audit_cli_main(int argc, char **argv);

#endif
