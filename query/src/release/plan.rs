//! A release request checked against the catalogue and the service's missions: its periods,
//! its distinct counts, each a validated query priced in advance (nothing is read or charged).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::design::Design;

use crate::answer::CostPlan;
use crate::dp::{self, Loss};
use crate::indicators::{self, Indicator, Source};
use crate::ledger::{self, Cost};
use crate::spec::{
    Bins, Bounds, Budget, ContributionBound, KeysMode, Mechanism, PeriodSpec, QuerySpec, SpecError,
    SpecErrors, ValidatedSpec,
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
    /// How the budget is spent: `marginals` (default; needs a delta) or `equal_split` (the
    /// earlier rule: pure epsilon split equally over the counts, discrete Laplace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub design: Option<DesignKind>,
}

/// How a release spends its budget (module docs of `release`).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DesignKind {
    /// The marginals of the persons and cases tables, measured once with discrete Gaussian noise
    /// (rho by declared weights), every indicator reconstructed by least squares.
    #[default]
    Marginals,
    /// Each distinct count asked separately at an equal share of epsilon (discrete Laplace).
    EqualSplit,
}

/// The part of a marginal release's epsilon and delta that goes to thresholded flows, when they
/// are asked for.
pub const FLOWS_EPSILON_SHARE: f64 = 0.1;
pub const FLOWS_DELTA_SHARE: f64 = 0.5;

/// One distinct count: its source, validated query and priced plan.
pub type PricedQuery = (Source, ValidatedSpec, CostPlan);

/// A release request checked against the catalogue and the service's missions, with its plan.
#[derive(Debug, Clone)]
pub struct ReleasePlan {
    pub request: ReleaseRequest,
    pub indicators: Vec<Indicator>,
    pub missions: Vec<String>,
    pub periods: Vec<String>,
    /// The distinct counts, each with its validated query and priced plan.
    pub queries: Vec<(Source, ValidatedSpec, CostPlan)>,
    /// The (epsilon, delta) the release's charge composes to.
    pub cost: Cost,
    /// What the ledger is charged: the design's rho, plus the thresholded queries' (epsilon,
    /// delta) (equal split: the queries' costs added in ledger units).
    pub loss: Loss,
    /// The noise plan of a marginal release; `None` for the equal split.
    pub design: Option<Design>,
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
        let kind = self.design.unwrap_or_default();
        if kind == DesignKind::Marginals && self.delta.is_none() {
            return Err(error(
                "delta",
                "the marginal design converts its rho (zCDP) to (epsilon, delta) once: give a \
                 delta such as 1e-6, or ask for \"design\": \"equal_split\" (pure epsilon)",
            ));
        }
        let indicators: Vec<Indicator> = if self.indicators.is_empty() {
            indicators::catalogue()
                .into_iter()
                .filter(|i| yearly || !i.formula.uses_reference())
                .filter(|i| self.delta.is_some() || !i.formula.needs_delta())
                // The flows are left out of the default marginal release (module docs).
                .filter(|i| kind == DesignKind::EqualSplit || !i.formula.needs_delta())
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
        let (queries, cost, loss, design) = match kind {
            DesignKind::EqualSplit => {
                let (queries, cost) =
                    self.equal_split(&indicators, &missions, k, service_missions)?;
                (queries, cost, Loss::approx(cost), None)
            }
            DesignKind::Marginals => self.marginals(&indicators, &missions, k, service_missions)?,
        };
        let request = ReleaseRequest {
            name: name.to_string(),
            indicators: indicators.iter().map(|i| i.id.to_string()).collect(),
            missions: Some(missions.clone()),
            contribution_bound: Some(k),
            design: Some(kind),
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
            loss,
            design,
            hash,
        })
    }

    /// Today's rule: every distinct count at an equal share of epsilon (discrete Laplace).
    fn equal_split(
        &self,
        indicators: &[Indicator],
        missions: &[String],
        k: u32,
        service_missions: &[String],
    ) -> Result<(Vec<PricedQuery>, Cost), SpecErrors> {
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
                missions,
                (self.from, self.to, self.period),
                k,
                Budget {
                    epsilon: Some(share),
                    delta,
                    rho: None,
                },
            );
            let validated = spec.validate(service_missions)?;
            let plan = CostPlan::new(&validated).map_err(|e| error("epsilon", e.to_string()))?;
            queries.push((source, validated, plan));
        }
        let cost = total_cost(&queries);
        Ok((queries, cost))
    }

    /// The marginal design at the request's (epsilon, delta), less the flows' part if asked.
    fn marginals(
        &self,
        indicators: &[Indicator],
        missions: &[String],
        k: u32,
        service_missions: &[String],
    ) -> Result<(Vec<PricedQuery>, Cost, Loss, Option<Design>), SpecErrors> {
        let delta = self.delta.unwrap_or_default();
        let flows: BTreeSet<Source> = indicators
            .iter()
            .flat_map(|i| i.formula.sources())
            .filter(Source::thresholded)
            .collect();
        let (flow_epsilon, flow_delta) = if flows.is_empty() {
            (0.0, 0.0)
        } else {
            (
                ledger::share(self.epsilon * FLOWS_EPSILON_SHARE, flows.len()),
                ledger::share(delta * FLOWS_DELTA_SHARE, flows.len()),
            )
        };
        let mut queries = Vec::new();
        for source in flows {
            let mut spec = query_for(
                &source,
                missions,
                (self.from, self.to, self.period),
                k,
                Budget {
                    epsilon: Some(flow_epsilon),
                    delta: Some(flow_delta),
                    rho: None,
                },
            );
            // Per mission over the whole period: at ~100 persons a mission-year no pair passes
            // the threshold.
            spec.group_by.retain(|d| !d.starts_with("registration_"));
            let validated = spec.validate(service_missions)?;
            let plan = CostPlan::new(&validated).map_err(|e| error("epsilon", e.to_string()))?;
            queries.push((source, validated, plan));
        }
        let approx = total_cost(&queries);
        let left_epsilon =
            ledger::at_most(ledger::units_down(self.epsilon) - ledger::units_up(approx.epsilon));
        let left_delta = delta - approx.delta;
        let rho =
            dp::rho_for(left_epsilon, left_delta).map_err(|e| error("epsilon", e.to_string()))?;
        let design =
            Design::plan(indicators, rho, k).map_err(|e| error("epsilon", e.to_string()))?;
        let loss = Loss {
            rho: design.rho,
            epsilon: approx.epsilon,
            delta: approx.delta,
        };
        let epsilon = dp::composed_epsilon(loss.rho, loss.epsilon, loss.delta, &[], delta)
            .map_err(|e| error("epsilon", e.to_string()))?
            .filter(|e| *e <= self.epsilon)
            .ok_or_else(|| error("epsilon", "the design does not fit the budget"))?;
        Ok((queries, Cost { epsilon, delta }, loss, Some(design)))
    }
}

/// The queries' costs added in ledger units, each rounded up: what the ledger is charged for them.
fn total_cost(queries: &[PricedQuery]) -> Cost {
    let units = |f: fn(&Cost) -> f64| -> i64 {
        queries
            .iter()
            .map(|(_, _, p)| ledger::units_up(f(&p.total)))
            .sum()
    };
    Cost {
        epsilon: ledger::at_most(units(|c| c.epsilon)),
        delta: ledger::at_most(units(|c| c.delta)),
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
        contribution_bound: Some(ContributionBound::Records(contribution_bound)),
        list_items_bound: None,
        mechanism: Some(Mechanism::Laplace),
        budget: Some(budget),
        accuracy: None,
        keys: if source.thresholded() {
            KeysMode::Threshold
        } else {
            KeysMode::Public
        },
    }
}
