//! The query a caller posts, as JSON, and its validation against the public domains.
//!
//! ```json
//! {
//!   "measure": "persons",
//!   "group_by": ["mission", "registration_year", "gender"],
//!   "filters": { "trafficking_status": ["actual", "possible"] },
//!   "period": { "from": "2003-01", "to": "2006-12" },
//!   "contribution_bound": 1,
//!   "mechanism": "laplace",
//!   "budget": { "epsilon": 0.5 },
//!   "keys": "public"
//! }
//! ```
//!
//! A value measure names a numeric column and its bounds:
//! `{"measure": "histogram", "column": "months_to_closure", "bounds": {"lower": 0, "upper": 23},
//! "bins": 4, ...}` or `"bins": [0, 3, 6, 12]` (explicit lower edges).
//!
//! [`QuerySpec`] is what arrives (serde, unknown fields refused); [`QuerySpec::validate`] checks it
//! against the public domains and returns a [`ValidatedSpec`], the only form the planner accepts.
//! Every error names the field and what it allows, and all errors are reported at once.
//!
//! Public domains: missions are the codes the service is configured with; countries are every
//! ISO 3166-1 alpha-3 code of `ctstats_schemas::countries`; coded fields take the snake_case
//! names of their code list; flags take `yes` and `no`; years, quarters and months come from the
//! period. Every domain ends with [`UNKNOWN`], the key of nulls (not recorded) and of stored
//! values outside the domain.
//!
//! A validated spec has one canonical serialisation ([`ValidatedSpec::canonical_json`]): every
//! default filled in, `group_by` in the canonical dimension order, filter values deduplicated in
//! domain order, quantiles sorted, bins always as explicit lower edges. Its BLAKE3 hash
//! ([`ValidatedSpec::hash`]) recognises the same question asked again, however it was spelled.

use std::collections::BTreeMap;
use std::fmt;

use ctstats_schemas::codes::{CodeList, ExploitationType};
use ctstats_schemas::{FIELDS, FieldGroup, FieldKind, code_list_names, countries};
use serde::{Deserialize, Serialize};

/// The key of nulls and of values outside the domain, last in every domain.
pub const UNKNOWN: &str = "unknown";
/// Flag keys.
pub const YES: &str = "yes";
pub const NO: &str = "no";
/// Above this many cells (including bins) a query must release keys by threshold.
pub const MAX_PUBLIC_CELLS: u64 = 10_000;
/// Records per person kept: default and maximum.
pub const DEFAULT_CONTRIBUTION_BOUND: u32 = 1;
pub const MAX_CONTRIBUTION_BOUND: u32 = 20;
/// Exploitation types per record kept: default (the maximum is the size of the code list).
pub const DEFAULT_LIST_ITEMS_BOUND: u32 = 2;
/// Longest period, in months (30 years).
pub const MAX_PERIOD_MONTHS: u32 = 360;
/// Largest absolute value of a bound.
pub const MAX_ABS_BOUND: i64 = 1_000_000;
/// Most bins of a histogram or quantile.
pub const MAX_BINS: usize = 1_000;
/// Default number of bins of a quantile (fewer when the bounds hold fewer integers).
pub const DEFAULT_QUANTILE_BINS: i64 = 100;
/// Most quantiles in one query.
pub const MAX_QUANTILES: usize = 20;
/// Yes/no value columns are the flags; these are the derived ones.
pub const MONTHS_TO_CLOSURE: &str = "months_to_closure";
pub const MONTHS_IDENTIFICATION_TO_REGISTRATION: &str = "months_identification_to_registration";
pub const ASSISTANCE_TYPE_COUNT: &str = "assistance_type_count";

/// The query as posted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    /// What is counted or summed per cell.
    pub measure: Measure,
    /// The numeric column of `sum`, `mean`, `quantile` and `histogram` (see [`value_columns`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Declared range of the column; values outside are clamped to it. Required with `column`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<Bounds>,
    /// Bins of `histogram` (required) or `quantile` (optional): a number of equal-width bins over
    /// the integers of `bounds`, or explicit lower edges starting at `bounds.lower`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bins: Option<Bins>,
    /// Quantiles of `quantile`, each in [0, 1], e.g. `[0.5]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<Vec<f64>>,
    /// Public dimensions to group by (see [`dimensions`]).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Per dimension, the values kept (`unknown` selects nulls).
    #[serde(default)]
    pub filters: BTreeMap<String, Vec<String>>,
    /// Registration months included, inclusive, `YYYY-MM`.
    pub period: PeriodSpec,
    /// Records kept per person (default 1, at most 20): the person's records with the smallest
    /// `record_key` among those passing the period and filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contribution_bound: Option<u32>,
    /// Exploitation types kept per record when grouping or filtering by `exploitation_type`
    /// (default 2): the first ones in sorted order of their names; the others are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_items_bound: Option<u32>,
    /// Noise distribution.
    #[serde(default)]
    pub mechanism: Mechanism,
    /// Privacy loss to spend. Exactly one of `budget` and `accuracy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Accuracy wanted; the service works out the budget. Exactly one of `budget` and `accuracy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<Accuracy>,
    /// Which keys are released.
    #[serde(default)]
    pub keys: KeysMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Distinct persons per cell.
    Persons,
    /// Records (cases) per cell.
    Cases,
    /// Sum of the clamped column.
    Sum,
    /// Mean of the clamped column: a noised sum over a noised count.
    Mean,
    /// Quantiles of the clamped column, from a noised histogram.
    Quantile,
    /// Counts of the clamped column per bin.
    Histogram,
}

impl Measure {
    pub fn name(self) -> &'static str {
        match self {
            Measure::Persons => "persons",
            Measure::Cases => "cases",
            Measure::Sum => "sum",
            Measure::Mean => "mean",
            Measure::Quantile => "quantile",
            Measure::Histogram => "histogram",
        }
    }

    /// Whether the measure reads a numeric column.
    pub fn has_value(self) -> bool {
        !matches!(self, Measure::Persons | Measure::Cases)
    }

    /// Whether the measure counts records per bin.
    pub fn has_bins(self) -> bool {
        matches!(self, Measure::Quantile | Measure::Histogram)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    pub lower: i64,
    pub upper: i64,
}

/// A number of equal-width bins, or explicit lower edges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Bins {
    Count(u32),
    Edges(Vec<i64>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeriodSpec {
    /// First month, `YYYY-MM`.
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}$")]
    pub from: String,
    /// Last month, `YYYY-MM`, inclusive.
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}$")]
    pub to: String,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// Discrete Laplace noise: pure epsilon-DP.
    #[default]
    Laplace,
    /// Discrete Gaussian noise: needs a delta.
    Gaussian,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub epsilon: f64,
    /// Required for the Gaussian mechanism and threshold keys, refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Accuracy {
    /// Half-width of the 95% interval of each noised component.
    pub half_width_95: f64,
    /// Required for the Gaussian mechanism and threshold keys, refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum KeysMode {
    /// Every cell of the cartesian domain, zeros included.
    #[default]
    Public,
    /// Only the keys whose noised count passes a DP threshold.
    Threshold,
}

/// One validation problem: the field at fault and what it allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem of a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Errors(Vec<SpecError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(SpecError {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// A month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl Month {
    /// Parse `YYYY-MM` (years 1900 to 2100).
    pub fn parse(text: &str) -> Option<Month> {
        let (y, m) = text.split_once('-')?;
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        let (year, month) = (y.parse().ok()?, m.parse().ok()?);
        ((1900..=2100).contains(&year) && (1..=12).contains(&month))
            .then_some(Month { year, month })
    }

    fn index(self) -> i64 {
        i64::from(self.year) * 12 + i64::from(self.month) - 1
    }

    fn from_index(index: i64) -> Month {
        Month {
            year: index.div_euclid(12) as i32,
            month: index.rem_euclid(12) as u32 + 1,
        }
    }

    /// The next month.
    pub fn next(self) -> Month {
        Month::from_index(self.index() + 1)
    }

    /// The first day of the month, `YYYY-MM-01`.
    pub fn first_day(self) -> String {
        format!("{:04}-{:02}-01", self.year, self.month)
    }

    /// The quarter key, `YYYY-Qn`.
    pub fn quarter(self) -> String {
        format!("{:04}-Q{}", self.year, (self.month - 1) / 3 + 1)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Registration months included, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    pub from: Month,
    pub to: Month,
}

impl Period {
    /// Every month of the period, in order.
    pub fn months(self) -> impl Iterator<Item = Month> {
        (self.from.index()..=self.to.index()).map(Month::from_index)
    }
}

/// A public grouping dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// `reporting_mission`; the domain is the service's missions.
    Mission,
    RegistrationYear,
    RegistrationQuarter,
    RegistrationMonth,
    /// One key per exploitation type of the record (the list is exploded).
    ExploitationType,
    /// A coded field (non-provenance), keyed by its code names.
    Code {
        field: &'static str,
        list: &'static str,
    },
    /// A country field, keyed by ISO alpha-3.
    Country {
        field: &'static str,
    },
    /// A yes/no field, keyed `yes`, `no`.
    Flag {
        field: &'static str,
    },
}

impl Dimension {
    /// The name used in `group_by`, `filters` and answers.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Mission => "mission",
            Dimension::RegistrationYear => "registration_year",
            Dimension::RegistrationQuarter => "registration_quarter",
            Dimension::RegistrationMonth => "registration_month",
            Dimension::ExploitationType => "exploitation_type",
            Dimension::Code { field, .. }
            | Dimension::Country { field }
            | Dimension::Flag { field } => field,
        }
    }

    /// The dimension called `name`.
    pub fn from_name(name: &str) -> Option<Dimension> {
        dimensions().into_iter().find(|d| d.name() == name)
    }

    /// Position in the canonical order of [`dimensions`].
    pub fn rank(self) -> usize {
        dimensions()
            .iter()
            .position(|d| *d == self)
            .expect("every dimension is listed")
    }

    /// Every key of the dimension, [`UNKNOWN`] last. `missions` is the mission domain.
    pub fn domain(self, missions: &[String], period: Period) -> Vec<String> {
        let mut keys: Vec<String> = match self {
            Dimension::Mission => {
                let mut m: Vec<String> = missions.to_vec();
                m.sort();
                m.dedup();
                m.retain(|m| m != UNKNOWN);
                m
            }
            Dimension::RegistrationYear => (period.from.year..=period.to.year)
                .map(|y| format!("{y:04}"))
                .collect(),
            Dimension::RegistrationQuarter => {
                let mut q: Vec<String> = period.months().map(Month::quarter).collect();
                q.dedup();
                q
            }
            Dimension::RegistrationMonth => period.months().map(|m| m.to_string()).collect(),
            Dimension::ExploitationType => ExploitationType::ALL
                .iter()
                .map(|t| t.name().to_string())
                .collect(),
            Dimension::Code { list, .. } => code_list_names(list)
                .unwrap_or_default()
                .into_iter()
                .map(str::to_string)
                .collect(),
            Dimension::Country { .. } => countries::all()
                .iter()
                .map(|c| c.alpha3.to_string())
                .collect(),
            Dimension::Flag { .. } => vec![YES.to_string(), NO.to_string()],
        };
        keys.push(UNKNOWN.to_string());
        keys
    }
}

/// Every public dimension, in canonical order: mission, registration time, then the fields of
/// the canonical record in their stored order (coded, country and flag fields outside the
/// provenance group, and `exploitation_type` from the `exploitation_types` list).
pub fn dimensions() -> Vec<Dimension> {
    let mut dims = vec![
        Dimension::Mission,
        Dimension::RegistrationYear,
        Dimension::RegistrationQuarter,
        Dimension::RegistrationMonth,
    ];
    for f in FIELDS {
        if f.group == FieldGroup::Provenance {
            continue;
        }
        match f.kind {
            FieldKind::Code { list } => dims.push(Dimension::Code {
                field: f.name,
                list,
            }),
            FieldKind::Country => dims.push(Dimension::Country { field: f.name }),
            FieldKind::Flag => dims.push(Dimension::Flag { field: f.name }),
            FieldKind::CodeSet { list } if list == ExploitationType::LIST => {
                dims.push(Dimension::ExploitationType)
            }
            _ => {}
        }
    }
    dims
}

/// A numeric column of the value measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueColumn {
    /// A yes/no field as 1/0 (null stays null).
    Flag { field: &'static str },
    /// Months from `registration_month` to `case_closed_month`; null while the case is open.
    MonthsToClosure,
    /// Months from `identification_month` to `registration_month`; null when not recorded.
    MonthsIdentificationToRegistration,
    /// Number of distinct assistance types; null when not recorded.
    AssistanceTypeCount,
}

impl ValueColumn {
    pub fn name(self) -> &'static str {
        match self {
            ValueColumn::Flag { field } => field,
            ValueColumn::MonthsToClosure => MONTHS_TO_CLOSURE,
            ValueColumn::MonthsIdentificationToRegistration => {
                MONTHS_IDENTIFICATION_TO_REGISTRATION
            }
            ValueColumn::AssistanceTypeCount => ASSISTANCE_TYPE_COUNT,
        }
    }

    pub fn from_name(name: &str) -> Option<ValueColumn> {
        value_columns().into_iter().find(|c| c.name() == name)
    }
}

/// Every numeric column: the flags (as 0/1) in stored order, then the derived columns.
pub fn value_columns() -> Vec<ValueColumn> {
    let mut cols: Vec<ValueColumn> = FIELDS
        .iter()
        .filter(|f| f.kind == FieldKind::Flag)
        .map(|f| ValueColumn::Flag { field: f.name })
        .collect();
    cols.extend([
        ValueColumn::MonthsToClosure,
        ValueColumn::MonthsIdentificationToRegistration,
        ValueColumn::AssistanceTypeCount,
    ]);
    cols
}

/// A bin over the integers `lower..=upper`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Bin {
    pub lower: i64,
    pub upper: i64,
}

impl Bin {
    /// The key of the bin in answers, `[lower,upper]`.
    pub fn label(self) -> String {
        format!("[{},{}]", self.lower, self.upper)
    }
}

/// How much privacy to spend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Privacy {
    Budget {
        epsilon: f64,
        delta: Option<f64>,
    },
    Accuracy {
        half_width_95: f64,
        delta: Option<f64>,
    },
}

/// A spec that passed validation; only [`QuerySpec::validate`] builds one.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedSpec {
    measure: Measure,
    column: Option<ValueColumn>,
    bounds: Option<Bounds>,
    bins: Vec<Bin>,
    quantiles: Vec<f64>,
    group_by: Vec<Dimension>,
    filters: Vec<(Dimension, Vec<String>)>,
    period: Period,
    contribution_bound: u32,
    list_items_bound: u32,
    mechanism: Mechanism,
    privacy: Privacy,
    keys: KeysMode,
    canonical: String,
}

impl ValidatedSpec {
    pub fn measure(&self) -> Measure {
        self.measure
    }
    /// The numeric column of a value measure.
    pub fn column(&self) -> Option<ValueColumn> {
        self.column
    }
    /// The bounds of a value measure.
    pub fn bounds(&self) -> Option<Bounds> {
        self.bounds
    }
    /// The bins of `histogram` and `quantile`, covering the bounds; empty otherwise.
    pub fn bins(&self) -> &[Bin] {
        &self.bins
    }
    /// The quantiles of `quantile`, sorted; empty otherwise.
    pub fn quantiles(&self) -> &[f64] {
        &self.quantiles
    }
    /// The grouping dimensions, in canonical order.
    pub fn group_by(&self) -> &[Dimension] {
        &self.group_by
    }
    /// Filters in canonical dimension order, values deduplicated in domain order.
    pub fn filters(&self) -> &[(Dimension, Vec<String>)] {
        &self.filters
    }
    /// The values kept of a filtered dimension.
    pub fn filter(&self, dim: Dimension) -> Option<&[String]> {
        self.filters
            .iter()
            .find(|(d, _)| *d == dim)
            .map(|(_, v)| v.as_slice())
    }
    pub fn period(&self) -> Period {
        self.period
    }
    /// Records kept per person.
    pub fn contribution_bound(&self) -> u32 {
        self.contribution_bound
    }
    /// Exploitation types kept per record.
    pub fn list_items_bound(&self) -> u32 {
        self.list_items_bound
    }
    /// Cells one record can fall in: `list_items_bound` when grouping by exploitation type.
    pub fn cells_per_record(&self) -> u32 {
        if self.group_by.contains(&Dimension::ExploitationType) {
            self.list_items_bound
        } else {
            1
        }
    }
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }
    pub fn privacy(&self) -> Privacy {
        self.privacy
    }
    pub fn keys(&self) -> KeysMode {
        self.keys
    }

    /// The released domain of a grouping dimension: its public domain, narrowed to the filter
    /// values when it is also filtered.
    pub fn released_domain(&self, dim: Dimension, missions: &[String]) -> Vec<String> {
        let domain = dim.domain(missions, self.period);
        match self.filter(dim) {
            Some(kept) => domain.into_iter().filter(|k| kept.contains(k)).collect(),
            None => domain,
        }
    }

    /// Cells of the cartesian domain of the released keys, bins included (saturating).
    pub fn public_cells(&self, missions: &[String]) -> u64 {
        let bins = self.bins.len().max(1) as u64;
        self.group_by
            .iter()
            .map(|d| self.released_domain(*d, missions).len() as u64)
            .fold(bins, u64::saturating_mul)
    }

    /// Checks that depend on the mission domain: mission filter values, and the size of the
    /// public domain. [`QuerySpec::validate`] runs them; the planner runs them again against the
    /// missions it is given.
    pub fn check_missions(&self, missions: &[String]) -> Result<(), SpecErrors> {
        let mut errs = Errors::default();
        self.check_missions_into(missions, &mut errs);
        if errs.0.is_empty() {
            Ok(())
        } else {
            Err(SpecErrors(errs.0))
        }
    }

    fn check_missions_into(&self, missions: &[String], errs: &mut Errors) {
        if let Some(kept) = self.filter(Dimension::Mission) {
            let domain = Dimension::Mission.domain(missions, self.period);
            for v in kept.iter().filter(|v| !domain.contains(v)) {
                errs.push(
                    "filters.mission",
                    format!(
                        "`{v}` is not a mission here; allowed: {}",
                        domain.join(", ")
                    ),
                );
            }
        }
        let cells = self.public_cells(missions);
        if self.keys == KeysMode::Public && cells > MAX_PUBLIC_CELLS {
            errs.push(
                "keys",
                format!(
                    "the public domain of this query has {cells} cells (more than \
                     {MAX_PUBLIC_CELLS}); use \"keys\": \"threshold\", fewer group_by \
                     dimensions, filters or bins"
                ),
            );
        }
    }

    /// The canonical serialisation: stable across spellings of the same query.
    pub fn canonical_json(&self) -> &str {
        &self.canonical
    }

    /// BLAKE3 (derive-key mode, context `ctstats query spec v1`) of the canonical
    /// serialisation, in hex.
    pub fn hash(&self) -> String {
        let mut hasher = blake3::Hasher::new_derive_key("ctstats query spec v1");
        hasher.update(self.canonical.as_bytes());
        hasher.finalize().to_hex().to_string()
    }

    /// The canonical form as a spec (it validates to itself).
    fn canonical_spec(&self) -> QuerySpec {
        let (budget, accuracy) = match self.privacy {
            Privacy::Budget { epsilon, delta } => (Some(Budget { epsilon, delta }), None),
            Privacy::Accuracy {
                half_width_95,
                delta,
            } => (
                None,
                Some(Accuracy {
                    half_width_95,
                    delta,
                }),
            ),
        };
        QuerySpec {
            measure: self.measure,
            column: self.column.map(|c| c.name().to_string()),
            bounds: self.bounds,
            bins: (!self.bins.is_empty())
                .then(|| Bins::Edges(self.bins.iter().map(|b| b.lower).collect())),
            quantiles: (self.measure == Measure::Quantile).then(|| self.quantiles.clone()),
            group_by: self.group_by.iter().map(|d| d.name().to_string()).collect(),
            filters: self
                .filters
                .iter()
                .map(|(d, v)| (d.name().to_string(), v.clone()))
                .collect(),
            period: PeriodSpec {
                from: self.period.from.to_string(),
                to: self.period.to.to_string(),
            },
            contribution_bound: Some(self.contribution_bound),
            list_items_bound: Some(self.list_items_bound),
            mechanism: self.mechanism,
            budget,
            accuracy,
            keys: self.keys,
        }
    }
}

impl QuerySpec {
    /// Parse a JSON body. Unknown fields are refused.
    pub fn from_json(json: &str) -> Result<QuerySpec, SpecErrors> {
        serde_json::from_str(json).map_err(|e| {
            SpecErrors(vec![SpecError {
                field: "body".into(),
                message: e.to_string(),
            }])
        })
    }

    /// Check the spec against the public domains; `missions` is the mission domain.
    pub fn validate(&self, missions: &[String]) -> Result<ValidatedSpec, SpecErrors> {
        let mut errs = Errors::default();

        let period = validate_period(&self.period, &mut errs);
        let (column, bounds) = self.validate_value(&mut errs);
        let bins = self.validate_bins(bounds, &mut errs);
        let quantiles = self.validate_quantiles(&mut errs);
        let group_by = validate_group_by(&self.group_by, &mut errs);
        let filters = period
            .map(|p| validate_filters(&self.filters, missions, p, &mut errs))
            .unwrap_or_default();

        let contribution_bound = self
            .contribution_bound
            .unwrap_or(DEFAULT_CONTRIBUTION_BOUND);
        if !(1..=MAX_CONTRIBUTION_BOUND).contains(&contribution_bound) {
            errs.push(
                "contribution_bound",
                format!("must be from 1 to {MAX_CONTRIBUTION_BOUND} (records kept per person)"),
            );
        }
        let max_items = ExploitationType::ALL.len() as u32;
        let uses_list = group_by.contains(&Dimension::ExploitationType)
            || filters
                .iter()
                .any(|(d, _)| *d == Dimension::ExploitationType);
        let list_items_bound = match self.list_items_bound {
            // Without exploitation_type the bound has no effect: canonically the default.
            _ if !uses_list => DEFAULT_LIST_ITEMS_BOUND,
            Some(m) if !(1..=max_items).contains(&m) => {
                errs.push(
                    "list_items_bound",
                    format!("must be from 1 to {max_items} (exploitation types kept per record)"),
                );
                DEFAULT_LIST_ITEMS_BOUND
            }
            Some(m) => m,
            None => DEFAULT_LIST_ITEMS_BOUND,
        };

        let privacy = self.validate_privacy(&mut errs);
        if self.keys == KeysMode::Threshold {
            // The threshold selects keys on a noisy count, and OpenDP's threshold mechanism is
            // discrete Laplace: a measure without a count to select on, or a quantile whose bins
            // would be dropped one by one, cannot use it.
            if !matches!(
                self.measure,
                Measure::Persons | Measure::Cases | Measure::Mean | Measure::Histogram
            ) {
                errs.push(
                    "keys",
                    format!(
                        "threshold keys work with persons, cases, mean and histogram, not `{}`",
                        self.measure.name()
                    ),
                );
            }
            if self.mechanism != Mechanism::Laplace {
                errs.push(
                    "mechanism",
                    "threshold keys use discrete Laplace noise; remove `mechanism` or use laplace",
                );
            }
        }

        let (Some(period), Some(privacy)) = (period, privacy) else {
            return Err(SpecErrors(errs.0));
        };
        if !errs.0.is_empty() {
            return Err(SpecErrors(errs.0));
        }
        let mut spec = ValidatedSpec {
            measure: self.measure,
            column,
            bounds,
            bins,
            quantiles,
            group_by,
            filters,
            period,
            contribution_bound,
            list_items_bound,
            mechanism: self.mechanism,
            privacy,
            keys: self.keys,
            canonical: String::new(),
        };
        spec.check_missions_into(missions, &mut errs);
        if !errs.0.is_empty() {
            return Err(SpecErrors(errs.0));
        }
        spec.canonical =
            serde_json::to_string(&spec.canonical_spec()).expect("a spec serialises to JSON");
        Ok(spec)
    }

    fn validate_value(&self, errs: &mut Errors) -> (Option<ValueColumn>, Option<Bounds>) {
        let measure = self.measure.name();
        if !self.measure.has_value() {
            if self.column.is_some() {
                errs.push("column", format!("`{measure}` takes no column"));
            }
            if self.bounds.is_some() {
                errs.push("bounds", format!("`{measure}` takes no bounds"));
            }
            return (None, None);
        }
        let allowed = || {
            value_columns()
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let column = match &self.column {
            None => {
                errs.push(
                    "column",
                    format!("`{measure}` needs a column; allowed: {}", allowed()),
                );
                None
            }
            Some(name) => {
                let c = ValueColumn::from_name(name);
                if c.is_none() {
                    errs.push(
                        "column",
                        format!("`{name}` is not a numeric column; allowed: {}", allowed()),
                    );
                }
                c
            }
        };
        let bounds = match self.bounds {
            None => {
                errs.push(
                    "bounds",
                    format!("`{measure}` needs bounds {{\"lower\": integer, \"upper\": integer}}"),
                );
                None
            }
            // `unsigned_abs`: `i64::MIN.abs()` overflows (a panic in debug, a wrap to a
            // negative number that passed this check in release).
            Some(b)
                if b.lower.unsigned_abs() > MAX_ABS_BOUND.unsigned_abs()
                    || b.upper.unsigned_abs() > MAX_ABS_BOUND.unsigned_abs() =>
            {
                errs.push(
                    "bounds",
                    format!("lower and upper must be within -{MAX_ABS_BOUND} to {MAX_ABS_BOUND}"),
                );
                None
            }
            Some(b) if b.lower >= b.upper => {
                errs.push("bounds", "lower must be less than upper");
                None
            }
            Some(b) => Some(b),
        };
        (column, bounds)
    }

    fn validate_bins(&self, bounds: Option<Bounds>, errs: &mut Errors) -> Vec<Bin> {
        let measure = self.measure.name();
        if !self.measure.has_bins() {
            if self.bins.is_some() {
                errs.push("bins", format!("`{measure}` takes no bins"));
            }
            return Vec::new();
        }
        let Some(Bounds { lower, upper }) = bounds else {
            return Vec::new();
        };
        let integers = upper - lower + 1;
        let edges: Vec<i64> = match &self.bins {
            None if self.measure == Measure::Histogram => {
                errs.push(
                    "bins",
                    "`histogram` needs bins: a number of equal-width bins or explicit lower edges",
                );
                return Vec::new();
            }
            None => equal_width(lower, integers, integers.min(DEFAULT_QUANTILE_BINS)),
            Some(Bins::Count(n)) => {
                let n = i64::from(*n);
                if n < 1 || n > integers.min(MAX_BINS as i64) {
                    errs.push(
                        "bins",
                        format!(
                            "the number of bins must be from 1 to {} (at most {MAX_BINS}, and at \
                             most the {integers} integers of the bounds)",
                            integers.min(MAX_BINS as i64)
                        ),
                    );
                    return Vec::new();
                }
                equal_width(lower, integers, n)
            }
            Some(Bins::Edges(edges)) => {
                let ok = !edges.is_empty()
                    && edges.len() <= MAX_BINS
                    && edges[0] == lower
                    && edges.windows(2).all(|w| w[0] < w[1])
                    && edges.last().is_some_and(|e| *e <= upper);
                if !ok {
                    errs.push(
                        "bins",
                        format!(
                            "explicit bins are at most {MAX_BINS} strictly increasing lower \
                             edges, the first equal to bounds.lower ({lower}), all at most \
                             bounds.upper ({upper})"
                        ),
                    );
                    return Vec::new();
                }
                edges.clone()
            }
        };
        edges
            .iter()
            .enumerate()
            .map(|(i, &lo)| Bin {
                lower: lo,
                upper: edges.get(i + 1).map_or(upper, |next| next - 1),
            })
            .collect()
    }

    fn validate_quantiles(&self, errs: &mut Errors) -> Vec<f64> {
        if self.measure != Measure::Quantile {
            if self.quantiles.is_some() {
                errs.push(
                    "quantiles",
                    format!("`{}` takes no quantiles", self.measure.name()),
                );
            }
            return Vec::new();
        }
        let Some(qs) = &self.quantiles else {
            errs.push("quantiles", "`quantile` needs quantiles, e.g. [0.5]");
            return Vec::new();
        };
        if qs.is_empty() || qs.len() > MAX_QUANTILES || qs.iter().any(|q| !(0.0..=1.0).contains(q))
        {
            errs.push(
                "quantiles",
                format!("give 1 to {MAX_QUANTILES} quantiles, each from 0 to 1"),
            );
            return Vec::new();
        }
        let mut qs: Vec<f64> = qs.iter().map(|q| q + 0.0).collect();
        qs.sort_by(f64::total_cmp);
        qs.dedup();
        qs
    }

    fn validate_privacy(&self, errs: &mut Errors) -> Option<Privacy> {
        let needs_delta = self.mechanism == Mechanism::Gaussian || self.keys == KeysMode::Threshold;
        let check_delta = |field: &str, delta: Option<f64>, errs: &mut Errors| match delta {
            None if needs_delta => errs.push(
                field,
                "a delta is required with the gaussian mechanism or threshold keys",
            ),
            Some(_) if !needs_delta => errs.push(
                field,
                "delta is only used with the gaussian mechanism or threshold keys; remove it",
            ),
            Some(d) if !(d > 0.0 && d < 1.0) => errs.push(field, "delta must be in (0, 1)"),
            _ => {}
        };
        match (self.budget, self.accuracy) {
            (Some(_), Some(_)) | (None, None) => {
                errs.push("budget", "give exactly one of `budget` and `accuracy`");
                None
            }
            (Some(Budget { epsilon, delta }), None) => {
                let before = errs.0.len();
                if !(epsilon.is_finite() && epsilon > 0.0) {
                    errs.push("budget.epsilon", "must be a positive number");
                }
                check_delta("budget.delta", delta, errs);
                (errs.0.len() == before).then_some(Privacy::Budget { epsilon, delta })
            }
            (
                None,
                Some(Accuracy {
                    half_width_95,
                    delta,
                }),
            ) => {
                let before = errs.0.len();
                if !(half_width_95.is_finite() && half_width_95 > 0.0) {
                    errs.push("accuracy.half_width_95", "must be a positive number");
                }
                check_delta("accuracy.delta", delta, errs);
                (errs.0.len() == before).then_some(Privacy::Accuracy {
                    half_width_95,
                    delta,
                })
            }
        }
    }
}

/// Lower edges of `n` bins over the `integers` integers from `lower`: bin `i` starts at
/// `lower + floor(i * integers / n)`, so widths differ by at most one.
fn equal_width(lower: i64, integers: i64, n: i64) -> Vec<i64> {
    (0..n).map(|i| lower + i * integers / n).collect()
}

fn validate_period(period: &PeriodSpec, errs: &mut Errors) -> Option<Period> {
    let from = Month::parse(&period.from);
    let to = Month::parse(&period.to);
    if from.is_none() {
        errs.push(
            "period.from",
            "must be a month `YYYY-MM` (years 1900 to 2100)",
        );
    }
    if to.is_none() {
        errs.push(
            "period.to",
            "must be a month `YYYY-MM` (years 1900 to 2100)",
        );
    }
    let (from, to) = (from?, to?);
    if from > to {
        errs.push("period", "`from` must not be after `to`");
        return None;
    }
    if to.index() - from.index() + 1 > i64::from(MAX_PERIOD_MONTHS) {
        errs.push(
            "period",
            format!("at most {MAX_PERIOD_MONTHS} months (30 years)"),
        );
        return None;
    }
    Some(Period { from, to })
}

fn all_dimension_names() -> String {
    dimensions()
        .iter()
        .map(|d| d.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn validate_group_by(names: &[String], errs: &mut Errors) -> Vec<Dimension> {
    let mut dims = Vec::new();
    for name in names {
        match Dimension::from_name(name) {
            None => errs.push(
                "group_by",
                format!(
                    "`{name}` is not a public dimension; allowed: {}",
                    all_dimension_names()
                ),
            ),
            Some(d) if dims.contains(&d) => {
                errs.push("group_by", format!("`{name}` is listed twice"))
            }
            Some(d) => dims.push(d),
        }
    }
    dims.sort_by_key(|d| d.rank());
    dims
}

fn validate_filters(
    filters: &BTreeMap<String, Vec<String>>,
    missions: &[String],
    period: Period,
    errs: &mut Errors,
) -> Vec<(Dimension, Vec<String>)> {
    let mut out = Vec::new();
    for (name, values) in filters {
        let field = format!("filters.{name}");
        let Some(dim) = Dimension::from_name(name) else {
            errs.push(
                field,
                format!(
                    "`{name}` is not a public dimension; allowed: {}",
                    all_dimension_names()
                ),
            );
            continue;
        };
        if values.is_empty() {
            errs.push(
                field,
                "an empty filter selects nothing; list the values kept",
            );
            continue;
        }
        let domain = dim.domain(missions, period);
        let mut ok = true;
        for v in values.iter().filter(|v| !domain.contains(v)) {
            ok = false;
            let allowed = if domain.len() > 40 {
                match dim {
                    Dimension::Country { .. } => "ISO 3166-1 alpha-3 codes or unknown".to_string(),
                    _ => format!(
                        "{} ... {} ({} values)",
                        domain[0],
                        domain[domain.len() - 1],
                        domain.len()
                    ),
                }
            } else {
                domain.join(", ")
            };
            errs.push(
                field.clone(),
                format!("`{v}` is not in the domain; allowed: {allowed}"),
            );
        }
        if ok {
            let kept = domain.into_iter().filter(|k| values.contains(k)).collect();
            out.push((dim, kept));
        }
    }
    out.sort_by_key(|(d, _)| d.rank());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missions() -> Vec<String> {
        vec!["KGZ".into(), "UKR".into()]
    }

    fn spec(json: &str) -> Result<ValidatedSpec, SpecErrors> {
        QuerySpec::from_json(json)?.validate(&missions())
    }

    fn errors(json: &str) -> Vec<String> {
        match spec(json) {
            Ok(s) => panic!("expected errors, got {s:?}"),
            Err(e) => e.0.iter().map(|e| e.field.clone()).collect(),
        }
    }

    const BASIC: &str = r#"{"measure":"persons","period":{"from":"2003-01","to":"2006-12"},
        "budget":{"epsilon":1.0}}"#;

    #[test]
    fn minimal_spec_fills_defaults() {
        let s = spec(BASIC).unwrap();
        assert_eq!(s.contribution_bound(), 1);
        assert_eq!(s.list_items_bound(), 2);
        assert_eq!(s.mechanism(), Mechanism::Laplace);
        assert_eq!(s.keys(), KeysMode::Public);
        assert_eq!(
            s.canonical_json(),
            r#"{"measure":"persons","group_by":[],"filters":{},"period":{"from":"2003-01","to":"2006-12"},"contribution_bound":1,"list_items_bound":2,"mechanism":"laplace","budget":{"epsilon":1.0},"keys":"public"}"#
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = QuerySpec::from_json(
            r#"{"measure":"persons","period":{"from":"2003-01","to":"2003-02"},"epsilon":1}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `epsilon`"), "{e}");
        let e = QuerySpec::from_json(
            r#"{"measure":"count","period":{"from":"2003-01","to":"2003-02"}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("persons"), "{e}");
    }

    #[test]
    fn same_query_spelled_differently_hashes_the_same() {
        let a = spec(
            r#"{"measure":"histogram","column":"months_to_closure","bounds":{"lower":0,"upper":9},
            "bins":3,"group_by":["gender","mission"],
            "filters":{"gender":["male","female","male"],"mission":["UKR"]},
            "period":{"from":"2003-01","to":"2006-12"},"budget":{"epsilon":0.5}}"#,
        )
        .unwrap();
        let b = spec(
            r#"{"keys":"public","mechanism":"laplace","contribution_bound":1,
            "measure":"histogram","column":"months_to_closure","bounds":{"lower":0,"upper":9},
            "bins":[0,3,6],"group_by":["mission","gender"],
            "filters":{"mission":["UKR"],"gender":["female","male"]},
            "period":{"from":"2003-01","to":"2006-12"},"budget":{"epsilon":0.5}}"#,
        )
        .unwrap();
        assert_eq!(a.canonical_json(), b.canonical_json());
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 64);
        assert_eq!(
            a.group_by(),
            &[
                Dimension::Mission,
                Dimension::Code {
                    field: "gender",
                    list: "gender"
                }
            ]
        );
        assert_eq!(
            a.bins(),
            &[
                Bin { lower: 0, upper: 2 },
                Bin { lower: 3, upper: 5 },
                Bin { lower: 6, upper: 9 }
            ]
        );
        let c = spec(&BASIC.replace("1.0", "0.9")).unwrap();
        assert_ne!(c.hash(), spec(BASIC).unwrap().hash());
    }

    #[test]
    fn canonical_form_validates_to_itself() {
        let s = spec(
            r#"{"measure":"quantile","column":"assistance_type_count","bounds":{"lower":0,"upper":12},
            "quantiles":[0.9,0.5,0.5],"group_by":["exploitation_type"],"list_items_bound":3,
            "period":{"from":"2003-01","to":"2006-12"},"mechanism":"gaussian",
            "accuracy":{"half_width_95":5,"delta":1e-7}}"#,
        )
        .unwrap();
        assert_eq!(s.quantiles(), &[0.5, 0.9]);
        assert_eq!(s.bins().len(), 13);
        assert_eq!(s.cells_per_record(), 3);
        let again = spec(s.canonical_json()).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn list_items_bound_without_exploitation_type_is_canonically_the_default() {
        let a = spec(&BASIC.replace("}}", "},\"list_items_bound\":5}")).unwrap();
        assert_eq!(a.hash(), spec(BASIC).unwrap().hash());
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            errors(
                r#"{"measure":"sum","period":{"from":"2003-13","to":"2003-01"},"group_by":["name"],
                "filters":{"gender":["woman"]},"contribution_bound":21}"#
            ),
            vec![
                "period.from",
                "column",
                "bounds",
                "group_by",
                "contribution_bound",
                "budget"
            ]
        );
        assert_eq!(
            errors(
                r#"{"measure":"cases","column":"shelter_accepted","period":{"from":"2003-01","to":"2003-12"},
                "filters":{"gender":["woman"],"registration_year":["2004"],"mission":["MDA"]},
                "budget":{"epsilon":1,"delta":1e-6}}"#
            ),
            vec![
                "column",
                "filters.gender",
                "filters.mission",
                "filters.registration_year",
                "budget.delta"
            ]
        );
        let e = spec(
            r#"{"measure":"cases","period":{"from":"2003-01","to":"2003-12"},
            "filters":{"gender":["woman"]},"budget":{"epsilon":1}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("female, male"), "{e}");
    }

    #[test]
    fn bounds_at_the_ends_of_i64_are_refused_not_wrapped() {
        // Found by Schemathesis: `i64::MIN.abs()` panicked the handler.
        for (lower, upper) in [
            (i64::MIN, 0),
            (0, i64::MIN),
            (i64::MIN, i64::MAX),
            (-1, i64::MAX),
        ] {
            let json = format!(
                r#"{{"measure":"sum","column":"months_to_closure","bounds":{{"lower":{lower},"upper":{upper}}},
                "period":{{"from":"2003-01","to":"2003-12"}},"budget":{{"epsilon":1}}}}"#
            );
            assert_eq!(errors(&json), vec!["bounds"], "{lower} {upper}");
        }
    }

    #[test]
    fn value_measures_need_column_bounds_and_bins() {
        assert_eq!(
            errors(
                r#"{"measure":"histogram","column":"age","bounds":{"lower":5,"upper":5},
                "period":{"from":"2003-01","to":"2003-12"},"budget":{"epsilon":1}}"#
            ),
            vec!["column", "bounds"]
        );
        assert_eq!(
            errors(
                r#"{"measure":"histogram","column":"shelter_accepted","bounds":{"lower":0,"upper":1},
                "period":{"from":"2003-01","to":"2003-12"},"budget":{"epsilon":1}}"#
            ),
            vec!["bins"]
        );
        assert_eq!(
            errors(
                r#"{"measure":"histogram","column":"shelter_accepted","bounds":{"lower":0,"upper":1},
                "bins":3,"period":{"from":"2003-01","to":"2003-12"},"budget":{"epsilon":1}}"#
            ),
            vec!["bins"]
        );
        assert_eq!(
            errors(
                r#"{"measure":"histogram","column":"months_to_closure","bounds":{"lower":0,"upper":10},
                "bins":[1,5],"period":{"from":"2003-01","to":"2003-12"},"budget":{"epsilon":1}}"#
            ),
            vec!["bins"]
        );
        assert_eq!(
            errors(
                r#"{"measure":"mean","column":"months_to_closure","bounds":{"lower":0,"upper":10},
                "quantiles":[0.5],"period":{"from":"2003-01","to":"2003-12"},"budget":{"epsilon":1}}"#
            ),
            vec!["quantiles"]
        );
    }

    #[test]
    fn threshold_is_required_for_large_domains_and_needs_delta() {
        let big = r#"{"measure":"persons","group_by":["citizenship","country_of_exploitation"],
            "period":{"from":"2003-01","to":"2006-12"},"budget":{"epsilon":1}}"#;
        assert_eq!(errors(big), vec!["keys"]);
        assert_eq!(
            errors(&big.replace("\"budget\"", "\"keys\":\"threshold\",\"budget\"")),
            vec!["budget.delta"]
        );
        let ok = big.replace(
            "\"budget\":{\"epsilon\":1}",
            "\"keys\":\"threshold\",\"budget\":{\"epsilon\":1,\"delta\":1e-6}",
        );
        assert!(spec(&ok).is_ok());
        // Filtering the dimension narrows the released domain.
        let narrowed = big.replace(
            "\"budget\"",
            "\"filters\":{\"citizenship\":[\"KGZ\",\"UKR\",\"unknown\"]},\"budget\"",
        );
        let s = spec(&narrowed).unwrap();
        assert_eq!(s.public_cells(&missions()), 3 * 251);
    }

    #[test]
    fn threshold_keys_need_a_count_and_laplace() {
        let base = r#"{"measure":"persons","group_by":["citizenship"],"keys":"threshold",
            "period":{"from":"2003-01","to":"2006-12"},"budget":{"epsilon":1,"delta":1e-6}}"#;
        assert!(spec(base).is_ok());
        let sum = base.replace(
            "\"persons\"",
            "\"sum\",\"column\":\"months_to_closure\",\"bounds\":{\"lower\":0,\"upper\":12}",
        );
        assert_eq!(errors(&sum), vec!["keys"]);
        let gaussian = base.replace("\"keys\"", "\"mechanism\":\"gaussian\",\"keys\"");
        assert_eq!(errors(&gaussian), vec!["mechanism"]);
    }

    #[test]
    fn domains_end_with_unknown() {
        let p = Period {
            from: Month::parse("2004-11").unwrap(),
            to: Month::parse("2005-02").unwrap(),
        };
        assert_eq!(
            Dimension::RegistrationQuarter.domain(&[], p),
            ["2004-Q4", "2005-Q1", "unknown"]
        );
        assert_eq!(
            Dimension::RegistrationMonth.domain(&[], p),
            ["2004-11", "2004-12", "2005-01", "2005-02", "unknown"]
        );
        assert_eq!(
            Dimension::Mission.domain(&["UKR".into(), "KGZ".into(), "UKR".into()], p),
            ["KGZ", "UKR", "unknown"]
        );
        let flag = Dimension::from_name("shelter_accepted").unwrap();
        assert_eq!(flag.domain(&[], p), ["yes", "no", "unknown"]);
        let country = Dimension::from_name("citizenship").unwrap();
        assert_eq!(country.domain(&[], p).len(), 251);
        assert!(Dimension::from_name("person_link_quality").is_none());
        assert!(Dimension::from_name("exploitation_type").is_some());
    }

    #[test]
    fn period_is_bounded() {
        assert_eq!(
            errors(
                r#"{"measure":"cases","period":{"from":"1990-01","to":"2020-01"},"budget":{"epsilon":1}}"#
            ),
            vec!["period"]
        );
        assert!(
            spec(r#"{"measure":"cases","period":{"from":"1990-01","to":"2019-12"},"budget":{"epsilon":1}}"#)
                .is_ok()
        );
    }
}
