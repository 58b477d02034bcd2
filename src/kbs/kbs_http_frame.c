#include "kbs_http_frame.h"

#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum {
  FR_HEAD,       /* waiting for a complete request head */
  FR_BODY,       /* passing `left` bytes of a Content-Length body */
  FR_CHUNK_SIZE, /* a chunk-size line */
  FR_CHUNK_DATA, /* `left` bytes of chunk data */
  FR_CHUNK_CRLF, /* the line end after chunk data */
  FR_TRAILER,    /* trailer lines up to the empty one */
  FR_CLOSED,     /* refused: everything is discarded */
} frame__state;

struct kbs_http_frame {
  frame__state st;
  size_t max_body;
  uint64_t left;
  /* chunked request being assembled: its head (without the blank line) and de-chunked body */
  struct evbuffer *head, *body;
  size_t trailer;   /* trailer bytes seen */
  uint64_t linger;  /* after a refusal: bytes the peer may still send that are read and dropped */
};

CT_RESULT kbs_http_frame_new(size_t max_body, kbs_http_frame **out, ct_err *err) {
  kbs_http_frame *f = calloc(1, sizeof *f);
  CT_ENSURE(f, err, CT_ENOMEM, "out of memory");
  f->max_body = max_body;
  f->head = evbuffer_new();
  f->body = evbuffer_new();
  if (!f->head || !f->body) {
    kbs_http_frame_free(f);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  *out = f;
  return CT_OK;
}

void kbs_http_frame_free(kbs_http_frame *f) {
  if (!f) return;
  if (f->head) evbuffer_free(f->head);
  if (f->body) evbuffer_free(f->body);
  free(f);
}

bool kbs_http_frame_refused(const kbs_http_frame *f) { return f->st == FR_CLOSED; }

bool kbs_http_frame_lingering(const kbs_http_frame *f) { return f->st == FR_CLOSED && f->linger; }

/* Queues the synthetic request that makes evhttp hand the refusal to the dispatcher, in order.
 * The peer may still be sending (a body): up to `linger` more bytes are read and dropped. */
static kbs_http_frame_result frame__refuse_linger(kbs_http_frame *f, struct evbuffer *out, int status,
                                                  const char *why, uint64_t linger) {
  f->st = FR_CLOSED;
  f->linger = linger < KBS_HTTP_FRAME_DRAIN_MAX ? linger : KBS_HTTP_FRAME_DRAIN_MAX;
  evbuffer_drain(f->head, evbuffer_get_length(f->head));
  evbuffer_drain(f->body, evbuffer_get_length(f->body));
  if (evbuffer_add_printf(out,
                          "GET / HTTP/1.1\r\n" KBS_HTTP_FRAME_ERROR_HEADER ": %d %s\r\nConnection: close\r\n"
                          "Content-Length: 0\r\n\r\n",
                          status, why) < 0)
    return KBS_HTTP_FRAME_FATAL;
  return KBS_HTTP_FRAME_PROGRESS;
}

static kbs_http_frame_result frame__refuse(kbs_http_frame *f, struct evbuffer *out, int status, const char *why) {
  return frame__refuse_linger(f, out, status, why, KBS_HTTP_FRAME_DRAIN_MAX);
}

/* RFC 9110 token characters */
static bool frame__tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool frame__ieq(const char *a, size_t n, const char *lit) {
  return strlen(lit) == n && strncasecmp(a, lit, n) == 0;
}

typedef struct {
  const char *p;
  size_t n;
} frame__span;

/* What the head says about the body. */
typedef struct {
  bool has_cl, chunked, expect_continue, http10;
  uint64_t cl;
  int status; /* refusal, 0 = none */
  const char *why;
} frame__head_info;

static void frame__bad(frame__head_info *hi, int status, const char *why) {
  if (!hi->status) {
    hi->status = status;
    hi->why = why;
  }
}

static void frame__trim(frame__span *v) {
  while (v->n && (v->p[0] == ' ' || v->p[0] == '\t')) v->p++, v->n--;
  while (v->n && (v->p[v->n - 1] == ' ' || v->p[v->n - 1] == '\t')) v->n--;
}

static void frame__request_line(frame__span l, frame__head_info *hi) {
  const char *sp1 = memchr(l.p, ' ', l.n);
  const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', l.n - (size_t)(sp1 + 1 - l.p)) : NULL;
  if (!sp1 || !sp2 || sp1 == l.p || sp2 == sp1 + 1) return frame__bad(hi, 400, "malformed request line");
  for (const char *c = l.p; c < sp1; c++)
    if (!frame__tchar((unsigned char)*c)) return frame__bad(hi, 400, "malformed request line");
  for (const char *c = sp1 + 1; c < sp2; c++)
    if ((unsigned char)*c <= 0x20 || *c == 0x7f) return frame__bad(hi, 400, "malformed request target");
  frame__span v = {sp2 + 1, l.n - (size_t)(sp2 + 1 - l.p)};
  if (frame__ieq(v.p, v.n, "HTTP/1.0")) hi->http10 = true;
  else if (!frame__ieq(v.p, v.n, "HTTP/1.1")) frame__bad(hi, 400, "unsupported HTTP version (HTTP/1.1 or HTTP/1.0)");
}

static void frame__content_length(frame__span v, frame__head_info *hi) {
  uint64_t n = 0;
  if (!v.n || v.n > 18) return frame__bad(hi, 400, "invalid Content-Length");
  for (size_t i = 0; i < v.n; i++) {
    if (v.p[i] < '0' || v.p[i] > '9') return frame__bad(hi, 400, "invalid Content-Length");
    n = n * 10 + (uint64_t)(v.p[i] - '0');
  }
  if (hi->has_cl && hi->cl != n) return frame__bad(hi, 400, "conflicting Content-Length headers");
  hi->has_cl = true;
  hi->cl = n;
}

/* Transfer-Encoding: only a single "chunked" is understood. */
static void frame__transfer_encoding(frame__span v, frame__head_info *hi) {
  size_t i = 0;
  while (i <= v.n) {
    size_t j = i;
    while (j < v.n && v.p[j] != ',') j++;
    frame__span t = {v.p + i, j - i};
    frame__trim(&t);
    i = j + 1;
    if (!t.n) continue; /* empty list elements are allowed */
    if (!frame__ieq(t.p, t.n, "chunked")) return frame__bad(hi, 501, "unsupported Transfer-Encoding (only chunked)");
    if (hi->chunked) return frame__bad(hi, 400, "chunked applied more than once");
    hi->chunked = true;
  }
}

/* Validates the head (lines end in LF, an optional CR before it) and rebuilds it into `rb`
 * without Content-Length, Transfer-Encoding and the framer's own header; for chunked requests
 * also without Expect. The blank line is not added. */
static int frame__parse_head(const char *h, size_t n, frame__head_info *hi, struct evbuffer *rb) {
  size_t pos = 0, idx = 0;
  /* pass 1: validate; pass 2: rebuild */
  for (int pass = 0; pass < 2 && !hi->status; pass++) {
    pos = 0;
    idx = 0;
    while (pos < n) {
      const char *nl = memchr(h + pos, '\n', n - pos);
      size_t end = nl ? (size_t)(nl - h) : n;
      frame__span l = {h + pos, end - pos};
      pos = end + 1;
      if (l.n && l.p[l.n - 1] == '\r') l.n--;
      if (!l.n) break; /* the blank line */
      if (memchr(l.p, '\r', l.n) || memchr(l.p, 0, l.n)) {
        frame__bad(hi, 400, "bare CR or NUL in the request head");
        return 0;
      }
      if (idx++ == 0) {
        if (pass == 0) frame__request_line(l, hi);
        else if (evbuffer_add(rb, l.p, l.n) < 0 || evbuffer_add(rb, "\r\n", 2) < 0) return -1;
        continue;
      }
      if (l.p[0] == ' ' || l.p[0] == '\t') {
        frame__bad(hi, 400, "obsolete line folding in a header");
        return 0;
      }
      const char *colon = memchr(l.p, ':', l.n);
      if (!colon || colon == l.p) {
        frame__bad(hi, 400, "malformed header line");
        return 0;
      }
      frame__span name = {l.p, (size_t)(colon - l.p)};
      for (size_t i = 0; i < name.n; i++)
        if (!frame__tchar((unsigned char)name.p[i])) {
          frame__bad(hi, 400, "invalid header name (whitespace before ':' or a separator)");
          return 0;
        }
      frame__span v = {colon + 1, l.n - name.n - 1};
      frame__trim(&v);
      for (size_t i = 0; i < v.n; i++)
        if (((unsigned char)v.p[i] < 0x20 && v.p[i] != '\t') || v.p[i] == 0x7f) {
          frame__bad(hi, 400, "control character in a header value");
          return 0;
        }
      bool is_cl = frame__ieq(name.p, name.n, "Content-Length");
      bool is_te = frame__ieq(name.p, name.n, "Transfer-Encoding");
      bool is_expect = frame__ieq(name.p, name.n, "Expect");
      bool is_ours = frame__ieq(name.p, name.n, KBS_HTTP_FRAME_ERROR_HEADER);
      if (pass == 0) {
        if (is_cl) frame__content_length(v, hi);
        else if (is_te) frame__transfer_encoding(v, hi);
        else if (is_expect && frame__ieq(v.p, v.n, "100-continue")) hi->expect_continue = true;
        continue;
      }
      if (is_cl || is_te || is_ours || (is_expect && hi->chunked)) continue;
      if (evbuffer_add(rb, l.p, l.n) < 0 || evbuffer_add(rb, "\r\n", 2) < 0) return -1;
    }
    if (pass == 0 && !hi->status) {
      if (hi->chunked && hi->has_cl) frame__bad(hi, 400, "both Transfer-Encoding and Content-Length");
      else if (hi->chunked && hi->http10) frame__bad(hi, 400, "Transfer-Encoding in an HTTP/1.0 request");
    }
  }
  return 0;
}

/* Finds the end of a complete head at the start of `in`: returns its length including the blank
 * line, 0 when more input is needed, or -1 when it is over the limit. Empty lines before the
 * request line are skipped (RFC 9112 2.2) and *skip says how many bytes they took. */
static long frame__head_end(struct evbuffer *in, size_t *skip) {
  size_t avail = evbuffer_get_length(in);
  size_t look = avail < KBS_HTTP_FRAME_MAX_HEAD + 2 ? avail : KBS_HTTP_FRAME_MAX_HEAD + 2;
  const unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)look);
  if (!p) return look ? -2 : 0;
  size_t i = 0;
  while (i < look && (p[i] == '\n' || (p[i] == '\r' && i + 1 < look && p[i + 1] == '\n'))) i += p[i] == '\r' ? 2 : 1;
  *skip = i;
  size_t line_start = i;
  for (; i < look; i++) {
    if (p[i] != '\n') continue;
    size_t len = i - line_start;
    if (len == 0 || (len == 1 && p[line_start] == '\r')) {
      if (i + 1 - *skip > KBS_HTTP_FRAME_MAX_HEAD) return -1;
      return (long)(i + 1 - *skip);
    }
    line_start = i + 1;
  }
  if (look - *skip > KBS_HTTP_FRAME_MAX_HEAD) return -1;
  return 0;
}

static kbs_http_frame_result frame__head(kbs_http_frame *f, struct evbuffer *in, struct evbuffer *out,
                                         bool *send_continue, bool *progress) {
  size_t skip = 0;
  long hl = frame__head_end(in, &skip);
  if (hl == -2) return KBS_HTTP_FRAME_FATAL;
  if (skip) evbuffer_drain(in, skip);
  if (hl == -1) return frame__refuse(f, out, 431, "request head larger than 16 KiB");
  if (hl == 0) return KBS_HTTP_FRAME_NEED_MORE;
  char *h = malloc((size_t)hl);
  if (!h) return KBS_HTTP_FRAME_FATAL;
  evbuffer_remove(in, h, (size_t)hl);
  frame__head_info hi = {0};
  struct evbuffer *rb = evbuffer_new();
  int rc = rb ? frame__parse_head(h, (size_t)hl, &hi, rb) : -1;
  free(h);
  if (rc < 0) {
    if (rb) evbuffer_free(rb);
    return KBS_HTTP_FRAME_FATAL;
  }
  if (hi.status) {
    evbuffer_free(rb);
    return frame__refuse(f, out, hi.status, hi.why);
  }
  if (hi.chunked) {
    /* held back until the body is complete: evhttp gets it with a Content-Length */
    evbuffer_add_buffer(f->head, rb);
    evbuffer_free(rb);
    f->st = FR_CHUNK_SIZE;
    f->trailer = 0;
    if (hi.expect_continue) *send_continue = true;
    return KBS_HTTP_FRAME_PROGRESS;
  }
  if (hi.has_cl && hi.cl > f->max_body) {
    /* answered at once; the body the client may already be sending is read and dropped */
    evbuffer_free(rb);
    return frame__refuse_linger(f, out, 413, "request body larger than the limit", hi.cl);
  }
  int e = 0;
  if (hi.has_cl && hi.cl) e = evbuffer_add_printf(rb, "Content-Length: %llu\r\n", (unsigned long long)hi.cl) < 0;
  if (!e) e = evbuffer_add(rb, "\r\n", 2) < 0;
  if (!e) e = evbuffer_add_buffer(out, rb) < 0;
  evbuffer_free(rb);
  if (e) return KBS_HTTP_FRAME_FATAL;
  *progress = true;
  f->left = hi.has_cl ? hi.cl : 0;
  f->st = f->left ? FR_BODY : FR_HEAD;
  return KBS_HTTP_FRAME_PROGRESS;
}

/* A chunk-size line: hex digits, then optionally whitespace and chunk extensions (';' ...),
 * which are accepted and dropped. Returns false when the line is malformed. */
static bool frame__chunk_size(const char *l, size_t n, uint64_t *size) {
  size_t i = 0;
  uint64_t v = 0;
  for (; i < n; i++) {
    char c = l[i];
    int d = c >= '0' && c <= '9' ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : -1;
    if (d < 0) break;
    if (i >= 15) return false; /* more than 2^60: no body is that large */
    v = v * 16 + (uint64_t)d;
  }
  if (i == 0) return false;
  size_t j = i;
  while (j < n && (l[j] == ' ' || l[j] == '\t')) j++;
  if (j < n && l[j] != ';') return false;
  if (j == n && j != i) return false; /* trailing whitespace without an extension */
  for (; j < n; j++)
    if (((unsigned char)l[j] < 0x20 && l[j] != '\t') || l[j] == 0x7f) return false;
  *size = v;
  return true;
}

/* Takes one line (without its line end) off `in` when complete: 1 = got it, 0 = need more,
 * -1 = longer than KBS_HTTP_FRAME_MAX_LINE. */
static int frame__line(struct evbuffer *in, char *buf, size_t *len) {
  struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
  if (p.pos < 0) return evbuffer_get_length(in) > KBS_HTTP_FRAME_MAX_LINE ? -1 : 0;
  if ((size_t)p.pos > KBS_HTTP_FRAME_MAX_LINE) return -1;
  size_t n = (size_t)p.pos;
  evbuffer_remove(in, buf, n);
  evbuffer_drain(in, 1);
  if (n && buf[n - 1] == '\r') n--;
  *len = n;
  return 1;
}

kbs_http_frame_result kbs_http_frame_feed(kbs_http_frame *f, struct evbuffer *in, struct evbuffer *out,
                                          bool *send_continue) {
  *send_continue = false;
  bool progress = false;
  char line[KBS_HTTP_FRAME_MAX_LINE + 1];
  for (;;) {
    size_t avail = evbuffer_get_length(in);
    switch (f->st) {
      case FR_CLOSED:
        evbuffer_drain(in, avail);
        f->linger = avail < f->linger ? f->linger - avail : 0;
        return progress ? KBS_HTTP_FRAME_PROGRESS : KBS_HTTP_FRAME_NEED_MORE;
      case FR_HEAD: {
        if (!avail) return progress ? KBS_HTTP_FRAME_PROGRESS : KBS_HTTP_FRAME_NEED_MORE;
        kbs_http_frame_result r = frame__head(f, in, out, send_continue, &progress);
        if (r == KBS_HTTP_FRAME_FATAL) return r;
        if (f->st == FR_CLOSED) progress = true;
        if (r == KBS_HTTP_FRAME_NEED_MORE) return progress ? KBS_HTTP_FRAME_PROGRESS : KBS_HTTP_FRAME_NEED_MORE;
        break;
      }
      case FR_BODY: {
        size_t n = avail < f->left ? avail : (size_t)f->left;
        if (!n) return progress ? KBS_HTTP_FRAME_PROGRESS : KBS_HTTP_FRAME_NEED_MORE;
        if (evbuffer_remove_buffer(in, out, n) != (int)n) return KBS_HTTP_FRAME_FATAL;
        progress = true;
        f->left -= n;
        if (!f->left) f->st = FR_HEAD;
        break;
      }
      case FR_CHUNK_SIZE: {
        size_t n = 0;
        int got = frame__line(in, line, &n);
        if (got == 0) return progress ? KBS_HTTP_FRAME_PROGRESS : KBS_HTTP_FRAME_NEED_MORE;
        uint64_t size = 0;
        if (got < 0 || !frame__chunk_size(line, n, &size)) {
          if (frame__refuse(f, out, 400, "invalid chunk size line") == KBS_HTTP_FRAME_FATAL) return KBS_HTTP_FRAME_FATAL;
          progress = true;
          break;
        }
        if (!size) {
          f->st = FR_TRAILER;
          break;
        }
        if (evbuffer_get_length(f->body) + size > f->max_body) {
          if (frame__refuse(f, out, 413, "request body larger than the limit") == KBS_HTTP_FRAME_FATAL)
            return KBS_HTTP_FRAME_FATAL;
          progress = true;
          break;
        }
        f->left = size;
        f->st = FR_CHUNK_DATA;
        break;
      }
      case FR_CHUNK_DATA: {
        size_t n = avail < f->left ? avail : (size_t)f->left;
        if (!n) return progress ? KBS_HTTP_FRAME_PROGRESS : KBS_HTTP_FRAME_NEED_MORE;
        if (evbuffer_remove_buffer(in, f->body, n) != (int)n) return KBS_HTTP_FRAME_FATAL;
        f->left -= n;
        if (!f->left) f->st = FR_CHUNK_CRLF;
        break;
      }
      case FR_CHUNK_CRLF: {
        unsigned char c[2];
        ev_ssize_t got = evbuffer_copyout(in, c, 2);
        if (got < 1 || (c[0] == '\r' && got < 2)) return progress ? KBS_HTTP_FRAME_PROGRESS : KBS_HTTP_FRAME_NEED_MORE;
        if (c[0] == '\n') evbuffer_drain(in, 1);
        else if (c[0] == '\r' && c[1] == '\n') evbuffer_drain(in, 2);
        else {
          if (frame__refuse(f, out, 400, "chunk data not followed by a line end") == KBS_HTTP_FRAME_FATAL)
            return KBS_HTTP_FRAME_FATAL;
          progress = true;
          break;
        }
        f->st = FR_CHUNK_SIZE;
        break;
      }
      case FR_TRAILER: {
        size_t n = 0;
        int got = frame__line(in, line, &n);
        if (got == 0) return progress ? KBS_HTTP_FRAME_PROGRESS : KBS_HTTP_FRAME_NEED_MORE;
        f->trailer += n + 2;
        if (got < 0 || f->trailer > KBS_HTTP_FRAME_MAX_HEAD) {
          if (frame__refuse(f, out, 431, "trailer larger than 16 KiB") == KBS_HTTP_FRAME_FATAL)
            return KBS_HTTP_FRAME_FATAL;
          progress = true;
          break;
        }
        if (n) break; /* trailer fields are read and dropped */
        size_t bl = evbuffer_get_length(f->body);
        int e = 0;
        if (bl) e = evbuffer_add_printf(f->head, "Content-Length: %zu\r\n", bl) < 0;
        if (!e) e = evbuffer_add(f->head, "\r\n", 2) < 0;
        if (!e) e = evbuffer_add_buffer(out, f->head) < 0;
        if (!e) e = evbuffer_add_buffer(out, f->body) < 0;
        if (e) return KBS_HTTP_FRAME_FATAL;
        progress = true;
        f->st = FR_HEAD;
        break;
      }
    }
  }
}
