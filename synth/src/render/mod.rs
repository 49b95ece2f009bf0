//! Episodes as rows of an NGO file: column names and value spellings of each import profile
//! (ingest's `canonical`, `htcds` and `ctdc`), the NGO's habits (script, date format, yes/no
//! words), and the injected faults.
//!
//! Each profile's columns are in a module of their own; `spelling` holds the messy ways an NGO
//! writes dates, countries and documents.

mod canonical;
mod ctdc;
mod htcds;
mod spelling;
#[cfg(test)]
mod tests;

use chrono::Datelike;

use crate::model::{Ctx, Document, Episode, Fault, Org, Person};
use crate::names;
use crate::rng::{self, Rng};
use crate::{FileFormat, ProfileKind, TextEncoding};
use spelling::{DateStyle, alpha2, cyrillic_document, dialling_code, format_ymd, russian_name};

/// One row: column names (the same, in the same order, for every row of a file) and cells.
#[derive(Debug, Default)]
pub(crate) struct Row {
    pub names: Vec<&'static str>,
    pub values: Vec<Option<String>>,
}

impl Row {
    fn put(&mut self, name: &'static str, value: Option<String>) {
        self.names.push(name);
        self.values.push(value);
    }

    fn set(&mut self, name: &str, value: Option<String>) {
        let at = self
            .names
            .iter()
            .position(|n| *n == name)
            .expect("fault column is in the row");
        self.values[at] = value;
    }
}

/// A rendered row and, when it carries a fault, the column and rule ingest will report.
#[derive(Debug)]
pub(crate) struct Rendered {
    pub row: Row,
    pub fault: Option<(&'static str, &'static str)>,
}

/// Renders the rows of one organisation's file.
#[derive(Debug)]
pub(crate) struct Renderer<'a> {
    ctx: &'a Ctx<'a>,
    org: &'a Org,
    windows1251: bool,
    jsonl: bool,
}

impl<'a> Renderer<'a> {
    pub(crate) fn new(ctx: &'a Ctx<'a>, org: &'a Org) -> Renderer<'a> {
        Renderer {
            ctx,
            org,
            windows1251: org.format == FileFormat::Csv
                && ctx.config.encoding == TextEncoding::Windows1251,
            jsonl: org.format == FileFormat::Jsonl,
        }
    }

    /// Episode `j` of `person`, as row `seq` (from 1) of the file.
    pub(crate) fn render(&self, person: &Person, j: usize, seq: u64) -> Rendered {
        let e = &person.episodes[j];
        let mut r = Rng::new(
            self.ctx.seed(),
            u64::from(person.index),
            j as u64 + 1,
            rng::RENDER,
        );
        let mut row = match self.ctx.profile() {
            ProfileKind::Canonical => self.canonical(person, e, seq, &mut r),
            ProfileKind::Htcds => self.htcds(person, e, seq, &mut r),
            ProfileKind::Ctdc => self.ctdc(person, e, &mut r),
        };
        let fault = e.fault.map(|fault| {
            let column = self.inject(&mut row, fault, person, e, &mut r);
            (column, fault.rule())
        });
        Rendered { row, fault }
    }

    /// A header name in the NGO's language.
    fn h(&self, russian: &'static str, english: &'static str) -> &'static str {
        if self.org.cyrillic { russian } else { english }
    }

    fn default_date_style(&self) -> DateStyle {
        match self.ctx.profile() {
            ProfileKind::Canonical if self.org.cyrillic => DateStyle::Dotted,
            _ => DateStyle::Iso,
        }
    }

    fn date_style(&self, r: &mut Rng) -> DateStyle {
        if self.ctx.profile() == ProfileKind::Canonical && r.chance(0.05) {
            DateStyle::Slashed
        } else {
            self.default_date_style()
        }
    }

    /// "Not recorded": an empty cell, or in Russian-language registers sometimes `н/д`.
    fn missing(&self, r: &mut Rng) -> Option<String> {
        (self.org.cyrillic && self.ctx.profile() == ProfileKind::Canonical && r.chance(0.1))
            .then(|| "н/д".to_string())
    }

    fn or_missing(&self, value: Option<String>, r: &mut Rng) -> Option<String> {
        match value {
            Some(v) => Some(v),
            None => self.missing(r),
        }
    }

    fn names(&self, p: &Person, e: &Episode, r: &mut Rng) -> (String, String) {
        let given = names::given(p.female)[usize::from(p.given)];
        let family = names::family()[usize::from(p.family)];
        let (g, f) = match (e.cyrillic, p.female) {
            (true, true) => (given.0, family.2),
            (true, false) => (given.0, family.0),
            (false, true) => (given.1, family.3),
            (false, false) => (given.1, family.1),
        };
        let (mut g, mut f) = if self.windows1251 {
            (names::russianise(g), names::russianise(f))
        } else {
            (g.to_string(), f.to_string())
        };
        if r.chance(0.03) {
            f = f.to_uppercase();
        }
        if r.chance(0.01) {
            g = format!(" {g}");
        }
        (g, f)
    }

    fn document(&self, d: &Document, e: &Episode, r: &mut Rng) -> String {
        let latin = d.latin();
        let text = if e.cyrillic && r.chance(0.3) {
            cyrillic_document(&latin)
        } else {
            latin
        };
        match r.below(10) {
            0 => {
                let split = text
                    .char_indices()
                    .find(|(_, c)| c.is_ascii_digit())
                    .map_or(0, |(i, _)| i);
                format!("{} {}", &text[..split], &text[split..])
            }
            1 => text.to_lowercase(),
            _ => text,
        }
    }

    fn country(&self, alpha3: &'static str, r: &mut Rng) -> String {
        match self.ctx.profile() {
            ProfileKind::Canonical if self.org.cyrillic => match russian_name(alpha3) {
                Some(name) if r.chance(0.7) => name.to_string(),
                _ => alpha3.to_string(),
            },
            ProfileKind::Htcds if r.chance(0.7) => alpha2(alpha3).to_string(),
            ProfileKind::Ctdc => alpha2(alpha3).to_string(),
            _ if r.chance(0.5) => alpha2(alpha3).to_string(),
            _ => alpha3.to_string(),
        }
    }

    fn flag(&self, value: Option<bool>, r: &mut Rng) -> Option<String> {
        let Some(v) = value else {
            return self.missing(r);
        };
        let text = match self.ctx.profile() {
            ProfileKind::Htcds => {
                if v {
                    "true"
                } else {
                    "false"
                }
            }
            _ if r.chance(0.1) => {
                if v {
                    "1"
                } else {
                    "0"
                }
            }
            _ if self.org.cyrillic => {
                if v {
                    "да"
                } else {
                    "нет"
                }
            }
            _ => {
                if v {
                    "yes"
                } else {
                    "no"
                }
            }
        };
        Some(text.to_string())
    }

    fn phone(&self, r: &mut Rng) -> Option<String> {
        r.recorded(0.3, |r| {
            format!(
                "{} {} {}",
                dialling_code(self.org.mission),
                r.range(100, 999),
                r.range(100_000, 999_999)
            )
        })
    }

    /// The flags of the legal process, in the columns the canonical and HTCDS files share.
    fn put_legal_flags(&self, row: &mut Row, e: &Episode, r: &mut Rng) {
        row.put(
            "reported_to_law_enforcement",
            self.flag(e.reported_to_law_enforcement, r),
        );
        row.put(
            "cooperated_with_investigation",
            self.flag(e.cooperated_with_investigation, r),
        );
        row.put(
            "participated_in_trial",
            self.flag(e.participated_in_trial, r),
        );
    }

    /// Replace one cell with the fault; returns the column as the file's header names it.
    fn inject(
        &self,
        row: &mut Row,
        fault: Fault,
        p: &Person,
        e: &Episode,
        r: &mut Rng,
    ) -> &'static str {
        let profile = self.ctx.profile();
        let registration = match profile {
            ProfileKind::Htcds => "cas_IncomingReferralDate",
            _ => "registration_date",
        };
        let gender = match profile {
            ProfileKind::Canonical => self.h("Пол", "gender"),
            ProfileKind::Htcds => "prs_Gender",
            ProfileKind::Ctdc => "gender",
        };
        let style = self.default_date_style();
        let year = e.registration.year();
        let (column, value) = match fault {
            Fault::ImpossibleDate => {
                let (d, m) = *r.pick(&[(31, 2), (30, 2), (31, 4), (31, 6), (31, 9), (31, 11)]);
                (registration, Some(format_ymd(year, m, d, style)))
            }
            Fault::FutureDate => {
                let (m, d) = (e.registration.month(), e.registration.day().min(28));
                (registration, Some(format_ymd(2099, m, d, style)))
            }
            Fault::UnknownGender => {
                let choices: &[&str] = match profile {
                    ProfileKind::Canonical => &["X", "Ж/М", "other", "жен."],
                    ProfileKind::Htcds => &["X", "NotSpecified", "Fem"],
                    ProfileKind::Ctdc => &["X", "F", "M"],
                };
                (gender, Some(r.pick(choices).to_string()))
            }
            Fault::StrayEncoding => {
                // UTF-8 `ж`/`м` read as Windows-1252 (or, in a Windows-1251 file, as 1251).
                let text = match (self.windows1251, p.female) {
                    (false, true) => "Ð¶",
                    (false, false) => "Ð¼",
                    (true, true) => "Р¶",
                    (true, false) => "Рј",
                };
                (gender, Some(text.to_string()))
            }
            Fault::MissingCaseId => {
                let column = match profile {
                    ProfileKind::Htcds => "cas_CaseNumber",
                    _ => "case_id",
                };
                // JSON Lines writes the key with an empty value, so the column is known.
                (column, self.jsonl.then(String::new))
            }
            Fault::UnknownCountry => {
                let column = match profile {
                    ProfileKind::Ctdc => "CountryofExploitation",
                    _ => "country_of_exploitation",
                };
                (column, Some("QQ".to_string()))
            }
            Fault::BadFlag => {
                let column = match profile {
                    ProfileKind::Ctdc => "isAbduction",
                    _ => "shelter_offered",
                };
                (column, Some("maybe".to_string()))
            }
        };
        row.set(column, value);
        column
    }
}
