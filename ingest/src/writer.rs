//! Pseudonymised rows to Parquet files, one per partition (mission, registration year).
//!
//! Rows are buffered per partition and flushed as Arrow record batches of `FLUSH_ROWS`, so memory
//! stays bounded by the number of open partitions, not by the size of the file.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, FixedSizeBinaryBuilder, ListBuilder, RecordBatch,
    StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use ctstats_schemas::pseudonyms::{self, from_hex};
use ctstats_schemas::{FIELDS, FieldKind, KeyEncoding, SCHEMA_VERSION, arrow_schema_for, meta};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::map::Value;
use crate::pseudonymise::OutputRow;

/// Rows buffered per partition before they become an Arrow batch. A buffered row takes about
/// 1.5 KiB (one `Value` per canonical field and two hex keys) and a file spans up to one
/// partition per registration year, so this bounds the buffers at about 3 MiB a partition
/// (8,192 rows took 195 MiB of peak RSS at 1M rows and 327 MiB at 10M).
const FLUSH_ROWS: usize = 2048;
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Values every row of a batch shares.
#[derive(Debug, Clone)]
pub struct BatchConstants {
    pub batch_id: String,
    pub organisation: String,
    pub reporting_mission: String,
    pub key_id: String,
    /// How the dataset stores its keys (its manifest format's encoding).
    pub keys: KeyEncoding,
    pub ingested_at: DateTime<Utc>,
}

/// A written file, relative to the staging directory it was written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    pub relative: String,
    pub rows: u64,
}

struct Partition {
    relative: String,
    writer: ArrowWriter<File>,
    buffer: Vec<OutputRow>,
    rows: u64,
}

/// Writes one batch's rows into a staging directory.
pub struct BatchWriter {
    staging: PathBuf,
    constants: BatchConstants,
    partitions: BTreeMap<i32, Partition>,
}

impl std::fmt::Debug for BatchWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWriter")
            .field("staging", &self.staging)
            .field("batch_id", &self.constants.batch_id)
            .field("partitions", &self.partitions.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Writer properties shared by every file of the dataset. The keys are unique per record (and
/// nearly so per person): a dictionary would only be built to be abandoned, so they have none.
pub fn writer_properties(batch_id: &str, key_id: &str) -> WriterProperties {
    WriterProperties::builder()
        .set_column_dictionary_enabled(ColumnPath::from("record_key"), false)
        .set_column_dictionary_enabled(ColumnPath::from("person_key"), false)
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid zstd level"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(meta::SCHEMA_VERSION.into(), SCHEMA_VERSION.to_string()),
            KeyValue::new(meta::KEY_ID.into(), key_id.to_string()),
            KeyValue::new(meta::BATCH_ID.into(), batch_id.to_string()),
        ]))
        .build()
}

impl BatchWriter {
    pub fn new(staging: &Path, constants: BatchConstants) -> Self {
        BatchWriter {
            staging: staging.to_path_buf(),
            constants,
            partitions: BTreeMap::new(),
        }
    }

    /// Buffer a row; flushes its partition when the buffer is full.
    pub fn push(&mut self, row: OutputRow, registration: NaiveDate) -> Result<(), crate::Error> {
        let year = registration.year();
        if !self.partitions.contains_key(&year) {
            let dir =
                ctstats_schemas::manifest::partition_dir(&self.constants.reporting_mission, year);
            std::fs::create_dir_all(self.staging.join(&dir))
                .map_err(crate::Error::io(self.staging.join(&dir)))?;
            let relative = format!("{dir}/part-{}.parquet", self.constants.batch_id);
            let path = self.staging.join(&relative);
            let file = File::create(&path).map_err(crate::Error::io(&path))?;
            let props = writer_properties(&self.constants.batch_id, &self.constants.key_id);
            let writer =
                ArrowWriter::try_new(file, arrow_schema_for(self.constants.keys), Some(props))?;
            self.partitions.insert(
                year,
                Partition {
                    relative,
                    writer,
                    buffer: Vec::new(),
                    rows: 0,
                },
            );
        }
        let part = self.partitions.get_mut(&year).expect("inserted above");
        part.buffer.push(row);
        if part.buffer.len() >= FLUSH_ROWS {
            let batch = to_record_batch(&part.buffer, &self.constants)?;
            part.writer.write(&batch)?;
            part.rows += part.buffer.len() as u64;
            part.buffer.clear();
        }
        Ok(())
    }

    /// Flush and close every file, fsyncing each.
    pub fn finish(self) -> Result<Vec<WrittenFile>, crate::Error> {
        let mut written = Vec::new();
        for (_, mut part) in self.partitions {
            if !part.buffer.is_empty() {
                let batch = to_record_batch(&part.buffer, &self.constants)?;
                part.writer.write(&batch)?;
                part.rows += part.buffer.len() as u64;
            }
            let file = part.writer.into_inner()?;
            file.sync_all()
                .map_err(crate::Error::io(self.staging.join(&part.relative)))?;
            crate::failpoint::step("staged file written");
            written.push(WrittenFile {
                relative: part.relative,
                rows: part.rows,
            });
        }
        Ok(written)
    }
}

/// Build an Arrow record batch of the canonical schema from rows.
pub fn to_record_batch(
    rows: &[OutputRow],
    c: &BatchConstants,
) -> Result<RecordBatch, crate::Error> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(FIELDS.len());
    for (i, f) in FIELDS.iter().enumerate() {
        let constant = match f.name {
            "schema_version" => Some(SCHEMA_VERSION),
            "batch_id" => Some(c.batch_id.as_str()),
            "submitting_org" => Some(c.organisation.as_str()),
            "reporting_mission" => Some(c.reporting_mission.as_str()),
            _ => None,
        };
        let array: ArrayRef = match (f.name, f.kind) {
            (_, _) if constant.is_some() => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
                rows.iter()
                    .for_each(|_| b.append_value(constant.unwrap_or_default()));
                Arc::new(b.finish())
            }
            ("record_key" | "person_key", _) => {
                fn key<'r>(r: &'r OutputRow, name: &str) -> &'r str {
                    match name {
                        "record_key" => r.record_key.as_str(),
                        _ => r.person_key.as_str(),
                    }
                }
                let key = |r| key(r, f.name);
                match c.keys {
                    KeyEncoding::Hex => {
                        let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 32);
                        rows.iter().for_each(|r| b.append_value(key(r)));
                        Arc::new(b.finish())
                    }
                    KeyEncoding::Binary => {
                        let width = pseudonyms::BYTES as i32;
                        let mut b = FixedSizeBinaryBuilder::with_capacity(rows.len(), width);
                        for r in rows {
                            let bytes = from_hex(key(r)).ok_or_else(|| {
                                arrow::error::ArrowError::InvalidArgumentError(format!(
                                    "{} is not a 32-character hex pseudonym",
                                    f.name
                                ))
                            })?;
                            b.append_value(bytes)?;
                        }
                        Arc::new(b.finish())
                    }
                }
            }
            ("person_link_quality", _) => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
                rows.iter()
                    .for_each(|r| b.append_value(r.person_link_quality));
                Arc::new(b.finish())
            }
            (_, FieldKind::Timestamp) => {
                let mut b =
                    TimestampMillisecondBuilder::with_capacity(rows.len()).with_timezone("+00:00");
                rows.iter()
                    .for_each(|_| b.append_value(c.ingested_at.timestamp_millis()));
                Arc::new(b.finish())
            }
            (
                _,
                FieldKind::Id | FieldKind::Pseudonym | FieldKind::Code { .. } | FieldKind::Country,
            ) => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
                for r in rows {
                    match &r.fields[i] {
                        Value::Code(s) => b.append_value(s),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            (_, FieldKind::CodeSet { .. }) => {
                let mut b = ListBuilder::new(StringBuilder::new())
                    .with_field(Arc::new(Field::new("item", DataType::Utf8, false)));
                for r in rows {
                    match &r.fields[i] {
                        Value::Codes(codes) => {
                            codes.iter().for_each(|s| b.values().append_value(s));
                            b.append(true);
                        }
                        _ => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
            (_, FieldKind::Month) => {
                let mut b = Date32Builder::with_capacity(rows.len());
                for r in rows {
                    match &r.fields[i] {
                        Value::Month(m) => b.append_value((*m - epoch).num_days() as i32),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            (_, FieldKind::Flag) => {
                let mut b = BooleanBuilder::with_capacity(rows.len());
                for r in rows {
                    match &r.fields[i] {
                        Value::Flag(v) => b.append_value(*v),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
        };
        columns.push(array);
    }
    Ok(RecordBatch::try_new(arrow_schema_for(c.keys), columns)?)
}
