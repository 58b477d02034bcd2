/*
 * The offline `kbs verify` command (see verify_cli.h).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "as_verifier.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_file.h"
#include "ct_json.h"
#include "initdata.h"
#include "snp.h"
#include "verify_cli.h"

#define CLI_EVIDENCE_MAX (16u << 20)
#define CLI_RUNTIME_MAX (1u << 20)

static const char cli__usage[] =
    "usage: verify --tee TEE --evidence FILE (--report-data HEX | --runtime-data FILE.json)\n"
    "              [--init-data FILE.toml] [--collateral DIR]\n";

typedef struct cli__opts {
  const char *tee, *evidence, *report_data, *runtime_data, *init_data, *collateral;
} cli__opts;

static int cli__parse(int argc, char **argv, cli__opts *o, FILE *errf) {
  memset(o, 0, sizeof *o);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(cli__usage, errf);
      return 2;
    }
    if (strcmp(a, "--tee") == 0) slot = &o->tee;
    else if (strcmp(a, "--evidence") == 0) slot = &o->evidence;
    else if (strcmp(a, "--report-data") == 0) slot = &o->report_data;
    else if (strcmp(a, "--runtime-data") == 0) slot = &o->runtime_data;
    else if (strcmp(a, "--init-data") == 0) slot = &o->init_data;
    else if (strcmp(a, "--collateral") == 0) slot = &o->collateral;
    if (!slot) {
      fprintf(errf, "verify: unknown argument \"%s\"\n%s", a, cli__usage);
      return 2;
    }
    if (i + 1 >= argc) {
      fprintf(errf, "verify: %s needs a value\n", a);
      return 2;
    }
    if (*slot) {
      fprintf(errf, "verify: %s given twice\n", a);
      return 2;
    }
    *slot = argv[++i];
  }
  if (!o->tee || !o->evidence) {
    fprintf(errf, "verify: --tee and --evidence are required\n%s", cli__usage);
    return 2;
  }
  if (!o->report_data == !o->runtime_data) {
    fprintf(errf, "verify: give exactly one of --report-data and --runtime-data\n%s", cli__usage);
    return 2;
  }
  return 0;
}

/* A top-level vcek.der / vlek.der in the collateral directory becomes the snp cert_chain when the
 * evidence has none (absent or null); a chain the evidence carries, even an empty one, is
 * verified as it is, as the KBS would. */
static CT_RESULT cli__snp_chain(json_t *ev, const char *dir, ct_err *err) {
  json_t *cc = json_object_get(ev, "cert_chain");
  if (!dir || (cc && !json_is_null(cc))) return CT_OK;
  static const char *names[][2] = {{"vcek.der", "VCEK"}, {"vlek.der", "VLEK"}};
  for (int i = 0; i < 2; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, names[i][0]);
    struct stat sb;
    if (stat(path, &sb) != 0) continue;
    uint8_t *der = NULL;
    size_t n = 0;
    CT_GUARD(ct_file_read(path, 64u << 10, &der, &n, err));
    json_t *data = json_array();
    for (size_t k = 0; data && k < n; k++) json_array_append_new(data, json_integer(der[k]));
    free(der);
    json_t *entry = json_pack("[{s:s, s:o}]", "cert_type", names[i][1], "data", data);
    CT_ENSURE(entry, err, CT_ENOMEM, "out of memory");
    return ct_json_set_new(ev, "cert_chain", entry, err);
  }
  return CT_OK;
}

static CT_RESULT cli__load_evidence(const cli__opts *o, json_t **out, ct_err *err) {
  uint8_t *b = NULL;
  size_t n = 0;
  if (ct_file_read(o->evidence, CLI_EVIDENCE_MAX, &b, &n, err) != CT_OK)
    return ct_err_prefix(err, "reading --evidence: ");
  ct_err jerr;
  json_t *ev = NULL;
  ct_status st = ct_json_parse((const char *)b, n, CT_JSON_DEFAULT_MAX_DEPTH, &ev, &jerr);
  if (st != CT_OK && strcmp(o->tee, "snp") == 0 && n == SNP_REPORT_SIZE) {
    /* A raw SNP report. */
    char *b64 = NULL;
    st = ct_b64_encode(CT_B64_STD, b, n, &b64, err);
    if (st == CT_OK) {
      ev = json_pack("{s:s, s:n}", "attestation_report", b64, "cert_chain");
      if (!ev) st = ct_fail(err, CT_ENOMEM, "out of memory");
    }
    free(b64);
  } else if (st != CT_OK) {
    st = ct_fail(err, CT_EINVAL, "--evidence %s is not JSON: %s", o->evidence, jerr.msg);
  }
  free(b);
  if (st == CT_OK && strcmp(o->tee, "snp") == 0) st = cli__snp_chain(ev, o->collateral, err);
  if (st != CT_OK) {
    json_decref(ev);
    return st;
  }
  *out = ev;
  return CT_OK;
}

static CT_RESULT cli__report_data(const cli__opts *o, uint8_t **rd, size_t *len, ct_err *err) {
  if (o->report_data) {
    const char *h = o->report_data;
    if (strncmp(h, "0x", 2) == 0) h += 2;
    if (ct_hex_decode(h, strlen(h), rd, len, err) != CT_OK)
      return ct_err_prefix(err, "--report-data: ");
    return CT_OK;
  }
  uint8_t *b = NULL;
  size_t n = 0;
  if (ct_file_read(o->runtime_data, CLI_RUNTIME_MAX, &b, &n, err) != CT_OK)
    return ct_err_prefix(err, "reading --runtime-data: ");
  json_t *j = NULL;
  ct_status st = ct_json_parse((const char *)b, n, CT_JSON_DEFAULT_MAX_DEPTH, &j, err);
  free(b);
  if (st != CT_OK) return ct_err_prefix(err, "--runtime-data: ");
  char *canon = NULL;
  size_t cl = 0;
  st = ct_jcs_string(j, &canon, &cl, err);
  json_decref(j);
  if (st != CT_OK) return st;
  *rd = malloc(48);
  if (*rd) ct_sha384(canon, cl, *rd);
  free(canon);
  CT_ENSURE(*rd, err, CT_ENOMEM, "out of memory");
  *len = 48;
  return CT_OK;
}

static CT_RESULT cli__init_data(const cli__opts *o, uint8_t *digest, size_t *len, ct_err *err) {
  uint8_t *b = NULL;
  size_t n = 0;
  if (ct_file_read(o->init_data, INITDATA_MAX_SIZE, &b, &n, err) != CT_OK)
    return ct_err_prefix(err, "reading --init-data: ");
  initdata *d = NULL;
  ct_status st = initdata_parse((const char *)b, n, &d, err);
  free(b);
  if (st != CT_OK) return ct_err_prefix(err, "--init-data: ");
  memcpy(digest, d->digest, d->digest_len);
  *len = d->digest_len;
  initdata_free(d);
  return CT_OK;
}

int as_verify_cli_run(int argc, char **argv, FILE *out, FILE *errf) {
  cli__opts o;
  int rc = cli__parse(argc, argv, &o, errf);
  if (rc) return rc;
  const as_verifier *v = as_verifier_find(o.tee);
  if (!v) {
    size_t n = 0;
    const as_verifier *const *all = as_verifier_all(&n);
    fprintf(errf, "verify: no verifier for TEE \"%s\"; built in:", o.tee);
    for (size_t i = 0; i < n; i++) fprintf(errf, " %s", all[i]->tee);
    fputc('\n', errf);
    return 2;
  }
  ct_err err;
  json_t *ev = NULL, *claims = NULL;
  uint8_t *rd = NULL, id[CT_DIGEST_MAX];
  size_t rd_len = 0, id_len = 0;
  void *state = NULL;
  rc = 2;
  if (cli__load_evidence(&o, &ev, &err) != CT_OK || cli__report_data(&o, &rd, &rd_len, &err) != CT_OK ||
      (o.init_data && cli__init_data(&o, id, &id_len, &err) != CT_OK)) {
    fprintf(errf, "verify: %s\n", err.msg);
    goto out;
  }
  as_verifier_config cfg = {.snp_vcek_offline_dir = o.collateral,
                            .tdx_collateral_dir = o.collateral,
                            .tpm_trusted_ak_keys_dir = o.collateral};
  if (v->create && v->create(&cfg, &state, &err) != CT_OK) {
    fprintf(errf, "verify: %s verifier: %s\n", o.tee, err.msg);
    goto out;
  }
  as_verify_request req = {.tee = o.tee, .evidence = ev, .report_data = rd,
                           .report_data_len = rd_len,
                           .init_data_digest = o.init_data ? id : NULL,
                           .init_data_digest_len = id_len};
  if (v->verify(state, &req, &claims, &err) != CT_OK) {
    fprintf(errf, "verify: refused (%s): %s\n", ct_status_name(err.code), err.msg);
    rc = 1;
    goto out;
  }
  char *s = json_dumps(claims, JSON_INDENT(2) | JSON_SORT_KEYS);
  if (!s) {
    fprintf(errf, "verify: out of memory\n");
    goto out;
  }
  fprintf(out, "%s\n", s);
  free(s);
  rc = 0;
out:
  if (state && v->destroy) v->destroy(state);
  json_decref(claims);
  json_decref(ev);
  free(rd);
  return rc;
}

int as_verify_cli_main(int argc, char **argv) {
  return as_verify_cli_run(argc, argv, stdout, stderr);
}
