//! Principals and their bearer tokens (stored only hashed).

use rusqlite::{Connection, OptionalExtension, params};

use super::*;

/// Hash of a bearer token as stored: tokens are 256-bit random, so an unkeyed hash suffices.
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// The principal's missions as one comma-separated column (mission codes hold no comma).
const MISSIONS: &str = "(SELECT group_concat(mission, ',') FROM principal_missions m \
                         WHERE m.principal_id = principals.id)";

fn insert_missions(conn: &Connection, id: &str, missions: &[String]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO principal_missions (principal_id, mission) VALUES (?1, ?2)",
    )?;
    for mission in missions {
        stmt.execute(params![id, mission])?;
    }
    Ok(())
}

impl Ledger {
    /// Create a principal and return it with its bearer token (shown once, stored only hashed).
    /// An `ngo` principal made this way is bound to no mission and can upload nowhere until
    /// [`bind_missions`](Ledger::bind_missions); [`add_principal_for`](Ledger::add_principal_for)
    /// binds it as it is made.
    pub fn add_principal(
        &self,
        name: &str,
        role: Role,
        organisation: Option<&str>,
    ) -> Result<(Principal, String)> {
        self.add_principal_for(name, role, organisation, &[])
    }

    /// [`add_principal`](Ledger::add_principal), bound to the missions it may upload for.
    pub fn add_principal_for(
        &self,
        name: &str,
        role: Role,
        organisation: Option<&str>,
        missions: &[String],
    ) -> Result<(Principal, String)> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| LedgerError::Random(e.to_string()))?;
        let token = format!("cts_{}", hex::encode(bytes));
        let id = format!("p_{}", &hex::encode(blake3::hash(&bytes).as_bytes())[..12]);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO principals (id, name, role, organisation, token_hash) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, name, role.name(), organisation, token_hash(&token)],
        )?;
        insert_missions(&tx, &id, missions)?;
        tx.commit()?;
        drop(conn);
        let principal = self
            .principal(&id)?
            .ok_or_else(|| LedgerError::NoSuchPrincipal(id.clone()))?;
        Ok((principal, token))
    }

    /// Bind the principal `id` to exactly `missions` (replacing its earlier binding).
    pub fn bind_missions(&self, id: &str, missions: &[String]) -> Result<Principal> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists: Option<String> = tx
            .query_row("SELECT id FROM principals WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_none() {
            return Err(LedgerError::NoSuchPrincipal(id.into()));
        }
        tx.execute(
            "DELETE FROM principal_missions WHERE principal_id = ?1",
            [id],
        )?;
        insert_missions(&tx, id, missions)?;
        tx.commit()?;
        drop(conn);
        self.principal(id)?
            .ok_or_else(|| LedgerError::NoSuchPrincipal(id.into()))
    }

    fn principal_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Principal> {
        let role: String = row.get(2)?;
        let missions: Option<String> = row.get(6)?;
        let mut missions: Vec<String> = missions
            .unwrap_or_default()
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect();
        missions.sort();
        Ok(Principal {
            id: row.get(0)?,
            name: row.get(1)?,
            role: Role::from_name(&role).unwrap_or(Role::Researcher),
            organisation: row.get(3)?,
            missions,
            created_at: row.get(4)?,
            revoked: row.get::<_, Option<String>>(5)?.is_some(),
        })
    }

    pub fn principal(&self, id: &str) -> Result<Option<Principal>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT id, name, role, organisation, created_at, revoked_at, {MISSIONS} FROM principals WHERE id = ?1"),
                [id],
                Self::principal_from_row,
            )
            .optional()?)
    }

    /// The principal a bearer token belongs to, unless revoked.
    pub fn authenticate(&self, token: &str) -> Result<Option<Principal>> {
        let conn = self.conn();
        Ok(conn
            .prepare_cached(&format!(
                "SELECT id, name, role, organisation, created_at, revoked_at, {MISSIONS} \
                 FROM principals WHERE token_hash = ?1 AND revoked_at IS NULL"
            ))?
            .query_row([token_hash(token)], Self::principal_from_row)
            .optional()?)
    }

    pub fn principals(&self) -> Result<Vec<Principal>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare(&format!("SELECT id, name, role, organisation, created_at, revoked_at, {MISSIONS} FROM principals ORDER BY created_at, id"))?;
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
}
