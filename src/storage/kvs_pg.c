/*
 * Postgres: one table per namespace, as upstream ("key" TEXT PRIMARY KEY, "value" BYTEA), plus a
 * nullable "expires_at" for entries with an expiry. Tables are created on first use.
 *
 * A small pool of connections; each operation takes one for its duration. Every step runs on
 * libpq's non-blocking API under one deadline (connect, send, reply), because a server that
 * stops answering would otherwise hold the thread until TCP gives up. A connection that failed
 * or timed out is closed; the next operation opens a new one.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_mem.h"
#include "kvs_int.h"

#define KVS_PG_MAX_POOL 16
#define KVS_PG_MAX_NS 16

typedef struct kvs_pg {
  char *url;              /* a connection URI or conninfo string, or NULL */
  const char *keys[8];    /* else: libpq keyword/value parameters */
  char *vals[8];
  pthread_cond_t cond;    /* a connection was released */
  unsigned n;
  PGconn *conns[KVS_PG_MAX_POOL];
  bool busy[KVS_PG_MAX_POOL];
  char ready_ns[KVS_PG_MAX_NS][49]; /* tables known to exist */
} kvs_pg;

static int kvs__pg_remaining(int64_t deadline) {
  int64_t left = deadline - kvs__now_ms();
  return left > 0 ? (int)left : 0;
}

/* Waits until the socket is ready for `events` or the deadline passes. */
static bool kvs__pg_wait(PGconn *c, short events, int64_t deadline) {
  for (;;) {
    int left = kvs__pg_remaining(deadline);
    if (left <= 0) return false;
    struct pollfd p = {.fd = PQsocket(c), .events = events};
    if (p.fd < 0) return false;
    int r = poll(&p, 1, left);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

/* libpq messages end with a newline and may span lines; one line reads better in a log. */
static const char *kvs__pg_msg(const char *m, char *buf, size_t cap) {
  snprintf(buf, cap, "%s", m && *m ? m : "unknown error");
  for (char *p = buf; *p; p++)
    if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
  size_t n = strlen(buf);
  while (n && buf[n - 1] == ' ') buf[--n] = 0;
  return buf;
}

/* NOTICEs ("relation already exists, skipping") are not errors; libpq would print them. */
static void kvs__pg_quiet(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

static CT_RESULT kvs__pg_connect(kvs *s, kvs_pg *pg, PGconn **out, int64_t deadline, const char *op, ct_err *err) {
  PGconn *c = pg->url ? PQconnectStart(pg->url)
                      : PQconnectStartParams(pg->keys, (const char *const *)pg->vals, 0);
  CT_ENSURE(c, err, CT_ENOMEM, "postgres: %s: out of memory", op);
  char buf[256];
  if (PQstatus(c) == CONNECTION_BAD) {
    ct_status st = ct_fail(err, CT_EIO, "postgres: %s: cannot connect: %s", op,
                           kvs__pg_msg(PQerrorMessage(c), buf, sizeof buf));
    PQfinish(c);
    return st;
  }
  PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
  while (ps != PGRES_POLLING_OK) {
    if (ps == PGRES_POLLING_FAILED) {
      ct_status st = ct_fail(err, CT_EIO, "postgres: %s: cannot connect: %s", op,
                             kvs__pg_msg(PQerrorMessage(c), buf, sizeof buf));
      PQfinish(c);
      return st;
    }
    if (!kvs__pg_wait(c, ps == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline)) {
      PQfinish(c);
      return ct_fail(err, CT_EIO, "postgres: %s: cannot connect within %u ms (server down or unreachable)", op,
                     s->timeout_ms);
    }
    ps = PQconnectPoll(c);
  }
  PQsetNoticeProcessor(c, kvs__pg_quiet, NULL);
  if (PQsetnonblocking(c, 1) != 0) {
    PQfinish(c);
    return ct_fail(err, CT_EIO, "postgres: %s: cannot make the connection non-blocking", op);
  }
  *out = c;
  return CT_OK;
}

static CT_RESULT kvs__pg_acquire(kvs *s, kvs_pg *pg, unsigned *slot, int64_t deadline, const char *op, ct_err *err) {
  pthread_mutex_lock(&s->lock);
  for (;;) {
    for (unsigned i = 0; i < pg->n; i++) {
      if (!pg->busy[i]) {
        pg->busy[i] = true;
        *slot = i;
        pthread_mutex_unlock(&s->lock);
        if (pg->conns[i] && PQstatus(pg->conns[i]) == CONNECTION_OK) return CT_OK;
        if (pg->conns[i]) PQfinish(pg->conns[i]);
        pg->conns[i] = NULL;
        ct_status st = kvs__pg_connect(s, pg, &pg->conns[i], deadline, op, err);
        if (st != CT_OK) {
          pthread_mutex_lock(&s->lock);
          pg->busy[i] = false;
          pthread_cond_signal(&pg->cond);
          pthread_mutex_unlock(&s->lock);
        }
        return st;
      }
    }
    int64_t left = deadline - kvs__now_ms();
    if (left <= 0) break;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += left / 1000;
    ts.tv_nsec += (left % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&pg->cond, &s->lock, &ts);
  }
  pthread_mutex_unlock(&s->lock);
  return ct_fail(err, CT_EIO, "postgres: %s: all %u connections busy for %u ms (server slow?)", op, pg->n,
                 s->timeout_ms);
}

static void kvs__pg_release(kvs *s, kvs_pg *pg, unsigned slot, bool broken) {
  if (broken && pg->conns[slot]) {
    PQfinish(pg->conns[slot]);
    pg->conns[slot] = NULL;
  }
  pthread_mutex_lock(&s->lock);
  pg->busy[slot] = false;
  pthread_cond_signal(&pg->cond);
  pthread_mutex_unlock(&s->lock);
}

/* Runs one statement. *res gets the result of a successful statement (NULL for plain commands
 * when res is NULL). *broken tells the caller to drop the connection. */
static CT_RESULT kvs__pg_exec(kvs *s, PGconn *c, const char *sql, int n, const char *const *vals, const int *lens,
                              const int *fmts, PGresult **res, bool *broken, int64_t deadline, const char *op,
                              ct_err *err) {
  char buf[256];
  *broken = true;
  int sent = n < 0 ? PQsendQuery(c, sql) : PQsendQueryParams(c, sql, n, NULL, vals, lens, fmts, 1);
  if (!sent) return ct_fail(err, CT_EIO, "postgres: %s: %s", op, kvs__pg_msg(PQerrorMessage(c), buf, sizeof buf));
  int f;
  while ((f = PQflush(c)) == 1)
    if (!kvs__pg_wait(c, POLLOUT | POLLIN, deadline))
      return ct_fail(err, CT_EIO, "postgres: %s: no reply within %u ms (server stalled or unreachable)", op, s->timeout_ms);
  if (f < 0) return ct_fail(err, CT_EIO, "postgres: %s: %s", op, kvs__pg_msg(PQerrorMessage(c), buf, sizeof buf));
  ct_status st = CT_OK;
  PGresult *keep = NULL;
  for (;;) {
    while (PQisBusy(c)) {
      if (!kvs__pg_wait(c, POLLIN, deadline)) {
        PQclear(keep);
        return ct_fail(err, CT_EIO, "postgres: %s: no reply within %u ms (server stalled or unreachable)", op,
                       s->timeout_ms);
      }
      if (!PQconsumeInput(c)) {
        PQclear(keep);
        return ct_fail(err, CT_EIO, "postgres: %s: connection lost: %s", op,
                       kvs__pg_msg(PQerrorMessage(c), buf, sizeof buf));
      }
    }
    PGresult *r = PQgetResult(c);
    if (!r) break;
    ExecStatusType es = PQresultStatus(r);
    if (st == CT_OK && es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
      const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      /* Two replicas creating the same table at once: one loses the race, the table exists. */
      bool created_race = state && (!strcmp(state, "23505") || !strcmp(state, "42P07")) && n < 0;
      if (!created_race)
        st = ct_fail(err, CT_EIO, "postgres: %s: %s%s%s", op,
                     kvs__pg_msg(PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY), buf, sizeof buf),
                     state ? " SQLSTATE " : "", state ? state : "");
      PQclear(r);
    } else if (!keep) {
      keep = r;
    } else {
      PQclear(r);
    }
  }
  *broken = PQstatus(c) != CONNECTION_OK;
  if (st != CT_OK || !res) PQclear(keep);
  else *res = keep;
  return st;
}

/* Table names are namespaces ([a-z0-9_], checked by the caller), always quoted. */
static CT_RESULT kvs__pg_ensure(kvs *s, kvs_pg *pg, PGconn *c, const char *ns, bool *broken, int64_t deadline,
                                const char *op, ct_err *err) {
  pthread_mutex_lock(&s->lock);
  bool known = false;
  for (unsigned i = 0; i < KVS_PG_MAX_NS && pg->ready_ns[i][0]; i++) known |= !strcmp(pg->ready_ns[i], ns);
  pthread_mutex_unlock(&s->lock);
  *broken = false;
  if (known) return CT_OK;
  char sql[512];
  snprintf(sql, sizeof sql,
           "CREATE TABLE IF NOT EXISTS \"%s\" (key TEXT PRIMARY KEY, value BYTEA, expires_at TIMESTAMPTZ);"
           "ALTER TABLE \"%s\" ADD COLUMN IF NOT EXISTS expires_at TIMESTAMPTZ",
           ns, ns);
  CT_GUARD(kvs__pg_exec(s, c, sql, -1, NULL, NULL, NULL, NULL, broken, deadline, op, err));
  pthread_mutex_lock(&s->lock);
  for (unsigned i = 0; i < KVS_PG_MAX_NS; i++) {
    if (!pg->ready_ns[i][0]) {
      snprintf(pg->ready_ns[i], sizeof pg->ready_ns[i], "%s", ns);
      break;
    }
    if (!strcmp(pg->ready_ns[i], ns)) break;
  }
  pthread_mutex_unlock(&s->lock);
  return CT_OK;
}

static void kvs__pg_forget(kvs *s, kvs_pg *pg, const char *ns) {
  pthread_mutex_lock(&s->lock);
  for (unsigned i = 0; i < KVS_PG_MAX_NS; i++)
    if (!strcmp(pg->ready_ns[i], ns)) pg->ready_ns[i][0] = 0;
  pthread_mutex_unlock(&s->lock);
}

/* Expands each $T in a statement template to the quoted table name. */
static void kvs__pg_sql(char *out, size_t cap, const char *tmpl, const char *ns) {
  size_t n = 0;
  for (const char *p = tmpl; *p && n + 52 < cap; p++) {
    if (p[0] == '$' && p[1] == 'T' && ns) {
      n += (size_t)snprintf(out + n, cap - n, "\"%s\"", ns);
      p++;
    } else {
      out[n++] = *p;
    }
  }
  out[n] = 0;
}

/* One operation: a connection, the namespace's table, then the statement. */
static CT_RESULT kvs__pg_run(kvs *s, const char *ns, const char *op, const char *sql_fmt, int n,
                             const char *const *vals, const int *lens, const int *fmts, PGresult **res, ct_err *err) {
  kvs_pg *pg = s->impl;
  int64_t deadline = kvs__now_ms() + s->timeout_ms;
  unsigned slot = 0;
  CT_GUARD(kvs__pg_acquire(s, pg, &slot, deadline, op, err));
  PGconn *c = pg->conns[slot];
  bool broken = false;
  ct_status st = ns ? kvs__pg_ensure(s, pg, c, ns, &broken, deadline, op, err) : CT_OK;
  if (st == CT_OK) {
    char sql[1024];
    kvs__pg_sql(sql, sizeof sql, sql_fmt, ns);
    st = kvs__pg_exec(s, c, sql, n, vals, lens, fmts, res, &broken, deadline, op, err);
    /* The table was dropped behind our back: create it on the next call. */
    if (st != CT_OK && ns && strstr(err->msg, "42P01")) kvs__pg_forget(s, pg, ns);
  }
  kvs__pg_release(s, pg, slot, broken);
  return st;
}

static CT_RESULT kvs__pg_put(kvs *s, const char *ns, const char *key, const void *value, size_t len, kvs__mode mode,
                             unsigned ttl_s, bool *inserted, ct_err *err) {
  char op[128], ttl[16];
  snprintf(op, sizeof op, "%s %s/%.64s", mode == KVS__IF_ABSENT ? "put-if-absent" : "put", ns, key);
  snprintf(ttl, sizeof ttl, "%u", ttl_s);
  const char *vals[3] = {key, len ? (const char *)value : "", ttl};
  int lens[3] = {0, (int)len, 0}, fmts[3] = {0, 1, 0};
  /* One statement: readers see the old row or the new one. If-absent replaces only an expired
   * row, and RETURNING tells whether this statement wrote. */
  const char *sql = mode == KVS__IF_ABSENT
                        ? "INSERT INTO $T AS t (key, value, expires_at) VALUES ($1, $2, CASE WHEN $3::int > 0 "
                          "THEN now() + make_interval(secs => $3::int) END) ON CONFLICT (key) DO UPDATE SET "
                          "value = EXCLUDED.value, expires_at = EXCLUDED.expires_at WHERE t.expires_at IS NOT NULL "
                          "AND t.expires_at <= now() RETURNING 1"
                        : "INSERT INTO $T (key, value, expires_at) VALUES ($1, $2, CASE WHEN $3::int > 0 "
                          "THEN now() + make_interval(secs => $3::int) END) ON CONFLICT (key) DO UPDATE SET "
                          "value = EXCLUDED.value, expires_at = EXCLUDED.expires_at";
  PGresult *r = NULL;
  CT_GUARD(kvs__pg_run(s, ns, op, sql, 3, vals, lens, fmts, &r, err));
  if (inserted) *inserted = mode == KVS__IF_ABSENT ? PQntuples(r) == 1 : true;
  PQclear(r);
  return CT_OK;
}

static CT_RESULT kvs__pg_get(kvs *s, const char *ns, const char *key, uint8_t **value, size_t *len, ct_err *err) {
  char op[128];
  snprintf(op, sizeof op, "get %s/%.64s", ns, key);
  const char *vals[1] = {key};
  PGresult *r = NULL;
  CT_GUARD(kvs__pg_run(s, ns, op,
                       "SELECT value FROM $T WHERE key = $1 AND (expires_at IS NULL OR expires_at > now())", 1,
                       vals, NULL, NULL, &r, err));
  ct_status st = CT_OK;
  if (PQntuples(r) != 1 || PQgetisnull(r, 0, 0)) {
    st = ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
  } else {
    size_t n = (size_t)PQgetlength(r, 0, 0);
    uint8_t *copy = malloc(n + 1);
    if (!copy) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
    } else {
      memcpy(copy, PQgetvalue(r, 0, 0), n);
      copy[n] = 0;
      ct_wipe(PQgetvalue(r, 0, 0), n);
      *value = copy;
      *len = n;
    }
  }
  PQclear(r);
  return st;
}

static CT_RESULT kvs__pg_del(kvs *s, const char *ns, const char *key, ct_err *err) {
  char op[128];
  snprintf(op, sizeof op, "delete %s/%.64s", ns, key);
  const char *vals[1] = {key};
  PGresult *r = NULL;
  CT_GUARD(kvs__pg_run(s, ns, op,
                       "DELETE FROM $T WHERE key = $1 RETURNING (expires_at IS NULL OR expires_at > now())", 1,
                       vals, NULL, NULL, &r, err));
  /* Binary boolean: one byte, 1 for a live row. */
  bool live = PQntuples(r) == 1 && PQgetlength(r, 0, 0) == 1 && PQgetvalue(r, 0, 0)[0] == 1;
  PQclear(r);
  return live ? CT_OK : ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
}

static CT_RESULT kvs__pg_list(kvs *s, const char *ns, json_t *arr, ct_err *err) {
  char op[96];
  snprintf(op, sizeof op, "list %s", ns);
  PGresult *r = NULL;
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT key FROM $T WHERE expires_at IS NULL OR expires_at > now() LIMIT %u",
           KVS_MAX_LIST + 1);
  CT_GUARD(kvs__pg_run(s, ns, op, sql, 0, NULL, NULL, NULL, &r, err));
  ct_status st = CT_OK;
  int rows = PQntuples(r);
  if ((unsigned)rows > KVS_MAX_LIST) st = ct_fail(err, CT_ELIMIT, "postgres: %s: more than %u entries", op, KVS_MAX_LIST);
  for (int i = 0; i < rows && st == CT_OK; i++)
    if (json_array_append_new(arr, json_stringn(PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0))) != 0)
      st = ct_fail(err, CT_ENOMEM, "out of memory");
  PQclear(r);
  return st;
}

static CT_RESULT kvs__pg_sweep(kvs *s, const char *ns, ct_err *err) {
  char op[96];
  snprintf(op, sizeof op, "sweep %s", ns);
  return kvs__pg_run(s, ns, op, "DELETE FROM $T WHERE expires_at IS NOT NULL AND expires_at <= now()", 0, NULL,
                     NULL, NULL, NULL, err);
}

static CT_RESULT kvs__pg_ping(kvs *s, ct_err *err) {
  return kvs__pg_run(s, NULL, "ping", "SELECT 1", 0, NULL, NULL, NULL, NULL, err);
}

static void kvs__pg_close(kvs *s) {
  kvs_pg *pg = s->impl;
  if (!pg) return;
  for (unsigned i = 0; i < pg->n; i++)
    if (pg->conns[i]) PQfinish(pg->conns[i]);
  for (size_t i = 0; i < sizeof pg->vals / sizeof pg->vals[0]; i++) {
    if (pg->vals[i]) ct_wipe(pg->vals[i], strlen(pg->vals[i]));
    free(pg->vals[i]);
  }
  if (pg->url) ct_wipe(pg->url, strlen(pg->url));
  free(pg->url);
  pthread_cond_destroy(&pg->cond);
  free(pg);
  s->impl = NULL;
}

const kvs__ops kvs__pg_ops = {
    .put = kvs__pg_put,
    .get = kvs__pg_get,
    .del = kvs__pg_del,
    .list = kvs__pg_list,
    .sweep = kvs__pg_sweep,
    .ping = kvs__pg_ping,
    .close = kvs__pg_close,
};

/* Connecting happens on first use: a KBS starts (and reports the backend on /readyz) even
 * while the database is still coming up. */
CT_RESULT kvs__pg_open(kvs *s, const kvs_config *cfg, ct_err *err) {
  s->ops = &kvs__pg_ops;
  kvs_pg *pg = calloc(1, sizeof *pg);
  CT_ENSURE(pg, err, CT_ENOMEM, "out of memory");
  s->impl = pg;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&pg->cond, &ca);
  pthread_condattr_destroy(&ca);
  pg->n = cfg->pool_size ? cfg->pool_size : 4;
  if (pg->n > KVS_PG_MAX_POOL) pg->n = KVS_PG_MAX_POOL;
  if (cfg->pg_url && *cfg->pg_url) return ct_strdup(cfg->pg_url, &pg->url, err);
  char port[16], timeout[16];
  snprintf(port, sizeof port, "%u", cfg->pg_port ? cfg->pg_port : 5432);
  /* libpq's own connect_timeout is in whole seconds; our deadline is the real bound. */
  snprintf(timeout, sizeof timeout, "%u", (s->timeout_ms + 999) / 1000 + 1);
  /* Unlike upstream, the user name is kept when a password is given. */
  const char *k[] = {"host", "port", "dbname", "user", "password", "connect_timeout", "application_name", NULL};
  const char *v[] = {cfg->pg_host ? cfg->pg_host : "localhost", port, cfg->pg_db ? cfg->pg_db : "postgres",
                     cfg->pg_username ? cfg->pg_username : "postgres", cfg->pg_password, timeout, "coco-trust-kbs"};
  size_t j = 0;
  for (size_t i = 0; k[i]; i++) {
    if (!v[i]) continue;
    pg->keys[j] = k[i];
    CT_GUARD(ct_strdup(v[i], &pg->vals[j], err));
    j++;
  }
  pg->keys[j] = NULL;
  return CT_OK;
}
