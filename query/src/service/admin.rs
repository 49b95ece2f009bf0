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
        check_principal(&new.name, new.role, new.organisation.as_deref())
            .map_err(|m| EngineError::new(Code::InvalidPrincipal, m))?;
        let detail = format!("role={} name={}", new.role.name(), new.name);
        let (principal, token) = self
            .db(move |l| l.add_principal(&new.name, new.role, new.organisation.as_deref()))
            .await?;
        self.audit(caller, "add_principal", detail, None, "created")
            .await?;
        Ok(CreatedPrincipal {
            principal: serde_json::to_value(&principal).map_err(EngineError::internal)?,
            token,
        })
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

/// The rules for a principal's name and organisation, shared with the command line.
pub fn check_principal(name: &str, role: Role, organisation: Option<&str>) -> Result<(), String> {
    let ok_text = |s: &str| {
        !s.trim().is_empty() && s.chars().count() <= 100 && !s.chars().any(char::is_control)
    };
    if !ok_text(name) {
        return Err("a name is 1 to 100 characters without control characters".into());
    }
    match (role, organisation) {
        (Role::Ngo, None) => Err("an ngo principal needs the organisation it uploads for".into()),
        (_, Some(org)) if !ok_text(org) || org.contains(['/', '\\']) => Err(
            "an organisation id is 1 to 100 characters, without control characters or slashes"
                .into(),
        ),
        _ => Ok(()),
    }
}
