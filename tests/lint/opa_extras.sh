#!/bin/sh
# The shipped programs carry none of the OPA-only Rego built-ins (CT_REGO_OPA_EXTRAS off): no
# GraphQL, YAML, x509, JWT-sign/verify, glob, net.cidr or uuid/uri code in their symbol tables,
# no libyaml among their libraries. The full variant (rego-opa) proves the check can see them.
# usage: opa_extras.sh FULL_BINARY SHIPPED_BINARY...
set -eu
full=$1
shift
pattern='graphql|gq_|yaml|rg_builtins_(net|jwt|uri|x509|glob|tmpl)\b'
nm "$full" | grep -Eqi "$pattern" || { echo "FAIL: $full shows no OPA-only symbols: the check is blind"; exit 1; }
ldd "$full" | grep -qi yaml || { echo "FAIL: $full does not link libyaml: the check is blind"; exit 1; }
status=0
for bin in "$@"; do
  hits=$(nm "$bin" | grep -Ei "$pattern" || true)
  if [ -n "$hits" ]; then
    echo "FAIL: $bin links OPA-only Rego code:"
    echo "$hits" | head -5
    status=1
  fi
  if ldd "$bin" | grep -qi yaml; then
    echo "FAIL: $bin links libyaml"
    status=1
  fi
  [ $status -ne 0 ] || echo "ok: $bin ($(stat -c %s "$bin") bytes)"
done
exit $status
