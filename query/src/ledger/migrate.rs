//! Schema versions (`PRAGMA user_version`) and the migration between them, in one immediate
//! transaction at open (a second process opening the same ledger waits, then finds it done).
//!
//! - 0: version 1's schema (charges in (epsilon, delta), summed into `budgets.*_spent`).
//! - 2: charges in [`Loss`] terms (a `rho` column beside the (epsilon, delta) part), budgets in
//!   (epsilon, delta) or rho, the dataset-wide budgets, the spent totals computed from the
//!   charges (the `*_spent` columns are dropped), and a `rho` column in the audit log.
//! - 3: each charge names the ledger instance (`owner`) that made it, and a charge whose answer
//!   was never stored because its owner died is refunded (`refunded_at`; the charge row stays,
//!   it no longer counts). Charges made before version 3 have no owner and are never refunded:
//!   whether their process still runs cannot be known, so they keep counting.
//! - 4: `principal_missions`, the missions each `ngo` principal may upload for. Principals made
//!   before version 4 are bound to none, so an `ngo` one is refused every upload until an admin
//!   binds it (`ctstats principal bind`): its earlier uploads are no evidence of where it
//!   belongs, since nothing checked them, and guessing a binding from them could make a wrong
//!   upload the rule.
//! - 5: `synthetic_tables`, the DP synthetic tables (their metadata and Parquet), stored with
//!   their charge as releases are.
//!
//! Version 1's charges migrate without losing or shrinking one:
//! - a charge whose stored answer has only Gaussian parts gets the rho of its noise, re-derived
//!   from each part's stored scale and sensitivity through OpenDP's zCDP map
//!   ([`rho_of_gaussian`]); the same noise, so the same privacy, stated in the terms it composes
//!   in (it converts at the old delta to at most the old epsilon);
//! - a charge with delta 0 (Laplace parts, a release) stays an epsilon, now a pure-DP charge;
//! - anything else (threshold parts, a charge whose answer was never stored) stays an
//!   approximate (epsilon, delta) charge as it was;
//! - where a budget's old spent totals exceed its charges (they should not), the difference is
//!   kept as one more approximate charge (`migrated:unaccounted`), so no spending is lost.

use rusqlite::{Connection, TransactionBehavior, params};
use serde_json::Value;

use super::*;
use ctstats_dp::{Sensitivity, rho_of_gaussian};

/// The schema this code writes.
pub(super) const SCHEMA_VERSION: i64 = 5;

/// The query hash of a charge that keeps spending the old totals held beyond their charges.
pub const UNACCOUNTED: &str = "migrated:unaccounted";

pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(LedgerError::NewerSchema(version));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    if version < 2 {
        to_v2(&tx)?;
    }
    if version < 3 {
        to_v3(&tx)?;
    }
    if version < 4 {
        to_v4(&tx)?;
    }
    to_v5(&tx)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

fn to_v2(tx: &Connection) -> Result<()> {
    tx.execute_batch(
        "ALTER TABLE charges ADD COLUMN rho INTEGER NOT NULL DEFAULT 0 CHECK (rho >= 0);
         ALTER TABLE budgets ADD COLUMN rho_total INTEGER CHECK (rho_total IS NULL OR rho_total >= 0);
         ALTER TABLE audit ADD COLUMN rho INTEGER NOT NULL DEFAULT 0;
         CREATE TABLE dataset_budgets (
             dataset TEXT PRIMARY KEY,
             epsilon_total INTEGER NOT NULL CHECK (epsilon_total >= 0),
             delta_total INTEGER NOT NULL CHECK (delta_total >= 0),
             rho_total INTEGER CHECK (rho_total IS NULL OR rho_total >= 0),
             set_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
         );
         CREATE INDEX charges_by_dataset ON charges (dataset);",
    )?;
    // Old totals beyond their charges are kept as a charge of their own.
    let gaps: Vec<(String, String, i64, i64)> = {
        let mut stmt = tx.prepare(
            "SELECT b.principal_id, b.dataset, \
                    b.epsilon_spent - COALESCE(SUM(c.epsilon), 0), b.delta_spent - COALESCE(SUM(c.delta), 0) \
             FROM budgets b LEFT JOIN charges c ON c.principal_id = b.principal_id AND c.dataset = b.dataset \
             GROUP BY b.principal_id, b.dataset",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (principal_id, dataset, eps, delta) in gaps {
        if eps > 0 || delta > 0 {
            tx.execute(
                "INSERT INTO charges (principal_id, dataset, query_hash, epsilon, delta) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![principal_id, dataset, UNACCOUNTED, eps.max(0), delta.max(0)],
            )?;
        }
    }
    tx.execute_batch(
        "ALTER TABLE budgets DROP COLUMN epsilon_spent;
         ALTER TABLE budgets DROP COLUMN delta_spent;",
    )?;
    // Gaussian answers: their rho from the stored noise.
    let gaussian: Vec<(i64, String)> = {
        let mut stmt = tx.prepare(
            "SELECT id, answer FROM charges WHERE answer IS NOT NULL AND delta > 0 ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (id, answer) in gaussian {
        if let Some(rho) = gaussian_rho(&answer)? {
            tx.execute(
                "UPDATE charges SET rho = ?2, epsilon = 0, delta = 0 WHERE id = ?1",
                params![id, rho],
            )?;
        }
    }
    Ok(())
}

fn to_v3(tx: &Connection) -> Result<()> {
    tx.execute_batch(
        "ALTER TABLE charges ADD COLUMN owner TEXT;
         ALTER TABLE charges ADD COLUMN refunded_at TEXT;
         CREATE INDEX charges_pending ON charges (owner) WHERE answer IS NULL AND refunded_at IS NULL;",
    )?;
    Ok(())
}

fn to_v4(tx: &Connection) -> Result<()> {
    tx.execute_batch(
        "CREATE TABLE principal_missions (
             principal_id TEXT NOT NULL REFERENCES principals(id),
             mission TEXT NOT NULL,
             PRIMARY KEY (principal_id, mission)
         );",
    )?;
    Ok(())
}

fn to_v5(tx: &Connection) -> Result<()> {
    tx.execute_batch(
        "CREATE TABLE synthetic_tables (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             dataset TEXT NOT NULL,
             charge_id INTEGER NOT NULL UNIQUE REFERENCES charges(id),
             info TEXT NOT NULL,
             parquet BLOB NOT NULL
         );",
    )?;
    Ok(())
}

/// The rho, in units (each part rounded up), of a stored answer whose parts are all Gaussian
/// (each with its scale and sensitivity), else None.
fn gaussian_rho(stored: &str) -> Result<Option<i64>> {
    let Ok(stored) = serde_json::from_str::<Value>(stored) else {
        return Ok(None);
    };
    let Some(parts) = stored["answer"]["parts"].as_array() else {
        return Ok(None);
    };
    let mut rho: i64 = 0;
    for part in parts {
        let gaussian = part["mechanism"] == "gaussian" && part.get("threshold").is_none();
        let scale = part["scale"].as_f64();
        let sensitivity = serde_json::from_value::<Sensitivity>(part["sensitivity"].clone());
        let (true, Some(scale), Ok(sensitivity)) = (gaussian, scale, sensitivity) else {
            return Ok(None);
        };
        rho = rho.saturating_add(units_up(rho_of_gaussian(scale, &sensitivity)?));
    }
    Ok((rho > 0 && rho < i64::MAX).then_some(rho))
}
