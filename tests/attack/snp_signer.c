/*
 * TEST-ONLY SEV-SNP signer (see snp_signer.h). The certificates copy the shape of AMD's: RSA-PSS
 * SHA-384 (salt 48) CA certificates named ARK-<gen>, SEV-<gen>, SEV-VLEK-<gen>; P-384 VEKs with
 * the SPL extensions 1.3.6.1.4.1.3704.1.3.{1,2,3,8[,9]} as DER INTEGERs and the hwID
 * 1.3.6.1.4.1.3704.1.4 as a DER OCTET STRING. Every subject says TEST-ONLY, which the KBS
 * requires before it trusts such a root.
 */
#include "snp_signer.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_codec.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "guest_attester.h"

#define SNP_SIGNER_ORG "coco-trust TEST-ONLY forged SEV-SNP roots"

static CT_RESULT snp_signer__name(X509_NAME **out, const char *cn, ct_err *err) {
  X509_NAME *n = X509_NAME_new();
  bool ok = n && X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)SNP_SIGNER_ORG, -1, -1, 0) &&
            X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  if (!ok) {
    X509_NAME_free(n);
    return ct_fail_ossl(err, CT_ENOMEM, "cannot build a certificate name");
  }
  *out = n;
  return CT_OK;
}

static CT_RESULT snp_signer__ext(X509 *x, X509 *issuer, int nid, const char *value, ct_err *err) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  bool ok = e && X509_add_ext(x, e, -1);
  X509_EXTENSION_free(e);
  CT_ENSURE(ok, err, CT_EINTERNAL, "cannot add extension %s", value);
  return CT_OK;
}

/* An AMD extension: OID -> DER-encoded value as the extension's octets. */
static CT_RESULT snp_signer__raw_ext(X509 *x, const char *oid, const uint8_t *der, size_t len, ct_err *err) {
  ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
  ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
  X509_EXTENSION *e = NULL;
  bool ok = o && os && ASN1_OCTET_STRING_set(os, der, (int)len) && (e = X509_EXTENSION_create_by_OBJ(NULL, o, 0, os)) &&
            X509_add_ext(x, e, -1);
  X509_EXTENSION_free(e);
  ASN1_OCTET_STRING_free(os);
  ASN1_OBJECT_free(o);
  CT_ENSURE(ok, err, CT_EINTERNAL, "cannot add extension %s", oid);
  return CT_OK;
}

static CT_RESULT snp_signer__spl(X509 *x, const char *oid, uint8_t v, ct_err *err) {
  /* DER INTEGER, non-negative: a leading zero byte when the high bit is set. */
  uint8_t der[4] = {0x02, 1, v, 0};
  size_t n = 3;
  if (v & 0x80) {
    der[1] = 2, der[2] = 0, der[3] = v;
    n = 4;
  }
  return snp_signer__raw_ext(x, oid, der, n, err);
}

static CT_RESULT snp_signer__sign(X509 *x, EVP_PKEY *key, ct_err *err) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  EVP_PKEY_CTX *pctx = NULL;
  bool ok = md && EVP_DigestSignInit(md, &pctx, EVP_sha384(), NULL, key) == 1 &&
            EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 48) == 1 && EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha384()) == 1 &&
            X509_sign_ctx(x, md) > 0;
  EVP_MD_CTX_free(md);
  if (!ok) return ct_fail_ossl(err, CT_ECRYPTO, "cannot sign a certificate with RSA-PSS");
  return CT_OK;
}

/* A certificate for `key` named `cn`, issued by (issuer, issuer_key) or self-signed. */
static CT_RESULT snp_signer__cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, long serial,
                                  bool ca, X509 **out, ct_err *err) {
  X509 *x = X509_new();
  X509_NAME *name = NULL;
  ct_status st = CT_OK;
  CT_ENSURE_GOTO(st, x, fail, err, CT_ENOMEM, "out of memory");
  CT_GUARD_GOTO(st, snp_signer__name(&name, cn, err), fail);
  bool ok = X509_set_version(x, 2) && ASN1_INTEGER_set(X509_get_serialNumber(x), serial) &&
            X509_set_subject_name(x, name) && X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) &&
            X509_gmtime_adj(X509_getm_notBefore(x), -3600) && X509_gmtime_adj(X509_getm_notAfter(x), 3650L * 86400) &&
            X509_set_pubkey(x, key);
  CT_ENSURE_GOTO(st, ok, fail, err, CT_EINTERNAL, "cannot fill a certificate");
  if (ca) {
    CT_GUARD_GOTO(st, snp_signer__ext(x, issuer ? issuer : x, NID_basic_constraints, "critical,CA:TRUE", err), fail);
    CT_GUARD_GOTO(st, snp_signer__ext(x, issuer ? issuer : x, NID_key_usage, "critical,keyCertSign,cRLSign", err), fail);
  }
  CT_GUARD_GOTO(st, snp_signer__ext(x, issuer ? issuer : x, NID_subject_key_identifier, "hash", err), fail);
  *out = x;
  X509_NAME_free(name);
  (void)issuer_key;
  return CT_OK;
fail:
  X509_NAME_free(name);
  X509_free(x);
  return st;
}

void snp_signer_free(snp_signer *s) {
  if (!s) return;
  EVP_PKEY_free(s->ark_key);
  EVP_PKEY_free(s->ask_key);
  EVP_PKEY_free(s->asvk_key);
  X509_free(s->ark);
  X509_free(s->ask);
  X509_free(s->asvk);
  free(s);
}

CT_RESULT snp_signer_new(snp_gen gen, int rsa_bits, snp_signer **out, ct_err *err) {
  CT_ENSURE(gen >= SNP_GEN_MILAN && gen <= SNP_GEN_TURIN, err, CT_EINVAL, "unknown processor generation");
  snp_signer *s = calloc(1, sizeof *s);
  CT_ENSURE(s, err, CT_ENOMEM, "out of memory");
  s->gen = gen;
  ct_status st = CT_OK;
  s->ark_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)rsa_bits);
  s->ask_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)rsa_bits);
  s->asvk_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)rsa_bits);
  CT_ENSURE_GOTO(st, s->ark_key && s->ask_key && s->asvk_key, fail, err, CT_ECRYPTO, "RSA key generation failed");
  char cn[64];
  snprintf(cn, sizeof cn, "ARK-%s", snp_gen_name(gen));
  CT_GUARD_GOTO(st, snp_signer__cert(cn, s->ark_key, NULL, NULL, 0x10000, true, &s->ark, err), fail);
  CT_GUARD_GOTO(st, snp_signer__sign(s->ark, s->ark_key, err), fail);
  snprintf(cn, sizeof cn, "SEV-%s", snp_gen_name(gen));
  CT_GUARD_GOTO(st, snp_signer__cert(cn, s->ask_key, s->ark, s->ark_key, 0x10001, true, &s->ask, err), fail);
  CT_GUARD_GOTO(st, snp_signer__sign(s->ask, s->ark_key, err), fail);
  snprintf(cn, sizeof cn, "SEV-VLEK-%s", snp_gen_name(gen));
  CT_GUARD_GOTO(st, snp_signer__cert(cn, s->asvk_key, s->ark, s->ark_key, 0x10002, true, &s->asvk, err), fail);
  CT_GUARD_GOTO(st, snp_signer__sign(s->asvk, s->ark_key, err), fail);
  *out = s;
  return CT_OK;
fail:
  snp_signer_free(s);
  return st;
}

static CT_RESULT snp_signer__write_pem(const char *path, X509 *const *certs, size_t n, EVP_PKEY *key, ct_err *err) {
  BIO *b = BIO_new(BIO_s_mem());
  CT_ENSURE(b, err, CT_ENOMEM, "out of memory");
  bool ok = true;
  for (size_t i = 0; i < n; i++) ok = ok && PEM_write_bio_X509(b, certs[i]);
  if (key) ok = ok && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
  char *data = NULL;
  long len = BIO_get_mem_data(b, &data);
  ct_status st = ok ? ct_file_write_atomic(path, data, (size_t)len, key ? 0600 : 0644, err)
                    : ct_fail_ossl(err, CT_EINTERNAL, "cannot encode %s", path);
  BIO_free(b);
  return st;
}

CT_RESULT snp_signer_save(const snp_signer *s, const char *dir, ct_err *err) {
  char path[4096];
  X509 *roots[3] = {s->ask, s->ark, s->asvk};
  snprintf(path, sizeof path, "%s/roots.pem", dir);
  CT_GUARD(snp_signer__write_pem(path, roots, 3, NULL, err));
  snprintf(path, sizeof path, "%s/ark.key", dir);
  CT_GUARD(snp_signer__write_pem(path, NULL, 0, s->ark_key, err));
  snprintf(path, sizeof path, "%s/ask.key", dir);
  CT_GUARD(snp_signer__write_pem(path, NULL, 0, s->ask_key, err));
  snprintf(path, sizeof path, "%s/asvk.key", dir);
  return snp_signer__write_pem(path, NULL, 0, s->asvk_key, err);
}

static CT_RESULT snp_signer__read_key(const char *dir, const char *name, EVP_PKEY **out, ct_err *err) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  uint8_t *pem = NULL;
  size_t len = 0;
  CT_GUARD(ct_file_read(path, 64u << 10, &pem, &len, err));
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  *out = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  free(pem);
  if (!*out) return ct_fail_ossl(err, CT_EINVAL, "%s is not a PEM private key", path);
  return CT_OK;
}

CT_RESULT snp_signer_load(const char *dir, snp_signer **out, ct_err *err) {
  snp_signer *s = calloc(1, sizeof *s);
  CT_ENSURE(s, err, CT_ENOMEM, "out of memory");
  char path[4096];
  snprintf(path, sizeof path, "%s/roots.pem", dir);
  uint8_t *pem = NULL;
  size_t len = 0;
  ct_status st = CT_OK;
  CT_GUARD_GOTO(st, ct_file_read(path, 64u << 10, &pem, &len, err), fail);
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  if (b) {
    s->ask = PEM_read_bio_X509(b, NULL, NULL, NULL);
    s->ark = PEM_read_bio_X509(b, NULL, NULL, NULL);
    s->asvk = PEM_read_bio_X509(b, NULL, NULL, NULL);
  }
  BIO_free(b);
  free(pem);
  CT_ENSURE_GOTO(st, s->ask && s->ark && s->asvk, fail, err, CT_EINVAL, "%s must hold ASK, ARK and ASVK", path);
  char cn[64] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(s->ark), NID_commonName, cn, sizeof cn);
  for (snp_gen g = SNP_GEN_MILAN; g <= SNP_GEN_TURIN; g++)
    if (!strncmp(cn, "ARK-", 4) && !strcmp(cn + 4, snp_gen_name(g))) s->gen = g;
  CT_ENSURE_GOTO(st, s->gen != SNP_GEN_UNKNOWN, fail, err, CT_EINVAL, "%s: the ARK names no generation", path);
  CT_GUARD_GOTO(st, snp_signer__read_key(dir, "ark.key", &s->ark_key, err), fail);
  CT_GUARD_GOTO(st, snp_signer__read_key(dir, "ask.key", &s->ask_key, err), fail);
  CT_GUARD_GOTO(st, snp_signer__read_key(dir, "asvk.key", &s->asvk_key, err), fail);
  *out = s;
  return CT_OK;
fail:
  snp_signer_free(s);
  return st;
}

/* ---- endorsement keys ----------------------------------------------------------------------- */

void snp_signer_vek_free(snp_signer_vek *v) {
  if (!v) return;
  EVP_PKEY_free(v->key);
  free(v->der);
  free(v);
}

static CT_RESULT snp_signer__vek_cert(const snp_signer *s, snp_signer_vek *v, ct_err *err) {
  X509 *issuer = v->vlek ? s->asvk : s->ask;
  EVP_PKEY *issuer_key = v->vlek ? s->asvk_key : s->ask_key;
  X509 *x = NULL;
  CT_GUARD(snp_signer__cert(v->vlek ? "SEV-VLEK" : "SEV-VCEK", v->key, issuer, issuer_key, 0x20000, false, &x, err));
  ct_status st = CT_OK;
  CT_GUARD_GOTO(st, snp_signer__spl(x, "1.3.6.1.4.1.3704.1.3.1", v->tcb.bootloader, err), out);
  CT_GUARD_GOTO(st, snp_signer__spl(x, "1.3.6.1.4.1.3704.1.3.2", v->tcb.tee, err), out);
  CT_GUARD_GOTO(st, snp_signer__spl(x, "1.3.6.1.4.1.3704.1.3.3", v->tcb.snp, err), out);
  CT_GUARD_GOTO(st, snp_signer__spl(x, "1.3.6.1.4.1.3704.1.3.8", v->tcb.microcode, err), out);
  if (s->gen == SNP_GEN_TURIN) CT_GUARD_GOTO(st, snp_signer__spl(x, "1.3.6.1.4.1.3704.1.3.9", v->tcb.fmc, err), out);
  if (!v->vlek) {
    /* Turin VCEKs name the chip by the first 8 bytes of CHIP_ID. */
    size_t n = s->gen == SNP_GEN_TURIN ? 8 : 64;
    uint8_t der[2 + 64] = {0x04, (uint8_t)n};
    memcpy(der + 2, v->chip_id, n);
    CT_GUARD_GOTO(st, snp_signer__raw_ext(x, "1.3.6.1.4.1.3704.1.4", der, 2 + n, err), out);
  }
  CT_GUARD_GOTO(st, snp_signer__sign(x, issuer_key, err), out);
  unsigned char *der = NULL;
  int n = i2d_X509(x, &der);
  CT_ENSURE_GOTO(st, n > 0, out, err, CT_EINTERNAL, "cannot encode the VEK");
  v->der = malloc((size_t)n);
  if (v->der) memcpy(v->der, der, (size_t)n);
  OPENSSL_free(der);
  CT_ENSURE_GOTO(st, v->der, out, err, CT_ENOMEM, "out of memory");
  v->der_len = (size_t)n;
out:
  X509_free(x);
  return st;
}

CT_RESULT snp_signer_vek_new(const snp_signer *s, const uint8_t chip_id[64], const snp_tcb *tcb, bool vlek,
                             snp_signer_vek **out, ct_err *err) {
  snp_signer_vek *v = calloc(1, sizeof *v);
  CT_ENSURE(v, err, CT_ENOMEM, "out of memory");
  memcpy(v->chip_id, chip_id, 64);
  v->tcb = *tcb;
  v->tcb.has_fmc = s->gen == SNP_GEN_TURIN;
  v->vlek = vlek;
  v->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
  ct_status st = v->key ? snp_signer__vek_cert(s, v, err) : ct_fail_ossl(err, CT_ECRYPTO, "P-384 key generation failed");
  if (st != CT_OK) {
    snp_signer_vek_free(v);
    return st;
  }
  *out = v;
  return CT_OK;
}

CT_RESULT snp_signer_vek_save(const snp_signer_vek *v, const char *dir, const char *name, ct_err *err) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.der", dir, name);
  CT_GUARD(ct_file_write_atomic(path, v->der, v->der_len, 0644, err));
  snprintf(path, sizeof path, "%s/%s.key", dir, name);
  CT_GUARD(snp_signer__write_pem(path, NULL, 0, v->key, err));
  char chip[129];
  ct_hex_into(v->chip_id, 64, chip);
  json_t *meta = json_pack("{s:s, s:{s:i, s:i, s:i, s:i, s:i}, s:b}", "chip_id", chip, "tcb", "bootloader",
                           v->tcb.bootloader, "tee", v->tcb.tee, "snp", v->tcb.snp, "microcode", v->tcb.microcode,
                           "fmc", v->tcb.fmc, "vlek", v->vlek);
  char *text = NULL;
  ct_status st = meta ? ct_json_dump(meta, &text, err) : ct_fail(err, CT_ENOMEM, "out of memory");
  json_decref(meta);
  CT_GUARD(st);
  snprintf(path, sizeof path, "%s/%s.json", dir, name);
  st = ct_file_write_atomic(path, text, strlen(text), 0644, err);
  free(text);
  return st;
}

CT_RESULT snp_signer_vek_load(const char *dir, const char *name, snp_signer_vek **out, ct_err *err) {
  snp_signer_vek *v = calloc(1, sizeof *v);
  CT_ENSURE(v, err, CT_ENOMEM, "out of memory");
  char path[4096];
  ct_status st = CT_OK;
  json_t *meta = NULL;
  uint8_t *text = NULL, *chip = NULL;
  size_t len = 0, chip_len = 0;
  snprintf(path, sizeof path, "%s/%s.der", dir, name);
  CT_GUARD_GOTO(st, ct_file_read(path, 16u << 10, &v->der, &v->der_len, err), fail);
  snprintf(path, sizeof path, "%s.key", name);
  CT_GUARD_GOTO(st, snp_signer__read_key(dir, path, &v->key, err), fail);
  snprintf(path, sizeof path, "%s/%s.json", dir, name);
  CT_GUARD_GOTO(st, ct_file_read(path, 4096, &text, &len, err), fail);
  CT_GUARD_GOTO(st, ct_json_parse((const char *)text, len, 8, &meta, err), fail);
  const char *hex = json_string_value(json_object_get(meta, "chip_id"));
  json_t *t = json_object_get(meta, "tcb");
  CT_ENSURE_GOTO(st, hex && json_is_object(t), fail, err, CT_EINVAL, "%s: chip_id and tcb are required", path);
  CT_GUARD_GOTO(st, ct_hex_decode(hex, strlen(hex), &chip, &chip_len, err), fail);
  CT_ENSURE_GOTO(st, chip_len == 64, fail, err, CT_EINVAL, "%s: chip_id must be 64 bytes", path);
  memcpy(v->chip_id, chip, 64);
  v->tcb.bootloader = (uint8_t)json_integer_value(json_object_get(t, "bootloader"));
  v->tcb.tee = (uint8_t)json_integer_value(json_object_get(t, "tee"));
  v->tcb.snp = (uint8_t)json_integer_value(json_object_get(t, "snp"));
  v->tcb.microcode = (uint8_t)json_integer_value(json_object_get(t, "microcode"));
  v->tcb.fmc = (uint8_t)json_integer_value(json_object_get(t, "fmc"));
  v->vlek = json_is_true(json_object_get(meta, "vlek"));
  free(chip);
  free(text);
  json_decref(meta);
  *out = v;
  return CT_OK;
fail:
  free(chip);
  free(text);
  json_decref(meta);
  snp_signer_vek_free(v);
  return st;
}

/* ---- reports --------------------------------------------------------------------------------- */

static void snp_signer__le(uint8_t *p, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* TCB_VERSION layout: bootloader, tee, 4 reserved, snp, microcode; Turin: fmc, bootloader, tee,
 * snp, 3 reserved, microcode. */
static void snp_signer__tcb(uint8_t *p, const snp_tcb *t, snp_gen g) {
  memset(p, 0, 8);
  if (g == SNP_GEN_TURIN) {
    p[0] = t->fmc, p[1] = t->bootloader, p[2] = t->tee, p[3] = t->snp, p[7] = t->microcode;
  } else {
    p[0] = t->bootloader, p[1] = t->tee, p[6] = t->snp, p[7] = t->microcode;
  }
}

void snp_signer_report_defaults(const snp_signer_vek *v, snp_gen gen, snp_signer_report_opts *o) {
  memset(o, 0, sizeof *o);
  o->version = 3;
  o->guest_svn = 1;
  o->policy = 0x30000; /* SMT allowed, reserved bit 17 set, debug off */
  o->vmpl = 0;
  o->plat_info = 0x1;  /* SMT enabled */
  memset(o->measurement, 0x4d, sizeof o->measurement);
  memcpy(o->chip_id, v->chip_id, 64);
  o->reported_tcb = v->tcb;
  o->reported_tcb.has_fmc = gen == SNP_GEN_TURIN;
}

/* The report's signed part (bytes 0..SNP_SIGNED_LEN); the signature fields stay zero. */
static void snp_signer__body(snp_gen gen, const snp_signer_report_opts *o, uint8_t raw[SNP_REPORT_SIZE]) {
  memset(raw, 0, SNP_REPORT_SIZE);
  snp_signer__le(raw + 0x00, o->version, 4);
  snp_signer__le(raw + 0x04, o->guest_svn, 4);
  snp_signer__le(raw + 0x08, o->policy, 8);
  snp_signer__le(raw + 0x30, o->vmpl, 4);
  snp_signer__le(raw + 0x34, 1, 4); /* ECDSA P-384 with SHA-384 */
  snp_signer__tcb(raw + 0x38, &o->reported_tcb, gen);
  snp_signer__le(raw + 0x40, o->plat_info, 8);
  memcpy(raw + SNP_OFF_REPORT_DATA, o->report_data, 64);
  memcpy(raw + SNP_OFF_MEASUREMENT, o->measurement, 48);
  memcpy(raw + SNP_OFF_HOST_DATA, o->host_data, 32);
  memset(raw + 0x140, 0x52, 32); /* report_id */
  snp_signer__tcb(raw + 0x180, &o->reported_tcb, gen);
  if (o->version >= 3) {
    static const uint8_t models[4][2] = {{0, 0}, {0x19, 0x01}, {0x19, 0x11}, {0x1A, 0x02}};
    raw[0x188] = models[gen][0];
    raw[0x189] = models[gen][1];
    raw[0x18A] = 1;
  }
  memcpy(raw + SNP_OFF_CHIP_ID, o->chip_id, 64);
  snp_signer__tcb(raw + 0x1E0, &o->reported_tcb, gen);
  raw[0x1E8] = 3, raw[0x1E9] = 55, raw[0x1EA] = 1; /* current firmware 1.55.3 */
  raw[0x1EC] = 3, raw[0x1ED] = 55, raw[0x1EE] = 1;
  snp_signer__tcb(raw + 0x1F0, &o->reported_tcb, gen);
}

/* r and s as 72-byte little-endian fields, as the firmware writes them. */
static bool snp_signer__put_sig(uint8_t raw[SNP_REPORT_SIZE], const BIGNUM *r, const BIGNUM *s) {
  return BN_bn2lebinpad(r, raw + SNP_SIG_OFFSET, 72) == 72 && BN_bn2lebinpad(s, raw + SNP_SIG_OFFSET + 72, 72) == 72;
}

CT_RESULT snp_signer_report(const snp_signer_vek *v, snp_gen gen, const snp_signer_report_opts *o,
                            uint8_t raw[SNP_REPORT_SIZE], ct_err *err) {
  snp_signer__body(gen, o, raw);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  uint8_t der[128];
  size_t der_len = sizeof der;
  bool ok = md && EVP_DigestSignInit(md, NULL, EVP_sha384(), NULL, v->key) == 1 &&
            EVP_DigestSign(md, der, &der_len, raw, SNP_SIGNED_LEN) == 1;
  EVP_MD_CTX_free(md);
  if (!ok) return ct_fail_ossl(err, CT_ECRYPTO, "cannot sign the report");
  const unsigned char *p = der;
  ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
  CT_ENSURE(sig, err, CT_ECRYPTO, "cannot decode the report signature");
  ok = snp_signer__put_sig(raw, ECDSA_SIG_get0_r(sig), ECDSA_SIG_get0_s(sig));
  ECDSA_SIG_free(sig);
  CT_ENSURE(ok, err, CT_ECRYPTO, "cannot encode the report signature");
  return CT_OK;
}

CT_RESULT snp_signer_evidence(const snp_signer_vek *v, const uint8_t raw[SNP_REPORT_SIZE], bool with_chain,
                              json_t **out, ct_err *err) {
  json_t *report = NULL;
  CT_GUARD(guest_snp_report_to_json(raw, SNP_REPORT_SIZE, &report, err));
  json_t *chain = json_null();
  if (with_chain) {
    json_t *bytes = json_array();
    for (size_t i = 0; bytes && i < v->der_len; i++) json_array_append_new(bytes, json_integer(v->der[i]));
    chain = json_pack("[{s:s, s:o}]", "cert_type", v->vlek ? "VLEK" : "VCEK", "data", bytes);
  }
  json_t *ev = chain ? json_pack("{s:o, s:o}", "attestation_report", report, "cert_chain", chain) : NULL;
  CT_ENSURE(ev, err, CT_ENOMEM, "out of memory");
  *out = ev;
  return CT_OK;
}

/* ---- precomputed nonces (load generation) ---------------------------------------------------- */

/* ECDSA's signature is s = k^-1 (h + r d) mod n with r = x(kG) mod n: everything that costs
 * (the scalar multiplication kG and the inversion) depends only on the random nonce k, not on
 * the message, so it can be done ahead of time. A pair must never sign twice (two signatures with
 * one k give the key away), hence the single atomic cursor. */
typedef struct snp_signer__pair {
  uint8_t r[48], kinv[48]; /* big-endian, each < n */
} snp_signer__pair;

struct snp_signer_nonces {
  const snp_signer_vek *vek;
  EC_GROUP *group; /* P-384; its order is n */
  BIGNUM *d;                 /* the VEK's private scalar */
  snp_signer__pair *pairs;
  size_t count;
  atomic_size_t fill; /* next pair to precompute */
  atomic_size_t next; /* next pair to use */
  atomic_int failed;
};

void snp_signer_nonces_free(snp_signer_nonces *p) {
  if (!p) return;
  if (p->pairs) ct_wipe(p->pairs, p->count * sizeof *p->pairs);
  free(p->pairs);
  BN_clear_free(p->d);
  EC_GROUP_free(p->group);
  free(p);
}

static void *snp_signer__precompute(void *arg) {
  snp_signer_nonces *p = arg;
  const BIGNUM *n = EC_GROUP_get0_order(p->group);
  BN_CTX *ctx = BN_CTX_new();
  EC_POINT *R = EC_POINT_new(p->group);
  BIGNUM *k = BN_secure_new(), *kinv = BN_secure_new(), *x = BN_new(), *r = BN_new();
  bool ok = ctx && R && k && kinv && x && r;
  for (size_t i; ok && (i = atomic_fetch_add(&p->fill, 1)) < p->count;) {
    do {
      /* k uniform in [1, n-1]; kG by OpenSSL's constant-time ladder. */
      do ok = BN_priv_rand_range(k, n) == 1;
      while (ok && BN_is_zero(k));
      BN_set_flags(k, BN_FLG_CONSTTIME);
      ok = ok && EC_POINT_mul(p->group, R, k, NULL, NULL, ctx) == 1 &&
           EC_POINT_get_affine_coordinates(p->group, R, x, NULL, ctx) == 1 && BN_nnmod(r, x, n, ctx) == 1;
    } while (ok && BN_is_zero(r));
    ok = ok && BN_mod_inverse(kinv, k, n, ctx) && BN_bn2binpad(r, p->pairs[i].r, 48) == 48 &&
         BN_bn2binpad(kinv, p->pairs[i].kinv, 48) == 48;
  }
  if (!ok) atomic_store(&p->failed, 1);
  BN_clear_free(k);
  BN_clear_free(kinv);
  BN_free(x);
  BN_free(r);
  EC_POINT_free(R);
  BN_CTX_free(ctx);
  return NULL;
}

CT_RESULT snp_signer_nonces_new(const snp_signer_vek *v, size_t count, unsigned threads, snp_signer_nonces **out,
                                ct_err *err) {
  CT_ENSURE(count <= SNP_SIGNER_NONCES_MAX, err, CT_EINVAL, "at most %u precomputed nonces per key",
            SNP_SIGNER_NONCES_MAX);
  if (threads < 1) threads = 1;
  if (threads > 64) threads = 64;
  snp_signer_nonces *p = calloc(1, sizeof *p);
  CT_ENSURE(p, err, CT_ENOMEM, "out of memory");
  p->vek = v;
  p->count = count;
  ct_status st = CT_OK;
  p->group = EC_GROUP_new_by_curve_name(NID_secp384r1);
  p->pairs = calloc(count ? count : 1, sizeof *p->pairs);
  CT_ENSURE_GOTO(st, p->group && p->pairs, fail, err, CT_ENOMEM, "out of memory");
  CT_ENSURE_GOTO(st, EVP_PKEY_get_bn_param(v->key, OSSL_PKEY_PARAM_PRIV_KEY, &p->d) == 1, fail, err, CT_ECRYPTO,
                 "cannot read the VEK's private key");
  BN_set_flags(p->d, BN_FLG_CONSTTIME);
  pthread_t th[64];
  unsigned started = 0;
  for (; started < threads; started++)
    if (pthread_create(&th[started], NULL, snp_signer__precompute, p) != 0) break;
  if (!started) snp_signer__precompute(p);
  for (unsigned i = 0; i < started; i++) pthread_join(th[i], NULL);
  CT_ENSURE_GOTO(st, !atomic_load(&p->failed), fail, err, CT_ECRYPTO, "nonce precomputation failed");
  *out = p;
  return CT_OK;
fail:
  snp_signer_nonces_free(p);
  return st;
}

size_t snp_signer_nonces_left(const snp_signer_nonces *p) {
  size_t used = atomic_load(&((snp_signer_nonces *)p)->next);
  return used < p->count ? p->count - used : 0;
}

/* s = k^-1 (h + r d) mod n over the signed bytes with pair i, then the pair is wiped. */
static bool snp_signer__sign_pair(snp_signer_nonces *p, size_t i, uint8_t raw[SNP_REPORT_SIZE]) {
  uint8_t h[48];
  unsigned hl = 0;
  if (EVP_Digest(raw, SNP_SIGNED_LEN, h, &hl, EVP_sha384(), NULL) != 1 || hl != 48) return false;
  const BIGNUM *n = EC_GROUP_get0_order(p->group);
  BN_CTX *ctx = BN_CTX_new();
  /* The digest is as long as the order (384 bits): no truncation. */
  BIGNUM *r = BN_bin2bn(p->pairs[i].r, 48, NULL), *kinv = BN_secure_new(), *e = BN_bin2bn(h, 48, NULL),
         *s = BN_secure_new();
  bool ok = ctx && r && kinv && e && s && BN_bin2bn(p->pairs[i].kinv, 48, kinv) &&
            BN_mod_mul(s, r, p->d, n, ctx) == 1 && BN_mod_add(s, s, e, n, ctx) == 1 &&
            BN_mod_mul(s, s, kinv, n, ctx) == 1 && !BN_is_zero(s) && snp_signer__put_sig(raw, r, s);
  ct_wipe(&p->pairs[i], sizeof p->pairs[i]);
  BN_clear_free(kinv);
  BN_clear_free(s);
  BN_free(e);
  BN_free(r);
  BN_CTX_free(ctx);
  return ok;
}

CT_RESULT snp_signer_report_pooled(const snp_signer_vek *v, snp_signer_nonces *pool, snp_gen gen,
                                   const snp_signer_report_opts *o, uint8_t raw[SNP_REPORT_SIZE], bool *precomputed,
                                   ct_err *err) {
  *precomputed = false;
  CT_ENSURE(!pool || pool->vek == v, err, CT_EINVAL, "the nonce pool belongs to another key");
  size_t i = pool ? atomic_fetch_add(&pool->next, 1) : 0;
  if (pool && i < pool->count) {
    snp_signer__body(gen, o, raw);
    if (snp_signer__sign_pair(pool, i, raw)) {
      *precomputed = true;
      return CT_OK;
    }
    /* s = 0 (probability ~2^-384) or an allocation failure: this pair is spent either way. */
  }
  return snp_signer_report(v, gen, o, raw, err);
}
