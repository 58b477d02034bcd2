/*
 * Fuzzes what an image pull reads from outside: image references (from the control plane), the
 * image security policy (from the KBS or the host) with its scope lookup, layer archives (from
 * the registry) unpacked into a scratch directory, and the registry configuration (from the KBS
 * or the host) with the sources it yields. The first byte selects the target.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cdh_image.h"

#define DIGEST_HEX "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char fuzz__root[PATH_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > (256u << 10)) return 0;
  ct_err err;
  const char *t = (const char *)data + 1;
  size_t n = size - 1;
  switch (data[0] % 4) {
  case 0: {
    char s[CDH_IMAGE_REF_MAX + 2];
    if (n > CDH_IMAGE_REF_MAX + 1) return 0;
    memcpy(s, t, n);
    s[n] = 0;
    cdh_image_ref r;
    if (cdh_image_ref_parse(s, &r, &err) == CT_OK && (!r.registry[0] || !r.repository[0] ||
                                                      (!r.tag[0] && !r.digest[0])))
      abort();
    break;
  }
  case 1: {
    json_t *p = NULL;
    if (cdh_policy_parse(t, n, &p, &err) == CT_OK) {
      cdh_image_ref r;
      char scope[CDH_IMAGE_REF_MAX + 80];
      if (cdh_image_ref_parse("registry.example.com:5000/org/team/app:v1", &r, &err)) abort();
      if (!cdh_policy_requirements(p, &r, scope, sizeof scope)) abort();
      json_decref(p);
    }
    break;
  }
  case 3: {
    json_t *doc = NULL;
    if (cdh_regconf_parse(t, n, &doc, &err) == CT_OK) {
      static const char *const refs[] = {"busybox", "registry.example.com:5000/org/team/app:v1",
                                         ("a.b.example.com/x:1@sha256:" DIGEST_HEX)};
      for (size_t i = 0; i < sizeof refs / sizeof *refs; i++) {
        cdh_image_ref r;
        cdh_pull_source src[CDH_SOURCES_MAX];
        size_t k = 0;
        if (cdh_image_ref_parse(refs[i], &r, &err)) abort();
        ct_status st = cdh_regconf_sources(doc, &r, src, CDH_SOURCES_MAX, &k, &err);
        if (st == CT_OK && (k == 0 || k > CDH_SOURCES_MAX)) abort();
      }
      json_decref(doc);
    }
    break;
  }
  default: {
    if (!fuzz__root[0]) {
      char tmpl[] = "/tmp/cdh-image-fuzz-XXXXXX";
      if (!mkdtemp(tmpl) || !realpath(tmpl, fuzz__root)) abort();
    }
    cdh_unpack_state us = {0};
    ct_status st = cdh_unpack_layer(fuzz__root, (const uint8_t *)t, n, &us, &err);
    (void)st;
    cdh_unpack_clear(fuzz__root);
    break;
  }
  }
  return 0;
}
