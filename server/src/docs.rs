//! Response documentation shared by the endpoints, written once: the 401 of every endpoint that
//! takes a token and the generic 500.

use utoipa::IntoResponses;

use crate::error::ErrorBody;

/// No or an unknown token.
#[derive(Debug, IntoResponses)]
#[response(status = 401, description = "No or an unknown token")]
pub struct Unauthenticated(#[allow(dead_code)] ErrorBody);

/// Our failure.
#[derive(Debug, IntoResponses)]
#[response(status = 500, description = "Our failure")]
pub struct Failure(#[allow(dead_code)] ErrorBody);
