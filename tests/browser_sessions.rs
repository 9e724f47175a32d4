//! The store's browser sessions, on both backends: only the cookie's digest is kept, a
//! session is found while live and not after its end, its idle timestamp only moves forward,
//! and ending it (logout, a password change) is announced to every replica.
#![allow(clippy::disallowed_methods)]

#[macro_use]
mod common;

use std::sync::Arc;

use common::*;
use gatehouse::session::cookie;
use gatehouse::store::{NewBrowserSession, NewUser, Revocation, SqlStore, Store};

async fn user(store: &dyn Store, email: &str, now: i64) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    store
        .create_user(NewUser {
            id: id.clone(),
            email: email.into(),
            username: None,
            name: None,
            first_name: None,
            last_name: None,
            phone: None,
            profile: Default::default(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
            role: "user".into(),
            permissions: vec![],
            team_id: None,
            now,
        })
        .await
        .unwrap();
    id
}

fn session(user_id: &str, now: i64, ttl: i64) -> (String, NewBrowserSession) {
    let (value, digest) = cookie::new_value();
    let s = NewBrowserSession {
        id: uuid::Uuid::new_v4().to_string(),
        digest,
        user_id: user_id.into(),
        now,
        expires_at: now + ttl,
        ip: Some("203.0.113.9".into()),
        user_agent: Some("test".into()),
    };
    (value, s)
}

async fn sessions_live_until_their_end(backend: Backend) {
    let test_store = backend.fresh().await;
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect(&test_store.url).await.unwrap());
    let now = 1_800_000_000;
    let kim = user(store.as_ref(), "kim@example.com", now - 10).await;
    let (value, new) = session(&kim, now, 3600);
    store.create_browser_session(&new).await.unwrap();
    let digest = cookie::digest_of(&value).unwrap();

    let (found, who) = store.browser_session(&digest, now + 1).await.unwrap().expect("live");
    assert_eq!(
        (found.id.as_str(), found.user_id.as_str(), who.email.as_str()),
        (new.id.as_str(), kim.as_str(), "kim@example.com")
    );
    assert_eq!((found.created_at, found.expires_at, found.last_seen_at), (now, now + 3600, now));
    assert!(store.browser_session(&digest, now + 3600).await.unwrap().is_none(), "past its absolute end");
    assert!(store.browser_session(value.as_bytes(), now).await.unwrap().is_none(), "the cookie itself is not a key");

    store.touch_browser_session(&new.id, now + 600).await.unwrap();
    store.touch_browser_session(&new.id, now + 300).await.unwrap();
    let (found, _) = store.browser_session(&digest, now + 601).await.unwrap().unwrap();
    assert_eq!(found.last_seen_at, now + 600, "use is recorded and never moves back");

    let (_, cursor) = store.revocations_after(0, now).await.unwrap();
    assert!(store.end_browser_session(&new.id, now + 700).await.unwrap());
    assert!(!store.end_browser_session(&new.id, now + 701).await.unwrap(), "an ended session is not ended twice");
    assert!(store.browser_session(&digest, now + 702).await.unwrap().is_none(), "ended");
    let (events, _) = store.revocations_after(cursor, now + 800).await.unwrap();
    assert!(
        events.iter().any(
            |e| matches!(e, Revocation::Session { family_id, until } if *family_id == new.id && *until == now + 3600)
        ),
        "the end is announced to the other replicas: {events:?}"
    );
}

async fn a_password_change_ends_every_browser_session_of_the_user(backend: Backend) {
    let test_store = backend.fresh().await;
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect(&test_store.url).await.unwrap());
    let now = 1_800_000_000;
    let (kim, lee) =
        (user(store.as_ref(), "kim@example.com", now).await, user(store.as_ref(), "lee@example.com", now).await);
    let mut digests = Vec::new();
    for who in [&kim, &kim, &lee] {
        let (value, new) = session(who, now, 3600);
        store.create_browser_session(&new).await.unwrap();
        digests.push((cookie::digest_of(&value).unwrap(), new.id));
    }
    let ended = store.set_password(&kim, "$argon2id$new", now + 5, Some(900)).await.unwrap();
    for (digest, id) in &digests[..2] {
        assert!(store.browser_session(digest, now + 6).await.unwrap().is_none(), "kim's sessions ended");
        assert!(ended.contains(id), "{id} is among the ended sessions {ended:?}");
    }
    assert!(store.browser_session(&digests[2].0, now + 6).await.unwrap().is_some(), "lee's is untouched");
    assert!(!ended.contains(&digests[2].1));
}

on_both!(sessions_live_until_their_end, a_password_change_ends_every_browser_session_of_the_user);

/// A session cookie on the proxy path and at `/verify`: the app sees the user's identity
/// headers with `X-Auth-Method: session` and its own cookies, never the session cookie; a
/// forged, expired, idle or ended session is refused; the auth API does not take the cookie.
async fn the_cookie_is_a_credential_that_never_reaches_the_app(backend: Backend) {
    let upstream = Upstream::start().await;
    let store = backend.fresh().await;
    let text = accounts_config(&upstream, &store, "registration = true")
        .replace("[tokens]\n", "[session]\nidle_timeout = \"10m\"\n[tokens]\n");
    let gh = Gatehouse::start(&format!("[rate_limit]\nlogin_per_minute = 100\n{text}")).await;
    gh.wait_ready().await;
    let (status, _, body) =
        post(&gh, "/auth/register", &serde_json::json!({"email": "kim@example.com", "password": PW}), None).await;
    assert_eq!(status, 201, "{body}");
    let kim = body["user"]["id"].as_str().unwrap().to_string();
    let db: Arc<dyn Store> = Arc::new(SqlStore::connect(&store.url).await.unwrap());
    let now = now() as i64;
    let plant = |last_seen: i64, expires_at: i64| {
        let (db, kim) = (db.clone(), kim.clone());
        async move {
            let (value, mut new) = session(&kim, last_seen, 0);
            new.expires_at = expires_at;
            db.create_browser_session(&new).await.unwrap();
            (value, new.id)
        }
    };
    let (good, good_id) = plant(now, now + 3600).await;
    // Gatehouse is served over HTTPS here (tokens.issuer), so the cookie is __Host- prefixed.
    let cookie = |value: &str| format!("theme=dark; __Host-gatehouse_session={value}; lang=en");
    let get = |path: &'static str, value: String| {
        let url = gh.url(path);
        async move {
            let r = client().get(url).header("cookie", cookie(&value)).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };

    let (status, echo) = get("/orders", good.clone()).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(seen(&echo, "x-auth-user-id"), vec![kim.clone()]);
    assert_eq!(seen(&echo, "x-auth-method"), vec!["session"]);
    assert_eq!(seen(&echo, "x-auth-email"), vec!["kim@example.com"]);
    assert_eq!(seen(&echo, "cookie"), vec!["theme=dark; lang=en"], "the app's cookies pass, the session's does not");

    let r = client()
        .get(gh.url("/verify"))
        .header("cookie", cookie(&good))
        .header("x-original-method", "GET")
        .header("x-original-uri", "/orders")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-auth-user-id"], kim.as_str());

    let (idle, _) = plant(now - 601, now + 3600).await;
    let (over, _) = plant(now - 10, now - 1).await;
    let refused: &[(&str, String)] = &[
        ("a made-up value", "A".repeat(43)),
        ("a malformed value", "not-a-session".into()),
        ("an idle session", idle),
        ("a session past its end", over),
    ];
    for (what, value) in refused {
        let (status, body) = get("/orders", value.clone()).await;
        assert_eq!(status, 401, "{what}: {body}");
    }
    let (status, _) = get("/public/x", "A".repeat(43)).await;
    assert_eq!(status, 200, "a public route ignores a bad cookie");
    let (status, body) = get("/auth/me", good.clone()).await;
    assert_eq!(status, 401, "the auth API takes no cookie: {body}");

    // Ended elsewhere (another replica's logout): refused once the revocation is followed,
    // although this replica has it cached.
    assert!(db.end_browser_session(&good_id, now).await.unwrap());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while get("/orders", good.clone()).await.0 != 401 {
        assert!(tokio::time::Instant::now() < deadline, "the ended session kept working");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

on_both!(the_cookie_is_a_credential_that_never_reaches_the_app);

/// Only lookups that find nothing count against an address: many live sessions behind one
/// address (a NAT, an ingress) are never throttled, a flood of made-up cookies is.
async fn made_up_cookies_are_throttled_live_sessions_are_not(backend: Backend) {
    let upstream = Upstream::start().await;
    let store = backend.fresh().await;
    let text = accounts_config(&upstream, &store, "registration = true")
        .replace("[tokens]\n", "[session]\n[api_keys]\nlookups_per_minute = 3\n[tokens]\n");
    let gh = Gatehouse::start(&format!("[rate_limit]\nlogin_per_minute = 100\n{text}")).await;
    gh.wait_ready().await;
    let (_, _, body) =
        post(&gh, "/auth/register", &serde_json::json!({"email": "kim@example.com", "password": PW}), None).await;
    let kim = body["user"]["id"].as_str().unwrap().to_string();
    let db: Arc<dyn Store> = Arc::new(SqlStore::connect(&store.url).await.unwrap());
    let now = now() as i64;
    let status = |value: String| {
        let url = gh.url("/orders");
        async move {
            let r = client().get(url).header("cookie", format!("__Host-gatehouse_session={value}")).send().await;
            r.unwrap().status().as_u16()
        }
    };
    for _ in 0..6 {
        let (value, new) = session(&kim, now, 3600);
        db.create_browser_session(&new).await.unwrap();
        assert_eq!(status(value).await, 200, "live sessions are not throttled");
    }
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(status(format!("{i:0>43}")).await);
    }
    // The lookup that finds the quota used up is the last one (as for unknown API keys).
    assert_eq!(&statuses[..4], &[401, 401, 401, 401], "{statuses:?}");
    assert!(
        statuses[4..].iter().all(|s| *s == 429),
        "past the quota, made-up cookies are refused unlooked: {statuses:?}"
    );
}

on_both!(made_up_cookies_are_throttled_live_sessions_are_not);
