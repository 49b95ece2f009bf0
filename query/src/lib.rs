//! Query: differentially private aggregates over the committed dataset.
//!
//! - `spec`: the JSON query a caller posts, validated against public domains, with a canonical
//!   form and hash (the same query asked again is recognised);
//! - `data`: the dataset as queries read it: an in-memory snapshot per manifest generation,
//!   sorted by person, or the Parquet files when it does not fit the memory budget;
//! - `plan`: all row work in DataFusion (period, filters, per-person truncation, clamping,
//!   grouping over the full public domain) and each component's contribution bounds;
//! - `dp` (the `ctstats-dp` crate, re-exported): the only crate that depends on `opendp`;
//!   noise, intervals and costs. Its `Release` can be built nowhere else;
//! - `ledger`: principals, budgets (charged write-ahead in one SQLite transaction) and the audit
//!   log.
//!
//! - `answer`: prices a query's noisy parts before it runs (so the ledger is charged first),
//!   then turns the DP releases into cells with 95% intervals;
//! - `service`: the engine API ([`service::Service`]): price -> charge -> compute -> store ->
//!   hand back, for queries, previews, releases, uploads and administration; the HTTP crate,
//!   the command line and the demo all call it;
//! - `sql`: the analysts' SQL dialect (`SELECT WITH DIFFERENTIAL_PRIVACY ...`), parsed by
//!   DataFusion's `sqlparser` and compiled to a `spec::QuerySpec`: one engine for both;
//! - `error`: the engine's errors with their stable codes.
//!
//! Reads the dataset only through its manifest (`ctstats_schemas::manifest`) and never loads the
//! pseudonymisation key: it does not depend on `ingest`; uploads go through an `Uploader` the
//! binary provides.

pub mod answer;
pub mod data;
pub mod error;
#[cfg(test)]
mod privacy_audit;
/// The DP boundary, its own crate: the only one that depends on `opendp`.
pub use ctstats_dp as dp;
#[cfg(test)]
mod fuzz;
pub mod indicators;
pub mod ledger;
pub mod plan;
pub mod reference;
pub mod release;
pub mod service;
pub mod spec;
pub mod sql;
pub mod synthetic;
#[cfg(test)]
mod testdata;
