/*
 * ccel.c - TCG2 crypto-agile event log parser (CCEL) with Trustee's `eventlog` JSON rendering.
 *
 * Layout (TCG PC Client PFP, section 10): the first event is a TCG_PCR_EVENT with a SHA-1
 * digest field whose data is the TCG_EfiSpecIdEvent listing (algorithm id, digest size) pairs;
 * every further event is TCG_PCR_EVENT2 {u32 index, u32 type, TPML_DIGEST_VALUES, u32 size,
 * data[size]}. All integers are little-endian.
 */
#include "ccel.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_json.h"
#include "ct_reader.h"

#define CCEL__MAX_ALGS 16u

typedef struct ccel__alg_size {
  uint16_t alg;
  uint16_t size;
} ccel__alg_size;

typedef struct ccel__type_name {
  uint32_t type;
  const char *name;
} ccel__type_name;

static const ccel__type_name ccel__types[] = {
    {0x0, "EV_PREBOOT_CERT"},
    {0x1, "EV_POST_CODE"},
    {0x2, "EV_UNUSED"},
    {0x3, "EV_NO_ACTION"},
    {0x4, "EV_SEPARATOR"},
    {0x5, "EV_ACTION"},
    {0x6, "EV_EVENT_TAG"},
    {0x7, "EV_S_CRTM_CONTENTS"},
    {0x8, "EV_S_CRTM_VERSION"},
    {0x9, "EV_CPU_MICROCODE"},
    {0xa, "EV_PLATFORM_CONFIG_FLAGS"},
    {0xb, "EV_TABLE_OF_DEVICES"},
    {0xc, "EV_COMPACT_HASH"},
    {0xd, "EV_IPL"},
    {0xe, "EV_IPL_PARTITION_DATA"},
    {0xf, "EV_NONHOST_CODE"},
    {0x10, "EV_NONHOST_CONFIG"},
    {0x11, "EV_NONHOST_INFO"},
    {0x12, "EV_OMIT_BOOT_DEVICE_EVENTS"},
    {0x80000000, "EV_EFI_EVENT_BASE"},
    {0x80000001, "EV_EFI_VARIABLE_DRIVER_CONFIG"},
    {0x80000002, "EV_EFI_VARIABLE_BOOT"},
    {0x80000003, "EV_EFI_BOOT_SERVICES_APPLICATION"},
    {0x80000004, "EV_EFI_BOOT_SERVICES_DRIVER"},
    {0x80000005, "EV_EFI_RUNTIME_SERVICES_DRIVER"},
    {0x80000006, "EV_EFI_GPT_EVENT"},
    {0x80000007, "EV_EFI_ACTION"},
    {0x80000008, "EV_EFI_PLATFORM_FIRMWARE_BLOB"},
    {0x80000009, "EV_EFI_HANDOFF_TABLES"},
    {0x8000000a, "EV_EFI_PLATFORM_FIRMWARE_BLOB2"},
    {0x8000000b, "EV_EFI_HANDOFF_TABLES2"},
    {0x8000000c, "EV_EFI_VARIABLE_BOOT2"},
    {0x80000010, "EV_EFI_HCRTM_EVENT"},
    {0x800000e0, "EV_EFI_VARIABLE_AUTHORITY"},
    {0x800000e1, "EV_EFI_SPDM_FIRMWARE_BLOB"},
    {0x800000e2, "EV_EFI_SPDM_FIRMWARE_CONFIG"},
};

const char *ccel_event_type_name(uint32_t type) {
  for (size_t i = 0; i < sizeof ccel__types / sizeof ccel__types[0]; i++)
    if (ccel__types[i].type == type) return ccel__types[i].name;
  return NULL;
}

/* Trustee's serde names for TcgAlgorithm; unknown ids are rejected by the parser. */
static const char *ccel__alg_name(uint16_t alg) {
  switch (alg) {
  case 0x0001: return "RSA";
  case 0x0003: return "TDES";
  case CCEL_ALG_SHA1: return "SHA-1";
  case CCEL_ALG_SHA256: return "SHA-256";
  case CCEL_ALG_SHA384: return "SHA-384";
  case CCEL_ALG_SHA512: return "SHA-512";
  case CCEL_ALG_SM3: return "SM3";
  default: return NULL;
  }
}

static const EVP_MD *ccel__md(uint16_t alg) {
  switch (alg) {
  case CCEL_ALG_SHA256: return EVP_sha256();
  case CCEL_ALG_SHA384: return EVP_sha384();
  case CCEL_ALG_SHA512: return EVP_sha512();
  case CCEL_ALG_SM3: return EVP_sm3();
  default: return NULL;
  }
}

/* ---- text helpers: strict UTF-8 check, UTF-16LE decoding ------------------------------------ */

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when invalid (Rust's from_utf8 rules). */
static size_t ccel__utf8_seq(const uint8_t *p, size_t n, uint32_t *cp) {
  uint8_t c = p[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t len;
  uint32_t v, min;
  if ((c & 0xe0) == 0xc0) len = 2, v = c & 0x1f, min = 0x80;
  else if ((c & 0xf0) == 0xe0) len = 3, v = c & 0x0f, min = 0x800;
  else if ((c & 0xf8) == 0xf0) len = 4, v = c & 0x07, min = 0x10000;
  else return 0;
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    v = (v << 6) | (p[i] & 0x3f);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
  *cp = v;
  return len;
}

static bool ccel__utf8_valid(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t l = ccel__utf8_seq(p + i, n - i, &cp);
    if (!l) return false;
    i += l;
  }
  return true;
}

static CT_RESULT ccel__put_cp(ct_buf *b, uint32_t cp, ct_err *err) {
  uint8_t o[4];
  size_t n;
  if (cp < 0x80) o[0] = (uint8_t)cp, n = 1;
  else if (cp < 0x800) o[0] = (uint8_t)(0xc0 | (cp >> 6)), o[1] = (uint8_t)(0x80 | (cp & 0x3f)), n = 2;
  else if (cp < 0x10000)
    o[0] = (uint8_t)(0xe0 | (cp >> 12)), o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)),
    o[2] = (uint8_t)(0x80 | (cp & 0x3f)), n = 3;
  else
    o[0] = (uint8_t)(0xf0 | (cp >> 18)), o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f)),
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)), o[3] = (uint8_t)(0x80 | (cp & 0x3f)), n = 4;
  return ct_buf_append(b, o, n, err);
}

/* UTF-16LE to UTF-8 into `b`. `lossy` replaces unpaired surrogates with U+FFFD (Rust's
 * from_utf16_lossy); otherwise they are an error (from_utf16). nbytes must be even. */
static CT_RESULT ccel__utf16(const uint8_t *p, size_t nbytes, bool lossy, ct_buf *b, ct_err *err) {
  ct_reader rd;
  ct_reader_init(&rd, p, nbytes & ~(size_t)1, "event log: UTF-16 text");
  while (ct_reader_remaining(&rd) > 0) {
    uint32_t u = ct_read_u16le(&rd, "code unit");
    uint32_t cp = u;
    if (u >= 0xd800 && u <= 0xdbff && ct_reader_remaining(&rd) >= 2) {
      uint32_t lo = ct_peek_u16le(&rd, ct_reader_offset(&rd), "low surrogate");
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
        ct_read_skip(&rd, 2, "low surrogate");
        CT_GUARD(ccel__put_cp(b, cp, err));
        continue;
      }
    }
    if (u >= 0xd800 && u <= 0xdfff) {
      CT_ENSURE(lossy, err, CT_EINVAL, "event log: invalid UTF-16 (unpaired surrogate)");
      cp = 0xfffd;
    }
    CT_GUARD(ccel__put_cp(b, cp, err));
  }
  return ct_reader_status(&rd, err);
}

/* ---- event detail parsers (one per Trustee parser) --------------------------------------- */

static CT_RESULT ccel__details_string(json_t *d, const char *s, size_t n, ct_err *err) {
  json_t *v = json_stringn(s, n);
  CT_ENSURE(v, err, CT_EINVAL, "event log: event string is not valid UTF-8");
  return ct_json_set_new(d, "string", v, err);
}

/* EV_POST_CODE, EV_ACTION, EV_EFI_ACTION, ...: the whole data as UTF-8. */
static CT_RESULT ccel__p_simple(const uint8_t *p, size_t n, json_t *d, ct_err *err) {
  CT_ENSURE(ccel__utf8_valid(p, n), err, CT_EINVAL, "event log: action string is not UTF-8");
  return ccel__details_string(d, (const char *)p, n, err);
}

/* EV_EFI_PLATFORM_FIRMWARE_BLOB2 / EV_EFI_HANDOFF_TABLES2: u8 size, description (size includes
 * the terminating byte, which Trustee drops). */
static CT_RESULT ccel__p_simple_string(const uint8_t *p, size_t n, json_t *d, ct_err *err) {
  CT_ENSURE(n >= 1, err, CT_EINVAL, "event log: blob/table description: data is too short");
  size_t end = p[0];
  CT_ENSURE(end >= 1, err, CT_EINVAL, "event log: blob/table description: zero length");
  CT_ENSURE(n >= end, err, CT_EINVAL, "event log: blob/table description: data is too short: "
            "expected at least %zu bytes", end);
  CT_ENSURE(ccel__utf8_valid(p + 1, end - 1), err, CT_EINVAL,
            "event log: blob/table description is not UTF-8");
  return ccel__details_string(d, (const char *)p + 1, end - 1, err);
}

/* EV_PLATFORM_CONFIG_FLAGS: vendor text; 0x10 becomes a space and control characters are
 * dropped; non-UTF-8 data yields the empty string. */
static CT_RESULT ccel__p_platform_config(const uint8_t *p, size_t n, json_t *d, ct_err *err) {
  ct_buf b;
  ct_buf_init(&b, n + 1);
  if (ccel__utf8_valid(p, n)) {
    for (size_t i = 0; i < n;) {
      uint32_t cp = 0;
      size_t l = ccel__utf8_seq(p + i, n - i, &cp);
      if (cp == 0x10) cp = ' ';
      bool control = cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
      if (!control) {
        ct_status st = cp == ' ' ? ct_buf_append(&b, " ", 1, err) : ct_buf_append(&b, p + i, l, err);
        if (st) return st;
      }
      i += l;
    }
  }
  ct_status st = ccel__details_string(d, b.data ? (const char *)b.data : "", b.len, err);
  ct_buf_free(&b);
  return st;
}

/* EV_EVENT_TAG: u32 id, u32 size, data[size]; NULs removed. */
static CT_RESULT ccel__p_event_tag(const uint8_t *p, size_t n, json_t *d, ct_err *err) {
  CT_ENSURE(n >= 8, err, CT_EINVAL, "event log: event tag: cannot read length");
  ct_reader rd;
  ct_reader_init(&rd, p, n, "event log: event tag");
  ct_read_skip(&rd, 4, "id");
  uint32_t sz = ct_read_u32le(&rd, "size");
  CT_ENSURE(sz <= ct_reader_remaining(&rd), err, CT_EINVAL, "event log: event tag: description past the event");
  const uint8_t *s = ct_read_bytes(&rd, sz, "description");
  CT_GUARD(ct_reader_status(&rd, err));
  CT_ENSURE(ccel__utf8_valid(s, sz), err, CT_EINVAL, "event log: event tag is not UTF-8");
  ct_buf b;
  ct_buf_init(&b, (size_t)sz + 1);
  for (uint32_t i = 0; i < sz; i++)
    if (s[i] && ct_buf_append(&b, s + i, 1, err)) return err->code;
  ct_status st = ccel__details_string(d, b.data ? (const char *)b.data : "", b.len, err);
  ct_buf_free(&b);
  return st;
}

/* EV_IPL: GCE's UTF-16 form (prefix 2e 00) or a NUL-terminated UTF-8 string (else hex). */
static CT_RESULT ccel__p_ipl(const uint8_t *p, size_t n, json_t *d, ct_err *err) {
  CT_ENSURE(n >= 2, err, CT_EINVAL, "event log: IPL: data is too short: expected at least 2 bytes");
  if (p[0] == 0x2e && p[1] == 0x00) {
    size_t rest = n - 2;
    CT_ENSURE(rest != 0 && rest % 2 == 0 && rest >= 2, err, CT_EINVAL,
              "event log: IPL: data is too short or not UTF-16 string");
    ct_buf b;
    ct_buf_init(&b, 4 * n + 1);
    ct_status st = ccel__utf16(p + 2, rest - 2, true, &b, err);
    if (st == CT_OK) st = ccel__details_string(d, b.data ? (const char *)b.data : "", b.len, err);
    ct_buf_free(&b);
    return st;
  }
  const uint8_t *z = memchr(p, 0, n);
  size_t cut = z ? (size_t)(z - p) : n;
  if (ccel__utf8_valid(p, cut)) return ccel__details_string(d, (const char *)p, cut, err);
  char *hex = NULL;
  CT_GUARD(ct_hex_encode(p, n, &hex, err));
  ct_status st = ccel__details_string(d, hex, strlen(hex), err);
  free(hex);
  return st;
}

/* UEFI_VARIABLE_DATA {GUID name; u64 name_len; u64 data_len; CHAR16 name[]; u8 data[]}. */
static CT_RESULT ccel__p_efi_variable(const uint8_t *p, size_t n, json_t *d, ct_err *err) {
  CT_ENSURE(n >= 16, err, CT_EINVAL, "event log: EFI variable: failed to read GUID");
  CT_ENSURE(n >= 24, err, CT_EINVAL, "event log: EFI variable: failed to read unicode name length");
  CT_ENSURE(n >= 32, err, CT_EINVAL, "event log: EFI variable: failed to read variable data length");
  ct_reader rd;
  ct_reader_init(&rd, p, n, "event log: EFI variable");
  const uint8_t *vguid = ct_read_bytes(&rd, 16, "variable name GUID");
  uint64_t name_len = ct_read_u64le(&rd, "unicode name length");
  uint64_t data_len = ct_read_u64le(&rd, "variable data length");
  size_t avail = ct_reader_remaining(&rd);
  CT_ENSURE(name_len <= avail / 2, err, CT_EINVAL,
            "event log: EFI variable: out of bounds while reading description bytes");
  size_t name_bytes = (size_t)name_len * 2;
  CT_ENSURE(data_len <= avail - name_bytes, err, CT_EINVAL,
            "event log: EFI variable: out of bounds while reading variable_data");
  const uint8_t *uname = ct_read_bytes(&rd, name_bytes, "unicode name");
  const uint8_t *vdata = ct_read_bytes(&rd, (size_t)data_len, "variable data");
  CT_GUARD(ct_reader_status(&rd, err));
  ct_buf name;
  ct_buf_init(&name, 2 * name_bytes + 1);
  ct_status ust = ccel__utf16(uname, name_bytes, false, &name, err);
  if (ust) {
    ct_buf_free(&name);
    return ust;
  }
  char guid[40];
  char h[33];
  ct_hex_into(vguid, 16, h);
  snprintf(guid, sizeof guid, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
  char *vd = NULL;
  ct_status st = CT_OK;
  if (data_len > 0) st = ct_b64_encode(CT_B64_STD, vdata, (size_t)data_len, &vd, err);
  if (st == CT_OK) {
    json_t *nm = json_stringn(name.data ? (const char *)name.data : "", name.len);
    if (!nm) st = ct_fail(err, CT_EINVAL, "event log: EFI variable name is not valid text");
    else st = ct_json_set_new(d, "unicode_name", nm, err);
  }
  if (st == CT_OK) st = ct_json_set_new(d, "unicode_name_length", json_integer((json_int_t)name_len), err);
  if (st == CT_OK) st = ct_json_set_new(d, "variable_data", json_string(vd ? vd : ""), err);
  if (st == CT_OK) st = ct_json_set_new(d, "variable_data_length", json_integer((json_int_t)data_len), err);
  if (st == CT_OK) st = ct_json_set_new(d, "variable_name", json_string(guid), err);
  free(vd);
  ct_buf_free(&name);
  return st;
}

/* `g` holds 16 bytes (the callers check). */
static void ccel__uefi_guid(const uint8_t *g, char out[37]) {
  ct_reader rd;
  ct_reader_init(&rd, g, 16, "GUID");
  uint32_t d1 = ct_read_u32le(&rd, "data1");
  uint16_t d2 = ct_read_u16le(&rd, "data2"), d3 = ct_read_u16le(&rd, "data3");
  snprintf(out, 37, "%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X", d1, d2, d3, g[8], g[9], g[10],
           g[11], g[12], g[13], g[14], g[15]);
}

/* One device path node in UEFI text form; CT_EUNSUPPORTED makes the caller print the generic
 * Path(type,subtype,hex) form, as Trustee does for nodes it has no formatter for. */
static CT_RESULT ccel__dp_node(uint8_t type, uint8_t sub, const uint8_t *v, size_t n, ct_buf *b,
                               ct_err *err) {
  ct_reader rd;
  ct_reader_init(&rd, v, n, "event log: device path node");
  if (type == 1 && sub == 1 && n >= 2) return ct_buf_printf(b, err, "Pci(%u,%u)", v[0], v[1]);
  if (type == 2 && sub == 1 && n >= 8) {
    uint32_t hid = ct_peek_u32le(&rd, 0, "HID"), uid = ct_peek_u32le(&rd, 4, "UID");
    uint32_t vendor = hid & 0xffff;
    return ct_buf_printf(b, err, "ACPI(%c%c%c%04X,%u)", (char)(((vendor >> 10) & 0x1f) + '@'),
                         (char)(((vendor >> 5) & 0x1f) + '@'), (char)((vendor & 0x1f) + '@'),
                         hid >> 16, uid);
  }
  if (type == 4 && sub == 1 && n >= 38) {
    uint32_t part = ct_peek_u32le(&rd, 0, "partition number");
    uint64_t start = ct_peek_u64le(&rd, 4, "partition start"), size = ct_peek_u64le(&rd, 12, "partition size");
    char sig[40];
    const char *fmt;
    if (v[36] == 1) fmt = "MBR", snprintf(sig, sizeof sig, "0x%08x", ct_peek_u32le(&rd, 20, "MBR signature"));
    else if (v[36] == 2) fmt = "GPT", ccel__uefi_guid(v + 20, sig);
    else return CT_EUNSUPPORTED;
    CT_GUARD(ct_buf_printf(b, err, "HD(%u,%s,%s", part, fmt, sig));
    if (part != 0)
      CT_GUARD(ct_buf_printf(b, err, ",0x%llx,0x%llx", (unsigned long long)start,
                             (unsigned long long)size));
    return ct_buf_append(b, ")", 1, err);
  }
  if (type == 4 && sub == 3 && n >= 16) {
    char g[37];
    ccel__uefi_guid(v, g);
    CT_GUARD(ct_buf_printf(b, err, "VenMedia(%s,", g));
    char *hex = NULL;
    CT_GUARD(ct_hex_encode(v + 16, n - 16, &hex, err));
    ct_status st = ct_buf_printf(b, err, "%s)", hex);
    free(hex);
    return st;
  }
  if (type == 4 && sub == 4 && n >= 2 && n % 2 == 0) {
    CT_GUARD(ct_buf_append(b, "File(", 5, err));
    CT_GUARD(ccel__utf16(v, n - 2, true, b, err));
    return ct_buf_append(b, ")", 1, err);
  }
  return CT_EUNSUPPORTED;
}

/* UEFI_IMAGE_LOAD_EVENT {u64 addr, u64 len, u64 link_addr, u64 dp_len, device path}. */
static CT_RESULT ccel__p_boot_app(const uint8_t *p, size_t n, json_t *d, ct_err *err) {
  CT_ENSURE(n >= 32, err, CT_EINVAL, "event log: image load event: data is too short: expected at "
            "least 32 bytes");
  ct_reader rd;
  ct_reader_init(&rd, p, n, "event log: image load event");
  uint64_t dp_len = ct_peek_u64le(&rd, 24, "device path length");
  CT_GUARD(ct_reader_status(&rd, err));
  if (dp_len == 0) return CT_OK;
  /* The last 4 bytes are the End node, which Trustee does not render. */
  CT_ENSURE(dp_len >= 4 && dp_len - 4 <= n - 32, err, CT_EINVAL,
            "event log: image load event: data is shorter than its device path length");
  size_t left = (size_t)dp_len - 4;
  CT_ENSURE(left >= 4, err, CT_EINVAL, "event log: remaining device path is shorter than 4 bytes");
  ct_reader_init(&rd, p + 32, left, "event log: device path");
  json_t *paths = json_array();
  CT_ENSURE(paths, err, CT_ENOMEM, "out of memory");
  ct_status st = CT_OK;
  size_t nodes = 0;
  while (left > 0) {
    if (left < 4 || ++nodes > 256) {
      st = ct_fail(err, CT_EINVAL, "event log: device path node truncated or too many nodes");
      break;
    }
    uint8_t type = ct_read_u8(&rd, "node type"), sub = ct_read_u8(&rd, "node subtype");
    size_t nl = ct_read_u16le(&rd, "node length");
    if (nl < 4 || nl > left) {
      st = ct_fail(err, CT_EINVAL, "event log: device path node length %zu out of range", nl);
      break;
    }
    const uint8_t *nv = ct_read_bytes(&rd, nl - 4, "node data");
    if ((st = ct_reader_status(&rd, err))) break;
    ct_buf b;
    ct_buf_init(&b, 1u << 16);
    st = ccel__dp_node(type, sub, nv, nl - 4, &b, err);
    if (st == CT_EUNSUPPORTED) {
      ct_buf_reset(&b);
      char *hex = NULL;
      st = ct_hex_encode(nv, nl - 4, &hex, err);
      if (st == CT_OK) st = ct_buf_printf(&b, err, "Path(%u,%u,%s)", type, sub, hex);
      free(hex);
    }
    if (st == CT_OK) {
      json_t *s = json_stringn(b.data ? (const char *)b.data : "", b.len);
      if (!s || json_array_append_new(paths, s)) st = ct_fail(err, CT_ENOMEM, "out of memory");
    }
    ct_buf_free(&b);
    if (st) break;
    left -= nl;
  }
  if (st) {
    json_decref(paths);
    return st;
  }
  return ct_json_set_new(d, "device_paths", paths, err);
}

/* Details for one event, per Trustee's TcgEventType::get_parser mapping. */
static CT_RESULT ccel__details(uint32_t type, const uint8_t *p, size_t n, json_t **out, ct_err *err) {
  json_t *d = json_object();
  CT_ENSURE(d, err, CT_ENOMEM, "out of memory");
  ct_status st = CT_OK;
  switch (type) {
  case 0x1: case 0x5: case 0xc: case 0x12: case 0x80000007:
    st = ccel__p_simple(p, n, d, err);
    break;
  case 0x6: st = ccel__p_event_tag(p, n, d, err); break;
  case 0xa: st = ccel__p_platform_config(p, n, d, err); break;
  case 0xd: st = ccel__p_ipl(p, n, d, err); break;
  case 0x80000001: case 0x80000002: case 0x8000000c: case 0x800000e0:
    st = ccel__p_efi_variable(p, n, d, err);
    break;
  case 0x80000003: st = ccel__p_boot_app(p, n, d, err); break;
  case 0x8000000a: case 0x8000000b: st = ccel__p_simple_string(p, n, d, err); break;
  default: break; /* EV_SEPARATOR and the rest: no details */
  }
  if (st) {
    json_decref(d);
    return ct_err_prefix(err, "%s: ", ccel_event_type_name(type));
  }
  *out = d;
  return CT_OK;
}

/* ---- the log ------------------------------------------------------------------------------ */

/* TCG_EfiSpecIdEvent: signature[16], platformClass u32, versions 3×u8, uintnSize u8,
 * numberOfAlgorithms u32, {u16 alg, u16 size}[n], vendorInfoSize u8, vendorInfo[]. */
static CT_RESULT ccel__spec_id(const uint8_t *p, size_t n, ccel__alg_size *algs, size_t *nalgs,
                               ct_err *err) {
  CT_ENSURE(n >= 28, err, CT_EINVAL, "event log: spec ID event: cannot read algorithm count");
  ct_reader rd;
  ct_reader_init(&rd, p, n, "event log: spec ID event");
  ct_read_skip(&rd, 24, "signature, platform class and versions");
  uint32_t count = ct_read_u32le(&rd, "number of algorithms");
  CT_ENSURE(count >= 1 && count <= CCEL__MAX_ALGS, err, CT_EINVAL,
            "event log: spec ID event lists %u algorithms (1..%u allowed)", count, CCEL__MAX_ALGS);
  CT_ENSURE(ct_reader_remaining(&rd) >= (size_t)count * 4 + 1, err, CT_EINVAL,
            "event log: spec ID event: algorithm list truncated");
  for (uint32_t i = 0; i < count; i++) {
    uint16_t alg = ct_read_u16le(&rd, "algorithm id"), size = ct_read_u16le(&rd, "digest size");
    CT_ENSURE(ccel__alg_name(alg), err, CT_EINVAL, "event log: unknown algorithm type %x", alg);
    CT_ENSURE(size >= 1 && size <= 64, err, CT_EINVAL, "event log: digest size %u for algorithm %x",
              size, alg);
    algs[i].alg = alg;
    algs[i].size = size;
  }
  size_t vendor = ct_read_u8(&rd, "vendor info size");
  CT_GUARD(ct_reader_status(&rd, err));
  size_t off = ct_reader_offset(&rd) + vendor;
  CT_ENSURE(off == n, err, CT_EINVAL,
            "event log: unexpected data size consumed for detecting digests (%zu of %zu)", off, n);
  *nalgs = count;
  return CT_OK;
}

static bool ccel__digest_matches(const ccel_event *e) {
  for (size_t i = 0; i < e->ndigests; i++) {
    const EVP_MD *md = ccel__md(e->digests[i].alg);
    if (!md) return false;
    uint8_t h[EVP_MAX_MD_SIZE];
    unsigned hl = 0;
    if (!EVP_Digest(e->data, e->data_len, h, &hl, md, NULL)) return false;
    if (hl != e->digests[i].len || memcmp(h, e->digests[i].value, hl) != 0) return false;
  }
  return true;
}

void ccel_free(ccel_log *log) {
  if (!log) return;
  for (size_t i = 0; i < log->count; i++) json_decref(log->events[i].details);
  free(log->events);
  free(log->raw);
  memset(log, 0, sizeof *log);
}

CT_RESULT ccel_parse(const uint8_t *data, size_t len, ccel_log *out, ct_err *err) {
  memset(out, 0, sizeof *out);
  CT_ENSURE(len <= CCEL_MAX_LOG_BYTES, err, CT_ELIMIT, "event log is %zu bytes (limit %u)", len,
            CCEL_MAX_LOG_BYTES);
  ccel_log log = {0};
  ct_status st = CT_OK;
  log.raw = malloc(len ? len : 1);
  CT_ENSURE(log.raw, err, CT_ENOMEM, "out of memory");
  if (len) memcpy(log.raw, data, len);
  else log.raw[0] = 0;
  log.raw_len = len;
  ct_reader rd;
  ct_reader_init(&rd, log.raw, len, "event log");
  size_t cap = 0;

  /* First event: TCG_PCR_EVENT {u32 pcr, u32 type, sha1[20], u32 size, data}. */
  CT_ENSURE_GOTO(st, len >= 32, fail, err, CT_EINVAL, "event log: too short for the first event");
  ct_read_skip(&rd, 4, "first event PCR index");
  uint32_t type0 = ct_read_u32le(&rd, "first event type");
  CT_ENSURE_GOTO(st, type0 == 0x3, fail, err, CT_EINVAL,
                 "event log: first event has type %#x, expected EV_NO_ACTION (spec ID event)", type0);
  ct_read_skip(&rd, 20, "first event SHA-1 digest");
  uint32_t size0 = ct_read_u32le(&rd, "spec ID event size");
  CT_ENSURE_GOTO(st, size0 <= ct_reader_remaining(&rd), fail, err, CT_EINVAL,
                 "event log: spec ID event truncated");
  ccel__alg_size algs[CCEL__MAX_ALGS];
  size_t nalgs = 0;
  const uint8_t *spec = ct_read_bytes(&rd, size0, "spec ID event");
  CT_GUARD_GOTO(st, ct_reader_status(&rd, err), fail);
  CT_GUARD_GOTO(st, ccel__spec_id(spec, size0, algs, &nalgs, err), fail);

  while (ct_reader_remaining(&rd) > 0) {
    CT_ENSURE_GOTO(st, ct_reader_remaining(&rd) >= 8, fail, err, CT_EINVAL,
                   "event log: failed to read potential stop flag at offset %zu", ct_reader_offset(&rd));
    uint64_t stop = ct_peek_u64le(&rd, ct_reader_offset(&rd), "stop flag");
    if (stop == UINT64_MAX || stop == 0) break;
    CT_ENSURE_GOTO(st, log.count < CCEL_MAX_EVENTS, fail, err, CT_ELIMIT,
                   "event log has more than %u events", CCEL_MAX_EVENTS);
    if (log.count == cap) {
      size_t ncap = cap ? cap * 2 : 64;
      ccel_event *ne = realloc(log.events, ncap * sizeof *ne);
      CT_ENSURE_GOTO(st, ne, fail, err, CT_ENOMEM, "out of memory");
      log.events = ne;
      cap = ncap;
    }
    ccel_event *e = &log.events[log.count];
    memset(e, 0, sizeof *e);
    e->index = ct_read_u32le(&rd, "PCR index");
    e->type = ct_read_u32le(&rd, "event type");
    CT_ENSURE_GOTO(st, ccel_event_type_name(e->type), fail, err, CT_EINVAL,
                   "event log: unknown event type detected: %#x", e->type);
    CT_ENSURE_GOTO(st, ct_reader_remaining(&rd) >= 4, fail, err, CT_EINVAL,
                   "event log: cannot read digest count");
    uint32_t nd = ct_read_u32le(&rd, "digest count");
    CT_ENSURE_GOTO(st, nd <= CCEL_MAX_DIGESTS_PER_EVENT, fail, err, CT_ELIMIT,
                   "event log: event has %u digests (limit %u)", nd, CCEL_MAX_DIGESTS_PER_EVENT);
    for (uint32_t i = 0; i < nd; i++) {
      CT_ENSURE_GOTO(st, ct_reader_remaining(&rd) >= 2, fail, err, CT_EINVAL,
                     "event log: cannot read algorithm id");
      uint16_t alg = ct_read_u16le(&rd, "digest algorithm");
      CT_ENSURE_GOTO(st, ccel__alg_name(alg), fail, err, CT_EINVAL,
                     "event log: unknown algorithm type detected: %x", alg);
      size_t dsz = 0;
      for (size_t k = 0; k < nalgs; k++)
        if (algs[k].alg == alg) dsz = algs[k].size;
      CT_ENSURE_GOTO(st, dsz, fail, err, CT_EINVAL, "event log: missing digest size for algorithm: %x",
                     alg);
      CT_ENSURE_GOTO(st, ct_reader_remaining(&rd) >= dsz, fail, err, CT_EINVAL,
                     "event log: digest truncated");
      e->digests[i].alg = alg;
      e->digests[i].len = (uint16_t)dsz;
      e->digests[i].value = ct_read_bytes(&rd, dsz, "digest");
    }
    e->ndigests = nd;
    CT_ENSURE_GOTO(st, ct_reader_remaining(&rd) >= 4, fail, err, CT_EINVAL,
                   "event log: cannot read event data size");
    uint32_t dsize = ct_read_u32le(&rd, "event data size");
    CT_ENSURE_GOTO(st, dsize <= ct_reader_remaining(&rd), fail, err, CT_EINVAL,
                   "event log: event data (%u bytes) runs past the end of the log", dsize);
    e->data = ct_read_bytes(&rd, dsize, "event data");
    e->data_len = dsize;
    CT_GUARD_GOTO(st, ct_reader_status(&rd, err), fail);
    CT_GUARD_GOTO(st, ccel__details(e->type, e->data, e->data_len, &e->details, err), fail);
    log.count++;
  }
  *out = log;
  return CT_OK;
fail:
  ccel_free(&log);
  return st;
}

CT_RESULT ccel_to_json(const ccel_log *log, json_t **out, ct_err *err) {
  json_t *arr = json_array();
  CT_ENSURE(arr, err, CT_ENOMEM, "out of memory");
  ct_status st = CT_OK;
  for (size_t i = 0; i < log->count && st == CT_OK; i++) {
    const ccel_event *e = &log->events[i];
    json_t *digests = json_array();
    char *b64 = NULL;
    if (!digests) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      break;
    }
    for (size_t k = 0; k < e->ndigests && st == CT_OK; k++) {
      char hex[129];
      ct_hex_into(e->digests[k].value, e->digests[k].len, hex);
      json_t *dj = json_pack("{s:s,s:s}", "alg", ccel__alg_name(e->digests[k].alg), "digest", hex);
      if (!dj || json_array_append_new(digests, dj)) st = ct_fail(err, CT_ENOMEM, "out of memory");
    }
    if (st == CT_OK) st = ct_b64_encode(CT_B64_STD, e->data, e->data_len, &b64, err);
    if (st == CT_OK) {
      json_t *ej = json_pack("{s:O,s:b,s:o,s:s,s:I,s:s}", "details", e->details,
                             "digest_matches_event", ccel__digest_matches(e), "digests", digests,
                             "event", b64, "index", (json_int_t)e->index, "type_name",
                             ccel_event_type_name(e->type));
      digests = NULL;
      if (!ej || json_array_append_new(arr, ej)) st = ct_fail(err, CT_ENOMEM, "out of memory");
    }
    json_decref(digests);
    free(b64);
  }
  if (st) {
    json_decref(arr);
    return st;
  }
  *out = arr;
  return CT_OK;
}

CT_RESULT ccel_replay(const ccel_log *log, uint32_t index, uint16_t alg, uint8_t out[64],
                      size_t *out_len, ct_err *err) {
  const EVP_MD *md = ccel__md(alg);
  CT_ENSURE(md, err, CT_EUNSUPPORTED, "event log replay: unsupported hash algorithm %#x", alg);
  size_t n = (size_t)EVP_MD_get_size(md);
  uint8_t mr[64] = {0};
  for (size_t i = 0; i < log->count; i++) {
    const ccel_event *e = &log->events[i];
    if (e->index != index) continue;
    for (size_t k = 0; k < e->ndigests; k++) {
      if (e->digests[k].alg != alg) continue;
      EVP_MD_CTX *c = EVP_MD_CTX_new();
      unsigned hl = 0;
      bool ok = c && EVP_DigestInit_ex(c, md, NULL) && EVP_DigestUpdate(c, mr, n) &&
                EVP_DigestUpdate(c, e->digests[k].value, e->digests[k].len) &&
                EVP_DigestFinal_ex(c, mr, &hl);
      EVP_MD_CTX_free(c);
      CT_ENSURE(ok, err, CT_EINTERNAL, "event log replay: digest computation failed");
    }
  }
  memcpy(out, mr, n);
  *out_len = n;
  return CT_OK;
}
