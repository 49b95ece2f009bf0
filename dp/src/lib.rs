//! Differential privacy for ctstats: calibrate, draw and account for the noise on every released
//! number. This crate is the only one in the workspace that depends on `opendp` (the
//! dependency-edge test in `tests/e2e/architecture.rs` fails on any other).
//!
//! - [`sensitivity`]: how far one person can move a vector of counts;
//! - [`calibrate`]: the smallest noise scale whose privacy loss fits a budget (cached);
//! - [`interval`]: 95% half-widths from OpenDP's accuracy functions;
//! - [`counts`]: discrete Laplace / Gaussian releases of counts, their previews and costs;
//! - [`sparse`]: counts over keys too many to enumerate, released above a DP threshold;
//! - [`released`]: [`Released`], the only type a released number reaches the wire in;
//! - [`selection`]: private selection of the highest score (OpenDP's noisy max, in zCDP), and
//!   the seed of a synthetic table's post-processing draws;
//! - [`zcdp`]: [`Loss`] (rho plus an (epsilon, delta) part), its composition and conversion, and
//!   the discrete Gaussian calibrated to a rho.
//!
//!
//! Architecture invariants:
//! - **Noise comes only from OpenDP's samplers** (discrete Laplace, discrete Gaussian), which draw
//!   from OpenDP's secure random source (`use-openssl`, a default feature kept on in
//!   `query/Cargo.toml`). No seed, no `rand`, no noise formula of ours. (The one seed this
//!   crate hands out, [`post_processing_seed`], drives the sampling of synthetic records from a
//!   model fitted to released marginals: post-processing, not noise.)
//! - **The cost is what OpenDP's privacy map says**: the privacy loss charged for a release is the
//!   map, at the declared [`Sensitivity`], of the very measurement that drew the noise. It never
//!   exceeds the budget asked for; a budget that cannot be honoured is refused, not weakened.
//! - **Only this crate can build a [`Release`] or a [`SparseRelease`]** (private fields, no
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

pub mod calibrate;
pub mod counts;
pub mod interval;
pub mod released;
pub mod selection;
pub mod sensitivity;
pub mod sparse;
#[cfg(test)]
mod tests;
pub mod zcdp;

use serde::{Deserialize, Serialize};

pub use counts::{Preview, Release, budget_for_accuracy, preview, release_counts};
pub use interval::{half_width, pmf};
pub use released::Released;
pub use selection::{SelectionPreview, post_processing_seed, preview_selection, select_max};
pub use sensitivity::Sensitivity;
pub use sparse::{SparsePreview, SparseRelease, preview_sparse, release_sparse};
pub use zcdp::{
    GaussianPreview, GaussianRelease, Loss, composed_epsilon, epsilon_of_rho, preview_gaussian,
    release_gaussian, rho_for, rho_for_accuracy, rho_of_gaussian,
};

/// The privacy cost of one release: what the ledger charges.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cost {
    pub epsilon: f64,
    pub delta: f64,
}

impl Cost {
    /// Nothing: what a re-served answer charges.
    pub const ZERO: Cost = Cost {
        epsilon: 0.0,
        delta: 0.0,
    };
}

/// Significance level of every interval: 95% coverage.
pub const ALPHA: f64 = 0.05;

/// The largest noise scale this module calibrates. Counts of people with a noise scale above
/// this carry no information; refusing keeps the caller's budget for a useful question.
pub const MAX_SCALE: f64 = 1e5;

/// Relative precision of the noise calibration. The calibrated scale always fits the budget; it
/// is at most this much (relatively) above the smallest scale that does, so the release may
/// leave about this fraction of epsilon unspent. (A Gaussian privacy map costs milliseconds, so
/// searching down to adjacent floats would slow every query for nothing.)
pub(crate) const SCALE_PRECISION: f64 = 1e-9;

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
pub(crate) fn opendp(context: &'static str) -> impl FnOnce(opendp::error::Error) -> DpError {
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

pub(crate) fn check_epsilon(epsilon: f64) -> Result<()> {
    if epsilon > 0.0 && epsilon.is_finite() {
        Ok(())
    } else {
        Err(DpError::InvalidBudget(format!(
            "epsilon must be positive and finite (got {epsilon})"
        )))
    }
}

/// Delta for a mechanism that needs one: Gaussian and the sparse threshold.
pub(crate) fn check_positive_delta(delta: f64, what: &str) -> Result<()> {
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
pub(crate) fn check_budget(mechanism: Mechanism, budget: Cost) -> Result<()> {
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
pub(crate) fn check_within(cost: Cost, budget: Cost) -> Result<()> {
    if cost.epsilon <= budget.epsilon && cost.delta <= budget.delta {
        Ok(())
    } else {
        Err(DpError::Internal(format!(
            "the calibrated cost {cost:?} exceeds the budget {budget:?}"
        )))
    }
}
