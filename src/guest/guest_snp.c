/*
 * guest_snp.c - AMD SEV-SNP evidence: the raw report in sev's serde form plus the certificate
 * table, collected through /dev/sev-guest (SNP_GET_EXT_REPORT, VMPL 0) or configfs-tsm.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sev-guest.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "ct_reader.h"
#include "guest_attester.h"
#include "guest_internal.h"


static json_t *guest_snp__bytes(const uint8_t *p, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < n; i++)
    if (json_array_append_new(a, json_integer(p[i]))) {
      json_decref(a);
      return NULL;
    }
  return a;
}

/* TCB_VERSION layout depends on the generation: Turin (family 0x1A) puts FMC first. */
static json_t *guest_snp__tcb(const uint8_t *b, int turin) {
  if (turin)
    return json_pack("{s:i,s:i,s:i,s:i,s:i}", "fmc", b[0], "bootloader", b[1], "tee", b[2], "snp",
                     b[3], "microcode", b[7]);
  return json_pack("{s:n,s:i,s:i,s:i,s:i}", "fmc", "bootloader", b[0], "tee", b[1], "snp", b[6],
                   "microcode", b[7]);
}

static json_t *guest_snp__opt_u8(int present, uint8_t v) {
  return present ? json_integer(v) : json_null();
}

CT_RESULT guest_snp_report_to_json(const uint8_t *r, size_t len, json_t **out, ct_err *err) {
  CT_ENSURE(len == GUEST_SNP_REPORT_SIZE, err, CT_EINVAL,
            "snp report: %zu bytes, expected %d", len, GUEST_SNP_REPORT_SIZE);
  ct_reader rd;
  ct_reader_init(&rd, r, len, "snp report");
  uint32_t version = ct_peek_u32le(&rd, 0, "version");
  CT_ENSURE(version >= 2 && version <= 5, err, CT_EUNSUPPORTED,
            "snp report: unsupported report version %u", version);
  int has_cpuid = version >= 3;
  int turin = has_cpuid && r[0x188] == 0x1A;
  json_t *o = json_object();
  CT_ENSURE(o, err, CT_ENOMEM, "snp report: out of memory");
  int bad = 0;
#define SET(k, v) bad |= json_object_set_new(o, k, (v)) != 0
  SET("version", json_integer(version));
  SET("guest_svn", json_integer(ct_peek_u32le(&rd, 0x04, "guest_svn")));
  SET("policy", json_integer((json_int_t)ct_peek_u64le(&rd, 0x08, "policy")));
  SET("family_id", guest_snp__bytes(r + 0x10, 16));
  SET("image_id", guest_snp__bytes(r + 0x20, 16));
  SET("vmpl", json_integer(ct_peek_u32le(&rd, 0x30, "vmpl")));
  SET("sig_algo", json_integer(ct_peek_u32le(&rd, 0x34, "sig_algo")));
  SET("current_tcb", guest_snp__tcb(r + 0x38, turin));
  SET("plat_info", json_integer((json_int_t)ct_peek_u64le(&rd, 0x40, "plat_info")));
  SET("key_info", json_integer(ct_peek_u32le(&rd, 0x48, "key_info")));
  SET("report_data", guest_snp__bytes(r + 0x50, 64));
  SET("measurement", guest_snp__bytes(r + 0x90, 48));
  SET("host_data", guest_snp__bytes(r + 0xC0, 32));
  SET("id_key_digest", guest_snp__bytes(r + 0xE0, 48));
  SET("author_key_digest", guest_snp__bytes(r + 0x110, 48));
  SET("report_id", guest_snp__bytes(r + 0x140, 32));
  SET("report_id_ma", guest_snp__bytes(r + 0x160, 32));
  SET("reported_tcb", guest_snp__tcb(r + 0x180, turin));
  SET("cpuid_fam_id", guest_snp__opt_u8(has_cpuid, r[0x188]));
  SET("cpuid_mod_id", guest_snp__opt_u8(has_cpuid, r[0x189]));
  SET("cpuid_step", guest_snp__opt_u8(has_cpuid, r[0x18A]));
  SET("chip_id", guest_snp__bytes(r + 0x1A0, 64));
  SET("committed_tcb", guest_snp__tcb(r + 0x1E0, turin));
  SET("current", json_pack("{s:i,s:i,s:i}", "major", r[0x1EA], "minor", r[0x1E9], "build", r[0x1E8]));
  SET("committed",
      json_pack("{s:i,s:i,s:i}", "major", r[0x1EE], "minor", r[0x1ED], "build", r[0x1EC]));
  SET("launch_tcb", guest_snp__tcb(r + 0x1F0, turin));
  /* Mitigation vectors exist from report version 5 on; sev serialises them as options. JSON
   * integers are signed, so a vector with bit 63 set would not survive: refuse it. */
  if (version >= 5) {
    uint64_t lm = ct_peek_u64le(&rd, 0x1F8, "launch_mit_vector"),
             cm = ct_peek_u64le(&rd, 0x200, "current_mit_vector");
    if ((lm | cm) >> 63) {
      json_decref(o);
      return ct_fail(err, CT_EUNSUPPORTED, "snp report: mitigation vector uses bit 63");
    }
    SET("launch_mit_vector", json_integer((json_int_t)lm));
    SET("current_mit_vector", json_integer((json_int_t)cm));
  } else {
    SET("launch_mit_vector", json_null());
    SET("current_mit_vector", json_null());
  }
  json_t *sig = json_object();
  if (sig) {
    bad |= json_object_set_new(sig, "r", guest_snp__bytes(r + 0x2A0, 72)) != 0;
    bad |= json_object_set_new(sig, "s", guest_snp__bytes(r + 0x2A0 + 72, 72)) != 0;
  }
  SET("signature", sig);
#undef SET
  if (bad) {
    json_decref(o);
    return ct_fail(err, CT_ENOMEM, "snp report: out of memory");
  }
  *out = o;
  return CT_OK;
}

static const struct {
  uint8_t guid[16];
  const char *name;
} guest_snp__cert_types[] = {
    {{0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae},
     "ARK"},
    {{0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82},
     "ASK"},
    {{0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd},
     "VCEK"},
    {{0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1},
     "VLEK"},
    {{0x92, 0xf8, 0x1b, 0xc3, 0x58, 0x11, 0x4d, 0x3d, 0x97, 0xff, 0xd1, 0x9f, 0x88, 0xdc, 0x67, 0xea},
     "CRL"},
};

#define GUEST_SNP__MAX_CERTS 16

CT_RESULT guest_snp_cert_table_to_json(const uint8_t *t, size_t len, json_t **out, ct_err *err) {
  json_t *arr = json_array();
  CT_ENSURE(arr, err, CT_ENOMEM, "snp certs: out of memory");
  static const uint8_t zero[16] = {0};
  ct_status st = CT_OK;
  for (size_t i = 0;; i++) {
    size_t off = i * 24;
    CT_ENSURE_GOTO(st, off + 24 <= len, fail, err, CT_EINVAL,
                   "snp certs: table entry %zu runs past the %zu-byte buffer", i, len);
    const uint8_t *e = t + off;
    if (memcmp(e, zero, 16) == 0) break;
    CT_ENSURE_GOTO(st, i < GUEST_SNP__MAX_CERTS, fail, err, CT_ELIMIT,
                   "snp certs: more than %d entries", GUEST_SNP__MAX_CERTS);
    ct_reader er;
    ct_reader_init(&er, e, 24, "snp certs: table entry");
    uint32_t coff = ct_peek_u32le(&er, 16, "offset"), clen = ct_peek_u32le(&er, 20, "length");
    CT_ENSURE_GOTO(st, coff <= len && clen <= len - coff, fail, err, CT_EINVAL,
                   "snp certs: entry %zu points outside the table (%u+%u > %zu)", i, coff, clen, len);
    json_t *type = NULL;
    for (size_t k = 0; k < sizeof guest_snp__cert_types / sizeof *guest_snp__cert_types; k++)
      if (memcmp(e, guest_snp__cert_types[k].guid, 16) == 0)
        type = json_string(guest_snp__cert_types[k].name);
    if (!type) {
      char g[37];
      snprintf(g, sizeof g,
               "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", e[0], e[1],
               e[2], e[3], e[4], e[5], e[6], e[7], e[8], e[9], e[10], e[11], e[12], e[13], e[14],
               e[15]);
      type = json_pack("{s:s}", "OTHER", g);
    }
    json_t *ent = json_pack("{s:o,s:o}", "cert_type", type, "data", guest_snp__bytes(t + coff, clen));
    CT_ENSURE_GOTO(st, ent && json_array_append_new(arr, ent) == 0, fail, err, CT_ENOMEM,
                   "snp certs: out of memory");
  }
  *out = arr;
  return CT_OK;
fail:
  json_decref(arr);
  return st;
}

/* --- collection ------------------------------------------------------------------------- */

#define GUEST_SNP__CERTS_MAX (64u * 4096u)

/* SNP_GET_EXT_REPORT at VMPL 0; grows the certificate buffer when the host asks for more. */
static CT_RESULT guest_snp__ioctl(const char *dev, const uint8_t rd[64], uint8_t report[1184],
                                  uint8_t **certs, size_t *certs_len, ct_err *err) {
  int fd = open(dev, O_RDWR | O_CLOEXEC);
  CT_ENSURE(fd >= 0, err, CT_EIO, "snp: cannot open %s: %s", dev, strerror(errno));
  size_t clen = 4 * 4096;
  ct_status st = CT_OK;
  uint8_t *cbuf = NULL;
  for (int attempt = 0; attempt < 4; attempt++) {
    free(cbuf);
    cbuf = aligned_alloc(4096, clen);
    CT_ENSURE_GOTO(st, cbuf, out, err, CT_ENOMEM, "snp: out of memory");
    memset(cbuf, 0, clen);
    struct snp_ext_report_req req;
    memset(&req, 0, sizeof req);
    memcpy(req.data.user_data, rd, 64);
    req.data.vmpl = 0;
    req.certs_address = (uint64_t)(uintptr_t)cbuf;
    req.certs_len = (uint32_t)clen;
    struct snp_report_resp resp;
    memset(&resp, 0, sizeof resp);
    struct snp_guest_request_ioctl io;
    memset(&io, 0, sizeof io);
    io.msg_version = 1;
    io.req_data = (uint64_t)(uintptr_t)&req;
    io.resp_data = (uint64_t)(uintptr_t)&resp;
    if (ioctl(fd, SNP_GET_EXT_REPORT, &io) < 0) {
      if (io.vmm_error == SNP_GUEST_VMM_ERR_INVALID_LEN && req.certs_len > clen &&
          req.certs_len <= GUEST_SNP__CERTS_MAX) {
        clen = (req.certs_len + 4095u) & ~4095u;
        continue;
      }
      st = ct_fail(err, CT_EIO, "snp: SNP_GET_EXT_REPORT failed: %s (fw 0x%x, vmm 0x%x)",
                   strerror(errno), io.fw_error, io.vmm_error);
      goto out;
    }
    /* MSG_REPORT_RSP: status, report_size, 24 reserved bytes, then the report. */
    ct_reader rr;
    ct_reader_init(&rr, resp.data, sizeof resp.data, "snp: MSG_REPORT_RSP");
    uint32_t status = ct_read_u32le(&rr, "status"), size = ct_read_u32le(&rr, "report_size");
    CT_ENSURE_GOTO(st, status == 0 && size == 1184, out, err, CT_EIO,
                   "snp: firmware answered status 0x%x with a %u-byte report", status, size);
    memcpy(report, resp.data + 32, 1184);
    *certs = cbuf;
    *certs_len = clen;
    cbuf = NULL;
    goto out;
  }
  st = ct_fail(err, CT_EIO, "snp: the host keeps asking for a larger certificate buffer");
out:
  free(cbuf);
  close(fd);
  return st;
}

/* Gets a report (and the certificate table, when the platform provides one). */
CT_RESULT guest_snp_get_report(const guest_cfg *cfg, const uint8_t rd[64], uint8_t report[1184],
                               uint8_t **certs, size_t *certs_len, ct_err *err) {
  *certs = NULL;
  *certs_len = 0;
  char dev[4096];
  CT_GUARD(guest_path(cfg, "/dev/sev-guest", dev, sizeof dev, err));
  struct stat sb;
  if (stat(dev, &sb) == 0 && S_ISCHR(sb.st_mode))
    return guest_snp__ioctl(dev, rd, report, certs, certs_len, err);
  uint8_t *out = NULL, *aux = NULL;
  size_t out_len = 0, aux_len = 0;
  CT_GUARD(guest_tsm_report(cfg, "sev_guest", 0, rd, 64, &out, &out_len, &aux, &aux_len, err));
  if (out_len != 1184) {
    free(out);
    free(aux);
    return ct_fail(err, CT_EIO, "snp: configfs-tsm outblob has %zu bytes, expected 1184", out_len);
  }
  memcpy(report, out, 1184);
  free(out);
  if (aux && aux_len) {
    *certs = aux;
    *certs_len = aux_len;
  } else {
    free(aux);
  }
  return CT_OK;
}

CT_RESULT guest_snp_evidence(const guest_cfg *cfg, const uint8_t *rd, size_t rd_len, json_t **ev,
                             ct_err *err) {
  CT_ENSURE(rd_len <= 64, err, CT_EINVAL, "snp: report data must be at most 64 bytes, got %zu",
            rd_len);
  uint8_t padded[64] = {0};
  if (rd_len) memcpy(padded, rd, rd_len);
  uint8_t report[1184];
  uint8_t *certs = NULL;
  size_t certs_len = 0;
  CT_GUARD(guest_snp_get_report(cfg, padded, report, &certs, &certs_len, err));
  json_t *rep = NULL, *chain = NULL;
  ct_status st = guest_snp_report_to_json(report, sizeof report, &rep, err);
  if (!st && certs) st = guest_snp_cert_table_to_json(certs, certs_len, &chain, err);
  free(certs);
  if (st) {
    json_decref(rep);
    return ct_err_prefix(err, "snp evidence: ");
  }
  /* An empty table means the host supplied no certificates: say null, as sev does, so that the
   * verifier fetches the VCEK itself. */
  if (chain && json_array_size(chain) == 0) {
    json_decref(chain);
    chain = NULL;
  }
  *ev = json_pack("{s:o,s:o}", "attestation_report", rep, "cert_chain", chain ? chain : json_null());
  CT_ENSURE(*ev, err, CT_ENOMEM, "snp evidence: out of memory");
  return CT_OK;
}

CT_RESULT guest_snp_bind(const guest_cfg *cfg, const uint8_t *digest, size_t len, ct_err *err) {
  uint8_t zero[64] = {0}, report[1184], want[32] = {0};
  uint8_t *certs = NULL;
  size_t certs_len = 0;
  CT_GUARD(guest_snp_get_report(cfg, zero, report, &certs, &certs_len, err));
  free(certs);
  memcpy(want, digest, len < 32 ? len : 32);
  CT_ENSURE(ct_memeq(report + 0xC0, 32, want, 32), err, CT_EDENIED,
            "snp: HOST_DATA does not match the init-data digest");
  return CT_OK;
}
