//! Releases and reference tables.
//!
//! - [`Service::create_release`] (analyst) prices a release, charges it once to the caller's
//!   budget (write-ahead, as a query), computes and post-processes it, and stores it; the same
//!   request by the same caller is served again at no cost.
//! - [`Service::releases`] and [`Service::release`] serve stored releases to every role, free.
//! - [`Service::put_reference`] (admin) replaces a reference table; reading one is public.

use serde_json::Value;

use super::views::{
    IndicatorPreview, MarginalPreview, ReferenceLoaded, ReferenceView, ReleasePreview,
};
use super::{Paying, READ_ROLES, RELEASE_ROLES, Service, require};
use crate::dp::Released;
use crate::error::{Code, EngineError, Result};
use crate::ledger::{Principal, Role};
use crate::reference::{self, RowProblem};
use crate::release::{
    self, ReleaseBody, ReleasePlan, ReleaseRequest, ReleaseSummary, StoredRelease,
};

/// A paid release's noisy values, by design.
enum Computed {
    Design(Released<(Vec<Vec<i64>>, Vec<release::Counts>)>),
    Counts(Released<Vec<release::Counts>>),
}

impl Service {
    /// Create a release as `principal` (an analyst): checked, charged once, computed, stored.
    /// Returns the release and whether it was computed now (else it was stored before and is
    /// served free). Like a query, the charge-compute-store sequence runs in its own task and
    /// survives a caller that goes away.
    pub async fn create_release(
        &self,
        principal: &Principal,
        request: ReleaseRequest,
    ) -> Result<(ReleaseBody, bool)> {
        require(principal, RELEASE_ROLES)?;
        let plan = self.plan_release(request).await?;
        let service = self.clone();
        let principal = principal.clone();
        tokio::spawn(async move { service.settle_release(principal, plan).await })
            .await
            .map_err(EngineError::internal)?
    }

    /// What a release would cost and how precise each indicator would be, and what it would
    /// leave of the caller's and the dataset's budgets (analyst); nothing is computed or charged.
    pub async fn preview_release(
        &self,
        principal: &Principal,
        request: ReleaseRequest,
    ) -> Result<ReleasePreview> {
        require(principal, RELEASE_ROLES)?;
        let plan = self.plan_release(request).await?;
        let (budget, after) = self.preview_charge(principal, plan.loss).await?;
        let detail = format!(
            "release:{} {}",
            plan.hash,
            serde_json::to_string(&plan.request).map_err(EngineError::internal)?
        );
        self.audit(principal, "release_preview", detail, None, "previewed")
            .await?;
        let indicators = plan
            .indicators
            .iter()
            .map(|indicator| {
                let (count, share) = match &plan.design {
                    Some(design) => release::estimate::planning_half_widths(design, indicator),
                    None => {
                        let sources = indicator.formula.sources();
                        let widths = plan
                            .queries
                            .iter()
                            .filter(|(s, _, _)| sources.contains(s) && !s.thresholded())
                            .filter_map(|(_, _, p)| p.parts.first().map(|p| p.half_width_95));
                        (widths.reduce(f64::max), None)
                    }
                };
                IndicatorPreview {
                    id: indicator.id.to_string(),
                    count_half_width_95: count,
                    share_half_width_95: share,
                }
            })
            .collect();
        let marginals = plan.design.as_ref().map_or_else(Vec::new, |d| {
            d.marginals
                .iter()
                .map(|m| MarginalPreview {
                    marginal: m.id.describe(),
                    cells: m.keys.len(),
                    rho: m.rho,
                    sigma: m.sigma,
                    half_width_95: m.half_width_95,
                })
                .collect()
        });
        Ok(ReleasePreview {
            design: plan.request.design.unwrap_or_default(),
            loss: plan.loss,
            cost: plan.cost,
            indicators,
            marginals,
            budget,
            affordable: after.refused_by.is_none(),
            after,
        })
    }

    /// Check and price a release request on a blocking thread (OpenDP calibrates its noise).
    async fn plan_release(&self, request: ReleaseRequest) -> Result<ReleasePlan> {
        let missions = self.config().missions.clone();
        tokio::task::spawn_blocking(move || request.plan(&missions))
            .await
            .map_err(EngineError::internal)?
            .map_err(|e| EngineError::invalid_query(&e))
    }

    async fn settle_release(
        &self,
        principal: Principal,
        plan: ReleasePlan,
    ) -> Result<(ReleaseBody, bool)> {
        let dataset = self.config().dataset.clone();
        let hash = format!("release:{}", plan.hash);
        let detail = format!(
            "{hash} {}",
            serde_json::to_string(&plan.request).map_err(EngineError::internal)?
        );
        let paid = match self
            .pay(&principal, "release", &hash, plan.loss, &detail)
            .await?
        {
            Paying::Reused { answer, .. } => {
                let id = serde_json::from_str::<Value>(&answer)
                    .ok()
                    .and_then(|v| v["release_id"].as_i64())
                    .ok_or_else(|| {
                        EngineError::internal("a stored release charge has no release id")
                    })?;
                let release = self.stored_release(id).await?.ok_or_else(|| {
                    EngineError::internal(format!("release {id} is charged but not stored"))
                })?;
                return Ok((ReleaseBody::Stored(release), false));
            }
            Paying::Charged { paid, .. } => paid,
        };

        // Paid. From here a failure loses the budget just charged, never privacy.
        let computed = {
            let _turn = self.aggregation_turn().await?;
            let config = self.config();
            if plan.design.is_some() {
                release::compute_design(&paid, self.data(), &config.missions, &plan)
                    .await
                    .map(|(noisy, generation)| (Computed::Design(noisy), generation))
            } else {
                release::compute_counts(&paid, self.data(), &config.missions, &plan)
                    .await
                    .map(|(counts, generation)| (Computed::Counts(counts), generation))
            }
        };
        let (computed, generation) = match computed {
            Ok(c) => c,
            Err(e) => {
                self.audit(&principal, "release", detail, Some(plan.loss), "failed")
                    .await?;
                return Err(EngineError::internal(e));
            }
        };
        let references = self
            .db(|l| {
                Ok(reference::references(
                    l.reference("estimated_victims")?.as_deref(),
                    l.reference("convictions")?.as_deref(),
                ))
            })
            .await?;
        let built = match computed {
            Computed::Design(noisy) => release::build_design(
                &plan,
                noisy,
                &references,
                &principal.name,
                &dataset,
                generation,
            ),
            Computed::Counts(counts) => release::build(
                &plan,
                counts,
                &references,
                &principal.name,
                &dataset,
                generation,
            ),
        };
        let stored = built.clone();
        let ds = dataset.clone();
        let id = self
            .db(move |l| {
                l.store_release(paid, &ds, |id| {
                    let mut r = stored;
                    r.info.id = id;
                    serde_json::to_string(&r).unwrap_or_default()
                })
            })
            .await?;
        self.audit(&principal, "release", detail, Some(plan.loss), "answered")
            .await?;
        let mut release = built;
        release.info.id = id;
        Ok((ReleaseBody::Fresh(release), true))
    }

    async fn stored_release(&self, id: i64) -> Result<Option<StoredRelease>> {
        let ds = self.config().dataset.clone();
        let text = self.db(move |l| l.release(&ds, id)).await?;
        text.map(|t| serde_json::from_str(&t).map_err(EngineError::internal))
            .transpose()
    }

    /// Stored releases of the served dataset, newest first (every role, free).
    pub async fn releases(&self, principal: &Principal) -> Result<Vec<ReleaseSummary>> {
        require(principal, READ_ROLES)?;
        let ds = self.config().dataset.clone();
        let bodies = self.db(move |l| l.releases(&ds)).await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str::<StoredRelease>(b).map(|r| r.summary()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(EngineError::internal)
    }

    /// One stored release (every role, free); `not_found` when there is none with this id.
    pub async fn release(&self, principal: &Principal, id: i64) -> Result<StoredRelease> {
        require(principal, READ_ROLES)?;
        self.stored_release(id)
            .await?
            .ok_or_else(|| EngineError::new(Code::NotFound, "no such release"))
    }

    /// A reference table as loaded (public: official and published figures, no record of
    /// anyone); empty rows when it was never loaded.
    pub async fn reference(&self, table: &str) -> Result<ReferenceView> {
        check_table(table)?;
        let name = table.to_string();
        let body = self.db(move |l| l.reference(&name)).await?;
        let rows = body
            .map(|b| serde_json::from_str(&b).map_err(EngineError::internal))
            .transpose()?
            .unwrap_or(Value::Array(Vec::new()));
        Ok(ReferenceView {
            table: table.to_string(),
            rows,
        })
    }

    /// Replace a reference table from UTF-8 CSV (admin). A file with any bad row changes
    /// nothing and is refused with every problem by row, column and rule.
    pub async fn put_reference(
        &self,
        principal: &Principal,
        table: &str,
        body: &[u8],
    ) -> Result<ReferenceLoaded> {
        require(principal, &[Role::Admin])?;
        check_table(table)?;
        let text = std::str::from_utf8(body)
            .map_err(|_| EngineError::new(Code::InvalidBody, "the body is not UTF-8 CSV text"))?;
        let parsed = reference::parse(table, text).map_err(|problems: Vec<RowProblem>| {
            let first = problems
                .first()
                .map(|p| {
                    format!(
                        "row {}, column {}: {} ({})",
                        p.row, p.column, p.message, p.rule
                    )
                })
                .unwrap_or_default();
            EngineError::new(
                Code::InvalidReference,
                format!("{} problem(s); first: {first}", problems.len()),
            )
            .with_details(serde_json::json!({ "problems": problems }))
        })?;
        let rows = parsed.len();
        let json = serde_json::to_string(&parsed).map_err(EngineError::internal)?;
        let (name, by) = (table.to_string(), principal.id.clone());
        self.db(move |l| l.set_reference(&name, &by, &json)).await?;
        self.audit(
            principal,
            "reference",
            format!("table={table} rows={rows}"),
            None,
            "loaded",
        )
        .await?;
        Ok(ReferenceLoaded {
            table: table.to_string(),
            rows,
        })
    }
}

fn check_table(table: &str) -> Result<()> {
    if reference::TABLES.contains(&table) {
        Ok(())
    } else {
        Err(EngineError::new(
            Code::NotFound,
            format!("the reference tables are {:?}", reference::TABLES),
        ))
    }
}
