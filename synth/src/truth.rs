//! The ground truth: what ingest must find in the clean rows, counted while the persons are
//! planned.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Datelike;
use serde::{Deserialize, Serialize};

use crate::ProfileKind;
use crate::model::{Ctx, Episode, Person};

/// Exact counts over the clean rows (dirty rows are rejected by ingest and excluded here).
///
/// A person is the real person behind the rows: ingest links a person's episodes exactly (every
/// episode carries the same identity), so distinct `person_key`s equal these person counts. CTDC
/// files carry no identity, so there every row is its own person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub profile: ProfileKind,
    /// Rows written, clean and dirty.
    pub rows: u64,
    /// Rows with an injected fault.
    pub dirty_rows: u64,
    /// Distinct persons with at least one clean row.
    pub persons: u64,
    /// Clean rows (cases).
    pub cases: u64,
    /// Persons with clean rows at two or more organisations.
    pub cross_ngo_persons: u64,
    /// Per mission and registration year, keyed `"KGZ/2005"`. Every mission and year of the
    /// configuration is present, zeros included.
    pub mission_years: BTreeMap<String, MissionYear>,
}

/// Counts for one mission and registration year.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissionYear {
    /// Distinct persons with a clean case registered in this mission and year.
    pub persons: u64,
    pub cases: u64,
    /// Cases with shelter offered (recorded yes).
    pub shelter_offered_cases: u64,
    /// Cases with shelter accepted (recorded yes).
    pub shelter_accepted_cases: u64,
    /// Distinct persons under 18 at registration (as ingest derives it) in one of these cases.
    pub minors: u64,
    /// Cases where the person took part in a trial (recorded yes).
    pub participated_in_trial_cases: u64,
    /// Distinct persons per exploitation type (canonical code) recorded in one of these cases.
    pub persons_by_exploitation_type: BTreeMap<String, u64>,
    /// Distinct persons per recorded gender (canonical code).
    pub persons_by_gender: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct Cell {
    persons: u64,
    cases: u64,
    shelter_offered: u64,
    shelter_accepted: u64,
    minors: u64,
    trial: u64,
    by_type: BTreeMap<&'static str, u64>,
    by_gender: BTreeMap<&'static str, u64>,
}

/// Accumulates the truth one person at a time.
#[derive(Debug)]
pub(crate) struct TruthBuilder {
    profile: ProfileKind,
    missions: Vec<&'static str>,
    cells: BTreeMap<(usize, i32), Cell>,
    rows: u64,
    dirty_rows: u64,
    persons: u64,
    cases: u64,
    cross_ngo_persons: u64,
}

impl TruthBuilder {
    pub(crate) fn new(ctx: &Ctx<'_>) -> TruthBuilder {
        let mut cells = BTreeMap::new();
        for m in 0..ctx.missions.len() {
            for y in ctx.config.first_year..=ctx.config.last_year {
                cells.insert((m, y), Cell::default());
            }
        }
        TruthBuilder {
            profile: ctx.profile(),
            missions: ctx.missions.clone(),
            cells,
            rows: 0,
            dirty_rows: 0,
            persons: 0,
            cases: 0,
            cross_ngo_persons: 0,
        }
    }

    pub(crate) fn add(&mut self, ctx: &Ctx<'_>, person: &Person) {
        self.rows += person.episodes.len() as u64;
        let clean: Vec<&Episode> = person
            .episodes
            .iter()
            .filter(|e| e.fault.is_none())
            .collect();
        self.dirty_rows += (person.episodes.len() - clean.len()) as u64;
        if ctx.has_identities() {
            self.add_person(ctx, person, &clean);
        } else {
            for e in clean {
                self.add_person(ctx, person, &[e]);
            }
        }
    }

    /// One person with these clean episodes.
    fn add_person(&mut self, ctx: &Ctx<'_>, person: &Person, clean: &[&Episode]) {
        if clean.is_empty() {
            return;
        }
        self.persons += 1;
        self.cases += clean.len() as u64;
        let orgs: BTreeSet<usize> = clean.iter().map(|e| e.org).collect();
        if orgs.len() >= 2 {
            self.cross_ngo_persons += 1;
        }
        let gender = if person.female { "female" } else { "male" };
        let mut cells = BTreeSet::new();
        let mut minors = BTreeSet::new();
        let mut types = BTreeSet::new();
        let mut genders = BTreeSet::new();
        for e in clean {
            let key = (ctx.orgs[e.org].mission_index, e.registration.year());
            let cell = self.cells.entry(key).or_default();
            cell.cases += 1;
            cell.shelter_offered += u64::from(e.shelter_offered == Some(true));
            cell.shelter_accepted += u64::from(e.shelter_accepted == Some(true));
            cell.trial += u64::from(e.participated_in_trial == Some(true));
            cells.insert(key);
            if e.minor() == Some(true) {
                minors.insert(key);
            }
            for t in e.exploitation_types.iter().flatten() {
                types.insert((key, *t));
            }
            if e.gender_recorded {
                genders.insert((key, gender));
            }
        }
        for key in cells {
            self.cells.entry(key).or_default().persons += 1;
        }
        for key in minors {
            self.cells.entry(key).or_default().minors += 1;
        }
        for (key, t) in types {
            *self
                .cells
                .entry(key)
                .or_default()
                .by_type
                .entry(t)
                .or_default() += 1;
        }
        for (key, g) in genders {
            *self
                .cells
                .entry(key)
                .or_default()
                .by_gender
                .entry(g)
                .or_default() += 1;
        }
    }

    pub(crate) fn finish(self) -> GroundTruth {
        let owned = |m: &BTreeMap<&'static str, u64>| {
            m.iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        let mission_years = self
            .cells
            .iter()
            .map(|((m, y), c)| {
                (
                    format!("{}/{y}", self.missions[*m]),
                    MissionYear {
                        persons: c.persons,
                        cases: c.cases,
                        shelter_offered_cases: c.shelter_offered,
                        shelter_accepted_cases: c.shelter_accepted,
                        minors: c.minors,
                        participated_in_trial_cases: c.trial,
                        persons_by_exploitation_type: owned(&c.by_type),
                        persons_by_gender: owned(&c.by_gender),
                    },
                )
            })
            .collect();
        GroundTruth {
            profile: self.profile,
            rows: self.rows,
            dirty_rows: self.dirty_rows,
            persons: self.persons,
            cases: self.cases,
            cross_ngo_persons: self.cross_ngo_persons,
            mission_years,
        }
    }
}
