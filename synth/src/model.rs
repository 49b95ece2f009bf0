//! What happened, before any file format: organisations, persons and their assistance episodes.
//!
//! A person is a pure function of (seed, person index, identity attempt): the planner draws one
//! person at a time, and the writers rebuild each person again when its row comes up in file
//! order, so no more than a few bytes per person are ever held in memory.

use chrono::{Datelike, Days, Months, NaiveDate};
use ctstats_schemas::countries;

use crate::names::{self, Region};
use crate::rng::{self, Rng};
use crate::{Config, Error, FileFormat, ProfileKind};

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

/// Exploitation mixes of the primary type (canonical codes), per citizenship group.
const LABOUR_DOMINANT: &[(&str, u32)] = &[
    ("forced_labour", 70),
    ("sexual_exploitation", 20),
    ("forced_marriage", 3),
    ("forced_begging", 3),
    ("forced_criminality", 2),
    ("other", 2),
];
const SEX_DOMINANT: &[(&str, u32)] = &[
    ("sexual_exploitation", 60),
    ("forced_labour", 30),
    ("forced_begging", 4),
    ("forced_marriage", 2),
    ("forced_criminality", 2),
    ("other", 2),
];

fn female_share(primary: &str) -> f64 {
    match primary {
        "sexual_exploitation" => 0.92,
        "forced_labour" => 0.3,
        "forced_marriage" => 1.0,
        _ => 0.5,
    }
}

fn foreign_pool(mission: &str) -> &'static [(&'static str, u32)] {
    match mission {
        "KAZ" => &[("UZB", 50), ("KGZ", 30), ("TJK", 20)],
        "KGZ" => &[("UZB", 50), ("TJK", 30), ("KAZ", 20)],
        "TJK" => &[("UZB", 50), ("AFG", 30), ("KGZ", 20)],
        "UZB" => &[("TJK", 50), ("KGZ", 30), ("KAZ", 20)],
        "MDA" => &[("UKR", 70), ("RUS", 30)],
        "UKR" => &[("MDA", 50), ("BLR", 30), ("RUS", 20)],
        _ => &[("UZB", 30), ("UKR", 30), ("MDA", 20), ("KGZ", 20)],
    }
}

/// Countries of exploitation by citizenship group and type; `HOME` is the person's own country.
const HOME: &str = "home";
const DESTINATIONS_CA_LABOUR: &[(&str, u32)] = &[
    ("RUS", 50),
    ("KAZ", 20),
    ("TUR", 8),
    ("KOR", 7),
    ("ARE", 5),
    (HOME, 10),
];
const DESTINATIONS_CA_SEX: &[(&str, u32)] = &[
    ("TUR", 25),
    ("ARE", 25),
    ("RUS", 20),
    ("KAZ", 10),
    ("KOR", 5),
    (HOME, 15),
];
const DESTINATIONS_EE_LABOUR: &[(&str, u32)] = &[
    ("RUS", 45),
    ("POL", 20),
    ("DEU", 10),
    ("ISR", 5),
    ("TUR", 10),
    (HOME, 10),
];
const DESTINATIONS_EE_SEX: &[(&str, u32)] = &[
    ("TUR", 25),
    ("ARE", 15),
    ("RUS", 15),
    ("ISR", 10),
    ("POL", 10),
    ("DEU", 10),
    (HOME, 15),
];
const DESTINATIONS_OTHER: &[(&str, u32)] = &[("RUS", 40), ("KAZ", 20), (HOME, 40)];

const LABOUR_SECTORS: &[(&str, u32)] = &[
    ("construction", 30),
    ("agriculture", 20),
    ("manufacturing", 10),
    ("domestic_work", 15),
    ("hospitality", 10),
    ("trade", 8),
    ("transport", 4),
    ("mining", 2),
    ("fishing", 1),
];
const MEANS_OF_CONTROL: &[(&str, u32)] = &[
    ("debt_bondage", 15),
    ("takes_earnings", 15),
    ("restricts_financial_access", 3),
    ("threats", 15),
    ("physical_abuse", 10),
    ("sexual_abuse", 5),
    ("false_promises", 20),
    ("psychoactive_substances", 3),
    ("restricts_movement", 10),
    ("restricts_medical_care", 2),
    ("psychological_abuse", 10),
    ("excessive_working_hours", 10),
    ("uses_children", 1),
    ("threat_of_law_enforcement", 5),
    ("withholds_necessities", 5),
    ("withholds_documents", 20),
    ("other", 2),
];
const RECRUITER_RELATIONS: &[(&str, u32)] = &[
    ("intimate_partner", 10),
    ("friend", 20),
    ("family", 10),
    ("acquaintance", 25),
    ("employer", 20),
    ("stranger", 10),
    ("other", 5),
];
const REFERRAL_SOURCES: &[(&str, u32)] = &[
    ("self", 15),
    ("family_or_friends", 10),
    ("law_enforcement", 20),
    ("ngo", 15),
    ("international_organisation", 15),
    ("government", 5),
    ("hotline", 10),
    ("consular_service", 8),
    ("other", 2),
];
const ASSISTANCE_TYPES: &[(&str, u32)] = &[
    ("shelter", 0),
    ("medical", 30),
    ("psychosocial", 30),
    ("legal", 20),
    ("financial", 10),
    ("education", 5),
    ("vocational_training", 10),
    ("employment", 5),
    ("travel_documents", 10),
    ("return_travel", 10),
    ("reintegration", 15),
    ("other", 2),
];
const TRAFFICKING_STATUSES: &[(&str, u32)] =
    &[("actual", 82), ("possible", 15), ("not_a_victim", 3)];
const RETURN_TYPES: &[(&str, u32)] = &[
    ("to_country_of_origin", 90),
    ("to_third_country", 5),
    ("internal", 5),
];
const REINTEGRATION_OUTCOMES: &[(&str, u32)] = &[
    ("not_started", 15),
    ("ongoing", 40),
    ("completed", 35),
    ("dropped_out", 10),
];

/// Document number prefixes by citizenship. Only letters whose Cyrillic look-alike romanises
/// back to them are used, so a number typed in Cyrillic links to the same number in Latin.
fn document_prefixes(citizenship: &str) -> &'static [&'static str] {
    match citizenship {
        "KGZ" => &["AN", "ID"],
        "KAZ" => &["N"],
        "UZB" => &["AA", "AB"],
        "TJK" => &["A"],
        "MDA" => &["A", "B"],
        "UKR" => &["EK", "KM", "MT"],
        "RUS" => &["75"],
        _ => &["P"],
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

/// Age in whole years at registration: 15% minors of 12 to 17, adults mostly young.
fn draw_age(r: &mut Rng) -> u32 {
    let (lo, hi) = if r.chance(0.15) {
        (12, 17)
    } else {
        r.weighted(&[
            ((18, 24), 30),
            ((25, 34), 35),
            ((35, 44), 20),
            ((45, 60), 15),
        ])
    };
    r.range(lo, hi) as u32
}

/// `k` registration dates in the configured years, preferably at least a year apart.
fn registration_dates(ctx: &Ctx<'_>, r: &mut Rng, k: usize) -> Vec<NaiveDate> {
    let span = (ctx.last_day - ctx.first_day).num_days();
    let mut offsets = Vec::new();
    for _ in 0..30 {
        offsets = (0..k).map(|_| r.range(0, span)).collect::<Vec<_>>();
        offsets.sort_unstable();
        if offsets.windows(2).all(|w| w[1] - w[0] >= 365) {
            break;
        }
    }
    offsets
        .into_iter()
        .map(|o| add_days(ctx.first_day, o))
        .collect()
}

fn mission_of(ctx: &Ctx<'_>, code: &str) -> Option<usize> {
    ctx.missions.iter().position(|m| *m == code)
}

/// Another mission than `current`: the person's own country's when it is a mission, else any.
fn other_mission(ctx: &Ctx<'_>, r: &mut Rng, current: usize, citizenship: &str) -> Option<usize> {
    match mission_of(ctx, citizenship) {
        Some(m) if m != current => Some(m),
        _ if ctx.missions.len() > 1 => {
            let pick = r.below(ctx.missions.len() as u64 - 1) as usize;
            Some(if pick >= current { pick + 1 } else { pick })
        }
        _ => None,
    }
}

/// Another NGO of the same mission, when there is one.
fn sibling(ctx: &Ctx<'_>, r: &mut Rng, org: usize) -> Option<usize> {
    let of = &ctx.orgs_of_mission[ctx.orgs[org].mission_index];
    let others: Vec<usize> = of.iter().copied().filter(|o| *o != org).collect();
    (!others.is_empty()).then(|| *r.pick(&others))
}

/// Where a person registers again, years later: mostly the same NGO.
fn next_org(ctx: &Ctx<'_>, r: &mut Rng, org: usize, citizenship: &str) -> usize {
    let u = r.unit();
    if u < 0.7 {
        return org;
    }
    if u < 0.9 {
        return sibling(ctx, r, org).unwrap_or(org);
    }
    match other_mission(ctx, r, ctx.orgs[org].mission_index, citizenship) {
        Some(m) => *r.pick(&ctx.orgs_of_mission[m]),
        None => sibling(ctx, r, org).unwrap_or(org),
    }
}

/// A second NGO that opens its own case for the same person (a referral), if any exists.
fn referral_org(ctx: &Ctx<'_>, r: &mut Rng, org: usize, citizenship: &str) -> Option<usize> {
    if r.chance(0.6)
        && let Some(s) = sibling(ctx, r, org)
    {
        return Some(s);
    }
    match other_mission(ctx, r, ctx.orgs[org].mission_index, citizenship) {
        Some(m) => Some(*r.pick(&ctx.orgs_of_mission[m])),
        None => sibling(ctx, r, org),
    }
}

/// Draw everything about person `index` that places its episodes.
pub(crate) fn plan(ctx: &Ctx<'_>, index: u32) -> Plan {
    let mut r = Rng::new(ctx.seed(), u64::from(index), 0, rng::PERSON);
    let mission = r.below(ctx.missions.len() as u64) as usize;
    let home = ctx.missions[mission];
    let citizenship = if r.chance(0.85) {
        home
    } else if ctx.profile() == ProfileKind::Ctdc && r.chance(0.05) {
        // CTDC writes Namibia as `NA`, which a careless reader takes for a missing value.
        "NAM"
    } else {
        r.weighted(foreign_pool(home))
    };
    let central_asian = CENTRAL_ASIA.contains(&citizenship);
    let primary = r.weighted(if central_asian {
        LABOUR_DOMINANT
    } else {
        SEX_DOMINANT
    });
    let female = r.chance(female_share(primary));
    let passport = r.chance(0.6);
    let document_prefix = *r.pick(document_prefixes(citizenship));
    let age = draw_age(&mut r);
    let registrations = match r.unit() {
        u if u < 0.02 => 3,
        u if u < 0.12 => 2,
        _ => 1,
    };
    let dates = registration_dates(ctx, &mut r, registrations);
    let first_org = *r.pick(&ctx.orgs_of_mission[mission]);
    let mut events = vec![(first_org, dates[0])];
    let mut org = first_org;
    for date in &dates[1..] {
        org = next_org(ctx, &mut r, org, citizenship);
        events.push((org, *date));
    }
    if r.chance(0.065)
        && let Some(other) = referral_org(ctx, &mut r, first_org, citizenship)
    {
        let date = add_days(dates[0], r.range(0, 60)).min(ctx.last_day);
        events.push((other, date));
    }
    events.sort_by_key(|(_, date)| *date);
    let preferred = ctx.orgs[events[0].0].cyrillic;
    let first_cyrillic = if r.chance(0.1) { !preferred } else { preferred };
    Plan {
        index,
        citizenship,
        central_asian,
        primary,
        female,
        passport,
        document_prefix,
        age,
        events,
        first_cyrillic,
    }
}

/// The name and birth date of a person, for one identity attempt. Later attempts are drawn only
/// when an earlier one collides with another person's name, birth date and citizenship.
fn identity(ctx: &Ctx<'_>, plan: &Plan, attempt: u8) -> (u16, u16, NaiveDate) {
    let mut r = Rng::new(
        ctx.seed(),
        u64::from(plan.index),
        u64::from(attempt),
        rng::IDENTITY,
    );
    let home_region = if plan.central_asian {
        Region::CentralAsia
    } else {
        Region::EasternEurope
    };
    let region = if r.chance(if plan.central_asian { 0.8 } else { 0.9 }) {
        home_region
    } else if home_region == Region::CentralAsia {
        Region::EasternEurope
    } else {
        Region::CentralAsia
    };
    let slot = region_slot(region);
    let given = *r.pick(&ctx.given_by_region[usize::from(plan.female)][slot]);
    let family = *r.pick(&ctx.family_by_region[slot]);
    let anchor = month_start(plan.events[0].1);
    let birth = anchor
        .checked_sub_months(Months::new(12 * plan.age))
        .map(|d| add_days(d, -(r.below(365) as i64)))
        .unwrap_or(anchor);
    (given, family, birth)
}

/// A key that is equal for two persons exactly when ingest would link them by name, birth date
/// and citizenship (given names are distinct per gender, family names per gender form).
pub(crate) fn identity_key(ctx: &Ctx<'_>, plan: &Plan, attempt: u8) -> u64 {
    let (given, family, birth) = identity(ctx, plan, attempt);
    let citizenship = countries::all()
        .iter()
        .position(|c| c.alpha3 == plan.citizenship)
        .unwrap_or(0) as u64;
    u64::from(given)
        | u64::from(family) << 8
        | u64::from(plan.female) << 16
        | citizenship << 17
        | (birth.num_days_from_ce() as u64) << 25
}

/// The whole person: identity from `attempt`, then every episode.
pub(crate) fn person(ctx: &Ctx<'_>, plan: Plan, attempt: u8) -> Person {
    let (given, family, birth) = identity(ctx, &plan, attempt);
    let document = plan.passport.then(|| {
        let modulus = 10u64.pow(ctx.document_digits);
        Document {
            prefix: plan.document_prefix,
            number: (u64::from(plan.index) * 7_654_321 + 1_234_567) % modulus,
            digits: ctx.document_digits,
        }
    });
    let episodes = plan
        .events
        .iter()
        .enumerate()
        .map(|(j, (org, date))| episode(ctx, &plan, birth, j, *org, *date))
        .collect();
    Person {
        index: plan.index,
        female: plan.female,
        citizenship: plan.citizenship,
        given,
        family,
        birth,
        document,
        episodes,
    }
}

/// Rebuild person `index` as the planner built it.
pub(crate) fn rebuild(ctx: &Ctx<'_>, index: u32, attempt: u8) -> Person {
    person(ctx, plan(ctx, index), attempt)
}

fn is_labour(t: &str) -> bool {
    matches!(t, "forced_labour" | "forced_begging" | "forced_criminality")
}

/// The exploitation types as the profile can express them, so the truth counts what ingest
/// will read: HTCDS has no forced criminality (it is `Other`), and CTDC records begging and
/// illicit activities as kinds of forced labour.
fn types_for_profile(profile: ProfileKind, mut types: Vec<&'static str>) -> Vec<&'static str> {
    match profile {
        ProfileKind::Htcds => {
            for t in &mut types {
                if *t == "forced_criminality" {
                    *t = "other";
                }
            }
        }
        ProfileKind::Ctdc => {
            if types
                .iter()
                .any(|t| matches!(*t, "forced_begging" | "forced_criminality"))
            {
                types.push("forced_labour");
            }
        }
        ProfileKind::Canonical => {}
    }
    let order = [
        "forced_labour",
        "sexual_exploitation",
        "forced_marriage",
        "forced_begging",
        "forced_criminality",
        "other",
    ];
    types.sort_by_key(|t| order.iter().position(|o| o == t));
    types.dedup();
    types
}

fn destination(r: &mut Rng, plan: &Plan, primary: &str) -> &'static str {
    let table = match (plan.central_asian, primary) {
        (true, "forced_labour") => DESTINATIONS_CA_LABOUR,
        (true, "sexual_exploitation") => DESTINATIONS_CA_SEX,
        (false, "forced_labour") => DESTINATIONS_EE_LABOUR,
        (false, "sexual_exploitation") => DESTINATIONS_EE_SEX,
        _ => DESTINATIONS_OTHER,
    };
    match r.weighted(table) {
        HOME => plan.citizenship,
        country => country,
    }
}

fn episode(
    ctx: &Ctx<'_>,
    plan: &Plan,
    birth: NaiveDate,
    j: usize,
    org: usize,
    registration: NaiveDate,
) -> Episode {
    let mut r = Rng::new(
        ctx.seed(),
        u64::from(plan.index),
        j as u64 + 1,
        rng::EPISODE,
    );
    let profile = ctx.profile();
    let age = month_start(registration)
        .years_since(birth)
        .unwrap_or(plan.age);
    let primary = if r.chance(0.85) {
        plan.primary
    } else {
        r.weighted(if plan.central_asian {
            LABOUR_DOMINANT
        } else {
            SEX_DOMINANT
        })
    };
    let exploitation_types = r.recorded(0.08, |r| {
        let mut types = vec![primary];
        if primary == "forced_labour" && r.chance(0.06) {
            types.push("sexual_exploitation");
        } else if primary == "sexual_exploitation" && r.chance(0.06) {
            types.push("forced_labour");
        }
        types_for_profile(profile, types)
    });
    let labour = exploitation_types
        .as_ref()
        .is_some_and(|t| t.iter().any(|t| is_labour(t)));
    let labour_sectors = if labour {
        r.recorded(0.2, |r| r.subset(LABOUR_SECTORS, 1, 2))
    } else {
        None
    };
    let trafficking_status = r.recorded(0.08, |r| r.weighted(TRAFFICKING_STATUSES));
    let means_of_control = r.recorded(0.25, |r| r.subset(MEANS_OF_CONTROL, 1, 3));
    let recruiter_relation = r.recorded(0.2, |r| r.weighted(RECRUITER_RELATIONS));
    let abduction = r.recorded(0.4, |r| r.chance(0.04));
    let referral_source = r.recorded(0.1, |r| r.weighted(REFERRAL_SOURCES));
    let hotline = r.chance(0.1);
    let country_of_exploitation = r.recorded(0.15, |r| destination(r, plan, primary));
    let mission = ctx.orgs[org].mission;
    let country_of_recruitment = r.recorded(0.25, |r| {
        if r.chance(0.9) {
            plan.citizenship
        } else {
            mission
        }
    });
    let identification = r.recorded(0.3, |r| {
        add_days(registration, -r.range(0, 60)).max(ctx.first_day)
    });
    let closed = if r.chance(0.6) {
        Some(add_days(registration, r.range(30, 720))).filter(|d| *d <= ctx.last_day)
    } else {
        None
    };
    let case_status = r.recorded(0.05, |_| if closed.is_some() { "closed" } else { "open" });
    let shelter_offered = r.recorded(0.15, |r| r.chance(0.6));
    let shelter_accepted = match shelter_offered {
        Some(true) => r.recorded(0.1, |r| r.chance(0.5)),
        Some(false) => r.recorded(0.5, |_| false),
        None => None,
    };
    let assistance_types = r.recorded(0.1, |r| {
        let mut types = r.subset(ASSISTANCE_TYPES, 1, 4);
        if shelter_accepted == Some(true) {
            types.insert(0, "shelter");
        }
        types
    });
    let domestic = country_of_exploitation == Some(plan.citizenship);
    let assisted_return = r.recorded(0.15, |r| !domestic && r.chance(0.6));
    let return_type = if assisted_return == Some(true) {
        r.recorded(0.1, |r| r.weighted(RETURN_TYPES))
    } else {
        None
    };
    let reintegration_outcome = r.recorded(0.2, |r| r.weighted(REINTEGRATION_OUTCOMES));
    let reported = r.recorded(0.25, |r| r.chance(0.45));
    let cooperated = match reported {
        Some(true) => r.recorded(0.2, |r| r.chance(0.5)),
        Some(false) => r.recorded(0.5, |_| false),
        None => None,
    };
    let trial = match cooperated {
        Some(true) => r.recorded(0.1, |r| r.chance(0.4)),
        _ => r.recorded(0.3, |_| false),
    };
    let legal_outcome = r.recorded(0.3, |r| match (trial, reported) {
        (Some(true), _) => r.weighted(&[
            ("convicted", 50),
            ("prosecuted", 30),
            ("acquitted", 10),
            ("dismissed", 10),
        ]),
        (_, Some(true)) => r.weighted(&[
            ("under_investigation", 40),
            ("no_action", 30),
            ("dismissed", 30),
        ]),
        _ => "no_action",
    });
    let age_at_exploitation = r.recorded(0.4, |r| age.saturating_sub(r.range(0, 2) as u32).max(10));
    let gender_recorded = r.chance(0.97);
    let (citizenship, age_recorded) = if profile == ProfileKind::Ctdc {
        let c = r.weighted(&[
            (Recorded::Known, 88),
            (Recorded::Unknown, 5),
            (Recorded::Missing, 7),
        ]);
        (c, r.chance(0.9))
    } else if plan.passport && r.chance(0.05) {
        // Persons linked by document may lack a citizenship; the others never do, or they
        // would not link.
        (Recorded::Missing, true)
    } else {
        (Recorded::Known, true)
    };
    let fault = r
        .chance(ctx.config.error_rate)
        .then(|| *r.pick(Fault::applicable(profile)));
    let mut episode = Episode {
        org,
        registration,
        cyrillic: plan.first_cyrillic != (j % 2 == 1),
        age,
        age_recorded,
        age_at_exploitation,
        gender_recorded,
        citizenship,
        identification,
        closed,
        trafficking_status,
        exploitation_types,
        labour_sectors,
        means_of_control,
        recruiter_relation,
        abduction,
        referral_source,
        hotline,
        country_of_recruitment,
        country_of_exploitation,
        shelter_offered,
        shelter_accepted,
        assistance_types,
        assisted_return,
        return_type,
        reintegration_outcome,
        case_status,
        reported_to_law_enforcement: reported,
        cooperated_with_investigation: cooperated,
        participated_in_trial: trial,
        legal_outcome,
        fault,
    };
    if profile == ProfileKind::Ctdc {
        episode.drop_what_ctdc_lacks();
    }
    episode
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctstats_schemas::code_list_names;

    fn valid(list: &str, table: &[(&str, u32)]) {
        let names = code_list_names(list).unwrap();
        for (code, _) in table {
            assert!(names.contains(code), "{code} is not a {list} code");
        }
    }

    #[test]
    fn tables_use_canonical_codes() {
        valid("exploitation_type", LABOUR_DOMINANT);
        valid("exploitation_type", SEX_DOMINANT);
        valid("labour_sector", LABOUR_SECTORS);
        valid("means_of_control", MEANS_OF_CONTROL);
        valid("recruiter_relation", RECRUITER_RELATIONS);
        valid("referral_source", REFERRAL_SOURCES);
        valid("assistance_type", ASSISTANCE_TYPES);
        valid("trafficking_status", TRAFFICKING_STATUSES);
        valid("return_type", RETURN_TYPES);
        valid("reintegration_outcome", REINTEGRATION_OUTCOMES);
        for table in [
            DESTINATIONS_CA_LABOUR,
            DESTINATIONS_CA_SEX,
            DESTINATIONS_EE_LABOUR,
            DESTINATIONS_EE_SEX,
            DESTINATIONS_OTHER,
        ] {
            for (c, _) in table {
                assert!(*c == HOME || countries::by_alpha3(c).is_some(), "{c}");
            }
        }
        for m in ["KAZ", "KGZ", "TJK", "UZB", "MDA", "UKR", "XXX"] {
            for (c, _) in foreign_pool(m) {
                assert!(countries::by_alpha3(c).is_some(), "{c}");
            }
        }
    }

    #[test]
    fn persons_rebuild_identically() {
        let config = Config::default();
        let ctx = Ctx::new(&config).unwrap();
        for index in 0..50 {
            let a = rebuild(&ctx, index, 0);
            let b = rebuild(&ctx, index, 0);
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
            for e in &a.episodes {
                assert!(e.registration >= ctx.first_day && e.registration <= ctx.last_day);
                assert!(a.birth < month_start(e.registration));
                if let Some(c) = e.closed {
                    assert!(c >= e.registration);
                }
                assert!((12..=70).contains(&e.age), "{}", e.age);
            }
        }
    }

    #[test]
    fn document_numbers_are_unique() {
        let config = Config::default();
        let ctx = Ctx::new(&config).unwrap();
        let mut seen = std::collections::HashSet::new();
        for index in 0u64..20_000 {
            let n = (index * 7_654_321 + 1_234_567) % 10u64.pow(ctx.document_digits);
            assert!(seen.insert(n));
        }
    }
}
