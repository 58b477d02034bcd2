/*
 * cdh_image.c - image pull (api.ImagePullService/PullImage) and the policy check behind it:
 * resolve the reference at the registry, apply the image security policy (cosign signatures
 * checked against keys from the KBS), then fetch, verify and unpack the layers.
 */
#include <dirent.h>
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

static CT_RESULT cdh__policy(cdh_hub *h, json_t **out, ct_err *err) {
  const cdh_config *c = cdh_hub_config(h);
  *out = NULL;
  if (c->image_security_policy && *c->image_security_policy)
    return cdh_policy_parse(c->image_security_policy, strlen(c->image_security_policy), out, err);
  if (!c->image_security_policy_uri || !*c->image_security_policy_uri) return CT_OK;
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

static CT_RESULT cdh__open(cdh_hub *h, const char *image, cdh__image *img, json_t **policy,
                           cdh_registry **g, ct_err *err) {
  memset(img, 0, sizeof *img);
  CT_GUARD(cdh_image_ref_parse(image, &img->ref, err));
  cdh_image_ref_whole(&img->ref, img->whole, sizeof img->whole);
  CT_GUARD(cdh__policy(h, policy, err));
  const cdh_config *c = cdh_hub_config(h);
  char *creds = NULL;
  size_t clen = 0;
  ct_status st = CT_OK;
  if (c->registry_credentials_uri && *c->registry_credentials_uri)
    st = cdh__fetch(h, c->registry_credentials_uri, 1 << 20, &creds, &clen, "registry credentials", err);
  cdh_registry_opts ro = {.ca_pem = c->extra_root_certificates, .https_proxy = c->https_proxy,
                          .http_proxy = c->http_proxy, .no_proxy = c->no_proxy, .credentials = creds};
  if (!st) st = cdh_registry_new(&ro, &img->ref, g, err);
  if (creds) {
    ct_wipe(creds, clen);
    free(creds);
  }
  if (!st) st = cdh__resolve(*g, img, err);
  if (st) {
    cdh_registry_free(*g);
    *g = NULL;
    json_decref(*policy);
    *policy = NULL;
  }
  return st;
}

ct_status cdh_hub_check_image(cdh_hub *h, const char *image, char **verdict, ct_err *err) {
  cdh__image img;
  json_t *policy = NULL;
  cdh_registry *g = NULL;
  CT_GUARD(cdh__open(h, image, &img, &policy, &g, err));
  char v[1024];
  ct_status st = cdh__check(h, g, policy, &img, v, sizeof v, err);
  if (!st) {
    char out[1300];
    snprintf(out, sizeof out, "%s (manifest %s)", v, img.manifest_digest);
    st = ct_strdup(out, verdict, err);
  }
  json_decref(img.manifest);
  json_decref(policy);
  cdh_registry_free(g);
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

static CT_RESULT cdh__layers(cdh_registry *g, const cdh__image *img, const char *rootfs, ct_err *err) {
  const json_t *layers = json_object_get(img->manifest, "layers"), *l;
  size_t i;
  cdh_unpack_state us = {0};
  json_array_foreach(layers, i, l) {
    const char *mt = json_string_value(json_object_get(l, "mediaType"));
    const char *dg = json_string_value(json_object_get(l, "digest"));
    const json_t *sz = json_object_get(l, "size");
    CT_ENSURE(mt && dg && json_is_integer(sz), err, CT_EINVAL, "%s: layer %zu lacks mediaType, digest or size",
              img->whole, i);
    if (strstr(mt, "+encrypted"))
      return ct_fail(err, CT_EUNSUPPORTED, "%s: layer %zu is encrypted (%s); encrypted layers are not "
                     "supported by this CDH yet", img->whole, i, mt);
    CT_ENSURE(cdh__layer_type_ok(mt), err, CT_EUNSUPPORTED, "%s: layer %zu has media type %.100s",
              img->whole, i, mt);
    uint8_t *blob = NULL;
    size_t len = 0;
    CT_GUARD(cdh_registry_blob(g, dg, json_integer_value(sz), CDH_LAYER_MAX, &blob, &len, err));
    ct_status st = cdh_unpack_layer(rootfs, blob, len, &us, err);
    free(blob);
    if (st) return ct_err_prefix(err, "%s: layer %zu (%.80s): ", img->whole, i, dg);
  }
  CT_LOG_INFO_("cdh", "%s: %zu layers unpacked (%llu entries, %llu bytes) into %s", img->whole,
               json_array_size(layers), (unsigned long long)us.entries,
               (unsigned long long)us.written, rootfs);
  return CT_OK;
}

ct_status cdh_hub_pull_image(cdh_hub *h, const char *image, const char *bundle, char **digest,
                             ct_err *err) {
  cdh__image img;
  json_t *policy = NULL;
  cdh_registry *g = NULL;
  char verdict[1024], rootfs[PATH_MAX] = "";
  CT_GUARD(cdh__open(h, image, &img, &policy, &g, err));
  ct_status st = cdh__check(h, g, policy, &img, verdict, sizeof verdict, err);
  if (st) CT_LOG_WARN_("cdh", "pull %s denied: %s", img.whole, err->msg);
  if (!st) {
    CT_LOG_INFO_("cdh", "pull %s: %s", img.whole, verdict);
    st = cdh__rootfs(bundle, rootfs, sizeof rootfs, err);
    if (st) rootfs[0] = 0;
  }
  if (!st) st = cdh__layers(g, &img, rootfs, err);
  if (!st && cdh_hub_config(h)->eventlog_enabled) {
    json_t *ev = json_pack("{s:s,s:s}", "image", image, "digest", img.manifest_digest);
    char *content = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    st = content ? cdh_hub_measure(h, "github.com/confidential-containers", "PullImage", content, -1, err)
                 : ct_fail(err, CT_ENOMEM, "out of memory");
    free(content);
    if (st) ct_err_prefix(err, "recording the PullImage event: ");
  }
  if (!st) st = ct_strdup(img.manifest_digest, digest, err);
  if (st && rootfs[0]) cdh_unpack_clear(rootfs); /* no half-unpacked image is left to run */
  json_decref(img.manifest);
  json_decref(policy);
  cdh_registry_free(g);
  return st;
}
