/*
 * The generic `tpm` verifier (Trustee deps/verifier/src/tpm): a TPM 2.0 quote from an attestation
 * key (AK) that the operator registered beforehand.
 *
 * Evidence: {"ak_public": <standard base64 DER SubjectPublicKeyInfo>, "tpm_quote": {"signature":
 * <standard base64 marshalled TPMT_SIGNATURE (RSASSA)>, "message": <standard base64 TPMS_ATTEST>,
 * "pcrs": [<hex SHA-256 PCR value> x 24]}}.
 *
 * Trusted AKs: every `*.pub` file (PEM public key, at most 100) in `tpm_trusted_ak_keys_dir`
 * (default /etc/tpm/trusted_ak_keys), compared by SHA-256 of the DER SubjectPublicKeyInfo.
 *
 * Checks, in Trustee's order: the AK is trusted; the quote signature (RSASSA-PKCS1-v1_5 SHA-256)
 * verifies with it; SHA-256 of the PCR values equals the quote's pcrDigest; the quote nonce
 * (extraData) equals the expected report data truncated or zero-padded to 32 bytes (upstream's
 * form, what current attesters send) or, from older attesters, to 64 bytes; PCR8 =
 * SHA-256(32 zero bytes || init-data digest). Claims: pcr00..pcr23, init_data (hex PCR8),
 * report_data (hex nonce), ak_public (as received).
 */
#include <dirent.h>
#include <errno.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_verifier.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_mem.h"
#include "ct_reader.h"
#include "tpm_quote.h"

#define TPMV__MAX_KEYS 100
#define TPMV__DEFAULT_DIR "/etc/tpm/trusted_ak_keys"
#define TPMV__INITDATA_PCR 8
#define TPMV__REPORT_DATA_SHORT 32 /* upstream verifier and current attesters */
#define TPMV__REPORT_DATA_MAX 64   /* older attesters */

typedef struct tpmv_state {
  size_t n;
  uint8_t hashes[TPMV__MAX_KEYS][32];
  char unreadable[512]; /* the configured directory could not be read: why (then no AK is trusted) */
} tpmv_state;

/* SHA-256 of the DER SubjectPublicKeyInfo of a PEM public key file. */
static CT_RESULT tpmv__hash_key_file(const char *path, uint8_t out[32], ct_err *err) {
  uint8_t *pem = NULL;
  size_t len = 0;
  CT_GUARD(ct_file_read(path, 64 << 10, &pem, &len, err));
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  EVP_PKEY *k = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  free(pem);
  CT_ENSURE(k, err, CT_EINVAL, "tpm: %s is not a PEM public key", path);
  unsigned char *der = NULL;
  int dl = i2d_PUBKEY(k, &der);
  EVP_PKEY_free(k);
  CT_ENSURE(dl > 0, err, CT_EINVAL, "tpm: %s: cannot encode the public key", path);
  ct_sha256(der, (size_t)dl, out);
  OPENSSL_free(der);
  return CT_OK;
}

static CT_RESULT tpmv__create(const as_verifier_config *cfg, void **state, ct_err *err) {
  tpmv_state *s = calloc(1, sizeof *s);
  CT_ENSURE(s, err, CT_ENOMEM, "out of memory");
  const char *dir = cfg && cfg->tpm_trusted_ak_keys_dir ? cfg->tpm_trusted_ak_keys_dir : NULL;
  DIR *d = opendir(dir ? dir : TPMV__DEFAULT_DIR);
  if (!d) {
    if (dir) {
      /* As upstream: a missing directory fails TPM attestations, not the KBS's start-up (its
       * test configuration names one that only a TPM test creates). */
      snprintf(s->unreadable, sizeof s->unreadable,
               "tpm: Failed to read trusted AK keys directory %s at start-up (%s): no AK is trusted",
               dir, strerror(errno));
      ct_log(CT_LOG_WARN, "tpm", "%s", s->unreadable);
      *state = s;
      return CT_OK;
    }
    /* Not configured and the default is absent: the verifier trusts no AK. */
    ct_log(CT_LOG_INFO, "tpm", "no trusted AK keys directory (%s): every AK will be refused",
           TPMV__DEFAULT_DIR);
    *state = s;
    return CT_OK;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL && s->n < TPMV__MAX_KEYS) {
    size_t nl = strlen(e->d_name);
    if (nl < 5 || strcmp(e->d_name + nl - 4, ".pub") != 0) continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : TPMV__DEFAULT_DIR, e->d_name);
    ct_err e2;
    if (tpmv__hash_key_file(path, s->hashes[s->n], &e2) == CT_OK) s->n++;
    else ct_log(CT_LOG_WARN, "tpm", "skipping trusted AK file: %s", e2.msg);
  }
  closedir(d);
  ct_log(CT_LOG_INFO, "tpm", "loaded %zu trusted AK key(s)", s->n);
  *state = s;
  return CT_OK;
}

static void tpmv__destroy(void *state) { free(state); }

static CT_RESULT tpmv__b64(const json_t *o, const char *k, const char *what, uint8_t **out,
                           size_t *len, ct_err *err) {
  const char *v = NULL;
  CT_GUARD(ct_json_get_string(o, k, what, &v, err));
  CT_ENSURE(strlen(v) <= 64 << 10, err, CT_ELIMIT, "%s: %s is too long", what, k);
  if (ct_b64_decode(CT_B64_STD, v, strlen(v), out, len, err) != CT_OK)
    return ct_err_prefix(err, "%s: %s: ", what, k);
  return CT_OK;
}

/* TPMT_SIGNATURE {u16 sigAlg = TPM_ALG_RSASSA, u16 hash, TPM2B sig}: the raw RSA signature. */
static CT_RESULT tpmv__rsassa(const uint8_t *p, size_t n, const uint8_t **sig, size_t *sig_len,
                             ct_err *err) {
  CT_ENSURE(n >= 6, err, CT_EINVAL, "tpm: failed to unmarshal TSS signature (too short)");
  ct_reader r;
  ct_reader_init(&r, p, n, "tpm: TSS signature");
  uint16_t alg = ct_read_u16be(&r, "sigAlg"), hash = ct_read_u16be(&r, "hash");
  size_t sz = ct_read_u16be(&r, "size");
  CT_GUARD(ct_reader_status(&r, err));
  CT_ENSURE(alg == TPM_ALG_RSASSA, err, CT_EUNSUPPORTED,
            "tpm: unsupported signature type %#06x, expected RSA-SSA", alg);
  CT_ENSURE(hash == TPM_ALG_SHA256, err, CT_EUNSUPPORTED,
            "tpm: signature hash %#06x is not SHA-256", hash);
  CT_ENSURE(sz == n - 6, err, CT_EINVAL, "tpm: failed to unmarshal TSS signature (size %zu of %zu)",
            sz, n - 6);
  *sig = ct_read_bytes(&r, sz, "signature");
  *sig_len = sz;
  CT_GUARD(ct_reader_status(&r, err));
  return CT_OK;
}

static CT_RESULT tpmv__verify(void *state, const as_verify_request *req, json_t **claims, ct_err *err) {
  tpmv_state *s = state;
  CT_ENSURE(s, err, CT_EINTERNAL, "tpm verifier used without create()");
  const json_t *ev = req->evidence;
  const char *ak_b64 = NULL;
  CT_GUARD(ct_json_get_string(ev, "ak_public", "TPM evidence", &ak_b64, err));
  json_t *q = NULL;
  CT_GUARD(ct_json_get_object(ev, "tpm_quote", "TPM evidence", &q, err));
  json_t *pa = json_object_get(q, "pcrs");
  CT_ENSURE(json_is_array(pa) && json_array_size(pa) <= TPM_PCRS_MAX, err, CT_EINVAL,
            "TPM evidence: tpm_quote.pcrs must be an array of at most %d hex strings", TPM_PCRS_MAX);

  uint8_t *ak = NULL, *sigm = NULL, *msg = NULL;
  size_t ak_len = 0, sigm_len = 0, msg_len = 0, n = json_array_size(pa);
  uint8_t(*pcrs)[32] = calloc(n ? n : 1, 32);
  EVP_PKEY *key = NULL;
  json_t *c = NULL;
  ct_status st = CT_OK;
  CT_ENSURE_GOTO(st, pcrs, out, err, CT_ENOMEM, "out of memory");
  CT_GUARD_GOTO(st, tpmv__b64(q, "signature", "TPM evidence: tpm_quote", &sigm, &sigm_len, err), out);
  CT_GUARD_GOTO(st, tpmv__b64(q, "message", "TPM evidence: tpm_quote", &msg, &msg_len, err), out);
  for (size_t i = 0; i < n; i++) {
    const char *h = json_string_value(json_array_get(pa, i));
    CT_ENSURE_GOTO(st, h && strlen(h) == 64, out, err, CT_EINVAL,
                   "TPM evidence: PCR should be 64 hex characters (32 bytes), pcrs[%zu] is not", i);
    uint8_t *b = NULL;
    size_t bl = 0;
    CT_GUARD_GOTO(st, ct_hex_decode(h, 64, &b, &bl, err), out);
    memcpy(pcrs[i], b, 32);
    free(b);
  }
  /* 1. The AK is one the operator registered. */
  CT_ENSURE_GOTO(st, strlen(ak_b64) <= 16 << 10, out, err, CT_ELIMIT, "TPM evidence: ak_public too long");
  if ((st = ct_b64_decode(CT_B64_STD, ak_b64, strlen(ak_b64), &ak, &ak_len, err)) != CT_OK) {
    ct_err_prefix(err, "TPM evidence: ak_public: ");
    goto out;
  }
  uint8_t h[32];
  ct_sha256(ak, ak_len, h);
  bool trusted = false;
  for (size_t i = 0; i < s->n; i++) trusted |= ct_memeq(h, 32, s->hashes[i], 32);
  CT_ENSURE_GOTO(st, trusted, out, err, CT_EDENIED, "%s",
                 s->unreadable[0] ? s->unreadable
                                  : "tpm: The provided AK public key is not in the list of trusted keys");
  /* 2. The quote is signed by it. */
  const unsigned char *p = ak;
  key = d2i_PUBKEY(NULL, &p, (long)ak_len);
  CT_ENSURE_GOTO(st, key && p == ak + ak_len, out, err, CT_EINVAL, "tpm: Failed to parse AK public key");
  const uint8_t *sig = NULL;
  size_t sig_len = 0;
  CT_GUARD_GOTO(st, tpmv__rsassa(sigm, sigm_len, &sig, &sig_len, err), out);
  st = tpm_quote_verify_rsassa_sha256(key, msg, msg_len, sig, sig_len, err);
  if (st) {
    ct_err_prefix(err, "tpm: TPM quote signature verification failed: ");
    goto out;
  }
  tpm_attest a;
  CT_GUARD_GOTO(st, tpm_attest_parse(msg, msg_len, &a, err), out);
  /* 3. PCR values. */
  unsigned pcr_no[TPM_PCRS_MAX];
  st = tpm_quote_check_pcrs(&a, (const uint8_t(*)[32])pcrs, n, pcr_no, err);
  if (st) {
    ct_err_prefix(err, "tpm: Digest of PCRs does not match digest in Quote: ");
    goto out;
  }
  const uint8_t *pcr8 = NULL;
  for (size_t i = 0; i < n; i++)
    if (pcr_no[i] == TPMV__INITDATA_PCR) pcr8 = pcrs[i];
  CT_ENSURE_GOTO(st, pcr8, out, err, CT_EINVAL, "tpm: the quote does not cover PCR%d", TPMV__INITDATA_PCR);
  /* 4. Nonce = report data. Today's attesters (upstream guest-components and ours) bind it
   * truncated or zero-padded to 32 bytes, as upstream's verifier expects; older ones padded it to
   * 64. Either form binds the whole SHA-384 prefix that fits, so both are accepted. */
  if (req->report_data) {
    uint8_t want[TPMV__REPORT_DATA_MAX] = {0};
    size_t n_rd = req->report_data_len < sizeof want ? req->report_data_len : sizeof want;
    memcpy(want, req->report_data, n_rd);
    size_t form =
        a.extra_data_len == TPMV__REPORT_DATA_SHORT ? TPMV__REPORT_DATA_SHORT : TPMV__REPORT_DATA_MAX;
    if (!ct_memeq(a.extra_data, a.extra_data_len, want, form)) {
      char w32[2 * TPMV__REPORT_DATA_SHORT + 1], w64[2 * TPMV__REPORT_DATA_MAX + 1], g[129] = "";
      ct_hex_into(want, TPMV__REPORT_DATA_SHORT, w32);
      ct_hex_into(want, TPMV__REPORT_DATA_MAX, w64);
      if (a.extra_data_len <= 64) ct_hex_into(a.extra_data, a.extra_data_len, g);
      st = ct_fail(err, CT_EDENIED, "tpm: TPM quote nonce doesn't match expected report_data: "
                   "expected %s (32-byte form) or %s (64-byte form), quote has %s", w32, w64, g);
      goto out;
    }
  }
  /* 5. init-data in PCR8. */
  if (req->init_data_digest) {
    CT_ENSURE_GOTO(st, req->init_data_digest_len == 32, out, err, CT_EINVAL,
                   "tpm: init-data digest is %zu bytes; PCR%d binding needs a SHA-256 digest",
                   req->init_data_digest_len, TPMV__INITDATA_PCR);
    uint8_t in[64] = {0}, want[32];
    memcpy(in + 32, req->init_data_digest, 32);
    ct_sha256(in, 64, want);
    CT_ENSURE_GOTO(st, memcmp(want, pcr8, 32) == 0, out, err, CT_EDENIED,
                   "tpm: TPM PCR[%d] doesn't match expected initdata hash", TPMV__INITDATA_PCR);
  }
  /* Claims. */
  c = json_object();
  CT_ENSURE_GOTO(st, c, out, err, CT_ENOMEM, "out of memory");
  for (size_t i = 0; i < n && st == CT_OK; i++) {
    char k[8], hex[65];
    snprintf(k, sizeof k, "pcr%02u", pcr_no[i]);
    ct_hex_into(pcrs[i], 32, hex);
    st = ct_json_set_new(c, k, json_string(hex), err);
  }
  char hex8[65];
  ct_hex_into(pcr8, 32, hex8);
  if (st == CT_OK) st = ct_json_set_new(c, "init_data", json_string(hex8), err);
  char *nonce = NULL;
  if (st == CT_OK) st = ct_hex_encode(a.extra_data, a.extra_data_len, &nonce, err);
  if (st == CT_OK) st = ct_json_set_new(c, "report_data", json_string(nonce), err);
  free(nonce);
  if (st == CT_OK) st = ct_json_set_new(c, "ak_public", json_string(ak_b64), err);
  if (st) goto out;
  *claims = c;
  c = NULL;
out:
  json_decref(c);
  EVP_PKEY_free(key);
  free(ak);
  free(sigm);
  free(msg);
  free(pcrs);
  return st;
}

const as_verifier as_verifier_tpm = {
    .tee = "tpm",
    .tee_class = "cpu",
    .create = tpmv__create,
    .destroy = tpmv__destroy,
    .verify = tpmv__verify,
};
