/*
 * Fuzzes the ttRPC server's input path: the bytes arrive on a real socket (socketpair) adopted by
 * a guest_ttrpc server on a libevent loop, so framing, oversized-frame discarding, Request
 * decoding and method dispatch all run as in the daemon. The first byte selects a direct decoder
 * instead (Request, Response) for short inputs.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "guest_pb.h"
#include "guest_ttrpc.h"

static void fuzz__echo(guest_ttrpc_call *call, const guest_ttrpc_request *req, void *ud) {
  (void)ud;
  guest_ttrpc_reply(call, GUEST_RPC_OK, NULL, req->payload, req->payload_len);
}

static void fuzz__fail(guest_ttrpc_call *call, const guest_ttrpc_request *req, void *ud) {
  (void)req;
  (void)ud;
  guest_ttrpc_reply(call, GUEST_RPC_NOT_FOUND, "no", NULL, 0);
}

static const guest_ttrpc_method fuzz__methods[] = {
    {"s", "echo", fuzz__echo},
    {"attestation_agent.AttestationAgentService", "GetTeeType", fuzz__fail},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > (256u << 10)) return 0;
  ct_err err;
  if (data[0] == 'R') {
    guest_ttrpc_request r;
    if (guest_ttrpc_request_decode(data + 1, size - 1, &r, &err) == CT_OK &&
        (!r.service[0] || !r.method[0] || r.payload_len > size))
      abort();
    int code;
    char msg[64];
    const uint8_t *p;
    size_t n;
    if (guest_ttrpc_response_decode(data + 1, size - 1, &code, msg, sizeof msg, &p, &n, &err) ==
            CT_OK &&
        (strlen(msg) >= sizeof msg || n > size))
      abort();
    return 0;
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 0;
  struct event_base *base = event_base_new();
  guest_ttrpc_server *s = NULL;
  if (!base || guest_ttrpc_server_new(base, NULL, fuzz__methods, 2, NULL, &s, &err)) abort();
  guest_ttrpc_server_adopt(s, sv[0]);
  /* Write everything (the peer is drained as we go, so large inputs cannot block). */
  size_t off = 0;
  uint8_t sink[65536];
  while (off < size) {
    ssize_t w = send(sv[1], data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w > 0) off += (size_t)w;
    else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break; /* the server hung up */
    event_base_loop(base, EVLOOP_NONBLOCK);
    while (recv(sv[1], sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
  }
  shutdown(sv[1], SHUT_WR);
  for (int i = 0; i < 8; i++) {
    event_base_loop(base, EVLOOP_NONBLOCK);
    while (recv(sv[1], sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
  }
  guest_ttrpc_stats st;
  guest_ttrpc_get_stats(s, &st);
  if (st.connections != 1) abort();
  guest_ttrpc_server_free(s);
  event_base_free(base);
  close(sv[1]);
  return 0;
}
