/*
 * cdh_mount.c - SecureMount requests (api.SecureMountService): the request type and the
 * block-device volume.
 */
#include <stdlib.h>
#include <string.h>

#include "cdh.h"
#include "ct_mem.h"

ct_status cdh_mount_request_new(cdh_mount_request **out, ct_err *err) {
  cdh_mount_request *m = calloc(1, sizeof *m);
  CT_ENSURE(m, err, CT_ENOMEM, "out of memory");
  *out = m;
  return CT_OK;
}

static void cdh__free_str(char *s) {
  if (!s) return;
  ct_wipe(s, strlen(s));
  free(s);
}

ct_status cdh_mount_request_set_option(cdh_mount_request *m, const char *key, const char *value,
                                       ct_err *err) {
  char *v = strdup(value);
  CT_ENSURE(v, err, CT_ENOMEM, "out of memory");
  for (size_t i = 0; i < m->noptions; i++) {
    if (strcmp(m->keys[i], key)) continue;
    cdh__free_str(m->values[i]);
    m->values[i] = v;
    return CT_OK;
  }
  char *k = m->noptions < CDH_MOUNT_OPTIONS_MAX ? strdup(key) : NULL;
  if (!k) {
    cdh__free_str(v);
    return ct_fail(err, m->noptions < CDH_MOUNT_OPTIONS_MAX ? CT_ENOMEM : CT_ELIMIT,
                   "SecureMount: more than %d options", CDH_MOUNT_OPTIONS_MAX);
  }
  m->keys[m->noptions] = k;
  m->values[m->noptions++] = v;
  return CT_OK;
}

ct_status cdh_mount_request_add_flag(cdh_mount_request *m, const char *flag, ct_err *err) {
  CT_ENSURE(m->nflags < CDH_MOUNT_FLAGS_MAX, err, CT_ELIMIT, "SecureMount: more than %d flags",
            CDH_MOUNT_FLAGS_MAX);
  CT_ENSURE((m->flags[m->nflags] = strdup(flag)), err, CT_ENOMEM, "out of memory");
  m->nflags++;
  return CT_OK;
}

const char *cdh_mount_request_option(const cdh_mount_request *m, const char *key) {
  for (size_t i = 0; i < m->noptions; i++)
    if (!strcmp(m->keys[i], key)) return m->values[i];
  return NULL;
}

void cdh_mount_request_free(cdh_mount_request *m) {
  if (!m) return;
  free(m->volume_type);
  free(m->mount_point);
  for (size_t i = 0; i < m->noptions; i++) {
    free(m->keys[i]);
    cdh__free_str(m->values[i]); /* values may carry keys (sealed secrets, file contents) */
  }
  for (size_t i = 0; i < m->nflags; i++) free(m->flags[i]);
  free(m);
}

ct_status cdh_hub_secure_mount(cdh_hub *h, const cdh_mount_request *m, ct_err *err) {
  (void)h;
  return ct_fail(err, CT_EUNSUPPORTED, "SecureMount: volume type \"%s\" is not supported",
                 m->volume_type ? m->volume_type : "");
}
