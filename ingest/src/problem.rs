//! What is wrong with a file or one of its rows: the row, the column and the rule broken, with a
//! message for the NGO's data officer.
//!
//! Every reader, the mapper and the pipeline report problems with this one type. Architecture
//! invariant: a problem names row, column and rule, never a cell's value.

use std::fmt;

use serde::{Serialize, Serializer};

/// Declares [`Rule`]: each variant with its stable snake_case name.
macro_rules! rules {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// A rule a file or a row can break. Reports and JSON carry its [`Rule::name`], which
        /// stays the same from release to release: NGOs' tools count problems by it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Rule {
            $($(#[$doc])* $variant,)*
        }

        impl Rule {
            /// Every rule, in declaration order.
            pub const ALL: &[Rule] = &[$(Rule::$variant,)*];

            /// The stable snake_case name, as reports show it.
            pub fn name(self) -> &'static str {
                match self {
                    $(Rule::$variant => $name,)*
                }
            }
        }
    };
}

rules! {
    // The file as a whole.
    /// The file cannot be opened.
    CannotOpen = "cannot_open",
    /// The file cannot be read or parsed from some point on.
    ReadError = "read_error",
    /// The file has no header.
    EmptyFile = "empty_file",
    /// The file has a header but no rows.
    NoRows = "no_rows",
    /// The header has more columns than the limit allows.
    TooManyColumns = "too_many_columns",
    /// A column name appears twice in the header.
    DuplicateColumn = "duplicate_column",
    /// The profile needs a column the header lacks.
    MissingColumn = "missing_column",
    /// A line or a record is longer than the limit allows.
    LineTooLong = "line_too_long",
    /// The file is not a Parquet file the reader can decode.
    NotAParquetFile = "not_a_parquet_file",
    /// The file is not an .xlsx workbook the reader can decode.
    NotAnXlsxFile = "not_an_xlsx_file",
    /// The workbook unpacks to more bytes than the limit allows.
    WorkbookTooLarge = "workbook_too_large",
    /// The workbook has no sheet of the name asked for.
    SheetNotFound = "sheet_not_found",

    // One row, as read.
    /// A CSV row has more fields than the header has columns.
    FieldCount = "field_count",
    /// A cell is larger than the limit allows.
    CellTooLarge = "cell_too_large",
    /// A JSON Lines line is not a JSON object.
    InvalidJson = "invalid_json",
    /// A JSON object has the same key twice.
    DuplicateKey = "duplicate_key",
    /// A value is nested where only scalars and lists of scalars are read.
    NestedValue = "nested_value",
    /// A Parquet value cannot be shown as text.
    InvalidValue = "invalid_value",
    /// An Excel cell holds a value outside the header's columns.
    OutsideHeader = "outside_header",
    /// An Excel cell holds an error such as `#REF!`.
    CellError = "cell_error",

    // One row, as mapped and validated.
    /// A value every row needs is missing.
    Required = "required",
    /// The value is not a code of the field's list.
    UnknownCode = "unknown_code",
    /// The value is not a country.
    InvalidCountry = "invalid_country",
    /// The value is not yes or no.
    InvalidFlag = "invalid_flag",
    /// The value is not a date.
    InvalidDate = "invalid_date",
    /// The date is after the day of ingest.
    DateInFuture = "date_in_future",
    /// The date is before the earliest accepted.
    DateTooEarly = "date_too_early",
    /// The value is not an age in whole years.
    InvalidAge = "invalid_age",
    /// The value is not a registration year.
    InvalidYear = "invalid_year",
    /// The birth date is after the registration date.
    BornAfterRegistration = "born_after_registration",
    /// The case closes before it was registered.
    ClosedBeforeRegistration = "closed_before_registration",
    /// Shelter was accepted but recorded as not offered.
    AcceptedWithoutOffer = "accepted_without_offer",
    /// The case id is used in more than one row of the file.
    DuplicateCaseId = "duplicate_case_id",
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl PartialEq<&str> for Rule {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

/// One problem: where it is, which rule it breaks and what to do about it.
///
/// The place is generic so that each kind of problem keeps the JSON shape reports have always
/// had: a [`RowIssue`] always has a row and a column name (empty when none applies), a
/// [`FileProblem`] may have neither.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem<Row = Option<u64>, Column = Option<String>> {
    /// Row number as the NGO sees it.
    pub row: Row,
    /// The NGO's column name, or the canonical field when no column holds it.
    pub column: Column,
    pub rule: Rule,
    /// What is wrong and what would be accepted. Never the cell's value.
    pub message: String,
}

/// A broken rule in one row: the row is rejected, the file may still be committed.
pub type RowIssue = Problem<u64, String>;

/// A problem with the file as a whole (unreadable, a required column missing, ...).
pub type FileProblem = Problem<Option<u64>, Option<String>>;

impl FileProblem {
    /// A problem with no place in the file.
    pub fn file(rule: Rule, message: impl Into<String>) -> Self {
        Problem {
            row: None,
            column: None,
            rule,
            message: message.into(),
        }
    }

    /// The same problem as an issue of its row, for a reader's error that rejects one row.
    pub fn into_row_issue(self) -> RowIssue {
        Problem {
            row: self.row.unwrap_or_default(),
            column: self.column.unwrap_or_default(),
            rule: self.rule,
            message: self.message,
        }
    }
}

/// `row 3, column "name" [rule]: message`, or `file [rule]: message`.
impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.row {
            Some(row) => write!(f, "row {row}")?,
            None => f.write_str("file")?,
        }
        if let Some(column) = &self.column {
            write!(f, ", column {column:?}")?;
        }
        write!(f, " [{}]: {}", self.rule, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_are_distinct_snake_case() {
        let mut names: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Rule::ALL.len());
        for rule in Rule::ALL {
            let json = serde_json::to_string(rule).unwrap();
            assert_eq!(json, format!("\"{}\"", rule.name()));
        }
    }

    #[test]
    fn shapes_serialise_as_before() {
        let issue = RowIssue {
            row: 7,
            column: "gender".into(),
            rule: Rule::UnknownCode,
            message: "m".into(),
        };
        assert_eq!(
            serde_json::to_string(&issue).unwrap(),
            r#"{"row":7,"column":"gender","rule":"unknown_code","message":"m"}"#
        );
        let problem = FileProblem::file(Rule::NoRows, "m");
        assert_eq!(
            serde_json::to_string(&problem).unwrap(),
            r#"{"row":null,"column":null,"rule":"no_rows","message":"m"}"#
        );
    }
}
