/*
 * cdh_regconf.c - the registry configuration (containers-registries.conf as image-rs reads it):
 * which sources an image is pulled from. Rules are matched by the longest `prefix` of the
 * reference; a blocked rule drops the source, its mirrors come first, then its `location` (the
 * remapped name) or the reference itself. References on docker.io are also looked up under each
 * `unqualified-search-registries` entry.
 */
#include <stdio.h>
#include <string.h>

#include "cdh_image.h"
#include "ct_json.h"
#include "toml.h"

#define CDH__RULES_MAX 256
#define CDH__MIRRORS_MAX 16
#define CDH__LOCATION_MAX 512

static CT_RESULT cdh__rc_str(const json_t *o, const char *key, const char *where, const char **out,
                             ct_err *err) {
  const json_t *v = json_object_get(o, key);
  *out = "";
  if (!v) return CT_OK;
  CT_ENSURE(json_is_string(v) && strlen(json_string_value(v)) < CDH__LOCATION_MAX, err, CT_EINVAL,
            "registry configuration: %s %s must be a string of less than %d bytes", where, key,
            CDH__LOCATION_MAX);
  *out = json_string_value(v);
  return CT_OK;
}

static CT_RESULT cdh__rc_bool(const json_t *o, const char *key, const char *where, ct_err *err) {
  const json_t *v = json_object_get(o, key);
  CT_ENSURE(!v || json_is_boolean(v), err, CT_EINVAL, "registry configuration: %s %s must be true or false",
            where, key);
  return CT_OK;
}

/* Checks the document and fills in upstream's defaults: a rule without a prefix takes its
 * location as prefix; a wildcard prefix needs a location; every mirror needs a location. */
static CT_RESULT cdh__rc_validate(json_t *doc, ct_err *err) {
  CT_ENSURE(json_is_object(doc), err, CT_EINVAL, "registry configuration must be a table");
  const json_t *usr = json_object_get(doc, "unqualified-search-registries");
  if (usr) {
    CT_ENSURE(json_is_array(usr) && json_array_size(usr) <= CDH__MIRRORS_MAX, err, CT_EINVAL,
              "registry configuration: unqualified-search-registries must be an array of at most "
              "%d host names", CDH__MIRRORS_MAX);
    size_t i;
    const json_t *e;
    json_array_foreach(usr, i, e)
        CT_ENSURE(json_is_string(e) && *json_string_value(e) && strlen(json_string_value(e)) < 256,
                  err, CT_EINVAL, "registry configuration: unqualified-search-registries[%zu] must "
                  "be a host name", i);
  }
  json_t *rules = json_object_get(doc, "registry");
  if (!rules) return CT_OK;
  CT_ENSURE(json_is_array(rules) && json_array_size(rules) <= CDH__RULES_MAX, err, CT_EINVAL,
            "registry configuration: [[registry]] must be an array of at most %d tables",
            CDH__RULES_MAX);
  size_t i;
  json_t *rule;
  json_array_foreach(rules, i, rule) {
    char where[48];
    snprintf(where, sizeof where, "[[registry]] #%zu", i + 1);
    CT_ENSURE(json_is_object(rule), err, CT_EINVAL, "registry configuration: %s must be a table", where);
    const char *prefix, *location;
    CT_GUARD(cdh__rc_str(rule, "prefix", where, &prefix, err));
    CT_GUARD(cdh__rc_str(rule, "location", where, &location, err));
    CT_GUARD(cdh__rc_bool(rule, "insecure", where, err));
    CT_GUARD(cdh__rc_bool(rule, "blocked", where, err));
    if (!*prefix) {
      CT_ENSURE(*location, err, CT_EINVAL, "registry configuration: %s has neither prefix nor location",
                where);
      CT_ENSURE(!json_object_set_new(rule, "prefix", json_string(location)), err, CT_ENOMEM,
                "out of memory");
      prefix = json_string_value(json_object_get(rule, "prefix"));
    }
    CT_ENSURE(strncmp(prefix, "*.", 2) || *location, err, CT_EINVAL,
              "registry configuration: %s: a wildcard prefix (%.100s) needs a location", where, prefix);
    const json_t *mirrors = json_object_get(rule, "mirror");
    if (!mirrors) continue;
    CT_ENSURE(json_is_array(mirrors) && json_array_size(mirrors) <= CDH__MIRRORS_MAX, err, CT_EINVAL,
              "registry configuration: %s: [[registry.mirror]] must be an array of at most %d tables",
              where, CDH__MIRRORS_MAX);
    size_t k;
    const json_t *m;
    json_array_foreach(mirrors, k, m) {
      const char *ml;
      CT_ENSURE(json_is_object(m), err, CT_EINVAL, "registry configuration: %s mirror #%zu must be a table",
                where, k + 1);
      CT_GUARD(cdh__rc_str(m, "location", where, &ml, err));
      CT_GUARD(cdh__rc_bool(m, "insecure", where, err));
      CT_ENSURE(*ml, err, CT_EINVAL, "registry configuration: %s mirror #%zu has no location", where, k + 1);
    }
  }
  return CT_OK;
}

CT_RESULT cdh_regconf_parse(const char *text, size_t len, json_t **out, ct_err *err) {
  CT_ENSURE(len <= CDH_REGCONF_MAX, err, CT_ELIMIT, "registry configuration larger than %u bytes",
            CDH_REGCONF_MAX);
  json_t *doc = NULL;
  ct_status st = toml_parse(text, len, &doc, err);
  if (st) return ct_err_prefix(err, "registry configuration: ");
  st = cdh_regconf_check(doc, err);
  if (st) {
    json_decref(doc);
    return st;
  }
  *out = doc;
  return CT_OK;
}

CT_RESULT cdh_regconf_check(json_t *doc, ct_err *err) { return cdh__rc_validate(doc, err); }

/* The length of `ref` that `prefix` matches: anchored at the start and ending at a boundary
 * (":", "/", "@" or the end); "*.domain" matches any host under the domain. 0: no match. */
static size_t cdh__rc_match(const char *ref, const char *prefix) {
  size_t pl = strlen(prefix), rl = strlen(ref), end;
  if (!strncmp(prefix, "*.", 2)) {
    const char *suffix = prefix + 1; /* ".domain" */
    size_t sl = pl - 1, host = strcspn(ref, "/");
    const char *hit = NULL;
    for (const char *p = ref; (p = strstr(p, suffix)) && (size_t)(p - ref) + sl <= host; p++) hit = p;
    if (!hit || hit == ref) return 0;
    /* The last occurrence inside the host, so that "a.b.example.com" matches "*.example.com". */
    end = (size_t)(hit - ref) + sl;
  } else {
    if (!pl || pl > rl || strncmp(ref, prefix, pl)) return 0;
    end = pl;
  }
  if (end < rl && !strchr(":/@", ref[end])) return 0;
  return end;
}

static CT_RESULT cdh__rc_add(cdh_pull_source *out, size_t cap, size_t *n, const char *text, int insecure,
                             const char *kind, ct_err *err) {
  CT_ENSURE(*n < cap, err, CT_ELIMIT, "registry configuration: more than %zu sources for one image", cap);
  cdh_pull_source *s = &out[*n];
  memset(s, 0, sizeof *s);
  ct_status st = cdh_image_ref_parse(text, &s->ref, err);
  if (st) return ct_err_prefix(err, "registry configuration: %s source: ", kind);
  s->insecure = insecure;
  s->kind = kind;
  (*n)++;
  return CT_OK;
}

/* Applies the longest matching rule to one candidate reference. */
static CT_RESULT cdh__rc_apply(const json_t *doc, const cdh_image_ref *cand, const char *kind,
                               cdh_pull_source *out, size_t cap, size_t *n, const char **blocked_by,
                               ct_err *err) {
  char whole[CDH_IMAGE_REF_MAX + 64];
  cdh_image_ref_whole(cand, whole, sizeof whole);
  const json_t *rules = json_object_get(doc, "registry"), *rule, *best = NULL;
  size_t i, best_len = 0;
  json_array_foreach(rules, i, rule) {
    size_t m = cdh__rc_match(whole, json_string_value(json_object_get(rule, "prefix")));
    if (m > best_len) {
      best_len = m;
      best = rule;
    }
  }
  if (!best) return cdh__rc_add(out, cap, n, whole, 0, kind, err);
  if (json_is_true(json_object_get(best, "blocked"))) {
    *blocked_by = json_string_value(json_object_get(best, "prefix"));
    return CT_OK;
  }
  const char *rest = whole + best_len;
  char buf[CDH__LOCATION_MAX + sizeof whole];
  const json_t *m;
  json_array_foreach(json_object_get(best, "mirror"), i, m) {
    snprintf(buf, sizeof buf, "%s%s", json_string_value(json_object_get(m, "location")), rest);
    CT_GUARD(cdh__rc_add(out, cap, n, buf, json_is_true(json_object_get(m, "insecure")), "mirror", err));
  }
  const char *loc = json_string_value(json_object_get(best, "location"));
  int insecure = json_is_true(json_object_get(best, "insecure"));
  if (loc && *loc) {
    snprintf(buf, sizeof buf, "%s%s", loc, rest);
    /* A rule naming its own location (docker.io, or one only to mark it insecure) remaps nothing. */
    return cdh__rc_add(out, cap, n, buf, insecure, strcmp(buf, whole) ? "remapped" : kind, err);
  }
  return cdh__rc_add(out, cap, n, whole, insecure, kind, err);
}

CT_RESULT cdh_regconf_sources(const json_t *doc, const cdh_image_ref *r, cdh_pull_source *out,
                              size_t cap, size_t *n, ct_err *err) {
  *n = 0;
  char whole[CDH_IMAGE_REF_MAX + 64];
  cdh_image_ref_whole(r, whole, sizeof whole);
  if (!doc) return cdh__rc_add(out, cap, n, whole, 0, "original", err);
  const char *blocked_by = NULL;
  if (strcmp(r->registry, "docker.io")) {
    CT_GUARD(cdh__rc_apply(doc, r, "original", out, cap, n, &blocked_by, err));
  } else {
    /* Short names: each unqualified-search registry in turn (docker.io unless configured). */
    const json_t *usr = json_object_get(doc, "unqualified-search-registries"), *e;
    size_t i;
    if (!usr) CT_GUARD(cdh__rc_apply(doc, r, "original", out, cap, n, &blocked_by, err));
    json_array_foreach(usr, i, e) {
      const char *reg = json_string_value(e);
      cdh_image_ref c = *r;
      if (strcmp(reg, "docker.io")) {
        snprintf(c.registry, sizeof c.registry, "%s", reg);
        if (!strncmp(r->repository, "library/", 8))
          snprintf(c.repository, sizeof c.repository, "%s", r->repository + 8);
      }
      CT_GUARD(cdh__rc_apply(doc, &c, "unqualified-search", out, cap, n, &blocked_by, err));
    }
  }
  CT_ENSURE(*n, err, CT_EDENIED, "image %s is blocked by the registry configuration (prefix %.200s)",
            whole, blocked_by ? blocked_by : "?");
  return CT_OK;
}
