/*
 * ct_http against real local servers: an evhttp server on loopback (plain HTTP, TLS with a test
 * CA, TLS requiring a client certificate), and a socket that accepts connections but never
 * answers.
 */
#include "ct_test_util.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ct_http.h"

/* --- test PKI --------------------------------------------------------------------------- */

typedef struct pki {
  EVP_PKEY *ca_key, *srv_key, *cli_key;
  X509 *ca, *srv, *cli;
  char ca_pem[4096], cli_cert_pem[4096], cli_key_pem[4096];
  char dir[64], ca_file[128], cli_cert_file[128], cli_key_file[128];
} pki;

static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, int ca,
                       const char *san) {
  X509 *x = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(rand() & 0x7fffffff));
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
                                          ca ? "critical,CA:TRUE" : "CA:FALSE");
  X509_add_ext(x, e, -1);
  X509_EXTENSION_free(e);
  if (san) {
    e = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
  }
  assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
  return x;
}

static void pem_of(X509 *x, EVP_PKEY *k, char *out, size_t cap) {
  BIO *b = BIO_new(BIO_s_mem());
  if (x) PEM_write_bio_X509(b, x);
  else PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
  char *d = NULL;
  long n = BIO_get_mem_data(b, &d);
  assert_true(n > 0 && (size_t)n < cap);
  memcpy(out, d, (size_t)n);
  out[n] = 0;
  BIO_free(b);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void pki_make(pki *p) {
  p->ca_key = EVP_EC_gen("P-256");
  p->srv_key = EVP_EC_gen("P-256");
  p->cli_key = EVP_EC_gen("P-256");
  p->ca = make_cert(p->ca_key, "ct_http test CA", NULL, NULL, 1, NULL);
  p->srv = make_cert(p->srv_key, "127.0.0.1", p->ca, p->ca_key, 0, "IP:127.0.0.1,DNS:localhost");
  p->cli = make_cert(p->cli_key, "test client", p->ca, p->ca_key, 0, NULL);
  pem_of(p->ca, NULL, p->ca_pem, sizeof p->ca_pem);
  pem_of(p->cli, NULL, p->cli_cert_pem, sizeof p->cli_cert_pem);
  pem_of(NULL, p->cli_key, p->cli_key_pem, sizeof p->cli_key_pem);
  strcpy(p->dir, "/tmp/ct-http-XXXXXX");
  assert_non_null(mkdtemp(p->dir));
  snprintf(p->ca_file, sizeof p->ca_file, "%s/ca.pem", p->dir);
  snprintf(p->cli_cert_file, sizeof p->cli_cert_file, "%s/client.pem", p->dir);
  snprintf(p->cli_key_file, sizeof p->cli_key_file, "%s/client.key", p->dir);
  write_text(p->ca_file, p->ca_pem);
  write_text(p->cli_cert_file, p->cli_cert_pem);
  write_text(p->cli_key_file, p->cli_key_pem);
}

static void pki_free(pki *p) {
  unlink(p->ca_file);
  unlink(p->cli_cert_file);
  unlink(p->cli_key_file);
  rmdir(p->dir);
  X509_free(p->ca);
  X509_free(p->srv);
  X509_free(p->cli);
  EVP_PKEY_free(p->ca_key);
  EVP_PKEY_free(p->srv_key);
  EVP_PKEY_free(p->cli_key);
}

/* --- the server ------------------------------------------------------------------------- */

typedef struct server {
  struct event_base *base;
  struct evhttp *plain, *tls, *mtls;
  SSL_CTX *tls_ctx, *mtls_ctx;
  int port, tls_port, mtls_port;
  int silent_fd, silent_port; /* accepts (in the kernel) but never answers */
  int closed_port;            /* nothing listens */
  pthread_t thread;
  atomic_int flaky_left, limited_left, slow_now, slow_peak, requests;
  atomic_int offered_h2, alpn_seen;
  pki pki;
} server;

static server S;

static void reply(struct evhttp_request *req, int code, const char *body) {
  struct evbuffer *b = evbuffer_new();
  evbuffer_add(b, body, strlen(body));
  evhttp_send_reply(req, code, code == 200 ? "OK" : "Status", b);
  evbuffer_free(b);
}

static void slow_done(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  struct evhttp_request *req = arg;
  atomic_fetch_sub(&S.slow_now, 1);
  reply(req, 200, "slow");
}

static void handle(struct evhttp_request *req, void *arg) {
  (void)arg;
  atomic_fetch_add(&S.requests, 1);
  const char *uri = evhttp_request_get_uri(req);
  struct evkeyvalq *in = evhttp_request_get_input_headers(req);
  struct evkeyvalq *out = evhttp_request_get_output_headers(req);
  if (!strncmp(uri, "http://", 7)) { /* absolute form: we are being used as a proxy */
    char body[600];
    snprintf(body, sizeof body, "proxied %s", uri);
    reply(req, 200, body);
  } else if (!strcmp(uri, "/hello")) {
    evhttp_add_header(out, "X-Test", "yes");
    evhttp_add_header(out, "Location", "/elsewhere");
    evhttp_add_header(out, "WWW-Authenticate", "Bearer realm=\"test\"");
    reply(req, 200, "hello");
  } else if (!strcmp(uri, "/echo")) {
    struct evbuffer *ib = evhttp_request_get_input_buffer(req);
    const char *m = "OTHER";
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET: m = "GET"; break;
    case EVHTTP_REQ_POST: m = "POST"; break;
    case EVHTTP_REQ_PUT: m = "PUT"; break;
    case EVHTTP_REQ_DELETE: m = "DELETE"; break;
    default: break;
    }
    const char *auth = evhttp_find_header(in, "Authorization");
    const char *ct = evhttp_find_header(in, "Content-Type");
    char body[1024];
    size_t n = evbuffer_get_length(ib);
    if (n > 500) n = 500;
    int k = snprintf(body, sizeof body, "%s HTTP/%d.%d auth=%s ct=%s body=", m,
                     req->major, req->minor,
                     auth ? auth : "-", ct ? ct : "-");
    evbuffer_remove(ib, body + k, n);
    body[(size_t)k + n] = 0;
    reply(req, 200, body);
  } else if (!strcmp(uri, "/big")) {
    struct evbuffer *b = evbuffer_new();
    static char chunk[10000];
    memset(chunk, 'a', sizeof chunk);
    for (int i = 0; i < 10; i++) evbuffer_add(b, chunk, sizeof chunk);
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
  } else if (!strcmp(uri, "/big-chunked")) {
    static char chunk[10000];
    memset(chunk, 'b', sizeof chunk);
    evhttp_send_reply_start(req, 200, "OK");
    struct evbuffer *b = evbuffer_new();
    for (int i = 0; i < 10; i++) {
      evbuffer_add(b, chunk, sizeof chunk);
      evhttp_send_reply_chunk(req, b);
    }
    evbuffer_free(b);
    evhttp_send_reply_end(req);
  } else if (!strcmp(uri, "/cookie/set")) {
    evhttp_add_header(out, "Set-Cookie", "sid=abc123; Path=/");
    reply(req, 200, "set");
  } else if (!strcmp(uri, "/cookie/check")) {
    const char *c = evhttp_find_header(in, "Cookie");
    reply(req, c && strstr(c, "sid=abc123") ? 200 : 401, c ? c : "none");
  } else if (!strcmp(uri, "/conn")) {
    char body[64];
    snprintf(body, sizeof body, "%p", (void *)evhttp_request_get_connection(req));
    reply(req, 200, body);
  } else if (!strcmp(uri, "/flaky")) {
    if (atomic_fetch_sub(&S.flaky_left, 1) > 0) reply(req, 503, "busy");
    else reply(req, 200, "recovered");
  } else if (!strcmp(uri, "/limited")) {
    if (atomic_fetch_sub(&S.limited_left, 1) > 0) {
      evhttp_add_header(out, "Retry-After", "1");
      reply(req, 429, "slow down");
    } else {
      reply(req, 200, "ok");
    }
  } else if (!strcmp(uri, "/slow")) {
    int now = atomic_fetch_add(&S.slow_now, 1) + 1;
    int peak = atomic_load(&S.slow_peak);
    while (now > peak && !atomic_compare_exchange_weak(&S.slow_peak, &peak, now)) {
    }
    struct timeval tv = {0, 250000};
    event_base_once(S.base, -1, EV_TIMEOUT, slow_done, req, &tv);
  } else {
    reply(req, 404, "no such path");
  }
}

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned inlen, void *arg) {
  (void)ssl, (void)arg;
  atomic_store(&S.alpn_seen, 1);
  for (unsigned i = 0; i < inlen; i += 1u + in[i])
    if (in[i] == 2 && !memcmp(in + i + 1, "h2", 2)) atomic_store(&S.offered_h2, 1);
  for (unsigned i = 0; i < inlen; i += 1u + in[i])
    if (in[i] == 8 && !memcmp(in + i + 1, "http/1.1", 8)) {
      *out = in + i + 1;
      *outlen = 8;
      return SSL_TLSEXT_ERR_OK;
    }
  return SSL_TLSEXT_ERR_NOACK;
}

static struct bufferevent *tls_bev(struct event_base *base, void *arg) {
  return bufferevent_openssl_socket_new(base, -1, SSL_new(arg), BUFFEREVENT_SSL_ACCEPTING,
                                        BEV_OPT_CLOSE_ON_FREE);
}

static SSL_CTX *server_ctx(int want_client_cert) {
  SSL_CTX *c = SSL_CTX_new(TLS_server_method());
  assert_int_equal(SSL_CTX_use_certificate(c, S.pki.srv), 1);
  assert_int_equal(SSL_CTX_use_PrivateKey(c, S.pki.srv_key), 1);
  SSL_CTX_set_alpn_select_cb(c, alpn_cb, NULL);
  if (want_client_cert) {
    X509_STORE_add_cert(SSL_CTX_get_cert_store(c), S.pki.ca);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  }
  return c;
}

static int bound_port(struct evhttp *h) {
  struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(h, "127.0.0.1", 0);
  assert_non_null(s);
  struct sockaddr_in a;
  socklen_t al = sizeof a;
  assert_int_equal(getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&a, &al), 0);
  return ntohs(a.sin_port);
}

static int listen_port(int fd) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, al), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
  return ntohs(a.sin_port);
}

static void *server_main(void *arg) {
  (void)arg;
  event_base_loop(S.base, EVLOOP_NO_EXIT_ON_EMPTY);
  return NULL;
}

static int setup(void **state) {
  (void)state;
  evthread_use_pthreads();
  pki_make(&S.pki);
  S.base = event_base_new();
  S.plain = evhttp_new(S.base);
  S.tls = evhttp_new(S.base);
  S.mtls = evhttp_new(S.base);
  S.tls_ctx = server_ctx(0);
  S.mtls_ctx = server_ctx(1);
  evhttp_set_bevcb(S.tls, tls_bev, S.tls_ctx);
  evhttp_set_bevcb(S.mtls, tls_bev, S.mtls_ctx);
  struct evhttp *all[] = {S.plain, S.tls, S.mtls};
  for (int i = 0; i < 3; i++) {
    evhttp_set_gencb(all[i], handle, NULL);
    evhttp_set_allowed_methods(all[i], EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                           EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
  }
  S.port = bound_port(S.plain);
  S.tls_port = bound_port(S.tls);
  S.mtls_port = bound_port(S.mtls);
  S.silent_fd = socket(AF_INET, SOCK_STREAM, 0);
  S.silent_port = listen_port(S.silent_fd);
  assert_int_equal(listen(S.silent_fd, 16), 0);
  int closed = socket(AF_INET, SOCK_STREAM, 0);
  S.closed_port = listen_port(closed); /* bound, never listening, then closed: refuses */
  close(closed);
  assert_int_equal(pthread_create(&S.thread, NULL, server_main, NULL), 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  event_base_loopbreak(S.base);
  pthread_join(S.thread, NULL);
  evhttp_free(S.plain);
  evhttp_free(S.tls);
  evhttp_free(S.mtls);
  SSL_CTX_free(S.tls_ctx);
  SSL_CTX_free(S.mtls_ctx);
  event_base_free(S.base);
  close(S.silent_fd);
  pki_free(&S.pki);
  return 0;
}

static char *url(int port, const char *scheme, const char *path) {
  static char bufs[8][256];
  static int next;
  char *u = bufs[next++ % 8];
  snprintf(u, 256, "%s://127.0.0.1:%d%s", scheme, port, path);
  return u;
}

static long ms_since(const struct timespec *a) {
  struct timespec b;
  clock_gettime(CLOCK_MONOTONIC, &b);
  return (b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000;
}

/* --- synchronous ------------------------------------------------------------------------ */

static void test_get_and_headers(void **state) {
  (void)state;
  ct_err err;
  ct_http_resp r;
  ct_http_req q = {.url = url(S.port, "http", "/hello")};
  CT_ASSERT_OK(ct_http_call(NULL, &q, &r, &err), &err);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.attempts, 1);
  assert_string_equal((char *)r.body.data, "hello");
  assert_string_equal(ct_http_resp_header(&r, "x-test"), "yes");
  assert_string_equal(ct_http_resp_header(&r, "Location"), "/elsewhere");
  assert_string_equal(ct_http_resp_header(&r, "WWW-Authenticate"), "Bearer realm=\"test\"");
  assert_null(ct_http_resp_header(&r, "Set-Cookie"));
  const char *n, *v;
  size_t count = 0;
  while (ct_http_resp_header_at(&r, count, &n, &v)) count++;
  assert_true(count >= 4);
  ct_http_resp_free(&r);
  /* A 404 is a response, not a failure. */
  q.url = url(S.port, "http", "/nope");
  CT_ASSERT_OK(ct_http_call(NULL, &q, &r, &err), &err);
  assert_int_equal(r.status, 404);
  ct_http_resp_free(&r);
}

static void test_methods_bodies_and_http11(void **state) {
  (void)state;
  ct_err err;
  ct_http_resp r;
  const char *hdrs[] = {"Authorization: Bearer tok", "Content-Type: text/plain", NULL};
  static const struct { const char *m, *body, *want; } cases[] = {
      {"GET", NULL, "GET HTTP/1.1 auth=Bearer tok ct=text/plain body="},
      {"POST", "abc", "POST HTTP/1.1 auth=Bearer tok ct=text/plain body=abc"},
      {"PUT", "xyz", "PUT HTTP/1.1 auth=Bearer tok ct=text/plain body=xyz"},
      {"DELETE", NULL, "DELETE HTTP/1.1 auth=Bearer tok ct=text/plain body="},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    ct_http_req q = {.method = cases[i].m, .url = url(S.port, "http", "/echo"), .headers = hdrs,
                     .body = cases[i].body, .body_len = cases[i].body ? strlen(cases[i].body) : 0};
    CT_ASSERT_OK(ct_http_call(NULL, &q, &r, &err), &err);
    assert_int_equal(r.status, 200);
    assert_string_equal((char *)r.body.data, cases[i].want);
    ct_http_resp_free(&r);
  }
  ct_http_req bad = {.url = "ftp://127.0.0.1/x"};
  assert_int_equal(ct_http_call(NULL, &bad, &r, &err), CT_EINVAL);
  bad = (ct_http_req){.method = "GET /x", .url = url(S.port, "http", "/echo")};
  assert_int_equal(ct_http_call(NULL, &bad, &r, &err), CT_EINVAL);
}

static void test_size_cap(void **state) {
  (void)state;
  ct_err err;
  ct_http_resp r;
  ct_http_opts o = {.max_body = 1000};
  const char *paths[] = {"/big", "/big-chunked"};
  for (int i = 0; i < 2; i++) {
    ct_http_req q = {.url = url(S.port, "http", paths[i])};
    assert_int_equal(ct_http_call(&o, &q, &r, &err), CT_ELIMIT);
    assert_non_null(strstr(err.msg, "GET http://127.0.0.1"));
    assert_non_null(strstr(err.msg, paths[i]));
    assert_non_null(strstr(err.msg, "larger than the 1000-byte limit"));
    assert_null(r.body.data);
    ct_http_resp_free(&r);
  }
  o.max_body = 100000;
  ct_http_req q = {.url = url(S.port, "http", "/big-chunked")};
  CT_ASSERT_OK(ct_http_call(&o, &q, &r, &err), &err);
  assert_int_equal(r.body.len, 100000);
  ct_http_resp_free(&r);
}

typedef struct sink_state {
  size_t total, calls, refuse_after;
  char head[64];
} sink_state;

static CT_RESULT sink_collect(void *ud, const uint8_t *d, size_t n, ct_err *err) {
  sink_state *s = ud;
  if (s->refuse_after && s->total + n > s->refuse_after)
    return ct_fail(err, CT_ECRYPTO, "blob digest mismatch after %zu bytes", s->total);
  size_t room = sizeof s->head - 1 - strlen(s->head);
  strncat(s->head, (const char *)d, n < room ? n : room);
  s->total += n;
  s->calls++;
  return CT_OK;
}

/* A server that sends the head and the first part of a body, then nothing until the client
 * hangs up (it times out mid-body). */
static void *stall_server(void *arg) {
  int lfd = *(int *)arg;
  int c = accept(lfd, NULL, NULL);
  if (c < 0) return NULL;
  char buf[4096];
  ssize_t n = recv(c, buf, sizeof buf, 0);
  static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst part;";
  if (n > 0 && send(c, head, sizeof head - 1, MSG_NOSIGNAL) > 0)
    while (recv(c, buf, sizeof buf, 0) > 0) {
    }
  close(c);
  return NULL;
}

static void test_streaming_sink(void **state) {
  (void)state;
  ct_err err;
  ct_http_resp r;
  /* A 2xx body streams to the sink, never into resp->body. */
  sink_state ss = {0};
  ct_http_req q = {.url = url(S.port, "http", "/big-chunked"), .sink = sink_collect, .sink_ud = &ss};
  ct_http_opts o = {.max_body = 100000};
  CT_ASSERT_OK(ct_http_call(&o, &q, &r, &err), &err);
  assert_int_equal(r.status, 200);
  assert_int_equal(ss.total, 100000);
  assert_true(ss.calls >= 2);
  assert_int_equal(r.body.len, 0);
  ct_http_resp_free(&r);
  /* The same cap and the same refusal as a buffered body, with or without a Content-Length. */
  const char *paths[] = {"/big", "/big-chunked"};
  o.max_body = 1000;
  for (int i = 0; i < 2; i++) {
    memset(&ss, 0, sizeof ss);
    q.url = url(S.port, "http", paths[i]);
    assert_int_equal(ct_http_call(&o, &q, &r, &err), CT_ELIMIT);
    assert_non_null(strstr(err.msg, paths[i]));
    assert_non_null(strstr(err.msg, "larger than the 1000-byte limit"));
    assert_true(ss.total <= 1000);
    ct_http_resp_free(&r);
  }
  /* A sink's refusal ends the transfer with its code and message, and is not retried. */
  memset(&ss, 0, sizeof ss);
  ss.refuse_after = 15000;
  o = (ct_http_opts){.attempts = 3, .retry_on = CT_HTTP_RETRY_TRANSPORT | CT_HTTP_RETRY_5XX, .backoff_ms = 10};
  q.url = url(S.port, "http", "/big-chunked");
  assert_int_equal(ct_http_call(&o, &q, &r, &err), CT_ECRYPTO);
  assert_int_equal(r.attempts, 1);
  assert_non_null(strstr(err.msg, "GET http://127.0.0.1"));
  assert_non_null(strstr(err.msg, "/big-chunked: blob digest mismatch after"));
  assert_true(ss.total <= 15000);
  ct_http_resp_free(&r);
  /* Non-2xx bodies stay readable in resp->body; a 503 before any sunk byte is retried. */
  memset(&ss, 0, sizeof ss);
  q.url = url(S.port, "http", "/nothing-here");
  CT_ASSERT_OK(ct_http_call(NULL, &q, &r, &err), &err);
  assert_int_equal(r.status, 404);
  assert_string_equal((char *)r.body.data, "no such path");
  assert_int_equal(ss.calls, 0);
  ct_http_resp_free(&r);
  atomic_store(&S.flaky_left, 1);
  q.url = url(S.port, "http", "/flaky");
  CT_ASSERT_OK(ct_http_call(&o, &q, &r, &err), &err);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.attempts, 2);
  assert_string_equal(ss.head, "recovered");
  ct_http_resp_free(&r);
  /* Once bytes went to the sink, a failure mid-body is final even when timeouts are retried. */
  memset(&ss, 0, sizeof ss);
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  int stall_port = listen_port(lfd);
  assert_int_equal(listen(lfd, 4), 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, stall_server, &lfd), 0);
  o = (ct_http_opts){.attempts = 3, .retry_on = CT_HTTP_RETRY_TIMEOUT, .timeout_ms = 300, .backoff_ms = 10};
  q.url = url(stall_port, "http", "/stall");
  assert_int_equal(ct_http_call(&o, &q, &r, &err), CT_EIO);
  assert_int_equal(r.attempts, 1);
  assert_string_equal(ss.head, "first part;");
  ct_http_resp_free(&r);
  pthread_join(th, NULL);
  close(lfd);
  /* The pool streams the same way (the sink runs on its I/O thread). */
  ct_http_pool *p = NULL;
  CT_ASSERT_OK(ct_http_pool_new(NULL, &p, &err), &err);
  memset(&ss, 0, sizeof ss);
  q.url = url(S.port, "http", "/big-chunked");
  CT_ASSERT_OK(ct_http_pool_do(p, NULL, &q, NULL, &r, &err), &err);
  assert_int_equal(ss.total, 100000);
  assert_int_equal(r.body.len, 0);
  ct_http_resp_free(&r);
  ct_http_pool_free(p);
}

static void test_timeout_and_refusal(void **state) {
  (void)state;
  ct_err err;
  ct_http_resp r;
  ct_http_opts o = {.timeout_ms = 300};
  ct_http_req q = {.url = url(S.silent_port, "http", "/never")};
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(ct_http_call(&o, &q, &r, &err), CT_EIO);
  long ms = ms_since(&t0);
  assert_true(ms >= 250 && ms < 3000);
  assert_non_null(strstr(err.msg, "GET http://127.0.0.1"));
  assert_non_null(strstr(err.msg, "/never: "));
  assert_non_null(strstr(r.cause, "imed out"));
  ct_http_resp_free(&r);
  /* Refused connections, retried as asked; the error names the attempts but no header. */
  const char *hdrs[] = {"Authorization: Bearer SECRET-TOKEN", NULL};
  o = (ct_http_opts){.attempts = 3, .retry_on = CT_HTTP_RETRY_TRANSPORT, .backoff_ms = 20};
  q = (ct_http_req){.method = "POST", .url = url(S.closed_port, "http", "/x"), .headers = hdrs,
                    .body = "SECRET-BODY", .body_len = 11};
  assert_int_equal(ct_http_call(&o, &q, &r, &err), CT_EIO);
  assert_int_equal(r.attempts, 3);
  assert_non_null(strstr(err.msg, "POST http://127.0.0.1"));
  assert_non_null(strstr(err.msg, "(after 3 attempts)"));
  assert_null(strstr(err.msg, "SECRET"));
  ct_http_resp_free(&r);
  /* A timeout is not retried when only timeouts... are not asked for. */
  o = (ct_http_opts){.attempts = 3, .retry_on = CT_HTTP_RETRY_5XX, .timeout_ms = 200};
  q = (ct_http_req){.url = url(S.silent_port, "http", "/never")};
  assert_int_equal(ct_http_call(&o, &q, &r, &err), CT_EIO);
  assert_int_equal(r.attempts, 1);
  ct_http_resp_free(&r);
}

static void test_retry_backoff(void **state) {
  (void)state;
  ct_err err;
  ct_http_resp r;
  ct_http_req q = {.url = url(S.port, "http", "/flaky")};
  /* Not asked to retry: the 503 is the answer. */
  atomic_store(&S.flaky_left, 2);
  CT_ASSERT_OK(ct_http_call(NULL, &q, &r, &err), &err);
  assert_int_equal(r.status, 503);
  assert_int_equal(r.attempts, 1);
  ct_http_resp_free(&r);
  /* Two 503s, then success; delays 100 then 200 ms. */
  atomic_store(&S.flaky_left, 2);
  ct_http_opts o = {.attempts = 4, .retry_on = CT_HTTP_RETRY_5XX, .backoff_ms = 100, .log_tag = "test"};
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  CT_ASSERT_OK(ct_http_call(&o, &q, &r, &err), &err);
  assert_true(ms_since(&t0) >= 300);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.attempts, 3);
  assert_string_equal((char *)r.body.data, "recovered");
  ct_http_resp_free(&r);
  /* Attempts run out: the last 503 comes back as the response. */
  atomic_store(&S.flaky_left, 5);
  o.attempts = 2;
  o.backoff_ms = 10;
  CT_ASSERT_OK(ct_http_call(&o, &q, &r, &err), &err);
  assert_int_equal(r.status, 503);
  assert_int_equal(r.attempts, 2);
  ct_http_resp_free(&r);
  /* 429 with Retry-After: 1 is honoured over the 10 ms backoff. */
  atomic_store(&S.limited_left, 1);
  o = (ct_http_opts){.attempts = 3, .retry_on = CT_HTTP_RETRY_429, .backoff_ms = 10,
                     .retry_after_max_ms = 5000};
  q.url = url(S.port, "http", "/limited");
  clock_gettime(CLOCK_MONOTONIC, &t0);
  CT_ASSERT_OK(ct_http_call(&o, &q, &r, &err), &err);
  assert_true(ms_since(&t0) >= 900);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.attempts, 2);
  ct_http_resp_free(&r);
}

static void test_client_keepalive_and_cookies(void **state) {
  (void)state;
  ct_err err;
  ct_http_resp r;
  for (int cookies = 0; cookies <= 1; cookies++) {
    ct_http_opts o = {.cookies = cookies};
    ct_http_client *c = NULL;
    CT_ASSERT_OK(ct_http_client_new(&o, &c, &err), &err);
    ct_http_req q = {.url = url(S.port, "http", "/cookie/set")};
    CT_ASSERT_OK(ct_http_do(c, &q, &r, &err), &err);
    assert_string_equal(ct_http_resp_header(&r, "Set-Cookie"), "sid=abc123; Path=/");
    ct_http_resp_free(&r);
    q.url = url(S.port, "http", "/cookie/check");
    /* A POST in between must not disturb the next GET on the reused handle. */
    ct_http_req post = {.method = "POST", .url = url(S.port, "http", "/echo"), .body = "p", .body_len = 1};
    CT_ASSERT_OK(ct_http_do(c, &post, &r, &err), &err);
    assert_string_equal((char *)r.body.data, "POST HTTP/1.1 auth=- ct=application/x-www-form-urlencoded body=p");
    ct_http_resp_free(&r);
    CT_ASSERT_OK(ct_http_do(c, &q, &r, &err), &err);
    assert_int_equal(r.status, cookies ? 200 : 401);
    ct_http_resp_free(&r);
    /* Both requests travel on one connection. */
    char first[64];
    q.url = url(S.port, "http", "/conn");
    CT_ASSERT_OK(ct_http_do(c, &q, &r, &err), &err);
    snprintf(first, sizeof first, "%s", (char *)r.body.data);
    ct_http_resp_free(&r);
    CT_ASSERT_OK(ct_http_do(c, &q, &r, &err), &err);
    assert_string_equal((char *)r.body.data, first);
    ct_http_resp_free(&r);
    ct_http_client_free(c);
  }
}

static void test_tls(void **state) {
  (void)state;
  ct_err err;
  ct_http_resp r;
  ct_http_req q = {.url = url(S.tls_port, "https", "/echo")};
  /* Untrusted: the system store does not know the test CA. */
  assert_int_equal(ct_http_call(NULL, &q, &r, &err), CT_EIO);
  assert_non_null(strstr(err.msg, "GET https://127.0.0.1"));
  ct_http_resp_free(&r);
  ct_http_opts variants[] = {{.ca_pem = S.pki.ca_pem}, {.ca_file = S.pki.ca_file}, {.insecure = 1}};
  for (int i = 0; i < 3; i++) {
    atomic_store(&S.offered_h2, 0);
    atomic_store(&S.alpn_seen, 0);
    ct_http_client *c = NULL;
    CT_ASSERT_OK(ct_http_client_new(&variants[i], &c, &err), &err);
    CT_ASSERT_OK(ct_http_do(c, &q, &r, &err), &err);
    assert_int_equal(r.status, 200);
    assert_string_equal((char *)r.body.data, "GET HTTP/1.1 auth=- ct=- body=");
    ct_http_resp_free(&r);
    ct_http_client_free(c);
    /* HTTP/1.1 only: the client never offers h2 in ALPN. */
    assert_int_equal(atomic_load(&S.alpn_seen), 1);
    assert_int_equal(atomic_load(&S.offered_h2), 0);
  }
  /* Client certificates. */
  q.url = url(S.mtls_port, "https", "/echo");
  ct_http_opts o = {.ca_pem = S.pki.ca_pem};
  assert_int_equal(ct_http_call(&o, &q, &r, &err), CT_EIO);
  ct_http_resp_free(&r);
  o.client_cert_pem = S.pki.cli_cert_pem;
  o.client_key_pem = S.pki.cli_key_pem;
  CT_ASSERT_OK(ct_http_call(&o, &q, &r, &err), &err);
  assert_int_equal(r.status, 200);
  ct_http_resp_free(&r);
  o = (ct_http_opts){.ca_file = S.pki.ca_file, .client_cert_file = S.pki.cli_cert_file,
                     .client_key_file = S.pki.cli_key_file};
  CT_ASSERT_OK(ct_http_call(&o, &q, &r, &err), &err);
  assert_int_equal(r.status, 200);
  ct_http_resp_free(&r);
}

static void test_proxy(void **state) {
  (void)state;
  ct_err err;
  ct_http_resp r;
  char proxy[64];
  snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", S.port);
  ct_http_req q = {.url = "http://example.invalid/via"};
  ct_http_opts o = {.proxy = proxy};
  CT_ASSERT_OK(ct_http_call(&o, &q, &r, &err), &err);
  assert_string_equal((char *)r.body.data, "proxied http://example.invalid/via");
  ct_http_resp_free(&r);
  /* From the environment, unless told to ignore it. */
  char *saved = getenv("http_proxy") ? strdup(getenv("http_proxy")) : NULL;
  char *saved_no = getenv("no_proxy") ? strdup(getenv("no_proxy")) : NULL;
  setenv("http_proxy", proxy, 1);
  unsetenv("no_proxy");
  CT_ASSERT_OK(ct_http_call(NULL, &q, &r, &err), &err);
  assert_string_equal((char *)r.body.data, "proxied http://example.invalid/via");
  ct_http_resp_free(&r);
  setenv("http_proxy", "http://127.0.0.1:1", 1);
  o = (ct_http_opts){.no_proxy = 1};
  q.url = url(S.port, "http", "/hello");
  CT_ASSERT_OK(ct_http_call(&o, &q, &r, &err), &err);
  assert_string_equal((char *)r.body.data, "hello");
  ct_http_resp_free(&r);
  if (saved) setenv("http_proxy", saved, 1);
  else unsetenv("http_proxy");
  if (saved_no) setenv("no_proxy", saved_no, 1);
  free(saved);
  free(saved_no);
}

/* --- asynchronous ----------------------------------------------------------------------- */

typedef struct tally {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done, ok, cancelled, status200;
  pthread_t thread;
  int on_other_thread;
  char last_err[CT_ERR_MSG_MAX];
} tally;

static void tally_init(tally *t) {
  memset(t, 0, sizeof *t);
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->cv, NULL);
  t->thread = pthread_self();
}

static void on_done(void *ud, ct_status st, ct_http_resp *r, const ct_err *err) {
  tally *t = ud;
  pthread_mutex_lock(&t->mu);
  t->done++;
  if (!pthread_equal(pthread_self(), t->thread)) t->on_other_thread++;
  if (st == CT_OK) t->ok++;
  if (st == CT_OK && r->status == 200) t->status200++;
  if (st && strstr(err->msg, "cancelled")) t->cancelled++;
  if (st) snprintf(t->last_err, sizeof t->last_err, "%s", err->msg);
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
}

static void tally_wait(tally *t, int n) {
  pthread_mutex_lock(&t->mu);
  while (t->done < n) pthread_cond_wait(&t->cv, &t->mu);
  pthread_mutex_unlock(&t->mu);
}

static void test_pool_per_source_cap(void **state) {
  (void)state;
  ct_err err;
  ct_http_pool *p = NULL;
  ct_http_pool_opts po = {.max_per_source = 2};
  CT_ASSERT_OK(ct_http_pool_new(&po, &p, &err), &err);
  tally t;
  tally_init(&t);
  atomic_store(&S.slow_peak, 0);
  ct_http_req q = {.url = url(S.port, "http", "/slow")};
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < 6; i++) CT_ASSERT_OK(ct_http_submit(p, NULL, &q, NULL, on_done, &t, &err), &err);
  tally_wait(&t, 6);
  long ms = ms_since(&t0);
  assert_int_equal(t.status200, 6);
  assert_int_equal(t.on_other_thread, 6);
  assert_int_equal(atomic_load(&S.slow_peak), 2);
  assert_true(ms >= 3 * 250 - 50);
  /* A named pool: all six share one source of cap 2 even across two hosts' URLs. */
  atomic_store(&S.slow_peak, 0);
  tally_init(&t);
  ct_http_req q2 = {.url = url(S.tls_port, "https", "/slow")};
  ct_http_opts tls = {.ca_pem = S.pki.ca_pem};
  for (int i = 0; i < 3; i++) {
    CT_ASSERT_OK(ct_http_submit(p, NULL, &q, "kds", on_done, &t, &err), &err);
    CT_ASSERT_OK(ct_http_submit(p, &tls, &q2, "kds", on_done, &t, &err), &err);
  }
  tally_wait(&t, 6);
  assert_int_equal(t.status200, 6);
  assert_int_equal(atomic_load(&S.slow_peak), 2);
  /* The blocking form. */
  ct_http_resp r;
  ct_http_req h = {.url = url(S.port, "http", "/hello")};
  CT_ASSERT_OK(ct_http_pool_do(p, NULL, &h, NULL, &r, &err), &err);
  assert_int_equal(r.status, 200);
  assert_string_equal((char *)r.body.data, "hello");
  assert_string_equal(ct_http_resp_header(&r, "X-Test"), "yes");
  ct_http_resp_free(&r);
  ct_http_pool_free(p);
}

static void test_pool_retry_deadline_and_limits(void **state) {
  (void)state;
  ct_err err;
  ct_http_pool *p = NULL;
  ct_http_pool_opts po = {.max_per_source = 1, .max_queued = 3};
  CT_ASSERT_OK(ct_http_pool_new(&po, &p, &err), &err);
  ct_http_resp r;
  /* Retries with backoff happen on the pool's timer, not by sleeping. */
  atomic_store(&S.flaky_left, 2);
  ct_http_opts o = {.attempts = 3, .retry_on = CT_HTTP_RETRY_5XX, .backoff_ms = 50};
  ct_http_req q = {.url = url(S.port, "http", "/flaky")};
  CT_ASSERT_OK(ct_http_pool_do(p, &o, &q, NULL, &r, &err), &err);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.attempts, 3);
  ct_http_resp_free(&r);
  /* The deadline bounds a request whose server never answers, despite a long timeout. */
  o = (ct_http_opts){.timeout_ms = 30000, .deadline_ms = 400};
  q.url = url(S.silent_port, "http", "/never");
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(ct_http_pool_do(p, &o, &q, NULL, &r, &err), CT_EIO);
  long ms = ms_since(&t0);
  assert_true(ms >= 350 && ms < 3000);
  assert_non_null(strstr(err.msg, "GET http://127.0.0.1"));
  ct_http_resp_free(&r);
  /* Queued behind a slow request with a short deadline: it expires waiting for its slot. */
  tally t;
  tally_init(&t);
  ct_http_req slow = {.url = url(S.port, "http", "/slow")};
  ct_http_opts shortd = {.deadline_ms = 100};
  CT_ASSERT_OK(ct_http_submit(p, NULL, &slow, NULL, on_done, &t, &err), &err);
  CT_ASSERT_OK(ct_http_submit(p, &shortd, &slow, NULL, on_done, &t, &err), &err);
  tally_wait(&t, 2);
  assert_int_equal(t.status200, 1);
  assert_non_null(strstr(t.last_err, "deadline"));
  /* The queue is bounded; shutting down cancels what is left (the one running too), each
   * callback once. */
  tally_init(&t);
  ct_http_req never = {.url = url(S.silent_port, "http", "/never")};
  for (int i = 0; i < 3; i++) CT_ASSERT_OK(ct_http_submit(p, NULL, &never, NULL, on_done, &t, &err), &err);
  assert_int_equal(ct_http_submit(p, NULL, &never, NULL, on_done, &t, &err), CT_ELIMIT);
  assert_non_null(strstr(err.msg, "too many"));
  ct_http_pool_free(p);
  assert_int_equal(t.done, 3);
  assert_int_equal(t.cancelled, 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_and_headers),
      cmocka_unit_test(test_methods_bodies_and_http11),
      cmocka_unit_test(test_size_cap),
      cmocka_unit_test(test_streaming_sink),
      cmocka_unit_test(test_timeout_and_refusal),
      cmocka_unit_test(test_retry_backoff),
      cmocka_unit_test(test_client_keepalive_and_cookies),
      cmocka_unit_test(test_tls),
      cmocka_unit_test(test_proxy),
      cmocka_unit_test(test_pool_per_source_cap),
      cmocka_unit_test(test_pool_retry_deadline_and_limits),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
