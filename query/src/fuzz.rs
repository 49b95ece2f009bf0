//! Fuzz target for the query JSON: arbitrary JSON trees built from the spec's own field names
//! and values (so most reach validation, not just the parser), then validation and pricing. Any
//! outcome but a panic is fine; errors must name a field. `PROPTEST_CASES=N` runs N cases (256
//! in `cargo test`); `CTSTATS_FUZZ_SECONDS=600` runs for ten minutes. Deeply nested and very
//! large bodies are refused by the parser.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use crate::answer::CostPlan;
use crate::spec::QuerySpec;

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
    let missions = vec!["KGZ".to_string(), "UKR".to_string()];
    match QuerySpec::from_json(&body.to_string()).and_then(|q| q.validate(&missions)) {
        Err(errors) => prop_assert!(errors.0.iter().all(|e| !e.field.is_empty()), "{errors:?}"),
        Ok(spec) => {
            // Pricing a valid spec either works or says why; it never panics.
            let _ = CostPlan::new(&spec);
        }
    }
    Ok(())
}

/// 256 cases (or `PROPTEST_CASES`) in `cargo test`; with `CTSTATS_FUZZ_SECONDS=600`, fresh
/// batches of 256 until that many seconds have passed.
#[test]
fn fuzz_query_json() {
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
        if let Err(e) = TestRunner::new(config).run(&arb_json(), |body| check(&body)) {
            panic!("fuzz query json: {e}");
        }
        cases += batch;
        if deadline.is_none_or(|d| Instant::now() >= d) {
            break;
        }
    }
    eprintln!(
        "fuzz query json: {cases} cases in {:.0} s, no failure",
        started.elapsed().as_secs_f64()
    );
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
