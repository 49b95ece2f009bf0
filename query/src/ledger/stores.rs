//! What the ledger stores beside charges: upload reports, releases and reference tables.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::*;

impl Ledger {
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

    /// Store a release paid for by `paid`, in one transaction with the charge's answer
    /// (the release id, so asking again serves it free). `body` gets the new id and returns
    /// the release JSON.
    pub fn store_release(
        &self,
        paid: Paid,
        dataset: &str,
        body: impl FnOnce(i64) -> String,
    ) -> Result<i64> {
        let charge_id = paid.charge_id;
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
        answer_charge(&tx, charge_id, serde_json::json!({ "release_id": id }))?;
        tx.commit()?;
        Ok(id)
    }

    /// Store a synthetic table paid for by `paid`, in one transaction with the charge's answer
    /// (the table's id, so asking again serves it free). `info` gets the new id and returns the
    /// table's metadata JSON.
    pub fn store_synthetic(
        &self,
        paid: Paid,
        dataset: &str,
        parquet: &[u8],
        info: impl FnOnce(i64) -> String,
    ) -> Result<i64> {
        let charge_id = paid.charge_id;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO synthetic_tables (dataset, charge_id, info, parquet) VALUES (?1, ?2, '', ?3)",
            params![dataset, charge_id, parquet],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "UPDATE synthetic_tables SET info = ?2 WHERE id = ?1",
            params![id, info(id)],
        )?;
        answer_charge(&tx, charge_id, serde_json::json!({ "synthetic_id": id }))?;
        tx.commit()?;
        Ok(id)
    }

    /// The metadata JSON of every synthetic table of a dataset, newest first.
    pub fn synthetic_tables(&self, dataset: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT info FROM synthetic_tables WHERE dataset = ?1 ORDER BY id DESC")?;
        let rows = stmt.query_map([dataset], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// The metadata JSON and the Parquet of synthetic table `id` of a dataset.
    pub fn synthetic_table(&self, dataset: &str, id: i64) -> Result<Option<(String, Vec<u8>)>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT info, parquet FROM synthetic_tables WHERE dataset = ?1 AND id = ?2",
                params![dataset, id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
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
}

/// Record `answer` as what charge `charge_id` paid for, in `tx`; a refunded charge takes no
/// answer (its owner died and nothing may be released for it).
fn answer_charge(
    tx: &rusqlite::Transaction,
    charge_id: i64,
    answer: serde_json::Value,
) -> Result<()> {
    let stored = tx.execute(
        "UPDATE charges SET answer = ?2, released_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
         WHERE id = ?1 AND refunded_at IS NULL",
        params![charge_id, answer.to_string()],
    )?;
    if stored == 0 {
        return Err(LedgerError::Refunded(charge_id));
    }
    Ok(())
}
