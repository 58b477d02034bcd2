/*
 * cdh - the guest agent: attestation agent plus confidential data hub in one daemon.
 *
 *   cdh [options]                              serve the REST API on loopback (default :8006)
 *                                              and the AA and CDH ttRPC services (unix sockets)
 *   cdh [options] get-resource kbs:///r/t/t    print the resource bytes
 *   cdh [options] unseal SECRET|-              print the unsealed secret
 *   cdh [options] token                        print {"token","tee_keypair"}
 *   cdh [options] evidence RUNTIME_DATA        print the evidence JSON
 *   cdh [options] pull-image REF --bundle DIR  pull under the image policy into DIR/rootfs,
 *                                              print the manifest digest
 *   cdh [options] check-image REF              "allowed, because ..." or "denied, because ..."
 *
 * Options: -c cdh.toml, --aa-config aa.toml, --initdata FILE, --listen HOST:PORT, --tee TEE,
 * --root DIR (prefix for /dev, /sys, /proc, /run paths), --tpm-tcti CONF, --tpm-ak-handle H
 * (generic TPM attester; default AA_TPM_AK_HANDLE or 0x81010002), --imds-url URL,
 * --sealed-key-dir DIR, --kbs-attempts N; passport mode (no attestation, a token obtained
 * elsewhere): --attestation-token FILE --tee-key-file FILE. Daemon: --cdh-socket PATH and
 * --aa-socket PATH (default: upstream's paths under /run/confidential-containers; "none" turns a
 * service off; --listen none turns REST off), --workers N (threads for KBS, registry and device
 * work; default 16).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cdh.h"
#include "cdh_server.h"
#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_log.h"
#include "ct_mem.h"

typedef struct cdh__args {
  const char *cdh_config, *aa_config, *initdata, *listen, *tee, *root, *tcti, *imds, *key_dir;
  const char *token_file, *tee_key_file, *eventlog, *cdh_socket, *aa_socket;
  unsigned attempts, workers;
  uint32_t ak_handle;
  int argi;
} cdh__args;

static void cdh__usage(void) {
  fprintf(stderr,
          "usage: cdh [-c cdh.toml] [--aa-config aa.toml] [--initdata FILE] [--listen HOST:PORT]\n"
          "           [--tee sample|snp|tdx|az-snp-vtpm|az-tdx-vtpm|tpm] [--root DIR]\n"
          "           [--tpm-tcti CONF] [--tpm-ak-handle H] [--imds-url URL] [--sealed-key-dir DIR] [--kbs-attempts N]\n"
          "           [--attestation-token FILE --tee-key-file FILE]   (passport mode)\n"
          "           [--eventlog-path FILE]   (AAEL, when aa.toml enables the event log)\n"
          "           [--cdh-socket PATH|none] [--aa-socket PATH|none] [--workers N]   (daemon)\n"
          "           [get-resource URI | unseal SECRET|- | token | evidence RUNTIME_DATA |\n"
          "            pull-image REF --bundle DIR | check-image REF]\n");
}

static int cdh__parse_args(int argc, char **argv, cdh__args *a) {
  memset(a, 0, sizeof *a);
  a->listen = "127.0.0.1:8006";
  int i = 1;
  for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
    const char *o = argv[i];
    const char **dst = NULL;
    if (!strcmp(o, "-c") || !strcmp(o, "--config")) dst = &a->cdh_config;
    else if (!strcmp(o, "--aa-config")) dst = &a->aa_config;
    else if (!strcmp(o, "--initdata")) dst = &a->initdata;
    else if (!strcmp(o, "--listen")) dst = &a->listen;
    else if (!strcmp(o, "--tee")) dst = &a->tee;
    else if (!strcmp(o, "--root")) dst = &a->root;
    else if (!strcmp(o, "--tpm-tcti")) dst = &a->tcti;
    else if (!strcmp(o, "--imds-url")) dst = &a->imds;
    else if (!strcmp(o, "--sealed-key-dir")) dst = &a->key_dir;
    else if (!strcmp(o, "--attestation-token")) dst = &a->token_file;
    else if (!strcmp(o, "--tee-key-file")) dst = &a->tee_key_file;
    else if (!strcmp(o, "--eventlog-path")) dst = &a->eventlog;
    else if (!strcmp(o, "--cdh-socket")) dst = &a->cdh_socket;
    else if (!strcmp(o, "--aa-socket")) dst = &a->aa_socket;
    else if (!strcmp(o, "--kbs-attempts") || !strcmp(o, "--workers")) {
      if (i + 1 >= argc) return -1;
      char *end = NULL;
      unsigned long v = strtoul(argv[++i], &end, 10);
      if (!end || *end || v > 1000) {
        fprintf(stderr, "cdh: %s needs a number\n", o);
        return -1;
      }
      if (o[2] == 'k') a->attempts = (unsigned)v;
      else a->workers = (unsigned)v;
      continue;
    } else if (!strcmp(o, "--tpm-ak-handle")) {
      if (i + 1 >= argc) return -1;
      char *end = NULL;
      unsigned long v = strtoul(argv[++i], &end, 0);
      if (!end || *end || v == 0 || v > 0xffffffffUL) {
        fprintf(stderr, "cdh: --tpm-ak-handle needs a handle such as 0x81010002\n");
        return -1;
      }
      a->ak_handle = (uint32_t)v;
      continue;
    } else if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
      return -1;
    } else {
      fprintf(stderr, "cdh: unknown option %s\n", o);
      return -1;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "cdh: %s needs a value\n", o);
      return -1;
    }
    *dst = argv[++i];
  }
  a->argi = i;
  return 0;
}

static CT_RESULT cdh__read_text(const char *path, char **text, size_t *len, ct_err *err) {
  uint8_t *d = NULL;
  CT_GUARD(ct_file_read(path, CDH_CONFIG_MAX, &d, len, err));
  *text = (char *)d;
  return CT_OK;
}

static int cdh__exists(const char *root, const char *abs, char *buf, size_t cap) {
  snprintf(buf, cap, "%s%s", root ? root : "", abs);
  return access(buf, R_OK) == 0;
}

/* Loads configuration in upstream's precedence: explicit files, then init-data entries, then
 * peer-pod files, then AA_KBC_PARAMS / the kernel command line. */
static CT_RESULT cdh__load(const cdh__args *a, cdh_config *cfg, cdh_initdata *id, int *have_id,
                           ct_err *err) {
  char p[4096];
  *have_id = 0;
  if (a->initdata) {
    CT_GUARD(cdh_initdata_load(a->initdata, id, err));
    *have_id = 1;
  } else if (cdh__exists(a->root, "/run/peerpod/initdata", p, sizeof p) ||
             cdh__exists(a->root, "/run/confidential-containers/initdata/initdata.toml", p,
                         sizeof p)) {
    CT_GUARD(cdh_initdata_load(p, id, err));
    *have_id = 1;
  }
  char *text = NULL;
  size_t len = 0;
  const char *entry;
  if (a->cdh_config) {
    CT_GUARD(cdh__read_text(a->cdh_config, &text, &len, err));
    ct_status st = cdh_config_parse_cdh(text, len, cfg, err);
    free(text);
    if (st) return ct_err_prefix(err, "%s: ", a->cdh_config);
  } else if (*have_id && (entry = cdh_initdata_entry(id, "cdh.toml"))) {
    CT_GUARD(cdh_config_parse_cdh(entry, strlen(entry), cfg, err));
  } else if (cdh__exists(a->root, "/run/peerpod/cdh.toml", p, sizeof p)) {
    CT_GUARD(cdh__read_text(p, &text, &len, err));
    ct_status st = cdh_config_parse_cdh(text, len, cfg, err);
    free(text);
    CT_GUARD(st);
  }
  if (a->aa_config) {
    CT_GUARD(cdh__read_text(a->aa_config, &text, &len, err));
    ct_status st = cdh_config_parse_aa(text, len, cfg, err);
    free(text);
    if (st) return ct_err_prefix(err, "%s: ", a->aa_config);
  } else if (*have_id && (entry = cdh_initdata_entry(id, "aa.toml"))) {
    CT_GUARD(cdh_config_parse_aa(entry, strlen(entry), cfg, err));
  } else if (cdh__exists(a->root, "/run/peerpod/aa.toml", p, sizeof p)) {
    CT_GUARD(cdh__read_text(p, &text, &len, err));
    ct_status st = cdh_config_parse_aa(text, len, cfg, err);
    free(text);
    CT_GUARD(st);
  }
  snprintf(p, sizeof p, "%s/proc/cmdline", a->root ? a->root : "");
  CT_GUARD(cdh_config_kbc_params(cfg, p, err));
  if (access(p, R_OK) == 0) {
    CT_GUARD(cdh__read_text(p, &text, &len, err));
    ct_status st = cdh_config_cmdline_credentials(cfg, text, len, err);
    free(text);
    if (st) return ct_err_prefix(err, "kernel command line: ");
  }
  return CT_OK;
}

/* --- one-shot commands ------------------------------------------------------------------ */

static int cdh__write_all(const uint8_t *d, size_t n) {
  while (n) {
    ssize_t w = write(1, d, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return 1;
    d += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Reads a sealed secret from stdin (a pipe, not a regular file), bounded. */
static CT_RESULT cdh__read_stdin(char **out, size_t *len, ct_err *err) {
  ct_buf b;
  ct_buf_init(&b, CDH_SEALED_MAX);
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) CT_GUARD(ct_buf_append(&b, chunk, n, err));
  if (ferror(stdin)) {
    ct_buf_free(&b);
    return ct_fail(err, CT_EIO, "reading stdin: %s", strerror(errno));
  }
  CT_GUARD(ct_buf_append(&b, "", 0, err));
  *out = (char *)ct_buf_take(&b, len);
  return CT_OK;
}

static int cdh__oneshot(cdh_hub *hub, int argc, char **argv, int i) {
  ct_err err;
  ct_err_clear(&err);
  const char *cmd = argv[i];
  uint8_t *out = NULL;
  size_t len = 0;
  char *txt = NULL;
  ct_status st;
  if (!strcmp(cmd, "get-resource") && i + 1 < argc) {
    st = cdh_hub_get_resource(hub, argv[i + 1], &out, &len, &err);
  } else if (!strcmp(cmd, "unseal") && i + 1 < argc) {
    char *secret = NULL;
    size_t n = 0;
    if (!strcmp(argv[i + 1], "-")) {
      st = cdh__read_stdin(&secret, &n, &err);
    } else {
      st = ct_strdup(argv[i + 1], &secret, &err);
      n = secret ? strlen(secret) : 0;
    }
    while (!st && n && (secret[n - 1] == '\n' || secret[n - 1] == '\r')) secret[--n] = 0;
    if (!st) st = cdh_hub_unseal(hub, secret, n, &out, &len, &err);
    free(secret);
  } else if (!strcmp(cmd, "pull-image") && i + 3 < argc && !strcmp(argv[i + 2], "--bundle")) {
    st = cdh_hub_pull_image(hub, argv[i + 1], argv[i + 3], NULL, &txt, &err);
  } else if (!strcmp(cmd, "check-image") && i + 1 < argc) {
    st = cdh_hub_check_image(hub, argv[i + 1], &txt, &err);
    if (st == CT_EDENIED) {
      printf("denied, because %s\n", err.msg);
      return 3;
    }
    if (!st) {
      printf("allowed, because %s\n", txt);
      free(txt);
      return 0;
    }
  } else if (!strcmp(cmd, "token")) {
    st = cdh_hub_token(hub, &txt, &err);
  } else if (!strcmp(cmd, "evidence") && i + 1 < argc) {
    st = cdh_hub_evidence(hub, (const uint8_t *)argv[i + 1], strlen(argv[i + 1]), &txt, &err);
  } else {
    cdh__usage();
    return 2;
  }
  if (st) {
    fprintf(stderr, "cdh: %s\n", err.msg);
    return st == CT_ENOTFOUND ? 4 : st == CT_EDENIED ? 3 : 1;
  }
  int rc = txt ? cdh__write_all((uint8_t *)txt, strlen(txt)) || cdh__write_all((const uint8_t *)"\n", 1)
               : cdh__write_all(out, len);
  if (out) {
    ct_wipe(out, len);
    free(out);
  }
  if (txt) {
    ct_wipe(txt, strlen(txt));
    free(txt);
  }
  return rc;
}

int main(int argc, char **argv) {
  ct_log_init_from_env();
  cdh__args a;
  if (cdh__parse_args(argc, argv, &a)) {
    cdh__usage();
    return 2;
  }
  ct_err err;
  ct_err_clear(&err);
  char host[64];
  unsigned port = 0;
  if (a.argi >= argc && strcmp(a.listen, "none") &&
      cdh_server_parse_listen(a.listen, host, sizeof host, &port, &err)) {
    fprintf(stderr, "cdh: %s\n", err.msg);
    return 2;
  }
  cdh_config cfg = {0};
  cdh_initdata id = {0};
  int have_id = 0, rc = 1;
  cdh_hub *hub = NULL;
  if (cdh__load(&a, &cfg, &id, &have_id, &err)) {
    fprintf(stderr, "cdh: configuration: %s\n", err.msg);
    goto out;
  }
  guest_cfg g = {.root = a.root, .tpm_tcti = a.tcti, .tpm_ak_handle = a.ak_handle,
                 .imds_url = a.imds, .az_report_delay_ms = -1};
  char aael[4200];
  if (cfg.eventlog_enabled) {
    snprintf(aael, sizeof aael, "%s%s", a.eventlog ? "" : a.root ? a.root : "",
             a.eventlog ? a.eventlog : "/run/attestation-agent/eventlog");
    g.eventlog_path = aael;
  }
  guest_tee tee = GUEST_TEE_NONE;
  if (a.tee ? guest_tee_parse(a.tee, &tee, &err) : guest_tee_detect(&g, &tee, &err)) {
    fprintf(stderr, "cdh: TEE: %s\n", err.msg);
    goto out;
  }
  if (tee == GUEST_TEE_SAMPLE)
    CT_LOG_WARN_("cdh", "using the sample attester: evidence proves nothing (explicitly requested)");
  if (have_id) {
    if (guest_bind_init_data(&g, tee, id.digest, id.digest_len, &err)) {
      fprintf(stderr, "cdh: init-data binding failed: %s\n", err.msg);
      goto out;
    }
    CT_LOG_INFO_("cdh", "init-data (%s) bound to %s", id.algorithm, guest_tee_name(tee));
  }
  cdh_hub_opts ho = {.config = &cfg, .tee = tee, .guest = &g, .initdata = have_id ? &id : NULL,
                     .sealed_key_dir = a.key_dir, .kbs_attempts = a.attempts};
  char *token = NULL, *tee_key = NULL;
  size_t tlen = 0, klen = 0;
  ct_status hst = CT_OK;
  if (!a.token_file != !a.tee_key_file)
    hst = ct_fail(&err, CT_EINVAL, "passport mode needs both --attestation-token and --tee-key-file");
  else if (a.token_file && !(hst = cdh__read_text(a.token_file, &token, &tlen, &err)))
    hst = cdh__read_text(a.tee_key_file, &tee_key, &klen, &err);
  if (!hst && token) {
    while (tlen && (token[tlen - 1] == '\n' || token[tlen - 1] == '\r' || token[tlen - 1] == ' '))
      token[--tlen] = 0;
    ho.token = token;
    ho.tee_key_pem = tee_key;
  }
  if (!hst) hst = cdh_hub_new(&ho, &hub, &err);
  if (token) {
    ct_wipe(token, tlen);
    free(token);
  }
  if (tee_key) {
    ct_wipe(tee_key, klen);
    free(tee_key);
  }
  if (hst) {
    fprintf(stderr, "cdh: %s\n", err.msg);
    goto out;
  }
  if (a.argi < argc) {
    rc = cdh__oneshot(hub, argc, argv, a.argi);
    goto out;
  }
  if (cfg.ncreds && cdh_hub_provision_credentials(hub, &err))
    CT_LOG_ERROR_("cdh", "provisioning credentials: %s", err.msg);
  /* Upstream's socket paths by default; a default path that cannot be used (not root, another
   * agent already serving it) leaves that service off with a warning, an explicit one is an
   * error. "none" turns a service off. */
  cdh_server_opts so = {
      .hub = hub,
      .listen = a.listen,
      .cdh_socket = a.cdh_socket ? a.cdh_socket : cfg.socket ? cfg.socket : CDH_DEFAULT_CDH_SOCKET,
      .aa_socket = a.aa_socket ? a.aa_socket : cfg.aa_socket ? cfg.aa_socket : CDH_DEFAULT_AA_SOCKET,
      .cdh_socket_optional = !a.cdh_socket && !cfg.socket,
      .aa_socket_optional = !a.aa_socket && !cfg.aa_socket,
      .workers = a.workers,
  };
  if (!strcmp(so.cdh_socket, "none")) so.cdh_socket = NULL;
  if (!strcmp(so.aa_socket, "none")) so.aa_socket = NULL;
  if (a.listen && !strcmp(a.listen, "none")) so.listen = NULL;
  if (cdh_server_run(&so, &err)) {
    fprintf(stderr, "cdh: %s\n", err.msg);
    rc = 1;
  } else {
    rc = 0;
  }
out:
  cdh_hub_free(hub);
  cdh_initdata_free(&id);
  cdh_config_free(&cfg);
  return rc;
}
