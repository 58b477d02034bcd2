/*
 * rvps.h - the built-in Reference Value Provider Service (Trustee rvps/).
 *
 * Registration takes Trustee's Message {"version":"0.1.0","type":"sample","payload":"<std base64
 * of {name: value, ...}>"}; each name is stored as {"version","name","expiration","value"} in the
 * "reference_value" namespace. A query returns the stored value only (expiry is not checked,
 * as upstream).
 */
#ifndef RVPS_H
#define RVPS_H

#include <jansson.h>
#include <stdbool.h>

#include "ct_status.h"
#include "kvs.h"

typedef struct rvps rvps;

/* The store is borrowed and must outlive the RVPS. */
CT_RESULT rvps_new(kvs *store, rvps **out, ct_err *err);
/* Trustee's LocalJson reference-value store (rvps_config.storage.file_path): one JSON file holding
 * the list [{"version","name","expiration","value"}, ...] (the pattern's rvps-reference-values
 * ConfigMap). It is created as [] when missing. Queries read it again whenever it changed (a
 * ConfigMap update swaps it), registrations rewrite it atomically (a read-only mount refuses). */
CT_RESULT rvps_new_file(const char *path, rvps **out, ct_err *err);
/* Hands the list file (and its directory, when rvps_new_file created it) to the user the KBS
 * serves as; a read-only mount is left as it is. No-op for a store-backed RVPS. */
CT_RESULT rvps_chown(rvps *r, unsigned uid, unsigned gid, ct_err *err);
void rvps_free(rvps *r);
/* Registers every reference value of a Message. */
CT_RESULT rvps_register(rvps *r, const json_t *message, ct_err *err);
/* *value is a new reference, or NULL when the id is unknown. */
CT_RESULT rvps_query(rvps *r, const char *id, json_t **value, ct_err *err);

#endif
