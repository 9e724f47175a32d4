//! What a client can do to the hop itself: name injected headers in `Connection`, ask for
//! upgrades, send forwarding headers, oversized heads, or hold connections open doing
//! nothing. Each through the real server.
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

mod common;

use std::time::{Duration, Instant};

use common::raw;
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ISS: &str = "https://idp.test";

struct Env {
    upstream: Upstream,
    jwks: JwksServer,
    key: TestKey,
    gh: Gatehouse,
}

async fn env(server: &str, extra: &str) -> Env {
    env_patched(server, extra, true).await
}

/// `extra` lines that start a section the harness already writes (`[upstream]`,
/// `[headers]`) go into that section.
async fn env_patched(server: &str, extra: &str, wait: bool) -> Env {
    let key = TestKey::generate(Algorithm::ES256);
    let upstream = Upstream::start().await;
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let mut text =
        format!("[server]\n{server}\n{}", config(&upstream, &issuer_block(ISS, &jwks_server.url(), &["ES256"])));
    for section in ["[upstream]\n", "[headers]\n"] {
        if let Some(body) = extra.strip_prefix(section) {
            text = text.replacen(section, &format!("{section}{body}\n"), 1);
        }
    }
    let gh = Gatehouse::start(&text).await;
    if wait {
        gh.wait_ready().await;
    }
    Env { upstream, jwks: jwks_server, key, gh }
}

fn token(e: &Env, perms: &[&str]) -> String {
    let mut c = claims(ISS, "alice");
    c["permissions"] = json!(perms);
    c["team_id"] = json!("t-1");
    e.key.sign(&c)
}

#[tokio::test]
async fn connection_cannot_name_away_what_gatehouse_sets() {
    let e = env("", "").await;
    let t = token(&e, &["read"]);
    for named in [
        "X-Auth-Permissions, X-Auth-Team-Id",
        "x-auth-user-id",
        "X-Auth-Method, X-Auth-Role, X-Auth-Email",
        "X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Real-IP",
        "X-Request-Id",
        "keep-alive, X-Auth-User-Id, close",
    ] {
        let r = raw::send(
            e.gh.addr,
            &format!("GET /app HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer {t}\r\nConnection: {named}"),
        )
        .await;
        assert_eq!(r.status, 200, "{named}");
        let echo = r.json();
        assert_eq!(seen(&echo, "x-auth-user-id"), ["alice"], "{named}");
        assert_eq!(seen(&echo, "x-auth-permissions"), ["read"], "{named}");
        assert_eq!(seen(&echo, "x-auth-team-id"), ["t-1"], "{named}");
        assert_eq!(seen(&echo, "x-auth-method"), ["jwt"], "{named}");
        assert_eq!(seen(&echo, "x-forwarded-for"), ["127.0.0.1"], "{named}");
        assert_eq!(seen(&echo, "x-real-ip"), ["127.0.0.1"], "{named}");
        assert_eq!(seen(&echo, "x-forwarded-proto"), ["http"], "{named}");
        assert_eq!(seen(&echo, "x-request-id").len(), 1, "{named}");
        assert!(seen(&echo, "connection").iter().all(|v| !v.to_ascii_lowercase().contains("x-auth")), "{named}");
    }
    // Naming the credential only makes the caller anonymous: it never passes a protected route.
    let r = raw::send(
        e.gh.addr,
        &format!("GET /app HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer {t}\r\nConnection: Authorization"),
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn only_allowed_upgrades_are_offered_upstream() {
    let e = env("", "").await;
    let t = token(&e, &["read"]);
    let attempts = [
        ("GET", "h2c", "Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"),
        ("GET", "foo/1", "Upgrade"),
        ("GET", "TLS/1.2", "Upgrade"),
        ("GET", "websocket, h2c", "Upgrade"),
        ("POST", "websocket", "Upgrade\r\nContent-Length: 0"),
    ];
    for (method, proto, connection) in attempts {
        let r = raw::send(
            e.gh.addr,
            &format!(
                "{method} /ws HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer {t}\r\nUpgrade: {proto}\r\nConnection: {connection}"
            ),
        )
        .await;
        assert_eq!(r.status, 200, "{method} {proto}: answered as a plain request, never switched");
        let echo = r.json();
        assert!(seen(&echo, "upgrade").is_empty(), "{proto} reached the upstream");
        assert!(seen(&echo, "http2-settings").is_empty());
    }
    // WebSocket still works (tests/proxy.rs has the full splice), and the list is configurable.
    let e = env("", "[upstream]\nupgrades = []").await;
    let t = token(&e, &["read"]);
    let r = raw::send(
        e.gh.addr,
        &format!(
            "GET /ws HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer {t}\r\nUpgrade: websocket\r\nConnection: Upgrade"
        ),
    )
    .await;
    assert_eq!(r.status, 200, "with upgrades = [] WebSocket is not offered either");
}

#[tokio::test]
async fn h2c_cannot_be_allowed() {
    let err =
        gatehouse::Config::from_toml("[upstream]\nurl = \"http://127.0.0.1:1\"\nupgrades = [\"h2c\"]\n", Vec::new())
            .unwrap_err();
    assert_eq!(err.problems[0].key, "upstream.upgrades[0]");
}

#[tokio::test]
async fn forwarding_headers_from_untrusted_peers_are_replaced() {
    let e = env("", "").await;
    let spoofed = [
        "X-Real-IP: 10.9.9.9",
        "X-Forwarded-Port: 8443",
        "X-Forwarded-Prefix: /admin",
        "X-Original-URL: /admin/users",
        "X-Rewrite-URL: /admin/users",
        "X-Original-URI: /admin/users",
        "X-Forwarded-Server: internal",
        "X-Forwarded-Ssl: on",
        "X-Forwarded-Scheme: https",
        "X-Client-IP: 10.9.9.9",
        "True-Client-IP: 10.9.9.9",
        "X-Host: admin.internal",
        "X-Forwarded-Client-Cert: By=spiffe://x",
        "X_Real_IP: 10.9.9.9",
        "X_Forwarded_For: 10.9.9.9",
        "Forwarded: for=10.9.9.9",
        "X-Forwarded-For: 10.9.9.9",
        "X-Forwarded-Host: admin.internal",
        "X-Forwarded-Proto: https",
    ];
    let r = raw::send(e.gh.addr, &format!("GET /public/x HTTP/1.1\r\nHost: app\r\n{}", spoofed.join("\r\n"))).await;
    assert_eq!(r.status, 200);
    let echo = r.json();
    let headers = echo["headers"].as_object().unwrap();
    for h in &spoofed {
        let name = h.split(':').next().unwrap().to_ascii_lowercase();
        for (k, v) in headers {
            if k.replace('_', "-") == name.replace('_', "-") {
                assert!(!v.to_string().contains("10.9.9.9") && !v.to_string().contains("admin"), "{h}: {k}={v}");
                assert!(!v.to_string().contains("8443") && !v.to_string().contains("spiffe"), "{h}: {k}={v}");
            }
        }
    }
    assert_eq!(seen(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen(&echo, "x-real-ip"), ["127.0.0.1"]);
    assert_eq!(seen(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(seen(&echo, "x-forwarded-host"), ["app"]);
}

#[tokio::test]
async fn forwarded_for_entries_with_ports_and_garbage() {
    let e = env("trusted_proxies = [\"127.0.0.1\"]", "").await;
    for (xff, client) in [
        ("198.51.100.7, 203.0.113.9", "203.0.113.9"),
        ("198.51.100.7, 203.0.113.9:4711", "203.0.113.9"),
        ("198.51.100.7, [2001:db8::9]:4711", "2001:db8::9"),
        ("198.51.100.7, garbage", "127.0.0.1"),
        ("198.51.100.7, 203.0.113.9:x", "127.0.0.1"),
    ] {
        let r = raw::send(e.gh.addr, &format!("GET /public/x HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: {xff}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(seen(&r.json(), "x-real-ip"), [client], "{xff}");
    }
    // A trusted proxy's own forwarding headers pass.
    let r = raw::send(e.gh.addr, "GET /public/x HTTP/1.1\r\nHost: app\r\nX-Forwarded-Prefix: /base").await;
    assert_eq!(seen(&r.json(), "x-forwarded-prefix"), ["/base"]);
}

#[tokio::test]
async fn oversized_heads_get_431_and_never_reach_the_upstream() {
    let e = env("", "").await;
    for size in [70_000usize, 100_000, 200_000] {
        let r =
            raw::send(e.gh.addr, &format!("GET /public/x HTTP/1.1\r\nHost: app\r\nX-Big: {}", "a".repeat(size))).await;
        assert_eq!(r.status, 431, "{size}");
    }
    // Many headers that add up, too.
    let many: Vec<String> = (0..60).map(|i| format!("X-H{i}: {}", "b".repeat(1500))).collect();
    let r = raw::send(e.gh.addr, &format!("GET /public/x HTTP/1.1\r\nHost: app\r\n{}", many.join("\r\n"))).await;
    assert_eq!(r.status, 431);
    assert_eq!(r.json()["code"], "headers_too_large");
    assert_eq!(e.upstream.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    let r =
        raw::send(e.gh.addr, &format!("GET /public/x HTTP/1.1\r\nHost: app\r\nX-Big: {}", "a".repeat(30_000))).await;
    assert_eq!(r.status, 200, "a 30 KB head is fine");
    // Configurable.
    let small = env("max_header_bytes = 16384", "").await;
    let r = raw::send(small.gh.addr, &format!("GET /public/x HTTP/1.1\r\nHost: app\r\nX-Big: {}", "a".repeat(20_000)))
        .await;
    assert_eq!(r.status, 431);
}

/// Whether the server closes `s` within `within` (EOF or reset) without a response.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    match tokio::time::timeout(within, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => {
            // A response (e.g. 408) is fine too, as long as the connection then ends.
            matches!(tokio::time::timeout(within, s.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
        }
        Err(_) => false,
    }
}

#[tokio::test]
async fn idle_connections_give_their_slots_back() {
    let e = env("max_connections = 2\nheader_read_timeout = \"500ms\"\nidle_timeout = \"1s\"", "").await;
    // Two sockets that send nothing take both slots ...
    let mut silent = TcpStream::connect(e.gh.addr).await.unwrap();
    let mut preface = TcpStream::connect(e.gh.addr).await.unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ... so a third is turned away at once,
    let mut third = TcpStream::connect(e.gh.addr).await.unwrap();
    third.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(closed_within(&mut third, Duration::from_secs(2)).await, "the limit holds");
    // ... until the idle ones are closed by the server.
    let started = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await, "a silent connection is closed");
    assert!(closed_within(&mut preface, Duration::from_secs(5)).await, "a half HTTP/2 preface is closed");
    assert!(started.elapsed() < Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = raw::send(e.gh.addr, "GET /public/x HTTP/1.1\r\nHost: x").await;
    assert_eq!(r.status, 200, "the slots are free again");

    // A keep-alive connection left idle after a request is closed too (HTTP/1.1 and HTTP/2).
    let mut kept = TcpStream::connect(e.gh.addr).await.unwrap();
    kept.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut kept, Duration::from_secs(5)).await, "an idle keep-alive is closed");

    // A slowloris head (a byte now and then, never finished) is cut as well.
    let mut slow = TcpStream::connect(e.gh.addr).await.unwrap();
    let cut = async {
        for b in b"GET /public/x HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if slow.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    let cut = tokio::time::timeout(Duration::from_secs(8), cut).await.unwrap_or(false);
    assert!(cut || closed_within(&mut slow, Duration::from_secs(3)).await, "a slowloris head is cut");
}

#[tokio::test]
async fn streaming_responses_are_not_idle() {
    // A response that takes longer than idle_timeout but keeps its request in flight.
    let e = env("idle_timeout = \"300ms\"\nheader_read_timeout = \"300ms\"", "").await;
    let r = raw::send(e.gh.addr, "GET /public/slow/900 HTTP/1.1\r\nHost: x").await;
    assert_eq!(r.status, 200);
    let r = raw::send(e.gh.addr, "GET /public/stream/12 HTTP/1.1\r\nHost: x").await;
    assert_eq!(r.status, 200);
    assert_eq!(String::from_utf8_lossy(&r.body).lines().count(), 12);
}

#[tokio::test]
async fn slow_tls_handshakes_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let e = env_patched(
        &format!(
            "max_connections = 1\nhandshake_timeout = \"500ms\"\ntls = {{ cert_file = \"{}\", key_file = \"{}\" }}",
            cert_path.display(),
            key_path.display()
        ),
        "",
        false,
    )
    .await;
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let c =
        reqwest::Client::builder().no_proxy().tls_certs_only([root]).resolve("localhost", e.gh.addr).build().unwrap();
    let url = format!("https://localhost:{}/public/x", e.gh.addr.port());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "TLS serves");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut s = TcpStream::connect(e.gh.addr).await.unwrap();
    // The start of a ClientHello record, never finished: it holds the one slot ...
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(5)).await, "a stalled handshake is cut");
    // ... and gives it back.
    let c = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap()])
        .resolve("localhost", e.gh.addr)
        .build()
        .unwrap();
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    let _ = e.jwks.url();
}

#[tokio::test]
async fn renamed_identity_headers_still_strip_their_default_names() {
    let e = env("", "[headers]\nuser_id = \"X-User\"\nteam_id = \"\"\n").await;
    let t = token(&e, &["read"]);
    let r = raw::send(
        e.gh.addr,
        &format!(
            "GET /app HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer {t}\r\nX-Auth-User-Id: admin\r\nX-Auth-Team-Id: 1\r\nX-Auth-Email-Verified: true"
        ),
    )
    .await;
    let echo = r.json();
    assert_eq!(seen(&echo, "x-user"), ["alice"]);
    assert!(seen(&echo, "x-auth-user-id").is_empty());
    assert!(seen(&echo, "x-auth-team-id").is_empty());
    assert!(seen(&echo, "x-auth-email-verified").is_empty());
}

#[tokio::test]
async fn metrics_can_have_their_own_listener() {
    // The binary, both listeners on port 0: each logs the address it got, so none is guessed.
    let key = TestKey::generate(Algorithm::ES256);
    let upstream = Upstream::start().await;
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n{}",
        config(&upstream, &issuer_block(ISS, &jwks_server.url(), &["ES256"]))
    );
    std::fs::write(&path, text).unwrap();
    let mut gh = spawn_gatehouse(&path, &[]).await;
    gh.wait_ready().await;
    let metrics = gh.wait_for_field("metrics are served on their own listener", "listen").await;
    assert_ne!(metrics, gh.addr.to_string(), "a listener of its own");
    // On the main listener /metrics is just a path: here it needs a credential like any other.
    let r = client().get(gh.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client().get(format!("http://{metrics}/metrics")).send().await.expect("the metrics listener answers");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("gatehouse_"));
    let r = client().get(format!("http://{metrics}/app")).send().await.unwrap();
    assert_eq!(r.status(), 404, "and serves nothing else");
}

#[tokio::test]
async fn websockets_keep_their_connection_slot() {
    let e = env("max_connections = 2", "").await;
    let t = token(&e, &["read"]);
    let mut ws = TcpStream::connect(e.gh.addr).await.unwrap();
    ws.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nAuthorization: Bearer {t}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = ws.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    // The spliced stream still holds one of the two slots: one more connection fits ...
    let mut other = TcpStream::connect(e.gh.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ... and a third is turned away.
    let mut third = TcpStream::connect(e.gh.addr).await.unwrap();
    third.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(closed_within(&mut third, Duration::from_secs(2)).await, "the WebSocket counts against the limit");
    other.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut resp = Vec::new();
    other.read_to_end(&mut resp).await.unwrap();
    assert!(String::from_utf8_lossy(&resp).starts_with("HTTP/1.1 200"));
    // Closing the WebSocket gives its slot back.
    drop(ws);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = raw::send(e.gh.addr, "GET /public/x HTTP/1.1\r\nHost: x").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn http2_connections_idle_between_requests_are_closed_despite_pings() {
    let e = env("max_connections = 1\nheader_read_timeout = \"500ms\"\nidle_timeout = \"1s\"", "").await;
    // wait_ready's keep-alive connection holds the one slot until hyper's header timer ends it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tcp = TcpStream::connect(e.gh.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(300))
        .keep_alive_while_idle(true)
        .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let req = http::Request::get("http://x/public/x").body(http_body_util::Empty::new()).unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    // PINGs every 300 ms, no request: the connection is still idle and gives its slot back.
    let ended = tokio::time::timeout(Duration::from_secs(6), driver).await;
    assert!(ended.is_ok(), "the server closed the idle HTTP/2 connection");
    let r = raw::send(e.gh.addr, "GET /public/x HTTP/1.1\r\nHost: x").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn descriptors_of_url_method_and_host_never_pass_from_any_peer() {
    for server in ["", "trusted_proxies = [\"127.0.0.1\"]"] {
        let e = env(server, "").await;
        let r = raw::send(
            e.gh.addr,
            "GET /public/x HTTP/1.1\r\nHost: app\r\nX-Original-URL: /admin/users\r\nX-Rewrite-URL: /admin/users\r\n\
             X-Original-URI: /admin\r\nX-Forwarded-Uri: /admin\r\nX-Forwarded-Path: /admin\r\nX-Original-Method: DELETE\r\n\
             X-Forwarded-Method: DELETE\r\nX-Envoy-Original-Path: /admin\r\nX_Original_URL: /admin\r\n\
             X-Forwarded-Host: admin.example.com",
        )
        .await;
        assert_eq!(r.status, 200, "{server}");
        let echo = r.json();
        for h in [
            "x-original-url",
            "x-rewrite-url",
            "x-original-uri",
            "x-forwarded-uri",
            "x-forwarded-path",
            "x-original-method",
            "x-forwarded-method",
            "x-envoy-original-path",
            "x_original_url",
        ] {
            assert!(seen(&echo, h).is_empty(), "{server}: {h} reached the upstream");
        }
        assert_eq!(seen(&echo, "x-forwarded-host"), ["app"], "{server}: the host that was matched");
    }
}

#[tokio::test]
async fn other_proxies_identity_and_forwarding_headers_never_pass_from_clients() {
    let e = env("", "").await;
    let spoofed = [
        "X-Forwarded-User: admin",
        "X-Forwarded-Email: root@corp",
        "X-Forwarded-Groups: admins",
        "X-Forwarded-Preferred-Username: admin",
        "X-Forwarded-Access-Token: t",
        "X-Forwarded-Tls-Client-Cert: MIIB",
        "X-Forwarded: for=1.2.3.4",
        "Forwarded-For: 1.2.3.4",
        "Client-IP: 10.0.0.1",
        "Remote-User: admin",
        "X-Remote-User: admin",
        "X-WEBAUTH-USER: admin",
        "X-Auth-Request-User: admin",
        "X-Auth-Request-Email: root@corp",
        "X-MS-CLIENT-PRINCIPAL-NAME: admin",
        "X-Goog-Authenticated-User-Email: accounts.google.com:root@corp",
        "X-Amzn-Oidc-Identity: admin",
        "X-SSL-Client-Verify: SUCCESS",
        "X-Arr-ClientCert: MIIB",
        "X-Scheme: https",
        "X_Forwarded_User: admin",
    ];
    let r = raw::send(e.gh.addr, &format!("GET /public/x HTTP/1.1\r\nHost: app\r\n{}", spoofed.join("\r\n"))).await;
    assert_eq!(r.status, 200);
    let echo = r.json();
    for h in spoofed {
        let name = h.split(':').next().unwrap().to_ascii_lowercase();
        assert!(seen(&echo, &name).is_empty(), "{name} reached the upstream");
    }
}

#[tokio::test]
async fn forward_auth_refuses_method_overrides() {
    let e = env("", "").await;
    let t = token(&e, &["read"]);
    for name in ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X_HTTP_Method_Override"] {
        let r = raw::send(
            e.gh.addr,
            &format!(
                "GET /verify HTTP/1.1\r\nHost: gh\r\nX-Forwarded-Method: POST\r\nX-Forwarded-Uri: /public/x\r\n\
                 X-Forwarded-Host: app\r\nAuthorization: Bearer {t}\r\n{name}: DELETE"
            ),
        )
        .await;
        assert_eq!(r.status, 400, "{name}");
    }
}

#[tokio::test]
async fn an_ignored_credential_is_not_forwarded() {
    let e = env("", "[headers]\nforward_authorization = true").await;
    let r =
        raw::send(e.gh.addr, "GET /public/x HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer forged.token.here").await;
    assert_eq!(r.status, 200);
    assert!(seen(&r.json(), "authorization").is_empty(), "a refused credential never reaches the app");
    let t = token(&e, &["read"]);
    let r = raw::send(e.gh.addr, &format!("GET /public/x HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer {t}")).await;
    assert_eq!(seen(&r.json(), "authorization"), [format!("Bearer {t}")], "an accepted one does, when configured");
}

#[tokio::test]
async fn config_refuses_framing_headers_wildcards_and_bad_timeouts() {
    let base = "[upstream]\nurl = \"http://127.0.0.1:1\"\n";
    for (extra, key) in [
        ("[headers]\nclaims = { x = \"Content-Length\" }\n", "headers"),
        ("[headers]\nuser_id = \"X-Forwarded-User\"\n", "headers"),
        ("[headers]\nrole = \"Transfer-Encoding\"\n", "headers"),
        ("[[routes]]\npath = \"/admin/*\"\n", "routes[0].path"),
        ("[server]\nidle_timeout = \"0s\"\n", "server.idle_timeout"),
        ("[server]\nheader_read_timeout = \"200000000000000d\"\n", "server.header_read_timeout"),
    ] {
        let err = gatehouse::Config::from_toml(&format!("{base}{extra}"), Vec::new()).unwrap_err();
        assert!(err.problems.iter().any(|p| p.key == key), "{extra}: {err}");
    }
    // Stripping another proxy's header is fine.
    gatehouse::Config::from_toml(&format!("{base}[headers]\nstrip = [\"X-Forwarded-User\"]\n"), Vec::new()).unwrap();
}

#[tokio::test]
async fn auth_api_bodies_that_never_arrive_time_out() {
    let upstream = Upstream::start().await;
    let store = Backend::Sqlite.fresh().await;
    let text = accounts_config(&upstream, &store, "request_timeout = \"500ms\"");
    let gh = Gatehouse::start(&text).await;
    gh.wait_ready().await;
    let mut s = TcpStream::connect(gh.addr).await.unwrap();
    s.write_all(
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("answered in time").unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(head.contains("request_timeout"), "{head}");
}
