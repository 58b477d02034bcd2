/*
 * SEV-SNP endorsement keys (VCEK/VLEK): chain verification to the pinned AMD roots, the AMD
 * SPL/hwID extensions, the report signature, and the VCEK sources (offline store, AMD KDS with
 * an on-disk cache). Verified keys are cached by the SHA-256 of their DER.
 */
#include <errno.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_file.h"
#include "ct_http.h"
#include "as_fetch.h"
#include "ct_log.h"
#include "ct_mem.h"
#include "snp.h"

#define SNP_VEK_MAX_DER (16u << 10)
#define SNP_CACHE_SLOTS 64
#define SNP_KDS_MAX_ATTEMPTS 4
#define SNP_KDS_MEM_SLOTS 64 /* VCEKs fetched from KDS, kept in memory */

typedef struct snp_kds_entry {
  char *url;
  uint8_t *der;
  size_t len;
  uint64_t last_use;
} snp_kds_entry;

typedef struct snp_roots {
  X509 *ask, *ark, *asvk;
  uint8_t ark_hash[32], ask_hash[32], asvk_hash[32];
} snp_roots;

typedef struct snp_cache_entry {
  bool used;
  uint8_t hash[32];
  snp_gen gen_checked; /* the generation whose roots verified it */
  EVP_PKEY *pkey;
  snp_vek_info info;
  uint64_t last_use;
} snp_cache_entry;

struct snp_ctx {
  snp_roots roots[4]; /* indexed by snp_gen; [0] unused */
  char *offline_dir, *kds_url, *kds_cache_dir;
  ASN1_OBJECT *oid_hwid, *oid_bl, *oid_tee, *oid_snp, *oid_ucode, *oid_fmc;
  pthread_mutex_t lock;
  snp_cache_entry cache[SNP_CACHE_SLOTS];
  uint64_t clock;
  as_fetcher *kds;   /* KDS requests run off the request threads (created on first use) */
  long remote_wait_ms;
  snp_kds_entry kds_mem[SNP_KDS_MEM_SLOTS];
};

static CT_RESULT snp__load_roots(const char *pem, snp_gen g, snp_roots *out, ct_err *err) {
  BIO *bio = BIO_new_mem_buf(pem, -1);
  CT_ENSURE(bio, err, CT_ENOMEM, "out of memory");
  X509 *c[3] = {0};
  for (int i = 0; i < 3; i++) c[i] = PEM_read_bio_X509(bio, NULL, NULL, NULL);
  BIO_free(bio);
  if (!c[0] || !c[1] || !c[2]) {
    for (int i = 0; i < 3; i++) X509_free(c[i]);
    return ct_fail_ossl(err, CT_EINTERNAL, "pinned AMD roots for %s do not parse",
                        snp_gen_name(g));
  }
  out->ask = c[0], out->ark = c[1], out->asvk = c[2];
  X509 *certs[3] = {out->ark, out->ask, out->asvk};
  uint8_t *hashes[3] = {out->ark_hash, out->ask_hash, out->asvk_hash};
  for (int i = 0; i < 3; i++) {
    unsigned char *der = NULL;
    int n = i2d_X509(certs[i], &der);
    CT_ENSURE(n > 0, err, CT_EINTERNAL, "pinned AMD roots for %s do not encode", snp_gen_name(g));
    ct_sha256(der, (size_t)n, hashes[i]);
    OPENSSL_free(der);
  }
  return CT_OK;
}

static char *snp__dup_opt(const char *s) { return s && *s ? strdup(s) : NULL; }

/* The test-only roots replace the pinned roots of the generation their ARK names. The TEST-ONLY
 * marker keeps this from becoming a way to trust some other real PKI: whatever it endorses is
 * forged by whoever holds the file's keys. */
static CT_RESULT snp__load_test_roots(snp_ctx *c, const char *path, ct_err *err) {
  uint8_t *pem = NULL;
  size_t len = 0;
  if (ct_file_read(path, 64u << 10, &pem, &len, err) != CT_OK)
    return ct_err_prefix(err, "snp_verifier.insecure_test_only_roots: ");
  char *text = realloc(pem, len + 1);
  if (!text) {
    free(pem);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  text[len] = 0;
  snp_roots r = {0};
  ct_status st = snp__load_roots(text, SNP_GEN_UNKNOWN, &r, err);
  free(text);
  if (st != CT_OK) return ct_err_prefix(err, "snp_verifier.insecure_test_only_roots %s (ASK, ARK, ASVK): ", path);
  char subject[512] = {0}, cn[64] = {0};
  X509_NAME_oneline(X509_get_subject_name(r.ark), subject, sizeof subject);
  X509_NAME_get_text_by_NID(X509_get_subject_name(r.ark), NID_commonName, cn, sizeof cn);
  const char *dash = strrchr(cn, '-');
  snp_gen g = SNP_GEN_UNKNOWN;
  for (snp_gen k = SNP_GEN_MILAN; dash && k <= SNP_GEN_TURIN; k++)
    if (!strcmp(dash + 1, snp_gen_name(k))) g = k;
  if (!strstr(subject, "TEST-ONLY") || g == SNP_GEN_UNKNOWN || X509_check_issued(r.ark, r.ark) != X509_V_OK) {
    st = ct_fail(err, CT_EINVAL, "snp_verifier.insecure_test_only_roots %s: the ARK (%s) must be self-signed, "
                 "say TEST-ONLY in its subject and name a generation in its CN (ARK-Milan, ...)", path, subject);
    X509_free(r.ask);
    X509_free(r.ark);
    X509_free(r.asvk);
    return st;
  }
  X509_free(c->roots[g].ask);
  X509_free(c->roots[g].ark);
  X509_free(c->roots[g].asvk);
  c->roots[g] = r;
  CT_LOG_ERROR_("snp", "INSECURE TEST-ONLY CONFIGURATION: the %s ARK is replaced by %s from %s; SNP evidence "
                "endorsed by it is forged by construction. Never use snp_verifier.insecure_test_only_roots "
                "outside tests.", snp_gen_name(g), subject, path);
  return CT_OK;
}

CT_RESULT snp_ctx_new(const as_verifier_config *cfg, snp_ctx **out, ct_err *err) {
  snp_ctx *c = calloc(1, sizeof *c);
  CT_ENSURE(c, err, CT_ENOMEM, "out of memory");
  ct_status st = CT_OK;
  pthread_mutex_init(&c->lock, NULL);
  CT_GUARD_GOTO(st, snp__load_roots(snp_amd_roots_milan_pem, SNP_GEN_MILAN, &c->roots[SNP_GEN_MILAN], err), fail);
  CT_GUARD_GOTO(st, snp__load_roots(snp_amd_roots_genoa_pem, SNP_GEN_GENOA, &c->roots[SNP_GEN_GENOA], err), fail);
  CT_GUARD_GOTO(st, snp__load_roots(snp_amd_roots_turin_pem, SNP_GEN_TURIN, &c->roots[SNP_GEN_TURIN], err), fail);
  c->oid_hwid = OBJ_txt2obj("1.3.6.1.4.1.3704.1.4", 1);
  c->oid_bl = OBJ_txt2obj("1.3.6.1.4.1.3704.1.3.1", 1);
  c->oid_tee = OBJ_txt2obj("1.3.6.1.4.1.3704.1.3.2", 1);
  c->oid_snp = OBJ_txt2obj("1.3.6.1.4.1.3704.1.3.3", 1);
  c->oid_ucode = OBJ_txt2obj("1.3.6.1.4.1.3704.1.3.8", 1);
  c->oid_fmc = OBJ_txt2obj("1.3.6.1.4.1.3704.1.3.9", 1);
  CT_ENSURE_GOTO(st, c->oid_hwid && c->oid_bl && c->oid_tee && c->oid_snp && c->oid_ucode && c->oid_fmc,
                 fail, err, CT_ENOMEM, "out of memory");
  if (cfg) {
    c->offline_dir = snp__dup_opt(cfg->snp_vcek_offline_dir);
    c->kds_url = snp__dup_opt(cfg->snp_kds_base_url);
    c->kds_cache_dir = snp__dup_opt(cfg->snp_kds_cache_dir);
    c->remote_wait_ms = cfg->remote_wait_ms;
    if (cfg->snp_insecure_test_only_roots)
      CT_GUARD_GOTO(st, snp__load_test_roots(c, cfg->snp_insecure_test_only_roots, err), fail);
  }
  *out = c;
  return CT_OK;
fail:
  snp_ctx_free(c);
  return st;
}

void snp_ctx_free(snp_ctx *c) {
  if (!c) return;
  as_fetcher_free(c->kds); /* first: its completions write into the context */
  for (int i = 0; i < SNP_KDS_MEM_SLOTS; i++) {
    free(c->kds_mem[i].url);
    free(c->kds_mem[i].der);
  }
  for (int g = 1; g < 4; g++) {
    X509_free(c->roots[g].ask);
    X509_free(c->roots[g].ark);
    X509_free(c->roots[g].asvk);
  }
  for (int i = 0; i < SNP_CACHE_SLOTS; i++) EVP_PKEY_free(c->cache[i].pkey);
  ASN1_OBJECT_free(c->oid_hwid);
  ASN1_OBJECT_free(c->oid_bl);
  ASN1_OBJECT_free(c->oid_tee);
  ASN1_OBJECT_free(c->oid_snp);
  ASN1_OBJECT_free(c->oid_ucode);
  ASN1_OBJECT_free(c->oid_fmc);
  free(c->offline_dir);
  free(c->kds_url);
  free(c->kds_cache_dir);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

/* ---- AMD extensions ------------------------------------------------------------------------ */

static const ASN1_OCTET_STRING *snp__ext(X509 *x, const ASN1_OBJECT *oid) {
  int idx = X509_get_ext_by_OBJ(x, oid, -1);
  if (idx < 0) return NULL;
  /* A duplicated extension is ambiguous; refuse it like x509-parser's get_extension_unique. */
  if (X509_get_ext_by_OBJ(x, oid, idx) >= 0) return NULL;
  return X509_EXTENSION_get_data(X509_get_ext(x, idx));
}

/* The SPL extensions hold a DER INTEGER 0..255. */
static CT_RESULT snp__ext_spl(X509 *x, const ASN1_OBJECT *oid, const char *name, uint8_t *out,
                              ct_err *err) {
  const ASN1_OCTET_STRING *os = snp__ext(x, oid);
  CT_ENSURE(os, err, CT_EINVAL, "snp VEK: certificate lacks a unique %s SPL extension", name);
  const unsigned char *p = ASN1_STRING_get0_data(os);
  long n = ASN1_STRING_length(os);
  ASN1_INTEGER *ai = d2i_ASN1_INTEGER(NULL, &p, n);
  uint64_t v = 0;
  bool ok = ai && p == ASN1_STRING_get0_data(os) + n && ASN1_INTEGER_get_uint64(&v, ai) == 1 &&
            v <= 255;
  ASN1_INTEGER_free(ai);
  ERR_clear_error();
  CT_ENSURE(ok, err, CT_EINVAL, "snp VEK: %s SPL extension is not an integer 0..255", name);
  *out = (uint8_t)v;
  return CT_OK;
}

/* hwID: older VCEKs hold the 64 raw bytes, newer ones a DER OCTET STRING of them. */
static CT_RESULT snp__ext_hwid(X509 *x, const ASN1_OBJECT *oid, snp_vek_info *info, ct_err *err) {
  const ASN1_OCTET_STRING *os = snp__ext(x, oid);
  CT_ENSURE(os, err, CT_EINVAL, "snp VCEK: certificate lacks a unique hwID extension");
  const unsigned char *p = ASN1_STRING_get0_data(os);
  long n = ASN1_STRING_length(os);
  if (n == 64) {
    memcpy(info->hwid, p, 64);
    info->hwid_len = 64;
    return CT_OK;
  }
  ASN1_OCTET_STRING *inner = d2i_ASN1_OCTET_STRING(NULL, &p, n);
  bool ok = inner && p == ASN1_STRING_get0_data(os) + n &&
            (ASN1_STRING_length(inner) == 64 || ASN1_STRING_length(inner) == 8);
  if (ok) {
    info->hwid_len = (size_t)ASN1_STRING_length(inner);
    memcpy(info->hwid, ASN1_STRING_get0_data(inner), info->hwid_len);
  }
  ASN1_OCTET_STRING_free(inner);
  ERR_clear_error();
  CT_ENSURE(ok, err, CT_EINVAL, "snp VCEK: hwID extension is neither 64 raw bytes nor an OCTET "
                                "STRING of 64 (or 8, Turin) bytes");
  return CT_OK;
}

static snp_gen snp__gen_from_issuer(X509 *x) {
  char cn[64] = {0};
  if (X509_NAME_get_text_by_NID(X509_get_issuer_name(x), NID_commonName, cn, sizeof cn) <= 0)
    return SNP_GEN_UNKNOWN;
  const char *dash = strrchr(cn, '-');
  if (!dash) return SNP_GEN_UNKNOWN;
  for (snp_gen g = SNP_GEN_MILAN; g <= SNP_GEN_TURIN; g++)
    if (strcmp(dash + 1, snp_gen_name(g)) == 0) return g;
  return SNP_GEN_UNKNOWN;
}

/* Verifies leaf up to the pinned ARK of `g`, with ASK and ASVK (and the evidence's extra
 * certificates) as untrusted intermediates. Validity periods are not enforced, as in Trustee:
 * a VEK is bound to a TCB, not to a date, and AMD issues VLEKs valid for one year only. */
static CT_RESULT snp__verify_chain(snp_ctx *c, X509 *leaf, snp_gen g, STACK_OF(X509) *extra,
                                   snp_vek_type *type, ct_err *err) {
  const snp_roots *r = &c->roots[g];
  X509_STORE *store = X509_STORE_new();
  STACK_OF(X509) *untrusted = sk_X509_new_null();
  X509_STORE_CTX *sctx = X509_STORE_CTX_new();
  ct_status st = CT_OK;
  CT_ENSURE_GOTO(st, store && untrusted && sctx, out, err, CT_ENOMEM, "out of memory");
  CT_ENSURE_GOTO(st, X509_STORE_add_cert(store, r->ark) == 1, out, err, CT_ENOMEM, "out of memory");
  CT_ENSURE_GOTO(st, sk_X509_push(untrusted, r->ask) > 0 && sk_X509_push(untrusted, r->asvk) > 0,
                 out, err, CT_ENOMEM, "out of memory");
  for (int i = 0; extra && i < sk_X509_num(extra); i++)
    CT_ENSURE_GOTO(st, sk_X509_push(untrusted, sk_X509_value(extra, i)) > 0, out, err, CT_ENOMEM,
                   "out of memory");
  CT_ENSURE_GOTO(st, X509_STORE_CTX_init(sctx, store, leaf, untrusted) == 1, out, err, CT_ENOMEM,
                 "out of memory");
  X509_STORE_CTX_set_flags(sctx, X509_V_FLAG_NO_CHECK_TIME | X509_V_FLAG_CHECK_SS_SIGNATURE);
  if (X509_verify_cert(sctx) != 1) {
    int e = X509_STORE_CTX_get_error(sctx);
    st = ct_fail(err, CT_ECRYPTO,
                 "snp VEK: certificate does not chain to AMD's %s ARK (depth %d: %s)",
                 snp_gen_name(g), X509_STORE_CTX_get_error_depth(sctx),
                 X509_verify_cert_error_string(e));
    ERR_clear_error();
    goto out;
  }
  STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(sctx);
  X509 *issuer = sk_X509_num(chain) >= 2 ? sk_X509_value(chain, 1) : NULL;
  if (issuer && X509_cmp(issuer, r->asvk) == 0) *type = SNP_VEK_VLEK;
  else if (issuer && X509_cmp(issuer, r->ask) == 0) *type = SNP_VEK_VCEK;
  else
    st = ct_fail(err, CT_ECRYPTO, "snp VEK: certificate is not issued by AMD's %s ASK or ASVK",
                 snp_gen_name(g));
out:
  X509_STORE_CTX_free(sctx);
  sk_X509_free(untrusted);
  X509_STORE_free(store);
  return st;
}

static CT_RESULT snp__vek_parse_verify(snp_ctx *c, X509 *x, snp_gen g, const snp_der *extra,
                                       size_t n_extra, snp_vek_info *info, ct_err *err) {
  STACK_OF(X509) *ex = NULL;
  ct_status st = CT_OK;
  memset(info, 0, sizeof *info);
  if (n_extra) {
    ex = sk_X509_new_null();
    CT_ENSURE(ex, err, CT_ENOMEM, "out of memory");
    for (size_t i = 0; i < n_extra; i++) {
      const unsigned char *p = extra[i].der;
      X509 *e = d2i_X509(NULL, &p, (long)extra[i].len);
      if (!e) {
        st = ct_fail_ossl(err, CT_EINVAL, "snp cert_chain: certificate %zu is not DER X.509", i);
        goto out;
      }
      /* An ARK in the evidence must be AMD's: anything else is refused, never trusted. */
      if (X509_check_issued(e, e) == X509_V_OK) {
        uint8_t h[32];
        ct_sha256(extra[i].der, extra[i].len, h);
        bool pinned = memcmp(h, c->roots[g].ark_hash, 32) == 0;
        X509_free(e);
        CT_ENSURE_GOTO(st, pinned, out, err, CT_ECRYPTO,
                       "snp cert_chain: the ARK it carries is not AMD's pinned %s ARK",
                       snp_gen_name(g));
        continue;
      }
      if (sk_X509_push(ex, e) <= 0) {
        X509_free(e);
        st = ct_fail(err, CT_ENOMEM, "out of memory");
        goto out;
      }
    }
  }
  snp_vek_type type = SNP_VEK_ANY;
  CT_GUARD_GOTO(st, snp__verify_chain(c, x, g, ex, &type, err), out);
  info->type = type;
  info->gen = g;
  CT_GUARD_GOTO(st, snp__ext_spl(x, c->oid_bl, "bootloader", &info->tcb.bootloader, err), out);
  CT_GUARD_GOTO(st, snp__ext_spl(x, c->oid_tee, "TEE", &info->tcb.tee, err), out);
  CT_GUARD_GOTO(st, snp__ext_spl(x, c->oid_snp, "SNP", &info->tcb.snp, err), out);
  CT_GUARD_GOTO(st, snp__ext_spl(x, c->oid_ucode, "microcode", &info->tcb.microcode, err), out);
  if (g == SNP_GEN_TURIN) {
    CT_GUARD_GOTO(st, snp__ext_spl(x, c->oid_fmc, "FMC", &info->tcb.fmc, err), out);
    info->tcb.has_fmc = true;
  }
  if (type == SNP_VEK_VCEK) CT_GUARD_GOTO(st, snp__ext_hwid(x, c->oid_hwid, info, err), out);
out:
  sk_X509_pop_free(ex, X509_free);
  return st;
}

CT_RESULT snp_vek_check_supplied_ca(snp_ctx *c, snp_gen gen, const uint8_t *vek, size_t vek_len,
                                    const snp_der *ca, bool is_ark, ct_err *err) {
  CT_ENSURE(gen >= SNP_GEN_MILAN && gen <= SNP_GEN_TURIN, err, CT_EINVAL,
            "snp cert_chain: the processor generation is unknown");
  const snp_roots *r = &c->roots[gen];
  if (is_ark) {
    uint8_t h[32];
    ct_sha256(ca->der, ca->len, h);
    CT_ENSURE(memcmp(h, r->ark_hash, 32) == 0, err, CT_ECRYPTO,
              "snp cert_chain: the ARK it carries is not AMD's pinned %s ARK", snp_gen_name(gen));
    return CT_OK;
  }
  const unsigned char *p = ca->der, *q = vek;
  X509 *ask = d2i_X509(NULL, &p, (long)ca->len), *leaf = d2i_X509(NULL, &q, (long)vek_len);
  ct_status st = CT_OK;
  if (!ask || !leaf) {
    st = ct_fail_ossl(err, CT_EINVAL, "snp cert_chain: %s is not DER X.509", ask ? "the VEK" : "the ASK");
    goto out;
  }
  EVP_PKEY *ark_key = X509_get0_pubkey(r->ark), *ask_key = X509_get0_pubkey(ask);
  if (!ark_key || X509_verify(ask, ark_key) != 1) {
    st = ct_fail(err, CT_ECRYPTO, "snp cert_chain: the ASK it carries is not signed by AMD's %s ARK",
                 snp_gen_name(gen));
    goto out;
  }
  if (!ask_key || X509_verify(leaf, ask_key) != 1) {
    st = ct_fail(err, CT_ECRYPTO, "snp cert_chain: the ASK it carries does not sign the VEK");
    goto out;
  }
out:
  ERR_clear_error();
  X509_free(ask);
  X509_free(leaf);
  return st;
}

CT_RESULT snp_vek_verify(snp_ctx *c, const uint8_t *der, size_t len, snp_gen gen,
                         snp_vek_type want, const snp_der *extra, size_t n_extra, EVP_PKEY **pkey,
                         snp_vek_info *info, ct_err *err) {
  CT_ENSURE(len > 0 && len <= SNP_VEK_MAX_DER, err, CT_EINVAL,
            "snp VEK: certificate size %zu is out of range", len);
  uint8_t h[32];
  ct_sha256(der, len, h);
  /* Evidence usually repeats AMD's ARK and ASK (the firmware's certificate table): copies of
   * the pinned certificates add nothing, and dropping them keeps the result cacheable. */
  snp_der kept[8];
  size_t n_kept = 0;
  for (size_t i = 0; i < n_extra; i++) {
    uint8_t eh[32];
    ct_sha256(extra[i].der, extra[i].len, eh);
    bool pinned = false;
    for (snp_gen g = SNP_GEN_MILAN; g <= SNP_GEN_TURIN; g++) {
      if (gen != SNP_GEN_UNKNOWN && g != gen) continue;
      const snp_roots *r = &c->roots[g];
      pinned |= !memcmp(eh, r->ark_hash, 32) || !memcmp(eh, r->ask_hash, 32) ||
                !memcmp(eh, r->asvk_hash, 32);
    }
    if (pinned) continue;
    CT_ENSURE(n_kept < sizeof kept / sizeof *kept, err, CT_ELIMIT,
              "snp cert_chain: more than %zu intermediate certificates", sizeof kept / sizeof *kept);
    kept[n_kept++] = extra[i];
  }
  extra = kept;
  n_extra = n_kept;
  /* Extra intermediates can only matter when the pinned ones do not verify the VEK, and such a
   * result is not cached, so a cache hit is valid whatever they are. */
  pthread_mutex_lock(&c->lock);
  for (int i = 0; i < SNP_CACHE_SLOTS; i++) {
    snp_cache_entry *e = &c->cache[i];
    if (e->used && memcmp(e->hash, h, 32) == 0 &&
        (gen == SNP_GEN_UNKNOWN || gen == e->gen_checked)) {
      e->last_use = ++c->clock;
      *info = e->info;
      EVP_PKEY_up_ref(e->pkey);
      *pkey = e->pkey;
      pthread_mutex_unlock(&c->lock);
      goto check_type;
    }
  }
  pthread_mutex_unlock(&c->lock);

  {
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (!x || p != der + len) {
      X509_free(x);
      return ct_fail_ossl(err, CT_EINVAL, "snp VEK: certificate is not DER X.509");
    }
    snp_gen g = gen != SNP_GEN_UNKNOWN ? gen : snp__gen_from_issuer(x);
    if (g == SNP_GEN_UNKNOWN) {
      X509_free(x);
      return ct_fail(err, CT_EINVAL,
                     "snp VEK: the certificate issuer names no known processor generation");
    }
    ct_status st = snp__vek_parse_verify(c, x, g, extra, n_extra, info, err);
    EVP_PKEY *k = st == CT_OK ? X509_get_pubkey(x) : NULL;
    X509_free(x);
    if (st != CT_OK) return st;
    if (!k || EVP_PKEY_get_base_id(k) != EVP_PKEY_EC || EVP_PKEY_get_bits(k) != 384) {
      EVP_PKEY_free(k);
      return ct_fail(err, CT_EINVAL, "snp VEK: public key is not ECDSA P-384");
    }
    *pkey = k;
    /* Only chains verified with the pinned certificates alone are cached. */
    if (n_extra == 0) {
      pthread_mutex_lock(&c->lock);
      int slot = 0;
      for (int i = 0; i < SNP_CACHE_SLOTS; i++) {
        if (!c->cache[i].used) { slot = i; break; }
        if (c->cache[i].last_use < c->cache[slot].last_use) slot = i;
      }
      snp_cache_entry *e = &c->cache[slot];
      EVP_PKEY_free(e->pkey);
      e->used = true;
      memcpy(e->hash, h, 32);
      e->gen_checked = g;
      EVP_PKEY_up_ref(k);
      e->pkey = k;
      e->info = *info;
      e->last_use = ++c->clock;
      pthread_mutex_unlock(&c->lock);
    }
  }
check_type:
  if (want != SNP_VEK_ANY && want != info->type) {
    EVP_PKEY_free(*pkey);
    *pkey = NULL;
    return ct_fail(err, CT_ECRYPTO, "snp VEK: certificate given as %s is signed by the %s",
                   want == SNP_VEK_VCEK ? "VCEK" : "VLEK",
                   info->type == SNP_VEK_VCEK ? "ASK (a VCEK)" : "ASVK (a VLEK)");
  }
  return CT_OK;
}

CT_RESULT snp_vek_inspect(snp_ctx *c, const uint8_t *der, size_t len, snp_gen gen,
                          snp_vek_info *info, ct_err *err) {
  const unsigned char *p = der;
  X509 *x = d2i_X509(NULL, &p, (long)len);
  if (!x) return ct_fail_ossl(err, CT_EINVAL, "snp VEK: certificate is not DER X.509");
  memset(info, 0, sizeof *info);
  info->gen = gen != SNP_GEN_UNKNOWN ? gen : snp__gen_from_issuer(x);
  ct_status st = CT_OK;
  CT_GUARD_GOTO(st, snp__ext_spl(x, c->oid_bl, "bootloader", &info->tcb.bootloader, err), out);
  CT_GUARD_GOTO(st, snp__ext_spl(x, c->oid_tee, "TEE", &info->tcb.tee, err), out);
  CT_GUARD_GOTO(st, snp__ext_spl(x, c->oid_snp, "SNP", &info->tcb.snp, err), out);
  CT_GUARD_GOTO(st, snp__ext_spl(x, c->oid_ucode, "microcode", &info->tcb.microcode, err), out);
  if (info->gen == SNP_GEN_TURIN) {
    CT_GUARD_GOTO(st, snp__ext_spl(x, c->oid_fmc, "FMC", &info->tcb.fmc, err), out);
    info->tcb.has_fmc = true;
  }
  if (X509_get_ext_by_OBJ(x, c->oid_hwid, -1) >= 0) {
    info->type = SNP_VEK_VCEK;
    CT_GUARD_GOTO(st, snp__ext_hwid(x, c->oid_hwid, info, err), out);
  } else {
    info->type = SNP_VEK_VLEK;
  }
out:
  X509_free(x);
  return st;
}

/* ---- report signature ---------------------------------------------------------------------- */

static CT_RESULT snp__spl_eq(const char *name, uint8_t cert, uint8_t rep, ct_err *err) {
  CT_ENSURE(cert == rep, err, CT_ECRYPTO,
            "snp report: %s version mismatch: VEK certifies SPL %u, report's reported_tcb has %u",
            name, cert, rep);
  return CT_OK;
}

CT_RESULT snp_report_verify_signature(const snp_report *r, const snp_vek_info *info,
                                      EVP_PKEY *pkey, ct_err *err) {
  const uint8_t *chip = r->raw + SNP_OFF_CHIP_ID;
  static const uint8_t zero[64];
  /* A guest launched with MASK_CHIP_ID reports zeros; the VCEK signature still binds it. */
  if (info->type == SNP_VEK_VCEK && memcmp(chip, zero, 64) != 0) {
    /* Turin chips are identified by the first 8 bytes of CHIP_ID (as AMD KDS names them). */
    size_t n = info->gen == SNP_GEN_TURIN || info->hwid_len < 64 ? 8 : 64;
    bool same = info->hwid_len >= n && memcmp(info->hwid, chip, n) == 0;
    if (!same) {
      char want[129], got[129];
      ct_hex_into(info->hwid, info->hwid_len < n ? info->hwid_len : n, want);
      ct_hex_into(chip, n, got);
      return ct_fail(err, CT_ECRYPTO, "snp report: chip ID mismatch: VCEK hwID %.32s..., report "
                                      "chip_id %.32s...", want, got);
    }
  }
  const snp_tcb *t = &r->reported_tcb;
  CT_GUARD(snp__spl_eq("Microcode", info->tcb.microcode, t->microcode, err));
  CT_GUARD(snp__spl_eq("SNP", info->tcb.snp, t->snp, err));
  CT_GUARD(snp__spl_eq("TEE", info->tcb.tee, t->tee, err));
  CT_GUARD(snp__spl_eq("Boot loader", info->tcb.bootloader, t->bootloader, err));
  if (info->gen == SNP_GEN_TURIN) CT_GUARD(snp__spl_eq("FMC", info->tcb.fmc, t->fmc, err));

  /* r and s are 72-byte little-endian fields; ECDSA wants them as integers. */
  ECDSA_SIG *sig = ECDSA_SIG_new();
  BIGNUM *br = BN_lebin2bn(r->raw + SNP_SIG_OFFSET, 72, NULL);
  BIGNUM *bs = BN_lebin2bn(r->raw + SNP_SIG_OFFSET + 72, 72, NULL);
  unsigned char *der = NULL;
  int der_len = -1;
  if (sig && br && bs && ECDSA_SIG_set0(sig, br, bs) == 1) {
    br = bs = NULL;
    der_len = i2d_ECDSA_SIG(sig, &der);
  }
  BN_free(br);
  BN_free(bs);
  ECDSA_SIG_free(sig);
  CT_ENSURE(der_len > 0, err, CT_ENOMEM, "out of memory encoding the report signature");
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha384(), NULL, pkey) == 1 &&
           EVP_DigestVerify(md, der, (size_t)der_len, r->raw, SNP_SIGNED_LEN) == 1;
  EVP_MD_CTX_free(md);
  OPENSSL_free(der);
  ERR_clear_error();
  CT_ENSURE(ok, err, CT_ECRYPTO,
            "snp report: signature (ECDSA P-384 over bytes 0x000-0x29F) does not verify with the "
            "%s", info->type == SNP_VEK_VLEK ? "VLEK" : "VCEK");
  return CT_OK;
}

/* ---- VCEK sources --------------------------------------------------------------------------- */

static void snp__hwid_hex(const snp_report *r, snp_gen g, char out[129]) {
  /* KDS names Turin chips by the first 8 bytes of CHIP_ID. */
  ct_hex_into(r->raw + SNP_OFF_CHIP_ID, g == SNP_GEN_TURIN ? 8 : 64, out);
}

static snp_tcb snp__lookup_tcb(const snp_report *r, snp_gen g) {
  snp_tcb t = r->reported_tcb;
  t.has_fmc = g == SNP_GEN_TURIN;
  return t;
}

/* Trustee's offline store: <dir>/vcek/<hwid>/<tcb prefix>_vcek.der, else <dir>/vcek/<hwid>/vcek.der. */
static CT_RESULT snp__store_read(const char *dir, const char *hwid, const snp_tcb *t,
                                 bool allow_flat, uint8_t **der, size_t *len, ct_err *err) {
  char prefix[48], path[4096];
  snp_tcb_prefix(t, prefix, sizeof prefix);
  snprintf(path, sizeof path, "%s/vcek/%s/%s_vcek.der", dir, hwid, prefix);
  ct_err e2;
  if (ct_file_read(path, SNP_VEK_MAX_DER, der, len, &e2) == CT_OK) return CT_OK;
  if (allow_flat) {
    snprintf(path, sizeof path, "%s/vcek/%s/vcek.der", dir, hwid);
    if (ct_file_read(path, SNP_VEK_MAX_DER, der, len, &e2) == CT_OK) return CT_OK;
  }
  return ct_fail(err, CT_ENOTFOUND, "no VCEK for %s in %s", prefix, dir);
}

static CT_RESULT snp__mkdirs(const char *path, ct_err *err) {
  char tmp[4096];
  size_t n = strlen(path);
  CT_ENSURE(n < sizeof tmp, err, CT_ELIMIT, "path too long");
  memcpy(tmp, path, n + 1);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
      return ct_fail(err, CT_EIO, "cannot create %s: %s", tmp, strerror(errno));
    *p = '/';
  }
  if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
    return ct_fail(err, CT_EIO, "cannot create %s: %s", tmp, strerror(errno));
  return CT_OK;
}

/* KDS answers slowly and rate-limits (429 with Retry-After): retries with exponential backoff,
 * the whole fetch bounded, all on the fetcher's I/O thread. */
static const ct_http_opts snp__kds_opts = {.timeout_ms = 15000,
                                           .connect_timeout_ms = 5000,
                                           .max_body = SNP_VEK_MAX_DER,
                                           .attempts = SNP_KDS_MAX_ATTEMPTS,
                                           .retry_on = CT_HTTP_RETRY_TIMEOUT | CT_HTTP_RETRY_429 | CT_HTTP_RETRY_5XX,
                                           .backoff_ms = 500,
                                           .backoff_max_ms = 10000,
                                           .retry_after_max_ms = 10000,
                                           .log_tag = "snp",
                                           .deadline_ms = 60000};

/* A copy of the VCEK fetched from `url`, if it is in memory. */
static bool snp__kds_mem_get(snp_ctx *c, const char *url, uint8_t **der, size_t *len) {
  bool hit = false;
  pthread_mutex_lock(&c->lock);
  for (int i = 0; i < SNP_KDS_MEM_SLOTS && !hit; i++) {
    snp_kds_entry *e = &c->kds_mem[i];
    if (!e->url || strcmp(e->url, url)) continue;
    *der = malloc(e->len);
    if (*der) {
      memcpy(*der, e->der, e->len);
      *len = e->len;
      e->last_use = ++c->clock;
      hit = true;
    }
  }
  pthread_mutex_unlock(&c->lock);
  return hit;
}

/* The fetch's finish (as_fetch.h), on the KDS fetcher's I/O thread: keeps the VCEK in memory and
 * in the on-disk cache. It is verified against AMD's roots by the request that uses it. */
static CT_RESULT snp__kds_finish(void *ctx, const char *url, as_fetch_resp *r, size_t n, ct_err *err) {
  snp_ctx *c = ctx;
  (void)n;
  if (r->st) return ct_fail(err, r->st, "AMD KDS request %s failed: %s", url, r->cause);
  if (r->status != 200)
    return ct_fail(err, r->status == 404 ? CT_ENOTFOUND : CT_EIO, "AMD KDS answered HTTP %ld for %s", r->status, url);
  if (!r->body.len) return ct_fail(err, CT_EIO, "AMD KDS returned an empty VCEK for %s", url);
  char *u = strdup(url);
  uint8_t *der = malloc(r->body.len);
  if (!u || !der) {
    free(u);
    free(der);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  memcpy(der, r->body.data, r->body.len);
  pthread_mutex_lock(&c->lock);
  snp_kds_entry *slot = &c->kds_mem[0];
  for (int i = 0; i < SNP_KDS_MEM_SLOTS; i++) {
    if (!c->kds_mem[i].url) {
      slot = &c->kds_mem[i];
      break;
    }
    if (c->kds_mem[i].last_use < slot->last_use) slot = &c->kds_mem[i];
  }
  free(slot->url);
  free(slot->der);
  *slot = (snp_kds_entry){u, der, r->body.len, ++c->clock};
  pthread_mutex_unlock(&c->lock);
  return CT_OK;
}

/* Writes a fetched VCEK to the on-disk cache (on the request thread: a local file). */
static void snp__kds_disk_put(snp_ctx *c, const char *hwid, const snp_tcb *t, const uint8_t *der, size_t len) {
  if (!c->kds_cache_dir) return;
  char dir[4096], prefix[48], path[4200];
  ct_err e2;
  snprintf(dir, sizeof dir, "%s/vcek/%s", c->kds_cache_dir, hwid);
  snp_tcb_prefix(t, prefix, sizeof prefix);
  snprintf(path, sizeof path, "%s/%s_vcek.der", dir, prefix);
  /* A cache that cannot be written only costs a later fetch. */
  if (snp__mkdirs(dir, &e2) != CT_OK || ct_file_write_atomic(path, der, len, 0644, &e2) != CT_OK)
    CT_LOG_WARN_("snp", "event=kds_cache_write_failed reason=\"%s\"", e2.msg);
}

CT_RESULT snp_vcek_find(snp_ctx *c, const snp_report *r, snp_gen g, uint8_t **der, size_t *len,
                        ct_err *err) {
  CT_ENSURE(g != SNP_GEN_UNKNOWN, err, CT_EINVAL, "snp: processor generation unknown");
  char hwid[129];
  snp__hwid_hex(r, g, hwid);
  snp_tcb t = snp__lookup_tcb(r, g);
  ct_err e2;
  if (c->offline_dir) {
    if (snp__store_read(c->offline_dir, hwid, &t, true, der, len, &e2) == CT_OK) return CT_OK;
    if (g == SNP_GEN_TURIN) {
      /* The store's documentation names chips by their full hwID; accept both forms. */
      char full[129];
      ct_hex_into(r->raw + SNP_OFF_CHIP_ID, 64, full);
      if (snp__store_read(c->offline_dir, full, &t, true, der, len, &e2) == CT_OK) return CT_OK;
    }
  }
  if (c->kds_cache_dir && snp__store_read(c->kds_cache_dir, hwid, &t, false, der, len, &e2) == CT_OK)
    return CT_OK;
  if (!c->kds_url)
    return ct_fail(err, CT_ENOTFOUND,
                   "snp: no VCEK for chip %.16s... TCB bl%02u tee%02u snp%02u ucode%02u: not in the "
                   "evidence%s, and AMD KDS is not configured", hwid, t.bootloader, t.tee, t.snp,
                   t.microcode, c->offline_dir ? " or the offline store" : "");
  static const uint8_t zero[64];
  CT_ENSURE(memcmp(r->raw + SNP_OFF_CHIP_ID, zero, 64) != 0, err, CT_EINVAL,
            "snp: CHIP_ID is masked (all zero), so the VCEK cannot be fetched from AMD KDS");
  char url[1024];
  if (g == SNP_GEN_TURIN)
    snprintf(url, sizeof url, "%s/vcek/v1/%s/%s?fmcSPL=%02u&blSPL=%02u&teeSPL=%02u&snpSPL=%02u&ucodeSPL=%02u",
             c->kds_url, snp_gen_name(g), hwid, t.fmc, t.bootloader, t.tee, t.snp, t.microcode);
  else
    snprintf(url, sizeof url, "%s/vcek/v1/%s/%s?blSPL=%02u&teeSPL=%02u&snpSPL=%02u&ucodeSPL=%02u",
             c->kds_url, snp_gen_name(g), hwid, t.bootloader, t.tee, t.snp, t.microcode);
  if (snp__kds_mem_get(c, url, der, len)) return CT_OK;
  const char *urls[1] = {url};
  as_fetcher_config fc = {.name = "AMD KDS", .wait_ms = c->remote_wait_ms};
  as_fetcher *f = NULL;
  CT_GUARD(as_fetcher_get(&c->kds, &c->lock, &fc, &f, err));
  CT_GUARD(as_fetch(f, url, urls, 1, &snp__kds_opts, snp__kds_finish, c, err));
  CT_ENSURE(snp__kds_mem_get(c, url, der, len), err, CT_EIO,
            "AMD KDS: the VCEK for %s was fetched but is no longer cached; attest again", url);
  snp__kds_disk_put(c, hwid, &t, *der, *len);
  return CT_OK;
}
