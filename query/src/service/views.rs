//! What the engine hands back, as it goes on the wire (JSON, with their OpenAPI schemas). Each
//! is built by the engine; the HTTP crate only serialises them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::answer::{self, Answer, Part};
use crate::dp::{Cost, Loss};
use crate::error::{Code, EngineError};
use crate::indicators::IndicatorView;
use crate::ledger::{Budget, Role, Scope, Total, UploadRecord};
use crate::release::{DesignKind, ReleaseSummary};
use crate::sql::Arrangement;

/// A budget on the served dataset (a principal's, or the dataset-wide one) and what was spent of
/// it, composed in zCDP (README, privacy model): the guarantee so far is
/// (`epsilon_spent`, `delta_total`)-DP.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BudgetView {
    pub dataset: String,
    /// The (epsilon, delta) budget; 0 for a rho budget.
    pub epsilon_total: f64,
    pub delta_total: f64,
    /// Set for a budget in zCDP rho instead of (epsilon, delta).
    pub rho_total: Option<f64>,
    /// The best valid composition of every charge, as an epsilon at `delta_total`: Gaussian
    /// charges added in rho and converted once, Laplace charges added (or moved into rho as
    /// epsilon^2 / 2 where smaller), threshold charges added. 0 for a rho budget.
    pub epsilon_spent: f64,
    /// The threshold (approximate) charges' deltas added: the delta not expressible in rho.
    pub delta_spent: f64,
    pub epsilon_left: f64,
    pub delta_left: f64,
    /// The rho of the Gaussian charges added (for a rho budget, with the Laplace charges as
    /// epsilon^2 / 2).
    pub rho_spent: f64,
    /// For a rho budget, the rho left.
    pub rho_left: Option<f64>,
    /// The Laplace (pure-DP) charges' epsilons added.
    pub pure_epsilon_spent: f64,
    /// The threshold charges' epsilons added.
    pub approx_epsilon_spent: f64,
}

impl BudgetView {
    pub fn new(dataset: &str, b: &Budget) -> Self {
        BudgetView {
            dataset: dataset.to_string(),
            epsilon_total: b.epsilon_total,
            delta_total: b.delta_total,
            rho_total: b.rho_total,
            epsilon_spent: b.epsilon_spent,
            delta_spent: b.delta_spent,
            epsilon_left: b.epsilon_left(),
            delta_left: b.delta_left(),
            rho_spent: b.rho_spent,
            rho_left: b.rho_left(),
            pure_epsilon_spent: b.pure_epsilon_spent,
            approx_epsilon_spent: b.approx_epsilon_spent,
        }
    }
}

/// The dataset-wide budget: the total privacy loss the dataset may incur, over every charge by
/// every principal. Unset (`set: false`): no dataset-wide cap.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetBudgetView {
    pub dataset: String,
    pub set: bool,
    /// Total, spent by all principals together, and left; absent when unset.
    pub budget: Option<BudgetView>,
}

/// What is left of a budget, without what was spent (what a caller may know of the dataset-wide
/// budget whatever its role).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeftView {
    pub epsilon_left: f64,
    pub delta_left: f64,
    pub rho_left: Option<f64>,
}

impl LeftView {
    pub fn new(b: &Budget) -> Self {
        LeftView {
            epsilon_left: b.epsilon_left(),
            delta_left: b.delta_left(),
            rho_left: b.rho_left(),
        }
    }
}

/// A released answer, as stored with its charge.
/// The response to a query.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueryResponse {
    pub query_hash: String,
    /// The query in canonical form (defaults filled in).
    #[schema(value_type = Object)]
    pub query: Value,
    /// The released cells with their 95% intervals, the noise and its cost.
    #[schema(value_type = Answer)]
    pub answer: AnswerBody,
    /// What this request charged: zero when the answer was released before (`reused`).
    pub charged: Cost,
    /// True when the same query was answered before for this caller and served again.
    pub reused: bool,
    /// The caller's budget after this request.
    pub budget: BudgetView,
}

/// An answer on the wire: released now, or the one stored with its charge, served again.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum AnswerBody {
    Fresh(Box<Answer>),
    Stored(StoredAnswer),
}

/// An answer as the ledger stored it when it was released. Only the engine makes one, from the
/// ledger's own record of a paid answer.
/// Its JSON text is sent as stored, without being parsed into a tree and written again.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct StoredAnswer(Box<serde_json::value::RawValue>);

impl StoredAnswer {
    pub(crate) fn from_ledger(answer: Box<serde_json::value::RawValue>) -> Self {
        StoredAnswer(answer)
    }
}

impl AnswerBody {
    /// The cells as CSV: the key columns, then the estimate and its interval.
    pub fn to_csv(&self) -> Result<String, EngineError> {
        match self {
            AnswerBody::Fresh(a) => Ok(answer::to_csv(&a.dimensions, a.cells.get())),
            AnswerBody::Stored(StoredAnswer(v)) => {
                #[derive(Deserialize)]
                struct Cells {
                    dimensions: Vec<String>,
                    cells: Vec<answer::Cell>,
                }
                let cells: Cells = serde_json::from_str(v.get()).map_err(EngineError::internal)?;
                Ok(answer::to_csv(&cells.dimensions, &cells.cells))
            }
        }
    }
}

/// A SQL statement, as posted to `POST /v1/sql` and `POST /v1/sql/preview`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One `SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (...) ... FROM cases ...` statement (README,
    /// "SQL for analysts").
    #[schema(
        example = "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 0.5) mission, \
        COUNT(DISTINCT person) FROM cases WHERE registration_year BETWEEN 2003 AND 2006 GROUP BY mission"
    )]
    pub sql: String,
}

impl QueryResponse {
    /// The cells ordered, offset and limited as a SQL statement asked: post-processing of
    /// released values, applied to a fresh and a re-served answer alike; a note says so.
    pub fn arranged(mut self, arrangement: &Arrangement) -> Result<QueryResponse, EngineError> {
        if arrangement.is_none() {
            return Ok(self);
        }
        let mut answer: Value = match &self.answer {
            AnswerBody::Fresh(a) => serde_json::to_value(a).map_err(EngineError::internal)?,
            AnswerBody::Stored(StoredAnswer(v)) => {
                serde_json::from_str(v.get()).map_err(EngineError::internal)?
            }
        };
        let dimensions: Vec<String> =
            serde_json::from_value(answer["dimensions"].clone()).map_err(EngineError::internal)?;
        let mut keys = Vec::new();
        for k in &arrangement.order_by {
            let at = match k.column.as_str() {
                "estimate" => None,
                name => Some(dimensions.iter().position(|d| d == name).ok_or_else(|| {
                    EngineError::internal(format!("order key {name} is not a dimension"))
                })?),
            };
            keys.push((at, k.descending));
        }
        let Some(cells) = answer["cells"].as_array_mut() else {
            return Err(EngineError::internal("an answer without cells"));
        };
        let total = cells.len();
        cells.sort_by(|a, b| {
            keys.iter()
                .map(|&(at, descending)| {
                    let order = match at {
                        None => {
                            let (x, y) = (a["estimate"].as_f64(), b["estimate"].as_f64());
                            x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
                        }
                        Some(i) => compare_keys(&a["key"][i], &b["key"][i]),
                    };
                    if descending { order.reverse() } else { order }
                })
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let offset = usize::try_from(arrangement.offset).unwrap_or(usize::MAX);
        let kept: Vec<Value> = cells
            .drain(..)
            .skip(offset)
            .take(
                arrangement
                    .limit
                    .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX)),
            )
            .collect();
        let shown = kept.len();
        *cells = kept;
        let order: Vec<String> = arrangement
            .order_by
            .iter()
            .map(|k| format!("{}{}", k.column, if k.descending { " DESC" } else { "" }))
            .collect();
        let note = format!(
            "SQL ORDER BY {}, OFFSET {}, LIMIT {}: applied to the released cells, after noise; \
             {shown} of {total} cells shown",
            if order.is_empty() {
                "-".to_string()
            } else {
                order.join(", ")
            },
            arrangement.offset,
            arrangement.limit.map_or("-".to_string(), |l| l.to_string()),
        );
        if let Some(notes) = answer["notes"].as_array_mut() {
            notes.push(Value::String(note));
        }
        let text = serde_json::value::to_raw_value(&answer).map_err(EngineError::internal)?;
        self.answer = AnswerBody::Stored(StoredAnswer(text));
        Ok(self)
    }
}

/// Keys in order: numbers (years) as numbers, other keys as text.
fn compare_keys(a: &Value, b: &Value) -> std::cmp::Ordering {
    let (a, b) = (a.as_str().unwrap_or(""), b.as_str().unwrap_or(""));
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}

/// What a query would cost and how precise it would be, without running it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewResponse {
    pub query_hash: String,
    /// The noisy parts with their scales, 95% half-widths and costs.
    pub parts: Vec<Part>,
    /// The (epsilon, delta) the query costs (Gaussian noise: its rho converted once at the
    /// query's delta).
    pub cost: Cost,
    /// What the ledger will be charged, in the terms charges compose in (a rho for Gaussian
    /// noise).
    pub loss: Loss,
    /// The 95% half-width every released cell will have, for counts, sums and histograms (all
    /// cells share it); absent for a mean or a quantile, whose intervals depend on the noisy
    /// values (their parts' half-widths are in `parts`), and for an `"auto"` bound, whose
    /// noise depends on the bound chosen.
    pub half_width_95: Option<f64>,
    /// Cells released with public keys (the whole domain); absent with threshold keys.
    pub cells: Option<u64>,
    /// The caller's budget now, when one is set.
    pub budget: Option<BudgetView>,
    /// Whether the caller's budget and the dataset-wide one would both take the charge.
    pub affordable: bool,
    /// What the charge would leave of each budget.
    pub after: ChargePreviewView,
}

/// What a release would cost and how precise each indicator would be, before anything is
/// computed or charged.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleasePreview {
    pub design: DesignKind,
    /// What the ledger would be charged, in the terms charges compose in (the marginal design:
    /// its rho, plus the flows' (epsilon, delta) when asked).
    pub loss: Loss,
    /// The (epsilon, delta) the charge composes to, at the request's delta.
    pub cost: Cost,
    /// Per indicator, planning figures of its 95% half-widths.
    pub indicators: Vec<IndicatorPreview>,
    /// The marginals a marginal design measures, each with its rho and noise (empty for the
    /// equal split).
    pub marginals: Vec<MarginalPreview>,
    /// The caller's budget now, when one is set.
    pub budget: Option<BudgetView>,
    /// Whether the caller's budget and the dataset-wide one would both take the charge.
    pub affordable: bool,
    /// What the charge would leave of each budget.
    pub after: ChargePreviewView,
}

/// Planning figures of one indicator's precision, from the noise plan alone (no data).
#[derive(Debug, Serialize, ToSchema)]
pub struct IndicatorPreview {
    pub id: String,
    /// The largest 95% half-width of the counts the indicator publishes or reads, in one mission
    /// and period; absent for the flows (thresholded).
    pub count_half_width_95: Option<f64>,
    /// Shares and rates of the marginal design: the largest 95% half-width of a share of 0.5
    /// over 100 persons (a mission-year at the field's scale; about proportional to 1 / persons
    /// for other denominators). Absent for counts and for the equal split.
    pub share_half_width_95: Option<f64>,
}

/// One marginal of a marginal design.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarginalPreview {
    /// What it counts, e.g. `persons by gender`.
    pub marginal: String,
    /// Its cells per mission and period.
    pub cells: usize,
    pub rho: f64,
    /// The discrete Gaussian's sigma.
    pub sigma: f64,
    /// The 95% half-width of one raw cell, before reconstruction.
    pub half_width_95: f64,
}

/// What a charge would leave of each budget, computed before anything is spent.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChargePreviewView {
    /// The caller's budget as it would be after the charge; absent when none is set.
    pub principal: Option<BudgetView>,
    /// What the dataset-wide budget would have left after it (what was spent of it, by whom, is
    /// not said); absent when none is set (no dataset-wide cap).
    pub dataset: Option<LeftView>,
    /// When the charge would be refused: by which budget (`principal` also when the caller
    /// has none).
    pub refused_by: Option<Scope>,
    /// Why it would be refused.
    pub reason: Option<String>,
}

/// An upload's outcome.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadResponse {
    pub upload_id: i64,
    /// `committed`, `rejected` or `duplicate`.
    pub status: String,
    /// The ingest report: rows read, accepted and rejected, and each problem with its row,
    /// column and rule.
    #[schema(value_type = Object)]
    pub report: Value,
}

/// The caller's organisation's batches and upload reports.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchList {
    pub organisation: String,
    /// The missions the principal may upload for.
    pub missions: Vec<String>,
    /// Whether this server takes uploads, and up to how many bytes each.
    pub takes_uploads: bool,
    pub max_upload_bytes: u64,
    /// Committed batches of the organisation, from the dataset manifest.
    #[schema(value_type = Vec<Object>)]
    pub batches: Vec<Value>,
    /// Reports of the organisation's uploads over HTTP, newest first.
    pub uploads: Vec<UploadRecord>,
}

/// A new principal.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrincipal {
    /// 1 to 100 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: String,
    pub role: Role,
    /// Required for `ngo`: the organisation it uploads for.
    #[serde(default)]
    pub organisation: Option<String>,
    /// Required for `ngo`, refused for other roles: the missions (ISO 3166-1 alpha-3) it
    /// uploads for; an upload for any other mission is refused.
    #[serde(default)]
    pub missions: Vec<String>,
}

/// The missions an `ngo` principal may upload for.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MissionBinding {
    /// ISO 3166-1 alpha-3 codes; they replace the principal's earlier binding.
    pub missions: Vec<String>,
}

/// A principal with its bearer token, shown only once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedPrincipal {
    #[schema(value_type = Object)]
    pub principal: Value,
    pub token: String,
}

/// A budget to set: `epsilon` (and `delta`), or `rho` alone.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetRequest {
    /// An (epsilon, delta) budget's epsilon.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000)]
    pub epsilon: Option<f64>,
    #[serde(default)]
    /// At most 0.01, with `epsilon` only. (An inclusive bound: JSON numbers a few ulps below an
    /// exclusive one can be read as the bound itself.)
    #[schema(minimum = 0, maximum = 0.01)]
    pub delta: Option<f64>,
    /// A zCDP budget instead of (epsilon, delta): the charges' rho total (Laplace charges count
    /// as epsilon^2 / 2) stays within it, and no threshold (delta) charge is taken.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000)]
    pub rho: Option<f64>,
}

/// The two forms of a [`BudgetRequest`] as the API documents them: an (epsilon, delta) budget or a
/// rho alone, and no other field. The body is read as a [`BudgetRequest`] and checked by
/// [`BudgetRequest::total`], so that a body mixing the two forms is told `invalid_amount`, not a
/// parse error.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum BudgetForm {
    Approx(ApproxBudgetForm),
    Rho(RhoBudgetForm),
}

/// An (epsilon, delta) budget.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproxBudgetForm {
    #[schema(minimum = 0, maximum = 1000000)]
    pub epsilon: f64,
    /// At most 0.01 (inclusive).
    #[schema(minimum = 0, maximum = 0.01)]
    pub delta: Option<f64>,
}

/// A zCDP budget.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RhoBudgetForm {
    #[schema(minimum = 0, maximum = 1000000)]
    pub rho: f64,
}

impl BudgetRequest {
    /// The total it sets: exactly one of `epsilon` and `rho`, `delta` only with `epsilon`.
    pub fn total(&self) -> Result<Total, EngineError> {
        match (self.epsilon, self.delta, self.rho) {
            (Some(epsilon), delta, None) => Ok(Total::Approx {
                epsilon,
                delta: delta.unwrap_or(0.0),
            }),
            (None, None, Some(rho)) => Ok(Total::Rho { rho }),
            _ => Err(EngineError::new(
                Code::InvalidAmount,
                "a budget is an epsilon (with an optional delta) or a rho alone",
            )),
        }
    }

    /// For the audit log.
    pub fn describe(&self) -> String {
        match (self.epsilon, self.rho) {
            (_, Some(rho)) => format!("rho={rho}"),
            (epsilon, None) => format!(
                "epsilon={} delta={}",
                epsilon.unwrap_or(0.0),
                self.delta.unwrap_or(0.0)
            ),
        }
    }
}

/// What can be asked: public metadata.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Catalogue {
    pub measures: Vec<String>,
    pub dimensions: Vec<String>,
    pub value_columns: Vec<String>,
    pub missions: Vec<String>,
    pub max_public_cells: u64,
}

/// The indicator catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndicatorList {
    pub indicators: Vec<IndicatorView>,
}

/// Stored releases, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseList {
    pub releases: Vec<ReleaseSummary>,
}

/// A reference table as loaded.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReferenceView {
    pub table: String,
    /// Rows; empty when the table was never loaded.
    #[schema(value_type = Vec<Object>)]
    pub rows: Value,
}

/// What a reference upload came to.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReferenceLoaded {
    pub table: String,
    pub rows: usize,
}
