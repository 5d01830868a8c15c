-- The gate's evaluations over time: one row per gate cell (metric × cohort) per recorded tick of
-- the controller, so that the dashboard and the stage reports can chart each interval narrowing
-- as data arrives. The controller writes a cell only when its evidence changed, at most once per
-- max(5 s, the stage's age / 40), and always on a verdict change or a promote/rollback tick, so a
-- stage of any length keeps a few hundred rows per cell; `storage.keep_gate_history` prunes.
-- Keep in step with migrations/postgres/0006_gate_history.sql (only the types differ).
-- `lo`/`hi` NULL: the interval is unbounded on that side (too little data), or there is none.
CREATE TABLE gate_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id BLOB NOT NULL,
    deployment TEXT NOT NULL,
    stage_index INTEGER NOT NULL,
    metric TEXT NOT NULL,
    cohort TEXT NOT NULL,
    at TEXT NOT NULL,
    estimate REAL,
    lo REAL,
    hi REAL,
    bound REAL,
    alpha REAL,
    method TEXT NOT NULL,
    verdict TEXT NOT NULL,
    candidate_n BIGINT NOT NULL,
    stable_n BIGINT NOT NULL
);
CREATE INDEX gate_history_by_stage ON gate_history (rollout_id, stage_index, id);
CREATE INDEX gate_history_by_time ON gate_history (at);
