//! The contingency table of [`super::statement`] as one typed pass over the in-memory snapshot,
//! like the aggregation kernel of [`crate::plan`].
//!
//! The snapshot's rows are sorted by (person rank, record position), so "each person's first `k`
//! records of the period and missions" is a counter that restarts at each new person. Every
//! column becomes a small integer into its public domain, column by column over a batch (text
//! through its dictionary, once per dictionary value; the registration columns from a table of
//! the period's days; the nine exploitation flags from one bit set per row), and each kept row's
//! combination is counted under a mixed-radix key. No sort, no DataFusion plan, no string per row.
//!
//! It computes exactly what the statement computes; `the_contingency_kernel_equals_the_sql`
//! (proptest) compares the two. A table whose key space overflows 64 bits, or a snapshot column
//! of an unexpected type, makes it answer `None`, and the caller runs the statement.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Int64Type};
use ctstats_schemas::codes::{CodeList, ExploitationType};

use super::{Column, Counts, Source, SyntheticPlan};
use crate::plan::kernel::{coded_by, items, period_days};
use crate::spec::{Dimension, NO, UNKNOWN, YES};

/// A row's value that has no cell: outside the period or the missions (the row is not in
/// scope), or a value the column's domain cannot hold (the statement's reader drops such a row
/// after the bound, so the kernel does too).
const NONE: u16 = u16::MAX;
/// In a row's exploitation bit set: the record has at least one type.
const HAS_TYPES: u32 = 1 << 31;

/// The column's position of `value`, if it is in the domain.
fn position(column: &Column, value: &str) -> Option<u16> {
    column
        .domain
        .iter()
        .position(|v| v == value)
        .map(|i| i as u16)
}

/// How one column's cells are read from a batch, fixed by the plan.
enum Reader {
    /// A text field: stored value → cell (values outside the domain and nulls: `missing`).
    Text {
        field: &'static str,
        index: HashMap<String, u16>,
        missing: u16,
    },
    /// A yes/no field: its cells for true, false and null.
    Flag {
        field: &'static str,
        cells: [u16; 3],
    },
    /// A registration period column: the cell of each month of the period, by offset.
    Month(Vec<u16>),
    /// One exploitation type: its bit, and the cells for yes, no and no types recorded.
    Type { bit: u32, cells: [u16; 3] },
}

impl Reader {
    /// `None` for a column the kernel does not lay out.
    fn new(column: &Column, plan: &SyntheticPlan) -> Option<Reader> {
        let at = |value: &str| position(column, value).unwrap_or(NONE);
        let text = |field: &'static str| {
            let index = column
                .domain
                .iter()
                .enumerate()
                .map(|(i, v)| (v.clone(), i as u16))
                .collect();
            Reader::Text {
                field,
                index,
                missing: at(UNKNOWN),
            }
        };
        Some(match column.source {
            Source::Dimension(dim) => match dim {
                Dimension::Mission => text("reporting_mission"),
                Dimension::Code { field, .. } | Dimension::Country { field } => text(field),
                Dimension::Flag { field } => Reader::Flag {
                    field,
                    cells: [at(YES), at(NO), at(UNKNOWN)],
                },
                Dimension::RegistrationYear => Reader::Month(
                    plan.period
                        .months()
                        .map(|m| at(&format!("{:04}", m.year)))
                        .collect(),
                ),
                Dimension::RegistrationQuarter => {
                    Reader::Month(plan.period.months().map(|m| at(&m.quarter())).collect())
                }
                Dimension::RegistrationMonth => {
                    Reader::Month(plan.period.months().map(|m| at(&m.to_string())).collect())
                }
                // Never a column: the plan turns the list into one flag per type.
                Dimension::ExploitationType => return None,
            },
            Source::Exploitation(t) => Reader::Type {
                bit: 1 << type_bit(t),
                cells: [at(YES), at(NO), at(UNKNOWN)],
            },
        })
    }

    /// The column's cell for every row of `batch` (`month`: each row's offset into the
    /// period, `NONE` outside it; `types`: each row's exploitation bit set). `None` when a
    /// column is not of the snapshot's types.
    fn cells(&self, batch: &RecordBatch, month: &[u16], types: &[u32]) -> Option<Vec<u16>> {
        match self {
            Reader::Text {
                field,
                index,
                missing,
            } => coded_by(batch.column_by_name(field)?, |value| {
                value
                    .and_then(|v| index.get(v).copied())
                    .unwrap_or(*missing)
            }),
            Reader::Flag { field, cells } => {
                let flags = batch.column_by_name(field)?.as_boolean_opt()?;
                Some(
                    (0..batch.num_rows())
                        .map(|row| match flags.is_valid(row).then(|| flags.value(row)) {
                            Some(true) => cells[0],
                            Some(false) => cells[1],
                            None => cells[2],
                        })
                        .collect(),
                )
            }
            Reader::Month(by_offset) => Some(
                month
                    .iter()
                    .map(|&m| by_offset.get(usize::from(m)).copied().unwrap_or(NONE))
                    .collect(),
            ),
            Reader::Type { bit, cells } => Some(
                types
                    .iter()
                    .map(|&set| {
                        if set & HAS_TYPES == 0 {
                            cells[2]
                        } else if set & bit != 0 {
                            cells[0]
                        } else {
                            cells[1]
                        }
                    })
                    .collect(),
            ),
        }
    }
}

fn type_bit(t: ExploitationType) -> u32 {
    ExploitationType::ALL
        .iter()
        .position(|x| *x == t)
        .unwrap_or(0) as u32
}

/// The exact contingency table of `plan` over the snapshot's `batches`: each combination of
/// cells of the kept records and its count. `None` when the kernel cannot lay the table out.
pub(crate) fn contingency(batches: &[RecordBatch], plan: &SyntheticPlan) -> Option<Counts> {
    let d = plan.columns.len();
    // Mixed-radix strides, the last column fastest.
    let mut strides = vec![0u64; d];
    let mut size = 1u64;
    for (i, c) in plan.columns.iter().enumerate().rev() {
        strides[i] = size;
        size = size.checked_mul(c.domain.len() as u64)?;
    }
    // The two largest keys mark rows without a cell.
    if size >= u64::MAX - 1 {
        return None;
    }
    let readers: Vec<Reader> = plan
        .columns
        .iter()
        .map(|c| Reader::new(c, plan))
        .collect::<Option<_>>()?;
    let uses_types = readers.iter().any(|r| matches!(r, Reader::Type { .. }));
    let bits: HashMap<&str, u32> = ExploitationType::ALL
        .iter()
        .map(|t| (t.name(), 1 << type_bit(*t)))
        .collect();
    let missions: HashMap<&str, ()> = plan.missions.iter().map(|m| (m.as_str(), ())).collect();
    let (start, offsets) = period_days(plan.period);
    let k = plan.noise.contribution_bound;

    let mut counts: HashMap<u64, i64> = HashMap::new();
    let mut person = -1i64;
    let mut taken = 0u32;
    let mut names: Vec<&str> = Vec::new();
    for batch in batches {
        let rows = batch.num_rows();
        let persons = batch
            .column_by_name("person_key")?
            .as_primitive_opt::<Int64Type>()?;
        let registration = batch
            .column_by_name("registration_month")?
            .as_primitive_opt::<Date32Type>()?;
        // In scope: registered in the period, reported by one of the plan's missions.
        let in_mission = coded_by(batch.column_by_name("reporting_mission")?, |m| {
            u16::from(m.is_some_and(|m| missions.contains_key(m)))
        })?;
        let month: Vec<u16> = (0..rows)
            .map(|row| {
                if registration.is_null(row) || in_mission[row] == 0 {
                    return NONE;
                }
                usize::try_from(i64::from(registration.value(row)) - i64::from(start))
                    .ok()
                    .and_then(|at| offsets.get(at).copied())
                    .unwrap_or(NONE)
            })
            .collect();
        let types: Vec<u32> = if uses_types {
            let list = batch
                .column_by_name("exploitation_types")?
                .as_list_opt::<i32>()?;
            list.values().as_string_opt::<i32>()?;
            (0..rows)
                .map(|row| {
                    if list.is_null(row) || list.value_length(row) == 0 {
                        return 0;
                    }
                    items(list, row, &mut names);
                    names
                        .iter()
                        .fold(HAS_TYPES, |set, n| set | bits.get(n).copied().unwrap_or(0))
                })
                .collect()
        } else {
            Vec::new()
        };
        // Each row's key, column by column; `u64::MAX` for a row that has no cell.
        let mut keys: Vec<u64> = month
            .iter()
            .map(|&m| if m == NONE { u64::MAX } else { 0 })
            .collect();
        for (reader, &stride) in readers.iter().zip(&strides) {
            let cells = reader.cells(batch, &month, &types)?;
            for (key, &cell) in keys.iter_mut().zip(&cells) {
                if *key != u64::MAX {
                    *key = if cell == NONE {
                        u64::MAX - 1
                    } else {
                        *key + u64::from(cell) * stride
                    };
                }
            }
        }
        for (row, &key) in keys.iter().enumerate() {
            if month[row] == NONE {
                continue;
            }
            let p = persons.value(row);
            if p != person {
                person = p;
                taken = 0;
            }
            taken += 1;
            // A row without a cell still took its place in the person's first k.
            if taken > k || key == u64::MAX - 1 {
                continue;
            }
            *counts.entry(key).or_insert(0) += 1;
        }
    }
    let sizes: Vec<u64> = plan.columns.iter().map(|c| c.domain.len() as u64).collect();
    Some(
        counts
            .into_iter()
            .map(|(key, n)| {
                let cells = strides
                    .iter()
                    .zip(&sizes)
                    .map(|(&stride, &size)| ((key / stride) % size) as u16)
                    .collect();
                (cells, n)
            })
            .collect(),
    )
}
