-- Aggregates the capture writer adds to as deltas (`ON CONFLICT DO UPDATE SET n = n + excluded.n`),
-- so that the gate's tick reads one row per variant and cohort instead of scanning observations.
-- Keep in step with migrations/postgres/0005_aggregates.sql (only the epoch's type differs).
--
-- Every table is keyed by the stage scope: deployment, stage label and `epoch` (the start of the
-- latest rollout stage of that label at or before the observation; 1970-01-01 when none), then
-- the cohort (`cohort_key` = '' and `cohort_value` = '' for the whole stage, else one label).

-- Per variant and error class ('' = success).
CREATE TABLE agg_variants (
    deployment TEXT NOT NULL,
    stage TEXT NOT NULL,
    epoch TEXT NOT NULL,
    cohort_key TEXT NOT NULL,
    cohort_value TEXT NOT NULL,
    variant TEXT NOT NULL,
    error_class TEXT NOT NULL,
    role TEXT NOT NULL,
    requests BIGINT NOT NULL,
    served BIGINT NOT NULL,
    latency_n BIGINT NOT NULL,
    latency_sum DOUBLE PRECISION NOT NULL,
    latency_sq DOUBLE PRECISION NOT NULL,
    ttft_n BIGINT NOT NULL,
    ttft_sum DOUBLE PRECISION NOT NULL,
    ttft_sq DOUBLE PRECISION NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost_n BIGINT NOT NULL,
    cost_sum DOUBLE PRECISION NOT NULL,
    cost_sq DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (deployment, stage, epoch, cohort_key, cohort_value, variant, error_class)
);

-- Successful requests per log-scale bucket (store::LatencyHistogram) of latency or TTFT.
CREATE TABLE agg_timings (
    deployment TEXT NOT NULL,
    stage TEXT NOT NULL,
    epoch TEXT NOT NULL,
    cohort_key TEXT NOT NULL,
    cohort_value TEXT NOT NULL,
    variant TEXT NOT NULL,
    timing TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (deployment, stage, epoch, cohort_key, cohort_value, variant, timing, bucket)
);

-- Distinct units per variant: keyed units (counted when a unit's first request arrives) and
-- requests without a key (each a unit of its own), apart so that a scope spanning several
-- epochs can recount the keyed ones from agg_unit_variants.
CREATE TABLE agg_variant_units (
    deployment TEXT NOT NULL,
    stage TEXT NOT NULL,
    epoch TEXT NOT NULL,
    cohort_key TEXT NOT NULL,
    cohort_value TEXT NOT NULL,
    variant TEXT NOT NULL,
    units BIGINT NOT NULL,
    served_units BIGINT NOT NULL,
    keyless_units BIGINT NOT NULL,
    keyless_served BIGINT NOT NULL,
    PRIMARY KEY (deployment, stage, epoch, cohort_key, cohort_value, variant)
);

-- Requests per unit and variant.
CREATE TABLE agg_unit_variants (
    deployment TEXT NOT NULL,
    stage TEXT NOT NULL,
    epoch TEXT NOT NULL,
    cohort_key TEXT NOT NULL,
    cohort_value TEXT NOT NULL,
    variant TEXT NOT NULL,
    unit_key TEXT NOT NULL,
    requests BIGINT NOT NULL,
    served BIGINT NOT NULL,
    PRIMARY KEY (deployment, stage, epoch, cohort_key, cohort_value, variant, unit_key)
);

-- Per unit, the candidates pooled (the A/A arm left out) and stable: errors and requests
-- (exc, eyc, exs, eys), cost and requests with a cost (cxc, cyc, cxs, cys).
CREATE TABLE agg_unit_sides (
    deployment TEXT NOT NULL,
    stage TEXT NOT NULL,
    epoch TEXT NOT NULL,
    cohort_key TEXT NOT NULL,
    cohort_value TEXT NOT NULL,
    unit_key TEXT NOT NULL,
    exc DOUBLE PRECISION NOT NULL,
    eyc DOUBLE PRECISION NOT NULL,
    exs DOUBLE PRECISION NOT NULL,
    eys DOUBLE PRECISION NOT NULL,
    cxc DOUBLE PRECISION NOT NULL,
    cyc DOUBLE PRECISION NOT NULL,
    cxs DOUBLE PRECISION NOT NULL,
    cys DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (deployment, stage, epoch, cohort_key, cohort_value, unit_key)
);

-- The sums over units of agg_unit_sides (store::JointMoments for errors `e_*` and cost `c_*`:
-- units per side, Σ v_i, Σ v_i·v_j), kept incrementally by the writer; `keyless` = 1 holds the
-- requests without a unit key.
CREATE TABLE agg_unit_moments (
    deployment TEXT NOT NULL,
    stage TEXT NOT NULL,
    epoch TEXT NOT NULL,
    cohort_key TEXT NOT NULL,
    cohort_value TEXT NOT NULL,
    keyless INTEGER NOT NULL,
    units BIGINT NOT NULL DEFAULT 0,
    e_cu BIGINT NOT NULL DEFAULT 0,
    e_su BIGINT NOT NULL DEFAULT 0,
    e_s0 DOUBLE PRECISION NOT NULL DEFAULT 0,
    e_s1 DOUBLE PRECISION NOT NULL DEFAULT 0,
    e_s2 DOUBLE PRECISION NOT NULL DEFAULT 0,
    e_s3 DOUBLE PRECISION NOT NULL DEFAULT 0,
    e_p0 DOUBLE PRECISION NOT NULL DEFAULT 0,
    e_p1 DOUBLE PRECISION NOT NULL DEFAULT 0,
    e_p2 DOUBLE PRECISION NOT NULL DEFAULT 0,
    e_p3 DOUBLE PRECISION NOT NULL DEFAULT 0,
    e_p4 DOUBLE PRECISION NOT NULL DEFAULT 0,
    e_p5 DOUBLE PRECISION NOT NULL DEFAULT 0,
    e_p6 DOUBLE PRECISION NOT NULL DEFAULT 0,
    e_p7 DOUBLE PRECISION NOT NULL DEFAULT 0,
    e_p8 DOUBLE PRECISION NOT NULL DEFAULT 0,
    e_p9 DOUBLE PRECISION NOT NULL DEFAULT 0,
    c_cu BIGINT NOT NULL DEFAULT 0,
    c_su BIGINT NOT NULL DEFAULT 0,
    c_s0 DOUBLE PRECISION NOT NULL DEFAULT 0,
    c_s1 DOUBLE PRECISION NOT NULL DEFAULT 0,
    c_s2 DOUBLE PRECISION NOT NULL DEFAULT 0,
    c_s3 DOUBLE PRECISION NOT NULL DEFAULT 0,
    c_p0 DOUBLE PRECISION NOT NULL DEFAULT 0,
    c_p1 DOUBLE PRECISION NOT NULL DEFAULT 0,
    c_p2 DOUBLE PRECISION NOT NULL DEFAULT 0,
    c_p3 DOUBLE PRECISION NOT NULL DEFAULT 0,
    c_p4 DOUBLE PRECISION NOT NULL DEFAULT 0,
    c_p5 DOUBLE PRECISION NOT NULL DEFAULT 0,
    c_p6 DOUBLE PRECISION NOT NULL DEFAULT 0,
    c_p7 DOUBLE PRECISION NOT NULL DEFAULT 0,
    c_p8 DOUBLE PRECISION NOT NULL DEFAULT 0,
    c_p9 DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (deployment, stage, epoch, cohort_key, cohort_value, keyless)
);

-- Present until the first replica after this migration has summed the observations stored
-- before it into the tables above (store::backfill, once, in the transaction that deletes it).
CREATE TABLE agg_backfill (id INTEGER PRIMARY KEY);
INSERT INTO agg_backfill (id) VALUES (1);
