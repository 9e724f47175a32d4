//! Authorization bypasses, class by class, through the real proxy and through `/verify`:
//! every spelling of a path, method or host an upstream could read differently is either
//! refused or decided on the one canonical form that is then forwarded.
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

mod common;

use common::raw::{self, RawResponse};
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

const ISS: &str = "https://idp.test";

struct Env {
    upstream: Upstream,
    _jwks: JwksServer,
    key: TestKey,
    gh: Gatehouse,
}

/// Routes: `/public/` open; `/admin/` GET and POST need `admin`; every path on
/// admin.example.com needs `admin`; anything else any verified caller.
async fn env(extra: &str) -> Env {
    let key = TestKey::generate(Algorithm::ES256);
    let upstream = Upstream::start().await;
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let rules = "[[routes]]\npath = \"/public/\"\nauth = \"public\"\n\
                 [[routes]]\npath = \"/admin/\"\nmethods = [\"GET\", \"POST\"]\npermissions = [\"admin\"]\n\
                 [[routes]]\nhost = \"admin.example.com\"\npath = \"/\"\npermissions = [\"admin\"]\n\
                 [[routes]]\npath = \"/\"\nauth = \"required\"\n[log]";
    let text = config(&upstream, &format!("{extra}\n{}", issuer_block(ISS, &jwks_server.url(), &["ES256"])));
    // Only these rules: the harness's usual table ends at `[log]`.
    let start = text.find("[[routes]]").unwrap();
    let end = text.find("[log]").unwrap();
    let text = format!("{}{rules}{}", &text[..start], &text[end + "[log]".len()..]);
    let gh = Gatehouse::start(&text).await;
    gh.wait_ready().await;
    Env { upstream, _jwks: jwks_server, key, gh }
}

fn token(e: &Env, perms: &[&str]) -> String {
    let mut c = claims(ISS, "alice");
    c["permissions"] = json!(perms);
    e.key.sign(&c)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// 400: the request cannot be matched safely.
    Refused,
    Unauthorized,
    Forbidden,
    NotAllowed,
    /// Reaches the upstream, which sees exactly this path (and query).
    Passes(&'static str),
}

impl Want {
    fn status(self) -> u16 {
        match self {
            Want::Refused => 400,
            Want::Unauthorized => 401,
            Want::Forbidden => 403,
            Want::NotAllowed => 405,
            Want::Passes(_) => 200,
        }
    }
}

/// Who asks: nobody, a caller with `read`, or one with `admin`.
#[derive(Debug, Clone, Copy)]
enum Who {
    Anonymous,
    Reader,
}

use Want::*;
use Who::*;

const HOST: &str = "app.example.com";

/// (method, raw request target, Host, caller, outcome).
const CASES: &[(&str, &str, &str, Who, Want)] = &[
    // Dot segments in every encoding, matrix parameters, backslashes.
    ("GET", "/public/..;/admin/users", HOST, Anonymous, Refused),
    ("GET", "/public/..;jsessionid=x/admin/users", HOST, Anonymous, Refused),
    ("GET", "/public;x/../admin/users", HOST, Anonymous, Refused),
    ("GET", "/public/%3b/admin", HOST, Anonymous, Refused),
    ("GET", "/public/../admin/users", HOST, Anonymous, Refused),
    ("GET", "/public/./x", HOST, Anonymous, Refused),
    ("GET", "/public/%2e%2e/admin/users", HOST, Anonymous, Refused),
    ("GET", "/public/%2E%2E/admin/users", HOST, Anonymous, Refused),
    ("GET", "/public/.%2e/admin/users", HOST, Anonymous, Refused),
    ("GET", "/public/%2e./admin/users", HOST, Anonymous, Refused),
    ("GET", "/public/..%20/admin/users", HOST, Anonymous, Refused),
    ("GET", "/public/%c0%ae%c0%ae/admin/users", HOST, Anonymous, Refused),
    ("GET", "/public/%e0%80%ae%e0%80%ae/admin/users", HOST, Anonymous, Refused),
    ("GET", "/public/%252e%252e/admin/users", HOST, Anonymous, Refused),
    ("GET", "/public/%25%32%65%25%32%65/admin/users", HOST, Anonymous, Refused),
    ("GET", "/public/%EF%BC%8E%EF%BC%8E/admin/users", HOST, Anonymous, Refused),
    ("GET", "/public%EF%BC%8F..%EF%BC%8Fadmin/users", HOST, Anonymous, Refused),
    ("GET", "/public/..%5cadmin/users", HOST, Anonymous, Refused),
    ("GET", "/public/..%5Cadmin/users", HOST, Anonymous, Refused),
    ("GET", "/public/..\\admin/users", HOST, Anonymous, Refused),
    ("GET", "/public\\..\\admin/users", HOST, Anonymous, Refused),
    ("GET", "//public//..//admin/users", HOST, Anonymous, Refused),
    // Encoded slashes (refused by default: WSGI and old Go muxes decode them).
    ("GET", "/admin%2Fusers", HOST, Reader, Refused),
    ("GET", "/admin%2fusers", HOST, Reader, Refused),
    ("GET", "/public%2F..%2Fadmin/users", HOST, Anonymous, Refused),
    ("GET", "/public/..%2Fadmin/users", HOST, Anonymous, Refused),
    // Control characters and NUL.
    ("GET", "/public/%00/x", HOST, Anonymous, Refused),
    ("GET", "/public/x%00.json", HOST, Anonymous, Refused),
    ("GET", "/public/x%0d%0aX-Auth-User-Id:%20admin", HOST, Anonymous, Refused),
    ("GET", "/public/%ff", HOST, Anonymous, Refused),
    ("GET", "/public/%zz", HOST, Anonymous, Refused),
    // Case and Windows trailing dots: a protected prefix covers every spelling ...
    ("GET", "/ADMIN/users", HOST, Reader, Forbidden),
    ("GET", "/Admin/users", HOST, Reader, Forbidden),
    ("GET", "/aDmIn", HOST, Reader, Forbidden),
    ("GET", "/admin./users", HOST, Reader, Forbidden),
    ("GET", "/admin%20/users", HOST, Reader, Forbidden),
    ("GET", "/%61dmin/users", HOST, Reader, Forbidden),
    ("GET", "/%41DMIN/users", HOST, Reader, Forbidden),
    ("GET", "/adm%C4%B1n/users", HOST, Reader, Forbidden),
    ("GET", "/adm%C4%B0n/users", HOST, Reader, Forbidden),
    ("GET", "/%EF%BD%81dmin/users", HOST, Reader, Forbidden),
    ("GET", "/%EF%BC%A1DMIN", HOST, Reader, Forbidden),
    // Format suffixes: Rails and Spring serve `/admin.json` from the `/admin` handler.
    ("GET", "/admin.json", HOST, Reader, Forbidden),
    ("GET", "/ADMIN.xml/users", HOST, Reader, Forbidden),
    ("GET", "/public.json", HOST, Anonymous, Unauthorized),
    ("GET", "/ADMIN/users", HOST, Anonymous, Unauthorized),
    // ... while a public one opens only its own spelling.
    ("GET", "/PUBLIC/x", HOST, Anonymous, Unauthorized),
    ("GET", "/public./x", HOST, Anonymous, Unauthorized),
    // Duplicate slashes collapse, and the collapsed path is what is forwarded.
    ("GET", "//admin/users", HOST, Reader, Forbidden),
    ("GET", "/admin//users", HOST, Reader, Forbidden),
    ("GET", "//public//a///b", HOST, Anonymous, Passes("/public/a/b")),
    ("GET", "/public/%61%62c", HOST, Anonymous, Passes("/public/abc")),
    ("GET", "/public/caf%c3%a9?q=%2e%2e/x", HOST, Anonymous, Passes("/public/caf%C3%A9?q=%2e%2e/x")),
    ("GET", "/public/a%20b", HOST, Anonymous, Passes("/public/a%20b")),
    ("GET", "/public/100%25", HOST, Anonymous, Passes("/public/100%25")),
    ("GET", "/public/.well-known/x", HOST, Anonymous, Passes("/public/.well-known/x")),
    // Methods: HEAD is GET; a method no rule for the path allows is refused, not passed on.
    ("HEAD", "/admin/users", HOST, Reader, Forbidden),
    ("HEAD", "/admin/users", HOST, Anonymous, Unauthorized),
    ("PATCH", "/admin/users", HOST, Reader, NotAllowed),
    ("PUT", "/admin/users", HOST, Reader, NotAllowed),
    ("DELETE", "/ADMIN/users", HOST, Reader, NotAllowed),
    ("OPTIONS", "/admin/users", HOST, Anonymous, NotAllowed),
    ("get", "/admin/users", HOST, Reader, Forbidden),
    ("Post", "/admin/users", HOST, Reader, Forbidden),
    ("GET", "/other", HOST, Reader, Passes("/other")),
    // Hosts: case, trailing dot and port never miss a host rule.
    ("GET", "/x", "admin.example.com", Reader, Forbidden),
    ("GET", "/x", "admin.example.com.", Reader, Forbidden),
    ("GET", "/x", "ADMIN.Example.COM", Reader, Forbidden),
    ("GET", "/x", "admin.example.com.:8443", Reader, Forbidden),
    ("GET", "/x", "admin.example.com:80", Reader, Forbidden),
    ("GET", "/x", "admin.example.com..", Reader, Refused),
    ("GET", "/x", "user@admin.example.com", Reader, Refused),
    ("GET", "/x", "admin.example.com:x", Reader, Refused),
];

fn bearer(e: &Env, who: Who) -> Option<String> {
    match who {
        Anonymous => None,
        Reader => Some(token(e, &["read"])),
    }
}

fn check(case: &(&str, &str, &str, Who, Want), via: &str, r: &RawResponse) {
    let (method, target, host, who, want) = case;
    let what = format!("{via}: {method} {target} Host: {host} as {who:?}");
    assert_eq!(r.status, want.status(), "{what}: {}", String::from_utf8_lossy(&r.body));
    if want.status() != 200 && *method != "HEAD" {
        let body = r.json();
        assert!(body["code"].is_string(), "{what}: errors come in the JSON shape, got {body}");
    }
}

#[tokio::test]
async fn every_spelling_through_the_proxy() {
    let e = env("").await;
    for case in CASES {
        let (method, target, host, who, want) = *case;
        let auth = bearer(&e, who).map(|t| format!("\r\nAuthorization: Bearer {t}")).unwrap_or_default();
        let before = e.upstream.hits.load(std::sync::atomic::Ordering::SeqCst);
        let r = raw::send(e.gh.addr, &format!("{method} {target} HTTP/1.1\r\nHost: {host}{auth}")).await;
        check(case, "proxy", &r);
        let hits = e.upstream.hits.load(std::sync::atomic::Ordering::SeqCst) - before;
        match want {
            Passes(path) => {
                assert_eq!(hits, 1, "{method} {target}");
                assert_eq!(r.json()["path"], path, "{method} {target}: the upstream sees the canonical path");
            }
            _ => assert_eq!(hits, 0, "{method} {target}: refused requests never reach the upstream"),
        }
    }
}

#[tokio::test]
async fn every_spelling_through_forward_auth() {
    let e = env("").await;
    for case in CASES {
        let (method, target, host, who, _) = *case;
        let auth = bearer(&e, who).map(|t| format!("\r\nAuthorization: Bearer {t}")).unwrap_or_default();
        let head = format!(
            "GET /verify HTTP/1.1\r\nHost: gatehouse\r\nX-Forwarded-Method: {method}\r\n\
             X-Forwarded-Uri: {target}\r\nX-Forwarded-Host: {host}{auth}"
        );
        check(case, "verify (traefik)", &raw::send(e.gh.addr, &head).await);
        if host == HOST {
            let head = format!(
                "GET /verify HTTP/1.1\r\nHost: {host}\r\nX-Original-Method: {method}\r\nX-Original-URI: {target}{auth}"
            );
            check(case, "verify (nginx)", &raw::send(e.gh.addr, &head).await);
        }
    }
    assert_eq!(e.upstream.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn host_and_target_must_agree() {
    let e = env("").await;
    let t = token(&e, &["read"]);
    let cases = [
        // Absolute-form target naming another host than Host.
        format!("GET http://admin.example.com/x HTTP/1.1\r\nHost: app.example.com\r\nAuthorization: Bearer {t}"),
        format!("GET http://app.example.com/x HTTP/1.1\r\nHost: admin.example.com\r\nAuthorization: Bearer {t}"),
        // Two Host headers.
        format!("GET /x HTTP/1.1\r\nHost: app.example.com\r\nHost: admin.example.com\r\nAuthorization: Bearer {t}"),
    ];
    for head in &cases {
        let r = raw::send(e.gh.addr, head).await;
        assert_eq!(r.status, 400, "{head}");
    }
    // HTTP/1.0 without any host, while host rules exist: refused, never matched as "any host".
    let r = raw::send(e.gh.addr, &format!("GET /x HTTP/1.0\r\nAuthorization: Bearer {t}")).await;
    assert_eq!(r.status, 400);
    // Agreeing absolute-form is decided on that host.
    let r = raw::send(
        e.gh.addr,
        &format!("GET http://admin.example.com/x HTTP/1.1\r\nHost: admin.example.com\r\nAuthorization: Bearer {t}"),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(e.upstream.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn http2_authority_is_the_host() {
    let e = env("").await;
    let t = token(&e, &["read"]);
    let h2 = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();
    // reqwest sends :authority from the URL; a Host header that disagrees is refused.
    let r = h2.get(e.gh.url("/x")).bearer_auth(&t).header("host", "admin.example.com").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = h2.get(e.gh.url("/x")).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn escaped_slash_policies() {
    for (policy, want) in [("unescape", Some("/public/a/b")), ("keep", Some("/public/a%2Fb")), ("reject", None)] {
        let e = env(&format!("[routing]\nescaped_slashes = \"{policy}\"\n")).await;
        let r = raw::send(e.gh.addr, "GET /public/a%2fb HTTP/1.1\r\nHost: x").await;
        match want {
            Some(path) => {
                assert_eq!(r.status, 200, "{policy}");
                assert_eq!(r.json()["path"], path, "{policy}");
            }
            None => assert_eq!(r.status, 400, "{policy}"),
        }
        // Unescaped, a slash is a separator like any other: no way around /admin/.
        let t = token(&e, &["read"]);
        let r =
            raw::send(e.gh.addr, &format!("GET /admin%2Fusers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}")).await;
        let expect = if policy == "keep" {
            200
        } else if policy == "unescape" {
            403
        } else {
            400
        };
        assert_eq!(r.status, expect, "{policy}");
    }
}

#[tokio::test]
async fn method_fall_through_is_opt_in() {
    let e = env("[routing]\nmethod_mismatch = \"next\"\n").await;
    let t = token(&e, &["read"]);
    let r = raw::send(e.gh.addr, &format!("PATCH /admin/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}")).await;
    assert_eq!(r.status, 200, "with `next`, PATCH falls to the `/` rule");
    let r = raw::send(e.gh.addr, &format!("HEAD /admin/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}")).await;
    assert_eq!(r.status, 403, "HEAD stays under the GET rule either way");
}

#[tokio::test]
async fn method_overrides_never_reach_the_upstream() {
    let e = env("").await;
    for name in ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X_HTTP_Method_Override"] {
        let r =
            raw::send(e.gh.addr, &format!("POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n{name}: DELETE"))
                .await;
        assert_eq!(r.status, 200);
        let headers = r.json()["headers"].as_object().unwrap().clone();
        assert!(
            !headers.keys().any(|k| k.replace('_', "-").eq_ignore_ascii_case("x-http-method-override")
                || k.replace('_', "-").eq_ignore_ascii_case("x-http-method")
                || k.replace('_', "-").eq_ignore_ascii_case("x-method-override")),
            "{name}: {headers:?}"
        );
    }
}
