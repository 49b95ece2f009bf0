//! ctstats' MST on any table of categorical columns, for `bench/synthetic.sh`'s run on a dataset
//! a package ships (not on ctstats records: no ledger, no charge, no person key).
//!
//! ```text
//! cargo run --release --example mst_table -- --input TABLE.csv --domains DOMAINS.json \
//!     --epsilon 1 --delta 1e-6 --out SYNTH.csv
//! ```
//!
//! Every row of `TABLE.csv` (a header, then text values) stands for one person, so the
//! contribution bound is 1. `DOMAINS.json` is `{"columns": [...], "domains": [[...], ...]}`:
//! the public domain of each column, given to the reference alike; a value outside it is an
//! error naming its row and column. The table goes through the same code as
//! `ctstats synthesize`: the noise of `synthetic::Noise::calibrate` for that many columns, then
//! `synthetic::mst`. Prints one JSON line: rows, the tree, the charge and the timings.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Schema};
use ctstats_query::synthetic::{self, Contingency, Noise};

struct Args {
    input: PathBuf,
    domains: PathBuf,
    epsilon: f64,
    delta: f64,
    out: PathBuf,
}

fn args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let (mut input, mut domains, mut epsilon, mut delta, mut out) = (None, None, None, None, None);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--input" => input = Some(PathBuf::from(value)),
            "--domains" => domains = Some(PathBuf::from(value)),
            "--epsilon" => epsilon = Some(value.parse().context("--epsilon")?),
            "--delta" => delta = Some(value.parse().context("--delta")?),
            "--out" => out = Some(PathBuf::from(value)),
            _ => bail!("unknown flag {flag}; see the file's documentation"),
        }
    }
    Ok(Args {
        input: input.context("--input is required")?,
        domains: domains.context("--domains is required")?,
        epsilon: epsilon.context("--epsilon is required")?,
        delta: delta.unwrap_or(1e-6),
        out: out.context("--out is required")?,
    })
}

#[derive(serde::Deserialize)]
struct Domains {
    columns: Vec<String>,
    domains: Vec<Vec<String>>,
}

fn main() -> Result<()> {
    let a = args()?;
    let t0 = Instant::now();
    let Domains { columns, domains } = serde_json::from_reader(
        File::open(&a.domains).with_context(|| format!("{}", a.domains.display()))?,
    )
    .with_context(|| format!("{}: not {{columns, domains}}", a.domains.display()))?;
    if columns.len() != domains.len() {
        bail!(
            "{}: {} columns, {} domains",
            a.domains.display(),
            columns.len(),
            domains.len()
        );
    }
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let reader = arrow_csv::ReaderBuilder::new(schema)
        .with_header(true)
        .with_batch_size(65_536)
        .build(File::open(&a.input).with_context(|| format!("{}", a.input.display()))?)?;
    let index: Vec<HashMap<&str, u16>> = domains
        .iter()
        .map(|d| {
            d.iter()
                .enumerate()
                .map(|(i, v)| (v.as_str(), i as u16))
                .collect()
        })
        .collect();
    let mut counts: HashMap<Vec<u16>, i64> = HashMap::new();
    let mut row = 0usize;
    for batch in reader {
        let batch = batch?;
        let texts: Vec<_> = (0..columns.len())
            .map(|i| batch.column(i).as_string::<i32>())
            .collect();
        for r in 0..batch.num_rows() {
            row += 1;
            let mut cells = Vec::with_capacity(columns.len());
            for (i, text) in texts.iter().enumerate() {
                let value = if text.is_null(r) { "" } else { text.value(r) };
                let Some(&cell) = index[i].get(value) else {
                    bail!(
                        "{} row {row}, column {}: {value:?} is not in the column's domain",
                        a.input.display(),
                        columns[i]
                    );
                };
                cells.push(cell);
            }
            *counts.entry(cells).or_insert(0) += 1;
        }
    }
    let exact = Contingency {
        rows: counts.into_iter().collect(),
        generation: 0,
    };
    let t1 = Instant::now();
    let noise = Noise::calibrate(columns.len(), 1, a.epsilon, a.delta)?;
    let table = synthetic::mst(&columns, &domains, &noise, &exact)?.into_inner();
    let t2 = Instant::now();
    let parquet = synthetic::to_parquet(&table).map_err(anyhow::Error::msg)?;
    let bytes = if a.out.extension().is_some_and(|e| e == "parquet") {
        parquet
    } else {
        synthetic::parquet_to_csv(&parquet).map_err(anyhow::Error::msg)?
    };
    std::fs::write(&a.out, bytes).with_context(|| format!("{}", a.out.display()))?;
    let t3 = Instant::now();
    println!(
        "{}",
        serde_json::json!({
            "input_rows": row,
            "rows": table.rows(),
            "tree": table.tree,
            "kept_values": table.kept_values,
            "rho": noise.loss.rho,
            "epsilon": noise.cost.epsilon,
            "delta": noise.cost.delta,
            "read_s": (t1 - t0).as_secs_f64(),
            "mst_s": (t2 - t1).as_secs_f64(),
            "write_s": (t3 - t2).as_secs_f64(),
        })
    );
    Ok(())
}
