//! The HTTP front end: thin axum handlers over the engine ([`ctstats_query::service::Service`]).
//!
//! [`app`] builds the router from an [`AppState`] and binds nothing, so tests drive it
//! in-process. One file per endpoint group (`query`, `budget`, `dimensions`, `batches`,
//! `principals`, `audit`, `releases`, `reference`, `dashboard`, `openapi`); `auth` checks the
//! token and the role before anything else of a request is read; `error` holds the one
//! [`ApiError`] and the one JSON extractor. Every handler parses, calls one engine method and
//! serialises its outcome: charging, computing and storing are the engine's, never HTTP's.
//!
//! Architecture invariant: this crate does not depend on `ingest` nor `opendp`
//! (`tests/e2e/architecture.rs`); every number it sends that was computed from records is an
//! engine answer or release, charged before it was computed.

mod audit;
pub mod auth;
pub mod batches;
mod budget;
mod dashboard;
mod dataset_budget;
mod dimensions;
mod docs;
pub mod error;
mod openapi;
mod principals;
pub mod query;
mod reference;
mod releases;
mod sql;
mod synthetic;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use ctstats_query::error::Code;
use ctstats_query::ledger::Ledger;
use ctstats_query::service::{Service, ServiceConfig, Uploader};
use futures_util::FutureExt;

pub use batches::UPLOADS_AT_ONCE;
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use openapi::openapi;

/// The shared state of the handlers: the engine, and the permits to receive an upload.
#[derive(Clone, Debug)]
pub struct AppState {
    service: Service,
    /// Permits to receive and ingest an upload: [`UPLOADS_AT_ONCE`].
    uploads: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// The state of a service; without an uploader, `POST /v1/batches` is not mounted.
    pub fn new(config: ServiceConfig, ledger: Ledger, uploader: Option<Arc<dyn Uploader>>) -> Self {
        AppState::from_service(Service::new(config, ledger, uploader))
    }

    /// The HTTP front end of an engine.
    pub fn from_service(service: Service) -> Self {
        AppState {
            service,
            uploads: Arc::new(tokio::sync::Semaphore::new(UPLOADS_AT_ONCE)),
        }
    }

    pub fn service(&self) -> &Service {
        &self.service
    }

    pub fn config(&self) -> &ServiceConfig {
        self.service.config()
    }

    pub fn ledger(&self) -> &Ledger {
        self.service.ledger()
    }
}

async fn not_found() -> ApiError {
    ApiError::new(Code::NotFound, "no such endpoint; see /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        "this endpoint does not take this method; see /openapi.json",
    )
}

/// One log line per request: method, route, status and time. Never a body or a token.
async fn log_requests(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "-".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    // A panicking handler gets the generic 500 body, not a dropped connection. The panic hook has
    // already written the cause to the log.
    let response = match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(_) => {
            ApiError::internal(format!("a handler panicked on {method} {route}")).into_response()
        }
    };
    tracing::info!(
        %method,
        route,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    response
}

/// The router. Binds nothing: `axum::serve` it, or call it in-process in tests.
pub fn app(state: AppState) -> Router {
    let batches = if state.service().takes_uploads() {
        get(batches::list_batches)
            .post(batches::upload)
            .layer(DefaultBodyLimit::disable())
    } else {
        get(batches::list_batches)
    };
    Router::new()
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/v1/dimensions", get(dimensions::dimensions))
        .route("/v1/query", post(query::query))
        .route("/v1/preview", post(query::preview))
        .route("/v1/sql", post(sql::sql))
        .route("/v1/sql/preview", post(sql::sql_preview))
        .route("/v1/budget", get(budget::budget))
        .route("/v1/batches", batches)
        .route("/v1/batches/template", get(batches::template))
        .route(
            "/v1/principals",
            get(principals::list_principals).post(principals::add_principal),
        )
        .route("/v1/principals/{id}", delete(principals::revoke_principal))
        .route("/v1/principals/{id}/budget", put(principals::set_budget))
        .route(
            "/v1/principals/{id}/missions",
            put(principals::bind_missions),
        )
        .route(
            "/v1/dataset/budget",
            get(dataset_budget::dataset_budget).put(dataset_budget::set_dataset_budget),
        )
        .route("/v1/audit", get(audit::audit_log))
        .route("/v1/indicators", get(dimensions::list_indicators))
        .route(
            "/v1/releases",
            get(releases::list_releases).post(releases::create_release),
        )
        .route("/v1/releases/preview", post(releases::preview_release))
        .route("/v1/releases/{id}", get(releases::get_release))
        .route(
            "/v1/synthetic",
            get(synthetic::list_synthetic).post(synthetic::create_synthetic),
        )
        .route("/v1/synthetic/preview", post(synthetic::preview_synthetic))
        .route("/v1/synthetic/{id}", get(synthetic::get_synthetic))
        .route(
            "/v1/synthetic/{id}/records",
            get(synthetic::get_synthetic_records),
        )
        .route(
            "/v1/reference/{table}",
            get(reference::get_reference).put(reference::put_reference),
        )
        .route("/dashboard", get(dashboard::dashboard))
        .route("/upload", get(dashboard::upload_page))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(log_requests))
        .with_state(state)
}

/// Serve `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests;
