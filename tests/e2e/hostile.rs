//! Hostile input over HTTP against `ctstats serve` as a process: a 100 MB cell, a line without
//! end, a zip bomb inside an .xlsx, deeply nested JSON (as a query and as an upload), a million
//! columns (CSV and JSON Lines), and a flood of uploads at once. Each must get a clear error
//! naming its rule, the server must stay up, and its peak memory must stay bounded: the upload
//! body is held (up to the upload limit) in an in-memory file outside the process's RSS, and
//! the readers cap what they buffer from it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use axum::http::Method;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;

use crate::common::*;
use crate::serve::{ServedProcess, send, service};

/// A header the canonical profile accepts, so a file gets past it to its rows.
const HEADER: &str = "case_id,registration_date,gender,notes";

/// The server's peak resident memory (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024
}

/// `POST path` with a body written by `body` from another thread (chunked when `length` is
/// `None`), while this thread reads the answer: the server may answer before the body ends, as
/// it does for an upload over the limit.
fn post(
    addr: &str,
    path: &str,
    token: &str,
    length: Option<u64>,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()> + Send + 'static,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    let framing = match length {
        Some(n) => format!("Content-Length: {n}"),
        None => "Transfer-Encoding: chunked".to_string(),
    };
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\n{framing}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let chunked = length.is_none();
    let sender = std::thread::spawn(move || {
        // Errors are expected once the server has answered and closed.
        if chunked {
            let mut framed = Chunked(&mut writer);
            let _ = body(&mut framed).and_then(|()| framed.0.write_all(b"0\r\n\r\n"));
        } else {
            let _ = body(&mut writer);
        }
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    sender.join().unwrap();
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response to {path}: {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    (status, json)
}

/// Writes each `write` as one HTTP/1.1 chunk.
struct Chunked<'a>(&'a mut TcpStream);

impl Write for Chunked<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        write!(self.0, "{:x}\r\n", buf.len())?;
        self.0.write_all(buf)?;
        self.0.write_all(b"\r\n")?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// `times` copies of `chunk`, written one by one.
fn repeat(chunk: Vec<u8>, times: usize) -> impl FnOnce(&mut dyn Write) -> std::io::Result<()> {
    move |w| (0..times).try_for_each(|_| w.write_all(&chunk))
}

/// The rules named by an upload's report (its file-level and row errors) or an error body.
fn rules(body: &Value) -> String {
    let mut found = Vec::new();
    collect(body, &mut found);
    found.join(",")
}

fn collect(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if (key == "rule" || key == "code")
                    && let Some(s) = v.as_str()
                {
                    found.push(s.to_string());
                }
                collect(v, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, found)),
        _ => {}
    }
}

/// An .xlsx whose one sheet unpacks to `mib` MiB of the same row: about 1,000 times smaller.
fn zip_bomb(mib: usize) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut bytes);
    let deflate = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file("xl/worksheets/sheet1.xml", deflate).unwrap();
    zip.write_all(
        br#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
    )
    .unwrap();
    let row = r#"<row><c t="inlineStr"><is><t>x</t></is></c></row>"#.repeat(1 << 14);
    for _ in 0..(mib << 20) / row.len() {
        zip.write_all(row.as_bytes()).unwrap();
    }
    zip.write_all(b"</sheetData></worksheet>").unwrap();
    zip.finish().unwrap();
    bytes.into_inner()
}

#[test]
fn hostile_uploads_and_bodies_get_clear_errors_in_bounded_memory() {
    let ServedProcess {
        dir: _dir,
        data,
        ngo,
        analyst,
        mut child,
        addr,
        ..
    } = service(100.0).serve_as_process(&[], Stdio::null());
    let pid = child.id();
    let upload = |format: &str| format!("/v1/batches?mission=UKR&format={format}");
    let mut cases: Vec<(&str, u16, String)> = Vec::new();
    let baseline = peak_rss_mib(pid);
    let rows_before = live_rows(&data);

    // 1. A 100 MB cell: one quoted CSV cell, so one line of 100 MB.
    let mb100 = 100 * 1000 * 1000;
    let head = format!("{HEADER}\nH-1,2005-01-10,female,\"").into_bytes();
    let tail = b"\"\n".to_vec();
    let length = (head.len() + mb100 + tail.len()) as u64;
    let (status, body) = post(&addr, &upload("csv"), &ngo, Some(length), move |w| {
        w.write_all(&head)?;
        repeat(vec![b'x'; 1000 * 1000], 100)(w)?;
        w.write_all(&tail)
    });
    assert!(rules(&body).contains("line_too_long"), "{status} {body}");
    cases.push(("100 MB cell (CSV)", status, rules(&body)));

    // 2. A line without end, sent without a length: cut at the upload limit (256 MiB).
    let (status, body) = post(&addr, &upload("csv"), &ngo, None, move |w| {
        w.write_all(format!("{HEADER}\n").as_bytes())?;
        repeat(vec![b'y'; 1 << 20], 1 << 10)(w)
    });
    assert_eq!((status, rules(&body).as_str()), (413, "payload_too_large"));
    cases.push((
        "endless line (chunked, 1 GiB offered)",
        status,
        rules(&body),
    ));

    // The same line declared 1 GiB up front: refused before a byte is read.
    let (status, body) = post(&addr, &upload("jsonl"), &ngo, Some(1 << 30), |_| Ok(()));
    assert_eq!((status, rules(&body).as_str()), (413, "payload_too_large"));

    // 3. A zip bomb: an .xlsx of about 300 KiB whose sheet unpacks to 300 MiB.
    let bomb = zip_bomb(300);
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
    let length = bomb.len() as u64;
    let (status, body) = post(&addr, &upload("xlsx"), &ngo, Some(length), move |w| {
        w.write_all(&bomb)
    });
    assert!(
        rules(&body).contains("workbook_too_large"),
        "{status} {body}"
    );
    cases.push(("xlsx zip bomb (300 MiB unpacked)", status, rules(&body)));

    // 4. Deeply nested JSON: as a query body and as a JSON Lines row.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let query = deep.clone().into_bytes();
    let (status, body) = post(
        &addr,
        "/v1/query",
        &analyst,
        Some(query.len() as u64),
        move |w| w.write_all(&query),
    );
    assert_eq!(status, 400, "{body}");
    cases.push(("100,000-deep JSON query", status, rules(&body)));
    let row = format!(
        "{{\"case_id\":\"H-1\",\"registration_date\":\"2005-01-10\",\"gender\":\"female\",\"notes\":{deep}}}\n"
    )
    .into_bytes();
    let (status, body) = post(
        &addr,
        &upload("jsonl"),
        &ngo,
        Some(row.len() as u64),
        move |w| w.write_all(&row),
    );
    assert!(rules(&body).contains("invalid_json"), "{status} {body}");
    cases.push(("100,000-deep JSON Lines row", status, rules(&body)));

    // 5. A million columns: a CSV header, and a JSON Lines object with a million keys.
    let header: Vec<u8> = (0..1_000_000).flat_map(|_| *b"c,").chain(*b"c\n").collect();
    let (status, body) = post(
        &addr,
        &upload("csv"),
        &ngo,
        Some(header.len() as u64),
        move |w| w.write_all(&header),
    );
    assert!(rules(&body).contains("too_many_columns"), "{status} {body}");
    cases.push(("1,000,000-column CSV header", status, rules(&body)));
    let mut object = String::from("{");
    for i in 0..1_000_000 {
        object.push_str(&format!("\"k{i}\":1,"));
    }
    object.push_str("\"case_id\":\"H-1\"}\n");
    let object = object.into_bytes();
    let (status, body) = post(
        &addr,
        &upload("jsonl"),
        &ngo,
        Some(object.len() as u64),
        move |w| w.write_all(&object),
    );
    assert!(rules(&body).contains("line_too_long"), "{status} {body}");
    cases.push(("1,000,000-key JSON Lines object", status, rules(&body)));

    // 6. Eight 200 MB uploads at once: two are taken at a time, the others wait unread.
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let (addr, path, ngo) = (addr.clone(), upload("csv"), ngo.clone());
            std::thread::spawn(move || {
                let prefix = format!("{HEADER}\nH-1,2005-01-10,female,").into_bytes();
                let length = prefix.len() as u64 + (200 << 20);
                post(&addr, &path, &ngo, Some(length), move |w| {
                    w.write_all(&prefix)?;
                    repeat(vec![b'z'; 1 << 20], 200)(w)
                })
            })
        })
        .collect();
    for sender in senders {
        let (status, body) = sender.join().unwrap();
        assert!(rules(&body).contains("line_too_long"), "{status} {body}");
        cases.push(("one of 8 concurrent 200 MiB uploads", status, rules(&body)));
    }

    // Still serving, and nothing was committed or written to the dataset.
    let (status, body) = crate::serve::http(&addr, "GET", "/v1/dimensions", &analyst, "").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(live_rows(&data), rows_before);
    let peak = peak_rss_mib(pid);
    child.kill().unwrap();
    child.wait().unwrap();
    for (case, status, rules) in &cases {
        eprintln!("hostile: {case}: HTTP {status}, {rules}");
    }
    eprintln!("hostile: server peak RSS {peak} MiB (after start-up {baseline} MiB)");
    // The largest single input was 1 GiB offered and 300 MiB unpacked; eight uploads offered
    // 1.6 GiB at once. Growth stays within the readers' caps (4 MiB lines, 64 KiB cells); a
    // reader that buffered the 100 MB cell alone would exceed it.
    assert!(
        peak < baseline + 80,
        "peak {peak} MiB, baseline {baseline} MiB"
    );
}

/// Random bytes, or `seed` with up to 16 bytes overwritten, inserted or deleted.
fn hostile_bytes(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let mutated = prop::collection::vec((any::<usize>(), any::<u8>(), 0..3u8), 1..16).prop_map(
        move |edits| {
            let mut bytes = seed.clone();
            for (at, byte, op) in edits {
                let i = at % bytes.len().max(1);
                match op {
                    0 if !bytes.is_empty() => bytes[i] = byte,
                    1 => bytes.insert(i.min(bytes.len()), byte),
                    _ if !bytes.is_empty() => {
                        bytes.remove(i);
                    }
                    _ => bytes.push(byte),
                }
            }
            bytes
        },
    );
    prop_oneof![prop::collection::vec(any::<u8>(), 0..2048), mutated]
}

/// Fuzz target for `POST /v1/batches` through the router: hostile bodies (random, or a real
/// upload of each format mutated) under every format, with or without `accept_valid`, raw or
/// multipart. Every answer must be a 2xx with a report or a 4xx with a code; never a 5xx, and
/// a report always accounts for every row it read. 64 cases in `cargo test`;
/// `CTSTATS_FUZZ_SECONDS=600 cargo test --workspace --test e2e fuzz_upload -- --nocapture`
/// runs it that long.
#[test]
fn fuzz_upload_endpoint() {
    let s = service(1.0);
    let golden = |case: &str, file: &str| {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/golden")
                .join(case)
                .join(file),
        )
        .unwrap()
    };
    let seeds = [
        ("csv", golden("canonical-csv-utf8", "input.csv")),
        ("jsonl", golden("canonical-jsonl", "input.jsonl")),
        ("xlsx", golden("canonical-xlsx", "input.xlsx")),
        ("parquet", golden("canonical-parquet", "input.parquet")),
    ];
    let strategy = (0..seeds.len(), any::<bool>(), any::<bool>()).prop_flat_map(
        move |(seed, accept_valid, multipart)| {
            let (format, bytes) = seeds[seed].clone();
            hostile_bytes(bytes).prop_map(move |body| (format, accept_valid, multipart, body))
        },
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = std::env::var("CTSTATS_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(|v| std::time::Instant::now() + Duration::from_secs(v));
    let started = std::time::Instant::now();
    let mut cases = 0u64;
    let outcomes = std::sync::Mutex::new(std::collections::BTreeMap::<String, u64>::new());
    loop {
        let config = Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        };
        // In `cargo test` the 64 cases are the same every run, so the check below that some
        // mutated uploads still commit cannot fail by chance (a random draw of 64 once had
        // none); a timed run draws afresh.
        let mut runner = if deadline.is_none() {
            TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
        } else {
            TestRunner::new(config)
        };
        let outcome = runner.run(&strategy, |(format, accept_valid, multipart, body)| {
            let uri =
                format!("/v1/batches?mission=UKR&format={format}&accept_valid={accept_valid}");
            let (content_type, body) = if multipart {
                let mut form = format!(
                    "--b0undary\r\nContent-Disposition: form-data; name=\"file\"; \
                     filename=\"upload.{format}\"\r\n\r\n"
                )
                .into_bytes();
                form.extend_from_slice(&body);
                form.extend_from_slice(b"\r\n--b0undary--\r\n");
                ("multipart/form-data; boundary=b0undary", form)
            } else {
                ("application/octet-stream", body)
            };
            let (status, _, bytes) = runtime.block_on(send(
                &s.router,
                Method::POST,
                &uri,
                Some(&s.tokens.ngo),
                Some(content_type),
                body,
            ));
            let text = String::from_utf8_lossy(&bytes);
            prop_assert!(!status.is_server_error(), "{status}: {text}");
            let json: Value = serde_json::from_slice(&bytes)
                .map_err(|e| TestCaseError::fail(format!("{status}: {e}: {text}")))?;
            let mut named: Vec<String> = rules(&json).split(',').map(str::to_string).collect();
            named.sort();
            named.dedup();
            let outcome = format!("{} {}", status.as_u16(), named.join(","));
            *outcomes.lock().unwrap().entry(outcome).or_default() += 1;
            if status.is_success() || status.as_u16() == 422 {
                let report = &json["report"];
                let read = report["rows_read"].as_u64().unwrap_or(0);
                let accounted = report["rows_valid"].as_u64().unwrap_or(0)
                    + report["rows_invalid"].as_u64().unwrap_or(0);
                prop_assert_eq!(read, accounted, "{}", text);
            } else {
                // Errors are `{"error": {"code", "message"}}`.
                let code = json["error"]["code"].as_str();
                prop_assert!(code.is_some_and(|c| !c.is_empty()), "{text}");
            }
            Ok(())
        });
        if let Err(e) = outcome {
            panic!("fuzz upload endpoint: {e}");
        }
        cases += 64;
        if deadline.is_none_or(|d| std::time::Instant::now() >= d) {
            break;
        }
    }
    let outcomes = outcomes.into_inner().unwrap();
    eprintln!(
        "fuzz upload endpoint: {cases} cases in {:.0} s, no failure; outcomes {outcomes:?}",
        started.elapsed().as_secs_f64()
    );
    // The seeds are real uploads: some mutations must still commit, or the target only ever
    // exercised the front door.
    assert!(
        outcomes.keys().any(|k| k.starts_with("201")),
        "{outcomes:?}"
    );
}
