//! Import profiles: how an NGO's columns and codes map to the canonical record.
//!
//! A profile names, for each target, the source columns that may feed it (matched by name,
//! ignoring case and surrounding space), value maps from the NGO's codes to canonical codes, flag
//! columns that each add one code to a list field, the date formats and the tokens that mean
//! "missing". Built in: `canonical` (our own template), `htcds` (HTCDS 2.0 field names as in its
//! toolkit) and `ctdc` (the CTDC Global Dataset export). A user profile is a TOML file that
//! `extends` one of these.
//!
//! Every profile also accepts the canonical target names as column names, so an NGO can always
//! add a column the standard it follows lacks (HTCDS has no shelter fields, for instance).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ctstats_schemas::FIELDS;
use serde::Deserialize;

/// Targets a source column can feed besides canonical fields: identity inputs (dropped after
/// pseudonymisation) and inputs that are generalised into canonical fields.
pub const INPUT_TARGETS: &[(&str, &str)] = &[
    (
        "local_case_id",
        "The organisation's own case id; with the organisation it makes record_key.",
    ),
    (
        "first_name",
        "Identity input: given name. Hashed into person_key, never stored.",
    ),
    (
        "last_name",
        "Identity input: family name. Hashed into person_key, never stored.",
    ),
    (
        "full_name",
        "Identity input: whole name in one cell. Hashed into person_key, never stored.",
    ),
    (
        "birth_date",
        "Identity input: birth date. Generalised to age_band and minor flags, never stored.",
    ),
    (
        "document_number",
        "Identity input: identity document number. Hashed into person_key, never stored.",
    ),
    (
        "age",
        "Age in whole years at registration. Generalised to age_band.",
    ),
    (
        "age_at_exploitation",
        "Age in whole years when exploitation began. Generalised to minor_at_exploitation.",
    ),
    (
        "registration_year",
        "Year of registration when no date is recorded (CTDC); placed in January.",
    ),
];

/// Canonical fields that ctstats sets itself: no source column may feed them.
pub const DERIVED_FIELDS: &[&str] = &[
    "schema_version",
    "batch_id",
    "submitting_org",
    "reporting_mission",
    "record_key",
    "person_key",
    "person_link_quality",
    "ingested_at",
];

/// Columns that identify a person and are recognised only to be dropped; listed so the report
/// can say they were seen and discarded.
pub const DROPPED_COLUMNS: &[&str] = &[
    "phone",
    "mobile",
    "email",
    "e-mail",
    "address",
    "street",
    "notes",
    "note",
    "comment",
    "comments",
    "prs_email",
    "prs_homephone",
    "prs_mobilephone",
    "prs_mailingstreet",
    "prs_mailingcity",
    "телефон",
    "адрес",
    "примечание",
    "комментарий",
];

/// Whether `target` is something a source column may feed.
pub fn is_target(target: &str) -> bool {
    INPUT_TARGETS.iter().any(|(t, _)| *t == target)
        || FIELDS
            .iter()
            .any(|f| f.name == target && !DERIVED_FIELDS.contains(&f.name))
}

/// A resolved profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// Target -> accepted source column names, in order of preference.
    pub columns: BTreeMap<String, Vec<String>>,
    /// Target -> (normalised source value -> canonical value). An empty canonical value means
    /// "not recorded".
    pub values: BTreeMap<String, HashMap<String, String>>,
    /// Flag columns: source column -> (list or code target, code) set when the flag is true.
    pub flags: Vec<FlagColumn>,
    pub date_formats: Vec<String>,
    /// Tokens (normalised) that mean "not recorded" in any column.
    pub missing: Vec<String>,
    /// Tokens (normalised) that mean "unknown country".
    pub unknown_country: Vec<String>,
    pub list_separator: char,
    /// Target -> value used when the row has none.
    pub defaults: BTreeMap<String, String>,
    /// Whether the source has no case ids, so the row number within the file serves as one
    /// (CTDC exports are de-identified and carry none).
    pub case_id_from_row: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagColumn {
    pub column: String,
    pub target: String,
    pub code: String,
}

/// Problems with a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "unknown profile {0:?}: built in are canonical, htcds and ctdc, or give a path to a .toml profile"
    )]
    Unknown(String),
    #[error("cannot read profile {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("profile {path} is not valid TOML: {message}")]
    Toml { path: String, message: String },
    #[error("profile {profile}: {message}")]
    Invalid { profile: String, message: String },
}

/// Normalise a header name or a code for matching: trimmed, lower case, inner whitespace folded.
pub fn normalise_token(s: &str) -> String {
    let lower = s.trim().to_lowercase();
    lower.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Profile {
    /// A built-in profile by name, or a TOML profile from a path.
    pub fn load(name_or_path: &str) -> Result<Profile, ProfileError> {
        match name_or_path {
            "canonical" => Ok(canonical()),
            "htcds" => Ok(htcds()),
            "ctdc" => Ok(ctdc()),
            other if other.ends_with(".toml") || Path::new(other).exists() => {
                let text = std::fs::read_to_string(other).map_err(|source| ProfileError::Read {
                    path: other.into(),
                    source,
                })?;
                Profile::from_toml(other, &text)
            }
            other => Err(ProfileError::Unknown(other.into())),
        }
    }

    /// Parse a user profile. `origin` names it in errors.
    pub fn from_toml(origin: &str, text: &str) -> Result<Profile, ProfileError> {
        let user: UserProfile = toml::from_str(text).map_err(|e| ProfileError::Toml {
            path: origin.into(),
            message: e.message().to_string(),
        })?;
        let base = user.extends.as_deref().unwrap_or("canonical");
        let mut profile = match base {
            "canonical" => canonical(),
            "htcds" => htcds(),
            "ctdc" => ctdc(),
            other => return Err(ProfileError::Unknown(other.into())),
        };
        profile.name = user.name.unwrap_or_else(|| origin.to_string());
        let invalid = |message: String| ProfileError::Invalid {
            profile: origin.into(),
            message,
        };
        for (target, cols) in user.columns {
            if !is_target(&target) {
                return Err(invalid(format!(
                    "[columns] names unknown target {target:?}"
                )));
            }
            let mut cols = cols.into_vec();
            let entry = profile.columns.entry(target).or_default();
            cols.append(entry);
            *entry = cols;
        }
        for (target, map) in user.values {
            if !is_target(&target) {
                return Err(invalid(format!("[values.{target}] names unknown target")));
            }
            let entry = profile.values.entry(target).or_default();
            for (from, to) in map {
                entry.insert(normalise_token(&from), to);
            }
        }
        for (column, spec) in user.flags {
            let (target, code) = spec
                .split_once(':')
                .ok_or_else(|| invalid(format!("[flags] {column:?} must be \"target:code\"")))?;
            if !is_target(target) {
                return Err(invalid(format!(
                    "[flags] {column:?} names unknown target {target:?}"
                )));
            }
            profile.flags.push(FlagColumn {
                column,
                target: target.into(),
                code: code.into(),
            });
        }
        for (target, value) in user.defaults {
            if !is_target(&target) {
                return Err(invalid(format!(
                    "[defaults] names unknown target {target:?}"
                )));
            }
            profile.defaults.insert(target, value);
        }
        if let Some(formats) = user.date_formats {
            // User formats are tried first.
            let mut formats = formats;
            formats.append(&mut profile.date_formats);
            profile.date_formats = formats;
        }
        profile
            .missing
            .extend(user.missing.iter().map(|m| normalise_token(m)));
        if let Some(sep) = user.list_separator {
            let mut chars = sep.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => profile.list_separator = c,
                _ => return Err(invalid("list_separator must be one character".into())),
            }
        }
        if let Some(from_row) = user.case_id_from_row {
            profile.case_id_from_row = from_row;
        }
        profile.validate().map_err(invalid)?;
        Ok(profile)
    }

    /// Check that every value map and default names a canonical code.
    fn validate(&self) -> Result<(), String> {
        for (target, map) in &self.values {
            if let Some(allowed) = ctstats_schemas::field(target).and_then(|f| f.allowed_values()) {
                for (from, to) in map {
                    if !to.is_empty() && !allowed.contains(&to.as_str()) {
                        return Err(format!(
                            "[values.{target}] maps {from:?} to {to:?}, which is not one of: {}",
                            allowed.join(", ")
                        ));
                    }
                }
            }
        }
        for flag in &self.flags {
            if let Some(allowed) =
                ctstats_schemas::field(&flag.target).and_then(|f| f.allowed_values())
                && !allowed.contains(&flag.code.as_str())
            {
                return Err(format!(
                    "flag column {:?} sets unknown code {:?}",
                    flag.column, flag.code
                ));
            }
        }
        Ok(())
    }

    /// Accepted source column names for `target`: the profile's own, then the target's name.
    pub fn column_names(&self, target: &str) -> Vec<String> {
        let mut names: Vec<String> = self.columns.get(target).cloned().unwrap_or_default();
        names.push(target.to_string());
        names
    }

    /// Whether a normalised token means "not recorded".
    pub fn is_missing(&self, normalised: &str) -> bool {
        normalised.is_empty() || self.missing.iter().any(|m| m == normalised)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserProfile {
    name: Option<String>,
    extends: Option<String>,
    #[serde(default)]
    columns: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    values: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    flags: BTreeMap<String, String>,
    #[serde(default)]
    defaults: BTreeMap<String, String>,
    date_formats: Option<Vec<String>>,
    #[serde(default)]
    missing: Vec<String>,
    list_separator: Option<String>,
    case_id_from_row: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_profiles_are_valid() {
        for p in [canonical(), htcds(), ctdc()] {
            p.validate().unwrap_or_else(|e| panic!("{}: {e}", p.name));
            for target in p.columns.keys().chain(p.values.keys()) {
                assert!(is_target(target), "{}: {target}", p.name);
            }
        }
    }

    #[test]
    fn user_profile_extends_a_built_in() {
        let p = Profile::from_toml(
            "ngo.toml",
            r#"
            extends = "canonical"
            name = "ngo-osh"
            date_formats = ["%m/%d/%Y"]
            missing = ["нд"]
            [columns]
            gender = "Пол жертвы"
            local_case_id = ["Номер", "No"]
            [values.gender]
            "Ж." = "female"
            [flags]
            "Приют" = "assistance_types:shelter"
            [defaults]
            data_source = "case_management"
            "#,
        )
        .unwrap();
        assert_eq!(p.name, "ngo-osh");
        assert_eq!(p.column_names("gender")[0], "Пол жертвы");
        assert_eq!(p.values["gender"]["ж."], "female");
        assert_eq!(p.date_formats[0], "%m/%d/%Y");
        assert!(p.is_missing("нд"));
        assert_eq!(p.flags.last().unwrap().code, "shelter");
    }

    #[test]
    fn user_profile_errors_name_the_problem() {
        let err = |t: &str| Profile::from_toml("p.toml", t).unwrap_err().to_string();
        assert!(err("[columns]\nperson_key = \"x\"").contains("unknown target \"person_key\""));
        assert!(err("[values.gender]\n\"x\" = \"woman\"").contains("not one of"));
        assert!(err("[flags]\nx = \"shelter\"").contains("target:code"));
        assert!(err("colums = 1").contains("not valid TOML"));
        assert!(err("extends = \"foo\"").contains("unknown profile"));
    }
}
