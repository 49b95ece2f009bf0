//! Raw identifiers and their normalisation.
//!
//! Architecture invariant: raw identifiers exist only between parsing and pseudonymising. They live
//! in [`RawIdentity`], which has no `Display` and a redacted `Debug`, so they cannot reach a log,
//! an error message or a snapshot by accident. Nothing in this crate writes a `RawIdentity` field
//! anywhere: the only way out is [`crate::pseudonymise`], which turns it into a keyed hash.
//!
//! Normalisation makes one person's identity hash the same whoever typed it: Unicode NFKC, case
//! folding, Cyrillic (Russian, Kazakh, Kyrgyz, Ukrainian) transliterated to Latin, diacritics
//! removed, punctuation and whitespace folded, and name words sorted (so "Asanova Aigul" and
//! "Aigul Asanova" agree). `Айгуль Асанова` and `Aigul Asanova` normalise to `aigul asanova`.

use chrono::NaiveDate;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// The identifying fields of one source row, held only until pseudonymisation.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct RawIdentity {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// A whole name in one cell, where the file has no separate first and last name.
    pub full_name: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub document_number: Option<String>,
    /// Citizenship as ISO alpha-3 (already validated, not itself an identifier).
    pub citizenship: Option<&'static str>,
}

impl std::fmt::Debug for RawIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let present = |o: bool| if o { "<redacted>" } else { "<absent>" };
        f.debug_struct("RawIdentity")
            .field("first_name", &present(self.first_name.is_some()))
            .field("last_name", &present(self.last_name.is_some()))
            .field("full_name", &present(self.full_name.is_some()))
            .field("birth_date", &present(self.birth_date.is_some()))
            .field("document_number", &present(self.document_number.is_some()))
            .field("citizenship", &self.citizenship)
            .finish()
    }
}

/// Which identity rule applies to a row, with the normalised material to hash.
#[derive(Clone, PartialEq, Eq)]
pub enum LinkMaterial {
    /// A normalised identity document number.
    Document(String),
    /// Normalised name, birth date and citizenship.
    NameDobCitizenship(String, NaiveDate, &'static str),
    /// Normalised name and birth date, no citizenship.
    NameDob(String, NaiveDate),
    /// Not enough to link: the record is its own person.
    None,
}

impl std::fmt::Debug for LinkMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rule = match self {
            LinkMaterial::Document(_) => "Document",
            LinkMaterial::NameDobCitizenship(..) => "NameDobCitizenship",
            LinkMaterial::NameDob(..) => "NameDob",
            LinkMaterial::None => "None",
        };
        write!(f, "LinkMaterial::{rule}(<redacted>)")
    }
}

impl RawIdentity {
    /// Pick the strongest identity rule the row supports: a document number when present, else
    /// name + birth date + citizenship, else name + birth date, else none.
    pub fn link_material(&self) -> LinkMaterial {
        if let Some(doc) = self.document_number.as_deref().map(normalise_document)
            && doc.len() >= 4
        {
            return LinkMaterial::Document(doc);
        }
        let name = self.normalised_name();
        match (name.is_empty(), self.birth_date, self.citizenship) {
            (false, Some(dob), Some(cit)) => LinkMaterial::NameDobCitizenship(name, dob, cit),
            (false, Some(dob), None) => LinkMaterial::NameDob(name, dob),
            _ => LinkMaterial::None,
        }
    }

    fn normalised_name(&self) -> String {
        let joined = [&self.first_name, &self.last_name, &self.full_name]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        normalise_name(&joined)
    }
}

/// Normalise a personal name for linking: NFKC, case fold, Cyrillic to Latin, no diacritics,
/// punctuation and whitespace folded, words sorted.
pub fn normalise_name(name: &str) -> String {
    let folded = fold_text(name);
    let mut words: Vec<&str> = folded.split(' ').filter(|w| !w.is_empty()).collect();
    words.sort_unstable();
    words.join(" ")
}

/// Normalise an identity document number: letters and digits only, Cyrillic letters that look
/// like Latin ones mapped to them, upper case.
pub fn normalise_document(doc: &str) -> String {
    let folded = fold_text(doc);
    folded
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// NFKC, case folding, transliteration and punctuation folding, keeping word order.
fn fold_text(text: &str) -> String {
    let nfkc: String = text.nfkc().collect();
    let folded = caseless::default_case_fold_str(&nfkc);
    // Strip diacritics first (ü -> u, й -> и, ё -> е), then transliterate, so every spelling of
    // a letter ends in the same Latin form.
    let mut out = String::with_capacity(folded.len());
    let mut pending_space = false;
    for c in folded.nfkd().filter(|c| !is_combining_mark(*c)) {
        if c.is_alphanumeric() {
            let latin = transliterate(c);
            if latin == Some("") {
                continue; // soft and hard signs
            }
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            match latin {
                Some(latin) => out.push_str(latin),
                None => out.extend(c.to_lowercase()),
            }
        } else if c.is_whitespace() || c == '-' || c == '.' || c == ',' || c == '_' || c == '/' {
            pending_space = true;
        }
        // Other punctuation (apostrophes, quotes, soft signs written as ') is dropped.
    }
    out
}

/// Latin spelling of one lower-case Cyrillic letter. Follows the common passport-style
/// romanisation of Russian, with Kazakh, Kyrgyz and Ukrainian letters mapped to their nearest
/// Latin spelling; soft and hard signs vanish.
fn transliterate(c: char) -> Option<&'static str> {
    Some(match c {
        'а' => "a",
        'б' => "b",
        'в' => "v",
        'г' => "g",
        'д' => "d",
        'е' => "e",
        'ё' => "e",
        'ж' => "zh",
        'з' => "z",
        'и' => "i",
        'й' => "i",
        'к' => "k",
        'л' => "l",
        'м' => "m",
        'н' => "n",
        'о' => "o",
        'п' => "p",
        'р' => "r",
        'с' => "s",
        'т' => "t",
        'у' => "u",
        'ф' => "f",
        'х' => "kh",
        'ц' => "ts",
        'ч' => "ch",
        'ш' => "sh",
        'щ' => "shch",
        'ъ' | 'ь' => "",
        'ы' => "y",
        'э' => "e",
        'ю' => "yu",
        'я' => "ya",
        // Kazakh and Kyrgyz
        'ә' => "a",
        'ғ' => "g",
        'қ' => "k",
        'ң' => "n",
        'ө' => "o",
        'ұ' | 'ү' => "u",
        'һ' => "h",
        'і' => "i",
        // Ukrainian
        'є' => "ye",
        'ї' => "yi",
        'ґ' => "g",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cyrillic_and_latin_spellings_agree() {
        assert_eq!(normalise_name("Айгуль Асанова"), "aigul asanova");
        assert_eq!(normalise_name("Aigul Asanova"), "aigul asanova");
        assert_eq!(normalise_name("ASANOVA,  aigul"), "aigul asanova");
        assert_eq!(normalise_name("Асанова Айгуль"), "aigul asanova");
        assert_eq!(normalise_name("Ақмарал Өмірбекова"), "akmaral omirbekova");
        assert_eq!(normalise_name("Jürgen O'Neil"), "jurgen oneil");
        assert_eq!(normalise_name("Ｍａｒｉａ"), "maria");
    }

    #[test]
    fn documents_fold_to_alphanumerics() {
        assert_eq!(normalise_document(" an 12-34 567 "), "AN1234567");
        assert_eq!(normalise_document("ID: 0042/17"), "ID004217");
    }

    #[test]
    fn link_rules_in_order() {
        let dob = NaiveDate::from_ymd_opt(1990, 5, 1);
        let mut id = RawIdentity {
            first_name: Some("Aigul".into()),
            last_name: Some("Asanova".into()),
            birth_date: dob,
            citizenship: Some("KGZ"),
            document_number: Some("AN 1234567".into()),
            ..Default::default()
        };
        assert_eq!(
            id.link_material(),
            LinkMaterial::Document("AN1234567".into())
        );
        id.document_number = Some("-".into());
        assert!(matches!(
            id.link_material(),
            LinkMaterial::NameDobCitizenship(..)
        ));
        id.citizenship = None;
        assert!(matches!(id.link_material(), LinkMaterial::NameDob(..)));
        id.birth_date = None;
        assert_eq!(id.link_material(), LinkMaterial::None);
    }

    #[test]
    fn debug_never_shows_values() {
        let id = RawIdentity {
            first_name: Some("Canary".into()),
            document_number: Some("ZX998877".into()),
            ..Default::default()
        };
        let shown = format!("{id:?} {:?}", id.link_material());
        assert!(
            !shown.contains("Canary") && !shown.contains("ZX998877"),
            "{shown}"
        );
    }

    proptest! {
        #[test]
        fn normalisation_is_idempotent(s in "\\PC{0,40}") {
            let once = normalise_name(&s);
            prop_assert_eq!(normalise_name(&once), once.clone());
        }

        #[test]
        fn normalised_names_are_plain(s in "\\PC{0,40}") {
            let n = normalise_name(&s);
            prop_assert!(!n.starts_with(' ') && !n.ends_with(' ') && !n.contains("  "));
            prop_assert!(n.chars().all(|c| c == ' ' || c.is_alphanumeric()));
        }

        #[test]
        fn case_and_spacing_do_not_matter(a in "[a-zA-Zа-яА-Я]{1,12}", b in "[a-zA-Zа-яА-Я]{1,12}") {
            let x = normalise_name(&format!("{a} {b}"));
            let y = normalise_name(&format!("  {}\t{}  ", b.to_uppercase(), a.to_lowercase()));
            prop_assert_eq!(x, y);
        }
    }
}
