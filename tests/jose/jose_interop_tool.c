/*
 * jose_interop_tool - drives the jose module from the command line so that an independent
 * implementation (python3-jwcrypto, see jose_interop.py) can check our output and we can check
 * theirs. Input comes on stdin, output goes to stdout; keys are JWK files.
 *
 *   jose_interop_tool jwe-encrypt PUB.jwk   < plaintext  > jwe.json
 *   jose_interop_tool jwe-decrypt PRIV.jwk  < jwe.json|compact > plaintext
 *   jose_interop_tool jws-sign ALG PRIV.jwk < payload    > compact
 *   jose_interop_tool jws-verify PUB.jwk [ALG] < compact > payload
 *   jose_interop_tool jwk-public KEY.jwk                 > public.jwk
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct_buf.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "jose.h"

static int fail(const char *what, const ct_err *err) {
  fprintf(stderr, "jose_interop_tool: %s: %s\n", what, err ? err->msg : "");
  return 1;
}

static CT_RESULT read_stdin(ct_buf *b, ct_err *err) {
  ct_buf_init(b, 64u << 20);
  uint8_t chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) CT_GUARD(ct_buf_append(b, chunk, n, err));
  CT_ENSURE(!ferror(stdin), err, CT_EIO, "reading stdin failed");
  return CT_OK;
}

static CT_RESULT read_json_file(const char *path, json_t **out, ct_err *err) {
  uint8_t *data = NULL;
  size_t len = 0;
  CT_GUARD(ct_file_read(path, 1u << 20, &data, &len, err));
  ct_status st = ct_json_parse((const char *)data, len, 16, out, err);
  ct_wipe(data, len);
  free(data);
  return st;
}

static CT_RESULT read_jwk(const char *path, jose_jwk **out, ct_err *err) {
  json_t *j = NULL;
  CT_GUARD(read_json_file(path, &j, err));
  ct_status st = jose_jwk_from_json(j, out, err);
  json_decref(j);
  return st;
}

/* Trims trailing whitespace (shell pipes add newlines). */
static void trim(ct_buf *b) {
  while (b->len && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == '\r' ||
                    b->data[b->len - 1] == ' '))
    b->data[--b->len] = 0;
}

static int cmd_jwe_encrypt(const char *pub_path) {
  ct_err err;
  json_t *pub = NULL, *jwe = NULL;
  ct_buf in;
  if (read_json_file(pub_path, &pub, &err)) return fail("reading public key", &err);
  if (read_stdin(&in, &err)) return fail("stdin", &err);
  ct_status st = jose_jwe_encrypt(pub, in.data, in.len, &jwe, &err);
  ct_buf_free_secret(&in);
  json_decref(pub);
  if (st) return fail("jwe-encrypt", &err);
  char *s = json_dumps(jwe, JSON_COMPACT); /* keeps Trustee's member order */
  json_decref(jwe);
  if (!s) return fail("serialising", NULL);
  fputs(s, stdout);
  free(s);
  return 0;
}

static int cmd_jwe_decrypt(const char *priv_path) {
  ct_err err;
  jose_jwk *k = NULL;
  ct_buf in;
  if (read_jwk(priv_path, &k, &err)) return fail("reading private key", &err);
  if (read_stdin(&in, &err)) return fail("stdin", &err);
  trim(&in);
  json_t *jwe = NULL;
  ct_status st = CT_OK;
  if (in.len && (in.data[0] == '{' || in.data[0] == '"'))
    st = ct_json_parse((const char *)in.data, in.len, 16, &jwe, &err);
  else
    jwe = json_stringn((const char *)in.data, in.len); /* bare compact serialization */
  ct_buf_free(&in);
  if (st || !jwe) {
    jose_jwk_free(k);
    return fail("parsing the JWE", &err);
  }
  uint8_t *pt = NULL;
  size_t len = 0;
  st = jose_jwe_decrypt(k, jwe, &pt, &len, &err);
  json_decref(jwe);
  jose_jwk_free(k);
  if (st) return fail("jwe-decrypt", &err);
  fwrite(pt, 1, len, stdout);
  ct_wipe(pt, len);
  free(pt);
  return 0;
}

static int cmd_jws_sign(const char *alg, const char *priv_path) {
  ct_err err;
  jose_jwk *k = NULL;
  ct_buf in;
  if (read_jwk(priv_path, &k, &err)) return fail("reading private key", &err);
  if (read_stdin(&in, &err)) return fail("stdin", &err);
  json_t *extra = json_pack("{s:s}", "typ", "JWT");
  char *tok = NULL;
  ct_status st = jose_jws_sign(alg, jose_jwk_pkey(k), extra, in.data, in.len, &tok, &err);
  json_decref(extra);
  ct_buf_free(&in);
  jose_jwk_free(k);
  if (st) return fail("jws-sign", &err);
  fputs(tok, stdout);
  free(tok);
  return 0;
}

static int cmd_jws_verify(const char *pub_path, const char *alg) {
  ct_err err;
  jose_jwk *k = NULL;
  ct_buf in;
  if (read_jwk(pub_path, &k, &err)) return fail("reading public key", &err);
  if (read_stdin(&in, &err)) return fail("stdin", &err);
  trim(&in);
  uint8_t *payload = NULL;
  size_t len = 0;
  ct_status st = jose_jws_verify((const char *)in.data, jose_jwk_pkey(k), alg, NULL, &payload, &len,
                                 &err);
  ct_buf_free(&in);
  jose_jwk_free(k);
  if (st) return fail("jws-verify", &err);
  fwrite(payload, 1, len, stdout);
  free(payload);
  return 0;
}

static int cmd_jwk_public(const char *path) {
  ct_err err;
  jose_jwk *k = NULL;
  json_t *pub = NULL;
  if (read_jwk(path, &k, &err)) return fail("reading key", &err);
  ct_status st = jose_jwk_to_json(k, &pub, &err);
  jose_jwk_free(k);
  if (st) return fail("jwk-public", &err);
  char *s = json_dumps(pub, JSON_COMPACT);
  json_decref(pub);
  fputs(s, stdout);
  free(s);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "jwe-encrypt") == 0) return cmd_jwe_encrypt(argv[2]);
  if (argc == 3 && strcmp(argv[1], "jwe-decrypt") == 0) return cmd_jwe_decrypt(argv[2]);
  if (argc == 4 && strcmp(argv[1], "jws-sign") == 0) return cmd_jws_sign(argv[2], argv[3]);
  if ((argc == 3 || argc == 4) && strcmp(argv[1], "jws-verify") == 0)
    return cmd_jws_verify(argv[2], argc == 4 ? argv[3] : NULL);
  if (argc == 3 && strcmp(argv[1], "jwk-public") == 0) return cmd_jwk_public(argv[2]);
  fprintf(stderr, "usage: %s jwe-encrypt PUB | jwe-decrypt PRIV | jws-sign ALG PRIV | "
                  "jws-verify PUB [ALG] | jwk-public KEY\n", argv[0]);
  return 2;
}
