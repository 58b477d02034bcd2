/*
 * guest_tpm.c - TPM 2.0 operations with tss2-esys. No jansson in this file (see guest_tpm.h).
 */
#include "guest_tpm.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "ct_mem.h"

#define GUEST_TPM__CHUNK 512u

struct guest_tpm {
  TSS2_TCTI_CONTEXT *tcti;
  ESYS_CONTEXT *ectx;
};

static CT_RESULT guest_tpm__fail(ct_err *err, TSS2_RC rc, const char *what) {
  return ct_fail(err, CT_EIO, "tpm: %s failed: %s (0x%x)", what, Tss2_RC_Decode(rc), (unsigned)rc);
}

CT_RESULT guest_tpm_open(const char *tcti, guest_tpm **out, ct_err *err) {
  CT_ENSURE(tcti && *tcti, err, CT_EINVAL, "tpm: no TCTI configured");
  /* tss2 logs expected probe failures to stderr; our errors carry the decoded reason. */
  setenv("TSS2_LOG", "all+none", 0);
  guest_tpm *t = calloc(1, sizeof *t);
  CT_ENSURE(t, err, CT_ENOMEM, "tpm: out of memory");
  TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti, &t->tcti);
  if (rc != TSS2_RC_SUCCESS) {
    free(t);
    return ct_fail(err, CT_EIO, "tpm: cannot open TCTI \"%s\": %s", tcti, Tss2_RC_Decode(rc));
  }
  rc = Esys_Initialize(&t->ectx, t->tcti, NULL);
  if (rc != TSS2_RC_SUCCESS) {
    Tss2_TctiLdr_Finalize(&t->tcti);
    free(t);
    return guest_tpm__fail(err, rc, "Esys_Initialize");
  }
  *out = t;
  return CT_OK;
}

void guest_tpm_close(guest_tpm *t) {
  if (!t) return;
  if (t->ectx) Esys_Finalize(&t->ectx);
  if (t->tcti) Tss2_TctiLdr_Finalize(&t->tcti);
  free(t);
}

static CT_RESULT guest_tpm__handle(guest_tpm *t, uint32_t handle, ESYS_TR *out, ct_err *err) {
  TSS2_RC rc = Esys_TR_FromTPMPublic(t->ectx, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, out);
  if (rc != TSS2_RC_SUCCESS)
    return ct_fail(err, CT_ENOTFOUND, "tpm: handle 0x%08x is not present: %s", handle,
                   Tss2_RC_Decode(rc));
  return CT_OK;
}

CT_RESULT guest_tpm_nv_read(guest_tpm *t, uint32_t index, uint8_t **out, size_t *len, ct_err *err) {
  ESYS_TR nvh;
  CT_GUARD(guest_tpm__handle(t, index, &nvh, err));
  TPM2B_NV_PUBLIC *pub = NULL;
  TPM2B_NAME *name = NULL;
  ct_status st = CT_OK;
  uint8_t *buf = NULL;
  TSS2_RC rc = Esys_NV_ReadPublic(t->ectx, nvh, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name);
  CT_ENSURE_GOTO(st, rc == TSS2_RC_SUCCESS, out_close, err, CT_EIO,
                 "tpm: NV_ReadPublic 0x%08x: %s", index, Tss2_RC_Decode(rc));
  size_t size = pub->nvPublic.dataSize;
  CT_ENSURE_GOTO(st, size > 0 && size <= GUEST_TPM_NV_MAX, out_close, err, CT_ELIMIT,
                 "tpm: NV index 0x%08x has size %zu (limit %u)", index, size, GUEST_TPM_NV_MAX);
  buf = malloc(size + 1);
  CT_ENSURE_GOTO(st, buf, out_close, err, CT_ENOMEM, "tpm: out of memory");
  for (size_t off = 0; off < size;) {
    uint16_t n = (uint16_t)(size - off > GUEST_TPM__CHUNK ? GUEST_TPM__CHUNK : size - off);
    TPM2B_MAX_NV_BUFFER *data = NULL;
    rc = Esys_NV_Read(t->ectx, ESYS_TR_RH_OWNER, nvh, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                      n, (uint16_t)off, &data);
    CT_ENSURE_GOTO(st, rc == TSS2_RC_SUCCESS && data && data->size == n, out_close, err, CT_EIO,
                   "tpm: NV_Read 0x%08x at %zu: %s", index, off, Tss2_RC_Decode(rc));
    memcpy(buf + off, data->buffer, n);
    Esys_Free(data);
    off += n;
  }
  buf[size] = 0;
  *out = buf;
  *len = size;
  buf = NULL;
out_close:
  free(buf);
  Esys_Free(pub);
  Esys_Free(name);
  Esys_TR_Close(t->ectx, &nvh);
  return st;
}

CT_RESULT guest_tpm_nv_write(guest_tpm *t, uint32_t index, const uint8_t *data, size_t len,
                             ct_err *err) {
  CT_ENSURE(len > 0 && len <= GUEST_TPM__CHUNK, err, CT_ELIMIT,
            "tpm: NV write of %zu bytes (1..%u supported)", len, GUEST_TPM__CHUNK);
  ESYS_TR nvh = ESYS_TR_NONE;
  TSS2_RC rc = Esys_TR_FromTPMPublic(t->ectx, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nvh);
  if (rc == TSS2_RC_SUCCESS) {
    TPM2B_NV_PUBLIC *pub = NULL;
    TPM2B_NAME *name = NULL;
    rc = Esys_NV_ReadPublic(t->ectx, nvh, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name);
    size_t have = rc == TSS2_RC_SUCCESS ? pub->nvPublic.dataSize : 0;
    Esys_Free(pub);
    Esys_Free(name);
    if (have != len) {
      /* The paravisor reads the whole index, so its size must equal the report data size. */
      rc = Esys_NV_UndefineSpace(t->ectx, ESYS_TR_RH_OWNER, nvh, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                 ESYS_TR_NONE);
      if (rc != TSS2_RC_SUCCESS) {
        Esys_TR_Close(t->ectx, &nvh);
        return guest_tpm__fail(err, rc, "NV_UndefineSpace");
      }
      nvh = ESYS_TR_NONE;
    }
  } else {
    nvh = ESYS_TR_NONE;
  }
  if (nvh == ESYS_TR_NONE) {
    TPM2B_AUTH auth = {.size = 0};
    TPM2B_NV_PUBLIC pub = {.size = 0,
                           .nvPublic = {.nvIndex = index,
                                        .nameAlg = TPM2_ALG_SHA256,
                                        .attributes = TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD,
                                        .authPolicy = {.size = 0},
                                        .dataSize = (uint16_t)len}};
    rc = Esys_NV_DefineSpace(t->ectx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                             &auth, &pub, &nvh);
    if (rc != TSS2_RC_SUCCESS) return guest_tpm__fail(err, rc, "NV_DefineSpace");
  }
  TPM2B_MAX_NV_BUFFER buf = {.size = (uint16_t)len};
  memcpy(buf.buffer, data, len);
  rc = Esys_NV_Write(t->ectx, ESYS_TR_RH_OWNER, nvh, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                     &buf, 0);
  Esys_TR_Close(t->ectx, &nvh);
  if (rc != TSS2_RC_SUCCESS) return guest_tpm__fail(err, rc, "NV_Write");
  return CT_OK;
}

CT_RESULT guest_tpm_pcr_read(guest_tpm *t, uint8_t pcrs[GUEST_TPM_PCRS][32], ct_err *err) {
  /* PCR_Read returns at most 8 digests per call, so read one selection byte at a time. */
  for (unsigned byte = 0; byte < 3; byte++) {
    TPML_PCR_SELECTION sel = {.count = 1};
    sel.pcrSelections[0].hash = TPM2_ALG_SHA256;
    sel.pcrSelections[0].sizeofSelect = 3;
    sel.pcrSelections[0].pcrSelect[byte] = 0xff;
    uint32_t counter;
    TPML_PCR_SELECTION *sel_out = NULL;
    TPML_DIGEST *vals = NULL;
    TSS2_RC rc = Esys_PCR_Read(t->ectx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, &counter,
                               &sel_out, &vals);
    if (rc != TSS2_RC_SUCCESS) return guest_tpm__fail(err, rc, "PCR_Read");
    bool ok = vals->count == 8;
    for (unsigned i = 0; ok && i < 8; i++) {
      ok = vals->digests[i].size == 32;
      if (ok) memcpy(pcrs[byte * 8 + i], vals->digests[i].buffer, 32);
    }
    Esys_Free(sel_out);
    Esys_Free(vals);
    CT_ENSURE(ok, err, CT_EIO, "tpm: the sha256 PCR bank is not fully allocated");
  }
  return CT_OK;
}

CT_RESULT guest_tpm_pcr_extend(guest_tpm *t, unsigned pcr, const uint8_t digest[32], ct_err *err) {
  CT_ENSURE(pcr < GUEST_TPM_PCRS, err, CT_EINVAL, "tpm: PCR index %u out of range", pcr);
  TPML_DIGEST_VALUES d = {.count = 1};
  d.digests[0].hashAlg = TPM2_ALG_SHA256;
  memcpy(d.digests[0].digest.sha256, digest, 32);
  TSS2_RC rc = Esys_PCR_Extend(t->ectx, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                               ESYS_TR_NONE, &d);
  if (rc != TSS2_RC_SUCCESS) return guest_tpm__fail(err, rc, "PCR_Extend");
  return CT_OK;
}

void guest_tpm_quote_free(guest_tpm_quote *q) {
  if (!q) return;
  free(q->message);
  free(q->sig_raw);
  free(q->sig_marshalled);
  memset(q, 0, sizeof *q);
}

static CT_RESULT guest_tpm__dup(const void *p, size_t n, uint8_t **out, ct_err *err) {
  *out = malloc(n ? n : 1);
  CT_ENSURE(*out, err, CT_ENOMEM, "tpm: out of memory");
  if (n) memcpy(*out, p, n);
  return CT_OK;
}

CT_RESULT guest_tpm_quote_pcrs(guest_tpm *t, uint32_t ak_handle, const uint8_t *nonce,
                               size_t nonce_len, guest_tpm_quote *q, ct_err *err) {
  memset(q, 0, sizeof *q);
  CT_ENSURE(nonce_len <= sizeof(((TPM2B_DATA *)0)->buffer), err, CT_ELIMIT,
            "tpm: quote nonce of %zu bytes is too long", nonce_len);
  ESYS_TR akh;
  CT_GUARD(guest_tpm__handle(t, ak_handle, &akh, err));
  TPM2B_DATA qd = {.size = (uint16_t)nonce_len};
  if (nonce_len) memcpy(qd.buffer, nonce, nonce_len);
  TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_NULL};
  TPML_PCR_SELECTION sel = {.count = 1};
  sel.pcrSelections[0].hash = TPM2_ALG_SHA256;
  sel.pcrSelections[0].sizeofSelect = 3;
  memset(sel.pcrSelections[0].pcrSelect, 0xff, 3);
  TPM2B_ATTEST *quoted = NULL;
  TPMT_SIGNATURE *sig = NULL;
  ct_status st = CT_OK;
  TSS2_RC rc = Esys_Quote(t->ectx, akh, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &qd, &scheme,
                          &sel, &quoted, &sig);
  Esys_TR_Close(t->ectx, &akh);
  if (rc != TSS2_RC_SUCCESS) return guest_tpm__fail(err, rc, "Quote");
  CT_ENSURE_GOTO(st, sig->sigAlg == TPM2_ALG_RSASSA, out, err, CT_EUNSUPPORTED,
                 "tpm: the AK at 0x%08x signs with algorithm 0x%04x, RSASSA expected", ak_handle,
                 sig->sigAlg);
  CT_GUARD_GOTO(st, guest_tpm__dup(quoted->attestationData, quoted->size, &q->message, err), out);
  q->message_len = quoted->size;
  CT_GUARD_GOTO(st, guest_tpm__dup(sig->signature.rsassa.sig.buffer, sig->signature.rsassa.sig.size,
                                   &q->sig_raw, err), out);
  q->sig_raw_len = sig->signature.rsassa.sig.size;
  uint8_t mbuf[sizeof(TPMT_SIGNATURE) + 16];
  size_t off = 0;
  rc = Tss2_MU_TPMT_SIGNATURE_Marshal(sig, mbuf, sizeof mbuf, &off);
  CT_ENSURE_GOTO(st, rc == TSS2_RC_SUCCESS, out, err, CT_EINTERNAL, "tpm: marshalling the signature");
  CT_GUARD_GOTO(st, guest_tpm__dup(mbuf, off, &q->sig_marshalled, err), out);
  q->sig_marshalled_len = off;
  CT_GUARD_GOTO(st, guest_tpm_pcr_read(t, q->pcrs, err), out);
out:
  Esys_Free(quoted);
  Esys_Free(sig);
  if (st) guest_tpm_quote_free(q);
  return st;
}

static CT_RESULT guest_tpm__pkey_der(EVP_PKEY *pk, uint8_t **der, size_t *len, ct_err *err) {
  unsigned char *p = NULL;
  int n = i2d_PUBKEY(pk, &p);
  if (n <= 0) return ct_fail_ossl(err, CT_ECRYPTO, "tpm: encoding the AK public key");
  ct_status st = guest_tpm__dup(p, (size_t)n, der, err);
  OPENSSL_free(p);
  if (!st) *len = (size_t)n;
  return st;
}

CT_RESULT guest_tpm_ak_spki(guest_tpm *t, uint32_t ak_handle, uint8_t **der, size_t *len,
                            ct_err *err) {
  ESYS_TR akh;
  CT_GUARD(guest_tpm__handle(t, ak_handle, &akh, err));
  TPM2B_PUBLIC *pub = NULL;
  TPM2B_NAME *name = NULL, *qname = NULL;
  TSS2_RC rc = Esys_ReadPublic(t->ectx, akh, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name,
                               &qname);
  Esys_TR_Close(t->ectx, &akh);
  Esys_Free(name);
  Esys_Free(qname);
  if (rc != TSS2_RC_SUCCESS) return guest_tpm__fail(err, rc, "ReadPublic");
  ct_status st = CT_OK;
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM *params = NULL;
  EVP_PKEY_CTX *ctx = NULL;
  EVP_PKEY *pk = NULL;
  BIGNUM *n = NULL, *e = NULL;
  CT_ENSURE_GOTO(st, bld, out, err, CT_ENOMEM, "tpm: out of memory");
  const char *type;
  if (pub->publicArea.type == TPM2_ALG_RSA) {
    type = "RSA";
    uint32_t exp = pub->publicArea.parameters.rsaDetail.exponent;
    n = BN_bin2bn(pub->publicArea.unique.rsa.buffer, pub->publicArea.unique.rsa.size, NULL);
    e = BN_new();
    CT_ENSURE_GOTO(st, n && e && BN_set_word(e, exp ? exp : 65537) &&
                           OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
                           OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e),
                   out, err, CT_ENOMEM, "tpm: building the RSA AK key");
  } else if (pub->publicArea.type == TPM2_ALG_ECC &&
             pub->publicArea.parameters.eccDetail.curveID == TPM2_ECC_NIST_P256) {
    type = "EC";
    uint8_t point[65] = {0x04};
    const TPMS_ECC_POINT *pt = &pub->publicArea.unique.ecc;
    CT_ENSURE_GOTO(st, pt->x.size <= 32 && pt->y.size <= 32, out, err, CT_EINVAL,
                   "tpm: malformed ECC AK point");
    memcpy(point + 1 + 32 - pt->x.size, pt->x.buffer, pt->x.size);
    memcpy(point + 33 + 32 - pt->y.size, pt->y.buffer, pt->y.size);
    CT_ENSURE_GOTO(st, OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0) &&
                           OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point,
                                                            sizeof point),
                   out, err, CT_ENOMEM, "tpm: building the EC AK key");
  } else {
    st = ct_fail(err, CT_EUNSUPPORTED, "tpm: AK 0x%08x has unsupported key type 0x%04x", ak_handle,
                 pub->publicArea.type);
    goto out;
  }
  params = OSSL_PARAM_BLD_to_param(bld);
  ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
      EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
    st = ct_fail_ossl(err, CT_ECRYPTO, "tpm: importing the AK public key");
    goto out;
  }
  st = guest_tpm__pkey_der(pk, der, len, err);
out:
  EVP_PKEY_free(pk);
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_free(n);
  BN_free(e);
  Esys_Free(pub);
  return st;
}
