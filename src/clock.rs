//! The process clock: Unix seconds as every part of Gatehouse reads them (token times,
//! store timestamps, expiries). One place, so the time source can change in one place.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the system clock is before it).
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
