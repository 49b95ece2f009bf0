//! Calibration: the smallest noise scale whose privacy loss fits a budget, and a cache of the
//! searches already done (calibrating is deterministic).

use std::collections::HashMap;

use crate::{Cost, MAX_SCALE, Mechanism, Result, SCALE_PRECISION, Sensitivity};

/// The smallest scale in `(0, MAX_SCALE]` whose epsilon (by `epsilon_at`, decreasing in the
/// scale) is at most `budget_epsilon`, to a relative [`SCALE_PRECISION`]; `None` if even
/// [`MAX_SCALE`] overspends. Brackets from `start` by halving or doubling, then narrows the bracket
/// by regula falsi on `ln(epsilon / budget)` against `ln(scale)` (nearly linear), with the
/// Illinois correction and a bisection fallback. The bracket always keeps an overspending scale
/// below and a fitting one above, and the fitting one is returned, so the search can only ever
/// leave budget unspent, never overspend. (A Gaussian privacy map costs milliseconds: plain
/// bisection would take some 30 of them per query, this takes about 10.)
pub(crate) fn smallest_scale(
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

/// Calibrations already searched for, by their exact inputs. Calibrating is deterministic but
/// builds OpenDP measurements dozens of times while it searches (about 1 ms for Laplace, far more
/// for the Gaussian and threshold mechanisms), and every query calibrates each part twice: when
/// it is priced and when it is released. Only the search is remembered: a release still builds
/// its measurement and checks its cost with OpenDP's map.
pub(crate) struct Calibrations<P> {
    found: std::sync::LazyLock<std::sync::Mutex<HashMap<CalibrationKey, P>>>,
}

/// `(l0, l1, linf, mechanism, epsilon bits, delta bits)`; `None` for the threshold mechanism.
pub(crate) type CalibrationKey = (u64, u64, u64, Option<Mechanism>, u64, u64);

/// Entries kept before the cache starts over (each is a few dozen bytes).
pub(crate) const CALIBRATIONS_KEPT: usize = 4096;

impl<P: Copy> Calibrations<P> {
    pub(crate) const fn new() -> Self {
        Calibrations {
            found: std::sync::LazyLock::new(Default::default),
        }
    }

    pub(crate) fn get_or(
        &self,
        key: CalibrationKey,
        search: impl FnOnce() -> Result<P>,
    ) -> Result<P> {
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

pub(crate) fn calibration_key(
    s: &Sensitivity,
    mechanism: Option<Mechanism>,
    budget: Cost,
) -> CalibrationKey {
    (
        s.l0,
        s.l1,
        s.linf,
        mechanism,
        budget.epsilon.to_bits(),
        budget.delta.to_bits(),
    )
}
