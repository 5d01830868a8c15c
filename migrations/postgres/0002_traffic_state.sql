-- The live traffic state of each deployment (mode, stage, candidates and their shares) as the
-- rollout controller and the admin API set it. It overrides the config file's deployment
-- until removed; every write bumps config_state.version (and, on Postgres, notifies replicas).
CREATE TABLE traffic_state (
    deployment TEXT PRIMARY KEY,
    state JSONB NOT NULL,
    config_version BIGINT NOT NULL,
    actor TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
