//! The dataset directory and its manifest: the contract between the writer (ingest) and the
//! readers (query, any Parquet tool).
//!
//! ```text
//! DATASET/
//!   manifest.json                            the committed state; replaced atomically
//!   data/mission=KGZ/year=2005/*.parquet     hive-style partitions (mission, registration year)
//!   .staging/                                files of a commit in progress; never read
//!   .lock                                    held by the one writer at a time
//! ```
//!
//! Architecture invariant: a Parquet file is part of the dataset if and only if the manifest lists
//! it. Writers put new files in place first and then replace the manifest (write, fsync, rename):
//! the rename is the commit. A reader that takes the manifest and reads the files it lists sees
//! whole batches or nothing. Files no manifest lists are leftovers of an interrupted commit and
//! are removed by the next writer.

use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::KeyEncoding;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const DATA_DIR: &str = "data";
pub const STAGING_DIR: &str = ".staging";
pub const LOCK_FILE: &str = ".lock";
/// Version of the manifest format itself, which new datasets are created with. Format 2 stores
/// the keys as 16 raw bytes; format 1 (hex text keys) is still read, and a format 1 dataset
/// keeps its format when it grows, so all files of one dataset share one schema.
pub const MANIFEST_FORMAT: u32 = 2;
/// The oldest manifest format still read.
pub const OLDEST_MANIFEST_FORMAT: u32 = 1;

/// The committed state of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Incremented by every commit (batch, withdrawal).
    pub generation: u64,
    /// Key id of the secret every batch was pseudonymised with; set by the first batch.
    pub key_id: Option<String>,
    pub batches: Vec<BatchEntry>,
    pub withdrawals: Vec<WithdrawalEntry>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            format: MANIFEST_FORMAT,
            generation: 0,
            key_id: None,
            batches: Vec::new(),
            withdrawals: Vec::new(),
        }
    }
}

/// One committed batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchEntry {
    pub batch_id: String,
    /// Position in commit order, from 1.
    pub seq: u64,
    pub organisation: String,
    pub reporting_mission: String,
    pub format: String,
    pub profile: String,
    /// Keyed BLAKE3 of the source file's bytes (not reversible without the secret).
    pub content_hash: String,
    pub rows_read: u64,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    /// Rows of earlier batches this batch replaced (same record key).
    pub rows_superseding: u64,
    pub schema_version: String,
    pub key_id: String,
    /// RFC 3339 UTC.
    pub committed_at: String,
    /// The batch's live files; rows later superseded or withdrawn are gone from them.
    pub files: Vec<FileEntry>,
}

/// One Parquet file, relative to the dataset root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub rows: u64,
}

/// A consent withdrawal: the record is removed from every file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalEntry {
    pub organisation: String,
    pub record_key: String,
    pub rows_removed: u64,
    pub at: String,
}

/// Problems reading a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid ctstats manifest: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Manifest {
    /// Read the manifest of the dataset at `root`; an empty manifest when there is none yet.
    pub fn read(root: &Path) -> Result<Manifest, ManifestError> {
        let path = root.join(MANIFEST_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(source) => return Err(ManifestError::Io { path, source }),
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| ManifestError::Invalid {
                path: path.clone(),
                message: e.to_string(),
            })?;
        if !(OLDEST_MANIFEST_FORMAT..=MANIFEST_FORMAT).contains(&manifest.format) {
            return Err(ManifestError::Invalid {
                path,
                message: format!(
                    "manifest format {} is not supported (this version reads \
                     {OLDEST_MANIFEST_FORMAT} to {MANIFEST_FORMAT})",
                    manifest.format
                ),
            });
        }
        Ok(manifest)
    }

    /// How this dataset's files store their keys.
    pub fn key_encoding(&self) -> KeyEncoding {
        if self.format == 1 {
            KeyEncoding::Hex
        } else {
            KeyEncoding::Binary
        }
    }

    /// The Arrow schema of every file of this dataset.
    pub fn schema(&self) -> SchemaRef {
        crate::arrow_schema_for(self.key_encoding())
    }

    /// Every live file, relative to the root.
    pub fn live_files(&self) -> impl Iterator<Item = &FileEntry> {
        self.batches.iter().flat_map(|b| b.files.iter())
    }

    /// Rows currently live in the dataset.
    pub fn live_rows(&self) -> u64 {
        self.live_files().map(|f| f.rows).sum()
    }

    pub fn batch(&self, batch_id: &str) -> Option<&BatchEntry> {
        self.batches.iter().find(|b| b.batch_id == batch_id)
    }
}

/// The hive-style partition directory of a mission and registration year, relative to the root.
pub fn partition_dir(mission: &str, year: i32) -> String {
    format!("{DATA_DIR}/mission={mission}/year={year}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_with_format(format: u32) -> Result<Manifest, ManifestError> {
        let dir =
            std::env::temp_dir().join(format!("ctstats-manifest-{}-{format}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = Manifest {
            format,
            ..Manifest::default()
        };
        std::fs::write(
            dir.join(MANIFEST_FILE),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        let read = Manifest::read(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        read
    }

    #[test]
    fn new_datasets_store_binary_keys_and_format_1_is_still_read_as_hex() {
        assert_eq!(Manifest::default().format, MANIFEST_FORMAT);
        assert_eq!(Manifest::default().key_encoding(), KeyEncoding::Binary);
        assert_eq!(
            read_with_format(2).unwrap().key_encoding(),
            KeyEncoding::Binary
        );
        let old = read_with_format(1).unwrap();
        assert_eq!(old.key_encoding(), KeyEncoding::Hex);
        assert_eq!(old.schema(), crate::arrow_schema_for(KeyEncoding::Hex));
        for unknown in [0, MANIFEST_FORMAT + 1] {
            let message = read_with_format(unknown).unwrap_err().to_string();
            assert!(message.contains("is not supported"), "{message}");
        }
    }
}
