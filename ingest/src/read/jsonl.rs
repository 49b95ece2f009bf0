//! JSON Lines reader: one JSON object per line; keys become columns in order of first appearance.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::Path;

use encoding_rs::Encoding;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::checks::text_cell;
use super::text::{TextReader, io_failure, open_text};
use super::{Limits, Progress, ReadError, ReadOptions, RowSource, SourceRow};
use crate::problem::Rule;

pub(super) fn open(
    path: &Path,
    options: &ReadOptions,
    progress: Progress,
) -> Result<Box<dyn RowSource>, ReadError> {
    let input = open_text(path, options, progress, false)?;
    Ok(Box::new(JsonlSource {
        reader: BufReader::new(input.reader),
        encoding: input.encoding,
        limits: options.limits,
        header: Vec::new(),
        columns: HashMap::new(),
        line: Vec::new(),
        number: 0,
        done: false,
    }))
}

/// Rows of a JSON Lines file.
#[derive(Debug)]
struct JsonlSource {
    reader: BufReader<TextReader>,
    encoding: &'static Encoding,
    limits: Limits,
    header: Vec<String>,
    /// Header index of each key.
    columns: HashMap<String, usize>,
    /// The current line's bytes.
    line: Vec<u8>,
    /// The current line's number, from 1.
    number: u64,
    done: bool,
}

impl RowSource for JsonlSource {
    fn header(&self) -> &[String] {
        &self.header
    }

    fn next_row(&mut self) -> Option<Result<SourceRow, ReadError>> {
        while !self.done {
            self.line.clear();
            match self.reader.read_until(b'\n', &mut self.line) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    self.number += 1;
                    let text = String::from_utf8_lossy(&self.line).into_owned();
                    if !text.trim().is_empty() {
                        let row = self.parse(&text);
                        self.done = matches!(&row, Err(err) if err.fatal);
                        return Some(row);
                    }
                }
                Err(err) => {
                    self.done = true;
                    return Some(Err(io_failure(&err, self.number + 1)));
                }
            }
        }
        None
    }

    fn encoding(&self) -> Option<&'static str> {
        Some(self.encoding.name())
    }
}

impl JsonlSource {
    /// Parses one non-blank line into a row, growing the header with new keys.
    fn parse(&mut self, text: &str) -> Result<SourceRow, ReadError> {
        let number = self.number;
        let fields = match serde_json::from_str::<Line>(text) {
            Ok(Line::Object(fields)) => fields,
            Ok(Line::Other) => {
                return Err(invalid(
                    number,
                    "the line is JSON but not an object ({...})".into(),
                ));
            }
            Err(err) => {
                return Err(invalid(
                    number,
                    format!("the line is not valid JSON: {err}"),
                ));
            }
        };
        let cells = self.cells(number, &fields)?;
        self.add_columns(&fields)?;
        let mut values = vec![None; self.header.len()];
        for ((key, _), cell) in fields.iter().zip(cells) {
            values[self.columns[key]] = cell;
        }
        Ok(SourceRow { number, values })
    }

    /// The cell of each field, or the first problem.
    fn cells(
        &self,
        number: u64,
        fields: &[(String, Value)],
    ) -> Result<Vec<Option<String>>, ReadError> {
        let mut cells = Vec::with_capacity(fields.len());
        let mut seen = HashSet::with_capacity(fields.len());
        for (key, value) in fields {
            if !seen.insert(key) {
                return Err(row_error(
                    number,
                    key,
                    Rule::DuplicateKey,
                    "the key appears twice in the object",
                ));
            }
            let Some(text) = scalar_text(value) else {
                return Err(row_error(
                    number,
                    key,
                    Rule::NestedValue,
                    "the value is a nested object or array of arrays/objects; only scalars and arrays of \
                     scalars are supported",
                ));
            };
            let cell = match text {
                Some(text) => text_cell(&text, number, &self.limits, || key.clone())?,
                None => None,
            };
            cells.push(cell);
        }
        Ok(cells)
    }

    /// Appends the keys not seen before to the header.
    fn add_columns(&mut self, fields: &[(String, Value)]) -> Result<(), ReadError> {
        let new = fields
            .iter()
            .filter(|(key, _)| !self.columns.contains_key(key))
            .count();
        if self.header.len() + new > self.limits.max_columns {
            let mut err = ReadError::fatal(
                Rule::TooManyColumns,
                format!(
                    "this line brings the number of distinct keys above {}",
                    self.limits.max_columns
                ),
            );
            err.problem.row = Some(self.number);
            return Err(err);
        }
        for (key, _) in fields {
            if !self.columns.contains_key(key) {
                self.columns.insert(key.clone(), self.header.len());
                self.header.push(key.clone());
            }
        }
        Ok(())
    }
}

fn invalid(number: u64, message: String) -> ReadError {
    ReadError::in_row(number, None, Rule::InvalidJson, message)
}

fn row_error(number: u64, key: &str, rule: Rule, message: &str) -> ReadError {
    ReadError::in_row(number, Some(key.to_owned()), rule, message)
}

/// A value's text (untrimmed; `Some(None)` when null or empty), or `None` when nested.
fn scalar_text(value: &Value) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::Bool(b) => Some(Some(b.to_string())),
        Value::Number(n) => Some(Some(n.to_string())),
        Value::String(s) => Some(Some(s.clone())),
        Value::Array(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                if matches!(item, Value::Array(_) | Value::Object(_)) {
                    return None;
                }
                if let Some(Some(text)) = scalar_text(item) {
                    let text = text.trim();
                    if !text.is_empty() {
                        parts.push(text.to_owned());
                    }
                }
            }
            Some((!parts.is_empty()).then(|| parts.join(";")))
        }
        Value::Object(_) => None,
    }
}

/// A parsed line: an object's fields in file order, or something else. Parsed with a visitor so
/// that a non-object line never puts its content in an error message.
enum Line {
    Object(Vec<(String, Value)>),
    Other,
}

impl<'de> Deserialize<'de> for Line {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LineVisitor)
    }
}

struct LineVisitor;

impl<'de> Visitor<'de> for LineVisitor {
    type Value = Line;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Line, A::Error> {
        let mut fields = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<Value>()?;
            fields.push((key.trim().to_owned(), value));
        }
        Ok(Line::Object(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Line, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Line::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Line, E> {
        Ok(Line::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Line, E> {
        Ok(Line::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Line, E> {
        Ok(Line::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Line, E> {
        Ok(Line::Other)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Line, E> {
        Ok(Line::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Line, E> {
        Ok(Line::Other)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::{Format, Limits, open};
    use super::*;

    fn read(
        text: &str,
        options: &ReadOptions,
    ) -> (Box<dyn RowSource>, Vec<Result<SourceRow, ReadError>>) {
        let mut file = tempfile::Builder::new()
            .suffix(".jsonl")
            .tempfile()
            .expect("temp file");
        file.write_all(text.as_bytes()).expect("write temp file");
        let mut source = open(file.path(), options, Progress::default()).expect("open");
        let rows = std::iter::from_fn(|| source.next_row()).collect();
        (source, rows)
    }

    fn options() -> ReadOptions {
        ReadOptions::new(Format::Jsonl)
    }

    fn some(values: &[&str]) -> Vec<Option<String>> {
        values
            .iter()
            .map(|v| (!v.is_empty()).then(|| (*v).to_owned()))
            .collect()
    }

    #[test]
    fn header_grows_in_order_of_appearance() {
        let text = "{\"z\": \"Айгуль \", \"a\": 1}\n\n{\"a\": 2.5, \" m \": true, \"z\": null}\n\
                    {\"tags\": [\"x\", 3, null, \" \"], \"a\": \"\"}\n";
        let (source, rows) = read(text, &options());
        assert_eq!(source.header(), ["z", "a", "m", "tags"]);
        assert_eq!(source.encoding(), Some("UTF-8"));
        let rows: Vec<_> = rows.into_iter().map(|r| r.expect("row")).collect();
        assert_eq!(
            rows[0],
            SourceRow {
                number: 1,
                values: some(&["Айгуль", "1"])
            }
        );
        assert_eq!(
            rows[1],
            SourceRow {
                number: 3,
                values: some(&["", "2.5", "true"])
            }
        );
        assert_eq!(
            rows[2],
            SourceRow {
                number: 4,
                values: some(&["", "", "", "x;3"])
            }
        );
    }

    #[test]
    fn invalid_lines_are_row_errors_without_content() {
        let text = "{\"a\": 1}\n{\"a\": \"secret\n\"secret\"\n[\"secret\"]\n{\"a\": {\"b\": 1}}\n{\"a\": 1, \"a\": 2}\n";
        let (_, rows) = read(text, &options());
        let rules: Vec<_> = rows
            .iter()
            .map(|r| {
                r.as_ref()
                    .err()
                    .map(|e| (e.problem.rule.name(), e.problem.row, e.fatal))
            })
            .collect();
        assert_eq!(
            rules,
            [
                None,
                Some(("invalid_json", Some(2), false)),
                Some(("invalid_json", Some(3), false)),
                Some(("invalid_json", Some(4), false)),
                Some(("nested_value", Some(5), false)),
                Some(("duplicate_key", Some(6), false)),
            ]
        );
        for row in &rows {
            if let Err(err) = row {
                assert!(!err.to_string().contains("secret"), "{err}");
            }
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let text = format!(
            "{}{}\n{{\"a\": 1}}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let (_, rows) = read(&text, &options());
        assert_eq!(
            rows[0].as_ref().expect_err("too deep").problem.rule.name(),
            "invalid_json"
        );
        assert_eq!(rows[1].as_ref().expect("row").values, some(&["1"]));
    }

    #[test]
    fn limits() {
        let mut limited = options();
        limited.limits = Limits {
            max_line_bytes: 32,
            max_cell_bytes: 4,
            max_columns: 2,
            ..Limits::default()
        };
        let text = format!(
            "{{\"a\": \"12345\"}}\n{{\"a\": \"1\", \"b\": 2}}\n{{\"a\": \"{}\"}}\n",
            "x".repeat(100)
        );
        let (_, rows) = read(&text, &limited);
        let err = rows[0].as_ref().expect_err("cell too large");
        assert_eq!(
            (err.problem.rule.name(), err.problem.column.as_deref()),
            ("cell_too_large", Some("a"))
        );
        assert!(rows[1].is_ok());
        let err = rows[2].as_ref().expect_err("line too long");
        assert_eq!(
            (err.problem.rule.name(), err.problem.row, err.fatal),
            ("line_too_long", Some(3), true)
        );
        assert_eq!(rows.len(), 3);

        let (_, rows) = read("{\"a\": 1, \"b\": 2, \"c\": 3}\n{\"a\": 1}\n", &limited);
        let err = rows[0].as_ref().expect_err("too many columns");
        assert_eq!(
            (err.problem.rule.name(), err.fatal, err.problem.row),
            ("too_many_columns", true, Some(1))
        );
        assert_eq!(rows.len(), 1);
    }
}
