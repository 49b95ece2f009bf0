//! `/v1/releases`: preview and create (analyst, charged once), list and read (every role, free).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ctstats_query::error::Code;
use ctstats_query::release::{Release, ReleaseRequest};
use ctstats_query::service::views::{ReleaseList, ReleasePreview};

use crate::AppState;
use crate::auth::{Analyst, Caller, Reader};
use crate::docs::{Failure, Unauthenticated};
use crate::error::{ApiError, ErrorBody, JsonBody};
use crate::query::{FormatParams, csv_response, wants_csv};

/// Create a release: charged once to the caller's budget, then free for every role.
#[utoipa::path(
    post, path = "/v1/releases", tag = "releases",
    request_body = ReleaseRequest,
    responses(
        (status = 201, description = "Computed, charged and stored", body = Release),
        (status = 200, description = "The same request was released before: served again, free", body = Release),
        (status = 400, description = "The request is malformed", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Not an analyst, no budget, or not enough budget left", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create_release(
    State(state): State<AppState>,
    caller: Caller<Analyst>,
    JsonBody(request): JsonBody<ReleaseRequest>,
) -> Result<Response, ApiError> {
    let (release, fresh) = state
        .service()
        .create_release(&caller.principal, request)
        .await?;
    let status = if fresh {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(release)).into_response())
}

/// What a release would cost, how precise each indicator would be, and what it would leave of
/// the caller's and the dataset's budgets; nothing is computed or charged.
#[utoipa::path(
    post, path = "/v1/releases/preview", tag = "releases",
    request_body = ReleaseRequest,
    responses(
        (status = 200, description = "The release's rho, (epsilon, delta), planning half-widths and the budgets after it; nothing is charged", body = ReleasePreview),
        (status = 400, description = "The request is malformed", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Not an analyst", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn preview_release(
    State(state): State<AppState>,
    caller: Caller<Analyst>,
    JsonBody(request): JsonBody<ReleaseRequest>,
) -> Result<Json<ReleasePreview>, ApiError> {
    Ok(Json(
        state
            .service()
            .preview_release(&caller.principal, request)
            .await?,
    ))
}

/// Stored releases of the served dataset, newest first (every role, free).
#[utoipa::path(
    get, path = "/v1/releases", tag = "releases",
    responses(
        (status = 200, description = "Releases, newest first", body = ReleaseList),
        Unauthenticated,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_releases(
    State(state): State<AppState>,
    caller: Caller<Reader>,
) -> Result<Json<ReleaseList>, ApiError> {
    let releases = state.service().releases(&caller.principal).await?;
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
        Unauthenticated,
        (status = 404, description = "No such release", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_release(
    State(state): State<AppState>,
    caller: Caller<Reader>,
    id: Result<UrlPath<i64>, PathRejection>,
    format: Result<Query<FormatParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let csv = wants_csv(format, &headers)?;
    let UrlPath(id) = id.map_err(|_| ApiError::new(Code::NotFound, "no such release"))?;
    let release = state.service().release(&caller.principal, id).await?;
    if csv {
        return Ok(csv_response(release.to_csv()));
    }
    Ok(Json(release).into_response())
}
