/* libFuzzer target: DCAP quote parsing, PCK chain loading, SGX extension parsing, signature
 * checks and claims rendering on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "tdx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ct_err err;
  dcap_quote q;
  if (dcap_quote_parse(data, size, &q, &err) != CT_OK) return 0;
  json_t *claims = NULL;
  if (tdx_claims_build(&q, NULL, NULL, &claims, &err) == CT_OK) json_decref(claims);
  STACK_OF(X509) *chain = NULL;
  if (dcap_pck_chain_load(&q, &chain, &err) != CT_OK) return 0;
  dcap_pck_info pck;
  if (dcap_pck_info_read(sk_X509_value(chain, 0), &pck, &err) == CT_OK)
    if (dcap_verify_signatures(&q, sk_X509_value(chain, 0), &err) == CT_OK) err.msg[0] = 0;
  sk_X509_pop_free(chain, X509_free);
  return 0;
}
