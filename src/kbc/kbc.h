/*
 * kbc.h - KBS client: the RCAR handshake, resource fetches and JWE decryption, wire-compatible
 * with Trustee's KBS (protocol 0.4.0) and with this project's KBS.
 *
 * A client keeps its attestation token and its ephemeral TEE key until the token expires, so
 * many fetches cost one attestation. A policy denial (401 PolicyDeny) is reported at once,
 * without re-attesting; errors carry the KBS's `detail`. Passport mode fetches with a token and
 * TEE key obtained elsewhere (kbc_opts.token + tee_key_pem) and never attests.
 *
 * A client is not thread-safe: use one per thread or serialise calls.
 */
#ifndef KBC_H
#define KBC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"

#define KBC_PROTOCOL_VERSION "0.4.0"
#define KBC_RESOURCE_MAX (16u << 20) /* largest response body accepted */
#define KBC_URI_MAX 1024

/* Produces evidence binding `report_data` (48 bytes, SHA-384). *evidence: new reference. */
typedef CT_RESULT (*kbc_evidence_fn)(void *ud, const uint8_t *report_data, size_t len,
                                     json_t **evidence, ct_err *err);

typedef struct kbc_opts {
  const char *tee;              /* kbs-types TEE name ("sample", "snp", ...); RCAR mode */
  kbc_evidence_fn evidence;     /* RCAR mode: the attester */
  void *evidence_ud;
  /* "ECDH-ES+A256KW" (EC P-256, default; "ECDH-ES+A256KW-P256" also accepted),
   * "ECDH-ES+A256KW-P521" or "RSA-OAEP-256" (RSA-2048). */
  const char *tee_key_alg;
  const char *init_data_toml;   /* sent in /attest as {"format":"toml","body":...}; may be NULL */
  /* RCAR mode with a fixed TEE key (PEM private key, EC P-256/P-521 or RSA) instead of a fresh
   * ephemeral key per attestation: what `kbs-client attest --tee-key-file` needs to hand the
   * token to a passport-mode client holding the same key. */
  const char *rcar_key_pem;
  /* Passport mode: an attestation token and the PEM private key it was issued for. */
  const char *token;
  const char *tee_key_pem;
  unsigned attempts;            /* transport attempts per request; 0 means 5 */
  unsigned backoff_ms;          /* first retry delay, doubled each time (cap 5 s); 0 means 1000 */
  long timeout_s;               /* per-request timeout; 0 means 60 */
} kbc_opts;

typedef struct kbc_stats {
  unsigned long attestations;   /* successful RCAR handshakes */
  unsigned long fetches;        /* successful resource fetches */
} kbc_stats;

typedef struct kbc_client kbc_client;

/* `url` is the KBS base URL (http:// or https://, no trailing /kbs/v0). `cert_pem` (PEM text,
 * may be NULL) is the CA that signs the KBS's TLS certificate. `opts` may be NULL for defaults
 * (but then only passport-free RCAR with no attester: every fetch fails). Caller frees with
 * kbc_client_free. */
CT_RESULT kbc_client_new(const char *url, const char *cert_pem, const kbc_opts *opts,
                         kbc_client **out, ct_err *err);
void kbc_client_free(kbc_client *c);

/* Makes sure the client holds a valid token: reuses the current one unless it expires within
 * 10 s, else runs RCAR (retrying transport failures with backoff). */
CT_RESULT kbc_attest(kbc_client *c, ct_err *err);
/* Forgets the token (and key) so that the next call re-attests. */
void kbc_invalidate(kbc_client *c);

/* The current token (borrowed; NULL before attestation). */
const char *kbc_token(const kbc_client *c);
/* The TEE private key as PKCS#8 PEM. Caller wipes and frees *pem. */
CT_RESULT kbc_tee_key_pem(const kbc_client *c, char **pem, ct_err *err);

/* GET {url}/kbs/v0/{plugin}/{path}: attests if needed, sends the token as a Bearer (and the
 * session cookie), decrypts the JWE. A 401 other than PolicyDeny invalidates the token and is
 * retried once after a fresh attestation. Errors: CT_EDENIED (policy), CT_ENOTFOUND (404),
 * CT_EIO (transport, other statuses), CT_ECRYPTO (undecryptable response). Caller wipes and
 * frees *out (NUL-terminated, not counted in *len). */
CT_RESULT kbc_get(kbc_client *c, const char *plugin, const char *path, uint8_t **out, size_t *len,
                  ct_err *err);
/* kbc_get with plugin "resource" and path "repo/type/tag". */
CT_RESULT kbc_get_resource(kbc_client *c, const char *path, uint8_t **out, size_t *len,
                           ct_err *err);

void kbc_get_stats(const kbc_client *c, kbc_stats *out);
/* After a failed kbc_get: nonzero when the KBS refused the token itself (401 other than a policy
 * verdict), so a fresh attestation may succeed. Passport-mode clients fed by a separate
 * attesting client use it to ask for a new token. */
int kbc_token_rejected(const kbc_client *c);

/* Parses a resource URI `kbs[+plugin]://[host[:port]]/seg/.../seg[?query]` (host and port are
 * ignored, as upstream does). Segments must match [A-Za-z0-9_-][A-Za-z0-9_.-]*; the resource
 * plugin needs exactly three. Writes the plugin name and "seg/seg/seg[?query]". */
CT_RESULT kbc_parse_uri(const char *uri, char *plugin, size_t plugin_cap, char *path,
                        size_t path_cap, ct_err *err);

/* Builds the runtime-data object {"nonce","tee-pubkey"} and the report data
 * SHA-384(JCS({"additional-evidence":"","nonce","tee-pubkey"})) exactly as Trustee recomputes
 * them. `tee_pubkey` must hold exactly {kty,crv,alg,x,y} or {kty,alg,n,e}. */
CT_RESULT kbc_report_data(const char *nonce, const json_t *tee_pubkey, uint8_t out[48],
                          ct_err *err);

#endif
