/*
 * cdh_mount.c - SecureMount (api.SecureMountService): the block-device volume type with LUKS2
 * through libcryptsetup, as guest-components' confidential-data-hub does it: an empty device is
 * formatted with the key (from the KBS, a sealed secret or a file), an encrypted one is opened
 * with it; the plaintext device is then exposed at mount_point as a filesystem (ext4, made on an
 * empty device) or as a symlink to the device. Activation needs the kernel's device-mapper: a
 * guest without it gets a clear "not supported" status, before anything is written.
 */
#include <errno.h>
#include <fcntl.h>
#include <libcryptsetup.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cdh.h"
#include "ct_codec.h"
#include "ct_file.h"
#include "ct_log.h"
#include "ct_mem.h"

#define CDH__KEY_MAX (64u << 10)
#define CDH__RANDOM_KEY_LEN 4096

extern char **environ;

CT_RESULT cdh_mount_request_new(cdh_mount_request **out, ct_err *err) {
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

CT_RESULT cdh_mount_request_set_option(cdh_mount_request *m, const char *key, const char *value,
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

CT_RESULT cdh_mount_request_add_flag(cdh_mount_request *m, const char *flag, ct_err *err) {
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

static int cdh__kernel_has_device_mapper(void) {
  uint8_t *misc = NULL;
  size_t n = 0;
  ct_err e;
  if (ct_file_read("/proc/misc", 64 << 10, &misc, &n, &e)) return access("/dev/mapper/control", F_OK) == 0;
  int yes = strstr((char *)misc, "device-mapper") != NULL;
  free(misc);
  return yes;
}

static void cdh__cryptsetup_log(int level, const char *msg, void *ud) {
  (void)ud;
  if (level == CRYPT_LOG_ERROR) CT_LOG_WARN_("cryptsetup", "%.*s", (int)strcspn(msg, "\n"), msg);
}

/* deviceId (MAJ:MIN, resolved through sysfs) or devicePath; it must be a block device. */
static CT_RESULT cdh__device(const cdh_mount_request *m, char *out, size_t cap, ct_err *err) {
  const char *id = cdh_mount_request_option(m, "deviceId");
  const char *path = cdh_mount_request_option(m, "devicePath");
  if (id) {
    unsigned maj = 0, min = 0;
    char end = 0;
    CT_ENSURE(sscanf(id, "%u:%u%c", &maj, &min, &end) == 2, err, CT_EINVAL,
              "SecureMount: deviceId \"%.40s\" must read MAJ:MIN", id);
    char ue[64];
    snprintf(ue, sizeof ue, "/sys/dev/block/%u:%u/uevent", maj, min);
    /* sysfs files report a page as their size: read what is there. */
    char d[4096];
    int fd = open(ue, O_RDONLY | O_CLOEXEC);
    CT_ENSURE(fd >= 0, err, CT_ENOTFOUND, "SecureMount: no block device %u:%u (%s)", maj, min,
              strerror(errno));
    ssize_t n = read(fd, d, sizeof d - 1);
    close(fd);
    d[n > 0 ? n : 0] = 0;
    const char *dn = strstr(d, "DEVNAME=");
    if (dn) snprintf(out, cap, "/dev/%.*s", (int)strcspn(dn + 8, "\n"), dn + 8);
    CT_ENSURE(dn && !strstr(out, ".."), err, CT_ENOTFOUND, "SecureMount: %s has no DEVNAME", ue);
  } else {
    CT_ENSURE(path && path[0] == '/', err, CT_EINVAL,
              "SecureMount: deviceId or an absolute devicePath is required");
    CT_ENSURE(strlen(path) < cap, err, CT_ELIMIT, "SecureMount: devicePath too long");
    snprintf(out, cap, "%s", path);
  }
  struct stat st;
  CT_ENSURE(stat(out, &st) == 0 && S_ISBLK(st.st_mode), err, CT_EINVAL,
            "SecureMount: %s is not a block device", out);
  return CT_OK;
}

static CT_RESULT cdh__volume_key(cdh_hub *h, const char *key, int empty, uint8_t **out, size_t *len,
                                 ct_err *err) {
  if (!key || !*key) {
    CT_ENSURE(empty, err, CT_EINVAL, "SecureMount: an encrypted device needs its key (option key)");
    /* Upstream's choice for an empty device without a key: a random one (the volume is scratch
     * space that lives as long as the pod). */
    uint8_t *k = malloc(CDH__RANDOM_KEY_LEN);
    CT_ENSURE(k, err, CT_ENOMEM, "out of memory");
    ct_status st = ct_random(k, CDH__RANDOM_KEY_LEN, err);
    if (st) {
      free(k);
      return st;
    }
    *out = k;
    *len = CDH__RANDOM_KEY_LEN;
    return CT_OK;
  }
  ct_status st;
  if (!strncmp(key, "sealed.", 7)) st = cdh_hub_unseal(h, key, strlen(key), out, len, err);
  else if (!strncmp(key, "kbs:", 4) || !strncmp(key, "kbs+", 4)) st = cdh_hub_get_resource(h, key, out, len, err);
  else if (!strncmp(key, "file://", 7)) st = ct_file_read(key + 7, CDH__KEY_MAX, out, len, err);
  else return ct_fail(err, CT_EINVAL, "SecureMount: key must be sealed.*, kbs:// or file://");
  if (st) return ct_err_prefix(err, "SecureMount: key: ");
  if (!*len) {
    free(*out);
    return ct_fail(err, CT_EINVAL, "SecureMount: the key is empty");
  }
  return CT_OK;
}

static CT_RESULT cdh__mkfs(const char *dev, const char *opts, ct_err *err) {
  char buf[512] = "";
  char *argv[40];
  int argc = 0;
  argv[argc++] = "mkfs.ext4";
  argv[argc++] = "-q";
  if (opts) {
    CT_ENSURE(strlen(opts) < sizeof buf, err, CT_ELIMIT, "SecureMount: mkfsOpts too long");
    snprintf(buf, sizeof buf, "%s", opts);
    for (char *t = strtok(buf, " \t"); t && argc < 36; t = strtok(NULL, " \t")) argv[argc++] = t;
  }
  argv[argc++] = (char *)dev;
  argv[argc] = NULL;
  pid_t pid;
  int rc = posix_spawnp(&pid, "mkfs.ext4", NULL, NULL, argv, environ);
  CT_ENSURE(rc == 0, err, CT_EUNSUPPORTED, "SecureMount: cannot run mkfs.ext4: %s", strerror(rc));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  CT_ENSURE(WIFEXITED(status) && WEXITSTATUS(status) == 0, err, CT_EIO,
            "SecureMount: mkfs.ext4 %s failed", dev);
  return CT_OK;
}

CT_RESULT cdh_hub_secure_mount(cdh_hub *h, const cdh_mount_request *m, ct_err *err) {
  CT_ENSURE(m->volume_type && !strcmp(m->volume_type, "block-device"), err, CT_EUNSUPPORTED,
            "SecureMount: volume type \"%s\" is not supported (block-device is)",
            m->volume_type ? m->volume_type : "");
  const char *enc = cdh_mount_request_option(m, "encryptionType");
  const char *src = cdh_mount_request_option(m, "sourceType");
  const char *target = cdh_mount_request_option(m, "targetType");
  const char *integrity = cdh_mount_request_option(m, "dataIntegrity");
  CT_ENSURE(enc && !strcmp(enc, "luks2"), err, CT_EUNSUPPORTED,
            "SecureMount: encryptionType \"%s\" is not supported (luks2 is)", enc ? enc : "");
  CT_ENSURE(src && (!strcmp(src, "empty") || !strcmp(src, "encrypted")), err, CT_EINVAL,
            "SecureMount: sourceType must be empty or encrypted");
  CT_ENSURE(!target || !strcmp(target, "fileSystem") || !strcmp(target, "device"), err, CT_EINVAL,
            "SecureMount: targetType must be fileSystem or device");
  CT_ENSURE(!integrity || !strcmp(integrity, "false"), err, CT_EUNSUPPORTED,
            "SecureMount: dataIntegrity (dm-integrity) is not supported by this CDH");
  CT_ENSURE(m->mount_point && m->mount_point[0] == '/', err, CT_EINVAL,
            "SecureMount: mount_point must be an absolute path");
  int empty = !strcmp(src, "empty"), fs = !target || !strcmp(target, "fileSystem");
  char dev[256];
  CT_GUARD(cdh__device(m, dev, sizeof dev, err));
  int dm = cdh__kernel_has_device_mapper();
  /* Nothing is formatted unless it can also be opened: an empty device is left untouched. */
  CT_ENSURE(dm || !empty, err, CT_EUNSUPPORTED,
            "SecureMount: this kernel has no device-mapper (dm-crypt), so %s cannot be opened as a "
            "LUKS2 volume; nothing was written to it", dev);
  uint8_t *key = NULL;
  size_t klen = 0;
  CT_GUARD(cdh__volume_key(h, cdh_mount_request_option(m, "key"), empty, &key, &klen, err));
  struct crypt_device *cd = NULL;
  ct_status st = CT_OK;
  char name[32] = "", mapped[64] = "";
  int active = 0;
  if (crypt_init(&cd, dev) < 0) {
    st = ct_fail(err, CT_EIO, "SecureMount: cannot open %s", dev);
    goto out;
  }
  crypt_set_log_callback(cd, cdh__cryptsetup_log, NULL);
  if (empty) {
    struct crypt_params_luks2 p = {.sector_size = 512};
    int rc = crypt_format(cd, CRYPT_LUKS2, "aes", "xts-plain64", NULL, NULL, 64, &p);
    if (rc >= 0) rc = crypt_keyslot_add_by_volume_key(cd, CRYPT_ANY_SLOT, NULL, 0, (const char *)key, klen);
    CT_ENSURE_GOTO(st, rc >= 0, out, err, CT_EIO, "SecureMount: formatting %s as LUKS2 failed: %s", dev,
                   strerror(-rc));
  } else {
    CT_ENSURE_GOTO(st, crypt_load(cd, CRYPT_LUKS2, NULL) >= 0, out, err, CT_EINVAL,
                   "SecureMount: %s is not a LUKS2 device", dev);
    int slot = crypt_activate_by_passphrase(cd, NULL, CRYPT_ANY_SLOT, (const char *)key, klen, 0);
    CT_ENSURE_GOTO(st, slot >= 0, out, err, CT_EDENIED,
                   "SecureMount: the key does not open any LUKS2 keyslot of %s", dev);
    CT_ENSURE_GOTO(st, dm, out, err, CT_EUNSUPPORTED,
                   "SecureMount: the key opens keyslot %d of %s, but this kernel has no "
                   "device-mapper (dm-crypt), so the volume cannot be activated", slot, dev);
  }
  uint8_t rnd[4];
  CT_GUARD_GOTO(st, ct_random(rnd, sizeof rnd, err), out);
  snprintf(name, sizeof name, "cdh-%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
  snprintf(mapped, sizeof mapped, "/dev/mapper/%s", name);
  int rc = crypt_activate_by_passphrase(cd, name, CRYPT_ANY_SLOT, (const char *)key, klen, 0);
  CT_ENSURE_GOTO(st, rc >= 0, out, err, CT_EIO, "SecureMount: activating %s failed: %s", dev, strerror(-rc));
  active = 1;
  if (fs) {
    if (empty) CT_GUARD_GOTO(st, cdh__mkfs(mapped, cdh_mount_request_option(m, "mkfsOpts"), err), out);
    CT_ENSURE_GOTO(st, mkdir(m->mount_point, 0755) == 0 || errno == EEXIST, out, err, CT_EIO,
                   "SecureMount: mkdir %s: %s", m->mount_point, strerror(errno));
    CT_ENSURE_GOTO(st, mount(mapped, m->mount_point, "ext4", MS_NOSUID | MS_NODEV, NULL) == 0, out, err,
                   CT_EIO, "SecureMount: mounting %s on %s: %s", mapped, m->mount_point, strerror(errno));
  } else {
    CT_ENSURE_GOTO(st, symlink(mapped, m->mount_point) == 0, out, err, CT_EIO,
                   "SecureMount: linking %s to %s: %s", m->mount_point, mapped, strerror(errno));
  }
  CT_LOG_INFO_("cdh", "SecureMount: %s (%s LUKS2) at %s as %s", dev, empty ? "new" : "existing",
               m->mount_point, fs ? "a filesystem" : "a device");
out:
  if (st && active) crypt_deactivate(cd, name);
  if (cd) crypt_free(cd);
  ct_wipe(key, klen);
  free(key);
  return st;
}
