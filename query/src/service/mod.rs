//! The engine: one API that the HTTP crate, the command line and the demo all call.
//!
//! [`Service`] owns the whole sequence of every request that spends privacy: price (from the
//! spec alone) -> charge (the ledger, write-ahead) -> compute (DataFusion, then OpenDP) -> store
//! (with its charge) -> hand back. It returns engine outcomes and [`EngineError`]s with stable
//! codes; it knows nothing of HTTP. Nothing outside it calls `plan::aggregate`, which takes the
//! ledger's [`Paid`](crate::ledger::Paid) token, so an exact aggregate exists only once its noise
//! has been paid for.
//!
//! - [`queries`]: ask, preview, budget, the public catalogue;
//! - [`releases`]: indicator releases, the stored releases, reference tables;
//! - [`synthetic`]: DP synthetic tables (MST), stored and served like releases;
//! - [`uploads`]: batches handed to the binary's [`Uploader`], and an organisation's reports;
//! - [`admin`]: principals, budgets, the audit log;
//! - [`views`]: what the engine hands back, as it goes on the wire.

pub mod admin;
pub mod queries;
pub mod releases;
pub mod synthetic;
pub mod uploads;
pub mod views;

use std::path::PathBuf;
use std::sync::Arc;

use crate::data::Data;
use crate::dp::Loss;
use crate::error::{Code, EngineError, Result};
use crate::ledger::{Budget, Charge, Ledger, LedgerError, Paid, Principal, Refusal, Role, Scope};
pub use uploads::{TemplateForm, UploadError, UploadOutcome, UploadRequest, Uploader};
use views::{BudgetView, ChargePreviewView, LeftView};

/// What the service serves.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The dataset directory (its manifest says which files are committed).
    pub data: PathBuf,
    /// The dataset's name in the ledger: budgets are per principal and dataset.
    pub dataset: String,
    /// The public mission domain, ISO alpha-3 codes.
    pub missions: Vec<String>,
    /// Uploads larger than this are refused (`payload_too_large`).
    pub max_upload_bytes: u64,
    /// How many queries aggregate at once; the others wait their turn in arrival order. Over
    /// the in-memory snapshot each aggregation runs on one core, so one per core.
    pub max_concurrent_queries: usize,
    /// Bytes the in-memory snapshot of the dataset may take ([`crate::data`]); beyond it (or at
    /// 0) queries read the Parquet files.
    pub memory_budget: u64,
}

impl ServiceConfig {
    /// One aggregation per core.
    pub fn default_concurrent_queries() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// The snapshot's memory budget when none is configured: 4 GiB (about 20M records).
pub const DEFAULT_MEMORY_BUDGET: u64 = 4 << 30;

/// Upload size limit when none is configured: 256 MiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 256 << 20;

/// The roles that ask queries.
pub const QUERY_ROLES: &[Role] = &[Role::Analyst, Role::Researcher];
/// The roles that create releases.
pub const RELEASE_ROLES: &[Role] = &[Role::Analyst];
/// Every role: stored releases are free to read.
pub const READ_ROLES: &[Role] = &[Role::Ngo, Role::Analyst, Role::Researcher, Role::Admin];

struct Inner {
    config: ServiceConfig,
    /// The dataset and its in-memory snapshot.
    data: Data,
    ledger: Ledger,
    uploader: Option<Arc<dyn Uploader>>,
    /// Permits to aggregate (fair: waiters are served in order).
    aggregations: tokio::sync::Semaphore,
    /// The queue of [`Service::read`]'s thread.
    reads: std::sync::mpsc::Sender<ReadJob>,
}

/// A short ledger read for the reads thread.
type ReadJob = Box<dyn FnOnce() + Send>;

/// The thread that runs [`Service::read`]'s jobs, one at a time in arrival order, until every
/// sender is gone. A job that panics fails only its own caller.
fn start_reads() -> std::sync::mpsc::Sender<ReadJob> {
    let (queue, jobs) = std::sync::mpsc::channel::<ReadJob>();
    std::thread::Builder::new()
        .name("ctstats-ledger-reads".into())
        .spawn(move || {
            for job in jobs {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        })
        .expect("starting the ledger reads thread");
    queue
}

/// The engine. Cheap to clone: every clone shares the ledger and the aggregation permits.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.inner.config)
            .field("uploads", &self.inner.uploader.is_some())
            .finish()
    }
}

/// What asking the ledger to pay for a query or a release came to.
pub(crate) enum Paying {
    /// Charged now: compute, then store with the token.
    Charged { paid: Paid, budget: Budget },
    /// Asked before by this caller: the stored answer, nothing charged.
    Reused { answer: String, budget: Budget },
}

impl Service {
    /// The engine over a dataset and a ledger; without an uploader it takes no uploads.
    pub fn new(config: ServiceConfig, ledger: Ledger, uploader: Option<Arc<dyn Uploader>>) -> Self {
        Service {
            inner: Arc::new(Inner {
                aggregations: tokio::sync::Semaphore::new(config.max_concurrent_queries.max(1)),
                data: Data::new(config.data.clone(), config.memory_budget),
                config,
                ledger,
                uploader,
                reads: start_reads(),
            }),
        }
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    /// The dataset queries read (its snapshot, or its files).
    pub fn data(&self) -> &Data {
        &self.inner.data
    }

    /// The upload template in `form`; `not_found` on a server that takes no uploads.
    pub fn upload_template(&self, form: uploads::TemplateForm) -> Result<String> {
        match &self.inner.uploader {
            Some(u) => Ok(u.template(form)),
            None => Err(EngineError::new(
                Code::NotFound,
                "this server takes no uploads",
            )),
        }
    }

    /// Whether uploads are taken (an uploader, with the key, was given).
    pub fn takes_uploads(&self) -> bool {
        self.inner.uploader.is_some()
    }

    /// Run a ledger call on a blocking thread (SQLite waits on locks and fsyncs).
    pub(crate) async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner.ledger))
            .await
            .map_err(EngineError::internal)?
            .map_err(EngineError::from)
    }

    /// Run a short ledger read (one that never waits for a commit: a token, a stored answer, a
    /// budget, an audit entry queued for later) on the reads thread, in arrival order. Under
    /// many concurrent callers this keeps re-served answers first in, first out, where blocking
    /// threads contending for the read connection's lock would serve some late and re-wake the
    /// rest at every hand-over.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: ReadJob = Box::new(move || {
            let _ = reply.send(f(&inner.ledger));
        });
        self.inner
            .reads
            .send(job)
            .map_err(|_| EngineError::internal("the ledger reads thread has stopped"))?;
        answer
            .await
            .map_err(|_| EngineError::internal("a ledger read failed without an answer"))?
            .map_err(EngineError::from)
    }

    /// Append to the audit log. `detail` holds no record value (queries, ids, reasons).
    pub(crate) async fn audit(
        &self,
        principal: &Principal,
        action: &'static str,
        detail: String,
        loss: Option<Loss>,
        outcome: &'static str,
    ) -> Result<()> {
        let id = principal.id.clone();
        self.db(move |l| l.audit(Some(&id), action, &detail, loss, outcome))
            .await
    }

    /// The active principal holding `token`, or `invalid_token`.
    pub async fn authenticate(&self, token: String) -> Result<Principal> {
        self.db(move |l| l.authenticate(&token))
            .await?
            .ok_or_else(invalid_token)
    }

    /// Wait for one of the aggregation permits (first come, first served).
    pub(crate) async fn aggregation_turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.inner
            .aggregations
            .acquire()
            .await
            .map_err(EngineError::internal)
    }

    /// Charge `loss` for `hash` to `principal` (write-ahead: before anything is computed), or
    /// refuse with the audit entry and an error that says what is left: `budget_exhausted` when
    /// the caller's budget refuses, `dataset_budget_exhausted` when the dataset-wide one does
    /// (then only what is left of it is said, not who spent it). `action` is `query` or
    /// `release`, for the audit log and the message.
    pub(crate) async fn pay(
        &self,
        principal: &Principal,
        action: &'static str,
        hash: &str,
        loss: Loss,
        detail: &str,
    ) -> Result<Paying> {
        let dataset = self.config().dataset.clone();
        let (pid, ds, h) = (principal.id.clone(), dataset.clone(), hash.to_string());
        let charge = self.db(move |l| l.charge(&pid, &ds, &h, loss)).await?;
        let detail = detail.to_string();
        match charge {
            Charge::NoBudget => {
                self.audit(principal, action, detail, None, "no_budget")
                    .await?;
                Err(no_budget(&dataset))
            }
            Charge::Refused { by, reason, budget } => {
                let outcome = match by {
                    Scope::Principal => "refused",
                    Scope::Dataset => "refused_by_dataset",
                };
                self.audit(principal, action, detail, Some(loss), outcome)
                    .await?;
                Err(refused(action, loss, &dataset, by, reason, &budget))
            }
            Charge::Reused { answer, budget } => {
                self.audit(principal, action, detail, None, "reused")
                    .await?;
                Ok(Paying::Reused { answer, budget })
            }
            Charge::Charged { paid, budget } => Ok(Paying::Charged { paid, budget }),
        }
    }

    /// The caller's budget now, and what charging `loss` to it would leave of it and of the
    /// dataset's; nothing is charged or recorded.
    pub(crate) async fn preview_charge(
        &self,
        principal: &Principal,
        loss: Loss,
    ) -> Result<(Option<BudgetView>, ChargePreviewView)> {
        let dataset = self.config().dataset.clone();
        let (pid, ds) = (principal.id.clone(), dataset.clone());
        let (now, after) = self
            .db(move |l| Ok((l.budget(&pid, &ds)?, l.preview_charge(&pid, &ds, loss)?)))
            .await?;
        let why = |r: Refusal| match r {
            Refusal::Exhausted => "composed with what was spent, it does not fit".to_string(),
            Refusal::DeltaOnRhoBudget => {
                "the budget is in rho and takes no delta (threshold keys)".to_string()
            }
        };
        let refusal = match (&after.principal, &after.dataset) {
            (None, _) => Some((Scope::Principal, no_budget(&dataset).message)),
            (Some((_, Some(r))), _) => Some((Scope::Principal, why(*r))),
            (_, Some((_, Some(r)))) => Some((Scope::Dataset, why(*r))),
            _ => None,
        };
        let view = ChargePreviewView {
            principal: after.principal.map(|(b, _)| BudgetView::new(&dataset, &b)),
            dataset: after.dataset.map(|(b, _)| LeftView::new(&b)),
            refused_by: refusal.as_ref().map(|(by, _)| *by),
            reason: refusal.map(|(_, why)| why),
        };
        Ok((now.map(|b| BudgetView::new(&dataset, &b)), view))
    }
}

/// The refusal of a charge of `loss` by the budget `by`, saying what is left of it.
fn refused(
    action: &str,
    loss: Loss,
    dataset: &str,
    by: Scope,
    reason: Refusal,
    budget: &Budget,
) -> EngineError {
    let left = BudgetView::new(dataset, budget);
    let (code, whose) = match by {
        Scope::Principal => (Code::BudgetExhausted, "your budget"),
        Scope::Dataset => (
            Code::DatasetBudgetExhausted,
            "the dataset-wide budget, shared by every principal,",
        ),
    };
    let cost = format!(
        "this {action} costs rho {}, epsilon {} and delta {}",
        loss.rho, loss.epsilon, loss.delta
    );
    let message = match (reason, budget.rho_total) {
        (Refusal::DeltaOnRhoBudget, _) => format!(
            "{cost}; {whose} is in rho and takes no delta: ask without threshold keys or with a \
             zCDP (Gaussian) or pure (Laplace) budget"
        ),
        (Refusal::Exhausted, Some(_)) => format!(
            "{cost}; {whose} has rho {} left",
            left.rho_left.unwrap_or(0.0)
        ),
        (Refusal::Exhausted, None) => format!(
            "{cost}; composed with what was spent it does not fit: {whose} has epsilon {} and \
             delta {} left",
            left.epsilon_left, left.delta_left
        ),
    };
    let details = match by {
        Scope::Principal => {
            serde_json::json!({ "cost": loss, "by": by, "reason": reason, "budget": left })
        }
        Scope::Dataset => serde_json::json!({
            "cost": loss, "by": by, "reason": reason, "left": LeftView::new(budget),
        }),
    };
    EngineError::new(code, message).with_details(details)
}

/// Refuse a principal whose role is not among `roles` (a revoked one is refused whatever it is).
/// The error for a token that names no active principal.
pub(crate) fn invalid_token() -> EngineError {
    EngineError::new(Code::InvalidToken, "the bearer token is unknown or revoked")
}

pub fn require(principal: &Principal, roles: &[Role]) -> Result<()> {
    if roles.contains(&principal.role) && !principal.revoked {
        return Ok(());
    }
    let allowed: Vec<&str> = roles.iter().map(|r| r.name()).collect();
    let message = if principal.revoked {
        format!("principal {} is revoked", principal.id)
    } else {
        format!(
            "this endpoint is for the roles {}; you are {}",
            allowed.join(", "),
            principal.role.name()
        )
    };
    Err(EngineError::new(Code::Forbidden, message))
}

fn no_budget(dataset: &str) -> EngineError {
    EngineError::new(
        Code::NoBudget,
        format!("no budget is set for you on dataset {dataset}; ask an admin"),
    )
}
