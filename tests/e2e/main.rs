//! End-to-end tests of ctstats, in one binary (see STYLE.md): the crate edges of the architecture, golden ingest cases, the atomic
//! commit under crashes, identifier leaks, hostile uploads and bodies, corrections and withdrawals, the command line, and
//! synthetic files from every format and profile checked against the generator's ground truth.

mod architecture;
mod common;
mod generate;
mod golden;
mod hostile;
mod ingest;
mod release;
mod serve;
mod sql;
mod synthetic;
