/*
 * Synthetic-SNP evidence for kbs_loadgen (see loadgen_snp.h). The load generator shares the
 * machine with the KBS it measures, so per handshake it only signs the report (the one P-384
 * signature a real guest's firmware makes) and splices report_data and the signature into
 * evidence text built once per chip: the KBS receives exactly what snp_signer_evidence (our
 * guest attester's serde form, with the VCEK in cert_chain) would produce. Even that signature
 * (~1 ms of CPU in OpenSSL 3.0) would cap the rate measured on a shared machine, so with
 * loadgen_snp_presign its costly half (the nonce's kG and inverse) is done before the run and
 * each report costs a SHA-384 and three modular operations.
 */
#include "loadgen_snp.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ct_json.h"
#include "snp_signer.h"

#define LOADGEN_SNP_MAX_CHIPS 256

/* Evidence text split around the three byte arrays that change per report. */
typedef struct chip {
  snp_signer_vek *vek;
  snp_signer_nonces *nonces; /* NULL: every report gets an ordinary signature */
  snp_signer_report_opts opts;
  char *seg[4];
  size_t seg_len[4];
  size_t field_off[3], field_len[3]; /* raw-report offset and length of each spliced array */
} chip;

struct loadgen_snp {
  snp_signer *signer;
  chip chips[LOADGEN_SNP_MAX_CHIPS];
  unsigned n;
  atomic_ulong precomputed, fallback; /* reports signed with a precomputed nonce / without */
};

int loadgen_snp_init(const char *dir, int chips) {
  ct_err err;
  if (chips < 1 || chips > LOADGEN_SNP_MAX_CHIPS) {
    fprintf(stderr, "kbs_loadgen: chips must be 1..%d\n", LOADGEN_SNP_MAX_CHIPS);
    return 1;
  }
  mkdir(dir, 0700);
  snp_signer *s = NULL;
  if (snp_signer_new(SNP_GEN_MILAN, 2048, &s, &err) != CT_OK || snp_signer_save(s, dir, &err) != CT_OK) {
    fprintf(stderr, "kbs_loadgen: %s\n", err.msg);
    snp_signer_free(s);
    return 1;
  }
  int rc = 0;
  for (int i = 0; i < chips && !rc; i++) {
    uint8_t id[64];
    memset(id, 0xc0, sizeof id);
    id[0] = (uint8_t)i, id[1] = (uint8_t)(i >> 8);
    snp_tcb tcb = {.bootloader = 4, .tee = 0, .snp = 22, .microcode = 213};
    snp_signer_vek *v = NULL;
    char name[32];
    snprintf(name, sizeof name, "chip%d", i);
    if (snp_signer_vek_new(s, id, &tcb, false, &v, &err) != CT_OK || snp_signer_vek_save(v, dir, name, &err) != CT_OK) {
      fprintf(stderr, "kbs_loadgen: %s\n", err.msg);
      rc = 1;
    }
    snp_signer_vek_free(v);
  }
  snp_signer_free(s);
  return rc;
}

void loadgen_snp_close(loadgen_snp *s) {
  if (!s) return;
  for (unsigned i = 0; i < s->n; i++) {
    snp_signer_nonces_free(s->chips[i].nonces);
    snp_signer_vek_free(s->chips[i].vek);
    for (int k = 0; k < 4; k++) free(s->chips[i].seg[k]);
  }
  snp_signer_free(s->signer);
  free(s);
}

/* Builds the chip's evidence once with markers where the per-report arrays go, then cuts it. */
static int loadgen_snp__template(loadgen_snp *s, chip *c) {
  ct_err err;
  uint8_t raw[SNP_REPORT_SIZE];
  json_t *ev = NULL;
  char *text = NULL;
  snp_signer_report_defaults(c->vek, s->signer->gen, &c->opts);
  if (snp_signer_report(c->vek, s->signer->gen, &c->opts, raw, &err) != CT_OK ||
      snp_signer_evidence(c->vek, raw, true, &ev, &err) != CT_OK) {
    fprintf(stderr, "kbs_loadgen: %s\n", err.msg);
    json_decref(ev);
    return -1;
  }
  json_t *rep = json_object_get(ev, "attestation_report");
  json_t *sig = json_object_get(rep, "signature");
  json_object_set_new(rep, "report_data", json_string("\x01" "0"));
  json_object_set_new(sig, "r", json_string("\x01" "1"));
  json_object_set_new(sig, "s", json_string("\x01" "2"));
  int rc = ct_json_dump(ev, &text, &err) == CT_OK ? 0 : -1;
  json_decref(ev);
  if (rc) return rc;
  static const size_t offs[3] = {SNP_OFF_REPORT_DATA, SNP_SIG_OFFSET, SNP_SIG_OFFSET + 72};
  static const size_t lens[3] = {64, 72, 72};
  const char *marks[3] = {strstr(text, "\"\\u00010\""), strstr(text, "\"\\u00011\""), strstr(text, "\"\\u00012\"")};
  if (!marks[0] || !marks[1] || !marks[2]) {
    fprintf(stderr, "kbs_loadgen: evidence template markers not found\n");
    free(text);
    return -1;
  }
  /* Order the markers as they appear in the text. */
  int order[3] = {0, 1, 2};
  for (int i = 0; i < 3; i++)
    for (int j = i + 1; j < 3; j++)
      if (marks[order[j]] < marks[order[i]]) {
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
  const char *p = text;
  for (int i = 0; i < 3; i++) {
    const char *m = marks[order[i]];
    c->seg_len[i] = (size_t)(m - p);
    c->seg[i] = strndup(p, c->seg_len[i]);
    c->field_off[i] = offs[order[i]];
    c->field_len[i] = lens[order[i]];
    p = m + strlen("\"\\u0001x\"");
  }
  c->seg_len[3] = strlen(p);
  c->seg[3] = strdup(p);
  free(text);
  return c->seg[0] && c->seg[1] && c->seg[2] && c->seg[3] ? 0 : -1;
}

loadgen_snp *loadgen_snp_open(const char *dir) {
  ct_err err;
  loadgen_snp *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  if (snp_signer_load(dir, &s->signer, &err) != CT_OK) {
    fprintf(stderr, "kbs_loadgen: %s\n", err.msg);
    free(s);
    return NULL;
  }
  for (unsigned i = 0; i < LOADGEN_SNP_MAX_CHIPS; i++) {
    char name[32], path[4096];
    snprintf(name, sizeof name, "chip%u", i);
    snprintf(path, sizeof path, "%s/%s.der", dir, name);
    struct stat st;
    if (stat(path, &st) != 0) break;
    chip *c = &s->chips[i];
    if (snp_signer_vek_load(dir, name, &c->vek, &err) != CT_OK) {
      fprintf(stderr, "kbs_loadgen: %s\n", err.msg);
      loadgen_snp_close(s);
      return NULL;
    }
    s->n = i + 1;
    if (loadgen_snp__template(s, c) != 0) {
      loadgen_snp_close(s);
      return NULL;
    }
  }
  if (!s->n) {
    fprintf(stderr, "kbs_loadgen: no chip0.der in %s (run kbs_loadgen --snp-init first)\n", dir);
    loadgen_snp_close(s);
    return NULL;
  }
  return s;
}

int loadgen_snp_presign(loadgen_snp *s, unsigned clients, size_t total, unsigned threads) {
  size_t before = 0; /* clients of the chips already served */
  for (unsigned i = 0; i < s->n; i++) {
    /* Client c signs with chip c % n: each chip's share of `total` follows its clients (the
     * shares add up to `total` exactly). */
    size_t mine = 0;
    for (unsigned c = 0; c < clients; c++) mine += c % s->n == i;
    size_t count = total * (before + mine) / clients - total * before / clients;
    before += mine;
    if (!count) continue;
    if (count > SNP_SIGNER_NONCES_MAX) count = SNP_SIGNER_NONCES_MAX;
    ct_err err;
    snp_signer_nonces_free(s->chips[i].nonces);
    s->chips[i].nonces = NULL;
    if (snp_signer_nonces_new(s->chips[i].vek, count, threads, &s->chips[i].nonces, &err) != CT_OK) {
      fprintf(stderr, "kbs_loadgen: %s\n", err.msg);
      return -1;
    }
  }
  return 0;
}

void loadgen_snp_counts(loadgen_snp *s, unsigned long *precomputed, unsigned long *fallback) {
  *precomputed = atomic_load(&s->precomputed);
  *fallback = atomic_load(&s->fallback);
}

/* "[b0,b1,...]" */
static char *loadgen_snp__bytes(char *o, const uint8_t *b, size_t n) {
  *o++ = '[';
  for (size_t i = 0; i < n; i++) {
    if (i) *o++ = ',';
    unsigned v = b[i];
    if (v >= 100) *o++ = (char)('0' + v / 100);
    if (v >= 10) *o++ = (char)('0' + v / 10 % 10);
    *o++ = (char)('0' + v % 10);
  }
  *o++ = ']';
  return o;
}

char *loadgen_snp_attest_body(loadgen_snp *s, unsigned client, const char *nonce, const json_t *teekey,
                              const uint8_t rd[48]) {
  chip *c = &s->chips[client % s->n];
  snp_signer_report_opts o = c->opts;
  memset(o.report_data, 0, sizeof o.report_data);
  memcpy(o.report_data, rd, 48);
  uint8_t raw[SNP_REPORT_SIZE];
  ct_err err;
  bool pre = false;
  if (snp_signer_report_pooled(c->vek, c->nonces, s->signer->gen, &o, raw, &pre, &err) != CT_OK) return NULL;
  atomic_fetch_add(pre ? &s->precomputed : &s->fallback, 1);
  char *key = json_dumps(teekey, JSON_COMPACT);
  if (!key) return NULL;
  size_t cap = strlen(nonce) + strlen(key) + 256 + 4 * (64 + 72 + 72);
  for (int i = 0; i < 4; i++) cap += c->seg_len[i];
  char *out = malloc(cap);
  if (out) {
    char *w = out + sprintf(out, "{\"runtime-data\":{\"nonce\":\"%s\",\"tee-pubkey\":%s},\"tee-evidence\":"
                                 "{\"primary_evidence\":", nonce, key);
    for (int i = 0; i < 3; i++) {
      memcpy(w, c->seg[i], c->seg_len[i]);
      w = loadgen_snp__bytes(w + c->seg_len[i], raw + c->field_off[i], c->field_len[i]);
    }
    memcpy(w, c->seg[3], c->seg_len[3]);
    w += c->seg_len[3];
    w += sprintf(w, ",\"additional_evidence\":\"\"}}");
  }
  free(key);
  return out;
}
