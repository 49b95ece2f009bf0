use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

use super::model::{self, Clique, Measurement, Tree};
use super::*;

fn missions() -> Vec<String> {
    ["MDA", "UKR", "KGZ"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn request(epsilon: f64) -> SyntheticRequest {
    SyntheticRequest {
        name: "t".into(),
        columns: None,
        missions: None,
        from: 2019,
        to: 2023,
        epsilon,
        delta: 1e-6,
        max_records_per_person: None,
    }
}

#[test]
fn the_charge_is_opendps_map_of_each_step_and_within_the_budget() {
    for (epsilon, k) in [(1.0, 1), (10.0, 3)] {
        let mut r = request(epsilon);
        r.max_records_per_person = Some(k);
        let plan = r.plan(&missions()).unwrap();
        let d = plan.columns.len() as f64;
        assert_eq!(
            plan.columns.len(),
            17,
            "the default columns, the 9 flags expanded"
        );
        let one =
            dp::rho_of_gaussian(plan.noise.one_way.scale, &plan.noise.one_way_sensitivity).unwrap();
        let two =
            dp::rho_of_gaussian(plan.noise.two_way.scale, &plan.noise.two_way_sensitivity).unwrap();
        // (2k / scale)^2 / 8 per selection, as OpenDP's map says for a non-monotonic score.
        let selection = (2.0 * f64::from(k) / plan.noise.selection.scale).powi(2) / 8.0;
        assert!((plan.noise.selection.rho - selection).abs() <= 1e-9 * selection);
        let sum = one + two + plan.noise.selection.rho * (d - 1.0);
        assert!(
            (plan.noise.loss.rho - sum).abs() <= 1e-12 * sum,
            "{} vs {sum}",
            plan.noise.loss.rho
        );
        let budget = dp::rho_for(epsilon, 1e-6).unwrap();
        assert!(plan.noise.loss.rho <= budget && plan.noise.loss.rho > 0.999 * budget);
        assert!(plan.noise.cost.epsilon <= epsilon && plan.noise.cost.epsilon > 0.99 * epsilon);
        // The sensitivities are k·√d and k·√(d−1).
        // (rounded up, never down)
        for (s, n) in [
            (plan.noise.one_way_sensitivity, d),
            (plan.noise.two_way_sensitivity, d - 1.0),
        ] {
            let exact = f64::from(k) * n.sqrt();
            assert!(s.l2() >= exact * (1.0 - 1e-15) && s.l2() <= exact * (1.0 + 1e-12));
        }
    }
}

#[test]
fn requests_name_the_field_and_the_rule_they_break() {
    let m = missions();
    type Change = Box<dyn Fn(&mut SyntheticRequest)>;
    let cases: Vec<(Change, &str)> = vec![
        (
            Box::new(|r| r.columns = Some(vec!["person_key".into(), "gender".into()])),
            "person_key",
        ),
        (
            Box::new(|r| r.columns = Some(vec!["gender".into()])),
            "columns: 2 to",
        ),
        (
            Box::new(|r| r.columns = Some(vec!["gender".into(), "gender".into()])),
            "named twice",
        ),
        (Box::new(|r| r.epsilon = 0.0), "epsilon"),
        (Box::new(|r| r.delta = 0.5), "delta"),
        (Box::new(|r| r.to = 2010), "from, to"),
        (
            Box::new(|r| r.max_records_per_person = Some(0)),
            "max_records_per_person",
        ),
        (
            Box::new(|r| r.missions = Some(vec!["FRA".into()])),
            "missions",
        ),
    ];
    for (change, needle) in cases {
        let mut r = request(1.0);
        change(&mut r);
        let e = r.plan(&m).unwrap_err();
        assert!(e.0.contains(needle), "{e} should name {needle}");
    }
    // No key or identifier column is public.
    for key in ["record_key", "person_key", "batch_id", "submitting_org"] {
        let mut r = request(1.0);
        r.columns = Some(vec![key.into(), "gender".into()]);
        assert!(r.plan(&m).is_err(), "{key} must not be a column");
    }
}

#[test]
fn the_same_request_spelled_differently_has_one_hash() {
    let a = request(1.0).plan(&missions()).unwrap();
    let mut r = request(1.0);
    r.columns = Some(DEFAULT_COLUMNS.iter().map(|s| s.to_string()).collect());
    r.missions = Some(vec!["UKR".into(), "MDA".into(), "KGZ".into()]);
    r.max_records_per_person = Some(1);
    let b = r.plan(&missions()).unwrap();
    assert_eq!(a.hash, b.hash);
    assert_ne!(a.hash, request(2.0).plan(&missions()).unwrap().hash);
}

/// A random tree model over small domains and its exact marginals.
fn known_model(seed: u64) -> (Tree, model::Marginals) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let sizes = vec![3, 4, 2, 5, 3];
    let tree = Tree::new(sizes.clone(), &[(0, 1), (1, 2), (0, 3), (3, 4)]);
    let mut u =
        || (rand_chacha::rand_core::RngCore::next_u64(&mut rng) >> 11) as f64 / (1u64 << 53) as f64;
    let root: Vec<f64> = (0..sizes[0]).map(|_| 0.2 + u()).collect();
    let z: f64 = root.iter().sum();
    let mut nodes = vec![Vec::new(); sizes.len()];
    nodes[0] = root.iter().map(|x| x / z).collect();
    let mut edges = vec![Vec::new(); tree.edges.len()];
    for &i in &tree.order {
        for &e in &tree.down[i] {
            let c = tree.edges[e].1;
            let (np, nc) = (sizes[i], sizes[c]);
            let mut joint = vec![0.0; np * nc];
            let mut child = vec![0.0; nc];
            for xp in 0..np {
                let cond: Vec<f64> = (0..nc).map(|_| 0.05 + u()).collect();
                let s: f64 = cond.iter().sum();
                for xc in 0..nc {
                    joint[xp * nc + xc] = nodes[i][xp] * cond[xc] / s;
                    child[xc] += joint[xp * nc + xc];
                }
            }
            edges[e] = joint;
            nodes[c] = child;
        }
    }
    (tree, model::Marginals { nodes, edges })
}

fn tvd(a: &[f64], b: &[f64]) -> f64 {
    0.5 * a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>()
}

#[test]
fn the_tree_fit_reproduces_exact_marginals_without_noise() {
    let (tree, truth) = known_model(7);
    let total = 10_000.0;
    let mut measurements = Vec::new();
    for (i, p) in truth.nodes.iter().enumerate() {
        measurements.push(Measurement {
            clique: Clique::Node(i),
            values: p.iter().map(|x| x * total).collect(),
            weights: vec![1.0; p.len()],
        });
    }
    for (e, p) in truth.edges.iter().enumerate() {
        measurements.push(Measurement {
            clique: Clique::Edge(e),
            values: p.iter().map(|x| x * total).collect(),
            weights: vec![1.0; p.len()],
        });
    }
    assert!((model::estimate_total(&measurements) - total).abs() < 1e-6);
    let (mu, fit) = model::estimate(&tree, &measurements, total, 5_000);
    for (e, p) in truth.edges.iter().enumerate() {
        let d = tvd(p, &mu.edges[e]);
        assert!(d < 1e-4, "edge {e}: TVD {d} after {fit:?}");
    }
    for (i, p) in truth.nodes.iter().enumerate() {
        assert!(tvd(p, &mu.nodes[i]) < 1e-4, "node {i}");
    }
}

#[test]
fn sampling_reproduces_a_known_models_marginals() {
    // Allocation is systematic (each cell's count is its expectation rounded down or up), so
    // the deviation is bounded, not random: a cell of a 2-way marginal is off by at most the
    // parent's domain size plus 2 records. At n = 100,000 and these domains that bounds every
    // marginal's TVD by 0.003 whatever the seed: the false-alarm rate is zero. Five seeds.
    let n = 100_000;
    for seed in 0..5 {
        let (tree, truth) = known_model(seed);
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let columns = model::sample(&tree, &truth, n, &mut rng);
        assert!(columns.iter().all(|c| c.len() == n));
        for (e, &(p, c)) in tree.edges.iter().enumerate() {
            let nc = tree.sizes[c];
            let mut counts = vec![0.0; tree.sizes[p] * nc];
            for row in 0..n {
                counts[usize::from(columns[p][row]) * nc + usize::from(columns[c][row])] += 1.0;
            }
            let sampled: Vec<f64> = counts.iter().map(|x| x / n as f64).collect();
            let d = tvd(&truth.edges[e], &sampled);
            assert!(d < 0.003, "seed {seed}, edge {e}: TVD {d}");
        }
        // Siblings are independent given their parent: columns 1 and 3 (children of 0).
        let (n1, n3) = (tree.sizes[1], tree.sizes[3]);
        let mut joint = vec![0.0; tree.sizes[0] * n1 * n3];
        for ((&a, &b), &c) in columns[0].iter().zip(&columns[1]).zip(&columns[3]) {
            let (a, b, c) = (usize::from(a), usize::from(b), usize::from(c));
            joint[(a * n1 + b) * n3 + c] += 1.0 / n as f64;
        }
        let e01 = tree.up[1].unwrap();
        let e03 = tree.up[3].unwrap();
        let expected: Vec<f64> = (0..joint.len())
            .map(|at| {
                let (a, b, c) = (at / (n1 * n3), (at / n3) % n1, at % n3);
                truth.edges[e01][a * n1 + b] * truth.edges[e03][a * n3 + c] / truth.nodes[0][a]
            })
            .collect();
        let d = tvd(&expected, &joint);
        assert!(d < 0.02, "seed {seed}: siblings TVD {d}");
    }
}

#[test]
fn allocation_rounds_each_cell_down_or_up_and_keeps_the_total() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let p = [0.1, 0.25, 0.0, 0.333, 0.317];
    for n in [0, 1, 7, 100, 12_345] {
        let counts = model::allocate(n, &p, &mut rng);
        assert_eq!(counts.iter().sum::<usize>(), n);
        for (c, q) in counts.iter().zip(&p) {
            let e = q * n as f64;
            assert!((*c as f64) >= e.floor() - 1e-9 && (*c as f64) <= e.ceil() + 1e-9);
        }
    }
    assert_eq!(
        model::allocate(5, &[0.0, 0.0], &mut rng)
            .iter()
            .sum::<usize>(),
        5
    );
}

/// A contingency table drawn from the known model (exact counts, as the statement returns).
fn table_of(tree: &Tree, truth: &model::Marginals, n: usize) -> Contingency {
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let columns = model::sample(tree, truth, n, &mut rng);
    let mut counts: HashMap<Vec<u16>, i64> = HashMap::new();
    for row in 0..n {
        *counts
            .entry(columns.iter().map(|c| c[row]).collect())
            .or_default() += 1;
    }
    Contingency {
        rows: counts.into_iter().collect(),
        generation: 1,
    }
}

fn plan_for(sizes: &[usize], epsilon: f64) -> SyntheticPlan {
    // Columns with the given domain sizes: coded fields of the record with that many values
    // are not at hand, so the plan's columns are relabelled (the noise depends on d and k only).
    let names = [
        "gender",
        "age_band",
        "assisted_return",
        "referral_source",
        "case_status",
    ];
    let mut r = request(epsilon);
    r.columns = Some(names[..sizes.len()].iter().map(|s| s.to_string()).collect());
    let mut plan = r.plan(&missions()).unwrap();
    for (c, &n) in plan.columns.iter_mut().zip(sizes) {
        c.domain = (0..n).map(|i| format!("v{i}")).collect();
    }
    plan
}

#[test]
fn mst_at_a_large_budget_recovers_the_models_marginals_and_its_tree() {
    let (tree, truth) = known_model(3);
    let n = 50_000;
    let exact = table_of(&tree, &truth, n);
    let plan = plan_for(&tree.sizes, 1_000.0);
    let table = synthesize(&plan, &exact).unwrap().into_inner();
    assert!(
        (table.rows() as f64 - n as f64).abs() < 50.0,
        "{} rows",
        table.rows()
    );
    let mut found: Vec<[String; 2]> = table.tree.clone();
    for e in &mut found {
        e.sort();
    }
    found.sort();
    let mut expected: Vec<[String; 2]> = tree
        .edges
        .iter()
        .map(|&(p, c)| {
            let mut e = [plan.columns[p].name.clone(), plan.columns[c].name.clone()];
            e.sort();
            e
        })
        .collect();
    expected.sort();
    assert_eq!(found, expected, "the selected tree is the model's");
    let rows = table.rows() as f64;
    for (e, &(p, c)) in tree.edges.iter().enumerate() {
        let nc = tree.sizes[c];
        let mut counts = vec![0.0; tree.sizes[p] * nc];
        for row in 0..table.rows() {
            counts[usize::from(table.values[p][row]) * nc + usize::from(table.values[c][row])] +=
                1.0 / rows;
        }
        let d = tvd(&truth.edges[e], &counts);
        assert!(d < 0.02, "edge {e}: TVD {d}");
    }
    assert!(
        table
            .values
            .iter()
            .zip(&table.domains)
            .all(|(v, d)| v.iter().all(|&x| usize::from(x) < d.len()))
    );
}

#[test]
fn rare_values_are_merged_and_drawn_back_inside_their_domain() {
    // Column 0 has 40 values of which 3 hold nearly every record.
    let sizes = [40, 2];
    let mut counts: HashMap<Vec<u16>, i64> = HashMap::new();
    for (a, n) in [(0u16, 3000), (1, 2000), (2, 1000), (17, 1)] {
        counts.insert(vec![a, 0], n / 2);
        counts.insert(vec![a, 1], n - n / 2);
    }
    let exact = Contingency {
        rows: counts.into_iter().collect(),
        generation: 1,
    };
    let plan = plan_for(&sizes, 1.0);
    let table = synthesize(&plan, &exact).unwrap().into_inner();
    // A zero cell passes the 3-sigma threshold with probability 0.13%, so a few of the 37 may.
    let kept = table.kept_values[0];
    assert!((3..=8).contains(&kept), "{kept} values kept apart");
    assert!(table.values[0].iter().all(|&v| usize::from(v) < 40));
    let common = table.values[0].iter().filter(|&&v| v < 3).count() as f64;
    assert!(common / table.rows() as f64 > 0.95);
}

#[test]
fn the_parquet_and_csv_hold_the_table() {
    let table = Table {
        columns: vec!["gender".into(), "age_band".into()],
        domains: vec![
            vec!["female".into(), "male".into()],
            vec!["0-8".into(), "48+".into()],
        ],
        values: vec![vec![0, 1, 1], vec![1, 0, 1]],
        tree: vec![],
        kept_values: vec![2, 2],
        fit: model::Fit {
            iterations: 0,
            loss: 0.0,
        },
    };
    let parquet = to_parquet(&table).unwrap();
    let csv = String::from_utf8(parquet_to_csv(&parquet).unwrap()).unwrap();
    assert_eq!(csv, "gender,age_band\nfemale,48+\nmale,0-8\nmale,48+\n");
}

#[test]
fn the_bounding_keeps_each_persons_first_records_and_the_flags_read_the_types() {
    use crate::ledger::Paid;
    use crate::testdata::{block_on, in_memory, missions, rec, write_dataset};
    // Persons with 1 to 5 records over two years, types varying, some none recorded.
    let types: [Option<Vec<&'static str>>; 4] = [
        Some(vec!["forced_labour"]),
        Some(vec!["sexual_exploitation", "forced_labour"]),
        None,
        Some(vec![]),
    ];
    let mut recs = Vec::new();
    for p in 0..30 {
        for r in 0..(1 + p % 5) {
            let mut x = rec(
                &format!("p{p:02}"),
                &format!("p{p:02}-{r}"),
                2004 + (r % 2) as i32,
            );
            x.mission = if p % 3 == 0 { "UKR" } else { "KGZ" };
            x.gender = Some(if r % 2 == 0 { "female" } else { "male" });
            x.types = types[(p + r) % 4].clone();
            recs.push(x);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), &recs);
    for k in [1, 2, 3] {
        let mut r = request(1.0);
        r.from = 2004;
        r.to = 2005;
        r.max_records_per_person = Some(k);
        r.columns = Some(
            [
                "mission",
                "registration_year",
                "gender",
                "exploitation_forced_labour",
            ]
            .map(String::from)
            .to_vec(),
        );
        let plan = r.plan(&missions()).unwrap();
        // Expected: each person's first k records in record-key order (the keys are the
        // pseudonyms of the record ids, so the order is theirs, not the ids').
        let read = |data: &crate::data::Data| {
            let mut rows = block_on(contingency(&Paid::for_tests(), data, &plan))
                .unwrap()
                .rows;
            rows.sort();
            rows
        };
        let snapshot = read(&in_memory(dir.path()));
        let files = read(&crate::data::Data::files(dir.path()));
        assert_eq!(snapshot, files, "k = {k}");
        let total: i64 = snapshot.iter().map(|(_, n)| n).sum();
        let expected: i64 = (0..30).map(|p| (1 + p % 5).min(k as usize) as i64).sum();
        assert_eq!(total, expected, "k = {k}");
        // The flag: unknown for no or empty types, else whether forced_labour is among them.
        let unknown = plan.columns[3]
            .domain
            .iter()
            .position(|v| v == UNKNOWN)
            .unwrap();
        let flagged_unknown: i64 = snapshot
            .iter()
            .filter(|(c, _)| usize::from(c[3]) == unknown)
            .map(|(_, n)| n)
            .sum();
        assert!(flagged_unknown > 0 && flagged_unknown < total);
    }
}

/// The kernel's table of `columns` over the snapshot, and the statement's over the files, for
/// one request (sorted, so they compare as sets).
fn both_ways(recs: &[crate::testdata::Rec], request: &SyntheticRequest) -> (Counts, Counts) {
    use crate::data::{Data, Source};
    use crate::ledger::Paid;
    use crate::testdata::{block_on, in_memory, missions, write_dataset};
    let plan = request.plan(&missions()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), recs);
    let mut by_kernel = block_on(async {
        match in_memory(dir.path()).acquire(&|_| true).await.unwrap() {
            Source::Snapshot(snapshot) => kernel::contingency(snapshot.batches(), &plan),
            Source::Files(_) => panic!("the snapshot was not loaded"),
        }
    })
    .expect("the kernel lays the table out");
    let mut by_sql = block_on(by_statement(
        &Paid::for_tests(),
        &Data::files(dir.path()),
        &plan,
    ))
    .unwrap()
    .rows;
    by_kernel.sort();
    by_sql.sort();
    (by_kernel, by_sql)
}

const KERNEL_COLUMNS: &[&str] = &[
    "mission",
    "registration_year",
    "registration_quarter",
    "registration_month",
    "gender",
    "shelter_accepted",
    "exploitation_types",
    "exploitation_slavery",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    // The kernel counts exactly what the statement counts: the same persons' first k records
    // of the period and missions, the same cell for every value (nulls, empty type lists, a
    // mission outside the request), whichever columns and order.
    #[test]
    fn the_contingency_kernel_equals_the_sql(
        recs in crate::testdata::arb_dataset(),
        columns in prop::sample::subsequence(KERNEL_COLUMNS.to_vec(), 2..=4).prop_shuffle(),
        k in 1..=3u32,
        from in 2003..=2006i32,
        span in 0..=2i32,
        one_mission in prop::option::of(prop::sample::select(vec!["KGZ", "UKR"])),
    ) {
        let mut r = request(1.0);
        r.from = from;
        r.to = from + span;
        r.max_records_per_person = Some(k);
        r.missions = one_mission.map(|m| vec![m.to_string()]);
        let mut columns = columns;
        // `exploitation_types` includes the slavery flag: a request may name it once.
        if columns.contains(&"exploitation_types") {
            columns.retain(|c| *c != "exploitation_slavery");
        }
        r.columns = Some(columns.iter().map(|c| c.to_string()).collect());
        let (by_kernel, by_sql) = both_ways(&recs, &r);
        prop_assert_eq!(by_kernel, by_sql, "{:?}", columns);
    }
}
