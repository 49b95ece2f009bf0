//! Ingest: NGO batch files to a pseudonymised, atomically committed Parquet dataset.
//!
//! ```text
//! file --read--> rows --profile/map--> canonical rows --validate--> report
//!                                           |
//!                     pseudonymise (keyed BLAKE3) + generalise (age band, months)
//!                                           |
//!                Parquet in .staging --fsync, rename--> data/ --manifest rename--> committed
//! ```
//!
//! Architecture invariants:
//! - Raw identifiers exist only between parsing and `pseudonymise`, in `identity::RawIdentity`
//!   (no `Display`, redacted `Debug`). No column of the output can hold one.
//! - Errors, reports and logs name row, column and rule (`problem::Problem`), never a cell's
//!   value.
//! - A batch is visible whole or not at all: the manifest rename is the commit
//!   (`ctstats_schemas::manifest`).
//! - This crate is the only one that loads the deployment secret; `query` never does.

pub mod dataset;
pub mod error;
pub mod failpoint;
pub mod identity;
pub mod keys;
pub mod map;
pub mod pipeline;
pub mod problem;
pub mod profile;
pub mod pseudonymise;
pub mod read;
pub mod report;
pub mod template;
pub mod writer;

pub use dataset::Dataset;
pub use error::{Error, Result};
pub use keys::Secret;
pub use pipeline::{IngestRequest, WithdrawReport, ingest, withdraw};
pub use profile::Profile;
pub use report::{IngestReport, Status};
