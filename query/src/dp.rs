//! Differential privacy: calibrate, draw and account for the noise on every released number.
//! This is the only module of the project that names `opendp`.
//!
//! Architecture invariants:
//! - **Noise comes only from OpenDP's samplers** (discrete Laplace, discrete Gaussian), which draw
//!   from OpenDP's secure random source (`use-openssl`, a default feature kept on in
//!   `query/Cargo.toml`). No seed, no `rand`, no noise formula of ours.
//! - **The cost is what OpenDP's privacy map says**: the privacy loss charged for a release is the
//!   map, at the declared [`Sensitivity`], of the very measurement that drew the noise. It never
//!   exceeds the budget asked for; a budget that cannot be honoured is refused, not weakened.
//! - **Only this module can build a [`Release`] or a [`SparseRelease`]** (private fields, no
//!   constructor, no `Default`, no `Deserialize`), so every number the service returns went
//!   through a DP measurement.
//! - **Intervals are per cell at 95%**: `half_width_95` is the smallest whole number `h` with
//!   `P(|noise| <= h) >= 0.95` for one cell, taken from OpenDP's accuracy functions. It is not a
//!   simultaneous interval over all cells.
//! - **Calibration is deterministic**: [`preview`] and [`preview_sparse`] draw no noise and say
//!   exactly what [`release_counts`] and [`release_sparse`] will charge for the same inputs, so the
//!   ledger can be charged before the answer is computed (write-ahead).
//!
//! Neighbouring datasets differ by all the records of one person (DESIGN.md section 5). After
//! contribution bounding, the [`Sensitivity`] says how far that person can move the vector of
//! counts. Every function here is plain and synchronous: OpenDP measurements are not `Send`, so
//! the async caller runs these inside `tokio::task::spawn_blocking`.

use std::collections::HashMap;

use opendp::accuracy::{
    accuracy_to_discrete_gaussian_scale, accuracy_to_discrete_laplacian_scale,
    discrete_gaussian_scale_to_accuracy, discrete_laplacian_scale_to_accuracy,
};
use opendp::combinators::{make_fix_delta, make_zCDP_to_approxDP};
use opendp::core::Measurement;
use opendp::domains::{AtomDomain, MapDomain, VectorDomain};
use opendp::measurements::{make_gaussian, make_laplace, make_laplace_threshold};
use opendp::measures::{Approximate, MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{AbsoluteDistance, L1Distance, L01InfDistance, L2Distance};
use serde::{Deserialize, Serialize};

/// The privacy cost of one release, the same type the ledger charges.
pub use crate::ledger::Cost;

/// Significance level of every interval: 95% coverage.
const ALPHA: f64 = 0.05;

/// The largest noise scale this module calibrates. Counts of people with a noise scale above
/// this carry no information; refusing keeps the caller's budget for a useful question.
pub const MAX_SCALE: f64 = 1e5;

/// Relative precision of the noise calibration. The calibrated scale always fits the budget; it
/// is at most this much (relatively) above the smallest scale that does, so the release may
/// leave about this fraction of epsilon unspent. (A Gaussian privacy map costs milliseconds, so
/// searching down to adjacent floats would slow every query for nothing.)
const SCALE_PRECISION: f64 = 1e-9;

/// The largest value accepted for each component of a [`Sensitivity`] (2^26). One person moving
/// a count by more than this is a bounding error, and the bound keeps the arithmetic exact.
pub const MAX_SENSITIVITY: u64 = 1 << 26;

/// What went wrong. Every variant but [`DpError::OpenDp`] and [`DpError::Internal`] is the
/// caller's to fix.
#[derive(Debug, thiserror::Error)]
pub enum DpError {
    /// The privacy budget cannot be used (epsilon or delta out of range).
    #[error("invalid budget: {0}")]
    InvalidBudget(String),
    /// The sensitivity is zero, inconsistent or too large.
    #[error("invalid sensitivity: {0}")]
    InvalidSensitivity(String),
    /// The requested 95% half-width is not a finite number of at least 0.
    #[error("invalid accuracy target: {0}")]
    InvalidAccuracy(String),
    /// The budget is valid but too small to calibrate a noise scale up to [`MAX_SCALE`].
    #[error("budget too small: {0}")]
    BudgetTooSmall(String),
    /// A key appears twice in the input of a sparse release. The key itself is not named: in a
    /// sparse domain, the presence of a key is private.
    #[error(
        "the key at index {index} repeats an earlier key; sum the counts of each key before releasing"
    )]
    DuplicateKey { index: usize },
    /// OpenDP refused or failed. OpenDP's `Display` shows only the variant, so its message is kept.
    #[error("OpenDP failed while {context}: {variant}: {message}")]
    OpenDp {
        context: &'static str,
        variant: String,
        message: String,
    },
    /// A consistency check of ours failed: nothing was released.
    #[error("internal DP error: {0}")]
    Internal(String),
}

impl DpError {
    /// A stable machine-readable code for the HTTP layer.
    pub fn code(&self) -> &'static str {
        match self {
            DpError::InvalidBudget(_) => "invalid_budget",
            DpError::InvalidSensitivity(_) => "invalid_sensitivity",
            DpError::InvalidAccuracy(_) => "invalid_accuracy",
            DpError::BudgetTooSmall(_) => "budget_too_small",
            DpError::DuplicateKey { .. } => "duplicate_key",
            DpError::OpenDp { .. } => "opendp",
            DpError::Internal(_) => "internal",
        }
    }

    /// True when the caller can fix the request (a 4xx); false for our own failures (a 5xx).
    pub fn is_caller_error(&self) -> bool {
        !matches!(self, DpError::OpenDp { .. } | DpError::Internal(_))
    }
}

pub type Result<T, E = DpError> = std::result::Result<T, E>;

/// Wrap an OpenDP error, keeping its message (its `Display` only names the variant).
fn opendp(context: &'static str) -> impl FnOnce(opendp::error::Error) -> DpError {
    move |e| DpError::OpenDp {
        context,
        variant: e.variant.to_string(),
        message: e.message.unwrap_or_default(),
    }
}

/// The noise mechanism of a release of counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// Discrete Laplace noise under pure epsilon-DP; the cost's delta is zero.
    Laplace,
    /// Discrete Gaussian noise under zero-concentrated DP, converted to (epsilon, delta)-DP at the
    /// budget's delta.
    Gaussian,
}

/// How far one person can move a vector of counts, after contribution bounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sensitivity {
    /// The number of cells one person can change.
    pub l0: u64,
    /// The total change one person can make, summed over cells.
    pub l1: u64,
    /// The change one person can make to a single cell.
    pub linf: u64,
}

impl Sensitivity {
    /// True when no person can change anything (all three bounds zero).
    pub fn is_zero(&self) -> bool {
        self.l0 == 0 && self.l1 == 0 && self.linf == 0
    }

    /// A conservative bound on the L2 distance one person can cause, the square root (rounded
    /// up) of the smallest of three valid bounds on its square, for a change vector `d`:
    /// `sum d_i^2 <= max|d_i| * sum|d_i| <= linf * l1`, `sum d_i^2 <= l0 * linf^2` (at most `l0`
    /// non-zero terms of at most `linf^2`), and `sum d_i^2 <= (sum |d_i|)^2 <= l1^2`.
    pub fn l2(&self) -> f64 {
        let (l0, l1, linf) = (
            u128::from(self.l0),
            u128::from(self.l1),
            u128::from(self.linf),
        );
        let squared = (l1 * linf).min(l0 * linf * linf).min(l1 * l1);
        sqrt_rounded_up(squared)
    }

    /// The L1 bound, tightened by `l0 * linf` (at most `l0` cells move by at most `linf`).
    fn l1_bound(&self) -> u64 {
        self.l1.min(self.l0.saturating_mul(self.linf))
    }

    /// Refuse a zero, partly zero or oversized sensitivity.
    fn check(&self) -> Result<()> {
        if self.l0 == 0 || self.l1 == 0 || self.linf == 0 {
            return Err(DpError::InvalidSensitivity(format!(
                "l0, l1 and linf must all be at least 1 (got l0 = {}, l1 = {}, linf = {}); \
                 a query no person can change has nothing to protect and needs no release",
                self.l0, self.l1, self.linf
            )));
        }
        for (name, value) in [("l0", self.l0), ("l1", self.l1), ("linf", self.linf)] {
            if value > MAX_SENSITIVITY {
                return Err(DpError::InvalidSensitivity(format!(
                    "{name} must be at most {MAX_SENSITIVITY} (got {value}); \
                     bound each person's contribution more tightly"
                )));
            }
        }
        Ok(())
    }
}

/// `sqrt(n)` rounded up to the next `f64`, exact for `n <= 2^53` (always the case for bounds of
/// at most [`MAX_SENSITIVITY`], whose squares are at most 2^52).
fn sqrt_rounded_up(n: u128) -> f64 {
    let n = n as f64;
    let mut root = n.sqrt();
    // `mul_add` rounds once, so the sign of `root * root - n` is exact.
    while root.mul_add(root, -n) < 0.0 {
        root = root.next_up();
    }
    root
}

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

/// A vector of counts released with noise. Only this module can build one.
#[derive(Debug, Clone, Serialize)]
pub struct Release {
    values: Vec<i64>,
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
/// Only this module can build one.
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

fn check_epsilon(epsilon: f64) -> Result<()> {
    if epsilon > 0.0 && epsilon.is_finite() {
        Ok(())
    } else {
        Err(DpError::InvalidBudget(format!(
            "epsilon must be positive and finite (got {epsilon})"
        )))
    }
}

/// Delta for a mechanism that needs one: Gaussian and the sparse threshold.
fn check_positive_delta(delta: f64, what: &str) -> Result<()> {
    if delta > 0.0 && delta < 1.0 {
        Ok(())
    } else {
        Err(DpError::InvalidBudget(format!(
            "delta must be above 0 and below 1 for {what} (got {delta}); \
             use a small positive delta such as 1e-9"
        )))
    }
}

/// Check a budget for a release of counts. Laplace ignores delta but still refuses nonsense.
fn check_budget(mechanism: Mechanism, budget: Cost) -> Result<()> {
    check_epsilon(budget.epsilon)?;
    match mechanism {
        Mechanism::Laplace if (0.0..1.0).contains(&budget.delta) => Ok(()),
        Mechanism::Laplace => Err(DpError::InvalidBudget(format!(
            "delta must be at least 0 and below 1 (got {}); the Laplace mechanism charges none",
            budget.delta
        ))),
        Mechanism::Gaussian => check_positive_delta(budget.delta, "the Gaussian mechanism"),
    }
}

/// The last guard before a cost is reported: never more than the budget.
fn check_within(cost: Cost, budget: Cost) -> Result<()> {
    if cost.epsilon <= budget.epsilon && cost.delta <= budget.delta {
        Ok(())
    } else {
        Err(DpError::Internal(format!(
            "the calibrated cost {cost:?} exceeds the budget {budget:?}"
        )))
    }
}

type Counts = VectorDomain<AtomDomain<i64>>;

/// A noise measurement over a vector of counts, built by OpenDP at one scale.
enum CountsMeasurement {
    Laplace(Measurement<Counts, L1Distance<i64>, MaxDivergence, Vec<i64>>),
    Gaussian(Measurement<Counts, L2Distance<f64>, Approximate<MaxDivergence>, Vec<i64>>),
}

impl CountsMeasurement {
    /// `delta` is where the Gaussian's privacy profile is fixed; Laplace ignores it.
    fn build(mechanism: Mechanism, scale: f64, delta: f64) -> Result<CountsMeasurement> {
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
    fn cost(&self, sensitivity: &Sensitivity) -> Result<Cost> {
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

    fn invoke(&self, values: &Vec<i64>) -> Result<Vec<i64>> {
        match self {
            CountsMeasurement::Laplace(m) => m.invoke(values),
            CountsMeasurement::Gaussian(m) => m.invoke(values),
        }
        .map_err(opendp("sampling noise"))
    }
}

/// The smallest scale in `(0, MAX_SCALE]` whose epsilon (by `epsilon_at`, decreasing in the
/// scale) is at most `budget_epsilon`, to a relative [`SCALE_PRECISION`]; `None` if even
/// [`MAX_SCALE`] overspends. Brackets from `start` by halving or doubling, then narrows the bracket
/// by regula falsi on `ln(epsilon / budget)` against `ln(scale)` (nearly linear), with the
/// Illinois correction and a bisection fallback. The bracket always keeps an overspending scale
/// below and a fitting one above, and the fitting one is returned, so the search can only ever
/// leave budget unspent, never overspend. (A Gaussian privacy map costs milliseconds: plain
/// bisection would take some 30 of them per query, this takes about 10.)
fn smallest_scale(
    start: f64,
    budget_epsilon: f64,
    mut epsilon_at: impl FnMut(f64) -> Result<f64>,
) -> Result<Option<f64>> {
    // > 0 overspends, <= 0 fits (NaN counts as overspending).
    let mut excess = |scale: f64| -> Result<f64> {
        let excess = (epsilon_at(scale)? / budget_epsilon).ln();
        Ok(if excess.is_nan() {
            f64::INFINITY
        } else {
            excess
        })
    };
    let start = if start.is_finite() && start > 0.0 {
        start.min(MAX_SCALE)
    } else {
        MAX_SCALE
    };
    // (scale, excess) at the low (overspending) and high (fitting) ends of the bracket.
    let mut high = (start, excess(start)?);
    let mut low;
    if high.1 <= 0.0 {
        loop {
            let scale = high.0 / 2.0;
            if scale == 0.0 {
                return Ok(Some(high.0));
            }
            let e = excess(scale)?;
            if e > 0.0 {
                low = (scale, e);
                break;
            }
            high = (scale, e);
        }
    } else {
        loop {
            if high.0 >= MAX_SCALE {
                return Ok(None);
            }
            low = high;
            let scale = (high.0 * 2.0).min(MAX_SCALE);
            high = (scale, excess(scale)?);
            if high.1 <= 0.0 {
                break;
            }
        }
    }
    let mut kept_side = 0;
    // Regula falsi converges in a handful of rounds; the cap only bounds a pathological map.
    for _ in 0..100 {
        if high.0 - low.0 <= high.0 * SCALE_PRECISION {
            break;
        }
        let (x_low, x_high) = (low.0.ln(), high.0.ln());
        let mut scale = (x_high - high.1 * (x_high - x_low) / (high.1 - low.1)).exp();
        if !(scale > low.0 && scale < high.0) {
            scale = low.0 + (high.0 - low.0) / 2.0;
            if !(scale > low.0 && scale < high.0) {
                break;
            }
        }
        let e = excess(scale)?;
        if e <= 0.0 {
            high = (scale, e);
            if kept_side == -1 {
                low.1 /= 2.0;
            }
            kept_side = -1;
        } else {
            low = (scale, e);
            if kept_side == 1 {
                high.1 /= 2.0;
            }
            kept_side = 1;
        }
    }
    Ok(Some(high.0))
}

/// The smallest `h >= 0` with `P(|noise| <= h) >= 0.95`, from OpenDP's accuracy `a`, which
/// satisfies `P(|noise| >= a) <= 0.05`: for integer noise, `h = ceil(a) - 1`.
fn half_width_at(mechanism: Mechanism, scale: f64) -> Result<f64> {
    half_width(mechanism, scale, ALPHA)
}

/// The smallest whole `h` with `P(|noise| <= h) >= 1 - alpha` for one cell released at `scale`
/// (OpenDP's accuracy functions). The answers use it for intervals built from several noisy
/// parts: each part at `alpha / parts` gives the combination `1 - alpha` by the union bound.
pub fn half_width(mechanism: Mechanism, scale: f64, alpha: f64) -> Result<f64> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(DpError::Internal(format!(
            "a significance level is in (0, 1) (got {alpha})"
        )));
    }
    if scale == 0.0 {
        return Ok(0.0);
    }
    let accuracy = match mechanism {
        Mechanism::Laplace => discrete_laplacian_scale_to_accuracy(scale, alpha),
        Mechanism::Gaussian => discrete_gaussian_scale_to_accuracy(scale, alpha),
    }
    .map_err(opendp("computing a half-width"))?;
    if accuracy.is_nan() {
        return Err(DpError::Internal(format!(
            "OpenDP's accuracy is NaN at scale {scale}"
        )));
    }
    Ok((accuracy.ceil() - 1.0).max(0.0))
}

/// The smallest noise scale whose privacy loss at `sensitivity` fits in `budget`, and that loss.
/// Calibrations already searched for, by their exact inputs. Calibrating is deterministic but
/// builds OpenDP measurements dozens of times while it searches (about 1 ms for Laplace, far more
/// for the Gaussian and threshold mechanisms), and every query calibrates each part twice: when
/// it is priced and when it is released. Only the search is remembered: a release still builds
/// its measurement and checks its cost with OpenDP's map.
struct Calibrations<P> {
    found: std::sync::LazyLock<std::sync::Mutex<HashMap<CalibrationKey, P>>>,
}

/// `(l0, l1, linf, mechanism, epsilon bits, delta bits)`; `None` for the threshold mechanism.
type CalibrationKey = (u64, u64, u64, Option<Mechanism>, u64, u64);

/// Entries kept before the cache starts over (each is a few dozen bytes).
const CALIBRATIONS_KEPT: usize = 4096;

impl<P: Copy> Calibrations<P> {
    const fn new() -> Self {
        Calibrations {
            found: std::sync::LazyLock::new(Default::default),
        }
    }

    fn get_or(&self, key: CalibrationKey, search: impl FnOnce() -> Result<P>) -> Result<P> {
        let cached = self
            .found
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied();
        if let Some(found) = cached {
            return Ok(found);
        }
        let found = search()?;
        let mut map = self.found.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CALIBRATIONS_KEPT {
            map.clear();
        }
        map.insert(key, found);
        Ok(found)
    }
}

fn calibration_key(s: &Sensitivity, mechanism: Option<Mechanism>, budget: Cost) -> CalibrationKey {
    (
        s.l0,
        s.l1,
        s.linf,
        mechanism,
        budget.epsilon.to_bits(),
        budget.delta.to_bits(),
    )
}

static COUNT_CALIBRATIONS: Calibrations<Preview> = Calibrations::new();
static SPARSE_CALIBRATIONS: Calibrations<SparsePreview> = Calibrations::new();

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
    if !(half_width_95.is_finite() && half_width_95 >= 0.0) {
        return Err(DpError::InvalidAccuracy(format!(
            "the 95% half-width must be a finite number of at least 0 (got {half_width_95})"
        )));
    }
    sensitivity.check()?;
    let delta = match mechanism {
        Mechanism::Laplace => 0.0,
        Mechanism::Gaussian => {
            check_positive_delta(delta, "the Gaussian mechanism")?;
            delta
        }
    };
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
    // scale `preview` calibrates for the budget (at most SCALE_PRECISION above the smallest that
    // fits it) is still below the boundary; step further if OpenDP's functions disagree there.
    let mut step = 4.0 * SCALE_PRECISION;
    loop {
        let scale = opendp_scale * (1.0 - step);
        if half_width_at(mechanism, scale)? <= half_width_95 {
            let cost = CountsMeasurement::build(mechanism, scale, delta)?.cost(sensitivity)?;
            if preview(sensitivity, mechanism, cost)?.half_width_95 <= half_width_95 {
                return Ok(cost);
            }
        }
        step *= 16.0;
        if step >= 0.5 {
            return Err(DpError::Internal(format!(
                "no scale near {opendp_scale} meets a 95% half-width of {half_width_95}"
            )));
        }
    }
}

type KeyCounts = MapDomain<AtomDomain<String>, AtomDomain<i64>>;
type ThresholdMeasurement = Measurement<
    KeyCounts,
    L01InfDistance<AbsoluteDistance<i64>>,
    Approximate<MaxDivergence>,
    HashMap<String, i64>,
>;

fn threshold_measurement(scale: f64, threshold: i64) -> Result<ThresholdMeasurement> {
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
fn threshold_cost(m: &ThresholdMeasurement, sensitivity: &Sensitivity) -> Result<Cost> {
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
fn calibrate_sparse(sensitivity: &Sensitivity, budget: Cost) -> Result<SparsePreview> {
    SPARSE_CALIBRATIONS.get_or(calibration_key(sensitivity, None, budget), || {
        search_sparse_calibration(sensitivity, budget)
    })
}

fn search_sparse_calibration(sensitivity: &Sensitivity, budget: Cost) -> Result<SparsePreview> {
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

#[cfg(test)]
/// Exact probability mass of OpenDP's noise at `x` (DESIGN: test noise by its distribution).
pub(crate) fn pmf(mechanism: Mechanism, scale: f64, x: i64) -> f64 {
    match mechanism {
        Mechanism::Laplace => {
            let q = (-1.0 / scale).exp();
            (1.0 - q) / (1.0 + q) * q.powi(x.unsigned_abs() as i32)
        }
        Mechanism::Gaussian => {
            let norm: f64 = (-2000..=2000)
                .map(|y: i64| (-((y * y) as f64) / (2.0 * scale * scale)).exp())
                .sum();
            (-((x * x) as f64) / (2.0 * scale * scale)).exp() / norm
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ONE: Sensitivity = Sensitivity {
        l0: 1,
        l1: 1,
        linf: 1,
    };

    fn budget(epsilon: f64, delta: f64) -> Cost {
        Cost { epsilon, delta }
    }

    /// The cost of a fresh measurement built at `scale`, mapped at `sensitivity`: the test's own
    /// reading of OpenDP's map, independent of the calibration.
    fn map_at(sensitivity: &Sensitivity, mechanism: Mechanism, scale: f64, delta: f64) -> Cost {
        CountsMeasurement::build(mechanism, scale, delta)
            .unwrap()
            .cost(sensitivity)
            .unwrap()
    }

    const SENSITIVITIES: [Sensitivity; 4] = [
        ONE,
        Sensitivity {
            l0: 3,
            l1: 3,
            linf: 1,
        },
        Sensitivity {
            l0: 2,
            l1: 10,
            linf: 5,
        },
        Sensitivity {
            l0: 12,
            l1: 7,
            linf: 2,
        },
    ];

    #[test]
    fn cost_is_the_map_at_the_sensitivity_and_within_budget() {
        for sensitivity in SENSITIVITIES {
            for mechanism in [Mechanism::Laplace, Mechanism::Gaussian] {
                for (epsilon, delta) in [(0.1, 1e-6), (1.0, 1e-9), (2.5, 1e-5)] {
                    let asked = budget(epsilon, delta);
                    let release =
                        release_counts(&[3, 0, 12], &sensitivity, mechanism, asked).unwrap();
                    let cost = release.cost();
                    let mapped = map_at(&sensitivity, mechanism, release.scale(), delta);
                    assert_eq!(cost, mapped, "{sensitivity:?} {mechanism:?} {asked:?}");
                    assert!(
                        cost.epsilon <= epsilon,
                        "{sensitivity:?} {mechanism:?} {cost:?}"
                    );
                    assert!(cost.delta <= delta);
                    match mechanism {
                        Mechanism::Laplace => assert_eq!(cost.delta, 0.0),
                        Mechanism::Gaussian => assert_eq!(cost.delta, delta),
                    }
                    // The smallest noise: a slightly smaller scale would overspend.
                    let less_noise = map_at(
                        &sensitivity,
                        mechanism,
                        release.scale() * (1.0 - 1e-8),
                        delta,
                    );
                    assert!(
                        less_noise.epsilon > epsilon,
                        "{sensitivity:?} {mechanism:?}"
                    );
                    assert_eq!(release.values().len(), 3);
                    assert_eq!(release.mechanism(), mechanism);
                }
            }
        }
    }

    #[test]
    fn laplace_scale_is_l1_over_epsilon() {
        let sensitivity = Sensitivity {
            l0: 3,
            l1: 3,
            linf: 1,
        };
        let release = release_counts(
            &[1, 2, 3],
            &sensitivity,
            Mechanism::Laplace,
            budget(1.5, 0.0),
        )
        .unwrap();
        assert_eq!(release.scale(), 2.0);
        assert_eq!(release.cost(), budget(1.5, 0.0));
        // l1 is tightened by l0 * linf.
        let loose = Sensitivity {
            l0: 2,
            l1: 9,
            linf: 1,
        };
        let p = preview(&loose, Mechanism::Laplace, budget(1.0, 0.0)).unwrap();
        assert_eq!(p.scale, 2.0);
    }

    #[test]
    fn l2_bound_is_conservative_and_tight() {
        let s = |l0, l1, linf| Sensitivity { l0, l1, linf }.l2();
        assert_eq!(s(1, 1, 1), 1.0);
        assert_eq!(s(4, 4, 1), 2.0);
        // min(l1 * linf, l0 * linf^2, l1^2) = min(50, 50, 100)
        let root = s(2, 10, 5);
        assert!(
            root.mul_add(root, -50.0) >= 0.0
                && root.next_down().mul_add(root.next_down(), -50.0) < 0.0
        );
        // min(3, 3, 9)
        let root = s(3, 3, 1);
        assert!(root.mul_add(root, -3.0) >= 0.0 && root < 1.7321);
        // l1^2 is a bound too: one cell with linf > l1 can only move by l1.
        assert_eq!(s(1, 2, 10), 2.0);
        for n in 1..2000u64 {
            let root = Sensitivity {
                l0: n,
                l1: n,
                linf: 1,
            }
            .l2();
            assert!(root.mul_add(root, -(n as f64)) >= 0.0, "{n}");
            assert!(
                root.next_down().mul_add(root.next_down(), -(n as f64)) < 0.0,
                "{n}"
            );
        }
    }

    fn coverage(mechanism: Mechanism, scale: f64, h: i64) -> f64 {
        (-h..=h).map(|x| pmf(mechanism, scale, x)).sum()
    }

    /// Release 4000 zeros and test the noise against OpenDP's exact distribution: a
    /// Kolmogorov-Smirnov statistic with the critical value for a false alarm of 0.1% (the test
    /// is conservative for a discrete law), the mean, and the coverage of the 95% half-width.
    fn check_noise_distribution(mechanism: Mechanism, asked: Cost) {
        const N: usize = 4000;
        let release = release_counts(&[0; N], &ONE, mechanism, asked).unwrap();
        let scale = release.scale();
        assert!((1.5..=3.0).contains(&scale), "scale {scale}");
        let mut noise = release.values().to_vec();
        noise.sort_unstable();

        let mut ks: f64 = 0.0;
        let mut cdf = 0.0;
        for x in -200..=200 {
            cdf += pmf(mechanism, scale, x);
            let empirical = noise.partition_point(|&v| v <= x) as f64 / N as f64;
            ks = ks.max((empirical - cdf).abs());
        }
        let critical = (-(0.001f64 / 2.0).ln() / 2.0).sqrt() / (N as f64).sqrt();
        assert!(ks < critical, "{mechanism:?}: KS {ks} >= {critical}");

        let mean = noise.iter().sum::<i64>() as f64 / N as f64;
        assert!(mean.abs() < 0.3, "{mechanism:?}: mean {mean}");

        let h = release.half_width_95();
        assert_eq!(h, h.round());
        let h = h as i64;
        let p = coverage(mechanism, scale, h);
        assert!(
            p >= 0.95,
            "{mechanism:?}: the half-width {h} covers only {p}"
        );
        assert!(
            coverage(mechanism, scale, h - 1) < 0.95,
            "{mechanism:?}: {h} is not the smallest"
        );
        let covered = noise.iter().filter(|v| v.abs() <= h).count() as f64 / N as f64;
        let sd = (p * (1.0 - p) / N as f64).sqrt();
        assert!(
            (covered - p).abs() < 5.0 * sd,
            "{mechanism:?}: covered {covered}, expected {p}"
        );
        assert!(
            (0.93..=0.99).contains(&covered),
            "{mechanism:?}: covered {covered}"
        );
    }

    #[test]
    fn laplace_noise_has_the_discrete_laplace_distribution() {
        check_noise_distribution(Mechanism::Laplace, budget(0.5, 0.0));
    }

    #[test]
    fn gaussian_noise_has_the_discrete_gaussian_distribution() {
        check_noise_distribution(Mechanism::Gaussian, budget(2.75, 1e-6));
    }

    #[test]
    fn preview_is_deterministic_and_matches_the_release() {
        for sensitivity in SENSITIVITIES {
            for mechanism in [Mechanism::Laplace, Mechanism::Gaussian] {
                let asked = budget(0.7, 1e-8);
                let p = preview(&sensitivity, mechanism, asked).unwrap();
                assert_eq!(p, preview(&sensitivity, mechanism, asked).unwrap());
                let release = release_counts(&[5; 10], &sensitivity, mechanism, asked).unwrap();
                assert_eq!(p.scale, release.scale());
                assert_eq!(p.half_width_95, release.half_width_95());
                assert_eq!(p.cost, release.cost());
                assert_eq!(p.mechanism, mechanism);
                assert_eq!(p.half_width_95, half_width_at(mechanism, p.scale).unwrap());
            }
        }
    }

    #[test]
    fn budget_for_accuracy_round_trips_and_is_the_smallest() {
        for sensitivity in SENSITIVITIES {
            for mechanism in [Mechanism::Laplace, Mechanism::Gaussian] {
                for target in [0.0, 1.0, 5.0, 10.5, 37.0, 250.0] {
                    let cost = budget_for_accuracy(&sensitivity, mechanism, target, 1e-9).unwrap();
                    let p = preview(&sensitivity, mechanism, cost).unwrap();
                    assert!(
                        p.half_width_95 <= target,
                        "{sensitivity:?} {mechanism:?} {target}: {p:?}"
                    );
                    assert!(p.cost.epsilon <= cost.epsilon);
                    assert!(
                        p.cost.epsilon >= cost.epsilon * (1.0 - 1e-8),
                        "{p:?} {cost:?}"
                    );
                    // Smallest: a thousandth less epsilon misses the target.
                    let less = budget(cost.epsilon * 0.999, cost.delta);
                    let p = preview(&sensitivity, mechanism, less).unwrap();
                    assert!(
                        p.half_width_95 > target,
                        "{sensitivity:?} {mechanism:?} {target}"
                    );
                    let expected_delta = match mechanism {
                        Mechanism::Laplace => 0.0,
                        Mechanism::Gaussian => 1e-9,
                    };
                    assert_eq!(cost.delta, expected_delta);
                }
            }
        }
    }

    fn refused(result: Result<impl std::fmt::Debug>, code: &str, words: &str) {
        let err = result.unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(err.is_caller_error());
        assert!(err.to_string().contains(words), "{err}");
    }

    #[test]
    fn bad_budgets_and_sensitivities_are_refused_clearly() {
        for mechanism in [Mechanism::Laplace, Mechanism::Gaussian] {
            for epsilon in [0.0, -1.0, f64::NAN, f64::INFINITY] {
                refused(
                    release_counts(&[1], &ONE, mechanism, budget(epsilon, 1e-9)),
                    "invalid_budget",
                    "epsilon must be positive",
                );
                refused(
                    preview(&ONE, mechanism, budget(epsilon, 1e-9)),
                    "invalid_budget",
                    "epsilon must be positive",
                );
            }
            refused(
                release_counts(&[1], &ONE, mechanism, budget(1.0, f64::NAN)),
                "invalid_budget",
                "delta must be",
            );
            refused(
                release_counts(&[1], &ONE, mechanism, budget(1e-9, 1e-9)),
                "budget_too_small",
                "raise epsilon",
            );
            let zero = Sensitivity {
                l0: 0,
                l1: 0,
                linf: 0,
            };
            refused(
                release_counts(&[1], &zero, mechanism, budget(1.0, 1e-9)),
                "invalid_sensitivity",
                "at least 1",
            );
            let partial = Sensitivity {
                l0: 0,
                l1: 3,
                linf: 1,
            };
            refused(
                release_counts(&[1], &partial, mechanism, budget(1.0, 1e-9)),
                "invalid_sensitivity",
                "at least 1",
            );
            let huge = Sensitivity {
                l0: 1,
                l1: MAX_SENSITIVITY + 1,
                linf: 1,
            };
            refused(
                preview(&huge, mechanism, budget(1.0, 1e-9)),
                "invalid_sensitivity",
                "at most",
            );
            // Nothing to release, nothing to protect: no noise and no charge.
            let empty = release_counts(&[], &zero, mechanism, budget(1.0, 1e-9)).unwrap();
            assert!(empty.values().is_empty());
            assert_eq!(empty.cost(), budget(0.0, 0.0));
            for target in [-1.0, f64::NAN, f64::INFINITY] {
                refused(
                    budget_for_accuracy(&ONE, mechanism, target, 1e-9),
                    "invalid_accuracy",
                    "half-width",
                );
            }
            // A target wider than the noise at MAX_SCALE: the smallest budget a release accepts.
            let cost = budget_for_accuracy(&ONE, mechanism, 1e9, 1e-9).unwrap();
            let p = preview(&ONE, mechanism, cost).unwrap();
            assert!(p.scale <= MAX_SCALE && p.scale > MAX_SCALE * 0.999, "{p:?}");
            assert!(p.half_width_95 <= 1e9);
        }
        for delta in [0.0, 1.0, -1e-9] {
            refused(
                release_counts(&[1], &ONE, Mechanism::Gaussian, budget(1.0, delta)),
                "invalid_budget",
                "delta must be above 0",
            );
            refused(
                budget_for_accuracy(&ONE, Mechanism::Gaussian, 3.0, delta),
                "invalid_budget",
                "delta must be above 0",
            );
            refused(
                release_sparse(vec![("a".into(), 1)], &ONE, budget(1.0, delta)),
                "invalid_budget",
                "delta must be above 0",
            );
        }
        refused(
            release_counts(&[1], &ONE, Mechanism::Laplace, budget(1.0, -0.5)),
            "invalid_budget",
            "delta must be at least 0",
        );
    }

    #[test]
    fn sparse_release_keeps_large_counts_and_drops_small_ones() {
        let sensitivities = [
            ONE,
            Sensitivity {
                l0: 3,
                l1: 3,
                linf: 1,
            },
        ];
        for sensitivity in sensitivities {
            let asked = budget(1.0, 1e-9);
            let mut counts: Vec<(String, i64)> =
                (0..50).map(|i| (format!("small-{i:02}"), 1)).collect();
            for key in ["big-a", "big-b", "big-c"] {
                counts.push((key.to_string(), 1_000_000));
            }
            let plan = preview_sparse(&sensitivity, asked).unwrap();
            // With a threshold this far above 1, a small key crosses it with probability below
            // 1e-8 each.
            assert!(plan.threshold >= 15, "{plan:?}");
            let release = release_sparse(counts, &sensitivity, asked).unwrap();
            let keys: Vec<&str> = release.counts().iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, ["big-a", "big-b", "big-c"]);
            for (_, noisy) in release.counts() {
                assert!((noisy - 1_000_000).abs() < 100, "{noisy}");
            }
            assert_eq!(release.threshold(), plan.threshold);
            assert_eq!(release.scale(), plan.scale);
            assert_eq!(release.half_width_95(), plan.half_width_95);
            assert_eq!(
                release.half_width_95(),
                half_width_at(Mechanism::Laplace, plan.scale).unwrap()
            );

            // The cost is the threshold measurement's map, within the budget on both parts.
            let cost = release.cost();
            let measurement = threshold_measurement(release.scale(), release.threshold()).unwrap();
            assert_eq!(cost, threshold_cost(&measurement, &sensitivity).unwrap());
            assert_eq!(cost, plan.cost);
            assert!(cost.epsilon <= asked.epsilon);
            assert!(cost.delta <= asked.delta && cost.delta > 0.0);
            // The threshold is the smallest whose delta fits.
            let lower = threshold_measurement(release.scale(), release.threshold() - 1).unwrap();
            assert!(threshold_cost(&lower, &sensitivity).unwrap().delta > asked.delta);
        }
    }

    #[test]
    fn sparse_release_refuses_duplicate_keys_without_naming_them() {
        let counts = vec![
            ("secret-key".to_string(), 4),
            ("other".to_string(), 2),
            ("secret-key".to_string(), 1),
        ];
        let err = release_sparse(counts, &ONE, budget(1.0, 1e-9)).unwrap_err();
        assert_eq!(err.code(), "duplicate_key");
        assert!(!err.to_string().contains("secret-key"), "{err}");
        assert!(err.to_string().contains("index 2"), "{err}");
        let empty = release_sparse(
            Vec::new(),
            &Sensitivity {
                l0: 0,
                l1: 0,
                linf: 0,
            },
            budget(1.0, 1e-9),
        )
        .unwrap();
        assert!(empty.counts().is_empty());
        assert_eq!(empty.cost(), budget(0.0, 0.0));
    }

    #[test]
    fn releases_cross_threads_and_opendp_keeps_its_secure_source() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<Release>();
        send_and_sync::<SparseRelease>();
        send_and_sync::<DpError>();
        // The samplers' secure random source is OpenDP's default `use-openssl` feature.
        let manifest = include_str!("../Cargo.toml");
        let line = manifest
            .lines()
            .find(|l| l.starts_with("opendp "))
            .expect("query depends on opendp");
        assert!(line.contains("\"=0.16.0\""), "{line}");
        assert!(!line.contains("default-features"), "{line}");
    }

    #[test]
    fn mechanism_names_are_snake_case() {
        assert_eq!(
            serde_json::to_string(&Mechanism::Gaussian).unwrap(),
            "\"gaussian\""
        );
        let m: Mechanism = serde_json::from_str("\"laplace\"").unwrap();
        assert_eq!(m, Mechanism::Laplace);
    }

    proptest! {
        #[test]
        fn laplace_calibration_never_overspends(l1 in 1u64..50, epsilon in 0.01f64..5.0) {
            let sensitivity = Sensitivity { l0: l1, l1, linf: 1 };
            let release =
                release_counts(&[0, 7, 40], &sensitivity, Mechanism::Laplace, budget(epsilon, 0.0))
                    .unwrap();
            let cost = release.cost();
            prop_assert!(cost.epsilon <= epsilon * (1.0 + 1e-9));
            prop_assert!(cost.epsilon <= epsilon);
            prop_assert!(cost.epsilon >= epsilon * (1.0 - 1e-8), "{} < {}", cost.epsilon, epsilon);
            prop_assert_eq!(cost.delta, 0.0);
        }
    }
}
