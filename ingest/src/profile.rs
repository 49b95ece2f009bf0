//! Import profiles: how an NGO's columns and codes map to the canonical record.
//!
//! A profile names, for each target, the source columns that may feed it (matched by name,
//! ignoring case and surrounding space), value maps from the NGO's codes to canonical codes, flag
//! columns that each add one code to a list field, the date formats and the tokens that mean
//! "missing". Built in: `canonical` (our own template), `htcds` (HTCDS 2.0 field names as in its
//! toolkit) and `ctdc` (the CTDC Global Dataset export). A user profile is a TOML file that
//! `extends` one of these.
//!
//! Every profile also accepts the canonical target names as column names, so an NGO can always
//! add a column the standard it follows lacks (HTCDS has no shelter fields, for instance).

mod builtin;
#[cfg(test)]
mod tests;
mod user;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ctstats_schemas::FIELDS;

pub use builtin::{canonical, ctdc, htcds};

/// Targets a source column can feed besides canonical fields: identity inputs (dropped after
/// pseudonymisation) and inputs that are generalised into canonical fields.
pub const INPUT_TARGETS: &[(&str, &str)] = &[
    (
        "local_case_id",
        "The organisation's own case id; with the organisation it makes record_key.",
    ),
    (
        "first_name",
        "Identity input: given name. Hashed into person_key, never stored.",
    ),
    (
        "last_name",
        "Identity input: family name. Hashed into person_key, never stored.",
    ),
    (
        "full_name",
        "Identity input: whole name in one cell. Hashed into person_key, never stored.",
    ),
    (
        "birth_date",
        "Identity input: birth date. Generalised to age_band and minor flags, never stored.",
    ),
    (
        "document_number",
        "Identity input: identity document number. Hashed into person_key, never stored.",
    ),
    (
        "age",
        "Age in whole years at registration. Generalised to age_band.",
    ),
    (
        "age_at_exploitation",
        "Age in whole years when exploitation began. Generalised to minor_at_exploitation.",
    ),
    (
        "registration_year",
        "Year of registration when no date is recorded (CTDC); placed in January.",
    ),
];

/// Canonical fields that ctstats sets itself: no source column may feed them.
pub const DERIVED_FIELDS: &[&str] = &[
    "schema_version",
    "batch_id",
    "submitting_org",
    "reporting_mission",
    "record_key",
    "person_key",
    "person_link_quality",
    "ingested_at",
];

/// Columns that identify a person and are recognised only to be dropped; listed so the report
/// can say they were seen and discarded.
pub const DROPPED_COLUMNS: &[&str] = &[
    "phone",
    "mobile",
    "email",
    "e-mail",
    "address",
    "street",
    "notes",
    "note",
    "comment",
    "comments",
    "prs_email",
    "prs_homephone",
    "prs_mobilephone",
    "prs_mailingstreet",
    "prs_mailingcity",
    "телефон",
    "адрес",
    "примечание",
    "комментарий",
];

/// Whether `target` is something a source column may feed.
pub fn is_target(target: &str) -> bool {
    INPUT_TARGETS.iter().any(|(t, _)| *t == target)
        || FIELDS
            .iter()
            .any(|f| f.name == target && !DERIVED_FIELDS.contains(&f.name))
}

/// A resolved profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// Target -> accepted source column names, in order of preference.
    pub columns: BTreeMap<String, Vec<String>>,
    /// Target -> (normalised source value -> canonical value). An empty canonical value means
    /// "not recorded".
    pub values: BTreeMap<String, HashMap<String, String>>,
    /// Flag columns: source column -> (list or code target, code) set when the flag is true.
    pub flags: Vec<FlagColumn>,
    pub date_formats: Vec<String>,
    /// Tokens (normalised) that mean "not recorded" in any column.
    pub missing: Vec<String>,
    /// Tokens (normalised) that mean "unknown country".
    pub unknown_country: Vec<String>,
    pub list_separator: char,
    /// Target -> value used when the row has none.
    pub defaults: BTreeMap<String, String>,
    /// Whether the source has no case ids, so the row number within the file serves as one
    /// (CTDC exports are de-identified and carry none).
    pub case_id_from_row: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagColumn {
    pub column: String,
    pub target: String,
    pub code: String,
}

/// Problems with a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "unknown profile {0:?}: built in are canonical, htcds and ctdc, or give a path to a .toml profile"
    )]
    Unknown(String),
    #[error("cannot read profile {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("profile {path} is not valid TOML: {message}")]
    Toml { path: String, message: String },
    #[error("profile {profile}: {message}")]
    Invalid { profile: String, message: String },
}

/// Normalise a header name or a code for matching: trimmed, lower case, inner whitespace folded.
pub fn normalise_token(s: &str) -> String {
    normalised(s).into_owned()
}

/// [`normalise_token`], borrowing `s` when it is normalised already (plain ASCII without capitals
/// or stray spaces: most cells), which the mapper meets for every cell of every row.
pub fn normalised(s: &str) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    let plain = bytes.first() != Some(&b' ')
        && bytes.last() != Some(&b' ')
        && !bytes.windows(2).any(|w| w == b"  ")
        && bytes.iter().all(|&b| {
            b.is_ascii() && !b.is_ascii_uppercase() && (b == b' ' || !(b as char).is_whitespace())
        });
    if plain {
        return Cow::Borrowed(s);
    }
    let lower = s.trim().to_lowercase();
    Cow::Owned(lower.split_whitespace().collect::<Vec<_>>().join(" "))
}

impl Profile {
    /// A built-in profile by name, or a TOML profile from a path.
    pub fn load(name_or_path: &str) -> Result<Profile, ProfileError> {
        if let Some(profile) = builtin::by_name(name_or_path) {
            return Ok(profile);
        }
        match name_or_path {
            other if other.ends_with(".toml") || Path::new(other).exists() => {
                let text = std::fs::read_to_string(other).map_err(|source| ProfileError::Read {
                    path: other.into(),
                    source,
                })?;
                Profile::from_toml(other, &text)
            }
            other => Err(ProfileError::Unknown(other.into())),
        }
    }

    /// Check that every value map and default names a canonical code.
    fn validate(&self) -> Result<(), String> {
        for (target, map) in &self.values {
            if let Some(allowed) = ctstats_schemas::field(target).and_then(|f| f.allowed_values()) {
                for (from, to) in map {
                    if !to.is_empty() && !allowed.contains(&to.as_str()) {
                        return Err(format!(
                            "[values.{target}] maps {from:?} to {to:?}, which is not one of: {}",
                            allowed.join(", ")
                        ));
                    }
                }
            }
        }
        for flag in &self.flags {
            if let Some(allowed) =
                ctstats_schemas::field(&flag.target).and_then(|f| f.allowed_values())
                && !allowed.contains(&flag.code.as_str())
            {
                return Err(format!(
                    "flag column {:?} sets unknown code {:?}",
                    flag.column, flag.code
                ));
            }
        }
        Ok(())
    }

    /// Accepted source column names for `target`: the profile's own, then the target's name.
    pub fn column_names(&self, target: &str) -> Vec<String> {
        let mut names: Vec<String> = self.columns.get(target).cloned().unwrap_or_default();
        names.push(target.to_string());
        names
    }

    /// Whether a normalised token means "not recorded".
    pub fn is_missing(&self, normalised: &str) -> bool {
        normalised.is_empty() || self.missing.iter().any(|m| m == normalised)
    }

    /// `is_missing(&normalised(cell))`, without building the normalised form: every cell of a
    /// file is asked this, most of them names and codes that are not a missing token.
    pub fn is_missing_cell(&self, cell: &str) -> bool {
        let cell = cell.trim();
        if cell.is_empty() {
            return true;
        }
        // `str::to_lowercase` lowers a word-final capital sigma to 'ς', one char at a time
        // cannot tell: take the building path for it.
        if cell.contains('Σ') {
            return self.is_missing(&normalised(cell));
        }
        self.missing.iter().any(|m| normalises_to(cell, m))
    }
}

/// Whether `normalised(cell) == token`, for a trimmed, non-empty `cell` without 'Σ': lower case,
/// each run of whitespace one space, compared as it goes.
fn normalises_to(cell: &str, token: &str) -> bool {
    let mut want = token.chars();
    let mut space = false;
    for c in cell.chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if std::mem::take(&mut space) && want.next() != Some(' ') {
            return false;
        }
        for lower in c.to_lowercase() {
            if want.next() != Some(lower) {
                return false;
            }
        }
    }
    want.next().is_none()
}
