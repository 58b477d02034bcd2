/*
 * toml2json - prints a TOML file as JSON (sorted keys), or the parse error on stderr.
 * Usage: toml2json FILE   (exit 0 on success, 1 on a parse error, 2 on usage)
 */
#include <stdio.h>
#include <stdlib.h>

#include "toml.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s FILE.toml\n", argv[0]);
    return 2;
  }
  ct_err err;
  json_t *v = NULL;
  if (toml_parse_file(argv[1], &v, &err) != CT_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  char *s = json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(17));
  json_decref(v);
  if (!s) return 1;
  puts(s);
  free(s);
  return 0;
}
