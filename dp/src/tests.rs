//! Tests of the whole crate: costs against OpenDP's maps, noise distributions, calibration,
//! refusals and the sparse release.

use super::*;
use crate::counts::*;
use crate::interval::*;
use crate::sparse::*;
use proptest::prelude::*;

const ONE: Sensitivity = Sensitivity {
    l0: 1,
    l1: 1,
    linf: 1,
};

fn budget(epsilon: f64, delta: f64) -> Cost {
    Cost { epsilon, delta }
}

/// The cost of a fresh measurement built at `scale`, mapped at `sensitivity`: the test's own
/// reading of OpenDP's map, independent of the calibration.
fn map_at(sensitivity: &Sensitivity, mechanism: Mechanism, scale: f64, delta: f64) -> Cost {
    CountsMeasurement::build(mechanism, scale, delta)
        .unwrap()
        .cost(sensitivity)
        .unwrap()
}

const SENSITIVITIES: [Sensitivity; 4] = [
    ONE,
    Sensitivity {
        l0: 3,
        l1: 3,
        linf: 1,
    },
    Sensitivity {
        l0: 2,
        l1: 10,
        linf: 5,
    },
    Sensitivity {
        l0: 12,
        l1: 7,
        linf: 2,
    },
];

#[test]
fn cost_is_the_map_at_the_sensitivity_and_within_budget() {
    for sensitivity in SENSITIVITIES {
        for mechanism in [Mechanism::Laplace, Mechanism::Gaussian] {
            for (epsilon, delta) in [(0.1, 1e-6), (1.0, 1e-9), (2.5, 1e-5)] {
                let asked = budget(epsilon, delta);
                let release = release_counts(&[3, 0, 12], &sensitivity, mechanism, asked).unwrap();
                let cost = release.cost();
                let mapped = map_at(&sensitivity, mechanism, release.scale(), delta);
                assert_eq!(cost, mapped, "{sensitivity:?} {mechanism:?} {asked:?}");
                assert!(
                    cost.epsilon <= epsilon,
                    "{sensitivity:?} {mechanism:?} {cost:?}"
                );
                assert!(cost.delta <= delta);
                match mechanism {
                    Mechanism::Laplace => assert_eq!(cost.delta, 0.0),
                    Mechanism::Gaussian => assert_eq!(cost.delta, delta),
                }
                // The smallest noise: a slightly smaller scale would overspend.
                let less_noise = map_at(
                    &sensitivity,
                    mechanism,
                    release.scale() * (1.0 - 1e-8),
                    delta,
                );
                assert!(
                    less_noise.epsilon > epsilon,
                    "{sensitivity:?} {mechanism:?}"
                );
                assert_eq!(release.values().len(), 3);
                assert_eq!(release.mechanism(), mechanism);
            }
        }
    }
}

#[test]
fn laplace_scale_is_l1_over_epsilon() {
    let sensitivity = Sensitivity {
        l0: 3,
        l1: 3,
        linf: 1,
    };
    let release = release_counts(
        &[1, 2, 3],
        &sensitivity,
        Mechanism::Laplace,
        budget(1.5, 0.0),
    )
    .unwrap();
    assert_eq!(release.scale(), 2.0);
    assert_eq!(release.cost(), budget(1.5, 0.0));
    // l1 is tightened by l0 * linf.
    let loose = Sensitivity {
        l0: 2,
        l1: 9,
        linf: 1,
    };
    let p = preview(&loose, Mechanism::Laplace, budget(1.0, 0.0)).unwrap();
    assert_eq!(p.scale, 2.0);
}

#[test]
fn l2_bound_is_conservative_and_tight() {
    let s = |l0, l1, linf| Sensitivity { l0, l1, linf }.l2();
    assert_eq!(s(1, 1, 1), 1.0);
    assert_eq!(s(4, 4, 1), 2.0);
    // min(l1 * linf, l0 * linf^2, l1^2) = min(50, 50, 100)
    let root = s(2, 10, 5);
    assert!(
        root.mul_add(root, -50.0) >= 0.0 && root.next_down().mul_add(root.next_down(), -50.0) < 0.0
    );
    // min(3, 3, 9)
    let root = s(3, 3, 1);
    assert!(root.mul_add(root, -3.0) >= 0.0 && root < 1.7321);
    // l1^2 is a bound too: one cell with linf > l1 can only move by l1.
    assert_eq!(s(1, 2, 10), 2.0);
    for n in 1..2000u64 {
        let root = Sensitivity {
            l0: n,
            l1: n,
            linf: 1,
        }
        .l2();
        assert!(root.mul_add(root, -(n as f64)) >= 0.0, "{n}");
        assert!(
            root.next_down().mul_add(root.next_down(), -(n as f64)) < 0.0,
            "{n}"
        );
    }
}

fn coverage(mechanism: Mechanism, scale: f64, h: i64) -> f64 {
    (-h..=h).map(|x| pmf(mechanism, scale, x)).sum()
}

/// Release 4000 zeros and test the noise against OpenDP's exact distribution: a
/// Kolmogorov-Smirnov statistic with the critical value for a false alarm of 0.1% (the test
/// is conservative for a discrete law), the mean, and the coverage of the 95% half-width.
fn check_noise_distribution(mechanism: Mechanism, asked: Cost) {
    const N: usize = 4000;
    let release = release_counts(&[0; N], &ONE, mechanism, asked).unwrap();
    let scale = release.scale();
    assert!((1.5..=3.0).contains(&scale), "scale {scale}");
    let mut noise = release.values().to_vec();
    noise.sort_unstable();

    let mut ks: f64 = 0.0;
    let mut cdf = 0.0;
    for x in -200..=200 {
        cdf += pmf(mechanism, scale, x);
        let empirical = noise.partition_point(|&v| v <= x) as f64 / N as f64;
        ks = ks.max((empirical - cdf).abs());
    }
    let critical = (-(0.001f64 / 2.0).ln() / 2.0).sqrt() / (N as f64).sqrt();
    assert!(ks < critical, "{mechanism:?}: KS {ks} >= {critical}");

    let mean = noise.iter().sum::<i64>() as f64 / N as f64;
    assert!(mean.abs() < 0.3, "{mechanism:?}: mean {mean}");

    let h = release.half_width_95();
    assert_eq!(h, h.round());
    let h = h as i64;
    let p = coverage(mechanism, scale, h);
    assert!(
        p >= 0.95,
        "{mechanism:?}: the half-width {h} covers only {p}"
    );
    assert!(
        coverage(mechanism, scale, h - 1) < 0.95,
        "{mechanism:?}: {h} is not the smallest"
    );
    let covered = noise.iter().filter(|v| v.abs() <= h).count() as f64 / N as f64;
    let sd = (p * (1.0 - p) / N as f64).sqrt();
    assert!(
        (covered - p).abs() < 5.0 * sd,
        "{mechanism:?}: covered {covered}, expected {p}"
    );
    assert!(
        (0.93..=0.99).contains(&covered),
        "{mechanism:?}: covered {covered}"
    );
}

#[test]
fn laplace_noise_has_the_discrete_laplace_distribution() {
    check_noise_distribution(Mechanism::Laplace, budget(0.5, 0.0));
}

#[test]
fn gaussian_noise_has_the_discrete_gaussian_distribution() {
    check_noise_distribution(Mechanism::Gaussian, budget(2.75, 1e-6));
}

#[test]
fn preview_is_deterministic_and_matches_the_release() {
    for sensitivity in SENSITIVITIES {
        for mechanism in [Mechanism::Laplace, Mechanism::Gaussian] {
            let asked = budget(0.7, 1e-8);
            let p = preview(&sensitivity, mechanism, asked).unwrap();
            assert_eq!(p, preview(&sensitivity, mechanism, asked).unwrap());
            let release = release_counts(&[5; 10], &sensitivity, mechanism, asked).unwrap();
            assert_eq!(p.scale, release.scale());
            assert_eq!(p.half_width_95, release.half_width_95());
            assert_eq!(p.cost, release.cost());
            assert_eq!(p.mechanism, mechanism);
            assert_eq!(p.half_width_95, half_width_at(mechanism, p.scale).unwrap());
        }
    }
}

#[test]
fn budget_for_accuracy_round_trips_and_is_the_smallest() {
    for sensitivity in SENSITIVITIES {
        for mechanism in [Mechanism::Laplace, Mechanism::Gaussian] {
            for target in [0.0, 1.0, 5.0, 10.5, 37.0, 250.0] {
                let cost = budget_for_accuracy(&sensitivity, mechanism, target, 1e-9).unwrap();
                let p = preview(&sensitivity, mechanism, cost).unwrap();
                assert!(
                    p.half_width_95 <= target,
                    "{sensitivity:?} {mechanism:?} {target}: {p:?}"
                );
                assert!(p.cost.epsilon <= cost.epsilon);
                assert!(
                    p.cost.epsilon >= cost.epsilon * (1.0 - 1e-8),
                    "{p:?} {cost:?}"
                );
                // Smallest: a thousandth less epsilon misses the target.
                let less = budget(cost.epsilon * 0.999, cost.delta);
                let p = preview(&sensitivity, mechanism, less).unwrap();
                assert!(
                    p.half_width_95 > target,
                    "{sensitivity:?} {mechanism:?} {target}"
                );
                let expected_delta = match mechanism {
                    Mechanism::Laplace => 0.0,
                    Mechanism::Gaussian => 1e-9,
                };
                assert_eq!(cost.delta, expected_delta);
            }
        }
    }
}

fn refused(result: Result<impl std::fmt::Debug>, code: &str, words: &str) {
    let err = result.unwrap_err();
    assert_eq!(err.code(), code, "{err}");
    assert!(err.is_caller_error());
    assert!(err.to_string().contains(words), "{err}");
}

#[test]
fn bad_budgets_and_sensitivities_are_refused_clearly() {
    for mechanism in [Mechanism::Laplace, Mechanism::Gaussian] {
        for epsilon in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            refused(
                release_counts(&[1], &ONE, mechanism, budget(epsilon, 1e-9)),
                "invalid_budget",
                "epsilon must be positive",
            );
            refused(
                preview(&ONE, mechanism, budget(epsilon, 1e-9)),
                "invalid_budget",
                "epsilon must be positive",
            );
        }
        refused(
            release_counts(&[1], &ONE, mechanism, budget(1.0, f64::NAN)),
            "invalid_budget",
            "delta must be",
        );
        refused(
            release_counts(&[1], &ONE, mechanism, budget(1e-9, 1e-9)),
            "budget_too_small",
            "raise epsilon",
        );
        let zero = Sensitivity {
            l0: 0,
            l1: 0,
            linf: 0,
        };
        refused(
            release_counts(&[1], &zero, mechanism, budget(1.0, 1e-9)),
            "invalid_sensitivity",
            "at least 1",
        );
        let partial = Sensitivity {
            l0: 0,
            l1: 3,
            linf: 1,
        };
        refused(
            release_counts(&[1], &partial, mechanism, budget(1.0, 1e-9)),
            "invalid_sensitivity",
            "at least 1",
        );
        let huge = Sensitivity {
            l0: 1,
            l1: MAX_SENSITIVITY + 1,
            linf: 1,
        };
        refused(
            preview(&huge, mechanism, budget(1.0, 1e-9)),
            "invalid_sensitivity",
            "at most",
        );
        // Nothing to release, nothing to protect: no noise and no charge.
        let empty = release_counts(&[], &zero, mechanism, budget(1.0, 1e-9)).unwrap();
        assert!(empty.values().is_empty());
        assert_eq!(empty.cost(), budget(0.0, 0.0));
        for target in [-1.0, f64::NAN, f64::INFINITY] {
            refused(
                budget_for_accuracy(&ONE, mechanism, target, 1e-9),
                "invalid_accuracy",
                "half-width",
            );
        }
        // A target wider than the noise at MAX_SCALE: the smallest budget a release accepts.
        let cost = budget_for_accuracy(&ONE, mechanism, 1e9, 1e-9).unwrap();
        let p = preview(&ONE, mechanism, cost).unwrap();
        assert!(p.scale <= MAX_SCALE && p.scale > MAX_SCALE * 0.999, "{p:?}");
        assert!(p.half_width_95 <= 1e9);
    }
    for delta in [0.0, 1.0, -1e-9] {
        refused(
            release_counts(&[1], &ONE, Mechanism::Gaussian, budget(1.0, delta)),
            "invalid_budget",
            "delta must be above 0",
        );
        refused(
            budget_for_accuracy(&ONE, Mechanism::Gaussian, 3.0, delta),
            "invalid_budget",
            "delta must be above 0",
        );
        refused(
            release_sparse(vec![("a".into(), 1)], &ONE, budget(1.0, delta)),
            "invalid_budget",
            "delta must be above 0",
        );
    }
    refused(
        release_counts(&[1], &ONE, Mechanism::Laplace, budget(1.0, -0.5)),
        "invalid_budget",
        "delta must be at least 0",
    );
}

#[test]
fn sparse_release_keeps_large_counts_and_drops_small_ones() {
    let sensitivities = [
        ONE,
        Sensitivity {
            l0: 3,
            l1: 3,
            linf: 1,
        },
    ];
    for sensitivity in sensitivities {
        let asked = budget(1.0, 1e-9);
        let mut counts: Vec<(String, i64)> =
            (0..50).map(|i| (format!("small-{i:02}"), 1)).collect();
        for key in ["big-a", "big-b", "big-c"] {
            counts.push((key.to_string(), 1_000_000));
        }
        let plan = preview_sparse(&sensitivity, asked).unwrap();
        // With a threshold this far above 1, a small key crosses it with probability below
        // 1e-8 each.
        assert!(plan.threshold >= 15, "{plan:?}");
        let release = release_sparse(counts, &sensitivity, asked).unwrap();
        let keys: Vec<&str> = release.counts().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["big-a", "big-b", "big-c"]);
        for (_, noisy) in release.counts() {
            assert!((noisy - 1_000_000).abs() < 100, "{noisy}");
        }
        assert_eq!(release.threshold(), plan.threshold);
        assert_eq!(release.scale(), plan.scale);
        assert_eq!(release.half_width_95(), plan.half_width_95);
        assert_eq!(
            release.half_width_95(),
            half_width_at(Mechanism::Laplace, plan.scale).unwrap()
        );

        // The cost is the threshold measurement's map, within the budget on both parts.
        let cost = release.cost();
        let measurement = threshold_measurement(release.scale(), release.threshold()).unwrap();
        assert_eq!(cost, threshold_cost(&measurement, &sensitivity).unwrap());
        assert_eq!(cost, plan.cost);
        assert!(cost.epsilon <= asked.epsilon);
        assert!(cost.delta <= asked.delta && cost.delta > 0.0);
        // The threshold is the smallest whose delta fits.
        let lower = threshold_measurement(release.scale(), release.threshold() - 1).unwrap();
        assert!(threshold_cost(&lower, &sensitivity).unwrap().delta > asked.delta);
    }
}

#[test]
fn sparse_release_refuses_duplicate_keys_without_naming_them() {
    let counts = vec![
        ("secret-key".to_string(), 4),
        ("other".to_string(), 2),
        ("secret-key".to_string(), 1),
    ];
    let err = release_sparse(counts, &ONE, budget(1.0, 1e-9)).unwrap_err();
    assert_eq!(err.code(), "duplicate_key");
    assert!(!err.to_string().contains("secret-key"), "{err}");
    assert!(err.to_string().contains("index 2"), "{err}");
    let empty = release_sparse(
        Vec::new(),
        &Sensitivity {
            l0: 0,
            l1: 0,
            linf: 0,
        },
        budget(1.0, 1e-9),
    )
    .unwrap();
    assert!(empty.counts().is_empty());
    assert_eq!(empty.cost(), budget(0.0, 0.0));
}

#[test]
fn releases_cross_threads_and_opendp_keeps_its_secure_source() {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Release>();
    send_and_sync::<SparseRelease>();
    send_and_sync::<DpError>();
    // The samplers' secure random source is OpenDP's default `use-openssl` feature.
    let manifest = include_str!("../Cargo.toml");
    let line = manifest
        .lines()
        .find(|l| l.starts_with("opendp "))
        .expect("query depends on opendp");
    assert!(line.contains("\"=0.16.0\""), "{line}");
    assert!(!line.contains("default-features"), "{line}");
}

#[test]
fn mechanism_names_are_snake_case() {
    assert_eq!(
        serde_json::to_string(&Mechanism::Gaussian).unwrap(),
        "\"gaussian\""
    );
    let m: Mechanism = serde_json::from_str("\"laplace\"").unwrap();
    assert_eq!(m, Mechanism::Laplace);
}

proptest! {
    #[test]
    fn laplace_calibration_never_overspends(l1 in 1u64..50, epsilon in 0.01f64..5.0) {
        let sensitivity = Sensitivity { l0: l1, l1, linf: 1 };
        let release =
            release_counts(&[0, 7, 40], &sensitivity, Mechanism::Laplace, budget(epsilon, 0.0))
                .unwrap();
        let cost = release.cost();
        prop_assert!(cost.epsilon <= epsilon * (1.0 + 1e-9));
        prop_assert!(cost.epsilon <= epsilon);
        prop_assert!(cost.epsilon >= epsilon * (1.0 - 1e-8), "{} < {}", cost.epsilon, epsilon);
        prop_assert_eq!(cost.delta, 0.0);
    }
}

mod zcdp {
    use crate::Sensitivity;
    use crate::zcdp::*;

    #[test]
    fn rho_converts_once_and_back() {
        // The figure: epsilon 5, delta 1e-6 is a rho of about 0.46 for a whole release.
        let rho = rho_for(5.0, 1e-6).unwrap();
        assert!((0.4..0.55).contains(&rho), "{rho}");
        let eps = epsilon_of_rho(rho, 1e-6).unwrap();
        assert!(eps <= 5.0 && eps > 5.0 - 1e-6, "{eps}");
        assert!(epsilon_of_rho(rho * (1.0 + 1e-6), 1e-6).unwrap() > 5.0);
        assert_eq!(epsilon_of_rho(0.0, 1e-6).unwrap(), 0.0);
        assert_eq!(epsilon_of_rho(0.1, 0.0).unwrap(), f64::INFINITY);
    }

    #[test]
    fn composition_in_rho_beats_adding_conversions() {
        // Twenty charges of rho 0.023 each: converted one by one at delta / 20 and added, far
        // more than the total converted once.
        let one = epsilon_of_rho(0.023, 5e-8).unwrap();
        let once = composed_epsilon(20.0 * 0.023, 0.0, 0.0, &[], 1e-6)
            .unwrap()
            .unwrap();
        assert!(
            once < 5.0 && 20.0 * one > 2.0 * once,
            "{once} vs {}",
            20.0 * one
        );
    }

    #[test]
    fn a_pure_charge_never_costs_more_than_its_epsilon() {
        for eps in [0.01, 0.1, 1.0, 3.0] {
            let c = composed_epsilon(0.0, 0.0, 0.0, &[eps], 1e-6)
                .unwrap()
                .unwrap();
            assert!(c <= eps, "{eps}: {c}");
        }
        // Many small pure charges join the rho total: far below their sum.
        let many = vec![0.05; 400];
        let c = composed_epsilon(0.0, 0.0, 0.0, &many, 1e-6)
            .unwrap()
            .unwrap();
        assert!(c < 10.0, "{c}");
        // With no delta, pure charges add up exactly.
        let c = composed_epsilon(0.0, 0.0, 0.0, &[0.5, 0.25], 0.0)
            .unwrap()
            .unwrap();
        assert_eq!(c, 0.75);
        // A rho with no delta to convert at is unbounded.
        assert_eq!(composed_epsilon(0.1, 0.0, 0.0, &[], 0.0).unwrap(), None);
        // Approximate deltas beyond the budget's.
        assert_eq!(composed_epsilon(0.0, 1.0, 2e-6, &[], 1e-6).unwrap(), None);
    }

    #[test]
    fn the_gaussian_spends_at_most_its_rho() {
        let persons = Sensitivity {
            l0: 3,
            l1: 3,
            linf: 1,
        };
        let p = preview_gaussian(&persons, 0.023).unwrap();
        assert!(p.rho <= 0.023 && p.rho > 0.023 * (1.0 - 1e-6), "{p:?}");
        // sigma^2 = l2^2 / (2 rho) = 3 / 0.046
        assert!((p.scale - (3.0f64 / 0.046).sqrt()).abs() < 1e-3, "{p:?}");
        let r = release_gaussian(&[100, 0, 7], &persons, 0.023).unwrap();
        assert_eq!(r.released().get().len(), 3);
        assert_eq!(r.preview(), p);
        assert!(preview_gaussian(&persons, 0.0).is_err());
        // The rho re-derived from the scale is the map the release was charged.
        assert_eq!(rho_of_gaussian(p.scale, &persons).unwrap(), p.rho);
        let wider = rho_of_gaussian(p.scale * 2.0, &persons).unwrap();
        assert!((wider - p.rho / 4.0).abs() < 1e-6 * p.rho, "{wider}");
        assert!(rho_of_gaussian(0.0, &persons).is_err());
        assert!(rho_of_gaussian(f64::NAN, &persons).is_err());
    }
}

mod fits {
    use crate::zcdp::*;

    #[test]
    fn fits_agrees_with_the_composed_epsilon() {
        for (rho, pure) in [(0.3, vec![]), (0.0, vec![0.4, 1.0]), (0.1, vec![0.05; 50])] {
            let eps = composed_epsilon(rho, 0.2, 1e-7, &pure, 1e-6)
                .unwrap()
                .unwrap();
            assert!(fits(rho, 0.2, 1e-7, &pure, (eps * (1.0 + 1e-9), 1e-6)).unwrap());
            assert!(!fits(rho, 0.2, 1e-7, &pure, (eps * 0.999, 1e-6)).unwrap());
        }
        assert!(!fits(0.0, 0.0, 2e-6, &[], (10.0, 1e-6)).unwrap());
    }
}
