/*
 * jose_x5c.c - token signing-key trust: x5c chains (trustee: kbs/src/crypto/jwt.rs,
 * verify_jwk_endorsement), PEM trust anchors and JWK Sets.
 */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <string.h>

#include "ct_codec.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "jose_internal.h"

/* Decodes one x5c entry: standard base64 DER as RFC 7517 says; like Trustee we drop '\n' and
 * surrounding whitespace and also accept base64url. */
static CT_RESULT jose__x5c_cert(const char *s, size_t len, size_t idx, X509 **out, ct_err *err) {
  CT_ENSURE(len <= JOSE_X5C_MAX_CERT_BYTES * 2, err, CT_ELIMIT, "x5c[%zu]: too long", idx);
  char *clean = malloc(len + 1);
  CT_ENSURE(clean, err, CT_ENOMEM, "x5c: out of memory");
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    if (s[i] != '\n') clean[n++] = s[i];
  size_t start = 0;
  while (start < n && (clean[start] == ' ' || clean[start] == '\t' || clean[start] == '\r'))
    start++;
  while (n > start && (clean[n - 1] == ' ' || clean[n - 1] == '\t' || clean[n - 1] == '\r')) n--;
  uint8_t *der = NULL;
  size_t der_len = 0;
  ct_status st = ct_b64_decode(CT_B64_STD, clean + start, n - start, &der, &der_len, err);
  if (st) st = ct_b64_decode(CT_B64_URL, clean + start, n - start, &der, &der_len, err);
  free(clean);
  if (st) return ct_fail(err, CT_EINVAL, "x5c[%zu]: not base64", idx);
  const unsigned char *p = der;
  X509 *cert = der_len <= JOSE_X5C_MAX_CERT_BYTES ? d2i_X509(NULL, &p, (long)der_len) : NULL;
  bool whole = cert && p == der + der_len;
  free(der);
  if (!whole) {
    X509_free(cert);
    return ct_fail_ossl(err, CT_EINVAL, "x5c[%zu]: not a DER certificate", idx);
  }
  *out = cert;
  return CT_OK;
}

CT_RESULT jose_x5c_verify(const json_t *jwk_with_x5c, X509_STORE *trust, ct_err *err) {
  CT_ENSURE(trust, err, CT_EINVAL, "x5c: no trust store");
  CT_ENSURE(json_is_object(jwk_with_x5c), err, CT_EINVAL, "x5c: jwk must be a JSON object");
  const char *kty = json_string_value(json_object_get(jwk_with_x5c, "kty"));
  CT_ENSURE(kty && (strcmp(kty, "RSA") == 0 || strcmp(kty, "EC") == 0), err, CT_EUNSUPPORTED,
            "x5c: only RSA or EC JWKs are supported");
  json_t *x5c = json_object_get(jwk_with_x5c, "x5c");
  CT_ENSURE(x5c, err, CT_EINVAL, "x5c: no x5c member inside the JWK");
  CT_ENSURE(json_is_array(x5c) && json_array_size(x5c) > 0, err, CT_EINVAL,
            "x5c: must be a non-empty array");
  CT_ENSURE(json_array_size(x5c) <= JOSE_X5C_MAX_CERTS, err, CT_ELIMIT,
            "x5c: more than %d certificates", JOSE_X5C_MAX_CERTS);
  jose_jwk *key = NULL;
  ct_status st = jose_jwk_from_json(jwk_with_x5c, &key, err);
  if (st) return ct_err_prefix(err, "x5c: ");
  X509 *leaf = NULL;
  STACK_OF(X509) *chain = sk_X509_new_null();
  X509_STORE_CTX *ctx = NULL;
  CT_ENSURE_GOTO(st, chain, done, err, CT_ENOMEM, "x5c: out of memory");
  for (size_t i = 0; i < json_array_size(x5c); i++) {
    json_t *e = json_array_get(x5c, i);
    CT_ENSURE_GOTO(st, json_is_string(e), done, err, CT_EINVAL, "x5c[%zu]: must be a string", i);
    X509 *cert = NULL;
    CT_GUARD_GOTO(st, jose__x5c_cert(json_string_value(e), json_string_length(e), i, &cert, err),
                  done);
    if (i == 0) {
      leaf = cert;
    } else if (!sk_X509_push(chain, cert)) {
      X509_free(cert);
      st = ct_fail(err, CT_ENOMEM, "x5c: out of memory");
      goto done;
    }
  }
  EVP_PKEY *leaf_key = X509_get0_pubkey(leaf);
  CT_ENSURE_GOTO(st, leaf_key && EVP_PKEY_eq(leaf_key, jose_jwk_pkey(key)) == 1, done, err,
                 CT_ECRYPTO, "x5c: the jwk does not match the leaf certificate's public key");
  ctx = X509_STORE_CTX_new();
  CT_ENSURE_GOTO(st, ctx && X509_STORE_CTX_init(ctx, trust, leaf, chain) == 1, done, err,
                 CT_ENOMEM, "x5c: out of memory");
  if (X509_verify_cert(ctx) != 1) {
    int e = X509_STORE_CTX_get_error(ctx);
    st = ct_fail(err, CT_ECRYPTO, "x5c: the JWK cannot be validated by the trust anchors: %s "
                 "(depth %d)", X509_verify_cert_error_string(e),
                 X509_STORE_CTX_get_error_depth(ctx));
  }
done:
  ERR_clear_error();
  X509_STORE_CTX_free(ctx);
  X509_free(leaf);
  sk_X509_pop_free(chain, X509_free);
  jose_jwk_free(key);
  return st;
}

/* Adds every certificate of one PEM file; at least one is required. */
static CT_RESULT jose__load_pem_certs(X509_STORE *store, const char *path, ct_err *err) {
  uint8_t *data = NULL;
  size_t len = 0;
  ct_status st = ct_file_read(path, JOSE_FILE_MAX, &data, &len, err);
  if (st) return ct_err_prefix(err, "trust store: ");
  BIO *bio = BIO_new_mem_buf(data, (int)len);
  size_t count = 0;
  CT_ENSURE_GOTO(st, bio, done, err, CT_ENOMEM, "trust store: out of memory");
  for (;;) {
    X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (!cert) break;
    int ok = X509_STORE_add_cert(store, cert);
    X509_free(cert);
    CT_ENSURE_GOTO(st, ok == 1, done, err, CT_ENOMEM, "trust store: cannot add a certificate "
                   "from %s", path);
    CT_ENSURE_GOTO(st, ++count <= 1024, done, err, CT_ELIMIT, "trust store: too many "
                   "certificates in %s", path);
  }
  /* The loop ends at EOF (PEM_R_NO_START_LINE) or at a broken block, which is an error. */
  unsigned long e = ERR_peek_last_error();
  bool eof = e == 0 || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
  ERR_clear_error();
  CT_ENSURE_GOTO(st, eof, done, err, CT_EINVAL, "trust store: %s holds a malformed certificate",
                 path);
  CT_ENSURE_GOTO(st, count > 0, done, err, CT_EINVAL, "trust store: no certificates found in %s",
                 path);
done:
  BIO_free(bio);
  free(data);
  return st;
}

CT_RESULT jose_trust_store_load(const char *const *pem_paths, size_t n, X509_STORE **out,
                                ct_err *err) {
  CT_ENSURE(pem_paths || n == 0, err, CT_EINVAL, "trust store: no paths");
  X509_STORE *store = X509_STORE_new();
  CT_ENSURE(store, err, CT_ENOMEM, "trust store: out of memory");
  for (size_t i = 0; i < n; i++) {
    ct_status st = jose__load_pem_certs(store, pem_paths[i], err);
    if (st) {
      X509_STORE_free(store);
      return st;
    }
  }
  *out = store;
  return CT_OK;
}

struct jose_jwks {
  jose_jwk **keys;
  size_t n;
};

void jose_jwks_free(jose_jwks *set) {
  if (!set) return;
  for (size_t i = 0; i < set->n; i++) jose_jwk_free(set->keys[i]);
  free(set->keys);
  free(set);
}

CT_RESULT jose_jwks_from_json(const json_t *set, jose_jwks **out, ct_err *err) {
  json_t *keys = json_is_object(set) ? json_object_get(set, "keys") : NULL;
  CT_ENSURE(json_is_array(keys), err, CT_EINVAL, "jwks: must be an object with a \"keys\" array");
  size_t n = json_array_size(keys);
  CT_ENSURE(n <= JOSE_JWKS_MAX_KEYS, err, CT_ELIMIT, "jwks: more than %d keys",
            JOSE_JWKS_MAX_KEYS);
  jose_jwks *s = calloc(1, sizeof *s);
  CT_ENSURE(s, err, CT_ENOMEM, "jwks: out of memory");
  s->keys = calloc(n ? n : 1, sizeof *s->keys);
  if (!s->keys) {
    free(s);
    return ct_fail(err, CT_ENOMEM, "jwks: out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    ct_status st = jose_jwk_from_json(json_array_get(keys, i), &s->keys[i], err);
    if (st) {
      jose_jwks_free(s);
      return ct_err_prefix(err, "jwks key %zu: ", i);
    }
    s->n++;
  }
  *out = s;
  return CT_OK;
}

CT_RESULT jose_jwks_load(const char *path_or_file_uri, jose_jwks **out, ct_err *err) {
  CT_ENSURE(path_or_file_uri, err, CT_EINVAL, "jwks: no path");
  const char *path = path_or_file_uri;
  if (strncmp(path, "file://", 7) == 0)
    path += 7;
  else
    CT_ENSURE(!strstr(path, "://"), err, CT_EUNSUPPORTED,
              "jwks: only local paths and file:// URIs can be loaded here: %.200s", path);
  uint8_t *data = NULL;
  size_t len = 0;
  ct_status st = ct_file_read(path, JOSE_FILE_MAX, &data, &len, err);
  if (st) return ct_err_prefix(err, "jwks: ");
  json_t *v = NULL;
  st = ct_json_parse((const char *)data, len, JOSE_JSON_DEPTH, &v, err);
  free(data);
  if (st) return ct_err_prefix(err, "jwks %.200s: ", path);
  st = jose_jwks_from_json(v, out, err);
  json_decref(v);
  return st;
}

const jose_jwk *jose_jwks_find(const jose_jwks *set, const char *kid) {
  for (size_t i = 0; set && kid && i < set->n; i++)
    if (set->keys[i]->kid && strcmp(set->keys[i]->kid, kid) == 0) return set->keys[i];
  return NULL;
}

size_t jose_jwks_count(const jose_jwks *set) { return set ? set->n : 0; }

const jose_jwk *jose_jwks_get(const jose_jwks *set, size_t i) {
  return set && i < set->n ? set->keys[i] : NULL;
}
