//! Fuzz targets for the query JSON and its SQL twin. JSON: arbitrary JSON trees built from the
//! spec's own field names and values (so most reach validation, not just the parser), then
//! validation and pricing; errors must name a field. SQL: statements of the dialect's own words
//! (and valid statements with words replaced, and arbitrary text), then compilation, validation
//! and pricing; refusals must name a construct and a position inside the statement. Any outcome
//! but a panic is fine. `PROPTEST_CASES=N` runs N cases (256
//! in `cargo test`); `CTSTATS_FUZZ_SECONDS=600` runs for ten minutes. Deeply nested and very
//! large bodies are refused by the parser.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use crate::answer::CostPlan;
use crate::spec::{QuerySpec, SpecErrors};
use crate::sql;

const KEYS: &[&str] = &[
    "measure",
    "column",
    "bounds",
    "lower",
    "upper",
    "bins",
    "quantiles",
    "group_by",
    "filters",
    "period",
    "from",
    "to",
    "budget",
    "epsilon",
    "delta",
    "accuracy",
    "half_width_95",
    "contribution_bound",
    "list_items_bound",
    "keys",
    "mechanism",
    "mission",
    "gender",
    "exploitation_type",
    "registration_year",
    "citizenship",
];

const WORDS: &[&str] = &[
    "persons",
    "cases",
    "sum",
    "mean",
    "quantile",
    "histogram",
    "mission",
    "gender",
    "exploitation_type",
    "registration_year",
    "citizenship",
    "country_of_exploitation",
    "months_to_closure",
    "age",
    "shelter_accepted",
    "laplace",
    "gaussian",
    "public",
    "threshold",
    "KGZ",
    "unknown",
    "female",
    "2003-01",
    "2006-12",
    "1900-01",
    "2100-12",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let number = any::<f64>()
        .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number));
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-3i64..30).prop_map(Value::from),
        number,
        prop::sample::select(WORDS).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 96, 10, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..10).prop_map(|map| {
                Value::Object(map.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// Validation and pricing of one body: any outcome but a panic; errors name a field.
fn check(body: &Value) -> Result<(), TestCaseError> {
    check_spec(QuerySpec::from_json(&body.to_string()))
}

/// Validation and pricing of a parsed query, whichever front end it came from.
fn check_spec(spec: Result<QuerySpec, SpecErrors>) -> Result<(), TestCaseError> {
    let missions = vec!["KGZ".to_string(), "UKR".to_string()];
    match spec.and_then(|q| q.validate(&missions)) {
        Err(errors) => prop_assert!(errors.0.iter().all(|e| !e.field.is_empty()), "{errors:?}"),
        Ok(spec) => {
            // Pricing a valid spec either works or says why; it never panics.
            let _ = CostPlan::new(&spec);
        }
    }
    Ok(())
}

/// Run `check` on cases of `strategy`: 256 (or `PROPTEST_CASES`) in `cargo test`; with
/// `CTSTATS_FUZZ_SECONDS=600`, fresh batches of 256 until that many seconds have passed. Returns
/// the number of cases run; panics on the first failure.
fn fuzz<S: Strategy>(
    name: &str,
    strategy: &S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> u64 {
    let deadline = std::env::var("CTSTATS_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(|s| Instant::now() + Duration::from_secs(s));
    let started = Instant::now();
    let mut cases = 0u64;
    loop {
        let config = Config {
            failure_persistence: None,
            ..Config::default()
        };
        let batch = u64::from(config.cases);
        if let Err(e) = TestRunner::new(config).run(strategy, &check) {
            panic!("{name}: {e}");
        }
        cases += batch;
        if deadline.is_none_or(|d| Instant::now() >= d) {
            break;
        }
    }
    eprintln!(
        "{name}: {cases} cases in {:.0} s, no failure",
        started.elapsed().as_secs_f64()
    );
    cases
}

#[test]
fn fuzz_query_json() {
    fuzz("fuzz query json", &arb_json(), |body| check(&body));
}

/// The words of the dialect, and some it refuses.
const SQL_WORDS: &[&str] = &[
    "SELECT",
    "WITH",
    "DIFFERENTIAL_PRIVACY",
    "OPTIONS",
    "(",
    ")",
    ",",
    "=",
    "epsilon",
    "delta",
    "rho",
    "half_width_95",
    "max_records_per_person",
    "mechanism",
    "keys",
    "'gaussian'",
    "'auto'",
    "'threshold'",
    "1",
    "0.5",
    "-1",
    "1e-6",
    "0",
    "23",
    "2005",
    "'2005-03'",
    "'KGZ'",
    "mission",
    "registration_year",
    "registration_month",
    "registration_quarter",
    "'2005-Q2'",
    "gender",
    "'female'",
    "months_to_closure",
    "shelter_accepted",
    "person",
    "person_key",
    "record_key",
    "COUNT",
    "DISTINCT",
    "*",
    "SUM",
    "AVG",
    "PERCENTILE_CONT",
    "WITHIN",
    "GROUP",
    "ORDER",
    "BY",
    "CLAMP",
    "WIDTH_BUCKET",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "<",
    ">=",
    ">",
    "FROM",
    "cases",
    "c",
    "c.mission",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS",
    "NULL",
    "BETWEEN",
    "HAVING",
    "JOIN",
    "ON",
    "UNION",
    "OVER",
    "PARTITION",
    "LIMIT",
    "OFFSET",
    "DESC",
    "AS",
    ";",
    "MIN",
    "MAX",
    "TRUE",
    "'",
    "\"",
];

const SQL_SEED: &str = "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS ( epsilon = 0.5 , \
    max_records_per_person = 2 ) mission , registration_year , COUNT ( DISTINCT person ) AS \
    persons FROM cases WHERE registration_year BETWEEN 2003 AND 2008 AND gender = 'female' \
    GROUP BY mission , registration_year ORDER BY persons DESC LIMIT 3";

fn arb_sql() -> impl Strategy<Value = String> {
    let words = prop::collection::vec(prop::sample::select(SQL_WORDS), 0..48);
    let seed: Vec<&'static str> = SQL_SEED.split(' ').collect();
    let n = seed.len();
    prop_oneof![
        // Words of the dialect, after a valid head or not.
        (any::<bool>(), words).prop_map(|(head, w)| {
            let body = w.join(" ");
            if head {
                format!("SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1) {body}")
            } else {
                body
            }
        }),
        // A valid statement with a few words replaced or dropped.
        prop::collection::vec(
            (0..n, prop::option::of(prop::sample::select(SQL_WORDS))),
            1..4
        )
        .prop_map(move |edits| {
            let mut s: Vec<&str> = seed.clone();
            for (at, word) in edits {
                s[at] = word.unwrap_or("");
            }
            s.join(" ")
        }),
        // A valid statement with words replaced by words of their kind: most still compile.
        prop::collection::vec((0..n, any::<prop::sample::Index>()), 0..4).prop_map(move |edits| {
            let mut s: Vec<&str> = SQL_SEED.split(' ').collect();
            for (at, pick) in edits {
                let kind: &[&str] = if s[at].starts_with('\'') {
                    &[
                        "'female'",
                        "'male'",
                        "'unknown'",
                        "'KGZ'",
                        "'2005-03'",
                        "'x'",
                    ]
                } else if s[at].parse::<f64>().is_ok() {
                    &[
                        "0", "1", "2", "0.25", "2003", "2005", "2008", "2100", "1e-6", "20",
                    ]
                } else if s[at].chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    &[
                        "mission",
                        "gender",
                        "registration_year",
                        "registration_quarter",
                        "citizenship",
                        "age_band",
                        "shelter_accepted",
                        "months_to_closure",
                        "exploitation_type",
                        "person_key",
                        "persons",
                        "epsilon",
                        "rho",
                        "delta",
                    ]
                } else {
                    &["AND", "OR", "ASC", "DESC", ",", "BETWEEN", "=", ">="]
                };
                s[at] = *pick.get(kind);
            }
            s.join(" ")
        }),
        "\\PC{0,80}",
    ]
}

/// Compilation, validation and pricing of one statement: any outcome but a panic; refusals name
/// a construct and a position inside the statement.
fn check_sql(statement: &str) -> Result<(), TestCaseError> {
    match sql::compile(statement) {
        Err(e) => {
            prop_assert!(!e.construct.is_empty() && !e.message.is_empty(), "{e:?}");
            let lines = statement.lines().count().max(1) as u64;
            prop_assert!(e.line >= 1 && e.line <= lines + 1, "{e} in {statement:?}");
            prop_assert!(e.column >= 1, "{e}");
            Ok(())
        }
        Ok(q) => check_spec(Ok(q.spec)),
    }
}

/// As [`fuzz_query_json`]; says how many of the statements compiled.
#[test]
fn fuzz_query_sql() {
    let compiled = std::sync::atomic::AtomicU64::new(0);
    let cases = fuzz("fuzz query sql", &arb_sql(), |s| {
        if sql::compile(&s).is_ok() {
            compiled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        check_sql(&s)
    });
    eprintln!(
        "fuzz query sql: {} of {cases} compiled",
        compiled.into_inner()
    );
}

#[test]
fn deep_and_long_statements_are_refused() {
    let deep = format!(
        "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1) mission, COUNT(*) FROM cases \
         WHERE {}registration_year = 2005{} GROUP BY mission",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    assert!(sql::compile(&deep).is_err());
    let long = format!(
        "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1) mission, COUNT(*) FROM cases \
         WHERE registration_year = 2005 AND gender IN ({}'female') GROUP BY mission",
        "'female', ".repeat(20_000)
    );
    let e = sql::compile(&long).unwrap_err();
    assert_eq!(e.construct, "statement", "{e}");
}

#[test]
fn deep_and_wide_bodies_are_refused_by_the_parser() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(QuerySpec::from_json(&deep).is_err());
    let deep_object = format!("{}1{}", "{\"measure\":".repeat(10_000), "}".repeat(10_000));
    assert!(QuerySpec::from_json(&deep_object).is_err());
    let wide = format!(
        "{{\"measure\":\"persons\",\"group_by\":[{}\"mission\"],\"period\":{{\"from\":\"2003-01\",\"to\":\"2003-12\"}},\"budget\":{{\"epsilon\":1}}}}",
        "\"gender\",".repeat(200_000)
    );
    let missions = vec!["KGZ".to_string()];
    assert!(
        QuerySpec::from_json(&wide)
            .and_then(|q| q.validate(&missions))
            .is_err()
    );
}
