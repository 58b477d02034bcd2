/*
 * The `snp` verifier (Trustee deps/verifier/src/snp): bare-metal AMD SEV-SNP.
 *
 * Evidence: {"attestation_report": <serde form of the sev crate's AttestationReport, or a
 * standard base64 string of the raw 1184 bytes>, "cert_chain": [{"cert_type": "VCEK"|"VLEK"|
 * "ASK"|"ARK", "data": [DER bytes]}] | null}.
 *
 * Checks, in Trustee's order: report version 3-5 (as upstream: a version 2 report does not name
 * its processor generation) and processor generation; the VEK (from the cert_chain, else - only
 * when cert_chain is absent or null - the offline store, else AMD KDS) chains to the pinned ARK
 * of that generation, and an ASK or ARK the cert_chain carries must verify too;
 * its hwID and SPL extensions equal CHIP_ID and REPORTED_TCB; the report signature; VMPL 0;
 * REPORT_DATA = expected report data zero-padded/truncated to 64 bytes; HOST_DATA = init-data
 * digest regularised to 32 bytes. Claims as Trustee's parse_tee_evidence: numbers and booleans,
 * byte fields as lower-case hex.
 */
#include <stdlib.h>
#include <string.h>

#include "as_verifier.h"
#include "ct_codec.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "snp.h"

#define SNP_CHAIN_MAX 8
#define SNP_BARE_METAL_MIN_VERSION 3

static CT_RESULT snp_v__create(const as_verifier_config *cfg, void **state, ct_err *err) {
  snp_ctx *c = NULL;
  CT_GUARD(snp_ctx_new(cfg, &c, err));
  *state = c;
  return CT_OK;
}

static void snp_v__destroy(void *state) { snp_ctx_free(state); }

typedef struct snp_v__chain {
  bool present; /* cert_chain is an array (even an empty one): the VEK must come from it */
  uint8_t *vek;
  size_t vek_len;
  snp_vek_type vek_type;
  snp_der extra[SNP_CHAIN_MAX];
  bool extra_is_ark[SNP_CHAIN_MAX];
  uint8_t *extra_buf[SNP_CHAIN_MAX];
  size_t n_extra;
} snp_v__chain;

static void snp_v__chain_free(snp_v__chain *c) {
  free(c->vek);
  for (size_t i = 0; i < c->n_extra; i++) free(c->extra_buf[i]);
}

static CT_RESULT snp_v__der_array(const json_t *a, size_t idx, uint8_t **out, size_t *len,
                                  ct_err *err) {
  CT_ENSURE(json_is_array(a) && json_array_size(a) > 0 && json_array_size(a) <= (16u << 10), err,
            CT_EINVAL, "snp cert_chain[%zu].data must be a non-empty array of bytes (at most 16 KiB)",
            idx);
  size_t n = json_array_size(a);
  uint8_t *b = malloc(n);
  CT_ENSURE(b, err, CT_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(a, i);
    if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > 255) {
      free(b);
      return ct_fail(err, CT_EINVAL, "snp cert_chain[%zu].data[%zu] is not a byte value", idx, i);
    }
    b[i] = (uint8_t)json_integer_value(e);
  }
  *out = b;
  *len = n;
  return CT_OK;
}

/* Picks the first VCEK or VLEK (as Trustee does) and keeps ASK/ARK entries as candidates. */
static CT_RESULT snp_v__parse_chain(const json_t *chain, snp_v__chain *out, ct_err *err) {
  memset(out, 0, sizeof *out);
  if (!chain || json_is_null(chain)) return CT_OK;
  CT_ENSURE(json_is_array(chain) && json_array_size(chain) <= SNP_CHAIN_MAX, err, CT_EINVAL,
            "snp evidence: cert_chain must be null or an array of at most %d entries",
            SNP_CHAIN_MAX);
  out->present = true;
  for (size_t i = 0; i < json_array_size(chain); i++) {
    json_t *e = json_array_get(chain, i);
    CT_ENSURE(json_is_object(e), err, CT_EINVAL, "snp cert_chain[%zu] must be an object", i);
    json_t *t = json_object_get(e, "cert_type");
    const char *type = json_is_string(t) ? json_string_value(t) : "";
    bool vcek = strcmp(type, "VCEK") == 0, vlek = strcmp(type, "VLEK") == 0;
    bool ca = strcmp(type, "ASK") == 0 || strcmp(type, "ARK") == 0;
    if ((!vcek && !vlek && !ca) || ((vcek || vlek) && out->vek)) continue;
    uint8_t *der = NULL;
    size_t len = 0;
    CT_GUARD(snp_v__der_array(json_object_get(e, "data"), i, &der, &len, err));
    if (vcek || vlek) {
      out->vek = der, out->vek_len = len;
      out->vek_type = vcek ? SNP_VEK_VCEK : SNP_VEK_VLEK;
    } else {
      out->extra_buf[out->n_extra] = der;
      out->extra_is_ark[out->n_extra] = strcmp(type, "ARK") == 0;
      out->extra[out->n_extra].der = der;
      out->extra[out->n_extra].len = len;
      out->n_extra++;
    }
  }
  return CT_OK;
}

static json_t *snp_v__hex(const uint8_t *p, size_t n) {
  char buf[129];
  ct_hex_into(p, n, buf);
  return json_string(buf);
}

/* Trustee's parse_tee_evidence for snp. */
static CT_RESULT snp_v__claims(const snp_report *r, json_t **out, ct_err *err) {
  const uint8_t *raw = r->raw;
  json_t *c = json_pack(
      "{s:i, s:i, s:b, s:b, s:b, s:b, s:i, s:i, s:i, s:i, s:b, s:b, s:o, s:o, s:o, s:o}",
      "policy_abi_major", (int)snp_policy_abi_major(r->policy), "policy_abi_minor",
      (int)snp_policy_abi_minor(r->policy), "policy_smt_allowed", (int)snp_policy_smt(r->policy),
      "policy_migrate_ma", (int)snp_policy_migrate_ma(r->policy), "policy_debug_allowed",
      (int)snp_policy_debug(r->policy), "policy_single_socket",
      (int)snp_policy_single_socket(r->policy), "reported_tcb_bootloader",
      (int)r->reported_tcb.bootloader, "reported_tcb_tee", (int)r->reported_tcb.tee,
      "reported_tcb_snp", (int)r->reported_tcb.snp, "reported_tcb_microcode",
      (int)r->reported_tcb.microcode, "platform_tsme_enabled",
      (int)snp_plat_tsme_enabled(r->plat_info), "platform_smt_enabled",
      (int)snp_plat_smt_enabled(r->plat_info), "measurement",
      snp_v__hex(raw + SNP_OFF_MEASUREMENT, 48), "report_data",
      snp_v__hex(raw + SNP_OFF_REPORT_DATA, 64), "init_data", snp_v__hex(raw + SNP_OFF_HOST_DATA, 32),
      "chip_id", snp_v__hex(raw + SNP_OFF_CHIP_ID, 64));
  CT_ENSURE(c, err, CT_ENOMEM, "out of memory building snp claims");
  *out = c;
  return CT_OK;
}

static CT_RESULT snp_v__mismatch(const char *what, const uint8_t *want, const uint8_t *got,
                                 size_t n, ct_err *err) {
  char w[129], g[129];
  ct_hex_into(want, n, w);
  ct_hex_into(got, n, g);
  return ct_fail(err, CT_ECRYPTO, "snp report: %s mismatch: expected %s, found %s", what, w, g);
}

static CT_RESULT snp_v__verify(void *state, const as_verify_request *req, json_t **claims,
                               ct_err *err) {
  snp_ctx *ctx = state;
  CT_ENSURE(ctx, err, CT_EINTERNAL, "snp verifier used without create()");
  CT_ENSURE(json_is_object(req->evidence), err, CT_EINVAL, "snp evidence must be a JSON object");
  snp_report *r = malloc(sizeof *r);
  CT_ENSURE(r, err, CT_ENOMEM, "out of memory");
  snp_v__chain chain;
  memset(&chain, 0, sizeof chain);
  uint8_t *fetched = NULL;
  EVP_PKEY *pkey = NULL;
  ct_status st = CT_OK;
  json_t *jr = json_object_get(req->evidence, "attestation_report");
  CT_ENSURE_GOTO(st, jr, out, err, CT_EINVAL, "snp evidence: attestation_report is missing");
  CT_GUARD_GOTO(st, snp_report_from_json(jr, r, err), out);
  CT_GUARD_GOTO(st, snp_v__parse_chain(json_object_get(req->evidence, "cert_chain"), &chain, err), out);

  CT_ENSURE_GOTO(st, r->version >= SNP_BARE_METAL_MIN_VERSION, out, err, CT_EUNSUPPORTED,
                 "snp report: version %u is too old: version %d or later is required (it names the "
                 "processor generation); update the SEV-SNP firmware", r->version,
                 SNP_BARE_METAL_MIN_VERSION);
  snp_vek_info info;
  if (chain.present) {
    /* As upstream: a supplied chain is the VEK's only source, and what it carries must verify. */
    CT_ENSURE_GOTO(st, chain.vek, out, err, CT_EINVAL,
                   "snp cert_chain: a cert chain, if provided, must include a VCEK or VLEK");
    /* ARKs first, as upstream checks them while reading the chain and the ASK only after. */
    for (int pass = 1; pass >= 0; pass--)
      for (size_t i = 0; i < chain.n_extra; i++)
        if (chain.extra_is_ark[i] == (pass == 1))
          CT_GUARD_GOTO(st, snp_vek_check_supplied_ca(ctx, r->gen, chain.vek, chain.vek_len,
                                                      &chain.extra[i], chain.extra_is_ark[i], err), out);
    CT_GUARD_GOTO(st, snp_vek_verify(ctx, chain.vek, chain.vek_len, r->gen, chain.vek_type,
                                     chain.extra, chain.n_extra, &pkey, &info, err), out);
  } else {
    size_t len = 0;
    CT_GUARD_GOTO(st, snp_vcek_find(ctx, r, r->gen, &fetched, &len, err), out);
    CT_GUARD_GOTO(st, snp_vek_verify(ctx, fetched, len, r->gen, SNP_VEK_ANY, NULL, 0, &pkey, &info, err),
                  out);
  }
  CT_GUARD_GOTO(st, snp_report_verify_signature(r, &info, pkey, err), out);
  CT_ENSURE_GOTO(st, r->vmpl == 0, out, err, CT_EDENIED,
                 "snp report: VMPL check failed: expected 0, found %u", r->vmpl);
  if (req->report_data) {
    uint8_t want[64];
    snp_regularize(req->report_data, req->report_data_len, want, 64);
    if (!ct_memeq(want, 64, r->raw + SNP_OFF_REPORT_DATA, 64)) {
      st = snp_v__mismatch("REPORT_DATA", want, r->raw + SNP_OFF_REPORT_DATA, 64, err);
      goto out;
    }
  }
  if (req->init_data_digest) {
    uint8_t want[32];
    snp_regularize(req->init_data_digest, req->init_data_digest_len, want, 32);
    if (!ct_memeq(want, 32, r->raw + SNP_OFF_HOST_DATA, 32)) {
      st = snp_v__mismatch("HOST_DATA (init-data digest)", want, r->raw + SNP_OFF_HOST_DATA, 32, err);
      goto out;
    }
  }
  st = snp_v__claims(r, claims, err);
out:
  EVP_PKEY_free(pkey);
  free(fetched);
  snp_v__chain_free(&chain);
  free(r);
  return st;
}

const as_verifier as_verifier_snp = {
    .tee = "snp",
    .tee_class = "cpu",
    .create = snp_v__create,
    .destroy = snp_v__destroy,
    .verify = snp_v__verify,
};
