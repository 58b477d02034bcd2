/*
 * guest_aael.c - runtime measurements (the attestation agent's event log, AAEL) in the TCG2
 * crypto-agile entry format that CC event log parsers read.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ct_buf.h"
#include "ct_digest.h"
#include "ct_log.h"
#include "guest_internal.h"
#include "guest_tpm.h"

#define GUEST_AAEL__EV_EVENT_TAG 6u
#define GUEST_AAEL__TAG 0x4141454cu /* "AAEL" */

static int guest_aael__word_ok(const char *s) {
  size_t n = strnlen(s, GUEST_AAEL_FIELD_MAX + 1);
  if (n == 0 || n > GUEST_AAEL_FIELD_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t') return 0;
  return 1;
}

/* TDX maps PCR indices onto RTMRs the way upstream does (pcr_to_ccmr). */
static unsigned guest_aael__rtmr(unsigned pcr) {
  if (pcr == 1 || pcr == 7) return 0;
  if (pcr >= 2 && pcr <= 6) return 1;
  if (pcr >= 8 && pcr <= 15) return 2;
  return 3;
}

static CT_RESULT guest_aael__put32(ct_buf *b, uint32_t v, ct_err *err) {
  uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  return ct_buf_append(b, le, 4, err);
}

static CT_RESULT guest_aael__append_file(const char *path, const uint8_t *d, size_t n, ct_err *err) {
  char dir[4096];
  CT_ENSURE(strlen(path) < sizeof dir, err, CT_ELIMIT, "aael: path too long");
  strcpy(dir, path);
  for (char *s = dir + 1; *s; s++)
    if (*s == '/') {
      *s = 0;
      CT_ENSURE(mkdir(dir, 0700) == 0 || errno == EEXIST, err, CT_EIO, "aael: mkdir %s: %s", dir,
                strerror(errno));
      *s = '/';
    }
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  CT_ENSURE(fd >= 0, err, CT_EIO, "aael: cannot open %s: %s", path, strerror(errno));
  ssize_t w = write(fd, d, n);
  int ok = w == (ssize_t)n && fsync(fd) == 0;
  int e = errno;
  close(fd);
  CT_ENSURE(ok, err, CT_EIO, "aael: appending to %s: %s", path, strerror(e));
  return CT_OK;
}

CT_RESULT guest_runtime_measure(const guest_cfg *cfg, guest_tee tee, unsigned pcr,
                                const char *domain, const char *operation, const char *content,
                                ct_err *err) {
  CT_ENSURE(cfg && cfg->eventlog_path, err, CT_EUNSUPPORTED,
            "runtime measurements are not enabled ([eventlog_config] enable_eventlog)");
  CT_ENSURE(domain && operation && content && guest_aael__word_ok(domain) &&
                guest_aael__word_ok(operation),
            err, CT_EINVAL, "aael: domain and operation must be single words");
  size_t clen = strnlen(content, GUEST_AAEL_FIELD_MAX + 1);
  CT_ENSURE(clen <= GUEST_AAEL_FIELD_MAX && !memchr(content, '\n', clen), err, CT_EINVAL,
            "aael: content must be one line of at most %d bytes", GUEST_AAEL_FIELD_MAX);
  CT_ENSURE(pcr < 24, err, CT_EINVAL, "aael: register index %u out of range", pcr);
  int tdx = tee == GUEST_TEE_TDX;
  CT_ENSURE(tdx || tee == GUEST_TEE_TPM || tee == GUEST_TEE_AZ_SNP_VTPM || tee == GUEST_TEE_AZ_TDX_VTPM,
            err, CT_EUNSUPPORTED, "aael: %s has no runtime measurement registers",
            guest_tee_name(tee) ? guest_tee_name(tee) : "this TEE");

  /* Tagged event, then the TCG2 entry around it. */
  ct_buf tagged, entry;
  ct_buf_init(&tagged, 4 * GUEST_AAEL_FIELD_MAX);
  ct_buf_init(&entry, 5 * GUEST_AAEL_FIELD_MAX);
  size_t tlen = strlen(domain) + 1 + strlen(operation) + 1 + clen;
  ct_status st = guest_aael__put32(&tagged, GUEST_AAEL__TAG, err);
  if (!st) st = guest_aael__put32(&tagged, (uint32_t)tlen, err);
  if (!st) st = ct_buf_printf(&tagged, err, "%s %s %s", domain, operation, content);
  uint8_t digest[48];
  size_t dlen = tdx ? 48 : 32;
  if (!st) {
    if (tdx) ct_sha384(tagged.data, tagged.len, digest);
    else ct_sha256(tagged.data, tagged.len, digest);
  }
  unsigned reg = tdx ? guest_aael__rtmr(pcr) : pcr;
  uint8_t alg[2] = {tdx ? 0x0C : 0x0B, 0};
  if (!st) st = guest_aael__put32(&entry, tdx ? reg + 1 : reg, err); /* CC MR index */
  if (!st) st = guest_aael__put32(&entry, GUEST_AAEL__EV_EVENT_TAG, err);
  if (!st) st = guest_aael__put32(&entry, 1, err);
  if (!st) st = ct_buf_append(&entry, alg, 2, err);
  if (!st) st = ct_buf_append(&entry, digest, dlen, err);
  if (!st) st = guest_aael__put32(&entry, (uint32_t)tagged.len, err);
  if (!st) st = ct_buf_append(&entry, tagged.data, tagged.len, err);
  ct_buf_free(&tagged);
  if (st) {
    ct_buf_free(&entry);
    return st;
  }
  /* Log first, then extend: a crash in between leaves a log that a verifier can detect as
   * ahead of the register, never a register nobody can explain. */
  st = guest_aael__append_file(cfg->eventlog_path, entry.data, entry.len, err);
  ct_buf_free(&entry);
  CT_GUARD(st);
  if (tdx) {
    char rel[96], path[4096];
    snprintf(rel, sizeof rel, "/sys/class/misc/tdx_guest/measurements/rtmr%u:sha384", reg);
    CT_GUARD(guest_path(cfg, rel, path, sizeof path, err));
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    CT_ENSURE(fd >= 0, err, CT_EIO, "aael: cannot open %s: %s", path, strerror(errno));
    ssize_t w = write(fd, digest, 48);
    int e = errno;
    close(fd);
    CT_ENSURE(w == 48, err, CT_EIO, "aael: extending RTMR%u: %s", reg, strerror(e));
  } else {
    char tcti[4200];
    CT_GUARD(guest_tpm_tcti(cfg, tee == GUEST_TEE_TPM, tcti, sizeof tcti, err));
    guest_tpm *t = NULL;
    CT_GUARD(guest_tpm_open(tcti, &t, err));
    st = guest_tpm_pcr_extend(t, pcr, digest, err);
    guest_tpm_close(t);
    CT_GUARD(st);
  }
  CT_LOG_INFO_("guest", "runtime measurement %s %s recorded in register %u", domain, operation, reg);
  return CT_OK;
}
