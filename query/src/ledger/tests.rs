use super::*;
use proptest::prelude::*;
use std::sync::Arc;

fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
    (dir, ledger)
}

#[test]
fn tokens_authenticate_and_are_stored_hashed() {
    let (dir, ledger) = ledger();
    let (p, token) = ledger
        .add_principal("Dr R", Role::Researcher, None)
        .unwrap();
    assert_eq!(ledger.authenticate(&token).unwrap().unwrap().id, p.id);
    assert!(ledger.authenticate("cts_wrong").unwrap().is_none());
    drop(ledger);
    let bytes = std::fs::read(dir.path().join("ledger.sqlite")).unwrap();
    let wal = std::fs::read(dir.path().join("ledger.sqlite-wal")).unwrap_or_default();
    let needle = token.as_bytes();
    for hay in [&bytes, &wal] {
        assert!(
            !hay.windows(needle.len()).any(|w| w == needle),
            "the raw token is never stored"
        );
    }
    let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
    ledger.revoke(&p.id).unwrap();
    assert!(
        ledger.authenticate(&token).unwrap().is_none(),
        "a revoked token no longer works"
    );
}

#[test]
fn charges_refusals_and_reuse() {
    let (_dir, ledger) = ledger();
    let (p, _) = ledger.add_principal("a", Role::Analyst, None).unwrap();
    assert_eq!(
        ledger
            .charge(
                &p.id,
                "ds",
                "q1",
                Cost {
                    epsilon: 0.1,
                    delta: 0.0
                }
            )
            .unwrap(),
        Charge::NoBudget
    );
    ledger.set_budget(&p.id, "ds", 1.0, 1e-6).unwrap();
    let Charge::Charged { paid, budget } = ledger
        .charge(
            &p.id,
            "ds",
            "q1",
            Cost {
                epsilon: 0.6,
                delta: 0.0,
            },
        )
        .unwrap()
    else {
        panic!("expected a charge");
    };
    assert!((budget.epsilon_left() - 0.4).abs() < 1e-9);
    ledger.store_answer(paid, "{\"answer\":1}").unwrap();
    // Asked again: the stored answer, nothing charged.
    match ledger
        .charge(
            &p.id,
            "ds",
            "q1",
            Cost {
                epsilon: 0.6,
                delta: 0.0,
            },
        )
        .unwrap()
    {
        Charge::Reused { answer, budget } => {
            assert_eq!(answer, "{\"answer\":1}");
            assert!((budget.epsilon_left() - 0.4).abs() < 1e-9);
        }
        other => panic!("expected reuse, got {other:?}"),
    }
    // Over budget: refused, and the refusal costs nothing.
    assert!(matches!(
        ledger
            .charge(
                &p.id,
                "ds",
                "q2",
                Cost {
                    epsilon: 0.5,
                    delta: 0.0
                }
            )
            .unwrap(),
        Charge::Refused { .. }
    ));
    assert!(matches!(
        ledger
            .charge(
                &p.id,
                "ds",
                "q3",
                Cost {
                    epsilon: 0.1,
                    delta: 2e-6
                }
            )
            .unwrap(),
        Charge::Refused { .. }
    ));
    assert!((ledger.budget(&p.id, "ds").unwrap().unwrap().epsilon_left() - 0.4).abs() < 1e-9);
    // 0.4 in binary is a little above 4/10: one unit more than is left.
    let cost = |epsilon| Cost {
        epsilon,
        delta: 1e-6,
    };
    let left = ledger.budget(&p.id, "ds").unwrap().unwrap();
    assert!(!affords(&left, cost(0.4)));
    assert!(matches!(
        ledger.charge(&p.id, "ds", "q4", cost(0.4)).unwrap(),
        Charge::Refused { .. }
    ));
    // Exactly the rest, as the service calibrates it, is allowed.
    assert!(affords(&left, cost(share(0.4, 1))));
    assert!(matches!(
        ledger
            .charge(
                &p.id,
                "ds",
                "q4",
                Cost {
                    epsilon: share(0.4, 1),
                    delta: 1e-6
                }
            )
            .unwrap(),
        Charge::Charged { .. }
    ));
    assert!(matches!(
        ledger
            .charge(
                &p.id,
                "ds",
                "q5",
                Cost {
                    epsilon: 1e-12,
                    delta: 0.0
                }
            )
            .unwrap(),
        Charge::Refused { .. }
    ));
}

#[test]
fn budget_survives_reopening() {
    let (dir, ledger) = ledger();
    let (p, token) = ledger.add_principal("a", Role::Analyst, None).unwrap();
    ledger.set_budget(&p.id, "ds", 2.0, 0.0).unwrap();
    ledger
        .charge(
            &p.id,
            "ds",
            "q",
            Cost {
                epsilon: 0.75,
                delta: 0.0,
            },
        )
        .unwrap();
    drop(ledger);
    let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
    assert_eq!(ledger.authenticate(&token).unwrap().unwrap().id, p.id);
    assert!((ledger.budget(&p.id, "ds").unwrap().unwrap().epsilon_spent - 0.75).abs() < 1e-12);
}

/// 32 threads fire 1,000 charges at a budget that allows only some: the total charged never
/// exceeds the budget and equals the sum over the charges granted.
#[test]
fn concurrent_charges_never_overspend() {
    let (_dir, ledger) = ledger();
    let ledger = Arc::new(ledger);
    let (p, _) = ledger.add_principal("a", Role::Researcher, None).unwrap();
    ledger.set_budget(&p.id, "ds", 10.0, 0.0).unwrap();
    let granted: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|t| {
                let ledger = ledger.clone();
                let id = p.id.clone();
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..32 {
                        let eps = 0.01 + 0.001 * ((t * 7 + i) % 13) as f64;
                        if let Charge::Charged { .. } = ledger
                            .charge(
                                &id,
                                "ds",
                                &format!("q{t}-{i}"),
                                Cost {
                                    epsilon: eps,
                                    delta: 0.0,
                                },
                            )
                            .unwrap()
                        {
                            mine.push(eps);
                        }
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let spent = ledger.budget(&p.id, "ds").unwrap().unwrap().epsilon_spent;
    let sum: f64 = granted.iter().sum();
    assert!(
        granted.len() < 1024,
        "the budget allowed only some of the queries"
    );
    assert!(spent <= 10.0 + 1e-9, "spent {spent}");
    assert!(
        (spent - sum).abs() < 1e-6,
        "spent {spent} = sum of granted {sum}"
    );
    assert!((ledger.charged_total(&p.id, "ds").unwrap().epsilon - spent).abs() < 1e-9);
}

#[test]
fn audit_log_is_append_only() {
    let (_dir, ledger) = ledger();
    ledger
        .audit(None, "query", "{\"measure\":\"persons\"}", None, "refused")
        .unwrap();
    let conn = ledger.conn();
    assert!(conn.execute("UPDATE audit SET outcome = 'ok'", []).is_err());
    assert!(conn.execute("DELETE FROM audit", []).is_err());
    drop(conn);
    assert_eq!(ledger.audit_entries().unwrap().len(), 1);
}

/// `x * 10^12` rounded up or down, from the exact decimal expansion of
/// `x` (an independent route from the binary one in `exact_units`).
fn oracle_units(x: f64, up: bool) -> i64 {
    let text = format!("{x:.1100}");
    let (whole, frac) = text.split_once('.').unwrap();
    let units: i128 = format!("{whole}{}", &frac[..12]).parse().unwrap();
    let rest = frac[12..].bytes().any(|b| b != b'0');
    i64::try_from(units + i128::from(up && rest)).unwrap_or(i64::MAX)
}

#[test]
fn rounding_cases_floating_point_gets_wrong() {
    // 0.1 is slightly above 1/10 in binary: a cost of 0.1 is charged one
    // unit more than 10^11; a budget typed as 0.1 is 10^11 units.
    assert_eq!(units_up(0.1), 100_000_000_001);
    assert_eq!(units_down(0.1), 100_000_000_000);
    // 1e-6 is slightly below 10^-6: as a cost it is 10^6 units, and so is
    // a budget of 1e-6, so a query at delta 1e-6 fits that budget.
    assert_eq!(units_up(1e-6), 1_000_000);
    assert_eq!(units_down(1e-6), 1_000_000);
    assert_eq!(units_down(1e-13), 0);
    assert_eq!(units_down(2.5), 2_500_000_000_000);
    assert_eq!(units_down(1e7), i64::MAX);
    // A share of 0.1 is calibrated just below 0.1, so ten fit in 1.0.
    assert_eq!(share(0.1, 1), 0.1f64.next_down());
    assert_eq!(units_up(share(0.1, 1)), 100_000_000_000);
    assert_eq!(units_up(share(1.0, 3)), 333_333_333_333);
    assert_eq!(units_up(0.0), 0);
    assert_eq!(units_up(f64::MIN_POSITIVE), 1);
    assert_eq!(units_down(f64::MIN_POSITIVE), 0);
    assert_eq!(units_up(f64::NAN), i64::MAX);
    assert_eq!(units_down(f64::NAN), 0);
    assert_eq!(units_up(f64::INFINITY), i64::MAX);
    assert_eq!(units_up(1e300), i64::MAX);
    for x in [1.0, 2.5, 64.0, 1e6, 0.5, 0.375] {
        assert_eq!(units_up(x), units_down(x));
        assert_eq!(units_up(x), oracle_units(x, true));
    }
}

proptest! {
    #[test]
    fn rounding_never_favours_the_caller(cost in 0.0f64..100.0, total in 0.0f64..100.0) {
        // Exact oracle: Rust prints the exact decimal expansion of an f64.
        prop_assert_eq!(units_up(cost), oracle_units(cost, true));
        // A budget is read as its shortest decimal, which is within half
        // an ulp of the binary value: at most one unit above its floor.
        let (typed, binary) = (units_down(total), oracle_units(total, false));
        prop_assert!(typed == binary || typed == binary + 1, "{total}: {typed} vs {binary}");
        if units_up(cost) <= units_down(total) {
            prop_assert!(cost <= total);
        }
    }

    #[test]
    fn costs_round_up_exactly_at_every_scale(bits in 0u64..0x4330_0000_0000_0000) {
        // Every non-negative f64 below 2^52 (sub-normals included).
        let x = f64::from_bits(bits);
        prop_assert_eq!(units_up(x), oracle_units(x, true));
    }

    #[test]
    fn shares_fit_the_budget(budget in 0.0f64..10.0, n in 1usize..8) {
        let target = share(budget, n);
        prop_assert!(target >= 0.0);
        prop_assert!(units_up(target) * n as i64 <= units_down(budget));
        // And nothing is wasted beyond one unit per share.
        prop_assert!(units_down(budget) - units_up(target) * n as i64 <= 2 * n as i64);
    }
}
