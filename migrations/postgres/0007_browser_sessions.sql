-- Browser sessions ([session]): the cookie is an opaque random value; only its SHA-256 is
-- kept, so a copy of this table signs nobody in. A session ends at expires_at (absolute),
-- when unused for the idle timeout (last_seen_at, written at most every few minutes), or
-- when ended (logout, password change): ended_at, announced to replicas as a 'session'
-- revocation event with the session's id.
CREATE TABLE browser_sessions (
    id            TEXT PRIMARY KEY,
    digest        BYTEA NOT NULL UNIQUE,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    ended_at      BIGINT,
    ip            TEXT,
    user_agent    TEXT
);
CREATE INDEX browser_sessions_user ON browser_sessions(user_id);
