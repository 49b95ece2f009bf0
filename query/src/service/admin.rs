//! Administration (role `admin`): principals, their budgets, and the audit log (who asked what,
//! when, at what cost; never a result).

use super::views::{BudgetRequest, BudgetView, CreatedPrincipal, DatasetBudgetView, NewPrincipal};
use super::{Service, require};
use crate::error::{Code, EngineError, Result};
use crate::ledger::{AuditRecord, Principal, Role};

/// The most audit lines one call returns (and the default).
pub const AUDIT_PAGE: u32 = 1000;

impl Service {
    /// All principals, revoked ones included.
    pub async fn principals(&self, caller: &Principal) -> Result<Vec<Principal>> {
        require(caller, &[Role::Admin])?;
        self.db(|l| l.principals()).await
    }

    /// Create a principal; its token is in the result and nowhere else.
    pub async fn add_principal(
        &self,
        caller: &Principal,
        new: NewPrincipal,
    ) -> Result<CreatedPrincipal> {
        require(caller, &[Role::Admin])?;
        let missions = check_principal(
            &new.name,
            new.role,
            new.organisation.as_deref(),
            &new.missions,
        )
        .map_err(|m| EngineError::new(Code::InvalidPrincipal, m))?;
        let detail = format!(
            "role={} name={} missions={}",
            new.role.name(),
            new.name,
            missions.join(",")
        );
        let (principal, token) = self
            .db(move |l| {
                l.add_principal_for(&new.name, new.role, new.organisation.as_deref(), &missions)
            })
            .await?;
        self.audit(caller, "add_principal", detail, None, "created")
            .await?;
        Ok(CreatedPrincipal {
            principal: serde_json::to_value(&principal).map_err(EngineError::internal)?,
            token,
        })
    }

    /// Bind an `ngo` principal to exactly the missions it may upload for (role admin).
    pub async fn bind_missions(
        &self,
        caller: &Principal,
        id: String,
        missions: Vec<String>,
    ) -> Result<Principal> {
        require(caller, &[Role::Admin])?;
        let target = id.clone();
        let principal = self
            .db(move |l| {
                l.principal(&target)?
                    .ok_or(crate::ledger::LedgerError::NoSuchPrincipal(target))
            })
            .await?;
        let missions = check_missions(principal.role, &missions)
            .map_err(|m| EngineError::new(Code::InvalidPrincipal, m))?;
        let detail = format!("principal={id} missions={}", missions.join(","));
        let bound = self.db(move |l| l.bind_missions(&id, &missions)).await?;
        self.audit(caller, "bind_missions", detail, None, "bound")
            .await?;
        Ok(bound)
    }

    /// Revoke a principal: its token stops working at once.
    pub async fn revoke_principal(&self, caller: &Principal, id: String) -> Result<()> {
        require(caller, &[Role::Admin])?;
        let target = id.clone();
        self.db(move |l| l.revoke(&target)).await?;
        self.audit(caller, "revoke_principal", id, None, "revoked")
            .await
    }

    /// Set a principal's total budget on the served dataset; what was spent stays spent.
    pub async fn set_budget(
        &self,
        caller: &Principal,
        id: String,
        req: BudgetRequest,
    ) -> Result<BudgetView> {
        require(caller, &[Role::Admin])?;
        let total = req.total()?;
        let ds = self.config().dataset.clone();
        let (target, d) = (id.clone(), ds.clone());
        let budget = self.db(move |l| l.set_total(&target, &d, total)).await?;
        let detail = format!("principal={id} {}", req.describe());
        self.audit(caller, "set_budget", detail, None, "set")
            .await?;
        Ok(BudgetView::new(&ds, &budget))
    }

    /// The dataset-wide budget (roles admin and analyst): its total, what every principal spent
    /// of it together, and what is left; `set: false` when none is set (no dataset-wide cap).
    pub async fn dataset_budget(&self, caller: &Principal) -> Result<DatasetBudgetView> {
        require(caller, &[Role::Admin, Role::Analyst])?;
        let dataset = self.config().dataset.clone();
        let ds = dataset.clone();
        let budget = self.db(move |l| l.dataset_budget(&ds)).await?;
        Ok(DatasetBudgetView {
            set: budget.is_some(),
            budget: budget.map(|b| BudgetView::new(&dataset, &b)),
            dataset,
        })
    }

    /// Set the dataset-wide budget (role admin): every later charge on the dataset, by any
    /// principal, must fit in it together with every charge made before.
    pub async fn set_dataset_budget(
        &self,
        caller: &Principal,
        req: BudgetRequest,
    ) -> Result<DatasetBudgetView> {
        require(caller, &[Role::Admin])?;
        let total = req.total()?;
        let dataset = self.config().dataset.clone();
        let ds = dataset.clone();
        let budget = self.db(move |l| l.set_dataset_budget(&ds, total)).await?;
        let detail = format!("dataset={dataset} {}", req.describe());
        self.audit(caller, "set_dataset_budget", detail, None, "set")
            .await?;
        Ok(DatasetBudgetView {
            set: true,
            budget: Some(BudgetView::new(&dataset, &budget)),
            dataset,
        })
    }

    /// Audit lines after `after` (default 0), at most `limit` (1 to [`AUDIT_PAGE`], default
    /// [`AUDIT_PAGE`]), oldest first.
    pub async fn audit_log(
        &self,
        caller: &Principal,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<AuditRecord>> {
        require(caller, &[Role::Admin])?;
        let limit = limit.unwrap_or(AUDIT_PAGE);
        if !(1..=AUDIT_PAGE).contains(&limit) {
            return Err(EngineError::new(
                Code::InvalidParameters,
                format!("limit is 1 to {AUDIT_PAGE}, not {limit}"),
            ));
        }
        let after = after.unwrap_or(0);
        let lines = self.db(move |l| l.audit_log(after, limit)).await?;
        Ok(lines.into_iter().map(|(_, r)| r).collect())
    }
}

/// The rules for a principal's name, organisation and missions, shared with the command line;
/// the missions as stored (ISO alpha-3, upper case, sorted, each once).
pub fn check_principal(
    name: &str,
    role: Role,
    organisation: Option<&str>,
    missions: &[String],
) -> Result<Vec<String>, String> {
    let ok_text = |s: &str| {
        !s.trim().is_empty() && s.chars().count() <= 100 && !s.chars().any(char::is_control)
    };
    if !ok_text(name) {
        return Err("a name is 1 to 100 characters without control characters".into());
    }
    match (role, organisation) {
        (Role::Ngo, None) => {
            return Err("an ngo principal needs the organisation it uploads for".into());
        }
        (_, Some(org)) if !ok_text(org) || org.contains(['/', '\\']) => {
            return Err(
                "an organisation id is 1 to 100 characters, without control characters or slashes"
                    .into(),
            );
        }
        _ => {}
    }
    let missions = check_missions(role, missions)?;
    if role == Role::Ngo && missions.is_empty() {
        return Err(
            "an ngo principal needs the missions it uploads for (missions, ISO alpha-3 codes)"
                .into(),
        );
    }
    Ok(missions)
}

/// The missions of a binding as stored: only `ngo` principals have them, each an ISO 3166-1
/// alpha-3 code.
pub fn check_missions(role: Role, missions: &[String]) -> Result<Vec<String>, String> {
    if role != Role::Ngo && !missions.is_empty() {
        return Err(format!(
            "only ngo principals are bound to missions, not a {} principal",
            role.name()
        ));
    }
    let mut out = Vec::with_capacity(missions.len());
    for m in missions {
        let code = m.trim().to_ascii_uppercase();
        let known = code.len() == 3
            && ctstats_schemas::countries::lookup(&code).is_some_and(|c| c.alpha3 == code);
        if !known {
            return Err(format!(
                "mission {m:?} is not an ISO 3166-1 alpha-3 country code (for example KAZ)"
            ));
        }
        out.push(code);
    }
    out.sort();
    out.dedup();
    Ok(out)
}
