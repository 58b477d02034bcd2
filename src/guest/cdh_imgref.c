/*
 * cdh_imgref.c - docker image references and the image security policy (containers-policy.json
 * as image-rs reads it).
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "cdh_image.h"
#include "ct_json.h"

static int cdh__is_hex64(const char *s) {
  if (strlen(s) != 64) return 0;
  for (; *s; s++)
    if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return 0;
  return 1;
}

/* A path component: [a-z0-9]+ joined by ".", "_", "__" or runs of "-". */
static int cdh__component_ok(const char *s, size_t n) {
  if (!n || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1])) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) continue;
    if (c == '.' || c == '_' || c == '-') {
      if (c == '.' && (s[i + 1] == '.' || s[i + 1] == '_' || s[i + 1] == '-')) return 0;
      if (c == '_' && s[i + 1] == '_' && i + 2 < n && s[i + 2] == '_') return 0;
      continue;
    }
    return 0;
  }
  return 1;
}

static int cdh__domain_ok(const char *s, size_t n) {
  if (!n || n >= 256) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!(isalnum((unsigned char)c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
      return 0;
  }
  return 1;
}

CT_RESULT cdh_image_ref_parse(const char *s, cdh_image_ref *r, ct_err *err) {
  memset(r, 0, sizeof *r);
  size_t len = strnlen(s, CDH_IMAGE_REF_MAX + 1);
  CT_ENSURE(len > 0 && len <= CDH_IMAGE_REF_MAX, err, CT_EINVAL, "image reference is empty or too long");
  char buf[CDH_IMAGE_REF_MAX + 1];
  memcpy(buf, s, len + 1);
  char *at = strchr(buf, '@');
  if (at) {
    *at = 0;
    const char *d = at + 1;
    CT_ENSURE(!strncmp(d, "sha256:", 7) && cdh__is_hex64(d + 7), err, CT_EINVAL,
              "image reference \"%s\": the digest must be sha256:<64 lower-case hex>", s);
    snprintf(r->digest, sizeof r->digest, "%s", d);
  }
  char *slash = strrchr(buf, '/');
  char *colon = strrchr(buf, ':');
  if (colon && (!slash || colon > slash)) {
    *colon = 0;
    const char *t = colon + 1;
    size_t tl = strlen(t);
    CT_ENSURE(tl >= 1 && tl <= 128 && (isalnum((unsigned char)t[0]) || t[0] == '_'), err, CT_EINVAL,
              "image reference \"%s\": malformed tag", s);
    for (size_t i = 0; i < tl; i++)
      CT_ENSURE(isalnum((unsigned char)t[i]) || t[i] == '_' || t[i] == '.' || t[i] == '-', err,
                CT_EINVAL, "image reference \"%s\": malformed tag", s);
    snprintf(r->tag, sizeof r->tag, "%s", t);
  }
  char *name = buf;
  char *first = strchr(name, '/');
  const char *path = name;
  if (first && (memchr(name, '.', (size_t)(first - name)) || memchr(name, ':', (size_t)(first - name)) ||
                (first - name == 9 && !strncmp(name, "localhost", 9)))) {
    CT_ENSURE(cdh__domain_ok(name, (size_t)(first - name)), err, CT_EINVAL,
              "image reference \"%s\": malformed registry host", s);
    for (char *p = name; p < first; p++) *p = (char)tolower((unsigned char)*p);
    snprintf(r->registry, sizeof r->registry, "%.*s", (int)(first - name), name);
    path = first + 1;
  } else {
    snprintf(r->registry, sizeof r->registry, "docker.io");
  }
  if (!strcmp(r->registry, "index.docker.io") || !strcmp(r->registry, "registry-1.docker.io"))
    snprintf(r->registry, sizeof r->registry, "docker.io");
  CT_ENSURE(*path && strlen(path) < 256, err, CT_EINVAL, "image reference \"%s\": malformed repository", s);
  for (const char *c = path;;) {
    const char *e = strchr(c, '/');
    size_t n = e ? (size_t)(e - c) : strlen(c);
    CT_ENSURE(cdh__component_ok(c, n), err, CT_EINVAL,
              "image reference \"%s\": repository components must be lower-case [a-z0-9] joined "
              "by . _ or -", s);
    if (!e) break;
    c = e + 1;
  }
  if (!strcmp(r->registry, "docker.io") && !strchr(path, '/'))
    snprintf(r->repository, sizeof r->repository, "library/%.255s", path);
  else
    snprintf(r->repository, sizeof r->repository, "%.255s", path);
  if (!r->tag[0] && !r->digest[0]) snprintf(r->tag, sizeof r->tag, "latest");
  return CT_OK;
}

void cdh_image_ref_name(const cdh_image_ref *r, char *buf, size_t cap) {
  snprintf(buf, cap, "%s/%s", r->registry, r->repository);
}

void cdh_image_ref_whole(const cdh_image_ref *r, char *buf, size_t cap) {
  snprintf(buf, cap, "%s/%s%s%s%s%s", r->registry, r->repository, r->tag[0] ? ":" : "", r->tag,
           r->digest[0] ? "@" : "", r->digest);
}

/* --- policy ------------------------------------------------------------------------------ */

static CT_RESULT cdh__requirement_ok(const json_t *req, const char *where, ct_err *err) {
  const char *type = NULL;
  CT_ENSURE(json_is_object(req), err, CT_EINVAL, "image policy %s: a requirement must be an object", where);
  CT_GUARD(ct_json_get_string(req, "type", "image policy requirement", &type, err));
  if (!strcmp(type, "insecureAcceptAnything") || !strcmp(type, "reject")) return CT_OK;
  if (!strcmp(type, "signedBy")) return CT_OK; /* parsed, denied at check time (GPG) */
  CT_ENSURE(!strcmp(type, "sigstoreSigned"), err, CT_EINVAL,
            "image policy %s: unknown requirement type \"%s\"", where, type);
  const json_t *kp = json_object_get(req, "keyPath"), *kd = json_object_get(req, "keyData");
  CT_ENSURE((kp != NULL) != (kd != NULL), err, CT_EINVAL,
            "image policy %s: sigstoreSigned needs exactly one of keyPath and keyData", where);
  CT_ENSURE(json_is_string(kp ? kp : kd), err, CT_EINVAL,
            "image policy %s: keyPath/keyData must be a string", where);
  const json_t *si = json_object_get(req, "signedIdentity");
  if (si) {
    const char *st = NULL;
    CT_ENSURE(json_is_object(si), err, CT_EINVAL, "image policy %s: signedIdentity must be an object", where);
    CT_GUARD(ct_json_get_string(si, "type", "image policy signedIdentity", &st, err));
    static const char *const known[] = {"matchExact", "matchRepoDigestOrExact", "matchRepository",
                                        "exactReference", "exactRepository", "remapIdentity", NULL};
    int ok = 0;
    for (size_t i = 0; known[i]; i++) ok |= !strcmp(st, known[i]);
    CT_ENSURE(ok, err, CT_EINVAL, "image policy %s: unknown signedIdentity type \"%s\"", where, st);
    if (!strcmp(st, "exactReference"))
      CT_GUARD(ct_json_get_string(si, "dockerReference", "image policy signedIdentity", &st, err));
    if (!strcmp(st, "exactRepository"))
      CT_GUARD(ct_json_get_string(si, "dockerRepository", "image policy signedIdentity", &st, err));
  }
  return CT_OK;
}

static CT_RESULT cdh__requirements_ok(const json_t *list, const char *where, ct_err *err) {
  CT_ENSURE(json_is_array(list), err, CT_EINVAL, "image policy %s: requirements must be an array", where);
  CT_ENSURE(json_array_size(list) <= 64, err, CT_ELIMIT, "image policy %s: too many requirements", where);
  size_t i;
  const json_t *r;
  json_array_foreach(list, i, r) CT_GUARD(cdh__requirement_ok(r, where, err));
  return CT_OK;
}

CT_RESULT cdh_policy_parse(const char *text, size_t len, json_t **out, ct_err *err) {
  CT_ENSURE(len <= CDH_POLICY_MAX, err, CT_ELIMIT, "image policy larger than %u bytes", CDH_POLICY_MAX);
  json_t *p = NULL;
  ct_status st = ct_json_parse(text, len, 16, &p, err);
  if (st) return ct_err_prefix(err, "image policy: ");
  const json_t *def = json_object_get(p, "default");
  CT_ENSURE_GOTO(st, json_is_object(p) && def, fail, err, CT_EINVAL,
                 "image policy: \"default\" requirements are missing");
  CT_GUARD_GOTO(st, cdh__requirements_ok(def, "default", err), fail);
  const json_t *tr = json_object_get(p, "transports");
  if (tr) {
    CT_ENSURE_GOTO(st, json_is_object(tr), fail, err, CT_EINVAL, "image policy: transports must be an object");
    const char *tname;
    const json_t *scopes;
    json_object_foreach((json_t *)tr, tname, scopes) {
      CT_ENSURE_GOTO(st, json_is_object(scopes), fail, err, CT_EINVAL,
                     "image policy: transports.%s must be an object of scopes", tname);
      const char *scope;
      const json_t *reqs;
      json_object_foreach((json_t *)scopes, scope, reqs) {
        char where[600];
        snprintf(where, sizeof where, "transports.%.64s[\"%.500s\"]", tname, scope);
        CT_GUARD_GOTO(st, cdh__requirements_ok(reqs, where, err), fail);
      }
    }
  }
  *out = p;
  return CT_OK;
fail:
  json_decref(p);
  return st;
}

const json_t *cdh_policy_requirements(const json_t *policy, const cdh_image_ref *r, char *scope,
                                      size_t cap) {
  const json_t *docker = json_object_get(json_object_get(policy, "transports"), "docker");
  if (docker) {
    char name[CDH_IMAGE_REF_MAX + 64];
    cdh_image_ref_whole(r, name, sizeof name);
    const json_t *v = json_object_get(docker, name);
    if (v) {
      snprintf(scope, cap, "docker:%s", name);
      return v;
    }
    cdh_image_ref_name(r, name, sizeof name);
    for (;;) {
      if ((v = json_object_get(docker, name))) {
        snprintf(scope, cap, "docker:%s", name);
        return v;
      }
      char *s = strrchr(name, '/');
      if (!s) break;
      *s = 0;
    }
    /* name is now the host[:port]: wildcard domains, without the port. */
    char *port = strrchr(name, ':');
    if (port) *port = 0;
    for (char *d = strchr(name, '.'); d; d = strchr(d + 1, '.')) {
      char wild[300];
      snprintf(wild, sizeof wild, "*%s", d);
      if ((v = json_object_get(docker, wild))) {
        snprintf(scope, cap, "docker:%s", wild);
        return v;
      }
    }
    if ((v = json_object_get(docker, ""))) {
      snprintf(scope, cap, "docker:\"\"");
      return v;
    }
  }
  snprintf(scope, cap, "default");
  return json_object_get(policy, "default");
}
