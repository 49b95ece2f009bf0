//! `POST /v1/sql` and `POST /v1/sql/preview` end to end, through the router: a statement is the
//! same question as its JSON twin (one hash, one charge, re-served free whichever front end asks),
//! ORDER BY and LIMIT work on released cells, and refusals name the construct and where it is.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::serve::{DATASET, call, error_code, grouped, grouped_sql, send, service};

fn sql(statement: &str) -> Value {
    json!({ "sql": statement })
}

fn cells(body: &Value) -> Vec<Value> {
    body["answer"]["cells"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_statement_is_its_json_twin_charged_once_and_re_served_free() {
    let s = service(10.0);
    let (r, analyst) = (&s.router, Some(s.tokens.analyst.as_str()));

    // JSON first: charged.
    let (status, json_answer) =
        call(r, Method::POST, "/v1/query", analyst, Some(grouped(0.5))).await;
    assert_eq!(status, StatusCode::OK, "{json_answer}");
    assert!(json_answer["charged"]["epsilon"].as_f64().unwrap() > 0.0);
    let hash = json_answer["query_hash"].clone();
    let (_, before) = call(r, Method::GET, "/v1/budget", analyst, None).await;

    // The same question in SQL: the same hash, the stored answer, nothing charged.
    let (status, preview) = call(
        r,
        Method::POST,
        "/v1/sql/preview",
        analyst,
        Some(grouped_sql(0.5)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["query_hash"], hash);
    assert_eq!(preview["cost"], json_answer["charged"]);
    let (status, sql_answer) =
        call(r, Method::POST, "/v1/sql", analyst, Some(grouped_sql(0.5))).await;
    assert_eq!(status, StatusCode::OK, "{sql_answer}");
    assert_eq!(sql_answer["query_hash"], hash);
    assert_eq!(sql_answer["reused"], json!(true));
    assert_eq!(sql_answer["charged"]["epsilon"], json!(0.0));
    assert_eq!(sql_answer["query"], json_answer["query"]);
    assert_eq!(sql_answer["answer"], json_answer["answer"]);
    let (_, after) = call(r, Method::GET, "/v1/budget", analyst, None).await;
    assert_eq!(before["epsilon_spent"], after["epsilon_spent"]);

    // ORDER BY and LIMIT: the released cells, sorted and cut, still free.
    let ordered = grouped_sql(0.5)["sql"].as_str().unwrap().to_string()
        + " ORDER BY persons DESC, mission LIMIT 3";
    let (status, top) = call(r, Method::POST, "/v1/sql", analyst, Some(sql(&ordered))).await;
    assert_eq!(status, StatusCode::OK, "{top}");
    assert_eq!(top["query_hash"], hash);
    assert_eq!(top["reused"], json!(true));
    let released = cells(&json_answer);
    let shown = cells(&top);
    assert_eq!(shown.len(), 3);
    let mut estimates: Vec<f64> = released
        .iter()
        .map(|c| c["estimate"].as_f64().unwrap())
        .collect();
    estimates.sort_by(|a, b| b.partial_cmp(a).unwrap());
    for (cell, expected) in shown.iter().zip(&estimates) {
        assert!(released.contains(cell), "{cell} was not released");
        assert_eq!(cell["estimate"].as_f64().unwrap(), *expected);
    }
    let notes = top["answer"]["notes"].as_array().unwrap();
    let shown_note = format!("3 of {} cells shown", released.len());
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().unwrap().contains(&shown_note)),
        "{notes:?}"
    );

    // CSV, as for /v1/query.
    let (status, headers, body) = send(
        r,
        Method::POST,
        "/v1/sql?format=csv",
        analyst,
        Some("application/json"),
        sql(&ordered).to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-ctstats-reused"], "true");
    let text = String::from_utf8(body).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("mission,registration_year,estimate,lower,upper")
    );
    assert_eq!(lines.count(), 3);

    // Another caller asking the same pays for its own answer.
    let researcher = Some(s.tokens.researcher.as_str());
    let (status, own) = call(
        r,
        Method::POST,
        "/v1/sql",
        researcher,
        Some(grouped_sql(0.5)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{own}");
    assert_eq!(own["reused"], json!(false));
    assert!(own["charged"]["epsilon"].as_f64().unwrap() > 0.0);
    let charges = s
        .state
        .ledger()
        .charges(&s.tokens.researcher_id, DATASET)
        .unwrap();
    assert_eq!(charges.len(), 1);
}

#[tokio::test]
async fn a_refused_statement_names_its_construct_and_position_and_costs_nothing() {
    let s = service(10.0);
    let (r, analyst) = (&s.router, Some(s.tokens.analyst.as_str()));
    let (_, before) = call(r, Method::GET, "/v1/budget", analyst, None).await;

    let join = "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1) mission, COUNT(*)\n\
                FROM cases JOIN persons ON cases.person_key = persons.person_key GROUP BY mission";
    for path in ["/v1/sql", "/v1/sql/preview"] {
        let (status, body) = call(r, Method::POST, path, analyst, Some(sql(join))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(&body), "invalid_sql");
        let detail = &body["error"]["details"]["sql"];
        assert_eq!(detail["construct"], "JOIN");
        assert_eq!(
            (detail["line"].as_u64(), detail["column"].as_u64()),
            (Some(2), Some(17))
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("line 2, column 17: JOIN: "),
            "{message}"
        );
    }

    // A statement that compiles but asks outside the domains: the query's own refusal.
    let outside = "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1) mission, COUNT(*) \
                   FROM cases WHERE registration_year = 2005 AND mission = 'XXX' GROUP BY mission";
    let (status, body) = call(r, Method::POST, "/v1/sql", analyst, Some(sql(outside))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "invalid_query");
    assert_eq!(
        body["error"]["details"]["errors"][0]["field"],
        "filters.mission"
    );

    // Bodies that are not a statement.
    for bad in [
        json!({"statement": "SELECT 1"}),
        json!({"sql": 1}),
        json!([]),
    ] {
        let (status, body) = call(r, Method::POST, "/v1/sql", analyst, Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(&body), "invalid_json");
    }

    // Who asks is judged before the statement: no token, then a role without queries.
    let (status, body) = call(r, Method::POST, "/v1/sql", None, Some(sql(join))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let ngo = Some(s.tokens.ngo.as_str());
    let (status, body) = call(r, Method::POST, "/v1/sql", ngo, Some(sql(join))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "forbidden");

    let (_, after) = call(r, Method::GET, "/v1/budget", analyst, None).await;
    assert_eq!(before["epsilon_spent"], after["epsilon_spent"]);
}
