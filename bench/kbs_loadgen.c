/*
 * kbs_loadgen - N concurrent clients, each doing the full sample RCAR handshake (POST /auth,
 * POST /attest with evidence bound to a fresh TEE key) and a resource GET decrypted from its JWE,
 * per iteration, over one TLS keep-alive connection, for D seconds.
 *
 *   kbs_loadgen HOST:PORT CA_PEM RESOURCE_PATH EXPECTED_PLAINTEXT CLIENTS SECONDS [--snp DIR] [--no-get]
 *               [--rate N] [--snp-presign N]
 *   kbs_loadgen --snp-init DIR CHIPS
 *
 * --snp: synthetic-SNP mode (loadgen_snp.h): the TEE is "snp" and each /attest carries a report
 * freshly signed by the VCEK of one of the TEST-ONLY chips in DIR (made by --snp-init).
 * --snp-presign N: before the run, precompute N signature nonces (on all cores) so that a report
 * costs no P-384 scalar multiplication during it; reports beyond N are signed the ordinary way
 * and counted (snp_fallback_signatures=).
 * --no-get: an iteration is the handshake alone (/auth + /attest).
 * --rate N: offer N iterations/s in total instead of as many as the KBS answers (the soak test).
 *
 * A purpose-built HTTP/1.1 client on OpenSSL keeps the load generator's own CPU low: it shares
 * the machine with the KBS it measures. Protocol pieces come from the project's libraries
 * (kbc_report_data, jose). Prints handshakes/s, whole-iteration latency percentiles and the CPU
 * it spent per handshake during the run (set-up and precomputation excluded).
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ct_codec.h"
#include "ct_json.h"
#include "jose.h"
#include "kbc.h"
#include "loadgen_snp.h"

#define MAX_CLIENTS 256
#define MAX_SAMPLES (1u << 20)
#define MAX_RESPONSE (256u << 10)
/* Each client cycles through this many P-256 TEE keys made before the run: the KBS imports and
 * encrypts to the key of every request exactly as for a fresh one (it keeps nothing per key), and
 * the load generator, which shares the cores with it, saves a key generation per iteration. */
#define TEE_KEYS_PER_CLIENT 16

typedef struct bench {
  struct sockaddr_in addr;
  SSL_CTX *ssl;
  const char *path, *expected;
  double seconds;
  loadgen_snp *snp; /* NULL: sample evidence */
  double rate;      /* total handshakes/s to offer; 0 = as fast as the KBS answers */
  int clients;
  bool get;         /* an iteration ends with the resource GET */
  atomic_uint next_id;
  atomic_uint n;
  atomic_ulong errors;
  double *lat_ms;
} bench;

typedef struct tee_key {
  jose_jwk *key;
  json_t *teekey; /* the runtime data's tee-pubkey */
} tee_key;

typedef struct conn {
  unsigned id;
  tee_key keys[TEE_KEYS_PER_CLIENT];
  unsigned next_key;
  int fd;
  SSL *ssl;
  char cookie[400];
  char buf[MAX_RESPONSE];
  size_t have; /* bytes read ahead of the current response */
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
  /* Head and body in one TLS record, as curl and hyper (Trustee's client) send a small request:
   * two records would cost both sides a second write and often a second read wake-up. */
  static _Thread_local char req[16384];
  size_t blen = body ? strlen(body) : 0;
  int n = snprintf(req, sizeof req,
                   "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                   "%s%s%s\r\n",
                   method, path, blen, c->cookie[0] ? "Cookie: " : "", c->cookie, c->cookie[0] ? "\r\n" : "");
  if (n < 0 || (size_t)n >= sizeof req) return -1;
  if (blen && blen < sizeof req - (size_t)n) {
    memcpy(req + n, body, blen);
    n += (int)blen;
    blen = 0;
  }
  if (SSL_write(c->ssl, req, n) != n) return -1;
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

/* One full iteration: auth, attest, get, decrypt. */
static int iteration(bench *b, conn *c) {
  const char *body;
  size_t len;
  ct_err err;
  c->cookie[0] = 0;
  const char *auth = b->snp ? "{\"version\":\"0.4.0\",\"tee\":\"snp\",\"extra-params\":\"\"}"
                            : "{\"version\":\"0.4.0\",\"tee\":\"sample\",\"extra-params\":\"\"}";
  if (http(c, "POST", "/kbs/v0/auth", auth, &body, &len) != 200) return -1;
  json_t *challenge = json_loadb(body, len, 0, NULL);
  const char *nonce = json_string_value(json_object_get(challenge, "nonce"));
  const tee_key *tk = &c->keys[c->next_key++ % TEE_KEYS_PER_CLIENT];
  jose_jwk *key = tk->key;
  json_t *teekey = tk->teekey;
  char *attest = NULL;
  int rc = -1;
  if (!nonce) goto done;
  if (b->snp) {
    uint8_t rd[48];
    if (kbc_report_data(nonce, teekey, rd, &err) != CT_OK ||
        !(attest = loadgen_snp_attest_body(b->snp, c->id, nonce, teekey, rd)))
      goto done;
  } else if (sample_evidence_json(nonce, teekey, &attest, &err) != CT_OK) {
    goto done;
  }
  if (http(c, "POST", "/kbs/v0/attest", attest, &body, &len) != 200) goto done;
  if (!b->get) {
    rc = 0;
    goto done;
  }
  char path[512];
  snprintf(path, sizeof path, "/kbs/v0/resource/%s", b->path);
  if (http(c, "GET", path, NULL, &body, &len) != 200) goto done;
  json_t *jwe = json_loadb(body, len, 0, NULL);
  uint8_t *pt = NULL;
  size_t pt_len = 0;
  if (jwe && jose_jwe_decrypt(key, jwe, &pt, &pt_len, &err) == CT_OK && pt_len == strlen(b->expected) &&
      !memcmp(pt, b->expected, pt_len))
    rc = 0;
  free(pt);
  json_decref(jwe);
done:
  free(attest);
  json_decref(challenge);
  return rc;
}

static int tee_keys_make(conn *c) {
  ct_err err;
  for (unsigned i = 0; i < TEE_KEYS_PER_CLIENT; i++) {
    json_t *pub = NULL;
    tee_key *k = &c->keys[i];
    if (jose_jwk_generate("ECDH-ES+A256KW", "P-256", &k->key, &err) != CT_OK ||
        jose_jwk_to_json(k->key, &pub, &err) != CT_OK) {
      fprintf(stderr, "kbs_loadgen: TEE key: %s\n", err.msg);
      return -1;
    }
    k->teekey = json_pack("{s:s, s:O, s:s, s:O, s:O}", "kty", "EC", "crv", json_object_get(pub, "crv"), "alg",
                          "ECDH-ES+A256KW", "x", json_object_get(pub, "x"), "y", json_object_get(pub, "y"));
    json_decref(pub);
    if (!k->teekey) return -1;
  }
  return 0;
}

static void tee_keys_free(conn *c) {
  for (unsigned i = 0; i < TEE_KEYS_PER_CLIENT; i++) {
    jose_jwk_free(c->keys[i].key);
    json_decref(c->keys[i].teekey);
  }
}

static void *client(void *arg) {
  bench *b = arg;
  conn *c = calloc(1, sizeof *c);
  c->fd = -1;
  c->id = atomic_fetch_add(&b->next_id, 1);
  if (tee_keys_make(c) != 0 || conn_open(b, c) != 0) {
    atomic_fetch_add(&b->errors, 1);
    conn_close(c);
    tee_keys_free(c);
    free(c);
    return NULL;
  }
  double start = now_s(), end = start + b->seconds;
  /* --rate: each client keeps its share of the total rate on a fixed schedule (staggered so the
   * clients do not start in step); one that falls behind does not burst to catch up. */
  double interval = b->rate > 0 ? b->clients / b->rate : 0, next = start + interval * c->id / b->clients;
  while (now_s() < end) {
    if (interval > 0) {
      double wait = next - now_s();
      if (wait > 0) {
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
      } else if (wait < -1.0) {
        next = now_s();
      }
      next += interval;
      if (now_s() >= end) break;
    }
    double t0 = now_s();
    if (iteration(b, c) != 0) {
      atomic_fetch_add(&b->errors, 1);
      conn_close(c);
      if (conn_open(b, c) != 0) break;
      continue;
    }
    unsigned i = atomic_fetch_add(&b->n, 1);
    if (i < MAX_SAMPLES) b->lat_ms[i] = (now_s() - t0) * 1000.0;
  }
  conn_close(c);
  tee_keys_free(c);
  free(c);
  return NULL;
}

/* Process CPU (user + system) in seconds. */
static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "--snp-init")) return loadgen_snp_init(argv[2], atoi(argv[3]));
  if (argc < 7) {
    fprintf(stderr, "usage: kbs_loadgen HOST:PORT CA_PEM RESOURCE_PATH EXPECTED_PLAINTEXT CLIENTS SECONDS [--snp DIR] "
                    "[--no-get] [--rate N] [--snp-presign N]\n       kbs_loadgen --snp-init DIR CHIPS\n");
    return 2;
  }
  bench b = {.path = argv[3], .expected = argv[4], .seconds = atof(argv[6]), .get = true};
  double presign = 0;
  for (int i = 7; i < argc; i++) {
    if (!strcmp(argv[i], "--snp") && i + 1 < argc) {
      if (!(b.snp = loadgen_snp_open(argv[++i]))) return 1;
    } else if (!strcmp(argv[i], "--no-get")) {
      b.get = false;
    } else if (!strcmp(argv[i], "--rate") && i + 1 < argc) {
      b.rate = atof(argv[++i]);
    } else if (!strcmp(argv[i], "--snp-presign") && i + 1 < argc) {
      presign = atof(argv[++i]);
    } else {
      fprintf(stderr, "kbs_loadgen: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  int clients = atoi(argv[5]);
  b.clients = clients;
  char host[64];
  const char *colon = strrchr(argv[1], ':');
  if (clients < 1 || clients > MAX_CLIENTS || b.seconds <= 0 || !colon || (size_t)(colon - argv[1]) >= sizeof host)
    return 2;
  memcpy(host, argv[1], (size_t)(colon - argv[1]));
  host[colon - argv[1]] = 0;
  b.addr.sin_family = AF_INET;
  b.addr.sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &b.addr.sin_addr) != 1) return 2;
  if (presign > 0 && (!b.snp || presign > 1e6)) {
    fprintf(stderr, "kbs_loadgen: --snp-presign needs --snp and at most 1e6\n");
    return 2;
  }
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (presign > 0) {
    double p0 = now_s();
    if (loadgen_snp_presign(b.snp, (unsigned)clients, (size_t)presign, cores > 0 ? (unsigned)cores : 1)) return 1;
    fprintf(stderr, "kbs_loadgen: %.0f report-signature nonces precomputed in %.1f s\n", presign, now_s() - p0);
  }
  b.ssl = SSL_CTX_new(TLS_client_method());
  if (SSL_CTX_load_verify_locations(b.ssl, argv[2], NULL) != 1) {
    fprintf(stderr, "kbs_loadgen: cannot load %s\n", argv[2]);
    return 1;
  }
  SSL_CTX_set_verify(b.ssl, SSL_VERIFY_PEER, NULL);
  b.lat_ms = calloc(MAX_SAMPLES, sizeof *b.lat_ms);
  pthread_t th[MAX_CLIENTS];
  double cpu0 = cpu_s(), t0 = now_s();
  for (int i = 0; i < clients; i++) pthread_create(&th[i], NULL, client, &b);
  for (int i = 0; i < clients; i++) pthread_join(th[i], NULL);
  double elapsed = now_s() - t0;
  unsigned n = atomic_load(&b.n);
  unsigned kept = n < MAX_SAMPLES ? n : MAX_SAMPLES;
  qsort(b.lat_ms, kept, sizeof *b.lat_ms, cmp_double);
  double p50 = kept ? b.lat_ms[kept / 2] : 0, p99 = kept ? b.lat_ms[(size_t)(kept * 0.99)] : 0;
  double p90 = kept ? b.lat_ms[(size_t)(kept * 0.9)] : 0, p999 = kept ? b.lat_ms[(size_t)(kept * 0.999)] : 0;
  double max = kept ? b.lat_ms[kept - 1] : 0;
  double cpu = cpu_s() - cpu0;
  printf("clients=%d seconds=%.1f handshakes=%u errors=%lu handshakes_per_s=%.0f p50_ms=%.2f p99_ms=%.2f "
         "loadgen_cpu_us=%.0f",
         clients, elapsed, n, atomic_load(&b.errors), n / elapsed, p50, p99, n ? cpu / n * 1e6 : 0);
  printf(" p90_ms=%.2f p999_ms=%.2f max_ms=%.2f", p90, p999, max);
  if (b.snp) {
    unsigned long pre, fallback;
    loadgen_snp_counts(b.snp, &pre, &fallback);
    printf(" snp_precomputed_signatures=%lu snp_fallback_signatures=%lu", pre, fallback);
  }
  printf("\n");
  free(b.lat_ms);
  loadgen_snp_close(b.snp);
  SSL_CTX_free(b.ssl);
  return atomic_load(&b.errors) ? 1 : 0;
}
