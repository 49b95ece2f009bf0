//! `/v1/batches`: an NGO's uploads and its own batches and reports (role `ngo`).
//!
//! Uploads never touch the disk before pseudonymisation: the body is streamed into an anonymous
//! in-memory file (Linux `memfd`), limited in size (413 beyond; at most [`UPLOADS_AT_ONCE`] at a
//! time), and handed to the engine, whose uploader the binary injects.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use ctstats_query::error::Code;
use ctstats_query::service::uploads::{Received, TemplateForm, UploadParams, Uploaded};
use ctstats_query::service::views::{BatchList, UploadResponse};
use futures_util::StreamExt;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{Caller, Ngo};
use crate::docs::{Failure, Unauthenticated};
use crate::error::{ApiError, ErrorBody, query_string_error};

/// How many uploads are received and ingested at once; later ones wait (their bodies unread) in
/// arrival order. With each upload held in memory up to `max_upload_bytes`, this bounds what
/// uploads can take: twice the limit, plus the readers' own caps.
pub const UPLOADS_AT_ONCE: usize = 2;

/// A multipart upload: the file in the `file` field.
#[derive(Debug, ToSchema)]
pub struct UploadForm {
    /// The file.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// A file as the raw request body.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct RawFile(pub Vec<u8>);

/// Upload a batch file for the caller's organisation (role `ngo`).
#[utoipa::path(
    post, path = "/v1/batches", tag = "batches",
    params(UploadParams),
    request_body(description = "The file, as the raw body or as the `file` field of a multipart/form-data body",
                 content((RawFile = "application/octet-stream"), (UploadForm = "multipart/form-data"))),
    responses(
        (status = 201, description = "Committed", body = UploadResponse),
        (status = 200, description = "The same file was committed before: nothing written", body = UploadResponse),
        (status = 422, description = "Rejected: nothing written; the report lists each row, column and rule", body = UploadResponse),
        (status = 400, description = "Bad parameters or an empty body", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Wrong role, or a mission the principal is not bound to (`mission_not_bound`)", body = ErrorBody),
        (status = 413, description = "Larger than the configured limit", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn upload(
    State(state): State<AppState>,
    caller: Caller<Ngo>,
    params: Result<Query<UploadParams>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let service = state.service();
    service.organisation(&caller.principal)?;
    let Query(mut params) = params.map_err(query_string_error)?;
    // Only where the principal belongs: refused before a byte of the body is read.
    service.may_upload_to(&caller.principal, &params.mission)?;
    if !service.takes_uploads() {
        return Err(ApiError::new(
            Code::NotFound,
            "this server takes no uploads",
        ));
    }
    let limit = service.config().max_upload_bytes;
    let too_large = || {
        ApiError::too_large(format!(
            "uploads are limited to {limit} bytes on this server"
        ))
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let _turn = state.uploads.acquire().await.map_err(ApiError::internal)?;
    let multipart = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));

    let (mut file, path) = anonymous_file().map_err(ApiError::internal)?;
    let mut written: u64 = 0;
    let mut write = |chunk: &[u8]| -> Result<(), ApiError> {
        written += chunk.len() as u64;
        if written > limit {
            return Err(too_large());
        }
        file.write_all(chunk).map_err(ApiError::internal)
    };
    if multipart {
        let mut form = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::invalid_body(e.body_text()))?;
        let mut found = false;
        while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
            if field.file_name().is_none() && field.name() != Some("file") {
                continue;
            }
            if params.filename.is_none() {
                params.filename = field.file_name().map(str::to_string);
            }
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                write(&chunk)?;
            }
            found = true;
            break;
        }
        if !found {
            return Err(ApiError::invalid_body(
                "the multipart body has no file field (name it `file`)",
            ));
        }
    } else {
        let mut stream = request.into_body().into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                if e.to_string().contains("length limit") {
                    too_large()
                } else {
                    ApiError::invalid_body(e.to_string())
                }
            })?;
            write(&chunk)?;
        }
    }
    if written == 0 {
        return Err(ApiError::new(
            Code::EmptyBody,
            "the upload is empty; send the file as the body",
        ));
    }
    file.flush().map_err(ApiError::internal)?;
    let received = Received {
        file,
        path,
        bytes: written,
    };
    let (uploaded, response) = service.upload(&caller.principal, received, params).await?;
    let status = match uploaded {
        Uploaded::Committed => StatusCode::CREATED,
        Uploaded::Duplicate => StatusCode::OK,
        Uploaded::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Ok((status, Json(response)).into_response())
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("the upload is larger than this server accepts")
    } else {
        ApiError::invalid_body(e.body_text())
    }
}

/// An anonymous file in memory and a path that opens it, so an upload holding raw identifiers
/// is never written to a disk.
#[cfg(target_os = "linux")]
fn anonymous_file() -> std::io::Result<(File, PathBuf)> {
    use std::os::fd::AsRawFd;
    let fd = rustix::fs::memfd_create("ctstats-upload", rustix::fs::MemfdFlags::CLOEXEC)?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    Ok((File::from(fd), path))
}

#[cfg(not(target_os = "linux"))]
fn anonymous_file() -> std::io::Result<(File, PathBuf)> {
    Err(std::io::Error::other(
        "uploads need Linux memfd_create: raw identifiers are never written to disk",
    ))
}

/// The caller's organisation's committed batches and upload reports (role `ngo`).
#[utoipa::path(
    get, path = "/v1/batches", tag = "batches",
    responses(
        (status = 200, description = "Own batches and upload reports", body = BatchList),
        Unauthenticated,
        (status = 403, description = "Wrong role", body = ErrorBody),
        Failure,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_batches(
    State(state): State<AppState>,
    caller: Caller<Ngo>,
) -> Result<Json<BatchList>, ApiError> {
    Ok(Json(state.service().batches(&caller.principal).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TemplateParams {
    /// `csv` (default: the header line to fill in) or `markdown` (the field guide).
    #[serde(default)]
    #[param(pattern = "^(csv|markdown)$")]
    pub format: Option<String>,
}

/// The upload template: the canonical profile's columns as a CSV header, or the field guide
/// (every column, its type, values and meaning) as Markdown. Public: it holds no records.
#[utoipa::path(
    get, path = "/v1/batches/template", tag = "batches",
    params(TemplateParams),
    responses(
        (status = 200, description = "The template", content(
            (String = "text/csv"), (String = "text/markdown"))),
        (status = 400, description = "An unknown format", body = ErrorBody),
        (status = 404, description = "This server takes no uploads", body = ErrorBody),
        Failure,
    )
)]
pub(crate) async fn template(
    State(state): State<AppState>,
    params: Result<Query<TemplateParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(query_string_error)?;
    let (form, content_type, name) = match params.format.as_deref() {
        None | Some("csv") => (
            TemplateForm::Csv,
            "text/csv; charset=utf-8",
            "ctstats-template.csv",
        ),
        Some("markdown") => (
            TemplateForm::Markdown,
            "text/markdown; charset=utf-8",
            "ctstats-fields.md",
        ),
        Some(other) => {
            return Err(ApiError::new(
                Code::InvalidParameters,
                format!("format is csv or markdown, not {other:?}"),
            ));
        }
    };
    let body = state.service().upload_template(form)?;
    let mut r = body.into_response();
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
            .map_err(ApiError::internal)?,
    );
    Ok(r)
}
