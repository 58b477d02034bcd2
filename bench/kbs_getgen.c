/*
 * kbs_getgen - resource GETs per second: N concurrent clients, each attests once (sample TEE,
 * over one TLS keep-alive connection) and then GETs the resource with its session cookie for D
 * seconds, decrypting every 16th reply to check it. Used by scripts/bench-storage to compare
 * storage backends (the GET path reads the backend on every request unless a cache answers).
 *
 *   kbs_getgen HOST:PORT CA_PEM RESOURCE_PATH EXPECTED_PLAINTEXT CLIENTS SECONDS
 *
 * The HTTP/TLS client is the one of kbs_loadgen (a purpose-built HTTP/1.1 client on OpenSSL).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_json.h"
#include "jose.h"
#include "kbc.h"

#define MAX_CLIENTS 256
#define MAX_SAMPLES (1u << 20)
#define MAX_RESPONSE (256u << 10)

typedef struct bench {
  struct sockaddr_in addr;
  SSL_CTX *ssl;
  const char *path, *expected;
  double seconds;
  atomic_uint n;
  atomic_ulong errors;
  double *lat_ms;
} bench;

typedef struct conn {
  int fd;
  SSL *ssl;
  char cookie[400];
  char buf[MAX_RESPONSE];
  size_t have;
} conn;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int conn_open(bench *b, conn *c) {
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(c->fd, (struct sockaddr *)&b->addr, sizeof b->addr) != 0) return -1;
  c->ssl = SSL_new(b->ssl);
  SSL_set_fd(c->ssl, c->fd);
  SSL_set1_host(c->ssl, "127.0.0.1");
  c->have = 0;
  return SSL_connect(c->ssl) == 1 ? 0 : -1;
}

static void conn_close(conn *c) {
  if (c->ssl) SSL_free(c->ssl);
  if (c->fd >= 0) close(c->fd);
  c->ssl = NULL;
  c->fd = -1;
}

/* One request/response on the keep-alive connection. Returns the status (or -1); *body points
 * into c->buf and stays valid until the next call. */
static int http(conn *c, const char *method, const char *path, const char *body, const char **resp_body,
                size_t *resp_len) {
  char head[1024];
  size_t blen = body ? strlen(body) : 0;
  int n = snprintf(head, sizeof head,
                   "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                   "%s%s%s\r\n",
                   method, path, blen, c->cookie[0] ? "Cookie: " : "", c->cookie, c->cookie[0] ? "\r\n" : "");
  if (SSL_write(c->ssl, head, n) != n) return -1;
  if (blen && SSL_write(c->ssl, body, (int)blen) != (int)blen) return -1;
  size_t used = c->have, hdr_end = 0;
  for (;;) {
    char *e = used >= 4 ? memmem(c->buf, used, "\r\n\r\n", 4) : NULL;
    if (e) {
      hdr_end = (size_t)(e - c->buf) + 4;
      break;
    }
    int r = SSL_read(c->ssl, c->buf + used, (int)(sizeof c->buf - used - 1));
    if (r <= 0) return -1;
    used += (size_t)r;
  }
  c->buf[hdr_end - 1] = 0;
  int status = atoi(c->buf + 9);
  size_t clen = 0;
  for (char *line = strstr(c->buf, "\r\n"); line && line + 2 < c->buf + hdr_end; line = strstr(line + 2, "\r\n")) {
    char *h = line + 2;
    if (!strncasecmp(h, "Content-Length:", 15)) clen = strtoul(h + 15, NULL, 10);
    else if (!strncasecmp(h, "Set-Cookie:", 11)) {
      char *v = h + 11;
      while (*v == ' ') v++;
      size_t k = strcspn(v, ";\r");
      if (k < sizeof c->cookie) {
        memcpy(c->cookie, v, k);
        c->cookie[k] = 0;
      }
    }
  }
  if (hdr_end + clen >= sizeof c->buf) return -1;
  while (used < hdr_end + clen) {
    int r = SSL_read(c->ssl, c->buf + used, (int)(sizeof c->buf - used - 1));
    if (r <= 0) return -1;
    used += (size_t)r;
  }
  /* Keep what belongs to no response yet (none with strict request/response), then expose the body. */
  c->have = used - hdr_end - clen;
  static _Thread_local char body_copy[MAX_RESPONSE];
  memcpy(body_copy, c->buf + hdr_end, clen);
  body_copy[clen] = 0;
  memmove(c->buf, c->buf + hdr_end + clen, c->have);
  *resp_body = body_copy;
  *resp_len = clen;
  return status;
}

static CT_RESULT sample_evidence_json(const char *nonce, json_t *teekey, char **attest_body, ct_err *err) {
  uint8_t rd[48];
  CT_GUARD(kbc_report_data(nonce, teekey, rd, err));
  char *b64 = NULL;
  CT_GUARD(ct_b64_encode(CT_B64_STD, rd, sizeof rd, &b64, err));
  json_t *a = json_pack("{s:{s:s, s:O}, s:{s:{s:s, s:s}, s:s}}", "runtime-data", "nonce", nonce, "tee-pubkey", teekey,
                        "tee-evidence", "primary_evidence", "svn", "1", "report_data", b64, "additional_evidence", "");
  free(b64);
  CT_ENSURE(a, err, CT_ENOMEM, "out of memory");
  ct_status st = ct_json_dump(a, attest_body, err);
  json_decref(a);
  return st;
}

/* Auth and attest once; the connection keeps the session cookie. */
static int handshake(conn *c, jose_jwk **key_out) {
  const char *body;
  size_t len;
  ct_err err;
  c->cookie[0] = 0;
  if (http(c, "POST", "/kbs/v0/auth", "{\"version\":\"0.4.0\",\"tee\":\"sample\",\"extra-params\":\"\"}", &body,
           &len) != 200)
    return -1;
  json_t *challenge = json_loadb(body, len, 0, NULL);
  const char *nonce = json_string_value(json_object_get(challenge, "nonce"));
  jose_jwk *key = NULL;
  json_t *pub = NULL, *teekey = NULL;
  char *attest = NULL;
  int rc = -1;
  if (!nonce || jose_jwk_generate("ECDH-ES+A256KW", "P-256", &key, &err) != CT_OK ||
      jose_jwk_to_json(key, &pub, &err) != CT_OK)
    goto done;
  teekey = json_pack("{s:s, s:O, s:s, s:O, s:O}", "kty", "EC", "crv", json_object_get(pub, "crv"), "alg",
                     "ECDH-ES+A256KW", "x", json_object_get(pub, "x"), "y", json_object_get(pub, "y"));
  if (!teekey || sample_evidence_json(nonce, teekey, &attest, &err) != CT_OK) goto done;
  if (http(c, "POST", "/kbs/v0/attest", attest, &body, &len) != 200) goto done;
  *key_out = key;
  key = NULL;
  rc = 0;
done:
  free(attest);
  json_decref(teekey);
  json_decref(pub);
  jose_jwk_free(key);
  json_decref(challenge);
  return rc;
}

static int get(bench *b, conn *c, jose_jwk *key, bool check) {
  const char *body;
  size_t len;
  char path[512];
  snprintf(path, sizeof path, "/kbs/v0/resource/%s", b->path);
  if (http(c, "GET", path, NULL, &body, &len) != 200) return -1;
  if (!check) return 0;
  ct_err err;
  json_t *jwe = json_loadb(body, len, 0, NULL);
  uint8_t *pt = NULL;
  size_t pt_len = 0;
  int rc = jwe && jose_jwe_decrypt(key, jwe, &pt, &pt_len, &err) == CT_OK && pt_len == strlen(b->expected) &&
                   !memcmp(pt, b->expected, pt_len)
               ? 0
               : -1;
  free(pt);
  json_decref(jwe);
  return rc;
}

static void *client(void *arg) {
  bench *b = arg;
  conn *c = calloc(1, sizeof *c);
  c->fd = -1;
  jose_jwk *key = NULL;
  if (conn_open(b, c) != 0 || handshake(c, &key) != 0) {
    atomic_fetch_add(&b->errors, 1);
    conn_close(c);
    free(c);
    return NULL;
  }
  double end = now_s() + b->seconds;
  for (unsigned k = 0; now_s() < end; k++) {
    double t0 = now_s();
    if (get(b, c, key, k % 16 == 0) != 0) {
      atomic_fetch_add(&b->errors, 1);
      continue;
    }
    unsigned i = atomic_fetch_add(&b->n, 1);
    if (i < MAX_SAMPLES) b->lat_ms[i] = (now_s() - t0) * 1000.0;
  }
  jose_jwk_free(key);
  conn_close(c);
  free(c);
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: kbs_getgen HOST:PORT CA_PEM RESOURCE_PATH EXPECTED_PLAINTEXT CLIENTS SECONDS\n");
    return 2;
  }
  bench b = {.path = argv[3], .expected = argv[4], .seconds = atof(argv[6])};
  int clients = atoi(argv[5]);
  char host[64];
  const char *colon = strrchr(argv[1], ':');
  if (clients < 1 || clients > MAX_CLIENTS || b.seconds <= 0 || !colon || (size_t)(colon - argv[1]) >= sizeof host)
    return 2;
  memcpy(host, argv[1], (size_t)(colon - argv[1]));
  host[colon - argv[1]] = 0;
  b.addr.sin_family = AF_INET;
  b.addr.sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &b.addr.sin_addr) != 1) return 2;
  b.ssl = SSL_CTX_new(TLS_client_method());
  if (SSL_CTX_load_verify_locations(b.ssl, argv[2], NULL) != 1) {
    fprintf(stderr, "kbs_getgen: cannot load %s\n", argv[2]);
    return 1;
  }
  SSL_CTX_set_verify(b.ssl, SSL_VERIFY_PEER, NULL);
  b.lat_ms = calloc(MAX_SAMPLES, sizeof *b.lat_ms);
  pthread_t th[MAX_CLIENTS];
  double t0 = now_s();
  for (int i = 0; i < clients; i++) pthread_create(&th[i], NULL, client, &b);
  for (int i = 0; i < clients; i++) pthread_join(th[i], NULL);
  double elapsed = now_s() - t0;
  unsigned n = atomic_load(&b.n);
  unsigned kept = n < MAX_SAMPLES ? n : MAX_SAMPLES;
  qsort(b.lat_ms, kept, sizeof *b.lat_ms, cmp_double);
  double p50 = kept ? b.lat_ms[kept / 2] : 0, p99 = kept ? b.lat_ms[(size_t)(kept * 0.99)] : 0;
  printf("clients=%d seconds=%.1f gets=%u errors=%lu gets_per_s=%.0f p50_ms=%.2f p99_ms=%.2f\n", clients, elapsed, n,
         atomic_load(&b.errors), n / elapsed, p50, p99);
  free(b.lat_ms);
  SSL_CTX_free(b.ssl);
  return atomic_load(&b.errors) ? 1 : 0;
}
