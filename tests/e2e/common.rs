//! Helpers shared by the end-to-end tests: a fixed key and clock, a temporary dataset, and a
//! deterministic text rendering of what a dataset holds.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, TimeZone, Utc};
use ctstats_ingest::read::{Format, Progress, ReadOptions};
use ctstats_ingest::{Dataset, IngestReport, IngestRequest, Profile, Secret};
use ctstats_schemas::manifest::Manifest;

/// The fixed test secret: never a deployment's.
pub const TEST_KEY: [u8; 32] = *b"ctstats-test-key-0123456789abcde";

pub fn test_secret() -> Secret {
    Secret::from_bytes(TEST_KEY)
}

/// The fixed ingest clock.
pub fn test_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
}

/// Path of the `ctstats` binary built for these tests.
pub fn ctstats_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ctstats"))
}

/// Write the test key to a 0600 file in `dir` and return its path.
pub fn write_test_key(dir: &Path) -> PathBuf {
    let path = dir.join("test.key");
    test_secret().write_new(&path, None).unwrap();
    path
}

/// Ingest `path` in-process with the test key and clock.
pub fn ingest_file(
    dataset: &Dataset,
    path: &Path,
    org: &str,
    mission: &str,
    profile: &str,
    accept_valid: bool,
) -> IngestReport {
    let format = Format::from_path(path).expect("fixture has a known extension");
    let request = IngestRequest {
        path: path.to_path_buf(),
        organisation: org.into(),
        mission: mission.into(),
        profile: Profile::load(profile).unwrap(),
        read: ReadOptions::new(format),
        accept_valid,
        now: test_now(),
    };
    ctstats_ingest::ingest(dataset, &test_secret(), &request, &Progress::default()).unwrap()
}

/// Every live record batch of the dataset at `root`, in manifest order.
pub fn live_batches(root: &Path) -> Vec<RecordBatch> {
    let manifest = Manifest::read(root).unwrap();
    manifest
        .live_files()
        .flat_map(|f| ctstats_ingest::dataset::read_file(root, f).unwrap())
        .collect()
}

/// Every live row rendered as `field: value` lines, rows sorted by their text so the output does
/// not depend on partition order.
pub fn render_rows(root: &Path) -> String {
    let options = FormatOptions::default().with_null("null");
    let mut rows: Vec<String> = Vec::new();
    for batch in live_batches(root) {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for i in 0..batch.num_rows() {
            let mut text = String::new();
            for (field, fmt) in batch.schema().fields().iter().zip(&formatters) {
                text.push_str(&format!("  {}: {}\n", field.name(), fmt.value(i)));
            }
            rows.push(text);
        }
    }
    rows.sort_by_key(|r| {
        let month = r
            .lines()
            .find(|l| l.starts_with("  registration_month"))
            .unwrap_or_default()
            .to_string();
        (month, r.clone())
    });
    rows.iter()
        .enumerate()
        .map(|(i, r)| format!("record {}\n{r}", i + 1))
        .collect()
}

/// Count of live rows.
pub fn live_rows(root: &Path) -> usize {
    live_batches(root).iter().map(|b| b.num_rows()).sum()
}

/// Every string value of every live Parquet file, decompressed.
pub fn all_strings(root: &Path) -> String {
    let options = FormatOptions::default();
    let mut out = String::new();
    for batch in live_batches(root) {
        for column in batch.columns() {
            let fmt = ArrayFormatter::try_new(column.as_ref(), &options).unwrap();
            for i in 0..batch.num_rows() {
                out.push_str(&fmt.value(i).to_string());
                out.push('\n');
            }
        }
    }
    out
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Copy the directory tree at `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Assert that no canary, in any of the forms it could be stored in (as given, lower and upper
/// case, normalised as a name or as a document number; forms of 6 bytes or more), occurs in any
/// haystack, case-insensitively.
pub fn assert_no_canary(canaries: &[&str], haystacks: &[(String, String)]) {
    for canary in canaries {
        let forms = [
            canary.to_string(),
            canary.to_lowercase(),
            canary.to_uppercase(),
            ctstats_ingest::identity::normalise_name(canary),
            ctstats_ingest::identity::normalise_document(canary),
        ];
        for form in forms.iter().filter(|f| f.len() >= 6) {
            for (name, hay) in haystacks {
                let lower = hay.to_lowercase();
                if let Some(i) = lower.find(&form.to_lowercase()) {
                    let line = hay[..i].rsplit('\n').next().unwrap_or("");
                    let line: String = line
                        .chars()
                        .rev()
                        .take(160)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    panic!("canary form {form:?} found in {name}, after: {line:?}");
                }
            }
        }
    }
}
