-- Per-client rate-limit buckets shared by every replica on this store (GCRA, see
-- src/limits.rs): one row per (limit, client bucket), updated in one upsert per request.
-- `tat` (the bucket's theoretical arrival time) and `checked_at` are microseconds since the
-- epoch by the database's clock, so replicas whose clocks disagree still share one quota.
-- A row whose `tat` has passed is a full bucket, the same as no row: the prune deletes those.
-- No index on `tat`: every request rewrites it, and the once-a-minute prune can afford a scan
-- of a table that holds only the addresses seen in the last minute.
CREATE TABLE rate_buckets (
    name        TEXT NOT NULL,
    client      TEXT NOT NULL,
    tat         BIGINT NOT NULL,
    checked_at  BIGINT NOT NULL,
    granted     BOOLEAN NOT NULL,
    PRIMARY KEY (name, client)
);
