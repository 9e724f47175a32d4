//! The auth API end to end, every test on SQLite and on Postgres: accounts, sessions,
//! refresh rotation and reuse detection, logout, password reset, lockout, rate limits,
//! audit, bad input, and persistence across restarts.
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use gatehouse::store::{LoginOutcome, SqlStore, Store};
use serde_json::{Value, json};

on_both!(
    register_login_and_profile,
    bad_input_is_400_and_changes_nothing,
    one_registration_per_email_under_concurrency,
    taken_emails_and_usernames_are_named_conflicts,
    refresh_rotates_and_reuse_revokes_the_family,
    logout_revokes_token_and_session,
    lockout_after_failed_logins,
    login_is_rate_limited_per_ip,
    password_reset_flow,
    bcrypt_hashes_are_upgraded,
    restart_keeps_users_and_revocations,
    key_rotation_keeps_sessions_working,
    operators_create_users_from_the_cli,
    reset_mail_goes_out_by_smtp,
    lockout_is_time_bounded,
    replicas_starting_together_agree_on_secrets,
    parallel_guesses_from_many_addresses_never_outrun_the_lockout,
    change_password_is_rate_limited_and_locks_the_account,
    reset_tokens_never_reach_the_log,
    json_endpoints_need_a_json_content_type,
    profile_fields_stay_inside_profile,
);

struct Env {
    upstream: Upstream,
    store: TestStore,
    gh: Gatehouse,
}

async fn env(backend: Backend, extra: &str) -> Env {
    let upstream = Upstream::start().await;
    let store = backend.fresh().await;
    let gh = Gatehouse::start(&accounts_config(&upstream, &store, extra)).await;
    gh.wait_ready().await;
    Env { upstream, store, gh }
}

async fn register(gh: &Gatehouse, email: &str) -> Value {
    let (status, _, body) =
        post(gh, "/auth/register", &json!({"email": email, "password": PW, "name": "Test User"}), None).await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn register_login_and_profile(backend: Backend) {
    let e = env(backend, "").await;
    let body = register(&e.gh, "Alice@Example.com").await;
    for field in ["access_token", "refresh_token", "expires_in", "user"] {
        assert!(body.get(field).is_some(), "{field} in {body}");
    }
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["user"]["email"], "Alice@Example.com");
    assert!(body["user"].get("password_hash").is_none());
    let user_id = body["user"]["id"].as_str().unwrap().to_string();

    // The access token works on the proxy path, through the same verifier.
    let access = body["access_token"].as_str().unwrap();
    let (status, _, echo) = get(&e.gh, "/app", Some(access)).await;
    assert_eq!(status, 200);
    assert_eq!(seen(&echo, "x-auth-user-id"), [user_id.as_str()]);
    assert_eq!(seen(&echo, "x-auth-email"), ["Alice@Example.com"]);
    assert_eq!(seen(&echo, "x-auth-role"), ["user"]);

    // Login by email, any case; then set a username and log in with it.
    let (status, _, login) =
        post(&e.gh, "/auth/login", &json!({"email": "alice@EXAMPLE.com", "password": PW}), None).await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["user"]["id"], user_id.as_str());
    let access = login["access_token"].as_str().unwrap().to_string();
    let patch = json!({"username": "alice_w", "phone": "+44 20 7946 0000", "skills": ["rust", "sql"], "experience_years": 7, "full_name": "Alice W"});
    let resp = client().patch(e.gh.url("/auth/me")).bearer_auth(&access).json(&patch).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let me: Value = resp.json().await.unwrap();
    assert_eq!(me["username"], "alice_w");
    assert_eq!(me["name"], "Alice W");
    assert_eq!(me["skills"], json!(["rust", "sql"]));
    let (status, _, login) = post(&e.gh, "/auth/login", &json!({"username": "ALICE_W", "password": PW}), None).await;
    assert_eq!(status, 200, "{login}");
    let (status, _, me) = get(&e.gh, "/auth/me", Some(&access)).await;
    assert_eq!(status, 200);
    assert_eq!(me["phone"], "+44 20 7946 0000");
    assert_eq!(me["experience_years"], 7);
    assert!(me["last_login_at"].is_string());

    // Email, role and permissions are not self-service.
    let resp =
        client().patch(e.gh.url("/auth/me")).bearer_auth(&access).json(&json!({"role": "admin"})).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["code"], "validation_error");
    assert_eq!(get(&e.gh, "/auth/me", None).await.0, 401);

    // Wrong password and unknown account: the same answer.
    let (s1, _, b1) =
        post(&e.gh, "/auth/login", &json!({"email": "alice@example.com", "password": "nope nope"}), None).await;
    let (s2, _, b2) =
        post(&e.gh, "/auth/login", &json!({"email": "nobody@example.com", "password": "nope nope"}), None).await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(b1, b2);
    assert_eq!(b1["code"], "invalid_credentials");

    // Every attempt is audited with outcome and IP, never the password.
    let store = SqlStore::connect(&e.store.url).await.unwrap();
    let attempts = store.login_attempts("alice@example.com").await.unwrap();
    let outcomes: Vec<LoginOutcome> = attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [LoginOutcome::Success, LoginOutcome::WrongPassword]);
    assert!(attempts.iter().all(|a| a.client_ip == "127.0.0.1"));
    assert_eq!(store.login_attempts("nobody@example.com").await.unwrap()[0].outcome, LoginOutcome::UnknownAccount);
    let _ = e.upstream;
}

async fn bad_input_is_400_and_changes_nothing(backend: Backend) {
    let e = env(backend, "").await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "body"),
        (b"[]".to_vec(), "body"),
        (br#"{"password": "correct horse battery"}"#.to_vec(), "email"),
        (br#"{"email": "a@example.com"}"#.to_vec(), "password"),
        (br#"{"email": 42, "password": "correct horse battery"}"#.to_vec(), "email"),
        (br#"{"email": "not-an-email", "password": "correct horse battery"}"#.to_vec(), "email"),
        (br#"{"email": "a@example.com", "password": "short"}"#.to_vec(), "password"),
        (br#"{"email": "a@example.com", "password": "correct horse battery", "username": "a b"}"#.to_vec(), "username"),
        (b"{\"email\": \"a@example.com\", \"password\": \"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\"}".to_vec(), "body"),
        (
            {
                let mut big = br#"{"email": "a@example.com", "password": "correct horse battery", "name": ""#.to_vec();
                big.extend(std::iter::repeat_n(b'x', 70 * 1024));
                big.extend_from_slice(b"\"}");
                big
            },
            "body",
        ),
    ];
    for (body, field) in cases {
        let resp = client()
            .post(e.gh.url("/auth/register"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{}", String::from_utf8_lossy(&body[..body.len().min(80)]));
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["code"], "validation_error");
        assert!(err["message"].as_str().unwrap().starts_with(field), "{field}: {err}");
    }
    // Nothing was stored: the address is still free.
    register(&e.gh, "a@example.com").await;
    // A NUL in a login identifier is bad input, not a store error (Postgres refuses it).
    let (status, _, err) =
        post(&e.gh, "/auth/login", &json!({"email": "a\u{0}@example.com", "password": "correct horse battery"}), None)
            .await;
    assert_eq!((status, err["code"].as_str()), (400, Some("validation_error")), "{err}");
    // Other endpoints too.
    for path in ["/auth/login", "/auth/refresh", "/auth/forgot-password", "/auth/reset-password"] {
        let resp = client()
            .post(e.gh.url(path))
            .header("content-type", "application/json")
            .body("{\"x\":")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
    }
    let (status, _, body) = post(&e.gh, "/auth/nope", &json!({}), None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let resp = client().get(e.gh.url("/auth/login")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
}

async fn one_registration_per_email_under_concurrency(backend: Backend) {
    let e = env(backend, "[rate_limit]\nlogin_per_minute = 1000").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = e.gh.url("/auth/register");
        tasks.push(tokio::spawn(async move {
            client()
                .post(url)
                .json(&json!({"email": "race@example.com", "password": PW}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
}

/// Each unique field is told apart by its constraint (Postgres) or column (SQLite), in
/// any spelling the store normalises away; nothing is created by a refused registration.
async fn taken_emails_and_usernames_are_named_conflicts(backend: Backend) {
    let e = env(backend, "[rate_limit]\nlogin_per_minute = 1000").await;
    let first = json!({"email": "taken@example.com", "username": "taken_name", "password": PW});
    assert_eq!(post(&e.gh, "/auth/register", &first, None).await.0, 201);
    let cases = [
        ("same email", json!({"email": "taken@example.com", "password": PW}), "email"),
        ("email in capitals", json!({"email": "TAKEN@Example.com", "password": PW}), "email"),
        ("same username", json!({"email": "other@example.com", "username": "taken_name", "password": PW}), "username"),
        (
            "username in capitals",
            json!({"email": "o2@example.com", "username": "Taken_Name", "password": PW}),
            "username",
        ),
    ];
    for (name, body, field) in cases {
        let (status, _, answer) = post(&e.gh, "/auth/register", &body, None).await;
        assert_eq!(status, 409, "{name}: {answer}");
        assert_eq!(answer["code"], "conflict", "{name}: {answer}");
        assert_eq!(answer["message"], format!("{field} is already taken"), "{name}: {answer}");
    }
    for email in ["other@example.com", "o2@example.com"] {
        let (status, _, _) = post(&e.gh, "/auth/login", &json!({"email": email, "password": PW}), None).await;
        assert_eq!(status, 401, "{email} was not created");
    }
}

async fn refresh_rotates_and_reuse_revokes_the_family(backend: Backend) {
    let e = env(backend, "refresh_grace = \"1s\"").await;
    let first = register(&e.gh, "r@example.com").await;
    let r1 = first["refresh_token"].as_str().unwrap().to_string();

    let (status, _, second) = post(&e.gh, "/auth/refresh", &json!({"refresh_token": r1}), None).await;
    assert_eq!(status, 200, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2);
    assert!(second["access_token"].is_string() && second["user"]["email"] == "r@example.com");

    // Two tabs: the same parent again inside the grace window gets the same child.
    let (status, _, again) = post(&e.gh, "/auth/refresh", &json!({"refresh_token": r1}), None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["refresh_token"], r2.as_str());

    let (status, _, third) = post(&e.gh, "/auth/refresh", &json!({"refresh_token": r2}), None).await;
    assert_eq!(status, 200);
    let r3 = third["refresh_token"].as_str().unwrap().to_string();
    let access3 = third["access_token"].as_str().unwrap().to_string();
    assert_eq!(get(&e.gh, "/app", Some(&access3)).await.0, 200);

    // Past the grace window, reusing r1 is theft: the whole family dies.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _, err) = post(&e.gh, "/auth/refresh", &json!({"refresh_token": r1}), None).await;
    assert_eq!((status, err["code"].as_str()), (401, Some("invalid_token")));
    assert_eq!(
        post(&e.gh, "/auth/refresh", &json!({"refresh_token": r3}), None).await.0,
        401,
        "the newest token died too"
    );
    let (status, _, err) = get(&e.gh, "/app", Some(&access3)).await;
    assert_eq!((status, err["code"].as_str()), (401, Some("token_revoked")), "the family's access tokens too");

    for junk in ["", "grt_nope", "x".repeat(5000).as_str()] {
        assert_eq!(post(&e.gh, "/auth/refresh", &json!({"refresh_token": junk}), None).await.0, 401);
    }
}

async fn logout_revokes_token_and_session(backend: Backend) {
    let e = env(backend, "").await;
    let s = register(&e.gh, "l@example.com").await;
    let access = s["access_token"].as_str().unwrap();
    let refresh = s["refresh_token"].as_str().unwrap();
    // A second session of the same user survives the first one's logout.
    let (_, _, other) = post(&e.gh, "/auth/login", &json!({"email": "l@example.com", "password": PW}), None).await;

    let resp = client().post(e.gh.url("/auth/logout")).bearer_auth(access).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    let (status, _, err) = get(&e.gh, "/app", Some(access)).await;
    assert_eq!((status, err["code"].as_str()), (401, Some("token_revoked")));
    assert_eq!(get(&e.gh, "/auth/me", Some(access)).await.0, 401);
    assert_eq!(post(&e.gh, "/auth/refresh", &json!({"refresh_token": refresh}), None).await.0, 401);
    assert_eq!(get(&e.gh, "/app", Some(other["access_token"].as_str().unwrap())).await.0, 200);
    // `{}` body is fine; a second logout with the revoked token is 401.
    let (status, _, _) = post(&e.gh, "/auth/logout", &json!({}), Some(other["access_token"].as_str().unwrap())).await;
    assert_eq!(status, 204);
    assert_eq!(post(&e.gh, "/auth/logout", &json!({}), Some(access)).await.0, 401);
    assert_eq!(post(&e.gh, "/auth/logout", &json!({}), None).await.0, 401);
}

async fn lockout_after_failed_logins(backend: Backend) {
    let e = env(backend, "[rate_limit]\nlogin_per_minute = 1000\nlockout_after = 5\nlockout_minutes = 15").await;
    register(&e.gh, "lock@example.com").await;
    // Parallel wrong passwords: the count is atomic in the store.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = e.gh.url("/auth/login");
        tasks.push(tokio::spawn(async move {
            client()
                .post(url)
                .json(&json!({"email": "lock@example.com", "password": "wrong wrong"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    // Now even the right password is refused, with the seed's code and a Retry-After.
    let (status, headers, err) =
        post(&e.gh, "/auth/login", &json!({"email": "lock@example.com", "password": PW}), None).await;
    assert_eq!((status, err["code"].as_str()), (401, Some("account_locked")), "{err}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 800 && retry <= 900);
    // Unknown accounts lock the same way, so a lock reveals nothing.
    for _ in 0..5 {
        post(&e.gh, "/auth/login", &json!({"email": "ghost@example.com", "password": "wrong wrong"}), None).await;
    }
    let (_, _, err) =
        post(&e.gh, "/auth/login", &json!({"email": "ghost@example.com", "password": "wrong wrong"}), None).await;
    assert_eq!(err["code"], "account_locked");
    let store = SqlStore::connect(&e.store.url).await.unwrap();
    let outcomes: Vec<_> = store.login_attempts("lock@example.com").await.unwrap().iter().map(|a| a.outcome).collect();
    // Five guesses were checked; the other three and the right password were refused unchecked.
    assert_eq!(outcomes.iter().filter(|o| **o == LoginOutcome::WrongPassword).count(), 5, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == LoginOutcome::Locked).count(), 4, "{outcomes:?}");
}

async fn login_is_rate_limited_per_ip(backend: Backend) {
    let e = env(backend, "[rate_limit]\nlogin_per_minute = 3").await;
    for _ in 0..3 {
        assert_eq!(
            post(&e.gh, "/auth/login", &json!({"email": "x@example.com", "password": "whatever1"}), None).await.0,
            401
        );
    }
    let (status, headers, err) =
        post(&e.gh, "/auth/login", &json!({"email": "x@example.com", "password": "whatever1"}), None).await;
    assert_eq!((status, err["code"].as_str()), (429, Some("rate_limited")));
    assert!(headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // Register and forgot-password share the per-IP budget.
    assert_eq!(post(&e.gh, "/auth/register", &json!({"email": "y@example.com", "password": PW}), None).await.0, 429);
    let store = SqlStore::connect(&e.store.url).await.unwrap();
    let last = store.login_attempts("x@example.com").await.unwrap().pop().unwrap();
    assert_eq!(last.outcome, LoginOutcome::RateLimited);
}

async fn password_reset_flow(backend: Backend) {
    let e = env(backend, "[rate_limit]\nlogin_per_minute = 100").await;
    let s = register(&e.gh, "reset@example.com").await;
    let old_access = s["access_token"].as_str().unwrap().to_string();
    let old_refresh = s["refresh_token"].as_str().unwrap().to_string();

    let (s1, _, b1) = post(&e.gh, "/auth/forgot-password", &json!({"email": "reset@example.com"}), None).await;
    let (s2, _, b2) = post(&e.gh, "/auth/forgot-password", &json!({"email": "nobody@example.com"}), None).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(b1, b2, "same answer whether or not the account exists");

    let outbox = e.store.dir.path().join("outbox");
    let mail = wait_mail(&outbox, "Subject: Reset your password").await;
    assert!(mail.contains("To: reset@example.com"), "{mail}");
    assert_eq!(mails_with(&outbox, "Subject: Reset your password").len(), 1, "nothing is sent for unknown emails");
    let token = mail.lines().rev().find(|l| !l.trim().is_empty()).unwrap().trim().to_string();
    assert!(token.len() >= 48 && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{token}");

    let (status, _, err) =
        post(&e.gh, "/auth/reset-password", &json!({"token": token, "new_password": "short"}), None).await;
    assert_eq!((status, err["code"].as_str()), (400, Some("validation_error")));
    let (status, _, body) =
        post(&e.gh, "/auth/reset-password", &json!({"token": token, "new_password": "a brand new passphrase"}), None)
            .await;
    assert_eq!(status, 200, "{body}");
    // Single use.
    let (status, _, _) =
        post(&e.gh, "/auth/reset-password", &json!({"token": token, "new_password": "another new passphrase"}), None)
            .await;
    assert_eq!(status, 400);
    // Every session ended; old password dead, new one works.
    assert_eq!(get(&e.gh, "/app", Some(&old_access)).await.0, 401);
    assert_eq!(post(&e.gh, "/auth/refresh", &json!({"refresh_token": old_refresh}), None).await.0, 401);
    assert_eq!(post(&e.gh, "/auth/login", &json!({"email": "reset@example.com", "password": PW}), None).await.0, 401);
    let (status, _, fresh) =
        post(&e.gh, "/auth/login", &json!({"email": "reset@example.com", "password": "a brand new passphrase"}), None)
            .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&e.gh, "/app", Some(fresh["access_token"].as_str().unwrap())).await.0, 200);
    let (status, _, _) = post(
        &e.gh,
        "/auth/reset-password",
        &json!({"token": "x".repeat(48), "new_password": "whatever whatever"}),
        None,
    )
    .await;
    assert_eq!(status, 400);
}

async fn bcrypt_hashes_are_upgraded(backend: Backend) {
    let e = env(backend, "").await;
    let store = SqlStore::connect(&e.store.url).await.unwrap();
    let legacy = bcrypt::hash("imported password", 6).unwrap();
    let user = store
        .create_user(gatehouse::store::NewUser {
            id: "legacy-1".into(),
            email: "old@example.com".into(),
            password_hash: legacy,
            role: "editor".into(),
            permissions: vec!["posts:write".into()],
            now: now() as i64,
            ..Default::default()
        })
        .await
        .unwrap();
    let (status, _, body) =
        post(&e.gh, "/auth/login", &json!({"email": "old@example.com", "password": "imported password"}), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["permissions"], json!(["posts:write"]));
    let upgraded = store.user_by_id(&user.id).await.unwrap().unwrap().password_hash.unwrap();
    assert!(upgraded.starts_with("$argon2id$"), "{upgraded}");
    assert_eq!(
        post(&e.gh, "/auth/login", &json!({"email": "old@example.com", "password": "imported password"}), None).await.0,
        200
    );
}

async fn restart_keeps_users_and_revocations(backend: Backend) {
    let e = env(backend, "").await;
    let s = register(&e.gh, "keep@example.com").await;
    let revoked = s["access_token"].as_str().unwrap().to_string();
    let (_, _, kept) = post(&e.gh, "/auth/login", &json!({"email": "keep@example.com", "password": PW}), None).await;
    assert_eq!(post(&e.gh, "/auth/logout", &json!({}), Some(&revoked)).await.0, 204);
    e.gh.stop().await.unwrap();

    let gh = Gatehouse::start(&accounts_config(&e.upstream, &e.store, "")).await;
    gh.wait_ready().await;
    // Same signing key (from the store), same users, same revocations.
    assert_eq!(get(&gh, "/app", Some(kept["access_token"].as_str().unwrap())).await.0, 200);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(get(&gh, "/app", Some(&revoked)).await.0, 401);
    assert_eq!(post(&gh, "/auth/login", &json!({"email": "keep@example.com", "password": PW}), None).await.0, 200);
}

/// Runs the built binary against the test's store.
fn cli(env: &Env, args: &[&str], stdin: &str) -> std::process::Output {
    run_cli(&accounts_config(&env.upstream, &env.store, ""), env.store.dir.path(), args, stdin)
}

fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["kid"].as_str().unwrap().to_string()
}

async fn key_rotation_keeps_sessions_working(backend: Backend) {
    let e = env(backend, "").await;
    let before = register(&e.gh, "rot@example.com").await;
    let old_access = before["access_token"].as_str().unwrap().to_string();
    let (_, _, jwks) = get(&e.gh, "/.well-known/jwks.json", None).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);

    let out = cli(&e, &["keys", "rotate", "--activate-in", "1s"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tokio::time::sleep(Duration::from_millis(1600)).await;

    let (_, _, jwks) = get(&e.gh, "/.well-known/jwks.json", None).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "the old key stays published: {jwks}");
    let (status, _, after) =
        post(&e.gh, "/auth/login", &json!({"email": "rot@example.com", "password": PW}), None).await;
    assert_eq!(status, 200);
    let new_access = after["access_token"].as_str().unwrap();
    assert_ne!(kid_of(new_access), kid_of(&old_access), "the new key signs");
    assert_eq!(get(&e.gh, "/app", Some(new_access)).await.0, 200);
    assert_eq!(get(&e.gh, "/app", Some(&old_access)).await.0, 200, "tokens of the old key still verify");
    // A refresh token from before the rotation still refreshes.
    let (status, _, _) = post(&e.gh, "/auth/refresh", &json!({"refresh_token": before["refresh_token"]}), None).await;
    assert_eq!(status, 200);
}

async fn operators_create_users_from_the_cli(backend: Backend) {
    let e = env(backend, "").await;
    let out = cli(
        &e,
        &["user", "create", "--email", "ops@example.com", "--role", "admin", "--permissions", "admin,read"],
        "an operator passphrase\n",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("passphrase"));
    let (status, _, session) =
        post(&e.gh, "/auth/login", &json!({"email": "ops@example.com", "password": "an operator passphrase"}), None)
            .await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user"]["role"], "admin");
    let (status, _, echo) = get(&e.gh, "/admin/panel", Some(session["access_token"].as_str().unwrap())).await;
    assert_eq!(status, 200);
    assert_eq!(seen(&echo, "x-auth-permissions"), ["admin,read"]);
    // Weak passwords and taken emails are refused, naming the problem.
    let out = cli(&e, &["user", "create", "--email", "ops2@example.com"], "short\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));
    let out = cli(&e, &["user", "create", "--email", "OPS@example.com"], "another passphrase\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("taken"), "{}", String::from_utf8_lossy(&out.stderr));
}

async fn reset_mail_goes_out_by_smtp(backend: Backend) {
    use std::io::BufRead;
    let maildir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/smtp_sink.py");
    // Port 0: the sink binds any free port and says which.
    let mut sink = std::process::Command::new("python3")
        .args([script, "0"])
        .arg(maildir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with aiosmtpd (tests/interop/requirements.txt)");
    let stdout = sink.stdout.take().unwrap();
    // Stopped however the test ends.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _sink = Stop(sink);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the SMTP sink did not start (pip install aiosmtpd): {line:?}"));

    let extra = format!(
        "reset_url = \"https://app.example.com/reset\"\n[smtp]\nurl = \"smtp://127.0.0.1:{port}\"\nfrom = \"Gatehouse <no-reply@example.com>\"\n"
    );
    let e = env(backend, &extra).await;
    register(&e.gh, "mail@example.com").await;
    assert_eq!(post(&e.gh, "/auth/forgot-password", &json!({"email": "mail@example.com"}), None).await.0, 200);
    let mail = wait_mail(maildir.path(), "Subject: Reset your password").await;
    assert!(mail.contains("X-Envelope-To: mail@example.com"), "{mail}");
    assert!(mail.contains("From: Gatehouse <no-reply@example.com>"), "{mail}");
    let link = mail.lines().find(|l| l.starts_with("https://app.example.com/reset?token=")).expect("a reset link");
    let token = link.split("token=").nth(1).unwrap().trim();
    let (status, _, _) =
        post(&e.gh, "/auth/reset-password", &json!({"token": token, "new_password": "mailed new passphrase"}), None)
            .await;
    assert_eq!(status, 200);
    assert!(e.store.dir.path().join("outbox").read_dir().is_err(), "SMTP, not the outbox, delivered it");
}

async fn lockout_is_time_bounded(backend: Backend) {
    // Straight at the store, with synthetic clocks: past 3 attempts the key locks for 900 s,
    // the lock ends by itself, and counting starts afresh after it.
    let ts = backend.fresh().await;
    let store = SqlStore::connect(&ts.url).await.unwrap();
    let t0 = 1_000_000;
    // Reservations (what logins use): three attempts are granted, the fourth locks; a lock
    // is not extended by attempts during it, ends by itself, and then counting starts afresh.
    for i in 0..3 {
        assert_eq!(store.reserve_attempt("user:r", t0 + i, 3, 900).await.unwrap(), None, "attempt {i}");
    }
    assert_eq!(store.reserve_attempt("user:r", t0 + 3, 3, 900).await.unwrap(), Some(t0 + 903));
    assert_eq!(store.reserve_attempt("user:r", t0 + 500, 3, 900).await.unwrap(), Some(t0 + 903));
    assert_eq!(store.locked_until("user:r", t0 + 500).await.unwrap(), Some(t0 + 903));
    for i in 0..3 {
        assert_eq!(store.reserve_attempt("user:r", t0 + 904 + i, 3, 900).await.unwrap(), None, "after the lock {i}");
    }
    assert!(store.reserve_attempt("user:r", t0 + 910, 3, 900).await.unwrap().is_some());
    // A success (clear) gives the whole budget back; a streak older than a lock period is forgotten.
    store.clear_failures("user:r").await.unwrap();
    for i in 0..3 {
        assert_eq!(store.reserve_attempt("user:r", t0 + 2000 + i, 3, 900).await.unwrap(), None);
    }
    assert_eq!(store.reserve_attempt("user:r", t0 + 5000, 3, 900).await.unwrap(), None, "an old streak");
}

async fn replicas_starting_together_agree_on_secrets(backend: Backend) {
    // Eight "replicas" ask a fresh store for the same internal secret at once: the first
    // insert wins, the others read it; none fails (a failure here stops a replica starting).
    let ts = backend.fresh().await;
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(SqlStore::connect(&ts.url).await.unwrap());
    }
    for round in 0..5 {
        let name = format!("internal:test-secret-{round}");
        let asks = stores.iter().map(|s| gatehouse::auth::own_keys::stored_secret(s, &name));
        let secrets: Vec<[u8; 32]> =
            futures::future::join_all(asks).await.into_iter().map(|r| r.expect("every replica gets it")).collect();
        assert!(secrets.windows(2).all(|w| w[0] == w[1]), "replicas disagree in round {round}");
    }
}

const FROM_MANY_ADDRESSES: &str = "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n";

async fn parallel_guesses_from_many_addresses_never_outrun_the_lockout(backend: Backend) {
    // A tight per-IP limit that the attacker sidesteps with one address per guess: only the
    // account lockout stands in the way, and the email and the username share its counter.
    let extra =
        format!("{FROM_MANY_ADDRESSES}[rate_limit]\nlogin_per_minute = 2\nlockout_after = 5\nlockout_minutes = 15");
    let e = env(backend, &extra).await;
    let (status, _, body) = post_from(
        &e.gh,
        "/auth/register",
        &json!({"email": "target@example.com", "username": "target", "password": PW}),
        None,
        "10.8.0.1",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let guesses = (0..40).map(|i| {
        let gh = &e.gh;
        let who = if i % 2 == 0 { json!({"email": "target@example.com"}) } else { json!({"username": "TARGET"}) };
        async move {
            let mut body = who;
            body["password"] = json!(format!("wrong guess {i}"));
            let (status, _, body) =
                post_from(gh, "/auth/login", &body, None, &format!("10.9.{}.{}", i / 200, i % 200 + 1)).await;
            (status, body)
        }
    });
    let answers = futures::future::join_all(guesses).await;
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for (status, body) in &answers {
        assert_eq!(*status, 401, "{body}");
        *codes.entry(body["code"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert!(!codes.contains_key("rate_limited"), "the per-IP limit must not be what stops them: {codes:?}");
    let evaluated = codes.get("invalid_credentials").copied().unwrap_or(0);
    assert!((1..=5).contains(&evaluated), "{evaluated} guesses were checked with lockout_after = 5: {codes:?}");

    // The right password, from yet another address, by email and by username: locked.
    for who in [json!({"email": "target@example.com", "password": PW}), json!({"username": "target", "password": PW})] {
        let (status, _, body) = post_from(&e.gh, "/auth/login", &who, None, "10.7.0.1").await;
        assert_eq!((status, body["code"].as_str()), (401, Some("account_locked")), "{who}: {body}");
    }
    // The audit agrees: no more than five wrong passwords were ever checked.
    let store = SqlStore::connect(&e.store.url).await.unwrap();
    let mut checked = 0;
    for identifier in ["target@example.com", "target"] {
        let attempts = store.login_attempts(identifier).await.unwrap();
        checked += attempts.iter().filter(|a| a.outcome == LoginOutcome::WrongPassword).count();
        assert!(attempts.iter().all(|a| a.outcome != LoginOutcome::Success));
    }
    assert_eq!(checked, evaluated);
}

async fn change_password_is_rate_limited_and_locks_the_account(backend: Backend) {
    let change = |current: &str| json!({"current_password": current, "new_password": "a brand new passphrase"});

    // The login's per-IP budget (register used one of the three).
    let e = env(backend, &format!("{FROM_MANY_ADDRESSES}[rate_limit]\nlogin_per_minute = 3")).await;
    let (_, _, s) =
        post_from(&e.gh, "/auth/register", &json!({"email": "cp@example.com", "password": PW}), None, "10.1.0.1").await;
    let access = s["access_token"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let (status, _, body) =
            post_from(&e.gh, "/auth/change-password", &change("wrong wrong"), Some(&access), "10.1.0.1").await;
        assert_eq!((status, body["code"].as_str()), (400, Some("validation_error")), "{body}");
    }
    let (status, _, body) = post_from(&e.gh, "/auth/change-password", &change(PW), Some(&access), "10.1.0.1").await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")), "{body}");
    drop(e);

    // The account's lockout, shared with login: parallel guesses from many addresses get at
    // most `lockout_after` checks, then even the right password is refused, here and at login.
    let extra =
        format!("{FROM_MANY_ADDRESSES}[rate_limit]\nlogin_per_minute = 2\nlockout_after = 3\nlockout_minutes = 15");
    let e = env(backend, &extra).await;
    let (_, _, s) =
        post_from(&e.gh, "/auth/register", &json!({"email": "cp@example.com", "password": PW}), None, "10.2.0.1").await;
    let access = s["access_token"].as_str().unwrap().to_string();
    // A right password clears the count: two wrong, one right, then the budget is whole again.
    for (i, current) in ["wrong one", "wrong two"].into_iter().enumerate() {
        let (status, _, _) =
            post_from(&e.gh, "/auth/change-password", &change(current), Some(&access), &format!("10.3.0.{i}")).await;
        assert_eq!(status, 400);
    }
    let (status, _, body) =
        post_from(&e.gh, "/auth/login", &json!({"email": "cp@example.com", "password": PW}), None, "10.3.1.1").await;
    assert_eq!(status, 200, "{body}");
    let guesses = (0..20).map(|i| {
        let (gh, access) = (&e.gh, &access);
        async move {
            let (status, _, body) = post_from(
                gh,
                "/auth/change-password",
                &change(&format!("guess {i}")),
                Some(access),
                &format!("10.4.0.{}", i + 1),
            )
            .await;
            (status, body)
        }
    });
    let answers = futures::future::join_all(guesses).await;
    let checked = answers.iter().filter(|(status, _)| *status == 400).count();
    assert!((1..=3).contains(&checked), "{checked} current-password guesses checked: {answers:?}");
    for (status, body) in &answers {
        assert!(*status == 400 || (*status == 401 && body["code"] == "account_locked"), "{status} {body}");
    }
    let (status, headers, body) =
        post_from(&e.gh, "/auth/change-password", &change(PW), Some(&access), "10.5.0.1").await;
    assert_eq!((status, body["code"].as_str()), (401, Some("account_locked")), "{body}");
    assert!(headers.contains_key("retry-after"));
    let (status, _, body) =
        post_from(&e.gh, "/auth/login", &json!({"email": "cp@example.com", "password": PW}), None, "10.5.0.2").await;
    assert_eq!((status, body["code"].as_str()), (401, Some("account_locked")), "{body}");
    // The password did not change.
    let (status, _, body) = post_from(
        &e.gh,
        "/auth/login",
        &json!({"email": "cp@example.com", "password": "a brand new passphrase"}),
        None,
        "10.5.0.3",
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("account_locked")), "{body}");
}

async fn reset_tokens_never_reach_the_log(backend: Backend) {
    // The real binary, no mail delivery configured, logging everything as JSON at debug level.
    let upstream = Upstream::start().await;
    let store = backend.fresh().await;
    let outbox = format!("mail_outbox = \"{}\"", store.dir.path().join("outbox").display());
    let config = accounts_config(&upstream, &store, "reset_url = \"https://app.example.com/reset\"")
        .replace(&outbox, "")
        .replace("[log]\naccess = false", "[log]\nlevel = \"debug\"\nformat = \"json\"")
        + "[server]\nlisten = \"127.0.0.1:0\"\n";
    let path = store.dir.path().join("gatehouse.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = spawn_gatehouse(&path, &[]).await;
    child.wait_ready().await;
    let base = child.url("");
    let c = client();
    let r = c
        .post(format!("{base}/auth/register"))
        .json(&json!({"email": "quiet@example.com", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .post(format!("{base}/auth/forgot-password"))
        .json(&json!({"email": "quiet@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A reset token was made (its digest is stored), so there was a secret to leak.
    let db = SqlStore::connect(&store.url).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let made = loop {
        use sqlx::Row;
        let made: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM password_resets").fetch_one(db.pool()).await.unwrap().get("n");
        if made > 0 || std::time::Instant::now() > deadline {
            break made;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(made, 1);
    // The mail would have gone out once the server says it could not: everything it would
    // log about this reset is in by then.
    child
        .wait_for("the reset mail's not-sent notice", |line| {
            (line.contains("mail is not configured") && line.contains("Reset your password")).then(String::new)
        })
        .await;
    let (_, logs) = tokio::task::spawn_blocking(move || child.terminate()).await.unwrap();

    assert!(logs.contains("mail is not configured") && logs.contains("Reset your password"), "{logs}");
    for leak in ["token=", "app.example.com/reset", "Use this link"] {
        assert!(!logs.contains(leak), "`{leak}` in the logs:\n{logs}");
    }
    // Nothing shaped like a reset token (48 URL-safe characters) appears anywhere.
    let longest =
        logs.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).map(str::len).max().unwrap_or(0);
    assert!(longest < 48, "a token-like string is in the logs:\n{logs}");
    let _ = upstream;
}

async fn json_endpoints_need_a_json_content_type(backend: Backend) {
    let e = env(backend, "[rate_limit]\nlogin_per_minute = 1000").await;
    let s = register(&e.gh, "ct@example.com").await;
    let access = s["access_token"].as_str().unwrap().to_string();
    let refresh = s["refresh_token"].as_str().unwrap().to_string();
    // Bodies that would succeed as JSON, each with the token it needs.
    let endpoints: Vec<(&str, &str, Value, bool)> = vec![
        ("POST", "/auth/register", json!({"email": "csrf@example.com", "password": PW}), false),
        ("POST", "/auth/login", json!({"email": "ct@example.com", "password": PW}), false),
        ("POST", "/auth/refresh", json!({"refresh_token": refresh}), false),
        ("POST", "/auth/forgot-password", json!({"email": "ct@example.com"}), false),
        ("POST", "/auth/reset-password", json!({"token": "x".repeat(48), "new_password": "whatever whatever"}), false),
        ("POST", "/auth/change-password", json!({"current_password": PW, "new_password": "changed by a page"}), true),
        ("PATCH", "/auth/me", json!({"name": "Changed By A Page"}), true),
        ("POST", "/auth/api-keys", json!({"name": "planted"}), true),
        ("POST", "/auth/tokens", json!({"name": "planted"}), true),
    ];
    // What a cross-site form or fetch can send without a CORS preflight, and no type at all.
    let refused = [
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=xyz"),
        Some("application/jsonp"),
        None,
    ];
    for (method, path, body, bearer) in &endpoints {
        for content_type in refused {
            let mut req = client().request(method.parse().unwrap(), e.gh.url(path)).body(body.to_string());
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            if *bearer {
                req = req.bearer_auth(&access);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let err: Value = resp.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 415, "{method} {path} with {content_type:?}: {err}");
            assert_eq!(err["error"], "unsupported_media_type", "{err}");
            assert_eq!(err["code"], "unsupported_media_type", "{err}");
            assert!(err["message"].as_str().is_some_and(|m| m.contains("JSON")), "{err}");
        }
    }
    // Nothing happened: no account, the old password and profile, no keys, the session lives.
    assert_eq!(post(&e.gh, "/auth/login", &json!({"email": "ct@example.com", "password": PW}), None).await.0, 200);
    let (_, _, me) = get(&e.gh, "/auth/me", Some(&access)).await;
    assert_eq!(me["name"], "Test User");
    assert_eq!(get(&e.gh, "/auth/api-keys", Some(&access)).await.2, json!([]));
    assert_eq!(post(&e.gh, "/auth/refresh", &json!({"refresh_token": refresh}), None).await.0, 200);

    // JSON by any of its names is accepted.
    for (i, ct) in
        ["application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json"].iter().enumerate()
    {
        let body = json!({"email": format!("ok{i}@example.com"), "password": PW});
        let resp = client()
            .post(e.gh.url("/auth/register"))
            .header("content-type", *ct)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{ct}");
    }
    // Logout keeps taking an empty body without a type; the token endpoint keeps its form.
    let resp = client().post(e.gh.url("/auth/logout")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    let resp = client()
        .post(e.gh.url("/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=gc_nope&client_secret=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_client");
}

async fn profile_fields_stay_inside_profile(backend: Backend) {
    let e = env(backend, "").await;
    let sneaky = json!({"is_admin": true, "role": "admin", "permissions": ["admin"], "email_verified": true});
    let (status, _, reg) =
        post(&e.gh, "/auth/register", &json!({"email": "nest@example.com", "password": PW, "profile": sneaky}), None)
            .await;
    assert_eq!(status, 201, "{reg}");
    let access = reg["access_token"].as_str().unwrap().to_string();
    let patch = json!({"profile": {"is_admin": true, "team_id": "t-1", "theme": "dark"}, "skills": ["rust"]});
    let resp = client().patch(e.gh.url("/auth/me")).bearer_auth(&access).json(&patch).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let patched: Value = resp.json().await.unwrap();
    let (_, _, login) = post(&e.gh, "/auth/login", &json!({"email": "nest@example.com", "password": PW}), None).await;
    let (_, _, me) = get(&e.gh, "/auth/me", Some(&access)).await;
    let (_, _, refreshed) = post(&e.gh, "/auth/refresh", &json!({"refresh_token": login["refresh_token"]}), None).await;
    let users = [
        ("register", reg["user"].clone()),
        ("patch", patched),
        ("login", login["user"].clone()),
        ("me", me),
        ("refresh", refreshed["user"].clone()),
    ];
    for (what, user) in users {
        assert_eq!(user["email"], "nest@example.com", "{what}: {user}");
        assert!(user.get("is_admin").is_none() && user.get("theme").is_none(), "{what}: {user}");
        assert!(user.get("email_verified").is_none_or(|v| v == false), "{what}: {user}");
        assert_eq!(user["role"], "user", "{what}: {user}");
        assert_eq!(user["permissions"], json!([]), "{what}: {user}");
        assert_eq!(user["team_id"], Value::Null, "{what}: {user}");
        if what != "register" {
            assert_eq!(user["profile"]["is_admin"], true, "{what}: {user}");
            assert_eq!(user["profile"]["theme"], "dark", "{what}: {user}");
            assert_eq!(user["skills"], json!(["rust"]), "{what}: {user}");
        } else {
            assert_eq!(user["profile"]["role"], "admin", "{what}: {user}");
        }
    }
    // The proxy sees the real role too.
    let (_, _, echo) = get(&e.gh, "/app", Some(login["access_token"].as_str().unwrap())).await;
    assert_eq!(seen(&echo, "x-auth-role"), ["user"]);
}
