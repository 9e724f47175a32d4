//! The per-request context: request id, peer, client IP and start time, set once when the
//! request arrives, then what the pipeline learns (caller, outcome). The access log is its.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Request;

use crate::auth::principal::Principal;
use crate::clock::Instant;
use crate::config::ServerConfig;
use crate::peer::{self, Peer};

/// What is known about a request, filled in as it walks the pipeline and logged at the end.
/// It never holds a credential: only the verified subject and how it was proven.
pub struct RequestContext {
    pub request_id: String,
    pub peer: Peer,
    /// When the request head was handed to the pipeline: the latency logged and measured.
    pub started: Instant,
    pub method: http::Method,
    /// Cloning a `Uri` shares its bytes: nothing is copied unless the line is written.
    uri: http::Uri,
    /// The path to log instead of the URI's (forward-auth logs the original request's).
    pub path: Option<String>,
    pub client_ip: IpAddr,
    pub status: u16,
    pub auth_method: Option<&'static str>,
    pub subject: Option<String>,
    pub error: Option<&'static str>,
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

fn process_prefix() -> u32 {
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PREFIX.get_or_init(|| {
        let mut b = [0u8; 4];
        let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut b);
        u32::from_le_bytes(b)
    })
}

/// The client's `X-Request-Id` if it is a sane token, else a new unique id.
fn request_id<B>(req: &Request<B>) -> String {
    if let Some(v) = req.headers().get("x-request-id").and_then(|v| v.to_str().ok())
        && (1..=128).contains(&v.len())
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return v.to_string();
    }
    format!("{:08x}{:012x}", process_prefix(), REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed))
}

impl RequestContext {
    pub fn start<B>(req: &Request<B>, peer: Peer, server: &ServerConfig) -> Self {
        RequestContext {
            request_id: request_id(req),
            peer,
            started: crate::clock::now(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            path: None,
            client_ip: peer::client_ip(peer, req.headers(), server),
            status: 0,
            auth_method: None,
            subject: None,
            error: None,
        }
    }

    pub fn principal(&mut self, p: &Principal) {
        self.auth_method = Some(p.method.as_str());
        self.subject = Some(p.subject.clone());
    }

    pub fn emit(&self, latency: Duration) {
        tracing::info!(
            target: "gatehouse::access",
            request_id = %self.request_id,
            method = %self.method,
            // The path without its query string (queries can carry secrets).
            path = %self.path.as_deref().unwrap_or(self.uri.path()),
            status = self.status,
            auth = self.auth_method.unwrap_or("-"),
            subject = self.subject.as_deref().unwrap_or("-"),
            error = self.error.unwrap_or("-"),
            client_ip = %self.client_ip,
            latency_us = latency.as_micros() as u64,
            "request"
        );
    }
}
