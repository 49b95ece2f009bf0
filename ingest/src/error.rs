//! Errors that stop an ingest or a withdrawal as a whole. Problems with single rows are not
//! errors: they are `RowIssue`s in the report.

use std::path::{Path, PathBuf};

/// Why an operation on the dataset could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("Arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Manifest(#[from] ctstats_schemas::manifest::ManifestError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Profile(#[from] crate::profile::ProfileError),
    #[error(
        "this dataset was pseudonymised with key id {dataset}, but the key given has id {given}; \
         records would no longer link across batches. Use the deployment's key file"
    )]
    KeyMismatch { dataset: String, given: String },
    #[error("invalid {what}: {message}")]
    InvalidArgument { what: &'static str, message: String },
    #[error("no record with that case id for organisation {organisation}")]
    NoSuchRecord { organisation: String },
}

impl Error {
    /// A closure turning an `io::Error` into an `Error` naming `path`.
    pub fn io(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.as_ref().to_path_buf();
        move |source| Error::Io { path, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
