//! Releases: a set of indicators for a set of missions and years, computed once under one
//! budget, post-processed to be internally consistent, stored, and then served to every role at
//! no further cost.
//!
//! Two designs ([`DesignKind`]):
//! - **marginals** (the default): the release is one noise plan over the persons and cases
//!   marginals, with rho by declared weight, every indicator reconstructed by least squares and
//!   given exact or Fieller intervals. See [`design`] and [`estimate`]; the flows, when asked for,
//!   are thresholded per mission over the whole period.
//! - **equal split** (the earlier rule, kept for comparison): described below.
//!
//! # Budget split (equal split)
//!
//! The indicators are reduced to their distinct DP counts ([`Source`]s): the persons total is
//! asked once however many indicators divide by it. The release's epsilon is split in equal
//! shares over those counts ([`ledger::share`], so the shares add up to at most the budget in
//! ledger units). Each count is one grouped query over every mission × period (× key) cell, with
//! the person's contribution bounded across all its cells (`contribution_bound` records, as in
//! `plan.rs`), so every cell of a count gets the count's whole share. Noise is discrete Laplace:
//! releases spend epsilon only.
//!
//! # Post-processing (equal split; free: it only reads noisy values)
//!
//! Per mission and period:
//! 1. the persons total is re-estimated from its own noisy value and the sums of the breakdowns
//!    that partition it (inverse-variance weighted), then rounded to a non-negative integer;
//! 2. each such breakdown is projected onto {x ≥ 0, Σx = total} (Euclidean projection onto the
//!    scaled simplex) and rounded to integers by largest remainder, so it sums to the total;
//! 3. other counts are rounded and clipped at 0, and a count of a subset (open cases, persons
//!    returned) at most its superset;
//! 4. shares are computed from the post-processed counts and clipped to [0, 1]; a zero
//!    denominator gives no value, only the interval [0, 1].
//!
//! # Intervals (equal split)
//!
//! A count's interval is the 95% interval of its raw noisy value (discrete Laplace tail, clipped at 0),
//! widened to contain the published value when post-processing moved it outside. A ratio's
//! interval combines its numerator's and denominator's intervals at 97.5% each (Bonferroni, so
//! 95% jointly; a sum of m cells takes each at 1 − 0.025/m), evaluated at the ends that make the
//! ratio smallest and largest. Reference tables are taken as published, their range included.

mod compute;
pub mod design;
pub mod estimate;
mod plan;
mod post_process;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::answer;
use crate::dp::Loss;
use crate::dp::Released;
use crate::indicators::{self, Kind, Unit};
use crate::ledger::{self, Cost};

pub use compute::{Counts, Noisy, compute_counts, compute_design};
pub use plan::{
    DEFAULT_CONTRIBUTION_BOUND, DesignKind, MAX_YEARS, PeriodKind, ReleasePlan, ReleaseRequest,
};
pub use post_process::{integer_partition, post_process, project_simplex};

/// One published number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseCell {
    pub mission: String,
    pub period: String,
    /// The breakdown key (or the field, for completeness); absent without breakdown.
    pub key: Option<String>,
    /// `None` for a ratio with a zero denominator.
    pub value: Option<f64>,
    /// The 95% interval.
    pub lower: f64,
    pub upper: f64,
}

/// One indicator's cells in a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseIndicator {
    pub id: String,
    pub title: String,
    pub unit: Unit,
    pub kind: Kind,
    pub definition: String,
    pub breakdown: Option<String>,
    pub cells: Vec<ReleaseCell>,
}

impl ReleaseIndicator {
    /// The indicator's published cells, with its catalogue description.
    pub(crate) fn new(indicator: &indicators::Indicator, cells: Vec<ReleaseCell>) -> Self {
        ReleaseIndicator {
            id: indicator.id.to_string(),
            title: indicator.title.to_string(),
            unit: indicator.unit,
            kind: indicator.kind,
            definition: indicator.definition.to_string(),
            breakdown: indicator.breakdown().map(str::to_string),
            cells,
        }
    }
}

/// The reference rows a release read, each once, in a fixed order.
pub(crate) fn sort_sources(used: &mut Vec<SourceUsed>) {
    used.sort_by(|x, y| (&x.table, &x.country, x.year).cmp(&(&y.table, &y.country, y.year)));
    used.dedup();
}

/// Estimated victims per country and year, from a published source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EstimateRow {
    /// ISO alpha-3.
    pub country: String,
    pub year: i32,
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    pub source: String,
}

/// Prosecutions and convictions per country and year, from official sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JusticeRow {
    pub country: String,
    pub year: i32,
    pub prosecutions: f64,
    pub convictions: f64,
    pub source: String,
}

/// The reference tables a release may combine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct References {
    pub estimates: Vec<EstimateRow>,
    pub justice: Vec<JusticeRow>,
}

/// A reference value a release used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SourceUsed {
    pub table: String,
    pub country: String,
    pub year: i32,
    pub source: String,
}

/// What is public about a release: who made it, for what, under which rule and at what cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseInfo {
    pub id: i64,
    pub name: String,
    pub created_at: String,
    pub created_by: String,
    pub dataset: String,
    pub period: PeriodKind,
    pub from: String,
    pub to: String,
    pub missions: Vec<String>,
    pub level: f64,
    /// The (epsilon, delta) the release's charge composes to.
    pub cost: Cost,
    /// What the ledger was charged: rho (zCDP) plus an (epsilon, delta) part; absent in releases
    /// made before the ledger kept rho.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<Loss>,
    pub contribution_bound: u32,
    pub budget_rule: String,
    pub generation: u64,
}

/// A release computed now: its indicators, the reference values they combined and the notes are
/// [`Released`] values, post-processed from the DP module's releases only.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Release {
    #[serde(flatten)]
    pub info: ReleaseInfo,
    #[schema(value_type = Vec<ReleaseIndicator>)]
    pub indicators: Released<Vec<ReleaseIndicator>>,
    /// Reference values combined into rates, with their sources.
    #[schema(value_type = Vec<SourceUsed>)]
    pub sources: Released<Vec<SourceUsed>>,
    #[schema(value_type = Vec<String>)]
    pub notes: Released<Vec<String>>,
}

/// A release as the ledger stored it when it was charged (read back to be listed, served again
/// or printed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRelease {
    #[serde(flatten)]
    pub info: ReleaseInfo,
    pub indicators: Vec<ReleaseIndicator>,
    pub sources: Vec<SourceUsed>,
    pub notes: Vec<String>,
}

impl std::ops::Deref for Release {
    type Target = ReleaseInfo;
    fn deref(&self) -> &ReleaseInfo {
        &self.info
    }
}

impl std::ops::Deref for StoredRelease {
    type Target = ReleaseInfo;
    fn deref(&self) -> &ReleaseInfo {
        &self.info
    }
}

/// A release as the engine hands it back: computed now, or the stored one served again.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ReleaseBody {
    Fresh(Release),
    Stored(StoredRelease),
}

impl ReleaseBody {
    pub fn info(&self) -> &ReleaseInfo {
        match self {
            ReleaseBody::Fresh(r) => &r.info,
            ReleaseBody::Stored(r) => &r.info,
        }
    }

    pub fn indicators(&self) -> &[ReleaseIndicator] {
        match self {
            ReleaseBody::Fresh(r) => r.indicators.get(),
            ReleaseBody::Stored(r) => &r.indicators,
        }
    }
}

/// A release as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseSummary {
    pub id: i64,
    pub name: String,
    pub created_at: String,
    pub created_by: String,
    pub period: PeriodKind,
    pub from: String,
    pub to: String,
    pub missions: Vec<String>,
    pub indicators: Vec<String>,
    pub cost: Cost,
}

impl StoredRelease {
    pub fn summary(&self) -> ReleaseSummary {
        let i = &self.info;
        ReleaseSummary {
            id: i.id,
            name: i.name.clone(),
            created_at: i.created_at.clone(),
            created_by: i.created_by.clone(),
            period: i.period,
            from: i.from.clone(),
            to: i.to.clone(),
            missions: i.missions.clone(),
            indicators: self.indicators.iter().map(|i| i.id.clone()).collect(),
            cost: i.cost,
        }
    }

    /// `indicator,mission,period,key,value,lower,upper,unit`, one line per cell.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("indicator,mission,period,key,value,lower,upper,unit\n");
        for indicator in &self.indicators {
            let unit = serde_json::to_value(indicator.unit)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            for c in &indicator.cells {
                out.push_str(&format!(
                    "{},{},{},{},{},{},{},{}\n",
                    indicator.id,
                    c.mission,
                    c.period,
                    c.key.as_deref().unwrap_or(""),
                    c.value.map(|v| v.to_string()).unwrap_or_default(),
                    c.lower,
                    c.upper,
                    unit
                ));
            }
        }
        out
    }
}

/// What is public about the release of `plan`.
fn info(plan: &ReleasePlan, created_by: &str, dataset: &str, generation: u64) -> ReleaseInfo {
    ReleaseInfo {
        id: 0,
        name: plan.request.name.clone(),
        created_at: now(),
        created_by: created_by.to_string(),
        dataset: dataset.to_string(),
        period: plan.request.period,
        from: plan.periods.first().cloned().unwrap_or_default(),
        to: plan.periods.last().cloned().unwrap_or_default(),
        missions: plan.missions.clone(),
        level: answer::LEVEL,
        cost: plan.cost,
        loss: Some(plan.loss),
        contribution_bound: plan
            .request
            .contribution_bound
            .unwrap_or(DEFAULT_CONTRIBUTION_BOUND),
        budget_rule: budget_rule(plan),
        generation,
    }
}

/// The release of a marginal design from its noisy marginals and flows (post-processing only).
pub fn build_design(
    plan: &ReleasePlan,
    noisy: Released<(Vec<Vec<i64>>, Vec<Counts>)>,
    references: &References,
    created_by: &str,
    dataset: &str,
    generation: u64,
) -> Release {
    let (indicators, rest) = noisy
        .map(|(marginals, flows)| {
            let (mut indicators, sources) = match &plan.design {
                Some(design) => estimate::indicators(
                    design,
                    &plan.indicators,
                    &plan.missions,
                    &plan.periods,
                    &marginals,
                    references,
                ),
                None => (Vec::new(), Vec::new()),
            };
            let whole = format!("{}-{}", plan.request.from, plan.request.to);
            for ((source, _, _), counts) in plan.queries.iter().zip(&flows) {
                let Some(indicator) = indicators.iter_mut().find(|i| {
                    plan.indicators.iter().any(|p| {
                        p.id == i.id
                            && matches!(&p.formula, indicators::Formula::Flows { source: s } if s == source)
                    })
                }) else {
                    continue;
                };
                let mut cells: Vec<ReleaseCell> = counts
                    .iter()
                    .map(|((m, _, key), noisy)| {
                        let value = noisy.value.round().max(0.0);
                        let (lo, hi) = noisy.interval(0.05);
                        ReleaseCell {
                            mission: m.clone(),
                            period: whole.clone(),
                            key: Some(key.clone()),
                            value: Some(value),
                            lower: lo.min(value),
                            upper: hi.max(value),
                        }
                    })
                    .collect();
                cells.sort_by(|a, b| (&a.mission, &a.key).cmp(&(&b.mission, &b.key)));
                indicator.cells = cells;
            }
            let mut notes = vec![
                "Measured as one design: the persons and cases marginals per mission and period, each with discrete Gaussian noise at a declared share of the release's rho; every indicator is reconstructed from them by least squares (breakdowns consistent with their total), then published as non-negative integers whose breakdowns sum to the total, and shares in [0, 1]. A person's attributes in a mission and period are those of their first kept record there. Intervals are 95%: counts from the estimates' exact variances, shares and rates by Fieller's method, widened to contain the published value.".to_string(),
            ];
            if !plan.indicators.iter().any(|i| i.formula.needs_delta()) {
                notes.push("Origin to destination flows are not in this release: at about 100 persons a mission and year, the 250 x 250 pairs leave almost no pair above the DP threshold. Ask for `origin_destination_flows` explicitly: they are released per mission over the whole period, with 10% of the epsilon and half the delta.".to_string());
            }
            (indicators, (sources, notes))
        })
        .split();
    let (sources, notes) = rest.split();
    Release {
        info: info(plan, created_by, dataset, generation),
        indicators,
        sources,
        notes,
    }
}

/// The release of `plan` from its noisy counts (post-processing only: no budget).
pub fn build(
    plan: &ReleasePlan,
    counts: Released<Vec<Counts>>,
    references: &References,
    created_by: &str,
    dataset: &str,
    generation: u64,
) -> Release {
    let (indicators, rest) = counts
        .map(|counts| {
            let (indicators, sources, notes) = post_process(plan, &counts, references);
            (indicators, (sources, notes))
        })
        .split();
    let (sources, notes) = rest.split();
    let notes = notes.map(|mut notes| {
        notes.insert(
            0,
            "Counts are post-processed to non-negative integers; breakdowns sum to persons assisted; shares lie in [0, 1]. Intervals are 95% and come from the raw noisy counts, widened to contain the published value.".to_string(),
        );
        notes
    });
    Release {
        info: info(plan, created_by, dataset, generation),
        indicators,
        sources,
        notes,
    }
}

/// The time now, `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub(crate) fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The budget split rule, as the release states it.
pub fn budget_rule(plan: &ReleasePlan) -> String {
    if let Some(design) = &plan.design {
        let mut rule = format!(
            "marginal design: epsilon {} at delta {} converted once to rho {:.6} (zCDP); {} marginals with discrete Gaussian noise at rho shares by declared weight ({}), at most {} records per person",
            plan.request.epsilon,
            plan.request.delta.unwrap_or_default(),
            design.rho,
            design.marginals.len(),
            design
                .marginals
                .iter()
                .map(|m| format!("{} w {} sigma {:.2}", m.id.describe(), m.weight, m.sigma))
                .collect::<Vec<_>>()
                .join("; "),
            design.contribution_bound
        );
        if !plan.queries.is_empty() {
            rule.push_str(&format!(
                "; thresholded flows per mission over the whole period at epsilon {} and delta {}",
                plan.loss.epsilon, plan.loss.delta
            ));
        }
        return rule;
    }
    let mut rule = format!(
        "epsilon {} split equally over {} distinct counts (epsilon {} each, discrete Laplace), every mission x period cell of a count sharing it with at most {} records per person",
        plan.request.epsilon,
        plan.queries.len(),
        ledger::share(plan.request.epsilon, plan.queries.len()),
        plan.request
            .contribution_bound
            .unwrap_or(DEFAULT_CONTRIBUTION_BOUND)
    );
    if let Some(d) = plan.request.delta {
        rule.push_str(&format!(
            "; delta {d} to the counts with thresholded keys (origin to destination flows)"
        ));
    }
    rule
}
