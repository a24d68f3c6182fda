//! The write discipline on PostgreSQL: a [`DataBatch`] in one transaction.
//!
//! The batch's writes are the embedded store's keys and values; they are read back here into
//! rows (`keys::parse_*`, `codec`), the last write of a key winning as in sled's batch. Then,
//! in one transaction:
//! 1. preconditions: the objects and links they name are selected `FOR UPDATE` (locked until
//!    commit) and their revisions compared; "no link to this target" is a select too;
//! 2. deletes: links (removed or rewritten), objects, index entries;
//! 3. inserts: links (plain inserts: their two unique keys refuse a second link for a source
//!    or a target, also one another node commits meanwhile), objects expected absent (plain
//!    inserts: the primary key refuses an object another node created meanwhile), other
//!    objects (upserts), index entries.
//!
//! Deleting every link the batch rewrites before inserting any means a batch that moves a
//! link off a target and links another source to it is checked on its final state only.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use postgres::types::ToSql;

use super::pool::Conn;
use super::{db_err, from_sql, to_sql, PgStore};
use crate::storage::batch::{key_twice, Slot};
use crate::storage::records::{LinkRecordView, ObjectRecord};
use crate::storage::{codec, keys, DataBatch, Expect, ItemBatch, Result, StoreError};

const CHECK_OBJECTS: &str = "SELECT o.set_name, o.id, o.rev FROM recond_objects o \
     JOIN UNNEST($1::TEXT[], $2::TEXT[]) AS k(s, i) ON o.set_name = k.s AND o.id = k.i \
     FOR UPDATE OF o";
const CHECK_LINKS: &str = "SELECT l.link_type, l.qualifier, l.first_id, l.rev FROM recond_links l \
     JOIN UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS k(t, q, f) \
     ON l.link_type = k.t AND l.qualifier = k.q AND l.first_id = k.f FOR UPDATE OF l";
const CHECK_SECONDS: &str = "SELECT l.link_type, l.qualifier, l.second_id FROM recond_links l \
     JOIN UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS k(t, q, s) \
     ON l.link_type = k.t AND l.qualifier = k.q AND l.second_id = k.s FOR UPDATE OF l";
const DELETE_LINKS: &str = "DELETE FROM recond_links l USING \
     UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS k(t, q, f) \
     WHERE l.link_type = k.t AND l.qualifier = k.q AND l.first_id = k.f";
const DELETE_OBJECTS: &str = "DELETE FROM recond_objects o USING \
     UNNEST($1::TEXT[], $2::TEXT[]) AS k(s, i) WHERE o.set_name = k.s AND o.id = k.i";
const DELETE_INDEX: &str = "DELETE FROM recond_index x USING \
     UNNEST($1::TEXT[], $2::TEXT[], $3::BYTEA[], $4::TEXT[]) AS k(s, a, t, i) \
     WHERE x.set_name = k.s AND x.attr = k.a AND x.term = k.t AND x.id = k.i";
const INSERT_LINKS: &str =
    "INSERT INTO recond_links (link_type, qualifier, first_id, second_id, rev) \
     SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[])";
const INSERT_OBJECTS: &str = "INSERT INTO recond_objects (set_name, id, rev, body) \
     SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[])";
const UPSERT_OBJECTS: &str = "INSERT INTO recond_objects (set_name, id, rev, body) \
     SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[]) \
     ON CONFLICT (set_name, id) DO UPDATE SET rev = EXCLUDED.rev, body = EXCLUDED.body";
const INSERT_INDEX: &str = "INSERT INTO recond_index (set_name, attr, term, id) \
     SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BYTEA[], $4::TEXT[]) \
     ON CONFLICT DO NOTHING";
const UPSERT_ENTRIES: &str = "INSERT INTO recond_entries (seq, item, record) \
     SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BYTEA[]) \
     ON CONFLICT (seq, item) DO UPDATE SET record = EXCLUDED.record";
const UPSERT_AUDIT: &str = "INSERT INTO recond_audit (seq, item, record) \
     SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BYTEA[]) \
     ON CONFLICT (seq, item) DO UPDATE SET record = EXCLUDED.record";

const ANALYZE: &str = "ANALYZE recond_objects, recond_index, recond_links";

/// Rows this node inserted into the data tables since their statistics were last refreshed.
///
/// Why: until a table has statistics, PostgreSQL cannot tell a lookup of a link by its source
/// from one by its target — every row has the same link type and qualifier, but without
/// statistics `link_type = $1 AND qualifier = $2` looks selective — and a first load picked
/// the target-side unique index with only those two columns for the lookup by source (and
/// cached that plan): every lookup read all links of the mapping, 4.6 ms an object at 20,000.
/// Autovacuum analyzes a new table only after its naptime (a minute), too late for a first
/// load. So the node that writes refreshes the statistics itself, after its first 1,000 rows
/// and then whenever it added a tenth to what it last saw (a sample of at most 30,000 rows
/// a table; about 35 times on the way to a million).
#[derive(Default)]
pub(super) struct Statistics {
    since: AtomicU64,
    seen: AtomicU64,
    refreshing: parking_lot::Mutex<()>,
}

impl Statistics {
    /// Counts `rows` inserted; a guard when it is time to refresh (one caller at a time).
    fn due(&self, rows: u64) -> Option<parking_lot::MutexGuard<'_, ()>> {
        let since = self.since.fetch_add(rows, Ordering::Relaxed) + rows;
        let seen = self.seen.load(Ordering::Relaxed);
        if since < (seen / 10).max(1_000) {
            return None;
        }
        let guard = self.refreshing.try_lock()?;
        let since = self.since.swap(0, Ordering::Relaxed);
        self.seen.fetch_add(since, Ordering::Relaxed);
        Some(guard)
    }
}

/// Columns of rows, one vector per column (what `UNNEST` takes).
#[derive(Default)]
struct ObjectRows<'b> {
    sets: Vec<&'b str>,
    ids: Vec<&'b str>,
    revs: Vec<i64>,
    bodies: Vec<&'b str>,
}

#[derive(Default)]
struct Keys2<'b> {
    a: Vec<&'b str>,
    b: Vec<&'b str>,
}

#[derive(Default)]
struct Keys3<'b> {
    a: Vec<&'b str>,
    b: Vec<&'b str>,
    c: Vec<&'b str>,
}

#[derive(Default)]
struct IndexRows<'b> {
    sets: Vec<&'b str>,
    attrs: Vec<&'b str>,
    terms: Vec<&'b [u8]>,
    ids: Vec<&'b str>,
}

#[derive(Default)]
struct LinkRows<'b> {
    types: Vec<&'b str>,
    qualifiers: Vec<&'b str>,
    firsts: Vec<&'b str>,
    seconds: Vec<&'b str>,
    revs: Vec<i64>,
}

/// A batch read back into rows (no IO).
#[derive(Default)]
struct Plan<'b> {
    check_objects: Keys2<'b>,
    check_object_expect: Vec<Expect>,
    check_links: Keys3<'b>,
    check_link_expect: Vec<Expect>,
    check_seconds: Keys3<'b>,
    delete_links: Keys3<'b>,
    delete_objects: Keys2<'b>,
    delete_index: IndexRows<'b>,
    insert_links: LinkRows<'b>,
    insert_objects: ObjectRows<'b>,
    upsert_objects: ObjectRows<'b>,
    insert_index: IndexRows<'b>,
}

fn malformed(key: &[u8]) -> StoreError {
    StoreError::Codec(format!(
        "a batch holds a malformed key ({})",
        keys::describe(key)
    ))
}

fn text(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|e| StoreError::Codec(format!("an object body: {e}")))
}

impl<'b> Plan<'b> {
    fn new(batch: &'b DataBatch) -> Result<Plan<'b>> {
        let mut plan = Plan::default();
        let mut absent_objects: HashSet<&[u8]> = HashSet::new();
        for p in &batch.preconditions {
            match p.slot {
                Slot::Object => {
                    let (set, id) =
                        keys::parse_object_key(&p.key).ok_or_else(|| malformed(&p.key))?;
                    if p.expect == Expect::Absent {
                        absent_objects.insert(&p.key);
                    }
                    plan.check_objects.a.push(set);
                    plan.check_objects.b.push(id);
                    plan.check_object_expect.push(p.expect);
                }
                Slot::LinkFirst => {
                    let (t, q, f) =
                        keys::parse_link_key(&p.key).ok_or_else(|| malformed(&p.key))?;
                    plan.check_links.a.push(t);
                    plan.check_links.b.push(q);
                    plan.check_links.c.push(f);
                    plan.check_link_expect.push(p.expect);
                }
                Slot::LinkSecond => {
                    let (t, q, s) =
                        keys::parse_link_key(&p.key).ok_or_else(|| malformed(&p.key))?;
                    plan.check_seconds.a.push(t);
                    plan.check_seconds.b.push(q);
                    plan.check_seconds.c.push(s);
                }
            }
        }
        // The last write of each key wins (as in sled's batch): walk backwards, keep the first.
        let mut done: HashSet<&[u8]> = HashSet::with_capacity(batch.writes.len());
        for (key, value) in batch.writes.iter().rev() {
            if !done.insert(key) {
                continue;
            }
            match (key.first().copied(), value) {
                (Some(keys::OBJECT), Some(v)) => {
                    let (set, id) = keys::parse_object_key(key).ok_or_else(|| malformed(key))?;
                    let rec: ObjectRecord = codec::decode_borrowed(v)?;
                    let rows = if absent_objects.contains(&key[..]) {
                        &mut plan.insert_objects
                    } else {
                        &mut plan.upsert_objects
                    };
                    rows.sets.push(set);
                    rows.ids.push(id);
                    rows.revs.push(to_sql(rec.rev, "a revision")?);
                    rows.bodies.push(text(rec.body)?);
                }
                (Some(keys::OBJECT), None) => {
                    let (set, id) = keys::parse_object_key(key).ok_or_else(|| malformed(key))?;
                    plan.delete_objects.a.push(set);
                    plan.delete_objects.b.push(id);
                }
                (Some(keys::INDEX), v) => {
                    let (set, attr, term, id) =
                        keys::parse_index_key(key).ok_or_else(|| malformed(key))?;
                    let rows = if v.is_some() {
                        &mut plan.insert_index
                    } else {
                        &mut plan.delete_index
                    };
                    rows.sets.push(set);
                    rows.attrs.push(attr);
                    rows.terms.push(term);
                    rows.ids.push(id);
                }
                (Some(keys::LINK_FIRST), v) => {
                    let (t, q, f) = keys::parse_link_key(key).ok_or_else(|| malformed(key))?;
                    plan.delete_links.a.push(t);
                    plan.delete_links.b.push(q);
                    plan.delete_links.c.push(f);
                    if let Some(v) = v {
                        let rec: LinkRecordView = codec::decode_borrowed(v)?;
                        plan.insert_links.types.push(t);
                        plan.insert_links.qualifiers.push(q);
                        plan.insert_links.firsts.push(f);
                        plan.insert_links.seconds.push(rec.second_id);
                        plan.insert_links
                            .revs
                            .push(to_sql(rec.rev, "a link revision")?);
                    }
                }
                // The target side of a link is the row's `second_id`: written with it.
                (Some(keys::LINK_SECOND), _) => {}
                _ => return Err(malformed(key)),
            }
        }
        Ok(plan)
    }

    fn run(&self, c: &mut Conn) -> Result<()> {
        let context = "writing objects and links";
        let err = db_err(context);
        let st = |c: &mut Conn, sql: &'static str| c.statement(sql).map_err(db_err(context));
        let statements = [
            st(c, CHECK_OBJECTS)?,
            st(c, CHECK_LINKS)?,
            st(c, CHECK_SECONDS)?,
            st(c, DELETE_LINKS)?,
            st(c, DELETE_OBJECTS)?,
            st(c, DELETE_INDEX)?,
            st(c, INSERT_LINKS)?,
            st(c, INSERT_OBJECTS)?,
            st(c, UPSERT_OBJECTS)?,
            st(c, INSERT_INDEX)?,
        ];
        let [check_objects, check_links, check_seconds, delete_links, delete_objects, delete_index, insert_links, insert_objects, upsert_objects, insert_index] =
            statements;
        let mut tx = c.client.transaction().map_err(db_err(context))?;
        if !self.check_objects.a.is_empty() {
            let rows = tx
                .query(
                    &check_objects,
                    &[&self.check_objects.a, &self.check_objects.b],
                )
                .map_err(db_err(context))?;
            for (i, expect) in self.check_object_expect.iter().enumerate() {
                let (set, id) = (self.check_objects.a[i], self.check_objects.b[i]);
                let found = rows
                    .iter()
                    .find(|r| r.get::<_, &str>(0) == set && r.get::<_, &str>(1) == id)
                    .map(|r| from_sql(r.get(2), "a revision"))
                    .transpose()?;
                check(*expect, found, || format!("the object {set}/{id}"))?;
            }
        }
        if !self.check_links.a.is_empty() {
            let k = &self.check_links;
            let rows = tx
                .query(&check_links, &[&k.a, &k.b, &k.c])
                .map_err(db_err(context))?;
            for (i, expect) in self.check_link_expect.iter().enumerate() {
                let (t, q, f) = (k.a[i], k.b[i], k.c[i]);
                let found = rows
                    .iter()
                    .find(|r| {
                        r.get::<_, &str>(0) == t
                            && r.get::<_, &str>(1) == q
                            && r.get::<_, &str>(2) == f
                    })
                    .map(|r| from_sql(r.get(3), "a link revision"))
                    .transpose()?;
                check(*expect, found, || {
                    format!("the link {t} ({q}) with firstId {f}")
                })?;
            }
        }
        if !self.check_seconds.a.is_empty() {
            let k = &self.check_seconds;
            let rows = tx
                .query(&check_seconds, &[&k.a, &k.b, &k.c])
                .map_err(db_err(context))?;
            if let Some(r) = rows.first() {
                return Err(StoreError::Conflict(format!(
                    "the link {} ({}) with secondId {} already exists",
                    r.get::<_, &str>(0),
                    r.get::<_, &str>(1),
                    r.get::<_, &str>(2)
                )));
            }
        }
        let mut exec = |sql: &postgres::Statement, params: &[&(dyn ToSql + Sync)]| {
            tx.execute(sql, params).map(|_| ()).map_err(db_err(context))
        };
        let k = &self.delete_links;
        if !k.a.is_empty() {
            exec(&delete_links, &[&k.a, &k.b, &k.c])?;
        }
        let k = &self.delete_objects;
        if !k.a.is_empty() {
            exec(&delete_objects, &[&k.a, &k.b])?;
        }
        let x = &self.delete_index;
        if !x.ids.is_empty() {
            exec(&delete_index, &[&x.sets, &x.attrs, &x.terms, &x.ids])?;
        }
        let l = &self.insert_links;
        if !l.firsts.is_empty() {
            exec(
                &insert_links,
                &[&l.types, &l.qualifiers, &l.firsts, &l.seconds, &l.revs],
            )?;
        }
        for (rows, sql) in [
            (&self.insert_objects, &insert_objects),
            (&self.upsert_objects, &upsert_objects),
        ] {
            if !rows.ids.is_empty() {
                exec(sql, &[&rows.sets, &rows.ids, &rows.revs, &rows.bodies])?;
            }
        }
        let x = &self.insert_index;
        if !x.ids.is_empty() {
            exec(&insert_index, &[&x.sets, &x.attrs, &x.terms, &x.ids])?;
        }
        tx.commit().map_err(err)
    }
}

/// A precondition against what was found (a revision, or nothing).
fn check(expect: Expect, found: Option<u64>, what: impl Fn() -> String) -> Result<()> {
    match (expect, found) {
        (Expect::Absent, None) => Ok(()),
        (Expect::Rev(want), Some(have)) if want == have => Ok(()),
        (Expect::Absent, Some(_)) => {
            Err(StoreError::Conflict(format!("{} already exists", what())))
        }
        (Expect::Rev(want), Some(have)) => Err(StoreError::Conflict(format!(
            "{} is at revision {have}, expected {want}",
            what()
        ))),
        (Expect::Rev(_), None) => Err(StoreError::Conflict(format!("{} no longer exists", what()))),
    }
}

impl PgStore {
    /// Applies a batch in one transaction (see the module doc).
    pub fn apply(&self, batch: DataBatch) -> Result<()> {
        if batch.ops == 0 && batch.preconditions.is_empty() {
            return Ok(());
        }
        // A key expected twice means two writes of it in one batch: refused (as embedded).
        let mut expected: Vec<(u64, &[u8])> = batch
            .preconditions
            .iter()
            .map(|p| (p.hash, &p.key[..]))
            .collect();
        if let Some(key) = key_twice(&mut expected) {
            return Err(StoreError::Conflict(format!(
                "{} is written twice in one batch",
                keys::describe(key)
            )));
        }
        let plan = Plan::new(&batch)?;
        self.pool
            .with("writing objects and links", |c| plan.run(c))?;
        let inserted = plan.insert_links.firsts.len()
            + plan.insert_objects.ids.len()
            + plan.upsert_objects.ids.len()
            + plan.insert_index.ids.len();
        if let Some(_refreshing) = self.statistics.due(inserted as u64) {
            self.pool.with("refreshing the planner's statistics", |c| {
                c.client
                    .batch_execute(ANALYZE)
                    .map_err(db_err("refreshing the planner's statistics"))
            })?;
        }
        Ok(())
    }

    pub fn apply_entries(&self, batch: ItemBatch) -> Result<()> {
        self.apply_items(batch, UPSERT_ENTRIES, "writing association entries")
    }

    pub fn apply_audit(&self, batch: ItemBatch) -> Result<()> {
        self.apply_items(batch, UPSERT_AUDIT, "writing audit events")
    }

    fn apply_items(&self, batch: ItemBatch, sql: &'static str, context: &str) -> Result<()> {
        if batch.items.is_empty() {
            return Ok(());
        }
        let n = batch.items.len();
        let (mut seqs, mut items, mut values) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (seq, item, value) in &batch.items {
            seqs.push(to_sql(*seq, "a run number")?);
            items.push(to_sql(*item, "an item number")?);
            values.push(&value[..]);
        }
        self.pool.with(context, |c| {
            let st = c.statement(sql).map_err(db_err(context))?;
            c.client
                .execute(&st, &[&seqs, &items, &values])
                .map_err(db_err(context))?;
            Ok(())
        })
    }
}
