/*
 * tdx_bench: TDX quote verifications per second with the collateral cached in memory, next to
 * the quote's own signature chain alone and `openssl speed ecdsap256` from the same run.
 *
 * The real quote (vectors/tdx/tdx_quote_5.dat) is verified against Intel's sample TCB Info /
 * QE Identity, fitted to the quote's FMSPC and re-signed by a throw-away test CA (the published
 * samples are for another platform), so every verification does the full work: quote parse, PCK
 * chain to the Intel root, QE report and quote signatures, TCB evaluation, claims.
 */
#include <openssl/ecdsa.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_file.h"
#include "tdx.h"

static double bench__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *bench__read(const char *rel, size_t *len) {
  const char *dir = getenv("CT_VECTORS_DIR");
  char p[4096];
  snprintf(p, sizeof p, "%s/%s", dir ? dir : "../shared/vectors", rel);
  uint8_t *d = NULL;
  ct_err err;
  if (ct_file_read(p, 1 << 20, &d, len, &err) != CT_OK) {
    fprintf(stderr, "tdx_bench: %s\n", err.msg);
    exit(1);
  }
  return (char *)d;
}

static X509 *bench__cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *ikey, bool ca) {
  X509 *c = X509_new();
  X509_set_version(c, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c), ca ? 1 : 2);
  X509_gmtime_adj(X509_getm_notBefore(c), -3600);
  X509_gmtime_adj(X509_getm_notAfter(c), 86400L * 30);
  X509_NAME *n = X509_get_subject_name(c);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n);
  X509_set_pubkey(c, key);
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, issuer ? issuer : c, c, NULL, NULL, 0);
  X509_EXTENSION *bc = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  X509_add_ext(c, bc, -1);
  X509_EXTENSION_free(bc);
  X509_sign(c, ikey, EVP_sha256());
  return c;
}

static void bench__pem(BIO *b, X509 *c) { PEM_write_bio_X509(b, c); }

/* Writes {"member":inner,"signature":hex} signed with key to dir/name. */
static void bench__signed(const char *dir, const char *name, const char *member, const char *inner,
                          size_t ilen, EVP_PKEY *key) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  size_t dl = 0;
  EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key);
  EVP_DigestSign(md, NULL, &dl, (const uint8_t *)inner, ilen);
  uint8_t *der = malloc(dl);
  EVP_DigestSign(md, der, &dl, (const uint8_t *)inner, ilen);
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
  size_t n = ilen + strlen(member) + 200;
  char *body = malloc(n);
  int bl = snprintf(body, n, "{\"%s\":%.*s,\"signature\":\"%s\"}", member, (int)ilen, inner, hex);
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  ct_err err;
  if (ct_file_write_atomic(path, body, (size_t)bl, 0600, &err) != CT_OK) exit(1);
  free(body);
}

/* openssl speed ecdsap256 verify/s, from the same run. */
static double bench__openssl_speed(void) {
  FILE *f = popen("openssl speed -seconds 3 ecdsap256 2>/dev/null", "r");
  if (!f) return 0;
  char line[512];
  double sign = 0, verify = 0;
  while (fgets(line, sizeof line, f)) {
    fputs(line, stdout);
    if (strstr(line, "nistp256")) {
      char *s = strstr(line, ")");
      double a, b;
      if (s && sscanf(s + 1, " %lfs %lfs %lf %lf", &a, &b, &sign, &verify) == 4) continue;
    }
  }
  pclose(f);
  return verify;
}

int main(void) {
  size_t ql = 0, tl = 0, el = 0;
  uint8_t *quote = (uint8_t *)bench__read("tdx/tdx_quote_5.dat", &ql);
  char *tcb = bench__read("tdx/tcbInfo.json", &tl);
  char *qe = bench__read("tdx/enclaveIdentity.json", &el);
  ct_err err;
  dcap_quote q;
  STACK_OF(X509) *chain = NULL;
  dcap_pck_info pck;
  if (dcap_quote_parse(quote, ql, &q, &err) || dcap_pck_chain_load(&q, &chain, &err) ||
      dcap_pck_info_read(sk_X509_value(chain, 0), &pck, &err)) {
    fprintf(stderr, "tdx_bench: %s\n", err.msg);
    return 1;
  }
  /* Fit the TCB Info to this platform. */
  json_t *doc = json_loads(tcb, 0, NULL), *ti = json_object_get(doc, "tcbInfo");
  char fm[13];
  ct_hex_into(pck.fmspc, 6, fm);
  for (char *c = fm; *c; c++) *c = (char)(*c >= 'a' ? *c - 32 : *c);
  json_object_set_new(ti, "fmspc", json_string(fm));
  size_t i;
  json_t *l;
  json_array_foreach(json_object_get(ti, "tcbLevels"), i, l) {
    json_t *comps = json_object_get(json_object_get(l, "tcb"), "sgxtcbcomponents");
    for (size_t k = 0; k < 16; k++) json_object_set_new(json_array_get(comps, k), "svn", json_integer(pck.cpusvn[k]));
  }
  char *tinner = json_dumps(ti, JSON_COMPACT | JSON_PRESERVE_ORDER);
  const char *qinner;
  size_t qn;
  if (dcap_json_member_span(qe, el, "enclaveIdentity", &qinner, &qn, &err)) return 1;

  EVP_PKEY *rk = EVP_EC_gen("P-256"), *sk = EVP_EC_gen("P-256");
  X509 *root = bench__cert(rk, "Bench Root CA", NULL, rk, true);
  X509 *signer = bench__cert(sk, "Bench TCB Signing", root, rk, false);
  char dir[64];
  snprintf(dir, sizeof dir, "/tmp/tdx_bench_%d", (int)getpid());
  mkdir(dir, 0700);
  bench__signed(dir, "tcb-info.json", "tcbInfo", tinner, strlen(tinner), sk);
  bench__signed(dir, "qe-identity.json", "enclaveIdentity", qinner, qn, sk);
  BIO *b = BIO_new(BIO_s_mem());
  bench__pem(b, signer);
  bench__pem(b, root);
  char *pem = NULL;
  long pl = BIO_get_mem_data(b, &pem);
  char path[512];
  snprintf(path, sizeof path, "%s/tcb-info-issuer-chain.pem", dir);
  if (ct_file_write_atomic(path, pem, (size_t)pl, 0600, &err)) return 1;
  BIO *rb = BIO_new(BIO_s_mem());
  bench__pem(rb, root);
  char *root_pem = NULL;
  long rl = BIO_get_mem_data(rb, &root_pem);
  char *root_str = strndup(root_pem, (size_t)rl);

  as_verifier_config cfg = {.tdx_collateral_dir = dir};
  tdx_state *st = NULL;
  if (tdx_state_new(&cfg, root_str, 0, &st, &err)) {
    fprintf(stderr, "tdx_bench: %s\n", err.msg);
    return 1;
  }
  json_t *claims = NULL;
  if (tdx_verify_quote(st, quote, ql, NULL, 0, NULL, 0, NULL, NULL, &claims, &err)) {
    fprintf(stderr, "tdx_bench: warm-up verification failed: %s\n", err.msg);
    return 1;
  }
  json_decref(claims);

  /* Full verification, collateral cached. */
  int n = 0;
  double t0 = bench__now(), t1;
  do {
    if (tdx_verify_quote(st, quote, ql, NULL, 0, NULL, 0, NULL, NULL, &claims, &err)) return 1;
    json_decref(claims);
    n++;
    t1 = bench__now();
  } while (t1 - t0 < 3.0);
  double verify_per_s = n / (t1 - t0);

  /* Signature chain only (parse, PCK chain, QE report and quote signatures). */
  int m = 0;
  t0 = bench__now();
  do {
    dcap_quote q2;
    STACK_OF(X509) *c2 = NULL;
    if (dcap_quote_parse(quote, ql, &q2, &err) || dcap_pck_chain_load(&q2, &c2, &err) ||
        dcap_verify_chain(c2, NULL, 0, &err) || dcap_verify_signatures(&q2, sk_X509_value(c2, 0), &err))
      return 1;
    sk_X509_pop_free(c2, X509_free);
    m++;
    t1 = bench__now();
  } while (t1 - t0 < 3.0);
  double chain_per_s = m / (t1 - t0);

  printf("tdx: full verification (collateral cached): %d in 3 s = %.1f/s (%.3f ms each)\n", n, verify_per_s,
         1000.0 / verify_per_s);
  printf("tdx: uncached signature chain (PEM decode, PCK chain, QE report and quote signatures): %.1f/s\n", chain_per_s);
  double ossl = bench__openssl_speed();
  printf("RESULT tdx_verify_per_s=%.1f tdx_sigchain_per_s=%.1f openssl_ecdsap256_verify_per_s=%.1f "
         "ecdsa_verifies_per_tdx_verify=%.1f\n",
         verify_per_s, chain_per_s, ossl, verify_per_s > 0 ? ossl / verify_per_s : 0);

  tdx_state_free(st);
  snprintf(path, sizeof path, "%s/tcb-info.json", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/qe-identity.json", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/tcb-info-issuer-chain.pem", dir);
  unlink(path);
  rmdir(dir);
  BIO_free(b);
  BIO_free(rb);
  free(root_str);
  free(tinner);
  json_decref(doc);
  X509_free(root);
  X509_free(signer);
  EVP_PKEY_free(rk);
  EVP_PKEY_free(sk);
  sk_X509_pop_free(chain, X509_free);
  free(quote);
  free(tcb);
  free(qe);
  return 0;
}
