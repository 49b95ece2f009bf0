//! Mapping and validation: one source row to one canonical row, or the list of rules it breaks.
//!
//! Architecture invariant: an issue names the row, the NGO's column and the rule, and never the
//! cell's value. A value typed into the wrong column may be a victim's name, so no value is
//! echoed, whatever the column.

mod row;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};
use ctstats_schemas::FIELDS;
use serde::Serialize;

use crate::identity::RawIdentity;
pub use crate::problem::RowIssue;
use crate::problem::{FileProblem, Rule};
use crate::profile::{DERIVED_FIELDS, DROPPED_COLUMNS, Profile, normalise_token};
pub use row::MapMemo;

/// A value of one canonical field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Code(&'static str),
    Codes(Vec<&'static str>),
    Month(NaiveDate),
    Flag(bool),
}

/// A canonical row before pseudonymisation: the identity is still raw.
#[derive(Debug, Clone)]
pub struct MappedRow {
    pub number: u64,
    pub local_case_id: String,
    pub identity: RawIdentity,
    /// Values of the canonical fields, aligned with `FIELDS`; derived fields are `Null` here.
    pub fields: Vec<Value>,
}

impl MappedRow {
    pub fn get(&self, name: &str) -> &Value {
        FIELDS
            .iter()
            .position(|f| f.name == name)
            .map(|i| &self.fields[i])
            .unwrap_or(&Value::Null)
    }

    pub fn registration_month(&self) -> NaiveDate {
        match self.get("registration_month") {
            Value::Month(m) => *m,
            _ => unreachable!("registration_month is required and checked by the mapper"),
        }
    }
}

/// A header that cannot be mapped at all: the target no column feeds, and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {target:?} not found [{}]: {}", .problem.rule, .problem.message)]
pub struct HeaderError {
    pub target: &'static str,
    pub problem: FileProblem,
}

/// Which columns a header provided for the profile's targets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ColumnUse {
    /// Source column -> target it feeds.
    pub mapped: Vec<(String, String)>,
    /// Identifying columns recognised and discarded (phones, addresses, notes, ...).
    pub dropped: Vec<String>,
    /// Columns the profile does not know; they are not read.
    pub ignored: Vec<String>,
}

/// Maps rows of one file under one profile.
#[derive(Debug)]
pub struct Mapper<'p> {
    profile: &'p Profile,
    today: NaiveDate,
    row_id_prefix: String,
    header_len: usize,
    /// Target -> (column index, column name).
    columns: HashMap<String, (usize, String)>,
    /// The column index of each canonical field (by its place in `FIELDS`), as in `columns`.
    cells: Vec<Option<usize>>,
    /// (column index, column name, target, code)
    flags: Vec<(usize, String, String, &'static str)>,
    usage: ColumnUse,
}

impl<'p> Mapper<'p> {
    /// `today` bounds dates from above; `row_id_prefix` makes case ids for profiles whose files
    /// have none (it should identify the file, e.g. its content hash).
    pub fn new(profile: &'p Profile, today: NaiveDate, row_id_prefix: String) -> Self {
        Mapper {
            profile,
            today,
            row_id_prefix,
            header_len: usize::MAX,
            columns: HashMap::new(),
            cells: Vec::new(),
            flags: Vec::new(),
            usage: ColumnUse::default(),
        }
    }

    pub fn column_use(&self) -> &ColumnUse {
        &self.usage
    }

    /// Resolve the header. Called again when a JSON Lines header grows.
    pub fn set_header(&mut self, header: &[String]) -> Result<(), HeaderError> {
        if header.len() == self.header_len {
            return Ok(());
        }
        self.header_len = header.len();
        let index: HashMap<String, usize> = header
            .iter()
            .enumerate()
            .rev()
            .map(|(i, h)| (normalise_token(h), i))
            .collect();
        self.columns.clear();
        self.flags.clear();
        let mut used = vec![false; header.len()];
        let targets = FIELDS
            .iter()
            .map(|f| f.name)
            .filter(|n| !DERIVED_FIELDS.contains(n))
            .chain(crate::profile::INPUT_TARGETS.iter().map(|(t, _)| *t));
        for target in targets {
            for name in self.profile.column_names(target) {
                if let Some(&i) = index.get(&normalise_token(&name)) {
                    if !used[i] {
                        used[i] = true;
                        self.columns
                            .insert(target.to_string(), (i, header[i].clone()));
                    }
                    break;
                }
            }
        }
        for flag in &self.profile.flags {
            if let Some(&i) = index.get(&normalise_token(&flag.column)) {
                let allowed = ctstats_schemas::field(&flag.target).and_then(|f| f.allowed_values());
                let code = allowed
                    .and_then(|a| a.into_iter().find(|c| *c == flag.code))
                    .expect("profile flags are validated against the code lists");
                used[i] = true;
                self.flags
                    .push((i, header[i].clone(), flag.target.clone(), code));
            }
        }
        self.cells = FIELDS
            .iter()
            .map(|f| self.columns.get(f.name).map(|(i, _)| *i))
            .collect();
        self.usage = ColumnUse::default();
        for (target, (_, name)) in &self.columns {
            self.usage.mapped.push((name.clone(), target.clone()));
        }
        for (_, name, target, _) in &self.flags {
            self.usage.mapped.push((name.clone(), target.clone()));
        }
        self.usage.mapped.sort();
        for (i, h) in header.iter().enumerate() {
            if !used[i] && !h.trim().is_empty() {
                if DROPPED_COLUMNS.contains(&normalise_token(h).as_str()) {
                    self.usage.dropped.push(h.clone());
                } else {
                    self.usage.ignored.push(h.clone());
                }
            }
        }
        let has = |t: &str| self.columns.contains_key(t) || self.profile.defaults.contains_key(t);
        if !self.profile.case_id_from_row && !has("local_case_id") {
            return Err(missing_column(self.profile, "local_case_id"));
        }
        if !has("registration_month") && !has("registration_year") {
            return Err(missing_column(self.profile, "registration_month"));
        }
        Ok(())
    }
}

fn missing_column(profile: &Profile, target: &'static str) -> HeaderError {
    HeaderError {
        target,
        // The header is row 1 as the report counts rows.
        problem: FileProblem {
            row: Some(1),
            column: None,
            rule: Rule::MissingColumn,
            message: format!(
                "profile {} needs a column for {target}; accepted names: {}",
                profile.name,
                profile.column_names(target).join(", ")
            ),
        },
    }
}

fn idx(name: &str) -> usize {
    FIELDS
        .iter()
        .position(|f| f.name == name)
        .expect("known canonical field")
}

/// The first day of the month of `d`.
pub fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).expect("day 1 exists in every month")
}

/// Parse a yes/no token (already normalised).
pub fn parse_flag(token: &str) -> Option<bool> {
    match token {
        "1" | "1.0" | "true" | "yes" | "y" | "t" | "да" | "д" | "x" | "✓" => Some(true),
        "0" | "0.0" | "false" | "no" | "n" | "f" | "нет" | "н" => Some(false),
        _ => None,
    }
}

/// Parse a date with the given formats, then as a year-month, then as an ISO date-time.
pub fn parse_date(raw: &str, formats: &[String]) -> Option<NaiveDate> {
    let raw = raw.trim();
    for f in formats {
        if let Ok(d) = NaiveDate::parse_from_str(raw, f) {
            return Some(d);
        }
    }
    // Year and month only: "2005-03", "03.2005", "03/2005".
    for f in ["%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y"] {
        let padded = match f {
            "%Y-%m-%d" => format!("{raw}-01"),
            "%d.%m.%Y" => format!("01.{raw}"),
            _ => format!("01/{raw}"),
        };
        if let Ok(d) = NaiveDate::parse_from_str(&padded, f) {
            return Some(d);
        }
    }
    // "2005-03-14T00:00:00", "2005-03-14 10:00".
    raw.get(..10)
        .filter(|_| raw.len() > 10)
        .and_then(|p| NaiveDate::parse_from_str(p, "%Y-%m-%d").ok())
}
