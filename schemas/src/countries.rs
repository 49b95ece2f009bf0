//! ISO 3166-1 countries: alpha-2, alpha-3 and English short name.
//!
//! The dataset stores alpha-3 codes. CTDC exports use alpha-2 (where `NA` is Namibia, not a
//! missing value); NGO files use either. The table is `data/iso3166.tsv`, generated from the
//! pycountry package, plus the user-assigned code XK/XKX for Kosovo that IOM and CTDC use.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;

/// One country of ISO 3166-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Country {
    pub alpha2: &'static str,
    pub alpha3: &'static str,
    pub name: &'static str,
}

const TABLE: &str = include_str!("../data/iso3166.tsv");

/// Every country, ordered by alpha-3 code.
pub fn all() -> &'static [Country] {
    static ALL: OnceLock<Vec<Country>> = OnceLock::new();
    ALL.get_or_init(|| {
        TABLE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let mut cols = l.split('\t');
                let alpha2 = cols.next().expect("alpha-2 column");
                let alpha3 = cols.next().expect("alpha-3 column");
                let _numeric = cols.next();
                let name = cols.next().expect("name column");
                Country {
                    alpha2,
                    alpha3,
                    name,
                }
            })
            .collect()
    })
}

fn index() -> &'static HashMap<String, &'static Country> {
    static INDEX: OnceLock<HashMap<String, &'static Country>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut map = HashMap::new();
        for c in all() {
            map.insert(c.alpha2.to_string(), c);
            map.insert(c.alpha3.to_string(), c);
            map.insert(c.name.to_lowercase(), c);
        }
        map
    })
}

/// The country with this alpha-2 or alpha-3 code or English short name (case-insensitive).
pub fn lookup(code_or_name: &str) -> Option<&'static Country> {
    let key = code_or_name.trim();
    let upper = key.to_ascii_uppercase();
    index()
        .get(&upper)
        .or_else(|| index().get(&key.to_lowercase()))
        .copied()
}

/// The country with this alpha-3 code exactly.
pub fn by_alpha3(code: &str) -> Option<&'static Country> {
    all().iter().find(|c| c.alpha3 == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_whole() {
        assert_eq!(all().len(), 250);
        assert_eq!(lookup("kg").map(|c| c.alpha3), Some("KGZ"));
        assert_eq!(lookup("KAZ").map(|c| c.alpha2), Some("KZ"));
        assert_eq!(lookup("NA").map(|c| c.alpha3), Some("NAM"));
        assert_eq!(lookup("Republic of Moldova").map(|c| c.alpha3), None);
        assert_eq!(
            lookup("moldova, republic of").map(|c| c.alpha3),
            Some("MDA")
        );
        assert_eq!(lookup("XK").map(|c| c.alpha3), Some("XKX"));
        assert!(lookup("ZZ").is_none());
    }
}
