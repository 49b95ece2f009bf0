//! The `ctstats` package's library: what the command line and the end-to-end tests share. The
//! service wiring lives here (not in `query`) because it joins the query service to the ingest
//! pipeline and the key, which `query` must never depend on.

pub mod options;
pub mod release;
pub mod serve;
pub mod synthesize;
