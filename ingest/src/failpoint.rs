//! Crash injection for the atomic-commit test.
//!
//! Every step of a commit that changes the disk calls [`step`]. When the environment variable
//! `CTSTATS_CRASH_AT_STEP=N` is set, the process aborts (no unwinding, no destructors, like a
//! power cut for everything not yet fsynced) at the N-th step. The end-to-end test runs an ingest
//! with N = 1, 2, ... until one finishes, and checks the dataset after each crash.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn crash_at() -> Option<u64> {
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    *AT.get_or_init(|| {
        std::env::var("CTSTATS_CRASH_AT_STEP")
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

/// Count one durable step; abort here if this is the step to crash at.
pub fn step(what: &str) {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
    if crash_at() == Some(n) {
        eprintln!("ctstats: crash injected at step {n} ({what})");
        std::process::abort();
    }
}
