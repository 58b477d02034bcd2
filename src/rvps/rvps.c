#include "rvps.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_mem.h"

#define RVPS_NS "reference_value"
#define RVPS_FILE_MAX (8u << 20)

struct rvps {
  kvs *store;
  char *file;            /* the LocalJson list file, or NULL */
  int dirfd;             /* its directory, opened once: still usable after dropping privileges */
  const char *base;      /* its name in that directory */
  bool made_dir;         /* rvps_new_file created that directory */
  pthread_mutex_t lock;  /* file mode: guards the cache and read-modify-write */
  json_t *byname;        /* file mode: name -> value, as last read */
  struct stat seen;      /* the file the cache was read from */
};

CT_RESULT rvps_new(kvs *store, rvps **out, ct_err *err) {
  rvps *r = calloc(1, sizeof *r);
  CT_ENSURE(r, err, CT_ENOMEM, "out of memory");
  r->store = store;
  *out = r;
  return CT_OK;
}

void rvps_free(rvps *r) {
  if (!r) return;
  if (r->file) {
    if (r->dirfd >= 0) close(r->dirfd);
    pthread_mutex_destroy(&r->lock);
    json_decref(r->byname);
    free(r->file);
  }
  free(r);
}

/* The list file parsed; every entry must be an object with a string name. */
static CT_RESULT rvps__read_list(const rvps *r, json_t **list, ct_err *err) {
  uint8_t *text = NULL;
  size_t len = 0;
  if (ct_file_read_at(r->dirfd, r->base, RVPS_FILE_MAX, &text, &len, err) != CT_OK)
    return ct_err_prefix(err, "reference values file %s: ", r->file);
  ct_status st = ct_json_parse((const char *)text, len, 32, list, err);
  free(text);
  if (st != CT_OK) return ct_err_prefix(err, "reference values file %s: ", r->file);
  if (!json_is_array(*list)) {
    json_decref(*list);
    return ct_fail(err, CT_EINVAL, "reference values file %s: not a JSON list of reference values", r->file);
  }
  size_t i;
  json_t *e;
  json_array_foreach(*list, i, e) {
    if (!json_is_string(json_object_get(e, "name"))) {
      json_decref(*list);
      return ct_fail(err, CT_EINVAL, "reference values file %s: entry %zu has no \"name\"", r->file, i + 1);
    }
  }
  return CT_OK;
}

static bool rvps__same_file(const struct stat *a, const struct stat *b) {
  return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
         a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
         a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Re-reads the file when it is not the one cached (called with the lock held). A file that
 * became unreadable or malformed fails the query: no stale values once it changed. */
static CT_RESULT rvps__refresh(rvps *r, ct_err *err) {
  struct stat now;
  if (fstatat(r->dirfd, r->base, &now, 0) != 0)
    return ct_fail(err, errno == ENOENT ? CT_ENOTFOUND : CT_EIO, "reference values file %s: %s", r->file, strerror(errno));
  if (r->byname && rvps__same_file(&now, &r->seen)) return CT_OK;
  json_t *list = NULL;
  CT_GUARD(rvps__read_list(r, &list, err));
  json_t *byname = json_object();
  size_t i;
  json_t *e;
  json_array_foreach(list, i, e) {
    json_t *v = json_object_get(e, "value");
    if (byname && json_object_set(byname, json_string_value(json_object_get(e, "name")), v ? v : json_null()) != 0) {
      json_decref(byname);
      byname = NULL;
    }
  }
  json_decref(list);
  CT_ENSURE(byname, err, CT_ENOMEM, "out of memory reading reference values");
  json_decref(r->byname);
  r->byname = byname;
  r->seen = now;
  return CT_OK;
}

CT_RESULT rvps_new_file(const char *path, rvps **out, ct_err *err) {
  CT_ENSURE(path && *path && strlen(path) < 4096, err, CT_EINVAL, "reference values file: empty or too long a path");
  rvps *r = calloc(1, sizeof *r);
  CT_ENSURE(r, err, CT_ENOMEM, "out of memory");
  ct_status st = ct_strdup(path, &r->file, err);
  if (st != CT_OK) {
    free(r);
    return st;
  }
  pthread_mutex_init(&r->lock, NULL);
  char *slash = strrchr(r->file, '/');
  r->base = slash ? slash + 1 : r->file;
  if (slash == r->file) r->dirfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  else if (slash) {
    *slash = 0;
    /* as Trustee, the directory is created when missing */
    for (char *p = r->file + 1; *p; p++) {
      if (*p != '/') continue;
      *p = 0;
      (void)mkdir(r->file, 0700);
      *p = '/';
    }
    r->made_dir = mkdir(r->file, 0700) == 0;
    r->dirfd = open(r->file, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    *slash = '/';
  } else {
    r->dirfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }
  if (r->dirfd < 0 || !*r->base)
    st = ct_fail(err, CT_EIO, "reference values file %s: %s", r->file,
                 *r->base ? strerror(errno) : "names a directory, not a file");
  struct stat sb;
  if (st == CT_OK && fstatat(r->dirfd, r->base, &sb, 0) != 0 && errno == ENOENT) {
    /* as Trustee: a missing store starts empty (its directory must exist) */
    if (ct_file_write_atomic_at(r->dirfd, r->base, "[]", 2, 0600, err) != CT_OK)
      st = ct_err_prefix(err, "reference values file %s: ", r->file);
  }
  if (st == CT_OK) st = rvps__refresh(r, err);
  if (st != CT_OK) {
    rvps_free(r);
    return st;
  }
  *out = r;
  return CT_OK;
}

CT_RESULT rvps_chown(rvps *r, unsigned uid, unsigned gid, ct_err *err) {
  if (!r->file) return CT_OK;
  if (fchownat(r->dirfd, r->base, uid, gid, AT_SYMLINK_NOFOLLOW) != 0 && errno != EROFS)
    return ct_fail(err, CT_EIO, "reference values file %s: cannot hand it to the service user: %s", r->file,
                   strerror(errno));
  if (r->made_dir && fchown(r->dirfd, uid, gid) != 0)
    return ct_fail(err, CT_EIO, "reference values file %s: cannot hand its directory to the service user: %s",
                   r->file, strerror(errno));
  return CT_OK;
}

/* Adds or replaces the named entries of the list file (Trustee's LocalJson set). */
static CT_RESULT rvps__file_store(rvps *r, json_t *records, ct_err *err) {
  pthread_mutex_lock(&r->lock);
  json_t *list = NULL;
  ct_status st = rvps__read_list(r, &list, err);
  size_t i;
  json_t *rec;
  json_array_foreach(st == CT_OK ? records : NULL, i, rec) {
    const char *name = json_string_value(json_object_get(rec, "name"));
    size_t j;
    json_t *e;
    bool replaced = false;
    json_array_foreach(list, j, e) {
      if (!strcmp(json_string_value(json_object_get(e, "name")), name)) {
        json_array_set(list, j, rec);
        replaced = true;
        break;
      }
    }
    if (!replaced && json_array_append(list, rec) != 0) st = ct_fail(err, CT_ENOMEM, "out of memory");
    if (st != CT_OK) break;
  }
  char *text = NULL;
  if (st == CT_OK) st = ct_json_dump(list, &text, err);
  if (st == CT_OK && ct_file_write_atomic_at(r->dirfd, r->base, text, strlen(text), 0600, err) != CT_OK)
    st = ct_err_prefix(err, "reference values file %s: ", r->file);
  if (st == CT_OK) memset(&r->seen, 0, sizeof r->seen); /* read back on the next query */
  pthread_mutex_unlock(&r->lock);
  free(text);
  json_decref(list);
  return st;
}

/* The stored record: Trustee's ReferenceValue with the RVPS's 12-month expiry. */
static CT_RESULT rvps__record(const char *name, json_t *value, json_t **out, ct_err *err) {
  time_t exp = time(NULL) + 365 * 24 * 3600;
  struct tm tm;
  gmtime_r(&exp, &tm);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  *out = json_pack("{s:s, s:s, s:s, s:O}", "version", "0.1.0", "name", name, "expiration", when, "value", value);
  CT_ENSURE(*out, err, CT_ENOMEM, "out of memory");
  return CT_OK;
}

static CT_RESULT rvps__store(rvps *r, const char *name, json_t *value, ct_err *err) {
  CT_GUARD(kvs_check_key(name, err));
  json_t *rec = NULL;
  CT_GUARD(rvps__record(name, value, &rec, err));
  char *text = NULL;
  ct_status st = ct_json_dump(rec, &text, err);
  json_decref(rec);
  if (st == CT_OK) st = kvs_put(r->store, RVPS_NS, name, text, strlen(text), err);
  free(text);
  return st;
}

CT_RESULT rvps_register(rvps *r, const json_t *message, ct_err *err) {
  const char *version, *type, *payload;
  CT_GUARD(ct_json_get_string(message, "version", "reference value message", &version, err));
  CT_ENSURE(!strcmp(version, "0.1.0"), err, CT_EINVAL,
            "reference value message: version \"%s\" is not 0.1.0", version);
  CT_GUARD(ct_json_get_string(message, "type", "reference value message", &type, err));
  CT_ENSURE(!strcmp(type, "sample"), err, CT_EUNSUPPORTED,
            "reference value message: type \"%s\" is not supported (only sample)", type);
  CT_GUARD(ct_json_get_string(message, "payload", "reference value message", &payload, err));
  uint8_t *raw = NULL;
  size_t raw_len = 0;
  if (ct_b64_decode(CT_B64_STD, payload, strlen(payload), &raw, &raw_len, err) != CT_OK)
    return ct_err_prefix(err, "reference value message: payload: ");
  json_t *values = NULL;
  ct_status st = ct_json_parse((const char *)raw, raw_len, 32, &values, err);
  free(raw);
  if (st != CT_OK) return ct_err_prefix(err, "reference value message: payload: ");
  if (!json_is_object(values)) {
    json_decref(values);
    return ct_fail(err, CT_EINVAL, "reference value message: payload must be a JSON object of name -> value");
  }
  /* Check every name first so that a bad message stores nothing. */
  const char *name;
  json_t *v;
  json_object_foreach(values, name, v) {
    if (kvs_check_key(name, err) != CT_OK) {
      ct_err_prefix(err, "reference value name \"%.64s\": ", name);
      json_decref(values);
      return err->code;
    }
  }
  if (r->file) {
    json_t *records = json_array();
    st = records ? CT_OK : ct_fail(err, CT_ENOMEM, "out of memory");
    json_object_foreach(values, name, v) {
      json_t *rec = NULL;
      if (st == CT_OK) st = rvps__record(name, v, &rec, err);
      if (st == CT_OK && json_array_append_new(records, rec) != 0) st = ct_fail(err, CT_ENOMEM, "out of memory");
    }
    if (st == CT_OK) st = rvps__file_store(r, records, err);
    json_decref(records);
    json_decref(values);
    return st;
  }
  json_object_foreach(values, name, v) {
    st = rvps__store(r, name, v, err);
    if (st != CT_OK) break;
  }
  json_decref(values);
  return st;
}

CT_RESULT rvps_query(rvps *r, const char *id, json_t **value, ct_err *err) {
  *value = NULL;
  if (kvs_check_key(id, err) != CT_OK) return CT_OK; /* an impossible id is simply unknown */
  if (r->file) {
    pthread_mutex_lock(&r->lock);
    ct_status st = rvps__refresh(r, err);
    json_t *v = st == CT_OK ? json_object_get(r->byname, id) : NULL;
    /* a private copy: the cache may be replaced while the caller holds it */
    if (v && !(*value = json_deep_copy(v))) st = ct_fail(err, CT_ENOMEM, "out of memory");
    pthread_mutex_unlock(&r->lock);
    return st;
  }
  uint8_t *data = NULL;
  size_t len = 0;
  ct_status st = kvs_get(r->store, RVPS_NS, id, &data, &len, err);
  if (st == CT_ENOTFOUND) return CT_OK;
  CT_GUARD(st);
  json_t *rec = NULL;
  st = ct_json_parse((const char *)data, len, 64, &rec, err);
  free(data);
  CT_GUARD(st);
  json_t *v = json_object_get(rec, "value");
  if (v) *value = json_incref(v);
  json_decref(rec);
  return CT_OK;
}
