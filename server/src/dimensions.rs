//! `GET /v1/dimensions` and `GET /v1/indicators`: public metadata.

use axum::Json;
use axum::extract::State;
use ctstats_query::indicators;
use ctstats_query::service::views::{Catalogue, IndicatorList};

use crate::AppState;

/// Public metadata: measures, dimensions, value columns and missions.
#[utoipa::path(
    get, path = "/v1/dimensions", tag = "metadata",
    responses((status = 200, description = "What a query may name", body = Catalogue))
)]
pub(crate) async fn dimensions(State(state): State<AppState>) -> Json<Catalogue> {
    Json(state.service().dimensions())
}

/// Every indicator a release can hold, with its definition.
#[utoipa::path(
    get, path = "/v1/indicators", tag = "metadata",
    responses((status = 200, description = "The indicator catalogue", body = IndicatorList))
)]
pub(crate) async fn list_indicators() -> Json<IndicatorList> {
    Json(IndicatorList {
        indicators: indicators::catalogue().iter().map(|i| i.view()).collect(),
    })
}
