#!/usr/bin/env bash
# Instructions per proxied request on the public route, under callgrind (a count that does not
# move with the machine's noise): Gatehouse with one worker thread in front of echo_upstream,
# sent LOW and then HIGH requests over CONNS keep-alive connections; the difference divided
# by HIGH - LOW cancels start-up. Compare two builds by passing their binaries:
#   bash bench/instructions.sh [path/to/gatehouse] [path/to/echo_upstream]
# Needs valgrind and python3. Not run by CI (it takes a few minutes).
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
GH=${1:-$ROOT/target/release/gatehouse}
ECHO=${2:-$ROOT/target/release/examples/echo_upstream}
LOW=${LOW:-2000} HIGH=${HIGH:-12000} CONNS=${CONNS:-8}
P_UP=${P_UP:-18181} P_GH=${P_GH:-18182}
[ -x "$GH" ] && [ -x "$ECHO" ] || { echo "build first: cargo build --release --bin gatehouse --example echo_upstream" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

one_run() { # requests -> total instructions of the Gatehouse process
    local n=$1 w
    w=$(mktemp -d)
    "$ECHO" "127.0.0.1:$P_UP" --small >/dev/null 2>&1 &
    local echo_pid=$!
    cat >"$w/gh.toml" <<T
[server]
listen = "127.0.0.1:$P_GH"
worker_threads = 1
[upstream]
url = "http://127.0.0.1:$P_UP"
[[routes]]
path = "/public/"
auth = "public"
[[routes]]
path = "/"
auth = "required"
[log]
access = false
level = "warn"
T
    valgrind --tool=callgrind --callgrind-out-file="$w/cg.out" "$GH" serve --config "$w/gh.toml" >"$w/log" 2>&1 &
    local gh_pid=$!
    local i
    for i in $(seq 300); do
        curl -s -o /dev/null --noproxy '*' "http://127.0.0.1:$P_GH/healthz" && break
        sleep 0.2
    done
    python3 "$BENCH/fixed_requests.py" 127.0.0.1 "$P_GH" /public/bench "$n" "$CONNS"
    kill -TERM "$gh_pid"
    wait "$gh_pid" || true
    kill "$echo_pid"
    wait "$echo_pid" 2>/dev/null || true
    grep -E '^(summary|totals):' "$w/cg.out" | head -1 | awk '{print $2}'
    rm -rf "$w"
}
low=$(one_run "$LOW")
high=$(one_run "$HIGH")
echo "public route: $(((high - low) / (HIGH - LOW))) instructions per request ($GH)"
