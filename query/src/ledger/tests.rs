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
                Loss::approx(Cost {
                    epsilon: 0.1,
                    delta: 0.0
                })
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
            Loss::approx(Cost {
                epsilon: 0.6,
                delta: 0.0,
            }),
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
            Loss::approx(Cost {
                epsilon: 0.6,
                delta: 0.0,
            }),
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
                Loss::approx(Cost {
                    epsilon: 0.5,
                    delta: 0.0
                })
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
                Loss::approx(Cost {
                    epsilon: 0.1,
                    delta: 2e-6
                })
            )
            .unwrap(),
        Charge::Refused { .. }
    ));
    assert!((ledger.budget(&p.id, "ds").unwrap().unwrap().epsilon_left() - 0.4).abs() < 1e-9);
    // 0.4 in binary is a little above 4/10: one unit more than is left.
    let cost = |epsilon| {
        Loss::approx(Cost {
            epsilon,
            delta: 1e-6,
        })
    };
    let affords = |loss| {
        let preview = ledger.preview_charge(&p.id, "ds", loss).unwrap();
        preview.dataset.is_none() && preview.principal.unwrap().1.is_none()
    };
    assert!(!affords(cost(0.4)));
    assert!(matches!(
        ledger.charge(&p.id, "ds", "q4", cost(0.4)).unwrap(),
        Charge::Refused { .. }
    ));
    // Exactly the rest, as the service calibrates it, is allowed.
    assert!(affords(cost(share(0.4, 1))));
    assert!(matches!(
        ledger
            .charge(
                &p.id,
                "ds",
                "q4",
                Loss::approx(Cost {
                    epsilon: share(0.4, 1),
                    delta: 1e-6
                })
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
                Loss::approx(Cost {
                    epsilon: 1e-12,
                    delta: 0.0
                })
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
    let Charge::Charged { paid, .. } = ledger
        .charge(
            &p.id,
            "ds",
            "q",
            Loss::approx(Cost {
                epsilon: 0.75,
                delta: 0.0,
            }),
        )
        .unwrap()
    else {
        panic!("not charged")
    };
    // Stored, so released: it counts for good (an unstored one would be refunded at reopening).
    ledger.store_answer(paid, "{}").unwrap();
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
                                Loss::approx(Cost {
                                    epsilon: eps,
                                    delta: 0.0,
                                }),
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
    let pure: f64 = ledger.charged_total(&p.id, "ds").unwrap().pure.iter().sum();
    assert!((pure - spent).abs() < 1e-9);
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

// The entry of a re-served answer is queued, not awaited: a read of the log (even from another
// thread, on another ledger instance after this one is dropped) sees every queued entry, in
// order with the entries written around it.
#[test]
fn queued_reuse_entries_are_committed_before_the_log_is_read_and_when_the_ledger_drops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let ledger = Arc::new(Ledger::open(&path).unwrap());
    ledger.audit(None, "query", "first", None, "ok").unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let l = ledger.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    l.audit_reuse("p_1", "query", &format!("{t}-{i}")).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let entries = ledger.audit_entries().unwrap();
    assert_eq!(entries.len(), 201);
    assert_eq!(entries[0].2, "first");
    assert!(
        entries[1..]
            .iter()
            .all(|e| e.3 == "reused" && e.0.as_deref() == Some("p_1"))
    );
    for t in 0..4 {
        let mine: Vec<&str> = entries
            .iter()
            .map(|e| e.2.as_str())
            .filter(|d| d.starts_with(&format!("{t}-")))
            .collect();
        let want: Vec<String> = (0..50).map(|i| format!("{t}-{i}")).collect();
        assert_eq!(mine, want, "thread {t}'s entries, in its order");
    }
    // Queued and never read here: the drop commits them.
    for i in 0..20 {
        ledger
            .audit_reuse("p_2", "query", &format!("late-{i}"))
            .unwrap();
    }
    drop(Arc::into_inner(ledger).expect("the only handle"));
    let reopened = Ledger::open(&path).unwrap();
    let entries = reopened.audit_entries().unwrap();
    assert_eq!(entries.len(), 221);
    assert_eq!(entries[220].2, "late-19");
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

fn gaussian(rho: f64) -> Loss {
    Loss::rho(rho)
}

fn pure(epsilon: f64) -> Loss {
    Loss::approx(Cost {
        epsilon,
        delta: 0.0,
    })
}

fn threshold(epsilon: f64, delta: f64) -> Loss {
    Loss::approx(Cost { epsilon, delta })
}

fn charged(c: Charge) -> (Paid, Budget) {
    match c {
        Charge::Charged { paid, budget } => (paid, budget),
        other => panic!("expected a charge, got {other:?}"),
    }
}

/// A single Laplace charge never costs more than its epsilon; many Gaussian charges compose in
/// rho far below the sum of their one-by-one conversions; the budget view says so exactly.
#[test]
fn a_laplace_charge_costs_its_epsilon_and_gaussians_compose_below_their_sum() {
    let (_dir, ledger) = ledger();
    let (p, _) = ledger.add_principal("a", Role::Analyst, None).unwrap();
    ledger.set_budget(&p.id, "ds", 5.0, 1e-6).unwrap();
    let (paid, budget) = charged(ledger.charge(&p.id, "ds", "laplace", pure(1.0)).unwrap());
    assert_eq!(paid.loss(), pure(1.0));
    assert_eq!(budget.epsilon_spent, 1.0);
    assert_eq!(budget.pure_epsilon_spent, 1.0);
    assert_eq!((budget.rho_spent, budget.delta_spent), (0.0, 0.0));
    assert_eq!(budget.epsilon_left(), 4.0);

    // The issue's trap: 20 Gaussian counts at (0.25, 5e-8) each add up to 5 one by one.
    let rho = ctstats_dp::rho_for(0.25, 5e-8).unwrap();
    let (_dir2, ledger2) = self::ledger();
    let (q, _) = ledger2.add_principal("b", Role::Analyst, None).unwrap();
    ledger2.set_budget(&q.id, "ds", 5.0, 1e-6).unwrap();
    let mut last = None;
    for i in 0..20 {
        last = Some(
            charged(
                ledger2
                    .charge(&q.id, "ds", &format!("g{i}"), gaussian(rho))
                    .unwrap(),
            )
            .1,
        );
    }
    let b = last.unwrap();
    let expected = ctstats_dp::epsilon_of_rho(amount(units_up(rho) * 20), 1e-6).unwrap();
    assert_eq!(b.epsilon_spent, expected);
    assert!(
        b.epsilon_spent < 2.5,
        "20 Gaussians composed to {}",
        b.epsilon_spent
    );
    assert!((b.rho_spent - 20.0 * rho).abs() < 1e-10);
    assert_eq!(b.delta_spent, 0.0);
    // The guarantee holds: the composition fits (epsilon_spent, delta_total).
    let spend = ledger2.charged_total(&q.id, "ds").unwrap();
    assert_eq!(spend.epsilon_at(1e-6).unwrap(), Some(b.epsilon_spent));

    // A pure charge beside them joins rho as epsilon^2 / 2 where that is smaller.
    let (_, b2) = charged(ledger2.charge(&q.id, "ds", "small", pure(0.01)).unwrap());
    assert!(b2.epsilon_spent < b.epsilon_spent + 0.01, "{b2:?}");
    assert!(b2.epsilon_spent > b.epsilon_spent);
}

/// A rho budget: the rho charges and the pure ones as epsilon^2 / 2 stay within it; a delta
/// charge is refused as such; nothing refused is recorded.
#[test]
fn rho_budgets_count_pure_charges_and_take_no_delta() {
    let (_dir, ledger) = ledger();
    let (p, _) = ledger.add_principal("a", Role::Analyst, None).unwrap();
    let b = ledger
        .set_total(&p.id, "ds", Total::Rho { rho: 0.5 })
        .unwrap();
    assert_eq!(b.rho_total, Some(0.5));
    assert_eq!(b.rho_left(), Some(0.5));
    assert_eq!((b.epsilon_total, b.delta_total), (0.0, 0.0));
    charged(ledger.charge(&p.id, "ds", "g1", gaussian(0.2)).unwrap());
    // 0.6^2 / 2 = 0.18: 0.38 in all.
    let (_, b) = charged(ledger.charge(&p.id, "ds", "l1", pure(0.6)).unwrap());
    assert!((b.rho_spent - 0.38).abs() < 1e-11, "{b:?}");
    assert!((b.rho_left().unwrap() - 0.12).abs() < 1e-11);
    assert_eq!(b.pure_epsilon_spent, 0.6);
    match ledger.charge(&p.id, "ds", "g2", gaussian(0.13)).unwrap() {
        Charge::Refused { by, reason, .. } => {
            assert_eq!((by, reason), (Scope::Principal, Refusal::Exhausted));
        }
        other => panic!("{other:?}"),
    }
    match ledger
        .charge(&p.id, "ds", "t", threshold(0.01, 1e-9))
        .unwrap()
    {
        Charge::Refused { reason, .. } => assert_eq!(reason, Refusal::DeltaOnRhoBudget),
        other => panic!("{other:?}"),
    }
    // 0.12 is left but for the rounding against the caller: 0.11 fits.
    charged(ledger.charge(&p.id, "ds", "g3", gaussian(0.11)).unwrap());
    assert_eq!(ledger.charges(&p.id, "ds").unwrap().len(), 3);
    // Back to (epsilon, delta) and to rho again: what was spent stays spent.
    let b = ledger.set_budget(&p.id, "ds", 10.0, 1e-6).unwrap();
    assert_eq!(b.rho_total, None);
    assert!((b.rho_spent - 0.31).abs() < 1e-11);
    charged(
        ledger
            .charge(&p.id, "ds", "t", threshold(0.01, 1e-9))
            .unwrap(),
    );
    let refused = ledger.set_total(&p.id, "ds", Total::Rho { rho: 5.0 });
    assert!(
        matches!(refused, Err(LedgerError::InvalidAmount(ref m)) if m.contains("approximate")),
        "{refused:?}"
    );
    for bad in [-1.0, f64::NAN, 2e6] {
        assert!(
            ledger
                .set_total(&p.id, "ds", Total::Rho { rho: bad })
                .is_err()
        );
    }
    assert!(ledger.charge(&p.id, "ds", "x", gaussian(f64::NAN)).is_err());
}

/// A refusal by the dataset-wide budget charges nobody: no charge row, the caller's budget
/// unchanged, the other principals' spending not in it.
#[test]
fn a_dataset_refusal_charges_nobody() {
    let (_dir, ledger) = ledger();
    let (a, _) = ledger.add_principal("a", Role::Analyst, None).unwrap();
    let (b, _) = ledger.add_principal("b", Role::Researcher, None).unwrap();
    assert_eq!(ledger.dataset_budget("ds").unwrap(), None);
    for p in [&a, &b] {
        ledger.set_budget(&p.id, "ds", 10.0, 1e-5).unwrap();
    }
    let d = ledger
        .set_dataset_budget(
            "ds",
            Total::Approx {
                epsilon: 1.0,
                delta: 1e-6,
            },
        )
        .unwrap();
    assert_eq!((d.epsilon_total, d.epsilon_spent), (1.0, 0.0));
    charged(ledger.charge(&a.id, "ds", "q", pure(0.7)).unwrap());
    let before = ledger.budget(&b.id, "ds").unwrap().unwrap();
    match ledger.charge(&b.id, "ds", "q", pure(0.4)).unwrap() {
        Charge::Refused { by, reason, budget } => {
            assert_eq!((by, reason), (Scope::Dataset, Refusal::Exhausted));
            assert!((budget.epsilon_left() - 0.3).abs() < 1e-12, "{budget:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(ledger.charges(&b.id, "ds").unwrap().is_empty());
    assert_eq!(ledger.budget(&b.id, "ds").unwrap().unwrap(), before);
    // The caller's own budget is checked first and named when it refuses.
    ledger.set_budget(&b.id, "ds", 0.25, 0.0).unwrap();
    assert!(matches!(
        ledger.charge(&b.id, "ds", "q", pure(0.3)).unwrap(),
        Charge::Refused {
            by: Scope::Principal,
            ..
        }
    ));
    // What fits in both is charged, to both.
    charged(ledger.charge(&b.id, "ds", "q", pure(0.1)).unwrap());
    let d = ledger.dataset_budget("ds").unwrap().unwrap();
    assert!((d.epsilon_spent - 0.8).abs() < 1e-12);
    // Another dataset is not capped by this one.
    ledger.set_budget(&b.id, "other", 1.0, 0.0).unwrap();
    charged(ledger.charge(&b.id, "other", "q", pure(1.0)).unwrap());
    // A preview says what would be left and who would refuse, and charges nothing.
    let preview = ledger.preview_charge(&a.id, "ds", pure(0.3)).unwrap();
    let (after, refusal) = preview.dataset.unwrap();
    assert_eq!(refusal, Some(Refusal::Exhausted));
    assert!((after.epsilon_spent - 1.1).abs() < 1e-12);
    let (mine, refusal) = preview.principal.unwrap();
    assert_eq!(refusal, None);
    assert!((mine.epsilon_spent - 1.0).abs() < 1e-12);
    assert_eq!(ledger.charges(&a.id, "ds").unwrap().len(), 1);
}

/// 64 principals on 64 threads, each with a budget of its own large enough, against a small
/// dataset-wide budget: together they never overspend it.
#[test]
fn concurrent_principals_never_overspend_the_dataset_budget() {
    let (_dir, ledger) = ledger();
    let ledger = Arc::new(ledger);
    let (epsilon, delta) = (1.0, 1e-6);
    ledger
        .set_dataset_budget("ds", Total::Approx { epsilon, delta })
        .unwrap();
    let ids: Vec<String> = (0..64)
        .map(|i| {
            let (p, _) = ledger
                .add_principal(&format!("p{i}"), Role::Researcher, None)
                .unwrap();
            ledger.set_budget(&p.id, "ds", 100.0, 1e-3).unwrap();
            p.id
        })
        .collect();
    let granted: Vec<Loss> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(t, id)| {
                let ledger = ledger.clone();
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..4 {
                        let loss = match (t + i) % 3 {
                            0 => gaussian(0.002 + 0.0001 * i as f64),
                            1 => pure(0.02),
                            _ => threshold(0.01, 1e-8),
                        };
                        match ledger.charge(id, "ds", &format!("q{i}"), loss).unwrap() {
                            Charge::Charged { paid, .. } => mine.push(paid.loss()),
                            Charge::Refused { by, .. } => assert_eq!(by, Scope::Dataset),
                            other => panic!("{other:?}"),
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
    assert!(granted.len() < 256, "the dataset budget allowed only some");
    assert!(granted.len() > 10, "{} granted", granted.len());
    let all = ledger.dataset_charged_total("ds").unwrap();
    let composed = all.epsilon_at(delta).unwrap().unwrap();
    assert!(composed <= epsilon, "composed {composed}");
    assert!(all.approx_delta <= delta);
    // The granted charges, as the callers were told, fit the dataset budget together.
    let mut spend = Spend::default();
    for l in &granted {
        spend.rho += l.rho;
        if l.delta > 0.0 {
            spend.approx_epsilon += l.epsilon;
            spend.approx_delta += l.delta;
        } else if l.epsilon > 0.0 {
            spend.pure.push(l.epsilon);
        }
    }
    assert!(
        ctstats_dp::zcdp::fits(
            spend.rho,
            spend.approx_epsilon,
            spend.approx_delta,
            &spend.pure,
            (epsilon, delta)
        )
        .unwrap()
    );
    let d = ledger.dataset_budget("ds").unwrap().unwrap();
    assert_eq!(d.epsilon_spent, composed);
    let rows: usize = ids
        .iter()
        .map(|id| ledger.charges(id, "ds").unwrap().len())
        .sum();
    assert_eq!(rows, granted.len());
}

fn fixture() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ledger-v1.sqlite")
}

/// One version-1 charge row: (id, principal, epsilon units, delta units, answer).
type V1Charge = (i64, String, i64, i64, Option<String>);

/// One version-1 budget row: (principal, epsilon and delta totals, epsilon and delta spent).
type V1Budget = (String, i64, i64, i64, i64);

fn v1_rows(path: &std::path::Path) -> (Vec<V1Charge>, Vec<V1Budget>) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 0, "the fixture is a version-1 ledger");
    let mut stmt = conn
        .prepare("SELECT id, principal_id, epsilon, delta, answer FROM charges ORDER BY id")
        .unwrap();
    let charges = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT principal_id, epsilon_total, delta_total, epsilon_spent, delta_spent FROM budgets",
        )
        .unwrap();
    let budgets = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap();
    (charges, budgets)
}

/// A ledger written by version 1 (the fixture: Laplace, Gaussian, threshold and mean queries,
/// a release, a charge cut off before its answer) opens with every charge kept: Laplace ones
/// unchanged as pure epsilon, Gaussian ones in rho from their stored noise (converting at their
/// old delta to at most their old epsilon), the rest as they were; budgets, answers and the
/// release still readable, and a stored query asked again is served free.
#[test]
fn a_version_1_ledger_migrates_without_losing_a_charge() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    std::fs::copy(fixture(), &path).unwrap();
    let (old, old_budgets) = v1_rows(&path);
    assert_eq!(old.len(), 8);
    let ledger = Ledger::open(&path).unwrap();
    let version: i64 = ledger
        .conn()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, migrate::SCHEMA_VERSION);
    let mut kinds = std::collections::BTreeMap::new();
    let mut new_count = 0;
    for (pid, eps_total, delta_total, eps_spent, delta_spent) in &old_budgets {
        let budget = ledger.budget(pid, "ds").unwrap().unwrap();
        assert_eq!(units_down(budget.epsilon_total), *eps_total);
        assert_eq!(units_down(budget.delta_total), *delta_total);
        let records = ledger.charges(pid, "ds").unwrap();
        new_count += records.len();
        let mine: Vec<&V1Charge> = old.iter().filter(|c| &c.1 == pid).collect();
        assert_eq!(records.len(), mine.len(), "no charge lost or added");
        let mut gaussian_delta = 0;
        for (record, (id, _, eps, delta, answer)) in records.iter().zip(mine) {
            assert_eq!(record.id, *id);
            assert_eq!(record.released, answer.is_some());
            let loss = record.loss;
            let is_gaussian = answer
                .as_deref()
                .is_some_and(|a| a.contains(r#""mechanism":"gaussian""#));
            if *delta == 0 {
                kinds.entry("pure").and_modify(|n| *n += 1).or_insert(1);
                assert_eq!(loss, pure(amount(*eps)));
            } else if is_gaussian {
                kinds.entry("gaussian").and_modify(|n| *n += 1).or_insert(1);
                gaussian_delta += delta;
                assert!(loss.rho > 0.0 && loss.epsilon == 0.0 && loss.delta == 0.0);
                let converted = ctstats_dp::epsilon_of_rho(loss.rho, amount(*delta)).unwrap();
                assert!(
                    converted <= amount(*eps) * (1.0 + 1e-9),
                    "charge {id}: rho {} converts to {converted} > {}",
                    loss.rho,
                    amount(*eps)
                );
                assert!(
                    converted > amount(*eps) * 0.999,
                    "the rho is the same noise's"
                );
            } else {
                kinds.entry("approx").and_modify(|n| *n += 1).or_insert(1);
                assert_eq!(loss, threshold(amount(*eps), amount(*delta)));
            }
        }
        // The composed spend is at most the old sum; the approximate deltas are the old ones
        // but the Gaussians', which are now in rho.
        assert!(
            budget.epsilon_spent <= amount(*eps_spent) * (1.0 + 1e-9),
            "{budget:?}"
        );
        assert_eq!(budget.delta_spent, amount(delta_spent - gaussian_delta));
    }
    assert_eq!(new_count, old.len());
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [("approx", 2), ("gaussian", 2), ("pure", 4)]
    );
    assert_eq!(ledger.dataset_budget("ds").unwrap(), None);
    // Reopening is a no-op.
    drop(ledger);
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.charges(&old[0].1, "ds").unwrap().len(), 5);
    // The stored answers and the release are served as they were.
    let principals = ledger.principals().unwrap();
    let researcher = principals.iter().find(|p| p.name == "uni").unwrap().clone();
    let analyst = principals.iter().find(|p| p.name == "hq").unwrap().clone();
    let config = crate::service::ServiceConfig {
        data: dir.path().join("no-data"),
        dataset: "ds".into(),
        missions: crate::testdata::missions(),
        max_upload_bytes: 0,
        max_concurrent_queries: 1,
        memory_budget: crate::service::DEFAULT_MEMORY_BUDGET,
    };
    let service = crate::service::Service::new(config, ledger, None);
    crate::testdata::block_on(async {
        for (_, pid, _, _, answer) in &old {
            let Some(answer) = answer else { continue };
            let stored: serde_json::Value = serde_json::from_str(answer).unwrap();
            let Some(query) = stored.get("query") else {
                continue;
            };
            let who = if *pid == researcher.id {
                &researcher
            } else if *pid == analyst.id {
                &analyst
            } else {
                continue;
            };
            let spec = crate::testdata::spec(&query.to_string());
            assert_eq!(spec.hash(), stored["query_hash"].as_str().unwrap());
            let again = service.ask(who, spec).await.unwrap();
            assert!(again.reused, "{query}");
            assert_eq!(
                serde_json::to_value(&again.answer).unwrap(),
                stored["answer"]
            );
        }
        let releases = service.releases(&analyst).await.unwrap();
        assert_eq!(releases.len(), 1);
        service.release(&analyst, 1).await.unwrap();
    });
}

/// Old spent totals beyond their charges are kept as a charge; a newer schema is refused.
#[test]
fn migration_keeps_unaccounted_spending_and_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    std::fs::copy(fixture(), &path).unwrap();
    let (_, budgets) = v1_rows(&path);
    let pid = budgets[0].0.clone();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE budgets SET epsilon_spent = epsilon_spent + 250000000000 WHERE principal_id = ?1",
            [&pid],
        )
        .unwrap();
    }
    let ledger = Ledger::open(&path).unwrap();
    let records = ledger.charges(&pid, "ds").unwrap();
    let kept = records.last().unwrap();
    assert_eq!(kept.query_hash, migrate::UNACCOUNTED);
    assert_eq!(kept.loss, pure(0.25));
    drop(ledger);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", migrate::SCHEMA_VERSION + 1)
            .unwrap();
    }
    assert!(matches!(
        Ledger::open(&path),
        Err(LedgerError::NewerSchema(v)) if v == migrate::SCHEMA_VERSION + 1
    ));
}

// A charge whose answer its process never stored is refunded when the ledger is next opened,
// once that process is gone; never while it lives, and a refunded charge takes no answer.
#[test]
fn pending_charges_of_a_dead_owner_are_refunded_at_open() {
    let (dir, first) = ledger();
    let path = dir.path().join("ledger.sqlite");
    let (p, _) = first.add_principal("a", Role::Analyst, None).unwrap();
    first.set_budget(&p.id, "ds", 1.0, 0.0).unwrap();
    let charged = |l: &Ledger, hash: &str| match l.charge(&p.id, "ds", hash, pure(0.25)).unwrap() {
        Charge::Charged { paid, .. } => paid,
        other => panic!("{other:?}"),
    };
    let stored = charged(&first, "stored");
    first.store_answer(stored, r#"{"answer":1}"#).unwrap();
    let pending = charged(&first, "pending");

    // The owner is alive: a second instance leaves its pending charge alone.
    let second = Ledger::open(&path).unwrap();
    let spent = |l: &Ledger| l.budget(&p.id, "ds").unwrap().unwrap().pure_epsilon_spent;
    assert!((spent(&second) - 0.5).abs() < 1e-9);
    assert!(second.refund_abandoned().unwrap().is_empty());
    let unstored = charged(&second, "second's");
    drop(second); // gone, with a charge pending

    // The first instance is still alive; opening again refunds only the gone one's charge.
    let third = Ledger::open(&path).unwrap();
    assert!(
        (spent(&third) - 0.5).abs() < 1e-9,
        "the gone owner's 0.25 is back"
    );
    let records = third.charges(&p.id, "ds").unwrap();
    let flags: Vec<(&str, bool, bool)> = records
        .iter()
        .map(|c| (c.query_hash.as_str(), c.released, c.refunded))
        .collect();
    assert_eq!(
        flags,
        [
            ("stored", true, false),
            ("pending", false, false),
            ("second's", false, true)
        ]
    );
    assert!(matches!(
        third.store_answer(unstored, "{}"),
        Err(LedgerError::Refunded(_))
    ));
    let audit = third.audit_entries().unwrap();
    let refunds: Vec<_> = audit.iter().filter(|e| e.1 == "refund").collect();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].0.as_deref(), Some(p.id.as_str()));
    assert_eq!(refunds[0].3, "refunded");

    // The first owner dies with its charge pending: refunded too; the stored one stays.
    drop(first);
    let _unstored = pending;
    assert_eq!(third.refund_abandoned().unwrap().len(), 1);
    assert!((spent(&third) - 0.25).abs() < 1e-9);
    // Only the living instance's lock file is left.
    let locks = std::fs::read_dir(dir.path().join("ledger.sqlite.owners"))
        .unwrap()
        .count();
    assert_eq!(locks, 1);
}

// Concurrent audit entries share group commits and every one is kept, in the order each
// caller wrote its own.
#[test]
fn audit_entries_from_many_threads_are_all_committed() {
    let (_dir, ledger) = ledger();
    let ledger = Arc::new(ledger);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let detail = format!("{t} {i}");
                    ledger
                        .audit(None, "preview", &detail, None, "previewed")
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let entries = ledger.audit_entries().unwrap();
    assert_eq!(entries.len(), 400);
    for t in 0..8 {
        let mine: Vec<usize> = entries
            .iter()
            .filter_map(|e| {
                let (who, i) = e.2.split_once(' ')?;
                (who == t.to_string()).then(|| i.parse().unwrap())
            })
            .collect();
        assert_eq!(mine, (0..50).collect::<Vec<_>>());
    }
}

// Two ledger instances on one file (two processes, each with its own group-commit writer), 16
// threads each, charging and storing together: the budget is never overspent, what is spent is
// exactly what was granted, and every granted charge's answer is stored.
#[test]
fn two_instances_charging_in_groups_never_overspend_and_store_every_answer() {
    let (dir, first) = ledger();
    let second = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
    let (p, _) = first.add_principal("a", Role::Analyst, None).unwrap();
    first.set_budget(&p.id, "ds", 1.0, 0.0).unwrap();
    let instances = [Arc::new(first), Arc::new(second)];
    let granted: Vec<(String, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|t| {
                let ledger = instances[t % 2].clone();
                let id = p.id.clone();
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..8 {
                        let (hash, eps) = (format!("q{t}-{i}"), 0.01 + 0.001 * (i % 3) as f64);
                        if let Charge::Charged { paid, .. } =
                            ledger.charge(&id, "ds", &hash, pure(eps)).unwrap()
                        {
                            ledger.store_answer(paid, &format!("\"{hash}\"")).unwrap();
                            mine.push((hash, eps));
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
    let ledger = &instances[0];
    let spent = ledger
        .budget(&p.id, "ds")
        .unwrap()
        .unwrap()
        .pure_epsilon_spent;
    let sum: f64 = granted.iter().map(|(_, e)| e).sum();
    assert!(granted.len() < 256, "the budget took only some of the 256");
    assert!(spent <= 1.0 + 1e-9, "spent {spent}");
    assert!((spent - sum).abs() < 1e-6, "spent {spent}, granted {sum}");
    let charges = ledger.charges(&p.id, "ds").unwrap();
    assert_eq!(charges.len(), granted.len(), "a refusal records no charge");
    assert!(
        charges.iter().all(|c| c.released),
        "every answer was stored"
    );
    for (hash, _) in &granted {
        match ledger.reused(&p.id, "ds", hash).unwrap() {
            Some(Charge::Reused { answer, .. }) => assert_eq!(answer, format!("\"{hash}\"")),
            other => panic!("{hash}: {other:?}"),
        }
    }
}

// A version 3 ledger (no mission bindings) opens at version 4 with every principal bound to
// none; binding replaces the set, and only a principal that exists can be bound.
#[test]
fn principals_from_before_bindings_are_bound_to_none_until_bound() {
    let (dir, ledger) = ledger();
    let path = dir.path().join("ledger.sqlite");
    let (old, _) = ledger
        .add_principal("old ngo", Role::Ngo, Some("kaz-ngo-1"))
        .unwrap();
    {
        let conn = ledger.conn();
        conn.execute_batch(
            "DROP TABLE principal_missions; DROP TABLE synthetic_tables; PRAGMA user_version = 3;",
        )
        .unwrap();
    }
    drop(ledger);
    let ledger = Ledger::open(&path).unwrap();
    let version: i64 = ledger
        .conn()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, migrate::SCHEMA_VERSION);
    assert!(ledger.synthetic_tables("ds").unwrap().is_empty());
    assert!(
        ledger
            .principal(&old.id)
            .unwrap()
            .unwrap()
            .missions
            .is_empty()
    );
    let bound = ledger
        .bind_missions(&old.id, &["UZB".into(), "KAZ".into()])
        .unwrap();
    assert_eq!(bound.missions, ["KAZ", "UZB"]);
    let again = ledger.bind_missions(&old.id, &["KAZ".into()]).unwrap();
    assert_eq!(
        again.missions,
        ["KAZ"],
        "a binding replaces the earlier one"
    );
    let (new, token) = ledger
        .add_principal_for("new ngo", Role::Ngo, Some("o"), &["KGZ".into()])
        .unwrap();
    assert_eq!(
        ledger.authenticate(&token).unwrap().unwrap().missions,
        ["KGZ"]
    );
    assert_eq!(ledger.principals().unwrap().len(), 2);
    assert!(new.missions == ["KGZ"]);
    assert!(matches!(
        ledger.bind_missions("p_nobody", &["KAZ".into()]),
        Err(LedgerError::NoSuchPrincipal(_))
    ));
}

// A re-served answer reports its caller's budget from a cache of the charges read before: every
// commit since, by this instance's writer, by another instance on the same file (another
// process), or on the connection itself (an in-memory ledger), is seen at the next read.
#[test]
fn a_reserved_answer_reports_every_charge_committed_since_by_anyone() {
    let spent = |ledger: &Ledger, id: &str| match ledger.reused(id, "ds", "q1").unwrap() {
        Some(Charge::Reused { budget, .. }) => budget.pure_epsilon_spent,
        other => panic!("{other:?}"),
    };
    let previewed = |ledger: &Ledger, id: &str| {
        let p = ledger.preview_charge(id, "ds", pure(0.0)).unwrap();
        let dataset = p.dataset.map(|(b, _)| b.pure_epsilon_spent);
        (p.principal.unwrap().0.pure_epsilon_spent, dataset)
    };
    let pay = |ledger: &Ledger, id: &str, hash: &str, epsilon: f64| {
        let (paid, _) = charged(ledger.charge(id, "ds", hash, pure(epsilon)).unwrap());
        ledger.store_answer(paid, "1").unwrap();
    };
    let (dir, first) = ledger();
    let second = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
    let (p, _) = first.add_principal("a", Role::Analyst, None).unwrap();
    first.set_budget(&p.id, "ds", 10.0, 0.0).unwrap();
    first
        .set_dataset_budget(
            "ds",
            Total::Approx {
                epsilon: 10.0,
                delta: 0.0,
            },
        )
        .unwrap();
    pay(&first, &p.id, "q1", 0.125);
    for _ in 0..3 {
        assert!((spent(&first, &p.id) - 0.125).abs() < 1e-9);
    }
    assert_eq!(previewed(&first, &p.id), (0.125, Some(0.125)));
    pay(&first, &p.id, "q2", 0.25);
    assert!((spent(&first, &p.id) - 0.375).abs() < 1e-9, "own writer");
    pay(&second, &p.id, "q3", 0.5);
    assert!(
        (spent(&first, &p.id) - 0.875).abs() < 1e-9,
        "another instance"
    );
    assert_eq!(previewed(&first, &p.id), (0.875, Some(0.875)));

    let memory = Ledger::open(std::path::Path::new(":memory:")).unwrap();
    let (m, _) = memory.add_principal("m", Role::Analyst, None).unwrap();
    memory.set_budget(&m.id, "ds", 10.0, 0.0).unwrap();
    pay(&memory, &m.id, "q1", 0.125);
    assert!((spent(&memory, &m.id) - 0.125).abs() < 1e-9);
    pay(&memory, &m.id, "q2", 0.25);
    assert!(
        (spent(&memory, &m.id) - 0.375).abs() < 1e-9,
        "the connection's own write"
    );
}
