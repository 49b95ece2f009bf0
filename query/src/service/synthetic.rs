//! DP synthetic tables (MST, [`crate::synthetic`]).
//!
//! - [`Service::synthesize`] (analyst or admin) plans a table from public inputs, charges its rho
//!   once to the caller's budget and the dataset's (write-ahead, as a query), computes it and
//!   stores it with its charge; the same request by the same caller is served again at no cost.
//! - [`Service::preview_synthetic`] says what it would charge and leave, computing nothing.
//! - [`Service::synthetic_tables`] and [`Service::synthetic_table`] serve stored tables to every
//!   role, free, as Parquet or CSV.

use serde_json::Value;

use super::views::ChargePreviewView;
use super::{Paying, READ_ROLES, Service, require};
use crate::error::{Code, EngineError, Result};
use crate::ledger::{Principal, Role};
use crate::spec::{SpecError, SpecErrors};
use crate::synthetic::{self, SyntheticInfo, SyntheticPlan, SyntheticRequest};

/// The roles that make synthetic tables.
pub const SYNTHETIC_ROLES: &[Role] = &[Role::Analyst, Role::Admin];

/// A stored table's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    Parquet,
    Csv,
}

/// What a synthetic table would charge, and leave of both budgets.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SyntheticPreview {
    pub columns: Vec<String>,
    pub loss: crate::dp::Loss,
    pub cost: crate::ledger::Cost,
    pub contribution_bound: u32,
    pub one_way_sigma: f64,
    pub two_way_sigma: f64,
    pub selection_scale: f64,
    #[schema(value_type = Option<super::views::BudgetView>)]
    pub budget: Option<super::views::BudgetView>,
    pub after: ChargePreviewView,
    pub affordable: bool,
}

fn invalid(e: synthetic::RequestError) -> EngineError {
    let (field, message) =
        e.0.split_once(": ")
            .map_or(("request".to_string(), e.0.clone()), |(f, m)| {
                (f.to_string(), m.to_string())
            });
    EngineError::invalid_query(&SpecErrors(vec![SpecError { field, message }]))
}

impl Service {
    async fn plan_synthetic(&self, request: SyntheticRequest) -> Result<SyntheticPlan> {
        let missions = self.config().missions.clone();
        tokio::task::spawn_blocking(move || request.plan(&missions))
            .await
            .map_err(EngineError::internal)?
            .map_err(invalid)
    }

    /// What `request` would charge and leave (analyst or admin); nothing is computed or charged.
    pub async fn preview_synthetic(
        &self,
        principal: &Principal,
        request: SyntheticRequest,
    ) -> Result<SyntheticPreview> {
        require(principal, SYNTHETIC_ROLES)?;
        let plan = self.plan_synthetic(request).await?;
        let (budget, after) = self.preview_charge(principal, plan.noise.loss).await?;
        self.audit(
            principal,
            "synthetic_preview",
            format!("synthetic:{}", plan.hash),
            None,
            "previewed",
        )
        .await?;
        Ok(SyntheticPreview {
            columns: plan.columns.iter().map(|c| c.name.clone()).collect(),
            loss: plan.noise.loss,
            cost: plan.noise.cost,
            contribution_bound: plan.noise.contribution_bound,
            one_way_sigma: plan.noise.one_way.scale,
            two_way_sigma: plan.noise.two_way.scale,
            selection_scale: plan.noise.selection.scale,
            budget,
            affordable: after.refused_by.is_none(),
            after,
        })
    }

    /// Make a synthetic table as `principal`: checked, charged once, computed, stored. Returns
    /// its metadata and whether it was computed now (else it was stored before and is served
    /// free). The charge-compute-store sequence runs in its own task and survives a caller that
    /// goes away.
    pub async fn synthesize(
        &self,
        principal: &Principal,
        request: SyntheticRequest,
    ) -> Result<(SyntheticInfo, bool)> {
        require(principal, SYNTHETIC_ROLES)?;
        let plan = self.plan_synthetic(request).await?;
        let service = self.clone();
        let principal = principal.clone();
        tokio::spawn(async move { service.settle_synthetic(principal, plan).await })
            .await
            .map_err(EngineError::internal)?
    }

    async fn settle_synthetic(
        &self,
        principal: Principal,
        plan: SyntheticPlan,
    ) -> Result<(SyntheticInfo, bool)> {
        let dataset = self.config().dataset.clone();
        let hash = format!("synthetic:{}", plan.hash);
        let detail = format!(
            "{hash} {}",
            serde_json::to_string(&plan.request).map_err(EngineError::internal)?
        );
        let paid = match self
            .pay(&principal, "synthetic", &hash, plan.noise.loss, &detail)
            .await?
        {
            Paying::Reused { answer, .. } => {
                let id = serde_json::from_str::<Value>(&answer)
                    .ok()
                    .and_then(|v| v["synthetic_id"].as_i64())
                    .ok_or_else(|| {
                        EngineError::internal("a stored synthetic charge has no table id")
                    })?;
                let (info, _) = self.stored_synthetic(id).await?.ok_or_else(|| {
                    EngineError::internal(format!("synthetic table {id} is charged but not stored"))
                })?;
                return Ok((info, false));
            }
            Paying::Charged { paid, .. } => paid,
        };

        // Paid. From here a failure loses the budget just charged, never privacy.
        let computed = async {
            let _turn = self.aggregation_turn().await?;
            let exact = synthetic::contingency(&paid, self.data(), &plan)
                .await
                .map_err(EngineError::internal)?;
            let generation = exact.generation;
            let plan = plan.clone();
            let table = tokio::task::spawn_blocking(move || {
                let table = synthetic::synthesize(&plan, &exact).map_err(|e| e.to_string())?;
                let parquet = synthetic::to_parquet(table.get())?;
                Ok::<_, String>((table, parquet))
            })
            .await
            .map_err(EngineError::internal)?
            .map_err(EngineError::internal)?;
            Ok::<_, EngineError>((table, generation))
        }
        .await;
        let ((table, parquet), generation) = match computed {
            Ok(c) => c,
            Err(e) => {
                self.audit(
                    &principal,
                    "synthetic",
                    detail,
                    Some(plan.noise.loss),
                    "failed",
                )
                .await?;
                return Err(e);
            }
        };
        let table = table.into_inner();
        let request = &plan.request;
        let info = SyntheticInfo {
            id: 0,
            name: request.name.clone(),
            created_at: crate::release::now(),
            created_by: principal.name.clone(),
            dataset: dataset.clone(),
            from: request.from,
            to: request.to,
            missions: plan.missions.clone(),
            columns: table.columns.clone(),
            rows: table.rows() as u64,
            contribution_bound: plan.noise.contribution_bound,
            loss: plan.noise.loss,
            cost: plan.noise.cost,
            mechanism: "MST (1-way, selection and 2-way in thirds of rho; discrete Gaussian \
                        marginals, exponential-mechanism selection, tree model)"
                .to_string(),
            guarantee: format!(
                "rho-zCDP with rho = {:.6} for each person (all their records, at most {} kept), \
                 so ({:.4}, {:e})-DP: neighbouring datasets differ by one person",
                plan.noise.loss.rho,
                plan.noise.contribution_bound,
                plan.noise.cost.epsilon,
                plan.noise.cost.delta
            ),
            tree: table.tree.clone(),
            kept_values: table.kept_values.clone(),
            one_way_sigma: plan.noise.one_way.scale,
            two_way_sigma: plan.noise.two_way.scale,
            selection_scale: plan.noise.selection.scale,
            generation,
            request_hash: plan.hash.clone(),
        };
        let stored = info.clone();
        let ds = dataset.clone();
        let id = self
            .db(move |l| {
                l.store_synthetic(paid, &ds, &parquet, |id| {
                    let mut i = stored;
                    i.id = id;
                    serde_json::to_string(&i).unwrap_or_default()
                })
            })
            .await?;
        self.audit(
            &principal,
            "synthetic",
            detail,
            Some(plan.noise.loss),
            "answered",
        )
        .await?;
        let mut info = info;
        info.id = id;
        Ok((info, true))
    }

    async fn stored_synthetic(&self, id: i64) -> Result<Option<(SyntheticInfo, Vec<u8>)>> {
        let ds = self.config().dataset.clone();
        let row = self.db(move |l| l.synthetic_table(&ds, id)).await?;
        row.map(|(info, parquet)| {
            serde_json::from_str(&info)
                .map(|i| (i, parquet))
                .map_err(EngineError::internal)
        })
        .transpose()
    }

    /// The stored synthetic tables of the served dataset, newest first (every role, free).
    pub async fn synthetic_tables(&self, principal: &Principal) -> Result<Vec<SyntheticInfo>> {
        require(principal, READ_ROLES)?;
        let ds = self.config().dataset.clone();
        let infos = self.db(move |l| l.synthetic_tables(&ds)).await?;
        infos
            .iter()
            .map(|i| serde_json::from_str(i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(EngineError::internal)
    }

    /// One stored synthetic table's metadata (every role, free); `not_found` without one.
    pub async fn synthetic_info(&self, principal: &Principal, id: i64) -> Result<SyntheticInfo> {
        require(principal, READ_ROLES)?;
        self.stored_synthetic(id)
            .await?
            .map(|(info, _)| info)
            .ok_or_else(not_found)
    }

    /// One stored synthetic table's records as Parquet or CSV (every role, free).
    pub async fn synthetic_table(
        &self,
        principal: &Principal,
        id: i64,
        format: TableFormat,
    ) -> Result<(SyntheticInfo, Vec<u8>)> {
        require(principal, READ_ROLES)?;
        let (info, parquet) = self.stored_synthetic(id).await?.ok_or_else(not_found)?;
        let bytes = match format {
            TableFormat::Parquet => parquet,
            TableFormat::Csv => {
                tokio::task::spawn_blocking(move || synthetic::parquet_to_csv(&parquet))
                    .await
                    .map_err(EngineError::internal)?
                    .map_err(EngineError::internal)?
            }
        };
        Ok((info, bytes))
    }
}

fn not_found() -> EngineError {
    EngineError::new(Code::NotFound, "no such synthetic table")
}
