//! Query benchmark, run by `bench/query.sh` on an ingested dataset. In one process it times:
//!
//! 1. baselines in raw DataFusion SQL, no privacy: the aggregation a user would write
//!    (distinct persons per mission and registration year) over the same Parquet files, over
//!    the same rows loaded into memory (a `MemTable`, as read), and the same per-person
//!    bounding ctstats does (`ROW_NUMBER() ... <= 1`) over the files: the honest no-DP floor;
//! 2. the same question through the ctstats engine in-process (`Service::ask`): pricing, the
//!    ledger charge, planning with per-person truncation over the full public domain, OpenDP
//!    noise and storing the answer (each run asks at another epsilon, so none is re-served),
//!    over the in-memory snapshot and, with a memory budget of 0, over the Parquet files;
//! 3. the HTTP service on loopback with `--clients` concurrent keep-alive clients: fresh queries
//!    (each one distinct, so each is planned, charged, computed and stored) and re-served ones
//!    (asked before, answered from the ledger at no cost).
//!
//! Prints medians and p50/p99 and the ratios against the baselines. Usage:
//!   query_bench --data DIR [--runs 10] [--clients 64] [--fresh 128] [--reserved 20000]
//!               [--engine-only true]   (steps 1 and 2 only, for `bench/opendp.sh`)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use ctstats_query::ledger::{Ledger, Principal, Role};
use ctstats_query::service::{Service, ServiceConfig};
use ctstats_schemas::manifest::Manifest;
use ctstats_server::{AppState, serve};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const MISSIONS: [&str; 6] = ["KAZ", "KGZ", "TJK", "UZB", "MDA", "UKR"];

struct Args {
    data: PathBuf,
    runs: usize,
    clients: usize,
    fresh: usize,
    reserved: usize,
    engine_only: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        data: PathBuf::new(),
        runs: 10,
        clients: 64,
        fresh: 128,
        reserved: 20_000,
        engine_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--data" => a.data = value.into(),
            "--runs" => a.runs = value.parse()?,
            "--clients" => a.clients = value.parse()?,
            "--fresh" => a.fresh = value.parse()?,
            "--reserved" => a.reserved = value.parse()?,
            "--engine-only" => a.engine_only = value.parse()?,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    anyhow::ensure!(!a.data.as_os_str().is_empty(), "give --data DIR");
    Ok(a)
}

fn query(epsilon: f64) -> String {
    format!(
        r#"{{"measure":"persons","group_by":["mission","registration_year"],
            "period":{{"from":"2003-01","to":"2008-12"}},"budget":{{"epsilon":{epsilon}}}}}"#
    )
}

const RAW_SQL: &str = "SELECT reporting_mission, to_char(registration_month, '%Y') AS year, \
     count(DISTINCT person_key) AS persons FROM records \
     WHERE registration_month >= DATE '2003-01-01' AND registration_month < DATE '2009-01-01' \
     GROUP BY 1, 2";

/// The same question with the bounding ctstats applies (each person's first record in record
/// key order), no noise and no public domain: what any correct DP engine must at least do.
const BOUNDED_SQL: &str = "WITH kept AS (SELECT reporting_mission, registration_month, \
     ROW_NUMBER() OVER (PARTITION BY person_key ORDER BY record_key \
     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS r FROM records \
     WHERE registration_month >= DATE '2003-01-01' AND registration_month < DATE '2009-01-01') \
     SELECT reporting_mission, to_char(registration_month, '%Y') AS year, count(*) AS persons \
     FROM kept WHERE r <= 1 GROUP BY 1, 2";

/// The same bounding as a lag over the global order (kept when the record `k` places back is
/// another person's): exact for any `k`, one sort instead of a sort per partition.
const LAG_SQL: &str = "WITH kept AS (SELECT reporting_mission, registration_month, person_key, \
     LAG(person_key, 1) OVER (ORDER BY person_key, record_key \
     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS back FROM records \
     WHERE registration_month >= DATE '2003-01-01' AND registration_month < DATE '2009-01-01') \
     SELECT reporting_mission, to_char(registration_month, '%Y') AS year, count(*) AS persons \
     FROM kept WHERE back IS DISTINCT FROM person_key GROUP BY 1, 2";

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A session over the live Parquet files, or over the same rows loaded into memory as read.
async fn raw_session(root: &Path, in_memory: bool) -> anyhow::Result<SessionContext> {
    let manifest = Manifest::read(root)?;
    let paths: Vec<String> = manifest
        .live_files()
        .map(|f| root.join(&f.path).to_string_lossy().into_owned())
        .collect();
    let ctx = SessionContext::new();
    let schema = manifest.schema();
    let options = ParquetReadOptions::default().schema(&schema);
    let table = ctx.read_parquet(paths, options).await?;
    if in_memory {
        let batches = table.collect().await?;
        let partitions = batches.into_iter().map(|b| vec![b]).collect();
        let mem = datafusion::datasource::MemTable::try_new(schema, partitions)?;
        ctx.register_table("records", Arc::new(mem))?;
    } else {
        ctx.register_table("records", table.into_view())?;
    }
    Ok(ctx)
}

async fn raw(ctx: &SessionContext, sql: &str) -> anyhow::Result<usize> {
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

async fn private(engine: &Service, who: &Principal, epsilon: f64) -> anyhow::Result<usize> {
    let spec = engine.parse_query(query(epsilon).as_bytes())?;
    let answered = engine.ask(who, spec).await?;
    anyhow::ensure!(!answered.reused, "a benchmark query was re-served");
    let answer = serde_json::to_value(&answered.answer)?;
    Ok(answer["cells"].as_array().map_or(0, Vec::len))
}

fn config(root: &Path, missions: &[String]) -> ServiceConfig {
    ServiceConfig {
        data: root.to_path_buf(),
        dataset: "bench".into(),
        missions: missions.to_vec(),
        max_upload_bytes: 1 << 20,
        max_concurrent_queries: ServiceConfig::default_concurrent_queries(),
        memory_budget: ctstats_query::service::DEFAULT_MEMORY_BUDGET,
    }
}

/// One keep-alive connection: POST `body` and read the response; returns the status.
async fn post(conn: &mut BufReader<TcpStream>, token: &str, body: &str) -> anyhow::Result<u16> {
    let request = format!(
        "POST /v1/query HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.get_mut().write_all(request.as_bytes()).await?;
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    let mut length = 0usize;
    loop {
        line.clear();
        conn.read_line(&mut line).await?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse()?;
        }
    }
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).await?;
    Ok(status)
}

/// `total` requests from `clients` connections; request `i` asks `query(epsilon(i))`.
async fn load(
    addr: std::net::SocketAddr,
    token: &str,
    clients: usize,
    total: usize,
    epsilon: impl Fn(usize) -> f64 + Send + Sync + 'static,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let epsilon = Arc::new(epsilon);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, epsilon, token) = (next.clone(), epsilon.clone(), token.to_string());
        tasks.push(tokio::spawn(async move {
            let mut conn = BufReader::new(TcpStream::connect(addr).await?);
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return anyhow::Ok(latencies);
                }
                let t = Instant::now();
                let status = post(&mut conn, &token, &query(epsilon(i))).await?;
                anyhow::ensure!(status == 200, "status {status}");
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    all.sort();
    Ok((elapsed, all))
}

fn report(name: &str, elapsed: Duration, latencies: &[Duration]) -> f64 {
    let rps = latencies.len() as f64 / elapsed.as_secs_f64();
    println!(
        "{name}: {} requests in {:.2} s = {rps:.2} req/s; p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        ms(percentile(latencies, 0.5)),
        ms(percentile(latencies, 0.99)),
    );
    rps
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let root = args.data.clone();
    let missions: Vec<String> = MISSIONS.iter().map(|m| m.to_string()).collect();
    let manifest = Manifest::read(&root)?;
    println!(
        "dataset: {} live rows in {} files",
        manifest.live_rows(),
        manifest.live_files().count()
    );

    // The engine over the same files, with its own ledger: from the snapshot, and from files.
    let engine_dir = tempfile::tempdir()?;
    let engine_ledger = Ledger::open(&engine_dir.path().join("engine.ledger.sqlite"))?;
    let (who, _) = engine_ledger.add_principal("bench", Role::Researcher, None)?;
    engine_ledger.set_budget(&who.id, "bench", 1e6, 0.0)?;
    let engine = Service::new(config(&root, &missions), engine_ledger, None);
    let t = Instant::now();
    let snapshot = engine
        .data()
        .prepare()
        .await?
        .context("the dataset does not fit the snapshot's memory budget")?;
    println!(
        "snapshot: {} rows, {} persons, {:.1} MiB ({:.0} bytes a row), loaded in {:.0} ms",
        snapshot.rows,
        snapshot.persons,
        snapshot.bytes as f64 / (1 << 20) as f64,
        snapshot.bytes as f64 / snapshot.rows.max(1) as f64,
        ms(t.elapsed())
    );
    let files_ledger = Ledger::open(&engine_dir.path().join("files.ledger.sqlite"))?;
    let (files_who, _) = files_ledger.add_principal("bench", Role::Researcher, None)?;
    files_ledger.set_budget(&files_who.id, "bench", 1e6, 0.0)?;
    let from_files = ServiceConfig {
        memory_budget: 0,
        ..config(&root, &missions)
    };
    let files_engine = Service::new(from_files, files_ledger, None);

    // Warm the page cache and every path once, then time `runs` of each, interleaved.
    let on_files = raw_session(&root, false).await?;
    let in_memory = raw_session(&root, true).await?;
    let names = [
        "raw DataFusion SQL, count distinct per mission-year, Parquet files",
        "raw DataFusion SQL, count distinct per mission-year, rows in memory",
        "raw DataFusion SQL, same per-person bounding (ROW_NUMBER <= 1), Parquet files",
        "raw DataFusion SQL, same bounding as LAG over the global order, Parquet files",
        "ctstats DP query, in-memory snapshot (truncate, public domain, noise, ledger)",
        "ctstats DP query, Parquet files (memory budget 0)",
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    for run in 0..=args.runs {
        let epsilon = 1.0 + run as f64 * 1e-6;
        let mut timed = Vec::new();
        let t = Instant::now();
        let groups = raw(&on_files, RAW_SQL).await?;
        timed.push(t.elapsed());
        let t = Instant::now();
        let in_memory_groups = raw(&in_memory, RAW_SQL).await?;
        timed.push(t.elapsed());
        let t = Instant::now();
        let bounded_groups = raw(&on_files, BOUNDED_SQL).await?;
        timed.push(t.elapsed());
        let t = Instant::now();
        let lag_groups = raw(&on_files, LAG_SQL).await?;
        timed.push(t.elapsed());
        let t = Instant::now();
        let cells = private(&engine, &who, epsilon).await?;
        timed.push(t.elapsed());
        let t = Instant::now();
        let file_cells = private(&files_engine, &files_who, epsilon).await?;
        timed.push(t.elapsed());
        anyhow::ensure!(
            groups > 0
                && in_memory_groups == groups
                && bounded_groups == groups
                && lag_groups == groups
                && cells == 7 * 7
                && file_cells == cells,
            "{groups} groups, {cells} cells"
        );
        // The first round warms up.
        if run > 0 {
            for (all, t) in times.iter_mut().zip(timed) {
                all.push(t);
            }
        }
    }
    let medians: Vec<f64> = times.into_iter().map(|t| ms(median(t))).collect();
    for (name, m) in names.iter().zip(&medians) {
        println!("{name}: median {m:.1} ms over {} runs", args.runs);
    }
    let dp = medians[4];
    println!(
        "ratio DP (snapshot) / raw on files: {:.2}x",
        dp / medians[0]
    );
    println!(
        "ratio DP (snapshot) / raw in memory: {:.2}x",
        dp / medians[1]
    );
    println!(
        "ratio DP (snapshot) / raw bounded on files: {:.2}x",
        dp / medians[2]
    );
    println!(
        "ratio DP (files) / raw on files: {:.2}x",
        medians[5] / medians[0]
    );
    println!("ratio DP (files) / DP (snapshot): {:.2}x", medians[5] / dp);
    // For scripts: the DP query's median, one `key=value` line.
    println!("ctstats_dp_ms={dp:.3}");
    if args.engine_only {
        return Ok(());
    }

    // The service on loopback.
    let dir = tempfile::tempdir()?;
    let ledger = Ledger::open(&dir.path().join("bench.ledger.sqlite"))?;
    let (p, token) = ledger.add_principal("bench", Role::Researcher, None)?;
    ledger.set_budget(&p.id, "bench", 1e6, 0.0)?;
    let state = AppState::new(config(&root, &missions), ledger, None);
    // As `ctstats serve` does: the snapshot is loaded before the first request is taken, so
    // the fresh queries below measure queries, not the server's start-up.
    let t = Instant::now();
    state.service().data().prepare().await?;
    println!(
        "HTTP service: snapshot loaded before listening in {:.0} ms",
        ms(t.elapsed())
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, state, std::future::pending()));

    let clients = args.clients;
    let (elapsed, fresh) =
        load(addr, &token, clients, args.fresh, |i| 1.0 + i as f64 * 1e-6).await?;
    let fresh_rps = report(
        &format!("HTTP fresh queries, {clients} clients"),
        elapsed,
        &fresh,
    );
    // Re-served: the same questions as the fresh run, asked again.
    let n = args.fresh;
    let (elapsed, reserved) = load(addr, &token, clients, args.reserved, move |i| {
        1.0 + (i % n) as f64 * 1e-6
    })
    .await?;
    let reserved_rps = report(
        &format!("HTTP re-served answers, {clients} clients"),
        elapsed,
        &reserved,
    );
    println!(
        "ratio re-served / fresh throughput: {:.1}x",
        reserved_rps / fresh_rps
    );
    Ok(())
}
