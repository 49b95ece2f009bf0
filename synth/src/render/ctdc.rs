//! The columns of the CTDC Global Dataset v6 export (ingest's `ctdc` profile): one 0/1 flag
//! column per code, no identities, year of registration only.

use std::sync::OnceLock;

use chrono::Datelike;
use ctstats_schemas::codes::{AgeBand, CodeList};

use super::spelling::alpha2;
use super::{Renderer, Row};
use crate::data::{self, Groups};
use crate::model::{Episode, Person, Recorded};
use crate::rng::Rng;

const FLAG_COLUMNS: &str = include_str!("../../data/ctdc_flags.tsv");

/// A CTDC flag column: its name, the code that sets it, the label of the code.
type FlagColumn = (&'static str, &'static str, &'static str);

/// The flag columns that spell `field`, in file order (`data/ctdc_flags.tsv`).
fn flag_columns(field: &str) -> &'static [FlagColumn] {
    static TABLE: OnceLock<Groups<FlagColumn>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            Groups::new(
                data::rows(FLAG_COLUMNS)
                    .map(|[field, column, code, label]| (field, (column, code, label))),
            )
        })
        .get(field)
}

impl Renderer<'_> {
    /// A CTDC 0/1/-99 flag; exports through pandas write `1.0`, `0.0`, `-99.0`.
    fn ctdc_flag(&self, value: Option<bool>) -> Option<String> {
        let float = self.org.number.is_multiple_of(2);
        let text = match (value, float) {
            (Some(true), false) => "1",
            (Some(false), false) => "0",
            (None, false) => "-99",
            (Some(true), true) => "1.0",
            (Some(false), true) => "0.0",
            (None, true) => "-99.0",
        };
        Some(text.to_string())
    }

    /// Flag columns, one per (column, code), set when `codes` holds the code; all `-99` when
    /// `codes` is not recorded. Returns the labels of the set flags, sorted, when recorded.
    fn ctdc_flags(
        &self,
        row: &mut Row,
        columns: &[FlagColumn],
        codes: Option<&[&str]>,
    ) -> Option<Vec<&'static str>> {
        let mut labels = Vec::new();
        for (column, code, label) in columns {
            let set = codes.map(|c| c.contains(code));
            if set == Some(true) {
                labels.push(*label);
            }
            row.put(column, self.ctdc_flag(set));
        }
        labels.sort_unstable();
        labels.dedup();
        codes.map(|_| labels)
    }

    pub(super) fn ctdc(&self, p: &Person, e: &Episode, r: &mut Rng) -> Row {
        let mut row = Row::default();
        let text = |s: &str| Some(s.to_string());
        let missing = || text("-99");
        row.put(
            "yearOfRegistration",
            Some(e.registration.year().to_string()),
        );
        let source = if e.hotline {
            "Hotline"
        } else {
            "Case management"
        };
        row.put("datasource", text(source));
        let gender = match (e.gender_recorded, p.female) {
            (true, true) => text("Female"),
            (true, false) => text("Male"),
            (false, _) if r.chance(0.3) => text("Unknown"),
            (false, _) => missing(),
        };
        row.put("gender", gender);
        let majority = |age: u32| text(if age < 18 { "Minor" } else { "Adult" });
        let (band, status) = if e.age_recorded {
            let band = AgeBand::of_age(e.age).name().replace('-', "--");
            (Some(band), majority(e.age))
        } else {
            (missing(), missing())
        };
        row.put("ageBroad", band);
        row.put("majorityStatus", status.clone());
        row.put(
            "majorityStatusAtExploit",
            e.age_at_exploitation.map_or_else(missing, majority),
        );
        row.put("majorityEntry", status);
        let citizenship = match e.citizenship {
            Recorded::Known => text(alpha2(p.citizenship)),
            // Real exports also write `0` (one NGO in two here); no extra draw, so the
            // generated values of every other column stay as they were.
            Recorded::Unknown if r.chance(0.5) => text("ZZ"),
            Recorded::Unknown if self.org.number.is_multiple_of(2) => text("0"),
            Recorded::Unknown => text("00"),
            Recorded::Missing => missing(),
        };
        row.put("citizenship", citizenship);
        let concatenated = |labels: Option<Vec<&str>>| match labels {
            Some(l) if l.is_empty() => text("Not Specified"),
            Some(l) => Some(l.join(";")),
            None => text("Not Specified"),
        };
        let means = self.ctdc_flags(
            &mut row,
            flag_columns("means_of_control"),
            e.means_of_control.as_deref(),
        );
        row.put(
            "meansOfControlNotSpecified",
            self.ctdc_flag(Some(means.is_none())),
        );
        row.put("meansOfControlConcatenated", concatenated(means));

        let types = e.exploitation_types.as_deref();
        let has = |code: &str| types.map(|t| t.contains(&code));
        let labels = self.ctdc_flags(&mut row, flag_columns("exploitation_type"), types);
        let both = has("forced_labour")
            .zip(has("sexual_exploitation"))
            .map(|(a, b)| a && b);
        row.put("isSexAndLabour", self.ctdc_flag(both));
        row.put("isForcedMarriage", self.ctdc_flag(has("forced_marriage")));
        row.put("isForcedMilitary", self.ctdc_flag(types.map(|_| false)));
        row.put("isOrganRemoval", self.ctdc_flag(types.map(|_| false)));
        // Forced marriage is labelled `Other` in the concatenation.
        let labels = labels.map(|mut l| {
            if has("forced_marriage") == Some(true) && !l.contains(&"Other") {
                l.push("Other");
                l.sort_unstable();
            }
            l.join(";")
        });
        row.put("typeOfExploitConcatenated", labels.or_else(missing));

        let labour = types.is_some_and(|t| {
            t.iter().any(|t| {
                matches!(
                    *t,
                    "forced_labour" | "forced_begging" | "forced_criminality"
                )
            })
        });
        let sectors: Option<Vec<&str>> = labour.then(|| {
            let mut s: Vec<&str> = e.labour_sectors.clone().unwrap_or_default();
            if has("forced_begging") == Some(true) {
                s.push("begging");
            }
            if has("forced_criminality") == Some(true) {
                s.push("illicit_activities");
            }
            s
        });
        let labour_labels =
            self.ctdc_flags(&mut row, flag_columns("labour_sector"), sectors.as_deref());
        let unspecified = sectors.as_ref().map(|s| s.is_empty());
        row.put("typeOfLabourNotSpecified", self.ctdc_flag(unspecified));
        let labour_labels = match labour_labels {
            Some(l) if l.is_empty() => text("Not Specified"),
            Some(l) => Some(l.join(";")),
            None => missing(),
        };
        row.put("typeOfLabourConcatenated", labour_labels);

        let sexual = has("sexual_exploitation") == Some(true);
        let sex_type = sexual
            .then(|| r.weighted(&[("prostitution", 85), ("pornography", 10), ("private", 5)]));
        let sex_types = sex_type.map(|t| vec![t]);
        let sex_labels = self.ctdc_flags(&mut row, flag_columns("sex_type"), sex_types.as_deref());
        row.put(
            "typeOfSexConcatenated",
            sex_labels.map_or_else(missing, |l| Some(l.join(";"))),
        );
        row.put("isAbduction", self.ctdc_flag(e.abduction));
        let relation = e.recruiter_relation.map(|rel| match rel {
            "intimate_partner" => ("intimate_partner", "Intimate Partner"),
            "friend" | "acquaintance" => ("friend", "Friend/Acquaintance"),
            "family" => ("family", "Family/Relative"),
            _ => ("other", "Other"),
        });
        row.put(
            "RecruiterRelationship",
            relation.map_or_else(missing, |(_, label)| text(label)),
        );
        let exploitation = match e.country_of_exploitation {
            Some(c) => text(alpha2(c)),
            None if r.chance(0.2) => text("ZZ"),
            None => missing(),
        };
        row.put("CountryofExploitation", exploitation);
        let code = relation.map(|(code, _)| code);
        for (column, c) in [
            ("recruiterRelationIntimatePartner", "intimate_partner"),
            ("recruiterRelationFriend", "friend"),
            ("recruiterRelationFamily", "family"),
            ("recruiterRelationOther", "other"),
        ] {
            row.put(column, self.ctdc_flag(code.map(|x| x == c)));
        }
        row.put(
            "recruiterRelationUnknown",
            self.ctdc_flag(Some(code.is_none())),
        );
        row
    }
}
