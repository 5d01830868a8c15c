-- canarist schema, SQLite flavour. Keep in step with migrations/postgres/0001_init.sql:
-- same tables, columns and names; only the types differ (UUID → BLOB, TIMESTAMPTZ → TEXT
-- in RFC 3339 UTC, JSONB → TEXT, BIGSERIAL → INTEGER PRIMARY KEY AUTOINCREMENT).

CREATE TABLE config_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO config_state (id, version) VALUES (1, 0);

CREATE TABLE deployments (
    name TEXT PRIMARY KEY,
    config_version BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE variants (
    deployment TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    percent DOUBLE PRECISION NOT NULL,
    config_version BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (deployment, name)
);

CREATE TABLE rollouts (
    id BLOB PRIMARY KEY,
    deployment TEXT NOT NULL,
    candidate TEXT NOT NULL,
    state TEXT NOT NULL,
    stage_index INTEGER NOT NULL,
    stage_started_at TEXT NOT NULL,
    config_version BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX rollouts_by_deployment ON rollouts (deployment, created_at);

CREATE TABLE rollout_stages (
    rollout_id BLOB NOT NULL,
    stage_index INTEGER NOT NULL,
    name TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome TEXT,
    PRIMARY KEY (rollout_id, stage_index)
);

CREATE TABLE rollout_transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id BLOB NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    from_stage INTEGER NOT NULL,
    to_stage INTEGER NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    evidence TEXT NOT NULL,
    config_version BIGINT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX rollout_transitions_by_rollout ON rollout_transitions (rollout_id, id);

CREATE TABLE observations (
    id BLOB PRIMARY KEY,
    request_id BLOB NOT NULL,
    pair_id BLOB,
    at TEXT NOT NULL,
    deployment TEXT NOT NULL,
    variant TEXT NOT NULL,
    role TEXT NOT NULL,
    purpose TEXT NOT NULL,
    stage TEXT NOT NULL,
    config_version BIGINT NOT NULL,
    endpoint TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    stream BOOLEAN NOT NULL,
    bucket INTEGER,
    unit_key TEXT,
    sticky BOOLEAN NOT NULL,
    cohort TEXT NOT NULL,
    status INTEGER,
    error_class TEXT,
    error_detail TEXT,
    ttft_ms DOUBLE PRECISION,
    ttft_bucket INTEGER,
    latency_ms DOUBLE PRECISION NOT NULL,
    latency_bucket INTEGER NOT NULL,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    total_tokens BIGINT,
    cost_usd DOUBLE PRECISION,
    finish_reason TEXT,
    response_text TEXT,
    request_body TEXT,
    response_body TEXT
);
CREATE INDEX observations_by_stage ON observations (deployment, stage, variant);
CREATE INDEX observations_by_at ON observations (at);

CREATE TABLE observation_labels (
    observation_id BLOB NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (observation_id, key)
);
CREATE INDEX observation_labels_by_value ON observation_labels (key, value);

CREATE TABLE pairs (
    id BLOB PRIMARY KEY,
    request_id BLOB NOT NULL,
    deployment TEXT NOT NULL,
    stage TEXT NOT NULL,
    config_version BIGINT NOT NULL,
    candidate TEXT NOT NULL,
    stable_observation_id BLOB NOT NULL,
    candidate_observation_id BLOB NOT NULL,
    cohort TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX pairs_by_stage ON pairs (deployment, stage, candidate);

CREATE TABLE pair_labels (
    pair_id BLOB NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (pair_id, key)
);

CREATE TABLE check_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pair_id BLOB NOT NULL,
    rubric_id TEXT NOT NULL,
    rubric_version TEXT NOT NULL,
    rubric_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    side TEXT NOT NULL,
    passed BOOLEAN NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    severity TEXT NOT NULL,
    detail TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX check_results_by_pair ON check_results (pair_id);

CREATE TABLE judgments (
    id BLOB PRIMARY KEY,
    pair_id BLOB NOT NULL,
    rubric_id TEXT NOT NULL,
    rubric_version TEXT NOT NULL,
    rubric_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    mode TEXT NOT NULL,
    judge_model TEXT NOT NULL,
    judge_order TEXT NOT NULL,
    side TEXT,
    score DOUBLE PRECISION,
    label TEXT,
    winner TEXT,
    reasoning TEXT,
    abstain_reason TEXT,
    trace_id TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX judgments_by_pair ON judgments (pair_id);

CREATE TABLE judge_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pair_id BLOB NOT NULL UNIQUE,
    deployment TEXT NOT NULL,
    candidate TEXT NOT NULL,
    state TEXT NOT NULL,
    lease_owner TEXT,
    lease_expires_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX judge_jobs_by_state ON judge_jobs (state, id);
CREATE INDEX judge_jobs_by_candidate ON judge_jobs (deployment, candidate, state);

CREATE TABLE api_keys (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
