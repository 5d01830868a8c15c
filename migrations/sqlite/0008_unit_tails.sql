-- Per-unit latency tails (issue 14: the gate analyses the unit it randomizes). For each unit and
-- side, the successful requests and how many of them were slower than each of 20 fixed latency
-- thresholds ("rungs", capture::tail: every 12th histogram bucket boundary, 1.05^12 ≈ 1.8 ms up
-- to 1.05^240 ≈ 121 s); and, per rung, the sums over units the delta method needs, kept
-- incrementally by the writer as agg_unit_moments is. The gate reads the rung nearest stable's
-- quantile and compares the two sides' shares above it over units.
-- Observations stored before this migration are not counted here (their stage's tail falls back
-- to the request-level comparison until both sides have new data).
-- Keep in step with migrations/postgres/0008_unit_tails.sql (only the epoch's type differs).

-- agg_unit_sides: tyc, tys = candidate and stable successes; tc<r>, ts<r> = those slower than rung r.
ALTER TABLE agg_unit_sides ADD COLUMN tyc DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tys DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc0 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc1 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc2 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc3 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc4 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc5 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc6 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc7 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc8 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc9 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc10 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc11 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc12 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc13 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc14 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc15 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc16 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc17 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc18 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN tc19 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts0 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts1 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts2 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts3 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts4 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts5 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts6 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts7 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts8 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts9 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts10 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts11 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts12 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts13 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts14 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts15 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts16 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts17 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts18 DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agg_unit_sides ADD COLUMN ts19 DOUBLE PRECISION NOT NULL DEFAULT 0;

-- Per rung: the store::JointMoments of (x_c, y_c, x_s, y_s) = (slower candidate successes,
-- candidate successes, slower stable successes, stable successes) over units: units with
-- candidate / stable successes, the four sums and the ten products; `keyless` = 1 holds the
-- requests without a unit key (the unit count is agg_unit_moments').
CREATE TABLE agg_tail_moments (
    deployment TEXT NOT NULL,
    stage TEXT NOT NULL,
    epoch TEXT NOT NULL,
    cohort_key TEXT NOT NULL,
    cohort_value TEXT NOT NULL,
    keyless INTEGER NOT NULL,
    rung INTEGER NOT NULL,
    cu BIGINT NOT NULL DEFAULT 0,
    su BIGINT NOT NULL DEFAULT 0,
    s0 DOUBLE PRECISION NOT NULL DEFAULT 0,
    s1 DOUBLE PRECISION NOT NULL DEFAULT 0,
    s2 DOUBLE PRECISION NOT NULL DEFAULT 0,
    s3 DOUBLE PRECISION NOT NULL DEFAULT 0,
    p0 DOUBLE PRECISION NOT NULL DEFAULT 0,
    p1 DOUBLE PRECISION NOT NULL DEFAULT 0,
    p2 DOUBLE PRECISION NOT NULL DEFAULT 0,
    p3 DOUBLE PRECISION NOT NULL DEFAULT 0,
    p4 DOUBLE PRECISION NOT NULL DEFAULT 0,
    p5 DOUBLE PRECISION NOT NULL DEFAULT 0,
    p6 DOUBLE PRECISION NOT NULL DEFAULT 0,
    p7 DOUBLE PRECISION NOT NULL DEFAULT 0,
    p8 DOUBLE PRECISION NOT NULL DEFAULT 0,
    p9 DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (deployment, stage, epoch, cohort_key, cohort_value, keyless, rung)
);
