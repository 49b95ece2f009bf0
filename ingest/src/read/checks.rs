//! Checks every reader applies to a header and to each cell, and the error for a file that
//! cannot be opened.

use std::io;

use super::{Limits, ReadError};
use crate::problem::Rule;

/// Rejects a header of more than `limits.max_columns` columns, before its names are copied.
pub(super) fn check_width(columns: usize, limits: &Limits) -> Result<(), ReadError> {
    if columns > limits.max_columns {
        return Err(ReadError::fatal(
            Rule::TooManyColumns,
            format!(
                "the header has {columns} columns; at most {} are allowed",
                limits.max_columns
            ),
        ));
    }
    Ok(())
}

/// Rejects a header with more than `limits.max_columns` columns or a repeated non-empty name.
pub(super) fn check_header(header: &[String], limits: &Limits) -> Result<(), ReadError> {
    check_width(header.len(), limits)?;
    for (index, name) in header.iter().enumerate() {
        // Profiles match column names ignoring case, so "Gender" and "gender" would be ambiguous.
        let folded = name.to_lowercase();
        if !name.is_empty() && header[..index].iter().any(|h| h.to_lowercase() == folded) {
            let mut err = ReadError::fatal(
                Rule::DuplicateColumn,
                format!(
                    "the column name {name:?} appears more than once in the header; rename one of them"
                ),
            );
            err.problem.column = Some(name.clone());
            return Err(err);
        }
    }
    Ok(())
}

/// The name errors use for column `index`: its header name, or its position when unnamed.
pub(super) fn column_label(header: &[String], index: usize) -> String {
    match header.get(index) {
        Some(name) if !name.is_empty() => name.clone(),
        _ => format!("#{}", index + 1),
    }
}

/// A cell's text, trimmed: `None` when blank, a `cell_too_large` error when over the limit.
pub(super) fn text_cell(
    raw: &str,
    row: u64,
    limits: &Limits,
    column: impl FnOnce() -> String,
) -> Result<Option<String>, ReadError> {
    let value = raw.trim();
    if value.is_empty() {
        Ok(None)
    } else if value.len() > limits.max_cell_bytes {
        Err(ReadError::in_row(
            row,
            Some(column()),
            Rule::CellTooLarge,
            format!(
                "the cell holds {} bytes; at most {} are allowed",
                value.len(),
                limits.max_cell_bytes
            ),
        ))
    } else {
        Ok(Some(value.to_owned()))
    }
}

/// A fatal error for a file that cannot be opened.
pub(super) fn cannot_open(err: &io::Error) -> ReadError {
    ReadError::fatal(
        Rule::CannotOpen,
        format!("the file could not be opened: {err}"),
    )
}
