//! Code lists of the canonical record.
//!
//! Every categorical field has a closed list of values with stable snake_case names: these names
//! are what is stored in Parquet, what queries group by and what the schema document lists. A name
//! never changes once released; a value that is retired stays in the list.
//!
//! "Not recorded" is a null, never a code: there is no `unknown` value in these lists.
//!
//! The lists are the table `data/code_lists.tsv` (list, type, variant, stored name, label), from
//! which the build script writes one enum per list.

use serde::Serialize;

/// A closed list of values with stable names.
pub trait CodeList: Copy + Sized + 'static {
    /// The field-independent name of the list, e.g. `gender`.
    const LIST: &'static str;
    /// Every value, in a stable order.
    const ALL: &'static [Self];
    /// The stable snake_case name stored in the dataset.
    fn name(self) -> &'static str;
    /// A short English label for documents and dashboards.
    fn label(self) -> &'static str;
    /// The value with this stored name.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }
}

macro_rules! code_list {
    ($(#[$doc:meta])* $ty:ident, $list:literal, { $($variant:ident => ($name:literal, $label:literal)),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $ty { $($variant),+ }

        impl CodeList for $ty {
            const LIST: &'static str = $list;
            const ALL: &'static [Self] = &[$($ty::$variant),+];
            fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
            fn label(self) -> &'static str {
                match self { $($ty::$variant => $label),+ }
            }
        }
    };
}

// The lists themselves, one `code_list!` each, are written by build.rs from
// `data/code_lists.tsv`.
include!(concat!(env!("OUT_DIR"), "/code_lists.rs"));

impl AgeBand {
    /// The band holding an age in whole years.
    pub fn of_age(years: u32) -> AgeBand {
        match years {
            0..=8 => AgeBand::A0To8,
            9..=17 => AgeBand::A9To17,
            18..=20 => AgeBand::A18To20,
            21..=23 => AgeBand::A21To23,
            24..=26 => AgeBand::A24To26,
            27..=29 => AgeBand::A27To29,
            30..=38 => AgeBand::A30To38,
            39..=47 => AgeBand::A39To47,
            _ => AgeBand::A48Plus,
        }
    }

    /// Whether every age in the band is under 18 (`Some(true)`), none is (`Some(false)`).
    pub fn is_minor(self) -> bool {
        matches!(self, AgeBand::A0To8 | AgeBand::A9To17)
    }
}

/// The stored names of a code list, for documents and validation messages.
pub fn names<C: CodeList>() -> Vec<&'static str> {
    C::ALL.iter().map(|c| c.name()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_list<C: CodeList + std::fmt::Debug + PartialEq>() {
        let names = names::<C>();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate name in {}", C::LIST);
        for c in C::ALL {
            assert_eq!(C::from_name(c.name()), Some(*c));
            assert!(
                !c.name().is_empty() && !c.name().contains(' '),
                "{}",
                c.name()
            );
        }
    }

    #[test]
    fn names_are_unique_and_round_trip() {
        check_list::<OrgType>();
        check_list::<DataSource>();
        check_list::<PersonLinkQuality>();
        check_list::<Gender>();
        check_list::<AgeBand>();
        check_list::<DurationBand>();
        check_list::<TraffickingStatus>();
        check_list::<ExploitationType>();
        check_list::<LabourSector>();
        check_list::<MeansOfControl>();
        check_list::<RecruiterRelation>();
        check_list::<ReferralSource>();
        check_list::<AssistanceType>();
        check_list::<ReturnType>();
        check_list::<ReintegrationOutcome>();
        check_list::<CaseStatus>();
        check_list::<LegalOutcome>();
    }

    #[test]
    fn age_bands_cover_every_age_once() {
        assert_eq!(AgeBand::of_age(0), AgeBand::A0To8);
        assert_eq!(AgeBand::of_age(17), AgeBand::A9To17);
        assert_eq!(AgeBand::of_age(18), AgeBand::A18To20);
        assert_eq!(AgeBand::of_age(47), AgeBand::A39To47);
        assert_eq!(AgeBand::of_age(48), AgeBand::A48Plus);
        assert_eq!(AgeBand::of_age(120), AgeBand::A48Plus);
        assert!(AgeBand::of_age(17).is_minor());
        assert!(!AgeBand::of_age(18).is_minor());
    }
}
