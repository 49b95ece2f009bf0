//! Parquet reader: record batches of 8192 rows, every top-level column rendered as text.

use std::fs::File;
use std::path::Path;

use arrow::array::{Array, AsArray, GenericListArray, OffsetSizeTrait};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float32Type, Float64Type};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::errors::ParquetError;

use super::checks::{cannot_open, check_header, column_label, text_cell};
use super::{Limits, Progress, ReadError, ReadOptions, RowSource, SourceRow, guarded};
use crate::problem::Rule;

const BATCH_ROWS: usize = 8192;

const NESTED: &str = "the value is nested (a struct, map or list of lists); only scalars and lists of scalars are supported";
const INVALID: &str = "the value cannot be shown as text (for example a date out of range)";

/// How non-text scalars are printed: ISO dates, errors reported rather than written out.
const FORMAT: FormatOptions<'static> = FormatOptions::new()
    .with_display_error(false)
    .with_date_format(Some("%Y-%m-%d"))
    .with_datetime_format(Some("%Y-%m-%d"));

pub(super) fn open(
    path: &Path,
    options: &ReadOptions,
    progress: Progress,
) -> Result<Box<dyn RowSource>, ReadError> {
    let file = File::open(path).map_err(|err| cannot_open(&err))?;
    let size = file.metadata().map_or(0, |meta| meta.len());
    let builder = guarded(PARQUET.0, PARQUET.1, || {
        ParquetRecordBatchReaderBuilder::try_new(file)
    })?
    .map_err(|err| not_a_parquet(&err))?;
    let header: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|field| field.name().trim().to_owned())
        .collect();
    check_header(&header, &options.limits)?;
    let mut group_ends = Vec::new();
    let (mut rows, mut bytes) = (0u64, 0u64);
    for group in builder.metadata().row_groups() {
        rows += u64::try_from(group.num_rows()).unwrap_or(0);
        bytes += u64::try_from(group.compressed_size()).unwrap_or(0);
        group_ends.push((rows, bytes));
    }
    let batches = guarded(PARQUET.0, PARQUET.1, || {
        builder.with_batch_size(BATCH_ROWS).build()
    })?
    .map_err(|err| not_a_parquet(&err))?;
    Ok(Box::new(ParquetSource {
        batches,
        header,
        limits: options.limits,
        progress,
        size,
        group_ends,
        columns: Vec::new(),
        batch_rows: 0,
        next: 0,
        rows_read: 0,
        number: 0,
        done: false,
    }))
}

/// Rows of a Parquet file.
#[derive(Debug)]
struct ParquetSource {
    batches: ParquetRecordBatchReader,
    header: Vec<String>,
    limits: Limits,
    progress: Progress,
    /// The file size, the progress once every row is read.
    size: u64,
    /// Cumulative (rows, compressed bytes) at the end of each row group.
    group_ends: Vec<(u64, u64)>,
    /// The current batch, column by column.
    columns: Vec<Vec<Cell>>,
    batch_rows: usize,
    /// The next row of the current batch.
    next: usize,
    /// Rows in the batches read so far.
    rows_read: u64,
    /// The last row handed out, from 1.
    number: u64,
    done: bool,
}

impl RowSource for ParquetSource {
    fn header(&self) -> &[String] {
        &self.header
    }

    fn next_row(&mut self) -> Option<Result<SourceRow, ReadError>> {
        loop {
            if self.next < self.batch_rows {
                self.next += 1;
                self.number += 1;
                return Some(self.row(self.next - 1));
            }
            if self.done {
                return None;
            }
            let batches = &mut self.batches;
            match guarded(PARQUET.0, PARQUET.1, || batches.next()) {
                Ok(Some(Ok(batch))) => self.load(&batch),
                // A panic in the parquet crate (see `guarded`) is a damaged file too.
                Ok(Some(Err(_))) | Err(_) => {
                    // Decoding errors may quote data, so only the position is reported.
                    self.done = true;
                    let mut err = ReadError::fatal(
                        Rule::ReadError,
                        "the file could not be decoded from this record on; it may be damaged",
                    );
                    err.problem.row = Some(self.number + 1);
                    return Some(Err(err));
                }
                Ok(None) => {
                    self.done = true;
                    self.progress.set(self.size);
                }
            }
        }
    }

    fn encoding(&self) -> Option<&'static str> {
        None
    }
}

impl ParquetSource {
    fn load(&mut self, batch: &RecordBatch) {
        self.columns = batch
            .columns()
            .iter()
            .map(|array| column_cells(array.as_ref()))
            .collect();
        self.batch_rows = batch.num_rows();
        self.next = 0;
        self.rows_read += batch.num_rows() as u64;
        let done_bytes = self
            .group_ends
            .iter()
            .take_while(|(rows, _)| *rows <= self.rows_read)
            .last()
            .map_or(0, |(_, bytes)| *bytes);
        self.progress.set(done_bytes);
    }

    fn row(&self, at: usize) -> Result<SourceRow, ReadError> {
        let number = self.number;
        let values = self
            .columns
            .iter()
            .enumerate()
            .map(|(col, cells)| match &cells[at] {
                Cell::Value(Some(text)) => text_cell(text, number, &self.limits, || {
                    column_label(&self.header, col)
                }),
                Cell::Value(None) => Ok(None),
                Cell::Nested => Err(self.error(number, col, Rule::NestedValue, NESTED)),
                Cell::Invalid => Err(self.error(number, col, Rule::InvalidValue, INVALID)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SourceRow { number, values })
    }

    fn error(&self, number: u64, col: usize, rule: Rule, message: &str) -> ReadError {
        ReadError::in_row(number, Some(column_label(&self.header, col)), rule, message)
    }
}

/// One value as text, before trimming and limits.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Value(Option<String>),
    Nested,
    Invalid,
}

fn column_cells(array: &dyn Array) -> Vec<Cell> {
    match array.data_type() {
        DataType::List(_) => list_cells(array.as_list::<i32>()),
        DataType::LargeList(_) => list_cells(array.as_list::<i64>()),
        _ => scalar_cells(array).unwrap_or_else(|| per_row(array, |_| Cell::Nested)),
    }
}

/// `value(i)` for each non-null row `i`; nulls are empty.
fn per_row(array: &dyn Array, value: impl Fn(usize) -> Cell) -> Vec<Cell> {
    (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                Cell::Value(None)
            } else {
                value(i)
            }
        })
        .collect()
}

/// Each list's non-blank elements joined with `;`.
fn list_cells<O: OffsetSizeTrait>(list: &GenericListArray<O>) -> Vec<Cell> {
    let Some(items) = scalar_cells(list.values().as_ref()) else {
        return per_row(list, |_| Cell::Nested);
    };
    let offsets = list.value_offsets();
    per_row(list, |i| {
        let mut parts = Vec::new();
        for item in &items[offsets[i].as_usize()..offsets[i + 1].as_usize()] {
            match item {
                Cell::Value(Some(text)) if !text.trim().is_empty() => parts.push(text.trim()),
                Cell::Value(_) => {}
                other => return other.clone(),
            }
        }
        Cell::Value((!parts.is_empty()).then(|| parts.join(";")))
    })
}

/// The values of a scalar column as text; `None` for a nested type.
fn scalar_cells(array: &dyn Array) -> Option<Vec<Cell>> {
    let cells = match array.data_type() {
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::ListView(_)
        | DataType::LargeListView(_)
        | DataType::Struct(_)
        | DataType::Map(..)
        | DataType::Union(..) => return None,
        DataType::Dictionary(_, values) => match cast(array, values) {
            Ok(plain) => return scalar_cells(plain.as_ref()),
            Err(_) => per_row(array, |_| Cell::Invalid),
        },
        DataType::Utf8 => {
            let strings = array.as_string::<i32>();
            per_row(array, |i| shown(strings.value(i)))
        }
        DataType::LargeUtf8 => {
            let strings = array.as_string::<i64>();
            per_row(array, |i| shown(strings.value(i)))
        }
        DataType::Utf8View => {
            let strings = array.as_string_view();
            per_row(array, |i| shown(strings.value(i)))
        }
        // Rust prints integral floats without a fraction (1.0 => "1") and never in exponent form.
        DataType::Float64 => {
            let floats = array.as_primitive::<Float64Type>();
            per_row(array, |i| shown(floats.value(i)))
        }
        DataType::Float32 => {
            let floats = array.as_primitive::<Float32Type>();
            per_row(array, |i| shown(floats.value(i)))
        }
        data_type => formatted(array, *data_type == DataType::Float16),
    };
    Some(cells)
}

/// Values printed by arrow's formatter (ISO dates and timestamps); `float` drops a `.0` suffix.
fn formatted(array: &dyn Array, float: bool) -> Vec<Cell> {
    let Ok(formatter) = ArrayFormatter::try_new(array, &FORMAT) else {
        return per_row(array, |_| Cell::Invalid);
    };
    per_row(array, |i| match formatter.value(i).try_to_string() {
        Ok(text) if float => shown(text.strip_suffix(".0").unwrap_or(&text)),
        Ok(text) => Cell::Value(Some(text)),
        Err(_) => Cell::Invalid,
    })
}

fn shown(value: impl ToString) -> Cell {
    Cell::Value(Some(value.to_string()))
}

/// The rule and description of a file the parquet crate cannot read.
const PARQUET: (Rule, &str) = (Rule::NotAParquetFile, "a readable Parquet file");

fn not_a_parquet(err: &ParquetError) -> ReadError {
    ReadError::fatal(
        Rule::NotAParquetFile,
        format!("the file is not a readable Parquet file: {err}"),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Date32Array, Float64Array, Int64Array, ListBuilder, StringArray, StringBuilder,
        StructArray,
    };
    use arrow::datatypes::Field;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::super::{Format, Progress, ReadOptions, open};
    use super::*;

    fn write(columns: Vec<(&str, ArrayRef)>, group_rows: usize) -> tempfile::NamedTempFile {
        let file = tempfile::Builder::new()
            .suffix(".parquet")
            .tempfile()
            .expect("temp file");
        let batch = RecordBatch::try_from_iter(columns).expect("batch");
        let sink = file.as_file().try_clone().expect("clone handle");
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(group_rows))
            .build();
        let mut writer =
            ArrowWriter::try_new(sink, batch.schema(), Some(properties)).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        file
    }

    fn read_all(
        file: &tempfile::NamedTempFile,
        progress: &Progress,
    ) -> (Vec<String>, Vec<Result<SourceRow, ReadError>>) {
        let mut source = open(
            file.path(),
            &ReadOptions::new(Format::Parquet),
            progress.clone(),
        )
        .expect("open");
        assert_eq!(source.encoding(), None);
        let rows = std::iter::from_fn(|| source.next_row()).collect();
        (source.header().to_vec(), rows)
    }

    #[test]
    fn reads_scalars_dates_and_lists() {
        let date = chrono::NaiveDate::from_ymd_opt(2024, 3, 5).expect("date");
        let days =
            (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32;
        let mut tags = ListBuilder::new(StringBuilder::new());
        tags.values().append_value("a");
        tags.values().append_value(" b ");
        tags.append(true);
        tags.append(false);
        tags.values().append_null();
        tags.append(true);
        let file = write(
            vec![
                (
                    "name",
                    Arc::new(StringArray::from(vec![Some(" Айгуль "), None, Some(" ")]))
                        as ArrayRef,
                ),
                (
                    "age",
                    Arc::new(Int64Array::from(vec![Some(31), None, Some(-2)])),
                ),
                (
                    "score",
                    Arc::new(Float64Array::from(vec![Some(1.0), Some(2.5), None])),
                ),
                (
                    "born",
                    Arc::new(Date32Array::from(vec![Some(days), None, Some(0)])),
                ),
                ("tags", Arc::new(tags.finish())),
            ],
            2,
        );
        let progress = Progress::default();
        let (header, rows) = read_all(&file, &progress);
        assert_eq!(header, ["name", "age", "score", "born", "tags"]);
        let s = |v: &str| Some(v.to_owned());
        let rows: Vec<_> = rows.into_iter().map(|r| r.expect("row")).collect();
        assert_eq!(
            rows,
            [
                SourceRow {
                    number: 1,
                    values: vec![s("Айгуль"), s("31"), s("1"), s("2024-03-05"), s("a;b")]
                },
                SourceRow {
                    number: 2,
                    values: vec![None, None, s("2.5"), None, None]
                },
                SourceRow {
                    number: 3,
                    values: vec![None, s("-2"), None, s("1970-01-01"), None]
                },
            ]
        );
        assert_eq!(
            progress.bytes(),
            file.as_file().metadata().expect("metadata").len()
        );
    }

    #[test]
    fn nested_values_are_row_errors() {
        let inner = Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef;
        let point = StructArray::from(vec![(
            Arc::new(Field::new("x", DataType::Int64, false)),
            inner,
        )]);
        let file = write(
            vec![
                ("id", Arc::new(Int64Array::from(vec![7, 8])) as ArrayRef),
                ("point", Arc::new(point)),
            ],
            1024,
        );
        let (_, rows) = read_all(&file, &Progress::default());
        let err = rows[1].as_ref().expect_err("nested");
        assert_eq!(
            (
                err.problem.rule.name(),
                err.problem.row,
                err.problem.column.as_deref()
            ),
            ("nested_value", Some(2), Some("point"))
        );
    }

    #[test]
    fn damaged_metadata_that_panics_the_parquet_crate_is_a_fatal_error() {
        // Found by the reader fuzz target: a golden file with a few bytes changed.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/fuzz/parquet-negative-column-range.parquet");
        let mut errors = Vec::new();
        match open(
            &path,
            &ReadOptions::new(Format::Parquet),
            Progress::default(),
        ) {
            Err(e) => errors.push(e),
            Ok(mut source) => {
                while let Some(row) = source.next_row() {
                    if let Err(e) = row {
                        errors.push(e);
                    }
                }
            }
        }
        assert!(errors.iter().any(|e| e.fatal), "{errors:?}");
    }

    #[test]
    fn not_a_parquet_file() {
        let mut file = tempfile::Builder::new()
            .suffix(".parquet")
            .tempfile()
            .expect("temp file");
        std::io::Write::write_all(&mut file, b"name,age\nAnna,31\n").expect("write");
        let err = open(
            file.path(),
            &ReadOptions::new(Format::Parquet),
            Progress::default(),
        )
        .err()
        .expect("error");
        assert_eq!(
            (err.problem.rule.name(), err.fatal),
            ("not_a_parquet_file", true)
        );
    }

    #[test]
    fn float16_drops_an_integral_fraction() {
        let floats = arrow::array::Float32Array::from(vec![Some(1.0), None, Some(1.5)]);
        let halves = cast(&floats, &DataType::Float16).expect("cast");
        let cells = column_cells(halves.as_ref());
        assert_eq!(cells, [shown("1"), Cell::Value(None), shown("1.5")]);
    }
}
