//! The embedded repository: sled, in the data folder (the default; one binary, nothing else
//! to run).
//!
//! Trees:
//! * `data` — object sets, their equality indexes and the link table. They share one tree so
//!   that a reconciliation can write a target object, its index entries and its link in one
//!   atomic `apply_batch` (no target without its link after a crash).
//! * `runs` — run records keyed by run sequence number, plus purge markers.
//! * `entries` — association entries, keyed (run seq, entry no).
//! * `audit` — recon audit events, keyed (run seq, event no).
//! * `meta` — small named values (scheduler state).
//! * object counts per set live in the `data` tree beside the objects (`counts`).
//! * `sync` — liveSync tokens per object set and the `sync` audit topic (implicit and live
//!   synchronization), at most `SYNC_AUDIT_KEEP` events (the oldest go first).
//!
//! Invariants: keys are built only in `storage::keys`; values pass only through
//! `storage::codec`; a run's completion record is written after all of its entries and audit
//! events.
//!
//! Files: `apply` (the write discipline), `objects`, `links` and `runs` (reads of each tree),
//! `sync`, `locks` (write locks and epochs), `counts` (object counts per set); this file opens the store and keeps the small
//! named `meta` values.

mod apply;
mod counts;
mod links;
pub(in crate::storage) mod locks;
mod objects;
mod runs;
mod sync;

use std::path::Path;

use super::{Result, StoreError, StoreOptions};

fn sled_err(context: &str) -> impl FnOnce(sled::Error) -> StoreError + '_ {
    move |source| StoreError::Sled {
        context: context.to_string(),
        source,
    }
}

/// The embedded store. Cheap to clone (sled handles are reference-counted).
#[derive(Clone)]
pub(in crate::storage) struct Embedded {
    /// Striped locks held around check + apply of a batch, and link keys' write epochs.
    stripes: std::sync::Arc<locks::WriteLocks>,
    db: sled::Db,
    data: sled::Tree,
    runs: sled::Tree,
    entries: sled::Tree,
    audit: sled::Tree,
    meta: sled::Tree,
    sync: sled::Tree,
    /// Object counts per set (see `counts`).
    counts: std::sync::Arc<counts::Counts>,
    /// `sync` audit appends since the last trim.
    sync_appends: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Embedded {
    pub(in crate::storage) fn open(path: &Path, options: &StoreOptions) -> Result<Embedded> {
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
        let data = tree("data")?;
        let meta = tree("meta")?;
        let counts = counts::Counts::open(&data, &meta)?;
        Ok(Embedded {
            counts: std::sync::Arc::new(counts),
            data,
            runs: tree("runs")?,
            entries: tree("entries")?,
            audit: tree("audit")?,
            meta,
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

    /// Writes a named value (encoded by `Store::put_meta`).
    pub fn put_meta(&self, name: &str, value: Vec<u8>) -> Result<()> {
        self.meta
            .insert(name.as_bytes(), value)
            .map_err(sled_err("writing state"))?;
        Ok(())
    }

    /// The object counts of `set`, or None when not known (see `counts`).
    pub fn object_counts(&self, set: &str) -> Option<super::ObjectCounts> {
        self.counts.get(set)
    }

    pub fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .meta
            .get(name.as_bytes())
            .map_err(sled_err("reading state"))?
            .map(|v| v.to_vec()))
    }
}
