//! Test fixtures for the query crate: tiny datasets written the way ingest lays them out (one
//! Parquet file per mission-year partition and a manifest), with chosen persons and records, so
//! plan tests and the privacy audit can build a dataset and its neighbour exactly.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, FixedSizeBinaryBuilder, ListBuilder, RecordBatch,
    StringBuilder, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field};
use ctstats_schemas::manifest::{
    BatchEntry, FileEntry, MANIFEST_FILE, MANIFEST_FORMAT, Manifest, partition_dir,
};
use ctstats_schemas::{FIELDS, FieldKind, KeyEncoding, arrow_schema_for, pseudonyms};
use datafusion::parquet::arrow::ArrowWriter;
use proptest::prelude::*;

use crate::spec::{QuerySpec, ValidatedSpec};

/// One test record; every other field is null (or a fixed value where required).
#[derive(Debug, Clone)]
pub(crate) struct Rec {
    pub(crate) mission: &'static str,
    pub(crate) person: String,
    pub(crate) record: String,
    pub(crate) registration: (i32, u32),
    pub(crate) closed: Option<(i32, u32)>,
    pub(crate) gender: Option<&'static str>,
    pub(crate) types: Option<Vec<&'static str>>,
    pub(crate) shelter_accepted: Option<bool>,
}

pub(crate) fn rec(person: &str, record: &str, year: i32) -> Rec {
    Rec {
        mission: "KGZ",
        person: person.into(),
        record: record.into(),
        registration: (year, 3),
        closed: None,
        gender: None,
        types: None,
        shelter_accepted: None,
    }
}

/// Days from 1970-01-01 to the first of the month (proleptic Gregorian).
pub(crate) fn days(year: i32, month: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month as i32 + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A test key as stored: the text itself (format 1), or its bytes padded with zeros to 16
/// (format 2), which orders the keys as their text does.
fn stored_key(text: &str) -> [u8; pseudonyms::BYTES] {
    assert!(
        text.len() <= pseudonyms::BYTES,
        "test key {text} is too long"
    );
    let mut bytes = [0u8; pseudonyms::BYTES];
    bytes[..text.len()].copy_from_slice(text.as_bytes());
    bytes
}

pub(crate) fn record_batch(recs: &[Rec], keys: KeyEncoding) -> RecordBatch {
    let schema = arrow_schema_for(keys);
    let columns: Vec<ArrayRef> = FIELDS
        .iter()
        .map(|f| -> ArrayRef {
            match f.kind {
                FieldKind::Pseudonym if keys == KeyEncoding::Binary => {
                    let mut b = FixedSizeBinaryBuilder::new(pseudonyms::BYTES as i32);
                    for r in recs {
                        let text = match f.name {
                            "record_key" => &r.record,
                            _ => &r.person,
                        };
                        b.append_value(stored_key(text)).unwrap();
                    }
                    Arc::new(b.finish())
                }
                FieldKind::Month => {
                    let mut b = Date32Builder::new();
                    for r in recs {
                        b.append_option(match f.name {
                            "registration_month" => Some(days(r.registration.0, r.registration.1)),
                            "case_closed_month" => r.closed.map(|(y, m)| days(y, m)),
                            _ => None,
                        });
                    }
                    Arc::new(b.finish())
                }
                FieldKind::Flag => {
                    let mut b = BooleanBuilder::new();
                    for r in recs {
                        b.append_option(match f.name {
                            "shelter_accepted" => r.shelter_accepted,
                            _ => None,
                        });
                    }
                    Arc::new(b.finish())
                }
                FieldKind::CodeSet { .. } => {
                    let mut b = ListBuilder::new(StringBuilder::new()).with_field(Field::new(
                        "item",
                        DataType::Utf8,
                        false,
                    ));
                    for r in recs {
                        match (&r.types, f.name) {
                            (Some(types), "exploitation_types") => {
                                for t in types {
                                    b.values().append_value(t);
                                }
                                b.append(true);
                            }
                            _ => b.append(false),
                        }
                    }
                    Arc::new(b.finish())
                }
                FieldKind::Timestamp => Arc::new(
                    TimestampMillisecondArray::from(vec![0; recs.len()]).with_timezone("+00:00"),
                ),
                _ => {
                    let mut b = StringBuilder::new();
                    for r in recs {
                        b.append_option(match f.name {
                            "schema_version" => Some(ctstats_schemas::SCHEMA_VERSION),
                            "batch_id" => Some("b"),
                            "submitting_org" => Some("org"),
                            "reporting_mission" => Some(r.mission),
                            "record_key" => Some(r.record.as_str()),
                            "person_key" => Some(r.person.as_str()),
                            "person_link_quality" => Some("none"),
                            "gender" => r.gender,
                            _ => None,
                        });
                    }
                    Arc::new(b.finish())
                }
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).expect("test batch fits the schema")
}

/// Write the records as one committed batch per (mission, year) partition, as ingest lays
/// them out, and a manifest listing them.
pub(crate) fn write_dataset(root: &Path, recs: &[Rec]) {
    write_dataset_in(root, recs, KeyEncoding::CURRENT)
}

/// [`write_dataset`] with the keys stored as `keys` (and the manifest format that goes with it).
pub(crate) fn write_dataset_in(root: &Path, recs: &[Rec], keys: KeyEncoding) {
    let mut partitions: BTreeMap<(&str, i32), Vec<Rec>> = BTreeMap::new();
    for r in recs {
        partitions
            .entry((r.mission, r.registration.0))
            .or_default()
            .push(r.clone());
    }
    let mut files = Vec::new();
    for ((mission, year), rows) in &partitions {
        files.push(write_file_in(root, mission, *year, "b1", rows, keys));
    }
    write_manifest(root, files, keys);
}

pub(crate) fn write_file(
    root: &Path,
    mission: &str,
    year: i32,
    batch: &str,
    rows: &[Rec],
) -> FileEntry {
    write_file_in(root, mission, year, batch, rows, KeyEncoding::CURRENT)
}

fn write_file_in(
    root: &Path,
    mission: &str,
    year: i32,
    batch: &str,
    rows: &[Rec],
    keys: KeyEncoding,
) -> FileEntry {
    let relative = format!("{}/part-{batch}.parquet", partition_dir(mission, year));
    let path = root.join(&relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = arrow_schema_for(keys);
    let mut writer = ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
    writer.write(&record_batch(rows, keys)).unwrap();
    writer.close().unwrap();
    FileEntry {
        path: relative,
        rows: rows.len() as u64,
    }
}

fn write_manifest(root: &Path, files: Vec<FileEntry>, keys: KeyEncoding) {
    let manifest = Manifest {
        format: match keys {
            KeyEncoding::Hex => 1,
            KeyEncoding::Binary => MANIFEST_FORMAT,
        },
        generation: 1,
        key_id: Some("test".into()),
        batches: vec![BatchEntry {
            batch_id: "b1".into(),
            seq: 1,
            organisation: "org".into(),
            reporting_mission: "KGZ".into(),
            format: "parquet".into(),
            profile: "test".into(),
            content_hash: "0".into(),
            rows_read: 0,
            rows_accepted: 0,
            rows_rejected: 0,
            rows_superseding: 0,
            schema_version: ctstats_schemas::SCHEMA_VERSION.into(),
            key_id: "test".into(),
            committed_at: "2024-01-01T00:00:00Z".into(),
            files,
        }],
        ..Manifest::default()
    };
    let json = serde_json::to_vec_pretty(&manifest).unwrap();
    std::fs::write(root.join(MANIFEST_FILE), json).unwrap();
}

/// The dataset at `root` as the service reads it: from its in-memory snapshot.
pub(crate) fn in_memory(root: &Path) -> crate::data::Data {
    crate::data::Data::new(root, crate::service::DEFAULT_MEMORY_BUDGET)
}

pub(crate) fn missions() -> Vec<String> {
    vec!["KGZ".into(), "UKR".into()]
}

pub(crate) fn spec(json: &str) -> ValidatedSpec {
    QuerySpec::from_json(json)
        .and_then(|s| s.validate(&missions()))
        .unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

// Generated datasets for property tests: up to 4 persons of up to 4 records each.

/// Exploitation types the generated records carry.
pub(crate) const TYPES: [&str; 5] = [
    "forced_labour",
    "sexual_exploitation",
    "forced_begging",
    "slavery",
    "other",
];

pub(crate) fn arb_record() -> impl Strategy<Value = Rec> {
    (
        (
            prop::sample::select(vec!["KGZ", "UKR", "MDA"]),
            2003..=2006i32,
            1..=12u32,
            0..1000u32,
        ),
        prop::option::of(-3..30i32),
        prop::option::of(prop::sample::select(vec!["female", "male"])),
        prop::option::of(prop::collection::vec(
            prop::sample::select(TYPES.to_vec()),
            0..4,
        )),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |((mission, year, month, key), closed, gender, types, shelter)| {
                let start = i64::from(year) * 12 + i64::from(month) - 1;
                let closed = closed.map(|d| {
                    let m = start + i64::from(d);
                    (m.div_euclid(12) as i32, m.rem_euclid(12) as u32 + 1)
                });
                Rec {
                    mission,
                    person: String::new(),
                    record: format!("{key:03x}"),
                    registration: (year, month),
                    closed,
                    gender,
                    types,
                    shelter_accepted: shelter,
                }
            },
        )
}

pub(crate) fn arb_dataset() -> impl Strategy<Value = Vec<Rec>> {
    prop::collection::vec(prop::collection::vec(arb_record(), 1..5), 1..5).prop_map(|persons| {
        persons
            .into_iter()
            .enumerate()
            .flat_map(|(p, recs)| {
                recs.into_iter().enumerate().map(move |(i, mut r)| {
                    r.person = format!("person{p}");
                    r.record = format!("{}-{p}-{i}", r.record);
                    r
                })
            })
            .collect()
    })
}
