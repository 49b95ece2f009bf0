//! `GET /v1/audit`: who asked what, when, at what cost; never a result (role `admin`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use ctstats_query::ledger::AuditRecord;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::{Admin, Caller};
use crate::docs::{Failure, Unauthenticated};
use crate::error::{ApiError, ErrorBody, query_string_error};

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

/// The audit log: who asked what, when, at what cost; never a result (role `admin`).
#[utoipa::path(
    get, path = "/v1/audit", tag = "admin",
    params(AuditParams),
    responses(
        (status = 200, description = "Audit lines, oldest first", body = Vec<AuditRecord>),
        (status = 400, description = "Bad parameters", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Wrong role", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn audit_log(
    State(state): State<AppState>,
    caller: Caller<Admin>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    let Query(params) = params.map_err(query_string_error)?;
    let lines = state
        .service()
        .audit_log(&caller.principal, params.after, params.limit)
        .await?;
    Ok(Json(lines))
}
