/*
 * LocalFs and LocalJson: files under one directory.
 *
 * The directory is opened once (a symbolic link in the configured path itself is the operator's
 * choice); below it nothing is followed: every namespace directory and file is opened relative
 * to a directory descriptor with O_NOFOLLOW, so a symlink planted in the storage directory is
 * refused instead of redirecting a read or a write elsewhere. Files are created 0600 and
 * directories 0700. A write goes to a temporary file in the same directory that is written,
 * fsync'ed and renamed over the target, then the directory is fsync'ed: a crash at any point
 * leaves the old value or the new one.
 *
 * An entry with an expiry (kvs_put_ttl / kvs_put_nx with a TTL) is a file of mode 0400 whose
 * modification time is the expiry; permanent entries are 0600. LocalJson keeps such entries as
 * {"value": b64, "expires": unix-time} instead of a plain base64 string.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "kvs_int.h"

#define KVS__TTL_MODE 0400
#define KVS__FILE_MODE 0600

static CT_RESULT kvs__mkdir_p(const char *path, ct_err *err) {
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

static const char *kvs__why(int e) {
  return e == ELOOP || e == EMLINK ? "it is a symbolic link (storage never follows links)" : strerror(e);
}

/* The namespace directory, created on demand (0700), never through a symlink. */
static CT_RESULT kvs__ns_dir(kvs *s, const char *ns, bool create, int *out, ct_err *err) {
  int fd = openat(s->dirfd, ns, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && create) {
    if (mkdirat(s->dirfd, ns, 0700) != 0 && errno != EEXIST)
      return ct_fail(err, CT_EIO, "LocalFs: cannot create %s/%s: %s", s->dir, ns, strerror(errno));
    fd = openat(s->dirfd, ns, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd < 0) {
    if (errno == ENOENT) return ct_fail(err, CT_ENOTFOUND, "LocalFs: %s/%s does not exist", s->dir, ns);
    return ct_fail(err, CT_EIO, "LocalFs: cannot open %s/%s: %s", s->dir, ns,
                   errno == ENOTDIR ? "it is a symbolic link or not a directory" : kvs__why(errno));
  }
  *out = fd;
  return CT_OK;
}

/* Reads a regular file (never a link, FIFO or device). *mode and *mtime describe it. */
static CT_RESULT kvs__read_at(int dirfd, const char *name, const char *what, size_t max, uint8_t **out,
                              size_t *len, struct stat *sb, ct_err *err) {
  int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return ct_fail(err, CT_ENOTFOUND, "%s does not exist", what);
    return ct_fail(err, CT_EIO, "cannot open %s: %s", what, kvs__why(errno));
  }
  if (fstat(fd, sb) != 0 || !S_ISREG(sb->st_mode)) {
    close(fd);
    return ct_fail(err, CT_EIO, "%s is not a regular file", what);
  }
  if ((uint64_t)sb->st_size > max) {
    close(fd);
    return ct_fail(err, CT_ELIMIT, "%s is %lld bytes, over the limit of %zu", what, (long long)sb->st_size, max);
  }
  size_t size = (size_t)sb->st_size;
  uint8_t *buf = malloc(size + 1);
  if (!buf) {
    close(fd);
    return ct_fail(err, CT_ENOMEM, "out of memory reading %s", what);
  }
  size_t got = 0;
  while (got < size) {
    ssize_t n = read(fd, buf + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = errno;
      ct_wipe(buf, got);
      free(buf);
      close(fd);
      return ct_fail(err, CT_EIO, "reading %s: %s", what, n == 0 ? "file shrank" : strerror(e));
    }
    got += (size_t)n;
  }
  close(fd);
  buf[size] = 0;
  *out = buf;
  *len = size;
  return CT_OK;
}

static bool kvs__expired(const struct stat *sb, time_t now) {
  return (sb->st_mode & 0777) == KVS__TTL_MODE && sb->st_mtime <= now;
}

/* Writes `name` in dirfd atomically. KVS__IF_ABSENT links the complete temporary file into place,
 * which fails if the name exists: a reader never sees a partial file and only one of several
 * concurrent writers (other processes on a shared directory included) succeeds. */
static CT_RESULT kvs__write_at(int dirfd, const char *name, const char *what, const void *data, size_t len,
                               kvs__mode mode, unsigned ttl_s, bool *inserted, ct_err *err) {
  char tmp[64];
  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
    uint8_t r[8];
    CT_GUARD(ct_random(r, sizeof r, err));
    char hex[17];
    ct_hex_into(r, sizeof r, hex);
    /* A leading dot keeps temporary files out of listings; keys never start with one. */
    snprintf(tmp, sizeof tmp, ".tmp.%s", hex);
    fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) return ct_fail(err, CT_EIO, "cannot create a temporary file for %s: %s", what, strerror(errno));
  ct_status st = CT_OK;
  const uint8_t *p = data;
  size_t done = 0;
  while (done < len) {
    ssize_t n = write(fd, p + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      st = ct_fail(err, CT_EIO, "writing %s: %s", what, strerror(errno));
      break;
    }
    done += (size_t)n;
  }
  if (st == CT_OK && fchmod(fd, ttl_s ? KVS__TTL_MODE : KVS__FILE_MODE) != 0)
    st = ct_fail(err, CT_EIO, "chmod %s: %s", what, strerror(errno));
  if (st == CT_OK && ttl_s) {
    struct timespec times[2] = {{.tv_nsec = UTIME_NOW}, {.tv_sec = time(NULL) + (time_t)ttl_s}};
    if (futimens(fd, times) != 0) st = ct_fail(err, CT_EIO, "setting the expiry of %s: %s", what, strerror(errno));
  }
  /* Entries with an expiry are short-lived records (single-use nonces): they skip the fsyncs,
   * which would otherwise cost every handshake a disk flush. */
  if (st == CT_OK && !ttl_s && fsync(fd) != 0) st = ct_fail(err, CT_EIO, "fsync %s: %s", what, strerror(errno));
  close(fd);
  if (st == CT_OK && mode == KVS__IF_ABSENT) {
    if (linkat(dirfd, tmp, dirfd, name, 0) == 0) {
      *inserted = true;
    } else if (errno == EEXIST) {
      /* An expired entry counts as absent. Keys written this way are never reused before they
       * expire (session ids), so replacing one is not raced in practice. */
      struct stat sb;
      if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode) &&
          kvs__expired(&sb, time(NULL))) {
        if (renameat(dirfd, tmp, dirfd, name) == 0) {
          *inserted = true;
          tmp[0] = 0;
        } else {
          st = ct_fail(err, CT_EIO, "replacing the expired %s: %s", what, strerror(errno));
        }
      } else {
        *inserted = false;
      }
    } else {
      st = ct_fail(err, CT_EIO, "creating %s: %s", what, strerror(errno));
    }
    if (tmp[0]) unlinkat(dirfd, tmp, 0);
  } else if (st == CT_OK) {
    /* rename(2) replaces a symlink at the target rather than following it. */
    if (renameat(dirfd, tmp, dirfd, name) != 0) st = ct_fail(err, CT_EIO, "rename to %s: %s", what, strerror(errno));
    if (inserted) *inserted = st == CT_OK;
  }
  if (st != CT_OK && tmp[0]) unlinkat(dirfd, tmp, 0);
  /* The rename is durable once the directory is. */
  if (st == CT_OK && !ttl_s && fsync(dirfd) != 0)
    st = ct_fail(err, CT_EIO, "fsync of the directory of %s: %s", what, strerror(errno));
  return st;
}

/* --- LocalFs ----------------------------------------------------------------------------------- */

/* Trustee's layout: <dir>/<ns>/<key with '/' written as the 4 characters \x2F>. */
static CT_RESULT kvs__fs_name(const char *key, char *out, size_t cap, ct_err *err) {
  size_t n = 0;
  for (const char *p = key; *p; p++) {
    CT_ENSURE(n + 5 < cap, err, CT_ELIMIT, "storage key too long for a file name");
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

static CT_RESULT kvs__fs_put(kvs *s, const char *ns, const char *key, const void *value, size_t len, kvs__mode mode,
                             unsigned ttl_s, bool *inserted, ct_err *err) {
  char name[256], what[128];
  if (kvs__fs_name(key, name, sizeof name, err) != CT_OK) return ct_err_prefix(err, "LocalFs: put %s/%.64s: ", ns, key);
  snprintf(what, sizeof what, "LocalFs %s/%.64s", ns, key);
  int nsfd = -1;
  CT_GUARD(kvs__ns_dir(s, ns, true, &nsfd, err));
  ct_status st = kvs__write_at(nsfd, name, what, value, len, mode, ttl_s, inserted, err);
  close(nsfd);
  return st;
}

static CT_RESULT kvs__fs_get(kvs *s, const char *ns, const char *key, uint8_t **value, size_t *len, ct_err *err) {
  char name[256], what[128];
  if (kvs__fs_name(key, name, sizeof name, err) != CT_OK) return ct_err_prefix(err, "LocalFs: get %s/%.64s: ", ns, key);
  snprintf(what, sizeof what, "LocalFs %s/%.64s", ns, key);
  int nsfd = -1;
  ct_status st = kvs__ns_dir(s, ns, false, &nsfd, err);
  if (st == CT_ENOTFOUND) return ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
  CT_GUARD(st);
  struct stat sb;
  uint8_t *data = NULL;
  size_t n = 0;
  st = kvs__read_at(nsfd, name, what, KVS_MAX_VALUE, &data, &n, &sb, err);
  close(nsfd);
  if (st == CT_OK && kvs__expired(&sb, time(NULL))) {
    ct_wipe(data, n);
    free(data);
    st = CT_ENOTFOUND;
  }
  if (st == CT_ENOTFOUND) return ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
  CT_GUARD(st);
  *value = data;
  *len = n;
  return CT_OK;
}

static CT_RESULT kvs__fs_del(kvs *s, const char *ns, const char *key, ct_err *err) {
  char name[256];
  if (kvs__fs_name(key, name, sizeof name, err) != CT_OK) return ct_err_prefix(err, "LocalFs: delete %s/%.64s: ", ns, key);
  int nsfd = -1;
  ct_status st = kvs__ns_dir(s, ns, false, &nsfd, err);
  if (st == CT_ENOTFOUND) return ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
  CT_GUARD(st);
  struct stat sb;
  bool expired = fstatat(nsfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && kvs__expired(&sb, time(NULL));
  if (unlinkat(nsfd, name, 0) == 0) st = expired ? ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns) : CT_OK;
  else if (errno == ENOENT) st = ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
  else st = ct_fail(err, CT_EIO, "LocalFs: delete %s/%.64s: %s", ns, key, strerror(errno));
  if (st == CT_OK) fsync(nsfd);
  close(nsfd);
  return st;
}

/* Calls fn for each entry name of the namespace (dot files, i.e. temporaries, skipped). */
static CT_RESULT kvs__fs_each(kvs *s, const char *ns, ct_status (*fn)(int nsfd, const char *name, void *arg),
                              void *arg, ct_err *err) {
  int nsfd = -1;
  ct_status st = kvs__ns_dir(s, ns, false, &nsfd, err);
  if (st == CT_ENOTFOUND) return CT_OK;
  CT_GUARD(st);
  int lfd = dup(nsfd);
  DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
  if (!d) {
    if (lfd >= 0) close(lfd);
    close(nsfd);
    return ct_fail(err, CT_EIO, "LocalFs: cannot list %s/%s: %s", s->dir, ns, strerror(errno));
  }
  struct dirent *de;
  size_t count = 0;
  while (st == CT_OK && (de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    if (++count > KVS_MAX_LIST) {
      st = ct_fail(err, CT_ELIMIT, "LocalFs: %s/%s holds more than %u entries", s->dir, ns, KVS_MAX_LIST);
      break;
    }
    st = fn(nsfd, de->d_name, arg);
  }
  closedir(d);
  close(nsfd);
  return st;
}

static CT_RESULT kvs__fs_list_one(int nsfd, const char *name, void *arg) {
  struct stat sb;
  if (fstatat(nsfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode) || kvs__expired(&sb, time(NULL)))
    return CT_OK;
  char key[KVS_MAX_KEY + 1];
  size_t n = 0;
  for (const char *p = name; *p && n < KVS_MAX_KEY; p++) {
    if (!strncmp(p, "\\x2F", 4)) {
      key[n++] = '/';
      p += 3;
    } else {
      key[n++] = *p;
    }
  }
  key[n] = 0;
  return json_array_append_new(arg, json_string(key)) == 0 ? CT_OK : CT_ENOMEM;
}

static CT_RESULT kvs__fs_list(kvs *s, const char *ns, json_t *arr, ct_err *err) {
  ct_status st = kvs__fs_each(s, ns, kvs__fs_list_one, arr, err);
  if (st == CT_ENOMEM) return ct_fail(err, CT_ENOMEM, "out of memory");
  return st;
}

static CT_RESULT kvs__fs_sweep_one(int nsfd, const char *name, void *arg) {
  struct stat sb;
  if (fstatat(nsfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode) && kvs__expired(&sb, *(time_t *)arg))
    unlinkat(nsfd, name, 0);
  return CT_OK;
}

static CT_RESULT kvs__fs_sweep(kvs *s, const char *ns, ct_err *err) {
  time_t now = time(NULL);
  return kvs__fs_each(s, ns, kvs__fs_sweep_one, &now, err);
}

static CT_RESULT kvs__local_ping(kvs *s, ct_err *err) {
  struct stat sb;
  CT_ENSURE(fstat(s->dirfd, &sb) == 0 && S_ISDIR(sb.st_mode) && sb.st_nlink > 0, err, CT_EIO,
            "%s: storage directory %s is gone", kvs_type_name(s->type), s->dir);
  CT_ENSURE(faccessat(s->dirfd, ".", W_OK, AT_EACCESS) == 0, err, CT_EIO, "%s: storage directory %s is not writable: %s",
            kvs_type_name(s->type), s->dir, strerror(errno));
  return CT_OK;
}

static void kvs__local_close(kvs *s) {
  if (s->dirfd >= 0) close(s->dirfd);
  s->dirfd = -1;
}

const kvs__ops kvs__localfs_ops = {
    .put = kvs__fs_put,
    .get = kvs__fs_get,
    .del = kvs__fs_del,
    .list = kvs__fs_list,
    .sweep = kvs__fs_sweep,
    .ping = kvs__local_ping,
    .close = kvs__local_close,
};

/* --- LocalJson --------------------------------------------------------------------------------- */

static CT_RESULT kvs__json_load(kvs *s, const char *ns, json_t **doc, char *name, size_t cap, ct_err *err) {
  snprintf(name, cap, "%s.json", ns);
  char what[96];
  snprintf(what, sizeof what, "LocalJson %s", name);
  uint8_t *data = NULL;
  size_t len = 0;
  struct stat sb;
  ct_status st = kvs__read_at(s->dirfd, name, what, KVS_MAX_VALUE * 4u, &data, &len, &sb, err);
  if (st == CT_ENOTFOUND) {
    *doc = json_object();
    return *doc ? CT_OK : ct_fail(err, CT_ENOMEM, "out of memory");
  }
  CT_GUARD(st);
  st = ct_json_parse((const char *)data, len, 4, doc, err);
  ct_wipe(data, len);
  free(data);
  if (st == CT_OK && !json_is_object(*doc)) {
    json_decref(*doc);
    *doc = NULL;
    st = ct_fail(err, CT_EINVAL, "LocalJson: %s is not a JSON object", name);
  }
  return st;
}

static CT_RESULT kvs__json_store(kvs *s, const char *name, json_t *doc, ct_err *err) {
  char *text = NULL;
  CT_GUARD(ct_json_dump(doc, &text, err));
  char what[96];
  snprintf(what, sizeof what, "LocalJson %s", name);
  size_t n = strlen(text);
  ct_status st = kvs__write_at(s->dirfd, name, what, text, n, KVS__REPLACE, 0, NULL, err);
  ct_wipe(text, n);
  free(text);
  return st;
}

/* The live base64 text of an entry, or NULL (absent or expired). */
static const char *kvs__json_value(json_t *v, time_t now) {
  if (json_is_string(v)) return json_string_value(v);
  if (!json_is_object(v)) return NULL;
  json_t *exp = json_object_get(v, "expires");
  if (json_is_integer(exp) && json_integer_value(exp) <= (json_int_t)now) return NULL;
  return json_string_value(json_object_get(v, "value"));
}

static CT_RESULT kvs__json_put(kvs *s, const char *ns, const char *key, const void *value, size_t len, kvs__mode mode,
                               unsigned ttl_s, bool *inserted, ct_err *err) {
  char name[96];
  json_t *doc = NULL;
  char *b64 = NULL;
  pthread_mutex_lock(&s->lock);
  ct_status st = kvs__json_load(s, ns, &doc, name, sizeof name, err);
  time_t now = time(NULL);
  if (st == CT_OK && mode == KVS__IF_ABSENT && kvs__json_value(json_object_get(doc, key), now)) {
    *inserted = false;
  } else if (st == CT_OK) {
    st = ct_b64_encode(CT_B64_STD, value, len, &b64, err);
    json_t *v = NULL;
    if (st == CT_OK)
      v = ttl_s ? json_pack("{s:s, s:I}", "value", b64, "expires", (json_int_t)(now + (time_t)ttl_s)) : json_string(b64);
    if (st == CT_OK) st = ct_json_set_new(doc, key, v, err);
    if (st == CT_OK) st = kvs__json_store(s, name, doc, err);
    if (st == CT_OK && inserted) *inserted = true;
  }
  pthread_mutex_unlock(&s->lock);
  if (b64) ct_wipe(b64, strlen(b64));
  free(b64);
  json_decref(doc);
  return st;
}

static CT_RESULT kvs__json_get(kvs *s, const char *ns, const char *key, uint8_t **value, size_t *len, ct_err *err) {
  char name[96];
  json_t *doc = NULL;
  pthread_mutex_lock(&s->lock);
  ct_status st = kvs__json_load(s, ns, &doc, name, sizeof name, err);
  pthread_mutex_unlock(&s->lock);
  CT_GUARD(st);
  const char *b64 = kvs__json_value(json_object_get(doc, key), time(NULL));
  if (!b64) st = ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
  else st = ct_b64_decode(CT_B64_STD, b64, strlen(b64), value, len, err);
  json_decref(doc);
  return st;
}

static CT_RESULT kvs__json_del(kvs *s, const char *ns, const char *key, ct_err *err) {
  char name[96];
  json_t *doc = NULL;
  pthread_mutex_lock(&s->lock);
  ct_status st = kvs__json_load(s, ns, &doc, name, sizeof name, err);
  if (st == CT_OK) {
    bool live = kvs__json_value(json_object_get(doc, key), time(NULL)) != NULL;
    if (json_object_del(doc, key) != 0 || !live) st = ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
    else st = kvs__json_store(s, name, doc, err);
  }
  pthread_mutex_unlock(&s->lock);
  json_decref(doc);
  return st;
}

static CT_RESULT kvs__json_list(kvs *s, const char *ns, json_t *arr, ct_err *err) {
  char name[96];
  json_t *doc = NULL;
  pthread_mutex_lock(&s->lock);
  ct_status st = kvs__json_load(s, ns, &doc, name, sizeof name, err);
  pthread_mutex_unlock(&s->lock);
  CT_GUARD(st);
  const char *k;
  json_t *v;
  time_t now = time(NULL);
  json_object_foreach(doc, k, v) {
    if (st == CT_OK && kvs__json_value(v, now) && json_array_append_new(arr, json_string(k)) != 0)
      st = ct_fail(err, CT_ENOMEM, "out of memory");
  }
  json_decref(doc);
  return st;
}

static CT_RESULT kvs__json_sweep(kvs *s, const char *ns, ct_err *err) {
  char name[96];
  json_t *doc = NULL;
  pthread_mutex_lock(&s->lock);
  ct_status st = kvs__json_load(s, ns, &doc, name, sizeof name, err);
  bool changed = false;
  const char *k;
  json_t *v;
  void *tmp;
  time_t now = time(NULL);
  if (st == CT_OK) {
    json_object_foreach_safe(doc, tmp, k, v) {
      if (!kvs__json_value(v, now)) {
        json_object_del(doc, k);
        changed = true;
      }
    }
    if (changed) st = kvs__json_store(s, name, doc, err);
  }
  pthread_mutex_unlock(&s->lock);
  json_decref(doc);
  return st;
}

const kvs__ops kvs__localjson_ops = {
    .put = kvs__json_put,
    .get = kvs__json_get,
    .del = kvs__json_del,
    .list = kvs__json_list,
    .sweep = kvs__json_sweep,
    .ping = kvs__local_ping,
    .close = kvs__local_close,
};

CT_RESULT kvs__local_open(kvs *s, const kvs_config *cfg, ct_err *err) {
  s->ops = cfg->type == KVS_LOCAL_FS ? &kvs__localfs_ops : &kvs__localjson_ops;
  CT_ENSURE(cfg->dir_path && *cfg->dir_path, err, CT_EINVAL, "%s storage needs a directory path",
            kvs_type_name(cfg->type));
  CT_GUARD(kvs__mkdir_p(cfg->dir_path, err));
  CT_GUARD(ct_strdup(cfg->dir_path, &s->dir, err));
  s->dirfd = open(cfg->dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  CT_ENSURE(s->dirfd >= 0, err, CT_EIO, "cannot open storage directory %s: %s", cfg->dir_path, strerror(errno));
  return CT_OK;
}

/* Clears group and other permission bits of a regular file or directory, never through a link. */
static CT_RESULT kvs__owner_only(int dirfd, const char *name, const char *dir, ct_err *err) {
  struct stat pre;
  /* nothing but files and directories is opened (a device or FIFO planted here is left alone) */
  if (fstatat(dirfd, name, &pre, AT_SYMLINK_NOFOLLOW) != 0 || !(S_ISREG(pre.st_mode) || S_ISDIR(pre.st_mode)))
    return CT_OK;
  int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return errno == ELOOP ? CT_OK : ct_fail(err, CT_EIO, "open %s/%s: %s", dir, name, strerror(errno));
  struct stat st;
  ct_status rc = CT_OK;
  if (fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) && (st.st_mode & 077) &&
      fchmod(fd, st.st_mode & 07700) != 0)
    rc = ct_fail(err, CT_EIO, "chmod %s/%s: %s", dir, name, strerror(errno));
  close(fd);
  return rc;
}

CT_RESULT kvs_chown(kvs *s, unsigned uid, unsigned gid, ct_err *err) {
  if (s->dirfd < 0) return CT_OK;
  CT_ENSURE(fchown(s->dirfd, uid, gid) == 0, err, CT_EIO, "chown %s: %s", s->dir, strerror(errno));
  CT_GUARD(kvs__owner_only(s->dirfd, ".", s->dir, err));
  int fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d && fd >= 0) close(fd);
  CT_ENSURE(d, err, CT_EIO, "cannot list %s: %s", s->dir, strerror(errno));
  struct dirent *de;
  ct_status st = CT_OK;
  while (st == CT_OK && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    if (fchownat(s->dirfd, de->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
      st = ct_fail(err, CT_EIO, "chown %s/%s: %s", s->dir, de->d_name, strerror(errno));
    if (st == CT_OK) st = kvs__owner_only(s->dirfd, de->d_name, s->dir, err);
    int sub = openat(s->dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *sd = sub >= 0 ? fdopendir(sub) : NULL;
    if (!sd && sub >= 0) close(sub);
    struct dirent *e2;
    while (st == CT_OK && sd && (e2 = readdir(sd))) {
      if (!strcmp(e2->d_name, ".") || !strcmp(e2->d_name, "..")) continue;
      if (fchownat(dirfd(sd), e2->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
        st = ct_fail(err, CT_EIO, "chown %s/%s/%s: %s", s->dir, de->d_name, e2->d_name, strerror(errno));
      if (st == CT_OK) st = kvs__owner_only(dirfd(sd), e2->d_name, s->dir, err);
    }
    if (sd) closedir(sd);
  }
  closedir(d);
  return st;
}
