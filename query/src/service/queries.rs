//! Queries: parse, price, ask (charge, compute, store), preview, the caller's budget and the
//! public catalogue.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::views::{
    AnswerBody, BudgetView, Catalogue, PreviewResponse, QueryResponse, SqlRequest, StoredAnswer,
};
use super::{Paying, QUERY_ROLES, Service, no_budget, require};
use crate::answer::{self, Answer, CostPlan};
use crate::dp::Cost;
use crate::error::{EngineError, Result};
use crate::ledger::{self, Paid, Principal};
use crate::plan;
use crate::spec::{self, QuerySpec, ValidatedSpec};
use crate::sql::{self, Arrangement};

/// A released answer, as stored with its charge.
#[derive(Debug, Clone, Serialize)]
struct Stored {
    query_hash: String,
    query: Value,
    answer: Value,
}

/// A stored answer read back: its answer's JSON text is kept as it is, to be sent as it is.
#[derive(Debug, Deserialize)]
struct StoredText {
    query_hash: String,
    query: Value,
    answer: Box<serde_json::value::RawValue>,
}

impl Service {
    /// Parse and validate a query body (UTF-8 JSON) against the served missions.
    pub fn parse_query(&self, body: &[u8]) -> Result<ValidatedSpec> {
        let text = std::str::from_utf8(body)
            .map_err(|_| EngineError::invalid_json("the body is not UTF-8 JSON"))?;
        let spec = QuerySpec::from_json(text).map_err(|e| {
            EngineError::invalid_json(e.0.first().map_or(String::new(), |e| e.message.clone()))
        })?;
        spec.validate(&self.config().missions)
            .map_err(|e| EngineError::invalid_query(&e))
    }

    /// Parse and compile a SQL request body (`{"sql": "..."}`) and validate the query it asks,
    /// as [`Service::parse_query`] does a JSON one: one spec, one hash, whichever was sent.
    pub fn parse_sql(&self, body: &[u8]) -> Result<(ValidatedSpec, Arrangement)> {
        let text = std::str::from_utf8(body)
            .map_err(|_| EngineError::invalid_json("the body is not UTF-8 JSON"))?;
        let request: SqlRequest =
            serde_json::from_str(text).map_err(|e| EngineError::invalid_json(e.to_string()))?;
        let compiled = sql::compile(&request.sql).map_err(|e| EngineError::invalid_sql(&e))?;
        let spec = compiled
            .spec
            .validate(&self.config().missions)
            .map_err(|e| EngineError::invalid_query(&e))?;
        Ok((spec, compiled.arrangement))
    }

    /// Ask a DP query as `principal`: priced, charged (write-ahead), computed, stored, and handed
    /// back; or the stored answer, free, when the caller asked the same before. Charging,
    /// computing and storing run in their own task, so a caller that goes away (a client that
    /// hangs up) does not abort them: what it paid for is stored and asking again returns it.
    pub async fn ask(&self, principal: &Principal, spec: ValidatedSpec) -> Result<QueryResponse> {
        require(principal, QUERY_ROLES)?;
        let caller = principal.clone();
        let (_, reused) = self.reuse(spec.clone(), move |_| Ok(Some(caller))).await?;
        self.answer(principal.clone(), spec, reused).await
    }

    /// [`Service::ask`] for the holder of a bearer token. Who the caller is and whether it asked
    /// the same before are found in one hop, so a re-served answer costs one hop and
    /// one plain read; revocation still takes effect at once (the token is looked up each time).
    pub async fn ask_with_token(
        &self,
        token: String,
        spec: ValidatedSpec,
    ) -> Result<QueryResponse> {
        let (principal, reused) = self
            .reuse(spec.clone(), move |l| l.authenticate(&token))
            .await?;
        let principal = principal.ok_or_else(super::invalid_token)?;
        require(&principal, QUERY_ROLES)?;
        self.answer(principal, spec, reused).await
    }

    /// The caller `who` finds (an active principal), and its stored answer to `spec` if it
    /// asked it before: a plain read, with the reuse's audit entry (queued for the next group
    /// commit, not awaited: nothing is charged or released), in one hop to the ledger's reads
    /// thread, before any pricing or write lock. No answer is looked up for a caller without a
    /// query role.
    async fn reuse(
        &self,
        spec: ValidatedSpec,
        who: impl FnOnce(&ledger::Ledger) -> ledger::Result<Option<Principal>> + Send + 'static,
    ) -> Result<(Option<Principal>, Option<ledger::Charge>)> {
        let ds = self.config().dataset.clone();
        self.read(move |l| {
            let Some(principal) = who(l)? else {
                return Ok((None, None));
            };
            if !QUERY_ROLES.contains(&principal.role) {
                return Ok((Some(principal), None));
            }
            let hash = spec.hash();
            let reused = l.reused(&principal.id, &ds, &hash)?;
            if reused.is_some() {
                let detail = format!("{} {}", hash, spec.canonical_json());
                l.audit_reuse(&principal.id, "query", &detail)?;
            }
            Ok((Some(principal), reused))
        })
        .await
    }

    /// The stored answer when there is one; else price, charge, compute and store.
    async fn answer(
        &self,
        principal: Principal,
        spec: ValidatedSpec,
        reused: Option<ledger::Charge>,
    ) -> Result<QueryResponse> {
        if let Some(ledger::Charge::Reused { answer, budget }) = reused {
            return reply_stored(&answer, &self.config().dataset, &budget);
        }
        let plan = price(&spec).await?;
        let service = self.clone();
        tokio::spawn(async move { service.settle(principal, spec, plan).await })
            .await
            .map_err(EngineError::internal)?
    }

    async fn settle(
        &self,
        principal: Principal,
        spec: ValidatedSpec,
        plan: CostPlan,
    ) -> Result<QueryResponse> {
        let hash = spec.hash();
        let detail = format!("{} {}", hash, spec.canonical_json());
        let dataset = self.config().dataset.clone();
        let (paid, budget) = match self
            .pay(&principal, "query", &hash, plan.loss, &detail)
            .await?
        {
            Paying::Reused { answer, budget } => return reply_stored(&answer, &dataset, &budget),
            Paying::Charged { paid, budget } => (paid, budget),
        };

        // Paid. From here a failure loses the budget just charged, never privacy.
        let result = {
            let _turn = self.aggregation_turn().await?;
            self.compute(&paid, &spec, &plan).await
        };
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => {
                self.audit(&principal, "query", detail, Some(plan.loss), "failed")
                    .await?;
                return Err(e);
            }
        };
        let stored = Stored {
            query_hash: hash,
            query: serde_json::from_str(spec.canonical_json()).map_err(EngineError::internal)?,
            answer: serde_json::to_value(&answer).map_err(EngineError::internal)?,
        };
        let text = serde_json::to_string(&stored).map_err(EngineError::internal)?;
        self.db(move |l| l.store_answer(paid, &text)).await?;
        self.audit(&principal, "query", detail, Some(plan.loss), "answered")
            .await?;
        let body = AnswerBody::Fresh(Box::new(answer));
        Ok(respond(
            stored.query_hash,
            stored.query,
            body,
            plan.total,
            &dataset,
            &budget,
        ))
    }

    /// Aggregate in DataFusion, then noise on a blocking thread. An `"auto"` bound first
    /// releases the histogram of records per person and chooses the bound from it.
    async fn compute(&self, paid: &Paid, spec: &ValidatedSpec, plan: &CostPlan) -> Result<Answer> {
        let config = self.config();
        let released = |e: answer::ReleaseError| match e {
            answer::ReleaseError::Dp(e) => EngineError::from(e),
            other => EngineError::internal(other),
        };
        if !spec.auto_bound() {
            let aggregates = plan::aggregate(paid, self.data(), &config.missions, spec).await?;
            let (spec, plan) = (spec.clone(), plan.clone());
            return tokio::task::spawn_blocking(move || answer::release(&spec, &aggregates, &plan))
                .await
                .map_err(EngineError::internal)?
                .map_err(released);
        }
        let most = spec::MAX_CONTRIBUTION_BOUND;
        let counts =
            plan::records_per_person(paid, self.data(), &config.missions, spec, most).await?;
        let (s, p, missions) = (spec.clone(), plan.clone(), config.missions.clone());
        let (bounded, priced, chosen) =
            tokio::task::spawn_blocking(move || answer::choose_bound(&s, &p, &counts, &missions))
                .await
                .map_err(EngineError::internal)?
                .map_err(released)?;
        let aggregates = plan::aggregate(paid, self.data(), &config.missions, &bounded).await?;
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || {
            answer::release(&bounded, &aggregates, &priced)
                .map(|a| answer::with_chosen_bound(a, &plan, chosen))
        })
        .await
        .map_err(EngineError::internal)?
        .map_err(released)
    }

    /// What a query would cost and its interval widths, without charging anything.
    pub async fn preview(
        &self,
        principal: &Principal,
        spec: ValidatedSpec,
    ) -> Result<PreviewResponse> {
        require(principal, QUERY_ROLES)?;
        let plan = price(&spec).await?;
        let (budget, after) = self.preview_charge(principal, plan.loss).await?;
        let detail = format!("{} {}", spec.hash(), spec.canonical_json());
        self.audit(principal, "preview", detail, None, "previewed")
            .await?;
        use spec::Measure::*;
        let half_width_95 = match spec.measure() {
            _ if spec.auto_bound() => None,
            Persons | Cases | Sum | Histogram => plan.parts.first().map(|p| p.half_width_95),
            Mean | Quantile => None,
        };
        Ok(PreviewResponse {
            query_hash: spec.hash(),
            cells: (spec.keys() == spec::KeysMode::Public)
                .then(|| spec.public_cells(&self.config().missions)),
            parts: plan.parts,
            cost: plan.total,
            loss: plan.loss,
            half_width_95,
            budget,
            affordable: after.refused_by.is_none(),
            after,
        })
    }

    /// The caller's budget on the served dataset; `no_budget` when none is set.
    pub async fn budget(&self, principal: &Principal) -> Result<BudgetView> {
        require(principal, QUERY_ROLES)?;
        let dataset = self.config().dataset.clone();
        let (pid, ds) = (principal.id.clone(), dataset.clone());
        match self.db(move |l| l.budget(&pid, &ds)).await? {
            Some(b) => Ok(BudgetView::new(&dataset, &b)),
            None => Err(no_budget(&dataset)),
        }
    }

    /// Public metadata: measures, dimensions, value columns and missions.
    pub fn dimensions(&self) -> Catalogue {
        use spec::Measure::*;
        Catalogue {
            measures: [Persons, Cases, Sum, Mean, Quantile, Histogram]
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
            dimensions: spec::dimensions()
                .iter()
                .map(|d| d.name().to_string())
                .collect(),
            value_columns: spec::value_columns()
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
            missions: self.config().missions.clone(),
            max_public_cells: spec::MAX_PUBLIC_CELLS,
        }
    }
}

/// Price a spec on a blocking thread (OpenDP measurements are built to price it).
async fn price(spec: &ValidatedSpec) -> Result<CostPlan> {
    let spec = spec.clone();
    tokio::task::spawn_blocking(move || CostPlan::new(&spec))
        .await
        .map_err(EngineError::internal)?
        .map_err(EngineError::from)
}

/// The reply to a question asked before: its stored answer, nothing charged.
fn reply_stored(answer: &str, dataset: &str, budget: &ledger::Budget) -> Result<QueryResponse> {
    let stored: StoredText = serde_json::from_str(answer).map_err(EngineError::internal)?;
    let body = AnswerBody::Stored(StoredAnswer::from_ledger(stored.answer));
    Ok(respond(
        stored.query_hash,
        stored.query,
        body,
        Cost::ZERO,
        dataset,
        budget,
    ))
}

fn respond(
    query_hash: String,
    query: Value,
    answer: AnswerBody,
    charged: Cost,
    dataset: &str,
    budget: &ledger::Budget,
) -> QueryResponse {
    QueryResponse {
        query_hash,
        query,
        reused: matches!(answer, AnswerBody::Stored(_)),
        answer,
        charged,
        budget: BudgetView::new(dataset, budget),
    }
}
