#include "kbs_client_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_mem.h"

CT_RESULT kc_http_call(kc_http *h, const char *method, const char *path, const char *content_type,
                       const void *body, size_t body_len, long *status, ct_buf *out, ct_err *err) {
  if (!h->client) {
    ct_http_opts o = {.ca_file = h->cert_file, .timeout_ms = 60000, .connect_timeout_ms = 60000,
                      .max_body = out->max, .cookies = 1, .log_tag = "kbs-client"};
    CT_GUARD(ct_http_client_new(&o, &h->client, err));
  }
  char url[2048];
  CT_ENSURE((size_t)snprintf(url, sizeof url, "%s%s", h->base_url, path) < sizeof url, err,
            CT_ELIMIT, "%s %s%s: URL too long", method, h->base_url, path);
  const char *hdrs[3] = {0};
  size_t nh = 0;
  char ctype[256], *auth = NULL;
  if (content_type) {
    snprintf(ctype, sizeof ctype, "Content-Type: %s", content_type);
    hdrs[nh++] = ctype;
  }
  if (h->bearer) {
    size_t n = strlen(h->bearer) + 32;
    CT_ENSURE((auth = malloc(n)), err, CT_ENOMEM, "out of memory");
    snprintf(auth, n, "Authorization: Bearer %s", h->bearer);
    hdrs[nh++] = auth;
  }
  ct_http_req req = {.method = method, .url = url, .headers = hdrs, .body = body,
                     .body_len = body_len};
  ct_http_resp r;
  ct_status st = ct_http_do(h->client, &req, &r, err);
  if (auth) {
    ct_wipe(auth, strlen(auth));
    free(auth);
  }
  if (st == CT_OK) {
    *status = r.status;
    st = ct_buf_append(out, r.body.data, r.body.len, err);
  }
  ct_http_resp_free(&r);
  return st;
}

void kc_http_close(kc_http *h) {
  ct_http_client_free(h->client);
  h->client = NULL;
}
