//! Golden ingest tests: one folder per case under `tests/data/golden/`, holding the input file,
//! `case.toml` (organisation, mission, profile, policy) and `expected.txt` (the JSON report and
//! the committed rows). Regenerate with `UPDATE_GOLDEN=1 cargo nextest run golden` and review
//! the diff.

use std::path::{Path, PathBuf};

use ctstats_ingest::read::{Format, Progress, ReadOptions};
use ctstats_ingest::{Dataset, IngestRequest, Profile};
use serde::Deserialize;

use crate::common::{render_rows, test_now, test_secret};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    input: String,
    org: String,
    mission: String,
    #[serde(default = "default_profile")]
    profile: String,
    #[serde(default)]
    accept_valid: bool,
    encoding: Option<String>,
    sheet: Option<String>,
}

fn default_profile() -> String {
    "canonical".into()
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden")
}

fn run_case(dir: &Path) -> String {
    let case: Case =
        toml::from_str(&std::fs::read_to_string(dir.join("case.toml")).unwrap()).unwrap();
    let input = dir.join(&case.input);
    let mut read = ReadOptions::new(Format::from_path(&input).unwrap());
    read.encoding = case
        .encoding
        .as_deref()
        .map(|l| encoding_rs::Encoding::for_label(l.as_bytes()).unwrap());
    read.sheet = case.sheet.clone();
    let profile = if case.profile.ends_with(".toml") {
        Profile::load(dir.join(&case.profile).to_str().unwrap()).unwrap()
    } else {
        Profile::load(&case.profile).unwrap()
    };
    let tmp = tempfile::tempdir().unwrap();
    let dataset = Dataset::open(&tmp.path().join("ds")).unwrap();
    let request = IngestRequest {
        path: input,
        organisation: case.org,
        mission: case.mission,
        profile,
        read,
        accept_valid: case.accept_valid,
        now: test_now(),
    };
    let report =
        ctstats_ingest::ingest(&dataset, &test_secret(), &request, &Progress::default()).unwrap();
    assert_eq!(
        report.rows_valid + report.rows_invalid,
        report.rows_read,
        "every row read is accounted for"
    );
    let mut out = String::new();
    out.push_str("=== report ===\n");
    out.push_str(&serde_json::to_string_pretty(&report).unwrap());
    out.push_str("\n=== summary ===\n");
    out.push_str(&report.summary());
    out.push_str("=== committed rows ===\n");
    out.push_str(&render_rows(dataset.root()));
    out
}

#[test]
fn golden_cases() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.toml").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "golden cases are missing");
    let mut failures = Vec::new();
    for dir in &dirs {
        let actual = run_case(dir);
        let expected_path = dir.join("expected.txt");
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if update {
            std::fs::write(&expected_path, &actual).unwrap();
        } else if actual != expected {
            let diff = similar::TextDiff::from_lines(&expected, &actual);
            failures.push(format!(
                "{}:\n{}",
                dir.file_name().unwrap().to_string_lossy(),
                diff.unified_diff()
                    .context_radius(2)
                    .header("expected", "actual")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches (UPDATE_GOLDEN=1 to accept):\n{}",
        failures.join("\n")
    );
}
