//! `/v1/principals`: list, create, revoke, and set budgets (role `admin`).

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ctstats_query::ledger::Principal;
use ctstats_query::service::views::{
    BudgetRequest, BudgetView, CreatedPrincipal, MissionBinding, NewPrincipal,
};

use crate::AppState;
use crate::auth::{Admin, Caller};
use crate::docs::{Failure, Unauthenticated};
use crate::error::{ApiError, ErrorBody, JsonBody};

/// All principals (role `admin`).
#[utoipa::path(
    get, path = "/v1/principals", tag = "admin",
    responses(
        (status = 200, description = "Principals, revoked ones included", body = Vec<Principal>),
        Unauthenticated,
        (status = 403, description = "Wrong role", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_principals(
    State(state): State<AppState>,
    caller: Caller<Admin>,
) -> Result<Json<Vec<Principal>>, ApiError> {
    Ok(Json(state.service().principals(&caller.principal).await?))
}

/// Create a principal; its token is in the response and nowhere else (role `admin`).
#[utoipa::path(
    post, path = "/v1/principals", tag = "admin",
    request_body = NewPrincipal,
    responses(
        (status = 201, description = "Created; keep the token, it is shown once", body = CreatedPrincipal),
        (status = 400, description = "Invalid name, role, organisation or missions", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Wrong role", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn add_principal(
    State(state): State<AppState>,
    caller: Caller<Admin>,
    JsonBody(new): JsonBody<NewPrincipal>,
) -> Result<Response, ApiError> {
    let created = state
        .service()
        .add_principal(&caller.principal, new)
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Revoke a principal: its token stops working at once (role `admin`).
#[utoipa::path(
    delete, path = "/v1/principals/{id}", tag = "admin",
    params(("id" = String, Path, description = "Principal id")),
    responses(
        (status = 204, description = "Revoked"),
        Unauthenticated,
        (status = 403, description = "Wrong role", body = ErrorBody),
        (status = 404, description = "No active principal with this id", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn revoke_principal(
    State(state): State<AppState>,
    caller: Caller<Admin>,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    state
        .service()
        .revoke_principal(&caller.principal, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set a principal's total budget on the served dataset; what was spent stays spent
/// (role `admin`).
#[utoipa::path(
    put, path = "/v1/principals/{id}/budget", tag = "admin",
    params(("id" = String, Path, description = "Principal id")),
    request_body = ctstats_query::service::views::BudgetForm,
    responses(
        (status = 200, description = "The budget now", body = BudgetView),
        (status = 400, description = "Invalid amounts", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Wrong role", body = ErrorBody),
        (status = 404, description = "No principal with this id", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn set_budget(
    State(state): State<AppState>,
    caller: Caller<Admin>,
    UrlPath(id): UrlPath<String>,
    JsonBody(req): JsonBody<BudgetRequest>,
) -> Result<Json<BudgetView>, ApiError> {
    let budget = state
        .service()
        .set_budget(&caller.principal, id, req)
        .await?;
    Ok(Json(budget))
}

/// Bind an `ngo` principal to exactly the missions it may upload for; an upload for any other
/// mission is refused with `mission_not_bound` (role `admin`).
#[utoipa::path(
    put, path = "/v1/principals/{id}/missions", tag = "admin",
    params(("id" = String, Path, description = "Principal id")),
    request_body = MissionBinding,
    responses(
        (status = 200, description = "The principal as bound now", body = Principal),
        (status = 400, description = "Not an ngo principal, or not an ISO alpha-3 code", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Wrong role", body = ErrorBody),
        (status = 404, description = "No principal with this id", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn bind_missions(
    State(state): State<AppState>,
    caller: Caller<Admin>,
    UrlPath(id): UrlPath<String>,
    JsonBody(binding): JsonBody<MissionBinding>,
) -> Result<Json<Principal>, ApiError> {
    let bound = state
        .service()
        .bind_missions(&caller.principal, id, binding.missions)
        .await?;
    Ok(Json(bound))
}
