//! Per-client-IP rate limiting (IPv6 by /64): [`Limiter`] in process memory (governor), and
//! [`SharedLimiter`], which holds one quota across every replica sharing a Postgres store.
//!
//! Memory stays bounded: stale keys are dropped every few seconds, and past a hard cap new
//! addresses share one global bucket until the map shrinks again.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::store::{RateSlot, Store};

/// Keys tracked before new addresses fall back to the shared bucket.
const MAX_KEYS: usize = 1_000_000;

/// How long a request waits for the store's verdict before the local one stands.
const STORE_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the shared buckets that are full again are deleted.
const STORE_PRUNE_EVERY: Duration = Duration::from_secs(60);

/// At most one "store unreachable" warning per limiter in this many seconds: an outage must
/// not also flood the log once per login.
const WARN_EVERY_SECS: u64 = 10;

/// A per-process limiter: what one process has seen decides. On its own it serves the
/// proxy path's failed-key-lookup guard and every limit of a single-process (SQLite) store;
/// in front of a shared store it is [`SharedLimiter`]'s first filter.
pub struct Limiter {
    keyed: DefaultKeyedRateLimiter<IpAddr>,
    overflow: DefaultDirectRateLimiter,
}

impl Limiter {
    pub fn per_minute(n: u32) -> Arc<Self> {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(n);
        Arc::new(Limiter {
            keyed: RateLimiter::keyed(quota),
            // Generous: it only serves addresses beyond MAX_KEYS during a flood.
            overflow: RateLimiter::direct(Quota::per_second(NonZeroU32::new(100).expect("nonzero"))),
        })
    }

    /// `Err(wait)` when `ip` has used up its quota.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let key = bucket(ip);
        let result = if self.keyed.len() >= MAX_KEYS { self.overflow.check() } else { self.keyed.check_key(&key) };
        result.map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    pub fn tracked(&self) -> usize {
        self.keyed.len()
    }

    /// Drops keys whose buckets are full again, every few seconds, until the limiter itself
    /// is dropped (a reload that changed its rate).
    pub async fn prune(limiter: std::sync::Weak<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let Some(this) = limiter.upgrade() else { return };
            this.keyed.retain_recent();
            this.keyed.shrink_to_fit();
        }
    }
}

/// A per-IP quota of the auth API (login and its siblings, the token endpoint) that holds for
/// the whole cluster when the store is shared by replicas, and is a plain [`Limiter`]
/// otherwise (SQLite: one process, no store write per request).
///
/// On a shared store the local limiter, with the same quota, is asked first: a flood from
/// one address is refused in memory without a store round trip. Each process sees only part
/// of an address's requests, so a request the cluster would allow passes it too, give or take
/// one slot interval (its bucket can run that far ahead of the cluster's, from a request it
/// admitted that the store then refused). What it admits takes a slot from the store's bucket
/// for (`name`, the client's [`bucket`]), and the store's verdict, with its Retry-After,
/// decides.
///
/// When the store errors or does not answer within [`STORE_TIMEOUT`], the local verdict
/// stands and a warning is logged: the limit degrades to per process (N replicas allow N
/// times the quota) instead of failing the login path open to everyone or answering 500
/// while the database is away; the password checks themselves need the store anyway.
pub struct SharedLimiter {
    /// The bucket family in the store: limits with their own quota have their own name.
    name: &'static str,
    local: Arc<Limiter>,
    interval: Duration,
    burst: u32,
    /// `None` when this process is the store's only user: the local verdict is final.
    store: Option<Arc<dyn Store>>,
    /// Unix seconds of the last store warning.
    warned_at: AtomicU64,
}

impl SharedLimiter {
    /// `per_minute` requests a minute per client address, counted in `store` when replicas
    /// share it. A function of (config, store) only, so a config reload can build a new one;
    /// the shared state stays in the store.
    pub fn new(name: &'static str, per_minute: u32, store: &Arc<dyn Store>) -> Arc<Self> {
        let burst = per_minute.max(1);
        Arc::new(SharedLimiter {
            name,
            local: Limiter::per_minute(burst),
            // The same emission interval as governor's Quota::per_minute.
            interval: Duration::from_secs(60) / burst,
            burst,
            store: store.shared_by_replicas().then(|| store.clone()),
            warned_at: AtomicU64::new(0),
        })
    }

    /// `Err(wait)` when `ip` has used up its quota: on this process, or across the cluster.
    pub async fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.local.check(ip)?;
        let Some(store) = &self.store else { return Ok(()) };
        let client = bucket_key(ip);
        let take = store.take_rate_slot(self.name, &client, self.interval, self.burst);
        match tokio::time::timeout(STORE_TIMEOUT, take).await {
            Ok(Ok(RateSlot::Taken)) => Ok(()),
            Ok(Ok(RateSlot::Refused { retry_after })) => Err(retry_after),
            Ok(Err(e)) => {
                self.warn(&e);
                Ok(())
            }
            Err(_) => {
                self.warn(&format_args!("no answer within {STORE_TIMEOUT:?}"));
                Ok(())
            }
        }
    }

    /// Whether requests are counted in the store (replicas share it).
    pub fn is_shared(&self) -> bool {
        self.store.is_some()
    }

    fn warn(&self, error: &dyn std::fmt::Display) {
        let now = crate::clock::now_secs();
        let last = self.warned_at.load(Ordering::Relaxed);
        if now >= last + WARN_EVERY_SECS
            && self.warned_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(limit = self.name, error = %error, "the store cannot count a rate limit; limiting per process");
        }
    }

    /// Keeps memory and the store's table small: the local limiter forgets idle addresses,
    /// and, on a shared store, buckets that are full again are deleted.
    /// Both end once the limiter is dropped (a reload that changed its rate).
    pub fn spawn_maintenance(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(Limiter::prune(Arc::downgrade(&self.local)))];
        if self.store.is_some() {
            let limiter = Arc::downgrade(self);
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(STORE_PRUNE_EVERY).await;
                    let Some(this) = limiter.upgrade() else { return };
                    let Some(store) = &this.store else { return };
                    if let Err(e) = store.prune_rate_buckets(this.name).await {
                        tracing::warn!(limit = this.name, error = %e, "cannot prune rate buckets");
                    }
                }
            }));
        }
        tasks
    }
}

/// [`bucket`] as the store keys it: stable across processes and versions (RFC 5952 text for
/// IPv6, so `2001:db8:1:2::`).
pub fn bucket_key(ip: IpAddr) -> String {
    bucket(ip).to_string()
}

/// IPv4 as is; IPv6 by /64, since one client usually holds a whole /64.
pub fn bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut seg = v6.segments();
            seg[4..].fill(0);
            IpAddr::V6(seg.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address_and_groups_ipv6_by_64() {
        let l = Limiter::per_minute(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l.check(a).is_ok() && l.check(a).is_ok());
        let wait = l.check(a).unwrap_err();
        assert!(wait > Duration::from_secs(1) && wait <= Duration::from_secs(30));
        assert!(l.check("10.0.0.2".parse().unwrap()).is_ok());
        let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(l.check(v6a).is_ok() && l.check(v6b).is_ok());
        assert!(l.check(v6a).is_err(), "same /64 shares a bucket");
    }

    #[test]
    fn memory_is_bounded() {
        let l = Limiter::per_minute(5);
        for i in 0..200_000u32 {
            let _ = l.check(IpAddr::V4(i.into()));
        }
        assert!(l.tracked() <= MAX_KEYS);
    }

    /// A shared limiter on a store that cannot answer: the local verdict stands, each request
    /// waits at most about STORE_TIMEOUT, and the local limit still refuses.
    async fn falls_back_to_the_local_limit(url: &str) {
        let sql = Arc::new(crate::store::SqlStore::lazy_postgres(url));
        let store: Arc<dyn Store> = sql.clone();
        let l = SharedLimiter::new("auth", 2, &store);
        assert!(l.is_shared());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..2 {
            let started = crate::clock::now();
            assert_eq!(l.check(ip).await, Ok(()), "the local verdict stands while the store is away");
            assert!(started.elapsed() < STORE_TIMEOUT + Duration::from_millis(500), "{:?}", started.elapsed());
        }
        let started = crate::clock::now();
        let wait = l.check(ip).await.unwrap_err();
        assert!(wait > Duration::from_secs(1) && wait <= Duration::from_secs(30), "{wait:?}");
        assert!(started.elapsed() < Duration::from_millis(100), "refused locally, without asking the store");
        let asked = sql.query_counts().into_iter().find(|(op, _)| *op == "take_rate_slot").map(|(_, n)| n);
        assert_eq!(asked, Some(2), "only what the local limiter admits goes to the store");
    }

    #[tokio::test]
    async fn a_store_that_refuses_connections_leaves_the_local_limit() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        falls_back_to_the_local_limit(&format!("postgres://postgres@127.0.0.1:{port}/none")).await;
    }

    #[tokio::test]
    async fn a_store_that_never_answers_leaves_the_local_limit() {
        // Accepts connections and holds them without a word: only the timeout ends the wait.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        falls_back_to_the_local_limit(&format!("postgres://postgres@127.0.0.1:{port}/none")).await;
    }

    #[tokio::test]
    async fn a_single_process_store_limits_in_memory_only() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("gatehouse.db").display());
        let sql = Arc::new(crate::store::SqlStore::connect(&url).await.unwrap());
        let store: Arc<dyn Store> = sql.clone();
        let l = SharedLimiter::new("auth", 2, &store);
        assert!(!l.is_shared());
        let ip: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        assert!(l.check(ip).await.is_ok() && l.check(ip).await.is_ok());
        assert!(l.check("2001:db8:1:2:ffff::9".parse().unwrap()).await.is_err(), "same /64");
        assert!(sql.query_counts().iter().all(|(op, _)| !op.contains("rate")), "{:?}", sql.query_counts());
    }

    #[test]
    fn bucket_keys_are_stable_text() {
        assert_eq!(bucket_key("127.0.0.1".parse().unwrap()), "127.0.0.1");
        assert_eq!(bucket_key("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3");
        assert_eq!(bucket_key("2001:db8:1:2:3:4:5:6".parse().unwrap()), "2001:db8:1:2::");
    }
}
