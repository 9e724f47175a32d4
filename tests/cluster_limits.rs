//! The per-IP auth-API limits hold cluster-wide on Postgres: two Gatehouse processes on one
//! database together allow `rate_limit.login_per_minute`, and the store's bucket is exact.
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::process::Replica;
use common::*;
use gatehouse::store::{RateSlot, SqlStore, Store};
use serde_json::json;

/// A `gatehouse serve` process on `store`, with the default per-IP quota unless `extra` sets one.
async fn replica(upstream: &Upstream, store: &TestStore, extra: &str) -> Replica {
    Replica::serve(&accounts_config(upstream, store, extra)).await
}

/// Sends `send` ten times, alternating between the replicas; returns (status, Retry-After) of each.
async fn alternate<F, Fut>(replicas: [&Replica; 2], send: F) -> Vec<(u16, Option<u64>)>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let mut answers = Vec::new();
    for i in 0..10 {
        let r = send(replicas[i % 2].url("")).await;
        let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        answers.push((r.status().as_u16(), retry));
    }
    answers
}

/// Exactly `quota` answers were not 429, and every 429 says to wait about one slot interval.
fn assert_quota(what: &str, answers: &[(u16, Option<u64>)], quota: usize, not_limited: u16) {
    let allowed = answers.iter().filter(|(s, _)| *s != 429).count();
    println!("{what}: {allowed} of {} allowed across two processes: {answers:?}", answers.len());
    assert_eq!(allowed, quota, "{what}: {answers:?}");
    assert!(answers.iter().filter(|(s, _)| *s != 429).all(|(s, _)| *s == not_limited), "{what}: {answers:?}");
    let interval = 60 / quota as u64;
    for (status, retry) in answers.iter().filter(|(s, _)| *s == 429) {
        let retry = retry.unwrap_or_else(|| panic!("{what}: a {status} without Retry-After"));
        assert!((1..=interval).contains(&retry), "{what}: Retry-After {retry}, one slot frees in {interval} s");
    }
}

#[tokio::test]
async fn two_processes_on_one_postgres_share_the_per_ip_limits() {
    let upstream = Upstream::start().await;
    let store = Backend::Postgres.fresh().await;
    // The default quota: 5 a minute per address.
    let a = replica(&upstream, &store, "").await;
    let b = replica(&upstream, &store, "").await;
    let c = client();

    let logins = alternate([&a, &b], |base| {
        let c = c.clone();
        async move {
            let body = json!({"email": "nobody@example.com", "password": "wrong password"});
            c.post(format!("{base}/auth/login")).json(&body).send().await.unwrap()
        }
    })
    .await;
    assert_quota("login", &logins, 5, 401);
    // Register shares the login budget, on either replica.
    for replica in [&a, &b] {
        let body = json!({"email": "new@example.com", "password": "correct horse battery"});
        let r = c.post(replica.url("/auth/register")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 429);
    }

    // The token endpoint has its own quota, shared in the same way. Malformed requests count.
    let tokens = alternate([&a, &b], |base| {
        let c = c.clone();
        async move {
            c.post(format!("{base}/auth/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials")
                .send()
                .await
                .unwrap()
        }
    })
    .await;
    assert_quota("token", &tokens, 5, 401);
}

/// 20 concurrent takers from two pools (two processes' worth) on one bucket of 5: exactly 5
/// get a slot; the rest learn when the next one frees up. Other clients and limits have
/// their own buckets, and the prune deletes only buckets that are full again.
async fn the_store_bucket_admits_exactly_the_quota(backend: Backend) {
    let test_store = backend.fresh().await;
    let one: Arc<dyn Store> = Arc::new(SqlStore::connect(&test_store.url).await.unwrap());
    let two: Arc<dyn Store> = Arc::new(SqlStore::connect(&test_store.url).await.unwrap());
    let interval = Duration::from_secs(12);
    let takers = (0..20).map(|i| {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        tokio::spawn(async move { store.take_rate_slot("auth", "127.0.0.1", interval, 5).await.unwrap() })
    });
    let slots: Vec<RateSlot> = futures::future::join_all(takers).await.into_iter().map(Result::unwrap).collect();
    let taken = slots.iter().filter(|s| **s == RateSlot::Taken).count();
    println!("{backend:?}: {taken} of 20 concurrent takers got a slot of 5");
    assert_eq!(taken, 5, "{slots:?}");
    for slot in &slots {
        if let RateSlot::Refused { retry_after } = slot {
            assert!(*retry_after > Duration::from_secs(10) && *retry_after <= interval, "{retry_after:?}");
        }
    }
    assert_eq!(one.take_rate_slot("auth", "127.0.0.2", interval, 5).await.unwrap(), RateSlot::Taken);
    assert_eq!(two.take_rate_slot("token", "127.0.0.1", interval, 5).await.unwrap(), RateSlot::Taken);

    // A bucket of one that refills in 50 ms: refused at once, taken again once it has refilled,
    // and pruned once full again, while the busy buckets stay.
    let fast = Duration::from_millis(50);
    assert_eq!(one.take_rate_slot("fast", "10.0.0.1", fast, 1).await.unwrap(), RateSlot::Taken);
    assert!(matches!(two.take_rate_slot("fast", "10.0.0.1", fast, 1).await.unwrap(), RateSlot::Refused { .. }));
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(two.take_rate_slot("fast", "10.0.0.1", fast, 1).await.unwrap(), RateSlot::Taken);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(one.prune_rate_buckets("fast").await.unwrap(), 1);
    assert_eq!(one.prune_rate_buckets("auth").await.unwrap(), 0, "busy buckets are kept");
    assert!(matches!(two.take_rate_slot("auth", "127.0.0.1", interval, 5).await.unwrap(), RateSlot::Refused { .. }));
}

on_both!(the_store_bucket_admits_exactly_the_quota);

/// `/metrics` lists each store operation that ran.
async fn store_operations(gh: &Gatehouse) -> String {
    client().get(gh.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

/// A single process on SQLite limits in memory, exactly as before: no store write per request.
#[tokio::test]
async fn sqlite_limits_in_memory_without_store_writes() {
    let upstream = Upstream::start().await;
    let store = Backend::Sqlite.fresh().await;
    let gh = Gatehouse::start(&accounts_config(&upstream, &store, "[rate_limit]\nlogin_per_minute = 2")).await;
    gh.wait_ready().await;
    let body = json!({"email": "nobody@example.com", "password": "wrong password"});
    let statuses: Vec<u16> = futures::future::join_all((0..3).map(|_| post(&gh, "/auth/login", &body, None)))
        .await
        .into_iter()
        .map(|(status, _, _)| status)
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1, "{statuses:?}");
    let metrics = store_operations(&gh).await;
    assert!(metrics.contains("user_by_login"), "{metrics}");
    assert!(!metrics.contains("take_rate_slot"), "{metrics}");
}

/// The same single process on Postgres counts in the store (that is what lets replicas share it).
#[tokio::test]
async fn postgres_counts_the_limit_in_the_store() {
    let upstream = Upstream::start().await;
    let store = Backend::Postgres.fresh().await;
    let gh = Gatehouse::start(&accounts_config(&upstream, &store, "[rate_limit]\nlogin_per_minute = 2")).await;
    gh.wait_ready().await;
    let body = json!({"email": "nobody@example.com", "password": "wrong password"});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(post(&gh, "/auth/login", &body, None).await.0);
    }
    assert_eq!(statuses, [401, 401, 429]);
    let metrics = store_operations(&gh).await;
    // The third was refused in memory: only the two the local limiter admitted reached the store.
    let line = metrics.lines().find(|l| l.contains("take_rate_slot") && !l.starts_with('#')).expect("counted");
    assert!(line.ends_with(" 2"), "{line}");
}
