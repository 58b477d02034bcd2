/*
 * The sample verifier (Trustee deps/verifier/src/sample): no hardware, evidence
 * {"svn":"<string>","report_data":"<standard base64>"} whose report_data must equal the
 * expected bytes exactly. For development and the protocol tests only; the default resource
 * policy denies sample evidence.
 */
#include <stdlib.h>
#include <string.h>

#include "as_verifier.h"
#include "ct_codec.h"
#include "ct_json.h"
#include "ct_mem.h"

static CT_RESULT sample__verify(void *state, const as_verify_request *req, json_t **claims,
                                ct_err *err) {
  (void)state;
  const char *svn = NULL, *report_data = NULL;
  CT_GUARD(ct_json_get_string(req->evidence, "svn", "sample evidence", &svn, err));
  CT_GUARD(ct_json_get_string(req->evidence, "report_data", "sample evidence", &report_data, err));
  if (req->report_data) {
    uint8_t *got = NULL;
    size_t got_len = 0;
    if (ct_b64_decode(CT_B64_STD, report_data, strlen(report_data), &got, &got_len, err) != CT_OK)
      return ct_err_prefix(err, "sample evidence: report_data: ");
    bool same = ct_memeq(got, got_len, req->report_data, req->report_data_len);
    free(got);
    CT_ENSURE(same, err, CT_ECRYPTO,
              "sample evidence: report_data does not equal the expected value (SHA-384 of the "
              "canonical runtime data with this session's nonce and TEE key)");
  }
  json_t *c = json_pack("{s:s, s:s, s:s, s:{s:i, s:i}, s:b}", "svn", svn, "report_data", report_data,
                        "launch_digest", "abcde", "platform_version", "major", 1, "minor", 4,
                        "debug", 0);
  CT_ENSURE(c, err, CT_ENOMEM, "out of memory building sample claims");
  if (req->init_data_digest) {
    char *b64 = NULL;
    ct_status st = ct_b64_encode(CT_B64_STD, req->init_data_digest, req->init_data_digest_len, &b64, err);
    if (st == CT_OK) st = ct_json_set_new(c, "init_data", json_string(b64), err);
    free(b64);
    if (st != CT_OK) {
      json_decref(c);
      return st;
    }
  }
  *claims = c;
  return CT_OK;
}

const as_verifier as_verifier_sample = {
    .tee = "sample",
    .tee_class = "cpu",
    .verify = sample__verify,
};
