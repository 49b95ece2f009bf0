//! Budgets and charges: the write-ahead charge in one immediate transaction.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::*;

impl Ledger {
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
        Ok(Charge::Charged {
            paid: Paid { charge_id, cost },
            budget,
        })
    }

    /// Store the answer a charge paid for; call before releasing it.
    pub fn store_answer(&self, paid: Paid, answer: &str) -> Result<()> {
        let charge_id = paid.charge_id;
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

pub(super) fn read_budget(
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
