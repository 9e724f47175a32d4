//! Gatehouse as the `auth_request` target of a real nginx, end to end.
//!
//! client (reqwest or a raw socket) -> nginx -> subrequest to Gatehouse `/verify`
//!                                           -> echo app, which reports what it received.
//!
//! nginx runs `examples/nginx.conf` itself, with its addresses swapped for ephemeral ports,
//! so the documented config is the tested one. The checks: a valid token reaches the app with
//! Gatehouse's identity headers; no token is 401 and a missing permission 403, both in the
//! JSON error shape with one `WWW-Authenticate`; client-sent identity headers never reach the
//! app (allowed, public and nginx-only locations alike); public routes need no token; the
//! decision is made on the client's own method and URI, which a client cannot override;
//! path tricks and a dead Gatehouse fail closed.
//!
//! nginx is required, not optional: the test fails (never skips) without `/usr/sbin/nginx`
//! (Debian: `apt-get install nginx-light`). `GATEHOUSE_TEST_NGINX` may name another binary.
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::now;
use common::web_server::{self, WebServer, client};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEFAULT_NGINX: &str = "/usr/sbin/nginx";
const EXAMPLE: &str = include_str!("../examples/nginx.conf");
const ISSUER: &str = "http://gatehouse.test";

// ---------------------------------------------------------------------------------------
// The app: echoes and records every request it receives.

/// One request as the app saw it. Header names are lowercase; every value is kept, so a
/// duplicated header shows up as two entries.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: BTreeMap<String, Vec<String>>,
    body: Vec<u8>,
}

impl Seen {
    fn values(&self, name: &str) -> Vec<&str> {
        self.headers.get(name).map(|v| v.iter().map(String::as_str).collect()).unwrap_or_default()
    }

    /// The header's single value; fails if it is missing or repeated.
    fn one(&self, name: &str) -> &str {
        match self.values(name).as_slice() {
            [v] => v,
            other => panic!("the app should get exactly one {name}, got {other:?}: {self:#?}"),
        }
    }

    fn identity_headers(&self) -> Vec<(&str, &Vec<String>)> {
        self.headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-auth") || k.starts_with("x_auth"))
            .map(|(k, v)| (k.as_str(), v))
            .collect()
    }
}

#[derive(Clone, Default)]
struct App {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl App {
    /// The requests received since the last call.
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    /// The one request received since the last call.
    fn take_one(&self) -> Seen {
        let mut seen = self.take();
        assert_eq!(seen.len(), 1, "the app should have got one request: {seen:#?}");
        seen.pop().unwrap()
    }

    fn assert_untouched(&self, what: &str) {
        let seen = self.take();
        assert!(seen.is_empty(), "{what}: the app must not be reached, got {seen:#?}");
    }
}

async fn start_app() -> (App, SocketAddr) {
    let app = App::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = app.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(echo(state, req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (app, addr)
}

async fn echo(app: App, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let seen = Seen { method: parts.method.to_string(), uri: parts.uri.to_string(), headers, body: body.to_vec() };
    let json = json!({"app": true, "method": seen.method, "uri": seen.uri, "headers": seen.headers});
    app.seen.lock().unwrap().push(seen);
    let mut resp = Response::new(Full::new(Bytes::from(json.to_string())));
    resp.headers_mut().insert("content-type", "application/json".parse().unwrap());
    resp
}

// ---------------------------------------------------------------------------------------
// nginx

fn nginx_binary() -> PathBuf {
    web_server::binary(
        "GATEHOUSE_TEST_NGINX",
        DEFAULT_NGINX,
        "a real nginx with the auth_request module (Debian/Ubuntu: `apt-get install nginx-light`)",
    )
}

/// examples/nginx.conf with its addresses replaced and the paths nginx writes moved into `dir`.
fn nginx_conf(port: u16, gatehouse: SocketAddr, app: SocketAddr, dir: &Path) -> String {
    let swap = |text: String, from: &str, to: &str| web_server::swap("examples/nginx.conf", text, from, to, 1);
    let d = dir.display();
    let mut conf = EXAMPLE.to_string();
    conf = swap(conf, "server 127.0.0.1:8080;", &format!("server {gatehouse};"));
    conf = swap(conf, "server 127.0.0.1:3000;", &format!("server {app};"));
    conf = swap(conf, "listen 80;", &format!("listen 127.0.0.1:{port};"));
    conf = swap(conf, "worker_processes auto;", "worker_processes 1;");
    conf = swap(
        conf,
        "\nhttp {\n",
        &format!(
            "\nhttp {{\n    access_log off;\n    \
             client_body_temp_path {d}/client_body_temp;\n    \
             proxy_temp_path {d}/proxy_temp;\n    \
             fastcgi_temp_path {d}/fastcgi_temp;\n    \
             uwsgi_temp_path {d}/uwsgi_temp;\n    \
             scgi_temp_path {d}/scgi_temp;\n"
        ),
    );
    conf
}

async fn start_nginx(bin: &Path, gatehouse: SocketAddr, app: SocketAddr, dir: &Path) -> WebServer {
    let conf_path = dir.join("nginx.conf");
    // One process, no workers: nothing switches to another user (so running as root needs no
    // `user` line), nothing outlives the kill in Drop, and the config is still the example's.
    let globals =
        format!("daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log info;", d = dir.display());
    let args = |extra: &[&str]| {
        let mut cmd = Command::new(bin);
        cmd.arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .arg("-g")
            .arg(&globals)
            .args(extra);
        cmd
    };
    WebServer::start("nginx", dir.join("error.log"), |port| {
        std::fs::write(&conf_path, nginx_conf(port, gatehouse, app, dir)).unwrap();
        let mut run = args(&[]);
        run.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
        (args(&["-t", "-q"]), run)
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Gatehouse, tokens, clients

fn gatehouse_config(app: SocketAddr, dir: &Path) -> gatehouse::Config {
    let d = dir.display();
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "1s"

[upstream]
url = "http://{app}"

[store]
url = "sqlite://{d}/gatehouse.db"

[tokens]
issuer = "{ISSUER}"
audience = "gatehouse"
algorithm = "ES256"
key_file = '{d}/signing-key.pem'

[[routes]]
path = "/public/"
auth = "public"

[[routes]]
path = "/assets/"
auth = "public"

[[routes]]
path = "/admin/"
permissions = ["admin"]

# Reading the docs is public; changing them needs `write`.
[[routes]]
path = "/docs/"
methods = ["GET", "HEAD"]
auth = "public"

[[routes]]
path = "/docs/"
permissions = ["write"]

[[routes]]
path = "/"
auth = "required"
"#
    );
    gatehouse::Config::from_toml(&toml, Vec::new()).unwrap_or_else(|e| panic!("{e}"))
}

struct Tokens {
    /// permissions ["read"], team "team-1", no role
    alice: String,
    /// permissions ["read", "write", "admin"], role "admin"
    carol: String,
    /// alice's claims, expired an hour ago
    expired: String,
}

fn mint(dir: &Path) -> Tokens {
    let key = gatehouse::auth::signing::SigningKey::load_or_generate(
        &dir.join("signing-key.pem"),
        jsonwebtoken::Algorithm::ES256,
    )
    .expect("signing key");
    let alice = |exp: u64| {
        key.sign(&json!({
            "iss": ISSUER, "aud": "gatehouse", "sub": "alice", "exp": exp,
            "email": "alice@example.com", "permissions": ["read"], "team_id": "team-1",
        }))
    };
    Tokens {
        alice: alice(now() + 600),
        expired: alice(now() - 3600),
        carol: key.sign(&json!({
            "iss": ISSUER, "aud": "gatehouse", "sub": "carol", "exp": now() + 600,
            "email": "carol@example.com", "permissions": ["read", "write", "admin"],
            "role": "admin",
        })),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A denial: status, exactly one WWW-Authenticate, and the JSON error shape.
async fn assert_denied(resp: reqwest::Response, status: StatusCode, code: &str, challenge: &[&str]) {
    assert_eq!(resp.status(), status, "{resp:?}");
    let challenges: Vec<String> =
        resp.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(challenges.len(), 1, "exactly one WWW-Authenticate on a {status}: {challenges:?}");
    assert!(challenges[0].starts_with("Bearer "), "{challenges:?}");
    for part in challenge {
        assert!(challenges[0].contains(part), "WWW-Authenticate should contain {part}: {challenges:?}");
    }
    assert_eq!(resp.headers()["content-type"], "application/json", "{resp:?}");
    let body: Value = resp.json().await.expect("a JSON error body");
    assert_eq!(body["error"], if status == StatusCode::UNAUTHORIZED { "unauthorized" } else { "forbidden" }, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].is_string(), "{body}");
}

/// A request written byte for byte (reqwest would normalise `..` and `%2e` away).
async fn raw_get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {target} HTTP/1.0\r\nHost: app.test\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut resp)).await.expect("nginx answers").unwrap();
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status =
        resp.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an HTTP response: {resp}"));
    (status, resp)
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn nginx_auth_request_in_front_of_gatehouse() {
    let nginx_bin = nginx_binary();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    // The key first: Gatehouse then loads the same file, and the test signs with it.
    let tokens = mint(dir);
    let (app, app_addr) = start_app().await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gatehouse_addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gatehouse = tokio::spawn(gatehouse::run(listener, gatehouse_config(app_addr, dir), async move {
        let _ = stopped.await;
    }));

    let nginx = start_nginx(&nginx_bin, gatehouse_addr, app_addr, dir).await;
    let http = client();

    // (a) A valid token: the app answers, and sees exactly Gatehouse's verified identity.
    let resp =
        http.get(nginx.url("/api/items?page=2")).header("authorization", bearer(&tokens.alice)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["app"], true, "the answer comes from the app: {body}");
    let seen = app.take_one();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri, "/api/items?page=2");
    assert_eq!(seen.one("x-auth-user-id"), "alice");
    assert_eq!(seen.one("x-auth-email"), "alice@example.com");
    assert_eq!(seen.one("x-auth-permissions"), "read");
    assert_eq!(seen.one("x-auth-team-id"), "team-1");
    assert_eq!(seen.one("x-auth-method"), "jwt");
    assert!(seen.values("x-auth-role").is_empty(), "alice has no role, so no X-Auth-Role: {seen:#?}");
    assert!(seen.values("authorization").is_empty(), "the example config does not pass the bearer token on: {seen:#?}");
    assert!(
        seen.values("x-original-uri").is_empty() && seen.values("x-original-method").is_empty(),
        "the verify subrequest's headers stay on the subrequest: {seen:#?}"
    );

    // A role and several permissions come through too.
    let resp = http.get(nginx.url("/admin/users")).header("authorization", bearer(&tokens.carol)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = app.take_one();
    assert_eq!(seen.one("x-auth-user-id"), "carol");
    assert_eq!(seen.one("x-auth-role"), "admin");
    assert_eq!(seen.one("x-auth-permissions"), "read,write,admin");
    assert!(seen.values("x-auth-team-id").is_empty(), "{seen:#?}");

    // (b) No token: 401 in Gatehouse's error shape, with its challenge, and no app call.
    let resp = http.get(nginx.url("/api/items")).send().await.unwrap();
    assert_denied(resp, StatusCode::UNAUTHORIZED, "missing_credentials", &[r#"realm="gatehouse""#]).await;
    app.assert_untouched("no token");

    // A bad or expired token: 401 invalid_token.
    for (what, token) in [("garbage", "not-a-jwt"), ("expired", tokens.expired.as_str())] {
        let resp = http.get(nginx.url("/api/items")).header("authorization", bearer(token)).send().await.unwrap();
        assert_denied(resp, StatusCode::UNAUTHORIZED, "invalid_token", &[r#"error="invalid_token""#]).await;
        app.assert_untouched(what);
    }

    // (c) A valid token without the route's permission: 403, with the missing scope.
    let resp = http.get(nginx.url("/admin/users")).header("authorization", bearer(&tokens.alice)).send().await.unwrap();
    assert_denied(
        resp,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        &[r#"error="insufficient_scope""#, r#"scope="admin""#],
    )
    .await;
    app.assert_untouched("alice on /admin/");

    // (d) Spoofed identity headers on an allowed request: the app sees only verified values.
    // Every copy goes, in any case; headers Gatehouse does not answer (role) are removed;
    // the underscore spelling is dropped by nginx.
    let spoofed = [
        ("X-Auth-User-Id", "admin"),
        ("x-auth-user-id", "root"),
        ("X-AUTH-ROLE", "admin"),
        ("X-Auth-Permissions", "admin"),
        ("X-Auth-Team-Id", "team-0"),
        ("X-Auth-Method", "api_key"),
        ("X-Auth-Email", "admin@example.com"),
        ("X-Auth-Email-Verified", "true"),
        ("X_Auth_User_Id", "admin"),
    ];
    let spoof = |mut req: reqwest::RequestBuilder| {
        for (name, value) in spoofed {
            req = req.header(name, value);
        }
        req
    };
    let resp =
        spoof(http.get(nginx.url("/api/items"))).header("authorization", bearer(&tokens.alice)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = app.take_one();
    assert_eq!(seen.one("x-auth-user-id"), "alice");
    assert_eq!(seen.one("x-auth-email"), "alice@example.com");
    assert_eq!(seen.one("x-auth-permissions"), "read");
    assert_eq!(seen.one("x-auth-team-id"), "team-1");
    assert_eq!(seen.one("x-auth-method"), "jwt");
    assert_eq!(seen.one("x-auth-email-verified"), "false", "the token has no email_verified claim");
    assert!(seen.values("x-auth-role").is_empty(), "{seen:#?}");
    assert!(seen.values("x_auth_user_id").is_empty(), "{seen:#?}");

    // The same with header names in odd case, written byte for byte.
    let alice = bearer(&tokens.alice);
    let (status, resp) = raw_get(
        nginx.addr,
        "/api/items",
        &[("Authorization", &alice), ("X-AUTH-USER-ID", "admin"), ("x-Auth-user-ID", "root"), ("X-Auth-ROLE", "admin")],
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    let seen = app.take_one();
    assert_eq!(seen.one("x-auth-user-id"), "alice");
    assert!(seen.values("x-auth-role").is_empty(), "{seen:#?}");

    // ... on a public route without a token (Gatehouse answers 200 with no identity), and on
    // the location nginx serves without asking Gatehouse: no identity header at all.
    for path in ["/public/page", "/assets/app.js"] {
        let resp = spoof(http.get(nginx.url(path))).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let seen = app.take_one();
        assert!(
            seen.identity_headers().is_empty(),
            "{path}: client-sent identity headers reached the app: {:?}",
            seen.identity_headers()
        );
    }

    // ... and they do not talk anyone into a protected route.
    let resp = spoof(http.get(nginx.url("/admin/users"))).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    app.assert_untouched("spoofed headers, no token");

    // (e) Public routes need no token; a broken token there is ignored, not trusted.
    let resp = http.get(nginx.url("/public/index.html")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(app.take_one().identity_headers().is_empty());
    let resp =
        http.get(nginx.url("/public/index.html")).header("authorization", "Bearer not-a-jwt").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(app.take_one().identity_headers().is_empty());
    // A valid token on a public route still identifies its holder.
    let resp =
        http.get(nginx.url("/public/index.html")).header("authorization", bearer(&tokens.alice)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(app.take_one().one("x-auth-user-id"), "alice");

    // (f) The decision uses the client's method and URI: /docs/ is public to GET only.
    let resp = http.get(nginx.url("/docs/readme")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(app.take_one().method, "GET");
    let resp = http.post(nginx.url("/docs/readme")).body("new text").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "POST /docs/ needs a token");
    app.assert_untouched("anonymous POST");
    let resp = http
        .post(nginx.url("/docs/readme"))
        .header("authorization", bearer(&tokens.alice))
        .body("new text")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "POST /docs/ needs `write`");
    app.assert_untouched("POST without write");
    let resp = http
        .post(nginx.url("/docs/readme?v=2"))
        .header("authorization", bearer(&tokens.carol))
        .body("new text")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = app.take_one();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/docs/readme?v=2");
    assert_eq!(seen.body, b"new text", "the body still reaches the app");
    assert_eq!(seen.one("x-auth-user-id"), "carol");

    // A client cannot choose what Gatehouse judges: its own X-Original-* / X-Forwarded-*
    // headers are replaced (or blanked) on the subrequest.
    let resp = http
        .post(nginx.url("/docs/readme"))
        .header("x-original-method", "GET")
        .header("x-original-uri", "/public/x")
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/public/x")
        .body("new text")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    app.assert_untouched("forged X-Original-*");
    let resp = http
        .get(nginx.url("/admin/users"))
        .header("authorization", bearer(&tokens.alice))
        .header("x-original-uri", "/public/x")
        .header("x-forwarded-uri", "/public/x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    app.assert_untouched("forged URI on /admin/");

    // Path tricks fail closed. nginx resolves `..` for its own location matching but sends
    // the raw URI both to Gatehouse (X-Original-URI) and to the app; Gatehouse refuses dot
    // segments (400), which auth_request turns into a 500.
    for target in ["/public/../admin/users", "/public/%2e%2e/admin/users"] {
        let (status, resp) = raw_get(nginx.addr, target, &[("Authorization", &alice)]).await;
        assert_eq!(status, 500, "{target}: {resp}");
        app.assert_untouched(target);
    }
    // Doubled slashes are the same route to Gatehouse.
    let (status, resp) = raw_get(nginx.addr, "//admin//users", &[("Authorization", &alice)]).await;
    assert_eq!(status, 403, "{resp}");
    app.assert_untouched("//admin//users");

    // The verify location is internal: clients cannot call it to probe or bypass anything.
    let resp = http.get(nginx.url("/_gatehouse_verify")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // (g) Gatehouse gone: nginx fails closed, even for public routes.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), gatehouse).await.expect("Gatehouse drains").unwrap().unwrap();
    for path in ["/api/items", "/public/page"] {
        let resp = http.get(nginx.url(path)).header("authorization", bearer(&tokens.alice)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        app.assert_untouched("Gatehouse down");
    }

    drop(nginx);
}
