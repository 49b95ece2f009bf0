//! CSV reader. The file is read as a text stream (see [`super::text`]) into `csv::Reader`; the
//! delimiter is sniffed from the first 64 KiB when the options do not fix it.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use csv::ByteRecord;
use encoding_rs::Encoding;

use super::checks::{check_header, check_width, column_label, text_cell};
use super::text::{TextReader, io_failure, open_text};
use super::{Limits, Progress, ReadError, ReadOptions, RowSource, SourceRow};
use crate::problem::Rule;

/// Delimiters tried when sniffing, in order of preference on ties.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

pub(super) fn open(
    path: &Path,
    options: &ReadOptions,
    progress: Progress,
) -> Result<Box<dyn RowSource>, ReadError> {
    let input = open_text(path, options, progress, true)?;
    let delimiter = options
        .delimiter
        .unwrap_or_else(|| sniff_delimiter(&input.sample));
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(false)
        .from_reader(input.reader);
    let mut record = ByteRecord::new();
    let header = read_header(&mut reader, &mut record, &options.limits)?;
    Ok(Box::new(CsvSource {
        reader,
        shape: Arc::new(Shape {
            header,
            limits: options.limits,
        }),
        sizes: (record.as_slice().len(), record.len()),
        encoding: input.encoding,
        done: false,
    }))
}

/// What making a row's cells needs of the file: its header and limits.
#[derive(Debug)]
struct Shape {
    header: Vec<String>,
    limits: Limits,
}

/// Rows of a CSV file.
#[derive(Debug)]
struct CsvSource {
    reader: csv::Reader<TextReader>,
    shape: Arc<Shape>,
    /// Bytes and fields of the last record read: the next one is read into a record this size.
    sizes: (usize, usize),
    encoding: &'static Encoding,
    done: bool,
}

/// A parsed CSV record whose cells are not made yet (see [`super::PendingRow`]).
#[derive(Debug)]
pub struct PendingCsv {
    number: u64,
    record: ByteRecord,
    shape: Arc<Shape>,
}

impl PendingCsv {
    /// The row; `Ok(None)` when all its cells are blank.
    pub(super) fn finish(self) -> Result<Option<SourceRow>, ReadError> {
        make_row(&self.shape, self.number, &self.record).transpose()
    }
}

impl RowSource for CsvSource {
    fn header(&self) -> &[String] {
        &self.shape.header
    }

    fn next_row(&mut self) -> Option<Result<SourceRow, ReadError>> {
        while let Some(next) = self.next_pending() {
            match next.and_then(super::PendingRow::finish) {
                Ok(Some(row)) => return Some(Ok(row)),
                Ok(None) => {} // all blank, like a blank line
                Err(e) => return Some(Err(e)),
            }
        }
        None
    }

    fn next_pending(&mut self) -> Option<Result<super::PendingRow, ReadError>> {
        if self.done {
            return None;
        }
        // Where the record about to be read starts (or a blank line before it).
        let start_line = self.reader.position().line();
        let mut record = ByteRecord::with_capacity(self.sizes.0, self.sizes.1);
        match self.reader.read_byte_record(&mut record) {
            Ok(false) => {
                self.done = true;
                None
            }
            Ok(true) => {
                self.reader.get_mut().start_record();
                self.sizes = (record.as_slice().len(), record.len());
                let pending = PendingCsv {
                    number: self.number(&record),
                    record,
                    shape: self.shape.clone(),
                };
                Some(Ok(super::PendingRow::Csv(pending)))
            }
            Err(err) => {
                self.done = true;
                Some(Err(csv_failure(err, start_line)))
            }
        }
    }

    fn encoding(&self) -> Option<&'static str> {
        Some(self.encoding.name())
    }
}

impl CsvSource {
    /// The line `record` (just read) starts on, counted back from where it ended: its start
    /// position would point before any blank lines the parser skipped. Line ends are all `\n`
    /// here (see `LineGuard::fold_line_ends`); the terminator is consumed unless the file ended.
    fn number(&self, record: &ByteRecord) -> u64 {
        let end = self.reader.position().line();
        let last = if self.reader.is_done() { end } else { end - 1 };
        let inner = record.as_slice().iter().filter(|&&b| b == b'\n').count() as u64;
        last.saturating_sub(inner).max(1)
    }
}

/// Record `number` as a row; `None` when all its cells are blank.
fn make_row(
    shape: &Shape,
    number: u64,
    record: &ByteRecord,
) -> Option<Result<SourceRow, ReadError>> {
    let cells: Vec<Cow<'_, str>> = record.iter().map(String::from_utf8_lossy).collect();
    if cells.iter().all(|cell| cell.trim().is_empty()) {
        return None;
    }
    Some(row(shape, number, &cells))
}

fn row(shape: &Shape, number: u64, cells: &[Cow<'_, str>]) -> Result<SourceRow, ReadError> {
    let header = &shape.header;
    if cells.len() > header.len() {
        return Err(ReadError::in_row(
            number,
            None,
            Rule::FieldCount,
            format!(
                "the row has {} fields but the header has {} columns; check the delimiter and quote \
                 cells that contain it",
                cells.len(),
                header.len()
            ),
        ));
    }
    let mut values = cells
        .iter()
        .enumerate()
        .map(|(index, cell)| text_cell(cell, number, &shape.limits, || column_label(header, index)))
        .collect::<Result<Vec<_>, _>>()?;
    values.resize(header.len(), None);
    Ok(SourceRow { number, values })
}

/// Reads the first record as the header: names trimmed, BOM stripped, checked.
fn read_header(
    reader: &mut csv::Reader<TextReader>,
    record: &mut ByteRecord,
    limits: &Limits,
) -> Result<Vec<String>, ReadError> {
    match reader.read_byte_record(record) {
        Ok(true) => {}
        Ok(false) => {
            return Err(ReadError::fatal(
                Rule::EmptyFile,
                "the file has no header and no rows",
            ));
        }
        Err(err) => return Err(csv_failure(err, 1)),
    }
    reader.get_mut().start_record();
    check_width(record.len(), limits)?;
    let header: Vec<String> = record
        .iter()
        .map(|name| {
            String::from_utf8_lossy(name)
                .trim_start_matches('\u{feff}')
                .trim()
                .to_owned()
        })
        .collect();
    check_header(&header, limits)?;
    Ok(header)
}

/// Converts a `csv` error; `next_line` is the line the unfinished record started on.
fn csv_failure(err: csv::Error, next_line: u64) -> ReadError {
    match err.into_kind() {
        csv::ErrorKind::Io(err) => io_failure(&err, next_line),
        _ => ReadError::fatal(Rule::ReadError, "the CSV structure could not be parsed"),
    }
}

/// The most frequent of `,` `;` tab `|` outside quotes on the first line of `sample`.
pub(super) fn sniff_delimiter(sample: &str) -> u8 {
    let mut counts = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    for byte in sample.bytes() {
        match byte {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                if let Some(slot) = DELIMITERS.iter().position(|&d| d == byte) {
                    counts[slot] += 1;
                }
            }
            _ => {}
        }
    }
    let best = (0..DELIMITERS.len()).fold(0, |best, slot| {
        if counts[slot] > counts[best] {
            slot
        } else {
            best
        }
    });
    DELIMITERS[best]
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read, Write};

    use encoding_rs::UTF_8;

    use super::super::text::{LineGuard, detect_encoding};
    use super::super::{Format, Limits, ReadOptions, RowSource, open};
    use super::*;

    fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new()
            .suffix(".csv")
            .tempfile()
            .expect("temp file");
        file.write_all(bytes).expect("write temp file");
        file
    }

    fn read(
        bytes: &[u8],
        options: &ReadOptions,
    ) -> (Box<dyn RowSource>, Vec<Result<SourceRow, ReadError>>) {
        let file = file_with(bytes);
        let mut source = open(file.path(), options, Progress::default()).expect("open");
        let rows = std::iter::from_fn(|| source.next_row()).collect();
        (source, rows)
    }

    fn csv_options() -> ReadOptions {
        ReadOptions::new(Format::Csv)
    }

    fn some(values: &[&str]) -> Vec<Option<String>> {
        values
            .iter()
            .map(|v| (!v.is_empty()).then(|| (*v).to_owned()))
            .collect()
    }

    #[test]
    fn utf8_bom_comma() {
        let (source, rows) = read(
            "\u{feff}Name , Age\nAnna, 31 \n\n, \nБорис,\n".as_bytes(),
            &csv_options(),
        );
        assert_eq!(source.header(), ["Name", "Age"]);
        assert_eq!(source.encoding(), Some("UTF-8"));
        let rows: Vec<_> = rows.into_iter().map(|r| r.expect("row")).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            SourceRow {
                number: 2,
                values: some(&["Anna", "31"])
            }
        );
        assert_eq!(
            rows[1],
            SourceRow {
                number: 5,
                values: some(&["Борис", ""])
            }
        );
    }

    #[test]
    fn rows_are_numbered_by_line_whatever_the_line_ends() {
        // The same file with LF, CRLF (Excel on Windows) and CR (Excel for Mac) line ends, with a
        // blank line and a quoted cell spanning two lines.
        for end in ["\n", "\r\n", "\r"] {
            let text = ["id,note", "1,a", "", "2,\"x", "y\"", "3,b", ""].join(end);
            let (_, rows) = read(text.as_bytes(), &csv_options());
            let numbers: Vec<u64> = rows
                .iter()
                .map(|r| r.as_ref().expect("row").number)
                .collect();
            assert_eq!(numbers, [2, 4, 6], "line ends {end:?}");
            let note = rows[1].as_ref().expect("row").values[1].clone();
            assert_eq!(note.as_deref(), Some("x\ny"), "line ends {end:?}");
        }
    }

    #[test]
    fn crlf_split_across_reads_is_one_line_end() {
        /// Hands out one byte per read, so every CRLF is split across two reads.
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((&first, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = first;
                self.0 = rest;
                Ok(1)
            }
        }
        let mut guard = LineGuard::new(OneByte(b"a\r\nb\r\rc\n"), 16);
        let mut out = Vec::new();
        guard.read_to_end(&mut out).expect("read");
        assert_eq!(out, b"a\nb\n\nc\n");
    }

    #[test]
    fn semicolon_sniffed_and_short_rows_padded() {
        let (source, rows) = read(b"a;b;\"c,d\"\n1;2;3\n4\n", &csv_options());
        assert_eq!(source.header(), ["a", "b", "c,d"]);
        let rows: Vec<_> = rows.into_iter().map(|r| r.expect("row")).collect();
        assert_eq!(rows[0].values, some(&["1", "2", "3"]));
        assert_eq!(rows[1].values, some(&["4", "", ""]));
    }

    #[test]
    fn windows_1251_detected() {
        let (bytes, _, _) = encoding_rs::WINDOWS_1251.encode("Фамилия;Имя\nАсанова;Айгуль\n");
        let (source, rows) = read(&bytes, &csv_options());
        assert_eq!(source.encoding(), Some("windows-1251"));
        assert_eq!(source.header(), ["Фамилия", "Имя"]);
        let row = rows.into_iter().next().expect("one row").expect("row");
        assert_eq!(
            row,
            SourceRow {
                number: 2,
                values: some(&["Асанова", "Айгуль"])
            }
        );
    }

    #[test]
    fn explicit_encoding_wins() {
        let (bytes, _, _) = encoding_rs::WINDOWS_1251.encode("Имя\nАйгуль\n");
        let mut options = csv_options();
        options.encoding = Some(encoding_rs::KOI8_R);
        let (source, _) = read(&bytes, &options);
        assert_eq!(source.encoding(), Some("KOI8-R"));
    }

    #[test]
    fn utf16_bom() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "id,имя\n1,Айгуль\n".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        let (source, rows) = read(&bytes, &csv_options());
        assert_eq!(source.encoding(), Some("UTF-16LE"));
        assert_eq!(source.header(), ["id", "имя"]);
        assert_eq!(
            rows[0].as_ref().expect("row").values,
            some(&["1", "Айгуль"])
        );
    }

    #[test]
    fn too_many_fields_is_a_row_error() {
        let (_, rows) = read(b"a,b\n1,2,3\n4,5\n", &csv_options());
        let err = rows[0].as_ref().expect_err("field count");
        assert_eq!(
            (err.problem.rule.name(), err.problem.row, err.fatal),
            ("field_count", Some(2), false)
        );
        assert_eq!(rows[1].as_ref().expect("row").values, some(&["4", "5"]));
    }

    #[test]
    fn large_cell_is_a_row_error_without_the_value() {
        let mut options = csv_options();
        options.limits.max_cell_bytes = 4;
        let (_, rows) = read(b"name,age\nsecret,1\n", &options);
        let err = rows[0].as_ref().expect_err("too large");
        assert_eq!(
            (err.problem.rule.name(), err.problem.column.as_deref()),
            ("cell_too_large", Some("name"))
        );
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn quoted_newlines_keep_start_line_numbers() {
        let (_, rows) = read(b"a,b\n\"x\ny\",1\n2,3\n", &csv_options());
        let rows: Vec<_> = rows.into_iter().map(|r| r.expect("row")).collect();
        assert_eq!(
            rows[0],
            SourceRow {
                number: 2,
                values: some(&["x\ny", "1"])
            }
        );
        assert_eq!(rows[1].number, 4);
    }

    #[test]
    fn long_line_is_fatal() {
        let mut options = csv_options();
        options.limits = Limits {
            max_line_bytes: 64,
            ..Limits::default()
        };
        let mut bytes = b"a,b\n1,2\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', 100_000));
        bytes.extend_from_slice(b"\n3,4\n");
        let (_, rows) = read(&bytes, &options);
        assert_eq!(rows[0].as_ref().expect("row").values, some(&["1", "2"]));
        let err = rows[1].as_ref().expect_err("line too long");
        assert_eq!(
            (err.problem.rule.name(), err.fatal, err.problem.row),
            ("line_too_long", true, Some(3))
        );
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn unclosed_quote_is_fatal() {
        let mut options = csv_options();
        options.limits = Limits {
            max_line_bytes: 1000,
            ..Limits::default()
        };
        let mut bytes = b"a,b\n1,\"open\n".to_vec();
        bytes.extend("short line\n".repeat(1000).bytes());
        let (_, rows) = read(&bytes, &options);
        let err = rows[0].as_ref().expect_err("record too long");
        assert_eq!(
            (err.problem.rule.name(), err.fatal, err.problem.row),
            ("line_too_long", true, Some(2))
        );
    }

    #[test]
    fn header_errors() {
        let file = file_with(b"a,b,a\n1,2,3\n");
        let err = open(file.path(), &csv_options(), Progress::default())
            .err()
            .expect("duplicate");
        assert_eq!(
            (err.problem.rule.name(), err.problem.column.as_deref()),
            ("duplicate_column", Some("a"))
        );

        let mut options = csv_options();
        options.limits.max_columns = 2;
        let file = file_with(b"a,b,c\n");
        let err = open(file.path(), &options, Progress::default())
            .err()
            .expect("too many");
        assert_eq!(err.problem.rule.name(), "too_many_columns");

        let file = file_with(b"\xEF\xBB\xBF");
        let err = open(file.path(), &csv_options(), Progress::default())
            .err()
            .expect("empty");
        assert_eq!((err.problem.rule.name(), err.fatal), ("empty_file", true));
    }

    #[test]
    fn progress_counts_the_file() {
        let bytes = b"a\tb\n1\t2\n";
        let file = file_with(bytes);
        let progress = Progress::default();
        let mut source = open(file.path(), &csv_options(), progress.clone()).expect("open");
        assert_eq!(source.header(), ["a", "b"]);
        while source.next_row().is_some() {}
        assert_eq!(progress.bytes(), bytes.len() as u64);
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff_delimiter("a|b|c\n1,2,3,4,5"), b'|');
        assert_eq!(sniff_delimiter("\"a;b;c\",d\n"), b',');
        assert_eq!(sniff_delimiter("single"), b',');
        // A cut multi-byte character at the end of a partial sample is still UTF-8.
        assert_eq!(detect_encoding(&"Айгуль".as_bytes()[..5], false), UTF_8);
        assert_ne!(detect_encoding(&"Айгуль".as_bytes()[..5], true), UTF_8);
        let (polish, _, _) =
            encoding_rs::WINDOWS_1250.encode("Nazwisko;Imię\nKowalska;Łucja\nŻółć;Gęś\n");
        assert_eq!(detect_encoding(&polish, true), encoding_rs::WINDOWS_1250);
    }
}
