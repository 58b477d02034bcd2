/*
 * ttRPC codec, worker pool and server tests: protobuf wire edge cases, Request/Response
 * round trips, and the server over a socketpair (synchronous and deferred answers, a caller
 * that hangs up before its answer).
 */
#include "ct_test_util.h"

#include <event2/event.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "guest_pb.h"
#include "guest_pool.h"
#include "guest_ttrpc.h"

static void test_pb_codec(void **state) {
  (void)state;
  ct_err err;
  ct_buf b;
  ct_buf_init(&b, 1024);
  CT_ASSERT_OK(guest_pb_put_varint(&b, 1, 300, &err), &err);
  CT_ASSERT_OK(guest_pb_put_varint(&b, 2, 0, &err), &err); /* default: omitted */
  CT_ASSERT_OK(guest_pb_put_str(&b, 3, "hi", &err), &err);
  CT_ASSERT_OK(guest_pb_put_bytes(&b, 4, NULL, 0, 1, &err), &err); /* forced empty */
  CT_ASSERT_OK(guest_pb_put_varint(&b, 536870911, UINT64_MAX, &err), &err);
  static const uint8_t want[] = {0x08, 0xac, 0x02, 0x1a, 0x02, 'h', 'i', 0x22, 0x00,
                                 0xf8, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff, 0xff, 0xff,
                                 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  assert_int_equal(b.len, sizeof want);
  assert_memory_equal(b.data, want, sizeof want);
  guest_pb_in in = guest_pb_in_make(b.data, b.len);
  guest_pb_field f;
  int more = 1, n = 0;
  for (;;) {
    CT_ASSERT_OK(guest_pb_next(&in, &f, &more, &err), &err);
    if (!more) break;
    n++;
    if (f.num == 1) assert_int_equal(f.u, 300);
    if (f.num == 3) assert_memory_equal(f.data, "hi", 2);
    if (f.num == 536870911) assert_true(f.u == UINT64_MAX);
  }
  assert_int_equal(n, 4);
  ct_buf_free(&b);
  /* Malformed: truncated varint, 11-byte varint, overflowing tenth byte, length past the end,
   * groups, field number 0. */
  static const struct {
    const char *bytes;
    size_t len;
  } bad[] = {{"\x08\x80", 2},
             {"\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 12},
             {"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11},
             {"\x0a\x05hi", 4},
             {"\x0b", 1},
             {"\x0c", 1},
             {"\x00\x01", 2},
             {"\x0d\x01\x02", 3}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    in = guest_pb_in_make(bad[i].bytes, bad[i].len);
    ct_status st = CT_OK;
    for (more = 1; !st && more;) st = guest_pb_next(&in, &f, &more, &err);
    if (st == CT_OK) fail_msg("malformed input %zu accepted", i);
  }
  /* Strings: NUL bytes and caps. */
  guest_pb_field s = {.num = 1, .wire = GUEST_PB_LEN, .data = (const uint8_t *)"a\0b", .len = 3};
  char buf[8];
  assert_int_equal(guest_pb_string(&s, buf, sizeof buf, "x", &err), CT_EINVAL);
  s.data = (const uint8_t *)"abcdefgh";
  s.len = 8;
  assert_int_equal(guest_pb_string(&s, buf, sizeof buf, "x", &err), CT_ELIMIT);
}

static void test_request_response(void **state) {
  (void)state;
  ct_err err;
  ct_buf b;
  ct_buf_init(&b, 4096);
  CT_ASSERT_OK(guest_ttrpc_request_encode("api.GetResourceService", "GetResource",
                                          (const uint8_t *)"\x0a\x03x/y", 5, &b, &err), &err);
  guest_ttrpc_request r;
  CT_ASSERT_OK(guest_ttrpc_request_decode(b.data, b.len, &r, &err), &err);
  assert_string_equal(r.service, "api.GetResourceService");
  assert_string_equal(r.method, "GetResource");
  assert_int_equal(r.payload_len, 5);
  ct_buf_free(&b);
  /* Unknown fields are skipped; timeout and metadata are read. */
  static const uint8_t extra[] = {0x0a, 0x01, 's', 0x12, 0x01, 'm', 0x20, 0x80, 0x94, 0xeb, 0xdc,
                                  0x03, 0x2a, 0x06, 0x0a, 0x01, 'k', 0x12, 0x01, 'v', 0x78, 0x05,
                                  0x31, 1, 2, 3, 4, 5, 6, 7, 8};
  CT_ASSERT_OK(guest_ttrpc_request_decode(extra, sizeof extra, &r, &err), &err);
  assert_int_equal(r.timeout_nano, 1000000000);
  assert_int_equal(r.metadata, 1);
  assert_null(r.payload);
  /* No method: refused. */
  assert_int_equal(guest_ttrpc_request_decode((const uint8_t *)"\x0a\x01s", 3, &r, &err), CT_EINVAL);

  ct_buf_init(&b, 4096);
  CT_ASSERT_OK(guest_ttrpc_response_encode(GUEST_RPC_NOT_FOUND, "no such thing", NULL, 0, &b, &err),
               &err);
  int code;
  char msg[64];
  const uint8_t *p;
  size_t n;
  CT_ASSERT_OK(guest_ttrpc_response_decode(b.data, b.len, &code, msg, sizeof msg, &p, &n, &err), &err);
  assert_int_equal(code, 5);
  assert_string_equal(msg, "no such thing");
  assert_int_equal(n, 0);
  ct_buf_reset(&b);
  CT_ASSERT_OK(guest_ttrpc_response_encode(GUEST_RPC_OK, NULL, (const uint8_t *)"pay", 3, &b, &err),
               &err);
  CT_ASSERT_OK(guest_ttrpc_response_decode(b.data, b.len, &code, msg, sizeof msg, &p, &n, &err), &err);
  assert_int_equal(code, 0);
  assert_int_equal(n, 3);
  ct_buf_free(&b);

  uint8_t hdr[GUEST_TTRPC_HEADER_LEN];
  guest_ttrpc_header h = {.length = 0x00012345, .stream = 0x80000001, .type = 2, .flags = 1}, h2;
  guest_ttrpc_header_write(&h, hdr);
  static const uint8_t want[] = {0x00, 0x01, 0x23, 0x45, 0x80, 0x00, 0x00, 0x01, 0x02, 0x01};
  assert_memory_equal(hdr, want, sizeof want);
  guest_ttrpc_header_parse(hdr, &h2);
  assert_true(h.length == h2.length && h.stream == h2.stream && h.type == h2.type &&
              h.flags == h2.flags);

  assert_int_equal(guest_ttrpc_code_for(CT_EDENIED), GUEST_RPC_PERMISSION_DENIED);
  assert_int_equal(guest_ttrpc_code_for(CT_EUNSUPPORTED), GUEST_RPC_UNIMPLEMENTED);
}

/* --- pool ----------------------------------------------------------------------------------- */

typedef struct pool_job {
  int value, worked, done, cancelled;
  struct event_base *base;
  int *remaining;
} pool_job;

static void pool_work(void *ud) {
  pool_job *j = ud;
  usleep(1000);
  j->worked = j->value * 2;
}

static void pool_done(void *ud, int cancelled) {
  pool_job *j = ud;
  j->done++;
  j->cancelled = cancelled;
  if (--*j->remaining == 0) event_base_loopbreak(j->base);
}

/* A job that holds its worker until the test opens the gate: what runs and what waits is then
 * known exactly, however slowly the machine runs the threads. */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int open;
} pool_gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static void pool_gate_set(int open) {
  pthread_mutex_lock(&pool_gate.mu);
  pool_gate.open = open;
  pthread_cond_broadcast(&pool_gate.cv);
  pthread_mutex_unlock(&pool_gate.mu);
}

static void pool_gated_work(void *ud) {
  pthread_mutex_lock(&pool_gate.mu);
  while (!pool_gate.open) pthread_cond_wait(&pool_gate.cv, &pool_gate.mu);
  pthread_mutex_unlock(&pool_gate.mu);
  pool_work(ud);
}

static void *pool_free_thread(void *p) {
  guest_pool_free(p);
  return NULL;
}

static void test_pool(void **state) {
  (void)state;
  ct_err err;
  struct event_base *base = event_base_new();
  guest_pool *p = NULL;
  CT_ASSERT_OK(guest_pool_new(base, 4, 64, &p, &err), &err);
  pool_job jobs[40];
  int remaining = 40;
  for (int i = 0; i < 40; i++) {
    jobs[i] = (pool_job){.value = i, .base = base, .remaining = &remaining};
    CT_ASSERT_OK(guest_pool_submit(p, pool_work, pool_done, &jobs[i], &err), &err);
  }
  event_base_dispatch(base);
  for (int i = 0; i < 40; i++) {
    assert_true(jobs[i].done == 1 && !jobs[i].cancelled);
    assert_int_equal(jobs[i].worked, 2 * i);
  }
  guest_pool_stats st;
  guest_pool_get_stats(p, &st);
  assert_int_equal(st.completed, 40);
  guest_pool_free(p);

  /* A full queue refuses: the one worker is held in a gated job, two jobs wait, the next is
   * refused. */
  CT_ASSERT_OK(guest_pool_new(base, 1, 2, &p, &err), &err);
  remaining = 100;
  for (int i = 0; i < 4; i++) jobs[i] = (pool_job){.value = i + 1, .base = base, .remaining = &remaining};
  pool_gate_set(0);
  CT_ASSERT_OK(guest_pool_submit(p, pool_gated_work, pool_done, &jobs[0], &err), &err);
  for (int t = 0;; t++) {
    guest_pool_get_stats(p, &st);
    if (st.running == 1) break;
    assert_true(t < 30000); /* the worker took the job within 30 s */
    usleep(1000);
  }
  CT_ASSERT_OK(guest_pool_submit(p, pool_work, pool_done, &jobs[1], &err), &err);
  CT_ASSERT_OK(guest_pool_submit(p, pool_work, pool_done, &jobs[2], &err), &err);
  assert_int_equal(guest_pool_submit(p, pool_work, pool_done, &jobs[3], &err), CT_ELIMIT);
  assert_non_null(strstr(err.msg, "server busy: 2 requests are already waiting"));
  guest_pool_get_stats(p, &st);
  assert_true(st.running == 1 && st.queued == 2);

  /* Freeing waits for the running job and cancels what never ran, still calling its `done`. The
   * pool is freed on another thread; the gate opens only once the pool refuses as shutting down,
   * so the two waiting jobs are certainly cancelled, not run. */
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, pool_free_thread, p), 0);
  for (int t = 0;; t++) {
    assert_int_equal(guest_pool_submit(p, pool_work, pool_done, &jobs[3], &err), CT_ELIMIT);
    if (strstr(err.msg, "shutting down")) break;
    assert_true(t < 30000);
    usleep(1000);
  }
  pool_gate_set(1);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_true(jobs[0].done == 1 && !jobs[0].cancelled && jobs[0].worked == 2);
  for (int i = 1; i < 3; i++) assert_true(jobs[i].done == 1 && jobs[i].cancelled && jobs[i].worked == 0);
  assert_int_equal(jobs[3].done, 0);
  event_base_free(base);
}

/* --- server ------------------------------------------------------------------------------- */

static guest_ttrpc_call *held;

static void srv_echo(guest_ttrpc_call *call, const guest_ttrpc_request *req, void *ud) {
  (void)ud;
  guest_ttrpc_reply(call, GUEST_RPC_OK, NULL, req->payload, req->payload_len);
}

static void srv_hold(guest_ttrpc_call *call, const guest_ttrpc_request *req, void *ud) {
  (void)req;
  (void)ud;
  held = call;
}

static int cancels;

static void srv_cancelled(guest_ttrpc_call *call, void *ud) {
  (void)ud;
  cancels++;
  assert_ptr_equal(call, held);
  held = NULL;
  guest_ttrpc_reply(call, GUEST_RPC_OK, NULL, (const uint8_t *)"dropped", 7);
}

/* Holds the call and abandons it when told to. */
static void srv_hold_cancellable(guest_ttrpc_call *call, const guest_ttrpc_request *req, void *ud) {
  srv_hold(call, req, ud);
  guest_ttrpc_call_on_cancel(call, srv_cancelled, NULL);
}

static const guest_ttrpc_method srv_methods[] = {
    {"t.S", "Echo", srv_echo}, {"t.S", "Hold", srv_hold}, {"t.S", "HoldC", srv_hold_cancellable}};

static void send_call_t(int fd, uint32_t stream, const char *method, const char *payload, int64_t timeout_nano) {
  ct_err err;
  ct_buf b;
  ct_buf_init(&b, 4096);
  CT_ASSERT_OK(guest_ttrpc_request_encode("t.S", method, (const uint8_t *)payload, strlen(payload), &b,
                                          &err), &err);
  if (timeout_nano) CT_ASSERT_OK(guest_pb_put_varint(&b, 4, (uint64_t)timeout_nano, &err), &err);
  uint8_t hdr[GUEST_TTRPC_HEADER_LEN];
  guest_ttrpc_header h = {.length = (uint32_t)b.len, .stream = stream, .type = GUEST_TTRPC_REQUEST};
  guest_ttrpc_header_write(&h, hdr);
  assert_int_equal(write(fd, hdr, sizeof hdr), (ssize_t)sizeof hdr);
  assert_int_equal(write(fd, b.data, b.len), (ssize_t)b.len);
  ct_buf_free(&b);
}

static void send_call(int fd, uint32_t stream, const char *method, const char *payload) {
  send_call_t(fd, stream, method, payload, 0);
}

/* Runs the loop until a whole response frame is readable; returns its stream and code. */
static void read_response(struct event_base *base, int fd, uint32_t *stream, int *code, char *payload,
                          size_t cap) {
  uint8_t buf[4096];
  size_t have = 0;
  for (int i = 0; i < 200; i++) {
    event_base_loop(base, EVLOOP_NONBLOCK);
    ssize_t r = recv(fd, buf + have, sizeof buf - have, MSG_DONTWAIT);
    if (r > 0) have += (size_t)r;
    if (have >= GUEST_TTRPC_HEADER_LEN) {
      guest_ttrpc_header h;
      guest_ttrpc_header_parse(buf, &h);
      if (have >= GUEST_TTRPC_HEADER_LEN + h.length) {
        assert_int_equal(h.type, GUEST_TTRPC_RESPONSE);
        ct_err err;
        const uint8_t *p;
        size_t n;
        char msg[128];
        CT_ASSERT_OK(guest_ttrpc_response_decode(buf + GUEST_TTRPC_HEADER_LEN, h.length, code, msg,
                                                 sizeof msg, &p, &n, &err), &err);
        *stream = h.stream;
        snprintf(payload, cap, "%.*s", (int)n, (const char *)p);
        return;
      }
    }
    usleep(1000);
  }
  fail_msg("no response");
}

static void test_server(void **state) {
  (void)state;
  ct_err err;
  struct event_base *base = event_base_new();
  guest_ttrpc_server *s = NULL;
  CT_ASSERT_OK(guest_ttrpc_server_new(base, NULL, srv_methods, 3, NULL, &s, &err), &err);
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  guest_ttrpc_server_adopt(s, sv[0]);
  uint32_t stream;
  int code;
  char payload[256];
  send_call(sv[1], 1, "Echo", "ping");
  read_response(base, sv[1], &stream, &code, payload, sizeof payload);
  assert_int_equal(stream, 1);
  assert_int_equal(code, 0);
  assert_string_equal(payload, "ping");
  send_call(sv[1], 3, "Nope", "");
  read_response(base, sv[1], &stream, &code, payload, sizeof payload);
  assert_int_equal(stream, 3);
  assert_int_equal(code, GUEST_RPC_UNIMPLEMENTED);
  /* A deferred answer, sent after the caller's next call was answered. */
  send_call(sv[1], 5, "Hold", "");
  send_call(sv[1], 7, "Echo", "second");
  read_response(base, sv[1], &stream, &code, payload, sizeof payload);
  assert_int_equal(stream, 7);
  assert_non_null(held);
  guest_ttrpc_reply(held, GUEST_RPC_OK, NULL, (const uint8_t *)"late", 4);
  held = NULL;
  read_response(base, sv[1], &stream, &code, payload, sizeof payload);
  assert_int_equal(stream, 5);
  assert_string_equal(payload, "late");
  /* The caller hangs up while its call is held: the late answer is dropped, nothing leaks. */
  send_call(sv[1], 9, "Hold", "");
  for (int i = 0; i < 50 && !held; i++) {
    event_base_loop(base, EVLOOP_NONBLOCK);
    usleep(1000);
  }
  assert_non_null(held);
  close(sv[1]);
  for (int i = 0; i < 20; i++) event_base_loop(base, EVLOOP_NONBLOCK);
  guest_ttrpc_stats st;
  guest_ttrpc_get_stats(s, &st);
  assert_int_equal(st.connections, 1);
  assert_int_equal(st.calls, 4);
  guest_ttrpc_server_free(s);
  guest_ttrpc_reply(held, GUEST_RPC_OK, NULL, (const uint8_t *)"gone", 4);
  event_base_free(base);
}

static void test_server_deadlines(void **state) {
  (void)state;
  ct_err err;
  struct event_base *base = event_base_new();
  guest_ttrpc_server *s = NULL;
  CT_ASSERT_OK(guest_ttrpc_server_new(base, NULL, srv_methods, 3, NULL, &s, &err), &err);
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  guest_ttrpc_server_adopt(s, sv[0]);
  uint32_t stream;
  int code;
  char payload[256];
  cancels = 0;
  /* Past its 30 ms deadline: DEADLINE_EXCEEDED, the handler told to cancel (it releases the
   * call, whose answer is dropped); the next answer on the connection is the next call's. */
  send_call_t(sv[1], 1, "HoldC", "", 30 * 1000 * 1000);
  read_response(base, sv[1], &stream, &code, payload, sizeof payload);
  assert_int_equal(stream, 1);
  assert_int_equal(code, GUEST_RPC_DEADLINE_EXCEEDED);
  assert_int_equal(cancels, 1);
  assert_null(held);
  send_call(sv[1], 3, "Echo", "next");
  read_response(base, sv[1], &stream, &code, payload, sizeof payload);
  assert_int_equal(stream, 3);
  assert_string_equal(payload, "next");
  /* Answered before its deadline: the answer goes out, no cancellation follows. */
  send_call_t(sv[1], 5, "HoldC", "", 60 * 1000 * 1000 * 1000LL);
  for (int i = 0; i < 50 && !held; i++) {
    event_base_loop(base, EVLOOP_NONBLOCK);
    usleep(1000);
  }
  assert_non_null(held);
  guest_ttrpc_reply(held, GUEST_RPC_OK, NULL, (const uint8_t *)"in time", 7);
  held = NULL;
  read_response(base, sv[1], &stream, &code, payload, sizeof payload);
  assert_int_equal(stream, 5);
  assert_string_equal(payload, "in time");
  /* A deadline already past: answered at once, the handler never runs. */
  send_call_t(sv[1], 7, "HoldC", "", -1);
  read_response(base, sv[1], &stream, &code, payload, sizeof payload);
  assert_int_equal(stream, 7);
  assert_int_equal(code, GUEST_RPC_DEADLINE_EXCEEDED);
  assert_null(held);
  /* A hang-up cancels what the handler still holds. */
  send_call(sv[1], 9, "HoldC", "");
  for (int i = 0; i < 50 && !held; i++) {
    event_base_loop(base, EVLOOP_NONBLOCK);
    usleep(1000);
  }
  assert_non_null(held);
  close(sv[1]);
  for (int i = 0; i < 50 && held; i++) {
    event_base_loop(base, EVLOOP_NONBLOCK);
    usleep(1000);
  }
  assert_null(held);
  assert_int_equal(cancels, 2);
  guest_ttrpc_stats st;
  guest_ttrpc_get_stats(s, &st);
  assert_int_equal(st.deadline_exceeded, 2);
  guest_ttrpc_server_free(s);
  event_base_free(base);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pb_codec),
      cmocka_unit_test(test_request_response),
      cmocka_unit_test(test_pool),
      cmocka_unit_test(test_server),
      cmocka_unit_test(test_server_deadlines),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
