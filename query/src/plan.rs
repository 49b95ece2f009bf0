//! Planning: from a validated spec to the exact integer aggregates the DP layer noises, with
//! the contribution bounds that set the noise scale.
//!
//! Every row operation runs in one of two engines, which compute the same thing: over the
//! in-memory snapshot ([`crate::data`]), a typed kernel (`plan/kernel.rs`) makes one pass over
//! the rows in their stored (person, record) order; over the Parquet files (a dataset larger
//! than the memory budget), one DataFusion SQL statement built from the validated spec does
//! the same steps. `the_kernel_equals_the_sql_on_the_files` checks that they agree on random
//! datasets. Rust outside the engines only touches the aggregated groups. The steps, in order:
//!
//! 1. scan the live records of the manifest's current generation (so a batch committed a
//!    moment ago is seen and a file no manifest lists never is): the snapshot of that
//!    generation, or the Parquet files, skipping those whose partition directories
//!    (`mission=`, `year=` of registration) cannot match;
//! 2. keep registrations within the period, derive the dimension keys (a null, or a stored
//!    value outside the public domain, becomes `unknown`) and the numeric value;
//! 3. apply the filters, and for value measures drop records whose value is null (not
//!    recorded, or a case still open for `months_to_closure`);
//! 4. keep at most `contribution_bound` records per person, the first `k` in record-key
//!    order. The kernel reads the snapshot's rows sorted by (person, record key), so this is a
//!    counter that restarts at each person: linear, no sort per query. The SQL says
//!    `ROW_NUMBER() OVER (PARTITION BY person_key ORDER BY record_key) <= k` and sorts the
//!    period's rows (over the snapshot, whose declared order is the window's, DataFusion skips
//!    that sort: `snapshot_queries_do_not_sort`, for the kernel's fallback and the release
//!    statements);
//! 5. for `exploitation_type`, keep the first `list_items_bound` distinct types of each record
//!    in sorted order (an empty or null list is the one type `unknown`) and explode the record
//!    into one row per type;
//! 6. clamp the value to the bounds, put it in its bin, and group.
//!
//! Architecture invariant: which records of a person are kept depends only on that person's own
//! records. The counter (or window) is per `person_key`, ordered by `record_key` (a keyed
//! pseudonym of the record, so the order is fixed by the record itself), and everything before
//! it (period, filters, null values) is a function of one row. Adding or removing all records
//! of one person therefore leaves every other person's kept rows unchanged, which is what makes
//! the bounds of [`Contribution`] hold. The neighbouring test at the bottom checks it.
//! `person_key` is never null (ingest gives a record without identity a key of its own, so such
//! a record is its own person: its true person may contribute up to `k` records per key).
//!
//! # Contribution bounds
//!
//! With `k = contribution_bound` and `m = list_items_bound` when grouping by exploitation type
//! (else `m = 1`), one person has at most `k` kept records and each record falls in at most `m`
//! cells (its `m` distinct types; with bins, one bin in each of those cells). Removing the
//! person therefore changes at most `l0 = k·m` cells of any component. Per component:
//!
//! | component | one record adds to a cell | `linf` (one cell) | `l1` (all cells) |
//! |---|---|---|---|
//! | `persons` (distinct count) | the person counts once per cell | 1 | k·m |
//! | `cases`, `count` (records) | 1 | k | k·m |
//! | `sum` (clamped values) | a value of absolute value ≤ M = max(\|lower\|, \|upper\|) | k·M | k·m·M |
//!
//! `mean` releases `sum` and `count`; `histogram` and `quantile` release `count` per
//! (cell, bin). The bounds hold whether keys are public (the cells are fixed) or thresholded (a
//! cell the person alone made non-empty appears or disappears: it is one of the `l0` cells and
//! its change is its whole value).

use std::collections::HashMap;

use arrow::array::{Array, AsArray, PrimitiveArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use ctstats_schemas::manifest::{Manifest, ManifestError};
use datafusion::error::DataFusionError;

use crate::data::{ATTEMPTS, Data, Snapshot, Source, TABLE};

use crate::ledger::Paid;
use crate::spec::{
    Bin, Dimension, KeysMode, Measure, Period, SpecErrors, UNKNOWN, ValidatedSpec, ValueColumn,
};

/// The frame of every per-person window. The rows a window numbers are the same under any
/// frame, but without this one DataFusion plans its default `RANGE` frame, which cannot order
/// 16-byte binary keys (format 2 datasets).
pub(crate) const ROWS: &str = "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW";

/// How much one person can change a component: the sensitivities the noise is scaled to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Contribution {
    /// Most cells one person changes.
    pub l0: u64,
    /// Most total absolute change, summed over cells.
    pub l1: u64,
    /// Most absolute change of one cell.
    pub linf: u64,
}

/// One exact aggregate per cell, to be noised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// `persons`, `cases`, `sum` or `count`.
    pub name: String,
    /// One value per cell of [`Aggregates::cells`], in the same order.
    pub values: Vec<i64>,
    pub contribution: Contribution,
}

/// The exact aggregates of a query. Plain data: nothing here has been noised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregates {
    /// The key columns: the `group_by` dimensions in canonical order, then `bin` for
    /// `histogram` and `quantile`.
    pub dimensions: Vec<String>,
    /// One key per dimension for each cell. With public keys, the whole cartesian domain in
    /// domain order (last dimension fastest), zeros included; with threshold keys, the non-empty
    /// cells in the same order.
    pub cells: Vec<Vec<String>>,
    /// The bins of `histogram` and `quantile` (the `bin` key is [`Bin::label`]); else empty.
    pub bins: Vec<Bin>,
    pub components: Vec<Component>,
    pub keys: KeysMode,
    /// Generation of the manifest the aggregates were computed from.
    pub generation: u64,
}

/// Planning failures, split by whose fault they are.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The caller's: the query does not fit the domains it is run against (4xx).
    #[error("invalid query: {0}")]
    InvalidSpec(#[from] SpecErrors),
    /// Ours: the manifest cannot be read (5xx).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Ours: the manifest lists a path that is not a relative path inside the dataset (5xx).
    #[error("the manifest lists a file outside the dataset: {path}")]
    UnsafePath { path: String },
    /// Ours: the query engine failed, e.g. a listed file is missing or unreadable (5xx).
    #[error("query engine error: {0}")]
    Engine(#[from] DataFusionError),
    /// Ours: the engine answered in an unexpected shape (5xx).
    #[error("internal planning error: {0}")]
    Internal(String),
}

impl PlanError {
    /// Whether the caller can fix it by changing the query.
    pub fn is_caller_error(&self) -> bool {
        matches!(self, PlanError::InvalidSpec(_))
    }
}

pub type Result<T, E = PlanError> = std::result::Result<T, E>;

/// Compute the exact aggregates of `spec` over `data` (its snapshot, or its files). `missions`
/// is the mission domain (the service configuration). `_paid` is the ledger's proof that the
/// charge for these aggregates was committed: exact values exist only once their noise is paid
/// for.
pub async fn aggregate(
    _paid: &Paid,
    data: &Data,
    missions: &[String],
    spec: &ValidatedSpec,
) -> Result<Aggregates> {
    spec.check_missions(missions)?;
    let prune = |path: &str| partition_may_match(path, spec, missions);
    if let Source::Snapshot(snapshot) = data.acquire(&prune).await? {
        let generation = snapshot.info().generation;
        let run = on_snapshot(snapshot, spec, missions, kernel::aggregate);
        if let Some(groups) = run.await? {
            return Ok(assemble(spec, missions, generation, groups));
        }
    }
    let sql = statement(spec, missions);
    let (generation, mut results) = run_on(data, &prune, std::slice::from_ref(&sql)).await?;
    let groups = read_groups(spec, &results.pop().unwrap_or_default())?;
    Ok(assemble(spec, missions, generation, groups))
}

/// Run a kernel over the snapshot on a blocking thread (it is a pass over every row). `None`
/// when the kernel cannot run the spec.
async fn on_snapshot<T: Send + 'static>(
    snapshot: std::sync::Arc<Snapshot>,
    spec: &ValidatedSpec,
    missions: &[String],
    kernel: impl FnOnce(&[RecordBatch], &ValidatedSpec, &[String]) -> Option<T> + Send + 'static,
) -> Result<Option<T>> {
    let (spec, missions) = (spec.clone(), missions.to_vec());
    tokio::task::spawn_blocking(move || kernel(snapshot.batches(), &spec, &missions))
        .await
        .map_err(|e| PlanError::Internal(format!("the aggregation kernel failed: {e}")))
}

/// Run `statements` (each over the `records` table: the snapshot, or the live files registered
/// in the period's years) and return their result batches with the manifest generation they
/// read. `_paid` is the ledger's proof, as for [`aggregate`]: exact values exist only once paid
/// for.
pub(crate) async fn run_statements(
    _paid: &Paid,
    data: &Data,
    period: Period,
    statements: &[String],
) -> Result<(u64, Vec<Vec<RecordBatch>>)> {
    run_on(data, &|path| in_period(path, period), statements).await
}

/// Whether a file may hold registrations of `period`, judged from its `year=` directory.
pub(crate) fn in_period(path: &str, period: Period) -> bool {
    path.split('/').all(|segment| {
        segment.strip_prefix("year=").is_none_or(|year| {
            year.parse::<i32>()
                .map_or(true, |y| (period.from.year..=period.to.year).contains(&y))
        })
    })
}

/// Run `statements` in one session (one generation), retrying when a commit replaced a file
/// between reading the manifest and reading the file.
async fn run_on(
    data: &Data,
    prune: &(dyn Fn(&str) -> bool + Sync),
    statements: &[String],
) -> Result<(u64, Vec<Vec<RecordBatch>>)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let session = data.session(prune).await?;
        let run = async {
            let mut all = Vec::with_capacity(statements.len());
            for sql in statements {
                all.push(session.ctx.sql(sql).await?.collect().await?);
            }
            Ok::<_, PlanError>(all)
        };
        match run.await {
            Ok(all) => return Ok((session.generation, all)),
            Err(PlanError::Engine(e))
                if attempt < ATTEMPTS
                    && Manifest::read(data.root())?.generation != session.generation =>
            {
                tracing::debug!(error = %e, "dataset changed during the query; retrying");
            }
            Err(e) => return Err(e),
        }
    }
}

/// The observed groups: key (dimension keys, then the bin label) → component values, and the
/// number of rows in the group.
type Groups = HashMap<Vec<String>, (Vec<i64>, i64)>;

/// Whether a file may hold rows of the query, judged from its hive partition directories
/// (`mission=XXX/year=YYYY`, the registration year). Only prunes; the statement filters anyway.
fn partition_may_match(path: &str, spec: &ValidatedSpec, missions: &[String]) -> bool {
    let period = spec.period();
    let kept_missions = spec.filter(Dimension::Mission);
    path.split('/').all(|segment| {
        if let Some(year) = segment.strip_prefix("year=") {
            year.parse::<i32>()
                .map_or(true, |y| (period.from.year..=period.to.year).contains(&y))
        } else if let (Some(mission), Some(kept)) =
            (segment.strip_prefix("mission="), kept_missions)
        {
            // A mission outside the domain is counted as `unknown`.
            let key = if missions.iter().any(|m| m == mission) {
                mission
            } else {
                UNKNOWN
            };
            kept.iter().any(|k| k == key)
        } else {
            true
        }
    })
}

/// The SQL statement of a spec. Every literal in it comes from the validated spec or the public
/// domains, and is quoted.
/// The `base` and `filtered` common table expressions: the records of the period passing the
/// filters, with the derived dimension columns, the value `v` and the exploitation types `et`.
fn records_ctes(spec: &ValidatedSpec, missions: &[String]) -> String {
    let period = spec.period();
    let uses_list = uses_types(spec);
    let value = spec.column().map(value_expr);
    let scalar = scalar_dimensions(spec);

    let mut base = vec!["person_key".to_string(), "record_key".to_string()];
    for d in &scalar {
        base.push(format!(
            "{} AS {}",
            dim_expr(*d, spec, missions),
            column(*d)
        ));
    }
    if let Some(v) = &value {
        base.push(format!("{v} AS v"));
    }
    if uses_list {
        base.push(format!(
            "CASE WHEN exploitation_types IS NULL OR cardinality(exploitation_types) = 0 \
             THEN make_array({unknown}) \
             ELSE array_slice(array_sort(array_distinct(exploitation_types)), 1, {m}) END AS et",
            unknown = quote(UNKNOWN),
            m = spec.list_items_bound()
        ));
    }

    let mut conditions = vec!["TRUE".to_string()];
    for (d, kept) in spec.filters() {
        if *d == Dimension::ExploitationType {
            conditions.push(format!("array_has_any(et, make_array({}))", list(kept)));
        } else {
            conditions.push(format!("{} IN ({})", column(*d), list(kept)));
        }
    }
    if value.is_some() {
        conditions.push("v IS NOT NULL".to_string());
    }
    format!(
        "base AS (\
           SELECT {base} FROM {TABLE} \
           WHERE registration_month >= DATE {from} AND registration_month < DATE {until}), \
         filtered AS (SELECT * FROM base WHERE {conditions})",
        base = base.join(", "),
        from = quote(&period.from.first_day()),
        until = quote(&period.to.next().first_day()),
        conditions = conditions.join(" AND "),
    )
}

/// The scalar dimensions derived in the scan (grouped or filtered, each once, in canonical
/// order): all but `exploitation_type`, which is a list.
fn scalar_dimensions(spec: &ValidatedSpec) -> Vec<Dimension> {
    let mut scalar: Vec<Dimension> = spec
        .group_by()
        .iter()
        .copied()
        .chain(spec.filters().iter().map(|(d, _)| *d))
        .filter(|d| *d != Dimension::ExploitationType)
        .collect();
    scalar.sort_by_key(|d| d.rank());
    scalar.dedup();
    scalar
}

/// Whether the query reads the exploitation types (grouped or filtered by them).
fn uses_types(spec: &ValidatedSpec) -> bool {
    spec.group_by().contains(&Dimension::ExploitationType)
        || spec.filter(Dimension::ExploitationType).is_some()
}

/// Persons by their number of records among the query's (period and filters), the last count
/// standing for "this many or more": `counts[c - 1]` persons have `c` records.
pub async fn records_per_person(
    paid: &Paid,
    data: &Data,
    missions: &[String],
    spec: &ValidatedSpec,
    most: u32,
) -> Result<Vec<i64>> {
    spec.check_missions(missions)?;
    let period = spec.period();
    if let Source::Snapshot(snapshot) = data.acquire(&|path| in_period(path, period)).await? {
        let run = on_snapshot(snapshot, spec, missions, move |batches, spec, missions| {
            kernel::records_per_person(batches, spec, missions, most)
        });
        if let Some(counts) = run.await? {
            return Ok(counts);
        }
    }
    let sql = format!(
        "WITH {ctes}, per AS (SELECT LEAST(COUNT(*), {most}) AS c FROM filtered GROUP BY person_key) \
         SELECT CAST(c AS BIGINT) AS c, COUNT(*) AS n FROM per GROUP BY c",
        ctes = records_ctes(spec, missions),
    );
    let (_, mut results) = run_statements(paid, data, period, &[sql]).await?;
    let mut counts = vec![0i64; most as usize];
    for batch in results.pop().unwrap_or_default() {
        let c = int64(&batch, "c")?;
        let n = int64(&batch, "n")?;
        for i in 0..batch.num_rows() {
            let at = usize::try_from(c.value(i))
                .unwrap_or(0)
                .clamp(1, most as usize);
            counts[at - 1] += n.value(i);
        }
    }
    Ok(counts)
}

fn int64<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a PrimitiveArray<Int64Type>> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| PlanError::Internal(format!("column {name} is not a count")))
}

fn statement(spec: &ValidatedSpec, missions: &[String]) -> String {
    let explode = spec.group_by().contains(&Dimension::ExploitationType);

    let grouped: Vec<String> = spec.group_by().iter().map(|d| column(*d)).collect();
    let mut kept_cols = vec!["person_key".to_string()];
    for d in spec.group_by() {
        if *d == Dimension::ExploitationType {
            kept_cols.push(format!("unnest(et) AS {}", column(*d)));
        } else {
            kept_cols.push(column(*d));
        }
    }
    if let Some(b) = spec.bounds() {
        kept_cols.push(format!(
            "least(greatest(v, {}), {}) AS clamped",
            b.lower, b.upper
        ));
    }

    let mut keys = grouped.clone();
    if !spec.bins().is_empty() {
        keys.push(format!(
            "{} AS bin",
            bin_expr(spec.bins(), 0, spec.bins().len() - 1)
        ));
    }
    let aggregates = match spec.measure() {
        // One kept record per person, in at most one row per cell (its types are distinct, its
        // value in one bin): counting rows counts distinct persons, without a set per group.
        Measure::Persons if spec.contribution_bound() == 1 => "COUNT(*) AS c0",
        Measure::Persons => "COUNT(DISTINCT person_key) AS c0",
        Measure::Cases | Measure::Histogram | Measure::Quantile => "COUNT(*) AS c0",
        Measure::Sum => "SUM(clamped) AS c0",
        Measure::Mean => "SUM(clamped) AS c0, COUNT(*) AS c1",
    };
    let mut select = keys.clone();
    select.push(aggregates.to_string());
    select.push("COUNT(*) AS group_rows".to_string());
    let mut group_cols = grouped;
    if !spec.bins().is_empty() {
        group_cols.push("bin".to_string());
    }
    let cell_filter = match spec.filter(Dimension::ExploitationType) {
        Some(kept) if explode => format!(
            "WHERE {} IN ({})",
            column(Dimension::ExploitationType),
            list(kept)
        ),
        _ => String::new(),
    };
    let group_by = if group_cols.is_empty() {
        String::new()
    } else {
        format!("GROUP BY {}", group_cols.join(", "))
    };

    format!(
        "WITH {ctes}, \
         ranked AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY person_key ORDER BY record_key {ROWS}) \
           AS contribution_rank FROM filtered), \
         kept AS (SELECT {kept_cols} FROM ranked WHERE contribution_rank <= {k}) \
         SELECT {select} FROM kept {cell_filter} {group_by}",
        ctes = records_ctes(spec, missions),
        kept_cols = kept_cols.join(", "),
        k = spec.contribution_bound(),
        select = select.join(", "),
    )
}

/// The column a dimension's key is derived into.
fn column(dim: Dimension) -> String {
    format!("dim_{}", dim.name())
}

pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub(crate) fn list(values: &[String]) -> String {
    values
        .iter()
        .map(|v| quote(v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `column` itself when in the domain, else `unknown` (nulls included).
fn in_domain(column: &str, domain: &[String]) -> String {
    let known: Vec<String> = domain.iter().filter(|k| *k != UNKNOWN).cloned().collect();
    if known.is_empty() {
        return quote(UNKNOWN);
    }
    format!(
        "CASE WHEN {column} IN ({}) THEN {column} ELSE {} END",
        list(&known),
        quote(UNKNOWN)
    )
}

fn dim_expr(dim: Dimension, spec: &ValidatedSpec, missions: &[String]) -> String {
    dimension_expr(dim, spec.period(), missions)
}

/// The SQL expression of a dimension's key over the `records` table (a null, or a value outside
/// the public domain, is `unknown`).
pub(crate) fn dimension_expr(dim: Dimension, period: Period, missions: &[String]) -> String {
    let year = "to_char(registration_month, '%Y')";
    match dim {
        Dimension::Mission => in_domain("reporting_mission", &dim.domain(missions, period)),
        Dimension::RegistrationYear => year.to_string(),
        Dimension::RegistrationQuarter => format!(
            "concat({year}, '-Q', CAST((CAST(date_part('month', registration_month) AS BIGINT) \
             - 1) / 3 + 1 AS VARCHAR))"
        ),
        Dimension::RegistrationMonth => "to_char(registration_month, '%Y-%m')".to_string(),
        Dimension::Code { field, .. } | Dimension::Country { field } => {
            in_domain(field, &dim.domain(missions, period))
        }
        Dimension::Flag { field } => format!(
            "CASE WHEN {field} THEN 'yes' WHEN NOT {field} THEN 'no' ELSE {} END",
            quote(UNKNOWN)
        ),
        Dimension::ExploitationType => unreachable!("the list dimension is exploded"),
    }
}

/// Whole months from the month of `from` to the month of `to` (null if either is null).
fn months_between(from: &str, to: &str) -> String {
    let part = |p: &str, c: &str| format!("CAST(date_part('{p}', {c}) AS BIGINT)");
    format!(
        "(({} - {}) * 12 + {} - {})",
        part("year", to),
        part("year", from),
        part("month", to),
        part("month", from)
    )
}

fn value_expr(column: ValueColumn) -> String {
    match column {
        ValueColumn::Flag { field } => format!("CAST({field} AS BIGINT)"),
        ValueColumn::MonthsToClosure => months_between("registration_month", "case_closed_month"),
        ValueColumn::MonthsIdentificationToRegistration => {
            months_between("identification_month", "registration_month")
        }
        ValueColumn::AssistanceTypeCount => {
            "CAST(cardinality(array_distinct(assistance_types)) AS BIGINT)".to_string()
        }
    }
}

/// The index of the bin of the clamped value, as a binary search over the lower edges of
/// `bins[first..=last]` (depth log2 of the number of bins).
fn bin_expr(bins: &[Bin], first: usize, last: usize) -> String {
    if first == last {
        return first.to_string();
    }
    let mid = (first + last).div_ceil(2);
    format!(
        "CASE WHEN clamped >= {} THEN {} ELSE {} END",
        bins[mid].lower,
        bin_expr(bins, mid, last),
        bin_expr(bins, first, mid - 1)
    )
}

/// Read the aggregated groups: key columns, then the measure's components, then the row count.
fn read_groups(spec: &ValidatedSpec, batches: &[RecordBatch]) -> Result<Groups> {
    let dims = spec.group_by().len();
    let binned = !spec.bins().is_empty();
    let components = component_names(spec.measure()).len();
    let mut groups = Groups::new();
    for batch in batches {
        let expected = dims + usize::from(binned) + components + 1;
        if batch.num_columns() != expected {
            return Err(PlanError::Internal(format!(
                "{} result columns, expected {expected}",
                batch.num_columns()
            )));
        }
        let mut keys = Vec::new();
        for i in 0..dims {
            let col = arrow::compute::cast(batch.column(i), &DataType::Utf8)
                .map_err(DataFusionError::from)?;
            keys.push(col);
        }
        let mut numbers = Vec::new();
        for i in dims..expected {
            let col = arrow::compute::cast(batch.column(i), &DataType::Int64)
                .map_err(DataFusionError::from)?;
            numbers.push(col);
        }
        for row in 0..batch.num_rows() {
            let mut key: Vec<String> = keys
                .iter()
                .map(|c| {
                    let c = c.as_string::<i32>();
                    if c.is_null(row) {
                        UNKNOWN.to_string()
                    } else {
                        c.value(row).to_string()
                    }
                })
                .collect();
            let mut values: Vec<i64> = numbers
                .iter()
                .map(|c| {
                    let c = c.as_primitive::<Int64Type>();
                    if c.is_null(row) { 0 } else { c.value(row) }
                })
                .collect();
            if binned {
                let index = values.remove(0);
                let bin = usize::try_from(index)
                    .ok()
                    .and_then(|i| spec.bins().get(i))
                    .ok_or_else(|| PlanError::Internal(format!("bin index {index}")))?;
                key.push(bin.label());
            }
            let rows = values.pop().unwrap_or(0);
            groups.insert(key, (values, rows));
        }
    }
    Ok(groups)
}

fn component_names(measure: Measure) -> &'static [&'static str] {
    match measure {
        Measure::Persons => &["persons"],
        Measure::Cases => &["cases"],
        Measure::Sum => &["sum"],
        Measure::Mean => &["sum", "count"],
        Measure::Histogram | Measure::Quantile => &["count"],
    }
}

/// The contribution bounds of each component of the spec (derivation in the module docs).
pub fn contributions(spec: &ValidatedSpec) -> Vec<(&'static str, Contribution)> {
    let k = u64::from(spec.contribution_bound());
    let m = u64::from(spec.cells_per_record());
    let records = Contribution {
        l0: k * m,
        l1: k * m,
        linf: k,
    };
    let magnitude = spec
        .bounds()
        .map_or(0, |b| b.lower.unsigned_abs().max(b.upper.unsigned_abs()));
    component_names(spec.measure())
        .iter()
        .map(|&name| {
            let c = match name {
                "persons" => Contribution {
                    l0: k * m,
                    l1: k * m,
                    linf: 1,
                },
                "sum" => Contribution {
                    l0: k * m,
                    l1: k * m * magnitude,
                    linf: k * magnitude,
                },
                _ => records,
            };
            (name, c)
        })
        .collect()
}

/// Lay the observed groups out on the released cells.
fn assemble(
    spec: &ValidatedSpec,
    missions: &[String],
    generation: u64,
    groups: Groups,
) -> Aggregates {
    let mut dimensions: Vec<String> = spec
        .group_by()
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    let mut domains: Vec<Vec<String>> = spec
        .group_by()
        .iter()
        .map(|d| spec.released_domain(*d, missions))
        .collect();
    if !spec.bins().is_empty() {
        dimensions.push("bin".to_string());
        domains.push(spec.bins().iter().map(|b| b.label()).collect());
    }

    let cells: Vec<Vec<String>> = match spec.keys() {
        KeysMode::Public => cartesian(&domains),
        KeysMode::Threshold => {
            let index: Vec<HashMap<&str, usize>> = domains
                .iter()
                .map(|d| d.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect())
                .collect();
            let mut observed: Vec<(Vec<usize>, &Vec<String>)> = groups
                .iter()
                .filter(|(_, (_, rows))| *rows > 0)
                .filter_map(|(key, _)| {
                    let position: Option<Vec<usize>> = key
                        .iter()
                        .zip(&index)
                        .map(|(k, ix)| ix.get(k.as_str()).copied())
                        .collect();
                    position.map(|p| (p, key))
                })
                .collect();
            observed.sort();
            observed.into_iter().map(|(_, key)| key.clone()).collect()
        }
    };

    let components = contributions(spec)
        .into_iter()
        .enumerate()
        .map(|(i, (name, contribution))| Component {
            name: name.to_string(),
            values: cells
                .iter()
                .map(|cell| groups.get(cell).map_or(0, |(v, _)| v[i]))
                .collect(),
            contribution,
        })
        .collect();
    Aggregates {
        dimensions,
        cells,
        bins: spec.bins().to_vec(),
        components,
        keys: spec.keys(),
        generation,
    }
}

/// Every combination of one key per domain, last domain fastest.
fn cartesian(domains: &[Vec<String>]) -> Vec<Vec<String>> {
    let mut cells = vec![Vec::new()];
    for domain in domains {
        cells = cells
            .into_iter()
            .flat_map(|prefix| {
                domain.iter().map(move |k| {
                    let mut cell = prefix.clone();
                    cell.push(k.clone());
                    cell
                })
            })
            .collect();
    }
    cells
}

pub(crate) mod kernel;
#[cfg(test)]
mod tests;
