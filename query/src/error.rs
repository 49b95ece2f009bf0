//! The engine's errors: a stable [`Code`] (what programs branch on), a message for people and
//! optional structured details. A refusal is an engine outcome, not an HTTP type: the HTTP crate
//! maps each code's [`Kind`] to a status, the command line prints the message.
//!
//! Architecture invariant: no message or detail carries a record value (rows, columns and rules
//! are named, never a cell); our own failures become [`Code::Internal`] with the cause logged.

use serde_json::Value;

use crate::dp::DpError;
use crate::ledger::LedgerError;
use crate::plan::PlanError;
use crate::spec::SpecErrors;

/// What kind of refusal a code is; the HTTP layer maps it to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request is malformed (400).
    Invalid,
    /// No or an unusable credential (401).
    Unauthenticated,
    /// The caller may not do this, or has no budget for it (403).
    Forbidden,
    /// No such thing (404).
    NotFound,
    /// The endpoint does not take this method (405).
    MethodNotAllowed,
    /// The body is larger than the service accepts (413).
    TooLarge,
    /// Understood but refused as a whole, with problems by row, column and rule (422).
    Unprocessable,
    /// Our failure (500).
    Internal,
}

macro_rules! codes {
    ($($variant:ident = $name:literal, $kind:ident;)*) => {
        /// Every stable error code the service answers with. The names are the API's contract:
        /// each is asserted by at least one test (`every_code_is_asserted_by_a_test`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            /// Every code, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The snake_case name on the wire.
            pub fn name(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }

            pub fn kind(self) -> Kind {
                match self {
                    $(Code::$variant => Kind::$kind,)*
                }
            }
        }
    };
}

codes! {
    Unauthenticated = "unauthenticated", Unauthenticated;
    InvalidToken = "invalid_token", Unauthenticated;
    Forbidden = "forbidden", Forbidden;
    NoBudget = "no_budget", Forbidden;
    BudgetExhausted = "budget_exhausted", Forbidden;
    DatasetBudgetExhausted = "dataset_budget_exhausted", Forbidden;
    MissionNotBound = "mission_not_bound", Forbidden;
    InvalidJson = "invalid_json", Invalid;
    InvalidBody = "invalid_body", Invalid;
    EmptyBody = "empty_body", Invalid;
    InvalidParameters = "invalid_parameters", Invalid;
    InvalidProfile = "invalid_profile", Invalid;
    InvalidQuery = "invalid_query", Invalid;
    InvalidSql = "invalid_sql", Invalid;
    InvalidAmount = "invalid_amount", Invalid;
    InvalidPrincipal = "invalid_principal", Invalid;
    InvalidBudget = "invalid_budget", Invalid;
    InvalidSensitivity = "invalid_sensitivity", Invalid;
    InvalidAccuracy = "invalid_accuracy", Invalid;
    BudgetTooSmall = "budget_too_small", Invalid;
    DuplicateKey = "duplicate_key", Invalid;
    NotFound = "not_found", NotFound;
    NoSuchPrincipal = "no_such_principal", NotFound;
    MethodNotAllowed = "method_not_allowed", MethodNotAllowed;
    PayloadTooLarge = "payload_too_large", TooLarge;
    InvalidReference = "invalid_reference", Unprocessable;
    Internal = "internal", Internal;
}

/// A refusal or a failure of the engine.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", code.name())]
pub struct EngineError {
    pub code: Code,
    /// For people: what is wrong and how to fix it.
    pub message: String,
    /// Structured details: the fields at fault, the budget left, ...
    pub details: Option<Value>,
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        EngineError {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Our failure: log the cause, tell the caller nothing about it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        EngineError::new(
            Code::Internal,
            "the service failed to answer; the cause was logged",
        )
    }

    pub fn invalid_query(errors: &SpecErrors) -> Self {
        let message = errors
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        EngineError::new(Code::InvalidQuery, message)
            .with_details(serde_json::json!({ "errors": errors.0 }))
    }

    /// A SQL statement refused: the construct and where it is, as a message and as details.
    pub fn invalid_sql(error: &crate::sql::SqlError) -> Self {
        EngineError::new(Code::InvalidSql, error.to_string())
            .with_details(serde_json::json!({ "sql": error }))
    }

    pub fn invalid_json(message: impl Into<String>) -> Self {
        EngineError::new(Code::InvalidJson, message)
    }
}

impl From<DpError> for EngineError {
    fn from(e: DpError) -> Self {
        let code = match e {
            DpError::InvalidBudget(_) => Code::InvalidBudget,
            DpError::InvalidSensitivity(_) => Code::InvalidSensitivity,
            DpError::InvalidAccuracy(_) => Code::InvalidAccuracy,
            DpError::BudgetTooSmall(_) => Code::BudgetTooSmall,
            DpError::DuplicateKey { .. } => Code::DuplicateKey,
            DpError::OpenDp { .. } | DpError::Internal(_) => return EngineError::internal(e),
        };
        debug_assert_eq!(code.name(), e.code());
        EngineError::new(code, e.to_string())
    }
}

impl From<PlanError> for EngineError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::InvalidSpec(errors) => EngineError::invalid_query(&errors),
            other => EngineError::internal(other),
        }
    }
}

impl From<LedgerError> for EngineError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::NoSuchPrincipal(id) => EngineError::new(
                Code::NoSuchPrincipal,
                format!("no active principal with id {id}"),
            ),
            LedgerError::InvalidAmount(message) => EngineError::new(Code::InvalidAmount, message),
            other => EngineError::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for code in Code::ALL {
            let name = code.name();
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
            assert!(seen.insert(name), "{name} twice");
        }
    }

    #[test]
    fn dp_refusals_keep_their_codes() {
        let e = EngineError::from(DpError::BudgetTooSmall("x".into()));
        assert_eq!(e.code, Code::BudgetTooSmall);
        assert_eq!(e.code.kind(), Kind::Invalid);
        let e = EngineError::from(DpError::Internal("x".into()));
        assert_eq!(e.code, Code::Internal);
        assert!(!e.message.contains('x'), "{}", e.message);
    }
}
