//! Mapping and validation: one source row to one canonical row, or the list of rules it breaks.
//!
//! Architecture invariant: an issue names the row, the NGO's column and the rule, and never the
//! cell's value. A value typed into the wrong column may be a victim's name, so no value is
//! echoed, whatever the column.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};
use ctstats_schemas::codes::{AgeBand, CodeList};
use ctstats_schemas::{FIELDS, FieldKind, countries};
use serde::Serialize;

use crate::identity::RawIdentity;
use crate::profile::{DERIVED_FIELDS, DROPPED_COLUMNS, Profile, normalise_token};

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

/// One broken rule in one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowIssue {
    /// Row number as the NGO sees it.
    pub row: u64,
    /// The NGO's column name, or the canonical field when no column holds it.
    pub column: String,
    /// Stable snake_case rule name.
    pub rule: &'static str,
    /// What is wrong and what would be accepted. Never the cell's value.
    pub message: String,
}

/// A header that cannot be mapped at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("column {target:?} not found [{rule}]: {message}")]
pub struct HeaderError {
    pub target: String,
    pub rule: &'static str,
    pub message: String,
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
    /// (column index, column name, target, code)
    flags: Vec<(usize, String, String, &'static str)>,
    usage: ColumnUse,
}

const EARLIEST: (i32, u32, u32) = (1990, 1, 1);

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

    /// Map one row, or list every rule it breaks.
    pub fn map(
        &self,
        row_number: u64,
        values: &[Option<String>],
    ) -> Result<MappedRow, Vec<RowIssue>> {
        let mut cx = RowContext {
            mapper: self,
            row: row_number,
            values,
            issues: Vec::new(),
        };
        let mut fields = vec![Value::Null; FIELDS.len()];
        for (i, f) in FIELDS.iter().enumerate() {
            if DERIVED_FIELDS.contains(&f.name) {
                continue;
            }
            fields[i] = cx.field_value(f.name, f.kind);
        }
        cx.apply_flags(&mut fields);

        let local_case_id = if self.profile.case_id_from_row {
            format!("{}:{row_number}", self.row_id_prefix)
        } else {
            match cx.raw("local_case_id") {
                Some(id) => id.to_string(),
                None => {
                    cx.issue(
                        "local_case_id",
                        "required",
                        "a case id is required in every row".into(),
                    );
                    String::new()
                }
            }
        };
        let identity = RawIdentity {
            first_name: cx.raw("first_name").map(str::to_string),
            last_name: cx.raw("last_name").map(str::to_string),
            full_name: cx.raw("full_name").map(str::to_string),
            birth_date: cx.date("birth_date", true),
            document_number: cx.raw("document_number").map(str::to_string),
            citizenship: match fields[idx("citizenship")] {
                Value::Code(c) => Some(c),
                _ => None,
            },
        };
        cx.derive_registration(&mut fields);
        cx.derive_age(&mut fields, identity.birth_date);
        cx.check_consistency(&fields, identity.birth_date);

        if cx.issues.is_empty() {
            Ok(MappedRow {
                number: row_number,
                local_case_id,
                identity,
                fields,
            })
        } else {
            Err(cx.issues)
        }
    }
}

fn missing_column(profile: &Profile, target: &str) -> HeaderError {
    HeaderError {
        target: target.into(),
        rule: "missing_column",
        message: format!(
            "profile {} needs a column for {target}; accepted names: {}",
            profile.name,
            profile.column_names(target).join(", ")
        ),
    }
}

fn idx(name: &str) -> usize {
    FIELDS
        .iter()
        .position(|f| f.name == name)
        .expect("known canonical field")
}

struct RowContext<'a, 'p> {
    mapper: &'a Mapper<'p>,
    row: u64,
    values: &'a [Option<String>],
    issues: Vec<RowIssue>,
}

impl RowContext<'_, '_> {
    fn column_name(&self, target: &str) -> String {
        self.mapper
            .columns
            .get(target)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| target.to_string())
    }

    fn issue(&mut self, target: &str, rule: &'static str, message: String) {
        let column = self.column_name(target);
        self.issues.push(RowIssue {
            row: self.row,
            column,
            rule,
            message,
        });
    }

    /// The trimmed text for `target`, or its default; `None` when not recorded.
    fn raw(&self, target: &str) -> Option<&str> {
        let from_cell = self
            .mapper
            .columns
            .get(target)
            .and_then(|(i, _)| self.values.get(*i))
            .and_then(|v| v.as_deref())
            .map(str::trim)
            .filter(|v| !self.mapper.profile.is_missing(&normalise_token(v)));
        from_cell.or_else(|| self.mapper.profile.defaults.get(target).map(String::as_str))
    }

    /// The profile's value map applied to a token: `Some(None)` means mapped to "not recorded".
    fn mapped<'v>(&'v self, target: &str, token: &str) -> Option<Option<&'v str>> {
        let map = self.mapper.profile.values.get(target)?;
        map.get(&normalise_token(token))
            .map(|v| (!v.is_empty()).then_some(v.as_str()))
    }

    fn field_value(&mut self, name: &str, kind: FieldKind) -> Value {
        let Some(raw) = self.raw(name).map(str::to_string) else {
            return Value::Null;
        };
        match kind {
            FieldKind::Code { list } => match self.code(name, list, &raw) {
                Some(Some(c)) => Value::Code(c),
                _ => Value::Null,
            },
            FieldKind::CodeSet { list } => {
                let mut codes = Vec::new();
                for part in raw.split(self.mapper.profile.list_separator) {
                    if part.trim().is_empty() {
                        continue;
                    }
                    if let Some(Some(c)) = self.code(name, list, part) {
                        codes.push(c);
                    }
                }
                Value::Codes(sort_codes(list, codes))
            }
            FieldKind::Country => match self.country(name, &raw) {
                Some(c) => Value::Code(c),
                None => Value::Null,
            },
            FieldKind::Month => match self.date(name, false) {
                Some(d) => Value::Month(first_of_month(d)),
                None => Value::Null,
            },
            FieldKind::Flag => match self.flag(name, &raw) {
                Some(b) => Value::Flag(b),
                None => Value::Null,
            },
            FieldKind::Id | FieldKind::Pseudonym | FieldKind::Timestamp => Value::Null,
        }
    }

    /// Resolve a code: the profile's map, else the stored name, else the label. `Some(None)` is
    /// an explicit "not recorded"; `None` is an error (already reported).
    fn code(&mut self, target: &str, list: &str, raw: &str) -> Option<Option<&'static str>> {
        let allowed = ctstats_schemas::code_list_names(list).unwrap_or_default();
        let found = match self.mapped(target, raw) {
            Some(None) => return Some(None),
            Some(Some(v)) => allowed.iter().find(|a| **a == v).copied(),
            None => {
                let token = normalise_token(raw);
                let dashed = token.replace(['—', '–'], "-").replace("--", "-");
                let snake = token.replace([' ', '-'], "_");
                allowed
                    .iter()
                    .find(|a| **a == token || **a == dashed || **a == snake)
                    .copied()
            }
        };
        if found.is_none() {
            let message = format!("not a known {list} code; accepted: {}", allowed.join(", "));
            self.issue(target, "unknown_code", message);
            return None;
        }
        Some(found)
    }

    fn country(&mut self, target: &str, raw: &str) -> Option<&'static str> {
        let token = normalise_token(raw);
        if self.mapper.profile.unknown_country.contains(&token) {
            return None;
        }
        let code = match self.mapped(target, raw) {
            Some(None) => return None,
            Some(Some(v)) => countries::lookup(v),
            None => countries::lookup(raw),
        };
        match code {
            Some(c) => Some(c.alpha3),
            None => {
                self.issue(
                    target,
                    "invalid_country",
                    "not an ISO 3166-1 alpha-2 or alpha-3 code or English country name".into(),
                );
                None
            }
        }
    }

    fn flag(&mut self, target: &str, raw: &str) -> Option<bool> {
        let token = normalise_token(raw);
        let token = match self.mapped(target, raw) {
            Some(None) => return None,
            Some(Some(v)) => v.to_string(),
            None => token,
        };
        match parse_flag(&token) {
            Some(b) => Some(b),
            None => {
                self.issue(
                    target,
                    "invalid_flag",
                    "expected yes/no, true/false, 1/0 or да/нет".into(),
                );
                None
            }
        }
    }

    /// Parse a date target with the profile's formats. `identifier` dates (birth dates) are
    /// never echoed, like every value.
    fn date(&mut self, target: &str, identifier: bool) -> Option<NaiveDate> {
        let raw = self.raw(target)?.to_string();
        match parse_date(&raw, &self.mapper.profile.date_formats) {
            Some(d) if d > self.mapper.today => {
                self.issue(
                    target,
                    "date_in_future",
                    "the date is after the day of ingest".into(),
                );
                None
            }
            Some(d) if !identifier && d < ymd(EARLIEST) => {
                self.issue(
                    target,
                    "date_too_early",
                    "dates before 1990 are not accepted".into(),
                );
                None
            }
            Some(d) if identifier && d.year() < 1900 => {
                self.issue(
                    target,
                    "date_too_early",
                    "birth dates before 1900 are not accepted".into(),
                );
                None
            }
            Some(d) => Some(d),
            None => {
                let formats: Vec<String> = self
                    .mapper
                    .profile
                    .date_formats
                    .iter()
                    .map(|f| readable_format(f))
                    .collect();
                let formats = formats.join(", ");
                self.issue(
                    target,
                    "invalid_date",
                    format!("not a date in any accepted format ({formats}, or YYYY-MM)"),
                );
                None
            }
        }
    }

    fn integer(&mut self, target: &str, max: u32) -> Option<u32> {
        let raw = self.raw(target)?;
        let parsed = raw
            .parse::<f64>()
            .ok()
            .filter(|v| v.fract() == 0.0 && *v >= 0.0 && *v <= max as f64);
        if parsed.is_none() {
            self.issue(
                target,
                "invalid_age",
                format!("expected a whole number of years from 0 to {max}"),
            );
        }
        parsed.map(|v| v as u32)
    }

    fn apply_flags(&mut self, fields: &mut [Value]) {
        // target -> (codes set, any flag recorded)
        let mut seen: Vec<(String, Vec<&'static str>, bool)> = Vec::new();
        let flags = self.mapper.flags.clone();
        for (col, name, target, code) in &flags {
            let Some(raw) = self.values.get(*col).and_then(|v| v.as_deref()) else {
                continue;
            };
            let token = normalise_token(raw);
            if self.mapper.profile.is_missing(&token) {
                continue;
            }
            let value = match parse_flag(&token) {
                Some(v) => v,
                None => {
                    self.issues.push(RowIssue {
                        row: self.row,
                        column: name.clone(),
                        rule: "invalid_flag",
                        message: "expected 1/0, yes/no or true/false".into(),
                    });
                    continue;
                }
            };
            let entry = match seen.iter_mut().find(|(t, _, _)| t == target) {
                Some(e) => e,
                None => {
                    seen.push((target.clone(), Vec::new(), false));
                    seen.last_mut().expect("just pushed")
                }
            };
            entry.2 = true;
            if value && !entry.1.contains(code) {
                entry.1.push(code);
            }
        }
        for (target, codes, recorded) in seen {
            let i = idx(&target);
            match (FIELDS[i].kind, &mut fields[i]) {
                (FieldKind::CodeSet { list }, slot) => {
                    let mut all = match slot {
                        Value::Codes(existing) => std::mem::take(existing),
                        _ => Vec::new(),
                    };
                    all.extend(codes);
                    if recorded || !all.is_empty() {
                        *slot = Value::Codes(sort_codes(list, all));
                    }
                }
                (FieldKind::Code { .. }, slot @ Value::Null) => {
                    if let Some(first) = codes.first() {
                        *slot = Value::Code(first);
                    }
                }
                _ => {}
            }
        }
    }

    fn derive_registration(&mut self, fields: &mut [Value]) {
        let i = idx("registration_month");
        if fields[i] != Value::Null {
            return;
        }
        if let Some(year) = self.raw("registration_year").map(str::to_string) {
            let parsed = year
                .parse::<f64>()
                .ok()
                .filter(|y| y.fract() == 0.0)
                .map(|y| y as i32);
            match parsed.and_then(|y| NaiveDate::from_ymd_opt(y, 1, 1)) {
                Some(d) if d <= self.mapper.today && d >= ymd(EARLIEST) => {
                    fields[i] = Value::Month(d)
                }
                _ => self.issue(
                    "registration_year",
                    "invalid_year",
                    "expected a year from 1990 to this year".into(),
                ),
            }
            return;
        }
        let already_reported = self
            .issues
            .iter()
            .any(|x| x.column == self.column_name("registration_month"));
        if !already_reported {
            self.issue(
                "registration_month",
                "required",
                "the registration date is required in every row".into(),
            );
        }
    }

    fn derive_age(&mut self, fields: &mut [Value], birth_date: Option<NaiveDate>) {
        let registration = match fields[idx("registration_month")] {
            Value::Month(m) => Some(m),
            _ => None,
        };
        let age_years = match (birth_date, registration) {
            // Registration is known to the month: use the month's first day, so the age is the
            // age reached by the start of that month.
            (Some(b), Some(r)) => r.years_since(b),
            _ => self.integer("age", 120),
        };
        let band_slot = idx("age_band");
        if fields[band_slot] == Value::Null
            && let Some(age) = age_years
        {
            fields[band_slot] = Value::Code(AgeBand::of_age(age).name());
        }
        let minor_slot = idx("minor_at_registration");
        if fields[minor_slot] == Value::Null {
            let minor = match (&fields[band_slot], age_years) {
                (_, Some(age)) => Some(age < 18),
                (Value::Code(band), None) => AgeBand::from_name(band).map(AgeBand::is_minor),
                _ => None,
            };
            if let Some(m) = minor {
                fields[minor_slot] = Value::Flag(m);
            }
        }
        let exploit_slot = idx("minor_at_exploitation");
        if fields[exploit_slot] == Value::Null
            && let Some(age) = self.integer("age_at_exploitation", 120)
        {
            fields[exploit_slot] = Value::Flag(age < 18);
        }
    }

    fn check_consistency(&mut self, fields: &[Value], birth_date: Option<NaiveDate>) {
        let month = |name: &str| match fields[idx(name)] {
            Value::Month(m) => Some(m),
            _ => None,
        };
        let registration = month("registration_month");
        if let (Some(b), Some(r)) = (birth_date, registration)
            && first_of_month(b) > r
        {
            self.issue(
                "birth_date",
                "born_after_registration",
                "the birth date is after the registration date".into(),
            );
        }
        if let (Some(c), Some(r)) = (month("case_closed_month"), registration)
            && c < r
        {
            self.issue(
                "case_closed_month",
                "closed_before_registration",
                "the case closes before it was registered".into(),
            );
        }
        if fields[idx("shelter_accepted")] == Value::Flag(true)
            && fields[idx("shelter_offered")] == Value::Flag(false)
        {
            self.issue(
                "shelter_accepted",
                "accepted_without_offer",
                "shelter accepted but recorded as not offered".into(),
            );
        }
    }
}

fn sort_codes(list: &str, mut codes: Vec<&'static str>) -> Vec<&'static str> {
    let order = ctstats_schemas::code_list_names(list).unwrap_or_default();
    codes.sort_by_key(|c| order.iter().position(|o| o == c));
    codes.dedup();
    codes
}

fn ymd((y, m, d): (i32, u32, u32)) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid constant date")
}

/// The first day of the month of `d`.
pub fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).expect("day 1 exists in every month")
}

/// A strftime date format as an NGO officer reads it: `%d.%m.%Y` -> `DD.MM.YYYY`.
fn readable_format(format: &str) -> String {
    format
        .replace("%Y", "YYYY")
        .replace("%m", "MM")
        .replace("%d", "DD")
        .replace("%y", "YY")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile;

    fn header(cols: &[&str]) -> Vec<String> {
        cols.iter().map(|s| s.to_string()).collect()
    }

    fn row(vals: &[&str]) -> Vec<Option<String>> {
        vals.iter()
            .map(|v| (!v.is_empty()).then(|| v.to_string()))
            .collect()
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
    }

    #[test]
    fn maps_a_canonical_row() {
        let p = profile::canonical();
        let mut m = Mapper::new(&p, today(), "f".into());
        m.set_header(&header(&[
            "case_id",
            "Фамилия",
            "Имя",
            "Дата рождения",
            "registration_date",
            "Пол",
            "citizenship",
            "exploitation_types",
            "shelter_offered",
            "Телефон",
        ]))
        .unwrap();
        let r = m
            .map(
                2,
                &row(&[
                    "A-1",
                    "Асанова",
                    "Айгуль",
                    "14.03.1987",
                    "2005-06-20",
                    "ж",
                    "kg",
                    "forced labour; sexual_exploitation",
                    "да",
                    "+996",
                ]),
            )
            .unwrap();
        assert_eq!(r.local_case_id, "A-1");
        assert_eq!(
            r.get("registration_month"),
            &Value::Month(NaiveDate::from_ymd_opt(2005, 6, 1).unwrap())
        );
        assert_eq!(r.get("gender"), &Value::Code("female"));
        assert_eq!(r.get("citizenship"), &Value::Code("KGZ"));
        assert_eq!(r.get("age_band"), &Value::Code("18-20"));
        assert_eq!(r.get("minor_at_registration"), &Value::Flag(false));
        assert_eq!(
            r.get("exploitation_types"),
            &Value::Codes(vec!["forced_labour", "sexual_exploitation"])
        );
        assert_eq!(r.get("shelter_offered"), &Value::Flag(true));
        assert_eq!(m.column_use().dropped, vec!["Телефон".to_string()]);
    }

    #[test]
    fn reports_every_broken_rule_without_values() {
        let p = profile::canonical();
        let mut m = Mapper::new(&p, today(), "f".into());
        m.set_header(&header(&[
            "case_id",
            "registration_month",
            "gender",
            "citizenship",
            "birth_date",
            "shelter_offered",
            "shelter_accepted",
        ]))
        .unwrap();
        let issues = m
            .map(
                7,
                &row(&[
                    "",
                    "2031-01-01",
                    "Secretname",
                    "Atlantis",
                    "1987-13-45",
                    "no",
                    "yes",
                ]),
            )
            .unwrap_err();
        let rules: Vec<_> = issues.iter().map(|i| (i.column.as_str(), i.rule)).collect();
        assert_eq!(
            rules,
            vec![
                ("registration_month", "date_in_future"),
                ("gender", "unknown_code"),
                ("citizenship", "invalid_country"),
                ("case_id", "required"),
                ("birth_date", "invalid_date"),
                ("shelter_accepted", "accepted_without_offer"),
            ]
        );
        assert!(issues.iter().all(|i| i.row == 7));
        let text = format!("{issues:?}");
        assert!(
            !text.contains("Secretname")
                && !text.contains("Atlantis")
                && !text.contains("1987-13-45")
        );
    }

    #[test]
    fn header_without_required_column_is_refused() {
        let p = profile::canonical();
        let mut m = Mapper::new(&p, today(), "f".into());
        let err = m.set_header(&header(&["case_id", "gender"])).unwrap_err();
        assert_eq!(err.rule, "missing_column");
        assert_eq!(err.target, "registration_month");
    }

    #[test]
    fn ctdc_flags_and_quirks() {
        let p = profile::ctdc();
        let mut m = Mapper::new(&p, today(), "file".into());
        m.set_header(&header(&[
            "yearOfRegistration",
            "gender",
            "ageBroad",
            "majorityStatus",
            "citizenship",
            "CountryofExploitation",
            "isForcedLabour",
            "isSexualExploit",
            "meansOfControlDebtBondage",
            "typeOfLabourConstruction",
        ]))
        .unwrap();
        let r = m
            .map(
                3,
                &row(&[
                    "2016", "Female", "18--20", "Adult", "NA", "ZZ", "1.0", "0.0", "-99", "1",
                ]),
            )
            .unwrap();
        assert_eq!(r.local_case_id, "file:3");
        assert_eq!(
            r.get("registration_month"),
            &Value::Month(NaiveDate::from_ymd_opt(2016, 1, 1).unwrap())
        );
        assert_eq!(r.get("citizenship"), &Value::Code("NAM"));
        assert_eq!(r.get("country_of_exploitation"), &Value::Null);
        assert_eq!(r.get("age_band"), &Value::Code("18-20"));
        assert_eq!(r.get("minor_at_registration"), &Value::Flag(false));
        assert_eq!(
            r.get("exploitation_types"),
            &Value::Codes(vec!["forced_labour"])
        );
        assert_eq!(r.get("means_of_control"), &Value::Null);
        assert_eq!(r.get("labour_sectors"), &Value::Codes(vec!["construction"]));
    }

    #[test]
    fn dates_in_common_formats() {
        let f: Vec<String> = profile::canonical().date_formats;
        let d = |s| parse_date(s, &f);
        let want = NaiveDate::from_ymd_opt(2005, 3, 14);
        assert_eq!(d("2005-03-14"), want);
        assert_eq!(d("14.03.2005"), want);
        assert_eq!(d("14/03/2005"), want);
        assert_eq!(d("2005-03-14T10:00:00"), want);
        assert_eq!(d("2005-03"), NaiveDate::from_ymd_opt(2005, 3, 1));
        assert_eq!(d("03.2005"), NaiveDate::from_ymd_opt(2005, 3, 1));
        assert_eq!(d("2005-02-30"), None);
        assert_eq!(d("yesterday"), None);
    }
}
