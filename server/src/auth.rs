//! Authentication and roles: a bearer token names a principal; the extractor for each endpoint
//! group checks the caller's role before anything else of the request is read, so a caller with
//! the wrong role learns nothing from the body's validation. `POST /v1/query` reads its body
//! (within the same size limit) before the token is looked up, so that the lookup shares one
//! blocking hop with the stored answer's; a body it cannot accept is judged only after the
//! caller is (`query::query`), so the same holds there.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use ctstats_query::error::Code;
use ctstats_query::ledger::{Principal, Role};
use ctstats_query::service::{self, QUERY_ROLES, READ_ROLES, RELEASE_ROLES};

use crate::AppState;
use crate::error::ApiError;

/// The roles an endpoint group serves.
pub trait Roles: Send + Sync + 'static {
    const ROLES: &'static [Role];
}

/// Analysts and researchers: queries, previews, budgets.
#[derive(Debug)]
pub struct Querier;
/// Analysts: releases.
#[derive(Debug)]
pub struct Analyst;
/// Every role: stored releases.
#[derive(Debug)]
pub struct Reader;
/// Admins.
#[derive(Debug)]
pub struct Admin;
/// NGOs: their own uploads.
#[derive(Debug)]
pub struct Ngo;
/// Admins and analysts: the dataset-wide budget.
#[derive(Debug)]
pub struct DatasetReader;
/// Analysts and admins: synthetic tables.
#[derive(Debug)]
pub struct Synthesizer;

impl Roles for Querier {
    const ROLES: &'static [Role] = QUERY_ROLES;
}
impl Roles for Analyst {
    const ROLES: &'static [Role] = RELEASE_ROLES;
}
impl Roles for Reader {
    const ROLES: &'static [Role] = READ_ROLES;
}
impl Roles for Admin {
    const ROLES: &'static [Role] = &[Role::Admin];
}
impl Roles for DatasetReader {
    const ROLES: &'static [Role] = &[Role::Admin, Role::Analyst];
}
impl Roles for Synthesizer {
    const ROLES: &'static [Role] = service::synthetic::SYNTHETIC_ROLES;
}
impl Roles for Ngo {
    const ROLES: &'static [Role] = &[Role::Ngo];
}

/// The authenticated caller of a request, holding one of `R`'s roles.
#[derive(Debug)]
pub struct Caller<R> {
    pub principal: Principal,
    roles: PhantomData<R>,
}

impl<R: Roles> FromRequestParts<AppState> for Caller<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Bearer(token) = Bearer::from_request_parts(parts, state).await?;
        let principal = state.service().authenticate(token).await?;
        service::require(&principal, R::ROLES)?;
        Ok(Caller {
            principal,
            roles: PhantomData,
        })
    }
}

/// The bearer token of a request, not yet looked up: for `POST /v1/query`, which looks the
/// token up in the same blocking hop as the stored answer. A request without a well-formed
/// `Authorization` header is refused here as everywhere.
#[derive(Debug)]
pub struct Bearer(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::new(
                Code::Unauthenticated,
                "send a bearer token: `Authorization: Bearer cts_...`",
            )
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 200)
            .ok_or_else(|| {
                ApiError::new(Code::InvalidToken, "the bearer token is unknown or revoked")
            })?
            .to_string();
        Ok(Bearer(token))
    }
}
