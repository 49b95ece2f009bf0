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

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

/// The largest epsilon budget: far above any meaningful one, and 10^18 units fit an i64.
pub const MAX_EPSILON: f64 = 1e6;

/// The largest delta budget. Delta is the probability that a release is not private at all;
/// practice keeps it far below one over the number of persons, and nothing here needs more.
pub const MAX_DELTA: f64 = 0.01;

/// Units per 1.0 of epsilon or delta.
const UNITS: f64 = 1e12;
const UNITS_INT: u128 = 1_000_000_000_000;

/// Convert an amount to stored units, rounding up (costs): the smallest
/// integer `u` with `u >= amount * 10^12`, computed exactly on the binary
/// value of `amount` (a floating-point product could round a cost down).
/// NaN and amounts beyond the range saturate to `i64::MAX`, the conservative
/// side for a cost.
pub fn units_up(amount: f64) -> i64 {
    if amount.is_nan() {
        return i64::MAX;
    }
    if amount < 0.0 {
        return units_down(-amount).saturating_neg();
    }
    exact_units(amount, true)
}

/// Convert a budget to stored units, rounding down: the largest integer `u`
/// with `u <= d * 10^12`, where `d` is the shortest decimal that reads back as
/// `amount` (what the admin typed: a budget of `1e-6` is 10^6 units, although
/// the nearest f64 is a little below 10^-6). NaN gives 0, the conservative
/// side for a budget.
pub fn units_down(amount: f64) -> i64 {
    if amount.is_nan() {
        return 0;
    }
    if amount < 0.0 {
        return units_up(-amount).saturating_neg();
    }
    if amount.is_infinite() || amount >= 9.2e6 {
        return i64::MAX;
    }
    // `{}` prints the shortest round-trip decimal, never in exponent form.
    let text = format!("{amount}");
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    let frac: String = frac
        .chars()
        .chain(std::iter::repeat('0'))
        .take(12)
        .collect();
    format!("{whole}{frac}").parse().unwrap_or(i64::MAX)
}

/// The largest f64 that is at most `units / 10^12` exactly: a target a
/// measurement can be calibrated to so that its cost, rounded up by
/// [`units_up`], is at most `units`.
pub fn at_most(units: i64) -> f64 {
    let mut x = units as f64 / UNITS;
    while units_up(x) > units {
        x = x.next_down();
    }
    x
}

/// A part of a budget typed as `amount`, split in `n` equal shares: the
/// target each share is calibrated to. The shares' costs, each rounded up to
/// units, add up to at most the budget's units.
pub fn share(amount: f64, n: usize) -> f64 {
    at_most(units_down(amount) / n.max(1) as i64)
}

/// Whether `cost` fits in what `budget` has left, in stored units.
pub fn affords(budget: &Budget, cost: Cost) -> bool {
    let left = |total: f64, spent: f64| units_down(total).saturating_sub(units_down(spent));
    units_up(cost.epsilon) <= left(budget.epsilon_total, budget.epsilon_spent)
        && units_up(cost.delta) <= left(budget.delta_total, budget.delta_spent)
}

/// `amount * 10^12` rounded up or down, for a non-negative, non-NaN amount.
/// The f64 is `mantissa * 2^exponent` exactly; the product with 10^12 is
/// done in u128 and the power of two applied as a shift.
fn exact_units(amount: f64, up: bool) -> i64 {
    if amount.is_infinite() {
        return i64::MAX;
    }
    let bits = amount.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = u128::from(bits & ((1u64 << 52) - 1));
    let (mantissa, exponent) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u128 << 52), biased - 1075)
    };
    let product = mantissa * UNITS_INT; // < 2^53 * 2^40: fits
    let units = if exponent >= 0 {
        if exponent >= 64 || product.leading_zeros() < exponent as u32 + 1 {
            return i64::MAX;
        }
        product << exponent
    } else {
        let shift = (-exponent) as u32;
        if shift >= 128 {
            u128::from(up && product != 0)
        } else {
            let whole = product >> shift;
            let rest = product & ((1u128 << shift) - 1);
            whole + u128::from(up && rest != 0)
        }
    };
    i64::try_from(units).unwrap_or(i64::MAX)
}

fn amount(units: i64) -> f64 {
    units as f64 / UNITS
}

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

/// The privacy cost of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cost {
    pub epsilon: f64,
    pub delta: f64,
}

/// What a charge request came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Charge {
    /// Paid: compute the answer, then `store_answer(charge_id, ..)` before releasing it.
    Charged { charge_id: i64, budget: Budget },
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

/// Hash of a bearer token as stored: tokens are 256-bit random, so an unkeyed hash suffices.
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

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

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Create a principal and return it with its bearer token (shown once, stored only hashed).
    pub fn add_principal(
        &self,
        name: &str,
        role: Role,
        organisation: Option<&str>,
    ) -> Result<(Principal, String)> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| LedgerError::Random(e.to_string()))?;
        let token = format!("cts_{}", hex::encode(bytes));
        let id = format!("p_{}", &hex::encode(blake3::hash(&bytes).as_bytes())[..12]);
        let conn = self.conn();
        conn.execute(
            "INSERT INTO principals (id, name, role, organisation, token_hash) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, name, role.name(), organisation, token_hash(&token)],
        )?;
        drop(conn);
        let principal = self
            .principal(&id)?
            .ok_or_else(|| LedgerError::NoSuchPrincipal(id.clone()))?;
        Ok((principal, token))
    }

    fn principal_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Principal> {
        let role: String = row.get(2)?;
        Ok(Principal {
            id: row.get(0)?,
            name: row.get(1)?,
            role: Role::from_name(&role).unwrap_or(Role::Researcher),
            organisation: row.get(3)?,
            created_at: row.get(4)?,
            revoked: row.get::<_, Option<String>>(5)?.is_some(),
        })
    }

    pub fn principal(&self, id: &str) -> Result<Option<Principal>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT id, name, role, organisation, created_at, revoked_at FROM principals WHERE id = ?1",
                [id],
                Self::principal_from_row,
            )
            .optional()?)
    }

    /// The principal a bearer token belongs to, unless revoked.
    pub fn authenticate(&self, token: &str) -> Result<Option<Principal>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT id, name, role, organisation, created_at, revoked_at FROM principals \
                 WHERE token_hash = ?1 AND revoked_at IS NULL",
                [token_hash(token)],
                Self::principal_from_row,
            )
            .optional()?)
    }

    pub fn principals(&self) -> Result<Vec<Principal>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, name, role, organisation, created_at, revoked_at FROM principals ORDER BY created_at, id")?;
        let rows = stmt.query_map([], Self::principal_from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub fn revoke(&self, id: &str) -> Result<()> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE principals SET revoked_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1 AND revoked_at IS NULL",
            [id],
        )?;
        if n == 0 {
            return Err(LedgerError::NoSuchPrincipal(id.into()));
        }
        Ok(())
    }

    /// Set the total budget of a principal on a dataset; what was spent stays spent.
    pub fn set_budget(
        &self,
        principal_id: &str,
        dataset: &str,
        epsilon: f64,
        delta: f64,
    ) -> Result<Budget> {
        if !((0.0..=MAX_EPSILON).contains(&epsilon) && (0.0..=MAX_DELTA).contains(&delta)) {
            return Err(LedgerError::InvalidAmount(format!(
                "epsilon must be 0 to {MAX_EPSILON} and delta 0 to {MAX_DELTA}"
            )));
        }
        if self.principal(principal_id)?.is_none() {
            return Err(LedgerError::NoSuchPrincipal(principal_id.into()));
        }
        let conn = self.conn();
        conn.execute(
            "INSERT INTO budgets (principal_id, dataset, epsilon_total, delta_total) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (principal_id, dataset) DO UPDATE SET epsilon_total = ?3, delta_total = ?4",
            params![principal_id, dataset, units_down(epsilon), units_down(delta)],
        )?;
        drop(conn);
        Ok(self.budget(principal_id, dataset)?.expect("just set"))
    }

    pub fn budget(&self, principal_id: &str, dataset: &str) -> Result<Option<Budget>> {
        let conn = self.conn();
        Ok(read_budget(&conn, principal_id, dataset)?)
    }

    /// Charge `cost` for `query_hash` before the answer is computed (see the module docs).
    pub fn charge(
        &self,
        principal_id: &str,
        dataset: &str,
        query_hash: &str,
        cost: Cost,
    ) -> Result<Charge> {
        if !(cost.epsilon.is_finite()
            && cost.epsilon >= 0.0
            && cost.delta.is_finite()
            && cost.delta >= 0.0)
        {
            return Err(LedgerError::InvalidAmount(
                "a cost is a finite, non-negative (epsilon, delta)".into(),
            ));
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(budget) = read_budget(&tx, principal_id, dataset)? else {
            return Ok(Charge::NoBudget);
        };
        let released: Option<String> = tx
            .query_row(
                "SELECT answer FROM charges WHERE principal_id = ?1 AND dataset = ?2 AND query_hash = ?3 \
                 AND answer IS NOT NULL ORDER BY id DESC LIMIT 1",
                params![principal_id, dataset, query_hash],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(answer) = released {
            return Ok(Charge::Reused { answer, budget });
        }
        let (eps, delta) = (units_up(cost.epsilon), units_up(cost.delta));
        let (eps_total, delta_total, eps_spent, delta_spent): (i64, i64, i64, i64) = tx.query_row(
            "SELECT epsilon_total, delta_total, epsilon_spent, delta_spent FROM budgets WHERE principal_id = ?1 AND dataset = ?2",
            params![principal_id, dataset],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        if eps_spent.saturating_add(eps) > eps_total
            || delta_spent.saturating_add(delta) > delta_total
        {
            return Ok(Charge::Refused { budget });
        }
        tx.execute(
            "UPDATE budgets SET epsilon_spent = epsilon_spent + ?3, delta_spent = delta_spent + ?4 \
             WHERE principal_id = ?1 AND dataset = ?2",
            params![principal_id, dataset, eps, delta],
        )?;
        tx.execute(
            "INSERT INTO charges (principal_id, dataset, query_hash, epsilon, delta) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![principal_id, dataset, query_hash, eps, delta],
        )?;
        let charge_id = tx.last_insert_rowid();
        let budget = read_budget(&tx, principal_id, dataset)?.expect("budget row exists");
        tx.commit()?;
        Ok(Charge::Charged { charge_id, budget })
    }

    /// Store the answer a charge paid for; call before releasing it.
    pub fn store_answer(&self, charge_id: i64, answer: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE charges SET answer = ?2, released_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
            params![charge_id, answer],
        )?;
        Ok(())
    }

    /// Sum of every charge of a principal on a dataset, as recorded charge by charge.
    pub fn charged_total(&self, principal_id: &str, dataset: &str) -> Result<Cost> {
        let conn = self.conn();
        let (eps, delta): (i64, i64) = conn.query_row(
            "SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0) FROM charges WHERE principal_id = ?1 AND dataset = ?2",
            params![principal_id, dataset],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(Cost {
            epsilon: amount(eps),
            delta: amount(delta),
        })
    }

    /// Append to the audit log. `detail` must hold no record value (queries, ids, reasons).
    pub fn audit(
        &self,
        principal_id: Option<&str>,
        action: &str,
        detail: &str,
        cost: Option<Cost>,
        outcome: &str,
    ) -> Result<()> {
        let cost = cost.unwrap_or(Cost {
            epsilon: 0.0,
            delta: 0.0,
        });
        let conn = self.conn();
        conn.execute(
            "INSERT INTO audit (principal_id, action, detail, epsilon, delta, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![principal_id, action, detail, units_up(cost.epsilon), units_up(cost.delta), outcome],
        )?;
        Ok(())
    }

    /// The audit log, oldest first.
    pub fn audit_entries(&self) -> Result<Vec<AuditEntry>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT principal_id, action, detail, outcome FROM audit ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

impl Ledger {
    /// The audit log with times and costs, oldest first, at most `limit` lines from `after_id`.
    pub fn audit_log(&self, after_id: i64, limit: u32) -> Result<Vec<(i64, AuditRecord)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, at, principal_id, action, detail, epsilon, delta, outcome FROM audit \
             WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after_id, limit], |r| {
            Ok((
                r.get(0)?,
                AuditRecord {
                    at: r.get(1)?,
                    principal_id: r.get(2)?,
                    action: r.get(3)?,
                    detail: r.get(4)?,
                    epsilon: amount(r.get(5)?),
                    delta: amount(r.get(6)?),
                    outcome: r.get(7)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Keep the report of an upload for its organisation; returns its id.
    pub fn record_upload(
        &self,
        principal_id: &str,
        organisation: &str,
        status: &str,
        report: &serde_json::Value,
    ) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO uploads (principal_id, organisation, status, report) VALUES (?1, ?2, ?3, ?4)",
            params![principal_id, organisation, status, report.to_string()],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// The upload reports of one organisation, newest first.
    pub fn uploads(&self, organisation: &str) -> Result<Vec<UploadRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, at, principal_id, organisation, status, report FROM uploads \
             WHERE organisation = ?1 ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([organisation], |r| {
            let report: String = r.get(5)?;
            Ok(UploadRecord {
                id: r.get(0)?,
                at: r.get(1)?,
                principal_id: r.get(2)?,
                organisation: r.get(3)?,
                status: r.get(4)?,
                report: serde_json::from_str(&report).unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Store a release paid for by `charge_id`, in one transaction with the charge's answer
    /// (the release id, so asking again serves it free). `body` gets the new id and returns
    /// the release JSON.
    pub fn store_release(
        &self,
        charge_id: i64,
        dataset: &str,
        body: impl FnOnce(i64) -> String,
    ) -> Result<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO releases (dataset, charge_id, body) VALUES (?1, ?2, '')",
            params![dataset, charge_id],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "UPDATE releases SET body = ?2 WHERE id = ?1",
            params![id, body(id)],
        )?;
        tx.execute(
            "UPDATE charges SET answer = ?2, released_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
            params![charge_id, serde_json::json!({ "release_id": id }).to_string()],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// The JSON of every release of a dataset, newest first.
    pub fn releases(&self, dataset: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT body FROM releases WHERE dataset = ?1 ORDER BY id DESC")?;
        let rows = stmt.query_map([dataset], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// The JSON of release `id` of a dataset.
    pub fn release(&self, dataset: &str, id: i64) -> Result<Option<String>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT body FROM releases WHERE dataset = ?1 AND id = ?2",
                params![dataset, id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Replace the reference table `name` (non-private, loaded by an admin) with `body` (JSON).
    pub fn set_reference(&self, name: &str, loaded_by: &str, body: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO reference_tables (name, loaded_by, body) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET body = ?3, loaded_by = ?2, \
             loaded_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            params![name, loaded_by, body],
        )?;
        Ok(())
    }

    /// The reference table `name` as loaded (JSON), if any.
    pub fn reference(&self, name: &str) -> Result<Option<String>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT body FROM reference_tables WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Every charge of a principal on a dataset: (charge id, query hash, cost, whether its answer
    /// was released). For consistency checks after a crash.
    pub fn charges(&self, principal_id: &str, dataset: &str) -> Result<Vec<ChargeRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, query_hash, epsilon, delta, answer IS NOT NULL FROM charges \
             WHERE principal_id = ?1 AND dataset = ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![principal_id, dataset], |r| {
            Ok(ChargeRecord {
                id: r.get(0)?,
                query_hash: r.get(1)?,
                cost: Cost {
                    epsilon: amount(r.get(2)?),
                    delta: amount(r.get(3)?),
                },
                released: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

/// One charge as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeRecord {
    pub id: i64,
    pub query_hash: String,
    pub cost: Cost,
    /// Whether the answer it paid for was stored (and so may have been released).
    pub released: bool,
}

fn read_budget(
    conn: &Connection,
    principal_id: &str,
    dataset: &str,
) -> rusqlite::Result<Option<Budget>> {
    conn.query_row(
        "SELECT epsilon_total, delta_total, epsilon_spent, delta_spent FROM budgets WHERE principal_id = ?1 AND dataset = ?2",
        params![principal_id, dataset],
        |r| {
            Ok(Budget {
                epsilon_total: amount(r.get(0)?),
                delta_total: amount(r.get(1)?),
                epsilon_spent: amount(r.get(2)?),
                delta_spent: amount(r.get(3)?),
            })
        },
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
        (dir, ledger)
    }

    #[test]
    fn tokens_authenticate_and_are_stored_hashed() {
        let (dir, ledger) = ledger();
        let (p, token) = ledger
            .add_principal("Dr R", Role::Researcher, None)
            .unwrap();
        assert_eq!(ledger.authenticate(&token).unwrap().unwrap().id, p.id);
        assert!(ledger.authenticate("cts_wrong").unwrap().is_none());
        drop(ledger);
        let bytes = std::fs::read(dir.path().join("ledger.sqlite")).unwrap();
        let wal = std::fs::read(dir.path().join("ledger.sqlite-wal")).unwrap_or_default();
        let needle = token.as_bytes();
        for hay in [&bytes, &wal] {
            assert!(
                !hay.windows(needle.len()).any(|w| w == needle),
                "the raw token is never stored"
            );
        }
        let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
        ledger.revoke(&p.id).unwrap();
        assert!(
            ledger.authenticate(&token).unwrap().is_none(),
            "a revoked token no longer works"
        );
    }

    #[test]
    fn charges_refusals_and_reuse() {
        let (_dir, ledger) = ledger();
        let (p, _) = ledger.add_principal("a", Role::Analyst, None).unwrap();
        assert_eq!(
            ledger
                .charge(
                    &p.id,
                    "ds",
                    "q1",
                    Cost {
                        epsilon: 0.1,
                        delta: 0.0
                    }
                )
                .unwrap(),
            Charge::NoBudget
        );
        ledger.set_budget(&p.id, "ds", 1.0, 1e-6).unwrap();
        let Charge::Charged { charge_id, budget } = ledger
            .charge(
                &p.id,
                "ds",
                "q1",
                Cost {
                    epsilon: 0.6,
                    delta: 0.0,
                },
            )
            .unwrap()
        else {
            panic!("expected a charge");
        };
        assert!((budget.epsilon_left() - 0.4).abs() < 1e-9);
        ledger.store_answer(charge_id, "{\"answer\":1}").unwrap();
        // Asked again: the stored answer, nothing charged.
        match ledger
            .charge(
                &p.id,
                "ds",
                "q1",
                Cost {
                    epsilon: 0.6,
                    delta: 0.0,
                },
            )
            .unwrap()
        {
            Charge::Reused { answer, budget } => {
                assert_eq!(answer, "{\"answer\":1}");
                assert!((budget.epsilon_left() - 0.4).abs() < 1e-9);
            }
            other => panic!("expected reuse, got {other:?}"),
        }
        // Over budget: refused, and the refusal costs nothing.
        assert!(matches!(
            ledger
                .charge(
                    &p.id,
                    "ds",
                    "q2",
                    Cost {
                        epsilon: 0.5,
                        delta: 0.0
                    }
                )
                .unwrap(),
            Charge::Refused { .. }
        ));
        assert!(matches!(
            ledger
                .charge(
                    &p.id,
                    "ds",
                    "q3",
                    Cost {
                        epsilon: 0.1,
                        delta: 2e-6
                    }
                )
                .unwrap(),
            Charge::Refused { .. }
        ));
        assert!((ledger.budget(&p.id, "ds").unwrap().unwrap().epsilon_left() - 0.4).abs() < 1e-9);
        // 0.4 in binary is a little above 4/10: one unit more than is left.
        let cost = |epsilon| Cost {
            epsilon,
            delta: 1e-6,
        };
        let left = ledger.budget(&p.id, "ds").unwrap().unwrap();
        assert!(!affords(&left, cost(0.4)));
        assert!(matches!(
            ledger.charge(&p.id, "ds", "q4", cost(0.4)).unwrap(),
            Charge::Refused { .. }
        ));
        // Exactly the rest, as the service calibrates it, is allowed.
        assert!(affords(&left, cost(share(0.4, 1))));
        assert!(matches!(
            ledger
                .charge(
                    &p.id,
                    "ds",
                    "q4",
                    Cost {
                        epsilon: share(0.4, 1),
                        delta: 1e-6
                    }
                )
                .unwrap(),
            Charge::Charged { .. }
        ));
        assert!(matches!(
            ledger
                .charge(
                    &p.id,
                    "ds",
                    "q5",
                    Cost {
                        epsilon: 1e-12,
                        delta: 0.0
                    }
                )
                .unwrap(),
            Charge::Refused { .. }
        ));
    }

    #[test]
    fn budget_survives_reopening() {
        let (dir, ledger) = ledger();
        let (p, token) = ledger.add_principal("a", Role::Analyst, None).unwrap();
        ledger.set_budget(&p.id, "ds", 2.0, 0.0).unwrap();
        ledger
            .charge(
                &p.id,
                "ds",
                "q",
                Cost {
                    epsilon: 0.75,
                    delta: 0.0,
                },
            )
            .unwrap();
        drop(ledger);
        let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
        assert_eq!(ledger.authenticate(&token).unwrap().unwrap().id, p.id);
        assert!((ledger.budget(&p.id, "ds").unwrap().unwrap().epsilon_spent - 0.75).abs() < 1e-12);
    }

    /// 32 threads fire 1,000 charges at a budget that allows only some: the total charged never
    /// exceeds the budget and equals the sum over the charges granted.
    #[test]
    fn concurrent_charges_never_overspend() {
        let (_dir, ledger) = ledger();
        let ledger = Arc::new(ledger);
        let (p, _) = ledger.add_principal("a", Role::Researcher, None).unwrap();
        ledger.set_budget(&p.id, "ds", 10.0, 0.0).unwrap();
        let granted: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..32)
                .map(|t| {
                    let ledger = ledger.clone();
                    let id = p.id.clone();
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        for i in 0..32 {
                            let eps = 0.01 + 0.001 * ((t * 7 + i) % 13) as f64;
                            if let Charge::Charged { .. } = ledger
                                .charge(
                                    &id,
                                    "ds",
                                    &format!("q{t}-{i}"),
                                    Cost {
                                        epsilon: eps,
                                        delta: 0.0,
                                    },
                                )
                                .unwrap()
                            {
                                mine.push(eps);
                            }
                        }
                        mine
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let spent = ledger.budget(&p.id, "ds").unwrap().unwrap().epsilon_spent;
        let sum: f64 = granted.iter().sum();
        assert!(
            granted.len() < 1024,
            "the budget allowed only some of the queries"
        );
        assert!(spent <= 10.0 + 1e-9, "spent {spent}");
        assert!(
            (spent - sum).abs() < 1e-6,
            "spent {spent} = sum of granted {sum}"
        );
        assert!((ledger.charged_total(&p.id, "ds").unwrap().epsilon - spent).abs() < 1e-9);
    }

    #[test]
    fn audit_log_is_append_only() {
        let (_dir, ledger) = ledger();
        ledger
            .audit(None, "query", "{\"measure\":\"persons\"}", None, "refused")
            .unwrap();
        let conn = ledger.conn();
        assert!(conn.execute("UPDATE audit SET outcome = 'ok'", []).is_err());
        assert!(conn.execute("DELETE FROM audit", []).is_err());
        drop(conn);
        assert_eq!(ledger.audit_entries().unwrap().len(), 1);
    }

    /// `x * 10^12` rounded up or down, from the exact decimal expansion of
    /// `x` (an independent route from the binary one in `exact_units`).
    fn oracle_units(x: f64, up: bool) -> i64 {
        let text = format!("{x:.1100}");
        let (whole, frac) = text.split_once('.').unwrap();
        let units: i128 = format!("{whole}{}", &frac[..12]).parse().unwrap();
        let rest = frac[12..].bytes().any(|b| b != b'0');
        i64::try_from(units + i128::from(up && rest)).unwrap_or(i64::MAX)
    }

    #[test]
    fn rounding_cases_floating_point_gets_wrong() {
        // 0.1 is slightly above 1/10 in binary: a cost of 0.1 is charged one
        // unit more than 10^11; a budget typed as 0.1 is 10^11 units.
        assert_eq!(units_up(0.1), 100_000_000_001);
        assert_eq!(units_down(0.1), 100_000_000_000);
        // 1e-6 is slightly below 10^-6: as a cost it is 10^6 units, and so is
        // a budget of 1e-6, so a query at delta 1e-6 fits that budget.
        assert_eq!(units_up(1e-6), 1_000_000);
        assert_eq!(units_down(1e-6), 1_000_000);
        assert_eq!(units_down(1e-13), 0);
        assert_eq!(units_down(2.5), 2_500_000_000_000);
        assert_eq!(units_down(1e7), i64::MAX);
        // A share of 0.1 is calibrated just below 0.1, so ten fit in 1.0.
        assert_eq!(share(0.1, 1), 0.1f64.next_down());
        assert_eq!(units_up(share(0.1, 1)), 100_000_000_000);
        assert_eq!(units_up(share(1.0, 3)), 333_333_333_333);
        assert_eq!(units_up(0.0), 0);
        assert_eq!(units_up(f64::MIN_POSITIVE), 1);
        assert_eq!(units_down(f64::MIN_POSITIVE), 0);
        assert_eq!(units_up(f64::NAN), i64::MAX);
        assert_eq!(units_down(f64::NAN), 0);
        assert_eq!(units_up(f64::INFINITY), i64::MAX);
        assert_eq!(units_up(1e300), i64::MAX);
        for x in [1.0, 2.5, 64.0, 1e6, 0.5, 0.375] {
            assert_eq!(units_up(x), units_down(x));
            assert_eq!(units_up(x), oracle_units(x, true));
        }
    }

    proptest! {
        #[test]
        fn rounding_never_favours_the_caller(cost in 0.0f64..100.0, total in 0.0f64..100.0) {
            // Exact oracle: Rust prints the exact decimal expansion of an f64.
            prop_assert_eq!(units_up(cost), oracle_units(cost, true));
            // A budget is read as its shortest decimal, which is within half
            // an ulp of the binary value: at most one unit above its floor.
            let (typed, binary) = (units_down(total), oracle_units(total, false));
            prop_assert!(typed == binary || typed == binary + 1, "{total}: {typed} vs {binary}");
            if units_up(cost) <= units_down(total) {
                prop_assert!(cost <= total);
            }
        }

        #[test]
        fn costs_round_up_exactly_at_every_scale(bits in 0u64..0x4330_0000_0000_0000) {
            // Every non-negative f64 below 2^52 (sub-normals included).
            let x = f64::from_bits(bits);
            prop_assert_eq!(units_up(x), oracle_units(x, true));
        }

        #[test]
        fn shares_fit_the_budget(budget in 0.0f64..10.0, n in 1usize..8) {
            let target = share(budget, n);
            prop_assert!(target >= 0.0);
            prop_assert!(units_up(target) * n as i64 <= units_down(budget));
            // And nothing is wasted beyond one unit per share.
            prop_assert!(units_down(budget) - units_up(target) * n as i64 <= 2 * n as i64);
        }
    }
}
