//! Readers for NGO batch files: CSV, Excel (.xlsx), JSON Lines and Parquet.
//!
//! Every reader turns a file into a header and a stream of rows of optional strings, numbered as
//! the NGO sees them (CSV: the line the record starts on, header = 1; Excel: the sheet row; JSON
//! Lines: the line; Parquet: the record, from 1). Rows are produced one at a time so memory stays
//! bounded whatever the file size; `Limits` caps what one cell, one line or the header may hold.
//!
//! Readers never interpret values: mapping to the canonical record is the profile's job. They also
//! never put a cell's value in an error: errors name row, column and rule only.

mod checks;
mod csv;
#[cfg(test)]
mod fuzz;
mod jsonl;
mod parquet;
mod text;
mod xlsx;

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::problem::{FileProblem, Problem, Rule};

/// The file formats ctstats reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Xlsx,
    Jsonl,
    Parquet,
}

impl Format {
    /// The format a file name's extension implies.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Format::from_name(&ext)
    }

    /// The format called `name` (`csv`, `tsv`, `txt`, `xlsx`, `jsonl`, `ndjson`, `parquet`).
    pub fn from_name(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "csv" | "tsv" | "txt" => Some(Format::Csv),
            "xlsx" | "xlsm" | "excel" => Some(Format::Xlsx),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "parquet" | "pq" => Some(Format::Parquet),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }
}

/// Caps that keep a hostile or broken file from taking unbounded memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest cell, in bytes after decoding.
    pub max_cell_bytes: usize,
    /// Largest line of a CSV or JSON Lines file, in bytes.
    pub max_line_bytes: usize,
    /// Most columns a header may have.
    pub max_columns: usize,
    /// Most bytes an .xlsx workbook may unpack to (all its zip entries together): a zip bomb
    /// stops here, and so does the shared-strings table calamine keeps in memory.
    pub max_unpacked_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_cell_bytes: 64 * 1024,
            max_line_bytes: 4 * 1024 * 1024,
            max_columns: 1024,
            max_unpacked_bytes: 256 * 1024 * 1024,
        }
    }
}

/// How to read a file.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub format: Format,
    /// Text encoding of CSV and JSON Lines files; detected when `None`.
    pub encoding: Option<&'static encoding_rs::Encoding>,
    /// CSV delimiter; sniffed from the header line when `None`.
    pub delimiter: Option<u8>,
    /// Excel sheet by name; the first sheet when `None`.
    pub sheet: Option<String>,
    pub limits: Limits,
}

impl ReadOptions {
    pub fn new(format: Format) -> Self {
        ReadOptions {
            format,
            encoding: None,
            delimiter: None,
            sheet: None,
            limits: Limits::default(),
        }
    }
}

/// A row as [`RowSource::next_pending`] hands it out.
#[derive(Debug)]
pub enum PendingRow {
    Ready(SourceRow),
    /// A parsed CSV record: its cells' text conversion and checks are still to do.
    Csv(csv::PendingCsv),
}

impl PendingRow {
    /// The row, with every check `next_row` would have made; `Ok(None)` for a row of blank
    /// cells, which `next_row` skips like a blank line. Its errors are row-level, never fatal.
    pub fn finish(self) -> Result<Option<SourceRow>, ReadError> {
        match self {
            PendingRow::Ready(row) => Ok(Some(row)),
            PendingRow::Csv(pending) => pending.finish(),
        }
    }
}

/// One row of a source file.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRow {
    /// The row number as the NGO sees it (see the module documentation).
    pub number: u64,
    /// Cell values aligned with the reader's header; `None` for an empty cell. A row may be
    /// shorter than the header (missing trailing cells are empty).
    pub values: Vec<Option<String>>,
}

/// A problem reading the file: a [`FileProblem`], and whether reading can go on past it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{problem}")]
pub struct ReadError {
    /// Where and what. The message never contains a cell's value.
    #[serde(flatten)]
    pub problem: FileProblem,
    /// Whether reading cannot go on past this error. Non-fatal errors reject one row.
    pub fatal: bool,
}

impl ReadError {
    pub fn fatal(rule: Rule, message: impl Into<String>) -> Self {
        ReadError {
            problem: FileProblem::file(rule, message),
            fatal: true,
        }
    }

    pub fn in_row(
        row: u64,
        column: Option<String>,
        rule: Rule,
        message: impl Into<String>,
    ) -> Self {
        ReadError {
            problem: Problem {
                row: Some(row),
                column,
                rule,
                message: message.into(),
            },
            fatal: false,
        }
    }
}

/// A stream of rows from one file.
pub trait RowSource: Send {
    /// Column names, trimmed. A JSON Lines reader appends keys as it meets them, so the header
    /// may grow between calls to `next_row`.
    fn header(&self) -> &[String];
    /// The next row, a row-level error (`fatal == false`: go on) or a fatal one (stop).
    fn next_row(&mut self) -> Option<Result<SourceRow, ReadError>>;
    /// [`RowSource::next_row`], with the making of the row's cells left to
    /// [`PendingRow::finish`], which the caller may run on another thread: the CSV reader only
    /// parses here. Rows of blank cells come out too (`finish` drops them).
    fn next_pending(&mut self) -> Option<Result<PendingRow, ReadError>> {
        self.next_row().map(|next| next.map(PendingRow::Ready))
    }
    /// The text encoding used (`UTF-8`, `windows-1251`, ...); `None` for binary formats.
    fn encoding(&self) -> Option<&'static str>;
}

/// Run `f`, turning a panic into a fatal error with `rule`. The parquet and calamine crates
/// assert on some damaged files instead of returning an error (found by the fuzz targets), and
/// a hostile file must not abort an ingest or a server thread. The panic hook still logs the
/// assertion, which names no value of the file.
pub(crate) fn guarded<T>(
    rule: Rule,
    readable: &str,
    f: impl FnOnce() -> T,
) -> Result<T, ReadError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| {
        ReadError::fatal(
            rule,
            format!("the file is not {readable}: its structure is damaged"),
        )
    })
}

/// Open `path` for reading. `progress` counts the source bytes consumed so far.
pub fn open(
    path: &Path,
    options: &ReadOptions,
    progress: Progress,
) -> Result<Box<dyn RowSource>, ReadError> {
    match options.format {
        Format::Csv => csv::open(path, options, progress),
        Format::Jsonl => jsonl::open(path, options, progress),
        Format::Xlsx => xlsx::open(path, options, progress),
        Format::Parquet => parquet::open(path, options, progress),
    }
}

/// A shared counter of source bytes read, for progress bars.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }
}

/// A reader that counts the bytes it hands out into a `Progress`.
#[derive(Debug)]
pub struct CountingReader<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> CountingReader<R> {
    pub fn new(inner: R, progress: Progress) -> Self {
        CountingReader { inner, progress }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}
