//! The contract of ctstats: the canonical record every NGO file is mapped to, as an Arrow schema
//! with a version, its code lists, the ISO 3166-1 countries and the CTDC age bands.
//!
//! Depends on nothing else of ours. `ingest` writes records of this shape; `query` reads them and
//! takes its public grouping domains from the code lists here.
//!
//! Architecture invariant: no field of the canonical record can hold a direct identifier. Names,
//! birth dates, document numbers, phones, addresses and notes have no column; persons and records
//! are known only by keyed pseudonyms (`person_key`, `record_key`).

pub mod codes;
pub mod countries;
pub mod manifest;
pub mod pseudonyms;

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Serialize;

use codes::*;

/// Version of the canonical record. Bump the minor for an added nullable field or code, the major
/// for anything that changes the meaning of stored data.
pub const SCHEMA_VERSION: &str = "1.0";

/// Parquet key-value metadata keys written with every batch file.
pub mod meta {
    pub const SCHEMA_VERSION: &str = "ctstats.schema_version";
    pub const KEY_ID: &str = "ctstats.key_id";
    pub const BATCH_ID: &str = "ctstats.batch_id";
}

/// What values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FieldKind {
    /// Free text chosen by ctstats itself (batch ids, organisation ids): never NGO free text.
    Id,
    /// A keyed BLAKE3 pseudonym of 16 bytes: stored as raw bytes (format 2 datasets) or as 32
    /// lowercase hex characters (format 1), shown as hex.
    Pseudonym,
    /// One value of a code list.
    Code { list: &'static str },
    /// A set of values of a code list.
    CodeSet { list: &'static str },
    /// An ISO 3166-1 alpha-3 code.
    Country,
    /// A month, stored as the first day of the month.
    Month,
    /// A nullable boolean: null is "not recorded", distinct from `false`.
    Flag,
    /// An instant in UTC.
    Timestamp,
}

/// The group a field belongs to in the design document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldGroup {
    Provenance,
    Time,
    Person,
    Exploitation,
    Assistance,
    Legal,
}

/// One column of the canonical record.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FieldDef {
    pub name: &'static str,
    pub group: FieldGroup,
    #[serde(flatten)]
    pub kind: FieldKind,
    pub nullable: bool,
    pub description: &'static str,
}

impl FieldDef {
    /// The Arrow type the field is stored as in a dataset of the current format.
    pub fn data_type(&self) -> DataType {
        self.data_type_in(KeyEncoding::CURRENT)
    }

    /// The Arrow type the field is stored as in a dataset whose keys are stored as `keys`.
    pub fn data_type_in(&self, keys: KeyEncoding) -> DataType {
        match self.kind {
            FieldKind::Pseudonym => match keys {
                KeyEncoding::Binary => DataType::FixedSizeBinary(pseudonyms::BYTES as i32),
                KeyEncoding::Hex => DataType::Utf8,
            },
            FieldKind::Id | FieldKind::Code { .. } | FieldKind::Country => DataType::Utf8,
            FieldKind::CodeSet { .. } => {
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, false)))
            }
            FieldKind::Month => DataType::Date32,
            FieldKind::Flag => DataType::Boolean,
            FieldKind::Timestamp => {
                DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into()))
            }
        }
    }

    /// The allowed stored values of a coded field.
    pub fn allowed_values(&self) -> Option<Vec<&'static str>> {
        match self.kind {
            FieldKind::Code { list } | FieldKind::CodeSet { list } => code_list_names(list),
            _ => None,
        }
    }
}

/// The stored names of the code list called `list`.
pub fn code_list_names(list: &str) -> Option<Vec<&'static str>> {
    Some(match list {
        OrgType::LIST => names::<OrgType>(),
        DataSource::LIST => names::<DataSource>(),
        PersonLinkQuality::LIST => names::<PersonLinkQuality>(),
        Gender::LIST => names::<Gender>(),
        AgeBand::LIST => names::<AgeBand>(),
        DurationBand::LIST => names::<DurationBand>(),
        TraffickingStatus::LIST => names::<TraffickingStatus>(),
        ExploitationType::LIST => names::<ExploitationType>(),
        LabourSector::LIST => names::<LabourSector>(),
        MeansOfControl::LIST => names::<MeansOfControl>(),
        RecruiterRelation::LIST => names::<RecruiterRelation>(),
        ReferralSource::LIST => names::<ReferralSource>(),
        AssistanceType::LIST => names::<AssistanceType>(),
        ReturnType::LIST => names::<ReturnType>(),
        ReintegrationOutcome::LIST => names::<ReintegrationOutcome>(),
        CaseStatus::LIST => names::<CaseStatus>(),
        LegalOutcome::LIST => names::<LegalOutcome>(),
        _ => return None,
    })
}

macro_rules! field {
    ($name:literal, $group:ident, $kind:expr, $nullable:literal, $desc:literal) => {
        FieldDef {
            name: $name,
            group: FieldGroup::$group,
            kind: $kind,
            nullable: $nullable,
            description: $desc,
        }
    };
}

const fn code(list: &'static str) -> FieldKind {
    FieldKind::Code { list }
}
const fn code_set(list: &'static str) -> FieldKind {
    FieldKind::CodeSet { list }
}
use FieldKind::{Country, Flag, Id, Month, Pseudonym, Timestamp};

/// Every column of the canonical record, in stored order.
pub const FIELDS: &[FieldDef] = &[
    field!(
        "schema_version",
        Provenance,
        Id,
        false,
        "Version of the canonical record the row was written with."
    ),
    field!(
        "batch_id",
        Provenance,
        Id,
        false,
        "Batch that committed the row."
    ),
    field!(
        "submitting_org",
        Provenance,
        Id,
        false,
        "Organisation that submitted the batch."
    ),
    field!(
        "org_type",
        Provenance,
        code("org_type"),
        true,
        "Kind of the submitting organisation."
    ),
    field!(
        "reporting_mission",
        Provenance,
        Country,
        false,
        "Mission (country office, ISO alpha-3) the batch reports to."
    ),
    field!(
        "data_source",
        Provenance,
        code("data_source"),
        true,
        "Where the record comes from."
    ),
    field!(
        "record_key",
        Provenance,
        Pseudonym,
        false,
        "Pseudonym of the organisation and its local case id; a later row with the same key supersedes the earlier one."
    ),
    field!(
        "person_key",
        Provenance,
        Pseudonym,
        false,
        "Pseudonym of the person: the privacy unit. Records that cannot be linked get a key of their own."
    ),
    field!(
        "person_link_quality",
        Provenance,
        code("person_link_quality"),
        false,
        "Which identity rule produced person_key."
    ),
    field!(
        "ingested_at",
        Provenance,
        Timestamp,
        false,
        "When the batch was committed."
    ),
    field!(
        "registration_month",
        Time,
        Month,
        false,
        "Month the person was registered for assistance."
    ),
    field!(
        "identification_month",
        Time,
        Month,
        true,
        "Month the person was identified as a (possible) victim."
    ),
    field!(
        "case_closed_month",
        Time,
        Month,
        true,
        "Month the case was closed."
    ),
    field!(
        "trafficking_duration_band",
        Time,
        code("trafficking_duration_band"),
        true,
        "How long the exploitation lasted."
    ),
    field!(
        "gender",
        Person,
        code("gender"),
        true,
        "Gender as recorded."
    ),
    field!(
        "age_band",
        Person,
        code("age_band"),
        true,
        "Age at registration, CTDC band."
    ),
    field!(
        "minor_at_registration",
        Person,
        Flag,
        true,
        "Under 18 at registration."
    ),
    field!(
        "minor_at_exploitation",
        Person,
        Flag,
        true,
        "Under 18 when exploitation began."
    ),
    field!(
        "citizenship",
        Person,
        Country,
        true,
        "Citizenship (ISO alpha-3)."
    ),
    field!(
        "country_of_recruitment",
        Person,
        Country,
        true,
        "Country where the person was recruited (ISO alpha-3)."
    ),
    field!(
        "country_of_exploitation",
        Person,
        Country,
        true,
        "Country where the person was exploited (ISO alpha-3)."
    ),
    field!(
        "country_of_exploitation_is_proxy",
        Person,
        Flag,
        true,
        "The country of exploitation is the country of identification, used as a proxy."
    ),
    field!(
        "trafficking_status",
        Exploitation,
        code("trafficking_status"),
        true,
        "Actual, possible or not a victim."
    ),
    field!(
        "exploitation_types",
        Exploitation,
        code_set("exploitation_type"),
        true,
        "Types of exploitation."
    ),
    field!(
        "labour_sectors",
        Exploitation,
        code_set("labour_sector"),
        true,
        "Sectors of forced labour."
    ),
    field!(
        "means_of_control",
        Exploitation,
        code_set("means_of_control"),
        true,
        "Means of control used."
    ),
    field!(
        "recruiter_relation",
        Exploitation,
        code("recruiter_relation"),
        true,
        "Relation of the recruiter to the person."
    ),
    field!(
        "abduction",
        Exploitation,
        Flag,
        true,
        "The person was abducted."
    ),
    field!(
        "referral_source",
        Assistance,
        code("referral_source"),
        true,
        "Who referred or identified the person."
    ),
    field!(
        "shelter_offered",
        Assistance,
        Flag,
        true,
        "Shelter was offered."
    ),
    field!(
        "shelter_accepted",
        Assistance,
        Flag,
        true,
        "Shelter was accepted."
    ),
    field!(
        "assistance_types",
        Assistance,
        code_set("assistance_type"),
        true,
        "Kinds of assistance given."
    ),
    field!(
        "assisted_return",
        Assistance,
        Flag,
        true,
        "The person was helped to return."
    ),
    field!(
        "return_type",
        Assistance,
        code("return_type"),
        true,
        "Where the person returned to."
    ),
    field!(
        "reintegration_outcome",
        Assistance,
        code("reintegration_outcome"),
        true,
        "Where reintegration stands."
    ),
    field!(
        "case_status",
        Assistance,
        code("case_status"),
        true,
        "Open or closed."
    ),
    field!(
        "reported_to_law_enforcement",
        Legal,
        Flag,
        true,
        "The case was reported to law enforcement."
    ),
    field!(
        "cooperated_with_investigation",
        Legal,
        Flag,
        true,
        "The person cooperated with an investigation."
    ),
    field!(
        "participated_in_trial",
        Legal,
        Flag,
        true,
        "The person took part in a trial."
    ),
    field!(
        "legal_outcome",
        Legal,
        code("legal_outcome"),
        true,
        "Furthest legal outcome."
    ),
];

/// The field called `name`.
pub fn field(name: &str) -> Option<&'static FieldDef> {
    FIELDS.iter().find(|f| f.name == name)
}

/// How a dataset stores its pseudonyms (`record_key`, `person_key`); fixed by the dataset's
/// manifest format, so every file of one dataset has one schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEncoding {
    /// 32 lowercase hex characters in a Utf8 column: datasets of manifest format 1.
    Hex,
    /// 16 raw bytes in a `FixedSizeBinary(16)` column: datasets of manifest format 2 on. Half
    /// the bytes, no dictionary, and a sort compares 16 bytes instead of 32 characters.
    Binary,
}

impl KeyEncoding {
    /// The encoding new datasets are created with.
    pub const CURRENT: KeyEncoding = KeyEncoding::Binary;
}

/// The canonical record as an Arrow schema of the current format, carrying its version in the
/// schema metadata.
pub fn arrow_schema() -> SchemaRef {
    arrow_schema_for(KeyEncoding::CURRENT)
}

/// The canonical record as stored by a dataset whose keys are stored as `keys`.
pub fn arrow_schema_for(keys: KeyEncoding) -> SchemaRef {
    static BINARY: OnceLock<SchemaRef> = OnceLock::new();
    static HEX: OnceLock<SchemaRef> = OnceLock::new();
    let cell = match keys {
        KeyEncoding::Binary => &BINARY,
        KeyEncoding::Hex => &HEX,
    };
    cell.get_or_init(|| {
        let fields: Vec<Field> = FIELDS
            .iter()
            .map(|f| Field::new(f.name, f.data_type_in(keys), f.nullable))
            .collect();
        let metadata = [(meta::SCHEMA_VERSION.to_string(), SCHEMA_VERSION.to_string())];
        Arc::new(Schema::new(fields).with_metadata(metadata.into_iter().collect()))
    })
    .clone()
}

/// The schema document handed to NGOs: every field with its type and allowed values.
#[derive(Debug, Serialize)]
pub struct SchemaDocument {
    pub schema_version: &'static str,
    pub fields: Vec<DocumentedField>,
    pub age_bands: Vec<&'static str>,
    pub countries: &'static [countries::Country],
}

#[derive(Debug, Serialize)]
pub struct DocumentedField {
    #[serde(flatten)]
    pub def: FieldDef,
    pub arrow_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<&'static str>>,
}

/// Describe the canonical record.
pub fn document() -> SchemaDocument {
    SchemaDocument {
        schema_version: SCHEMA_VERSION,
        fields: FIELDS
            .iter()
            .map(|f| DocumentedField {
                def: *f,
                arrow_type: f.data_type().to_string(),
                values: f.allowed_values(),
            })
            .collect(),
        age_bands: names::<AgeBand>(),
        countries: countries::all(),
    }
}

/// The schema document as Markdown.
pub fn document_markdown() -> String {
    use std::fmt::Write;
    let doc = document();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# ctstats canonical record, version {}\n",
        doc.schema_version
    );
    let _ = writeln!(
        out,
        "One row is one assistance episode (case) of one person at one organisation. \
         Null means \"not recorded\". Countries are ISO 3166-1 alpha-3 codes.\n"
    );
    let _ = writeln!(
        out,
        "| field | group | type | required | values | description |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for f in &doc.fields {
        let kind = match f.def.kind {
            FieldKind::Id => "id".to_string(),
            FieldKind::Pseudonym => "pseudonym".to_string(),
            FieldKind::Code { list } => format!("code ({list})"),
            FieldKind::CodeSet { list } => format!("list of {list}"),
            FieldKind::Country => "country".to_string(),
            FieldKind::Month => "month".to_string(),
            FieldKind::Flag => "yes/no".to_string(),
            FieldKind::Timestamp => "timestamp".to_string(),
        };
        let values = f.values.as_ref().map(|v| v.join(", ")).unwrap_or_default();
        let group = serde_json::to_value(f.def.group)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} |",
            f.def.name,
            group,
            kind,
            if f.def.nullable { "no" } else { "yes" },
            values,
            f.def.description
        );
    }
    let _ = writeln!(
        out,
        "\nCountries: {} ISO 3166-1 codes (`ctstats schema --format json` lists them).",
        doc.countries.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_coded_field_names_a_known_list() {
        for f in FIELDS {
            if let FieldKind::Code { list } | FieldKind::CodeSet { list } = f.kind {
                assert!(
                    code_list_names(list).is_some(),
                    "{} names unknown list {list}",
                    f.name
                );
            }
        }
    }

    #[test]
    fn field_names_are_unique() {
        let mut names: Vec<_> = FIELDS.iter().map(|f| f.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), FIELDS.len());
    }

    #[test]
    fn no_identifier_column() {
        for banned in [
            "name", "birth", "document", "phone", "email", "address", "note",
        ] {
            assert!(
                FIELDS.iter().all(|f| !f.name.contains(banned)),
                "a canonical field looks like an identifier: {banned}"
            );
        }
    }

    #[test]
    fn schema_carries_version() {
        let s = arrow_schema();
        assert_eq!(
            s.metadata().get(meta::SCHEMA_VERSION).map(String::as_str),
            Some(SCHEMA_VERSION)
        );
        assert_eq!(s.fields().len(), FIELDS.len());
    }

    #[test]
    fn the_two_key_encodings_differ_only_in_the_key_columns() {
        let (hex, binary) = (
            arrow_schema_for(KeyEncoding::Hex),
            arrow_schema_for(KeyEncoding::Binary),
        );
        for (h, b) in hex.fields().iter().zip(binary.fields()) {
            assert_eq!(h.name(), b.name());
            if matches!(h.name().as_str(), "record_key" | "person_key") {
                assert_eq!(h.data_type(), &DataType::Utf8);
                assert_eq!(b.data_type(), &DataType::FixedSizeBinary(16));
            } else {
                assert_eq!(h, b);
            }
        }
        assert_eq!(arrow_schema(), binary);
    }
}
