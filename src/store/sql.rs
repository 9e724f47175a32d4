//! The [`Store`] on sqlx's `Any` driver: one set of portable statements for SQLite and
//! Postgres, plus the few things that differ per dialect (migrations, connection setup).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use super::*;

/// The database behind a store URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn of(url: &str) -> Option<Dialect> {
        if url.starts_with("sqlite:") {
            Some(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Dialect::Postgres)
        } else {
            None
        }
    }

    /// The database's clock in unix seconds, as an SQL expression.
    fn now_sql(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CAST(strftime('%s', 'now') AS INTEGER)",
            Dialect::Postgres => "CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp())) AS BIGINT)",
        }
    }

    /// The database's clock in unix microseconds, as an SQL expression: the rate buckets
    /// need sub-second steps (a 7-a-minute quota frees a slot every 8.57 s).
    fn now_micros_sql(self) -> &'static str {
        match self {
            // julianday has millisecond resolution, enough for a bucket nobody shares here.
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
            Dialect::Postgres => "CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000) AS BIGINT)",
        }
    }

    fn migrator(self) -> sqlx::migrate::Migrator {
        match self {
            Dialect::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("migrations/postgres"),
        }
    }
}

pub struct SqlStore {
    pool: AnyPool,
    pub dialect: Dialect,
    calls: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

/// How far back each revocation poll re-reads (see `revocations_after`).
const REREAD_SECS: i64 = 5;

const USER_COLUMNS: &str = "id, email, username, name, first_name, last_name, phone, profile, password_hash, role, \
     permissions, team_id, email_verified, sessions_valid_after, created_at, updated_at, last_login_at";

impl SqlStore {
    /// A write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`): a
    /// deferred one that reads and then writes fails with "database is locked" at once when
    /// another connection or process (the CLI beside the server) writes meanwhile, because
    /// SQLite cannot wait out that conflict; an immediate one waits (busy_timeout) instead.
    async fn begin(&self) -> std::result::Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        }
    }

    /// Connects (creating a SQLite file and its directory if needed) and applies migrations.
    pub async fn connect(url: &str) -> anyhow::Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of(url).ok_or_else(|| anyhow::anyhow!("store.url: unsupported database URL"))?;
        let url = match dialect {
            Dialect::Sqlite => sqlite_url(url)?,
            Dialect::Postgres => url.to_string(),
        };
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        options = match dialect {
            // One writer at a time anyway; WAL lets readers go on while it writes.
            Dialect::Sqlite => options.max_connections(8).after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA busy_timeout = 10000",
                        "PRAGMA foreign_keys = ON",
                        "PRAGMA synchronous = NORMAL",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            }),
            Dialect::Postgres => options.max_connections(16),
        };
        let pool = options.connect(&url).await.map_err(|e| anyhow::anyhow!("store.url: cannot connect: {e}"))?;
        dialect.migrator().run(&pool).await.map_err(|e| anyhow::anyhow!("store: migrations failed: {e}"))?;
        Ok(SqlStore { pool, dialect, calls: Default::default() })
    }

    /// A Postgres store that connects on first use and runs no migrations: for tests of what
    /// callers do while the database cannot be reached.
    #[cfg(test)]
    pub(crate) fn lazy_postgres(url: &str) -> SqlStore {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10)).connect_lazy(url).expect("a URL");
        SqlStore { pool, dialect: Dialect::Postgres, calls: Default::default() }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Counts one call of a store operation (see [`Store::query_counts`]).
    fn count(&self, op: &'static str) {
        *self.calls.lock().expect("call counter").entry(op).or_default() += 1;
    }
}

/// `sqlite://path` with `mode=rwc` so the file is created, after creating its directory.
fn sqlite_url(url: &str) -> anyhow::Result<String> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:"
        && let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("store.url: cannot create {}: {e}", dir.display()))?;
    }
    let mut query = query.to_string();
    if !query.contains("mode=") {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str("mode=rwc");
    }
    Ok(format!("sqlite://{path}?{query}"))
}

fn user_from(row: &AnyRow) -> Result<User> {
    let profile: String = row.try_get("profile")?;
    let permissions: String = row.try_get("permissions")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        username: row.try_get("username")?,
        name: row.try_get("name")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        phone: row.try_get("phone")?,
        profile: serde_json::from_str(&profile).unwrap_or_default(),
        password_hash: row.try_get("password_hash")?,
        role: row.try_get("role")?,
        permissions: serde_json::from_str(&permissions).unwrap_or_default(),
        team_id: row.try_get("team_id")?,
        email_verified: flag(row, "email_verified")?,
        sessions_valid_after: row.try_get("sessions_valid_after")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        last_login_at: row.try_get("last_login_at")?,
    })
}

/// A boolean column: BOOLEAN on Postgres, an INTEGER 0/1 on SQLite (which has no boolean
/// type the `Any` driver can read).
fn flag(row: &AnyRow, column: &str) -> Result<bool> {
    match row.try_get::<bool, _>(column) {
        Ok(b) => Ok(b),
        Err(_) => Ok(row.try_get::<i64, _>(column)? != 0),
    }
}

const KEY_COLUMNS: &str =
    "id, kind, user_id, name, lookup, digest, display, scopes, created_at, expires_at, last_used_at, revoked_at";

fn key_from(row: &AnyRow) -> Result<ApiKey> {
    let kind: String = row.try_get("kind")?;
    let scopes: String = row.try_get("scopes")?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        kind: KeyKind::parse(&kind).ok_or_else(|| StoreError::Database(format!("unknown key kind `{kind}`")))?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        lookup: row.try_get("lookup")?,
        digest: row.try_get("digest")?,
        display: row.try_get("display")?,
        scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const CLIENT_COLUMNS: &str = "id, name, secret_digest, scopes, created_at, created_by, revoked_at";

fn client_from(row: &AnyRow) -> Result<Client> {
    let scopes: String = row.try_get("scopes")?;
    Ok(Client {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        secret_digest: row.try_get("secret_digest")?,
        scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

#[async_trait]
impl Store for SqlStore {
    async fn create_user(&self, u: NewUser) -> Result<User> {
        self.count("create_user");
        let sql = format!(
            "INSERT INTO users (id, email, email_norm, username, username_norm, name, first_name, last_name, phone, profile, \
             password_hash, role, permissions, team_id, sessions_valid_after, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0, $15, $15) RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&u.id)
            .bind(&u.email)
            .bind(norm(&u.email))
            .bind(&u.username)
            .bind(u.username.as_deref().map(norm))
            .bind(&u.name)
            .bind(&u.first_name)
            .bind(&u.last_name)
            .bind(&u.phone)
            .bind(Value::Object(u.profile.clone()).to_string())
            .bind(&u.password_hash)
            .bind(&u.role)
            .bind(serde_json::to_string(&u.permissions).expect("strings serialise"))
            .bind(&u.team_id)
            .bind(u.now)
            .fetch_one(&self.pool)
            .await?;
        user_from(&row)
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        self.count("user_by_id");
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from).transpose()
    }

    async fn user_by_login(&self, identifier: &str) -> Result<Option<User>> {
        self.count("user_by_login");
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email_norm = $1 OR username_norm = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(norm(identifier)).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from).transpose()
    }

    async fn update_profile(&self, id: &str, update: &ProfileUpdate, now: i64) -> Result<User> {
        self.count("update_profile");
        let current = self.user_by_id(id).await?.ok_or(StoreError::NotFound)?;
        let pick = |new: &Option<Option<String>>, old: &Option<String>| new.clone().unwrap_or_else(|| old.clone());
        let username = pick(&update.username, &current.username);
        let mut profile = current.profile.clone();
        if let Some(patch) = &update.profile {
            for (k, v) in patch {
                if v.is_null() {
                    profile.remove(k);
                } else {
                    profile.insert(k.clone(), v.clone());
                }
            }
        }
        let sql = format!(
            "UPDATE users SET username = $2, username_norm = $3, name = $4, first_name = $5, last_name = $6, phone = $7, \
             profile = $8, updated_at = $9 WHERE id = $1 RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(&username)
            .bind(username.as_deref().map(norm))
            .bind(pick(&update.name, &current.name))
            .bind(pick(&update.first_name, &current.first_name))
            .bind(pick(&update.last_name, &current.last_name))
            .bind(pick(&update.phone, &current.phone))
            .bind(Value::Object(profile).to_string())
            .bind(now)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        user_from(&row)
    }

    async fn set_password(&self, id: &str, hash: &str, now: i64, end_sessions: Option<i64>) -> Result<Vec<String>> {
        self.count("set_password");
        let mut ended = Vec::new();
        let mut tx = self.begin().await?;
        if let Some(access_ttl) = end_sessions {
            sqlx::query(
                "UPDATE users SET password_hash = $2, updated_at = $3, sessions_valid_after = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            // Each live session is revoked by id too, so its access tokens die whatever their
            // `iat` (the user-wide cut-off below has one-second resolution).
            let families =
                sqlx::query("SELECT DISTINCT family_id FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
            for row in families {
                let family: String = row.try_get("family_id")?;
                announce(&mut tx, now, "session", &family, now + access_ttl).await?;
                ended.push(family);
            }
            sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            // Browser sessions end with the password too, announced by id like the families.
            let browsers = sqlx::query(
                "UPDATE browser_sessions SET ended_at = $2 WHERE user_id = $1 AND ended_at IS NULL \
                 RETURNING id, expires_at",
            )
            .bind(id)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            for row in browsers {
                let session: String = row.try_get("id")?;
                let until: i64 = row.try_get("expires_at")?;
                announce(&mut tx, now, "session", &session, until).await?;
                ended.push(session);
            }
            announce(&mut tx, now, "user", id, now).await?;
        } else {
            sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                .bind(id)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(ended)
    }

    async fn touch_login(&self, id: &str, now: i64) -> Result<()> {
        self.count("touch_login");
        sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1").bind(id).bind(now).execute(&self.pool).await?;
        Ok(())
    }

    async fn create_browser_session(&self, b: &NewBrowserSession) -> Result<()> {
        self.count("create_browser_session");
        sqlx::query(
            "INSERT INTO browser_sessions (id, digest, user_id, created_at, expires_at, last_seen_at, ip, user_agent) \
             VALUES ($1, $2, $3, $4, $5, $4, $6, $7)",
        )
        .bind(&b.id)
        .bind(&b.digest[..])
        .bind(&b.user_id)
        .bind(b.now)
        .bind(b.expires_at)
        .bind(&b.ip)
        .bind(&b.user_agent)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn browser_session(&self, digest: &[u8], now: i64) -> Result<Option<(BrowserSession, User)>> {
        self.count("browser_session");
        let sql = format!(
            "SELECT b.id AS b_id, b.created_at AS b_created_at, b.expires_at AS b_expires_at, \
                    b.last_seen_at AS b_last_seen_at, {} \
             FROM browser_sessions b JOIN users u ON u.id = b.user_id \
             WHERE b.digest = $1 AND b.ended_at IS NULL AND b.expires_at > $2 \
               AND b.created_at >= u.sessions_valid_after",
            USER_COLUMNS.split(',').map(|c| format!("u.{}", c.trim())).collect::<Vec<_>>().join(", ")
        );
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(digest).bind(now).fetch_optional(&self.pool).await?
        else {
            return Ok(None);
        };
        let user = user_from(&row)?;
        let session = BrowserSession {
            id: row.try_get("b_id")?,
            user_id: user.id.clone(),
            created_at: row.try_get("b_created_at")?,
            expires_at: row.try_get("b_expires_at")?,
            last_seen_at: row.try_get("b_last_seen_at")?,
        };
        Ok(Some((session, user)))
    }

    async fn touch_browser_session(&self, id: &str, now: i64) -> Result<()> {
        self.count("touch_browser_session");
        sqlx::query("UPDATE browser_sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2")
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn end_browser_session(&self, id: &str, now: i64) -> Result<bool> {
        self.count("end_browser_session");
        let mut tx = self.begin().await?;
        let ended = sqlx::query(
            "UPDATE browser_sessions SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL RETURNING expires_at",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = ended else { return Ok(false) };
        let until: i64 = row.try_get("expires_at")?;
        announce(&mut tx, now, "session", id, until).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_refresh(&self, t: &NewRefresh) -> Result<()> {
        self.count("insert_refresh");
        sqlx::query(
            "INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, parent_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&t.id)
        .bind(&t.hash)
        .bind(&t.user_id)
        .bind(&t.family_id)
        .bind(&t.parent_id)
        .bind(t.now)
        .bind(t.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn use_refresh(&self, hash: &[u8], now: i64, grace_secs: i64, access_ttl: i64) -> Result<RefreshUse> {
        self.count("use_refresh");
        // The conditional UPDATE is the serialisation point: of two concurrent uses of one
        // token, exactly one sees `used_at IS NULL`.
        let won = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $2 \
             WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
             RETURNING id, user_id, family_id",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = won {
            return Ok(RefreshUse::Rotated {
                id: row.try_get("id")?,
                user_id: row.try_get("user_id")?,
                family_id: row.try_get("family_id")?,
            });
        }
        let Some(row) = sqlx::query(
            "SELECT id, user_id, family_id, used_at, revoked_at, expires_at FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(RefreshUse::Invalid);
        };
        let used_at: Option<i64> = row.try_get("used_at")?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        let family_id: String = row.try_get("family_id")?;
        if revoked_at.is_some() || expires_at <= now {
            return Ok(RefreshUse::Invalid);
        }
        let Some(used_at) = used_at else { return Ok(RefreshUse::Invalid) };
        if now - used_at <= grace_secs {
            // Only the newest member may be replayed: a used token whose child was used too
            // is reuse even inside the window.
            let child_used: Option<i64> = sqlx::query("SELECT used_at FROM refresh_tokens WHERE parent_id = $1")
                .bind(row.try_get::<String, _>("id")?)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get::<Option<i64>, _>("used_at"))
                .transpose()?
                .flatten();
            if child_used.is_none() {
                return Ok(RefreshUse::Replayed {
                    id: row.try_get("id")?,
                    user_id: row.try_get("user_id")?,
                    family_id,
                });
            }
        }
        self.revoke_family(&family_id, now, access_ttl).await?;
        Ok(RefreshUse::Reused { family_id })
    }

    async fn revoke_family(&self, family_id: &str, now: i64, access_ttl: i64) -> Result<()> {
        self.count("revoke_family");
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL")
            .bind(family_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        announce(&mut tx, now, "session", family_id, now + access_ttl).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_token(&self, jti: &str, until: i64, now: i64) -> Result<()> {
        self.count("revoke_token");
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, expires_at, revoked_at) VALUES ($1, $2, $3) ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(until)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        announce(&mut tx, now, "token", jti, until).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revocations_after(&self, since: i64, now: i64) -> Result<(Vec<Revocation>, i64)> {
        self.count("revocations_after");
        // By time, not by id: ids are handed out before commit, so a slower transaction can
        // commit a lower id after a higher one was read. Re-reading a few seconds of events
        // is harmless (applying one twice changes nothing) and catches those late commits.
        // The time is the database's on both sides: migration 0005 stamps `at` with it
        // whatever the writer passed, and the next cursor is read from it here (before the
        // events, so nothing committed in between falls behind it). Replicas' clocks may
        // disagree by any amount without losing an event.
        let store_now: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {}", self.dialect.now_sql())))
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(
            "SELECT kind, subject, until_ts FROM revocation_events WHERE at >= $1 AND (kind = 'user' OR until_ts > $2)",
        )
        .bind(since)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let subject: String = row.try_get("subject")?;
            let until: i64 = row.try_get("until_ts")?;
            match row.try_get::<String, _>("kind")?.as_str() {
                "token" => out.push(Revocation::Token { jti: subject, until }),
                "session" => out.push(Revocation::Session { family_id: subject, until }),
                "user" => out.push(Revocation::User { user_id: subject, after: until }),
                _ => {}
            }
        }
        Ok((out, store_now - REREAD_SECS))
    }

    async fn create_reset(&self, hash: &[u8], user_id: &str, now: i64, expires_at: i64) -> Result<()> {
        self.count("create_reset");
        sqlx::query(
            "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(hash)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn consume_reset(&self, hash: &[u8], now: i64) -> Result<Option<String>> {
        self.count("consume_reset");
        let row = sqlx::query(
            "UPDATE password_resets SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING user_id",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("user_id")).transpose()?)
    }

    async fn create_email_verification(
        &self,
        hash: &[u8],
        user_id: &str,
        email: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        self.count("create_email_verification");
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE email_verifications SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL")
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO email_verifications (token_hash, user_id, email, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash)
        .bind(user_id)
        .bind(norm(email))
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn consume_email_verification(&self, hash: &[u8], now: i64) -> Result<Option<User>> {
        self.count("consume_email_verification");
        let mut tx = self.begin().await?;
        // The conditional UPDATE makes the link single use, also against a concurrent click.
        let Some(row) = sqlx::query(
            "UPDATE email_verifications SET used_at = $2 \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING user_id, email",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let user_id: String = row.try_get("user_id")?;
        let email: String = row.try_get("email")?;
        let sql = format!(
            "UPDATE users SET email_verified = TRUE, updated_at = $3 WHERE id = $1 AND email_norm = $2 \
             RETURNING {USER_COLUMNS}"
        );
        let user = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&user_id)
            .bind(&email)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(user_from)
            .transpose()?;
        tx.commit().await?;
        Ok(user)
    }

    async fn set_email_verified(&self, id: &str, verified: bool, now: i64) -> Result<()> {
        self.count("set_email_verified");
        sqlx::query("UPDATE users SET email_verified = $2, updated_at = $3 WHERE id = $1 AND email_verified <> $2")
            .bind(id)
            .bind(verified)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn locked_until(&self, identifier: &str, now: i64) -> Result<Option<i64>> {
        self.count("locked_until");
        let row = sqlx::query("SELECT locked_until FROM lockouts WHERE identifier = $1 AND locked_until > $2")
            .bind(identifier)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("locked_until")).transpose()?)
    }

    async fn reserve_attempt(&self, key: &str, now: i64, threshold: i64, lock_secs: i64) -> Result<Option<i64>> {
        self.count("reserve_attempt");
        // The upsert is the serialisation point: of parallel attempts each gets its own count,
        // so at most `threshold` of a streak are ever let through to the hash. The SET
        // expressions all read the row as it was before this statement.
        let row = sqlx::query(
            "INSERT INTO lockouts (identifier, failures, locked_until, updated_at) \
             VALUES ($1, 1, CASE WHEN 1 > $3 THEN $2 + $4 ELSE 0 END, $2) \
             ON CONFLICT (identifier) DO UPDATE SET \
               failures = CASE \
                   WHEN lockouts.locked_until > $2 THEN lockouts.failures \
                   WHEN lockouts.locked_until > 0 OR lockouts.updated_at < $2 - $4 THEN 1 \
                   ELSE lockouts.failures + 1 END, \
               locked_until = CASE \
                   WHEN lockouts.locked_until > $2 THEN lockouts.locked_until \
                   WHEN lockouts.locked_until > 0 OR lockouts.updated_at < $2 - $4 \
                        THEN CASE WHEN 1 > $3 THEN $2 + $4 ELSE 0 END \
                   WHEN lockouts.failures + 1 > $3 THEN $2 + $4 \
                   ELSE 0 END, \
               updated_at = CASE WHEN lockouts.locked_until > $2 THEN lockouts.updated_at ELSE $2 END \
             RETURNING locked_until",
        )
        .bind(key)
        .bind(now)
        .bind(threshold)
        .bind(lock_secs)
        .fetch_one(&self.pool)
        .await?;
        let locked_until: i64 = row.try_get("locked_until")?;
        Ok((locked_until > now).then_some(locked_until))
    }

    async fn clear_failures(&self, identifier: &str) -> Result<()> {
        self.count("clear_failures");
        sqlx::query("DELETE FROM lockouts WHERE identifier = $1").bind(identifier).execute(&self.pool).await?;
        Ok(())
    }

    async fn audit_login(&self, a: &LoginAttempt) -> Result<()> {
        self.count("audit_login");
        sqlx::query(
            "INSERT INTO login_attempts (at, client_ip, identifier, user_id, outcome) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(a.at)
        .bind(&a.client_ip)
        .bind(&a.identifier)
        .bind(&a.user_id)
        .bind(a.outcome.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn login_attempts(&self, identifier: &str) -> Result<Vec<LoginAttempt>> {
        self.count("login_attempts");
        let rows = sqlx::query(
            "SELECT at, client_ip, identifier, user_id, outcome FROM login_attempts WHERE identifier = $1 ORDER BY id",
        )
        .bind(identifier)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let outcome = match r.try_get::<String, _>("outcome")?.as_str() {
                    "success" => LoginOutcome::Success,
                    "wrong_password" => LoginOutcome::WrongPassword,
                    "unknown_account" => LoginOutcome::UnknownAccount,
                    "locked" => LoginOutcome::Locked,
                    "email_not_verified" => LoginOutcome::EmailNotVerified,
                    _ => LoginOutcome::RateLimited,
                };
                Ok(LoginAttempt {
                    at: r.try_get("at")?,
                    client_ip: r.try_get("client_ip")?,
                    identifier: r.try_get("identifier")?,
                    user_id: r.try_get("user_id")?,
                    outcome,
                })
            })
            .collect()
    }

    async fn signing_keys(&self) -> Result<Vec<StoredKey>> {
        self.count("signing_keys");
        let rows = sqlx::query(
            "SELECT kid, algorithm, private_key, created_at, retired_at FROM signing_keys ORDER BY created_at, kid",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredKey {
                    kid: r.try_get("kid")?,
                    algorithm: r.try_get("algorithm")?,
                    private_key: r.try_get("private_key")?,
                    created_at: r.try_get("created_at")?,
                    retired_at: r.try_get("retired_at")?,
                })
            })
            .collect()
    }

    async fn insert_signing_key_if_none(&self, key: &StoredKey) -> Result<Vec<StoredKey>> {
        self.count("insert_signing_key_if_none");
        // The partial unique index admits one live key per algorithm, so replicas starting
        // together agree on one: the losers' inserts do nothing. No conflict target: two
        // replicas inserting a fixed kid (the internal secrets) collide on the primary key
        // instead, which a targeted ON CONFLICT would turn into an error for the loser.
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(&key.private_key)
        .bind(key.created_at)
        .execute(&self.pool)
        .await?;
        self.signing_keys().await
    }

    async fn rotate_signing_key(&self, key: &StoredKey, retire_at: i64) -> Result<()> {
        self.count("rotate_signing_key");
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE algorithm = $2 AND retired_at IS NULL")
            .bind(retire_at)
            .bind(&key.algorithm)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO signing_keys (kid, algorithm, private_key, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&key.kid)
            .bind(&key.algorithm)
            .bind(&key.private_key)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
    async fn create_api_key(&self, k: &ApiKey, limit: Option<i64>, now: i64) -> Result<()> {
        self.count("create_api_key");
        let mut tx = self.begin().await?;
        if let Some(limit) = limit {
            // Writing the owner's row first takes its lock (a write lock on SQLite), so two
            // concurrent creations count one after the other and cannot both slip under it.
            let owner = sqlx::query("UPDATE users SET updated_at = updated_at WHERE id = $1")
                .bind(&k.user_id)
                .execute(&mut *tx)
                .await?;
            if owner.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            let live: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM api_keys WHERE user_id = $1 AND kind = $2 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $3)",
            )
            .bind(&k.user_id)
            .bind(k.kind.as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
            if live >= limit {
                return Err(StoreError::LimitReached(limit));
            }
        }
        sqlx::query(
            "INSERT INTO api_keys (id, kind, user_id, name, lookup, digest, display, scopes, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&k.id)
        .bind(k.kind.as_str())
        .bind(&k.user_id)
        .bind(&k.name)
        .bind(&k.lookup)
        .bind(&k.digest)
        .bind(&k.display)
        .bind(serde_json::to_string(&k.scopes).expect("strings serialise"))
        .bind(k.created_at)
        .bind(k.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn api_keys_of(&self, user_id: &str, kind: KeyKind) -> Result<Vec<ApiKey>> {
        self.count("api_keys_of");
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = $1 AND kind = $2 AND revoked_at IS NULL \
             ORDER BY created_at DESC, id"
        );
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).bind(kind.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(key_from).collect()
    }

    async fn api_key_by_lookup(&self, lookup: &str) -> Result<Option<KeyOwner>> {
        self.count("api_key_by_lookup");
        let columns = KEY_COLUMNS.split(", ").map(|c| format!("k.{c}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {columns}, u.email AS owner_email, u.name AS owner_name, u.role AS owner_role, \
             u.team_id AS owner_team_id, u.permissions AS owner_permissions, u.email_verified AS owner_email_verified FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.lookup = $1"
        );
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(lookup).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        Ok(Some(KeyOwner {
            key: key_from(&row)?,
            email: row.try_get("owner_email")?,
            name: row.try_get("owner_name")?,
            role: row.try_get("owner_role")?,
            team_id: row.try_get("owner_team_id")?,
            email_verified: flag(&row, "owner_email_verified")?,
            permissions: serde_json::from_str(&row.try_get::<String, _>("owner_permissions")?).unwrap_or_default(),
        }))
    }

    async fn revoke_api_key(&self, id: &str, user_id: Option<&str>, now: i64, until: i64) -> Result<Option<ApiKey>> {
        self.count("revoke_api_key");
        let mut tx = self.begin().await?;
        let sql = format!(
            "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL \
             AND ($3 IS NULL OR user_id = $3) RETURNING {KEY_COLUMNS}"
        );
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(now).bind(user_id).fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            return Ok(None);
        };
        // Announced like a revoked access token: replicas refuse this id from their caches.
        announce(&mut tx, now, "token", id, until).await?;
        tx.commit().await?;
        key_from(&row).map(Some)
    }

    async fn revoke_user_keys(&self, user_id: &str, now: i64, until: i64) -> Result<Vec<ApiKey>> {
        self.count("revoke_user_keys");
        let mut tx = self.begin().await?;
        let sql = format!(
            "UPDATE api_keys SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL RETURNING {KEY_COLUMNS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).bind(now).fetch_all(&mut *tx).await?;
        let keys = rows.iter().map(key_from).collect::<Result<Vec<_>>>()?;
        for key in &keys {
            announce(&mut tx, now, "token", &key.id, until).await?;
        }
        tx.commit().await?;
        Ok(keys)
    }

    async fn touch_api_keys(&self, used: &[(String, i64)]) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        self.count("touch_api_keys");
        let mut tx = self.begin().await?;
        for (id, at) in used {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_client(&self, c: &Client) -> Result<()> {
        self.count("create_client");
        sqlx::query(
            "INSERT INTO clients (id, name, secret_digest, scopes, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.secret_digest)
        .bind(serde_json::to_string(&c.scopes).expect("strings serialise"))
        .bind(c.created_at)
        .bind(&c.created_by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn client_by_id(&self, id: &str) -> Result<Option<Client>> {
        self.count("client_by_id");
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(client_from).transpose()
    }

    async fn clients(&self) -> Result<Vec<Client>> {
        self.count("clients");
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE revoked_at IS NULL ORDER BY created_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(client_from).collect()
    }

    async fn revoke_client(&self, id: &str, now: i64, cutoff: i64) -> Result<bool> {
        self.count("revoke_client");
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE clients SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // The client's tokens carry `sub` = client id: a subject-wide cut-off voids every one
        // issued before `cutoff`.
        announce(&mut tx, now, "user", id, cutoff).await?;
        tx.commit().await?;
        Ok(true)
    }

    fn shared_by_replicas(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    async fn take_rate_slot(&self, name: &str, client: &str, interval: Duration, burst: u32) -> Result<RateSlot> {
        self.count("take_rate_slot");
        let interval = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX).max(1);
        let burst = i64::from(burst.max(1));
        // GCRA: a request at `now` moves the bucket's theoretical arrival time to
        // max(tat, now) + interval, and is allowed while that stays within burst * interval
        // of now. The upsert is the serialisation point: a concurrent taker of the same bucket
        // waits for the row lock and then sees the updated `tat`, so two replicas cannot both
        // take the last slot. The time is the database's, read once (`c.now`, reused through
        // `excluded.checked_at`): replicas' clocks may disagree, and a fast one would otherwise
        // see every bucket as refilled. A refusal leaves `tat` as it was (a refused request
        // costs nothing) and says so in `granted`, since RETURNING shows only the new row.
        // `WHERE TRUE` lets SQLite parse an upsert on INSERT ... SELECT.
        let base = "CASE WHEN rate_buckets.tat > excluded.checked_at THEN rate_buckets.tat \
                    ELSE excluded.checked_at END";
        let fits = format!("{base} + $3 - excluded.checked_at <= $3 * $4");
        let sql = format!(
            "INSERT INTO rate_buckets (name, client, tat, checked_at, granted) \
             SELECT $1, $2, c.now + $3, c.now, TRUE FROM (SELECT {} AS now) c WHERE TRUE \
             ON CONFLICT (name, client) DO UPDATE SET \
               tat = CASE WHEN {fits} THEN {base} + $3 ELSE rate_buckets.tat END, \
               granted = ({fits}), \
               checked_at = excluded.checked_at \
             RETURNING tat, checked_at, granted",
            self.dialect.now_micros_sql()
        );
        // Under READ COMMITTED (Postgres' default) the row lock serialises takers. A server
        // whose default isolation is stricter makes the losers of a race fail with a
        // serialization failure or deadlock (40001, 40P01) instead: they try again, since
        // falling back to the local limit on them would let a racing address through.
        let mut attempts = 0;
        let row = loop {
            let taken = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(name)
                .bind(client)
                .bind(interval)
                .bind(burst)
                .fetch_one(&self.pool)
                .await;
            match taken {
                Err(sqlx::Error::Database(e))
                    if attempts < 5 && matches!(e.code().as_deref(), Some("40001" | "40P01")) =>
                {
                    attempts += 1;
                }
                other => break other?,
            }
        };
        if flag(&row, "granted")? {
            return Ok(RateSlot::Taken);
        }
        let tat: i64 = row.try_get("tat")?;
        let now: i64 = row.try_get("checked_at")?;
        // The next request fits once max(tat, now) + interval - now <= burst * interval.
        let wait = (tat - now - (burst - 1) * interval).max(1);
        Ok(RateSlot::Refused { retry_after: Duration::from_micros(wait as u64) })
    }

    async fn prune_rate_buckets(&self, name: &str) -> Result<u64> {
        self.count("prune_rate_buckets");
        let sql = format!("DELETE FROM rate_buckets WHERE name = $1 AND tat < {}", self.dialect.now_micros_sql());
        let done = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    fn query_counts(&self) -> Vec<(&'static str, u64)> {
        self.calls.lock().expect("call counter").iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// Announces a revocation to every replica (they follow `revocation_events`), inside the
/// transaction that made it. On Postgres a trigger stamps `at` with the database's clock.
async fn announce(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    now: i64,
    kind: &str,
    subject: &str,
    until: i64,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO revocation_events (at, kind, subject, until_ts) VALUES ($1, $2, $3, $4)")
        .bind(now)
        .bind(kind)
        .bind(subject)
        .bind(until)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
