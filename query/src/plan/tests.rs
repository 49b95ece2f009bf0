use std::collections::BTreeMap;
use std::path::Path;

use ctstats_schemas::KeyEncoding;
use ctstats_schemas::manifest::{FileEntry, MANIFEST_FILE, partition_dir};
use proptest::prelude::*;

use super::*;
use crate::testdata::*;

/// The aggregates of `json` over the dataset at `root`, computed from the in-memory snapshot
/// and from the Parquet files: the two must agree exactly.
fn run(root: &Path, json: &str) -> Aggregates {
    let s = spec(json);
    let from = |data: Data| {
        block_on(aggregate(&Paid::for_tests(), &data, &missions(), &s))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let memory = from(in_memory(root));
    let files = from(Data::files(root));
    assert_eq!(memory, files, "snapshot and files disagree on {json}");
    memory
}

/// Cell key (joined with `|`) → value of the first component, for non-zero cells.
fn nonzero(a: &Aggregates) -> BTreeMap<String, i64> {
    a.cells
        .iter()
        .zip(&a.components[0].values)
        .filter(|(_, v)| **v != 0)
        .map(|(c, v)| (c.join("|"), *v))
        .collect()
}

fn map(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

const PERIOD: &str = r#""period":{"from":"2004-01","to":"2005-12"},"budget":{"epsilon":1}"#;

fn query(body: &str) -> String {
    format!("{{{body},{PERIOD}}}")
}

#[test]
fn empty_cells_are_zero_and_nulls_are_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = rec("p1", "r1", 2004);
    a.gender = Some("female");
    let b = rec("p2", "r2", 2004);
    let mut c = rec("p3", "r3", 2005);
    c.mission = "MDA"; // not a configured mission: counted as unknown
    write_dataset(dir.path(), &[a, b, c]);

    let out = run(
        dir.path(),
        &query(r#""measure":"persons","group_by":["gender","mission"]"#),
    );
    assert_eq!(out.dimensions, ["mission", "gender"]);
    // 3 missions (KGZ, UKR, unknown) × 6 genders (5 codes and unknown), zeros included.
    assert_eq!(out.cells.len(), 3 * 6);
    assert_eq!(out.cells[0], ["KGZ", "female"]);
    assert_eq!(out.cells[5], ["KGZ", "unknown"]);
    assert_eq!(out.cells[17], ["unknown", "unknown"]);
    assert_eq!(
        nonzero(&out),
        map(&[
            ("KGZ|female", 1),
            ("KGZ|unknown", 1),
            ("unknown|unknown", 1)
        ])
    );
    assert_eq!(out.components[0].name, "persons");
    assert_eq!(
        out.components[0].contribution,
        Contribution {
            l0: 1,
            l1: 1,
            linf: 1
        }
    );
    assert_eq!(out.keys, KeysMode::Public);
}

#[test]
fn persons_and_cases_under_the_contribution_bound() {
    let dir = tempfile::tempdir().unwrap();
    let recs = [
        rec("p1", "r3", 2005),
        rec("p1", "r1", 2004),
        rec("p1", "r2", 2005),
        rec("p2", "r4", 2005),
    ];
    write_dataset(dir.path(), &recs);
    let by_year = |measure: &str, k: u32| {
        nonzero(&run(
            dir.path(),
            &query(&format!(
                r#""measure":"{measure}","group_by":["registration_year"],"contribution_bound":{k}"#
            )),
        ))
    };
    // k = 1 keeps p1's smallest record key, r1 (2004).
    assert_eq!(by_year("persons", 1), map(&[("2004", 1), ("2005", 1)]));
    assert_eq!(by_year("cases", 1), map(&[("2004", 1), ("2005", 1)]));
    assert_eq!(by_year("persons", 3), map(&[("2004", 1), ("2005", 2)]));
    assert_eq!(by_year("cases", 3), map(&[("2004", 1), ("2005", 3)]));
    assert_eq!(by_year("cases", 2), map(&[("2004", 1), ("2005", 2)]));

    let total = run(
        dir.path(),
        &query(r#""measure":"cases","contribution_bound":3"#),
    );
    assert_eq!(total.cells, [Vec::<String>::new()]);
    assert_eq!(total.components[0].values, [4]);
    assert_eq!(
        total.components[0].contribution,
        Contribution {
            l0: 3,
            l1: 3,
            linf: 3
        }
    );
    let persons = run(
        dir.path(),
        &query(r#""measure":"persons","contribution_bound":3"#),
    );
    assert_eq!(persons.components[0].values, [2]);
}

#[test]
fn exploitation_types_explode_after_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = rec("p1", "r1", 2004);
    // Sorted: forced_begging, forced_labour, sexual_exploitation; the bound keeps two.
    a.types = Some(vec![
        "sexual_exploitation",
        "forced_labour",
        "forced_begging",
    ]);
    let mut b = rec("p2", "r2", 2004);
    b.types = Some(vec!["forced_labour", "forced_labour"]);
    let mut c = rec("p3", "r3", 2004);
    c.types = Some(vec![]);
    let d = rec("p4", "r4", 2004);
    write_dataset(dir.path(), &[a, b, c, d]);

    let out = run(
        dir.path(),
        &query(r#""measure":"cases","group_by":["exploitation_type"]"#),
    );
    assert_eq!(out.cells.len(), 10);
    assert_eq!(
        nonzero(&out),
        map(&[("forced_begging", 1), ("forced_labour", 2), ("unknown", 2)])
    );
    assert_eq!(out.components[0].contribution.l0, 2);

    let three = run(
        dir.path(),
        &query(r#""measure":"cases","group_by":["exploitation_type"],"list_items_bound":3"#),
    );
    assert_eq!(
        nonzero(&three),
        map(&[
            ("forced_begging", 1),
            ("forced_labour", 2),
            ("sexual_exploitation", 1),
            ("unknown", 2)
        ])
    );
    assert_eq!(
        three.components[0].contribution,
        Contribution {
            l0: 3,
            l1: 3,
            linf: 1
        }
    );

    // Filtering by type without grouping counts each matching record once.
    let filtered = run(
        dir.path(),
        &query(
            r#""measure":"cases","filters":{"exploitation_type":["forced_labour","forced_begging"]}"#,
        ),
    );
    assert_eq!(filtered.components[0].values, [2]);
    // A type beyond the list bound is ignored everywhere, filters included.
    let beyond = run(
        dir.path(),
        &query(r#""measure":"cases","filters":{"exploitation_type":["sexual_exploitation"]}"#),
    );
    assert_eq!(beyond.components[0].values, [0]);
    // Grouped and filtered: only the kept types, and the domain narrows to them.
    let both = run(
        dir.path(),
        &query(
            r#""measure":"cases","group_by":["exploitation_type"],"filters":{"exploitation_type":["forced_labour","unknown"]}"#,
        ),
    );
    assert_eq!(both.cells, [["forced_labour"], ["unknown"]]);
    assert_eq!(both.components[0].values, [2, 2]);
}

#[test]
fn filters_and_period_select_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = rec("p1", "r1", 2004);
    a.gender = Some("female");
    let mut b = rec("p2", "r2", 2005);
    b.gender = Some("male");
    b.registration = (2005, 12);
    let c = rec("p3", "r3", 2005);
    let early = rec("p4", "r4", 2003);
    let mut late = rec("p5", "r5", 2006);
    late.registration = (2006, 1);
    let mut ukr = rec("p6", "r6", 2005);
    ukr.mission = "UKR";
    write_dataset(dir.path(), &[a, b, c, early, late, ukr]);

    let all = run(dir.path(), &query(r#""measure":"cases""#));
    assert_eq!(all.components[0].values, [4]);
    let counted = |filters: &str| {
        run(
            dir.path(),
            &query(&format!(r#""measure":"cases","filters":{filters}"#)),
        )
        .components[0]
            .values[0]
    };
    assert_eq!(counted(r#"{"gender":["female","male"]}"#), 2);
    assert_eq!(counted(r#"{"gender":["unknown"]}"#), 2);
    assert_eq!(counted(r#"{"gender":["unknown"],"mission":["UKR"]}"#), 1);
    assert_eq!(counted(r#"{"registration_month":["2005-12"]}"#), 1);
    assert_eq!(
        counted(r#"{"registration_quarter":["2005-Q1","2005-Q4"]}"#),
        3
    );

    let quarters = run(
        dir.path(),
        &query(r#""measure":"cases","group_by":["registration_quarter"]"#),
    );
    assert_eq!(quarters.cells.len(), 9);
    assert_eq!(
        nonzero(&quarters),
        map(&[("2004-Q1", 1), ("2005-Q1", 2), ("2005-Q4", 1)])
    );
}

#[test]
fn only_files_in_the_manifest_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let q = query(r#""measure":"cases""#);
    // No manifest yet: an empty dataset, zeros.
    assert_eq!(run(dir.path(), &q).components[0].values, [0]);
    assert_eq!(run(dir.path(), &q).generation, 0);

    write_dataset(dir.path(), &[rec("p1", "r1", 2004)]);
    // A file written but never committed (an interrupted batch) is invisible.
    write_file(
        dir.path(),
        "KGZ",
        2004,
        "uncommitted",
        &[rec("p2", "r2", 2004), rec("p3", "r3", 2004)],
    );
    assert_eq!(run(dir.path(), &q).components[0].values, [1]);

    // Once the manifest lists it, the next query sees it.
    let mut manifest = Manifest::read(dir.path()).unwrap();
    manifest.batches[0].files.push(FileEntry {
        path: format!("{}/part-uncommitted.parquet", partition_dir("KGZ", 2004)),
        rows: 2,
    });
    std::fs::write(
        dir.path().join(MANIFEST_FILE),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    assert_eq!(run(dir.path(), &q).components[0].values, [3]);

    // A manifest pointing outside the dataset is refused.
    manifest.batches[0].files[0].path = "../elsewhere.parquet".into();
    std::fs::write(
        dir.path().join(MANIFEST_FILE),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    for data in [in_memory(dir.path()), Data::files(dir.path())] {
        let err =
            block_on(aggregate(&Paid::for_tests(), &data, &missions(), &spec(&q))).unwrap_err();
        assert!(matches!(err, PlanError::UnsafePath { .. }), "{err}");
        assert!(!err.is_caller_error());
    }
}

#[test]
fn value_measures_clamp_bin_and_skip_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = rec("p1", "r1", 2004); // closed after 2 months
    a.closed = Some((2004, 5));
    let mut b = rec("p2", "r2", 2004); // closed after 22 months: clamped to 12
    b.closed = Some((2006, 1));
    let mut c = rec("p3", "r3", 2004); // closed before registration: clamped to 0
    c.closed = Some((2004, 1));
    let d = rec("p4", "r4", 2004); // still open: no value
    let mut e = rec("p5", "r5", 2004);
    e.shelter_accepted = Some(true);
    e.closed = Some((2004, 9));
    let mut f = rec("p6", "r6", 2004);
    f.shelter_accepted = Some(false);
    write_dataset(dir.path(), &[a, b, c, d, e, f]);

    let value = r#""column":"months_to_closure","bounds":{"lower":0,"upper":12}"#;
    let sum = run(dir.path(), &query(&format!(r#""measure":"sum",{value}"#)));
    assert_eq!(sum.components[0].values, [2 + 12 + 6]);
    assert_eq!(
        sum.components[0].contribution,
        Contribution {
            l0: 1,
            l1: 12,
            linf: 12
        }
    );
    let mean = run(dir.path(), &query(&format!(r#""measure":"mean",{value}"#)));
    assert_eq!(mean.components.len(), 2);
    assert_eq!(mean.components[0].values, [20]);
    assert_eq!(mean.components[1].name, "count");
    assert_eq!(mean.components[1].values, [4]);

    let hist = run(
        dir.path(),
        &query(&format!(r#""measure":"histogram",{value},"bins":3"#)),
    );
    assert_eq!(hist.dimensions, ["bin"]);
    assert_eq!(hist.cells, [["[0,3]"], ["[4,7]"], ["[8,12]"]]);
    assert_eq!(hist.components[0].values, [2, 1, 1]);

    let share = run(
        dir.path(),
        &query(r#""measure":"mean","column":"shelter_accepted","bounds":{"lower":0,"upper":1}"#),
    );
    assert_eq!(share.components[0].values, [1]);
    assert_eq!(share.components[1].values, [2]);
}

#[test]
fn threshold_keys_are_the_observed_cells() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = rec("p1", "r1", 2004);
    a.gender = Some("male");
    let b = rec("p2", "r2", 2005);
    let mut c = rec("p3", "r3", 2005);
    c.mission = "UKR";
    c.gender = Some("female");
    write_dataset(dir.path(), &[a, b, c]);
    let out = run(
        dir.path(),
        r#"{"measure":"persons","group_by":["mission","gender"],"keys":"threshold",
        "period":{"from":"2004-01","to":"2005-12"},"budget":{"epsilon":1,"delta":1e-6}}"#,
    );
    assert_eq!(
        out.cells,
        [["KGZ", "male"], ["KGZ", "unknown"], ["UKR", "female"]]
    );
    assert_eq!(out.components[0].values, [1, 1, 1]);
    assert_eq!(out.keys, KeysMode::Threshold);
}

#[test]
fn mission_domain_is_checked_against_the_missions_given() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(&query(r#""measure":"cases","filters":{"mission":["UKR"]}"#));
    let err = block_on(aggregate(
        &Paid::for_tests(),
        &in_memory(dir.path()),
        &["KGZ".to_string()],
        &s,
    ))
    .unwrap_err();
    assert!(err.is_caller_error(), "{err}");
    assert!(err.to_string().contains("filters.mission"), "{err}");
}

// The neighbouring test: removing all records of one person changes every component by at
// most its stated contribution bounds.

const NEIGHBOUR_QUERIES: &[&str] = &[
    r#""measure":"persons","group_by":["mission","registration_year"]"#,
    r#""measure":"cases","group_by":["exploitation_type","gender"]"#,
    r#""measure":"persons","group_by":["exploitation_type"],"list_items_bound":3"#,
    r#""measure":"sum","column":"months_to_closure","bounds":{"lower":-2,"upper":12},"group_by":["gender"]"#,
    r#""measure":"mean","column":"shelter_accepted","bounds":{"lower":0,"upper":1},"group_by":["exploitation_type"]"#,
    r#""measure":"histogram","column":"months_to_closure","bounds":{"lower":0,"upper":20},"bins":4,"group_by":["exploitation_type","registration_year"]"#,
    r#""measure":"quantile","column":"months_to_closure","bounds":{"lower":0,"upper":24},"quantiles":[0.5],"filters":{"gender":["female","unknown"]}"#,
];

/// Cell → values of every component, for comparing answers with different cells.
fn by_cell(a: &Aggregates) -> HashMap<Vec<String>, Vec<i64>> {
    a.cells
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            (
                cell.clone(),
                a.components.iter().map(|c| c.values[i]).collect(),
            )
        })
        .collect()
}

/// The query of a random test: `body` at bound `k`, with threshold keys when asked and the
/// measure can select on a count (not `sum` and `quantile`, see spec.rs). Returns the JSON and
/// whether the keys are thresholded.
fn random_query(body: &str, k: u32, threshold: bool) -> (String, bool) {
    let threshold = threshold
        && !body.contains(r#""measure":"sum""#)
        && !body.contains(r#""measure":"quantile""#);
    let keys = if threshold {
        r#""keys":"threshold","budget":{"epsilon":1,"delta":1e-6}"#
    } else {
        r#""budget":{"epsilon":1}"#
    };
    let json = format!(
        r#"{{{body},"contribution_bound":{k},"period":{{"from":"2004-01","to":"2005-12"}},{keys}}}"#
    );
    (json, threshold)
}

fn check_neighbours(recs: &[Rec], body: &str, k: u32, threshold: bool) {
    let (json, threshold) = random_query(body, k, threshold);
    let s = spec(&json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let answer = |recs: &[Rec]| {
        let dir = tempfile::tempdir().unwrap();
        write_dataset(dir.path(), recs);
        runtime
            .block_on(aggregate(
                &Paid::for_tests(),
                &in_memory(dir.path()),
                &missions(),
                &s,
            ))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let full = answer(recs);
    let full_cells = by_cell(&full);
    let mut persons: Vec<&str> = recs.iter().map(|r| r.person.as_str()).collect();
    persons.sort();
    persons.dedup();
    for p in persons {
        let rest: Vec<Rec> = recs.iter().filter(|r| r.person != p).cloned().collect();
        let neighbour = answer(&rest);
        if !threshold {
            assert_eq!(neighbour.cells, full.cells);
        }
        let neighbour_cells = by_cell(&neighbour);
        let mut keys: Vec<&Vec<String>> = full_cells.keys().chain(neighbour_cells.keys()).collect();
        keys.sort();
        keys.dedup();
        for (i, component) in full.components.iter().enumerate() {
            let bound = component.contribution;
            let changes: Vec<u64> = keys
                .iter()
                .map(|key| {
                    let a = full_cells.get(*key).map_or(0, |v| v[i]);
                    let b = neighbour_cells.get(*key).map_or(0, |v| v[i]);
                    a.abs_diff(b)
                })
                .filter(|d| *d > 0)
                .collect();
            let what = format!("{} without {p} in `{json}`", component.name);
            assert!(
                changes.len() as u64 <= bound.l0,
                "l0 of {what}: {changes:?}"
            );
            assert!(
                changes.iter().sum::<u64>() <= bound.l1,
                "l1 of {what}: {changes:?}"
            );
            assert!(
                changes.iter().all(|d| *d <= bound.linf),
                "linf of {what}: {changes:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn neighbouring_datasets_change_within_the_contribution_bounds(
        recs in arb_dataset(),
        query in 0..NEIGHBOUR_QUERIES.len(),
        k in 1..=3u32,
        threshold in any::<bool>(),
    ) {
        check_neighbours(&recs, NEIGHBOUR_QUERIES[query], k, threshold);
    }
}

#[test]
fn the_bounds_are_attained() {
    // One person, three records of two types each, k = 3, m = 2 (so l0 = l1 = 6, linf = 3).
    let counts = |types: [[&'static str; 2]; 3]| {
        let recs: Vec<Rec> = types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut r = rec("p1", &format!("r{i}"), 2004);
                r.types = Some(t.to_vec());
                r
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        write_dataset(dir.path(), &recs);
        let out = run(
            dir.path(),
            &query(r#""measure":"cases","group_by":["exploitation_type"],"contribution_bound":3"#),
        );
        let c = &out.components[0];
        assert_eq!(
            c.contribution,
            Contribution {
                l0: 6,
                l1: 6,
                linf: 3
            }
        );
        let nonzero = c.values.iter().filter(|v| **v > 0).count();
        (
            nonzero,
            c.values.iter().sum::<i64>(),
            *c.values.iter().max().unwrap(),
        )
    };
    // Disjoint types: six cells change by one each (l0 and l1 attained).
    assert_eq!(
        counts([
            ["forced_labour", "forced_begging"],
            ["other", "sexual_exploitation"],
            ["slavery", "forced_marriage"]
        ]),
        (6, 6, 1)
    );
    // A shared type: one cell changes by k (linf attained).
    assert_eq!(
        counts([
            ["forced_labour", "other"],
            ["forced_labour", "sexual_exploitation"],
            ["forced_labour", "slavery"]
        ]),
        (4, 6, 3)
    );
}

/// The physical plan of `spec`'s statement over `data`, as DataFusion would run it.
fn physical_plan(data: &Data, json: &str) -> (bool, String) {
    let s = spec(json);
    let sql = statement(&s, &missions());
    block_on(async {
        let session = data.session(&|_| true).await.unwrap();
        let frame = session.ctx.sql(&sql).await.unwrap();
        let plan = frame.create_physical_plan().await.unwrap();
        let text = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        (data.snapshot_info().is_some(), text)
    })
}

// The bounding over the snapshot is one pass in the declared order: no sort in any query's
// plan. Over the files the same statement sorts, which is what the snapshot saves.
#[test]
fn snapshot_queries_do_not_sort() {
    let dir = tempfile::tempdir().unwrap();
    let mut recs = vec![rec("p1", "r1", 2004), rec("p1", "r2", 2004)];
    recs.push(rec("p2", "r3", 2005));
    write_dataset(dir.path(), &recs);
    let value = r#""column":"months_to_closure","bounds":{"lower":0,"upper":24}"#;
    let bodies = [
        r#""measure":"persons","group_by":["mission","registration_year"],"contribution_bound":2"#
            .to_string(),
        r#""measure":"persons","group_by":["gender"]"#.to_string(),
        r#""measure":"cases","group_by":["exploitation_type"],"contribution_bound":3"#.to_string(),
        format!(r#""measure":"sum",{value},"contribution_bound":2"#),
        format!(r#""measure":"histogram",{value},"bins":4,"group_by":["mission"]"#),
    ];
    for body in &bodies {
        let json = query(body);
        let (in_memory_plan, plan) = physical_plan(&in_memory(dir.path()), &json);
        assert!(in_memory_plan, "the snapshot was not used");
        assert!(plan.contains("BoundedWindowAggExec"), "{plan}");
        assert!(!plan.contains("SortExec"), "{body}: {plan}");
        let (in_memory_plan, plan) = physical_plan(&Data::files(dir.path()), &json);
        assert!(!in_memory_plan);
        assert!(plan.contains("SortExec"), "{body}: {plan}");
    }
}

/// Queries the kernel must answer exactly as the SQL does: the neighbour queries, and the
/// other shapes (time dimensions, filters on every kind of dimension, cell filters on exploded
/// types, flag values).
const KERNEL_QUERIES: &[&str] = &[
    r#""measure":"persons","group_by":["registration_quarter","exploitation_type"],"filters":{"exploitation_type":["forced_labour","unknown"]}"#,
    r#""measure":"cases","group_by":["registration_month"],"filters":{"exploitation_type":["forced_labour","slavery"],"mission":["KGZ","unknown"]}"#,
    r#""measure":"mean","column":"months_to_closure","bounds":{"lower":0,"upper":12},"group_by":["mission","shelter_accepted"]"#,
    r#""measure":"histogram","column":"shelter_accepted","bounds":{"lower":0,"upper":1},"bins":2,"group_by":["gender"],"filters":{"shelter_accepted":["yes","unknown"]}"#,
    r#""measure":"sum","column":"months_to_closure","bounds":{"lower":-5,"upper":5},"filters":{"registration_year":["2005"],"gender":["male"]}"#,
    r#""measure":"cases","group_by":["mission","registration_year","gender","exploitation_type"],"list_items_bound":1"#,
];

/// The kernel over the snapshot of `recs` answers `json` (it does not fall back to the SQL)
/// with exactly the aggregates and records-per-person counts of the SQL over the files.
/// The kernel over the snapshot and the SQL over the files of `recs`, in both key formats: the
/// format 2 SQL is the reference; every other answer must equal it (and the kernel must not
/// fall back).
fn kernel_matches_sql(recs: &[Rec], json: &str) {
    let s = spec(json);
    let mut reference = None;
    for keys in [KeyEncoding::Binary, KeyEncoding::Hex] {
        let dir = tempfile::tempdir().unwrap();
        write_dataset_in(dir.path(), recs, keys);
        let files = Data::files(dir.path());
        let (groups, counts) = block_on(async {
            match in_memory(dir.path()).acquire(&|_| true).await.unwrap() {
                Source::Snapshot(snapshot) => (
                    kernel::aggregate(snapshot.batches(), &s, &missions()),
                    kernel::records_per_person(snapshot.batches(), &s, &missions(), 3),
                ),
                Source::Files(_) => panic!("{keys:?}: the snapshot was not loaded"),
            }
        });
        let sql = block_on(aggregate(&Paid::for_tests(), &files, &missions(), &s)).unwrap();
        let sql_counts = block_on(records_per_person(
            &Paid::for_tests(),
            &files,
            &missions(),
            &s,
            3,
        ))
        .unwrap();
        let (want, want_counts) =
            reference.get_or_insert_with(|| (sql.clone(), sql_counts.clone()));
        assert_eq!(&sql, want, "{keys:?} files, {json}");
        assert_eq!(
            &sql_counts, want_counts,
            "{keys:?} records per person, {json}"
        );
        let groups = groups.unwrap_or_else(|| panic!("{keys:?}: the kernel fell back on {json}"));
        assert_eq!(
            &assemble(&s, &missions(), sql.generation, groups),
            want,
            "{keys:?} snapshot, {json}"
        );
        assert_eq!(
            counts.as_ref(),
            Some(&*want_counts),
            "{keys:?} snapshot records per person, {json}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn the_kernel_equals_the_sql_on_the_files(
        recs in arb_dataset(),
        query in 0..NEIGHBOUR_QUERIES.len() + KERNEL_QUERIES.len(),
        k in 1..=3u32,
        threshold in any::<bool>(),
    ) {
        let body = NEIGHBOUR_QUERIES.iter().chain(KERNEL_QUERIES).nth(query).unwrap();
        kernel_matches_sql(&recs, &random_query(body, k, threshold).0);
    }
}

// A stored type outside the code list takes one of the record's `list_items_bound` slots (in
// sorted order) but has no cell of its own, in the kernel as in the SQL.
#[test]
fn unlisted_types_take_a_slot_and_no_cell() {
    let mut a = rec("p1", "r1", 2004);
    a.types = Some(vec!["zzz_unlisted", "forced_labour", "aaa_unlisted"]);
    let mut b = rec("p2", "r2", 2004);
    b.types = Some(vec!["slavery", "aaa_unlisted", "slavery"]);
    let recs = [a, b];
    for body in [
        r#""measure":"cases","group_by":["exploitation_type"]"#,
        r#""measure":"cases","filters":{"exploitation_type":["forced_labour","slavery"]}"#,
        r#""measure":"persons","group_by":["exploitation_type"],"filters":{"exploitation_type":["slavery"]}"#,
    ] {
        kernel_matches_sql(&recs, &query(body));
    }
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), &recs);
    let by_type = run(
        dir.path(),
        &query(r#""measure":"cases","group_by":["exploitation_type"]"#),
    );
    assert_eq!(
        nonzero(&by_type),
        map(&[("forced_labour", 1), ("slavery", 1)])
    );
}
