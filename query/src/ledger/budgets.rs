//! Budgets and charges: the write-ahead charge in one immediate transaction, checked against the
//! principal's budget and the dataset's, each over every charge it covers, composed in zCDP.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::writer::{Done, Job};
use super::*;

/// A budget as set: (epsilon, delta), or a zCDP rho.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Total {
    /// The charges' best composition must stay (epsilon, delta)-DP.
    Approx { epsilon: f64, delta: f64 },
    /// The charges' rho total, pure charges as `epsilon^2 / 2`, must stay within rho; no
    /// approximate (delta) part is taken.
    Rho { rho: f64 },
}

impl Total {
    fn check(self) -> Result<Limit> {
        match self {
            Total::Approx { epsilon, delta } => {
                if (0.0..=MAX_EPSILON).contains(&epsilon) && (0.0..=MAX_DELTA).contains(&delta) {
                    Ok(Limit {
                        epsilon: units_down(epsilon),
                        delta: units_down(delta),
                        rho: None,
                    })
                } else {
                    Err(LedgerError::InvalidAmount(format!(
                        "epsilon must be 0 to {MAX_EPSILON} and delta 0 to {MAX_DELTA}"
                    )))
                }
            }
            Total::Rho { rho } => {
                if (0.0..=MAX_RHO).contains(&rho) {
                    Ok(Limit {
                        epsilon: 0,
                        delta: 0,
                        rho: Some(units_down(rho)),
                    })
                } else {
                    Err(LedgerError::InvalidAmount(format!(
                        "rho must be 0 to {MAX_RHO}"
                    )))
                }
            }
        }
    }
}

/// Which budget refused a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The caller's own budget on the dataset.
    Principal,
    /// The dataset-wide budget, shared by every principal.
    Dataset,
}

/// Why a budget refused a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// With the charge, the composition would exceed the budget.
    Exhausted,
    /// A rho budget takes no approximate (delta) part, and the charge has one (the threshold
    /// mechanism).
    DeltaOnRhoBudget,
}

/// A budget's limit in stored units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Limit {
    epsilon: i64,
    delta: i64,
    rho: Option<i64>,
}

/// Charges in stored units, in the terms they compose in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct Units {
    rho: i64,
    approx_epsilon: i64,
    approx_delta: i64,
    pure: Vec<i64>,
}

impl Units {
    fn add(&mut self, loss: &LossUnits) {
        self.rho = self.rho.saturating_add(loss.rho);
        if loss.delta > 0 {
            self.approx_epsilon = self.approx_epsilon.saturating_add(loss.epsilon);
            self.approx_delta = self.approx_delta.saturating_add(loss.delta);
        } else if loss.epsilon > 0 {
            self.pure.push(loss.epsilon);
        }
    }

    fn spend(&self) -> Spend {
        Spend {
            rho: amount(self.rho),
            approx_epsilon: amount(self.approx_epsilon),
            approx_delta: amount(self.approx_delta),
            pure: self.pure.iter().map(|u| amount(*u)).collect(),
        }
    }

    /// Sequential composition of the (epsilon, delta) parts, exact in units (no rho).
    fn basic_epsilon(&self) -> i64 {
        self.pure
            .iter()
            .fold(self.approx_epsilon, |a, u| a.saturating_add(*u))
    }

    /// The pure charges as rho (`epsilon^2 / 2` each), rounded up.
    fn pure_as_rho(&self) -> i64 {
        let sum: f64 = self.pure.iter().map(|u| amount(*u).powi(2) / 2.0).sum();
        // Each square and addition rounds by at most half an ulp: widen to cover them.
        units_up(sum * (1.0 + f64::EPSILON * (self.pure.len() as f64 + 2.0)))
    }

    /// Whether these charges fit in `limit`, and if not, why.
    fn check(&self, limit: &Limit) -> Result<Option<Refusal>> {
        if let Some(rho_total) = limit.rho {
            if self.approx_delta > 0 {
                return Ok(Some(Refusal::DeltaOnRhoBudget));
            }
            let rho = self.rho.saturating_add(self.pure_as_rho());
            return Ok((rho > rho_total).then_some(Refusal::Exhausted));
        }
        if self.approx_delta > limit.delta {
            return Ok(Some(Refusal::Exhausted));
        }
        if self.rho == 0 && self.basic_epsilon() <= limit.epsilon {
            return Ok(None);
        }
        let s = self.spend();
        let fits = ctstats_dp::zcdp::fits(
            s.rho,
            s.approx_epsilon,
            s.approx_delta,
            &s.pure,
            (at_most(limit.epsilon), at_most(limit.delta)),
        )?;
        Ok((!fits).then_some(Refusal::Exhausted))
    }

    /// The budget view of these charges against `limit` (the [`Budget`] field docs).
    fn budget(&self, limit: &Limit) -> Result<Budget> {
        let pure_total = self.pure.iter().fold(0i64, |a, u| a.saturating_add(*u));
        let mut b = Budget {
            epsilon_total: amount(limit.epsilon),
            delta_total: amount(limit.delta),
            rho_total: limit.rho.map(amount),
            rho_spent: amount(self.rho),
            pure_epsilon_spent: amount(pure_total),
            approx_epsilon_spent: amount(self.approx_epsilon),
            epsilon_spent: 0.0,
            delta_spent: amount(self.approx_delta),
        };
        if limit.rho.is_some() {
            b.rho_spent = amount(self.rho.saturating_add(self.pure_as_rho()));
        } else {
            // Sequential composition exactly in units, when there is no rho; the best valid
            // composition otherwise, or where moving pure charges into rho does better.
            let composed = self.spend().epsilon_at(b.delta_total)?.unwrap_or(f64::MAX);
            b.epsilon_spent = if self.rho == 0 {
                composed.min(amount(self.basic_epsilon()))
            } else {
                composed
            };
        }
        Ok(b)
    }
}

/// The most budget views [`Views`] keeps; it starts afresh beyond.
const MAX_VIEWS: usize = 256;

/// A cache of budget views: a view is a function of the limit and the charges alone.
#[derive(Debug, Default)]
pub(super) struct Views(Mutex<std::collections::HashMap<(Limit, Units), Budget>>);

impl Views {
    fn get(&self, limit: &Limit, units: &Units) -> Result<Budget> {
        let mut views = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (*limit, units.clone());
        if let Some(b) = views.get(&key) {
            return Ok(*b);
        }
        let b = units.budget(limit)?;
        if views.len() >= MAX_VIEWS {
            views.clear();
        }
        views.insert(key, b);
        Ok(b)
    }
}

/// The charges' [`Units`] as the ledger's read connection last saw them, per principal and
/// dataset (`None`: the dataset's), valid while nothing has been committed since: a re-served
/// answer reports its caller's budget without summing every charge the caller ever made.
///
/// The stamp is SQLite's `PRAGMA data_version` (it changes when any other connection, the
/// group-commit writer or another process, commits) with the read connection's own
/// `total_changes` (its own writes, as an in-memory ledger makes them). The stamp is read before
/// the charges are, so a cached entry is never older than its stamp: a commit in between makes
/// the next stamp differ and the entry is read again.
#[derive(Debug, Default)]
pub(super) struct UnitsCache(Mutex<UnitsCacheInner>);

#[derive(Debug, Default)]
struct UnitsCacheInner {
    stamp: Option<(i64, u64)>,
    units: std::collections::HashMap<(String, Option<String>), Units>,
}

impl UnitsCache {
    /// The units of `principal_id` on `dataset` (`None`: every principal's), from the cache when
    /// nothing was committed since they were read. `conn` is the read connection, held.
    fn get(&self, conn: &Connection, principal_id: Option<&str>, dataset: &str) -> Result<Units> {
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        let stamp = Some((version, conn.total_changes()));
        let key = (dataset.to_string(), principal_id.map(str::to_string));
        {
            let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if cache.stamp != stamp {
                cache.units.clear();
                cache.stamp = stamp;
            } else if let Some(units) = cache.units.get(&key) {
                return Ok(units.clone());
            }
        }
        let units = match principal_id {
            Some(p) => principal_units(conn, p, dataset)?,
            None => dataset_units(conn, dataset)?,
        };
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if cache.stamp == stamp {
            if cache.units.len() >= MAX_VIEWS {
                cache.units.clear();
            }
            cache.units.insert(key, units.clone());
        }
        Ok(units)
    }
}

/// A [`Loss`] in stored units, each part rounded up.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LossUnits {
    rho: i64,
    epsilon: i64,
    delta: i64,
}

impl LossUnits {
    /// A charge's loss in units, refused unless finite and non-negative in every part.
    fn checked(loss: &Loss) -> Result<LossUnits> {
        if !loss.is_valid() {
            return Err(LedgerError::InvalidAmount(
                "a charge is a finite, non-negative (rho, epsilon, delta)".into(),
            ));
        }
        Ok(LossUnits {
            rho: units_up(loss.rho),
            epsilon: units_up(loss.epsilon),
            delta: units_up(loss.delta),
        })
    }
}

/// What a set of charges adds up to, in the terms they compose in (the module docs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spend {
    /// The rho of the zCDP charges added.
    pub rho: f64,
    /// The approximate charges' epsilons and deltas added.
    pub approx_epsilon: f64,
    pub approx_delta: f64,
    /// Each pure charge's epsilon.
    pub pure: Vec<f64>,
}

impl Spend {
    /// The composed epsilon at `delta` overall (`None`: no composition fits in `delta`).
    pub fn epsilon_at(&self, delta: f64) -> Result<Option<f64>> {
        Ok(ctstats_dp::composed_epsilon(
            self.rho,
            self.approx_epsilon,
            self.approx_delta,
            &self.pure,
            delta,
        )?)
    }
}

/// What a charge would come to, computed without charging: each budget as it would be after it,
/// and whether it would take it (`None`: it would).
#[derive(Debug, Clone, PartialEq)]
pub struct ChargePreview {
    /// The caller's budget after the charge, when one is set.
    pub principal: Option<(Budget, Option<Refusal>)>,
    /// The dataset-wide budget after the charge, when one is set.
    pub dataset: Option<(Budget, Option<Refusal>)>,
}

impl Ledger {
    /// Set the total (epsilon, delta) budget of a principal on a dataset; what was spent stays
    /// spent.
    pub fn set_budget(
        &self,
        principal_id: &str,
        dataset: &str,
        epsilon: f64,
        delta: f64,
    ) -> Result<Budget> {
        self.set_total(principal_id, dataset, Total::Approx { epsilon, delta })
    }

    /// Set the total budget of a principal on a dataset, in (epsilon, delta) or rho; what was
    /// spent stays spent. A rho budget is refused where approximate charges were made.
    pub fn set_total(&self, principal_id: &str, dataset: &str, total: Total) -> Result<Budget> {
        let limit = total.check()?;
        if self.principal(principal_id)?.is_none() {
            return Err(LedgerError::NoSuchPrincipal(principal_id.into()));
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if limit.rho.is_some() && principal_units(&tx, principal_id, dataset)?.approx_delta > 0 {
            return Err(rho_over_approx());
        }
        tx.execute(
            "INSERT INTO budgets (principal_id, dataset, epsilon_total, delta_total, rho_total) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (principal_id, dataset) DO UPDATE SET epsilon_total = ?3, delta_total = ?4, rho_total = ?5",
            params![principal_id, dataset, limit.epsilon, limit.delta, limit.rho],
        )?;
        let budget = self
            .read_budget(&tx, principal_id, dataset)?
            .expect("just set");
        tx.commit()?;
        Ok(budget)
    }

    pub fn budget(&self, principal_id: &str, dataset: &str) -> Result<Option<Budget>> {
        let conn = self.conn();
        self.read_budget(&conn, principal_id, dataset)
    }

    /// Set the dataset-wide budget: every charge on `dataset`, by any principal, counts against
    /// it. Refused (a rho budget) where approximate charges were made on the dataset.
    pub fn set_dataset_budget(&self, dataset: &str, total: Total) -> Result<Budget> {
        let limit = total.check()?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if limit.rho.is_some() && dataset_units(&tx, dataset)?.approx_delta > 0 {
            return Err(rho_over_approx());
        }
        tx.execute(
            "INSERT INTO dataset_budgets (dataset, epsilon_total, delta_total, rho_total) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (dataset) DO UPDATE SET epsilon_total = ?2, delta_total = ?3, rho_total = ?4, \
             set_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            params![dataset, limit.epsilon, limit.delta, limit.rho],
        )?;
        let budget = self.read_dataset_budget(&tx, dataset)?.expect("just set");
        tx.commit()?;
        Ok(budget)
    }

    /// The dataset-wide budget and what every principal spent of it together; `None` when unset
    /// (no dataset-wide cap).
    pub fn dataset_budget(&self, dataset: &str) -> Result<Option<Budget>> {
        let conn = self.conn();
        self.read_dataset_budget(&conn, dataset)
    }

    /// Charge `loss` for `query_hash` before the answer is computed (see the module docs): in one
    /// immediate transaction, refused unless both the principal's budget and the dataset's (when
    /// set) still fit every charge they cover with this one.
    pub fn charge(
        &self,
        principal_id: &str,
        dataset: &str,
        query_hash: &str,
        loss: Loss,
    ) -> Result<Charge> {
        let job = ChargeJob {
            principal_id: principal_id.to_string(),
            dataset: dataset.to_string(),
            query_hash: query_hash.to_string(),
            new: LossUnits::checked(&loss)?,
            owner: self.owner.id.clone(),
        };
        let Done::Charge(decision) = self.write(Job::Charge(job))? else {
            return Err(LedgerError::Write(
                "a charge was answered as another job".into(),
            ));
        };
        // Composed after the commit, so neither the write lock nor the writer is held.
        Ok(match decision {
            Decision::NoBudget => Charge::NoBudget,
            Decision::Reused {
                answer,
                limit,
                units,
            } => Charge::Reused {
                answer,
                budget: self.views.get(&limit, &units)?,
            },
            Decision::Refused {
                by,
                reason,
                limit,
                before,
            } => Charge::Refused {
                by,
                reason,
                budget: self.views.get(&limit, &before)?,
            },
            Decision::Charged {
                charge_id,
                limit,
                mine,
            } => Charge::Charged {
                paid: Paid { charge_id, loss },
                budget: self.views.get(&limit, &mine)?,
            },
        })
    }

    /// The stored answer of `query_hash`, if this principal asked it before, with the budget as
    /// it stands: a plain read, no write lock and no charge (the same lookup `charge` makes
    /// first, for a reused answer that needs no transaction at all).
    pub fn reused(
        &self,
        principal_id: &str,
        dataset: &str,
        query_hash: &str,
    ) -> Result<Option<Charge>> {
        let conn = self.conn();
        let Some(limit) = principal_limit(&conn, principal_id, dataset)? else {
            return Ok(None);
        };
        let Some(answer) = stored_answer(&conn, principal_id, dataset, query_hash)? else {
            return Ok(None);
        };
        let units = self.units.get(&conn, Some(principal_id), dataset)?;
        drop(conn);
        let budget = self.views.get(&limit, &units)?;
        Ok(Some(Charge::Reused { answer, budget }))
    }

    /// What charging `loss` would leave of the principal's budget and the dataset's, and whether
    /// each would take it; nothing is charged or recorded.
    pub fn preview_charge(
        &self,
        principal_id: &str,
        dataset: &str,
        loss: Loss,
    ) -> Result<ChargePreview> {
        let new = LossUnits::checked(&loss)?;
        let conn = self.conn();
        let after = |limit: Option<Limit>, mut units: Units| -> Result<_> {
            let Some(limit) = limit else { return Ok(None) };
            units.add(&new);
            Ok(Some((units.budget(&limit)?, units.check(&limit)?)))
        };
        Ok(ChargePreview {
            principal: after(
                principal_limit(&conn, principal_id, dataset)?,
                self.units.get(&conn, Some(principal_id), dataset)?,
            )?,
            dataset: after(
                dataset_limit(&conn, dataset)?,
                self.units.get(&conn, None, dataset)?,
            )?,
        })
    }

    /// Store the answer a charge paid for (in the writer's next group commit); call before
    /// releasing it.
    pub fn store_answer(&self, paid: Paid, answer: &str) -> Result<()> {
        let charge_id = paid.charge_id;
        let job = Job::Store {
            charge_id,
            answer: answer.to_string(),
        };
        match self.write(job)? {
            Done::Store(true) => Ok(()),
            Done::Store(false) => Err(LedgerError::Refunded(charge_id)),
            _ => Err(LedgerError::Write(
                "an answer was answered as another job".into(),
            )),
        }
    }

    /// Every charge of a principal on a dataset, in the terms they compose in.
    pub fn charged_total(&self, principal_id: &str, dataset: &str) -> Result<Spend> {
        let conn = self.conn();
        Ok(principal_units(&conn, principal_id, dataset)?.spend())
    }

    /// Every charge on a dataset, by every principal, in the terms they compose in.
    pub fn dataset_charged_total(&self, dataset: &str) -> Result<Spend> {
        let conn = self.conn();
        Ok(dataset_units(&conn, dataset)?.spend())
    }

    /// Every charge of a principal on a dataset: (charge id, query hash, loss, whether its answer
    /// was released). For consistency checks after a crash.
    pub fn charges(&self, principal_id: &str, dataset: &str) -> Result<Vec<ChargeRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, query_hash, rho, epsilon, delta, answer IS NOT NULL, refunded_at IS NOT NULL \
             FROM charges WHERE principal_id = ?1 AND dataset = ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![principal_id, dataset], |r| {
            Ok(ChargeRecord {
                id: r.get(0)?,
                query_hash: r.get(1)?,
                loss: Loss {
                    rho: amount(r.get(2)?),
                    epsilon: amount(r.get(3)?),
                    delta: amount(r.get(4)?),
                },
                released: r.get(5)?,
                refunded: r.get(6)?,
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
    /// What it charged, each part rounded up to ledger units.
    pub loss: Loss,
    /// Whether the answer it paid for was stored (and so may have been released).
    pub released: bool,
    /// Whether it was refunded (its process ended before storing the answer): it no longer
    /// counts against any budget.
    pub refunded: bool,
}

/// The answer stored for the latest charge of `query_hash` by this principal, if any.
fn stored_answer(
    conn: &Connection,
    principal_id: &str,
    dataset: &str,
    query_hash: &str,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT answer FROM charges WHERE principal_id = ?1 AND dataset = ?2 AND query_hash = ?3 \
         AND answer IS NOT NULL ORDER BY id DESC LIMIT 1",
    )?
    .query_row(params![principal_id, dataset, query_hash], |r| r.get(0))
    .optional()
}

fn rho_over_approx() -> LedgerError {
    LedgerError::InvalidAmount(
        "a rho budget cannot cover the approximate (delta) charges already made; \
         set an (epsilon, delta) budget"
            .into(),
    )
}

fn principal_limit(
    conn: &Connection,
    principal_id: &str,
    dataset: &str,
) -> rusqlite::Result<Option<Limit>> {
    conn.prepare_cached(
        "SELECT epsilon_total, delta_total, rho_total FROM budgets WHERE principal_id = ?1 AND dataset = ?2",
    )?
    .query_row(params![principal_id, dataset], |r| {
            Ok(Limit {
                epsilon: r.get(0)?,
                delta: r.get(1)?,
                rho: r.get(2)?,
            })
    })
    .optional()
}

fn dataset_limit(conn: &Connection, dataset: &str) -> rusqlite::Result<Option<Limit>> {
    conn.prepare_cached(
        "SELECT epsilon_total, delta_total, rho_total FROM dataset_budgets WHERE dataset = ?1",
    )?
    .query_row(params![dataset], |r| {
        Ok(Limit {
            epsilon: r.get(0)?,
            delta: r.get(1)?,
            rho: r.get(2)?,
        })
    })
    .optional()
}

/// The charges a `WHERE` clause selects, in units.
fn units_where(
    conn: &Connection,
    condition: &str,
    args: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Units> {
    // Cached statements: every re-served answer reads its caller's budget.
    let (rho, approx_epsilon, approx_delta) = conn
        .prepare_cached(&format!(
            "SELECT COALESCE(SUM(rho), 0), COALESCE(SUM(CASE WHEN delta > 0 THEN epsilon ELSE 0 END), 0), \
             COALESCE(SUM(delta), 0) FROM charges WHERE refunded_at IS NULL AND {condition}"
        ))?
        .query_row(args, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT epsilon FROM charges WHERE refunded_at IS NULL AND {condition} AND delta = 0 \
         AND epsilon > 0 ORDER BY id"
    ))?;
    let pure = stmt
        .query_map(args, |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(Units {
        rho,
        approx_epsilon,
        approx_delta,
        pure,
    })
}

fn principal_units(
    conn: &Connection,
    principal_id: &str,
    dataset: &str,
) -> rusqlite::Result<Units> {
    units_where(
        conn,
        "principal_id = ?1 AND dataset = ?2",
        &[&principal_id, &dataset],
    )
}

fn dataset_units(conn: &Connection, dataset: &str) -> rusqlite::Result<Units> {
    units_where(conn, "dataset = ?1", &[&dataset])
}

/// A charge to decide in the writer's transaction.
pub(super) struct ChargeJob {
    principal_id: String,
    dataset: String,
    query_hash: String,
    new: LossUnits,
    /// The ledger instance making it (`owners`).
    owner: String,
}

/// What deciding a charge came to, before its budget view is composed.
pub(super) enum Decision {
    NoBudget,
    Reused {
        answer: String,
        limit: Limit,
        units: Units,
    },
    Refused {
        by: Scope,
        reason: Refusal,
        limit: Limit,
        before: Units,
    },
    Charged {
        charge_id: i64,
        limit: Limit,
        mine: Units,
    },
}

/// Decide and, when it fits both budgets, record the charge `job` (inside the writer's
/// immediate transaction, which sees every charge before it, committed or ahead of it in the
/// same group).
pub(super) fn decide(conn: &Connection, job: &ChargeJob) -> Result<Decision> {
    let (principal_id, dataset) = (job.principal_id.as_str(), job.dataset.as_str());
    let Some(limit) = principal_limit(conn, principal_id, dataset)? else {
        return Ok(Decision::NoBudget);
    };
    if let Some(answer) = stored_answer(conn, principal_id, dataset, &job.query_hash)? {
        let units = principal_units(conn, principal_id, dataset)?;
        return Ok(Decision::Reused {
            answer,
            limit,
            units,
        });
    }
    let before = principal_units(conn, principal_id, dataset)?;
    let mut mine = before.clone();
    mine.add(&job.new);
    if let Some(reason) = mine.check(&limit)? {
        return Ok(Decision::Refused {
            by: Scope::Principal,
            reason,
            limit,
            before,
        });
    }
    if let Some(dataset_limit) = dataset_limit(conn, dataset)? {
        let before = dataset_units(conn, dataset)?;
        let mut all = before.clone();
        all.add(&job.new);
        if let Some(reason) = all.check(&dataset_limit)? {
            return Ok(Decision::Refused {
                by: Scope::Dataset,
                reason,
                limit: dataset_limit,
                before,
            });
        }
    }
    let new = &job.new;
    conn.prepare_cached(
        "INSERT INTO charges (principal_id, dataset, query_hash, rho, epsilon, delta, owner) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        principal_id,
        dataset,
        job.query_hash,
        new.rho,
        new.epsilon,
        new.delta,
        job.owner
    ])?;
    Ok(Decision::Charged {
        charge_id: conn.last_insert_rowid(),
        limit,
        mine,
    })
}

/// Store the answer `charge_id` paid for, unless the charge was refunded; whether it was.
pub(super) fn store(conn: &Connection, charge_id: i64, answer: &str) -> Result<bool> {
    let stored = conn
        .prepare_cached(
            "UPDATE charges SET answer = ?2, released_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
             WHERE id = ?1 AND refunded_at IS NULL",
        )?
        .execute(params![charge_id, answer])?;
    Ok(stored > 0)
}

impl Ledger {
    fn read_budget(
        &self,
        conn: &Connection,
        principal_id: &str,
        dataset: &str,
    ) -> Result<Option<Budget>> {
        let Some(limit) = principal_limit(conn, principal_id, dataset)? else {
            return Ok(None);
        };
        let units = principal_units(conn, principal_id, dataset)?;
        Ok(Some(self.views.get(&limit, &units)?))
    }

    fn read_dataset_budget(&self, conn: &Connection, dataset: &str) -> Result<Option<Budget>> {
        let Some(limit) = dataset_limit(conn, dataset)? else {
            return Ok(None);
        };
        let units = dataset_units(conn, dataset)?;
        Ok(Some(self.views.get(&limit, &units)?))
    }
}
