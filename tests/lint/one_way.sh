#!/bin/sh
# The "one way to do each thing" rules a grep can check (docs/DEVELOPING.md):
#  1. libcurl is used only by src/common/ct_http.c (the one HTTP client path);
#  2. multi-byte integers are assembled from bytes only by src/common/ct_reader.c (no
#     hand-written little-endian readers: `p[0] | p[1] << 8`, `le32(p)` helpers, byte loops);
#  3. every function returning ct_status is declared CT_RESULT, except the four error-report
#     helpers of ct_status.h, which return the code they are given.
# usage: one_way.sh SOURCE_DIR   (a git checkout; skips, or fails under CI, without git)
set -eu
cd "$1"
if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "SKIP: $1 is not a git checkout"
  [ -z "${CI:-}" ] || exit 1
  exit 77
fi
status=0
paths="src tools tests bench"

hits=$(git grep -nE 'curl_easy_|curl_multi_|CURLOPT_|curl_slist|<curl/curl\.h>' -- $paths ':!src/common/ct_http.c' ':!tests/lint' || true)
if [ -n "$hits" ]; then
  echo "FAIL: libcurl outside src/common/ct_http.c (use ct_http):"; echo "$hits"; status=1
fi

# Candidate lines: an array element shifted by a multiple of 8, a byte accumulator loop, or a
# helper named like a fixed-width reader. A line with two elements of one array whose higher
# index carries the larger shift is a little-endian read.
cand=$(git grep -nE '\]\)? *<< *(8|16|24|32|40|48|56)\b|\b([a-z_]+) *= *\(?[a-z_]+ *<< *8\)? *\| *\(?[a-z_0-9()]*\)?[a-z_]+\[|^static +(inline +)?uint(16|32|64)_t +[a-z_0-9]*(le|be|u)(16|32|64) *\( *const uint8_t' \
  -- $paths ':!src/common/ct_reader.c' ':!tests/lint' || true)
hits=$(printf '%s\n' "$cand" | python3 -c '
import re, sys
term = re.compile(r"(\w+)\[\s*(?:(\w+)\s*\+\s*)?(\d+)\s*\]\s*\)?\s*(?:<<\s*(\d+))?")
for line in sys.stdin:
    if not line.strip():
        continue
    code = line.split(":", 2)[2] if line.count(":") >= 2 else line
    if re.search(r"^static +(inline +)?uint(16|32|64)_t +\w*(le|be|u)(16|32|64) *\( *const uint8_t", code) or re.search(r"\b(\w+) *= *\(?\1 *<< *8", code):
        print(line.rstrip()); continue
    seen = {}
    for name, base, idx, shift in term.findall(code):
        seen.setdefault((name, base), []).append((int(idx), int(shift or 0)))
    for terms in seen.values():
        if any(i2 > i1 and s2 > s1 for i1, s1 in terms for i2, s2 in terms):
            print(line.rstrip()); break
')
if [ -n "$hits" ]; then
  echo "FAIL: hand-written little-endian readers (use ct_reader):"; echo "$hits"; status=1
fi

hits=$(git grep -nE '^(static +)?(inline +)?ct_status +\**[A-Za-z_][A-Za-z0-9_]* *\(' -- $paths \
  | grep -vE '^src/common/ct_status\.[ch]:[0-9]+:ct_status (ct_fail|ct_vfail|ct_err_prefix|ct_fail_ossl)\(' || true)
if [ -n "$hits" ]; then
  echo "FAIL: functions returning ct_status without CT_RESULT:"; echo "$hits"; status=1
fi

[ $status -ne 0 ] || echo "ok: one HTTP client path, one binary reader, every status must-use"
exit $status
