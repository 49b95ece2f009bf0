//! Principals and their bearer tokens (stored only hashed).

use rusqlite::{OptionalExtension, params};

use super::*;

/// Hash of a bearer token as stored: tokens are 256-bit random, so an unkeyed hash suffices.
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

impl Ledger {
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
}
