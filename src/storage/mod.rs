//! Storage: the only module that knows sled and bincode.
//!
//! Trees:
//! * `data` — object sets, their equality indexes and the link table. They share one tree so
//!   that a reconciliation can write a target object, its index entries and its link in one
//!   atomic `apply_batch` (no target without its link after a crash).
//! * `runs` — run records keyed by run sequence number, plus purge markers.
//! * `entries` — association entries, keyed (run seq, entry no).
//! * `audit` — recon audit events, keyed (run seq, event no).
//! * `meta` — small named values (scheduler state).
//! * `sync` — liveSync tokens per object set and the `sync` audit topic (implicit and live
//!   synchronization), at most [`SYNC_AUDIT_KEEP`] events (the oldest go first).
//!
//! Invariants: keys are built only in [`keys`]; values pass only through [`codec`]; a run's
//! completion record is written after all of its entries and audit events.
//!
//! Files: `records` (what is stored), `batch` (batches and the write discipline), `objects`,
//! `links` and `runs` (reads of each tree), `keys` and `codec`, `locks` (write locks and
//! epochs); this file opens the store and keeps the small named `meta` values.

mod batch;
mod codec;
mod keys;
mod links;
mod locks;
mod objects;
mod records;
mod runs;
mod sync;
#[cfg(test)]
mod tests;

pub use batch::{BatchMark, DataBatch, Expect, ItemBatch};
use records::EntryRecordV1;
pub use records::{index_terms, EntryRecord, IndexTerm, Link, RunRecord, StoredObject};
pub use sync::{SyncTokenRecord, SYNC_AUDIT_KEEP};

use std::path::Path;

use serde::Serialize;

/// Errors of the storage layer, carrying what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an error (IO, corruption).
    #[error("store error while {context}: {source}")]
    Sled {
        context: String,
        source: sled::Error,
    },
    /// A stored value could not be encoded or decoded.
    #[error("store value error: {0}")]
    Codec(String),
    /// A write's precondition (expected revision, or "must not exist") did not hold: another
    /// writer changed the object or link since it was read. Nothing of the batch was written.
    #[error("concurrent change: {0}")]
    Conflict(String),
}

fn sled_err(context: &str) -> impl FnOnce(sled::Error) -> StoreError + '_ {
    move |source| StoreError::Sled {
        context: context.to_string(),
        source,
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Default of sled's page cache, in MiB (`[storage] cache_capacity_mb`). sled counts a page at
/// its size in the log, while the page in memory (keys and values as separate allocations,
/// old versions waiting for their epoch) takes about twice that: at 1,000,000 objects the
/// process peaked at 2.5-3.5 times the cache plus ~120 MiB. 64 MiB keeps a million-object
/// first load and steady run under 512 MiB; 128 MiB did not (steady peaked at 557 MiB), and
/// reads missing the cache are served from the OS page cache, so it cost no measurable CPU
/// (BENCHMARKS.md, "Memory with default store settings").
pub const DEFAULT_CACHE_MB: u64 = 64;
/// Default of sled's background flush interval, in ms (`[storage] flush_every_ms`). Flushing
/// more often did not lower the peak (dirty pages are not what stays resident).
pub const DEFAULT_FLUSH_EVERY_MS: u64 = 500;

/// Storage settings from `recon.toml`.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub cache_capacity_bytes: u64,
    pub flush_every_ms: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity_bytes: DEFAULT_CACHE_MB * 1024 * 1024,
            flush_every_ms: Some(DEFAULT_FLUSH_EVERY_MS),
        }
    }
}

/// The embedded store. Cheap to clone (sled handles are reference-counted).
#[derive(Clone)]
pub struct Store {
    /// Striped locks held around check + apply of a batch, and link keys' write epochs.
    stripes: std::sync::Arc<locks::WriteLocks>,
    db: sled::Db,
    data: sled::Tree,
    runs: sled::Tree,
    entries: sled::Tree,
    audit: sled::Tree,
    meta: sled::Tree,
    sync: sled::Tree,
    /// `sync` audit appends since the last trim.
    sync_appends: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Store {
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store> {
        let context = format!("opening the store at {}", path.display());
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_capacity_bytes)
            .flush_every_ms(options.flush_every_ms)
            // LowSpace (sled's default) measured as fast as HighThroughput for our batches
            // and keeps the files smaller.
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(sled_err(&context))?;
        let tree = |name: &str| db.open_tree(name).map_err(sled_err(&context));
        Ok(Store {
            data: tree("data")?,
            runs: tree("runs")?,
            entries: tree("entries")?,
            audit: tree("audit")?,
            meta: tree("meta")?,
            sync: tree("sync")?,
            sync_appends: std::sync::Arc::default(),
            stripes: std::sync::Arc::new(locks::WriteLocks::new()),
            db,
        })
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<usize> {
        self.db.flush().map_err(sled_err("flushing"))
    }

    pub async fn flush_async(&self) -> Result<usize> {
        self.db.flush_async().await.map_err(sled_err("flushing"))
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// A unique, increasing number (survives restarts).
    pub fn next_id(&self) -> Result<u64> {
        self.db.generate_id().map_err(sled_err("generating an id"))
    }

    pub fn put_meta<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.meta
            .insert(name.as_bytes(), codec::encode(value)?)
            .map_err(sled_err("writing state"))?;
        Ok(())
    }

    pub fn get_meta<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        match self
            .meta
            .get(name.as_bytes())
            .map_err(sled_err("reading state"))?
        {
            Some(v) => codec::decode(&v).map(Some),
            None => Ok(None),
        }
    }
}
