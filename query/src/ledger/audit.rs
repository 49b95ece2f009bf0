//! The audit log: append-only (SQLite triggers refuse updates and deletes), written in the
//! ledger writer's group commits (`writer`): every entry is durable before the call that wrote
//! it returns, and the entries of concurrent callers share one transaction and one fsync. The
//! one exception, [`Ledger::audit_reuse`], queues the entry of a re-served answer for the next
//! group commit without waiting; readers of the log wait for what is queued first.

use rusqlite::{Connection, params};

use super::writer::{Done, Job};
use super::*;

/// One audit line to write.
pub(super) struct Entry {
    principal_id: Option<String>,
    action: String,
    detail: String,
    /// rho, epsilon, delta in ledger units.
    units: [i64; 3],
    outcome: String,
}

impl Entry {
    fn new(
        principal_id: Option<&str>,
        action: &str,
        detail: &str,
        loss: Option<Loss>,
        outcome: &str,
    ) -> Entry {
        let loss = loss.unwrap_or(Loss::ZERO);
        Entry {
            principal_id: principal_id.map(str::to_string),
            action: action.to_string(),
            detail: detail.to_string(),
            units: [
                units_up(loss.rho),
                units_up(loss.epsilon),
                units_up(loss.delta),
            ],
            outcome: outcome.to_string(),
        }
    }
}

/// Insert `entry` (inside the writer's transaction).
pub(super) fn insert(conn: &Connection, e: &Entry) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO audit (principal_id, action, detail, rho, epsilon, delta, outcome) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let [rho, epsilon, delta] = e.units;
    stmt.execute(params![
        e.principal_id,
        e.action,
        e.detail,
        rho,
        epsilon,
        delta,
        e.outcome
    ])?;
    Ok(())
}

impl Ledger {
    /// Append to the audit log; returns once the entry is committed. `detail` must hold no
    /// record value (queries, ids, reasons).
    pub fn audit(
        &self,
        principal_id: Option<&str>,
        action: &str,
        detail: &str,
        loss: Option<Loss>,
        outcome: &str,
    ) -> Result<()> {
        let entry = Entry::new(principal_id, action, detail, loss, outcome);
        match self.write(Job::Audit(entry))? {
            Done::Audit => Ok(()),
            _ => Err(LedgerError::Write(
                "an audit entry was answered as another job".into(),
            )),
        }
    }

    /// Append the entry of a re-served answer (outcome `reused`, no loss): queued for the next
    /// group commit, returning at once, since nothing was charged or released. Every later
    /// waiting write and every read of the log commits it first; a crash may lose the entries
    /// of the group in flight, never a charge.
    pub fn audit_reuse(&self, principal_id: &str, action: &str, detail: &str) -> Result<()> {
        let entry = Entry::new(Some(principal_id), action, detail, None, "reused");
        self.write_later(Job::Audit(entry))
    }

    /// The audit log, oldest first.
    pub fn audit_entries(&self) -> Result<Vec<AuditEntry>> {
        self.sync()?;
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT principal_id, action, detail, outcome FROM audit ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The audit log with times and costs, oldest first, at most `limit` lines from `after_id`.
    pub fn audit_log(&self, after_id: i64, limit: u32) -> Result<Vec<(i64, AuditRecord)>> {
        self.sync()?;
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, at, principal_id, action, detail, rho, epsilon, delta, outcome FROM audit \
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
                    rho: amount(r.get(5)?),
                    epsilon: amount(r.get(6)?),
                    delta: amount(r.get(7)?),
                    outcome: r.get(8)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}
