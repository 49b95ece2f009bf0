//! The statement table (`tests/data/sql/statements.sql` -> `compiled.md`), the refusals the
//! dialect promises, and SQL and JSON asking the same question alike.

use std::path::PathBuf;

use super::*;
use crate::spec::QuerySpec;

fn missions() -> Vec<String> {
    vec!["KGZ".to_string(), "UKR".to_string()]
}

fn table_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/sql")
}

/// Each case of the table: its title and statement.
fn cases() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(table_dir().join("statements.sql")).unwrap();
    text.split("\n\n")
        .filter(|block| !block.lines().all(|l| l.starts_with("-- ") || l.is_empty()))
        .map(|block| {
            let (title, statement) = block.trim().split_once('\n').unwrap();
            let title = title
                .strip_prefix("-- ")
                .expect("a case starts with -- title");
            (title.to_string(), statement.trim().to_string())
        })
        .collect()
}

/// What a statement becomes: the compiled spec and its validation, or the refusal.
fn outcome(sql: &str) -> String {
    match compile(sql) {
        Err(e) => format!("refused: {e}"),
        Ok(q) => {
            let compiled = serde_json::to_string(&q).unwrap();
            let validated = match q.spec.validate(&missions()) {
                Ok(v) => format!("canonical: {}", v.canonical_json()),
                Err(e) => format!("invalid_query: {e}"),
            };
            format!("compiled: {compiled}\n\n{validated}")
        }
    }
}

#[test]
fn sql_golden_statements_compile_as_recorded() {
    let mut out = String::from(
        "# SQL statements and what they compile to\n\nWritten by `sql_golden_statements_compile_as_recorded` \
         (`query/src/sql/tests.rs`) from `statements.sql`; `UPDATE_GOLDEN=1` writes it again.\n",
    );
    for (title, sql) in cases() {
        out.push_str(&format!(
            "\n## {title}\n\n```sql\n{sql}\n```\n\n{}\n",
            outcome(&sql)
        ));
    }
    let path = table_dir().join("compiled.md");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &out).unwrap();
        return;
    }
    let recorded = std::fs::read_to_string(&path).unwrap_or_default();
    if recorded != out {
        let line = recorded
            .lines()
            .zip(out.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(recorded.lines().count().min(out.lines().count()));
        panic!(
            "{} differs from what the statements compile to, first at line {}:\n  recorded: {:?}\n  now:      {:?}\n\
             (UPDATE_GOLDEN=1 writes it again)",
            path.display(),
            line + 1,
            recorded.lines().nth(line),
            out.lines().nth(line)
        );
    }
}

/// The table keeps a case for every refusal the dialect promises, refused for that reason.
#[test]
fn the_table_refuses_every_construct_the_dialect_forbids() {
    let refusals: Vec<(String, SqlError)> = cases()
        .into_iter()
        .filter(|(title, _)| title.starts_with("refused"))
        .map(|(title, sql)| match compile(&sql) {
            Err(e) => (title, e),
            Ok(q) => panic!("{title}: compiled to {q:?}"),
        })
        .collect();
    for construct in [
        "JOIN",
        "subquery",
        "UNION",
        "WITH",
        "window function",
        "HAVING",
        "MIN/MAX",
        "column not grouped",
        "unknown column",
        "pseudonymised column",
        "OR",
        "period",
        "aggregate",
        "SELECT",
        "option",
    ] {
        assert!(
            refusals.iter().any(|(_, e)| e.construct == construct),
            "no case refuses {construct}"
        );
    }
    let unknown = refusals
        .iter()
        .find(|(_, e)| e.construct == "unknown column")
        .unwrap();
    assert!(
        unknown.1.message.contains("did you mean `gender`"),
        "{unknown:?}"
    );
    // Every refusal points into its statement.
    for (title, sql) in cases() {
        if let Err(e) = compile(&sql) {
            let line = sql.lines().nth(e.line as usize - 1);
            assert!(
                line.is_some_and(|l| e.column as usize <= l.chars().count() + 1),
                "{title}: {e} is outside the statement"
            );
        }
    }
}

/// The text at a refusal's position.
fn at_position(sql: &str, e: &SqlError) -> String {
    let line = sql.lines().nth(e.line as usize - 1).unwrap();
    line.chars().skip(e.column as usize - 1).collect()
}

#[test]
fn refusals_point_at_the_construct() {
    let cases = [
        (
            "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1) mission, COUNT(*)\nFROM cases \
             JOIN persons ON cases.person_key = persons.person_key GROUP BY mission",
            "persons ON",
        ),
        (
            "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1) mission, COUNT(*) FROM cases\n\
             WHERE registration_year = 2005\nGROUP BY mission HAVING COUNT(*) > 3",
            "COUNT(*) > 3",
        ),
        (
            "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)\n  gendr, COUNT(*) FROM cases",
            "gendr",
        ),
        (
            "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1, epsilom = 2) mission",
            "epsilom",
        ),
        (
            "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1) mission, COUNT(*) FROM cases \
             WHERE registration_year = 2005 AND record_key = 'x' GROUP BY mission",
            "record_key",
        ),
        (
            "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1) mission,\n   MAX(months_to_closure) \
             FROM cases GROUP BY mission",
            "MAX(",
        ),
    ];
    for (sql, expected) in cases {
        let e = compile(sql).expect_err(sql);
        let text = at_position(sql, &e);
        assert!(text.starts_with(expected), "{e}: points at {text:?}");
    }
}

#[test]
fn sql_and_json_asking_the_same_question_have_one_hash() {
    let sql = "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 0.5, max_records_per_person = 2)
        registration_year, mission, COUNT(DISTINCT person) AS persons
        FROM cases
        WHERE registration_year BETWEEN 2003 AND 2008 AND gender = 'female'
        GROUP BY registration_year, mission ORDER BY persons DESC LIMIT 3";
    let json = r#"{"measure": "persons", "group_by": ["mission", "registration_year"],
        "filters": {"gender": ["female"]}, "period": {"from": "2003-01", "to": "2008-12"},
        "contribution_bound": 2, "budget": {"epsilon": 0.5}}"#;
    let from_sql = compile(sql).unwrap();
    let from_json = QuerySpec::from_json(json).unwrap();
    let (a, b) = (
        from_sql.spec.validate(&missions()).unwrap(),
        from_json.validate(&missions()).unwrap(),
    );
    assert_eq!(a.hash(), b.hash());
    assert_eq!(
        from_sql.arrangement,
        Arrangement {
            order_by: vec![OrderKey {
                column: "estimate".into(),
                descending: true
            }],
            limit: Some(3),
            offset: 0
        }
    );
    // A different question has another hash.
    let other = compile(&sql.replace("0.5", "0.25")).unwrap();
    assert_ne!(other.spec.validate(&missions()).unwrap().hash(), a.hash());
}

#[test]
fn no_refusal_quotes_a_literal_of_the_statement() {
    let canary = "zq9canary";
    for (title, sql) in cases() {
        // Put the canary in place of every quoted literal.
        let mut planted = String::new();
        let mut quoted = false;
        for ch in sql.chars() {
            if ch == '\'' {
                quoted = !quoted;
                planted.push('\'');
                if quoted {
                    planted.push_str(canary);
                }
            } else if !quoted {
                planted.push(ch);
            }
        }
        if let Err(e) = compile(&planted) {
            assert!(!e.to_string().contains(canary), "{title}: {e}");
        }
    }
}
