#!/bin/sh
# An ignored ct_status does not compile (docs/DEVELOPING.md): tests/lint/must_use.c compiles
# when it checks its statuses and is refused, for exactly that reason, when it ignores them.
# usage: must_use.sh CC SOURCE_DIR
set -eu
cc=$1
src=$2
flags="-std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -I$src/src/common -c -o /dev/null"
if ! out=$("$cc" $flags "$src/tests/lint/must_use.c" 2>&1); then
  echo "FAIL: the checked variant does not compile:"; echo "$out"; exit 1
fi
if out=$("$cc" $flags -DCT_LINT_IGNORE "$src/tests/lint/must_use.c" 2>&1); then
  echo "FAIL: ignoring a ct_status compiled"; exit 1
fi
n=$(printf '%s\n' "$out" | grep -c 'unused-result\|warn_unused_result\|unused return value\|ignoring return value' || true)
if [ "$n" -lt 2 ]; then
  echo "FAIL: the compiler refused the file, but not (only) for the ignored statuses:"; echo "$out"; exit 1
fi
echo "ok: $cc refuses both ignored statuses"
