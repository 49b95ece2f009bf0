//! `ctstats generate`: synthetic NGO files with a known ground truth (see `ctstats-synth`).

use std::path::PathBuf;

use anyhow::Context;
use ctstats_synth::{Config, FileFormat, ProfileKind, TextEncoding};

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Directory the files, `files.json` and `truth.json` are written to.
    #[arg(long)]
    pub out: PathBuf,
    /// Distinct persons (each has one to four cases).
    #[arg(long, default_value_t = 2000)]
    pub persons: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Missions as ISO 3166-1 alpha-3 codes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "KAZ,KGZ,TJK,UZB,MDA,UKR")]
    pub missions: Vec<String>,
    #[arg(long, default_value_t = 2)]
    pub ngos_per_mission: usize,
    /// File formats assigned to the NGOs in turn: csv, xlsx, jsonl, parquet.
    #[arg(long, value_delimiter = ',', default_value = "csv")]
    pub formats: Vec<String>,
    /// Encoding of the CSV files: utf-8, or windows-1251 (with `;` and CRLF, as Excel saves).
    #[arg(long, default_value = "utf-8")]
    pub encoding: String,
    /// Import profile the files follow: canonical, htcds or ctdc.
    #[arg(long, default_value = "canonical")]
    pub profile: String,
    /// Probability that a row carries one injected fault.
    #[arg(long, default_value_t = 0.01)]
    pub error_rate: f64,
    #[arg(long, default_value_t = 2003)]
    pub first_year: i32,
    #[arg(long, default_value_t = 2008)]
    pub last_year: i32,
}

impl GenerateArgs {
    pub fn config(&self) -> anyhow::Result<Config> {
        let formats = self
            .formats
            .iter()
            .map(|f| match f.as_str() {
                "csv" => Ok(FileFormat::Csv),
                "xlsx" => Ok(FileFormat::Xlsx),
                "jsonl" => Ok(FileFormat::Jsonl),
                "parquet" => Ok(FileFormat::Parquet),
                other => anyhow::bail!("unknown format {other:?}: use csv, xlsx, jsonl or parquet"),
            })
            .collect::<anyhow::Result<_>>()?;
        let encoding = match self.encoding.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => TextEncoding::Utf8,
            "windows-1251" | "cp1251" => TextEncoding::Windows1251,
            other => anyhow::bail!("unknown encoding {other:?}: use utf-8 or windows-1251"),
        };
        let profile = match self.profile.as_str() {
            "canonical" => ProfileKind::Canonical,
            "htcds" => ProfileKind::Htcds,
            "ctdc" => ProfileKind::Ctdc,
            other => anyhow::bail!("unknown profile {other:?}: use canonical, htcds or ctdc"),
        };
        Ok(Config {
            seed: self.seed,
            persons: self.persons,
            first_year: self.first_year,
            last_year: self.last_year,
            missions: self.missions.clone(),
            ngos_per_mission: self.ngos_per_mission,
            formats,
            encoding,
            profile,
            error_rate: self.error_rate,
        })
    }
}

pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let generated = ctstats_synth::generate(&config, &args.out)
        .with_context(|| format!("generating into {}", args.out.display()))?;
    for file in &generated.files {
        println!(
            "{}/{}  {} {} {} rows ({} with an injected fault)",
            args.out.display(),
            file.path,
            file.organisation,
            file.mission,
            file.rows,
            file.dirty_rows.len()
        );
    }
    let truth = &generated.truth;
    println!(
        "{} file(s), {} rows ({} dirty): {} persons, {} cases, {} persons at two or more NGOs; \
         ground truth in {}",
        generated.files.len(),
        truth.rows,
        truth.dirty_rows,
        truth.persons,
        truth.cases,
        truth.cross_ngo_persons,
        args.out.join("truth.json").display()
    );
    Ok(())
}
