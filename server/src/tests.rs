//! Tests of the router itself: panics, upload permits, and that every code is tested.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::body::Body;
use axum::http::StatusCode;
use ctstats_query::ledger::Role;
use ctstats_query::service::{TemplateForm, UploadError, UploadOutcome, UploadRequest};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::*;

#[tokio::test]
async fn a_panicking_handler_gets_the_generic_500_body() {
    let router: Router = Router::new()
        .route(
            "/boom",
            get(|| async {
                let bound: i64 = std::hint::black_box(i64::MIN);
                // The kind of bug Schemathesis found: overflow in a debug build.
                Json(bound.checked_abs().expect("overflow"))
            }),
        )
        .layer(middleware::from_fn(log_requests));
    let response = router
        .oneshot(
            axum::http::Request::get("/boom")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "internal");
    assert!(!body.to_string().contains("overflow"), "{body}");
}

/// Counts how many uploads it is running at once.
struct SlowUploader {
    active: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl Uploader for SlowUploader {
    fn upload(&self, _: &Path, _: &UploadRequest) -> Result<UploadOutcome, UploadError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.active.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(100));
        self.active.fetch_sub(1, SeqCst);
        Ok(UploadOutcome {
            status: "rejected".into(),
            report: serde_json::json!({}),
        })
    }

    fn template(&self, _: TemplateForm) -> String {
        String::new()
    }
}

/// Eight uploads at once: two run, the others wait their turn (without the permits all
/// eight ran together; checked by hand).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_most_two_uploads_are_taken_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
    let (_, token) = ledger
        .add_principal_for("ngo", Role::Ngo, Some("ngo-1"), &["KGZ".into()])
        .unwrap();
    let uploader = Arc::new(SlowUploader {
        active: 0.into(),
        most: 0.into(),
    });
    let state = AppState::new(
        ServiceConfig {
            data: dir.path().join("ds"),
            dataset: "ds".into(),
            missions: vec!["KGZ".into()],
            max_upload_bytes: 1 << 20,
            max_concurrent_queries: 1,
            memory_budget: ctstats_query::service::DEFAULT_MEMORY_BUDGET,
        },
        ledger,
        Some(uploader.clone()),
    );
    let router = app(state);
    let uploads = (0..8).map(|_| {
        let request = axum::http::Request::post("/v1/batches?mission=KGZ&format=csv")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from("a,b\n1,2\n"))
            .unwrap();
        tokio::spawn(router.clone().oneshot(request))
    });
    for upload in uploads.collect::<Vec<_>>() {
        let response = upload.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let most = uploader.most.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(most, UPLOADS_AT_ONCE, "{most} uploads ran at once");
}

/// The test sources of the workspace: files under `tests/`, `tests.rs` files, and what follows
/// `#[cfg(test)]` in any other source file.
fn test_sources(dir: &Path, out: &mut String) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                test_sources(&path, out);
            }
            continue;
        }
        if !name.ends_with(".rs") && !name.ends_with(".py") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let in_tests = path.components().any(|c| c.as_os_str() == "tests")
            || name == "tests.rs"
            || name == "test.rs";
        if in_tests {
            out.push_str(&text);
        } else if let Some(at) = text.find("#[cfg(test)]") {
            out.push_str(&text[at..]);
        }
    }
}

/// Every code the API can answer is asserted by at least one test somewhere in the workspace
/// (its quoted name appears in a test source). A new code without a test fails here.
#[test]
fn every_code_is_asserted_by_a_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut sources = String::new();
    test_sources(&root, &mut sources);
    // This test names every code through `Code::ALL`, never by a quoted name.
    let missing: Vec<&str> = Code::ALL
        .iter()
        .map(|c| c.name())
        .filter(|name| !sources.contains(&format!("\"{name}\"")))
        .collect();
    assert!(missing.is_empty(), "codes no test asserts: {missing:?}");
}
