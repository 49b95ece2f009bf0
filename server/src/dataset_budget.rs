//! `/v1/dataset/budget`: the dataset-wide privacy budget, the total loss the served dataset may
//! ever incur over every charge by every principal (`GET`: admin and analyst; `PUT`: admin).

use axum::Json;
use axum::extract::State;
use ctstats_query::service::views::{BudgetRequest, DatasetBudgetView};

use crate::AppState;
use crate::auth::{Admin, Caller, DatasetReader};
use crate::docs::{Failure, Unauthenticated};
use crate::error::{ApiError, ErrorBody, JsonBody};

/// The dataset-wide budget: its total, what every principal spent of it together (composed in
/// zCDP, as a principal's budget), and what is left; `set: false` when none is set, and then
/// nothing caps the dataset as a whole (roles `admin` and `analyst`).
#[utoipa::path(
    get, path = "/v1/dataset/budget", tag = "admin",
    responses(
        (status = 200, description = "The dataset-wide budget, or `set: false`", body = DatasetBudgetView),
        Unauthenticated,
        (status = 403, description = "Wrong role", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn dataset_budget(
    State(state): State<AppState>,
    caller: Caller<DatasetReader>,
) -> Result<Json<DatasetBudgetView>, ApiError> {
    Ok(Json(
        state.service().dataset_budget(&caller.principal).await?,
    ))
}

/// Set the dataset-wide budget as `epsilon` (with `delta`) or `rho`: from now on every charge, by
/// any principal, query or release, must fit in it together with every charge made before,
/// or it is refused (`dataset_budget_exhausted`) and nothing is charged (role `admin`).
#[utoipa::path(
    put, path = "/v1/dataset/budget", tag = "admin",
    request_body = ctstats_query::service::views::BudgetForm,
    responses(
        (status = 200, description = "The dataset-wide budget now", body = DatasetBudgetView),
        (status = 400, description = "Invalid amounts", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Wrong role", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn set_dataset_budget(
    State(state): State<AppState>,
    caller: Caller<Admin>,
    JsonBody(req): JsonBody<BudgetRequest>,
) -> Result<Json<DatasetBudgetView>, ApiError> {
    Ok(Json(
        state
            .service()
            .set_dataset_budget(&caller.principal, req)
            .await?,
    ))
}
