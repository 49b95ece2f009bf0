//! `/v1/reference/{table}`: public reference tables; replaced from CSV by an admin.

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use ctstats_query::service::views::{ReferenceLoaded, ReferenceView};

use crate::AppState;
use crate::auth::{Admin, Caller};
use crate::docs::Unauthenticated;
use crate::error::{ApiError, ErrorBody, RawBody};

/// A reference table (public: official and published figures, no record of anyone).
#[utoipa::path(
    get, path = "/v1/reference/{table}", tag = "metadata",
    params(("table" = String, Path, description = "`estimated_victims` or `convictions`", pattern = "^(estimated_victims|convictions)$")),
    responses(
        (status = 200, description = "The rows as loaded", body = ReferenceView),
        (status = 404, description = "No such table", body = ErrorBody),
    )
)]
pub(crate) async fn get_reference(
    State(state): State<AppState>,
    UrlPath(table): UrlPath<String>,
) -> Result<Json<ReferenceView>, ApiError> {
    Ok(Json(state.service().reference(&table).await?))
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
        Unauthenticated,
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such table", body = ErrorBody),
        (status = 422, description = "Rows that break a rule: row, column, rule", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put_reference(
    State(state): State<AppState>,
    caller: Caller<Admin>,
    UrlPath(table): UrlPath<String>,
    RawBody(body): RawBody,
) -> Result<Json<ReferenceLoaded>, ApiError> {
    let loaded = state
        .service()
        .put_reference(&caller.principal, &table, &body)
        .await?;
    Ok(Json(loaded))
}
