/*
 * guest_vtpm.c - TPM-based attesters: Azure confidential VMs (az-snp-vtpm, az-tdx-vtpm), where
 * a paravisor vTPM carries the hardware report, and the generic `tpm` attester.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_http.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_reader.h"
#include "guest_internal.h"
#include "guest_tpm.h"

#define GUEST_VTPM__IMDS_DEFAULT "http://169.254.169.254"
#define GUEST_VTPM__HTTP_MAX (1u << 20)

CT_RESULT guest_tpm_tcti(const guest_cfg *cfg, int generic, char *buf, size_t cap, ct_err *err) {
  if (cfg && cfg->tpm_tcti) {
    CT_ENSURE(strlen(cfg->tpm_tcti) < cap, err, CT_ELIMIT, "tpm: TCTI string too long");
    strcpy(buf, cfg->tpm_tcti);
    return CT_OK;
  }
  const char *env = generic ? getenv("AA_TPM_DEVICE") : NULL;
  if (env && *env) {
    CT_ENSURE((size_t)snprintf(buf, cap, "device:%s", env) < cap, err, CT_ELIMIT,
              "tpm: device path too long");
    return CT_OK;
  }
  static const char *const az_devs[] = {"/dev/tpmrm0", "/dev/tpm0", NULL};
  static const char *const gen_devs[] = {"/dev/tpm0", "/dev/tpm1", "/dev/tpm2", NULL};
  for (const char *const *d = generic ? gen_devs : az_devs; *d; d++) {
    char p[4096];
    CT_GUARD(guest_path(cfg, *d, p, sizeof p, err));
    struct stat sb;
    if (stat(p, &sb) == 0 && S_ISCHR(sb.st_mode)) {
      CT_ENSURE((size_t)snprintf(buf, cap, "device:%s", p) < cap, err, CT_ELIMIT,
                "tpm: device path too long");
      return CT_OK;
    }
  }
  return ct_fail(err, CT_ENOTFOUND, "tpm: no TPM device found");
}

/* HCL layout: 32-byte header ("HCLA", version, size, request type, status, 3 reserved), a
 * 1184-byte hardware report slot, then IGVM request data (data_size, version, report_type,
 * hash_type, variable_data_size) followed by VarData. */
#define GUEST_HCL__HW 32u
#define GUEST_HCL__IGVM (32u + 1184u)
#define GUEST_HCL__VAR (GUEST_HCL__IGVM + 20u)

CT_RESULT guest_hcl_parse(const uint8_t *hcl, size_t len, uint32_t *report_type,
                          const uint8_t **hw_report, size_t *hw_len, const uint8_t **var_data,
                          size_t *var_len, ct_err *err) {
  CT_ENSURE(len >= GUEST_HCL__VAR, err, CT_EINVAL, "hcl report: %zu bytes is too short", len);
  CT_ENSURE(memcmp(hcl, "HCLA", 4) == 0, err, CT_EINVAL, "hcl report: bad signature");
  ct_reader r;
  ct_reader_init(&r, hcl, len, "hcl report");
  uint32_t type = ct_peek_u32le(&r, GUEST_HCL__IGVM + 8, "report_type");
  uint32_t vlen = ct_peek_u32le(&r, GUEST_HCL__IGVM + 16, "variable_data_size");
  CT_GUARD(ct_reader_status(&r, err));
  CT_ENSURE(type == GUEST_HCL_TYPE_SNP || type == GUEST_HCL_TYPE_TDX, err, CT_EINVAL,
            "hcl report: unknown report type %u", type);
  CT_ENSURE(vlen <= len - GUEST_HCL__VAR, err, CT_EINVAL,
            "hcl report: VarData of %u bytes runs past the %zu-byte report", vlen, len);
  *report_type = type;
  if (hw_report) *hw_report = hcl + GUEST_HCL__HW;
  if (hw_len) *hw_len = type == GUEST_HCL_TYPE_SNP ? 1184 : 1024;
  if (var_data) *var_data = hcl + GUEST_HCL__VAR;
  if (var_len) *var_len = vlen;
  return CT_OK;
}

CT_RESULT guest_az_probe(const guest_cfg *cfg, uint32_t *report_type, ct_err *err) {
  char tcti[4200];
  CT_GUARD(guest_tpm_tcti(cfg, 0, tcti, sizeof tcti, err));
  guest_tpm *t = NULL;
  CT_GUARD(guest_tpm_open(tcti, &t, err));
  uint8_t *hcl = NULL;
  size_t len = 0;
  ct_status st = guest_tpm_nv_read(t, GUEST_AZ_HCL_NV, &hcl, &len, err);
  guest_tpm_close(t);
  if (!st) st = guest_hcl_parse(hcl, len, report_type, NULL, NULL, NULL, NULL, err);
  free(hcl);
  return st;
}

/* --- IMDS ------------------------------------------------------------------------------- */

static CT_RESULT guest_vtpm__imds(const guest_cfg *cfg, const char *path, const char *post,
                                  json_t **out, ct_err *err) {
  char url[1024];
  const char *base = cfg && cfg->imds_url ? cfg->imds_url : GUEST_VTPM__IMDS_DEFAULT;
  CT_ENSURE((size_t)snprintf(url, sizeof url, "%s%s", base, path) < sizeof url, err, CT_ELIMIT,
            "imds: URL too long");
  const char *hdr[] = {"Metadata: true", post ? "Content-Type: application/json" : NULL, NULL};
  ct_http_opts o = {.no_proxy = 1, .timeout_ms = 30000, .connect_timeout_ms = 30000,
                    .max_body = GUEST_VTPM__HTTP_MAX};
  ct_http_req req = {.method = post ? "POST" : "GET", .url = url, .headers = hdr, .body = post,
                     .body_len = post ? strlen(post) : 0};
  ct_http_resp r;
  ct_status st = ct_http_call(&o, &req, &r, err);
  if (st) {
    ct_err_prefix(err, "imds: ");
    goto out;
  }
  CT_ENSURE_GOTO(st, r.status == 200, out, err, CT_EIO, "imds: %s answered HTTP %ld", url, r.status);
  st = ct_json_parse((const char *)r.body.data, r.body.len, 16, out, err);
  if (st) ct_err_prefix(err, "imds: %s: ", url);
out:
  ct_http_resp_free(&r);
  return st;
}

static CT_RESULT guest_vtpm__vcek(const guest_cfg *cfg, uint8_t **der, size_t *der_len, ct_err *err) {
  json_t *j = NULL;
  CT_GUARD(guest_vtpm__imds(cfg, "/metadata/THIM/amd/certification", NULL, &j, err));
  const char *pem = NULL;
  ct_status st = ct_json_get_string(j, "vcekCert", "IMDS certification", &pem, err);
  if (!st) {
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    unsigned char *p = NULL;
    int n = x ? i2d_X509(x, &p) : -1;
    if (n > 0) {
      *der = malloc((size_t)n);
      if (*der) {
        memcpy(*der, p, (size_t)n);
        *der_len = (size_t)n;
      } else {
        st = ct_fail(err, CT_ENOMEM, "imds: out of memory");
      }
    } else {
      st = ct_fail_ossl(err, CT_EINVAL, "imds: vcekCert is not a PEM certificate");
    }
    OPENSSL_free(p);
    X509_free(x);
    BIO_free(b);
  }
  json_decref(j);
  return st;
}

static CT_RESULT guest_vtpm__td_quote(const guest_cfg *cfg, const uint8_t *td_report, size_t len,
                                      uint8_t **quote, size_t *qlen, ct_err *err) {
  char *r64 = NULL;
  CT_GUARD(ct_b64_encode(CT_B64_URL, td_report, len, &r64, err));
  json_t *req = json_pack("{s:s}", "report", r64);
  free(r64);
  CT_ENSURE(req, err, CT_ENOMEM, "imds: out of memory");
  char *body = NULL;
  ct_status st = ct_json_dump(req, &body, err);
  json_decref(req);
  CT_GUARD(st);
  json_t *j = NULL;
  st = guest_vtpm__imds(cfg, "/acc/tdquote", body, &j, err);
  free(body);
  CT_GUARD(st);
  const char *q = NULL;
  st = ct_json_get_string(j, "quote", "IMDS TD quote", &q, err);
  if (!st) st = ct_b64_decode(CT_B64_ANY, q, strlen(q), quote, qlen, err);
  json_decref(j);
  return st;
}

/* --- evidence --------------------------------------------------------------------------- */

static json_t *guest_vtpm__pcrs(const guest_tpm_quote *q) {
  json_t *a = json_array();
  for (int i = 0; a && i < GUEST_TPM_PCRS; i++) {
    char hex[65];
    ct_hex_into(q->pcrs[i], 32, hex);
    if (json_array_append_new(a, json_string(hex))) {
      json_decref(a);
      return NULL;
    }
  }
  return a;
}

static json_t *guest_vtpm__hexs(const uint8_t *p, size_t n) {
  char *s = NULL;
  ct_err e;
  if (ct_hex_encode(p, n, &s, &e)) return NULL;
  json_t *j = json_string(s);
  free(s);
  return j;
}

static json_t *guest_vtpm__b64(ct_b64_variant v, int pad, const uint8_t *p, size_t n) {
  char *s = NULL;
  ct_err e;
  if (pad ? guest_b64url_padded(p, n, &s, &e) : ct_b64_encode(v, p, n, &s, &e)) return NULL;
  json_t *j = json_string(s);
  free(s);
  return j;
}

static void guest_vtpm__sleep_ms(int ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

CT_RESULT guest_az_evidence(const guest_cfg *cfg, guest_tee tee, const uint8_t *rd, size_t len,
                            json_t **ev, ct_err *err) {
  CT_ENSURE(len > 0, err, CT_EINVAL, "az vtpm: empty report data");
  char tcti[4200];
  CT_GUARD(guest_tpm_tcti(cfg, 0, tcti, sizeof tcti, err));
  guest_tpm *t = NULL;
  CT_GUARD(guest_tpm_open(tcti, &t, err));
  uint8_t *hcl = NULL, *extra = NULL;
  size_t hcl_len = 0, extra_len = 0;
  guest_tpm_quote q;
  memset(&q, 0, sizeof q);
  json_t *o = NULL;
  ct_status st = CT_OK;
  /* Evidence v2: the paravisor copies NV 0x01400002 into the HCL VarData `user-data`. */
  CT_GUARD_GOTO(st, guest_tpm_nv_write(t, GUEST_AZ_REPORT_DATA_NV, rd, len, err), out);
  int delay = cfg && cfg->az_report_delay_ms >= 0 ? cfg->az_report_delay_ms : 3000;
  if (delay) guest_vtpm__sleep_ms(delay);
  CT_GUARD_GOTO(st, guest_tpm_nv_read(t, GUEST_AZ_HCL_NV, &hcl, &hcl_len, err), out);
  uint32_t type;
  const uint8_t *hw;
  size_t hw_len;
  CT_GUARD_GOTO(st, guest_hcl_parse(hcl, hcl_len, &type, &hw, &hw_len, NULL, NULL, err), out);
  uint32_t want = tee == GUEST_TEE_AZ_SNP_VTPM ? GUEST_HCL_TYPE_SNP : GUEST_HCL_TYPE_TDX;
  CT_ENSURE_GOTO(st, type == want, out, err, CT_EINVAL,
                 "az vtpm: HCL report type %u does not match %s", type, guest_tee_name(tee));
  CT_GUARD_GOTO(st, guest_tpm_quote_pcrs(t, GUEST_AZ_AK_HANDLE, rd, len, &q, err), out);
  if (tee == GUEST_TEE_AZ_SNP_VTPM)
    CT_GUARD_GOTO(st, guest_vtpm__vcek(cfg, &extra, &extra_len, err), out);
  else
    CT_GUARD_GOTO(st, guest_vtpm__td_quote(cfg, hw, hw_len, &extra, &extra_len, err), out);
  json_t *quote = json_pack("{s:o,s:o,s:o}", "signature", guest_vtpm__hexs(q.sig_raw, q.sig_raw_len),
                            "message", guest_vtpm__hexs(q.message, q.message_len), "pcrs",
                            guest_vtpm__pcrs(&q));
  o = json_pack("{s:i,s:o,s:o,s:o}", "version", 2, "tpm_quote", quote, "hcl_report",
                guest_vtpm__b64(CT_B64_URL, 1, hcl, hcl_len),
                tee == GUEST_TEE_AZ_SNP_VTPM ? "vcek" : "td_quote",
                guest_vtpm__b64(CT_B64_URL, 1, extra, extra_len));
  CT_ENSURE_GOTO(st, o, out, err, CT_ENOMEM, "az vtpm evidence: out of memory");
  *ev = o;
out:
  guest_tpm_quote_free(&q);
  free(hcl);
  free(extra);
  guest_tpm_close(t);
  if (st) ct_err_prefix(err, "%s evidence: ", guest_tee_name(tee));
  return st;
}

static uint32_t guest_vtpm__ak(const guest_cfg *cfg) {
  if (cfg && cfg->tpm_ak_handle) return cfg->tpm_ak_handle;
  const char *env = getenv("AA_TPM_AK_HANDLE");
  if (env && *env) {
    char *end = NULL;
    unsigned long v = strtoul(env, &end, 0);
    if (end && !*end && v <= 0xffffffffUL) return (uint32_t)v;
    CT_LOG_WARN_("guest", "ignoring malformed AA_TPM_AK_HANDLE");
  }
  return GUEST_TPM_AK_DEFAULT;
}

CT_RESULT guest_tpm_evidence(const guest_cfg *cfg, const uint8_t *rd, size_t len, json_t **ev,
                             ct_err *err) {
  CT_ENSURE(len <= 64, err, CT_EINVAL, "tpm: report data must be at most 64 bytes");
  /* The quote binds the report data cut or zero-padded to 32 bytes, as upstream's attester
   * does and upstream's verifier expects (ours accepts it, and the older 64-byte form). */
  uint8_t padded[GUEST_TPM_REPORT_DATA] = {0};
  if (len) memcpy(padded, rd, len < sizeof padded ? len : sizeof padded);
  char tcti[4200];
  CT_GUARD(guest_tpm_tcti(cfg, 1, tcti, sizeof tcti, err));
  guest_tpm *t = NULL;
  CT_GUARD(guest_tpm_open(tcti, &t, err));
  uint32_t ak = guest_vtpm__ak(cfg);
  guest_tpm_quote q;
  memset(&q, 0, sizeof q);
  uint8_t *spki = NULL;
  size_t spki_len = 0;
  ct_status st = guest_tpm_quote_pcrs(t, ak, padded, sizeof padded, &q, err);
  if (!st) st = guest_tpm_ak_spki(t, ak, &spki, &spki_len, err);
  guest_tpm_close(t);
  if (!st) {
    json_t *quote = json_pack(
        "{s:o,s:o,s:o}", "signature",
        guest_vtpm__b64(CT_B64_STD, 0, q.sig_marshalled, q.sig_marshalled_len), "message",
        guest_vtpm__b64(CT_B64_STD, 0, q.message, q.message_len), "pcrs", guest_vtpm__pcrs(&q));
    *ev = json_pack("{s:o,s:o,s:o}", "report_data",
                    guest_vtpm__b64(CT_B64_STD, 0, padded, sizeof padded), "tpm_quote", quote,
                    "ak_public", guest_vtpm__b64(CT_B64_STD, 0, spki, spki_len));
    if (!*ev) st = ct_fail(err, CT_ENOMEM, "tpm evidence: out of memory");
  }
  guest_tpm_quote_free(&q);
  free(spki);
  if (st) ct_err_prefix(err, "tpm evidence: ");
  return st;
}

/* Binds by extending PCR8 exactly once: a PCR8 that already equals SHA256(0^32 || digest) was
 * extended by an earlier start (or by the peer-pod image's own unit) and is left alone. */
CT_RESULT guest_tpm_bind(const guest_cfg *cfg, guest_tee tee, const uint8_t *digest, size_t len,
                         ct_err *err) {
  CT_ENSURE(len == 32, err, CT_EINVAL,
            "%s: PCR8 binding needs a 32-byte init-data digest (algorithm = \"sha256\"), got %zu "
            "bytes", guest_tee_name(tee), len);
  char tcti[4200];
  CT_GUARD(guest_tpm_tcti(cfg, tee == GUEST_TEE_TPM, tcti, sizeof tcti, err));
  guest_tpm *t = NULL;
  CT_GUARD(guest_tpm_open(tcti, &t, err));
  uint8_t pcrs[GUEST_TPM_PCRS][32], cat[64] = {0}, once[32], zero[32] = {0};
  memcpy(cat + 32, digest, 32);
  ct_sha256(cat, sizeof cat, once);
  ct_status st = guest_tpm_pcr_read(t, pcrs, err);
  if (!st) {
    if (memcmp(pcrs[8], once, 32) == 0) {
      CT_LOG_INFO_("guest", "PCR8 already holds this init-data digest; not extending again");
    } else if (memcmp(pcrs[8], zero, 32) == 0) {
      st = guest_tpm_pcr_extend(t, 8, digest, err);
    } else {
      st = ct_fail(err, CT_EDENIED,
                   "%s: PCR8 already holds a different measurement; the init-data digest cannot "
                   "be bound", guest_tee_name(tee));
    }
  }
  guest_tpm_close(t);
  return st;
}
