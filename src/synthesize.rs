//! `ctstats synthesize`: a DP synthetic table (MST) from the command line, on the machine that
//! holds the dataset and ledger. It calls the engine's `synthesize`, as `POST /v1/synthetic`
//! does: the same checks, the same charge to the named principal's budget and the dataset's,
//! the same stored table, which it then writes to `--out` as Parquet or CSV.

use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::Datelike;
use ctstats_query::service::synthetic::TableFormat;
use ctstats_query::service::{Service, ServiceConfig};
use ctstats_query::synthetic::SyntheticRequest;

use crate::serve::{DEFAULT_MISSIONS, LedgerArgs, missions};

#[derive(clap::Args, Debug, Clone)]
pub struct SynthesizeArgs {
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// The analyst or admin whose budget pays (principal id, as `principal list` shows).
    #[arg(long)]
    pub principal: String,
    /// The table's epsilon at `--delta`.
    #[arg(long)]
    pub epsilon: f64,
    #[arg(long)]
    pub delta: f64,
    /// Columns, comma-separated (`exploitation_types` is one yes/no column per type); default:
    /// mission, registration_year, gender, age_band, citizenship, country_of_exploitation,
    /// exploitation_types, referral_source, assisted_return.
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// First calendar year of registration (default: nine years before `--to`).
    #[arg(long)]
    pub from: Option<i32>,
    /// Last calendar year (default: this year).
    #[arg(long)]
    pub to: Option<i32>,
    /// Records kept per person (default 1: each row stands for one person).
    #[arg(long)]
    pub max_records_per_person: Option<u32>,
    /// The missions the service serves (the table's mission domain).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_MISSIONS)]
    pub missions: Vec<String>,
    #[arg(long, default_value = "synthetic table")]
    pub name: String,
    /// Where to write the records: `.parquet` or `.csv`.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: SynthesizeArgs) -> anyhow::Result<()> {
    let format = match args.out.extension().and_then(|e| e.to_str()) {
        Some("parquet") => TableFormat::Parquet,
        Some("csv") => TableFormat::Csv,
        _ => bail!("--out must end in .parquet or .csv"),
    };
    let l = args.ledger.open()?;
    let who = l
        .principal(&args.principal)?
        .with_context(|| format!("no principal {}", args.principal))?;
    let config = ServiceConfig {
        data: args.ledger.data.clone(),
        dataset: args.ledger.dataset()?,
        missions: missions(&args.missions)?,
        max_upload_bytes: 0,
        max_concurrent_queries: 1,
        memory_budget: ctstats_query::service::DEFAULT_MEMORY_BUDGET,
    };
    let service = Service::new(config, l, None);
    let to = args.to.unwrap_or_else(|| chrono::Utc::now().year());
    let request = SyntheticRequest {
        name: args.name,
        columns: (!args.columns.is_empty()).then_some(args.columns),
        missions: None,
        from: args.from.unwrap_or(to - 9),
        to,
        epsilon: args.epsilon,
        delta: args.delta,
        max_records_per_person: args.max_records_per_person,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let (info, bytes, fresh) = runtime.block_on(async {
        let (info, fresh) = service.synthesize(&who, request).await?;
        let (_, bytes) = service.synthetic_table(&who, info.id, format).await?;
        Ok::<_, anyhow::Error>((info, bytes, fresh))
    })?;
    let tmp = args.out.with_extension("partial");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "synthetic table {}: {} rows x {} columns -> {}, {}",
        info.id,
        info.rows,
        info.columns.len(),
        args.out.display(),
        if fresh {
            format!(
                "charged rho {:.6} (epsilon {:.4} at delta {:e})",
                info.loss.rho, info.cost.epsilon, info.cost.delta
            )
        } else {
            "made before: nothing charged".to_string()
        }
    );
    println!("guarantee: {}", info.guarantee);
    Ok(())
}
