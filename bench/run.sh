#!/usr/bin/env bash
# Side-by-side benchmark: the upstream directly, plain nginx, HAProxy 2.6 jwt_verify and
# Gatehouse (public route, RS256 and ES256, one repeated token and a pool of distinct
# tokens, with and without the verified-token cache), and API keys (Gatehouse's cached
# store lookup against HAProxy's static map), on this machine, in one go.
#
#   bash bench/run.sh                                 # full: 3 rounds x 10 s, ~9 min if quiet
#   DURATION=2 RUNS=1 WARMUP=1 bash bench/run.sh      # quick smoke
#
# Each proxy runs pinned to CPU $PROXY_CPU with one worker (thread); wrk (-t1 -c64) and the
# upstream share CPU $LOAD_CPU. Per measured run it records requests/s, p50, p99 and the
# proxy's CPU time per request (utime+stime from /proc/PID/stat before and after, divided
# by the requests wrk completed), then writes medians, ratios and targets to
# bench/RESULTS.md (or $OUT). Everything listens on 127.0.0.1 only, ports 18081-18088.
# Everything it starts is stopped on exit. Not run by CI.
set -euo pipefail

DURATION=${DURATION:-10}   # seconds per measured run
RUNS=${RUNS:-3}            # measured runs (rounds) per row; the table shows the median
WARMUP=${WARMUP:-2}        # seconds of warm-up before each measured run
CONNS=${CONNS:-64}         # wrk connections
POOL=${POOL:-1000}         # distinct tokens per algorithm in the pool rows
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
NO_BUILD=${NO_BUILD:-0}
KEEP=${KEEP:-0}
OTHER_MAX=${OTHER_MAX:-10} # % of the proxy CPU that other work may take in a kept run
RETRIES=${RETRIES:-3}      # extra attempts for a run that exceeded OTHER_MAX
QUIET_WAIT=${QUIET_WAIT:-60} # before a retry, wait up to this long for idle CPUs
RETRY_BUDGET=${RETRY_BUDGET:-900} # seconds that retries and waits may add in all

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
OUT=${OUT:-$BENCH/RESULTS.md}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

P_UPSTREAM=18081 P_GH=18082 P_NGINX=18083 P_HA_RS=18084 P_HA_ES=18085 P_GHNC=18086 P_GHK=18087 P_HAK=18088
HOST=127.0.0.1

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "root is needed for: $*"
    fi
}

# ---------------------------------------------------------------------------------------
# 1. Tools
# ---------------------------------------------------------------------------------------
export PATH="$PATH:/usr/sbin:/sbin"
install_missing() {
    local pkgs=()
    command -v wrk >/dev/null || pkgs+=(wrk)
    command -v nginx >/dev/null || pkgs+=(nginx-light)
    command -v haproxy >/dev/null || pkgs+=(haproxy)
    command -v taskset >/dev/null || pkgs+=(util-linux)
    command -v curl >/dev/null || pkgs+=(curl)
    if ((${#pkgs[@]})); then
        log "installing ${pkgs[*]}"
        # Keep the packages' own services from starting (they would listen on every
        # address of the machine): policy-rc.d exit 101 means "do not start".
        local policy_added=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
            as_root chmod 755 /usr/sbin/policy-rc.d
            policy_added=1
        fi
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"
        if [ "$policy_added" = 1 ]; then as_root rm -f /usr/sbin/policy-rc.d; fi
    fi
    if ! python3 -c 'import jwt, cryptography' 2>/dev/null; then
        log "installing PyJWT and cryptography"
        python3 -m pip install --quiet pyjwt cryptography
    fi
}
install_missing

HA_VERSION=$(haproxy -v | sed -n 1p)
case "$HA_VERSION" in
*"version 2.6"*) ;;
*) log "warning: expected HAProxy 2.6, found: $HA_VERSION" ;;
esac

if [ "$NO_BUILD" != 1 ]; then
    log "building gatehouse and echo_upstream (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin gatehouse --example echo_upstream)
fi
GH=$TARGET_DIR/release/gatehouse
ECHO=$TARGET_DIR/release/examples/echo_upstream
# What was built: the commit, and whether the tree differed from it (others may edit it
# while the benchmark runs, so this is taken now, not at the end).
GH_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
if [ -n "$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    GH_REV="$GH_REV (working tree differed from that commit in src/, Cargo.toml or Cargo.lock)"
fi
[ -x "$GH" ] || die "$GH not found (build it, or unset NO_BUILD)"
[ -x "$ECHO" ] || die "$ECHO not found (build it, or unset NO_BUILD)"

NCPU=$(nproc)
((PROXY_CPU < NCPU && LOAD_CPU < NCPU)) || die "need CPUs $PROXY_CPU and $LOAD_CPU; this machine has $NCPU"
TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------------------
# 2. A private work directory, and cleanup of everything started from here on
# ---------------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench.XXXXXX")
chmod 755 "$WORK" # nginx's worker drops privileges when run as root
PIDS=()           # processes to stop on exit, in this order
NGINX_WORKER=""

stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    # nginx's master stops its worker; make sure.
    if [ -n "$NGINX_WORKER" ]; then kill -KILL "$NGINX_WORKER" 2>/dev/null || true; fi
    if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$WORK/keys" "$WORK/wrk" "$WORK/nginx" "$WORK/logs" "$WORK/gh-keys"

port_free() { ! (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
for p in $P_UPSTREAM $P_GH $P_NGINX $P_HA_RS $P_HA_ES $P_GHNC $P_GHK $P_HAK; do
    port_free "$p" || die "port $HOST:$p is already in use"
done

# ---------------------------------------------------------------------------------------
# 3. Keys, tokens and configurations
# ---------------------------------------------------------------------------------------
log "minting an RSA-2048 and a P-256 key and $POOL tokens for each"
python3 "$BENCH/mint_tokens.py" "$WORK/keys" "$POOL"

fill() { # template output KEY=VALUE...
    local tmpl=$1 out=$2 kv expr=()
    shift 2
    for kv in "$@"; do expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${expr[@]}" "$tmpl" >"$out"
    ! grep -q '@[A-Z_]*@' "$out" || die "unfilled placeholder in $out"
}

fill "$BENCH/conf/nginx.conf.tmpl" "$WORK/nginx/nginx.conf" \
    WORK="$WORK" PORT=$P_NGINX UPSTREAM_PORT=$P_UPSTREAM
fill "$BENCH/conf/haproxy.cfg.tmpl" "$WORK/haproxy-rs.cfg" \
    PORT=$P_HA_RS UPSTREAM_PORT=$P_UPSTREAM ALG=RS256 KEY="$WORK/keys/rs.pub.pem"
fill "$BENCH/conf/haproxy.cfg.tmpl" "$WORK/haproxy-es.cfg" \
    PORT=$P_HA_ES UPSTREAM_PORT=$P_UPSTREAM ALG=ES256 KEY="$WORK/keys/es.pub.pem"
fill "$BENCH/conf/gatehouse.toml.tmpl" "$WORK/gatehouse.toml" \
    WORK="$WORK" PORT=$P_GH UPSTREAM_PORT=$P_UPSTREAM CACHE_LINE="# verified-token cache as shipped"
fill "$BENCH/conf/gatehouse.toml.tmpl" "$WORK/gatehouse-uncached.toml" \
    WORK="$WORK" PORT=$P_GHNC UPSTREAM_PORT=$P_UPSTREAM CACHE_LINE="verified_cache_capacity = 0"
fill "$BENCH/conf/gatehouse-keys.toml.tmpl" "$WORK/gatehouse-keys.toml" \
    WORK="$WORK" PORT=$P_GHK UPSTREAM_PORT=$P_UPSTREAM POOL="$POOL"

nginx -t -q -p "$WORK/nginx/" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" ||
    die "nginx rejects $WORK/nginx/nginx.conf"
haproxy -c -q -f "$WORK/haproxy-rs.cfg" || die "haproxy rejects $WORK/haproxy-rs.cfg"
haproxy -c -q -f "$WORK/haproxy-es.cfg" || die "haproxy rejects $WORK/haproxy-es.cfg"
"$GH" check-config --config "$WORK/gatehouse.toml" >/dev/null || die "gatehouse rejects its config"
"$GH" check-config --config "$WORK/gatehouse-uncached.toml" >/dev/null ||
    die "gatehouse rejects its uncached config"
"$GH" check-config --config "$WORK/gatehouse-keys.toml" >/dev/null || die "gatehouse rejects its API-key config"

# ---------------------------------------------------------------------------------------
# 4. Start everything, pinned
# ---------------------------------------------------------------------------------------
start() { # name cpu command... ; sets STARTED_PID
    local name=$1 cpu=$2
    shift 2
    taskset -c "$cpu" "$@" >"$WORK/logs/$name.log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

http_code() { # url [token]
    local args=(-s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 5)
    if [ -n "${2-}" ]; then args+=(-H "Authorization: Bearer $2"); fi
    curl "${args[@]}" "$1" || true
}

wait_up() { # name pid url
    local i
    for i in $(seq 100); do
        kill -0 "$2" 2>/dev/null || die "$1 exited; its log: $(tail -5 "$WORK/logs/$1.log")"
        [ "$(http_code "$3")" = 000 ] || return 0
        sleep 0.1
    done
    die "$1 did not answer at $3"
}

start upstream "$LOAD_CPU" "$ECHO" "$HOST:$P_UPSTREAM" --small
UPSTREAM_PID=$STARTED_PID
wait_up upstream "$UPSTREAM_PID" "http://$HOST:$P_UPSTREAM/"

start nginx "$PROXY_CPU" nginx -p "$WORK/nginx/" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
NGINX_MASTER=$STARTED_PID
wait_up nginx "$NGINX_MASTER" "http://$HOST:$P_NGINX/"
NGINX_WORKER=$(pgrep -P "$NGINX_MASTER" | sed -n 1p)
[ -n "$NGINX_WORKER" ] || die "no nginx worker process under master $NGINX_MASTER"

start haproxy-rs "$PROXY_CPU" haproxy -db -f "$WORK/haproxy-rs.cfg"
HA_RS_PID=$STARTED_PID
wait_up haproxy-rs "$HA_RS_PID" "http://$HOST:$P_HA_RS/"

start haproxy-es "$PROXY_CPU" haproxy -db -f "$WORK/haproxy-es.cfg"
HA_ES_PID=$STARTED_PID
wait_up haproxy-es "$HA_ES_PID" "http://$HOST:$P_HA_ES/"

start gatehouse "$PROXY_CPU" "$GH" serve --config "$WORK/gatehouse.toml"
GH_PID=$STARTED_PID
wait_up gatehouse "$GH_PID" "http://$HOST:$P_GH/readyz"

start gatehouse-uncached "$PROXY_CPU" "$GH" serve --config "$WORK/gatehouse-uncached.toml"
GHNC_PID=$STARTED_PID
wait_up gatehouse-uncached "$GHNC_PID" "http://$HOST:$P_GHNC/readyz"

# API keys: one user, $POOL keys created through the auth API; HAProxy gets the same keys
# as a static map file.
start gatehouse-keys "$PROXY_CPU" "$GH" serve --config "$WORK/gatehouse-keys.toml"
GHK_PID=$STARTED_PID
wait_up gatehouse-keys "$GHK_PID" "http://$HOST:$P_GHK/readyz"
log "creating $POOL API keys"
printf 'bench password 1\n' | "$GH" user create --config "$WORK/gatehouse-keys.toml" \
    --email bench@example.com --permissions read >/dev/null
GHK_ACCESS=$(curl -sf "http://$HOST:$P_GHK/auth/login" -H 'content-type: application/json' \
    -d '{"email": "bench@example.com", "password": "bench password 1"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
: >"$WORK/keys/key.tokens"
for i in $(seq "$POOL"); do
    curl -sf "http://$HOST:$P_GHK/auth/api-keys" -H "Authorization: Bearer $GHK_ACCESS" \
        -H 'content-type: application/json' -d "{\"name\": \"bench $i\"}"
    echo
done | python3 -c 'import json, sys; [print(json.loads(l)["key"]) for l in sys.stdin if l.strip()]' \
    >"$WORK/keys/key.tokens"
[ "$(wc -l <"$WORK/keys/key.tokens")" = "$POOL" ] || die "could not create $POOL API keys"
awk '{print $1, "bench-user"}' "$WORK/keys/key.tokens" >"$WORK/keys/keys.map"
fill "$BENCH/conf/haproxy-keys.cfg.tmpl" "$WORK/haproxy-keys.cfg" \
    PORT=$P_HAK UPSTREAM_PORT=$P_UPSTREAM MAP="$WORK/keys/keys.map"
haproxy -c -q -f "$WORK/haproxy-keys.cfg" || die "haproxy rejects $WORK/haproxy-keys.cfg"
start haproxy-keys "$PROXY_CPU" haproxy -db -f "$WORK/haproxy-keys.cfg"
HAK_PID=$STARTED_PID
wait_up haproxy-keys "$HAK_PID" "http://$HOST:$P_HAK/"

# Every proxy must accept what it should and refuse what it should before we time it.
K=$WORK/keys
RS_TOKEN=$(head -1 "$K/rs.tokens")
ES_TOKEN=$(head -1 "$K/es.tokens")
expect() { # want what url [token]
    local got
    got=$(http_code "$3" "${4-}")
    [ "$got" = "$1" ] || die "sanity check failed: $2: expected $1, got $got ($3)"
    log "  ok: $2 -> $got"
}
log "sanity checks"
expect 200 "upstream" "http://$HOST:$P_UPSTREAM/"
expect 200 "nginx" "http://$HOST:$P_NGINX/"
for ha in "rs $P_HA_RS es" "es $P_HA_ES rs"; do
    read -r a port other <<<"$ha"
    u="http://$HOST:$port/"
    expect 200 "haproxy-$a valid token" "$u" "$(head -1 "$K/$a.tokens")"
    expect 200 "haproxy-$a last pool token" "$u" "$(tail -1 "$K/$a.tokens")"
    expect 401 "haproxy-$a no token" "$u"
    expect 401 "haproxy-$a bad signature" "$u" "$(cat "$K/$a.badsig")"
    expect 401 "haproxy-$a expired" "$u" "$(cat "$K/$a.expired")"
    expect 401 "haproxy-$a other algorithm" "$u" "$(head -1 "$K/$other.tokens")"
    expect 401 "haproxy-$a garbage" "$u" "not.a.jwt"
done
for gh in "gatehouse $P_GH" "gatehouse-uncached $P_GHNC"; do
    read -r name port <<<"$gh"
    u="http://$HOST:$port"
    expect 200 "$name readyz" "$u/readyz"
    expect 200 "$name public route" "$u/public/x"
    expect 200 "$name public route, bad token ignored" "$u/public/x" "$(cat "$K/rs.badsig")"
    expect 401 "$name no token" "$u/"
    expect 401 "$name garbage" "$u/" "not.a.jwt"
    for a in rs es; do
        expect 200 "$name $a valid token" "$u/" "$(head -1 "$K/$a.tokens")"
        expect 200 "$name $a last pool token" "$u/" "$(tail -1 "$K/$a.tokens")"
        expect 401 "$name $a bad signature" "$u/" "$(cat "$K/$a.badsig")"
        expect 401 "$name $a expired" "$u/" "$(cat "$K/$a.expired")"
        expect 401 "$name $a wrong audience" "$u/" "$(cat "$K/$a.wrongaud")"
    done
done

expect_key() { # want what url key
    local got
    got=$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 5 -H "X-API-KEY: $4" "$3" || true)
    [ "$got" = "$1" ] || die "sanity check failed: $2: expected $1, got $got ($3)"
    log "  ok: $2 -> $got"
}
for kp in "haproxy-keys $P_HAK" "gatehouse-keys $P_GHK"; do
    read -r name port <<<"$kp"
    u="http://$HOST:$port/"
    expect_key 200 "$name first key" "$u" "$(head -1 "$K/key.tokens")"
    expect_key 200 "$name last key" "$u" "$(tail -1 "$K/key.tokens")"
    expect_key 401 "$name unknown key" "$u" "gk_unknownunknownunknownunknownunknownunknown_000000"
    expect 401 "$name no key" "$u"
done

# ---------------------------------------------------------------------------------------
# 5. Measure
# ---------------------------------------------------------------------------------------
ticks() { # "utime stime" of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat)
    local s f
    s=$(<"/proc/$1/stat")
    s=${s##*) } # the command name may hold spaces; fields resume after ") "
    read -r -a f <<<"$s"
    echo "${f[11]} ${f[12]}"
}
cpu_line() { # "busy total" ticks of one CPU from /proc/stat; busy counts steal too (time
    # the hypervisor gave to someone else is interference as much as another process is)
    local _ user nice system idle iowait irq softirq steal rest
    read -r _ user nice system idle iowait irq softirq steal rest < <(grep "^cpu$1 " /proc/stat)
    local busy=$((user + nice + system + irq + softirq + steal))
    echo "$busy $((busy + idle + iowait))"
}
children_ms() { # sets CHILD_MS: CPU time of this shell's reaped children (wrk), in ms.
    # `times` must run in this shell itself (not in a $(...) subshell) to see them.
    local _ cu cs m s total=0 t
    times >"$WORK/times"
    { read -r _ && read -r cu cs; } <"$WORK/times"
    for t in "$cu" "$cs"; do # e.g. 1m2.345s
        m=${t%%m*} s=${t#*m} s=${s%s}
        total=$((total + 10#$m * 60000 + 10#${s%.*} * 1000 + 10#${s#*.}))
    done
    CHILD_MS=$total
}

# row | pid of the proxy ("-" for none) | url | what the client sends
ROWS=(
    "direct|-|http://$HOST:$P_UPSTREAM/|none"
    "nginx|$NGINX_WORKER|http://$HOST:$P_NGINX/|none"
    "haproxy-rs-1|$HA_RS_PID|http://$HOST:$P_HA_RS/|one:rs"
    "haproxy-rs-pool|$HA_RS_PID|http://$HOST:$P_HA_RS/|pool:rs"
    "haproxy-es-1|$HA_ES_PID|http://$HOST:$P_HA_ES/|one:es"
    "haproxy-es-pool|$HA_ES_PID|http://$HOST:$P_HA_ES/|pool:es"
    "gh-public|$GH_PID|http://$HOST:$P_GH/public/bench|none"
    "gh-rs-1|$GH_PID|http://$HOST:$P_GH/|one:rs"
    "gh-rs-pool|$GH_PID|http://$HOST:$P_GH/|pool:rs"
    "ghnc-rs-pool|$GHNC_PID|http://$HOST:$P_GHNC/|pool:rs"
    "gh-es-1|$GH_PID|http://$HOST:$P_GH/|one:es"
    "gh-es-pool|$GH_PID|http://$HOST:$P_GH/|pool:es"
    "ghnc-es-pool|$GHNC_PID|http://$HOST:$P_GHNC/|pool:es"
    "haproxy-key-1|$HAK_PID|http://$HOST:$P_HAK/|one:key"
    "haproxy-key-pool|$HAK_PID|http://$HOST:$P_HAK/|pool:key"
    "gh-key-1|$GHK_PID|http://$HOST:$P_GHK/|one:key"
    "gh-key-pool|$GHK_PID|http://$HOST:$P_GHK/|pool:key"
)
if [ -n "${ROWS_MATCH:-}" ]; then # e.g. ROWS_MATCH='^(nginx|.*key.*)$' for a partial run
    KEPT=()
    for spec in "${ROWS[@]}"; do [[ ${spec%%|*} =~ $ROWS_MATCH ]] && KEPT+=("$spec"); done
    ROWS=("${KEPT[@]}")
fi

RAW=$WORK/raw.tsv
printf 'round\trow\trequests\trps\tp50\tp99\tproxy_us_per_req\tproxy_user_us\tproxy_sys_us\tupstream_us_per_req\tproxy_pct\tother_pct\tother1_pct\tattempt\n' >"$RAW"

run_wrk() { # output seconds latency(0/1) url mode
    local out=$1 secs=$2 lat=$3 url=$4 mode=$5
    local args=(-t1 "-c$CONNS" "-d${secs}s")
    if [ "$lat" = 1 ]; then args+=(--latency); fi
    case "$mode" in
    none) args+=("$url") ;;
    one:key) args+=(-H "X-API-KEY: $(head -1 "$K/key.tokens")" "$url") ;;
    pool:key) args+=(-s "$BENCH/rotate.lua" "$url" -- "$K/key.tokens" X-API-KEY) ;;
    one:*) args+=(-H "Authorization: Bearer $(head -1 "$K/${mode#one:}.tokens")" "$url") ;;
    pool:*) args+=(-s "$BENCH/rotate.lua" "$url" -- "$K/${mode#pool:}.tokens") ;;
    esac
    taskset -c "$LOAD_CPU" wrk "${args[@]}" >"$out" 2>&1 || die "wrk failed: $(tail -3 "$out")"
}

measure_once() { # round row pid url mode attempt; sets LINE, OTHER, OTHER1, SOCKERR
    local round=$1 row=$2 pid=$3 url=$4 mode=$5 attempt=$6
    local out="$WORK/wrk/$row.$round.$attempt.txt"
    run_wrk "$WORK/wrk/$row.$round.$attempt.warmup.txt" "$WARMUP" 0 "$url" "$mode"

    local p0="0 0" p1="0 0" u0 u1 c0 c1 l0 l1 w0 w1
    if [ "$pid" != - ]; then p0=$(ticks "$pid"); fi
    u0=$(ticks "$UPSTREAM_PID")
    c0=$(cpu_line "$PROXY_CPU")
    l0=$(cpu_line "$LOAD_CPU")
    children_ms
    w0=$CHILD_MS
    run_wrk "$out" "$DURATION" 1 "$url" "$mode"
    children_ms
    w1=$CHILD_MS
    l1=$(cpu_line "$LOAD_CPU")
    c1=$(cpu_line "$PROXY_CPU")
    u1=$(ticks "$UPSTREAM_PID")
    if [ "$pid" != - ]; then p1=$(ticks "$pid"); fi

    local requests rps p50 p99
    requests=$(awk '/ requests in / {print $1}' "$out")
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p50=$(awk '$1 == "50%" {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    [ -n "$requests" ] && [ -n "$rps" ] && [ -n "$p50" ] && [ -n "$p99" ] ||
        die "$row: cannot read wrk's output: $(cat "$out")"
    # A refused request means the proxy is not doing what we think it does: stop.
    ! grep -q 'Non-2xx' "$out" || die "$row: $(grep 'Non-2xx' "$out") (see $out)"
    SOCKERR=$(grep 'Socket errors' "$out" || true)

    local proxy_us user_us sys_us upstream_us proxy_pct
    read -r proxy_us user_us sys_us upstream_us proxy_pct OTHER OTHER1 < <(
        awk -v p0="$p0" -v p1="$p1" -v u0="$u0" -v u1="$u1" -v c0="$c0" -v c1="$c1" \
            -v l0="$l0" -v l1="$l1" -v wms="$((w1 - w0))" -v n="$requests" -v t="$TCK" \
            -v has="$pid" 'BEGIN {
                split(p0, a, " "); split(p1, b, " "); pu = b[1] - a[1]; ps = b[2] - a[2];
                split(u0, a, " "); split(u1, b, " "); up = b[1] + b[2] - a[1] - a[2];
                split(c0, a, " "); split(c1, b, " "); busy = b[1] - a[1]; total = b[2] - a[2];
                split(l0, a, " "); split(l1, b, " "); busy1 = b[1] - a[1]; total1 = b[2] - a[2];
                if (total <= 0) total = 1; if (total1 <= 0) total1 = 1;
                us = 1e6 / t / n;
                other1 = 100 * (busy1 - up - wms * t / 1000) / total1;
                if (has == "-") {
                    printf "- - - %.2f - %.0f %.0f\n", up * us, 100 * busy / total, other1
                } else {
                    printf "%.2f %.2f %.2f %.2f %.0f %.0f %.0f\n", (pu + ps) * us, pu * us,
                        ps * us, up * us, 100 * (pu + ps) / total,
                        100 * (busy - pu - ps) / total, other1
                } }'
    )
    LINE=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$round" "$row" \
        "$requests" "$rps" "$p50" "$p99" "$proxy_us" "$user_us" "$sys_us" "$upstream_us" \
        "$proxy_pct" "$OTHER" "$OTHER1" "$attempt")
    log "  $row: $rps req/s, p50 $p50, p99 $p99, proxy ${proxy_us} µs/req (user $user_us, sys $sys_us); other work: CPU $PROXY_CPU ${OTHER}%, CPU $LOAD_CPU ${OTHER1}%"
}

wait_quiet() { # until both CPUs have been (nearly) idle for a second, at most QUIET_WAIT s
    local waited=0 a0 a1 b0 b1 busy
    while :; do
        a0=$(cpu_line "$PROXY_CPU") b0=$(cpu_line "$LOAD_CPU")
        sleep 1
        a1=$(cpu_line "$PROXY_CPU") b1=$(cpu_line "$LOAD_CPU")
        busy=$(awk -v a0="$a0" -v a1="$a1" -v b0="$b0" -v b1="$b1" 'BEGIN {
            split(a0, x, " "); split(a1, y, " "); t = y[2] - x[2]; p = t > 0 ? 100 * (y[1] - x[1]) / t : 0;
            split(b0, x, " "); split(b1, y, " "); t = y[2] - x[2]; q = t > 0 ? 100 * (y[1] - x[1]) / t : 0;
            printf "%.0f", (p > q) ? p : q }')
        if ((busy <= OTHER_MAX)); then return 0; fi
        waited=$((waited + 1))
        if ((waited == 1)); then log "  waiting for the CPUs to be quiet (${busy}% busy)"; fi
        if ((waited >= QUIET_WAIT)); then
            log "  still ${busy}% busy after ${QUIET_WAIT} s; measuring anyway"
            return 0
        fi
    done
}

# One measured run of a row. On this shared machine something else may run on our CPUs
# meanwhile; a run in which other work (anything but the proxy on the proxies' CPU, anything
# but wrk and the upstream on the load CPU, hypervisor steal on either) took more than
# OTHER_MAX % of a CPU, or with socket errors, is repeated, up to RETRIES times, and the
# cleanest attempt kept.
RETRY_SPENT=0
measure() { # round row pid url mode
    local attempt best_line="" best_other=1000000 worst started
    for attempt in $(seq $((RETRIES + 1))); do
        if ((attempt > 1)); then started=$SECONDS; fi
        measure_once "$@" "$attempt"
        if ((attempt > 1)); then RETRY_SPENT=$((RETRY_SPENT + SECONDS - started)); fi
        worst=$((OTHER > OTHER1 ? OTHER : OTHER1))
        if [ -z "$SOCKERR" ] && ((worst < best_other)); then
            best_line=$LINE best_other=$worst
        fi
        if [ -z "$SOCKERR" ] && ((worst <= OTHER_MAX)); then break; fi
        if ((attempt > RETRIES)); then break; fi
        if ((RETRY_SPENT >= RETRY_BUDGET)) && [ -n "$best_line" ]; then
            log "  $2: other work took ${worst}% of a CPU; retry budget (${RETRY_BUDGET} s) spent, keeping it"
            break
        fi
        log "  $2: ${SOCKERR:-other work took ${worst}% of a CPU}; again"
        started=$SECONDS
        wait_quiet
        RETRY_SPENT=$((RETRY_SPENT + SECONDS - started))
    done
    [ -n "$best_line" ] || die "$2: socket errors in every attempt: $SOCKERR"
    printf '%s\n' "$best_line" >>"$RAW"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
total=$((${#ROWS[@]} * RUNS * (DURATION + WARMUP + 1)))
log "measuring ${#ROWS[@]} rows x $RUNS round(s) of ${DURATION} s (+${WARMUP} s warm-up): about $((total / 60 + 1)) min"
wait_quiet
for round in $(seq "$RUNS"); do
    log "round $round of $RUNS"
    for spec in "${ROWS[@]}"; do
        IFS='|' read -r row pid url mode <<<"$spec"
        measure "$round" "$row" "$pid" "$url" "$mode"
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# Still alive and still honest after the load?
expect 401 "gatehouse-uncached no token, after the runs" "http://$HOST:$P_GHNC/"
expect 401 "haproxy-es no token, after the runs" "http://$HOST:$P_HA_ES/"

# ---------------------------------------------------------------------------------------
# 6. Report
# ---------------------------------------------------------------------------------------
export B_DATE B_NPROC B_CPU B_KERNEL B_GH B_RUSTC B_AWSLC B_NGINX B_HAPROXY B_OPENSSL B_WRK
B_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
B_NPROC=$NCPU
B_CPU=$(awk -F': ' '/^model name/ && !done {print $2; done = 1}' /proc/cpuinfo)
B_KERNEL=$(uname -r)
B_GH="$("$GH" --version) @ $GH_REV"
B_RUSTC=$(rustc --version 2>/dev/null || echo '?')
B_AWSLC=$(awk '/^name = "aws-lc-(rs|sys)"/ {n = $3; getline; printf "%s%s %s", sep, n, $3; sep = ", "}' "$ROOT/Cargo.lock" | tr -d '"')
B_NGINX=$(nginx -v 2>&1)
B_HAPROXY=$HA_VERSION
B_OPENSSL=$(haproxy -vv 2>/dev/null | awk '/^Running on OpenSSL version/ && !done {sub(/^Running on OpenSSL version *: */, ""); print; done = 1}')
B_WRK=$( (wrk -v 2>&1 || true) | sed -n 1p | sed 's/ Copyright.*//')
export B_LOAD_BEFORE="$LOAD_BEFORE" B_LOAD_AFTER="$LOAD_AFTER" B_DURATION="$DURATION" \
    B_RUNS="$RUNS" B_WARMUP="$WARMUP" B_CONNS="$CONNS" B_POOL="$POOL" \
    B_PROXY_CPU="$PROXY_CPU" B_LOAD_CPU="$LOAD_CPU" B_OTHER_MAX="$OTHER_MAX" B_RETRIES="$RETRIES" \
    B_RETRY_SPENT="$RETRY_SPENT" B_RETRY_BUDGET="$RETRY_BUDGET"
python3 - "$WORK/meta.json" <<'PY'
import json, os, sys
e = os.environ
meta = {
    "date": e["B_DATE"], "nproc": e["B_NPROC"], "cpu_model": e["B_CPU"],
    "kernel": e["B_KERNEL"], "load_before": e["B_LOAD_BEFORE"],
    "load_after": e["B_LOAD_AFTER"], "duration": e["B_DURATION"], "runs": e["B_RUNS"],
    "warmup": e["B_WARMUP"], "conns": e["B_CONNS"], "pool": e["B_POOL"],
    "proxy_cpu": e["B_PROXY_CPU"], "load_cpu": e["B_LOAD_CPU"], "ports": "18081-18088",
    "other_max": e["B_OTHER_MAX"], "retries": e["B_RETRIES"],
    "retry_spent": e["B_RETRY_SPENT"], "retry_budget": e["B_RETRY_BUDGET"],
    "versions": {
        "gatehouse": e["B_GH"], "aws-lc-rs": e["B_AWSLC"] or "?", "rustc": e["B_RUSTC"], "nginx": e["B_NGINX"],
        "haproxy": e["B_HAPROXY"], "openssl": e["B_OPENSSL"] or "?", "wrk": e["B_WRK"],
        "kernel": e["B_KERNEL"],
    },
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
PY
python3 "$BENCH/report.py" "$RAW" "$WORK/meta.json" >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cp "$RAW" "$WORK/raw-copy.tsv"
log "wrote $OUT"
sed -n '/^## Targets/,/^## What each row runs/p' "$OUT" | head -n -1 >&2
