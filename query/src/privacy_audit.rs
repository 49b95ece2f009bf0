//! Empirical privacy audit, in the style of StatDP and Google's stochastic tester, run against
//! the real query path: DataFusion truncation and grouping ([`aggregate`]) on a dataset `D` and
//! on its neighbour `D'` (`D` without the person who contributes the most records), then the
//! release with OpenDP noise ([`answer::release`]), many times on each.
//!
//! The test: for an event `E` on the released answer, `n` runs on `D` and on `D'` give the
//! frequencies of `E`, and one-sided Hoeffding bounds around them. The audit flags a violation of
//! (epsilon, delta)-DP when
//!
//! ```text
//! lower(P_D[E]) > e^epsilon * upper(P_D'[E]) + delta      (or with D and D' swapped)
//! ```
//!
//! Each bound fails with probability at most `ALPHA / (4 m)` for `m` events, so a correct
//! mechanism is flagged with probability at most `ALPHA` (union bound), whatever the events.
//! The events are chosen on a separate pilot run (as StatDP does), so choosing them does not bias
//! the test: for every cell whose exact aggregate differs between `D` and `D'`, and for the sum of
//! those cells, `estimate >= t` and `estimate < t` at thresholds spread over the pilot's values;
//! and, with threshold keys, whether each such cell is released at all.
//!
//! The exact aggregates are computed once per dataset (DataFusion is deterministic); the noise is
//! drawn afresh for every run from OpenDP's secure source. The audit must be able to fail: two
//! deliberately broken pipelines (noise for twice the declared epsilon; data truncated at a
//! higher contribution bound than the noise was priced for) are flagged.

use std::collections::{BTreeMap, BTreeSet};

use crate::answer::{self, CostPlan};
use crate::dp::{Mechanism, pmf};
use crate::ledger::Paid;
use crate::plan::{Aggregates, aggregate};
use crate::spec::ValidatedSpec;
use crate::testdata::*;

/// Runs per dataset for the test proper (and a tenth of that for the pilot).
const RUNS: usize = 20_000;
/// Family-wise false-alarm rate of one audit.
const ALPHA: f64 = 1e-6;

/// The period every audited query covers.
const PERIOD: &str = r#""period":{"from":"2004-01","to":"2005-12"}"#;

/// `D`: 40 ordinary persons with one or two records each, over two missions, two years, both
/// genders, several exploitation types, closure delays and shelter outcomes; and person `x`, who
/// has the most records (eight, in KGZ, 2004 and 2005, each of one type, closed late, in a shelter).
fn dataset() -> Vec<Rec> {
    const TYPES: [&str; 4] = [
        "forced_labour",
        "sexual_exploitation",
        "forced_begging",
        "other",
    ];
    let mut recs = Vec::new();
    for p in 0..40 {
        for r in 0..(1 + p % 2) {
            let year = 2004 + (p % 2) as i32;
            let mut rec = rec(&format!("p{p:02}"), &format!("p{p:02}-r{r}"), year);
            rec.mission = if p % 3 == 0 { "UKR" } else { "KGZ" };
            rec.registration = (year, 1 + (p % 12) as u32);
            rec.closed = (p % 4 != 0).then_some((year + 1, 1 + (p % 6) as u32));
            rec.gender = Some(if p % 2 == 0 { "female" } else { "male" });
            rec.types = Some(vec![TYPES[p % 4]]);
            rec.shelter_accepted = (p % 5 != 0).then_some(p % 3 == 0);
            recs.push(rec);
        }
    }
    // Alternating years and types, so that the records kept under a bound of 2 reach two cells
    // of every grouping: the neighbour attains the sensitivity the noise is priced for.
    for r in 0..8 {
        let year = 2004 + (r % 2) as i32;
        let mut rec = rec("x", &format!("x-r{r}"), year);
        rec.registration = (year, 2);
        rec.closed = Some((2005, 10));
        rec.gender = Some("female");
        rec.types = Some(vec![TYPES[r % 2]]);
        rec.shelter_accepted = Some(true);
        recs.push(rec);
    }
    recs
}

fn neighbour(recs: &[Rec]) -> Vec<Rec> {
    recs.iter().filter(|r| r.person != "x").cloned().collect()
}

/// The exact aggregates of `spec` over `recs`, through DataFusion.
fn exact(recs: &[Rec], spec: &ValidatedSpec) -> Aggregates {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), recs);
    block_on(aggregate(
        &Paid::for_tests(),
        &in_memory(dir.path()),
        &missions(),
        spec,
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// One released answer: cell key → estimate, for the cells released.
type Run = BTreeMap<String, f64>;

/// What the audit releases from: the spec and plan the noise is drawn with, and the aggregates.
struct Pipeline {
    spec: ValidatedSpec,
    plan: CostPlan,
    d: Aggregates,
    d_prime: Aggregates,
}

impl Pipeline {
    /// The real pipeline for `json` on `D` and `D'`.
    fn new(json: &str) -> Pipeline {
        let spec = spec(json);
        let plan = CostPlan::new(&spec).unwrap();
        let recs = dataset();
        Pipeline {
            d: exact(&recs, &spec),
            d_prime: exact(&neighbour(&recs), &spec),
            spec,
            plan,
        }
    }

    fn runs(&self, aggregates: &Aggregates, n: usize) -> Vec<Run> {
        (0..n)
            .map(|_| {
                answer::release(&self.spec, aggregates, &self.plan)
                    .unwrap_or_else(|e| panic!("{e}"))
                    .cells
                    .into_inner()
                    .into_iter()
                    .map(|c| (c.key.join("|"), c.estimate))
                    .collect()
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Event {
    /// The cell is released with an estimate of at least `t`.
    AtLeast(String, f64),
    /// The cell is released with an estimate below `t`.
    Below(String, f64),
    /// The cells are all released and their estimates add up to at least `t`.
    SumAtLeast(Vec<String>, f64),
    /// The cells are all released and their estimates add up to less than `t`.
    SumBelow(Vec<String>, f64),
    /// The cell is released.
    Released(String),
}

impl Event {
    fn holds(&self, run: &Run) -> bool {
        let sum = |keys: &[String]| -> Option<f64> {
            keys.iter().map(|k| run.get(k)).sum::<Option<f64>>()
        };
        match self {
            Event::AtLeast(k, t) => run.get(k).is_some_and(|v| v >= t),
            Event::Below(k, t) => run.get(k).is_some_and(|v| v < t),
            Event::SumAtLeast(keys, t) => sum(keys).is_some_and(|v| v >= *t),
            Event::SumBelow(keys, t) => sum(keys).is_some_and(|v| v < *t),
            Event::Released(k) => run.contains_key(k),
        }
    }
}

/// The cells whose exact aggregates differ between the two datasets (a cell missing on one side
/// differs).
fn differing(a: &Aggregates, b: &Aggregates) -> Vec<String> {
    let values = |x: &Aggregates| -> BTreeMap<String, Vec<i64>> {
        x.cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    c.join("|"),
                    x.components.iter().map(|p| p.values[i]).collect(),
                )
            })
            .collect()
    };
    let (va, vb) = (values(a), values(b));
    let keys: BTreeSet<&String> = va.keys().chain(vb.keys()).collect();
    keys.into_iter()
        .filter(|k| va.get(*k) != vb.get(*k))
        .cloned()
        .collect()
}

/// Thresholds spread over the pilot's values of a statistic: its 5% to 95% quantiles.
fn thresholds(mut values: Vec<f64>) -> Vec<f64> {
    if values.is_empty() {
        return Vec::new();
    }
    values.sort_by(f64::total_cmp);
    let mut ts: Vec<f64> = [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95]
        .iter()
        .map(|q| values[((values.len() - 1) as f64 * q).round() as usize])
        .collect();
    ts.dedup();
    ts
}

/// Events for the differing cells, placed with the pilot runs.
fn events(cells: &[String], pilot: &[Run]) -> Vec<Event> {
    let mut events = Vec::new();
    for k in cells {
        events.push(Event::Released(k.clone()));
        let values = pilot.iter().filter_map(|r| r.get(k).copied()).collect();
        for t in thresholds(values) {
            events.push(Event::AtLeast(k.clone(), t));
            events.push(Event::Below(k.clone(), t));
        }
    }
    if cells.len() > 1 {
        let sums = pilot
            .iter()
            .filter_map(|r| cells.iter().map(|k| r.get(k)).sum::<Option<f64>>())
            .collect();
        for t in thresholds(sums) {
            events.push(Event::SumAtLeast(cells.to_vec(), t));
            events.push(Event::SumBelow(cells.to_vec(), t));
        }
    }
    events
}

/// The audit's verdict on one pipeline.
#[derive(Debug)]
struct Verdict {
    events: usize,
    /// The largest epsilon the data proves with confidence `1 - ALPHA` (0 when none).
    epsilon_lower_bound: f64,
    violations: Vec<String>,
}

/// Audit `pipeline` at the declared `(epsilon, delta)`.
fn audit(pipeline: &Pipeline, epsilon: f64, delta: f64) -> Verdict {
    let differ = differing(&pipeline.d, &pipeline.d_prime);
    audit_runs(
        differ,
        &|on_d, n| pipeline.runs(if on_d { &pipeline.d } else { &pipeline.d_prime }, n),
        (epsilon, delta),
        RUNS,
    )
}

/// Audit a mechanism given the released cells whose truth differs between `D` and `D'`, and
/// `runs(on_d, n)`: `n` releases on `D` (or `D'`).
fn audit_runs(
    differ: Vec<String>,
    runs: &dyn Fn(bool, usize) -> Vec<Run>,
    (epsilon, delta): (f64, f64),
    n: usize,
) -> Verdict {
    assert!(!differ.is_empty(), "D and D' give the same aggregates");
    let pilot: Vec<Run> = [true, false]
        .iter()
        .flat_map(|on_d| runs(*on_d, n / 10))
        .collect();
    // A quantile's cells are not its aggregates' (bins): then every released cell is tested.
    let released: BTreeSet<&String> = pilot.iter().flat_map(|r| r.keys()).collect();
    let mut cells: Vec<String> = differ
        .into_iter()
        .filter(|k| released.contains(k))
        .collect();
    if cells.is_empty() {
        cells = released.into_iter().cloned().collect();
    }
    let events = events(&cells, &pilot);
    let on_d = runs(true, n);
    let on_d_prime = runs(false, n);

    let beta = ALPHA / (4.0 * events.len() as f64);
    let h = ((1.0 / beta).ln() / (2.0 * n as f64)).sqrt();
    let frequency = |runs: &[Run], e: &Event| {
        runs.iter().filter(|r| e.holds(r)).count() as f64 / runs.len() as f64
    };
    let mut verdict = Verdict {
        events: events.len(),
        epsilon_lower_bound: 0.0,
        violations: Vec::new(),
    };
    for e in &events {
        let (p, q) = (frequency(&on_d, e), frequency(&on_d_prime, e));
        for (a, b, direction) in [(p, q, "D over D'"), (q, p, "D' over D")] {
            let (low, high) = (a - h, (b + h).min(1.0));
            if low - delta > 0.0 && high > 0.0 {
                let proven = ((low - delta) / high).ln();
                verdict.epsilon_lower_bound = verdict.epsilon_lower_bound.max(proven);
            }
            if low > epsilon.exp() * high + delta {
                verdict.violations.push(format!(
                    "{e:?}, {direction}: frequencies {a:.4} and {b:.4} (+-{h:.4})"
                ));
            }
        }
    }
    verdict
}

fn query(body: &str, budget: &str) -> String {
    format!(r#"{{{body},{PERIOD},"contribution_bound":2,"budget":{budget}}}"#)
}

/// Every kind of query, at epsilon 1 (and delta 1e-6 where it needs one).
const KINDS: &[(&str, &str, &str)] = &[
    (
        "persons",
        r#""measure":"persons","group_by":["mission","registration_year"]"#,
        r#"{"epsilon":1}"#,
    ),
    (
        "cases",
        r#""measure":"cases","group_by":["exploitation_type"],"list_items_bound":1"#,
        r#"{"epsilon":1}"#,
    ),
    (
        "sum",
        r#""measure":"sum","column":"months_to_closure","bounds":{"lower":0,"upper":24},"group_by":["gender"]"#,
        r#"{"epsilon":1}"#,
    ),
    (
        "mean",
        r#""measure":"mean","column":"months_to_closure","bounds":{"lower":0,"upper":24}"#,
        r#"{"epsilon":1}"#,
    ),
    (
        "quantile",
        r#""measure":"quantile","column":"months_to_closure","bounds":{"lower":0,"upper":24},"bins":6,"quantiles":[0.5]"#,
        r#"{"epsilon":1}"#,
    ),
    (
        "histogram",
        r#""measure":"histogram","column":"months_to_closure","bounds":{"lower":0,"upper":24},"bins":4"#,
        r#"{"epsilon":1}"#,
    ),
    (
        "threshold keys",
        // Cells of about 20 persons: near the threshold, so whether a key is released varies.
        r#""measure":"persons","group_by":["registration_year"],"keys":"threshold""#,
        r#"{"epsilon":1,"delta":1e-4}"#,
    ),
    (
        "gaussian",
        r#""measure":"persons","group_by":["mission"],"mechanism":"gaussian""#,
        r#"{"epsilon":1,"delta":1e-6}"#,
    ),
];

fn audit_kind(name: &str) -> Verdict {
    let (_, body, budget) = KINDS.iter().find(|k| k.0 == name).unwrap();
    let pipeline = Pipeline::new(&query(body, budget));
    let total = pipeline.plan.total;
    let verdict = audit(&pipeline, total.epsilon, total.delta);
    eprintln!("audit {name}: {verdict:?}");
    verdict
}

fn passes(name: &str) {
    let verdict = audit_kind(name);
    assert!(verdict.events >= 3, "{name}: too few events to test");
    assert!(
        verdict.violations.is_empty(),
        "{name}: {:#?}",
        verdict.violations
    );
    assert!(verdict.epsilon_lower_bound <= 1.0);
}

#[test]
fn audit_persons() {
    passes("persons");
}

#[test]
fn audit_cases() {
    passes("cases");
}

#[test]
fn audit_sum() {
    passes("sum");
}

#[test]
fn audit_mean() {
    passes("mean");
}

#[test]
fn audit_quantile() {
    passes("quantile");
}

#[test]
fn audit_histogram() {
    passes("histogram");
}

#[test]
fn audit_threshold_keys() {
    passes("threshold keys");
}

#[test]
fn audit_gaussian() {
    passes("gaussian");
}

/// A statement of `POST /v1/sql` is answered as the query it compiles to, so it is audited as
/// that query: here a histogram of CASE bins over one mission, a form only SQL spells this way.
#[test]
fn audit_a_sql_statement() {
    let compiled = crate::sql::compile(
        "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1, max_records_per_person = 2)
           CASE WHEN CLAMP(months_to_closure, 0, 24) < 6 THEN 0
                WHEN CLAMP(months_to_closure, 0, 24) < 12 THEN 6 ELSE 12 END AS closure,
           COUNT(*) AS cases
         FROM cases WHERE registration_year BETWEEN 2004 AND 2005 AND mission = 'KGZ'
         GROUP BY closure",
    )
    .unwrap();
    let pipeline = Pipeline::new(&serde_json::to_string(&compiled.spec).unwrap());
    let total = pipeline.plan.total;
    let verdict = audit(&pipeline, total.epsilon, total.delta);
    eprintln!("audit sql: {verdict:?}");
    assert!(verdict.events >= 3, "too few events to test");
    assert!(verdict.violations.is_empty(), "{:#?}", verdict.violations);
    assert!(verdict.epsilon_lower_bound <= 1.0);
}

#[test]
fn audit_flags_noise_for_twice_the_declared_epsilon() {
    // The noise is drawn for epsilon 2 while the query declares (and is charged) epsilon 1.
    let (_, body, _) = KINDS[0];
    let pipeline = Pipeline::new(&query(body, r#"{"epsilon":2}"#));
    let verdict = audit(&pipeline, 1.0, 0.0);
    eprintln!("broken scale: {verdict:?}");
    assert!(!verdict.violations.is_empty(), "{verdict:?}");
    assert!(verdict.epsilon_lower_bound > 1.0);
}

#[test]
fn audit_flags_an_ignored_contribution_bound() {
    // The data is truncated at 8 records a person, the noise priced for 2: the aggregates claim
    // the contribution of the bound of 2.
    let (_, body, budget) = KINDS[1];
    let priced = Pipeline::new(&query(body, budget));
    let loose = spec(
        &query(body, budget).replace(r#""contribution_bound":2"#, r#""contribution_bound":8"#),
    );
    let recs = dataset();
    let mislabel = |mut a: Aggregates| {
        for (c, p) in a.components.iter_mut().zip(&priced.d.components) {
            c.contribution = p.contribution;
        }
        a
    };
    let broken = Pipeline {
        d: mislabel(exact(&recs, &loose)),
        d_prime: mislabel(exact(&neighbour(&recs), &loose)),
        ..priced
    };
    let verdict = audit(&broken, 1.0, 0.0);
    eprintln!("ignored bound: {verdict:?}");
    assert!(!verdict.violations.is_empty(), "{verdict:?}");
}

/// The noise the release path adds, `estimate - exact`, over every cell of `runs` releases of
/// `D`: Kolmogorov-Smirnov against the declared law at `scale`, with the critical value for a
/// false alarm of `ALPHA` (conservative for a discrete law). Returns whether it fits.
fn noise_fits(pipeline: &Pipeline, mechanism: Mechanism, scale: f64, runs: usize) -> bool {
    let exact: BTreeMap<String, i64> = pipeline
        .d
        .cells
        .iter()
        .zip(&pipeline.d.components[0].values)
        .map(|(c, v)| (c.join("|"), *v))
        .collect();
    let mut noise: Vec<i64> = pipeline
        .runs(&pipeline.d, runs)
        .iter()
        .flat_map(|run| {
            run.iter()
                .map(|(k, v)| *v as i64 - exact[k])
                .collect::<Vec<_>>()
        })
        .collect();
    noise.sort_unstable();
    let n = noise.len() as f64;
    let (mut ks, mut cdf) = (0.0f64, 0.0);
    for x in -400..=400 {
        cdf += pmf(mechanism, scale, x);
        let empirical = noise.partition_point(|&v| v <= x) as f64 / n;
        ks = ks.max((empirical - cdf).abs());
    }
    ks < ((2.0 / ALPHA).ln() / 2.0).sqrt() / n.sqrt()
}

#[test]
fn the_noise_added_has_the_declared_distribution_and_a_wrong_one_is_told_apart() {
    for (name, mechanism) in [
        ("persons", Mechanism::Laplace),
        ("gaussian", Mechanism::Gaussian),
    ] {
        let (_, body, budget) = KINDS.iter().find(|k| k.0 == name).unwrap();
        let pipeline = Pipeline::new(&query(body, budget));
        let scale = pipeline.plan.parts[0].scale;
        assert!(
            noise_fits(&pipeline, mechanism, scale, 5000),
            "{name}: the noise does not fit scale {scale}"
        );
        for wrong in [scale * 0.8, scale * 1.25] {
            assert!(
                !noise_fits(&pipeline, mechanism, wrong, 5000),
                "{name}: the check cannot tell scale {scale} from {wrong}"
            );
        }
    }
}

/// The release path of the marginal design: the exact marginals of `D` and `D'` through
/// DataFusion, then OpenDP's noise and the least-squares reconstruction, on every run.
mod design {
    use super::*;
    use crate::release::design::{self, Design};
    use crate::release::{DesignKind, PeriodKind, ReleasePlan, ReleaseRequest, estimate};

    /// Runs per dataset: a release reconstructs every indicator, so fewer than for a query.
    const DESIGN_RUNS: usize = 8_000;

    struct DesignPipeline {
        plan: ReleasePlan,
        exact: [Vec<Vec<i64>>; 2],
    }

    fn exact(recs: &[Rec], plan: &ReleasePlan) -> Vec<Vec<i64>> {
        let dir = tempfile::tempdir().unwrap();
        write_dataset(dir.path(), recs);
        block_on(design::exact_marginals(
            &Paid::for_tests(),
            &in_memory(dir.path()),
            plan.design.as_ref().unwrap(),
            &plan.missions,
            &plan.periods,
            (2004, 2005, PeriodKind::Year),
        ))
        .unwrap()
        .0
    }

    impl DesignPipeline {
        fn new() -> DesignPipeline {
            let request = ReleaseRequest {
                name: "audit".into(),
                indicators: [
                    "persons_assisted",
                    "cases",
                    "persons_by_gender",
                    "exploitation_type_share",
                ]
                .map(String::from)
                .to_vec(),
                missions: None,
                from: 2004,
                to: 2005,
                period: PeriodKind::Year,
                epsilon: 1.0,
                delta: Some(1e-6),
                contribution_bound: Some(2),
                design: Some(DesignKind::Marginals),
            };
            let plan = request.plan(&missions()).unwrap();
            let recs = dataset();
            DesignPipeline {
                exact: [exact(&recs, &plan), exact(&neighbour(&recs), &plan)],
                plan,
            }
        }

        /// The published cells of a release computed from `marginals`, keyed
        /// `indicator|mission|period|key`.
        fn cells(&self, design: &Design, marginals: &[Vec<i64>]) -> Run {
            let p = &self.plan;
            let (indicators, _) = estimate::indicators(
                design,
                &p.indicators,
                &p.missions,
                &p.periods,
                marginals,
                &Default::default(),
            );
            indicators
                .iter()
                .flat_map(|i| {
                    i.cells.iter().filter_map(|c| {
                        c.value.map(|v| {
                            (
                                format!(
                                    "{}|{}|{}|{}",
                                    i.id,
                                    c.mission,
                                    c.period,
                                    c.key.as_deref().unwrap_or("")
                                ),
                                v,
                            )
                        })
                    })
                })
                .collect()
        }

        fn runs(&self, on_d: bool, n: usize) -> Vec<Run> {
            let exact = &self.exact[usize::from(!on_d)];
            let design = self.plan.design.as_ref().unwrap();
            (0..n)
                .map(|_| {
                    let noisy = design::noise(design, exact).unwrap().into_inner();
                    self.cells(design, &noisy)
                })
                .collect()
        }

        fn differing(&self) -> Vec<String> {
            let design = self.plan.design.as_ref().unwrap();
            let (a, b) = (
                self.cells(design, &self.exact[0]),
                self.cells(design, &self.exact[1]),
            );
            a.keys()
                .chain(b.keys())
                .filter(|k| a.get(*k) != b.get(*k))
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        }

        fn audit(&self) -> Verdict {
            let cost = self.plan.cost;
            let verdict = audit_runs(
                self.differing(),
                &|on_d, n| self.runs(on_d, n),
                (cost.epsilon, cost.delta),
                DESIGN_RUNS,
            );
            eprintln!("audit of the marginal design: {verdict:?}");
            verdict
        }
    }

    #[test]
    fn audit_the_marginal_design() {
        let pipeline = DesignPipeline::new();
        assert!(pipeline.plan.cost.epsilon <= 1.0);
        let verdict = pipeline.audit();
        assert!(verdict.events >= 3, "too few events to test");
        assert!(verdict.violations.is_empty(), "{:#?}", verdict.violations);
    }
}

/// The path of `contribution_bound: "auto"`: the noisy histogram of records per person, the bound
/// chosen from it, and the query at that bound, released together on every run.
mod auto_bound {
    use super::*;
    use crate::plan::records_per_person;
    use crate::spec::MAX_CONTRIBUTION_BOUND;

    /// Runs per dataset: each run prices every bound, so fewer than for a query.
    const AUTO_RUNS: usize = 8_000;

    /// One side of the audit: the exact histogram, and the exact aggregates at every bound.
    struct Side {
        histogram: Vec<i64>,
        at: Vec<Aggregates>,
    }

    fn side(recs: &[Rec], spec: &ValidatedSpec, plan: &CostPlan) -> Side {
        let dir = tempfile::tempdir().unwrap();
        write_dataset(dir.path(), recs);
        let paid = Paid::for_tests();
        let most = MAX_CONTRIBUTION_BOUND;
        let histogram = block_on(records_per_person(
            &paid,
            &in_memory(dir.path()),
            &missions(),
            spec,
            most,
        ))
        .unwrap();
        let at = (1..=most)
            .map(|k| {
                let bounded = spec.with_bound(k, plan.rest.unwrap());
                block_on(aggregate(
                    &paid,
                    &in_memory(dir.path()),
                    &missions(),
                    &bounded,
                ))
                .unwrap()
            })
            .collect();
        Side { histogram, at }
    }

    fn runs(spec: &ValidatedSpec, plan: &CostPlan, side: &Side, n: usize) -> Vec<Run> {
        (0..n)
            .map(|_| {
                let (bounded, priced, chosen) =
                    answer::choose_bound(spec, plan, &side.histogram, &missions()).unwrap();
                let k = bounded.contribution_bound() as usize;
                let released = answer::release(&bounded, &side.at[k - 1], &priced).unwrap();
                let answer = answer::with_chosen_bound(released, plan, chosen);
                let mut run: Run = answer
                    .cells
                    .into_inner()
                    .into_iter()
                    .map(|c| (c.key.join("|"), c.estimate))
                    .collect();
                let chosen = answer.chosen_bound.unwrap().into_inner();
                run.insert("bound".into(), f64::from(chosen.records));
                for (i, v) in chosen.persons_by_records.iter().enumerate() {
                    run.insert(format!("records={}", i + 1), *v as f64);
                }
                run
            })
            .collect()
    }

    #[test]
    fn audit_an_auto_contribution_bound() {
        let spec = spec(&format!(
            r#"{{"measure":"cases","group_by":["mission"],{PERIOD},"contribution_bound":"auto","budget":{{"epsilon":1}}}}"#
        ));
        let plan = CostPlan::new(&spec).unwrap();
        let recs = dataset();
        let sides = [
            side(&recs, &spec, &plan),
            side(&neighbour(&recs), &spec, &plan),
        ];
        // The histogram differs (x has eight records), and so do x's cells at every bound.
        let mut differ: Vec<String> = (1..=MAX_CONTRIBUTION_BOUND as usize)
            .filter(|i| sides[0].histogram[i - 1] != sides[1].histogram[i - 1])
            .map(|i| format!("records={i}"))
            .collect();
        differ.extend(differing(&sides[0].at[1], &sides[1].at[1]));
        let verdict = audit_runs(
            differ,
            &|on_d, n| runs(&spec, &plan, &sides[usize::from(!on_d)], n),
            (plan.total.epsilon, 0.0),
            AUTO_RUNS,
        );
        eprintln!("audit of an auto bound: {verdict:?}");
        assert!(verdict.events >= 3, "too few events to test");
        assert!(verdict.violations.is_empty(), "{:#?}", verdict.violations);
    }
}

/// The synthetic-data mechanism (MST): the 1-way and 2-way marginal measurements and the tree
/// selections, released together as a synthetic table on every run, audited at the table's
/// whole charge on what the table shows: each column's value counts and the selected tree.
mod synthetic {
    use super::*;
    use crate::synthetic::{Contingency, SyntheticPlan, SyntheticRequest, contingency, synthesize};

    /// Runs per dataset: each run fits and samples a model, so fewer than for a query.
    const SYNTHETIC_RUNS: usize = 6_000;

    fn exact(recs: &[Rec], plan: &SyntheticPlan) -> Contingency {
        let dir = tempfile::tempdir().unwrap();
        write_dataset(dir.path(), recs);
        block_on(contingency(
            &Paid::for_tests(),
            &in_memory(dir.path()),
            plan,
        ))
        .unwrap()
    }

    /// What a table shows: `count|column|value` for every value drawn, `edge|a|b` per edge.
    fn shown(plan: &SyntheticPlan, exact: &Contingency) -> Run {
        let table = synthesize(plan, exact).unwrap().into_inner();
        let mut run = Run::new();
        for (i, column) in table.values.iter().enumerate() {
            for &v in column {
                let key = format!(
                    "count|{}|{}",
                    table.columns[i],
                    table.domains[i][usize::from(v)]
                );
                *run.entry(key).or_default() += 1.0;
            }
        }
        for [a, b] in &table.tree {
            run.insert(format!("edge|{a}|{b}"), 1.0);
        }
        run
    }

    /// The 1-way counts of the bounded records, keyed as [`shown`] keys them.
    fn one_way(plan: &SyntheticPlan, exact: &Contingency) -> Run {
        let mut run = Run::new();
        for (cells, n) in &exact.rows {
            for (i, &c) in cells.iter().enumerate() {
                let column = &plan.columns[i];
                let key = format!("count|{}|{}", column.name, column.domain[usize::from(c)]);
                *run.entry(key).or_default() += *n as f64;
            }
        }
        run
    }

    fn request(epsilon: f64) -> SyntheticRequest {
        SyntheticRequest {
            name: "audit".into(),
            columns: Some(
                ["mission", "registration_year", "gender"]
                    .map(String::from)
                    .to_vec(),
            ),
            missions: None,
            from: 2004,
            to: 2005,
            epsilon,
            delta: 1e-6,
            max_records_per_person: Some(2),
        }
    }

    /// Audit the table drawn with `plan`'s noise at the (epsilon, delta) `declared`.
    fn audit_plan(plan: &SyntheticPlan, declared: (f64, f64), runs: usize) -> Verdict {
        let recs = dataset();
        let sides = [exact(&recs, plan), exact(&neighbour(&recs), plan)];
        let (a, b) = (one_way(plan, &sides[0]), one_way(plan, &sides[1]));
        let differ: Vec<String> = a
            .keys()
            .chain(b.keys())
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // x's two kept records move its mission, both years and its gender.
        assert!(differ.len() >= 3, "{differ:?}");
        audit_runs(
            differ,
            &|on_d, n| {
                let side = &sides[usize::from(!on_d)];
                (0..n).map(|_| shown(plan, side)).collect()
            },
            declared,
            runs,
        )
    }

    #[test]
    fn a_synthetic_table_with_too_little_noise_is_flagged() {
        // The noise of epsilon 40, declared as the charge of epsilon 1.
        let declared = request(1.0).plan(&missions()).unwrap().noise.cost;
        let broken = request(40.0).plan(&missions()).unwrap();
        // Flagged by far (frequencies 0.36 against 0.006), so fewer runs suffice.
        let verdict = audit_plan(&broken, (declared.epsilon, declared.delta), 2_500);
        eprintln!("audit of a broken synthetic table: {verdict:?}");
        assert!(!verdict.violations.is_empty(), "{verdict:?}");
    }

    #[test]
    fn audit_the_synthetic_table() {
        let plan = request(1.0).plan(&missions()).unwrap();
        let verdict = audit_plan(
            &plan,
            (plan.noise.cost.epsilon, plan.noise.cost.delta),
            SYNTHETIC_RUNS,
        );
        eprintln!("audit of the synthetic table: {verdict:?}");
        assert!(plan.noise.cost.epsilon <= 1.0);
        assert!(verdict.events >= 3, "too few events to test");
        assert!(verdict.violations.is_empty(), "{:#?}", verdict.violations);
    }
}
