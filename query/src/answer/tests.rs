use super::*;
use crate::plan::Component;
use crate::spec::QuerySpec;

fn missions() -> Vec<String> {
    vec!["KGZ".into(), "UKR".into()]
}

fn spec(json: &str) -> ValidatedSpec {
    QuerySpec::from_json(json)
        .unwrap()
        .validate(&missions())
        .unwrap()
}

/// Exact aggregates over the public cells of `spec`, with `values[i]` per component.
fn aggregates(spec: &ValidatedSpec, cells: Vec<Vec<String>>, values: Vec<Vec<i64>>) -> Aggregates {
    let mut dimensions: Vec<String> = spec
        .group_by()
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    if !spec.bins().is_empty() {
        dimensions.push("bin".into());
    }
    Aggregates {
        dimensions,
        cells,
        bins: spec.bins().to_vec(),
        components: contributions(spec)
            .into_iter()
            .zip(values)
            .map(|((name, contribution), values)| Component {
                name: name.into(),
                values,
                contribution,
            })
            .collect(),
        keys: spec.keys(),
        generation: 1,
    }
}

const PERIOD: &str = r#""period":{"from":"2004-01","to":"2004-12"}"#;

#[test]
fn a_mean_splits_its_budget_over_two_parts_and_never_exceeds_it() {
    let s = spec(&format!(
        r#"{{"measure":"mean","column":"months_to_closure","bounds":{{"lower":0,"upper":24}},
        {PERIOD},"budget":{{"epsilon":1.0}}}}"#
    ));
    let plan = CostPlan::new(&s).unwrap();
    assert_eq!(plan.parts.len(), 2);
    assert_eq!(
        plan.parts
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["sum", "count"]
    );
    for p in &plan.parts {
        assert!(p.cost.epsilon <= 0.5 && p.cost.epsilon > 0.49, "{p:?}");
    }
    assert!(plan.total.epsilon <= 1.0);
    assert_eq!(plan.total.delta, 0.0);
    // The plan is deterministic: the ledger can be charged before the release.
    assert_eq!(plan, CostPlan::new(&s).unwrap());
}

#[test]
fn budgets_typed_as_decimals_are_spent_to_the_last_unit() {
    // 0.1 is not a binary fraction; ten Laplace queries at epsilon 0.1 (one part, then two)
    // still fit in 1.0, and an eleventh does not.
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger::Ledger::open(&dir.path().join("l.sqlite")).unwrap();
    for (i, query) in [
        r#""measure":"persons","group_by":["mission"],"budget":{"epsilon":0.1}"#,
        r#""measure":"mean","column":"months_to_closure","bounds":{"lower":0,"upper":24},
           "budget":{"epsilon":0.1}"#,
    ]
    .iter()
    .enumerate()
    {
        let (p, _) = ledger
            .add_principal(&format!("p{i}"), ledger::Role::Researcher, None)
            .unwrap();
        ledger.set_budget(&p.id, "ds", 1.0, 1e-6).unwrap();
        let plan = CostPlan::new(&spec(&format!("{{{query},{PERIOD}}}"))).unwrap();
        assert_eq!(plan.loss, Loss::approx(plan.total));
        for q in 0..10 {
            let charge = ledger.charge(&p.id, "ds", &format!("q{q}"), plan.loss);
            assert!(
                matches!(charge, Ok(ledger::Charge::Charged { .. })),
                "{query}: query {q} refused: {charge:?} {plan:?}"
            );
        }
        let charge = ledger.charge(&p.id, "ds", "q10", plan.loss).unwrap();
        assert!(matches!(charge, ledger::Charge::Refused { .. }), "{query}");
    }
}

#[test]
fn gaussian_queries_are_charged_in_rho_and_compose_far_below_their_epsilon_sum() {
    // With a delta the default is the discrete Gaussian, priced in rho: the rho whose
    // conversion at the query's delta is within its epsilon.
    let s = spec(&format!(
        r#"{{"measure":"persons","group_by":["mission"],{PERIOD},"budget":{{"epsilon":0.1,"delta":1e-7}}}}"#
    ));
    assert_eq!(s.mechanism(), spec::Mechanism::Gaussian);
    let plan = CostPlan::new(&s).unwrap();
    let rho = dp::rho_for(0.1, 1e-7).unwrap();
    assert_eq!((plan.loss.epsilon, plan.loss.delta), (0.0, 0.0), "{plan:?}");
    assert!(
        plan.loss.rho <= rho && plan.loss.rho > 0.999 * rho,
        "{plan:?}"
    );
    assert!(
        plan.total.epsilon <= 0.1 && plan.total.epsilon > 0.099,
        "{plan:?}"
    );
    assert_eq!(plan.total.delta, 1e-7);
    // The total is the part's rho rounded up to ledger units.
    assert!(plan.parts[0].loss.rho <= plan.loss.rho && plan.loss.rho <= rho);
    assert_eq!(plan, CostPlan::new(&s).unwrap());

    // Ten such queries would be epsilon 1 added one by one; in rho, composed and converted
    // once at the budget's delta, about a hundred fit in (1, 1e-6).
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger::Ledger::open(&dir.path().join("l.sqlite")).unwrap();
    let (p, _) = ledger
        .add_principal("g", ledger::Role::Researcher, None)
        .unwrap();
    ledger.set_budget(&p.id, "ds", 1.0, 1e-6).unwrap();
    let mut fitted = 0;
    while fitted < 1000 {
        match ledger
            .charge(&p.id, "ds", &format!("q{fitted}"), plan.loss)
            .unwrap()
        {
            ledger::Charge::Charged { .. } => fitted += 1,
            _ => break,
        }
    }
    eprintln!("{fitted} Gaussian queries at (0.1, 1e-7) fitted in (1, 1e-6)");
    assert!(
        (60..400).contains(&fitted),
        "{fitted} Gaussian queries fitted"
    );
}

#[test]
fn a_rho_budget_or_an_accuracy_target_prices_the_gaussian_in_rho() {
    let rho = spec(&format!(
        r#"{{"measure":"mean","column":"months_to_closure","bounds":{{"lower":0,"upper":24}},
        {PERIOD},"budget":{{"rho":0.01,"delta":1e-6}}}}"#
    ));
    let plan = CostPlan::new(&rho).unwrap();
    assert_eq!(plan.parts.len(), 2);
    for p in &plan.parts {
        assert_eq!(p.mechanism, Mechanism::Gaussian);
        assert!(p.loss.rho <= 0.005 && p.loss.rho > 0.00499, "{p:?}");
    }
    assert!(plan.loss.rho <= 0.01, "{plan:?}");
    assert_eq!(
        plan.total.epsilon,
        dp::epsilon_of_rho(plan.loss.rho, 1e-6).unwrap()
    );

    let accuracy = spec(&format!(
        r#"{{"measure":"persons","group_by":["mission"],{PERIOD},"contribution_bound":3,
        "accuracy":{{"half_width_95":10,"delta":1e-6}}}}"#
    ));
    let plan = CostPlan::new(&accuracy).unwrap();
    let part = &plan.parts[0];
    assert_eq!(part.mechanism, Mechanism::Gaussian);
    assert!(part.half_width_95 <= 10.0, "{plan:?}");
    // The least rho that meets it: a slightly smaller sigma target would miss.
    let looser = dp::rho_for_accuracy(&part.sensitivity, 9.0).unwrap();
    assert!(plan.loss.rho < looser, "{plan:?}");
}

#[test]
fn a_gaussian_release_spends_exactly_the_planned_rho() {
    let s = spec(&format!(
        r#"{{"measure":"persons","group_by":["mission"],{PERIOD},"budget":{{"epsilon":1,"delta":1e-6}}}}"#
    ));
    let plan = CostPlan::new(&s).unwrap();
    let cells: Vec<Vec<String>> = ["KGZ", "UKR", "unknown"]
        .iter()
        .map(|m| vec![m.to_string()])
        .collect();
    let agg = aggregates(&s, cells, vec![vec![100, 40, 0]]);
    let answer = release(&s, &agg, &plan).unwrap();
    assert_eq!(answer.loss, plan.loss);
    assert_eq!(answer.cost, plan.total);
    assert_eq!(answer.cells.get().len(), 3);
    for c in answer.cells.get() {
        assert!(
            c.lower <= c.estimate.max(0.0) && c.estimate <= c.upper,
            "{c:?}"
        );
    }
}

#[test]
fn an_accuracy_target_is_met_by_every_part() {
    let s = spec(&format!(
        r#"{{"measure":"persons","group_by":["mission"],{PERIOD},"accuracy":{{"half_width_95":5}}}}"#
    ));
    let plan = CostPlan::new(&s).unwrap();
    assert!(plan.parts[0].half_width_95 <= 5.0, "{plan:?}");
    assert!(plan.total.epsilon > 0.0);
}

#[test]
fn every_public_cell_is_released_with_an_interval_and_counts_stay_non_negative() {
    let s = spec(&format!(
        r#"{{"measure":"persons","group_by":["mission"],{PERIOD},"budget":{{"epsilon":0.5}}}}"#
    ));
    let plan = CostPlan::new(&s).unwrap();
    let agg = aggregates(
        &s,
        vec![
            vec!["KGZ".into()],
            vec!["UKR".into()],
            vec!["unknown".into()],
        ],
        vec![vec![40, 0, 3]],
    );
    let a = release(&s, &agg, &plan).unwrap();
    assert_eq!(a.cells.get().len(), 3);
    for c in a.cells.get() {
        assert!(c.lower >= 0.0 && c.lower.min(c.estimate) <= c.upper && c.estimate <= c.upper);
        assert_eq!(c.lower, (c.estimate - plan.parts[0].half_width_95).max(0.0));
        assert_eq!(c.upper, (c.estimate + plan.parts[0].half_width_95).max(0.0));
    }
    assert_eq!(a.cost, plan.total);
}

#[test]
fn a_release_refuses_aggregates_that_do_not_match_the_charged_plan() {
    let s = spec(&format!(
        r#"{{"measure":"persons",{PERIOD},"budget":{{"epsilon":0.5}}}}"#
    ));
    let other = spec(&format!(
        r#"{{"measure":"persons","contribution_bound":3,{PERIOD},"budget":{{"epsilon":0.5}}}}"#
    ));
    let plan = CostPlan::new(&s).unwrap();
    let agg = aggregates(&other, vec![vec![]], vec![vec![10]]);
    assert!(matches!(
        release(&s, &agg, &plan),
        Err(ReleaseError::Internal(_))
    ));
}

/// Share of releases whose interval holds the truth.
fn coverage(trials: usize, mut covered: impl FnMut() -> bool) -> f64 {
    (0..trials).filter(|_| covered()).count() as f64 / trials as f64
}

#[test]
fn mean_intervals_cover_the_true_mean() {
    let s = spec(&format!(
        r#"{{"measure":"mean","column":"months_to_closure","bounds":{{"lower":0,"upper":24}},
        {PERIOD},"budget":{{"epsilon":0.5}}}}"#
    ));
    let plan = CostPlan::new(&s).unwrap();
    // 60 records with a mean of 7.5.
    let agg = aggregates(&s, vec![vec![]], vec![vec![450], vec![60]]);
    let rate = coverage(400, || {
        let c = &release(&s, &agg, &plan).unwrap().cells.get()[0].clone();
        assert_eq!(c.parts.len(), 2);
        c.lower <= 7.5 && 7.5 <= c.upper
    });
    // Nominal 95%; the union bound makes it conservative. 400 trials: 0.92 is > 3 sd below.
    assert!(rate >= 0.92, "coverage {rate}");
}

#[test]
fn quantile_intervals_hold_the_bin_of_the_true_quantile() {
    let s = spec(&format!(
        r#"{{"measure":"quantile","column":"months_to_closure","bounds":{{"lower":0,"upper":9}},
        "bins":10,"quantiles":[0.5],{PERIOD},"budget":{{"epsilon":1.0}}}}"#
    ));
    let plan = CostPlan::new(&s).unwrap();
    let counts = vec![5, 10, 20, 40, 30, 20, 10, 5, 3, 1];
    // Cumulative 5, 15, 35, 75: the median (72 of 144) is in the bin of 3.
    let cells = (0..10).map(|i| vec![format!("[{i},{i}]")]).collect();
    let agg = aggregates(&s, cells, vec![counts]);
    let rate = coverage(200, || {
        let a = release(&s, &agg, &plan).unwrap();
        assert_eq!(a.dimensions, ["quantile"]);
        let c = &a.cells.get()[0];
        assert!(c.lower <= c.estimate && c.estimate <= c.upper, "{c:?}");
        c.lower <= 3.0 && 3.0 <= c.upper
    });
    assert!(rate >= 0.95, "coverage {rate}");
}

#[test]
fn threshold_keys_release_only_cells_above_the_threshold() {
    let s = spec(&format!(
        r#"{{"measure":"persons","group_by":["citizenship"],"keys":"threshold",
        {PERIOD},"budget":{{"epsilon":1.0,"delta":1e-6}}}}"#
    ));
    let plan = CostPlan::new(&s).unwrap();
    let threshold = plan.parts[0].threshold.expect("the count selects the keys");
    assert!(
        plan.total.delta > 0.0 && plan.total.delta <= 1e-6,
        "{plan:?}"
    );
    let agg = aggregates(
        &s,
        vec![vec!["KGZ".into()], vec!["UKR".into()], vec!["UZB".into()]],
        vec![vec![1000, 1, 0]],
    );
    let a = release(&s, &agg, &plan).unwrap();
    // 1000 is far above any threshold at epsilon 1 and delta 1e-6; 1 and 0 are far below.
    assert!(threshold > 5, "threshold {threshold}");
    assert_eq!(a.cells.get().len(), 1);
    assert_eq!(a.cells.get()[0].key, ["KGZ"]);
    assert!(a.notes.iter().any(|n| n.contains("threshold")));
}

#[test]
fn csv_has_the_key_columns_then_the_estimate_and_interval() {
    let cells = vec![Cell {
        key: vec!["KGZ".into(), "a,b".into()],
        estimate: 3.0,
        lower: 0.0,
        upper: 7.5,
        parts: Vec::new(),
    }];
    assert_eq!(
        to_csv(&["mission".into(), "x".into()], &cells),
        "mission,x,estimate,lower,upper\nKGZ,\"a,b\",3,0,7.5\n"
    );
}

#[test]
fn an_auto_bound_is_chosen_from_the_histogram_within_the_budget_charged() {
    let laplace = spec(&format!(
        r#"{{"measure":"cases","group_by":["mission"],{PERIOD},"contribution_bound":"auto",
        "budget":{{"epsilon":10}}}}"#
    ));
    assert!(
        laplace
            .canonical_json()
            .contains(r#""contribution_bound":"auto""#)
    );
    let plan = CostPlan::new(&laplace).unwrap();
    assert_eq!(plan.parts.len(), 1);
    assert_eq!(plan.parts[0].name, "records_per_person");
    // A tenth on the histogram (noise scale 1 here, so the choice below is the noiseless one
    // but for a chance far below 1e-6).
    assert!(plan.parts[0].cost.epsilon <= 1.0, "{plan:?}");
    // The charge is the whole budget, whichever bound is chosen.
    assert_eq!(
        plan.loss,
        Loss::approx(Cost {
            epsilon: 10.0,
            delta: 0.0
        })
    );
    let most = spec::MAX_CONTRIBUTION_BOUND as usize;
    let persons_with = |records: usize| {
        let mut counts = vec![0i64; most];
        counts[records - 1] = 2000;
        counts
    };
    for (records, expected) in [(1, 1), (3, 3), (25, 20)] {
        let counts = persons_with(records.min(most));
        let (bounded, priced, released) =
            choose_bound(&laplace, &plan, &counts, &missions()).unwrap();
        let chosen = released.get().clone();
        assert_eq!(chosen.records, expected, "{chosen:?}");
        assert_eq!(bounded.contribution_bound(), expected);
        assert!(!bounded.auto_bound());
        assert_eq!(chosen.persons_by_records.len(), most);
        assert!(chosen.dropped_per_cell < 50.0, "{chosen:?}");
        // Histogram and query together within what was charged.
        let spent =
            ledger::units_up(plan.parts[0].cost.epsilon) + ledger::units_up(priced.loss.epsilon);
        assert!(spent <= ledger::units_down(10.0), "{priced:?}");

        let cells: Vec<Vec<String>> = ["KGZ", "UKR", "unknown"]
            .iter()
            .map(|m| vec![m.to_string()])
            .collect();
        let agg = aggregates(&bounded, cells, vec![vec![300, 100, 0]]);
        let answer = release(&bounded, &agg, &priced).unwrap();
        let bias = chosen.dropped_per_cell;
        let plain: Vec<f64> = answer.cells.get().iter().map(|c| c.upper).collect();
        let answer = with_chosen_bound(answer, &plan, released);
        assert_eq!(answer.parts[0].name, "records_per_person");
        assert_eq!(answer.loss, plan.loss);
        assert!(answer.chosen_bound.is_some());
        for (c, upper) in answer.cells.get().iter().zip(plain) {
            assert_eq!(c.upper, upper + bias);
        }
    }

    // Gaussian: a tenth of the rho on the histogram, the whole rho charged.
    let gaussian = spec(&format!(
        r#"{{"measure":"persons","group_by":["mission"],{PERIOD},"contribution_bound":"auto",
        "budget":{{"rho":0.05,"delta":1e-6}}}}"#
    ));
    let plan = CostPlan::new(&gaussian).unwrap();
    assert!(plan.loss.rho <= 0.05 && plan.loss.rho > 0.04999, "{plan:?}");
    assert!(plan.parts[0].loss.rho <= 0.005 && plan.parts[0].loss.rho > 0.0049);
    let (_, priced, _) = choose_bound(&gaussian, &plan, &persons_with(2), &missions()).unwrap();
    assert!(
        ledger::units_up(plan.parts[0].loss.rho) + ledger::units_up(priced.loss.rho)
            <= ledger::units_down(0.05)
    );
}
