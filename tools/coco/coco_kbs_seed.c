/*
 * coco_kbs_seed.c - `coco kbs-seed`: fills a KBS's LocalFs store from the files Kubernetes mounts
 * (deploy/charts/kbs runs it as the KBS pod's init container).
 *
 *   --attestation-policy-dir DIR   every <id>.rego becomes attestation policy <id> (compiled first)
 *   --reference-values FILE        Trustee's reference-values list [{"name","expiration","value"}]
 *                                  (the rvps-reference-values ConfigMap) or one RVPS Message
 *   --resources-dir DIR            DIR/<type>/<tag> becomes resource default/<type>/<tag>: one
 *                                  mounted Secret per <type>, as the Trustee operator publishes them
 *
 * Kubernetes Secret and ConfigMap volumes are symlink farms (<key> -> ..data/<key>); this tool
 * reads them like any program, while the KBS's own store never follows a symlink. Names that
 * start with '.' (the volume's bookkeeping) are skipped. The KBS reads the store as it finds it,
 * so the seeded policy and values are in force from its first request.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_service.h"
#include "coco.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "kvs.h"
#include "rvps.h"

#define COCO__SEED_MAX_ENTRIES 1024
#define COCO__RESOURCE_MAX (1u << 20)
/* The KBS's resource namespace in its store (Trustee's key-value-storage name). */
#define COCO__RESOURCE_NS "repository"

static int coco__seed_usage(void) {
  fprintf(stderr,
          "usage: coco kbs-seed --storage-dir DIR [--attestation-policy-dir DIR] [--reference-values FILE]\n"
          "                     [--resources-dir DIR]\n");
  return 2;
}

static bool coco__plain_name(const char *s) {
  if (!*s || s[0] == '.' || strlen(s) > 128) return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
          *p == '.'))
      return false;
  return true;
}

static int coco__cmpstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted names of a directory (stable output), without '.'-names. */
static CT_RESULT coco__list(const char *dir, char ***names, size_t *n, ct_err *err) {
  *names = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  CT_ENSURE(d, err, CT_EIO, "cannot open %s", dir);
  char **v = calloc(COCO__SEED_MAX_ENTRIES, sizeof *v);
  ct_status st = v ? CT_OK : ct_fail(err, CT_ENOMEM, "out of memory");
  struct dirent *e;
  while (!st && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (*n >= COCO__SEED_MAX_ENTRIES) st = ct_fail(err, CT_ELIMIT, "%s: more than %d entries", dir, COCO__SEED_MAX_ENTRIES);
    else if ((v[*n] = strdup(e->d_name)) == NULL) st = ct_fail(err, CT_ENOMEM, "out of memory");
    else (*n)++;
  }
  closedir(d);
  if (st) {
    for (size_t i = 0; v && i < *n; i++) free(v[i]);
    free(v);
    *n = 0;
    return st;
  }
  qsort(v, *n, sizeof *v, coco__cmpstr);
  *names = v;
  return CT_OK;
}

static void coco__list_free(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

static CT_RESULT coco__seed_policies(kvs *store, rvps *rv, const char *dir, size_t *count, ct_err *err) {
  char **names = NULL;
  size_t n = 0;
  CT_GUARD(coco__list(dir, &names, &n, err));
  as_config cfg = {.store = store, .rvps = rv};
  as_service *as = NULL;
  ct_status st = as_service_new(&cfg, &as, err);
  for (size_t i = 0; !st && i < n; i++) {
    size_t l = strlen(names[i]);
    if (l <= 5 || strcmp(names[i] + l - 5, ".rego") != 0) continue;
    names[i][l - 5] = '\0';
    if (!coco__plain_name(names[i])) {
      st = ct_fail(err, CT_EINVAL, "%s: policy id \"%.64s\" is not a plain name", dir, names[i]);
      break;
    }
    char path[4096], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/%s.rego", dir, names[i]);
    st = coco_read(path, COCO_FILE_MAX, &text, &len, err);
    if (!st) st = as_set_policy(as, names[i], text, len, err);
    if (!st) (*count)++;
    else ct_err_prefix(err, "%s: ", path);
    free(text);
  }
  as_service_free(as);
  coco__list_free(names, n);
  return st;
}

static CT_RESULT coco__seed_refvalues(rvps *rv, const char *file, size_t *count, ct_err *err) {
  char *text = NULL;
  size_t len = 0;
  CT_GUARD(coco_read(file, COCO_FILE_MAX, &text, &len, err));
  json_t *doc = NULL;
  ct_status st = ct_json_parse(text, len, 32, &doc, err);
  free(text);
  if (st) return ct_err_prefix(err, "%s: ", file);
  json_t *values = json_object();
  char *msg = NULL;
  if (!values) st = ct_fail(err, CT_ENOMEM, "out of memory");
  if (!st && json_is_array(doc)) {
    /* Trustee's list; the RVPS sets its own expiry (a sample Message carries none). */
    size_t i;
    json_t *e;
    json_array_foreach(doc, i, e) {
      const char *name = json_string_value(json_object_get(e, "name"));
      json_t *value = json_object_get(e, "value");
      if (!name || !value) {
        st = ct_fail(err, CT_EINVAL, "%s: entry %zu needs \"name\" and \"value\"", file, i + 1);
        break;
      }
      if ((st = ct_json_set_new(values, name, json_incref(value), err)) != CT_OK) break;
    }
    if (!st && json_object_size(values)) st = coco_refvalues_message(values, &msg, err);
  } else if (!st && json_is_object(doc)) {
    st = ct_json_dump(doc, &msg, err);
  } else if (!st) {
    st = ct_fail(err, CT_EINVAL, "%s: neither a reference-value list nor an RVPS message", file);
  }
  if (!st && msg) {
    json_t *m = NULL;
    st = ct_json_parse(msg, strlen(msg), 8, &m, err);
    if (!st) st = rvps_register(rv, m, err);
    json_decref(m);
    if (st) ct_err_prefix(err, "%s: ", file);
  }
  if (!st) *count += json_is_array(doc) ? json_object_size(values) : 1;
  free(msg);
  json_decref(values);
  json_decref(doc);
  return st;
}

static CT_RESULT coco__seed_resources(kvs *store, const char *dir, size_t *count, ct_err *err) {
  char **types = NULL;
  size_t nt = 0;
  CT_GUARD(coco__list(dir, &types, &nt, err));
  ct_status st = CT_OK;
  for (size_t i = 0; !st && i < nt; i++) {
    if (!coco__plain_name(types[i])) continue;
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/%s", dir, types[i]);
    char **tags = NULL;
    size_t ng = 0;
    /* a type that is not a directory (or an optional Secret that is absent) has nothing to seed */
    ct_err ignored;
    if (coco__list(sub, &tags, &ng, &ignored) != CT_OK) continue;
    for (size_t k = 0; !st && k < ng; k++) {
      if (!coco__plain_name(tags[k])) continue;
      char path[8192], key[512], *value = NULL;
      size_t len = 0;
      snprintf(path, sizeof path, "%s/%s", sub, tags[k]);
      snprintf(key, sizeof key, "default/%s/%s", types[i], tags[k]);
      st = coco_read(path, COCO__RESOURCE_MAX, &value, &len, err);
      if (!st) st = kvs_put(store, COCO__RESOURCE_NS, key, value, len, err);
      if (!st) (*count)++;
      if (value) {
        ct_wipe(value, len);
        free(value);
      }
    }
    coco__list_free(tags, ng);
  }
  coco__list_free(types, nt);
  return st;
}

int coco_kbs_seed_main(int argc, char **argv) {
  const char *storage = NULL, *policies = NULL, *refvalues = NULL, *resources = NULL;
  bool bad = false;
  for (int i = 0; i < argc && !bad; i++) {
    /* --opt=value as well as --opt value (container args are usually written the first way) */
    char *eq = strchr(argv[i], '=');
    if (eq && !strncmp(argv[i], "--", 2)) {
      *eq = '\0';
      const char **dst = !strcmp(argv[i], "--storage-dir")              ? &storage
                         : !strcmp(argv[i], "--attestation-policy-dir") ? &policies
                         : !strcmp(argv[i], "--reference-values")       ? &refvalues
                         : !strcmp(argv[i], "--resources-dir")          ? &resources
                                                                        : NULL;
      if (dst) {
        *dst = eq + 1;
        continue;
      }
      *eq = '=';
    }
    if (coco_opt(argc, argv, &i, "--storage-dir", &storage, &bad) ||
        coco_opt(argc, argv, &i, "--attestation-policy-dir", &policies, &bad) ||
        coco_opt(argc, argv, &i, "--reference-values", &refvalues, &bad) ||
        coco_opt(argc, argv, &i, "--resources-dir", &resources, &bad))
      continue;
    fprintf(stderr, "coco: kbs-seed: unexpected argument %s\n", argv[i]);
    bad = true;
  }
  if (bad || !storage) return coco__seed_usage();
  ct_err err = {0};
  kvs *store = NULL;
  rvps *rv = NULL;
  kvs_config kc = {.type = KVS_LOCAL_FS, .dir_path = storage};
  size_t npol = 0, nrv = 0, nres = 0;
  ct_status st = kvs_open(&kc, &store, &err);
  if (!st) st = rvps_new(store, &rv, &err);
  if (!st && policies) st = coco__seed_policies(store, rv, policies, &npol, &err);
  if (!st && refvalues) st = coco__seed_refvalues(rv, refvalues, &nrv, &err);
  if (!st && resources) st = coco__seed_resources(store, resources, &nres, &err);
  rvps_free(rv);
  kvs_close(store);
  if (st) return coco_fail("kbs-seed", &err);
  printf("kbs-seed: %zu attestation policies, %zu reference values, %zu resources into %s\n", npol, nrv, nres, storage);
  return 0;
}
