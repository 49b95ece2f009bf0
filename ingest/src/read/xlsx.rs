//! Excel (.xlsx / .xlsm) reader. The sheet is streamed: a thread reads it cell by cell with
//! calamine's cell reader and hands rows over a small channel, so memory does not grow with the
//! number of rows, and a sheet whose cells sit far apart (A1 and XFD1048576) is not expanded to a
//! dense grid. Before calamine sees the file, the zip is unpacked once to count its bytes, so a
//! zip bomb (or a shared-strings table calamine would hold in memory) beyond
//! [`Limits::max_unpacked_bytes`] is refused.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use calamine::{Data, ExcelDateTime, Reader, Xlsx, XlsxError};

use super::checks::{cannot_open, check_header, check_width, column_label, text_cell};
use super::{Limits, Progress, ReadError, ReadOptions, RowSource, SourceRow};
use crate::problem::Rule;

/// Rows in flight between the reading thread and the pipeline.
const ROWS_IN_FLIGHT: usize = 64;

/// Excel's widest sheet: a row with more cells than this is damaged.
const MAX_ROW_CELLS: usize = 16_384;

pub(super) fn open(
    path: &Path,
    options: &ReadOptions,
    progress: Progress,
) -> Result<Box<dyn RowSource>, ReadError> {
    let file = File::open(path).map_err(|err| cannot_open(&err))?;
    let size = file.metadata().map_or(0, |meta| meta.len());
    check_unpacked(&file, options.limits.max_unpacked_bytes)?;
    let (sender, rows) = sync_channel(ROWS_IN_FLIGHT);
    let sheet = options.sheet.clone();
    std::thread::Builder::new()
        .name("xlsx-reader".into())
        .spawn(move || {
            // calamine panics on some damaged workbooks (found by the fuzz target); that must be
            // an error, not an aborted ingest.
            let read = super::guarded(Rule::NotAnXlsxFile, "a readable .xlsx workbook", || {
                read_sheet(file, sheet.as_deref(), &sender)
            });
            if let Err(e) | Ok(Err(e)) = read {
                let _ = sender.send(Err(e));
            }
        })
        .map_err(|err| cannot_open(&err))?;
    XlsxSource::new(rows, options.limits, progress, size)
        .map(|source| Box::new(source) as Box<dyn RowSource>)
}

/// Unpacks every entry of the zip to nowhere and fails once more than `limit` bytes came out.
/// Sizes are counted, not taken from the zip's directory, which a hostile file can fake. Entries
/// that cannot be unpacked are skipped: calamine fails on them if it needs them.
fn check_unpacked(file: &File, limit: u64) -> Result<(), ReadError> {
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|err| {
        ReadError::fatal(
            Rule::NotAnXlsxFile,
            format!(
                "the file is not a readable .xlsx workbook ({err}); an old .xls, .ods or encrypted \
                 workbook must be saved as a plain .xlsx first"
            ),
        )
    })?;
    let mut total = 0u64;
    for index in 0..archive.len() {
        let Ok(entry) = archive.by_index(index) else {
            continue;
        };
        let mut counted = entry.take(limit - total + 1);
        let unpacked = io::copy(&mut counted, &mut io::sink()).unwrap_or(0);
        total += unpacked;
        if total > limit {
            return Err(ReadError::fatal(
                Rule::WorkbookTooLarge,
                format!(
                    "the workbook unpacks to more than {limit} bytes (an .xlsx is a zip archive); \
                     save a sheet this large as CSV"
                ),
            ));
        }
    }
    Ok(())
}

/// One sheet row's cells that are not empty, with their column (from 0).
#[derive(Debug)]
struct SheetRow {
    /// The sheet row, from 1.
    number: u64,
    cells: Vec<(u32, Data)>,
}

/// The reading thread: sends the chosen sheet's rows in file order, then ends.
fn read_sheet(
    file: File,
    wanted: Option<&str>,
    rows: &SyncSender<Result<SheetRow, ReadError>>,
) -> Result<(), ReadError> {
    let mut workbook = Xlsx::new(BufReader::new(file)).map_err(|err| not_an_xlsx(&err))?;
    let sheet = pick_sheet(&workbook.sheet_names(), wanted)?;
    let unreadable = |err: XlsxError| {
        ReadError::fatal(
            Rule::NotAnXlsxFile,
            format!("sheet {sheet:?} could not be read: {}", describe(&err)),
        )
    };
    let mut cells = workbook
        .worksheet_cells_reader(&sheet)
        .map_err(unreadable)?;
    let mut row: Option<SheetRow> = None;
    while let Some(cell) = cells.next_cell().map_err(unreadable)? {
        let (at, col) = cell.get_position();
        let data = Data::from(cell.get_value().clone());
        if matches!(cell_text(&data), Cell::Empty) {
            continue;
        }
        let number = u64::from(at) + 1;
        if row.as_ref().is_some_and(|r| r.number != number)
            && let Some(done) = row.take()
            && rows.send(Ok(done)).is_err()
        {
            return Ok(()); // the reader was dropped
        }
        let current = row.get_or_insert_with(|| SheetRow {
            number,
            cells: Vec::new(),
        });
        if current.cells.len() == MAX_ROW_CELLS {
            return Err(ReadError {
                fatal: true,
                ..ReadError::in_row(
                    number,
                    None,
                    Rule::NotAnXlsxFile,
                    format!("the row has more than {MAX_ROW_CELLS} cells; the sheet is damaged"),
                )
            });
        }
        current.cells.push((col, data));
    }
    if let Some(done) = row {
        let _ = rows.send(Ok(done));
    }
    Ok(())
}

/// The sheet called `wanted` (exactly, else ignoring case and surrounding spaces), or the first.
fn pick_sheet(names: &[String], wanted: Option<&str>) -> Result<String, ReadError> {
    let found = match wanted {
        None => names.first(),
        Some(wanted) => names.iter().find(|name| *name == wanted).or_else(|| {
            let wanted = wanted.trim().to_lowercase();
            names
                .iter()
                .find(|name| name.trim().to_lowercase() == wanted)
        }),
    };
    found.cloned().ok_or_else(|| match wanted {
        Some(wanted) => ReadError::fatal(
            Rule::SheetNotFound,
            format!("the workbook has no sheet {wanted:?}; its sheets are {names:?}"),
        ),
        None => ReadError::fatal(Rule::SheetNotFound, "the workbook has no sheets"),
    })
}

/// Rows of one sheet, as the reading thread sends them.
#[derive(Debug)]
struct XlsxSource {
    rows: Receiver<Result<SheetRow, ReadError>>,
    header: Vec<String>,
    /// The sheet column (from 0) of the header's first column.
    first_column: u32,
    limits: Limits,
    progress: Progress,
    size: u64,
    done: bool,
}

impl XlsxSource {
    /// Takes the header from the first row with a value (rows come without blank cells).
    fn new(
        rows: Receiver<Result<SheetRow, ReadError>>,
        limits: Limits,
        progress: Progress,
        size: u64,
    ) -> Result<Self, ReadError> {
        let first = match rows.recv() {
            Ok(Ok(row)) => row,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(ReadError::fatal(
                    Rule::EmptyFile,
                    "the sheet has no header and no rows",
                ));
            }
        };
        let first_column = first.cells.iter().map(|(col, _)| *col).min().unwrap_or(0);
        let last_column = first.cells.iter().map(|(col, _)| *col).max().unwrap_or(0);
        let width = (last_column - first_column) as usize + 1;
        check_width(width, &limits)?;
        let mut header = vec![String::new(); width];
        for (col, data) in &first.cells {
            header[(col - first_column) as usize] = match cell_text(data) {
                Cell::Text(text) => text.trim().to_owned(),
                Cell::Error(_) | Cell::Empty => String::new(),
            };
        }
        check_header(&header, &limits)?;
        Ok(XlsxSource {
            rows,
            header,
            first_column,
            limits,
            progress,
            size,
            done: false,
        })
    }

    fn row(&self, sheet_row: SheetRow) -> Result<SourceRow, ReadError> {
        let number = sheet_row.number;
        let mut values = vec![None; self.header.len()];
        for (col, data) in sheet_row.cells {
            let at = col
                .checked_sub(self.first_column)
                .map(|at| at as usize)
                .filter(|&at| at < self.header.len())
                .ok_or_else(|| {
                    ReadError::in_row(
                        number,
                        Some(column_letters(col)),
                        Rule::OutsideHeader,
                        format!(
                            "column {} holds a value but the header covers columns {} to {}; \
                             give the column a header or clear it",
                            column_letters(col),
                            column_letters(self.first_column),
                            column_letters(self.first_column + self.header.len() as u32 - 1)
                        ),
                    )
                })?;
            values[at] = self.cell(number, at, &data)?;
        }
        Ok(SourceRow { number, values })
    }

    fn cell(&self, number: u64, col: usize, data: &Data) -> Result<Option<String>, ReadError> {
        match cell_text(data) {
            Cell::Empty => Ok(None),
            Cell::Text(text) => text_cell(&text, number, &self.limits, || {
                column_label(&self.header, col)
            }),
            Cell::Error(kind) => Err(ReadError::in_row(
                number,
                Some(column_label(&self.header, col)),
                Rule::CellError,
                format!(
                    "the cell holds the Excel error {kind}; fix the formula or enter the value"
                ),
            )),
        }
    }
}

impl RowSource for XlsxSource {
    fn header(&self) -> &[String] {
        &self.header
    }

    fn next_row(&mut self) -> Option<Result<SourceRow, ReadError>> {
        if self.done {
            return None;
        }
        match self.rows.recv() {
            Ok(Ok(row)) => Some(self.row(row)),
            Ok(Err(e)) => {
                self.done = true;
                Some(Err(e))
            }
            Err(_) => {
                self.done = true;
                self.progress.set(self.size);
                None
            }
        }
    }

    fn encoding(&self) -> Option<&'static str> {
        None
    }
}

/// Excel's name of column `col` (from 0): A, B, ..., Z, AA, ...
fn column_letters(col: u32) -> String {
    let mut n = col + 1;
    let mut letters = Vec::new();
    while n > 0 {
        let rem = (n - 1) % 26;
        letters.push(b'A' + rem as u8);
        n = (n - 1) / 26;
    }
    letters.reverse();
    String::from_utf8(letters).unwrap_or_default()
}

/// A cell as text, before trimming and limits.
#[derive(Debug, PartialEq)]
enum Cell {
    Empty,
    Text(String),
    /// An Excel error such as `#REF!` (not a personal value).
    Error(String),
}

fn cell_text(data: &Data) -> Cell {
    match data {
        Data::Empty => Cell::Empty,
        Data::String(s) => Cell::Text(s.clone()),
        // Rust prints integral floats without a fraction: 1.0 => "1".
        Data::Float(f) => Cell::Text(f.to_string()),
        Data::Int(i) => Cell::Text(i.to_string()),
        Data::Bool(b) => Cell::Text(b.to_string()),
        Data::DateTime(dt) => Cell::Text(date_time_text(dt)),
        Data::DateTimeIso(s) | Data::DurationIso(s) => Cell::Text(s.clone()),
        Data::Error(kind) => Cell::Error(kind.to_string()),
    }
}

/// `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS` when there is a time of day, `H:MM:SS` for a duration.
fn date_time_text(dt: &ExcelDateTime) -> String {
    if dt.is_duration() {
        let seconds = (dt.as_f64() * 86_400.0).round() as i64;
        let sign = if seconds < 0 { "-" } else { "" };
        let seconds = seconds.unsigned_abs();
        return format!(
            "{sign}{}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        );
    }
    let (year, month, day, hour, minute, second, milli) = dt.to_ymd_hms_milli();
    let date = format!("{year:04}-{month:02}-{day:02}");
    match (hour, minute, second, milli) {
        (0, 0, 0, 0) => date,
        (_, _, _, 0) => format!("{date}T{hour:02}:{minute:02}:{second:02}"),
        _ => format!("{date}T{hour:02}:{minute:02}:{second:02}.{milli:03}"),
    }
}

fn not_an_xlsx(err: &XlsxError) -> ReadError {
    ReadError::fatal(
        Rule::NotAnXlsxFile,
        format!(
            "the file is not a readable .xlsx workbook ({}); an old .xls, .ods or encrypted workbook \
             must be saved as a plain .xlsx first",
            describe(err)
        ),
    )
}

/// A calamine error's text when it cannot hold cell content, else a generic description.
fn describe(err: &XlsxError) -> String {
    match err {
        XlsxError::Io(_)
        | XlsxError::Zip(_)
        | XlsxError::XmlEof(_)
        | XlsxError::UnexpectedNode(_)
        | XlsxError::FileNotFound(_)
        | XlsxError::RelationshipNotFound
        | XlsxError::Password
        | XlsxError::DimensionCount(_)
        | XlsxError::ColumnNumberOverflow
        | XlsxError::RowNumberOverflow
        | XlsxError::Unexpected(_) => err.to_string(),
        _ => "malformed workbook content".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::{Format, open};
    use super::*;

    /// A minimal uncompressed zip archive, enough for calamine.
    fn zip(files: &[(&str, String)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, body) in files {
            let offset = out.len() as u32;
            let crc = crc32(body.as_bytes());
            let size = body.len() as u32;
            let mut common = Vec::new();
            common.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, stored, time, date
            common.extend_from_slice(&crc.to_le_bytes());
            common.extend_from_slice(&size.to_le_bytes());
            common.extend_from_slice(&size.to_le_bytes());
            common.extend_from_slice(&(name.len() as u16).to_le_bytes());
            common.extend_from_slice(&0u16.to_le_bytes()); // extra length
            out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            out.extend_from_slice(&common);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(body.as_bytes());
            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&20u16.to_le_bytes()); // made by
            central.extend_from_slice(&common);
            central.extend_from_slice(&[0; 6]); // comment length, disk, internal attrs
            central.extend_from_slice(&0u32.to_le_bytes()); // external attrs
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let central_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // disk numbers
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&central_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    const MAIN: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
    const RELS: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";

    /// A workbook with sheets `Notes` (empty) and `Cases` holding `rows` of `<c>` XML.
    fn workbook(rows: &str) -> Vec<u8> {
        let rel = |id: &str, kind: &str, target: &str| {
            format!(r#"<Relationship Id="{id}" Type="{RELS}/{kind}" Target="{target}"/>"#)
        };
        let package = "http://schemas.openxmlformats.org/package/2006/relationships";
        let sheet = |data: &str| {
            format!(r#"<worksheet xmlns="{MAIN}"><sheetData>{data}</sheetData></worksheet>"#)
        };
        zip(&[
            (
                "_rels/.rels",
                format!(
                    r#"<Relationships xmlns="{package}">{}</Relationships>"#,
                    rel("rId1", "officeDocument", "xl/workbook.xml")
                ),
            ),
            (
                "xl/workbook.xml",
                format!(
                    r#"<workbook xmlns="{MAIN}" xmlns:r="{RELS}"><sheets><sheet name="Notes" sheetId="1" r:id="rId1"/><sheet name="Cases" sheetId="2" r:id="rId2"/></sheets></workbook>"#
                ),
            ),
            (
                "xl/_rels/workbook.xml.rels",
                format!(
                    r#"<Relationships xmlns="{package}">{}{}{}</Relationships>"#,
                    rel("rId1", "worksheet", "worksheets/sheet1.xml"),
                    rel("rId2", "worksheet", "worksheets/sheet2.xml"),
                    rel("rId3", "styles", "styles.xml"),
                ),
            ),
            (
                "xl/styles.xml",
                format!(
                    r#"<styleSheet xmlns="{MAIN}"><cellXfs count="3"><xf numFmtId="0"/><xf numFmtId="14"/><xf numFmtId="22"/></cellXfs></styleSheet>"#
                ),
            ),
            ("xl/worksheets/sheet1.xml", sheet("")),
            ("xl/worksheets/sheet2.xml", sheet(rows)),
        ])
    }

    fn text(cell: &str, value: &str) -> String {
        format!(r#"<c r="{cell}" t="inlineStr"><is><t>{value}</t></is></c>"#)
    }

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new()
            .suffix(".xlsx")
            .tempfile()
            .expect("temp file");
        file.write_all(bytes).expect("write temp file");
        file
    }

    fn sheet_options(sheet: &str) -> ReadOptions {
        let mut options = ReadOptions::new(Format::Xlsx);
        options.sheet = Some(sheet.to_owned());
        options
    }

    #[test]
    fn reads_cells_by_type() {
        let rows = format!(
            r#"<row r="3">{}{}{}</row><row r="4"><c r="B4"><v>1</v></c><c r="C4"><v>2.5</v></c><c r="D4" s="1"><v>45943</v></c></row><row r="6">{}<c r="C6" t="b"><v>1</v></c><c r="D6" s="2"><v>45943.5</v></c></row><row r="7"><c r="B7" t="e"><v>#REF!</v></c></row>"#,
            text("B3", " Name "),
            text("C3", "Score"),
            text("D3", "Date"),
            text("B6", " Асанова "),
        );
        let file = write(&workbook(&rows));
        let progress = Progress::default();
        let mut source =
            open(file.path(), &sheet_options("cases"), progress.clone()).expect("open");
        assert_eq!(source.header(), ["Name", "Score", "Date"]);
        assert_eq!(source.encoding(), None);
        let rows: Vec<_> = std::iter::from_fn(|| source.next_row()).collect();
        let some = |v: &str| Some(v.to_owned());
        assert_eq!(
            rows[0],
            Ok(SourceRow {
                number: 4,
                values: vec![some("1"), some("2.5"), some("2025-10-13")]
            })
        );
        assert_eq!(
            rows[1],
            Ok(SourceRow {
                number: 6,
                values: vec![some("Асанова"), some("true"), some("2025-10-13T12:00:00")]
            })
        );
        let err = rows[2].as_ref().expect_err("cell error");
        assert_eq!(
            (
                err.problem.rule.name(),
                err.problem.row,
                err.problem.column.as_deref()
            ),
            ("cell_error", Some(7), Some("Name"))
        );
        assert_eq!(rows.len(), 3);
        assert_eq!(
            progress.bytes(),
            file.as_file().metadata().expect("metadata").len()
        );
    }

    #[test]
    fn sheet_errors() {
        let file = write(&workbook(&format!(
            r#"<row r="1">{}</row>"#,
            text("A1", "x")
        )));
        let err = open(file.path(), &sheet_options("Victims"), Progress::default())
            .err()
            .expect("no sheet");
        assert_eq!(err.problem.rule.name(), "sheet_not_found");
        assert!(
            err.problem.message.contains("\"Notes\", \"Cases\""),
            "{}",
            err.problem.message
        );

        let mut options = ReadOptions::new(Format::Xlsx);
        let err = open(file.path(), &options, Progress::default())
            .err()
            .expect("first sheet is empty");
        assert_eq!(err.problem.rule.name(), "empty_file");

        options.sheet = Some("Cases".into());
        let duplicate = format!(r#"<row r="1">{}{}</row>"#, text("A1", "x"), text("B1", "x"));
        let file = write(&workbook(&duplicate));
        let err = open(file.path(), &options, Progress::default())
            .err()
            .expect("duplicate");
        assert_eq!(err.problem.rule.name(), "duplicate_column");
    }

    #[test]
    fn far_apart_cells_are_not_expanded() {
        // A1 and XFD1048576: a dense grid would be 17 billion cells.
        let rows = format!(
            r#"<row r="1">{}</row><row r="1048576"><c r="XFD1048576"><v>1</v></c></row>"#,
            text("A1", "Name")
        );
        let file = write(&workbook(&rows));
        let mut source =
            open(file.path(), &sheet_options("Cases"), Progress::default()).expect("open");
        assert_eq!(source.header(), ["Name"]);
        let err = source
            .next_row()
            .expect("a row")
            .expect_err("outside the header");
        assert_eq!(
            (
                err.problem.rule.name(),
                err.problem.row,
                err.problem.column.as_deref()
            ),
            ("outside_header", Some(1_048_576), Some("XFD"))
        );
        assert!(source.next_row().is_none());
    }

    #[test]
    fn a_zip_bomb_is_refused_before_it_is_unpacked() {
        // 64 MiB of one repeated cell deflates to about 64 KiB.
        let cell = text("A2", "x");
        let sheet = format!(
            r#"<worksheet xmlns="{MAIN}"><sheetData><row r="1">{}</row>{}</sheetData></worksheet>"#,
            text("A1", "Name"),
            format!(r#"<row r="2">{cell}</row>"#).repeat((64 << 20) / 64)
        );
        let mut bytes = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut bytes);
        let deflate = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("xl/worksheets/sheet1.xml", deflate)
            .expect("entry");
        zip.write_all(sheet.as_bytes()).expect("write");
        zip.finish().expect("finish");
        let packed = bytes.into_inner();
        assert!(packed.len() < 1 << 20, "{} bytes", packed.len());
        let file = write(&packed);
        let mut options = ReadOptions::new(Format::Xlsx);
        options.limits.max_unpacked_bytes = 16 << 20;
        let err = open(file.path(), &options, Progress::default())
            .err()
            .expect("too large");
        assert_eq!(
            (err.problem.rule.name(), err.fatal),
            ("workbook_too_large", true)
        );
        assert!(
            err.problem.message.contains("16777216 bytes"),
            "{}",
            err.problem.message
        );
    }

    #[test]
    fn column_names() {
        let names: Vec<_> = [0, 25, 26, 51, 52, 701, 702, 16_383]
            .into_iter()
            .map(column_letters)
            .collect();
        assert_eq!(names, ["A", "Z", "AA", "AZ", "BA", "ZZ", "AAA", "XFD"]);
    }

    #[test]
    fn not_an_xlsx_file() {
        let file = write(b"name,age\nAnna,31\n");
        let err = open(
            file.path(),
            &ReadOptions::new(Format::Xlsx),
            Progress::default(),
        )
        .err()
        .expect("error");
        assert_eq!(
            (err.problem.rule.name(), err.fatal),
            ("not_an_xlsx_file", true)
        );
    }

    #[test]
    fn dates_and_numbers() {
        use calamine::ExcelDateTimeType::{DateTime, TimeDelta};
        assert_eq!(
            date_time_text(&ExcelDateTime::new(25569.0, DateTime, false)),
            "1970-01-01"
        );
        assert_eq!(
            date_time_text(&ExcelDateTime::new(25569.25, DateTime, false)),
            "1970-01-01T06:00:00"
        );
        assert_eq!(
            date_time_text(&ExcelDateTime::new(1.5, TimeDelta, false)),
            "36:00:00"
        );
        assert_eq!(cell_text(&Data::Float(1.0)), Cell::Text("1".into()));
        assert_eq!(cell_text(&Data::Float(-0.25)), Cell::Text("-0.25".into()));
        assert_eq!(
            cell_text(&Data::Float(996_555_123_456.0)),
            Cell::Text("996555123456".into())
        );
    }
}
