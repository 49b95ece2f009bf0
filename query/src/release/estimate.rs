//! Reconstructing every indicator of a marginal design from its noisy marginals (pure
//! post-processing: no data, no budget, no randomness).
//!
//! # Least squares per mission and period
//!
//! For one level (persons or cases) in one mission and period, the design measured the total
//! `y_T` (variance `v_T`) and breakdowns `a` that partition it, `y_a` (`n_a` cells of variance
//! `v_a` each). The generalised least-squares estimate under "every breakdown sums to the total"
//! has a closed form: the total is the inverse-variance mean of `y_T` and the breakdown sums,
//!
//! `T = (y_T / v_T + sum_a S_a / (n_a v_a)) / (1 / v_T + sum_a 1 / (n_a v_a))`, `V = Var(T)`,
//!
//! and each breakdown is shifted equally to sum to it: `x_ai = y_ai + (T - S_a) / n_a`. Their
//! covariances are known in closed form: `Cov(T, x_ai) = V / n_a`, `Cov(x_ai, x_bj) =
//! [a = b] v_a ([i = j] - 1 / n_a) + V / (n_a n_b)`. A multi-valued breakdown (exploitation types)
//! is taken as measured (variance `v`, independent of the rest). Every indicator cell is a linear
//! function of these estimates ([`Lin`]) or a ratio of two, so its variance is exact.
//!
//! # Intervals (95%)
//!
//! - a count: the estimate plus or minus `z sqrt(Var)` (normal approximation to a sum of
//!   discrete Gaussians), clipped at 0;
//! - a share or rate `N / D`: Fieller's interval from the estimates' variances and covariance,
//!   `{r : (N - r D)^2 <= z^2 (Var N - 2 r Cov + r^2 Var D)}`, clipped to `[0, 1]` for shares (the
//!   whole `[0, 1]` when the denominator is not distinguishable from 0);
//! - both widened to contain the published value.
//!
//! # Published values
//!
//! Totals are rounded to non-negative integers; each partition is projected onto `{x >= 0,
//! sum x = total}` and rounded by largest remainder, so breakdowns sum to persons assisted (or
//! cases); shares are computed from these published counts.

use std::collections::HashMap;

use crate::indicators::{Formula, Indicator, Source};
use crate::spec::UNKNOWN;

use super::design::{By, Design, Level, MarginalId, locate};
use super::post_process::{integer_partition, project_simplex};
use super::{References, ReleaseCell, ReleaseIndicator, SourceUsed};

/// The two-sided 95% normal quantile.
pub const Z95: f64 = 1.959_963_984_540_054;

/// A linear function of one mission and period's estimates: `t[level] * total(level) + sum of
/// coefficient * estimate of (marginal, key)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lin {
    pub t: [f64; 2],
    pub cells: Vec<(usize, usize, f64)>,
}

fn level_index(level: Level) -> usize {
    match level {
        Level::Persons => 0,
        Level::Cases => 1,
    }
}

impl Lin {
    fn total(level: Level) -> Lin {
        let mut l = Lin::default();
        l.t[level_index(level)] = 1.0;
        l
    }
    fn minus(mut self, other: &Lin) -> Lin {
        for i in 0..2 {
            self.t[i] -= other.t[i];
        }
        self.cells
            .extend(other.cells.iter().map(|(m, k, c)| (*m, *k, -c)));
        self
    }
}

/// One level's least-squares estimates in one mission and period.
#[derive(Debug, Clone, Default)]
struct Star {
    total: f64,
    variance: f64,
    /// Published (post-processed) total.
    published: f64,
}

/// The estimates of one mission and period.
#[derive(Debug)]
pub struct CellEstimates<'a> {
    design: &'a Design,
    stars: [Star; 2],
    /// Per marginal: the estimates (shifted for partitions) and the published integers.
    estimates: Vec<Vec<f64>>,
    published: Vec<Vec<f64>>,
}

impl<'a> CellEstimates<'a> {
    /// The estimates of the mission and period at `cell` (index `mission * periods + period`)
    /// from the noisy marginals.
    pub fn new(design: &'a Design, noisy: &[Vec<i64>], cell: usize) -> CellEstimates<'a> {
        let raw: Vec<Vec<f64>> = design
            .marginals
            .iter()
            .zip(noisy)
            .map(|(m, v)| {
                let n = m.keys.len();
                v[cell * n..(cell + 1) * n]
                    .iter()
                    .map(|x| *x as f64)
                    .collect()
            })
            .collect();
        let mut stars: [Star; 2] = Default::default();
        let mut estimates = raw.clone();
        for level in [Level::Persons, Level::Cases] {
            let Some(t) = design.index(&MarginalId {
                level,
                by: By::Total,
                filter: None,
            }) else {
                continue;
            };
            let v_t = design.marginals[t].variance();
            let (mut info, mut precision) = (raw[t][0] / v_t, 1.0 / v_t);
            for (i, m) in design.marginals.iter().enumerate() {
                if m.id.level == level && m.partition() {
                    let n = m.keys.len() as f64;
                    let sum: f64 = raw[i].iter().sum();
                    info += sum / (n * m.variance());
                    precision += 1.0 / (n * m.variance());
                }
            }
            let total = info / precision;
            let published = total.round().max(0.0);
            for (i, m) in design.marginals.iter().enumerate() {
                if m.id.level == level && m.partition() {
                    let n = m.keys.len() as f64;
                    let shift = (total - raw[i].iter().sum::<f64>()) / n;
                    estimates[i] = raw[i].iter().map(|x| x + shift).collect();
                }
            }
            stars[level_index(level)] = Star {
                total,
                variance: 1.0 / precision,
                published,
            };
        }
        let published = design
            .marginals
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if m.id.by == By::Total {
                    vec![stars[level_index(m.id.level)].published]
                } else if m.partition() {
                    let t = stars[level_index(m.id.level)].published;
                    integer_partition(&project_simplex(&estimates[i], t), t)
                } else {
                    estimates[i].iter().map(|x| x.round().max(0.0)).collect()
                }
            })
            .collect();
        CellEstimates {
            design,
            stars,
            estimates,
            published,
        }
    }

    /// The estimate of `l`.
    pub fn value(&self, l: &Lin) -> f64 {
        let t: f64 = (0..2).map(|i| l.t[i] * self.stars[i].total).sum();
        t + l
            .cells
            .iter()
            .map(|(m, k, c)| c * self.estimates[*m][*k])
            .sum::<f64>()
    }

    /// The published value of `l` (its counts post-processed).
    pub fn published(&self, l: &Lin) -> f64 {
        let t: f64 = (0..2).map(|i| l.t[i] * self.stars[i].published).sum();
        t + l
            .cells
            .iter()
            .map(|(m, k, c)| c * self.published[*m][*k])
            .sum::<f64>()
    }

    /// `Cov(a, b)` from the design's variances (module docs).
    pub fn covariance(&self, a: &Lin, b: &Lin) -> f64 {
        let marginals = &self.design.marginals;
        let loading = |l: &Lin, level: Level| -> f64 {
            l.t[level_index(level)]
                + l.cells
                    .iter()
                    .filter(|(m, _, _)| {
                        marginals[*m].id.level == level && marginals[*m].partition()
                    })
                    .map(|(m, _, c)| c / marginals[*m].keys.len() as f64)
                    .sum::<f64>()
        };
        let mut cov: f64 = [Level::Persons, Level::Cases]
            .iter()
            .map(|level| {
                self.stars[level_index(*level)].variance * loading(a, *level) * loading(b, *level)
            })
            .sum();
        let by_marginal = |l: &Lin| {
            let mut out: HashMap<usize, HashMap<usize, f64>> = HashMap::new();
            for (m, k, c) in &l.cells {
                *out.entry(*m).or_default().entry(*k).or_default() += c;
            }
            out
        };
        let (ca, cb) = (by_marginal(a), by_marginal(b));
        for (m, cells_a) in &ca {
            let Some(cells_b) = cb.get(m) else { continue };
            let marginal = &marginals[*m];
            let v = marginal.variance();
            let dot: f64 = cells_a
                .iter()
                .map(|(k, c)| c * cells_b.get(k).copied().unwrap_or(0.0))
                .sum();
            if marginal.partition() {
                let n = marginal.keys.len() as f64;
                let (sa, sb): (f64, f64) = (cells_a.values().sum(), cells_b.values().sum());
                cov += v * (dot - sa * sb / n);
            } else {
                cov += v * dot;
            }
        }
        cov
    }

    /// The 95% interval of a count, clipped at 0.
    pub fn count_interval(&self, l: &Lin) -> (f64, f64) {
        let v = self.value(l);
        let h = Z95 * self.covariance(l, l).max(0.0).sqrt();
        ((v - h).max(0.0), (v + h).max(0.0))
    }

    /// Fieller's 95% interval of `n / d` (module docs); `None` when unbounded.
    pub fn ratio_interval(&self, n: &Lin, d: &Lin) -> Option<(f64, f64)> {
        fieller(
            self.value(n),
            self.value(d),
            self.covariance(n, n),
            self.covariance(d, d),
            self.covariance(n, d),
        )
    }
}

/// Fieller's interval for `n / d` at 95%, `None` when the set is not a bounded interval.
pub fn fieller(n: f64, d: f64, vnn: f64, vdd: f64, vnd: f64) -> Option<(f64, f64)> {
    let z2 = Z95 * Z95;
    let a = d * d - z2 * vdd;
    if a <= 0.0 {
        return None;
    }
    let b = n * d - z2 * vnd;
    let c = n * n - z2 * vnn;
    let disc = (b * b - a * c).max(0.0);
    let root = disc.sqrt();
    Some(((b - root) / a, (b + root) / a))
}

/// The cells of `marginal` at `keys`, summed: a [`Lin`].
fn cells_of(design: &Design, id: &MarginalId, keys: &[&str]) -> Lin {
    let Some(m) = design.index(id) else {
        return Lin::default();
    };
    if id.by == By::Total {
        return Lin::total(id.level);
    }
    let marginal = &design.marginals[m];
    Lin {
        t: [0.0; 2],
        cells: keys
            .iter()
            .filter_map(|k| marginal.keys.iter().position(|x| x == k))
            .map(|k| (m, k, 1.0))
            .collect(),
    }
}

/// The [`Lin`] a source counts (the keys it filters, or the total).
fn source_lin(design: &Design, source: &Source) -> Lin {
    match locate(source) {
        Some((id, Some(keys))) => cells_of(design, &id, &keys),
        Some((id, None)) if id.by == By::Total => Lin::total(id.level),
        _ => Lin::default(),
    }
}

/// A share in [0, 1] and its interval; `None` value when the published denominator is 0.
fn share_cell(e: &CellEstimates<'_>, n: &Lin, d: &Lin) -> (Option<f64>, (f64, f64)) {
    let (pn, pd) = (e.published(n), e.published(d));
    let value = (pd > 0.0).then(|| (pn / pd).clamp(0.0, 1.0));
    let interval = e.ratio_interval(n, d).map_or((0.0, 1.0), |(lo, hi)| {
        (lo.clamp(0.0, 1.0), hi.clamp(0.0, 1.0))
    });
    (value, interval)
}

/// Every indicator's cells for one mission and period, from its estimates. References give the
/// rates' denominators; `used` collects the reference rows read.
#[allow(clippy::too_many_arguments)]
pub fn indicator_cells(
    indicator: &Indicator,
    e: &CellEstimates<'_>,
    (mission, period): (&str, &str),
    references: &References,
    used: &mut Vec<SourceUsed>,
    cells: &mut Vec<ReleaseCell>,
) {
    let design = e.design;
    let mut push = |key: Option<String>, value: Option<f64>, (lo, hi): (f64, f64)| {
        let (lo, hi) = match value {
            Some(v) => (lo.min(v), hi.max(v)),
            None => (lo, hi),
        };
        cells.push(ReleaseCell {
            mission: mission.to_string(),
            period: period.to_string(),
            key,
            value,
            lower: lo,
            upper: hi,
        });
    };
    let persons = Lin::total(Level::Persons);
    match &indicator.formula {
        Formula::Count { source, within } => {
            let l = source_lin(design, source);
            let mut v = e.published(&l);
            if let Some(sup) = within {
                v = v.min(e.published(&source_lin(design, sup)));
            }
            push(None, Some(v), e.count_interval(&l));
        }
        Formula::Breakdown { source } => {
            let Some((id, _)) = locate(source) else {
                return;
            };
            let Some(m) = design.index(&id) else { return };
            for (k, key) in design.marginals[m].keys.iter().enumerate() {
                let l = Lin {
                    t: [0.0; 2],
                    cells: vec![(m, k, 1.0)],
                };
                push(
                    Some(key.clone()),
                    Some(e.published(&l)),
                    e.count_interval(&l),
                );
            }
        }
        Formula::ShareOfKeys {
            source,
            numerator,
            denominator,
        } => {
            let Some((id, _)) = locate(source) else {
                return;
            };
            let n = cells_of(design, &id, numerator);
            let d = cells_of(design, &id, denominator);
            let (value, interval) = share_cell(e, &n, &d);
            push(None, value, interval);
        }
        Formula::SharePerKey { source } => {
            let Some((id, _)) = locate(source) else {
                return;
            };
            let Some(m) = design.index(&id) else { return };
            let known = persons.clone().minus(&cells_of(design, &id, &[UNKNOWN]));
            for key in design.marginals[m].keys.iter().filter(|k| *k != UNKNOWN) {
                let n = cells_of(design, &id, &[key.as_str()]);
                let (value, interval) = share_cell(e, &n, &known);
                push(Some(key.clone()), value, interval);
            }
        }
        Formula::Repeat => {
            let cases = Lin::total(Level::Cases);
            let (pp, pc) = (e.published(&persons), e.published(&cases));
            let pc = pc.max(pp);
            let value = (pc > 0.0).then(|| 1.0 - pp / pc);
            let interval = e
                .ratio_interval(&persons, &cases)
                .map_or((0.0, 1.0), |(lo, hi)| {
                    ((1.0 - hi).clamp(0.0, 1.0), (1.0 - lo).clamp(0.0, 1.0))
                });
            push(None, value, interval);
        }
        Formula::Completeness { fields } => {
            for f in *fields {
                let unknown = source_lin(design, &Source::persons().filter(f, &[UNKNOWN]));
                let known = persons.clone().minus(&unknown);
                let (value, interval) = share_cell(e, &known, &persons);
                push(Some(f.to_string()), value, interval);
            }
        }
        Formula::CoverageOfEstimate | Formula::ConvictionsPerPerson => {
            let year: i32 = period.parse().unwrap_or(0);
            let t = e.published(&persons);
            let (t_lo, t_hi) = e.count_interval(&persons);
            if matches!(indicator.formula, Formula::CoverageOfEstimate) {
                let Some(row) = references
                    .estimates
                    .iter()
                    .find(|r| r.country == mission && r.year == year)
                else {
                    return;
                };
                let value = (row.estimate > 0.0).then(|| t / row.estimate);
                let lo = if row.high > 0.0 { t_lo / row.high } else { 0.0 };
                if row.low > 0.0 {
                    push(None, value, (lo, t_hi / row.low));
                }
                used.push(SourceUsed {
                    table: "estimated_victims".into(),
                    country: mission.to_string(),
                    year,
                    source: row.source.clone(),
                });
            } else {
                let Some(row) = references
                    .justice
                    .iter()
                    .find(|r| r.country == mission && r.year == year)
                else {
                    return;
                };
                if t_lo <= 0.0 {
                    return;
                }
                let value = (t > 0.0).then(|| row.convictions / t);
                push(
                    None,
                    value,
                    (row.convictions / t_hi, row.convictions / t_lo),
                );
                used.push(SourceUsed {
                    table: "convictions".into(),
                    country: mission.to_string(),
                    year,
                    source: row.source.clone(),
                });
            }
        }
        Formula::Flows { .. } => {}
    }
}

/// Every indicator of the design's release, from the noisy marginals: cells by mission and
/// period, the reference rows used. Pure post-processing.
pub fn indicators(
    design: &Design,
    indicators: &[Indicator],
    missions: &[String],
    periods: &[String],
    noisy: &[Vec<i64>],
    references: &References,
) -> (Vec<ReleaseIndicator>, Vec<SourceUsed>) {
    let estimates: Vec<CellEstimates<'_>> = (0..missions.len() * periods.len())
        .map(|cell| CellEstimates::new(design, noisy, cell))
        .collect();
    let mut used = Vec::new();
    let mut out = Vec::with_capacity(indicators.len());
    for indicator in indicators {
        let mut cells = Vec::new();
        if !matches!(indicator.formula, Formula::Flows { .. }) {
            for (mi, m) in missions.iter().enumerate() {
                for (pi, p) in periods.iter().enumerate() {
                    let e = &estimates[mi * periods.len() + pi];
                    indicator_cells(indicator, e, (m, p), references, &mut used, &mut cells);
                }
            }
        }
        out.push(ReleaseIndicator::new(indicator, cells));
    }
    super::sort_sources(&mut used);
    (out, used)
}

/// The denominator of the planning figure for shares: persons in a mission-year at the field's
/// scale.
pub const PLANNING_DENOMINATOR: f64 = 100.0;
/// The share the planning figure is taken at (the widest delta-method interval for a share).
pub const PLANNING_SHARE: f64 = 0.5;

/// Planning figures of one indicator in a marginal design, from the design's variances alone
/// (no data): the largest 95% half-width of its counts, and for shares and rates the largest
/// 95% half-width of a share of [`PLANNING_SHARE`] over [`PLANNING_DENOMINATOR`] (normal
/// approximation; about proportional to 1 / denominator for others).
pub fn planning_half_widths(design: &Design, indicator: &Indicator) -> (Option<f64>, Option<f64>) {
    let zeros: Vec<Vec<i64>> = design
        .marginals
        .iter()
        .map(|m| vec![0; m.keys.len()])
        .collect();
    let e = CellEstimates::new(design, &zeros, 0);
    let count = |l: &Lin| Z95 * e.covariance(l, l).max(0.0).sqrt();
    let share = |n: &Lin, d: &Lin| {
        let r = PLANNING_SHARE;
        let v = e.covariance(n, n) - 2.0 * r * e.covariance(n, d) + r * r * e.covariance(d, d);
        Z95 * v.max(0.0).sqrt() / PLANNING_DENOMINATOR
    };
    let max = |xs: Vec<f64>| xs.into_iter().reduce(f64::max);
    let persons = Lin::total(Level::Persons);
    let keys_of = |source: &Source| {
        locate(source).and_then(|(id, _)| {
            design
                .index(&id)
                .map(|m| (id, m, design.marginals[m].keys.clone()))
        })
    };
    match &indicator.formula {
        Formula::Count { source, .. } => (Some(count(&source_lin(design, source))), None),
        Formula::Breakdown { source } => {
            let Some((_, m, keys)) = keys_of(source) else {
                return (None, None);
            };
            let cells = (0..keys.len()).map(|k| Lin {
                t: [0.0; 2],
                cells: vec![(m, k, 1.0)],
            });
            (max(cells.map(|l| count(&l)).collect()), None)
        }
        Formula::ShareOfKeys {
            source,
            numerator,
            denominator,
        } => {
            let Some((id, _, _)) = keys_of(source) else {
                return (None, None);
            };
            let (n, d) = (
                cells_of(design, &id, numerator),
                cells_of(design, &id, denominator),
            );
            (Some(count(&n)), Some(share(&n, &d)))
        }
        Formula::SharePerKey { source } => {
            let Some((id, _, keys)) = keys_of(source) else {
                return (None, None);
            };
            let known = persons.clone().minus(&cells_of(design, &id, &[UNKNOWN]));
            let numerators: Vec<Lin> = keys
                .iter()
                .filter(|k| *k != UNKNOWN)
                .map(|k| cells_of(design, &id, &[k.as_str()]))
                .collect();
            (
                max(numerators.iter().map(count).collect()),
                max(numerators.iter().map(|n| share(n, &known)).collect()),
            )
        }
        Formula::Repeat => {
            let cases = Lin::total(Level::Cases);
            (Some(count(&cases)), Some(share(&persons, &cases)))
        }
        Formula::Completeness { fields } => {
            let shares = fields.iter().map(|f| {
                let unknown = source_lin(design, &Source::persons().filter(f, &[UNKNOWN]));
                share(&persons.clone().minus(&unknown), &persons)
            });
            (Some(count(&persons)), max(shares.collect()))
        }
        Formula::CoverageOfEstimate | Formula::ConvictionsPerPerson => {
            (Some(count(&persons)), None)
        }
        Formula::Flows { .. } => (None, None),
    }
}
