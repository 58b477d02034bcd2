/*
 * cdh_keyprovider.c - the ocicrypt key provider "attestation-agent": unwraps the key of an
 * encrypted image layer with a KEK fetched from the KBS (guest-components'
 * confidential-data-hub image/annotation_packet, version 1 and 2 packets, provider kbs).
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdh.h"
#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_json.h"
#include "ct_mem.h"

#define CDH__UNWRAP_INPUT_MAX (1u << 20)
#define CDH__WRAPPED_MAX (64u << 10)

/* AES-256-GCM with the 16-byte tag appended to the ciphertext, or AES-256-CTR. */
static CT_RESULT cdh__aes_decrypt(const uint8_t *key, const char *wrap_type, const uint8_t *iv,
                                  size_t ivlen, const uint8_t *ct, size_t ctlen, uint8_t **out,
                                  size_t *olen, ct_err *err) {
  int gcm = !strcmp(wrap_type, "A256GCM");
  CT_ENSURE(gcm || !strcmp(wrap_type, "A256CTR"), err, CT_EUNSUPPORTED,
            "annotation packet: wrap_type \"%s\" is not supported (A256GCM, A256CTR)", wrap_type);
  CT_ENSURE(gcm ? ivlen >= 12 && ivlen <= 64 : ivlen == 16, err, CT_EINVAL,
            "annotation packet: iv of %zu bytes does not fit %s", ivlen, wrap_type);
  CT_ENSURE(!gcm || ctlen >= 16, err, CT_EINVAL, "annotation packet: wrapped_data has no GCM tag");
  size_t n = gcm ? ctlen - 16 : ctlen;
  uint8_t *pt = malloc(n + 1);
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  ct_status st = CT_OK;
  int len = 0, fin = 0;
  CT_ENSURE_GOTO(st, pt && c, out, err, CT_ENOMEM, "out of memory");
  if (gcm) {
    if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, (int)ivlen, NULL) != 1 ||
        EVP_DecryptInit_ex(c, NULL, NULL, key, iv) != 1 ||
        EVP_DecryptUpdate(c, pt, &len, ct, (int)n) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)(ct + n)) != 1 ||
        EVP_DecryptFinal_ex(c, pt + len, &fin) != 1) {
      st = ct_fail_ossl(err, CT_ECRYPTO,
                        "annotation packet: wrapped_data does not decrypt with the KEK (GCM tag "
                        "mismatch)");
      goto out;
    }
  } else if (EVP_DecryptInit_ex(c, EVP_aes_256_ctr(), NULL, key, iv) != 1 ||
             EVP_DecryptUpdate(c, pt, &len, ct, (int)n) != 1 ||
             EVP_DecryptFinal_ex(c, pt + len, &fin) != 1) {
    st = ct_fail_ossl(err, CT_ECRYPTO, "annotation packet: AES-CTR decryption failed");
    goto out;
  }
  *out = pt;
  *olen = (size_t)(len + fin);
  pt = NULL;
out:
  if (pt) {
    ct_wipe(pt, n);
    free(pt);
  }
  EVP_CIPHER_CTX_free(c);
  return st;
}

static CT_RESULT cdh__b64_member(const json_t *o, const char *key, size_t max, uint8_t **out,
                                 size_t *len, ct_err *err) {
  const char *s = NULL;
  CT_GUARD(ct_json_get_string(o, key, "annotation packet", &s, err));
  CT_ENSURE(strlen(s) <= max * 4 / 3 + 4, err, CT_ELIMIT, "annotation packet: %s is too large", key);
  ct_status st = ct_b64_decode(CT_B64_ANY, s, strlen(s), out, len, err);
  if (st) return ct_err_prefix(err, "annotation packet: %s: ", key);
  return CT_OK;
}

CT_RESULT cdh_hub_unwrap_packet(cdh_hub *h, const char *packet, size_t len, uint8_t **out,
                                size_t *olen, ct_err *err) {
  json_t *p = NULL;
  CT_GUARD(ct_json_parse(packet, len, 8, &p, err));
  ct_status st = CT_OK;
  uint8_t *wrapped = NULL, *iv = NULL, *kek = NULL;
  size_t wlen = 0, ivlen = 0, klen = 0;
  const char *version = NULL, *provider = NULL, *kid = NULL, *wrap_type = NULL;
  CT_ENSURE_GOTO(st, json_is_object(p), done, err, CT_EINVAL,
                 "annotation packet: not a JSON object");
  CT_GUARD_GOTO(st, ct_json_opt_string(p, "version", "annotation packet", &version, err), done);
  CT_GUARD_GOTO(st, ct_json_opt_string(p, "provider", "annotation packet", &provider, err), done);
  CT_ENSURE_GOTO(st, !version || !strcmp(version, "0.1.0"), done, err, CT_EUNSUPPORTED,
                 "annotation packet: version \"%s\" (0.1.0 expected)", version);
  CT_ENSURE_GOTO(st, !provider || !strcmp(provider, "kbs"), done, err, CT_EUNSUPPORTED,
                 "annotation packet: provider \"%s\" is not supported (kbs is)", provider);
  CT_GUARD_GOTO(st, ct_json_get_string(p, "kid", "annotation packet", &kid, err), done);
  CT_GUARD_GOTO(st, ct_json_get_string(p, "wrap_type", "annotation packet", &wrap_type, err), done);
  CT_GUARD_GOTO(st, cdh__b64_member(p, "wrapped_data", CDH__WRAPPED_MAX, &wrapped, &wlen, err), done);
  CT_GUARD_GOTO(st, cdh__b64_member(p, "iv", 64, &iv, &ivlen, err), done);
  CT_ENSURE_GOTO(st, !strncmp(kid, "kbs:", 4) || !strncmp(kid, "kbs+", 4), done, err, CT_EINVAL,
                 "annotation packet: kid \"%.200s\" is not a kbs:// resource URI", kid);
  st = cdh_hub_get_resource(h, kid, &kek, &klen, err);
  if (st) {
    ct_err_prefix(err, "key encryption key %s: ", kid);
    goto done;
  }
  CT_ENSURE_GOTO(st, klen == 32, done, err, CT_EINVAL,
                 "key encryption key %s: %zu bytes (an AES-256 key has 32)", kid, klen);
  st = cdh__aes_decrypt(kek, wrap_type, iv, ivlen, wrapped, wlen, out, olen, err);
  if (st) ct_err_prefix(err, "key encryption key %.200s: ", kid);
done:
  if (kek) {
    ct_wipe(kek, klen);
    free(kek);
  }
  free(wrapped);
  free(iv);
  json_decref(p);
  return st;
}

/* ocicrypt's KeyUnwrapParams: `annotation` (base64 of the packet) or, from older clients, the
 * first value of dc.Parameters["attestation-agent"]. */
static CT_RESULT cdh__annotation(const json_t *in, const char **b64, ct_err *err) {
  const json_t *up = json_object_get(in, "keyunwrapparams");
  CT_ENSURE(json_is_object(up), err, CT_EINVAL, "UnWrapKey: keyunwrapparams missing");
  const json_t *a = json_object_get(up, "annotation");
  if (json_is_string(a)) {
    *b64 = json_string_value(a);
    return CT_OK;
  }
  const json_t *dc = json_object_get(up, "dc");
  const json_t *params = dc ? json_object_get(dc, "Parameters") : NULL;
  const json_t *v = params ? json_object_get(params, CDH_KEYPROVIDER_NAME) : NULL;
  CT_ENSURE(json_is_array(v) && json_is_string(json_array_get(v, 0)), err, CT_EINVAL,
            "UnWrapKey: no annotation packet given (keyunwrapparams.annotation)");
  *b64 = json_string_value(json_array_get(v, 0));
  return CT_OK;
}

CT_RESULT cdh_hub_unwrap_key(cdh_hub *h, const uint8_t *input, size_t len, uint8_t **out,
                             size_t *olen, ct_err *err) {
  CT_ENSURE(len <= CDH__UNWRAP_INPUT_MAX, err, CT_ELIMIT, "UnWrapKey: input larger than %u bytes",
            CDH__UNWRAP_INPUT_MAX);
  json_t *in = NULL;
  CT_GUARD(ct_json_parse((const char *)input, len, 16, &in, err));
  ct_status st = CT_OK;
  uint8_t *packet = NULL, *opts = NULL;
  size_t plen = 0, optlen = 0;
  const char *op = NULL, *b64 = NULL;
  ct_buf b;
  ct_buf_init(&b, 8u * CDH__WRAPPED_MAX);
  CT_ENSURE_GOTO(st, json_is_object(in), done, err, CT_EINVAL, "UnWrapKey: input is not an object");
  CT_GUARD_GOTO(st, ct_json_opt_string(in, "op", "UnWrapKey input", &op, err), done);
  CT_ENSURE_GOTO(st, !op || !strcmp(op, "keyunwrap"), done, err, CT_EUNSUPPORTED,
                 "UnWrapKey: op \"%s\" is not supported (keyunwrap is)", op);
  CT_GUARD_GOTO(st, cdh__annotation(in, &b64, err), done);
  st = ct_b64_decode(CT_B64_ANY, b64, strlen(b64), &packet, &plen, err);
  if (st) {
    ct_err_prefix(err, "UnWrapKey: annotation: ");
    goto done;
  }
  CT_GUARD_GOTO(st, cdh_hub_unwrap_packet(h, (const char *)packet, plen, &opts, &optlen, err), done);
  /* serde's Vec<u8>: a JSON array of numbers. */
  CT_GUARD_GOTO(st, ct_buf_append_str(&b, "{\"keyunwrapresults\":{\"optsdata\":[", err), done);
  for (size_t i = 0; i < optlen; i++)
    CT_GUARD_GOTO(st, ct_buf_printf(&b, err, i ? ",%u" : "%u", opts[i]), done);
  CT_GUARD_GOTO(st, ct_buf_append_str(&b, "]}}", err), done);
  *out = ct_buf_take(&b, olen);
done:
  ct_buf_free_secret(&b);
  if (opts) {
    ct_wipe(opts, optlen);
    free(opts);
  }
  free(packet);
  json_decref(in);
  return st;
}
