//! `GET /dashboard` and `GET /upload`: self-contained static pages. The dashboard reads only
//! `/v1/releases`; the upload page sends an NGO's file to `POST /v1/batches` and reads
//! `GET /v1/batches`, `GET /v1/dimensions` and `GET /v1/batches/template`.

use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

/// The dashboard page: one self-contained file, compiled in.
const DASHBOARD: &str = include_str!("../assets/dashboard.html");
/// The upload page, likewise.
const UPLOAD: &str = include_str!("../assets/upload.html");

/// The dashboard: charts and tables of releases, with their intervals (the page asks for a
/// token and reads only `/v1/releases`).
#[utoipa::path(
    get, path = "/dashboard", tag = "metadata",
    responses((status = 200, description = "The dashboard page", content_type = "text/html", body = String))
)]
pub(crate) async fn dashboard() -> Response {
    html(DASHBOARD)
}

fn html(page: &'static str) -> Response {
    let mut r = page.into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// The NGO upload page: pick mission, profile and options, drop a file, read the report by row,
/// column and rule (the page asks for a token; the API checks it on every call).
#[utoipa::path(
    get, path = "/upload", tag = "metadata",
    responses((status = 200, description = "The upload page", content_type = "text/html", body = String))
)]
pub(crate) async fn upload_page() -> Response {
    html(UPLOAD)
}
