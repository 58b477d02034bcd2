#include "kbs_client_http.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct kc__sink {
  ct_buf *out;
  ct_err *err;
  ct_status st;
} kc__sink;

static size_t kc__write(char *data, size_t size, size_t n, void *arg) {
  kc__sink *s = arg;
  if (s->st != CT_OK) return 0;
  s->st = ct_buf_append(s->out, data, size * n, s->err);
  return s->st == CT_OK ? size * n : 0;
}

static size_t kc__header(char *data, size_t size, size_t n, void *arg) {
  kc_http *h = arg;
  size_t len = size * n;
  if (len > 12 && !strncasecmp(data, "Set-Cookie:", 11)) {
    const char *v = data + 11;
    while (*v == ' ') v++;
    if (!strncmp(v, "kbs-session-id=", 15)) {
      size_t k = strcspn(v, ";\r\n");
      if (k < sizeof h->cookie) {
        memcpy(h->cookie, v, k);
        h->cookie[k] = 0;
      }
    }
  }
  return len;
}

ct_status kc_http_call(kc_http *h, const char *method, const char *path, const char *content_type,
                       const void *body, size_t body_len, long *status, ct_buf *out, ct_err *err) {
  CURL *c = curl_easy_init();
  CT_ENSURE(c, err, CT_ENOMEM, "cannot create an HTTP client");
  char url[2048];
  snprintf(url, sizeof url, "%s%s", h->base_url, path);
  struct curl_slist *hdrs = NULL;
  char line[8192];
  if (content_type) {
    snprintf(line, sizeof line, "Content-Type: %s", content_type);
    hdrs = curl_slist_append(hdrs, line);
  }
  if (h->bearer) {
    snprintf(line, sizeof line, "Authorization: Bearer %s", h->bearer);
    hdrs = curl_slist_append(hdrs, line);
  }
  kc__sink sink = {out, err, CT_OK};
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, kc__write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, kc__header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, h);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (h->cookie[0]) curl_easy_setopt(c, CURLOPT_COOKIE, h->cookie);
  if (h->cert_file) curl_easy_setopt(c, CURLOPT_CAINFO, h->cert_file);
  if (body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
  }
  CURLcode rc = curl_easy_perform(c);
  ct_status st = CT_OK;
  if (sink.st != CT_OK) st = sink.st;
  else if (rc != CURLE_OK) st = ct_fail(err, CT_EIO, "%s %s: %s", method, url, curl_easy_strerror(rc));
  else curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(c);
  return st;
}
