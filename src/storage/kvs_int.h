/*
 * kvs_int.h - what the storage backends share (not a public interface).
 */
#ifndef KVS_INT_H
#define KVS_INT_H

#include <pthread.h>
#include <time.h>

#include "kvs.h"

/* How a write treats an existing entry. */
typedef enum kvs__mode { KVS__REPLACE, KVS__IF_ABSENT } kvs__mode;

typedef struct kvs__ops {
  /* ttl_s 0: no expiry. For KVS__IF_ABSENT, *inserted tells whether the entry was created (an
   * expired entry counts as absent). */
  CT_RESULT (*put)(kvs *s, const char *ns, const char *key, const void *value, size_t len, kvs__mode mode,
                   unsigned ttl_s, bool *inserted, ct_err *err);
  CT_RESULT (*get)(kvs *s, const char *ns, const char *key, uint8_t **value, size_t *len, ct_err *err);
  CT_RESULT (*del)(kvs *s, const char *ns, const char *key, ct_err *err);
  /* Appends the live keys of ns to arr (strings; duplicates and order do not matter). */
  CT_RESULT (*list)(kvs *s, const char *ns, json_t *arr, ct_err *err);
  CT_RESULT (*sweep)(kvs *s, const char *ns, ct_err *err);
  CT_RESULT (*ping)(kvs *s, ct_err *err);
  void (*close)(kvs *s);
} kvs__ops;

struct kvs {
  kvs_type type;
  const kvs__ops *ops;
  unsigned timeout_ms;
  pthread_mutex_t lock; /* Memory and the local backends */
  char *dir;            /* LocalFs / LocalJson */
  int dirfd;            /* every file access is relative to this, so it survives a privilege drop */
  void *impl;           /* backend state */
};

extern const kvs__ops kvs__memory_ops, kvs__localfs_ops, kvs__localjson_ops, kvs__pg_ops, kvs__redis_ops;

CT_RESULT kvs__memory_open(kvs *s, const kvs_config *cfg, ct_err *err);
CT_RESULT kvs__local_open(kvs *s, const kvs_config *cfg, ct_err *err);
CT_RESULT kvs__pg_open(kvs *s, const kvs_config *cfg, ct_err *err);
CT_RESULT kvs__redis_open(kvs *s, const kvs_config *cfg, ct_err *err);

/* Monotonic milliseconds, for operation deadlines. */
int64_t kvs__now_ms(void);

#endif
