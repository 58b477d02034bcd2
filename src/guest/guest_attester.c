/*
 * guest_attester.c - TEE names, detection, dispatch, the sample attester and path helpers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_json.h"
#include "ct_log.h"
#include "guest_internal.h"

static const char *const guest__names[] = {
    [GUEST_TEE_NONE] = NULL,          [GUEST_TEE_SAMPLE] = "sample",
    [GUEST_TEE_SNP] = "snp",          [GUEST_TEE_TDX] = "tdx",
    [GUEST_TEE_AZ_SNP_VTPM] = "az-snp-vtpm", [GUEST_TEE_AZ_TDX_VTPM] = "az-tdx-vtpm",
    [GUEST_TEE_TPM] = "tpm",
};

const char *guest_tee_name(guest_tee tee) {
  if ((unsigned)tee >= sizeof guest__names / sizeof *guest__names) return NULL;
  return guest__names[tee];
}

CT_RESULT guest_tee_parse(const char *name, guest_tee *out, ct_err *err) {
  for (size_t i = 1; name && i < sizeof guest__names / sizeof *guest__names; i++)
    if (strcmp(name, guest__names[i]) == 0) {
      *out = (guest_tee)i;
      return CT_OK;
    }
  return ct_fail(err, CT_EUNSUPPORTED,
                 "unknown TEE \"%s\" (supported: sample, snp, tdx, az-snp-vtpm, az-tdx-vtpm, tpm)",
                 name ? name : "");
}

CT_RESULT guest_path(const guest_cfg *cfg, const char *abs, char *buf, size_t cap, ct_err *err) {
  const char *root = cfg && cfg->root ? cfg->root : "";
  int n = snprintf(buf, cap, "%s%s", root, abs);
  CT_ENSURE(n >= 0 && (size_t)n < cap, err, CT_ELIMIT, "path %s%s is too long", root, abs);
  return CT_OK;
}

static int guest__exists(const guest_cfg *cfg, const char *abs) {
  char p[4096];
  ct_err e;
  if (guest_path(cfg, abs, p, sizeof p, &e)) return 0;
  struct stat sb;
  return stat(p, &sb) == 0;
}

CT_RESULT guest_b64url_padded(const uint8_t *in, size_t len, char **out, ct_err *err) {
  char *s = NULL;
  CT_GUARD(ct_b64_encode(CT_B64_URL, in, len, &s, err));
  size_t n = strlen(s), pad = (4 - n % 4) % 4;
  char *p = realloc(s, n + pad + 1);
  if (!p) {
    free(s);
    return ct_fail(err, CT_ENOMEM, "base64: out of memory");
  }
  memset(p + n, '=', pad);
  p[n + pad] = 0;
  *out = p;
  return CT_OK;
}

CT_RESULT guest_sample_evidence(const uint8_t *rd, size_t len, json_t **ev, ct_err *err) {
  char *b64 = NULL;
  CT_GUARD(ct_b64_encode(CT_B64_STD, rd, len, &b64, err));
  *ev = json_pack("{s:s,s:s}", "svn", "1", "report_data", b64);
  free(b64);
  CT_ENSURE(*ev, err, CT_ENOMEM, "sample evidence: out of memory");
  return CT_OK;
}

/* Upstream order: tdx, sgx, az-tdx-vtpm, az-snp-vtpm, snp, csv, cca, se, tpm. The Azure
 * paravisor hides SNP/TDX devices from the guest, so the vTPM probe decides between them. */
CT_RESULT guest_tee_detect(const guest_cfg *cfg, guest_tee *out, ct_err *err) {
  if (guest__exists(cfg, "/dev/tdx_guest") || guest__exists(cfg, "/dev/tdx-guest")) {
    *out = GUEST_TEE_TDX;
    return CT_OK;
  }
  char tcti[4200];
  ct_err e;
  if (guest_tpm_tcti(cfg, 0, tcti, sizeof tcti, &e) == CT_OK) {
    uint32_t type = 0;
    if (guest_az_probe(cfg, &type, &e) == CT_OK) {
      if (type == GUEST_HCL_TYPE_TDX) {
        *out = GUEST_TEE_AZ_TDX_VTPM;
        return CT_OK;
      }
      if (type == GUEST_HCL_TYPE_SNP) {
        *out = GUEST_TEE_AZ_SNP_VTPM;
        return CT_OK;
      }
    } else {
      CT_LOG_DEBUG_("guest", "no Azure HCL report: %s", e.msg);
    }
  }
  if (guest__exists(cfg, "/sys/devices/platform/sev-guest") || guest__exists(cfg, "/dev/sev-guest")) {
    *out = GUEST_TEE_SNP;
    return CT_OK;
  }
  if (guest_tpm_tcti(cfg, 1, tcti, sizeof tcti, &e) == CT_OK) {
    *out = GUEST_TEE_TPM;
    return CT_OK;
  }
  return ct_fail(err, CT_ENOTFOUND,
                 "no TEE detected (probed /dev/tdx_guest, the Azure vTPM HCL report, "
                 "/sys/devices/platform/sev-guest and /dev/tpm0..2); pass --tee sample to use the "
                 "insecure sample attester explicitly");
}

CT_RESULT guest_get_evidence(const guest_cfg *cfg, guest_tee tee, const uint8_t *rd, size_t len,
                             json_t **ev, ct_err *err) {
  CT_ENSURE(len <= GUEST_REPORT_DATA_MAX, err, CT_EINVAL,
            "report data of %zu bytes exceeds %d", len, GUEST_REPORT_DATA_MAX);
  switch (tee) {
  case GUEST_TEE_SAMPLE: return guest_sample_evidence(rd, len, ev, err);
  case GUEST_TEE_SNP: return guest_snp_evidence(cfg, rd, len, ev, err);
  case GUEST_TEE_TDX: return guest_tdx_evidence(cfg, rd, len, ev, err);
  case GUEST_TEE_AZ_SNP_VTPM:
  case GUEST_TEE_AZ_TDX_VTPM: return guest_az_evidence(cfg, tee, rd, len, ev, err);
  case GUEST_TEE_TPM: return guest_tpm_evidence(cfg, rd, len, ev, err);
  default: return ct_fail(err, CT_EINVAL, "no TEE selected");
  }
}

CT_RESULT guest_bind_init_data(const guest_cfg *cfg, guest_tee tee, const uint8_t *digest,
                               size_t len, ct_err *err) {
  CT_ENSURE(len > 0 && len <= 64, err, CT_EINVAL, "init-data digest of %zu bytes", len);
  switch (tee) {
  case GUEST_TEE_SAMPLE: return CT_OK;
  case GUEST_TEE_SNP: return guest_snp_bind(cfg, digest, len, err);
  case GUEST_TEE_TDX: return guest_tdx_bind(cfg, digest, len, err);
  case GUEST_TEE_AZ_SNP_VTPM:
  case GUEST_TEE_AZ_TDX_VTPM:
  case GUEST_TEE_TPM: return guest_tpm_bind(cfg, tee, digest, len, err);
  default: return ct_fail(err, CT_EINVAL, "no TEE selected");
  }
}
