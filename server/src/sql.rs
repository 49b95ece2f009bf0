//! `POST /v1/sql` and `POST /v1/sql/preview`: the analysts' SQL dialect, compiled to the same
//! query spec as `POST /v1/query` (same engine, same charge, same hash).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use ctstats_query::service::views::{PreviewResponse, QueryResponse, SqlRequest};

use crate::AppState;
use crate::auth::{Bearer, Caller, Querier};
use crate::docs::{Failure, Unauthenticated};
use crate::error::{ApiError, ErrorBody, RawBody};
use crate::query::{FormatParams, judged, respond};

/// Ask a DP query in SQL, charged to the caller's budget; re-served free when the same question
/// was asked before, in SQL or in JSON.
#[utoipa::path(
    post, path = "/v1/sql", tag = "queries",
    request_body = SqlRequest,
    params(FormatParams),
    responses(
        (status = 200, description = "Noisy cells with 95% intervals, ordered and limited as the \
         statement asks (after noise); the compiled query, the cost and the budget left",
         content((QueryResponse = "application/json"), (String = "text/csv"))),
        (status = 400, description = "The statement is refused (`invalid_sql`: construct, line \
         and column) or its query cannot be answered as asked", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Wrong role, no budget set, or not enough budget left", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn sql(
    State(state): State<AppState>,
    Bearer(token): Bearer,
    format: Result<Query<FormatParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<RawBody, ApiError>,
) -> Result<Response, ApiError> {
    let service = state.service();
    let (csv, (spec, arrangement)) = judged(service, &token, format, &headers, body, |b| {
        service.parse_sql(b)
    })
    .await?;
    let response = service.ask_with_token(token, spec).await?;
    respond(response.arranged(&arrangement)?, csv)
}

/// What a SQL statement would cost and its interval widths, without charging anything.
#[utoipa::path(
    post, path = "/v1/sql/preview", tag = "queries",
    request_body = SqlRequest,
    responses(
        (status = 200, description = "Noise scales, 95% half-widths and the cost; nothing is charged", body = PreviewResponse),
        (status = 400, description = "The statement is refused or its query cannot be answered as asked", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Wrong role", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn sql_preview(
    State(state): State<AppState>,
    caller: Caller<Querier>,
    RawBody(body): RawBody,
) -> Result<Json<PreviewResponse>, ApiError> {
    let service = state.service();
    let (spec, _) = service.parse_sql(&body)?;
    Ok(Json(service.preview(&caller.principal, spec).await?))
}
