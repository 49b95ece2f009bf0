//! Who made a pending charge, and refunding the charges of a ledger instance that died.
//!
//! A charge is pending from the moment it is committed until the answer it pays for is stored
//! (`store_answer`, `store_release`). A process killed in between released nothing for it: the
//! answer existed only in its memory. Such charges are refunded the next time any process opens
//! the ledger, so a crash costs no budget.
//!
//! Which instance is dead is told by a lock, not by a clock: every [`Ledger`] takes a fresh
//! random owner id and holds an exclusive lock on `<ledger>.owners/<id>.lock` for as long as
//! it lives (the operating system drops it when the process dies, however it dies). A charge
//! records its owner. Opening the ledger refunds the pending charges of every other owner whose
//! lock file it can lock, or that no longer exists; an owner that is alive holds its lock, so
//! its pending charges are never touched. The lock file is created under a temporary name,
//! locked, and only then renamed into place, so a lock file under its real name is always
//! locked while its owner lives.
//!
//! Each refund is one audit entry (action `refund`, the charge id and query hash, its loss,
//! outcome `refunded`), written in the transaction that refunds it. A refunded charge cannot
//! have its answer stored afterwards (`store_answer` checks), so an answer is never released
//! for a charge that no longer counts.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use rusqlite::{TransactionBehavior, params};

use super::*;

/// This ledger instance's owner id and the lock that says it is alive.
#[derive(Debug)]
pub(super) struct Owner {
    pub(super) id: String,
    /// Held, never read: the lock lasts as long as the file is open.
    _lock: Option<File>,
}

impl Owner {
    /// A fresh owner for the ledger at `path`, its lock taken. An in-memory ledger (no
    /// directory to hold locks in) has an owner without a lock: no other process shares it.
    pub(super) fn take(path: &Path) -> Result<Owner> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| LedgerError::Random(e.to_string()))?;
        let id = hex::encode(bytes);
        let Some(dir) = owners_dir(path) else {
            return Ok(Owner { id, _lock: None });
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let pending = dir.join(format!("{id}.tmp"));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&pending)
            .map_err(io)?;
        file.lock().map_err(io)?;
        std::fs::rename(&pending, dir.join(format!("{id}.lock"))).map_err(io)?;
        Ok(Owner {
            id,
            _lock: Some(file),
        })
    }
}

fn io(e: std::io::Error) -> LedgerError {
    LedgerError::Io(e.to_string())
}

/// Where the owners' lock files of the ledger at `path` live; none for an in-memory ledger.
fn owners_dir(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    if path.as_os_str() == ":memory:" {
        return None;
    }
    let mut dir = name.to_os_string();
    dir.push(".owners");
    Some(path.with_file_name(dir))
}

/// Whether the owner whose lock file is `file` is gone: the file is missing, or we can lock it.
/// When it is gone, the lock is held (returned) until the caller has refunded its charges.
fn gone(file: &Path) -> Result<Option<Option<File>>> {
    match OpenOptions::new().write(true).open(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(None)),
        Err(e) => Err(io(e)),
        Ok(f) => match f.try_lock() {
            Ok(()) => Ok(Some(Some(f))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(io(e)),
        },
    }
}

/// One refunded charge.
#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    pub charge_id: i64,
    pub principal_id: String,
    pub query_hash: String,
    pub loss: Loss,
}

impl Ledger {
    /// Refund every pending charge of an owner that is gone (module docs), each with its audit
    /// entry; then remove the lock files of owners that are gone. Returns what was refunded.
    pub fn refund_abandoned(&self) -> Result<Vec<Refund>> {
        let Some(dir) = owners_dir(&self.path) else {
            return Ok(Vec::new());
        };
        let owners: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT DISTINCT owner FROM charges \
                 WHERE answer IS NULL AND refunded_at IS NULL AND owner IS NOT NULL AND owner <> ?1",
            )?;
            let rows = stmt.query_map([&self.owner.id], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut refunds = Vec::new();
        for owner in owners {
            // Owner ids are hex written by `Owner::take`; anything else is not a file name.
            if owner.is_empty() || !owner.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let file = dir.join(format!("{owner}.lock"));
            let Some(lock) = gone(&file)? else { continue };
            refunds.extend(self.refund_owner(&owner)?);
            if lock.is_some() {
                let _ = std::fs::remove_file(&file);
            }
        }
        // Lock files of owners that ended with nothing pending.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let is_lock = path.extension().is_some_and(|e| e == "lock");
                let mine = path.file_stem().is_some_and(|s| *s == *self.owner.id);
                if is_lock
                    && !mine
                    && let Ok(Some(Some(_lock))) = gone(&path)
                {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(refunds)
    }

    fn refund_owner(&self, owner: &str) -> Result<Vec<Refund>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // (refund, its loss in ledger units as charged)
        let found: Vec<(Refund, [i64; 3])> = {
            let mut stmt = tx.prepare(
                "SELECT id, principal_id, query_hash, rho, epsilon, delta FROM charges \
                 WHERE owner = ?1 AND answer IS NULL AND refunded_at IS NULL ORDER BY id",
            )?;
            let rows = stmt.query_map([owner], |r| {
                let units: [i64; 3] = [r.get(3)?, r.get(4)?, r.get(5)?];
                let refund = Refund {
                    charge_id: r.get(0)?,
                    principal_id: r.get(1)?,
                    query_hash: r.get(2)?,
                    loss: Loss {
                        rho: amount(units[0]),
                        epsilon: amount(units[1]),
                        delta: amount(units[2]),
                    },
                };
                Ok((refund, units))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (refund, [rho, epsilon, delta]) in &found {
            tx.execute(
                "UPDATE charges SET refunded_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                 WHERE id = ?1 AND answer IS NULL AND refunded_at IS NULL",
                [refund.charge_id],
            )?;
            tx.execute(
                "INSERT INTO audit (principal_id, action, detail, rho, epsilon, delta, outcome) \
                 VALUES (?1, 'refund', ?2, ?3, ?4, ?5, 'refunded')",
                params![
                    refund.principal_id,
                    format!(
                        "charge {} for {}: its process ended before the answer was stored",
                        refund.charge_id, refund.query_hash
                    ),
                    rho,
                    epsilon,
                    delta,
                ],
            )?;
        }
        let refunds: Vec<Refund> = found.into_iter().map(|(r, _)| r).collect();
        tx.commit()?;
        Ok(refunds)
    }
}
