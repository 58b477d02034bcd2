/*
 * cdh_hub.c - the data hub: resources, sealed secrets, AA tokens and evidence over kbc.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cdh.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_mem.h"

/* Fetch clients: passport-mode kbc clients holding the current token and TEE key of the
 * attesting client, so resource fetches run in parallel on the worker threads while one client
 * attests (kbc clients are not thread-safe). */
#define CDH__IDLE_MAX 32

struct cdh_hub {
  const cdh_config *cfg;
  guest_tee tee;
  guest_cfg guest;
  pthread_mutex_t mu;     /* attestation state of res/tok, the credentials snapshot, idle */
  pthread_mutex_t ev_mu;  /* evidence collection and runtime measurements (one TEE device) */
  kbc_client *res; /* resources: cdh.toml [kbc] */
  kbc_client *tok; /* AA tokens: aa.toml [token_configs.kbs]; may alias res */
  char *res_url, *res_cert;
  unsigned attempts, backoff_ms;
  char *cur_token;        /* snapshot of res's token and key ... */
  char *cur_key_pem;
  unsigned gen;           /* ... and its generation */
  kbc_client *idle[CDH__IDLE_MAX];
  unsigned idle_gen[CDH__IDLE_MAX];
  size_t nidle;
  unsigned long fetches;  /* atomic */
  char *sealed_key_dir;
};

static CT_RESULT cdh__evidence(void *ud, const uint8_t *rd, size_t len, json_t **ev, ct_err *err) {
  cdh_hub *h = ud;
  pthread_mutex_lock(&h->ev_mu);
  ct_status st = guest_get_evidence(&h->guest, h->tee, rd, len, ev, err);
  pthread_mutex_unlock(&h->ev_mu);
  return st;
}

static CT_RESULT cdh__client(cdh_hub *h, const cdh_hub_opts *o, const char *url, const char *cert,
                             kbc_client **out, ct_err *err) {
  kbc_opts ko = {.tee = guest_tee_name(h->tee),
                 .evidence = o->token ? NULL : cdh__evidence,
                 .evidence_ud = h,
                 .tee_key_alg = o->config->tee_key_alg,
                 .init_data_toml = o->initdata ? o->initdata->text : NULL,
                 .token = o->token,
                 .tee_key_pem = o->tee_key_pem,
                 .attempts = o->kbs_attempts,
                 .backoff_ms = o->kbs_backoff_ms};
  ct_status st = kbc_client_new(url, cert && *cert ? cert : NULL, &ko, out, err);
  if (st) ct_err_prefix(err, "KBS %s: ", url);
  return st;
}

CT_RESULT cdh_hub_new(const cdh_hub_opts *o, cdh_hub **out, ct_err *err) {
  CT_ENSURE(o && o->config && o->guest && guest_tee_name(o->tee), err, CT_EINVAL,
            "cdh: hub needs a configuration and a TEE");
  cdh_hub *h = calloc(1, sizeof *h);
  CT_ENSURE(h, err, CT_ENOMEM, "cdh: out of memory");
  h->cfg = o->config;
  h->tee = o->tee;
  h->guest = *o->guest;
  pthread_mutex_init(&h->mu, NULL);
  pthread_mutex_init(&h->ev_mu, NULL);
  h->attempts = o->kbs_attempts;
  h->backoff_ms = o->kbs_backoff_ms;
  ct_status st = ct_strdup(o->sealed_key_dir ? o->sealed_key_dir : CDH_DEFAULT_SEALED_KEY_DIR,
                           &h->sealed_key_dir, err);
  const cdh_config *c = o->config;
  const char *rurl = c->kbs_url && *c->kbs_url ? c->kbs_url : c->aa_kbs_url;
  const char *rcert = c->kbs_url && *c->kbs_url ? c->kbs_cert : c->aa_kbs_cert;
  if (!st && rurl && *rurl) st = cdh__client(h, o, rurl, rcert, &h->res, err);
  if (!st && rurl && *rurl) st = ct_strdup(rurl, &h->res_url, err);
  if (!st && rcert && *rcert) st = ct_strdup(rcert, &h->res_cert, err);
  if (!st && c->aa_kbs_url && *c->aa_kbs_url && rurl && strcmp(c->aa_kbs_url, rurl) != 0)
    st = cdh__client(h, o, c->aa_kbs_url, c->aa_kbs_cert, &h->tok, err);
  if (st) {
    cdh_hub_free(h);
    return st;
  }
  *out = h;
  return CT_OK;
}

static void cdh__free_secret_str(char **s) {
  if (*s) {
    ct_wipe(*s, strlen(*s));
    free(*s);
    *s = NULL;
  }
}

void cdh_hub_free(cdh_hub *h) {
  if (!h) return;
  kbc_client_free(h->res);
  kbc_client_free(h->tok);
  for (size_t i = 0; i < h->nidle; i++) kbc_client_free(h->idle[i]);
  cdh__free_secret_str(&h->cur_token);
  cdh__free_secret_str(&h->cur_key_pem);
  free(h->res_url);
  free(h->res_cert);
  free(h->sealed_key_dir);
  pthread_mutex_destroy(&h->mu);
  pthread_mutex_destroy(&h->ev_mu);
  free(h);
}

/* Under h->mu: makes sure res holds a fresh token and the snapshot matches it. */
static CT_RESULT cdh__attest_locked(cdh_hub *h, ct_err *err) {
  CT_GUARD(kbc_attest(h->res, err));
  const char *t = kbc_token(h->res);
  if (h->cur_token && t && !strcmp(h->cur_token, t)) return CT_OK;
  char *tok = NULL, *pem = NULL;
  CT_GUARD(ct_strdup(t ? t : "", &tok, err));
  ct_status st = kbc_tee_key_pem(h->res, &pem, err);
  if (st) {
    cdh__free_secret_str(&tok);
    return st;
  }
  cdh__free_secret_str(&h->cur_token);
  cdh__free_secret_str(&h->cur_key_pem);
  h->cur_token = tok;
  h->cur_key_pem = pem;
  h->gen++;
  return CT_OK;
}

/* Takes an idle fetch client for the current credentials or makes one. */
static CT_RESULT cdh__checkout(cdh_hub *h, kbc_client **out, unsigned *gen, ct_err *err) {
  pthread_mutex_lock(&h->mu);
  ct_status st = cdh__attest_locked(h, err);
  kbc_client *c = NULL;
  char *tok = NULL, *pem = NULL;
  while (!st && h->nidle) {
    h->nidle--;
    if (h->idle_gen[h->nidle] == h->gen) {
      c = h->idle[h->nidle];
      break;
    }
    kbc_client_free(h->idle[h->nidle]);
  }
  *gen = h->gen;
  if (!st && !c) {
    st = ct_strdup(h->cur_token, &tok, err);
    if (!st) st = ct_strdup(h->cur_key_pem, &pem, err);
  }
  pthread_mutex_unlock(&h->mu);
  if (!st && !c) {
    kbc_opts ko = {.token = tok, .tee_key_pem = pem, .attempts = h->attempts,
                   .backoff_ms = h->backoff_ms};
    st = kbc_client_new(h->res_url, h->res_cert, &ko, &c, err);
    if (st) ct_err_prefix(err, "KBS %s: ", h->res_url);
  }
  cdh__free_secret_str(&tok);
  cdh__free_secret_str(&pem);
  if (!st) *out = c;
  return st;
}

static void cdh__checkin(cdh_hub *h, kbc_client *c, unsigned gen) {
  pthread_mutex_lock(&h->mu);
  if (gen == h->gen && h->nidle < CDH__IDLE_MAX) {
    h->idle[h->nidle] = c;
    h->idle_gen[h->nidle++] = gen;
    c = NULL;
  }
  pthread_mutex_unlock(&h->mu);
  kbc_client_free(c);
}

CT_RESULT cdh_hub_get_resource(cdh_hub *h, const char *uri, uint8_t **out, size_t *len,
                               ct_err *err) {
  CT_ENSURE(h->res, err, CT_EUNSUPPORTED,
            "cdh: no KBS configured ([kbc] url in cdh.toml, aa.toml, AA_KBC_PARAMS or "
            "agent.aa_kbc_params)");
  char plugin[64], path[KBC_URI_MAX];
  if (!strncmp(uri, "kbs", 3)) {
    CT_GUARD(kbc_parse_uri(uri, plugin, sizeof plugin, path, sizeof path, err));
  } else {
    char full[KBC_URI_MAX + 8];
    CT_ENSURE(strlen(uri) < KBC_URI_MAX, err, CT_ELIMIT, "cdh: resource path too long");
    snprintf(full, sizeof full, "kbs:///%s", uri);
    CT_GUARD(kbc_parse_uri(full, plugin, sizeof plugin, path, sizeof path, err));
  }
  for (int round = 0;; round++) {
    kbc_client *c = NULL;
    unsigned gen = 0;
    CT_GUARD(cdh__checkout(h, &c, &gen, err));
    ct_status st = kbc_get(c, plugin, path, out, len, err);
    int rejected = st && kbc_token_rejected(c);
    cdh__checkin(h, c, gen);
    if (!st) {
      __atomic_add_fetch(&h->fetches, 1, __ATOMIC_RELAXED);
      return CT_OK;
    }
    if (!rejected || round > 0) return st;
    /* The KBS refused the token (restarted with a new signer, expired early, ...): attest anew
     * unless another thread already did. */
    CT_LOG_INFO_("cdh", "token rejected for %s/%s, re-attesting", plugin, path);
    pthread_mutex_lock(&h->mu);
    if (gen == h->gen) kbc_invalidate(h->res);
    pthread_mutex_unlock(&h->mu);
  }
}

static int cdh__kid_name_ok(const char *kid) {
  if (!*kid || kid[0] == '.' || strchr(kid, '/') || strlen(kid) > 255) return 0;
  return 1;
}

CT_RESULT cdh_hub_unseal(cdh_hub *h, const char *secret, size_t len, uint8_t **out, size_t *olen,
                         ct_err *err) {
  cdh_sealed s;
  CT_GUARD(cdh_sealed_parse(secret, len, &s, err));
  ct_status st = CT_OK;
  uint8_t *key = NULL;
  size_t klen = 0;
  const char *skip_env = getenv("SKIP_SEALED_SECRET_VERIFICATION");
  int skip = h->cfg->skip_sealed_secret_verification || (skip_env && !strcmp(skip_env, "true"));
  if (!skip) {
    const char *alg = json_string_value(json_object_get(s.header, "alg"));
    const char *kid = json_string_value(json_object_get(s.header, "kid"));
    CT_ENSURE_GOTO(st, alg && !strcmp(alg, "ES256"), out, err, CT_EUNSUPPORTED,
                   "sealed secret: JWS algorithm must be ES256");
    CT_ENSURE_GOTO(st, kid, out, err, CT_EINVAL, "sealed secret: header has no kid");
    if (!strncmp(kid, "kbs://", 6) || !strncmp(kid, "kbs+", 4)) {
      st = cdh_hub_get_resource(h, kid, &key, &klen, err);
      if (st) {
        ct_err_prefix(err, "sealed secret key %s: ", kid);
        goto out;
      }
    } else {
      CT_ENSURE_GOTO(st, cdh__kid_name_ok(kid), out, err, CT_EINVAL,
                     "sealed secret: kid must be a kbs:// URI or a file name");
      char path[4400];
      snprintf(path, sizeof path, "%s/%s", h->sealed_key_dir, kid);
      CT_GUARD_GOTO(st, ct_file_read(path, 64 << 10, &key, &klen, err), out);
    }
    CT_GUARD_GOTO(st, cdh_sealed_verify(secret, len, (char *)key, klen, err), out);
  }
  const char *version = NULL, *type = NULL;
  CT_GUARD_GOTO(st, ct_json_get_string(s.payload, "version", "sealed secret", &version, err), out);
  CT_ENSURE_GOTO(st, !strcmp(version, "0.1.0"), out, err, CT_EUNSUPPORTED,
                 "sealed secret: version \"%s\" (0.1.0 expected)", version);
  CT_GUARD_GOTO(st, ct_json_get_string(s.payload, "type", "sealed secret", &type, err), out);
  if (!strcmp(type, "vault")) {
    const char *provider = NULL, *name = NULL;
    CT_GUARD_GOTO(st, ct_json_get_string(s.payload, "provider", "sealed secret", &provider, err), out);
    CT_ENSURE_GOTO(st, !strcmp(provider, "kbs"), out, err, CT_EUNSUPPORTED,
                   "sealed secret: vault provider \"%s\" (only kbs is supported)", provider);
    CT_GUARD_GOTO(st, ct_json_get_string(s.payload, "name", "sealed secret", &name, err), out);
    st = cdh_hub_get_resource(h, name, out, olen, err);
  } else if (!strcmp(type, "envelope")) {
    st = ct_fail(err, CT_EUNSUPPORTED,
                 "sealed secret: envelope secrets need a KMS provider (aliyun, ehsm), which this "
                 "CDH does not include");
  } else {
    st = ct_fail(err, CT_EINVAL, "sealed secret: unknown type \"%s\"", type);
  }
out:
  if (key) {
    ct_wipe(key, klen);
    free(key);
  }
  cdh_sealed_free(&s);
  return st;
}

CT_RESULT cdh_hub_token(cdh_hub *h, char **json, ct_err *err) {
  kbc_client *c = h->tok ? h->tok : h->res;
  CT_ENSURE(c, err, CT_EUNSUPPORTED, "cdh: no KBS configured for tokens");
  char *pem = NULL;
  json_t *o = NULL;
  pthread_mutex_lock(&h->mu);
  ct_status st = kbc_attest(c, err);
  if (!st) st = kbc_tee_key_pem(c, &pem, err);
  if (!st) o = json_pack("{s:s,s:s}", "token", kbc_token(c), "tee_keypair", pem);
  pthread_mutex_unlock(&h->mu);
  if (pem) {
    ct_wipe(pem, strlen(pem));
    free(pem);
  }
  CT_GUARD(st);
  CT_ENSURE(o, err, CT_ENOMEM, "cdh: out of memory");
  st = ct_json_dump(o, json, err);
  json_decref(o);
  return st;
}

CT_RESULT cdh_hub_evidence(cdh_hub *h, const uint8_t *rd, size_t len, char **json, ct_err *err) {
  json_t *ev = NULL;
  CT_GUARD(cdh__evidence(h, rd, len, &ev, err));
  ct_status st = ct_json_dump(ev, json, err);
  json_decref(ev);
  return st;
}

CT_RESULT cdh_hub_measure(cdh_hub *h, const char *domain, const char *operation,
                          const char *content, int pcr, ct_err *err) {
  CT_ENSURE(h->cfg->eventlog_enabled && h->guest.eventlog_path, err, CT_EUNSUPPORTED,
            "runtime measurements are not enabled (aa.toml [eventlog_config] enable_eventlog)");
  unsigned reg = pcr >= 0 ? (unsigned)pcr
                          : h->cfg->eventlog_init_pcr ? (unsigned)h->cfg->eventlog_init_pcr : 17u;
  pthread_mutex_lock(&h->ev_mu);
  ct_status st = guest_runtime_measure(&h->guest, h->tee, reg, domain, operation, content, err);
  pthread_mutex_unlock(&h->ev_mu);
  return st;
}

static CT_RESULT cdh__mkdirs(const char *file, ct_err *err) {
  char p[4096];
  CT_ENSURE(strlen(file) < sizeof p, err, CT_ELIMIT, "path too long");
  strcpy(p, file);
  for (char *s = p + 1; *s; s++)
    if (*s == '/') {
      *s = 0;
      CT_ENSURE(mkdir(p, 0700) == 0 || errno == EEXIST, err, CT_EIO, "mkdir %s: %s", p,
                strerror(errno));
      *s = '/';
    }
  return CT_OK;
}

CT_RESULT cdh_hub_provision_credentials(cdh_hub *h, ct_err *err) {
  for (size_t i = 0; i < h->cfg->ncreds; i++) {
    const cdh_credential *c = &h->cfg->creds[i];
    uint8_t *data = NULL;
    size_t len = 0;
    CT_GUARD(cdh_hub_get_resource(h, c->resource_uri, &data, &len, err));
    ct_status st = cdh__mkdirs(c->path, err);
    if (!st) st = ct_file_write_atomic(c->path, data, len, 0600, err);
    ct_wipe(data, len);
    free(data);
    if (st) return ct_err_prefix(err, "credential %s: ", c->resource_uri);
    CT_LOG_INFO_("cdh", "provisioned credential %s to %s", c->resource_uri, c->path);
  }
  return CT_OK;
}

json_t *cdh_hub_info(cdh_hub *h) {
  kbc_stats rs = {0}, ts = {0};
  pthread_mutex_lock(&h->mu);
  if (h->res) kbc_get_stats(h->res, &rs);
  if (h->tok) kbc_get_stats(h->tok, &ts);
  pthread_mutex_unlock(&h->mu);
  rs.fetches = __atomic_load_n(&h->fetches, __ATOMIC_RELAXED);
  const cdh_config *c = h->cfg;
  return json_pack("{s:s,s:s,s:s,s:s?,s:I,s:I,s:[ssss]}", "name", "coco-trust-cdh", "version",
                   "0.1.0", "tee", guest_tee_name(h->tee), "kbs_url",
                   c->kbs_url && *c->kbs_url ? c->kbs_url : c->aa_kbs_url,
                   "attestations", (json_int_t)(rs.attestations + ts.attestations), "fetches",
                   (json_int_t)rs.fetches, "apis", "/cdh/resource", "/cdh/unseal", "/aa/token",
                   "/aa/evidence", "/aa/aael");
}

const char *cdh_hub_tee_name(const cdh_hub *h) { return guest_tee_name(h->tee); }

CT_RESULT cdh_hub_additional_evidence(cdh_hub *h, const uint8_t *rd, size_t len, char **json,
                                      ct_err *err) {
  (void)h;
  /* Additional devices (GPUs, ...) are not attested by this guest: their map is empty, but the
   * runtime data is still checked as for the primary evidence. */
  CT_ENSURE(len <= 64, err, CT_EINVAL, "runtime data is %zu bytes (at most 64)", len);
  (void)rd;
  return ct_strdup("{}", json, err);
}

const cdh_config *cdh_hub_config(const cdh_hub *h) { return h->cfg; }
