//! API keys and personal access tokens end to end, every test on SQLite and on Postgres:
//! the management API, the proxy and `/verify` accepting them, the cached lookup (counted
//! store operations prove a warm key makes no query), bad keys, floods, caps, expiry and
//! revocation.
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use gatehouse::store::SqlStore;
use serde_json::{Value, json};

on_both!(
    create_list_use_and_delete_an_api_key,
    pats_work_like_api_keys_with_their_own_prefix,
    scopes_are_a_subset_of_the_owners_permissions,
    pat_caps_follow_the_role,
    pat_cap_holds_under_concurrency,
    a_warm_key_makes_no_store_query,
    bad_keys_are_refused_without_a_lookup,
    a_flood_of_unknown_keys_is_absorbed,
    expired_keys_are_refused,
    many_valid_keys_behind_one_address_are_not_throttled,
    keys_never_outgrow_their_owner,
    a_password_reset_revokes_keys,
    forward_auth_accepts_keys,
    last_use_is_recorded_in_batches,
    key_management_needs_a_user_session,
    configured_prefixes_and_header,
    keys_carry_a_role_only_when_granted_and_held,
);

struct Env {
    upstream: Upstream,
    store: TestStore,
    gh: Gatehouse,
}

/// `accounts` lands inside `[accounts]`; `api_keys` inside `[api_keys]`.
async fn env(backend: Backend, accounts: &str, api_keys: &str) -> Env {
    let upstream = Upstream::start().await;
    let store = backend.fresh().await;
    let extra = format!(
        "default_permissions = [\"read\", \"write\"]\n{accounts}\n[rate_limit]\nlogin_per_minute = 1000\n\
         [api_keys]\n{api_keys}"
    );
    let gh = Gatehouse::start(&accounts_config(&upstream, &store, &extra)).await;
    gh.wait_ready().await;
    Env { upstream, store, gh }
}

/// Registers an account and returns its access token and id.
async fn user(gh: &Gatehouse, email: &str) -> (String, String) {
    let (status, _, body) = post(gh, "/auth/register", &json!({"email": email, "password": PW}), None).await;
    assert_eq!(status, 201, "{body}");
    (body["access_token"].as_str().unwrap().to_string(), body["user"]["id"].as_str().unwrap().to_string())
}

/// A request to the upstream with `X-API-KEY`; returns status, headers and body.
async fn with_key(gh: &Gatehouse, path: &str, key: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    get_with(gh, path, None, &[("X-API-KEY", key)]).await
}

/// Store operations run so far, by operation, from `/metrics`.
async fn store_ops(gh: &Gatehouse) -> BTreeMap<String, u64> {
    let text = client().get(gh.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("gatehouse_store_operations{op=\""))
        .map(|rest| {
            let (op, value) = rest.split_once("\"} ").unwrap();
            (op.to_string(), value.trim().parse().unwrap())
        })
        .collect()
}

/// Operations a request could have caused: everything but the background followers
/// (revocation events, key reloads) and the batched `last_used_at` writer.
fn request_ops(ops: &BTreeMap<String, u64>) -> u64 {
    ops.iter()
        .filter(|(op, _)| !["revocations_after", "signing_keys", "touch_api_keys"].contains(&op.as_str()))
        .map(|(_, n)| n)
        .sum()
}

fn lookups(ops: &BTreeMap<String, u64>) -> u64 {
    ops.get("api_key_by_lookup").copied().unwrap_or(0)
}

async fn create_list_use_and_delete_an_api_key(backend: Backend) {
    let e = env(backend, "", "").await;
    let (token, user_id) = user(&e.gh, "keys@example.com").await;

    let (status, created) = send_json(
        &e.gh,
        "POST",
        "/auth/api-keys",
        Some(&token),
        Some(json!({"name": "Production Server", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("gk_") && key.len() == 53, "{key}");
    assert_eq!(created["name"], "Production Server");
    assert_eq!(created["scopes"], json!(["read"]));
    assert_eq!(created["expires_at"], Value::Null);
    assert!(created["created_at"].is_string());
    assert_eq!(created["prefix"], &key[..9]);

    // Listed without the secret, anywhere in the document.
    let (status, list) = send_json(&e.gh, "GET", "/auth/api-keys", Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert!(list[0].get("key").is_none());
    assert!(!list.to_string().contains(&key[9..]), "the secret leaked into the list: {list}");

    // The key reaches the upstream as the user, with the key's scopes as permissions, and
    // neither the key nor a client-sent identity header is forwarded.
    let resp = client()
        .get(e.gh.url("/app/data"))
        .header("X-API-KEY", &key)
        .header("X-Auth-User-Id", "someone-else")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(seen(&echo, "x-auth-user-id"), vec![user_id.clone()]);
    assert_eq!(seen(&echo, "x-auth-method"), vec!["api_key"]);
    assert_eq!(seen(&echo, "x-auth-permissions"), vec!["read"]);
    assert_eq!(seen(&echo, "x-auth-email"), vec!["keys@example.com"]);
    assert!(seen(&echo, "x-api-key").is_empty(), "the key header was forwarded");

    // As a Bearer token too, recognised by its prefix; Authorization is not forwarded.
    let (status, _, echo) = get(&e.gh, "/app/data", Some(&key)).await;
    assert_eq!(status, 200);
    assert_eq!(seen(&echo, "x-auth-method"), vec!["api_key"]);
    assert!(seen(&echo, "authorization").is_empty());

    // A route needing `admin` is 403 for a key scoped to `read`.
    let (status, _, body) = with_key(&e.gh, "/admin/x", &key).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("insufficient_scope")));

    // Both credentials at once are ambiguous.
    let resp = client().get(e.gh.url("/app")).header("X-API-KEY", &key).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    // Deleted: refused at once on this replica, gone from the list; deleting again is 404.
    let (status, _) = send_json(&e.gh, "DELETE", &format!("/auth/api-keys/{id}"), Some(&token), None).await;
    assert_eq!(status, 204);
    let (status, headers, body) = with_key(&e.gh, "/app/data", &key).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("token_revoked")), "{body}");
    assert!(headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    let (_, list) = send_json(&e.gh, "GET", "/auth/api-keys", Some(&token), None).await;
    assert_eq!(list, json!([]));
    let (status, body) = send_json(&e.gh, "DELETE", &format!("/auth/api-keys/{id}"), Some(&token), None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));

    // Still refused after the cache entry would have expired (the store says revoked).
    let restarted = Gatehouse::start(&accounts_config(&e.upstream, &e.store, "")).await;
    restarted.wait_ready().await;
    let (status, _, body) = with_key(&restarted, "/app/data", &key).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("token_revoked")));
}

async fn pats_work_like_api_keys_with_their_own_prefix(backend: Backend) {
    let e = env(backend, "", "").await;
    let (token, user_id) = user(&e.gh, "pat@example.com").await;
    let (status, created) = send_json(
        &e.gh,
        "POST",
        "/auth/tokens",
        Some(&token),
        Some(json!({"name": "My Dev Machine", "expires_in_days": 90})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let pat = created["token"].as_str().unwrap().to_string();
    assert!(pat.starts_with("gpat_"), "{pat}");
    assert_eq!(created["token_id"], created["id"]);
    assert!(created["id"].as_str().unwrap().starts_with("tok_"));
    // Default scopes: all the owner's permissions.
    assert_eq!(created["scopes"], json!(["read", "write"]));
    let expires = created["expires_at"].as_str().unwrap();
    let in_90_days = time::OffsetDateTime::now_utc() + time::Duration::days(90);
    assert!(expires.starts_with(&in_90_days.date().to_string()), "{expires}");

    let (status, _, echo) = get(&e.gh, "/app", Some(&pat)).await;
    assert_eq!(status, 200);
    assert_eq!(seen(&echo, "x-auth-method"), vec!["pat"]);
    assert_eq!(seen(&echo, "x-auth-user-id"), vec![user_id]);
    assert_eq!(seen(&echo, "x-auth-permissions"), vec!["read,write"]);

    // PATs and API keys are listed and deleted apart.
    let (_, keys) = send_json(&e.gh, "GET", "/auth/api-keys", Some(&token), None).await;
    assert_eq!(keys, json!([]));
    let (_, pats) = send_json(&e.gh, "GET", "/auth/tokens", Some(&token), None).await;
    assert_eq!(pats.as_array().unwrap().len(), 1);
    let id = created["id"].as_str().unwrap();
    let (status, _) = send_json(&e.gh, "DELETE", &format!("/auth/api-keys/{id}"), Some(&token), None).await;
    assert_eq!(status, 404, "a PAT is not deleted through /api-keys");
    // Nor by another user.
    let (other, _) = user(&e.gh, "other@example.com").await;
    let (status, _) = send_json(&e.gh, "DELETE", &format!("/auth/tokens/{id}"), Some(&other), None).await;
    assert_eq!(status, 404);
    assert_eq!(get(&e.gh, "/app", Some(&pat)).await.0, 200);
    let (status, _) = send_json(&e.gh, "DELETE", &format!("/auth/tokens/{id}"), Some(&token), None).await;
    assert_eq!(status, 204);
    assert_eq!(get(&e.gh, "/app", Some(&pat)).await.0, 401);

    // Bad expiries change nothing.
    for days in [json!(0), json!(-1), json!(100_000), json!("ninety")] {
        let (status, body) =
            send_json(&e.gh, "POST", "/auth/tokens", Some(&token), Some(json!({"name": "x", "expires_in_days": days})))
                .await;
        assert_eq!((status, body["code"].as_str()), (400, Some("validation_error")), "{days}: {body}");
        assert_eq!(body["message"].as_str().unwrap().split(':').next(), Some("expires_in_days"), "{body}");
    }
    let (_, pats) = send_json(&e.gh, "GET", "/auth/tokens", Some(&token), None).await;
    assert_eq!(pats, json!([]));
}

async fn scopes_are_a_subset_of_the_owners_permissions(backend: Backend) {
    let e = env(backend, "", "").await;
    let (token, _) = user(&e.gh, "scopes@example.com").await;
    let (status, body) = send_json(
        &e.gh,
        "POST",
        "/auth/api-keys",
        Some(&token),
        Some(json!({"name": "k", "scopes": ["read", "admin"]})),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("insufficient_scope")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("admin"));
    for bad in [json!({"name": "", "scopes": []}), json!({"scopes": []}), json!({"name": "k", "scopes": ["a,b"]})] {
        let (status, body) = send_json(&e.gh, "POST", "/auth/api-keys", Some(&token), Some(bad.clone())).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("validation_error")), "{bad}: {body}");
    }
    let (status, body) =
        send_json(&e.gh, "POST", "/auth/api-keys", Some(&token), Some(json!({"name": "k", "scopes": [], "extra": 1})))
            .await;
    assert_eq!(status, 400, "{body}");
    let (_, list) = send_json(&e.gh, "GET", "/auth/api-keys", Some(&token), None).await;
    assert_eq!(list, json!([]), "failed creations stored nothing");

    // An empty scope list is allowed: the key proves who, not what.
    let (status, created) =
        send_json(&e.gh, "POST", "/auth/api-keys", Some(&token), Some(json!({"name": "who only", "scopes": []}))).await;
    assert_eq!(status, 201);
    let (status, _, echo) = with_key(&e.gh, "/app", created["key"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert!(seen(&echo, "x-auth-permissions").iter().all(String::is_empty), "{echo}");
}

async fn pat_caps_follow_the_role(backend: Backend) {
    let e = env(
        backend,
        "default_role = \"free\"",
        "pat_limits = { free = 0, starter = 1, pro = 3, lifetime = 5 }\nmax_api_keys = 2",
    )
    .await;
    let (token, user_id) = user(&e.gh, "tier@example.com").await;
    let (status, body) = send_json(&e.gh, "POST", "/auth/tokens", Some(&token), Some(json!({"name": "cli"}))).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("pat_limit_reached")), "{body}");

    let store = SqlStore::connect(&e.store.url).await.unwrap();
    sqlx::query("UPDATE users SET role = 'pro' WHERE id = $1").bind(&user_id).execute(store.pool()).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, body) =
            send_json(&e.gh, "POST", "/auth/tokens", Some(&token), Some(json!({"name": format!("t{i}")}))).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let (status, body) = send_json(&e.gh, "POST", "/auth/tokens", Some(&token), Some(json!({"name": "t3"}))).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("pat_limit_reached")));
    // Deleting one frees a place.
    assert_eq!(send_json(&e.gh, "DELETE", &format!("/auth/tokens/{}", ids[0]), Some(&token), None).await.0, 204);
    assert_eq!(send_json(&e.gh, "POST", "/auth/tokens", Some(&token), Some(json!({"name": "t4"}))).await.0, 201);

    // API keys have their own cap.
    for _ in 0..2 {
        assert_eq!(send_json(&e.gh, "POST", "/auth/api-keys", Some(&token), Some(json!({"name": "k"}))).await.0, 201);
    }
    let (status, body) = send_json(&e.gh, "POST", "/auth/api-keys", Some(&token), Some(json!({"name": "k"}))).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("api_key_limit_reached")));
}

async fn pat_cap_holds_under_concurrency(backend: Backend) {
    let e = env(backend, "", "max_pats = 3").await;
    let (token, _) = user(&e.gh, "race@example.com").await;
    let attempts =
        (0..12).map(|i| {
            let gh = &e.gh;
            let token = token.clone();
            async move {
                send_json(gh, "POST", "/auth/tokens", Some(&token), Some(json!({"name": format!("t{i}")}))).await.0
            }
        });
    let statuses = futures::future::join_all(attempts).await;
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 3, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 403), "{statuses:?}");
    let (_, pats) = send_json(&e.gh, "GET", "/auth/tokens", Some(&token), None).await;
    assert_eq!(pats.as_array().unwrap().len(), 3);
}

async fn a_warm_key_makes_no_store_query(backend: Backend) {
    let e = env(backend, "", "").await;
    let (token, _) = user(&e.gh, "warm@example.com").await;
    let (_, created) = send_json(&e.gh, "POST", "/auth/api-keys", Some(&token), Some(json!({"name": "hot"}))).await;
    let key = created["key"].as_str().unwrap().to_string();

    let before = store_ops(&e.gh).await;
    assert_eq!(with_key(&e.gh, "/app", &key).await.0, 200);
    let warm = store_ops(&e.gh).await;
    assert_eq!(lookups(&warm), lookups(&before) + 1, "the first use looks the key up once");

    // 10,000 requests with the warm key, 32 at a time: not one store query on their path.
    const REQUESTS: usize = 10_000;
    let c = client();
    let url = e.gh.url("/app/hot");
    let ok = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..32)
        .map(|w| {
            let (c, url, key, ok) = (c.clone(), url.clone(), key.clone(), ok.clone());
            tokio::spawn(async move {
                for _ in (w..REQUESTS).step_by(32) {
                    let r = c.get(&url).header("X-API-KEY", &key).send().await.unwrap();
                    if r.status() == 200 {
                        ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    r.bytes().await.unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(ok.load(std::sync::atomic::Ordering::Relaxed), REQUESTS);
    let after = store_ops(&e.gh).await;
    assert_eq!(lookups(&after), lookups(&warm), "a warm key was looked up again: {after:?}");
    assert_eq!(request_ops(&after), request_ops(&warm), "store operations on the request path: {after:?}");
    eprintln!(
        "{REQUESTS} requests with one warm key: {} key lookups, {} request-path store operations, \
         {} batched last-use writes",
        lookups(&after) - lookups(&warm),
        request_ops(&after) - request_ops(&warm),
        after.get("touch_api_keys").unwrap_or(&0) - warm.get("touch_api_keys").unwrap_or(&0),
    );
}

async fn bad_keys_are_refused_without_a_lookup(backend: Backend) {
    let e = env(backend, "", "").await;
    let (token, _) = user(&e.gh, "bad@example.com").await;
    let (_, created) = send_json(&e.gh, "POST", "/auth/api-keys", Some(&token), Some(json!({"name": "k"}))).await;
    let key = created["key"].as_str().unwrap().to_string();
    let flip = |i: usize| {
        let mut b = key.clone().into_bytes();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let bad = [
        flip(10),                                 // a typo in the random part: checksum fails
        flip(key.len() - 2),                      // a typo in the checksum
        key[..key.len() - 3].to_string(),         // truncated
        format!("{key}{}", "x".repeat(5000)),     // oversized
        key.replacen("gk_", "gz_", 1),            // another prefix, checksum no longer matches
        gatehouse::auth::api_key::generate("gz"), // well-formed, unknown prefix
        "gk_".to_string(),
        "gk_short_abc".to_string(),
        "gk_ünicode_ß".to_string(),
    ];
    let before = store_ops(&e.gh).await;
    for k in &bad {
        for via_header in [true, false] {
            let req = client().get(e.gh.url("/app"));
            let req = if via_header { req.header("X-API-KEY", k.as_str()) } else { req.bearer_auth(k) };
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 401, "{k}: {body}");
            assert_eq!(body["error"], "unauthorized");
            assert_eq!(body["code"], "invalid_token", "{k}");
            assert!(challenge.unwrap().contains("invalid_token"));
            assert!(!body.to_string().contains(&key[3..20]), "the error echoed the key");
        }
    }
    // A header value that is not even valid for reqwest's text API: raw bytes.
    let resp = client()
        .get(e.gh.url("/app"))
        .header("X-API-KEY", reqwest::header::HeaderValue::from_bytes(b"gk_\xff\xfe").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let after = store_ops(&e.gh).await;
    assert_eq!(request_ops(&after), request_ops(&before), "bad keys reached the store: {after:?}");
    // The real key still works.
    assert_eq!(with_key(&e.gh, "/app", &key).await.0, 200);
}

async fn a_flood_of_unknown_keys_is_absorbed(backend: Backend) {
    let e = env(backend, "", "lookups_per_minute = 20").await;
    let before = store_ops(&e.gh).await;
    let flood: Vec<String> = (0..200).map(|_| gatehouse::auth::api_key::generate("gk")).collect();
    let mut statuses = BTreeMap::<u16, usize>::new();
    let started = std::time::Instant::now();
    for k in &flood {
        let (status, headers, body) = with_key(&e.gh, "/app", k).await;
        *statuses.entry(status).or_default() += 1;
        match status {
            401 => assert_eq!(body["code"], "invalid_token"),
            429 => {
                assert_eq!(body["code"], "rate_limited");
                assert!(headers.contains_key("retry-after"));
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let elapsed = started.elapsed();
    let after = store_ops(&e.gh).await;
    let looked_up = lookups(&after) - lookups(&before);
    // 20 failures use up the minute's budget; the 21st lookup finds the address over it, and
    // from then on one more lookup per 3 s is allowed (a loaded machine takes longer).
    let allowed = 22 + elapsed.as_secs() / 3;
    assert!(looked_up <= allowed, "{looked_up} lookups for 200 unknown keys at 20 per minute in {elapsed:?}");
    assert_eq!(statuses.get(&401).copied().unwrap_or(0) as u64, looked_up, "{statuses:?}");

    // The keys that were looked up are remembered as unknown: asking again costs nothing.
    let again = store_ops(&e.gh).await;
    for k in &flood[..5] {
        assert_eq!(with_key(&e.gh, "/app", k).await.0, 401);
    }
    assert_eq!(lookups(&store_ops(&e.gh).await), lookups(&again));

    // Public routes stay open to the flooding client; it is simply anonymous there.
    assert_eq!(with_key(&e.gh, "/public/x", &flood[199]).await.0, 200);
}

async fn expired_keys_are_refused(backend: Backend) {
    let e = env(backend, "", "cache_ttl = \"1s\"\nnegative_cache_ttl = \"1s\"").await;
    let (token, _) = user(&e.gh, "expiry@example.com").await;
    let (_, created) =
        send_json(&e.gh, "POST", "/auth/api-keys", Some(&token), Some(json!({"name": "short", "expires_in_days": 1})))
            .await;
    let key = created["key"].as_str().unwrap().to_string();
    assert_eq!(with_key(&e.gh, "/app", &key).await.0, 200);
    let store = SqlStore::connect(&e.store.url).await.unwrap();
    let past = gatehouse::clock::now_secs() as i64 - 1;
    sqlx::query("UPDATE api_keys SET expires_at = $1 WHERE id = $2")
        .bind(past)
        .bind(created["id"].as_str().unwrap())
        .execute(store.pool())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (status, _, body) = with_key(&e.gh, "/app", &key).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("token_expired")), "{body}");
    let (_, list) = send_json(&e.gh, "GET", "/auth/api-keys", Some(&token), None).await;
    assert_eq!(list[0]["expired"], true);
}

async fn forward_auth_accepts_keys(backend: Backend) {
    let e = env(backend, "", "").await;
    let (token, user_id) = user(&e.gh, "verify@example.com").await;
    let (_, created) = send_json(&e.gh, "POST", "/auth/tokens", Some(&token), Some(json!({"name": "ci"}))).await;
    let pat = created["token"].as_str().unwrap();
    let resp = client()
        .get(e.gh.url("/verify"))
        .header("X-API-KEY", pat)
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Uri", "/app/x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-auth-method"], "pat");
    assert_eq!(resp.headers()["x-auth-user-id"], user_id.as_str());
    let resp = client()
        .get(e.gh.url("/verify"))
        .header("X-API-KEY", gatehouse::auth::api_key::generate("gpat"))
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Uri", "/app/x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["x-auth-error-code"], "invalid_token");
}

async fn last_use_is_recorded_in_batches(backend: Backend) {
    let e = env(backend, "", "last_used_interval = \"300ms\"").await;
    let (token, _) = user(&e.gh, "usage@example.com").await;
    let mut keys = Vec::new();
    for name in ["a", "b", "unused"] {
        let (_, created) = send_json(&e.gh, "POST", "/auth/api-keys", Some(&token), Some(json!({"name": name}))).await;
        keys.push(created["key"].as_str().unwrap().to_string());
    }
    let before = store_ops(&e.gh).await;
    let started = std::time::Instant::now();
    for _ in 0..50 {
        assert_eq!(with_key(&e.gh, "/app", &keys[0]).await.0, 200);
        assert_eq!(with_key(&e.gh, "/app", &keys[1]).await.0, 200);
    }
    // Until a batch has recorded both keys' use (20 s at most), then count the writes.
    let deadline = started + Duration::from_secs(20);
    let used = loop {
        let (_, list) = send_json(&e.gh, "GET", "/auth/api-keys", Some(&token), None).await;
        let used: BTreeMap<String, bool> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["name"].as_str().unwrap().to_string(), k["last_used_at"].is_string()))
            .collect();
        if (used["a"] && used["b"]) || std::time::Instant::now() > deadline {
            break used;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let after = store_ops(&e.gh).await;
    let elapsed = started.elapsed();
    let writes = after.get("touch_api_keys").unwrap_or(&0) - before.get("touch_api_keys").unwrap_or(&0);
    // One write per 300 ms interval at most (plus the one in progress), however long the
    // machine took: far fewer than the 100 uses.
    let allowed = 2 + (elapsed.as_millis() / 300) as u64;
    assert!((1..=allowed).contains(&writes), "{writes} batched writes for 100 uses in {elapsed:?} (at most {allowed})");
    assert!(writes < 100, "{writes} writes for 100 uses is not batching");
    let used: BTreeMap<&str, bool> = used.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(used, BTreeMap::from([("a", true), ("b", true), ("unused", false)]));

    // Uses since the last batch are written when Gatehouse stops, not lost.
    let slow =
        Gatehouse::start(&accounts_config(&e.upstream, &e.store, "[api_keys]\nlast_used_interval = \"1h\"")).await;
    slow.wait_ready().await;
    assert_eq!(with_key(&slow, "/app", &keys[2]).await.0, 200);
    slow.stop().await.unwrap();
    let (_, list) = send_json(&e.gh, "GET", "/auth/api-keys", Some(&token), None).await;
    let unused = list.as_array().unwrap().iter().find(|k| k["name"] == "unused").unwrap();
    assert!(unused["last_used_at"].is_string(), "the use before shutdown was lost: {list}");
}

async fn key_management_needs_a_user_session(backend: Backend) {
    let e = env(backend, "", "").await;
    let (token, _) = user(&e.gh, "session@example.com").await;
    let (_, created) = send_json(&e.gh, "POST", "/auth/tokens", Some(&token), Some(json!({"name": "ci"}))).await;
    let pat = created["token"].as_str().unwrap();
    // A PAT reads its owner's profile like a session does (seed 000)...
    let (status, me) = send_json(&e.gh, "GET", "/auth/me", Some(pat), None).await;
    assert_eq!((status, me["email"].as_str()), (200, Some("session@example.com")), "{me}");
    // ...but cannot change it, mint more credentials or list them.
    let (status, _) = send_json(&e.gh, "PATCH", "/auth/me", Some(pat), Some(json!({"name": "Mallory"}))).await;
    assert_eq!(status, 401);
    let (status, body) = send_json(&e.gh, "POST", "/auth/tokens", Some(pat), Some(json!({"name": "more"}))).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_token")), "{body}");
    assert_eq!(send_json(&e.gh, "GET", "/auth/api-keys", Some(pat), None).await.0, 401);
    let resp = client().get(e.gh.url("/auth/api-keys")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "missing_credentials");
}

async fn configured_prefixes_and_header(backend: Backend) {
    let e = env(backend, "", "prefix = \"sk_live\"\npat_prefix = \"hp_pat\"\nheader = \"X-Custom-Key\"").await;
    let (token, _) = user(&e.gh, "prefix@example.com").await;
    let (_, key) = send_json(&e.gh, "POST", "/auth/api-keys", Some(&token), Some(json!({"name": "k"}))).await;
    let (_, pat) = send_json(&e.gh, "POST", "/auth/tokens", Some(&token), Some(json!({"name": "p"}))).await;
    let key = key["key"].as_str().unwrap();
    let pat = pat["token"].as_str().unwrap();
    assert!(key.starts_with("sk_live_") && pat.starts_with("hp_pat_"), "{key} {pat}");
    let resp = client().get(e.gh.url("/app")).header("X-Custom-Key", key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert!(seen(&echo, "x-custom-key").is_empty());
    assert_eq!(seen(&echo, "x-auth-method"), vec!["api_key"]);
    assert_eq!(get(&e.gh, "/app", Some(pat)).await.0, 200);
    // The default header name means nothing here: no credential, so 401 missing_credentials.
    let (status, _, body) = with_key(&e.gh, "/app", key).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("missing_credentials")));
}

async fn many_valid_keys_behind_one_address_are_not_throttled(backend: Backend) {
    let e = env(backend, "", "lookups_per_minute = 3").await;
    let (token, _) = user(&e.gh, "nat@example.com").await;
    let mut keys = Vec::new();
    for i in 0..12 {
        let (_, created) =
            send_json(&e.gh, "POST", "/auth/api-keys", Some(&token), Some(json!({"name": format!("k{i}")}))).await;
        keys.push(created["key"].as_str().unwrap().to_string());
    }
    // Twelve first uses (twelve store lookups) from one address: none is throttled.
    for k in &keys {
        assert_eq!(with_key(&e.gh, "/app", k).await.0, 200);
    }
    // Failures are what count: three unknown keys use the budget up; then a fourth unknown key
    // is refused without a lookup, and so is an uncached valid key; cached keys still pass.
    for _ in 0..3 {
        assert_eq!(with_key(&e.gh, "/app", &gatehouse::auth::api_key::generate("gk")).await.0, 401);
    }
    let before = lookups(&store_ops(&e.gh).await);
    assert_eq!(with_key(&e.gh, "/app", &gatehouse::auth::api_key::generate("gk")).await.0, 401);
    let (status, headers, body) = with_key(&e.gh, "/app", &gatehouse::auth::api_key::generate("gk")).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")), "{body}");
    assert!(headers.contains_key("retry-after"));
    assert!(lookups(&store_ops(&e.gh).await) <= before + 1);
    assert_eq!(with_key(&e.gh, "/app", &keys[0]).await.0, 200, "a cached key is not throttled");
}

async fn keys_never_outgrow_their_owner(backend: Backend) {
    let e = env(backend, "", "cache_ttl = \"1s\"").await;
    let (token, user_id) = user(&e.gh, "demoted@example.com").await;
    let (_, created) = send_json(
        &e.gh,
        "POST",
        "/auth/tokens",
        Some(&token),
        Some(json!({"name": "ci", "scopes": ["read", "write", "role:user"]})),
    )
    .await;
    let pat = created["token"].as_str().unwrap().to_string();
    let (_, _, echo) = get(&e.gh, "/app", Some(&pat)).await;
    assert_eq!(seen(&echo, "x-auth-permissions"), vec!["read,write"]);
    assert_eq!(seen(&echo, "x-auth-role"), vec!["user"]);
    // An operator takes `write` away: the PAT loses it too, once its cache entry expires.
    let store = SqlStore::connect(&e.store.url).await.unwrap();
    sqlx::query("UPDATE users SET permissions = '[\"read\"]', role = 'guest' WHERE id = $1")
        .bind(&user_id)
        .execute(store.pool())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (status, _, echo) = get(&e.gh, "/app", Some(&pat)).await;
    assert_eq!(status, 200);
    assert_eq!(seen(&echo, "x-auth-permissions"), vec!["read"]);
    // Nor does it keep the role it was granted, or pick up the new one.
    assert!(seen(&echo, "x-auth-role").is_empty(), "{echo}");
}

async fn a_password_reset_revokes_keys(backend: Backend) {
    let e = env(backend, "", "").await;
    let (token, _) = user(&e.gh, "recover@example.com").await;
    let (_, key) = send_json(&e.gh, "POST", "/auth/api-keys", Some(&token), Some(json!({"name": "k"}))).await;
    let (_, pat) = send_json(&e.gh, "POST", "/auth/tokens", Some(&token), Some(json!({"name": "p"}))).await;
    let creds = [key["key"].as_str().unwrap().to_string(), pat["token"].as_str().unwrap().to_string()];
    // Changing the password (the current one known) keeps them.
    let (status, _, changed) = post(
        &e.gh,
        "/auth/change-password",
        &json!({"current_password": PW, "new_password": "another horse battery"}),
        Some(&token),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    for c in &creds {
        assert_eq!(get(&e.gh, "/app", Some(c)).await.0, 200);
    }
    // A reset (account recovery) revokes them.
    assert_eq!(post(&e.gh, "/auth/forgot-password", &json!({"email": "recover@example.com"}), None).await.0, 200);
    let mail = wait_mail(&e.store.dir.path().join("outbox"), "Subject: Reset your password").await;
    let reset = mail.lines().rev().find(|l| !l.trim().is_empty()).expect("a reset mail").trim().to_string();
    let (status, _, body) =
        post(&e.gh, "/auth/reset-password", &json!({"token": reset, "new_password": "a brand new passphrase"}), None)
            .await;
    assert_eq!(status, 200, "{body}");
    for c in &creds {
        let (status, _, body) = get(&e.gh, "/app", Some(c)).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("token_revoked")), "{body}");
    }
    let (status, _, session) = post(
        &e.gh,
        "/auth/login",
        &json!({"email": "recover@example.com", "password": "a brand new passphrase"}),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, list) =
        send_json(&e.gh, "GET", "/auth/api-keys", Some(session["access_token"].as_str().unwrap()), None).await;
    assert_eq!(list, json!([]));
}

async fn keys_carry_a_role_only_when_granted_and_held(backend: Backend) {
    let routes = "cache_ttl = \"1s\"\n[[routes]]\npath = \"/staff/\"\nroles = [\"admin\"]\n";
    let e = env(backend, "", routes).await;
    let (_, user_id) = user(&e.gh, "boss@example.com").await;
    let store = SqlStore::connect(&e.store.url).await.unwrap();
    sqlx::query("UPDATE users SET role = 'admin' WHERE id = $1").bind(&user_id).execute(store.pool()).await.unwrap();
    let (_, _, session) = post(&e.gh, "/auth/login", &json!({"email": "boss@example.com", "password": PW}), None).await;
    let token = session["access_token"].as_str().unwrap().to_string();
    assert_eq!(get(&e.gh, "/staff/x", Some(&token)).await.0, 200, "the admin's session passes the route");

    // (path, scopes, passes `roles = ["admin"]`): only a key granted `role:admin` carries the role.
    let cases = [
        ("/auth/api-keys", Some(json!([])), false),
        ("/auth/api-keys", None, false),
        ("/auth/api-keys", Some(json!(["read", "write"])), false),
        ("/auth/tokens", Some(json!([])), false),
        ("/auth/tokens", None, false),
        ("/auth/api-keys", Some(json!(["read", "role:admin"])), true),
        ("/auth/tokens", Some(json!(["role:admin"])), true),
    ];
    let mut granted = Vec::new();
    for (path, scopes, passes) in cases {
        let mut body = json!({"name": "k"});
        if let Some(scopes) = &scopes {
            body["scopes"] = scopes.clone();
        }
        let (status, created) = send_json(&e.gh, "POST", path, Some(&token), Some(body)).await;
        assert_eq!(status, 201, "{created}");
        let key = created["key"].as_str().or(created["token"].as_str()).unwrap().to_string();
        let (status, _, answer) = get(&e.gh, "/staff/x", Some(&key)).await;
        let (_, _, echo) = get(&e.gh, "/app", Some(&key)).await;
        if passes {
            assert_eq!(status, 200, "{path} {scopes:?}: {answer}");
            assert_eq!(seen(&echo, "x-auth-role"), vec!["admin"]);
            assert!(!seen(&echo, "x-auth-permissions").concat().contains("role:"), "{echo}");
            granted.push(key);
        } else {
            assert_eq!((status, answer["code"].as_str()), (403, Some("insufficient_role")), "{path} {scopes:?}");
            assert!(seen(&echo, "x-auth-role").is_empty(), "{path} {scopes:?}: {echo}");
        }
    }
    // A role the owner does not have cannot be granted.
    for scopes in [json!(["role:superuser"]), json!(["role:user"])] {
        let (status, body) =
            send_json(&e.gh, "POST", "/auth/api-keys", Some(&token), Some(json!({"name": "k", "scopes": scopes})))
                .await;
        assert_eq!((status, body["code"].as_str()), (403, Some("insufficient_scope")), "{body}");
    }
    // The owner loses the role: so do the keys granted it (once their cache entries expire).
    sqlx::query("UPDATE users SET role = 'user' WHERE id = $1").bind(&user_id).execute(store.pool()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    for key in &granted {
        let (status, _, body) = get(&e.gh, "/staff/x", Some(key)).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("insufficient_role")), "{body}");
        let (_, _, echo) = get(&e.gh, "/app", Some(key)).await;
        assert!(seen(&echo, "x-auth-role").is_empty(), "{echo}");
    }
}
