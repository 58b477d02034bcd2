/*
 * cdh_image.c - image pull (api.ImagePullService/PullImage) and the policy check behind it:
 * resolve the reference at the registry, apply the image security policy (cosign signatures
 * checked against keys from the KBS), then fetch, verify and unpack the layers.
 */
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cdh.h"
#include "cdh_image.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_mem.h"

#define CDH__LAYERS_MAX 256

typedef struct cdh__image {
  cdh_image_ref ref;
  char whole[CDH_IMAGE_REF_MAX + 64];
  char manifest_digest[80];
  char list_digest[80];   /* "" unless the reference resolved to an index */
  json_t *manifest;
} cdh__image;

/* A kbs:// resource or a local file (file:// or an absolute path). */
static CT_RESULT cdh__fetch(cdh_hub *h, const char *uri, size_t max, char **out, size_t *len,
                            const char *what, ct_err *err) {
  uint8_t *d = NULL;
  size_t n = 0;
  ct_status st;
  if (!strncmp(uri, "kbs:", 4) || !strncmp(uri, "kbs+", 4)) {
    st = cdh_hub_get_resource(h, uri, &d, &n, err);
    if (!st && n > max) {
      ct_wipe(d, n);
      free(d);
      st = ct_fail(err, CT_ELIMIT, "%s is larger than %zu bytes", what, max);
    }
  } else if (!strncmp(uri, "file://", 7) || uri[0] == '/') {
    st = ct_file_read(uri[0] == '/' ? uri : uri + 7, max, &d, &n, err);
  } else {
    st = ct_fail(err, CT_EINVAL, "%s \"%.200s\" must be a kbs:// URI or a file path", what, uri);
  }
  if (st) return ct_err_prefix(err, "%s %.200s: ", what, uri);
  *out = (char *)d;
  *len = n;
  return CT_OK;
}

/* The URI wins over the inline policy when both are set, as in image-rs. */
static CT_RESULT cdh__policy(cdh_hub *h, json_t **out, ct_err *err) {
  const cdh_config *c = cdh_hub_config(h);
  *out = NULL;
  if (!c->image_security_policy_uri || !*c->image_security_policy_uri) {
    if (!c->image_security_policy || !*c->image_security_policy) return CT_OK;
    return cdh_policy_parse(c->image_security_policy, strlen(c->image_security_policy), out, err);
  }
  char *text = NULL;
  size_t len = 0;
  CT_GUARD(cdh__fetch(h, c->image_security_policy_uri, CDH_POLICY_MAX, &text, &len,
                      "image security policy", err));
  ct_status st = cdh_policy_parse(text, len, out, err);
  free(text);
  return st;
}

static const char *cdh__arch(void) {
  struct utsname u;
  if (uname(&u) != 0) return "amd64";
  if (!strcmp(u.machine, "x86_64")) return "amd64";
  if (!strcmp(u.machine, "aarch64")) return "arm64";
  if (!strcmp(u.machine, "s390x")) return "s390x";
  if (!strcmp(u.machine, "ppc64le")) return "ppc64le";
  return "amd64";
}

static int cdh__is_index(const char *mt, const json_t *j) {
  const char *jm = json_string_value(json_object_get(j, "mediaType"));
  const char *m = mt && *mt && strcmp(mt, "application/json") ? mt : jm ? jm : "";
  return !strcmp(m, "application/vnd.oci.image.index.v1+json") ||
         !strcmp(m, "application/vnd.docker.distribution.manifest.list.v2+json") ||
         (!*m && json_is_array(json_object_get(j, "manifests")));
}

static CT_RESULT cdh__get_manifest(cdh_registry *g, const char *reference, json_t **out, char *mt,
                                   size_t mcap, char digest[80], ct_err *err) {
  uint8_t *body = NULL;
  size_t len = 0;
  CT_GUARD(cdh_registry_manifest(g, reference, &body, &len, mt, mcap, digest, err));
  ct_status st = ct_json_parse((const char *)body, len, 32, out, err);
  free(body);
  if (st) return ct_err_prefix(err, "manifest %s: ", reference);
  return CT_OK;
}

static CT_RESULT cdh__resolve(cdh_registry *g, cdh__image *img, ct_err *err) {
  const char *reference = img->ref.digest[0] ? img->ref.digest : img->ref.tag;
  char mt[128], digest[80];
  json_t *j = NULL;
  CT_GUARD(cdh__get_manifest(g, reference, &j, mt, sizeof mt, digest, err));
  if (cdh__is_index(mt, j)) {
    snprintf(img->list_digest, sizeof img->list_digest, "%s", digest);
    const char *arch = cdh__arch(), *pick = NULL;
    const json_t *ms = json_object_get(j, "manifests"), *m;
    size_t i;
    json_array_foreach(ms, i, m) {
      const json_t *p = json_object_get(m, "platform");
      const char *os = json_string_value(json_object_get(p, "os"));
      const char *ar = json_string_value(json_object_get(p, "architecture"));
      if (os && ar && !strcmp(os, "linux") && !strcmp(ar, arch)) {
        pick = json_string_value(json_object_get(m, "digest"));
        break;
      }
    }
    if (!pick) {
      json_decref(j);
      return ct_fail(err, CT_ENOTFOUND, "%s: the image index has no linux/%s manifest", img->whole, arch);
    }
    char want[80];
    snprintf(want, sizeof want, "%s", pick);
    json_decref(j);
    j = NULL;
    CT_ENSURE(!strncmp(want, "sha256:", 7) && strlen(want) == 71, err, CT_EUNSUPPORTED,
              "%s: platform manifest digest \"%.80s\" is not sha256", img->whole, want);
    CT_GUARD(cdh__get_manifest(g, want, &j, mt, sizeof mt, digest, err));
    CT_ENSURE(!cdh__is_index(mt, j), err, CT_EINVAL, "%s: nested image indexes", img->whole);
  }
  snprintf(img->manifest_digest, sizeof img->manifest_digest, "%s", digest);
  const json_t *layers = json_object_get(j, "layers");
  if (json_integer_value(json_object_get(j, "schemaVersion")) != 2 || !json_is_array(layers) ||
      json_array_size(layers) > CDH__LAYERS_MAX) {
    json_decref(j);
    return ct_fail(err, CT_EINVAL, "%s: not an image manifest (schemaVersion 2 with at most %d layers)",
                   img->whole, CDH__LAYERS_MAX);
  }
  img->manifest = j;
  return CT_OK;
}

static CT_RESULT cdh__key(cdh_hub *h, const json_t *req, char **pem, size_t *len, ct_err *err) {
  const char *kp = json_string_value(json_object_get(req, "keyPath"));
  if (kp) return cdh__fetch(h, kp, 64 << 10, pem, len, "cosign key", err);
  const char *kd = json_string_value(json_object_get(req, "keyData"));
  uint8_t *d = NULL;
  ct_status st = ct_b64_decode(CT_B64_ANY, kd, strlen(kd), &d, len, err);
  if (st) return ct_err_prefix(err, "keyData: ");
  *pem = (char *)d;
  return CT_OK;
}

/* Applies the policy: CT_OK with *verdict, or CT_EDENIED naming the failed requirement. */
static CT_RESULT cdh__check(cdh_hub *h, cdh_registry *g, const json_t *policy, const cdh__image *img,
                            char *verdict, size_t cap, ct_err *err) {
  if (!policy) {
    snprintf(verdict, cap, "no image security policy is configured: every image is accepted");
    CT_LOG_WARN_("cdh", "%s: %s", img->whole, verdict);
    return CT_OK;
  }
  char scope[CDH_IMAGE_REF_MAX + 80];
  const json_t *reqs = cdh_policy_requirements(policy, &img->ref, scope, sizeof scope);
  CT_ENSURE(json_is_array(reqs), err, CT_EINVAL, "image policy: scope %s has no requirement list", scope);
  size_t i;
  const json_t *req;
  int signatures = 0;
  json_array_foreach(reqs, i, req) {
    const char *type = json_string_value(json_object_get(req, "type"));
    if (!strcmp(type, "insecureAcceptAnything")) continue;
    if (!strcmp(type, "reject"))
      return ct_fail(err, CT_EDENIED, "image policy scope %s: requirement \"reject\" denies %s", scope,
                     img->whole);
    if (!strcmp(type, "signedBy"))
      return ct_fail(err, CT_EDENIED, "image policy scope %s: signedBy (GPG simple signing) is not "
                     "supported by this CDH; use sigstoreSigned", scope);
    char *pem = NULL;
    size_t plen = 0;
    ct_status st = cdh__key(h, req, &pem, &plen, err);
    if (!st)
      st = cdh_cosign_verify(g, &img->ref, img->manifest_digest,
                             img->list_digest[0] ? img->list_digest : NULL, pem, plen,
                             json_object_get(req, "signedIdentity"), err);
    free(pem);
    if (st) {
      ct_err_prefix(err, "image policy scope %s: sigstoreSigned: ", scope);
      if (err->code != CT_EIO && err->code != CT_ENOMEM) err->code = CT_EDENIED;
      return err->code;
    }
    signatures++;
  }
  snprintf(verdict, cap, "allowed by image policy scope %.600s (%zu requirement%s, %d cosign signature "
           "check%s passed)", scope, json_array_size(reqs), json_array_size(reqs) == 1 ? "" : "s",
           signatures, signatures == 1 ? "" : "s");
  return CT_OK;
}

/* What every source of one pull shares: the policy, the registry credentials and the sources
 * the registry configuration yields. */
typedef struct cdh__pull {
  cdh_image_ref ref;
  char whole[CDH_IMAGE_REF_MAX + 64];
  json_t *policy;
  char *creds;
  size_t clen;
  cdh_pull_source src[CDH_SOURCES_MAX];
  size_t nsrc;
  char failures[CT_ERR_MSG_MAX]; /* "kind ref: why; ..." for the final error */
  ct_status last;
} cdh__pull;

static void cdh__pull_free(cdh__pull *p) {
  if (p->creds) {
    ct_wipe(p->creds, p->clen);
    free(p->creds);
  }
  json_decref(p->policy);
}

/* The registry configuration: inline [image.registry_config], else registry_configuration_uri. */
static CT_RESULT cdh__regconf(cdh_hub *h, json_t **out, ct_err *err) {
  const cdh_config *c = cdh_hub_config(h);
  *out = NULL;
  if (c->registry_config) {
    json_t *doc = NULL;
    CT_GUARD(ct_json_parse(c->registry_config, strlen(c->registry_config), 16, &doc, err));
    ct_status st = cdh_regconf_check(doc, err);
    if (st) json_decref(doc);
    else *out = doc;
    return st;
  }
  if (!c->registry_configuration_uri || !*c->registry_configuration_uri) return CT_OK;
  char *text = NULL;
  size_t len = 0;
  CT_GUARD(cdh__fetch(h, c->registry_configuration_uri, CDH_REGCONF_MAX, &text, &len,
                      "registry configuration", err));
  ct_status st = cdh_regconf_parse(text, len, out, err);
  free(text);
  if (st) return ct_err_prefix(err, "%.200s: ", c->registry_configuration_uri);
  return CT_OK;
}

static CT_RESULT cdh__prepare(cdh_hub *h, const char *image, cdh__pull *p, ct_err *err) {
  memset(p, 0, sizeof *p);
  CT_GUARD(cdh_image_ref_parse(image, &p->ref, err));
  cdh_image_ref_whole(&p->ref, p->whole, sizeof p->whole);
  json_t *rc = NULL;
  ct_status st = cdh__regconf(h, &rc, err);
  if (!st) st = cdh_regconf_sources(rc, &p->ref, p->src, CDH_SOURCES_MAX, &p->nsrc, err);
  json_decref(rc);
  if (!st) st = cdh__policy(h, &p->policy, err);
  const cdh_config *c = cdh_hub_config(h);
  if (!st && c->registry_credentials_uri && *c->registry_credentials_uri)
    st = cdh__fetch(h, c->registry_credentials_uri, 1 << 20, &p->creds, &p->clen, "registry credentials", err);
  if (st) cdh__pull_free(p);
  return st;
}

/* Connects to one source and resolves its manifest. */
static CT_RESULT cdh__open(cdh_hub *h, const cdh__pull *p, const cdh_pull_source *src, cdh__image *img,
                           cdh_registry **g, ct_err *err) {
  memset(img, 0, sizeof *img);
  img->ref = src->ref;
  cdh_image_ref_whole(&img->ref, img->whole, sizeof img->whole);
  const cdh_config *c = cdh_hub_config(h);
  cdh_registry_opts ro = {.ca_pem = c->extra_root_certificates, .https_proxy = c->https_proxy,
                          .http_proxy = c->http_proxy, .no_proxy = c->no_proxy, .credentials = p->creds,
                          .plain_http = src->insecure};
  ct_status st = cdh_registry_new(&ro, &img->ref, g, err);
  if (!st) st = cdh__resolve(*g, img, err);
  if (st) {
    cdh_registry_free(*g);
    *g = NULL;
  }
  return st;
}

/* Notes why one source failed; with several sources the final error lists them all. */
static void cdh__source_failed(cdh__pull *p, size_t i, const ct_err *e) {
  const cdh_pull_source *src = &p->src[i];
  char whole[CDH_IMAGE_REF_MAX + 64];
  cdh_image_ref_whole(&src->ref, whole, sizeof whole);
  p->last = e->code;
  if (p->nsrc > 1)
    CT_LOG_WARN_("cdh", "%s: source %zu of %zu (%s %s%s) failed: %s", p->whole, i + 1, p->nsrc, src->kind,
                 whole, src->insecure ? ", plain http" : "", e->msg);
  size_t used = strlen(p->failures), room = sizeof p->failures - used;
  size_t share = (sizeof p->failures - 96) / p->nsrc;
  snprintf(p->failures + used, room, "%s%s %s: %.*s", used ? "; " : "", src->kind, whole,
           (int)(share > 64 ? share - 48 : 16), e->msg);
}

static CT_RESULT cdh__all_failed(cdh__pull *p, ct_err *err) {
  return ct_fail(err, p->last ? p->last : CT_EIO, "%s: no source could be pulled (%zu tried): %s", p->whole,
                 p->nsrc, p->failures);
}

CT_RESULT cdh_hub_check_image(cdh_hub *h, const char *image, char **verdict, ct_err *err) {
  cdh__pull p;
  CT_GUARD(cdh__prepare(h, image, &p, err));
  ct_status st = CT_EIO;
  for (size_t i = 0; i < p.nsrc; i++) {
    cdh__image img;
    cdh_registry *g = NULL;
    char v[1024];
    st = cdh__open(h, &p, &p.src[i], &img, &g, err);
    if (!st) st = cdh__check(h, g, p.policy, &img, v, sizeof v, err);
    if (!st) {
      char out[2600];
      if (strcmp(p.src[i].kind, "original"))
        snprintf(out, sizeof out, "%s (manifest %s, from the %s %s)", v, img.manifest_digest, p.src[i].kind,
                 img.whole);
      else
        snprintf(out, sizeof out, "%s (manifest %s)", v, img.manifest_digest);
      st = ct_strdup(out, verdict, err);
    }
    json_decref(img.manifest);
    cdh_registry_free(g);
    if (!st) break;
    cdh__source_failed(&p, i, err);
  }
  if (st && p.nsrc > 1) st = cdh__all_failed(&p, err);
  cdh__pull_free(&p);
  return st;
}

static int cdh__layer_type_ok(const char *mt) {
  static const char *const ok[] = {
      "application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip",
      "application/vnd.oci.image.layer.v1.tar+zstd",
      "application/vnd.docker.image.rootfs.diff.tar.gzip", NULL};
  for (size_t i = 0; ok[i]; i++)
    if (!strcmp(mt, ok[i])) return 1;
  return 0;
}

static CT_RESULT cdh__mkdirs(const char *path, mode_t mode, ct_err *err) {
  char p[PATH_MAX];
  CT_ENSURE(strlen(path) < sizeof p, err, CT_ELIMIT, "path too long");
  snprintf(p, sizeof p, "%s", path);
  for (char *s = p + 1;; s++) {
    if (*s && *s != '/') continue;
    char c = *s;
    *s = 0;
    CT_ENSURE(mkdir(p, mode) == 0 || errno == EEXIST, err, CT_EIO, "mkdir %s: %s", p, strerror(errno));
    *s = c;
    if (!c) break;
  }
  return CT_OK;
}

/* bundle/rootfs: created when missing, refused when not an empty directory. Its real path (no
 * symlinks, so that libarchive's symlink checks hold for the whole path) goes to `out`. */
static CT_RESULT cdh__rootfs(const char *bundle, char *out, size_t cap, ct_err *err) {
  CT_ENSURE(bundle[0] == '/', err, CT_EINVAL, "bundle_path \"%.200s\" must be absolute", bundle);
  char rootfs[PATH_MAX];
  CT_ENSURE(snprintf(rootfs, sizeof rootfs, "%s/rootfs", bundle) < (int)sizeof rootfs, err, CT_ELIMIT,
            "bundle_path too long");
  CT_GUARD(cdh__mkdirs(bundle, 0700, err));
  struct stat st;
  if (lstat(rootfs, &st) == 0) {
    CT_ENSURE(S_ISDIR(st.st_mode), err, CT_EINVAL, "%s exists and is not a directory", rootfs);
    DIR *d = opendir(rootfs);
    int empty = 1;
    struct dirent *e;
    while (d && (e = readdir(d)))
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    if (d) closedir(d);
    CT_ENSURE(empty, err, CT_EINVAL, "%s is not empty: refusing to unpack over it", rootfs);
  } else {
    CT_ENSURE(mkdir(rootfs, 0755) == 0, err, CT_EIO, "mkdir %s: %s", rootfs, strerror(errno));
  }
  char real[PATH_MAX];
  CT_ENSURE(realpath(rootfs, real), err, CT_EIO, "realpath %s: %s", rootfs, strerror(errno));
  CT_ENSURE(strlen(real) < cap, err, CT_ELIMIT, "rootfs path too long");
  snprintf(out, cap, "%s", real);
  return CT_OK;
}

/* --- encrypted layers (ocicrypt, key provider "attestation-agent") ------------------------- */

#define CDH__ANN_KEYS "org.opencontainers.image.enc.keys.provider." CDH_KEYPROVIDER_NAME
#define CDH__ANN_PUBOPTS "org.opencontainers.image.enc.pubopts"

static CT_RESULT cdh__b64_json(const char *b64, const char *what, json_t **out, ct_err *err) {
  uint8_t *d = NULL;
  size_t n = 0;
  CT_ENSURE(b64 && strlen(b64) < (1u << 20), err, CT_EINVAL, "encrypted layer: %s annotation missing", what);
  ct_status st = ct_b64_decode(CT_B64_ANY, b64, strlen(b64), &d, &n, err);
  if (!st) st = ct_json_parse((const char *)d, n, 8, out, err);
  if (d) {
    ct_wipe(d, n);
    free(d);
  }
  if (st) return ct_err_prefix(err, "encrypted layer: %s: ", what);
  return CT_OK;
}

static CT_RESULT cdh__b64_field(const json_t *o, const char *key, size_t want, uint8_t **out,
                                size_t *len, ct_err *err) {
  const char *v = json_string_value(json_object_get(o, key));
  CT_ENSURE(v, err, CT_EINVAL, "encrypted layer: %s missing from the layer options", key);
  CT_GUARD(ct_b64_decode(CT_B64_ANY, v, strlen(v), out, len, err));
  if (want && *len != want) {
    ct_wipe(*out, *len);
    free(*out);
    *out = NULL;
    return ct_fail(err, CT_EINVAL, "encrypted layer: %s has %zu bytes (%zu expected)", key, *len, want);
  }
  return CT_OK;
}

#define CDH__CHUNK (1u << 20)

static CT_RESULT cdh__pread_all(int fd, uint8_t *buf, size_t n, uint64_t off, ct_err *err) {
  for (size_t done = 0; done < n;) {
    ssize_t r = pread(fd, buf + done, n - done, (off_t)(off + done));
    if (r < 0 && errno == EINTR) continue;
    CT_ENSURE(r > 0, err, CT_EIO, "reading the layer file: %s", r < 0 ? strerror(errno) : "short file");
    done += (size_t)r;
  }
  return CT_OK;
}

static CT_RESULT cdh__pwrite_all(int fd, const uint8_t *buf, size_t n, uint64_t off, ct_err *err) {
  for (size_t done = 0; done < n;) {
    ssize_t w = pwrite(fd, buf + done, n - done, (off_t)(off + done));
    if (w < 0 && errno == EINTR) continue;
    CT_ENSURE(w > 0, err, CT_EIO, "writing the layer file: %s", w < 0 ? strerror(errno) : "no space");
    done += (size_t)w;
  }
  return CT_OK;
}

/* HMAC-SHA256 over the ciphertext, then AES-256-CTR in place, chunk by chunk, with the digest of
 * the plaintext: the whole layer never sits in memory. */
static CT_RESULT cdh__ctr_file(int fd, uint64_t len, const uint8_t *key, const uint8_t *nonce,
                               const uint8_t want_mac[32], uint8_t plain_digest[32], ct_err *err) {
  uint8_t *buf = malloc(CDH__CHUNK);
  EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  EVP_MAC_CTX *mc = mac ? EVP_MAC_CTX_new(mac) : NULL;
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  ct_status st = CT_OK;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0), OSSL_PARAM_END};
  CT_ENSURE_GOTO(st, buf && mc && c && md && EVP_MAC_init(mc, key, 32, params) == 1, out, err, CT_ENOMEM,
                 "encrypted layer: cannot set up HMAC-SHA256");
  for (uint64_t off = 0; off < len;) {
    size_t n = len - off < CDH__CHUNK ? (size_t)(len - off) : CDH__CHUNK;
    CT_GUARD_GOTO(st, cdh__pread_all(fd, buf, n, off, err), out);
    CT_ENSURE_GOTO(st, EVP_MAC_update(mc, buf, n) == 1, out, err, CT_ECRYPTO, "encrypted layer: HMAC failed");
    off += n;
  }
  uint8_t got[32];
  size_t gl = 0;
  CT_ENSURE_GOTO(st, EVP_MAC_final(mc, got, &gl, sizeof got) == 1 && gl == 32 && ct_memeq(got, 32, want_mac, 32),
                 out, err, CT_ECRYPTO,
                 "encrypted layer: the HMAC over the ciphertext does not match (wrong key or tampered layer)");
  CT_ENSURE_GOTO(st, EVP_DecryptInit_ex(c, EVP_aes_256_ctr(), NULL, key, nonce) == 1 &&
                         EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1,
                 out, err, CT_ECRYPTO, "encrypted layer: cannot set up AES-CTR");
  for (uint64_t off = 0; off < len;) {
    size_t n = len - off < CDH__CHUNK ? (size_t)(len - off) : CDH__CHUNK;
    int outl = 0;
    CT_GUARD_GOTO(st, cdh__pread_all(fd, buf, n, off, err), out);
    CT_ENSURE_GOTO(st, EVP_DecryptUpdate(c, buf, &outl, buf, (int)n) == 1 && (size_t)outl == n &&
                           EVP_DigestUpdate(md, buf, n) == 1,
                   out, err, CT_ECRYPTO, "encrypted layer: AES-CTR decryption failed");
    CT_GUARD_GOTO(st, cdh__pwrite_all(fd, buf, n, off, err), out);
    off += n;
  }
  unsigned dl = 0;
  CT_ENSURE_GOTO(st, EVP_DigestFinal_ex(md, plain_digest, &dl) == 1 && dl == 32, out, err, CT_ECRYPTO,
                 "encrypted layer: sha256 failed");
out:
  if (buf) {
    ct_wipe(buf, CDH__CHUNK);
    free(buf);
  }
  EVP_MAC_CTX_free(mc);
  EVP_MAC_free(mac);
  EVP_CIPHER_CTX_free(c);
  EVP_MD_CTX_free(md);
  return st;
}

/* Decrypts an ocicrypt AES_256_CTR_HMAC_SHA256 layer held in the file `fd` (`len` bytes), in
 * place: the private options (symmetric key, nonce, plaintext digest) come from the annotation
 * packet, unwrapped with the KEK the KBS releases; the HMAC over the ciphertext is checked before
 * anything is decrypted, the plaintext digest after. */
static CT_RESULT cdh__decrypt_layer(cdh_hub *h, const json_t *desc, int fd, uint64_t len, ct_err *err) {
  const json_t *ann = json_object_get(desc, "annotations");
  json_t *packet = NULL, *pub = NULL, *priv = NULL;
  uint8_t *opts = NULL, *key = NULL, *nonce = NULL, *hmac = NULL;
  size_t olen = 0, klen = 0, nlen = 0, hlen = 0;
  ct_status st = cdh__b64_json(json_string_value(json_object_get(ann, CDH__ANN_KEYS)),
                               CDH__ANN_KEYS, &packet, err);
  char *ptxt = NULL;
  if (!st) {
    ptxt = json_dumps(packet, JSON_COMPACT);
    st = ptxt ? cdh_hub_unwrap_packet(h, ptxt, strlen(ptxt), &opts, &olen, err)
              : ct_fail(err, CT_ENOMEM, "out of memory");
  }
  if (!st) st = cdh__b64_json(json_string_value(json_object_get(ann, CDH__ANN_PUBOPTS)), CDH__ANN_PUBOPTS,
                              &pub, err);
  if (!st) {
    st = ct_json_parse((const char *)opts, olen, 8, &priv, err);
    if (st) ct_err_prefix(err, "encrypted layer: private options: ");
  }
  const char *cipher = pub ? json_string_value(json_object_get(pub, "cipher")) : NULL;
  if (!st && (!cipher || strcmp(cipher, "AES_256_CTR_HMAC_SHA256")))
    st = ct_fail(err, CT_EUNSUPPORTED, "encrypted layer: cipher \"%s\" is not supported "
                 "(AES_256_CTR_HMAC_SHA256 is)", cipher ? cipher : "");
  if (!st) st = cdh__b64_field(priv, "symkey", 32, &key, &klen, err);
  if (!st) st = cdh__b64_field(json_object_get(priv, "cipheroptions"), "nonce", 16, &nonce, &nlen, err);
  if (!st) {
    const json_t *co = json_object_get(pub, "cipheroptions");
    st = cdh__b64_field(json_object_get(co, "hmac") ? co : pub, "hmac", 32, &hmac, &hlen, err);
  }
  uint8_t d[32];
  if (!st) st = cdh__ctr_file(fd, len, key, nonce, hmac, d, err);
  const char *dg = priv ? json_string_value(json_object_get(priv, "digest")) : NULL;
  if (!st && dg && *dg) {
    char hex[65];
    ct_hex_into(d, 32, hex);
    if (strncmp(dg, "sha256:", 7) || strcmp(dg + 7, hex))
      st = ct_fail(err, CT_ECRYPTO, "encrypted layer: the decrypted layer's digest is sha256:%s, the "
                   "layer options say %.80s", hex, dg);
  }
  if (key) ct_wipe(key, klen);
  if (opts) ct_wipe(opts, olen);
  free(key);
  free(nonce);
  free(hmac);
  free(opts);
  free(ptxt);
  json_decref(packet);
  json_decref(pub);
  json_decref(priv);
  return st;
}

/* A private scratch file in the bundle directory for one layer: created 0600, exclusively and
 * without following symlinks, and unlinked at once, so that nothing is left behind however the
 * pull ends (the descriptor keeps it until it is closed). */
static CT_RESULT cdh__scratch(const char *bundle, int *fd, ct_err *err) {
  uint8_t rnd[12];
  char hex[25], path[PATH_MAX];
  CT_ENSURE(RAND_bytes(rnd, sizeof rnd) == 1, err, CT_ECRYPTO, "no randomness for a scratch file name");
  ct_hex_into(rnd, sizeof rnd, hex);
  hex[24] = 0;
  int n = snprintf(path, sizeof path, "%s/.cdh-layer-%s", bundle, hex);
  CT_ENSURE(n > 0 && (size_t)n < sizeof path, err, CT_ELIMIT, "bundle_path too long");
  int f = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  CT_ENSURE(f >= 0, err, CT_EIO, "creating the layer scratch file %s: %s", path, strerror(errno));
  if (unlink(path) != 0) {
    int e = errno;
    close(f);
    return ct_fail(err, CT_EIO, "unlinking the layer scratch file %s: %s", path, strerror(e));
  }
  *fd = f;
  return CT_OK;
}

static CT_RESULT cdh__layers(cdh_hub *h, cdh_registry *g, const cdh__image *img, const char *rootfs,
                             const atomic_int *cancel, ct_err *err) {
  const json_t *layers = json_object_get(img->manifest, "layers"), *l;
  size_t i;
  /* The bundle directory, resolved: rootfs is its real path plus "/rootfs". */
  char bundle[PATH_MAX];
  snprintf(bundle, sizeof bundle, "%s", rootfs);
  char *slash = strrchr(bundle, '/');
  if (slash && slash != bundle) *slash = 0;
  cdh_unpack_state us = {.cancel = cancel};
  json_array_foreach(layers, i, l) {
    const char *mt = json_string_value(json_object_get(l, "mediaType"));
    const char *dg = json_string_value(json_object_get(l, "digest"));
    const json_t *sz = json_object_get(l, "size");
    CT_ENSURE(mt && dg && json_is_integer(sz) && json_integer_value(sz) >= 0, err, CT_EINVAL,
              "%s: layer %zu lacks mediaType, digest or size", img->whole, i);
    char plain[128];
    snprintf(plain, sizeof plain, "%s", mt);
    size_t pl = strlen(plain);
    int encrypted = pl > 10 && !strcmp(plain + pl - 10, "+encrypted");
    if (encrypted) plain[pl - 10] = 0;
    CT_ENSURE(cdh__layer_type_ok(plain), err, CT_EUNSUPPORTED, "%s: layer %zu has media type %.100s",
              img->whole, i, mt);
    CT_ENSURE(!cancel || !atomic_load(cancel), err, CT_EEXPIRED,
              "%s: cancelled before layer %zu: the caller is no longer waiting", img->whole, i);
    int fd = -1;
    ct_status st = cdh__scratch(bundle, &fd, err);
    if (!st) st = cdh_registry_blob_to_fd(g, dg, json_integer_value(sz), CDH_LAYER_MAX, fd, cancel, err);
    if (!st && encrypted) st = cdh__decrypt_layer(h, l, fd, (uint64_t)json_integer_value(sz), err);
    if (!st) st = cdh_unpack_layer_fd(rootfs, fd, &us, err);
    if (fd >= 0) close(fd);
    if (st) return ct_err_prefix(err, "%s: layer %zu (%.80s): ", img->whole, i, dg);
  }
  CT_LOG_INFO_("cdh", "%s: %zu layers unpacked (%llu entries, %llu bytes) into %s", img->whole,
               json_array_size(layers), (unsigned long long)us.entries,
               (unsigned long long)us.written, rootfs);
  return CT_OK;
}

/* One source: resolve, policy, unpack into rootfs (created on first use). */
static CT_RESULT cdh__pull_one(cdh_hub *h, const cdh__pull *p, const cdh_pull_source *src, const char *bundle,
                               const atomic_int *cancel, char *rootfs, size_t cap, char digest[80], ct_err *err) {
  cdh__image img;
  cdh_registry *g = NULL;
  char verdict[1024];
  ct_status st = cdh__open(h, p, src, &img, &g, err);
  if (!st) {
    st = cdh__check(h, g, p->policy, &img, verdict, sizeof verdict, err);
    if (st) CT_LOG_WARN_("cdh", "pull %s denied: %s", img.whole, err->msg);
  }
  if (!st) {
    CT_LOG_INFO_("cdh", "pull %s%s%s: %s", p->whole, strcmp(src->kind, "original") ? " from " : "",
                 strcmp(src->kind, "original") ? img.whole : "", verdict);
    if (!rootfs[0]) {
      st = cdh__rootfs(bundle, rootfs, cap, err);
      if (st) rootfs[0] = 0;
    }
  }
  if (!st) st = cdh__layers(h, g, &img, rootfs, cancel, err);
  if (!st) snprintf(digest, 80, "%s", img.manifest_digest);
  if (st && rootfs[0]) cdh_unpack_clear(rootfs); /* no half-unpacked image is left to run */
  json_decref(img.manifest);
  cdh_registry_free(g);
  return st;
}

CT_RESULT cdh_hub_pull_image(cdh_hub *h, const char *image, const char *bundle,
                             const atomic_int *cancel, char **digest, ct_err *err) {
  cdh__pull p;
  CT_GUARD(cdh__prepare(h, image, &p, err));
  char rootfs[PATH_MAX] = "", dg[80] = "";
  ct_status st = CT_EIO;
  for (size_t i = 0; i < p.nsrc; i++) {
    st = cdh__pull_one(h, &p, &p.src[i], bundle, cancel, rootfs, sizeof rootfs, dg, err);
    if (!st || (cancel && atomic_load(cancel))) break;
    cdh__source_failed(&p, i, err);
    if (i + 1 == p.nsrc && p.nsrc > 1) st = cdh__all_failed(&p, err);
  }
  if (!st && cdh_hub_config(h)->eventlog_enabled) {
    json_t *ev = json_pack("{s:s,s:s}", "image", image, "digest", dg);
    char *content = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    st = content ? cdh_hub_measure(h, "github.com/confidential-containers", "PullImage", content, -1, err)
                 : ct_fail(err, CT_ENOMEM, "out of memory");
    free(content);
    if (st) ct_err_prefix(err, "recording the PullImage event: ");
    if (st && rootfs[0]) cdh_unpack_clear(rootfs);
  }
  if (!st) st = ct_strdup(dg, digest, err);
  cdh__pull_free(&p);
  return st;
}
