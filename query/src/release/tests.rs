use proptest::prelude::*;

use super::*;
use crate::indicators::{self, Source};

proptest! {
    #[test]
    fn projection_is_non_negative_and_sums_to_the_total(
        x in prop::collection::vec(-50.0..200.0f64, 1..12),
        total in 0u32..500,
    ) {
        let total = f64::from(total);
        let y = project_simplex(&x, total);
        prop_assert!(y.iter().all(|v| *v >= 0.0));
        prop_assert!((y.iter().sum::<f64>() - total).abs() < 1e-6 * total.max(1.0));
        let ints = integer_partition(&y, total);
        prop_assert!(ints.iter().all(|v| *v >= 0.0 && v.fract() == 0.0));
        prop_assert_eq!(ints.iter().sum::<f64>(), total);
        for (i, yi) in ints.iter().zip(&y) {
            prop_assert!((i - yi).abs() < 1.0 + 1e-9);
        }
    }
}

#[test]
fn discrete_half_widths_hold_their_level() {
    for b in [0.5, 1.0, 3.0, 17.3, 250.0] {
        for alpha in [0.05, 0.025, 0.001] {
            let h = Noisy {
                value: 0.0,
                scale: b,
            }
            .half_width(alpha);
            let tail = |h: f64| 2.0 * (-(h + 1.0) / b).exp() / (1.0 + (-1.0 / b).exp());
            assert!(tail(h) <= alpha + 1e-12, "b {b} alpha {alpha}: {h}");
            assert!(
                h == 0.0 || tail(h - 1.0) > alpha,
                "b {b} alpha {alpha}: {h} not least"
            );
        }
    }
}

#[test]
fn projection_keeps_a_consistent_vector() {
    assert_eq!(project_simplex(&[3.0, 5.0, 2.0], 10.0), vec![3.0, 5.0, 2.0]);
    assert_eq!(project_simplex(&[-4.0, 12.0], 10.0), vec![0.0, 10.0]);
}

#[test]
fn requests_are_checked_and_priced_within_their_budget() {
    let missions = vec!["KGZ".to_string(), "UKR".to_string()];
    let request = ReleaseRequest {
        name: "HQ".into(),
        indicators: vec![],
        missions: None,
        from: 2003,
        to: 2008,
        period: PeriodKind::Year,
        epsilon: 1.0,
        delta: None,
        contribution_bound: None,
        design: Some(DesignKind::EqualSplit),
    };
    let plan = request.plan(&missions).unwrap();
    // Without a delta, every indicator but the thresholded flows.
    assert_eq!(plan.indicators.len(), indicators::catalogue().len() - 1);
    let flows = ReleaseRequest {
        indicators: vec!["origin_destination_flows".into()],
        ..request.clone()
    };
    assert_eq!(flows.plan(&missions).unwrap_err().0[0].field, "delta");
    let with_delta = ReleaseRequest {
        delta: Some(1e-6),
        ..request.clone()
    }
    .plan(&missions)
    .unwrap();
    assert_eq!(with_delta.indicators.len(), indicators::catalogue().len());
    assert!(with_delta.cost.delta <= 1e-6 && with_delta.cost.delta > 0.0);
    assert!(with_delta.cost.epsilon <= 1.0);
    assert!(plan.cost.epsilon <= 1.0, "{:?}", plan.cost);
    assert!(plan.cost.epsilon > 0.99, "{:?}", plan.cost);
    assert_eq!(plan.cost.delta, 0.0);
    // The persons total is asked once although many indicators use it.
    let totals = plan
        .queries
        .iter()
        .filter(|(s, _, _)| *s == Source::persons())
        .count();
    assert_eq!(totals, 1);

    let quarterly = ReleaseRequest {
        period: PeriodKind::Quarter,
        indicators: vec!["coverage_vs_estimated".into()],
        ..request.clone()
    };
    assert_eq!(
        quarterly.plan(&missions).unwrap_err().0[0].field,
        "indicators"
    );
    let unknown = ReleaseRequest {
        missions: Some(vec!["FRA".into()]),
        ..request.clone()
    };
    assert_eq!(unknown.plan(&missions).unwrap_err().0[0].field, "missions");
    let free = ReleaseRequest {
        epsilon: 0.0,
        ..request
    };
    assert_eq!(free.plan(&missions).unwrap_err().0[0].field, "epsilon");
}

#[test]
fn a_marginal_release_is_charged_its_rho_once_converted() {
    let missions = vec!["KGZ".to_string(), "UKR".to_string()];
    let request = ReleaseRequest {
        name: "HQ".into(),
        indicators: vec![],
        missions: None,
        from: 2003,
        to: 2008,
        period: PeriodKind::Year,
        epsilon: 5.0,
        delta: Some(1e-6),
        contribution_bound: None,
        design: None,
    };
    let plan = request.plan(&missions).unwrap();
    let design = plan.design.as_ref().unwrap();
    // Without flows in the default release, the charge is the design's rho alone.
    assert!(plan.indicators.iter().all(|i| !i.formula.needs_delta()));
    assert_eq!(plan.loss.epsilon, 0.0);
    assert_eq!(plan.loss.rho, design.rho);
    // The rho charged is the marginals' rho by OpenDP's map, added: each marginal at its sigma.
    let sum: f64 = design.marginals.iter().map(|m| m.rho).sum();
    assert!(design.rho >= sum * (1.0 - 1e-9) && design.rho <= sum * (1.0 + 1e-9));
    for m in &design.marginals {
        let again = crate::dp::preview_gaussian(&m.sensitivity, m.rho).unwrap();
        assert!(
            again.rho <= m.rho && again.scale >= m.sigma * (1.0 - 1e-6),
            "{m:?}"
        );
    }
    // The (epsilon, delta) is that rho converted once: within the budget, and far below the
    // same marginals converted one by one at an equal share of delta and added.
    assert!(
        plan.cost.epsilon <= 5.0 && plan.cost.epsilon > 4.99,
        "{:?}",
        plan.cost
    );
    let n = design.marginals.len() as f64;
    let one_by_one: f64 = design
        .marginals
        .iter()
        .map(|m| crate::dp::epsilon_of_rho(m.rho, 1e-6 / n).unwrap())
        .sum();
    assert!(one_by_one > 2.0 * plan.cost.epsilon, "{one_by_one}");
    // The weights are the catalogue's constants, not the data's: the same plan every time.
    assert_eq!(
        request.plan(&missions).unwrap().design.as_ref(),
        Some(design)
    );
    // Without a delta the marginal design is refused, naming the field.
    let no_delta = ReleaseRequest {
        delta: None,
        ..request
    };
    assert_eq!(no_delta.plan(&missions).unwrap_err().0[0].field, "delta");
}
