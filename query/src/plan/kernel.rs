//! The statement of [`super::aggregate`] as one typed pass over the in-memory snapshot.
//!
//! The snapshot's rows are sorted by (person rank, record position), so the per-person bounding
//! is a counter that restarts at each new person, and everything else is a function of one row:
//! the period, the filters, the dimension keys (as small integers into their public domains),
//! the value, its clamp and its bin. Cells are counted in a dense array when the key space is
//! small, in a hash map otherwise. No sort, no DataFusion plan, no string per row.
//!
//! It computes exactly what the SQL of the files path computes (the step list of
//! [`crate::plan`]); the tests of `plan` run every query both ways and compare. A spec the
//! kernel cannot lay out (a key space that overflows 64 bits) or a snapshot column of an
//! unexpected type makes it answer `None`, and the caller runs the SQL over the snapshot.

use std::collections::HashMap;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, GenericListArray, Int64Array, RecordBatch,
    StringArray,
};
use arrow::datatypes::{DataType, Int16Type, Int64Type};
use chrono::{Datelike, NaiveDate};

use super::{Groups, component_names, scalar_dimensions, uses_types};
use crate::spec::{Bin, Dimension, Measure, Period, UNKNOWN, ValidatedSpec, ValueColumn, YES};

/// chrono's day number (from 0001-01-01, day 1) of 1970-01-01, Arrow's day 0.
const UNIX_EPOCH_CE: i32 = 719_163;
/// Cells counted in a dense array up to this many; a hash map beyond.
const DENSE_CELLS: u64 = 1 << 16;

/// `year * 12 + month - 1` of an Arrow date (days since 1970-01-01).
fn month_index(days: i32) -> Option<i64> {
    let date = NaiveDate::from_num_days_from_ce_opt(days.checked_add(UNIX_EPOCH_CE)?)?;
    Some(i64::from(date.year()) * 12 + i64::from(date.month0()))
}

/// Per-person, per-cell tallies of one query.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    c0: i64,
    c1: i64,
    rows: i64,
    /// The last person counted in `c0` (distinct persons), as rank + 1 (0: none yet).
    last: i64,
}

/// A dimension's keys as integers: its public domain, with the filter's kept keys.
struct Keys {
    names: Vec<String>,
    kept: Vec<bool>,
    unknown: u16,
    /// Stored value → key: the domain's known values (for exploitation types, `unknown` too,
    /// as the statement keeps a stored `unknown` as it is). Built once per query.
    index: HashMap<String, u16>,
}

impl Keys {
    fn new(dim: Dimension, spec: &ValidatedSpec, missions: &[String]) -> Keys {
        let mut names = dim.domain(missions, spec.period());
        let unknown = names.iter().position(|n| n == UNKNOWN).unwrap_or(0) as u16;
        if dim == Dimension::ExploitationType {
            // A stored type outside the code list is kept as it is by the statement (it takes
            // one of the record's slots); its cell is never released, so all such types share
            // one key here, which no filter keeps and no answer shows.
            names.push(String::new());
        }
        let kept = match spec.filter(dim) {
            Some(kept) => names.iter().map(|n| kept.contains(n)).collect(),
            None => vec![true; names.len()],
        };
        let with_unknown = dim == Dimension::ExploitationType;
        let index = names
            .iter()
            .enumerate()
            .filter(|(i, n)| !n.is_empty() && (with_unknown || *i != usize::from(unknown)))
            .map(|(i, n)| (n.clone(), i as u16))
            .collect();
        Keys {
            names,
            kept,
            unknown,
            index,
        }
    }

    fn outside(&self) -> u16 {
        (self.names.len() - 1) as u16
    }
}

/// The query's per-row work, independent of the batch.
struct Query<'s> {
    spec: &'s ValidatedSpec,
    /// Scalar dimensions (grouped or filtered), each with its keys.
    scalar: Vec<(Dimension, Keys)>,
    /// The exploitation types, when grouped or filtered by them.
    types: Option<Keys>,
    k: u32,
    list_items: usize,
    /// The period's days: the first (an Arrow date), and for each day from it the month's
    /// offset into the period.
    days: (i32, Vec<u16>),
}

/// The days of `period` (see `Query::days`).
pub(crate) fn period_days(period: Period) -> (i32, Vec<u16>) {
    let day = |year: i32, month: u32| {
        NaiveDate::from_ymd_opt(year, month, 1).map_or(0, |d| d.num_days_from_ce() - UNIX_EPOCH_CE)
    };
    let start = day(period.from.year, period.from.month);
    let mut offsets = Vec::new();
    for (offset, month) in period.months().enumerate() {
        let next = month.next();
        let length = day(next.year, next.month) - day(month.year, month.month);
        offsets.extend(std::iter::repeat_n(offset as u16, length.max(0) as usize));
    }
    (start, offsets)
}

/// One batch's columns, as the row loop reads them.
struct Columns<'a> {
    persons: &'a Int64Array,
    /// Month of registration, as an offset into the period; `u16::MAX` outside it (or null).
    month: Vec<u16>,
    /// The key of each scalar dimension, per row.
    scalar: Vec<Vec<u16>>,
    types: Option<&'a GenericListArray<i32>>,
    value: Option<Value<'a>>,
}

enum Value<'a> {
    Flag(&'a BooleanArray),
    Months {
        from: &'a Date32Array,
        to: &'a Date32Array,
    },
    Distinct(&'a GenericListArray<i32>),
}

impl Value<'_> {
    fn at<'v>(&'v self, row: usize, scratch: &mut Vec<&'v str>) -> Option<i64> {
        match self {
            Value::Flag(flags) => flags.is_valid(row).then(|| i64::from(flags.value(row))),
            Value::Months { from, to } => {
                if from.is_null(row) || to.is_null(row) {
                    return None;
                }
                Some(month_index(to.value(row))? - month_index(from.value(row))?)
            }
            Value::Distinct(list) => {
                if list.is_null(row) {
                    return None;
                }
                items(list, row, scratch);
                scratch.sort_unstable();
                scratch.dedup();
                Some(scratch.len() as i64)
            }
        }
    }
}

/// The items of a list row into `out`.
pub(crate) fn items<'v>(list: &'v GenericListArray<i32>, row: usize, out: &mut Vec<&'v str>) {
    out.clear();
    let offsets = list.value_offsets();
    let values: &StringArray = list.values().as_string::<i32>();
    for i in offsets[row] as usize..offsets[row + 1] as usize {
        out.push(values.value(i));
    }
}

impl<'s> Query<'s> {
    fn new(spec: &'s ValidatedSpec, missions: &[String]) -> Query<'s> {
        Query {
            spec,
            scalar: scalar_dimensions(spec)
                .into_iter()
                .map(|d| (d, Keys::new(d, spec, missions)))
                .collect(),
            types: uses_types(spec).then(|| Keys::new(Dimension::ExploitationType, spec, missions)),
            k: spec.contribution_bound(),
            list_items: spec.list_items_bound() as usize,
            days: period_days(spec.period()),
        }
    }

    /// The columns of `batch`, or `None` when one is not of the snapshot's types.
    fn columns<'a>(&self, batch: &'a RecordBatch) -> Option<Columns<'a>> {
        let persons = batch
            .column_by_name("person_key")?
            .as_primitive_opt::<Int64Type>()?;
        let date = |name: &str| {
            batch
                .column_by_name(name)?
                .as_primitive_opt::<arrow::datatypes::Date32Type>()
        };
        let list = |name: &str| {
            let list = batch.column_by_name(name)?.as_list_opt::<i32>()?;
            (list.values().data_type() == &DataType::Utf8).then_some(list)
        };
        let registration = date("registration_month")?;
        let period = self.spec.period();
        let first = period.from.index();
        let (start, offsets) = (self.days.0, &self.days.1);
        let month: Vec<u16> = (0..batch.num_rows())
            .map(|row| {
                if registration.is_null(row) {
                    return u16::MAX;
                }
                usize::try_from(i64::from(registration.value(row)) - i64::from(start))
                    .ok()
                    .and_then(|at| offsets.get(at).copied())
                    .unwrap_or(u16::MAX)
            })
            .collect();
        let mut scalar = Vec::with_capacity(self.scalar.len());
        for (dim, keys) in &self.scalar {
            let column = match dim {
                Dimension::RegistrationYear
                | Dimension::RegistrationQuarter
                | Dimension::RegistrationMonth => month
                    .iter()
                    .map(|&offset| {
                        if offset == u16::MAX {
                            return keys.unknown;
                        }
                        let m = first + i64::from(offset);
                        match dim {
                            Dimension::RegistrationYear => {
                                (m.div_euclid(12) - i64::from(period.from.year)) as u16
                            }
                            Dimension::RegistrationQuarter => {
                                (m.div_euclid(3) - first.div_euclid(3)) as u16
                            }
                            _ => offset,
                        }
                    })
                    .collect(),
                Dimension::Flag { field } => {
                    let flags = batch.column_by_name(field)?.as_boolean_opt()?;
                    let (yes, no) = flag_keys(keys);
                    (0..batch.num_rows())
                        .map(|row| match flags.is_valid(row).then(|| flags.value(row)) {
                            Some(true) => yes,
                            Some(false) => no,
                            None => keys.unknown,
                        })
                        .collect()
                }
                Dimension::Mission => coded(batch.column_by_name("reporting_mission")?, keys)?,
                Dimension::Code { field, .. } | Dimension::Country { field } => {
                    coded(batch.column_by_name(field)?, keys)?
                }
                Dimension::ExploitationType => return None,
            };
            scalar.push(column);
        }
        let types = match self.types {
            Some(_) => Some(list("exploitation_types")?),
            None => None,
        };
        let value = match self.spec.column() {
            None => None,
            Some(ValueColumn::Flag { field }) => {
                Some(Value::Flag(batch.column_by_name(field)?.as_boolean_opt()?))
            }
            Some(ValueColumn::MonthsToClosure) => Some(Value::Months {
                from: registration,
                to: date("case_closed_month")?,
            }),
            Some(ValueColumn::MonthsIdentificationToRegistration) => Some(Value::Months {
                from: date("identification_month")?,
                to: registration,
            }),
            Some(ValueColumn::AssistanceTypeCount) => {
                Some(Value::Distinct(list("assistance_types")?))
            }
        };
        Some(Columns {
            persons,
            month,
            scalar,
            types,
            value,
        })
    }

    /// Visit every record of `batches` that passes the period, the filters and (for value
    /// measures) has a value, in snapshot order: `visit(person, value, base, types)`, where
    /// `base` is the sum over the scalar dimensions of each one's key times its stride in
    /// `strides` (in `Query::scalar` order), and `types` are the record's first
    /// `list_items_bound` distinct exploitation types (when the query uses them). `None` if a
    /// batch's columns are not of the snapshot's types.
    ///
    /// The period and the scalar filters are applied column by column over the whole batch
    /// (one tight loop per dimension, building each row's `base`), not dimension by dimension
    /// inside the row loop.
    fn scan(
        &self,
        batches: &[RecordBatch],
        strides: &[u64],
        mut visit: impl FnMut(i64, Option<i64>, u64, &[u16]),
    ) -> Option<()> {
        debug_assert_eq!(strides.len(), self.scalar.len());
        /// A row outside the period or kept by no filter.
        const OUT: u64 = u64::MAX;
        // Each scalar dimension's key -> its part of the base, or `OUT` when no filter keeps
        // the key: a function of the query alone, built once.
        let parts: Vec<Vec<u64>> = self
            .scalar
            .iter()
            .zip(strides)
            .map(|((_, keys), &stride)| {
                keys.kept
                    .iter()
                    .enumerate()
                    .map(|(key, &kept)| if kept { key as u64 * stride } else { OUT })
                    .collect()
            })
            .collect();
        let mut type_keys: Vec<u16> = Vec::new();
        let mut base: Vec<u64> = Vec::new();
        for batch in batches {
            let columns = self.columns(batch)?;
            base.clear();
            base.extend(
                columns
                    .month
                    .iter()
                    .map(|&m| if m == u16::MAX { OUT } else { 0 }),
            );
            for (column, part) in columns.scalar.iter().zip(&parts) {
                for (b, &key) in base.iter_mut().zip(column) {
                    let p = part[usize::from(key)];
                    *b = if *b == OUT || p == OUT { OUT } else { *b + p };
                }
            }
            let mut scratch: Vec<&str> = Vec::new();
            let mut names: Vec<&str> = Vec::new();
            for (row, &row_base) in base.iter().enumerate() {
                if row_base == OUT {
                    continue;
                }
                if let (Some(list), Some(keys)) = (columns.types, &self.types) {
                    type_keys.clear();
                    if list.is_null(row) || list.value_length(row) == 0 {
                        type_keys.push(keys.unknown);
                    } else {
                        items(list, row, &mut names);
                        names.sort_unstable();
                        names.dedup();
                        names.truncate(self.list_items);
                        type_keys.extend(
                            names
                                .iter()
                                .map(|n| keys.index.get(*n).copied().unwrap_or(keys.outside())),
                        );
                    }
                    if !type_keys.iter().any(|t| keys.kept[usize::from(*t)]) {
                        continue;
                    }
                }
                let value = match &columns.value {
                    Some(v) => match v.at(row, &mut scratch) {
                        Some(v) => Some(v),
                        None => continue,
                    },
                    None => None,
                };
                visit(columns.persons.value(row), value, row_base, &type_keys);
            }
        }
        Some(())
    }
}

fn flag_keys(keys: &Keys) -> (u16, u16) {
    let at = |name: &str| {
        keys.names
            .iter()
            .position(|n| n == name)
            .map_or(keys.unknown, |i| i as u16)
    };
    (at(YES), at(crate::spec::NO))
}

/// A coded text column's keys: the value's position in the domain, `unknown` for a null or a
/// value outside it. Dictionary columns are looked up once per dictionary value.
fn coded(array: &ArrayRef, keys: &Keys) -> Option<Vec<u16>> {
    coded_by(array, |value| {
        value
            .and_then(|s| keys.index.get(s).copied())
            .unwrap_or(keys.unknown)
    })
}

/// A text column (plain, or a dictionary with 16-bit keys) as `lookup` of each row's value
/// (`None` for a null). Dictionary columns are looked up once per dictionary value. `None` for a
/// column of another type.
pub(crate) fn coded_by(array: &ArrayRef, lookup: impl Fn(Option<&str>) -> u16) -> Option<Vec<u16>> {
    if let Some(dict) = array.as_dictionary_opt::<Int16Type>() {
        let values = dict.values().as_string_opt::<i32>()?;
        let mapped: Vec<u16> = (0..values.len())
            .map(|i| lookup((!values.is_null(i)).then(|| values.value(i))))
            .collect();
        let missing = lookup(None);
        let codes = dict.keys();
        return Some(
            (0..dict.len())
                .map(|row| {
                    if codes.is_null(row) {
                        missing
                    } else {
                        usize::try_from(codes.value(row))
                            .ok()
                            .and_then(|c| mapped.get(c).copied())
                            .unwrap_or(missing)
                    }
                })
                .collect(),
        );
    }
    let strings = array.as_string_opt::<i32>()?;
    Some(
        (0..strings.len())
            .map(|row| lookup((!strings.is_null(row)).then(|| strings.value(row))))
            .collect(),
    )
}

/// Where the tallies of one query go: a dense array over the whole key space, or a map.
enum Cells {
    Dense(Vec<Tally>),
    Sparse(HashMap<u64, Tally>),
}

impl Cells {
    fn get(&mut self, index: u64) -> &mut Tally {
        match self {
            Cells::Dense(v) => &mut v[index as usize],
            Cells::Sparse(m) => m.entry(index).or_default(),
        }
    }

    fn into_counted(self) -> Vec<(u64, Tally)> {
        match self {
            Cells::Dense(v) => v
                .into_iter()
                .enumerate()
                .filter(|(_, t)| t.rows > 0)
                .map(|(i, t)| (i as u64, t))
                .collect(),
            Cells::Sparse(m) => m.into_iter().filter(|(_, t)| t.rows > 0).collect(),
        }
    }
}

/// The groups of [`super::aggregate`] computed over the snapshot's `batches`; `None` when the
/// kernel cannot lay the query out (the caller then runs the SQL).
pub(super) fn aggregate(
    batches: &[RecordBatch],
    spec: &ValidatedSpec,
    missions: &[String],
) -> Option<Groups> {
    let query = Query::new(spec, missions);
    // The key space, `group_by` order then the bin (last fastest), as a mixed-radix number.
    let position = |dim: &Dimension| query.scalar.iter().position(|(d, _)| d == dim);
    let grouped: Vec<(Option<usize>, &Keys)> = spec
        .group_by()
        .iter()
        .map(|d| match d {
            Dimension::ExploitationType => query.types.as_ref().map(|t| (None, t)),
            _ => position(d).map(|i| (Some(i), &query.scalar[i].1)),
        })
        .collect::<Option<_>>()?;
    let bins: &[Bin] = spec.bins();
    let nbins = bins.len().max(1) as u64;
    let mut strides = vec![0u64; grouped.len()];
    let mut size = nbins;
    for (i, (_, keys)) in grouped.iter().enumerate().rev() {
        strides[i] = size;
        size = size.checked_mul(keys.names.len() as u64)?;
    }
    // Strides of the scalar dimensions in `Query::scalar` order (0 when only filtered).
    let mut scalar_strides = vec![0u64; query.scalar.len()];
    let mut type_stride = None;
    for ((at, _), stride) in grouped.iter().zip(&strides) {
        match at {
            Some(i) => scalar_strides[*i] = *stride,
            None => type_stride = Some(*stride),
        }
    }
    let mut cells = if size <= DENSE_CELLS {
        Cells::Dense(vec![Tally::default(); size as usize])
    } else {
        Cells::Sparse(HashMap::new())
    };
    let bounds = spec.bounds();
    let measure = spec.measure();
    let distinct_persons = measure == Measure::Persons && query.k > 1;
    let type_filter = spec
        .filter(Dimension::ExploitationType)
        .and(query.types.as_ref());
    let mut person = -1i64;
    let mut taken = 0u32;
    query.scan(batches, &scalar_strides, |p, value, base, types| {
        if p != person {
            person = p;
            taken = 0;
        }
        taken += 1;
        if taken > query.k {
            return;
        }
        let clamped = match (value, bounds) {
            (Some(v), Some(b)) => v.clamp(b.lower, b.upper),
            (Some(v), None) => v,
            (None, _) => 0,
        };
        let bin = if bins.is_empty() {
            0
        } else {
            bins[1..].partition_point(|b| b.lower <= clamped) as u64
        };
        let base = base + bin;
        let mut add = |index: u64| {
            let tally = cells.get(index);
            tally.rows += 1;
            match measure {
                Measure::Persons if distinct_persons => {
                    if tally.last != p + 1 {
                        tally.last = p + 1;
                        tally.c0 += 1;
                    }
                }
                Measure::Persons | Measure::Cases | Measure::Histogram | Measure::Quantile => {
                    tally.c0 += 1
                }
                Measure::Sum => tally.c0 += clamped,
                Measure::Mean => {
                    tally.c0 += clamped;
                    tally.c1 += 1;
                }
            }
        };
        match type_stride {
            Some(stride) => {
                for t in types {
                    if type_filter.is_some_and(|keys| !keys.kept[usize::from(*t)]) {
                        continue;
                    }
                    add(base + u64::from(*t) * stride);
                }
            }
            None => add(base),
        }
    })?;

    let components = component_names(measure).len();
    let mut groups = Groups::new();
    'cells: for (index, tally) in cells.into_counted() {
        let mut key = Vec::with_capacity(grouped.len() + 1);
        for ((scalar, keys), stride) in grouped.iter().zip(&strides) {
            let at = (index / stride) % keys.names.len() as u64;
            if scalar.is_none() && at == u64::from(keys.outside()) {
                continue 'cells;
            }
            key.push(keys.names[at as usize].clone());
        }
        if !bins.is_empty() {
            key.push(bins[(index % nbins) as usize].label());
        }
        let values = [tally.c0, tally.c1][..components].to_vec();
        groups.insert(key, (values, tally.rows));
    }
    Some(groups)
}

/// [`super::records_per_person`] over the snapshot's `batches`: `counts[c - 1]` persons have
/// `c` records passing the period and filters (the last count: `most` or more). `None` when a
/// column is not of the snapshot's types.
pub(super) fn records_per_person(
    batches: &[RecordBatch],
    spec: &ValidatedSpec,
    missions: &[String],
    most: u32,
) -> Option<Vec<i64>> {
    let query = Query::new(spec, missions);
    let mut counts = vec![0i64; most as usize];
    let mut person = -1i64;
    let mut records = 0usize;
    let close = |records: usize, counts: &mut Vec<i64>| {
        if records > 0 {
            counts[records.min(most as usize) - 1] += 1;
        }
    };
    query.scan(batches, &vec![0; query.scalar.len()], |p, _, _, _| {
        if p != person {
            close(records, &mut counts);
            person = p;
            records = 0;
        }
        records += 1;
    })?;
    close(records, &mut counts);
    Some(counts)
}
