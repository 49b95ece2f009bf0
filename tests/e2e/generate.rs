//! Synthetic data end to end: ctstats-synth writes NGO files in every format and import profile
//! (and CSV in Windows-1251); ingesting them must report exactly the injected faults, and the
//! committed dataset must reproduce the generator's ground truth (persons linked across NGOs and
//! scripts, cases, minors, genders and exploitation types per mission and year).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::datatypes::Date32Type;
use chrono::{Datelike, Days, NaiveDate};
use ctstats_ingest::{Dataset, Status};
use ctstats_schemas::pseudonyms::KeyColumn;
use ctstats_synth::{
    Config, FileFormat, GeneratedFile, GroundTruth, MissionYear, ProfileKind, TextEncoding,
    generate,
};

use crate::common::*;

fn config(profile: ProfileKind, formats: Vec<FileFormat>, encoding: TextEncoding) -> Config {
    Config {
        persons: 300,
        error_rate: 0.05,
        profile,
        formats,
        encoding,
        ..Config::default()
    }
}

/// Ingest every file; return the problems found in the reports.
fn ingest_generated(files: &[GeneratedFile], dir: &Path, dataset: &Dataset) -> Vec<String> {
    let mut problems = Vec::new();
    for file in files {
        let report = ingest_file(
            dataset,
            &dir.join(&file.path),
            &file.organisation,
            &file.mission,
            file.profile.name(),
            true,
        );
        let name = &file.path;
        if report.file_problem.is_some() || report.status != Status::Committed {
            problems.push(format!(
                "{name}: {:?} {:?}",
                report.status, report.file_problem
            ));
            continue;
        }
        if report.rows_read != file.rows {
            problems.push(format!(
                "{name}: read {} of {}",
                report.rows_read, file.rows
            ));
        }
        if report.rows_invalid != file.dirty_rows.len() as u64 {
            problems.push(format!(
                "{name}: {} invalid, {} injected",
                report.rows_invalid,
                file.dirty_rows.len()
            ));
        }
        let reported: BTreeSet<(u64, String, String)> = report
            .issues
            .iter()
            .map(|i| (i.row, i.column.clone(), i.rule.to_string()))
            .collect();
        let injected: BTreeSet<(u64, String, String)> = file
            .dirty_rows
            .iter()
            .map(|d| (d.row, d.column.clone(), d.rule.clone()))
            .collect();
        if reported != injected {
            problems.push(format!(
                "{name}: reported {reported:?}, injected {injected:?}"
            ));
        }
    }
    problems
}

/// Persons, cases and per mission-year counts as the committed dataset shows them.
fn observed(root: &Path) -> (u64, u64, u64, BTreeMap<String, MissionYear>) {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let mut cells: BTreeMap<String, MissionYear> = BTreeMap::new();
    let mut orgs_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let (mut in_cell, mut minors, mut types, mut genders) = (
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
    );
    let mut cases = 0;
    for batch in live_batches(root) {
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        let (mission, month, person, org, gender) = (
            col("reporting_mission"),
            col("registration_month"),
            col("person_key"),
            col("submitting_org"),
            col("gender"),
        );
        let (mission, month, person, org, gender) = (
            mission.as_string::<i32>(),
            month.as_primitive::<Date32Type>(),
            KeyColumn::new(person.as_ref()).expect("person_key is a key column"),
            org.as_string::<i32>(),
            gender.as_string::<i32>(),
        );
        let (minor, offered, accepted, trial, exploitation) = (
            col("minor_at_registration"),
            col("shelter_offered"),
            col("shelter_accepted"),
            col("participated_in_trial"),
            col("exploitation_types"),
        );
        let yes = |a: &BooleanArray, i: usize| a.is_valid(i) && a.value(i);
        for i in 0..batch.num_rows() {
            cases += 1;
            let year = (epoch + Days::new(month.value(i) as u64)).year();
            let key = format!("{}/{year}", mission.value(i));
            let p = person.hex(i).into_owned();
            orgs_of
                .entry(p.clone())
                .or_default()
                .insert(org.value(i).to_string());
            let cell = cells.entry(key.clone()).or_default();
            cell.cases += 1;
            cell.shelter_offered_cases += u64::from(yes(offered.as_boolean(), i));
            cell.shelter_accepted_cases += u64::from(yes(accepted.as_boolean(), i));
            cell.participated_in_trial_cases += u64::from(yes(trial.as_boolean(), i));
            in_cell.insert((key.clone(), p.clone()));
            if yes(minor.as_boolean(), i) {
                minors.insert((key.clone(), p.clone()));
            }
            if gender.is_valid(i) {
                genders.insert((key.clone(), gender.value(i).to_string(), p.clone()));
            }
            let lists = exploitation.as_list::<i32>();
            if lists.is_valid(i) {
                for t in lists.value(i).as_string::<i32>().iter().flatten() {
                    types.insert((key.clone(), t.to_string(), p.clone()));
                }
            }
        }
    }
    for (key, _) in in_cell {
        cells.entry(key).or_default().persons += 1;
    }
    for (key, _) in minors {
        cells.entry(key).or_default().minors += 1;
    }
    for (key, t, _) in types {
        *cells
            .entry(key)
            .or_default()
            .persons_by_exploitation_type
            .entry(t)
            .or_default() += 1;
    }
    for (key, g, _) in genders {
        *cells
            .entry(key)
            .or_default()
            .persons_by_gender
            .entry(g)
            .or_default() += 1;
    }
    let cross = orgs_of.values().filter(|o| o.len() >= 2).count() as u64;
    (orgs_of.len() as u64, cases, cross, cells)
}

fn round_trip(config: Config) {
    let tmp = tempfile::tempdir().unwrap();
    let files_dir = tmp.path().join("files");
    let generated = generate(&config, &files_dir).unwrap();
    let dataset = Dataset::open(&tmp.path().join("data")).unwrap();
    let label = format!(
        "{} {:?} {:?}",
        config.profile.name(),
        config.formats,
        config.encoding
    );
    let problems = ingest_generated(&generated.files, &files_dir, &dataset);
    assert!(problems.is_empty(), "{label}:\n{}", problems.join("\n"));

    let truth: &GroundTruth = &generated.truth;
    assert!(truth.dirty_rows > 0, "{label}: no faults were injected");
    let (persons, cases, cross, cells) = observed(dataset.root());
    assert_eq!(cases, truth.cases, "{label}: cases");
    assert_eq!(persons, truth.persons, "{label}: distinct person_key");
    assert_eq!(
        cross, truth.cross_ngo_persons,
        "{label}: persons at two NGOs"
    );
    match config.profile {
        ProfileKind::Ctdc => assert_eq!(truth.persons, truth.cases, "{label}"),
        _ => assert!(truth.cross_ngo_persons > 0, "{label}: nobody at two NGOs"),
    }
    let expected: BTreeMap<String, MissionYear> = truth
        .mission_years
        .iter()
        .filter(|(_, m)| m.cases > 0)
        .map(|(k, m)| (k.clone(), m.clone()))
        .collect();
    assert_eq!(cells, expected, "{label}: per mission and year");
}

fn every_format() -> Vec<FileFormat> {
    vec![
        FileFormat::Csv,
        FileFormat::Xlsx,
        FileFormat::Jsonl,
        FileFormat::Parquet,
    ]
}

#[test]
fn synthetic_canonical_files_round_trip() {
    round_trip(config(
        ProfileKind::Canonical,
        every_format(),
        TextEncoding::Utf8,
    ));
    round_trip(config(
        ProfileKind::Canonical,
        vec![FileFormat::Csv],
        TextEncoding::Windows1251,
    ));
}

#[test]
fn synthetic_htcds_files_round_trip() {
    round_trip(config(
        ProfileKind::Htcds,
        every_format(),
        TextEncoding::Utf8,
    ));
    round_trip(config(
        ProfileKind::Htcds,
        vec![FileFormat::Csv],
        TextEncoding::Windows1251,
    ));
}

#[test]
fn synthetic_ctdc_files_round_trip() {
    round_trip(config(
        ProfileKind::Ctdc,
        every_format(),
        TextEncoding::Utf8,
    ));
    round_trip(config(
        ProfileKind::Ctdc,
        vec![FileFormat::Csv],
        TextEncoding::Windows1251,
    ));
}
