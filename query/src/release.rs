//! Releases: a set of indicators for a set of missions and years, computed once under one
//! budget, post-processed to be internally consistent, stored, and then served to every role at
//! no further cost.
//!
//! # Budget split
//!
//! The indicators are reduced to their distinct DP counts ([`Source`]s): the persons total is
//! asked once however many indicators divide by it. The release's epsilon is split in equal
//! shares over those counts ([`ledger::share`], so the shares add up to at most the budget in
//! ledger units). Each count is one grouped query over every mission × period (× key) cell, with
//! the person's contribution bounded across all its cells (`contribution_bound` records, as in
//! `plan.rs`), so every cell of a count gets the count's whole share. Noise is discrete Laplace:
//! releases spend epsilon only.
//!
//! # Post-processing (free: it only reads noisy values)
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
//! # Intervals
//!
//! A count's interval is the 95% interval of its raw noisy value (discrete Laplace tail, clipped at 0),
//! widened to contain the published value when post-processing moved it outside. A ratio's
//! interval combines its numerator's and denominator's intervals at 97.5% each (Bonferroni, so
//! 95% jointly; a sum of m cells takes each at 1 − 0.025/m), evaluated at the ends that make the
//! ratio smallest and largest. Reference tables are taken as published, their range included.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::answer::{self, Answer, CostPlan};
use crate::indicators::{self, Formula, Indicator, Kind, Source, Unit};
use crate::ledger::{self, Cost};
use crate::plan;
use crate::spec::{
    Bins, Bounds, Budget, KeysMode, Mechanism, PeriodSpec, QuerySpec, SpecError, SpecErrors,
    UNKNOWN, ValidatedSpec,
};

/// Default records per person: synthetic and observed persons rarely have more than three
/// cases, so counts are not truncated, at three times the noise of a bound of one.
pub const DEFAULT_CONTRIBUTION_BOUND: u32 = 3;

/// Longest release, in years.
pub const MAX_YEARS: i32 = 30;

/// Calendar years or quarters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    #[default]
    Year,
    Quarter,
}

/// What an analyst asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// A name for people, e.g. `HQ annual 2008`.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Indicator ids (`GET /v1/indicators`); empty or absent: every indicator the period allows.
    #[serde(default)]
    pub indicators: Vec<String>,
    /// Missions (ISO alpha-3); absent: every mission the service serves.
    #[serde(default)]
    #[schema(min_items = 1)]
    pub missions: Option<Vec<String>>,
    /// First calendar year of registration.
    #[schema(minimum = 1900, maximum = 2100)]
    pub from: i32,
    /// Last calendar year, inclusive.
    #[schema(minimum = 1900, maximum = 2100)]
    pub to: i32,
    #[serde(default)]
    pub period: PeriodKind,
    /// The whole release's epsilon, split as the module docs say.
    #[schema(exclusive_minimum = 0.0, maximum = 1000000.0)]
    pub epsilon: f64,
    /// A delta, needed only by indicators that release thresholded keys (the flows); it goes
    /// to them whole (split equally if several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0.0, maximum = 0.01)]
    pub delta: Option<f64>,
    /// Records kept per person (1-20); default 3.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 20)]
    pub contribution_bound: Option<u32>,
}

/// A release request checked against the catalogue and the service's missions, with its plan.
#[derive(Debug, Clone)]
pub struct ReleasePlan {
    pub request: ReleaseRequest,
    pub indicators: Vec<Indicator>,
    pub missions: Vec<String>,
    pub periods: Vec<String>,
    /// The distinct counts, each with its validated query and priced plan.
    pub queries: Vec<(Source, ValidatedSpec, CostPlan)>,
    /// What the ledger is charged: the queries' costs added in ledger units.
    pub cost: Cost,
    /// A hash of the canonical request: the same request by the same caller is served again.
    pub hash: String,
}

fn error(field: &str, message: impl Into<String>) -> SpecErrors {
    SpecErrors(vec![SpecError {
        field: field.into(),
        message: message.into(),
    }])
}

impl ReleaseRequest {
    /// Check the request and price every count; nothing is computed or charged.
    pub fn plan(&self, service_missions: &[String]) -> Result<ReleasePlan, SpecErrors> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(error(
                "name",
                "a name of 1 to 200 characters, without control characters",
            ));
        }
        if !(1900..=2100).contains(&self.from) || !(self.from..=2100).contains(&self.to) {
            return Err(error("to", "years from 1900 to 2100, `from` <= `to`"));
        }
        if self.to - self.from >= MAX_YEARS {
            return Err(error("to", format!("at most {MAX_YEARS} years")));
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0 && self.epsilon <= ledger::MAX_EPSILON)
        {
            return Err(error(
                "epsilon",
                format!("a number above 0 and at most {}", ledger::MAX_EPSILON),
            ));
        }
        if let Some(d) = self.delta
            && !(d.is_finite() && d > 0.0 && d <= ledger::MAX_DELTA)
        {
            return Err(error(
                "delta",
                format!("a number above 0 and at most {}", ledger::MAX_DELTA),
            ));
        }
        let k = self
            .contribution_bound
            .unwrap_or(DEFAULT_CONTRIBUTION_BOUND);
        let missions = match &self.missions {
            None => {
                let mut m = service_missions.to_vec();
                m.sort();
                m.dedup();
                m
            }
            Some(asked) => {
                let mut m = asked.clone();
                m.sort();
                m.dedup();
                if m.is_empty() {
                    return Err(error("missions", "at least one mission"));
                }
                if let Some(bad) = m.iter().find(|m| !service_missions.contains(m)) {
                    return Err(error(
                        "missions",
                        format!("{bad:?} is not served; the missions are {service_missions:?}"),
                    ));
                }
                m
            }
        };
        let yearly = self.period == PeriodKind::Year;
        let indicators: Vec<Indicator> = if self.indicators.is_empty() {
            indicators::catalogue()
                .into_iter()
                .filter(|i| yearly || !i.formula.uses_reference())
                .filter(|i| self.delta.is_some() || !i.formula.needs_delta())
                .collect()
        } else {
            let mut seen = BTreeSet::new();
            let mut found = Vec::new();
            for id in &self.indicators {
                let indicator = indicators::find(id).ok_or_else(|| {
                    error(
                        "indicators",
                        format!("no indicator {id:?}; GET /v1/indicators lists them"),
                    )
                })?;
                if !yearly && indicator.formula.uses_reference() {
                    return Err(error(
                        "indicators",
                        format!("{id} uses a yearly reference table: ask for calendar years"),
                    ));
                }
                if self.delta.is_none() && indicator.formula.needs_delta() {
                    return Err(error(
                        "delta",
                        format!("{id} releases thresholded keys and needs a delta"),
                    ));
                }
                if seen.insert(indicator.id) {
                    found.push(indicator);
                }
            }
            found
        };
        let sources: BTreeSet<Source> = indicators
            .iter()
            .flat_map(|i| i.formula.sources())
            .collect();
        let share = ledger::share(self.epsilon, sources.len());
        let thresholded = sources.iter().filter(|s| s.thresholded()).count();
        let delta_share = self.delta.map(|d| ledger::share(d, thresholded));
        let mut queries = Vec::with_capacity(sources.len());
        for source in sources {
            let delta = delta_share.filter(|_| source.thresholded());
            let spec = query_for(
                &source,
                &missions,
                (self.from, self.to, self.period),
                k,
                Budget {
                    epsilon: share,
                    delta,
                },
            );
            let validated = spec.validate(service_missions)?;
            let plan = CostPlan::new(&validated).map_err(|e| error("epsilon", e.to_string()))?;
            queries.push((source, validated, plan));
        }
        let units = |f: fn(&Cost) -> f64| -> i64 {
            queries
                .iter()
                .map(|(_, _, p)| ledger::units_up(f(&p.total)))
                .sum()
        };
        let cost = Cost {
            epsilon: ledger::at_most(units(|c| c.epsilon)),
            delta: ledger::at_most(units(|c| c.delta)),
        };
        let request = ReleaseRequest {
            name: name.to_string(),
            indicators: indicators.iter().map(|i| i.id.to_string()).collect(),
            missions: Some(missions.clone()),
            contribution_bound: Some(k),
            ..self.clone()
        };
        let canonical = serde_json::to_string(&request).unwrap_or_default();
        let hash = {
            let mut h = blake3::Hasher::new_derive_key("ctstats release request v1");
            h.update(canonical.as_bytes());
            h.finalize().to_hex().to_string()
        };
        let periods = periods(self.from, self.to, self.period);
        Ok(ReleasePlan {
            request,
            indicators,
            missions,
            periods,
            queries,
            cost,
            hash,
        })
    }
}

fn periods(from: i32, to: i32, kind: PeriodKind) -> Vec<String> {
    (from..=to)
        .flat_map(|y| match kind {
            PeriodKind::Year => vec![format!("{y:04}")],
            PeriodKind::Quarter => (1..=4).map(|q| format!("{y:04}-Q{q}")).collect(),
        })
        .collect()
}

/// The query of one count: grouped by mission and period (and its breakdown).
fn query_for(
    source: &Source,
    missions: &[String],
    (from, to, period): (i32, i32, PeriodKind),
    contribution_bound: u32,
    budget: Budget,
) -> QuerySpec {
    let mut group_by = vec![
        "mission".to_string(),
        match period {
            PeriodKind::Year => "registration_year",
            PeriodKind::Quarter => "registration_quarter",
        }
        .to_string(),
    ];
    if let Some(b) = source.breakdown.filter(|b| *b != "bin") {
        group_by.push(b.to_string());
    }
    group_by.extend(source.destination.map(str::to_string));
    let mut filters: BTreeMap<String, Vec<String>> = source
        .filters
        .iter()
        .map(|(d, keys)| (d.to_string(), keys.iter().map(|k| k.to_string()).collect()))
        .collect();
    filters.insert("mission".into(), missions.to_vec());
    let histogram = source.column().is_some();
    QuerySpec {
        measure: source.measure(),
        column: source.column().map(str::to_string),
        bounds: histogram.then_some(Bounds {
            lower: 0,
            upper: 12,
        }),
        bins: histogram.then(|| Bins::Edges(vec![0, 1])),
        quantiles: None,
        group_by,
        filters,
        period: PeriodSpec {
            from: format!("{from:04}-01"),
            to: format!("{to:04}-12"),
        },
        contribution_bound: Some(contribution_bound),
        list_items_bound: None,
        mechanism: Mechanism::Laplace,
        budget: Some(budget),
        accuracy: None,
        keys: if source.thresholded() {
            KeysMode::Threshold
        } else {
            KeysMode::Public
        },
    }
}

/// A raw noisy count and the scale of its Laplace noise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noisy {
    pub value: f64,
    pub scale: f64,
}

impl Noisy {
    /// Half-width of the interval holding the noise with probability at least `1 − alpha`.
    /// The noise is OpenDP's discrete Laplace on integers, P(X = x) ∝ exp(−|x| / b), so
    /// P(|X| > h) = 2·exp(−(h + 1) / b) / (1 + exp(−1 / b)); h is the least integer with that
    /// at most `alpha`. (The continuous b·ln(1/alpha) is too short on the integer lattice: at
    /// b = 3 it covers 94.2%, which the coverage test showed.)
    fn half_width(self, alpha: f64) -> f64 {
        if self.scale <= 0.0 {
            return 0.0;
        }
        let b = self.scale;
        let h = (b * (2.0 / (alpha * (1.0 + (-1.0 / b).exp()))).ln()).ceil() - 1.0;
        h.max(0.0)
    }
    fn variance(self) -> f64 {
        2.0 * self.scale * self.scale
    }
    /// `[lower, upper]` at level `1 − alpha`, clipped at 0.
    fn interval(self, alpha: f64) -> (f64, f64) {
        let h = self.half_width(alpha);
        ((self.value - h).max(0.0), (self.value + h).max(0.0))
    }
}

/// Several noisy counts added up: the interval takes each at `1 − alpha / m` (union bound).
fn sum_interval(parts: &[Noisy], alpha: f64) -> (f64, f64) {
    let m = parts.len().max(1) as f64;
    let value: f64 = parts.iter().map(|p| p.value).sum();
    let h: f64 = parts.iter().map(|p| p.half_width(alpha / m)).sum();
    ((value - h).max(0.0), (value + h).max(0.0))
}

/// Noisy counts of one source, by (mission, period, key); the key is `""` without breakdown.
pub type Counts = HashMap<(String, String, String), Noisy>;

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

/// A computed release, as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Release {
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
    pub cost: Cost,
    pub contribution_bound: u32,
    pub budget_rule: String,
    pub generation: u64,
    pub indicators: Vec<ReleaseIndicator>,
    /// Reference values combined into rates, with their sources.
    pub sources: Vec<SourceUsed>,
    pub notes: Vec<String>,
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

impl Release {
    pub fn summary(&self) -> ReleaseSummary {
        ReleaseSummary {
            id: self.id,
            name: self.name.clone(),
            created_at: self.created_at.clone(),
            created_by: self.created_by.clone(),
            period: self.period,
            from: self.from.clone(),
            to: self.to.clone(),
            missions: self.missions.clone(),
            indicators: self.indicators.iter().map(|i| i.id.clone()).collect(),
            cost: self.cost,
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

/// Run every query of `plan` (DataFusion, then OpenDP on a blocking thread) and return the
/// noisy counts per source and the dataset generation. The caller has charged the plan's cost.
pub async fn compute_counts(
    data: &Path,
    service_missions: &[String],
    plan: &ReleasePlan,
) -> Result<(Vec<Counts>, u64), String> {
    let mut all = Vec::with_capacity(plan.queries.len());
    let mut generation = 0;
    for (source, spec, cost) in &plan.queries {
        let aggregates = plan::aggregate(data, service_missions, spec)
            .await
            .map_err(|e| e.to_string())?;
        generation = generation.max(aggregates.generation);
        let (spec, cost) = (spec.clone(), cost.clone());
        let answer =
            tokio::task::spawn_blocking(move || answer::release(&spec, &aggregates, &cost))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        all.push(counts_of(source, &answer));
    }
    Ok((all, generation))
}

/// The noisy counts of an answer keyed by (mission, period, breakdown key or bin).
fn counts_of(source: &Source, answer: &Answer) -> Counts {
    let scale = answer.parts.first().map_or(0.0, |p| p.scale);
    let keyed = source.breakdown.is_some();
    answer
        .cells
        .iter()
        .map(|cell| {
            let key = match (keyed, source.destination) {
                (false, _) => String::new(),
                (true, None) => cell.key.get(2).cloned().unwrap_or_default(),
                (true, Some(_)) => format!(
                    "{}>{}",
                    cell.key.get(2).map_or("", String::as_str),
                    cell.key.get(3).map_or("", String::as_str)
                ),
            };
            (
                (cell.key[0].clone(), cell.key[1].clone(), key),
                Noisy {
                    value: cell.estimate,
                    scale,
                },
            )
        })
        .collect()
}

/// The post-processed indicators of a release from its noisy counts (same order as
/// `plan.queries`), and the reference values it used. Pure: no budget, no randomness.
pub fn post_process(
    plan: &ReleasePlan,
    counts: &[Counts],
    references: &References,
) -> (Vec<ReleaseIndicator>, Vec<SourceUsed>, Vec<String>) {
    let by_source: HashMap<&Source, &Counts> =
        plan.queries.iter().map(|(s, _, _)| s).zip(counts).collect();
    let get = |s: &Source| by_source.get(s).copied();
    let empty = Counts::new();
    let keys_of = |s: &Source| -> Vec<String> {
        let mut keys: Vec<String> = get(s)
            .unwrap_or(&empty)
            .keys()
            .map(|(_, _, k)| k.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Domain order: `unknown` last.
        if let Some(at) = keys.iter().position(|k| k == UNKNOWN) {
            let u = keys.remove(at);
            keys.push(u);
        }
        keys
    };
    let noisy = |s: &Source, m: &str, p: &str, k: &str| -> Noisy {
        get(s)
            .and_then(|c| c.get(&(m.to_string(), p.to_string(), k.to_string())))
            .copied()
            .unwrap_or(Noisy {
                value: 0.0,
                scale: 0.0,
            })
    };

    // 1-2. The persons total and the breakdowns that partition it.
    let total = Source::persons();
    let partitions: Vec<Source> = plan
        .indicators
        .iter()
        .filter_map(|i| match &i.formula {
            Formula::Breakdown { source } => Some(source.clone()),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut totals: HashMap<(String, String), f64> = HashMap::new();
    let mut parts: HashMap<(Source, String, String), Vec<(String, f64)>> = HashMap::new();
    for m in &plan.missions {
        for p in &plan.periods {
            let t = noisy(&total, m, p, "");
            let mut weight = if t.scale > 0.0 {
                1.0 / t.variance()
            } else {
                0.0
            };
            let mut weighted = t.value * weight;
            for b in &partitions {
                let cells: Vec<Noisy> = keys_of(b).iter().map(|k| noisy(b, m, p, k)).collect();
                let var: f64 = cells.iter().map(|c| c.variance()).sum();
                if var > 0.0 {
                    weight += 1.0 / var;
                    weighted += cells.iter().map(|c| c.value).sum::<f64>() / var;
                }
            }
            let combined = if weight > 0.0 { weighted / weight } else { 0.0 };
            let t_int = combined.round().max(0.0);
            totals.insert((m.clone(), p.clone()), t_int);
            for b in &partitions {
                let keys = keys_of(b);
                let raw: Vec<f64> = keys.iter().map(|k| noisy(b, m, p, k).value).collect();
                let ints = integer_partition(&project_simplex(&raw, t_int), t_int);
                parts.insert(
                    (b.clone(), m.clone(), p.clone()),
                    keys.into_iter().zip(ints).collect(),
                );
            }
        }
    }
    let total_of = |m: &str, p: &str| totals[&(m.to_string(), p.to_string())];
    let count = |s: &Source, m: &str, p: &str, k: &str| noisy(s, m, p, k).value.round().max(0.0);

    let a = 0.05;
    let mut out = Vec::new();
    let mut used = Vec::new();
    let mut notes = Vec::new();
    for indicator in &plan.indicators {
        let mut cells = Vec::new();
        for m in &plan.missions {
            for p in &plan.periods {
                let mut push = |key: Option<String>, value: Option<f64>, (lo, hi): (f64, f64)| {
                    let (lo, hi) = match value {
                        Some(v) => (lo.min(v), hi.max(v)),
                        None => (lo, hi),
                    };
                    cells.push(ReleaseCell {
                        mission: m.clone(),
                        period: p.clone(),
                        key,
                        value,
                        lower: lo,
                        upper: hi,
                    });
                };
                match &indicator.formula {
                    Formula::Count { source, within } => {
                        let mut v = if *source == total {
                            total_of(m, p)
                        } else {
                            count(source, m, p, "")
                        };
                        if let Some(sup) = within {
                            let cap = if *sup == total {
                                total_of(m, p)
                            } else {
                                count(sup, m, p, "")
                            };
                            v = v.min(cap);
                        }
                        push(None, Some(v), noisy(source, m, p, "").interval(a));
                    }
                    Formula::Breakdown { source } => {
                        for (k, v) in &parts[&(source.clone(), m.clone(), p.clone())] {
                            push(
                                Some(k.clone()),
                                Some(*v),
                                noisy(source, m, p, k).interval(a),
                            );
                        }
                    }
                    Formula::ShareOfKeys {
                        source,
                        numerator,
                        denominator,
                    } => {
                        let pick = |keys: &[&str]| -> Vec<Noisy> {
                            keys.iter().map(|k| noisy(source, m, p, k)).collect()
                        };
                        let rest: Vec<&str> = denominator
                            .iter()
                            .copied()
                            .filter(|k| !numerator.contains(k))
                            .collect();
                        let (num, other) = (pick(numerator), pick(&rest));
                        let n: f64 = num.iter().map(|x| x.value.round().max(0.0)).sum();
                        let r: f64 = other.iter().map(|x| x.value.round().max(0.0)).sum();
                        let value = (n + r > 0.0).then(|| n / (n + r));
                        let (n_lo, n_hi) = sum_interval(&num, a / 2.0);
                        let (r_lo, r_hi) = sum_interval(&other, a / 2.0);
                        push(
                            None,
                            value,
                            (share(n_lo, n_lo + r_hi), share_hi(n_hi, n_hi + r_lo)),
                        );
                    }
                    Formula::SharePerKey { source } => {
                        let t = noisy(&total, m, p, "");
                        let u = noisy(source, m, p, UNKNOWN);
                        let known = total_of(m, p) - u.value.round().max(0.0).min(total_of(m, p));
                        let (t_lo, t_hi) = t.interval(a / 4.0);
                        let (u_lo, u_hi) = u.interval(a / 4.0);
                        for k in keys_of(source).iter().filter(|k| *k != UNKNOWN) {
                            let x = noisy(source, m, p, k);
                            let v = x.value.round().max(0.0);
                            let value = (known > 0.0).then(|| (v / known).min(1.0));
                            let (x_lo, x_hi) = x.interval(a / 2.0);
                            push(
                                Some(k.clone()),
                                value,
                                (share(x_lo, t_hi - u_lo), share_hi(x_hi, t_lo - u_hi)),
                            );
                        }
                    }
                    Formula::Flows { source } => {
                        let mut keys: Vec<&String> = get(source)
                            .unwrap_or(&empty)
                            .keys()
                            .filter(|(cm, cp, _)| cm == m && cp == p)
                            .map(|(_, _, k)| k)
                            .collect();
                        keys.sort();
                        for k in keys {
                            let x = noisy(source, m, p, k);
                            push(
                                Some(k.clone()),
                                Some(x.value.round().max(0.0)),
                                x.interval(a),
                            );
                        }
                    }
                    Formula::Repeat => {
                        let persons = total_of(m, p);
                        let cases = count(&Source::cases(), m, p, "").max(persons);
                        let value = (cases > 0.0).then(|| 1.0 - persons / cases);
                        let (p_lo, p_hi) = noisy(&total, m, p, "").interval(a / 2.0);
                        let (c_lo, c_hi) = noisy(&Source::cases(), m, p, "").interval(a / 2.0);
                        let lo = if c_lo > 0.0 { 1.0 - p_hi / c_lo } else { 0.0 };
                        let hi = if c_hi > 0.0 { 1.0 - p_lo / c_hi } else { 1.0 };
                        push(None, value, (lo.clamp(0.0, 1.0), hi.clamp(0.0, 1.0)));
                    }
                    Formula::Completeness { fields } => {
                        let t_int = total_of(m, p);
                        let (t_lo, t_hi) = noisy(&total, m, p, "").interval(a / 2.0);
                        for f in *fields {
                            let s = Source::persons().filter(f, &[UNKNOWN]);
                            let u = noisy(&s, m, p, "");
                            let unknown = u.value.round().max(0.0).min(t_int);
                            let value = (t_int > 0.0).then(|| 1.0 - unknown / t_int);
                            let (u_lo, u_hi) = u.interval(a / 2.0);
                            let lo = if t_lo > 0.0 { 1.0 - u_hi / t_lo } else { 0.0 };
                            let hi = if t_hi > 0.0 { 1.0 - u_lo / t_hi } else { 1.0 };
                            push(
                                Some(f.to_string()),
                                value,
                                (lo.clamp(0.0, 1.0), hi.clamp(0.0, 1.0)),
                            );
                        }
                    }
                    Formula::CoverageOfEstimate => {
                        let year: i32 = p.parse().unwrap_or(0);
                        let Some(row) = references
                            .estimates
                            .iter()
                            .find(|r| r.country == *m && r.year == year)
                        else {
                            continue;
                        };
                        let t_int = total_of(m, p);
                        let (t_lo, t_hi) = noisy(&total, m, p, "").interval(a);
                        let value = (row.estimate > 0.0).then(|| t_int / row.estimate);
                        let lo = if row.high > 0.0 { t_lo / row.high } else { 0.0 };
                        let hi = if row.low > 0.0 {
                            t_hi / row.low
                        } else {
                            f64::INFINITY
                        };
                        if hi.is_finite() {
                            push(None, value, (lo, hi));
                        }
                        used.push(SourceUsed {
                            table: "estimated_victims".into(),
                            country: m.clone(),
                            year,
                            source: row.source.clone(),
                        });
                    }
                    Formula::ConvictionsPerPerson => {
                        let year: i32 = p.parse().unwrap_or(0);
                        let Some(row) = references
                            .justice
                            .iter()
                            .find(|r| r.country == *m && r.year == year)
                        else {
                            continue;
                        };
                        let t_int = total_of(m, p);
                        let (t_lo, t_hi) = noisy(&total, m, p, "").interval(a);
                        if t_lo <= 0.0 {
                            // Too few persons for a bounded rate.
                            continue;
                        }
                        let value = (t_int > 0.0).then(|| row.convictions / t_int);
                        push(
                            None,
                            value,
                            (row.convictions / t_hi, row.convictions / t_lo),
                        );
                        used.push(SourceUsed {
                            table: "convictions".into(),
                            country: m.clone(),
                            year,
                            source: row.source.clone(),
                        });
                    }
                }
            }
        }
        if indicator.formula.uses_reference() {
            let expected = plan.missions.len() * plan.periods.len();
            if cells.len() < expected {
                notes.push(format!(
                    "{}: {} of {expected} mission-years have no cell (no reference row, or too few persons for a bounded rate)",
                    indicator.id,
                    expected - cells.len()
                ));
            }
        }
        out.push(ReleaseIndicator {
            id: indicator.id.to_string(),
            title: indicator.title.to_string(),
            unit: indicator.unit,
            kind: indicator.kind,
            definition: indicator.definition.to_string(),
            breakdown: indicator.breakdown().map(str::to_string),
            cells,
        });
    }
    used.sort_by(|x, y| (&x.table, &x.country, x.year).cmp(&(&y.table, &y.country, y.year)));
    used.dedup();
    (out, used, notes)
}

/// `n / d` in [0, 1], 0 when `d` is not positive (the lower end of a share).
fn share(n: f64, d: f64) -> f64 {
    if d > 0.0 {
        (n / d).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// `n / d` in [0, 1], 1 when `d` is not positive (the upper end of a share).
fn share_hi(n: f64, d: f64) -> f64 {
    if d > 0.0 {
        (n / d).clamp(0.0, 1.0)
    } else {
        1.0
    }
}

/// The Euclidean projection of `x` onto {y ≥ 0, Σy = total} (Duchi et al. 2008).
pub fn project_simplex(x: &[f64], total: f64) -> Vec<f64> {
    if x.is_empty() {
        return Vec::new();
    }
    if total <= 0.0 {
        return vec![0.0; x.len()];
    }
    let mut u = x.to_vec();
    u.sort_by(|a, b| b.total_cmp(a));
    let mut sum = 0.0;
    let mut theta = 0.0;
    for (j, uj) in u.iter().enumerate() {
        sum += uj;
        let t = (sum - total) / (j as f64 + 1.0);
        if uj - t > 0.0 {
            theta = t;
        }
    }
    x.iter().map(|xi| (xi - theta).max(0.0)).collect()
}

/// Non-negative integers summing to `total` (an integer), closest to `x` (which sums to it):
/// floors, then the remaining units to the largest remainders (ties to the first).
pub fn integer_partition(x: &[f64], total: f64) -> Vec<f64> {
    let mut out: Vec<f64> = x.iter().map(|v| v.max(0.0).floor()).collect();
    let mut left = (total - out.iter().sum::<f64>()).round() as i64;
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&i, &j| {
        let (ri, rj) = (x[i] - x[i].floor(), x[j] - x[j].floor());
        rj.total_cmp(&ri).then(i.cmp(&j))
    });
    let mut at = 0;
    while left > 0 && !order.is_empty() {
        out[order[at % order.len()]] += 1.0;
        left -= 1;
        at += 1;
    }
    while left < 0 {
        // Floating point drift only: take from the largest.
        let Some((i, _)) = out
            .iter()
            .enumerate()
            .filter(|(_, v)| **v >= 1.0)
            .max_by(|a, b| a.1.total_cmp(b.1))
        else {
            break;
        };
        out[i] -= 1.0;
        left += 1;
    }
    out
}

/// The budget split rule, as the release states it.
pub fn budget_rule(plan: &ReleasePlan) -> String {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn projection_is_non_negative_and_sums_to_the_total(
            x in prop::collection::vec(-50.0..200.0f64, 1..12),
            total in 0u32..500,
        ) {
            let total = f64::from(total);
            let y = project_simplex(&x, total);
            prop_assert!(y.iter().all(|v| *v >= 0.0));
            prop_assert!((y.iter().sum::<f64>() - total).abs() < 1e-6 * total.max(1.0));
            let ints = integer_partition(&y, total);
            prop_assert!(ints.iter().all(|v| *v >= 0.0 && v.fract() == 0.0));
            prop_assert_eq!(ints.iter().sum::<f64>(), total);
            for (i, yi) in ints.iter().zip(&y) {
                prop_assert!((i - yi).abs() < 1.0 + 1e-9);
            }
        }
    }

    #[test]
    fn discrete_half_widths_hold_their_level() {
        for b in [0.5, 1.0, 3.0, 17.3, 250.0] {
            for alpha in [0.05, 0.025, 0.001] {
                let h = Noisy {
                    value: 0.0,
                    scale: b,
                }
                .half_width(alpha);
                let tail = |h: f64| 2.0 * (-(h + 1.0) / b).exp() / (1.0 + (-1.0 / b).exp());
                assert!(tail(h) <= alpha + 1e-12, "b {b} alpha {alpha}: {h}");
                assert!(
                    h == 0.0 || tail(h - 1.0) > alpha,
                    "b {b} alpha {alpha}: {h} not least"
                );
            }
        }
    }

    #[test]
    fn projection_keeps_a_consistent_vector() {
        assert_eq!(project_simplex(&[3.0, 5.0, 2.0], 10.0), vec![3.0, 5.0, 2.0]);
        assert_eq!(project_simplex(&[-4.0, 12.0], 10.0), vec![0.0, 10.0]);
    }

    #[test]
    fn requests_are_checked_and_priced_within_their_budget() {
        let missions = vec!["KGZ".to_string(), "UKR".to_string()];
        let request = ReleaseRequest {
            name: "HQ".into(),
            indicators: vec![],
            missions: None,
            from: 2003,
            to: 2008,
            period: PeriodKind::Year,
            epsilon: 1.0,
            delta: None,
            contribution_bound: None,
        };
        let plan = request.plan(&missions).unwrap();
        // Without a delta, every indicator but the thresholded flows.
        assert_eq!(plan.indicators.len(), indicators::catalogue().len() - 1);
        let flows = ReleaseRequest {
            indicators: vec!["origin_destination_flows".into()],
            ..request.clone()
        };
        assert_eq!(flows.plan(&missions).unwrap_err().0[0].field, "delta");
        let with_delta = ReleaseRequest {
            delta: Some(1e-6),
            ..request.clone()
        }
        .plan(&missions)
        .unwrap();
        assert_eq!(with_delta.indicators.len(), indicators::catalogue().len());
        assert!(with_delta.cost.delta <= 1e-6 && with_delta.cost.delta > 0.0);
        assert!(with_delta.cost.epsilon <= 1.0);
        assert!(plan.cost.epsilon <= 1.0, "{:?}", plan.cost);
        assert!(plan.cost.epsilon > 0.99, "{:?}", plan.cost);
        assert_eq!(plan.cost.delta, 0.0);
        // The persons total is asked once although many indicators use it.
        let totals = plan
            .queries
            .iter()
            .filter(|(s, _, _)| *s == Source::persons())
            .count();
        assert_eq!(totals, 1);

        let quarterly = ReleaseRequest {
            period: PeriodKind::Quarter,
            indicators: vec!["coverage_vs_estimated".into()],
            ..request.clone()
        };
        assert_eq!(
            quarterly.plan(&missions).unwrap_err().0[0].field,
            "indicators"
        );
        let unknown = ReleaseRequest {
            missions: Some(vec!["FRA".into()]),
            ..request.clone()
        };
        assert_eq!(unknown.plan(&missions).unwrap_err().0[0].field, "missions");
        let free = ReleaseRequest {
            epsilon: 0.0,
            ..request
        };
        assert_eq!(free.plan(&missions).unwrap_err().0[0].field, "epsilon");
    }
}
