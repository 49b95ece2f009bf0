//! `GET /dashboard`: one self-contained static page that reads only `/v1/releases`.

use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

/// The dashboard page: one self-contained file, compiled in.
const DASHBOARD: &str = include_str!("../assets/dashboard.html");

/// The dashboard: charts and tables of releases, with their intervals (the page asks for a
/// token and reads only `/v1/releases`).
#[utoipa::path(
    get, path = "/dashboard", tag = "metadata",
    responses((status = 200, description = "The dashboard page", content_type = "text/html", body = String))
)]
pub(crate) async fn dashboard() -> Response {
    let mut r = DASHBOARD.into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}
