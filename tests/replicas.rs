//! Two Gatehouse processes on one Postgres: accounts, keys and revocations are shared
//! through the database, so a logout on one replica is refused by the other within 2 s.
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

mod common;

use std::time::{Duration, Instant};

use common::process::Replica;
use common::*;
use serde_json::json;

async fn replica(upstream: &Upstream, store: &TestStore) -> Replica {
    Replica::serve(&accounts_config(upstream, store, "[rate_limit]\nlogin_per_minute = 100\nlockout_after = 3")).await
}

#[tokio::test]
async fn logout_on_one_replica_is_refused_by_the_other_within_two_seconds() {
    let upstream = Upstream::start().await;
    let store = Backend::Postgres.fresh().await;
    let a = replica(&upstream, &store).await;
    let b = replica(&upstream, &store).await;
    let c = client();

    let reg =
        post_json(&a.url("/auth/register"), json!({"email": "multi@example.com", "password": "correct horse battery"}))
            .await;
    let access = reg["access_token"].as_str().expect("registered on A").to_string();

    // B verifies A's token (one signing key in the store) and knows the account.
    let r = c.get(b.url("/app")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(b.url("/auth/me")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let r = c.post(a.url("/auth/logout")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let logged_out = Instant::now();
    assert_eq!(c.get(a.url("/app")).bearer_auth(&access).send().await.unwrap().status(), 401, "at once on A");
    loop {
        let status = c.get(b.url("/app")).bearer_auth(&access).send().await.unwrap().status();
        if status == 401 {
            break;
        }
        assert!(logged_out.elapsed() < Duration::from_secs(2), "B still accepts the token after 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("B refused the token {} ms after the logout on A", logged_out.elapsed().as_millis());

    // Lockout is shared too: failures on A lock the account on B.
    for _ in 0..3 {
        let r = c
            .post(a.url("/auth/login"))
            .json(&json!({"email": "multi@example.com", "password": "wrong wrong"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let body =
        post_json(&b.url("/auth/login"), json!({"email": "multi@example.com", "password": "correct horse battery"}))
            .await;
    assert_eq!(body["code"], "account_locked", "{body}");
}

#[tokio::test]
async fn a_key_deleted_on_one_replica_is_refused_by_the_other_within_two_seconds() {
    let upstream = Upstream::start().await;
    let store = Backend::Postgres.fresh().await;
    let a = replica(&upstream, &store).await;
    let b = replica(&upstream, &store).await;
    let c = client();

    let reg =
        post_json(&a.url("/auth/register"), json!({"email": "keys@example.com", "password": "correct horse battery"}))
            .await;
    let access = reg["access_token"].as_str().expect("registered on A").to_string();
    let mut created = Vec::new();
    for path in ["/auth/api-keys", "/auth/tokens"] {
        let r = c.post(a.url(path)).bearer_auth(&access).json(&json!({"name": "shared"})).send().await.unwrap();
        assert_eq!(r.status(), 201);
        let body: serde_json::Value = r.json().await.unwrap();
        let secret = body.get("key").or(body.get("token")).unwrap().as_str().unwrap().to_string();
        created.push((path, body["id"].as_str().unwrap().to_string(), secret));
    }
    for (path, id, secret) in created {
        // Both replicas know the key, and B holds it in its cache.
        for replica in [&a, &b] {
            let r = c.get(replica.url("/app")).header("X-API-KEY", &secret).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path} on {}", replica.process.addr);
        }
        let r = c.delete(a.url(&format!("{path}/{id}"))).bearer_auth(&access).send().await.unwrap();
        assert_eq!(r.status(), 204);
        let deleted = Instant::now();
        let r = c.get(a.url("/app")).header("X-API-KEY", &secret).send().await.unwrap();
        assert_eq!(r.status(), 401, "at once on A");
        loop {
            let r = c.get(b.url("/app")).bearer_auth(&secret).send().await.unwrap();
            if r.status() == 401 {
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["code"], "token_revoked");
                break;
            }
            assert!(deleted.elapsed() < Duration::from_secs(2), "B still accepts the deleted {path} after 2 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("B refused the deleted {path} {} ms after A deleted it", deleted.elapsed().as_millis());
    }
}

async fn post_json(url: &str, body: serde_json::Value) -> serde_json::Value {
    client().post(url).json(&body).send().await.unwrap().json().await.unwrap()
}

/// The `jti` of a JWT, read without verifying it.
fn jti(token: &str) -> String {
    claims_of(token)["jti"].as_str().unwrap().to_string()
}

/// Another replica, whose clock runs 10 minutes slow, revokes a token `base` accepts (and
/// computes the revocation's end with that clock, as the auth API does): `base` must still
/// refuse the token within 2 s.
async fn skewed_writer_revocation_is_seen(base: &str, store: &TestStore) {
    let c = client();
    let reg = post_json(
        &format!("{base}/auth/register"),
        json!({"email": "skew@example.com", "password": "correct horse battery"}),
    )
    .await;
    let access = reg["access_token"].as_str().expect("registered").to_string();
    assert_eq!(c.get(format!("{base}/app")).bearer_auth(&access).send().await.unwrap().status(), 200);
    // Let the poller move its cursor past "an hour ago" (it polls every 500 ms).
    tokio::time::sleep(Duration::from_millis(1200)).await;

    use gatehouse::store::Store;
    let slow_clock = now() as i64 - 600;
    let sql = gatehouse::store::SqlStore::connect(&store.url).await.unwrap();
    // The token itself expires in 5 minutes by the real clock (tokens.access_ttl).
    sql.revoke_token(&jti(&access), slow_clock + 300, slow_clock).await.unwrap();
    let revoked = Instant::now();
    loop {
        let r = c.get(format!("{base}/app")).bearer_auth(&access).send().await.unwrap();
        if r.status() == 401 {
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["code"], "token_revoked");
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(2),
            "a revocation written by a replica whose clock is 10 minutes slow was never seen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn clock_skew_between_replicas_loses_no_revocation_postgres() {
    let upstream = Upstream::start().await;
    let store = Backend::Postgres.fresh().await;
    let a = replica(&upstream, &store).await;
    skewed_writer_revocation_is_seen(&a.url(""), &store).await;
}

#[tokio::test]
async fn clock_skew_between_replicas_loses_no_revocation_sqlite() {
    let upstream = Upstream::start().await;
    let store = Backend::Sqlite.fresh().await;
    let gh = Gatehouse::start(&accounts_config(&upstream, &store, "")).await;
    gh.wait_ready().await;
    skewed_writer_revocation_is_seen(&gh.url(""), &store).await;
}
