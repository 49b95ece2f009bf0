//! The indicator catalogue: every indicator headquarters compares missions on, defined once,
//! with its numerator, denominator and unit (DESIGN.md section 4).
//!
//! An indicator is computed per mission and per calendar year or quarter of registration (the
//! same periods for every mission, whatever period an NGO reported in: records carry their
//! registration month). Each is a [`Formula`] over DP counts ([`Source`]): persons or cases per
//! mission and period, with filters and at most one breakdown. A release (see [`crate::release`])
//! asks every distinct source once, so indicators sharing a count (the persons total is the
//! denominator of many) share its noise and stay consistent with each other.

use serde::{Deserialize, Serialize};

use crate::spec::{ASSISTANCE_TYPE_COUNT, Measure, UNKNOWN};

/// What a source counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counted {
    /// Distinct persons (the privacy unit).
    Persons,
    /// Cases (records), at most `contribution_bound` per person.
    Cases,
    /// Cases per number of assistance types recorded: bins `[0,0]` and `[1,12]`.
    AssistanceTypes,
}

/// One DP count per mission, period (and breakdown key): the numbers indicators are made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source {
    pub counted: Counted,
    /// Filters, `(dimension, keys)`.
    pub filters: Vec<(&'static str, Vec<&'static str>)>,
    /// A dimension to break the count down by (`bin` for [`Counted::AssistanceTypes`]).
    pub breakdown: Option<&'static str>,
    /// A second breakdown (flows: origin by destination). Its domain is too large to release
    /// whole, so such a count releases only the keys that pass OpenDP's DP threshold.
    pub destination: Option<&'static str>,
}

impl Source {
    fn count(counted: Counted) -> Source {
        Source {
            counted,
            filters: Vec::new(),
            breakdown: None,
            destination: None,
        }
    }
    fn by(mut self, breakdown: &'static str) -> Source {
        self.breakdown = Some(breakdown);
        self
    }
    pub(crate) fn filter(mut self, dimension: &'static str, keys: &[&'static str]) -> Source {
        self.filters.push((dimension, keys.to_vec()));
        self
    }

    /// Persons assisted per mission and period: the total of every breakdown of persons.
    pub fn persons() -> Source {
        Source::count(Counted::Persons)
    }

    /// Cases per mission and period.
    pub fn cases() -> Source {
        Source::count(Counted::Cases)
    }

    pub fn measure(&self) -> Measure {
        match self.counted {
            Counted::Persons => Measure::Persons,
            Counted::Cases => Measure::Cases,
            Counted::AssistanceTypes => Measure::Histogram,
        }
    }

    /// The value column of a histogram source.
    pub fn column(&self) -> Option<&'static str> {
        (self.counted == Counted::AssistanceTypes).then_some(ASSISTANCE_TYPE_COUNT)
    }

    /// A short readable name, e.g. `persons{shelter_offered=yes} by shelter_accepted`.
    pub fn describe(&self) -> String {
        let mut text = match self.counted {
            Counted::Persons => "persons".to_string(),
            Counted::Cases => "cases".to_string(),
            Counted::AssistanceTypes => "cases by number of assistance types".to_string(),
        };
        if !self.filters.is_empty() {
            let filters: Vec<String> = self
                .filters
                .iter()
                .map(|(d, keys)| format!("{d}={}", keys.join("|")))
                .collect();
            text.push_str(&format!("{{{}}}", filters.join(",")));
        }
        if let Some(b) = self.breakdown.filter(|b| *b != "bin") {
            text.push_str(&format!(" by {b}"));
        }
        if let Some(d) = self.destination {
            text.push_str(&format!(" x {d} (thresholded keys)"));
        }
        text
    }

    /// Whether the count releases only thresholded keys (and so needs a delta).
    pub fn thresholded(&self) -> bool {
        self.destination.is_some()
    }
}

/// How an indicator's cells come from its sources.
#[derive(Debug, Clone, PartialEq)]
pub enum Formula {
    /// The count itself: non-negative integers; `within` the persons total (or the cases count)
    /// when it counts a subset of it.
    Count {
        source: Source,
        within: Option<Source>,
    },
    /// A breakdown of the persons total by one dimension, every key including `unknown`: the
    /// keys sum to the persons total of the same release.
    Breakdown { source: Source },
    /// Share of the breakdown keys `numerator` among `denominator` (a superset) in [0, 1].
    ShareOfKeys {
        source: Source,
        numerator: &'static [&'static str],
        denominator: &'static [&'static str],
    },
    /// For each key of a multi-valued breakdown (a person may count under several keys), its
    /// persons over the persons whose key is known (total minus `unknown`), in [0, 1].
    SharePerKey { source: Source },
    /// Re-registration: the share of cases that are not a person's first in the cell,
    /// 1 − persons / cases, in [0, 1].
    Repeat,
    /// Persons per origin → destination pair (`CIT>DST`), only the pairs whose noisy count passes
    /// the DP threshold: non-negative integers.
    Flows { source: Source },
    /// Per field, the share of persons whose field is recorded: 1 − persons{field=unknown} /
    /// persons, in [0, 1].
    Completeness { fields: &'static [&'static str] },
    /// Persons assisted over the estimated number of victims (reference table), per year.
    CoverageOfEstimate,
    /// Convictions (reference table, counted per perpetrator) per person assisted, per year.
    ConvictionsPerPerson,
}

impl Formula {
    /// The DP sources the formula needs (the persons total included where it is used).
    pub fn sources(&self) -> Vec<Source> {
        match self {
            Formula::Count { source, within } => {
                let mut s = vec![source.clone()];
                s.extend(within.clone());
                s
            }
            Formula::Breakdown { source } | Formula::SharePerKey { source } => {
                vec![source.clone(), Source::persons()]
            }
            Formula::ShareOfKeys { source, .. } | Formula::Flows { source } => {
                vec![source.clone()]
            }
            Formula::Repeat => vec![Source::persons(), Source::cases()],
            Formula::Completeness { fields } => {
                let mut s: Vec<Source> = fields
                    .iter()
                    .map(|f| Source::persons().filter(f, &[UNKNOWN]))
                    .collect();
                s.push(Source::persons());
                s
            }
            Formula::CoverageOfEstimate | Formula::ConvictionsPerPerson => {
                vec![Source::persons()]
            }
        }
    }

    /// Whether it needs a delta (thresholded keys).
    pub fn needs_delta(&self) -> bool {
        self.sources().iter().any(Source::thresholded)
    }

    /// Whether it combines DP counts with a reference table (yearly only).
    pub fn uses_reference(&self) -> bool {
        matches!(
            self,
            Formula::CoverageOfEstimate | Formula::ConvictionsPerPerson
        )
    }
}

/// What an indicator's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Persons,
    Cases,
    /// A proportion in [0, 1].
    Share,
    /// A ratio that may exceed 1.
    Rate,
}

/// How a release presents an indicator's cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One count per mission and period.
    Count,
    /// One count per mission, period and key, summing to a total.
    Breakdown,
    /// One proportion per mission and period (and key).
    Share,
    /// One ratio per mission and year.
    Rate,
}

/// One indicator of the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Indicator {
    pub id: &'static str,
    pub title: &'static str,
    pub unit: Unit,
    pub kind: Kind,
    pub numerator: &'static str,
    pub denominator: Option<&'static str>,
    pub definition: &'static str,
    pub formula: Formula,
}

impl Indicator {
    /// The dimension the cells are keyed by besides mission and period, if any.
    pub fn breakdown(&self) -> Option<&'static str> {
        match &self.formula {
            Formula::Breakdown { source } | Formula::SharePerKey { source } => source.breakdown,
            Formula::Completeness { .. } => Some("field"),
            Formula::Flows { .. } => Some("flow"),
            _ => None,
        }
    }

    /// The public description served by `GET /v1/indicators`.
    pub fn view(&self) -> IndicatorView {
        IndicatorView {
            id: self.id.to_string(),
            title: self.title.to_string(),
            unit: self.unit,
            kind: self.kind,
            breakdown: self.breakdown().map(str::to_string),
            numerator: self.numerator.to_string(),
            denominator: self.denominator.map(str::to_string),
            definition: self.definition.to_string(),
            sources: self
                .formula
                .sources()
                .iter()
                .map(Source::describe)
                .collect(),
            yearly_only: self.formula.uses_reference(),
            needs_delta: self.formula.needs_delta(),
        }
    }
}

/// An indicator as `GET /v1/indicators` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IndicatorView {
    pub id: String,
    pub title: String,
    pub unit: Unit,
    pub kind: Kind,
    /// The key dimension besides mission and period, if any.
    pub breakdown: Option<String>,
    pub numerator: String,
    pub denominator: Option<String>,
    pub definition: String,
    /// The DP counts it is computed from.
    pub sources: Vec<String>,
    /// Combines a yearly reference table: only calendar-year releases can include it.
    pub yearly_only: bool,
    /// Releases thresholded keys: only a release with a delta can include it.
    pub needs_delta: bool,
}

/// Fields whose completeness is reported.
pub const COMPLETENESS_FIELDS: &[&str] = &[
    "gender",
    "age_band",
    "citizenship",
    "country_of_exploitation",
    "exploitation_type",
    "referral_source",
];

/// Every indicator, in the order headquarters reads them.
/// The count of persons assisted whose case records `flag` as yes (at most persons assisted).
fn flagged_persons(
    (id, title): (&'static str, &'static str),
    numerator: &'static str,
    definition: &'static str,
    flag: &'static str,
) -> Indicator {
    Indicator {
        id,
        title,
        unit: Unit::Persons,
        kind: Kind::Count,
        numerator,
        denominator: None,
        definition,
        formula: Formula::Count {
            source: Source::persons().filter(flag, &["yes"]),
            within: Some(Source::persons()),
        },
    }
}

pub fn catalogue() -> Vec<Indicator> {
    use Formula::*;
    let persons = Source::persons;
    vec![
        Indicator {
            id: "persons_assisted",
            title: "Persons assisted",
            unit: Unit::Persons,
            kind: Kind::Count,
            numerator: "distinct persons with a case registered in the mission and period",
            denominator: None,
            definition: "Distinct persons (pseudonymous person keys, linked across NGOs) with at least one case registered in the mission and period. Read beside `cases`: a person assisted twice is one person and two cases.",
            formula: Count {
                source: persons(),
                within: None,
            },
        },
        Indicator {
            id: "cases",
            title: "Cases",
            unit: Unit::Cases,
            kind: Kind::Count,
            numerator: "assistance episodes registered in the mission and period",
            denominator: None,
            definition: "Assistance episodes (one record each) registered in the mission and period, at most the release's contribution bound per person.",
            formula: Count {
                source: Source::cases(),
                within: None,
            },
        },
        Indicator {
            id: "active_caseload",
            title: "Active caseload",
            unit: Unit::Cases,
            kind: Kind::Count,
            numerator: "cases registered in the period whose status is open",
            denominator: None,
            definition: "Cases registered in the mission and period that were still open when last reported (case_status = open).",
            formula: Count {
                source: Source::cases().filter("case_status", &["open"]),
                within: Some(Source::cases()),
            },
        },
        Indicator {
            id: "re_registration_rate",
            title: "Re-registration rate",
            unit: Unit::Share,
            kind: Kind::Share,
            numerator: "cases minus persons",
            denominator: Some("cases"),
            definition: "Share of the cases in the mission and period that are a person's second or later case there: 1 − persons / cases.",
            formula: Repeat,
        },
        Indicator {
            id: "persons_by_gender",
            title: "Persons by gender",
            unit: Unit::Persons,
            kind: Kind::Breakdown,
            numerator: "persons assisted with the gender",
            denominator: None,
            definition: "Persons assisted by recorded gender; `unknown` when not recorded. The keys sum to persons assisted.",
            formula: Breakdown {
                source: persons().by("gender"),
            },
        },
        Indicator {
            id: "persons_by_age_band",
            title: "Persons by age band",
            unit: Unit::Persons,
            kind: Kind::Breakdown,
            numerator: "persons assisted in the CTDC age band at registration",
            denominator: None,
            definition: "Persons assisted by CTDC age band at registration; `unknown` without a birth date. The keys sum to persons assisted.",
            formula: Breakdown {
                source: persons().by("age_band"),
            },
        },
        Indicator {
            id: "share_of_minors",
            title: "Share of minors",
            unit: Unit::Share,
            kind: Kind::Share,
            numerator: "persons under 18 at registration",
            denominator: Some("persons whose age at registration is known"),
            definition: "Persons under 18 at registration over the persons whose minor status is recorded.",
            formula: ShareOfKeys {
                source: persons().by("minor_at_registration"),
                numerator: &["yes"],
                denominator: &["yes", "no"],
            },
        },
        Indicator {
            id: "exploitation_type_share",
            title: "Exploitation type",
            unit: Unit::Share,
            kind: Kind::Share,
            numerator: "persons with the exploitation type",
            denominator: Some("persons whose exploitation type is known"),
            definition: "For each exploitation type, the persons with that type over the persons with any known type. A person with several types counts under each (at most 2 per case), so the shares may add up to more than 1.",
            formula: SharePerKey {
                source: persons().by("exploitation_type"),
            },
        },
        Indicator {
            id: "origin_destination_flows",
            title: "Origin to destination flows",
            unit: Unit::Persons,
            kind: Kind::Breakdown,
            numerator: "persons by citizenship and country of exploitation",
            denominator: None,
            definition: "Persons assisted per flow from citizenship to country of exploitation, keyed `CIT>DST` (ISO alpha-3, `unknown` when not recorded). The 250 x 250 pairs are too many to release whole: only pairs whose noisy count passes OpenDP's DP threshold appear, which costs a delta (give the release one). Absent pairs are not zeros.",
            formula: Flows {
                source: Source {
                    destination: Some("country_of_exploitation"),
                    ..persons().by("citizenship")
                },
            },
        },
        Indicator {
            id: "identification_channel",
            title: "Identification channel",
            unit: Unit::Persons,
            kind: Kind::Breakdown,
            numerator: "persons assisted by referral source",
            denominator: None,
            definition: "Persons assisted by who referred them (self, family, law enforcement, NGO, hotline, ...); `unknown` when not recorded. The keys sum to persons assisted.",
            formula: Breakdown {
                source: persons().by("referral_source"),
            },
        },
        Indicator {
            id: "shelter_uptake",
            title: "Shelter uptake",
            unit: Unit::Share,
            kind: Kind::Share,
            numerator: "persons offered shelter who accepted it",
            denominator: Some("persons offered shelter whose answer is recorded"),
            definition: "Among persons offered shelter, the share who accepted (accepted / offered; the 2006 evaluation found about 50%).",
            formula: ShareOfKeys {
                source: persons()
                    .filter("shelter_offered", &["yes"])
                    .by("shelter_accepted"),
                numerator: &["yes"],
                denominator: &["yes", "no"],
            },
        },
        flagged_persons(
            ("assisted_returns", "Assisted returns"),
            "persons with an assisted return",
            "Persons assisted whose case records an assisted return (to the country of origin, a third country or within the country).",
            "assisted_return",
        ),
        Indicator {
            id: "assistance_coverage",
            title: "Assistance coverage",
            unit: Unit::Share,
            kind: Kind::Share,
            numerator: "cases with at least one assistance type recorded",
            denominator: Some("cases whose assistance is recorded"),
            definition: "Share of cases that received at least one type of assistance (shelter, medical, psychosocial, legal, ...).",
            formula: ShareOfKeys {
                source: Source {
                    counted: Counted::AssistanceTypes,
                    filters: Vec::new(),
                    breakdown: Some("bin"),
                    destination: None,
                },
                numerator: &["[1,12]"],
                denominator: &["[0,0]", "[1,12]"],
            },
        },
        Indicator {
            id: "reintegration_completion",
            title: "Reintegration completion",
            unit: Unit::Share,
            kind: Kind::Share,
            numerator: "persons whose reintegration was completed",
            denominator: Some("persons whose reintegration started"),
            definition: "Among persons whose reintegration started (ongoing, completed or dropped out), the share who completed it.",
            formula: ShareOfKeys {
                source: persons().by("reintegration_outcome"),
                numerator: &["completed"],
                denominator: &["ongoing", "completed", "dropped_out"],
            },
        },
        flagged_persons(
            ("trial_participation", "Victims who took part in trials"),
            "persons who took part in a trial",
            "Persons assisted whose case records participation in a trial.",
            "participated_in_trial",
        ),
        Indicator {
            id: "convictions_per_assisted_victim",
            title: "Convictions per assisted victim",
            unit: Unit::Rate,
            kind: Kind::Rate,
            numerator: "convictions in the mission's country and year (reference table, per perpetrator)",
            denominator: Some("persons assisted"),
            definition: "Convictions recorded by official sources for the mission's country and year, over the persons assisted there (the 2006 evaluation found 1 in 33). Convictions count perpetrators, never victim records. Calendar years only.",
            formula: ConvictionsPerPerson,
        },
        Indicator {
            id: "coverage_vs_estimated",
            title: "Coverage against estimated victims",
            unit: Unit::Rate,
            kind: Kind::Rate,
            numerator: "persons assisted",
            denominator: Some(
                "estimated victims in the mission's country and year (reference table)",
            ),
            definition: "Persons assisted over the estimated number of victims; the interval also spans the estimate's published range. Calendar years only.",
            formula: CoverageOfEstimate,
        },
        Indicator {
            id: "data_completeness",
            title: "Data completeness",
            unit: Unit::Share,
            kind: Kind::Share,
            numerator: "persons whose field is recorded",
            denominator: Some("persons assisted"),
            definition: "Per field, the share of persons assisted whose field is recorded (not `unknown`).",
            formula: Completeness {
                fields: COMPLETENESS_FIELDS,
            },
        },
    ]
}

/// The indicator called `id`.
pub fn find(id: &str) -> Option<Indicator> {
    catalogue().into_iter().find(|i| i.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Dimension;

    #[test]
    fn every_indicator_is_distinct_and_its_dimensions_exist() {
        let all = catalogue();
        let mut ids: Vec<_> = all.iter().map(|i| i.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all.len());
        for indicator in &all {
            for source in indicator.formula.sources() {
                for (dimension, _) in &source.filters {
                    assert!(Dimension::from_name(dimension).is_some(), "{dimension}");
                }
                for b in [source.breakdown, source.destination].into_iter().flatten() {
                    assert!(b == "bin" || Dimension::from_name(b).is_some(), "{b}");
                }
            }
            assert_eq!(
                indicator.denominator.is_some(),
                matches!(indicator.unit, Unit::Share | Unit::Rate),
                "{}",
                indicator.id
            );
        }
    }
}
