//! `/v1/synthetic`: DP synthetic tables (MST). Preview and create (analyst or admin, charged
//! once), list, read and download as Parquet or CSV (every role, free).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ctstats_query::error::Code;
use ctstats_query::service::synthetic::{SyntheticPreview, TableFormat};
use ctstats_query::synthetic::{SyntheticInfo, SyntheticRequest};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{Caller, Reader, Synthesizer};
use crate::docs::{Failure, Unauthenticated};
use crate::error::{ApiError, ErrorBody, JsonBody, query_string_error};

/// The stored synthetic tables, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyntheticList {
    pub tables: Vec<SyntheticInfo>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TableParams {
    /// `parquet` (default) or `csv`.
    #[serde(default)]
    #[param(pattern = "^(parquet|csv)$")]
    pub format: Option<String>,
}

/// Make a synthetic table: charged once (in rho) to the caller's budget and the dataset's, then
/// free for every role.
#[utoipa::path(
    post, path = "/v1/synthetic", tag = "synthetic",
    request_body = SyntheticRequest,
    responses(
        (status = 201, description = "Computed, charged and stored: the table's metadata (download it from /v1/synthetic/{id}/records)", body = SyntheticInfo),
        (status = 200, description = "The same request was made before: served again, free", body = SyntheticInfo),
        (status = 400, description = "The request is malformed", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Not an analyst or admin, no budget, or not enough budget left", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create_synthetic(
    State(state): State<AppState>,
    caller: Caller<Synthesizer>,
    JsonBody(request): JsonBody<SyntheticRequest>,
) -> Result<Response, ApiError> {
    let (info, fresh) = state
        .service()
        .synthesize(&caller.principal, request)
        .await?;
    let status = if fresh {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(info)).into_response())
}

/// What a synthetic table would charge and leave of both budgets; nothing is computed or
/// charged.
#[utoipa::path(
    post, path = "/v1/synthetic/preview", tag = "synthetic",
    request_body = SyntheticRequest,
    responses(
        (status = 200, description = "The table's rho, (epsilon, delta), noise and the budgets after it; nothing is charged", body = SyntheticPreview),
        (status = 400, description = "The request is malformed", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Not an analyst or admin", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn preview_synthetic(
    State(state): State<AppState>,
    caller: Caller<Synthesizer>,
    JsonBody(request): JsonBody<SyntheticRequest>,
) -> Result<Json<SyntheticPreview>, ApiError> {
    Ok(Json(
        state
            .service()
            .preview_synthetic(&caller.principal, request)
            .await?,
    ))
}

/// Stored synthetic tables of the served dataset, newest first (every role, free).
#[utoipa::path(
    get, path = "/v1/synthetic", tag = "synthetic",
    responses(
        (status = 200, description = "Synthetic tables, newest first", body = SyntheticList),
        Unauthenticated,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_synthetic(
    State(state): State<AppState>,
    caller: Caller<Reader>,
) -> Result<Json<SyntheticList>, ApiError> {
    let tables = state.service().synthetic_tables(&caller.principal).await?;
    Ok(Json(SyntheticList { tables }))
}

fn table_id(id: Result<UrlPath<i64>, PathRejection>) -> Result<i64, ApiError> {
    id.map(|UrlPath(id)| id)
        .map_err(|_| ApiError::new(Code::NotFound, "no such synthetic table"))
}

/// One stored synthetic table's metadata: its guarantee, cost, columns and model (every role,
/// free).
#[utoipa::path(
    get, path = "/v1/synthetic/{id}", tag = "synthetic",
    params(("id" = i64, Path, description = "Synthetic table id", minimum = 1)),
    responses(
        (status = 200, description = "The table's metadata", body = SyntheticInfo),
        Unauthenticated,
        (status = 404, description = "No such synthetic table", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_synthetic(
    State(state): State<AppState>,
    caller: Caller<Reader>,
    id: Result<UrlPath<i64>, PathRejection>,
) -> Result<Json<SyntheticInfo>, ApiError> {
    let id = table_id(id)?;
    Ok(Json(
        state
            .service()
            .synthetic_info(&caller.principal, id)
            .await?,
    ))
}

/// One stored synthetic table's records, as Parquet or CSV (every role, free).
#[utoipa::path(
    get, path = "/v1/synthetic/{id}/records", tag = "synthetic",
    params(("id" = i64, Path, description = "Synthetic table id", minimum = 1), TableParams),
    responses(
        (status = 200, description = "The records: one column per requested column, values from the public domains",
         content((String = "application/vnd.apache.parquet"), (String = "text/csv"))),
        (status = 400, description = "Bad format parameter", body = ErrorBody),
        Unauthenticated,
        (status = 404, description = "No such synthetic table", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_synthetic_records(
    State(state): State<AppState>,
    caller: Caller<Reader>,
    id: Result<UrlPath<i64>, PathRejection>,
    params: Result<Query<TableParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(query_string_error)?;
    let format = match params.format.as_deref() {
        None | Some("parquet") => TableFormat::Parquet,
        Some("csv") => TableFormat::Csv,
        Some(other) => {
            return Err(ApiError::new(
                Code::InvalidParameters,
                format!("format is parquet or csv, not {other:?}"),
            ));
        }
    };
    let id = table_id(id)?;
    let (_, bytes) = state
        .service()
        .synthetic_table(&caller.principal, id, format)
        .await?;
    let (content_type, extension) = match format {
        TableFormat::Parquet => ("application/vnd.apache.parquet", "parquet"),
        TableFormat::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"synthetic-{id}.{extension}\""
    )) {
        headers.insert(CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
