//! Computing a paid release: each count's query through the planner and the DP module, as
//! noisy counts keyed by mission, period and key.

use std::collections::HashMap;

use crate::answer::{self, Cell};
use crate::data::Data;
use crate::dp::Released;
use crate::indicators::Source;
use crate::ledger::Paid;
use crate::plan;

use super::ReleasePlan;
use super::design;

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
    pub(crate) fn half_width(self, alpha: f64) -> f64 {
        if self.scale <= 0.0 {
            return 0.0;
        }
        let b = self.scale;
        let h = (b * (2.0 / (alpha * (1.0 + (-1.0 / b).exp()))).ln()).ceil() - 1.0;
        h.max(0.0)
    }
    pub(crate) fn variance(self) -> f64 {
        2.0 * self.scale * self.scale
    }
    /// `[lower, upper]` at level `1 − alpha`, clipped at 0.
    pub(crate) fn interval(self, alpha: f64) -> (f64, f64) {
        let h = self.half_width(alpha);
        ((self.value - h).max(0.0), (self.value + h).max(0.0))
    }
}

/// Several noisy counts added up: the interval takes each at `1 − alpha / m` (union bound).
pub(super) fn sum_interval(parts: &[Noisy], alpha: f64) -> (f64, f64) {
    let m = parts.len().max(1) as f64;
    let value: f64 = parts.iter().map(|p| p.value).sum();
    let h: f64 = parts.iter().map(|p| p.half_width(alpha / m)).sum();
    ((value - h).max(0.0), (value + h).max(0.0))
}

/// Noisy counts of one source, by (mission, period, key); the key is `""` without breakdown.
pub type Counts = HashMap<(String, String, String), Noisy>;

/// Run every query of `plan` (DataFusion, then OpenDP on a blocking thread) and return the
/// noisy counts per source and the dataset generation. The caller has charged the plan's cost.
pub async fn compute_counts(
    paid: &Paid,
    data: &Data,
    service_missions: &[String],
    plan: &ReleasePlan,
) -> Result<(Released<Vec<Counts>>, u64), String> {
    let mut all = Vec::with_capacity(plan.queries.len());
    let mut generation = 0;
    for (source, spec, cost) in &plan.queries {
        let aggregates = plan::aggregate(paid, data, service_missions, spec)
            .await
            .map_err(|e| e.to_string())?;
        generation = generation.max(aggregates.generation);
        let (spec, cost) = (spec.clone(), cost.clone());
        let answer =
            tokio::task::spawn_blocking(move || answer::release(&spec, &aggregates, &cost))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        let scale = answer.parts.first().map_or(0.0, |p| p.scale);
        let dimensions = answer.dimensions;
        all.push(
            answer
                .cells
                .map(|cells| counts_of(source, &dimensions, scale, &cells)),
        );
    }
    Ok((Released::collect(all), generation))
}

/// The noisy counts of an answer keyed by (mission, period, key): the period is `""` for a count
/// over the whole period (no registration dimension), and the key is the remaining dimensions'
/// keys joined by `>` (breakdown key or bin; `CIT>DST` for flows), `""` without breakdown.
fn counts_of(source: &Source, dimensions: &[String], scale: f64, cells: &[Cell]) -> Counts {
    let periodic = dimensions
        .get(1)
        .is_some_and(|d| d.starts_with("registration_"));
    let first_key = 1 + usize::from(periodic);
    cells
        .iter()
        .map(|cell| {
            let period = if periodic {
                cell.key[1].clone()
            } else {
                String::new()
            };
            let key = if source.breakdown.is_some() {
                cell.key[first_key.min(cell.key.len())..].join(">")
            } else {
                String::new()
            };
            (
                (cell.key[0].clone(), period, key),
                Noisy {
                    value: cell.estimate,
                    scale,
                },
            )
        })
        .collect()
}

/// The noisy marginals of a marginal design and the noisy counts of its thresholded queries
/// (the flows, if asked), and the dataset generation. The caller has charged the plan's loss.
pub async fn compute_design(
    paid: &Paid,
    data: &Data,
    service_missions: &[String],
    plan: &ReleasePlan,
) -> Result<(Released<(Vec<Vec<i64>>, Vec<Counts>)>, u64), String> {
    let design = plan
        .design
        .clone()
        .ok_or_else(|| "the release has no marginal design".to_string())?;
    let r = &plan.request;
    let (exact, generation) = design::exact_marginals(
        paid,
        data,
        &design,
        &plan.missions,
        &plan.periods,
        (r.from, r.to, r.period),
    )
    .await
    .map_err(|e| e.to_string())?;
    let noisy = tokio::task::spawn_blocking(move || design::noise(&design, &exact))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let (flows, flows_generation) = compute_counts(paid, data, service_missions, plan).await?;
    Ok((noisy.zip(flows), generation.max(flows_generation)))
}
