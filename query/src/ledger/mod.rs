//! The privacy-budget ledger, principals and the audit log, in SQLite (WAL mode).
//!
//! Architecture invariant: a charge is committed before the answer it pays for is computed
//! (write-ahead). Each charge is one `BEGIN IMMEDIATE` transaction that reads what is left and
//! records the spend, so concurrent callers (threads or processes) can never overspend, and a
//! crash can never release an answer that was not paid for. A crash after the charge and before
//! the release loses budget, never privacy.
//!
//! Accounting is basic sequential composition over (epsilon, delta): the budget left is the
//! total minus the sum of what was charged. Amounts are stored as integers in units of 1e-12
//! ("pico-epsilon"); costs are rounded up and totals down, so rounding never favours the caller.
//!
//! A released answer is stored with its charge, keyed by the caller and a hash of the canonical
//! query. Asking the same question again returns the stored answer at no cost: it is
//! post-processing of a released value.

mod audit;
mod budgets;
#[cfg(test)]
mod fixture_v1;
mod principals;
mod stores;
#[cfg(test)]
mod tests;
mod units;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

pub use budgets::ChargeRecord;
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
    pub created_at: String,
    pub revoked: bool,
}

/// A principal's budget on one dataset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Budget {
    pub epsilon_total: f64,
    pub delta_total: f64,
    pub epsilon_spent: f64,
    pub delta_spent: f64,
}

impl Budget {
    pub fn epsilon_left(&self) -> f64 {
        (self.epsilon_total - self.epsilon_spent).max(0.0)
    }
    pub fn delta_left(&self) -> f64 {
        (self.delta_total - self.delta_spent).max(0.0)
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

/// The privacy cost of one answer (the DP crate's type).
pub use ctstats_dp::Cost;

/// Proof that a charge was committed to the ledger. Only [`Ledger::charge`] makes one (the fields
/// are private and there is no constructor), and exact aggregates are computed only for a holder
/// (`plan::aggregate` takes one), so "charged before computed" is a type, not a statement order.
#[derive(Debug, PartialEq)]
pub struct Paid {
    charge_id: i64,
    cost: Cost,
}

impl Paid {
    /// The charge's row in the ledger.
    pub fn charge_id(&self) -> i64 {
        self.charge_id
    }

    /// What was charged.
    pub fn cost(&self) -> Cost {
        self.cost
    }

    /// A token for the crate's own tests of the row work, which run without a ledger.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Paid {
        Paid {
            charge_id: 0,
            cost: Cost::ZERO,
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
    /// Not enough budget left; nothing was charged.
    Refused { budget: Budget },
    /// No budget was set for this caller on this dataset.
    NoBudget,
}

/// The ledger. One SQLite connection behind a mutex; every charge is one immediate transaction.
#[derive(Debug)]
pub struct Ledger {
    conn: Mutex<Connection>,
}

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
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Ledger {
            conn: Mutex::new(conn),
        })
    }

    pub(super) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
