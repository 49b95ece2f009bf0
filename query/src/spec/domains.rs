//! The public domains: dimensions, value columns and bins, each with its keys.

use super::*;

/// A public grouping dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// `reporting_mission`; the domain is the service's missions.
    Mission,
    RegistrationYear,
    RegistrationQuarter,
    RegistrationMonth,
    /// One key per exploitation type of the record (the list is exploded).
    ExploitationType,
    /// A coded field (non-provenance), keyed by its code names.
    Code {
        field: &'static str,
        list: &'static str,
    },
    /// A country field, keyed by ISO alpha-3.
    Country {
        field: &'static str,
    },
    /// A yes/no field, keyed `yes`, `no`.
    Flag {
        field: &'static str,
    },
}

impl Dimension {
    /// The name used in `group_by`, `filters` and answers.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Mission => "mission",
            Dimension::RegistrationYear => "registration_year",
            Dimension::RegistrationQuarter => "registration_quarter",
            Dimension::RegistrationMonth => "registration_month",
            Dimension::ExploitationType => "exploitation_type",
            Dimension::Code { field, .. }
            | Dimension::Country { field }
            | Dimension::Flag { field } => field,
        }
    }

    /// The dimension called `name`.
    pub fn from_name(name: &str) -> Option<Dimension> {
        dimensions().into_iter().find(|d| d.name() == name)
    }

    /// Position in the canonical order of [`dimensions`].
    pub fn rank(self) -> usize {
        dimensions()
            .iter()
            .position(|d| *d == self)
            .expect("every dimension is listed")
    }

    /// Every key of the dimension, [`UNKNOWN`] last. `missions` is the mission domain.
    pub fn domain(self, missions: &[String], period: Period) -> Vec<String> {
        let mut keys: Vec<String> = match self {
            Dimension::Mission => {
                let mut m: Vec<String> = missions.to_vec();
                m.sort();
                m.dedup();
                m.retain(|m| m != UNKNOWN);
                m
            }
            Dimension::RegistrationYear => (period.from.year..=period.to.year)
                .map(|y| format!("{y:04}"))
                .collect(),
            Dimension::RegistrationQuarter => {
                let mut q: Vec<String> = period.months().map(Month::quarter).collect();
                q.dedup();
                q
            }
            Dimension::RegistrationMonth => period.months().map(|m| m.to_string()).collect(),
            Dimension::ExploitationType => ExploitationType::ALL
                .iter()
                .map(|t| t.name().to_string())
                .collect(),
            Dimension::Code { list, .. } => code_list_names(list)
                .unwrap_or_default()
                .into_iter()
                .map(str::to_string)
                .collect(),
            Dimension::Country { .. } => countries::all()
                .iter()
                .map(|c| c.alpha3.to_string())
                .collect(),
            Dimension::Flag { .. } => vec![YES.to_string(), NO.to_string()],
        };
        keys.push(UNKNOWN.to_string());
        keys
    }
}

/// Every public dimension, in canonical order: mission, registration time, then the fields of
/// the canonical record in their stored order (coded, country and flag fields outside the
/// provenance group, and `exploitation_type` from the `exploitation_types` list).
pub fn dimensions() -> Vec<Dimension> {
    let mut dims = vec![
        Dimension::Mission,
        Dimension::RegistrationYear,
        Dimension::RegistrationQuarter,
        Dimension::RegistrationMonth,
    ];
    for f in FIELDS {
        if f.group == FieldGroup::Provenance {
            continue;
        }
        match f.kind {
            FieldKind::Code { list } => dims.push(Dimension::Code {
                field: f.name,
                list,
            }),
            FieldKind::Country => dims.push(Dimension::Country { field: f.name }),
            FieldKind::Flag => dims.push(Dimension::Flag { field: f.name }),
            FieldKind::CodeSet { list } if list == ExploitationType::LIST => {
                dims.push(Dimension::ExploitationType)
            }
            _ => {}
        }
    }
    dims
}

/// A numeric column of the value measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueColumn {
    /// A yes/no field as 1/0 (null stays null).
    Flag { field: &'static str },
    /// Months from `registration_month` to `case_closed_month`; null while the case is open.
    MonthsToClosure,
    /// Months from `identification_month` to `registration_month`; null when not recorded.
    MonthsIdentificationToRegistration,
    /// Number of distinct assistance types; null when not recorded.
    AssistanceTypeCount,
}

impl ValueColumn {
    pub fn name(self) -> &'static str {
        match self {
            ValueColumn::Flag { field } => field,
            ValueColumn::MonthsToClosure => MONTHS_TO_CLOSURE,
            ValueColumn::MonthsIdentificationToRegistration => {
                MONTHS_IDENTIFICATION_TO_REGISTRATION
            }
            ValueColumn::AssistanceTypeCount => ASSISTANCE_TYPE_COUNT,
        }
    }

    pub fn from_name(name: &str) -> Option<ValueColumn> {
        value_columns().into_iter().find(|c| c.name() == name)
    }
}

/// Every numeric column: the flags (as 0/1) in stored order, then the derived columns.
pub fn value_columns() -> Vec<ValueColumn> {
    let mut cols: Vec<ValueColumn> = FIELDS
        .iter()
        .filter(|f| f.kind == FieldKind::Flag)
        .map(|f| ValueColumn::Flag { field: f.name })
        .collect();
    cols.extend([
        ValueColumn::MonthsToClosure,
        ValueColumn::MonthsIdentificationToRegistration,
        ValueColumn::AssistanceTypeCount,
    ]);
    cols
}

/// A bin over the integers `lower..=upper`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Bin {
    pub lower: i64,
    pub upper: i64,
}

impl Bin {
    /// The key of the bin in answers, `[lower,upper]`.
    pub fn label(self) -> String {
        format!("[{},{}]", self.lower, self.upper)
    }
}
