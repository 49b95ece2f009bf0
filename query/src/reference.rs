//! Reference tables: non-private figures an admin loads from CSV, which releases combine with
//! DP counts (DESIGN.md section 3): estimated victims per country and year, and prosecutions and
//! convictions per country and year (counted per perpetrator, so never from victim rows).
//!
//! Files have a header row. `estimated_victims`: `country,year,estimate,low,high,source`;
//! `convictions`: `country,year,prosecutions,convictions,source`. Countries are ISO 3166-1
//! alpha-3; a (country, year) appears once. A file with any bad row is refused whole, every
//! problem named by row (header = 1), column and rule.

use std::collections::BTreeSet;

use ctstats_schemas::countries;
use serde::Serialize;

use crate::release::{EstimateRow, JusticeRow, References};

/// The tables, by name.
pub const TABLES: [&str; 2] = ["estimated_victims", "convictions"];

/// One problem in a reference file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RowProblem {
    pub row: u64,
    pub column: String,
    pub rule: String,
    pub message: String,
}

/// A parsed reference table.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Table {
    Estimates(Vec<EstimateRow>),
    Justice(Vec<JusticeRow>),
}

impl Table {
    pub fn len(&self) -> usize {
        match self {
            Table::Estimates(r) => r.len(),
            Table::Justice(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn columns(table: &str) -> Option<&'static [&'static str]> {
    match table {
        "estimated_victims" => Some(&["country", "year", "estimate", "low", "high", "source"]),
        "convictions" => Some(&["country", "year", "prosecutions", "convictions", "source"]),
        _ => None,
    }
}

fn problem(row: u64, column: &str, rule: &str, message: impl Into<String>) -> RowProblem {
    RowProblem {
        row,
        column: column.into(),
        rule: rule.into(),
        message: message.into(),
    }
}

/// Parse the CSV `text` of reference table `table`.
pub fn parse(table: &str, text: &str) -> Result<Table, Vec<RowProblem>> {
    let Some(wanted) = columns(table) else {
        return Err(vec![problem(
            0,
            "",
            "unknown_table",
            format!("the reference tables are {TABLES:?}"),
        )]);
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|c| c.trim().to_ascii_lowercase()).collect(),
        Err(e) => return Err(vec![problem(1, "", "not_csv", e.to_string())]),
    };
    let mut problems = Vec::new();
    let mut at = Vec::new();
    for name in wanted {
        match header.iter().position(|h| h == name) {
            Some(i) => at.push(i),
            None => problems.push(problem(
                1,
                name,
                "missing_column",
                format!("the header needs the columns {wanted:?}"),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // The two tables differ only in their numbers: estimate, low, high or prosecutions,
    // convictions.
    let estimates_table = table == "estimated_victims";
    let mut estimates = Vec::new();
    let mut justice = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, record) in reader.records().enumerate() {
        let row = i as u64 + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(problem(row, "", "not_csv", e.to_string()));
                continue;
            }
        };
        let cell = |c: usize| record.get(at[c]).unwrap_or("").trim().to_string();
        let before = problems.len();
        let country = cell(0).to_ascii_uppercase();
        if countries::by_alpha3(&country).is_none() {
            problems.push(problem(
                row,
                "country",
                "invalid_country",
                "an ISO 3166-1 alpha-3 code, e.g. KGZ",
            ));
        }
        let year = cell(1)
            .parse::<i32>()
            .ok()
            .filter(|y| (1900..=2100).contains(y));
        if year.is_none() {
            problems.push(problem(
                row,
                "year",
                "invalid_year",
                "a year from 1900 to 2100",
            ));
        }
        let mut number = |c: usize| -> f64 {
            match cell(c).parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => v,
                _ => {
                    problems.push(problem(
                        row,
                        wanted[c],
                        "invalid_number",
                        "a non-negative number",
                    ));
                    0.0
                }
            }
        };
        let (a, b, c) = (
            number(2),
            number(3),
            if estimates_table { number(4) } else { 0.0 },
        );
        let source = cell(wanted.len() - 1);
        if source.is_empty() || source.chars().count() > 200 {
            problems.push(problem(
                row,
                "source",
                "required",
                "the source of the figure, 1 to 200 characters",
            ));
        }
        if estimates_table && !(b <= a && a <= c) {
            problems.push(problem(row, "estimate", "range", "low <= estimate <= high"));
        }
        if let Some(y) = year
            && !seen.insert((country.clone(), y))
        {
            problems.push(problem(
                row,
                "year",
                "duplicate",
                "this country and year appear on an earlier row",
            ));
        }
        if problems.len() > before {
            continue;
        }
        let year = year.unwrap_or_default();
        if estimates_table {
            estimates.push(EstimateRow {
                country,
                year,
                estimate: a,
                low: b,
                high: c,
                source,
            });
        } else {
            justice.push(JusticeRow {
                country,
                year,
                prosecutions: a,
                convictions: b,
                source,
            });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(if estimates_table {
        Table::Estimates(estimates)
    } else {
        Table::Justice(justice)
    })
}

/// The tables as loaded (JSON from the ledger) for a release.
pub fn references(estimates: Option<&str>, justice: Option<&str>) -> References {
    References {
        estimates: estimates
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default(),
        justice: justice
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_files_parse_and_bad_rows_are_named() {
        let good = "country,year,estimate,low,high,source\nKGZ,2005,1000,600,1500,\"GSI, 2018\"\n";
        let Table::Estimates(rows) = parse("estimated_victims", good).unwrap() else {
            panic!("estimates")
        };
        assert_eq!(rows[0].source, "GSI, 2018");
        assert_eq!(rows[0].estimate, 1000.0);

        let bad = "country,year,prosecutions,convictions,source\nKGZ,2005,10,3,TIP\nXXX,05,-1,2,\nKGZ,2005,1,1,TIP\n";
        let problems = parse("convictions", bad).unwrap_err();
        let rules: Vec<_> = problems
            .iter()
            .map(|p| (p.row, p.column.as_str(), p.rule.as_str()))
            .collect();
        assert_eq!(
            rules,
            [
                (3, "country", "invalid_country"),
                (3, "year", "invalid_year"),
                (3, "prosecutions", "invalid_number"),
                (3, "source", "required"),
                (4, "year", "duplicate"),
            ]
        );
        let missing = parse("convictions", "country,year\n").unwrap_err();
        assert_eq!(missing[0].rule, "missing_column");
        assert_eq!(parse("victims", "").unwrap_err()[0].rule, "unknown_table");
    }
}
