/*
 * builtins_uri.c - uri.parse, uri.is_valid (Go net/url.Parse semantics, as OPA uses them) and
 * uuid.parse, uuid.rfc4122 (google/uuid semantics).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "rego_bi.h"

#define URI_MAX (64u << 10) /* longest URI text accepted */

/* ---------------------------------------------------------------- Go net/url */
enum { ENC_PATH, ENC_HOST, ENC_ZONE, ENC_USER, ENC_FRAG };

typedef struct {
  const char *scheme, *host, *path, *raw_path, *query, *frag, *opaque;
  char err[512];
} uri_parts;

static bool rego__uri__alnum(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
static int rego__uri__hex(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Go's shouldEscape for the modes used here. */
static bool rego__uri__should_escape(unsigned char c, int mode) {
  if (rego__uri__alnum(c)) return false;
  if ((mode == ENC_HOST || mode == ENC_ZONE) && strchr("!$&'()*+,;=:[]<>\"", c) && c) return false;
  if (c && strchr("-_.~", c)) return false;
  if (c && strchr("$&+,/:;=?@", c)) {
    if (mode == ENC_PATH) return c == '?';
    if (mode == ENC_USER) return c == '@' || c == '/' || c == '?' || c == ':';
    if (mode == ENC_FRAG) return false;
  }
  if (mode == ENC_FRAG && c && strchr("!()*", c)) return false;
  return true;
}

/* Go's unescape: validates escapes (and host characters) and decodes into arena memory. */
static bool rego__uri__unescape(rg_arena *a, const char *s, size_t n, int mode, const char **out, uri_parts *u) {
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)s[i];
    if (c == '%') {
      if (i + 2 >= n || rego__uri__hex((unsigned char)s[i + 1]) < 0 || rego__uri__hex((unsigned char)s[i + 2]) < 0) {
        size_t l = n - i > 3 ? 3 : n - i;
        snprintf(u->err, sizeof(u->err), "invalid URL escape \"%.*s\"", (int)l, s + i);
        return false;
      }
      if (mode == ENC_HOST && rego__uri__hex((unsigned char)s[i + 1]) < 8 && strncmp(s + i, "%25", 3)) {
        snprintf(u->err, sizeof(u->err), "invalid URL escape \"%.3s\"", s + i);
        return false;
      }
      if (mode == ENC_ZONE) {
        unsigned v = (unsigned)(rego__uri__hex((unsigned char)s[i + 1]) << 4 | rego__uri__hex((unsigned char)s[i + 2]));
        if (strncmp(s + i, "%25", 3) && v != ' ' && rego__uri__should_escape((unsigned char)v, ENC_HOST)) {
          snprintf(u->err, sizeof(u->err), "invalid URL escape \"%.3s\"", s + i);
          return false;
        }
      }
      i += 3;
    } else {
      if ((mode == ENC_HOST || mode == ENC_ZONE) && c < 0x80 && rego__uri__should_escape(c, mode)) {
        snprintf(u->err, sizeof(u->err), "invalid character \"%c\" in host name", c);
        return false;
      }
      i++;
    }
  }
  char *o = rg_alloc(a, n + 1);
  if (!o) {
    snprintf(u->err, sizeof(u->err), "out of memory");
    return false;
  }
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%') {
      o[w++] = (char)(rego__uri__hex((unsigned char)s[i + 1]) << 4 | rego__uri__hex((unsigned char)s[i + 2]));
      i += 2;
    } else
      o[w++] = s[i];
  }
  o[w] = 0;
  *out = o;
  return true;
}

static bool rego__uri__valid_port(const char *p, size_t n) {
  if (n == 0) return true;
  if (p[0] != ':') return false;
  for (size_t i = 1; i < n; i++)
    if (p[i] < '0' || p[i] > '9') return false;
  return true;
}

/* Go's %q of a string: printable bytes kept, quotes and backslashes escaped. */
static void rego__uri__quote(char *dst, size_t cap, const char *s, size_t n) {
  size_t w = 0;
  if (w + 1 < cap) dst[w++] = '"';
  for (size_t i = 0; i < n && w + 5 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      dst[w++] = '\\';
      dst[w++] = (char)c;
    } else if (c < 0x20 || c == 0x7f) {
      w += (size_t)snprintf(dst + w, cap - w, "\\x%02x", c);
    } else
      dst[w++] = (char)c;
  }
  if (w + 1 < cap) dst[w++] = '"';
  dst[w < cap ? w : cap - 1] = 0;
}

static bool rego__uri__host(rg_arena *a, const char *h, size_t n, const char **out, uri_parts *u) {
  if (n && h[0] == '[') {
    const char *rb = NULL;
    for (size_t i = n; i-- > 0;)
      if (h[i] == ']') {
        rb = h + i;
        break;
      }
    if (!rb) {
      snprintf(u->err, sizeof(u->err), "missing ']' in host");
      return false;
    }
    const char *cp = rb + 1;
    size_t cpl = (size_t)(h + n - cp);
    if (!rego__uri__valid_port(cp, cpl)) {
      char q[128];
      rego__uri__quote(q, sizeof(q), cp, cpl);
      snprintf(u->err, sizeof(u->err), "invalid port %s after host", q);
      return false;
    }
    const char *zone = NULL;
    for (const char *p = h; p + 3 <= rb; p++)
      if (!strncmp(p, "%25", 3)) {
        zone = p;
        break;
      }
    if (zone) {
      const char *h1, *h2, *h3;
      if (!rego__uri__unescape(a, h, (size_t)(zone - h), ENC_HOST, &h1, u) ||
          !rego__uri__unescape(a, zone, (size_t)(rb - zone), ENC_ZONE, &h2, u) ||
          !rego__uri__unescape(a, rb, (size_t)(h + n - rb), ENC_HOST, &h3, u))
        return false;
      size_t l1 = strlen(h1), l2 = strlen(h2), l3 = strlen(h3);
      char *o = rg_alloc(a, l1 + l2 + l3 + 1);
      if (!o) return false;
      memcpy(o, h1, l1);
      memcpy(o + l1, h2, l2);
      memcpy(o + l1 + l2, h3, l3);
      *out = o;
      return true;
    }
  } else {
    for (size_t i = n; i-- > 0;)
      if (h[i] == ':') {
        if (!rego__uri__valid_port(h + i, n - i)) {
          char q[128];
          rego__uri__quote(q, sizeof(q), h + i, n - i);
          snprintf(u->err, sizeof(u->err), "invalid port %s after host", q);
          return false;
        }
        break;
      }
  }
  return rego__uri__unescape(a, h, n, ENC_HOST, out, u);
}

static bool rego__uri__valid_userinfo(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (rego__uri__alnum(c)) continue;
    if (!strchr("-._:~!$&'()*+,;=%@", c) || !c) return false;
  }
  return true;
}

/* Go's parse() on the part before '#'. */
static bool rego__uri__parse_main(rg_arena *a, const char *s, size_t n, uri_parts *u) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
      snprintf(u->err, sizeof(u->err), "net/url: invalid control character in URL");
      return false;
    }
  if (n == 1 && s[0] == '*') {
    u->path = "*";
    return true;
  }
  const char *rest = s;
  size_t rl = n;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) continue;
    if ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.') {
      if (i == 0) break;
      continue;
    }
    if (c == ':') {
      if (i == 0) {
        snprintf(u->err, sizeof(u->err), "missing protocol scheme");
        return false;
      }
      char *sc = rg_strndup(a, s, i);
      if (!sc) return false;
      for (char *p = sc; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
      u->scheme = sc;
      rest = s + i + 1;
      rl = n - i - 1;
    }
    break;
  }
  /* query */
  const char *q = memchr(rest, '?', rl);
  if (q) {
    size_t ql = (size_t)(rest + rl - q - 1);
    bool only_trailing = ql == 0;
    if (!only_trailing) {
      u->query = rg_strndup(a, q + 1, ql);
      if (!u->query) return false;
    }
    rl = (size_t)(q - rest);
  }
  if (!(rl && rest[0] == '/')) {
    if (u->scheme) {
      u->opaque = rg_strndup(a, rest, rl);
      return u->opaque != NULL;
    }
    const char *sl = memchr(rest, '/', rl);
    size_t segl = sl ? (size_t)(sl - rest) : rl;
    if (memchr(rest, ':', segl)) {
      snprintf(u->err, sizeof(u->err), "first path segment in URL cannot contain colon");
      return false;
    }
  }
  if ((u->scheme || !(rl >= 3 && !strncmp(rest, "///", 3))) && rl >= 2 && !strncmp(rest, "//", 2)) {
    const char *auth = rest + 2;
    size_t al = rl - 2;
    const char *sl = memchr(auth, '/', al);
    size_t authl = sl ? (size_t)(sl - auth) : al;
    rest = sl ? sl : auth + al;
    rl = sl ? al - authl : 0;
    const char *at = NULL;
    for (size_t i = authl; i-- > 0;)
      if (auth[i] == '@') {
        at = auth + i;
        break;
      }
    const char *hs = at ? at + 1 : auth;
    if (!rego__uri__host(a, hs, (size_t)(auth + authl - hs), &u->host, u)) return false;
    if (at) {
      if (!rego__uri__valid_userinfo(auth, (size_t)(at - auth))) {
        snprintf(u->err, sizeof(u->err), "net/url: invalid userinfo");
        return false;
      }
      const char *dummy;
      if (!rego__uri__unescape(a, auth, (size_t)(at - auth), ENC_USER, &dummy, u)) return false;
    }
  }
  /* setPath: RawPath only when the default encoding of the decoded path differs */
  const char *path;
  if (!rego__uri__unescape(a, rest, rl, ENC_PATH, &path, u)) return false;
  if (*path) {
    u->path = path;
    ct_buf b;
    ct_buf_init(&b, URI_MAX * 3 + 16);
    ct_err e = {0};
    bool same = true;
    for (const char *p = path; *p && same; p++) {
      unsigned char c = (unsigned char)*p;
      if (rego__uri__should_escape(c, ENC_PATH)) {
        if (ct_buf_printf(&b, &e, "%%%02X", c) != CT_OK) same = false;
      } else if (ct_buf_append(&b, p, 1, &e) != CT_OK)
        same = false;
    }
    same = same && b.len == rl && !memcmp(b.data, rest, rl);
    ct_buf_free(&b);
    u->raw_path = same ? path : rg_strndup(a, rest, rl);
    if (!u->raw_path) return false;
  }
  return true;
}

/* Go's url.Parse. On failure u->err holds the full "parse \"…\": reason" message. */
static bool rego__uri__parse(rg_arena *a, const char *s, size_t n, uri_parts *u) {
  memset(u, 0, sizeof(*u));
  const char *hash = memchr(s, '#', n);
  size_t mainl = hash ? (size_t)(hash - s) : n;
  bool ok = rego__uri__parse_main(a, s, mainl, u);
  size_t ql = mainl;
  if (ok && hash && hash + 1 < s + n) {
    ok = rego__uri__unescape(a, hash + 1, (size_t)(s + n - hash - 1), ENC_FRAG, &u->frag, u);
    ql = n;
  }
  if (!ok) {
    char reason[160], q[192];
    snprintf(reason, sizeof(reason), "%.150s", u->err[0] ? u->err : "out of memory");
    rego__uri__quote(q, sizeof(q), s, ql);
    snprintf(u->err, sizeof(u->err), "parse %s: %s", q, reason);
  }
  return ok;
}

static CT_RESULT rego__bi_uri_parse(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "uri.parse", 1, a[0], RV_STR));
  if (a[0]->n > URI_MAX) return rg_bi_fail(ev, "uri.parse: URI longer than %u bytes", URI_MAX);
  uri_parts u;
  if (!rego__uri__parse(A, a[0]->u.s, a[0]->n, &u)) return rg_bi_fail(ev, "uri.parse: %s", u.err);
  rv *k[8], *v[8];
  size_t n = 0;
#define PUT(name, val)                     \
  do {                                     \
    if ((val) && *(val)) {                 \
      k[n] = rv_cstr(A, name);             \
      v[n] = rv_cstr(A, val);              \
      if (!k[n] || !v[n]) return rg_bi_oom(ev); \
      n++;                                 \
    }                                      \
  } while (0)
  PUT("scheme", u.scheme);
  /* Hostname() and Port() */
  if (u.host && *u.host) {
    const char *h = u.host;
    size_t hl = strlen(h);
    const char *colon = strrchr(h, ':');
    const char *port = NULL;
    if (colon && rego__uri__valid_port(colon, strlen(colon))) {
      port = colon + 1;
      hl = (size_t)(colon - h);
    }
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
      h++;
      hl -= 2;
    }
    char *hn = rg_strndup(A, h, hl);
    if (!hn) return rg_bi_oom(ev);
    PUT("hostname", hn);
    PUT("port", port);
  }
  PUT("path", u.path);
  PUT("raw_path", u.raw_path);
  PUT("raw_query", u.query);
  PUT("fragment", u.frag);
#undef PUT
  bool conflict = false;
  *out = rv_obj(A, k, v, n, &conflict);
  return *out ? CT_OK : rg_bi_oom(ev);
}

static CT_RESULT rego__bi_uri_is_valid(rg_ev *ev, rv **a, rv **out) {
  uri_parts u;
  *out = rv_bool(a[0]->t == RV_STR && a[0]->n > 0 && a[0]->n <= URI_MAX && rego__uri__parse(A, a[0]->u.s, a[0]->n, &u));
  return CT_OK;
}

/* ---------------------------------------------------------------- uuid */
static bool rego__uuid__parse(const char *s, size_t n, uint8_t u[16]) {
  if (n == 32) {
    for (int i = 0; i < 16; i++) {
      int h = rego__uri__hex((unsigned char)s[2 * i]), l = rego__uri__hex((unsigned char)s[2 * i + 1]);
      if (h < 0 || l < 0) return false;
      u[i] = (uint8_t)(h << 4 | l);
    }
    return true;
  }
  if (n == 45) {
    if (strncasecmp(s, "urn:uuid:", 9)) return false;
    s += 9;
  } else if (n == 38) {
    s += 1; /* google/uuid examines only the middle 36 bytes */
  } else if (n != 36) {
    return false;
  }
  if (s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') return false;
  static const int off[16] = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};
  for (int i = 0; i < 16; i++) {
    int h = rego__uri__hex((unsigned char)s[off[i]]), l = rego__uri__hex((unsigned char)s[off[i] + 1]);
    if (h < 0 || l < 0) return false;
    u[i] = (uint8_t)(h << 4 | l);
  }
  return true;
}

static CT_RESULT rego__bi_uuid_parse(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "uuid.parse", 1, a[0], RV_STR));
  uint8_t u[16];
  if (!rego__uuid__parse(a[0]->u.s, a[0]->n, u)) {
    *out = NULL; /* OPA: an unparsable UUID is undefined, not an error */
    return CT_OK;
  }
  int version = u[6] >> 4;
  const char *variant = (u[8] & 0xc0) == 0x80 ? "RFC4122"
                        : (u[8] & 0xe0) == 0xc0 ? "Microsoft"
                        : (u[8] & 0xe0) == 0xe0 ? "Future"
                                                : "Reserved";
  rv *k[8], *v[8];
  size_t n = 0;
  k[n] = rv_cstr(A, "version");
  v[n++] = rv_int(A, version);
  k[n] = rv_cstr(A, "variant");
  v[n++] = rv_cstr(A, variant);
  if (version == 1 || version == 2) {
    int64_t t = (int64_t)((uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3]);
    t |= (int64_t)((uint16_t)(u[4] << 8 | u[5])) << 32;
    t |= (int64_t)((uint16_t)(u[6] << 8 | u[7]) & 0xfff) << 48;
    int64_t sec = t - 122192928000000000LL;
    int64_t nsec = (sec % 10000000) * 100;
    sec /= 10000000;
    char node[18];
    snprintf(node, sizeof(node), "%02x-%02x-%02x-%02x-%02x-%02x", u[10], u[11], u[12], u[13], u[14], u[15]);
    const char *mv = (u[10] & 3) == 3 ? "local:multicast" : (u[10] & 1) ? "global:multicast" : (u[10] & 2) ? "local:unicast" : "global:unicast";
    k[n] = rv_cstr(A, "time");
    v[n++] = rv_int(A, sec * 1000000000LL + nsec);
    k[n] = rv_cstr(A, "nodeid");
    v[n++] = rv_cstr(A, node);
    k[n] = rv_cstr(A, "macvariables");
    v[n++] = rv_cstr(A, mv);
    k[n] = rv_cstr(A, "clocksequence");
    v[n++] = rv_int(A, (u[8] << 8 | u[9]) & 0x3fff);
    if (version == 2) {
      char dom[24];
      static const char *const doms[] = {"Person", "Group", "Org"};
      if (u[9] < 3) snprintf(dom, sizeof(dom), "%s", doms[u[9]]);
      else snprintf(dom, sizeof(dom), "Domain%d", u[9]);
      k[n] = rv_cstr(A, "id");
      v[n++] = rv_int(A, (int64_t)((uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3]));
      k[n] = rv_cstr(A, "domain");
      v[n++] = rv_cstr(A, dom);
    }
  }
  for (size_t i = 0; i < n; i++)
    if (!k[i] || !v[i]) return rg_bi_oom(ev);
  bool conflict = false;
  *out = rv_obj(A, k, v, n, &conflict);
  return *out ? CT_OK : rg_bi_oom(ev);
}

/* uuid.rfc4122(k): a random version 4 UUID, the same for the same k within one evaluation.
 * Rather than a per-evaluation cache, the UUID is HMAC-SHA256(process secret, evaluation
 * instant || k): stable within an evaluation (its instant is fixed), unpredictable across. */
static uint8_t uuid__secret[32];
static bool uuid__secret_ok;
static pthread_once_t uuid__once = PTHREAD_ONCE_INIT;
static void rego__uuid__init(void) { uuid__secret_ok = RAND_bytes(uuid__secret, sizeof(uuid__secret)) == 1; }

static CT_RESULT rego__bi_uuid_rfc4122(rg_ev *ev, rv **a, rv **out) {
  CT_GUARD(rg_bi_want(ev, "uuid.rfc4122", 1, a[0], RV_STR));
  pthread_once(&uuid__once, rego__uuid__init);
  if (!uuid__secret_ok) return rg_bi_fail(ev, "uuid.rfc4122: no randomness available");
  int64_t now = rg_ev_now(ev);
  uint8_t msg[8], mac[32];
  for (int i = 0; i < 8; i++) msg[i] = (uint8_t)((uint64_t)now >> (56 - 8 * i));
  size_t ml = 0;
  EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
  EVP_MAC_CTX *c = m ? EVP_MAC_CTX_new(m) : NULL;
  OSSL_PARAM ps[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0), OSSL_PARAM_construct_end()};
  bool ok = c && EVP_MAC_init(c, uuid__secret, sizeof(uuid__secret), ps) == 1 && EVP_MAC_update(c, msg, 8) == 1 &&
            EVP_MAC_update(c, (const uint8_t *)a[0]->u.s, a[0]->n) == 1 && EVP_MAC_final(c, mac, &ml, sizeof(mac)) == 1;
  EVP_MAC_CTX_free(c);
  EVP_MAC_free(m);
  if (!ok) return rg_bi_fail(ev, "uuid.rfc4122: HMAC failed");
  mac[8] = (uint8_t)((mac[8] & 0x3f) | 0x80);
  mac[6] = (uint8_t)((mac[6] & 0x0f) | 0x40);
  char s[37];
  snprintf(s, sizeof(s), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", mac[0], mac[1], mac[2],
           mac[3], mac[4], mac[5], mac[6], mac[7], mac[8], mac[9], mac[10], mac[11], mac[12], mac[13], mac[14], mac[15]);
  *out = rv_str(A, s, 36);
  return *out ? CT_OK : rg_bi_oom(ev);
}

const rg_builtin rg_builtins_uri[] = {
    {"uri.parse", 1, rego__bi_uri_parse, false},
    {"uri.is_valid", 1, rego__bi_uri_is_valid, false},
    {"uuid.parse", 1, rego__bi_uuid_parse, false},
    {"uuid.rfc4122", 1, rego__bi_uuid_rfc4122, true},
    {NULL, 0, NULL, false},
};
