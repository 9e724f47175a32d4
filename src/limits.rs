//! Per-client-IP rate limiting of the auth API's sensitive endpoints (login, register,
//! password reset, token), with governor. IPv6 clients are keyed by their /64.
//!
//! Memory stays bounded: stale keys are dropped every few seconds, and past a hard cap new
//! addresses share one global bucket until the map shrinks again.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Keys tracked before new addresses fall back to the shared bucket.
const MAX_KEYS: usize = 1_000_000;

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
}
