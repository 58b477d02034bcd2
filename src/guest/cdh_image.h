/*
 * cdh_image.h - image pull for the CDH (guest pull): image references, the image security
 * policy (containers-policy.json), an OCI distribution client, cosign signature checks and
 * path-safe layer unpacking. Internal to src/guest; the entry points are cdh_hub_pull_image and
 * cdh_hub_check_image in cdh.h.
 */
#ifndef CDH_IMAGE_H
#define CDH_IMAGE_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

#define CDH_IMAGE_REF_MAX 1024
#define CDH_MANIFEST_MAX (4u << 20)
#define CDH_CONFIG_BLOB_MAX (16u << 20)
#define CDH_UNPACKED_MAX (8ull << 30)     /* everything written for one image */
#define CDH_LAYER_MAX CDH_UNPACKED_MAX    /* one layer as fetched (streamed to disk, not memory) */
#define CDH_ENTRIES_MAX 1000000u
#define CDH_SIGNATURES_MAX 16
#define CDH_SIG_BLOB_MAX (64u << 10)
#define CDH_POLICY_MAX (1u << 20)
#define CDH_REGCONF_MAX (1u << 20)
#define CDH_SOURCES_MAX 64

/* --- references -------------------------------------------------------------------------- */

typedef struct cdh_image_ref {
  char registry[256];   /* "docker.io", "127.0.0.1:5000" (lower case) */
  char repository[512]; /* "library/busybox" */
  char tag[129];        /* "" when the reference names only a digest */
  char digest[80];      /* "sha256:<64 hex>" or "" */
} cdh_image_ref;

/* Parses a docker reference: [registry[:port]/]path[:tag][@sha256:hex]. docker.io names get
 * "library/" and every name without a tag or digest gets "latest", as docker does. */
CT_RESULT cdh_image_ref_parse(const char *s, cdh_image_ref *r, ct_err *err);
/* "registry/repository" */
void cdh_image_ref_name(const cdh_image_ref *r, char *buf, size_t cap);
/* "registry/repository[:tag][@digest]" */
void cdh_image_ref_whole(const cdh_image_ref *r, char *buf, size_t cap);

/* --- policy ------------------------------------------------------------------------------ */

/* Parses and validates containers-policy.json (default, transports.docker scopes, requirement
 * types and their members). */
CT_RESULT cdh_policy_parse(const char *text, size_t len, json_t **out, ct_err *err);
/* The requirement list for `r` (borrowed from the policy): full reference, then the repository
 * and each parent namespace, the host, wildcard domains, the transport's "" and finally
 * "default". *scope names what matched ("default" for the global one). */
const json_t *cdh_policy_requirements(const json_t *policy, const cdh_image_ref *r, char *scope,
                                      size_t cap);

/* --- registry configuration (containers-registries.conf, as image-rs reads it) ------------ */

/* One place to try pulling an image from. */
typedef struct cdh_pull_source {
  cdh_image_ref ref;
  int insecure;     /* plain http (the rule's or the mirror's `insecure`) */
  const char *kind; /* "original", "mirror", "remapped", "unqualified-search" (static) */
} cdh_pull_source;

/* Parses a registries.conf TOML document and checks it (cdh_regconf_check). */
CT_RESULT cdh_regconf_parse(const char *text, size_t len, json_t **out, ct_err *err);
/* Checks a parsed document ([[registry]] prefix/location/insecure/blocked and [[registry.mirror]]
 * location/insecure, unqualified-search-registries) and fills in upstream's defaults (a rule
 * without a prefix takes its location). */
CT_RESULT cdh_regconf_check(json_t *doc, ct_err *err);
/* The sources to try for `r`, in order: for each candidate (the reference, or for docker.io each
 * unqualified-search registry), the longest matching rule's mirrors, then its location (remapped)
 * or the candidate itself; blocked rules drop their candidates, and nothing left is CT_EDENIED.
 * `doc` NULL: the reference alone. Prefixes match from the start of "registry/repository[:tag]
 * [@digest]" up to a ":", "/" or "@" boundary; "*.domain" matches hosts under the domain. */
CT_RESULT cdh_regconf_sources(const json_t *doc, const cdh_image_ref *r, cdh_pull_source *out,
                              size_t cap, size_t *n, ct_err *err);

/* --- registry client (OCI distribution) ---------------------------------------------------- */

typedef struct cdh_registry cdh_registry;

typedef struct cdh_registry_opts {
  const char *ca_pem;        /* extra root certificates (PEM); NULL: the system store */
  const char *https_proxy;   /* image_pull_proxy */
  const char *http_proxy;
  const char *no_proxy;      /* comma-separated hosts or .domains; "*" for all */
  const char *credentials;   /* docker config.json text ({"auths":{host:{"auth":b64}}}) or NULL */
  int plain_http;            /* an `insecure` registry: http://, through http_proxy */
} cdh_registry_opts;

CT_RESULT cdh_registry_new(const cdh_registry_opts *o, const cdh_image_ref *r, cdh_registry **out,
                           ct_err *err);
void cdh_registry_free(cdh_registry *g);

/* GET /v2/<repo>/manifests/<reference>: the body (at most CDH_MANIFEST_MAX), its media type and
 * its digest (sha256 of the body; when `reference` is a digest the body must match it).
 * CT_ENOTFOUND when the registry has no such manifest. */
CT_RESULT cdh_registry_manifest(cdh_registry *g, const char *reference, uint8_t **body, size_t *len,
                                char *media_type, size_t mcap, char digest[80], ct_err *err);
/* GET /v2/<repo>/blobs/<digest> into memory (small blobs: configs, signatures): verified against
 * the digest (and `size` when >= 0). */
CT_RESULT cdh_registry_blob(cdh_registry *g, const char *digest, int64_t size, size_t max,
                            uint8_t **out, size_t *len, ct_err *err);
/* The same for a layer of any size: the body streams into `fd` (from its current offset) while
 * its sha256 is computed, so memory stays bounded. A body longer than `size` is cut off at the
 * first excess byte; a short body or another digest fails after the transfer (the caller discards
 * what was written). A set `*cancel` (may be NULL) aborts the transfer (CT_EEXPIRED). Redirects
 * to a blob store (3xx with Location, as Docker Hub's CDN) are followed, without the registry's
 * credentials. */
CT_RESULT cdh_registry_blob_to_fd(cdh_registry *g, const char *digest, int64_t size, uint64_t max,
                                  int fd, const atomic_int *cancel, ct_err *err);

/* --- cosign --------------------------------------------------------------------------------- */

/* Checks the image's cosign signatures (tag sha256-<hex>.sig next to the image): at least one
 * simple-signing layer must carry an ECDSA P-256 signature by `key_pem` over its payload, whose
 * docker-manifest-digest is the image's manifest digest (or its manifest list's) and whose
 * docker-reference satisfies `signed_identity` (NULL: matchRepository). A denial names the
 * failed check. */
CT_RESULT cdh_cosign_verify(cdh_registry *g, const cdh_image_ref *r, const char *manifest_digest,
                            const char *list_digest, const char *key_pem, size_t key_len,
                            const json_t *signed_identity, ct_err *err);

/* --- unpacking ---------------------------------------------------------------------------- */

typedef struct cdh_unpack_state {
  uint64_t written;  /* bytes written so far for the image */
  uint64_t entries;
  const atomic_int *cancel; /* may be NULL; set: stop at the next entry (CT_EEXPIRED) */
} cdh_unpack_state;

/* Extracts one layer (tar, gzip or zstd) into `rootfs` (an absolute path without symlinks),
 * applying whiteouts. Refused: names that are absolute or contain "..", hard links out of the
 * tree, symlinks whose relative target climbs out of the tree, anything that would be written
 * through a symlink, device nodes; sizes and entry counts beyond the limits. */
CT_RESULT cdh_unpack_layer(const char *rootfs, const uint8_t *blob, size_t len,
                           cdh_unpack_state *state, ct_err *err);
/* The same, reading the layer from the file `fd` (from its start; read twice: whiteouts first). */
CT_RESULT cdh_unpack_layer_fd(const char *rootfs, int fd, cdh_unpack_state *state, ct_err *err);

/* Removes everything below `root` (not `root` itself) without following symlinks. */
void cdh_unpack_clear(const char *root);

#endif
