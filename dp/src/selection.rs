//! Private selection: the index of the (noisily) highest score, by OpenDP's noisy max with
//! Gumbel noise, which is the exponential mechanism, accounted in zCDP (the bounded-range
//! analysis of Cesar and Rogers 2021: `(range / scale)^2 / 8`). Used by the synthetic-data
//! mechanism (MST) to pick the marginals it measures.
//!
//! Scores are not monotonic in the data (a score may rise for one candidate and fall for
//! another when a person is removed), so the range OpenDP's map takes is twice the scores'
//! L-infinity sensitivity.

use opendp::measurements::make_noisy_max;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::metrics::LInfDistance;
use serde::Serialize;

use crate::calibrate::smallest_scale;
use crate::{DpError, Result, opendp};

/// The noise scale of a selection and the rho OpenDP's map says it spends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SelectionPreview {
    /// The Gumbel scale.
    pub scale: f64,
    /// What one selection charges (at most the budget asked for).
    pub rho: f64,
}

type Selection = opendp::core::Measurement<
    opendp::domains::VectorDomain<opendp::domains::AtomDomain<f64>>,
    LInfDistance<f64>,
    ZeroConcentratedDivergence,
    usize,
>;

fn selection(scale: f64) -> Result<Selection> {
    let domain =
        opendp::domains::VectorDomain::new(opendp::domains::AtomDomain::<f64>::new_non_nan());
    make_noisy_max(
        domain,
        LInfDistance::<f64>::new(false),
        ZeroConcentratedDivergence,
        scale,
        false,
    )
    .map_err(opendp("building the noisy max"))
}

fn rho_at(m: &Selection, sensitivity: f64) -> Result<f64> {
    m.map(&sensitivity)
        .map_err(opendp("evaluating the selection's zCDP map"))
}

fn check_sensitivity(sensitivity: f64) -> Result<()> {
    if sensitivity.is_finite() && sensitivity > 0.0 {
        Ok(())
    } else {
        Err(DpError::InvalidSensitivity(format!(
            "a score's sensitivity is positive and finite (got {sensitivity})"
        )))
    }
}

/// The smallest Gumbel scale whose zCDP map at `sensitivity` (how far one person can move any
/// one score) is at most `rho`. Draws nothing.
pub fn preview_selection(sensitivity: f64, rho: f64) -> Result<SelectionPreview> {
    check_sensitivity(sensitivity)?;
    if !(rho.is_finite() && rho > 0.0) {
        return Err(DpError::InvalidBudget(format!(
            "rho must be positive and finite (got {rho})"
        )));
    }
    // (2 s / scale)^2 / 8 = rho  <=>  scale = s / sqrt(2 rho).
    let start = sensitivity / (2.0 * rho).sqrt();
    let Some(scale) = smallest_scale(start, rho, |s| rho_at(&selection(s)?, sensitivity))? else {
        return Err(DpError::BudgetTooSmall(format!(
            "rho {rho} needs a selection scale above {}",
            crate::MAX_SCALE
        )));
    };
    let spent = rho_at(&selection(scale)?, sensitivity)?;
    if spent > rho {
        return Err(DpError::Internal(format!(
            "the calibrated selection rho {spent} exceeds the budget {rho}"
        )));
    }
    Ok(SelectionPreview { scale, rho: spent })
}

/// The index of the highest of `scores` after Gumbel noise of `preview`'s scale (the
/// exponential mechanism), checked once more against OpenDP's map. `None` for no scores.
pub fn select_max(
    scores: &[f64],
    sensitivity: f64,
    preview: SelectionPreview,
) -> Result<Option<crate::Released<usize>>> {
    if scores.is_empty() {
        return Ok(None);
    }
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(DpError::Internal("a selection score is not finite".into()));
    }
    let m = selection(preview.scale)?;
    let spent = rho_at(&m, sensitivity)?;
    if spent > preview.rho {
        return Err(DpError::Internal(format!(
            "the selection would spend rho {spent}, not the calibrated {}",
            preview.rho
        )));
    }
    let index = m.invoke(&scores.to_vec()).map_err(opendp("selecting"))?;
    Ok(Some(crate::Released::new(index)))
}

/// 32 bytes from OpenDP's secure random source, to seed the post-processing draws of a
/// synthetic table (sampling records from a model fitted to released marginals). Those draws
/// are not noise: the table's privacy rests on the released marginals alone.
pub fn post_processing_seed() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    opendp::traits::samplers::fill_bytes(&mut seed).map_err(opendp("drawing a seed"))?;
    Ok(seed)
}
