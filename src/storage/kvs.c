#include "kvs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_mem.h"

/* Memory backend: one JSON object per namespace mapping key -> base64 value would cost copies;
 * a simple chained list per namespace is enough for admin-sized data sets. */
typedef struct kvs__entry {
  char *ns;
  char *key;
  uint8_t *value;
  size_t len;
  struct kvs__entry *next;
} kvs__entry;

struct kvs {
  kvs_type type;
  char *dir;
  int dirfd; /* every file access is relative to this, so it survives a privilege drop */
  pthread_mutex_t lock;
  kvs__entry *entries; /* memory backend */
};

ct_status kvs_check_key(const char *key, ct_err *err) {
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
  CT_ENSURE(!strstr(key, ".."), err, CT_EINVAL, "storage key must not contain \"..\"");
  return CT_OK;
}

static ct_status kvs__check_ns(const char *ns, ct_err *err) {
  for (const char *p = ns; *p; p++)
    CT_ENSURE((*p >= 'a' && *p <= 'z') || *p == '_' || *p == '-' || (*p >= '0' && *p <= '9'), err,
              CT_EINTERNAL, "bad storage namespace \"%s\"", ns);
  return CT_OK;
}

static ct_status kvs__mkdir_p(const char *path, ct_err *err) {
  char tmp[4096];
  CT_ENSURE(strlen(path) < sizeof tmp, err, CT_ELIMIT, "path too long: %s", path);
  strcpy(tmp, path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
      return ct_fail(err, CT_EIO, "cannot create directory %s: %s", tmp, strerror(errno));
    *p = '/';
  }
  if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
    return ct_fail(err, CT_EIO, "cannot create directory %s: %s", tmp, strerror(errno));
  return CT_OK;
}

ct_status kvs_open(const kvs_config *cfg, kvs **out, ct_err *err) {
  kvs *s = calloc(1, sizeof *s);
  CT_ENSURE(s, err, CT_ENOMEM, "out of memory");
  s->type = cfg->type;
  s->dirfd = -1;
  pthread_mutex_init(&s->lock, NULL);
  if (cfg->type != KVS_MEMORY) {
    ct_status st;
    if (!cfg->dir_path) st = ct_fail(err, CT_EINVAL, "storage backend needs a directory path");
    else st = kvs__mkdir_p(cfg->dir_path, err);
    if (st == CT_OK) st = ct_strdup(cfg->dir_path, &s->dir, err);
    if (st == CT_OK) {
      s->dirfd = open(cfg->dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (s->dirfd < 0) st = ct_fail(err, CT_EIO, "cannot open storage directory %s: %s", cfg->dir_path, strerror(errno));
    }
    if (st != CT_OK) {
      kvs_close(s);
      return st;
    }
  }
  *out = s;
  return CT_OK;
}

void kvs_close(kvs *s) {
  if (!s) return;
  for (kvs__entry *e = s->entries, *next; e; e = next) {
    next = e->next;
    ct_wipe(e->value, e->len);
    free(e->value);
    free(e->key);
    free(e->ns);
    free(e);
  }
  pthread_mutex_destroy(&s->lock);
  if (s->dirfd >= 0) close(s->dirfd);
  free(s->dir);
  free(s);
}

/* LocalFs (Trustee layout): <dir>/<ns>/<key with '/' written as the 4 characters \x2F>; the
 * path returned is relative to the storage directory. */
static ct_status kvs__fs_path(kvs *s, const char *ns, const char *key, char *out, size_t cap,
                              ct_err *err) {
  (void)s;
  size_t n = (size_t)snprintf(out, cap, "%s/", ns);
  for (const char *p = key; *p; p++) {
    CT_ENSURE(n + 5 < cap, err, CT_ELIMIT, "storage path too long");
    if (*p == '/') {
      memcpy(out + n, "\\x2F", 4);
      n += 4;
    } else {
      out[n++] = *p;
    }
  }
  out[n] = 0;
  return CT_OK;
}

static ct_status kvs__json_load(kvs *s, const char *ns, json_t **doc, char *path, size_t cap,
                                ct_err *err) {
  snprintf(path, cap, "%s.json", ns);
  uint8_t *data = NULL;
  size_t len = 0;
  ct_status st = ct_file_read_at(s->dirfd, path, KVS_MAX_VALUE * 4u, &data, &len, err);
  if (st == CT_ENOTFOUND) {
    *doc = json_object();
    return *doc ? CT_OK : ct_fail(err, CT_ENOMEM, "out of memory");
  }
  CT_GUARD(st);
  st = ct_json_parse((const char *)data, len, 4, doc, err);
  free(data);
  if (st == CT_OK && !json_is_object(*doc)) {
    json_decref(*doc);
    *doc = NULL;
    st = ct_fail(err, CT_EINVAL, "%s is not a JSON object", path);
  }
  return st;
}

static ct_status kvs__json_store(kvs *s, const char *path, json_t *doc, ct_err *err) {
  char *text = NULL;
  CT_GUARD(ct_json_dump(doc, &text, err));
  ct_status st = ct_file_write_atomic_at(s->dirfd, path, text, strlen(text), 0600, err);
  free(text);
  return st;
}

ct_status kvs_put(kvs *s, const char *ns, const char *key, const void *value, size_t len, ct_err *err) {
  CT_GUARD(kvs__check_ns(ns, err));
  CT_GUARD(kvs_check_key(key, err));
  CT_ENSURE(len <= KVS_MAX_VALUE, err, CT_ELIMIT, "value of %zu bytes exceeds the %u-byte limit", len,
            KVS_MAX_VALUE);
  ct_status st = CT_OK;
  pthread_mutex_lock(&s->lock);
  if (s->type == KVS_MEMORY) {
    uint8_t *copy = malloc(len + 1);
    if (!copy) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      goto out;
    }
    if (len) memcpy(copy, value, len);
    copy[len] = 0;
    for (kvs__entry *e = s->entries; e; e = e->next) {
      if (!strcmp(e->ns, ns) && !strcmp(e->key, key)) {
        ct_wipe(e->value, e->len);
        free(e->value);
        e->value = copy;
        e->len = len;
        goto out;
      }
    }
    kvs__entry *e = calloc(1, sizeof *e);
    if (!e || ct_strdup(ns, &e->ns, err) != CT_OK || ct_strdup(key, &e->key, err) != CT_OK) {
      if (e) { free(e->ns); free(e->key); }
      free(e);
      free(copy);
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      goto out;
    }
    e->value = copy;
    e->len = len;
    e->next = s->entries;
    s->entries = e;
  } else if (s->type == KVS_LOCAL_FS) {
    char path[4096];
    if (mkdirat(s->dirfd, ns, 0700) != 0 && errno != EEXIST) {
      st = ct_fail(err, CT_EIO, "cannot create %s/%s: %s", s->dir, ns, strerror(errno));
      goto out;
    }
    CT_GUARD_GOTO(st, kvs__fs_path(s, ns, key, path, sizeof path, err), out);
    st = ct_file_write_atomic_at(s->dirfd, path, value, len, 0600, err);
  } else {
    char path[4096];
    json_t *doc = NULL;
    CT_GUARD_GOTO(st, kvs__json_load(s, ns, &doc, path, sizeof path, err), out);
    char *b64 = NULL;
    st = ct_b64_encode(CT_B64_STD, value, len, &b64, err);
    if (st == CT_OK) st = ct_json_set_new(doc, key, json_string(b64), err);
    if (st == CT_OK) st = kvs__json_store(s, path, doc, err);
    free(b64);
    json_decref(doc);
  }
out:
  pthread_mutex_unlock(&s->lock);
  return st;
}

ct_status kvs_get(kvs *s, const char *ns, const char *key, uint8_t **value, size_t *len, ct_err *err) {
  CT_GUARD(kvs__check_ns(ns, err));
  CT_GUARD(kvs_check_key(key, err));
  ct_status st = ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
  pthread_mutex_lock(&s->lock);
  if (s->type == KVS_MEMORY) {
    for (kvs__entry *e = s->entries; e; e = e->next) {
      if (!strcmp(e->ns, ns) && !strcmp(e->key, key)) {
        uint8_t *copy = malloc(e->len + 1);
        if (!copy) {
          st = ct_fail(err, CT_ENOMEM, "out of memory");
          break;
        }
        memcpy(copy, e->value, e->len + 1);
        *value = copy;
        *len = e->len;
        st = CT_OK;
        break;
      }
    }
  } else if (s->type == KVS_LOCAL_FS) {
    char path[4096];
    st = kvs__fs_path(s, ns, key, path, sizeof path, err);
    if (st == CT_OK) st = ct_file_read_at(s->dirfd, path, KVS_MAX_VALUE, value, len, err);
    if (st == CT_ENOTFOUND) st = ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
  } else {
    char path[4096];
    json_t *doc = NULL;
    st = kvs__json_load(s, ns, &doc, path, sizeof path, err);
    if (st == CT_OK) {
      json_t *v = json_object_get(doc, key);
      if (!json_is_string(v)) st = ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
      else st = ct_b64_decode(CT_B64_STD, json_string_value(v), json_string_length(v), value, len, err);
      json_decref(doc);
    }
  }
  pthread_mutex_unlock(&s->lock);
  return st;
}

ct_status kvs_delete(kvs *s, const char *ns, const char *key, ct_err *err) {
  CT_GUARD(kvs__check_ns(ns, err));
  CT_GUARD(kvs_check_key(key, err));
  ct_status st = ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
  pthread_mutex_lock(&s->lock);
  if (s->type == KVS_MEMORY) {
    for (kvs__entry **pp = &s->entries; *pp; pp = &(*pp)->next) {
      kvs__entry *e = *pp;
      if (!strcmp(e->ns, ns) && !strcmp(e->key, key)) {
        *pp = e->next;
        ct_wipe(e->value, e->len);
        free(e->value);
        free(e->key);
        free(e->ns);
        free(e);
        st = CT_OK;
        break;
      }
    }
  } else if (s->type == KVS_LOCAL_FS) {
    char path[4096];
    st = kvs__fs_path(s, ns, key, path, sizeof path, err);
    if (st == CT_OK) {
      if (unlinkat(s->dirfd, path, 0) == 0) st = CT_OK;
      else if (errno == ENOENT) st = ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
      else st = ct_fail(err, CT_EIO, "cannot delete %s: %s", path, strerror(errno));
    }
  } else {
    char path[4096];
    json_t *doc = NULL;
    st = kvs__json_load(s, ns, &doc, path, sizeof path, err);
    if (st == CT_OK) {
      if (json_object_del(doc, key) != 0) st = ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
      else st = kvs__json_store(s, path, doc, err);
      json_decref(doc);
    }
  }
  pthread_mutex_unlock(&s->lock);
  return st;
}

ct_status kvs_chown(kvs *s, unsigned uid, unsigned gid, ct_err *err) {
  if (s->dirfd < 0) return CT_OK;
  CT_ENSURE(fchown(s->dirfd, uid, gid) == 0, err, CT_EIO, "chown %s: %s", s->dir, strerror(errno));
  int fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  CT_ENSURE(d, err, CT_EIO, "cannot list %s: %s", s->dir, strerror(errno));
  struct dirent *de;
  ct_status st = CT_OK;
  while (st == CT_OK && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    if (fchownat(s->dirfd, de->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
      st = ct_fail(err, CT_EIO, "chown %s/%s: %s", s->dir, de->d_name, strerror(errno));
    int sub = openat(s->dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *sd = sub >= 0 ? fdopendir(sub) : NULL;
    if (!sd && sub >= 0) close(sub);
    struct dirent *e2;
    while (st == CT_OK && sd && (e2 = readdir(sd))) {
      if (!strcmp(e2->d_name, ".") || !strcmp(e2->d_name, "..")) continue;
      if (fchownat(dirfd(sd), e2->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
        st = ct_fail(err, CT_EIO, "chown %s/%s/%s: %s", s->dir, de->d_name, e2->d_name, strerror(errno));
    }
    if (sd) closedir(sd);
  }
  closedir(d);
  return st;
}

static int kvs__strcmp(const void *a, const void *b) {
  return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

ct_status kvs_list(kvs *s, const char *ns, json_t **keys, ct_err *err) {
  CT_GUARD(kvs__check_ns(ns, err));
  json_t *arr = json_array();
  CT_ENSURE(arr, err, CT_ENOMEM, "out of memory");
  ct_status st = CT_OK;
  pthread_mutex_lock(&s->lock);
  if (s->type == KVS_MEMORY) {
    for (kvs__entry *e = s->entries; e && st == CT_OK; e = e->next)
      if (!strcmp(e->ns, ns) && json_array_append_new(arr, json_string(e->key)) != 0)
        st = ct_fail(err, CT_ENOMEM, "out of memory");
  } else if (s->type == KVS_LOCAL_FS) {
    int nsfd = openat(s->dirfd, ns, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = nsfd >= 0 ? fdopendir(nsfd) : NULL;
    if (!d && nsfd >= 0) close(nsfd);
    struct dirent *de;
    while (d && st == CT_OK && (de = readdir(d))) {
      if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp")) continue;
      char key[KVS_MAX_KEY + 1];
      size_t n = 0;
      for (const char *p = de->d_name; *p && n < KVS_MAX_KEY; p++) {
        if (!strncmp(p, "\\x2F", 4)) {
          key[n++] = '/';
          p += 3;
        } else {
          key[n++] = *p;
        }
      }
      key[n] = 0;
      if (json_array_append_new(arr, json_string(key)) != 0) st = ct_fail(err, CT_ENOMEM, "out of memory");
    }
    if (d) closedir(d);
  } else {
    char path[4096];
    json_t *doc = NULL;
    st = kvs__json_load(s, ns, &doc, path, sizeof path, err);
    const char *k;
    json_t *v;
    if (st == CT_OK) {
      json_object_foreach(doc, k, v) {
        if (json_array_append_new(arr, json_string(k)) != 0) st = ct_fail(err, CT_ENOMEM, "out of memory");
      }
      json_decref(doc);
    }
  }
  pthread_mutex_unlock(&s->lock);
  if (st != CT_OK) {
    json_decref(arr);
    return st;
  }
  /* Sorted output so listings are stable across backends. */
  size_t n = json_array_size(arr);
  json_t **items = malloc((n ? n : 1) * sizeof *items);
  if (!items) {
    json_decref(arr);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < n; i++) items[i] = json_incref(json_array_get(arr, i));
  qsort(items, n, sizeof *items, kvs__strcmp);
  json_array_clear(arr);
  for (size_t i = 0; i < n; i++) json_array_append_new(arr, items[i]);
  free(items);
  *keys = arr;
  return CT_OK;
}
