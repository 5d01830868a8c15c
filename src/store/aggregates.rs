//! Aggregate reads for the gate and the reports: everything per deployment and stage is summed
//! in the database (`GROUP BY`), never loaded row by row.
//!
//! Each summary comes once overall (`cohort: None`) and once per cohort label value
//! (`cohort: Some((key, value))`, through the label tables).
//! - Observations, per variant: requests, served requests, errors by class; latency and time to
//!   first token as moments (count, sum, sum of squares) **over successful requests only** (errors
//!   are in the error counts) plus log-bucketed histograms for quantiles (5% resolution, see
//!   [`LatencyHistogram`]); token sums; cost moments.
//! - Pairs: count per candidate.
//! - Judgments, per rubric (id and content hash: different hashes are never pooled), criterion and
//!   candidate: score moments per side, abstentions per side, moments of the paired difference
//!   (candidate − stable, same pair and judge model), win/tie/loss of combined pairwise verdicts.
//! - Check results, per rubric and check: score moments and passes per side, paired differences,
//!   and regressions (stable passed, candidate failed) and improvements.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

pub use super::units::{JointMoments, UnitComparison, UnitMoments};
use super::{Store, StoreError, to_u64, with_pool};
use crate::capture::LatencyHistogram;

/// Which rows a summary covers.
#[derive(Debug, Clone, Copy)]
pub struct SummaryScope<'a> {
    pub deployment: &'a str,
    /// The stage label as carried by observations and pairs.
    pub stage: &'a str,
    /// Only rows at or after this time (e.g. the rollout's start).
    pub since: DateTime<Utc>,
}

impl<'a> SummaryScope<'a> {
    pub fn new(deployment: &'a str, stage: &'a str) -> Self {
        Self {
            deployment,
            stage,
            since: DateTime::<Utc>::UNIX_EPOCH,
        }
    }
}

/// Count, sum and sum of squares: enough for a mean and a variance.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub count: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl Moments {
    pub fn add(&mut self, count: u64, sum: f64, sum_sq: f64) {
        self.count += count;
        self.sum += sum;
        self.sum_sq += sum_sq;
    }

    /// Takes a sub-population's moments out of these (never below an empty set).
    pub fn subtract(&mut self, other: &Moments) {
        if other.count >= self.count {
            *self = Moments::default();
            return;
        }
        self.count -= other.count;
        self.sum -= other.sum;
        self.sum_sq = (self.sum_sq - other.sum_sq).max(0.0);
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// Sample variance (n − 1).
    pub fn variance(&self) -> Option<f64> {
        (self.count > 1).then(|| {
            let n = self.count as f64;
            ((self.sum_sq - self.sum * self.sum / n) / (n - 1.0)).max(0.0)
        })
    }
}

pub use crate::vocab::Cohort;
use crate::vocab::{AA_VARIANT, Role};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct VariantSummary {
    pub cohort: Cohort,
    pub variant: String,
    pub role: Role,
    pub requests: u64,
    /// Requests whose answer went to the client (for the sample-ratio check).
    pub served: u64,
    /// Error class → count.
    pub errors: BTreeMap<String, u64>,
    pub latency: Moments,
    pub ttft: Moments,
    pub latency_histogram: LatencyHistogram,
    pub ttft_histogram: LatencyHistogram,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Over requests that have a cost.
    pub cost: Moments,
    /// Distinct units among this variant's observations (a request without a unit key is a
    /// unit of its own).
    pub units: u64,
    /// Distinct units this variant served (for the sample-ratio check).
    pub served_units: u64,
}

impl VariantSummary {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreSummary {
    pub cohort: Cohort,
    pub candidate: String,
    pub rubric_id: String,
    pub rubric_hash: String,
    pub criterion: String,
    pub stable: Moments,
    pub candidate_scores: Moments,
    pub stable_abstentions: u64,
    pub candidate_abstentions: u64,
    /// candidate − stable on the same pair.
    pub paired: Moments,
    /// The same differences summed per unit (x = Σ differences, y = pairs).
    pub paired_units: UnitMoments,
    pub wins: u64,
    pub ties: u64,
    pub losses: u64,
    pub pairwise_abstentions: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckSummary {
    pub cohort: Cohort,
    pub candidate: String,
    pub rubric_id: String,
    pub rubric_hash: String,
    pub check: String,
    pub stable: Moments,
    pub candidate_scores: Moments,
    pub stable_passed: u64,
    pub candidate_passed: u64,
    pub paired: Moments,
    /// The same differences summed per unit (x = Σ differences, y = pairs).
    pub paired_units: UnitMoments,
    /// Pairs where stable passed and the candidate failed.
    pub regressions: u64,
    /// Pairs where the candidate passed and stable failed.
    pub improvements: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageSummary {
    /// Stable and the candidates (the A/A arm's second stable answer is in `aa`).
    pub variants: Vec<VariantSummary>,
    /// (cohort, candidate) → pairs.
    pub pairs: BTreeMap<(Cohort, String), u64>,
    pub scores: Vec<ScoreSummary>,
    pub checks: Vec<CheckSummary>,
    /// The A/A arm, kept apart so that nothing reads it as a candidate.
    pub aa: AaSummary,
    /// Errors and cost per unit and side, per cohort (`None` = overall).
    pub units: Vec<UnitComparison>,
    /// Paired requests' error differences per unit, per cohort and candidate (`store::paired`).
    pub paired_outcomes: Vec<super::PairedOutcomes>,
}

/// The A/A arm of a stage: stable judged against a second stable answer
/// ([`crate::capture::AA_VARIANT`]). Its paired differences and pairwise verdicts are the
/// judge's noise floor on real traffic (they would all be zero for a perfect judge).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AaSummary {
    /// The second stable answers' requests, errors, latency and cost.
    pub variants: Vec<VariantSummary>,
    /// Cohort → pairs.
    pub pairs: BTreeMap<Cohort, u64>,
    pub scores: Vec<ScoreSummary>,
    pub checks: Vec<CheckSummary>,
}

impl StageSummary {
    /// Moves the A/A arm's rows out of the candidates' into `aa`.
    fn split_aa(&mut self) {
        // Stored rows name the arm by its reserved variant; this is the one place that reads
        // the name back (above the store, the arm is `StageSummary::aa`).
        let (aa, variants) = std::mem::take(&mut self.variants)
            .into_iter()
            .partition(|v| v.role == Role::Candidate && v.variant == AA_VARIANT);
        self.variants = variants;
        self.aa.variants = aa;
        let (aa, scores) = std::mem::take(&mut self.scores)
            .into_iter()
            .partition(|s| s.candidate == AA_VARIANT);
        self.scores = scores;
        self.aa.scores = aa;
        let (aa, checks) = std::mem::take(&mut self.checks)
            .into_iter()
            .partition(|c| c.candidate == AA_VARIANT);
        self.checks = checks;
        self.aa.checks = aa;
        let pairs = std::mem::take(&mut self.pairs);
        for ((cohort, candidate), n) in pairs {
            if candidate == AA_VARIANT {
                self.aa.pairs.insert(cohort, n);
            } else {
                self.pairs.insert((cohort, candidate), n);
            }
        }
    }
}

/// SQL fragments for "overall" or "per label": (select, join, group).
fn cohort_sql(by_label: bool, label_join: &str) -> (&'static str, String, &'static str) {
    if by_label {
        (
            "l.key, l.value, ",
            label_join.to_string(),
            "l.key, l.value, ",
        )
    } else {
        (
            "CAST(NULL AS TEXT), CAST(NULL AS TEXT), ",
            String::new(),
            "",
        )
    }
}

pub(super) const OBS_LABELS: &str = " JOIN observation_labels l ON l.observation_id = o.id";
pub(super) const PAIR_LABELS: &str = " JOIN pair_labels l ON l.pair_id = p.id";
pub(super) const OBS_SCOPE: &str = " WHERE o.deployment = $1 AND o.stage = $2 AND o.at >= $3";
pub(super) const PAIR_SCOPE: &str =
    " WHERE p.deployment = $1 AND p.stage = $2 AND p.created_at >= $3";

/// Runs `$sql` bound to the scope and decodes every row with `$decode` (a closure body over
/// `$row`, compiled once per backend).
macro_rules! fetch_rows {
    ($store:expr, $sql:expr, $scope:expr, |$row:ident| $decode:expr) => {
        with_pool!($store, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe($sql))
                .bind($scope.deployment)
                .bind($scope.stage)
                .bind($scope.since)
                .fetch_all(p)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for $row in &rows {
                out.push($decode);
            }
            out
        })
    };
}
pub(super) use fetch_rows;

pub(super) fn cohort_of(key: Option<String>, value: Option<String>) -> Cohort {
    key.zip(value)
}

impl Store {
    /// Everything the gate needs about one stage of one deployment, the A/A arm apart.
    /// Variants and units come from the aggregate tables the writer keeps (`store::rollups`).
    pub async fn stage_summary(&self, scope: SummaryScope<'_>) -> Result<StageSummary, StoreError> {
        let mut summary = StageSummary {
            variants: self.variant_summaries(scope).await?,
            ..StageSummary::default()
        };
        summary.units = self.unit_comparisons(scope).await?;
        self.stage_summary_with(scope, summary).await
    }

    /// [`Store::stage_summary`] summed from the observation rows themselves (as before the
    /// aggregate tables): the reference the aggregates are tested against, and the "before" of
    /// `benches/gate_tick.rs`.
    #[doc(hidden)]
    pub async fn stage_summary_from_rows(
        &self,
        scope: SummaryScope<'_>,
    ) -> Result<StageSummary, StoreError> {
        let mut summary = StageSummary {
            variants: self.variant_summaries_from_rows(scope).await?,
            ..StageSummary::default()
        };
        summary.units = self.unit_comparisons_from_rows(scope).await?;
        self.stage_summary_with(scope, summary).await
    }

    /// Adds pairs, scores and checks to a summary with its variants and units, then moves the
    /// A/A arm apart.
    async fn stage_summary_with(
        &self,
        scope: SummaryScope<'_>,
        mut summary: StageSummary,
    ) -> Result<StageSummary, StoreError> {
        for by_label in [false, true] {
            let (sel, join, group) = cohort_sql(by_label, PAIR_LABELS);
            let sql = format!(
                "SELECT {sel}p.candidate, COUNT(*) FROM pairs p{join}{PAIR_SCOPE} \
                 GROUP BY {group}p.candidate"
            );
            let rows: Vec<(Cohort, String, i64)> = fetch_rows!(self, sql, scope, |r| (
                cohort_of(r.try_get(0)?, r.try_get(1)?),
                r.try_get(2)?,
                r.try_get(3)?
            ));
            for (cohort, candidate, n) in rows {
                summary.pairs.insert((cohort, candidate), to_u64(n));
            }
        }
        summary.paired_outcomes = self.paired_outcomes(scope).await?;
        summary.scores = self.score_summaries(scope).await?;
        summary.checks = self.check_summaries(scope).await?;
        summary.split_aa();
        Ok(summary)
    }

    /// Per variant (overall and per cohort label value), from the observation rows.
    #[doc(hidden)]
    pub async fn variant_summaries_from_rows(
        &self,
        scope: SummaryScope<'_>,
    ) -> Result<Vec<VariantSummary>, StoreError> {
        let mut out: BTreeMap<(Cohort, String), VariantSummary> = BTreeMap::new();
        for by_label in [false, true] {
            let (sel, join, group) = cohort_sql(by_label, OBS_LABELS);
            let sql = format!(
                "SELECT {sel}o.variant, o.role, o.error_class, COUNT(*), \
                 CAST(SUM(CASE WHEN o.purpose = 'served' THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(COALESCE(SUM(o.latency_ms), 0) AS DOUBLE PRECISION), \
                 CAST(COALESCE(SUM(o.latency_ms * o.latency_ms), 0) AS DOUBLE PRECISION), \
                 COUNT(o.ttft_ms), \
                 CAST(COALESCE(SUM(o.ttft_ms), 0) AS DOUBLE PRECISION), \
                 CAST(COALESCE(SUM(o.ttft_ms * o.ttft_ms), 0) AS DOUBLE PRECISION), \
                 CAST(COALESCE(SUM(o.prompt_tokens), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(o.completion_tokens), 0) AS BIGINT), \
                 COUNT(o.cost_usd), \
                 CAST(COALESCE(SUM(o.cost_usd), 0) AS DOUBLE PRECISION), \
                 CAST(COALESCE(SUM(o.cost_usd * o.cost_usd), 0) AS DOUBLE PRECISION) \
                 FROM observations o{join}{OBS_SCOPE} \
                 GROUP BY {group}o.variant, o.role, o.error_class"
            );
            let rows: Vec<VariantRow> = fetch_rows!(self, sql, scope, |r| VariantRow {
                cohort: cohort_of(r.try_get(0)?, r.try_get(1)?),
                variant: r.try_get(2)?,
                role: r.try_get(3)?,
                error: r.try_get(4)?,
                count: to_u64(r.try_get(5)?),
                served: to_u64(r.try_get(6)?),
                latency: (r.try_get(7)?, r.try_get(8)?),
                ttft: (to_u64(r.try_get(9)?), r.try_get(10)?, r.try_get(11)?),
                tokens: (to_u64(r.try_get(12)?), to_u64(r.try_get(13)?)),
                cost: (to_u64(r.try_get(14)?), r.try_get(15)?, r.try_get(16)?),
            });
            for row in rows {
                row.add_to(&mut out)?;
            }
            for column in ["latency_bucket", "ttft_bucket"] {
                let sql = format!(
                    "SELECT {sel}o.variant, o.{column}, COUNT(*) FROM observations o{join}{OBS_SCOPE} \
                     AND o.error_class IS NULL AND o.{column} IS NOT NULL \
                     GROUP BY {group}o.variant, o.{column}"
                );
                let rows: Vec<(Cohort, String, i32, i64)> = fetch_rows!(self, sql, scope, |r| (
                    cohort_of(r.try_get(0)?, r.try_get(1)?),
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?
                ));
                for (cohort, variant, bucket, n) in rows {
                    if let Some(s) = out.get_mut(&(cohort, variant)) {
                        let h = if column == "latency_bucket" {
                            &mut s.latency_histogram
                        } else {
                            &mut s.ttft_histogram
                        };
                        h.add(u32::try_from(bucket).unwrap_or(0), to_u64(n));
                    }
                }
            }
        }
        self.add_unit_summaries(scope, &mut out).await?;
        Ok(out.into_values().collect())
    }

    /// Per rubric, criterion and candidate (overall and per cohort label value).
    pub async fn score_summaries(
        &self,
        scope: SummaryScope<'_>,
    ) -> Result<Vec<ScoreSummary>, StoreError> {
        let mut out: BTreeMap<GroupKey, ScoreSummary> = BTreeMap::new();
        for by_label in [false, true] {
            let (sel, join, group) = cohort_sql(by_label, PAIR_LABELS);
            let keys = "p.candidate, j.rubric_id, j.rubric_hash, j.name";
            let sides = format!(
                "SELECT {sel}{keys}, j.side, COUNT(j.score), \
                 CAST(COALESCE(SUM(j.score), 0) AS DOUBLE PRECISION), \
                 CAST(COALESCE(SUM(j.score * j.score), 0) AS DOUBLE PRECISION), \
                 CAST(SUM(CASE WHEN j.abstain_reason IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) \
                 FROM judgments j JOIN pairs p ON p.id = j.pair_id{join}{PAIR_SCOPE} \
                 AND j.side IS NOT NULL GROUP BY {group}{keys}, j.side"
            );
            let rows: Vec<(GroupKey, String, Moments, u64)> =
                fetch_rows!(self, sides, scope, |r| (
                    group_key(
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?
                    ),
                    r.try_get(6)?,
                    moments(r.try_get(7)?, r.try_get(8)?, r.try_get(9)?),
                    to_u64(r.try_get(10)?)
                ));
            for (key, side, m, abstained) in rows {
                let s = out
                    .entry(key.clone())
                    .or_insert_with(|| score_summary(&key));
                if side == "stable" {
                    s.stable = m;
                    s.stable_abstentions = abstained;
                } else {
                    s.candidate_scores = m;
                    s.candidate_abstentions = abstained;
                }
            }
            let paired = format!(
                "SELECT {sel}{keys}, COUNT(*), \
                 CAST(SUM(j.score - s.score) AS DOUBLE PRECISION), \
                 CAST(SUM((j.score - s.score) * (j.score - s.score)) AS DOUBLE PRECISION) \
                 FROM judgments j JOIN judgments s ON s.pair_id = j.pair_id \
                 AND s.rubric_hash = j.rubric_hash AND s.name = j.name \
                 AND s.judge_model = j.judge_model AND s.side = 'stable' AND s.score IS NOT NULL \
                 JOIN pairs p ON p.id = j.pair_id{join}{PAIR_SCOPE} \
                 AND j.side = 'candidate' AND j.score IS NOT NULL GROUP BY {group}{keys}"
            );
            let rows: Vec<(GroupKey, Moments)> = fetch_rows!(self, paired, scope, |r| (
                group_key(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?
                ),
                moments(r.try_get(6)?, r.try_get(7)?, r.try_get(8)?)
            ));
            for (key, m) in rows {
                out.entry(key.clone())
                    .or_insert_with(|| score_summary(&key))
                    .paired = m;
            }
            let verdicts = format!(
                "SELECT {sel}{keys}, \
                 CAST(SUM(CASE WHEN j.winner = 'candidate' THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN j.winner = 'tie' THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN j.winner = 'stable' THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN j.abstain_reason IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) \
                 FROM judgments j JOIN pairs p ON p.id = j.pair_id{join}{PAIR_SCOPE} \
                 AND j.judge_order = 'combined' GROUP BY {group}{keys}"
            );
            let rows: Vec<(GroupKey, [i64; 4])> = fetch_rows!(self, verdicts, scope, |r| (
                group_key(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?
                ),
                [r.try_get(6)?, r.try_get(7)?, r.try_get(8)?, r.try_get(9)?]
            ));
            for (key, [w, t, l, a]) in rows {
                let s = out
                    .entry(key.clone())
                    .or_insert_with(|| score_summary(&key));
                s.wins = to_u64(w);
                s.ties = to_u64(t);
                s.losses = to_u64(l);
                s.pairwise_abstentions = to_u64(a);
            }
        }
        for (key, m) in self.paired_units(scope, false).await? {
            if let Some(s) = out.get_mut(&key) {
                s.paired_units = m;
            }
        }
        Ok(out.into_values().collect())
    }

    /// Per rubric, check and candidate (overall and per cohort label value).
    pub async fn check_summaries(
        &self,
        scope: SummaryScope<'_>,
    ) -> Result<Vec<CheckSummary>, StoreError> {
        let mut out: BTreeMap<GroupKey, CheckSummary> = BTreeMap::new();
        for by_label in [false, true] {
            let (sel, join, group) = cohort_sql(by_label, PAIR_LABELS);
            let keys = "p.candidate, j.rubric_id, j.rubric_hash, j.name";
            let sides = format!(
                "SELECT {sel}{keys}, j.side, COUNT(*), \
                 CAST(SUM(j.score) AS DOUBLE PRECISION), \
                 CAST(SUM(j.score * j.score) AS DOUBLE PRECISION), \
                 CAST(SUM(CASE WHEN j.passed THEN 1 ELSE 0 END) AS BIGINT) \
                 FROM check_results j JOIN pairs p ON p.id = j.pair_id{join}{PAIR_SCOPE} \
                 GROUP BY {group}{keys}, j.side"
            );
            let rows: Vec<(GroupKey, String, Moments, u64)> =
                fetch_rows!(self, sides, scope, |r| (
                    group_key(
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?
                    ),
                    r.try_get(6)?,
                    moments(r.try_get(7)?, r.try_get(8)?, r.try_get(9)?),
                    to_u64(r.try_get(10)?)
                ));
            for (key, side, m, passed) in rows {
                let s = out
                    .entry(key.clone())
                    .or_insert_with(|| check_summary(&key));
                if side == "stable" {
                    s.stable = m;
                    s.stable_passed = passed;
                } else {
                    s.candidate_scores = m;
                    s.candidate_passed = passed;
                }
            }
            let paired = format!(
                "SELECT {sel}{keys}, COUNT(*), \
                 CAST(SUM(j.score - s.score) AS DOUBLE PRECISION), \
                 CAST(SUM((j.score - s.score) * (j.score - s.score)) AS DOUBLE PRECISION), \
                 CAST(SUM(CASE WHEN s.passed AND NOT j.passed THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN j.passed AND NOT s.passed THEN 1 ELSE 0 END) AS BIGINT) \
                 FROM check_results j JOIN check_results s ON s.pair_id = j.pair_id \
                 AND s.rubric_hash = j.rubric_hash AND s.name = j.name AND s.side = 'stable' \
                 JOIN pairs p ON p.id = j.pair_id{join}{PAIR_SCOPE} \
                 AND j.side = 'candidate' GROUP BY {group}{keys}"
            );
            let rows: Vec<(GroupKey, Moments, i64, i64)> = fetch_rows!(self, paired, scope, |r| (
                group_key(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?
                ),
                moments(r.try_get(6)?, r.try_get(7)?, r.try_get(8)?),
                r.try_get(9)?,
                r.try_get(10)?
            ));
            for (key, m, regressions, improvements) in rows {
                let s = out
                    .entry(key.clone())
                    .or_insert_with(|| check_summary(&key));
                s.paired = m;
                s.regressions = to_u64(regressions);
                s.improvements = to_u64(improvements);
            }
        }
        for (key, m) in self.paired_units(scope, true).await? {
            if let Some(s) = out.get_mut(&key) {
                s.paired_units = m;
            }
        }
        Ok(out.into_values().collect())
    }
}

/// One variant's sums for one error class (`None`: success) in one cohort.
pub(super) struct VariantRow {
    pub cohort: Cohort,
    pub variant: String,
    pub role: String,
    pub error: Option<String>,
    pub count: u64,
    pub served: u64,
    pub latency: (f64, f64),
    pub ttft: (u64, f64, f64),
    pub tokens: (u64, u64),
    pub cost: (u64, f64, f64),
}

impl VariantRow {
    /// Adds the row to its variant's summary (latency and TTFT moments from successes only).
    pub(super) fn add_to(
        self,
        out: &mut BTreeMap<(Cohort, String), VariantSummary>,
    ) -> Result<(), StoreError> {
        let row = self;
        let role = Role::parse(&row.role).ok_or_else(|| StoreError::Corrupt {
            what: "observation",
            detail: format!("role `{}`", row.role),
        })?;
        let s = out
            .entry((row.cohort.clone(), row.variant.clone()))
            .or_insert_with(|| VariantSummary {
                cohort: row.cohort.clone(),
                variant: row.variant.clone(),
                role,
                ..VariantSummary::default()
            });
        s.requests += row.count;
        s.served += row.served;
        match row.error {
            Some(class) => *s.errors.entry(class).or_default() += row.count,
            None => {
                s.latency.add(row.count, row.latency.0, row.latency.1);
                s.ttft.add(row.ttft.0, row.ttft.1, row.ttft.2);
            }
        }
        s.prompt_tokens += row.tokens.0;
        s.completion_tokens += row.tokens.1;
        s.cost.add(row.cost.0, row.cost.1, row.cost.2);
        Ok(())
    }
}

/// (cohort, candidate, rubric id, rubric hash, criterion or check name).
pub(super) type GroupKey = (Cohort, String, String, String, String);

pub(super) fn group_key(
    key: Option<String>,
    value: Option<String>,
    candidate: String,
    rubric_id: String,
    rubric_hash: String,
    name: String,
) -> GroupKey {
    (
        cohort_of(key, value),
        candidate,
        rubric_id,
        rubric_hash,
        name,
    )
}

fn moments(count: i64, sum: Option<f64>, sum_sq: Option<f64>) -> Moments {
    Moments {
        count: to_u64(count),
        sum: sum.unwrap_or(0.0),
        sum_sq: sum_sq.unwrap_or(0.0),
    }
}

fn score_summary(key: &GroupKey) -> ScoreSummary {
    ScoreSummary {
        cohort: key.0.clone(),
        candidate: key.1.clone(),
        rubric_id: key.2.clone(),
        rubric_hash: key.3.clone(),
        criterion: key.4.clone(),
        ..ScoreSummary::default()
    }
}

fn check_summary(key: &GroupKey) -> CheckSummary {
    CheckSummary {
        cohort: key.0.clone(),
        candidate: key.1.clone(),
        rubric_id: key.2.clone(),
        rubric_hash: key.3.clone(),
        check: key.4.clone(),
        ..CheckSummary::default()
    }
}
