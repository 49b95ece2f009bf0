//! `POST /v1/query` and `POST /v1/preview`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use ctstats_query::error::{Code, EngineError};
use ctstats_query::service::views::{PreviewResponse, QueryResponse};
use ctstats_query::service::{QUERY_ROLES, Service};
use ctstats_query::spec::QuerySpec;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::{Bearer, Caller, Querier};
use crate::docs::{Failure, Unauthenticated};
use crate::error::{ApiError, ErrorBody, RawBody, query_string_error};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatParams {
    /// `json` (default) or `csv` (the cells only; cost and budget in `X-Ctstats-*` headers).
    #[serde(default)]
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

/// Whether the caller asked for CSV, by `format` or the `Accept` header.
pub fn wants_csv(
    format: Result<Query<FormatParams>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<bool, ApiError> {
    let Query(format) = format.map_err(query_string_error)?;
    match format.format.as_deref() {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(ApiError::new(
            Code::InvalidParameters,
            format!("format is json or csv, not {other:?}"),
        )),
        None => Ok(headers
            .get(ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/csv"))),
    }
}

/// A CSV response body.
pub fn csv_response(body: String) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    r
}

pub(crate) fn respond(response: QueryResponse, csv: bool) -> Result<Response, ApiError> {
    if !csv {
        return Ok(Json(response).into_response());
    }
    let mut r = csv_response(response.answer.to_csv()?);
    let headers = r.headers_mut();
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
        Unauthenticated,
        (status = 403, description = "Wrong role, no budget set, or not enough budget left", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn query(
    State(state): State<AppState>,
    Bearer(token): Bearer,
    format: Result<Query<FormatParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<RawBody, ApiError>,
) -> Result<Response, ApiError> {
    let service = state.service();
    let (csv, spec) = judged(service, &token, format, &headers, body, |b| {
        service.parse_query(b)
    })
    .await?;
    // The token is looked up with the stored answer, in one hop.
    respond(service.ask_with_token(token, spec).await?, csv)
}

/// The CSV choice and the body as `parse` reads it. As for every endpoint, who asks is checked
/// before the request is judged: on a refusal of the request, a caller without a query role (or
/// without a valid token) learns nothing from the body's validation.
pub(crate) async fn judged<T>(
    service: &Service,
    token: &str,
    format: Result<Query<FormatParams>, QueryRejection>,
    headers: &HeaderMap,
    body: Result<RawBody, ApiError>,
    parse: impl FnOnce(&[u8]) -> Result<T, EngineError>,
) -> Result<(bool, T), ApiError> {
    let request = wants_csv(format, headers).and_then(|csv| {
        let RawBody(body) = body?;
        Ok((csv, parse(&body)?))
    });
    match request {
        Ok(r) => Ok(r),
        Err(e) => {
            let principal = service.authenticate(token.to_string()).await?;
            ctstats_query::service::require(&principal, QUERY_ROLES)?;
            Err(e)
        }
    }
}

/// What a query would cost and its interval widths, without charging anything.
#[utoipa::path(
    post, path = "/v1/preview", tag = "queries",
    request_body = QuerySpec,
    responses(
        (status = 200, description = "Noise scales, 95% half-widths and the cost; nothing is charged", body = PreviewResponse),
        (status = 400, description = "The query is malformed or cannot be answered as asked", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Wrong role", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn preview(
    State(state): State<AppState>,
    caller: Caller<Querier>,
    RawBody(body): RawBody,
) -> Result<Json<PreviewResponse>, ApiError> {
    let service = state.service();
    let spec = service.parse_query(&body)?;
    Ok(Json(service.preview(&caller.principal, spec).await?))
}
