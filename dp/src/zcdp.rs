//! Zero-concentrated DP: the unit the ledger composes in, its conversion to (epsilon, delta), and
//! the discrete Gaussian calibrated to a rho.
//!
//! A charge is a [`Loss`]: a rho (zCDP, from the discrete Gaussian), plus an (epsilon, delta) part
//! for what cannot be expressed in rho (the threshold mechanism), where an (epsilon, 0) part is
//! pure DP (discrete Laplace). Charges compose as
//! - rho values add (zCDP composition, Bun and Steinke 2016, Lemma 2.3);
//! - (epsilon, delta) parts add (basic composition);
//! - a pure epsilon may instead join the rho total as `epsilon^2 / 2` (pure DP implies zCDP, same
//!   paper, Proposition 1.4);
//! - the rho total is converted to (epsilon, delta') once, by OpenDP's conversion (Canonne,
//!   Kamath and Steinke 2020), at the delta the budget leaves after the approximate parts.
//!
//! [`composed_epsilon`] is the epsilon of the best of these valid compositions that this module
//! tries (module docs of the function), and is what every budget check uses.

use opendp::combinators::ConcentratedMeasure;
use opendp::measurements::make_gaussian;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::metrics::L2Distance;
use serde::{Deserialize, Serialize};

use crate::calibrate::{Calibrations, calibration_key, smallest_scale};
use crate::counts::{Counts, check_accuracy, priced_for_accuracy};
use crate::interval::half_width_at;
use crate::{Cost, DpError, MAX_SCALE, Mechanism, Result, Sensitivity, opendp};

/// The privacy loss of one charge, in the terms it composes in (module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Loss {
    /// zCDP rho (discrete Gaussian noise).
    #[serde(default)]
    pub rho: f64,
    /// The epsilon of the (epsilon, delta) part; pure DP when `delta` is 0.
    #[serde(default)]
    pub epsilon: f64,
    /// The delta of the (epsilon, delta) part: what cannot be expressed in rho.
    #[serde(default)]
    pub delta: f64,
}

impl Loss {
    pub const ZERO: Loss = Loss {
        rho: 0.0,
        epsilon: 0.0,
        delta: 0.0,
    };

    pub fn rho(rho: f64) -> Loss {
        Loss { rho, ..Loss::ZERO }
    }

    /// An (epsilon, delta) loss; pure DP when `delta` is 0.
    pub fn approx(cost: Cost) -> Loss {
        Loss {
            rho: 0.0,
            epsilon: cost.epsilon,
            delta: cost.delta,
        }
    }

    /// Finite and non-negative in every part.
    pub fn is_valid(&self) -> bool {
        [self.rho, self.epsilon, self.delta]
            .iter()
            .all(|x| x.is_finite() && *x >= 0.0)
    }
}

/// The epsilon at `delta` of a rho alone: OpenDP's zCDP-to-approximate-DP conversion (rounded
/// up: OpenDP's search returns an epsilon whose delta is at most `delta`). Zero rho is zero.
pub fn epsilon_of_rho(rho: f64, delta: f64) -> Result<f64> {
    if !(rho.is_finite() && rho >= 0.0) {
        return Err(DpError::InvalidBudget(format!(
            "rho must be finite and at least 0 (got {rho})"
        )));
    }
    if rho == 0.0 {
        return Ok(0.0);
    }
    if !(delta > 0.0 && delta < 1.0) {
        return Ok(f64::INFINITY);
    }
    <ZeroConcentratedDivergence as ConcentratedMeasure>::convert(rho)
        .and_then(|profile| profile.epsilon(delta))
        .map_err(opendp("converting rho to (epsilon, delta)"))
}

/// The largest rho (to 1e-12 relative) whose conversion at `delta` is at most `epsilon`: what a
/// budget given as (epsilon, delta) allows a zCDP measurement to spend.
pub fn rho_for(epsilon: f64, delta: f64) -> Result<f64> {
    crate::check_epsilon(epsilon)?;
    crate::check_positive_delta(delta, "a zCDP budget")?;
    // epsilon(rho) >= rho, and epsilon(rho) = rho + 2 sqrt(rho ln(1/delta)) is an upper bound
    // (Bun and Steinke), so the answer lies between the two bounds' inverses.
    let l = (1.0 / delta).ln();
    let mut low = (l.sqrt() - (l + epsilon).sqrt()).powi(2).min(epsilon) * (1.0 - 1e-9);
    let mut high = epsilon;
    if epsilon_of_rho(low, delta)? > epsilon {
        low = 0.0;
    }
    while high - low > high * 1e-12 {
        let mid = low + (high - low) / 2.0;
        if mid <= low || mid >= high {
            break;
        }
        if epsilon_of_rho(mid, delta)? <= epsilon {
            low = mid;
        } else {
            high = mid;
        }
    }
    Ok(low)
}

/// The most prefixes [`composed_epsilon`] and [`fits`] try: a long history of pure charges is
/// sampled at evenly spaced prefix lengths (every choice is a valid composition, so trying fewer
/// can only leave a little budget unused).
pub const MAX_PREFIXES: usize = 33;

/// The prefix lengths tried: all of `0..=n` up to [`MAX_PREFIXES`], else evenly spaced.
fn prefixes(n: usize) -> Vec<usize> {
    if n < MAX_PREFIXES {
        return (0..=n).collect();
    }
    let steps = MAX_PREFIXES - 1;
    let mut js: Vec<usize> = (0..=steps).map(|i| (i * n).div_ceil(steps)).collect();
    js.dedup();
    js
}

/// The compositions [`composed_epsilon`] chooses from: for each prefix length `j` of the pure
/// charges sorted ascending, (epsilon added outside rho, rho total).
fn compositions(rho: f64, approx_epsilon: f64, pure: &[f64]) -> Vec<(f64, f64)> {
    let mut pure = pure.to_vec();
    pure.sort_by(f64::total_cmp);
    let total: f64 = pure.iter().sum();
    let mut out = Vec::new();
    let (mut moved_eps, mut moved_rho, mut at) = (0.0, 0.0, 0);
    for j in prefixes(pure.len()) {
        while at < j {
            moved_eps += pure[at];
            moved_rho += pure[at] * pure[at] / 2.0;
            at += 1;
        }
        out.push((
            approx_epsilon + (total - moved_eps).max(0.0),
            rho + moved_rho,
        ));
    }
    out
}

/// The epsilon, at `delta` overall, of charges totalling `rho` of zCDP, `approx_epsilon` and
/// `approx_delta` of approximate DP, and the pure epsilons `pure` (any order): the smallest over
/// the compositions that move the `j` smallest pure charges into the rho total (`j` from 0 to
/// `pure.len()`, sampled as [`prefixes`] says), each valid (module docs). `None` when the delta
/// left for converting a positive rho is not positive, or the approximate deltas alone exceed
/// `delta`.
pub fn composed_epsilon(
    rho: f64,
    approx_epsilon: f64,
    approx_delta: f64,
    pure: &[f64],
    delta: f64,
) -> Result<Option<f64>> {
    if approx_delta > delta {
        return Ok(None);
    }
    let convert_at = delta - approx_delta;
    let mut best: Option<f64> = None;
    for (outside, total_rho) in compositions(rho, approx_epsilon, pure) {
        if total_rho > 0.0 && convert_at <= 0.0 {
            continue;
        }
        let epsilon = outside + epsilon_of_rho(total_rho, convert_at)?;
        if best.is_none_or(|b| epsilon < b) {
            best = Some(epsilon);
        }
    }
    Ok(best)
}

/// Whether charges as in [`composed_epsilon`] stay within (`epsilon`, `delta`): some composition
/// has an epsilon of at most `epsilon` at `delta`. Checked through OpenDP's privacy profile in
/// the direction it is computed (the delta at an epsilon), so the check is exact and fast.
pub fn fits(
    rho: f64,
    approx_epsilon: f64,
    approx_delta: f64,
    pure: &[f64],
    (epsilon, delta): (f64, f64),
) -> Result<bool> {
    if approx_delta > delta {
        return Ok(false);
    }
    let convert_at = delta - approx_delta;
    for (outside, total_rho) in compositions(rho, approx_epsilon, pure) {
        if outside > epsilon {
            continue;
        }
        if total_rho == 0.0 {
            return Ok(true);
        }
        if convert_at <= 0.0 {
            continue;
        }
        let profile = <ZeroConcentratedDivergence as ConcentratedMeasure>::convert(total_rho)
            .map_err(opendp("converting rho to (epsilon, delta)"))?;
        let needed = profile
            .delta(epsilon - outside)
            .map_err(opendp("evaluating a privacy profile"))?;
        if needed <= convert_at {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The noise scale, 95% half-width and rho of a discrete Gaussian release at a rho budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GaussianPreview {
    /// sigma.
    pub scale: f64,
    /// `P(|noise| <= half_width_95) >= 0.95` for each cell.
    pub half_width_95: f64,
    /// What the release charges: OpenDP's zCDP map at the sensitivity, at most the budget.
    pub rho: f64,
}

type ZMeasurement =
    opendp::core::Measurement<Counts, L2Distance<f64>, ZeroConcentratedDivergence, Vec<i64>>;

fn gaussian(scale: f64) -> Result<ZMeasurement> {
    let domain = opendp::domains::VectorDomain::new(opendp::domains::AtomDomain::<i64>::default());
    make_gaussian::<_, _, ZeroConcentratedDivergence>(
        domain,
        L2Distance::<f64>::default(),
        scale,
        None,
    )
    .map_err(opendp("building the discrete Gaussian"))
}

fn rho_at(m: &ZMeasurement, sensitivity: &Sensitivity) -> Result<f64> {
    m.map(&sensitivity.l2())
        .map_err(opendp("evaluating the zCDP map"))
}

/// The rho of a discrete Gaussian of noise scale `scale` (sigma) at `sensitivity`: OpenDP's zCDP
/// map of that measurement. For re-deriving what an already-released Gaussian answer cost in
/// zCDP terms (the ledger's migration from (epsilon, delta) charges), from its stored scale.
pub fn rho_of_gaussian(scale: f64, sensitivity: &Sensitivity) -> Result<f64> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(DpError::InvalidBudget(format!(
            "a Gaussian noise scale is positive and finite (got {scale})"
        )));
    }
    sensitivity.check()?;
    rho_at(&gaussian(scale)?, sensitivity)
}

static GAUSSIAN_CALIBRATIONS: Calibrations<GaussianPreview> = Calibrations::new();

/// The smallest sigma (to a few parts in 10^9) whose zCDP map at `sensitivity` is at most
/// `rho`, without drawing noise. [`release_gaussian`] uses exactly this sigma.
pub fn preview_gaussian(sensitivity: &Sensitivity, rho: f64) -> Result<GaussianPreview> {
    if !(rho.is_finite() && rho > 0.0) {
        return Err(DpError::InvalidBudget(format!(
            "rho must be positive and finite (got {rho})"
        )));
    }
    sensitivity.check()?;
    let key = calibration_key(
        sensitivity,
        Some(Mechanism::Gaussian),
        Cost {
            epsilon: rho,
            delta: -1.0,
        },
    );
    GAUSSIAN_CALIBRATIONS.get_or(key, || {
        let start = sensitivity.l2() / (2.0 * rho).sqrt();
        let Some(scale) = smallest_scale(start, rho, |s| rho_at(&gaussian(s)?, sensitivity))?
        else {
            return Err(DpError::BudgetTooSmall(format!(
                "rho {rho} needs a noise scale above {MAX_SCALE} at this sensitivity"
            )));
        };
        let spent = rho_at(&gaussian(scale)?, sensitivity)?;
        if spent > rho {
            return Err(DpError::Internal(format!(
                "the calibrated rho {spent} exceeds the budget {rho}"
            )));
        }
        Ok(GaussianPreview {
            scale,
            half_width_95: half_width_at(Mechanism::Gaussian, scale)?,
            rho: spent,
        })
    })
}

/// The smallest rho (to a few parts in 10^9) whose discrete Gaussian at `sensitivity` has a 95%
/// half-width of at most `half_width_95`: the largest sigma meeting the target (OpenDP's
/// `accuracy_to_discrete_gaussian_scale`), priced by OpenDP's zCDP map. [`preview_gaussian`] of
/// the returned rho meets the target. A target met even at [`MAX_SCALE`] gets the rho at that
/// scale.
pub fn rho_for_accuracy(sensitivity: &Sensitivity, half_width_95: f64) -> Result<f64> {
    check_accuracy(sensitivity, half_width_95)?;
    priced_for_accuracy(Mechanism::Gaussian, half_width_95, |scale| {
        let rho = rho_at(&gaussian(scale)?, sensitivity)?;
        let met = preview_gaussian(sensitivity, rho)?.half_width_95 <= half_width_95;
        Ok(met.then_some(rho))
    })
}

/// Counts released with discrete Gaussian noise at a rho budget. Only this crate makes one.
#[derive(Debug, Clone)]
pub struct GaussianRelease {
    values: Vec<i64>,
    preview: GaussianPreview,
}

impl GaussianRelease {
    pub fn released(&self) -> crate::Released<Vec<i64>> {
        crate::Released::new(self.values.clone())
    }
    pub fn preview(&self) -> GaussianPreview {
        self.preview
    }
}

/// Release `true_values` with discrete Gaussian noise of the sigma [`preview_gaussian`] gives,
/// checking the charge against OpenDP's map once more.
pub fn release_gaussian(
    true_values: &[i64],
    sensitivity: &Sensitivity,
    rho: f64,
) -> Result<GaussianRelease> {
    let preview = preview_gaussian(sensitivity, rho)?;
    let m = gaussian(preview.scale)?;
    let spent = rho_at(&m, sensitivity)?;
    if spent != preview.rho || spent > rho {
        return Err(DpError::Internal(format!(
            "the release would spend rho {spent}, not the calibrated {}",
            preview.rho
        )));
    }
    let values = m
        .invoke(&true_values.to_vec())
        .map_err(opendp("sampling noise"))?;
    Ok(GaussianRelease { values, preview })
}
