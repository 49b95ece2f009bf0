//! Release accuracy targets (issue 13), measured on the demo workload: 3,000 synthetic persons,
//! six missions, 2003-2008, epsilon 5, delta 1e-6, k = 3. In one process it generates and ingests
//! the data, then makes `--runs` releases with the marginal design and as many with the earlier
//! equal-split rule, and prints per indicator the median 95% half-width of each, their ratio, what
//! the release preview promised before anything was computed (`POST /v1/releases/preview`: the
//! largest count half-width, or a share of 0.5 over 100 persons), and the marginal design's
//! coverage: the share of published intervals that hold the true value.
//!
//! The true value of a cell is the noise-free value of the same estimand: the exact marginals of
//! the design (computed once, through the engine's own row work) reconstructed with no noise. For
//! persons, cases and persons by gender it is also checked against the generator's ground truth.
//!
//!   cargo run --example release_targets -- [--runs 10] [--persons 3000]

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{TimeZone, Utc};
use ctstats_ingest::read::{Format, Progress, ReadOptions};
use ctstats_ingest::{Dataset, IngestRequest, Profile, Secret};
use ctstats_query::dp::Loss;
use ctstats_query::ledger::{Charge, Ledger, Role};
use ctstats_query::release::{
    DesignKind, PeriodKind, References, ReleaseIndicator, ReleaseRequest, design, estimate,
};
use ctstats_query::service::{Service, ServiceConfig};
use ctstats_synth::{Config, FileFormat, generate};

/// The indicators of the table, and the keys whose cells are measured (None: all).
const MEASURED: [(&str, Option<&[&str]>); 7] = [
    ("persons_assisted", None),
    ("cases", None),
    ("persons_by_gender", Some(&["female", "male"])),
    ("shelter_uptake", None),
    ("exploitation_type_share", None),
    ("share_of_minors", None),
    ("reintegration_completion", None),
];

fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn measured(indicator: &ReleaseIndicator) -> Option<Option<&'static [&'static str]>> {
    MEASURED
        .iter()
        .find(|(id, _)| *id == indicator.id)
        .map(|(_, keys)| *keys)
}

fn half_widths(indicators: &[ReleaseIndicator], into: &mut BTreeMap<String, Vec<f64>>) {
    for i in indicators {
        let Some(keys) = measured(i) else { continue };
        for c in &i.cells {
            if keys.is_some_and(|k| !k.contains(&c.key.as_deref().unwrap_or(""))) {
                continue;
            }
            if c.value.is_some() {
                into.entry(i.id.clone())
                    .or_default()
                    .push((c.upper - c.lower) / 2.0);
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut runs = 10;
    let mut persons = 3000;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--runs" => runs = value.parse()?,
            "--persons" => persons = value.parse()?,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let dir = tempfile::tempdir()?;
    let config = Config {
        persons,
        ngos_per_mission: 1,
        error_rate: 0.0,
        formats: vec![FileFormat::Csv],
        ..Config::default()
    };
    let generated = generate(&config, &dir.path().join("gen"))?;
    let data = dir.path().join("ds");
    let dataset = Dataset::open(&data)?;
    let secret = Secret::from_bytes(*b"release-targets-bench-key-012345");
    for file in &generated.files {
        let path = dir.path().join("gen").join(&file.path);
        let request = IngestRequest {
            path: path.clone(),
            organisation: file.organisation.clone(),
            mission: file.mission.clone(),
            profile: Profile::load(file.profile.name())?,
            read: ReadOptions::new(Format::from_path(&path).context("format")?),
            accept_valid: false,
            now: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
        };
        ctstats_ingest::ingest(&dataset, &secret, &request, &Progress::default())?;
    }
    let missions: Vec<String> = config.missions.clone();
    let ledger = Ledger::open(&dir.path().join("ledger.sqlite"))?;
    let (analyst, _) = ledger.add_principal("hq", Role::Analyst, None)?;
    ledger.set_budget(&analyst.id, "ds", 1e5, 1e-2)?;
    let runtime = tokio::runtime::Runtime::new()?;

    // The truth: the design's exact marginals, reconstructed without noise.
    let request = |name: String, kind: DesignKind| ReleaseRequest {
        name,
        indicators: Vec::new(),
        missions: None,
        from: config.first_year,
        to: config.last_year,
        period: PeriodKind::Year,
        epsilon: 5.0,
        delta: Some(1e-6),
        contribution_bound: None,
        design: Some(kind),
    };
    let plan = request("truth".into(), DesignKind::Marginals)
        .plan(&missions)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let design = plan.design.clone().context("a marginal plan")?;
    let Charge::Charged { paid, .. } = ledger.charge(&analyst.id, "ds", "truth", Loss::ZERO)?
    else {
        anyhow::bail!("the scratch ledger refused");
    };
    let (exact, _) = runtime.block_on(design::exact_marginals(
        &paid,
        &ctstats_query::data::Data::files(data.clone()),
        &design,
        &plan.missions,
        &plan.periods,
        (config.first_year, config.last_year, PeriodKind::Year),
    ))?;
    let (truth, _) = estimate::indicators(
        &design,
        &plan.indicators,
        &plan.missions,
        &plan.periods,
        &exact,
        &References::default(),
    );
    let truth: BTreeMap<(String, String, String, Option<String>), f64> = truth
        .iter()
        .flat_map(|i| {
            i.cells.iter().filter_map(|c| {
                c.value.map(|v| {
                    (
                        (
                            i.id.clone(),
                            c.mission.clone(),
                            c.period.clone(),
                            c.key.clone(),
                        ),
                        v,
                    )
                })
            })
        })
        .collect();
    // The generator's truth agrees on persons, cases and gender.
    let mut disagree = 0;
    let mut checked = 0;
    for ((id, m, p, key), v) in &truth {
        let Some(year) = generated.truth.mission_years.get(&format!("{m}/{p}")) else {
            continue;
        };
        let g = match (id.as_str(), key.as_deref()) {
            ("persons_assisted", None) => year.persons,
            ("cases", None) => year.cases,
            ("persons_by_gender", Some(k)) if k != "unknown" => {
                year.persons_by_gender.get(k).copied().unwrap_or(0)
            }
            _ => continue,
        } as f64;
        checked += 1;
        disagree += usize::from(g != *v);
    }
    println!(
        "truth: {} cells; persons, cases and gender: {checked} cells checked against the generator's truth, {disagree} differ (persons with more than k = 3 records are truncated)",
        truth.len()
    );

    let config_service = ServiceConfig {
        data: data.clone(),
        dataset: "ds".into(),
        missions: missions.clone(),
        max_upload_bytes: 0,
        max_concurrent_queries: 1,
        memory_budget: ctstats_query::service::DEFAULT_MEMORY_BUDGET,
    };
    let service = Service::new(config_service, ledger, None);
    let mut widths: [BTreeMap<String, Vec<f64>>; 2] = Default::default();
    let mut coverage: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut rho = 0.0;
    for run in 0..runs {
        for (slot, kind) in [DesignKind::Marginals, DesignKind::EqualSplit]
            .into_iter()
            .enumerate()
        {
            let (release, _) = runtime.block_on(
                service.create_release(&analyst, request(format!("run {run} {kind:?}"), kind)),
            )?;
            half_widths(release.indicators(), &mut widths[slot]);
            if kind != DesignKind::Marginals {
                continue;
            }
            rho = release.info().loss.map_or(0.0, |l| l.rho);
            for i in release.indicators() {
                for c in &i.cells {
                    let key = (
                        i.id.clone(),
                        c.mission.clone(),
                        c.period.clone(),
                        c.key.clone(),
                    );
                    let Some(t) = truth.get(&key) else { continue };
                    let e = coverage.entry(i.id.clone()).or_default();
                    e.1 += 1;
                    e.0 += u32::from(c.lower <= *t && *t <= c.upper);
                }
            }
        }
    }
    // What the release preview promised before anything was computed: the largest count
    // half-width, or a share of 0.5 over 100 persons.
    let preview = runtime.block_on(
        service.preview_release(&analyst, request("preview".into(), DesignKind::Marginals)),
    )?;
    let planned = |id: &str| {
        preview
            .indicators
            .iter()
            .find(|i| i.id == id)
            .and_then(|i| i.share_half_width_95.or(i.count_half_width_95))
            .unwrap_or(f64::NAN)
    };
    println!("{runs} runs of each design; marginal design rho {rho:.4} (epsilon 5, delta 1e-6)\n");
    println!(
        "{:<26} {:>12} {:>12} {:>8} {:>10}",
        "median 95% half-width", "equal split", "marginals", "ratio", "previewed"
    );
    for (id, _) in MEASURED {
        let old = median(widths[1].get(id).cloned().unwrap_or_default());
        let new = median(widths[0].get(id).cloned().unwrap_or_default());
        println!(
            "{id:<26} {old:>12.3} {new:>12.3} {:>8.2} {:>10.3}",
            old / new,
            planned(id)
        );
    }
    println!("\ncoverage of the marginal design's 95% intervals against the truth");
    let (mut hit, mut all) = (0, 0);
    for (id, (h, a)) in &coverage {
        hit += h;
        all += a;
        println!(
            "{id:<34} {h:>6}/{a:<6} {:.3}",
            f64::from(*h) / f64::from(*a)
        );
    }
    println!(
        "{:<34} {hit:>6}/{all:<6} {:.3}",
        "all",
        f64::from(hit) / f64::from(all)
    );
    Ok(())
}
