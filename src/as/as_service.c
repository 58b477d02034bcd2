#include "as_service.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_mem.h"
#include "ct_policies.h"
#include "initdata.h"
#include "jose.h"
#include "rego.h"

#define AS_POLICY_NS "attestation_service_policy"
/* Trustee's storage layout: policy <id> lives under the key "<id>.rego". Stores written by
 * earlier versions of ours used "<id>"; they are still read. */
#define AS_POLICY_SUFFIX ".rego"
#define AS_MAX_POLICIES 64
#define AS_MAX_POLICY_BYTES (1u << 20)


typedef struct as__policy {
  char id[128];
  uint8_t digest[32]; /* of the text it was compiled from; zero for the built-in default */
  rego_policy *compiled;
  unsigned refs; /* evaluations in flight plus one for the table */
} as__policy;

struct as_service {
  as_config cfg;
  char *issuer, *developer, *build, *profile;
  EVP_PKEY *signer;
  json_t *header_jwk;              /* public JWK (+x5c) placed in every token header */
  char *header_b64;                /* that protected header, encoded once (it never changes) */
  void *verifier_state[32];
  const as_verifier *const *verifiers;
  size_t n_verifiers;
  pthread_mutex_t lock;            /* guards the policy table and refcounts */
  int policy_dirfd;                /* <policy_dir>/opa, or -1: policies are store entries */
  as__policy *policies[AS_MAX_POLICIES];
  size_t n_policies;
};

static const char *const as__trust_claim_names[] = {
    "instance-identity", "configuration", "executables", "file-system",
    "hardware", "runtime-opaque", "storage-opaque", "sourced-data"};

/* query_reference_value(id): Trustee's extension function; unknown ids yield null. */
static CT_RESULT as__query_rv(void *ctx, json_t *const *args, size_t nargs, json_t **result, ct_err *err) {
  as_service *as = ctx;
  CT_ENSURE(nargs == 1 && json_is_string(args[0]), err, CT_EINVAL,
            "query_reference_value expects one string argument");
  json_t *v = NULL;
  CT_GUARD(rvps_query(as->cfg.rvps, json_string_value(args[0]), &v, err));
  *result = v ? v : json_null();
  return CT_OK;
}

static CT_RESULT as__compile(as_service *as, const char *id, const char *text, rego_policy **out,
                             ct_err *err) {
  rego_host_function fns[] = {{"query_reference_value", 1, as__query_rv, as}};
  rego_options opts = {.host_functions = fns, .n_host_functions = 1};
  char name[160];
  snprintf(name, sizeof name, "%s.rego", id);
  rego_module mod = {name, text};
  if (rego_compile(&mod, 1, &opts, out, err) != CT_OK)
    return ct_err_prefix(err, "attestation policy \"%s\" does not compile: ", id);
  return CT_OK;
}

static void as__policy_release(as_service *as, as__policy *p) {
  pthread_mutex_lock(&as->lock);
  bool last = --p->refs == 0;
  pthread_mutex_unlock(&as->lock);
  if (last) {
    rego_policy_free(p->compiled);
    free(p);
  }
}

static CT_RESULT as__install(as_service *as, const char *id, const char *text, rego_policy *compiled,
                             ct_err *err) {
  as__policy *p = calloc(1, sizeof *p);
  if (!p) {
    rego_policy_free(compiled);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  snprintf(p->id, sizeof p->id, "%s", id);
  if (text) ct_sha256(text, strlen(text), p->digest);
  p->compiled = compiled;
  p->refs = 1;
  as__policy *old = NULL;
  ct_status st = CT_OK;
  pthread_mutex_lock(&as->lock);
  size_t i;
  for (i = 0; i < as->n_policies; i++)
    if (!strcmp(as->policies[i]->id, id)) break;
  if (i < as->n_policies) {
    old = as->policies[i];
    as->policies[i] = p;
  } else if (as->n_policies < AS_MAX_POLICIES) {
    as->policies[as->n_policies++] = p;
  } else {
    st = ct_fail(err, CT_ELIMIT, "at most %d attestation policies", AS_MAX_POLICIES);
  }
  pthread_mutex_unlock(&as->lock);
  if (st != CT_OK) {
    rego_policy_free(compiled);
    free(p);
  }
  if (old) as__policy_release(as, old);
  return st;
}

static as__policy *as__acquire(as_service *as, const char *id) {
  as__policy *found = NULL;
  pthread_mutex_lock(&as->lock);
  for (size_t i = 0; i < as->n_policies; i++) {
    if (!strcmp(as->policies[i]->id, id)) {
      found = as->policies[i];
      found->refs++;
      break;
    }
  }
  pthread_mutex_unlock(&as->lock);
  return found;
}

static CT_RESULT as__check_policy_id(const char *id, ct_err *err) {
  size_t n = strlen(id);
  CT_ENSURE(n > 0 && n < 100, err, CT_EINVAL, "policy id must be 1 to 99 characters");
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    CT_ENSURE((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '-' || c == '.',
              err, CT_EINVAL, "policy id \"%.64s\" has a character outside [A-Za-z0-9_.-]", id);
  }
  CT_ENSURE(id[0] != '.', err, CT_EINVAL, "policy id must not start with a dot");
  return CT_OK;
}

static CT_RESULT as__policy_key(const char *id, char *key, size_t cap, ct_err *err) {
  int n = snprintf(key, cap, "%s" AS_POLICY_SUFFIX, id);
  CT_ENSURE(n > 0 && (size_t)n < cap, err, CT_ELIMIT, "policy id too long");
  return CT_OK;
}

/* The policy directory's ids: its <id>.rego files (dot files, other names and ids we would
 * refuse are not policies). */
static CT_RESULT as__dir_policy_ids(as_service *as, json_t **out, ct_err *err) {
  int fd = dup(as->policy_dirfd);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    if (fd >= 0) close(fd);
    return ct_fail(err, CT_EIO, "attestation policy directory %s/opa: %s", as->cfg.policy_dir, strerror(errno));
  }
  rewinddir(d); /* the duplicate shares the offset of the last listing */
  json_t *ids = json_array();
  const size_t sl = strlen(AS_POLICY_SUFFIX);
  ct_status st = ids ? CT_OK : ct_fail(err, CT_ENOMEM, "out of memory listing attestation policies");
  struct dirent *e;
  while (st == CT_OK && (e = readdir(d)) != NULL) {
    size_t n = strlen(e->d_name);
    if (e->d_name[0] == '.' || n <= sl || n - sl >= 100 || strcmp(e->d_name + n - sl, AS_POLICY_SUFFIX)) continue;
    char id[100];
    memcpy(id, e->d_name, n - sl);
    id[n - sl] = 0;
    ct_err ignored;
    if (as__check_policy_id(id, &ignored) != CT_OK) continue;
    if (json_array_size(ids) >= AS_MAX_POLICIES)
      st = ct_fail(err, CT_ELIMIT, "attestation policy directory %s/opa: more than %d policies", as->cfg.policy_dir,
                   AS_MAX_POLICIES);
    else if (json_array_append_new(ids, json_string(id)) != 0)
      st = ct_fail(err, CT_ENOMEM, "out of memory listing attestation policies");
  }
  closedir(d);
  if (st != CT_OK) {
    json_decref(ids);
    return st;
  }
  *out = ids;
  return CT_OK;
}

/* The stored policy ids: keys without the ".rego" suffix, each once. */
static CT_RESULT as__policy_ids(as_service *as, json_t **out, ct_err *err) {
  if (as->policy_dirfd >= 0) return as__dir_policy_ids(as, out, err);
  json_t *keys = NULL;
  CT_GUARD(kvs_list(as->cfg.store, AS_POLICY_NS, &keys, err));
  json_t *ids = json_array();
  const size_t sl = strlen(AS_POLICY_SUFFIX);
  for (size_t i = 0; ids && i < json_array_size(keys); i++) {
    const char *k = json_string_value(json_array_get(keys, i));
    size_t n = k ? strlen(k) : 0;
    if (!n) continue;
    if (n > sl && !strcmp(k + n - sl, AS_POLICY_SUFFIX)) n -= sl;
    bool dup = false;
    for (size_t j = 0; j < json_array_size(ids); j++) {
      const char *o = json_string_value(json_array_get(ids, j));
      dup |= strlen(o) == n && !strncmp(o, k, n);
    }
    if (!dup && json_array_append_new(ids, json_stringn(k, n)) != 0) {
      json_decref(ids);
      ids = NULL;
    }
  }
  json_decref(keys);
  CT_ENSURE(ids, err, CT_ENOMEM, "out of memory listing attestation policies");
  *out = ids;
  return CT_OK;
}

CT_RESULT as_set_policy(as_service *as, const char *policy_id, const char *rego, size_t len, ct_err *err) {
  CT_GUARD(as__check_policy_id(policy_id, err));
  CT_ENSURE(len <= AS_MAX_POLICY_BYTES, err, CT_ELIMIT, "policy larger than %u bytes", AS_MAX_POLICY_BYTES);
  CT_ENSURE(memchr(rego, 0, len) == NULL, err, CT_EINVAL, "policy text contains a NUL byte");
  char *text = NULL;
  CT_GUARD(ct_strndup(rego, len, &text, err));
  rego_policy *compiled = NULL;
  ct_status st = as__compile(as, policy_id, text, &compiled, err);
  char key[128];
  if (st == CT_OK) st = as__policy_key(policy_id, key, sizeof key, err);
  if (st == CT_OK && as->policy_dirfd >= 0) {
    /* as Trustee: the file is the policy (a read-only mount refuses the write) */
    if (ct_file_write_atomic_at(as->policy_dirfd, key, text, len, 0600, err) != CT_OK)
      st = ct_err_prefix(err, "attestation policy directory %s/opa: ", as->cfg.policy_dir);
  } else if (st == CT_OK) {
    st = kvs_put(as->cfg.store, AS_POLICY_NS, key, text, len, err);
  }
  if (st == CT_OK && as->policy_dirfd < 0) {  /* a legacy copy under the bare id is superseded: drop it (absent is fine) */
    ct_err ignored;
    if (kvs_delete(as->cfg.store, AS_POLICY_NS, policy_id, &ignored) != CT_OK) {
    }
  }
  if (st == CT_OK) st = as__install(as, policy_id, text, compiled, err);
  else rego_policy_free(compiled);
  free(text);
  return st;
}

void as_reload_policies(as_service *as) {
  json_t *ids = NULL;
  ct_err err;
  if (as__policy_ids(as, &ids, &err) != CT_OK) return;
  for (size_t i = 0; i < json_array_size(ids); i++) {
    const char *id = json_string_value(json_array_get(ids, i));
    char *text = NULL;
    if (as_get_policy(as, id, &text, &err) != CT_OK) continue;
    uint8_t digest[32];
    ct_sha256(text, strlen(text), digest);
    as__policy *p = as__acquire(as, id);
    bool same = p && !memcmp(p->digest, digest, sizeof digest);
    if (p) as__policy_release(as, p);
    rego_policy *compiled = NULL;
    if (!same && as__compile(as, id, text, &compiled, &err) == CT_OK && as__install(as, id, text, compiled, &err) == CT_OK)
      CT_LOG_INFO_("as", "attestation policy %s reloaded from storage", id);
    else if (!same)
      CT_LOG_WARN_("as", "attestation policy %s in storage not reloaded: %s", id, err.msg);
    free(text);
  }
  json_decref(ids);
}

CT_RESULT as_get_policy(as_service *as, const char *policy_id, char **rego, ct_err *err) {
  CT_GUARD(as__check_policy_id(policy_id, err));
  uint8_t *data = NULL;
  size_t len = 0;
  char key[128];
  CT_GUARD(as__policy_key(policy_id, key, sizeof key, err));
  if (as->policy_dirfd >= 0) {
    /* a read-only input: Kubernetes' `<id>.rego -> ..data/<id>.rego` links resolve, links out of
     * the directory do not (docs/compatibility.md) */
    if (ct_file_read_beneath(as->policy_dirfd, key, AS_MAX_POLICY_BYTES, &data, &len, err) != CT_OK)
      return ct_err_prefix(err, "attestation policy directory %s/opa: ", as->cfg.policy_dir);
    *rego = (char *)data;
    return CT_OK;
  }
  ct_status st = kvs_get(as->cfg.store, AS_POLICY_NS, key, &data, &len, err);
  if (st == CT_ENOTFOUND) st = kvs_get(as->cfg.store, AS_POLICY_NS, policy_id, &data, &len, err);
  CT_GUARD(st);
  *rego = (char *)data;
  return CT_OK;
}

/* Loads stored policies, then the shipped default_cpu unless one is stored (Trustee does not
 * overwrite an administrator's policy at start-up). */
static CT_RESULT as__load_policies(as_service *as, ct_err *err) {
  json_t *ids = NULL;
  CT_GUARD(as__policy_ids(as, &ids, err));
  bool have_default = false;
  ct_status st = CT_OK;
  for (size_t i = 0; st == CT_OK && i < json_array_size(ids); i++) {
    const char *id = json_string_value(json_array_get(ids, i));
    char *text = NULL;
    st = as_get_policy(as, id, &text, err);
    rego_policy *compiled = NULL;
    if (st == CT_OK) st = as__compile(as, id, text, &compiled, err);
    if (st == CT_OK) st = as__install(as, id, text, compiled, err);
    free(text);
    if (!strcmp(id, "default_cpu")) have_default = true;
  }
  json_decref(ids);
  CT_GUARD(st);
  if (!have_default) {
    rego_policy *compiled = NULL;
    CT_GUARD(as__compile(as, "default_cpu", ct_policy_default_cpu, &compiled, err));
    CT_GUARD(as__install(as, "default_cpu", NULL, compiled, err));
  }
  return CT_OK;
}

static CT_RESULT as__load_signer(as_service *as, ct_err *err) {
  jose_jwk *jwk = NULL;
  if (!as->cfg.signer_key_path) {
    CT_GUARD(jose_jwk_generate("ES256", "P-256", &jwk, err));
    CT_LOG_INFO_("as", "no token signer configured: signing EAR tokens with an ephemeral P-256 key");
  } else {
    uint8_t *pem = NULL;
    size_t len = 0;
    CT_GUARD(ct_file_read(as->cfg.signer_key_path, 1u << 20, &pem, &len, err));
    ct_status st = jose_jwk_from_pem((const char *)pem, len, "ES256", &jwk, err);
    ct_wipe(pem, len);
    free(pem);
    if (st != CT_OK) return ct_err_prefix(err, "attestation token signer %s: ", as->cfg.signer_key_path);
    if (EVP_PKEY_get_base_id(jose_jwk_pkey(jwk)) != EVP_PKEY_EC || EVP_PKEY_get_bits(jose_jwk_pkey(jwk)) != 256) {
      jose_jwk_free(jwk);
      return ct_fail(err, CT_EINVAL, "attestation token signer %s must be an EC P-256 key (EAR tokens are ES256)",
                     as->cfg.signer_key_path);
    }
  }
  as->signer = jose_jwk_pkey(jwk);
  EVP_PKEY_up_ref(as->signer);
  ct_status st = jose_jwk_to_json(jwk, &as->header_jwk, err);
  jose_jwk_free(jwk);
  CT_GUARD(st);
  CT_GUARD(ct_json_set_new(as->header_jwk, "alg", json_string("ES256"), err));
  if (!as->cfg.signer_cert_path) return CT_OK;
  /* x5c: the configured chain, leaf first, standard base64 DER (RFC 7517 section 4.7). */
  FILE *f = fopen(as->cfg.signer_cert_path, "r");
  CT_ENSURE(f, err, CT_EIO, "cannot open attestation token certificate %s", as->cfg.signer_cert_path);
  json_t *x5c = json_array();
  X509 *cert;
  st = CT_OK;
  while (st == CT_OK && json_array_size(x5c) < 10 && (cert = PEM_read_X509(f, NULL, NULL, NULL))) {
    unsigned char *der = NULL;
    int n = i2d_X509(cert, &der);
    char *b64 = NULL;
    if (n <= 0) st = ct_fail_ossl(err, CT_EINVAL, "cannot encode a certificate of %s", as->cfg.signer_cert_path);
    else st = ct_b64_encode(CT_B64_STD, der, (size_t)n, &b64, err);
    if (st == CT_OK) json_array_append_new(x5c, json_string(b64));
    free(b64);
    OPENSSL_free(der);
    X509_free(cert);
  }
  fclose(f);
  if (st == CT_OK && json_array_size(x5c) == 0)
    st = ct_fail(err, CT_EINVAL, "attestation token certificate %s holds no PEM certificate", as->cfg.signer_cert_path);
  if (st != CT_OK) {
    json_decref(x5c);
    return st;
  }
  return ct_json_set_new(as->header_jwk, "x5c", x5c, err);
}

/* <policy_dir>/opa, created (0700) when missing, as Trustee does. The configured path is
 * followed as written (it may be a link: the operator's choice). */
static CT_RESULT as__open_policy_dir(as_service *as, ct_err *err) {
  const char *dir = as->cfg.policy_dir;
  size_t n = strlen(dir);
  CT_ENSURE(n > 0 && n < 4000, err, CT_EINVAL, "attestation_token_broker.policy_dir must be a path of 1 to 3999 bytes");
  char path[4096];
  snprintf(path, sizeof path, "%s/opa", dir);
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
      return ct_fail(err, CT_EIO, "attestation policy directory: cannot create %s: %s", path, strerror(errno));
    *p = '/';
  }
  if (mkdir(path, 0700) != 0 && errno != EEXIST)
    return ct_fail(err, CT_EIO, "attestation policy directory: cannot create %s: %s", path, strerror(errno));
  as->policy_dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  CT_ENSURE(as->policy_dirfd >= 0, err, CT_EIO, "attestation policy directory %s: %s", path, strerror(errno));
  return CT_OK;
}

CT_RESULT as_service_new(const as_config *cfg, as_service **out, ct_err *err) {
  as_service *as = calloc(1, sizeof *as);
  CT_ENSURE(as, err, CT_ENOMEM, "out of memory");
  as->cfg = *cfg;
  as->policy_dirfd = -1;
  pthread_mutex_init(&as->lock, NULL);
  ct_status st;
  if (cfg->policy_dir) CT_GUARD_GOTO(st, as__open_policy_dir(as, err), fail);
  CT_GUARD_GOTO(st, ct_strdup(cfg->issuer_name ? cfg->issuer_name : "CoCo-Attestation-Service", &as->issuer, err), fail);
  CT_GUARD_GOTO(st, ct_strdup(cfg->developer_name ? cfg->developer_name : "https://confidentialcontainers.org", &as->developer, err), fail);
  CT_GUARD_GOTO(st, ct_strdup(cfg->build_name ? cfg->build_name : "coco-trust attestation-service 0.1.0", &as->build, err), fail);
  CT_GUARD_GOTO(st, ct_strdup(cfg->profile_name ? cfg->profile_name : "tag:github.com,2024:confidential-containers/Trustee", &as->profile, err), fail);
  as->cfg.issuer_name = as->cfg.developer_name = as->cfg.build_name = as->cfg.profile_name = NULL;
  as->cfg.signer_key_path = cfg->signer_key_path;
  CT_GUARD_GOTO(st, as__load_signer(as, err), fail);
  {
    json_t *header = json_pack("{s:s, s:O}", "typ", "JWT", "jwk", as->header_jwk);
    st = header ? jose_jws_header_b64("ES256", header, &as->header_b64, err) : ct_fail(err, CT_ENOMEM, "out of memory");
    json_decref(header);
    if (st != CT_OK) goto fail;
  }
  as->verifiers = as_verifier_all(&as->n_verifiers);
  CT_ENSURE_GOTO(st, as->n_verifiers <= 32, fail, err, CT_EINTERNAL, "too many verifiers");
  for (size_t i = 0; i < as->n_verifiers; i++) {
    if (!as->verifiers[i]->create) continue;
    if (as->verifiers[i]->create(&as->cfg.verifiers, &as->verifier_state[i], err) != CT_OK) {
      st = ct_err_prefix(err, "verifier %s: ", as->verifiers[i]->tee);
      goto fail;
    }
  }
  CT_GUARD_GOTO(st, as__load_policies(as, err), fail);
  *out = as;
  return CT_OK;
fail:
  as_service_free(as);
  return st;
}

void as_service_free(as_service *as) {
  if (!as) return;
  if (as->policy_dirfd >= 0) close(as->policy_dirfd);
  for (size_t i = 0; i < as->n_policies; i++) as__policy_release(as, as->policies[i]);
  for (size_t i = 0; i < as->n_verifiers; i++)
    if (as->verifiers[i]->destroy && as->verifier_state[i]) as->verifiers[i]->destroy(as->verifier_state[i]);
  EVP_PKEY_free(as->signer);
  json_decref(as->header_jwk);
  free(as->header_b64);
  free(as->issuer);
  free(as->developer);
  free(as->build);
  free(as->profile);
  pthread_mutex_destroy(&as->lock);
  free(as);
}

EVP_PKEY *as_signer_key(const as_service *as) { return as->signer; }

/* obj[key] = value for a literal key, as json_pack builds it without parsing a format or checking
 * the key again; always consumes value (and copes with a NULL obj or value: out of memory). */
static bool as__put(json_t *obj, const char *key, json_t *value) {
  if (!obj || !value) {
    json_decref(value);
    return false;
  }
  return json_object_set_new_nocheck(obj, key, value) == 0;
}

/* AR4SI tiers (rust-ear): |v| <= 1 none, <= 32 affirming, <= 96 warning, else contraindicated. */
static int as__tier(json_int_t v) {
  if (v >= -1 && v <= 1) return 0;
  if (v >= -32 && v <= 31) return 1;
  if (v >= -96 && v <= 95) return 2;
  return 3;
}

static CT_RESULT as__appraise(as_service *as, const char *policy_id, const char *tee_class,
                              const json_t *annotated, json_t **submod, ct_err *err) {
  char full_id[160];
  snprintf(full_id, sizeof full_id, "%s_%s", policy_id, tee_class);
  as__policy *p = as__acquire(as, full_id);
  CT_ENSURE(p, err, CT_ENOTFOUND, "attestation policy \"%s\" is not set", full_id);
  json_t *data = json_object();
  /* One evaluation call for both rules: the annotated evidence is converted to Rego values once. */
  static const char *const queries[] = {"data.policy.trust_claims", "data.policy.extensions"};
  json_t *results[2] = {NULL, NULL};
  ct_status st = rego_eval_queries(p->compiled, queries, 2, annotated, data, results, err);
  json_t *trust = results[0], *extensions = results[1];
  as__policy_release(as, p);
  json_decref(data);
  if (st != CT_OK) {
    json_decref(trust);
    ct_err_prefix(err, "evaluating attestation policy \"%s\": ", full_id);
    return st;
  }
  json_t *vector = json_object();
  int worst = 0;
  if (!trust) {
    /* No trust_claims rule: every claim "no assertion", as Trustee. */
    for (size_t i = 0; i < 8; i++) json_object_set_new(vector, as__trust_claim_names[i], json_integer(0));
  } else if (!json_is_object(trust)) {
    st = ct_fail(err, CT_EINVAL, "policy \"%s\": trust_claims must be an object", full_id);
  } else if (json_object_size(trust) == 0) {
    st = ct_fail(err, CT_EINVAL, "policy \"%s\": at least one policy claim must be set", full_id);
  } else {
    const char *k;
    json_t *v;
    json_object_foreach(trust, k, v) {
      bool known = false;
      for (size_t i = 0; i < 8; i++) known |= !strcmp(k, as__trust_claim_names[i]);
      if (!known) {
        st = ct_fail(err, CT_EINVAL, "policy \"%s\": trust_claims has unknown claim \"%.64s\"", full_id, k);
        break;
      }
      if (!json_is_integer(v) || json_integer_value(v) < -128 || json_integer_value(v) > 127) {
        st = ct_fail(err, CT_EINVAL, "policy \"%s\": trust claim \"%s\" must be an integer in -128..127",
                     full_id, k);
        break;
      }
      int t = as__tier(json_integer_value(v));
      if (t > worst) worst = t;
      json_object_set(vector, k, v);
    }
  }
  json_decref(trust);
  static const char *const tiers[] = {"none", "affirming", "warning", "contraindicated"};
  json_t *sm = NULL;
  if (st == CT_OK) {
    sm = json_object();
    bool ok = as__put(sm, "ear.status", json_string_nocheck(tiers[worst]));
    ok = as__put(sm, "ear.trustworthiness-vector", json_incref(vector)) && ok;
    ok = as__put(sm, "ear.appraisal-policy-id", json_string(policy_id)) && ok;
    ok = as__put(sm, "ear.veraison.annotated-evidence", json_incref((json_t *)annotated)) && ok;
    if (!ok) {
      json_decref(sm);
      sm = NULL;
      st = ct_fail(err, CT_ENOMEM, "out of memory");
    }
  }
  for (size_t i = 0; st == CT_OK && json_is_array(extensions) && i < json_array_size(extensions); i++) {
    json_t *ext = json_array_get(extensions, i);
    const char *name = json_string_value(json_object_get(ext, "name"));
    json_t *value = json_object_get(ext, "value");
    if (!name || !value || !json_is_integer(json_object_get(ext, "key"))) {
      st = ct_fail(err, CT_EINVAL, "policy \"%s\": extensions[%zu] needs name, integer key and value", full_id, i);
      break;
    }
    json_object_set(sm, name, value);
  }
  json_decref(extensions);
  json_decref(vector);
  if (st != CT_OK) {
    json_decref(sm);
    return st;
  }
  *submod = sm;
  return CT_OK;
}

CT_RESULT as_evaluate(as_service *as, const as_request *req, char **token, json_t **claims_out, ct_err *err) {
  const as_verifier *v = NULL;
  size_t vi = 0;
  for (; vi < as->n_verifiers; vi++)
    if (!strcmp(as->verifiers[vi]->tee, req->tee)) {
      v = as->verifiers[vi];
      break;
    }
  CT_ENSURE(v, err, CT_EUNSUPPORTED, "no verifier for TEE \"%s\" is built in", req->tee);
  /* Sample evidence is a JSON object anyone can write; with matching reference values it reaches
   * "affirming". A production service must never take it. */
  CT_ENSURE(strcmp(v->tee, "sample") || as->cfg.enable_sample_tee, err, CT_EDENIED,
            "the sample TEE is disabled (its evidence can be forged): set [attestation_service] "
            "enable_sample_tee = true only for tests and demos");

  /* report_data binds the session nonce and the TEE key to the hardware evidence. */
  char *canon = NULL;
  size_t canon_len = 0;
  CT_GUARD(ct_jcs_string(req->runtime_data, &canon, &canon_len, err));
  uint8_t report_data[48];
  ct_sha384(canon, canon_len, report_data);
  free(canon);

  initdata *idata = NULL;
  json_t *init_claims = NULL;
  ct_status st = CT_OK;
  if (req->init_data_toml) {
    st = initdata_parse(req->init_data_toml, req->init_data_len, &idata, err);
    if (st == CT_OK) st = initdata_claims(idata, &init_claims, err);
    if (st != CT_OK) {
      initdata_free(idata);
      return ct_err_prefix(err, "init-data: ");
    }
  }
  as_verify_request vreq = {
      .tee = req->tee,
      .evidence = req->evidence,
      .report_data = report_data,
      .report_data_len = sizeof report_data,
      .init_data_digest = idata ? idata->digest : NULL,
      .init_data_digest_len = idata ? idata->digest_len : 0,
  };
  json_t *claims = NULL;
  st = v->verify(as->verifier_state[vi], &vreq, &claims, err);
  initdata_free(idata);
  if (st != CT_OK) {
    json_decref(init_claims);
    return ct_err_prefix(err, "evidence rejected by the %s verifier: ", req->tee);
  }

  /* Annotated evidence (Trustee transform_claims): init_data and report_data move to the top,
   * with the structured claims beside them; the rest stays under the TEE name. */
  json_t *annotated = json_object();
  json_t *id = json_object_get(claims, "init_data");
  if (id) {
    json_object_set(annotated, "init_data", id);
    json_object_set_new(annotated, "init_data_claims", init_claims ? json_incref(init_claims) : json_object());
    json_object_del(claims, "init_data");
  }
  json_t *rd = json_object_get(claims, "report_data");
  if (rd) {
    json_object_set(annotated, "report_data", rd);
    /* The members are shared, not copied: nothing changes them after this point, and a deep
     * copy was a tenth of this function's JSON work. */
    json_t *rdc = json_object();
    const char *rk;
    json_t *rv;
    json_object_foreach((json_t *)req->runtime_data, rk, rv) {
      if (as->cfg.verbose_token || strcmp(rk, "additional-evidence")) json_object_set(rdc, rk, rv);
    }
    json_object_set_new(annotated, "runtime_data_claims", rdc);
    json_object_del(claims, "report_data");
  }
  json_object_set_new(annotated, req->tee, claims);
  json_decref(init_claims);
  /* Refused before the policy spends time on it: the token would carry all of it. Serialised
   * as the EAR payload serialises it (sorted keys: the same length as the compact text), so
   * that the payload below reuses the text instead of writing the largest part again. */
  ct_buf annotated_text;
  ct_buf_init(&annotated_text, SIZE_MAX);
  st = ct_json_write(annotated, true, &annotated_text, err);
  if (st == CT_OK && annotated_text.len > AS_CLAIMS_MAX)
    st = ct_fail(err, CT_ELIMIT, "the attestation claims are %zu bytes, more than the limit of %zu (an evidence "
                 "field, the init-data or the runtime data is too large)", annotated_text.len, AS_CLAIMS_MAX);
  json_t *submod = NULL;
  if (st == CT_OK)
    st = as__appraise(as, req->policy_id ? req->policy_id : "default", v->tee_class, annotated, &submod, err);
  if (st != CT_OK) {
    ct_buf_free(&annotated_text);
    json_decref(annotated);
    return st;
  }

  time_t now = time(NULL);
  char submod_name[32];
  snprintf(submod_name, sizeof submod_name, "%s0", v->tee_class);
  json_t *ear = json_object(), *verifier_id = json_object(), *submods = json_object();
  bool ok = as__put(verifier_id, "developer", json_string(as->developer));
  ok = as__put(verifier_id, "build", json_string(as->build)) && ok;
  if (submods) ok = json_object_set_new(submods, submod_name, submod) == 0 && ok;
  else json_decref(submod);
  ok = as__put(ear, "eat_profile", json_string(as->profile)) && ok;
  ok = as__put(ear, "iat", json_integer((json_int_t)now)) && ok;
  ok = as__put(ear, "exp", json_integer((json_int_t)now + 60 * (json_int_t)as->cfg.token_duration_min)) && ok;
  ok = as__put(ear, "iss", json_string(as->issuer)) && ok;
  ok = as__put(ear, "ear.verifier-id", verifier_id) && ok;
  ok = as__put(ear, "submods", submods) && ok;
  if (!ok) {
    json_decref(ear);
    ear = NULL;
  }
  if (!ear) {
    ct_buf_free(&annotated_text);
    json_decref(annotated);
    return ct_fail(err, CT_ENOMEM, "out of memory building the EAR");
  }
  /* ct_json_dump's text (sorted keys), with the annotated evidence as written above when the
   * submodule still holds it (a policy extension may have replaced the member). */
  ct_buf payload;
  ct_buf_init(&payload, SIZE_MAX);
  st = ct_json_write_spliced(ear, true, annotated, (const char *)annotated_text.data, annotated_text.len, &payload,
                             err);
  ct_buf_free(&annotated_text);
  json_decref(annotated);
  if (st == CT_OK && payload.len > AS_CLAIMS_MAX)
    st = ct_fail(err, CT_ELIMIT, "the attestation claims are %zu bytes, more than the limit of %zu (an evidence "
                 "field, the init-data or the runtime data is too large)", payload.len, AS_CLAIMS_MAX);
  if (st == CT_OK)
    st = jose_jws_sign_b64header("ES256", as->signer, as->header_b64, payload.data ? payload.data : (const uint8_t *)"",
                                 payload.len, token, err);
  size_t token_len = st == CT_OK ? strlen(*token) : 0;
  if (st == CT_OK && token_len > AS_TOKEN_MAX) {
    st = ct_fail(err, CT_ELIMIT, "the attestation token would be %zu bytes, more than the limit of %zu", token_len,
                 AS_TOKEN_MAX);
    free(*token);
    *token = NULL;
  }
  ct_buf_free(&payload);
  if (st == CT_OK && claims_out) *claims_out = json_incref(ear);
  json_decref(ear);
  return st;
}
