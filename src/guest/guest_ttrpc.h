/*
 * guest_ttrpc.h - a ttRPC server (containerd/ttrpc wire protocol) on a libevent loop, for the
 * Attestation Agent and Confidential Data Hub services kata-agent calls on unix sockets.
 *
 * Wire: frames of a 10-byte header (u32be data length, u32be stream id, u8 type, u8 flags) and
 * data. A client sends type 1 (request) on an odd stream id with a protobuf
 * Request{service=1, method=2, payload=3, timeout_nano=4, metadata=5}; the server answers type 2
 * (response) on the same stream with Response{status=1 (google.rpc.Status{code=1, message=2}),
 * payload=2}. Only unary calls exist in the AA and CDH APIs.
 *
 * Bounds: frames above GUEST_TTRPC_FRAME_MAX are answered with RESOURCE_EXHAUSTED (their bytes
 * discarded, as containerd's server does); a frame the 24-bit protocol cannot carry, a response
 * frame from a client, an even stream id or an unknown frame type closes the connection. At most
 * GUEST_TTRPC_INFLIGHT_MAX calls per connection and GUEST_TTRPC_CONN_MAX connections.
 *
 * Handlers run on the loop thread and must not block: slow work goes to a guest_pool and the
 * reply is sent from its completion (also on the loop thread).
 *
 * Deadlines: a request's timeout_nano (set by containerd's client from its context deadline) is
 * honoured as containerd's server does: a call still unanswered when it passes is answered
 * DEADLINE_EXCEEDED at once, and its handler is told to cancel (guest_ttrpc_call_on_cancel); its
 * later answer is dropped. A negative timeout (a deadline already past) is answered
 * DEADLINE_EXCEEDED without running the handler.
 */
#ifndef GUEST_TTRPC_H
#define GUEST_TTRPC_H

#include <stddef.h>
#include <stdint.h>

#include "ct_buf.h"
#include "ct_status.h"

struct event_base;

#define GUEST_TTRPC_HEADER_LEN 10
#define GUEST_TTRPC_FRAME_MAX (4u << 20) /* containerd/ttrpc's messageLengthMax */
#define GUEST_TTRPC_NAME_MAX 256         /* service and method names */
#define GUEST_TTRPC_INFLIGHT_MAX 64
#define GUEST_TTRPC_CONN_MAX 128

enum { GUEST_TTRPC_REQUEST = 1, GUEST_TTRPC_RESPONSE = 2, GUEST_TTRPC_DATA = 3 };
enum { GUEST_TTRPC_FLAG_REMOTE_CLOSED = 1, GUEST_TTRPC_FLAG_REMOTE_OPEN = 2 };

/* google.rpc.Code values used here. */
enum {
  GUEST_RPC_OK = 0,
  GUEST_RPC_INVALID_ARGUMENT = 3,
  GUEST_RPC_DEADLINE_EXCEEDED = 4,
  GUEST_RPC_NOT_FOUND = 5,
  GUEST_RPC_PERMISSION_DENIED = 7,
  GUEST_RPC_RESOURCE_EXHAUSTED = 8,
  GUEST_RPC_FAILED_PRECONDITION = 9,
  GUEST_RPC_UNIMPLEMENTED = 12,
  GUEST_RPC_INTERNAL = 13,
  GUEST_RPC_UNAVAILABLE = 14,
};

typedef struct guest_ttrpc_header {
  uint32_t length;
  uint32_t stream;
  uint8_t type;
  uint8_t flags;
} guest_ttrpc_header;

void guest_ttrpc_header_parse(const uint8_t in[GUEST_TTRPC_HEADER_LEN], guest_ttrpc_header *h);
void guest_ttrpc_header_write(const guest_ttrpc_header *h, uint8_t out[GUEST_TTRPC_HEADER_LEN]);

typedef struct guest_ttrpc_request {
  char service[GUEST_TTRPC_NAME_MAX];
  char method[GUEST_TTRPC_NAME_MAX];
  const uint8_t *payload; /* borrowed from the decoded frame */
  size_t payload_len;
  int64_t timeout_nano;
  size_t metadata; /* number of metadata entries (their contents are not used) */
} guest_ttrpc_request;

/* Decodes a Request message (the data of a request frame). */
CT_RESULT guest_ttrpc_request_decode(const uint8_t *data, size_t len, guest_ttrpc_request *r,
                                     ct_err *err);
/* Encodes a Request (used by tests and the benchmark client). */
CT_RESULT guest_ttrpc_request_encode(const char *service, const char *method, const uint8_t *payload,
                                     size_t len, ct_buf *out, ct_err *err);
/* Encodes a Response: `code` 0 means success (no status is written); otherwise a Status with
 * `message` and no payload. */
CT_RESULT guest_ttrpc_response_encode(int code, const char *message, const uint8_t *payload,
                                      size_t len, ct_buf *out, ct_err *err);
/* Decodes a Response: *code (0 when no status), the message into msg (truncated to cap) and the
 * payload (borrowed). */
CT_RESULT guest_ttrpc_response_decode(const uint8_t *data, size_t len, int *code, char *msg,
                                      size_t cap, const uint8_t **payload, size_t *plen,
                                      ct_err *err);

/* Maps a status to the google.rpc code a ttRPC client sees. */
int guest_ttrpc_code_for(ct_status st);

/* --- server ------------------------------------------------------------------------------ */

typedef struct guest_ttrpc_server guest_ttrpc_server;
typedef struct guest_ttrpc_call guest_ttrpc_call;

/* Called on the loop thread with the decoded request. The handler owns `call` and must
 * eventually answer it exactly once with guest_ttrpc_reply (possibly later, from a pool
 * completion). */
typedef void (*guest_ttrpc_handler)(guest_ttrpc_call *call, const guest_ttrpc_request *req,
                                    void *ud);

typedef struct guest_ttrpc_method {
  const char *service; /* e.g. "api.GetResourceService" */
  const char *method;  /* e.g. "GetResource" */
  guest_ttrpc_handler fn;
} guest_ttrpc_method;

/* Listens on the unix socket `path` (a stale socket there is replaced; any other file is an
 * error), mode 0600. The method table is borrowed and must outlive the server. Unknown methods
 * are answered with UNIMPLEMENTED. */
CT_RESULT guest_ttrpc_server_new(struct event_base *base, const char *path,
                                 const guest_ttrpc_method *methods, size_t n, void *ud,
                                 guest_ttrpc_server **out, ct_err *err);
/* Serves an already connected stream socket (the server owns it from now on). With a NULL path
 * guest_ttrpc_server_new creates a server that only serves adopted sockets (tests, fuzzing,
 * socket activation). */
void guest_ttrpc_server_adopt(guest_ttrpc_server *s, int fd);
/* Closes the listener and every connection; calls still held by handlers are detached (their
 * replies are dropped) and must still be answered to be freed. Unlinks the socket. */
void guest_ttrpc_server_free(guest_ttrpc_server *s);

/* Cancellation: `fn` runs on the loop thread at most once, when the call's deadline passes
 * before its answer (the client has then been answered DEADLINE_EXCEEDED) or when its
 * connection closes. The handler should abandon the work; it still releases the call with
 * guest_ttrpc_reply (nothing more is sent), from `fn` or later. */
typedef void (*guest_ttrpc_cancel_fn)(guest_ttrpc_call *call, void *ud);
void guest_ttrpc_call_on_cancel(guest_ttrpc_call *call, guest_ttrpc_cancel_fn fn, void *ud);

/* Sends the response for `call` and frees it. A payload larger than GUEST_TTRPC_FRAME_MAX
 * becomes a RESOURCE_EXHAUSTED status. When the connection has gone or the call was already
 * answered DEADLINE_EXCEEDED, nothing is sent. */
void guest_ttrpc_reply(guest_ttrpc_call *call, int code, const char *message, const uint8_t *payload,
                       size_t len);
/* Replies with the code and message of an error. */
void guest_ttrpc_reply_err(guest_ttrpc_call *call, const ct_err *err);

typedef struct guest_ttrpc_stats {
  unsigned long connections, calls, refused_frames;
  unsigned long deadline_exceeded; /* calls answered DEADLINE_EXCEEDED */
} guest_ttrpc_stats;
void guest_ttrpc_get_stats(const guest_ttrpc_server *s, guest_ttrpc_stats *out);

#endif
