/*
 * kbs_client_http.h - kbs-client's admin calls over ct_http: one kept-alive connection with a
 * cookie jar per kc_http, bounded responses, TLS pinned to --cert-file when given.
 */
#ifndef KBS_CLIENT_HTTP_H
#define KBS_CLIENT_HTTP_H

#include <stddef.h>

#include "ct_buf.h"
#include "ct_http.h"
#include "ct_status.h"

typedef struct kc_http {
  const char *base_url;  /* e.g. https://127.0.0.1:8080 */
  const char *cert_file; /* CA/self-signed certificate of the KBS, or NULL for the system store */
  const char *bearer;    /* Authorization: Bearer token, or NULL */
  ct_http_client *client; /* created on first use; released by kc_http_close */
} kc_http;

/* Performs METHOD base_url+path with an optional body. *status gets the HTTP status; the body is
 * appended to `out` (bounded by its cap). A transport failure is an error; an HTTP error status
 * is not. */
CT_RESULT kc_http_call(kc_http *h, const char *method, const char *path, const char *content_type,
                       const void *body, size_t body_len, long *status, ct_buf *out, ct_err *err);
void kc_http_close(kc_http *h);

#endif
