//! Streaming writers for the four file formats. Rows go out one at a time, so memory does not
//! grow with the file (Excel through rust_xlsxwriter's constant-memory mode, Parquet in batches).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use encoding_rs::WINDOWS_1251;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rust_xlsxwriter::{DocProperties, ExcelDateTime, Workbook};

use crate::{Error, FileFormat, TextEncoding};

/// Most data rows one Excel sheet holds below its header row (1,048,576 rows in all).
pub const XLSX_MAX_ROWS: u64 = 1_048_575;

/// Rows per Parquet record batch and per row group.
const PARQUET_BATCH_ROWS: usize = 8192;
const PARQUET_ROW_GROUP_ROWS: usize = 64 * 1024;

fn failed(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Write {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An open output file of one format.
pub(crate) enum Sink {
    Csv {
        path: PathBuf,
        csv: Box<csv::Writer<Transcode<BufWriter<File>>>>,
    },
    Xlsx {
        path: PathBuf,
        workbook: Box<Workbook>,
        next_row: u32,
    },
    Jsonl {
        path: PathBuf,
        out: BufWriter<File>,
        header: Vec<&'static str>,
        line: Vec<u8>,
    },
    Parquet {
        path: PathBuf,
        writer: Box<ArrowWriter<File>>,
        schema: SchemaRef,
        builders: Vec<StringBuilder>,
        buffered: usize,
    },
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, path) = match self {
            Sink::Csv { path, .. } => ("csv", path),
            Sink::Xlsx { path, .. } => ("xlsx", path),
            Sink::Jsonl { path, .. } => ("jsonl", path),
            Sink::Parquet { path, .. } => ("parquet", path),
        };
        write!(f, "Sink::{kind}({})", path.display())
    }
}

impl Sink {
    /// Create `path` and write the header.
    pub(crate) fn create(
        path: &Path,
        format: FileFormat,
        encoding: TextEncoding,
        header: &[&'static str],
    ) -> Result<Sink, Error> {
        let path_buf = path.to_path_buf();
        let mut sink = match format {
            FileFormat::Csv => {
                let windows1251 = encoding == TextEncoding::Windows1251;
                // Excel in the region saves Windows-1251 CSV with `;` and CRLF.
                let (delimiter, terminator) = if windows1251 {
                    (b';', csv::Terminator::CRLF)
                } else {
                    (b',', csv::Terminator::Any(b'\n'))
                };
                let out = BufWriter::new(File::create(path).map_err(io(path))?);
                let csv = csv::WriterBuilder::new()
                    .delimiter(delimiter)
                    .terminator(terminator)
                    .from_writer(Transcode {
                        inner: out,
                        windows1251,
                        pending: Vec::new(),
                    });
                Sink::Csv {
                    path: path_buf,
                    csv: Box::new(csv),
                }
            }
            FileFormat::Xlsx => {
                let mut workbook = Workbook::new();
                // A fixed creation time keeps the file reproducible.
                let created = ExcelDateTime::from_ymd(2000, 1, 1).map_err(|e| failed(path, e))?;
                workbook.set_properties(&DocProperties::new().set_creation_datetime(&created));
                let sheet = workbook
                    .add_worksheet_with_constant_memory()
                    .map_err(|e| failed(path, e))?;
                sheet.set_name("cases").map_err(|e| failed(path, e))?;
                Sink::Xlsx {
                    path: path_buf,
                    workbook: Box::new(workbook),
                    next_row: 0,
                }
            }
            FileFormat::Jsonl => Sink::Jsonl {
                path: path_buf,
                out: BufWriter::new(File::create(path).map_err(io(path))?),
                header: header.to_vec(),
                line: Vec::new(),
            },
            FileFormat::Parquet => {
                let fields: Vec<Field> = header
                    .iter()
                    .map(|name| Field::new(*name, DataType::Utf8, true))
                    .collect();
                let schema = Arc::new(Schema::new(fields));
                let properties = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP_ROWS))
                    .build();
                let file = File::create(path).map_err(io(path))?;
                let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties))
                    .map_err(|e| failed(path, e))?;
                Sink::Parquet {
                    path: path_buf,
                    writer: Box::new(writer),
                    builders: header.iter().map(|_| StringBuilder::new()).collect(),
                    schema,
                    buffered: 0,
                }
            }
        };
        if !matches!(format, FileFormat::Jsonl | FileFormat::Parquet) {
            let cells: Vec<Option<String>> = header.iter().map(|h| Some(h.to_string())).collect();
            sink.write(&cells)?;
        }
        Ok(sink)
    }

    /// Write one row, aligned with the header; `None` is an empty cell (an absent key in JSON
    /// Lines, a null in Parquet).
    pub(crate) fn write(&mut self, values: &[Option<String>]) -> Result<(), Error> {
        match self {
            Sink::Csv { path, csv } => {
                csv.write_record(values.iter().map(|v| v.as_deref().unwrap_or("")))
                    .map_err(|e| failed(path, e))?;
            }
            Sink::Xlsx {
                path,
                workbook,
                next_row,
            } => {
                let sheet = workbook
                    .worksheet_from_index(0)
                    .map_err(|e| failed(path, e))?;
                for (col, value) in values.iter().enumerate() {
                    if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                        sheet
                            .write_string(*next_row, col as u16, v)
                            .map_err(|e| failed(path, e))?;
                    }
                }
                *next_row += 1;
            }
            Sink::Jsonl {
                path,
                out,
                header,
                line,
            } => {
                line.clear();
                line.push(b'{');
                let mut first = true;
                for (name, value) in header.iter().zip(values) {
                    let Some(value) = value else { continue };
                    if !first {
                        line.push(b',');
                    }
                    first = false;
                    serde_json::to_writer(&mut *line, name).map_err(|e| failed(path, e))?;
                    line.push(b':');
                    serde_json::to_writer(&mut *line, value).map_err(|e| failed(path, e))?;
                }
                line.extend_from_slice(b"}\n");
                out.write_all(line).map_err(io(path))?;
            }
            Sink::Parquet {
                builders, buffered, ..
            } => {
                for (builder, value) in builders.iter_mut().zip(values) {
                    builder.append_option(value.as_deref());
                }
                *buffered += 1;
                if *buffered == PARQUET_BATCH_ROWS {
                    self.flush_parquet()?;
                }
            }
        }
        Ok(())
    }

    fn flush_parquet(&mut self) -> Result<(), Error> {
        if let Sink::Parquet {
            path,
            writer,
            schema,
            builders,
            buffered,
        } = self
        {
            if *buffered == 0 {
                return Ok(());
            }
            let columns: Vec<ArrayRef> = builders
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef)
                .collect();
            let batch =
                RecordBatch::try_new(schema.clone(), columns).map_err(|e| failed(path, e))?;
            writer.write(&batch).map_err(|e| failed(path, e))?;
            *buffered = 0;
        }
        Ok(())
    }

    /// Flush and close the file.
    pub(crate) fn finish(mut self) -> Result<(), Error> {
        self.flush_parquet()?;
        match self {
            Sink::Csv { path, csv } => {
                let mut out = csv.into_inner().map_err(|e| failed(&path, e.error()))?;
                out.finish().map_err(io(&path))
            }
            Sink::Jsonl { path, mut out, .. } => out.flush().map_err(io(&path)),
            Sink::Xlsx {
                path, mut workbook, ..
            } => workbook.save(&path).map_err(|e| failed(&path, e)),
            Sink::Parquet { path, writer, .. } => {
                writer.close().map(|_| ()).map_err(|e| failed(&path, e))
            }
        }
    }
}

/// UTF-8 in, UTF-8 or Windows-1251 out. Characters split across two writes wait in `pending`.
pub(crate) struct Transcode<W: Write> {
    inner: W,
    windows1251: bool,
    pending: Vec<u8>,
}

impl<W: Write> Transcode<W> {
    fn finish(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the output ends inside a UTF-8 character",
            ));
        }
        self.inner.flush()
    }
}

impl<W: Write> Write for Transcode<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.windows1251 {
            return self.inner.write(buf);
        }
        self.pending.extend_from_slice(buf);
        let complete = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not UTF-8",
                ));
            }
        };
        let text = std::str::from_utf8(&self.pending[..complete]).expect("checked above");
        let (encoded, _, unmappable) = WINDOWS_1251.encode(text);
        if unmappable {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a cell holds a character Windows-1251 cannot encode",
            ));
        }
        self.inner.write_all(&encoded)?;
        self.pending.drain(..complete);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
