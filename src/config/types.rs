//! The validated configuration types the rest of Gatehouse reads: every value already
//! parsed and checked, so nothing after load re-validates config.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Uri};
use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use rustls_pki_types::ServerName;

use super::{RedirectHost, defaults, raw};
use crate::routes::RouteTable;

/// The validated configuration. Built only by [`Config::load`] or [`Config::from_toml`].
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub store: StoreConfig,
    pub tokens: Option<TokensConfig>,
    pub jwt: JwtConfig,
    pub issuers: Vec<IssuerConfig>,
    pub routes: RouteTable,
    pub headers: HeadersConfig,
    pub rate_limit: RateLimitConfig,
    pub forward_auth: ForwardAuthConfig,
    pub accounts: AccountsConfig,
    pub smtp: Option<SmtpConfig>,
    /// Browser sessions: the sign-in page and the session cookie. Off without `[session]`.
    pub session: Option<SessionConfig>,
    pub api_keys: ApiKeysConfig,
    pub clients: ClientsConfig,
    pub log: LogConfig,
}

/// API keys and personal access tokens: how they look, where they are read, how they are
/// cached, and how many a user may hold.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeysConfig {
    /// The request header that carries a key (besides `Authorization: Bearer`).
    pub header: HeaderName,
    pub prefix: String,
    pub pat_prefix: String,
    /// The HMAC pepper; without it the pepper is kept in the store.
    pub pepper_file: Option<PathBuf>,
    pub cache_capacity: u64,
    pub cache_ttl: Duration,
    pub negative_cache_capacity: u64,
    pub negative_cache_ttl: Duration,
    /// Failed key lookups (unknown, expired or revoked keys) allowed per client IP and minute;
    /// past them, keys not in the cache get 429 without a lookup.
    pub lookups_per_minute: u32,
    /// How often `last_used_at` is written, for every key used since.
    pub last_used_interval: Duration,
    pub max_api_keys: i64,
    /// PATs per user for roles not in `pat_limits`.
    pub max_pats: i64,
    /// role -> how many PATs a user of that role may hold.
    pub pat_limits: BTreeMap<String, i64>,
    pub pat_default_days: i64,
    pub max_days: i64,
    /// Pass the key header on to the upstream.
    pub forward_header: bool,
    /// A password reset (account recovery) revokes the user's API keys and PATs.
    pub revoke_on_password_reset: bool,
}

impl ApiKeysConfig {
    pub fn pat_limit(&self, role: &str) -> i64 {
        self.pat_limits.get(role).copied().unwrap_or(self.max_pats)
    }
}

/// OAuth2 clients of the client-credentials grant.
#[derive(Debug, Clone)]
pub struct ClientsConfig {
    pub token_ttl: Duration,
    pub secret_prefix: String,
    /// A client holding this scope may revoke any token, not only its own (every client may
    /// introspect any token).
    pub admin_scope: String,
}

/// Mail delivery for password resets.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// `smtp://user:pass@host:587?tls=required`, `smtps://host:465`, or plain `smtp://host:25`.
    pub url: String,
    pub from: String,
}

/// The auth API (`/auth/...`): served when `[tokens]` is configured.
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    /// Path prefix of the auth API, without a trailing `/`.
    pub prefix: String,
    /// Whether `POST /auth/register` is open to anyone.
    pub registration: bool,
    pub min_password_length: usize,
    pub max_password_length: usize,
    pub default_role: String,
    pub default_permissions: Vec<String>,
    /// A replay of the latest used refresh token within this window returns the same child.
    pub refresh_grace: Duration,
    pub reset_ttl: Duration,
    /// Base of the link in reset messages; the token is appended as `?token=...`.
    pub reset_url: Option<String>,
    /// Development mail delivery: each message is written to a file in this directory.
    /// Without it (and without SMTP) messages are written to the log.
    pub mail_outbox: Option<PathBuf>,
    /// Password hashes computed at once (each holds ~19 MiB).
    pub hash_concurrency: usize,
    pub max_body_bytes: usize,
    /// The most an auth-API request may take, its body included (408 after that).
    pub request_timeout: Duration,
    /// Users of this role may manage OAuth2 clients through the API.
    pub admin_role: String,
    /// How long an email verification link works.
    pub verify_ttl: Duration,
    /// Base of the link in verification messages; the token is appended as `?token=...`.
    pub verify_url: Option<String>,
    /// Gatehouse's own credentials of a user whose email is not verified are refused (login,
    /// refresh, proxy path); the auth API still serves them so the user can verify.
    pub require_verified_email: bool,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// How browsers reach Gatehouse (redirects, cookies): `server.public_url`, else
    /// `tokens.issuer` when that is an http(s) URL. Origin only: no path, query or user.
    pub public_url: Option<url::Url>,
    /// `None` means one per core.
    pub worker_threads: Option<usize>,
    /// Peers whose `X-Forwarded-For` and `Forwarded` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    pub tls: Option<TlsConfig>,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long in-flight requests may run after SIGTERM before connections are cut.
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long `/readyz` answers 503 while requests are still served, so load
    /// balancers and Kubernetes endpoints stop sending before the listener closes.
    pub shutdown_delay: Duration,
    pub max_header_count: usize,
    /// The most a request head (request line and headers) may take; past it, 431.
    pub max_header_bytes: usize,
    /// Time a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// `/metrics` on its own listener instead of the main one.
    pub metrics_listen: Option<SocketAddr>,
}

impl ServerConfig {
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// Scheme and authority of the protected app; any path in it is prefixed to requests.
    pub url: Uri,
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response headers arrive (504 after that).
    pub response_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle: usize,
    /// `Upgrade` protocols spliced through after a 101 (lowercase); any other is not offered
    /// to the upstream.
    pub upgrades: Vec<String>,
    /// Present exactly when `url` is https:// (with every field unset when the file has no
    /// `[upstream.tls]`).
    pub tls: Option<UpstreamTlsConfig>,
}

/// TLS to an https:// upstream. The files were readable and held PEM at load; they are
/// read again whenever the upstream client is built, so replaced files take effect then.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamTlsConfig {
    /// The CAs trusted for the upstream's certificate; without it, the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The name sent as SNI and verified in the certificate instead of the URL's host.
    pub server_name: Option<ServerName<'static>>,
    /// The certificate Gatehouse presents (mTLS).
    pub client_cert: Option<ClientCertConfig>,
}

/// A client certificate chain and its private key, both PEM.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientCertConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: String,
}

/// Tokens Gatehouse itself signs. Their issuer is trusted like any `[[issuers]]` entry.
#[derive(Debug, Clone)]
pub struct TokensConfig {
    pub issuer: String,
    pub audience: String,
    pub algorithm: Algorithm,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// PKCS#8 PEM private key (or the HMAC secret for HS*), generated when missing; without
    /// it, keys live in the store, shared by every replica.
    pub key_file: Option<PathBuf>,
    /// How often keys kept in the store are re-read (to follow rotations).
    pub key_reload: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwtConfig {
    pub leeway: Duration,
    pub max_token_bytes: usize,
    pub verified_cache_capacity: u64,
    pub verified_cache_ttl: Duration,
    pub key_cache_capacity: u64,
    /// The least time between two JWKS fetches triggered by unknown `kid`s.
    pub jwks_refresh_cooldown: Duration,
    pub jwks_default_ttl: Duration,
    pub jwks_min_ttl: Duration,
    pub jwks_max_ttl: Duration,
    /// How long the last good key set keeps serving past its TTL while the JWKS endpoint fails.
    pub jwks_stale_ttl: Duration,
    pub jwks_fetch_timeout: Duration,
    pub jwks_file_poll: Duration,
    /// PEM certificates trusted, besides the system's roots, when fetching JWKS and
    /// discovery documents (an IdP behind an internal CA).
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum KeySourceConfig {
    JwksUrl(String),
    /// Find `jwks_uri` from `<issuer>/.well-known/openid-configuration`.
    Discovery,
    JwksFile(PathBuf),
    Secret(PathBuf),
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub issuer: String,
    pub source: KeySourceConfig,
    /// Empty means `aud` is not checked (a warning is logged at start).
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub claims: ClaimPaths,
    pub leeway: Duration,
    /// Claims a token must carry with one of the given values (see [`RequiredClaim`]).
    pub required_claims: Vec<RequiredClaim>,
}

/// One `required_claims` entry: the claim at `path` must equal one of `accepted`, or, when
/// the claim is a list, contain one of them. Values are JSON scalars, compared by type
/// (the string `"42"` is not the number `42`).
#[derive(Debug, Clone, PartialEq)]
pub struct RequiredClaim {
    /// The key as written, for messages.
    pub name: String,
    pub path: Vec<String>,
    pub accepted: Vec<serde_json::Value>,
}

/// Where in the claims each part of the principal is read from (dot-separated paths).
#[derive(Debug, Clone)]
pub struct ClaimPaths {
    pub subject: Vec<String>,
    pub email: Vec<String>,
    pub name: Vec<String>,
    pub role: Vec<String>,
    pub team: Vec<String>,
    pub permissions: Vec<String>,
    /// `true` or `"true"` there means the issuer vouches for the email; anything else does not.
    pub email_verified: Vec<String>,
}

impl ClaimPaths {
    pub(super) fn build(raw: &raw::RawIssuer) -> Self {
        let path = |v: &Option<String>, default: &str| -> Vec<String> {
            v.as_deref().unwrap_or(default).split('.').map(str::to_string).collect()
        };
        ClaimPaths {
            subject: path(&raw.subject_claim, defaults::SUBJECT_CLAIM),
            email: path(&raw.email_claim, defaults::EMAIL_CLAIM),
            name: path(&raw.name_claim, defaults::NAME_CLAIM),
            role: path(&raw.role_claim, defaults::ROLE_CLAIM),
            team: path(&raw.team_claim, defaults::TEAM_CLAIM),
            permissions: path(&raw.permissions_claim, defaults::PERMISSIONS_CLAIM),
            email_verified: path(&raw.email_verified_claim, defaults::EMAIL_VERIFIED_CLAIM),
        }
    }

    /// The claim layout of tokens Gatehouse signs itself.
    pub fn own() -> Self {
        Self::build(&raw::RawIssuer::default())
    }
}

/// Names of the injected identity headers. `None` disables one.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadersConfig {
    pub user_id: Option<HeaderName>,
    pub email: Option<HeaderName>,
    pub role: Option<HeaderName>,
    pub permissions: Option<HeaderName>,
    pub team_id: Option<HeaderName>,
    pub method: Option<HeaderName>,
    pub name: Option<HeaderName>,
    /// `true` / `false`, sent only with an email.
    pub email_verified: Option<HeaderName>,
    /// claim path -> header name.
    pub claims: Vec<(Vec<String>, HeaderName)>,
    /// Every name removed from incoming requests: all of the above plus `strip`.
    pub reserved: Vec<HeaderName>,
    /// The headers Gatehouse fills from a principal: `reserved` without `strip`. `/verify`
    /// answers each of them, empty when unknown.
    pub identity: Vec<HeaderName>,
    pub forward_authorization: bool,
    pub max_value_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    pub login_per_minute: u32,
    pub lockout_after: u32,
    pub lockout_minutes: u32,
}

#[derive(Debug, Clone)]
pub struct ForwardAuthConfig {
    pub path: String,
    pub headers: ForwardHeaders,
}

/// Which forwarding headers describe the original request at `/verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardHeaders {
    /// Either family; both present and disagreeing is refused.
    Auto,
    /// `X-Original-Method` / `X-Original-URI` only (nginx).
    Original,
    /// `X-Forwarded-Method` / `X-Forwarded-Uri` only (Traefik, Caddy).
    Forwarded,
}

impl ForwardHeaders {
    /// Either header family, so nginx, Traefik and Caddy all work unconfigured; both present
    /// and disagreeing is still refused.
    pub const DEFAULT: Self = ForwardHeaders::Auto;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    /// Readable on a terminal (the quick start); JSON is one setting away for log pipelines.
    pub const DEFAULT: Self = LogFormat::Text;
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
    /// One line per request at `info`.
    pub access: bool,
}

/// `[session]`: browser sign-in for apps with no login of their own.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// As configured; `__Host-` is put in front of it over HTTPS when no domain is set.
    pub cookie_name: String,
    /// Absolute lifetime of a session.
    pub ttl: Duration,
    /// A session unused this long is over.
    pub idle_timeout: Duration,
    /// Lowercase, without a leading dot: the cookie is shared with its subdomains.
    pub cookie_domain: Option<String>,
    /// Hosts an absolute `rd` may point to, besides `server.public_url`'s own origin.
    pub allowed_redirect_hosts: Vec<RedirectHost>,
    pub redirect: RedirectMode,
}

/// What an unauthenticated browser gets on a `required` route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectMode {
    /// A request whose `Accept` prefers `text/html` is sent (302) to the sign-in page.
    Html,
    /// Always the JSON 401, as without `[session]`.
    Never,
}

impl RedirectMode {
    /// Browsers ask for HTML and get the sign-in page; API clients keep their 401 JSON.
    pub const DEFAULT: Self = RedirectMode::Html;
}
