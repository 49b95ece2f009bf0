//! User profiles: a TOML file that `extends` a built-in profile.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{FlagColumn, Profile, ProfileError, builtin, is_target, normalise_token};

impl Profile {
    /// Parse a user profile. `origin` names it in errors.
    pub fn from_toml(origin: &str, text: &str) -> Result<Profile, ProfileError> {
        let user: UserProfile = toml::from_str(text).map_err(|e| ProfileError::Toml {
            path: origin.into(),
            message: e.message().to_string(),
        })?;
        let base = user.extends.as_deref().unwrap_or("canonical");
        let mut profile =
            builtin::by_name(base).ok_or_else(|| ProfileError::Unknown(base.into()))?;
        profile.name = user.name.unwrap_or_else(|| origin.to_string());
        let invalid = |message: String| ProfileError::Invalid {
            profile: origin.into(),
            message,
        };
        for (target, cols) in user.columns {
            if !is_target(&target) {
                return Err(invalid(format!(
                    "[columns] names unknown target {target:?}"
                )));
            }
            let mut cols = cols.into_vec();
            let entry = profile.columns.entry(target).or_default();
            cols.append(entry);
            *entry = cols;
        }
        for (target, map) in user.values {
            if !is_target(&target) {
                return Err(invalid(format!("[values.{target}] names unknown target")));
            }
            let entry = profile.values.entry(target).or_default();
            for (from, to) in map {
                entry.insert(normalise_token(&from), to);
            }
        }
        for (column, spec) in user.flags {
            let (target, code) = spec
                .split_once(':')
                .ok_or_else(|| invalid(format!("[flags] {column:?} must be \"target:code\"")))?;
            if !is_target(target) {
                return Err(invalid(format!(
                    "[flags] {column:?} names unknown target {target:?}"
                )));
            }
            profile.flags.push(FlagColumn {
                column,
                target: target.into(),
                code: code.into(),
            });
        }
        for (target, value) in user.defaults {
            if !is_target(&target) {
                return Err(invalid(format!(
                    "[defaults] names unknown target {target:?}"
                )));
            }
            profile.defaults.insert(target, value);
        }
        if let Some(formats) = user.date_formats {
            // User formats are tried first.
            let mut formats = formats;
            formats.append(&mut profile.date_formats);
            profile.date_formats = formats;
        }
        profile
            .missing
            .extend(user.missing.iter().map(|m| normalise_token(m)));
        if let Some(sep) = user.list_separator {
            let mut chars = sep.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => profile.list_separator = c,
                _ => return Err(invalid("list_separator must be one character".into())),
            }
        }
        if let Some(from_row) = user.case_id_from_row {
            profile.case_id_from_row = from_row;
        }
        profile.validate().map_err(invalid)?;
        Ok(profile)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserProfile {
    name: Option<String>,
    extends: Option<String>,
    #[serde(default)]
    columns: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    values: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    flags: BTreeMap<String, String>,
    #[serde(default)]
    defaults: BTreeMap<String, String>,
    date_formats: Option<Vec<String>>,
    #[serde(default)]
    missing: Vec<String>,
    list_separator: Option<String>,
    case_id_from_row: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}
