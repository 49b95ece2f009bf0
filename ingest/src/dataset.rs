//! The dataset directory: locking, crash recovery, the atomic commit and file rewrites.
//!
//! Layout and the commit invariant are described in `ctstats_schemas::manifest`. One writer at a
//! time holds `.lock`; on taking it, the writer removes whatever an interrupted commit left
//! behind (the staging area, and files under `data/` that the manifest does not list).
//!
//! A commit: (1) new files are written and fsynced under `.staging/`; (2) they are renamed into
//! `data/` and their directories fsynced; (3) the new manifest is written to a temporary file,
//! fsynced and renamed over `manifest.json`, and the root directory fsynced: this rename is the
//! commit point; (4) files the new manifest no longer lists are deleted. A crash before (3)
//! leaves the old manifest, so the batch is absent and its files are orphans; a crash after (3)
//! leaves the new manifest, so the batch is whole and only old files linger as orphans.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use ctstats_schemas::manifest::{
    BatchEntry, DATA_DIR, FileEntry, LOCK_FILE, MANIFEST_FILE, Manifest, STAGING_DIR,
    WithdrawalEntry,
};
use ctstats_schemas::meta;
use ctstats_schemas::pseudonyms::KeyColumn;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::failpoint;
use crate::keys::PurposeKeys;
use crate::writer::{WrittenFile, writer_properties};

/// A dataset directory.
#[derive(Debug, Clone)]
pub struct Dataset {
    root: PathBuf,
}

/// Proof that the caller holds the dataset's write lock. Released on drop.
#[derive(Debug)]
pub struct WriteLock {
    _file: File,
}

/// A writer's hold on the dataset, from [`Dataset::begin`]: the write lock, the manifest as it
/// stood when the lock was taken, and a key known to match it. Every change to the dataset goes
/// through one; the lock is released on drop.
#[derive(Debug)]
pub struct Session<'d> {
    dataset: &'d Dataset,
    lock: WriteLock,
    manifest: Manifest,
}

/// A rewrite of one live file: the new file replaces the old one in the manifest.
#[derive(Debug, Clone)]
pub struct Replacement {
    pub batch_id: String,
    pub old: FileEntry,
    /// The rewritten file, relative to the staging directory; `None` when no row is left.
    pub new: Option<WrittenFile>,
    pub rows_removed: u64,
}

/// Everything one commit changes.
#[derive(Debug, Default)]
pub struct Commit {
    /// A new batch and its staged files.
    pub batch: Option<(BatchEntry, Vec<WrittenFile>)>,
    pub replacements: Vec<Replacement>,
    pub withdrawal: Option<WithdrawalEntry>,
    pub key_id: Option<String>,
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(path))
}

impl Dataset {
    /// Open the dataset at `root`, creating the directory if needed.
    pub fn open(root: &Path) -> Result<Dataset> {
        fs::create_dir_all(root.join(DATA_DIR)).map_err(Error::io(root))?;
        Ok(Dataset {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn manifest(&self) -> Result<Manifest> {
        Ok(Manifest::read(&self.root)?)
    }

    /// Take the write lock (waiting for another writer to finish) and clean up after any
    /// interrupted commit.
    pub fn lock(&self) -> Result<WriteLock> {
        let path = self.root.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io(&path))?;
        file.lock().map_err(Error::io(&path))?;
        let lock = WriteLock { _file: file };
        self.recover(&lock)?;
        Ok(lock)
    }

    /// Remove the staging area and every Parquet file under `data/` the manifest does not list.
    fn recover(&self, _lock: &WriteLock) -> Result<()> {
        let staging = self.root.join(STAGING_DIR);
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(Error::io(&staging))?;
        }
        let _ = fs::remove_file(self.root.join(format!("{MANIFEST_FILE}.tmp")));
        let manifest = self.manifest()?;
        let live: HashSet<&str> = manifest.live_files().map(|f| f.path.as_str()).collect();
        let mut orphans = Vec::new();
        collect_parquet(&self.root, Path::new(DATA_DIR), &mut orphans)?;
        for rel in orphans {
            if !live.contains(rel.as_str()) {
                tracing::info!(file = %rel, "removing a file left by an interrupted commit");
                let path = self.root.join(&rel);
                fs::remove_file(&path).map_err(Error::io(&path))?;
            }
        }
        Ok(())
    }

    /// Start a change: take the write lock, read the manifest and check that `keys` are the ones
    /// the dataset was pseudonymised with (a dataset with no batch yet takes any key).
    pub fn begin(&self, keys: &PurposeKeys) -> Result<Session<'_>> {
        let lock = self.lock()?;
        let manifest = self.manifest()?;
        if let Some(existing) = &manifest.key_id
            && existing != keys.key_id()
        {
            return Err(Error::KeyMismatch {
                dataset: existing.clone(),
                given: keys.key_id().to_string(),
            });
        }
        Ok(Session {
            dataset: self,
            lock,
            manifest,
        })
    }

    /// A fresh, empty staging directory for one commit.
    pub fn staging(&self, _lock: &WriteLock, name: &str) -> Result<PathBuf> {
        let dir = self.root.join(STAGING_DIR).join(name);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(Error::io(&dir))?;
        }
        fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        Ok(dir)
    }

    /// Apply a commit atomically (see the module documentation). Returns the new manifest.
    pub fn commit(&self, _lock: &WriteLock, staging: &Path, change: Commit) -> Result<Manifest> {
        let mut manifest = self.manifest()?;
        let new_files = change
            .batch
            .iter()
            .flat_map(|(_, files)| files.iter())
            .chain(change.replacements.iter().filter_map(|r| r.new.as_ref()));
        let mut dirs = HashSet::new();
        for file in new_files {
            let (from, to) = (staging.join(&file.relative), self.root.join(&file.relative));
            let dir = to
                .parent()
                .expect("data files live in a partition directory")
                .to_path_buf();
            fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
            fs::rename(&from, &to).map_err(Error::io(&to))?;
            failpoint::step("file moved into place");
            dirs.insert(dir);
        }
        for dir in dirs {
            sync_dir(&dir)?;
        }

        manifest.generation += 1;
        if let Some(key_id) = change.key_id {
            manifest.key_id.get_or_insert(key_id);
        }
        let mut obsolete = Vec::new();
        for r in &change.replacements {
            let batch = manifest
                .batches
                .iter_mut()
                .find(|b| b.batch_id == r.batch_id)
                .expect("replacements name live batches");
            batch.files.retain(|f| f.path != r.old.path);
            if let Some(new) = &r.new {
                batch.files.push(FileEntry {
                    path: new.relative.clone(),
                    rows: new.rows,
                });
                batch.files.sort_by(|a, b| a.path.cmp(&b.path));
            }
            obsolete.push(r.old.path.clone());
        }
        if let Some((mut entry, files)) = change.batch {
            entry.files = files
                .into_iter()
                .map(|f| FileEntry {
                    path: f.relative,
                    rows: f.rows,
                })
                .collect();
            manifest.batches.push(entry);
        }
        if let Some(w) = change.withdrawal {
            manifest.withdrawals.push(w);
        }
        self.write_manifest(&manifest)?;

        for rel in obsolete {
            let path = self.root.join(&rel);
            fs::remove_file(&path).map_err(Error::io(&path))?;
            failpoint::step("obsolete file removed");
        }
        fs::remove_dir_all(staging).map_err(Error::io(staging))?;
        Ok(manifest)
    }

    fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let tmp = self.root.join(format!("{MANIFEST_FILE}.tmp"));
        let path = self.root.join(MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(manifest).expect("manifest serialises");
        let mut file = File::create(&tmp).map_err(Error::io(&tmp))?;
        file.write_all(&json)
            .and_then(|_| file.sync_all())
            .map_err(Error::io(&tmp))?;
        failpoint::step("manifest written");
        fs::rename(&tmp, &path).map_err(Error::io(&path))?;
        sync_dir(&self.root)?;
        failpoint::step("manifest committed");
        Ok(())
    }

    /// The record keys of one live file, in order.
    pub fn record_keys(&self, file: &FileEntry) -> Result<Vec<String>> {
        record_keys_at(&self.root.join(&file.path))
    }

    /// Rewrite a live file into `staging` without the rows whose record key is in `remove`.
    pub fn rewrite_without(
        &self,
        staging: &Path,
        batch_id: &str,
        file: &FileEntry,
        remove: &HashSet<String>,
        generation: u64,
    ) -> Result<Replacement> {
        let stem = file.path.trim_end_matches(".parquet");
        let stem = stem.split("-g").next().unwrap_or(stem);
        let relative = format!("{stem}-g{generation}.parquet");
        let (kept, removed) = filter_file(
            &self.root.join(&file.path),
            &staging.join(&relative),
            batch_id,
            remove,
        )?;
        let new = (kept > 0).then_some(WrittenFile {
            relative,
            rows: kept,
        });
        Ok(Replacement {
            batch_id: batch_id.to_string(),
            old: file.clone(),
            new,
            rows_removed: removed,
        })
    }

    /// Rewrite every live file of `organisation` that holds one of `keys`, into `staging`.
    pub fn rewrites_for(
        &self,
        staging: &Path,
        manifest: &Manifest,
        organisation: &str,
        keys: &HashSet<String>,
    ) -> Result<Vec<Replacement>> {
        let mut replacements = Vec::new();
        for batch in manifest
            .batches
            .iter()
            .filter(|b| b.organisation == organisation)
        {
            for file in &batch.files {
                let hit = self.record_keys(file)?.iter().any(|k| keys.contains(k));
                if hit {
                    let r = self.rewrite_without(
                        staging,
                        &batch.batch_id,
                        file,
                        keys,
                        manifest.generation + 1,
                    )?;
                    replacements.push(r);
                }
            }
        }
        Ok(replacements)
    }
}

impl Session<'_> {
    /// The manifest as it stood when the session began.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// A fresh, empty staging directory for this change.
    pub fn staging(&self, name: &str) -> Result<PathBuf> {
        self.dataset.staging(&self.lock, name)
    }

    /// Rewrite every live file of `organisation` that holds one of `keys`, into `staging`.
    pub fn rewrites_for(
        &self,
        staging: &Path,
        organisation: &str,
        keys: &HashSet<String>,
    ) -> Result<Vec<Replacement>> {
        self.dataset
            .rewrites_for(staging, &self.manifest, organisation, keys)
    }

    /// Apply the change atomically and end the session. Returns the new manifest.
    pub fn commit(self, staging: &Path, change: Commit) -> Result<Manifest> {
        self.dataset.commit(&self.lock, staging, change)
    }
}

/// Copy the Parquet file `src` to `dst` without the rows whose record key is in `remove`,
/// keeping its key id, and fsync it. Returns (rows kept, rows removed); when no row is kept, no
/// file is left at `dst`.
pub fn filter_file(
    src: &Path,
    dst: &Path,
    batch_id: &str,
    remove: &HashSet<String>,
) -> Result<(u64, u64)> {
    let handle = File::open(src).map_err(Error::io(src))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(handle)?;
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let key_id = kv
        .iter()
        .find(|k| k.key == meta::KEY_ID)
        .and_then(|k| k.value.clone())
        .unwrap_or_default();
    let schema = builder.schema().clone();
    let key_column = schema.index_of("record_key")?;
    let reader = builder.build()?;
    let dir = dst.parent().expect("partition directory").to_path_buf();
    fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let out = File::create(dst).map_err(Error::io(dst))?;
    let mut writer = ArrowWriter::try_new(out, schema, Some(writer_properties(batch_id, &key_id)))?;
    let (mut kept, mut removed) = (0u64, 0u64);
    for batch in reader {
        let batch = batch?;
        let keys = key_column_of(batch.column(key_column).as_ref())?;
        let keep: BooleanArray = (0..keys.len())
            .map(|i| Some(!remove.contains(keys.hex(i).as_ref())))
            .collect();
        let filtered = filter_record_batch(&batch, &keep)?;
        removed += (batch.num_rows() - filtered.num_rows()) as u64;
        kept += filtered.num_rows() as u64;
        if filtered.num_rows() > 0 {
            writer.write(&filtered)?;
        }
    }
    let out = writer.into_inner()?;
    out.sync_all().map_err(Error::io(dst))?;
    failpoint::step("rewritten file staged");
    if kept == 0 {
        fs::remove_file(dst).map_err(Error::io(dst))?;
    }
    Ok((kept, removed))
}

/// The record keys of the Parquet file at `path`, in order (reads that one column only).
pub fn record_keys_at(path: &Path) -> Result<Vec<String>> {
    let handle = File::open(path).map_err(Error::io(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(handle)?;
    let column = builder.schema().index_of("record_key")?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [column]);
    let reader = builder.with_projection(mask).build()?;
    let mut keys = Vec::new();
    for batch in reader {
        let batch = batch?;
        let array = key_column_of(batch.column(0).as_ref())?;
        keys.extend((0..array.len()).map(|i| array.hex(i).into_owned()));
    }
    Ok(keys)
}

/// A file's record key column in either stored form.
fn key_column_of(array: &dyn arrow::array::Array) -> Result<KeyColumn<'_>> {
    KeyColumn::new(array).ok_or_else(|| {
        Error::Arrow(arrow::error::ArrowError::SchemaError(format!(
            "record_key is stored as {}, not as a pseudonym",
            array.data_type()
        )))
    })
}

fn collect_parquet(root: &Path, rel: &Path, out: &mut Vec<String>) -> Result<()> {
    let dir = root.join(rel);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::Io {
                path: dir,
                source: e,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(Error::io(&dir))?;
        let name = rel.join(entry.file_name());
        if entry.file_type().map_err(Error::io(&dir))?.is_dir() {
            collect_parquet(root, &name, out)?;
        } else if name.extension().is_some_and(|e| e == "parquet") {
            out.push(name.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// Rows of a file, for tests and tools: every record batch of a live file.
pub fn read_file(root: &Path, file: &FileEntry) -> Result<Vec<arrow::array::RecordBatch>> {
    let path = root.join(&file.path);
    let handle = File::open(&path).map_err(Error::io(&path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(handle)?.build()?;
    let batches: std::result::Result<Vec<_>, _> = reader.collect();
    let batches = batches?;
    debug_assert_eq!(
        batches.iter().map(|b| b.num_rows() as u64).sum::<u64>(),
        file.rows
    );
    Ok(batches.into_iter().filter(|b| b.num_rows() > 0).collect())
}
