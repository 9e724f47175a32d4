//! The process clock, the one place that reads time: Unix seconds for token times, store
//! timestamps and expiries, and the monotonic [`Instant`] for caches, deadlines and latency.
//!
//! The monotonic clock is tokio's, so a test under `tokio::time::pause` moves it with
//! `tokio::time::advance` instead of sleeping. `clippy.toml` refuses the std and tokio
//! `now()`s everywhere else.

#![allow(clippy::disallowed_methods)]

use std::time::{SystemTime, UNIX_EPOCH};

pub use tokio::time::Instant;

/// Seconds since the Unix epoch (0 if the system clock is before it).
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Now, on the monotonic clock.
pub fn now() -> Instant {
    Instant::now()
}

/// Now as a std instant, for caches (moka) that keep their own.
pub fn now_std() -> std::time::Instant {
    now().into_std()
}
