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
//! Reads the dataset only through its manifest (`ctstats_schemas::manifest`) and never loads the
//! pseudonymisation key: it does not depend on `ingest`. The HTTP service is not built yet.

pub mod dp;
pub mod ledger;
pub mod plan;
pub mod spec;
