//! Intervals: the 95% half-width of a cell from OpenDP's accuracy functions.

use opendp::accuracy::{discrete_gaussian_scale_to_accuracy, discrete_laplacian_scale_to_accuracy};

use crate::{ALPHA, DpError, Mechanism, Result, opendp};

/// The smallest `h >= 0` with `P(|noise| <= h) >= 0.95`, from OpenDP's accuracy `a`, which
/// satisfies `P(|noise| >= a) <= 0.05`: for integer noise, `h = ceil(a) - 1`.
pub(crate) fn half_width_at(mechanism: Mechanism, scale: f64) -> Result<f64> {
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

/// Exact probability mass of OpenDP's noise at `x`, for tests that check noise by its
/// distribution (DESIGN: test noise by its distribution).
pub fn pmf(mechanism: Mechanism, scale: f64, x: i64) -> f64 {
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
