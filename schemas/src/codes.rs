//! Code lists of the canonical record.
//!
//! Every categorical field has a closed list of values with stable snake_case names: these names
//! are what is stored in Parquet, what queries group by and what the schema document lists. A name
//! never changes once released; a value that is retired stays in the list.
//!
//! "Not recorded" is a null, never a code: there is no `unknown` value in these lists.

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

code_list!(
    /// Kind of the submitting organisation (HTCDS `org_Type`).
    OrgType, "org_type", {
    Ngo => ("ngo", "NGO"),
    LawEnforcement => ("law_enforcement", "Law enforcement"),
    HealthService => ("health_service", "Health service organisation"),
    CentralGovernment => ("central_government", "Central government organisation"),
    LocalGovernment => ("local_government", "Local government organisation"),
    ImmigrationService => ("immigration_service", "Immigration service"),
    LegalService => ("legal_service", "Legal service"),
    InternationalOrganisation => ("international_organisation", "International organisation"),
    Other => ("other", "Other"),
});

code_list!(
    /// Where the record comes from.
    DataSource, "data_source", {
    CaseManagement => ("case_management", "Case management system"),
    Hotline => ("hotline", "Hotline"),
    Screening => ("screening", "Screening interview"),
    Other => ("other", "Other"),
});

code_list!(
    /// How the person was linked across records: which identity rule produced `person_key`.
    PersonLinkQuality, "person_link_quality", {
    DocumentId => ("document_id", "Identity document number"),
    NameDobCitizenship => ("name_dob_citizenship", "Name, birth date and citizenship"),
    Weak => ("weak", "Name and birth date only"),
    None => ("none", "Not linkable: the record is its own person"),
});

code_list!(
    /// Gender as recorded (HTCDS `prs_Gender`); "not specified" is a null.
    Gender, "gender", {
    Female => ("female", "Female"),
    Male => ("male", "Male"),
    TransgenderFemale => ("transgender_female", "Transgender female"),
    TransgenderMale => ("transgender_male", "Transgender male"),
    NonConforming => ("non_conforming", "Gender non-conforming"),
});

code_list!(
    /// Age at registration in the CTDC bands. Birth dates never reach the dataset: only this band
    /// and the minor flags derived from them.
    AgeBand, "age_band", {
    A0To8 => ("0-8", "0 to 8"),
    A9To17 => ("9-17", "9 to 17"),
    A18To20 => ("18-20", "18 to 20"),
    A21To23 => ("21-23", "21 to 23"),
    A24To26 => ("24-26", "24 to 26"),
    A27To29 => ("27-29", "27 to 29"),
    A30To38 => ("30-38", "30 to 38"),
    A39To47 => ("39-47", "39 to 47"),
    A48Plus => ("48+", "48 and over"),
});

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

code_list!(
    /// How long the exploitation lasted.
    DurationBand, "trafficking_duration_band", {
    UnderOneMonth => ("under_1_month", "Less than 1 month"),
    OneToSixMonths => ("1_to_6_months", "1 to 6 months"),
    SixToTwelveMonths => ("6_to_12_months", "6 to 12 months"),
    OverTwelveMonths => ("over_12_months", "More than 12 months"),
});

code_list!(
    /// Trafficking status of the person (HTCDS `vic_TraffickingStatus`).
    TraffickingStatus, "trafficking_status", {
    Actual => ("actual", "Actual victim"),
    Possible => ("possible", "Possible victim"),
    NotAVictim => ("not_a_victim", "Not a victim"),
});

code_list!(
    /// Type of exploitation (a person may have several).
    ExploitationType, "exploitation_type", {
    ForcedLabour => ("forced_labour", "Forced labour"),
    SexualExploitation => ("sexual_exploitation", "Sexual exploitation"),
    ForcedMarriage => ("forced_marriage", "Forced marriage"),
    ForcedBegging => ("forced_begging", "Forced begging"),
    ForcedCriminality => ("forced_criminality", "Forced criminality"),
    OrganRemoval => ("organ_removal", "Organ removal"),
    SlaveryAndPractices => ("slavery", "Slavery and similar practices"),
    ForcedMilitary => ("forced_military", "Forced military service"),
    Other => ("other", "Other exploitation"),
});

code_list!(
    /// Labour sector, as the ISIC Rev. 4 sections used by HTCDS and CTDC.
    LabourSector, "labour_sector", {
    Agriculture => ("agriculture", "Agriculture, forestry and fishing (ISIC A)"),
    Mining => ("mining", "Mining and quarrying (ISIC B)"),
    Manufacturing => ("manufacturing", "Manufacturing (ISIC C)"),
    Construction => ("construction", "Construction (ISIC F)"),
    Trade => ("trade", "Wholesale and retail trade (ISIC G)"),
    Transport => ("transport", "Transportation and storage (ISIC H)"),
    Hospitality => ("hospitality", "Accommodation and food service (ISIC I)"),
    DomesticWork => ("domestic_work", "Activities of households as employers (ISIC T)"),
    Fishing => ("fishing", "Fishing and aquaculture (ISIC A 03)"),
    Begging => ("begging", "Begging"),
    Peddling => ("peddling", "Peddling and informal street commerce"),
    IllicitActivities => ("illicit_activities", "Illicit activities"),
    SexIndustry => ("sex_industry", "Sex industry"),
    Other => ("other", "Other sector"),
});

code_list!(
    /// Means of control used on the person (HTCDS field definitions, CTDC `meansOfControl*`).
    MeansOfControl, "means_of_control", {
    DebtBondage => ("debt_bondage", "Debt bondage"),
    TakesEarnings => ("takes_earnings", "Takes earnings"),
    RestrictsFinancialAccess => ("restricts_financial_access", "Restricts financial access"),
    Threats => ("threats", "Threats to the person or others"),
    PhysicalAbuse => ("physical_abuse", "Physical abuse"),
    SexualAbuse => ("sexual_abuse", "Sexual abuse"),
    FalsePromises => ("false_promises", "False promises"),
    PsychoactiveSubstances => ("psychoactive_substances", "Psychoactive substances"),
    RestrictsMovement => ("restricts_movement", "Restricts movement"),
    RestrictsMedicalCare => ("restricts_medical_care", "Restricts medical care"),
    PsychologicalAbuse => ("psychological_abuse", "Psychological abuse"),
    ExcessiveWorkingHours => ("excessive_working_hours", "Excessive working hours"),
    UsesChildren => ("uses_children", "Restricts access to or manipulates children"),
    ThreatOfLawEnforcement => ("threat_of_law_enforcement", "Threat of law enforcement"),
    WithholdsNecessities => ("withholds_necessities", "Withholds necessities"),
    WithholdsDocuments => ("withholds_documents", "Withholds documents"),
    Other => ("other", "Other means of control"),
});

code_list!(
    /// Relation of the recruiter to the person.
    RecruiterRelation, "recruiter_relation", {
    IntimatePartner => ("intimate_partner", "Intimate partner"),
    Friend => ("friend", "Friend"),
    Family => ("family", "Family member"),
    Acquaintance => ("acquaintance", "Acquaintance"),
    Employer => ("employer", "Employer or recruitment agency"),
    Stranger => ("stranger", "Stranger"),
    Other => ("other", "Other"),
});

code_list!(
    /// Who referred or identified the person (the identification channel).
    ReferralSource, "referral_source", {
    SelfReferral => ("self", "Self-referral"),
    FamilyOrFriends => ("family_or_friends", "Family or friends"),
    LawEnforcement => ("law_enforcement", "Law enforcement"),
    Ngo => ("ngo", "NGO"),
    InternationalOrganisation => ("international_organisation", "International organisation"),
    Government => ("government", "Government agency"),
    Hotline => ("hotline", "Hotline"),
    ConsularService => ("consular_service", "Consular service"),
    Other => ("other", "Other"),
});

code_list!(
    /// Kind of assistance given.
    AssistanceType, "assistance_type", {
    Shelter => ("shelter", "Shelter"),
    Medical => ("medical", "Medical"),
    Psychosocial => ("psychosocial", "Psychosocial"),
    Legal => ("legal", "Legal"),
    Financial => ("financial", "Financial"),
    Education => ("education", "Education"),
    VocationalTraining => ("vocational_training", "Vocational training"),
    Employment => ("employment", "Employment support"),
    TravelDocuments => ("travel_documents", "Travel documents"),
    ReturnTravel => ("return_travel", "Return travel"),
    Reintegration => ("reintegration", "Reintegration grant"),
    Other => ("other", "Other"),
});

code_list!(
    /// How the person returned, where an assisted return happened.
    ReturnType, "return_type", {
    ToCountryOfOrigin => ("to_country_of_origin", "To the country of origin"),
    ToThirdCountry => ("to_third_country", "To a third country"),
    Internal => ("internal", "Within the country"),
});

code_list!(
    /// Where reintegration stands.
    ReintegrationOutcome, "reintegration_outcome", {
    NotStarted => ("not_started", "Not started"),
    Ongoing => ("ongoing", "Ongoing"),
    Completed => ("completed", "Completed"),
    DroppedOut => ("dropped_out", "Dropped out"),
});

code_list!(
    /// Whether the case is still open.
    CaseStatus, "case_status", {
    Open => ("open", "Open"),
    Closed => ("closed", "Closed"),
});

code_list!(
    /// Furthest legal outcome of the case.
    LegalOutcome, "legal_outcome", {
    NoAction => ("no_action", "No legal action"),
    UnderInvestigation => ("under_investigation", "Under investigation"),
    Prosecuted => ("prosecuted", "Prosecution started"),
    Convicted => ("convicted", "Perpetrator convicted"),
    Acquitted => ("acquitted", "Perpetrator acquitted"),
    Dismissed => ("dismissed", "Case dismissed"),
});

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
