//! Run records, purge markers and reclaiming, association entries and audit events; named
//! state (`meta`); liveSync tokens and the `sync` audit topic (the newest `SYNC_AUDIT_KEEP`
//! kept). Records are stored through `storage::codec`.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use super::{db_err, from_sql, to_sql, PgStore, PAGE};
use crate::storage::records::{EntryRecord, RunRecord, SyncTokenRecord};
use crate::storage::{codec, Result, StoreError, SYNC_AUDIT_KEEP, SYNC_AUDIT_TRIM_EVERY};

const PUT_RUN: &str = "INSERT INTO recond_runs (seq, run_id, mapping, completed, record) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO UPDATE SET run_id = EXCLUDED.run_id, \
     mapping = EXCLUDED.mapping, completed = EXCLUDED.completed, record = EXCLUDED.record";
const GET_RUN: &str = "SELECT record FROM recond_runs WHERE seq = $1";
const RUNS_AFTER: &str = "SELECT seq, record FROM recond_runs WHERE seq > $1 ORDER BY seq LIMIT $2";
const DELETE_RUN: &str = "DELETE FROM recond_runs WHERE seq = $1";
const ADD_PURGE: &str = "INSERT INTO recond_purges (seq) VALUES ($1) ON CONFLICT DO NOTHING";
const PURGES: &str = "SELECT seq FROM recond_purges ORDER BY seq";
const DELETE_PURGE: &str = "DELETE FROM recond_purges WHERE seq = $1";
const RECLAIM_ENTRIES: &str = "DELETE FROM recond_entries WHERE seq = $1 AND item IN \
     (SELECT item FROM recond_entries WHERE seq = $1 ORDER BY item LIMIT 5000)";
const RECLAIM_AUDIT: &str = "DELETE FROM recond_audit WHERE seq = $1 AND item IN \
     (SELECT item FROM recond_audit WHERE seq = $1 ORDER BY item LIMIT 5000)";
const GET_ENTRY: &str = "SELECT record FROM recond_entries WHERE seq = $1 AND item = $2";
const ENTRIES_AFTER: &str = "SELECT item, record FROM recond_entries WHERE seq = $1 \
     AND item > $2 ORDER BY item LIMIT $3";
const AUDIT_OF_RUN: &str = "SELECT seq, item, record FROM recond_audit WHERE seq = $1 \
     AND item > $2 ORDER BY item LIMIT $3";
const AUDIT_ALL: &str = "SELECT seq, item, record FROM recond_audit WHERE (seq, item) > ($1, $2) \
     ORDER BY seq, item LIMIT $3";
const PUT_META: &str = "INSERT INTO recond_meta (name, value) VALUES ($1, $2) \
     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value";
const GET_META: &str = "SELECT value FROM recond_meta WHERE name = $1";
const GET_TOKEN: &str = "SELECT token, rev, updated_ms FROM recond_sync_tokens WHERE set_name = $1";
const PUT_TOKEN: &str = "INSERT INTO recond_sync_tokens (set_name, token, rev, updated_ms) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (set_name) DO UPDATE SET token = EXCLUDED.token, \
     rev = EXCLUDED.rev, updated_ms = EXCLUDED.updated_ms";
const NEXT_IDS: &str = "SELECT nextval('recond_ids') FROM generate_series(1, $1::BIGINT)";
const APPEND_SYNC: &str = "INSERT INTO recond_sync_audit (no, event) \
     SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[])";
const TRIM_SYNC: &str = "DELETE FROM recond_sync_audit WHERE no <= \
     (SELECT no FROM recond_sync_audit ORDER BY no DESC OFFSET $1 LIMIT 1)";
const SYNC_AFTER: &str =
    "SELECT no, event FROM recond_sync_audit WHERE no > $1 ORDER BY no LIMIT $2";

/// The number a scan continues after (-1: from the start; items and events start at 0), or
/// None when nothing can come after it (a number beyond BIGINT, as the embedded store
/// answers nothing after `u64::MAX`).
fn start(after: Option<u64>) -> Option<i64> {
    match after {
        Some(a) => i64::try_from(a).ok(),
        None => Some(-1),
    }
}

fn json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Codec(e.to_string()))
}

impl PgStore {
    pub fn put_run(&self, run: &RunRecord) -> Result<()> {
        let record = codec::encode(run)?;
        self.execute(
            "writing a run record",
            PUT_RUN,
            &[
                &to_sql(run.seq, "a run number")?,
                &run.id,
                &run.mapping,
                &run.completed,
                &record,
            ],
        )
        .map(|_| ())
    }

    pub fn get_run(&self, seq: u64) -> Result<Option<RunRecord>> {
        let rows = self.query(
            "reading a run record",
            GET_RUN,
            &[&to_sql(seq, "a run number")?],
        )?;
        rows.first()
            .map(|r| codec::decode(r.get::<_, &[u8]>(0)))
            .transpose()
    }

    pub fn scan_runs(&self, f: &mut dyn FnMut(RunRecord) -> ControlFlow<()>) -> Result<()> {
        let mut after = -1i64;
        loop {
            let rows = self.query("listing runs", RUNS_AFTER, &[&after, &PAGE])?;
            for r in &rows {
                after = r.get(0);
                if f(codec::decode(r.get::<_, &[u8]>(1))?).is_break() {
                    return Ok(());
                }
            }
            if (rows.len() as i64) < PAGE {
                return Ok(());
            }
        }
    }

    /// Removes the run record and leaves its purge marker, in one transaction.
    pub fn remove_run(&self, seq: u64) -> Result<()> {
        let seq = to_sql(seq, "a run number")?;
        let context = "removing a run";
        self.pool.with(context, |c| {
            let delete = c.statement(DELETE_RUN).map_err(db_err(context))?;
            let purge = c.statement(ADD_PURGE).map_err(db_err(context))?;
            let mut tx = c.client.transaction().map_err(db_err(context))?;
            tx.execute(&delete, &[&seq]).map_err(db_err(context))?;
            tx.execute(&purge, &[&seq]).map_err(db_err(context))?;
            tx.commit().map_err(db_err(context))
        })
    }

    pub fn pending_purges(&self) -> Result<Vec<u64>> {
        let rows = self.query("listing purges", PURGES, &[])?;
        rows.iter()
            .map(|r| from_sql(r.get(0), "a run number"))
            .collect()
    }

    pub fn reclaim(&self, seq: u64, keep_going: &dyn Fn() -> bool) -> Result<bool> {
        let seq = to_sql(seq, "a run number")?;
        for sql in [RECLAIM_ENTRIES, RECLAIM_AUDIT] {
            loop {
                if !keep_going() {
                    return Ok(false);
                }
                if self.execute("reclaiming entries", sql, &[&seq])? == 0 {
                    break;
                }
            }
        }
        self.execute("clearing a purge marker", DELETE_PURGE, &[&seq])?;
        Ok(true)
    }

    pub fn get_entry(&self, seq: u64, item: u64) -> Result<Option<EntryRecord>> {
        let rows = self.query(
            "reading an entry",
            GET_ENTRY,
            &[
                &to_sql(seq, "a run number")?,
                &to_sql(item, "an item number")?,
            ],
        )?;
        rows.first()
            .map(|r| codec::decode_entry(r.get::<_, &[u8]>(0)))
            .transpose()
    }

    pub fn scan_entries(
        &self,
        seq: u64,
        after: Option<u64>,
        f: &mut dyn FnMut(u64, EntryRecord) -> ControlFlow<()>,
    ) -> Result<()> {
        let seq = to_sql(seq, "a run number")?;
        let Some(mut after) = start(after) else {
            return Ok(());
        };
        loop {
            let rows = self.query("scanning entries", ENTRIES_AFTER, &[&seq, &after, &PAGE])?;
            for r in &rows {
                after = r.get(0);
                let entry = codec::decode_entry(r.get::<_, &[u8]>(1))?;
                if f(from_sql(after, "an item number")?, entry).is_break() {
                    return Ok(());
                }
            }
            if (rows.len() as i64) < PAGE {
                return Ok(());
            }
        }
    }

    pub fn scan_audit(
        &self,
        seq: Option<u64>,
        f: &mut dyn FnMut(serde_json::Value) -> ControlFlow<()>,
    ) -> Result<()> {
        let one = seq.map(|s| to_sql(s, "a run number")).transpose()?;
        let (mut at_seq, mut at_item) = (one.unwrap_or(-1), -1i64);
        loop {
            let rows = match one {
                Some(s) => self.query(
                    "scanning audit events",
                    AUDIT_OF_RUN,
                    &[&s, &at_item, &PAGE],
                )?,
                None => self.query(
                    "scanning audit events",
                    AUDIT_ALL,
                    &[&at_seq, &at_item, &PAGE],
                )?,
            };
            for r in &rows {
                (at_seq, at_item) = (r.get(0), r.get(1));
                let text: String = codec::decode(r.get::<_, &[u8]>(2))?;
                if f(json(&text)?).is_break() {
                    return Ok(());
                }
            }
            if (rows.len() as i64) < PAGE {
                return Ok(());
            }
        }
    }

    pub fn put_meta(&self, name: &str, value: Vec<u8>) -> Result<()> {
        self.execute("writing state", PUT_META, &[&name, &value])
            .map(|_| ())
    }

    pub fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let rows = self.query("reading state", GET_META, &[&name])?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    pub fn get_sync_token(&self, set: &str) -> Result<Option<SyncTokenRecord>> {
        let rows = self.query("reading a liveSync token", GET_TOKEN, &[&set])?;
        rows.first()
            .map(|r| {
                Ok(SyncTokenRecord {
                    token: r.get(0),
                    rev: from_sql(r.get(1), "a token revision")?,
                    updated_ms: r.get(2),
                })
            })
            .transpose()
    }

    /// Writes the token; durable once committed.
    pub fn put_sync_token(&self, set: &str, record: &SyncTokenRecord) -> Result<()> {
        self.execute(
            "writing a liveSync token",
            PUT_TOKEN,
            &[
                &set,
                &record.token,
                &to_sql(record.rev, "a token revision")?,
                &record.updated_ms,
            ],
        )
        .map(|_| ())
    }

    /// Appends events numbered from the `recond_ids` sequence, in order.
    pub fn append_sync_audit(&self, events: &[serde_json::Value]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let texts = events
            .iter()
            .map(|e| serde_json::to_string(e).map_err(|e| StoreError::Codec(e.to_string())))
            .collect::<Result<Vec<String>>>()?;
        let n =
            i64::try_from(events.len()).map_err(|_| StoreError::Codec("too many events".into()))?;
        let context = "writing sync audit events";
        self.pool.with(context, |c| {
            let ids = c.statement(NEXT_IDS).map_err(db_err(context))?;
            let append = c.statement(APPEND_SYNC).map_err(db_err(context))?;
            let mut numbers: Vec<i64> = c
                .client
                .query(&ids, &[&n])
                .map_err(db_err(context))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            numbers.sort_unstable();
            c.client
                .execute(&append, &[&numbers, &texts])
                .map_err(db_err(context))
        })?;
        let n = events.len() as u64;
        let before = self.sync_appends.fetch_add(n, Ordering::Relaxed);
        if before / SYNC_AUDIT_TRIM_EVERY != (before + n) / SYNC_AUDIT_TRIM_EVERY {
            self.trim_sync_audit(SYNC_AUDIT_KEEP)?;
        }
        Ok(())
    }

    /// Removes the oldest `sync` audit events beyond the newest `keep`.
    pub fn trim_sync_audit(&self, keep: u64) -> Result<()> {
        self.execute(
            "trimming sync audit events",
            TRIM_SYNC,
            &[&to_sql(keep, "a count")?],
        )
        .map(|_| ())
    }

    pub fn scan_sync_audit(
        &self,
        after: Option<u64>,
        f: &mut dyn FnMut(u64, serde_json::Value) -> ControlFlow<()>,
    ) -> Result<()> {
        let Some(mut after) = start(after) else {
            return Ok(());
        };
        loop {
            let rows = self.query("scanning sync audit events", SYNC_AFTER, &[&after, &PAGE])?;
            for r in &rows {
                after = r.get(0);
                let event = json(r.get(1))?;
                if f(from_sql(after, "an event number")?, event).is_break() {
                    return Ok(());
                }
            }
            if (rows.len() as i64) < PAGE {
                return Ok(());
            }
        }
    }
}
