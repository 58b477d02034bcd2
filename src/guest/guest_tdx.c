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

#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "ct_reader.h"
#include "guest_internal.h"

#define GUEST_TDX__CCEL_MAX (16u << 20)

/* struct tdx_report_req from the kernel's tdx-guest uapi. */
struct guest_tdx__report_req {
  uint8_t reportdata[64];
  uint8_t tdreport[1024];
};
#define GUEST_TDX__GET_REPORT0 _IOWR('T', 1, struct guest_tdx__report_req)

CT_RESULT guest_tdx_evidence(const guest_cfg *cfg, const uint8_t *rd, size_t len, json_t **ev,
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
  st = guest_tdx_eventlog(cfg, &el64, err);
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

/* The firmware's CCEL table ends in padding: keep the entries up to the first all-ones or
 * all-zero 8-byte end marker, as upstream's trim_ccel does. Returns the kept length. */
CT_RESULT guest_tdx_trim_ccel(const uint8_t *c, size_t len, size_t *out, ct_err *err) {
  ct_reader r;
  ct_reader_init(&r, c, len, "invalid CCEL");
#define NEED(n, what) CT_ENSURE(ct_reader_remaining(&r) >= (size_t)(n), err, CT_EINVAL, "invalid CCEL: %s", what)
  NEED(4, "not enough length");
  ct_read_skip(&r, 4, "PCR index");
  NEED(4, "not enough length");
  uint32_t type = ct_read_u32le(&r, "event type");
  NEED(20, "not enough length");
  ct_read_skip(&r, 20, "SHA-1 digest");
  if (type == 3) { /* EV_NO_ACTION spec-id header */
    NEED(4, "not enough length");
    uint32_t n = ct_read_u32le(&r, "header size");
    NEED(n, "header runs past the table");
    ct_read_skip(&r, n, "header");
  }
  for (;;) {
    NEED(8, "no end flag");
    static const uint8_t ones[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, zeros[8] = {0};
    const uint8_t *flag = ct_peek_bytes(&r, ct_reader_offset(&r), 8, "end flag");
    if (!memcmp(flag, ones, 8) || !memcmp(flag, zeros, 8)) {
      *out = ct_reader_offset(&r);
      return CT_OK;
    }
    ct_read_skip(&r, 8, "PCR index and event type");
    NEED(4, "no digest count");
    uint32_t nd = ct_read_u32le(&r, "digest count");
    CT_ENSURE(nd <= 8, err, CT_EINVAL, "invalid CCEL: %u digests in one entry", nd);
    for (uint32_t k = 0; k < nd; k++) {
      NEED(2, "no digest algorithm");
      uint16_t alg = ct_read_u16le(&r, "digest algorithm");
      size_t dl = alg == 0x0b || alg == 0x12 ? 32 : alg == 0x0c ? 48 : alg == 0x0d ? 64 : 0;
      CT_ENSURE(dl, err, CT_EINVAL, "invalid CCEL: unsupported digest algorithm 0x%x", alg);
      NEED(dl, "digest runs past the table");
      ct_read_skip(&r, dl, "digest");
    }
    NEED(4, "no event data size");
    uint32_t n = ct_read_u32le(&r, "event data size");
    NEED(n, "event data runs past the table");
    ct_read_skip(&r, n, "event data");
  }
#undef NEED
}

/* A fixed spec-id header (EV_NO_ACTION; sha256, sha384 and sm3 digest sizes) put in front of
 * the AAEL when the platform has no CCEL, so that parsers can size the digests. */
static const uint8_t guest_tdx__el_header[73] = {
    0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, [28] = 0x29, [56] = 0x03,
    [60] = 0x0B, [62] = 0x20, [64] = 0x0C, [66] = 0x30, [68] = 0x12, [70] = 0x20};

/* cc_eventlog: the trimmed CCEL (or the fixed header), the AAEL, and an 8-byte end flag, standard
 * base64; NULL when there is neither. */
CT_RESULT guest_tdx_eventlog(const guest_cfg *cfg, char **out, ct_err *err) {
  *out = NULL;
  char ccel[4096];
  CT_GUARD(guest_path(cfg, "/sys/firmware/acpi/tables/data/CCEL", ccel, sizeof ccel, err));
  ct_buf el;
  ct_buf_init(&el, GUEST_TDX__CCEL_MAX * 2);
  ct_status st = CT_OK;
  if (access(ccel, R_OK) == 0) {
    uint8_t *raw = NULL;
    size_t rlen = 0, keep = 0;
    st = ct_file_read(ccel, GUEST_TDX__CCEL_MAX, &raw, &rlen, err);
    if (!st) st = guest_tdx_trim_ccel(raw, rlen, &keep, err);
    if (!st) st = ct_buf_append(&el, raw, keep, err);
    free(raw);
  }
  if (!st && cfg && cfg->eventlog_path && access(cfg->eventlog_path, R_OK) == 0) {
    uint8_t *aael = NULL;
    size_t alen = 0;
    st = ct_file_read(cfg->eventlog_path, GUEST_TDX__CCEL_MAX, &aael, &alen, err);
    if (!st && alen && el.len == 0)
      st = ct_buf_append(&el, guest_tdx__el_header, sizeof guest_tdx__el_header, err);
    if (!st) st = ct_buf_append(&el, aael, alen, err);
    free(aael);
  }
  if (!st && el.len) {
    static const uint8_t end[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    st = ct_buf_append(&el, end, sizeof end, err);
    if (!st) st = ct_b64_encode(CT_B64_STD, el.data, el.len, out, err);
  }
  ct_buf_free(&el);
  return st;
}

/* MRCONFIGID from the TDREPORT (TDINFO starts at 512; MRCONFIGID follows attributes, xfam and
 * MRTD), or from a quote's TD report body when only configfs-tsm is available. */
static CT_RESULT guest_tdx__mrconfigid(const guest_cfg *cfg, uint8_t out[48], ct_err *err) {
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
  ct_reader qr;
  ct_reader_init(&qr, q, qlen, "tdx quote");
  uint16_t ver = ct_peek_u16le(&qr, 0, "version");
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

CT_RESULT guest_tdx_bind(const guest_cfg *cfg, const uint8_t *digest, size_t len, ct_err *err) {
  uint8_t have[48], want[48] = {0};
  CT_GUARD(guest_tdx__mrconfigid(cfg, have, err));
  memcpy(want, digest, len < 48 ? len : 48);
  CT_ENSURE(ct_memeq(have, 48, want, 48), err, CT_EDENIED,
            "tdx: MRCONFIGID does not match the init-data digest");
  return CT_OK;
}
