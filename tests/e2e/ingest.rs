//! Ingest end to end: the atomic commit under crashes, corrections, withdrawals, duplicates,
//! identifier leaks and the command line.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use ctstats_ingest::{Dataset, Error, Secret, Status};
use ctstats_schemas::manifest::Manifest;

use crate::common::*;

const FILE_A: &str = "case_id;Фамилия;Имя;Дата рождения;registration_date;Пол;citizenship;shelter_offered\n\
K-1;Асанова;Айгуль;14.03.1987;2005-06-20;ж;KG;да\n\
K-2;Иванов;Пётр;01.01.1990;2006-02-01;м;KZ;нет\n\
K-3;Токтогулова;Жылдыз;02.09.1992;2006-11-05;ж;KGZ;\n";

/// Corrects K-1 (shelter now "no", registered in 2007) and adds two cases.
const FILE_B: &str = "case_id;Фамилия;Имя;Дата рождения;registration_date;Пол;citizenship;shelter_offered\n\
K-1;Асанова;Айгуль;14.03.1987;2007-01-10;ж;KG;нет\n\
K-4;Осмонов;Бакыт;05.05.1980;2007-03-01;м;KG;да\n\
K-5;Садыкова;Гульнара;01.07.1995;2008-05-12;ж;TJ;да\n";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run_cli(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(ctstats_bin());
    cmd.args(args).env_remove("CTSTATS_CRASH_AT_STEP");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn cli_ingest(data: &Path, key: &Path, file: &Path, envs: &[(&str, &str)]) -> Output {
    run_cli(
        &[
            "ingest",
            "--data",
            data.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--org",
            "ngo-a",
            "--mission",
            "KGZ",
            file.to_str().unwrap(),
        ],
        envs,
    )
}

/// The dataset's content without the commit clock, for comparing runs made at different times.
fn content(root: &Path) -> String {
    render_rows(root)
        .lines()
        .filter(|l| !l.starts_with("  ingested_at:"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Check the manifest invariant: every listed file exists, with the listed number of rows, and
/// is readable; returns the live row count.
fn check_consistent(root: &Path) -> u64 {
    let manifest = Manifest::read(root).expect("the manifest is always whole");
    for f in manifest.live_files() {
        let batches =
            ctstats_ingest::dataset::read_file(root, f).expect("every listed file is readable");
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(
            rows as u64, f.rows,
            "{} has the row count the manifest says",
            f.path
        );
    }
    manifest.live_rows()
}

fn parquet_files(root: &Path) -> HashSet<String> {
    files_under(&root.join("data"))
        .into_iter()
        .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Crash an ingest of FILE_B (new rows plus a correction that rewrites a file of FILE_A's batch)
/// at every durable step in turn. After each crash the dataset must hold batch A alone or
/// A corrected by B, never a mix; the next writer must clean up and reach the same final state
/// as a run that never crashed.
#[test]
fn crash_at_every_commit_step_leaves_all_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let key = write_test_key(tmp.path());
    let (a, b) = (
        write(tmp.path(), "a.csv", FILE_A),
        write(tmp.path(), "b.csv", FILE_B),
    );
    let base = tmp.path().join("base");
    assert!(cli_ingest(&base, &key, &a, &[]).status.success());
    let before = content(&base);

    let reference = tmp.path().join("reference");
    copy_dir(&base, &reference);
    assert!(cli_ingest(&reference, &key, &b, &[]).status.success());
    let after = content(&reference);
    assert_ne!(before, after);
    assert_eq!(
        check_consistent(&reference),
        5,
        "K-1 corrected, K-2..K-5 live"
    );

    let mut crashes = 0;
    for step in 1..100 {
        let work = tmp.path().join(format!("work-{step}"));
        copy_dir(&base, &work);
        let out = cli_ingest(
            &work,
            &key,
            &b,
            &[("CTSTATS_CRASH_AT_STEP", &step.to_string())],
        );
        if out.status.success() {
            break;
        }
        crashes += 1;
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("crash injected"),
            "step {step} crashed as injected"
        );
        check_consistent(&work);
        let seen = content(&work);
        assert!(
            seen == before || seen == after,
            "after a crash at step {step} the dataset is A or A+B, not a mix"
        );
        // The next writer recovers: finishing the ingest gives the reference state and no orphan file.
        let retry = cli_ingest(&work, &key, &b, &[]);
        assert!(
            retry.status.success(),
            "retry after crash at step {step}: {}",
            String::from_utf8_lossy(&retry.stderr)
        );
        assert_eq!(
            content(&work),
            after,
            "state after crash at step {step} and retry"
        );
        let listed: HashSet<String> = Manifest::read(&work)
            .unwrap()
            .live_files()
            .map(|f| f.path.clone())
            .collect();
        let on_disk = parquet_files(&work);
        // The retry after a post-commit crash is a duplicate no-op; orphans go at the next commit.
        assert!(listed.is_subset(&on_disk));
    }
    assert!(
        crashes >= 6,
        "the commit has at least six durable steps, {crashes} crashed"
    );
}

/// Kill the process (SIGKILL) at a range of moments during a larger ingest.
#[test]
fn kill_during_ingest_leaves_all_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let key = write_test_key(tmp.path());
    let mut text = String::from("case_id,registration_date,gender,citizenship\n");
    for i in 0..30_000 {
        text.push_str(&format!(
            "C-{i},{}-{:02}-01,female,KGZ\n",
            2003 + i % 6,
            1 + i % 12
        ));
    }
    let file = write(tmp.path(), "big.csv", &text);
    // Kill moments grow from 5% of an uninterrupted run until a run finishes before its kill.
    let started = std::time::Instant::now();
    assert!(
        cli_ingest(&tmp.path().join("timing"), &key, &file, &[])
            .status
            .success()
    );
    let mut delay_ms = (started.elapsed().as_millis() as u64 / 20).max(1);
    let (mut killed, mut finished) = (0, false);
    for round in 0..25 {
        let work = tmp.path().join(format!("kill-{round}"));
        let mut child = Command::new(ctstats_bin())
            .args([
                "ingest",
                "--data",
                work.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
            ])
            // The organisation of `cli_ingest`, which retries: a run killed after its commit
            // left the batch, and the retry must find it a duplicate, not a second batch.
            .args(["--org", "ngo-a", "--mission", "KGZ", file.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let _ = child.wait();
        delay_ms = delay_ms * 3 / 2 + 1;
        if finished {
            assert_eq!(check_consistent(&work), 30_000);
            break;
        }
        killed += 1;
        if !work.exists() {
            continue;
        }
        let rows = check_consistent(&work);
        assert!(
            rows == 0 || rows == 30_000,
            "killed after {delay_ms} ms: {rows} rows live"
        );
        let retry = cli_ingest(&work, &key, &file, &[]);
        assert!(retry.status.success());
        // After a successful retry every Parquet file on disk is listed: orphans were removed.
        let listed: HashSet<String> = Manifest::read(&work)
            .unwrap()
            .live_files()
            .map(|f| f.path.clone())
            .collect();
        assert_eq!(
            listed,
            parquet_files(&work),
            "no orphan after recovery (killed after {delay_ms} ms)"
        );
        assert_eq!(check_consistent(&work), 30_000);
    }
    assert!(
        finished && killed >= 3,
        "{killed} runs killed before one finished"
    );
}

#[test]
fn reingest_is_a_reported_noop() {
    let tmp = tempfile::tempdir().unwrap();
    let dataset = Dataset::open(&tmp.path().join("ds")).unwrap();
    let a = write(tmp.path(), "a.csv", FILE_A);
    let first = ingest_file(&dataset, &a, "ngo-a", "KGZ", "canonical", false);
    assert_eq!(first.status, Status::Committed);
    let manifest = dataset.manifest().unwrap();
    let again = ingest_file(&dataset, &a, "ngo-a", "KGZ", "canonical", false);
    assert_eq!(again.status, Status::Duplicate);
    assert_eq!(again.duplicate_of, first.batch_id);
    assert_eq!(
        dataset.manifest().unwrap(),
        manifest,
        "a duplicate changes nothing"
    );
    // The same file from another organisation is that organisation's batch.
    let other = ingest_file(&dataset, &a, "ngo-b", "KGZ", "canonical", false);
    assert_eq!(other.status, Status::Committed);
    assert_eq!(live_rows(dataset.root()), 6);
}

#[test]
fn correction_supersedes_the_earlier_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dataset = Dataset::open(&tmp.path().join("ds")).unwrap();
    let a = write(tmp.path(), "a.csv", FILE_A);
    let b = write(tmp.path(), "b.csv", FILE_B);
    ingest_file(&dataset, &a, "ngo-a", "KGZ", "canonical", false);
    let report = ingest_file(&dataset, &b, "ngo-a", "KGZ", "canonical", false);
    assert_eq!(report.rows_superseding, 1);
    assert_eq!(live_rows(dataset.root()), 5);
    let rows = render_rows(dataset.root());
    assert_eq!(
        rows.matches("registration_month: 2005-06-01").count(),
        0,
        "the old K-1 is gone"
    );
    assert_eq!(
        rows.matches("registration_month: 2007-01-01").count(),
        1,
        "the corrected K-1 is live"
    );
    let manifest = dataset.manifest().unwrap();
    assert_eq!(
        manifest.batches[0]
            .files
            .iter()
            .map(|f| f.rows)
            .sum::<u64>(),
        2
    );
    // The same case id at another organisation is another record: nothing is superseded.
    let other = ingest_file(&dataset, &b, "ngo-other", "KGZ", "canonical", false);
    assert_eq!(other.rows_superseding, 0);
    assert_eq!(live_rows(dataset.root()), 8);
}

/// Rewrite the committed dataset at `root` as manifest format 1 stored it (before keys were 16
/// raw bytes): the keys as 32-character hex text, each file's key-value metadata kept, the
/// manifest's format 1.
fn as_format_1(root: &Path) {
    use arrow::array::{ArrayRef, RecordBatch, StringArray};
    use ctstats_schemas::pseudonyms::KeyColumn;
    use ctstats_schemas::{KeyEncoding, arrow_schema_for, manifest::MANIFEST_FILE};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::properties::WriterProperties;

    let schema = arrow_schema_for(KeyEncoding::Hex);
    let mut manifest = Manifest::read(root).unwrap();
    assert_eq!(manifest.format, 2, "new datasets are created in format 2");
    for f in manifest.live_files() {
        let path = root.join(&f.path);
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap()).unwrap();
        let kv = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned();
        let batches: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        let props = WriterProperties::builder()
            .set_key_value_metadata(kv)
            .build();
        let out = std::fs::File::create(&path).unwrap();
        let mut writer = ArrowWriter::try_new(out, schema.clone(), Some(props)).unwrap();
        for batch in batches {
            let columns: Vec<ArrayRef> = batch
                .schema()
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(field, column)| match field.name().as_str() {
                    "record_key" | "person_key" => {
                        let keys = KeyColumn::new(column.as_ref()).unwrap();
                        let text: StringArray =
                            (0..keys.len()).map(|i| Some(keys.hex(i))).collect();
                        std::sync::Arc::new(text) as ArrayRef
                    }
                    _ => column.clone(),
                })
                .collect();
            writer
                .write(&RecordBatch::try_new(schema.clone(), columns).unwrap())
                .unwrap();
        }
        writer.close().unwrap();
    }
    manifest.format = 1;
    std::fs::write(
        root.join(MANIFEST_FILE),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

/// The stored type of `column` in every live file of the dataset at `root`.
fn stored_types(root: &Path, column: &str) -> HashSet<String> {
    live_batches(root)
        .iter()
        .map(|b| b.column_by_name(column).unwrap().data_type().to_string())
        .collect()
}

// A dataset of manifest format 1 (keys as hex text) is read, corrected, grown and withdrawn from
// in its own format, and ends up holding what a format 2 dataset given the same files holds.
#[test]
fn a_format_1_dataset_grows_in_its_own_format_and_holds_what_format_2_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (tmp.path().join("old"), tmp.path().join("new"));
    let a = write(tmp.path(), "a.csv", FILE_A);
    let b = write(tmp.path(), "b.csv", FILE_B);
    for root in [&old, &new] {
        let dataset = Dataset::open(root).unwrap();
        ingest_file(&dataset, &a, "ngo-a", "KGZ", "canonical", false);
    }
    let before = render_rows(&new);
    as_format_1(&old);
    assert_eq!(
        stored_types(&old, "person_key"),
        ["Utf8".to_string()].into()
    );
    assert_eq!(
        render_rows(&old),
        before,
        "the keys read back as the same hex"
    );

    for root in [&old, &new] {
        let dataset = Dataset::open(root).unwrap();
        let report = ingest_file(&dataset, &b, "ngo-a", "KGZ", "canonical", false);
        assert_eq!(report.status, Status::Committed);
        assert_eq!(report.rows_superseding, 1, "the correction of K-1 is found");
        let withdrawn =
            ctstats_ingest::withdraw(&dataset, &test_secret(), "ngo-a", "K-2", test_now())
                .unwrap()
                .rows_removed;
        assert_eq!(withdrawn, 1);
    }
    assert_eq!(Manifest::read(&old).unwrap().format, 1, "format 1 stays 1");
    assert_eq!(Manifest::read(&new).unwrap().format, 2);
    for column in ["record_key", "person_key"] {
        assert_eq!(stored_types(&old, column), ["Utf8".to_string()].into());
        assert_eq!(
            stored_types(&new, column),
            ["FixedSizeBinary(16)".to_string()].into()
        );
    }
    assert_eq!(live_rows(&old), 4);
    assert_eq!(render_rows(&old), render_rows(&new));
}

#[test]
fn withdrawal_removes_the_record_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let key = write_test_key(tmp.path());
    let data = tmp.path().join("ds");
    let a = write(tmp.path(), "a.csv", FILE_A);
    assert!(cli_ingest(&data, &key, &a, &[]).status.success());
    let record_key = test_secret().purpose_keys().record_key("ngo-a", "K-2");
    assert!(render_rows(&data).contains(&record_key));

    let (data_arg, key_arg) = (data.to_str().unwrap(), key.to_str().unwrap());
    let withdraw = [
        "withdraw",
        "--data",
        data_arg,
        "--key",
        key_arg,
        "--org",
        "ngo-a",
        "--case-id",
        "K-2",
    ];
    let out = run_cli(&withdraw, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 row(s)"));
    assert!(
        !render_rows(&data).contains(&record_key),
        "the withdrawn record is gone from every live file"
    );
    assert_eq!(check_consistent(&data), 2);
    let manifest = Manifest::read(&data).unwrap();
    assert_eq!(manifest.withdrawals.len(), 1);
    assert_eq!(manifest.withdrawals[0].record_key, record_key);
    let listed: HashSet<String> = manifest.live_files().map(|f| f.path.clone()).collect();
    assert_eq!(
        listed,
        parquet_files(&data),
        "the old file holding the record is deleted"
    );

    let again = run_cli(&withdraw, &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no record with that case id"));
    // Another organisation cannot withdraw ngo-a's record.
    let dataset = Dataset::open(&data).unwrap();
    let err =
        ctstats_ingest::withdraw(&dataset, &test_secret(), "ngo-b", "K-1", test_now()).unwrap_err();
    assert!(matches!(err, Error::NoSuchRecord { .. }));
    assert_eq!(check_consistent(&data), 2);
}

#[test]
fn a_different_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dataset = Dataset::open(&tmp.path().join("ds")).unwrap();
    let a = write(tmp.path(), "a.csv", FILE_A);
    ingest_file(&dataset, &a, "ngo-a", "KGZ", "canonical", false);
    let b = write(tmp.path(), "b.csv", FILE_B);
    let request = ctstats_ingest::IngestRequest {
        path: b,
        organisation: "ngo-a".into(),
        mission: "KGZ".into(),
        profile: ctstats_ingest::Profile::load("canonical").unwrap(),
        read: ctstats_ingest::read::ReadOptions::new(ctstats_ingest::read::Format::Csv),
        accept_valid: false,
        now: test_now(),
    };
    let other = Secret::from_bytes([7; 32]);
    let err = ctstats_ingest::ingest(&dataset, &other, &request, &Default::default()).unwrap_err();
    assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
    assert_eq!(live_rows(dataset.root()), 3);
}

/// Canary identifiers in every identifying column, in Cyrillic and Latin, plus one typed into a
/// coded column so it lands in an error path. None may appear, in any normalised form, in the
/// dataset (raw bytes and decompressed values), the JSON report, stdout or the debug log.
#[test]
fn canary_identifiers_reach_no_disk_report_or_log() {
    let tmp = tempfile::tempdir().unwrap();
    let key = write_test_key(tmp.path());
    let data = tmp.path().join("ds");
    let report = tmp.path().join("report.json");
    let canaries = [
        "Канареечкина",
        "Зоряна",
        "Canaryfirstname",
        "Canarysurname",
        "1911-11-11",
        "11.11.1911",
        "CANARYDOC7741",
        "+99655577331",
        "canary.mail@example.org",
        "Canary street 12",
        "Canary free text note",
        "Canarygendervalue",
    ];
    let text = format!(
        "case_id,last_name,first_name,birth_date,document_number,Phone,email,address,notes,registration_date,gender\n\
         Q-1,{},{},{},{},{},{},{},{},2005-01-10,female\n\
         Q-2,{},{},{},,,,,,2005-02-10,male\n\
         Q-3,Aa,Bb,1980-01-01,,,,,,2005-03-10,{}\n",
        canaries[0],
        canaries[1],
        canaries[4],
        canaries[6],
        canaries[7],
        canaries[8],
        canaries[9],
        canaries[10],
        canaries[3],
        canaries[2],
        canaries[5],
        canaries[11]
    );
    let file = write(tmp.path(), "canary.csv", &text);
    let out = run_cli(
        &[
            "-vv",
            "ingest",
            "--data",
            data.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--org",
            "ngo-canary",
            "--mission",
            "KGZ",
            "--accept-valid",
            "--report",
            report.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
        &[("RUST_LOG", "trace")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        check_consistent(&data),
        2,
        "two valid rows committed, the third rejected"
    );

    let mut haystacks = vec![
        ("stdout", String::from_utf8_lossy(&out.stdout).into_owned()),
        ("stderr", String::from_utf8_lossy(&out.stderr).into_owned()),
        ("report", std::fs::read_to_string(&report).unwrap()),
        ("decompressed values", all_strings(&data)),
    ];
    for path in files_under(&data) {
        haystacks.push((
            path.to_str().unwrap().to_string().leak(),
            String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned(),
        ));
    }
    assert!(
        haystacks[3].1.contains("ngo-canary"),
        "the search sees decompressed values"
    );
    let haystacks: Vec<(String, String)> = haystacks
        .into_iter()
        .map(|(name, hay)| (name.to_string(), hay))
        .collect();
    assert_no_canary(&canaries, &haystacks);
}

#[test]
fn cli_reports_rejection_with_exit_code_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let key = write_test_key(tmp.path());
    let data = tmp.path().join("ds");
    let bad = write(
        tmp.path(),
        "bad.csv",
        "case_id,registration_date,gender\nA,2005-01-01,female\nB,2005-13-01,female\n",
    );
    let report = tmp.path().join("r.json");
    let out = run_cli(
        &[
            "ingest",
            "--data",
            data.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--org",
            "o",
            "--mission",
            "kg",
        ]
        .into_iter()
        .chain(["--report", report.to_str().unwrap(), bad.to_str().unwrap()])
        .collect::<Vec<_>>(),
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "a rejected batch exits with 3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("REJECTED") && stdout.contains("row 3, column \"registration_date\""),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json[0]["status"], "rejected");
    assert_eq!(json[0]["issues"][0]["row"], 3);
    assert_eq!(json[0]["issues"][0]["rule"], "invalid_date");
    assert_eq!(check_consistent(&data), 0, "nothing was written");

    let batches = run_cli(&["batches", "--data", data.to_str().unwrap()], &[]);
    assert!(String::from_utf8_lossy(&batches.stdout).contains("0 batch(es)"));
    let schema = run_cli(&["schema", "--format", "json"], &[]);
    let doc: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
    assert_eq!(doc["schema_version"], ctstats_schemas::SCHEMA_VERSION);
    assert!(
        doc["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "person_key")
    );
}

#[test]
fn keygen_refuses_the_dataset_directory_and_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ds");
    std::fs::create_dir_all(&data).unwrap();
    let inside = data.join("k");
    let out = run_cli(
        &[
            "keygen",
            "--key",
            inside.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(!inside.exists());
    let outside = tmp.path().join("k");
    assert!(
        run_cli(&["keygen", "--key", outside.to_str().unwrap()], &[])
            .status
            .success()
    );
    let again = run_cli(&["keygen", "--key", outside.to_str().unwrap()], &[]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
}

// Rows are mapped on every core in chunks and put back in file order: a file of several chunks
// with scattered bad rows gets the report the one-thread path (JSON Lines) gives the same rows.
#[test]
fn rows_mapped_in_parallel_are_reported_in_file_order() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = 5_000;
    let bad = |i: usize| i % 701 == 5 || i.is_multiple_of(997);
    let gender = |i: usize| {
        if bad(i) {
            "zz"
        } else if i.is_multiple_of(2) {
            "ж"
        } else {
            "м"
        }
    };
    let mut csv = String::from("case_id;Фамилия;Имя;Дата рождения;registration_date;Пол\n");
    let mut jsonl = String::new();
    for i in 0..rows {
        let id = if i == 4_321 {
            "K-4320".to_string()
        } else {
            format!("K-{i}")
        };
        let reg = format!("20{:02}-0{}-1{}", 5 + i % 4, 1 + i % 9, i % 10);
        csv.push_str(&format!(
            "{id};Иванов;Пётр{i};01.01.1990;{reg};{}\n",
            gender(i)
        ));
        jsonl.push_str(&format!(
            "{{\"case_id\":\"{id}\",\"Фамилия\":\"Иванов\",\"Имя\":\"Пётр{i}\",\
             \"Дата рождения\":\"01.01.1990\",\"registration_date\":\"{reg}\",\"Пол\":\"{}\"}}\n",
            gender(i)
        ));
    }
    let reports: Vec<_> = [("rows.csv", csv), ("rows.jsonl", jsonl)]
        .into_iter()
        .map(|(name, text)| {
            let dataset = Dataset::open(&tmp.path().join(name).with_extension("ds")).unwrap();
            let file = write(tmp.path(), name, &text);
            let report = ingest_file(&dataset, &file, "ngo-a", "KGZ", "canonical", true);
            (report, live_rows(dataset.root()))
        })
        .collect();
    let (csv, jsonl) = (&reports[0], &reports[1]);
    let expected_bad = (0..rows).filter(|i| bad(*i)).count() as u64;
    assert_eq!(csv.0.rows_read, rows as u64);
    // The bad genders, and both rows of the repeated case id.
    assert_eq!(csv.0.rows_invalid, expected_bad + 2);
    assert_eq!(csv.0.rows_committed, rows as u64 - expected_bad - 2);
    assert_eq!(csv.1 as u64, csv.0.rows_committed);
    // CSV rows are numbered from the header (row 1), JSON Lines from the first line.
    let issues = |r: &ctstats_ingest::IngestReport, offset: u64| -> Vec<(u64, String)> {
        r.issues
            .iter()
            .map(|i| (i.row - offset, i.rule.name().to_string()))
            .collect()
    };
    assert_eq!(issues(&csv.0, 1), issues(&jsonl.0, 0));
    assert!(issues(&csv.0, 1).windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(csv.0.issues_by_rule, jsonl.0.issues_by_rule);
    assert_eq!(csv.0.person_link_quality, jsonl.0.person_link_quality);
    assert_eq!(
        (csv.0.rows_valid, csv.0.rows_committed, csv.1),
        (jsonl.0.rows_valid, jsonl.0.rows_committed, jsonl.1)
    );
}
