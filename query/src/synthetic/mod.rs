//! DP synthetic microdata: MST (McKenna, Miklau and Sheldon 2021, winner of the 2018 NIST
//! challenge), the form CTDC publishes victim-level data in.
//!
//! A request names the columns (public, generalised fields of the canonical record; never a
//! key), the registration years, the budget and the records kept per person `k`. Its loss is
//! fixed from those public inputs alone ([`SyntheticPlan`]) and charged in rho before any record
//! is read. Then, with the records of the period and missions bounded to each person's first `k`
//! in record-key order (the query side's rule):
//!
//! 1. every 1-way marginal is measured with discrete Gaussian noise (a third of rho; one person
//!    moves `d` marginals by at most `k` each, so the L2 sensitivity is `k·√d`), and categories
//!    whose noisy count is below three sigmas are merged into one (the reference's
//!    compression; a merged cell is measured by the sum of its noisy cells);
//! 2. `d − 1` 2-way marginals forming a maximum spanning tree are selected, each by the
//!    exponential mechanism (OpenDP's noisy max with Gumbel noise, a third of rho over the
//!    `d − 1` rounds) on the score `‖x_ab − x̂_ab‖₁`, the L1 error of the independence model
//!    fitted to step 1, so the pairs independence explains worst are kept (one person moves a
//!    score by at most `k`);
//! 3. the selected 2-way marginals are measured with discrete Gaussian noise (a third of rho;
//!    L2 sensitivity `k·√(d−1)`);
//! 4. a tree model is fitted to all the noisy marginals ([`model::estimate`]);
//! 5. `N` records are sampled from it ([`model::sample`]), `N` the noisy total, and merged
//!    categories are given back one of their original values, uniformly.
//!
//! Only steps 1 to 3 read records, and only through OpenDP: the charge is the sum of OpenDP's
//! maps of the two Gaussian measurements and the `d − 1` selections, at most the rho of the
//! request's (epsilon, delta). Steps 4 and 5 are post-processing.

mod kernel;
pub mod model;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::dp::{self, Loss, Released, Sensitivity};
use crate::ledger::{Cost, Paid};
use crate::plan::{self, PlanError, quote};
use crate::spec::{Dimension, Month, Period, dimensions};
use crate::spec::{NO, UNKNOWN, YES};
use ctstats_schemas::codes::{CodeList, ExploitationType};

use model::{Clique, Measurement, Tree};

/// The columns a request without `columns` gets.
pub const DEFAULT_COLUMNS: &[&str] = &[
    "mission",
    "registration_year",
    "gender",
    "age_band",
    "citizenship",
    "country_of_exploitation",
    EXPLOITATION_TYPES,
    "referral_source",
    "assisted_return",
];

/// The column name that stands for one yes/no column per exploitation type.
pub const EXPLOITATION_TYPES: &str = "exploitation_types";
/// The prefix of an exploitation type's yes/no column.
pub const EXPLOITATION_PREFIX: &str = "exploitation_";
/// The most columns a table may have.
pub const MAX_COLUMNS: usize = 32;
/// The most cells one column's domain may have (the registration months of 30 years).
pub const MAX_DOMAIN: usize = 400;
/// The most records a synthetic table may have.
pub const MAX_ROWS: usize = 20_000_000;
/// The default records kept per person: each synthetic row then stands for one person.
pub const DEFAULT_CONTRIBUTION_BOUND: u32 = 1;
/// Mirror-descent steps of the final fit (the reference uses 5,000; the loss has stopped
/// falling well before on the trees here, and the fit stops early when it does).
pub const FIT_ITERATIONS: usize = 5_000;

/// A synthetic table asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyntheticRequest {
    /// A name for people, e.g. `Researchers' table 2024`.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// The columns, in order (`GET /v1/dimensions` lists the fields; `exploitation_types` is one
    /// yes/no column per type, `exploitation_<type>` one of them). Default: mission,
    /// registration_year, gender, age_band, citizenship, country_of_exploitation, the
    /// exploitation types, referral_source, assisted_return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// Missions (ISO alpha-3); absent: every mission the service serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missions: Option<Vec<String>>,
    /// First calendar year of registration.
    #[schema(minimum = 1900, maximum = 2100)]
    pub from: i32,
    /// Last calendar year, inclusive.
    #[schema(minimum = 1900, maximum = 2100)]
    pub to: i32,
    /// The table's epsilon at `delta` (converted to rho once, by OpenDP).
    #[schema(exclusive_minimum = 0.0, maximum = 1000.0)]
    pub epsilon: f64,
    #[schema(exclusive_minimum = 0.0, maximum = 0.01)]
    pub delta: f64,
    /// Records kept per person (1-20); default 1, so each row stands for one person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 20)]
    pub max_records_per_person: Option<u32>,
}

/// How a column is computed from the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Dimension(Dimension),
    /// `yes` when the type is among the record's exploitation types, `no` when others are,
    /// `unknown` when none are recorded.
    Exploitation(ExploitationType),
}

/// One column of a synthetic table and its public domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub source: Source,
    pub domain: Vec<String>,
}

/// Everything about a request that does not depend on the records: the columns, the noise and
/// the charge.
#[derive(Debug, Clone)]
pub struct SyntheticPlan {
    pub request: SyntheticRequest,
    pub columns: Vec<Column>,
    pub missions: Vec<String>,
    pub period: Period,
    pub noise: Noise,
    pub hash: String,
}

/// The noise and charge of MST over `d` columns with `k` records per person: a function of
/// `d`, `k`, epsilon and delta alone.
#[derive(Debug, Clone)]
pub struct Noise {
    pub contribution_bound: u32,
    /// The 1-way measurement (all marginals as one vector).
    pub one_way: dp::GaussianPreview,
    pub one_way_sensitivity: Sensitivity,
    /// Each of the `d − 1` selections.
    pub selection: dp::SelectionPreview,
    pub two_way: dp::GaussianPreview,
    pub two_way_sensitivity: Sensitivity,
    /// The rho each of the three steps may spend: a third of the request's.
    pub step_rho: f64,
    /// What the ledger is charged: the sum of OpenDP's maps.
    pub loss: Loss,
    /// The loss as (epsilon, delta) at the request's delta.
    pub cost: Cost,
}

impl Noise {
    /// Calibrate the three steps for `d` columns (at least 2) and `k` records per person at
    /// (epsilon, delta), each step a third of the rho OpenDP converts them to (OpenDP
    /// calibrates: call on a blocking thread).
    pub fn calibrate(d: usize, k: u32, epsilon: f64, delta: f64) -> Result<Noise, RequestError> {
        if d < 2 {
            return Err(bad(format!("columns: at least 2 (got {d})")));
        }
        let dp = |e: dp::DpError| bad(e.to_string());
        let rho = dp::rho_for(epsilon, delta).map_err(dp)?;
        let d = d as u64;
        let k64 = u64::from(k);
        let one_way_sensitivity = Sensitivity {
            l0: d * k64,
            l1: d * k64,
            linf: k64,
        };
        let two_way_sensitivity = Sensitivity {
            l0: (d - 1) * k64,
            l1: (d - 1) * k64,
            linf: k64,
        };
        let third = rho / 3.0;
        let one_way = dp::preview_gaussian(&one_way_sensitivity, third).map_err(dp)?;
        let two_way = dp::preview_gaussian(&two_way_sensitivity, third).map_err(dp)?;
        let selection = dp::preview_selection(f64::from(k), third / (d - 1) as f64).map_err(dp)?;
        let spent = one_way.rho + selection.rho * (d - 1) as f64 + two_way.rho;
        if spent > rho {
            return Err(bad(format!(
                "internal: the plan spends rho {spent}, more than {rho}"
            )));
        }
        Ok(Noise {
            contribution_bound: k,
            one_way,
            one_way_sensitivity,
            selection,
            two_way,
            two_way_sensitivity,
            step_rho: third,
            loss: Loss::rho(spent),
            cost: Cost {
                epsilon: dp::epsilon_of_rho(spent, delta).map_err(dp)?,
                delta,
            },
        })
    }
}

/// Why a request cannot be planned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

fn bad(message: impl Into<String>) -> RequestError {
    RequestError(message.into())
}

/// The columns a column name stands for.
fn columns_of(
    name: &str,
    missions: &[String],
    period: Period,
) -> Result<Vec<Column>, RequestError> {
    let flag = |t: ExploitationType| Column {
        name: format!("{EXPLOITATION_PREFIX}{}", t.name()),
        source: Source::Exploitation(t),
        domain: vec![YES.into(), NO.into(), UNKNOWN.into()],
    };
    if name == EXPLOITATION_TYPES {
        return Ok(ExploitationType::ALL.iter().map(|t| flag(*t)).collect());
    }
    if let Some(t) = name
        .strip_prefix(EXPLOITATION_PREFIX)
        .and_then(ExploitationType::from_name)
    {
        return Ok(vec![flag(t)]);
    }
    let dim = Dimension::from_name(name).filter(|d| *d != Dimension::ExploitationType);
    let Some(dim) = dim else {
        let known: Vec<&str> = dimensions()
            .into_iter()
            .filter(|d| *d != Dimension::ExploitationType)
            .map(Dimension::name)
            .chain([EXPLOITATION_TYPES])
            .collect();
        return Err(bad(format!(
            "columns: {name:?} is not a public field of the record; the columns are {}",
            known.join(", ")
        )));
    };
    let mut domain = dim.domain(missions, period);
    // The records are filtered to the missions and the period, so these are never unknown.
    if matches!(
        dim,
        Dimension::Mission
            | Dimension::RegistrationYear
            | Dimension::RegistrationQuarter
            | Dimension::RegistrationMonth
    ) {
        domain.retain(|k| k != UNKNOWN);
    }
    Ok(vec![Column {
        name: name.to_string(),
        source: Source::Dimension(dim),
        domain,
    }])
}

impl SyntheticRequest {
    /// Check the request and fix its noise and charge (OpenDP calibrates: call on a blocking
    /// thread). `service_missions` is the service's mission domain.
    pub fn plan(&self, service_missions: &[String]) -> Result<SyntheticPlan, RequestError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(bad("name: 1 to 200 characters"));
        }
        if !(1900..=2100).contains(&self.from) || !(self.from..=2100).contains(&self.to) {
            return Err(bad(format!(
                "from, to: years from 1900 to 2100 with from <= to (got {} to {})",
                self.from, self.to
            )));
        }
        if self.to - self.from >= 30 {
            return Err(bad("from, to: at most 30 years"));
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0 && self.epsilon <= 1000.0) {
            return Err(bad("epsilon: a number above 0 and at most 1000"));
        }
        if !(self.delta.is_finite() && self.delta > 0.0 && self.delta <= 0.01) {
            return Err(bad("delta: a number above 0 and at most 0.01"));
        }
        let k = self
            .max_records_per_person
            .unwrap_or(DEFAULT_CONTRIBUTION_BOUND);
        if !(1..=crate::spec::MAX_CONTRIBUTION_BOUND).contains(&k) {
            return Err(bad(format!(
                "max_records_per_person: 1 to {}",
                crate::spec::MAX_CONTRIBUTION_BOUND
            )));
        }
        let mut missions: Vec<String> = match &self.missions {
            None => service_missions.to_vec(),
            Some(m) => {
                for x in m {
                    if !service_missions.contains(x) {
                        return Err(bad(format!(
                            "missions: {x:?} is not a mission this service serves"
                        )));
                    }
                }
                m.clone()
            }
        };
        missions.sort();
        missions.dedup();
        if missions.is_empty() {
            return Err(bad("missions: at least one"));
        }
        let period = Period {
            from: Month {
                year: self.from,
                month: 1,
            },
            to: Month {
                year: self.to,
                month: 12,
            },
        };
        let names: Vec<String> = match &self.columns {
            Some(c) => c.clone(),
            None => DEFAULT_COLUMNS.iter().map(|s| s.to_string()).collect(),
        };
        let mut columns: Vec<Column> = Vec::new();
        for name in &names {
            for column in columns_of(name, &missions, period)? {
                if columns.iter().any(|c| c.name == column.name) {
                    return Err(bad(format!("columns: {} is named twice", column.name)));
                }
                columns.push(column);
            }
        }
        if columns.len() < 2 || columns.len() > MAX_COLUMNS {
            return Err(bad(format!(
                "columns: 2 to {MAX_COLUMNS} (got {})",
                columns.len()
            )));
        }
        if let Some(c) = columns.iter().find(|c| c.domain.len() > MAX_DOMAIN) {
            return Err(bad(format!(
                "columns: {} has {} values, more than {MAX_DOMAIN}",
                c.name,
                c.domain.len()
            )));
        }
        let noise = Noise::calibrate(columns.len(), k, self.epsilon, self.delta)?;
        let request = SyntheticRequest {
            name: name.to_string(),
            columns: Some(columns.iter().map(|c| c.name.clone()).collect()),
            missions: Some(missions.clone()),
            max_records_per_person: Some(k),
            ..self.clone()
        };
        let canonical = serde_json::to_string(&request).unwrap_or_default();
        let hash = {
            let mut h = blake3::Hasher::new_derive_key("ctstats synthetic request v1");
            h.update(canonical.as_bytes());
            h.finalize().to_hex().to_string()
        };
        Ok(SyntheticPlan {
            request,
            columns,
            missions,
            period,
            noise,
            hash,
        })
    }
}

/// Combinations of cells (one per column) and how many records have each.
pub type Counts = Vec<(Vec<u16>, i64)>;

/// The exact contingency table of the bounded records: each distinct combination of cell
/// indices (one per column) and how many records have it. Plain data, not noised: only
/// [`synthesize`] turns it into something that may leave the engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contingency {
    pub rows: Counts,
    pub generation: u64,
}

/// A column's expression over `base` (below): dimensions are computed there; an exploitation
/// flag reads `types`, the record's types as `,a,b,` text (null when none are recorded), which
/// `base` builds once for all nine flags.
fn column_expr(column: &Column, plan: &SyntheticPlan) -> (String, bool) {
    match column.source {
        Source::Dimension(dim) => (
            plan::dimension_expr(dim, plan.period, &plan.missions),
            false,
        ),
        Source::Exploitation(t) => (
            format!(
                "CASE WHEN types IS NULL THEN {unknown} WHEN strpos(types, {needle}) > 0 \
                 THEN {yes} ELSE {no} END",
                unknown = quote(UNKNOWN),
                needle = quote(&format!(",{},", t.name())),
                yes = quote(YES),
                no = quote(NO),
            ),
            true,
        ),
    }
}

/// The statement: the records of the period and missions, each person's first `k` in
/// record-key order, counted by every column. The bound is a running comparison with the
/// record `k` rows back in (person, record key) order, which the snapshot's declared order
/// streams without a sort or a partition per person (the same rows as `ROW_NUMBER() OVER
/// (PARTITION BY person_key ORDER BY record_key) <= k`).
pub(crate) fn statement(plan: &SyntheticPlan) -> String {
    let mut inner = Vec::new();
    let mut outer = Vec::new();
    for (i, c) in plan.columns.iter().enumerate() {
        let (expr, on_types) = column_expr(c, plan);
        if on_types {
            outer.push(format!("{expr} AS c{i}"));
        } else {
            inner.push(format!("{expr} AS c{i}"));
            outer.push(format!("c{i}"));
        }
    }
    inner.push(
        "CASE WHEN exploitation_types IS NULL OR cardinality(exploitation_types) = 0 THEN NULL \
         ELSE concat(',', array_to_string(exploitation_types, ','), ',') END AS types"
            .to_string(),
    );
    let names: Vec<String> = (0..plan.columns.len()).map(|i| format!("c{i}")).collect();
    format!(
        "WITH base AS (SELECT person_key, record_key, {inner} FROM records \
           WHERE registration_month >= DATE '{from}' AND registration_month < DATE '{until}' \
           AND reporting_mission IN ({missions})), \
         ranked AS (SELECT *, LAG(person_key, {k}) OVER (ORDER BY person_key, record_key \
           {rows}) AS earlier FROM base), \
         kept AS (SELECT {outer} FROM ranked WHERE earlier IS NULL OR earlier <> person_key) \
         SELECT {names}, COUNT(*) AS n FROM kept GROUP BY {names}",
        inner = inner.join(", "),
        outer = outer.join(", "),
        from = plan.period.from.first_day(),
        until = plan.period.to.next().first_day(),
        missions = plan::list(&plan.missions),
        k = plan.noise.contribution_bound,
        rows = plan::ROWS,
        names = names.join(", "),
    )
}

/// The exact contingency table of `plan`'s bounded records: by the kernel over the snapshot
/// when it is loaded, else by the statement. `_paid` is the ledger's proof that the noise is
/// paid.
pub async fn contingency(
    paid: &Paid,
    data: &crate::data::Data,
    plan: &SyntheticPlan,
) -> Result<Contingency, PlanError> {
    let prune = |path: &str| plan::in_period(path, plan.period);
    if let crate::data::Source::Snapshot(snapshot) = data.acquire(&prune).await? {
        let generation = snapshot.info().generation;
        let for_kernel = plan.clone();
        let rows = tokio::task::spawn_blocking(move || {
            kernel::contingency(snapshot.batches(), &for_kernel)
        })
        .await
        .map_err(|e| PlanError::Internal(format!("the contingency kernel failed: {e}")))?;
        if let Some(rows) = rows {
            return Ok(Contingency { rows, generation });
        }
    }
    by_statement(paid, data, plan).await
}

/// [`contingency`] by the statement, over the snapshot or the files.
pub(crate) async fn by_statement(
    paid: &Paid,
    data: &crate::data::Data,
    plan: &SyntheticPlan,
) -> Result<Contingency, PlanError> {
    let sql = statement(plan);
    let (generation, results) =
        plan::run_statements(paid, data, plan.period, std::slice::from_ref(&sql)).await?;
    let index: Vec<HashMap<&str, u16>> = plan
        .columns
        .iter()
        .map(|c| {
            c.domain
                .iter()
                .enumerate()
                .map(|(i, k)| (k.as_str(), i as u16))
                .collect()
        })
        .collect();
    let unknown: Vec<Option<u16>> = index.iter().map(|m| m.get(UNKNOWN).copied()).collect();
    let mut rows = Vec::new();
    for batch in results.iter().flatten() {
        read_batch(batch, &index, &unknown, &mut rows)?;
    }
    Ok(Contingency { rows, generation })
}

fn read_batch(
    batch: &RecordBatch,
    index: &[HashMap<&str, u16>],
    unknown: &[Option<u16>],
    rows: &mut Counts,
) -> Result<(), PlanError> {
    let d = index.len();
    let internal = |e: arrow::error::ArrowError| PlanError::Internal(e.to_string());
    let strings = (0..d)
        .map(|i| arrow::compute::cast(batch.column(i), &DataType::Utf8).map_err(internal))
        .collect::<Result<Vec<_>, _>>()?;
    let n = arrow::compute::cast(batch.column(d), &DataType::Int64).map_err(internal)?;
    let n = n.as_primitive::<Int64Type>();
    'row: for row in 0..batch.num_rows() {
        let mut cells = Vec::with_capacity(d);
        for (i, s) in strings.iter().enumerate() {
            let s = s.as_string::<i32>();
            let key = if s.is_null(row) {
                UNKNOWN
            } else {
                s.value(row)
            };
            // A value outside the public domain (which the expressions already map to unknown)
            // would be a bug; such a row is dropped rather than given a cell.
            match index[i].get(key).copied().or(unknown[i]) {
                Some(c) => cells.push(c),
                None => continue 'row,
            }
        }
        rows.push((cells, n.value(row)));
    }
    Ok(())
}

/// What is public about a synthetic table: who made it, for what, under which guarantee and at
/// what cost, and the released structure of its model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyntheticInfo {
    pub id: i64,
    pub name: String,
    pub created_at: String,
    pub created_by: String,
    pub dataset: String,
    pub from: i32,
    pub to: i32,
    pub missions: Vec<String>,
    pub columns: Vec<String>,
    /// Records in the table (the noisy total).
    pub rows: u64,
    pub contribution_bound: u32,
    /// What the ledger was charged (rho).
    pub loss: Loss,
    /// The loss as (epsilon, delta).
    pub cost: Cost,
    pub mechanism: String,
    /// The guarantee, in words.
    pub guarantee: String,
    /// The 2-way marginals the model was built on (column pairs), as selected.
    pub tree: Vec<[String; 2]>,
    /// Per column, the values kept apart by the 1-way step; the rest were merged (and are drawn
    /// uniformly among themselves).
    pub kept_values: Vec<usize>,
    /// The noise: sigma of the 1-way and 2-way measurements, scale of the selections.
    pub one_way_sigma: f64,
    pub two_way_sigma: f64,
    pub selection_scale: f64,
    pub generation: u64,
    /// A hash of the canonical request: the same request by the same caller is served again.
    pub request_hash: String,
}

/// A synthetic table: one vector of cell indices per column, into the column's domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub domains: Vec<Vec<String>>,
    pub values: Vec<Vec<u16>>,
    /// The model's released structure, for [`SyntheticInfo`].
    pub tree: Vec<[String; 2]>,
    pub kept_values: Vec<usize>,
    pub fit: model::Fit,
}

impl Table {
    pub fn rows(&self) -> usize {
        self.values.first().map_or(0, Vec::len)
    }
}

/// Compressed domain of one column: which original cells are kept apart.
#[derive(Debug, Clone)]
struct Compression {
    /// Original cell -> compressed cell.
    map: Vec<u16>,
    /// Compressed cell -> the original cells it stands for.
    members: Vec<Vec<u16>>,
}

impl Compression {
    fn of(noisy: &[i64], threshold: f64) -> Compression {
        let kept: Vec<usize> = (0..noisy.len())
            .filter(|&i| noisy[i] as f64 >= threshold)
            .collect();
        let rest: Vec<u16> = (0..noisy.len())
            .filter(|i| !kept.contains(i))
            .map(|i| i as u16)
            .collect();
        let mut map = vec![0u16; noisy.len()];
        let mut members = Vec::new();
        for (c, &i) in kept.iter().enumerate() {
            map[i] = c as u16;
            members.push(vec![i as u16]);
        }
        if !rest.is_empty() {
            for &i in &rest {
                map[usize::from(i)] = members.len() as u16;
            }
            members.push(rest);
        }
        Compression { map, members }
    }

    fn size(&self) -> usize {
        self.members.len()
    }

    /// The noisy marginal re-expressed over the compressed cells, with each cell's weight
    /// (`1 / sigma`; a merged cell of `m` noisy cells has `sigma·√m`).
    fn measurement(&self, column: usize, noisy: &[i64], sigma: f64) -> Measurement {
        let values = self
            .members
            .iter()
            .map(|m| m.iter().map(|&i| noisy[usize::from(i)] as f64).sum())
            .collect();
        let weights = self
            .members
            .iter()
            .map(|m| 1.0 / (sigma * (m.len() as f64).sqrt()))
            .collect();
        Measurement {
            clique: Clique::Node(column),
            values,
            weights,
        }
    }
}

/// The exact 2-way marginal of columns (a, b) over compressed cells, a-major.
fn pair_marginal(
    exact: &Contingency,
    (a, b): (usize, usize),
    compression: &[Compression],
) -> Vec<i64> {
    let nb = compression[b].size();
    let mut out = vec![0i64; compression[a].size() * nb];
    for (cells, n) in &exact.rows {
        let x = usize::from(compression[a].map[usize::from(cells[a])]);
        let y = usize::from(compression[b].map[usize::from(cells[b])]);
        out[x * nb + y] += n;
    }
    out
}

/// Run MST on the exact table (steps 1 to 5 of the module docs); call on a blocking thread
/// (OpenDP measurements are not `Send`). The caller has charged `plan.noise.loss`.
pub fn synthesize(plan: &SyntheticPlan, exact: &Contingency) -> dp::Result<Released<Table>> {
    let columns: Vec<String> = plan.columns.iter().map(|c| c.name.clone()).collect();
    let domains: Vec<Vec<String>> = plan.columns.iter().map(|c| c.domain.clone()).collect();
    mst(&columns, &domains, &plan.noise, exact)
}

/// MST over any table of coded columns: `exact` counts combinations of cells into `domains`
/// (one per column in `columns`), and `noise` is calibrated for that many columns. The caller
/// has charged `noise.loss`; call on a blocking thread.
pub fn mst(
    columns: &[String],
    domains: &[Vec<String>],
    noise: &Noise,
    exact: &Contingency,
) -> dp::Result<Released<Table>> {
    let d = columns.len();
    let k = u64::from(noise.contribution_bound);
    if domains.len() != d || noise.one_way_sensitivity.l0 != d as u64 * k {
        return Err(dp::DpError::Internal(format!(
            "MST over {d} columns was given {} domains and noise calibrated for another number",
            domains.len()
        )));
    }
    let sizes: Vec<usize> = domains.iter().map(Vec::len).collect();
    // 1. The 1-way marginals, as one vector.
    let mut one_way: Vec<i64> = Vec::with_capacity(sizes.iter().sum());
    for (i, &n) in sizes.iter().enumerate() {
        let mut counts = vec![0i64; n];
        for (cells, count) in &exact.rows {
            counts[usize::from(cells[i])] += count;
        }
        one_way.extend(counts);
    }
    let released = dp::release_gaussian(&one_way, &noise.one_way_sensitivity, noise.step_rho)?;
    check_scale(released.preview().scale, noise.one_way.scale, "1-way")?;
    let noisy_one = released.released();
    let sigma1 = noise.one_way.scale;
    let mut compression = Vec::with_capacity(d);
    let mut node_measurements = Vec::with_capacity(d);
    let mut at = 0;
    for (i, &n) in sizes.iter().enumerate() {
        let noisy = &noisy_one.get()[at..at + n];
        at += n;
        let c = Compression::of(noisy, 3.0 * sigma1);
        node_measurements.push(c.measurement(i, noisy, sigma1));
        compression.push(c);
    }
    let compressed: Vec<usize> = compression.iter().map(Compression::size).collect();

    // 2. The tree: d − 1 selections against the independence model of step 1.
    let independent = Tree::new(compressed.clone(), &[]);
    let total_one = model::estimate_total(&node_measurements);
    let (fitted, _) = model::estimate(&independent, &node_measurements, total_one, 1_000);
    let mut scores: HashMap<(usize, usize), f64> = HashMap::new();
    for a in 0..d {
        for (b, &nb) in compressed.iter().enumerate().skip(a + 1) {
            let x = pair_marginal(exact, (a, b), &compression);
            let error: f64 = x
                .iter()
                .enumerate()
                .map(|(cell, &v)| {
                    let expected =
                        total_one * fitted.nodes[a][cell / nb] * fitted.nodes[b][cell % nb];
                    (v as f64 - expected).abs()
                })
                .sum();
            scores.insert((a, b), error);
        }
    }
    let mut component: Vec<usize> = (0..d).collect();
    fn find(c: &mut [usize], i: usize) -> usize {
        let mut r = i;
        while c[r] != r {
            r = c[r];
        }
        let mut i = i;
        while c[i] != r {
            let next = c[i];
            c[i] = r;
            i = next;
        }
        r
    }
    let mut selected: Vec<Released<(usize, usize)>> = Vec::with_capacity(d - 1);
    let sensitivity = f64::from(noise.contribution_bound);
    for _ in 1..d {
        let candidates: Vec<(usize, usize)> = {
            let mut c: Vec<(usize, usize)> = Vec::new();
            for a in 0..d {
                for b in a + 1..d {
                    if find(&mut component, a) != find(&mut component, b) {
                        c.push((a, b));
                    }
                }
            }
            c
        };
        let values: Vec<f64> = candidates.iter().map(|e| scores[e]).collect();
        let Some(choice) = dp::select_max(&values, sensitivity, noise.selection)? else {
            break;
        };
        let edge = choice.map(|i| candidates[i]);
        let (a, b) = *edge.get();
        let (ra, rb) = (find(&mut component, a), find(&mut component, b));
        component[ra] = rb;
        selected.push(edge);
    }
    let edges = Released::collect(selected);

    // 3. The selected 2-way marginals, oriented from the root, as one vector.
    let tree = Tree::new(compressed.clone(), edges.get());
    let mut two_way = Vec::new();
    for &(p, c) in &tree.edges {
        two_way.extend(pair_marginal(exact, (p, c), &compression));
    }
    let released = dp::release_gaussian(&two_way, &noise.two_way_sensitivity, noise.step_rho)?;
    check_scale(released.preview().scale, noise.two_way.scale, "2-way")?;
    let noisy_two = released.released();
    let seed = dp::post_processing_seed()?;

    // 4 and 5: post-processing of the released marginals and tree.
    let columns = columns.to_vec();
    let domains = domains.to_vec();
    let sigma2 = noise.two_way.scale;
    Ok(noisy_one.zip(edges).zip(noisy_two).map(|((_, _), two)| {
        let mut measurements = node_measurements;
        let mut at = 0;
        for (e, &(p, c)) in tree.edges.iter().enumerate() {
            let n = compressed[p] * compressed[c];
            measurements.push(Measurement {
                clique: Clique::Edge(e),
                values: two[at..at + n].iter().map(|&v| v as f64).collect(),
                weights: vec![1.0 / sigma2; n],
            });
            at += n;
        }
        let total = model::estimate_total(&measurements).round();
        let rows = (total.max(0.0) as usize).min(MAX_ROWS);
        let (mu, fit) = model::estimate(&tree, &measurements, total, FIT_ITERATIONS);
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut values = model::sample(&tree, &mu, rows, &mut rng);
        // Merged cells back to one of their original values, uniformly.
        for (column, c) in values.iter_mut().zip(&compression) {
            for v in column.iter_mut() {
                let members = &c.members[usize::from(*v)];
                *v = if members.len() == 1 {
                    members[0]
                } else {
                    members[model::below(&mut rng, members.len())]
                };
            }
        }
        Table {
            tree: tree
                .edges
                .iter()
                .map(|&(p, c)| [columns[p].clone(), columns[c].clone()])
                .collect(),
            kept_values: compression
                .iter()
                .map(|c| c.members.iter().filter(|m| m.len() == 1).count())
                .collect(),
            columns,
            domains,
            values,
            fit,
        }
    }))
}

fn check_scale(drawn: f64, planned: f64, what: &str) -> dp::Result<()> {
    if drawn == planned {
        Ok(())
    } else {
        Err(dp::DpError::Internal(format!(
            "the {what} marginals were released at sigma {drawn}, not the planned {planned}"
        )))
    }
}

/// The table as Parquet (one UTF-8 column per column, dictionary-encoded by the writer).
pub fn to_parquet(table: &Table) -> Result<Vec<u8>, String> {
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::{Field, Schema};
    use datafusion::parquet::arrow::ArrowWriter;
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(
        table
            .columns
            .iter()
            .map(|c| Field::new(c, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let arrays: Vec<ArrayRef> = table
        .values
        .iter()
        .zip(&table.domains)
        .map(|(values, domain)| {
            Arc::new(StringArray::from_iter_values(
                values.iter().map(|&v| domain[usize::from(v)].as_str()),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, None).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(out)
}

/// A stored table's Parquet as CSV (a header of the column names, then one line per record).
pub fn parquet_to_csv(parquet: &[u8]) -> Result<Vec<u8>, String> {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bytes = bytes::Bytes::copy_from_slice(parquet);
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.with_batch_size(65_536).build())
        .map_err(|e| e.to_string())?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header = false;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        if !header {
            let names: Vec<&str> = batch
                .schema_ref()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            writer.write_record(&names).map_err(|e| e.to_string())?;
            header = true;
        }
        let columns: Vec<&arrow::array::StringArray> = batch
            .columns()
            .iter()
            .map(|c| c.as_string::<i32>())
            .collect();
        for row in 0..batch.num_rows() {
            writer
                .write_record(columns.iter().map(|c| c.value(row)))
                .map_err(|e| e.to_string())?;
        }
    }
    writer.into_inner().map_err(|e| e.to_string())
}
