//! Amounts in ledger units of 10^-12: costs rounded up, budgets down, so rounding never
//! favours the caller.

/// The largest epsilon budget: far above any meaningful one, and 10^18 units fit an i64.
pub const MAX_EPSILON: f64 = 1e6;

/// The largest delta budget. Delta is the probability that a release is not private at all;
/// practice keeps it far below one over the number of persons, and nothing here needs more.
pub const MAX_DELTA: f64 = 0.01;

/// The largest rho budget (as large as the largest epsilon one, for the same reason).
pub const MAX_RHO: f64 = 1e6;

/// Units per 1.0 of epsilon or delta.
pub(super) const UNITS: f64 = 1e12;
pub(super) const UNITS_INT: u128 = 1_000_000_000_000;

/// Convert an amount to stored units, rounding up (costs): the smallest
/// integer `u` with `u >= amount * 10^12`, computed exactly on the binary
/// value of `amount` (a floating-point product could round a cost down).
/// NaN and amounts beyond the range saturate to `i64::MAX`, the conservative
/// side for a cost.
pub fn units_up(amount: f64) -> i64 {
    if amount.is_nan() {
        return i64::MAX;
    }
    if amount < 0.0 {
        return units_down(-amount).saturating_neg();
    }
    exact_units(amount, true)
}

/// Convert a budget to stored units, rounding down: the largest integer `u`
/// with `u <= d * 10^12`, where `d` is the shortest decimal that reads back as
/// `amount` (what the admin typed: a budget of `1e-6` is 10^6 units, although
/// the nearest f64 is a little below 10^-6). NaN gives 0, the conservative
/// side for a budget.
pub fn units_down(amount: f64) -> i64 {
    if amount.is_nan() {
        return 0;
    }
    if amount < 0.0 {
        return units_up(-amount).saturating_neg();
    }
    if amount.is_infinite() || amount >= 9.2e6 {
        return i64::MAX;
    }
    // `{}` prints the shortest round-trip decimal, never in exponent form.
    let text = format!("{amount}");
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    let frac: String = frac
        .chars()
        .chain(std::iter::repeat('0'))
        .take(12)
        .collect();
    format!("{whole}{frac}").parse().unwrap_or(i64::MAX)
}

/// The largest f64 that is at most `units / 10^12` exactly: a target a
/// measurement can be calibrated to so that its cost, rounded up by
/// [`units_up`], is at most `units`.
pub fn at_most(units: i64) -> f64 {
    let mut x = units as f64 / UNITS;
    while units_up(x) > units {
        x = x.next_down();
    }
    x
}

/// A part of a budget typed as `amount`, split in `n` equal shares: the
/// target each share is calibrated to. The shares' costs, each rounded up to
/// units, add up to at most the budget's units.
pub fn share(amount: f64, n: usize) -> f64 {
    at_most(units_down(amount) / n.max(1) as i64)
}

/// `amount * 10^12` rounded up or down, for a non-negative, non-NaN amount.
/// The f64 is `mantissa * 2^exponent` exactly; the product with 10^12 is
/// done in u128 and the power of two applied as a shift.
pub(super) fn exact_units(amount: f64, up: bool) -> i64 {
    if amount.is_infinite() {
        return i64::MAX;
    }
    let bits = amount.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = u128::from(bits & ((1u64 << 52) - 1));
    let (mantissa, exponent) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u128 << 52), biased - 1075)
    };
    let product = mantissa * UNITS_INT; // < 2^53 * 2^40: fits
    let units = if exponent >= 0 {
        if exponent >= 64 || product.leading_zeros() < exponent as u32 + 1 {
            return i64::MAX;
        }
        product << exponent
    } else {
        let shift = (-exponent) as u32;
        if shift >= 128 {
            u128::from(up && product != 0)
        } else {
            let whole = product >> shift;
            let rest = product & ((1u128 << shift) - 1);
            whole + u128::from(up && rest != 0)
        }
    };
    i64::try_from(units).unwrap_or(i64::MAX)
}

pub(super) fn amount(units: i64) -> f64 {
    units as f64 / UNITS
}
