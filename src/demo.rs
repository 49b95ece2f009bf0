//! `ctstats demo`: the path from NGO files to a committed, pseudonymised dataset, on synthetic
//! data whose ground truth is known, so the output can be checked by eye.
//!
//! Generates files for six missions in all four formats (the CSV files in Windows-1251), creates
//! a deployment key, ingests every file with `--accept-valid`, re-ingests one file to show the
//! duplicate check, and compares what the dataset holds with the generator's truth. Then it
//! creates principals and budgets, asks one DP query through the service in-process (intervals
//! against the truth), loads synthetic reference tables, creates a release of every indicator,
//! and serves the API and the dashboard on localhost with working tokens until Ctrl-C.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ctstats::serve::{DEFAULT_MISSIONS, LedgerArgs, ServeArgs};
use ctstats_ingest::read::{Format, Progress, ReadOptions};
use ctstats_ingest::{Dataset, IngestRequest, Profile, Secret, Status};
use ctstats_query::ledger::Role;
use ctstats_schemas::pseudonyms::KeyColumn;
use ctstats_synth::{Config, FileFormat, TextEncoding};

/// Marks a directory the demo made, so a second run may clear it and nothing else.
const MARKER: &str = ".ctstats-demo";

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Working directory (created; cleared on a later run only if the demo made it).
    #[arg(long, default_value = "ctstats-demo")]
    pub dir: PathBuf,
    /// Distinct synthetic persons.
    #[arg(long, default_value_t = 3000)]
    pub persons: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Address the demo server listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Stop after the checks instead of serving.
    #[arg(long)]
    pub no_serve: bool,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    prepare(&args.dir)?;
    let files_dir = args.dir.join("files");
    let data_dir = args.dir.join("data");
    let key_path = args.dir.join("ctstats.key");

    println!(
        "1. Generating synthetic NGO files ({} persons)",
        args.persons
    );
    let config = Config {
        seed: args.seed,
        persons: args.persons,
        formats: vec![
            FileFormat::Csv,
            FileFormat::Xlsx,
            FileFormat::Jsonl,
            FileFormat::Parquet,
        ],
        // The CSV files as a Russian-language Excel saves them: Windows-1251, `;`, CRLF.
        encoding: TextEncoding::Windows1251,
        error_rate: 0.01,
        ..Config::default()
    };
    let generated = ctstats_synth::generate(&config, &files_dir)?;
    let files: Vec<(PathBuf, &ctstats_synth::GeneratedFile)> = generated
        .files
        .iter()
        .map(|f| (files_dir.join(&f.path), f))
        .collect();
    println!("   {} files in {}", files.len(), files_dir.display());

    println!("2. Creating the deployment key {}", key_path.display());
    let secret = Secret::generate()?;
    secret.write_new(&key_path, Some(&data_dir))?;

    println!("3. Ingesting every file (valid rows committed, invalid rows listed)");
    let dataset = Dataset::open(&data_dir)?;
    let mut shown_issues = false;
    let (mut committed, mut rejected_rows) = (0u64, 0u64);
    for (path, file) in &files {
        let report = ingest(&dataset, &secret, path, file)?;
        print!("   {}: {}", file.path, report.summary());
        if report.status != Status::Committed {
            bail!("{} was not committed: {:?}", file.path, report.status);
        }
        committed += report.rows_committed;
        rejected_rows += report.rows_invalid;
        if !shown_issues && !report.issues.is_empty() {
            shown_issues = true;
            println!("   what the data officer of {} is told:", file.organisation);
            for issue in report.issues.iter().take(3) {
                println!(
                    "     row {}, column {:?}, rule {}: {}",
                    issue.row, issue.column, issue.rule, issue.message
                );
            }
        }
    }

    println!("4. Re-ingesting the first file: recognised, nothing written");
    let (path, file) = &files[0];
    let again = ingest(&dataset, &secret, path, file)?;
    print!("   {}", again.summary());
    if again.status != Status::Duplicate {
        bail!(
            "re-ingest was not reported as a duplicate: {:?}",
            again.status
        );
    }

    println!("5. The dataset against the generator's ground truth");
    let manifest = dataset.manifest()?;
    let mut persons = HashSet::new();
    let mut rows = 0u64;
    for entry in manifest.live_files() {
        for batch in ctstats_ingest::dataset::read_file(dataset.root(), entry)? {
            rows += batch.num_rows() as u64;
            let column = batch
                .column_by_name("person_key")
                .context("person_key column")?;
            let keys = KeyColumn::new(column.as_ref()).context("person_key is a key column")?;
            persons.extend((0..keys.len()).map(|i| keys.hex(i).into_owned()));
        }
    }
    let truth = &generated.truth;
    let (truth_cases, truth_persons, injected) = (truth.cases, truth.persons, truth.dirty_rows);
    println!(
        "   batches {}, rows committed {committed}, live rows {rows} (truth: {truth_cases} clean cases)",
        manifest.batches.len()
    );
    println!("   rows rejected {rejected_rows} (truth: {injected} rows with an injected fault)");
    println!(
        "   distinct persons after linking across NGOs and scripts {} (truth: {truth_persons})",
        persons.len()
    );
    let ok =
        rows == truth_cases && rejected_rows == injected && persons.len() as u64 == truth_persons;
    println!("   {}", if ok { "all three match" } else { "MISMATCH" });
    println!(
        "\nThe dataset is {} (Parquet, partitioned by mission and year; see `ctstats batches --data {}`).",
        data_dir.display(),
        data_dir.display()
    );
    if !ok {
        bail!("the dataset does not match the ground truth");
    }
    service(
        args,
        &data_dir,
        &key_path,
        &generated.truth,
        &files[0].1.organisation,
        &files[0].1.mission,
    )
}

/// Steps 6 to 9: principals, one DP query in-process against the truth, a release, the server.
fn service(
    args: &DemoArgs,
    data_dir: &Path,
    key_path: &Path,
    truth: &ctstats_synth::GroundTruth,
    ngo_org: &str,
    ngo_mission: &str,
) -> anyhow::Result<()> {
    let serve_args = ServeArgs {
        ledger: LedgerArgs {
            data: data_dir.to_path_buf(),
            ledger: None,
        },
        key: Some(key_path.to_path_buf()),
        no_upload: false,
        listen: args.listen,
        missions: DEFAULT_MISSIONS.split(',').map(str::to_string).collect(),
        max_upload_mib: 256,
        max_concurrent_queries: None,
        memory_budget_mib: ctstats_query::service::DEFAULT_MEMORY_BUDGET >> 20,
    };
    let ledger_path = serve_args.ledger.ledger_path()?;
    println!(
        "6. Principals and budgets in the ledger {}",
        ledger_path.display()
    );
    let dataset = serve_args.ledger.dataset()?;
    let ledger = serve_args.ledger.open()?;
    let (_, admin) = ledger.add_principal("demo admin", Role::Admin, None)?;
    let (analyst, analyst_token) = ledger.add_principal("headquarters", Role::Analyst, None)?;
    let (researcher, researcher_token) =
        ledger.add_principal("university", Role::Researcher, None)?;
    let (_, ngo_token) = ledger.add_principal_for(
        "ngo officer",
        Role::Ngo,
        Some(ngo_org),
        &[ngo_mission.into()],
    )?;
    ledger.set_budget(&analyst.id, &dataset, 10.0, 1e-5)?;
    ledger.set_budget(&researcher.id, &dataset, 2.0, 1e-6)?;
    drop(ledger);
    println!("   analyst: epsilon 10, delta 1e-5; researcher: epsilon 2, delta 1e-6");

    let state = ctstats::serve::state(&serve_args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let query = serde_json::json!({
        "measure": "persons",
        "group_by": ["mission", "registration_year"],
        "period": {"from": "2003-01", "to": "2008-12"},
        "contribution_bound": 4,
        "budget": {"epsilon": 1.0}
    });
    println!("7. The analyst asks: persons assisted per mission and year, 2003-2008 (epsilon 1)");
    let service = state.service().clone();
    let response: serde_json::Value = runtime.block_on(async {
        let spec = service.parse_query(query.to_string().as_bytes())?;
        let answered = service.ask(&analyst, spec).await?;
        anyhow::Ok(serde_json::to_value(answered)?)
    })?;
    let (mut covered, mut cells) = (0, 0);
    println!(
        "   {:<8} {:>6} {:>18} {:>6}",
        "cell", "noisy", "95% interval", "truth"
    );
    for cell in response["answer"]["cells"].as_array().context("cells")? {
        let key = format!(
            "{}/{}",
            cell["key"][0].as_str().unwrap_or(""),
            cell["key"][1].as_str().unwrap_or("")
        );
        let Some(t) = truth.mission_years.get(&key) else {
            continue;
        };
        let (e, lo, hi) = (
            cell["estimate"].as_f64().unwrap_or(f64::NAN),
            cell["lower"].as_f64().unwrap_or(f64::NAN),
            cell["upper"].as_f64().unwrap_or(f64::NAN),
        );
        cells += 1;
        let inside = lo <= t.persons as f64 && t.persons as f64 <= hi;
        covered += usize::from(inside);
        if cells <= 6 {
            println!(
                "   {key:<8} {e:>6} {:>18} {:>6}",
                format!("[{lo}, {hi}]"),
                t.persons
            );
        }
    }
    println!("   ... {covered} of {cells} intervals hold the true count (95% expected)");
    println!(
        "   charged epsilon {}; the analyst has {} left",
        response["charged"]["epsilon"], response["budget"]["epsilon_left"]
    );

    println!("8. Reference tables (synthetic demo figures) and a release of every indicator");
    let missions: Vec<String> = state.config().missions.clone();
    let mut estimates = String::from("country,year,estimate,low,high,source\n");
    let mut convictions = String::from("country,year,prosecutions,convictions,source\n");
    for (i, m) in missions.iter().enumerate() {
        for year in 2003..=2008 {
            let base = 400 + 60 * i + 10 * (year - 2003) as usize;
            estimates.push_str(&format!(
                "{m},{year},{base},{},{},ctstats demo (synthetic)\n",
                base * 6 / 10,
                base * 16 / 10
            ));
            convictions.push_str(&format!(
                "{m},{year},{},{},ctstats demo (synthetic)\n",
                8 + i + (year - 2003) as usize,
                2 + (i + year as usize) % 4
            ));
        }
    }
    for (table, text) in [
        ("estimated_victims", &estimates),
        ("convictions", &convictions),
    ] {
        let parsed = ctstats_query::reference::parse(table, text)
            .map_err(|p| anyhow::anyhow!("demo reference table {table}: {p:?}"))?;
        state
            .ledger()
            .set_reference(table, "demo", &serde_json::to_string(&parsed)?)?;
    }
    let request = ctstats_query::release::ReleaseRequest {
        name: "Demo release 2003-2008".into(),
        indicators: Vec::new(),
        missions: None,
        from: 2003,
        to: 2008,
        period: ctstats_query::release::PeriodKind::Year,
        epsilon: 5.0,
        delta: Some(1e-6),
        contribution_bound: None,
        design: None,
    };
    let (release, _) = runtime.block_on(service.create_release(&analyst, request))?;
    let release_cells: usize = release.indicators().iter().map(|i| i.cells.len()).sum();
    println!(
        "   release {}: {} indicators, {release_cells} cells with 95% intervals, charged epsilon {:.6} once; free to read for every role",
        release.info().id,
        release.indicators().len(),
        release.info().cost.epsilon
    );

    println!("9. The API and the dashboard");
    let base = format!("http://{}", args.listen);
    println!("   dashboard: {base}/dashboard#token={researcher_token}");
    println!("   admin token:      {admin}");
    println!("   analyst token:    {analyst_token}");
    println!("   researcher token: {researcher_token}");
    println!("   ngo token ({ngo_org}, uploads for {ngo_mission}): {ngo_token}");
    println!("   curl -s {base}/openapi.json | head -c 300");
    println!(
        "   curl -s -H 'Authorization: Bearer {researcher_token}' -H 'Content-Type: application/json' \\\n     -d '{}' {base}/v1/query",
        query.to_string().replace("1.0", "0.5")
    );
    println!("   curl -s -H 'Authorization: Bearer {researcher_token}' {base}/v1/budget");
    if args.no_serve {
        return Ok(());
    }
    println!("   serving on {base}; Ctrl-C to stop");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {} (give --listen)", args.listen))?;
        ctstats_server::serve(listener, state, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
    })
}

fn ingest(
    dataset: &Dataset,
    secret: &Secret,
    path: &Path,
    file: &ctstats_synth::GeneratedFile,
) -> anyhow::Result<ctstats_ingest::IngestReport> {
    let format = Format::from_path(path).context("generated file has a known extension")?;
    let request = IngestRequest {
        path: path.to_path_buf(),
        organisation: file.organisation.clone(),
        mission: file.mission.clone(),
        profile: Profile::load(file.profile.name())?,
        read: ReadOptions::new(format),
        accept_valid: true,
        now: chrono::Utc::now(),
    };
    ctstats_ingest::ingest(dataset, secret, &request, &Progress::default())
        .with_context(|| format!("ingesting {}", path.display()))
}

/// Creates `dir`, or clears it when an earlier demo made it; refuses any other non-empty
/// directory.
fn prepare(dir: &Path) -> anyhow::Result<()> {
    if dir.join(MARKER).exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    } else if dir
        .read_dir()
        .is_ok_and(|mut entries| entries.next().is_some())
    {
        bail!(
            "{} exists and was not made by the demo; give another --dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        b"made by `ctstats demo`; cleared by its next run\n",
    )?;
    Ok(())
}
