/*
 * dcap_quote.c - DCAP quote v4/v5 parsing and signature chain (see dcap_quote.h).
 *
 * Layout (Intel SGX DCAP "ECDSA Quote Library API", quote format v4/v5):
 *   header[48] | v5 only: u16 body type, u32 body size | body | u32 sig_data_len | sig_data
 *   sig_data = signature[64] | attestation key[64] | u16 cert type (6) | u32 size | cert data
 *   type 6   = QE report[384] | QE report signature[64] | u16 auth len | auth data |
 *              u16 cert type (5) | u32 size | PEM PCK chain
 */
#include "dcap_quote.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#include "ct_digest.h"
#include "ct_mem.h"
#include "ct_reader.h"

CT_RESULT dcap_quote_parse(const uint8_t *data, size_t len, dcap_quote *q, ct_err *err) {
  memset(q, 0, sizeof *q);
  CT_ENSURE(len <= DCAP_QUOTE_MAX_BYTES, err, CT_ELIMIT, "TDX quote is %zu bytes (limit %u)", len,
            DCAP_QUOTE_MAX_BYTES);
  CT_ENSURE(len >= DCAP_HEADER_LEN, err, CT_EINVAL, "TDX quote: %zu bytes, too short for a header",
            len);
  ct_reader rd;
  ct_reader_init(&rd, data, len, "TDX quote");
  dcap_quote r = {.raw = data, .len = len, .header = data};
  r.version = ct_read_u16le(&rd, "version");
  r.att_key_type = ct_read_u16le(&rd, "attestation key type");
  r.tee_type = ct_read_u32le(&rd, "TEE type");
  ct_read_skip(&rd, DCAP_HEADER_LEN - 8, "header");
  CT_ENSURE(r.version == 4 || r.version == 5, err, CT_EUNSUPPORTED,
            "TDX quote: version %u is not supported (4 or 5)", r.version);
  CT_ENSURE(r.tee_type == DCAP_TEE_TDX, err, CT_EUNSUPPORTED,
            "TDX quote: TEE type %#x is not TDX (0x81)", r.tee_type);
  CT_ENSURE(r.att_key_type == 2, err, CT_EUNSUPPORTED,
            "TDX quote: attestation key type %u is not ECDSA-256-with-P-256 (2)", r.att_key_type);
  if (r.version == 4) {
    r.body_type = 2;
    r.body_size = DCAP_TDX10_BODY_LEN;
  } else {
    r.v5_type_size = ct_peek_bytes(&rd, ct_reader_offset(&rd), 6, "v5 body descriptor");
    r.body_type = ct_read_u16le(&rd, "v5 body type");
    r.body_size = ct_read_u32le(&rd, "v5 body size");
    CT_GUARD(ct_reader_status(&rd, err));
    CT_ENSURE((r.body_type == 2 && r.body_size == DCAP_TDX10_BODY_LEN) ||
                  (r.body_type == 3 && r.body_size == DCAP_TDX15_BODY_LEN),
              err, CT_EUNSUPPORTED, "TDX quote v5: body type %u with size %u is not a TD report "
              "(2/584 or 3/648)", r.body_type, r.body_size);
  }
  r.body = ct_read_bytes(&rd, r.body_size, "TD report body");
  r.signed_len = ct_reader_offset(&rd);
  uint32_t sig_len = ct_read_u32le(&rd, "signature data length");
  CT_GUARD(ct_reader_status(&rd, err));
  size_t off = ct_reader_offset(&rd);
  CT_ENSURE(sig_len <= len - off, err, CT_EINVAL,
            "TDX quote: signature data length %u exceeds the %zu remaining bytes", sig_len, len - off);
  /* Some attesters (Azure's paravisor) hand out the quote in a zero-padded buffer. */
  for (size_t i = off + sig_len; i < len; i++)
    CT_ENSURE(data[i] == 0, err, CT_EINVAL, "TDX quote: non-zero bytes after the signature data");
  r.len = off + sig_len;
  CT_ENSURE(sig_len >= 64 + 64 + 6, err, CT_EINVAL, "TDX quote: signature data too short");
  ct_reader sig = ct_reader_sub(&rd, sig_len, "TDX quote signature data");
  r.signature = ct_read_bytes(&sig, 64, "signature");
  r.att_key = ct_read_bytes(&sig, 64, "attestation key");
  uint16_t ctype = ct_read_u16le(&sig, "certification data type");
  uint32_t csize = ct_read_u32le(&sig, "certification data size");
  CT_ENSURE(ctype == 6, err, CT_EUNSUPPORTED,
            "TDX quote: certification data type %u is not 6 (QE report certification data)", ctype);
  CT_ENSURE(csize == ct_reader_remaining(&sig), err, CT_EINVAL,
            "TDX quote: certification data size %u does not match the %zu remaining bytes", csize,
            ct_reader_remaining(&sig));
  CT_ENSURE(csize >= DCAP_QE_REPORT_LEN + 64 + 2, err, CT_EINVAL,
            "TDX quote: QE report certification data too short");
  r.qe_report = ct_read_bytes(&sig, DCAP_QE_REPORT_LEN, "QE report");
  r.qe_report_sig = ct_read_bytes(&sig, 64, "QE report signature");
  r.qe_auth_len = ct_read_u16le(&sig, "QE authentication data length");
  CT_ENSURE(ct_reader_remaining(&sig) >= r.qe_auth_len + 6u, err, CT_EINVAL,
            "TDX quote: QE authentication data (%zu bytes) runs past the quote", r.qe_auth_len);
  r.qe_auth = ct_read_bytes(&sig, r.qe_auth_len, "QE authentication data");
  uint16_t itype = ct_read_u16le(&sig, "inner certification data type");
  uint32_t isize = ct_read_u32le(&sig, "PCK chain size");
  CT_ENSURE(itype == 5, err, CT_EUNSUPPORTED,
            "TDX quote: inner certification data type %u is not 5 (PCK certificate chain)", itype);
  CT_ENSURE(isize == ct_reader_remaining(&sig), err, CT_EINVAL,
            "TDX quote: PCK chain size %u does not match the %zu remaining bytes", isize,
            ct_reader_remaining(&sig));
  CT_ENSURE(isize > 0, err, CT_EINVAL, "TDX quote: empty PCK certificate chain");
  r.pck_chain = ct_read_bytes(&sig, isize, "PCK certificate chain");
  r.pck_chain_len = isize;
  CT_GUARD(ct_reader_status(&sig, err));
  *q = r;
  return CT_OK;
}

CT_RESULT dcap_pck_chain_load(const dcap_quote *q, STACK_OF(X509) **chain, ct_err *err) {
  CT_ENSURE(q->pck_chain_len <= INT32_MAX, err, CT_ELIMIT, "PCK chain too large");
  BIO *bio = BIO_new_mem_buf(q->pck_chain, (int)q->pck_chain_len);
  STACK_OF(X509) *sk = sk_X509_new_null();
  ct_status st = CT_OK;
  if (!bio || !sk) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto out;
  }
  for (;;) {
    X509 *c = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (!c) break;
    if (sk_X509_num(sk) >= 8 || !sk_X509_push(sk, c)) {
      X509_free(c);
      st = ct_fail(err, CT_ELIMIT, "PCK chain: more than 8 certificates");
      goto out;
    }
  }
  ERR_clear_error();
  if (sk_X509_num(sk) < 2) {
    st = ct_fail(err, CT_EINVAL, "PCK chain: %d certificate(s) in the certification data, need the "
                 "PCK certificate and its issuer", sk_X509_num(sk));
    goto out;
  }
  *chain = sk;
  sk = NULL;
out:
  BIO_free(bio);
  sk_X509_pop_free(sk, X509_free);
  return st;
}

/* ---- SGX extension (1.2.840.113741.1.13.1): SEQUENCE OF SEQUENCE { OID, value } ------------- */

static const char *const dcap__sgx_oid = "1.2.840.113741.1.13.1";

/* Reads an INTEGER, ENUMERATED or BOOLEAN value as a long; false for any other type (OCTET
 * STRING values go through dcap__octets) or an integer that does not fit. */
static bool dcap__int_value(const ASN1_TYPE *v, long *out) {
  if (v->type == V_ASN1_INTEGER) {
    int64_t x;
    if (ASN1_INTEGER_get_int64(&x, v->value.integer) != 1) return false;
    *out = (long)x;
    return true;
  }
  if (v->type == V_ASN1_ENUMERATED) {
    int64_t x;
    if (ASN1_ENUMERATED_get_int64(&x, v->value.enumerated) != 1) return false;
    *out = (long)x;
    return true;
  }
  if (v->type == V_ASN1_BOOLEAN) {
    *out = v->value.boolean ? 1 : 0;
    return true;
  }
  return false;
}

static bool dcap__octets(const ASN1_TYPE *v, uint8_t *out, size_t n) {
  if (v->type != V_ASN1_OCTET_STRING || (size_t)ASN1_STRING_length(v->value.octet_string) != n)
    return false;
  memcpy(out, ASN1_STRING_get0_data(v->value.octet_string), n);
  return true;
}

/* Parses a SEQUENCE OF SEQUENCE {OID, ANY} into a stack of (oid text, value) pairs, calling
 * `fn` for each. Nesting depth is bounded by the callers (two levels). */
typedef bool (*dcap__entry_fn)(const char *oid, const ASN1_TYPE *value, void *ctx);

static bool dcap__walk(const uint8_t *der, long len, dcap__entry_fn fn, void *ctx) {
  const unsigned char *p = der;
  STACK_OF(ASN1_TYPE) *seq = d2i_ASN1_SEQUENCE_ANY(NULL, &p, len);
  if (!seq) return false;
  bool ok = p == der + len && sk_ASN1_TYPE_num(seq) <= 64;
  for (int i = 0; ok && i < sk_ASN1_TYPE_num(seq); i++) {
    ASN1_TYPE *item = sk_ASN1_TYPE_value(seq, i);
    if (item->type != V_ASN1_SEQUENCE) {
      ok = false;
      break;
    }
    const unsigned char *q = ASN1_STRING_get0_data(item->value.sequence);
    long ql = ASN1_STRING_length(item->value.sequence);
    const unsigned char *qs = q;
    STACK_OF(ASN1_TYPE) *pair = d2i_ASN1_SEQUENCE_ANY(NULL, &q, ql);
    if (!pair || q != qs + ql || sk_ASN1_TYPE_num(pair) != 2 ||
        sk_ASN1_TYPE_value(pair, 0)->type != V_ASN1_OBJECT) {
      sk_ASN1_TYPE_pop_free(pair, ASN1_TYPE_free);
      ok = false;
      break;
    }
    char oid[96];
    if (OBJ_obj2txt(oid, sizeof oid, sk_ASN1_TYPE_value(pair, 0)->value.object, 1) <= 0) oid[0] = 0;
    ok = fn(oid, sk_ASN1_TYPE_value(pair, 1), ctx);
    sk_ASN1_TYPE_pop_free(pair, ASN1_TYPE_free);
  }
  sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
  return ok;
}

typedef struct dcap__pck_ctx {
  dcap_pck_info *info;
  unsigned seen; /* bit per required field */
} dcap__pck_ctx;

static bool dcap__tcb_entry(const char *oid, const ASN1_TYPE *v, void *vctx) {
  dcap__pck_ctx *c = vctx;
  const char *pre = "1.2.840.113741.1.13.1.2.";
  if (strncmp(oid, pre, strlen(pre)) != 0) return true;
  long n = atol(oid + strlen(pre)), x = 0;
  if (n >= 1 && n <= 16) {
    if (!dcap__int_value(v, &x) || x < 0 || x > 255) return false;
    c->info->cpusvn[n - 1] = (uint8_t)x;
    c->seen |= 1u << 8;
  } else if (n == 17) {
    if (!dcap__int_value(v, &x) || x < 0 || x > 65535) return false;
    c->info->pcesvn = (uint16_t)x;
    c->seen |= 1u << 9;
  }
  return true;
}

static bool dcap__config_entry(const char *oid, const ASN1_TYPE *v, void *vctx) {
  dcap__pck_ctx *c = vctx;
  long x = 0;
  if (!dcap__int_value(v, &x)) return true;
  if (strcmp(oid, "1.2.840.113741.1.13.1.7.1") == 0) c->info->dynamic_platform = x != 0;
  else if (strcmp(oid, "1.2.840.113741.1.13.1.7.2") == 0) c->info->cached_keys = x != 0;
  else if (strcmp(oid, "1.2.840.113741.1.13.1.7.3") == 0) c->info->smt_enabled = x != 0;
  return true;
}

static bool dcap__sgx_entry(const char *oid, const ASN1_TYPE *v, void *vctx) {
  dcap__pck_ctx *c = vctx;
  dcap_pck_info *i = c->info;
  long x = 0;
  if (strcmp(oid, "1.2.840.113741.1.13.1.1") == 0) {
    if (!dcap__octets(v, i->ppid, 16)) return false;
    c->seen |= 1u << 0;
  } else if (strcmp(oid, "1.2.840.113741.1.13.1.2") == 0) {
    if (v->type != V_ASN1_SEQUENCE) return false;
    if (!dcap__walk(ASN1_STRING_get0_data(v->value.sequence), ASN1_STRING_length(v->value.sequence),
                    dcap__tcb_entry, c))
      return false;
    c->seen |= 1u << 1;
  } else if (strcmp(oid, "1.2.840.113741.1.13.1.3") == 0) {
    if (!dcap__octets(v, i->pceid, 2)) return false;
    c->seen |= 1u << 2;
  } else if (strcmp(oid, "1.2.840.113741.1.13.1.4") == 0) {
    if (!dcap__octets(v, i->fmspc, 6)) return false;
    c->seen |= 1u << 3;
  } else if (strcmp(oid, "1.2.840.113741.1.13.1.5") == 0) {
    if (!dcap__int_value(v, &x)) return false;
    i->sgx_type = (int)x;
    c->seen |= 1u << 4;
  } else if (strcmp(oid, "1.2.840.113741.1.13.1.6") == 0) {
    if (!dcap__octets(v, i->platform_instance_id, 16)) return false;
    i->has_instance_id = true;
  } else if (strcmp(oid, "1.2.840.113741.1.13.1.7") == 0) {
    if (v->type != V_ASN1_SEQUENCE) return false;
    if (!dcap__walk(ASN1_STRING_get0_data(v->value.sequence), ASN1_STRING_length(v->value.sequence),
                    dcap__config_entry, c))
      return false;
    i->has_config = true;
  }
  return true;
}

CT_RESULT dcap_pck_info_read(X509 *pck, dcap_pck_info *info, ct_err *err) {
  memset(info, 0, sizeof *info);
  ASN1_OBJECT *obj = OBJ_txt2obj(dcap__sgx_oid, 1);
  CT_ENSURE(obj, err, CT_ENOMEM, "out of memory");
  int idx = X509_get_ext_by_OBJ(pck, obj, -1);
  ASN1_OBJECT_free(obj);
  CT_ENSURE(idx >= 0, err, CT_EINVAL, "PCK certificate has no SGX extension (%s)", dcap__sgx_oid);
  ASN1_OCTET_STRING *val = X509_EXTENSION_get_data(X509_get_ext(pck, idx));
  dcap__pck_ctx c = {.info = info};
  bool ok = dcap__walk(ASN1_STRING_get0_data(val), ASN1_STRING_length(val), dcap__sgx_entry, &c);
  CT_ENSURE(ok, err, CT_EINVAL, "PCK certificate: malformed SGX extension");
  CT_ENSURE((c.seen & 0x31f) == 0x31f, err, CT_EINVAL,
            "PCK certificate: SGX extension lacks PPID, TCB, PCEID, FMSPC or SGX type");
  X509_NAME *issuer = X509_get_issuer_name(pck);
  char cn[128] = "";
  X509_NAME_get_text_by_NID(issuer, NID_commonName, cn, sizeof cn);
  info->platform_ca = strstr(cn, "Platform") != NULL;
  return CT_OK;
}

CT_RESULT dcap_verify_chain(STACK_OF(X509) *chain, STACK_OF(X509_CRL) *crls, time_t at, ct_err *err) {
  X509 *root = NULL;
  CT_GUARD(dcap_intel_root(&root, err));
  ct_status st = dcap_verify_chain_to(chain, root, crls, at, err);
  X509_free(root);
  return st;
}

CT_RESULT dcap_verify_chain_to(STACK_OF(X509) *chain, X509 *root, STACK_OF(X509_CRL) *crls,
                               time_t at, ct_err *err) {
  X509_STORE *store = X509_STORE_new();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  STACK_OF(X509) *untrusted = sk_X509_new_null();
  ct_status st = CT_OK;
  if (!store || !ctx || !untrusted || !X509_STORE_add_cert(store, root)) {
    st = ct_fail_ossl(err, CT_ENOMEM, "PCK chain: cannot set up the certificate store");
    goto out;
  }
  /* Everything after the leaf is an untrusted intermediate, except a copy of the root itself. */
  for (int i = 1; i < sk_X509_num(chain); i++) {
    X509 *c = sk_X509_value(chain, i);
    if (X509_cmp(c, root) == 0) continue;
    if (!sk_X509_push(untrusted, c)) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      goto out;
    }
  }
  if (!X509_STORE_CTX_init(ctx, store, sk_X509_value(chain, 0), untrusted)) {
    st = ct_fail_ossl(err, CT_EINTERNAL, "PCK chain: cannot initialise verification");
    goto out;
  }
  if (crls && sk_X509_CRL_num(crls) > 0) {
    X509_STORE_CTX_set0_crls(ctx, crls);
    X509_STORE_CTX_set_flags(ctx, sk_X509_CRL_num(crls) > 1
                                      ? X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL
                                      : X509_V_FLAG_CRL_CHECK);
  }
  if (at) X509_STORE_CTX_set_time(ctx, 0, at);
  if (X509_verify_cert(ctx) != 1) {
    int e = X509_STORE_CTX_get_error(ctx);
    st = ct_fail(err, e == X509_V_ERR_CERT_REVOKED ? CT_EDENIED : CT_ECRYPTO,
                 "PCK chain does not verify to the Intel SGX Root CA: %s (depth %d)",
                 X509_verify_cert_error_string(e), X509_STORE_CTX_get_error_depth(ctx));
    ERR_clear_error();
  }
out:
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  sk_X509_free(untrusted);
  return st;
}

CT_RESULT dcap_ecdsa_p256_verify(EVP_PKEY *key, const uint8_t *msg, size_t msg_len,
                                 const uint8_t sig[64], const char *what, ct_err *err) {
  ECDSA_SIG *s = ECDSA_SIG_new();
  BIGNUM *r = BN_bin2bn(sig, 32, NULL), *sv = BN_bin2bn(sig + 32, 32, NULL);
  unsigned char *der = NULL;
  int der_len = -1;
  if (s && r && sv && ECDSA_SIG_set0(s, r, sv)) {
    r = sv = NULL;
    der_len = i2d_ECDSA_SIG(s, &der);
  }
  BN_free(r);
  BN_free(sv);
  ECDSA_SIG_free(s);
  CT_ENSURE(der_len > 0, err, CT_ENOMEM, "%s: cannot encode the signature", what);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1
               ? EVP_DigestVerify(md, der, (size_t)der_len, msg, msg_len)
               : -1;
  EVP_MD_CTX_free(md);
  OPENSSL_free(der);
  ERR_clear_error();
  CT_ENSURE(ok == 1, err, CT_ECRYPTO, "%s: ECDSA P-256 signature does not verify", what);
  return CT_OK;
}

/* The attestation key is a raw P-256 point x||y. */
static CT_RESULT dcap__att_key(const uint8_t xy[64], EVP_PKEY **out, ct_err *err) {
  uint8_t pt[65];
  pt[0] = 0x04;
  memcpy(pt + 1, xy, 64);
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt),
      OSSL_PARAM_construct_end(),
  };
  EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
  EVP_PKEY *k = NULL;
  int ok = pc && EVP_PKEY_fromdata_init(pc) == 1 &&
           EVP_PKEY_fromdata(pc, &k, EVP_PKEY_PUBLIC_KEY, params) == 1;
  EVP_PKEY_CTX_free(pc);
  if (!ok) {
    EVP_PKEY_free(k);
    return ct_fail_ossl(err, CT_ECRYPTO, "TDX quote: attestation key is not a valid P-256 point");
  }
  /* fromdata does not always check that the point is on the curve. */
  EVP_PKEY_CTX *cc = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
  /* P-256 has cofactor 1: an on-curve point is in the prime-order group. */
  ok = cc && EVP_PKEY_public_check_quick(cc) == 1;
  EVP_PKEY_CTX_free(cc);
  if (!ok) {
    EVP_PKEY_free(k);
    return ct_fail_ossl(err, CT_ECRYPTO, "TDX quote: attestation key is not on the P-256 curve");
  }
  *out = k;
  return CT_OK;
}

CT_RESULT dcap_verify_signatures(const dcap_quote *q, X509 *pck, ct_err *err) {
  return dcap_verify_signatures_key(q, X509_get0_pubkey(pck), err);
}

CT_RESULT dcap_verify_signatures_key(const dcap_quote *q, EVP_PKEY *pck_key, ct_err *err) {
  CT_ENSURE(pck_key && EVP_PKEY_is_a(pck_key, "EC"), err, CT_ECRYPTO,
            "PCK certificate does not hold an EC key");
  CT_GUARD(dcap_ecdsa_p256_verify(pck_key, q->qe_report, DCAP_QE_REPORT_LEN, q->qe_report_sig,
                                  "QE report signature (PCK key)", err));
  /* QE report_data = SHA-256(attestation key || QE authentication data) || 32 zero bytes. */
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  uint8_t h[32];
  unsigned hl = 0;
  int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) && EVP_DigestUpdate(md, q->att_key, 64) &&
           EVP_DigestUpdate(md, q->qe_auth, q->qe_auth_len) && EVP_DigestFinal_ex(md, h, &hl);
  EVP_MD_CTX_free(md);
  CT_ENSURE(ok, err, CT_EINTERNAL, "SHA-256 failed");
  static const uint8_t zero[32] = {0};
  CT_ENSURE(memcmp(h, q->qe_report + DCAP_QE_REPORT_DATA, 32) == 0 &&
                memcmp(zero, q->qe_report + DCAP_QE_REPORT_DATA + 32, 32) == 0,
            err, CT_ECRYPTO,
            "QE report data does not bind the attestation key (SHA-256(attestation key || QE "
            "authentication data) expected in report_data[0..32], zeros after)");
  EVP_PKEY *ak = NULL;
  CT_GUARD(dcap__att_key(q->att_key, &ak, err));
  ct_status st = dcap_ecdsa_p256_verify(ak, q->raw, q->signed_len, q->signature,
                                        "TDX quote signature (attestation key)", err);
  EVP_PKEY_free(ak);
  return st;
}
