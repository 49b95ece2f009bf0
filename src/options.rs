//! Read options from the command line's or an upload's parameters.

use std::path::Path;

use anyhow::{Context, bail};
use ctstats_ingest::read::{Format, ReadOptions};

/// Read options for one file: the format from `format` or else from `name`'s extension.
pub fn read_options(
    name: Option<&Path>,
    format: Option<&str>,
    encoding: Option<&str>,
    delimiter: Option<char>,
    sheet: Option<String>,
) -> anyhow::Result<ReadOptions> {
    let format = match (format, name) {
        (Some(f), _) => Format::from_name(f)
            .with_context(|| format!("unknown format {f:?}: use csv, xlsx, jsonl or parquet"))?,
        (None, Some(path)) => Format::from_path(path).with_context(|| {
            format!(
                "cannot tell the format of {} from its extension: give the format",
                path.display()
            )
        })?,
        (None, None) => bail!("give the format: csv, xlsx, jsonl or parquet"),
    };
    let mut options = ReadOptions::new(format);
    if let Some(label) = encoding {
        options.encoding = Some(
            encoding_rs::Encoding::for_label(label.as_bytes()).with_context(|| {
                format!("unknown encoding {label:?}: try utf-8 or windows-1251")
            })?,
        );
    }
    if let Some(d) = delimiter {
        if !d.is_ascii() {
            bail!("the delimiter must be one ASCII character");
        }
        options.delimiter = Some(d as u8);
    }
    options.sheet = sheet;
    Ok(options)
}
