/*
 * cdh_cosign.c - cosign signature checks with a public key (no Rekor, no Fulcio), as image-rs
 * does through sigstore-rs: the signature "image" at sha256-<hex>.sig, its simple-signing
 * layers, ECDSA P-256 / SHA-256 signatures over the payloads, the payload's digest and identity.
 */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdh_image.h"
#include "ct_codec.h"
#include "ct_json.h"
#include "ct_log.h"

#define CDH__SIMPLESIGNING "application/vnd.dev.cosign.simplesigning.v1+json"
#define CDH__SIG_ANNOTATION "dev.cosignproject.cosign/signature"

static CT_RESULT cdh__load_key(const char *pem, size_t len, EVP_PKEY **out, ct_err *err) {
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  CT_ENSURE(b, err, CT_ENOMEM, "out of memory");
  EVP_PKEY *k = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
  BIO_free(b);
  CT_ENSURE(k, err, CT_EINVAL, "cosign: the policy's key is not a PEM public key");
  char group[64] = "";
  size_t gl = 0;
  if (EVP_PKEY_get_base_id(k) != EVP_PKEY_EC ||
      !EVP_PKEY_get_utf8_string_param(k, "group", group, sizeof group, &gl) ||
      strcmp(group, "prime256v1")) {
    EVP_PKEY_free(k);
    return ct_fail(err, CT_EUNSUPPORTED, "cosign: the policy's key must be an ECDSA P-256 key");
  }
  *out = k;
  return CT_OK;
}

static int cdh__verify(EVP_PKEY *k, const uint8_t *msg, size_t n, const uint8_t *sig, size_t slen) {
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  int ok = c && EVP_DigestVerifyInit(c, NULL, EVP_sha256(), NULL, k) == 1 &&
           EVP_DigestVerify(c, sig, slen, msg, n) == 1;
  EVP_MD_CTX_free(c);
  return ok;
}

/* Parses a reference from a signature payload or the policy, without defaulting a tag. */
static CT_RESULT cdh__ref(const char *s, cdh_image_ref *r, ct_err *err) {
  CT_GUARD(cdh_image_ref_parse(s, r, err));
  const char *slash = strrchr(s, '/');
  const char *colon = strrchr(s, ':');
  if (!strchr(s, '@') && !(colon && (!slash || colon > slash))) r->tag[0] = 0;
  return CT_OK;
}

/* Why the payload's identity does not satisfy signedIdentity, or "" when it does. */
static void cdh__identity(const json_t *si, const cdh_image_ref *img, const char *signed_ref,
                          char *why, size_t cap) {
  why[0] = 0;
  const char *type = si ? json_string_value(json_object_get(si, "type")) : "matchRepository";
  cdh_image_ref s, want;
  ct_err e;
  char a[CDH_IMAGE_REF_MAX + 64], b[CDH_IMAGE_REF_MAX + 64];
  if (cdh__ref(signed_ref, &s, &e)) {
    snprintf(why, cap, "docker-reference \"%.200s\" is not a valid reference", signed_ref);
    return;
  }
  if (!strcmp(type, "matchRepository")) {
    cdh_image_ref_name(img, a, sizeof a);
    cdh_image_ref_name(&s, b, sizeof b);
    if (strcmp(a, b))
      snprintf(why, cap, "signedIdentity matchRepository: the signature is for repository %.300s, "
               "the image is %.300s", b, a);
  } else if (!strcmp(type, "matchExact") ||
             (!strcmp(type, "matchRepoDigestOrExact") && img->tag[0])) {
    cdh_image_ref_whole(img, a, sizeof a);
    cdh_image_ref_whole(&s, b, sizeof b);
    if (img->digest[0] && !strcmp(type, "matchExact"))
      snprintf(why, cap, "signedIdentity matchExact: cannot match a reference by digest (%.300s)", a);
    else if (strcmp(a, b))
      snprintf(why, cap, "signedIdentity %s: the signature names \"%.300s\", not exactly \"%.300s\"",
               type, b, a);
  } else if (!strcmp(type, "matchRepoDigestOrExact")) {
    cdh_image_ref_name(img, a, sizeof a);
    cdh_image_ref_name(&s, b, sizeof b);
    if (strcmp(a, b))
      snprintf(why, cap, "signedIdentity matchRepoDigestOrExact: the signature is for repository "
               "%.300s, the image is %.300s", b, a);
  } else if (!strcmp(type, "exactReference")) {
    const char *dr = json_string_value(json_object_get(si, "dockerReference"));
    if (!dr || cdh__ref(dr, &want, &e)) {
      snprintf(why, cap, "signedIdentity exactReference: dockerReference is not a valid reference");
      return;
    }
    cdh_image_ref_whole(&want, a, sizeof a);
    cdh_image_ref_whole(&s, b, sizeof b);
    if (strcmp(a, b))
      snprintf(why, cap, "signedIdentity exactReference: the signature names \"%.300s\", the policy "
               "wants \"%.300s\"", b, a);
  } else if (!strcmp(type, "exactRepository")) {
    const char *dr = json_string_value(json_object_get(si, "dockerRepository"));
    if (!dr || cdh__ref(dr, &want, &e)) {
      snprintf(why, cap, "signedIdentity exactRepository: dockerRepository is not a valid repository");
      return;
    }
    cdh_image_ref_name(&want, a, sizeof a);
    cdh_image_ref_name(&s, b, sizeof b);
    if (strcmp(a, b))
      snprintf(why, cap, "signedIdentity exactRepository: the signature is for repository %.300s, "
               "the policy wants %.300s", b, a);
  } else {
    snprintf(why, cap, "signedIdentity %s is not supported for cosign signatures", type ? type : "?");
  }
}

/* Checks one simple-signing payload; *why explains a mismatch. */
static void cdh__payload(const uint8_t *blob, size_t n, const cdh_image_ref *img,
                         const char *manifest_digest, const char *list_digest, const json_t *si,
                         char *why, size_t cap) {
  json_t *p = NULL;
  ct_err e;
  if (ct_json_parse((const char *)blob, n, 16, &p, &e)) {
    snprintf(why, cap, "the signed payload is not JSON: %.200s", e.msg);
    return;
  }
  const json_t *crit = json_object_get(p, "critical");
  const char *type = json_string_value(json_object_get(crit, "type"));
  const char *digest = json_string_value(json_object_get(json_object_get(crit, "image"),
                                                         "docker-manifest-digest"));
  const char *ref = json_string_value(json_object_get(json_object_get(crit, "identity"),
                                                      "docker-reference"));
  if (!type || strcmp(type, "cosign container image signature"))
    snprintf(why, cap, "the signed payload's critical.type is \"%.100s\", not a cosign container "
             "image signature", type ? type : "");
  else if (!digest)
    snprintf(why, cap, "the signed payload has no docker-manifest-digest");
  else if (strcmp(digest, manifest_digest) && (!list_digest || strcmp(digest, list_digest)))
    snprintf(why, cap, "docker-manifest-digest %.80s in the signature does not match the image's "
             "manifest digest %s", digest, manifest_digest);
  else if (!ref)
    snprintf(why, cap, "the signed payload has no docker-reference");
  else
    cdh__identity(si, img, ref, why, cap);
  json_decref(p);
}

CT_RESULT cdh_cosign_verify(cdh_registry *g, const cdh_image_ref *r, const char *manifest_digest,
                            const char *list_digest, const char *key_pem, size_t key_len,
                            const json_t *signed_identity, ct_err *err) {
  EVP_PKEY *key = NULL;
  CT_GUARD(cdh__load_key(key_pem, key_len, &key, err));
  /* The signature tag follows the digest the tag resolved to: a manifest list's when there is
   * one, else the manifest's. */
  const char *signed_digest = list_digest ? list_digest : manifest_digest;
  char tag[80], media[128], sig_digest[80];
  snprintf(tag, sizeof tag, "sha256-%s.sig", signed_digest + 7);
  uint8_t *man = NULL;
  size_t mlen = 0;
  ct_status st = cdh_registry_manifest(g, tag, &man, &mlen, media, sizeof media, sig_digest, err);
  if (st == CT_ENOTFOUND) {
    st = ct_fail(err, CT_EDENIED, "cosign: no signature for %s (tag %s not found): the image is "
                 "unsigned", signed_digest, tag);
  }
  json_t *m = NULL;
  char why[700] = "", best[700] = "";
  int verified_any = 0;
  if (!st) st = ct_json_parse((const char *)man, mlen, 16, &m, err);
  const json_t *layers = m ? json_object_get(m, "layers") : NULL;
  if (!st && (!json_is_array(layers) || !json_array_size(layers)))
    st = ct_fail(err, CT_EDENIED, "cosign: the signature manifest %s has no layers", tag);
  if (!st && json_array_size(layers) > CDH_SIGNATURES_MAX)
    st = ct_fail(err, CT_ELIMIT, "cosign: more than %d signatures on %s", CDH_SIGNATURES_MAX, tag);
  for (size_t i = 0; !st && i < json_array_size(layers); i++) {
    const json_t *l = json_array_get(layers, i);
    const char *mt = json_string_value(json_object_get(l, "mediaType"));
    const char *dg = json_string_value(json_object_get(l, "digest"));
    const char *sig = json_string_value(json_object_get(json_object_get(l, "annotations"),
                                                        CDH__SIG_ANNOTATION));
    json_t *sz = json_object_get(l, "size");
    if (!mt || strcmp(mt, CDH__SIMPLESIGNING) || !dg || !sig) {
      if (!best[0]) snprintf(best, sizeof best, "signature layer %zu is not a cosign simple-signing layer", i);
      continue;
    }
    /* Signatures may carry line breaks; they are not part of the base64. */
    char clean[1024];
    size_t cl = 0;
    for (const char *c = sig; *c && cl + 1 < sizeof clean; c++)
      if (*c != '\n' && *c != '\r' && *c != ' ') clean[cl++] = *c;
    clean[cl] = 0;
    uint8_t *der = NULL, *blob = NULL;
    size_t dlen = 0, blen = 0;
    ct_err e;
    if (ct_b64_decode(CT_B64_ANY, clean, cl, &der, &dlen, &e)) {
      if (!best[0]) snprintf(best, sizeof best, "signature %zu is not base64", i);
      continue;
    }
    st = cdh_registry_blob(g, dg, json_is_integer(sz) ? json_integer_value(sz) : -1,
                           CDH_SIG_BLOB_MAX, &blob, &blen, err);
    if (!st) {
      if (!cdh__verify(key, blob, blen, der, dlen)) {
        if (!best[0] || !verified_any)
          snprintf(best, sizeof best, "the signature does not verify with the policy's public key");
      } else {
        verified_any = 1;
        cdh__payload(blob, blen, r, manifest_digest, list_digest, signed_identity, why, sizeof why);
        if (!why[0]) {
          free(der);
          free(blob);
          CT_LOG_INFO_("cdh", "cosign: %s signed (%s), payload %s", signed_digest, tag, dg);
          json_decref(m);
          free(man);
          EVP_PKEY_free(key);
          return CT_OK;
        }
        snprintf(best, sizeof best, "%s", why);
      }
    }
    free(der);
    free(blob);
  }
  if (!st) st = ct_fail(err, CT_EDENIED, "cosign: %s", best[0] ? best : "no acceptable signature");
  json_decref(m);
  free(man);
  EVP_PKEY_free(key);
  return st;
}
