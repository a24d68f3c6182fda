//! Storage: the repository of objects, indexes, links, runs, association entries, audit
//! events and small named state. [`Store`] is the one type callers use; inside it a backend:
//!
//! * `embedded` — sled in the data folder (the default, today's store; the only user of sled);
//! * `pg` — PostgreSQL, a relational schema shared by several nodes (`[storage] backend =
//!   "postgres"`).
//!
//! Callers never learn which one they talk to: both take the same [`DataBatch`] (objects,
//! index entries and links with compare-and-swap preconditions) and apply it atomically, with
//! [`StoreError::Conflict`] when a precondition fails and nothing written.
//!
//! Invariants: keys are built and parsed only in [`keys`]; stored values pass only through
//! [`codec`] (the embedded store's values; PostgreSQL's runs, entries, audit events and meta
//! values too); a run's completion record is written after all of its entries and audit
//! events.
//!
//! Files: `records` (what is stored), `batch` (what writers stage), `keys` and `codec`; this
//! file holds the errors, the settings and the dispatch to the backend.

mod batch;
mod codec;
#[cfg(test)]
mod count_tests;
mod embedded;
mod keys;
mod pg;
mod records;
#[cfg(test)]
mod tests;

pub use batch::{BatchMark, DataBatch, Expect, ItemBatch};
use records::EntryRecordV1;
pub use records::{
    index_terms, EntryRecord, IndexTerm, Link, ObjectCounts, RunRecord, StoredObject,
    SyncTokenRecord,
};

use std::ops::ControlFlow;
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
    /// The PostgreSQL repository failed (connection lost, timeout, a statement refused).
    #[error("PostgreSQL repository error while {context}: {message}")]
    Database { context: String, message: String },
    /// The repository's schema is not one this build can use (newer than it knows).
    #[error("{0}")]
    Schema(String),
    /// A stored value could not be encoded or decoded.
    #[error("store value error: {0}")]
    Codec(String),
    /// A write's precondition (expected revision, or "must not exist") did not hold: another
    /// writer changed the object or link since it was read. Nothing of the batch was written.
    #[error("concurrent change: {0}")]
    Conflict(String),
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
/// Default number of PostgreSQL connections a node keeps (`[storage] pool_size`): one per
/// worker of a run plus a few for HTTP reads.
pub const DEFAULT_POOL_SIZE: u32 = 8;

/// How many `sync` audit events are kept; older ones are removed as new ones come.
pub const SYNC_AUDIT_KEEP: u64 = 100_000;
/// Old events are trimmed once per this many appends (a trim walks the kept events' keys).
const SYNC_AUDIT_TRIM_EVERY: u64 = 1_000;

/// Which repository to open.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Repository {
    /// sled in the data folder.
    #[default]
    Embedded,
    /// A PostgreSQL database shared by the nodes.
    Postgres {
        /// `postgres://user:pass@host:port/db?sslmode=...`
        url: String,
        pool_size: u32,
    },
}

impl std::fmt::Debug for Repository {
    // The URL may hold a password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Repository::Embedded => f.write_str("Embedded"),
            Repository::Postgres { pool_size, .. } => {
                write!(f, "Postgres {{ url: ***, pool_size: {pool_size} }}")
            }
        }
    }
}

/// Storage settings from `recon.toml`.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub repository: Repository,
    /// sled's settings (the embedded repository).
    pub cache_capacity_bytes: u64,
    pub flush_every_ms: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            repository: Repository::Embedded,
            cache_capacity_bytes: DEFAULT_CACHE_MB * 1024 * 1024,
            flush_every_ms: Some(DEFAULT_FLUSH_EVERY_MS),
        }
    }
}

/// Checks a PostgreSQL repository URL without connecting (configuration errors at startup).
pub fn check_postgres_url(url: &str) -> std::result::Result<(), String> {
    pg::parse_url(url).map(|_| ())
}

/// The repository. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Embedded(embedded::Embedded),
    Postgres(pg::PgStore),
}

/// Calls the same method on whichever backend the store has.
macro_rules! backend {
    ($self:ident, $b:ident => $call:expr) => {
        match &$self.backend {
            Backend::Embedded($b) => $call,
            Backend::Postgres($b) => $call,
        }
    };
}

impl Store {
    /// Opens the repository `options` names; `path` is the data folder (the embedded store's
    /// home). PostgreSQL's schema is migrated to this build's version first.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store> {
        let backend = match &options.repository {
            Repository::Embedded => Backend::Embedded(embedded::Embedded::open(path, options)?),
            Repository::Postgres { url, pool_size } => {
                Backend::Postgres(pg::PgStore::open(url, *pool_size)?)
            }
        };
        Ok(Store { backend })
    }

    /// Whether this is the PostgreSQL repository, which several nodes may share: the app picks
    /// the cluster coordinator by it; the data paths never behave differently on it.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Lends one of the PostgreSQL repository's pooled connections to `f`, off the async
    /// runtime (the cluster coordinator's statements run on the repository's own pool, so
    /// nodes sharing the repository share its `nodes` and `claims` tables too). The outer
    /// error is the repository's (the embedded store has no connection to lend, or none could
    /// be opened); the inner one is `f`'s.
    pub fn with_pg<T, E>(
        &self,
        context: &str,
        f: impl FnOnce(&mut postgres::Client) -> std::result::Result<T, E>,
    ) -> Result<std::result::Result<T, E>> {
        match &self.backend {
            Backend::Postgres(b) => b.with_client(context, f),
            Backend::Embedded(_) => Err(StoreError::Schema(format!(
                "{context}: the embedded store has no PostgreSQL connection to lend"
            ))),
        }
    }

    /// Makes everything written so far durable (PostgreSQL: every commit already is).
    pub fn flush(&self) -> Result<usize> {
        backend!(self, b => b.flush())
    }

    pub async fn flush_async(&self) -> Result<usize> {
        match &self.backend {
            Backend::Embedded(b) => b.flush_async().await,
            Backend::Postgres(_) => Ok(0),
        }
    }

    pub fn size_on_disk(&self) -> u64 {
        backend!(self, b => b.size_on_disk())
    }

    /// A unique, increasing number (survives restarts).
    pub fn next_id(&self) -> Result<u64> {
        backend!(self, b => b.next_id())
    }

    pub fn put_meta<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let bytes = codec::encode(value)?;
        backend!(self, b => b.put_meta(name, bytes))
    }

    pub fn get_meta<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        match backend!(self, b => b.get_meta(name))? {
            Some(v) => codec::decode(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Applies a batch atomically: the write discipline of every writer of objects, indexes
    /// and links (runs, REST, scripts). Its preconditions (expected revision, or "must not
    /// exist") are checked with the write, so no other checked write of those keys can come
    /// between the check and the write. A failed check writes nothing and returns
    /// [`StoreError::Conflict`]; the caller re-reads and retries. Embedded: striped locks
    /// around check and `apply_batch`; PostgreSQL: one transaction, rows locked, the unique
    /// keys of objects and links deciding races between nodes.
    pub fn apply(&self, batch: DataBatch) -> Result<()> {
        backend!(self, b => b.apply(batch))
    }

    pub fn apply_entries(&self, batch: ItemBatch) -> Result<()> {
        backend!(self, b => b.apply_entries(batch))
    }

    pub fn apply_audit(&self, batch: ItemBatch) -> Result<()> {
        backend!(self, b => b.apply_audit(batch))
    }

    pub fn get_object(&self, set: &str, id: &str) -> Result<Option<StoredObject>> {
        backend!(self, b => b.get_object(set, id))
    }

    pub fn object_exists(&self, set: &str, id: &str) -> Result<bool> {
        backend!(self, b => b.object_exists(set, id))
    }

    /// Visits the objects of a set in id order (byte order), starting after `after`
    /// (exclusive) if given.
    pub fn scan_objects(
        &self,
        set: &str,
        after: Option<&str>,
        f: &mut dyn FnMut(StoredObject) -> ControlFlow<()>,
    ) -> Result<()> {
        backend!(self, b => b.scan_objects(set, after, f))
    }

    /// Visits the ids of a set in order without decoding the objects.
    pub fn scan_object_ids(
        &self,
        set: &str,
        f: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<()> {
        backend!(self, b => b.scan_object_ids(set, f))
    }

    pub fn count_objects(&self, set: &str) -> Result<u64> {
        let never = || false;
        Ok(self.count_objects_until(set, &never)?.unwrap_or_default())
    }

    /// [`Store::count_objects`], giving up (`None`) as soon as `stop` says so. The embedded
    /// store answers from its count of the set when it knows it (no scan).
    pub fn count_objects_until(&self, set: &str, stop: &dyn Fn() -> bool) -> Result<Option<u64>> {
        if let Some(c) = self.object_counts(set)? {
            return Ok(Some(c.objects));
        }
        backend!(self, b => b.count_objects_until(set, stop))
    }

    pub fn set_is_empty(&self, set: &str) -> Result<bool> {
        backend!(self, b => b.set_is_empty(set))
    }

    /// The set's object count with its create and delete counters, read atomically with
    /// respect to every [`Store::apply`] (a reader never sees a batch's objects without its
    /// counts, nor the reverse), or None when the store does not know it: the PostgreSQL
    /// repository, or an embedded set written without preconditions since it was opened
    /// (see `embedded::counts`).
    pub fn object_counts(&self, set: &str) -> Result<Option<ObjectCounts>> {
        match &self.backend {
            Backend::Embedded(b) => Ok(b.object_counts(set)),
            Backend::Postgres(_) => Ok(None),
        }
    }

    /// Ids of the objects whose indexed `attr` has `term`, in id order.
    pub fn index_lookup(&self, set: &str, attr: &str, term: &IndexTerm) -> Result<Vec<String>> {
        backend!(self, b => b.index_lookup(set, attr, term))
    }

    /// Removes every index entry of a set (before the index is rebuilt).
    pub fn drop_index_entries(&self, set: &str) -> Result<()> {
        backend!(self, b => b.drop_index_entries(set))
    }

    pub fn link_by_first(
        &self,
        link_type: &str,
        qualifier: &str,
        first_id: &str,
    ) -> Result<Option<Link>> {
        backend!(self, b => b.link_by_first(link_type, qualifier, first_id))
    }

    pub fn link_by_second(
        &self,
        link_type: &str,
        qualifier: &str,
        second_id: &str,
    ) -> Result<Option<Link>> {
        backend!(self, b => b.link_by_second(link_type, qualifier, second_id))
    }

    /// [`Store::link_by_first`] for a writer: the embedded store notes what it found in
    /// `batch`, so that a precondition of the batch on the same link needs no second read
    /// (see `embedded::locks`); PostgreSQL checks every precondition in the transaction.
    pub fn link_by_first_for(
        &self,
        batch: &mut DataBatch,
        link_type: &str,
        qualifier: &str,
        first_id: &str,
    ) -> Result<Option<Link>> {
        match &self.backend {
            Backend::Embedded(b) => b.link_by_first_for(batch, link_type, qualifier, first_id),
            Backend::Postgres(b) => b.link_by_first(link_type, qualifier, first_id),
        }
    }

    /// [`Store::link_by_second`] for a writer (see [`Store::link_by_first_for`]).
    pub fn link_by_second_for(
        &self,
        batch: &mut DataBatch,
        link_type: &str,
        qualifier: &str,
        second_id: &str,
    ) -> Result<Option<Link>> {
        match &self.backend {
            Backend::Embedded(b) => b.link_by_second_for(batch, link_type, qualifier, second_id),
            Backend::Postgres(b) => b.link_by_second(link_type, qualifier, second_id),
        }
    }

    /// Visits links: all of them, those of one link type, or of one type and qualifier.
    pub fn scan_links(
        &self,
        link_type: Option<&str>,
        qualifier: Option<&str>,
        f: &mut dyn FnMut(Link) -> ControlFlow<()>,
    ) -> Result<()> {
        backend!(self, b => b.scan_links(link_type, qualifier, f))
    }

    pub fn count_links(&self, link_type: &str, qualifier: &str) -> Result<u64> {
        let never = || false;
        Ok(self
            .count_links_until(link_type, qualifier, &never)?
            .unwrap_or_default())
    }

    /// [`Store::count_links`], giving up (`None`) as soon as `stop` says so.
    pub fn count_links_until(
        &self,
        link_type: &str,
        qualifier: &str,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<u64>> {
        backend!(self, b => b.count_links_until(link_type, qualifier, stop))
    }

    pub fn put_run(&self, run: &RunRecord) -> Result<()> {
        backend!(self, b => b.put_run(run))
    }

    pub fn get_run(&self, seq: u64) -> Result<Option<RunRecord>> {
        backend!(self, b => b.get_run(seq))
    }

    /// Visits run records oldest first.
    pub fn scan_runs(&self, f: &mut dyn FnMut(RunRecord) -> ControlFlow<()>) -> Result<()> {
        backend!(self, b => b.scan_runs(f))
    }

    /// Removes a run record and leaves a purge marker for its entries and audit events, in
    /// one atomic write; the entries themselves are reclaimed by [`Store::reclaim`].
    pub fn remove_run(&self, seq: u64) -> Result<()> {
        backend!(self, b => b.remove_run(seq))
    }

    /// Runs whose items still wait to be reclaimed.
    pub fn pending_purges(&self) -> Result<Vec<u64>> {
        backend!(self, b => b.pending_purges())
    }

    /// Deletes a purged run's entries and audit events in small batches (so other writers are
    /// not blocked for long), then its purge marker. Stops early when `keep_going` says so.
    pub fn reclaim(&self, seq: u64, keep_going: &dyn Fn() -> bool) -> Result<bool> {
        backend!(self, b => b.reclaim(seq, keep_going))
    }

    pub fn get_entry(&self, seq: u64, item: u64) -> Result<Option<EntryRecord>> {
        backend!(self, b => b.get_entry(seq, item))
    }

    /// Visits a run's entries in entry order, starting after item `after` if given.
    pub fn scan_entries(
        &self,
        seq: u64,
        after: Option<u64>,
        f: &mut dyn FnMut(u64, EntryRecord) -> ControlFlow<()>,
    ) -> Result<()> {
        backend!(self, b => b.scan_entries(seq, after, f))
    }

    /// Visits audit events of one run, or of all runs (oldest run first).
    pub fn scan_audit(
        &self,
        seq: Option<u64>,
        f: &mut dyn FnMut(serde_json::Value) -> ControlFlow<()>,
    ) -> Result<()> {
        backend!(self, b => b.scan_audit(seq, f))
    }

    pub fn get_sync_token(&self, set: &str) -> Result<Option<SyncTokenRecord>> {
        backend!(self, b => b.get_sync_token(set))
    }

    /// Writes the token of `set` and makes it (and everything written before it) durable
    /// before returning: the caller drops state kept for older tokens right after.
    pub fn put_sync_token(&self, set: &str, record: &SyncTokenRecord) -> Result<()> {
        backend!(self, b => b.put_sync_token(set, record))
    }

    /// Appends `sync` audit events (JSON objects) in order; the oldest beyond
    /// [`SYNC_AUDIT_KEEP`] go.
    pub fn append_sync_audit(&self, events: &[serde_json::Value]) -> Result<()> {
        backend!(self, b => b.append_sync_audit(events))
    }

    /// Removes the oldest `sync` audit events beyond the newest `keep`.
    #[cfg(test)]
    pub(crate) fn trim_sync_audit(&self, keep: u64) -> Result<()> {
        backend!(self, b => b.trim_sync_audit(keep))
    }

    /// Visits `sync` audit events oldest first, after event number `after` if given, with
    /// their event numbers.
    pub fn scan_sync_audit(
        &self,
        after: Option<u64>,
        f: &mut dyn FnMut(u64, serde_json::Value) -> ControlFlow<()>,
    ) -> Result<()> {
        backend!(self, b => b.scan_sync_audit(after, f))
    }
}
