-- Email verification. Existing accounts start unverified: nothing proved their address.
ALTER TABLE users ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0;

-- Single-use links, stored only as SHA-256 digests. `email` is the address the link was
-- mailed to: a link proves that address only, not whatever the account holds later.
CREATE TABLE email_verifications (
    token_hash  BLOB PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE INDEX email_verifications_user ON email_verifications(user_id);
