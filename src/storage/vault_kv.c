#include "vault_kv.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ct_buf.h"
#include "ct_file.h"
#include "ct_http.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_mem.h"

#define VAULT_MAX_SECRET (4u << 20)
#define VAULT_CACHE_MAX 4096
#define VAULT_PATH_MAX 1024

typedef struct vault__cached {
  char *key; /* "<secret path>#<field>" */
  uint8_t *value;
  size_t len;
  time_t expires;
} vault__cached;

struct vault_kv {
  char *url, *mount, *path_tmpl, *field_tmpl;
  char *token_header; /* "X-Vault-Token: ..." (secret) */
  char *ca_pem;       /* the ca_certs files, concatenated */
  unsigned kv_version, cache_ttl_s, timeout_ms;
  bool verify;
  ct_http_pool *pool;
  pthread_mutex_t lock;
  vault__cached cache[VAULT_CACHE_MAX]; /* open addressing by hash of key */
};

/* --- templates ------------------------------------------------------------------------------ */

static CT_RESULT vault__expand(const char *tmpl, const char *repo, const char *type, const char *tag, char *out,
                               size_t cap, ct_err *err) {
  size_t n = 0;
  for (const char *p = tmpl; *p;) {
    const char *sub = NULL;
    size_t skip = 1;
    if (!strncmp(p, "{repo}", 6)) sub = repo, skip = 6;
    else if (!strncmp(p, "{type}", 6)) sub = type, skip = 6;
    else if (!strncmp(p, "{tag}", 5)) sub = tag, skip = 5;
    size_t len = sub ? strlen(sub) : 1;
    CT_ENSURE(n + len < cap, err, CT_ELIMIT, "vault: the secret path for %s/%s/%s is too long", repo, type, tag);
    memcpy(out + n, sub ? sub : p, len);
    n += len;
    p += skip;
  }
  out[n] = 0;
  return CT_OK;
}

/* Literal parts of templates and the mount end up in URLs: a conservative alphabet, no "..". */
static CT_RESULT vault__check_literal(const char *what, const char *s, ct_err *err) {
  for (const char *p = s; *p; p++)
    CT_ENSURE((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("_.-/{}", *p),
              err, CT_EINVAL, "vault: %s \"%s\" has a character outside [A-Za-z0-9_./-]", what, s);
  CT_ENSURE(!strstr(s, ".."), err, CT_EINVAL, "vault: %s must not contain \"..\"", what);
  return CT_OK;
}

static void vault__secret_url(const vault_kv *v, const char *path, char *out, size_t cap) {
  if (v->kv_version == 2) snprintf(out, cap, "%s/v1/%s/data/%s", v->url, v->mount, path);
  else snprintf(out, cap, "%s/v1/%s/%s", v->url, v->mount, path);
}

/* --- cache ---------------------------------------------------------------------------------- */

static size_t vault__hash(const char *s) {
  size_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static void vault__drop(vault__cached *c) {
  if (c->value) ct_wipe(c->value, c->len);
  free(c->value);
  free(c->key);
  memset(c, 0, sizeof *c);
}

/* A copy of the cached value, or false. Only a few probes: a miss costs one Vault read. */
static bool vault__cache_get(vault_kv *v, const char *key, uint8_t **value, size_t *len) {
  if (!v->cache_ttl_s) return false;
  bool hit = false;
  time_t now = time(NULL);
  pthread_mutex_lock(&v->lock);
  size_t h = vault__hash(key);
  for (size_t i = 0; i < 4; i++) {
    vault__cached *c = &v->cache[(h + i) % VAULT_CACHE_MAX];
    if (!c->key || strcmp(c->key, key)) continue;
    if (c->expires <= now) {
      vault__drop(c);
      break;
    }
    uint8_t *copy = malloc(c->len + 1);
    if (copy) {
      memcpy(copy, c->value, c->len);
      copy[c->len] = 0;
      *value = copy;
      *len = c->len;
      hit = true;
    }
    break;
  }
  pthread_mutex_unlock(&v->lock);
  return hit;
}

static void vault__cache_put(vault_kv *v, const char *key, const uint8_t *value, size_t len) {
  if (!v->cache_ttl_s) return;
  char *k = strdup(key);
  uint8_t *copy = malloc(len + 1);
  if (!k || !copy) {
    free(k);
    free(copy);
    return;
  }
  memcpy(copy, value, len);
  time_t now = time(NULL);
  pthread_mutex_lock(&v->lock);
  size_t h = vault__hash(key);
  vault__cached *slot = &v->cache[h % VAULT_CACHE_MAX];
  for (size_t i = 0; i < 4; i++) {
    vault__cached *c = &v->cache[(h + i) % VAULT_CACHE_MAX];
    if (!c->key || !strcmp(c->key, key) || c->expires <= now) {
      slot = c;
      break;
    }
  }
  vault__drop(slot); /* all four probes taken by live entries: the first one goes */
  slot->key = k;
  slot->value = copy;
  slot->len = len;
  slot->expires = now + (time_t)v->cache_ttl_s;
  pthread_mutex_unlock(&v->lock);
}

static void vault__cache_forget(vault_kv *v, const char *key) {
  pthread_mutex_lock(&v->lock);
  size_t h = vault__hash(key);
  for (size_t i = 0; i < 4; i++) {
    vault__cached *c = &v->cache[(h + i) % VAULT_CACHE_MAX];
    if (c->key && !strcmp(c->key, key)) vault__drop(c);
  }
  pthread_mutex_unlock(&v->lock);
}

/* --- replies -------------------------------------------------------------------------------- */

/* Vault's {"errors": [...]} text, which names the problem but never a secret value. */
static void vault__errors(const ct_http_resp *r, char *out, size_t cap) {
  out[0] = 0;
  json_t *doc = NULL;
  ct_err ignored;
  if (r->body.len && ct_json_parse((const char *)r->body.data, r->body.len, 8, &doc, &ignored) == CT_OK) {
    json_t *errs = json_object_get(doc, "errors");
    const char *first = json_string_value(json_array_get(errs, 0));
    if (first && *first) snprintf(out, cap, ": %.200s", first);
    json_decref(doc);
  }
}

static CT_RESULT vault__status_error(const vault_kv *v, const ct_http_resp *r, const char *op, const char *path,
                                     ct_err *err) {
  char detail[256];
  vault__errors(r, detail, sizeof detail);
  switch (r->status) {
  case 404:
    return ct_fail(err, CT_ENOTFOUND, "vault: %s %s: no such secret (mount \"%s\", kv_version = %u)", op, path,
                   v->mount, v->kv_version);
  case 401:
  case 403:
    return ct_fail(err, CT_EDENIED, "vault: %s %s: permission denied (HTTP %ld): the token is wrong, expired or "
                   "lacks a policy for this path%s", op, path, r->status, detail);
  case 503:
    return ct_fail(err, CT_EIO, "vault: %s %s: Vault is sealed or unavailable (HTTP 503)%s", op, path, detail);
  default:
    return ct_fail(err, CT_EIO, "vault: %s %s: HTTP %ld%s", op, path, r->status, detail);
  }
}

/* Picks the field out of a read reply. */
static CT_RESULT vault__field(const vault_kv *v, const ct_http_resp *r, const char *path, const char *field,
                              uint8_t **value, size_t *len, ct_err *err) {
  json_t *doc = NULL;
  if (ct_json_parse((const char *)r->body.data, r->body.len, 32, &doc, err) != CT_OK)
    return ct_err_prefix(err, "vault: get %s: the reply is not JSON: ", path);
  json_t *data = json_object_get(doc, "data");
  if (v->kv_version == 2) data = json_object_get(data, "data");
  ct_status st = CT_OK;
  if (!json_is_object(data)) {
    /* KV v2 answers a deleted (not destroyed) version with data null. */
    st = ct_fail(err, CT_ENOTFOUND, "vault: get %s: the secret holds no data%s", path,
                 v->kv_version == 2 ? " (deleted version?)" : " (a KV v2 mount read with kv_version = 1?)");
  } else {
    json_t *f = json_object_get(data, field);
    if (!f) {
      char names[256] = "";
      size_t n = 0;
      const char *k;
      json_t *ignored;
      json_object_foreach(data, k, ignored) {
        int w = snprintf(names + n, sizeof names - n, "%s%.40s", n ? ", " : "", k);
        if (w < 0 || (size_t)w >= sizeof names - n) break;
        n += (size_t)w;
      }
      st = ct_fail(err, CT_ENOTFOUND, "vault: get %s: the secret has no field \"%s\" (fields: %s)", path, field,
                   n ? names : "none");
    } else if (json_is_string(f)) {
      size_t n = json_string_length(f);
      uint8_t *copy = malloc(n + 1);
      if (!copy) {
        st = ct_fail(err, CT_ENOMEM, "out of memory");
      } else {
        memcpy(copy, json_string_value(f), n + 1);
        *value = copy;
        *len = n;
      }
    } else {
      char *text = json_dumps(f, JSON_COMPACT | JSON_ENCODE_ANY);
      if (!text) {
        st = ct_fail(err, CT_ENOMEM, "out of memory");
      } else {
        *value = (uint8_t *)text;
        *len = strlen(text);
      }
    }
  }
  /* jansson's parsed copy is freed unwiped (it owns those strings); the reply body itself is
   * wiped by the caller. */
  json_decref(doc);
  return st;
}

/* --- reads ---------------------------------------------------------------------------------- */

typedef struct vault__read {
  vault_kv *v;
  char path[VAULT_PATH_MAX];
  char field[256];
  char key[VAULT_PATH_MAX + 260];
  vault_kv_done_fn done;
  void *ud;
} vault__read;

static void vault__read_done(void *ud, ct_status st, ct_http_resp *resp, const ct_err *herr) {
  vault__read *rd = ud;
  ct_err err;
  uint8_t *value = NULL;
  size_t len = 0;
  if (st != CT_OK) {
    bool timeout = strstr(herr->msg, "imeout") || strstr(herr->msg, "timed out") || strstr(herr->msg, "deadline");
    st = timeout ? ct_fail(&err, CT_EIO, "vault: get %s: no reply within %u ms (Vault slow or unreachable)", rd->path,
                           rd->v->timeout_ms)
                 : ct_fail(&err, CT_EIO, "vault: get %s: %s", rd->path, resp && resp->cause[0] ? resp->cause : herr->msg);
  } else if (resp->status != 200) {
    st = vault__status_error(rd->v, resp, "get", rd->path, &err);
  } else {
    st = vault__field(rd->v, resp, rd->path, rd->field, &value, &len, &err);
    if (st == CT_OK) vault__cache_put(rd->v, rd->key, value, len);
  }
  if (resp && resp->body.data) ct_wipe(resp->body.data, resp->body.len);
  rd->done(rd->ud, st, value, len, &err);
  free(rd);
}

static CT_RESULT vault__opts(const vault_kv *v, ct_http_opts *o) {
  *o = (ct_http_opts){
      .ca_pem = v->ca_pem,
      .insecure = !v->verify,
      .no_proxy = 0,
      .timeout_ms = v->timeout_ms,
      .connect_timeout_ms = v->timeout_ms,
      .deadline_ms = v->timeout_ms,
      .max_body = VAULT_MAX_SECRET,
      .log_tag = "vault",
  };
  return CT_OK;
}

static CT_RESULT vault__prepare(vault_kv *v, const char *repo, const char *type, const char *tag, vault__read *rd,
                                ct_err *err) {
  rd->v = v;
  CT_GUARD(vault__expand(v->path_tmpl, repo, type, tag, rd->path, sizeof rd->path, err));
  CT_GUARD(vault__expand(v->field_tmpl, repo, type, tag, rd->field, sizeof rd->field, err));
  snprintf(rd->key, sizeof rd->key, "%s#%s", rd->path, rd->field);
  return CT_OK;
}

CT_RESULT vault_kv_get_async(vault_kv *v, const char *repo, const char *type, const char *tag, vault_kv_done_fn done,
                             void *ud, ct_err *err) {
  vault__read *rd = calloc(1, sizeof *rd);
  CT_ENSURE(rd, err, CT_ENOMEM, "out of memory");
  ct_status st = vault__prepare(v, repo, type, tag, rd, err);
  if (st != CT_OK) {
    free(rd);
    return st;
  }
  uint8_t *value = NULL;
  size_t len = 0;
  if (vault__cache_get(v, rd->key, &value, &len)) {
    free(rd);
    done(ud, CT_OK, value, len, NULL);
    return CT_OK;
  }
  rd->done = done;
  rd->ud = ud;
  char url[CT_HTTP_URL_MAX];
  vault__secret_url(v, rd->path, url, sizeof url);
  const char *headers[] = {v->token_header, NULL};
  ct_http_req req = {.method = "GET", .url = url, .headers = headers};
  ct_http_opts o;
  CT_GUARD(vault__opts(v, &o));
  /* One source for all reads: the pool's per-source cap bounds what we ask of Vault at once. */
  st = ct_http_submit(v->pool, &o, &req, "vault", vault__read_done, rd, err);
  if (st != CT_OK) {
    ct_err_prefix(err, "vault: get %s: ", rd->path);
    free(rd);
    return st;
  }
  return CT_OK;
}

typedef struct vault__wait {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool finished;
  ct_status st;
  uint8_t *value;
  size_t len;
  ct_err err;
} vault__wait;

static void vault__wait_done(void *ud, ct_status st, uint8_t *value, size_t len, const ct_err *err) {
  vault__wait *w = ud;
  pthread_mutex_lock(&w->lock);
  w->st = st;
  w->value = value;
  w->len = len;
  if (err) w->err = *err;
  w->finished = true;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
}

CT_RESULT vault_kv_get(vault_kv *v, const char *repo, const char *type, const char *tag, uint8_t **value, size_t *len,
                       ct_err *err) {
  vault__wait w = {.finished = false};
  pthread_mutex_init(&w.lock, NULL);
  pthread_cond_init(&w.cond, NULL);
  ct_status st = vault_kv_get_async(v, repo, type, tag, vault__wait_done, &w, err);
  if (st == CT_OK) {
    pthread_mutex_lock(&w.lock);
    while (!w.finished) pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    st = w.st;
    if (st == CT_OK) {
      *value = w.value;
      *len = w.len;
    } else if (err) {
      *err = w.err;
    }
  }
  pthread_cond_destroy(&w.cond);
  pthread_mutex_destroy(&w.lock);
  return st;
}

static bool vault__utf8(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n;) {
    uint8_t c = p[i];
    size_t k = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : 9;
    if (k == 9 || i + k >= n + (k == 0)) return false;
    if (c == 0) return false;
    for (size_t j = 1; j <= k; j++)
      if ((p[i + j] & 0xC0) != 0x80) return false;
    i += k + 1;
  }
  return true;
}

CT_RESULT vault_kv_put(vault_kv *v, const char *repo, const char *type, const char *tag, const void *value, size_t len,
                       ct_err *err) {
  vault__read rd;
  CT_GUARD(vault__prepare(v, repo, type, tag, &rd, err));
  CT_ENSURE(!strchr(v->field_tmpl, '{'), err, CT_EUNSUPPORTED,
            "vault: put %s/%s/%s: read-only mapping: secret_field = \"%s\" keeps several resources in one secret "
            "(%s), and a KV write replaces the whole secret; write it in Vault instead",
            repo, type, tag, v->field_tmpl, rd.path);
  CT_ENSURE(vault__utf8(value, len), err, CT_EINVAL,
            "vault: put %s: the value is not UTF-8 text and a Vault KV field holds a string (encode it, e.g. "
            "base64, first)", rd.path);
  json_t *fields = json_object();
  json_t *body = fields ? (v->kv_version == 2 ? json_pack("{s:O}", "data", fields) : json_incref(fields)) : NULL;
  ct_status st = body && json_object_set_new(fields, rd.field, json_stringn(value, len)) == 0
                     ? CT_OK
                     : ct_fail(err, CT_ENOMEM, "out of memory");
  char *text = NULL;
  if (st == CT_OK) st = ct_json_dump(body, &text, err);
  json_decref(fields);
  json_decref(body);
  CT_GUARD(st);
  char url[CT_HTTP_URL_MAX];
  vault__secret_url(v, rd.path, url, sizeof url);
  const char *headers[] = {v->token_header, "Content-Type: application/json", NULL};
  ct_http_req req = {.method = "POST", .url = url, .headers = headers, .body = text, .body_len = strlen(text)};
  ct_http_opts o;
  CT_GUARD(vault__opts(v, &o));
  ct_http_resp resp = {0};
  st = ct_http_pool_do(v->pool, &o, &req, "vault", &resp, err);
  ct_wipe(text, strlen(text));
  free(text);
  if (st != CT_OK) st = ct_fail(err, CT_EIO, "vault: put %s: %s", rd.path, resp.cause[0] ? resp.cause : err->msg);
  else if (resp.status != 200 && resp.status != 204) st = vault__status_error(v, &resp, "put", rd.path, err);
  ct_http_resp_free(&resp);
  if (st == CT_OK) vault__cache_forget(v, rd.key);
  return st;
}

CT_RESULT vault_kv_ping(vault_kv *v, ct_err *err) {
  char url[CT_HTTP_URL_MAX];
  /* lookup-self checks reachability, the seal and the token in one call. */
  snprintf(url, sizeof url, "%s/v1/auth/token/lookup-self", v->url);
  const char *headers[] = {v->token_header, NULL};
  ct_http_req req = {.method = "GET", .url = url, .headers = headers};
  ct_http_opts o;
  CT_GUARD(vault__opts(v, &o));
  ct_http_resp resp = {0};
  ct_status st = ct_http_pool_do(v->pool, &o, &req, "vault-ping", &resp, err);
  if (st != CT_OK) st = ct_fail(err, CT_EIO, "vault: ping: %s", resp.cause[0] ? resp.cause : err->msg);
  else if (resp.status != 200) st = vault__status_error(v, &resp, "ping", "auth/token/lookup-self", err);
  ct_http_resp_free(&resp);
  return st;
}

CT_RESULT vault_kv_new(const vault_kv_config *cfg, vault_kv **out, ct_err *err) {
  CT_ENSURE(cfg->url && (!strncmp(cfg->url, "http://", 7) || !strncmp(cfg->url, "https://", 8)), err, CT_EINVAL,
            "vault: vault_url must be http(s)://host[:port]");
  CT_ENSURE(cfg->token && *cfg->token, err, CT_EINVAL, "vault: no token");
  CT_ENSURE(cfg->kv_version == 1 || cfg->kv_version == 2, err, CT_EINVAL, "vault: kv_version must be 1 or 2");
  const char *mount = cfg->mount_path ? cfg->mount_path : "secret";
  const char *path = cfg->secret_path ? cfg->secret_path : "{repo}/{type}/{tag}";
  const char *field = cfg->secret_field ? cfg->secret_field : "data";
  CT_GUARD(vault__check_literal("mount_path", mount, err));
  CT_GUARD(vault__check_literal("secret_path", path, err));
  CT_GUARD(vault__check_literal("secret_field", field, err));
  vault_kv *v = calloc(1, sizeof *v);
  CT_ENSURE(v, err, CT_ENOMEM, "out of memory");
  pthread_mutex_init(&v->lock, NULL);
  v->kv_version = cfg->kv_version;
  v->cache_ttl_s = cfg->cache_ttl_s;
  v->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 5000;
  v->verify = cfg->verify_ssl;
  size_t ulen = strlen(cfg->url);
  while (ulen && cfg->url[ulen - 1] == '/') ulen--;
  while (*mount == '/') mount++;
  ct_status st = ct_strndup(cfg->url, ulen, &v->url, err);
  if (st == CT_OK) st = ct_strdup(mount, &v->mount, err);
  if (st == CT_OK) {
    size_t m = strlen(v->mount);
    while (m && v->mount[m - 1] == '/') v->mount[--m] = 0;
  }
  if (st == CT_OK) st = ct_strdup(path, &v->path_tmpl, err);
  if (st == CT_OK) st = ct_strdup(field, &v->field_tmpl, err);
  if (st == CT_OK) {
    size_t n = strlen(cfg->token) + 32;
    v->token_header = malloc(n);
    if (!v->token_header) st = ct_fail(err, CT_ENOMEM, "out of memory");
    else snprintf(v->token_header, n, "X-Vault-Token: %s", cfg->token);
  }
  if (st == CT_OK && cfg->n_ca_certs) {
    ct_buf pem;
    ct_buf_init(&pem, 4u << 20);
    for (size_t i = 0; st == CT_OK && i < cfg->n_ca_certs; i++) {
      uint8_t *data = NULL;
      size_t len = 0;
      st = ct_file_read(cfg->ca_certs[i], 1u << 20, &data, &len, err);
      if (st != CT_OK) ct_err_prefix(err, "vault: ca_certs[%zu]: ", i);
      if (st == CT_OK) st = ct_buf_append(&pem, data, len, err);
      if (st == CT_OK) st = ct_buf_append_str(&pem, "\n", err);
      free(data);
    }
    if (st == CT_OK) st = ct_buf_append(&pem, "", 1, err);
    size_t pem_len = 0;
    if (st == CT_OK) v->ca_pem = (char *)ct_buf_take(&pem, &pem_len);
    ct_buf_free(&pem);
  }
  if (st == CT_OK && !v->verify && !strncmp(v->url, "https://", 8))
    CT_LOG_WARN_("vault", "verify_ssl = false: the Vault server's certificate is not checked");
  ct_http_pool_opts po = {.max_per_source = 16, .max_active = 32, .max_queued = 4096};
  if (st == CT_OK) st = ct_http_pool_new(&po, &v->pool, err);
  if (st != CT_OK) {
    vault_kv_free(v);
    return st;
  }
  *out = v;
  return CT_OK;
}

void vault_kv_free(vault_kv *v) {
  if (!v) return;
  ct_http_pool_free(v->pool);
  for (size_t i = 0; i < VAULT_CACHE_MAX; i++)
    if (v->cache[i].key) vault__drop(&v->cache[i]);
  if (v->token_header) ct_wipe(v->token_header, strlen(v->token_header));
  free(v->token_header);
  free(v->ca_pem);
  free(v->url);
  free(v->mount);
  free(v->path_tmpl);
  free(v->field_tmpl);
  pthread_mutex_destroy(&v->lock);
  free(v);
}
