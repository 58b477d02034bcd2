/*
 * kbs_http_frame.h - HTTP/1.1 request framing in front of evhttp.
 *
 * libevent 2.1's evhttp takes the first of two conflicting Content-Length headers (request
 * smuggling behind a proxy that takes the other), reads a body framed by a Transfer-Encoding it
 * does not know as empty, refuses valid chunk extensions and answers an invalid chunk size
 * with 413, and closes the connection right after an early 413, so a client still sending its
 * body reads a reset. Every connection's bytes therefore pass through this framer first: it
 * parses each request head itself, refuses ambiguous framing, de-chunks chunked bodies, and
 * hands evhttp only requests with at most one Content-Length and no Transfer-Encoding.
 *
 * A refused request becomes a synthetic request carrying KBS_HTTP_FRAME_ERROR_HEADER
 * ("<status> <reason>"), queued behind the requests before it, so that answers keep their
 * order; the client's own copies of that header are dropped. After it, input is discarded, and
 * the connection lingers (kbs_http_frame_lingering) while the peer may still be sending its
 * body - up to KBS_HTTP_FRAME_DRAIN_MAX bytes - so that a client that sends its whole body
 * before reading gets the 413 or 400 instead of a reset.
 */
#ifndef KBS_HTTP_FRAME_H
#define KBS_HTTP_FRAME_H

#include <stdbool.h>
#include <stddef.h>

#include "ct_status.h"

struct evbuffer;

#define KBS_HTTP_FRAME_MAX_HEAD ((size_t)16 << 10)  /* request line + headers (431 above) */
#define KBS_HTTP_FRAME_MAX_LINE ((size_t)4 << 10)   /* a chunk-size line or a trailer line */
#define KBS_HTTP_FRAME_DRAIN_MAX ((size_t)64 << 20) /* bytes read and dropped after a refusal */
#define KBS_HTTP_FRAME_ERROR_HEADER "X-Kbs-Frame-Error"

typedef struct kbs_http_frame kbs_http_frame;

CT_RESULT kbs_http_frame_new(size_t max_body, kbs_http_frame **out, ct_err *err);
void kbs_http_frame_free(kbs_http_frame *f);

typedef enum kbs_http_frame_result {
  KBS_HTTP_FRAME_NEED_MORE, /* nothing appended to out */
  KBS_HTTP_FRAME_PROGRESS,  /* out grew */
  KBS_HTTP_FRAME_FATAL,     /* out of memory: close the connection */
} kbs_http_frame_result;

/* Consumes what it can of `in` (bytes from the peer) and appends to `out` what evhttp is to
 * parse. *send_continue is set when the peer waits for "100 Continue" before sending a chunked
 * body (the framer holds such heads back until the body is complete, so evhttp cannot answer). */
kbs_http_frame_result kbs_http_frame_feed(kbs_http_frame *f, struct evbuffer *in, struct evbuffer *out,
                                          bool *send_continue);

/* True once a request was refused (everything after it is discarded). */
bool kbs_http_frame_refused(const kbs_http_frame *f);
/* True while, after a refusal, the peer may still be sending bytes worth reading (and dropping)
 * before the connection is closed. */
bool kbs_http_frame_lingering(const kbs_http_frame *f);

#endif
