//! Planning in DataFusion: from a validated spec to the exact integer aggregates the DP layer
//! noises, with the contribution bounds that set the noise scale.
//!
//! Every row operation runs in DataFusion (one SQL statement, built from the validated spec);
//! Rust only touches the aggregated groups. The statement, in order:
//!
//! 1. scans the Parquet files the manifest lists as live (read afresh for every query, so a batch
//!    committed a moment ago is seen and a file no manifest lists never is), skipping files
//!    whose partition directories (`mission=`, `year=` of registration) cannot match;
//! 2. keeps registrations within the period, derives the dimension keys (a null, or a stored
//!    value outside the public domain, becomes `unknown`) and the numeric value;
//! 3. applies the filters, and for value measures drops records whose value is null (not
//!    recorded, or a case still open for `months_to_closure`);
//! 4. keeps at most `contribution_bound` records per person:
//!    `ROW_NUMBER() OVER (PARTITION BY person_key ORDER BY record_key) <= k`;
//! 5. for `exploitation_type`, keeps the first `list_items_bound` distinct types of each record
//!    in sorted order (an empty or null list is the one type `unknown`) and explodes the record
//!    into one row per type;
//! 6. clamps the value to the bounds, puts it in its bin, and groups.
//!
//! Architecture invariant: which records of a person are kept depends only on that person's own
//! records. The window is partitioned by `person_key`, ordered by `record_key` (a keyed
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
use std::path::{Component as PathComponent, Path};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use ctstats_schemas::arrow_schema;
use ctstats_schemas::manifest::{Manifest, ManifestError};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::ledger::Paid;
use crate::spec::{
    Bin, Dimension, KeysMode, Measure, SpecErrors, UNKNOWN, ValidatedSpec, ValueColumn,
};

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

/// The name the live files are registered under.
const TABLE: &str = "records";
/// Attempts when a concurrent commit replaces a file between reading the manifest and the file.
const ATTEMPTS: usize = 3;

/// Compute the exact aggregates of `spec` over the dataset at `root`. `missions` is the mission
/// domain (the service configuration). `_paid` is the ledger's proof that the charge for these
/// aggregates was committed: exact values exist only once their noise is paid for.
pub async fn aggregate(
    _paid: &Paid,
    root: &Path,
    missions: &[String],
    spec: &ValidatedSpec,
) -> Result<Aggregates> {
    spec.check_missions(missions)?;
    let sql = statement(spec, missions);
    let mut attempt = 0;
    let (generation, groups) = loop {
        attempt += 1;
        let manifest = Manifest::read(root)?;
        match run(root, &manifest, spec, missions, &sql).await {
            Ok(groups) => break (manifest.generation, groups),
            // A commit may have replaced a file after we read the manifest: read it again.
            Err(PlanError::Engine(e))
                if attempt < ATTEMPTS
                    && Manifest::read(root)?.generation != manifest.generation =>
            {
                tracing::debug!(error = %e, "dataset changed during the query; retrying");
            }
            Err(e) => return Err(e),
        }
    };
    Ok(assemble(spec, missions, generation, groups))
}

/// The observed groups: key (dimension keys, then the bin label) → component values, and the
/// number of rows in the group.
type Groups = HashMap<Vec<String>, (Vec<i64>, i64)>;

async fn run(
    root: &Path,
    manifest: &Manifest,
    spec: &ValidatedSpec,
    missions: &[String],
    sql: &str,
) -> Result<Groups> {
    let ctx = SessionContext::new();
    let schema = arrow_schema();
    let mut paths = Vec::new();
    for file in manifest.live_files() {
        let relative = Path::new(&file.path);
        if !relative
            .components()
            .all(|c| matches!(c, PathComponent::Normal(_)))
        {
            return Err(PlanError::UnsafePath {
                path: file.path.clone(),
            });
        }
        if partition_may_match(&file.path, spec, missions) {
            paths.push(root.join(relative).to_string_lossy().into_owned());
        }
    }
    if paths.is_empty() {
        let empty = MemTable::try_new(schema, vec![vec![]])?;
        ctx.register_table(TABLE, Arc::new(empty))?;
    } else {
        let options = ParquetReadOptions::default().schema(&schema);
        let table = ctx.read_parquet(paths, options).await?;
        ctx.register_table(TABLE, table.into_view())?;
    }
    let batches = ctx.sql(sql).await?.collect().await?;
    read_groups(spec, &batches)
}

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
fn statement(spec: &ValidatedSpec, missions: &[String]) -> String {
    let period = spec.period();
    let explode = spec.group_by().contains(&Dimension::ExploitationType);
    let uses_list = explode || spec.filter(Dimension::ExploitationType).is_some();
    let value = spec.column().map(value_expr);

    // Scalar dimensions derived in the scan: grouped or filtered, each once.
    let mut scalar: Vec<Dimension> = spec
        .group_by()
        .iter()
        .copied()
        .chain(spec.filters().iter().map(|(d, _)| *d))
        .filter(|d| *d != Dimension::ExploitationType)
        .collect();
    scalar.sort_by_key(|d| d.rank());
    scalar.dedup();

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
        "WITH base AS (\
           SELECT {base} FROM {TABLE} \
           WHERE registration_month >= DATE {from} AND registration_month < DATE {until}), \
         filtered AS (SELECT * FROM base WHERE {conditions}), \
         ranked AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY person_key ORDER BY record_key) \
           AS contribution_rank FROM filtered), \
         kept AS (SELECT {kept_cols} FROM ranked WHERE contribution_rank <= {k}) \
         SELECT {select} FROM kept {cell_filter} {group_by}",
        base = base.join(", "),
        from = quote(&period.from.first_day()),
        until = quote(&period.to.next().first_day()),
        conditions = conditions.join(" AND "),
        kept_cols = kept_cols.join(", "),
        k = spec.contribution_bound(),
        select = select.join(", "),
    )
}

/// The column a dimension's key is derived into.
fn column(dim: Dimension) -> String {
    format!("dim_{}", dim.name())
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn list(values: &[String]) -> String {
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
    let year = "to_char(registration_month, '%Y')";
    match dim {
        Dimension::Mission => in_domain("reporting_mission", &dim.domain(missions, spec.period())),
        Dimension::RegistrationYear => year.to_string(),
        Dimension::RegistrationQuarter => format!(
            "concat({year}, '-Q', CAST((CAST(date_part('month', registration_month) AS BIGINT) \
             - 1) / 3 + 1 AS VARCHAR))"
        ),
        Dimension::RegistrationMonth => "to_char(registration_month, '%Y-%m')".to_string(),
        Dimension::Code { field, .. } | Dimension::Country { field } => {
            in_domain(field, &dim.domain(missions, spec.period()))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ctstats_schemas::manifest::{FileEntry, MANIFEST_FILE, partition_dir};
    use proptest::prelude::*;

    use super::*;
    use crate::testdata::*;

    fn run(root: &Path, json: &str) -> Aggregates {
        block_on(aggregate(
            &Paid::for_tests(),
            root,
            &missions(),
            &spec(json),
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Cell key (joined with `|`) → value of the first component, for non-zero cells.
    fn nonzero(a: &Aggregates) -> BTreeMap<String, i64> {
        a.cells
            .iter()
            .zip(&a.components[0].values)
            .filter(|(_, v)| **v != 0)
            .map(|(c, v)| (c.join("|"), *v))
            .collect()
    }

    fn map(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    const PERIOD: &str = r#""period":{"from":"2004-01","to":"2005-12"},"budget":{"epsilon":1}"#;

    fn query(body: &str) -> String {
        format!("{{{body},{PERIOD}}}")
    }

    #[test]
    fn empty_cells_are_zero_and_nulls_are_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = rec("p1", "r1", 2004);
        a.gender = Some("female");
        let b = rec("p2", "r2", 2004);
        let mut c = rec("p3", "r3", 2005);
        c.mission = "MDA"; // not a configured mission: counted as unknown
        write_dataset(dir.path(), &[a, b, c]);

        let out = run(
            dir.path(),
            &query(r#""measure":"persons","group_by":["gender","mission"]"#),
        );
        assert_eq!(out.dimensions, ["mission", "gender"]);
        // 3 missions (KGZ, UKR, unknown) × 6 genders (5 codes and unknown), zeros included.
        assert_eq!(out.cells.len(), 3 * 6);
        assert_eq!(out.cells[0], ["KGZ", "female"]);
        assert_eq!(out.cells[5], ["KGZ", "unknown"]);
        assert_eq!(out.cells[17], ["unknown", "unknown"]);
        assert_eq!(
            nonzero(&out),
            map(&[
                ("KGZ|female", 1),
                ("KGZ|unknown", 1),
                ("unknown|unknown", 1)
            ])
        );
        assert_eq!(out.components[0].name, "persons");
        assert_eq!(
            out.components[0].contribution,
            Contribution {
                l0: 1,
                l1: 1,
                linf: 1
            }
        );
        assert_eq!(out.keys, KeysMode::Public);
    }

    #[test]
    fn persons_and_cases_under_the_contribution_bound() {
        let dir = tempfile::tempdir().unwrap();
        let recs = [
            rec("p1", "r3", 2005),
            rec("p1", "r1", 2004),
            rec("p1", "r2", 2005),
            rec("p2", "r4", 2005),
        ];
        write_dataset(dir.path(), &recs);
        let by_year = |measure: &str, k: u32| {
            nonzero(&run(
                dir.path(),
                &query(&format!(
                    r#""measure":"{measure}","group_by":["registration_year"],"contribution_bound":{k}"#
                )),
            ))
        };
        // k = 1 keeps p1's smallest record key, r1 (2004).
        assert_eq!(by_year("persons", 1), map(&[("2004", 1), ("2005", 1)]));
        assert_eq!(by_year("cases", 1), map(&[("2004", 1), ("2005", 1)]));
        assert_eq!(by_year("persons", 3), map(&[("2004", 1), ("2005", 2)]));
        assert_eq!(by_year("cases", 3), map(&[("2004", 1), ("2005", 3)]));
        assert_eq!(by_year("cases", 2), map(&[("2004", 1), ("2005", 2)]));

        let total = run(
            dir.path(),
            &query(r#""measure":"cases","contribution_bound":3"#),
        );
        assert_eq!(total.cells, [Vec::<String>::new()]);
        assert_eq!(total.components[0].values, [4]);
        assert_eq!(
            total.components[0].contribution,
            Contribution {
                l0: 3,
                l1: 3,
                linf: 3
            }
        );
        let persons = run(
            dir.path(),
            &query(r#""measure":"persons","contribution_bound":3"#),
        );
        assert_eq!(persons.components[0].values, [2]);
    }

    #[test]
    fn exploitation_types_explode_after_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = rec("p1", "r1", 2004);
        // Sorted: forced_begging, forced_labour, sexual_exploitation; the bound keeps two.
        a.types = Some(vec![
            "sexual_exploitation",
            "forced_labour",
            "forced_begging",
        ]);
        let mut b = rec("p2", "r2", 2004);
        b.types = Some(vec!["forced_labour", "forced_labour"]);
        let mut c = rec("p3", "r3", 2004);
        c.types = Some(vec![]);
        let d = rec("p4", "r4", 2004);
        write_dataset(dir.path(), &[a, b, c, d]);

        let out = run(
            dir.path(),
            &query(r#""measure":"cases","group_by":["exploitation_type"]"#),
        );
        assert_eq!(out.cells.len(), 10);
        assert_eq!(
            nonzero(&out),
            map(&[("forced_begging", 1), ("forced_labour", 2), ("unknown", 2)])
        );
        assert_eq!(out.components[0].contribution.l0, 2);

        let three = run(
            dir.path(),
            &query(r#""measure":"cases","group_by":["exploitation_type"],"list_items_bound":3"#),
        );
        assert_eq!(
            nonzero(&three),
            map(&[
                ("forced_begging", 1),
                ("forced_labour", 2),
                ("sexual_exploitation", 1),
                ("unknown", 2)
            ])
        );
        assert_eq!(
            three.components[0].contribution,
            Contribution {
                l0: 3,
                l1: 3,
                linf: 1
            }
        );

        // Filtering by type without grouping counts each matching record once.
        let filtered = run(
            dir.path(),
            &query(
                r#""measure":"cases","filters":{"exploitation_type":["forced_labour","forced_begging"]}"#,
            ),
        );
        assert_eq!(filtered.components[0].values, [2]);
        // A type beyond the list bound is ignored everywhere, filters included.
        let beyond = run(
            dir.path(),
            &query(r#""measure":"cases","filters":{"exploitation_type":["sexual_exploitation"]}"#),
        );
        assert_eq!(beyond.components[0].values, [0]);
        // Grouped and filtered: only the kept types, and the domain narrows to them.
        let both = run(
            dir.path(),
            &query(
                r#""measure":"cases","group_by":["exploitation_type"],"filters":{"exploitation_type":["forced_labour","unknown"]}"#,
            ),
        );
        assert_eq!(both.cells, [["forced_labour"], ["unknown"]]);
        assert_eq!(both.components[0].values, [2, 2]);
    }

    #[test]
    fn filters_and_period_select_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = rec("p1", "r1", 2004);
        a.gender = Some("female");
        let mut b = rec("p2", "r2", 2005);
        b.gender = Some("male");
        b.registration = (2005, 12);
        let c = rec("p3", "r3", 2005);
        let early = rec("p4", "r4", 2003);
        let mut late = rec("p5", "r5", 2006);
        late.registration = (2006, 1);
        let mut ukr = rec("p6", "r6", 2005);
        ukr.mission = "UKR";
        write_dataset(dir.path(), &[a, b, c, early, late, ukr]);

        let all = run(dir.path(), &query(r#""measure":"cases""#));
        assert_eq!(all.components[0].values, [4]);
        let counted = |filters: &str| {
            run(
                dir.path(),
                &query(&format!(r#""measure":"cases","filters":{filters}"#)),
            )
            .components[0]
                .values[0]
        };
        assert_eq!(counted(r#"{"gender":["female","male"]}"#), 2);
        assert_eq!(counted(r#"{"gender":["unknown"]}"#), 2);
        assert_eq!(counted(r#"{"gender":["unknown"],"mission":["UKR"]}"#), 1);
        assert_eq!(counted(r#"{"registration_month":["2005-12"]}"#), 1);
        assert_eq!(
            counted(r#"{"registration_quarter":["2005-Q1","2005-Q4"]}"#),
            3
        );

        let quarters = run(
            dir.path(),
            &query(r#""measure":"cases","group_by":["registration_quarter"]"#),
        );
        assert_eq!(quarters.cells.len(), 9);
        assert_eq!(
            nonzero(&quarters),
            map(&[("2004-Q1", 1), ("2005-Q1", 2), ("2005-Q4", 1)])
        );
    }

    #[test]
    fn only_files_in_the_manifest_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let q = query(r#""measure":"cases""#);
        // No manifest yet: an empty dataset, zeros.
        assert_eq!(run(dir.path(), &q).components[0].values, [0]);
        assert_eq!(run(dir.path(), &q).generation, 0);

        write_dataset(dir.path(), &[rec("p1", "r1", 2004)]);
        // A file written but never committed (an interrupted batch) is invisible.
        write_file(
            dir.path(),
            "KGZ",
            2004,
            "uncommitted",
            &[rec("p2", "r2", 2004), rec("p3", "r3", 2004)],
        );
        assert_eq!(run(dir.path(), &q).components[0].values, [1]);

        // Once the manifest lists it, the next query sees it.
        let mut manifest = Manifest::read(dir.path()).unwrap();
        manifest.batches[0].files.push(FileEntry {
            path: format!("{}/part-uncommitted.parquet", partition_dir("KGZ", 2004)),
            rows: 2,
        });
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        assert_eq!(run(dir.path(), &q).components[0].values, [3]);

        // A manifest pointing outside the dataset is refused.
        manifest.batches[0].files[0].path = "../elsewhere.parquet".into();
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        let err = block_on(aggregate(
            &Paid::for_tests(),
            dir.path(),
            &missions(),
            &spec(&q),
        ))
        .unwrap_err();
        assert!(matches!(err, PlanError::UnsafePath { .. }), "{err}");
        assert!(!err.is_caller_error());
    }

    #[test]
    fn value_measures_clamp_bin_and_skip_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = rec("p1", "r1", 2004); // closed after 2 months
        a.closed = Some((2004, 5));
        let mut b = rec("p2", "r2", 2004); // closed after 22 months: clamped to 12
        b.closed = Some((2006, 1));
        let mut c = rec("p3", "r3", 2004); // closed before registration: clamped to 0
        c.closed = Some((2004, 1));
        let d = rec("p4", "r4", 2004); // still open: no value
        let mut e = rec("p5", "r5", 2004);
        e.shelter_accepted = Some(true);
        e.closed = Some((2004, 9));
        let mut f = rec("p6", "r6", 2004);
        f.shelter_accepted = Some(false);
        write_dataset(dir.path(), &[a, b, c, d, e, f]);

        let value = r#""column":"months_to_closure","bounds":{"lower":0,"upper":12}"#;
        let sum = run(dir.path(), &query(&format!(r#""measure":"sum",{value}"#)));
        assert_eq!(sum.components[0].values, [2 + 12 + 6]);
        assert_eq!(
            sum.components[0].contribution,
            Contribution {
                l0: 1,
                l1: 12,
                linf: 12
            }
        );
        let mean = run(dir.path(), &query(&format!(r#""measure":"mean",{value}"#)));
        assert_eq!(mean.components.len(), 2);
        assert_eq!(mean.components[0].values, [20]);
        assert_eq!(mean.components[1].name, "count");
        assert_eq!(mean.components[1].values, [4]);

        let hist = run(
            dir.path(),
            &query(&format!(r#""measure":"histogram",{value},"bins":3"#)),
        );
        assert_eq!(hist.dimensions, ["bin"]);
        assert_eq!(hist.cells, [["[0,3]"], ["[4,7]"], ["[8,12]"]]);
        assert_eq!(hist.components[0].values, [2, 1, 1]);

        let share = run(
            dir.path(),
            &query(
                r#""measure":"mean","column":"shelter_accepted","bounds":{"lower":0,"upper":1}"#,
            ),
        );
        assert_eq!(share.components[0].values, [1]);
        assert_eq!(share.components[1].values, [2]);
    }

    #[test]
    fn threshold_keys_are_the_observed_cells() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = rec("p1", "r1", 2004);
        a.gender = Some("male");
        let b = rec("p2", "r2", 2005);
        let mut c = rec("p3", "r3", 2005);
        c.mission = "UKR";
        c.gender = Some("female");
        write_dataset(dir.path(), &[a, b, c]);
        let out = run(
            dir.path(),
            r#"{"measure":"persons","group_by":["mission","gender"],"keys":"threshold",
            "period":{"from":"2004-01","to":"2005-12"},"budget":{"epsilon":1,"delta":1e-6}}"#,
        );
        assert_eq!(
            out.cells,
            [["KGZ", "male"], ["KGZ", "unknown"], ["UKR", "female"]]
        );
        assert_eq!(out.components[0].values, [1, 1, 1]);
        assert_eq!(out.keys, KeysMode::Threshold);
    }

    #[test]
    fn mission_domain_is_checked_against_the_missions_given() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(&query(r#""measure":"cases","filters":{"mission":["UKR"]}"#));
        let err = block_on(aggregate(
            &Paid::for_tests(),
            dir.path(),
            &["KGZ".to_string()],
            &s,
        ))
        .unwrap_err();
        assert!(err.is_caller_error(), "{err}");
        assert!(err.to_string().contains("filters.mission"), "{err}");
    }

    // The neighbouring test: removing all records of one person changes every component by at
    // most its stated contribution bounds.

    const TYPES: [&str; 5] = [
        "forced_labour",
        "sexual_exploitation",
        "forced_begging",
        "slavery",
        "other",
    ];

    fn arb_record() -> impl Strategy<Value = Rec> {
        (
            (
                prop::sample::select(vec!["KGZ", "UKR", "MDA"]),
                2003..=2006i32,
                1..=12u32,
                0..1000u32,
            ),
            prop::option::of(-3..30i32),
            prop::option::of(prop::sample::select(vec!["female", "male"])),
            prop::option::of(prop::collection::vec(
                prop::sample::select(TYPES.to_vec()),
                0..4,
            )),
            prop::option::of(any::<bool>()),
        )
            .prop_map(
                |((mission, year, month, key), closed, gender, types, shelter)| {
                    let start = i64::from(year) * 12 + i64::from(month) - 1;
                    let closed = closed.map(|d| {
                        let m = start + i64::from(d);
                        (m.div_euclid(12) as i32, m.rem_euclid(12) as u32 + 1)
                    });
                    Rec {
                        mission,
                        person: String::new(),
                        record: format!("{key:03x}"),
                        registration: (year, month),
                        closed,
                        gender,
                        types,
                        shelter_accepted: shelter,
                    }
                },
            )
    }

    fn arb_dataset() -> impl Strategy<Value = Vec<Rec>> {
        prop::collection::vec(prop::collection::vec(arb_record(), 1..5), 1..5).prop_map(|persons| {
            persons
                .into_iter()
                .enumerate()
                .flat_map(|(p, recs)| {
                    recs.into_iter().enumerate().map(move |(i, mut r)| {
                        r.person = format!("person{p}");
                        r.record = format!("{}-{p}-{i}", r.record);
                        r
                    })
                })
                .collect()
        })
    }

    const NEIGHBOUR_QUERIES: &[&str] = &[
        r#""measure":"persons","group_by":["mission","registration_year"]"#,
        r#""measure":"cases","group_by":["exploitation_type","gender"]"#,
        r#""measure":"persons","group_by":["exploitation_type"],"list_items_bound":3"#,
        r#""measure":"sum","column":"months_to_closure","bounds":{"lower":-2,"upper":12},"group_by":["gender"]"#,
        r#""measure":"mean","column":"shelter_accepted","bounds":{"lower":0,"upper":1},"group_by":["exploitation_type"]"#,
        r#""measure":"histogram","column":"months_to_closure","bounds":{"lower":0,"upper":20},"bins":4,"group_by":["exploitation_type","registration_year"]"#,
        r#""measure":"quantile","column":"months_to_closure","bounds":{"lower":0,"upper":24},"quantiles":[0.5],"filters":{"gender":["female","unknown"]}"#,
    ];

    /// Cell → values of every component, for comparing answers with different cells.
    fn by_cell(a: &Aggregates) -> HashMap<Vec<String>, Vec<i64>> {
        a.cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                (
                    cell.clone(),
                    a.components.iter().map(|c| c.values[i]).collect(),
                )
            })
            .collect()
    }

    fn check_neighbours(recs: &[Rec], body: &str, k: u32, threshold: bool) {
        // Threshold keys select on a count: not for `sum` and `quantile` (see spec.rs).
        let threshold = threshold
            && !body.contains(r#""measure":"sum""#)
            && !body.contains(r#""measure":"quantile""#);
        let keys = if threshold {
            r#""keys":"threshold","budget":{"epsilon":1,"delta":1e-6}"#
        } else {
            r#""budget":{"epsilon":1}"#
        };
        let json = format!(
            r#"{{{body},"contribution_bound":{k},"period":{{"from":"2004-01","to":"2005-12"}},{keys}}}"#
        );
        let s = spec(&json);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let answer = |recs: &[Rec]| {
            let dir = tempfile::tempdir().unwrap();
            write_dataset(dir.path(), recs);
            runtime
                .block_on(aggregate(&Paid::for_tests(), dir.path(), &missions(), &s))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let full = answer(recs);
        let full_cells = by_cell(&full);
        let mut persons: Vec<&str> = recs.iter().map(|r| r.person.as_str()).collect();
        persons.sort();
        persons.dedup();
        for p in persons {
            let rest: Vec<Rec> = recs.iter().filter(|r| r.person != p).cloned().collect();
            let neighbour = answer(&rest);
            if !threshold {
                assert_eq!(neighbour.cells, full.cells);
            }
            let neighbour_cells = by_cell(&neighbour);
            let mut keys: Vec<&Vec<String>> =
                full_cells.keys().chain(neighbour_cells.keys()).collect();
            keys.sort();
            keys.dedup();
            for (i, component) in full.components.iter().enumerate() {
                let bound = component.contribution;
                let changes: Vec<u64> = keys
                    .iter()
                    .map(|key| {
                        let a = full_cells.get(*key).map_or(0, |v| v[i]);
                        let b = neighbour_cells.get(*key).map_or(0, |v| v[i]);
                        a.abs_diff(b)
                    })
                    .filter(|d| *d > 0)
                    .collect();
                let what = format!("{} without {p} in `{json}`", component.name);
                assert!(
                    changes.len() as u64 <= bound.l0,
                    "l0 of {what}: {changes:?}"
                );
                assert!(
                    changes.iter().sum::<u64>() <= bound.l1,
                    "l1 of {what}: {changes:?}"
                );
                assert!(
                    changes.iter().all(|d| *d <= bound.linf),
                    "linf of {what}: {changes:?}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn neighbouring_datasets_change_within_the_contribution_bounds(
            recs in arb_dataset(),
            query in 0..NEIGHBOUR_QUERIES.len(),
            k in 1..=3u32,
            threshold in any::<bool>(),
        ) {
            check_neighbours(&recs, NEIGHBOUR_QUERIES[query], k, threshold);
        }
    }

    #[test]
    fn the_bounds_are_attained() {
        // One person, three records of two types each, k = 3, m = 2 (so l0 = l1 = 6, linf = 3).
        let counts = |types: [[&'static str; 2]; 3]| {
            let recs: Vec<Rec> = types
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let mut r = rec("p1", &format!("r{i}"), 2004);
                    r.types = Some(t.to_vec());
                    r
                })
                .collect();
            let dir = tempfile::tempdir().unwrap();
            write_dataset(dir.path(), &recs);
            let out = run(
                dir.path(),
                &query(
                    r#""measure":"cases","group_by":["exploitation_type"],"contribution_bound":3"#,
                ),
            );
            let c = &out.components[0];
            assert_eq!(
                c.contribution,
                Contribution {
                    l0: 6,
                    l1: 6,
                    linf: 3
                }
            );
            let nonzero = c.values.iter().filter(|v| **v > 0).count();
            (
                nonzero,
                c.values.iter().sum::<i64>(),
                *c.values.iter().max().unwrap(),
            )
        };
        // Disjoint types: six cells change by one each (l0 and l1 attained).
        assert_eq!(
            counts([
                ["forced_labour", "forced_begging"],
                ["other", "sexual_exploitation"],
                ["slavery", "forced_marriage"]
            ]),
            (6, 6, 1)
        );
        // A shared type: one cell changes by k (linf attained).
        assert_eq!(
            counts([
                ["forced_labour", "other"],
                ["forced_labour", "sexual_exploitation"],
                ["forced_labour", "slavery"]
            ]),
            (4, 6, 3)
        );
    }
}
