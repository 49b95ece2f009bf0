//! The ingest pipeline: file -> rows -> canonical rows -> pseudonymised rows -> staged Parquet ->
//! atomic commit; and consent withdrawal.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use ctstats_schemas::SCHEMA_VERSION;
use ctstats_schemas::codes::PersonLinkQuality;
use ctstats_schemas::countries;
use ctstats_schemas::manifest::{BatchEntry, WithdrawalEntry};
use serde::Serialize;

use crate::dataset::{Commit, Dataset, filter_file, record_keys_at};
use crate::error::{Error, Result};
use crate::keys::{PurposeKeys, Secret};
use crate::map::Mapper;
use crate::problem::{FileProblem, RowIssue, Rule};
use crate::profile::Profile;
use crate::pseudonymise::{Pseudonymised, Pseudonymiser};
use crate::read::{self, Format, Progress, ReadOptions};
use crate::report::{IngestReport, Status};
use crate::writer::{BatchConstants, BatchWriter, WrittenFile};

/// What to ingest, for whom, and how.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    pub path: PathBuf,
    pub organisation: String,
    /// Reporting mission as ISO alpha-2 or alpha-3.
    pub mission: String,
    pub profile: Profile,
    pub read: ReadOptions,
    /// Commit the valid rows even when some are invalid.
    pub accept_valid: bool,
    /// The ingest clock: stamps the batch and bounds dates from above.
    pub now: DateTime<Utc>,
}

/// Check an organisation id: it is stored with every record and shown in reports.
pub fn check_organisation(org: &str) -> Result<()> {
    let ok = !org.trim().is_empty()
        && org.chars().count() <= 100
        && !org.chars().any(|c| c.is_control() || c == '/' || c == '\\');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "organisation",
            message:
                "an organisation id is 1 to 100 characters, without control characters or slashes"
                    .into(),
        })
    }
}

/// The mission as an alpha-3 code.
pub fn check_mission(mission: &str) -> Result<&'static str> {
    countries::lookup(mission)
        .map(|c| c.alpha3)
        .ok_or_else(|| Error::InvalidArgument {
            what: "mission",
            message: "the reporting mission is an ISO 3166-1 country code, such as KGZ or KG"
                .into(),
        })
}

/// The first 64 bits of a pseudonym, for compact duplicate detection.
fn fingerprint(pseudonym: &str) -> u64 {
    u64::from_str_radix(&pseudonym[..16], 16).expect("pseudonyms are hex")
}

fn content_hash(keys: &PurposeKeys, req: &IngestRequest) -> Result<String> {
    let mut hasher = keys.content_hasher();
    let mut file = File::open(&req.path).map_err(Error::io(&req.path))?;
    std::io::copy(&mut file, &mut hasher).map_err(Error::io(&req.path))?;
    Ok(hasher.finalize().to_hex()[..32].to_string())
}

/// Ingest one file into the dataset. Row problems go in the report; an `Err` means the dataset
/// could not be changed (I/O, a wrong key) and nothing was committed.
pub fn ingest(
    dataset: &Dataset,
    secret: &Secret,
    req: &IngestRequest,
    progress: &Progress,
) -> Result<IngestReport> {
    check_organisation(&req.organisation)?;
    let mission = check_mission(&req.mission)?;
    let keys = secret.purpose_keys();
    let session = dataset.begin(&keys)?;
    let manifest = session.manifest();

    let hash = content_hash(&keys, req)?;
    let mut report = IngestReport {
        status: Status::Rejected,
        batch_id: None,
        duplicate_of: None,
        organisation: req.organisation.clone(),
        reporting_mission: mission.to_string(),
        format: req.read.format.name().to_string(),
        encoding: None,
        profile: req.profile.name.clone(),
        policy: if req.accept_valid {
            "accept_valid"
        } else {
            "reject_batch_on_any_invalid_row"
        },
        rows_read: 0,
        rows_valid: 0,
        rows_invalid: 0,
        rows_committed: 0,
        rows_superseding: 0,
        person_link_quality: Default::default(),
        file_problem: None,
        issues_by_rule: Default::default(),
        issues_total: 0,
        issues: Vec::new(),
        columns: Default::default(),
        key_id: keys.key_id().to_string(),
    };
    if let Some(dup) = manifest
        .batches
        .iter()
        .find(|b| b.organisation == req.organisation && b.content_hash == hash)
    {
        report.status = Status::Duplicate;
        report.duplicate_of = Some(dup.batch_id.clone());
        return Ok(report);
    }

    let seq = manifest.batches.last().map_or(1, |b| b.seq + 1);
    let batch_id = format!("{seq:06}-{}", &hash[..8]);
    let staging = session.staging(&batch_id)?;
    let constants = BatchConstants {
        batch_id: batch_id.clone(),
        organisation: req.organisation.clone(),
        reporting_mission: mission.to_string(),
        key_id: keys.key_id().to_string(),
        keys: manifest.key_encoding(),
        ingested_at: req.now,
    };
    let mut writer = BatchWriter::new(&staging, constants);
    let pseudonymiser = Pseudonymiser::new(&keys, &req.organisation);
    let readable = stream_rows(
        req,
        &pseudonymiser,
        &hash,
        progress,
        Some(&mut report),
        |row| {
            writer.push(row.row, row.registration)?;
            Ok(row.quality)
        },
    )?;
    let mut files = if readable {
        writer.finish()?
    } else {
        Vec::new()
    };
    let mut fingerprints = staged_fingerprints(&staging, &files, report.rows_valid)?;
    let repeats = Repeats {
        req,
        pseudonymiser: &pseudonymiser,
        hash: &hash,
        staging: &staging,
        batch_id: &batch_id,
    };
    repeats.remove(&mut files, &mut fingerprints, &mut report)?;

    let reject = report.file_problem.is_some()
        || report.rows_valid == 0
        || (report.rows_invalid > 0 && !req.accept_valid);
    if reject {
        if report.rows_read == 0 && report.file_problem.is_none() {
            report.file_problem = Some(FileProblem::file(
                Rule::NoRows,
                "the file has a header but no rows",
            ));
        }
        std::fs::remove_dir_all(&staging).map_err(Error::io(&staging))?;
        return Ok(report);
    }

    // Corrections: records of earlier batches with a record key this batch also has. The
    // fingerprints find candidates; the full keys of the staged files confirm them.
    let mut candidates = HashSet::new();
    for batch in manifest
        .batches
        .iter()
        .filter(|b| b.organisation == req.organisation)
    {
        for file in &batch.files {
            let keys = dataset.record_keys(file)?;
            candidates.extend(
                keys.into_iter()
                    .filter(|k| fingerprints.binary_search(&fingerprint(k)).is_ok()),
            );
        }
    }
    drop(fingerprints);
    let mut superseded = HashSet::new();
    if !candidates.is_empty() {
        for f in &files {
            let keys = record_keys_at(&staging.join(&f.relative))?;
            superseded.extend(keys.into_iter().filter(|k| candidates.contains(k)));
        }
    }
    let replacements = if superseded.is_empty() {
        Vec::new()
    } else {
        session.rewrites_for(&staging, &req.organisation, &superseded)?
    };
    report.rows_superseding = replacements.iter().map(|r| r.rows_removed).sum();

    let entry = BatchEntry {
        batch_id: batch_id.clone(),
        seq,
        organisation: req.organisation.clone(),
        reporting_mission: mission.to_string(),
        format: req.read.format.name().to_string(),
        profile: req.profile.name.clone(),
        content_hash: hash,
        rows_read: report.rows_read,
        rows_accepted: report.rows_valid,
        rows_rejected: report.rows_invalid,
        rows_superseding: report.rows_superseding,
        schema_version: SCHEMA_VERSION.to_string(),
        key_id: keys.key_id().to_string(),
        committed_at: req.now.to_rfc3339_opts(SecondsFormat::Millis, true),
        files: Vec::new(),
    };
    let commit = Commit {
        batch: Some((entry, files)),
        replacements,
        withdrawal: None,
        key_id: Some(keys.key_id().to_string()),
    };
    session.commit(&staging, commit)?;
    report.status = Status::Committed;
    report.batch_id = Some(batch_id);
    report.rows_committed = report.rows_valid;
    tracing::info!(
        batch = report.batch_id.as_deref().unwrap_or_default(),
        rows = report.rows_committed,
        "batch committed"
    );
    Ok(report)
}

/// Read, map and validate every row, calling `on_valid` with each valid row, pseudonymised.
/// With a report, row problems are recorded in it (the first pass); without, they are skipped
/// (a second pass over a file already validated). Returns false when the file cannot be read.
fn stream_rows(
    req: &IngestRequest,
    pseudonymiser: &Pseudonymiser,
    hash: &str,
    progress: &Progress,
    mut report: Option<&mut IngestReport>,
    mut on_valid: impl FnMut(Pseudonymised) -> Result<PersonLinkQuality>,
) -> Result<bool> {
    let mut source = match read::open(&req.path, &req.read, progress.clone()) {
        Ok(s) => s,
        Err(e) => {
            if let Some(report) = report {
                report.file_problem = Some(e.problem);
            }
            return Ok(false);
        }
    };
    let mut mapper = Mapper::new(
        &req.profile,
        req.now.date_naive(),
        format!("row:{}", &hash[..16]),
    );
    // JSON Lines files have no header: a key may first appear in a later line, so a missing
    // column is checked row by row there ("required") rather than refused up front.
    let lenient_header = req.read.format == Format::Jsonl;
    let header = mapper.set_header(source.header());
    if let Some(report) = report.as_deref_mut() {
        report.encoding = source.encoding().map(str::to_string);
        if let Err(e) = &header
            && !lenient_header
        {
            report.file_problem = Some(e.problem.clone());
            report.columns = mapper.column_use().clone();
        }
    }
    if header.is_err() && !lenient_header {
        return Ok(false);
    }
    let mut consume = |item: Item| -> Result<()> {
        match item {
            Item::Unreadable(problem) => {
                if let Some(report) = report.as_deref_mut() {
                    report.rows_read += 1;
                    report.rows_invalid += 1;
                    report.add_issues(vec![problem.into_row_issue()]);
                }
            }
            Item::Valid(row) => {
                let quality = on_valid(row)?;
                if let Some(report) = report.as_deref_mut() {
                    report.rows_read += 1;
                    report.rows_valid += 1;
                    *report
                        .person_link_quality
                        .entry(quality_name(quality))
                        .or_default() += 1;
                }
            }
            Item::Invalid(issues) => {
                if let Some(report) = report.as_deref_mut() {
                    report.rows_read += 1;
                    report.rows_invalid += 1;
                    report.add_issues(issues);
                }
            }
        }
        Ok(())
    };
    let fatal = if lenient_header {
        // The header may grow with any line, so the mapper changes between rows: one thread.
        let mut fatal = None;
        while let Some(next) = source.next_row() {
            let item = match next {
                Ok(row) => {
                    let _ = mapper.set_header(source.header());
                    Item::of(&mapper, pseudonymiser, row)
                }
                Err(e) if e.fatal => {
                    fatal = Some(e.problem);
                    break;
                }
                Err(e) => Item::Unreadable(e.problem),
            };
            consume(item)?;
        }
        fatal
    } else {
        parallel_rows(source, &mapper, pseudonymiser, consume)?
    };
    if let (Some(problem), Some(report)) = (fatal, report.as_deref_mut()) {
        report.file_problem = Some(problem);
    }
    if let Some(report) = report {
        report.columns = mapper.column_use().clone();
    }
    Ok(true)
}

/// One row of the file after mapping: what the report and the writer need of it.
enum Item {
    /// The reader could not read the row (a row-level problem).
    Unreadable(FileProblem),
    Valid(Pseudonymised),
    Invalid(Vec<RowIssue>),
}

impl Item {
    fn of(mapper: &Mapper, pseudonymiser: &Pseudonymiser, row: read::SourceRow) -> Item {
        Item::from_mapped(pseudonymiser, mapper.map(row.number, &row.values))
    }

    fn from_mapped(
        pseudonymiser: &Pseudonymiser,
        mapped: std::result::Result<crate::map::MappedRow, Vec<RowIssue>>,
    ) -> Item {
        match mapped {
            Ok(mapped) => Item::Valid(pseudonymiser.pseudonymise(mapped)),
            Err(issues) => Item::Invalid(issues),
        }
    }
}

/// Rows read per chunk handed to a mapping thread.
const CHUNK_ROWS: usize = 1024;

/// Read, map and pseudonymise on every core, and `consume` the rows in file order on this
/// thread: one thread parses chunks of rows, mapping threads make their cells (text, checks),
/// map and pseudonymise whole chunks, and this thread puts the chunks back in order. At most
/// `2 × threads + 2` chunks exist at once (each takes a token that `consume` gives back), so
/// memory stays bounded whatever the file size. Returns the fatal read problem that ended the
/// file early, if any.
fn parallel_rows(
    mut source: Box<dyn read::RowSource>,
    mapper: &Mapper,
    pseudonymiser: &Pseudonymiser,
    mut consume: impl FnMut(Item) -> Result<()>,
) -> Result<Option<FileProblem>> {
    use std::sync::mpsc::{Receiver, sync_channel};
    use std::sync::{Arc, Mutex};

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let in_flight = 2 * threads + 2;
    type Chunk = (u64, Vec<Result<read::PendingRow, FileProblem>>);
    let (tokens_in, tokens) = sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        tokens_in.send(()).expect("the receiver is alive");
    }
    let (chunks_in, chunks) = sync_channel::<Chunk>(in_flight);
    let chunks: Arc<Mutex<Receiver<Chunk>>> = Arc::new(Mutex::new(chunks));
    // A mapping thread that panics hands its panic over, so that it is raised here rather
    // than leaving this thread waiting for the chunk.
    let (mapped_in, mapped) = sync_channel::<(u64, std::thread::Result<Vec<Item>>)>(in_flight);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut fatal = None;
            let mut seq = 0;
            loop {
                if tokens.recv().is_err() {
                    break; // the consumer stopped
                }
                let mut chunk = Vec::with_capacity(CHUNK_ROWS);
                while chunk.len() < CHUNK_ROWS {
                    match source.next_pending() {
                        Some(Ok(row)) => chunk.push(Ok(row)),
                        Some(Err(e)) if e.fatal => {
                            fatal = Some(e.problem);
                            break;
                        }
                        Some(Err(e)) => chunk.push(Err(e.problem)),
                        None => break,
                    }
                }
                let last = chunk.len() < CHUNK_ROWS;
                if chunk.is_empty() || chunks_in.send((seq, chunk)).is_err() {
                    break;
                }
                seq += 1;
                if last {
                    break;
                }
            }
            fatal
        });
        for _ in 0..threads {
            let (chunks, mapped_in) = (chunks.clone(), mapped_in.clone());
            scope.spawn(move || {
                // The mapper does not change here: one memo serves all of this thread's rows.
                let mut memo = crate::map::MapMemo::default();
                loop {
                    let next = chunks
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .recv();
                    let Ok((seq, rows)) = next else { break };
                    let items = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        // The cells are made here, not on the reading thread.
                        rows.into_iter()
                            .filter_map(|row| match row.map(read::PendingRow::finish) {
                                Ok(Ok(Some(row))) => Some(Item::from_mapped(
                                    pseudonymiser,
                                    mapper.map_with(&mut memo, row.number, &row.values),
                                )),
                                Ok(Ok(None)) => None,
                                Ok(Err(e)) => Some(Item::Unreadable(e.problem)),
                                Err(problem) => Some(Item::Unreadable(problem)),
                            })
                            .collect()
                    }));
                    let failed = items.is_err();
                    if mapped_in.send((seq, items)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(mapped_in);
        drop(chunks);
        // In file order; a chunk that arrives early waits here (bounded by the tokens).
        let mut early = std::collections::BTreeMap::new();
        let mut next = 0u64;
        let mut panicked = None;
        let consumed = (|| {
            for (seq, items) in mapped.iter() {
                match items {
                    Ok(items) => early.insert(seq, items),
                    Err(panic) => {
                        panicked = Some(panic);
                        return Ok(());
                    }
                };
                while let Some(items) = early.remove(&next) {
                    for item in items {
                        consume(item)?;
                    }
                    next += 1;
                    // The reader may have stopped already.
                    let _ = tokens_in.send(());
                }
            }
            Ok(())
        })();
        // Stop the reader and the mapping threads if `consume` failed.
        drop(tokens_in);
        drop(mapped);
        let fatal = reader
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        if let Some(panic) = panicked {
            std::panic::resume_unwind(panic);
        }
        consumed.map(|()| fatal)
    })
}

/// The fingerprints of the record keys of the staged files, sorted.
fn staged_fingerprints(staging: &Path, files: &[WrittenFile], rows: u64) -> Result<Vec<u64>> {
    let mut fingerprints = Vec::with_capacity(rows as usize);
    for f in files {
        fingerprints.extend(
            record_keys_at(&staging.join(&f.relative))?
                .iter()
                .map(|k| fingerprint(k)),
        );
    }
    fingerprints.sort_unstable();
    Ok(fingerprints)
}

/// A case id used in more than one row of the same file is ambiguous: every such row is
/// invalid. Memory stays at 8 bytes a row (the sorted fingerprints); the rows are named by a
/// second pass over the file, which happens only when there are repeats.
struct Repeats<'a> {
    req: &'a IngestRequest,
    pseudonymiser: &'a Pseudonymiser<'a>,
    hash: &'a str,
    staging: &'a Path,
    batch_id: &'a str,
}

impl Repeats<'_> {
    fn remove(
        &self,
        files: &mut Vec<WrittenFile>,
        fingerprints: &mut Vec<u64>,
        report: &mut IngestReport,
    ) -> Result<()> {
        let repeated: HashSet<u64> = fingerprints
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        if repeated.is_empty() {
            return Ok(());
        }
        let mut rows: HashMap<u64, Vec<(u64, PersonLinkQuality)>> = HashMap::new();
        stream_rows(
            self.req,
            self.pseudonymiser,
            self.hash,
            &Progress::default(),
            None,
            |row| {
                let print = fingerprint(&row.row.record_key);
                if repeated.contains(&print) {
                    rows.entry(print)
                        .or_default()
                        .push((row.number, row.quality));
                }
                Ok(row.quality)
            },
        )?;
        let column = report
            .columns
            .mapped
            .iter()
            .find(|(_, target)| target == "local_case_id")
            .map_or_else(|| "local_case_id".to_string(), |(c, _)| c.clone());
        let mut issues = Vec::new();
        for occurrences in rows.values() {
            let listed: Vec<String> = occurrences.iter().map(|(r, _)| r.to_string()).collect();
            for (row, quality) in occurrences {
                issues.push(RowIssue {
                    row: *row,
                    column: column.clone(),
                    rule: Rule::DuplicateCaseId,
                    message: format!(
                        "the case id is used in rows {} of this file; give each case one row",
                        listed.join(", ")
                    ),
                });
                report.rows_valid -= 1;
                report.rows_invalid += 1;
                if let Some(n) = report.person_link_quality.get_mut(&quality_name(*quality)) {
                    *n -= 1;
                }
            }
        }
        report.add_issues(issues);
        report.issues.sort_by_key(|i| i.row);
        report.person_link_quality.retain(|_, n| *n > 0);

        // Take the repeated records out of the staged files.
        let mut remove = HashSet::new();
        for f in files.iter() {
            let keys = record_keys_at(&self.staging.join(&f.relative))?;
            remove.extend(
                keys.into_iter()
                    .filter(|k| repeated.contains(&fingerprint(k))),
            );
        }
        let mut kept_files = Vec::new();
        for f in files.drain(..) {
            let src = self.staging.join(&f.relative);
            let filtered = self.staging.join(format!(
                "{}-dedup.parquet",
                f.relative.trim_end_matches(".parquet")
            ));
            let (kept, _) = filter_file(&src, &filtered, self.batch_id, &remove)?;
            if kept > 0 {
                std::fs::rename(&filtered, &src).map_err(Error::io(&src))?;
                kept_files.push(WrittenFile {
                    relative: f.relative,
                    rows: kept,
                });
            } else {
                std::fs::remove_file(&src).map_err(Error::io(&src))?;
            }
        }
        *files = kept_files;
        fingerprints.retain(|f| !repeated.contains(f));
        Ok(())
    }
}

fn quality_name(q: PersonLinkQuality) -> String {
    ctstats_schemas::codes::CodeList::name(q).to_string()
}

/// What a withdrawal removed.
#[derive(Debug, Clone, Serialize)]
pub struct WithdrawReport {
    pub organisation: String,
    pub rows_removed: u64,
    pub files_rewritten: usize,
}

/// Remove every record of `organisation`'s case `case_id` from the dataset (consent withdrawal).
pub fn withdraw(
    dataset: &Dataset,
    secret: &Secret,
    organisation: &str,
    case_id: &str,
    now: DateTime<Utc>,
) -> Result<WithdrawReport> {
    check_organisation(organisation)?;
    let keys = secret.purpose_keys();
    let session = dataset.begin(&keys)?;
    let record_key = Pseudonymiser::new(&keys, organisation).record_key(case_id);
    let generation = session.manifest().generation;
    let staging = session.staging(&format!("withdraw-{}", generation + 1))?;
    let remove: HashSet<String> = [record_key.clone()].into();
    let replacements = session.rewrites_for(&staging, organisation, &remove)?;
    let rows_removed: u64 = replacements.iter().map(|r| r.rows_removed).sum();
    if rows_removed == 0 {
        std::fs::remove_dir_all(&staging).map_err(Error::io(&staging))?;
        return Err(Error::NoSuchRecord {
            organisation: organisation.into(),
        });
    }
    let files_rewritten = replacements.len();
    let withdrawal = WithdrawalEntry {
        organisation: organisation.into(),
        record_key,
        rows_removed,
        at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
    };
    let commit = Commit {
        batch: None,
        replacements,
        withdrawal: Some(withdrawal),
        key_id: None,
    };
    session.commit(&staging, commit)?;
    Ok(WithdrawReport {
        organisation: organisation.into(),
        rows_removed,
        files_rewritten,
    })
}
