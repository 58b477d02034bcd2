/*
 * SEV-SNP attestation report parsing: the raw 1184-byte form and the serde JSON form of the
 * `sev` crate that Trustee's SNP evidence carries. Offsets follow the SEV-SNP Firmware ABI
 * (ATTESTATION_REPORT structure); the JSON form is turned back into the raw form so that the
 * signature is always checked over the exact bytes the firmware signed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_codec.h"
#include "ct_reader.h"
#include "snp.h"

#define OFF_VERSION 0x00
#define OFF_GUEST_SVN 0x04
#define OFF_POLICY 0x08
#define OFF_FAMILY_ID 0x10
#define OFF_IMAGE_ID 0x20
#define OFF_VMPL 0x30
#define OFF_SIG_ALGO 0x34
#define OFF_CURRENT_TCB 0x38
#define OFF_PLAT_INFO 0x40
#define OFF_KEY_INFO 0x48
#define OFF_RESERVED0 0x4C
#define OFF_ID_KEY_DIGEST 0xE0
#define OFF_AUTHOR_KEY_DIGEST 0x110
#define OFF_REPORT_ID 0x140
#define OFF_REPORT_ID_MA 0x160
#define OFF_REPORTED_TCB 0x180
#define OFF_CPUID_FAM 0x188
#define OFF_CPUID_MOD 0x189
#define OFF_CPUID_STEP 0x18A
#define OFF_RESERVED1 0x188
#define OFF_COMMITTED_TCB 0x1E0
#define OFF_CURRENT_VER 0x1E8
#define OFF_COMMITTED_VER 0x1EC
#define OFF_LAUNCH_TCB 0x1F0
#define OFF_LAUNCH_MIT 0x1F8
#define OFF_CURRENT_MIT 0x200
#define OFF_RESERVED4 0x1F8
#define OFF_SIG_R 0x2A0
#define OFF_SIG_S 0x2E8

const char *snp_gen_name(snp_gen g) {
  switch (g) {
  case SNP_GEN_MILAN: return "Milan";
  case SNP_GEN_GENOA: return "Genoa";
  case SNP_GEN_TURIN: return "Turin";
  default: return "unknown";
  }
}

static void snp__put_le(uint8_t *p, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* AMD family 19h is Milan (models 00-0Fh) or Genoa (10-1Fh, A0-AFh); family 1Ah models 00-11h
 * are Turin (the same table as Trustee's get_processor_generation). */
snp_gen snp_gen_from_cpuid(uint8_t family, uint8_t model) {
  if (family == 0x19) {
    if (model <= 0x0F) return SNP_GEN_MILAN;
    if ((model >= 0x10 && model <= 0x1F) || (model >= 0xA0 && model <= 0xAF)) return SNP_GEN_GENOA;
  } else if (family == 0x1A && model <= 0x11) {
    return SNP_GEN_TURIN;
  }
  return SNP_GEN_UNKNOWN;
}

/* TCB_VERSION: bootloader, tee, 4 reserved, snp, microcode; Turin: fmc, bootloader, tee, snp,
 * 3 reserved, microcode. */
static snp_tcb snp__tcb_decode(const uint8_t *p, snp_gen g) {
  snp_tcb t = {0};
  if (g == SNP_GEN_TURIN) {
    t.fmc = p[0], t.bootloader = p[1], t.tee = p[2], t.snp = p[3], t.microcode = p[7];
    t.has_fmc = true;
  } else {
    t.bootloader = p[0], t.tee = p[1], t.snp = p[6], t.microcode = p[7];
  }
  return t;
}

static void snp__tcb_encode(uint8_t *p, const snp_tcb *t, snp_gen g) {
  memset(p, 0, 8);
  if (g == SNP_GEN_TURIN) {
    p[0] = t->fmc, p[1] = t->bootloader, p[2] = t->tee, p[3] = t->snp, p[7] = t->microcode;
  } else {
    p[0] = t->bootloader, p[1] = t->tee, p[6] = t->snp, p[7] = t->microcode;
  }
}

void snp_report_set_gen(snp_report *r, snp_gen g) {
  r->gen = g;
  r->reported_tcb = snp__tcb_decode(r->raw + OFF_REPORTED_TCB, g);
}

void snp_tcb_prefix(const snp_tcb *t, char *out, size_t cap) {
  int n = snprintf(out, cap, "bl%02u_tee%02u_snp%02u_ucode%02u", t->bootloader, t->tee, t->snp,
                   t->microcode);
  if (t->has_fmc && n > 0 && (size_t)n < cap) snprintf(out + n, cap - (size_t)n, "_fmc%02u", t->fmc);
}

CT_RESULT snp_report_parse(const uint8_t *buf, size_t len, snp_report *out, ct_err *err) {
  CT_ENSURE(len == SNP_REPORT_SIZE, err, CT_EINVAL,
            "snp report: size is %zu bytes, expected %d", len, SNP_REPORT_SIZE);
  snp_report r;
  memset(&r, 0, sizeof r);
  memcpy(r.raw, buf, SNP_REPORT_SIZE);
  ct_reader rd;
  ct_reader_init(&rd, r.raw, SNP_REPORT_SIZE, "snp report");
  r.version = ct_peek_u32le(&rd, OFF_VERSION, "version");
  r.guest_svn = ct_peek_u32le(&rd, OFF_GUEST_SVN, "guest_svn");
  r.policy = ct_peek_u64le(&rd, OFF_POLICY, "policy");
  r.vmpl = ct_peek_u32le(&rd, OFF_VMPL, "vmpl");
  r.sig_algo = ct_peek_u32le(&rd, OFF_SIG_ALGO, "signature_algo");
  r.plat_info = ct_peek_u64le(&rd, OFF_PLAT_INFO, "platform_info");
  CT_GUARD(ct_reader_status(&rd, err));
  CT_ENSURE(r.version >= SNP_REPORT_VERSION_MIN && r.version <= SNP_REPORT_VERSION_MAX, err,
            CT_EUNSUPPORTED, "snp report: version %u is not supported (expected %d to %d)",
            r.version, SNP_REPORT_VERSION_MIN, SNP_REPORT_VERSION_MAX);
  CT_ENSURE(r.sig_algo == 1, err, CT_EUNSUPPORTED,
            "snp report: signature_algo is %u, expected 1 (ECDSA P-384 with SHA-384)", r.sig_algo);
  snp_gen g = SNP_GEN_UNKNOWN;
  if (r.version >= 3) {
    r.has_cpuid = true;
    r.cpuid_fam = r.raw[OFF_CPUID_FAM];
    r.cpuid_mod = r.raw[OFF_CPUID_MOD];
    r.cpuid_step = r.raw[OFF_CPUID_STEP];
    g = snp_gen_from_cpuid(r.cpuid_fam, r.cpuid_mod);
    CT_ENSURE(g != SNP_GEN_UNKNOWN, err, CT_EUNSUPPORTED,
              "snp report: processor family 0x%02x model 0x%02x is not Milan, Genoa or Turin",
              r.cpuid_fam, r.cpuid_mod);
  }
  snp_report_set_gen(&r, g);
  *out = r;
  return CT_OK;
}

/* ---- serde JSON form ----------------------------------------------------------------------- */

static CT_RESULT snp__json_uint(const json_t *obj, const char *key, uint64_t max, bool optional,
                                uint64_t *out, bool *present, ct_err *err) {
  json_t *v = json_object_get(obj, key);
  if (present) *present = false;
  if (!v || json_is_null(v)) {
    CT_ENSURE(optional, err, CT_EINVAL, "snp attestation_report: member \"%s\" is missing", key);
    return CT_OK;
  }
  CT_ENSURE(json_is_integer(v) && json_integer_value(v) >= 0 &&
                (uint64_t)json_integer_value(v) <= max,
            err, CT_EINVAL, "snp attestation_report: \"%s\" must be an integer in 0..%llu", key,
            (unsigned long long)max);
  *out = (uint64_t)json_integer_value(v);
  if (present) *present = true;
  return CT_OK;
}

/* Copies a JSON array of exactly `n` integers 0..255 into dst. */
static CT_RESULT snp__json_bytes(const json_t *obj, const char *key, uint8_t *dst, size_t n,
                                 bool optional, ct_err *err) {
  json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) {
    CT_ENSURE(optional, err, CT_EINVAL, "snp attestation_report: member \"%s\" is missing", key);
    return CT_OK;
  }
  CT_ENSURE(json_is_array(v) && json_array_size(v) == n, err, CT_EINVAL,
            "snp attestation_report: \"%s\" must be an array of %zu byte values", key, n);
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(v, i);
    CT_ENSURE(json_is_integer(e) && json_integer_value(e) >= 0 && json_integer_value(e) <= 255,
              err, CT_EINVAL, "snp attestation_report: \"%s\"[%zu] is not a byte value", key, i);
    dst[i] = (uint8_t)json_integer_value(e);
  }
  return CT_OK;
}

static CT_RESULT snp__json_tcb(const json_t *obj, const char *key, uint8_t *dst, snp_gen g,
                               ct_err *err) {
  json_t *t = json_object_get(obj, key);
  CT_ENSURE(json_is_object(t), err, CT_EINVAL,
            "snp attestation_report: \"%s\" must be an object {bootloader, tee, snp, microcode}",
            key);
  uint64_t bl = 0, tee = 0, snp = 0, uc = 0, fmc = 0;
  bool has_fmc = false;
  CT_GUARD(snp__json_uint(t, "bootloader", 255, false, &bl, NULL, err));
  CT_GUARD(snp__json_uint(t, "tee", 255, false, &tee, NULL, err));
  CT_GUARD(snp__json_uint(t, "snp", 255, false, &snp, NULL, err));
  CT_GUARD(snp__json_uint(t, "microcode", 255, false, &uc, NULL, err));
  CT_GUARD(snp__json_uint(t, "fmc", 255, true, &fmc, &has_fmc, err));
  CT_ENSURE(!has_fmc || g == SNP_GEN_TURIN, err, CT_EINVAL,
            "snp attestation_report: \"%s\" has an fmc SPL but the processor is not Turin", key);
  snp_tcb tcb = {.bootloader = (uint8_t)bl, .tee = (uint8_t)tee, .snp = (uint8_t)snp,
                 .microcode = (uint8_t)uc, .fmc = (uint8_t)fmc, .has_fmc = has_fmc};
  snp__tcb_encode(dst, &tcb, g);
  return CT_OK;
}

/* The firmware version either as {major, minor, build} (sev >= 4) or as flat fields. */
static CT_RESULT snp__json_version(const json_t *obj, const char *key, const char *flat_prefix,
                                   uint8_t *dst, ct_err *err) {
  json_t *v = json_object_get(obj, key);
  uint64_t major = 0, minor = 0, build = 0;
  if (json_is_object(v)) {
    CT_GUARD(snp__json_uint(v, "major", 255, false, &major, NULL, err));
    CT_GUARD(snp__json_uint(v, "minor", 255, false, &minor, NULL, err));
    CT_GUARD(snp__json_uint(v, "build", 255, false, &build, NULL, err));
  } else {
    char k[40];
    snprintf(k, sizeof k, "%s_major", flat_prefix);
    CT_GUARD(snp__json_uint(obj, k, 255, false, &major, NULL, err));
    snprintf(k, sizeof k, "%s_minor", flat_prefix);
    CT_GUARD(snp__json_uint(obj, k, 255, false, &minor, NULL, err));
    snprintf(k, sizeof k, "%s_build", flat_prefix);
    CT_GUARD(snp__json_uint(obj, k, 255, false, &build, NULL, err));
  }
  dst[0] = (uint8_t)build, dst[1] = (uint8_t)minor, dst[2] = (uint8_t)major;
  return CT_OK;
}

static CT_RESULT snp__from_serde(const json_t *j, uint8_t *raw, ct_err *err) {
  uint64_t v = 0;
  bool present = false;
  memset(raw, 0, SNP_REPORT_SIZE);
  CT_GUARD(snp__json_uint(j, "version", UINT32_MAX, false, &v, NULL, err));
  snp__put_le(raw + OFF_VERSION, v, 4);
  uint64_t version = v;
  CT_GUARD(snp__json_uint(j, "guest_svn", UINT32_MAX, false, &v, NULL, err));
  snp__put_le(raw + OFF_GUEST_SVN, v, 4);
  CT_GUARD(snp__json_uint(j, "policy", INT64_MAX, false, &v, NULL, err));
  snp__put_le(raw + OFF_POLICY, v, 8);
  CT_GUARD(snp__json_bytes(j, "family_id", raw + OFF_FAMILY_ID, 16, false, err));
  CT_GUARD(snp__json_bytes(j, "image_id", raw + OFF_IMAGE_ID, 16, false, err));
  CT_GUARD(snp__json_uint(j, "vmpl", UINT32_MAX, false, &v, NULL, err));
  snp__put_le(raw + OFF_VMPL, v, 4);
  CT_GUARD(snp__json_uint(j, "sig_algo", UINT32_MAX, false, &v, NULL, err));
  snp__put_le(raw + OFF_SIG_ALGO, v, 4);

  /* The TCB layout depends on the generation, which v3+ reports name by CPUID. */
  snp_gen g = SNP_GEN_UNKNOWN;
  uint64_t fam = 0, mod = 0, step = 0;
  bool has_fam = false, has_mod = false, has_step = false;
  CT_GUARD(snp__json_uint(j, "cpuid_fam_id", 255, true, &fam, &has_fam, err));
  CT_GUARD(snp__json_uint(j, "cpuid_mod_id", 255, true, &mod, &has_mod, err));
  CT_GUARD(snp__json_uint(j, "cpuid_step", 255, true, &step, &has_step, err));
  if (version >= 3) {
    CT_ENSURE(has_fam && has_mod && has_step, err, CT_EINVAL,
              "snp attestation_report: a version %llu report needs cpuid_fam_id, cpuid_mod_id "
              "and cpuid_step", (unsigned long long)version);
    g = snp_gen_from_cpuid((uint8_t)fam, (uint8_t)mod);
  }

  CT_GUARD(snp__json_tcb(j, "current_tcb", raw + OFF_CURRENT_TCB, g, err));
  CT_GUARD(snp__json_uint(j, "plat_info", INT64_MAX, false, &v, NULL, err));
  snp__put_le(raw + OFF_PLAT_INFO, v, 8);
  /* key_info (sev >= 4) or the older _author_key_en + _reserved_0. */
  CT_GUARD(snp__json_uint(j, "key_info", UINT32_MAX, true, &v, &present, err));
  if (!present) CT_GUARD(snp__json_uint(j, "_author_key_en", UINT32_MAX, true, &v, &present, err));
  snp__put_le(raw + OFF_KEY_INFO, present ? v : 0, 4);
  CT_GUARD(snp__json_uint(j, "_reserved_0", UINT32_MAX, true, &v, &present, err));
  snp__put_le(raw + OFF_RESERVED0, present ? v : 0, 4);
  CT_GUARD(snp__json_bytes(j, "report_data", raw + SNP_OFF_REPORT_DATA, 64, false, err));
  CT_GUARD(snp__json_bytes(j, "measurement", raw + SNP_OFF_MEASUREMENT, 48, false, err));
  CT_GUARD(snp__json_bytes(j, "host_data", raw + SNP_OFF_HOST_DATA, 32, false, err));
  CT_GUARD(snp__json_bytes(j, "id_key_digest", raw + OFF_ID_KEY_DIGEST, 48, false, err));
  CT_GUARD(snp__json_bytes(j, "author_key_digest", raw + OFF_AUTHOR_KEY_DIGEST, 48, false, err));
  CT_GUARD(snp__json_bytes(j, "report_id", raw + OFF_REPORT_ID, 32, false, err));
  CT_GUARD(snp__json_bytes(j, "report_id_ma", raw + OFF_REPORT_ID_MA, 32, false, err));
  CT_GUARD(snp__json_tcb(j, "reported_tcb", raw + OFF_REPORTED_TCB, g, err));
  CT_GUARD(snp__json_bytes(j, "_reserved_1", raw + OFF_RESERVED1, 24, true, err));
  if (has_fam) raw[OFF_CPUID_FAM] = (uint8_t)fam;
  if (has_mod) raw[OFF_CPUID_MOD] = (uint8_t)mod;
  if (has_step) raw[OFF_CPUID_STEP] = (uint8_t)step;
  CT_GUARD(snp__json_bytes(j, "chip_id", raw + SNP_OFF_CHIP_ID, 64, false, err));
  CT_GUARD(snp__json_tcb(j, "committed_tcb", raw + OFF_COMMITTED_TCB, g, err));
  CT_GUARD(snp__json_version(j, "current", "current", raw + OFF_CURRENT_VER, err));
  CT_GUARD(snp__json_version(j, "committed", "committed", raw + OFF_COMMITTED_VER, err));
  CT_GUARD(snp__json_uint(j, "_reserved_2", 255, true, &v, &present, err));
  if (present) raw[OFF_CURRENT_VER + 3] = (uint8_t)v;
  CT_GUARD(snp__json_uint(j, "_reserved_3", 255, true, &v, &present, err));
  if (present) raw[OFF_COMMITTED_VER + 3] = (uint8_t)v;
  CT_GUARD(snp__json_tcb(j, "launch_tcb", raw + OFF_LAUNCH_TCB, g, err));
  CT_GUARD(snp__json_bytes(j, "_reserved_4", raw + OFF_RESERVED4, 168, true, err));
  CT_GUARD(snp__json_uint(j, "launch_mit_vector", INT64_MAX, true, &v, &present, err));
  if (present) snp__put_le(raw + OFF_LAUNCH_MIT, v, 8);
  CT_GUARD(snp__json_uint(j, "current_mit_vector", INT64_MAX, true, &v, &present, err));
  if (present) snp__put_le(raw + OFF_CURRENT_MIT, v, 8);

  json_t *sig = json_object_get(j, "signature");
  CT_ENSURE(json_is_object(sig), err, CT_EINVAL,
            "snp attestation_report: \"signature\" must be an object {r, s}");
  CT_GUARD(snp__json_bytes(sig, "r", raw + OFF_SIG_R, 72, false, err));
  CT_GUARD(snp__json_bytes(sig, "s", raw + OFF_SIG_S, 72, false, err));
  return CT_OK;
}

CT_RESULT snp_report_from_json(const json_t *j, snp_report *out, ct_err *err) {
  if (json_is_string(j)) {
    uint8_t *raw = NULL;
    size_t n = 0;
    if (ct_b64_decode(CT_B64_ANY, json_string_value(j), json_string_length(j), &raw, &n, err) !=
        CT_OK)
      return ct_err_prefix(err, "snp attestation_report (base64): ");
    ct_status st = snp_report_parse(raw, n, out, err);
    free(raw);
    return st;
  }
  CT_ENSURE(json_is_object(j), err, CT_EINVAL,
            "snp attestation_report must be an object (serde form) or a base64 string");
  uint8_t *raw = malloc(SNP_REPORT_SIZE);
  CT_ENSURE(raw, err, CT_ENOMEM, "out of memory");
  ct_status st = snp__from_serde(j, raw, err);
  if (st == CT_OK) st = snp_report_parse(raw, SNP_REPORT_SIZE, out, err);
  free(raw);
  return st;
}

void snp_regularize(const uint8_t *in, size_t in_len, uint8_t *out, size_t len) {
  size_t n = in_len < len ? in_len : len;
  if (n) memcpy(out, in, n);
  if (n < len) memset(out + n, 0, len - n);
}
