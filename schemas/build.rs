//! Writes the code-list enums of `src/codes.rs` from `data/code_lists.tsv`: one
//! `code_list!` invocation per list, in `$OUT_DIR/code_lists.rs`.

use std::fmt::Write as _;
use std::path::Path;

const TABLE: &str = "data/code_lists.tsv";

fn main() {
    println!("cargo:rerun-if-changed={TABLE}");
    let text =
        std::fs::read_to_string(TABLE).unwrap_or_else(|e| panic!("cannot read {TABLE}: {e}"));
    let mut out = String::new();
    let mut seen: Vec<String> = Vec::new();
    let mut open: Option<(String, String)> = None;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let at = || format!("{TABLE}:{}", n + 1);
        let cells: Vec<&str> = line.split('\t').collect();
        match cells[..] {
            [list, ty, "", doc] => {
                if open.is_some() {
                    out.push_str("});\n\n");
                }
                assert!(
                    !seen.iter().any(|s| s == list),
                    "{}: list {list} opened twice",
                    at()
                );
                seen.push(list.to_string());
                writeln!(
                    out,
                    "code_list!(\n    #[doc = {:?}]\n    {ty}, {list:?}, {{",
                    format!(" {doc}")
                )
                .expect("write to a string");
                open = Some((list.to_string(), ty.to_string()));
            }
            [list, ty, variant, name, label] => {
                let current = open.as_ref().map(|(l, t)| (l.as_str(), t.as_str()));
                assert!(
                    current == Some((list, ty)),
                    "{}: a value of {list} ({ty}) outside the rows of its list",
                    at()
                );
                writeln!(out, "    {variant} => ({name:?}, {label:?}),")
                    .expect("write to a string");
            }
            _ => panic!(
                "{}: expected 4 or 5 tab-separated cells, found {}",
                at(),
                cells.len()
            ),
        }
    }
    if open.is_some() {
        out.push_str("});\n");
    }
    let dir = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    let path = Path::new(&dir).join("code_lists.rs");
    std::fs::write(&path, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
