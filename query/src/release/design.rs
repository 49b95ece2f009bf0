//! The marginal design: a release measured as one noise plan over the marginals of two
//! contingency tables per mission and period, with rho allocated by declared weights only.
//!
//! # The tables
//!
//! - **Persons**: one row per person, mission and period (a "person-cell"). A person's attributes
//!   there are those of their first kept record in it (by record key), so each person-cell falls
//!   in exactly one cell of every breakdown, and the breakdowns of one mission and period all
//!   partition the same persons total.
//! - **Cases**: one row per kept record.
//!
//! A person keeps at most `k` records (the contribution bound, as for queries), so they have at
//! most `k` person-cells and `k` cases. Removing a person therefore changes each persons marginal
//! by 1 in at most `k` cells (L2 sensitivity `sqrt(k)`; `sqrt(k m)` for the exploitation types,
//! `m` types per record, a multi-valued breakdown), and each cases marginal by at most `k` in
//! total (L2 `k`).
//!
//! # The noise plan
//!
//! The marginals the requested indicators need are found first ([`Marginal`]): the persons and
//! cases totals, and one vector per breakdown over mission x period x key. A breakdown whose
//! indicators read only some keys keeps those keys and pools the others in [`REST`] (fewer cells,
//! less variance per cell once made consistent with the total). Each marginal gets the share
//! `weight / sum of weights` of the release's rho, where the weights are constants declared here
//! ([`weight`]), never read from the data; its discrete Gaussian sigma is calibrated to that rho by
//! OpenDP's zCDP map. The release's rho is the sum (zCDP composition) and is charged once, as a
//! rho: the (epsilon, delta) the request states is converted to rho once, for the whole release.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use serde::Serialize;

use crate::dp::{self, DpError, Released, Sensitivity};
use crate::indicators::{Counted, Formula, Indicator, Source};
use crate::ledger::{self, Paid};
use crate::plan::ROWS;
use crate::plan::{self, PlanError};
use crate::spec::{DEFAULT_LIST_ITEMS_BOUND, Dimension, Month, Period, UNKNOWN};

use super::PeriodKind;

/// The key that pools the keys of a breakdown no requested indicator reads.
pub const REST: &str = "rest";

/// Which table a marginal counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Persons,
    Cases,
}

/// What a marginal breaks its table down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum By {
    /// Nothing: the total.
    Total,
    /// A scalar dimension of the record.
    Field(&'static str),
    /// The exploitation types (multi-valued: a record falls under each of its types).
    ExploitationTypes,
    /// Whether any assistance type is recorded: `[0,0]`, `[1,12]` or `unknown`.
    AssistanceTypes,
}

/// The identity of a marginal: its table, breakdown and an optional one-key filter (the rows
/// outside the filter are pooled in [`REST`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct MarginalId {
    pub level: Level,
    pub by: By,
    pub filter: Option<(&'static str, &'static str)>,
}

impl MarginalId {
    const fn total(level: Level) -> MarginalId {
        MarginalId {
            level,
            by: By::Total,
            filter: None,
        }
    }

    /// A short readable name, e.g. `persons by gender`.
    pub fn describe(&self) -> String {
        let level = match self.level {
            Level::Persons => "persons",
            Level::Cases => "cases",
        };
        let mut text = match self.by {
            By::Total => level.to_string(),
            By::Field(f) => format!("{level} by {f}"),
            By::ExploitationTypes => format!("{level} by exploitation_type"),
            By::AssistanceTypes => format!("{level} by assistance recorded"),
        };
        if let Some((f, k)) = self.filter {
            text.push_str(&format!(" where {f} = {k}"));
        }
        text
    }
}

/// The declared weight of a marginal: its share of the release's rho is `weight / sum`. Public
/// constants, chosen once for the catalogue's accuracy targets on synthetic data at the scale of
/// a mission (about 100 persons a year); never read from the data being released.
pub fn weight(id: &MarginalId) -> f64 {
    match (id.level, id.by, id.filter) {
        (Level::Persons, By::Total, _) => 1.0,
        (Level::Persons, By::Field("gender"), None) => 3.0,
        (Level::Persons, By::Field("minor_at_registration"), None) => 4.0,
        (Level::Persons, By::Field("reintegration_outcome"), None) => 4.0,
        (Level::Persons, By::Field(_), Some(_)) => 2.5,
        (Level::Persons, By::ExploitationTypes, _) => 8.0,
        (Level::Cases, By::Total, _) => 4.0,
        _ => 1.0,
    }
}

/// One measured marginal and its noise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Marginal {
    pub id: MarginalId,
    /// Its keys in order (`""` for a total); [`REST`] last when some keys are pooled.
    pub keys: Vec<String>,
    /// A multi-valued breakdown: its cells do not partition the total.
    pub multi: bool,
    pub weight: f64,
    pub sensitivity: Sensitivity,
    /// The rho it spends (OpenDP's zCDP map at the sensitivity).
    pub rho: f64,
    /// Its discrete Gaussian sigma.
    pub sigma: f64,
    /// `P(|noise| <= h) >= 0.95` for one raw cell.
    pub half_width_95: f64,
    /// The share of the design's rho it was calibrated to (`rho` is at most this).
    #[serde(skip)]
    budget: f64,
}

impl Marginal {
    pub fn variance(&self) -> f64 {
        self.sigma * self.sigma
    }
    /// Whether its cells partition the total of its level.
    pub fn partition(&self) -> bool {
        self.id.by != By::Total && !self.multi
    }
}

/// The noise plan of a release.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Design {
    pub marginals: Vec<Marginal>,
    /// The rho of the whole design: the marginals' rho added in ledger units.
    pub rho: f64,
    pub contribution_bound: u32,
}

/// Which keys of a marginal some indicator reads.
#[derive(Debug, Clone, PartialEq)]
enum Need {
    All,
    Keys(BTreeSet<String>),
}

/// The marginal a source's counts come from, and the keys of it that the source sums.
pub fn locate(source: &Source) -> Option<(MarginalId, Option<Vec<&'static str>>)> {
    if source.destination.is_some() {
        return None;
    }
    let by_dimension = |d: &'static str| {
        if d == "exploitation_type" {
            By::ExploitationTypes
        } else {
            By::Field(d)
        }
    };
    let level = match source.counted {
        Counted::Persons => Level::Persons,
        Counted::Cases => Level::Cases,
        Counted::AssistanceTypes => {
            return Some((
                MarginalId {
                    level: Level::Cases,
                    by: By::AssistanceTypes,
                    filter: None,
                },
                None,
            ));
        }
    };
    match (source.filters.as_slice(), source.breakdown) {
        ([], None) => Some((MarginalId::total(level), None)),
        ([], Some(b)) => Some((
            MarginalId {
                level,
                by: by_dimension(b),
                filter: None,
            },
            None,
        )),
        ([(f, keys)], None) => Some((
            MarginalId {
                level,
                by: by_dimension(f),
                filter: None,
            },
            Some(keys.clone()),
        )),
        ([(f, keys)], Some(b)) if keys.len() == 1 => Some((
            MarginalId {
                level,
                by: by_dimension(b),
                filter: Some((f, keys[0])),
            },
            None,
        )),
        _ => None,
    }
}

/// The keys each source of `formula` reads: `(source, None)` for all of them.
fn reads(formula: &Formula) -> Vec<(Source, Need)> {
    let all = |s: &Source| (s.clone(), Need::All);
    let keys = |s: &Source, k: &[&str]| {
        (
            s.clone(),
            Need::Keys(k.iter().map(|k| k.to_string()).collect()),
        )
    };
    match formula {
        Formula::Count { source, within } => {
            let mut out = vec![match locate(source) {
                Some((_, Some(k))) => keys(source, &k),
                _ => all(source),
            }];
            out.extend(within.iter().map(all));
            out
        }
        Formula::Breakdown { source } | Formula::SharePerKey { source } => {
            vec![all(source), all(&Source::persons())]
        }
        Formula::ShareOfKeys {
            source,
            numerator,
            denominator,
        } => {
            let mut k: Vec<&str> = numerator.to_vec();
            k.extend(denominator.iter());
            vec![keys(source, &k)]
        }
        Formula::Completeness { fields } => {
            let mut out: Vec<(Source, Need)> = fields
                .iter()
                .map(|f| keys(&Source::persons().filter(f, &[UNKNOWN]), &[UNKNOWN]))
                .collect();
            out.push(all(&Source::persons()));
            out
        }
        Formula::Repeat => vec![all(&Source::persons()), all(&Source::cases())],
        Formula::CoverageOfEstimate | Formula::ConvictionsPerPerson => {
            vec![all(&Source::persons())]
        }
        Formula::Flows { .. } => Vec::new(),
    }
}

/// Every key of a marginal's breakdown, `unknown` last.
fn domain(by: By) -> Vec<String> {
    let none = Period {
        from: Month {
            year: 2000,
            month: 1,
        },
        to: Month {
            year: 2000,
            month: 1,
        },
    };
    match by {
        By::Total => vec![String::new()],
        By::Field(f) => Dimension::from_name(f)
            .map(|d| d.domain(&[], none))
            .unwrap_or_else(|| vec![UNKNOWN.to_string()]),
        By::ExploitationTypes => Dimension::ExploitationType.domain(&[], none),
        By::AssistanceTypes => vec!["[0,0]".into(), "[1,12]".into(), UNKNOWN.into()],
    }
}

impl Design {
    /// The noise plan of `indicators` at `rho` (the whole design's): the marginals they read,
    /// each with its share of `rho` by weight and the sigma OpenDP calibrates to it.
    pub fn plan(indicators: &[Indicator], rho: f64, contribution_bound: u32) -> dp::Result<Design> {
        let mut needs: BTreeMap<MarginalId, Need> = BTreeMap::new();
        for indicator in indicators {
            for (source, need) in reads(&indicator.formula) {
                let Some((id, _)) = locate(&source) else {
                    continue;
                };
                // A breakdown is made consistent with its level's total: measure it too.
                needs
                    .entry(MarginalId::total(id.level))
                    .or_insert(Need::All);
                let merged = match (needs.remove(&id), need) {
                    (Some(Need::All), _) | (_, Need::All) => Need::All,
                    (Some(Need::Keys(mut a)), Need::Keys(b)) => {
                        a.extend(b);
                        Need::Keys(a)
                    }
                    (None, keys) => keys,
                };
                needs.insert(id, merged);
            }
        }
        let k = u64::from(contribution_bound);
        let m = u64::from(DEFAULT_LIST_ITEMS_BOUND);
        let total_weight: f64 = needs.keys().map(weight).sum();
        let units = ledger::units_down(rho);
        let mut marginals = Vec::with_capacity(needs.len());
        for (id, need) in needs {
            let multi = id.by == By::ExploitationTypes;
            let full = domain(id.by);
            let keys = match need {
                Need::Keys(kept) if !multi && id.filter.is_none() && kept.len() < full.len() => {
                    let mut keys: Vec<String> =
                        full.iter().filter(|k| kept.contains(*k)).cloned().collect();
                    keys.push(REST.to_string());
                    keys
                }
                _ if id.filter.is_some() => {
                    let mut keys = full;
                    keys.push(REST.to_string());
                    keys
                }
                _ => full,
            };
            let sensitivity = match (id.level, multi) {
                (Level::Persons, false) => Sensitivity {
                    l0: k,
                    l1: k,
                    linf: 1,
                },
                (Level::Persons, true) => Sensitivity {
                    l0: k * m,
                    l1: k * m,
                    linf: 1,
                },
                (Level::Cases, _) => Sensitivity {
                    l0: k,
                    l1: k,
                    linf: k,
                },
            };
            let w = weight(&id);
            let share = ledger::at_most((units as f64 * w / total_weight).floor() as i64);
            let p = dp::preview_gaussian(&sensitivity, share)?;
            marginals.push(Marginal {
                id,
                keys,
                multi,
                weight: w,
                sensitivity,
                rho: p.rho,
                sigma: p.scale,
                half_width_95: p.half_width_95,
                budget: share,
            });
        }
        let spent: i64 = marginals.iter().map(|m| ledger::units_up(m.rho)).sum();
        if spent > units {
            return Err(DpError::Internal(format!(
                "the marginals spend {spent} units of rho, above the {units} planned"
            )));
        }
        Ok(Design {
            marginals,
            rho: ledger::at_most(spent),
            contribution_bound,
        })
    }

    /// The marginal with this identity.
    pub fn index(&self, id: &MarginalId) -> Option<usize> {
        self.marginals.iter().position(|m| m.id == *id)
    }

    /// The fields the marginals of `level` read, in a fixed order.
    fn fields(&self, level: Level) -> Vec<&'static str> {
        let mut fields = BTreeSet::new();
        for m in self.marginals.iter().filter(|m| m.id.level == level) {
            if let By::Field(f) = m.id.by {
                fields.insert(f);
            }
            if let Some((f, _)) = m.id.filter {
                fields.insert(f);
            }
        }
        fields.into_iter().collect()
    }

    /// The two statements: persons (one row per person-cell, first kept record) and cases, each
    /// grouped by mission, period and every field its marginals read.
    fn statements(&self, missions: &[String], period: Period, kind: PeriodKind) -> [String; 2] {
        let dim = |d: Dimension| plan::dimension_expr(d, period, missions);
        let period_dim = match kind {
            PeriodKind::Year => Dimension::RegistrationYear,
            PeriodKind::Quarter => Dimension::RegistrationQuarter,
        };
        let persons = self.fields(Level::Persons);
        let cases = self.fields(Level::Cases);
        let fields: BTreeSet<&str> = persons.iter().chain(&cases).copied().collect();
        let mut base = vec![
            "person_key".to_string(),
            "record_key".to_string(),
            format!("{} AS c_mission", dim(Dimension::Mission)),
            format!("{} AS c_period", dim(period_dim)),
        ];
        for f in &fields {
            if let Some(d) = Dimension::from_name(f) {
                base.push(format!("{} AS f_{f}", dim(d)));
            }
        }
        base.push(format!(
            "CASE WHEN exploitation_types IS NULL OR cardinality(exploitation_types) = 0 \
             THEN '{UNKNOWN}' ELSE array_to_string(array_slice(array_sort(array_distinct(\
             exploitation_types)), 1, {DEFAULT_LIST_ITEMS_BOUND}), ',') END AS f_types"
        ));
        base.push(format!(
            "CASE WHEN assistance_types IS NULL THEN '{UNKNOWN}' \
             WHEN cardinality(array_distinct(assistance_types)) = 0 THEN '[0,0]' \
             ELSE '[1,12]' END AS f_assistance"
        ));
        let mission_list: Vec<String> = missions
            .iter()
            .map(|m| format!("'{}'", m.replace('\'', "''")))
            .collect();
        let kept = format!(
            "WITH base AS (SELECT {base} FROM records \
               WHERE registration_month >= DATE '{from}' AND registration_month < DATE '{until}'), \
             filtered AS (SELECT * FROM base WHERE c_mission IN ({missions})), \
             ranked AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY person_key ORDER BY record_key {ROWS}) \
               AS contribution_rank FROM filtered), \
             kept AS (SELECT * FROM ranked WHERE contribution_rank <= {k})",
            base = base.join(", "),
            from = period.from.first_day(),
            until = period.to.next().first_day(),
            missions = if mission_list.is_empty() {
                "NULL".to_string()
            } else {
                mission_list.join(", ")
            },
            k = self.contribution_bound,
        );
        let group = |cols: &[String]| {
            let mut all = vec!["c_mission".to_string(), "c_period".to_string()];
            all.extend(cols.iter().cloned());
            all.join(", ")
        };
        let mut person_cols: Vec<String> = persons.iter().map(|f| format!("f_{f}")).collect();
        person_cols.push("f_types".into());
        let mut case_cols: Vec<String> = cases.iter().map(|f| format!("f_{f}")).collect();
        case_cols.push("f_assistance".into());
        let persons_sql = format!(
            "{kept}, firsts AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY person_key, c_mission, \
             c_period ORDER BY record_key {ROWS}) AS cell_rank FROM kept) \
             SELECT {cols}, COUNT(*) AS n FROM firsts WHERE cell_rank = 1 GROUP BY {cols}",
            cols = group(&person_cols)
        );
        let cases_sql = format!(
            "{kept} SELECT {cols}, COUNT(*) AS n FROM kept GROUP BY {cols}",
            cols = group(&case_cols)
        );
        [persons_sql, cases_sql]
    }
}

/// The exact marginals of `design` (one vector per marginal, mission x period x key, last
/// fastest) and the dataset generation. Plain data, not noised: only [`noise`] turns it into
/// something that may leave the engine. `_paid` is the ledger's proof that the noise is paid.
pub async fn exact_marginals(
    paid: &Paid,
    data: &crate::data::Data,
    design: &Design,
    missions: &[String],
    periods: &[String],
    (from, to, kind): (i32, i32, PeriodKind),
) -> Result<(Vec<Vec<i64>>, u64), PlanError> {
    let period = Period {
        from: Month {
            year: from,
            month: 1,
        },
        to: Month {
            year: to,
            month: 12,
        },
    };
    let statements = design.statements(missions, period, kind);
    let (generation, results) = plan::run_statements(paid, data, period, &statements).await?;
    let mut out: Vec<Vec<i64>> = design
        .marginals
        .iter()
        .map(|m| vec![0; missions.len() * periods.len() * m.keys.len()])
        .collect();
    let mission_at: BTreeMap<&str, usize> = missions
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let period_at: BTreeMap<&str, usize> = periods
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    let tables = [
        (Level::Persons, design.fields(Level::Persons), "f_types"),
        (Level::Cases, design.fields(Level::Cases), "f_assistance"),
    ];
    for ((level, fields, extra), batches) in tables.iter().zip(&results) {
        let mut names: Vec<String> = vec!["c_mission".into(), "c_period".into()];
        names.extend(fields.iter().map(|f| format!("f_{f}")));
        names.push(extra.to_string());
        for batch in batches {
            let strings = names
                .iter()
                .map(|n| {
                    let col = batch.column_by_name(n).ok_or_else(|| {
                        PlanError::Internal(format!("the design's result has no column {n}"))
                    })?;
                    arrow::compute::cast(col, &DataType::Utf8)
                        .map_err(|e| PlanError::Internal(e.to_string()))
                })
                .collect::<Result<Vec<_>, PlanError>>()?;
            let n = batch
                .column_by_name("n")
                .ok_or_else(|| PlanError::Internal("the design's result has no count".into()))?;
            let n = arrow::compute::cast(n, &DataType::Int64)
                .map_err(|e| PlanError::Internal(e.to_string()))?;
            let n = n.as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                let value = |i: usize| -> &str {
                    let c = strings[i].as_string::<i32>();
                    if c.is_null(row) {
                        UNKNOWN
                    } else {
                        c.value(row)
                    }
                };
                let (Some(&mi), Some(&pi)) = (mission_at.get(value(0)), period_at.get(value(1)))
                else {
                    continue;
                };
                let count = n.value(row);
                let field = |f: &str| -> &str {
                    fields
                        .iter()
                        .position(|x| *x == f)
                        .map_or(UNKNOWN, |i| value(2 + i))
                };
                let extra_value = value(2 + fields.len());
                for (marginal, vector) in design.marginals.iter().zip(out.iter_mut()) {
                    if marginal.id.level != *level {
                        continue;
                    }
                    let cell = (mi * periods.len() + pi) * marginal.keys.len();
                    let outside = marginal.id.filter.is_some_and(|(f, k)| field(f) != k);
                    let keys: Vec<&str> = match marginal.id.by {
                        By::Total => vec![""],
                        _ if outside => vec![REST],
                        By::Field(f) => vec![field(f)],
                        By::ExploitationTypes => extra_value.split(',').collect(),
                        By::AssistanceTypes => vec![extra_value],
                    };
                    for key in keys {
                        let at = marginal
                            .keys
                            .iter()
                            .position(|k| k == key)
                            .or_else(|| marginal.keys.iter().position(|k| k == REST))
                            .or_else(|| marginal.keys.iter().position(|k| k == UNKNOWN));
                        if let Some(at) = at {
                            vector[cell + at] += count;
                        }
                    }
                }
            }
        }
    }
    Ok((out, generation))
}

/// Every marginal released with its discrete Gaussian noise (OpenDP), in the design's order.
/// Call in a blocking thread: OpenDP measurements are not `Send`.
pub fn noise(design: &Design, exact: &[Vec<i64>]) -> dp::Result<Released<Vec<Vec<i64>>>> {
    if exact.len() != design.marginals.len() {
        return Err(DpError::Internal(format!(
            "{} exact marginals for {} planned",
            exact.len(),
            design.marginals.len()
        )));
    }
    let mut released = Vec::with_capacity(exact.len());
    for (m, values) in design.marginals.iter().zip(exact) {
        let r = dp::release_gaussian(values, &m.sensitivity, m.budget)?;
        if r.preview().scale != m.sigma {
            return Err(DpError::Internal(format!(
                "{} was released at sigma {}, not the planned {}",
                m.id.describe(),
                r.preview().scale,
                m.sigma
            )));
        }
        released.push(r.released());
    }
    Ok(Released::collect(released))
}
