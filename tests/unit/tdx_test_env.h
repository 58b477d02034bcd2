/*
 * Test helpers shared by tdx_test.c and az_tdx_vtpm_test.c: loading real quotes, editing the
 * Intel collateral samples, and collateral directories signed by a throw-away test CA.
 */
#ifndef TDX_TEST_ENV_H
#define TDX_TEST_ENV_H

#include <ctype.h>
#include <jansson.h>
#include <openssl/ecdsa.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_file.h"
#include "tdx.h"

/* ---- TCB evaluation on the real quotes with FMSPC-adjusted Intel samples ---------------------- */

/* Replaces the first occurrence of `from` by `to` in a malloc'd copy of `in`. */
static inline char *tdx_test__replace(const char *in, const char *from, const char *to) {
  const char *at = strstr(in, from);
  if (!at) fail_msg("\"%s\" not found", from);
  size_t n = strlen(in) - strlen(from) + strlen(to);
  char *out = malloc(n + 1);
  size_t pre = (size_t)(at - in);
  memcpy(out, in, pre);
  strcpy(out + pre, to);
  strcat(out, at + strlen(from));
  return out;
}

static inline char *tdx_test__read_text(const char *rel) {
  uint8_t *d = NULL;
  size_t n = 0;
  char p[4096];
  ct_err err;
  if (!ct_test_vector_path(rel, p, sizeof p)) return NULL;
  CT_ASSERT_OK(ct_file_read(p, 1 << 20, &d, &n, &err), &err);
  return (char *)d;
}

/* Collateral from (possibly edited) texts, without signature checks. */
static inline dcap_collateral *tdx_test__col(const char *tcb, const char *qe) {
  dcap_collateral *c = calloc(1, sizeof *c);
  ct_err err;
  CT_ASSERT_OK(dcap_signed_json_parse(tcb, strlen(tcb), "tcbInfo", NULL, 0, &c->tcb, &err), &err);
  CT_ASSERT_OK(dcap_signed_json_parse(qe, strlen(qe), "enclaveIdentity", NULL, 0, &c->qe, &err), &err);
  return c;
}

typedef struct tdx_test_quote {
  uint8_t *raw;
  size_t len;
  dcap_quote q;
  STACK_OF(X509) *chain;
  dcap_pck_info pck;
  char fmspc[13];
} tdx_test_quote;

static inline bool tdx_test__load(const char *rel, tdx_test_quote *t) {
  memset(t, 0, sizeof *t);
  char p[4096];
  ct_err err;
  if (!ct_test_vector_path(rel, p, sizeof p)) return false;
  CT_ASSERT_OK(ct_file_read(p, 1 << 20, &t->raw, &t->len, &err), &err);
  CT_ASSERT_OK(dcap_quote_parse(t->raw, t->len, &t->q, &err), &err);
  CT_ASSERT_OK(dcap_pck_chain_load(&t->q, &t->chain, &err), &err);
  CT_ASSERT_OK(dcap_pck_info_read(sk_X509_value(t->chain, 0), &t->pck, &err), &err);
  ct_hex_into(t->pck.fmspc, 6, t->fmspc);
  for (char *c = t->fmspc; *c; c++) *c = (char)toupper((unsigned char)*c);
  return true;
}

static inline void tdx_test__unload(tdx_test_quote *t) {
  sk_X509_pop_free(t->chain, X509_free);
  free(t->raw);
}

/* Evaluates; returns the status or the error message. */
static inline CT_RESULT tdx_test__eval(tdx_test_quote *t, const char *tcb, const char *qe, time_t now,
                                dcap_tcb_result *r, ct_err *err) {
  dcap_collateral *c = tdx_test__col(tcb, qe);
  ct_status st = dcap_tcb_evaluate(c, &t->q, &t->pck, t->chain, now, r, err);
  dcap_collateral_free(c);
  return st;
}

/* The samples' SGX components are for another CPU: rewrite every level's 16 SGX component SVNs
 * to the PCK certificate's so that the level choice depends on PCESVN and TDX components. */
static inline char *tdx_test__fit_sgx(const char *tcb, const uint8_t cpusvn[16]) {
  json_t *doc = json_loads(tcb, JSON_DECODE_ANY, NULL);
  assert_non_null(doc);
  size_t i;
  json_t *l;
  json_array_foreach(json_object_get(json_object_get(doc, "tcbInfo"), "tcbLevels"), i, l) {
    json_t *comps = json_object_get(json_object_get(l, "tcb"), "sgxtcbcomponents");
    for (size_t k = 0; k < 16; k++)
      json_object_set_new(json_array_get(comps, k), "svn", json_integer(cpusvn[k]));
  }
  char *out = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(doc);
  return out;
}

/* ---- end to end through the verifier interface, with collateral signed by a test CA ----------- */

static inline EVP_PKEY *tdx_test__key(void) {
  EVP_PKEY *k = EVP_EC_gen("P-256");
  assert_non_null(k);
  return k;
}

static inline X509 *tdx_test__cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, bool ca) {
  X509 *c = X509_new();
  X509_set_version(c, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c), ca ? 1 : 2);
  X509_gmtime_adj(X509_getm_notBefore(c), -3600);
  X509_gmtime_adj(X509_getm_notAfter(c), 3600L * 24 * 365);
  X509_NAME *n = X509_get_subject_name(c);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n);
  X509_set_pubkey(c, key);
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, issuer ? issuer : c, c, NULL, NULL, 0);
  X509_EXTENSION *bc = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  X509_add_ext(c, bc, -1);
  X509_EXTENSION_free(bc);
  assert_true(X509_sign(c, issuer_key, EVP_sha256()) > 0);
  return c;
}

static inline char *tdx_test__pem(X509 *c) {
  BIO *b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, c);
  char *p = NULL;
  long n = BIO_get_mem_data(b, &p);
  char *out = strndup(p, (size_t)n);
  BIO_free(b);
  return out;
}

/* {"<member>":<inner>,"signature":"<r||s hex>"} signed over the exact bytes of inner. */
static inline char *tdx_test__sign_body(const char *member, const char *inner, EVP_PKEY *key) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  size_t dl = 0;
  assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
  assert_int_equal(EVP_DigestSign(md, NULL, &dl, (const uint8_t *)inner, strlen(inner)), 1);
  uint8_t *der = malloc(dl);
  assert_int_equal(EVP_DigestSign(md, der, &dl, (const uint8_t *)inner, strlen(inner)), 1);
  EVP_MD_CTX_free(md);
  const uint8_t *p = der;
  ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)dl);
  uint8_t rs[64];
  BN_bn2binpad(ECDSA_SIG_get0_r(sig), rs, 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(sig), rs + 32, 32);
  ECDSA_SIG_free(sig);
  free(der);
  char hex[129];
  ct_hex_into(rs, 64, hex);
  size_t n = strlen(member) + strlen(inner) + 200;
  char *out = malloc(n);
  snprintf(out, n, "{\"%s\":%s,\"signature\":\"%s\"}", member, inner, hex);
  return out;
}

static inline char *tdx_test__inner(const char *body, const char *member) {
  const char *v;
  size_t n;
  ct_err err;
  CT_ASSERT_OK(dcap_json_member_span(body, strlen(body), member, &v, &n, &err), &err);
  return strndup(v, n);
}

typedef struct tdx_test_env {
  char dir[256];
  char *root_pem;
  EVP_PKEY *sign_key, *root_key;
  X509 *root, *signer;
} tdx_test_env;

static inline void tdx_test__write(const char *dir, const char *name, const char *text) {
  char p[512];
  ct_err err;
  snprintf(p, sizeof p, "%s/%s", dir, name);
  CT_ASSERT_OK(ct_file_write_atomic(p, text, strlen(text), 0600, &err), &err);
}

/* Test-CA collateral fitted to quote `t` (FMSPC, SGX components, and for TDX 1.0 the TDX
 * components), written to a fresh directory. */
static inline bool tdx_test__env(tdx_test_quote *t, tdx_test_env *env) {
  char *tcb0 = tdx_test__read_text("tdx/tcbInfo.json"), *qe0 = tdx_test__read_text("tdx/enclaveIdentity.json");
  if (!tcb0 || !qe0) return false;
  char fm[64];
  snprintf(fm, sizeof fm, "\"fmspc\":\"%s\"", t->fmspc);
  char *tf = tdx_test__replace(tcb0, "\"fmspc\":\"00A06D080000\"", fm);
  char *tcb = tdx_test__fit_sgx(tf, t->pck.cpusvn);
  if (t->q.body[1] == 0) { /* TDX 1.0: fit the TDX components to TEE_TCB_SVN as well */
    json_t *doc = json_loads(tcb, 0, NULL);
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(json_object_get(doc, "tcbInfo"), "tcbLevels"), i, l) {
      json_t *comps = json_object_get(json_object_get(l, "tcb"), "tdxtcbcomponents");
      for (size_t k = 0; k < 16; k++)
        json_object_set_new(json_array_get(comps, k), "svn", json_integer(t->q.body[k]));
    }
    free(tcb);
    tcb = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
  }
  EVP_PKEY *root_key = tdx_test__key();
  env->sign_key = tdx_test__key();
  X509 *root = tdx_test__cert(root_key, "Test SGX Root CA", NULL, root_key, true);
  X509 *signer = tdx_test__cert(env->sign_key, "Test SGX TCB Signing", root, root_key, false);
  env->root_pem = tdx_test__pem(root);
  char *signer_pem = tdx_test__pem(signer);
  char *chain = malloc(strlen(signer_pem) + strlen(env->root_pem) + 1);
  strcpy(chain, signer_pem);
  strcat(chain, env->root_pem);
  char *ti = tdx_test__inner(tcb, "tcbInfo"), *qi = tdx_test__inner(qe0, "enclaveIdentity");
  char *tbody = tdx_test__sign_body("tcbInfo", ti, env->sign_key);
  char *qbody = tdx_test__sign_body("enclaveIdentity", qi, env->sign_key);
  snprintf(env->dir, sizeof env->dir, "/tmp/tdx_e2e_%d", (int)getpid());
  mkdir(env->dir, 0700);
  tdx_test__write(env->dir, "tcb-info.json", tbody);
  tdx_test__write(env->dir, "qe-identity.json", qbody);
  tdx_test__write(env->dir, "tcb-info-issuer-chain.pem", chain);
  free(tcb0); free(qe0); free(tf); free(tcb); free(signer_pem); free(chain);
  free(ti); free(qi); free(tbody); free(qbody);
  env->root = root;
  env->signer = signer;
  env->root_key = root_key;
  return true;
}

static inline void tdx_test__env_free(tdx_test_env *env) {
  const char *names[] = {"tcb-info.json", "qe-identity.json", "tcb-info-issuer-chain.pem", "root-ca.crl.der"};
  char p[512];
  for (size_t i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/%s", env->dir, names[i]);
    unlink(p);
  }
  rmdir(env->dir);
  free(env->root_pem);
  EVP_PKEY_free(env->sign_key);
  EVP_PKEY_free(env->root_key);
  X509_free(env->root);
  X509_free(env->signer);
}

#endif
