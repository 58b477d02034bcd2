#include "kvs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_mem.h"
#include "kvs_int.h"

int64_t kvs__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *kvs_type_name(kvs_type t) {
  switch (t) {
  case KVS_MEMORY: return "Memory";
  case KVS_LOCAL_FS: return "LocalFs";
  case KVS_LOCAL_JSON: return "LocalJson";
  case KVS_POSTGRES: return "Postgres";
  case KVS_REDIS: return "Redis";
  }
  return "?";
}

kvs_type kvs_get_type(const kvs *s) { return s->type; }

bool kvs_is_shared(const kvs *s) {
  return s->type == KVS_LOCAL_FS || s->type == KVS_POSTGRES || s->type == KVS_REDIS;
}

/* Upstream's key alphabet, plus its rule that a key starts with neither '.' nor '/'. */
CT_RESULT kvs_check_key(const char *key, ct_err *err) {
  size_t n = strlen(key);
  CT_ENSURE(n > 0, err, CT_EINVAL, "empty storage key");
  CT_ENSURE(n <= KVS_MAX_KEY, err, CT_EINVAL, "storage key longer than %d bytes", KVS_MAX_KEY);
  for (size_t i = 0; i < n; i++) {
    char c = key[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '/' || c == '-';
    CT_ENSURE(ok, err, CT_EINVAL, "storage key has a character outside [A-Za-z0-9._/-] at offset %zu",
              i);
  }
  CT_ENSURE(key[0] != '.' && key[0] != '/', err, CT_EINVAL, "storage key must not start with '.' or '/'");
  CT_ENSURE(!strstr(key, ".."), err, CT_EINVAL, "storage key must not contain \"..\"");
  return CT_OK;
}

/* Namespaces are ours (never from the wire), short identifiers usable as a directory, a file
 * stem, a SQL table name and a Redis key prefix. */
static CT_RESULT kvs__check_ns(const char *ns, ct_err *err) {
  size_t n = strlen(ns);
  CT_ENSURE(n > 0 && n <= 48, err, CT_EINTERNAL, "bad storage namespace \"%.64s\"", ns);
  for (const char *p = ns; *p; p++)
    CT_ENSURE((*p >= 'a' && *p <= 'z') || *p == '_' || (*p >= '0' && *p <= '9'), err, CT_EINTERNAL,
              "bad storage namespace \"%.64s\"", ns);
  return CT_OK;
}

CT_RESULT kvs_open(const kvs_config *cfg, kvs **out, ct_err *err) {
  kvs *s = calloc(1, sizeof *s);
  CT_ENSURE(s, err, CT_ENOMEM, "out of memory");
  s->type = cfg->type;
  s->dirfd = -1;
  s->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 3000;
  pthread_mutex_init(&s->lock, NULL);
  ct_status st;
  switch (cfg->type) {
  case KVS_MEMORY: st = kvs__memory_open(s, cfg, err); break;
  case KVS_LOCAL_FS:
  case KVS_LOCAL_JSON: st = kvs__local_open(s, cfg, err); break;
  case KVS_POSTGRES: st = kvs__pg_open(s, cfg, err); break;
  case KVS_REDIS: st = kvs__redis_open(s, cfg, err); break;
  default: st = ct_fail(err, CT_EINVAL, "unknown storage backend type %d", (int)cfg->type);
  }
  if (st != CT_OK) {
    kvs_close(s);
    return st;
  }
  *out = s;
  return CT_OK;
}

void kvs_close(kvs *s) {
  if (!s) return;
  if (s->ops && s->ops->close) s->ops->close(s);
  pthread_mutex_destroy(&s->lock);
  free(s->dir);
  free(s);
}

static CT_RESULT kvs__check_put(const char *ns, const char *key, size_t len, ct_err *err) {
  CT_GUARD(kvs__check_ns(ns, err));
  CT_GUARD(kvs_check_key(key, err));
  CT_ENSURE(len <= KVS_MAX_VALUE, err, CT_ELIMIT, "value of %zu bytes exceeds the %u-byte limit", len,
            KVS_MAX_VALUE);
  return CT_OK;
}

CT_RESULT kvs_put(kvs *s, const char *ns, const char *key, const void *value, size_t len, ct_err *err) {
  CT_GUARD(kvs__check_put(ns, key, len, err));
  return s->ops->put(s, ns, key, value, len, KVS__REPLACE, 0, NULL, err);
}

CT_RESULT kvs_put_ttl(kvs *s, const char *ns, const char *key, const void *value, size_t len, unsigned ttl_s,
                      ct_err *err) {
  CT_GUARD(kvs__check_put(ns, key, len, err));
  return s->ops->put(s, ns, key, value, len, KVS__REPLACE, ttl_s, NULL, err);
}

CT_RESULT kvs_put_nx(kvs *s, const char *ns, const char *key, const void *value, size_t len, unsigned ttl_s,
                     bool *inserted, ct_err *err) {
  CT_GUARD(kvs__check_put(ns, key, len, err));
  bool ins = false;
  CT_GUARD(s->ops->put(s, ns, key, value, len, KVS__IF_ABSENT, ttl_s, &ins, err));
  *inserted = ins;
  return CT_OK;
}

CT_RESULT kvs_get(kvs *s, const char *ns, const char *key, uint8_t **value, size_t *len, ct_err *err) {
  CT_GUARD(kvs__check_ns(ns, err));
  CT_GUARD(kvs_check_key(key, err));
  return s->ops->get(s, ns, key, value, len, err);
}

CT_RESULT kvs_delete(kvs *s, const char *ns, const char *key, ct_err *err) {
  CT_GUARD(kvs__check_ns(ns, err));
  CT_GUARD(kvs_check_key(key, err));
  return s->ops->del(s, ns, key, err);
}

CT_RESULT kvs_sweep(kvs *s, const char *ns, ct_err *err) {
  CT_GUARD(kvs__check_ns(ns, err));
  return s->ops->sweep ? s->ops->sweep(s, ns, err) : CT_OK;
}

CT_RESULT kvs_ping(kvs *s, ct_err *err) { return s->ops->ping ? s->ops->ping(s, err) : CT_OK; }

static int kvs__strcmp(const void *a, const void *b) {
  return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

CT_RESULT kvs_list(kvs *s, const char *ns, json_t **keys, ct_err *err) {
  CT_GUARD(kvs__check_ns(ns, err));
  json_t *arr = json_array();
  CT_ENSURE(arr, err, CT_ENOMEM, "out of memory");
  ct_status st = s->ops->list(s, ns, arr, err);
  if (st != CT_OK) {
    json_decref(arr);
    return st;
  }
  /* Sorted and without duplicates (a Redis SCAN may repeat keys), so listings are stable across
   * backends. */
  size_t n = json_array_size(arr);
  json_t **items = malloc((n ? n : 1) * sizeof *items);
  if (!items) {
    json_decref(arr);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < n; i++) items[i] = json_incref(json_array_get(arr, i));
  qsort(items, n, sizeof *items, kvs__strcmp);
  json_array_clear(arr);
  for (size_t i = 0; i < n; i++) {
    if (i > 0 && !strcmp(json_string_value(items[i]), json_string_value(items[i - 1]))) json_decref(items[i]);
    else json_array_append_new(arr, items[i]);
  }
  free(items);
  *keys = arr;
  return CT_OK;
}

/* --- Memory ------------------------------------------------------------------------------------ */

/* A chained list per store is enough for admin-sized data sets and tests. */
typedef struct kvs__entry {
  char *ns;
  char *key;
  uint8_t *value;
  size_t len;
  time_t expires; /* 0: never */
  struct kvs__entry *next;
} kvs__entry;

static void kvs__entry_free(kvs__entry *e) {
  ct_wipe(e->value, e->len);
  free(e->value);
  free(e->key);
  free(e->ns);
  free(e);
}

static bool kvs__live(const kvs__entry *e, time_t now) { return !e->expires || e->expires > now; }

static kvs__entry **kvs__mem_find(kvs *s, const char *ns, const char *key) {
  for (kvs__entry **pp = (kvs__entry **)&s->impl; *pp; pp = &(*pp)->next)
    if (!strcmp((*pp)->ns, ns) && !strcmp((*pp)->key, key)) return pp;
  return NULL;
}

static CT_RESULT kvs__mem_put(kvs *s, const char *ns, const char *key, const void *value, size_t len,
                              kvs__mode mode, unsigned ttl_s, bool *inserted, ct_err *err) {
  uint8_t *copy = malloc(len + 1);
  CT_ENSURE(copy, err, CT_ENOMEM, "out of memory");
  if (len) memcpy(copy, value, len);
  copy[len] = 0;
  time_t now = time(NULL);
  ct_status st = CT_OK;
  pthread_mutex_lock(&s->lock);
  kvs__entry **pp = kvs__mem_find(s, ns, key);
  if (pp && mode == KVS__IF_ABSENT && kvs__live(*pp, now)) {
    ct_wipe(copy, len);
    free(copy);
    *inserted = false;
  } else if (pp) {
    kvs__entry *e = *pp;
    ct_wipe(e->value, e->len);
    free(e->value);
    e->value = copy;
    e->len = len;
    e->expires = ttl_s ? now + (time_t)ttl_s : 0;
    if (inserted) *inserted = true;
  } else {
    kvs__entry *e = calloc(1, sizeof *e);
    if (!e || ct_strdup(ns, &e->ns, err) != CT_OK || ct_strdup(key, &e->key, err) != CT_OK) {
      if (e) {
        free(e->ns);
        free(e->key);
      }
      free(e);
      free(copy);
      st = ct_fail(err, CT_ENOMEM, "out of memory");
    } else {
      e->value = copy;
      e->len = len;
      e->expires = ttl_s ? now + (time_t)ttl_s : 0;
      e->next = s->impl;
      s->impl = e;
      if (inserted) *inserted = true;
    }
  }
  pthread_mutex_unlock(&s->lock);
  return st;
}

static CT_RESULT kvs__mem_get(kvs *s, const char *ns, const char *key, uint8_t **value, size_t *len, ct_err *err) {
  ct_status st = CT_OK;
  pthread_mutex_lock(&s->lock);
  kvs__entry **pp = kvs__mem_find(s, ns, key);
  if (!pp || !kvs__live(*pp, time(NULL))) {
    st = ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
  } else {
    uint8_t *copy = malloc((*pp)->len + 1);
    if (!copy) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
    } else {
      memcpy(copy, (*pp)->value, (*pp)->len + 1);
      *value = copy;
      *len = (*pp)->len;
    }
  }
  pthread_mutex_unlock(&s->lock);
  return st;
}

static CT_RESULT kvs__mem_del(kvs *s, const char *ns, const char *key, ct_err *err) {
  ct_status st = CT_OK;
  pthread_mutex_lock(&s->lock);
  kvs__entry **pp = kvs__mem_find(s, ns, key);
  if (pp) {
    kvs__entry *e = *pp;
    bool live = kvs__live(e, time(NULL));
    *pp = e->next;
    kvs__entry_free(e);
    if (!live) pp = NULL;
  }
  if (!pp) st = ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
  pthread_mutex_unlock(&s->lock);
  return st;
}

static CT_RESULT kvs__mem_list(kvs *s, const char *ns, json_t *arr, ct_err *err) {
  ct_status st = CT_OK;
  time_t now = time(NULL);
  pthread_mutex_lock(&s->lock);
  for (kvs__entry *e = s->impl; e && st == CT_OK; e = e->next)
    if (!strcmp(e->ns, ns) && kvs__live(e, now) && json_array_append_new(arr, json_string(e->key)) != 0)
      st = ct_fail(err, CT_ENOMEM, "out of memory");
  pthread_mutex_unlock(&s->lock);
  return st;
}

static CT_RESULT kvs__mem_sweep(kvs *s, const char *ns, ct_err *err) {
  (void)err;
  time_t now = time(NULL);
  pthread_mutex_lock(&s->lock);
  for (kvs__entry **pp = (kvs__entry **)&s->impl; *pp;) {
    kvs__entry *e = *pp;
    if (!strcmp(e->ns, ns) && !kvs__live(e, now)) {
      *pp = e->next;
      kvs__entry_free(e);
    } else {
      pp = &e->next;
    }
  }
  pthread_mutex_unlock(&s->lock);
  return CT_OK;
}

static void kvs__mem_close(kvs *s) {
  for (kvs__entry *e = s->impl, *next; e; e = next) {
    next = e->next;
    kvs__entry_free(e);
  }
  s->impl = NULL;
}

const kvs__ops kvs__memory_ops = {
    .put = kvs__mem_put,
    .get = kvs__mem_get,
    .del = kvs__mem_del,
    .list = kvs__mem_list,
    .sweep = kvs__mem_sweep,
    .close = kvs__mem_close,
};

CT_RESULT kvs__memory_open(kvs *s, const kvs_config *cfg, ct_err *err) {
  (void)cfg;
  (void)err;
  s->ops = &kvs__memory_ops;
  return CT_OK;
}
