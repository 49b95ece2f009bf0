//! `ctstats release create|list|show` and `ctstats reference load|show`: releases and
//! reference tables from the command line, on the machine that holds the dataset and ledger.
//! `release create` calls the engine's `create_release`, as `POST /v1/releases` does: the same
//! checks, the same charge to the named analyst's budget, the same stored release.

use std::path::PathBuf;

use anyhow::{Context, bail};
use ctstats_query::ledger::Ledger;
use ctstats_query::reference;
use ctstats_query::release::{PeriodKind, ReleaseRequest, StoredRelease};
use ctstats_query::service::{Service, ServiceConfig};

use crate::serve::{DEFAULT_MISSIONS, LedgerArgs, missions};

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ReleaseCommand {
    /// Compute a release, charge it to an analyst's budget and store it.
    Create {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// The analyst whose budget pays (principal id, as `principal list` shows).
        #[arg(long)]
        principal: String,
        #[arg(long)]
        name: String,
        /// Indicator ids, comma-separated; default: every indicator the period allows.
        #[arg(long, value_delimiter = ',')]
        indicators: Vec<String>,
        /// The missions the service serves (the release's mission domain).
        #[arg(long, value_delimiter = ',', default_value = DEFAULT_MISSIONS)]
        missions: Vec<String>,
        /// First and last calendar year of registration.
        #[arg(long)]
        from: i32,
        #[arg(long)]
        to: i32,
        /// Calendar quarters instead of years.
        #[arg(long)]
        quarterly: bool,
        /// The whole release's epsilon.
        #[arg(long)]
        epsilon: f64,
        /// The delta the release's rho is converted at (needed by the default marginal design;
        /// e.g. 1e-6). With `--equal-split`, only the flows (thresholded keys) use it.
        #[arg(long)]
        delta: Option<f64>,
        /// Records kept per person (default 3).
        #[arg(long)]
        contribution_bound: Option<u32>,
        /// The earlier rule: pure epsilon split equally over the counts (discrete Laplace).
        #[arg(long)]
        equal_split: bool,
    },
    /// List the stored releases, newest first.
    List {
        #[command(flatten)]
        ledger: LedgerArgs,
    },
    /// Print a stored release: a table, JSON or CSV.
    Show {
        #[command(flatten)]
        ledger: LedgerArgs,
        id: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ReferenceCommand {
    /// Replace a reference table from a CSV file (estimated_victims:
    /// country,year,estimate,low,high,source; convictions:
    /// country,year,prosecutions,convictions,source).
    Load {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// estimated_victims or convictions.
        #[arg(long)]
        table: String,
        file: PathBuf,
    },
    /// Print a reference table as loaded.
    Show {
        #[command(flatten)]
        ledger: LedgerArgs,
        #[arg(long)]
        table: String,
    },
}

fn stored(ledger: &Ledger, dataset: &str, id: i64) -> anyhow::Result<StoredRelease> {
    let text = ledger
        .release(dataset, id)?
        .with_context(|| format!("no release {id} on dataset {dataset}"))?;
    Ok(serde_json::from_str(&text)?)
}

/// One line per cell: indicator, mission, period, key, value and its interval.
fn print_table(release: &StoredRelease) {
    println!(
        "release {} \"{}\" by {} at {}: epsilon {}, {} missions, {} to {}",
        release.id,
        release.name,
        release.created_by,
        release.created_at,
        release.cost.epsilon,
        release.missions.len(),
        release.from,
        release.to
    );
    for indicator in &release.indicators {
        println!("\n{} ({})", indicator.title, indicator.id);
        for c in &indicator.cells {
            let value = c.value.map_or("-".to_string(), |v| format!("{v:.4}"));
            println!(
                "  {:<4} {:<8} {:<24} {:>10}  [{:.4}, {:.4}]",
                c.mission,
                c.period,
                c.key.as_deref().unwrap_or(""),
                value,
                c.lower,
                c.upper
            );
        }
    }
    for note in &release.notes {
        println!("\nnote: {note}");
    }
}

pub fn release(command: ReleaseCommand) -> anyhow::Result<()> {
    match command {
        ReleaseCommand::Create {
            ledger,
            principal,
            name,
            indicators,
            missions: served,
            from,
            to,
            quarterly,
            epsilon,
            delta,
            contribution_bound,
            equal_split,
        } => {
            let l = ledger.open()?;
            let who = l
                .principal(&principal)?
                .with_context(|| format!("no principal {principal}"))?;
            let config = ServiceConfig {
                data: ledger.data.clone(),
                dataset: ledger.dataset()?,
                missions: missions(&served)?,
                max_upload_bytes: 0,
                max_concurrent_queries: 1,
                memory_budget: ctstats_query::service::DEFAULT_MEMORY_BUDGET,
            };
            let service = Service::new(config, l, None);
            let request = ReleaseRequest {
                name,
                indicators,
                missions: None,
                from,
                to,
                period: if quarterly {
                    PeriodKind::Quarter
                } else {
                    PeriodKind::Year
                },
                epsilon,
                delta,
                contribution_bound,
                design: equal_split.then_some(ctstats_query::release::DesignKind::EqualSplit),
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let (release, fresh) = runtime.block_on(service.create_release(&who, request))?;
            let cells: usize = release.indicators().iter().map(|i| i.cells.len()).sum();
            let info = release.info();
            println!(
                "release {}: {} indicators, {} cells, {}",
                info.id,
                release.indicators().len(),
                cells,
                if fresh {
                    format!("charged epsilon {}", info.cost.epsilon)
                } else {
                    "released before: nothing charged".to_string()
                }
            );
            println!("budget rule: {}", info.budget_rule);
        }
        ReleaseCommand::List { ledger } => {
            let dataset = ledger.dataset()?;
            let l = ledger.open()?;
            println!(
                "{:<5} {:<24} {:<28} {:<10} {:<9} {:>8}  indicators",
                "id", "created_at", "name", "by", "years", "epsilon"
            );
            for text in l.releases(&dataset)? {
                let r: StoredRelease = serde_json::from_str(&text)?;
                println!(
                    "{:<5} {:<24} {:<28} {:<10} {:<9} {:>8}  {}",
                    r.id,
                    r.created_at,
                    r.name,
                    r.created_by,
                    format!(
                        "{}-{}",
                        &r.from[..4.min(r.from.len())],
                        &r.to[..4.min(r.to.len())]
                    ),
                    r.cost.epsilon,
                    r.indicators.len()
                );
            }
        }
        ReleaseCommand::Show { ledger, id, format } => {
            let release = stored(&ledger.open()?, &ledger.dataset()?, id)?;
            match format {
                Format::Table => print_table(&release),
                Format::Json => println!("{}", serde_json::to_string_pretty(&release)?),
                Format::Csv => print!("{}", release.to_csv()),
            }
        }
    }
    Ok(())
}

pub fn reference_command(command: ReferenceCommand) -> anyhow::Result<()> {
    match command {
        ReferenceCommand::Load {
            ledger,
            table,
            file,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let parsed = match reference::parse(&table, &text) {
                Ok(t) => t,
                Err(problems) => {
                    for p in &problems {
                        eprintln!(
                            "{}: row {}, column {}: {} [{}]",
                            file.display(),
                            p.row,
                            p.column,
                            p.message,
                            p.rule
                        );
                    }
                    bail!("{} problem(s); nothing was loaded", problems.len());
                }
            };
            let l = ledger.open()?;
            l.set_reference(&table, "command line", &serde_json::to_string(&parsed)?)?;
            l.audit(
                None,
                "reference",
                &format!("table={table} rows={}", parsed.len()),
                None,
                "loaded",
            )?;
            println!("{table}: {} rows loaded", parsed.len());
        }
        ReferenceCommand::Show { ledger, table } => match ledger.open()?.reference(&table)? {
            Some(text) => {
                let rows: serde_json::Value = serde_json::from_str(&text)?;
                println!("{}", serde_json::to_string_pretty(&rows)?);
            }
            None => println!("{table}: not loaded"),
        },
    }
    Ok(())
}
