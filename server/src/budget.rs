//! `GET /v1/budget`: the caller's own budget.

use axum::Json;
use axum::extract::State;
use ctstats_query::service::views::BudgetView;

use crate::AppState;
use crate::auth::{Caller, Querier};
use crate::docs::{Failure, Unauthenticated};
use crate::error::{ApiError, ErrorBody};

/// The caller's budget on the served dataset.
#[utoipa::path(
    get, path = "/v1/budget", tag = "queries",
    responses(
        (status = 200, description = "Total, spent and left", body = BudgetView),
        Unauthenticated,
        (status = 403, description = "Wrong role, or no budget is set", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn budget(
    State(state): State<AppState>,
    caller: Caller<Querier>,
) -> Result<Json<BudgetView>, ApiError> {
    Ok(Json(state.service().budget(&caller.principal).await?))
}
