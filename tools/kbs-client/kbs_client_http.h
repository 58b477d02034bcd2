/*
 * kbs_client_http.h - libcurl calls for kbs-client: one request, bounded response, TLS pinned
 * to --cert-file when given.
 */
#ifndef KBS_CLIENT_HTTP_H
#define KBS_CLIENT_HTTP_H

#include <stddef.h>

#include "ct_buf.h"
#include "ct_status.h"

typedef struct kc_http {
  const char *base_url;  /* e.g. https://127.0.0.1:8080 */
  const char *cert_file; /* CA/self-signed certificate of the KBS, or NULL for the system store */
  const char *bearer;    /* Authorization: Bearer token, or NULL */
  char cookie[512];      /* kbs-session-id=... kept across calls */
} kc_http;

/* Performs METHOD base_url+path with an optional body. *status gets the HTTP status; the body is
 * appended to `out` (bounded). A transport failure is an error; an HTTP error status is not. */
CT_RESULT kc_http_call(kc_http *h, const char *method, const char *path, const char *content_type,
                       const void *body, size_t body_len, long *status, ct_buf *out, ct_err *err);

#endif
