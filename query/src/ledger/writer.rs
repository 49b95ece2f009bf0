//! Group commits: one writer thread, with its own connection, makes the ledger's frequent writes
//! (charges, stored answers, audit entries) for every caller.
//!
//! Each write is durable before the call that asked for it returns, as when each was its own
//! transaction; but the writes of concurrent callers share one `BEGIN IMMEDIATE` transaction and
//! one fsync (synchronous `FULL`). The writer takes every job waiting, runs them in arrival order
//! in one transaction, commits, and only then answers each caller. A charge is decided inside
//! that transaction against every charge committed before it and every charge of the same group
//! ahead of it, so the write-ahead guarantee holds as before: a charge is committed before its
//! answer is computed, and no group can overspend a budget that one-at-a-time charges could
//! not. Other processes on the same ledger file still serialise with the writer through SQLite's
//! write lock. Each job runs in its own savepoint: one that fails is rolled back alone and only
//! its caller gets the error; when the transaction itself cannot commit, every caller of the
//! group gets the error and nothing of it was committed.

use std::sync::mpsc;

use rusqlite::Connection;

use super::audit::{self, Entry};
use super::budgets::{self, ChargeJob, Decision};
use super::*;

/// One write.
pub(super) enum Job {
    Audit(Entry),
    Charge(ChargeJob),
    /// Store the answer `charge_id` paid for, unless the charge was refunded.
    Store {
        charge_id: i64,
        answer: String,
    },
}

/// What a job came to once committed.
pub(super) enum Done {
    Audit,
    Charge(Decision),
    /// Whether the answer was stored (false: the charge was refunded).
    Store(bool),
}

struct Pending {
    job: Job,
    done: mpsc::SyncSender<Result<Done, String>>,
}

/// The writer thread's queue.
#[derive(Debug)]
pub(super) struct Writer {
    queue: Mutex<mpsc::Sender<Pending>>,
}

impl Writer {
    /// A writer over its own connection to the ledger file.
    pub(super) fn start(conn: Connection) -> Writer {
        let (queue, jobs) = mpsc::channel::<Pending>();
        std::thread::Builder::new()
            .name("ctstats-ledger-writer".into())
            .spawn(move || write_loop(conn, jobs))
            .expect("starting the ledger writer thread");
        Writer {
            queue: Mutex::new(queue),
        }
    }

    /// Run `job` in the next group commit; returns once it is committed.
    fn run(&self, job: Job) -> Result<Done> {
        let (done, committed) = mpsc::sync_channel(1);
        let stopped = || LedgerError::Write("the ledger writer stopped".into());
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Pending { job, done })
            .map_err(|_| stopped())?;
        committed
            .recv()
            .map_err(|_| stopped())?
            .map_err(LedgerError::Write)
    }
}

/// Most jobs in one transaction.
const GROUP: usize = 512;

fn write_loop(mut conn: Connection, jobs: mpsc::Receiver<Pending>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match jobs.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        match run_group(&mut conn, group.iter().map(|p| &p.job)) {
            Ok(done) => {
                for (pending, done) in group.into_iter().zip(done) {
                    let _ = pending.done.send(done.map_err(|e| e.to_string()));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for pending in group {
                    let _ = pending.done.send(Err(message.clone()));
                }
            }
        }
    }
}

/// Run `jobs` in order in one immediate transaction, each in its own savepoint: a job that
/// fails is rolled back alone and its caller gets the error; the others commit together. The
/// outer error (the transaction could not begin or commit) means none of them was committed.
fn run_group<'a>(
    conn: &mut Connection,
    jobs: impl Iterator<Item = &'a Job>,
) -> Result<Vec<Result<Done>>> {
    let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut done = Vec::new();
    for job in jobs {
        let savepoint = tx.savepoint()?;
        let result = run_one(&savepoint, job);
        if result.is_ok() {
            savepoint.commit()?;
        } // else dropped: rolled back to before the job
        done.push(result);
    }
    tx.commit()?;
    Ok(done)
}

fn run_one(conn: &Connection, job: &Job) -> Result<Done> {
    Ok(match job {
        Job::Audit(entry) => {
            audit::insert(conn, entry)?;
            Done::Audit
        }
        Job::Charge(charge) => Done::Charge(budgets::decide(conn, charge)?),
        Job::Store { charge_id, answer } => Done::Store(budgets::store(conn, *charge_id, answer)?),
    })
}

impl Ledger {
    /// Run `job`: in the writer's next group commit, or, for an in-memory ledger (no file for a
    /// second connection), in its own transaction on the ledger's connection.
    pub(super) fn write(&self, job: Job) -> Result<Done> {
        match &self.writer {
            Some(writer) => writer.run(job),
            None => {
                let mut conn = self.conn();
                let mut done = run_group(&mut conn, std::iter::once(&job))?;
                done.pop().expect("one job, one result")
            }
        }
    }
}
