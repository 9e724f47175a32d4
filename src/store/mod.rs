//! Persistence for accounts, sessions and login protection: a [`Store`] trait that business
//! code calls, implemented once over sqlx's `Any` driver for SQLite and Postgres.
//!
//! SQL is written to run on both (`$N` parameters, `ON CONFLICT`, `RETURNING`); what truly
//! differs (migrations, connection setup) lives in [`sql::Dialect`].

pub mod sql;

use async_trait::async_trait;
use serde_json::{Map, Value};

pub use sql::SqlStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique field is taken; names the field (`email`, `username`).
    #[error("{0} is already taken")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    /// The owner already holds as many live keys of this kind as allowed.
    #[error("limit of {0} reached")]
    LimitReached(i64),
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
            && let Some(field) = unique_field(db.as_ref())
        {
            return StoreError::Conflict(field);
        }
        StoreError::Database(e.to_string())
    }
}

/// The unique columns a caller may collide on, and the field each is reported as.
const UNIQUE_FIELDS: [(&str, &str, &str); 2] =
    [("users", "email_norm", "email"), ("users", "username_norm", "username")];

/// The field a unique violation is on, from its constraint: Postgres names it
/// (`users_email_norm_key`, the name of a column `UNIQUE`); SQLite names none, and reports
/// the table and column in a fixed form instead (`UNIQUE constraint failed: users.email_norm`).
/// Any other unique violation is no caller's conflict but a store failure.
fn unique_field(db: &dyn sqlx::error::DatabaseError) -> Option<&'static str> {
    let sqlite = db.message().strip_prefix("UNIQUE constraint failed: ");
    UNIQUE_FIELDS.iter().find_map(|&(table, column, field)| {
        let named = match (db.constraint(), sqlite) {
            (Some(constraint), _) => constraint == format!("{table}_{column}_key"),
            (None, Some(columns)) => columns == format!("{table}.{column}"),
            (None, None) => false,
        };
        named.then_some(field)
    })
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A stored account. Times are unix seconds.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub username: Option<String>,
    pub name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    /// App-specific profile fields (seed 002: skills, experience_years, ...).
    pub profile: Map<String, Value>,
    pub password_hash: Option<String>,
    pub role: String,
    pub permissions: Vec<String>,
    pub team_id: Option<String>,
    /// The owner proved control of `email` (a verification link, or a password reset).
    pub email_verified: bool,
    /// Sessions and access tokens issued before this are no longer valid (password reset).
    pub sessions_valid_after: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login_at: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub id: String,
    pub email: String,
    pub username: Option<String>,
    pub name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub profile: Map<String, Value>,
    pub password_hash: String,
    pub role: String,
    pub permissions: Vec<String>,
    pub team_id: Option<String>,
    pub now: i64,
}

/// Fields `PATCH /auth/me` may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    pub username: Option<Option<String>>,
    pub name: Option<Option<String>>,
    pub first_name: Option<Option<String>>,
    pub last_name: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    /// Merged into the stored profile; a `null` value removes a key.
    pub profile: Option<Map<String, Value>>,
}

#[derive(Debug, Clone)]
pub struct NewRefresh {
    pub id: String,
    pub hash: Vec<u8>,
    pub user_id: String,
    pub family_id: String,
    pub parent_id: Option<String>,
    pub now: i64,
    pub expires_at: i64,
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum RefreshUse {
    /// The token was live and is now used; the caller issues its child.
    Rotated { id: String, user_id: String, family_id: String },
    /// Already used, but within the grace window: the caller re-issues the same child.
    Replayed { id: String, user_id: String, family_id: String },
    /// Used before, outside the grace window: the whole family has been revoked.
    Reused { family_id: String },
    /// Unknown, expired or revoked.
    Invalid,
}

/// A browser session as stored (see `migrations/*/0007_browser_sessions.sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSession {
    pub id: String,
    pub user_id: String,
    pub created_at: i64,
    /// The absolute end, unix seconds.
    pub expires_at: i64,
    /// When it was last seen in use, written at most every few minutes.
    pub last_seen_at: i64,
}

/// A session to store: its cookie's digest, never the cookie.
#[derive(Debug, Clone)]
pub struct NewBrowserSession {
    pub id: String,
    pub digest: [u8; 32],
    pub user_id: String,
    pub now: i64,
    pub expires_at: i64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A revocation every replica must apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// One access token (logout), until it would have expired.
    Token { jti: String, until: i64 },
    /// Every access token of a session (refresh family), until they would have expired.
    Session { family_id: String, until: i64 },
    /// Every token of a user issued before `after` (password reset).
    User { user_id: String, after: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Success,
    WrongPassword,
    UnknownAccount,
    Locked,
    RateLimited,
    /// The password was right, but `accounts.require_verified_email` and the address is not.
    EmailNotVerified,
}

impl LoginOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginOutcome::Success => "success",
            LoginOutcome::WrongPassword => "wrong_password",
            LoginOutcome::UnknownAccount => "unknown_account",
            LoginOutcome::Locked => "locked",
            LoginOutcome::RateLimited => "rate_limited",
            LoginOutcome::EmailNotVerified => "email_not_verified",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoginAttempt {
    pub at: i64,
    pub client_ip: String,
    pub identifier: String,
    pub user_id: Option<String>,
    pub outcome: LoginOutcome,
}

#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    pub algorithm: String,
    pub private_key: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// Which kind of long-lived user credential a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    ApiKey,
    Pat,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::ApiKey => "api_key",
            KeyKind::Pat => "pat",
        }
    }

    fn parse(s: &str) -> Option<KeyKind> {
        match s {
            "api_key" => Some(KeyKind::ApiKey),
            "pat" => Some(KeyKind::Pat),
            _ => None,
        }
    }
}

/// An API key or PAT as stored: never the secret, only its keyed digest.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub kind: KeyKind,
    pub user_id: String,
    pub name: String,
    /// A public slice of the secret, unique, by which the key is found.
    pub lookup: String,
    pub digest: Vec<u8>,
    /// The secret's first characters, for people to tell keys apart.
    pub display: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A key found for verification, with what its owner's identity headers need.
#[derive(Debug, Clone)]
pub struct KeyOwner {
    pub key: ApiKey,
    pub email: String,
    pub name: Option<String>,
    pub role: String,
    pub team_id: Option<String>,
    pub email_verified: bool,
    /// The owner's permissions now: a key never proves more than its owner still holds.
    pub permissions: Vec<String>,
}

/// An OAuth2 client of the client-credentials grant.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub secret_digest: Vec<u8>,
    pub scopes: Vec<String>,
    pub created_at: i64,
    /// The admin who created it (`None` from the command line).
    pub created_by: Option<String>,
    pub revoked_at: Option<i64>,
}

/// What taking a slot from a shared rate bucket led to ([`Store::take_rate_slot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSlot {
    Taken,
    /// The bucket is empty; the next slot frees up after this long (by the store's clock).
    Refused {
        retry_after: std::time::Duration,
    },
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create_user(&self, user: NewUser) -> Result<User>;
    async fn user_by_id(&self, id: &str) -> Result<Option<User>>;
    /// By normalised email or username.
    async fn user_by_login(&self, identifier: &str) -> Result<Option<User>>;
    async fn update_profile(&self, id: &str, update: &ProfileUpdate, now: i64) -> Result<User>;
    /// Replaces the password hash. With `end_sessions: Some(access_ttl)`, every session of
    /// the user and every token issued before `now` stops working; returns the sessions
    /// (refresh families) it ended.
    async fn set_password(&self, id: &str, hash: &str, now: i64, end_sessions: Option<i64>) -> Result<Vec<String>>;
    async fn touch_login(&self, id: &str, now: i64) -> Result<()>;
    async fn create_browser_session(&self, session: &NewBrowserSession) -> Result<()>;
    /// The live session whose cookie has `digest`, with its user: not ended, not past its
    /// absolute end at `now`, and begun after the user's last password change.
    async fn browser_session(&self, digest: &[u8], now: i64) -> Result<Option<(BrowserSession, User)>>;
    /// Records use at `now` (never moves `last_seen_at` back).
    async fn touch_browser_session(&self, id: &str, now: i64) -> Result<()>;
    /// Ends one session and announces it to every replica; `false` when it was not live.
    async fn end_browser_session(&self, id: &str, now: i64) -> Result<bool>;

    async fn insert_refresh(&self, token: &NewRefresh) -> Result<()>;
    /// Marks a refresh token used, atomically, and says what that means.
    async fn use_refresh(&self, hash: &[u8], now: i64, grace_secs: i64, access_ttl: i64) -> Result<RefreshUse>;
    /// Revokes a refresh family and announces its access tokens as revoked.
    async fn revoke_family(&self, family_id: &str, now: i64, access_ttl: i64) -> Result<()>;
    async fn revoke_token(&self, jti: &str, until: i64, now: i64) -> Result<()>;
    /// Live revocations recorded since `since` (unix seconds by the store's own clock; 0 for
    /// all), and the `since` to pass next time. `now` (the caller's clock) only drops events
    /// whose tokens have expired.
    async fn revocations_after(&self, since: i64, now: i64) -> Result<(Vec<Revocation>, i64)>;

    async fn create_reset(&self, hash: &[u8], user_id: &str, now: i64, expires_at: i64) -> Result<()>;
    /// The user of a live reset token, which is used up by this call.
    async fn consume_reset(&self, hash: &[u8], now: i64) -> Result<Option<String>>;

    /// Stores a verification link for `email` and retires the user's older unused ones, so
    /// only the newest link works.
    async fn create_email_verification(
        &self,
        hash: &[u8],
        user_id: &str,
        email: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()>;
    /// Uses up a live verification link and marks its address verified, if the account still
    /// has that address; returns the updated user. `None`: unknown, expired, used, or mailed
    /// to an address the account no longer has.
    async fn consume_email_verification(&self, hash: &[u8], now: i64) -> Result<Option<User>>;
    /// Sets the verified flag of the user's current address (a password reset proves it too).
    async fn set_email_verified(&self, id: &str, verified: bool, now: i64) -> Result<()>;

    /// Until when the lockout key is locked, if it is.
    async fn locked_until(&self, identifier: &str, now: i64) -> Result<Option<i64>>;
    /// Takes one password attempt from the key's budget before the password is checked, in
    /// one atomic statement: the attempt counts as a failure until
    /// [`Store::clear_failures`] says it succeeded. The `threshold + 1`-th attempt of a
    /// streak locks the key for `lock_secs`; while locked nothing is counted and the lock end
    /// is returned (`Some`: refuse without checking the password). A finished lock, or a
    /// streak older than `lock_secs`, starts counting afresh.
    async fn reserve_attempt(&self, key: &str, now: i64, threshold: i64, lock_secs: i64) -> Result<Option<i64>>;
    async fn clear_failures(&self, identifier: &str) -> Result<()>;
    async fn audit_login(&self, attempt: &LoginAttempt) -> Result<()>;
    async fn login_attempts(&self, identifier: &str) -> Result<Vec<LoginAttempt>>;

    async fn signing_keys(&self) -> Result<Vec<StoredKey>>;
    /// Stores a key unless one of its algorithm is live already (first replica wins);
    /// returns all keys.
    async fn insert_signing_key_if_none(&self, key: &StoredKey) -> Result<Vec<StoredKey>>;
    /// Retires the live keys of `key`'s algorithm at `retire_at` and stores `key`.
    async fn rotate_signing_key(&self, key: &StoredKey, retire_at: i64) -> Result<()>;

    /// Stores a key unless its owner already holds `limit` live keys of its kind
    /// ([`StoreError::LimitReached`]); the check and the insert are one step per owner.
    async fn create_api_key(&self, key: &ApiKey, limit: Option<i64>, now: i64) -> Result<()>;
    /// The owner's keys of one kind that are not revoked, newest first.
    async fn api_keys_of(&self, user_id: &str, kind: KeyKind) -> Result<Vec<ApiKey>>;
    /// The key with this lookup slice, revoked or expired included, with its owner.
    async fn api_key_by_lookup(&self, lookup: &str) -> Result<Option<KeyOwner>>;
    /// Revokes a live key (of `user_id` when given) and announces it to every replica until
    /// `until`; returns the revoked key, `None` when there was no such live key.
    async fn revoke_api_key(&self, id: &str, user_id: Option<&str>, now: i64, until: i64) -> Result<Option<ApiKey>>;
    /// Revokes every live key of a user (both kinds), announcing each until `until`.
    async fn revoke_user_keys(&self, user_id: &str, now: i64, until: i64) -> Result<Vec<ApiKey>>;
    /// Records when keys were last used, many at once.
    async fn touch_api_keys(&self, used: &[(String, i64)]) -> Result<()>;

    async fn create_client(&self, client: &Client) -> Result<()>;
    async fn client_by_id(&self, id: &str) -> Result<Option<Client>>;
    /// Clients that are not revoked, oldest first.
    async fn clients(&self) -> Result<Vec<Client>>;
    /// Revokes a client; its tokens issued before `cutoff` are announced as revoked. False when
    /// there was no such live client.
    async fn revoke_client(&self, id: &str, now: i64, cutoff: i64) -> Result<bool>;

    /// Whether several Gatehouse processes share this store (Postgres): per-process state
    /// that must hold cluster-wide (the per-IP auth-API limits) then goes through it. A SQLite
    /// store has one server process, which keeps such state in memory.
    fn shared_by_replicas(&self) -> bool;
    /// Takes one request from the GCRA bucket `(name, client)`, which holds `burst` requests
    /// and gains one every `interval`, in one atomic statement timed by the store's clock: of
    /// concurrent takers (on any replica) only as many as the bucket holds get a slot.
    async fn take_rate_slot(
        &self,
        name: &str,
        client: &str,
        interval: std::time::Duration,
        burst: u32,
    ) -> Result<RateSlot>;
    /// Deletes the buckets of `name` that are full again (a full bucket and no row are the
    /// same); returns how many.
    async fn prune_rate_buckets(&self, name: &str) -> Result<u64>;

    /// Statements run so far, by operation: for `/metrics` and for tests that prove a code
    /// path makes no query.
    fn query_counts(&self) -> Vec<(&'static str, u64)>;
}
