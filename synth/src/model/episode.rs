//! One case of a person: what the NGO recorded about the exploitation, the assistance and the
//! legal process, and whether the row carries a fault.

use chrono::NaiveDate;

use super::tables::{
    DESTINATIONS_CA_LABOUR, DESTINATIONS_CA_SEX, DESTINATIONS_EE_LABOUR, DESTINATIONS_EE_SEX,
    DESTINATIONS_OTHER, HOME, LABOUR_DOMINANT, SEX_DOMINANT, code_weights,
};
use super::{Ctx, Episode, Fault, Plan, Recorded, add_days, month_start};
use crate::ProfileKind;
use crate::rng::{self, Rng};

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

pub(super) fn episode(
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
        r.recorded(0.2, |r| r.subset(code_weights("labour_sector"), 1, 2))
    } else {
        None
    };
    let trafficking_status = r.recorded(0.08, |r| r.weighted(code_weights("trafficking_status")));
    let means_of_control = r.recorded(0.25, |r| r.subset(code_weights("means_of_control"), 1, 3));
    let recruiter_relation = r.recorded(0.2, |r| r.weighted(code_weights("recruiter_relation")));
    let abduction = r.recorded(0.4, |r| r.chance(0.04));
    let referral_source = r.recorded(0.1, |r| r.weighted(code_weights("referral_source")));
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
        let mut types = r.subset(code_weights("assistance_type"), 1, 4);
        if shelter_accepted == Some(true) {
            types.insert(0, "shelter");
        }
        types
    });
    let domestic = country_of_exploitation == Some(plan.citizenship);
    let assisted_return = r.recorded(0.15, |r| !domestic && r.chance(0.6));
    let return_type = if assisted_return == Some(true) {
        r.recorded(0.1, |r| r.weighted(code_weights("return_type")))
    } else {
        None
    };
    let reintegration_outcome =
        r.recorded(0.2, |r| r.weighted(code_weights("reintegration_outcome")));
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
