/*
 * initdata.c - Confidential Containers init-data: parse, digest, claims, TEE field binding and
 * the kata annotation encoding (base64 of gzip).
 */
#include "initdata.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "toml.h"

/* serde_json's own recursion limit; the policy data is generated, not hand-written. */
#define INITDATA__POLICY_JSON_DEPTH 128

void initdata_free(initdata *d) {
  if (!d) return;
  free(d->version);
  free(d->algorithm);
  json_decref(d->data);
  free(d);
}

CT_RESULT initdata_parse(const char *toml_text, size_t len, initdata **out, ct_err *err) {
  CT_ENSURE(len <= INITDATA_MAX_SIZE, err, CT_ELIMIT, "init-data: document of %zu bytes exceeds %u",
            len, INITDATA_MAX_SIZE);
  json_t *doc = NULL;
  ct_status st = toml_parse(toml_text, len, &doc, err);
  if (st) {
    ct_err_prefix(err, "init-data: ");
    return st;
  }
  initdata *d = calloc(1, sizeof *d);
  if (!d) {
    json_decref(doc);
    return ct_fail(err, CT_ENOMEM, "init-data: out of memory");
  }
  const char *version = NULL, *algorithm = NULL;
  json_t *data = NULL;
  CT_GUARD_GOTO(st, ct_json_get_string(doc, "version", "init-data", &version, err), fail);
  CT_GUARD_GOTO(st, ct_json_get_string(doc, "algorithm", "init-data", &algorithm, err), fail);
  CT_GUARD_GOTO(st, ct_json_get_object(doc, "data", "init-data", &data, err), fail);
  const char *name;
  json_t *value;
  json_object_foreach(data, name, value) {
    CT_ENSURE_GOTO(st, json_is_string(value), fail, err, CT_EINVAL,
                   "init-data: data entry \"%.64s\" must be a string", name);
  }
  st = ct_digest(algorithm, toml_text, len, d->digest, &d->digest_len, err);
  if (st) {
    st = ct_fail(err, CT_EINVAL, "init-data: unsupported algorithm \"%.32s\" (expected sha256, "
                 "sha384 or sha512)", algorithm);
    goto fail;
  }
  CT_GUARD_GOTO(st, ct_strdup(version, &d->version, err), fail);
  CT_GUARD_GOTO(st, ct_strdup(algorithm, &d->algorithm, err), fail);
  d->data = json_incref(data);
  json_decref(doc);
  *out = d;
  return CT_OK;
fail:
  json_decref(doc);
  initdata_free(d);
  return st;
}

/* Trustee's extract_policy_data: the JSON text from the '{' of the first "policy_data := {" to
 * the end of the policy; NULL when absent or not exactly one JSON value. */
static json_t *initdata__policy_data(const char *rego, size_t len) {
  static const char pat[] = "policy_data := {";
  const char *at = memmem(rego, len, pat, sizeof pat - 1);
  if (!at) return NULL;
  const char *json = at + sizeof pat - 2;
  json_t *v = NULL;
  ct_err ignored;
  if (ct_json_parse(json, len - (size_t)(json - rego), INITDATA__POLICY_JSON_DEPTH, &v, &ignored))
    return NULL;
  return v;
}

CT_RESULT initdata_claims(const initdata *d, json_t **claims, ct_err *err) {
  CT_ENSURE(d && json_is_object(d->data), err, CT_EINVAL, "init-data: no data to derive claims from");
  json_t *c = json_deep_copy(d->data);
  if (!c) return ct_fail(err, CT_ENOMEM, "init-data: out of memory");
  static const char *const tomls[] = {"cdh.toml", "aa.toml"};
  for (size_t i = 0; i < sizeof tomls / sizeof tomls[0]; i++) {
    json_t *s = json_object_get(c, tomls[i]);
    if (!json_is_string(s)) continue;
    json_t *parsed = NULL;
    ct_err ignored;
    if (toml_parse(json_string_value(s), json_string_length(s), &parsed, &ignored) != CT_OK) continue;
    if (json_object_set_new(c, tomls[i], parsed) != 0) goto oom;
  }
  json_t *rego = json_object_get(c, "policy.rego");
  if (json_is_string(rego)) {
    json_t *pd = initdata__policy_data(json_string_value(rego), json_string_length(rego));
    if (pd) {
      if (json_object_del(c, "policy.rego") != 0 || json_object_set_new(c, "agent_policy_claims", pd) != 0)
        goto oom;
    }
  }
  *claims = c;
  return CT_OK;
oom:
  json_decref(c);
  return ct_fail(err, CT_ENOMEM, "init-data: out of memory");
}

void initdata_regularize(const uint8_t *digest, size_t digest_len, uint8_t *out, size_t out_len) {
  size_t n = digest_len < out_len ? digest_len : out_len;
  if (n) memcpy(out, digest, n);
  if (out_len > n) memset(out + n, 0, out_len - n);
}

CT_RESULT initdata_pcr8(const uint8_t *digest, size_t digest_len, uint8_t out[32], ct_err *err) {
  CT_ENSURE(digest_len == 32, err, CT_EINVAL,
            "init-data: PCR8 binding needs a 32-byte (sha256) digest, got %zu bytes", digest_len);
  uint8_t buf[64] = {0};
  memcpy(buf + 32, digest, 32);
  ct_sha256(buf, sizeof buf, out);
  return CT_OK;
}

/* Inflates one gzip member; the output may not exceed INITDATA_MAX_SIZE and nothing may follow
 * the member. */
static CT_RESULT initdata__gunzip(const uint8_t *in, size_t in_len, char **out, size_t *out_len,
                                  ct_err *err) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
    return ct_fail(err, CT_ENOMEM, "init-data annotation: cannot initialise zlib");
  ct_buf b;
  ct_buf_init(&b, INITDATA_MAX_SIZE);
  ct_status st = CT_OK;
  uint8_t chunk[16384];
  zs.next_in = (Bytef *)(uintptr_t)in;
  zs.avail_in = (uInt)in_len;
  int zr = Z_OK;
  while (zr != Z_STREAM_END) {
    zs.next_out = chunk;
    zs.avail_out = sizeof chunk;
    zr = inflate(&zs, Z_NO_FLUSH);
    if (zr != Z_OK && zr != Z_STREAM_END) {
      if (zr == Z_BUF_ERROR && zs.avail_in == 0)
        st = ct_fail(err, CT_EINVAL, "init-data annotation: truncated gzip stream");
      else if (zr == Z_MEM_ERROR)
        st = ct_fail(err, CT_ENOMEM, "init-data annotation: out of memory in zlib");
      else
        st = ct_fail(err, CT_EINVAL, "init-data annotation: not valid gzip (%s)",
                     zs.msg ? zs.msg : "corrupt data");
      goto out;
    }
    size_t produced = sizeof chunk - zs.avail_out;
    if (b.len + produced > INITDATA_MAX_SIZE) {
      st = ct_fail(err, CT_ELIMIT, "init-data annotation: decompressed size exceeds %u bytes",
                   INITDATA_MAX_SIZE);
      goto out;
    }
    if (produced) CT_GUARD_GOTO(st, ct_buf_append(&b, chunk, produced, err), out);
  }
  if (zs.avail_in != 0) {
    st = ct_fail(err, CT_EINVAL, "init-data annotation: %u unexpected bytes after the gzip stream",
                 zs.avail_in);
    goto out;
  }
  if (!b.data) {
    *out = calloc(1, 1);
    if (!*out) {
      st = ct_fail(err, CT_ENOMEM, "init-data annotation: out of memory");
      goto out;
    }
    *out_len = 0;
  } else {
    *out = (char *)ct_buf_take(&b, out_len);
  }
out:
  inflateEnd(&zs);
  ct_buf_free(&b);
  return st;
}

CT_RESULT initdata_decode_annotation(const char *b64, char **out, size_t *out_len, ct_err *err) {
  CT_ENSURE(b64 != NULL, err, CT_EINVAL, "init-data annotation: missing");
  size_t n = strnlen(b64, 4 * (size_t)INITDATA_MAX_SIZE + 1);
  CT_ENSURE(n <= 4 * (size_t)INITDATA_MAX_SIZE / 3 + 4096, err, CT_ELIMIT,
            "init-data annotation: longer than the %u-byte limit allows", INITDATA_MAX_SIZE);
  /* base64 tools wrap lines; whitespace carries no data. */
  char *clean = malloc(n + 1);
  if (!clean) return ct_fail(err, CT_ENOMEM, "init-data annotation: out of memory");
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (!strchr(" \t\r\n", b64[i])) clean[m++] = b64[i];
  clean[m] = '\0';
  uint8_t *gz = NULL;
  size_t gz_len = 0;
  ct_status st = CT_OK;
  if (m == 0) {
    st = ct_fail(err, CT_EINVAL, "init-data annotation: empty");
  } else {
    st = ct_b64_decode(CT_B64_STD, clean, m, &gz, &gz_len, err);
    if (st) ct_err_prefix(err, "init-data annotation: ");
  }
  free(clean);
  if (st) return st;
  st = initdata__gunzip(gz, gz_len, out, out_len, err);
  free(gz);
  return st;
}

CT_RESULT initdata_encode_annotation(const char *toml_text, size_t len, char **out, ct_err *err) {
  CT_ENSURE(len <= INITDATA_MAX_SIZE, err, CT_ELIMIT, "init-data: document of %zu bytes exceeds %u",
            len, INITDATA_MAX_SIZE);
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  /* 16 + MAX_WBITS: a gzip wrapper; zlib writes mtime 0 and no name, so the output is stable. */
  if (deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return ct_fail(err, CT_ENOMEM, "init-data annotation: cannot initialise zlib");
  uLong cap = deflateBound(&zs, (uLong)len);
  uint8_t *gz = malloc(cap ? cap : 1);
  if (!gz) {
    deflateEnd(&zs);
    return ct_fail(err, CT_ENOMEM, "init-data annotation: out of memory");
  }
  zs.next_in = (Bytef *)(uintptr_t)toml_text;
  zs.avail_in = (uInt)len;
  zs.next_out = gz;
  zs.avail_out = (uInt)cap;
  int zr = deflate(&zs, Z_FINISH);
  size_t gz_len = (size_t)zs.total_out;
  deflateEnd(&zs);
  ct_status st = CT_OK;
  if (zr != Z_STREAM_END)
    st = ct_fail(err, CT_EINTERNAL, "init-data annotation: gzip did not finish (zlib %d)", zr);
  else
    st = ct_b64_encode(CT_B64_STD, gz, gz_len, out, err);
  free(gz);
  return st;
}
