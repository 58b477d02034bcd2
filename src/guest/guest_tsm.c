/*
 * guest_tsm.c - the configfs-tsm report ABI (/sys/kernel/config/tsm/report), shared by the TDX
 * and SNP attesters.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_file.h"
#include "ct_mem.h"
#include "guest_attester.h"

#define GUEST_TSM__OUT_MAX (1u << 20)

static CT_RESULT guest_tsm__join(const char *dir, const char *name, char *p, size_t cap,
                                 ct_err *err) {
  int n = snprintf(p, cap, "%s/%s", dir, name);
  CT_ENSURE(n >= 0 && (size_t)n < cap, err, CT_ELIMIT, "tsm: path %s/%s too long", dir, name);
  return CT_OK;
}

static CT_RESULT guest_tsm__write(const char *dir, const char *name, const void *data, size_t len,
                                  ct_err *err) {
  char p[4300];
  CT_GUARD(guest_tsm__join(dir, name, p, sizeof p, err));
  int fd = open(p, O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC, 0600);
  CT_ENSURE(fd >= 0, err, CT_EIO, "tsm: cannot open %s: %s", p, strerror(errno));
  const uint8_t *d = data;
  while (len) {
    ssize_t n = write(fd, d, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = errno;
      close(fd);
      return ct_fail(err, CT_EIO, "tsm: writing %s: %s", p, strerror(e));
    }
    d += n;
    len -= (size_t)n;
  }
  CT_ENSURE(close(fd) == 0, err, CT_EIO, "tsm: closing %s: %s", p, strerror(errno));
  return CT_OK;
}

static CT_RESULT guest_tsm__read(const char *dir, const char *name, size_t max, uint8_t **out,
                                 size_t *len, ct_err *err) {
  char p[4300];
  CT_GUARD(guest_tsm__join(dir, name, p, sizeof p, err));
  CT_GUARD(ct_file_read(p, max, out, len, err));
  return CT_OK;
}

/* generation counts inblob writes; more than one means someone else used our entry. */
static CT_RESULT guest_tsm__check_generation(const char *dir, ct_err *err) {
  uint8_t *g = NULL;
  size_t glen = 0;
  CT_GUARD(guest_tsm__read(dir, "generation", 32, &g, &glen, err));
  char *end = NULL;
  errno = 0;
  unsigned long v = strtoul((char *)g, &end, 10);
  int ok = end != (char *)g && errno == 0 && (*end == '\n' || *end == 0);
  free(g);
  CT_ENSURE(ok, err, CT_EIO, "tsm: unreadable generation attribute");
  CT_ENSURE(v <= 1, err, CT_EIO,
            "tsm: inblob write conflict (generation %lu, expected 1): another writer used the entry",
            v);
  return CT_OK;
}

CT_RESULT guest_tsm_report(const guest_cfg *cfg, const char *provider, int privlevel,
                           const uint8_t *inblob, size_t inlen, uint8_t **out, size_t *out_len,
                           uint8_t **aux, size_t *aux_len, ct_err *err) {
  *out = NULL;
  *out_len = 0;
  if (aux) {
    *aux = NULL;
    *aux_len = 0;
  }
  CT_ENSURE(inlen > 0 && inlen <= 64, err, CT_EINVAL, "tsm: inblob must be 1..64 bytes, got %zu",
            inlen);
  char base[4096], dir[4200];
  CT_GUARD(guest_path(cfg, "/sys/kernel/config/tsm/report", base, sizeof base, err));
  struct stat sb;
  CT_ENSURE(stat(base, &sb) == 0 && S_ISDIR(sb.st_mode), err, CT_ENOTFOUND,
            "tsm: %s is not available (no configfs-tsm support)", base);
  int fixed = cfg && cfg->tsm_entry;
  if (fixed) {
    CT_GUARD(guest_tsm__join(base, cfg->tsm_entry, dir, sizeof dir, err));
    CT_ENSURE(mkdir(dir, 0700) == 0 || errno == EEXIST, err, CT_EIO, "tsm: mkdir %s: %s", dir,
              strerror(errno));
  } else {
    uint8_t rnd[8];
    char hex[17];
    CT_GUARD(ct_random(rnd, sizeof rnd, err));
    ct_hex_into(rnd, sizeof rnd, hex);
    char name[40];
    snprintf(name, sizeof name, "coco-trust-%s", hex);
    CT_GUARD(guest_tsm__join(base, name, dir, sizeof dir, err));
    CT_ENSURE(mkdir(dir, 0700) == 0, err, CT_EIO, "tsm: mkdir %s: %s", dir, strerror(errno));
  }
  ct_status st = CT_OK;
  uint8_t *prov = NULL;
  size_t plen = 0;
  CT_GUARD_GOTO(st, guest_tsm__read(dir, "provider", 64, &prov, &plen, err), out);
  if (plen && prov[plen - 1] == '\n') prov[--plen] = 0;
  CT_ENSURE_GOTO(st, strcmp((char *)prov, provider) == 0, out, err, CT_ENOTFOUND,
                 "tsm: provider is \"%s\", expected \"%s\"", (char *)prov, provider);
  if (privlevel >= 0) {
    char lvl[16];
    int n = snprintf(lvl, sizeof lvl, "%d\n", privlevel);
    CT_GUARD_GOTO(st, guest_tsm__write(dir, "privlevel", lvl, (size_t)n, err), out);
  }
  CT_GUARD_GOTO(st, guest_tsm__write(dir, "inblob", inblob, inlen, err), out);
  CT_GUARD_GOTO(st, guest_tsm__read(dir, "outblob", GUEST_TSM__OUT_MAX, out, out_len, err), out);
  /* An empty outblob is what a misconfigured quote service produces (guest-components#825). */
  CT_ENSURE_GOTO(st, *out_len > 0, out, err, CT_EIO,
                 "tsm: empty outblob (is the quote generation service reachable?)");
  if (aux) {
    char p[4300];
    CT_GUARD_GOTO(st, guest_tsm__join(dir, "auxblob", p, sizeof p, err), out);
    if (access(p, R_OK) == 0)
      CT_GUARD_GOTO(st, guest_tsm__read(dir, "auxblob", GUEST_TSM__OUT_MAX, aux, aux_len, err), out);
  }
  CT_GUARD_GOTO(st, guest_tsm__check_generation(dir, err), out);
out:
  free(prov);
  if (!fixed) (void)rmdir(dir);
  if (st) {
    free(*out);
    *out = NULL;
    *out_len = 0;
    if (aux) {
      free(*aux);
      *aux = NULL;
      *aux_len = 0;
    }
  }
  return st;
}
