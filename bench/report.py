#!/usr/bin/env python3
"""Turns bench/run.sh's raw measurements into bench/RESULTS.md.

    python3 bench/report.py RAW_TSV META_JSON > bench/RESULTS.md

RAW_TSV has one line per measured wrk run (see the header line run.sh writes); the
table reports, per row, the median of each figure over the runs.
"""

import csv
import json
import statistics
import sys

# (key, label, proxy, what the client sends)
ROWS = [
    ("direct", "upstream direct (no proxy)", "—", "no token"),
    ("nginx", "nginx, plain proxy_pass", "nginx", "no token"),
    ("haproxy-rs-1", "HAProxy jwt_verify RS256, 1 token", "haproxy", "1 token"),
    ("haproxy-rs-pool", "HAProxy jwt_verify RS256, pool", "haproxy", "pool"),
    ("haproxy-es-1", "HAProxy jwt_verify ES256, 1 token", "haproxy", "1 token"),
    ("haproxy-es-pool", "HAProxy jwt_verify ES256, pool", "haproxy", "pool"),
    ("gh-public", "Gatehouse, public route", "gatehouse", "no token"),
    ("gh-rs-1", "Gatehouse RS256, 1 repeated token", "gatehouse", "1 token"),
    ("gh-rs-pool", "Gatehouse RS256, pool, default cache", "gatehouse", "pool"),
    ("ghnc-rs-pool", "Gatehouse RS256, pool, uncached (cache off)", "gatehouse", "pool"),
    ("gh-es-1", "Gatehouse ES256, 1 repeated token", "gatehouse", "1 token"),
    ("gh-es-pool", "Gatehouse ES256, pool, default cache", "gatehouse", "pool"),
    ("ghnc-es-pool", "Gatehouse ES256, pool, uncached (cache off)", "gatehouse", "pool"),
    ("haproxy-key-1", "HAProxy API key, static map, 1 key", "haproxy", "1 key"),
    ("haproxy-key-pool", "HAProxy API key, static map, pool", "haproxy", "key pool"),
    ("gh-key-1", "Gatehouse API key, 1 key (cached lookup)", "gatehouse", "1 key"),
    ("gh-key-pool", "Gatehouse API key, pool (cached lookup)", "gatehouse", "key pool"),
]

# (label, numerator row, denominator row, limit)
TARGETS = [
    ("public route vs plain nginx", "gh-public", "nginx", 1.2),
    ("ES256, pool, uncached vs HAProxy ES256 (pool)", "ghnc-es-pool", "haproxy-es-pool", 0.6),
    ("RS256, pool, uncached vs HAProxy RS256 (pool)", "ghnc-rs-pool", "haproxy-rs-pool", 0.8),
    ("RS256, 1 repeated token vs plain nginx", "gh-rs-1", "nginx", 1.5),
    ("ES256, 1 repeated token vs plain nginx", "gh-es-1", "nginx", 1.5),
]

# Other ratios worth seeing, no target attached.
INFO = [
    ("ES256, pool, default cache vs HAProxy ES256 (pool)", "gh-es-pool", "haproxy-es-pool"),
    ("RS256, pool, default cache vs HAProxy RS256 (pool)", "gh-rs-pool", "haproxy-rs-pool"),
    ("ES256, 1 repeated token vs HAProxy ES256 (1 token)", "gh-es-1", "haproxy-es-1"),
    ("RS256, 1 repeated token vs HAProxy RS256 (1 token)", "gh-rs-1", "haproxy-rs-1"),
    ("HAProxy RS256 (pool) vs plain nginx", "haproxy-rs-pool", "nginx"),
    ("HAProxy ES256 (pool) vs plain nginx", "haproxy-es-pool", "nginx"),
    ("ES256, pool, uncached vs plain nginx", "ghnc-es-pool", "nginx"),
    ("RS256, pool, uncached vs plain nginx", "ghnc-rs-pool", "nginx"),
    ("API key, pool vs HAProxy static key map (pool)", "gh-key-pool", "haproxy-key-pool"),
    ("API key, 1 key vs HAProxy static key map (1 key)", "gh-key-1", "haproxy-key-1"),
    ("API key, pool vs plain nginx", "gh-key-pool", "nginx"),
]


def to_us(text: str) -> float:
    """wrk's latency figure (`812.00us`, `1.23ms`, `2.00s`) in microseconds."""
    for unit, factor in (("us", 1.0), ("ms", 1e3), ("s", 1e6)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    raise ValueError(f"unknown latency unit in {text!r}")


def fmt_lat(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def main() -> None:
    raw_path, meta_path = sys.argv[1], sys.argv[2]
    with open(meta_path) as f:
        meta = json.load(f)
    with open(raw_path) as f:
        runs = list(csv.DictReader(f, delimiter="\t"))

    by_row: dict[str, list[dict]] = {}
    for r in runs:
        by_row.setdefault(r["row"], []).append(r)

    med: dict[str, dict[str, float]] = {}
    for key, rs in by_row.items():
        med[key] = {
            "rps": statistics.median(float(r["rps"]) for r in rs),
            "p50": statistics.median(to_us(r["p50"]) for r in rs),
            "p99": statistics.median(to_us(r["p99"]) for r in rs),
            "cpu": statistics.median(float(r["proxy_us_per_req"]) for r in rs)
            if rs[0]["proxy_us_per_req"] != "-"
            else None,
            "cpu_min": min(float(r["proxy_us_per_req"]) for r in rs)
            if rs[0]["proxy_us_per_req"] != "-"
            else None,
            "cpu_max": max(float(r["proxy_us_per_req"]) for r in rs)
            if rs[0]["proxy_us_per_req"] != "-"
            else None,
            "user": statistics.median(float(r["proxy_user_us"]) for r in rs)
            if rs[0]["proxy_user_us"] != "-"
            else None,
            "sys": statistics.median(float(r["proxy_sys_us"]) for r in rs)
            if rs[0]["proxy_sys_us"] != "-"
            else None,
            "up": statistics.median(float(r["upstream_us_per_req"]) for r in rs),
            "n": len(rs),
            "dirty": sum(
                1
                for r in rs
                if max(float(r["other_pct"]), float(r["other1_pct"])) > float(meta["other_max"])
            ),
        }

    pool = meta["pool"]
    out = []
    w = out.append
    w("# Gatehouse side-by-side benchmark")
    w("")
    w(
        "Generated by `bash bench/run.sh` (do not edit by hand; re-run the script). "
        "Every figure below comes from one run of the script, so the ratios compare "
        "proxies measured minutes apart on the same machine."
    )
    w("")
    w(f"- Date: {meta['date']}")
    w(f"- Machine: {meta['nproc']} CPUs, {meta['cpu_model']}; kernel {meta['kernel']}")
    w(
        f"- Load average before / after: {meta['load_before']} / {meta['load_after']} "
        "(a shared machine: the other % columns of the raw runs show interference)"
    )
    w(
        f"- Settings: wrk `-t1 -c{meta['conns']}`, {meta['warmup']} s warm-up before each "
        f"measured run, {meta['duration']} s measured, {meta['runs']} run(s) per row, "
        f"rows interleaved round by round; median of the runs; token pool of {pool} "
        "distinct tokens"
    )
    w(
        f"- Pinning: each proxy on CPU {meta['proxy_cpu']} (`taskset`), wrk and the "
        f"upstream on CPU {meta['load_cpu']}"
    )
    w("")
    w("## Versions")
    w("")
    for k in ("gatehouse", "aws-lc-rs", "rustc", "nginx", "haproxy", "openssl", "wrk", "kernel"):
        w(f"- {k}: `{meta['versions'].get(k, meta.get(k, '?'))}`")
    w("")
    w("## Results")
    w("")
    w(
        "Proxy CPU is utime+stime of the proxy process (nginx: its one worker; HAProxy: "
        "its one process; Gatehouse: the whole process, all threads) from `/proc/PID/stat` "
        "before and after the measured run, divided by the requests wrk completed; "
        "user / sys splits it (medians of each, so they need not add up exactly). The sys "
        "part includes the loopback TCP delivery and peer wake-ups the proxy's own sends "
        "trigger (this kernel charges softirq work done in a task's context to the task), "
        "for every proxy alike. Upstream CPU is the same figure for the echo upstream (it "
        "shares CPU 1 with wrk, so it bounds requests/s, not the proxy's cost). Figures are "
        "medians over the runs; min–max shows their spread."
    )
    w("")
    w(
        "| row | requests/s | p50 | p99 | proxy CPU µs/req (min–max) | user / sys µs | "
        "upstream CPU µs/req |"
    )
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, label, _proxy, _what in ROWS:
        m = med.get(key)
        if m is None:
            w(f"| {label.replace('pool', f'pool of {pool}')} | not run | | | | | |")
            continue
        cpu = (
            f"**{m['cpu']:.1f}** ({m['cpu_min']:.1f}–{m['cpu_max']:.1f})"
            if m["cpu"] is not None
            else "—"
        )
        split = f"{m['user']:.1f} / {m['sys']:.1f}" if m["user"] is not None else "—"
        if m["dirty"]:
            label = f"{label} ⚠ {m['dirty']} of {m['n']} runs disturbed"
        w(
            f"| {label.replace('pool', f'pool of {pool}')} | {m['rps']:,.0f} | "
            f"{fmt_lat(m['p50'])} | {fmt_lat(m['p99'])} | {cpu} | {split} | {m['up']:.1f} |"
        )
    w("")
    dirty = sum(m["dirty"] for m in med.values())
    if dirty:
        w(
            f"⚠ {dirty} kept run(s) had other work above {meta['other_max']} % of a CPU "
            "even after the retries (see the raw runs): treat the rows marked ⚠ with care."
        )
        w("")
    w("## Targets (ratios of proxy CPU µs per request, same run)")
    w("")
    w("| target | measured | limit | result |")
    w("| --- | ---: | ---: | --- |")
    passed = 0
    for label, num, den, limit in TARGETS:
        if num not in med or den not in med:
            w(f"| {label} | not run | ≤ {limit}× | — |")
            continue
        ratio = med[num]["cpu"] / med[den]["cpu"]
        ok = ratio <= limit
        passed += ok
        w(
            f"| {label} | {ratio:.2f}× ({med[num]['cpu']:.1f} / {med[den]['cpu']:.1f}) "
            f"| ≤ {limit}× | {'PASS' if ok else '**FAIL**'} |"
        )
    w("")
    w(f"{passed} of {len(TARGETS)} targets met.")
    w("")
    w("Other ratios (no target):")
    w("")
    for label, num, den in INFO:
        if num in med and den in med:
            w(f"- {label}: {med[num]['cpu'] / med[den]['cpu']:.2f}×")
    w("")
    w("## Reading the numbers")
    w("")
    w(
        "- On this machine (a 2-vCPU Firecracker VM) most of a plain hop's cost is kernel "
        "time: compare the user / sys split of nginx. The sys part per request grows when "
        "the proxy's request rate falls (fewer requests share each wake-up of wrk and the "
        "upstream on the other CPU), so rows that run at a low rate because a signature "
        "check saturates the proxy pay more sys per request than the hop rows. That is "
        "why the like-for-like comparison for signature checks is Gatehouse uncached vs "
        "HAProxy (similar rates), and why subtracting the public-route row from an uncached "
        "row overstates the cost of the check itself."
    )
    w(
        "- Ratios are only meaningful within one run of the script, and even then carry "
        "noise: this VM's speed drifts with the load on its host, which no counter here "
        "shows (the same row can move by 20–50 % between runs a minute apart with no "
        "other work visible). The RS256 and ES256 one-token rows of Gatehouse take the "
        "same code path (a verified-token cache hit), so the gap between them shows how "
        "much noise a run carries; a target passed or failed by less than that is not "
        "settled."
    )
    w("")
    w("## What each row runs")
    w("")
    w(
        "- **upstream direct**: wrk against `echo_upstream --small` (a current-thread tokio "
        "server answering a 2-byte body)."
    )
    w(
        "- **nginx**: `worker_processes 1`, `proxy_pass` to an `upstream` block with "
        "`keepalive 64`, `proxy_http_version 1.1`, `access_log off` (`bench/conf/nginx.conf.tmpl`)."
    )
    w(
        "- **HAProxy**: `nbthread 1`; `http_auth_bearer`, `jwt_header_query('$.alg')` pinned "
        "to the one expected algorithm, `jwt_verify` against the PEM public key must return "
        "1, `jwt_payload_query('$.exp','int')` must be later than `date()`; sets "
        "`X-Auth-User-Id` from `sub` and drops `Authorization`; anything else is denied "
        "with 401 (`bench/conf/haproxy.cfg.tmpl`). HAProxy has no verified-token cache: "
        "every request pays a signature check, so its 1-token and pool rows should agree."
    )
    w(
        "- **Gatehouse**: `server.worker_threads = 1`, two issuers read from JWKS files "
        "(RS256 with an RSA-2048 key, ES256 with a P-256 key), `/public/` public and "
        "everything else requiring a token; iss, aud, exp, sub and the signature are "
        "checked and identity headers injected (`bench/conf/gatehouse.toml.tmpl`). "
        "\"default cache\" is the verified-token cache as shipped; after the warm-up all "
        f"{pool} tokens of the pool are cached, so those rows measure a cache with "
        f"{pool} live entries. \"uncached\" is a second instance with "
        "`jwt.verified_cache_capacity = 0` (the cache off), so every request verifies a "
        "signature: that is the like-for-like comparison with HAProxy."
    )
    w(
        f"- **pool**: {pool} distinct valid tokens per algorithm (different `sub` and "
        "`jti`), sent round robin by `bench/rotate.lua` (request strings built once in "
        "`init`)."
    )
    w(
        f"- **API key rows**: {pool} API keys of one user, created through Gatehouse's auth "
        "API (SQLite store) and sent in `X-API-KEY`. Gatehouse checks the format and CRC32, "
        "computes the peppered HMAC-SHA-256 digest and finds the key in its lookup cache "
        "(every key is warm after the warm-up: no store query), checks expiry and "
        "revocation, and injects the owner's identity headers. HAProxy looks the same keys "
        "up in a static map file (`map()`), the usual way to do API keys with it: no "
        "checksum, expiry, revocation, scopes or store behind it."
    )
    w(
        "- Before measuring, the script checks that every proxy answers 200 to a valid "
        "request and 401 to a missing, badly signed, expired, or wrong-algorithm token "
        "(and Gatehouse also to a wrong audience), and aborts otherwise; a measured run "
        "with any non-2xx response aborts too, one with socket errors is repeated."
    )
    w("")
    w("## Raw runs")
    w("")
    w(
        f"proxy % is the proxy's share of CPU {meta['proxy_cpu']} during the run; other % "
        f"is everything else on CPU {meta['proxy_cpu']} (other processes on this shared "
        f"machine, kernel threads, hypervisor steal) and other₁ % the same on CPU "
        f"{meta['load_cpu']} beyond wrk and the upstream. A run in which either exceeded "
        f"{meta['other_max']} % was repeated (up to {meta['retries']} times, within a "
        f"budget of {meta['retry_budget']} s for the whole script, of which "
        f"{meta['retry_spent']} s were used) and the cleanest attempt kept (each retry "
        "first waits up to a minute for both CPUs to be idle); `attempt` says which one "
        "that was."
    )
    w("")
    w(
        "| round | row | requests | requests/s | p50 | p99 | proxy CPU µs/req | user | sys | "
        "upstream CPU µs/req | proxy % | other % | other₁ % | attempt |"
    )
    w("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    order = {k: i for i, (k, *_rest) in enumerate(ROWS)}
    for r in sorted(runs, key=lambda r: (order.get(r["row"], 99), int(r["round"]))):
        w(
            f"| {r['round']} | {r['row']} | {int(r['requests']):,} | {float(r['rps']):,.0f} | "
            f"{r['p50']} | {r['p99']} | {r['proxy_us_per_req']} | {r['proxy_user_us']} | "
            f"{r['proxy_sys_us']} | {r['upstream_us_per_req']} | {r['proxy_pct']} | "
            f"{r['other_pct']} | {r['other1_pct']} | {r['attempt']} |"
        )
    w("")
    w("## How to reproduce")
    w("")
    w("```sh")
    w("bash bench/run.sh          # full: 3 rounds x 10 s (+ warm-ups): ~9 min when the machine is quiet")
    w("DURATION=2 RUNS=1 WARMUP=1 bash bench/run.sh   # quick smoke")
    w("```")
    w("")
    w(
        "The script installs what is missing (`wrk`, `nginx-light`, `haproxy`, PyJWT, "
        "cryptography), builds `gatehouse` and the `echo_upstream` example in release mode, "
        "mints fresh keys and tokens into a temporary directory, listens only on "
        f"127.0.0.1 ports {meta['ports']}, and stops everything it started on exit. "
        "Other knobs: `POOL`, `CONNS`, `PROXY_CPU`, `LOAD_CPU`, `OTHER_MAX`, `RETRIES`, `QUIET_WAIT`, "
        "`OUT` (where this file goes), `NO_BUILD=1`, `KEEP=1` (keep the temporary directory "
        "with wrk outputs and logs). Run it on an otherwise idle machine: the proxy CPU per request is the "
        "steadiest figure, requests/s and latencies move with whatever else runs."
    )
    w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
