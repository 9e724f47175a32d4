-- Accounts, sessions and login protection. Times are unix seconds; ids are random text.
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL,
    email_norm      TEXT NOT NULL UNIQUE,
    username        TEXT,
    username_norm   TEXT UNIQUE,
    name            TEXT,
    first_name      TEXT,
    last_name       TEXT,
    phone           TEXT,
    profile         TEXT NOT NULL DEFAULT '{}',
    password_hash   TEXT,
    role            TEXT NOT NULL DEFAULT 'user',
    permissions     TEXT NOT NULL DEFAULT '[]',
    team_id         TEXT,
    sessions_valid_after INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_login_at   INTEGER
);

CREATE TABLE refresh_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  BLOB NOT NULL UNIQUE,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family_id   TEXT NOT NULL,
    parent_id   TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);

CREATE TABLE revoked_tokens (
    jti         TEXT PRIMARY KEY,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER NOT NULL
);
CREATE INDEX revoked_tokens_revoked_at ON revoked_tokens(revoked_at);

CREATE TABLE password_resets (
    token_hash  BLOB PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);

CREATE TABLE lockouts (
    identifier   TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    locked_until INTEGER NOT NULL DEFAULT 0,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE login_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    client_ip   TEXT NOT NULL,
    identifier  TEXT NOT NULL,
    user_id     TEXT,
    outcome     TEXT NOT NULL
);
CREATE INDEX login_attempts_at ON login_attempts(at);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    private_key TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
);

-- Session-wide revocations (password reset) and single-token revocations (logout) are
-- announced here too, so replicas that poll see them.
CREATE TABLE revocation_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    until_ts    INTEGER NOT NULL
);
CREATE INDEX revocation_events_at ON revocation_events(at);
-- One live key per algorithm: replicas starting together cannot both create one.
CREATE UNIQUE INDEX signing_keys_live ON signing_keys(algorithm) WHERE retired_at IS NULL;
