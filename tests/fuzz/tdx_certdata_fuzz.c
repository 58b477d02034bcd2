/* libFuzzer target: the quote's certification data (type 6: QE report, signature, QE auth data,
 * nested type 5 PEM PCK chain) and the PCK certificate's SGX extension. The input is wrapped in
 * a fixed quote header and TD report body so that only the certification data varies. */
#include <stdlib.h>
#include <string.h>

#include "tdx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 60000) return 0;
  size_t hdr = 48 + DCAP_TDX10_BODY_LEN;
  size_t sig_len = 128 + 6 + size;
  uint8_t *q = calloc(1, hdr + 4 + sig_len);
  if (!q) return 0;
  q[0] = 4;
  q[2] = 2;
  q[4] = 0x81;
  memcpy(q + hdr, &(uint32_t){(uint32_t)sig_len}, 4);
  uint8_t *cd = q + hdr + 4 + 128;
  cd[0] = 6;
  memcpy(cd + 2, &(uint32_t){(uint32_t)size}, 4);
  memcpy(cd + 6, data, size);
  ct_err err;
  dcap_quote dq;
  if (dcap_quote_parse(q, hdr + 4 + sig_len, &dq, &err) == CT_OK) {
    STACK_OF(X509) *chain = NULL;
    if (dcap_pck_chain_load(&dq, &chain, &err) == CT_OK) {
      dcap_pck_info pck;
      if (dcap_pck_info_read(sk_X509_value(chain, 0), &pck, &err) == CT_OK)
        if (dcap_verify_signatures(&dq, sk_X509_value(chain, 0), &err) == CT_OK) err.msg[0] = 0;
      sk_X509_pop_free(chain, X509_free);
    }
  }
  free(q);
  return 0;
}
