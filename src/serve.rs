//! `ctstats serve`, `principal` and `budget`: the query service wired to the dataset, the ledger
//! and (with the key) the ingest pipeline for uploads.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use ctstats_ingest::read::Progress;
use ctstats_ingest::{Dataset, IngestRequest, Profile, Secret};
use ctstats_query::error::Code;
use ctstats_query::ledger::{Ledger, Role, Total};
use ctstats_query::service::{
    DEFAULT_MAX_UPLOAD_BYTES, DEFAULT_MEMORY_BUDGET, ServiceConfig, TemplateForm, UploadError,
    UploadOutcome, UploadRequest, Uploader,
};
use ctstats_server::AppState;

/// The mission domain when none is configured: the missions of DESIGN.md's first network.
pub const DEFAULT_MISSIONS: &str = "KAZ,KGZ,TJK,UZB,MDA,UKR";

/// Where the dataset's ledger lives and what it is called there.
#[derive(clap::Args, Debug, Clone)]
pub struct LedgerArgs {
    /// The dataset directory.
    #[arg(long, env = "CTSTATS_DATA")]
    pub data: PathBuf,
    /// The SQLite ledger (budgets, principals, audit); default: `<data>.ledger.sqlite` beside
    /// the dataset directory.
    #[arg(long, env = "CTSTATS_LEDGER")]
    pub ledger: Option<PathBuf>,
}

impl LedgerArgs {
    pub fn ledger_path(&self) -> anyhow::Result<PathBuf> {
        match &self.ledger {
            Some(p) => Ok(p.clone()),
            None => ledger_path(&self.data),
        }
    }

    pub fn open(&self) -> anyhow::Result<Ledger> {
        let path = self.ledger_path()?;
        Ledger::open(&path).with_context(|| format!("opening the ledger {}", path.display()))
    }

    /// The dataset's name in the ledger.
    pub fn dataset(&self) -> anyhow::Result<String> {
        dataset_name(&self.data)
    }
}

/// The default ledger of a dataset directory: `<dir>.ledger.sqlite` beside it.
pub fn ledger_path(data: &Path) -> anyhow::Result<PathBuf> {
    let name = dataset_name(data)?;
    let dir = std::path::absolute(data).context("resolving the dataset directory")?;
    Ok(dir.with_file_name(format!("{name}.ledger.sqlite")))
}

/// The dataset's name in the ledger: its directory's name.
pub fn dataset_name(data: &Path) -> anyhow::Result<String> {
    let dir = std::path::absolute(data).context("resolving the dataset directory")?;
    let dir = normalise(&dir);
    dir.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .with_context(|| format!("{} has no directory name", data.display()))
}

/// Drop `.` and resolve `..` lexically, so `data/.` and `data/` name the same dataset.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// The pseudonymisation key: mounts the upload endpoint. Queries never need it.
    #[arg(long, env = "CTSTATS_KEY", conflicts_with = "no_upload")]
    pub key: Option<PathBuf>,
    /// Serve queries only, without the key and without the upload endpoint.
    #[arg(long)]
    pub no_upload: bool,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The public mission domain (ISO codes, comma-separated): every query's mission cells.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_MISSIONS)]
    pub missions: Vec<String>,
    /// Largest upload accepted, in MiB (413 beyond).
    #[arg(long, default_value_t = DEFAULT_MAX_UPLOAD_BYTES >> 20)]
    pub max_upload_mib: u64,
    /// Queries aggregating at once; the rest queue in arrival order. Default: one per core.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_queries: Option<u16>,
    /// Memory for the in-memory snapshot of the dataset, in MiB (about 190 bytes a record);
    /// a larger dataset, or 0, is read from its Parquet files by every query.
    #[arg(long, default_value_t = DEFAULT_MEMORY_BUDGET >> 20)]
    pub memory_budget_mib: u64,
}

/// Runs the ingest pipeline for uploads, with the deployment key.
#[derive(Debug)]
pub struct IngestUploader {
    dataset: Dataset,
    secret: Secret,
}

impl IngestUploader {
    pub fn new(dataset: Dataset, secret: Secret) -> Self {
        IngestUploader { dataset, secret }
    }
}

fn invalid(code: Code, message: impl Into<String>) -> UploadError {
    UploadError::Invalid {
        code,
        message: message.into(),
    }
}

impl Uploader for IngestUploader {
    fn template(&self, form: TemplateForm) -> String {
        match form {
            TemplateForm::Csv => ctstats_ingest::template::template_csv(),
            TemplateForm::Markdown => ctstats_ingest::template::field_guide_markdown(),
        }
    }

    fn upload(&self, path: &Path, request: &UploadRequest) -> Result<UploadOutcome, UploadError> {
        let p = &request.params;
        // Over HTTP only the built-in profiles: a profile path would read the server's files.
        let profile_name = p.profile.as_deref().unwrap_or("canonical");
        if !["canonical", "htcds", "ctdc"].contains(&profile_name) {
            return Err(invalid(
                Code::InvalidProfile,
                "profile is canonical, htcds or ctdc over HTTP; custom profiles are for the command line",
            ));
        }
        let profile = Profile::load(profile_name)
            .map_err(|e| invalid(Code::InvalidProfile, e.to_string()))?;
        let delimiter = match p.delimiter.as_deref() {
            None => None,
            Some(d) if d.chars().count() == 1 => d.chars().next(),
            Some(_) => {
                return Err(invalid(
                    Code::InvalidParameters,
                    "the delimiter is one character",
                ));
            }
        };
        let read = crate::options::read_options(
            p.filename.as_deref().map(Path::new),
            p.format.as_deref(),
            p.encoding.as_deref(),
            delimiter,
            p.sheet.clone(),
        )
        .map_err(|e| invalid(Code::InvalidParameters, e.to_string()))?;
        let ingest_request = IngestRequest {
            path: path.to_path_buf(),
            organisation: request.organisation.clone(),
            mission: p.mission.clone(),
            profile,
            read,
            accept_valid: p.accept_valid,
            now: chrono::Utc::now(),
        };
        match ctstats_ingest::ingest(
            &self.dataset,
            &self.secret,
            &ingest_request,
            &Progress::default(),
        ) {
            Ok(report) => {
                let report = serde_json::to_value(&report)
                    .map_err(|e| UploadError::Internal(e.to_string()))?;
                let status = report["status"].as_str().unwrap_or("rejected").to_string();
                Ok(UploadOutcome { status, report })
            }
            Err(ctstats_ingest::Error::InvalidArgument { what, message }) => Err(invalid(
                Code::InvalidParameters,
                format!("invalid {what}: {message}"),
            )),
            Err(e) => Err(UploadError::Internal(e.to_string())),
        }
    }
}

/// The missions as alpha-3 codes.
pub fn missions(codes: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for code in codes {
        let alpha3 = ctstats_ingest::pipeline::check_mission(code.trim())
            .with_context(|| format!("mission {code:?}"))?;
        if !out.iter().any(|m| m == alpha3) {
            out.push(alpha3.to_string());
        }
    }
    if out.is_empty() {
        bail!("give at least one mission");
    }
    Ok(out)
}

/// The service state for `args`: opens the dataset, the ledger and, with a key, the uploader.
pub fn state(args: &ServeArgs) -> anyhow::Result<AppState> {
    let data = &args.ledger.data;
    let dataset = Dataset::open(data).with_context(|| format!("opening {}", data.display()))?;
    let uploader: Option<Arc<dyn Uploader>> = match (&args.key, args.no_upload) {
        (Some(key), false) => {
            let secret = Secret::load(key)?;
            let manifest = dataset.manifest()?;
            let key_id = secret.key_id();
            if let Some(existing) = &manifest.key_id
                && *existing != key_id
            {
                bail!(
                    "the key {} (key id {key_id}) is not the dataset's (key id {existing})",
                    key.display(),
                );
            }
            Some(Arc::new(IngestUploader::new(dataset, secret)))
        }
        (None, true) => None,
        (None, false) => {
            bail!("give --key to accept uploads, or --no-upload to serve queries only")
        }
        (Some(_), true) => unreachable!("clap refuses --key with --no-upload"),
    };
    let config = ServiceConfig {
        data: data.clone(),
        dataset: args.ledger.dataset()?,
        missions: missions(&args.missions)?,
        max_upload_bytes: args.max_upload_mib.saturating_mul(1 << 20),
        max_concurrent_queries: args
            .max_concurrent_queries
            .map_or_else(ServiceConfig::default_concurrent_queries, usize::from),
        memory_budget: args.memory_budget_mib.saturating_mul(1 << 20),
    };
    Ok(AppState::new(config, args.ledger.open()?, uploader))
}

/// `ctstats serve`: serve until Ctrl-C or SIGTERM.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let state = state(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let dataset = state.config().dataset.clone();
        if state.ledger().dataset_budget(&dataset)?.is_none() {
            tracing::warn!(
                dataset = %dataset,
                "no dataset-wide privacy budget is set: each principal's budget is capped, the \
                 dataset's total loss is not; set one with `ctstats budget set --dataset`"
            );
        }
        // Ready means ready: the snapshot is loaded before the first request is taken.
        match state.service().data().prepare().await {
            Ok(Some(s)) => tracing::info!(
                generation = s.generation,
                rows = s.rows,
                mib = s.bytes >> 20,
                "queries read the dataset from memory"
            ),
            Ok(None) => tracing::info!("queries read the dataset from its Parquet files"),
            // Queries try again, and say why if it fails again.
            Err(e) => tracing::warn!(error = %e, "the dataset could not be loaded"),
        }
        println!(
            "ctstats serving dataset {} on http://{addr} (uploads {}); OpenAPI at http://{addr}/openapi.json",
            state.config().dataset,
            if args.no_upload { "off" } else { "on" },
        );
        ctstats_server::serve(listener, state, shutdown_signal())
            .await
            .context("serving")
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum PrincipalCommand {
    /// Create a principal and print its bearer token (shown once, stored only hashed).
    Add {
        #[command(flatten)]
        ledger: LedgerArgs,
        #[arg(long)]
        name: String,
        /// ngo, analyst, researcher or admin.
        #[arg(long)]
        role: String,
        /// The organisation an ngo uploads for.
        #[arg(long)]
        org: Option<String>,
        /// The missions an ngo uploads for (ISO alpha-3, comma-separated); required for ngo.
        #[arg(long, value_delimiter = ',')]
        missions: Vec<String>,
    },
    /// Bind an ngo principal to exactly the missions it may upload for.
    Bind {
        #[command(flatten)]
        ledger: LedgerArgs,
        id: String,
        /// ISO alpha-3 codes, comma-separated; they replace the earlier binding.
        #[arg(long, value_delimiter = ',', required = true)]
        missions: Vec<String>,
    },
    /// List the principals.
    List {
        #[command(flatten)]
        ledger: LedgerArgs,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a principal: its token stops working at once.
    Revoke {
        #[command(flatten)]
        ledger: LedgerArgs,
        id: String,
    },
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum BudgetCommand {
    /// Set a principal's total budget on the dataset, or with `--dataset` the dataset-wide
    /// budget (over every charge by every principal); what was spent stays spent.
    Set {
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        whose: Whose,
        /// An (epsilon, delta) budget's epsilon.
        #[arg(long, required_unless_present = "rho", conflicts_with = "rho")]
        epsilon: Option<f64>,
        #[arg(long, requires = "epsilon")]
        delta: Option<f64>,
        /// A zCDP budget instead of (epsilon, delta).
        #[arg(long)]
        rho: Option<f64>,
    },
    /// Show a principal's budget on the dataset, or with `--dataset` the dataset-wide one.
    Show {
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        whose: Whose,
    },
}

/// A principal's budget, or the dataset-wide one.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct Whose {
    #[arg(long)]
    principal: Option<String>,
    /// The dataset-wide budget.
    #[arg(long)]
    dataset: bool,
}

pub fn principal(command: &PrincipalCommand) -> anyhow::Result<()> {
    match command {
        PrincipalCommand::Add {
            ledger,
            name,
            role,
            org,
            missions,
        } => {
            let role = Role::from_name(role).with_context(|| {
                format!("unknown role {role:?}: ngo, analyst, researcher or admin")
            })?;
            let missions = ctstats_query::service::admin::check_principal(
                name,
                role,
                org.as_deref(),
                missions,
            )
            .map_err(anyhow::Error::msg)?;
            let (p, token) =
                ledger
                    .open()?
                    .add_principal_for(name, role, org.as_deref(), &missions)?;
            println!("id:    {}", p.id);
            println!("role:  {}", p.role.name());
            if !p.missions.is_empty() {
                println!("missions: {}", p.missions.join(", "));
            }
            println!("token: {token}");
            println!("The token is shown once; the ledger keeps only its hash.");
        }
        PrincipalCommand::Bind {
            ledger,
            id,
            missions,
        } => {
            let ledger = ledger.open()?;
            let p = ledger
                .principal(id)?
                .with_context(|| format!("no principal with id {id}"))?;
            let missions = ctstats_query::service::admin::check_missions(p.role, missions)
                .map_err(anyhow::Error::msg)?;
            let p = ledger.bind_missions(id, &missions)?;
            ledger.audit(
                None,
                "bind_missions",
                &format!("principal={id} missions={}", p.missions.join(",")),
                None,
                "bound",
            )?;
            println!("{} uploads for {}", p.id, p.missions.join(", "));
        }
        PrincipalCommand::List { ledger, json } => {
            let principals = ledger.open()?.principals()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&principals)?);
            } else {
                println!(
                    "{:<16} {:<10} {:<20} {:<20} {:<12} status",
                    "id", "role", "name", "organisation", "missions"
                );
                for p in principals {
                    let missions = match (p.role, p.missions.is_empty()) {
                        (Role::Ngo, true) => "(unbound)".to_string(),
                        (_, true) => "-".to_string(),
                        _ => p.missions.join(","),
                    };
                    println!(
                        "{:<16} {:<10} {:<20} {:<20} {:<12} {}",
                        p.id,
                        p.role.name(),
                        p.name,
                        p.organisation.as_deref().unwrap_or("-"),
                        missions,
                        if p.revoked { "revoked" } else { "active" }
                    );
                }
            }
        }
        PrincipalCommand::Revoke { ledger, id } => {
            ledger.open()?.revoke(id)?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

pub fn budget(command: &BudgetCommand) -> anyhow::Result<()> {
    let (ledger, whose) = match command {
        BudgetCommand::Set { ledger, whose, .. } | BudgetCommand::Show { ledger, whose } => {
            (ledger, whose)
        }
    };
    let dataset = ledger.dataset()?;
    let l = ledger.open()?;
    let b = match (command, &whose.principal) {
        (
            BudgetCommand::Set {
                epsilon,
                delta,
                rho,
                ..
            },
            principal,
        ) => {
            let total = match (epsilon, rho) {
                (Some(epsilon), None) => Total::Approx {
                    epsilon: *epsilon,
                    delta: delta.unwrap_or(0.0),
                },
                (None, Some(rho)) => Total::Rho { rho: *rho },
                _ => bail!("give --epsilon (and --delta) or --rho"),
            };
            Some(match principal {
                Some(p) => l.set_total(p, &dataset, total)?,
                None => l.set_dataset_budget(&dataset, total)?,
            })
        }
        (BudgetCommand::Show { .. }, Some(p)) => Some(
            l.budget(p, &dataset)?
                .with_context(|| format!("no budget for {p} on dataset {dataset}"))?,
        ),
        (BudgetCommand::Show { .. }, None) => l.dataset_budget(&dataset)?,
    };
    let who = match &whose.principal {
        Some(p) => format!("{p} on {dataset}"),
        None => format!("dataset {dataset} (all principals together)"),
    };
    match b {
        None => {
            println!("{who}: no dataset-wide budget is set (nothing caps the dataset's total loss)")
        }
        Some(b) => match b.rho_total {
            Some(total) => println!(
                "{who}: rho {} of {total} left (spent rho {}, pure epsilon {})",
                b.rho_left().unwrap_or(0.0),
                b.rho_spent,
                b.pure_epsilon_spent
            ),
            None => println!(
                "{who}: epsilon {} of {} left, delta {} of {} left (composed: rho {}, pure \
                 epsilon {}, approximate epsilon {})",
                b.epsilon_left(),
                b.epsilon_total,
                b.delta_left(),
                b.delta_total,
                b.rho_spent,
                b.pure_epsilon_spent,
                b.approx_epsilon_spent
            ),
        },
    }
    Ok(())
}
