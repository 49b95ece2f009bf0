//! The query as it arrives: JSON, unknown fields refused.

use super::*;

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
    /// `record_key` among those passing the period and filters. `"auto"` (persons, cases and
    /// histograms with a budget): a tenth of the budget releases a DP histogram of records per
    /// person, the bound with the least expected error is chosen from it, and each cell's
    /// interval is widened by the records that bound is estimated to drop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contribution_bound: Option<ContributionBound>,
    /// Exploitation types kept per record when grouping or filtering by `exploitation_type`
    /// (default 2): the first ones in sorted order of their names; the others are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_items_bound: Option<u32>,
    /// Noise distribution. Default: the discrete Gaussian when the budget or accuracy has a
    /// `delta` (or a `rho`) and keys are public; discrete Laplace (pure DP) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<Mechanism>,
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

/// Records kept per person: a number, or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ContributionBound {
    Records(u32),
    Chosen(Auto),
}

/// The bound chosen from a DP histogram of records per person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Auto {
    Auto,
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
    /// Discrete Gaussian noise, charged in zCDP rho: needs a delta (the (epsilon, delta) the rho
    /// is stated at).
    Gaussian,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// The (epsilon, delta) to spend. Exactly one of `epsilon` and `rho`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// Required for the Gaussian mechanism and threshold keys, refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
    /// A zCDP budget, spent by the discrete Gaussian: the ledger is charged this rho (or less),
    /// and the answer states the (epsilon, `delta`) it converts to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rho: Option<f64>,
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
