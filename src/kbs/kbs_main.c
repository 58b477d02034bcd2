/*
 * kbs - the Key Broker Service.
 *
 *   kbs --config-file FILE | -c FILE     (or KBS_CONFIG_FILE)   serve
 *   kbs verify ...                                               offline evidence check
 *   kbs audit verify FILE                                        check an audit log's hash chain
 *
 * Exit status: 0 after a clean shutdown (SIGINT/SIGTERM), 1 on a runtime failure, 2 on a bad
 * command line or configuration.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ct_log.h"
#include "kbs_audit.h"
#include "kbs_config.h"
#include "kbs_server.h"
#include "verify_cli.h"


static volatile sig_atomic_t kbs__stop;
static void kbs__on_signal(int sig) { kbs__stop = sig; }

static void kbs__usage(FILE *f) {
  fprintf(f, "usage: kbs (--config-file FILE | -c FILE)\n"
             "       kbs verify --tee TEE --evidence FILE (--report-data HEX | --runtime-data FILE.json)\n"
             "                  [--init-data FILE.toml] [--collateral DIR]\n"
             "       kbs audit verify FILE\n"
             "The configuration file may also be given in KBS_CONFIG_FILE.\n");
}

int main(int argc, char **argv) {
  ct_log_init_from_env();
  if (argc > 1 && !strcmp(argv[1], "verify")) return as_verify_cli_main(argc - 1, argv + 1);
  if (argc > 1 && !strcmp(argv[1], "audit")) return kbs_audit_cli_main(argc - 1, argv + 1);
  const char *path = getenv("KBS_CONFIG_FILE");
  for (int i = 1; i < argc; i++) {
    if ((!strcmp(argv[i], "--config-file") || !strcmp(argv[i], "-c")) && i + 1 < argc) {
      path = argv[++i];
    } else if (!strncmp(argv[i], "--config-file=", 14)) {
      path = argv[i] + 14;
    } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      kbs__usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "kbs: unexpected argument \"%s\"\n", argv[i]);
      kbs__usage(stderr);
      return 2;
    }
  }
  if (!path) {
    kbs__usage(stderr);
    return 2;
  }
  ct_err err;
  kbs_config *cfg = NULL;
  if (kbs_config_load(path, &cfg, &err) != CT_OK) {
    fprintf(stderr, "kbs: invalid configuration: %s\n", err.msg);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {0};
  sa.sa_handler = kbs__on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  /* Never serve as root: started as root, the KBS hands its storage to a dedicated user and
   * serves as it - "kbs" unless KBS_USER names another (scripts/install-deps creates it; an
   * account other services share, such as nobody, is refused). KBS_USER=root keeps root, for
   * containers whose root is already unprivileged. */
  const char *run_as = NULL;
  if (geteuid() == 0) {
    run_as = getenv("KBS_USER") && *getenv("KBS_USER") ? getenv("KBS_USER") : KBS_DEFAULT_USER;
    if (!strcmp(run_as, "root")) {
      CT_LOG_WARN_("kbs", "KBS_USER=root: serving as root");
      run_as = NULL;
    }
  }
  kbs_server *s = NULL;
  if (kbs_server_start(cfg, run_as, &s, &err) != CT_OK) {
    fprintf(stderr, "kbs: cannot start: %s\n", err.msg);
    kbs_config_free(cfg);
    return err.code == CT_EINVAL || err.code == CT_EUNSUPPORTED || err.code == CT_ENOTFOUND ? 2 : 1;
  }
  for (size_t i = 0; i < cfg->n_sockets; i++)
    CT_LOG_INFO_("kbs", "listening on %s (port %d, %s)", cfg->sockets[i], kbs_server_port(s, i),
                 cfg->insecure_http ? "plain HTTP" : "HTTPS");
  /* Tests and scripts wait for this line. */
  printf("kbs: ready on port %d\n", kbs_server_port(s, 0));
  fflush(stdout);
  unsigned ticks = 0;
  while (!kbs__stop) {
    sleep(1);
    if (++ticks % 2 == 0) kbs_server_tick(s);
  }
  CT_LOG_INFO_("kbs", "shutting down on signal %d", (int)kbs__stop);
  kbs_server_stop(s);
  kbs_config_free(cfg);
  return 0;
}
