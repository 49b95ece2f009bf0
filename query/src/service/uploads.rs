//! Uploads: a batch file, already received by a front end into an anonymous in-memory file, is
//! handed to the [`Uploader`] the binary provides (it holds the pseudonymisation key; this crate
//! never does, nor depends on `ingest`), and its report recorded. An NGO sees only its own
//! organisation's batches and reports.

use std::fs::File;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::views::{BatchList, UploadResponse};
use super::{Service, require};
use crate::error::{Code, EngineError, Result};
use crate::ledger::{Principal, Role};

/// The parameters of an upload, from the query string.
#[derive(Debug, Clone, Default, Deserialize, Serialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// Reporting mission, ISO 3166-1 alpha-2 or alpha-3 (e.g. `KGZ`).
    #[param(pattern = "^[A-Za-z]{2,3}$")]
    #[schema(pattern = "^[A-Za-z]{2,3}$")]
    pub mission: String,
    /// `csv`, `xlsx`, `jsonl` or `parquet`; from the file name when absent.
    #[serde(default)]
    #[param(pattern = "^(csv|xlsx|jsonl|parquet)$")]
    #[schema(pattern = "^(csv|xlsx|jsonl|parquet)$")]
    pub format: Option<String>,
    /// Import profile: `canonical` (default), `htcds` or `ctdc`.
    #[serde(default)]
    #[param(pattern = "^(canonical|htcds|ctdc)$")]
    #[schema(pattern = "^(canonical|htcds|ctdc)$")]
    pub profile: Option<String>,
    /// Text encoding of CSV and JSON Lines (e.g. `windows-1251`); detected when absent.
    #[serde(default)]
    pub encoding: Option<String>,
    /// CSV delimiter, one character; sniffed when absent.
    #[serde(default)]
    #[param(min_length = 1, max_length = 1)]
    #[schema(min_length = 1, max_length = 1)]
    pub delimiter: Option<String>,
    /// Excel sheet name; the first sheet when absent.
    #[serde(default)]
    pub sheet: Option<String>,
    /// Commit the valid rows even when some are invalid.
    #[serde(default)]
    pub accept_valid: bool,
    /// The file's name, for the format when `format` is absent (multipart uploads carry it).
    #[serde(default)]
    pub filename: Option<String>,
}

/// One upload handed to the [`Uploader`].
#[derive(Debug, Clone)]
pub struct UploadRequest {
    /// The caller's organisation: an NGO uploads only for itself.
    pub organisation: String,
    pub params: UploadParams,
}

/// What an upload came to.
#[derive(Debug, Clone)]
pub struct UploadOutcome {
    /// `committed`, `rejected` or `duplicate`.
    pub status: String,
    /// The ingest report as JSON.
    pub report: Value,
}

/// Why an upload could not be run.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The caller's: a parameter is wrong (unknown format, profile, mission, ...).
    #[error("{message}")]
    Invalid { code: Code, message: String },
    /// Ours.
    #[error("{0}")]
    Internal(String),
}

/// Runs the ingest pipeline on an uploaded file. The binary provides it (with the key), so the
/// query crate never depends on ingest nor holds the key.
pub trait Uploader: Send + Sync + 'static {
    /// Ingest the file at `path` (readable until this returns). Runs on a blocking thread.
    fn upload(&self, path: &Path, request: &UploadRequest) -> Result<UploadOutcome, UploadError>;
    /// What an NGO fills in: the template's CSV header, or the field guide as Markdown.
    fn template(&self, form: TemplateForm) -> String;
}

/// The forms of the upload template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateForm {
    /// One CSV header line of the canonical profile's columns.
    Csv,
    /// The field guide: every column, its type, values and meaning.
    Markdown,
}

/// How an upload ended, for the front end's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    Committed,
    /// The same file was committed before: nothing written.
    Duplicate,
    /// Rejected: nothing written; the report lists each row, column and rule.
    Rejected,
}

/// A received upload: the anonymous file holding it and a path that opens it.
#[derive(Debug)]
pub struct Received {
    pub file: File,
    pub path: std::path::PathBuf,
    pub bytes: u64,
}

impl Service {
    /// The organisation an NGO principal uploads for; `forbidden` for any other role.
    pub fn organisation(&self, principal: &Principal) -> Result<String> {
        require(principal, &[Role::Ngo])?;
        principal.organisation.clone().ok_or_else(|| {
            EngineError::new(
                Code::Forbidden,
                "this ngo principal has no organisation; ask an admin to recreate it",
            )
        })
    }

    /// Whether the `ngo` principal `principal` (checked by [`organisation`](Self::organisation)
    /// first) may upload for `mission`: only if bound to it (`mission_not_bound` otherwise,
    /// before any of the upload is read).
    pub fn may_upload_to(&self, principal: &Principal, mission: &str) -> Result<()> {
        let asked = mission.trim().to_ascii_uppercase();
        if principal.missions.is_empty() {
            return Err(EngineError::new(
                Code::MissionNotBound,
                format!(
                    "principal {} is bound to no mission (it was made before uploads were \
                     bound to missions); ask an admin to bind it: ctstats principal bind {} \
                     --missions ...",
                    principal.id, principal.id
                ),
            ));
        }
        if !principal.missions.contains(&asked) {
            return Err(EngineError::new(
                Code::MissionNotBound,
                format!(
                    "principal {} uploads for {} only, not for mission {asked:?}",
                    principal.id,
                    principal.missions.join(", ")
                ),
            )
            .with_details(serde_json::json!({ "missions": principal.missions })));
        }
        Ok(())
    }

    /// Ingest a received upload for `principal`'s organisation and record its report.
    pub async fn upload(
        &self,
        principal: &Principal,
        received: Received,
        params: UploadParams,
    ) -> Result<(Uploaded, UploadResponse)> {
        let org = self.organisation(principal)?;
        self.may_upload_to(principal, &params.mission)?;
        let Some(uploader) = self.inner.uploader.clone() else {
            return Err(EngineError::new(
                Code::NotFound,
                "this server takes no uploads",
            ));
        };
        let detail = format!(
            "mission={} format={} profile={} accept_valid={} bytes={}",
            params.mission,
            params.format.as_deref().unwrap_or("-"),
            params.profile.as_deref().unwrap_or("canonical"),
            params.accept_valid,
            received.bytes,
        );
        let request = UploadRequest {
            organisation: org.clone(),
            params,
        };
        let outcome = tokio::task::spawn_blocking(move || {
            let outcome = uploader.upload(&received.path, &request);
            drop(received.file);
            outcome
        })
        .await
        .map_err(EngineError::internal)?;
        let outcome = match outcome {
            Ok(o) => o,
            Err(UploadError::Invalid { code, message }) => {
                self.audit(principal, "upload", detail, None, "invalid")
                    .await?;
                return Err(EngineError::new(code, message));
            }
            Err(UploadError::Internal(cause)) => {
                self.audit(principal, "upload", detail, None, "failed")
                    .await?;
                return Err(EngineError::internal(cause));
            }
        };
        let (pid, o, status, report) = (
            principal.id.clone(),
            org,
            outcome.status.clone(),
            outcome.report.clone(),
        );
        let upload_id = self
            .db(move |l| l.record_upload(&pid, &o, &status, &report))
            .await?;
        let (uploaded, audit_outcome) = match outcome.status.as_str() {
            "committed" => (Uploaded::Committed, "committed"),
            "duplicate" => (Uploaded::Duplicate, "duplicate"),
            _ => (Uploaded::Rejected, "rejected"),
        };
        self.audit(principal, "upload", detail, None, audit_outcome)
            .await?;
        if uploaded == Uploaded::Committed {
            // Prepare the new generation's snapshot now rather than in the next query.
            let data = self.data().clone();
            tokio::spawn(async move {
                if let Err(e) = data.prepare().await {
                    tracing::warn!(error = %e, "the snapshot of the new generation was not loaded");
                }
            });
        }
        Ok((
            uploaded,
            UploadResponse {
                upload_id,
                status: outcome.status,
                report: outcome.report,
            },
        ))
    }

    /// The caller's organisation's committed batches and upload reports (role `ngo`).
    pub async fn batches(&self, principal: &Principal) -> Result<BatchList> {
        let org = self.organisation(principal)?;
        let data = self.config().data.clone();
        let o = org.clone();
        let batches = tokio::task::spawn_blocking(move || {
            ctstats_schemas::manifest::Manifest::read(&data).map(|m| {
                m.batches
                    .into_iter()
                    .filter(|b| b.organisation == o)
                    .map(|b| serde_json::to_value(b).unwrap_or(Value::Null))
                    .collect::<Vec<_>>()
            })
        })
        .await
        .map_err(EngineError::internal)?
        .map_err(EngineError::internal)?;
        let o = org.clone();
        let uploads = self.db(move |l| l.uploads(&o)).await?;
        Ok(BatchList {
            organisation: org,
            missions: principal.missions.clone(),
            takes_uploads: self.takes_uploads(),
            max_upload_bytes: self.config().max_upload_bytes,
            batches,
            uploads,
        })
    }
}
