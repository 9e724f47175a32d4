-- Per-client rate-limit buckets shared by every replica on a store (GCRA, see src/limits.rs).
-- A SQLite store serves one process, which limits in memory and never writes here; the table
-- exists so both stores keep one schema. Times are microseconds by the database's clock.
CREATE TABLE rate_buckets (
    name        TEXT NOT NULL,
    client      TEXT NOT NULL,
    tat         BIGINT NOT NULL,
    checked_at  BIGINT NOT NULL,
    granted     INTEGER NOT NULL,
    PRIMARY KEY (name, client)
);
