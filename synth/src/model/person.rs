//! Persons: who they are, where and when they register, and their identity.

use chrono::{Datelike, Months, NaiveDate};
use ctstats_schemas::countries;

use super::episode::episode;
use super::tables::{LABOUR_DOMINANT, SEX_DOMINANT, document_prefixes, female_share, foreign_pool};
use super::{CENTRAL_ASIA, Ctx, Document, Person, Plan, add_days, month_start, region_slot};
use crate::ProfileKind;
use crate::names::Region;
use crate::rng::{self, Rng};

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
