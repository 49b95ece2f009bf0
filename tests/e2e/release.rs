//! Releases end to end: created over HTTP by an analyst (charged once), internally consistent,
//! free to read for every role as JSON and CSV; reference tables loaded by an admin; and, on
//! generated data with known ground truth, how often the published 95% intervals cover the
//! true value.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use ctstats_ingest::{Dataset, Status};
use ctstats_query::ledger::{Ledger, Principal, Role};
use ctstats_query::release::{DesignKind, PeriodKind, ReleaseBody, ReleaseRequest};
use ctstats_query::service::{Service, ServiceConfig};
use ctstats_synth::{Config, FileFormat, generate};
use serde_json::{Value, json};

use crate::common::*;
use crate::serve::{call, send, service};

/// The cells of indicator `id` in a release JSON.
fn cells<'a>(release: &'a Value, id: &str) -> &'a Vec<Value> {
    release["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in the release"))["cells"]
        .as_array()
        .unwrap()
}

fn epsilon_spent(budget: &Value) -> f64 {
    budget["epsilon_spent"].as_f64().unwrap()
}

#[tokio::test]
async fn a_release_is_consistent_charged_once_and_free_to_read() {
    let s = service(10.0);
    let t = &s.tokens;
    let (status, catalogue) = call(&s.router, Method::GET, "/v1/indicators", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = catalogue["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert!(ids.len() >= 17, "{ids:?}");
    for i in catalogue["indicators"].as_array().unwrap() {
        assert!(
            i["numerator"].as_str().is_some_and(|n| !n.is_empty()),
            "{i}"
        );
        assert!(i["unit"].is_string() && i["definition"].is_string(), "{i}");
    }

    // Reference tables: a bad file is refused whole and names row, column and rule.
    let bad =
        b"country,year,estimate,low,high,source\nKGZ,2005,900,500,1400,GSI\nKGZ,20x5,1,1,1,GSI\n";
    let (status, _, body) = send(
        &s.router,
        Method::PUT,
        "/v1/reference/estimated_victims",
        Some(&t.admin),
        Some("text/csv"),
        bad.to_vec(),
    )
    .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let problem = &body["error"]["details"]["problems"][0];
    assert_eq!(
        (&problem["row"], &problem["column"], &problem["rule"]),
        (&json!(3), &json!("year"), &json!("invalid_year"))
    );
    let (_, reference) = call(
        &s.router,
        Method::GET,
        "/v1/reference/estimated_victims",
        None,
        None,
    )
    .await;
    assert_eq!(reference["rows"], json!([]), "nothing was loaded");
    let good = b"country,year,estimate,low,high,source\nKGZ,2005,900,500,1400,GSI 2018\nKGZ,2006,950,500,1500,GSI 2018\n";
    let (status, _, _) = send(
        &s.router,
        Method::PUT,
        "/v1/reference/estimated_victims",
        Some(&t.admin),
        Some("text/csv"),
        good.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Only an admin loads them.
    let (status, _, _) = send(
        &s.router,
        Method::PUT,
        "/v1/reference/estimated_victims",
        Some(&t.analyst),
        Some("text/csv"),
        good.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // An analyst creates a release of every indicator; only analysts may.
    let request =
        json!({"name": "HQ 2003-2008", "from": 2003, "to": 2008, "epsilon": 4.0, "delta": 1e-6});
    let (status, _) = call(
        &s.router,
        Method::POST,
        "/v1/releases",
        Some(&t.researcher),
        Some(request.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, before) = call(&s.router, Method::GET, "/v1/budget", Some(&t.analyst), None).await;

    // The preview says what the release will charge, how precise each indicator will be and
    // what it leaves of the budget, and charges nothing.
    let (status, preview) = call(
        &s.router,
        Method::POST,
        "/v1/releases/preview",
        Some(&t.analyst),
        Some(request.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["design"], "marginals");
    assert_eq!(preview["affordable"], true);
    let figures = |id: &str| {
        preview["indicators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("{id} not previewed: {preview}"))
            .clone()
    };
    let persons = figures("persons_assisted")["count_half_width_95"]
        .as_f64()
        .unwrap();
    assert!(persons > 1.0 && persons < 20.0, "{preview}");
    let shelter = figures("shelter_uptake")["share_half_width_95"]
        .as_f64()
        .unwrap();
    assert!(shelter > 0.01 && shelter < 0.3, "{preview}");
    assert!(
        preview["marginals"].as_array().unwrap().len() >= 10,
        "{preview}"
    );
    let rho = preview["loss"]["rho"].as_f64().unwrap();
    let rho_after = preview["after"]["principal"]["rho_spent"].as_f64().unwrap();
    let rho_before = before["rho_spent"].as_f64().unwrap();
    assert!((rho_after - rho_before - rho).abs() < 1e-9, "{preview}");
    let (status, _) = call(
        &s.router,
        Method::POST,
        "/v1/releases/preview",
        Some(&t.researcher),
        Some(request.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, unchanged) = call(&s.router, Method::GET, "/v1/budget", Some(&t.analyst), None).await;
    assert_eq!(unchanged, before, "a preview charged the budget");

    let (status, release) = call(
        &s.router,
        Method::POST,
        "/v1/releases",
        Some(&t.analyst),
        Some(request.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{release}");
    assert_eq!(
        release["loss"], preview["loss"],
        "the release charges what was previewed"
    );
    assert_eq!(release["cost"], preview["cost"]);
    let cost = release["cost"]["epsilon"].as_f64().unwrap();
    assert!(cost > 3.99 && cost <= 4.0, "{cost}");
    let delta = release["cost"]["delta"].as_f64().unwrap();
    assert!(delta > 0.0 && delta <= 1e-6, "{delta}");
    let (_, after) = call(&s.router, Method::GET, "/v1/budget", Some(&t.analyst), None).await;
    // The ledger is charged the release's rho; the principal's composed epsilon (at its own
    // budget's delta) grows by at most the release's stated epsilon.
    let rho = |b: &Value| b["rho_spent"].as_f64().unwrap();
    let charged = rho(&after) - rho(&before);
    let stated = release["loss"]["rho"].as_f64().unwrap();
    assert!(
        (charged - stated).abs() < 1e-9,
        "charged rho {charged}, release says {stated}"
    );
    let spent = epsilon_spent(&after) - epsilon_spent(&before);
    assert!(
        spent > 0.0 && spent <= cost + 1e-9,
        "charged {spent}, release says {cost}"
    );

    // Consistency: every cell has its interval around its value; counts are non-negative
    // integers; breakdowns sum to persons assisted; shares lie in [0, 1].
    let mut checked = 0;
    for indicator in release["indicators"].as_array().unwrap() {
        for c in indicator["cells"].as_array().unwrap() {
            let (lo, hi) = (c["lower"].as_f64().unwrap(), c["upper"].as_f64().unwrap());
            assert!(lo <= hi, "{c}");
            if let Some(v) = c["value"].as_f64() {
                assert!(lo <= v && v <= hi, "{} {c}", indicator["id"]);
                match indicator["unit"].as_str().unwrap() {
                    "persons" | "cases" => assert!(v >= 0.0 && v.fract() == 0.0, "{c}"),
                    "share" => assert!((0.0..=1.0).contains(&v), "{c}"),
                    _ => assert!(v >= 0.0, "{c}"),
                }
                checked += 1;
            }
        }
    }
    let mut totals = BTreeMap::new();
    for c in cells(&release, "persons_assisted") {
        totals.insert(
            (c["mission"].to_string(), c["period"].to_string()),
            c["value"].as_f64().unwrap(),
        );
    }
    assert_eq!(totals.len(), 2 * 6, "missions x years");
    for breakdown in [
        "persons_by_gender",
        "persons_by_age_band",
        "identification_channel",
    ] {
        let mut sums: BTreeMap<(String, String), f64> = BTreeMap::new();
        for c in cells(&release, breakdown) {
            *sums
                .entry((c["mission"].to_string(), c["period"].to_string()))
                .or_default() += c["value"].as_f64().unwrap();
        }
        assert_eq!(sums, totals, "{breakdown} does not sum to persons assisted");
    }
    // Shares have values where the data has them (KGZ; UKR is empty, so its shares are none).
    for share in [
        "share_of_minors",
        "assistance_coverage",
        "re_registration_rate",
        "data_completeness",
    ] {
        let valued = cells(&release, share)
            .iter()
            .filter(|c| c["value"].is_number())
            .count();
        assert!(valued > 0, "{share} has no value");
    }
    // Active cases never exceed cases.
    for (open, all) in cells(&release, "active_caseload")
        .iter()
        .zip(cells(&release, "cases"))
    {
        assert!(open["value"].as_f64() <= all["value"].as_f64());
    }
    // The flows are left out of the default release, and the release says why.
    assert!(
        release["indicators"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["id"] != "origin_destination_flows")
    );
    assert!(
        release["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("flows are not in this release")),
        "{}",
        release["notes"]
    );
    assert!(release["loss"]["rho"].as_f64().unwrap() > 0.0, "{release}");
    // The reference table was combined, and the release says which source.
    assert_eq!(cells(&release, "coverage_vs_estimated").len(), 2);
    assert_eq!(release["sources"][0]["source"], "GSI 2018");
    assert!(checked > 300, "{checked} cells");

    // Reading is free for every role, as JSON and CSV; asking again is free too.
    let id = release["id"].as_i64().unwrap();
    for token in [&t.researcher, &t.ngo, &t.admin, &t.analyst] {
        let (status, list) = call(&s.router, Method::GET, "/v1/releases", Some(token), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["releases"][0]["id"], id);
        let (status, got) = call(
            &s.router,
            Method::GET,
            &format!("/v1/releases/{id}"),
            Some(token),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got, release);
        let (status, headers, csv) = send(
            &s.router,
            Method::GET,
            &format!("/v1/releases/{id}?format=csv"),
            Some(token),
            None,
            vec![],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let csv = String::from_utf8(csv).unwrap();
        let rows = csv.lines().count() - 1;
        let total: usize = release["indicators"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["cells"].as_array().unwrap().len())
            .sum();
        assert_eq!(rows, total);
    }
    let (status, again) = call(
        &s.router,
        Method::POST,
        "/v1/releases",
        Some(&t.analyst),
        Some(request),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, release);
    let (_, end) = call(&s.router, Method::GET, "/v1/budget", Some(&t.analyst), None).await;
    assert_eq!(
        epsilon_spent(&end),
        epsilon_spent(&after),
        "reading cost budget"
    );
    let (status, missing) = call(
        &s.router,
        Method::GET,
        "/v1/releases/999",
        Some(&t.analyst),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");

    // Quarters: the same periods for every mission, 4 a year.
    let (status, quarterly) = call(
        &s.router,
        Method::POST,
        "/v1/releases",
        Some(&t.analyst),
        Some(
            json!({"name": "quarters", "indicators": ["persons_assisted", "cases"],
                    "from": 2003, "to": 2008, "period": "quarter", "epsilon": 0.5,
                    "delta": 1e-6}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{quarterly}");
    let periods: std::collections::BTreeSet<&str> = cells(&quarterly, "cases")
        .iter()
        .map(|c| c["period"].as_str().unwrap())
        .collect();
    assert_eq!(periods.len(), 24);
    assert!(periods.contains("2003-Q1") && periods.contains("2008-Q4"));
    assert_eq!(cells(&quarterly, "persons_assisted").len(), 2 * 24);
    let (_, after) = call(&s.router, Method::GET, "/v1/budget", Some(&t.analyst), None).await;

    // Over budget: refused, nothing charged.
    let (status, refused) = call(
        &s.router,
        Method::POST,
        "/v1/releases",
        Some(&t.analyst),
        Some(json!({"name": "too much", "from": 2003, "to": 2008, "epsilon": 20.0, "delta": 1e-6})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["error"]["code"], "budget_exhausted");
    let (_, end) = call(&s.router, Method::GET, "/v1/budget", Some(&t.analyst), None).await;
    assert_eq!(
        epsilon_spent(&end),
        epsilon_spent(&after),
        "a refusal was charged"
    );

    // The dashboard page is served.
    let (status, headers, page) =
        send(&s.router, Method::GET, "/dashboard", None, None, vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(String::from_utf8(page).unwrap().contains("v1/releases"));
}

/// The engine over `data` with an analyst whose budget covers every release of these tests.
fn engine(
    dir: &tempfile::TempDir,
    data: &std::path::Path,
    missions: &[String],
) -> (Service, Principal) {
    let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
    let (analyst, _) = ledger.add_principal("hq", Role::Analyst, None).unwrap();
    ledger.set_budget(&analyst.id, "ds", 1000.0, 1e-3).unwrap();
    let config = ServiceConfig {
        data: data.to_path_buf(),
        dataset: "ds".into(),
        missions: missions.to_vec(),
        max_upload_bytes: 0,
        max_concurrent_queries: 1,
        memory_budget: ctstats_query::service::DEFAULT_MEMORY_BUDGET,
    };
    (Service::new(config, ledger, None), analyst)
}

/// A release computed now through the engine: charged, computed, post-processed, stored.
async fn released(engine: &Service, analyst: &Principal, request: ReleaseRequest) -> ReleaseBody {
    let (release, fresh) = engine.create_release(analyst, request).await.unwrap();
    assert!(fresh, "each request of these tests is new");
    release
}

/// On generated data with known truth, the share of published 95% intervals (after
/// post-processing) that hold the true value, over persons, cases and persons by gender per
/// mission and year, in five independent releases.
#[tokio::test]
async fn release_intervals_cover_the_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        persons: 3000,
        ngos_per_mission: 1,
        error_rate: 0.0,
        formats: vec![FileFormat::Csv],
        ..Config::default()
    };
    let generated = generate(&config, &dir.path().join("gen")).unwrap();
    let data = dir.path().join("ds");
    let dataset = Dataset::open(&data).unwrap();
    for file in &generated.files {
        let report = ingest_file(
            &dataset,
            &dir.path().join("gen").join(&file.path),
            &file.organisation,
            &file.mission,
            file.profile.name(),
            false,
        );
        assert_eq!(report.status, Status::Committed);
    }
    let (engine, analyst) = engine(&dir, &data, &config.missions);
    let truth = &generated.truth.mission_years;
    let mut coverage: BTreeMap<(DesignKind, String), (u32, u32)> = BTreeMap::new();
    for (run, design) in (0..10).map(|run| {
        let design = if run % 2 == 0 {
            DesignKind::Marginals
        } else {
            DesignKind::EqualSplit
        };
        (run, design)
    }) {
        let request = ReleaseRequest {
            name: format!("coverage {run}"),
            indicators: vec![
                "persons_assisted".into(),
                "cases".into(),
                "persons_by_gender".into(),
            ],
            missions: None,
            from: config.first_year,
            to: config.last_year,
            period: PeriodKind::Year,
            epsilon: 3.0,
            delta: Some(1e-6),
            contribution_bound: None,
            design: Some(design),
        };
        let release = released(&engine, &analyst, request).await;
        for indicator in release.indicators() {
            for c in &indicator.cells {
                let Some(year) = truth.get(&format!("{}/{}", c.mission, c.period)) else {
                    panic!("no truth for {} {}", c.mission, c.period)
                };
                let true_value = match (indicator.id.as_str(), c.key.as_deref()) {
                    ("persons_assisted", None) => year.persons,
                    ("cases", None) => year.cases,
                    ("persons_by_gender", Some(k)) if k != "unknown" => {
                        year.persons_by_gender.get(k).copied().unwrap_or(0)
                    }
                    _ => continue,
                } as f64;
                let entry = coverage.entry((design, indicator.id.clone())).or_default();
                entry.1 += 1;
                if c.lower <= true_value && true_value <= c.upper {
                    entry.0 += 1;
                }
            }
        }
    }
    // Flows on the same data: thresholded `CIT>DST` keys, non-negative integers.
    let request = ReleaseRequest {
        name: "flows".into(),
        indicators: vec!["origin_destination_flows".into()],
        missions: None,
        from: config.first_year,
        to: config.last_year,
        period: PeriodKind::Year,
        epsilon: 5.0,
        delta: Some(1e-6),
        contribution_bound: None,
        design: Some(DesignKind::Marginals),
    };
    let release = released(&engine, &analyst, request).await;
    let flows = &release.indicators()[0].cells;
    // Per mission over the whole period.
    assert!(flows.iter().all(|c| c.period == "2003-2008"), "{flows:?}");
    eprintln!(
        "flows released: {} (mission, flow) cells over the whole period",
        flows.len()
    );
    // The main corridor of each of the six missions passes the threshold at this scale.
    assert!(flows.len() >= 6, "{} flows", flows.len());
    for c in flows {
        let key = c.key.as_deref().unwrap();
        let (from, to) = key.split_once('>').unwrap();
        assert!(from.len() == 3 || from == "unknown", "{key}");
        assert!(to.len() == 3 || to == "unknown", "{key}");
        let v = c.value.unwrap();
        assert!(
            v >= 0.0 && v.fract() == 0.0 && c.lower <= v && v <= c.upper,
            "{c:?}"
        );
    }

    for design in [DesignKind::Marginals, DesignKind::EqualSplit] {
        let (hit, all) = coverage
            .iter()
            .filter(|((d, _), _)| *d == design)
            .fold((0, 0), |(h, a), (_, (hit, all))| (h + hit, a + all));
        for ((d, id), (hit, all)) in coverage.iter().filter(|((d, _), _)| *d == design) {
            eprintln!(
                "coverage {d:?} {id}: {hit}/{all} = {:.3}",
                f64::from(*hit) / f64::from(*all)
            );
        }
        let share = f64::from(hit) / f64::from(all);
        eprintln!("coverage of {design:?} 95% intervals: {hit}/{all} = {share:.3}");
        assert!(all >= 1000, "{all} cells");
        // Nominal 95%; with >1,000 cells, 0.93 is more than three standard errors below 0.95.
        assert!(share >= 0.93, "{design:?} coverage {share}");
        if design == DesignKind::Marginals {
            // The marginal design's intervals are exact, not conservative: at most 0.975 (the
            // equal split's union bounds cover about 0.999).
            assert!(share <= 0.975, "{design:?} coverage {share}");
        }
    }
}
