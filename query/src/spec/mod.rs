//! The query a caller posts, as JSON, and its validation against the public domains.
//!
//! ```json
//! {
//!   "measure": "persons",
//!   "group_by": ["mission", "registration_year", "gender"],
//!   "filters": { "trafficking_status": ["actual", "possible"] },
//!   "period": { "from": "2003-01", "to": "2006-12" },
//!   "contribution_bound": 1,
//!   "mechanism": "laplace",
//!   "budget": { "epsilon": 0.5 },
//!   "keys": "public"
//! }
//! ```
//!
//! A value measure names a numeric column and its bounds:
//! `{"measure": "histogram", "column": "months_to_closure", "bounds": {"lower": 0, "upper": 23},
//! "bins": 4, ...}` or `"bins": [0, 3, 6, 12]` (explicit lower edges).
//!
//! [`QuerySpec`] is what arrives (serde, unknown fields refused); [`QuerySpec::validate`] checks it
//! against the public domains and returns a [`ValidatedSpec`], the only form the planner accepts.
//! Every error names the field and what it allows, and all errors are reported at once.
//!
//! Public domains: missions are the codes the service is configured with; countries are every
//! ISO 3166-1 alpha-3 code of `ctstats_schemas::countries`; coded fields take the snake_case
//! names of their code list; flags take `yes` and `no`; years, quarters and months come from the
//! period. Every domain ends with [`UNKNOWN`], the key of nulls (not recorded) and of stored
//! values outside the domain.
//!
//! A validated spec has one canonical serialisation ([`ValidatedSpec::canonical_json`]): every
//! default filled in, `group_by` in the canonical dimension order, filter values deduplicated in
//! domain order, quantiles sorted, bins always as explicit lower edges. Its BLAKE3 hash
//! ([`ValidatedSpec::hash`]) recognises the same question asked again, however it was spelled.

mod domains;
mod period;
#[cfg(test)]
mod tests;
mod validate;
mod validated;
mod wire;

use std::collections::BTreeMap;
use std::fmt;

use ctstats_schemas::codes::{CodeList, ExploitationType};
use ctstats_schemas::{FIELDS, FieldGroup, FieldKind, code_list_names, countries};
use serde::{Deserialize, Serialize};

pub use domains::*;
pub use period::*;
pub use validated::*;
pub use wire::*;

/// The key of nulls and of values outside the domain, last in every domain.
pub const UNKNOWN: &str = "unknown";
/// Flag keys.
pub const YES: &str = "yes";
pub const NO: &str = "no";
/// Above this many cells (including bins) a query must release keys by threshold.
pub const MAX_PUBLIC_CELLS: u64 = 10_000;
/// Records per person kept: default and maximum.
pub const DEFAULT_CONTRIBUTION_BOUND: u32 = 1;
pub const MAX_CONTRIBUTION_BOUND: u32 = 20;
/// Exploitation types per record kept: default (the maximum is the size of the code list).
pub const DEFAULT_LIST_ITEMS_BOUND: u32 = 2;
/// Longest period, in months (30 years).
pub const MAX_PERIOD_MONTHS: u32 = 360;
/// Largest absolute value of a bound.
pub const MAX_ABS_BOUND: i64 = 1_000_000;
/// Most bins of a histogram or quantile.
pub const MAX_BINS: usize = 1_000;
/// Default number of bins of a quantile (fewer when the bounds hold fewer integers).
pub const DEFAULT_QUANTILE_BINS: i64 = 100;
/// Most quantiles in one query.
pub const MAX_QUANTILES: usize = 20;
/// Yes/no value columns are the flags; these are the derived ones.
pub const MONTHS_TO_CLOSURE: &str = "months_to_closure";
pub const MONTHS_IDENTIFICATION_TO_REGISTRATION: &str = "months_identification_to_registration";
pub const ASSISTANCE_TYPE_COUNT: &str = "assistance_type_count";

/// One validation problem: the field at fault and what it allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem of a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
pub(super) struct Errors(pub(super) Vec<SpecError>);

impl Errors {
    pub(super) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(SpecError {
            field: field.into(),
            message: message.into(),
        });
    }
}
