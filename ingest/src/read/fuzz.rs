//! Fuzz targets for every reader and for the import profile TOML, with proptest: hostile bytes
//! (random, or a valid file with bytes overwritten, inserted and deleted) must give rows or
//! errors with a rule, never a panic, and never a cell or header beyond the limits.
//!
//! In `cargo test` each target runs 64 cases. For a long run outside CI:
//!
//! ```text
//! CTSTATS_FUZZ_SECONDS=600 cargo test --workspace --lib -p ctstats-ingest fuzz_ -- --test-threads 1 --nocapture
//! ```
//!
//! runs each target for that many seconds (fresh random seeds every 64 cases) and prints how
//! many cases it ran.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::*;
use crate::profile::Profile;

/// Run `test` on `strategy`'s inputs: 64 cases, or for `CTSTATS_FUZZ_SECONDS`.
fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let deadline = std::env::var("CTSTATS_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(|s| Instant::now() + Duration::from_secs(s));
    let started = Instant::now();
    let mut cases = 0u64;
    loop {
        let mut runner = TestRunner::new(Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz {name}: {e}");
        }
        cases += 64;
        if deadline.is_none_or(|d| Instant::now() >= d) {
            break;
        }
    }
    eprintln!(
        "fuzz {name}: {cases} cases in {:.0} s, no failure",
        started.elapsed().as_secs_f64()
    );
}

/// Random bytes, or `seed` with up to 16 bytes overwritten, inserted or deleted.
fn hostile(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let mutated = prop::collection::vec((any::<usize>(), any::<u8>(), 0..3u8), 1..16).prop_map(
        move |edits| {
            let mut bytes = seed.clone();
            for (at, byte, op) in edits {
                let i = if bytes.is_empty() {
                    0
                } else {
                    at % bytes.len()
                };
                match op {
                    0 if !bytes.is_empty() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ if !bytes.is_empty() => {
                        bytes.remove(i);
                    }
                    _ => bytes.push(byte),
                }
            }
            bytes
        },
    );
    prop_oneof![prop::collection::vec(any::<u8>(), 0..2048), mutated]
}

const LIMITS: Limits = Limits {
    max_cell_bytes: 256,
    max_line_bytes: 4096,
    max_columns: 64,
    max_unpacked_bytes: 1 << 20,
};

/// Read `bytes` as `format` to the end (or 10,000 rows) and check every outcome.
fn read_all(bytes: &[u8], format: Format, extension: &str) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("input.{extension}"));
    std::fs::write(&path, bytes).unwrap();
    let mut options = ReadOptions::new(format);
    options.limits = LIMITS;
    let mut source = match open(&path, &options, Progress::default()) {
        Ok(source) => source,
        Err(e) => {
            prop_assert!(e.fatal && !e.problem.rule.name().is_empty(), "{e:?}");
            return Ok(());
        }
    };
    for _ in 0..10_000 {
        prop_assert!(source.header().len() <= LIMITS.max_columns);
        match source.next_row() {
            None => break,
            Some(Ok(row)) => {
                for cell in row.values.iter().flatten() {
                    prop_assert!(
                        cell.len() <= LIMITS.max_cell_bytes,
                        "a cell of {}",
                        cell.len()
                    );
                }
            }
            Some(Err(e)) => {
                prop_assert!(!e.problem.rule.name().is_empty(), "{e:?}");
                if e.fatal {
                    break;
                }
            }
        }
    }
    Ok(())
}

fn golden(case: &str, file: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/golden")
        .join(case)
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn fuzz_csv_reader() {
    let seed = golden("canonical-csv-utf8", "input.csv");
    fuzz("csv", hostile(seed), |b| read_all(&b, Format::Csv, "csv"));
}

#[test]
fn fuzz_jsonl_reader() {
    let seed = golden("canonical-jsonl", "input.jsonl");
    fuzz("jsonl", hostile(seed), |b| {
        read_all(&b, Format::Jsonl, "jsonl")
    });
}

#[test]
fn fuzz_xlsx_reader() {
    let seed = golden("canonical-xlsx", "input.xlsx");
    fuzz("xlsx", hostile(seed), |b| {
        read_all(&b, Format::Xlsx, "xlsx")
    });
}

#[test]
fn fuzz_parquet_reader() {
    let seed = golden("canonical-parquet", "input.parquet");
    fuzz("parquet", hostile(seed), |b| {
        read_all(&b, Format::Parquet, "parquet")
    });
}

#[test]
fn fuzz_profile_toml() {
    let seed = r#"name = "fuzz"
extends = "htcds"

[columns]
gender = ["Пол", "sex"]
registration_date = ["Дата регистрации"]

[codes.gender]
"ж" = "female"
"м" = "male"
"#
    .as_bytes()
    .to_vec();
    fuzz("profile toml", hostile(seed), |bytes| {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = Profile::from_toml("fuzz.toml", &text) {
            prop_assert!(!e.to_string().is_empty());
        }
        Ok(())
    });
}
