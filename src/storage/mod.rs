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

mod codec;
mod keys;

use std::ops::ControlFlow;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Errors of the storage layer, carrying what was being done.
#[derive(Debug)]
pub enum StoreError {
    /// sled reported an error (IO, corruption).
    Sled {
        context: String,
        source: sled::Error,
    },
    /// A stored value could not be encoded or decoded.
    Codec(String),
    /// A write's precondition (expected revision, or "must not exist") did not hold: another
    /// writer changed the object or link since it was read. Nothing of the batch was written.
    Conflict(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Sled { context, source } => {
                write!(f, "store error while {context}: {source}")
            }
            StoreError::Codec(m) => write!(f, "store value error: {m}"),
            StoreError::Conflict(m) => write!(f, "concurrent change: {m}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Sled { source, .. } => Some(source),
            StoreError::Codec(_) | StoreError::Conflict(_) => None,
        }
    }
}

fn sled_err(context: &str) -> impl FnOnce(sled::Error) -> StoreError + '_ {
    move |source| StoreError::Sled {
        context: context.to_string(),
        source,
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An object as stored: its revision and its JSON body (without `_id` and `_rev`).
#[derive(Serialize, Deserialize)]
struct ObjectRecord {
    rev: u64,
    body: Vec<u8>,
}

/// A stored object, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    pub id: String,
    pub rev: u64,
    pub body: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct LinkRecord {
    second_id: String,
    rev: u64,
}

/// One row of the link table (reference §5). Ids are unqualified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub link_type: String,
    pub qualifier: String,
    pub first_id: String,
    pub second_id: String,
    pub rev: u64,
}

impl Link {
    /// The link's `_id`: an opaque, reversible encoding of (linkType, qualifier, firstId), so
    /// that a link needs no third key to be read by id.
    pub fn id(&self) -> String {
        use base64::Engine;
        let key = keys::link_key(
            keys::LINK_FIRST,
            &self.link_type,
            &self.qualifier,
            &self.first_id,
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&key[1..])
    }

    /// Decodes a link `_id` into (linkType, qualifier, firstId).
    pub fn parse_id(id: &str) -> Option<(String, String, String)> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id)
            .ok()?;
        let mut key = vec![keys::LINK_FIRST];
        key.extend_from_slice(&raw);
        let (a, b, c) = keys::parse_link_key(&key)?;
        Some((a.to_string(), b.to_string(), c.to_string()))
    }
}

/// Opaque equality-index term (see `keys::index_terms`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexTerm(Vec<u8>);

/// The index terms of one attribute value (strings case-insensitive, arrays element-wise).
pub fn index_terms(value: &serde_json::Value) -> Vec<IndexTerm> {
    let mut out = Vec::new();
    keys::index_terms(value, &mut out);
    out.into_iter().map(IndexTerm).collect()
}

/// A persisted run record: the summary JSON plus the fields the store needs to list,
/// filter and retain runs without parsing the summary.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub seq: u64,
    pub id: String,
    pub mapping: String,
    pub completed: bool,
    pub is_analysis: bool,
    pub persist_associations: bool,
    pub source_collection: String,
    pub target_collection: String,
    /// Association summary `finishTime` (microsecond ISO-8601), once completed.
    pub finish_time: Option<String>,
    /// The run summary (reference §1.5) as JSON text.
    pub summary: String,
}

/// One association entry (reference §1.8), compactly stored; the run-level fields (mapping,
/// collections) are joined in when it is read.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct EntryRecord {
    pub situation: Option<String>,
    pub action: Option<String>,
    pub phase: String,
    pub link_qualifier: String,
    pub source_id: Option<String>,
    pub target_id: Option<String>,
    pub success: bool,
    pub exception: Option<String>,
    pub message: Option<String>,
    pub message_detail: Option<String>,
    pub ambiguous: Option<Vec<String>>,
    /// recond's attribute changes (contract §8) as a JSON array text, when recorded.
    pub changes: Option<String>,
    /// The changes were cut at their bound.
    pub changes_truncated: bool,
}

/// An association entry as format version 1 stored it (before `changes`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub(crate) struct EntryRecordV1 {
    pub situation: Option<String>,
    pub action: Option<String>,
    pub phase: String,
    pub link_qualifier: String,
    pub source_id: Option<String>,
    pub target_id: Option<String>,
    pub success: bool,
    pub exception: Option<String>,
    pub message: Option<String>,
    pub message_detail: Option<String>,
    pub ambiguous: Option<Vec<String>>,
}

impl From<EntryRecordV1> for EntryRecord {
    fn from(o: EntryRecordV1) -> EntryRecord {
        EntryRecord {
            situation: o.situation,
            action: o.action,
            phase: o.phase,
            link_qualifier: o.link_qualifier,
            source_id: o.source_id,
            target_id: o.target_id,
            success: o.success,
            exception: o.exception,
            message: o.message,
            message_detail: o.message_detail,
            ambiguous: o.ambiguous,
            changes: None,
            changes_truncated: false,
        }
    }
}

/// What a write expects to find (compare-and-swap precondition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The object or link must not exist.
    Absent,
    /// The object or link must exist with this revision.
    Rev(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Object,
    LinkFirst,
    LinkSecond,
}

/// One precondition of a batch: the key, how to read its revision, and what is expected.
struct Precondition {
    key: Vec<u8>,
    slot: Slot,
    expect: Expect,
}

/// A position in a [`DataBatch`], to drop what was staged after it.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchMark {
    writes: usize,
    preconditions: usize,
    ops: usize,
}

impl BatchMark {
    /// Staged writes plus preconditions before the mark (for tests of callers).
    pub fn len_for_tests(&self) -> usize {
        self.writes + self.preconditions
    }
}

/// A batch of writes to the `data` tree, applied atomically by [`Store::apply`] after its
/// preconditions are checked (see [`Store::apply`] for the write discipline).
#[derive(Default)]
pub struct DataBatch {
    /// Writes in order (a later write of a key wins); `None` removes.
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ops: usize,
    preconditions: Vec<Precondition>,
}

impl DataBatch {
    /// The object `set/id` must be as expected when the batch is applied.
    pub fn expect_object(&mut self, set: &str, id: &str, expect: Expect) {
        self.preconditions.push(Precondition {
            key: keys::object_key(set, id),
            slot: Slot::Object,
            expect,
        });
    }

    /// The link (type, qualifier, firstId) must be as expected when the batch is applied.
    pub fn expect_link(
        &mut self,
        link_type: &str,
        qualifier: &str,
        first_id: &str,
        expect: Expect,
    ) {
        self.preconditions.push(Precondition {
            key: keys::link_key(keys::LINK_FIRST, link_type, qualifier, first_id),
            slot: Slot::LinkFirst,
            expect,
        });
    }

    /// No link (type, qualifier, *, secondId) may exist when the batch is applied.
    pub fn expect_no_link_to_second(&mut self, link_type: &str, qualifier: &str, second_id: &str) {
        self.preconditions.push(Precondition {
            key: keys::link_key(keys::LINK_SECOND, link_type, qualifier, second_id),
            slot: Slot::LinkSecond,
            expect: Expect::Absent,
        });
    }

    pub fn mark(&self) -> BatchMark {
        BatchMark {
            writes: self.writes.len(),
            preconditions: self.preconditions.len(),
            ops: self.ops,
        }
    }

    /// Drops every write and precondition staged after `m`.
    pub fn truncate(&mut self, m: &BatchMark) {
        self.writes.truncate(m.writes);
        self.preconditions.truncate(m.preconditions);
        self.ops = m.ops.min(self.ops);
    }

    /// Moves another batch's writes and preconditions into this one (after this one's).
    pub fn append(&mut self, mut other: DataBatch) {
        self.writes.append(&mut other.writes);
        self.preconditions.append(&mut other.preconditions);
        self.ops += other.ops;
    }

    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.push((key, Some(value)));
    }

    fn remove(&mut self, key: Vec<u8>) {
        self.writes.push((key, None));
    }
    pub fn new() -> DataBatch {
        DataBatch::default()
    }

    pub fn len(&self) -> usize {
        self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    /// Writes an object. `old_terms`/`new_terms` are (attribute, term) pairs of the indexed
    /// attributes before and after; only their difference is written.
    pub fn put_object(
        &mut self,
        set: &str,
        id: &str,
        rev: u64,
        body: &serde_json::Map<String, serde_json::Value>,
        old_terms: &[(String, IndexTerm)],
        new_terms: &[(String, IndexTerm)],
    ) -> Result<()> {
        let body = serde_json::to_vec(body).map_err(|e| StoreError::Codec(e.to_string()))?;
        let value = codec::encode(&ObjectRecord { rev, body })?;
        self.insert(keys::object_key(set, id), value);
        for (attr, term) in old_terms {
            if !new_terms.iter().any(|(a, t)| a == attr && t == term) {
                self.remove(keys::index_key(set, attr, &term.0, id));
            }
        }
        for (attr, term) in new_terms {
            if !old_terms.iter().any(|(a, t)| a == attr && t == term) {
                self.insert(keys::index_key(set, attr, &term.0, id), Vec::new());
            }
        }
        self.ops += 1;
        Ok(())
    }

    pub fn delete_object(&mut self, set: &str, id: &str, old_terms: &[(String, IndexTerm)]) {
        self.remove(keys::object_key(set, id));
        for (attr, term) in old_terms {
            self.remove(keys::index_key(set, attr, &term.0, id));
        }
        self.ops += 1;
    }

    /// Writes a link. `previous_second` is the second id the same (type, qualifier, first)
    /// link pointed to before, whose reverse key must go.
    pub fn put_link(&mut self, link: &Link, previous_second: Option<&str>) -> Result<()> {
        if let Some(prev) = previous_second {
            if prev != link.second_id {
                self.remove(keys::link_key(
                    keys::LINK_SECOND,
                    &link.link_type,
                    &link.qualifier,
                    prev,
                ));
            }
        }
        let value = codec::encode(&LinkRecord {
            second_id: link.second_id.clone(),
            rev: link.rev,
        })?;
        self.insert(
            keys::link_key(
                keys::LINK_FIRST,
                &link.link_type,
                &link.qualifier,
                &link.first_id,
            ),
            value,
        );
        self.insert(
            keys::link_key(
                keys::LINK_SECOND,
                &link.link_type,
                &link.qualifier,
                &link.second_id,
            ),
            link.first_id.as_bytes().to_vec(),
        );
        self.ops += 1;
        Ok(())
    }

    pub fn delete_link(&mut self, link: &Link) {
        self.remove(keys::link_key(
            keys::LINK_FIRST,
            &link.link_type,
            &link.qualifier,
            &link.first_id,
        ));
        self.remove(keys::link_key(
            keys::LINK_SECOND,
            &link.link_type,
            &link.qualifier,
            &link.second_id,
        ));
        self.ops += 1;
    }
}

/// The persisted liveSync token of one object set (contract §7).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SyncTokenRecord {
    /// The token as JSON text (a token is the set's own JSON value).
    pub token: String,
    /// Increases by one with every token written (the `_rev` IDM shows).
    pub rev: u64,
    /// When it was written (ms since the epoch).
    pub updated_ms: i64,
}

/// How many `sync` audit events are kept; older ones are removed as new ones come.
pub const SYNC_AUDIT_KEEP: u64 = 100_000;
/// Old events are trimmed once per this many appends (a trim walks the kept events' keys).
const SYNC_AUDIT_TRIM_EVERY: u64 = 1_000;

/// A batch of per-run items (association entries or audit events).
#[derive(Default)]
pub struct ItemBatch {
    batch: sled::Batch,
    ops: usize,
}

impl ItemBatch {
    pub fn len(&self) -> usize {
        self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    pub fn put_entry(&mut self, seq: u64, item: u64, entry: &EntryRecord) -> Result<()> {
        self.batch
            .insert(&keys::item_key(seq, item)[..], codec::encode(entry)?);
        self.ops += 1;
        Ok(())
    }

    pub fn put_audit(&mut self, seq: u64, item: u64, event: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_string(event).map_err(|e| StoreError::Codec(e.to_string()))?;
        self.batch
            .insert(&keys::item_key(seq, item)[..], codec::encode(&text)?);
        self.ops += 1;
        Ok(())
    }
}

/// Storage settings from `recon.toml`.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub cache_capacity_bytes: u64,
    pub flush_every_ms: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity_bytes: 128 * 1024 * 1024,
            flush_every_ms: Some(500),
        }
    }
}

/// The embedded store. Cheap to clone (sled handles are reference-counted).
const STRIPES: usize = 256;

fn stripe_of(key: &[u8]) -> usize {
    let h = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    (h % STRIPES as u64) as usize
}

#[derive(Clone)]
pub struct Store {
    /// Striped locks held around check + apply of a batch with preconditions.
    stripes: std::sync::Arc<Vec<parking_lot::Mutex<()>>>,
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
            stripes: std::sync::Arc::new(
                (0..STRIPES).map(|_| parking_lot::Mutex::new(())).collect(),
            ),
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

    /// Applies a batch atomically: the write discipline of every writer of the `data` tree
    /// (runs, REST, scripts). Its preconditions (expected revision, or "must not exist") are
    /// checked and the batch applied while holding the striped locks of every key they name,
    /// so no other checked write of those keys can come between the check and the write. A
    /// failed check writes nothing and returns [`StoreError::Conflict`]; the caller re-reads
    /// and retries. (A shared-database backend does the same with `UPDATE … WHERE rev = $old`.)
    pub fn apply(&self, batch: DataBatch) -> Result<()> {
        if batch.ops == 0 && batch.preconditions.is_empty() {
            return Ok(());
        }
        let mut stripes: Vec<usize> = batch
            .preconditions
            .iter()
            .map(|p| stripe_of(&p.key))
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        // Locks are always taken in ascending stripe order: no two writers can deadlock.
        let _guards: Vec<_> = stripes.iter().map(|i| self.stripes[*i].lock()).collect();
        self.check(&batch.preconditions)?;
        let mut sb = sled::Batch::default();
        for (k, v) in batch.writes {
            match v {
                Some(v) => sb.insert(k, v),
                None => sb.remove(k),
            }
        }
        self.data
            .apply_batch(sb)
            .map_err(sled_err("writing objects and links"))
    }

    fn check(&self, preconditions: &[Precondition]) -> Result<()> {
        let mut seen: std::collections::HashSet<&[u8]> =
            std::collections::HashSet::with_capacity(preconditions.len());
        for p in preconditions {
            if !seen.insert(&p.key) {
                return Err(StoreError::Conflict(format!(
                    "{} is written twice in one batch",
                    keys::describe(&p.key)
                )));
            }
            let current = self
                .data
                .get(&p.key)
                .map_err(sled_err("checking a revision"))?;
            let found = match (&current, p.slot) {
                (None, _) => None,
                (Some(v), Slot::Object) => Some(codec::decode::<ObjectRecord>(v)?.rev),
                (Some(v), Slot::LinkFirst) => Some(codec::decode::<LinkRecord>(v)?.rev),
                (Some(_), Slot::LinkSecond) => Some(0),
            };
            let ok = match (p.expect, found) {
                (Expect::Absent, None) => true,
                (Expect::Rev(want), Some(have)) => want == have,
                _ => false,
            };
            if !ok {
                let what = keys::describe(&p.key);
                return Err(StoreError::Conflict(match (p.expect, found) {
                    (Expect::Absent, Some(_)) => format!("{what} already exists"),
                    (Expect::Rev(want), Some(have)) => {
                        format!("{what} is at revision {have}, expected {want}")
                    }
                    _ => format!("{what} no longer exists"),
                }));
            }
        }
        Ok(())
    }

    // ---- objects -------------------------------------------------------------------------

    fn decode_object(id: &str, bytes: &[u8]) -> Result<StoredObject> {
        let rec: ObjectRecord = codec::decode(bytes)?;
        let body = serde_json::from_slice(&rec.body)
            .map_err(|e| StoreError::Codec(format!("object {id}: {e}")))?;
        Ok(StoredObject {
            id: id.to_string(),
            rev: rec.rev,
            body,
        })
    }

    pub fn get_object(&self, set: &str, id: &str) -> Result<Option<StoredObject>> {
        match self
            .data
            .get(keys::object_key(set, id))
            .map_err(sled_err("reading an object"))?
        {
            Some(bytes) => Self::decode_object(id, &bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn object_exists(&self, set: &str, id: &str) -> Result<bool> {
        self.data
            .contains_key(keys::object_key(set, id))
            .map_err(sled_err("reading an object"))
    }

    /// Visits the objects of a set in id order, starting after `after` (exclusive) if given.
    pub fn scan_objects(
        &self,
        set: &str,
        after: Option<&str>,
        f: &mut dyn FnMut(StoredObject) -> ControlFlow<()>,
    ) -> Result<()> {
        let prefix = keys::object_prefix(set);
        let iter = match after {
            Some(a) => {
                let mut start = keys::object_key(set, a);
                start.push(0);
                self.data.range(start..)
            }
            None => self.data.range(prefix.clone()..),
        };
        for item in iter {
            let (k, v) = item.map_err(sled_err("scanning objects"))?;
            if !k.starts_with(&prefix) {
                break;
            }
            let Some(id) = keys::object_id_from_key(&k, prefix.len()) else {
                continue;
            };
            let obj = Self::decode_object(id, &v)?;
            if f(obj).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Visits the ids of a set in order without decoding the objects.
    pub fn scan_object_ids(
        &self,
        set: &str,
        f: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<()> {
        let prefix = keys::object_prefix(set);
        for item in self.data.scan_prefix(&prefix).keys() {
            let k = item.map_err(sled_err("scanning object ids"))?;
            if let Some(id) = keys::object_id_from_key(&k, prefix.len()) {
                if f(id).is_break() {
                    break;
                }
            }
        }
        Ok(())
    }

    pub fn count_objects(&self, set: &str) -> Result<u64> {
        let mut n = 0u64;
        self.scan_object_ids(set, &mut |_| {
            n += 1;
            ControlFlow::Continue(())
        })?;
        Ok(n)
    }

    pub fn set_is_empty(&self, set: &str) -> Result<bool> {
        let prefix = keys::object_prefix(set);
        Ok(self
            .data
            .scan_prefix(&prefix)
            .keys()
            .next()
            .transpose()
            .map_err(sled_err("scanning"))?
            .is_none())
    }

    /// Ids of the objects whose indexed `attr` has `term`, in id order.
    pub fn index_lookup(&self, set: &str, attr: &str, term: &IndexTerm) -> Result<Vec<String>> {
        let prefix = keys::index_prefix(set, attr, &term.0);
        let mut out = Vec::new();
        for item in self.data.scan_prefix(&prefix).keys() {
            let k = item.map_err(sled_err("reading an index"))?;
            if let Some(id) = keys::object_id_from_key(&k, prefix.len()) {
                out.push(id.to_string());
            }
        }
        Ok(out)
    }

    /// Whether the set has any index entry at all (used to detect an index that must be
    /// built for objects written before the attribute was declared indexed).
    pub fn drop_index_entries(&self, set: &str) -> Result<()> {
        let prefix = keys::index_set_prefix(set);
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in self.data.scan_prefix(&prefix).keys() {
            batch.remove(item.map_err(sled_err("dropping an index"))?);
            n += 1;
            if n % 10_000 == 0 {
                self.data
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(sled_err("dropping an index"))?;
            }
        }
        self.data
            .apply_batch(batch)
            .map_err(sled_err("dropping an index"))
    }

    // ---- links ---------------------------------------------------------------------------

    fn decode_link(key: &[u8], value: &[u8]) -> Result<Link> {
        let (lt, q, first) = keys::parse_link_key(key)
            .ok_or_else(|| StoreError::Codec("malformed link key".into()))?;
        let rec: LinkRecord = codec::decode(value)?;
        Ok(Link {
            link_type: lt.to_string(),
            qualifier: q.to_string(),
            first_id: first.to_string(),
            second_id: rec.second_id,
            rev: rec.rev,
        })
    }

    pub fn link_by_first(
        &self,
        link_type: &str,
        qualifier: &str,
        first_id: &str,
    ) -> Result<Option<Link>> {
        let key = keys::link_key(keys::LINK_FIRST, link_type, qualifier, first_id);
        match self.data.get(&key).map_err(sled_err("reading a link"))? {
            Some(v) => Self::decode_link(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    pub fn link_by_second(
        &self,
        link_type: &str,
        qualifier: &str,
        second_id: &str,
    ) -> Result<Option<Link>> {
        let key = keys::link_key(keys::LINK_SECOND, link_type, qualifier, second_id);
        match self.data.get(&key).map_err(sled_err("reading a link"))? {
            Some(first) => {
                let first = String::from_utf8_lossy(&first).into_owned();
                self.link_by_first(link_type, qualifier, &first)
            }
            None => Ok(None),
        }
    }

    /// Visits links: all of them, those of one link type, or of one type and qualifier.
    pub fn scan_links(
        &self,
        link_type: Option<&str>,
        qualifier: Option<&str>,
        f: &mut dyn FnMut(Link) -> ControlFlow<()>,
    ) -> Result<()> {
        let prefix = match (link_type, qualifier) {
            (Some(lt), Some(q)) => keys::link_prefix(keys::LINK_FIRST, lt, q),
            (Some(lt), None) => keys::link_type_prefix(keys::LINK_FIRST, lt),
            _ => vec![keys::LINK_FIRST],
        };
        for item in self.data.scan_prefix(&prefix) {
            let (k, v) = item.map_err(sled_err("scanning links"))?;
            if f(Self::decode_link(&k, &v)?).is_break() {
                break;
            }
        }
        Ok(())
    }

    pub fn count_links(&self, link_type: &str, qualifier: &str) -> Result<u64> {
        let prefix = keys::link_prefix(keys::LINK_FIRST, link_type, qualifier);
        let mut n = 0;
        for item in self.data.scan_prefix(&prefix).keys() {
            item.map_err(sled_err("counting links"))?;
            n += 1;
        }
        Ok(n)
    }

    // ---- runs ----------------------------------------------------------------------------

    pub fn put_run(&self, run: &RunRecord) -> Result<()> {
        self.runs
            .insert(keys::run_key(run.seq), codec::encode(run)?)
            .map_err(sled_err("writing a run record"))?;
        Ok(())
    }

    pub fn get_run(&self, seq: u64) -> Result<Option<RunRecord>> {
        match self
            .runs
            .get(keys::run_key(seq))
            .map_err(sled_err("reading a run record"))?
        {
            Some(v) => codec::decode(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Visits run records oldest first.
    pub fn scan_runs(&self, f: &mut dyn FnMut(RunRecord) -> ControlFlow<()>) -> Result<()> {
        for item in self.runs.scan_prefix([keys::RUN]) {
            let (_, v) = item.map_err(sled_err("listing runs"))?;
            if f(codec::decode(&v)?).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Removes a run record and leaves a purge marker for its entries and audit events, in
    /// one atomic batch; the entries themselves are reclaimed by [`Store::reclaim`].
    pub fn remove_run(&self, seq: u64) -> Result<()> {
        let mut batch = sled::Batch::default();
        batch.remove(&keys::run_key(seq)[..]);
        batch.insert(&keys::purge_key(seq)[..], &[][..]);
        self.runs
            .apply_batch(batch)
            .map_err(sled_err("removing a run"))
    }

    /// Runs whose items still wait to be reclaimed.
    pub fn pending_purges(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for item in self.runs.scan_prefix([keys::PURGE]).keys() {
            let k = item.map_err(sled_err("listing purges"))?;
            if let Some(seq) = keys::seq_from_tagged(&k) {
                out.push(seq);
            }
        }
        Ok(out)
    }

    /// Deletes a purged run's entries and audit events in small batches (so other writers are
    /// not blocked for long), then its purge marker. Stops early when `keep_going` says so.
    pub fn reclaim(&self, seq: u64, keep_going: &dyn Fn() -> bool) -> Result<bool> {
        for tree in [&self.entries, &self.audit] {
            loop {
                if !keep_going() {
                    return Ok(false);
                }
                let mut batch = sled::Batch::default();
                let mut n = 0;
                for item in tree.scan_prefix(seq.to_be_bytes()).keys().take(5_000) {
                    batch.remove(item.map_err(sled_err("reclaiming entries"))?);
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                tree.apply_batch(batch)
                    .map_err(sled_err("reclaiming entries"))?;
            }
        }
        self.runs
            .remove(keys::purge_key(seq))
            .map_err(sled_err("clearing a purge marker"))?;
        Ok(true)
    }

    // ---- association entries and audit events --------------------------------------------

    pub fn apply_entries(&self, batch: ItemBatch) -> Result<()> {
        if batch.ops == 0 {
            return Ok(());
        }
        self.entries
            .apply_batch(batch.batch)
            .map_err(sled_err("writing association entries"))
    }

    pub fn apply_audit(&self, batch: ItemBatch) -> Result<()> {
        if batch.ops == 0 {
            return Ok(());
        }
        self.audit
            .apply_batch(batch.batch)
            .map_err(sled_err("writing audit events"))
    }

    pub fn get_entry(&self, seq: u64, item: u64) -> Result<Option<EntryRecord>> {
        match self
            .entries
            .get(keys::item_key(seq, item))
            .map_err(sled_err("reading an entry"))?
        {
            Some(v) => codec::decode_entry(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Visits a run's entries in entry order, starting after item `after` if given.
    pub fn scan_entries(
        &self,
        seq: u64,
        after: Option<u64>,
        f: &mut dyn FnMut(u64, EntryRecord) -> ControlFlow<()>,
    ) -> Result<()> {
        let start = match after {
            Some(a) => match a.checked_add(1) {
                Some(n) => keys::item_key(seq, n),
                None => return Ok(()),
            },
            None => keys::item_key(seq, 0),
        };
        let end = match seq.checked_add(1) {
            Some(n) => keys::item_key(n, 0).to_vec(),
            None => vec![0xff; 17],
        };
        for item in self.entries.range(start.to_vec()..end) {
            let (k, v) = item.map_err(sled_err("scanning entries"))?;
            let Some((_, no)) = keys::item_from_key(&k) else {
                continue;
            };
            if f(no, codec::decode_entry(&v)?).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Visits audit events of one run, or of all runs (oldest run first).
    pub fn scan_audit(
        &self,
        seq: Option<u64>,
        f: &mut dyn FnMut(serde_json::Value) -> ControlFlow<()>,
    ) -> Result<()> {
        let iter = match seq {
            Some(s) => self.audit.scan_prefix(s.to_be_bytes()),
            None => self.audit.iter(),
        };
        for item in iter {
            let (_, v) = item.map_err(sled_err("scanning audit events"))?;
            let text: String = codec::decode(&v)?;
            let event =
                serde_json::from_str(&text).map_err(|e| StoreError::Codec(e.to_string()))?;
            if f(event).is_break() {
                break;
            }
        }
        Ok(())
    }

    // ---- liveSync tokens and the `sync` audit topic ---------------------------------------

    pub fn get_sync_token(&self, set: &str) -> Result<Option<SyncTokenRecord>> {
        match self
            .sync
            .get(keys::sync_token_key(set))
            .map_err(sled_err("reading a liveSync token"))?
        {
            Some(v) => codec::decode(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Writes the token of `set` and makes it (and everything written before it) durable
    /// before returning: the caller drops state kept for older tokens right after.
    pub fn put_sync_token(&self, set: &str, record: &SyncTokenRecord) -> Result<()> {
        self.sync
            .insert(keys::sync_token_key(set), codec::encode(record)?)
            .map_err(sled_err("writing a liveSync token"))?;
        self.flush()?;
        Ok(())
    }

    /// Appends `sync` audit events (JSON objects) in order.
    pub fn append_sync_audit(&self, events: &[serde_json::Value]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for ev in events {
            let text = serde_json::to_string(ev).map_err(|e| StoreError::Codec(e.to_string()))?;
            batch.insert(
                &keys::sync_audit_key(self.next_id()?)[..],
                codec::encode(&text)?,
            );
        }
        self.sync
            .apply_batch(batch)
            .map_err(sled_err("writing sync audit events"))?;
        let n = events.len() as u64;
        let before = self
            .sync_appends
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        if before / SYNC_AUDIT_TRIM_EVERY != (before + n) / SYNC_AUDIT_TRIM_EVERY {
            self.trim_sync_audit(SYNC_AUDIT_KEEP)?;
        }
        Ok(())
    }

    /// Removes the oldest `sync` audit events beyond the newest `keep`.
    fn trim_sync_audit(&self, keep: u64) -> Result<()> {
        let prefix = [keys::SYNC_AUDIT];
        let mut newest_first = self.sync.scan_prefix(prefix).keys().rev();
        let mut cut = None;
        for (i, k) in newest_first.by_ref().enumerate() {
            let k = k.map_err(sled_err("scanning sync audit events"))?;
            if i as u64 == keep {
                cut = Some(k);
                break;
            }
        }
        let Some(cut) = cut else { return Ok(()) };
        let mut batch = sled::Batch::default();
        batch.remove(cut);
        for k in newest_first {
            batch.remove(k.map_err(sled_err("scanning sync audit events"))?);
        }
        self.sync
            .apply_batch(batch)
            .map_err(sled_err("trimming sync audit events"))
    }

    /// Visits `sync` audit events oldest first, after event number `after` if given, with
    /// their event numbers.
    pub fn scan_sync_audit(
        &self,
        after: Option<u64>,
        f: &mut dyn FnMut(u64, serde_json::Value) -> ControlFlow<()>,
    ) -> Result<()> {
        let start = match after {
            Some(a) => match a.checked_add(1) {
                Some(n) => keys::sync_audit_key(n),
                None => return Ok(()),
            },
            None => keys::sync_audit_key(0),
        };
        for item in self.sync.range(start.to_vec()..vec![keys::SYNC_AUDIT + 1]) {
            let (k, v) = item.map_err(sled_err("scanning sync audit events"))?;
            let Some(no) = keys::seq_from_tagged(&k) else {
                return Err(StoreError::Codec("a sync audit key is malformed".into()));
            };
            let text: String = codec::decode(&v)?;
            let event =
                serde_json::from_str(&text).map_err(|e| StoreError::Codec(e.to_string()))?;
            if f(no, event).is_break() {
                break;
            }
        }
        Ok(())
    }

    // ---- meta ----------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn temp_store(tag: &str) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "recond-store-{tag}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let store = Store::open(&dir, &StoreOptions::default()).expect("open temp store");
        (store, dir)
    }

    fn rand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    }

    fn obj(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().expect("object literal")
    }

    #[test]
    fn objects_indexes_and_links_round_trip() {
        let (store, dir) = temp_store("objects");
        let mut b = DataBatch::new();
        let terms: Vec<_> = index_terms(&json!("Alice"))
            .into_iter()
            .map(|t| ("userName".to_string(), t))
            .collect();
        b.put_object(
            "managed/user",
            "a1",
            1,
            &obj(json!({"userName": "Alice"})),
            &[],
            &terms,
        )
        .expect("put");
        let link = Link {
            link_type: "m".into(),
            qualifier: "default".into(),
            first_id: "s1".into(),
            second_id: "a1".into(),
            rev: 1,
        };
        b.put_link(&link, None).expect("link");
        store.apply(b).expect("apply");
        let o = store
            .get_object("managed/user", "a1")
            .expect("get")
            .expect("exists");
        assert_eq!(o.rev, 1);
        let t = index_terms(&json!("ALICE")).remove(0);
        assert_eq!(
            store
                .index_lookup("managed/user", "userName", &t)
                .expect("lookup"),
            vec!["a1".to_string()]
        );
        assert_eq!(
            store.link_by_first("m", "default", "s1").expect("link"),
            Some(link.clone())
        );
        assert_eq!(
            store.link_by_second("m", "default", "a1").expect("link"),
            Some(link.clone())
        );
        assert_eq!(
            Link::parse_id(&link.id()),
            Some(("m".into(), "default".into(), "s1".into()))
        );

        // Repoint the link and delete the object: the old reverse key and index entry go.
        let mut b = DataBatch::new();
        let moved = Link {
            second_id: "a2".into(),
            rev: 2,
            ..link.clone()
        };
        b.put_link(&moved, Some("a1")).expect("link");
        b.delete_object("managed/user", "a1", &terms);
        store.apply(b).expect("apply");
        assert_eq!(
            store.link_by_second("m", "default", "a1").expect("link"),
            None
        );
        assert_eq!(
            store.link_by_second("m", "default", "a2").expect("link"),
            Some(moved)
        );
        assert!(store
            .index_lookup("managed/user", "userName", &t)
            .expect("lookup")
            .is_empty());
        assert!(store.set_is_empty("managed/user").expect("empty"));
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn scan_objects_pages_after_an_id() {
        let (store, dir) = temp_store("scan");
        let mut b = DataBatch::new();
        for id in ["c", "a", "b"] {
            b.put_object("managed/x", id, 1, &obj(json!({})), &[], &[])
                .expect("put");
        }
        b.put_object("managed/xy", "z", 1, &obj(json!({})), &[], &[])
            .expect("put");
        store.apply(b).expect("apply");
        let mut seen = Vec::new();
        store
            .scan_objects("managed/x", Some("a"), &mut |o| {
                seen.push(o.id);
                ControlFlow::Continue(())
            })
            .expect("scan");
        assert_eq!(seen, vec!["b", "c"]);
        assert_eq!(store.count_objects("managed/x").expect("count"), 3);
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn sync_tokens_and_sync_audit_events_round_trip_and_trim() {
        let (store, dir) = temp_store("sync");
        assert_eq!(store.get_sync_token("system/a/b").expect("readable"), None);
        let rec = SyncTokenRecord {
            token: "17".into(),
            rev: 1,
            updated_ms: 5,
        };
        store.put_sync_token("system/a/b", &rec).expect("written");
        assert_eq!(
            store.get_sync_token("system/a/b").expect("readable"),
            Some(rec)
        );
        let events: Vec<serde_json::Value> =
            (0..5).map(|i| serde_json::json!({ "n": i })).collect();
        store.append_sync_audit(&events).expect("written");
        let mut seen = Vec::new();
        let mut numbers = Vec::new();
        store
            .scan_sync_audit(None, &mut |no, ev| {
                numbers.push(no);
                seen.push(ev["n"].as_i64().expect("n"));
                ControlFlow::Continue(())
            })
            .expect("scanned");
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
        let mut after = Vec::new();
        store
            .scan_sync_audit(Some(numbers[2]), &mut |_, ev| {
                after.push(ev["n"].as_i64().expect("n"));
                ControlFlow::Continue(())
            })
            .expect("scanned");
        assert_eq!(after, vec![3, 4]);
        store.trim_sync_audit(2).expect("trimmed");
        let mut kept = Vec::new();
        store
            .scan_sync_audit(None, &mut |_, ev| {
                kept.push(ev["n"].as_i64().expect("n"));
                ControlFlow::Continue(())
            })
            .expect("scanned");
        assert_eq!(kept, vec![3, 4], "the newest events are kept");
        assert!(
            store
                .get_sync_token("system/a/b")
                .expect("readable")
                .is_some(),
            "trimming events leaves tokens alone"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn runs_entries_and_purge() {
        let (store, dir) = temp_store("runs");
        let run = RunRecord {
            seq: 5,
            id: "x-5".into(),
            mapping: "m".into(),
            completed: true,
            is_analysis: false,
            persist_associations: true,
            source_collection: "a".into(),
            target_collection: "b".into(),
            finish_time: None,
            summary: "{}".into(),
        };
        store.put_run(&run).expect("put run");
        let mut items = ItemBatch::default();
        for i in 0..10 {
            items
                .put_entry(
                    5,
                    i,
                    &EntryRecord {
                        phase: "source".into(),
                        ..Default::default()
                    },
                )
                .expect("entry");
        }
        items
            .put_entry(6, 0, &EntryRecord::default())
            .expect("entry");
        store.apply_entries(items).expect("apply");
        let mut n = 0;
        store
            .scan_entries(5, Some(6), &mut |_, _| {
                n += 1;
                ControlFlow::Continue(())
            })
            .expect("scan");
        assert_eq!(n, 3);
        store.remove_run(5).expect("remove");
        assert_eq!(store.get_run(5).expect("get"), None);
        assert_eq!(store.pending_purges().expect("pending"), vec![5]);
        assert!(store.reclaim(5, &|| true).expect("reclaim"));
        assert!(store.pending_purges().expect("pending").is_empty());
        let mut left = 0;
        store
            .scan_entries(5, None, &mut |_, _| {
                left += 1;
                ControlFlow::Continue(())
            })
            .expect("scan");
        assert_eq!(left, 0);
        assert!(
            store.get_entry(6, 0).expect("get").is_some(),
            "another run's entries stay"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The write discipline: preconditions are checked with the apply; a failed one writes
    /// nothing of the batch.
    #[test]
    fn compare_and_swap_preconditions_guard_the_whole_batch() {
        let (store, dir) = temp_store("cas");
        let put = |id: &str, rev: u64, expect: Expect| {
            let mut b = DataBatch::new();
            b.expect_object("managed/x", id, expect);
            b.put_object("managed/x", id, rev, &obj(json!({"v": rev})), &[], &[])
                .expect("stage");
            store.apply(b)
        };
        put("a", 1, Expect::Absent).expect("create");
        assert!(matches!(
            put("a", 1, Expect::Absent),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            put("a", 2, Expect::Rev(7)),
            Err(StoreError::Conflict(_))
        ));
        put("a", 2, Expect::Rev(1)).expect("update at the read revision");
        // A batch whose second precondition fails writes nothing, not even its first write.
        let mut b = DataBatch::new();
        b.expect_object("managed/x", "new", Expect::Absent);
        b.put_object("managed/x", "new", 1, &obj(json!({})), &[], &[])
            .expect("stage");
        b.expect_object("managed/x", "a", Expect::Rev(1));
        assert!(matches!(store.apply(b), Err(StoreError::Conflict(_))));
        assert!(!store.object_exists("managed/x", "new").expect("read"));
        // The same key expected twice in one batch is refused.
        let mut b = DataBatch::new();
        b.expect_object("managed/x", "a", Expect::Rev(2));
        b.expect_object("managed/x", "a", Expect::Rev(2));
        assert!(matches!(store.apply(b), Err(StoreError::Conflict(_))));
        // Links: a new link needs its forward key and its target-side key free.
        let link = Link {
            link_type: "m".into(),
            qualifier: "default".into(),
            first_id: "s1".into(),
            second_id: "t1".into(),
            rev: 1,
        };
        let mut b = DataBatch::new();
        b.expect_link("m", "default", "s1", Expect::Absent);
        b.expect_no_link_to_second("m", "default", "t1");
        b.put_link(&link, None).expect("stage");
        store.apply(b).expect("first link");
        let mut b = DataBatch::new();
        b.expect_link("m", "default", "s2", Expect::Absent);
        b.expect_no_link_to_second("m", "default", "t1");
        assert!(
            matches!(store.apply(b), Err(StoreError::Conflict(m)) if m.contains("t1")),
            "a second link to t1 is refused"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
