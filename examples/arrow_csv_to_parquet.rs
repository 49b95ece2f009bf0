//! Baseline for the ingest benchmark: what a user would otherwise write with arrow-rs alone.
//! Infers the schema from the first 1000 rows, streams the CSV into a zstd Parquet file, and
//! validates, maps and pseudonymises nothing.
//!
//! `cargo run --release --example arrow_csv_to_parquet -- INPUT.csv OUTPUT.parquet [DELIMITER]`

use std::fs::File;
use std::io::{BufReader, Seek};
use std::sync::Arc;

use arrow_csv::ReaderBuilder;
use arrow_csv::reader::Format;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (input, output) = match (args.get(1), args.get(2)) {
        (Some(i), Some(o)) => (i, o),
        _ => anyhow::bail!("usage: arrow_csv_to_parquet INPUT.csv OUTPUT.parquet [DELIMITER]"),
    };
    let delimiter = args.get(3).and_then(|d| d.bytes().next()).unwrap_or(b',');
    let mut file = File::open(input)?;
    let format = Format::default()
        .with_header(true)
        .with_delimiter(delimiter);
    let (schema, _) = format.infer_schema(BufReader::new(&mut file), Some(1000))?;
    file.rewind()?;
    let schema = Arc::new(schema);
    let reader = ReaderBuilder::new(schema.clone())
        .with_format(format)
        .with_batch_size(8192)
        .build(BufReader::new(file))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .build();
    let mut writer = ArrowWriter::try_new(File::create(output)?, schema, Some(props))?;
    let mut rows = 0usize;
    for batch in reader {
        let batch = batch?;
        rows += batch.num_rows();
        writer.write(&batch)?;
    }
    writer.close()?;
    println!("{rows} rows");
    Ok(())
}
