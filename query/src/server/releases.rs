//! Indicators, releases, reference tables and the dashboard page.
//!
//! - `GET /v1/indicators` and `GET /v1/reference/{table}` are public metadata.
//! - `POST /v1/releases` (analyst) prices a release, charges it once to the caller's budget
//!   (write-ahead, as a query), computes and post-processes it, and stores it; the same request
//!   by the same caller is served again at no cost.
//! - `GET /v1/releases` and `GET /v1/releases/{id}` serve stored releases to every role, free.
//! - `PUT /v1/reference/{table}` (admin) replaces a reference table from CSV.
//! - `GET /dashboard` is a static page that reads only releases.

use super::*;
use crate::indicators::{self, IndicatorView};
use crate::reference::{self, RowProblem};
use crate::release::{self, Release, ReleaseRequest, ReleaseSummary};

/// The dashboard page: one self-contained file, compiled in.
const DASHBOARD: &str = include_str!("../../assets/dashboard.html");

/// The indicator catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndicatorList {
    pub indicators: Vec<IndicatorView>,
}

/// Every indicator a release can hold, with its definition.
#[utoipa::path(
    get, path = "/v1/indicators", tag = "metadata",
    responses((status = 200, description = "The indicator catalogue", body = IndicatorList))
)]
pub(super) async fn list_indicators() -> Json<IndicatorList> {
    Json(IndicatorList {
        indicators: indicators::catalogue().iter().map(|i| i.view()).collect(),
    })
}

/// Stored releases, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseList {
    pub releases: Vec<ReleaseSummary>,
}

const RELEASE_ROLES: &[Role] = &[Role::Analyst];
const READ_ROLES: &[Role] = &[Role::Ngo, Role::Analyst, Role::Researcher, Role::Admin];

/// Create a release: charged once to the caller's budget, then free for every role.
#[utoipa::path(
    post, path = "/v1/releases", tag = "releases",
    request_body = ReleaseRequest,
    responses(
        (status = 201, description = "Computed, charged and stored", body = Release),
        (status = 200, description = "The same request was released before: served again, free", body = Release),
        (status = 400, description = "The request is malformed", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "Not an analyst, no budget, or not enough budget left", body = ErrorBody),
        (status = 500, description = "Our failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn create_release(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(RELEASE_ROLES)?;
    let body = body.map_err(body_error)?;
    let request: ReleaseRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
    let missions = state.config().missions.clone();
    let plan = tokio::task::spawn_blocking(move || request.plan(&missions))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::invalid_query(&e))?;
    // As for queries: charging, computing and storing survive a client that hangs up.
    let (release, fresh) = tokio::spawn(settle_release(state, caller.0, plan))
        .await
        .map_err(ApiError::internal)??;
    let status = if fresh {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(release)).into_response())
}

/// Create a release as `principal` (the command line's path): the same checks, charge and
/// storage as `POST /v1/releases`. Returns the release and whether it was computed now (else
/// it was stored before and served free).
pub async fn create_release_as(
    state: AppState,
    principal: Principal,
    request: ReleaseRequest,
) -> Result<(Release, bool), String> {
    if principal.revoked || principal.role != Role::Analyst {
        return Err(format!(
            "{} is not an active analyst: only analysts create releases",
            principal.id
        ));
    }
    let missions = state.config().missions.clone();
    let plan = tokio::task::spawn_blocking(move || request.plan(&missions))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    settle_release(state, principal, plan)
        .await
        .map_err(|e| format!("{}: {}", e.code, e.message))
}

async fn settle_release(
    state: AppState,
    principal: Principal,
    plan: release::ReleasePlan,
) -> Result<(Release, bool), ApiError> {
    let dataset = state.config().dataset.clone();
    let hash = format!("release:{}", plan.hash);
    let detail = format!(
        "{hash} {}",
        serde_json::to_string(&plan.request).map_err(ApiError::internal)?
    );
    let charge_id = match pay(&state, &principal, "release", &hash, plan.cost, &detail).await? {
        Paid::Reused { answer, .. } => {
            let id = serde_json::from_str::<Value>(&answer)
                .ok()
                .and_then(|v| v["release_id"].as_i64())
                .ok_or_else(|| ApiError::internal("a stored release charge has no release id"))?;
            let release = fetch(&state, id).await?.ok_or_else(|| {
                ApiError::internal(format!("release {id} is charged but not stored"))
            })?;
            return Ok((release, false));
        }
        Paid::Charged { charge_id, .. } => charge_id,
    };

    // Paid. From here a failure loses the budget just charged, never privacy.
    let computed = {
        let _permit = state
            .inner
            .aggregations
            .acquire()
            .await
            .map_err(ApiError::internal)?;
        let config = state.config();
        release::compute_counts(&config.data, &config.missions, &plan).await
    };
    let (counts, generation) = match computed {
        Ok(c) => c,
        Err(e) => {
            state
                .audit(&principal, "release", detail, Some(plan.cost), "failed")
                .await?;
            return Err(ApiError::internal(e));
        }
    };
    let references = state
        .db(|l| {
            Ok(reference::references(
                l.reference("estimated_victims")?.as_deref(),
                l.reference("convictions")?.as_deref(),
            ))
        })
        .await?;
    let release = build(
        &plan,
        &counts,
        &references,
        &principal.name,
        &dataset,
        generation,
    );
    let stored = release.clone();
    let ds = dataset.clone();
    let id = state
        .db(move |l| {
            l.store_release(charge_id, &ds, |id| {
                let mut r = stored;
                r.id = id;
                serde_json::to_string(&r).unwrap_or_default()
            })
        })
        .await?;
    state
        .audit(&principal, "release", detail, Some(plan.cost), "answered")
        .await?;
    let mut release = release;
    release.id = id;
    Ok((release, true))
}

/// The release of `plan` from its noisy counts (post-processing only: no budget).
pub fn build(
    plan: &release::ReleasePlan,
    counts: &[release::Counts],
    references: &release::References,
    created_by: &str,
    dataset: &str,
    generation: u64,
) -> Release {
    let (indicators, sources, mut notes) = release::post_process(plan, counts, references);
    notes.insert(
        0,
        "Counts are post-processed to non-negative integers; breakdowns sum to persons assisted; shares lie in [0, 1]. Intervals are 95% and come from the raw noisy counts, widened to contain the published value.".to_string(),
    );
    Release {
        id: 0,
        name: plan.request.name.clone(),
        created_at: now(),
        created_by: created_by.to_string(),
        dataset: dataset.to_string(),
        period: plan.request.period,
        from: plan.periods.first().cloned().unwrap_or_default(),
        to: plan.periods.last().cloned().unwrap_or_default(),
        missions: plan.missions.clone(),
        level: answer::LEVEL,
        cost: plan.cost,
        contribution_bound: plan
            .request
            .contribution_bound
            .unwrap_or(release::DEFAULT_CONTRIBUTION_BOUND),
        budget_rule: release::budget_rule(plan),
        generation,
        indicators,
        sources,
        notes,
    }
}

/// The time now, `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

async fn fetch(state: &AppState, id: i64) -> Result<Option<Release>, ApiError> {
    let ds = state.config().dataset.clone();
    let text = state.db(move |l| l.release(&ds, id)).await?;
    text.map(|t| serde_json::from_str(&t).map_err(ApiError::internal))
        .transpose()
}

/// Stored releases of the served dataset, newest first (every role, free).
#[utoipa::path(
    get, path = "/v1/releases", tag = "releases",
    responses(
        (status = 200, description = "Releases, newest first", body = ReleaseList),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn list_releases(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ReleaseList>, ApiError> {
    caller.require(READ_ROLES)?;
    let ds = state.config().dataset.clone();
    let bodies = state.db(move |l| l.releases(&ds)).await?;
    let releases = bodies
        .iter()
        .map(|b| serde_json::from_str::<Release>(b).map(|r| r.summary()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    Ok(Json(ReleaseList { releases }))
}

/// One stored release, as JSON or CSV (every role, free).
#[utoipa::path(
    get, path = "/v1/releases/{id}", tag = "releases",
    params(("id" = i64, Path, description = "Release id", minimum = 1), FormatParams),
    responses(
        (status = 200, description = "The release: every cell with its 95% interval",
         content((Release = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Bad format parameter", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 404, description = "No such release", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn get_release(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<UrlPath<i64>, axum::extract::rejection::PathRejection>,
    format: Result<Query<FormatParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(READ_ROLES)?;
    let Query(format) = format.map_err(query_string_error)?;
    let csv = wants_csv(format.format.as_deref(), &headers)?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such release");
    let UrlPath(id) = id.map_err(|_| not_found())?;
    let release = fetch(&state, id).await?.ok_or_else(not_found)?;
    if csv {
        let mut r = release.to_csv().into_response();
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        return Ok(r);
    }
    Ok(Json(release).into_response())
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

fn check_table(table: &str) -> Result<(), ApiError> {
    if reference::TABLES.contains(&table) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the reference tables are {:?}", reference::TABLES),
        ))
    }
}

/// A reference table (public: official and published figures, no record of anyone).
#[utoipa::path(
    get, path = "/v1/reference/{table}", tag = "metadata",
    params(("table" = String, Path, description = "`estimated_victims` or `convictions`", pattern = "^(estimated_victims|convictions)$")),
    responses(
        (status = 200, description = "The rows as loaded", body = ReferenceView),
        (status = 404, description = "No such table", body = ErrorBody),
    )
)]
pub(super) async fn get_reference(
    State(state): State<AppState>,
    UrlPath(table): UrlPath<String>,
) -> Result<Json<ReferenceView>, ApiError> {
    check_table(&table)?;
    let name = table.clone();
    let body = state.db(move |l| l.reference(&name)).await?;
    let rows = body
        .map(|b| serde_json::from_str(&b).map_err(ApiError::internal))
        .transpose()?
        .unwrap_or(Value::Array(Vec::new()));
    Ok(Json(ReferenceView { table, rows }))
}

/// Replace a reference table from CSV (admin). A file with any bad row changes nothing.
#[utoipa::path(
    put, path = "/v1/reference/{table}", tag = "admin",
    params(("table" = String, Path, description = "`estimated_victims` or `convictions`", pattern = "^(estimated_victims|convictions)$")),
    request_body(content = String, content_type = "text/csv",
        description = "estimated_victims: country,year,estimate,low,high,source; convictions: country,year,prosecutions,convictions,source"),
    responses(
        (status = 200, description = "Loaded", body = ReferenceLoaded),
        (status = 400, description = "Not UTF-8 text", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such table", body = ErrorBody),
        (status = 422, description = "Rows that break a rule: row, column, rule", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn put_reference(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(table): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ReferenceLoaded>, ApiError> {
    caller.require(&[Role::Admin])?;
    check_table(&table)?;
    let body = body.map_err(body_error)?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the body is not UTF-8 CSV text",
        )
    })?;
    let parsed = reference::parse(&table, text).map_err(|problems: Vec<RowProblem>| {
        let first = problems
            .first()
            .map(|p| {
                format!(
                    "row {}, column {}: {} ({})",
                    p.row, p.column, p.message, p.rule
                )
            })
            .unwrap_or_default();
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_reference",
            format!("{} problem(s); first: {first}", problems.len()),
        )
        .with_details(serde_json::json!({ "problems": problems }))
    })?;
    let rows = parsed.len();
    let json = serde_json::to_string(&parsed).map_err(ApiError::internal)?;
    let (name, by) = (table.clone(), caller.0.id.clone());
    state
        .db(move |l| l.set_reference(&name, &by, &json))
        .await?;
    state
        .audit(
            &caller.0,
            "reference",
            format!("table={table} rows={rows}"),
            None,
            "loaded",
        )
        .await?;
    Ok(Json(ReferenceLoaded { table, rows }))
}

/// The dashboard: charts and tables of releases, with their intervals (the page asks for a
/// token and reads only `/v1/releases`).
#[utoipa::path(
    get, path = "/dashboard", tag = "metadata",
    responses((status = 200, description = "The dashboard page", content_type = "text/html", body = String))
)]
pub(super) async fn dashboard() -> Response {
    let mut r = DASHBOARD.into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}
