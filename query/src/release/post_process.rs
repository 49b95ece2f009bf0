//! Post-processing a release (free: it only reads noisy values): consistent totals and
//! breakdowns, then each indicator's cells with their intervals.

use std::collections::{BTreeSet, HashMap};

use crate::indicators::{Formula, Source};
use crate::spec::UNKNOWN;

use super::compute::sum_interval;
use super::{Counts, Noisy, References, ReleaseCell, ReleaseIndicator, ReleasePlan, SourceUsed};

/// The noisy counts of a release by source, and the lookups post-processing makes.
struct Table<'a> {
    by_source: HashMap<&'a Source, &'a Counts>,
    empty: Counts,
}

impl<'a> Table<'a> {
    fn new(plan: &'a ReleasePlan, counts: &'a [Counts]) -> Self {
        Table {
            by_source: plan.queries.iter().map(|(s, _, _)| s).zip(counts).collect(),
            empty: Counts::new(),
        }
    }

    fn get(&self, s: &Source) -> &Counts {
        self.by_source.get(s).copied().unwrap_or(&self.empty)
    }

    /// The keys a source released, in domain order (`unknown` last).
    fn keys_of(&self, s: &Source) -> Vec<String> {
        let mut keys: Vec<String> = self
            .get(s)
            .keys()
            .map(|(_, _, k)| k.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if let Some(at) = keys.iter().position(|k| k == UNKNOWN) {
            let u = keys.remove(at);
            keys.push(u);
        }
        keys
    }

    /// The keys a source released in one mission and period, sorted.
    fn keys_in(&self, s: &Source, m: &str, p: &str) -> Vec<&String> {
        let mut keys: Vec<&String> = self
            .get(s)
            .keys()
            .filter(|(cm, cp, _)| cm == m && cp == p)
            .map(|(_, _, k)| k)
            .collect();
        keys.sort();
        keys
    }

    fn noisy(&self, s: &Source, m: &str, p: &str, k: &str) -> Noisy {
        self.get(s)
            .get(&(m.to_string(), p.to_string(), k.to_string()))
            .copied()
            .unwrap_or(Noisy {
                value: 0.0,
                scale: 0.0,
            })
    }
}

/// Steps 1-2 of the module docs: per mission and period, the persons total re-estimated from
/// its own noisy value and the breakdowns that partition it, and each such breakdown projected
/// and rounded so that it sums to the total.
struct Consistent {
    totals: HashMap<(String, String), f64>,
    parts: HashMap<(Source, String, String), Vec<(String, f64)>>,
}

fn consistent(plan: &ReleasePlan, table: &Table<'_>) -> Consistent {
    let total = Source::persons();
    let partitions: Vec<Source> = plan
        .indicators
        .iter()
        .filter_map(|i| match &i.formula {
            Formula::Breakdown { source } => Some(source.clone()),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut totals = HashMap::new();
    let mut parts = HashMap::new();
    for m in &plan.missions {
        for p in &plan.periods {
            let t = table.noisy(&total, m, p, "");
            let mut weight = if t.scale > 0.0 {
                1.0 / t.variance()
            } else {
                0.0
            };
            let mut weighted = t.value * weight;
            for b in &partitions {
                let cells: Vec<Noisy> = table
                    .keys_of(b)
                    .iter()
                    .map(|k| table.noisy(b, m, p, k))
                    .collect();
                let var: f64 = cells.iter().map(|c| c.variance()).sum();
                if var > 0.0 {
                    weight += 1.0 / var;
                    weighted += cells.iter().map(|c| c.value).sum::<f64>() / var;
                }
            }
            let combined = if weight > 0.0 { weighted / weight } else { 0.0 };
            let t_int = combined.round().max(0.0);
            totals.insert((m.clone(), p.clone()), t_int);
            for b in &partitions {
                let keys = table.keys_of(b);
                let raw: Vec<f64> = keys.iter().map(|k| table.noisy(b, m, p, k).value).collect();
                let ints = integer_partition(&project_simplex(&raw, t_int), t_int);
                parts.insert(
                    (b.clone(), m.clone(), p.clone()),
                    keys.into_iter().zip(ints).collect(),
                );
            }
        }
    }
    Consistent { totals, parts }
}

/// Significance of every interval: 95%.
const ALPHA: f64 = 0.05;

/// One mission and period of one indicator: what its cells are computed from, and where they go.
struct At<'a> {
    table: &'a Table<'a>,
    consistent: &'a Consistent,
    references: &'a References,
    m: &'a String,
    p: &'a String,
    total: Source,
    cells: Vec<ReleaseCell>,
    used: Vec<SourceUsed>,
}

impl At<'_> {
    fn noisy(&self, s: &Source, k: &str) -> Noisy {
        self.table.noisy(s, self.m, self.p, k)
    }

    /// The consistent persons total.
    fn total_int(&self) -> f64 {
        self.consistent.totals[&(self.m.clone(), self.p.clone())]
    }

    /// A source's count, rounded and clipped at 0 (the total is the consistent one).
    fn count(&self, s: &Source) -> f64 {
        if *s == self.total {
            self.total_int()
        } else {
            self.noisy(s, "").value.round().max(0.0)
        }
    }

    /// Publish a cell; its interval is widened to contain the published value.
    fn push(&mut self, key: Option<String>, value: Option<f64>, (lo, hi): (f64, f64)) {
        let (lo, hi) = match value {
            Some(v) => (lo.min(v), hi.max(v)),
            None => (lo, hi),
        };
        self.cells.push(ReleaseCell {
            mission: self.m.clone(),
            period: self.p.clone(),
            key,
            value,
            lower: lo,
            upper: hi,
        });
    }
}

/// The post-processed indicators of a release from its noisy counts (same order as
/// `plan.queries`), and the reference values it used. Pure: no budget, no randomness.
pub fn post_process(
    plan: &ReleasePlan,
    counts: &[Counts],
    references: &References,
) -> (Vec<ReleaseIndicator>, Vec<SourceUsed>, Vec<String>) {
    let table = Table::new(plan, counts);
    let consistent = consistent(plan, &table);
    let mut out = Vec::new();
    let mut used = Vec::new();
    let mut notes = Vec::new();
    for indicator in &plan.indicators {
        let mut cells = Vec::new();
        for m in &plan.missions {
            for p in &plan.periods {
                let mut at = At {
                    table: &table,
                    consistent: &consistent,
                    references,
                    m,
                    p,
                    total: Source::persons(),
                    cells: Vec::new(),
                    used: Vec::new(),
                };
                match &indicator.formula {
                    Formula::Count { .. } | Formula::Breakdown { .. } | Formula::Flows { .. } => {
                        count_cells(&mut at, &indicator.formula)
                    }
                    Formula::CoverageOfEstimate | Formula::ConvictionsPerPerson => {
                        reference_cells(&mut at, &indicator.formula)
                    }
                    other => share_cells(&mut at, other),
                }
                cells.append(&mut at.cells);
                used.append(&mut at.used);
            }
        }
        if indicator.formula.uses_reference() {
            let expected = plan.missions.len() * plan.periods.len();
            if cells.len() < expected {
                notes.push(format!(
                    "{}: {} of {expected} mission-years have no cell (no reference row, or too few persons for a bounded rate)",
                    indicator.id,
                    expected - cells.len()
                ));
            }
        }
        out.push(ReleaseIndicator::new(indicator, cells));
    }
    super::sort_sources(&mut used);
    (out, used, notes)
}

/// Counts, breakdowns and flows: non-negative integers at their raw value's interval.
fn count_cells(at: &mut At<'_>, formula: &Formula) {
    let a = ALPHA;
    match formula {
        Formula::Count { source, within } => {
            let mut v = at.count(source);
            if let Some(sup) = within {
                v = v.min(at.count(sup));
            }
            let interval = at.noisy(source, "").interval(a);
            at.push(None, Some(v), interval);
        }
        Formula::Breakdown { source } => {
            let key = (source.clone(), at.m.clone(), at.p.clone());
            for (k, v) in &at.consistent.parts[&key] {
                let interval = at.noisy(source, k).interval(a);
                at.push(Some(k.clone()), Some(*v), interval);
            }
        }
        Formula::Flows { source } => {
            for k in at.table.keys_in(source, at.m, at.p) {
                let x = at.noisy(source, k);
                at.push(
                    Some(k.clone()),
                    Some(x.value.round().max(0.0)),
                    x.interval(a),
                );
            }
        }
        _ => {}
    }
}

/// Shares and rates of two noisy counts: each bound at its share of the 5% (union bound).
fn share_cells(at: &mut At<'_>, formula: &Formula) {
    let a = ALPHA;
    let total = Source::persons();
    match formula {
        Formula::ShareOfKeys {
            source,
            numerator,
            denominator,
        } => {
            let pick = |keys: &[&str]| -> Vec<Noisy> {
                keys.iter().map(|k| at.noisy(source, k)).collect()
            };
            let rest: Vec<&str> = denominator
                .iter()
                .copied()
                .filter(|k| !numerator.contains(k))
                .collect();
            let (num, other) = (pick(numerator), pick(&rest));
            let n: f64 = num.iter().map(|x| x.value.round().max(0.0)).sum();
            let r: f64 = other.iter().map(|x| x.value.round().max(0.0)).sum();
            let value = (n + r > 0.0).then(|| n / (n + r));
            let (n_lo, n_hi) = sum_interval(&num, a / 2.0);
            let (r_lo, r_hi) = sum_interval(&other, a / 2.0);
            at.push(
                None,
                value,
                (share(n_lo, n_lo + r_hi), share_hi(n_hi, n_hi + r_lo)),
            );
        }
        Formula::SharePerKey { source } => {
            let t = at.noisy(&total, "");
            let u = at.noisy(source, UNKNOWN);
            let t_int = at.total_int();
            let known = t_int - u.value.round().max(0.0).min(t_int);
            let (t_lo, t_hi) = t.interval(a / 4.0);
            let (u_lo, u_hi) = u.interval(a / 4.0);
            for k in at.table.keys_of(source).iter().filter(|k| *k != UNKNOWN) {
                let x = at.noisy(source, k);
                let v = x.value.round().max(0.0);
                let value = (known > 0.0).then(|| (v / known).min(1.0));
                let (x_lo, x_hi) = x.interval(a / 2.0);
                at.push(
                    Some(k.clone()),
                    value,
                    (share(x_lo, t_hi - u_lo), share_hi(x_hi, t_lo - u_hi)),
                );
            }
        }
        Formula::Repeat => {
            let persons = at.total_int();
            let cases = at.count(&Source::cases()).max(persons);
            let value = (cases > 0.0).then(|| 1.0 - persons / cases);
            let (p_lo, p_hi) = at.noisy(&total, "").interval(a / 2.0);
            let (c_lo, c_hi) = at.noisy(&Source::cases(), "").interval(a / 2.0);
            let lo = if c_lo > 0.0 { 1.0 - p_hi / c_lo } else { 0.0 };
            let hi = if c_hi > 0.0 { 1.0 - p_lo / c_hi } else { 1.0 };
            at.push(None, value, (lo.clamp(0.0, 1.0), hi.clamp(0.0, 1.0)));
        }
        Formula::Completeness { fields } => {
            let t_int = at.total_int();
            let (t_lo, t_hi) = at.noisy(&total, "").interval(a / 2.0);
            for f in *fields {
                let s = Source::persons().filter(f, &[UNKNOWN]);
                let u = at.noisy(&s, "");
                let unknown = u.value.round().max(0.0).min(t_int);
                let value = (t_int > 0.0).then(|| 1.0 - unknown / t_int);
                let (u_lo, u_hi) = u.interval(a / 2.0);
                let lo = if t_lo > 0.0 { 1.0 - u_hi / t_lo } else { 0.0 };
                let hi = if t_hi > 0.0 { 1.0 - u_lo / t_hi } else { 1.0 };
                at.push(
                    Some(f.to_string()),
                    value,
                    (lo.clamp(0.0, 1.0), hi.clamp(0.0, 1.0)),
                );
            }
        }
        _ => {}
    }
}

/// Rates against a reference table (taken as published, its range included); a mission-year
/// without a reference row, or with too few persons for a bounded rate, has no cell.
fn reference_cells(at: &mut At<'_>, formula: &Formula) {
    let year: i32 = at.p.parse().unwrap_or(0);
    let t_int = at.total_int();
    let (t_lo, t_hi) = at.noisy(&Source::persons(), "").interval(ALPHA);
    match formula {
        Formula::CoverageOfEstimate => {
            let refs = at.references;
            let Some(row) = refs
                .estimates
                .iter()
                .find(|r| r.country == *at.m && r.year == year)
            else {
                return;
            };
            let value = (row.estimate > 0.0).then(|| t_int / row.estimate);
            let lo = if row.high > 0.0 { t_lo / row.high } else { 0.0 };
            let hi = if row.low > 0.0 {
                t_hi / row.low
            } else {
                f64::INFINITY
            };
            if hi.is_finite() {
                at.push(None, value, (lo, hi));
            }
            at.used.push(SourceUsed {
                table: "estimated_victims".into(),
                country: at.m.clone(),
                year,
                source: row.source.clone(),
            });
        }
        Formula::ConvictionsPerPerson => {
            let refs = at.references;
            let Some(row) = refs
                .justice
                .iter()
                .find(|r| r.country == *at.m && r.year == year)
            else {
                return;
            };
            if t_lo <= 0.0 {
                // Too few persons for a bounded rate.
                return;
            }
            let value = (t_int > 0.0).then(|| row.convictions / t_int);
            at.push(
                None,
                value,
                (row.convictions / t_hi, row.convictions / t_lo),
            );
            at.used.push(SourceUsed {
                table: "convictions".into(),
                country: at.m.clone(),
                year,
                source: row.source.clone(),
            });
        }
        _ => {}
    }
}

/// `n / d` in [0, 1], 0 when `d` is not positive (the lower end of a share).
fn share(n: f64, d: f64) -> f64 {
    if d > 0.0 {
        (n / d).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// `n / d` in [0, 1], 1 when `d` is not positive (the upper end of a share).
fn share_hi(n: f64, d: f64) -> f64 {
    if d > 0.0 {
        (n / d).clamp(0.0, 1.0)
    } else {
        1.0
    }
}

/// The Euclidean projection of `x` onto {y ≥ 0, Σy = total} (Duchi et al. 2008).
pub fn project_simplex(x: &[f64], total: f64) -> Vec<f64> {
    if x.is_empty() {
        return Vec::new();
    }
    if total <= 0.0 {
        return vec![0.0; x.len()];
    }
    let mut u = x.to_vec();
    u.sort_by(|a, b| b.total_cmp(a));
    let mut sum = 0.0;
    let mut theta = 0.0;
    for (j, uj) in u.iter().enumerate() {
        sum += uj;
        let t = (sum - total) / (j as f64 + 1.0);
        if uj - t > 0.0 {
            theta = t;
        }
    }
    x.iter().map(|xi| (xi - theta).max(0.0)).collect()
}

/// Non-negative integers summing to `total` (an integer), closest to `x` (which sums to it):
/// floors, then the remaining units to the largest remainders (ties to the first).
pub fn integer_partition(x: &[f64], total: f64) -> Vec<f64> {
    let mut out: Vec<f64> = x.iter().map(|v| v.max(0.0).floor()).collect();
    let mut left = (total - out.iter().sum::<f64>()).round() as i64;
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&i, &j| {
        let (ri, rj) = (x[i] - x[i].floor(), x[j] - x[j].floor());
        rj.total_cmp(&ri).then(i.cmp(&j))
    });
    let mut at = 0;
    while left > 0 && !order.is_empty() {
        out[order[at % order.len()]] += 1.0;
        left -= 1;
        at += 1;
    }
    while left < 0 {
        // Floating point drift only: take from the largest.
        let Some((i, _)) = out
            .iter()
            .enumerate()
            .filter(|(_, v)| **v >= 1.0)
            .max_by(|a, b| a.1.total_cmp(b.1))
        else {
            break;
        };
        out[i] -= 1.0;
        left += 1;
    }
    out
}
