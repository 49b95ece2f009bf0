//! The distributions persons and episodes are drawn from.

use std::sync::OnceLock;

use crate::data::{self, Groups};

/// Exploitation mixes of the primary type (canonical codes), per citizenship group.
pub(super) const LABOUR_DOMINANT: &[(&str, u32)] = &[
    ("forced_labour", 70),
    ("sexual_exploitation", 20),
    ("forced_marriage", 3),
    ("forced_begging", 3),
    ("forced_criminality", 2),
    ("other", 2),
];
pub(super) const SEX_DOMINANT: &[(&str, u32)] = &[
    ("sexual_exploitation", 60),
    ("forced_labour", 30),
    ("forced_begging", 4),
    ("forced_marriage", 2),
    ("forced_criminality", 2),
    ("other", 2),
];

pub(super) fn female_share(primary: &str) -> f64 {
    match primary {
        "sexual_exploitation" => 0.92,
        "forced_labour" => 0.3,
        "forced_marriage" => 1.0,
        _ => 0.5,
    }
}

pub(super) fn foreign_pool(mission: &str) -> &'static [(&'static str, u32)] {
    match mission {
        "KAZ" => &[("UZB", 50), ("KGZ", 30), ("TJK", 20)],
        "KGZ" => &[("UZB", 50), ("TJK", 30), ("KAZ", 20)],
        "TJK" => &[("UZB", 50), ("AFG", 30), ("KGZ", 20)],
        "UZB" => &[("TJK", 50), ("KGZ", 30), ("KAZ", 20)],
        "MDA" => &[("UKR", 70), ("RUS", 30)],
        "UKR" => &[("MDA", 50), ("BLR", 30), ("RUS", 20)],
        _ => &[("UZB", 30), ("UKR", 30), ("MDA", 20), ("KGZ", 20)],
    }
}

/// Countries of exploitation by citizenship group and type; `HOME` is the person's own country.
pub(super) const HOME: &str = "home";
pub(super) const DESTINATIONS_CA_LABOUR: &[(&str, u32)] = &[
    ("RUS", 50),
    ("KAZ", 20),
    ("TUR", 8),
    ("KOR", 7),
    ("ARE", 5),
    (HOME, 10),
];
pub(super) const DESTINATIONS_CA_SEX: &[(&str, u32)] = &[
    ("TUR", 25),
    ("ARE", 25),
    ("RUS", 20),
    ("KAZ", 10),
    ("KOR", 5),
    (HOME, 15),
];
pub(super) const DESTINATIONS_EE_LABOUR: &[(&str, u32)] = &[
    ("RUS", 45),
    ("POL", 20),
    ("DEU", 10),
    ("ISR", 5),
    ("TUR", 10),
    (HOME, 10),
];
pub(super) const DESTINATIONS_EE_SEX: &[(&str, u32)] = &[
    ("TUR", 25),
    ("ARE", 15),
    ("RUS", 15),
    ("ISR", 10),
    ("POL", 10),
    ("DEU", 10),
    (HOME, 15),
];
pub(super) const DESTINATIONS_OTHER: &[(&str, u32)] = &[("RUS", 40), ("KAZ", 20), (HOME, 40)];

const CODE_WEIGHTS: &str = include_str!("../../data/code_weights.tsv");

/// The weights of the codes of code list `list` (`labour_sector`, `means_of_control`, ...), in
/// the order of `data/code_weights.tsv`.
pub(super) fn code_weights(list: &str) -> &'static [(&'static str, u32)] {
    static TABLES: OnceLock<Groups<(&str, u32)>> = OnceLock::new();
    TABLES
        .get_or_init(|| {
            Groups::new(data::rows(CODE_WEIGHTS).map(|[list, code, weight]| {
                let weight = weight.parse().expect("a weight is a whole number");
                (list, (code, weight))
            }))
        })
        .get(list)
}

/// Document number prefixes by citizenship. Only letters whose Cyrillic look-alike romanises
/// back to them are used, so a number typed in Cyrillic links to the same number in Latin.
pub(super) fn document_prefixes(citizenship: &str) -> &'static [&'static str] {
    match citizenship {
        "KGZ" => &["AN", "ID"],
        "KAZ" => &["N"],
        "UZB" => &["AA", "AB"],
        "TJK" => &["A"],
        "MDA" => &["A", "B"],
        "UKR" => &["EK", "KM", "MT"],
        "RUS" => &["75"],
        _ => &["P"],
    }
}
