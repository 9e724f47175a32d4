#!/usr/bin/env bash
# Starts the demo upstream (an echo app on 127.0.0.1:3000) and Gatehouse in front of it on
# 127.0.0.1:8080 with config/gatehouse.toml, prints a token and the curl lines to try,
# and stops both on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bin gatehouse --example echo_upstream
./target/release/examples/echo_upstream 127.0.0.1:3000 &
upstream=$!
./target/release/gatehouse serve --config config/gatehouse.toml &
gatehouse=$!
trap 'kill $gatehouse $upstream 2>/dev/null; wait 2>/dev/null' EXIT INT TERM

for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break
  sleep 0.1
done

token=$(./target/release/gatehouse token --config config/gatehouse.toml --sub alice --email alice@example.com --permissions read,admin)
cat <<MSG

Gatehouse is protecting the echo app at http://127.0.0.1:8080 (Ctrl-C stops both).

  curl -i http://127.0.0.1:8080/public/hello          # 200: public route
  curl -i http://127.0.0.1:8080/orders                # 401: protected
  TOKEN=$token
  curl -i -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:8080/admin/users   # 200, X-Auth-* headers added
  curl -i -H "Authorization: Bearer \$TOKEN" -H "X-Original-Method: GET" -H "X-Original-URI: /admin/" http://127.0.0.1:8080/verify  # forward-auth: 200

More tokens: ./target/release/gatehouse token --config config/gatehouse.toml --sub bob --permissions read
MSG
wait $gatehouse
