//! Gatehouse as the `forward_auth` target of a real Caddy, end to end.
//!
//! client (reqwest) -> Caddy -> GET /verify to Gatehouse -> echo app (tests/common), which
//!                                                          answers with the headers it got.
//!
//! Caddy runs `examples/caddy/Caddyfile` itself, with its addresses swapped for ephemeral
//! ports, so the documented config is the tested one. The checks, each with and without
//! client-sent identity headers: the app never sees an unreplaced placeholder
//! (`{http.reverse_proxy.header.…}`, what Caddy before 2.9 copies for a header `/verify`'s
//! answer lacks) nor an identity nobody verified; public routes pass anonymously; protected
//! ones pass Gatehouse's 401 / 403 through; a valid token reaches the app with its identity,
//! and the fields it does not carry arrive empty or not at all.
//!
//! Caddy is required, not optional: the test fails (never skips) without `/usr/bin/caddy`
//! (Debian: `apt-get install caddy`). `GATEHOUSE_TEST_CADDY` may name another binary. It never
//! uses port 80 or Caddy's admin port, and keeps Caddy's state in a temporary directory, so a
//! system Caddy running beside it changes nothing.
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use common::web_server::{self, WebServer, client};
use common::{Gatehouse, Upstream, now, seen};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DEFAULT_CADDY: &str = "/usr/bin/caddy";
const EXAMPLE: &str = include_str!("../examples/caddy/Caddyfile");
const ISSUER: &str = "http://gatehouse.test";

/// Every identity header Gatehouse is configured with below, and so copied by Caddy.
const IDENTITY: [&str; 8] = [
    "x-auth-user-id",
    "x-auth-email",
    "x-auth-email-verified",
    "x-auth-role",
    "x-auth-permissions",
    "x-auth-team-id",
    "x-auth-method",
    "x-auth-tenant",
];

// ---------------------------------------------------------------------------------------
// Caddy

fn caddy_binary() -> PathBuf {
    web_server::binary("GATEHOUSE_TEST_CADDY", DEFAULT_CADDY, "a real Caddy 2 (Debian/Ubuntu: `apt-get install caddy`)")
}

/// examples/caddy/Caddyfile on local ports: plain HTTP on 127.0.0.1, no admin endpoint, and
/// the example's commented-out `copy_headers` line for the claim header switched on.
fn caddyfile(port: u16, gatehouse: SocketAddr, app: SocketAddr) -> String {
    let swap = |text: String, from: &str, to: &str, times: usize| {
        web_server::swap("examples/caddy/Caddyfile", text, from, to, times)
    };
    let mut conf = EXAMPLE.to_string();
    conf = swap(
        conf,
        "\napp.example.com {\n",
        // No admin endpoint (localhost:2019 may belong to a system Caddy), no certificates,
        // no redirect listener on port 80.
        &format!("\n{{\n\tadmin off\n\tauto_https off\n}}\n\nhttp://127.0.0.1:{port} {{\n\tbind 127.0.0.1\n"),
        1,
    );
    conf = swap(conf, "reverse_proxy 127.0.0.1:8080", &format!("reverse_proxy {gatehouse}"), 2);
    conf = swap(conf, "forward_auth 127.0.0.1:8080 {", &format!("forward_auth {gatehouse} {{"), 1);
    conf = swap(conf, "reverse_proxy 127.0.0.1:3000", &format!("reverse_proxy {app}"), 1);
    conf = swap(conf, "# copy_headers X-Auth-Tenant", "copy_headers X-Auth-Tenant", 1);
    conf
}

async fn start_caddy(bin: &Path, gatehouse: SocketAddr, app: SocketAddr, dir: &Path) -> WebServer {
    let conf = dir.join("Caddyfile");
    let log = dir.join("caddy.log");
    // Caddy keeps its autosaved config, certificates and locks under these: all in `dir`.
    let command = |sub: &str| {
        let mut cmd = Command::new(bin);
        cmd.arg(sub)
            .arg("--config")
            .arg(&conf)
            .arg("--adapter")
            .arg("caddyfile")
            .env("HOME", dir)
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_DATA_HOME", dir.join("data"))
            .env_remove("CADDY_ADMIN")
            .stdin(Stdio::null());
        cmd
    };
    WebServer::start("caddy", log.clone(), |port| {
        std::fs::write(&conf, caddyfile(port, gatehouse, app)).unwrap();
        // Appended to, so a retried start keeps the earlier attempt's words.
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut run = command("run");
        run.stdout(out.try_clone().unwrap()).stderr(out);
        (command("validate"), run)
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Gatehouse, tokens, clients

fn gatehouse_config(app: &Upstream, dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"
[server]
shutdown_grace = "1s"

[upstream]
url = "{app}"

[store]
url = "sqlite://{d}/gatehouse.db"

[tokens]
issuer = "{ISSUER}"
audience = "gatehouse"
algorithm = "ES256"
key_file = '{d}/signing-key.pem'

[headers]
claims = {{ tenant = "X-Auth-Tenant" }}

[[routes]]
path = "/public/"
auth = "public"

[[routes]]
path = "/admin/"
permissions = ["admin"]

[[routes]]
path = "/"
auth = "required"

[log]
access = false
"#,
        app = app.url()
    )
}

struct Tokens {
    /// every field: email, permissions ["read"], team "team-1", tenant "t-1"; no role
    alice: String,
    /// a subject and permissions ["read"], nothing else
    bob: String,
    /// permissions ["read", "write", "admin"], role "admin"; no team, no tenant
    carol: String,
}

fn mint(dir: &Path) -> Tokens {
    let key = gatehouse::auth::signing::SigningKey::load_or_generate(
        &dir.join("signing-key.pem"),
        jsonwebtoken::Algorithm::ES256,
    )
    .expect("signing key");
    let token = |sub: &str, extra: Value| {
        let mut claims = json!({"iss": ISSUER, "aud": "gatehouse", "sub": sub, "exp": now() + 600});
        claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        key.sign(&claims)
    };
    Tokens {
        alice: token(
            "alice",
            json!({"email": "alice@example.com", "permissions": ["read"], "team_id": "team-1", "tenant": "t-1"}),
        ),
        bob: token("bob", json!({"permissions": ["read"]})),
        carol: token(
            "carol",
            json!({"email": "carol@example.com", "permissions": ["read", "write", "admin"], "role": "admin"}),
        ),
    }
}

/// Identity headers a client sends of its own accord, in several spellings; none may reach
/// the app. X-Auth-Email-Verified is not in the example's `copy_headers`.
const SPOOFED: [(&str, &str); 8] = [
    ("X-Auth-User-Id", "admin"),
    ("x-auth-user-id", "root"),
    ("X-AUTH-ROLE", "admin"),
    ("X-Auth-Permissions", "admin"),
    ("X-Auth-Team-Id", "team-0"),
    ("X-Auth-Tenant", "evil"),
    ("X-Auth-Email-Verified", "true"),
    ("X_Auth_User_Id", "admin"),
];

/// What one request through Caddy should come to.
enum Expect {
    /// The app answers; it saw these identity headers (every other one of `IDENTITY` empty
    /// or absent).
    App(&'static str, &'static [(&'static str, &'static str)]),
    /// Gatehouse's denial, passed through: status and error code; the app is not reached.
    Denied(StatusCode, &'static str),
}

/// What is tried, method, path and query, bearer token, other client headers, outcome.
type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, &'a [(&'a str, &'a str)], Expect);

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn caddy_forward_auth_in_front_of_gatehouse() {
    let caddy_bin = caddy_binary();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    // The key first: Gatehouse then loads the same file, and the test signs with it.
    let tokens = mint(dir);
    let app = Upstream::start().await;
    let gatehouse = Gatehouse::start(&gatehouse_config(&app, dir)).await;
    gatehouse.wait_ready().await;
    let caddy = start_caddy(&caddy_bin, gatehouse.addr, app.addr, dir).await;
    let http = client();

    use Expect::{App, Denied};
    let cases: Vec<Case> = vec![
        ("public, anonymous", "GET", "/public/page", None, &[], App("GET", &[])),
        ("public, broken token", "GET", "/public/page", Some("not-a-jwt"), &[], App("GET", &[])),
        (
            "public, valid token",
            "GET",
            "/public/page",
            Some(&tokens.alice),
            &[],
            App(
                "GET",
                &[
                    ("x-auth-user-id", "alice"),
                    ("x-auth-email", "alice@example.com"),
                    ("x-auth-email-verified", "false"),
                    ("x-auth-permissions", "read"),
                    ("x-auth-team-id", "team-1"),
                    ("x-auth-method", "jwt"),
                    ("x-auth-tenant", "t-1"),
                ],
            ),
        ),
        (
            "protected, no token",
            "GET",
            "/api/items",
            None,
            &[],
            Denied(StatusCode::UNAUTHORIZED, "missing_credentials"),
        ),
        (
            "protected, broken token",
            "GET",
            "/api/items",
            Some("not-a-jwt"),
            &[],
            Denied(StatusCode::UNAUTHORIZED, "invalid_token"),
        ),
        (
            "protected, a token with only a subject and permissions",
            "GET",
            "/api/items?page=2",
            Some(&tokens.bob),
            &[],
            App("GET", &[("x-auth-user-id", "bob"), ("x-auth-permissions", "read"), ("x-auth-method", "jwt")]),
        ),
        (
            "admin route, admin token without team or tenant",
            "POST",
            "/admin/users",
            Some(&tokens.carol),
            &[],
            App(
                "POST",
                &[
                    ("x-auth-user-id", "carol"),
                    ("x-auth-email", "carol@example.com"),
                    ("x-auth-email-verified", "false"),
                    ("x-auth-role", "admin"),
                    ("x-auth-permissions", "read,write,admin"),
                    ("x-auth-method", "jwt"),
                ],
            ),
        ),
        (
            "admin route, token without the permission",
            "GET",
            "/admin/users",
            Some(&tokens.alice),
            &[],
            Denied(StatusCode::FORBIDDEN, "insufficient_scope"),
        ),
        // A client cannot choose what Gatehouse judges: Caddy overwrites X-Forwarded-Method
        // and -Uri, and the example removes nginx's X-Original-* names.
        (
            "protected, forged original URI",
            "GET",
            "/api/items",
            None,
            &[("X-Original-URI", "/public/x"), ("X-Original-Method", "GET")],
            Denied(StatusCode::UNAUTHORIZED, "missing_credentials"),
        ),
        (
            "protected, forged forwarded URI",
            "GET",
            "/admin/users",
            Some(&tokens.alice),
            &[("X-Forwarded-Uri", "/public/x"), ("X-Forwarded-Host", "elsewhere.test")],
            Denied(StatusCode::FORBIDDEN, "insufficient_scope"),
        ),
    ];

    for (what, method, path, token, extra, expect) in &cases {
        for spoof in [false, true] {
            let what = format!("{what}{}", if spoof { ", with client-sent identity headers" } else { "" });
            let mut req = http.request(method.parse().unwrap(), caddy.url(path)).body("the body");
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            for (name, value) in extra.iter().chain(if spoof { &SPOOFED[..] } else { &[] }) {
                req = req.header(*name, *value);
            }
            let hits = app.hits.load(Ordering::SeqCst);
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let headers = resp.headers().clone();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            match expect {
                App(seen_method, identity) => {
                    assert_eq!(status, StatusCode::OK, "{what}: {body}");
                    assert_eq!(app.hits.load(Ordering::SeqCst), hits + 1, "{what}: the app answers");
                    assert_eq!(body["method"], *seen_method, "{what}");
                    assert_eq!(body["path"], *path, "{what}");
                    assert_sees(&what, &body, identity);
                }
                Denied(denied, code) => {
                    assert_eq!(status, *denied, "{what}: {body}");
                    assert_eq!(app.hits.load(Ordering::SeqCst), hits, "{what}: the app must not be reached");
                    assert_eq!(body["code"], *code, "{what}: Gatehouse's JSON error comes through: {body}");
                    assert_eq!(headers["content-type"], "application/json", "{what}");
                    let challenge = headers.get("www-authenticate").map(|v| v.to_str().unwrap()).unwrap_or("");
                    assert!(challenge.starts_with("Bearer "), "{what}: {headers:?}");
                }
            }
        }
    }

    // Gatehouse's own endpoints go to it directly.
    let hits = app.hits.load(Ordering::SeqCst);
    let resp = http.get(caddy.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let jwks: Value = resp.json().await.unwrap();
    assert!(jwks["keys"].as_array().is_some_and(|k| !k.is_empty()), "{jwks}");
    assert_eq!(app.hits.load(Ordering::SeqCst), hits);

    drop(caddy);
    gatehouse.stop().await.unwrap();
}

/// The app's echo shows exactly `identity` (one value each), every other identity header
/// empty or absent, no client-sent identity and no placeholder text anywhere.
fn assert_sees(what: &str, echo: &Value, identity: &[(&str, &str)]) {
    let headers = echo["headers"].as_object().unwrap_or_else(|| panic!("{what}: not the app's echo: {echo}"));
    for (name, values) in headers {
        for value in values.as_array().unwrap() {
            let value = value.as_str().unwrap();
            assert!(
                !value.contains("{http.") && !value.contains("{rp."),
                "{what}: placeholder text in {name}: {value}"
            );
        }
    }
    for name in IDENTITY {
        let got = seen(echo, name);
        match identity.iter().find(|(n, _)| *n == name) {
            Some((_, want)) => assert_eq!(got, [*want], "{what}: {name}"),
            None => assert!(got.is_empty() || got == [""], "{what}: the app must get no {name}, got {got:?}"),
        }
    }
    for name in ["x_auth_user_id", "authorization", "x-original-uri"] {
        assert!(seen(echo, name).is_empty(), "{what}: the app must get no {name}: {echo}");
    }
}
