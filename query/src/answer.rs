//! Answers: from a validated spec and its exact aggregates to released cells with intervals.
//!
//! Two steps, so the ledger can be charged between them (write-ahead):
//! 1. [`CostPlan::new`] splits the query's privacy over its noisy parts and prices each part
//!    with the DP module's deterministic preview: exactly what the release will cost. Nothing is
//!    read from the data.
//! 2. [`release`] noises every part with the planned budgets (call it in a blocking thread:
//!    OpenDP measurements are not `Send`) and post-processes the noisy parts into cells.
//!
//! Budget split: a query with `n` noisy parts (a mean has two: sum and count) gives each part
//! `epsilon / n`; a Gaussian query gives each part `delta / n`. Shares are taken in ledger
//! units (10^-12) and calibrated to just below them ([`ledger::share`]), so the costs, rounded
//! up to units and added, never exceed what was asked: ten queries at epsilon 0.1 fit in a
//! budget of 1.0 although the binary 0.1 is a little above 1/10. With threshold keys the part
//! that selects the keys (the count) takes the whole delta. An accuracy target is applied to
//! each part and the budgets are added. Sequential composition: the total cost is the sum of
//! the parts' costs.
//!
//! Intervals (every cell has one, at 95%):
//! - counts and sums: the noisy value plus or minus the part's 95% half-width; counts are
//!   clipped at 0 (a true count is never negative, so coverage is unchanged);
//! - means: sum and count each at 97.5%, so both hold together with probability at least 95%
//!   (union bound); the interval is the range of sum / count over that box, within the declared
//!   bounds;
//! - quantiles: each of the `B` bin counts at `1 - 0.05 / B`; then every cumulative count is
//!   within `j * h` of the truth, which brackets the bin holding the quantile. Conservative and
//!   wide, never narrower than the truth allows.
//!
//! With threshold keys the intervals are those of the noise before selection: a released count
//! near the threshold is biased upwards by the selection, which the answer says.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::dp::{self, Cost, DpError, Loss, Mechanism, Released, Sensitivity};
use crate::ledger;
use crate::plan::{Aggregates, contributions};
use crate::spec::{self, KeysMode, Measure, Privacy, ValidatedSpec};

/// Coverage of every interval.
pub const LEVEL: f64 = 0.95;

/// Separates the keys of a cell in the threshold mechanism's input. A control character never
/// appears in a code list, a country code or a period.
const KEY_SEPARATOR: char = '\u{1f}';

/// One noisy part of an answer (a mean has two) and what its release costs.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Part {
    /// `persons`, `cases`, `sum` or `count`.
    pub name: String,
    /// How far one person can move this part, after contribution bounding.
    pub sensitivity: Sensitivity,
    pub mechanism: Mechanism,
    /// The noise scale (Laplace: `b`; Gaussian: `sigma`).
    pub scale: f64,
    /// `P(|noise| <= half_width_95) >= 0.95` for one cell of this part.
    pub half_width_95: f64,
    /// With threshold keys, the part whose noisy count selects the released keys: cells below
    /// this count are not released.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<i64>,
    /// What releasing this part alone costs as (epsilon, delta): OpenDP's privacy map; for a
    /// Gaussian part, its rho converted at the query's delta.
    pub cost: Cost,
    /// What the ledger is charged for this part, in the terms it composes in: a rho for a
    /// Gaussian part, an (epsilon, delta) otherwise.
    pub loss: Loss,
    /// The budget the part is calibrated to (the cost is at most this).
    #[serde(skip)]
    budget: PartBudget,
}

/// What one part is calibrated to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PartBudget {
    Approx(Cost),
    Rho(f64),
}

/// The part of an `"auto"` query's budget that releases the histogram of records per person.
pub const AUTO_SHARE: f64 = 0.1;

/// The priced parts of a query. Deterministic: the same spec always has the same plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostPlan {
    /// For an `"auto"` bound, only the histogram of records per person: the query's own parts
    /// are priced once the bound is chosen, within [`CostPlan::rest`].
    pub parts: Vec<Part>,
    /// For an `"auto"` bound: what is left of the budget for the query once its bound is chosen
    /// (the charge covers it whole).
    #[serde(skip)]
    pub rest: Option<Privacy>,
    /// What the ledger is charged: the parts' losses added, each rounded up to ledger units.
    pub loss: Loss,
    /// The (epsilon, delta) the query costs: for Laplace and threshold parts the sum of their
    /// costs (each rounded up to ledger units), for Gaussian parts their rho total converted
    /// once at the query's delta.
    pub total: Cost,
}

fn dp_mechanism(mechanism: spec::Mechanism) -> Mechanism {
    match mechanism {
        spec::Mechanism::Laplace => Mechanism::Laplace,
        spec::Mechanism::Gaussian => Mechanism::Gaussian,
    }
}

/// Added in ledger units, each rounded up, so the total is what the ledger charges and never
/// less than the parts.
fn added(values: impl Iterator<Item = f64>) -> f64 {
    ledger::at_most(values.map(ledger::units_up).sum())
}

impl CostPlan {
    /// Split and price the spec's privacy (module docs). Errors are the caller's (a budget too
    /// small, an accuracy no budget can reach) unless [`DpError::is_caller_error`] says not.
    pub fn new(spec: &ValidatedSpec) -> Result<CostPlan, DpError> {
        if spec.auto_bound() {
            return Self::auto(spec);
        }
        let components = contributions(spec);
        let mechanism = dp_mechanism(spec.mechanism());
        if mechanism == Mechanism::Gaussian && spec.keys() == KeysMode::Public {
            return Self::gaussian(spec, &components);
        }
        let parts_count = components.len();
        let selector = selector(spec, components.iter().map(|(name, _)| *name));
        let delta = match spec.privacy() {
            Privacy::Budget { delta, .. } | Privacy::Accuracy { delta, .. } => delta,
            Privacy::Rho { .. } => {
                return Err(DpError::InvalidBudget(
                    "a rho budget is spent by the gaussian mechanism".into(),
                ));
            }
        };
        let mut parts = Vec::with_capacity(components.len());
        for (i, (name, c)) in components.iter().enumerate() {
            let sensitivity = sensitivity_of(c);
            let selects = selector == Some(i);
            let (mechanism, part_delta) = match (spec.keys(), delta) {
                (KeysMode::Threshold, Some(d)) => (
                    Mechanism::Laplace,
                    if selects { ledger::share(d, 1) } else { 0.0 },
                ),
                (_, Some(d)) => (mechanism, ledger::share(d, parts_count)),
                (_, None) => (mechanism, 0.0),
            };
            let budget = match spec.privacy() {
                Privacy::Budget { epsilon, .. } => Cost {
                    epsilon: ledger::share(epsilon, parts_count),
                    delta: part_delta,
                },
                Privacy::Accuracy { half_width_95, .. } => {
                    let needed = dp::budget_for_accuracy(
                        &sensitivity,
                        mechanism,
                        half_width_95,
                        part_delta,
                    )?;
                    Cost {
                        epsilon: needed.epsilon,
                        delta: if selects { part_delta } else { needed.delta },
                    }
                }
                Privacy::Rho { .. } => unreachable!("refused above"),
            };
            let (scale, half_width_95, threshold, cost) = if selects {
                let p = dp::preview_sparse(&sensitivity, budget)?;
                (p.scale, p.half_width_95, Some(p.threshold), p.cost)
            } else {
                let p = dp::preview(&sensitivity, mechanism, budget)?;
                (p.scale, p.half_width_95, None, p.cost)
            };
            parts.push(Part {
                name: name.to_string(),
                sensitivity,
                mechanism,
                scale,
                half_width_95,
                threshold,
                cost,
                loss: Loss::approx(cost),
                budget: PartBudget::Approx(budget),
            });
        }
        let total = Cost {
            epsilon: added(parts.iter().map(|p| p.cost.epsilon)),
            delta: added(parts.iter().map(|p| p.cost.delta)),
        };
        Ok(CostPlan {
            parts,
            rest: None,
            loss: Loss::approx(total),
            total,
        })
    }

    /// An `"auto"` bound: [`AUTO_SHARE`] of the budget (its rho for the Gaussian) on the
    /// histogram of records per person (one person is in one bin: sensitivity 1), the rest kept
    /// for the query. The charge is the whole budget, whichever bound is chosen.
    fn auto(spec: &ValidatedSpec) -> Result<CostPlan, DpError> {
        let sensitivity = Sensitivity {
            l0: 1,
            l1: 1,
            linf: 1,
        };
        let left = |total: f64, spent: f64| {
            ledger::at_most(ledger::units_down(total) - ledger::units_up(spent))
        };
        let part = |mechanism, scale, half_width_95, cost, loss, budget| Part {
            name: "records_per_person".into(),
            sensitivity,
            mechanism,
            scale,
            half_width_95,
            threshold: None,
            cost,
            loss,
            budget,
        };
        let gaussian = match (spec.mechanism(), spec.privacy()) {
            (
                spec::Mechanism::Gaussian,
                Privacy::Budget {
                    epsilon,
                    delta: Some(delta),
                },
            ) => Some((dp::rho_for(epsilon, delta)?, delta)),
            (spec::Mechanism::Gaussian, Privacy::Rho { rho, delta }) => Some((rho, delta)),
            _ => None,
        };
        if let Some((rho, delta)) = gaussian {
            let budget = ledger::share(rho * AUTO_SHARE, 1);
            let p = dp::preview_gaussian(&sensitivity, budget)?;
            let charged = ledger::at_most(ledger::units_down(rho));
            let cost = Cost {
                epsilon: dp::epsilon_of_rho(p.rho, delta)?,
                delta,
            };
            return Ok(CostPlan {
                parts: vec![part(
                    Mechanism::Gaussian,
                    p.scale,
                    p.half_width_95,
                    cost,
                    Loss::rho(p.rho),
                    PartBudget::Rho(budget),
                )],
                rest: Some(Privacy::Rho {
                    rho: left(rho, p.rho),
                    delta,
                }),
                loss: Loss::rho(charged),
                total: Cost {
                    epsilon: dp::epsilon_of_rho(charged, delta)?,
                    delta,
                },
            });
        }
        let Privacy::Budget {
            epsilon,
            delta: None,
        } = spec.privacy()
        else {
            return Err(DpError::InvalidBudget(
                "a contribution bound of `auto` needs a budget".into(),
            ));
        };
        let budget = Cost {
            epsilon: ledger::share(epsilon * AUTO_SHARE, 1),
            delta: 0.0,
        };
        let p = dp::preview(&sensitivity, Mechanism::Laplace, budget)?;
        let total = Cost {
            epsilon: ledger::at_most(ledger::units_down(epsilon)),
            delta: 0.0,
        };
        Ok(CostPlan {
            parts: vec![part(
                Mechanism::Laplace,
                p.scale,
                p.half_width_95,
                p.cost,
                Loss::approx(p.cost),
                PartBudget::Approx(budget),
            )],
            rest: Some(Privacy::Budget {
                epsilon: left(epsilon, p.cost.epsilon),
                delta: None,
            }),
            loss: Loss::approx(total),
            total,
        })
    }

    /// The discrete Gaussian with public keys, priced in zCDP: a budget's rho (given, or the
    /// largest whose conversion at delta is within the epsilon asked) split equally over the
    /// parts, or each part's rho for the accuracy asked; the total converted once.
    fn gaussian(
        spec: &ValidatedSpec,
        components: &[(&'static str, crate::plan::Contribution)],
    ) -> Result<CostPlan, DpError> {
        let n = components.len();
        let needed = |delta: Option<f64>| {
            delta.ok_or_else(|| {
                DpError::InvalidBudget("the gaussian mechanism needs a delta".into())
            })
        };
        let (share, delta) = match spec.privacy() {
            Privacy::Budget { epsilon, delta } => {
                let delta = needed(delta)?;
                (Some(ledger::share(dp::rho_for(epsilon, delta)?, n)), delta)
            }
            Privacy::Rho { rho, delta } => (Some(ledger::share(rho, n)), delta),
            Privacy::Accuracy { delta, .. } => (None, needed(delta)?),
        };
        let mut parts = Vec::with_capacity(n);
        for (name, c) in components {
            let sensitivity = sensitivity_of(c);
            let rho = match (share, spec.privacy()) {
                (Some(share), _) => share,
                (None, Privacy::Accuracy { half_width_95, .. }) => {
                    dp::rho_for_accuracy(&sensitivity, half_width_95)?
                }
                (None, _) => unreachable!("a budget has a share"),
            };
            let p = dp::preview_gaussian(&sensitivity, rho)?;
            parts.push(Part {
                name: name.to_string(),
                sensitivity,
                mechanism: Mechanism::Gaussian,
                scale: p.scale,
                half_width_95: p.half_width_95,
                threshold: None,
                cost: Cost {
                    epsilon: dp::epsilon_of_rho(p.rho, delta)?,
                    delta,
                },
                loss: Loss::rho(p.rho),
                budget: PartBudget::Rho(rho),
            });
        }
        let rho = added(parts.iter().map(|p| p.loss.rho));
        Ok(CostPlan {
            parts,
            rest: None,
            loss: Loss::rho(rho),
            total: Cost {
                epsilon: dp::epsilon_of_rho(rho, delta)?,
                delta,
            },
        })
    }
}

fn sensitivity_of(c: &crate::plan::Contribution) -> Sensitivity {
    Sensitivity {
        l0: c.l0,
        l1: c.l1,
        linf: c.linf,
    }
}

/// The bound an `"auto"` query ran with, and what it was chosen from (released values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChosenBound {
    /// Records kept per person.
    pub records: u32,
    /// The noisy histogram it was chosen from: persons with 1, 2, ... records among the
    /// query's (the last entry: that many or more).
    pub persons_by_records: Vec<i64>,
    /// The records the bound is estimated to drop, per cell on average: added to each cell's
    /// upper end.
    pub dropped_per_cell: f64,
}

/// An `"auto"` query once its histogram of records per person is released: the bound with the
/// least expected error (the 95% half-width at that bound plus the records it is estimated to
/// drop per cell, from the bins whose noisy count is clear of 0 together at 95%), the query at
/// that bound within the budget left, and what it was chosen from. `counts` are the exact
/// persons by records (the last: that many or more); they are noised here with the histogram's
/// planned part. Synchronous: run it in `spawn_blocking`.
pub fn choose_bound(
    spec: &ValidatedSpec,
    plan: &CostPlan,
    counts: &[i64],
    missions: &[String],
) -> Result<(ValidatedSpec, CostPlan, Released<ChosenBound>), ReleaseError> {
    let (Some(rest), Some(part)) = (plan.rest, plan.parts.first()) else {
        return Err(ReleaseError::Internal(
            "the query has no contribution bound to choose".into(),
        ));
    };
    let histogram = noised(counts, part)?;
    // A bin within its half-width of 0 at 1 - 0.05 / bins (all bins together at 95%) counts as
    // empty: the noise in the many empty bins of a long tail would otherwise look like persons
    // with many records.
    let floor = dp::half_width(
        part.mechanism,
        part.scale,
        0.05 / counts.len().max(1) as f64,
    )?;
    let cells = spec.public_cells(missions).max(1) as f64;
    let records_per_cell = f64::from(spec.cells_per_record());
    histogram
        .try_map(|noisy| {
            let mut best: Option<(f64, u32, ValidatedSpec, CostPlan, f64)> = None;
            for k in 1..=crate::spec::MAX_CONTRIBUTION_BOUND {
                let derived = spec.with_bound(k, rest);
                let priced = CostPlan::new(&derived)?;
                let dropped: f64 = noisy
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n as f64 > floor)
                    .map(|(i, n)| (i as f64 + 1.0 - f64::from(k)).max(0.0) * *n as f64)
                    .sum();
                let bias = dropped * records_per_cell / cells;
                let error = priced.parts[0].half_width_95 + bias;
                if best.as_ref().is_none_or(|(e, ..)| error < *e) {
                    best = Some((error, k, derived, priced, bias));
                }
            }
            let (_, k, derived, priced, bias) =
                best.ok_or_else(|| ReleaseError::Internal("no bound was priced".into()))?;
            let fits = match rest {
                Privacy::Rho { rho, .. } => {
                    ledger::units_up(priced.loss.rho) <= ledger::units_down(rho)
                        && priced.loss.epsilon == 0.0
                }
                Privacy::Budget { epsilon, .. } => {
                    ledger::units_up(priced.loss.epsilon) <= ledger::units_down(epsilon)
                        && priced.loss.rho == 0.0
                }
                Privacy::Accuracy { .. } => false,
            };
            if !fits {
                return Err(ReleaseError::Internal(format!(
                    "the query at bound {k} costs {:?}, more than the {rest:?} left",
                    priced.loss
                )));
            }
            Ok((
                derived,
                priced,
                ChosenBound {
                    records: k,
                    persons_by_records: noisy,
                    dropped_per_cell: bias,
                },
            ))
        })
        .map(|released| {
            // The bound and its plan are post-processing of the released histogram.
            let (chosen, bounded) = released.map(|(d, p, c)| (c, (d, p))).split();
            let (derived, priced) = bounded.into_inner();
            (derived, priced, chosen)
        })
}

/// The answer of an `"auto"` query: the query's answer at the chosen bound, with the histogram's
/// part first, the whole charge, each cell's upper end raised by the records the bound is
/// estimated to drop, and the bound and what it was chosen from.
pub fn with_chosen_bound(
    mut answer: Answer,
    plan: &CostPlan,
    chosen: Released<ChosenBound>,
) -> Answer {
    let bias = chosen.get().dropped_per_cell;
    answer.parts.insert(0, plan.parts[0].clone());
    answer.cost = plan.total;
    answer.loss = plan.loss;
    answer.cells = answer.cells.map(|cells| {
        cells
            .into_iter()
            .map(|mut c| {
                c.upper += bias;
                c
            })
            .collect()
    });
    answer.notes.push(format!(
        "contribution bound: {} records per person, chosen from a noisy histogram of records \
         per person ({:.0}% of the budget) as the least 95% half-width plus the records it is \
         estimated to drop; each upper end is raised by that estimate, {bias:.2} per cell",
        chosen.get().records,
        AUTO_SHARE * 100.0
    ));
    answer.chosen_bound = Some(chosen);
    answer
}

/// With threshold keys, the index of the count that selects the released keys.
fn selector<'a>(spec: &ValidatedSpec, names: impl Iterator<Item = &'a str>) -> Option<usize> {
    if spec.keys() != KeysMode::Threshold {
        return None;
    }
    names
        .enumerate()
        .find(|(_, name)| matches!(*name, "persons" | "cases" | "count"))
        .map(|(i, _)| i)
}

/// A released number with its 95% interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Estimate {
    pub name: String,
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
}

/// One released cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cell {
    /// One key per entry of [`Answer::dimensions`].
    pub key: Vec<String>,
    pub estimate: f64,
    /// The 95% interval of the estimate.
    pub lower: f64,
    pub upper: f64,
    /// For a mean: the separately noised sum and count it was computed from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Estimate>,
}

/// A released answer: only noisy values and what is public about them.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Answer {
    pub measure: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub keys: KeysMode,
    /// Coverage of every interval.
    pub level: f64,
    /// The key columns of the cells (for a quantile, the last is `quantile`).
    pub dimensions: Vec<String>,
    /// Released values only: post-processed from the DP module's releases.
    #[schema(value_type = Vec<Cell>)]
    pub cells: Released<Vec<Cell>>,
    /// The noisy parts, their noise scales and costs.
    pub parts: Vec<Part>,
    /// What this answer cost when it was released, as (epsilon, delta).
    pub cost: Cost,
    /// What releasing it charged the ledger, in the terms charges compose in.
    pub loss: Loss,
    /// With `contribution_bound: "auto"`: the bound chosen and the noisy histogram it was
    /// chosen from.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ChosenBound>)]
    pub chosen_bound: Option<Released<ChosenBound>>,
    /// Generation of the dataset manifest the answer was computed from.
    pub generation: u64,
    pub notes: Vec<String>,
}

/// What went wrong while releasing: a DP refusal, or a mismatch between plan and aggregates.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Dp(#[from] DpError),
    #[error("internal answer error: {0}")]
    Internal(String),
}

fn checked(part: &Part, cost: Cost) -> Result<(), ReleaseError> {
    if cost == part.cost {
        Ok(())
    } else {
        Err(ReleaseError::Internal(format!(
            "part {} cost {cost:?}, not the charged {:?}",
            part.name, part.cost
        )))
    }
}

/// One part's values noised at the budget it was priced at, checked against that price.
fn noised(values: &[i64], part: &Part) -> Result<Released<Vec<i64>>, ReleaseError> {
    match part.budget {
        PartBudget::Approx(budget) => {
            let r = dp::release_counts(values, &part.sensitivity, part.mechanism, budget)?;
            checked(part, r.cost())?;
            Ok(r.released())
        }
        PartBudget::Rho(rho) => {
            let r = dp::release_gaussian(values, &part.sensitivity, rho)?;
            let p = r.preview();
            if p.rho != part.loss.rho || p.scale != part.scale {
                return Err(ReleaseError::Internal(format!(
                    "part {} would spend rho {} at sigma {}, not the charged {} at {}",
                    part.name, p.rho, p.scale, part.loss.rho, part.scale
                )));
            }
            Ok(r.released())
        }
    }
}

/// Noise the aggregates with the planned budgets and build the cells. Synchronous: run it in
/// `spawn_blocking`. Each part's cost is checked against the plan the ledger was charged for.
pub fn release(
    spec: &ValidatedSpec,
    aggregates: &Aggregates,
    plan: &CostPlan,
) -> Result<Answer, ReleaseError> {
    if aggregates.components.len() != plan.parts.len()
        || aggregates.components.iter().zip(&plan.parts).any(|(c, p)| {
            c.name != p.name
                || (c.contribution.l0, c.contribution.l1, c.contribution.linf)
                    != (p.sensitivity.l0, p.sensitivity.l1, p.sensitivity.linf)
                || c.values.len() != aggregates.cells.len()
        })
    {
        return Err(ReleaseError::Internal(
            "the aggregates do not match the priced plan".into(),
        ));
    }

    // Which cells are released, and each part's noisy value for them.
    let (cells, noisy): (Vec<Vec<String>>, Vec<Released<Vec<i64>>>) =
        match plan.parts.iter().position(|p| p.threshold.is_some()) {
            None => {
                let mut noisy = Vec::with_capacity(plan.parts.len());
                for (part, component) in plan.parts.iter().zip(&aggregates.components) {
                    noisy.push(noised(&component.values, part)?);
                }
                (aggregates.cells.clone(), noisy)
            }
            Some(sel) => {
                let index: HashMap<String, usize> = aggregates
                    .cells
                    .iter()
                    .enumerate()
                    .map(|(i, cell)| (join_key(cell), i))
                    .collect();
                let counts: Vec<(String, i64)> = aggregates
                    .cells
                    .iter()
                    .zip(&aggregates.components[sel].values)
                    .filter(|(_, v)| **v > 0)
                    .map(|(cell, v)| (join_key(cell), *v))
                    .collect();
                let part = &plan.parts[sel];
                let PartBudget::Approx(budget) = part.budget else {
                    return Err(ReleaseError::Internal(
                        "threshold keys are priced in (epsilon, delta)".into(),
                    ));
                };
                let r = dp::release_sparse(counts, &part.sensitivity, budget)?;
                checked(part, r.cost())?;
                let mut selected: Vec<(usize, i64)> = r
                    .counts()
                    .iter()
                    .map(|(k, v)| {
                        index.get(k).map(|i| (*i, *v)).ok_or_else(|| {
                            ReleaseError::Internal("a released key is not a cell".into())
                        })
                    })
                    .collect::<Result<_, _>>()?;
                selected.sort_unstable();
                let mut noisy = Vec::with_capacity(plan.parts.len());
                for (i, (part, component)) in
                    plan.parts.iter().zip(&aggregates.components).enumerate()
                {
                    if i == sel {
                        let values = selected.iter().map(|(_, v)| *v).collect();
                        noisy.push(r.released().map(|_| values));
                        continue;
                    }
                    let values: Vec<i64> =
                        selected.iter().map(|(c, _)| component.values[*c]).collect();
                    noisy.push(noised(&values, part)?);
                }
                let cells = selected
                    .iter()
                    .map(|(c, _)| aggregates.cells[*c].clone())
                    .collect();
                (cells, noisy)
            }
        };

    let mut notes = Vec::new();
    let mut dimensions = aggregates.dimensions.clone();
    match spec.measure() {
        Measure::Mean => notes.push(
            "mean = noisy sum / noisy count; its interval holds both parts at 97.5% \
             (union bound) and stays within the declared bounds"
                .into(),
        ),
        Measure::Quantile => {
            dimensions.pop();
            dimensions.push("quantile".into());
            notes.push(
                "quantiles are read from a noisy histogram; the interval brackets the bin \
                 holding the quantile with every bin count held at 1 - 0.05 / bins"
                    .into(),
            );
        }
        _ => {}
    }
    // Post-processing of the noisy parts only: the cells are released values.
    let out_cells = Released::collect(noisy).try_map(|noisy| match spec.measure() {
        Measure::Persons | Measure::Cases | Measure::Histogram => Ok(single(
            &cells,
            &noisy[0],
            plan.parts[0].half_width_95,
            Some(0.0),
        )),
        Measure::Sum => {
            let floor = spec.bounds().filter(|b| b.lower >= 0).map(|_| 0.0);
            Ok(single(
                &cells,
                &noisy[0],
                plan.parts[0].half_width_95,
                floor,
            ))
        }
        Measure::Mean => mean_cells(spec, &cells, &noisy, &plan.parts),
        Measure::Quantile => quantile_cells(spec, aggregates, &noisy[0], &plan.parts[0]),
    })?;
    if matches!(
        spec.measure(),
        Measure::Persons | Measure::Cases | Measure::Histogram
    ) {
        notes.push(
            "each estimate is the unbiased noisy count and can be below 0; its 95% interval \
             is clipped to counts that are possible"
                .into(),
        );
    }
    if spec.keys() == KeysMode::Threshold {
        notes.push(
            "keys were released by a noisy threshold: an absent key may still have records, \
             and counts near the threshold are biased upwards"
                .into(),
        );
    }
    Ok(Answer {
        measure: spec.measure().name().to_string(),
        column: spec.column().map(|c| c.name().to_string()),
        keys: spec.keys(),
        level: LEVEL,
        dimensions,
        cells: out_cells,
        parts: plan.parts.clone(),
        cost: plan.total,
        loss: plan.loss,
        chosen_bound: None,
        generation: aggregates.generation,
        notes,
    })
}

fn join_key(cell: &[String]) -> String {
    let mut key = String::new();
    for (i, k) in cell.iter().enumerate() {
        if i > 0 {
            key.push(KEY_SEPARATOR);
        }
        key.push_str(k);
    }
    key
}

/// One noisy value per cell, plus or minus `half_width`, the lower end at least `floor`.
fn single(cells: &[Vec<String>], values: &[i64], half_width: f64, floor: Option<f64>) -> Vec<Cell> {
    cells
        .iter()
        .zip(values)
        .map(|(key, &v)| {
            let v = v as f64;
            let clip = |x: f64| floor.map_or(x, |f| x.max(f));
            Cell {
                key: key.clone(),
                estimate: v,
                lower: clip(v - half_width),
                upper: clip(v + half_width),
                parts: Vec::new(),
            }
        })
        .collect()
}

fn mean_cells(
    spec: &ValidatedSpec,
    cells: &[Vec<String>],
    noisy: &[Vec<i64>],
    parts: &[Part],
) -> Result<Vec<Cell>, ReleaseError> {
    let bounds = spec
        .bounds()
        .ok_or_else(|| ReleaseError::Internal("a mean without bounds".into()))?;
    let (lo, hi) = (bounds.lower as f64, bounds.upper as f64);
    let half = |p: &Part| dp::half_width(p.mechanism, p.scale, (1.0 - LEVEL) / 2.0);
    let (hs, hc) = (half(&parts[0])?, half(&parts[1])?);
    Ok(cells
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let (s, c) = (noisy[0][i] as f64, noisy[1][i] as f64);
            let estimate = (s / c.max(1.0)).clamp(lo, hi);
            let (lower, upper) = if c + hc < 1.0 {
                // The box holds no count of at least one record: nothing is known.
                (lo, hi)
            } else {
                let (c_lo, c_hi) = ((c - hc).max(1.0), c + hc);
                let corners = [
                    (s - hs) / c_lo,
                    (s - hs) / c_hi,
                    (s + hs) / c_lo,
                    (s + hs) / c_hi,
                ];
                let min = corners.iter().copied().fold(f64::INFINITY, f64::min);
                let max = corners.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (min.clamp(lo, hi), max.clamp(lo, hi))
            };
            let part = |name: &str, v: f64, p: &Part, floor: Option<f64>| {
                let clip = |x: f64| floor.map_or(x, |f| x.max(f));
                Estimate {
                    name: name.into(),
                    estimate: v,
                    lower: clip(v - p.half_width_95),
                    upper: clip(v + p.half_width_95),
                }
            };
            let sum_floor = (bounds.lower >= 0).then_some(0.0);
            Cell {
                key: key.clone(),
                estimate,
                lower,
                upper,
                parts: vec![
                    part("sum", s, &parts[0], sum_floor),
                    part("count", c, &parts[1], Some(0.0)),
                ],
            }
        })
        .collect())
}

fn quantile_cells(
    spec: &ValidatedSpec,
    aggregates: &Aggregates,
    counts: &[i64],
    part: &Part,
) -> Result<Vec<Cell>, ReleaseError> {
    let bins = &aggregates.bins;
    let b = bins.len();
    if b == 0 || !counts.len().is_multiple_of(b) || aggregates.cells.len() != counts.len() {
        return Err(ReleaseError::Internal(
            "a quantile needs a histogram over its bins in every group".into(),
        ));
    }
    let h = dp::half_width(part.mechanism, part.scale, (1.0 - LEVEL) / b as f64)?;
    let mut out = Vec::new();
    for (g, group) in counts.chunks(b).enumerate() {
        let group_key = &aggregates.cells[g * b][..aggregates.cells[g * b].len() - 1];
        // Clipping each count at 0 moves it towards the truth, so the bound `h` still holds.
        let cumulative: Vec<f64> = group
            .iter()
            .scan(0.0, |acc, &c| {
                *acc += c.max(0) as f64;
                Some(*acc)
            })
            .collect();
        let total = cumulative[b - 1];
        let first = |ok: &dyn Fn(usize, f64) -> bool| {
            cumulative
                .iter()
                .enumerate()
                .find(|(j, c)| ok(*j, **c))
                .map_or(b - 1, |(j, _)| j)
        };
        for &q in spec.quantiles() {
            let mid = |j: usize| ((bins[j].lower + bins[j].upper) as f64 / 2.0).floor();
            let (estimate, lower, upper) = if total <= 0.0 {
                {
                    let (lo, hi) = (bins[0].lower as f64, bins[b - 1].upper as f64);
                    (((lo + hi) / 2.0).floor(), lo, hi)
                }
            } else {
                let at = first(&|_, c| c >= q * total);
                let lo = first(&|j, c| c + (j + 1) as f64 * h >= q * (total - b as f64 * h));
                let hi = first(&|j, c| c - (j + 1) as f64 * h >= q * (total + b as f64 * h));
                (
                    mid(at),
                    bins[lo].lower as f64,
                    bins[hi.max(at)].upper as f64,
                )
            };
            let mut key = group_key.to_vec();
            key.push(format!("{q}"));
            out.push(Cell {
                key,
                estimate: estimate.clamp(bins[0].lower as f64, bins[b - 1].upper as f64),
                lower: lower.min(estimate),
                upper,
                parts: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// An answer's cells as CSV: the key columns, then `estimate,lower,upper`.
pub fn to_csv(dimensions: &[String], cells: &[Cell]) -> String {
    let mut out = String::new();
    let header: Vec<&str> = dimensions
        .iter()
        .map(String::as_str)
        .chain(["estimate", "lower", "upper"])
        .collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for cell in cells {
        let mut fields: Vec<String> = cell.key.iter().map(|k| csv_field(k)).collect();
        fields.extend([cell.estimate, cell.lower, cell.upper].map(|v| v.to_string()));
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests;
