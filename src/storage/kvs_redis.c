/*
 * Redis (and Valkey, or anything speaking RESP): keys "<ns>:<key>", values raw bytes, as
 * upstream. A small pool of connections; each has socket send/receive timeouts and a bounded
 * connect, so a server that stops answering costs at most the configured timeout. A connection
 * that saw an error is dropped and the next operation reconnects.
 */
#include <ctype.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_mem.h"
#include "kvs_int.h"

#define KVS_REDIS_MAX_POOL 16

typedef struct kvs_redis {
  char *host;     /* TCP host, or NULL with `unix_path` */
  int port;
  char *unix_path;
  char *user, *password;
  int db;
  pthread_cond_t cond;
  unsigned n;
  redisContext *conns[KVS_REDIS_MAX_POOL];
  bool busy[KVS_REDIS_MAX_POOL];
} kvs_redis;

static struct timeval kvs__redis_tv(int64_t ms) {
  if (ms < 1) ms = 1;
  return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

static CT_RESULT kvs__redis_connect(kvs *s, kvs_redis *r, redisContext **out, int64_t deadline, const char *op,
                                    ct_err *err) {
  struct timeval tv = kvs__redis_tv(deadline - kvs__now_ms());
  redisContext *c = r->unix_path ? redisConnectUnixWithTimeout(r->unix_path, tv)
                                 : redisConnectWithTimeout(r->host, r->port, tv);
  CT_ENSURE(c, err, CT_ENOMEM, "redis: %s: out of memory", op);
  if (c->err) {
    ct_status st = ct_fail(err, CT_EIO, "redis: %s: cannot connect to %s%s%d: %s", op,
                           r->unix_path ? r->unix_path : r->host, r->unix_path ? "" : ":",
                           r->unix_path ? 0 : r->port, c->errstr);
    redisFree(c);
    return st;
  }
  redisSetTimeout(c, kvs__redis_tv(s->timeout_ms));
  if (!r->unix_path) redisEnableKeepAlive(c);
  ct_status st = CT_OK;
  if (r->password) {
    redisReply *rep = r->user ? redisCommand(c, "AUTH %s %s", r->user, r->password)
                              : redisCommand(c, "AUTH %s", r->password);
    if (!rep || rep->type == REDIS_REPLY_ERROR)
      st = ct_fail(err, CT_EIO, "redis: %s: authentication failed: %.200s", op,
                   rep ? rep->str : c->errstr);
    if (rep) freeReplyObject(rep);
  }
  if (st == CT_OK && r->db) {
    redisReply *rep = redisCommand(c, "SELECT %d", r->db);
    if (!rep || rep->type == REDIS_REPLY_ERROR)
      st = ct_fail(err, CT_EIO, "redis: %s: SELECT %d failed: %.200s", op, r->db, rep ? rep->str : c->errstr);
    if (rep) freeReplyObject(rep);
  }
  if (st != CT_OK) {
    redisFree(c);
    return st;
  }
  *out = c;
  return CT_OK;
}

static CT_RESULT kvs__redis_acquire(kvs *s, kvs_redis *r, unsigned *slot, int64_t deadline, const char *op,
                                    ct_err *err) {
  pthread_mutex_lock(&s->lock);
  for (;;) {
    for (unsigned i = 0; i < r->n; i++) {
      if (r->busy[i]) continue;
      r->busy[i] = true;
      *slot = i;
      pthread_mutex_unlock(&s->lock);
      if (r->conns[i]) return CT_OK;
      ct_status st = kvs__redis_connect(s, r, &r->conns[i], deadline, op, err);
      if (st != CT_OK) {
        pthread_mutex_lock(&s->lock);
        r->busy[i] = false;
        pthread_cond_signal(&r->cond);
        pthread_mutex_unlock(&s->lock);
      }
      return st;
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
    pthread_cond_timedwait(&r->cond, &s->lock, &ts);
  }
  pthread_mutex_unlock(&s->lock);
  return ct_fail(err, CT_EIO, "redis: %s: all %u connections busy for %u ms (server slow?)", op, r->n, s->timeout_ms);
}

static void kvs__redis_release(kvs *s, kvs_redis *r, unsigned slot, bool broken) {
  if (broken && r->conns[slot]) {
    redisFree(r->conns[slot]);
    r->conns[slot] = NULL;
  }
  pthread_mutex_lock(&s->lock);
  r->busy[slot] = false;
  pthread_cond_signal(&r->cond);
  pthread_mutex_unlock(&s->lock);
}

/* Runs one command given as an argument vector (binary-safe). A NULL reply or a protocol error
 * breaks the connection; an error reply (e.g. WRONGTYPE) does not. */
static CT_RESULT kvs__redis_cmd(kvs *s, const char *op, int argc, const char **argv, const size_t *lens,
                                redisReply **out, ct_err *err) {
  kvs_redis *r = s->impl;
  int64_t deadline = kvs__now_ms() + s->timeout_ms;
  unsigned slot = 0;
  CT_GUARD(kvs__redis_acquire(s, r, &slot, deadline, op, err));
  redisContext *c = r->conns[slot];
  redisReply *rep = redisCommandArgv(c, argc, argv, lens);
  ct_status st = CT_OK;
  bool broken = false;
  if (!rep) {
    broken = true;
    bool timeout = c->err == REDIS_ERR_IO && strstr(c->errstr, "temporarily unavailable");
    st = timeout ? ct_fail(err, CT_EIO, "redis: %s: no reply within %u ms (server stalled or unreachable)", op,
                           s->timeout_ms)
                 : ct_fail(err, CT_EIO, "redis: %s: %s", op, c->err == REDIS_ERR_EOF ? "connection closed by the server"
                                                                                   : c->errstr);
  } else if (rep->type == REDIS_REPLY_ERROR) {
    st = ct_fail(err, CT_EIO, "redis: %s: %.200s", op, rep->str);
    freeReplyObject(rep);
    rep = NULL;
  }
  kvs__redis_release(s, r, slot, broken);
  if (st == CT_OK) *out = rep;
  return st;
}

static CT_RESULT kvs__redis_key(const char *ns, const char *key, char *out, size_t cap, ct_err *err) {
  int n = snprintf(out, cap, "%s:%s", ns, key);
  CT_ENSURE(n > 0 && (size_t)n < cap, err, CT_ELIMIT, "redis key too long");
  return CT_OK;
}

static CT_RESULT kvs__redis_put(kvs *s, const char *ns, const char *key, const void *value, size_t len,
                                kvs__mode mode, unsigned ttl_s, bool *inserted, ct_err *err) {
  char k[KVS_MAX_KEY + 64], op[128], ttl[16];
  CT_GUARD(kvs__redis_key(ns, key, k, sizeof k, err));
  snprintf(op, sizeof op, "%s %s/%.64s", mode == KVS__IF_ABSENT ? "put-if-absent" : "put", ns, key);
  snprintf(ttl, sizeof ttl, "%u", ttl_s);
  /* One SET carries the existence check and the expiry, so both are atomic. */
  const char *argv[6] = {"SET", k, len ? value : "", NULL, NULL, NULL};
  size_t lens[6] = {3, strlen(k), len, 0, 0, 0};
  int argc = 3;
  if (mode == KVS__IF_ABSENT) {
    argv[argc] = "NX";
    lens[argc++] = 2;
  }
  if (ttl_s) {
    argv[argc] = "EX";
    lens[argc++] = 2;
    argv[argc] = ttl;
    lens[argc++] = strlen(ttl);
  }
  redisReply *rep = NULL;
  CT_GUARD(kvs__redis_cmd(s, op, argc, argv, lens, &rep, err));
  if (inserted) *inserted = rep->type == REDIS_REPLY_STATUS;
  freeReplyObject(rep);
  return CT_OK;
}

static CT_RESULT kvs__redis_get(kvs *s, const char *ns, const char *key, uint8_t **value, size_t *len, ct_err *err) {
  char k[KVS_MAX_KEY + 64], op[128];
  CT_GUARD(kvs__redis_key(ns, key, k, sizeof k, err));
  snprintf(op, sizeof op, "get %s/%.64s", ns, key);
  const char *argv[2] = {"GET", k};
  size_t lens[2] = {3, strlen(k)};
  redisReply *rep = NULL;
  CT_GUARD(kvs__redis_cmd(s, op, 2, argv, lens, &rep, err));
  ct_status st = CT_OK;
  if (rep->type == REDIS_REPLY_NIL) {
    st = ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
  } else if (rep->type != REDIS_REPLY_STRING || rep->len > KVS_MAX_VALUE) {
    st = ct_fail(err, CT_EIO, "redis: %s: unexpected reply type %d", op, rep->type);
  } else {
    uint8_t *copy = malloc(rep->len + 1);
    if (!copy) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
    } else {
      memcpy(copy, rep->str, rep->len);
      copy[rep->len] = 0;
      ct_wipe(rep->str, rep->len);
      *value = copy;
      *len = rep->len;
    }
  }
  freeReplyObject(rep);
  return st;
}

static CT_RESULT kvs__redis_del(kvs *s, const char *ns, const char *key, ct_err *err) {
  char k[KVS_MAX_KEY + 64], op[128];
  CT_GUARD(kvs__redis_key(ns, key, k, sizeof k, err));
  snprintf(op, sizeof op, "delete %s/%.64s", ns, key);
  const char *argv[2] = {"DEL", k};
  size_t lens[2] = {3, strlen(k)};
  redisReply *rep = NULL;
  CT_GUARD(kvs__redis_cmd(s, op, 2, argv, lens, &rep, err));
  bool gone = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
  freeReplyObject(rep);
  return gone ? CT_OK : ct_fail(err, CT_ENOTFOUND, "no \"%s\" in %s", key, ns);
}

/* SCAN rather than KEYS: it never blocks the server for the whole keyspace. */
static CT_RESULT kvs__redis_list(kvs *s, const char *ns, json_t *arr, ct_err *err) {
  char op[96], pattern[64], cursor[32] = "0";
  snprintf(op, sizeof op, "list %s", ns);
  snprintf(pattern, sizeof pattern, "%s:*", ns);
  size_t prefix = strlen(ns) + 1;
  for (unsigned rounds = 0;; rounds++) {
    CT_ENSURE(rounds < 100000, err, CT_ELIMIT, "redis: %s: SCAN did not finish", op);
    const char *argv[6] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
    size_t lens[6] = {4, strlen(cursor), 5, strlen(pattern), 5, 4};
    redisReply *rep = NULL;
    CT_GUARD(kvs__redis_cmd(s, op, 6, argv, lens, &rep, err));
    ct_status st = CT_OK;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_ARRAY || rep->element[0]->len >= sizeof cursor) {
      st = ct_fail(err, CT_EIO, "redis: %s: unexpected SCAN reply", op);
    } else {
      memcpy(cursor, rep->element[0]->str, rep->element[0]->len);
      cursor[rep->element[0]->len] = 0;
      redisReply *keys = rep->element[1];
      for (size_t i = 0; i < keys->elements && st == CT_OK; i++) {
        redisReply *k = keys->element[i];
        if (k->type != REDIS_REPLY_STRING || k->len <= prefix) continue;
        if (json_array_size(arr) >= KVS_MAX_LIST)
          st = ct_fail(err, CT_ELIMIT, "redis: %s: more than %u entries", op, KVS_MAX_LIST);
        else if (json_array_append_new(arr, json_stringn(k->str + prefix, k->len - prefix)) != 0)
          st = ct_fail(err, CT_ENOMEM, "out of memory");
      }
    }
    freeReplyObject(rep);
    CT_GUARD(st);
    if (!strcmp(cursor, "0")) return CT_OK;
  }
}

static CT_RESULT kvs__redis_ping(kvs *s, ct_err *err) {
  const char *argv[1] = {"PING"};
  size_t lens[1] = {4};
  redisReply *rep = NULL;
  CT_GUARD(kvs__redis_cmd(s, "ping", 1, argv, lens, &rep, err));
  freeReplyObject(rep);
  return CT_OK;
}

static void kvs__redis_close(kvs *s) {
  kvs_redis *r = s->impl;
  if (!r) return;
  for (unsigned i = 0; i < r->n; i++)
    if (r->conns[i]) redisFree(r->conns[i]);
  if (r->password) ct_wipe(r->password, strlen(r->password));
  free(r->password);
  free(r->user);
  free(r->host);
  free(r->unix_path);
  pthread_cond_destroy(&r->cond);
  free(r);
  s->impl = NULL;
}

const kvs__ops kvs__redis_ops = {
    .put = kvs__redis_put,
    .get = kvs__redis_get,
    .del = kvs__redis_del,
    .list = kvs__redis_list,
    .ping = kvs__redis_ping,
    .close = kvs__redis_close,
};

/* Percent-decodes a URL component into a new string. */
static CT_RESULT kvs__redis_pct(const char *p, size_t n, char **out, ct_err *err) {
  char *d = malloc(n + 1);
  CT_ENSURE(d, err, CT_ENOMEM, "out of memory");
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned v = 0;
    char hex[3] = {0};
    if (p[i] == '%' && i + 2 < n) {
      hex[0] = p[i + 1];
      hex[1] = p[i + 2];
    }
    if (hex[0] && isxdigit((unsigned char)hex[0]) && isxdigit((unsigned char)hex[1]) && sscanf(hex, "%2x", &v) == 1) {
      d[j++] = (char)v;
      i += 2;
    } else {
      d[j++] = p[i];
    }
  }
  d[j] = 0;
  *out = d;
  return CT_OK;
}

/* redis://[[user]:password@]host[:port][/db] | unix:///path[?db=N] | redis+unix:///path[?db=N] */
static CT_RESULT kvs__redis_parse(kvs_redis *r, const char *url, ct_err *err) {
  const char *p;
  CT_ENSURE(strncmp(url, "rediss://", 9), err, CT_EUNSUPPORTED,
            "storage_backend.backends.redis.url: rediss:// (TLS) is not supported by this build (hiredis without "
            "TLS); use a TLS-terminating proxy or a private network");
  if (!strncmp(url, "unix://", 7) || !strncmp(url, "redis+unix://", 13)) {
    p = strstr(url, "://") + 3;
    size_t n = strcspn(p, "?");
    CT_ENSURE(n > 0 && p[0] == '/', err, CT_EINVAL, "storage_backend.backends.redis.url: unix:// needs an absolute path");
    CT_GUARD(ct_strndup(p, n, &r->unix_path, err));
    const char *q = strstr(p + n, "db=");
    if (q) r->db = atoi(q + 3);
    return CT_OK;
  }
  CT_ENSURE(!strncmp(url, "redis://", 8), err, CT_EINVAL,
            "storage_backend.backends.redis.url must start with redis://, unix:// or redis+unix://");
  p = url + 8;
  const char *end = p + strcspn(p, "/?");
  const char *at = memchr(p, '@', (size_t)(end - p));
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (colon) {
      if (colon > p) CT_GUARD(kvs__redis_pct(p, (size_t)(colon - p), &r->user, err));
      CT_GUARD(kvs__redis_pct(colon + 1, (size_t)(at - colon - 1), &r->password, err));
    } else if (at > p) {
      CT_GUARD(kvs__redis_pct(p, (size_t)(at - p), &r->password, err));
    }
    p = at + 1;
  }
  const char *hend = p;
  if (*p == '[') {
    hend = memchr(p, ']', (size_t)(end - p));
    CT_ENSURE(hend, err, CT_EINVAL, "storage_backend.backends.redis.url: bad IPv6 host");
    CT_GUARD(ct_strndup(p + 1, (size_t)(hend - p - 1), &r->host, err));
    hend++;
  } else {
    while (hend < end && *hend != ':') hend++;
    CT_GUARD(ct_strndup(p, (size_t)(hend - p), &r->host, err));
  }
  if (!*r->host) {
    free(r->host);
    CT_GUARD(ct_strdup("127.0.0.1", &r->host, err));
  }
  r->port = 6379;
  if (hend < end && *hend == ':') {
    char *e = NULL;
    long port = strtol(hend + 1, &e, 10);
    CT_ENSURE(e == end && port > 0 && port < 65536, err, CT_EINVAL, "storage_backend.backends.redis.url: bad port");
    r->port = (int)port;
  }
  if (*end == '/' && end[1]) r->db = atoi(end + 1);
  return CT_OK;
}

CT_RESULT kvs__redis_open(kvs *s, const kvs_config *cfg, ct_err *err) {
  s->ops = &kvs__redis_ops;
  kvs_redis *r = calloc(1, sizeof *r);
  CT_ENSURE(r, err, CT_ENOMEM, "out of memory");
  s->impl = r;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cond, &ca);
  pthread_condattr_destroy(&ca);
  r->n = cfg->pool_size ? cfg->pool_size : 4;
  if (r->n > KVS_REDIS_MAX_POOL) r->n = KVS_REDIS_MAX_POOL;
  return kvs__redis_parse(r, cfg->redis_url && *cfg->redis_url ? cfg->redis_url : "redis://127.0.0.1:6379", err);
}
