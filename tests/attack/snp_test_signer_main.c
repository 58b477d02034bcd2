/*
 * snp-test-signer - TEST-ONLY forged SEV-SNP evidence for the attack suite (see snp_signer.h).
 *
 *   snp-test-signer init DIR [--gen Milan|Genoa|Turin] [--bits N]
 *   snp-test-signer vek DIR NAME [--chip-id HEX] [--tcb BL,TEE,SNP,UCODE[,FMC]] [--vlek]
 *   snp-test-signer report DIR NAME [--report-data HEX] [--host-data HEX] [--measurement HEX]
 *                   [--policy N] [--vmpl N] [--version N] [--tcb BL,TEE,SNP,UCODE[,FMC]]
 *                   [--chip-id HEX] [--no-chain] [--flip-byte OFFSET]
 *
 * `report` prints Trustee's SNP evidence JSON on stdout. Hex values shorter than the field are
 * zero-padded. --flip-byte corrupts one byte of the signed report after signing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ct_codec.h"
#include "ct_json.h"
#include "snp_signer.h"

static int usage(void) {
  fprintf(stderr, "usage: snp-test-signer init DIR [--gen G] [--bits N]\n"
                  "       snp-test-signer vek DIR NAME [--chip-id HEX] [--tcb BL,TEE,SNP,UCODE[,FMC]] [--vlek]\n"
                  "       snp-test-signer report DIR NAME [--report-data HEX] [--host-data HEX] [--measurement HEX]\n"
                  "                       [--policy N] [--vmpl N] [--version N] [--tcb ...] [--chip-id HEX]\n"
                  "                       [--no-chain] [--flip-byte OFFSET]\n");
  return 2;
}

static int hex_field(const char *hex, uint8_t *dst, size_t n) {
  uint8_t *raw = NULL;
  size_t len = 0;
  ct_err err;
  if (ct_hex_decode(hex, strlen(hex), &raw, &len, &err) != CT_OK || len > n) {
    fprintf(stderr, "snp-test-signer: bad hex value (at most %zu bytes): %s\n", n, hex);
    free(raw);
    return -1;
  }
  memset(dst, 0, n);
  memcpy(dst, raw, len);
  free(raw);
  return 0;
}

static int tcb_arg(const char *s, snp_tcb *t) {
  unsigned v[5] = {0};
  int n = sscanf(s, "%u,%u,%u,%u,%u", &v[0], &v[1], &v[2], &v[3], &v[4]);
  if (n < 4 || v[0] > 255 || v[1] > 255 || v[2] > 255 || v[3] > 255 || v[4] > 255) return -1;
  t->bootloader = (uint8_t)v[0], t->tee = (uint8_t)v[1], t->snp = (uint8_t)v[2], t->microcode = (uint8_t)v[3];
  t->fmc = (uint8_t)v[4];
  return 0;
}

static snp_gen gen_arg(const char *s) {
  for (snp_gen g = SNP_GEN_MILAN; g <= SNP_GEN_TURIN; g++)
    if (!strcmp(s, snp_gen_name(g))) return g;
  return SNP_GEN_UNKNOWN;
}

static int fail(const ct_err *err) {
  fprintf(stderr, "snp-test-signer: %s\n", err->msg);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3) return usage();
  const char *cmd = argv[1], *dir = argv[2];
  ct_err err;
  if (!strcmp(cmd, "init")) {
    snp_gen gen = SNP_GEN_MILAN;
    int bits = 2048;
    for (int i = 3; i < argc; i++) {
      if (!strcmp(argv[i], "--gen") && i + 1 < argc) gen = gen_arg(argv[++i]);
      else if (!strcmp(argv[i], "--bits") && i + 1 < argc) bits = atoi(argv[++i]);
      else return usage();
    }
    if (gen == SNP_GEN_UNKNOWN || bits < 2048 || bits > 8192) return usage();
    mkdir(dir, 0700);
    snp_signer *s = NULL;
    if (snp_signer_new(gen, bits, &s, &err) != CT_OK) return fail(&err);
    ct_status st = snp_signer_save(s, dir, &err);
    snp_signer_free(s);
    return st == CT_OK ? 0 : fail(&err);
  }
  if (argc < 4) return usage();
  const char *name = argv[3];
  snp_signer *s = NULL;
  if (snp_signer_load(dir, &s, &err) != CT_OK) return fail(&err);
  int rc = 0;
  if (!strcmp(cmd, "vek")) {
    uint8_t chip[64];
    memset(chip, 0xc1, sizeof chip);
    snp_tcb tcb = {.bootloader = 4, .tee = 0, .snp = 22, .microcode = 213};
    bool vlek = false;
    for (int i = 4; i < argc && rc == 0; i++) {
      if (!strcmp(argv[i], "--chip-id") && i + 1 < argc) rc = hex_field(argv[++i], chip, 64);
      else if (!strcmp(argv[i], "--tcb") && i + 1 < argc) rc = tcb_arg(argv[++i], &tcb);
      else if (!strcmp(argv[i], "--vlek")) vlek = true;
      else rc = -1;
    }
    snp_signer_vek *v = NULL;
    if (rc != 0) rc = usage();
    else if (snp_signer_vek_new(s, chip, &tcb, vlek, &v, &err) != CT_OK ||
             snp_signer_vek_save(v, dir, name, &err) != CT_OK)
      rc = fail(&err);
    snp_signer_vek_free(v);
  } else if (!strcmp(cmd, "report")) {
    snp_signer_vek *v = NULL;
    if (snp_signer_vek_load(dir, name, &v, &err) != CT_OK) {
      snp_signer_free(s);
      return fail(&err);
    }
    snp_signer_report_opts o;
    snp_signer_report_defaults(v, s->gen, &o);
    bool chain = true;
    long flip = -1;
    for (int i = 4; i < argc && rc == 0; i++) {
      const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
      if (!strcmp(a, "--no-chain")) { chain = false; continue; }
      if (!val) { rc = -1; break; }
      i++;
      if (!strcmp(a, "--report-data")) rc = hex_field(val, o.report_data, 64);
      else if (!strcmp(a, "--host-data")) rc = hex_field(val, o.host_data, 32);
      else if (!strcmp(a, "--measurement")) rc = hex_field(val, o.measurement, 48);
      else if (!strcmp(a, "--chip-id")) rc = hex_field(val, o.chip_id, 64);
      else if (!strcmp(a, "--policy")) o.policy = strtoull(val, NULL, 0);
      else if (!strcmp(a, "--vmpl")) o.vmpl = (uint32_t)strtoul(val, NULL, 0);
      else if (!strcmp(a, "--version")) o.version = (uint32_t)strtoul(val, NULL, 0);
      else if (!strcmp(a, "--tcb")) rc = tcb_arg(val, &o.reported_tcb);
      else if (!strcmp(a, "--flip-byte")) flip = strtol(val, NULL, 0);
      else rc = -1;
    }
    uint8_t raw[SNP_REPORT_SIZE];
    json_t *ev = NULL;
    char *text = NULL;
    if (rc != 0 || flip >= SNP_REPORT_SIZE) {
      rc = usage();
    } else if (snp_signer_report(v, s->gen, &o, raw, &err) != CT_OK) {
      rc = fail(&err);
    } else {
      if (flip >= 0) raw[flip] ^= 0x01;
      if (snp_signer_evidence(v, raw, chain, &ev, &err) != CT_OK || ct_json_dump(ev, &text, &err) != CT_OK)
        rc = fail(&err);
      else
        printf("%s\n", text);
    }
    free(text);
    json_decref(ev);
    snp_signer_vek_free(v);
  } else {
    rc = usage();
  }
  snp_signer_free(s);
  return rc;
}
