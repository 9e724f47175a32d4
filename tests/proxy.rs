//! The proxy path against a real upstream: forwarding, header hygiene, streaming,
//! upgrades, HTTP/2 and TLS, timeouts, bad input and graceful shutdown.
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

mod common;

use std::time::Duration;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ISS: &str = "https://idp.test";

struct Env {
    upstream: Upstream,
    _jwks: JwksServer,
    key: TestKey,
    gh: Gatehouse,
}

async fn env_with(extra: &str) -> Env {
    let key = TestKey::generate(Algorithm::ES256);
    let upstream = Upstream::start().await;
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let text = config(&upstream, &format!("{extra}\n{}", issuer_block(ISS, &jwks_server.url(), &["ES256"])));
    let gh = Gatehouse::start(&text).await;
    gh.wait_ready().await;
    Env { upstream, _jwks: jwks_server, key, gh }
}

async fn env() -> Env {
    env_with("").await
}

fn token(env: &Env, sub: &str, permissions: &[&str]) -> String {
    let mut c = claims(ISS, sub);
    c["permissions"] = json!(permissions);
    env.key.sign(&c)
}

#[tokio::test]
async fn public_and_protected_routes() {
    let e = env().await;
    let (status, headers, echo) = get(&e.gh, "/public/page?x=1", None).await;
    assert_eq!(status, 200);
    assert_eq!(echo["path"], "/public/page?x=1");
    assert!(headers.contains_key("x-request-id"));

    let (status, headers, body) = get(&e.gh, "/private", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(body["code"], "missing_credentials");
    assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    assert_eq!(
        e.upstream.hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "denied requests never reach the upstream"
    );

    // A bad credential on a public route: the caller is anonymous, not refused.
    let (status, _, echo) = get(&e.gh, "/public/x", Some("not-a-token")).await;
    assert_eq!(status, 200);
    assert!(seen(&echo, "x-auth-user-id").is_empty());
    // A good one on a public route is still identified.
    let (_, _, echo) = get(&e.gh, "/public/x", Some(&token(&e, "alice", &[]))).await;
    assert_eq!(seen(&echo, "x-auth-user-id"), ["alice"]);
}

#[tokio::test]
async fn client_identity_headers_never_reach_the_upstream() {
    let e = env().await;
    let spoof = [
        ("X-Auth-User-Id", "admin"),
        ("x-auth-user-id", "root"),
        ("X-AUTH-EMAIL", "boss@corp"),
        ("X-Auth-Role", "admin"),
        ("X-Auth-Permissions", "admin"),
        ("X-Auth-Team-Id", "1"),
        ("X-Auth-Method", "api_key"),
        ("X-Auth-Tenant", "other"),
        ("X-Auth-Org", "other"),
        ("X_Auth_User_Id", "underscore-admin"),
        ("X_AUTH_ROLE", "admin"),
        ("X_AUTH_ROLE", "admin"),
    ];
    for (path, token) in [("/public/x", None), ("/app", Some(token(&e, "alice", &["read"])))] {
        let mut req = client().get(e.gh.url(path));
        for (k, v) in spoof {
            req = req.header(k, v);
        }
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let echo: serde_json::Value = req.send().await.unwrap().json().await.unwrap();
        if token.is_some() {
            assert_eq!(seen(&echo, "x-auth-user-id"), ["alice"], "{path}");
            assert_eq!(seen(&echo, "x-auth-permissions"), ["read"]);
            assert_eq!(seen(&echo, "x-auth-method"), ["jwt"]);
        } else {
            assert!(seen(&echo, "x-auth-user-id").is_empty(), "{path}");
        }
        for name in [
            "x-auth-email",
            "x-auth-role",
            "x-auth-team-id",
            "x-auth-tenant",
            "x-auth-org",
            "x_auth_user_id",
            "x_auth_role",
        ] {
            assert!(seen(&echo, name).is_empty(), "{name} on {path}: {:?}", seen(&echo, name));
        }
        assert!(seen(&echo, "authorization").is_empty(), "Authorization is not forwarded by default");
    }
    // Denied requests too: nothing reaches the upstream at all.
    let r = client().get(e.gh.url("/app")).header("X-Auth-User-Id", "admin").send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn authorization_is_forwarded_when_configured() {
    let e = env_with("forward_authorization = true").await;
    let t = token(&e, "alice", &[]);
    let (_, _, echo) = get(&e.gh, "/app", Some(&t)).await;
    assert_eq!(seen(&echo, "authorization"), [format!("Bearer {t}")]);
}

#[tokio::test]
async fn hop_by_hop_and_forwarding_headers() {
    let e = env().await;
    let resp = client()
        .get(e.gh.url("/public/h"))
        .header("Connection", "keep-alive, X-Private-Hop")
        .header("X-Private-Hop", "secret")
        .header("Keep-Alive", "timeout=5")
        .header("Proxy-Authorization", "Basic abc")
        .header("TE", "trailers")
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Forwarded-Host", "evil.test")
        .header("X-Forwarded-Proto", "https")
        .header("Forwarded", "for=6.6.6.6;proto=https")
        .header("X-Request-Id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "req-123");
    assert!(!resp.headers().contains_key("x-upstream-private"), "response hop-by-hop header named in Connection");
    let echo: serde_json::Value = resp.json().await.unwrap();
    for name in ["x-private-hop", "keep-alive", "proxy-authorization", "te", "forwarded"] {
        assert!(seen(&echo, name).is_empty(), "{name} forwarded");
    }
    assert_eq!(seen(&echo, "x-forwarded-for"), ["127.0.0.1"], "untrusted peer's XFF is replaced");
    assert_eq!(seen(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(seen(&echo, "x-forwarded-host"), [e.gh.addr.to_string()]);
    assert_eq!(seen(&echo, "x-request-id"), ["req-123"]);
    assert_eq!(seen(&echo, "host"), [e.gh.addr.to_string()], "original Host is kept");
}

#[tokio::test]
async fn trusted_proxies_extend_the_forwarding_chain() {
    let e = env_with("[server]\ntrusted_proxies = [\"127.0.0.0/8\"]").await;
    let echo: serde_json::Value = client()
        .get(e.gh.url("/public/h"))
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Forwarded-Proto", "https")
        .header("Forwarded", "for=203.0.113.9")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen(&echo, "x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(seen(&echo, "x-forwarded-proto"), ["https"]);
    assert_eq!(seen(&echo, "forwarded"), ["for=203.0.113.9"]);
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let e = env().await;
    // Response: chunks arrive as the upstream sends them, not all at the end. The upstream
    // sends its first chunk and then waits until the test has received that chunk through
    // Gatehouse, so a proxy that held the body back would never deliver it (no clock needed;
    // the timeout only turns that deadlock into a failure).
    let mut resp = client().get(e.gh.url("/gated-stream/6")).bearer_auth(token(&e, "a", &[])).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(20), resp.chunk())
        .await
        .expect("the first chunk was held back until the upstream finished")
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b"chunk0"), "{first:?}");
    e.upstream.release();
    let mut whole = first.to_vec();
    while let Some(c) = resp.chunk().await.unwrap() {
        whole.extend_from_slice(&c);
    }
    assert!(String::from_utf8_lossy(&whole).contains("chunk5"));
    assert_eq!(String::from_utf8_lossy(&whole), (0..6).map(|i| format!("chunk{i}\n")).collect::<String>());

    // Request: a 20 MB upload arrives whole.
    let echo: serde_json::Value =
        client().post(e.gh.url("/public/upload")).body(vec![7u8; 20 << 20]).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["body_len"], 20 << 20);
    assert_eq!(echo["method"], "POST");
}

#[tokio::test]
async fn websocket_upgrade_is_spliced() {
    let e = env().await;
    let mut stream = tokio::net::TcpStream::connect(e.gh.addr).await.unwrap();
    let t = token(&e, "ws-user", &[]);
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {t}\r\nX-Auth-User-Id: spoof\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: websocket"));
    stream.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = vec![0u8; 23];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut echoed)).await.unwrap().unwrap();
    assert_eq!(&echoed, b"ping through the tunnel");

    // Without a credential the upgrade is refused before reaching the upstream.
    let mut stream = tokio::net::TcpStream::connect(e.gh.addr).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 401"));
}

#[tokio::test]
async fn upstream_failures_are_502_and_504() {
    let e = env().await;
    let (status, _, body) = get(&e.gh, "/public/slow/3000", None).await;
    assert_eq!(status, 504);
    assert_eq!(body["code"], "upstream_timeout");
    assert_eq!(body["error"], "gateway_timeout");

    // An upstream nobody listens on: a port bound but never listened on refuses every
    // connection, and stays ours (no one else can start listening there) while `dead` lives.
    let dead = tokio::net::TcpSocket::new_v4().unwrap();
    dead.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = dead.local_addr().unwrap().port();
    let text = format!(
        "[upstream]\nurl = \"http://127.0.0.1:{port}\"\n[[routes]]\npath = \"/\"\nauth = \"public\"\n[log]\naccess = false\n"
    );
    let gh = Gatehouse::start(&text).await;
    let (status, _, body) = get(&gh, "/", None).await;
    assert_eq!(status, 502);
    assert_eq!(body["code"], "upstream_unavailable");
    drop(dead);
    // Upstream statuses pass through untouched.
    assert_eq!(get(&e.gh, "/status/503", Some(&token(&e, "a", &[]))).await.0, 503);
}

#[tokio::test]
async fn http2_cleartext_and_tls_with_alpn() {
    // h2c with prior knowledge.
    let e = env().await;
    let h2 = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();
    let resp = h2.get(e.gh.url("/app")).bearer_auth(token(&e, "h2", &[])).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let echo: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(seen(&echo, "x-auth-user-id"), ["h2"]);
    assert_eq!(echo["version"], "HTTP/1.1", "the upstream hop is HTTP/1.1");

    // TLS: h2 and http/1.1 by ALPN.
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let text = format!(
        "[server]\ntls = {{ cert_file = \"{}\", key_file = \"{}\" }}\n{}",
        cert_path.display(),
        key_path.display(),
        config(&e.upstream, &issuer_block(ISS, &e._jwks.url(), &["ES256"]))
    );
    let gh = Gatehouse::start(&text).await;
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    for http1 in [false, true] {
        let mut b = reqwest::Client::builder().no_proxy().tls_certs_only([root.clone()]).resolve("localhost", gh.addr);
        if http1 {
            b = b.http1_only();
        }
        let c = b.build().unwrap();
        let url = format!("https://localhost:{}/app", gh.addr.port());
        // Until the TLS listener serves (a loaded machine is slow to get there): 20 s at most.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let resp = loop {
            match c.get(&url).bearer_auth(token(&e, "tls", &[])).send().await {
                Ok(r) if r.status() == 200 => break r,
                other => assert!(std::time::Instant::now() < deadline, "TLS request succeeds: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(resp.version(), if http1 { reqwest::Version::HTTP_11 } else { reqwest::Version::HTTP_2 });
        let echo: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(seen(&echo, "x-forwarded-proto"), ["https"]);
    }
}

/// What a raw request gets back: a response with this status, or the connection closed
/// (end of file or reset) with no response at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Status(u16),
    Closed,
}

/// Sends `bytes` on a fresh connection and reads until a whole response head or the end.
/// A server that neither answers nor closes within 20 s fails the test (a hang is never right).
async fn outcome_of(addr: std::net::SocketAddr, bytes: &[u8]) -> (Outcome, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before it has read everything: a write error is not the outcome.
    let _ = s.write_all(bytes).await;
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("the server neither answered nor closed");
    let head = String::from_utf8_lossy(&buf).into_owned();
    if buf.is_empty() {
        return (Outcome::Closed, head);
    }
    let status = head.strip_prefix("HTTP/1.1 ").and_then(|s| s.get(..3)).and_then(|s| s.parse().ok());
    (Outcome::Status(status.unwrap_or_else(|| panic!("not an HTTP/1.1 response: {head:?}"))), head)
}

#[tokio::test]
async fn garbage_requests_get_4xx_and_the_server_keeps_serving() {
    use Outcome::*;
    let e = env().await;
    let many_headers = {
        let mut r = b"GET /public/x HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..500 {
            r.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        r.extend_from_slice(b"\r\n");
        r
    };
    let huge_header = {
        let mut r = b"GET /public/x HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        r.extend(std::iter::repeat_n(b'a', 200 * 1024));
        r.extend_from_slice(b"\r\n\r\n");
        r
    };
    // (name, bytes on the wire, what must come back)
    let cases: Vec<(&str, Vec<u8>, Outcome)> = vec![
        ("header line without a colon", b"GET /public/x HTTP/1.1\r\nHost: x\r\nX-Bad\r\n\r\n".to_vec(), Status(400)),
        ("not HTTP at all", b"GARBAGE\r\n\r\n".to_vec(), Status(400)),
        ("bad percent-encoding", b"GET /public/%zz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Status(400)),
        ("encoded dot segments", b"GET /public/%2e%2e/admin HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Status(400)),
        (
            "duplicated identity header",
            b"GET /public/x HTTP/1.1\r\nHost: x\r\nX-Auth-User-Id: a\r\nX-Auth-User-Id: b\r\n\r\n".to_vec(),
            Status(200),
        ),
        ("500 headers", many_headers, Status(431)),
        ("a 200 KB header", huge_header, Status(431)),
        (
            "control bytes in a bearer token",
            b"GET /public/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \x01\x02\r\n\r\n".to_vec(),
            Status(400),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, bytes, expected) in &cases {
        let (got, head) = outcome_of(e.gh.addr, bytes).await;
        if got != *expected {
            wrong.push(format!("{name}: expected {expected:?}, got {got:?}: {head}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        e.upstream.hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the duplicated-header case reached the upstream"
    );
    // (reqwest would normalise dot segments itself, so these go raw.)
    for path in ["/public/../admin/", "/public/%2e%2e/admin/", "/public/.%2E/admin/", "/public/%2E./admin"] {
        let mut s = tokio::net::TcpStream::connect(e.gh.addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{path}: {out}");
        assert!(out.contains(r#""code":"invalid_path""#), "{out}");
    }
    // Encoded paths are matched decoded: /%61dmin is /admin.
    let (status, _, _) = get(&e.gh, "/%61dmin/x", Some(&token(&e, "a", &["read"]))).await;
    assert_eq!(status, 403);
    assert_eq!(get(&e.gh, "/public/ok", None).await.0, 200);
}

#[tokio::test]
async fn health_and_metrics() {
    let e = env().await;
    let (status, _, body) = get(&e.gh, "/healthz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    assert_eq!(get(&e.gh, "/readyz", None).await.0, 200);
    let _ = get(&e.gh, "/private", None).await;
    let text = client().get(e.gh.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("gatehouse_requests_total"), "{text}");
    assert!(text.contains(r#"code="missing_credentials""#));
    assert!(text.contains("gatehouse_jwks_ready"));
    let r = client().post(e.gh.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let e = env().await;
    let url = e.gh.url("/public/slow/700");
    let in_flight = tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) });
    // Shut down only once the request is in flight: the upstream has it (and holds it 700 ms).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while e.upstream.hits.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "the request never reached the upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let addr = e.gh.addr;
    e.gh.stop().await.unwrap();
    assert_eq!(in_flight.await.unwrap().unwrap(), 200, "the in-flight request completed");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
}
