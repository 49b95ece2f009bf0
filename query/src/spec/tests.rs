use super::*;

fn missions() -> Vec<String> {
    vec!["KGZ".into(), "UKR".into()]
}

fn spec(json: &str) -> Result<ValidatedSpec, SpecErrors> {
    QuerySpec::from_json(json)?.validate(&missions())
}

fn errors(json: &str) -> Vec<String> {
    match spec(json) {
        Ok(s) => panic!("expected errors, got {s:?}"),
        Err(e) => e.0.iter().map(|e| e.field.clone()).collect(),
    }
}

const BASIC: &str = r#"{"measure":"persons","period":{"from":"2003-01","to":"2006-12"},
    "budget":{"epsilon":1.0}}"#;

#[test]
fn minimal_spec_fills_defaults() {
    let s = spec(BASIC).unwrap();
    assert_eq!(s.contribution_bound(), 1);
    assert_eq!(s.list_items_bound(), 2);
    assert_eq!(s.mechanism(), Mechanism::Laplace);
    assert_eq!(s.keys(), KeysMode::Public);
    assert_eq!(
        s.canonical_json(),
        r#"{"measure":"persons","group_by":[],"filters":{},"period":{"from":"2003-01","to":"2006-12"},"contribution_bound":1,"list_items_bound":2,"mechanism":"laplace","budget":{"epsilon":1.0},"keys":"public"}"#
    );
}

#[test]
fn unknown_fields_are_refused() {
    let e = QuerySpec::from_json(
        r#"{"measure":"persons","period":{"from":"2003-01","to":"2003-02"},"epsilon":1}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown field `epsilon`"), "{e}");
    let e =
        QuerySpec::from_json(r#"{"measure":"count","period":{"from":"2003-01","to":"2003-02"}}"#)
            .unwrap_err();
    assert!(e.to_string().contains("persons"), "{e}");
}

#[test]
fn same_query_spelled_differently_hashes_the_same() {
    let a = spec(
        r#"{"measure":"histogram","column":"months_to_closure","bounds":{"lower":0,"upper":9},
        "bins":3,"group_by":["gender","mission"],
        "filters":{"gender":["male","female","male"],"mission":["UKR"]},
        "period":{"from":"2003-01","to":"2006-12"},"budget":{"epsilon":0.5}}"#,
    )
    .unwrap();
    let b = spec(
        r#"{"keys":"public","mechanism":"laplace","contribution_bound":1,
        "measure":"histogram","column":"months_to_closure","bounds":{"lower":0,"upper":9},
        "bins":[0,3,6],"group_by":["mission","gender"],
        "filters":{"mission":["UKR"],"gender":["female","male"]},
        "period":{"from":"2003-01","to":"2006-12"},"budget":{"epsilon":0.5}}"#,
    )
    .unwrap();
    assert_eq!(a.canonical_json(), b.canonical_json());
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.hash().len(), 64);
    assert_eq!(
        a.group_by(),
        &[
            Dimension::Mission,
            Dimension::Code {
                field: "gender",
                list: "gender"
            }
        ]
    );
    assert_eq!(
        a.bins(),
        &[
            Bin { lower: 0, upper: 2 },
            Bin { lower: 3, upper: 5 },
            Bin { lower: 6, upper: 9 }
        ]
    );
    let c = spec(&BASIC.replace("1.0", "0.9")).unwrap();
    assert_ne!(c.hash(), spec(BASIC).unwrap().hash());
}

#[test]
fn canonical_form_validates_to_itself() {
    let s = spec(
        r#"{"measure":"quantile","column":"assistance_type_count","bounds":{"lower":0,"upper":12},
        "quantiles":[0.9,0.5,0.5],"group_by":["exploitation_type"],"list_items_bound":3,
        "period":{"from":"2003-01","to":"2006-12"},"mechanism":"gaussian",
        "accuracy":{"half_width_95":5,"delta":1e-7}}"#,
    )
    .unwrap();
    assert_eq!(s.quantiles(), &[0.5, 0.9]);
    assert_eq!(s.bins().len(), 13);
    assert_eq!(s.cells_per_record(), 3);
    let again = spec(s.canonical_json()).unwrap();
    assert_eq!(again, s);
}

#[test]
fn list_items_bound_without_exploitation_type_is_canonically_the_default() {
    let a = spec(&BASIC.replace("}}", "},\"list_items_bound\":5}")).unwrap();
    assert_eq!(a.hash(), spec(BASIC).unwrap().hash());
}

#[test]
fn errors_name_the_field() {
    assert_eq!(
        errors(
            r#"{"measure":"sum","period":{"from":"2003-13","to":"2003-01"},"group_by":["name"],
            "filters":{"gender":["woman"]},"contribution_bound":21}"#
        ),
        vec![
            "period.from",
            "column",
            "bounds",
            "group_by",
            "contribution_bound",
            "budget"
        ]
    );
    assert_eq!(
        errors(
            r#"{"measure":"cases","column":"shelter_accepted","period":{"from":"2003-01","to":"2003-12"},
            "filters":{"gender":["woman"],"registration_year":["2004"],"mission":["MDA"]},
            "budget":{"epsilon":1,"delta":1e-6},"mechanism":"laplace"}"#
        ),
        vec![
            "column",
            "filters.gender",
            "filters.mission",
            "filters.registration_year",
            "budget.delta"
        ]
    );
    let e = spec(
        r#"{"measure":"cases","period":{"from":"2003-01","to":"2003-12"},
        "filters":{"gender":["woman"]},"budget":{"epsilon":1}}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("female, male"), "{e}");
}

#[test]
fn bounds_at_the_ends_of_i64_are_refused_not_wrapped() {
    // Found by Schemathesis: `i64::MIN.abs()` panicked the handler.
    for (lower, upper) in [
        (i64::MIN, 0),
        (0, i64::MIN),
        (i64::MIN, i64::MAX),
        (-1, i64::MAX),
    ] {
        let json = format!(
            r#"{{"measure":"sum","column":"months_to_closure","bounds":{{"lower":{lower},"upper":{upper}}},
            "period":{{"from":"2003-01","to":"2003-12"}},"budget":{{"epsilon":1}}}}"#
        );
        assert_eq!(errors(&json), vec!["bounds"], "{lower} {upper}");
    }
}

#[test]
fn value_measures_need_column_bounds_and_bins() {
    assert_eq!(
        errors(
            r#"{"measure":"histogram","column":"age","bounds":{"lower":5,"upper":5},
            "period":{"from":"2003-01","to":"2003-12"},"budget":{"epsilon":1}}"#
        ),
        vec!["column", "bounds"]
    );
    assert_eq!(
        errors(
            r#"{"measure":"histogram","column":"shelter_accepted","bounds":{"lower":0,"upper":1},
            "period":{"from":"2003-01","to":"2003-12"},"budget":{"epsilon":1}}"#
        ),
        vec!["bins"]
    );
    assert_eq!(
        errors(
            r#"{"measure":"histogram","column":"shelter_accepted","bounds":{"lower":0,"upper":1},
            "bins":3,"period":{"from":"2003-01","to":"2003-12"},"budget":{"epsilon":1}}"#
        ),
        vec!["bins"]
    );
    assert_eq!(
        errors(
            r#"{"measure":"histogram","column":"months_to_closure","bounds":{"lower":0,"upper":10},
            "bins":[1,5],"period":{"from":"2003-01","to":"2003-12"},"budget":{"epsilon":1}}"#
        ),
        vec!["bins"]
    );
    assert_eq!(
        errors(
            r#"{"measure":"mean","column":"months_to_closure","bounds":{"lower":0,"upper":10},
            "quantiles":[0.5],"period":{"from":"2003-01","to":"2003-12"},"budget":{"epsilon":1}}"#
        ),
        vec!["quantiles"]
    );
}

#[test]
fn threshold_is_required_for_large_domains_and_needs_delta() {
    let big = r#"{"measure":"persons","group_by":["citizenship","country_of_exploitation"],
        "period":{"from":"2003-01","to":"2006-12"},"budget":{"epsilon":1}}"#;
    assert_eq!(errors(big), vec!["keys"]);
    assert_eq!(
        errors(&big.replace("\"budget\"", "\"keys\":\"threshold\",\"budget\"")),
        vec!["budget.delta"]
    );
    let ok = big.replace(
        "\"budget\":{\"epsilon\":1}",
        "\"keys\":\"threshold\",\"budget\":{\"epsilon\":1,\"delta\":1e-6}",
    );
    assert!(spec(&ok).is_ok());
    // Filtering the dimension narrows the released domain.
    let narrowed = big.replace(
        "\"budget\"",
        "\"filters\":{\"citizenship\":[\"KGZ\",\"UKR\",\"unknown\"]},\"budget\"",
    );
    let s = spec(&narrowed).unwrap();
    assert_eq!(s.public_cells(&missions()), 3 * 251);
}

#[test]
fn threshold_keys_need_a_count_and_laplace() {
    let base = r#"{"measure":"persons","group_by":["citizenship"],"keys":"threshold",
        "period":{"from":"2003-01","to":"2006-12"},"budget":{"epsilon":1,"delta":1e-6}}"#;
    assert!(spec(base).is_ok());
    let sum = base.replace(
        "\"persons\"",
        "\"sum\",\"column\":\"months_to_closure\",\"bounds\":{\"lower\":0,\"upper\":12}",
    );
    assert_eq!(errors(&sum), vec!["keys"]);
    let gaussian = base.replace("\"keys\"", "\"mechanism\":\"gaussian\",\"keys\"");
    assert_eq!(errors(&gaussian), vec!["mechanism"]);
}

#[test]
fn domains_end_with_unknown() {
    let p = Period {
        from: Month::parse("2004-11").unwrap(),
        to: Month::parse("2005-02").unwrap(),
    };
    assert_eq!(
        Dimension::RegistrationQuarter.domain(&[], p),
        ["2004-Q4", "2005-Q1", "unknown"]
    );
    assert_eq!(
        Dimension::RegistrationMonth.domain(&[], p),
        ["2004-11", "2004-12", "2005-01", "2005-02", "unknown"]
    );
    assert_eq!(
        Dimension::Mission.domain(&["UKR".into(), "KGZ".into(), "UKR".into()], p),
        ["KGZ", "UKR", "unknown"]
    );
    let flag = Dimension::from_name("shelter_accepted").unwrap();
    assert_eq!(flag.domain(&[], p), ["yes", "no", "unknown"]);
    let country = Dimension::from_name("citizenship").unwrap();
    assert_eq!(country.domain(&[], p).len(), 251);
    assert!(Dimension::from_name("person_link_quality").is_none());
    assert!(Dimension::from_name("exploitation_type").is_some());
}

#[test]
fn period_is_bounded() {
    assert_eq!(
        errors(
            r#"{"measure":"cases","period":{"from":"1990-01","to":"2020-01"},"budget":{"epsilon":1}}"#
        ),
        vec!["period"]
    );
    assert!(
        spec(r#"{"measure":"cases","period":{"from":"1990-01","to":"2019-12"},"budget":{"epsilon":1}}"#)
            .is_ok()
    );
}

#[test]
fn the_mechanism_defaults_to_the_gaussian_when_a_delta_or_rho_is_given() {
    let with = |privacy: &str, extra: &str| {
        spec(&format!(
            r#"{{"measure":"persons","period":{{"from":"2003-01","to":"2006-12"}},{privacy}{extra}}}"#
        ))
    };
    let mechanism = |privacy: &str, extra: &str| with(privacy, extra).unwrap().mechanism();
    assert_eq!(
        mechanism(r#""budget":{"epsilon":1}"#, ""),
        Mechanism::Laplace
    );
    assert_eq!(
        mechanism(r#""budget":{"epsilon":1,"delta":1e-6}"#, ""),
        Mechanism::Gaussian
    );
    assert_eq!(
        mechanism(r#""budget":{"rho":0.01,"delta":1e-6}"#, ""),
        Mechanism::Gaussian
    );
    assert_eq!(
        mechanism(r#""accuracy":{"half_width_95":9,"delta":1e-6}"#, ""),
        Mechanism::Gaussian
    );
    assert_eq!(
        mechanism(r#""accuracy":{"half_width_95":9}"#, ""),
        Mechanism::Laplace
    );
    // Threshold keys take discrete Laplace whatever the delta.
    assert_eq!(
        mechanism(
            r#""budget":{"epsilon":1,"delta":1e-6}"#,
            r#","keys":"threshold","group_by":["mission"]"#
        ),
        Mechanism::Laplace
    );
    // The resolved mechanism is in the canonical form: asking for it explicitly is the same
    // query (same hash, so a stored answer is served again).
    let implicit = with(r#""budget":{"epsilon":1,"delta":1e-6}"#, "").unwrap();
    let explicit = with(
        r#""budget":{"epsilon":1,"delta":1e-6}"#,
        r#","mechanism":"gaussian""#,
    )
    .unwrap();
    assert_eq!(implicit.hash(), explicit.hash());
    assert!(
        implicit
            .canonical_json()
            .contains(r#""mechanism":"gaussian""#)
    );
    let rho = with(r#""budget":{"rho":0.01,"delta":1e-6}"#, "").unwrap();
    assert!(
        rho.canonical_json()
            .contains(r#""budget":{"delta":1e-6,"rho":0.01}"#),
        "{}",
        rho.canonical_json()
    );
    assert_eq!(spec(rho.canonical_json()).unwrap(), rho);
}

#[test]
fn a_rho_budget_needs_the_gaussian_public_keys_and_a_delta() {
    let p =
        r#""measure":"persons","group_by":["mission"],"period":{"from":"2003-01","to":"2006-12"}"#;
    let cases = [
        (
            r#""budget":{"rho":0.01}"#,
            "budget.delta",
            "a delta is required",
        ),
        (
            r#""budget":{"rho":0.01,"epsilon":1,"delta":1e-6}"#,
            "budget",
            "not both",
        ),
        (r#""budget":{"delta":1e-6}"#, "budget", "give `epsilon`"),
        (
            r#""budget":{"rho":0.01,"delta":1e-6},"mechanism":"laplace""#,
            "budget.rho",
            "spent by the gaussian mechanism",
        ),
        (
            r#""budget":{"rho":0.01,"delta":1e-6},"keys":"threshold""#,
            "budget.rho",
            "threshold keys are spent as (epsilon, delta)",
        ),
        (
            r#""budget":{"rho":-1,"delta":1e-6}"#,
            "budget.rho",
            "positive",
        ),
    ];
    for (privacy, field, message) in cases {
        let e = spec(&format!("{{{p},{privacy}}}")).unwrap_err();
        assert!(
            e.0.iter()
                .any(|e| e.field == field && e.message.contains(message)),
            "{privacy}: {e:?}"
        );
    }
}

#[test]
fn an_auto_bound_needs_a_count_public_keys_and_a_budget() {
    let p = r#""period":{"from":"2003-01","to":"2006-12"},"contribution_bound":"auto""#;
    assert!(
        spec(&format!(
            r#"{{"measure":"persons",{p},"budget":{{"epsilon":1}}}}"#
        ))
        .unwrap()
        .auto_bound()
    );
    for body in [
        r#""measure":"mean","column":"months_to_closure","bounds":{"lower":0,"upper":24},"budget":{"epsilon":1}"#,
        r#""measure":"persons","accuracy":{"half_width_95":5}"#,
        r#""measure":"persons","group_by":["mission"],"keys":"threshold","budget":{"epsilon":1,"delta":1e-6}"#,
    ] {
        let e = spec(&format!("{{{p},{body}}}")).unwrap_err();
        assert!(
            e.0.iter().any(|e| e.field == "contribution_bound"),
            "{body}: {e:?}"
        );
    }
    assert!(
        spec(
            r#"{"measure":"persons","period":{"from":"2003-01","to":"2006-12"},
            "contribution_bound":"some","budget":{"epsilon":1}}"#
        )
        .is_err()
    );
}
