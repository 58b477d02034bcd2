/*
 * builtins_x509.c - crypto.x509.parse_certificates, parse_and_verify_certificates,
 * parse_certificate_request, parse_keypair, parse_rsa_private_key and crypto.parse_private_keys.
 *
 * OPA returns the JSON form of Go's x509.Certificate / x509.CertificateRequest /
 * tls.Certificate / private key structs. We produce the same field names for the commonly used
 * fields (Subject/Issuer as pkix.Name, DNSNames, URIStrings, serial, validity, key usage, basic
 * constraints, key ids, Raw, public key), nil slices as null like Go. Inputs are PEM, or base64
 * of PEM or DER, bounded in size and count.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ct_mem.h"
#include "rego_bi.h"

#define X5_INPUT_MAX (4u << 20) /* text of a certificate bundle / key */
#define X5_MAX_CERTS 64
#define X5_MAX_KEYS 16

/* ---------------------------------------------------------------- value builder */
typedef struct {
  rg_arena *a;
  rv *k[48], *v[48];
  size_t n;
  bool bad;
} x5_ob;

static void rego__ob_put(x5_ob *o, const char *key, rv *val) {
  if (!val || o->n >= 48) {
    o->bad = true;
    return;
  }
  rv *k = rv_cstr(o->a, key);
  if (!k) {
    o->bad = true;
    return;
  }
  o->k[o->n] = k;
  o->v[o->n++] = val;
}
static rv *rego__ob_done(x5_ob *o) {
  if (o->bad) return NULL;
  bool c;
  return rv_obj(o->a, o->k, o->v, o->n, &c);
}

static rv *rego__x5_b64(rg_arena *a, const uint8_t *d, size_t n) {
  static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *o = rg_alloc(a, (n + 2) / 3 * 4 + 1);
  if (!o) return NULL;
  size_t w = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)d[i] << 16;
    if (i + 1 < n) v |= (uint32_t)d[i + 1] << 8;
    if (i + 2 < n) v |= d[i + 2];
    o[w++] = al[(v >> 18) & 63];
    o[w++] = al[(v >> 12) & 63];
    o[w++] = i + 1 < n ? al[(v >> 6) & 63] : '=';
    o[w++] = i + 2 < n ? al[v & 63] : '=';
  }
  return rv_str(a, o, w);
}

/* Go []byte JSON: base64, or null when empty (nil). */
static rv *rego__x5_bytes(rg_arena *a, const uint8_t *d, size_t n) { return n ? rego__x5_b64(a, d, n) : &rv_null_v; }

static rv *rego__x5_bn(rg_arena *a, const BIGNUM *b) {
  if (!b) return &rv_null_v;
  char *dec = BN_bn2dec(b);
  if (!dec) return NULL;
  rv *r = rv_num_text(a, dec, strlen(dec));
  OPENSSL_free(dec);
  return r;
}

/* Go's base64.StdEncoding.DecodeString (which skips \r and \n). Returns -1 on success or the
 * offset of the first illegal byte. */
static long rego__x5_b64dec(rg_arena *a, const char *s, size_t n, uint8_t **out, size_t *olen) {
  uint8_t *o = rg_alloc(a, n + 1);
  if (!o) return -2;
  uint32_t acc = 0;
  int bits = 0, q = 0, pad = 0;
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '\r' || c == '\n') continue;
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') v = 62;
    else if (c == '/') v = 63;
    else if (c == '=' && q >= 2) {
      pad++;
      q++;
      if (q == 4) q = 0;
      continue;
    } else
      return (long)i;
    if (pad) return (long)i;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    q = (q + 1) % 4;
    if (bits >= 8) {
      bits -= 8;
      o[w++] = (uint8_t)(acc >> bits);
    }
  }
  if (q != 0) return (long)n;
  *out = o;
  *olen = w;
  return -1;
}

/* ---------------------------------------------------------------- certificate JSON */
static rv *rego__x5_oid(rg_arena *a, const ASN1_OBJECT *obj) {
  char txt[128];
  int l = OBJ_obj2txt(txt, sizeof(txt), obj, 1);
  if (l <= 0 || (size_t)l >= sizeof(txt)) return &rv_empty_arr_v;
  rv *items[32];
  size_t n = 0;
  for (char *p = txt; *p && n < 32;) {
    char *e;
    long long v = strtoll(p, &e, 10);
    items[n] = rv_int(a, v);
    if (!items[n++]) return NULL;
    p = *e == '.' ? e + 1 : e;
    if (e == p && *p) break;
  }
  return rv_arr(a, items, n);
}

static rv *rego__x5_strs(rg_arena *a, const char **s, size_t n) {
  if (!n) return &rv_null_v;
  rv **items = rg_alloc(a, n * sizeof(rv *));
  if (!items) return NULL;
  for (size_t i = 0; i < n; i++)
    if (!(items[i] = rv_cstr(a, s[i]))) return NULL;
  return rv_arr(a, items, n);
}

/* pkix.Name */
static rv *rego__x5_name(rg_arena *a, const X509_NAME *nm) {
  static const struct {
    int nid;
    const char *field;
    bool multi;
  } map[] = {{NID_countryName, "Country", true},
             {NID_organizationName, "Organization", true},
             {NID_organizationalUnitName, "OrganizationalUnit", true},
             {NID_localityName, "Locality", true},
             {NID_stateOrProvinceName, "Province", true},
             {NID_streetAddress, "StreetAddress", true},
             {NID_postalCode, "PostalCode", true},
             {NID_serialNumber, "SerialNumber", false},
             {NID_commonName, "CommonName", false}};
  enum { NF = sizeof(map) / sizeof(map[0]) };
  int cnt = X509_NAME_entry_count(nm);
  if (cnt < 0) cnt = 0;
  if (cnt > 64) cnt = 64;
  const char *vals[NF][64];
  size_t nv[NF] = {0};
  rv *names[64];
  size_t nn = 0;
  for (int i = 0; i < cnt; i++) {
    const X509_NAME_ENTRY *e = X509_NAME_get_entry(nm, i);
    const ASN1_STRING *d = X509_NAME_ENTRY_get_data(e);
    unsigned char *u8 = NULL;
    int ul = ASN1_STRING_to_UTF8(&u8, d);
    if (ul < 0) continue;
    char *s = rg_strndup(a, (const char *)u8, (size_t)ul);
    OPENSSL_free(u8);
    if (!s) return NULL;
    int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
    for (size_t f = 0; f < NF; f++)
      if (map[f].nid == nid) {
        if (map[f].multi || nv[f] == 0) vals[f][nv[f]++] = s;
        else vals[f][0] = s; /* Go keeps the last */
      }
    x5_ob t = {.a = a};
    rego__ob_put(&t, "Type", rego__x5_oid(a, X509_NAME_ENTRY_get_object(e)));
    rego__ob_put(&t, "Value", rv_cstr(a, s));
    if (!(names[nn++] = rego__ob_done(&t))) return NULL;
  }
  x5_ob o = {.a = a};
  for (size_t f = 0; f < NF; f++) {
    if (map[f].multi) rego__ob_put(&o, map[f].field, rego__x5_strs(a, vals[f], nv[f]));
    else rego__ob_put(&o, map[f].field, rv_cstr(a, nv[f] ? vals[f][0] : ""));
  }
  rego__ob_put(&o, "Names", nn ? rv_arr(a, names, nn) : &rv_null_v);
  rego__ob_put(&o, "ExtraNames", &rv_null_v);
  return rego__ob_done(&o);
}

static rv *rego__x5_time(rg_arena *a, const ASN1_TIME *t) {
  struct tm tm;
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return rv_cstr(a, "0001-01-01T00:00:00Z");
  char buf[40];
  snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec);
  return rv_cstr(a, buf);
}

/* Go's x509.PublicKeyAlgorithm numbering. */
static int rego__x5_pkalg(const EVP_PKEY *pk) {
  if (!pk) return 0;
  if (EVP_PKEY_is_a(pk, "RSA") || EVP_PKEY_is_a(pk, "RSA-PSS")) return 1;
  if (EVP_PKEY_is_a(pk, "DSA")) return 2;
  if (EVP_PKEY_is_a(pk, "EC")) return 3;
  if (EVP_PKEY_is_a(pk, "ED25519")) return 4;
  return 0;
}

/* Go's x509.SignatureAlgorithm numbering. */
static int rego__x5_sigalg(int nid) {
  switch (nid) {
  case NID_md2WithRSAEncryption: return 1;
  case NID_md5WithRSAEncryption: return 2;
  case NID_sha1WithRSAEncryption: return 3;
  case NID_sha256WithRSAEncryption: return 4;
  case NID_sha384WithRSAEncryption: return 5;
  case NID_sha512WithRSAEncryption: return 6;
  case NID_dsaWithSHA1: return 7;
  case NID_dsa_with_SHA256: return 8;
  case NID_ecdsa_with_SHA1: return 9;
  case NID_ecdsa_with_SHA256: return 10;
  case NID_ecdsa_with_SHA384: return 11;
  case NID_ecdsa_with_SHA512: return 12;
  case NID_rsassaPss: return 13; /* SHA256WithRSAPSS (hash not distinguished here) */
  case NID_ED25519: return 16;
  default: return 0;
  }
}

/* The public key as Go marshals rsa.PublicKey {N,E} / ecdsa.PublicKey {Curve,X,Y} /
 * ed25519.PublicKey (base64). */
static rv *rego__x5_pubkey(rg_arena *a, const EVP_PKEY *pk) {
  if (!pk) return &rv_null_v;
  x5_ob o = {.a = a};
  if (EVP_PKEY_is_a(pk, "RSA") || EVP_PKEY_is_a(pk, "RSA-PSS")) {
    BIGNUM *n = NULL, *e = NULL;
    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n);
    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e);
    rego__ob_put(&o, "N", rego__x5_bn(a, n));
    rego__ob_put(&o, "E", rego__x5_bn(a, e));
    BN_free(n);
    BN_free(e);
    return rego__ob_done(&o);
  }
  if (EVP_PKEY_is_a(pk, "EC")) {
    BIGNUM *x = NULL, *y = NULL;
    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_X, &x);
    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_Y, &y);
    rego__ob_put(&o, "Curve", &rv_empty_obj_v);
    rego__ob_put(&o, "X", rego__x5_bn(a, x));
    rego__ob_put(&o, "Y", rego__x5_bn(a, y));
    BN_free(x);
    BN_free(y);
    return rego__ob_done(&o);
  }
  if (EVP_PKEY_is_a(pk, "ED25519")) {
    uint8_t raw[32];
    size_t rl = sizeof(raw);
    if (EVP_PKEY_get_raw_public_key(pk, raw, &rl) != 1) return &rv_null_v;
    return rego__x5_b64(a, raw, rl);
  }
  return &rv_null_v;
}

/* The subjectAltName entries of one kind (GEN_DNS, GEN_EMAIL, GEN_URI) as strings. */
static rv *rego__x5_sans(rg_arena *a, GENERAL_NAMES *gens, int type) {
  const char *vals[256];
  size_t n = 0;
  for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && n < 256; i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
    if (g->type != type) continue;
    const ASN1_IA5STRING *s = g->d.ia5;
    char *c = rg_strndup(a, (const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
    if (!c) return NULL;
    vals[n++] = c;
  }
  return rego__x5_strs(a, vals, n);
}

static rv *rego__x5_ips(rg_arena *a, GENERAL_NAMES *gens) {
  const char *vals[256];
  size_t n = 0;
  for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && n < 256; i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
    if (g->type != GEN_IPADD) continue;
    const unsigned char *p = ASN1_STRING_get0_data(g->d.ip);
    int l = ASN1_STRING_length(g->d.ip);
    char buf[64];
    if (l == 4) snprintf(buf, sizeof(buf), "%u.%u.%u.%u", p[0], p[1], p[2], p[3]);
    else if (l == 16) {
      size_t w = 0;
      for (int j = 0; j < 16; j += 2) w += (size_t)snprintf(buf + w, sizeof(buf) - w, "%s%x", j ? ":" : "", p[j] << 8 | p[j + 1]);
    } else
      continue;
    char *c = rg_strndup(a, buf, strlen(buf));
    if (!c) return NULL;
    vals[n++] = c;
  }
  return rego__x5_strs(a, vals, n);
}

static rv *rego__x5_cert(rg_arena *a, X509 *x) {
  x5_ob o = {.a = a};
  unsigned char *der = NULL;
  int dl = i2d_X509(x, &der);
  rego__ob_put(&o, "Raw", dl > 0 ? rego__x5_b64(a, der, (size_t)dl) : &rv_null_v);
  OPENSSL_free(der);
  der = NULL;
  dl = i2d_re_X509_tbs(x, &der);
  rego__ob_put(&o, "RawTBSCertificate", dl > 0 ? rego__x5_b64(a, der, (size_t)dl) : &rv_null_v);
  OPENSSL_free(der);
  der = NULL;
  dl = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
  rego__ob_put(&o, "RawSubjectPublicKeyInfo", dl > 0 ? rego__x5_b64(a, der, (size_t)dl) : &rv_null_v);
  OPENSSL_free(der);
  der = NULL;
  dl = i2d_X509_NAME(X509_get_subject_name(x), &der);
  rego__ob_put(&o, "RawSubject", dl > 0 ? rego__x5_b64(a, der, (size_t)dl) : &rv_null_v);
  OPENSSL_free(der);
  der = NULL;
  dl = i2d_X509_NAME(X509_get_issuer_name(x), &der);
  rego__ob_put(&o, "RawIssuer", dl > 0 ? rego__x5_b64(a, der, (size_t)dl) : &rv_null_v);
  OPENSSL_free(der);
  const ASN1_BIT_STRING *sig = NULL;
  const X509_ALGOR *salg = NULL;
  X509_get0_signature(&sig, &salg, x);
  rego__ob_put(&o, "Signature", sig ? rego__x5_bytes(a, ASN1_STRING_get0_data(sig), (size_t)ASN1_STRING_length(sig)) : &rv_null_v);
  rego__ob_put(&o, "SignatureAlgorithm", rv_int(a, rego__x5_sigalg(X509_get_signature_nid(x))));
  EVP_PKEY *pk = X509_get0_pubkey(x);
  rego__ob_put(&o, "PublicKeyAlgorithm", rv_int(a, rego__x5_pkalg(pk)));
  rego__ob_put(&o, "PublicKey", rego__x5_pubkey(a, pk));
  rego__ob_put(&o, "Version", rv_int(a, X509_get_version(x) + 1));
  BIGNUM *sn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
  rego__ob_put(&o, "SerialNumber", rego__x5_bn(a, sn));
  BN_free(sn);
  rego__ob_put(&o, "Issuer", rego__x5_name(a, X509_get_issuer_name(x)));
  rego__ob_put(&o, "Subject", rego__x5_name(a, X509_get_subject_name(x)));
  rego__ob_put(&o, "NotBefore", rego__x5_time(a, X509_get0_notBefore(x)));
  rego__ob_put(&o, "NotAfter", rego__x5_time(a, X509_get0_notAfter(x)));
  uint32_t ku = X509_get_key_usage(x);
  /* OpenSSL's KU bits are the DER bit string reversed per byte; Go numbers bit 0 = digitalSignature */
  int goku = 0;
  if (ku != UINT32_MAX) {
    static const uint32_t bits[] = {KU_DIGITAL_SIGNATURE, KU_NON_REPUDIATION, KU_KEY_ENCIPHERMENT, KU_DATA_ENCIPHERMENT,
                                    KU_KEY_AGREEMENT,     KU_KEY_CERT_SIGN,   KU_CRL_SIGN,         KU_ENCIPHER_ONLY,
                                    KU_DECIPHER_ONLY};
    for (int i = 0; i < 9; i++)
      if (ku & bits[i]) goku |= 1 << i;
  }
  rego__ob_put(&o, "KeyUsage", rv_int(a, goku));
  /* extensions */
  int next = X509_get_ext_count(x);
  rv *exts[64];
  size_t ne = 0;
  for (int i = 0; i < next && ne < 64; i++) {
    X509_EXTENSION *e = X509_get_ext(x, i);
    const ASN1_OCTET_STRING *d = X509_EXTENSION_get_data(e);
    x5_ob t = {.a = a};
    rego__ob_put(&t, "Id", rego__x5_oid(a, X509_EXTENSION_get_object(e)));
    rego__ob_put(&t, "Critical", rv_bool(X509_EXTENSION_get_critical(e) > 0));
    rego__ob_put(&t, "Value", rego__x5_bytes(a, ASN1_STRING_get0_data(d), (size_t)ASN1_STRING_length(d)));
    if (!(exts[ne++] = rego__ob_done(&t))) return NULL;
  }
  rego__ob_put(&o, "Extensions", ne ? rv_arr(a, exts, ne) : &rv_null_v);
  rego__ob_put(&o, "ExtraExtensions", &rv_null_v);
  rego__ob_put(&o, "UnhandledCriticalExtensions", &rv_null_v);
  /* extended key usage, Go numbering */
  uint32_t xku = X509_get_extended_key_usage(x);
  rv *ekus[8];
  size_t nek = 0;
  if (X509_get_extension_flags(x) & EXFLAG_XKUSAGE) {
    static const struct {
      uint32_t bit;
      int go;
    } em[] = {{XKU_SSL_SERVER, 1}, {XKU_SSL_CLIENT, 2}, {XKU_CODE_SIGN, 3}, {XKU_SMIME, 4}, {XKU_TIMESTAMP, 8}, {XKU_OCSP_SIGN, 9}};
    if (xku & XKU_ANYEKU) ekus[nek++] = rv_int(a, 0);
    for (size_t i = 0; i < sizeof(em) / sizeof(em[0]); i++)
      if (xku & em[i].bit) ekus[nek++] = rv_int(a, em[i].go);
    for (size_t i = 0; i < nek; i++)
      if (!ekus[i]) return NULL;
  }
  rego__ob_put(&o, "ExtKeyUsage", nek ? rv_arr(a, ekus, nek) : &rv_null_v);
  rego__ob_put(&o, "UnknownExtKeyUsage", &rv_null_v);
  uint32_t fl = X509_get_extension_flags(x);
  bool bc = (fl & EXFLAG_BCONS) != 0, ca = (fl & EXFLAG_CA) != 0 && bc;
  long pl = X509_get_pathlen(x);
  rego__ob_put(&o, "BasicConstraintsValid", rv_bool(bc));
  rego__ob_put(&o, "IsCA", rv_bool(ca));
  rego__ob_put(&o, "MaxPathLen", rv_int(a, bc ? (pl >= 0 ? pl : -1) : 0));
  rego__ob_put(&o, "MaxPathLenZero", rv_bool(bc && pl == 0));
  const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(x), *akid = X509_get0_authority_key_id(x);
  rego__ob_put(&o, "SubjectKeyId", skid ? rego__x5_bytes(a, ASN1_STRING_get0_data(skid), (size_t)ASN1_STRING_length(skid)) : &rv_null_v);
  rego__ob_put(&o, "AuthorityKeyId", akid ? rego__x5_bytes(a, ASN1_STRING_get0_data(akid), (size_t)ASN1_STRING_length(akid)) : &rv_null_v);
  GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  rego__ob_put(&o, "DNSNames", rego__x5_sans(a, gens, GEN_DNS));
  rego__ob_put(&o, "EmailAddresses", rego__x5_sans(a, gens, GEN_EMAIL));
  rego__ob_put(&o, "IPAddresses", rego__x5_ips(a, gens));
  rv *uris = rego__x5_sans(a, gens, GEN_URI);
  GENERAL_NAMES_free(gens);
  rego__ob_put(&o, "URIStrings", uris);
  return rego__ob_done(&o);
}

/* ---------------------------------------------------------------- input decoding */
typedef struct {
  X509 *c[X5_MAX_CERTS];
  size_t n;
} x5_certs;

static void rego__x5_certs_free(x5_certs *cs) {
  for (size_t i = 0; i < cs->n; i++) X509_free(cs->c[i]);
  cs->n = 0;
}

/* Concatenated DER certificates (x509.ParseCertificates). */
static bool rego__x5_parse_der(const uint8_t *d, size_t n, x5_certs *cs, char *why, size_t wl) {
  const uint8_t *p = d, *end = d + n;
  while (p < end) {
    if (cs->n == X5_MAX_CERTS) {
      snprintf(why, wl, "more than %d certificates", X5_MAX_CERTS);
      return false;
    }
    X509 *x = d2i_X509(NULL, &p, (long)(end - p));
    if (!x) {
      snprintf(why, wl, "x509: malformed certificate");
      return false;
    }
    cs->c[cs->n++] = x;
  }
  return true;
}

/* PEM CERTIFICATE blocks (getX509CertsFromPem). */
static bool rego__x5_parse_pem(const char *s, size_t n, x5_certs *cs, char *why, size_t wl) {
  BIO *b = BIO_new_mem_buf(s, (int)n);
  if (!b) {
    snprintf(why, wl, "out of memory");
    return false;
  }
  bool ok = true;
  for (;;) {
    char *name = NULL, *hdr = NULL;
    unsigned char *der = NULL;
    long dl = 0;
    if (PEM_read_bio(b, &name, &hdr, &der, &dl) != 1) break;
    if (strcmp(name, "CERTIFICATE")) {
      snprintf(why, wl, "PEM block type is '%.64s', expected CERTIFICATE", name);
      ok = false;
    } else {
      ok = rego__x5_parse_der(der, (size_t)dl, cs, why, wl);
    }
    OPENSSL_free(name);
    OPENSSL_free(hdr);
    OPENSSL_free(der);
    if (!ok) break;
  }
  ERR_clear_error();
  BIO_free(b);
  return ok;
}

/* getX509CertsFromString: PEM, or base64 of PEM or DER. Returns 0, 1 (why says why) or -1
 * (out of memory). */
static int rego__x5_certs_parse(rg_arena *a, const rv *in, x5_certs *cs, char *why, size_t wl) {
  cs->n = 0;
  bool ok;
  if (in->n > X5_INPUT_MAX) {
    snprintf(why, wl, "input larger than %u bytes", X5_INPUT_MAX);
    return 1;
  }
  if (!strncmp(in->u.s, "-----BEGIN", 10)) {
    ok = rego__x5_parse_pem(in->u.s, in->n, cs, why, wl);
  } else {
    uint8_t *d;
    size_t dl;
    long bad = rego__x5_b64dec(a, in->u.s, in->n, &d, &dl);
    if (bad == -2) return -1;
    if (bad >= 0) {
      snprintf(why, wl, "illegal base64 data at input byte %ld", bad);
      ok = false;
    } else if (dl >= 10 && !memcmp(d, "-----BEGIN", 10)) {
      ok = rego__x5_parse_pem((const char *)d, dl, cs, why, wl);
    } else {
      ok = rego__x5_parse_der(d, dl, cs, why, wl);
    }
  }
  if (!ok) rego__x5_certs_free(cs);
  return ok ? 0 : 1;
}

static rv *rego__x5_cert_list(rg_arena *a, X509 **c, size_t n) {
  rv *items[X5_MAX_CERTS];
  for (size_t i = 0; i < n; i++)
    if (!(items[i] = rego__x5_cert(a, c[i]))) return NULL;
  return rv_arr(a, items, n);
}

static CT_RESULT rego__bi_parse_certificates(rg_ev *ev, rv **a, rv **out) {
  static const char fname[] = "crypto.x509.parse_certificates";
  CT_GUARD(rg_bi_want(ev, fname, 1, a[0], RV_STR));
  x5_certs cs;
  char why[160] = "";
  int r = rego__x5_certs_parse(A, a[0], &cs, why, sizeof(why));
  if (r < 0) return rg_bi_oom(ev);
  if (r > 0) return rg_bi_fail(ev, "%s: %s", fname, why);
  *out = rego__x5_cert_list(A, cs.c, cs.n);
  rego__x5_certs_free(&cs);
  return *out ? CT_OK : rg_bi_oom(ev);
}

/* The first certificate is the root, the last the leaf, those between intermediates; the
 * result is the verified chain leaf first. Any failure is [false, []]. */
static CT_RESULT rego__bi_parse_and_verify(rg_ev *ev, rv **a, rv **out) {
  static const char fname[] = "crypto.x509.parse_and_verify_certificates";
  CT_GUARD(rg_bi_want(ev, fname, 1, a[0], RV_STR));
  rv *fail_items[2] = {RV_FALSE, &rv_empty_arr_v};
  x5_certs cs = {0};
  char why[160] = "";
  int r = rego__x5_certs_parse(A, a[0], &cs, why, sizeof(why));
  if (r < 0) return rg_bi_oom(ev);
  if (r > 0 || cs.n < 2) {
    /* a parse error is not an error here: the chain is "not verified" */
    rego__x5_certs_free(&cs);
    *out = rv_arr(A, fail_items, 2);
    return *out ? CT_OK : rg_bi_oom(ev);
  }
  X509_STORE *st = X509_STORE_new();
  STACK_OF(X509) *mid = sk_X509_new_null();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  bool verified = false;
  if (st && mid && ctx && X509_STORE_add_cert(st, cs.c[0]) == 1) {
    bool pushed = true;
    for (size_t i = 1; i + 1 < cs.n; i++) pushed = pushed && sk_X509_push(mid, cs.c[i]) > 0;
    if (pushed && X509_STORE_CTX_init(ctx, st, cs.c[cs.n - 1], mid) == 1) {
      verified = X509_verify_cert(ctx) == 1;
      if (verified) {
        STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
        size_t cn = (size_t)sk_X509_num(chain);
        X509 *cc[X5_MAX_CERTS];
        for (size_t i = 0; i < cn && i < X5_MAX_CERTS; i++) cc[i] = sk_X509_value(chain, (int)i);
        rv *list = rego__x5_cert_list(A, cc, cn < X5_MAX_CERTS ? cn : X5_MAX_CERTS);
        rv *items[2] = {RV_TRUE, list};
        *out = list ? rv_arr(A, items, 2) : NULL;
      }
    }
  }
  ERR_clear_error();
  X509_STORE_CTX_free(ctx);
  sk_X509_free(mid);
  X509_STORE_free(st);
  rego__x5_certs_free(&cs);
  if (!verified) *out = rv_arr(A, fail_items, 2);
  return *out ? CT_OK : rg_bi_oom(ev);
}

/* ---------------------------------------------------------------- CSR */
static CT_RESULT rego__bi_parse_csr(rg_ev *ev, rv **a, rv **out) {
  static const char fname[] = "crypto.x509.parse_certificate_request";
  CT_GUARD(rg_bi_want(ev, fname, 1, a[0], RV_STR));
  if (a[0]->n > X5_INPUT_MAX) return rg_bi_fail(ev, "%s: input larger than %u bytes", fname, X5_INPUT_MAX);
  const uint8_t *d = (const uint8_t *)a[0]->u.s;
  size_t dl = a[0]->n;
  if (strncmp(a[0]->u.s, "-----BEGIN CERTIFICATE REQUEST-----", 35)) {
    uint8_t *dd;
    long bad = rego__x5_b64dec(A, a[0]->u.s, a[0]->n, &dd, &dl);
    if (bad == -2) return rg_bi_oom(ev);
    if (bad >= 0) return rg_bi_fail(ev, "%s: illegal base64 data at input byte %ld", fname, bad);
    d = dd;
  }
  unsigned char *der = NULL;
  long derl = 0;
  if (dl >= 10 && !memcmp(d, "-----BEGIN", 10)) {
    BIO *b = BIO_new_mem_buf(d, (int)dl);
    char *name = NULL, *hdr = NULL;
    int r = b ? PEM_read_bio(b, &name, &hdr, &der, &derl) : 0;
    BIO_free(b);
    bool right = r == 1 && !strcmp(name, "CERTIFICATE REQUEST");
    OPENSSL_free(name);
    OPENSSL_free(hdr);
    if (r == 1 && !right) {
      OPENSSL_free(der);
      return rg_bi_fail(ev, "%s: invalid PEM-encoded certificate signing request", fname);
    }
    if (r == 1) {
      d = der;
      dl = (size_t)derl;
    }
  }
  const uint8_t *p = d;
  X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)dl);
  OPENSSL_free(der);
  ERR_clear_error();
  if (!req) return rg_bi_fail(ev, "%s: asn1: structure error: tags don't match", fname);
  x5_ob o = {.a = A};
  unsigned char *raw = NULL;
  int rl = i2d_X509_REQ(req, &raw);
  rego__ob_put(&o, "Raw", rl > 0 ? rego__x5_b64(A, raw, (size_t)rl) : &rv_null_v);
  OPENSSL_free(raw);
  rego__ob_put(&o, "Version", rv_int(A, X509_REQ_get_version(req)));
  const ASN1_BIT_STRING *sig = NULL;
  const X509_ALGOR *alg = NULL;
  X509_REQ_get0_signature(req, &sig, &alg);
  rego__ob_put(&o, "Signature", sig ? rego__x5_bytes(A, ASN1_STRING_get0_data(sig), (size_t)ASN1_STRING_length(sig)) : &rv_null_v);
  rego__ob_put(&o, "SignatureAlgorithm", rv_int(A, rego__x5_sigalg(X509_REQ_get_signature_nid(req))));
  EVP_PKEY *pk = X509_REQ_get0_pubkey(req);
  rego__ob_put(&o, "PublicKeyAlgorithm", rv_int(A, rego__x5_pkalg(pk)));
  rego__ob_put(&o, "PublicKey", rego__x5_pubkey(A, pk));
  rego__ob_put(&o, "Subject", rego__x5_name(A, X509_REQ_get_subject_name(req)));
  STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
  GENERAL_NAMES *gens = NULL;
  for (int i = 0; exts && i < sk_X509_EXTENSION_num(exts) && !gens; i++) {
    X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);
    if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_subject_alt_name) gens = X509V3_EXT_d2i(e);
  }
  rego__ob_put(&o, "DNSNames", rego__x5_sans(A, gens, GEN_DNS));
  rego__ob_put(&o, "EmailAddresses", rego__x5_sans(A, gens, GEN_EMAIL));
  rego__ob_put(&o, "IPAddresses", rego__x5_ips(A, gens));
  GENERAL_NAMES_free(gens);
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  X509_REQ_free(req);
  *out = rego__ob_done(&o);
  return *out ? CT_OK : rg_bi_oom(ev);
}

/* ---------------------------------------------------------------- private keys */
typedef struct {
  EVP_PKEY *k[X5_MAX_KEYS];
  size_t n;
} x5_keys;

static void rego__x5_keys_free(x5_keys *ks) {
  for (size_t i = 0; i < ks->n; i++) EVP_PKEY_free(ks->k[i]);
  ks->n = 0;
}

/* getPrivateKeysFromPEMData: RSA PRIVATE KEY, PRIVATE KEY and EC PRIVATE KEY blocks; other
 * blocks are skipped. A block that does not parse is an error. */
static bool rego__x5_keys_from_pem(const char *s, size_t n, x5_keys *ks, char *why, size_t wl) {
  BIO *b = BIO_new_mem_buf(s, (int)n);
  if (!b) return false;
  bool ok = true;
  for (;;) {
    char *name = NULL, *hdr = NULL;
    unsigned char *der = NULL;
    long dl = 0;
    if (PEM_read_bio(b, &name, &hdr, &der, &dl) != 1) break;
    const char *type = !strcmp(name, "RSA PRIVATE KEY") ? "RSA" : !strcmp(name, "EC PRIVATE KEY") ? "EC" : !strcmp(name, "PRIVATE KEY") ? "" : NULL;
    if (type) {
      const unsigned char *p = der;
      EVP_PKEY *pk = *type ? d2i_PrivateKey_ex(!strcmp(type, "RSA") ? EVP_PKEY_RSA : EVP_PKEY_EC, NULL, &p, dl, NULL, NULL)
                           : d2i_AutoPrivateKey(NULL, &p, dl);
      if (!pk) {
        snprintf(why, wl, "x509: failed to parse private key (%s)", name);
        ok = false;
      } else if (ks->n == X5_MAX_KEYS) {
        EVP_PKEY_free(pk);
        snprintf(why, wl, "more than %d private keys", X5_MAX_KEYS);
        ok = false;
      } else
        ks->k[ks->n++] = pk;
    }
    if (der) ct_wipe(der, (size_t)dl);
    OPENSSL_free(name);
    OPENSSL_free(hdr);
    OPENSSL_free(der);
    if (!ok) break;
  }
  ERR_clear_error();
  BIO_free(b);
  return ok;
}

static rv *rego__x5_b64u_bn(rg_arena *a, const BIGNUM *b) {
  static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  if (!b) return NULL;
  int n = BN_num_bytes(b);
  uint8_t buf[1100];
  if (n > (int)sizeof(buf)) return NULL;
  BN_bn2bin(b, buf);
  char *o = rg_alloc(a, ((size_t)n + 2) / 3 * 4 + 1);
  if (!o) return NULL;
  size_t w = 0;
  for (int i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)buf[i] << 16;
    if (i + 1 < n) v |= (uint32_t)buf[i + 1] << 8;
    if (i + 2 < n) v |= buf[i + 2];
    o[w++] = al[(v >> 18) & 63];
    o[w++] = al[(v >> 12) & 63];
    if (i + 1 < n) o[w++] = al[(v >> 6) & 63];
    if (i + 2 < n) o[w++] = al[v & 63];
  }
  ct_wipe(buf, sizeof(buf));
  return rv_str(a, o, w);
}

/* Go's JSON of rsa.PrivateKey / ecdsa.PrivateKey / ed25519.PrivateKey. */
static rv *rego__x5_privkey(rg_arena *a, const EVP_PKEY *pk) {
  x5_ob o = {.a = a};
  if (EVP_PKEY_is_a(pk, "RSA")) {
    BIGNUM *n = NULL, *e = NULL, *d = NULL, *p = NULL, *q = NULL;
    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n);
    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e);
    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_D, &d);
    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_FACTOR1, &p);
    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_FACTOR2, &q);
    rego__ob_put(&o, "N", rego__x5_bn(a, n));
    rego__ob_put(&o, "E", rego__x5_bn(a, e));
    rego__ob_put(&o, "D", rego__x5_bn(a, d));
    rv *pr[2] = {rego__x5_bn(a, p), rego__x5_bn(a, q)};
    rego__ob_put(&o, "Primes", pr[0] && pr[1] ? rv_arr(a, pr, 2) : NULL);
    BN_free(n);
    BN_free(e);
    BN_clear_free(d);
    BN_clear_free(p);
    BN_clear_free(q);
    return rego__ob_done(&o);
  }
  if (EVP_PKEY_is_a(pk, "EC")) {
    BIGNUM *x = NULL, *y = NULL, *d = NULL;
    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_X, &x);
    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_Y, &y);
    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_PRIV_KEY, &d);
    rego__ob_put(&o, "Curve", &rv_empty_obj_v);
    rego__ob_put(&o, "X", rego__x5_bn(a, x));
    rego__ob_put(&o, "Y", rego__x5_bn(a, y));
    rego__ob_put(&o, "D", rego__x5_bn(a, d));
    BN_free(x);
    BN_free(y);
    BN_clear_free(d);
    return rego__ob_done(&o);
  }
  uint8_t raw[64];
  size_t rl = 32, pl = 32;
  if (EVP_PKEY_is_a(pk, "ED25519") && EVP_PKEY_get_raw_private_key(pk, raw, &rl) == 1 &&
      EVP_PKEY_get_raw_public_key(pk, raw + 32, &pl) == 1) {
    rv *r = rego__x5_b64(a, raw, 64); /* Go's ed25519.PrivateKey is seed || public key */
    ct_wipe(raw, sizeof(raw));
    return r;
  }
  return &rv_null_v;
}

static CT_RESULT rego__bi_parse_private_keys(rg_ev *ev, rv **a, rv **out) {
  static const char fname[] = "crypto.parse_private_keys";
  CT_GUARD(rg_bi_want(ev, fname, 1, a[0], RV_STR));
  if (a[0]->n == 0) {
    *out = &rv_null_v;
    return CT_OK;
  }
  if (a[0]->n > X5_INPUT_MAX) return rg_bi_fail(ev, "%s: input larger than %u bytes", fname, X5_INPUT_MAX);
  const char *s = a[0]->u.s;
  size_t n = a[0]->n;
  uint8_t *d;
  size_t dl;
  long bad = rego__x5_b64dec(A, s, n, &d, &dl);
  if (bad == -2) return rg_bi_oom(ev);
  if (bad == -1) {
    s = (const char *)d;
    n = dl;
  }
  x5_keys ks = {0};
  char why[160] = "";
  if (!rego__x5_keys_from_pem(s, n, &ks, why, sizeof(why))) {
    rego__x5_keys_free(&ks);
    return rg_bi_fail(ev, "%s: %s", fname, why);
  }
  rv *items[X5_MAX_KEYS];
  bool ok = true;
  for (size_t i = 0; i < ks.n; i++) ok = ok && (items[i] = rego__x5_privkey(A, ks.k[i])) != NULL;
  size_t nk = ks.n;
  rego__x5_keys_free(&ks);
  if (!ok) return rg_bi_oom(ev);
  *out = nk ? rv_arr(A, items, nk) : &rv_empty_arr_v;
  return *out ? CT_OK : rg_bi_oom(ev);
}

/* A JWK of the first private key (only RSA keys are expected; others are reported). */
static CT_RESULT rego__bi_parse_rsa_private_key(rg_ev *ev, rv **a, rv **out) {
  static const char fname[] = "crypto.x509.parse_rsa_private_key";
  CT_GUARD(rg_bi_want(ev, fname, 1, a[0], RV_STR));
  if (a[0]->n == 0) return rg_bi_fail(ev, "%s: input PEM data was empty", fname);
  if (a[0]->n > X5_INPUT_MAX) return rg_bi_fail(ev, "%s: input larger than %u bytes", fname, X5_INPUT_MAX);
  const char *s = a[0]->u.s;
  size_t n = a[0]->n;
  if (strncmp(s, "-----BEGIN", 10)) {
    uint8_t *d;
    size_t dl;
    long bad = rego__x5_b64dec(A, s, n, &d, &dl);
    if (bad == -2) return rg_bi_oom(ev);
    if (bad >= 0) return rg_bi_fail(ev, "%s: illegal base64 data at input byte %ld", fname, bad);
    s = (const char *)d;
    n = dl;
  }
  x5_keys ks = {0};
  char why[160] = "";
  if (!rego__x5_keys_from_pem(s, n, &ks, why, sizeof(why))) {
    rego__x5_keys_free(&ks);
    return rg_bi_fail(ev, "%s: %s", fname, why);
  }
  if (!ks.n) {
    *out = &rv_null_v;
    return CT_OK;
  }
  EVP_PKEY *pk = ks.k[0];
  ct_status st = CT_OK;
  x5_ob o = {.a = A};
  if (EVP_PKEY_is_a(pk, "RSA")) {
    static const struct {
      const char *param, *jwk;
    } f[] = {{OSSL_PKEY_PARAM_RSA_D, "d"},         {OSSL_PKEY_PARAM_RSA_EXPONENT1, "dp"},
             {OSSL_PKEY_PARAM_RSA_EXPONENT2, "dq"}, {OSSL_PKEY_PARAM_RSA_E, "e"},
             {OSSL_PKEY_PARAM_RSA_N, "n"},         {OSSL_PKEY_PARAM_RSA_FACTOR1, "p"},
             {OSSL_PKEY_PARAM_RSA_FACTOR2, "q"},   {OSSL_PKEY_PARAM_RSA_COEFFICIENT1, "qi"}};
    rego__ob_put(&o, "kty", rv_cstr(A, "RSA"));
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
      BIGNUM *b = NULL;
      if (EVP_PKEY_get_bn_param(pk, f[i].param, &b) == 1) rego__ob_put(&o, f[i].jwk, rego__x5_b64u_bn(A, b));
      BN_clear_free(b);
    }
    *out = rego__ob_done(&o);
    if (!*out) st = rg_bi_oom(ev);
  } else {
    st = rg_bi_fail(ev, "%s: not an RSA private key", fname);
  }
  rego__x5_keys_free(&ks);
  return st;
}

/* tls.X509KeyPair: the certificate chain and a matching private key. */
static CT_RESULT rego__bi_parse_keypair(rg_ev *ev, rv **a, rv **out) {
  static const char fname[] = "crypto.x509.parse_keypair";
  CT_GUARD(rg_bi_want(ev, fname, 1, a[0], RV_STR));
  CT_GUARD(rg_bi_want(ev, fname, 2, a[1], RV_STR));
  if (a[0]->n > X5_INPUT_MAX || a[1]->n > X5_INPUT_MAX)
    return rg_bi_fail(ev, "%s: input larger than %u bytes", fname, X5_INPUT_MAX);
  const char *cs_ = a[0]->u.s, *ks_ = a[1]->u.s;
  size_t cn = a[0]->n, kn = a[1]->n;
  if (strncmp(cs_, "-----BEGIN ", 11)) {
    uint8_t *d;
    long bad = rego__x5_b64dec(A, cs_, cn, &d, &cn);
    if (bad == -2) return rg_bi_oom(ev);
    if (bad >= 0) return rg_bi_fail(ev, "%s: illegal base64 data at input byte %ld", fname, bad);
    cs_ = (const char *)d;
  }
  if (strncmp(ks_, "-----BEGIN ", 11)) {
    uint8_t *d;
    long bad = rego__x5_b64dec(A, ks_, kn, &d, &kn);
    if (bad == -2) return rg_bi_oom(ev);
    if (bad >= 0) return rg_bi_fail(ev, "%s: illegal base64 data at input byte %ld", fname, bad);
    ks_ = (const char *)d;
  }
  x5_certs cs = {0};
  char why[160] = "";
  bool ok = cn >= 11 && !strncmp(cs_, "-----BEGIN ", 11) ? rego__x5_parse_pem(cs_, cn, &cs, why, sizeof(why))
                                                          : rego__x5_parse_der((const uint8_t *)cs_, cn, &cs, why, sizeof(why));
  if (ok && !cs.n) {
    snprintf(why, sizeof(why), "tls: failed to find any PEM data in certificate input");
    ok = false;
  }
  if (!ok) {
    rego__x5_certs_free(&cs);
    return rg_bi_fail(ev, "%s: %s", fname, why);
  }
  x5_keys ks = {0};
  EVP_PKEY *key = NULL;
  if (kn >= 11 && !strncmp(ks_, "-----BEGIN ", 11)) {
    ok = rego__x5_keys_from_pem(ks_, kn, &ks, why, sizeof(why));
    if (ok && !ks.n) {
      snprintf(why, sizeof(why), "tls: failed to find any PEM data in key input");
      ok = false;
    }
    if (ok) key = ks.k[0];
  } else {
    const unsigned char *p = (const unsigned char *)ks_;
    key = d2i_AutoPrivateKey(NULL, &p, (long)kn);
    if (key) ks.k[ks.n++] = key;
    else {
      snprintf(why, sizeof(why), "tls: failed to parse private key");
      ok = false;
    }
  }
  if (ok && EVP_PKEY_eq(X509_get0_pubkey(cs.c[0]), key) != 1) {
    snprintf(why, sizeof(why), "tls: private key does not match public key");
    ok = false;
  }
  ERR_clear_error();
  ct_status st = CT_OK;
  if (!ok) {
    st = rg_bi_fail(ev, "%s: %s", fname, why);
  } else {
    rv *ders[X5_MAX_CERTS];
    for (size_t i = 0; i < cs.n && ok; i++) {
      unsigned char *der = NULL;
      int dl = i2d_X509(cs.c[i], &der);
      ders[i] = dl > 0 ? rego__x5_b64(A, der, (size_t)dl) : NULL;
      OPENSSL_free(der);
      ok = ders[i] != NULL;
    }
    x5_ob o = {.a = A};
    rego__ob_put(&o, "Certificate", ok ? rv_arr(A, ders, cs.n) : NULL);
    rego__ob_put(&o, "PrivateKey", rego__x5_privkey(A, key));
    rego__ob_put(&o, "Leaf", rego__x5_cert(A, cs.c[0]));
    rego__ob_put(&o, "OCSPStaple", &rv_null_v);
    rego__ob_put(&o, "SignedCertificateTimestamps", &rv_null_v);
    rego__ob_put(&o, "SupportedSignatureAlgorithms", &rv_null_v);
    *out = rego__ob_done(&o);
    if (!*out) st = rg_bi_oom(ev);
  }
  rego__x5_keys_free(&ks);
  rego__x5_certs_free(&cs);
  return st;
}

const rg_builtin rg_builtins_x509[] = {
    {"crypto.x509.parse_certificates", 1, rego__bi_parse_certificates, false},
    {"crypto.x509.parse_and_verify_certificates", 1, rego__bi_parse_and_verify, true},
    {"crypto.x509.parse_certificate_request", 1, rego__bi_parse_csr, false},
    {"crypto.x509.parse_keypair", 2, rego__bi_parse_keypair, false},
    {"crypto.x509.parse_rsa_private_key", 1, rego__bi_parse_rsa_private_key, false},
    {"crypto.parse_private_keys", 1, rego__bi_parse_private_keys, false},
    {NULL, 0, NULL, false},
};
