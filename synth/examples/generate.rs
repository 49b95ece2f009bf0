//! Generate a synthetic data set and print what was written and how long it took.
//!
//! ```text
//! cargo run --release -p ctstats-synth --example generate -- OUT_DIR [PERSONS] [FORMAT] [PROFILE]
//! ```
//! FORMAT is csv, xlsx, jsonl, parquet or all; PROFILE is canonical, htcds or ctdc.

use std::time::Instant;

use ctstats_synth::{Config, FileFormat, ProfileKind, generate};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        eprintln!("usage: generate OUT_DIR [PERSONS] [FORMAT] [PROFILE]");
        std::process::exit(2);
    };
    let persons = args
        .get(1)
        .map_or(2000, |p| p.parse().expect("PERSONS is a number"));
    let formats = match args.get(2).map_or("csv", String::as_str) {
        "csv" => vec![FileFormat::Csv],
        "xlsx" => vec![FileFormat::Xlsx],
        "jsonl" => vec![FileFormat::Jsonl],
        "parquet" => vec![FileFormat::Parquet],
        "all" => vec![
            FileFormat::Csv,
            FileFormat::Xlsx,
            FileFormat::Jsonl,
            FileFormat::Parquet,
        ],
        other => panic!("unknown format {other}"),
    };
    let profile = match args.get(3).map_or("canonical", String::as_str) {
        "canonical" => ProfileKind::Canonical,
        "htcds" => ProfileKind::Htcds,
        "ctdc" => ProfileKind::Ctdc,
        other => panic!("unknown profile {other}"),
    };
    let config = Config {
        persons,
        formats,
        profile,
        ..Config::default()
    };
    let start = Instant::now();
    let generated = generate(&config, std::path::Path::new(out)).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1);
    });
    let elapsed = start.elapsed();
    let t = &generated.truth;
    println!(
        "{} files, {} rows ({} dirty), {} persons, {} cases, {} at two NGOs, in {:.2} s",
        generated.files.len(),
        t.rows,
        t.dirty_rows,
        t.persons,
        t.cases,
        t.cross_ngo_persons,
        elapsed.as_secs_f64()
    );
}
