/*
 * guest_tdx.c - Intel TDX evidence: a quote from configfs-tsm plus the CC event log, and the
 * MRCONFIGID check for init-data binding.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "guest_internal.h"

#define GUEST_TDX__CCEL_MAX (16u << 20)

/* struct tdx_report_req from the kernel's tdx-guest uapi. */
struct guest_tdx__report_req {
  uint8_t reportdata[64];
  uint8_t tdreport[1024];
};
#define GUEST_TDX__GET_REPORT0 _IOWR('T', 1, struct guest_tdx__report_req)

ct_status guest_tdx_evidence(const guest_cfg *cfg, const uint8_t *rd, size_t len, json_t **ev,
                             ct_err *err) {
  CT_ENSURE(len <= 64, err, CT_EINVAL, "tdx: report data must be at most 64 bytes, got %zu", len);
  uint8_t padded[64] = {0};
  if (len) memcpy(padded, rd, len);
  uint8_t *quote = NULL;
  size_t qlen = 0;
  CT_GUARD(guest_tsm_report(cfg, "tdx_guest", -1, padded, 64, &quote, &qlen, NULL, NULL, err));
  char *q64 = NULL, *el64 = NULL;
  ct_status st = ct_b64_encode(CT_B64_STD, quote, qlen, &q64, err);
  free(quote);
  CT_GUARD(st);
  char ccel[4096];
  st = guest_path(cfg, "/sys/firmware/acpi/tables/data/CCEL", ccel, sizeof ccel, err);
  if (!st && access(ccel, R_OK) == 0) {
    uint8_t *el = NULL;
    size_t ellen = 0;
    st = ct_file_read(ccel, GUEST_TDX__CCEL_MAX, &el, &ellen, err);
    if (!st) st = ct_b64_encode(CT_B64_STD, el, ellen, &el64, err);
    free(el);
  }
  if (st) {
    free(q64);
    return ct_err_prefix(err, "tdx event log: ");
  }
  *ev = json_pack("{s:o,s:s}", "cc_eventlog", el64 ? json_string(el64) : json_null(), "quote", q64);
  free(q64);
  free(el64);
  CT_ENSURE(*ev, err, CT_ENOMEM, "tdx evidence: out of memory");
  return CT_OK;
}

/* MRCONFIGID from the TDREPORT (TDINFO starts at 512; MRCONFIGID follows attributes, xfam and
 * MRTD), or from a quote's TD report body when only configfs-tsm is available. */
static ct_status guest_tdx__mrconfigid(const guest_cfg *cfg, uint8_t out[48], ct_err *err) {
  char dev[4096];
  CT_GUARD(guest_path(cfg, "/dev/tdx_guest", dev, sizeof dev, err));
  struct stat sb;
  if (stat(dev, &sb) == 0 && S_ISCHR(sb.st_mode)) {
    int fd = open(dev, O_RDWR | O_CLOEXEC);
    CT_ENSURE(fd >= 0, err, CT_EIO, "tdx: cannot open %s: %s", dev, strerror(errno));
    struct guest_tdx__report_req req;
    memset(&req, 0, sizeof req);
    int rc = ioctl(fd, GUEST_TDX__GET_REPORT0, &req);
    int e = errno;
    close(fd);
    CT_ENSURE(rc == 0, err, CT_EIO, "tdx: TDX_CMD_GET_REPORT0 failed: %s", strerror(e));
    memcpy(out, req.tdreport + 512 + 64, 48);
    return CT_OK;
  }
  uint8_t zero[64] = {0};
  uint8_t *q = NULL;
  size_t qlen = 0;
  CT_GUARD(guest_tsm_report(cfg, "tdx_guest", -1, zero, 64, &q, &qlen, NULL, NULL, err));
  ct_status st = CT_OK;
  size_t body = 48;
  uint16_t ver = qlen >= 2 ? (uint16_t)(q[0] | q[1] << 8) : 0;
  if (ver == 5) body = 48 + 6;
  if ((ver == 4 || ver == 5) && qlen >= body + 184 + 48) {
    memcpy(out, q + body + 184, 48);
  } else {
    st = ct_fail(err, CT_EINVAL, "tdx: cannot read MRCONFIGID from a version %u quote of %zu bytes",
                 ver, qlen);
  }
  free(q);
  return st;
}

ct_status guest_tdx_bind(const guest_cfg *cfg, const uint8_t *digest, size_t len, ct_err *err) {
  uint8_t have[48], want[48] = {0};
  CT_GUARD(guest_tdx__mrconfigid(cfg, have, err));
  memcpy(want, digest, len < 48 ? len : 48);
  CT_ENSURE(ct_memeq(have, 48, want, 48), err, CT_EDENIED,
            "tdx: MRCONFIGID does not match the init-data digest");
  return CT_OK;
}
