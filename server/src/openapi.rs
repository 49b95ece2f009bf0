//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use ctstats_query::answer::{self, Answer};
use ctstats_query::spec::SpecError;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail};
use crate::{AppState, audit, batches, budget, dashboard, dataset_budget, dimensions, principals};
use crate::{query, sql};
use crate::{reference, releases, synthetic};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ctstats",
        description = "Differentially private statistics over counter-trafficking case records. \
            Every number computed from records carries noise from OpenDP, a 95% interval, and \
            is charged to the caller's privacy budget before it is released."
    ),
    paths(
        query::query, query::preview, sql::sql, sql::sql_preview, budget::budget, dimensions::dimensions, batches::upload,
        batches::list_batches, principals::list_principals, principals::add_principal,
        principals::revoke_principal, principals::set_budget, principals::bind_missions, dataset_budget::dataset_budget,
        dataset_budget::set_dataset_budget, audit::audit_log, openapi_json,
        dimensions::list_indicators, releases::create_release, releases::preview_release, releases::list_releases,
        releases::get_release, reference::get_reference, reference::put_reference,
        dashboard::dashboard, dashboard::upload_page, batches::template,
        synthetic::create_synthetic, synthetic::preview_synthetic, synthetic::list_synthetic,
        synthetic::get_synthetic, synthetic::get_synthetic_records
    ),
    components(schemas(ErrorBody, ErrorDetail, SpecError, ctstats_query::sql::SqlError, Answer, answer::Cell, answer::Estimate)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The OpenAPI document; without uploads, `POST /v1/batches` is left out as it is not mounted.
pub fn openapi(uploads: bool) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if !uploads && let Some(item) = doc.paths.paths.get_mut("/v1/batches") {
        item.post = None;
    }
    doc
}

/// The OpenAPI document of this service.
#[utoipa::path(
    get, path = "/openapi.json", tag = "metadata",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi_json(State(state): State<AppState>) -> Response {
    Json(openapi(state.service().takes_uploads())).into_response()
}
