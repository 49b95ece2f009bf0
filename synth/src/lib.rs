//! Synthetic NGO case files with a known ground truth, for testing and benchmarking ctstats.
//!
//! [`generate`] writes one file per NGO (`{mission}-{org}.{ext}`) in the columns and spellings
//! of one of ingest's import profiles (`canonical`, `htcds`, `ctdc`), as CSV (UTF-8 or
//! Windows-1251), Excel, JSON Lines or Parquet, plus `files.json` (what each file holds,
//! including the rows carrying an injected fault) and `truth.json` (the counts ingest and the
//! query layer must reproduce from the clean rows).
//!
//! The data looks like counter-trafficking registers of Central Asia and Eastern Europe:
//! - a person may be assisted by two NGOs or in two missions (about 10%), spelled once in
//!   Cyrillic and once in Latin script, and may register again years later (about 10% twice,
//!   2% three times); every episode of a person carries the same identity (the same document
//!   number for the 60% who have one, else the same name, birth date and citizenship), so ingest
//!   links them exactly and the person counts in the truth are exact;
//! - forced labour dominates among Central Asian citizens, sexual exploitation among others;
//!   shelter is offered in about 60% of cases and accepted in about half of those; about 5% of
//!   victims take part in a trial; optional fields are missing at 10 to 30%;
//! - identifying columns ingest must drop (`Телефон`, `notes`, `prs_MobilePhone`);
//! - with probability `error_rate` a row carries exactly one fault (an impossible or future
//!   registration date, an unknown gender code or mojibake, a missing case id, an unknown
//!   country, a bad yes/no), listed in [`GeneratedFile::dirty_rows`] with the row, column and
//!   rule ingest reports.
//!
//! Output is byte-for-byte reproducible for one [`Config`]: every draw comes from ChaCha8
//! streams keyed by the seed, and nothing depends on the clock or on hash-map order.
//!
//! Memory stays bounded for a million persons: persons are drawn one at a time and rebuilt from
//! their index when their rows are written (in registration order per NGO); what is kept per
//! case is 12 bytes, per person one byte plus, for those linked by name, an 8-byte key that keeps
//! (name, birth date, citizenship) unique.

mod data;
mod model;
mod names;
mod render;
mod rng;
mod truth;
mod write;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::Datelike;
use serde::{Deserialize, Serialize};

pub use truth::{GroundTruth, MissionYear};
pub use write::XLSX_MAX_ROWS;

/// File formats ctstats ingests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Csv,
    Xlsx,
    Jsonl,
    Parquet,
}

impl FileFormat {
    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Xlsx => "xlsx",
            FileFormat::Jsonl => "jsonl",
            FileFormat::Parquet => "parquet",
        }
    }

    /// The row number ingest gives the first data row: CSV and Excel count the header as row 1,
    /// JSON Lines and Parquet have no header row.
    pub fn first_data_row(self) -> u64 {
        match self {
            FileFormat::Csv | FileFormat::Xlsx => 2,
            FileFormat::Jsonl | FileFormat::Parquet => 1,
        }
    }
}

/// Text encoding of CSV files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TextEncoding {
    /// UTF-8 without a byte-order mark, `,` delimited.
    #[serde(rename = "utf-8")]
    Utf8,
    /// Windows-1251, `;` delimited, CRLF: what Excel saves in Russian-language Windows.
    #[serde(rename = "windows-1251")]
    Windows1251,
}

/// Which of ingest's built-in import profiles the files follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    /// ctstats' own template: canonical column names (some in Russian), codes and yes/no.
    Canonical,
    /// HTCDS 2.0 field and value names, plus canonical columns for what HTCDS lacks.
    Htcds,
    /// The CTDC Global Dataset v6 export: no identities, year of registration only.
    Ctdc,
}

impl ProfileKind {
    /// The profile name ingest loads (`Profile::load`).
    pub fn name(self) -> &'static str {
        match self {
            ProfileKind::Canonical => "canonical",
            ProfileKind::Htcds => "htcds",
            ProfileKind::Ctdc => "ctdc",
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub seed: u64,
    /// Distinct persons drawn (each has one to four cases).
    pub persons: usize,
    /// Registration dates fall in `first_year..=last_year` (1990 to 2098).
    pub first_year: i32,
    pub last_year: i32,
    /// Missions as ISO 3166-1 alpha-3 codes.
    pub missions: Vec<String>,
    pub ngos_per_mission: usize,
    /// File formats, assigned to the NGOs in turn.
    pub formats: Vec<FileFormat>,
    /// Encoding of the CSV files.
    pub encoding: TextEncoding,
    pub profile: ProfileKind,
    /// Probability that a row carries one injected fault.
    pub error_rate: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 42,
            persons: 2000,
            first_year: 2003,
            last_year: 2008,
            missions: ["KAZ", "KGZ", "TJK", "UZB", "MDA", "UKR"]
                .iter()
                .map(|m| m.to_string())
                .collect(),
            ngos_per_mission: 2,
            formats: vec![FileFormat::Csv],
            encoding: TextEncoding::Utf8,
            profile: ProfileKind::Canonical,
            error_rate: 0.01,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<(), Error> {
        let problem = if self.persons == 0 {
            Some("persons must be at least 1".to_string())
        } else if self.persons > 1_000_000_000 {
            Some("persons must be at most 1,000,000,000".to_string())
        } else if self.first_year < 1990 {
            Some("first_year must be 1990 or later (ingest refuses earlier dates)".to_string())
        } else if self.last_year < self.first_year || self.last_year > 2098 {
            Some("last_year must be between first_year and 2098".to_string())
        } else if self.missions.is_empty() {
            Some("at least one mission is needed".to_string())
        } else if self.ngos_per_mission == 0 || self.ngos_per_mission > 99 {
            Some("ngos_per_mission must be between 1 and 99".to_string())
        } else if self.formats.is_empty() {
            Some("at least one format is needed".to_string())
        } else if !(0.0..=1.0).contains(&self.error_rate) {
            Some("error_rate must be between 0 and 1".to_string())
        } else {
            None
        };
        match problem {
            Some(p) => Err(Error::Config(p)),
            None => Ok(()),
        }
    }
}

/// A row carrying an injected fault, as ingest reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DirtyRow {
    /// Row number as ctstats reports it: CSV, the line (header = 1); Excel, the sheet row
    /// (header = 1); JSON Lines, the line from 1; Parquet, the record from 1.
    pub row: u64,
    /// The column as the file's header names it.
    pub column: String,
    /// The ingest rule the row breaks.
    pub rule: String,
}

/// One written file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedFile {
    /// Relative to the output directory.
    pub path: String,
    pub organisation: String,
    /// Reporting mission, ISO alpha-3.
    pub mission: String,
    pub format: FileFormat,
    pub profile: ProfileKind,
    /// For CSV files.
    pub encoding: Option<TextEncoding>,
    /// Data rows (the header not counted), clean and dirty.
    pub rows: u64,
    pub dirty_rows: Vec<DirtyRow>,
}

/// Everything [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    pub files: Vec<GeneratedFile>,
    pub truth: GroundTruth,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(
        "{file} would have {rows} rows, but an Excel sheet holds at most {max} below its header; \
         use fewer persons, more NGOs per mission or another format"
    )]
    XlsxTooLarge { file: String, rows: u64, max: u64 },
    #[error(
        "could not give person {person} a name, birth date and citizenship distinct from every \
         other person's; use fewer persons or more years"
    )]
    IdentitySpace { person: usize },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// The position of one case in its NGO's file: sorted, this is registration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct CaseRef {
    day: i32,
    person: u32,
    episode: u8,
}

/// Write the files of `config` into `out_dir` (created if needed), with `files.json` and
/// `truth.json`.
pub fn generate(config: &Config, out_dir: &Path) -> Result<Generated, Error> {
    generate_capped(config, out_dir, XLSX_MAX_ROWS)
}

fn generate_capped(
    config: &Config,
    out_dir: &Path,
    xlsx_max_rows: u64,
) -> Result<Generated, Error> {
    config.validate()?;
    let ctx = model::Ctx::new(config)?;

    // Plan: draw every person once, count the truth, and list each NGO's cases.
    let mut attempts: Vec<u8> = Vec::with_capacity(config.persons);
    let mut taken: HashSet<u64> = HashSet::new();
    let mut cases: Vec<Vec<CaseRef>> = vec![Vec::new(); ctx.orgs.len()];
    let mut truth = truth::TruthBuilder::new(&ctx);
    for index in 0..config.persons {
        let person_index = index as u32;
        let plan = model::plan(&ctx, person_index);
        let mut attempt = 0u8;
        if plan.links_by_name(&ctx) {
            while !taken.insert(model::identity_key(&ctx, &plan, attempt)) {
                attempt = attempt
                    .checked_add(1)
                    .ok_or(Error::IdentitySpace { person: index })?;
            }
        }
        attempts.push(attempt);
        let person = model::person(&ctx, plan, attempt);
        truth.add(&ctx, &person);
        for (j, e) in person.episodes.iter().enumerate() {
            cases[e.org].push(CaseRef {
                day: e.registration.num_days_from_ce(),
                person: person_index,
                episode: j as u8,
            });
        }
    }
    drop(taken);
    for (org, list) in ctx.orgs.iter().zip(&cases) {
        if org.format == FileFormat::Xlsx && list.len() as u64 > xlsx_max_rows {
            return Err(Error::XlsxTooLarge {
                file: org.path.clone(),
                rows: list.len() as u64,
                max: xlsx_max_rows,
            });
        }
    }

    // Write: each NGO's cases in registration order, each person rebuilt from its index.
    std::fs::create_dir_all(out_dir).map_err(|source| Error::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::with_capacity(ctx.orgs.len());
    for (org, mut list) in ctx.orgs.iter().zip(cases) {
        list.sort_unstable();
        let renderer = render::Renderer::new(&ctx, org);
        let header = renderer
            .render(&model::rebuild(&ctx, 0, attempts[0]), 0, 1)
            .row
            .names;
        let path = out_dir.join(&org.path);
        let mut sink = write::Sink::create(&path, org.format, config.encoding, &header)?;
        let mut dirty_rows = Vec::new();
        for (i, case) in list.iter().enumerate() {
            let person = model::rebuild(&ctx, case.person, attempts[case.person as usize]);
            let seq = i as u64 + 1;
            let rendered = renderer.render(&person, usize::from(case.episode), seq);
            debug_assert_eq!(rendered.row.names, header);
            if let Some((column, rule)) = rendered.fault {
                dirty_rows.push(DirtyRow {
                    row: org.format.first_data_row() + i as u64,
                    column: column.to_string(),
                    rule: rule.to_string(),
                });
            }
            sink.write(&rendered.row.values)?;
        }
        sink.finish()?;
        files.push(GeneratedFile {
            path: org.path.clone(),
            organisation: org.id.clone(),
            mission: org.mission.to_string(),
            format: org.format,
            profile: config.profile,
            encoding: (org.format == FileFormat::Csv).then_some(config.encoding),
            rows: list.len() as u64,
            dirty_rows,
        });
    }
    let generated = Generated {
        files,
        truth: truth.finish(),
    };
    write_json(&out_dir.join("files.json"), &generated.files)?;
    write_json(&out_dir.join("truth.json"), &generated.truth)?;
    Ok(generated)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    text.push('\n');
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(profile: ProfileKind, formats: Vec<FileFormat>) -> Config {
        Config {
            persons: 300,
            profile,
            formats,
            error_rate: 0.05,
            ..Config::default()
        }
    }

    fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn same_seed_same_bytes() {
        let all = vec![
            FileFormat::Csv,
            FileFormat::Xlsx,
            FileFormat::Jsonl,
            FileFormat::Parquet,
        ];
        for (profile, encoding) in [
            (ProfileKind::Canonical, TextEncoding::Windows1251),
            (ProfileKind::Htcds, TextEncoding::Utf8),
            (ProfileKind::Ctdc, TextEncoding::Utf8),
        ] {
            let config = Config {
                encoding,
                ..small(profile, all.clone())
            };
            let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let ga = generate(&config, a.path()).unwrap();
            let gb = generate(&config, b.path()).unwrap();
            assert_eq!(ga, gb);
            let (fa, fb) = (read_all(a.path()), read_all(b.path()));
            assert_eq!(fa.len(), 14, "12 NGO files, files.json and truth.json");
            for ((na, ba), (nb, bb)) in fa.iter().zip(&fb) {
                assert_eq!(na, nb);
                assert!(ba == bb, "{na} differs between two runs");
            }
            let other = Config {
                seed: 43,
                ..config.clone()
            };
            let c = tempfile::tempdir().unwrap();
            generate(&other, c.path()).unwrap();
            assert_ne!(read_all(c.path()), fa, "another seed gives other data");
        }
    }

    #[test]
    fn dirty_rate_is_roughly_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            persons: 5000,
            error_rate: 0.1,
            ..Config::default()
        };
        let g = generate(&config, dir.path()).unwrap();
        let rows: u64 = g.files.iter().map(|f| f.rows).sum();
        let dirty: u64 = g.files.iter().map(|f| f.dirty_rows.len() as u64).sum();
        assert_eq!(rows, g.truth.rows);
        assert_eq!(dirty, g.truth.dirty_rows);
        assert_eq!(g.truth.cases, rows - dirty);
        let rate = dirty as f64 / rows as f64;
        assert!((0.085..0.115).contains(&rate), "{rate}");
        let rules: HashSet<&str> = g
            .files
            .iter()
            .flat_map(|f| f.dirty_rows.iter().map(|d| d.rule.as_str()))
            .collect();
        for rule in [
            "invalid_date",
            "unknown_code",
            "required",
            "date_in_future",
            "invalid_country",
            "invalid_flag",
        ] {
            assert!(rules.contains(rule), "no {rule} fault");
        }
        let none = Config {
            error_rate: 0.0,
            ..config
        };
        let g = generate(&none, tempfile::tempdir().unwrap().path()).unwrap();
        assert!(g.files.iter().all(|f| f.dirty_rows.is_empty()));
    }

    #[test]
    fn realistic_shares() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            persons: 5000,
            error_rate: 0.0,
            ..Config::default()
        };
        let t = generate(&config, dir.path()).unwrap().truth;
        let share = |x: u64, of: u64| x as f64 / of as f64;
        let cross = share(t.cross_ngo_persons, t.persons);
        assert!((0.06..0.14).contains(&cross), "cross-NGO share {cross}");
        let reregistered = share(t.cases - t.persons, t.persons);
        assert!(
            (0.1..0.25).contains(&reregistered),
            "extra cases {reregistered}"
        );
        let sum = |f: fn(&MissionYear) -> u64| t.mission_years.values().map(f).sum::<u64>();
        let offered = sum(|m| m.shelter_offered_cases);
        let accepted = sum(|m| m.shelter_accepted_cases);
        assert!((0.4..0.6).contains(&share(offered, t.cases)), "offered");
        assert!((0.35..0.6).contains(&share(accepted, offered)), "accepted");
        let trial = share(sum(|m| m.participated_in_trial_cases), t.cases);
        assert!((0.02..0.08).contains(&trial), "trial {trial}");
        let labour = |mission: &str| {
            let (mut labour, mut all) = (0, 0);
            for (k, m) in &t.mission_years {
                if k.starts_with(mission) {
                    labour += m
                        .persons_by_exploitation_type
                        .get("forced_labour")
                        .unwrap_or(&0);
                    all += m.persons;
                }
            }
            share(labour, all)
        };
        assert!(labour("KGZ") > 0.55, "KGZ labour {}", labour("KGZ"));
        assert!(labour("MDA") < 0.45, "MDA labour {}", labour("MDA"));
        assert_eq!(t.mission_years.len(), 6 * 6);
    }

    #[test]
    fn xlsx_cap_is_an_error_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            persons: 100,
            missions: vec!["KGZ".into()],
            ngos_per_mission: 1,
            formats: vec![FileFormat::Xlsx],
            ..Config::default()
        };
        let err = generate_capped(&config, &dir.path().join("out"), 50).unwrap_err();
        assert!(
            matches!(err, Error::XlsxTooLarge { ref file, rows, max: 50 } if file == "KGZ-kgz-ngo-1.xlsx" && rows > 100),
            "{err}"
        );
        assert!(!dir.path().join("out").exists());
        assert_eq!(XLSX_MAX_ROWS, 1_048_575);
    }

    #[test]
    fn invalid_configs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for config in [
            Config {
                missions: vec!["XYZ".into()],
                ..Config::default()
            },
            Config {
                missions: vec!["KGZ".into(), "KGZ".into()],
                ..Config::default()
            },
            Config {
                first_year: 1980,
                ..Config::default()
            },
            Config {
                error_rate: 1.5,
                ..Config::default()
            },
            Config {
                formats: vec![],
                ..Config::default()
            },
        ] {
            assert!(matches!(
                generate(&config, dir.path()),
                Err(Error::Config(_))
            ));
        }
    }

    #[test]
    fn file_layout() {
        let dir = tempfile::tempdir().unwrap();
        let config = small(
            ProfileKind::Canonical,
            vec![FileFormat::Csv, FileFormat::Parquet],
        );
        let g = generate(&config, dir.path()).unwrap();
        let names: Vec<&str> = g.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names[0], "KAZ-kaz-ngo-1.csv");
        assert_eq!(names[1], "KAZ-kaz-ngo-2.parquet");
        assert_eq!(g.files[0].encoding, Some(TextEncoding::Utf8));
        assert_eq!(g.files[1].encoding, None);
        let listed: Vec<GeneratedFile> =
            serde_json::from_slice(&std::fs::read(dir.path().join("files.json")).unwrap()).unwrap();
        assert_eq!(listed, g.files);
        let truth: GroundTruth =
            serde_json::from_slice(&std::fs::read(dir.path().join("truth.json")).unwrap()).unwrap();
        assert_eq!(truth, g.truth);
        let csv = std::fs::read_to_string(dir.path().join(names[0])).unwrap();
        let header = csv.lines().next().unwrap();
        assert!(header.starts_with("case_id,Фамилия,Имя,"), "{header}");
        assert!(header.contains("Телефон") && header.contains("notes"));
        assert_eq!(csv.lines().count() as u64, g.files[0].rows + 1);
    }

    #[test]
    fn windows_1251_csv_is_semicolon_separated_cyrillic() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            encoding: TextEncoding::Windows1251,
            ..small(ProfileKind::Canonical, vec![FileFormat::Csv])
        };
        let g = generate(&config, dir.path()).unwrap();
        let bytes = std::fs::read(dir.path().join(&g.files[0].path)).unwrap();
        assert!(std::str::from_utf8(&bytes).is_err(), "not UTF-8");
        let (text, _, bad) = encoding_rs::WINDOWS_1251.decode(&bytes);
        assert!(!bad);
        assert!(text.starts_with("case_id;Фамилия;Имя;"));
        assert!(text.contains("\r\n"));
    }
}
