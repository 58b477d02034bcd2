/*
 * coco_refvalues.c - `coco refvalues from-measurements`: the reference values the pattern builds
 * from the pod VM image's measurements (osc-dm-verity-image /image/measurements.json, or a
 * tpm2_pcrread of a running guest) and the init-data's PCR8.
 *
 * For every prefix (default snp and tdx, as the pattern's ACM policy writes both) and every PCR
 * 03, 08, 09, 11, 12 one reference value "<prefix>_pcrNN" = [lower-case hex], "0x" stripped.
 * PCR8 comes from --initdata (sha256(0^32 || sha256(init-data))) when given, else from the file.
 *
 * Output formats:
 *   message     one RVPS Message {"version":"0.1.0","type":"sample","payload":b64(...)}, the body
 *               of POST /kbs/v0/reference-value (the RVPS sets its own expiry: 12 months)
 *   list        [{"name","expiration","value"}], Trustee's LocalJson reference-values file and the
 *               pattern's rvps-reference-values ConfigMap (expiry from --expiration)
 *   kbs-client  "NAME VALUE" lines for `kbs-client config set-sample-reference-value NAME VALUE`
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coco.h"
#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_json.h"
#include "initdata.h"

static const char *const coco__pcrs[] = {"pcr03", "pcr08", "pcr09", "pcr11", "pcr12"};
#define COCO__NPCRS (sizeof coco__pcrs / sizeof coco__pcrs[0])
#define COCO__MAX_PREFIXES 4

static int coco__refvalues_usage(void) {
  fprintf(stderr,
          "usage: coco refvalues from-measurements MEASUREMENTS.json [--initdata FILE] [--expiration TIME]\n"
          "                            [--prefix snp,tdx] [--format message|list|kbs-client] [-o FILE]\n"
          "MEASUREMENTS.json: {\"measurements\":{\"sha256\":{\"pcr03\":\"0x..\",\"pcr09\":..,\"pcr11\":..,\"pcr12\":..}}}\n"
          "TIME: YYYY-MM-DDTHH:MM:SSZ (list format; default 12 months from now)\n"
          "prefixes: snp (az-snp-vtpm), tdx (az-tdx-vtpm), tpm (bare-metal vTPM)\n");
  return 2;
}

/* A SHA-256 PCR value as the verifiers report it: 64 lower-case hex digits, "0x" stripped. */
static CT_RESULT coco__pcr_hex(const char *name, const char *v, char out[65], ct_err *err) {
  if (!strncmp(v, "0x", 2) || !strncmp(v, "0X", 2)) v += 2;
  size_t n = strlen(v);
  CT_ENSURE(n == 64, err, CT_EINVAL, "measurement %s has %zu hex digits (a SHA-256 PCR has 64)", name, n);
  for (size_t i = 0; i < n; i++) {
    CT_ENSURE(isxdigit((unsigned char)v[i]), err, CT_EINVAL, "measurement %s is not hex (character %zu)", name, i + 1);
    out[i] = (char)tolower((unsigned char)v[i]);
  }
  out[64] = '\0';
  return CT_OK;
}

static CT_RESULT coco__check_time(const char *t, ct_err *err) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  const char *end = strptime(t, "%Y-%m-%dT%H:%M:%SZ", &tm);
  CT_ENSURE(end && !*end && strlen(t) == 20, err, CT_EINVAL,
            "--expiration \"%.40s\" is not of the form YYYY-MM-DDTHH:MM:SSZ", t);
  CT_ENSURE(timegm(&tm) > time(NULL), err, CT_EINVAL, "--expiration %s is in the past", t);
  return CT_OK;
}

static CT_RESULT coco__prefixes(const char *list, char pfx[COCO__MAX_PREFIXES][8], size_t *npfx, ct_err *err) {
  const char *p = list ? list : "snp,tdx";
  *npfx = 0;
  while (*p) {
    size_t n = strcspn(p, ",");
    CT_ENSURE(*npfx < COCO__MAX_PREFIXES, err, CT_EINVAL, "--prefix lists more than %d prefixes", COCO__MAX_PREFIXES);
    CT_ENSURE((n == 3 && (!strncmp(p, "snp", 3) || !strncmp(p, "tdx", 3) || !strncmp(p, "tpm", 3))), err, CT_EINVAL,
              "--prefix: \"%.*s\" is not snp, tdx or tpm", (int)(n < 16 ? n : 16), p);
    memcpy(pfx[*npfx], p, 3);
    pfx[(*npfx)++][3] = '\0';
    p += n + (p[n] == ',');
  }
  CT_ENSURE(*npfx, err, CT_EINVAL, "--prefix names no prefix");
  return CT_OK;
}

CT_RESULT coco_refvalues_build(const json_t *doc, const char *what, const uint8_t *pcr8, const char *prefixes,
                               json_t **values, ct_err *err) {
  *values = NULL;
  char pfx[COCO__MAX_PREFIXES][8];
  size_t npfx = 0;
  CT_GUARD(coco__prefixes(prefixes, pfx, &npfx, err));
  json_t *sha = json_object_get(json_object_get(doc, "measurements"), "sha256");
  CT_ENSURE(json_is_object(sha), err, CT_EINVAL,
            "%s: no measurements.sha256 object (the dm-verity image's measurements.json)", what);
  char pcr[COCO__NPCRS][65];
  for (size_t i = 0; i < COCO__NPCRS; i++) {
    bool is8 = !strcmp(coco__pcrs[i], "pcr08");
    if (is8 && pcr8) {
      /* PCR8 binds the init-data: computed, never taken from the image. */
      ct_hex_into(pcr8, 32, pcr[i]);
      continue;
    }
    const char *s = json_string_value(json_object_get(sha, coco__pcrs[i]));
    CT_ENSURE(s, err, CT_EINVAL, "%s: measurements.sha256.%s is missing or not a string%s", what, coco__pcrs[i],
              is8 ? " (give --initdata to compute PCR8)" : "");
    ct_status st = coco__pcr_hex(coco__pcrs[i], s, pcr[i], err);
    if (st) return ct_err_prefix(err, "%s: ", what);
  }
  json_t *v = json_object();
  CT_ENSURE(v, err, CT_ENOMEM, "out of memory");
  for (size_t i = 0; i < COCO__NPCRS; i++) {
    for (size_t k = 0; k < npfx; k++) {
      char name[40];
      snprintf(name, sizeof name, "%s_%s", pfx[k], coco__pcrs[i]);
      if (json_object_set_new(v, name, json_pack("[s]", pcr[i])) != 0) {
        json_decref(v);
        return ct_fail(err, CT_ENOMEM, "out of memory");
      }
    }
  }
  *values = v;
  return CT_OK;
}

CT_RESULT coco_refvalues_message(const json_t *values, char **message, ct_err *err) {
  char *payload = NULL, *b64 = NULL;
  CT_GUARD(ct_json_dump(values, &payload, err));
  ct_status st = ct_b64_encode(CT_B64_STD, (const uint8_t *)payload, strlen(payload), &b64, err);
  free(payload);
  CT_GUARD(st);
  json_t *msg = json_pack("{s:s, s:s, s:s}", "version", "0.1.0", "type", "sample", "payload", b64);
  free(b64);
  CT_ENSURE(msg, err, CT_ENOMEM, "out of memory");
  st = ct_json_dump(msg, message, err);
  json_decref(msg);
  return st;
}

CT_RESULT coco_initdata_pcr8_of(const char *path, uint8_t pcr8[32], ct_err *err) {
  char *toml = NULL;
  size_t tl = 0;
  initdata *d = NULL;
  CT_GUARD(coco_read(path, COCO_FILE_MAX, &toml, &tl, err));
  ct_status st = initdata_parse(toml, tl, &d, err);
  if (!st) st = initdata_pcr8(d->digest, d->digest_len, pcr8, err);
  initdata_free(d);
  free(toml);
  if (st) ct_err_prefix(err, "%s: ", path);
  return st;
}

typedef struct coco__rv_args {
  const char *file, *initdata, *expiration, *prefixes, *format, *out;
} coco__rv_args;

static CT_RESULT coco__from_measurements(const coco__rv_args *a, ct_buf *out, ct_err *err) {
  const char *fmt = a->format ? a->format : "message";
  CT_ENSURE(!strcmp(fmt, "message") || !strcmp(fmt, "list") || !strcmp(fmt, "kbs-client"), err, CT_EINVAL,
            "--format \"%.32s\" is not message, list or kbs-client", fmt);
  char when[32];
  if (a->expiration) {
    CT_GUARD(coco__check_time(a->expiration, err));
    snprintf(when, sizeof when, "%s", a->expiration);
  } else {
    time_t t = time(NULL) + 365 * 24 * 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  }
  uint8_t pcr8[32];
  if (a->initdata) CT_GUARD(coco_initdata_pcr8_of(a->initdata, pcr8, err));
  char *text = NULL;
  size_t len = 0;
  CT_GUARD(coco_read(a->file, COCO_FILE_MAX, &text, &len, err));
  json_t *doc = NULL;
  ct_status st = ct_json_parse(text, len, 16, &doc, err);
  free(text);
  if (st) return ct_err_prefix(err, "%s: ", a->file);
  json_t *values = NULL;
  st = coco_refvalues_build(doc, a->file, a->initdata ? pcr8 : NULL, a->prefixes, &values, err);
  json_decref(doc);
  CT_GUARD(st);
  char *s = NULL;
  if (!strcmp(fmt, "message")) {
    st = coco_refvalues_message(values, &s, err);
    if (!st) st = ct_buf_printf(out, err, "%s\n", s);
  } else {
    /* Sorted by PCR, then prefix (json objects keep insertion order in coco_refvalues_build). */
    json_t *list = json_array();
    const char *name;
    json_t *v;
    if (!list) st = ct_fail(err, CT_ENOMEM, "out of memory");
    json_object_foreach(values, name, v) {
      if (st) break;
      if (!strcmp(fmt, "kbs-client")) {
        st = ct_buf_printf(out, err, "%s %s\n", name, json_string_value(json_array_get(v, 0)));
      } else if (json_array_append_new(list, json_pack("{s:s, s:s, s:O}", "name", name, "expiration", when,
                                                       "value", v)) != 0) {
        st = ct_fail(err, CT_ENOMEM, "out of memory");
      }
    }
    if (!st && !strcmp(fmt, "list")) st = ct_json_dump(list, &s, err);
    if (!st && s) st = ct_buf_printf(out, err, "%s\n", s);
    json_decref(list);
  }
  free(s);
  json_decref(values);
  return st;
}

int coco_refvalues_main(int argc, char **argv) {
  if (argc < 1 || strcmp(argv[0], "from-measurements") != 0) return coco__refvalues_usage();
  coco__rv_args a = {0};
  bool bad = false;
  for (int i = 1; i < argc && !bad; i++) {
    if (coco_opt(argc, argv, &i, "--initdata", &a.initdata, &bad) ||
        coco_opt(argc, argv, &i, "--expiration", &a.expiration, &bad) ||
        coco_opt(argc, argv, &i, "--prefix", &a.prefixes, &bad) || coco_opt(argc, argv, &i, "--format", &a.format, &bad) ||
        coco_opt(argc, argv, &i, "-o", &a.out, &bad))
      continue;
    if (argv[i][0] != '-' && !a.file) a.file = argv[i];
    else {
      fprintf(stderr, "coco: refvalues: unexpected argument %s\n", argv[i]);
      bad = true;
    }
  }
  if (bad || !a.file) return coco__refvalues_usage();
  ct_buf out;
  ct_buf_init(&out, 1u << 20);
  ct_err err = {0};
  ct_status st = coco__from_measurements(&a, &out, &err);
  if (!st) st = coco_write(a.out, out.data, out.len, 0644, &err);
  ct_buf_free(&out);
  return st ? coco_fail("refvalues from-measurements", &err) : 0;
}
