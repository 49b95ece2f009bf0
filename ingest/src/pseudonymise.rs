//! Where identifiers die: a mapped row, still holding the raw case id and identity, becomes the
//! output row, which holds only the record key and the person key.
//!
//! Architecture invariant: raw identifiers exist only between parsing and this module. A
//! [`MappedRow`] is taken by value and its [`crate::identity::RawIdentity`] dropped here; nothing
//! else in the crate reads identity material or computes a person key. The keyed hashes
//! themselves are [`PurposeKeys::record_key`] and [`PurposeKeys::person_key`].

use chrono::NaiveDate;
use ctstats_schemas::codes::{CodeList, PersonLinkQuality};

use crate::keys::PurposeKeys;
use crate::map::{MappedRow, Value};

/// A row ready to be written: canonical values plus its pseudonyms.
#[derive(Debug, Clone)]
pub struct OutputRow {
    pub fields: Vec<Value>,
    pub record_key: String,
    pub person_key: String,
    pub person_link_quality: &'static str,
}

/// A pseudonymised row with what the pipeline needs to place and count it.
#[derive(Debug, Clone)]
pub struct Pseudonymised {
    /// Row number as the NGO sees it.
    pub number: u64,
    /// The registration month, which picks the row's partition.
    pub registration: NaiveDate,
    /// The identity rule the person key was made with.
    pub quality: PersonLinkQuality,
    pub row: OutputRow,
}

/// Pseudonymises the rows of one organisation.
#[derive(Debug, Clone, Copy)]
pub struct Pseudonymiser<'a> {
    keys: &'a PurposeKeys,
    organisation: &'a str,
}

impl<'a> Pseudonymiser<'a> {
    pub fn new(keys: &'a PurposeKeys, organisation: &'a str) -> Self {
        Pseudonymiser { keys, organisation }
    }

    /// The record key of one of the organisation's case ids.
    pub fn record_key(&self, local_case_id: &str) -> String {
        self.keys.record_key(self.organisation, local_case_id)
    }

    /// Replace the row's case id and identity by their keys.
    pub fn pseudonymise(&self, mapped: MappedRow) -> Pseudonymised {
        let registration = mapped.registration_month();
        let record_key = self.record_key(&mapped.local_case_id);
        let (person_key, quality) = self
            .keys
            .person_key(&mapped.identity.link_material(), &record_key);
        Pseudonymised {
            number: mapped.number,
            registration,
            quality,
            row: OutputRow {
                fields: mapped.fields,
                record_key,
                person_key,
                person_link_quality: quality.name(),
            },
        }
    }
}
