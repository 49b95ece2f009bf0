//! What happened, before any file format: organisations, persons and their assistance episodes.
//!
//! A person is a pure function of (seed, person index, identity attempt): the planner draws one
//! person at a time, and the writers rebuild each person again when its row comes up in file
//! order, so no more than a few bytes per person are ever held in memory.
//!
//! This module holds the types and the context derived from the configuration; `person` draws
//! persons and where they register, `episode` what each of their cases records, and `tables`
//! the distributions both draw from.

mod episode;
mod person;
mod tables;
#[cfg(test)]
mod tests;

use chrono::{Datelike, Days, NaiveDate};
use ctstats_schemas::countries;

use crate::names::{self, Region};
use crate::{Config, Error, FileFormat, ProfileKind};

pub(crate) use person::{identity_key, person, plan, rebuild};

/// One NGO: it writes one file.
#[derive(Debug, Clone)]
pub(crate) struct Org {
    /// Organisation id, e.g. `kgz-ngo-1`.
    pub id: String,
    /// Mission (ISO alpha-3) the NGO reports to.
    pub mission: &'static str,
    pub mission_index: usize,
    /// Position of the NGO within its mission, from 1.
    pub number: usize,
    /// The NGO keeps its register in Russian: Cyrillic headers, names mostly in Cyrillic,
    /// `DD.MM.YYYY` dates, да/нет.
    pub cyrillic: bool,
    pub format: FileFormat,
    /// File name, relative to the output directory.
    pub path: String,
}

/// Everything derived once from the configuration.
#[derive(Debug)]
pub(crate) struct Ctx<'c> {
    pub config: &'c Config,
    pub missions: Vec<&'static str>,
    pub orgs: Vec<Org>,
    pub orgs_of_mission: Vec<Vec<usize>>,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    /// Document numbers are `digits` long: an affine bijection of the person index modulo
    /// 10^digits, so no two persons share one.
    pub document_digits: u32,
    /// Given and family name indices by (female, region).
    given_by_region: [[Vec<u16>; 2]; 2],
    family_by_region: [Vec<u16>; 2],
}

/// Central Asian countries: labour exploitation dominates among their citizens.
const CENTRAL_ASIA: &[&str] = &["KAZ", "KGZ", "TJK", "UZB", "TKM", "AFG"];

fn region_slot(region: Region) -> usize {
    match region {
        Region::CentralAsia => 0,
        Region::EasternEurope => 1,
    }
}

impl<'c> Ctx<'c> {
    pub(crate) fn new(config: &'c Config) -> Result<Ctx<'c>, Error> {
        let mut missions = Vec::new();
        for m in &config.missions {
            let country =
                countries::by_alpha3(&m.trim().to_ascii_uppercase()).ok_or_else(|| {
                    Error::Config(format!("mission {m:?} is not an ISO 3166-1 alpha-3 code"))
                })?;
            if missions.contains(&country.alpha3) {
                return Err(Error::Config(format!("mission {m:?} is listed twice")));
            }
            missions.push(country.alpha3);
        }
        let mut orgs = Vec::new();
        let mut orgs_of_mission = Vec::new();
        for (mission_index, mission) in missions.iter().enumerate() {
            let mut of_mission = Vec::new();
            for number in 1..=config.ngos_per_mission {
                let global = orgs.len();
                let format = config.formats[global % config.formats.len()];
                let id = format!("{}-ngo-{number}", mission.to_ascii_lowercase());
                // Moldovan NGOs write Romanian in Latin script first; elsewhere the first NGO of a
                // mission keeps its register in Russian.
                let cyrillic = (number % 2 == 1) != (*mission == "MDA");
                let path = format!("{mission}-{id}.{}", format.extension());
                of_mission.push(global);
                orgs.push(Org {
                    id,
                    mission,
                    mission_index,
                    number,
                    cyrillic,
                    format,
                    path,
                });
            }
            orgs_of_mission.push(of_mission);
        }
        let day = |y, m, d| {
            NaiveDate::from_ymd_opt(y, m, d)
                .ok_or_else(|| Error::Config(format!("year {y} is out of range")))
        };
        let by =
            |female: bool, region: Region| names::indices_of(names::given(female), region, |n| n.2);
        Ok(Ctx {
            config,
            missions,
            orgs,
            orgs_of_mission,
            first_day: day(config.first_year, 1, 1)?,
            last_day: day(config.last_year, 12, 31)?,
            document_digits: if config.persons <= 10_000_000 { 7 } else { 9 },
            given_by_region: [
                [
                    by(false, Region::CentralAsia),
                    by(false, Region::EasternEurope),
                ],
                [
                    by(true, Region::CentralAsia),
                    by(true, Region::EasternEurope),
                ],
            ],
            family_by_region: [
                names::indices_of(names::family(), Region::CentralAsia, |n| n.4),
                names::indices_of(names::family(), Region::EasternEurope, |n| n.4),
            ],
        })
    }

    pub(crate) fn seed(&self) -> u64 {
        self.config.seed
    }

    pub(crate) fn profile(&self) -> ProfileKind {
        self.config.profile
    }

    /// Whether persons must have distinct (name, birth date, citizenship): the profiles that
    /// carry identities, for the persons who link by that rule rather than by a document.
    pub(crate) fn has_identities(&self) -> bool {
        self.config.profile != ProfileKind::Ctdc
    }
}

/// An injected fault: one per dirty row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A registration date that does not exist, such as 31.02.2005.
    ImpossibleDate,
    /// A gender code the profile does not know.
    UnknownGender,
    /// No local case id.
    MissingCaseId,
    /// A registration date in 2099.
    FutureDate,
    /// A country code that is not ISO 3166-1 (`QQ`).
    UnknownCountry,
    /// A yes/no cell holding `maybe`.
    BadFlag,
    /// UTF-8 read as a single-byte code page (`Ð¶` for `ж`) in the gender column.
    StrayEncoding,
}

impl Fault {
    /// The ingest rule the fault breaks.
    pub(crate) fn rule(self) -> &'static str {
        match self {
            Fault::ImpossibleDate => "invalid_date",
            Fault::UnknownGender | Fault::StrayEncoding => "unknown_code",
            Fault::MissingCaseId => "required",
            Fault::FutureDate => "date_in_future",
            Fault::UnknownCountry => "invalid_country",
            Fault::BadFlag => "invalid_flag",
        }
    }

    /// The faults a profile's files can express (CTDC has no case id and no full dates).
    fn applicable(profile: ProfileKind) -> &'static [Fault] {
        match profile {
            ProfileKind::Ctdc => &[Fault::UnknownGender, Fault::UnknownCountry, Fault::BadFlag],
            ProfileKind::Canonical | ProfileKind::Htcds => &[
                Fault::ImpossibleDate,
                Fault::UnknownGender,
                Fault::MissingCaseId,
                Fault::FutureDate,
                Fault::UnknownCountry,
                Fault::BadFlag,
                Fault::StrayEncoding,
            ],
        }
    }
}

/// Whether a CTDC-style coded value was recorded, recorded as "unknown", or left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    Known,
    Unknown,
    Missing,
}

/// An identity document: prefix letters and a number unique to the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Document {
    pub prefix: &'static str,
    pub number: u64,
    pub digits: u32,
}

impl Document {
    pub(crate) fn latin(&self) -> String {
        format!(
            "{}{:0width$}",
            self.prefix,
            self.number,
            width = self.digits as usize
        )
    }
}

/// One assistance episode (one case, one row) of a person at one organisation. Code fields
/// hold canonical code names; `None` means not recorded.
#[derive(Debug, Clone)]
pub(crate) struct Episode {
    pub org: usize,
    pub registration: NaiveDate,
    /// Names of this episode are written in Cyrillic (else Latin).
    pub cyrillic: bool,
    /// Whole years at the first day of the registration month (as ingest computes it).
    pub age: u32,
    /// Whether the age (birth date, or CTDC age band) is recorded.
    pub age_recorded: bool,
    pub age_at_exploitation: Option<u32>,
    pub gender_recorded: bool,
    pub citizenship: Recorded,
    pub identification: Option<NaiveDate>,
    pub closed: Option<NaiveDate>,
    pub trafficking_status: Option<&'static str>,
    pub exploitation_types: Option<Vec<&'static str>>,
    pub labour_sectors: Option<Vec<&'static str>>,
    pub means_of_control: Option<Vec<&'static str>>,
    pub recruiter_relation: Option<&'static str>,
    pub abduction: Option<bool>,
    pub referral_source: Option<&'static str>,
    /// CTDC `datasource` is `Hotline` rather than `Case management`.
    pub hotline: bool,
    pub country_of_recruitment: Option<&'static str>,
    pub country_of_exploitation: Option<&'static str>,
    pub shelter_offered: Option<bool>,
    pub shelter_accepted: Option<bool>,
    pub assistance_types: Option<Vec<&'static str>>,
    pub assisted_return: Option<bool>,
    pub return_type: Option<&'static str>,
    pub reintegration_outcome: Option<&'static str>,
    pub case_status: Option<&'static str>,
    pub reported_to_law_enforcement: Option<bool>,
    pub cooperated_with_investigation: Option<bool>,
    pub participated_in_trial: Option<bool>,
    pub legal_outcome: Option<&'static str>,
    pub fault: Option<Fault>,
}

impl Episode {
    /// CTDC exports have no dates but the year and no assistance or legal fields: what the file
    /// cannot say is not recorded, so the truth does not count it.
    fn drop_what_ctdc_lacks(&mut self) {
        self.identification = None;
        self.closed = None;
        self.trafficking_status = None;
        self.referral_source = None;
        self.country_of_recruitment = None;
        self.shelter_offered = None;
        self.shelter_accepted = None;
        self.assistance_types = None;
        self.assisted_return = None;
        self.return_type = None;
        self.reintegration_outcome = None;
        self.case_status = None;
        self.reported_to_law_enforcement = None;
        self.cooperated_with_investigation = None;
        self.participated_in_trial = None;
        self.legal_outcome = None;
    }

    /// Minor at registration, as ingest derives it; `None` when the age is not recorded.
    pub(crate) fn minor(&self) -> Option<bool> {
        self.age_recorded.then_some(self.age < 18)
    }
}

/// A person with every episode.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub index: u32,
    pub female: bool,
    pub citizenship: &'static str,
    /// Index into `names::given(female)`.
    pub given: u16,
    /// Index into `names::family()`.
    pub family: u16,
    pub birth: NaiveDate,
    pub document: Option<Document>,
    pub episodes: Vec<Episode>,
}

/// What is drawn for a person before its identity: enough to place its episodes.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    index: u32,
    citizenship: &'static str,
    central_asian: bool,
    primary: &'static str,
    female: bool,
    passport: bool,
    document_prefix: &'static str,
    /// Age in whole years at the first day of the first registration month.
    age: u32,
    /// (organisation, registration date), in date order.
    events: Vec<(usize, NaiveDate)>,
    /// Script of the first episode; later episodes alternate.
    first_cyrillic: bool,
}

impl Plan {
    /// Whether this person links by name, birth date and citizenship, so that combination must
    /// be unique among such persons.
    pub(crate) fn links_by_name(&self, ctx: &Ctx<'_>) -> bool {
        ctx.has_identities() && !self.passport
    }
}

fn days(n: i64) -> Days {
    Days::new(n.unsigned_abs())
}

fn add_days(d: NaiveDate, n: i64) -> NaiveDate {
    if n >= 0 {
        d.checked_add_days(days(n)).unwrap_or(d)
    } else {
        d.checked_sub_days(days(n)).unwrap_or(d)
    }
}

pub(crate) fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}
