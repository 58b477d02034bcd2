/*
 * cdh_server.h - the guest daemon's front ends on one event loop: the REST API
 * (api-server-rest routes, loopback only) and the ttRPC services kata-agent calls (Attestation
 * Agent and Confidential Data Hub, each on its own unix socket).
 *
 * The loop never waits on the network: every operation that reaches the KBS, a registry or a
 * device runs on a worker pool and is answered from its completion. Concurrent requests for the
 * same resource (REST or ttRPC) share one KBS fetch.
 */
#ifndef CDH_SERVER_H
#define CDH_SERVER_H

#include "cdh.h"

#define CDH_DEFAULT_CDH_SOCKET "/run/confidential-containers/cdh.sock"
#define CDH_DEFAULT_AA_SOCKET "/run/confidential-containers/attestation-agent/attestation-agent.sock"
#define CDH_DEFAULT_WORKERS 16
#define CDH_QUEUE_MAX 1024        /* operations waiting for a worker */
#define CDH_FLIGHT_WAITERS_MAX 4096 /* callers sharing one resource fetch */

typedef struct cdh_server_opts {
  cdh_hub *hub;
  const char *listen;      /* REST HOST:PORT (loopback only); NULL disables REST */
  const char *cdh_socket;  /* CDH ttRPC socket; NULL disables it */
  const char *aa_socket;   /* AA ttRPC socket; NULL disables it */
  /* When set, a socket that cannot be opened (no permission, a live server already there) is
   * a warning and the service is skipped; otherwise start-up fails. For the default paths. */
  int cdh_socket_optional, aa_socket_optional;
  unsigned workers;        /* 0: CDH_DEFAULT_WORKERS */
} cdh_server_opts;

/* Serves until SIGINT or SIGTERM. Prints "cdh: listening on HOST:PORT" and
 * "cdh: ttrpc <aa|cdh> on PATH" lines on stdout once ready. */
CT_RESULT cdh_server_run(const cdh_server_opts *o, ct_err *err);

/* Validates a REST listen address: HOST:PORT with a loopback host. */
CT_RESULT cdh_server_parse_listen(const char *spec, char *host, size_t cap, unsigned *port,
                                  ct_err *err);

#endif
