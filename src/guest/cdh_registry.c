/*
 * cdh_registry.c - an OCI distribution client over ct_http: manifests and blobs, anonymous or
 * with credentials, bearer tokens from the registry's token service (WWW-Authenticate), TLS
 * with extra root certificates, the configured pull proxy. Everything fetched is checked against
 * its digest before anyone reads it.
 */
#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cdh_image.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_http.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_mem.h"

#define CDH__SMALL_MAX (16u << 20)
#define CDH__TOKEN_MAX (64u << 10)

struct cdh_registry {
  ct_http_client *small; /* manifests, configs, signatures, tokens */
  ct_http_client *large; /* layers */
  char base[300];        /* https://host[:port] */
  char host[256];
  char repo[512];
  char *auth_header;     /* "Authorization: Bearer ..." or "Authorization: Basic ..." */
  char *basic;           /* base64(user:pass) for this registry, from the credentials file */
};

static int cdh__no_proxy_match(const char *list, const char *host) {
  if (!list) return 0;
  char h[256];
  snprintf(h, sizeof h, "%s", host);
  char *port = strrchr(h, ':');
  if (port && !strchr(h, ']')) *port = 0;
  size_t hl = strlen(h);
  for (const char *p = list; *p;) {
    while (*p == ',' || *p == ' ') p++;
    const char *e = p;
    while (*e && *e != ',' && *e != ' ') e++;
    size_t n = (size_t)(e - p);
    if (n == 1 && *p == '*') return 1;
    const char *d = p;
    if (n && *d == '.') {
      d++;
      n--;
    }
    if (n && hl >= n && !strncasecmp(h + hl - n, d, n) && (hl == n || h[hl - n - 1] == '.')) return 1;
    p = e;
  }
  return 0;
}

static CT_RESULT cdh__credentials(cdh_registry *g, const char *json, ct_err *err) {
  if (!json) return CT_OK;
  json_t *doc = NULL;
  ct_status st = ct_json_parse(json, strlen(json), 8, &doc, err);
  if (st) return ct_err_prefix(err, "registry credentials: ");
  const json_t *auths = json_object_get(doc, "auths");
  char alt[300];
  snprintf(alt, sizeof alt, "https://%s", g->host);
  const json_t *e = json_object_get(auths, g->host);
  if (!e) e = json_object_get(auths, alt);
  const char *a = json_string_value(json_object_get(e, "auth"));
  if (a && strlen(a) < 4096) st = ct_strdup(a, &g->basic, err);
  json_decref(doc);
  return st;
}

CT_RESULT cdh_registry_new(const cdh_registry_opts *o, const cdh_image_ref *r, cdh_registry **out,
                           ct_err *err) {
  cdh_registry *g = calloc(1, sizeof *g);
  CT_ENSURE(g, err, CT_ENOMEM, "out of memory");
  snprintf(g->host, sizeof g->host, "%s", !strcmp(r->registry, "docker.io") ? "registry-1.docker.io"
                                                                          : r->registry);
  snprintf(g->base, sizeof g->base, "%s://%s", o->plain_http ? "http" : "https", g->host);
  snprintf(g->repo, sizeof g->repo, "%s", r->repository);
  ct_http_opts ho = {.ca_pem = o->ca_pem, .timeout_ms = 120000, .max_body = CDH__SMALL_MAX,
                     .attempts = 3, .retry_on = CT_HTTP_RETRY_TRANSPORT | CT_HTTP_RETRY_5XX | CT_HTTP_RETRY_429,
                     .retry_after_max_ms = 5000, .log_tag = "registry",
                     .user_agent = "coco-trust-cdh/0.1"};
  /* Only the configured proxy: the pod VM's environment is not an input of the pull. */
  const char *proxy = o->plain_http ? o->http_proxy : o->https_proxy;
  if (proxy && *proxy && !cdh__no_proxy_match(o->no_proxy, g->host))
    ho.proxy = proxy;
  else
    ho.no_proxy = 1;
  ct_status st = cdh__credentials(g, o->credentials, err);
  if (!st) st = ct_http_client_new(&ho, &g->small, err);
  ho.max_body = (size_t)CDH_LAYER_MAX;
  ho.timeout_ms = 30 * 60 * 1000;
  if (!st) st = ct_http_client_new(&ho, &g->large, err);
  if (st) {
    cdh_registry_free(g);
    return st;
  }
  *out = g;
  return CT_OK;
}

void cdh_registry_free(cdh_registry *g) {
  if (!g) return;
  ct_http_client_free(g->small);
  ct_http_client_free(g->large);
  if (g->auth_header) {
    ct_wipe(g->auth_header, strlen(g->auth_header));
    free(g->auth_header);
  }
  if (g->basic) {
    ct_wipe(g->basic, strlen(g->basic));
    free(g->basic);
  }
  free(g);
}

/* One parameter of a WWW-Authenticate challenge: name="value". */
static int cdh__challenge_param(const char *h, const char *name, char *out, size_t cap) {
  size_t n = strlen(name);
  for (const char *p = h; (p = strcasestr(p, name)); p += n) {
    if (p != h && p[-1] != ' ' && p[-1] != ',') continue;
    if (p[n] != '=' || p[n + 1] != '"') continue;
    const char *v = p + n + 2, *e = strchr(v, '"');
    if (!e || (size_t)(e - v) >= cap) return 0;
    memcpy(out, v, (size_t)(e - v));
    out[e - v] = 0;
    return 1;
  }
  return 0;
}

static void cdh__pct(ct_buf *b, const char *s) {
  ct_err e;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      if (ct_buf_append(b, s, 1, &e)) return;
    } else if (ct_buf_printf(b, &e, "%%%02X", c)) {
      return;
    }
  }
}

static CT_RESULT cdh__set_auth(cdh_registry *g, const char *scheme, const char *value, ct_err *err) {
  size_t n = strlen(scheme) + strlen(value) + 24;
  char *h = malloc(n);
  CT_ENSURE(h, err, CT_ENOMEM, "out of memory");
  snprintf(h, n, "Authorization: %s %s", scheme, value);
  if (g->auth_header) {
    ct_wipe(g->auth_header, strlen(g->auth_header));
    free(g->auth_header);
  }
  g->auth_header = h;
  return CT_OK;
}

/* Answers a 401 challenge: a bearer token from the realm (with the credentials, if any), or
 * basic authentication. */
static CT_RESULT cdh__authenticate(cdh_registry *g, const char *challenge, ct_err *err) {
  CT_ENSURE(challenge, err, CT_EDENIED, "registry %s: 401 without a WWW-Authenticate challenge", g->host);
  if (!strncasecmp(challenge, "Basic", 5)) {
    CT_ENSURE(g->basic, err, CT_EDENIED,
              "registry %s asks for basic authentication and no credentials are configured for it "
              "(authenticated_registry_credentials_uri)", g->host);
    return cdh__set_auth(g, "Basic", g->basic, err);
  }
  CT_ENSURE(!strncasecmp(challenge, "Bearer", 6), err, CT_EUNSUPPORTED,
            "registry %s: unsupported authentication scheme in \"%.100s\"", g->host, challenge);
  char realm[1024], service[256] = "", scope[700] = "";
  CT_ENSURE(cdh__challenge_param(challenge, "realm", realm, sizeof realm), err, CT_EINVAL,
            "registry %s: bearer challenge without a realm", g->host);
  CT_ENSURE(!strncmp(realm, "https://", 8) || (!g->basic && !strncmp(realm, "http://", 7)), err,
            CT_EDENIED, "registry %s: token realm %.200s is not https", g->host, realm);
  cdh__challenge_param(challenge, "service", service, sizeof service);
  if (!cdh__challenge_param(challenge, "scope", scope, sizeof scope))
    snprintf(scope, sizeof scope, "repository:%s:pull", g->repo);
  ct_buf url;
  ct_buf_init(&url, CT_HTTP_URL_MAX);
  ct_status st = ct_buf_append_str(&url, realm, err);
  if (!st) st = ct_buf_append_str(&url, strchr(realm, '?') ? "&" : "?", err);
  if (!st && service[0]) {
    st = ct_buf_append_str(&url, "service=", err);
    cdh__pct(&url, service);
    if (!st) st = ct_buf_append_str(&url, "&", err);
  }
  if (!st) st = ct_buf_append_str(&url, "scope=", err);
  if (!st) cdh__pct(&url, scope);
  char basic[4200] = "";
  if (g->basic) snprintf(basic, sizeof basic, "Authorization: Basic %s", g->basic);
  const char *hdrs[] = {"Accept: application/json", g->basic ? basic : NULL, NULL};
  ct_http_req req = {.url = (const char *)url.data, .headers = hdrs};
  ct_http_resp resp = {0};
  if (!st) st = ct_http_do(g->small, &req, &resp, err);
  ct_wipe(basic, sizeof basic);
  ct_buf_free(&url);
  if (st) return ct_err_prefix(err, "registry %s token: ", g->host);
  json_t *j = NULL;
  if (resp.status != 200) {
    st = ct_fail(err, resp.status == 401 || resp.status == 403 ? CT_EDENIED : CT_EIO,
                 "registry %s: the token service answered HTTP %ld", g->host, resp.status);
  } else if (resp.body.len > CDH__TOKEN_MAX) {
    st = ct_fail(err, CT_ELIMIT, "registry %s: token response too large", g->host);
  } else if (!(st = ct_json_parse((const char *)resp.body.data, resp.body.len, 8, &j, err))) {
    const char *t = json_string_value(json_object_get(j, "token"));
    if (!t) t = json_string_value(json_object_get(j, "access_token"));
    if (!t || !*t || strlen(t) > CDH__TOKEN_MAX)
      st = ct_fail(err, CT_EINVAL, "registry %s: the token service returned no token", g->host);
    else
      st = cdh__set_auth(g, "Bearer", t, err);
  }
  json_decref(j);
  ct_buf_free_secret(&resp.body);
  ct_http_resp_free(&resp);
  return st;
}

/* GET with authentication: one retry after answering a 401 challenge. A 2xx body goes to `sink`
 * when one is given. */
static CT_RESULT cdh__get(cdh_registry *g, ct_http_client *c, const char *path, const char *accept,
                          ct_http_sink_fn sink, void *sink_ud, ct_http_resp *resp, ct_err *err) {
  char url[2048];
  snprintf(url, sizeof url, "%s/v2/%s/%s", g->base, g->repo, path);
  for (int round = 0;; round++) {
    const char *hdrs[] = {accept, g->auth_header, NULL};
    ct_http_req req = {.url = url, .headers = hdrs, .sink = sink, .sink_ud = sink_ud};
    memset(resp, 0, sizeof *resp);
    CT_GUARD(ct_http_do(c, &req, resp, err));
    if (resp->status != 401 || round > 0) return CT_OK;
    char challenge[2048] = "";
    const char *wa = ct_http_resp_header(resp, "WWW-Authenticate");
    if (wa) snprintf(challenge, sizeof challenge, "%s", wa);
    ct_http_resp_free(resp);
    CT_GUARD(cdh__authenticate(g, wa ? challenge : NULL, err));
  }
}

static void cdh__sha256_digest(const uint8_t *d, size_t n, char out[80]) {
  uint8_t h[32];
  ct_sha256(d, n, h);
  memcpy(out, "sha256:", 7);
  ct_hex_into(h, 32, out + 7);
  out[71] = 0;
}

static CT_RESULT cdh__status(cdh_registry *g, const char *what, long status, ct_err *err) {
  if (status == 200) return CT_OK;
  if (status == 404) return ct_fail(err, CT_ENOTFOUND, "registry %s: %s not found", g->host, what);
  if (status == 401 || status == 403)
    return ct_fail(err, CT_EDENIED, "registry %s: access to %s denied (HTTP %ld)", g->host, what, status);
  return ct_fail(err, CT_EIO, "registry %s: %s: HTTP %ld", g->host, what, status);
}

CT_RESULT cdh_registry_manifest(cdh_registry *g, const char *reference, uint8_t **body, size_t *len,
                                char *media_type, size_t mcap, char digest[80], ct_err *err) {
  char path[300], what[900];
  snprintf(path, sizeof path, "manifests/%s", reference);
  snprintf(what, sizeof what, "manifest %s:%s", g->repo, reference);
  static const char accept[] =
      "Accept: application/vnd.oci.image.manifest.v1+json, "
      "application/vnd.docker.distribution.manifest.v2+json, "
      "application/vnd.oci.image.index.v1+json, "
      "application/vnd.docker.distribution.manifest.list.v2+json";
  ct_http_resp resp;
  CT_GUARD(cdh__get(g, g->small, path, accept, NULL, NULL, &resp, err));
  ct_status st = cdh__status(g, what, resp.status, err);
  if (!st && resp.body.len > CDH_MANIFEST_MAX)
    st = ct_fail(err, CT_ELIMIT, "registry %s: %s is larger than %u bytes", g->host, what, CDH_MANIFEST_MAX);
  if (!st) {
    cdh__sha256_digest(resp.body.data, resp.body.len, digest);
    const char *hd = ct_http_resp_header(&resp, "Docker-Content-Digest");
    if (!strncmp(reference, "sha256:", 7) && strcmp(reference, digest))
      st = ct_fail(err, CT_ECRYPTO, "registry %s: %s: content digest %s does not match", g->host,
                   what, digest);
    else if (hd && !strncmp(hd, "sha256:", 7) && strcmp(hd, digest))
      st = ct_fail(err, CT_ECRYPTO, "registry %s: %s: Docker-Content-Digest %.80s differs from the "
                   "content's digest %s", g->host, what, hd, digest);
  }
  if (!st) {
    const char *ct = ct_http_resp_header(&resp, "Content-Type");
    snprintf(media_type, mcap, "%s", ct ? ct : "");
    char *semi = strchr(media_type, ';');
    if (semi) *semi = 0;
    *body = ct_buf_take(&resp.body, len);
  }
  ct_http_resp_free(&resp);
  return st;
}

CT_RESULT cdh_registry_blob(cdh_registry *g, const char *digest, int64_t size, size_t max,
                            uint8_t **out, size_t *len, ct_err *err) {
  CT_ENSURE(!strncmp(digest, "sha256:", 7) && strlen(digest) == 71, err, CT_EUNSUPPORTED,
            "registry %s: blob digest \"%.80s\" is not sha256", g->host, digest);
  CT_ENSURE(size < 0 || (uint64_t)size <= max, err, CT_ELIMIT,
            "registry %s: blob %s declares %lld bytes (limit %zu)", g->host, digest, (long long)size, max);
  char path[300], what[400], got[80];
  snprintf(path, sizeof path, "blobs/%s", digest);
  snprintf(what, sizeof what, "blob %s", digest);
  ct_http_resp resp;
  CT_GUARD(cdh__get(g, max > CDH__SMALL_MAX ? g->large : g->small, path,
                    "Accept: application/octet-stream, */*", NULL, NULL, &resp, err));
  ct_status st = cdh__status(g, what, resp.status, err);
  if (!st && resp.body.len > max)
    st = ct_fail(err, CT_ELIMIT, "registry %s: %s is larger than %zu bytes", g->host, what, max);
  if (!st && size >= 0 && resp.body.len != (uint64_t)size)
    st = ct_fail(err, CT_ECRYPTO, "registry %s: %s has %zu bytes, the manifest says %lld", g->host,
                 what, resp.body.len, (long long)size);
  if (!st) {
    cdh__sha256_digest(resp.body.data, resp.body.len, got);
    if (strcmp(got, digest))
      st = ct_fail(err, CT_ECRYPTO, "registry %s: %s: content digest is %s", g->host, what, got);
  }
  if (!st) *out = ct_buf_take(&resp.body, len);
  ct_http_resp_free(&resp);
  return st;
}

/* --- layers, streamed to a file ------------------------------------------------------------ */

typedef struct cdh__blob_sink {
  const char *digest;
  EVP_MD_CTX *md;
  int fd;
  uint64_t got;
  int64_t size; /* the descriptor's size, or -1 */
  const atomic_int *cancel;
} cdh__blob_sink;

static CT_RESULT cdh__blob_write(void *ud, const uint8_t *data, size_t len, ct_err *err) {
  cdh__blob_sink *s = ud;
  CT_ENSURE(!s->cancel || !atomic_load(s->cancel), err, CT_EEXPIRED,
            "cancelled: the caller is no longer waiting");
  /* Nothing beyond the declared size is taken: the transfer stops at the first excess byte. */
  CT_ENSURE(s->size < 0 || len <= (uint64_t)s->size - s->got, err, CT_ECRYPTO,
            "blob %s is larger than the %lld bytes the manifest declares (cut off at %llu bytes)",
            s->digest, (long long)s->size, (unsigned long long)(s->got + len));
  CT_ENSURE(EVP_DigestUpdate(s->md, data, len) == 1, err, CT_ECRYPTO, "blob %s: sha256 failed", s->digest);
  for (size_t off = 0; off < len;) {
    ssize_t w = write(s->fd, data + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    CT_ENSURE(w > 0, err, CT_EIO, "writing blob %s to disk: %s", s->digest,
              strerror(w < 0 ? errno : EIO));
    off += (size_t)w;
  }
  s->got += len;
  return CT_OK;
}

/* Follows a blob redirect (a blob store or CDN): absolute http(s) URLs or paths on the registry.
 * The registry's credentials are not sent there (pre-signed URLs carry their own). */
static CT_RESULT cdh__follow(cdh_registry *g, ct_http_resp *resp, cdh__blob_sink *s, ct_err *err) {
  for (int hop = 0; resp->status >= 301 && resp->status <= 308 && resp->status != 304 &&
                    resp->status != 305 && resp->status != 306; hop++) {
    const char *loc = ct_http_resp_header(resp, "Location");
    CT_ENSURE(loc && hop < 3, err, CT_EIO, "registry %s: blob %s: %s", g->host, s->digest,
              loc ? "more than 3 redirects" : "redirect without a Location");
    char url[CT_HTTP_URL_MAX + 1];
    int n = loc[0] == '/' ? snprintf(url, sizeof url, "%s%s", g->base, loc) : snprintf(url, sizeof url, "%s", loc);
    CT_ENSURE(n > 0 && (size_t)n < sizeof url, err, CT_ELIMIT, "registry %s: blob redirect URL too long", g->host);
    CT_ENSURE(!strncmp(url, "https://", 8) || !strncmp(g->base, "http://", 7), err, CT_EDENIED,
              "registry %s: blob %s redirected to %.200s, which is not https", g->host, s->digest, url);
    ct_http_resp_free(resp);
    const char *hdrs[] = {"Accept: application/octet-stream, */*", NULL};
    ct_http_req req = {.url = url, .headers = hdrs, .sink = cdh__blob_write, .sink_ud = s};
    CT_GUARD(ct_http_do(g->large, &req, resp, err));
  }
  return CT_OK;
}

CT_RESULT cdh_registry_blob_to_fd(cdh_registry *g, const char *digest, int64_t size, uint64_t max,
                                  int fd, const atomic_int *cancel, ct_err *err) {
  CT_ENSURE(!strncmp(digest, "sha256:", 7) && strlen(digest) == 71, err, CT_EUNSUPPORTED,
            "registry %s: blob digest \"%.80s\" is not sha256", g->host, digest);
  CT_ENSURE(size < 0 || (uint64_t)size <= max, err, CT_ELIMIT,
            "registry %s: blob %s declares %lld bytes (limit %llu)", g->host, digest, (long long)size,
            (unsigned long long)max);
  char path[300], what[400];
  snprintf(path, sizeof path, "blobs/%s", digest);
  snprintf(what, sizeof what, "blob %s", digest);
  cdh__blob_sink s = {.digest = digest, .md = EVP_MD_CTX_new(), .fd = fd, .size = size, .cancel = cancel};
  CT_ENSURE(s.md && EVP_DigestInit_ex(s.md, EVP_sha256(), NULL) == 1, err, CT_ENOMEM, "out of memory");
  ct_http_resp resp;
  ct_status st = cdh__get(g, g->large, path, "Accept: application/octet-stream, */*", cdh__blob_write, &s,
                          &resp, err);
  if (!st) st = cdh__follow(g, &resp, &s, err);
  if (!st) st = cdh__status(g, what, resp.status, err);
  if (!st && s.got > max)
    st = ct_fail(err, CT_ELIMIT, "registry %s: %s is larger than %llu bytes", g->host, what,
                 (unsigned long long)max);
  if (!st && size >= 0 && s.got != (uint64_t)size)
    st = ct_fail(err, CT_ECRYPTO, "registry %s: %s has %llu bytes, the manifest says %lld", g->host, what,
                 (unsigned long long)s.got, (long long)size);
  if (!st) {
    uint8_t h[32];
    unsigned hl = 0;
    char got[80] = "sha256:";
    if (EVP_DigestFinal_ex(s.md, h, &hl) != 1 || hl != 32) {
      st = ct_fail(err, CT_ECRYPTO, "registry %s: %s: sha256 failed", g->host, what);
    } else {
      ct_hex_into(h, 32, got + 7);
      got[71] = 0;
      if (strcmp(got, digest))
        st = ct_fail(err, CT_ECRYPTO, "registry %s: %s: content digest is %s", g->host, what, got);
    }
  }
  EVP_MD_CTX_free(s.md);
  ct_http_resp_free(&resp);
  return st;
}
