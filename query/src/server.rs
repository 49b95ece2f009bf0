//! The HTTP service: axum handlers over the planner, the DP module and the ledger.
//!
//! [`app`] builds the router from an [`AppState`] and binds nothing, so tests drive it
//! in-process. Architecture invariants:
//! - **Charge, then compute, then store, then release.** A query is priced from its spec alone
//!   ([`CostPlan`]), the ledger is charged in one transaction, and only then are the aggregates
//!   computed and noised. The answer is stored with its charge before the response leaves, so
//!   a crash loses budget, never privacy, and the same question asked again is answered from the
//!   store at no cost.
//! - **Every number computed from records leaves through [`answer::release`]**, which only
//!   builds cells from the DP module's releases. The other endpoints return public metadata
//!   (dimensions, the OpenAPI document), a caller's own budget, principals (admin), or, to an
//!   NGO, the validation reports of its own uploads.
//! - **Errors**: the caller's mistakes are 4xx with a stable snake_case `code` and a message
//!   that says how to fix them; our failures are a generic 500 and the cause goes to the log.
//!   Neither ever carries a record value.
//! - **Uploads never touch the disk before pseudonymisation**: the body is streamed into an
//!   anonymous in-memory file (Linux `memfd`), limited in size (413 beyond; at most
//!   [`UPLOADS_AT_ONCE`] at a time), and handed to the
//!   [`Uploader`] the binary injects. This crate does not depend on `ingest` and never sees the
//!   pseudonymisation key.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, Multipart, Path as UrlPath, Query, Request,
    State,
};
use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::answer::{self, Answer, CostPlan, Part};
use crate::dp::{Cost, DpError};
use crate::ledger::{
    self, AuditRecord, Budget, Charge, Ledger, LedgerError, Principal, Role, UploadRecord,
};
use crate::plan::{self, PlanError};
use crate::spec::{self, QuerySpec, SpecError, SpecErrors, ValidatedSpec};

mod releases;
pub use releases::{build as build_release, create_release_as};

/// Upload size limit when none is configured: 256 MiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 256 << 20;

/// How many uploads are received and ingested at once; later ones wait (their bodies unread) in
/// arrival order. With each upload held in memory up to `max_upload_bytes`, this bounds what
/// uploads can take: twice the limit, plus the readers' own caps.
pub const UPLOADS_AT_ONCE: usize = 2;

/// What the service serves.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The dataset directory (its manifest says which files are committed).
    pub data: PathBuf,
    /// The dataset's name in the ledger: budgets are per principal and dataset.
    pub dataset: String,
    /// The public mission domain, ISO alpha-3 codes.
    pub missions: Vec<String>,
    /// Uploads larger than this get a 413.
    pub max_upload_bytes: u64,
    /// How many queries aggregate at once; the others wait their turn in arrival order. Each
    /// aggregation already uses every core, so more at once only makes all of them late.
    pub max_concurrent_queries: usize,
}

impl ServiceConfig {
    /// Half the cores, at least one: one aggregation at a time on a 2-core machine.
    pub fn default_concurrent_queries() -> usize {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }
}

/// The parameters of an upload, from the query string.
#[derive(Debug, Clone, Default, Deserialize, Serialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// Reporting mission, ISO 3166-1 alpha-2 or alpha-3 (e.g. `KGZ`).
    #[param(pattern = "^[A-Za-z]{2,3}$")]
    #[schema(pattern = "^[A-Za-z]{2,3}$")]
    pub mission: String,
    /// `csv`, `xlsx`, `jsonl` or `parquet`; from the file name when absent.
    #[serde(default)]
    #[param(pattern = "^(csv|xlsx|jsonl|parquet)$")]
    #[schema(pattern = "^(csv|xlsx|jsonl|parquet)$")]
    pub format: Option<String>,
    /// Import profile: `canonical` (default), `htcds` or `ctdc`.
    #[serde(default)]
    #[param(pattern = "^(canonical|htcds|ctdc)$")]
    #[schema(pattern = "^(canonical|htcds|ctdc)$")]
    pub profile: Option<String>,
    /// Text encoding of CSV and JSON Lines (e.g. `windows-1251`); detected when absent.
    #[serde(default)]
    pub encoding: Option<String>,
    /// CSV delimiter, one character; sniffed when absent.
    #[serde(default)]
    #[param(min_length = 1, max_length = 1)]
    #[schema(min_length = 1, max_length = 1)]
    pub delimiter: Option<String>,
    /// Excel sheet name; the first sheet when absent.
    #[serde(default)]
    pub sheet: Option<String>,
    /// Commit the valid rows even when some are invalid.
    #[serde(default)]
    pub accept_valid: bool,
    /// The file's name, for the format when `format` is absent (multipart uploads carry it).
    #[serde(default)]
    pub filename: Option<String>,
}

/// One upload handed to the [`Uploader`].
#[derive(Debug, Clone)]
pub struct UploadRequest {
    /// The caller's organisation: an NGO uploads only for itself.
    pub organisation: String,
    pub params: UploadParams,
}

/// What an upload came to.
#[derive(Debug, Clone)]
pub struct UploadOutcome {
    /// `committed`, `rejected` or `duplicate`.
    pub status: String,
    /// The ingest report as JSON.
    pub report: Value,
}

/// Why an upload could not be run.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The caller's: a parameter is wrong (unknown format, profile, mission, ...).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// Ours.
    #[error("{0}")]
    Internal(String),
}

/// Runs the ingest pipeline on an uploaded file. The binary provides it (with the key), so the
/// query crate never depends on ingest nor holds the key.
pub trait Uploader: Send + Sync + 'static {
    /// Ingest the file at `path` (readable until this returns). Runs on a blocking thread.
    fn upload(&self, path: &Path, request: &UploadRequest) -> Result<UploadOutcome, UploadError>;
}

struct Inner {
    config: ServiceConfig,
    ledger: Ledger,
    uploader: Option<Arc<dyn Uploader>>,
    /// Permits to aggregate (fair: waiters are served in order).
    aggregations: tokio::sync::Semaphore,
    /// Permits to receive and ingest an upload: [`UPLOADS_AT_ONCE`].
    uploads: tokio::sync::Semaphore,
}

/// The shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.inner.config)
            .field("uploads", &self.inner.uploader.is_some())
            .finish()
    }
}

impl AppState {
    /// The state of a service; without an uploader, `POST /v1/batches` is not mounted.
    pub fn new(config: ServiceConfig, ledger: Ledger, uploader: Option<Arc<dyn Uploader>>) -> Self {
        AppState {
            inner: Arc::new(Inner {
                aggregations: tokio::sync::Semaphore::new(config.max_concurrent_queries.max(1)),
                uploads: tokio::sync::Semaphore::new(UPLOADS_AT_ONCE),
                config,
                ledger,
                uploader,
            }),
        }
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    /// Run a ledger call on a blocking thread (SQLite waits on locks and fsyncs).
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner.ledger))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from)
    }

    async fn audit(
        &self,
        principal: &Principal,
        action: &'static str,
        detail: String,
        cost: Option<Cost>,
        outcome: &'static str,
    ) -> Result<(), ApiError> {
        let id = principal.id.clone();
        self.db(move |l| l.audit(Some(&id), action, &detail, cost, outcome))
            .await
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// The body of every error response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case: programs branch on it.
    pub code: String,
    /// For people: what is wrong and how to fix it.
    pub message: String,
    /// Structured details: the fields at fault, the budget left, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<Value>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Our failure: log the cause, tell the caller nothing about it.
    fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the service failed to answer; the cause was logged",
        )
    }

    fn unauthenticated() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "send a bearer token: `Authorization: Bearer cts_...`",
        )
    }

    fn invalid_token() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the bearer token is unknown or revoked",
        )
    }

    fn invalid_query(errors: &SpecErrors) -> Self {
        let message = errors
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
            .with_details(serde_json::json!({ "errors": errors.0 }))
    }

    fn from_dp(e: DpError) -> Self {
        if e.is_caller_error() {
            ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
        } else {
            ApiError::internal(e)
        }
    }

    fn from_plan(e: PlanError) -> Self {
        match e {
            PlanError::InvalidSpec(errors) => ApiError::invalid_query(&errors),
            other => ApiError::internal(other),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::NoSuchPrincipal(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_principal",
                format!("no active principal with id {id}"),
            ),
            LedgerError::InvalidAmount(message) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_amount", message)
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                details: self.details,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.body_text())
    }
}

fn query_string_error(e: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameters", e.body_text())
}

// ---------------------------------------------------------------------------------------------
// Authentication

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(ApiError::unauthenticated)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 200)
            .ok_or_else(ApiError::invalid_token)?
            .to_string();
        let principal = state
            .db(move |l| l.authenticate(&token))
            .await?
            .ok_or_else(ApiError::invalid_token)?;
        Ok(Caller(principal))
    }
}

impl Caller {
    fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.0.role) {
            return Ok(());
        }
        let allowed: Vec<&str> = roles.iter().map(|r| r.name()).collect();
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this endpoint is for the roles {}; you are {}",
                allowed.join(", "),
                self.0.role.name()
            ),
        ))
    }
}

const QUERY_ROLES: &[Role] = &[Role::Analyst, Role::Researcher];

// ---------------------------------------------------------------------------------------------
// Responses

/// A principal's budget on the served dataset.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BudgetView {
    pub dataset: String,
    pub epsilon_total: f64,
    pub delta_total: f64,
    pub epsilon_spent: f64,
    pub delta_spent: f64,
    pub epsilon_left: f64,
    pub delta_left: f64,
}

impl BudgetView {
    fn new(dataset: &str, b: &Budget) -> Self {
        BudgetView {
            dataset: dataset.to_string(),
            epsilon_total: b.epsilon_total,
            delta_total: b.delta_total,
            epsilon_spent: b.epsilon_spent,
            delta_spent: b.delta_spent,
            epsilon_left: b.epsilon_left(),
            delta_left: b.delta_left(),
        }
    }
}

/// A released answer, as stored with its charge.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    query_hash: String,
    query: Value,
    answer: Value,
}

/// The response to a query.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueryResponse {
    pub query_hash: String,
    /// The query in canonical form (defaults filled in).
    #[schema(value_type = Object)]
    pub query: Value,
    /// The released cells with their 95% intervals, the noise and its cost.
    #[schema(value_type = Answer)]
    pub answer: Value,
    /// What this request charged: zero when the answer was released before (`reused`).
    pub charged: Cost,
    /// True when the same query was answered before for this caller and served again.
    pub reused: bool,
    /// The caller's budget after this request.
    pub budget: BudgetView,
}

/// What a query would cost and how precise it would be, without running it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewResponse {
    pub query_hash: String,
    /// The noisy parts with their scales, 95% half-widths and costs.
    pub parts: Vec<Part>,
    /// What the query will charge.
    pub cost: Cost,
    /// Cells released with public keys (the whole domain); absent with threshold keys.
    pub cells: Option<u64>,
    /// The caller's budget now, when one is set.
    pub budget: Option<BudgetView>,
    /// Whether the budget left covers the cost.
    pub affordable: bool,
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

/// A multipart upload: the file in the `file` field.
#[derive(Debug, ToSchema)]
pub struct UploadForm {
    /// The file.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// A file as the raw request body.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct RawFile(pub Vec<u8>);

/// The caller's organisation's batches and upload reports.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchList {
    pub organisation: String,
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
}

/// A principal with its bearer token, shown only once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedPrincipal {
    #[schema(value_type = Object)]
    pub principal: Value,
    pub token: String,
}

/// A budget to set.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetRequest {
    #[schema(minimum = 0, maximum = 1000000)]
    pub epsilon: f64,
    #[serde(default)]
    /// At most 0.01. (An inclusive bound: JSON numbers a few ulps below an exclusive one can
    /// be read as the bound itself.)
    #[schema(minimum = 0, maximum = 0.01)]
    pub delta: f64,
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatParams {
    /// `json` (default) or `csv` (the cells only; cost and budget in `X-Ctstats-*` headers).
    #[serde(default)]
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Return lines after this id.
    #[serde(default)]
    pub after: Option<i64>,
    /// At most this many lines (default and maximum 1000).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// Parse and validate a query body.
fn parse_spec(state: &AppState, body: &[u8]) -> Result<ValidatedSpec, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is not UTF-8 JSON",
        )
    })?;
    let spec = QuerySpec::from_json(text).map_err(|e| {
        let message = e.0.first().map_or(String::new(), |e| e.message.clone());
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    })?;
    spec.validate(&state.config().missions)
        .map_err(|e| ApiError::invalid_query(&e))
}

/// Price a spec on a blocking thread (OpenDP measurements are built to price it).
async fn price(spec: &ValidatedSpec) -> Result<CostPlan, ApiError> {
    let spec = spec.clone();
    tokio::task::spawn_blocking(move || CostPlan::new(&spec))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from_dp)
}

fn wants_csv(format: Option<&str>, headers: &HeaderMap) -> Result<bool, ApiError> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameters",
            format!("format is json or csv, not {other:?}"),
        )),
        None => Ok(headers
            .get(ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/csv"))),
    }
}

fn respond(response: QueryResponse, csv: bool) -> Result<Response, ApiError> {
    if !csv {
        return Ok(Json(response).into_response());
    }
    #[derive(Deserialize)]
    struct Cells {
        dimensions: Vec<String>,
        cells: Vec<answer::Cell>,
    }
    let cells: Cells = serde_json::from_value(response.answer).map_err(ApiError::internal)?;
    let mut r = answer::to_csv(&cells.dimensions, &cells.cells).into_response();
    let headers = r.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    for (name, value) in [
        ("x-ctstats-query-hash", response.query_hash),
        (
            "x-ctstats-charged-epsilon",
            response.charged.epsilon.to_string(),
        ),
        (
            "x-ctstats-charged-delta",
            response.charged.delta.to_string(),
        ),
        (
            "x-ctstats-epsilon-left",
            response.budget.epsilon_left.to_string(),
        ),
        (
            "x-ctstats-delta-left",
            response.budget.delta_left.to_string(),
        ),
        ("x-ctstats-reused", response.reused.to_string()),
    ] {
        headers.insert(
            name,
            HeaderValue::from_str(&value).map_err(ApiError::internal)?,
        );
    }
    Ok(r)
}

/// Ask a DP query, charged to the caller's budget.
#[utoipa::path(
    post, path = "/v1/query", tag = "queries",
    request_body = QuerySpec,
    params(FormatParams),
    responses(
        (status = 200, description = "Noisy cells with 95% intervals; the cost and the budget left",
         content((QueryResponse = "application/json"), (String = "text/csv"))),
        (status = 400, description = "The query is malformed or cannot be answered as asked", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "Wrong role, no budget set, or not enough budget left", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 500, description = "Our failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn query(
    State(state): State<AppState>,
    caller: Caller,
    format: Result<Query<FormatParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(QUERY_ROLES)?;
    let Query(format) = format.map_err(query_string_error)?;
    let csv = wants_csv(format.format.as_deref(), &headers)?;
    let spec = parse_spec(&state, &body.map_err(body_error)?)?;
    let plan = price(&spec).await?;
    // Charging, computing and storing run in their own task: a client that hangs up does not
    // abort them, so what it paid for is stored and asking again returns it at no cost.
    let dataset = state.config().dataset.clone();
    let settled = tokio::spawn(settle(state, caller.0, spec, plan.clone()))
        .await
        .map_err(ApiError::internal)??;
    let (stored, budget, charged, reused) = match settled {
        Settled::Answered { stored, budget } => (stored, budget, plan.total, false),
        Settled::Reused { stored, budget } => {
            let free = Cost {
                epsilon: 0.0,
                delta: 0.0,
            };
            (stored, budget, free, true)
        }
    };
    respond(
        QueryResponse {
            query_hash: stored.query_hash,
            query: stored.query,
            answer: stored.answer,
            charged,
            reused,
            budget: BudgetView::new(&dataset, &budget),
        },
        csv,
    )
}

/// A query's outcome once the ledger has been asked.
enum Settled {
    /// Charged, computed and stored now.
    Answered { stored: Stored, budget: Budget },
    /// Asked before: the stored answer, nothing charged.
    Reused { stored: Stored, budget: Budget },
}

/// What asking the ledger to pay for a query or a release came to.
enum Paid {
    /// Charged now: compute, then store with `charge_id`.
    Charged { charge_id: i64, budget: Budget },
    /// Asked before by this caller: the stored answer, nothing charged.
    Reused { answer: String, budget: Budget },
}

/// Charge `cost` for `hash` to `principal` (write-ahead: before anything is computed), or
/// refuse with the audit entry and a 403 that says what is left. `action` is `query` or
/// `release`, for the audit log and the message.
async fn pay(
    state: &AppState,
    principal: &Principal,
    action: &'static str,
    hash: &str,
    cost: Cost,
    detail: &str,
) -> Result<Paid, ApiError> {
    let dataset = state.config().dataset.clone();
    let (pid, ds, h) = (principal.id.clone(), dataset.clone(), hash.to_string());
    let charge = state.db(move |l| l.charge(&pid, &ds, &h, cost)).await?;
    let detail = detail.to_string();
    match charge {
        Charge::NoBudget => {
            state
                .audit(principal, action, detail, None, "no_budget")
                .await?;
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "no_budget",
                format!("no budget is set for you on dataset {dataset}; ask an admin"),
            ))
        }
        Charge::Refused { budget } => {
            state
                .audit(principal, action, detail, Some(cost), "refused")
                .await?;
            let left = BudgetView::new(&dataset, &budget);
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "budget_exhausted",
                format!(
                    "this {action} costs epsilon {} and delta {}; you have epsilon {} and delta {} left",
                    cost.epsilon, cost.delta, left.epsilon_left, left.delta_left
                ),
            )
            .with_details(serde_json::json!({ "cost": cost, "budget": left })))
        }
        Charge::Reused { answer, budget } => {
            state
                .audit(principal, action, detail, None, "reused")
                .await?;
            Ok(Paid::Reused { answer, budget })
        }
        Charge::Charged { charge_id, budget } => Ok(Paid::Charged { charge_id, budget }),
    }
}

/// Charge the ledger for `plan` (write-ahead), then compute, store and audit the answer.
/// Computing waits for one of the service's aggregation permits (first come, first served).
async fn settle(
    state: AppState,
    principal: Principal,
    spec: ValidatedSpec,
    plan: CostPlan,
) -> Result<Settled, ApiError> {
    let hash = spec.hash();
    let detail = format!("{} {}", hash, spec.canonical_json());
    let (charge_id, budget) =
        match pay(&state, &principal, "query", &hash, plan.total, &detail).await? {
            Paid::Reused { answer, budget } => {
                let stored = serde_json::from_str(&answer).map_err(ApiError::internal)?;
                return Ok(Settled::Reused { stored, budget });
            }
            Paid::Charged { charge_id, budget } => (charge_id, budget),
        };

    // Paid. From here a failure loses the budget just charged, never privacy.
    let result = {
        let _permit = state
            .inner
            .aggregations
            .acquire()
            .await
            .map_err(ApiError::internal)?;
        compute(&state, &spec, &plan).await
    };
    let answer = match result {
        Ok(answer) => answer,
        Err(e) => {
            state
                .audit(&principal, "query", detail, Some(plan.total), "failed")
                .await?;
            return Err(e);
        }
    };
    let stored = Stored {
        query_hash: hash,
        query: serde_json::from_str(spec.canonical_json()).map_err(ApiError::internal)?,
        answer: serde_json::to_value(&answer).map_err(ApiError::internal)?,
    };
    let text = serde_json::to_string(&stored).map_err(ApiError::internal)?;
    state.db(move |l| l.store_answer(charge_id, &text)).await?;
    state
        .audit(&principal, "query", detail, Some(plan.total), "answered")
        .await?;
    Ok(Settled::Answered { stored, budget })
}

/// Aggregate in DataFusion, then noise on a blocking thread.
async fn compute(
    state: &AppState,
    spec: &ValidatedSpec,
    plan: &CostPlan,
) -> Result<Answer, ApiError> {
    let aggregates = plan::aggregate(&state.config().data, &state.config().missions, spec)
        .await
        .map_err(ApiError::from_plan)?;
    let (spec, plan) = (spec.clone(), plan.clone());
    tokio::task::spawn_blocking(move || answer::release(&spec, &aggregates, &plan))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            answer::ReleaseError::Dp(e) => ApiError::from_dp(e),
            other => ApiError::internal(other),
        })
}

/// What a query would cost and its interval widths, without charging anything.
#[utoipa::path(
    post, path = "/v1/preview", tag = "queries",
    request_body = QuerySpec,
    responses(
        (status = 200, description = "Noise scales, 95% half-widths and the cost; nothing is charged", body = PreviewResponse),
        (status = 400, description = "The query is malformed or cannot be answered as asked", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "Wrong role", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 500, description = "Our failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PreviewResponse>, ApiError> {
    caller.require(QUERY_ROLES)?;
    let spec = parse_spec(&state, &body.map_err(body_error)?)?;
    let plan = price(&spec).await?;
    let (pid, ds) = (caller.0.id.clone(), state.config().dataset.clone());
    let budget = state.db(move |l| l.budget(&pid, &ds)).await?;
    let detail = format!("{} {}", spec.hash(), spec.canonical_json());
    state
        .audit(&caller.0, "preview", detail, None, "previewed")
        .await?;
    let affordable = budget.is_some_and(|b| ledger::affords(&b, plan.total));
    Ok(Json(PreviewResponse {
        query_hash: spec.hash(),
        cells: (spec.keys() == spec::KeysMode::Public)
            .then(|| spec.public_cells(&state.config().missions)),
        parts: plan.parts,
        cost: plan.total,
        budget: budget.map(|b| BudgetView::new(&state.config().dataset, &b)),
        affordable,
    }))
}

/// The caller's budget on the served dataset.
#[utoipa::path(
    get, path = "/v1/budget", tag = "queries",
    responses(
        (status = 200, description = "Total, spent and left", body = BudgetView),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "Wrong role, or no budget is set", body = ErrorBody),
        (status = 500, description = "Our failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn budget(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<BudgetView>, ApiError> {
    caller.require(QUERY_ROLES)?;
    let (pid, ds) = (caller.0.id.clone(), state.config().dataset.clone());
    match state.db(move |l| l.budget(&pid, &ds)).await? {
        Some(b) => Ok(Json(BudgetView::new(&state.config().dataset, &b))),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "no_budget",
            format!(
                "no budget is set for you on dataset {}; ask an admin",
                state.config().dataset
            ),
        )),
    }
}

/// Public metadata: measures, dimensions, value columns and missions.
#[utoipa::path(
    get, path = "/v1/dimensions", tag = "metadata",
    responses((status = 200, description = "What a query may name", body = Catalogue))
)]
async fn dimensions(State(state): State<AppState>) -> Json<Catalogue> {
    use spec::Measure::*;
    Json(Catalogue {
        measures: [Persons, Cases, Sum, Mean, Quantile, Histogram]
            .iter()
            .map(|m| m.name().to_string())
            .collect(),
        dimensions: spec::dimensions()
            .iter()
            .map(|d| d.name().to_string())
            .collect(),
        value_columns: spec::value_columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect(),
        missions: state.config().missions.clone(),
        max_public_cells: spec::MAX_PUBLIC_CELLS,
    })
}

fn organisation(caller: &Caller) -> Result<String, ApiError> {
    caller.require(&[Role::Ngo])?;
    caller.0.organisation.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this ngo principal has no organisation; ask an admin to recreate it",
        )
    })
}

/// Upload a batch file for the caller's organisation (role `ngo`).
#[utoipa::path(
    post, path = "/v1/batches", tag = "batches",
    params(UploadParams),
    request_body(description = "The file, as the raw body or as the `file` field of a multipart/form-data body",
                 content((RawFile = "application/octet-stream"), (UploadForm = "multipart/form-data"))),
    responses(
        (status = 201, description = "Committed", body = UploadResponse),
        (status = 200, description = "The same file was committed before: nothing written", body = UploadResponse),
        (status = 422, description = "Rejected: nothing written; the report lists each row, column and rule", body = UploadResponse),
        (status = 400, description = "Bad parameters or an empty body", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "Wrong role", body = ErrorBody),
        (status = 413, description = "Larger than the configured limit", body = ErrorBody),
        (status = 500, description = "Our failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<UploadParams>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let org = organisation(&caller)?;
    let Query(mut params) = params.map_err(query_string_error)?;
    let Some(uploader) = state.inner.uploader.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this server takes no uploads",
        ));
    };
    let limit = state.config().max_upload_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("uploads are limited to {limit} bytes on this server"),
        )
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let _turn = state
        .inner
        .uploads
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let multipart = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));

    let (mut file, path) = anonymous_file().map_err(ApiError::internal)?;
    let mut written: u64 = 0;
    let mut write = |chunk: &[u8]| -> Result<(), ApiError> {
        written += chunk.len() as u64;
        if written > limit {
            return Err(too_large());
        }
        file.write_all(chunk).map_err(ApiError::internal)
    };
    if multipart {
        let mut form = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.body_text()))?;
        let mut found = false;
        while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
            if field.file_name().is_none() && field.name() != Some("file") {
                continue;
            }
            if params.filename.is_none() {
                params.filename = field.file_name().map(str::to_string);
            }
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                write(&chunk)?;
            }
            found = true;
            break;
        }
        if !found {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "the multipart body has no file field (name it `file`)",
            ));
        }
    } else {
        let mut stream = request.into_body().into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                if e.to_string().contains("length limit") {
                    too_large()
                } else {
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string())
                }
            })?;
            write(&chunk)?;
        }
    }
    if written == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "the upload is empty; send the file as the body",
        ));
    }
    file.flush().map_err(ApiError::internal)?;

    let detail = format!(
        "mission={} format={} profile={} accept_valid={} bytes={written}",
        params.mission,
        params.format.as_deref().unwrap_or("-"),
        params.profile.as_deref().unwrap_or("canonical"),
        params.accept_valid
    );
    let request = UploadRequest {
        organisation: org.clone(),
        params,
    };
    let outcome = tokio::task::spawn_blocking(move || {
        let outcome = uploader.upload(&path, &request);
        drop(file);
        outcome
    })
    .await
    .map_err(ApiError::internal)?;
    let outcome = match outcome {
        Ok(o) => o,
        Err(UploadError::Invalid { code, message }) => {
            state
                .audit(&caller.0, "upload", detail, None, "invalid")
                .await?;
            return Err(ApiError::new(StatusCode::BAD_REQUEST, code, message));
        }
        Err(UploadError::Internal(cause)) => {
            state
                .audit(&caller.0, "upload", detail, None, "failed")
                .await?;
            return Err(ApiError::internal(cause));
        }
    };
    let (pid, o, status, report) = (
        caller.0.id.clone(),
        org,
        outcome.status.clone(),
        outcome.report.clone(),
    );
    let upload_id = state
        .db(move |l| l.record_upload(&pid, &o, &status, &report))
        .await?;
    let audit_outcome = match outcome.status.as_str() {
        "committed" => "committed",
        "duplicate" => "duplicate",
        _ => "rejected",
    };
    state
        .audit(&caller.0, "upload", detail, None, audit_outcome)
        .await?;
    let status = match audit_outcome {
        "committed" => StatusCode::CREATED,
        "duplicate" => StatusCode::OK,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Ok((
        status,
        Json(UploadResponse {
            upload_id,
            status: outcome.status,
            report: outcome.report,
        }),
    )
        .into_response())
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the upload is larger than this server accepts",
        )
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.body_text())
    }
}

/// An anonymous file in memory and a path that opens it, so an upload holding raw identifiers
/// is never written to a disk.
#[cfg(target_os = "linux")]
fn anonymous_file() -> std::io::Result<(File, PathBuf)> {
    use std::os::fd::AsRawFd;
    let fd = rustix::fs::memfd_create("ctstats-upload", rustix::fs::MemfdFlags::CLOEXEC)?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    Ok((File::from(fd), path))
}

#[cfg(not(target_os = "linux"))]
fn anonymous_file() -> std::io::Result<(File, PathBuf)> {
    Err(std::io::Error::other(
        "uploads need Linux memfd_create: raw identifiers are never written to disk",
    ))
}

/// The caller's organisation's committed batches and upload reports (role `ngo`).
#[utoipa::path(
    get, path = "/v1/batches", tag = "batches",
    responses(
        (status = 200, description = "Own batches and upload reports", body = BatchList),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "Wrong role", body = ErrorBody),
        (status = 500, description = "Our failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_batches(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<BatchList>, ApiError> {
    let org = organisation(&caller)?;
    let data = state.config().data.clone();
    let o = org.clone();
    let batches = tokio::task::spawn_blocking(move || {
        ctstats_schemas::manifest::Manifest::read(&data).map(|m| {
            m.batches
                .into_iter()
                .filter(|b| b.organisation == o)
                .map(|b| serde_json::to_value(b).unwrap_or(Value::Null))
                .collect::<Vec<_>>()
        })
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let o = org.clone();
    let uploads = state.db(move |l| l.uploads(&o)).await?;
    Ok(Json(BatchList {
        organisation: org,
        batches,
        uploads,
    }))
}

/// All principals (role `admin`).
#[utoipa::path(
    get, path = "/v1/principals", tag = "admin",
    responses(
        (status = 200, description = "Principals, revoked ones included", body = Vec<Principal>),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "Wrong role", body = ErrorBody),
        (status = 500, description = "Our failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_principals(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Principal>>, ApiError> {
    caller.require(&[Role::Admin])?;
    Ok(Json(state.db(|l| l.principals()).await?))
}

/// Create a principal; its token is in the response and nowhere else (role `admin`).
#[utoipa::path(
    post, path = "/v1/principals", tag = "admin",
    request_body = NewPrincipal,
    responses(
        (status = 201, description = "Created; keep the token, it is shown once", body = CreatedPrincipal),
        (status = 400, description = "Invalid name, role or organisation", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "Wrong role", body = ErrorBody),
        (status = 500, description = "Our failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn add_principal(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let new: NewPrincipal = serde_json::from_slice(&body.map_err(body_error)?)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
    check_principal(&new.name, new.role, new.organisation.as_deref())
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "invalid_principal", m))?;
    let detail = format!("role={} name={}", new.role.name(), new.name);
    let (principal, token) = state
        .db(move |l| l.add_principal(&new.name, new.role, new.organisation.as_deref()))
        .await?;
    state
        .audit(&caller.0, "add_principal", detail, None, "created")
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedPrincipal {
            principal: serde_json::to_value(&principal).map_err(ApiError::internal)?,
            token,
        }),
    )
        .into_response())
}

/// The rules for a principal's name and organisation, shared with the command line.
pub fn check_principal(name: &str, role: Role, organisation: Option<&str>) -> Result<(), String> {
    let ok_text = |s: &str| {
        !s.trim().is_empty() && s.chars().count() <= 100 && !s.chars().any(char::is_control)
    };
    if !ok_text(name) {
        return Err("a name is 1 to 100 characters without control characters".into());
    }
    match (role, organisation) {
        (Role::Ngo, None) => Err("an ngo principal needs the organisation it uploads for".into()),
        (_, Some(org)) if !ok_text(org) || org.contains(['/', '\\']) => Err(
            "an organisation id is 1 to 100 characters, without control characters or slashes"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// Revoke a principal: its token stops working at once (role `admin`).
#[utoipa::path(
    delete, path = "/v1/principals/{id}", tag = "admin",
    params(("id" = String, Path, description = "Principal id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "Wrong role", body = ErrorBody),
        (status = 404, description = "No active principal with this id", body = ErrorBody),
        (status = 500, description = "Our failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn revoke_principal(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Admin])?;
    let target = id.clone();
    state.db(move |l| l.revoke(&target)).await?;
    state
        .audit(&caller.0, "revoke_principal", id, None, "revoked")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set a principal's total budget on the served dataset; what was spent stays spent
/// (role `admin`).
#[utoipa::path(
    put, path = "/v1/principals/{id}/budget", tag = "admin",
    params(("id" = String, Path, description = "Principal id")),
    request_body = BudgetRequest,
    responses(
        (status = 200, description = "The budget now", body = BudgetView),
        (status = 400, description = "Invalid amounts", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "Wrong role", body = ErrorBody),
        (status = 404, description = "No principal with this id", body = ErrorBody),
        (status = 500, description = "Our failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn set_budget(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(id): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BudgetView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let req: BudgetRequest = serde_json::from_slice(&body.map_err(body_error)?)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
    let ds = state.config().dataset.clone();
    let (target, d) = (id.clone(), ds.clone());
    let budget = state
        .db(move |l| l.set_budget(&target, &d, req.epsilon, req.delta))
        .await?;
    let detail = format!("principal={id} epsilon={} delta={}", req.epsilon, req.delta);
    state
        .audit(&caller.0, "set_budget", detail, None, "set")
        .await?;
    Ok(Json(BudgetView::new(&ds, &budget)))
}

/// The audit log: who asked what, when, at what cost; never a result (role `admin`).
#[utoipa::path(
    get, path = "/v1/audit", tag = "admin",
    params(AuditParams),
    responses(
        (status = 200, description = "Audit lines, oldest first", body = Vec<AuditRecord>),
        (status = 400, description = "Bad parameters", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "Wrong role", body = ErrorBody),
        (status = 500, description = "Our failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn audit_log(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    caller.require(&[Role::Admin])?;
    let Query(params) = params.map_err(query_string_error)?;
    let limit = params.limit.unwrap_or(1000);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameters",
            format!("limit is 1 to 1000, not {limit}"),
        ));
    }
    let after = params.after.unwrap_or(0);
    let lines = state.db(move |l| l.audit_log(after, limit)).await?;
    Ok(Json(lines.into_iter().map(|(_, r)| r).collect()))
}

/// The OpenAPI document of this service.
#[utoipa::path(
    get, path = "/openapi.json", tag = "metadata",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object))
)]
async fn openapi_json(State(state): State<AppState>) -> Response {
    Json(openapi(state.inner.uploader.is_some())).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see /openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take this method; see /openapi.json",
    )
}

/// One log line per request: method, route, status and time. Never a body or a token.
async fn log_requests(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "-".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    // A panicking handler gets the generic 500 body, not a dropped connection. The panic hook has
    // already written the cause to the log.
    let response = match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(_) => {
            ApiError::internal(format!("a handler panicked on {method} {route}")).into_response()
        }
    };
    tracing::info!(
        %method,
        route,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    response
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ctstats",
        description = "Differentially private statistics over counter-trafficking case records. \
            Every number computed from records carries noise from OpenDP, a 95% interval, and \
            is charged to the caller's privacy budget before it is released."
    ),
    paths(
        query, preview, budget, dimensions, upload, list_batches, list_principals,
        add_principal, revoke_principal, set_budget, audit_log, openapi_json,
        releases::list_indicators, releases::create_release, releases::list_releases,
        releases::get_release, releases::get_reference, releases::put_reference,
        releases::dashboard
    ),
    components(schemas(ErrorBody, ErrorDetail, SpecError, Answer, answer::Cell, answer::Estimate)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The OpenAPI document; without uploads, `POST /v1/batches` is left out as it is not mounted.
pub fn openapi(uploads: bool) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if !uploads && let Some(item) = doc.paths.paths.get_mut("/v1/batches") {
        item.post = None;
    }
    doc
}

/// The router. Binds nothing: `axum::serve` it, or call it in-process in tests.
pub fn app(state: AppState) -> Router {
    let batches = if state.inner.uploader.is_some() {
        get(list_batches)
            .post(upload)
            .layer(DefaultBodyLimit::disable())
    } else {
        get(list_batches)
    };
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/v1/dimensions", get(dimensions))
        .route("/v1/query", post(query))
        .route("/v1/preview", post(preview))
        .route("/v1/budget", get(budget))
        .route("/v1/batches", batches)
        .route("/v1/principals", get(list_principals).post(add_principal))
        .route("/v1/principals/{id}", delete(revoke_principal))
        .route("/v1/principals/{id}/budget", put(set_budget))
        .route("/v1/audit", get(audit_log))
        .route("/v1/indicators", get(releases::list_indicators))
        .route(
            "/v1/releases",
            get(releases::list_releases).post(releases::create_release),
        )
        .route("/v1/releases/{id}", get(releases::get_release))
        .route(
            "/v1/reference/{table}",
            get(releases::get_reference).put(releases::put_reference),
        )
        .route("/dashboard", get(releases::dashboard))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(log_requests))
        .with_state(state)
}

/// Serve `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_gets_the_generic_500_body() {
        let router: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    let bound: i64 = std::hint::black_box(i64::MIN);
                    // The kind of bug Schemathesis found: overflow in a debug build.
                    Json(bound.checked_abs().expect("overflow"))
                }),
            )
            .layer(middleware::from_fn(log_requests));
        let response = router
            .oneshot(
                axum::http::Request::get("/boom")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("overflow"), "{body}");
    }

    /// Counts how many uploads it is running at once.
    struct SlowUploader {
        active: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
    }

    impl Uploader for SlowUploader {
        fn upload(&self, _: &Path, _: &UploadRequest) -> Result<UploadOutcome, UploadError> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.active.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(100));
            self.active.fetch_sub(1, SeqCst);
            Ok(UploadOutcome {
                status: "rejected".into(),
                report: serde_json::json!({}),
            })
        }
    }

    /// Eight uploads at once: two run, the others wait their turn (without the permits all
    /// eight ran together; checked by hand).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn at_most_two_uploads_are_taken_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
        let (_, token) = ledger
            .add_principal("ngo", Role::Ngo, Some("ngo-1"))
            .unwrap();
        let uploader = Arc::new(SlowUploader {
            active: 0.into(),
            most: 0.into(),
        });
        let state = AppState::new(
            ServiceConfig {
                data: dir.path().join("ds"),
                dataset: "ds".into(),
                missions: vec!["KGZ".into()],
                max_upload_bytes: 1 << 20,
                max_concurrent_queries: 1,
            },
            ledger,
            Some(uploader.clone()),
        );
        let router = app(state);
        let uploads = (0..8).map(|_| {
            let request = axum::http::Request::post("/v1/batches?mission=KGZ&format=csv")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::from("a,b\n1,2\n"))
                .unwrap();
            tokio::spawn(router.clone().oneshot(request))
        });
        for upload in uploads.collect::<Vec<_>>() {
            let response = upload.await.unwrap().unwrap();
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        }
        let most = uploader.most.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(most, UPLOADS_AT_ONCE, "{most} uploads ran at once");
    }
}
