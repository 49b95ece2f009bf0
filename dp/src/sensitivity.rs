//! How far one person can move a vector of counts, after contribution bounding.

use serde::{Deserialize, Serialize};

use crate::{DpError, MAX_SENSITIVITY, Result};

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
    pub(crate) fn l1_bound(&self) -> u64 {
        self.l1.min(self.l0.saturating_mul(self.linf))
    }

    /// Refuse a zero, partly zero or oversized sensitivity.
    pub(crate) fn check(&self) -> Result<()> {
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
