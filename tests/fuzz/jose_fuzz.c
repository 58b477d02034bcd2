/*
 * jose_fuzz - libFuzzer target over the JOSE module's parsers with fixed keys:
 * JWK import/export, JWS decoding and verification (EC, Ed25519, RSA), JWE parsing and
 * decryption (ECDH-ES+A256KW on P-256, RSA-OAEP-256/RSA1_5), x5c shape checks, JWK Sets and
 * JWT time checks. The first input byte selects the path; the rest is the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_json.h"
#include "ct_mem.h"
#include "jose.h"

static const char *const FUZZ_EC_JWK =
    "{\"crv\":\"P-256\",\"d\":\"uRd-MlZNx30tXL5TTtksJdRZLYzt4BalBPcKKaMuII8\",\"kty\":\"EC\","
    "\"x\":\"Ozx13qKsjmvxQYWj1gRYMs7gHNyYv2lMm9gpbPouHNM\","
    "\"y\":\"FISyWNl5aVodcsr7ROijkodz8etb4jvKXbWl9oEIj3E\"}";
static const char *const FUZZ_ED_JWK =
    "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"d\":\"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A\","
    "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}";
static const char *const FUZZ_RSA_JWK =
    "{\"kty\":\"RSA\",\"n\":\"uG6QFHEEZAjSHUfl-qNUDj-63DiAf6XdF4emFOndhLarVMvBYKJCFIqKGmo5bB"
    "tB5KaCRHnVSStmtAngk41ZMeBNu1sXDaJc8N9bGxX-ZXvEs8wiUB9odBqWWE0RAOQGXATquWzMoO1iGN"
    "_6nQlpW9YFou-k1qb3ES1acWyKyoFaLOWpc4vctqjfVvf-bf-inYNiJ_NvICSNh9pozcghiAdjtqNtGA"
    "TZEpZwUO-OSGVGenk4SnGNBuG2GzcZmDaGH1Q2Z2lKHo3rUDZpbpVcFBfTbXEyDvf0G0O0AvgdW_qHtg"
    "M66C50KmTzC5AF6PK7wQySX9iGZFkPBpxAMTuk8Q\",\"e\":\"AQAB\",\"d\":\"A5YT9MTM6GkkP6E34Wri1J"
    "nZmfnaiaONqs0RQ32ibZfRJC-H2PzguXDnSMZqi6MfocjugP29kiwZuwvzNH_32qSdSFSirFoCfK_QKq"
    "-PsZTG9_V4RZadwlOzG0A-NwDoF4AZjxhaBdyl0Zy3LSMV--exDCh6JrnK4DgcPAxCSjfyA-vANihePW"
    "R__2kUxcUOQj97dVHufHwQ3NKQlz9AhGVTweDFBW9HZynAmhZTk43wTkSS8EBOKhdd-54SUYJgNPitl3"
    "Vj6ptc3LQMqrk5MmnfJ7agTDn53E_0BMJBMTBIklVBaLUaeDcuNn-E9HbZE2Cb_5x1tg-SuB35tdJl4Q"
    "\",\"p\":\"_Ty5zCF-C1MsmCP1ZdW2ilki7W7K-eBErW6bU194lLG6vtaYO28BJHLGsX42bfLy1r_e3Ozmt"
    "lUvgDm7qcfliO6YtmgmnL8qrVbrnoAYIsH5UDfUH9HP7UCE0IlAA60k0tiPFt3HiQvDiWaTYvAtKQB_Q"
    "8LbXT4HOpvPvP144iE\",\"q\":\"unGrIOhjfcaohBo7HOiGF2pEO1wbbUB3eYBx_xc_9Srv6rrQ2CH_FIN"
    "SSf58EwULJGJqzk6upIKXI4PvBIqD9lhK23Gn-VqpNgitfdMLUQonmwbRS5I9SEO1V8EYkrprgK_FJC2"
    "FZ64mc4gSOo5gDyW-oO2T5Pt9lEeSPF86CNE\",\"dp\":\"Au3O4FOK16qwm1nfHrxoDhWV19UuN9GmObNL"
    "zJ0QEfg0RrzIqfdQthE1xxvEmWTz9hPmCfwbdwRpNjx0tTQAraLE1WdC-xEi9zpII18r6EsCDTF4HJ4a"
    "n43de2P6_4_jGyUyEnuiMS2Xp2EuVzib7Rt6XVhFnUB4aO8gafksisE\",\"dq\":\"gCZdD5Nrvynq7lHxS"
    "59ve2ypVXurxl5HQJZOxJ1Acs1-doLNxaEoaPsSdpWaxp_y1qFm9EMUuzKfm-O1SBPFPG_XlBn88OGl6"
    "OPyC8ghwSQPsPjwptbvlFolrRmmQEQuXBd0k7dOOMN03ngqv2DZGdBBxO9Hdl5-JItFMoXpp-E\",\"qi\""
    ":\"UcW2XDJrdGFO_OpjyTu4bgvI4WRV8pjJC8KSfRkglMcCbpM0QLZ0I3n09vYvQzS-6BjhBq8q21W0-f"
    "vRTmXHEqmWofHc7U9lD6wHsq6PvV4PXgAruWm-CugtP6JbZJcMXjNf6CWiZixhe_3eiK2QKPeu1GIQPz"
    "uPvHZe0rm9GL4\"}";

static jose_jwk *fuzz_ec, *fuzz_ed, *fuzz_rsa;
static X509_STORE *fuzz_store;

static jose_jwk *load(const char *s) {
  ct_err err;
  json_t *v = NULL;
  jose_jwk *k = NULL;
  if (ct_json_parse(s, strlen(s), 8, &v, &err) || jose_jwk_from_json(v, &k, &err)) abort();
  json_decref(v);
  return k;
}

static void fuzz_init(void) {
  if (fuzz_ec) return;
  fuzz_ec = load(FUZZ_EC_JWK);
  fuzz_ed = load(FUZZ_ED_JWK);
  fuzz_rsa = load(FUZZ_RSA_JWK);
  fuzz_store = X509_STORE_new();
}

static void fuzz_jwk(const char *s, size_t len) {
  ct_err err;
  json_t *v = NULL;
  if (ct_json_parse(s, len, JOSE_JSON_DEPTH, &v, &err)) return;
  jose_jwk *k = NULL;
  if (jose_jwk_from_json(v, &k, &err) == CT_OK) {
    json_t *pub = NULL;
    if (jose_jwk_to_json(k, &pub, &err) == CT_OK) {
      jose_jwk *again = NULL;
      /* The public export must re-import as the same key. */
      if (jose_jwk_from_json(pub, &again, &err) != CT_OK || !jose_jwk_public_equal(k, again)) {
        fprintf(stderr, "public export does not re-import: %s\n", err.msg);
        abort();
      }
      jose_jwk_free(again);
      json_decref(pub);
    }
    jose_jwk_free(k);
  }
  jose_jwks *set = NULL;
  if (jose_jwks_from_json(v, &set, &err) == CT_OK) {
    (void)jose_jwks_find(set, "kid");
    jose_jwks_free(set);
  }
  /* An empty store trusts nothing, whatever the input. */
  if (jose_x5c_verify(v, fuzz_store, &err) == CT_OK) abort();
  ct_status st = jose_jwt_check_times(v, 1700000000, 60, true, &err);
  (void)st;
  json_decref(v);
}

static void fuzz_jws(const char *s, EVP_PKEY *key) {
  ct_err err;
  json_t *hdr = NULL;
  uint8_t *payload = NULL;
  size_t len = 0;
  if (jose_jws_decode_unverified(s, &hdr, &payload, &len, &err) == CT_OK) {
    json_decref(hdr);
    free(payload);
  }
  hdr = NULL;
  payload = NULL;
  if (jose_jws_verify(s, key, NULL, &hdr, &payload, &len, &err) == CT_OK) {
    json_decref(hdr);
    free(payload);
  }
}

static void fuzz_jwe(const char *s, size_t len, const jose_jwk *key) {
  ct_err err;
  json_t *v = NULL;
  if (ct_json_parse(s, len, JOSE_JSON_DEPTH, &v, &err)) v = json_stringn(s, len);
  if (!v) return;
  uint8_t *pt = NULL;
  size_t pt_len = 0;
  if (jose_jwe_decrypt(key, v, &pt, &pt_len, &err) == CT_OK) {
    ct_wipe(pt, pt_len);
    free(pt);
  }
  json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_init();
  if (size < 1) return 0;
  /* A NUL-terminated copy: the JWS API takes C strings. */
  char *s = malloc(size);
  if (!s) return 0;
  memcpy(s, data + 1, size - 1);
  s[size - 1] = 0;
  size_t len = size - 1;
  switch (data[0] % 6) {
  case 0: fuzz_jwk(s, len); break;
  case 1: fuzz_jws(s, jose_jwk_pkey(fuzz_ec)); break;
  case 2: fuzz_jws(s, jose_jwk_pkey(fuzz_ed)); break;
  case 3: fuzz_jws(s, jose_jwk_pkey(fuzz_rsa)); break;
  case 4: fuzz_jwe(s, len, fuzz_ec); break;
  default: fuzz_jwe(s, len, fuzz_rsa); break;
  }
  free(s);
  return 0;
}
