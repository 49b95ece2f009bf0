//! Releases of counts: discrete Laplace (pure DP) or discrete Gaussian (zCDP converted to
//! approximate DP at the budget's delta), their deterministic previews, and the budget that meets
//! an accuracy target.

use opendp::accuracy::{accuracy_to_discrete_gaussian_scale, accuracy_to_discrete_laplacian_scale};
use opendp::combinators::{make_fix_delta, make_zCDP_to_approxDP};
use opendp::core::Measurement;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::{make_gaussian, make_laplace};
use opendp::measures::{Approximate, MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{L1Distance, L2Distance};
use serde::Serialize;

use crate::calibrate::{Calibrations, calibration_key, smallest_scale};
use crate::interval::half_width_at;
use crate::{
    ALPHA, Cost, DpError, MAX_SCALE, Mechanism, Result, SCALE_PRECISION, Sensitivity, check_budget,
    check_positive_delta, check_within, opendp,
};

/// What a release of counts would look like, computed without drawing any noise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Preview {
    pub mechanism: Mechanism,
    /// The noise scale (Laplace: `b`; Gaussian: `sigma`).
    pub scale: f64,
    /// `P(|noise| <= half_width_95) >= 0.95` for each cell.
    pub half_width_95: f64,
    /// What the release will charge, from OpenDP's privacy map.
    pub cost: Cost,
}

/// A vector of counts released with noise. Only this crate can build one.
#[derive(Debug, Clone, Serialize)]
pub struct Release {
    pub(crate) values: Vec<i64>,
    mechanism: Mechanism,
    scale: f64,
    half_width_95: f64,
    cost: Cost,
}

impl Release {
    /// The noisy counts, in the order of the true values.
    pub fn values(&self) -> &[i64] {
        &self.values
    }
    /// The noisy counts as a [`Released`](crate::Released) value, to post-process.
    pub fn released(&self) -> crate::Released<Vec<i64>> {
        crate::Released::new(self.values.clone())
    }
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }
    /// The noise scale that was used.
    pub fn scale(&self) -> f64 {
        self.scale
    }
    /// `P(|noise| <= half_width_95) >= 0.95` for each cell.
    pub fn half_width_95(&self) -> f64 {
        self.half_width_95
    }
    /// The privacy loss charged, from OpenDP's privacy map; never more than the budget.
    pub fn cost(&self) -> Cost {
        self.cost
    }
}

pub(crate) type Counts = VectorDomain<AtomDomain<i64>>;

/// A noise measurement over a vector of counts, built by OpenDP at one scale.
pub(crate) enum CountsMeasurement {
    Laplace(Measurement<Counts, L1Distance<i64>, MaxDivergence, Vec<i64>>),
    Gaussian(Measurement<Counts, L2Distance<f64>, Approximate<MaxDivergence>, Vec<i64>>),
}

impl CountsMeasurement {
    /// `delta` is where the Gaussian's privacy profile is fixed; Laplace ignores it.
    pub(crate) fn build(mechanism: Mechanism, scale: f64, delta: f64) -> Result<CountsMeasurement> {
        let domain = VectorDomain::new(AtomDomain::<i64>::default());
        match mechanism {
            Mechanism::Laplace => make_laplace(domain, L1Distance::<i64>::default(), scale, None)
                .map(CountsMeasurement::Laplace),
            Mechanism::Gaussian => make_gaussian::<_, _, ZeroConcentratedDivergence>(
                domain,
                L2Distance::<f64>::default(),
                scale,
                None,
            )
            .and_then(make_zCDP_to_approxDP)
            .and_then(|approx| make_fix_delta(&approx, delta))
            .map(CountsMeasurement::Gaussian),
        }
        .map_err(opendp("building the noise measurement"))
    }

    /// The privacy loss at `sensitivity`, from the measurement's privacy map.
    pub(crate) fn cost(&self, sensitivity: &Sensitivity) -> Result<Cost> {
        match self {
            CountsMeasurement::Laplace(m) => {
                // `check` bounds l1 by 2^26, so it fits.
                let l1 = i64::try_from(sensitivity.l1_bound()).unwrap_or(i64::MAX);
                m.map(&l1).map(|epsilon| Cost {
                    epsilon,
                    delta: 0.0,
                })
            }
            CountsMeasurement::Gaussian(m) => m
                .map(&sensitivity.l2())
                .map(|(epsilon, delta)| Cost { epsilon, delta }),
        }
        .map_err(opendp("evaluating the privacy map"))
    }

    pub(crate) fn invoke(&self, values: &Vec<i64>) -> Result<Vec<i64>> {
        match self {
            CountsMeasurement::Laplace(m) => m.invoke(values),
            CountsMeasurement::Gaussian(m) => m.invoke(values),
        }
        .map_err(opendp("sampling noise"))
    }
}

static COUNT_CALIBRATIONS: Calibrations<Preview> = Calibrations::new();

fn calibrate(sensitivity: &Sensitivity, mechanism: Mechanism, budget: Cost) -> Result<Preview> {
    COUNT_CALIBRATIONS.get_or(
        calibration_key(sensitivity, Some(mechanism), budget),
        || search_calibration(sensitivity, mechanism, budget),
    )
}

fn search_calibration(
    sensitivity: &Sensitivity,
    mechanism: Mechanism,
    budget: Cost,
) -> Result<Preview> {
    check_budget(mechanism, budget)?;
    sensitivity.check()?;
    let start = match mechanism {
        Mechanism::Laplace => sensitivity.l1_bound() as f64 / budget.epsilon,
        // The classical Gaussian calibration: only a starting point for the search.
        Mechanism::Gaussian => {
            sensitivity.l2() * (2.0 * (1.25 / budget.delta).ln()).sqrt() / budget.epsilon
        }
    };
    let epsilon_at = |scale: f64| -> Result<f64> {
        let cost = CountsMeasurement::build(mechanism, scale, budget.delta)?.cost(sensitivity)?;
        Ok(cost.epsilon)
    };
    let Some(scale) = smallest_scale(start, budget.epsilon, epsilon_at)? else {
        return Err(DpError::BudgetTooSmall(format!(
            "epsilon {} needs a noise scale above {MAX_SCALE} at this sensitivity; \
             raise epsilon or bound each person's contribution more tightly",
            budget.epsilon
        )));
    };
    let cost = CountsMeasurement::build(mechanism, scale, budget.delta)?.cost(sensitivity)?;
    check_within(cost, budget)?;
    Ok(Preview {
        mechanism,
        scale,
        half_width_95: half_width_at(mechanism, scale)?,
        cost,
    })
}

/// The noise scale, 95% half-width and cost of a release of counts at `budget`, without drawing
/// any noise. [`release_counts`] with the same arguments uses exactly this scale and charges
/// exactly this cost.
pub fn preview(sensitivity: &Sensitivity, mechanism: Mechanism, budget: Cost) -> Result<Preview> {
    calibrate(sensitivity, mechanism, budget)
}

/// Release `true_values` with noise calibrated to `budget`: the smallest noise whose privacy
/// loss at `sensitivity`, by OpenDP's map, is within the budget. An empty vector with a zero
/// sensitivity releases nothing and costs nothing.
pub fn release_counts(
    true_values: &[i64],
    sensitivity: &Sensitivity,
    mechanism: Mechanism,
    budget: Cost,
) -> Result<Release> {
    if true_values.is_empty() && sensitivity.is_zero() {
        check_budget(mechanism, budget)?;
        return Ok(Release {
            values: Vec::new(),
            mechanism,
            scale: 0.0,
            half_width_95: 0.0,
            cost: Cost {
                epsilon: 0.0,
                delta: 0.0,
            },
        });
    }
    let plan = calibrate(sensitivity, mechanism, budget)?;
    let measurement = CountsMeasurement::build(mechanism, plan.scale, budget.delta)?;
    let cost = measurement.cost(sensitivity)?;
    check_within(cost, budget)?;
    if cost != plan.cost {
        return Err(DpError::Internal(format!(
            "the release would cost {cost:?}, not the calibrated {:?}",
            plan.cost
        )));
    }
    let values = measurement.invoke(&true_values.to_vec())?;
    Ok(Release {
        values,
        mechanism,
        scale: plan.scale,
        half_width_95: plan.half_width_95,
        cost,
    })
}

/// The smallest budget (to a few parts in 10^9) whose 95% half-width is at most
/// `half_width_95`: the largest noise scale meeting the target (from OpenDP's `accuracy_to_*`
/// functions), priced by the privacy map.
/// `delta` is where the Gaussian mechanism is evaluated; Laplace ignores it and charges none.
/// `preview` of the returned budget has a half-width of at most `half_width_95`. A target met
/// even at [`MAX_SCALE`] gets the budget at that scale: a smaller one would be refused.
pub fn budget_for_accuracy(
    sensitivity: &Sensitivity,
    mechanism: Mechanism,
    half_width_95: f64,
    delta: f64,
) -> Result<Cost> {
    check_accuracy(sensitivity, half_width_95)?;
    let delta = match mechanism {
        Mechanism::Laplace => 0.0,
        Mechanism::Gaussian => {
            check_positive_delta(delta, "the Gaussian mechanism")?;
            delta
        }
    };
    priced_for_accuracy(mechanism, half_width_95, |scale| {
        let cost = CountsMeasurement::build(mechanism, scale, delta)?.cost(sensitivity)?;
        let met = preview(sensitivity, mechanism, cost)?.half_width_95 <= half_width_95;
        Ok(met.then_some(cost))
    })
}

/// An accuracy target is a finite half-width of at least 0, at a valid sensitivity.
pub(crate) fn check_accuracy(sensitivity: &Sensitivity, half_width_95: f64) -> Result<()> {
    if !(half_width_95.is_finite() && half_width_95 >= 0.0) {
        return Err(DpError::InvalidAccuracy(format!(
            "the 95% half-width must be a finite number of at least 0 (got {half_width_95})"
        )));
    }
    sensitivity.check()
}

/// The price of the largest noise scale whose 95% half-width is at most `half_width_95` (checked
/// by [`check_accuracy`]), for [`budget_for_accuracy`] and [`crate::zcdp::rho_for_accuracy`].
/// `price(scale)` prices a scale and says whether the calibration of that price still meets the
/// target (`None`: it does not).
pub(crate) fn priced_for_accuracy<T>(
    mechanism: Mechanism,
    half_width_95: f64,
    price: impl Fn(f64) -> Result<Option<T>>,
) -> Result<T> {
    // Noise is whole: a half-width of at most `x` means OpenDP's accuracy (a strict bound) of at
    // most `floor(x) + 1`.
    let accuracy = half_width_95.floor() + 1.0;
    // Any discrete Laplace or Gaussian scale has an accuracy of at most `3 * scale + 1`, so a
    // target this wide is met at MAX_SCALE, the most noise a release accepts (and OpenDP's
    // Gaussian search, linear in the target, is not needed).
    let opendp_scale = if accuracy - 1.0 > 3.0 * MAX_SCALE {
        MAX_SCALE
    } else {
        match mechanism {
            Mechanism::Laplace => accuracy_to_discrete_laplacian_scale(accuracy, ALPHA),
            Mechanism::Gaussian => accuracy_to_discrete_gaussian_scale(accuracy, ALPHA),
        }
        .map_err(opendp("converting the accuracy to a scale"))?
        .min(MAX_SCALE)
    };
    // OpenDP's search returns the scale just at the boundary where the half-width steps up, on
    // either side of it. Step down from it by more than the calibration precision, so that the
    // scale calibrated for the price (at most SCALE_PRECISION above the smallest that fits it)
    // is still below the boundary; step further if OpenDP's functions disagree there.
    let mut step = 4.0 * SCALE_PRECISION;
    loop {
        let scale = opendp_scale * (1.0 - step);
        if half_width_at(mechanism, scale)? <= half_width_95
            && let Some(priced) = price(scale)?
        {
            return Ok(priced);
        }
        step *= 16.0;
        if step >= 0.5 {
            return Err(DpError::Internal(format!(
                "no scale near {opendp_scale} meets a 95% half-width of {half_width_95}"
            )));
        }
    }
}
