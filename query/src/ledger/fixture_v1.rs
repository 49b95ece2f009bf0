//! Writes `query/tests/fixtures/ledger-v1.sqlite` with the schema-1 ledger (before rho): run once
//! with `CTSTATS_WRITE_FIXTURE=<path> cargo test --workspace --locked --lib write_ledger_v1 -- --ignored`.

use crate::ledger::{Cost, Ledger, Role};
use crate::release::{PeriodKind, ReleaseRequest};
use crate::service::{Service, ServiceConfig};
use crate::testdata::{block_on, missions, rec, spec, write_dataset};

#[test]
#[ignore]
fn write_ledger_v1() {
    let Ok(out) = std::env::var("CTSTATS_WRITE_FIXTURE") else {
        panic!("set CTSTATS_WRITE_FIXTURE to the output path");
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ds");
    let mut recs = Vec::new();
    for i in 0..120 {
        let mut r = rec(&format!("p{i}"), &format!("r{i}"), 2004 + (i % 2) as i32);
        r.mission = if i % 3 == 0 { "UKR" } else { "KGZ" };
        r.gender = Some(if i % 2 == 0 { "female" } else { "male" });
        recs.push(r);
    }
    write_dataset(&data, &recs);
    let path = dir.path().join("ledger.sqlite");
    let ledger = Ledger::open(&path).unwrap();
    let (analyst, _) = ledger.add_principal("hq", Role::Analyst, None).unwrap();
    let (researcher, _) = ledger
        .add_principal("uni", Role::Researcher, None)
        .unwrap();
    let (pure, _) = ledger
        .add_principal("pure", Role::Researcher, None)
        .unwrap();
    ledger.set_budget(&analyst.id, "ds", 50.0, 1e-3).unwrap();
    ledger.set_budget(&researcher.id, "ds", 5.0, 1e-4).unwrap();
    ledger.set_budget(&pure.id, "ds", 2.0, 0.0).unwrap();
    // A charge whose answer was never stored (a crash between charge and release).
    ledger
        .charge(
            &researcher.id,
            "ds",
            "crashed",
            Cost {
                epsilon: 0.25,
                delta: 1e-6,
            },
        )
        .unwrap();
    let config = ServiceConfig {
        data,
        dataset: "ds".into(),
        missions: missions(),
        max_upload_bytes: 0,
        max_concurrent_queries: 1,
    };
    let service = Service::new(config, ledger, None);
    const PERIOD: &str = r#""period":{"from":"2004-01","to":"2005-12"}"#;
    let queries = [
        (
            &researcher,
            r#""measure":"persons","group_by":["mission"],"budget":{"epsilon":0.5}"#,
        ),
        (
            &researcher,
            r#""measure":"persons","group_by":["mission","registration_year"],"mechanism":"gaussian","budget":{"epsilon":1,"delta":1e-6}"#,
        ),
        (
            &researcher,
            r#""measure":"persons","group_by":["gender"],"keys":"threshold","budget":{"epsilon":1,"delta":1e-5}"#,
        ),
        (
            &researcher,
            r#""measure":"mean","column":"months_to_closure","bounds":{"lower":0,"upper":24},"budget":{"epsilon":0.5}"#,
        ),
        (
            &pure,
            r#""measure":"cases","group_by":["registration_year"],"budget":{"epsilon":0.75}"#,
        ),
        (
            &analyst,
            r#""measure":"persons","group_by":["mission"],"mechanism":"gaussian","budget":{"epsilon":2,"delta":1e-7}"#,
        ),
    ];
    block_on(async {
        for (who, body) in queries {
            let s = spec(&format!("{{{body},{PERIOD}}}"));
            service.ask(who, s).await.unwrap();
        }
        let request = ReleaseRequest {
            name: "fixture".into(),
            indicators: vec!["persons_assisted".into(), "cases".into()],
            missions: None,
            from: 2004,
            to: 2005,
            period: PeriodKind::Year,
            epsilon: 3.0,
            delta: None,
            contribution_bound: None,
        };
        service.create_release(&analyst, request).await.unwrap();
    });
    drop(service);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
        .unwrap();
    conn.execute(&format!("VACUUM INTO '{out}'"), []).unwrap();
}
