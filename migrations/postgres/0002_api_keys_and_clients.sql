-- API keys and personal access tokens of users, and OAuth2 clients (client credentials).
-- Secrets are never stored: only an HMAC-SHA-256 digest under a server-side pepper, found
-- through `lookup`, a public slice of the secret's random part.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,              -- 'api_key' | 'pat'
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    lookup       TEXT NOT NULL UNIQUE,
    digest       BYTEA NOT NULL,
    display      TEXT NOT NULL,              -- e.g. `gk_AbC123`, shown in lists
    scopes       TEXT NOT NULL DEFAULT '[]',
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_owner ON api_keys(user_id, kind);

CREATE TABLE clients (
    id            TEXT PRIMARY KEY,          -- the public client_id
    name          TEXT NOT NULL,
    secret_digest BYTEA NOT NULL,
    scopes        TEXT NOT NULL DEFAULT '[]',
    created_at    BIGINT NOT NULL,
    created_by    TEXT,
    revoked_at    BIGINT
);
