/*
 * The `az-snp-vtpm` verifier (Trustee deps/verifier/src/az_snp_vtpm): an Azure confidential VM
 * where SEV-SNP sits behind a paravisor that exposes a vTPM (e.g. Standard_DCas_v5).
 *
 * Evidence v1/v2: {"version":1|2, "tpm_quote":{"signature":<hex>, "message":<hex TPMS_ATTEST>,
 * "pcrs":[<hex>...]}, "hcl_report":<base64url>, "vcek":<base64url DER>}; legacy v0:
 * {"quote":{"signature":[..],"message":[..],"pcrs":[[32 bytes]..]}, "report":[..], "vcek":<PEM>}.
 *
 * Checks, in Trustee's order: the quote is signed (RSASSA-SHA256) by the AK found in the HCL
 * variable data; its extraData equals the expected report data exactly; SHA-256 of the PCR
 * values equals its pcrDigest; SHA-256(variable data) equals the SNP REPORT_DATA[0..32]; (v2)
 * the variable data's user-data starts with the report data; the VCEK chains to AMD's roots and
 * matches the SNP report, whose signature verifies; VMPL 0; PCR8 = SHA-256(32 zero bytes ||
 * init-data digest). Claims are strings, as Trustee formats them.
 */
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_verifier.h"
#include "az_hcl.h"
#include "az_vtpm.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "snp.h"
#include "tpm_quote.h"

#define AZ_HCL_MAX (256u << 10)

typedef struct az__ev {
  int version;
  uint8_t *hcl, *msg, *sig, *vcek;
  size_t hcl_len, msg_len, sig_len, vcek_len;
  uint8_t (*pcrs)[32];
  size_t n_pcrs;
} az__ev;

static void az__ev_free(az__ev *e) {
  free(e->hcl);
  free(e->msg);
  free(e->sig);
  free(e->vcek);
  free(e->pcrs);
}

/* What the HCL variable data yields, cached by its SHA-256 (the AK of a VM is the same for every
 * quote, and building the key and parsing the JSON each time is a tenth of a verification). */
#define AZ_AK_SLOTS 32
typedef struct az__ak_entry {
  bool used;
  uint8_t hash[32];
  EVP_PKEY *ak;
  uint8_t *user;
  size_t user_len;
  bool has_user;
  uint64_t last_use;
} az__ak_entry;

typedef struct az__state {
  snp_ctx *snp;
  pthread_mutex_t lock;
  az__ak_entry ak[AZ_AK_SLOTS];
  uint64_t clock;
} az__state;

static CT_RESULT az__create(const as_verifier_config *cfg, void **state, ct_err *err) {
  az__state *s = calloc(1, sizeof *s);
  CT_ENSURE(s, err, CT_ENOMEM, "out of memory");
  ct_status st = snp_ctx_new(cfg, &s->snp, err);
  if (st != CT_OK) {
    free(s);
    return st;
  }
  pthread_mutex_init(&s->lock, NULL);
  *state = s;
  return CT_OK;
}

static void az__destroy(void *state) {
  az__state *s = state;
  if (!s) return;
  for (int i = 0; i < AZ_AK_SLOTS; i++) {
    EVP_PKEY_free(s->ak[i].ak);
    free(s->ak[i].user);
  }
  pthread_mutex_destroy(&s->lock);
  snp_ctx_free(s->snp);
  free(s);
}

/* The AK (new reference) and the decoded user-data (malloc'd copy, NULL if absent) of the
 * variable data, from the cache or by parsing it. */
static CT_RESULT az__var_data(az__state *s, const az_hcl_report *h, EVP_PKEY **ak, uint8_t **user,
                              size_t *user_len, ct_err *err) {
  *ak = NULL, *user = NULL, *user_len = 0;
  pthread_mutex_lock(&s->lock);
  for (int i = 0; i < AZ_AK_SLOTS; i++) {
    az__ak_entry *e = &s->ak[i];
    if (!e->used || memcmp(e->hash, h->var_data_sha256, 32) != 0) continue;
    e->last_use = ++s->clock;
    EVP_PKEY_up_ref(e->ak);
    *ak = e->ak;
    if (e->has_user && (*user = malloc(e->user_len ? e->user_len : 1)) != NULL) {
      memcpy(*user, e->user, e->user_len);
      *user_len = e->user_len;
    }
    bool oom = e->has_user && !*user;
    pthread_mutex_unlock(&s->lock);
    if (oom) {
      EVP_PKEY_free(*ak);
      *ak = NULL;
      return ct_fail(err, CT_ENOMEM, "out of memory");
    }
    return CT_OK;
  }
  pthread_mutex_unlock(&s->lock);

  json_t *var = NULL;
  ct_status st = az_hcl_var_data_json(h, &var, err);
  if (st == CT_OK) st = az_hcl_ak_pub(var, ak, err);
  if (st != CT_OK) {
    json_decref(var);
    return ct_err_prefix(err, "az-snp-vtpm: AK public key unreadable: ");
  }
  ct_err uerr;
  if (json_object_get(var, "user-data") &&
      az_hcl_user_data(var, user, user_len, &uerr) != CT_OK) {
    *user = NULL, *user_len = 0;
  }
  json_decref(var);
  /* Cache a copy. */
  uint8_t *ucopy = NULL;
  if (*user && (ucopy = malloc(*user_len ? *user_len : 1)) == NULL) return CT_OK;
  if (ucopy) memcpy(ucopy, *user, *user_len);
  pthread_mutex_lock(&s->lock);
  int slot = 0;
  for (int i = 0; i < AZ_AK_SLOTS; i++) {
    if (!s->ak[i].used) { slot = i; break; }
    if (s->ak[i].last_use < s->ak[slot].last_use) slot = i;
  }
  az__ak_entry *e = &s->ak[slot];
  EVP_PKEY_free(e->ak);
  free(e->user);
  e->used = true;
  memcpy(e->hash, h->var_data_sha256, 32);
  EVP_PKEY_up_ref(*ak);
  e->ak = *ak;
  e->user = ucopy;
  e->user_len = *user_len;
  e->has_user = ucopy != NULL;
  e->last_use = ++s->clock;
  pthread_mutex_unlock(&s->lock);
  return CT_OK;
}

/* A JSON array of byte values (the v0 serde form). */
static CT_RESULT az__int_bytes(const json_t *a, const char *what, size_t max, uint8_t **out,
                               size_t *len, ct_err *err) {
  CT_ENSURE(json_is_array(a) && json_array_size(a) <= max, err, CT_EINVAL,
            "az-snp-vtpm evidence: %s must be an array of at most %zu bytes", what, max);
  size_t n = json_array_size(a);
  uint8_t *b = malloc(n ? n : 1);
  CT_ENSURE(b, err, CT_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(a, i);
    if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > 255) {
      free(b);
      return ct_fail(err, CT_EINVAL, "az-snp-vtpm evidence: %s[%zu] is not a byte value", what, i);
    }
    b[i] = (uint8_t)json_integer_value(e);
  }
  *out = b;
  *len = n;
  return CT_OK;
}

static CT_RESULT az__pcrs(const json_t *a, bool hex, az__ev *e, ct_err *err) {
  CT_ENSURE(json_is_array(a) && json_array_size(a) <= TPM_PCRS_MAX, err, CT_EINVAL,
            "az-snp-vtpm evidence: pcrs must be an array of at most %d values", TPM_PCRS_MAX);
  e->n_pcrs = json_array_size(a);
  e->pcrs = calloc(e->n_pcrs ? e->n_pcrs : 1, 32);
  CT_ENSURE(e->pcrs, err, CT_ENOMEM, "out of memory");
  for (size_t i = 0; i < e->n_pcrs; i++) {
    uint8_t *b = NULL;
    size_t n = 0;
    json_t *v = json_array_get(a, i);
    if (hex) {
      CT_ENSURE(json_is_string(v), err, CT_EINVAL, "az-snp-vtpm evidence: pcrs[%zu] is not hex", i);
      if (ct_hex_decode(json_string_value(v), json_string_length(v), &b, &n, err) != CT_OK)
        return ct_err_prefix(err, "az-snp-vtpm evidence: pcrs[%zu]: ", i);
    } else {
      CT_GUARD(az__int_bytes(v, "pcr", 32, &b, &n, err));
    }
    bool ok = n == 32;
    if (ok) memcpy(e->pcrs[i], b, 32);
    free(b);
    CT_ENSURE(ok, err, CT_EINVAL, "az-snp-vtpm evidence: pcrs[%zu] is %zu bytes, expected 32 "
                                  "(SHA-256)", i, n);
  }
  return CT_OK;
}

static CT_RESULT az__b64_member(const json_t *o, const char *k, uint8_t **out, size_t *len,
                                ct_err *err) {
  json_t *v = json_object_get(o, k);
  CT_ENSURE(json_is_string(v) && json_string_length(v) <= AZ_HCL_MAX * 2, err, CT_EINVAL,
            "az-snp-vtpm evidence: %s must be a base64url string", k);
  if (ct_b64_decode(CT_B64_ANY, json_string_value(v), json_string_length(v), out, len, err) != CT_OK)
    return ct_err_prefix(err, "az-snp-vtpm evidence: %s: ", k);
  return CT_OK;
}

static CT_RESULT az__parse_evidence(const json_t *ev, az__ev *e, ct_err *err) {
  memset(e, 0, sizeof *e);
  CT_ENSURE(json_is_object(ev), err, CT_EINVAL, "az-snp-vtpm evidence must be a JSON object");
  json_t *ver = json_object_get(ev, "version");
  if (!ver) {
    /* v0: serde form of the az-snp-vtpm crate's Quote, the HCL report as bytes, a PEM VCEK. */
    json_t *q = json_object_get(ev, "quote");
    CT_ENSURE(json_is_object(q), err, CT_EINVAL,
              "az-snp-vtpm evidence: neither \"version\" (v1/v2) nor \"quote\" (v0) is present");
    e->version = 0;
    CT_GUARD(az__int_bytes(json_object_get(q, "signature"), "quote.signature", 1024, &e->sig, &e->sig_len, err));
    CT_GUARD(az__int_bytes(json_object_get(q, "message"), "quote.message", 4096, &e->msg, &e->msg_len, err));
    CT_GUARD(az__pcrs(json_object_get(q, "pcrs"), false, e, err));
    CT_GUARD(az__int_bytes(json_object_get(ev, "report"), "report", AZ_HCL_MAX, &e->hcl, &e->hcl_len, err));
    json_t *pem = json_object_get(ev, "vcek");
    CT_ENSURE(json_is_string(pem), err, CT_EINVAL, "az-snp-vtpm evidence: vcek must be PEM text");
    BIO *bio = BIO_new_mem_buf(json_string_value(pem), (int)json_string_length(pem));
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    CT_ENSURE(x, err, CT_EINVAL, "az-snp-vtpm evidence: vcek is not a PEM certificate");
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    X509_free(x);
    CT_ENSURE(n > 0, err, CT_EINVAL, "az-snp-vtpm evidence: vcek does not encode");
    e->vcek = malloc((size_t)n);
    if (e->vcek) memcpy(e->vcek, der, (size_t)n);
    OPENSSL_free(der);
    CT_ENSURE(e->vcek, err, CT_ENOMEM, "out of memory");
    e->vcek_len = (size_t)n;
    return CT_OK;
  }
  CT_ENSURE(json_is_integer(ver) && (json_integer_value(ver) == 1 || json_integer_value(ver) == 2),
            err, CT_EUNSUPPORTED, "az-snp-vtpm evidence: version must be 1 or 2");
  e->version = (int)json_integer_value(ver);
  json_t *q = json_object_get(ev, "tpm_quote");
  CT_ENSURE(json_is_object(q), err, CT_EINVAL, "az-snp-vtpm evidence: tpm_quote is missing");
  CT_GUARD(az_vtpm_hex_member("az-snp-vtpm", q, "signature", 1024, &e->sig, &e->sig_len, err));
  CT_GUARD(az_vtpm_hex_member("az-snp-vtpm", q, "message", 4096, &e->msg, &e->msg_len, err));
  CT_GUARD(az__pcrs(json_object_get(q, "pcrs"), true, e, err));
  CT_GUARD(az__b64_member(ev, "hcl_report", &e->hcl, &e->hcl_len, err));
  CT_GUARD(az__b64_member(ev, "vcek", &e->vcek, &e->vcek_len, err));
  return CT_OK;
}

static json_t *az__fmt(unsigned v) {
  char b[16];
  snprintf(b, sizeof b, "%u", v);
  return json_string(b);
}

static json_t *az__bool(bool b) { return json_string(b ? "true" : "false"); }

/* Trustee's parse_tee_evidence_az plus extend_claim: everything rendered as strings. */
static CT_RESULT az__claims(const snp_report *r, const az__ev *e, const tpm_attest *a,
                            const unsigned *pcr_no, json_t **out, ct_err *err) {
  char *meas = NULL, *host = NULL;
  CT_GUARD(ct_b64_encode(CT_B64_STD, r->raw + SNP_OFF_MEASUREMENT, 48, &meas, err));
  ct_status st = ct_b64_encode(CT_B64_STD, r->raw + SNP_OFF_HOST_DATA, 32, &host, err);
  if (st != CT_OK) {
    free(meas);
    return st;
  }
  json_t *c = json_pack(
      "{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:s}",
      "policy_abi_major", az__fmt(snp_policy_abi_major(r->policy)), "policy_abi_minor",
      az__fmt(snp_policy_abi_minor(r->policy)), "policy_smt_allowed",
      az__bool(snp_policy_smt(r->policy)), "policy_migrate_ma",
      az__bool(snp_policy_migrate_ma(r->policy)), "policy_debug_allowed",
      az__bool(snp_policy_debug(r->policy)), "policy_single_socket",
      az__bool(snp_policy_single_socket(r->policy)), "reported_tcb_bootloader",
      az__fmt(r->reported_tcb.bootloader), "reported_tcb_tee",
      az__fmt(r->reported_tcb.tee), "reported_tcb_snp", az__fmt(r->reported_tcb.snp),
      "reported_tcb_microcode", az__fmt(r->reported_tcb.microcode),
      "platform_tsme_enabled", az__bool(snp_plat_tsme_enabled(r->plat_info)),
      "platform_smt_enabled", az__bool(snp_plat_smt_enabled(r->plat_info)), "measurement", meas,
      "init_data", host);
  free(meas);
  free(host);
  CT_ENSURE(c, err, CT_ENOMEM, "out of memory building az-snp-vtpm claims");
  ct_status cst = az_vtpm_claims(c, (const uint8_t(*)[32])e->pcrs, pcr_no, e->n_pcrs, a, err);
  if (cst != CT_OK) {
    json_decref(c);
    return cst;
  }
  *out = c;
  return CT_OK;
}

static CT_RESULT az__verify(void *state, const as_verify_request *req, json_t **claims,
                            ct_err *err) {
  az__state *s = state;
  CT_ENSURE(s, err, CT_EINTERNAL, "az-snp-vtpm verifier used without create()");
  snp_ctx *ctx = s->snp;
  CT_ENSURE(req->report_data, err, CT_EINVAL,
            "az-snp-vtpm: expected report data is required (the TPM quote nonce)");
  az__ev e;
  EVP_PKEY *ak = NULL, *vek = NULL;
  uint8_t *user = NULL;
  size_t user_len = 0;
  snp_report *r = malloc(sizeof *r);
  CT_ENSURE(r, err, CT_ENOMEM, "out of memory");
  ct_status st = az__parse_evidence(req->evidence, &e, err);
  if (st != CT_OK) goto out;

  az_hcl_report h;
  tpm_attest a;
  unsigned pcr_no[TPM_PCRS_MAX];
  CT_GUARD_GOTO(st, az_hcl_parse(e.hcl, e.hcl_len, &h, err), out);
  CT_ENSURE_GOTO(st, h.report_type == AZ_HCL_REPORT_TYPE_SNP, out, err, CT_EINVAL,
                 "az-snp-vtpm: HCL report carries a TDX report, not SNP");
  /* 1. The quote is signed by the vTPM AK published in the HCL variable data. */
  CT_GUARD_GOTO(st, az__var_data(s, &h, &ak, &user, &user_len, err), out);
  CT_GUARD_GOTO(st, tpm_quote_verify_rsassa_sha256(ak, e.msg, e.msg_len, e.sig, e.sig_len, err), out);
  CT_GUARD_GOTO(st, tpm_attest_parse(e.msg, e.msg_len, &a, err), out);
  /* v2 also carries the report data in the variable data's user-data (checked against the
   * SNP report in step 4, since the variable data is hashed into it). */
  if (e.version == 2) {
    CT_ENSURE_GOTO(st, user, out, err, CT_EINVAL,
                   "az-snp-vtpm: HCL variable data has no hex \"user-data\" (evidence v2)");
    CT_ENSURE_GOTO(st, user_len >= req->report_data_len &&
                           memcmp(user, req->report_data, req->report_data_len) == 0,
                   out, err, CT_ECRYPTO,
                   "az-snp-vtpm: HCL user-data does not start with the expected report data");
  }
  /* 2. The quote's nonce is this session's report data, byte for byte. */
  CT_GUARD_GOTO(st, az_vtpm_check_nonce("az-snp-vtpm", &a, req->report_data, req->report_data_len, err), out);
  /* 3. The PCR values are the quoted ones. */
  CT_GUARD_GOTO(st, tpm_quote_check_pcrs(&a, (const uint8_t(*)[32])e.pcrs, e.n_pcrs, pcr_no, err), out);
  /* 4. The variable data (hence the AK) is bound to the SNP report. */
  CT_GUARD_GOTO(st, snp_report_parse(h.hw_report, h.hw_report_len, r, err), out);
  if (memcmp(h.var_data_sha256, r->raw + SNP_OFF_REPORT_DATA, 32) != 0) {
    char want[65], got[65];
    ct_hex_into(h.var_data_sha256, 32, want);
    ct_hex_into(r->raw + SNP_OFF_REPORT_DATA, 32, got);
    st = ct_fail(err, CT_ECRYPTO, "az-snp-vtpm: SNP report report_data mismatch: SHA-256 of the "
                                  "HCL variable data is %s, REPORT_DATA[0..32] is %s", want, got);
    goto out;
  }
  /* 6. The SNP report is AMD's: VCEK chain, TCB and chip, signature. */
  snp_vek_info info;
  CT_GUARD_GOTO(st, snp_vek_verify(ctx, e.vcek, e.vcek_len, r->gen, SNP_VEK_VCEK, NULL, 0, &vek,
                                   &info, err), out);
  if (r->gen == SNP_GEN_UNKNOWN) snp_report_set_gen(r, info.gen);
  CT_GUARD_GOTO(st, snp_report_verify_signature(r, &info, vek, err), out);
  CT_ENSURE_GOTO(st, r->vmpl == 0, out, err, CT_EDENIED,
                 "az-snp-vtpm: VMPL of SNP report is %u, expected 0", r->vmpl);
  /* 7. init-data: PCR8 = SHA-256(32 zero bytes || digest). */
  CT_GUARD_GOTO(st, az_vtpm_check_init_data("az-snp-vtpm", (const uint8_t(*)[32])e.pcrs, pcr_no, e.n_pcrs,
                                            req->init_data_digest, req->init_data_digest_len, err), out);
  st = az__claims(r, &e, &a, pcr_no, claims, err);
out:
  free(user);
  EVP_PKEY_free(ak);
  EVP_PKEY_free(vek);
  az__ev_free(&e);
  free(r);
  return st;
}

const as_verifier as_verifier_az_snp_vtpm = {
    .tee = "az-snp-vtpm",
    .tee_class = "cpu",
    .create = az__create,
    .destroy = az__destroy,
    .verify = az__verify,
};
