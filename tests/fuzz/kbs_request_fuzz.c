/*
 * Drives the KBS request handlers in-process (no sockets) with arbitrary paths, methods,
 * headers and bodies. Input: byte 0 picks the method and whether to present the session cookie
 * obtained from a real /auth; then "PATH\nAUTHORIZATION\nBODY". Every response must be a
 * well-formed status; nothing may crash, leak or read out of bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ct_log.h"
#include "kbs_config.h"
#include "kbs_server.h"
#include "toml.h"

static kbs_config *cfg;
static kbs_server *srv;
static char cookie[400];

typedef struct fuzz_headers {
  const char *cookie;
  const char *authorization;
} fuzz_headers;

static const char *fuzz_header(const kbs_http_request *req, const char *name) {
  const fuzz_headers *h = req->native;
  if (!strcasecmp(name, "Cookie")) return h->cookie;
  if (!strcasecmp(name, "Authorization")) return h->authorization;
  return NULL;
}

static void run(kbs_http_method m, const char *path, const char *auth, bool with_cookie, const uint8_t *body,
                size_t len, kbs_http_response *resp) {
  fuzz_headers h = {with_cookie ? cookie : NULL, auth};
  kbs_http_request req = {.method = m, .uri = path, .path = (char *)path, .path_len = strlen(path), .body = body,
                          .body_len = len, .header = fuzz_header, .native = &h};
  const char *q = strchr(path, '?');
  char *p = NULL;
  if (q) {
    p = strndup(path, (size_t)(q - path));
    req.path = p;
    req.path_len = strlen(p);
    req.query = q + 1;
  }
  ct_buf_init(&resp->body, 1u << 20);
  resp->status = 500;
  resp->set_cookie[0] = 0;
  kbs_server_handle(srv, &req, resp);
  free(p);
}

static void init(void) {
  ct_log_set_level(CT_LOG_ERROR);
  const char *text = "[http_server]\ninsecure_http = true\n[admin]\nauthorization_mode = \"InsecureAllowAll\"\n"
                     "[attestation_token]\ninsecure_header_jwk = true\n[attestation_service]\ntype = \"coco_as_builtin\"\n"
                     "enable_sample_tee = true\n"
                     "[[plugins]]\nname = \"resource\"\n";
  json_t *doc = NULL;
  ct_err err;
  if (toml_parse(text, strlen(text), &doc, &err) != CT_OK || kbs_config_from_json(doc, &cfg, &err) != CT_OK ||
      kbs_server_create(cfg, &srv, &err) != CT_OK)
    abort();
  json_decref(doc);
  kbs_http_response r;
  const char *auth = "{\"version\":\"0.4.0\",\"tee\":\"sample\",\"extra-params\":\"\"}";
  run(KBS_POST, "/kbs/v0/auth", NULL, false, (const uint8_t *)auth, strlen(auth), &r);
  if (r.status != 200) abort();
  const char *c = r.set_cookie;
  size_t n = strcspn(c, ";");
  memcpy(cookie, c, n < sizeof cookie - 1 ? n : sizeof cookie - 1);
  ct_buf_free(&r.body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!srv) init();
  if (size < 1) return 0;
  static const kbs_http_method methods[] = {KBS_GET, KBS_POST, KBS_PUT, KBS_DELETE, KBS_OTHER};
  kbs_http_method m = methods[data[0] % 5];
  bool with_cookie = data[0] & 8;
  char *text = malloc(size);
  memcpy(text, data + 1, size - 1);
  text[size - 1] = 0;
  char *path = text, *auth = NULL, *body = NULL;
  char *nl = memchr(text, '\n', size - 1);
  if (nl) {
    *nl = 0;
    auth = nl + 1;
    char *nl2 = memchr(auth, '\n', (size_t)(text + size - 1 - auth));
    if (nl2) {
      *nl2 = 0;
      body = nl2 + 1;
    }
  }
  size_t body_len = body ? (size_t)(text + size - 1 - body) : 0;
  kbs_http_response r;
  run(m, path, auth && *auth ? auth : NULL, with_cookie, (const uint8_t *)(body ? body : ""), body_len, &r);
  if (r.status < 200 || r.status > 599) abort();
  ct_buf_free(&r.body);
  free(text);
  return 0;
}
