//! The dataset as queries read it: a prepared in-memory snapshot of the live records, one per
//! manifest generation, or the manifest's Parquet files when the snapshot would not fit in the
//! memory budget.
//!
//! # The snapshot
//!
//! Loaded once per generation (at start-up with [`Data::prepare`], and again by the first query
//! that finds the manifest at a newer generation), from exactly the files that manifest lists:
//!
//! - the rows sorted by (`person_key`, `record_key`), so the per-person bounding is one pass
//!   over the rows with no sort per query (the kernel of [`crate::plan`] counts each person's
//!   records as it goes; the order is also declared to DataFusion, so its statements over the
//!   snapshot do not sort either);
//! - `person_key` and `record_key` replaced by their ranks in that order (`Int64`): the dense
//!   rank of the person's key, and the row's position. Ranks compare as the keys do, so every
//!   statement keeps its meaning, and grouping or counting distinct persons hashes 8 bytes, not
//!   32 hex characters. Ranks are positions inside one snapshot: they never leave the engine
//!   and mean nothing across generations;
//! - the coded text columns dictionary-encoded (`Int16` keys into the few values each holds);
//! - the columns no statement reads (batch ids, ingest times, schema version, organisation)
//!   left out.
//!
//! A query takes the snapshot (an `Arc`) once and runs everything against it, so it sees
//! one generation from start to end; swapping in a new generation replaces the `Arc` and the old
//! one is freed when its last query ends. Loads are one at a time; queries arriving during a
//! load wait for it rather than load the same files twice.
//!
//! When the manifest's rows times [`ESTIMATED_BYTES_PER_ROW`] exceed the budget (or the loaded
//! snapshot turns out larger), queries read the Parquet files as before, each query pruning the
//! files by their partition directories and sorting the rows of its period.

use std::path::{Component as PathComponent, Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use ctstats_schemas::manifest::Manifest;
use ctstats_schemas::pseudonyms::KeyColumn;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{SortExpr, col};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

use crate::plan::{PlanError, Result};

/// The name the live records are registered under in every session.
pub(crate) const TABLE: &str = "records";
/// Attempts when a concurrent commit replaces a file between reading the manifest and the file.
pub(crate) const ATTEMPTS: usize = 3;
/// What one row of the snapshot is assumed to take before it is loaded, to decide whether to
/// load it at all (measured: 1M generated rows took 189 bytes each; the rest is margin for
/// longer lists and more distinct values).
pub const ESTIMATED_BYTES_PER_ROW: u64 = 240;
/// Columns no statement reads: left out of the snapshot.
const UNREAD: &[&str] = &[
    "schema_version",
    "batch_id",
    "submitting_org",
    "ingested_at",
];

/// The records of one manifest generation, in memory, sorted by person and record key.
#[derive(Debug)]
pub struct Snapshot {
    table: Arc<MemTable>,
    /// The same batches as `table`, for the aggregation kernel of [`crate::plan`].
    batches: Vec<RecordBatch>,
    info: SnapshotInfo,
}

impl Snapshot {
    pub(crate) fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    pub(crate) fn info(&self) -> SnapshotInfo {
        self.info
    }
}

/// What a loaded snapshot holds, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub generation: u64,
    pub rows: usize,
    pub persons: usize,
    /// Memory held by the snapshot's arrays.
    pub bytes: usize,
}

/// The records of one generation: the snapshot, or (when it does not fit) a session over the
/// Parquet files.
pub(crate) enum Source {
    Snapshot(Arc<Snapshot>),
    Files(Session),
}

/// A session with the records of one generation registered as `records`.
pub(crate) struct Session {
    pub generation: u64,
    pub ctx: SessionContext,
}

/// The dataset at a root, with its snapshot. Cheap to clone: clones share the snapshot.
#[derive(Debug, Clone)]
pub struct Data {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    memory_budget: u64,
    current: Mutex<Option<Arc<Snapshot>>>,
    /// The generation found too large for the budget, so that it is not loaded again.
    too_large: Mutex<Option<u64>>,
    /// One load at a time.
    loading: tokio::sync::Mutex<()>,
}

impl Data {
    /// The dataset at `root`, kept in memory while it fits in `memory_budget` bytes.
    pub fn new(root: impl Into<PathBuf>, memory_budget: u64) -> Data {
        Data {
            inner: Arc::new(Inner {
                root: root.into(),
                memory_budget,
                current: Mutex::new(None),
                too_large: Mutex::new(None),
                loading: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The dataset at `root`, always read from its Parquet files (no snapshot).
    pub fn files(root: impl Into<PathBuf>) -> Data {
        Data::new(root, 0)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The snapshot in memory now, if any.
    pub fn snapshot_info(&self) -> Option<SnapshotInfo> {
        lock(&self.inner.current).as_ref().map(|s| s.info)
    }

    /// Load the snapshot of the current generation if it fits the budget and is not loaded yet
    /// (the service calls it at start-up, so the first query does not wait for it).
    pub async fn prepare(&self) -> Result<Option<SnapshotInfo>> {
        Ok(match self.acquire(&|_| true).await? {
            Source::Snapshot(snapshot) => Some(snapshot.info),
            Source::Files(_) => None,
        })
    }

    /// A session over the current generation: over the snapshot (see [`Data::acquire`]), or over
    /// the live files that `prune` keeps.
    pub(crate) async fn session(&self, prune: &(dyn Fn(&str) -> bool + Sync)) -> Result<Session> {
        match self.acquire(prune).await? {
            Source::Snapshot(snapshot) => Ok(snapshot_session(&snapshot)?),
            Source::Files(session) => Ok(session),
        }
    }

    /// The current generation: its snapshot (loading it first if the manifest moved on), or a
    /// session over the live files that `prune` keeps when the snapshot does not fit.
    pub(crate) async fn acquire(&self, prune: &(dyn Fn(&str) -> bool + Sync)) -> Result<Source> {
        let manifest = Manifest::read(self.root())?;
        if let Some(snapshot) = self.loaded(manifest.generation) {
            return Ok(Source::Snapshot(snapshot));
        }
        if !self.may_fit(&manifest) {
            return Ok(Source::Files(self.files_session(&manifest, prune).await?));
        }
        let _turn = self.inner.loading.lock().await;
        // Another query may have loaded it, or a commit moved the manifest on, while we waited.
        let manifest = Manifest::read(self.root())?;
        if let Some(snapshot) = self.loaded(manifest.generation) {
            return Ok(Source::Snapshot(snapshot));
        }
        if !self.may_fit(&manifest) {
            return Ok(Source::Files(self.files_session(&manifest, prune).await?));
        }
        let mut attempt = 0;
        let snapshot = loop {
            attempt += 1;
            let manifest = Manifest::read(self.root())?;
            match load(self.root(), &manifest).await {
                Ok(snapshot) => break snapshot,
                Err(PlanError::Engine(e))
                    if attempt < ATTEMPTS
                        && Manifest::read(self.root())?.generation != manifest.generation =>
                {
                    tracing::debug!(error = %e, "dataset changed during the load; retrying");
                }
                Err(e) => return Err(e),
            }
        };
        let info = snapshot.info;
        if info.bytes as u64 > self.inner.memory_budget {
            tracing::info!(
                generation = info.generation,
                rows = info.rows,
                bytes = info.bytes,
                budget = self.inner.memory_budget,
                "the snapshot is larger than the memory budget; reading the files"
            );
            *lock(&self.inner.too_large) = Some(info.generation);
            let manifest = Manifest::read(self.root())?;
            return Ok(Source::Files(self.files_session(&manifest, prune).await?));
        }
        tracing::info!(
            generation = info.generation,
            rows = info.rows,
            persons = info.persons,
            bytes = info.bytes,
            "snapshot loaded"
        );
        let snapshot = Arc::new(snapshot);
        *lock(&self.inner.current) = Some(snapshot.clone());
        Ok(Source::Snapshot(snapshot))
    }

    fn loaded(&self, generation: u64) -> Option<Arc<Snapshot>> {
        lock(&self.inner.current)
            .as_ref()
            .filter(|s| s.info.generation == generation)
            .cloned()
    }

    /// Whether the generation is worth loading: within the budget by estimate, and not found
    /// too large already.
    fn may_fit(&self, manifest: &Manifest) -> bool {
        let estimate = manifest.live_rows().saturating_mul(ESTIMATED_BYTES_PER_ROW);
        let known_large = *lock(&self.inner.too_large) == Some(manifest.generation);
        self.inner.memory_budget > 0 && estimate <= self.inner.memory_budget && !known_large
    }

    async fn files_session(
        &self,
        manifest: &Manifest,
        prune: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Session> {
        Ok(Session {
            generation: manifest.generation,
            ctx: register(self.root(), manifest, prune).await?,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A session over the snapshot. One partition: the rows stay in their declared order, so the
/// bounding window reads them as they are; concurrent queries use the other cores.
fn snapshot_session(snapshot: &Snapshot) -> Result<Session, DataFusionError> {
    let config = SessionConfig::new().with_target_partitions(1);
    let ctx = SessionContext::new_with_config(config);
    ctx.register_table(TABLE, snapshot.table.clone())?;
    Ok(Session {
        generation: snapshot.info.generation,
        ctx,
    })
}

/// A session with the manifest's live files that `keep` accepts registered as `records`.
pub(crate) async fn register(
    root: &Path,
    manifest: &Manifest,
    keep: &(dyn Fn(&str) -> bool + Sync),
) -> Result<SessionContext> {
    let ctx = SessionContext::new();
    let schema = manifest.schema();
    let mut paths = Vec::new();
    for file in manifest.live_files() {
        let relative = Path::new(&file.path);
        if !relative
            .components()
            .all(|c| matches!(c, PathComponent::Normal(_)))
        {
            return Err(PlanError::UnsafePath {
                path: file.path.clone(),
            });
        }
        if keep(&file.path) {
            paths.push(root.join(relative).to_string_lossy().into_owned());
        }
    }
    if paths.is_empty() {
        let empty = MemTable::try_new(schema, vec![vec![]])?;
        ctx.register_table(TABLE, Arc::new(empty))?;
    } else {
        let options = ParquetReadOptions::default().schema(&schema);
        let table = ctx.read_parquet(paths, options).await?;
        ctx.register_table(TABLE, table.into_view())?;
    }
    Ok(ctx)
}

/// Read every live file of `manifest`, sorted by person and record key, into a snapshot.
async fn load(root: &Path, manifest: &Manifest) -> Result<Snapshot> {
    let ctx = register(root, manifest, &|_| true).await?;
    let source = manifest.schema();
    let kept: Vec<&Field> = source
        .fields()
        .iter()
        .map(|f| f.as_ref())
        .filter(|f| !UNREAD.contains(&f.name().as_str()))
        .collect();
    let columns: Vec<String> = kept.iter().map(|f| format!("\"{}\"", f.name())).collect();
    let sql = format!(
        "SELECT {} FROM {TABLE} ORDER BY person_key, record_key",
        columns.join(", ")
    );
    let sorted = ctx.sql(&sql).await?.collect().await?;

    // Ranks in place of the keys; coded text as dictionaries.
    let mut person_rank: i64 = -1;
    let mut last_person: Option<Vec<u8>> = None;
    let mut row: i64 = 0;
    let mut converted: Vec<Vec<ArrayRef>> = Vec::with_capacity(sorted.len());
    for batch in &sorted {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(kept.len());
        for (i, field) in kept.iter().enumerate() {
            let array = batch.column(i);
            let array: ArrayRef = match field.name().as_str() {
                "person_key" => {
                    // Hex text (format 1) may come back dictionary-encoded; raw bytes as they are.
                    let keys = match KeyColumn::new(array.as_ref()) {
                        Some(_) => array.clone(),
                        None => arrow::compute::cast(array, &DataType::Utf8)
                            .map_err(DataFusionError::from)?,
                    };
                    let keys = KeyColumn::new(keys.as_ref()).ok_or_else(|| {
                        DataFusionError::Plan("person_key is not a key column".into())
                    })?;
                    let ranks: Int64Array = (0..keys.len())
                        .map(|j| {
                            let key = keys.bytes(j);
                            match &mut last_person {
                                Some(last) if last.as_slice() == key => {}
                                Some(last) => {
                                    last.clear();
                                    last.extend_from_slice(key);
                                    person_rank += 1;
                                }
                                None => {
                                    last_person = Some(key.to_vec());
                                    person_rank += 1;
                                }
                            }
                            Some(person_rank)
                        })
                        .collect();
                    Arc::new(ranks)
                }
                "record_key" => {
                    Arc::new(Int64Array::from_iter_values(row..row + array.len() as i64))
                }
                _ if field.data_type() == &DataType::Utf8 => dictionary(array),
                _ => array.clone(),
            };
            arrays.push(array);
        }
        row += batch.num_rows() as i64;
        converted.push(arrays);
    }
    drop(sorted);
    // One type per column: a dictionary only if every batch's values fit one.
    let fields: Vec<Field> = kept
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let data_type = match f.name().as_str() {
                "person_key" | "record_key" => DataType::Int64,
                _ if f.data_type() == &DataType::Utf8 => {
                    if converted
                        .iter()
                        .all(|arrays| matches!(arrays[i].data_type(), DataType::Dictionary(..)))
                    {
                        small_dictionary()
                    } else {
                        DataType::Utf8
                    }
                }
                _ => f.data_type().clone(),
            };
            Field::new(f.name(), data_type, true)
        })
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let batches = converted
        .into_iter()
        .map(|arrays| {
            let arrays = arrays
                .into_iter()
                .zip(schema.fields())
                .map(|(a, f)| {
                    if a.data_type() == f.data_type() {
                        Ok(a)
                    } else {
                        arrow::compute::cast(&a, f.data_type())
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(DataFusionError::from)?;
            Ok(RecordBatch::try_new(schema.clone(), arrays).map_err(DataFusionError::from)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = batches.iter().map(|b| b.get_array_memory_size()).sum();
    let rows = row as usize;
    let order = vec![vec![
        SortExpr::new(col("person_key"), true, false),
        SortExpr::new(col("record_key"), true, false),
    ]];
    let table = MemTable::try_new(schema, vec![batches.clone()])?.with_sort_order(order);
    Ok(Snapshot {
        table: Arc::new(table),
        batches,
        info: SnapshotInfo {
            generation: manifest.generation,
            rows,
            persons: (person_rank + 1) as usize,
            bytes,
        },
    })
}

fn small_dictionary() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int16), Box::new(DataType::Utf8))
}

/// A text column as a dictionary with 16-bit keys; as it is when it has more distinct values.
fn dictionary(array: &ArrayRef) -> ArrayRef {
    arrow::compute::cast(array, &small_dictionary()).unwrap_or_else(|_| array.clone())
}
