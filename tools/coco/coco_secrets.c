/*
 * coco_secrets.c - `coco secrets load`: the pattern's values-secret file into the KBS or Vault.
 */
#include <stdio.h>

#include "coco.h"

int coco_secrets_main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "coco: secrets load: not available yet\n");
  return 2;
}
