/*
 * coco - the Confidential Containers pattern CLI.
 *
 *   coco initdata render|encode|decode|digest|pcr8|check|explain-policy ...
 *   coco refvalues from-measurements ...
 *   coco secrets load ...
 *   coco kbs-seed ...
 *
 * Exit status: 0 success, 1 failure (the reason is printed), 2 bad usage; `initdata check` and
 * `initdata explain-policy` use 3 for "refused" / "denied" (see their usage).
 */
#include "coco.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ct_buf.h"
#include "ct_file.h"

static void coco__usage(void) {
  fprintf(stderr,
          "usage: coco initdata render --kbs-url URL [--kbs-cert PEM] [--agent-policy FILE | --permissive]\n"
          "                            [--image-policy insecure|reject|signed] [-o FILE]\n"
          "       coco initdata encode|decode|digest|pcr8|check FILE\n"
          "       coco initdata explain-policy FILE --request NAME [--args \"CMD ARG...\"] [--input REQUEST.json] [--json]\n"
          "       coco refvalues from-measurements MEASUREMENTS.json [--initdata FILE] [--expiration TIME]\n"
          "                            [--prefix snp,tdx] [--format message|list] [-o FILE]\n"
          "       coco secrets load VALUES-SECRET.yaml (--kbs-url URL [--kbs-cert PEM] --admin-key KEY |\n"
          "                            --vault-url URL --vault-token-file FILE [--vault-cacert PEM])\n"
          "                            [--base-dir DIR] [--dry-run]\n"
          "       coco kbs-seed --storage-dir DIR [--attestation-policy-dir DIR] [--reference-values FILE]\n"
          "                            [--resources-dir DIR]   (the kbs chart's init container)\n");
}

int coco_fail(const char *what, const ct_err *err) {
  fprintf(stderr, "coco: %s: %s\n", what, err->msg);
  return 1;
}

bool coco_opt(int argc, char **argv, int *i, const char *name, const char **val, bool *bad) {
  if (strcmp(argv[*i], name) != 0) return false;
  if (*i + 1 >= argc) {
    fprintf(stderr, "coco: %s needs a value\n", name);
    *bad = true;
    return true;
  }
  *val = argv[++*i];
  return true;
}

CT_RESULT coco_read(const char *path, size_t max, char **text, size_t *len, ct_err *err) {
  if (strcmp(path, "-") != 0) {
    uint8_t *d = NULL;
    CT_GUARD(ct_file_read(path, max, &d, len, err));
    *text = (char *)d;
    return CT_OK;
  }
  ct_buf b;
  ct_buf_init(&b, max);
  uint8_t chunk[8192];
  for (;;) {
    ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ct_buf_free(&b);
      return ct_fail(err, CT_EIO, "reading standard input: %s", strerror(errno));
    }
    if (n == 0) break;
    if (ct_buf_append(&b, chunk, (size_t)n, err) != CT_OK) return ct_err_prefix(err, "standard input: ");
  }
  if (!b.data) {
    *text = calloc(1, 1);
    *len = 0;
    return *text ? CT_OK : ct_fail(err, CT_ENOMEM, "out of memory");
  }
  *text = (char *)ct_buf_take(&b, len);
  return CT_OK;
}

CT_RESULT coco_write(const char *path, const void *data, size_t len, unsigned mode, ct_err *err) {
  if (path && strcmp(path, "-") != 0) return ct_file_write_atomic(path, data, len, mode, err);
  if (len && fwrite(data, 1, len, stdout) != len)
    return ct_fail(err, CT_EIO, "writing standard output: %s", strerror(errno));
  if (fflush(stdout) != 0) return ct_fail(err, CT_EIO, "writing standard output: %s", strerror(errno));
  return CT_OK;
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    coco__usage();
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "initdata")) return coco_initdata_main(argc - 2, argv + 2);
  if (!strcmp(argv[1], "refvalues")) return coco_refvalues_main(argc - 2, argv + 2);
  if (!strcmp(argv[1], "secrets")) return coco_secrets_main(argc - 2, argv + 2);
  if (!strcmp(argv[1], "kbs-seed")) return coco_kbs_seed_main(argc - 2, argv + 2);
  fprintf(stderr, "coco: unknown command \"%s\"\n", argv[1]);
  coco__usage();
  return 2;
}
