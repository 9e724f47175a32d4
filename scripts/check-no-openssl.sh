#!/usr/bin/env bash
# Fails if OpenSSL or native-tls is anywhere in the dependency tree (deny.toml says the same
# for cargo-deny users; this needs nothing but cargo).
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for banned in openssl-sys openssl native-tls; do
  if cargo tree --locked -e normal,build -i "$banned" >/dev/null 2>&1; then
    echo "error: $banned is in the dependency tree:" >&2
    cargo tree --locked -e normal,build -i "$banned" >&2
    status=1
  fi
done
[ $status -eq 0 ] && echo "no OpenSSL in the dependency tree"
exit $status
