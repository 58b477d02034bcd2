/*
 * kbs_server.h - the Key Broker Service: RCAR (/auth, /attest), resources, admin API, metrics.
 */
#ifndef KBS_SERVER_H
#define KBS_SERVER_H

#include "ct_status.h"
#include "kbs_config.h"
#include "kbs_http.h"

/* Started as root, the KBS serves as this user (KBS_USER overrides). */
#define KBS_DEFAULT_USER "kbs"

typedef struct kbs_server kbs_server;

/* Builds every component from the configuration (storage, attestation service, policies,
 * token verifier, admin) and starts serving. With `run_as` (a user name) the process switches
 * to that user after opening keys, sockets and storage, before serving the first request. */
CT_RESULT kbs_server_start(const kbs_config *cfg, const char *run_as, kbs_server **out, ct_err *err);
/* Builds every component but serves nothing: requests go through kbs_server_handle. */
CT_RESULT kbs_server_create(const kbs_config *cfg, kbs_server **out, ct_err *err);
/* Handles one request in the calling thread (what the HTTP workers call). */
void kbs_server_handle(kbs_server *s, const kbs_http_request *req, kbs_http_response *resp);
/* The TCP port bound for sockets[i] (after port 0 was resolved). */
int kbs_server_port(const kbs_server *s, size_t i);
/* Sweeps expired attested sessions and reloads policies changed in shared storage; call every
 * few seconds. */
void kbs_server_tick(kbs_server *s);
void kbs_server_stop(kbs_server *s);

#endif
