//! The ingest report: what happened to every row read, for the NGO's data officer.
//!
//! Invariant: `rows_valid + rows_invalid == rows_read`, and `rows_committed` is `rows_valid` when
//! the batch was committed, else 0. Issues name row, column and rule; never a value.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::map::ColumnUse;
pub use crate::problem::FileProblem;
use crate::problem::RowIssue;

/// At most this many issues are listed one by one; all are counted by rule.
pub const MAX_LISTED_ISSUES: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Rows were committed and are visible to queries.
    Committed,
    /// Nothing was written: invalid rows under the default policy, or a file-level problem.
    Rejected,
    /// The same file was already committed for this organisation; nothing was written.
    Duplicate,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub status: Status,
    pub batch_id: Option<String>,
    /// The committed batch this file duplicates, for `Duplicate`.
    pub duplicate_of: Option<String>,
    pub organisation: String,
    pub reporting_mission: String,
    pub format: String,
    pub encoding: Option<String>,
    pub profile: String,
    pub policy: &'static str,
    pub rows_read: u64,
    pub rows_valid: u64,
    pub rows_invalid: u64,
    pub rows_committed: u64,
    /// Records of earlier batches replaced by rows of this one (corrections).
    pub rows_superseding: u64,
    pub person_link_quality: BTreeMap<String, u64>,
    pub file_problem: Option<FileProblem>,
    pub issues_by_rule: BTreeMap<String, u64>,
    pub issues_total: u64,
    /// The first `MAX_LISTED_ISSUES` issues, in file order.
    pub issues: Vec<RowIssue>,
    pub columns: ColumnUse,
    pub key_id: String,
}

impl IngestReport {
    pub fn add_issues(&mut self, issues: Vec<RowIssue>) {
        for issue in issues {
            *self
                .issues_by_rule
                .entry(issue.rule.name().to_string())
                .or_default() += 1;
            self.issues_total += 1;
            if self.issues.len() < MAX_LISTED_ISSUES {
                self.issues.push(issue);
            }
        }
    }

    /// The human summary printed at the end of an ingest.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let status = match self.status {
            Status::Committed => format!(
                "committed as batch {}",
                self.batch_id.as_deref().unwrap_or("?")
            ),
            Status::Rejected => "REJECTED: nothing was written".to_string(),
            Status::Duplicate => format!(
                "duplicate of batch {}: this file was already ingested for {}; nothing was written",
                self.duplicate_of.as_deref().unwrap_or("?"),
                self.organisation
            ),
        };
        let _ = writeln!(
            out,
            "{} ({} for {}, profile {}): {status}",
            self.format, self.organisation, self.reporting_mission, self.profile
        );
        if let Some(enc) = &self.encoding {
            let _ = writeln!(out, "  encoding: {enc}");
        }
        let _ = writeln!(
            out,
            "  rows read: {}  valid: {}  invalid: {}  committed: {}",
            self.rows_read, self.rows_valid, self.rows_invalid, self.rows_committed
        );
        if self.rows_superseding > 0 {
            let _ = writeln!(
                out,
                "  earlier records corrected by this batch: {}",
                self.rows_superseding
            );
        }
        if let Some(p) = &self.file_problem {
            let place = match (p.row, &p.column) {
                (Some(r), Some(c)) => format!("row {r}, column {c:?}"),
                (Some(r), None) => format!("row {r}"),
                (None, Some(c)) => format!("column {c:?}"),
                (None, None) => "file".to_string(),
            };
            let _ = writeln!(out, "  {place}: {} [{}]", p.message, p.rule);
        }
        if !self.columns.dropped.is_empty() {
            let _ = writeln!(
                out,
                "  identifying columns dropped unread: {}",
                self.columns.dropped.join(", ")
            );
        }
        if !self.columns.ignored.is_empty() {
            let _ = writeln!(
                out,
                "  columns not in the profile (ignored): {}",
                self.columns.ignored.join(", ")
            );
        }
        if self.issues_total > 0 {
            let by_rule: Vec<String> = self
                .issues_by_rule
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            let _ = writeln!(
                out,
                "  problems: {} ({})",
                self.issues_total,
                by_rule.join(", ")
            );
            for issue in self.issues.iter().take(20) {
                let column = match issue.column.as_str() {
                    "" => String::new(),
                    c => format!(", column {c:?}"),
                };
                let _ = writeln!(
                    out,
                    "    row {}{column}: {} [{}]",
                    issue.row, issue.message, issue.rule
                );
            }
            if self.issues_total > 20 {
                let _ = writeln!(
                    out,
                    "    ... {} more in the JSON report (--report FILE)",
                    self.issues_total - 20
                );
            }
            if self.status == Status::Rejected && self.file_problem.is_none() {
                let _ = writeln!(
                    out,
                    "  Fix these rows and ingest again, or use --accept-valid to commit the valid rows only."
                );
            }
        }
        out
    }
}
