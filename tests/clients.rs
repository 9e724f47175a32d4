//! OAuth2 client credentials end to end, every test on SQLite and on Postgres: clients made by
//! the CLI and the admin API, the token endpoint and its RFC 6749 errors, tokens on the proxy,
//! introspection (RFC 7662), revocation (RFC 7009) and the token endpoint's rate limit.
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

#[macro_use]
mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use jsonwebtoken::Algorithm;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

on_both!(
    cli_clients_get_tokens_the_proxy_accepts,
    scopes_narrow_to_a_subset,
    token_errors_follow_rfc6749,
    token_endpoint_has_its_own_rate_limit,
    introspection_reports_live_tokens_only,
    revocation_follows_rfc7009,
    admins_manage_clients_over_the_api,
);

/// The external issuer every test trusts besides Gatehouse itself.
const EXT: &str = "https://idp.test";

struct Env {
    upstream: Upstream,
    store: TestStore,
    gh: Gatehouse,
    /// What went into `accounts_config`, so the CLI sees the same config.
    extra: String,
    idp: TestKey,
    _jwks: JwksServer,
}

async fn env(backend: Backend, token_rate: u32) -> Env {
    let upstream = Upstream::start().await;
    let store = backend.fresh().await;
    let idp = TestKey::generate(Algorithm::ES256);
    let jwks_server = JwksServer::start(jwks(&[&idp])).await;
    let extra = format!(
        "default_permissions = [\"read\"]\n[rate_limit]\nlogin_per_minute = {token_rate}\n\
         [clients]\ntoken_ttl = \"10m\"\n{}",
        issuer_block(EXT, &jwks_server.url(), &["ES256"])
    );
    let gh = Gatehouse::start(&accounts_config(&upstream, &store, &extra)).await;
    gh.wait_ready().await;
    Env { upstream, store, gh, extra, idp, _jwks: jwks_server }
}

/// Runs the built binary against the test's store.
fn cli(e: &Env, args: &[&str], stdin: &str) -> std::process::Output {
    run_cli(&accounts_config(&e.upstream, &e.store, &e.extra), e.store.dir.path(), args, stdin)
}

/// `gatehouse client create`; returns (client_id, client_secret).
fn create_client(e: &Env, name: &str, scopes: &str) -> (String, String) {
    let out = cli(e, &["client", "create", "--name", name, "--scopes", scopes], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let id = lines[0].strip_prefix("client_id: ").expect("client_id line").to_string();
    let secret = lines[1].strip_prefix("client_secret: ").expect("client_secret line").to_string();
    (id, secret)
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret))))
}

/// POSTs a raw body; returns status, headers, the raw body and its JSON (Null if none).
async fn post_raw(
    gh: &Gatehouse,
    path: &str,
    content_type: Option<&str>,
    authorization: Option<&str>,
    body: String,
) -> (u16, reqwest::header::HeaderMap, String, Value) {
    let mut req = client().post(gh.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, headers, text, json)
}

/// POSTs a form to `path`, optionally with an `Authorization` header.
async fn form(
    gh: &Gatehouse,
    path: &str,
    authorization: Option<&str>,
    params: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let body: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
    let (status, headers, _, json) =
        post_raw(gh, path, Some("application/x-www-form-urlencoded"), authorization, body.join("&")).await;
    (status, headers, json)
}

/// A client-credentials token by HTTP Basic.
async fn token(gh: &Gatehouse, id: &str, secret: &str, scope: Option<&str>) -> String {
    let mut params = vec![("grant_type", "client_credentials")];
    if let Some(s) = scope {
        params.push(("scope", s));
    }
    let (status, _, body) = form(gh, "/auth/token", Some(&basic(id, secret)), &params).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

async fn introspect(gh: &Gatehouse, by: (&str, &str), token: &str) -> Value {
    let (status, headers, body) = form(gh, "/auth/introspect", Some(&basic(by.0, by.1)), &[("token", token)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    body
}

async fn revoke(gh: &Gatehouse, by: (&str, &str), params: &[(&str, &str)]) -> (u16, Value) {
    let (status, _, body) = form(gh, "/auth/revoke", Some(&basic(by.0, by.1)), params).await;
    (status, body)
}

fn keys_of(v: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    keys
}

/// Asserts an OAuth error: status, RFC code (in `error` and `code`), no caching, and the
/// Basic challenge exactly on invalid_client.
fn oauth_error(case: &str, got: &(u16, reqwest::header::HeaderMap, Value), status: u16, error: &str) {
    let (s, headers, body) = got;
    assert_eq!(*s, status, "{case}: {body}");
    assert_eq!(body["error"], error, "{case}: {body}");
    assert_eq!(body["code"], error, "{case}: {body}");
    assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{case}: {body}");
    assert_eq!(headers["cache-control"], "no-store", "{case}");
    assert_eq!(headers["pragma"], "no-cache", "{case}");
    let challenge = headers.get("www-authenticate").map(|v| v.to_str().unwrap());
    let expected = (error == "invalid_client").then_some(r#"Basic realm="gatehouse""#);
    assert_eq!(challenge, expected, "{case}");
}

/// Registers a user; returns (access token, refresh token, user id).
async fn user(gh: &Gatehouse, email: &str) -> (String, String, String) {
    let (status, _, body) = post(gh, "/auth/register", &json!({"email": email, "password": PW}), None).await;
    assert_eq!(status, 201, "{body}");
    let s = |k: &str| body[k].as_str().unwrap().to_string();
    (s("access_token"), s("refresh_token"), body["user"]["id"].as_str().unwrap().to_string())
}

async fn login(gh: &Gatehouse, email: &str) -> (String, String) {
    let (status, _, body) = post(gh, "/auth/login", &json!({"email": email, "password": PW}), None).await;
    assert_eq!(status, 200, "{body}");
    (body["access_token"].as_str().unwrap().to_string(), body["refresh_token"].as_str().unwrap().to_string())
}

/// The proxy's answer for `token` on an `auth = "required"` route: status and error code.
async fn proxy_code(gh: &Gatehouse, token: &str) -> (u16, Value) {
    let (status, _, body) = get(gh, "/app", Some(token)).await;
    (status, body["code"].clone())
}

async fn cli_clients_get_tokens_the_proxy_accepts(backend: Backend) {
    let e = env(backend, 1000).await;
    // OAuth libraries find the endpoints through RFC 8414 / OIDC discovery.
    for doc in ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"] {
        let (status, _, meta) = get(&e.gh, doc, None).await;
        assert_eq!(status, 200);
        assert_eq!(meta["token_endpoint"], "https://gatehouse.test/auth/token", "{meta}");
        assert_eq!(meta["introspection_endpoint"], "https://gatehouse.test/auth/introspect");
        assert_eq!(meta["revocation_endpoint"], "https://gatehouse.test/auth/revoke");
        assert_eq!(meta["grant_types_supported"], json!(["client_credentials"]));
    }
    let (id, secret) = create_client(&e, "ci runner", "read,write");
    assert!(id.starts_with("gc_") && id.len() == 25 && id[3..].bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
    assert!(secret.starts_with("gcs_") && secret.len() == 4 + 43 + 1 + 6, "{secret}");

    // client_secret_basic, with id and secret form-urlencoded (RFC 6749 §2.3.1).
    let (status, headers, body) =
        form(&e.gh, "/auth/token", Some(&basic(&id, &secret)), &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys_of(&body), ["access_token", "expires_in", "scope", "token_type"]);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["scope"], "read write");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    assert_eq!(headers["content-type"], "application/json");
    let by_basic = body["access_token"].as_str().unwrap().to_string();

    // client_secret_post.
    let (status, _, body) = form(
        &e.gh,
        "/auth/token",
        None,
        &[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "read write");
    let by_post = body["access_token"].as_str().unwrap().to_string();
    assert_ne!(by_basic, by_post);

    // Basic plus the same client_id in the body (older OAuth libraries send both) is one method.
    let (status, _, body) = form(
        &e.gh,
        "/auth/token",
        Some(&basic(&id, &secret)),
        &[("grant_type", "client_credentials"), ("client_id", &id)],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let claims = claims_of(&by_basic);
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["client_id"], id.as_str());
    assert_eq!(claims["gty"], "client_credentials");
    assert_eq!(claims["scope"], "read write");
    assert_eq!(claims["permissions"], json!(["read", "write"]));
    assert_eq!(claims["iss"], "https://gatehouse.test");
    assert_eq!(claims["aud"], "gatehouse");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);
    assert!(claims.get("refresh_token").is_none() && claims.get("sid").is_none());

    // Both tokens pass the proxy as the client.
    for t in [&by_basic, &by_post] {
        let (status, _, echo) = get(&e.gh, "/app", Some(t)).await;
        assert_eq!(status, 200, "{echo}");
        assert_eq!(seen(&echo, "x-auth-method"), ["client_credentials"]);
        assert_eq!(seen(&echo, "x-auth-user-id"), [id.as_str()]);
        assert_eq!(seen(&echo, "x-auth-permissions"), ["read,write"]);
        assert!(seen(&echo, "x-auth-email").is_empty() && seen(&echo, "x-auth-role").is_empty(), "{echo}");
        assert!(seen(&echo, "authorization").is_empty(), "the token is not forwarded");
    }

    // `client list` shows it, never its secret.
    let out = cli(&e, &["client", "list"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8(out.stdout).unwrap();
    let line = listed.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{id} not in {listed}"));
    assert!(line.starts_with(&format!("{id}\tci runner\tread,write\t20")), "{line}");
    assert!(!listed.contains(&secret) && !listed.contains("gcs_"), "{listed}");

    // `client delete` in another process: the running server refuses the tokens within ~0.5 s
    // (it follows the store's revocation events) and the secret at once.
    let out = cli(&e, &["client", "delete", &id], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut refused = (0, Value::Null);
    for _ in 0..80 {
        refused = proxy_code(&e.gh, &by_basic).await;
        if refused.0 == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(refused, (401, json!("token_revoked")));
    assert_eq!(proxy_code(&e.gh, &by_post).await, (401, json!("token_revoked")));
    let got = form(&e.gh, "/auth/token", Some(&basic(&id, &secret)), &[("grant_type", "client_credentials")]).await;
    oauth_error("deleted client", &got, 401, "invalid_client");
    let listed = String::from_utf8(cli(&e, &["client", "list"], "").stdout).unwrap();
    assert!(!listed.contains(&id), "{listed}");
    let out = cli(&e, &["client", "delete", &id], "");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no live client"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Bad input is refused naming the flag.
    let out = cli(&e, &["client", "create", "--name", "x", "--scopes", "a b"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--scopes"), "{}", String::from_utf8_lossy(&out.stderr));
}

async fn scopes_narrow_to_a_subset(backend: Backend) {
    let e = env(backend, 1000).await;
    let (id, secret) = create_client(&e, "reporter", "read,write");
    let cases = [
        (Some("read"), "read"),
        (Some("write read read"), "write read"),
        (Some(" read  write "), "read write"),
        (Some(""), "read write"),
        (None, "read write"),
    ];
    for (requested, granted) in cases {
        let mut params = vec![("grant_type", "client_credentials")];
        if let Some(s) = requested {
            params.push(("scope", s));
        }
        let (status, _, body) = form(&e.gh, "/auth/token", Some(&basic(&id, &secret)), &params).await;
        assert_eq!(status, 200, "{requested:?}: {body}");
        assert_eq!(body["scope"], granted, "{requested:?}");
        let (_, _, echo) = get(&e.gh, "/app", Some(body["access_token"].as_str().unwrap())).await;
        assert_eq!(seen(&echo, "x-auth-permissions"), [granted.replace(' ', ",")], "{requested:?}");
    }
    for requested in ["admin", "read admin", "READ", "read,write"] {
        let got = form(
            &e.gh,
            "/auth/token",
            Some(&basic(&id, &secret)),
            &[("grant_type", "client_credentials"), ("scope", requested)],
        )
        .await;
        oauth_error(requested, &got, 400, "invalid_scope");
    }
    // A narrowed token carries only what it was granted: the admin route wants `admin`.
    let t = token(&e.gh, &id, &secret, Some("read")).await;
    let (status, _, body) = get(&e.gh, "/admin/panel", Some(&t)).await;
    assert_eq!((status, &body["code"]), (403, &json!("insufficient_scope")));
}

async fn token_errors_follow_rfc6749(backend: Backend) {
    let e = env(backend, 1000).await;
    let (id, secret) = create_client(&e, "errors", "read");
    let (other_id, _) = create_client(&e, "other", "read");
    let good = basic(&id, &secret);
    let grant = ("grant_type", "client_credentials");
    let wrong_secret = "gcs_0000000000000000000000000000000000000000000_000000";

    // (case, Authorization header, form, status, error)
    type Case<'a> = (&'a str, Option<String>, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("no grant_type", Some(good.clone()), vec![("scope", "read")], 400, "invalid_request"),
        ("password grant", Some(good.clone()), vec![("grant_type", "password")], 400, "unsupported_grant_type"),
        ("code grant", Some(good.clone()), vec![("grant_type", "authorization_code")], 400, "unsupported_grant_type"),
        ("repeated grant_type", Some(good.clone()), vec![grant, grant], 400, "invalid_request"),
        (
            "repeated scope",
            Some(good.clone()),
            vec![grant, ("scope", "read"), ("scope", "read")],
            400,
            "invalid_request",
        ),
        (
            "basic and post at once",
            Some(good.clone()),
            vec![grant, ("client_id", &id), ("client_secret", &secret)],
            400,
            "invalid_request",
        ),
        (
            "basic with another client_id",
            Some(good.clone()),
            vec![grant, ("client_id", &other_id)],
            400,
            "invalid_request",
        ),
        ("unknown client", Some(basic("gc_unknownunknownunknown", &secret)), vec![grant], 401, "invalid_client"),
        ("wrong secret", Some(basic(&id, wrong_secret)), vec![grant], 401, "invalid_client"),
        (
            "wrong secret by post",
            None,
            vec![grant, ("client_id", &id), ("client_secret", wrong_secret)],
            401,
            "invalid_client",
        ),
        ("another client's secret", Some(basic(&other_id, &secret)), vec![grant], 401, "invalid_client"),
        ("no client authentication", None, vec![grant], 401, "invalid_client"),
        ("client_id without secret", None, vec![grant, ("client_id", &id)], 401, "invalid_client"),
        ("bearer instead of basic", Some(format!("Bearer {secret}")), vec![grant], 401, "invalid_client"),
        ("malformed basic", Some("Basic not-base64!".into()), vec![grant], 401, "invalid_client"),
        // Postgres refuses NUL in text: such an id must never reach the store (a 500 before).
        (
            "NUL in client_id by post",
            None,
            vec![grant, ("client_id", "gc_\0x"), ("client_secret", &secret)],
            401,
            "invalid_client",
        ),
        ("NUL in client_id by basic", Some(basic("gc_\0x", &secret)), vec![grant], 401, "invalid_client"),
        // Unsupported grants are only discussed with authenticated clients.
        ("unauthenticated password grant", None, vec![("grant_type", "password")], 401, "invalid_client"),
    ];
    let mut invalid_client_bodies = Vec::new();
    for (case, auth, params, status, error) in cases {
        let got = form(&e.gh, "/auth/token", auth.as_deref(), &params).await;
        oauth_error(case, &got, status, error);
        if error == "invalid_client" {
            invalid_client_bodies.push(got.2);
        }
    }
    // Unknown client, wrong secret, no authentication: one answer, nothing to tell them apart.
    assert!(invalid_client_bodies.windows(2).all(|w| w[0] == w[1]), "{invalid_client_bodies:?}");

    // Form-encoded only.
    let json_body = json!({"grant_type": "client_credentials"}).to_string();
    for (case, ct) in [("json", Some("application/json")), ("no content type", None), ("text", Some("text/plain"))] {
        let (s, h, _, b) = post_raw(&e.gh, "/auth/token", ct, Some(&good), json_body.clone()).await;
        oauth_error(case, &(s, h, b), 400, "invalid_request");
    }
    let (s, _, _, b) = post_raw(
        &e.gh,
        "/auth/token",
        Some("Application/X-WWW-Form-URLencoded; charset=UTF-8"),
        Some(&good),
        "grant_type=client_credentials".into(),
    )
    .await;
    assert_eq!(s, 200, "media type parameters and case are fine: {b}");
    // Larger than accounts.max_body_bytes (64 KiB).
    let huge = format!("grant_type=client_credentials&pad={}", "a".repeat(70 * 1024));
    let (s, h, _, b) =
        post_raw(&e.gh, "/auth/token", Some("application/x-www-form-urlencoded"), Some(&good), huge).await;
    oauth_error("oversized body", &(s, h, b), 400, "invalid_request");
    // Two Authorization headers.
    let resp = client()
        .post(e.gh.url("/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", &good)
        .header("authorization", &good)
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_request");
    // Only POST.
    let (status, _, body) = get(&e.gh, "/auth/token", None).await;
    assert_eq!((status, &body["code"]), (405, &json!("method_not_allowed")));
}

async fn token_endpoint_has_its_own_rate_limit(backend: Backend) {
    let e = env(backend, 3).await;
    let (id, secret) = create_client(&e, "limited", "read");
    let grant = [("grant_type", "client_credentials")];
    // Failures use up the quota as successes do.
    assert_eq!(form(&e.gh, "/auth/token", Some(&basic(&id, &secret)), &grant).await.0, 200);
    assert_eq!(form(&e.gh, "/auth/token", Some(&basic(&id, "wrong")), &grant).await.0, 401);
    assert_eq!(form(&e.gh, "/auth/token", None, &[]).await.0, 400);
    let (status, headers, body) = form(&e.gh, "/auth/token", Some(&basic(&id, &secret)), &grant).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "rate_limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");

    // Logins have their own quota, and introspection is not limited (resource servers call it
    // per request).
    let (status, _, body) =
        post(&e.gh, "/auth/login", &json!({"email": "nobody@example.com", "password": PW}), None).await;
    assert_eq!((status, &body["code"]), (401, &json!("invalid_credentials")));
    for _ in 0..5 {
        let (status, _, body) =
            form(&e.gh, "/auth/introspect", Some(&basic(&id, &secret)), &[("token", "garbage")]).await;
        assert_eq!((status, &body), (200, &json!({"active": false})));
    }
}

async fn introspection_reports_live_tokens_only(backend: Backend) {
    let e = env(backend, 1000).await;
    let (id, secret) = create_client(&e, "worker", "read,write");
    let rs = create_client(&e, "resource server", "introspect");
    let rs = (rs.0.as_str(), rs.1.as_str());

    // A client token.
    let t = token(&e.gh, &id, &secret, None).await;
    let got = introspect(&e.gh, rs, &t).await;
    assert_eq!(
        keys_of(&got),
        ["active", "aud", "auth_method", "client_id", "exp", "iat", "iss", "jti", "scope", "sub", "token_type"]
    );
    let signed = claims_of(&t);
    assert_eq!(got["active"], true);
    assert_eq!(got["sub"], id.as_str());
    assert_eq!(got["client_id"], id.as_str());
    assert_eq!(got["scope"], "read write");
    assert_eq!(got["token_type"], "Bearer");
    assert_eq!(got["auth_method"], "client_credentials");
    assert_eq!(got["iss"], "https://gatehouse.test");
    assert_eq!(got["aud"], "gatehouse");
    assert_eq!((&got["exp"], &got["iat"], &got["jti"]), (&signed["exp"], &signed["iat"], &signed["jti"]));
    // By client_secret_post too; the client may introspect its own token.
    let (status, _, by_post) = form(
        &e.gh,
        "/auth/introspect",
        None,
        &[("token", &t), ("token_type_hint", "access_token"), ("client_id", &id), ("client_secret", &secret)],
    )
    .await;
    assert_eq!((status, &by_post), (200, &got));

    // A user's access token.
    let (access, refresh, user_id) = user(&e.gh, "ann@example.com").await;
    let got = introspect(&e.gh, rs, &access).await;
    assert_eq!(
        keys_of(&got),
        [
            "active",
            "aud",
            "auth_method",
            "email",
            "email_verified",
            "exp",
            "iat",
            "iss",
            "jti",
            "scope",
            "sub",
            "token_type"
        ]
    );
    assert_eq!(got["sub"], user_id.as_str());
    assert_eq!(got["email"], "ann@example.com");
    assert_eq!(got["email_verified"], false);
    assert_eq!(got["auth_method"], "jwt");
    assert_eq!(got["scope"], "read");
    assert_eq!(got["exp"].as_i64().unwrap() - got["iat"].as_i64().unwrap(), 300);

    // An API key and a PAT.
    let (status, key) = send(&e.gh, "POST", "/auth/api-keys", Some(&access), Some(json!({"name": "k"}))).await;
    assert_eq!(status, 201, "{key}");
    let key = json_of(&key);
    let got = introspect(&e.gh, rs, key["key"].as_str().unwrap()).await;
    assert_eq!(
        keys_of(&got),
        ["active", "auth_method", "email", "email_verified", "iat", "iss", "jti", "scope", "sub", "token_type"]
    );
    assert_eq!((&got["auth_method"], &got["sub"], &got["jti"]), (&json!("api_key"), &json!(user_id), &key["id"]));
    let (status, pat) = send(&e.gh, "POST", "/auth/tokens", Some(&access), Some(json!({"name": "p"}))).await;
    assert_eq!(status, 201, "{pat}");
    let got = introspect(&e.gh, rs, json_of(&pat)["token"].as_str().unwrap()).await;
    assert_eq!(got["auth_method"], "pat");
    assert!(got["exp"].as_i64().unwrap() > now() as i64 + 80 * 86_400, "{got}");

    // An external issuer's token Gatehouse accepts, and one it does not (expired).
    let mut ext = claims(EXT, "ext-user");
    ext["preferred_username"] = json!("ext");
    ext["permissions"] = json!(["read"]);
    let got = introspect(&e.gh, rs, &e.idp.sign(&ext)).await;
    assert_eq!(got["active"], true, "{got}");
    assert_eq!((&got["iss"], &got["sub"], &got["aud"]), (&json!(EXT), &json!("ext-user"), &json!("api")));
    assert_eq!((&got["username"], &got["auth_method"], &got["scope"]), (&json!("ext"), &json!("jwt"), &json!("read")));
    assert!(got.get("client_id").is_none());
    ext["exp"] = json!(now() - 120);
    let inactive = json!({"active": false});
    assert_eq!(introspect(&e.gh, rs, &e.idp.sign(&ext)).await, inactive);

    // Garbage, malformed keys, refresh tokens (never introspectable), revoked tokens: inactive.
    let bad_key = format!("{}x", key["key"].as_str().unwrap());
    for t in ["garbage", "a.b.c", bad_key.as_str(), refresh.as_str()] {
        assert_eq!(introspect(&e.gh, rs, t).await, inactive, "{t}");
    }
    assert_eq!(send(&e.gh, "POST", "/auth/logout", Some(&access), None).await.0, 204);
    assert_eq!(introspect(&e.gh, rs, &access).await, inactive);

    // Errors.
    let got = form(&e.gh, "/auth/introspect", Some(&basic(rs.0, rs.1)), &[("token_type_hint", "access_token")]).await;
    oauth_error("missing token", &got, 400, "invalid_request");
    let got = form(&e.gh, "/auth/introspect", None, &[("token", &t)]).await;
    oauth_error("no client", &got, 401, "invalid_client");
    let got = form(&e.gh, "/auth/introspect", Some(&basic(rs.0, "wrong")), &[("token", &t)]).await;
    oauth_error("wrong secret", &got, 401, "invalid_client");
    let (s, h, _, b) = post_raw(
        &e.gh,
        "/auth/introspect",
        Some("application/json"),
        Some(&basic(rs.0, rs.1)),
        json!({"token": t}).to_string(),
    )
    .await;
    oauth_error("json", &(s, h, b), 400, "invalid_request");
}

async fn revocation_follows_rfc7009(backend: Backend) {
    let e = env(backend, 1000).await;
    let a = create_client(&e, "a", "read");
    let b = create_client(&e, "b", "read");
    let admin = create_client(&e, "ops", "gatehouse:admin");
    let (a, b, admin) =
        ((a.0.as_str(), a.1.as_str()), (b.0.as_str(), b.1.as_str()), (admin.0.as_str(), admin.1.as_str()));
    let inactive = json!({"active": false});
    let revoked = (401, json!("token_revoked"));

    // A client revokes its own token: 200, empty body; the proxy refuses it, introspection agrees.
    let ta = token(&e.gh, a.0, a.1, None).await;
    let (status, headers, text, _) = post_raw(
        &e.gh,
        "/auth/revoke",
        Some("application/x-www-form-urlencoded"),
        Some(&basic(a.0, a.1)),
        format!("token={ta}&token_type_hint=access_token"),
    )
    .await;
    assert_eq!((status, text.as_str()), (200, ""));
    assert!(headers.get("www-authenticate").is_none());
    assert_eq!(proxy_code(&e.gh, &ta).await, revoked);
    assert_eq!(introspect(&e.gh, b, &ta).await, inactive);
    // Again, and unknown or garbage tokens: 200 all the same.
    for t in [ta.as_str(), "garbage", "gk_0000000000000000000000000000000000000000000_000000"] {
        assert_eq!(revoke(&e.gh, a, &[("token", t)]).await.0, 200, "{t}");
    }
    // Refresh tokens are never issued to clients: a non-admin client's request changes nothing
    // and answers 200 whatever the token (checking one would use it up; RFC 7009 §2.2).
    let got = form(&e.gh, "/auth/revoke", Some(&basic(a.0, a.1)), &[("token", "grt_unknown")]).await;
    assert_eq!(got.0, 200, "{:?}", got.2);

    // Someone else's live token: refused, and it keeps working.
    let tb = token(&e.gh, b.0, b.1, None).await;
    let (access, refresh, _) = user(&e.gh, "bo@example.com").await;
    let (status, _, key) = post(&e.gh, "/auth/api-keys", &json!({"name": "k"}), Some(&access)).await;
    assert_eq!(status, 201, "{key}");
    let key = key["key"].as_str().unwrap().to_string();
    for t in [&tb, &access, &key] {
        let got = form(&e.gh, "/auth/revoke", Some(&basic(a.0, a.1)), &[("token", t.as_str())]).await;
        oauth_error("not a's token", &got, 400, "unauthorized_client");
    }
    assert_eq!(form(&e.gh, "/auth/revoke", Some(&basic(a.0, a.1)), &[("token", refresh.as_str())]).await.0, 200);
    for t in [&tb, &access, &key] {
        assert_eq!(proxy_code(&e.gh, t).await.0, 200);
    }
    let (status, _, rotated) = post(&e.gh, "/auth/refresh", &json!({"refresh_token": refresh}), None).await;
    assert_eq!(status, 200, "the refresh token was left alone: {rotated}");
    let (access, refresh) =
        (rotated["access_token"].as_str().unwrap().to_string(), rotated["refresh_token"].as_str().unwrap().to_string());

    // An admin client revokes any of them. Hints are hints: a wrong or unknown one changes nothing.
    assert_eq!(revoke(&e.gh, admin, &[("token", &tb), ("token_type_hint", "refresh_token")]).await.0, 200);
    assert_eq!(proxy_code(&e.gh, &tb).await, revoked);
    // A user's access token ends its session: the refresh token dies with it.
    assert_eq!(revoke(&e.gh, admin, &[("token", &access), ("token_type_hint", "bogus")]).await.0, 200);
    assert_eq!(proxy_code(&e.gh, &access).await, revoked);
    assert_eq!(post(&e.gh, "/auth/refresh", &json!({"refresh_token": refresh}), None).await.0, 401);
    // A refresh token ends its session: the access token dies with it.
    let (access2, refresh2) = login(&e.gh, "bo@example.com").await;
    assert_eq!(revoke(&e.gh, admin, &[("token", &refresh2), ("token_type_hint", "refresh_token")]).await.0, 200);
    assert_eq!(post(&e.gh, "/auth/refresh", &json!({"refresh_token": refresh2}), None).await.0, 401);
    assert_eq!(proxy_code(&e.gh, &access2).await, revoked);
    // An API key.
    assert_eq!(revoke(&e.gh, admin, &[("token", &key)]).await.0, 200);
    assert_eq!(proxy_code(&e.gh, &key).await, revoked);
    assert_eq!(introspect(&e.gh, b, &key).await, inactive);
    // Another issuer's token: only that issuer can revoke it.
    let ext = e.idp.sign(&claims(EXT, "ext-user"));
    let got = form(&e.gh, "/auth/revoke", Some(&basic(admin.0, admin.1)), &[("token", &ext)]).await;
    oauth_error("external token", &got, 400, "unsupported_token_type");
    assert_eq!(proxy_code(&e.gh, &ext).await.0, 200);

    // Errors.
    let got = form(&e.gh, "/auth/revoke", Some(&basic(a.0, a.1)), &[]).await;
    oauth_error("missing token", &got, 400, "invalid_request");
    let got = form(&e.gh, "/auth/revoke", None, &[("token", &tb)]).await;
    oauth_error("no client", &got, 401, "invalid_client");
}

async fn admins_manage_clients_over_the_api(backend: Backend) {
    let e = env(backend, 1000).await;
    let out = cli(&e, &["user", "create", "--email", "root@example.com", "--role", "admin"], &format!("{PW}\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (admin, _) = login(&e.gh, "root@example.com").await;
    let (member, _, _) = user(&e.gh, "member@example.com").await;
    let admin_id = json_of(&send(&e.gh, "GET", "/auth/me", Some(&admin), None).await.1)["id"].clone();
    let new = json!({"name": "billing", "scopes": ["read", "write"]});

    // Not an admin: 403 before anything else, even with a bad body; no token: 401.
    for (method, path, body) in [
        ("POST", "/auth/clients", Some(new.clone())),
        ("POST", "/auth/clients", Some(json!({"name": ""}))),
        ("GET", "/auth/clients", None),
        ("DELETE", "/auth/clients/gc_whatever", None),
    ] {
        let (status, text) = send(&e.gh, method, path, Some(&member), body.clone()).await;
        assert_eq!((status, &json_of(&text)["code"]), (403, &json!("insufficient_role")), "{method} {path}");
        let (status, text) = send(&e.gh, method, path, None, body).await;
        assert_eq!((status, &json_of(&text)["code"]), (401, &json!("missing_credentials")), "{method} {path}");
    }

    // Create: the secret appears once.
    let (status, text) = send(&e.gh, "POST", "/auth/clients", Some(&admin), Some(new)).await;
    assert_eq!(status, 201, "{text}");
    let created = json_of(&text);
    assert_eq!(keys_of(&created), ["client_id", "client_secret", "created_at", "created_by", "name", "scopes"]);
    assert_eq!((&created["name"], &created["scopes"]), (&json!("billing"), &json!(["read", "write"])));
    assert_eq!(created["created_by"], admin_id);
    assert!(created["created_at"].as_str().unwrap().starts_with("20"), "{created}");
    let id = created["client_id"].as_str().unwrap().to_string();
    let secret = created["client_secret"].as_str().unwrap().to_string();
    assert!(id.starts_with("gc_") && secret.starts_with("gcs_"), "{created}");

    // Bad input names the field.
    for (body, field) in [
        (json!({"name": "", "scopes": []}), "name"),
        (json!({"name": "x".repeat(101), "scopes": []}), "name"),
        (json!({"name": "bell\u{7}", "scopes": []}), "name"),
        (json!({"name": "x", "scopes": ["has space"]}), "scopes"),
        (json!({"name": "x", "scopes": ["a,b"]}), "scopes"),
        (json!({"name": "x", "scopes": [""]}), "scopes"),
        (json!({"name": "x", "scopes": (0..101).map(|i| format!("s{i}")).collect::<Vec<_>>()}), "scopes"),
        (json!({"name": "x"}), "scopes"),
        (json!({"name": "x", "scopes": [], "secret": "mine"}), "secret"),
    ] {
        let (status, text) = send(&e.gh, "POST", "/auth/clients", Some(&admin), Some(body.clone())).await;
        let err = json_of(&text);
        assert_eq!((status, &err["code"]), (400, &json!("validation_error")), "{body}: {text}");
        assert!(err["message"].as_str().unwrap().contains(field), "{body}: {text}");
    }

    // List: no secrets, no digests.
    let (status, text) = send(&e.gh, "GET", "/auth/clients", Some(&admin), None).await;
    assert_eq!(status, 200, "{text}");
    let list = json_of(&text);
    assert_eq!(list.as_array().unwrap().len(), 1, "{text}");
    assert_eq!(keys_of(&list[0]), ["client_id", "created_at", "created_by", "name", "scopes"]);
    assert_eq!(list[0]["client_id"], id.as_str());
    assert!(!text.contains(&secret) && !text.contains("secret") && !text.contains("digest"), "{text}");

    // The new client works; its token cannot manage clients (a user session is needed).
    let t = token(&e.gh, &id, &secret, None).await;
    assert_eq!(proxy_code(&e.gh, &t).await.0, 200);
    let (status, text) = send(&e.gh, "GET", "/auth/clients", Some(&t), None).await;
    assert_eq!((status, &json_of(&text)["code"]), (401, &json!("invalid_token")));

    // Delete: its token and its secret are refused at once.
    assert_eq!(send(&e.gh, "DELETE", &format!("/auth/clients/{id}"), Some(&admin), None).await.0, 204);
    assert_eq!(proxy_code(&e.gh, &t).await, (401, json!("token_revoked")));
    let got = form(&e.gh, "/auth/token", Some(&basic(&id, &secret)), &[("grant_type", "client_credentials")]).await;
    oauth_error("deleted client", &got, 401, "invalid_client");
    let got = form(&e.gh, "/auth/introspect", Some(&basic(&id, &secret)), &[("token", "x")]).await;
    oauth_error("deleted client introspects", &got, 401, "invalid_client");
    let (_, text) = send(&e.gh, "GET", "/auth/clients", Some(&admin), None).await;
    assert_eq!(json_of(&text), json!([]));
    for path in [format!("/auth/clients/{id}"), "/auth/clients/gc_unknown".to_string()] {
        let (status, text) = send(&e.gh, "DELETE", &path, Some(&admin), None).await;
        assert_eq!((status, &json_of(&text)["code"]), (404, &json!("not_found")), "{path}");
    }
}
