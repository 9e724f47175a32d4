//! `/verify`, the forward-auth endpoint, in the Traefik / Caddy dialect (`X-Forwarded-*`)
//! and the nginx dialect (`X-Original-*`), against the same route table as the proxy.
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

const ISS: &str = "https://idp.test";

async fn setup() -> (Upstream, JwksServer, TestKey, Gatehouse) {
    let key = TestKey::generate(Algorithm::RS256);
    let upstream = Upstream::start().await;
    let j = JwksServer::start(jwks(&[&key])).await;
    let extra = format!(
        "{}\n[[routes]]\nhost = \"admin.example.com\"\npath = \"/\"\npermissions = [\"admin\"]\n[[routes]]\npath = \"/write/\"\nmethods = [\"POST\", \"DELETE\"]\npermissions = [\"write\"]\n[[routes]]\npath = \"/write/\"\nmethods = [\"GET\"]\nauth = \"required\"\n",
        issuer_block(ISS, &j.url(), &["RS256"])
    );
    // Host- and method-specific rules must come first: put them ahead of the usual routes.
    let text = config(&upstream, "")
        .replace("[[routes]]\npath = \"/public/\"", &format!("{extra}[[routes]]\npath = \"/public/\""));
    let gh = Gatehouse::start(&text).await;
    gh.wait_ready().await;
    (upstream, j, key, gh)
}

fn tok(key: &TestKey, perms: &[&str]) -> String {
    let mut c = claims(ISS, "alice");
    c["permissions"] = json!(perms);
    c["email"] = json!("alice@example.com");
    c["tenant"] = json!("t-1");
    key.sign(&c)
}

async fn verify(gh: &Gatehouse, headers: &[(&str, &str)], token: Option<&str>) -> reqwest::Response {
    let mut req = client().get(gh.url("/verify"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn traefik_and_caddy_dialect() {
    let (upstream, _j, key, gh) = setup().await;
    let fwd = |method: &'static str, uri: &'static str, host: &'static str| {
        vec![
            ("X-Forwarded-Method", method),
            ("X-Forwarded-Uri", uri),
            ("X-Forwarded-Host", host),
            ("X-Forwarded-Proto", "https"),
        ]
    };
    // Allowed: 200 with identity headers.
    let r = verify(&gh, &fwd("GET", "/app/page?q=1", "app.example.com"), Some(&tok(&key, &["read"]))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-auth-user-id"], "alice");
    assert_eq!(r.headers()["x-auth-email"], "alice@example.com");
    assert_eq!(r.headers()["x-auth-permissions"], "read");
    assert_eq!(r.headers()["x-auth-method"], "jwt");
    assert_eq!(r.headers()["x-auth-tenant"], "t-1");

    // No credential on a protected path: 401 in the error shape.
    let r = verify(&gh, &fwd("GET", "/app", "app.example.com"), None).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "missing_credentials");

    // Public path: 200 without a credential, and no identity (every header empty).
    let r = verify(&gh, &fwd("GET", "/public/x", "app.example.com"), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-auth-user-id"], "");

    // Host rule: the same path needs `admin` on admin.example.com.
    let r = verify(&gh, &fwd("GET", "/app", "admin.example.com:443"), Some(&tok(&key, &["read"]))).await;
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "insufficient_scope");
    let r = verify(&gh, &fwd("GET", "/app", "admin.example.com"), Some(&tok(&key, &["admin"]))).await;
    assert_eq!(r.status(), 200);

    // Method rule: POST /write/ needs `write`, GET does not.
    let r = verify(&gh, &fwd("POST", "/write/doc", "app.example.com"), Some(&tok(&key, &["read"]))).await;
    assert_eq!(r.status(), 403);
    let r = verify(&gh, &fwd("GET", "/write/doc", "app.example.com"), Some(&tok(&key, &["read"]))).await;
    assert_eq!(r.status(), 200);
    // A method no rule for /write/ allows is refused (405), never passed to a looser rule.
    let r = verify(&gh, &fwd("PATCH", "/write/doc", "app.example.com"), Some(&tok(&key, &["write"]))).await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST, DELETE, GET, HEAD");

    // Bad token: 401 invalid_token.
    let r = verify(&gh, &fwd("GET", "/app", "app.example.com"), Some("abc.def.ghi")).await;
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "invalid_token");

    assert_eq!(upstream.hits.load(std::sync::atomic::Ordering::SeqCst), 0, "forward-auth never proxies");
}

#[tokio::test]
async fn nginx_dialect() {
    let (_u, _j, key, gh) = setup().await;
    let orig = |method: &'static str, uri: &'static str| [("X-Original-Method", method), ("X-Original-URI", uri)];
    let r = verify(&gh, &orig("POST", "/write/x?y=1"), Some(&tok(&key, &["write"]))).await;
    assert_eq!(r.status(), 200);
    let r = verify(&gh, &orig("DELETE", "/write/x"), Some(&tok(&key, &[]))).await;
    assert_eq!(r.status(), 403);
    let r = verify(&gh, &orig("GET", "/admin/"), Some(&tok(&key, &["read"]))).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-auth-error-code"], "insufficient_scope", "nginx only passes the status on");
    let r = verify(&gh, &orig("GET", "/%61dmin/"), Some(&tok(&key, &["read"]))).await;
    assert_eq!(r.status(), 403, "encoded paths are matched decoded");
    let r = verify(&gh, &orig("GET", "/public/../admin/"), None).await;
    assert_eq!(r.status(), 400, "dot segments are refused");
    let r = verify(&gh, &orig("GET", "http://app.example.com/public/x"), None).await;
    assert_eq!(r.status(), 200, "absolute-form URIs use their path");
    let r = verify(&gh, &orig("GET", "/app"), None).await;
    assert_eq!(r.headers()["x-auth-error-code"], "missing_credentials");
}

#[tokio::test]
async fn bad_forwarding_headers_are_400() {
    let (_u, _j, key, gh) = setup().await;
    let t = tok(&key, &["read"]);
    let r = verify(&gh, &[("X-Forwarded-Method", "G E T"), ("X-Forwarded-Uri", "/app")], Some(&t)).await;
    assert_eq!(r.status(), 400);
    let r = client()
        .get(gh.url("/verify"))
        .header("X-Forwarded-Uri", "/public/a")
        .header("X-Forwarded-Uri", "/app")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a repeated forwarding header is ambiguous");
    let r = verify(&gh, &[("X-Forwarded-Method", "GET"), ("X-Forwarded-Uri", "/bad%zz")], Some(&t)).await;
    assert_eq!(r.status(), 400);
    // Nothing is assumed: a missing method or URI is refused, not read as `GET /`.
    for headers in [
        &[("X-Forwarded-Uri", "/public/x")][..],
        &[("X-Original-URI", "/public/x")][..],
        &[("X-Forwarded-Method", "GET")][..],
        &[][..],
    ] {
        let r = verify(&gh, headers, None).await;
        assert_eq!(r.status(), 400, "{headers:?}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], "invalid_header");
    }
}

#[tokio::test]
async fn a_client_cannot_pick_the_route_with_the_other_header_family() {
    let (_u, _j, _key, gh) = setup().await;
    // Traefik/Caddy overwrite X-Forwarded-* but pass a client's X-Original-* through.
    let smuggled = [
        ("X-Forwarded-Method", "DELETE"),
        ("X-Forwarded-Uri", "/admin/x"),
        ("X-Original-Method", "GET"),
        ("X-Original-URI", "/public/x"),
    ];
    let r = verify(&gh, &smuggled, None).await;
    assert_eq!(r.status(), 400, "disagreeing families are refused");
    // Agreeing families are fine.
    let same = [
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Uri", "/public/x"),
        ("X-Original-Method", "GET"),
        ("X-Original-URI", "/public/x"),
    ];
    assert_eq!(verify(&gh, &same, None).await.status(), 200);

    // Pinned to one family, the other is ignored entirely.
    let upstream = Upstream::start().await;
    for (mode, expected) in [("forwarded", 401), ("original", 200)] {
        let text = format!("{}\n[forward_auth]\nheaders = \"{mode}\"\n", config(&upstream, ""));
        let pinned = Gatehouse::start(&text).await;
        assert_eq!(verify(&pinned, &smuggled, None).await.status(), expected, "{mode}");
    }
}

/// Web servers copy a fixed list of names from `/verify`'s 200 onto the request; Caddy before
/// 2.9 copies a name the answer lacks as its literal placeholder text. So every configured
/// identity header is answered, empty when unknown, while the proxy path still omits them.
#[tokio::test]
async fn verify_answers_every_identity_header_empty_when_unknown() {
    let key = TestKey::generate(Algorithm::RS256);
    let upstream = Upstream::start().await;
    let j = JwksServer::start(jwks(&[&key])).await;
    // `name` is off by default; `config` maps the claims `tenant` and `org.id`.
    let extra = format!("name = \"X-Auth-Name\"\n{}", issuer_block(ISS, &j.url(), &["RS256"]));
    let gh = Gatehouse::start(&config(&upstream, &extra)).await;
    gh.wait_ready().await;

    let full = {
        let mut c = claims(ISS, "alice");
        c["email"] = json!("alice@example.com");
        c["name"] = json!("Alice");
        c["role"] = json!("ops");
        c["team_id"] = json!("team-1");
        c["permissions"] = json!(["read", "write"]);
        c["tenant"] = json!("t-1");
        c["org"] = json!({"id": "o-1"});
        key.sign(&c)
    };
    let bare = key.sign(&claims(ISS, "bob"));
    let names = [
        "x-auth-user-id",
        "x-auth-email",
        "x-auth-name",
        "x-auth-role",
        "x-auth-permissions",
        "x-auth-team-id",
        "x-auth-method",
        "x-auth-tenant",
        "x-auth-org",
    ];
    let anonymous = [""; 9];
    let cases: [(&str, &str, Option<&str>, [&str; 9]); 4] = [
        ("anonymous on a public route", "/public/x", None, anonymous),
        ("a broken token on a public route", "/public/x", Some("abc.def.ghi"), anonymous),
        (
            "a JWT carrying every field",
            "/app",
            Some(&full),
            ["alice", "alice@example.com", "Alice", "ops", "read,write", "team-1", "jwt", "t-1", "o-1"],
        ),
        ("a JWT with only a subject", "/app", Some(&bare), ["bob", "", "", "", "", "", "jwt", "", ""]),
    ];
    for (what, path, token, expected) in cases {
        let r = verify(&gh, &[("X-Forwarded-Method", "GET"), ("X-Forwarded-Uri", path)], token).await;
        assert_eq!(r.status(), 200, "{what}");
        for (name, value) in names.iter().zip(expected) {
            let got: Vec<_> = r.headers().get_all(*name).iter().collect();
            assert_eq!(got, [value], "{what}: exactly one {name}");
        }
        if token.is_none() {
            // Whatever else is configured (by default or later) is blank too.
            for (name, value) in r.headers() {
                if name.as_str().starts_with("x-auth-") {
                    assert_eq!(value, "", "{what}: {name}");
                }
            }
        }
    }

    // The proxy path is unchanged: a header the principal has no value for is not sent.
    let (status, _, echo) = get(&gh, "/app", Some(&bare)).await;
    assert_eq!(status, 200);
    assert_eq!(seen(&echo, "x-auth-user-id"), ["bob"]);
    for name in ["x-auth-email", "x-auth-name", "x-auth-role", "x-auth-team-id", "x-auth-tenant", "x-auth-org"] {
        assert!(echo["headers"].get(name).is_none(), "the upstream gets no {name}: {echo}");
    }
    let (status, _, echo) = get(&gh, "/public/x", None).await;
    assert_eq!(status, 200);
    assert!(
        echo["headers"].as_object().unwrap().keys().all(|k| !k.starts_with("x-auth-")),
        "no identity headers for anonymous: {echo}"
    );
}
