//! Personal names, each as a (Cyrillic, Latin) pair whose Latin form is exactly what ingest's
//! name normalisation makes of the Cyrillic one (the passport-style romanisation in
//! `ctstats_ingest::identity`), so one person spelled once in each script links.
//!
//! Within each table the Latin forms are distinct, and no given name equals a family name, so
//! distinct (given name, family name) index pairs always normalise to distinct names. The tables
//! are `data/given_names.tsv` and `data/family_names.tsv`.

use std::sync::OnceLock;

use crate::data;

/// Where a name is common: Central Asia, or Eastern Europe (Russian, Ukrainian, Moldovan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Region {
    CentralAsia,
    EasternEurope,
}

use Region::{CentralAsia as CA, EasternEurope as EE};

/// A given name: Cyrillic, Latin, region.
pub(crate) type GivenName = (&'static str, &'static str, Region);

/// A family name: male Cyrillic, male Latin, female Cyrillic, female Latin, region.
pub(crate) type FamilyName = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Region,
);

const GIVEN_NAMES: &str = include_str!("../data/given_names.tsv");
const FAMILY_NAMES: &str = include_str!("../data/family_names.tsv");

fn region(code: &str) -> Region {
    match code {
        "CA" => CA,
        "EE" => EE,
        other => panic!("unknown region {other:?} in a name table"),
    }
}

/// The given-name table for a gender, in the order of `data/given_names.tsv`.
pub(crate) fn given(female: bool) -> &'static [GivenName] {
    static TABLES: OnceLock<[Vec<GivenName>; 2]> = OnceLock::new();
    let tables = TABLES.get_or_init(|| {
        let mut tables = [Vec::new(), Vec::new()];
        for [gender, cyrillic, latin, from] in data::rows(GIVEN_NAMES) {
            let female = match gender {
                "female" => true,
                "male" => false,
                other => panic!("unknown gender {other:?} in the given names"),
            };
            tables[usize::from(female)].push((cyrillic, latin, region(from)));
        }
        tables
    });
    &tables[usize::from(female)]
}

/// The family-name table, in the order of `data/family_names.tsv`.
pub(crate) fn family() -> &'static [FamilyName] {
    static TABLE: OnceLock<Vec<FamilyName>> = OnceLock::new();
    TABLE.get_or_init(|| {
        data::rows(FAMILY_NAMES)
            .map(|[male, male_latin, female, female_latin, from]| {
                (male, male_latin, female, female_latin, region(from))
            })
            .collect()
    })
}

/// The indices of a table's entries from `region`.
pub(crate) fn indices_of<T>(table: &[T], region: Region, region_of: fn(&T) -> Region) -> Vec<u16> {
    table
        .iter()
        .enumerate()
        .filter(|(_, entry)| region_of(entry) == region)
        .map(|(i, _)| i as u16)
        .collect()
}

/// Cyrillic as an NGO typing in Windows-1251 would write it: the Kazakh and Kyrgyz letters that
/// code page lacks become the Russian letters ingest romanises the same way (қ -> к, ө -> о, ...).
pub(crate) fn russianise(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'ә' => 'а',
            'Ә' => 'А',
            'ғ' => 'г',
            'Ғ' => 'Г',
            'қ' => 'к',
            'Қ' => 'К',
            'ң' => 'н',
            'Ң' => 'Н',
            'ө' => 'о',
            'Ө' => 'О',
            'ұ' | 'ү' => 'у',
            'Ұ' | 'Ү' => 'У',
            'і' => 'и',
            'І' => 'И',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctstats_ingest::identity::normalise_name;
    use std::collections::BTreeSet;

    fn all_pairs() -> Vec<(&'static str, &'static str)> {
        let mut pairs: Vec<(&str, &str)> = given(true)
            .iter()
            .chain(given(false))
            .map(|n| (n.0, n.1))
            .collect();
        for f in family() {
            pairs.push((f.0, f.1));
            pairs.push((f.2, f.3));
        }
        pairs
    }

    #[test]
    fn every_pair_normalises_equal() {
        for (cyrillic, latin) in all_pairs() {
            let want = normalise_name(latin);
            assert_eq!(normalise_name(cyrillic), want, "{cyrillic} / {latin}");
            assert_eq!(
                normalise_name(&russianise(cyrillic)),
                want,
                "{cyrillic} in cp1251"
            );
            assert_eq!(
                normalise_name(&cyrillic.to_uppercase()),
                want,
                "{cyrillic} in capitals"
            );
            assert!(
                !want.contains(' ') && !want.is_empty(),
                "{latin} is one word"
            );
        }
    }

    #[test]
    fn tables_are_whole() {
        assert_eq!(given(true).len(), 54);
        assert_eq!(given(false).len(), 54);
        assert_eq!(family().len(), 60);
        assert_eq!(given(true)[0], ("Айгуль", "Aigul", CA));
        assert_eq!(given(false)[53], ("Думитру", "Dumitru", EE));
        assert_eq!(family()[59], ("Морару", "Moraru", "Морару", "Moraru", EE));
    }

    #[test]
    fn full_names_link_across_scripts() {
        assert_eq!(
            normalise_name("Асанова Айгуль"),
            normalise_name("Aigul Asanova")
        );
    }

    #[test]
    fn latin_forms_are_distinct() {
        let given: Vec<String> = given(true)
            .iter()
            .chain(given(false))
            .map(|n| normalise_name(n.1))
            .collect();
        let given_set: BTreeSet<&String> = given.iter().collect();
        assert_eq!(given_set.len(), given.len(), "duplicate given name");
        for (forms, pick) in [
            (family().iter().map(|f| f.1).collect::<Vec<_>>(), "male"),
            (family().iter().map(|f| f.3).collect::<Vec<_>>(), "female"),
        ] {
            let set: BTreeSet<String> = forms.iter().map(|f| normalise_name(f)).collect();
            assert_eq!(set.len(), forms.len(), "duplicate {pick} family name");
            for f in &set {
                assert!(
                    !given_set.contains(f),
                    "{f} is both a given and a family name"
                );
            }
        }
    }

    #[test]
    fn russianised_names_fit_windows_1251() {
        for (cyrillic, _) in all_pairs() {
            let (_, _, unmappable) = encoding_rs::WINDOWS_1251.encode(&russianise(cyrillic));
            assert!(!unmappable, "{cyrillic}");
        }
    }
}
