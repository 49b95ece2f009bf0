use super::*;
use ctstats_ingest::identity::normalise_document;

#[test]
fn cyrillic_documents_link_to_latin_ones() {
    for prefix in [
        "AN", "ID", "N", "AA", "AB", "A", "B", "EK", "KM", "MT", "P", "75",
    ] {
        let latin = format!("{prefix}1234567");
        let cyrillic = cyrillic_document(&latin);
        assert_eq!(
            normalise_document(&cyrillic),
            normalise_document(&latin),
            "{cyrillic}"
        );
    }
}

#[test]
fn russian_country_names_are_in_the_canonical_profile() {
    let profile = ctstats_ingest::profile::canonical();
    let map = &profile.values["citizenship"];
    for c in [
        "KGZ", "KAZ", "TJK", "UZB", "TKM", "MDA", "UKR", "RUS", "BLR", "TUR", "ARE", "DEU", "POL",
        "CHN", "KOR", "ISR", "GEO", "ARM", "AZE", "AFG",
    ] {
        let name = russian_name(c).unwrap();
        let key = ctstats_ingest::profile::normalise_token(name);
        assert_eq!(map.get(&key).map(String::as_str), Some(c), "{name}");
    }
}
