/*
 * The tdx verifier (Trustee deps/verifier/src/tdx): evidence
 * {"cc_eventlog": <standard base64 CCEL> | null, "quote": <standard base64 DCAP quote v4/v5>}.
 *
 * Checks, in order: quote structure; PCK chain to the pinned Intel SGX Root CA (with CRLs when
 * the collateral has them); QE report signed by the PCK key; attestation key bound by the QE
 * report data; quote signed by the attestation key; TCB Info / QE Identity signatures and TCB
 * evaluation; report_data (padded to 64) and MRCONFIGID (init-data digest padded to 48); the
 * event log replayed against RTMR0-3. Claims are Trustee's parsed claims plus the DCAP
 * supplemental claims.
 */
#include <openssl/pem.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_json.h"
#include "as_fetch.h"
#include "ct_log.h"
#include "ct_mem.h"
#include "ct_reader.h"
#include "tdx.h"

#define TDX__CACHE_MAX 64
#define TDX__CACHE_TTL 3600 /* seconds a verified collateral set is reused */
#define TDX__INTEL_PCS "https://api.trustedservices.intel.com"

typedef struct tdx__cache_entry {
  uint8_t fmspc[6];
  bool platform_ca;
  time_t loaded;
  dcap_collateral *c;
} tdx__cache_entry;

/* A PCK chain already verified against the current collateral (quotes from one platform carry
 * byte-identical chains), so repeated quotes skip PEM decoding and the chain check. */
#define TDX__PCK_CACHE_MAX 256
typedef struct tdx__pck_entry {
  uint8_t hash[32];
  dcap_pck_info pck;
  STACK_OF(X509) *chain;
  const dcap_collateral *col;
  time_t verified;
} tdx__pck_entry;

struct tdx_state {
  char *collateral_dir, *pccs_url, *cache_dir;
  X509 *pck_root;        /* pinned Intel SGX Root CA */
  X509 *collateral_root; /* trust anchor of the TCB signing chains (the same, unless testing) */
  time_t fixed_now;
  pthread_mutex_t lock;
  tdx__cache_entry cache[TDX__CACHE_MAX];
  size_t ncache;
  dcap_collateral **retired; /* replaced entries, freed with the state (readers may hold them) */
  size_t nretired;
  tdx__pck_entry pcks[TDX__PCK_CACHE_MAX];
  size_t npcks;
  as_fetcher *pcs; /* PCS/PCCS requests run off the request threads (created on first use) */
  long remote_wait_ms;
};

/* ---- claims ----------------------------------------------------------------------------------- */

static CT_RESULT tdx__hex(json_t *obj, const char *key, const uint8_t *p, size_t n, ct_err *err) {
  char buf[2 * 648 + 1];
  ct_hex_into(p, n, buf);
  return ct_json_set_new(obj, key, json_string(buf), err);
}

CT_RESULT tdx_claims_build(const dcap_quote *q, const ccel_log *log, const dcap_pck_info *pck,
                           json_t **out, ct_err *err) {
  json_t *claims = json_object(), *quote = json_object(), *hdr = json_object(), *body = json_object();
  json_t *attrs = json_object();
  ct_status st = CT_OK;
  if (!claims || !quote || !hdr || !body || !attrs) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto fail;
  }
  const uint8_t *h = q->header, *b = q->body;
  uint8_t ver[2] = {(uint8_t)q->version, 0};
  struct {
    json_t *o;
    const char *k;
    const uint8_t *p;
    size_t n;
  } f[] = {
      {hdr, "version", ver, 2},
      {hdr, "att_key_type", h + 2, 2},
      {hdr, "tee_type", h + 4, 4},
      {hdr, "reserved", h + 8, 4},
      {hdr, "vendor_id", h + 12, 16},
      {hdr, "user_data", h + 28, 20},
      {body, "tcb_svn", b + DCAP_TD_TEE_TCB_SVN, 16},
      {body, "mr_seam", b + DCAP_TD_MR_SEAM, 48},
      {body, "mrsigner_seam", b + DCAP_TD_MRSIGNER_SEAM, 48},
      {body, "seam_attributes", b + DCAP_TD_SEAM_ATTRIBUTES, 8},
      {body, "td_attributes", b + DCAP_TD_TD_ATTRIBUTES, 8},
      {body, "xfam", b + DCAP_TD_XFAM, 8},
      {body, "mr_td", b + DCAP_TD_MR_TD, 48},
      {body, "mr_config_id", b + DCAP_TD_MR_CONFIG_ID, 48},
      {body, "mr_owner", b + DCAP_TD_MR_OWNER, 48},
      {body, "mr_owner_config", b + DCAP_TD_MR_OWNER_CONFIG, 48},
      {body, "rtmr_0", b + DCAP_TD_RTMR0, 48},
      {body, "rtmr_1", b + DCAP_TD_RTMR0 + 48, 48},
      {body, "rtmr_2", b + DCAP_TD_RTMR0 + 96, 48},
      {body, "rtmr_3", b + DCAP_TD_RTMR0 + 144, 48},
      {body, "report_data", b + DCAP_TD_REPORT_DATA, 64},
      {claims, "report_data", b + DCAP_TD_REPORT_DATA, 64},
      {claims, "init_data", b + DCAP_TD_MR_CONFIG_ID, 48},
  };
  for (size_t i = 0; i < sizeof f / sizeof f[0] && st == CT_OK; i++)
    st = tdx__hex(f[i].o, f[i].k, f[i].p, f[i].n, err);
  if (st == CT_OK && q->body_type == 3) {
    st = tdx__hex(body, "tee_tcb_svn2", b + DCAP_TD_TEE_TCB_SVN2, 16, err);
    if (st == CT_OK) st = tdx__hex(body, "mr_servicetd", b + DCAP_TD_MR_SERVICETD, 48, err);
  }
  if (st == CT_OK && q->version == 5) {
    st = tdx__hex(quote, "type", q->v5_type_size, 2, err);
    if (st == CT_OK) st = tdx__hex(quote, "size", q->v5_type_size + 2, 4, err);
  }
  if (st) goto fail;
  /* TD attributes: a little-endian u64. */
  ct_reader brd;
  ct_reader_init(&brd, b, q->body_size, "TD report");
  uint64_t ta = ct_peek_u64le(&brd, DCAP_TD_TD_ATTRIBUTES, "TD_ATTRIBUTES");
  st = ct_reader_status(&brd, err);
  if (st) goto fail;
  st = ct_json_set_new(attrs, "debug", json_boolean(ta & 1ull), err);
  if (st == CT_OK) st = ct_json_set_new(attrs, "septve_disable", json_boolean(ta & (1ull << 28)), err);
  if (st == CT_OK) st = ct_json_set_new(attrs, "protection_keys", json_boolean(ta & (1ull << 30)), err);
  if (st == CT_OK) st = ct_json_set_new(attrs, "key_locker", json_boolean(ta & (1ull << 31)), err);
  if (st == CT_OK) st = ct_json_set_new(attrs, "perfmon", json_boolean(ta & (1ull << 63)), err);
  if (st) goto fail;
  st = ct_json_set_new(quote, "header", hdr, err);
  hdr = NULL;
  if (st == CT_OK) st = ct_json_set_new(quote, "body", body, err);
  body = NULL;
  if (st == CT_OK) st = ct_json_set_new(claims, "quote", quote, err);
  quote = NULL;
  if (st == CT_OK) st = ct_json_set_new(claims, "td_attributes", attrs, err);
  attrs = NULL;
  if (st == CT_OK && log) {
    json_t *events = NULL;
    st = ccel_to_json(log, &events, err);
    if (st == CT_OK) st = ct_json_set_new(claims, "uefi_event_logs", events, err);
  }
  if (st == CT_OK && pck && pck->has_instance_id) {
    /* Trustee renders the PlatformInstanceID extension byte-reversed (as a little-endian
     * integer); the golden claims pin that form. */
    uint8_t rev[16];
    for (int i = 0; i < 16; i++) rev[i] = pck->platform_instance_id[15 - i];
    st = tdx__hex(claims, "platform_instance_id", rev, 16, err);
  }
  if (st) goto fail;
  *out = claims;
  return CT_OK;
fail:
  json_decref(claims);
  json_decref(quote);
  json_decref(hdr);
  json_decref(body);
  json_decref(attrs);
  return st;
}

/* ---- state -------------------------------------------------------------------------------- */

static CT_RESULT tdx__dup(const char *s, char **out, ct_err *err) {
  *out = NULL;
  return s ? ct_strdup(s, out, err) : CT_OK;
}

void tdx_state_free(tdx_state *s) {
  if (!s) return;
  as_fetcher_free(s->pcs); /* first: its completions write into the state */
  for (size_t i = 0; i < s->ncache; i++) dcap_collateral_free(s->cache[i].c);
  for (size_t i = 0; i < s->nretired; i++) dcap_collateral_free(s->retired[i]);
  for (size_t i = 0; i < s->npcks; i++) sk_X509_pop_free(s->pcks[i].chain, X509_free);
  free(s->retired);
  X509_free(s->pck_root);
  X509_free(s->collateral_root);
  free(s->collateral_dir);
  free(s->pccs_url);
  free(s->cache_dir);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

CT_RESULT tdx_state_new(const as_verifier_config *cfg, const char *collateral_root_pem, time_t now,
                        tdx_state **out, ct_err *err) {
  tdx_state *s = calloc(1, sizeof *s);
  CT_ENSURE(s, err, CT_ENOMEM, "out of memory");
  pthread_mutex_init(&s->lock, NULL);
  s->fixed_now = now;
  ct_status st = CT_OK;
  if (cfg) {
    CT_GUARD_GOTO(st, tdx__dup(cfg->tdx_collateral_dir, &s->collateral_dir, err), fail);
    CT_GUARD_GOTO(st, tdx__dup(cfg->tdx_pccs_url, &s->pccs_url, err), fail);
    CT_GUARD_GOTO(st, tdx__dup(cfg->tdx_collateral_cache_dir, &s->cache_dir, err), fail);
    s->remote_wait_ms = cfg->remote_wait_ms;
  }
  CT_GUARD_GOTO(st, dcap_intel_root(&s->pck_root, err), fail);
  if (collateral_root_pem) {
    BIO *b = BIO_new_mem_buf(collateral_root_pem, -1);
    s->collateral_root = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    CT_ENSURE_GOTO(st, s->collateral_root, fail, err, CT_EINVAL, "tdx: bad collateral root PEM");
  } else {
    CT_GUARD_GOTO(st, dcap_intel_root(&s->collateral_root, err), fail);
  }
  *out = s;
  return CT_OK;
fail:
  tdx_state_free(s);
  return st;
}

static time_t tdx__now(const tdx_state *s) { return s->fixed_now ? s->fixed_now : time(NULL); }

/* Under no lock: keeps verified collateral `c` (owned from here on) for the platform. */
static CT_RESULT tdx__cache_put(tdx_state *s, const uint8_t fmspc[6], bool platform_ca, dcap_collateral *c,
                                ct_err *err) {
  pthread_mutex_lock(&s->lock);
  tdx__cache_entry *slot = NULL;
  for (size_t i = 0; i < s->ncache; i++)
    if (memcmp(s->cache[i].fmspc, fmspc, 6) == 0 && s->cache[i].platform_ca == platform_ca) slot = &s->cache[i];
  if (!slot && s->ncache < TDX__CACHE_MAX) slot = &s->cache[s->ncache++];
  if (!slot) slot = &s->cache[0];
  if (slot->c) {
    dcap_collateral **r = realloc(s->retired, (s->nretired + 1) * sizeof *r);
    if (!r) {
      pthread_mutex_unlock(&s->lock);
      dcap_collateral_free(c);
      return ct_fail(err, CT_ENOMEM, "out of memory");
    }
    s->retired = r;
    s->retired[s->nretired++] = slot->c;
  }
  memcpy(slot->fmspc, fmspc, 6);
  slot->platform_ca = platform_ca;
  slot->loaded = tdx__now(s);
  slot->c = c;
  pthread_mutex_unlock(&s->lock);
  return CT_OK;
}

static const dcap_collateral *tdx__cache_get(tdx_state *s, const uint8_t fmspc[6], bool platform_ca) {
  time_t now = tdx__now(s);
  const dcap_collateral *c = NULL;
  pthread_mutex_lock(&s->lock);
  for (size_t i = 0; i < s->ncache && !c; i++) {
    tdx__cache_entry *e = &s->cache[i];
    if (memcmp(e->fmspc, fmspc, 6) == 0 && e->platform_ca == platform_ca && now - e->loaded < TDX__CACHE_TTL &&
        now >= e->loaded)
      c = e->c;
  }
  pthread_mutex_unlock(&s->lock);
  return c;
}

static CT_RESULT tdx__verify_and_keep(tdx_state *s, const uint8_t fmspc[6], bool platform_ca, dcap_collateral *c,
                                      ct_err *err) {
  ct_status st = dcap_collateral_verify(c, s->collateral_root, s->fixed_now, err);
  if (st) {
    dcap_collateral_free(c);
    return st;
  }
  return tdx__cache_put(s, fmspc, platform_ca, c, err);
}

static const char *tdx__pcs_url(const tdx_state *s) {
  /* Like Trustee's default QCNL configuration: Intel's PCS when nothing else is set. */
  return s->pccs_url ? s->pccs_url : TDX__INTEL_PCS;
}

/* The PCS fetch's finish (as_fetch.h), on the fetcher's I/O thread. key = "<fmspc hex>/<ca>". */
static CT_RESULT tdx__pcs_finish(void *ctx, const char *key, as_fetch_resp *resps, size_t n, ct_err *err) {
  tdx_state *s = ctx;
  (void)n;
  uint8_t fmspc[6];
  for (int i = 0; i < 6; i++) {
    unsigned v = 0;
    if (sscanf(key + 2 * i, "%2x", &v) != 1) return ct_fail(err, CT_EINTERNAL, "tdx: bad collateral key");
    fmspc[i] = (uint8_t)v;
  }
  bool platform_ca = strstr(key, "/platform") != NULL;
  char urls[DCAP_COLLATERAL_GETS][DCAP_COLLATERAL_URL_MAX];
  CT_GUARD(dcap_collateral_urls(tdx__pcs_url(s), fmspc, platform_ca, urls, err));
  dcap_collateral *c = NULL;
  CT_GUARD(dcap_collateral_assemble(s->cache_dir, fmspc, platform_ca, urls, resps, &c, err));
  return tdx__verify_and_keep(s, fmspc, platform_ca, c, err);
}

/* Returns verified collateral for the platform, from the in-memory cache or the configured
 * source. The returned pointer stays valid for the life of the state. */
static CT_RESULT tdx__collateral(tdx_state *s, const dcap_pck_info *pck, const dcap_collateral **out,
                                 ct_err *err) {
  if ((*out = tdx__cache_get(s, pck->fmspc, pck->platform_ca))) return CT_OK;
  if (s->collateral_dir) {
    dcap_collateral *c = NULL;
    CT_GUARD(dcap_collateral_load_dir(s->collateral_dir, pck->fmspc, pck->platform_ca, &c, err));
    CT_GUARD(tdx__verify_and_keep(s, pck->fmspc, pck->platform_ca, c, err));
  } else {
    char key[32], fm[13];
    ct_hex_into(pck->fmspc, 6, fm);
    snprintf(key, sizeof key, "%s/%s", fm, pck->platform_ca ? "platform" : "processor");
    char urls[DCAP_COLLATERAL_GETS][DCAP_COLLATERAL_URL_MAX];
    CT_GUARD(dcap_collateral_urls(tdx__pcs_url(s), pck->fmspc, pck->platform_ca, urls, err));
    const char *u[DCAP_COLLATERAL_GETS] = {urls[0], urls[1], urls[2]};
    static const ct_http_opts opts = {.timeout_ms = 15000, .connect_timeout_ms = 5000,
                                      .max_body = DCAP_COLLATERAL_MAX_BYTES, .log_tag = "tdx",
                                      .deadline_ms = 30000};
    as_fetcher_config fc = {.name = s->pccs_url ? "PCCS" : "Intel PCS", .wait_ms = s->remote_wait_ms};
    as_fetcher *f = NULL;
    CT_GUARD(as_fetcher_get(&s->pcs, &s->lock, &fc, &f, err));
    CT_GUARD(as_fetch(f, key, u, DCAP_COLLATERAL_GETS, &opts, tdx__pcs_finish, s, err));
  }
  *out = tdx__cache_get(s, pck->fmspc, pck->platform_ca);
  CT_ENSURE(*out, err, CT_EIO, "tdx: collateral for this platform was loaded but is no longer cached; attest again");
  return CT_OK;
}

/* ---- verification --------------------------------------------------------------------------- */

/* Looks up a verified chain; on a hit *chain receives new references. */
static bool tdx__pck_lookup(tdx_state *s, const uint8_t hash[32], dcap_pck_info *pck,
                            STACK_OF(X509) **chain, const dcap_collateral **col) {
  bool hit = false;
  time_t now = tdx__now(s);
  pthread_mutex_lock(&s->lock);
  for (size_t i = 0; i < s->npcks; i++) {
    tdx__pck_entry *e = &s->pcks[i];
    if (memcmp(e->hash, hash, 32) == 0 && now >= e->verified && now - e->verified < TDX__CACHE_TTL) {
      *chain = X509_chain_up_ref(e->chain);
      *pck = e->pck;
      *col = e->col;
      hit = *chain != NULL;
      break;
    }
  }
  pthread_mutex_unlock(&s->lock);
  return hit;
}

static void tdx__pck_store(tdx_state *s, const uint8_t hash[32], const dcap_pck_info *pck,
                           STACK_OF(X509) *chain, const dcap_collateral *col) {
  STACK_OF(X509) *copy = X509_chain_up_ref(chain);
  if (!copy) return;
  pthread_mutex_lock(&s->lock);
  tdx__pck_entry *e = NULL;
  for (size_t i = 0; i < s->npcks; i++)
    if (memcmp(s->pcks[i].hash, hash, 32) == 0) e = &s->pcks[i];
  if (!e && s->npcks < TDX__PCK_CACHE_MAX) e = &s->pcks[s->npcks++];
  if (e) {
    sk_X509_pop_free(e->chain, X509_free);
    memcpy(e->hash, hash, 32);
    e->pck = *pck;
    e->chain = copy;
    e->col = col;
    e->verified = tdx__now(s);
    copy = NULL;
  }
  pthread_mutex_unlock(&s->lock);
  sk_X509_pop_free(copy, X509_free);
}

CT_RESULT tdx_verify_quote(tdx_state *s, const uint8_t *quote, size_t quote_len,
                           const uint8_t *report_data, size_t report_data_len,
                           const uint8_t *init_data, size_t init_data_len, const ccel_log *log,
                           dcap_quote *q_out, json_t **claims, ct_err *err) {
  dcap_quote q;
  CT_GUARD(dcap_quote_parse(quote, quote_len, &q, err));
  STACK_OF(X509) *chain = NULL;
  STACK_OF(X509_CRL) *crls = NULL;
  json_t *c = NULL;
  dcap_tcb_result tcb = {0};
  dcap_pck_info pck;
  ct_status st = CT_OK;
  uint8_t hash[32];
  ct_sha256(q.pck_chain, q.pck_chain_len, hash);
  const dcap_collateral *col = NULL, *cached_col = NULL;
  bool cached = tdx__pck_lookup(s, hash, &pck, &chain, &cached_col);
  if (!cached) {
    CT_GUARD(dcap_pck_chain_load(&q, &chain, err));
    CT_GUARD_GOTO(st, dcap_pck_info_read(sk_X509_value(chain, 0), &pck, err), out);
  }
  X509 *leaf = sk_X509_value(chain, 0);
  CT_GUARD_GOTO(st, tdx__collateral(s, &pck, &col, err), out);
  if (!cached || cached_col != col) {
    crls = sk_X509_CRL_new_null();
    CT_ENSURE_GOTO(st, crls, out, err, CT_ENOMEM, "out of memory");
    /* With both CRLs every certificate is checked by OpenSSL; with only the root CA CRL, the
     * certificates it covers are looked up by hand. */
    if (col->pck_crl) {
      sk_X509_CRL_push(crls, col->pck_crl);
      if (col->root_crl) sk_X509_CRL_push(crls, col->root_crl);
    }
    CT_GUARD_GOTO(st, dcap_verify_chain_to(chain, s->pck_root, crls, s->fixed_now, err), out);
    if (col->root_crl && !col->pck_crl) {
      for (int i = 0; i < sk_X509_num(chain); i++) {
        X509_REVOKED *rev = NULL;
        CT_ENSURE_GOTO(st, X509_CRL_get0_by_cert(col->root_crl, &rev, sk_X509_value(chain, i)) != 1,
                       out, err, CT_EDENIED, "PCK chain: certificate %d is revoked by the root CA CRL", i);
      }
    }
    tdx__pck_store(s, hash, &pck, chain, col);
  }
  CT_GUARD_GOTO(st, dcap_verify_signatures(&q, leaf, err), out);
  CT_GUARD_GOTO(st, dcap_tcb_evaluate(col, &q, &pck, chain, tdx__now(s), &tcb, err), out);
  CT_ENSURE_GOTO(st, tcb.acceptable, out, err, CT_EDENIED,
                 "TDX quote verification completed with terminal TCB status %s", tcb.tcb_status);
  if (report_data) {
    uint8_t want[64] = {0};
    memcpy(want, report_data, report_data_len < 64 ? report_data_len : 64);
    CT_ENSURE_GOTO(st, ct_memeq(want, 64, q.body + DCAP_TD_REPORT_DATA, 64), out, err, CT_EDENIED,
                   "REPORT_DATA is different from that in TDX Quote");
  }
  if (init_data) {
    uint8_t want[48] = {0};
    memcpy(want, init_data, init_data_len < 48 ? init_data_len : 48);
    CT_ENSURE_GOTO(st, ct_memeq(want, 48, q.body + DCAP_TD_MR_CONFIG_ID, 48), out, err, CT_EDENIED,
                   "MRCONFIGID is different from that in TDX Quote (expected the init-data digest)");
  }
  if (log) {
    for (uint32_t i = 0; i < 4; i++) {
      uint8_t mr[64];
      size_t n = 0;
      CT_GUARD_GOTO(st, ccel_replay(log, i + 1, CCEL_ALG_SHA384, mr, &n, err), out);
      if (!ct_memeq(mr, n, q.body + DCAP_TD_RTMR0 + 48 * i, 48)) {
        char a[129], b[97];
        ct_hex_into(mr, n, a);
        ct_hex_into(q.body + DCAP_TD_RTMR0 + 48 * i, 48, b);
        st = ct_fail(err, CT_EDENIED, "event log does not replay to RTMR%u: calculated %s, quote %s",
                     i, a, b);
        goto out;
      }
    }
  }
  CT_GUARD_GOTO(st, tdx_claims_build(&q, log, &pck, &c, err), out);
  CT_GUARD_GOTO(st, dcap_supplemental_claims(&tcb, &pck, s->pck_root, c, err), out);
  if (q_out) *q_out = q;
  *claims = c;
  c = NULL;
out:
  sk_X509_CRL_free(crls);
  sk_X509_pop_free(chain, X509_free);
  dcap_tcb_result_clear(&tcb);
  json_decref(c);
  return st;
}

static CT_RESULT tdx__create(const as_verifier_config *cfg, void **state, ct_err *err) {
  tdx_state *s = NULL;
  CT_GUARD(tdx_state_new(cfg, NULL, 0, &s, err));
  *state = s;
  return CT_OK;
}

static void tdx__destroy(void *state) { tdx_state_free(state); }

static CT_RESULT tdx__verify(void *state, const as_verify_request *req, json_t **claims, ct_err *err) {
  tdx_state *s = state;
  const char *quote_b64 = NULL, *ccel_b64 = NULL;
  CT_GUARD(ct_json_get_string(req->evidence, "quote", "TDX evidence", &quote_b64, err));
  CT_GUARD(ct_json_opt_string(req->evidence, "cc_eventlog", "TDX evidence", &ccel_b64, err));
  CT_ENSURE(*quote_b64, err, CT_EINVAL, "TDX Quote is empty.");
  CT_ENSURE(strlen(quote_b64) <= DCAP_QUOTE_MAX_BYTES / 3 * 4 + 4, err, CT_ELIMIT,
            "TDX evidence: quote exceeds %u bytes", DCAP_QUOTE_MAX_BYTES);
  CT_ENSURE(!ccel_b64 || strlen(ccel_b64) <= CCEL_MAX_LOG_BYTES / 3 * 4 + 4, err, CT_ELIMIT,
            "TDX evidence: cc_eventlog exceeds %u bytes", CCEL_MAX_LOG_BYTES);
  uint8_t *quote = NULL, *ccel = NULL;
  size_t quote_len = 0, ccel_len = 0;
  ccel_log log = {0};
  bool have_log = false;
  ct_status st = ct_b64_decode(CT_B64_STD, quote_b64, strlen(quote_b64), &quote, &quote_len, err);
  if (st) return ct_err_prefix(err, "TDX evidence: quote: ");
  if (ccel_b64 && *ccel_b64) {
    st = ct_b64_decode(CT_B64_STD, ccel_b64, strlen(ccel_b64), &ccel, &ccel_len, err);
    if (st) {
      ct_err_prefix(err, "TDX evidence: cc_eventlog: ");
      goto out;
    }
    st = ccel_parse(ccel, ccel_len, &log, err);
    if (st) {
      ct_err_prefix(err, "Parse CC Eventlog failed: ");
      goto out;
    }
    have_log = true;
  }
  st = tdx_verify_quote(s, quote, quote_len, req->report_data, req->report_data_len,
                        req->init_data_digest, req->init_data_digest_len, have_log ? &log : NULL,
                        NULL, claims, err);
  if (st) ct_err_prefix(err, "TDX Verifier: ");
out:
  ccel_free(&log);
  free(quote);
  free(ccel);
  return st;
}

const as_verifier as_verifier_tdx = {
    .tee = "tdx",
    .tee_class = "cpu",
    .create = tdx__create,
    .destroy = tdx__destroy,
    .verify = tdx__verify,
};
