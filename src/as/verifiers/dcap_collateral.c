/*
 * dcap_collateral.c - TDX collateral: loading, fetching, signature checks and TCB evaluation
 * (see dcap_collateral.h). The evaluation follows Intel's QVL rules for TDX (TCB Info v3):
 *  - the TCB level is the first (highest) one whose 16 SGX component SVNs and PCESVN are <= the
 *    PCK certificate's, and whose 16 TDX component SVNs are <= the TD report's TEE_TCB_SVN
 *    (bytes 0-1 are skipped when TEE_TCB_SVN[1] - the TDX module major version - is non-zero);
 *  - the TDX module is checked against tdxModule (major version 0) or the tdxModuleIdentities
 *    entry "TDX_<major, 2 hex digits>" whose level is chosen by ISVSVN = TEE_TCB_SVN[0];
 *  - the QE report is checked against the TD_QE identity (MISCSELECT/ATTRIBUTES under mask,
 *    MRSIGNER, ISVPRODID) and its level chosen by ISVSVN;
 *  - an out-of-date QE or module downgrades the platform status.
 */
#include "dcap_collateral.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_file.h"
#include "as_fetch.h"
#include "ct_http.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_reader.h"

#define DCAP__MAX_DEPTH 32

/* ---- time ----------------------------------------------------------------------------------- */

CT_RESULT dcap_parse_time(const char *s, time_t *out, ct_err *err) {
  struct tm tm = {0};
  char z = 0;
  int n = 0;
  if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &z, &n) != 7 ||
      z != 'Z' || s[n] != 0)
    return ct_fail(err, CT_EINVAL, "collateral: bad date \"%s\" (want YYYY-MM-DDTHH:MM:SSZ)",
                   s ? s : "(null)");
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  *out = timegm(&tm);
  return CT_OK;
}

void dcap_format_time(time_t t, char out[32]) {
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static time_t dcap__asn1_time(const ASN1_TIME *t) {
  struct tm tm;
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return timegm(&tm);
}

/* ---- raw span scanner ----------------------------------------------------------------------- */

static size_t dcap__ws(const char *b, size_t len, size_t i) {
  while (i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r')) i++;
  return i;
}

/* Skips a string starting at b[i] == '"'; returns the index after the closing quote or 0. */
static size_t dcap__skip_string(const char *b, size_t len, size_t i) {
  for (i++; i < len; i++) {
    if (b[i] == '\\') {
      i++;
      continue;
    }
    if (b[i] == '"') return i + 1;
  }
  return 0;
}

/* Skips one JSON value (structure only; ct_json_parse validates the document separately). */
static size_t dcap__skip_value(const char *b, size_t len, size_t i) {
  int depth = 0;
  while (i < len) {
    char c = b[i];
    if (c == '"') {
      i = dcap__skip_string(b, len, i);
      if (!i) return 0;
      if (depth == 0) return i;
      continue;
    }
    if (c == '{' || c == '[') {
      if (++depth > DCAP__MAX_DEPTH) return 0;
    } else if (c == '}' || c == ']') {
      if (--depth < 0) return 0;
      if (depth == 0) return i + 1;
    } else if (depth == 0 && (c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t')) {
      return i;
    }
    i++;
  }
  return depth == 0 ? i : 0;
}

CT_RESULT dcap_json_member_span(const char *b, size_t len, const char *key, const char **val,
                                size_t *val_len, ct_err *err) {
  size_t klen = strlen(key), i = dcap__ws(b, len, 0);
  const char *found = NULL;
  size_t found_len = 0;
  CT_ENSURE(i < len && b[i] == '{', err, CT_EINVAL, "collateral: body is not a JSON object");
  i = dcap__ws(b, len, i + 1);
  if (i < len && b[i] == '}') i = len; /* empty object */
  while (i < len) {
    CT_ENSURE(b[i] == '"', err, CT_EINVAL, "collateral: expected a member name at byte %zu", i);
    size_t kend = dcap__skip_string(b, len, i);
    CT_ENSURE(kend, err, CT_EINVAL, "collateral: unterminated member name");
    bool match = kend - i - 2 == klen && memcmp(b + i + 1, key, klen) == 0;
    i = dcap__ws(b, len, kend);
    CT_ENSURE(i < len && b[i] == ':', err, CT_EINVAL, "collateral: expected ':' at byte %zu", i);
    i = dcap__ws(b, len, i + 1);
    size_t vend = dcap__skip_value(b, len, i);
    CT_ENSURE(vend > i, err, CT_EINVAL, "collateral: malformed value at byte %zu", i);
    if (match) {
      CT_ENSURE(!found, err, CT_EINVAL, "collateral: member \"%s\" appears twice", key);
      found = b + i;
      found_len = vend - i;
    }
    i = dcap__ws(b, len, vend);
    CT_ENSURE(i < len, err, CT_EINVAL, "collateral: unterminated object");
    if (b[i] == '}') break;
    CT_ENSURE(b[i] == ',', err, CT_EINVAL, "collateral: expected ',' at byte %zu", i);
    i = dcap__ws(b, len, i + 1);
  }
  CT_ENSURE(found, err, CT_EINVAL, "collateral: no \"%s\" member", key);
  *val = found;
  *val_len = found_len;
  return CT_OK;
}

/* ---- signed JSON ---------------------------------------------------------------------------- */

static void dcap__signed_free(dcap_signed_json *s) {
  free(s->body);
  json_decref(s->doc);
  sk_X509_pop_free(s->chain, X509_free);
  memset(s, 0, sizeof *s);
}

void dcap_collateral_free(dcap_collateral *c) {
  if (!c) return;
  dcap__signed_free(&c->tcb);
  dcap__signed_free(&c->qe);
  X509_CRL_free(c->pck_crl);
  X509_CRL_free(c->root_crl);
  free(c);
}

static CT_RESULT dcap__load_chain(const char *pem, size_t len, STACK_OF(X509) **out, ct_err *err) {
  CT_ENSURE(len <= 65536, err, CT_ELIMIT, "collateral: issuer chain too large");
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  STACK_OF(X509) *sk = sk_X509_new_null();
  CT_ENSURE(bio && sk, err, CT_ENOMEM, "out of memory");
  X509 *c;
  while ((c = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
    if (sk_X509_num(sk) >= 8 || !sk_X509_push(sk, c)) {
      X509_free(c);
      break;
    }
  }
  ERR_clear_error();
  BIO_free(bio);
  if (sk_X509_num(sk) < 1) {
    sk_X509_free(sk);
    return ct_fail(err, CT_EINVAL, "collateral: issuer chain holds no PEM certificate");
  }
  *out = sk;
  return CT_OK;
}

CT_RESULT dcap_signed_json_parse(const char *body, size_t len, const char *member,
                                 const char *chain_pem, size_t chain_len, dcap_signed_json *out,
                                 ct_err *err) {
  memset(out, 0, sizeof *out);
  CT_ENSURE(len <= DCAP_COLLATERAL_MAX_BYTES, err, CT_ELIMIT, "collateral: %s body too large",
            member);
  dcap_signed_json s = {0};
  ct_status st = CT_OK;
  s.body = malloc(len + 1);
  CT_ENSURE(s.body, err, CT_ENOMEM, "out of memory");
  memcpy(s.body, body, len);
  s.body[len] = 0;
  s.body_len = len;
  CT_GUARD_GOTO(st, ct_json_parse(s.body, len, DCAP__MAX_DEPTH, &s.doc, err), fail);
  s.obj = json_object_get(s.doc, member);
  CT_ENSURE_GOTO(st, json_is_object(s.obj), fail, err, CT_EINVAL, "collateral: \"%s\" is not an object",
                 member);
  CT_GUARD_GOTO(st, dcap_json_member_span(s.body, len, member, &s.span, &s.span_len, err), fail);
  const char *sig = json_string_value(json_object_get(s.doc, "signature"));
  CT_ENSURE_GOTO(st, sig && strlen(sig) == 128, fail, err, CT_EINVAL,
                 "collateral: %s signature must be 128 hex digits", member);
  uint8_t *raw = NULL;
  size_t raw_len = 0;
  CT_GUARD_GOTO(st, ct_hex_decode(sig, 128, &raw, &raw_len, err), fail);
  memcpy(s.sig, raw, 64);
  free(raw);
  if (chain_pem) CT_GUARD_GOTO(st, dcap__load_chain(chain_pem, chain_len, &s.chain, err), fail);
  *out = s;
  return CT_OK;
fail:
  dcap__signed_free(&s);
  return ct_err_prefix(err, "%s: ", member);
}

static CT_RESULT dcap__load_crl(const uint8_t *data, size_t len, X509_CRL **out, ct_err *err) {
  const unsigned char *p = data;
  X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
  if (!crl) {
    BIO *b = BIO_new_mem_buf(data, (int)len);
    crl = b ? PEM_read_bio_X509_CRL(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
  }
  if (!crl) {
    /* PCCS returns CRLs hex-encoded in some versions. */
    uint8_t *raw = NULL;
    size_t rl = 0;
    ct_err e2;
    if (ct_hex_decode((const char *)data, len, &raw, &rl, &e2) == CT_OK) {
      p = raw;
      crl = d2i_X509_CRL(NULL, &p, (long)rl);
      free(raw);
    }
  }
  ERR_clear_error();
  CT_ENSURE(crl, err, CT_EINVAL, "collateral: CRL is neither DER, PEM nor hex DER");
  *out = crl;
  return CT_OK;
}

/* ---- directory source ----------------------------------------------------------------------- */

static CT_RESULT dcap__read_first(const char *dir, const char *const *names, size_t n, uint8_t **data,
                                  size_t *len, const char **which, ct_err *err) {
  char path[4096];
  for (size_t i = 0; i < n; i++) {
    if (!names[i]) continue;
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    ct_err e2;
    ct_status st = ct_file_read(path, DCAP_COLLATERAL_MAX_BYTES, data, len, &e2);
    if (st == CT_OK) {
      if (which) *which = names[i];
      return CT_OK;
    }
    if (st != CT_ENOTFOUND && st != CT_EIO) {
      *err = e2;
      return st;
    }
  }
  return ct_fail(err, CT_ENOTFOUND, "collateral: none of %s%s%s found in %s", names[0] ? names[0] : names[1],
                 n > 1 ? ", " : "", n > 1 ? names[n - 1] : "", dir);
}

CT_RESULT dcap_collateral_load_dir(const char *dir, const uint8_t fmspc[6], bool platform_ca,
                                   dcap_collateral **out, ct_err *err) {
  char fm[13], tcbname[64];
  ct_hex_into(fmspc, 6, fm);
  for (char *p = fm; *p; p++) *p = (char)toupper((unsigned char)*p);
  snprintf(tcbname, sizeof tcbname, "tcb-info-%s.json", fm);
  dcap_collateral *c = calloc(1, sizeof *c);
  CT_ENSURE(c, err, CT_ENOMEM, "out of memory");
  uint8_t *tcb = NULL, *qe = NULL, *tchain = NULL, *qchain = NULL, *crl = NULL;
  size_t tcb_len = 0, qe_len = 0, tchain_len = 0, qchain_len = 0, crl_len = 0;
  ct_status st = CT_OK;
  const char *tcb_names[] = {tcbname, "tcb-info.json", "tcbInfo.json"};
  const char *qe_names[] = {"qe-identity.json", "enclaveIdentity.json"};
  const char *tchain_names[] = {"tcb-info-issuer-chain.pem", "qe-identity-issuer-chain.pem"};
  const char *qchain_names[] = {"qe-identity-issuer-chain.pem", "tcb-info-issuer-chain.pem"};
  CT_GUARD_GOTO(st, dcap__read_first(dir, tcb_names, 3, &tcb, &tcb_len, NULL, err), out);
  CT_GUARD_GOTO(st, dcap__read_first(dir, qe_names, 2, &qe, &qe_len, NULL, err), out);
  CT_GUARD_GOTO(st, dcap__read_first(dir, tchain_names, 2, &tchain, &tchain_len, NULL, err), out);
  CT_GUARD_GOTO(st, dcap__read_first(dir, qchain_names, 2, &qchain, &qchain_len, NULL, err), out);
  CT_GUARD_GOTO(st, dcap_signed_json_parse((char *)tcb, tcb_len, "tcbInfo", (char *)tchain, tchain_len,
                                           &c->tcb, err), out);
  CT_GUARD_GOTO(st, dcap_signed_json_parse((char *)qe, qe_len, "enclaveIdentity", (char *)qchain,
                                           qchain_len, &c->qe, err), out);
  const char *pck_names[] = {platform_ca ? "pck-crl-platform.der" : "pck-crl-processor.der",
                             "pck.crl.der"};
  ct_err e2;
  if (dcap__read_first(dir, pck_names, 2, &crl, &crl_len, NULL, &e2) == CT_OK) {
    CT_GUARD_GOTO(st, dcap__load_crl(crl, crl_len, &c->pck_crl, err), out);
    free(crl);
    crl = NULL;
  }
  const char *root_names[] = {"root-ca.crl.der"};
  if (dcap__read_first(dir, root_names, 1, &crl, &crl_len, NULL, &e2) == CT_OK)
    CT_GUARD_GOTO(st, dcap__load_crl(crl, crl_len, &c->root_crl, err), out);
out:
  free(tcb);
  free(qe);
  free(tchain);
  free(qchain);
  free(crl);
  if (st) {
    dcap_collateral_free(c);
    return ct_err_prefix(err, "TDX collateral directory %s: ", dir);
  }
  *out = c;
  return CT_OK;
}

/* ---- PCS / PCCS source ---------------------------------------------------------------------- */

typedef struct dcap__http {
  ct_buf body;
  ct_buf chain; /* URL-decoded issuer chain header */
} dcap__http;

/* URL-decodes an issuer chain header value into `chain`. */
static CT_RESULT dcap__decode_chain(const char *v, ct_buf *chain, ct_err *err) {
  size_t len = strlen(v);
  for (size_t i = 0; i < len; i++) {
    char c = v[i];
    if (c == '%' && i + 2 < len && isxdigit((unsigned char)v[i + 1]) && isxdigit((unsigned char)v[i + 2])) {
      char hx[3] = {v[i + 1], v[i + 2], 0};
      c = (char)strtol(hx, NULL, 16);
      i += 2;
    }
    CT_GUARD(ct_buf_append(chain, &c, 1, err));
  }
  return CT_OK;
}

/* The body and issuer chain of one fetched response. */
static CT_RESULT dcap__take(const char *url, const char *header, as_fetch_resp *r, dcap__http *h, ct_err *err) {
  ct_buf_init(&h->body, DCAP_COLLATERAL_MAX_BYTES);
  ct_buf_init(&h->chain, 65536);
  if (r->st) return ct_fail(err, r->st, "collateral: %s", r->cause);
  /* The chain header, last occurrence winning; PCS v3 prefixes the TCB Info one with "SGX-". */
  const char *n, *v, *chain = NULL;
  size_t hl = strlen(header);
  for (size_t i = 0; as_fetch_resp_header_at(r, i, &n, &v); i++) {
    if (!strncasecmp(n, "SGX-", 4) && strncasecmp(header, "SGX-", 4) != 0) n += 4;
    if (strlen(n) == hl && !strncasecmp(n, header, hl)) chain = v;
  }
  ct_status st = CT_OK;
  if (chain && r->status == 200) {
    st = dcap__decode_chain(chain, &h->chain, err);
    if (st) ct_err_prefix(err, "collateral: GET %s: issuer chain header: ", url);
  }
  if (!st && r->status != 200)
    st = ct_fail(err, r->status == 404 ? CT_ENOTFOUND : CT_EIO, "collateral: GET %s: HTTP %ld", url, r->status);
  if (!st) {
    ct_buf_free(&h->body);
    h->body = r->body;
    r->body = (ct_buf){0};
    CT_ENSURE(h->body.len <= DCAP_COLLATERAL_MAX_BYTES, err, CT_ELIMIT, "collateral: GET %s: response too large", url);
  }
  return st;
}

static void dcap__http_free(dcap__http *h) {
  ct_buf_free(&h->body);
  ct_buf_free(&h->chain);
}

/* Writes body (and chain) to the cache; failures only warn. */
static void dcap__cache_put(const char *dir, const char *name, const ct_buf *b) {
  if (!dir || !b->len) return;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  ct_err e;
  if (ct_file_write_atomic(path, b->data, b->len, 0644, &e) != CT_OK)
    ct_log(CT_LOG_WARN, "tdx", "cannot write collateral cache %s: %s", path, e.msg);
}

static CT_RESULT dcap__fetched_one(const char *url, as_fetch_resp *r, const char *header, const char *cache_dir,
                                   const char *name, const char *chain_name, ct_buf *body, ct_buf *chain,
                                   ct_err *err) {
  dcap__http h;
  ct_status st = dcap__take(url, header, r, &h, err);
  if (st == CT_OK) {
    dcap__cache_put(cache_dir, name, &h.body);
    if (chain_name) dcap__cache_put(cache_dir, chain_name, &h.chain);
    *body = h.body;
    *chain = h.chain;
    return CT_OK;
  }
  dcap__http_free(&h);
  if (!cache_dir || st == CT_ENOTFOUND) return st;
  /* Service unreachable: fall back to the last response we saved. */
  char path[4096];
  uint8_t *data = NULL;
  size_t len = 0;
  ct_err e2;
  snprintf(path, sizeof path, "%s/%s", cache_dir, name);
  if (ct_file_read(path, DCAP_COLLATERAL_MAX_BYTES, &data, &len, &e2) != CT_OK) return st;
  ct_log(CT_LOG_WARN, "tdx", "PCCS unreachable, using cached collateral %s", name);
  ct_buf_init(body, DCAP_COLLATERAL_MAX_BYTES);
  ct_buf_init(chain, 65536);
  st = ct_buf_append(body, data, len, err);
  free(data);
  if (st == CT_OK && chain_name) {
    snprintf(path, sizeof path, "%s/%s", cache_dir, chain_name);
    if (ct_file_read(path, 65536, &data, &len, &e2) == CT_OK) {
      st = ct_buf_append(chain, data, len, err);
      free(data);
    }
  }
  return st;
}

CT_RESULT dcap_collateral_urls(const char *base_url, const uint8_t fmspc[6], bool platform_ca,
                               char urls[DCAP_COLLATERAL_GETS][DCAP_COLLATERAL_URL_MAX], ct_err *err) {
  char fm[13];
  ct_hex_into(fmspc, 6, fm);
  for (char *p = fm; *p; p++) *p = (char)toupper((unsigned char)*p);
  size_t bl = strlen(base_url);
  while (bl > 0 && base_url[bl - 1] == '/') bl--;
  CT_ENSURE(bl < 1500, err, CT_EINVAL, "collateral: PCCS URL too long");
  snprintf(urls[0], DCAP_COLLATERAL_URL_MAX, "%.*s/tdx/certification/v4/tcb?fmspc=%s", (int)bl, base_url, fm);
  snprintf(urls[1], DCAP_COLLATERAL_URL_MAX, "%.*s/tdx/certification/v4/qe/identity", (int)bl, base_url);
  snprintf(urls[2], DCAP_COLLATERAL_URL_MAX, "%.*s/sgx/certification/v4/pckcrl?ca=%s&encoding=der", (int)bl,
           base_url, platform_ca ? "platform" : "processor");
  return CT_OK;
}

CT_RESULT dcap_collateral_assemble(const char *cache_dir, const uint8_t fmspc[6], bool platform_ca,
                                   char urls[DCAP_COLLATERAL_GETS][DCAP_COLLATERAL_URL_MAX],
                                   as_fetch_resp *resps, dcap_collateral **out, ct_err *err) {
  char fm[13], name[64];
  ct_hex_into(fmspc, 6, fm);
  for (char *p = fm; *p; p++) *p = (char)toupper((unsigned char)*p);
  dcap_collateral *c = calloc(1, sizeof *c);
  CT_ENSURE(c, err, CT_ENOMEM, "out of memory");
  ct_buf body = {0}, chain = {0};
  ct_status st = CT_OK;
  snprintf(name, sizeof name, "tcb-info-%s.json", fm);
  CT_GUARD_GOTO(st, dcap__fetched_one(urls[0], &resps[0], "TCB-Info-Issuer-Chain", cache_dir, name,
                                      "tcb-info-issuer-chain.pem", &body, &chain, err), out);
  CT_GUARD_GOTO(st, dcap_signed_json_parse((char *)body.data, body.len, "tcbInfo", (char *)chain.data,
                                           chain.len, &c->tcb, err), out);
  ct_buf_free(&body);
  ct_buf_free(&chain);
  CT_GUARD_GOTO(st, dcap__fetched_one(urls[1], &resps[1], "SGX-Enclave-Identity-Issuer-Chain", cache_dir,
                                      "qe-identity.json", "qe-identity-issuer-chain.pem", &body, &chain, err), out);
  CT_GUARD_GOTO(st, dcap_signed_json_parse((char *)body.data, body.len, "enclaveIdentity",
                                           (char *)chain.data, chain.len, &c->qe, err), out);
  ct_buf_free(&body);
  ct_buf_free(&chain);
  /* The PCK CRL is optional: a PCCS without it still yields a verdict (without revocation). */
  ct_err e2;
  if (dcap__fetched_one(urls[2], &resps[2], "SGX-PCK-CRL-Issuer-Chain", cache_dir,
                        platform_ca ? "pck-crl-platform.der" : "pck-crl-processor.der", NULL, &body, &chain,
                        &e2) == CT_OK)
    CT_GUARD_GOTO(st, dcap__load_crl(body.data, body.len, &c->pck_crl, err), out);
  else
    ct_log(CT_LOG_WARN, "tdx", "no PCK CRL from PCCS: %s", e2.msg);
out:
  ct_buf_free(&body);
  ct_buf_free(&chain);
  if (st) {
    dcap_collateral_free(c);
    return st;
  }
  *out = c;
  return CT_OK;
}

/* ---- signature checks ----------------------------------------------------------------------- */

static CT_RESULT dcap__verify_signed(const dcap_signed_json *s, const char *what, X509 *root,
                                     STACK_OF(X509_CRL) *crls, time_t at, ct_err *err) {
  CT_ENSURE(s->chain && sk_X509_num(s->chain) >= 1, err, CT_EINVAL, "%s: no issuer chain", what);
  X509_STORE *store = X509_STORE_new();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  STACK_OF(X509) *untrusted = sk_X509_new_null();
  ct_status st = CT_OK;
  if (!store || !ctx || !untrusted || !X509_STORE_add_cert(store, root)) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto out;
  }
  for (int i = 1; i < sk_X509_num(s->chain); i++)
    if (X509_cmp(sk_X509_value(s->chain, i), root) != 0) sk_X509_push(untrusted, sk_X509_value(s->chain, i));
  X509_STORE_CTX_init(ctx, store, sk_X509_value(s->chain, 0), untrusted);
  if (crls && sk_X509_CRL_num(crls) > 0) {
    X509_STORE_CTX_set0_crls(ctx, crls);
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_CRL_CHECK);
  }
  if (at) X509_STORE_CTX_set_time(ctx, 0, at);
  if (X509_verify_cert(ctx) != 1) {
    int e = X509_STORE_CTX_get_error(ctx);
    st = ct_fail(err, CT_ECRYPTO, "%s: signing certificate does not chain to the Intel SGX Root CA: %s",
                 what, X509_verify_cert_error_string(e));
    ERR_clear_error();
    goto out;
  }
  st = dcap_ecdsa_p256_verify(X509_get0_pubkey(sk_X509_value(s->chain, 0)), (const uint8_t *)s->span,
                              s->span_len, s->sig, what, err);
out:
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  sk_X509_free(untrusted);
  return st;
}

CT_RESULT dcap_collateral_verify(const dcap_collateral *c, X509 *root, time_t at, ct_err *err) {
  STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
  CT_ENSURE(crls, err, CT_ENOMEM, "out of memory");
  if (c->root_crl) {
    /* The root CRL must be signed by the root. */
    if (X509_CRL_verify(c->root_crl, X509_get0_pubkey(root)) != 1) {
      sk_X509_CRL_free(crls);
      ERR_clear_error();
      return ct_fail(err, CT_ECRYPTO, "collateral: root CA CRL is not signed by the Intel SGX Root CA");
    }
    sk_X509_CRL_push(crls, c->root_crl);
  }
  ct_status st = dcap__verify_signed(&c->tcb, "TCB Info signature", root, crls, at, err);
  if (st == CT_OK) st = dcap__verify_signed(&c->qe, "QE Identity signature", root, crls, at, err);
  sk_X509_CRL_free(crls);
  return st;
}

/* ---- TCB evaluation ------------------------------------------------------------------------- */

void dcap_tcb_result_clear(dcap_tcb_result *r) {
  json_decref(r->advisory_ids);
  memset(r, 0, sizeof *r);
}

static bool dcap__hex_field(const json_t *obj, const char *key, uint8_t *out, size_t n) {
  const char *s = json_string_value(json_object_get(obj, key));
  if (!s || strlen(s) != 2 * n) return false;
  uint8_t *raw = NULL;
  size_t rl = 0;
  ct_err e;
  if (ct_hex_decode(s, 2 * n, &raw, &rl, &e) != CT_OK) return false;
  memcpy(out, raw, n);
  free(raw);
  return true;
}

static bool dcap__svns(const json_t *arr, uint8_t out[16]) {
  if (!json_is_array(arr) || json_array_size(arr) != 16) return false;
  for (size_t i = 0; i < 16; i++) {
    json_t *v = json_object_get(json_array_get(arr, i), "svn");
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 255) return false;
    out[i] = (uint8_t)json_integer_value(v);
  }
  return true;
}

/* Status ranks for the QE/module downgrade rules. */
static bool dcap__is(const char *s, const char *v) { return s && strcmp(s, v) == 0; }

static void dcap__add_advisories(json_t *dst, const json_t *level) {
  json_t *ids = json_object_get(level, "advisoryIDs");
  size_t i;
  json_t *v;
  json_array_foreach(ids, i, v) {
    if (!json_is_string(v)) continue;
    bool dup = false;
    size_t k;
    json_t *w;
    json_array_foreach(dst, k, w) if (json_equal(v, w)) dup = true;
    if (!dup) json_array_append(dst, v);
  }
}

/* Chooses the level for an ISVSVN from a tcbLevels array of {tcb:{isvsvn}, ...}. */
static const json_t *dcap__isv_level(const json_t *levels, long isvsvn) {
  size_t i;
  json_t *l;
  json_array_foreach(levels, i, l) {
    json_t *v = json_object_get(json_object_get(l, "tcb"), "isvsvn");
    if (json_is_integer(v) && json_integer_value(v) <= isvsvn) return l;
  }
  return NULL;
}

static void dcap__times(const json_t *obj, dcap_tcb_result *r) {
  time_t t;
  ct_err e;
  if (dcap_parse_time(json_string_value(json_object_get(obj, "issueDate")), &t, &e) == CT_OK) {
    if (!r->earliest_issue || t < r->earliest_issue) r->earliest_issue = t;
    if (t > r->latest_issue) r->latest_issue = t;
  }
  if (dcap_parse_time(json_string_value(json_object_get(obj, "nextUpdate")), &t, &e) == CT_OK)
    if (!r->earliest_expiration || t < r->earliest_expiration) r->earliest_expiration = t;
}

static void dcap__cert_times(STACK_OF(X509) *sk, dcap_tcb_result *r) {
  for (int i = 0; sk && i < sk_X509_num(sk); i++) {
    X509 *c = sk_X509_value(sk, i);
    time_t nb = dcap__asn1_time(X509_get0_notBefore(c)), na = dcap__asn1_time(X509_get0_notAfter(c));
    if (nb && (!r->earliest_issue || nb < r->earliest_issue)) r->earliest_issue = nb;
    if (nb > r->latest_issue) r->latest_issue = nb;
    if (na && (!r->earliest_expiration || na < r->earliest_expiration)) r->earliest_expiration = na;
  }
}

static void dcap__crl_times(X509_CRL *crl, long *num, dcap_tcb_result *r) {
  if (!crl) return;
  time_t lu = dcap__asn1_time(X509_CRL_get0_lastUpdate(crl));
  time_t nu = dcap__asn1_time(X509_CRL_get0_nextUpdate(crl));
  if (lu && (!r->earliest_issue || lu < r->earliest_issue)) r->earliest_issue = lu;
  if (lu > r->latest_issue) r->latest_issue = lu;
  if (nu && (!r->earliest_expiration || nu < r->earliest_expiration)) r->earliest_expiration = nu;
  ASN1_INTEGER *n = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
  if (n) {
    *num = ASN1_INTEGER_get(n);
    ASN1_INTEGER_free(n);
  }
}

static CT_RESULT dcap__tcb_evaluate(const dcap_collateral *c, const dcap_quote *q,
                                   const dcap_pck_info *pck, STACK_OF(X509) *pck_chain, time_t now,
                                   dcap_tcb_result *res, ct_err *err);

/* On failure nothing is left allocated in `res`. */
CT_RESULT dcap_tcb_evaluate(const dcap_collateral *c, const dcap_quote *q, const dcap_pck_info *pck,
                            STACK_OF(X509) *pck_chain, time_t now, dcap_tcb_result *res, ct_err *err) {
  memset(res, 0, sizeof *res);
  ct_status st = dcap__tcb_evaluate(c, q, pck, pck_chain, now, res, err);
  if (st) dcap_tcb_result_clear(res);
  return st;
}

static CT_RESULT dcap__tcb_evaluate(const dcap_collateral *c, const dcap_quote *q,
                                   const dcap_pck_info *pck, STACK_OF(X509) *pck_chain, time_t now,
                                   dcap_tcb_result *res, ct_err *err) {
  const json_t *ti = c->tcb.obj, *qi = c->qe.obj;
  const uint8_t *body = q->body;
  const uint8_t *tee_tcb_svn = body + DCAP_TD_TEE_TCB_SVN;

  /* TCB Info identity. */
  const char *id = json_string_value(json_object_get(ti, "id"));
  CT_ENSURE(dcap__is(id, "TDX"), err, CT_EINVAL, "TCB Info id is \"%s\", expected \"TDX\"", id ? id : "");
  CT_ENSURE(json_integer_value(json_object_get(ti, "version")) == 3, err, CT_EUNSUPPORTED,
            "TCB Info version %lld is not 3", (long long)json_integer_value(json_object_get(ti, "version")));
  uint8_t fmspc[6], pceid[2];
  CT_ENSURE(dcap__hex_field(ti, "fmspc", fmspc, 6), err, CT_EINVAL, "TCB Info: bad fmspc");
  CT_ENSURE(dcap__hex_field(ti, "pceId", pceid, 2), err, CT_EINVAL, "TCB Info: bad pceId");
  char want[13], got[13];
  ct_hex_into(pck->fmspc, 6, want);
  ct_hex_into(fmspc, 6, got);
  CT_ENSURE(memcmp(fmspc, pck->fmspc, 6) == 0, err, CT_EDENIED,
            "TCB Info is for FMSPC %s but the PCK certificate says %s", got, want);
  CT_ENSURE(memcmp(pceid, pck->pceid, 2) == 0, err, CT_EDENIED,
            "TCB Info PCEID does not match the PCK certificate");

  res->advisory_ids = json_array();
  CT_ENSURE(res->advisory_ids, err, CT_ENOMEM, "out of memory");

  /* TDX module identity. */
  uint8_t module_major = tee_tcb_svn[1];
  const char *module_status = NULL;
  const json_t *module = NULL;
  if (module_major == 0) {
    module = json_object_get(ti, "tdxModule");
  } else {
    char mid[16];
    snprintf(mid, sizeof mid, "TDX_%02X", module_major);
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(ti, "tdxModuleIdentities"), i, m) {
      if (dcap__is(json_string_value(json_object_get(m, "id")), mid)) module = m;
    }
    CT_ENSURE(module, err, CT_EDENIED, "TCB Info has no TDX module identity %s", mid);
  }
  if (module) {
    uint8_t mrsigner[48], attr[8], mask[8];
    CT_ENSURE(dcap__hex_field(module, "mrsigner", mrsigner, 48) &&
                  dcap__hex_field(module, "attributes", attr, 8) &&
                  dcap__hex_field(module, "attributesMask", mask, 8),
              err, CT_EINVAL, "TCB Info: malformed TDX module identity");
    CT_ENSURE(memcmp(mrsigner, body + DCAP_TD_MRSIGNER_SEAM, 48) == 0, err, CT_EDENIED,
              "TD report MRSIGNER_SEAM does not match the TDX module identity");
    for (int i = 0; i < 8; i++)
      CT_ENSURE((body[DCAP_TD_SEAM_ATTRIBUTES + i] & mask[i]) == attr[i], err, CT_EDENIED,
                "TD report SEAM_ATTRIBUTES do not match the TDX module identity");
    if (module_major != 0) {
      const json_t *ml = dcap__isv_level(json_object_get(module, "tcbLevels"), tee_tcb_svn[0]);
      CT_ENSURE(ml, err, CT_EDENIED, "TDX module SVN %u is below every TCB level of TDX_%02X",
                tee_tcb_svn[0], module_major);
      module_status = json_string_value(json_object_get(ml, "tcbStatus"));
      dcap__add_advisories(res->advisory_ids, ml);
    }
  }

  /* Platform TCB level. */
  const json_t *level = NULL;
  size_t i;
  json_t *l;
  json_array_foreach(json_object_get(ti, "tcbLevels"), i, l) {
    json_t *tcb = json_object_get(l, "tcb");
    uint8_t sgx[16], tdx[16];
    json_t *pcesvn = json_object_get(tcb, "pcesvn");
    CT_ENSURE(dcap__svns(json_object_get(tcb, "sgxtcbcomponents"), sgx) &&
                  dcap__svns(json_object_get(tcb, "tdxtcbcomponents"), tdx) && json_is_integer(pcesvn),
              err, CT_EINVAL, "TCB Info: malformed TCB level %zu", i);
    bool ok = json_integer_value(pcesvn) <= pck->pcesvn;
    for (int k = 0; ok && k < 16; k++) ok = sgx[k] <= pck->cpusvn[k];
    for (int k = module_major ? 2 : 0; ok && k < 16; k++) ok = tdx[k] <= tee_tcb_svn[k];
    if (ok) {
      level = l;
      break;
    }
  }
  CT_ENSURE(level, err, CT_EDENIED, "platform TCB (PCK CPUSVN/PCESVN %u, TEE_TCB_SVN) is below every "
            "TCB level of the TCB Info: TCB level not supported", pck->pcesvn);
  const char *status = json_string_value(json_object_get(level, "tcbStatus"));
  CT_ENSURE(status, err, CT_EINVAL, "TCB Info: level without tcbStatus");
  CT_GUARD(dcap_parse_time(json_string_value(json_object_get(level, "tcbDate")), &res->tcb_date, err));
  dcap__add_advisories(res->advisory_ids, level);

  /* QE identity. */
  const char *qid = json_string_value(json_object_get(qi, "id"));
  CT_ENSURE(dcap__is(qid, "TD_QE"), err, CT_EINVAL, "QE Identity id is \"%s\", expected \"TD_QE\"",
            qid ? qid : "");
  uint8_t misc[4], miscmask[4], qattr[16], qmask[16], qsigner[32];
  CT_ENSURE(dcap__hex_field(qi, "miscselect", misc, 4) && dcap__hex_field(qi, "miscselectMask", miscmask, 4) &&
                dcap__hex_field(qi, "attributes", qattr, 16) &&
                dcap__hex_field(qi, "attributesMask", qmask, 16) && dcap__hex_field(qi, "mrsigner", qsigner, 32),
            err, CT_EINVAL, "QE Identity: malformed fields");
  const uint8_t *qr = q->qe_report;
  for (int k = 0; k < 4; k++)
    CT_ENSURE((qr[DCAP_QE_MISCSELECT + k] & miscmask[k]) == misc[k], err, CT_EDENIED,
              "QE report MISCSELECT does not match the QE Identity");
  for (int k = 0; k < 16; k++)
    CT_ENSURE((qr[DCAP_QE_ATTRIBUTES + k] & qmask[k]) == qattr[k], err, CT_EDENIED,
              "QE report ATTRIBUTES do not match the QE Identity");
  CT_ENSURE(memcmp(qr + DCAP_QE_MRSIGNER, qsigner, 32) == 0, err, CT_EDENIED,
            "QE report MRSIGNER does not match the QE Identity");
  ct_reader qrd;
  ct_reader_init(&qrd, qr, DCAP_QE_REPORT_LEN, "QE report");
  uint16_t prodid = ct_peek_u16le(&qrd, DCAP_QE_ISVPRODID, "ISVPRODID");
  uint16_t isvsvn = ct_peek_u16le(&qrd, DCAP_QE_ISVSVN, "ISVSVN");
  CT_GUARD(ct_reader_status(&qrd, err));
  CT_ENSURE(json_integer_value(json_object_get(qi, "isvprodid")) == prodid, err, CT_EDENIED,
            "QE report ISVPRODID %u does not match the QE Identity", prodid);
  const json_t *ql = dcap__isv_level(json_object_get(qi, "tcbLevels"), isvsvn);
  CT_ENSURE(ql, err, CT_EDENIED, "QE ISVSVN %u is below every QE Identity TCB level", isvsvn);
  const char *qe_status = json_string_value(json_object_get(ql, "tcbStatus"));
  dcap__add_advisories(res->advisory_ids, ql);

  /* Convergence: a revoked part revokes; an out-of-date QE or module makes the result out of
   * date (keeping a configuration-needed platform's flag). */
  const char *final = status;
  if (dcap__is(qe_status, "Revoked") || dcap__is(module_status, "Revoked")) final = "Revoked";
  else if (dcap__is(qe_status, "OutOfDate") || dcap__is(module_status, "OutOfDate")) {
    if (dcap__is(status, "ConfigurationNeeded") || dcap__is(status, "ConfigurationAndSWHardeningNeeded") ||
        dcap__is(status, "OutOfDateConfigurationNeeded"))
      final = "OutOfDateConfigurationNeeded";
    else if (!dcap__is(status, "Revoked"))
      final = "OutOfDate";
  }
  snprintf(res->tcb_status, sizeof res->tcb_status, "%s", final);
  static const char *const ok_statuses[] = {
      "UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
      "OutOfDate", "OutOfDateConfigurationNeeded", "TDRelaunchAdvised",
      "TDRelaunchAdvisedConfigurationNeeded"};
  for (size_t k = 0; k < sizeof ok_statuses / sizeof ok_statuses[0]; k++)
    if (strcmp(final, ok_statuses[k]) == 0) res->acceptable = true;

  /* Collateral dates and numbers. */
  dcap__times(ti, res);
  dcap__times(qi, res);
  dcap__cert_times(c->tcb.chain, res);
  dcap__cert_times(c->qe.chain, res);
  dcap__cert_times(pck_chain, res);
  dcap__crl_times(c->pck_crl, &res->pck_crl_num, res);
  dcap__crl_times(c->root_crl, &res->root_ca_crl_num, res);
  long a = (long)json_integer_value(json_object_get(ti, "tcbEvaluationDataNumber"));
  long b = (long)json_integer_value(json_object_get(qi, "tcbEvaluationDataNumber"));
  res->tcb_eval_num = a < b ? a : b;
  res->collateral_expired = res->earliest_expiration && res->earliest_expiration < (now ? now : time(NULL));
  return CT_OK;
}

CT_RESULT dcap_supplemental_claims(const dcap_tcb_result *r, const dcap_pck_info *pck, X509 *root,
                                   json_t *claims, ct_err *err) {
  char t1[32], t2[32], t3[32], t4[32], ppid[33], rkid[97];
  dcap_format_time(r->earliest_issue, t1);
  dcap_format_time(r->latest_issue, t2);
  dcap_format_time(r->earliest_expiration, t3);
  dcap_format_time(r->tcb_date, t4);
  ct_hex_into(pck->ppid, 16, ppid);
  /* root_key_id: SHA-384 of the root CA's public key point, as DCAP computes it. */
  unsigned char *pt = NULL;
  size_t ptl = EVP_PKEY_get1_encoded_public_key(X509_get0_pubkey(root), &pt);
  uint8_t h[48];
  unsigned hl = 0;
  int ok = ptl > 0 && EVP_Digest(pt, ptl, h, &hl, EVP_sha384(), NULL);
  OPENSSL_free(pt);
  CT_ENSURE(ok, err, CT_EINTERNAL, "cannot compute root_key_id");
  ct_hex_into(h, 48, rkid);
  const char *sgx_type = pck->sgx_type == 0   ? "Standard"
                         : pck->sgx_type == 1 ? "Scalable"
                         : pck->sgx_type == 2 ? "Scalable with Integrity"
                                              : "Unknown";
  ct_status st = CT_OK;
  struct {
    const char *k;
    json_t *v;
  } kv[] = {
      {"earliest_issue_date", json_string(t1)},
      {"latest_issue_date", json_string(t2)},
      {"earliest_expiration_date", json_string(t3)},
      {"tcb_date", json_string(t4)},
      {"pck_crl_num", json_integer(r->pck_crl_num)},
      {"root_ca_crl_num", json_integer(r->root_ca_crl_num)},
      {"tcb_eval_num", json_integer(r->tcb_eval_num)},
      {"platform_provider_id", json_string(ppid)},
      {"sgx_type", json_string(sgx_type)},
      {"root_key_id", json_string(rkid)},
      {"tcb_status", json_string(r->tcb_status)},
      {"collateral_expiration_status", json_string(r->collateral_expired ? "1" : "0")},
      {"advisory_ids", r->advisory_ids ? json_deep_copy(r->advisory_ids) : json_array()},
  };
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
    if (st == CT_OK) st = ct_json_set_new(claims, kv[i].k, kv[i].v, err);
    else json_decref(kv[i].v);
  }
  if (st == CT_OK && pck->sgx_type > 0) {
    st = ct_json_set_new(claims, "is_dynamic_platform", json_boolean(pck->dynamic_platform), err);
    if (st == CT_OK) st = ct_json_set_new(claims, "is_cached_keys", json_boolean(pck->cached_keys), err);
    if (st == CT_OK) st = ct_json_set_new(claims, "is_smt_enabled", json_boolean(pck->smt_enabled), err);
  }
  return st;
}
