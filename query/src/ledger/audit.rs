//! The audit log: append-only (SQLite triggers refuse updates and deletes), written in group
//! commits.
//!
//! Every entry is durable before the call that wrote it returns, as before; but the entries of
//! concurrent callers share one transaction and one fsync. A writer thread with its own
//! connection takes every entry waiting, inserts them in one `BEGIN IMMEDIATE` transaction,
//! commits (synchronous `FULL`), and only then tells each caller. One request at a time pays one
//! fsync as before; 64 at once pay one between them. Charges do not go through it: each charge is
//! still its own immediate transaction on the ledger's connection, committed before its answer
//! is computed (the write-ahead guarantee is untouched).

use std::sync::mpsc;

use rusqlite::{Connection, params};

use super::*;

/// One audit line to write.
struct Entry {
    principal_id: Option<String>,
    action: String,
    detail: String,
    /// rho, epsilon, delta in ledger units.
    units: [i64; 3],
    outcome: String,
}

/// One entry waiting for the writer, and where to say it is committed.
struct Pending {
    entry: Entry,
    done: mpsc::SyncSender<Result<(), String>>,
}

/// The group-commit writer of the audit log.
#[derive(Debug)]
pub(super) struct AuditWriter {
    queue: Mutex<mpsc::Sender<Pending>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("action", &self.entry.action)
            .finish()
    }
}

impl AuditWriter {
    /// A writer over its own connection to the ledger file.
    pub(super) fn start(conn: Connection) -> AuditWriter {
        let (queue, entries) = mpsc::channel::<Pending>();
        std::thread::Builder::new()
            .name("ctstats-audit".into())
            .spawn(move || write_loop(conn, entries))
            .expect("starting the audit writer thread");
        AuditWriter {
            queue: Mutex::new(queue),
        }
    }
}

/// Most entries in one transaction.
const GROUP: usize = 512;

fn write_loop(mut conn: Connection, entries: mpsc::Receiver<Pending>) {
    while let Ok(first) = entries.recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match entries.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let result = insert(&mut conn, group.iter().map(|p| &p.entry)).map_err(|e| e.to_string());
        for pending in group {
            let _ = pending.done.send(result.clone());
        }
    }
}

/// Insert `entries` in one immediate transaction.
fn insert<'a>(
    conn: &mut Connection,
    entries: impl Iterator<Item = &'a Entry>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO audit (principal_id, action, detail, rho, epsilon, delta, outcome) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for e in entries {
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
        }
    }
    tx.commit()
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
        let loss = loss.unwrap_or(Loss::ZERO);
        let entry = Entry {
            principal_id: principal_id.map(str::to_string),
            action: action.to_string(),
            detail: detail.to_string(),
            units: [
                units_up(loss.rho),
                units_up(loss.epsilon),
                units_up(loss.delta),
            ],
            outcome: outcome.to_string(),
        };
        // An in-memory ledger has no file for a second connection: its own writes it.
        let Some(writer) = &self.audit_writer else {
            return Ok(insert(&mut self.conn(), std::iter::once(&entry))?);
        };
        let (done, committed) = mpsc::sync_channel(1);
        let stopped = || LedgerError::Io("the audit writer stopped".into());
        writer
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Pending { entry, done })
            .map_err(|_| stopped())?;
        committed
            .recv()
            .map_err(|_| stopped())?
            .map_err(LedgerError::Audit)
    }

    /// The audit log, oldest first.
    pub fn audit_entries(&self) -> Result<Vec<AuditEntry>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT principal_id, action, detail, outcome FROM audit ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The audit log with times and costs, oldest first, at most `limit` lines from `after_id`.
    pub fn audit_log(&self, after_id: i64, limit: u32) -> Result<Vec<(i64, AuditRecord)>> {
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
