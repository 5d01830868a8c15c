-- The capture writer's flushes of row-less observations (issue 15 item 1). Most observations are
-- no longer stored as rows: the writer sends them to the store in a flush that only adds them to
-- the aggregate tables (0005). A flush is identified by the writer (a random id per process)
-- and its sequence number; the store records the id in the flush's own transaction and adds a
-- flush whose id it already holds nothing, so a retried or replayed flush (after an error, or
-- from the spool after an outage) adds once.
-- Keep in step with migrations/postgres/0007_agg_flushes.sql (only the types differ).
CREATE TABLE agg_flushes (
    writer_id BLOB NOT NULL,
    seq BIGINT NOT NULL,
    observations BIGINT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (writer_id, seq)
);
CREATE INDEX agg_flushes_at ON agg_flushes (at);
