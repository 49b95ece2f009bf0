//! The built-in profiles: `canonical`, `htcds` and `ctdc`, as tables of column names, value
//! maps and flag columns.

use std::collections::BTreeMap;

use super::{FlagColumn, Profile, is_target, normalise_token};

/// The built-in profile called `name`.
pub(super) fn by_name(name: &str) -> Option<Profile> {
    match name {
        "canonical" => Some(canonical()),
        "htcds" => Some(htcds()),
        "ctdc" => Some(ctdc()),
        _ => None,
    }
}

fn base(name: &str) -> Profile {
    Profile {
        name: name.into(),
        columns: BTreeMap::new(),
        values: BTreeMap::new(),
        flags: Vec::new(),
        date_formats: [
            "%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%Y/%m/%d", "%d-%m-%Y", "%Y%m%d",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        missing: [
            "",
            "-",
            "n/a",
            "null",
            "none",
            "-99",
            "-99.0",
            "н/д",
            "нет данных",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        unknown_country: ["00", "zz", "xx", "unknown", "неизвестно"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        list_separator: ';',
        defaults: BTreeMap::new(),
        case_id_from_row: false,
    }
}

fn set_columns(p: &mut Profile, pairs: &[(&str, &[&str])]) {
    for (target, cols) in pairs {
        debug_assert!(is_target(target), "{target}");
        p.columns
            .entry(target.to_string())
            .or_default()
            .extend(cols.iter().map(|c| c.to_string()));
    }
}

fn set_values(p: &mut Profile, target: &str, pairs: &[(&str, &str)]) {
    let map = p.values.entry(target.to_string()).or_default();
    for (from, to) in pairs {
        map.insert(normalise_token(from), to.to_string());
    }
}

fn set_flags(p: &mut Profile, target: &str, pairs: &[(&str, &str)]) {
    for (column, code) in pairs {
        p.flags.push(FlagColumn {
            column: column.to_string(),
            target: target.to_string(),
            code: code.to_string(),
        });
    }
}

/// Common spellings NGOs in the region use, in Russian and English.
fn add_common_values(p: &mut Profile) {
    set_values(
        p,
        "gender",
        &[
            ("f", "female"),
            ("female", "female"),
            ("woman", "female"),
            ("ж", "female"),
            ("жен", "female"),
            ("женский", "female"),
            ("женщина", "female"),
            ("m", "male"),
            ("male", "male"),
            ("man", "male"),
            ("м", "male"),
            ("муж", "male"),
            ("мужской", "male"),
            ("мужчина", "male"),
            ("unknown", ""),
            ("not specified", ""),
        ],
    );
    let countries: &[(&str, &str)] = &[
        ("кыргызстан", "KGZ"),
        ("киргизия", "KGZ"),
        ("кыргызская республика", "KGZ"),
        ("kyrgyzstan", "KGZ"),
        ("казахстан", "KAZ"),
        ("таджикистан", "TJK"),
        ("узбекистан", "UZB"),
        ("туркменистан", "TKM"),
        ("молдова", "MDA"),
        ("молдавия", "MDA"),
        ("moldova", "MDA"),
        ("украина", "UKR"),
        ("россия", "RUS"),
        ("российская федерация", "RUS"),
        ("russia", "RUS"),
        ("беларусь", "BLR"),
        ("турция", "TUR"),
        ("türkiye", "TUR"),
        ("turkey", "TUR"),
        ("оаэ", "ARE"),
        ("uae", "ARE"),
        ("германия", "DEU"),
        ("польша", "POL"),
        ("китай", "CHN"),
        ("южная корея", "KOR"),
        ("корея", "KOR"),
        ("израиль", "ISR"),
        ("грузия", "GEO"),
        ("армения", "ARM"),
        ("азербайджан", "AZE"),
        ("афганистан", "AFG"),
        ("vietnam", "VNM"),
        ("iran", "IRN"),
    ];
    for target in [
        "citizenship",
        "country_of_recruitment",
        "country_of_exploitation",
    ] {
        set_values(p, target, countries);
    }
}

/// Our own template: canonical names as columns, codes as in the schema document.
pub fn canonical() -> Profile {
    let mut p = base("canonical");
    set_columns(
        &mut p,
        &[
            (
                "local_case_id",
                &["case_id", "case id", "№ дела", "номер дела"],
            ),
            ("first_name", &["имя", "given_name"]),
            ("last_name", &["фамилия", "family_name", "surname"]),
            ("full_name", &["name", "фио"]),
            ("birth_date", &["date_of_birth", "dob", "дата рождения"]),
            (
                "document_number",
                &["passport_number", "passport", "id_number", "номер паспорта"],
            ),
            (
                "registration_month",
                &["registration_date", "дата регистрации"],
            ),
            ("identification_month", &["identification_date"]),
            ("case_closed_month", &["case_closed_date", "closed_date"]),
            ("gender", &["sex", "пол"]),
            ("citizenship", &["гражданство", "nationality"]),
        ],
    );
    add_common_values(&mut p);
    p
}

/// HTCDS 2.0 field names (see ../shared/reference/htcds).
pub fn htcds() -> Profile {
    let mut p = base("htcds");
    set_columns(
        &mut p,
        &[
            (
                "local_case_id",
                &["cas_CaseNumber", "cas_Id", "CaseNumber", "Id"],
            ),
            ("first_name", &["prs_FirstName"]),
            ("last_name", &["prs_SecondName", "prs_LastName"]),
            ("birth_date", &["prs_Birthdate"]),
            ("document_number", &["prs_IdentityNumber"]),
            ("gender", &["prs_Gender"]),
            ("citizenship", &["prs_Citizenship"]),
            ("org_type", &["org_Type"]),
            (
                "registration_month",
                &[
                    "cas_IncomingReferralDate",
                    "cas_OpenedDate",
                    "cas_CreatedDate",
                ],
            ),
            ("trafficking_status", &["vic_TraffickingStatus"]),
            ("exploitation_types", &["vic_TypeOfExploitation"]),
            ("labour_sectors", &["vic_ForcedLabourIndustry"]),
            ("means_of_control", &["vic_MethodsOfControl"]),
            ("recruiter_relation", &["vic_RelationshipToTrafficker"]),
            ("age_at_exploitation", &["vic_AgeWhenTrafficked"]),
            ("case_status", &["cas_Status"]),
            ("assistance_types", &["spl_Type"]),
        ],
    );
    add_common_values(&mut p);
    set_values(
        &mut p,
        "gender",
        &[
            ("Feminine", "female"),
            ("Masculine", "male"),
            ("TransgenderFeminine", "transgender_female"),
            ("TransgenderMasculine", "transgender_male"),
            ("NonConforming", "non_conforming"),
            ("NonSpecifiedUnknown", ""),
        ],
    );
    set_values(
        &mut p,
        "org_type",
        &[
            ("NGO", "ngo"),
            ("LawEnforcement", "law_enforcement"),
            ("HealthServiceOrganisation", "health_service"),
            ("CentralGovernmentOrganisation", "central_government"),
            ("LocalGovernmentOrganisation", "local_government"),
            ("ImmigrationService", "immigration_service"),
            ("LegalService", "legal_service"),
            ("CorporateBusiness", "other"),
            ("SchoolOrCollege", "other"),
        ],
    );
    set_values(
        &mut p,
        "trafficking_status",
        &[
            ("ActualVictimOfTrafficking", "actual"),
            ("PossibleVictimOfTrafficking", "possible"),
            ("NotAVictimOfTrafficking", "not_a_victim"),
        ],
    );
    set_values(
        &mut p,
        "exploitation_types",
        &[
            ("ForcedLabour", "forced_labour"),
            ("SexualExploitation", "sexual_exploitation"),
            ("ForcedMarriage", "forced_marriage"),
            ("ForcedBegging", "forced_begging"),
            ("OrganRemoval", "organ_removal"),
            ("Servitude", "slavery"),
            ("ForcedMilitaryByNonStateActors", "forced_military"),
            ("ChildLabour", "other"),
            ("ForcedAdoption", "other"),
            ("Surrogacy", "other"),
            ("Other", "other"),
        ],
    );
    set_values(
        &mut p,
        "labour_sectors",
        &[
            ("A_AgricultureForestryAndFishing", "agriculture"),
            ("B_MiningAndQuarrying", "mining"),
            ("C_Manufacturing", "manufacturing"),
            ("F_Construction", "construction"),
            ("G_WholesaleAndRetailTradeRepairOfMotorVehicles", "trade"),
            ("H_TransportationAndStorage", "transport"),
            ("I_AccommodationAndFoodServiceActivities", "hospitality"),
            ("T_ActivitiesOfHouseholdsAsEmployers", "domestic_work"),
            ("D_ElectricityGasSteamAndAirConditioningSupply", "other"),
            ("E_WaterSupplySewerageWasteManagement", "other"),
            ("J_InformationAndCommunication", "other"),
            ("K_FinancialAndInsuranceActivities", "other"),
            ("L_RealEstateActivities", "other"),
            ("M_ProfessionalScientificAndTechnicalActivities", "other"),
            ("N_AdministrativeAndSupportServiceActivities", "other"),
            ("O_PublicAdministrationAndDefence", "other"),
            ("P_Education", "other"),
            ("Q_HumanHealthAndSocialWorkActivities", "other"),
            ("R_ArtsEntertainmentAndRecreation", "other"),
            ("S_OtherServiceActivities", "other"),
            ("U_ActivitiesOfExtraterritorialOrganizations", "other"),
        ],
    );
    set_values(
        &mut p,
        "means_of_control",
        &[
            ("DebtBondage", "debt_bondage"),
            ("TakesEarnings", "takes_earnings"),
            ("RestrictsFinancialAccess", "restricts_financial_access"),
            ("PhysicalThreats", "threats"),
            ("PsychologicalAbuse", "psychological_abuse"),
            ("PhysicalAbuse", "physical_abuse"),
            ("SexualAbuse", "sexual_abuse"),
            ("FalsePromises", "false_promises"),
            ("PsychoactiveSubstance", "psychoactive_substances"),
            ("RestrictsMedicalCare", "restricts_medical_care"),
            ("ExcessiveWorkingHours", "excessive_working_hours"),
            ("ThreatensChildrenFamily", "uses_children"),
            ("ThreatsLawEnforcement", "threat_of_law_enforcement"),
            ("WithholdsNecessities", "withholds_necessities"),
            ("WithholdsDocuments", "withholds_documents"),
            ("Other", "other"),
        ],
    );
    set_values(
        &mut p,
        "recruiter_relation",
        &[
            ("Familial", "family"),
            ("Acquainted", "acquaintance"),
            ("Unaquainted", "stranger"),
            ("Unacquainted", "stranger"),
        ],
    );
    set_values(
        &mut p,
        "case_status",
        &[
            ("Active", "open"),
            ("FollowUp", "open"),
            ("Closed", "closed"),
            ("ClosedReferred", "closed"),
        ],
    );
    set_values(
        &mut p,
        "assistance_types",
        &[
            ("Education", "education"),
            ("Financial", "financial"),
            ("Health", "medical"),
            ("Legal", "legal"),
            ("Livelihood", "employment"),
            ("SocialCare", "psychosocial"),
            ("LabourExploitationRehabilitation", "psychosocial"),
            ("SexualExploitationRehabilitation", "psychosocial"),
            ("RightsBasedTraining", "education"),
        ],
    );
    p
}

/// The CTDC Global Dataset export (codebook v6, see ../shared/reference/ctdc).
pub fn ctdc() -> Profile {
    let mut p = base("ctdc");
    p.case_id_from_row = true;
    // Real Global Dataset exports write `0` for an unknown citizenship or country of
    // exploitation (about 18% of the citizenship cells of one public 2020 export), besides the
    // codebook's `-99` and the `00`/`ZZ` every profile takes. `0` is no ISO code, so reading it
    // as unknown hides nothing that could have been a country.
    p.unknown_country.push("0".into());
    set_columns(
        &mut p,
        &[
            ("registration_year", &["yearOfRegistration"]),
            ("data_source", &["datasource"]),
            ("gender", &["gender"]),
            ("age_band", &["ageBroad"]),
            ("minor_at_registration", &["majorityStatus"]),
            ("minor_at_exploitation", &["majorityStatusAtExploit"]),
            ("citizenship", &["citizenship"]),
            (
                "country_of_exploitation",
                &["CountryofExploitation", "CountryOfExploitation"],
            ),
            ("abduction", &["isAbduction"]),
        ],
    );
    set_values(
        &mut p,
        "data_source",
        &[
            ("Case management", "case_management"),
            ("Hotline", "hotline"),
        ],
    );
    set_values(
        &mut p,
        "gender",
        &[
            ("Female", "female"),
            ("Male", "male"),
            ("Woman", "female"),
            ("Man", "male"),
            ("Transgender/NonConforming", "non_conforming"),
            ("Trans/Transgender/NonConforming", "non_conforming"),
            ("Unknown", ""),
        ],
    );
    for target in ["minor_at_registration", "minor_at_exploitation"] {
        set_values(
            &mut p,
            target,
            &[("Minor", "true"), ("Adult", "false"), ("Unknown", "")],
        );
    }
    set_flags(
        &mut p,
        "means_of_control",
        &[
            ("meansOfControlDebtBondage", "debt_bondage"),
            ("meansOfControlTakesEarnings", "takes_earnings"),
            (
                "meansOfControlRestrictsFinancialAccess",
                "restricts_financial_access",
            ),
            ("meansOfControlThreats", "threats"),
            ("meansOfControlPsychologicalAbuse", "psychological_abuse"),
            ("meansOfControlPhysicalAbuse", "physical_abuse"),
            ("meansOfControlSexualAbuse", "sexual_abuse"),
            ("meansOfControlFalsePromises", "false_promises"),
            (
                "meansOfControlPsychoactiveSubstances",
                "psychoactive_substances",
            ),
            ("meansOfControlRestrictsMovement", "restricts_movement"),
            (
                "meansOfControlRestrictsMedicalCare",
                "restricts_medical_care",
            ),
            (
                "meansOfControlExcessiveWorkingHours",
                "excessive_working_hours",
            ),
            ("meansOfControlUsesChildren", "uses_children"),
            (
                "meansOfControlThreatOfLawEnforcement",
                "threat_of_law_enforcement",
            ),
            (
                "meansOfControlWithholdsNecessities",
                "withholds_necessities",
            ),
            ("meansOfControlWithholdsDocuments", "withholds_documents"),
            ("meansOfControlOther", "other"),
        ],
    );
    set_flags(
        &mut p,
        "exploitation_types",
        &[
            ("isForcedLabour", "forced_labour"),
            ("isSexualExploit", "sexual_exploitation"),
            ("isOtherExploit", "other"),
            ("isForcedMarriage", "forced_marriage"),
            ("isForcedMilitary", "forced_military"),
            ("isOrganRemoval", "organ_removal"),
            ("typeOfLabourBegging", "forced_begging"),
            ("typeOfLabourIllicitActivities", "forced_criminality"),
        ],
    );
    set_flags(
        &mut p,
        "labour_sectors",
        &[
            ("typeOfLabourAgriculture", "agriculture"),
            ("typeOfLabourAquafarming", "fishing"),
            ("typeOfLabourBegging", "begging"),
            ("typeOfLabourConstruction", "construction"),
            ("typeOfLabourDomesticWork", "domestic_work"),
            ("typeOfLabourHospitality", "hospitality"),
            ("typeOfLabourIllicitActivities", "illicit_activities"),
            ("typeOfLabourManufacturing", "manufacturing"),
            ("typeOfLabourMiningOrDrilling", "mining"),
            ("typeOfLabourPeddling", "peddling"),
            ("typeOfLabourTransportation", "transport"),
            ("typeOfLabourOther", "other"),
        ],
    );
    set_flags(
        &mut p,
        "recruiter_relation",
        &[
            ("recruiterRelationIntimatePartner", "intimate_partner"),
            ("recruiterRelationFriend", "friend"),
            ("recruiterRelationFamily", "family"),
            ("recruiterRelationOther", "other"),
        ],
    );
    p
}
