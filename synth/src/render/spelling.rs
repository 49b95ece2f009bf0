//! How NGOs spell values: date formats, Russian country names, dialling codes and document
//! numbers typed in Cyrillic look-alike letters.

use chrono::{Datelike, NaiveDate};
use ctstats_schemas::countries;

/// Date spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DateStyle {
    /// `14.03.1987`
    Dotted,
    /// `1987-03-14`
    Iso,
    /// `14/03/1987`
    Slashed,
}

pub(super) fn format_date(d: NaiveDate, style: DateStyle) -> String {
    let (y, m, day) = (d.year(), d.month(), d.day());
    format_ymd(y, m, day, style)
}

pub(super) fn format_ymd(y: i32, m: u32, d: u32, style: DateStyle) -> String {
    match style {
        DateStyle::Dotted => format!("{d:02}.{m:02}.{y:04}"),
        DateStyle::Iso => format!("{y:04}-{m:02}-{d:02}"),
        DateStyle::Slashed => format!("{d:02}/{m:02}/{y:04}"),
    }
}

/// Russian country names that ingest's canonical profile maps.
pub(super) fn russian_name(alpha3: &str) -> Option<&'static str> {
    Some(match alpha3 {
        "KGZ" => "Кыргызстан",
        "KAZ" => "Казахстан",
        "TJK" => "Таджикистан",
        "UZB" => "Узбекистан",
        "TKM" => "Туркменистан",
        "MDA" => "Молдова",
        "UKR" => "Украина",
        "RUS" => "Россия",
        "BLR" => "Беларусь",
        "TUR" => "Турция",
        "ARE" => "ОАЭ",
        "DEU" => "Германия",
        "POL" => "Польша",
        "CHN" => "Китай",
        "KOR" => "Южная Корея",
        "ISR" => "Израиль",
        "GEO" => "Грузия",
        "ARM" => "Армения",
        "AZE" => "Азербайджан",
        "AFG" => "Афганистан",
        _ => return None,
    })
}

pub(super) fn alpha2(alpha3: &str) -> &'static str {
    countries::by_alpha3(alpha3).map_or("ZZ", |c| c.alpha2)
}

pub(super) fn dialling_code(mission: &str) -> &'static str {
    match mission {
        "KGZ" => "+996",
        "KAZ" => "+7",
        "TJK" => "+992",
        "UZB" => "+998",
        "MDA" => "+373",
        "UKR" => "+380",
        _ => "+",
    }
}

/// A document number typed in Cyrillic look-alike letters that ingest romanises back.
pub(super) fn cyrillic_document(latin: &str) -> String {
    latin
        .chars()
        .map(|c| match c {
            'A' => 'А',
            'B' => 'Б',
            'D' => 'Д',
            'E' => 'Е',
            'I' => 'И',
            'K' => 'К',
            'M' => 'М',
            'N' => 'Н',
            'O' => 'О',
            'P' => 'П',
            'T' => 'Т',
            other => other,
        })
        .collect()
}

pub(super) fn join(codes: &[&str]) -> String {
    codes.join(";")
}
