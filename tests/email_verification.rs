//! Email verification end to end, on SQLite and on Postgres: the mailed link, single use,
//! expiry, resend, `email_verified` in the user, tokens and upstream headers,
//! `accounts.require_verified_email`, external issuers' claim, and logs without tokens.
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use gatehouse::store::{LoginOutcome, SqlStore, Store};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

on_both!(
    registration_mails_a_link_that_verifies_once,
    expired_wrong_and_superseded_links_are_refused,
    resend_is_signed_in_and_rate_limited,
    require_verified_email_gates_sign_in,
    the_log_never_holds_a_verification_token,
);

const SUBJECT: &str = "Subject: Verify your email address";

struct Env {
    upstream: Upstream,
    store: TestStore,
    gh: Gatehouse,
}

/// `accounts` lands inside `[accounts]`; `rest` after it (other sections).
async fn env(backend: Backend, accounts: &str, rest: &str) -> Env {
    env_limited(backend, accounts, rest, 1000).await
}

async fn env_limited(backend: Backend, accounts: &str, rest: &str, per_minute: u32) -> Env {
    let upstream = Upstream::start().await;
    let store = backend.fresh().await;
    let extra = format!(
        "verify_url = \"https://app.example.com/verify\"\n{accounts}\n[rate_limit]\nlogin_per_minute = {per_minute}\n{rest}"
    );
    let gh = Gatehouse::start(&accounts_config(&upstream, &store, &extra)).await;
    gh.wait_ready().await;
    Env { upstream, store, gh }
}

impl Env {
    fn outbox(&self) -> std::path::PathBuf {
        self.store.dir.path().join("outbox")
    }

    /// The tokens of every verification mail sent to `to` so far.
    fn tokens_for(&self, to: &str) -> Vec<String> {
        mails_with(&self.outbox(), SUBJECT)
            .iter()
            .filter(|m| m.contains(&format!("To: {to}\n")))
            .map(|m| link_token(m))
            .collect()
    }

    /// Waits for a verification mail to `to` whose token is not in `known`.
    async fn new_token(&self, to: &str, known: &[String]) -> String {
        let deadline = tokio::time::Instant::now() + MAIL_DEADLINE;
        loop {
            if let Some(t) = self.tokens_for(to).into_iter().find(|t| !known.contains(t)) {
                return t;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no new verification mail to {to} in {} after {MAIL_DEADLINE:?}",
                self.outbox().display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn link_token(mail: &str) -> String {
    let link =
        mail.lines().find(|l| l.starts_with("https://app.example.com/verify?token=")).expect("a verification link");
    link.split("token=").nth(1).unwrap().trim().to_string()
}

async fn register(gh: &Gatehouse, email: &str) -> Value {
    let (status, _, body) = post(gh, "/auth/register", &json!({"email": email, "password": PW}), None).await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn login(gh: &Gatehouse, email: &str) -> (u16, Value) {
    let (status, _, body) = post(gh, "/auth/login", &json!({"email": email, "password": PW}), None).await;
    (status, body)
}

fn s(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_else(|| panic!("{field} in {v}")).to_string()
}

async fn registration_mails_a_link_that_verifies_once(backend: Backend) {
    let e = env(backend, "", "").await;
    let reg = register(&e.gh, "Ver@Example.com").await;
    assert_eq!(reg["user"]["email_verified"], false, "{reg}");
    let access = s(&reg, "access_token");
    assert_eq!(claims_of(&access)["email_verified"], false);

    // Upstream sees `false`; a client-sent `true` (any spelling) never gets through.
    let spoof =
        [("X-Auth-Email-Verified", "true"), ("x-auth-email-verified", "yes"), ("X_Auth_Email_Verified", "true")];
    let (status, _, echo) = get_with(&e.gh, "/app", Some(&access), &spoof).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(seen(&echo, "x-auth-email-verified"), ["false"]);
    assert!(seen(&echo, "x_auth_email_verified").is_empty());
    let (_, _, echo) = get_with(&e.gh, "/public/page", None, &spoof).await;
    assert!(seen(&echo, "x-auth-email-verified").is_empty() && seen(&echo, "x_auth_email_verified").is_empty());

    // The mail: to the address as registered, a link on accounts.verify_url.
    let mail = wait_mail(&e.outbox(), SUBJECT).await;
    assert!(mail.contains("To: Ver@Example.com\n"), "{mail}");
    assert!(mail.contains("within 24 hours"), "{mail}");
    let token = link_token(&mail);
    assert!(token.len() >= 48, "{token}");
    assert!(!mail.contains(&access) && !mail.contains(&s(&reg, "refresh_token")));

    let (status, _, body) = post(&e.gh, "/auth/verify-email", &json!({"token": token}), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["email_verified"], true, "{body}");
    assert_eq!(body["user"]["email"], "Ver@Example.com");

    // Single use.
    let (status, _, err) = post(&e.gh, "/auth/verify-email", &json!({"token": token}), None).await;
    assert_eq!(
        (status, s(&err, "code").as_str(), s(&err, "error").as_str()),
        (400, "invalid_verification_token", "bad_request")
    );
    assert!(err["message"].is_string());

    // The profile says so at once; tokens issued from now on carry it; upstream sees it.
    let (status, _, me) = get(&e.gh, "/auth/me", Some(&access)).await;
    assert_eq!((status, &me["email_verified"]), (200, &json!(true)), "{me}");
    let (status, _, refreshed) =
        post(&e.gh, "/auth/refresh", &json!({"refresh_token": reg["refresh_token"]}), None).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(refreshed["user"]["email_verified"], true);
    let fresh = s(&refreshed, "access_token");
    assert_eq!(claims_of(&fresh)["email_verified"], true);
    let (_, _, echo) = get_with(&e.gh, "/app", Some(&fresh), &spoof).await;
    assert_eq!(seen(&echo, "x-auth-email-verified"), ["true"]);
    assert_eq!(seen(&echo, "x-auth-email"), ["Ver@Example.com"]);
    // A token signed before verification still says what was true when it was signed.
    let (_, _, echo) = get_with(&e.gh, "/app", Some(&access), &[]).await;
    assert_eq!(seen(&echo, "x-auth-email-verified"), ["false"]);
    let (status, body) = login(&e.gh, "ver@example.com").await;
    assert_eq!((status, &body["user"]["email_verified"]), (200, &json!(true)));

    // Forward-auth answers with the header too.
    let r = client()
        .get(e.gh.url("/verify"))
        .bearer_auth(&fresh)
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Uri", "/app")
        .header("X-Auth-Email-Verified", "maybe")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get_all("x-auth-email-verified").iter().collect::<Vec<_>>(), ["true"]);

    // Already verified: a resend says so and mails nothing.
    let (status, _, body) = post(&e.gh, "/auth/verify-email/resend", &json!({}), Some(&fresh)).await;
    assert_eq!((status, &body["email_verified"]), (200, &json!(true)), "{body}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mails_with(&e.outbox(), SUBJECT).len(), 1);
    let _ = &e.upstream;
}

async fn expired_wrong_and_superseded_links_are_refused(backend: Backend) {
    let e = env(backend, "verify_ttl = \"1h\"", "").await;
    let reg = register(&e.gh, "exp@example.com").await;
    let first = e.new_token("exp@example.com", &[]).await;
    assert!(mails_with(&e.outbox(), SUBJECT)[0].contains("within 60 minutes"));

    // Wrong, malformed and missing tokens: 400 in the error shape, nothing verified.
    for junk in [json!({"token": "x".repeat(48)}), json!({"token": "short"}), json!({"token": "y".repeat(5000)})] {
        let (status, _, err) = post(&e.gh, "/auth/verify-email", &junk, None).await;
        assert_eq!((status, s(&err, "code").as_str()), (400, "invalid_verification_token"), "{err}");
    }
    let (status, _, err) = post(&e.gh, "/auth/verify-email", &json!({}), None).await;
    assert_eq!((status, s(&err, "code").as_str()), (400, "validation_error"), "{err}");
    let (status, _, err) = post(&e.gh, "/auth/verify-email", &json!({"token": format!("{first}x")}), None).await;
    assert_eq!((status, s(&err, "code").as_str()), (400, "invalid_verification_token"));

    // An expired link (written straight to the store, an hour old).
    let store = SqlStore::connect(&e.store.url).await.unwrap();
    let user_id = s(&reg["user"], "id");
    let old = "expired-link-token-expired-link-token-expired-link";
    let t = now() as i64;
    let digest = gatehouse::api::session::digest_of(old);
    store.create_email_verification(&digest, &user_id, "exp@example.com", t - 3600, t - 1).await.unwrap();
    let (status, _, err) = post(&e.gh, "/auth/verify-email", &json!({"token": old}), None).await;
    assert_eq!((status, s(&err, "code").as_str()), (400, "invalid_verification_token"), "{err}");

    // Writing that link retired the mailed one: only the newest link works.
    let (status, _, _) = post(&e.gh, "/auth/verify-email", &json!({"token": first}), None).await;
    assert_eq!(status, 400, "a superseded link is dead");
    let access = s(&reg, "access_token");
    let (status, _, body) = post(&e.gh, "/auth/verify-email/resend", &json!({}), Some(&access)).await;
    assert_eq!((status, &body["email_verified"]), (200, &json!(false)), "{body}");
    let second = e.new_token("exp@example.com", std::slice::from_ref(&first)).await;
    assert_ne!(first, second);
    assert!(!store.user_by_id(&user_id).await.unwrap().unwrap().email_verified);
    let (status, _, body) = post(&e.gh, "/auth/verify-email", &json!({"token": second}), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(store.user_by_id(&user_id).await.unwrap().unwrap().email_verified);
}

async fn resend_is_signed_in_and_rate_limited(backend: Backend) {
    let e = env_limited(backend, "", "", 4).await;
    let gh = &e.gh;
    let reg = register(gh, "again@example.com").await; // 1 of 4
    let access = s(&reg, "access_token");

    // Signed in only: no token, a refresh token, or an API key is not enough.
    let (status, _, err) = post(gh, "/auth/verify-email/resend", &json!({}), None).await;
    assert_eq!((status, s(&err, "code").as_str()), (401, "missing_credentials"));
    let (status, _, _) = post(gh, "/auth/verify-email/resend", &json!({}), Some(&s(&reg, "refresh_token"))).await;
    assert_eq!(status, 401);
    let (status, _, key) = post(gh, "/auth/api-keys", &json!({"name": "k"}), Some(&access)).await;
    assert_eq!(status, 201, "{key}");
    let (status, _, _) = post(gh, "/auth/verify-email/resend", &json!({}), Some(&s(&key, "key"))).await;
    assert_eq!(status, 401);

    for _ in 0..3 {
        let (status, _, body) = post(gh, "/auth/verify-email/resend", &json!({}), Some(&access)).await; // 2..4
        assert_eq!(status, 200, "{body}");
    }
    let (status, headers, err) = post(gh, "/auth/verify-email/resend", &json!({}), Some(&access)).await;
    assert_eq!((status, s(&err, "code").as_str()), (429, "rate_limited"));
    assert!(headers.contains_key("retry-after"));
    let outbox = e.outbox();
    wait_mails(&outbox, SUBJECT, 4).await;
    assert_eq!(mails_with(&outbox, SUBJECT).len(), 4, "registration plus three resends");
}

async fn require_verified_email_gates_sign_in(backend: Backend) {
    let idp_key = TestKey::generate(Algorithm::ES256);
    let jwks_server = JwksServer::start(jwks(&[&idp_key])).await;
    let issuer = issuer_block("https://idp.test", &jwks_server.url(), &["ES256"]);
    let e = env(backend, "require_verified_email = true", &format!("[api_keys]\ncache_ttl = \"1s\"\n{issuer}")).await;
    let reg = register(&e.gh, "gate@example.com").await;
    assert_eq!(reg["user"]["email_verified"], false);
    let access = s(&reg, "access_token");

    // Registration's own session serves the auth API (to read the profile, resend, verify),
    // but proves nothing to the upstream yet.
    let (status, _, err) = get(&e.gh, "/app", Some(&access)).await;
    assert_eq!((status, s(&err, "code").as_str(), s(&err, "error").as_str()), (403, "email_not_verified", "forbidden"));
    let (status, _, echo) = get_with(&e.gh, "/public/page", Some(&access), &[]).await;
    assert_eq!(status, 200);
    assert!(seen(&echo, "x-auth-user-id").is_empty(), "anonymous on a public route: {echo}");
    assert_eq!(get(&e.gh, "/auth/me", Some(&access)).await.0, 200);
    let r = client()
        .get(e.gh.url("/verify"))
        .bearer_auth(&access)
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Uri", "/app")
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["x-auth-error-code"].to_str().unwrap()), (403, "email_not_verified"));
    // A PAT minted meanwhile does not get around it.
    let (status, _, pat) = post(&e.gh, "/auth/tokens", &json!({"name": "p"}), Some(&access)).await;
    assert_eq!(status, 201, "{pat}");
    let pat = s(&pat, "token");
    let (status, _, err) = get(&e.gh, "/app", Some(&pat)).await;
    assert_eq!((status, s(&err, "code").as_str()), (403, "email_not_verified"));

    // Login and refresh: refused after the password check, and audited.
    let (status, err) = login(&e.gh, "gate@example.com").await;
    assert_eq!((status, s(&err, "code").as_str()), (403, "email_not_verified"), "{err}");
    let (status, _, err) =
        post(&e.gh, "/auth/login", &json!({"email": "gate@example.com", "password": "wrong one!"}), None).await;
    assert_eq!(
        (status, s(&err, "code").as_str()),
        (401, "invalid_credentials"),
        "the state is told only to the password holder"
    );
    let (status, _, err) = post(&e.gh, "/auth/refresh", &json!({"refresh_token": reg["refresh_token"]}), None).await;
    assert_eq!((status, s(&err, "code").as_str()), (403, "email_not_verified"));
    let store = SqlStore::connect(&e.store.url).await.unwrap();
    let outcomes: Vec<_> = store.login_attempts("gate@example.com").await.unwrap().iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [LoginOutcome::EmailNotVerified, LoginOutcome::WrongPassword]);

    // External issuers' tokens are theirs to vouch for: passed on, with their claim.
    let mut c = claims("https://idp.test", "ext-user");
    c["email"] = json!("ext@example.com");
    let (status, _, echo) = get_with(&e.gh, "/app", Some(&idp_key.sign(&c)), &[]).await;
    assert_eq!((status, seen(&echo, "x-auth-email-verified")), (200, vec!["false".to_string()]), "{echo}");

    // Verified: login works, its token passes, and so does the PAT (within api_keys.cache_ttl).
    let token = e.new_token("gate@example.com", &[]).await;
    assert_eq!(post(&e.gh, "/auth/verify-email", &json!({"token": token}), None).await.0, 200);
    let (status, session) = login(&e.gh, "gate@example.com").await;
    assert_eq!(status, 200, "{session}");
    let (status, _, echo) = get_with(&e.gh, "/app", Some(&s(&session, "access_token")), &[]).await;
    assert_eq!((status, seen(&echo, "x-auth-email-verified")), (200, vec!["true".to_string()]));
    assert_eq!(post(&e.gh, "/auth/refresh", &json!({"refresh_token": session["refresh_token"]}), None).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, _, echo) = get_with(&e.gh, "/app", Some(&pat), &[]).await;
    assert_eq!((status, seen(&echo, "x-auth-email-verified")), (200, vec!["true".to_string()]), "{echo}");

    // A password reset proves the mailbox too: the way back for an account that cannot sign in.
    register(&e.gh, "lost@example.com").await;
    assert_eq!(login(&e.gh, "lost@example.com").await.0, 403);
    assert_eq!(post(&e.gh, "/auth/forgot-password", &json!({"email": "lost@example.com"}), None).await.0, 200);
    let mail = wait_mail(&e.outbox(), "To: lost@example.com\nSubject: Reset your password").await;
    let reset = mail.lines().rev().find(|l| !l.trim().is_empty()).unwrap().trim().to_string();
    let (status, _, body) =
        post(&e.gh, "/auth/reset-password", &json!({"token": reset, "new_password": "a brand new passphrase"}), None)
            .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) =
        post(&e.gh, "/auth/login", &json!({"email": "lost@example.com", "password": "a brand new passphrase"}), None)
            .await;
    assert_eq!((status, &body["user"]["email_verified"]), (200, &json!(true)), "{body}");
}

/// External issuers: `email_verified` read at a configurable path, `true` or `"true"` only.
#[tokio::test]
async fn external_issuers_email_verified_claim() {
    let key = TestKey::generate(Algorithm::ES256);
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let upstream = Upstream::start().await;
    let blocks = format!(
        "{}{}email_verified_claim = \"ext.mail_ok\"\n",
        issuer_block("https://idp.test", &jwks_server.url(), &["ES256"]),
        issuer_block("https://other.test", &jwks_server.url(), &["ES256"]),
    );
    let gh = Gatehouse::start(&config(&upstream, &blocks)).await;
    gh.wait_ready().await;
    let header_for = |iss: &str, extra: Value| {
        let mut c = claims(iss, "ext");
        c["email"] = json!("ext@example.com");
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        let token = key.sign(&c);
        let gh = &gh;
        async move {
            let (status, _, echo) = get_with(gh, "/app", Some(&token), &[("X-Auth-Email-Verified", "true")]).await;
            assert_eq!(status, 200, "{echo}");
            seen(&echo, "x-auth-email-verified")
        }
    };
    let idp = "https://idp.test";
    assert_eq!(header_for(idp, json!({"email_verified": true})).await, ["true"]);
    assert_eq!(header_for(idp, json!({"email_verified": "true"})).await, ["true"]);
    assert_eq!(header_for(idp, json!({})).await, ["false"], "missing is unverified");
    assert_eq!(header_for(idp, json!({"email_verified": "false"})).await, ["false"]);
    assert_eq!(header_for(idp, json!({"email_verified": false})).await, ["false"]);
    assert_eq!(header_for(idp, json!({"email_verified": 1})).await, ["false"], "only a real true");
    assert_eq!(header_for(idp, json!({"email_verified": "TRUE "})).await, ["false"]);
    let other = "https://other.test";
    assert_eq!(header_for(other, json!({"ext": {"mail_ok": true}})).await, ["true"]);
    assert_eq!(header_for(other, json!({"email_verified": true})).await, ["false"], "the configured path only");
    // No email, no header (a client-sent one is still removed).
    let (_, _, echo) =
        get_with(&gh, "/app", Some(&key.sign(&claims(idp, "svc"))), &[("X-Auth-Email-Verified", "true")]).await;
    assert!(seen(&echo, "x-auth-email-verified").is_empty(), "{echo}");
}

/// `[headers] email_verified` renames the header; empty turns it off (and it is not reserved).
#[tokio::test]
async fn the_header_name_is_configurable() {
    let key = TestKey::generate(Algorithm::ES256);
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let upstream = Upstream::start().await;
    let mut c = claims("https://idp.test", "ext");
    c["email"] = json!("ext@example.com");
    c["email_verified"] = json!(true);
    let token = key.sign(&c);
    for (setting, name) in [("email_verified = \"X-Mail-Ok\"", "x-mail-ok"), ("email_verified = \"\"", "")] {
        let text = config(&upstream, &issuer_block("https://idp.test", &jwks_server.url(), &["ES256"]))
            .replace("[headers]\n", &format!("[headers]\n{setting}\n"));
        let gh = Gatehouse::start(&text).await;
        gh.wait_ready().await;
        let (_, _, echo) = get_with(&gh, "/app", Some(&token), &[("X-Mail-Ok", "spoofed")]).await;
        assert!(seen(&echo, "x-auth-email-verified").is_empty(), "{setting}: {echo}");
        if name.is_empty() {
            assert_eq!(seen(&echo, "x-mail-ok"), ["spoofed"], "off: not an identity header");
        } else {
            assert_eq!(seen(&echo, name), ["true"], "{setting}");
        }
    }
}

async fn the_log_never_holds_a_verification_token(backend: Backend) {
    let upstream = Upstream::start().await;
    let store = backend.fresh().await;
    let run = |mail: bool| {
        // More requests than the default per-IP quota, which on Postgres the store keeps
        // across the restart in between.
        let mut text = accounts_config(&upstream, &store, "[rate_limit]\nlogin_per_minute = 100")
            .replace("[log]\naccess = false", "[log]\nformat = \"json\"\nlevel = \"debug\"")
            + "[server]\nlisten = \"127.0.0.1:0\"\n";
        if !mail {
            text = text.lines().filter(|l| !l.starts_with("mail_outbox")).collect::<Vec<_>>().join("\n");
        }
        let path = store.dir.path().join(format!("gatehouse-{mail}.toml"));
        std::fs::write(&path, text).unwrap();
        async move {
            let child = spawn_gatehouse(&path, &[]).await;
            child.wait_ready().await;
            let base = child.url("");
            (child, base)
        }
    };
    async fn stop(child: GatehouseProcess) -> String {
        tokio::task::spawn_blocking(move || child.terminate()).await.unwrap().1
    }
    let c = client();
    let post = |base: &str, path: &str, body: Value, token: Option<String>| {
        let mut req = c.post(format!("{base}{path}")).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // With an outbox: register, resend, verify (also a replay); collect every token mailed.
    let (child, base) = run(true).await;
    let (status, reg) = post(&base, "/auth/register", json!({"email": "log@example.com", "password": PW}), None).await;
    assert_eq!(status, 201, "{reg}");
    let outbox = store.dir.path().join("outbox");
    wait_mail(&outbox, SUBJECT).await;
    let access = s(&reg, "access_token");
    assert_eq!(post(&base, "/auth/verify-email/resend", json!({}), Some(access)).await.0, 200);
    wait_mails(&outbox, SUBJECT, 2).await;
    let mails = mails_with(&outbox, SUBJECT);
    assert_eq!(mails.len(), 2);
    let tokens: Vec<String> =
        mails.iter().map(|m| m.lines().rev().find(|l| !l.is_empty()).unwrap().to_string()).collect();
    for t in &tokens {
        let _ = post(&base, "/auth/verify-email", json!({"token": t}), None).await;
        let _ = post(&base, "/auth/verify-email", json!({"token": t}), None).await;
    }
    let logs = stop(child).await;
    assert!(logs.contains("/auth/verify-email"), "the requests were logged at all:\n{logs}");
    for t in &tokens {
        assert!(t.len() >= 48);
        assert!(!logs.contains(&t[..24]) && !logs.contains(&t[t.len() - 24..]), "a verification token leaked:\n{logs}");
    }

    // Without mail delivery: nothing is sent, and the log says why (with no token to leak).
    let (mut child, base) = run(false).await;
    let (status, reg) =
        post(&base, "/auth/register", json!({"email": "nomail@example.com", "password": PW}), None).await;
    assert_eq!(status, 201, "{reg}");
    assert_eq!(post(&base, "/auth/verify-email/resend", json!({}), Some(s(&reg, "access_token"))).await.0, 200);
    // Both notices (registration, resend) are written before the server is stopped.
    child.wait_for_count("verification mail not sent: mail is not configured", 2).await;
    let logs = stop(child).await;
    let notices = logs.lines().filter(|l| l.contains("verification mail not sent: mail is not configured")).count();
    assert_eq!(notices, 2, "{logs}");
    assert!(!logs.contains("Confirm your email address"), "no mail body in the log:\n{logs}");
    assert_eq!(mails_with(&outbox, SUBJECT).len(), 2, "nothing new in the outbox");
}
