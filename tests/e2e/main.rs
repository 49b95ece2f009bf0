//! End-to-end tests of ctstats, in one binary (see STYLE.md): golden ingest cases, the atomic
//! commit under crashes, identifier leaks, corrections and withdrawals, the command line.

mod common;
mod golden;
mod ingest;
