#include "kbs_audit.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_mem.h"
#include "kbs_config.h"

#define KBS_AUDIT_MAX_LINE (64u << 10)
#define KBS_AUDIT_MAX_FILE (1ull << 34)
#define KBS_AUDIT_ZERO "0000000000000000000000000000000000000000000000000000000000000000"

#define KBS_AUDIT_MAX_QUEUE 65536

typedef struct kbs_audit__pending {
  uint64_t seq;
  char hash[65];
  char *line;
  struct kbs_audit__pending *next;
} kbs_audit__pending;

struct kbs_audit {
  pthread_mutex_t lock;
  int fd;           /* file sink, or -1 */
  char *path;       /* file path, or "<backend>:<replica>" */
  uint64_t seq;     /* of the last entry appended */
  char prev[65];    /* its hash */
  /* store sink: a writer thread stores queued entries in order */
  kvs *store;
  char *replica;
  pthread_t writer;
  bool writer_started, stopping;
  pthread_cond_t cond;
  kbs_audit__pending *head, *tail;
  size_t queued;
};

/* The hash of an entry: SHA-256 over the JCS of the object without "hash". */
static CT_RESULT kbs_audit__hash(json_t *obj, char out[65], ct_err *err) {
  json_t *copy = json_copy(obj);
  CT_ENSURE(copy, err, CT_ENOMEM, "out of memory");
  json_object_del(copy, "hash");
  char *jcs = NULL;
  size_t n = 0;
  ct_status st = ct_jcs_string(copy, &jcs, &n, err);
  json_decref(copy);
  CT_GUARD(st);
  uint8_t d[32];
  ct_sha256(jcs, n, d);
  free(jcs);
  ct_hex_into(d, sizeof d, out);
  out[64] = 0;
  return CT_OK;
}

typedef struct kbs_audit__state {
  uint64_t seq;
  char hash[65];
} kbs_audit__state;

/* Checks one line against the chain so far; on success advances the state. */
static CT_RESULT kbs_audit__check_line(const char *line, size_t len, size_t lineno, kbs_audit__state *st_,
                                       ct_err *err) {
  json_t *obj = NULL;
  if (ct_json_parse(line, len, 4, &obj, err) != CT_OK) return ct_err_prefix(err, "line %zu: not JSON: ", lineno);
  ct_status st = CT_OK;
  json_t *seq = json_object_get(obj, "seq");
  const char *prev = json_string_value(json_object_get(obj, "prev"));
  const char *hash = json_string_value(json_object_get(obj, "hash"));
  char want[65];
  if (!json_is_object(obj) || !json_is_integer(seq) || !prev || !hash) {
    st = ct_fail(err, CT_EINVAL, "line %zu: not an audit entry (seq, prev and hash are required)", lineno);
  } else if (kbs_audit__hash(obj, want, err) != CT_OK) {
    st = err->code;
  } else if (strcmp(want, hash)) {
    st = ct_fail(err, CT_ECRYPTO, "line %zu (entry #%lld): its content does not match its hash: the line was "
                 "edited", lineno, (long long)json_integer_value(seq));
  } else if ((uint64_t)json_integer_value(seq) != st_->seq + 1) {
    st = ct_fail(err, CT_ECRYPTO, "line %zu: expected entry #%llu, found #%lld: %s", lineno,
                 (unsigned long long)(st_->seq + 1), (long long)json_integer_value(seq),
                 (uint64_t)json_integer_value(seq) > st_->seq + 1 ? "entries before this line were deleted"
                                                                   : "entries were reordered or duplicated");
  } else if (strcmp(prev, st_->hash)) {
    st = ct_fail(err, CT_ECRYPTO, "line %zu (entry #%lld): \"prev\" does not match the hash of the entry before it: "
                 "a line was replaced or the file spliced", lineno, (long long)json_integer_value(seq));
  } else {
    st_->seq = (uint64_t)json_integer_value(seq);
    memcpy(st_->hash, hash, 65);
  }
  json_decref(obj);
  return st;
}

/* Reads the file and calls the checker on every line. A trailing partial line (a crash during
 * a write) is reported as such. */
static CT_RESULT kbs_audit__scan(int fd, const char *path, kbs_audit__state *state, size_t *entries, ct_err *err) {
  struct stat sb;
  CT_ENSURE(fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode), err, CT_EIO, "%s is not a regular file", path);
  CT_ENSURE((unsigned long long)sb.st_size <= KBS_AUDIT_MAX_FILE, err, CT_ELIMIT, "%s is too large", path);
  FILE *f = fdopen(dup(fd), "r");
  CT_ENSURE(f, err, CT_EIO, "cannot read %s: %s", path, strerror(errno));
  char *line = NULL;
  size_t cap = 0, n_lines = 0;
  ssize_t got;
  ct_status st = CT_OK;
  *state = (kbs_audit__state){.seq = 0, .hash = KBS_AUDIT_ZERO};
  while (st == CT_OK && (got = getline(&line, &cap, f)) >= 0) {
    n_lines++;
    if (got == 0 || line[got - 1] != '\n') {
      st = ct_fail(err, CT_EINVAL, "line %zu: incomplete (no newline: a write was interrupted)", n_lines);
      break;
    }
    if ((size_t)got > KBS_AUDIT_MAX_LINE) {
      st = ct_fail(err, CT_ELIMIT, "line %zu: longer than %u bytes", n_lines, KBS_AUDIT_MAX_LINE);
      break;
    }
    st = kbs_audit__check_line(line, (size_t)got - 1, n_lines, state, err);
  }
  free(line);
  fclose(f);
  if (st == CT_OK) *entries = n_lines;
  return st;
}

CT_RESULT kbs_audit_verify_file(const char *path, size_t *entries, ct_err *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  CT_ENSURE(fd >= 0, err, errno == ENOENT ? CT_ENOTFOUND : CT_EIO, "cannot open %s: %s", path, strerror(errno));
  kbs_audit__state state;
  ct_status st = kbs_audit__scan(fd, path, &state, entries, err);
  close(fd);
  return st;
}

CT_RESULT kbs_audit_open(const char *path, kbs_audit **out, ct_err *err) {
  int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  CT_ENSURE(fd >= 0, err, CT_EIO, "audit log %s: cannot open: %s", path,
            errno == ELOOP ? "it is a symbolic link" : strerror(errno));
  kbs_audit__state state;
  size_t entries = 0;
  ct_status st = kbs_audit__scan(fd, path, &state, &entries, err);
  if (st != CT_OK) {
    close(fd);
    /* Appending to a broken chain would make the break look like ours. */
    return ct_err_prefix(err, "audit log %s does not verify, refusing to continue it (move it aside): ", path);
  }
  kbs_audit *a = calloc(1, sizeof *a);
  if (!a || ct_strdup(path, &a->path, err) != CT_OK) {
    free(a);
    close(fd);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  pthread_mutex_init(&a->lock, NULL);
  pthread_cond_init(&a->cond, NULL);
  a->fd = fd;
  a->seq = state.seq;
  memcpy(a->prev, state.hash, 65);
  CT_LOG_INFO_("kbs", "audit log %s: %zu entries, head #%llu %s", path, entries, (unsigned long long)a->seq, a->prev);
  *out = a;
  return CT_OK;
}

void kbs_audit_close(kbs_audit *a) {
  if (!a) return;
  if (a->writer_started) {
    pthread_mutex_lock(&a->lock);
    a->stopping = true;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->writer, NULL);
  }
  for (kbs_audit__pending *p = a->head, *n; p; p = n) {
    n = p->next;
    CT_LOG_ERROR_("kbs", "audit log %s: entry #%llu was never stored (backend unavailable at shutdown)", a->path,
                  (unsigned long long)p->seq);
    free(p->line);
    free(p);
  }
  if (a->seq) CT_LOG_INFO_("kbs", "audit log %s: head #%llu %s", a->path, (unsigned long long)a->seq, a->prev);
  if (a->fd >= 0) close(a->fd);
  pthread_cond_destroy(&a->cond);
  pthread_mutex_destroy(&a->lock);
  free(a->replica);
  free(a->path);
  free(a);
}

static CT_RESULT kbs_audit__set(json_t *o, const char *k, const char *v, ct_err *err) {
  if (!v) return CT_OK;
  return ct_json_set_new(o, k, json_string(v), err);
}

CT_RESULT kbs_audit_append(kbs_audit *a, const kbs_audit_event *e, ct_err *err) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[40], stamp[64];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(stamp, sizeof stamp, "%.32s.%03dZ", when, (int)(ts.tv_nsec / 1000000));
  json_t *o = json_object();
  CT_ENSURE(o, err, CT_ENOMEM, "out of memory");
  ct_status st = ct_json_set_new(o, "time", json_string(stamp), err);
  if (st == CT_OK) st = kbs_audit__set(o, "event", e->event, err);
  if (st == CT_OK) st = kbs_audit__set(o, "tee", e->tee, err);
  if (st == CT_OK) st = kbs_audit__set(o, "tee_key", e->tee_key, err);
  if (st == CT_OK) st = kbs_audit__set(o, "claims_sha256", e->claims_sha256, err);
  if (st == CT_OK) st = kbs_audit__set(o, "path", e->path, err);
  if (st == CT_OK) st = kbs_audit__set(o, "decision", e->decision, err);
  if (st == CT_OK) st = kbs_audit__set(o, "reason", e->reason, err);
  pthread_mutex_lock(&a->lock);
  if (st == CT_OK) st = ct_json_set_new(o, "seq", json_integer((json_int_t)(a->seq + 1)), err);
  if (st == CT_OK) st = ct_json_set_new(o, "prev", json_string(a->prev), err);
  char hash[65];
  if (st == CT_OK) st = kbs_audit__hash(o, hash, err);
  if (st == CT_OK) st = ct_json_set_new(o, "hash", json_string(hash), err);
  char *line = NULL;
  size_t n = 0;
  if (st == CT_OK) st = ct_jcs_string(o, &line, &n, err);
  if (st == CT_OK && a->store) {
    /* Queued for the writer thread: a slow backend never holds the request. A full queue (the
     * backend has been down for long) loses the entry, which shows as a gap in the chain. */
    kbs_audit__pending *p = a->queued < KBS_AUDIT_MAX_QUEUE ? calloc(1, sizeof *p) : NULL;
    a->seq++;
    memcpy(a->prev, hash, 65);
    if (!p) {
      st = ct_fail(err, CT_ELIMIT, "audit log %s: %zu entries wait for the backend; entry #%llu is lost", a->path,
                   a->queued, (unsigned long long)a->seq);
    } else {
      p->seq = a->seq;
      memcpy(p->hash, hash, 65);
      p->line = line;
      line = NULL;
      if (a->tail) a->tail->next = p;
      else a->head = p;
      a->tail = p;
      a->queued++;
      pthread_cond_signal(&a->cond);
    }
  } else if (st == CT_OK) {
    line[n] = '\n'; /* ct_jcs_string's NUL terminator becomes the newline: one write, one line */
    ssize_t w = write(a->fd, line, n + 1);
    if (w != (ssize_t)(n + 1)) {
      st = ct_fail(err, CT_EIO, "audit log %s: write failed: %s", a->path, w < 0 ? strerror(errno) : "short write");
    } else {
      a->seq++;
      memcpy(a->prev, hash, 65);
    }
  }
  pthread_mutex_unlock(&a->lock);
  free(line);
  json_decref(o);
  return st;
}

static int kbs_audit_cli_store(const char *config, const char *replica, bool args_ok);

/* --- chains in a storage backend ------------------------------------------------------------- */

static CT_RESULT kbs_audit__check_replica(const char *replica, ct_err *err) {
  size_t n = strlen(replica);
  CT_ENSURE(n > 0 && n <= 64, err, CT_EINVAL, "audit replica name must be 1 to 64 characters");
  for (size_t i = 0; i < n; i++) {
    char c = replica[i];
    CT_ENSURE((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                  (c == '.' && i > 0),
              err, CT_EINVAL, "audit replica name \"%.64s\" has a character outside [A-Za-z0-9._-]", replica);
  }
  return CT_OK;
}

static void kbs_audit__entry_key(const char *replica, uint64_t seq, char *out, size_t cap) {
  snprintf(out, cap, "%s/%012llu", replica, (unsigned long long)seq);
}

/* Walks replica's chain from entry #1; *state ends at the last entry. The head record must not
 * name an entry past the last one found (a deleted tail). */
static CT_RESULT kbs_audit__walk(kvs *store, const char *replica, kbs_audit__state *state, size_t *entries,
                                 ct_err *err) {
  *state = (kbs_audit__state){.seq = 0, .hash = KBS_AUDIT_ZERO};
  char key[128];
  for (;;) {
    kbs_audit__entry_key(replica, state->seq + 1, key, sizeof key);
    uint8_t *v = NULL;
    size_t n = 0;
    ct_status st = kvs_get(store, KBS_AUDIT_NS, key, &v, &n, err);
    if (st == CT_ENOTFOUND) break;
    if (st != CT_OK) return ct_err_prefix(err, "audit chain of %s: ", replica);
    st = kbs_audit__check_line((const char *)v, n, (size_t)(state->seq + 1), state, err);
    free(v);
    if (st != CT_OK) return ct_err_prefix(err, "audit chain of %s: entry key %s: ", replica, key);
  }
  snprintf(key, sizeof key, "%s/head", replica);
  uint8_t *v = NULL;
  size_t n = 0;
  ct_status st = kvs_get(store, KBS_AUDIT_NS, key, &v, &n, err);
  if (st == CT_OK) {
    unsigned long long head = strtoull((const char *)v, NULL, 10);
    free(v);
    CT_ENSURE(head <= state->seq, err, CT_ECRYPTO,
              "audit chain of %s: the head names entry #%llu but the chain ends at #%llu: entries #%llu..#%llu were "
              "deleted", replica, head, (unsigned long long)state->seq, (unsigned long long)state->seq + 1, head);
  } else if (st != CT_ENOTFOUND) {
    return ct_err_prefix(err, "audit chain of %s: ", replica);
  }
  *entries = (size_t)state->seq;
  return CT_OK;
}

static void *kbs_audit__writer(void *arg) {
  kbs_audit *a = arg;
  unsigned backoff_ms = 100;
  bool failing = false;
  pthread_mutex_lock(&a->lock);
  for (;;) {
    while (!a->head && !a->stopping) pthread_cond_wait(&a->cond, &a->lock);
    kbs_audit__pending *p = a->head;
    if (!p) break;
    pthread_mutex_unlock(&a->lock);
    char key[128], head[96];
    kbs_audit__entry_key(a->replica, p->seq, key, sizeof key);
    snprintf(head, sizeof head, "%llu %s", (unsigned long long)p->seq, p->hash);
    char head_key[96];
    snprintf(head_key, sizeof head_key, "%s/head", a->replica);
    ct_err err;
    ct_status st = kvs_put(a->store, KBS_AUDIT_NS, key, p->line, strlen(p->line), &err);
    if (st == CT_OK) st = kvs_put(a->store, KBS_AUDIT_NS, head_key, head, strlen(head), &err);
    pthread_mutex_lock(&a->lock);
    if (st == CT_OK) {
      if (failing) CT_LOG_INFO_("kbs", "audit log %s: storing entries again", a->path);
      failing = false;
      backoff_ms = 100;
      a->head = p->next;
      if (!a->head) a->tail = NULL;
      a->queued--;
      free(p->line);
      free(p);
      continue;
    }
    if (!failing) CT_LOG_WARN_("kbs", "audit log %s: cannot store entry #%llu, retrying: %s", a->path,
                               (unsigned long long)p->seq, err.msg);
    failing = true;
    if (a->stopping) break; /* shutting down with the backend away: report what is lost */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)backoff_ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&a->cond, &a->lock, &ts);
    if (backoff_ms < 2000) backoff_ms *= 2;
  }
  pthread_mutex_unlock(&a->lock);
  return NULL;
}

CT_RESULT kbs_audit_open_store(kvs *store, const char *replica, kbs_audit **out, ct_err *err) {
  CT_GUARD(kbs_audit__check_replica(replica, err));
  kbs_audit__state state;
  size_t entries = 0;
  if (kbs_audit__walk(store, replica, &state, &entries, err) != CT_OK)
    return ct_err_prefix(err, "audit log does not verify, refusing to continue it: ");
  kbs_audit *a = calloc(1, sizeof *a);
  CT_ENSURE(a, err, CT_ENOMEM, "out of memory");
  pthread_mutex_init(&a->lock, NULL);
  pthread_cond_init(&a->cond, NULL);
  a->fd = -1;
  a->store = store;
  a->seq = state.seq;
  memcpy(a->prev, state.hash, 65);
  char name[160];
  snprintf(name, sizeof name, "%s:%s", kvs_type_name(kvs_get_type(store)), replica);
  if (ct_strdup(replica, &a->replica, err) != CT_OK || ct_strdup(name, &a->path, err) != CT_OK) {
    kbs_audit_close(a);
    return CT_ENOMEM;
  }
  if (pthread_create(&a->writer, NULL, kbs_audit__writer, a) != 0) {
    kbs_audit_close(a);
    return ct_fail(err, CT_EIO, "cannot start the audit writer thread");
  }
  a->writer_started = true;
  CT_LOG_INFO_("kbs", "audit log %s: %zu entries, head #%llu %s", a->path, entries, (unsigned long long)a->seq, a->prev);
  *out = a;
  return CT_OK;
}

CT_RESULT kbs_audit_verify_store(kvs *store, const char *replica, size_t *entries, ct_err *err) {
  kbs_audit__state state;
  size_t total = 0, n = 0;
  if (replica) {
    CT_GUARD(kbs_audit__check_replica(replica, err));
    CT_GUARD(kbs_audit__walk(store, replica, &state, &n, err));
    *entries = n;
    return CT_OK;
  }
  /* Every replica that has a head record. */
  json_t *keys = NULL;
  CT_GUARD(kvs_list(store, KBS_AUDIT_NS, &keys, err));
  ct_status st = CT_OK;
  for (size_t i = 0; st == CT_OK && i < json_array_size(keys); i++) {
    const char *k = json_string_value(json_array_get(keys, i));
    const char *slash = strrchr(k, '/');
    if (!slash || strcmp(slash, "/head")) continue;
    char name[80];
    snprintf(name, sizeof name, "%.*s", (int)(slash - k), k);
    st = kbs_audit__walk(store, name, &state, &n, err);
    total += n;
  }
  json_decref(keys);
  if (st == CT_OK) *entries = total;
  return st;
}

int kbs_audit_cli_main(int argc, char **argv) {
  if (argc >= 4 && !strcmp(argv[1], "verify") && !strcmp(argv[2], "--config"))
    return kbs_audit_cli_store(argv[3], argc == 6 && !strcmp(argv[4], "--replica") ? argv[5] : NULL,
                               argc == 4 || argc == 6);
  if (argc != 3 || strcmp(argv[1], "verify")) {
    fprintf(stderr, "usage: kbs audit verify FILE\n       kbs audit verify --config KBS.toml [--replica NAME]\n");
    return 2;
  }
  ct_err err;
  size_t entries = 0;
  if (kbs_audit_verify_file(argv[2], &entries, &err) != CT_OK) {
    fprintf(stderr, "audit log %s: BROKEN: %s\n", argv[2], err.msg);
    return 1;
  }
  printf("audit log %s: %zu entries, chain intact\n", argv[2], entries);
  return 0;
}

/* The chains in the storage backend a KBS configuration names. */
static int kbs_audit_cli_store(const char *config, const char *replica, bool args_ok) {
  if (!args_ok) {
    fprintf(stderr, "usage: kbs audit verify --config KBS.toml [--replica NAME]\n");
    return 2;
  }
  ct_err err;
  kbs_config *cfg = NULL;
  if (kbs_config_load(config, &cfg, &err) != CT_OK) {
    fprintf(stderr, "kbs audit: %s\n", err.msg);
    return 2;
  }
  kvs_config kc;
  kbs_config_kvs(cfg, cfg->storage_type, &kc);
  kvs *store = NULL;
  size_t entries = 0;
  int rc = 0;
  if (kvs_open(&kc, &store, &err) != CT_OK) {
    fprintf(stderr, "kbs audit: storage: %s\n", err.msg);
    rc = 1;
  } else if (kbs_audit_verify_store(store, replica, &entries, &err) != CT_OK) {
    fprintf(stderr, "audit chains in %s: BROKEN: %s\n", kvs_type_name(cfg->storage_type), err.msg);
    rc = 1;
  } else {
    printf("audit chains in %s%s%s: %zu entries, chain intact\n", kvs_type_name(cfg->storage_type),
           replica ? " for " : "", replica ? replica : "", entries);
  }
  kvs_close(store);
  kbs_config_free(cfg);
  return rc;
}
