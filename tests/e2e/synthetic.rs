//! `/v1/synthetic` end to end, through the router: a table is charged once (in rho, before it is
//! computed), re-served free, listed and downloadable by every role as CSV and Parquet, refused
//! over budget with nothing charged, and holds no key column and no value outside the public,
//! generalised domains.

use axum::http::{Method, StatusCode};
use ctstats_query::synthetic::SyntheticRequest;
use serde_json::{Value, json};

use crate::serve::{call, error_code, send, service};

fn request(epsilon: f64) -> Value {
    json!({
        "name": "researchers' table",
        "from": 2003,
        "to": 2008,
        "epsilon": epsilon,
        "delta": 1e-6
    })
}

async fn spent(s: &crate::serve::Service, token: &str) -> f64 {
    let (status, budget) = call(&s.router, Method::GET, "/v1/budget", Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{budget}");
    budget["epsilon_spent"].as_f64().unwrap()
}

#[tokio::test]
async fn a_synthetic_table_is_charged_once_re_served_free_and_stays_in_its_domains() {
    let s = service(10.0);
    let r = &s.router;
    let analyst = s.tokens.analyst.as_str();

    // Preview: what it will charge, nothing charged.
    let (status, preview) = call(
        r,
        Method::POST,
        "/v1/synthetic/preview",
        Some(analyst),
        Some(request(2.0)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["affordable"], json!(true));
    assert_eq!(spent(&s, analyst).await, 0.0);

    let (status, made) = call(
        r,
        Method::POST,
        "/v1/synthetic",
        Some(analyst),
        Some(request(2.0)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(
        made["loss"], preview["loss"],
        "charged what the preview said"
    );
    let rho = made["loss"]["rho"].as_f64().unwrap();
    assert!(rho > 0.0 && made["cost"]["epsilon"].as_f64().unwrap() <= 2.0);
    let after = spent(&s, analyst).await;
    assert!(after > 0.0 && after <= 2.0 + 1e-9, "spent {after}");
    let rows = made["rows"].as_u64().unwrap();
    assert!(rows > 20, "{rows} rows");
    let columns: Vec<String> = made["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(columns.len(), 17);
    assert_eq!(
        made["tree"].as_array().unwrap().len(),
        16,
        "a spanning tree"
    );
    assert!(
        made["guarantee"]
            .as_str()
            .unwrap()
            .contains("for each person")
    );

    // Asked again: the same table, nothing charged.
    let (status, again) = call(
        r,
        Method::POST,
        "/v1/synthetic",
        Some(analyst),
        Some(request(2.0)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, made);
    assert_eq!(spent(&s, analyst).await, after);

    // Every role lists and downloads it, free.
    let id = made["id"].as_i64().unwrap();
    for token in [&s.tokens.ngo, &s.tokens.researcher, &s.tokens.admin] {
        let (status, list) = call(r, Method::GET, "/v1/synthetic", Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        assert_eq!(list["tables"][0], made);
        let (status, info) = call(
            r,
            Method::GET,
            &format!("/v1/synthetic/{id}"),
            Some(token),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(info, made);
    }
    let (status, headers, csv) = send(
        r,
        Method::GET,
        &format!("/v1/synthetic/{id}/records?format=csv"),
        Some(&s.tokens.researcher),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = String::from_utf8(csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), columns.join(","));
    let plan = serde_json::from_value::<SyntheticRequest>(request(2.0))
        .unwrap()
        .plan(&["KGZ".to_string(), "UKR".to_string()])
        .unwrap();
    let mut records = 0;
    for line in lines {
        records += 1;
        let values: Vec<&str> = line.split(',').collect();
        assert_eq!(values.len(), columns.len());
        for (value, column) in values.iter().zip(&plan.columns) {
            assert!(
                column.domain.iter().any(|d| d == value),
                "{}: {value:?} is outside the public domain",
                column.name
            );
        }
    }
    assert_eq!(records, rows);
    for key in ["person_key", "record_key", "batch_id", "submitting_org"] {
        assert!(!columns.iter().any(|c| c == key));
    }
    let (status, headers, parquet) = send(
        r,
        Method::GET,
        &format!("/v1/synthetic/{id}/records"),
        Some(&s.tokens.ngo),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/vnd.apache.parquet");
    assert!(parquet.starts_with(b"PAR1") && parquet.ends_with(b"PAR1"));
    assert_eq!(spent(&s, analyst).await, after);

    // Over budget (epsilon 10 at delta 1e-5; charges compose in rho, so 2 then 9 would fit):
    // refused, nothing charged, nothing stored.
    let (status, refused) = call(
        r,
        Method::POST,
        "/v1/synthetic",
        Some(analyst),
        Some(request(20.0)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(error_code(&refused), "budget_exhausted");
    assert_eq!(spent(&s, analyst).await, after);
    let (_, list) = call(r, Method::GET, "/v1/synthetic", Some(analyst), None).await;
    assert_eq!(list["tables"].as_array().unwrap().len(), 1);

    // Researchers read tables but do not make them.
    let (status, body) = call(
        r,
        Method::POST,
        "/v1/synthetic",
        Some(&s.tokens.researcher),
        Some(request(1.0)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(spent(&s, &s.tokens.researcher).await, 0.0);
}

#[tokio::test]
async fn a_bad_synthetic_request_names_its_field_and_costs_nothing() {
    let s = service(10.0);
    let r = &s.router;
    let analyst = s.tokens.analyst.as_str();
    let mut keyed = request(1.0);
    keyed["columns"] = json!(["person_key", "gender"]);
    let mut one = request(1.0);
    one["columns"] = json!(["gender"]);
    let mut unknown_field = request(1.0);
    unknown_field["rows"] = json!(10);
    for (body, field) in [(keyed, "columns"), (one, "columns"), (unknown_field, "")] {
        let (status, answer) =
            call(r, Method::POST, "/v1/synthetic", Some(analyst), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
    }
    let (status, missing) = call(
        r,
        Method::GET,
        "/v1/synthetic/99/records?format=xlsx",
        Some(analyst),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{missing}");
    let (status, missing) = call(r, Method::GET, "/v1/synthetic/99", Some(analyst), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    assert_eq!(error_code(&missing), "not_found");
    assert_eq!(spent(&s, analyst).await, 0.0);
}
