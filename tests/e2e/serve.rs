//! The query service end to end: the router in-process (no socket) for every endpoint x role,
//! budgets under concurrency, free previews and re-asked queries, uploads and CSV answers; and
//! `ctstats serve` as a process, killed during queries, whose ledger must then agree with the
//! answers that were released.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use ctstats::serve::IngestUploader;
use ctstats_ingest::{Dataset, Status};
use ctstats_query::ledger::{Ledger, Role};
use ctstats_query::service::ServiceConfig;
use ctstats_schemas::manifest::Manifest;
use ctstats_server::{AppState, app};
use ctstats_synth::{Config, FileFormat, generate};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::*;

pub(crate) const DATASET: &str = "ds";

pub(crate) struct Tokens {
    pub(crate) admin: String,
    pub(crate) analyst: String,
    pub(crate) researcher: String,
    pub(crate) ngo: String,
    other_ngo: String,
    revoked: String,
    analyst_id: String,
    pub(crate) researcher_id: String,
    victim_id: String,
}

pub(crate) struct Service {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) router: Router,
    pub(crate) state: AppState,
    pub(crate) tokens: Tokens,
    /// A generated canonical CSV of mission UKR, not ingested yet.
    pub(crate) upload: Vec<u8>,
    pub(crate) upload_org: String,
}

/// A dataset with one mission (KGZ) committed, principals of every role, and a router with
/// uploads on. Analyst and researcher get `epsilon` (and delta 1e-5) each.
pub(crate) fn service(epsilon: f64) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let gen_dir = dir.path().join("gen");
    let generated = generate(
        &Config {
            persons: 200,
            missions: vec!["KGZ".into(), "UKR".into()],
            ngos_per_mission: 1,
            error_rate: 0.0,
            formats: vec![FileFormat::Csv],
            ..Config::default()
        },
        &gen_dir,
    )
    .unwrap();
    let data = dir.path().join(DATASET);
    let dataset = Dataset::open(&data).unwrap();
    let kgz = generated.files.iter().find(|f| f.mission == "KGZ").unwrap();
    let report = ingest_file(
        &dataset,
        &gen_dir.join(&kgz.path),
        &kgz.organisation,
        "KGZ",
        "canonical",
        false,
    );
    assert_eq!(report.status, Status::Committed);
    let ukr = generated.files.iter().find(|f| f.mission == "UKR").unwrap();
    let upload = std::fs::read(gen_dir.join(&ukr.path)).unwrap();

    let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
    let add = |name: &str, role, org: Option<&str>| ledger.add_principal(name, role, org).unwrap();
    let (_, admin) = add("admin", Role::Admin, None);
    let (analyst_p, analyst) = add("hq", Role::Analyst, None);
    let (researcher_p, researcher) = add("uni", Role::Researcher, None);
    let bound = |name: &str, org: &str, mission: &str| {
        ledger
            .add_principal_for(name, Role::Ngo, Some(org), &[mission.to_string()])
            .unwrap()
    };
    let (_, ngo) = bound("ngo", &ukr.organisation, "UKR");
    let (_, other_ngo) = bound("other", "other-ngo", "UKR");
    let (revoked_p, revoked) = add("gone", Role::Analyst, None);
    ledger.revoke(&revoked_p.id).unwrap();
    let (victim, _) = add("victim", Role::Researcher, None);
    for p in [&analyst_p, &researcher_p] {
        ledger.set_budget(&p.id, DATASET, epsilon, 1e-5).unwrap();
    }
    let uploader = IngestUploader::new(Dataset::open(&data).unwrap(), test_secret());
    let state = AppState::new(
        ServiceConfig {
            data,
            dataset: DATASET.into(),
            missions: vec!["KGZ".into(), "UKR".into()],
            max_upload_bytes: 1 << 20,
            max_concurrent_queries: ServiceConfig::default_concurrent_queries(),
            memory_budget: ctstats_query::service::DEFAULT_MEMORY_BUDGET,
        },
        ledger,
        Some(Arc::new(uploader)),
    );
    Service {
        dir,
        router: app(state.clone()),
        state,
        tokens: Tokens {
            admin,
            analyst,
            researcher,
            ngo,
            other_ngo,
            revoked,
            analyst_id: analyst_p.id,
            researcher_id: researcher_p.id,
            victim_id: victim.id,
        },
        upload,
        upload_org: ukr.organisation.clone(),
    }
}

pub(crate) async fn send(
    router: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    if let Some(c) = content_type {
        request = request.header("content-type", c);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes.to_vec())
}

pub(crate) async fn call(
    router: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let body = body.map_or_else(Vec::new, |b| b.to_string().into_bytes());
    let (status, _, bytes) = send(router, method, uri, token, Some("application/json"), body).await;
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("{uri}: not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    (status, value)
}

/// `POST /v1/query` with `spec`.
async fn ask(s: &Service, token: Option<&str>, spec: Value) -> (StatusCode, Value) {
    call(&s.router, Method::POST, "/v1/query", token, Some(spec)).await
}

async fn preview_query(s: &Service, token: Option<&str>, spec: Value) -> (StatusCode, Value) {
    call(&s.router, Method::POST, "/v1/preview", token, Some(spec)).await
}

/// Persons per mission and registration year, 2003-2008, at `epsilon`.
pub(crate) fn grouped(epsilon: f64) -> Value {
    json!({
        "measure": "persons",
        "group_by": ["mission", "registration_year"],
        "period": {"from": "2003-01", "to": "2008-12"},
        "budget": {"epsilon": epsilon}
    })
}

/// [`grouped`] as a SQL statement: the same question, so the same query hash.
pub(crate) fn grouped_sql(epsilon: f64) -> Value {
    json!({"sql": format!(
        "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = {epsilon}) \
         mission, registration_year, COUNT(DISTINCT person) AS persons FROM cases \
         WHERE registration_year BETWEEN 2003 AND 2008 GROUP BY mission, registration_year"
    )})
}

pub(crate) fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// Each refusal of the API answers with its own stable code (with the status of its kind), so
/// a client can branch on it; `every_code_is_asserted_by_a_test` (server crate) fails when a
/// code has no such test.
// An NGO uploads only for the missions it is bound to. Kazakhstan's NGO sends a valid file with
// mission=UKR: 403 mission_not_bound, and nothing is read, committed or recorded. A principal
// from before bindings (bound to none) is refused until an admin binds it.
#[tokio::test]
async fn an_ngo_uploads_only_for_the_missions_it_is_bound_to() {
    let s = service(1.0);
    let (t, r) = (&s.tokens, &s.router);
    let status_code =
        |(status, body): (StatusCode, Value)| (status.as_u16(), error_code(&body).to_string());
    let new = json!({"name": "kaz-ngo-1", "role": "ngo", "organisation": "kaz-ngo-1",
                     "missions": ["kaz"]});
    let (status, created) =
        call(r, Method::POST, "/v1/principals", Some(&t.admin), Some(new)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["principal"]["missions"], json!(["KAZ"]));
    let kaz = created["token"].as_str().unwrap().to_string();
    let upload = |token: String, mission: &'static str| {
        let body = s.upload.clone();
        async move {
            let uri = format!("/v1/batches?mission={mission}&format=csv");
            let (status, _, bytes) =
                send(r, Method::POST, &uri, Some(&token), Some("text/csv"), body).await;
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let manifest = || Manifest::read(&s.dir.path().join(DATASET)).unwrap();
    let before = manifest();
    let (status, body) = upload(kaz.clone(), "UKR").await;
    assert_eq!(
        status_code((status, body.clone())),
        (403, "mission_not_bound".into())
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("KAZ") && message.contains("UKR"),
        "{message}"
    );
    assert_eq!(manifest(), before, "nothing committed");
    let (_, listed) = call(r, Method::GET, "/v1/batches", Some(&kaz), None).await;
    assert_eq!(listed["uploads"], json!([]), "no upload recorded: {listed}");

    // Made before bindings: bound to none, refused until bound.
    let (legacy_p, legacy) = s
        .state
        .service()
        .ledger()
        .add_principal("legacy", Role::Ngo, Some(&s.upload_org))
        .unwrap();
    assert!(legacy_p.missions.is_empty());
    let (status, body) = upload(legacy.clone(), "UKR").await;
    assert_eq!(
        status_code((status, body.clone())),
        (403, "mission_not_bound".into())
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("bind"),
        "{body}"
    );
    let uri = format!("/v1/principals/{}/missions", legacy_p.id);
    let (status, bound) = call(
        r,
        Method::PUT,
        &uri,
        Some(&t.admin),
        Some(json!({"missions": ["UKR"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{bound}");
    assert_eq!(bound["missions"], json!(["UKR"]));
    let (status, body) = upload(legacy, "UKR").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(manifest().batches.len(), before.batches.len() + 1);

    // Bindings are for ngo principals, in ISO alpha-3 codes; creating an ngo needs one.
    let analyst = format!("/v1/principals/{}/missions", t.analyst_id);
    for (uri, body) in [
        (analyst.as_str(), json!({"missions": ["KAZ"]})),
        (uri.as_str(), json!({"missions": ["Kazakhstan"]})),
    ] {
        let got = status_code(call(r, Method::PUT, uri, Some(&t.admin), Some(body)).await);
        assert_eq!(got, (400, "invalid_principal".into()), "{uri}");
    }
    let unbound = json!({"name": "n", "role": "ngo", "organisation": "o"});
    let got = status_code(
        call(
            r,
            Method::POST,
            "/v1/principals",
            Some(&t.admin),
            Some(unbound),
        )
        .await,
    );
    assert_eq!(got, (400, "invalid_principal".into()));
    let missing = status_code(
        call(
            r,
            Method::PUT,
            "/v1/principals/p_nobody/missions",
            Some(&t.admin),
            Some(json!({"missions": ["KAZ"]})),
        )
        .await,
    );
    assert_eq!(missing, (404, "no_such_principal".into()));
}

#[tokio::test]
async fn each_refusal_answers_with_its_code() {
    let s = service(1.0);
    let t = &s.tokens;
    let r = &s.router;
    let code =
        |(status, body): (StatusCode, Value)| (status.as_u16(), error_code(&body).to_string());
    let expect = |got: (u16, String), status: u16, name: &str| {
        assert_eq!(got, (status, name.to_string()), "expected {status} {name}");
    };
    // A principal with no budget asks for it.
    let (status, created) = call(
        r,
        Method::POST,
        "/v1/principals",
        Some(&t.admin),
        Some(json!({"name": "no budget yet", "role": "researcher"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let fresh = created["token"].as_str().unwrap().to_string();
    let fresh_id = created["principal"]["id"].as_str().unwrap().to_string();
    expect(
        code(call(r, Method::GET, "/v1/budget", Some(&fresh), None).await),
        403,
        "no_budget",
    );
    // A negative budget, an ngo without its organisation, a principal that does not exist.
    let uri = format!("/v1/principals/{fresh_id}/budget");
    let negative = json!({"epsilon": -1.0});
    expect(
        code(call(r, Method::PUT, &uri, Some(&t.admin), Some(negative)).await),
        400,
        "invalid_amount",
    );
    let ngo = json!({"name": "an ngo", "role": "ngo"});
    expect(
        code(call(r, Method::POST, "/v1/principals", Some(&t.admin), Some(ngo)).await),
        400,
        "invalid_principal",
    );
    expect(
        code(
            call(
                r,
                Method::DELETE,
                "/v1/principals/p_nobody",
                Some(&t.admin),
                None,
            )
            .await,
        ),
        404,
        "no_such_principal",
    );
    // Bad audit parameters.
    expect(
        code(call(r, Method::GET, "/v1/audit?limit=5000", Some(&t.admin), None).await),
        400,
        "invalid_parameters",
    );
    // Reference tables: not UTF-8, and a row that breaks a rule.
    let put = |body: &[u8]| {
        send(
            r,
            Method::PUT,
            "/v1/reference/convictions",
            Some(&t.admin),
            Some("text/csv"),
            body.to_vec(),
        )
    };
    let (status, _, bytes) = put(b"\xff\xfe not text").await;
    expect(
        code((status, serde_json::from_slice(&bytes).unwrap())),
        400,
        "invalid_body",
    );
    let bad_row = b"country,year,prosecutions,convictions,source\nKGZ,year,1,1,x\n";
    let (status, _, bytes) = put(bad_row).await;
    expect(
        code((status, serde_json::from_slice(&bytes).unwrap())),
        422,
        "invalid_reference",
    );
    // Uploads: an empty body, and a profile the service does not take over HTTP.
    let (status, _, bytes) = send(
        r,
        Method::POST,
        "/v1/batches?mission=UKR&format=csv",
        Some(&t.ngo),
        Some("text/csv"),
        Vec::new(),
    )
    .await;
    expect(
        code((status, serde_json::from_slice(&bytes).unwrap())),
        400,
        "empty_body",
    );
    let uri = "/v1/batches?mission=UKR&format=csv&profile=mine";
    let (status, _, bytes) = send(
        r,
        Method::POST,
        uri,
        Some(&t.ngo),
        Some("text/csv"),
        s.upload.clone(),
    )
    .await;
    expect(
        code((status, serde_json::from_slice(&bytes).unwrap())),
        400,
        "invalid_profile",
    );
}

#[tokio::test]
async fn every_endpoint_answers_each_role_as_documented() {
    let s = service(100.0);
    let t = &s.tokens;
    let upload_uri = "/v1/batches?mission=UKR&format=csv";
    // (method, uri, body, roles allowed (None: public), status for an allowed caller)
    type Case<'a> = (
        Method,
        String,
        Option<Value>,
        Option<&'a [Role]>,
        StatusCode,
    );
    let queriers: &[Role] = &[Role::Analyst, Role::Researcher];
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            "/openapi.json".into(),
            None,
            None,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/dimensions".into(),
            None,
            None,
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/query".into(),
            Some(grouped(0.5)),
            Some(queriers),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/preview".into(),
            Some(grouped(0.5)),
            Some(queriers),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/sql".into(),
            Some(grouped_sql(0.5)),
            Some(queriers),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/sql/preview".into(),
            Some(grouped_sql(0.5)),
            Some(queriers),
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/budget".into(),
            None,
            Some(queriers),
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/batches".into(),
            None,
            Some(&[Role::Ngo]),
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/batches/template?format=csv".into(),
            None,
            None,
            StatusCode::OK,
        ),
        (Method::GET, "/upload".into(), None, None, StatusCode::OK),
        (
            Method::POST,
            upload_uri.into(),
            None,
            Some(&[Role::Ngo]),
            StatusCode::CREATED,
        ),
        (
            Method::GET,
            "/v1/principals".into(),
            None,
            Some(&[Role::Admin]),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/principals".into(),
            Some(json!({"name": "new", "role": "researcher"})),
            Some(&[Role::Admin]),
            StatusCode::CREATED,
        ),
        (
            Method::PUT,
            format!("/v1/principals/{}/budget", t.analyst_id),
            Some(json!({"epsilon": 100.0, "delta": 1e-5})),
            Some(&[Role::Admin]),
            StatusCode::OK,
        ),
        (
            Method::PUT,
            format!("/v1/principals/{}/missions", t.analyst_id),
            Some(json!({"missions": []})),
            Some(&[Role::Admin]),
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/dataset/budget".into(),
            None,
            Some(&[Role::Admin, Role::Analyst]),
            StatusCode::OK,
        ),
        (
            Method::PUT,
            "/v1/dataset/budget".into(),
            Some(json!({"epsilon": 1000.0, "delta": 1e-3})),
            Some(&[Role::Admin]),
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/audit".into(),
            None,
            Some(&[Role::Admin]),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/synthetic/preview".into(),
            Some(synthetic_request()),
            Some(&[Role::Analyst, Role::Admin]),
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/synthetic".into(),
            None,
            Some(&[Role::Admin, Role::Analyst, Role::Researcher, Role::Ngo]),
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/synthetic/1".into(),
            None,
            Some(&[Role::Admin, Role::Analyst, Role::Researcher, Role::Ngo]),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/v1/synthetic/1/records".into(),
            None,
            Some(&[Role::Admin, Role::Analyst, Role::Researcher, Role::Ngo]),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::DELETE,
            format!("/v1/principals/{}", t.victim_id),
            None,
            Some(&[Role::Admin]),
            StatusCode::NO_CONTENT,
        ),
    ];
    let callers: Vec<(&str, Option<&str>, Option<Role>)> = vec![
        ("no token", None, None),
        ("bad token", Some("cts_0000"), None),
        ("revoked token", Some(&t.revoked), None),
        ("admin", Some(&t.admin), Some(Role::Admin)),
        ("analyst", Some(&t.analyst), Some(Role::Analyst)),
        ("researcher", Some(&t.researcher), Some(Role::Researcher)),
        ("ngo", Some(&t.ngo), Some(Role::Ngo)),
        (
            "ngo of another organisation",
            Some(&t.other_ngo),
            Some(Role::Ngo),
        ),
    ];
    let mut failures = Vec::new();
    for (method, uri, body, roles, ok) in &cases {
        for (who, token, role) in &callers {
            let (expected, code) = match (roles, role) {
                (None, _) => (*ok, None),
                (Some(_), None) if token.is_none() => {
                    (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
                }
                (Some(_), None) => (StatusCode::UNAUTHORIZED, Some("invalid_token")),
                (Some(allowed), Some(r)) if allowed.contains(r) => (*ok, None),
                (Some(_), Some(_)) => (StatusCode::FORBIDDEN, Some("forbidden")),
            };
            let (status, got) = if uri.starts_with("/v1/batches/template") || uri == "/upload" {
                let (status, _, _) =
                    send(&s.router, method.clone(), uri, *token, None, vec![]).await;
                (status, Value::Null)
            } else if uri.starts_with("/v1/batches?") {
                let (status, _, bytes) = send(
                    &s.router,
                    method.clone(),
                    uri,
                    *token,
                    Some("text/csv"),
                    s.upload.clone(),
                )
                .await;
                (
                    status,
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                )
            } else {
                call(&s.router, method.clone(), uri, *token, body.clone()).await
            };
            let code_ok = code.is_none_or(|c| error_code(&got) == c);
            if status != expected || !code_ok {
                failures.push(format!(
                    "{method} {uri} as {who}: {status} {} (expected {expected} {code:?})",
                    error_code(&got)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Each organisation sees only its own batches and upload reports.
    let (_, mine) = call(&s.router, Method::GET, "/v1/batches", Some(&t.ngo), None).await;
    let (_, theirs) = call(
        &s.router,
        Method::GET,
        "/v1/batches",
        Some(&t.other_ngo),
        None,
    )
    .await;
    assert_eq!(mine["organisation"], s.upload_org.as_str());
    assert_eq!(theirs["organisation"], "other-ngo");
    for (list, org) in [(&mine, s.upload_org.as_str()), (&theirs, "other-ngo")] {
        assert_eq!(list["uploads"].as_array().unwrap().len(), 1, "{list}");
        for b in list["batches"].as_array().unwrap() {
            assert_eq!(b["organisation"], org);
        }
        for u in list["uploads"].as_array().unwrap() {
            assert_eq!(u["organisation"], org);
        }
    }
    // An NGO cannot name another organisation.
    let (status, _, body) = send(
        &s.router,
        Method::POST,
        "/v1/batches?mission=UKR&format=csv&organisation=someone-else",
        Some(&t.ngo),
        Some("text/csv"),
        s.upload.clone(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
    // Unknown endpoints and methods are JSON errors too.
    let (status, body) = call(&s.router, Method::GET, "/v1/nope", Some(&t.admin), None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, body) = call(&s.router, Method::DELETE, "/v1/query", Some(&t.admin), None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

#[tokio::test]
async fn a_preview_states_rho_its_epsilon_and_what_both_budgets_would_keep() {
    let s = service(1.0);
    let token = Some(s.tokens.researcher.as_str());
    // With a delta the query is Gaussian and priced in rho.
    let mut gaussian = grouped(0.5);
    gaussian["budget"]["delta"] = json!(1e-7);
    let (status, preview) = preview_query(&s, token, gaussian.clone()).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let rho = preview["loss"]["rho"].as_f64().unwrap();
    assert!(rho > 0.0, "{preview}");
    assert_eq!(preview["loss"]["epsilon"], 0.0);
    assert_eq!(preview["parts"][0]["mechanism"], "gaussian");
    let epsilon = preview["cost"]["epsilon"].as_f64().unwrap();
    assert!(epsilon <= 0.5 && epsilon > 0.49, "{preview}");
    assert_eq!(
        preview["half_width_95"],
        preview["parts"][0]["half_width_95"]
    );
    assert_eq!(preview["affordable"], true);
    let after = &preview["after"];
    assert_eq!(after["principal"]["rho_spent"].as_f64().unwrap(), rho);
    // Converted at the caller's delta (1e-5), not the query's: less than the query states.
    let composed = after["principal"]["epsilon_spent"].as_f64().unwrap();
    assert!(composed > 0.0 && composed < epsilon, "{preview}");
    assert!(
        after["dataset"].is_null(),
        "no dataset budget is set: {preview}"
    );
    assert!(after["refused_by"].is_null());

    // A dataset-wide budget too small for it: the preview says which budget refuses, and the
    // query is refused by that budget.
    let (status, body) = call(
        &s.router,
        Method::PUT,
        "/v1/dataset/budget",
        Some(&s.tokens.admin),
        Some(json!({"epsilon": 0.2, "delta": 1e-6})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, preview) = preview_query(&s, token, gaussian.clone()).await;
    assert_eq!(preview["affordable"], false, "{preview}");
    assert_eq!(preview["after"]["refused_by"], "dataset");
    assert_eq!(preview["after"]["dataset"]["epsilon_left"], 0.0);
    assert!(
        preview["after"]["principal"]["epsilon_left"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let (status, refused) = ask(&s, token, gaussian.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(error_code(&refused), "dataset_budget_exhausted");

    // A smaller query fits both: the preview shows what the dataset would keep, and the answer
    // charges exactly the previewed rho.
    let mut small = gaussian;
    small["budget"]["epsilon"] = json!(0.1);
    let (_, preview) = preview_query(&s, token, small.clone()).await;
    assert_eq!(preview["affordable"], true, "{preview}");
    let left = preview["after"]["dataset"]["epsilon_left"]
        .as_f64()
        .unwrap();
    assert!(left > 0.0 && left < 0.2, "{preview}");
    let (status, answer) = ask(&s, token, small).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["answer"]["loss"], preview["loss"]);
    assert_eq!(
        answer["budget"]["rho_spent"],
        preview["after"]["principal"]["rho_spent"]
    );
}

#[tokio::test]
async fn an_auto_contribution_bound_is_chosen_privately_and_charged_once() {
    let s = service(1.0);
    let token = Some(s.tokens.researcher.as_str());
    let mut query = json!({
        "measure": "cases",
        "group_by": ["mission", "registration_year"],
        "period": {"from": "2003-01", "to": "2008-12"},
        "contribution_bound": "auto",
        "budget": {"epsilon": 0.8}
    });
    let (status, preview) = preview_query(&s, token, query.clone()).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["parts"][0]["name"], "records_per_person");
    assert!(preview["half_width_95"].is_null(), "{preview}");
    let epsilon = preview["cost"]["epsilon"].as_f64().unwrap();
    assert!(epsilon <= 0.8 && epsilon > 0.7999, "{preview}");

    let (status, answer) = ask(&s, token, query.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["charged"]["epsilon"].as_f64().unwrap(), epsilon);
    assert_eq!(answer["query"]["contribution_bound"], "auto");
    let chosen = &answer["answer"]["chosen_bound"];
    let k = chosen["records"].as_u64().unwrap();
    assert!((1..=20).contains(&k), "{chosen}");
    assert_eq!(chosen["persons_by_records"].as_array().unwrap().len(), 20);
    let parts = answer["answer"]["parts"].as_array().unwrap();
    assert_eq!(parts[0]["name"], "records_per_person");
    assert_eq!(parts[1]["name"], "cases");
    assert_eq!(parts[1]["sensitivity"]["l1"].as_u64().unwrap(), k);
    let bias = chosen["dropped_per_cell"].as_f64().unwrap();
    let hw = parts[1]["half_width_95"].as_f64().unwrap();
    for c in answer["answer"]["cells"].as_array().unwrap() {
        let (e, hi) = (
            c["estimate"].as_f64().unwrap(),
            c["upper"].as_f64().unwrap(),
        );
        assert!((hi - ((e + hw).max(0.0) + bias)).abs() < 1e-9, "{c}");
    }
    // Asked again: the stored answer, free.
    let (_, again) = ask(&s, token, query.clone()).await;
    assert_eq!(again["reused"], true);
    assert_eq!(again["answer"], answer["answer"]);
    // Not with a mean.
    query["measure"] = json!("mean");
    query["column"] = json!("months_to_closure");
    query["bounds"] = json!({"lower": 0, "upper": 24});
    let (status, refused) = ask(&s, token, query).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(
        refused["error"]["details"]["errors"][0]["field"],
        "contribution_bound"
    );
}

#[tokio::test]
async fn previews_are_free_reasked_queries_are_free_and_overspending_is_refused() {
    let s = service(1.0);
    let token = Some(s.tokens.researcher.as_str());
    let budget = |v: &Value| v["epsilon_left"].as_f64().unwrap();
    let (_, before) = call(&s.router, Method::GET, "/v1/budget", token, None).await;
    assert_eq!(budget(&before), 1.0);

    let (status, preview) = preview_query(&s, token, grouped(0.6)).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["affordable"], true);
    let cost = preview["cost"]["epsilon"].as_f64().unwrap();
    assert!(cost > 0.59 && cost <= 0.6, "{preview}");
    // 3 mission cells (KGZ, UKR, unknown) x 7 years (2003-2008, unknown), all released.
    assert_eq!(preview["cells"], 21);
    let (_, after_preview) = call(&s.router, Method::GET, "/v1/budget", token, None).await;
    assert_eq!(budget(&after_preview), 1.0, "a preview charged the budget");

    let (status, first) = ask(&s, token, grouped(0.6)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["reused"], false);
    assert_eq!(first["charged"]["epsilon"].as_f64().unwrap(), cost);
    let left = first["budget"]["epsilon_left"].as_f64().unwrap();
    assert!((left - (1.0 - cost)).abs() < 1e-9, "{first}");
    let cells = first["answer"]["cells"].as_array().unwrap();
    let hw = first["answer"]["parts"][0]["half_width_95"]
        .as_f64()
        .unwrap();
    assert_eq!(cells.len(), 21);
    for c in cells {
        let (e, lo, hi) = (
            c["estimate"].as_f64().unwrap(),
            c["lower"].as_f64().unwrap(),
            c["upper"].as_f64().unwrap(),
        );
        // The estimate is the unbiased noisy count (it can be below 0); the interval is
        // clipped to counts that are possible.
        assert!(lo <= hi && lo >= 0.0 && hi == (e + hw).max(0.0), "{c}");
    }
    assert_eq!(first["answer"]["parts"][0]["mechanism"], "laplace");

    // The same query again: the same answer, no charge.
    let (status, again) = ask(&s, token, grouped(0.6)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["reused"], true);
    assert_eq!(again["charged"]["epsilon"], 0.0);
    assert_eq!(again["answer"], first["answer"]);
    assert_eq!(again["budget"]["epsilon_left"].as_f64().unwrap(), left);

    // Not enough left: refused, and told how much is left.
    let (status, refused) = ask(&s, token, grouped(0.5)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(error_code(&refused), "budget_exhausted");
    assert_eq!(
        refused["error"]["details"]["budget"]["epsilon_left"]
            .as_f64()
            .unwrap(),
        left
    );
    let (_, end) = call(&s.router, Method::GET, "/v1/budget", token, None).await;
    assert_eq!(budget(&end), left);

    // A caller without a budget is told so.
    let (status, body) = ask(&s, Some(&s.tokens.admin), grouped(0.1)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&body), "forbidden");

    // A malformed query names the field.
    let mut bad = grouped(0.1);
    bad["group_by"] = json!(["shoe_size"]);
    let (status, body) = ask(&s, token, bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_query");
    assert_eq!(body["error"]["details"]["errors"][0]["field"], "group_by");

    // The audit log has every step, and no released value.
    let outcomes: Vec<(String, String)> = s
        .state
        .ledger()
        .audit_entries()
        .unwrap()
        .into_iter()
        .filter(|(p, ..)| p.as_deref() == Some(s.tokens.researcher_id.as_str()))
        .map(|(_, action, _, outcome)| (action, outcome))
        .collect();
    let expected = [
        ("preview", "previewed"),
        ("query", "answered"),
        ("query", "reused"),
        ("query", "refused"),
    ];
    for (action, outcome) in expected {
        assert!(
            outcomes.iter().any(|(a, o)| a == action && o == outcome),
            "{action}/{outcome} missing from {outcomes:?}"
        );
    }
}

#[tokio::test]
async fn a_client_that_hangs_up_after_paying_gets_its_answer_when_it_asks_again() {
    let s = service(10.0);
    let token = Some(s.tokens.analyst.as_str());
    let charges = || {
        s.state
            .ledger()
            .charges(&s.tokens.analyst_id, DATASET)
            .unwrap()
    };
    // Hang up between the charge and the stored answer. On this current-thread runtime the
    // service's task runs only while the test yields, one step at a time, so this is nearly
    // always caught at the first attempt; a query answered before we saw its charge is retried
    // with another budget (a new question).
    for attempt in 0..10 {
        let spec = grouped(0.3 + attempt as f64 * 0.01);
        let before = charges().len();
        let mut request = Box::pin(ask(&s, token, spec.clone()));
        let answered = loop {
            if charges().len() > before {
                break false;
            }
            tokio::select! {
                biased;
                _ = &mut request => break true,
                _ = std::future::ready(()) => {}
            }
            tokio::task::yield_now().await;
        };
        let caught = !answered && !charges()[before].released;
        drop(request);
        if !caught {
            continue;
        }

        // The paid query runs to the end on its own and its answer is stored.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !charges()[before].released {
            assert!(Instant::now() < deadline, "the answer was never stored");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (status, again) = ask(&s, token, spec).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["reused"], true);
        assert_eq!(again["charged"]["epsilon"], 0.0);
        assert_eq!(charges().len(), before + 1, "charged twice");
        return;
    }
    panic!("in 10 attempts the answer was always stored before the charge was seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_queries_never_overspend() {
    let s = service(1.0);
    let router = s.router.clone();
    let token = s.tokens.analyst.clone();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (router, token, next) = (router.clone(), token.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= 1000 {
                    return seen;
                }
                // Distinct queries (no reuse), each at about epsilon 0.03.
                let q = json!({
                    "measure": "cases",
                    "group_by": ["mission"],
                    "period": {"from": "2003-01", "to": "2008-12"},
                    "budget": {"epsilon": 0.03 + i as f64 * 1e-9}
                });
                let (status, body) =
                    call(&router, Method::POST, "/v1/query", Some(&token), Some(q)).await;
                seen.push((status, body));
            }
        }));
    }
    let mut answered = 0;
    let mut refused = 0;
    let mut charged = 0.0;
    for t in tasks {
        for (status, body) in t.await.unwrap() {
            match status {
                StatusCode::OK => {
                    answered += 1;
                    charged += body["charged"]["epsilon"].as_f64().unwrap();
                }
                StatusCode::FORBIDDEN => {
                    assert_eq!(error_code(&body), "budget_exhausted");
                    refused += 1;
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
    }
    assert_eq!(answered + refused, 1000);
    let ledger = s.state.ledger();
    let budget = ledger
        .budget(&s.tokens.analyst_id, DATASET)
        .unwrap()
        .unwrap();
    let recorded = ledger.charged_total(&s.tokens.analyst_id, DATASET).unwrap();
    println!(
        "1000 queries from 32 tasks: {answered} answered, {refused} refused; charged {charged:.12} \
         of 1.0; ledger spent {:.12}",
        budget.epsilon_spent
    );
    // Laplace queries are pure-DP charges. Added one by one, 33 of them fit in epsilon 1; at the
    // budget's delta 1e-5 they compose better in zCDP (each as epsilon^2 / 2), so about twice as
    // many fit, and the composed epsilon, never the sum, is what is spent.
    assert!(answered > 34 && refused >= 900, "{answered} answered");
    assert!(
        budget.epsilon_spent <= 1.0,
        "overspent: {}",
        budget.epsilon_spent
    );
    assert_eq!((recorded.rho, recorded.approx_delta), (0.0, 0.0));
    assert_eq!(
        recorded.epsilon_at(1e-5).unwrap(),
        Some(budget.epsilon_spent)
    );
    // The recorded charges are those charged to the answered queries (costs are stored rounded
    // up to 1e-12).
    assert_eq!(recorded.pure.len(), answered);
    assert_eq!(budget.pure_epsilon_spent, {
        let units: i64 = recorded
            .pure
            .iter()
            .map(|e| (e * 1e12).round() as i64)
            .sum();
        units as f64 / 1e12
    });
    assert!((budget.pure_epsilon_spent - charged).abs() < 1e-9 * answered as f64);
    let charges = ledger.charges(&s.tokens.analyst_id, DATASET).unwrap();
    assert_eq!(charges.len(), answered);
    assert!(charges.iter().all(|c| c.released));
}

#[tokio::test]
async fn uploads_commit_are_seen_at_once_and_fail_clearly() {
    let s = service(10.0);
    let (ngo, researcher) = (
        Some(s.tokens.ngo.as_str()),
        Some(s.tokens.researcher.as_str()),
    );
    let persons = |epsilon| {
        json!({"measure": "persons", "group_by": ["mission"],
               "period": {"from": "2003-01", "to": "2008-12"}, "budget": {"epsilon": epsilon}})
    };
    let (_, before) = ask(&s, researcher, persons(1.0)).await;
    let generation = before["answer"]["generation"].as_u64().unwrap();

    // Raw body.
    let (status, _, body) = send(
        &s.router,
        Method::POST,
        "/v1/batches?mission=UKR&format=csv",
        ngo,
        Some("text/csv"),
        s.upload.clone(),
    )
    .await;
    let report: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::CREATED, "{report}");
    assert_eq!(report["status"], "committed");
    assert_eq!(
        report["report"]["rows_read"],
        report["report"]["rows_committed"]
    );
    assert_eq!(report["report"]["organisation"], s.upload_org.as_str());

    // Visible to the next query without a restart.
    let (_, after) = ask(&s, researcher, persons(1.1)).await;
    assert!(
        after["answer"]["generation"].as_u64().unwrap() > generation,
        "{after}"
    );

    // The same file as multipart: a duplicate, nothing written.
    let boundary = "ctstatsboundary";
    let mut form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"ukr.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n"
    )
    .into_bytes();
    form.extend_from_slice(&s.upload);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, _, body) = send(
        &s.router,
        Method::POST,
        "/v1/batches?mission=UKR",
        ngo,
        Some(&format!("multipart/form-data; boundary={boundary}")),
        form,
    )
    .await;
    let dup: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::OK, "{dup}");
    assert_eq!(dup["status"], "duplicate");

    // A file without the required columns: rejected whole, with the reason.
    let (status, _, body) = send(
        &s.router,
        Method::POST,
        "/v1/batches?mission=UKR&format=csv",
        ngo,
        Some("text/csv"),
        b"colour,size\nred,3\n".to_vec(),
    )
    .await;
    let rejected: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{rejected}");
    assert_eq!(rejected["status"], "rejected");
    assert!(
        rejected["report"]["file_problem"]["rule"].is_string(),
        "{rejected}"
    );

    // Too large: 413, before anything is ingested.
    let (status, _, body) = send(
        &s.router,
        Method::POST,
        "/v1/batches?mission=UKR&format=csv",
        ngo,
        Some("text/csv"),
        vec![b'x'; (1 << 20) + 1],
    )
    .await;
    let big: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, error_code(&big)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );

    // Bad parameters name themselves.
    let (status, _, body) = send(
        &s.router,
        Method::POST,
        "/v1/batches?mission=UKR",
        ngo,
        Some("text/csv"),
        s.upload.clone(),
    )
    .await;
    let bad: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert!(
        bad["error"]["message"].as_str().unwrap().contains("format"),
        "{bad}"
    );
    let (status, _, _) = send(
        &s.router,
        Method::POST,
        "/v1/batches?mission=UKR&format=csv&profile=/etc/passwd",
        ngo,
        Some("text/csv"),
        s.upload.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The organisation's list: one batch committed over HTTP and every upload's report.
    let (_, list) = call(&s.router, Method::GET, "/v1/batches", ngo, None).await;
    assert_eq!(list["batches"].as_array().unwrap().len(), 1, "{list}");
    let statuses: Vec<&str> = list["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["rejected", "duplicate", "committed"]);
}

#[tokio::test]
async fn answers_come_as_csv_too_and_the_openapi_document_lists_every_route() {
    let s = service(10.0);
    let (status, headers, body) = send(
        &s.router,
        Method::POST,
        "/v1/query?format=csv",
        Some(&s.tokens.analyst),
        Some("application/json"),
        grouped(0.5).to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        headers["x-ctstats-charged-epsilon"]
            .to_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            > 0.0
    );
    let text = String::from_utf8(body).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("mission,registration_year,estimate,lower,upper")
    );
    assert_eq!(lines.count(), 21);

    let (_, doc) = call(&s.router, Method::GET, "/openapi.json", None, None).await;
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/query", "post"),
        ("/v1/preview", "post"),
        ("/v1/sql", "post"),
        ("/v1/sql/preview", "post"),
        ("/v1/budget", "get"),
        ("/v1/dimensions", "get"),
        ("/v1/batches", "get"),
        ("/v1/batches", "post"),
        ("/v1/principals", "get"),
        ("/v1/principals", "post"),
        ("/v1/principals/{id}", "delete"),
        ("/v1/principals/{id}/budget", "put"),
        ("/v1/principals/{id}/missions", "put"),
        ("/v1/dataset/budget", "get"),
        ("/v1/dataset/budget", "put"),
        ("/v1/audit", "get"),
        ("/openapi.json", "get"),
        ("/v1/indicators", "get"),
        ("/v1/releases", "get"),
        ("/v1/releases", "post"),
        ("/v1/releases/preview", "post"),
        ("/v1/releases/{id}", "get"),
        ("/v1/reference/{table}", "get"),
        ("/v1/reference/{table}", "put"),
        ("/dashboard", "get"),
        ("/upload", "get"),
        ("/v1/batches/template", "get"),
        ("/v1/synthetic", "get"),
        ("/v1/synthetic", "post"),
        ("/v1/synthetic/preview", "post"),
        ("/v1/synthetic/{id}", "get"),
        ("/v1/synthetic/{id}/records", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    assert_eq!(paths.len(), 26);
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["QuerySpec"].is_object());

    // Without a key, no upload endpoint, in the router and in the document.
    let state = AppState::new(
        s.state.config().clone(),
        Ledger::open(&s.dir.path().join("l2.sqlite")).unwrap(),
        None,
    );
    let router = app(state);
    let (status, _, _) = send(
        &router,
        Method::POST,
        "/v1/batches?mission=UKR&format=csv",
        Some(&s.tokens.ngo),
        Some("text/csv"),
        s.upload.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (_, doc) = call(&router, Method::GET, "/openapi.json", None, None).await;
    assert!(doc["paths"]["/v1/batches"]["post"].is_null());
    assert!(doc["paths"]["/v1/batches"]["get"].is_object());
}

/// `value` with the fields that are fresh on every call (tokens, new ids, timestamps) blanked.
fn without_fresh_fields(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let fresh = ["token", "id", "at", "created_at", "committed_at"];
                    let v = if fresh.contains(&k.as_str()) {
                        Value::Null
                    } else {
                        without_fresh_fields(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_fresh_fields).collect()),
        other => other.clone(),
    }
}

/// What a route may return, by what it is computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    /// The schema, the code lists: nothing from records or the ledger.
    Public,
    /// Principals, budgets, prices, the audit log: from the ledger and the spec, never records.
    Ledger,
    /// The caller's organisation's own batches and upload reports.
    OwnUploads,
    /// Computed from records: only through the DP module, and charged.
    DpCharged,
    /// A stored release, served as it was stored when it was charged (never recomputed).
    Release,
    /// A stored synthetic table (its metadata or its records), served as stored when charged.
    Synthetic,
}

/// A small synthetic table request (the default columns).
fn synthetic_request() -> Value {
    json!({"name": "route test", "from": 2003, "to": 2008, "epsilon": 0.5, "delta": 1e-6})
}

/// One request of a route: method, documented path, URI, token, JSON body, class.
type Route<'a> = (
    Method,
    &'a str,
    String,
    Option<&'a str>,
    Option<Value>,
    Class,
);

#[tokio::test]
async fn only_charged_dp_answers_and_own_upload_reports_depend_on_the_records() {
    // Two services with the same ledger (principals, tokens, budgets) over two datasets: D (one
    // KGZ batch) and D plus a UKR batch. Every documented route is asked the same of both. A
    // response may differ between them only where the route's class allows it.
    let a = service(10.0);
    let b_dir = tempfile::tempdir().unwrap();
    let b_data = b_dir.path().join(DATASET);
    copy_dir(&a.state.config().data, &b_data);
    for name in ["ledger.sqlite", "ledger.sqlite-wal"] {
        let from = a.dir.path().join(name);
        if from.exists() {
            std::fs::copy(&from, b_dir.path().join(name)).unwrap();
        }
    }
    let ukr = b_dir.path().join("ukr.csv");
    std::fs::write(&ukr, &a.upload).unwrap();
    let b_dataset = Dataset::open(&b_data).unwrap();
    let report = ingest_file(&b_dataset, &ukr, &a.upload_org, "UKR", "canonical", false);
    assert_eq!(report.status, Status::Committed);
    let b_state = AppState::new(
        ServiceConfig {
            data: b_data.clone(),
            ..a.state.config().clone()
        },
        Ledger::open(&b_dir.path().join("ledger.sqlite")).unwrap(),
        Some(Arc::new(IngestUploader::new(b_dataset, test_secret()))),
    );
    let b = app(b_state.clone());

    let t = &a.tokens;
    let upload_uri = "/v1/batches?mission=UKR&format=csv";
    let routes: Vec<Route> = vec![
        (
            Method::GET,
            "/openapi.json",
            "/openapi.json".into(),
            None,
            None,
            Class::Public,
        ),
        (
            Method::GET,
            "/v1/dimensions",
            "/v1/dimensions".into(),
            None,
            None,
            Class::Public,
        ),
        (
            Method::POST,
            "/v1/preview",
            "/v1/preview".into(),
            Some(t.analyst.as_str()),
            Some(grouped(0.5)),
            Class::Ledger,
        ),
        (
            Method::GET,
            "/v1/budget",
            "/v1/budget".into(),
            Some(t.analyst.as_str()),
            None,
            Class::Ledger,
        ),
        // Another organisation's view of the batches must not change with UKR's upload.
        (
            Method::GET,
            "/v1/batches",
            "/v1/batches".into(),
            Some(t.other_ngo.as_str()),
            None,
            Class::Ledger,
        ),
        (
            Method::GET,
            "/v1/batches",
            "/v1/batches".into(),
            Some(t.ngo.as_str()),
            None,
            Class::OwnUploads,
        ),
        (
            Method::GET,
            "/v1/principals",
            "/v1/principals".into(),
            Some(t.admin.as_str()),
            None,
            Class::Ledger,
        ),
        (
            Method::POST,
            "/v1/principals",
            "/v1/principals".into(),
            Some(t.admin.as_str()),
            Some(json!({"name": "new", "role": "analyst"})),
            Class::Ledger,
        ),
        (
            Method::PUT,
            "/v1/principals/{id}/budget",
            format!("/v1/principals/{}/budget", t.researcher_id),
            Some(t.admin.as_str()),
            Some(json!({"epsilon": 3.0, "delta": 1e-6})),
            Class::Ledger,
        ),
        (
            Method::PUT,
            "/v1/principals/{id}/missions",
            format!("/v1/principals/{}/missions", t.researcher_id),
            Some(t.admin.as_str()),
            Some(json!({"missions": []})),
            Class::Ledger,
        ),
        (
            Method::DELETE,
            "/v1/principals/{id}",
            format!("/v1/principals/{}", t.victim_id),
            Some(t.admin.as_str()),
            None,
            Class::Ledger,
        ),
        (
            Method::GET,
            "/v1/audit",
            "/v1/audit".into(),
            Some(t.admin.as_str()),
            None,
            Class::Ledger,
        ),
        (
            Method::POST,
            "/v1/query",
            "/v1/query".into(),
            Some(t.analyst.as_str()),
            Some(grouped(0.5)),
            Class::DpCharged,
        ),
        // Another question than the JSON one above, so it is charged, not re-served.
        (
            Method::POST,
            "/v1/sql",
            "/v1/sql".into(),
            Some(t.analyst.as_str()),
            Some(grouped_sql(0.25)),
            Class::DpCharged,
        ),
        (
            Method::POST,
            "/v1/sql/preview",
            "/v1/sql/preview".into(),
            Some(t.analyst.as_str()),
            Some(grouped_sql(0.5)),
            Class::Ledger,
        ),
        (
            Method::POST,
            "/v1/batches",
            upload_uri.into(),
            Some(t.ngo.as_str()),
            None,
            Class::OwnUploads,
        ),
        (
            Method::GET,
            "/v1/indicators",
            "/v1/indicators".into(),
            None,
            None,
            Class::Public,
        ),
        (
            Method::PUT,
            "/v1/reference/{table}",
            "/v1/reference/estimated_victims".into(),
            Some(t.admin.as_str()),
            None,
            Class::Ledger,
        ),
        (
            Method::GET,
            "/v1/reference/{table}",
            "/v1/reference/estimated_victims".into(),
            None,
            None,
            Class::Public,
        ),
        (
            Method::GET,
            "/dashboard",
            "/dashboard".into(),
            None,
            None,
            Class::Public,
        ),
        (
            Method::GET,
            "/upload",
            "/upload".into(),
            None,
            None,
            Class::Public,
        ),
        (
            Method::GET,
            "/v1/batches/template",
            "/v1/batches/template?format=markdown".into(),
            None,
            None,
            Class::Public,
        ),
        (
            Method::GET,
            "/v1/dataset/budget",
            "/v1/dataset/budget".into(),
            Some(t.admin.as_str()),
            None,
            Class::Ledger,
        ),
        (
            Method::PUT,
            "/v1/dataset/budget",
            "/v1/dataset/budget".into(),
            Some(t.admin.as_str()),
            Some(json!({"epsilon": 1000.0, "delta": 1e-3})),
            Class::Ledger,
        ),
        (
            Method::POST,
            "/v1/releases",
            "/v1/releases".into(),
            Some(t.analyst.as_str()),
            Some(
                json!({"name": "route test", "indicators": ["persons_assisted", "coverage_vs_estimated"],
                        "from": 2003, "to": 2008, "epsilon": 0.5, "delta": 1e-6}),
            ),
            Class::DpCharged,
        ),
        (
            Method::POST,
            "/v1/releases/preview",
            "/v1/releases/preview".into(),
            Some(t.analyst.as_str()),
            Some(
                json!({"name": "route test", "indicators": ["persons_assisted", "shelter_uptake"],
                        "from": 2003, "to": 2008, "epsilon": 0.5, "delta": 1e-6}),
            ),
            Class::Ledger,
        ),
        (
            Method::GET,
            "/v1/releases",
            "/v1/releases".into(),
            Some(t.researcher.as_str()),
            None,
            Class::Release,
        ),
        (
            Method::GET,
            "/v1/releases/{id}",
            "/v1/releases/1".into(),
            Some(t.ngo.as_str()),
            None,
            Class::Release,
        ),
        (
            Method::POST,
            "/v1/synthetic",
            "/v1/synthetic".into(),
            Some(t.analyst.as_str()),
            Some(synthetic_request()),
            Class::DpCharged,
        ),
        (
            Method::POST,
            "/v1/synthetic/preview",
            "/v1/synthetic/preview".into(),
            Some(t.analyst.as_str()),
            Some(synthetic_request()),
            Class::Ledger,
        ),
        (
            Method::GET,
            "/v1/synthetic",
            "/v1/synthetic".into(),
            Some(t.researcher.as_str()),
            None,
            Class::Synthetic,
        ),
        (
            Method::GET,
            "/v1/synthetic/{id}",
            "/v1/synthetic/1".into(),
            Some(t.ngo.as_str()),
            None,
            Class::Synthetic,
        ),
        (
            Method::GET,
            "/v1/synthetic/{id}/records",
            "/v1/synthetic/1/records?format=csv".into(),
            Some(t.admin.as_str()),
            None,
            Class::Synthetic,
        ),
    ];

    // Every documented route has a class here.
    let (_, doc) = call(&a.router, Method::GET, "/openapi.json", None, None).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                routes
                    .iter()
                    .any(|r| r.1 == path && r.0.as_str().eq_ignore_ascii_case(method)),
                "{method} {path} has no class in this test"
            );
        }
    }

    for (method, path, uri, token, body, class) in routes {
        let ask = |router: Router| {
            let (method, uri, body) = (method.clone(), uri.clone(), body.clone());
            let upload = a.upload.clone();
            async move {
                if path == "/v1/batches" && method == Method::POST {
                    let (status, _, bytes) =
                        send(&router, method, &uri, token, Some("text/csv"), upload).await;
                    (
                        status,
                        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    )
                } else if path == "/v1/reference/{table}" && method == Method::PUT {
                    let csv =
                        b"country,year,estimate,low,high,source\nKGZ,2005,900,500,1400,Test\n";
                    let (status, _, bytes) =
                        send(&router, method, &uri, token, Some("text/csv"), csv.to_vec()).await;
                    (
                        status,
                        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    )
                } else if path == "/v1/synthetic/{id}/records" {
                    let (status, _, bytes) = send(&router, method, &uri, token, None, vec![]).await;
                    (
                        status,
                        Value::String(String::from_utf8_lossy(&bytes).into()),
                    )
                } else if ["/dashboard", "/upload", "/v1/batches/template"].contains(&path) {
                    let (status, _, bytes) = send(&router, method, &uri, None, None, vec![]).await;
                    (
                        status,
                        Value::String(String::from_utf8_lossy(&bytes).into()),
                    )
                } else {
                    call(&router, method, &uri, token, body).await
                }
            }
        };
        let (status_a, body_a) = ask(a.router.clone()).await;
        let (status_b, body_b) = ask(b.clone()).await;
        assert!(status_a.is_success(), "{method} {uri}: {status_a} {body_a}");
        assert!(status_b.is_success(), "{method} {uri}: {status_b} {body_b}");
        let same =
            (status_a, without_fresh_fields(&body_a)) == (status_b, without_fresh_fields(&body_b));
        match class {
            Class::Public | Class::Ledger => {
                assert!(
                    same,
                    "{method} {uri} depends on the records:\n{body_a}\n{body_b}"
                )
            }
            Class::OwnUploads => {
                // D has no UKR batch, D plus UKR has one: the organisation sees its own.
                assert!(
                    !same,
                    "{method} {uri}: the organisation's own batch is not shown"
                );
            }
            Class::DpCharged => {
                for (body, state) in [(&body_a, &a.state), (&body_b, &b_state)] {
                    let charged = body["charged"]["epsilon"]
                        .as_f64()
                        .or_else(|| body["cost"]["epsilon"].as_f64())
                        .unwrap();
                    assert!(charged > 0.0, "{body}");
                    let charges = state.ledger().charges(&t.analyst_id, DATASET).unwrap();
                    assert!(charges.iter().any(|c| c.released), "{uri}: not charged");
                }
            }
            Class::Release => {
                // Exactly what each service stored when the release was charged.
                for (body, state) in [(&body_a, &a.state), (&body_b, &b_state)] {
                    let stored: Vec<Value> = state
                        .ledger()
                        .releases(DATASET)
                        .unwrap()
                        .iter()
                        .map(|r| serde_json::from_str(r).unwrap())
                        .collect();
                    assert_eq!(stored.len(), 1, "{uri}");
                    if let Some(list) = body["releases"].as_array() {
                        assert_eq!(list.len(), 1, "{body}");
                        assert_eq!(list[0]["id"], stored[0]["id"]);
                        assert_eq!(list[0]["cost"], stored[0]["cost"]);
                    } else {
                        assert_eq!(body, &stored[0], "{uri} is not the stored release");
                    }
                }
            }
            Class::Synthetic => {
                // Exactly what each service stored when the table was charged.
                for (body, state) in [(&body_a, &a.state), (&body_b, &b_state)] {
                    let (info, parquet) =
                        state.ledger().synthetic_table(DATASET, 1).unwrap().unwrap();
                    let info: Value = serde_json::from_str(&info).unwrap();
                    if let Some(list) = body["tables"].as_array() {
                        assert_eq!(list, &vec![info], "{uri}");
                    } else if let Some(csv) = body.as_str() {
                        let stored = ctstats_query::synthetic::parquet_to_csv(&parquet).unwrap();
                        assert_eq!(csv.as_bytes(), stored.as_slice(), "{uri}");
                    } else {
                        assert_eq!(body, &info, "{uri} is not the stored table");
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server as a process, killed during queries.

/// A minimal HTTP/1.1 client: one request per connection.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("truncated response"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, body.to_string()))
}

/// Start `ctstats serve --no-upload` on a free port; returns the child and its address.
fn start_server(data: &Path, ledger: &Path) -> (std::process::Child, String) {
    spawn_server(data, ledger, &["--no-upload"], Stdio::null())
}

/// A [`Service`]'s dataset and ledger served by `ctstats serve` as a process, with uploads.
pub(crate) struct ServedProcess {
    /// The temp dir holding dataset, ledger and key: removed when this is dropped.
    pub(crate) dir: tempfile::TempDir,
    pub(crate) data: PathBuf,
    pub(crate) ledger: PathBuf,
    pub(crate) ngo: String,
    pub(crate) analyst: String,
    pub(crate) child: std::process::Child,
    pub(crate) addr: String,
}

impl Service {
    /// Hand the dataset and ledger to `ctstats serve --key` (with `extra` arguments, its log to
    /// `stderr`); the in-process router and its ledger connection are dropped.
    pub(crate) fn serve_as_process(self, extra: &[&str], stderr: Stdio) -> ServedProcess {
        let Service {
            dir,
            router,
            state,
            tokens,
            ..
        } = self;
        drop(router);
        drop(state);
        let data = dir.path().join(DATASET);
        let ledger = dir.path().join("ledger.sqlite");
        let key = write_test_key(dir.path());
        let mut args = extra.to_vec();
        args.extend(["--key", key.to_str().unwrap()]);
        let (child, addr) = spawn_server(&data, &ledger, &args, stderr);
        ServedProcess {
            dir,
            data,
            ledger,
            ngo: tokens.ngo,
            analyst: tokens.analyst,
            child,
            addr,
        }
    }
}

/// Start `ctstats serve` with `extra` arguments on a free port, its log to `stderr`.
pub(crate) fn spawn_server(
    data: &Path,
    ledger: &Path,
    extra: &[&str],
    stderr: Stdio,
) -> (std::process::Child, String) {
    let mut child = Command::new(ctstats_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--missions", "KGZ,UKR"])
        .args(extra)
        .arg("--data")
        .arg(data)
        .arg("--ledger")
        .arg(ledger)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (child, addr)
}

/// Canary identifiers sent through every endpoint that takes input: uploads as CSV (with a
/// rejected row) and JSON Lines, an upload that fails to parse, queries and previews naming a
/// canary, a valid query and the batch list. None may then be found, in any normalised form, in
/// the dataset (raw and decompressed), the ledger (budgets, audit, stored answers, upload
/// reports), the server's trace-level log, or any upload response.
#[test]
fn canaries_sent_over_http_reach_no_dataset_ledger_or_log() {
    let s = service(100.0);
    let log_path = s.dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let upload_org = s.upload_org.clone();
    let ServedProcess {
        dir,
        data,
        ledger,
        ngo,
        analyst,
        mut child,
        addr,
    } = s.serve_as_process(&["-vv"], Stdio::from(log));

    let canaries = [
        "Канареечкина",
        "Зоряна",
        "Canaryfirstname",
        "Canarysurname",
        "1911-11-11",
        "CANARYDOC7741",
        "+99655577331",
        "canary.mail@example.org",
        "Canary street 12",
        "Canary free text note",
        "Canarygendervalue",
    ];
    let csv = format!(
        "case_id,last_name,first_name,birth_date,document_number,Phone,email,address,notes,registration_date,gender\n\
         H-1,{},{},{},{},{},{},{},{},2005-01-10,female\n\
         H-2,{},{},1980-01-01,,,,,,2005-02-10,{}\n",
        canaries[0],
        canaries[1],
        canaries[4],
        canaries[5],
        canaries[6],
        canaries[7],
        canaries[8],
        canaries[9],
        canaries[3],
        canaries[2],
        canaries[10],
    );
    let jsonl = format!(
        "{}\n",
        json!({"case_id": "H-3", "last_name": canaries[3], "first_name": canaries[1],
               "birth_date": canaries[4], "document_number": canaries[5],
               "registration_date": "2005-03-10", "gender": canaries[10]})
    );
    let broken = format!("case_id,last_name\nH-4,\"{}\n", canaries[2]);
    let mut responses = Vec::new();
    for (uri, body) in [
        (
            "/v1/batches?mission=UKR&format=csv&accept_valid=true",
            csv.as_str(),
        ),
        (
            "/v1/batches?mission=UKR&format=jsonl&accept_valid=true",
            &jsonl,
        ),
        ("/v1/batches?mission=UKR&format=csv", &broken),
    ] {
        let (status, body) = http(&addr, "POST", uri, &ngo, body).unwrap();
        assert!([200, 201, 422].contains(&status), "{uri}: {status} {body}");
        responses.push((format!("response to {uri}"), body));
    }
    assert!(
        responses[0].1.contains("\"committed\""),
        "{}",
        responses[0].1
    );
    let (status, body) = http(&addr, "GET", "/v1/batches", &ngo, "").unwrap();
    assert_eq!(status, 200, "{body}");
    responses.push(("GET /v1/batches".into(), body));
    // Canaries typed into queries: refused, and neither logged nor kept in the audit log.
    let asking = json!({"measure": "persons", "filters": {"gender": [canaries[10]]},
                        "period": {"from": "2005-01", "to": "2005-12"}, "budget": {"epsilon": 0.1}});
    for path in ["/v1/query", "/v1/preview"] {
        let (status, body) = http(&addr, "POST", path, &analyst, &asking.to_string()).unwrap();
        assert_eq!(status, 400, "{path}: {body}");
    }
    let asking_sql = json!({"sql": format!(
        "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 0.1) mission, COUNT(*) FROM cases \
         WHERE registration_year = 2005 AND gender = '{}' GROUP BY mission", canaries[10])});
    let refused_sql = json!({"sql": format!(
        "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 0.1) mission, COUNT(*) FROM cases \
         WHERE registration_year = 2005 AND record_key = '{}' GROUP BY mission", canaries[10])});
    for body in [&asking_sql, &refused_sql] {
        for path in ["/v1/sql", "/v1/sql/preview"] {
            let (status, body) = http(&addr, "POST", path, &analyst, &body.to_string()).unwrap();
            assert_eq!(status, 400, "{path}: {body}");
        }
    }
    let (status, body) = http(
        &addr,
        "POST",
        "/v1/query",
        &analyst,
        &grouped(0.5).to_string(),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    child.kill().unwrap();
    child.wait().unwrap();

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("request"), "the search sees the server's log");
    let mut haystacks = responses;
    haystacks.push(("server log".into(), log));
    haystacks.push(("decompressed values".into(), all_strings(&data)));
    let ledger_files = [ledger.clone(), dir.path().join("ledger.sqlite-wal")];
    for path in files_under(&data).into_iter().chain(ledger_files) {
        if let Ok(bytes) = std::fs::read(&path) {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            haystacks.push((path.display().to_string(), text));
        }
    }
    assert!(
        haystacks.iter().any(|(_, h)| h.contains(&upload_org)),
        "the search sees the ledger and the dataset"
    );
    assert_no_canary(&canaries, &haystacks);
}

/// Kills of the server under load in [`a_killed_server_loses_no_budget_and_releases_nothing_unpaid`].
const KILLS: usize = 20;

#[test]
fn a_killed_server_loses_no_budget_and_releases_nothing_unpaid() {
    let s = service(1000.0);
    let data = s.dir.path().join(DATASET);
    let ledger_path: PathBuf = s.dir.path().join("ledger.sqlite");
    let token = s.tokens.researcher.clone();
    drop(s.router);
    drop(s.state);

    let next = Arc::new(AtomicUsize::new(0));
    let mut received: Vec<(String, Value)> = Vec::new();
    let mut refunded_total = 0;
    for round in 0..KILLS {
        let (mut child, addr) = start_server(&data, &ledger_path);
        let answers: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let stop = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..6)
            .map(|_| {
                let (addr, token, answers, stop, next) = (
                    addr.clone(),
                    token.clone(),
                    answers.clone(),
                    stop.clone(),
                    next.clone(),
                );
                std::thread::spawn(move || {
                    while stop.load(Ordering::Relaxed) == 0 {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let q = grouped(0.01 + i as f64 * 1e-6).to_string();
                        match http(&addr, "POST", "/v1/query", &token, &q) {
                            // A response cut off by the kill was not received.
                            Ok((200, body)) => match serde_json::from_str::<Value>(&body) {
                                Ok(v) => answers.lock().unwrap().push((q, v)),
                                Err(_) => return,
                            },
                            Ok((status, body)) => panic!("{status}: {body}"),
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        // Kill once a few answers are out, with more in flight.
        let started = Instant::now();
        while answers.lock().unwrap().len() < 4 + round % 5 {
            assert!(started.elapsed() < Duration::from_secs(120), "no answers");
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        stop.store(1, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        received.extend(answers.lock().unwrap().drain(..));

        // Opening the ledger refunds what the killed server charged and never stored.
        let ledger = Ledger::open(&ledger_path).unwrap();
        let pid = ledger.authenticate(&token).unwrap().unwrap().id;
        let charges = ledger.charges(&pid, DATASET).unwrap();
        let budget = ledger.budget(&pid, DATASET).unwrap().unwrap();
        let released: HashMap<&str, bool> = charges
            .iter()
            .map(|c| (c.query_hash.as_str(), c.released))
            .collect();
        // Every answer a client received was charged and stored before it left.
        for (_, answer) in &received {
            let hash = answer["query_hash"].as_str().unwrap();
            assert_eq!(
                released.get(hash),
                Some(&true),
                "answer {hash} released without a stored charge"
            );
        }
        // Nothing is pending, and what is spent is exactly the stored answers' charges.
        assert!(
            charges.iter().all(|c| c.released != c.refunded),
            "{charges:?}"
        );
        let stored: f64 = charges
            .iter()
            .filter(|c| c.released)
            .map(|c| c.loss.epsilon)
            .sum();
        assert!(
            (stored - budget.pure_epsilon_spent).abs() < 1e-9,
            "spent {} but the stored answers charged {stored}",
            budget.pure_epsilon_spent
        );
        refunded_total = charges.iter().filter(|c| c.refunded).count();
        let refunds = ledger
            .audit_entries()
            .unwrap()
            .into_iter()
            .filter(|(_, action, _, outcome)| action == "refund" && outcome == "refunded")
            .count();
        assert_eq!(refunds, refunded_total, "one audit entry per refund");
    }
    println!(
        "{KILLS} kills: {} answers received, {refunded_total} charges refunded",
        received.len()
    );
    assert!(received.len() >= KILLS * 4);

    // After a restart, each received query is served again at no cost, identically.
    let (mut child, addr) = start_server(&data, &ledger_path);
    let spent = |ledger: &Ledger| {
        let pid = ledger.authenticate(&token).unwrap().unwrap().id;
        ledger.budget(&pid, DATASET).unwrap().unwrap().epsilon_spent
    };
    let before = spent(&Ledger::open(&ledger_path).unwrap());
    for (q, first) in received.iter().take(5) {
        let (status, body) = http(&addr, "POST", "/v1/query", &token, q).unwrap();
        assert_eq!(status, 200, "{body}");
        let again: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(again["reused"], true);
        assert_eq!(again["answer"], first["answer"]);
    }
    assert_eq!(spent(&Ledger::open(&ledger_path).unwrap()), before);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn the_demo_runs_the_whole_path_and_prints_working_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(ctstats_bin())
        .args(["demo", "--no-serve", "--persons", "300", "--dir"])
        .arg(dir.path().join("demo"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all three match"), "{stdout}");
    assert!(stdout.contains("intervals hold the true count"), "{stdout}");
    // The printed researcher token works against the demo's ledger.
    let token = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("researcher token: "))
        .unwrap()
        .trim();
    let ledger = Ledger::open(&dir.path().join("demo").join("data.ledger.sqlite")).unwrap();
    let p = ledger.authenticate(token).unwrap().unwrap();
    assert_eq!(p.role, Role::Researcher);
    assert_eq!(
        ledger.budget(&p.id, "data").unwrap().unwrap().epsilon_total,
        2.0
    );
}

/// `/v1/dataset/budget`: unset at first (no cap, `set: false`); set by an admin (audited); read
/// by admins and analysts; and once set, every principal's charges count against it together: a
/// charge that would overflow it is refused with `dataset_budget_exhausted`, charges nobody, and
/// says only what is left of it.
#[tokio::test]
async fn the_dataset_budget_caps_every_principal_together() {
    let s = service(1.0);
    let t = &s.tokens;
    let r = &s.router;
    let uri = "/v1/dataset/budget";
    let (status, unset) = call(r, Method::GET, uri, Some(&t.analyst), None).await;
    assert_eq!(status, StatusCode::OK, "{unset}");
    assert_eq!(unset["set"], false);
    assert!(unset["budget"].is_null());
    for (body, code) in [
        (json!({"epsilon": -1.0}), "invalid_amount"),
        (json!({"epsilon": 1.0, "rho": 0.1}), "invalid_amount"),
        (json!({"delta": 1e-6}), "invalid_amount"),
        (json!({"rho": -0.5}), "invalid_amount"),
        (json!({"epsilon": 1.0, "delta": 0.5}), "invalid_amount"),
        (json!({"epsilons": 1.0}), "invalid_json"),
    ] {
        let (status, got) = call(r, Method::PUT, uri, Some(&t.admin), Some(body.clone())).await;
        assert_eq!(
            (status, error_code(&got)),
            (StatusCode::BAD_REQUEST, code),
            "{body}: {got}"
        );
    }
    let (status, set) = call(
        r,
        Method::PUT,
        uri,
        Some(&t.admin),
        Some(json!({"epsilon": 0.5, "delta": 1e-6})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["set"], true);
    assert_eq!(set["budget"]["epsilon_total"], 0.5);
    assert_eq!(set["budget"]["epsilon_spent"], 0.0);

    // The analyst spends 0.3 of it; the researcher's 0.3 would overflow it together.
    let (status, first) = ask(&s, Some(&t.analyst), grouped(0.3)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, refused) = ask(&s, Some(&t.researcher), grouped(0.3)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(error_code(&refused), "dataset_budget_exhausted");
    let details = &refused["error"]["details"];
    assert_eq!(details["by"], "dataset");
    let left = details["left"]["epsilon_left"].as_f64().unwrap();
    assert!((left - 0.2).abs() < 1e-11, "{refused}");
    // Only what is left: not what was spent, nor by whom.
    assert!(details.get("budget").is_none());
    let text = refused.to_string();
    assert!(
        !text.contains(&t.analyst_id) && !text.contains("_spent"),
        "{text}"
    );
    // Nothing was charged to the researcher.
    let (_, mine) = call(r, Method::GET, "/v1/budget", Some(&t.researcher), None).await;
    assert_eq!(mine["epsilon_spent"], 0.0);
    assert!(
        s.state
            .ledger()
            .charges(&t.researcher_id, DATASET)
            .unwrap()
            .is_empty()
    );
    // What fits in both is charged.
    let (status, small) = ask(&s, Some(&t.researcher), grouped(0.1)).await;
    assert_eq!(status, StatusCode::OK, "{small}");
    let (_, now) = call(r, Method::GET, uri, Some(&t.admin), None).await;
    let spent = now["budget"]["epsilon_spent"].as_f64().unwrap();
    assert!((spent - 0.4).abs() < 1e-11, "{now}");
    assert_eq!(now["budget"]["pure_epsilon_spent"], spent);
    // The admin's change is in the audit log.
    let (_, log) = call(r, Method::GET, "/v1/audit", Some(&t.admin), None).await;
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|l| l["action"] == "set_dataset_budget"
                && l["detail"].as_str().unwrap().contains("epsilon=0.5"))
    );
    // A rho budget: the Laplace charges count as epsilon^2 / 2.
    let (status, rho) = call(
        r,
        Method::PUT,
        uri,
        Some(&t.admin),
        Some(json!({"rho": 0.1})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rho}");
    assert_eq!(rho["budget"]["rho_total"], 0.1);
    let rho_spent = rho["budget"]["rho_spent"].as_f64().unwrap();
    assert!((rho_spent - (0.09 + 0.01) / 2.0).abs() < 1e-11, "{rho}");
    // 0.05 + 0.4^2 / 2 = 0.13 > 0.1.
    let (status, refused) = ask(&s, Some(&t.analyst), grouped(0.4)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(error_code(&refused), "dataset_budget_exhausted");
}

// `POST /v1/query` looks its token up in the same hop as the stored answer, after reading the
// body: who asks is still judged before what is asked, and a revoked token stops being served
// its stored answers at once.
#[tokio::test]
async fn the_query_route_judges_the_caller_first_and_revocation_stops_reuse() {
    let s = service(1.0);
    let t = &s.tokens;
    let send_query = |token: Option<String>, body: Vec<u8>| {
        let router = s.router.clone();
        async move {
            let (status, _, bytes) = send(
                &router,
                Method::POST,
                "/v1/query",
                token.as_deref(),
                Some("application/json"),
                body,
            )
            .await;
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (status.as_u16(), error_code(&body).to_string())
        }
    };
    let bad = br#"{"measure":"persons","group_by":["no_such_dimension"]}"#.to_vec();
    let huge = vec![b' '; 3 << 20]; // over axum's 2 MiB default body limit
    for (who, token, expected) in [
        ("no token", None, (401, "unauthenticated")),
        (
            "bad token",
            Some("cts_0000".to_string()),
            (401, "invalid_token"),
        ),
        ("revoked", Some(t.revoked.clone()), (401, "invalid_token")),
        ("ngo", Some(t.ngo.clone()), (403, "forbidden")),
    ] {
        for body in [bad.clone(), huge.clone(), b"not json".to_vec()] {
            let got = send_query(token.clone(), body).await;
            assert_eq!(got, (expected.0, expected.1.to_string()), "{who}");
        }
    }
    let researcher = Some(t.researcher.clone());
    assert_eq!(send_query(researcher.clone(), bad).await.0, 400);
    assert_eq!(send_query(researcher.clone(), huge).await.0, 413);

    // A stored answer is re-served to its principal until the principal is revoked.
    let (status, first) = ask(&s, Some(&t.researcher), grouped(0.1)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (_, again) = ask(&s, Some(&t.researcher), grouped(0.1)).await;
    assert_eq!(again["reused"], true);
    assert_eq!(again["answer"], first["answer"]);
    let uri = format!("/v1/principals/{}", t.researcher_id);
    let (status, _) = call(&s.router, Method::DELETE, &uri, Some(&t.admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, refused) = ask(&s, Some(&t.researcher), grouped(0.1)).await;
    assert_eq!(
        (status, error_code(&refused)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
}

// The upload page's template, filled in as an NGO officer would, goes through with nothing
// rejected; the guide documents every column; the page is served; the batch list tells the page
// the principal's missions and the size limit.
#[tokio::test]
async fn the_template_filled_in_is_committed_and_the_upload_page_is_served() {
    let s = service(1.0);
    let (r, t) = (&s.router, &s.tokens);
    let (status, headers, csv) =
        send(r, Method::GET, "/v1/batches/template", None, None, vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let header = String::from_utf8(csv).unwrap();
    let columns: Vec<&str> = header.trim_end().split(',').collect();
    for c in [
        "local_case_id",
        "first_name",
        "birth_date",
        "registration_month",
        "gender",
    ] {
        assert!(columns.contains(&c), "{c} missing from {header}");
    }
    for c in ["person_key", "record_key", "batch_id", "reporting_mission"] {
        assert!(
            !columns.contains(&c),
            "{c} is set by ctstats, not by the file"
        );
    }
    let value = |c: &str| match c {
        "local_case_id" => "T-1",
        "first_name" => "Template",
        "last_name" => "Person",
        "birth_date" => "1990-05-01",
        "registration_month" => "2005-03-15",
        "gender" => "female",
        "citizenship" => "UKR",
        "shelter_offered" => "yes",
        _ => "",
    };
    let row: Vec<&str> = columns.iter().map(|c| value(c)).collect();
    let file = format!("{header}{}\n", row.join(","));
    let (status, _, body) = send(
        r,
        Method::POST,
        "/v1/batches?mission=UKR&filename=filled.csv",
        Some(&t.ngo),
        Some("application/octet-stream"),
        file.into_bytes(),
    )
    .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["report"]["rows_committed"], 1, "{body}");
    assert_eq!(body["report"]["issues_total"], 0, "{body}");

    let (status, _, guide) = send(
        r,
        Method::GET,
        "/v1/batches/template?format=markdown",
        None,
        None,
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let guide = String::from_utf8(guide).unwrap();
    for c in &columns {
        assert!(
            guide.contains(&format!("| `{c}` |")),
            "{c} is not in the guide"
        );
    }
    let (status, body) = call(
        r,
        Method::GET,
        "/v1/batches/template?format=pdf",
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_parameters")
    );

    let (status, headers, page) = send(r, Method::GET, "/upload", None, None, vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = String::from_utf8(page).unwrap();
    assert!(
        page.contains("v1/batches/template?format=csv") && page.contains("xhr.upload.onprogress")
    );

    let (status, list) = call(r, Method::GET, "/v1/batches", Some(&t.ngo), None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["max_upload_bytes"], 1 << 20);
    assert_eq!(list["takes_uploads"], true);
    assert_eq!(list["missions"], json!(["UKR"]));

    // Without uploads there is no template either.
    let state = AppState::new(
        s.state.config().clone(),
        Ledger::open(&s.dir.path().join("l3.sqlite")).unwrap(),
        None,
    );
    let (status, body) = call(&app(state), Method::GET, "/v1/batches/template", None, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
}
