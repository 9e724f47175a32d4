//! The TOML file as written: plain serde structs with no invariants of their own.
//! `super::validate` turns them into the typed [`super::Config`] the rest of the code uses.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    pub upstream: Option<RawUpstream>,
    #[serde(default)]
    pub store: RawStore,
    pub tokens: Option<RawTokens>,
    #[serde(default)]
    pub jwt: RawJwt,
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub headers: RawHeaders,
    #[serde(default)]
    pub rate_limit: RawRateLimit,
    #[serde(default)]
    pub forward_auth: RawForwardAuth,
    #[serde(default)]
    pub accounts: RawAccounts,
    pub smtp: Option<RawSmtp>,
    pub session: Option<RawSession>,
    #[serde(default)]
    pub api_keys: RawApiKeys,
    #[serde(default)]
    pub clients: RawClients,
    #[serde(default)]
    pub log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawServer {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub worker_threads: Option<i64>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub tls: Option<RawTls>,
    pub max_connections: Option<i64>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
    pub shutdown_delay: Option<String>,
    pub max_header_count: Option<i64>,
    pub max_header_bytes: Option<i64>,
    pub handshake_timeout: Option<String>,
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawTls {
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Deserialize)]
pub struct RawUpstream {
    pub url: String,
    pub connect_timeout: Option<String>,
    pub response_timeout: Option<String>,
    pub pool_idle_timeout: Option<String>,
    pub pool_max_idle: Option<i64>,
    pub upgrades: Option<Vec<String>>,
    pub tls: Option<RawUpstreamTls>,
}

/// `[upstream.tls]`: only with an https:// `upstream.url`.
#[derive(Debug, Default, Deserialize)]
pub struct RawUpstreamTls {
    pub ca_file: Option<String>,
    pub server_name: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawStore {
    pub url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawTokens {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub algorithm: Option<String>,
    pub access_ttl: Option<String>,
    pub refresh_ttl: Option<String>,
    pub key_file: Option<String>,
    pub key_reload: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawJwt {
    pub leeway: Option<String>,
    pub max_token_bytes: Option<i64>,
    pub verified_cache_capacity: Option<i64>,
    pub verified_cache_ttl: Option<String>,
    pub key_cache_capacity: Option<i64>,
    pub jwks_refresh_cooldown: Option<String>,
    pub jwks_default_ttl: Option<String>,
    pub jwks_min_ttl: Option<String>,
    pub jwks_max_ttl: Option<String>,
    pub jwks_stale_ttl: Option<String>,
    pub jwks_fetch_timeout: Option<String>,
    pub jwks_file_poll: Option<String>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawIssuer {
    pub issuer: Option<String>,
    pub jwks_url: Option<String>,
    pub jwks_file: Option<String>,
    pub secret_file: Option<String>,
    pub discovery: Option<bool>,
    #[serde(default)]
    pub audiences: Vec<String>,
    pub algorithms: Option<Vec<String>>,
    pub permissions_claim: Option<String>,
    pub subject_claim: Option<String>,
    pub email_claim: Option<String>,
    pub name_claim: Option<String>,
    pub role_claim: Option<String>,
    pub team_claim: Option<String>,
    pub email_verified_claim: Option<String>,
    pub leeway: Option<String>,
    /// claim path -> the value (or list of values, any one) the token must carry.
    #[serde(default)]
    pub required_claims: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRoute {
    pub host: Option<String>,
    pub path: Option<String>,
    pub methods: Option<Vec<String>>,
    pub auth: Option<String>,
    pub permissions: Option<Vec<String>>,
    pub roles: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawHeaders {
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub role: Option<String>,
    pub permissions: Option<String>,
    pub team_id: Option<String>,
    pub method: Option<String>,
    pub name: Option<String>,
    pub email_verified: Option<String>,
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    #[serde(default)]
    pub strip: Vec<String>,
    pub forward_authorization: Option<bool>,
    pub max_value_bytes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRateLimit {
    pub login_per_minute: Option<i64>,
    pub lockout_after: Option<i64>,
    pub lockout_minutes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRouting {
    pub escaped_slashes: Option<String>,
    pub method_mismatch: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawForwardAuth {
    pub path: Option<String>,
    pub headers: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
    pub access: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAccounts {
    pub prefix: Option<String>,
    pub registration: Option<bool>,
    pub min_password_length: Option<i64>,
    pub max_password_length: Option<i64>,
    pub default_role: Option<String>,
    pub default_permissions: Option<Vec<String>>,
    pub refresh_grace: Option<String>,
    pub reset_ttl: Option<String>,
    pub reset_url: Option<String>,
    pub mail_outbox: Option<String>,
    pub hash_concurrency: Option<i64>,
    pub max_body_bytes: Option<i64>,
    pub request_timeout: Option<String>,
    pub admin_role: Option<String>,
    pub verify_ttl: Option<String>,
    pub verify_url: Option<String>,
    pub require_verified_email: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawApiKeys {
    pub header: Option<String>,
    pub prefix: Option<String>,
    pub pat_prefix: Option<String>,
    pub pepper_file: Option<String>,
    pub cache_capacity: Option<i64>,
    pub cache_ttl: Option<String>,
    pub negative_cache_capacity: Option<i64>,
    pub negative_cache_ttl: Option<String>,
    pub lookups_per_minute: Option<i64>,
    pub last_used_interval: Option<String>,
    pub max_api_keys: Option<i64>,
    pub max_pats: Option<i64>,
    #[serde(default)]
    pub pat_limits: BTreeMap<String, i64>,
    pub pat_default_days: Option<i64>,
    pub max_days: Option<i64>,
    pub forward_header: Option<bool>,
    pub revoke_on_password_reset: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawClients {
    pub token_ttl: Option<String>,
    pub secret_prefix: Option<String>,
    pub admin_scope: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSmtp {
    pub url: Option<String>,
    pub from: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSession {
    pub cookie_name: Option<String>,
    pub ttl: Option<String>,
    pub idle_timeout: Option<String>,
    pub cookie_domain: Option<String>,
    #[serde(default)]
    pub allowed_redirect_hosts: Vec<String>,
    pub redirect: Option<String>,
}
