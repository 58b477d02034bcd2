#include "ct_test_util.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kbs_http.h"

#define N_CONNS 32

static void reply_ok(void *ctx, const kbs_http_request *req, kbs_http_response *resp) {
  (void)ctx;
  (void)req;
  resp->status = 200;
  resp->content_type = "text/plain";
  ct_err err;
  if (ct_buf_append_str(&resp->body, "ok", &err) != CT_OK) resp->status = 500;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static unsigned total_live(const kbs_http_server *s, unsigned loops) {
  unsigned n = 0;
  for (unsigned i = 0; i < loops; i++) n += kbs_http_loop_connections(s, i);
  return n;
}

/* Waits until the loops hold `want` connections in all (connections close within the 200 ms
 * sweep); false after 5 s. */
static bool wait_total(const kbs_http_server *s, unsigned loops, unsigned want) {
  for (int i = 0; i < 500; i++) {
    if (total_live(s, loops) == want) return true;
    sleep_ms(10);
  }
  return false;
}

/* The difference between the most and the least loaded loop. */
static unsigned spread(const kbs_http_server *s, unsigned loops, unsigned *least) {
  unsigned lo = UINT_MAX, hi = 0;
  for (unsigned i = 0; i < loops; i++) {
    unsigned n = kbs_http_loop_connections(s, i);
    if (n < lo) lo = n;
    if (n > hi) hi = n;
  }
  *least = lo;
  return hi - lo;
}

static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Every loop accepted on the shared socket and the first to wake took whatever was queued: a burst
 * of 32 keep-alive clients was split 8/24 and the busier loop's clients waited three times as
 * long. The loops now keep their counts within one of each other, through a burst, a partial
 * close and a second burst, and every connection is still served. */
static void test_accept_balancing(void **state) {
  (void)state;
  static const char *const sockets[] = {"127.0.0.1:0"};
  for (unsigned loops = 2; loops <= 3; loops++) {
    kbs_http_config cfg = {.sockets = sockets, .n_sockets = 1, .max_body = 1024, .workers = loops,
                           .timeout_seconds = 30};
    kbs_http_server *s = NULL;
    ct_err err;
    CT_ASSERT_OK(kbs_http_start(&cfg, reply_ok, NULL, &s, &err), &err);
    CT_ASSERT_OK(kbs_http_run(s, &err), &err);
    int port = kbs_http_bound_port(s, 0);
    int fds[N_CONNS];
    for (int i = 0; i < N_CONNS; i++) assert_true((fds[i] = connect_to(port)) >= 0);
    assert_true(wait_total(s, loops, N_CONNS));
    unsigned least = 0, d = spread(s, loops, &least);
    print_message("%u loops after a burst of %d connections: %u to %u each\n", loops, N_CONNS, least, least + d);
    assert_true(d <= 1);

    /* close the first half (which the loops took in turn), then open as many again */
    for (int i = 0; i < N_CONNS / 2; i++) close(fds[i]);
    assert_true(wait_total(s, loops, N_CONNS / 2));
    for (int i = 0; i < N_CONNS / 2; i++) assert_true((fds[i] = connect_to(port)) >= 0);
    assert_true(wait_total(s, loops, N_CONNS));
    assert_true(spread(s, loops, &least) <= 1);

    /* every connection is served, whichever loop holds it */
    static const char get[] = "GET /x HTTP/1.1\r\nHost: t\r\n\r\n";
    for (int i = 0; i < N_CONNS; i++) {
      assert_int_equal(write(fds[i], get, sizeof get - 1), (ssize_t)(sizeof get - 1));
      char buf[256];
      ssize_t got = read(fds[i], buf, sizeof buf - 1);
      assert_true(got > 12);
      buf[got] = 0;
      assert_non_null(strstr(buf, "HTTP/1.1 200"));
    }
    for (int i = 0; i < N_CONNS; i++) close(fds[i]);
    kbs_http_stop(s);
  }
}

/* With reuse_port the kernel spreads connections over the loops' own sockets: a loop that stopped
 * accepting would leave its socket's queue waiting, so there is no balancing, and every
 * connection is still accepted. */
static void test_reuse_port_accepts_everything(void **state) {
  (void)state;
  static const char *const sockets[] = {"127.0.0.1:0"};
  kbs_http_config cfg = {.sockets = sockets, .n_sockets = 1, .max_body = 1024, .workers = 2,
                         .timeout_seconds = 30, .reuse_port = true};
  kbs_http_server *s = NULL;
  ct_err err;
  CT_ASSERT_OK(kbs_http_start(&cfg, reply_ok, NULL, &s, &err), &err);
  CT_ASSERT_OK(kbs_http_run(s, &err), &err);
  int port = kbs_http_bound_port(s, 0);
  int fds[N_CONNS];
  for (int i = 0; i < N_CONNS; i++) assert_true((fds[i] = connect_to(port)) >= 0);
  assert_true(wait_total(s, 2, N_CONNS));
  for (int i = 0; i < N_CONNS; i++) close(fds[i]);
  assert_true(wait_total(s, 2, 0));
  kbs_http_stop(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accept_balancing),
      cmocka_unit_test(test_reuse_port_accepts_everything),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
