//! One row: its cells to canonical values, derived fields and consistency checks, or every
//! rule it breaks.

use chrono::{Datelike, NaiveDate};
use ctstats_schemas::codes::{AgeBand, CodeList};
use ctstats_schemas::{FIELDS, FieldKind, countries};

use super::{MappedRow, Mapper, Value, first_of_month, idx, parse_date, parse_flag};
use crate::identity::RawIdentity;
use crate::problem::{RowIssue, Rule};
use crate::profile::{DERIVED_FIELDS, normalised};

/// Registration and other case dates before this are refused.
const EARLIEST: (i32, u32, u32) = (1990, 1, 1);

/// Cells longer than this are resolved each time, not remembered.
const MEMO_CELL_BYTES: usize = 64;
/// Distinct cells remembered per canonical field; past it, new ones are resolved each time.
const MEMO_CELLS: usize = 4096;

/// What the cells of one mapping thread resolved to, per canonical field: a file's code,
/// country, flag and date cells repeat a few values, and each value resolves (profile map,
/// code list, country table, date formats) the same way in every row. An entry keeps the
/// value and the issues it raised (column, rule, message: never the cell), so a remembered
/// cell reports exactly what resolving it again would. Kept for one header: it starts over
/// when the mapper's header changes.
#[derive(Debug, Default)]
pub struct MapMemo {
    header_len: usize,
    slots: Vec<MemoSlot>,
}

#[derive(Debug, Default)]
struct MemoSlot {
    /// The field's value when its cell is empty or absent (the profile's default, or null).
    empty: Option<MemoEntry>,
    cells: std::collections::HashMap<Box<str>, MemoEntry, foldhash::fast::RandomState>,
}

#[derive(Debug)]
struct MemoEntry {
    value: Value,
    issues: Vec<(String, Rule, String)>,
}

impl MapMemo {
    fn slot(&mut self, mapper: &Mapper, slot: usize) -> &mut MemoSlot {
        if self.header_len != mapper.header_len || self.slots.is_empty() {
            self.header_len = mapper.header_len;
            self.slots = (0..FIELDS.len()).map(|_| MemoSlot::default()).collect();
        }
        &mut self.slots[slot]
    }
}

impl Mapper<'_> {
    /// Map one row, or list every rule it breaks.
    pub fn map(
        &self,
        row_number: u64,
        values: &[Option<String>],
    ) -> Result<MappedRow, Vec<RowIssue>> {
        self.map_row(None, row_number, values)
    }

    /// [`Mapper::map`], remembering what cells resolve to in `memo` (one per thread) for the
    /// rows after. Gives the same result as `map` for every row.
    pub fn map_with(
        &self,
        memo: &mut MapMemo,
        row_number: u64,
        values: &[Option<String>],
    ) -> Result<MappedRow, Vec<RowIssue>> {
        self.map_row(Some(memo), row_number, values)
    }

    fn map_row(
        &self,
        memo: Option<&mut MapMemo>,
        row_number: u64,
        values: &[Option<String>],
    ) -> Result<MappedRow, Vec<RowIssue>> {
        let mut cx = RowContext {
            mapper: self,
            row: row_number,
            values,
            issues: Vec::new(),
            memo,
        };
        let mut fields = vec![Value::Null; FIELDS.len()];
        for (i, f) in FIELDS.iter().enumerate() {
            if DERIVED_FIELDS.contains(&f.name) {
                continue;
            }
            fields[i] = cx.field_value(i, f.name, f.kind);
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
                        Rule::Required,
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

struct RowContext<'a, 'p> {
    mapper: &'a Mapper<'p>,
    row: u64,
    values: &'a [Option<String>],
    issues: Vec<RowIssue>,
    memo: Option<&'a mut MapMemo>,
}

impl<'a> RowContext<'a, '_> {
    fn column_name(&self, target: &str) -> String {
        self.mapper
            .columns
            .get(target)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| target.to_string())
    }

    fn issue(&mut self, target: &str, rule: Rule, message: String) {
        let column = self.column_name(target);
        self.issues.push(RowIssue {
            row: self.row,
            column,
            rule,
            message,
        });
    }

    /// The trimmed text for `target`, or its default; `None` when not recorded. Borrowed from
    /// the row and the profile, not from the context, so issues can be added while it is held.
    fn raw(&self, target: &str) -> Option<&'a str> {
        let (mapper, values) = (self.mapper, self.values);
        let from_cell = mapper
            .columns
            .get(target)
            .and_then(|(i, _)| values.get(*i))
            .and_then(|v| v.as_deref())
            .map(str::trim)
            .filter(|v| !mapper.profile.is_missing_cell(v));
        from_cell.or_else(|| mapper.profile.defaults.get(target).map(String::as_str))
    }

    /// The profile's value map applied to a token: `Some(None)` means mapped to "not recorded".
    fn mapped<'v>(&'v self, target: &str, token: &str) -> Option<Option<&'v str>> {
        let map = self.mapper.profile.values.get(target)?;
        map.get(normalised(token).as_ref())
            .map(|v| (!v.is_empty()).then_some(v.as_str()))
    }

    /// The value of canonical field `slot` (named `name`), from the memo when its cell was
    /// resolved before.
    fn field_value(&mut self, slot: usize, name: &str, kind: FieldKind) -> Value {
        let Some(memo) = self.memo.take() else {
            return self.resolve(name, kind);
        };
        let cell = self.mapper.cells.get(slot).copied().flatten();
        let cell = cell
            .and_then(|c| self.values.get(c))
            .and_then(|v| v.as_deref());
        let value = match cell {
            Some(text) if text.len() > MEMO_CELL_BYTES => self.resolve(name, kind),
            _ => {
                let memo_slot = memo.slot(self.mapper, slot);
                let known = match cell {
                    None => memo_slot.empty.as_ref(),
                    Some(text) => memo_slot.cells.get(text),
                };
                match known {
                    Some(entry) => {
                        for (column, rule, message) in &entry.issues {
                            self.issues.push(RowIssue {
                                row: self.row,
                                column: column.clone(),
                                rule: *rule,
                                message: message.clone(),
                            });
                        }
                        entry.value.clone()
                    }
                    None => {
                        let before = self.issues.len();
                        let value = self.resolve(name, kind);
                        let entry = MemoEntry {
                            value: value.clone(),
                            issues: self.issues[before..]
                                .iter()
                                .map(|i| (i.column.clone(), i.rule, i.message.clone()))
                                .collect(),
                        };
                        match cell {
                            None => memo_slot.empty = Some(entry),
                            Some(text) if memo_slot.cells.len() < MEMO_CELLS => {
                                memo_slot.cells.insert(text.into(), entry);
                            }
                            Some(_) => {}
                        }
                        value
                    }
                }
            }
        };
        self.memo = Some(memo);
        value
    }

    fn resolve(&mut self, name: &str, kind: FieldKind) -> Value {
        let Some(raw) = self.raw(name) else {
            return Value::Null;
        };
        match kind {
            FieldKind::Code { list } => match self.code(name, list, raw) {
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
            FieldKind::Country => match self.country(name, raw) {
                Some(c) => Value::Code(c),
                None => Value::Null,
            },
            FieldKind::Month => match self.date(name, false) {
                Some(d) => Value::Month(first_of_month(d)),
                None => Value::Null,
            },
            FieldKind::Flag => match self.flag(name, raw) {
                Some(b) => Value::Flag(b),
                None => Value::Null,
            },
            FieldKind::Id | FieldKind::Pseudonym | FieldKind::Timestamp => Value::Null,
        }
    }

    /// Resolve a code: the profile's map, else the stored name, else the label. `Some(None)` is
    /// an explicit "not recorded"; `None` is an error (already reported).
    fn code(&mut self, target: &str, list: &str, raw: &str) -> Option<Option<&'static str>> {
        let allowed = code_list(list);
        let found = match self.mapped(target, raw) {
            Some(None) => return Some(None),
            Some(Some(v)) => allowed.iter().find(|a| **a == v).copied(),
            None => {
                let token = normalised(raw);
                // A code itself (the usual case) has no space or dash to rewrite, so it is
                // found before the two rewritten forms are built.
                allowed
                    .iter()
                    .find(|a| **a == token.as_ref())
                    .copied()
                    .or_else(|| {
                        let dashed = token.replace(['—', '–'], "-").replace("--", "-");
                        let snake = token.replace([' ', '-'], "_");
                        allowed
                            .iter()
                            .find(|a| **a == token.as_ref() || **a == dashed || **a == snake)
                            .copied()
                    })
            }
        };
        if found.is_none() {
            let message = format!("not a known {list} code; accepted: {}", allowed.join(", "));
            self.issue(target, Rule::UnknownCode, message);
            return None;
        }
        Some(found)
    }

    fn country(&mut self, target: &str, raw: &str) -> Option<&'static str> {
        let token = normalised(raw);
        if self
            .mapper
            .profile
            .unknown_country
            .iter()
            .any(|u| *u == *token)
        {
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
                    Rule::InvalidCountry,
                    "not an ISO 3166-1 alpha-2 or alpha-3 code or English country name".into(),
                );
                None
            }
        }
    }

    fn flag(&mut self, target: &str, raw: &str) -> Option<bool> {
        let token = match self.mapped(target, raw) {
            Some(None) => return None,
            Some(Some(v)) => std::borrow::Cow::Borrowed(v),
            None => normalised(raw),
        };
        let parsed = parse_flag(&token);
        match parsed {
            Some(b) => Some(b),
            None => {
                self.issue(
                    target,
                    Rule::InvalidFlag,
                    "expected yes/no, true/false, 1/0 or да/нет".into(),
                );
                None
            }
        }
    }

    /// Parse a date target with the profile's formats. `identifier` dates (birth dates) are
    /// never echoed, like every value.
    fn date(&mut self, target: &str, identifier: bool) -> Option<NaiveDate> {
        let raw = self.raw(target)?;
        match parse_date(raw, &self.mapper.profile.date_formats) {
            Some(d) if d > self.mapper.today => {
                self.issue(
                    target,
                    Rule::DateInFuture,
                    "the date is after the day of ingest".into(),
                );
                None
            }
            Some(d) if !identifier && d < ymd(EARLIEST) => {
                self.issue(
                    target,
                    Rule::DateTooEarly,
                    "dates before 1990 are not accepted".into(),
                );
                None
            }
            Some(d) if identifier && d.year() < 1900 => {
                self.issue(
                    target,
                    Rule::DateTooEarly,
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
                    Rule::InvalidDate,
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
                Rule::InvalidAge,
                format!("expected a whole number of years from 0 to {max}"),
            );
        }
        parsed.map(|v| v as u32)
    }

    fn apply_flags(&mut self, fields: &mut [Value]) {
        // target -> (codes set, any flag recorded)
        let mut seen: Vec<(String, Vec<&'static str>, bool)> = Vec::new();
        let mapper = self.mapper;
        for (col, name, target, code) in &mapper.flags {
            let Some(raw) = self.values.get(*col).and_then(|v| v.as_deref()) else {
                continue;
            };
            let token = normalised(raw);
            if self.mapper.profile.is_missing(&token) {
                continue;
            }
            let value = match parse_flag(&token) {
                Some(v) => v,
                None => {
                    self.issues.push(RowIssue {
                        row: self.row,
                        column: name.clone(),
                        rule: Rule::InvalidFlag,
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
        if let Some(year) = self.raw("registration_year") {
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
                    Rule::InvalidYear,
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
                Rule::Required,
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
                Rule::BornAfterRegistration,
                "the birth date is after the registration date".into(),
            );
        }
        if let (Some(c), Some(r)) = (month("case_closed_month"), registration)
            && c < r
        {
            self.issue(
                "case_closed_month",
                Rule::ClosedBeforeRegistration,
                "the case closes before it was registered".into(),
            );
        }
        if fields[idx("shelter_accepted")] == Value::Flag(true)
            && fields[idx("shelter_offered")] == Value::Flag(false)
        {
            self.issue(
                "shelter_accepted",
                Rule::AcceptedWithoutOffer,
                "shelter accepted but recorded as not offered".into(),
            );
        }
    }
}

/// The names of a code list of the canonical record, built once.
fn code_list(list: &str) -> &'static [&'static str] {
    static LISTS: std::sync::OnceLock<Vec<(&'static str, Vec<&'static str>)>> =
        std::sync::OnceLock::new();
    let lists = LISTS.get_or_init(|| {
        let mut lists: Vec<(&'static str, Vec<&'static str>)> = FIELDS
            .iter()
            .filter_map(|f| match f.kind {
                FieldKind::Code { list } | FieldKind::CodeSet { list } => Some(list),
                _ => None,
            })
            .map(|list| {
                let names = ctstats_schemas::code_list_names(list).unwrap_or_default();
                (list, names)
            })
            .collect();
        lists.sort();
        lists.dedup();
        lists
    });
    lists
        .iter()
        .find(|(name, _)| *name == list)
        .map_or(&[], |(_, names)| names.as_slice())
}

fn sort_codes(list: &str, mut codes: Vec<&'static str>) -> Vec<&'static str> {
    let order = code_list(list);
    codes.sort_by_key(|c| order.iter().position(|o| o == c));
    codes.dedup();
    codes
}

fn ymd((y, m, d): (i32, u32, u32)) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid constant date")
}

/// A strftime date format as an NGO officer reads it: `%d.%m.%Y` -> `DD.MM.YYYY`.
fn readable_format(format: &str) -> String {
    format
        .replace("%Y", "YYYY")
        .replace("%m", "MM")
        .replace("%d", "DD")
        .replace("%y", "YY")
}
