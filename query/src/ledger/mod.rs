//! The privacy-budget ledger, principals and the audit log, in SQLite (WAL mode).
//!
//! Architecture invariant: a charge is committed before the answer it pays for is computed
//! (write-ahead). Each charge is decided in a `BEGIN IMMEDIATE` transaction that reads every
//! earlier charge of the principal and, when the dataset has a dataset-wide budget, every earlier
//! charge on the dataset by anyone, checks that both still fit with the new one, and records it;
//! so concurrent callers (threads or processes) can never overspend either budget, and a crash
//! can never release an answer that was not paid for. Concurrent charges, stored answers and
//! audit entries share transactions (`writer`: group commits, one fsync for many), each decided
//! in arrival order against everything ahead of it. A crash after the charge and before the
//! release loses budget, never privacy.
//!
//! Accounting composes in zCDP (the DP crate's [`zcdp`](ctstats_dp::zcdp) module docs): a charge
//! is a [`Loss`], a rho (discrete Gaussian) plus an (epsilon, delta) part, pure when its delta is
//! 0 (discrete Laplace) and approximate otherwise (the threshold mechanism). What a set of
//! charges has spent at a delta is the best valid composition: the rho values added, the
//! approximate parts added, each pure epsilon added or moved into the rho total as
//! `epsilon^2 / 2`, and the rho total converted once by OpenDP. A budget is an (epsilon, delta)
//! the composition must stay within, or a rho the rho total (pure charges as `epsilon^2 / 2`)
//! must stay within; a rho budget takes no approximate part. Amounts are stored as integers in
//! units of 1e-12; charges are rounded up and totals down, so rounding never favours the caller.
//!
//! A charge stays pending until its answer is stored; the pending charges of a process that
//! died are refunded when the ledger is next opened (`owners`): nothing was released for them.
//!
//! A released answer is stored with its charge, keyed by the caller and a hash of the canonical
//! query. Asking the same question again returns the stored answer at no cost: it is
//! post-processing of a released value.
//!
//! The schema is versioned by `PRAGMA user_version` (`migrate`): opening a ledger written before
//! rho accounting converts its charges without losing or shrinking one.

mod audit;
mod budgets;
mod migrate;
mod owners;
mod principals;
mod stores;
#[cfg(test)]
mod tests;
mod units;
mod writer;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

pub use budgets::{ChargeRecord, Refusal, Scope, Spend, Total};
pub use owners::Refund;
pub use principals::token_hash;
pub use units::*;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("no secure random source: {0}")]
    Random(String),
    #[error("no principal with id {0}")]
    NoSuchPrincipal(String),
    #[error("invalid amount: {0}")]
    InvalidAmount(String),
    #[error("privacy accounting failed: {0}")]
    Dp(#[from] ctstats_dp::DpError),
    #[error("the ledger has schema version {0}, newer than this program's; upgrade ctstats")]
    NewerSchema(i64),
    #[error("ledger owner lock: {0}")]
    Io(String),
    #[error("writing the ledger: {0}")]
    Write(String),
    #[error("charge {0} was refunded (its owner was found dead): its answer cannot be stored")]
    Refunded(i64),
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// What a principal may do (DESIGN.md section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Uploads batches for its own organisation and reads its own batch reports.
    Ngo,
    /// Headquarters: DP queries and releases within its budget.
    Analyst,
    /// DP queries within its budget.
    Researcher,
    /// Manages principals and budgets; reads no records.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Ngo => "ngo",
            Role::Analyst => "analyst",
            Role::Researcher => "researcher",
            Role::Admin => "admin",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        [Role::Ngo, Role::Analyst, Role::Researcher, Role::Admin]
            .into_iter()
            .find(|r| r.name() == name)
    }
}

/// A caller known to the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Principal {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The organisation an `ngo` principal uploads for.
    pub organisation: Option<String>,
    /// The missions an `ngo` principal may upload for (ISO alpha-3, sorted); an `ngo` principal
    /// bound to none uploads nowhere until an admin binds it. Empty for other roles.
    pub missions: Vec<String>,
    pub created_at: String,
    pub revoked: bool,
}

/// A budget (a principal's on one dataset, or the dataset's own) and what was spent of it.
///
/// Spending is composed, not added (module docs): `epsilon_spent` is the epsilon of the best
/// valid composition of every charge at `delta_total`, so the guarantee so far is
/// (`epsilon_spent`, `delta_total`)-DP. For a rho budget (`rho_total` set) the limit is in rho
/// and the (epsilon, delta) figures are zero.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Budget {
    /// The (epsilon, delta) budget; 0 for a rho budget.
    pub epsilon_total: f64,
    pub delta_total: f64,
    /// A budget in zCDP rho instead of (epsilon, delta), when set so.
    pub rho_total: Option<f64>,
    /// The rho of the zCDP (Gaussian) charges added; for a rho budget the pure charges are
    /// included as `epsilon^2 / 2` (what counts against `rho_total`).
    pub rho_spent: f64,
    /// The pure-DP (Laplace) charges' epsilons added.
    pub pure_epsilon_spent: f64,
    /// The approximate (threshold) charges' epsilons added.
    pub approx_epsilon_spent: f64,
    /// The composed epsilon of every charge at `delta_total` (0 for a rho budget); the largest
    /// f64 if no composition fits in `delta_total` (a budget lowered below what was spent).
    pub epsilon_spent: f64,
    /// The approximate charges' deltas added: the part of delta not expressible in rho. The rho
    /// total converts at what is left of `delta_total` after it.
    pub delta_spent: f64,
}

impl Budget {
    /// What is left of epsilon in composed terms (0 for a rho budget).
    pub fn epsilon_left(&self) -> f64 {
        (self.epsilon_total - self.epsilon_spent).max(0.0)
    }
    /// The delta left for approximate parts (0 for a rho budget).
    pub fn delta_left(&self) -> f64 {
        (self.delta_total - self.delta_spent).max(0.0)
    }
    /// The rho left, for a rho budget.
    pub fn rho_left(&self) -> Option<f64> {
        self.rho_total.map(|t| (t - self.rho_spent).max(0.0))
    }
}

/// One audit log line: (principal, action, detail, outcome). Never a result value.
pub type AuditEntry = (Option<String>, String, String, String);

/// One line of the audit log, as an admin reads it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub at: String,
    pub principal_id: Option<String>,
    pub action: String,
    pub detail: String,
    /// What the action charged: its rho and its (epsilon, delta) part.
    pub rho: f64,
    pub epsilon: f64,
    pub delta: f64,
    pub outcome: String,
}

/// The validation report of one upload, kept for the uploading organisation.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UploadRecord {
    pub id: i64,
    pub at: String,
    pub principal_id: String,
    pub organisation: String,
    /// `committed`, `rejected` or `duplicate`.
    pub status: String,
    /// The ingest report as JSON (row numbers, columns, rules; never an identifier value).
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
}

/// The privacy cost of one answer as (epsilon, delta), and a charge in the terms it composes in
/// (the DP crate's types).
pub use ctstats_dp::{Cost, Loss};

/// Proof that a charge was committed to the ledger. Only [`Ledger::charge`] makes one (the fields
/// are private and there is no constructor), and exact aggregates are computed only for a holder
/// (`plan::aggregate` takes one), so "charged before computed" is a type, not a statement order.
#[derive(Debug, PartialEq)]
pub struct Paid {
    charge_id: i64,
    loss: Loss,
}

impl Paid {
    /// The charge's row in the ledger.
    pub fn charge_id(&self) -> i64 {
        self.charge_id
    }

    /// What was charged.
    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// A token for the crate's own tests of the row work, which run without a ledger.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Paid {
        Paid {
            charge_id: 0,
            loss: Loss::ZERO,
        }
    }
}

/// What a charge request came to.
#[derive(Debug, PartialEq)]
pub enum Charge {
    /// Paid: compute the answer, then `store_answer(paid, ..)` before releasing it.
    Charged { paid: Paid, budget: Budget },
    /// The same query was answered before for this caller: its stored answer, at no cost.
    Reused { answer: String, budget: Budget },
    /// The principal's budget (`by: Principal`, `budget` is the principal's) or the dataset's
    /// (`by: Dataset`, `budget` is the dataset's) cannot take it; nothing was charged.
    Refused {
        by: Scope,
        reason: Refusal,
        budget: Budget,
    },
    /// No budget was set for this caller on this dataset.
    NoBudget,
}

/// The ledger. One SQLite connection behind a mutex; every charge is one immediate transaction.
#[derive(Debug)]
pub struct Ledger {
    /// The group-commit writer of charges, stored answers and the audit log (none for an
    /// in-memory ledger, which writes on `conn`). First, so that it is dropped first: what is
    /// queued is committed while this instance still holds its owner lock.
    writer: Option<writer::Writer>,
    conn: Mutex<Connection>,
    path: std::path::PathBuf,
    /// This instance's id in the charges it makes, and the lock that says it is alive.
    owner: owners::Owner,
    /// Budget views already composed, by limit and charges (composing costs OpenDP conversions;
    /// a refused charge leaves the charges as they were, so its view is asked again and again).
    views: budgets::Views,
    /// Charges as last read on `conn`, while nothing was committed since (re-served answers).
    units: budgets::UnitsCache,
}

/// The schema as version 1 wrote it (`user_version` 0); `migrate` takes it to the current one.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS principals (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    organisation TEXT,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS budgets (
    principal_id TEXT NOT NULL REFERENCES principals(id),
    dataset TEXT NOT NULL,
    epsilon_total INTEGER NOT NULL CHECK (epsilon_total >= 0),
    delta_total INTEGER NOT NULL CHECK (delta_total >= 0),
    epsilon_spent INTEGER NOT NULL DEFAULT 0,
    delta_spent INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (principal_id, dataset)
);
CREATE TABLE IF NOT EXISTS charges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    principal_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    query_hash TEXT NOT NULL,
    epsilon INTEGER NOT NULL CHECK (epsilon >= 0),
    delta INTEGER NOT NULL CHECK (delta >= 0),
    answer TEXT,
    charged_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    released_at TEXT
);
CREATE INDEX IF NOT EXISTS charges_by_query ON charges (principal_id, dataset, query_hash);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    principal_id TEXT,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    epsilon INTEGER NOT NULL DEFAULT 0,
    delta INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    principal_id TEXT NOT NULL,
    organisation TEXT NOT NULL,
    status TEXT NOT NULL,
    report TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_by_organisation ON uploads (organisation, id);
CREATE TABLE IF NOT EXISTS releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL,
    charge_id INTEGER NOT NULL UNIQUE REFERENCES charges(id),
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reference_tables (
    name TEXT PRIMARY KEY,
    loaded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    loaded_by TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

impl Ledger {
    /// Open (creating if needed) the ledger at `path`, in WAL mode.
    pub fn open(path: &Path) -> Result<Ledger> {
        let connect = || -> Result<Connection> {
            let conn = Connection::open(path)?;
            conn.busy_timeout(Duration::from_secs(30))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            Ok(conn)
        };
        let mut conn = connect()?;
        conn.execute_batch(SCHEMA)?;
        migrate::migrate(&mut conn)?;
        let in_memory = path.as_os_str() == ":memory:";
        let writer = if in_memory {
            None
        } else {
            Some(writer::Writer::start(connect()?))
        };
        let ledger = Ledger {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            owner: owners::Owner::take(path)?,
            writer,
            views: budgets::Views::default(),
            units: budgets::UnitsCache::default(),
        };
        let refunds = ledger.refund_abandoned()?;
        if !refunds.is_empty() {
            tracing::warn!(
                charges = refunds.len(),
                "refunded the charges of a process that ended before storing their answers"
            );
        }
        Ok(ledger)
    }

    pub(super) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
