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
//!
//! One kind of write does not wait: the audit entry of a re-served answer (nothing is charged
//! or released by it) is queued for the next group commit ([`Ledger::write_later`]), so a
//! re-served answer costs no fsync of its own. The queue is first in, first out: any later write
//! that waits (a charge, a barrier before reading the audit log) commits it first, and dropping
//! the ledger commits what is queued. Only a crash can lose such entries: at most those of the
//! group in flight.

use std::sync::mpsc;

use rusqlite::Connection;

use super::audit::{self, Entry};
use super::budgets::{self, ChargeJob, Decision};
use super::*;

/// One write.
pub(super) enum Job {
    Audit(Entry),
    /// Nothing: waiting for it waits for every write queued before it.
    Barrier,
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
    /// Whom to answer once committed; none for a write nobody waits for.
    done: Option<mpsc::SyncSender<Result<Done, String>>>,
}

/// The writer thread's queue.
#[derive(Debug)]
pub(super) struct Writer {
    /// `None` once the ledger is being dropped.
    queue: Mutex<Option<mpsc::Sender<Pending>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// A writer over its own connection to the ledger file.
    pub(super) fn start(conn: Connection) -> Writer {
        let (queue, jobs) = mpsc::channel::<Pending>();
        let thread = std::thread::Builder::new()
            .name("ctstats-ledger-writer".into())
            .spawn(move || write_loop(conn, jobs))
            .expect("starting the ledger writer thread");
        Writer {
            queue: Mutex::new(Some(queue)),
            thread: Some(thread),
        }
    }

    fn send(&self, pending: Pending) -> Result<()> {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .ok_or_else(stopped)?
            .send(pending)
            .map_err(|_| stopped())
    }

    /// Run `job` in the next group commit; returns once it is committed.
    fn run(&self, job: Job) -> Result<Done> {
        let (done, committed) = mpsc::sync_channel(1);
        self.send(Pending {
            job,
            done: Some(done),
        })?;
        committed
            .recv()
            .map_err(|_| stopped())?
            .map_err(LedgerError::Write)
    }

    /// Queue `job` for the next group commit without waiting for it.
    fn submit(&self, job: Job) -> Result<()> {
        self.send(Pending { job, done: None })
    }
}

fn stopped() -> LedgerError {
    LedgerError::Write("the ledger writer stopped".into())
}

impl Drop for Writer {
    /// Close the queue and wait for the thread to commit what is in it.
    fn drop(&mut self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answer a job's caller, or log the failure of a job nobody waits for.
fn answer(pending: Pending, result: Result<Done, String>) {
    match pending.done {
        Some(done) => {
            let _ = done.send(result);
        }
        None => {
            if let Err(e) = result {
                tracing::error!(error = %e, "a queued ledger write failed");
            }
        }
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
                    answer(pending, done.map_err(|e| e.to_string()));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for pending in group {
                    answer(pending, Err(message.clone()));
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
        Job::Barrier => Done::Audit,
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

    /// Queue `job` for the writer's next group commit and return at once; for an in-memory
    /// ledger, run it now. A failure of the write itself is logged, not returned.
    pub(super) fn write_later(&self, job: Job) -> Result<()> {
        match &self.writer {
            Some(writer) => writer.submit(job),
            None => self.write(job).map(drop),
        }
    }

    /// Wait until every write queued before this call is committed.
    pub(super) fn sync(&self) -> Result<()> {
        self.write(Job::Barrier).map(drop)
    }
}
