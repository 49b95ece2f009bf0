//! Query: differentially private aggregates over the committed dataset.
//!
//! - `spec`: the JSON query a caller posts, validated against public domains, with a canonical
//!   form and hash (the same query asked again is recognised);
//! - `plan`: all row work in DataFusion (period, filters, per-person truncation, clamping,
//!   grouping over the full public domain) and each component's contribution bounds;
//! - `dp`: the only module that names `opendp`; noise, intervals and costs. Its `Release` can be
//!   built nowhere else, so every number leaving the service went through it;
//! - `ledger`: principals, budgets (charged write-ahead in one SQLite transaction) and the audit
//!   log.
//!
//! - `answer`: prices a query's noisy parts before it runs (so the ledger is charged first),
//!   then turns the DP releases into cells with 95% intervals;
//! - `server`: the axum service (queries, previews, budgets, uploads, principals, audit,
//!   OpenAPI).
//!
//! Reads the dataset only through its manifest (`ctstats_schemas::manifest`) and never loads the
//! pseudonymisation key: it does not depend on `ingest`; uploads go through an `Uploader` the
//! binary provides.

pub mod answer;
#[cfg(test)]
mod audit;
pub mod dp;
#[cfg(test)]
mod fuzz;
pub mod indicators;
pub mod ledger;
pub mod plan;
pub mod reference;
pub mod release;
pub mod server;
pub mod spec;
#[cfg(test)]
mod testdata;
