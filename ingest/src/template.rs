//! What an NGO is handed to fill in: the canonical profile's columns as a CSV header (the
//! identity inputs, then every canonical field a file may feed), and the field guide (the
//! canonical record and the input columns) as Markdown. The upload page links both.

use ctstats_schemas::{FIELDS, document_markdown};

use crate::profile::{DERIVED_FIELDS, INPUT_TARGETS};

/// The identity inputs of the template, first: hashed into the pseudonyms and dropped.
pub const TEMPLATE_IDENTITY: &[&str] = &[
    "local_case_id",
    "first_name",
    "last_name",
    "birth_date",
    "document_number",
];

/// The template's columns, in order.
pub fn template_columns() -> Vec<&'static str> {
    TEMPLATE_IDENTITY
        .iter()
        .copied()
        .chain(
            FIELDS
                .iter()
                .map(|f| f.name)
                .filter(|n| !DERIVED_FIELDS.contains(n)),
        )
        .collect()
}

/// The template as CSV: one header line, for the `canonical` profile.
pub fn template_csv() -> String {
    format!("{}\n", template_columns().join(","))
}

/// The field guide: the canonical record, then the input columns a file may also carry.
pub fn field_guide_markdown() -> String {
    let mut out = document_markdown();
    out.push_str(
        "\n## Input columns\n\nBesides the fields above (except provenance, which ctstats sets), \
         a file may carry these columns. Identity inputs are hashed into the pseudonyms or \
         generalised, and never stored.\n\n| column | meaning |\n|---|---|\n",
    );
    for (name, meaning) in INPUT_TARGETS {
        out.push_str(&format!("| `{name}` | {meaning} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{canonical, is_target};

    #[test]
    fn every_template_column_is_a_column_of_the_canonical_profile() {
        let profile = canonical();
        for column in template_columns() {
            assert!(is_target(column), "{column} feeds nothing");
            assert!(
                profile.column_names(column).iter().any(|c| c == column),
                "{column}"
            );
        }
        assert!(!template_columns().contains(&"person_key"));
        let guide = field_guide_markdown();
        assert!(guide.contains("| `first_name` |") && guide.contains("| `gender` |"));
    }
}
