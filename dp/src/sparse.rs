//! Counts over keys too many to enumerate, released only above a DP threshold
//! (OpenDP's `make_laplace_threshold`).

use std::collections::HashMap;

use opendp::core::Measurement;
use opendp::domains::{AtomDomain, MapDomain};
use opendp::measurements::make_laplace_threshold;
use opendp::measures::{Approximate, MaxDivergence};
use opendp::metrics::{AbsoluteDistance, L01InfDistance};
use serde::Serialize;

use crate::calibrate::{Calibrations, calibration_key, smallest_scale};
use crate::interval::half_width_at;
use crate::{
    Cost, DpError, MAX_SCALE, Mechanism, Result, Sensitivity, check_epsilon, check_positive_delta,
    check_within, opendp,
};

/// What a sparse release would look like, computed without drawing any noise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SparsePreview {
    /// The scale of the discrete Laplace noise.
    pub scale: f64,
    /// Keys whose noisy count is below this are not released.
    pub threshold: i64,
    /// `P(|noise| <= half_width_95) >= 0.95` for each released cell, before selection.
    pub half_width_95: f64,
    /// What the release will charge (epsilon and delta), from OpenDP's privacy map.
    pub cost: Cost,
}

/// Counts over keys from a domain too large to enumerate, released only above a DP threshold.
/// Only this crate can build one.
#[derive(Debug, Clone, Serialize)]
pub struct SparseRelease {
    counts: Vec<(String, i64)>,
    threshold: i64,
    scale: f64,
    half_width_95: f64,
    cost: Cost,
}

impl SparseRelease {
    /// The released keys with their noisy counts, sorted by key. Every count is at least the
    /// threshold: counts near it are biased upwards by the selection.
    pub fn counts(&self) -> &[(String, i64)] {
        &self.counts
    }
    /// The released keys and noisy counts as a [`Released`](crate::Released) value.
    pub fn released(&self) -> crate::Released<Vec<(String, i64)>> {
        crate::Released::new(self.counts.clone())
    }
    pub fn threshold(&self) -> i64 {
        self.threshold
    }
    pub fn scale(&self) -> f64 {
        self.scale
    }
    /// `P(|noise| <= half_width_95) >= 0.95` for each released cell, before selection.
    pub fn half_width_95(&self) -> f64 {
        self.half_width_95
    }
    /// The privacy loss charged (epsilon and delta), from OpenDP's privacy map.
    pub fn cost(&self) -> Cost {
        self.cost
    }
}

static SPARSE_CALIBRATIONS: Calibrations<SparsePreview> = Calibrations::new();

pub(crate) type KeyCounts = MapDomain<AtomDomain<String>, AtomDomain<i64>>;
pub(crate) type ThresholdMeasurement = Measurement<
    KeyCounts,
    L01InfDistance<AbsoluteDistance<i64>>,
    Approximate<MaxDivergence>,
    HashMap<String, i64>,
>;

pub(crate) fn threshold_measurement(scale: f64, threshold: i64) -> Result<ThresholdMeasurement> {
    make_laplace_threshold(
        MapDomain::new(
            AtomDomain::<String>::default(),
            AtomDomain::<i64>::default(),
        ),
        L01InfDistance::<AbsoluteDistance<i64>>::default(),
        scale,
        threshold,
        None,
    )
    .map_err(opendp("building the threshold measurement"))
}

/// The sparse privacy map at `sensitivity`: epsilon and delta.
pub(crate) fn threshold_cost(m: &ThresholdMeasurement, sensitivity: &Sensitivity) -> Result<Cost> {
    // `check` bounds every component by 2^26, so they fit.
    let d_in = (
        u32::try_from(sensitivity.l0).unwrap_or(u32::MAX),
        i64::try_from(sensitivity.l1).unwrap_or(i64::MAX),
        i64::try_from(sensitivity.linf).unwrap_or(i64::MAX),
    );
    m.map(&d_in)
        .map(|(epsilon, delta)| Cost { epsilon, delta })
        .map_err(opendp("evaluating the threshold privacy map"))
}

/// The scale fits epsilon; the threshold is then the smallest one whose delta fits.
pub(crate) fn calibrate_sparse(sensitivity: &Sensitivity, budget: Cost) -> Result<SparsePreview> {
    SPARSE_CALIBRATIONS.get_or(calibration_key(sensitivity, None, budget), || {
        search_sparse_calibration(sensitivity, budget)
    })
}

pub(crate) fn search_sparse_calibration(
    sensitivity: &Sensitivity,
    budget: Cost,
) -> Result<SparsePreview> {
    check_epsilon(budget.epsilon)?;
    check_positive_delta(budget.delta, "a sparse release")?;
    sensitivity.check()?;
    // Epsilon does not depend on the threshold: calibrate with the largest one.
    let epsilon_at = |scale: f64| -> Result<f64> {
        let cost = threshold_cost(&threshold_measurement(scale, i64::MAX)?, sensitivity)?;
        Ok(cost.epsilon)
    };
    let start = sensitivity.l1_bound() as f64 / budget.epsilon;
    let Some(scale) = smallest_scale(start, budget.epsilon, epsilon_at)? else {
        return Err(DpError::BudgetTooSmall(format!(
            "epsilon {} needs a noise scale above {MAX_SCALE} at this sensitivity; \
             raise epsilon or bound each person's contribution more tightly",
            budget.epsilon
        )));
    };
    let delta_fits = |threshold: i64| -> Result<bool> {
        let cost = threshold_cost(&threshold_measurement(scale, threshold)?, sensitivity)?;
        Ok(cost.delta <= budget.delta)
    };
    // OpenDP requires threshold >= linf. Find a fitting threshold by doubling steps, then the
    // smallest by bisection over the integers.
    let mut lo = i64::try_from(sensitivity.linf.min(sensitivity.l1)).unwrap_or(i64::MAX);
    let threshold = if delta_fits(lo)? {
        lo
    } else {
        let mut step: i64 = 1;
        let mut hi = loop {
            let candidate = lo.saturating_add(step);
            if delta_fits(candidate)? {
                break candidate;
            }
            if candidate == i64::MAX {
                return Err(DpError::BudgetTooSmall(format!(
                    "delta {} is too small for any threshold at this scale; raise delta",
                    budget.delta
                )));
            }
            lo = candidate;
            step = step.saturating_mul(2);
        };
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if delta_fits(mid)? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    };
    let cost = threshold_cost(&threshold_measurement(scale, threshold)?, sensitivity)?;
    check_within(cost, budget)?;
    Ok(SparsePreview {
        scale,
        threshold,
        half_width_95: half_width_at(Mechanism::Laplace, scale)?,
        cost,
    })
}

/// The scale, threshold, half-width and cost of a sparse release at `budget`, without drawing
/// any noise. [`release_sparse`] with the same arguments charges exactly this cost.
pub fn preview_sparse(sensitivity: &Sensitivity, budget: Cost) -> Result<SparsePreview> {
    calibrate_sparse(sensitivity, budget)
}

/// Release counts over keys too many to enumerate (say citizenship by country of
/// exploitation): each count gets discrete Laplace noise and only keys whose noisy count reaches
/// the threshold are released (OpenDP's `make_laplace_threshold`). Epsilon pays for the noise;
/// delta pays for the chance that a key present because of one person crosses the threshold.
/// The scale fits `budget.epsilon` and the threshold is the smallest whose delta fits
/// `budget.delta`. Keys with a zero count should simply be absent. An empty input with a zero
/// sensitivity releases nothing and costs nothing.
pub fn release_sparse(
    counts: Vec<(String, i64)>,
    sensitivity: &Sensitivity,
    budget: Cost,
) -> Result<SparseRelease> {
    if counts.is_empty() && sensitivity.is_zero() {
        check_epsilon(budget.epsilon)?;
        check_positive_delta(budget.delta, "a sparse release")?;
        return Ok(SparseRelease {
            counts: Vec::new(),
            threshold: 0,
            scale: 0.0,
            half_width_95: 0.0,
            cost: Cost {
                epsilon: 0.0,
                delta: 0.0,
            },
        });
    }
    let plan = calibrate_sparse(sensitivity, budget)?;
    let mut input = HashMap::with_capacity(counts.len());
    for (index, (key, count)) in counts.into_iter().enumerate() {
        if input.insert(key, count).is_some() {
            return Err(DpError::DuplicateKey { index });
        }
    }
    let measurement = threshold_measurement(plan.scale, plan.threshold)?;
    let cost = threshold_cost(&measurement, sensitivity)?;
    check_within(cost, budget)?;
    if cost != plan.cost {
        return Err(DpError::Internal(format!(
            "the release would cost {cost:?}, not the calibrated {:?}",
            plan.cost
        )));
    }
    let mut released: Vec<(String, i64)> = measurement
        .invoke(&input)
        .map_err(opendp("sampling noise"))?
        .into_iter()
        .collect();
    released.sort_unstable();
    Ok(SparseRelease {
        counts: released,
        threshold: plan.threshold,
        scale: plan.scale,
        half_width_95: plan.half_width_95,
        cost,
    })
}
