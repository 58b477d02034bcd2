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

#include "ct_status.h"
#include "kvs.h"

typedef struct rvps rvps;

/* The store is borrowed and must outlive the RVPS. */
CT_RESULT rvps_new(kvs *store, rvps **out, ct_err *err);
void rvps_free(rvps *r);
/* Registers every reference value of a Message. */
CT_RESULT rvps_register(rvps *r, const json_t *message, ct_err *err);
/* *value is a new reference, or NULL when the id is unknown. */
CT_RESULT rvps_query(rvps *r, const char *id, json_t **value, ct_err *err);

#endif
