//! Every default of the configuration and the bounds the validator enforces, named, each with
//! the reason for its value. README.md's configuration reference states the same values.
//!
//! A default is named after its key (`MAX_CONNECTIONS` is `server.max_connections`' default);
//! `MAX_<key>` / `MIN_<key>` is the range that key accepts.

use std::time::Duration;

use jsonwebtoken::Algorithm;

use crate::routes::{EscapedSlashes, MethodMismatch};

// ---- bounds shared by several keys

/// A timeout of zero would fire at once (or spin); past a day it is a typo, and very large
/// ones overflow `Instant` arithmetic.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Cache sizes: far above any real working set, low enough that a typo cannot ask for
/// gigabytes up front.
pub const MAX_CACHE_CAPACITY: u64 = 100_000_000;
/// Counts and per-minute rates (`login_per_minute`, `lockout_after`, `lookups_per_minute`):
/// a million is beyond any real limit, so larger is a typo.
pub const MAX_COUNT: u64 = 1_000_000;

// ---- [server]

/// Loopback: the sidecar case (the app in the same pod); exposing Gatehouse is an explicit
/// choice. Port 8080 is the conventional unprivileged HTTP port.
pub const LISTEN: &str = "127.0.0.1:8080";
/// A tokio runtime with more workers than this is a typo, not a machine.
pub const MAX_WORKER_THREADS: u64 = 1024;
/// Conventional; far above what one sidecar serves, and each connection costs a descriptor.
pub const MAX_CONNECTIONS: u64 = 10_000;
pub const MAX_MAX_CONNECTIONS: u64 = 1_000_000;
/// Slow-loris guard: real clients send their headers in milliseconds.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Conventional keep-alive idle time (the same as common load balancers').
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Kubernetes' default `terminationGracePeriodSeconds` is 30 s: a longer drain is cut by SIGKILL.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Off outside Kubernetes, so Ctrl-C stops at once; the Helm chart sets a few seconds.
pub const SHUTDOWN_DELAY: Duration = Duration::ZERO;
/// Endpoint updates reach every node within seconds; longer only delays a rollout.
pub const MAX_SHUTDOWN_DELAY: Duration = Duration::from_secs(300);
/// hyper's own default; legitimate requests carry a few dozen.
pub const MAX_HEADER_COUNT: u64 = 100;
pub const MAX_MAX_HEADER_COUNT: u64 = 1000;
/// Room for large cookies and tokens (twice nginx's default 32 KiB of header buffers).
pub const MAX_HEADER_BYTES: i64 = 64 * 1024;
/// hyper's read buffer cannot be smaller than 8 KiB.
pub const MIN_MAX_HEADER_BYTES: i64 = 8192;
/// A head past 1 MiB is an attack, not a request.
pub const MAX_MAX_HEADER_BYTES: i64 = 1 << 20;
/// Slow-loris guard for TLS, like `HEADER_READ_TIMEOUT`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

// ---- [upstream]

/// The upstream is usually on localhost: a connect that takes longer means it is down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Conventional for proxies (nginx's `proxy_read_timeout` is 60 s too).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// hyper-util's client default.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Conventional; enough idle connections for bursts to one app.
pub const POOL_MAX_IDLE: u64 = 256;
pub const MAX_POOL_MAX_IDLE: u64 = 100_000;
/// The one upgrade apps commonly need; `h2c` and `http/*` can never be listed (they would
/// carry requests Gatehouse never sees).
pub const UPGRADES: [&str; 1] = ["websocket"];

// ---- [routing]

/// Refused: an app that decodes `%2F` would see a different path than the one matched.
pub const ESCAPED_SLASHES: EscapedSlashes = EscapedSlashes::Reject;
/// Fail closed: a method no rule of the matched path allows is 405, never a looser later rule.
pub const METHOD_MISMATCH: MethodMismatch = MethodMismatch::Deny;

// ---- [store]

/// An embedded file: one command starts a working Gatehouse (DESIGN.md, "Storage").
pub const STORE_URL: &str = "sqlite://data/gatehouse.db";

// ---- [tokens]

/// Only stands in while `server.listen` is invalid (the load fails then anyway), so that the
/// other sections are still checked.
pub const TOKENS_ISSUER_WITHOUT_LISTEN: &str = "gatehouse";
/// The product's name: an audience that says the token is for this Gatehouse.
pub const TOKENS_AUDIENCE: &str = "gatehouse";
/// Asymmetric (verifiers need no secret), small keys and signatures, fast to sign, and
/// supported by every JWT library.
pub const TOKENS_ALGORITHM: Algorithm = Algorithm::ES256;
/// Short, so a leaked access token soon expires; the refresh token covers the rest.
pub const ACCESS_TTL: Duration = Duration::from_secs(900);
/// The refresh-token lifetime seed 001 documents (and seed 000's token lifetime).
pub const REFRESH_TTL: Duration = Duration::from_secs(7 * 86_400);
/// Well inside `keys rotate`'s default `--activate-in` of 30 s, so every replica has loaded a
/// new key before it starts signing.
pub const KEY_RELOAD: Duration = Duration::from_secs(10);

// ---- [jwt]

/// Typical clock skew between hosts.
pub const LEEWAY: Duration = Duration::from_secs(30);
/// Real JWTs take 1-2 KiB; 8 KiB leaves room for large claim sets while a huge one is
/// refused before it is decoded.
pub const MAX_TOKEN_BYTES: u64 = 8192;
pub const MAX_MAX_TOKEN_BYTES: u64 = 1 << 20;
/// Conventional; a few tens of MiB at most for busy gateways.
pub const VERIFIED_CACHE_CAPACITY: u64 = 100_000;
/// Bounds how long a withdrawn key still passes a token it already verified.
pub const VERIFIED_CACHE_TTL: Duration = Duration::from_secs(300);
/// Far more keys than any issuer publishes; bounds memory against made-up `kid`s.
pub const KEY_CACHE_CAPACITY: u64 = 10_000;
pub const MAX_KEY_CACHE_CAPACITY: u64 = 10_000_000;
/// A flood of unknown `kid`s costs one fetch per 5 s, while a real rotation is still
/// picked up within seconds.
pub const JWKS_REFRESH_COOLDOWN: Duration = Duration::from_secs(5);
/// Conventional re-fetch interval when the JWKS response sets no `max-age`.
pub const JWKS_DEFAULT_TTL: Duration = Duration::from_secs(300);
/// A `max-age` of 0 (or a few seconds) would refetch on nearly every request.
pub const JWKS_MIN_TTL: Duration = Duration::from_secs(30);
/// A key removed from the set is noticed within a day even if `max-age` says a year.
pub const JWKS_MAX_TTL: Duration = Duration::from_secs(86_400);
/// Rides out an hour's IdP outage; bounded, so a failing endpoint cannot pin old keys forever.
pub const JWKS_STALE_TTL: Duration = Duration::from_secs(3600);
/// Conventional; a JWKS endpoint answers in milliseconds.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A changed key file is in use within seconds; a `stat` every 2 s is negligible.
pub const JWKS_FILE_POLL: Duration = Duration::from_secs(2);

// ---- [[issuers]]

/// What OIDC providers sign with (RS256 is OIDC's mandatory algorithm; ES256 the common
/// modern one). HMAC is never a default for a public key source.
pub const ISSUER_ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];
/// With `secret_file`: the HMAC every library supports.
pub const SECRET_ALGORITHMS: [Algorithm; 1] = [Algorithm::HS256];
/// RFC 7518 §3.2: an HMAC key must be at least as long as the hash (256 bits for HS256).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
// Claim names: the registered and OIDC standard claims, and the names Gatehouse's own tokens use.
pub const SUBJECT_CLAIM: &str = "sub";
pub const EMAIL_CLAIM: &str = "email";
pub const NAME_CLAIM: &str = "name";
pub const ROLE_CLAIM: &str = "role";
pub const TEAM_CLAIM: &str = "team_id";
pub const PERMISSIONS_CLAIM: &str = "permissions";
pub const EMAIL_VERIFIED_CLAIM: &str = "email_verified";

// ---- [headers]
// Header names: DESIGN.md's contract (README.md's reference); `name` is off unless named.

pub const HEADER_USER_ID: &str = "X-Auth-User-Id";
pub const HEADER_EMAIL: &str = "X-Auth-Email";
pub const HEADER_ROLE: &str = "X-Auth-Role";
pub const HEADER_PERMISSIONS: &str = "X-Auth-Permissions";
pub const HEADER_TEAM_ID: &str = "X-Auth-Team-Id";
pub const HEADER_METHOD: &str = "X-Auth-Method";
pub const HEADER_NAME: &str = "";
pub const HEADER_EMAIL_VERIFIED: &str = "X-Auth-Email-Verified";

/// The default identity header names (lowercase, as `HeaderName` keeps them), stripped from
/// requests whatever `[headers]` says: an upstream written against the defaults must never
/// read a client's copy of them.
pub const IDENTITY_HEADERS: [&str; 7] = [
    "x-auth-user-id",
    "x-auth-email",
    "x-auth-email-verified",
    "x-auth-role",
    "x-auth-permissions",
    "x-auth-team-id",
    "x-auth-method",
];
/// The upstream is protected by Gatehouse; it should not need (or see) the raw token.
pub const FORWARD_AUTHORIZATION: bool = false;
/// Longer than any sane id, email or permission list; also keeps headers well inside
/// upstreams' header limits.
pub const MAX_VALUE_BYTES: u64 = 4096;
pub const MAX_MAX_VALUE_BYTES: u64 = 65_536;

// ---- [rate_limit]

/// Seed 003's documented limit (5 logins a minute per IP), DESIGN.md's security default.
pub const LOGIN_PER_MINUTE: u64 = 5;
/// Seed 003's lockout: after 10 failed attempts...
pub const LOCKOUT_AFTER: u64 = 10;
/// ...for 15 minutes.
pub const LOCKOUT_MINUTES: u64 = 15;
/// A year, in minutes: a longer lock is a typo (an admin unlocks by hand).
pub const MAX_LOCKOUT_MINUTES: u64 = 525_600;

// ---- [forward_auth]

/// DESIGN.md's contract; what nginx, Traefik and Caddy examples point at.
pub const FORWARD_AUTH_PATH: &str = "/verify";
// `forward_auth.headers` defaults to `ForwardHeaders::DEFAULT` (in types.rs, beside the enum).

// ---- [accounts]

/// DESIGN.md's contract (`/auth/register`, `/auth/login`, ...).
pub const ACCOUNTS_PREFIX: &str = "/auth";
/// Open, like the seed products' `/auth/register`: an app without accounts gets
/// self-service sign-up (set false when an admin or an IdP creates accounts).
pub const REGISTRATION: bool = true;
/// NIST SP 800-63B's long-standing minimum; seed 002 allows 6, the weaker choice.
pub const MIN_PASSWORD_LENGTH: u64 = 8;
/// Long enough for any passphrase or manager, short enough to bound hashing work.
pub const MAX_PASSWORD_LENGTH: u64 = 1024;
pub const MAX_MIN_PASSWORD_LENGTH: u64 = 1024;
pub const MAX_MAX_PASSWORD_LENGTH: u64 = 65_536;
/// Conventional name for an ordinary account.
pub const DEFAULT_ROLE: &str = "user";
/// Two tabs refreshing at once stay signed in; a replay later than this is treated as theft.
pub const REFRESH_GRACE: Duration = Duration::from_secs(10);
/// Seed 002's (and DESIGN.md's) 15 minutes for reset links.
pub const RESET_TTL: Duration = Duration::from_secs(900);
/// Each hash holds ~19 MiB and a core: two per core keeps cores busy without unbounded memory.
pub const HASH_CONCURRENCY_PER_CORE: i64 = 2;
/// When the core count cannot be read.
pub const CORES_IF_UNKNOWN: i64 = 2;
/// Only stands in while `accounts.hash_concurrency` is out of range (the load fails then).
pub const HASH_CONCURRENCY: u64 = 4;
pub const MAX_HASH_CONCURRENCY: u64 = 1024;
/// Far above any auth-API body (a registration with a profile); larger is 400.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;
pub const MAX_MAX_BODY_BYTES: u64 = 1 << 20;
/// Conventional; argon2 hashing takes well under a second, so only a stalled body is this slow.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Conventional name for administrators.
pub const ADMIN_ROLE: &str = "admin";
/// A day: time to find the mail, short enough that an old inbox is not a way in.
pub const VERIFY_TTL: Duration = Duration::from_secs(86_400);
/// Off: turning it on for existing users locks them out until they verify.
pub const REQUIRE_VERIFIED_EMAIL: bool = false;

// ---- [api_keys]

/// The header seed 001 sends API keys in.
pub const API_KEY_HEADER: &str = "X-API-KEY";
/// `gk_` (Gatehouse key), `gpat_` and `gcs_` (client secret): distinct prefixes let secret
/// scanners tell the kinds apart and keep a key from being taken for another kind.
pub const API_KEY_PREFIX: &str = "gk";
pub const PAT_PREFIX: &str = "gpat";
pub const CLIENT_SECRET_PREFIX: &str = "gcs";
/// Room for any vendor-style prefix (`sk_live`, `hp_pat`) while keys stay short.
pub const MAX_PREFIX_LEN: usize = 16;
/// Conventional; covers every key of a busy deployment.
pub const API_KEY_CACHE_CAPACITY: u64 = 100_000;
/// Bounds how long an owner's lost permission or role stays on a cached key (revocation
/// does not wait for it).
pub const API_KEY_CACHE_TTL: Duration = Duration::from_secs(60);
pub const NEGATIVE_CACHE_CAPACITY: u64 = 100_000;
/// Short: a just-created key is usable within seconds, while floods of made-up keys stay
/// off the store.
pub const NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(10);
/// A flood of made-up keys costs the store about one query a second per address.
pub const LOOKUPS_PER_MINUTE: u64 = 60;
/// `last_used_at` is informational: one batched write every 30 s is precise enough.
pub const LAST_USED_INTERVAL: Duration = Duration::from_secs(30);
/// Conventional cap; no user needs more, and it bounds rows per account.
pub const MAX_API_KEYS: u64 = 100;
pub const MAX_MAX_API_KEYS: u64 = 100_000;
/// PATs for roles not in `pat_limits`: seed 000's tiers top out at 5, so 10 is generous.
pub const MAX_PATS: i64 = 10;
/// The most PATs any role may be given (also for `pat_limits` entries).
pub const MAX_PAT_LIMIT: i64 = 10_000;
/// Seed 000's 90 days for PATs.
pub const PAT_DEFAULT_DAYS: u64 = 90;
/// Ten years: long-lived keys are allowed but not forever.
pub const MAX_DAYS: u64 = 3650;
/// A century, for `max_days` and `pat_default_days`: anything longer is a typo.
pub const MAX_MAX_DAYS: u64 = 36_500;
/// Keys are Gatehouse's credential; the upstream should not see them.
pub const FORWARD_API_KEY_HEADER: bool = false;
/// A reset is account recovery: whoever stole the password may have minted keys.
pub const REVOKE_ON_PASSWORD_RESET: bool = true;

// ---- [clients]

/// Seed 004's client-credential tokens (`expiresIn: 3600`).
pub const CLIENT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Namespaced so it cannot clash with an application's own scopes.
pub const ADMIN_SCOPE: &str = "gatehouse:admin";

// ---- [log]

// `log.format` defaults to `LogFormat::DEFAULT` (in types.rs, beside the enum).

/// `info`: startup, warnings and the access log, without debug noise.
pub const LOG_LEVEL: &str = "info";
/// An access line per request is what operators expect from a proxy.
pub const LOG_ACCESS: bool = true;

/// `[session]`: the cookie's name before any `__Host-` prefix.
pub const SESSION_COOKIE_NAME: &str = "gatehouse_session";
/// A working day and then some: people sign in about once a day (DESIGN.md).
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// An hour unused ends a session, as on a shared screen one would want.
pub const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// A session outliving a quarter is a credential nobody remembers handing out.
pub const MAX_SESSION_TTL: Duration = Duration::from_secs(90 * 86_400);
