//! `ctstats`: the command line. Parses arguments and calls the libraries; no logic of its own.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ctstats_ingest::read::Progress;
use ctstats_ingest::{Dataset, IngestRequest, Profile, Secret, Status};

mod demo;
mod generate;

#[derive(Parser, Debug)]
#[command(
    name = "ctstats",
    version,
    about = "Differentially private statistics over counter-trafficking case records"
)]
struct Cli {
    /// More log output (-v: info, -vv: debug). Logs never contain record values.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the deployment secret (mode 0600), outside the dataset directory.
    Keygen {
        /// Where to write the key file.
        #[arg(long, env = "CTSTATS_KEY")]
        key: PathBuf,
        /// The dataset directory, to refuse a key file inside it.
        #[arg(long, env = "CTSTATS_DATA")]
        data: Option<PathBuf>,
    },
    /// Print the canonical record: fields, types, code lists, countries.
    Schema {
        #[arg(long, value_enum, default_value_t = SchemaFormat::Markdown)]
        format: SchemaFormat,
    },
    /// Validate, pseudonymise and commit NGO batch files.
    Ingest(IngestArgs),
    /// List the committed batches.
    Batches {
        #[arg(long, env = "CTSTATS_DATA")]
        data: PathBuf,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a record for consent withdrawal; the removal is committed like a batch.
    Withdraw {
        #[arg(long, env = "CTSTATS_DATA")]
        data: PathBuf,
        #[arg(long, env = "CTSTATS_KEY")]
        key: PathBuf,
        #[arg(long)]
        org: String,
        /// The organisation's own case id of the record.
        #[arg(long)]
        case_id: String,
    },
    /// Synthetic NGO files with a known ground truth, for trying ctstats and for benchmarks.
    Generate(generate::GenerateArgs),
    /// Run the whole path on synthetic data: generate, keygen, ingest, check against the truth.
    Demo(demo::DemoArgs),
    /// Serve differentially private queries (and, with the key, uploads) over HTTP.
    Serve(ctstats::serve::ServeArgs),
    /// Manage the principals (bearer tokens and roles) of a dataset's ledger.
    Principal {
        #[command(subcommand)]
        command: ctstats::serve::PrincipalCommand,
    },
    /// Set or show a principal's privacy budget on a dataset.
    Budget {
        #[command(subcommand)]
        command: ctstats::serve::BudgetCommand,
    },
    /// Create, list and show releases: indicators under one budget, free to read.
    Release {
        #[command(subcommand)]
        command: ctstats::release::ReleaseCommand,
    },
    /// A DP synthetic table (MST) charged to a principal's budget, written as Parquet or CSV.
    Synthesize(ctstats::synthesize::SynthesizeArgs),
    /// Load or show the reference tables (estimated victims, convictions).
    Reference {
        #[command(subcommand)]
        command: ctstats::release::ReferenceCommand,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SchemaFormat {
    Markdown,
    Json,
}

#[derive(clap::Args, Debug)]
struct IngestArgs {
    #[arg(long, env = "CTSTATS_DATA")]
    data: PathBuf,
    #[arg(long, env = "CTSTATS_KEY")]
    key: PathBuf,
    /// The submitting organisation's id.
    #[arg(long)]
    org: String,
    /// The reporting mission (ISO 3166-1 alpha-3 or alpha-2).
    #[arg(long)]
    mission: String,
    /// Import profile: canonical, htcds, ctdc or a path to a .toml profile.
    #[arg(long, default_value = "canonical")]
    profile: String,
    /// File format; from the extension when not given.
    #[arg(long)]
    format: Option<String>,
    /// Text encoding of CSV / JSON Lines (e.g. windows-1251); detected when not given.
    #[arg(long)]
    encoding: Option<String>,
    /// CSV delimiter; sniffed when not given.
    #[arg(long)]
    delimiter: Option<char>,
    /// Excel sheet name; the first sheet when not given.
    #[arg(long)]
    sheet: Option<String>,
    /// Commit valid rows even when some rows are invalid (the invalid ones are listed).
    #[arg(long)]
    accept_valid: bool,
    /// Write the JSON report here (one report per file, as a JSON array).
    #[arg(long)]
    report: Option<PathBuf>,
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // The SQL parser logs the tokens it reads at debug level, and a statement's literals are
    // values a caller typed (names, if a caller types one): never logged, whatever the level
    // or RUST_LOG asks (the directive comes last, so it wins).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level))
        .add_directive("sqlparser=warn".parse().expect("a valid directive"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Exit code when a file was rejected (nothing written for it).
const EXIT_REJECTED: u8 = 3;

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Keygen { key, data } => {
            let secret = Secret::generate()?;
            secret.write_new(&key, data.as_deref())?;
            println!(
                "wrote key {} (key id {}) with mode 0600",
                key.display(),
                secret.key_id()
            );
            println!(
                "Keep it outside the dataset and back it up: without it new batches no longer link to old ones."
            );
        }
        Command::Schema { format } => match format {
            SchemaFormat::Markdown => print!("{}", ctstats_schemas::document_markdown()),
            SchemaFormat::Json => println!(
                "{}",
                serde_json::to_string_pretty(&ctstats_schemas::document())?
            ),
        },
        Command::Ingest(args) => return ingest(args),
        Command::Batches { data, json } => batches(&data, json)?,
        Command::Generate(args) => generate::run(&args)?,
        Command::Demo(args) => demo::run(&args)?,
        Command::Serve(args) => ctstats::serve::run(&args)?,
        Command::Principal { command } => ctstats::serve::principal(&command)?,
        Command::Budget { command } => ctstats::serve::budget(&command)?,
        Command::Release { command } => ctstats::release::release(command)?,
        Command::Synthesize(args) => ctstats::synthesize::run(args)?,
        Command::Reference { command } => ctstats::release::reference_command(command)?,
        Command::Withdraw {
            data,
            key,
            org,
            case_id,
        } => {
            let secret = Secret::load(&key)?;
            let dataset = Dataset::open(&data)?;
            let report =
                ctstats_ingest::withdraw(&dataset, &secret, &org, &case_id, chrono::Utc::now())?;
            println!(
                "withdrawn: {} row(s) of {} removed, {} file(s) rewritten",
                report.rows_removed, report.organisation, report.files_rewritten
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ingest(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let secret = Secret::load(&args.key)?;
    let dataset = Dataset::open(&args.data)?;
    let profile = Profile::load(&args.profile)?;
    let mut reports = Vec::new();
    let mut rejected = false;
    for path in &args.files {
        let read = ctstats::options::read_options(
            Some(path),
            args.format.as_deref(),
            args.encoding.as_deref(),
            args.delimiter,
            args.sheet.clone(),
        )?;
        let request = IngestRequest {
            path: path.clone(),
            organisation: args.org.clone(),
            mission: args.mission.clone(),
            profile: profile.clone(),
            read,
            accept_valid: args.accept_valid,
            now: chrono::Utc::now(),
        };
        let report = with_progress(path, |progress| {
            ctstats_ingest::ingest(&dataset, &secret, &request, progress)
        })
        .with_context(|| format!("ingesting {}", path.display()))?;
        println!("{}: {}", path.display(), report.summary());
        rejected |= report.status == Status::Rejected;
        reports.push(report);
    }
    if let Some(out) = &args.report {
        std::fs::write(out, serde_json::to_vec_pretty(&reports)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(if rejected {
        ExitCode::from(EXIT_REJECTED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Run `work` on a thread while a progress bar follows the bytes it reads.
fn with_progress<T: Send>(path: &Path, work: impl FnOnce(&Progress) -> T + Send) -> T {
    let total = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let progress = Progress::default();
    let result = std::thread::scope(|s| {
        let handle = s.spawn(|| work(&progress));
        while !handle.is_finished() {
            bar.set_position(progress.bytes());
            std::thread::sleep(Duration::from_millis(100));
        }
        handle.join().expect("ingest thread panicked")
    });
    bar.finish_and_clear();
    result
}

fn batches(data: &Path, json: bool) -> anyhow::Result<()> {
    let manifest = ctstats_schemas::manifest::Manifest::read(data)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<20} {:<7} {:<8} {:>9} {:>9} {:>9}  committed",
        "batch", "organisation", "mission", "format", "accepted", "rejected", "live"
    );
    for b in &manifest.batches {
        let live: u64 = b.files.iter().map(|f| f.rows).sum();
        println!(
            "{:<16} {:<20} {:<7} {:<8} {:>9} {:>9} {:>9}  {}",
            b.batch_id,
            b.organisation,
            b.reporting_mission,
            b.format,
            b.rows_accepted,
            b.rows_rejected,
            live,
            b.committed_at
        );
    }
    println!(
        "{} batch(es), {} live row(s), {} withdrawal(s), generation {}",
        manifest.batches.len(),
        manifest.live_rows(),
        manifest.withdrawals.len(),
        manifest.generation
    );
    Ok(())
}
