//! Turns the raw serde config into the typed [`Config`], checking every value and recording
//! every problem with its key path rather than stopping at the first.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, Uri};
use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use rustls_pki_types::ServerName;

use super::defaults::*;
use super::raw::{self, RawConfig};
use super::types::*;
use super::{Problem, duration, pem, trim_secret};
use crate::routes::{Access, EscapedSlashes, HostPattern, MethodMismatch, RouteTable, RoutingPolicy, RuleSpec};

/// Checks `raw`, after reporting each key serde ignored as unknown. Any problem at all
/// fails the load: a config that is half right is never served.
pub(super) fn validate(raw: RawConfig, unknown: Vec<String>) -> Result<Config, Vec<Problem>> {
    let mut v = Validator { problems: Vec::new() };
    for key in unknown {
        v.problem(key, "unknown key");
    }
    let config = v.config(raw);
    match config {
        Some(c) if v.problems.is_empty() => Ok(c),
        _ => Err(v.problems),
    }
}

struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { key: key.into(), message: message.into() });
    }

    fn duration(&mut self, key: &str, value: &Option<String>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(text) => duration::parse(text).unwrap_or_else(|e| {
                self.problem(key, e);
                default
            }),
        }
    }

    /// A timeout: more than zero and at most a day (a zero one would spin, a huge one overflow).
    fn timeout(&mut self, key: &str, value: &Option<String>, default: Duration) -> Duration {
        let d = self.duration(key, value, default);
        if d.is_zero() || d > MAX_TIMEOUT {
            const _: () = assert!(MAX_TIMEOUT.as_secs() == 86_400, "the message below says 1d");
            self.problem(key, "must be more than zero and at most 1d");
            return default;
        }
        d
    }

    fn positive(&mut self, key: &str, value: Option<i64>, default: u64, max: u64) -> u64 {
        match value {
            None => default,
            Some(n) if n >= 1 && (n as u64) <= max => n as u64,
            Some(n) => {
                self.problem(key, format!("{n} is out of range (1 to {max})"));
                default
            }
        }
    }

    fn header(&mut self, key: &str, value: &Option<String>, default: &str) -> Option<HeaderName> {
        let name = value.as_deref().unwrap_or(default);
        if name.is_empty() {
            return None;
        }
        match HeaderName::from_str(name) {
            Ok(h) => Some(h),
            Err(_) => {
                self.problem(key, format!("`{name}` is not a valid header name"));
                None
            }
        }
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let server = self.server(&raw.server);
        let upstream = self.upstream(raw.upstream.as_ref());
        let store = StoreConfig { url: raw.store.url.clone().unwrap_or_else(|| STORE_URL.into()) };
        if !(store.url.starts_with("sqlite:")
            || store.url.starts_with("postgres://")
            || store.url.starts_with("postgresql://"))
        {
            self.problem("store.url", "must start with sqlite:, postgres:// or postgresql://");
        }
        let tokens = raw.tokens.as_ref().map(|t| self.tokens(t, &server));
        let jwt = self.jwt(&raw.jwt);
        let mut issuers: Vec<IssuerConfig> =
            raw.issuers.iter().enumerate().filter_map(|(i, r)| self.issuer(i, r, &jwt)).collect();
        for (i, issuer) in issuers.iter().enumerate() {
            if issuers[..i].iter().any(|o| o.issuer == issuer.issuer) {
                self.problem(format!("issuers[{i}].issuer"), format!("`{}` is listed twice", issuer.issuer));
            }
            if tokens.as_ref().is_some_and(|t| t.issuer == issuer.issuer) {
                self.problem(
                    format!("issuers[{i}].issuer"),
                    "is the same as tokens.issuer (Gatehouse's own tokens are trusted already)",
                );
            }
        }
        issuers.shrink_to_fit();
        let routing = self.routing(&raw.routing);
        let routes = self.routes(&raw.routes, routing);
        let headers = self.headers(&raw.headers);
        let rate_limit = RateLimitConfig {
            login_per_minute: self.positive(
                "rate_limit.login_per_minute",
                raw.rate_limit.login_per_minute,
                LOGIN_PER_MINUTE,
                MAX_COUNT,
            ) as u32,
            lockout_after: self.positive(
                "rate_limit.lockout_after",
                raw.rate_limit.lockout_after,
                LOCKOUT_AFTER,
                MAX_COUNT,
            ) as u32,
            lockout_minutes: self.positive(
                "rate_limit.lockout_minutes",
                raw.rate_limit.lockout_minutes,
                LOCKOUT_MINUTES,
                MAX_LOCKOUT_MINUTES,
            ) as u32,
        };
        let forward_auth = ForwardAuthConfig {
            path: raw.forward_auth.path.clone().unwrap_or_else(|| FORWARD_AUTH_PATH.into()),
            headers: match raw.forward_auth.headers.as_deref() {
                None => ForwardHeaders::DEFAULT,
                Some("auto") => ForwardHeaders::Auto,
                Some("original") => ForwardHeaders::Original,
                Some("forwarded") => ForwardHeaders::Forwarded,
                Some(other) => {
                    self.problem("forward_auth.headers", format!("`{other}` is not one of auto, original, forwarded"));
                    ForwardHeaders::DEFAULT
                }
            },
        };
        if !forward_auth.path.starts_with('/') {
            self.problem("forward_auth.path", "must start with `/`");
        }
        let accounts = self.accounts(&raw.accounts);
        let api_keys = self.api_keys(&raw.api_keys);
        let clients = self.clients(&raw.clients);
        if clients.secret_prefix == api_keys.prefix || clients.secret_prefix == api_keys.pat_prefix {
            self.problem("clients.secret_prefix", "must differ from api_keys.prefix and api_keys.pat_prefix");
        }
        let smtp = raw.smtp.as_ref().and_then(|r| {
            let url = r.url.clone().filter(|u| u.starts_with("smtp://") || u.starts_with("smtps://"));
            if url.is_none() {
                self.problem("smtp.url", "is required and must start with smtp:// or smtps://");
            }
            let from = r.from.clone().filter(|f| f.contains('@'));
            if from.is_none() {
                self.problem("smtp.from", "is required: the sender address, e.g. \"Gatehouse <no-reply@example.com>\"");
            }
            Some(SmtpConfig { url: url?, from: from? })
        });
        if accounts.require_verified_email && smtp.is_none() && accounts.mail_outbox.is_none() {
            self.problem(
                "accounts.require_verified_email",
                "needs mail delivery ([smtp] or accounts.mail_outbox): nobody could verify an address",
            );
        }
        let public_url = self.public_url(raw.server.public_url.as_deref(), tokens.as_ref());
        let session = raw.session.as_ref().and_then(|r| self.session(r, tokens.is_some(), public_url.as_ref()));
        let server = server.map(|s| ServerConfig { public_url, ..s });
        let log = LogConfig {
            format: match raw.log.format.as_deref() {
                None => LogFormat::DEFAULT,
                Some("text") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    self.problem("log.format", format!("`{other}` is not one of json, text"));
                    LogFormat::DEFAULT
                }
            },
            level: raw.log.level.clone().unwrap_or_else(|| LOG_LEVEL.into()),
            access: raw.log.access.unwrap_or(LOG_ACCESS),
        };
        if tracing_subscriber::EnvFilter::try_new(&log.level).is_err() {
            self.problem("log.level", format!("`{}` is not a log filter (try info, debug, warn)", log.level));
        }
        Some(Config {
            server: server?,
            upstream: upstream?,
            store,
            tokens,
            jwt,
            issuers,
            routes,
            headers,
            rate_limit,
            forward_auth,
            accounts,
            smtp,
            session,
            api_keys,
            clients,
            log,
        })
    }

    /// `server.public_url`, else `tokens.issuer` when that is an http(s) URL.
    fn public_url(&mut self, raw: Option<&str>, tokens: Option<&TokensConfig>) -> Option<url::Url> {
        let Some(text) = raw else {
            return tokens.and_then(|t| origin_only(&t.issuer).ok());
        };
        match origin_only(text) {
            Ok(url) => Some(url),
            Err(why) => {
                self.problem("server.public_url", format!("`{text}` {why}"));
                None
            }
        }
    }

    fn session(&mut self, raw: &raw::RawSession, tokens: bool, public_url: Option<&url::Url>) -> Option<SessionConfig> {
        if !tokens {
            self.problem(
                "session",
                "needs [tokens]: the people signing in are Gatehouse's own accounts, kept in its store",
            );
        }
        if public_url.is_none() {
            self.problem(
                "server.public_url",
                "is required with [session] (how browsers reach Gatehouse, e.g. https://app.example.com)",
            );
        }
        let cookie_name = raw.cookie_name.clone().unwrap_or_else(|| SESSION_COOKIE_NAME.into());
        // RFC 6265: a cookie name is a token. The prefixes are Gatehouse's to add.
        let separators = "()<>@,;:\\\"/[]?={} \t";
        if cookie_name.is_empty() || !cookie_name.chars().all(|c| c.is_ascii_graphic() && !separators.contains(c)) {
            self.problem(
                "session.cookie_name",
                format!("`{cookie_name}` is not a cookie name (letters, digits, - _ .)"),
            );
        } else if ["__host-", "__secure-"].iter().any(|p| cookie_name.to_ascii_lowercase().starts_with(p)) {
            self.problem(
                "session.cookie_name",
                "is written without a __Host- or __Secure- prefix: Gatehouse adds __Host- over HTTPS",
            );
        }
        let ttl = self.duration("session.ttl", &raw.ttl, SESSION_TTL);
        if ttl.is_zero() || ttl > MAX_SESSION_TTL {
            const _: () = assert!(MAX_SESSION_TTL.as_secs() == 90 * 86_400, "the message below says 90d");
            self.problem("session.ttl", "must be more than zero and at most 90d");
        }
        let idle_timeout = self.duration("session.idle_timeout", &raw.idle_timeout, SESSION_IDLE_TIMEOUT.min(ttl));
        if idle_timeout.is_zero() || idle_timeout > ttl {
            self.problem("session.idle_timeout", "must be more than zero and at most session.ttl");
        }
        let cookie_domain = raw.cookie_domain.as_deref().map(|d| d.trim_start_matches('.').to_ascii_lowercase());
        if let Some(domain) = &cookie_domain {
            let host = public_url.and_then(|u| u.domain());
            if super::RedirectHost::parse(domain).is_err() || domain.contains(':') {
                self.problem("session.cookie_domain", format!("`{domain}` is not a domain name"));
            } else if host.is_none_or(|h| h != domain && !h.ends_with(&format!(".{domain}"))) {
                self.problem(
                    "session.cookie_domain",
                    format!("`{domain}` must be server.public_url's host or a domain above it (browsers refuse the cookie otherwise)"),
                );
            }
        }
        let mut allowed_redirect_hosts = Vec::new();
        for (i, text) in raw.allowed_redirect_hosts.iter().enumerate() {
            match super::RedirectHost::parse(text) {
                Ok(p) => allowed_redirect_hosts.push(p),
                Err(why) => self.problem(format!("session.allowed_redirect_hosts[{i}]"), why),
            }
        }
        let redirect = match raw.redirect.as_deref() {
            None => RedirectMode::DEFAULT,
            Some("html") => RedirectMode::Html,
            Some("never") => RedirectMode::Never,
            Some(other) => {
                self.problem("session.redirect", format!("`{other}` is not one of html, never"));
                RedirectMode::DEFAULT
            }
        };
        Some(SessionConfig { cookie_name, ttl, idle_timeout, cookie_domain, allowed_redirect_hosts, redirect })
    }

    fn accounts(&mut self, raw: &raw::RawAccounts) -> AccountsConfig {
        let prefix = raw.prefix.clone().unwrap_or_else(|| ACCOUNTS_PREFIX.into()).trim_end_matches('/').to_string();
        if !prefix.starts_with('/') {
            self.problem("accounts.prefix", "must start with `/`");
        }
        let min = self.positive(
            "accounts.min_password_length",
            raw.min_password_length,
            MIN_PASSWORD_LENGTH,
            MAX_MIN_PASSWORD_LENGTH,
        ) as usize;
        let max = self.positive(
            "accounts.max_password_length",
            raw.max_password_length,
            MAX_PASSWORD_LENGTH,
            MAX_MAX_PASSWORD_LENGTH,
        ) as usize;
        if min > max {
            self.problem("accounts.min_password_length", "is larger than accounts.max_password_length");
        }
        let cores = std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(CORES_IF_UNKNOWN);
        AccountsConfig {
            prefix,
            registration: raw.registration.unwrap_or(REGISTRATION),
            min_password_length: min,
            max_password_length: max,
            default_role: raw.default_role.clone().unwrap_or_else(|| DEFAULT_ROLE.into()),
            default_permissions: raw.default_permissions.clone().unwrap_or_default(),
            refresh_grace: self.duration("accounts.refresh_grace", &raw.refresh_grace, REFRESH_GRACE),
            reset_ttl: self.duration("accounts.reset_ttl", &raw.reset_ttl, RESET_TTL),
            reset_url: raw.reset_url.clone(),
            mail_outbox: raw.mail_outbox.as_deref().map(PathBuf::from),
            hash_concurrency: self.positive(
                "accounts.hash_concurrency",
                // A machine with very many cores gets the most allowed, not a default it would refuse.
                raw.hash_concurrency.or(Some((cores * HASH_CONCURRENCY_PER_CORE).min(MAX_HASH_CONCURRENCY as i64))),
                HASH_CONCURRENCY,
                MAX_HASH_CONCURRENCY,
            ) as usize,
            max_body_bytes: self.positive(
                "accounts.max_body_bytes",
                raw.max_body_bytes,
                MAX_BODY_BYTES,
                MAX_MAX_BODY_BYTES,
            ) as usize,
            request_timeout: self.timeout("accounts.request_timeout", &raw.request_timeout, REQUEST_TIMEOUT),
            admin_role: raw.admin_role.clone().unwrap_or_else(|| ADMIN_ROLE.into()),
            verify_ttl: self.duration("accounts.verify_ttl", &raw.verify_ttl, VERIFY_TTL),
            verify_url: raw.verify_url.clone(),
            require_verified_email: raw.require_verified_email.unwrap_or(REQUIRE_VERIFIED_EMAIL),
        }
    }

    /// A credential prefix: a letter, then letters, digits or `_`, not ending in `_`.
    fn credential_prefix(&mut self, key: &str, value: &Option<String>, default: &str) -> String {
        let prefix = value.clone().unwrap_or_else(|| default.into());
        let ok = prefix.len() <= MAX_PREFIX_LEN
            && prefix.starts_with(|c: char| c.is_ascii_alphabetic())
            && !prefix.ends_with('_')
            && prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            self.problem(
                key,
                format!(
                    "`{prefix}` must be 1-{MAX_PREFIX_LEN} letters, digits or `_`, start with a letter, not end in `_`"
                ),
            );
        }
        prefix
    }

    fn api_keys(&mut self, raw: &raw::RawApiKeys) -> ApiKeysConfig {
        let header =
            self.header("api_keys.header", &raw.header, API_KEY_HEADER).unwrap_or(HeaderName::from_static("x-api-key"));
        if header == http::header::AUTHORIZATION || header == http::header::COOKIE || header == http::header::HOST {
            self.problem("api_keys.header", format!("`{header}` cannot carry API keys"));
        }
        let prefix = self.credential_prefix("api_keys.prefix", &raw.prefix, API_KEY_PREFIX);
        let pat_prefix = self.credential_prefix("api_keys.pat_prefix", &raw.pat_prefix, PAT_PREFIX);
        if prefix == pat_prefix {
            self.problem("api_keys.pat_prefix", "must differ from api_keys.prefix");
        }
        let mut pat_limits = BTreeMap::new();
        for (role, &n) in &raw.pat_limits {
            if !(0..=MAX_PAT_LIMIT).contains(&n) {
                self.problem(
                    format!("api_keys.pat_limits.{role}"),
                    format!("{n} is out of range (0 to {MAX_PAT_LIMIT})"),
                );
            }
            pat_limits.insert(role.clone(), n);
        }
        let max_pats = match raw.max_pats {
            Some(n) if !(0..=MAX_PAT_LIMIT).contains(&n) => {
                self.problem("api_keys.max_pats", format!("{n} is out of range (0 to {MAX_PAT_LIMIT})"));
                MAX_PATS
            }
            Some(n) => n,
            None => MAX_PATS,
        };
        let max_days = self.positive("api_keys.max_days", raw.max_days, MAX_DAYS, MAX_MAX_DAYS) as i64;
        let pat_default_days =
            self.positive("api_keys.pat_default_days", raw.pat_default_days, PAT_DEFAULT_DAYS, MAX_MAX_DAYS) as i64;
        if pat_default_days > max_days {
            self.problem("api_keys.pat_default_days", "is larger than api_keys.max_days");
        }
        ApiKeysConfig {
            header,
            prefix,
            pat_prefix,
            pepper_file: raw.pepper_file.as_deref().map(PathBuf::from),
            cache_capacity: self.positive(
                "api_keys.cache_capacity",
                raw.cache_capacity,
                API_KEY_CACHE_CAPACITY,
                MAX_CACHE_CAPACITY,
            ),
            cache_ttl: self.duration("api_keys.cache_ttl", &raw.cache_ttl, API_KEY_CACHE_TTL),
            negative_cache_capacity: self.positive(
                "api_keys.negative_cache_capacity",
                raw.negative_cache_capacity,
                NEGATIVE_CACHE_CAPACITY,
                MAX_CACHE_CAPACITY,
            ),
            negative_cache_ttl: self.duration(
                "api_keys.negative_cache_ttl",
                &raw.negative_cache_ttl,
                NEGATIVE_CACHE_TTL,
            ),
            lookups_per_minute: self.positive(
                "api_keys.lookups_per_minute",
                raw.lookups_per_minute,
                LOOKUPS_PER_MINUTE,
                MAX_COUNT,
            ) as u32,
            last_used_interval: self.duration(
                "api_keys.last_used_interval",
                &raw.last_used_interval,
                LAST_USED_INTERVAL,
            ),
            max_api_keys: self.positive("api_keys.max_api_keys", raw.max_api_keys, MAX_API_KEYS, MAX_MAX_API_KEYS)
                as i64,
            max_pats,
            pat_limits,
            pat_default_days,
            max_days,
            forward_header: raw.forward_header.unwrap_or(FORWARD_API_KEY_HEADER),
            revoke_on_password_reset: raw.revoke_on_password_reset.unwrap_or(REVOKE_ON_PASSWORD_RESET),
        }
    }

    fn clients(&mut self, raw: &raw::RawClients) -> ClientsConfig {
        ClientsConfig {
            token_ttl: self.duration("clients.token_ttl", &raw.token_ttl, CLIENT_TOKEN_TTL),
            secret_prefix: self.credential_prefix("clients.secret_prefix", &raw.secret_prefix, CLIENT_SECRET_PREFIX),
            admin_scope: raw.admin_scope.clone().unwrap_or_else(|| ADMIN_SCOPE.into()),
        }
    }

    fn server(&mut self, raw: &raw::RawServer) -> Option<ServerConfig> {
        let listen = raw.listen.as_deref().unwrap_or(LISTEN);
        let listen = match listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem("server.listen", format!("`{listen}` is not an address like 127.0.0.1:8080"));
                None
            }
        };
        // `1` only stands in for a value out of range, which fails the load anyway.
        let worker_threads =
            raw.worker_threads.map(|n| self.positive("server.worker_threads", Some(n), 1, MAX_WORKER_THREADS) as usize);
        let mut trusted = Vec::new();
        for (i, text) in raw.trusted_proxies.iter().enumerate() {
            let parsed = text.parse::<IpNet>().or_else(|_| text.parse::<IpAddr>().map(IpNet::from));
            match parsed {
                Ok(net) => trusted.push(net),
                Err(_) => self.problem(
                    format!("server.trusted_proxies[{i}]"),
                    format!("`{text}` is not an IP address or CIDR range"),
                ),
            }
        }
        let tls = raw
            .tls
            .as_ref()
            .map(|t| TlsConfig { cert_file: PathBuf::from(&t.cert_file), key_file: PathBuf::from(&t.key_file) });
        if let Some(tls) = &tls {
            for (key, path) in [("server.tls.cert_file", &tls.cert_file), ("server.tls.key_file", &tls.key_file)] {
                if !path.is_file() {
                    self.problem(key, format!("`{}` is not a readable file", path.display()));
                }
            }
        }
        Some(ServerConfig {
            public_url: None,
            listen: listen?,
            worker_threads,
            trusted_proxies: trusted,
            tls,
            max_connections: self.positive(
                "server.max_connections",
                raw.max_connections,
                MAX_CONNECTIONS,
                MAX_MAX_CONNECTIONS,
            ) as usize,
            header_read_timeout: self.timeout(
                "server.header_read_timeout",
                &raw.header_read_timeout,
                HEADER_READ_TIMEOUT,
            ),
            idle_timeout: self.timeout("server.idle_timeout", &raw.idle_timeout, IDLE_TIMEOUT),
            shutdown_grace: self.timeout("server.shutdown_grace", &raw.shutdown_grace, SHUTDOWN_GRACE),
            shutdown_delay: {
                let d = self.duration("server.shutdown_delay", &raw.shutdown_delay, SHUTDOWN_DELAY);
                if d > MAX_SHUTDOWN_DELAY {
                    const _: () = assert!(MAX_SHUTDOWN_DELAY.as_secs() == 300, "the message below says 5m");
                    self.problem("server.shutdown_delay", "must be at most 5m");
                }
                d.min(MAX_SHUTDOWN_DELAY)
            },
            max_header_count: self.positive(
                "server.max_header_count",
                raw.max_header_count,
                MAX_HEADER_COUNT,
                MAX_MAX_HEADER_COUNT,
            ) as usize,
            max_header_bytes: match raw.max_header_bytes {
                Some(n) if !(MIN_MAX_HEADER_BYTES..=MAX_MAX_HEADER_BYTES).contains(&n) => {
                    self.problem(
                        "server.max_header_bytes",
                        format!("{n} is out of range ({MIN_MAX_HEADER_BYTES} to {MAX_MAX_HEADER_BYTES})"),
                    );
                    MAX_HEADER_BYTES as usize
                }
                n => n.unwrap_or(MAX_HEADER_BYTES) as usize,
            },
            handshake_timeout: self.timeout("server.handshake_timeout", &raw.handshake_timeout, HANDSHAKE_TIMEOUT),
            metrics_listen: raw.metrics_listen.as_deref().and_then(|text| match text.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.problem("server.metrics_listen", format!("`{text}` is not an address like 0.0.0.0:9090"));
                    None
                }
            }),
        })
    }

    fn upstream(&mut self, raw: Option<&raw::RawUpstream>) -> Option<UpstreamConfig> {
        let Some(raw) = raw else {
            self.problem("upstream.url", "is required: the address of the app Gatehouse protects");
            return None;
        };
        let url = match raw.url.parse::<Uri>() {
            Ok(u)
                if matches!(u.scheme_str(), Some("http" | "https"))
                    && u.authority().is_some()
                    && u.query().is_none() =>
            {
                Some(u)
            }
            _ => {
                self.problem(
                    "upstream.url",
                    format!("`{}` is not an http:// or https:// URL without a query", raw.url),
                );
                None
            }
        };
        let https = url.as_ref().is_some_and(|u| u.scheme_str() == Some("https"));
        let tls = match (&raw.tls, https) {
            (tls, true) => Some(self.upstream_tls(tls.as_ref())),
            (Some(_), false) if url.is_some() => {
                self.problem("upstream.tls", "is only for an https:// upstream.url");
                None
            }
            _ => None,
        };
        Some(UpstreamConfig {
            url: url?,
            connect_timeout: self.timeout("upstream.connect_timeout", &raw.connect_timeout, CONNECT_TIMEOUT),
            response_timeout: self.timeout("upstream.response_timeout", &raw.response_timeout, RESPONSE_TIMEOUT),
            pool_idle_timeout: self.duration("upstream.pool_idle_timeout", &raw.pool_idle_timeout, POOL_IDLE_TIMEOUT),
            pool_max_idle: self.positive("upstream.pool_max_idle", raw.pool_max_idle, POOL_MAX_IDLE, MAX_POOL_MAX_IDLE)
                as usize,
            upgrades: self.upgrades(raw.upgrades.as_deref()),
            tls,
        })
    }

    /// `[upstream.tls]`, its files read now so a missing or empty one fails the load.
    fn upstream_tls(&mut self, raw: Option<&raw::RawUpstreamTls>) -> UpstreamTlsConfig {
        let Some(raw) = raw else {
            return UpstreamTlsConfig::default();
        };
        let ca_file = raw.ca_file.as_deref().map(PathBuf::from);
        if let Some(path) = &ca_file
            && let Err(e) = pem::certificates(path)
        {
            self.problem("upstream.tls.ca_file", e);
        }
        let server_name = raw.server_name.as_deref().and_then(|name| {
            // An IPv6 address may be written as in a URL.
            let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
            match ServerName::try_from(bare.to_string()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.problem("upstream.tls.server_name", format!("`{name}` is not a DNS name or IP address"));
                    None
                }
            }
        });
        let client_cert = match (&raw.cert_file, &raw.key_file) {
            (Some(cert), Some(key)) => {
                let cert = ClientCertConfig { cert_file: PathBuf::from(cert), key_file: PathBuf::from(key) };
                if let Err(e) = pem::certificates(&cert.cert_file) {
                    self.problem("upstream.tls.cert_file", e);
                }
                if let Err(e) = pem::private_key(&cert.key_file) {
                    self.problem("upstream.tls.key_file", e);
                }
                Some(cert)
            }
            (Some(_), None) => {
                self.problem(
                    "upstream.tls.key_file",
                    "is required with upstream.tls.cert_file (the client certificate's key)",
                );
                None
            }
            (None, Some(_)) => {
                self.problem(
                    "upstream.tls.cert_file",
                    "is required with upstream.tls.key_file (the client certificate)",
                );
                None
            }
            (None, None) => None,
        };
        UpstreamTlsConfig { ca_file, server_name, client_cert }
    }

    fn upgrades(&mut self, raw: Option<&[String]>) -> Vec<String> {
        let Some(list) = raw else {
            return UPGRADES.iter().map(|u| u.to_string()).collect();
        };
        let mut out = Vec::new();
        for (i, name) in list.iter().enumerate() {
            let key = format!("upstream.upgrades[{i}]");
            let lower = name.to_ascii_lowercase();
            if lower.is_empty() || !lower.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`|~/".contains(&b))
            {
                self.problem(key, format!("`{name}` is not a protocol name"));
            } else if lower.starts_with("h2") || lower.starts_with("http/") {
                // Splicing a new HTTP version past Gatehouse would bypass every later request's checks.
                self.problem(key, format!("`{name}` cannot be allowed: it would carry requests Gatehouse never sees"));
            } else {
                out.push(lower);
            }
        }
        out
    }

    fn algorithm(&mut self, key: &str, text: &str) -> Option<Algorithm> {
        match Algorithm::from_str(text) {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem(
                    key,
                    format!("`{text}` is not a supported algorithm (HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384, EdDSA)"),
                );
                None
            }
        }
    }

    fn tokens(&mut self, raw: &raw::RawTokens, server: &Option<ServerConfig>) -> TokensConfig {
        let issuer = raw.issuer.clone().unwrap_or_else(|| match server {
            Some(s) => format!("http://{}", s.listen),
            None => TOKENS_ISSUER_WITHOUT_LISTEN.into(),
        });
        let algorithm = match raw.algorithm.as_deref() {
            None => TOKENS_ALGORITHM,
            Some(text) => self.algorithm("tokens.algorithm", text).unwrap_or(TOKENS_ALGORITHM),
        };
        TokensConfig {
            issuer,
            audience: raw.audience.clone().unwrap_or_else(|| TOKENS_AUDIENCE.into()),
            algorithm,
            access_ttl: self.duration("tokens.access_ttl", &raw.access_ttl, ACCESS_TTL),
            refresh_ttl: self.duration("tokens.refresh_ttl", &raw.refresh_ttl, REFRESH_TTL),
            key_file: raw.key_file.as_deref().map(PathBuf::from),
            key_reload: self.duration("tokens.key_reload", &raw.key_reload, KEY_RELOAD),
        }
    }

    fn jwt(&mut self, raw: &raw::RawJwt) -> JwtConfig {
        let cfg = JwtConfig {
            leeway: self.duration("jwt.leeway", &raw.leeway, LEEWAY),
            max_token_bytes: self.positive(
                "jwt.max_token_bytes",
                raw.max_token_bytes,
                MAX_TOKEN_BYTES,
                MAX_MAX_TOKEN_BYTES,
            ) as usize,
            verified_cache_capacity: match raw.verified_cache_capacity {
                // 0 turns the verified-token cache off (every request checks the signature).
                Some(0) => 0,
                other => {
                    self.positive("jwt.verified_cache_capacity", other, VERIFIED_CACHE_CAPACITY, MAX_CACHE_CAPACITY)
                }
            },
            verified_cache_ttl: self.duration("jwt.verified_cache_ttl", &raw.verified_cache_ttl, VERIFIED_CACHE_TTL),
            key_cache_capacity: self.positive(
                "jwt.key_cache_capacity",
                raw.key_cache_capacity,
                KEY_CACHE_CAPACITY,
                MAX_KEY_CACHE_CAPACITY,
            ),
            jwks_refresh_cooldown: self.duration(
                "jwt.jwks_refresh_cooldown",
                &raw.jwks_refresh_cooldown,
                JWKS_REFRESH_COOLDOWN,
            ),
            jwks_default_ttl: self.duration("jwt.jwks_default_ttl", &raw.jwks_default_ttl, JWKS_DEFAULT_TTL),
            jwks_min_ttl: self.duration("jwt.jwks_min_ttl", &raw.jwks_min_ttl, JWKS_MIN_TTL),
            jwks_max_ttl: self.duration("jwt.jwks_max_ttl", &raw.jwks_max_ttl, JWKS_MAX_TTL),
            jwks_stale_ttl: self.duration("jwt.jwks_stale_ttl", &raw.jwks_stale_ttl, JWKS_STALE_TTL),
            jwks_fetch_timeout: self.duration("jwt.jwks_fetch_timeout", &raw.jwks_fetch_timeout, JWKS_FETCH_TIMEOUT),
            jwks_file_poll: self.duration("jwt.jwks_file_poll", &raw.jwks_file_poll, JWKS_FILE_POLL),
            ca_file: raw.ca_file.as_deref().map(PathBuf::from),
        };
        if let Some(path) = &cfg.ca_file {
            let certs = std::fs::read(path).map(|pem| reqwest::Certificate::from_pem_bundle(&pem).map(|c| c.len()));
            match certs {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => self.problem("jwt.ca_file", format!("`{}` holds no PEM certificate", path.display())),
                Err(e) => self.problem("jwt.ca_file", format!("`{}` is not readable: {e}", path.display())),
            }
        }
        if cfg.jwks_min_ttl > cfg.jwks_max_ttl {
            self.problem("jwt.jwks_min_ttl", "is larger than jwt.jwks_max_ttl");
        }
        if cfg.jwks_file_poll.is_zero() {
            self.problem("jwt.jwks_file_poll", "must be more than zero");
        }
        cfg
    }

    fn issuer(&mut self, i: usize, raw: &raw::RawIssuer, jwt: &JwtConfig) -> Option<IssuerConfig> {
        let key = |field: &str| format!("issuers[{i}].{field}");
        let Some(issuer) = raw.issuer.clone().filter(|s| !s.is_empty()) else {
            self.problem(key("issuer"), "is required (the exact `iss` value of the tokens)");
            return None;
        };
        let mut sources = Vec::new();
        if let Some(url) = &raw.jwks_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                self.problem(key("jwks_url"), format!("`{url}` is not an http(s) URL"));
            }
            sources.push(KeySourceConfig::JwksUrl(url.clone()));
        }
        if let Some(file) = &raw.jwks_file {
            sources.push(KeySourceConfig::JwksFile(PathBuf::from(file)));
        }
        if let Some(file) = &raw.secret_file {
            sources.push(KeySourceConfig::Secret(PathBuf::from(file)));
        }
        if raw.discovery == Some(true) {
            sources.push(KeySourceConfig::Discovery);
        }
        let source = match sources.len() {
            0 if raw.discovery == Some(false) => {
                self.problem(
                    key("jwks_url"),
                    "no key source: set jwks_url, jwks_file or secret_file, or allow discovery",
                );
                return None;
            }
            0 => KeySourceConfig::Discovery,
            1 => sources.pop().expect("one source"),
            _ => {
                self.problem(key("jwks_url"), "give only one of jwks_url, jwks_file, secret_file, discovery");
                return None;
            }
        };
        if source == KeySourceConfig::Discovery && !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            self.problem(key("issuer"), "discovery needs an http(s) issuer URL; or set jwks_url / jwks_file");
        }
        let is_secret = matches!(source, KeySourceConfig::Secret(_));
        let algorithms: Vec<Algorithm> = match &raw.algorithms {
            None if is_secret => SECRET_ALGORITHMS.to_vec(),
            None => ISSUER_ALGORITHMS.to_vec(),
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(j, a)| self.algorithm(&format!("issuers[{i}].algorithms[{j}]"), a))
                .collect(),
        };
        if algorithms.is_empty() {
            self.problem(key("algorithms"), "must list at least one algorithm");
        }
        for alg in &algorithms {
            let hmac = matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
            if hmac && !is_secret {
                self.problem(
                    key("algorithms"),
                    format!("{alg:?} needs secret_file (an HMAC key is never taken from a JWKS)"),
                );
            }
            if !hmac && is_secret {
                self.problem(key("algorithms"), format!("{alg:?} cannot be used with secret_file"));
            }
        }
        if let KeySourceConfig::Secret(path) | KeySourceConfig::JwksFile(path) = &source {
            if !path.is_file() {
                self.problem(
                    key(if is_secret { "secret_file" } else { "jwks_file" }),
                    format!("`{}` is not a readable file", path.display()),
                );
            } else if is_secret {
                let len = std::fs::read(path).map(|b| trim_secret(&b).len()).unwrap_or(0);
                if len < MIN_HMAC_SECRET_BYTES {
                    self.problem(
                        key("secret_file"),
                        format!("holds {len} bytes; an HMAC secret needs at least {MIN_HMAC_SECRET_BYTES}"),
                    );
                }
            }
        }
        Some(IssuerConfig {
            issuer,
            source,
            audiences: raw.audiences.clone(),
            algorithms,
            claims: ClaimPaths::build(raw),
            leeway: self.duration(&key("leeway"), &raw.leeway, jwt.leeway),
            required_claims: self.required_claims(&key("required_claims"), &raw.required_claims),
        })
    }

    /// `required_claims`: `{ claim = value }`, `{ claim = [any, of, these] }`; a dotted key
    /// (or a nested table) names a nested claim.
    fn required_claims(&mut self, key: &str, raw: &BTreeMap<String, toml::Value>) -> Vec<RequiredClaim> {
        fn scalar(v: &toml::Value) -> Option<serde_json::Value> {
            match v {
                toml::Value::String(s) => Some(serde_json::Value::String(s.clone())),
                toml::Value::Integer(n) => Some(serde_json::Value::from(*n)),
                toml::Value::Float(f) => serde_json::Number::from_f64(*f).map(serde_json::Value::Number),
                toml::Value::Boolean(b) => Some(serde_json::Value::Bool(*b)),
                _ => None,
            }
        }
        let mut out = Vec::new();
        let mut pending: Vec<(String, &toml::Value)> = raw.iter().map(|(k, v)| (k.clone(), v)).collect();
        while let Some((name, value)) = pending.pop() {
            let at = format!("{key}.{name}");
            let path: Vec<String> = name.split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                self.problem(at, "is not a claim path (names separated by single dots)");
                continue;
            }
            let accepted = match value {
                toml::Value::Table(t) => {
                    pending.extend(t.iter().map(|(k, v)| (format!("{name}.{k}"), v)));
                    continue;
                }
                toml::Value::Array(items) if items.is_empty() => {
                    self.problem(at, "is an empty list: no token could match; list at least one value");
                    continue;
                }
                toml::Value::Array(items) => items.iter().map(scalar).collect::<Option<Vec<_>>>(),
                single => scalar(single).map(|v| vec![v]),
            };
            match accepted {
                Some(accepted) => out.push(RequiredClaim { name, path, accepted }),
                None => self.problem(at, "must be a string, number or boolean, or a list of them"),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn routing(&mut self, raw: &raw::RawRouting) -> RoutingPolicy {
        let escaped_slashes = match raw.escaped_slashes.as_deref() {
            None => ESCAPED_SLASHES,
            Some("reject") => EscapedSlashes::Reject,
            Some("unescape") => EscapedSlashes::Unescape,
            Some("keep") => EscapedSlashes::Keep,
            Some(other) => {
                self.problem("routing.escaped_slashes", format!("`{other}` is not one of reject, unescape, keep"));
                ESCAPED_SLASHES
            }
        };
        let method_mismatch = match raw.method_mismatch.as_deref() {
            None => METHOD_MISMATCH,
            Some("deny") => MethodMismatch::Deny,
            Some("next") => MethodMismatch::Next,
            Some(other) => {
                self.problem("routing.method_mismatch", format!("`{other}` is not one of deny, next"));
                METHOD_MISMATCH
            }
        };
        RoutingPolicy { escaped_slashes, method_mismatch }
    }

    fn routes(&mut self, raw: &[raw::RawRoute], policy: RoutingPolicy) -> RouteTable {
        let mut specs = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let key = |f: &str| format!("routes[{i}].{f}");
            let Some(path) = r.path.clone() else {
                self.problem(key("path"), "is required (a path prefix such as `/` or `/api/`)");
                continue;
            };
            let path = if path.contains('*') {
                self.problem(key("path"), format!("`{path}`: a path is a literal prefix (`/admin/` covers everything below it); `*` is not a wildcard"));
                path
            } else if !path.starts_with('/') {
                self.problem(key("path"), format!("`{path}` must start with `/`"));
                path
            } else {
                match crate::routes::path::canonicalize(&path, policy.escaped_slashes) {
                    Ok(c) => c.matched().to_string(),
                    Err(e) => {
                        self.problem(key("path"), format!("`{path}`: {e}; requests for it would be refused"));
                        path
                    }
                }
            };
            let host = match r.host.as_deref() {
                None => HostPattern::Any,
                Some(h) => HostPattern::parse(h).unwrap_or_else(|_| {
                    self.problem(
                        key("host"),
                        format!("`{h}` is not a host name, `*.domain` or `*` (ports are never matched)"),
                    );
                    HostPattern::Any
                }),
            };
            let mut methods = Vec::new();
            for (j, m) in r.methods.iter().flatten().enumerate() {
                match http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => methods.push(m),
                    Err(_) => self.problem(format!("routes[{i}].methods[{j}]"), format!("`{m}` is not an HTTP method")),
                }
            }
            let permissions = r.permissions.clone().unwrap_or_default();
            let roles = r.roles.clone().unwrap_or_default();
            let access = match r.auth.as_deref() {
                Some("public") if !permissions.is_empty() || !roles.is_empty() => {
                    self.problem(key("auth"), "is `public` but the route also requires permissions or roles");
                    Access::Public
                }
                Some("public") => Access::Public,
                None | Some("required") => Access::Authenticated { permissions, roles },
                Some(other) => {
                    self.problem(key("auth"), format!("`{other}` is not one of public, required"));
                    Access::Public
                }
            };
            specs.push(RuleSpec { host, path, methods, access });
        }
        RouteTable::compile(specs, policy)
    }

    fn headers(&mut self, raw: &raw::RawHeaders) -> HeadersConfig {
        let user_id = self.header("headers.user_id", &raw.user_id, HEADER_USER_ID);
        let email = self.header("headers.email", &raw.email, HEADER_EMAIL);
        let role = self.header("headers.role", &raw.role, HEADER_ROLE);
        let permissions = self.header("headers.permissions", &raw.permissions, HEADER_PERMISSIONS);
        let team_id = self.header("headers.team_id", &raw.team_id, HEADER_TEAM_ID);
        let method = self.header("headers.method", &raw.method, HEADER_METHOD);
        let name = self.header("headers.name", &raw.name, HEADER_NAME);
        let email_verified = self.header("headers.email_verified", &raw.email_verified, HEADER_EMAIL_VERIFIED);
        let mut claims = Vec::new();
        for (claim, header) in &raw.claims {
            if let Some(h) = self.header(&format!("headers.claims.{claim}"), &Some(header.clone()), "") {
                claims.push((claim.split('.').map(str::to_string).collect(), h));
            }
        }
        let mut reserved: Vec<HeaderName> = [&user_id, &email, &role, &permissions, &team_id, &method, &name]
            .into_iter()
            .flatten()
            .cloned()
            .chain(claims.iter().map(|(_, h)| h.clone()))
            .collect();
        reserved.extend(email_verified.clone());
        let identity = reserved.clone();
        // A renamed or disabled header keeps its default name reserved: an upstream written
        // against the defaults must never read a client's copy of them.
        reserved.extend(IDENTITY_HEADERS.iter().map(|h| HeaderName::from_static(h)));
        for (i, s) in raw.strip.iter().enumerate() {
            if let Some(h) = self.header(&format!("headers.strip[{i}]"), &Some(s.clone()), "") {
                reserved.push(h);
            }
        }
        // Headers that frame, route or describe the request: a token's claim must never set them.
        let framing = [
            "authorization",
            "host",
            "cookie",
            "content-length",
            "content-type",
            "transfer-encoding",
            "connection",
            "upgrade",
            "te",
            "trailer",
            "keep-alive",
            "proxy-authorization",
            "forwarded",
            "x-real-ip",
            "x-request-id",
        ];
        for name in &identity {
            if framing.contains(&name.as_str()) || name.as_str().starts_with("x-forwarded-") {
                self.problem("headers", format!("`{name}` cannot be used as an identity header"));
            }
        }
        reserved.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        reserved.dedup();
        let max = self.positive("headers.max_value_bytes", raw.max_value_bytes, MAX_VALUE_BYTES, MAX_MAX_VALUE_BYTES)
            as usize;
        HeadersConfig {
            user_id,
            email,
            role,
            permissions,
            team_id,
            method,
            name,
            email_verified,
            claims,
            reserved,
            identity,
            forward_authorization: raw.forward_authorization.unwrap_or(FORWARD_AUTHORIZATION),
            max_value_bytes: max,
        }
    }
}

/// An http(s) URL that is an origin and nothing more (a trailing `/` is fine).
fn origin_only(text: &str) -> Result<url::Url, &'static str> {
    let url = url::Url::parse(text).map_err(|_| "is not a URL")?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http:// or https:// URL with a host");
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err("must hold no user, query or fragment");
    }
    if url.path() != "/" {
        return Err("must have no path: Gatehouse is served at the root of its origin");
    }
    Ok(url)
}
