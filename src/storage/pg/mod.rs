//! The PostgreSQL repository: the same records as the embedded store, in a relational schema
//! several recond nodes share (`migrations/`).
//!
//! * `apply` writes a [`DataBatch`] in one transaction: preconditions checked on rows locked
//!   `FOR UPDATE`, then deletes, then inserts, each kind one statement over arrays (`UNNEST`),
//!   so a batch of hundreds of objects is a handful of round trips. A failed precondition or
//!   a unique violation (SQLSTATE 23505: a second link for a source or target, an object
//!   created twice) is [`StoreError::Conflict`] and the transaction is rolled back: nothing
//!   of the batch is written. A target and its link commit together (crash safety).
//! * Scans page by key (`ORDER BY key LIMIT n`), never loading a whole set, and run the
//!   caller's callback between pages with no connection held.
//! * `flush` is a no-op (a commit is durable); numbers come from the `recond_ids` sequence.
//!
//! Files: `pool` (connections, off the async runtime), `migrate` (versioned schema), `apply`
//! (the write discipline), `reads` (objects, index, links), `runs` (runs, entries, audit,
//! meta, liveSync tokens and the `sync` audit topic).

mod apply;
mod migrate;
mod pool;
mod reads;
mod runs;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use postgres::error::SqlState;

use crate::connectors::sql::config::PgTarget;

use super::{Result, StoreError};

/// Rows fetched per page of a scan.
const PAGE: i64 = 1000;

/// The PostgreSQL repository. Cheap to clone.
#[derive(Clone)]
pub(in crate::storage) struct PgStore {
    pool: Arc<pool::Pool>,
    /// `sync` audit appends by this process since its last trim.
    sync_appends: Arc<AtomicU64>,
    /// When to refresh the planner's statistics of the data tables (see `apply::Statistics`).
    statistics: Arc<apply::Statistics>,
}

/// Reads `[storage] url` (no IO).
pub(in crate::storage) fn parse_url(url: &str) -> std::result::Result<PgTarget, String> {
    crate::connectors::sql::config::parse_postgres_uri(url)
        .map_err(|e| format!("[storage] url: {e}"))
}

/// A database error while doing `context`: a unique violation, serialization failure or
/// deadlock is a [`StoreError::Conflict`] (the caller re-reads and retries), anything else
/// [`StoreError::Database`].
pub(super) fn db_err(context: &str) -> impl FnOnce(postgres::Error) -> StoreError + '_ {
    move |e| {
        let message = crate::connectors::sql::pg::describe(&e);
        match e.code() {
            Some(c)
                if *c == SqlState::UNIQUE_VIOLATION
                    || *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                StoreError::Conflict(format!("{context}: {message}"))
            }
            _ => StoreError::Database {
                context: context.to_string(),
                message,
            },
        }
    }
}

/// A number as PostgreSQL's BIGINT (recond's numbers never reach 2^63).
pub(super) fn to_sql(n: u64, what: &str) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::Codec(format!("{what} {n} is beyond 2^63")))
}

/// A BIGINT read back as recond's number.
pub(super) fn from_sql(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::Codec(format!("{what} {n} is negative")))
}

impl PgStore {
    /// Connects and brings the schema to this build's version.
    pub(in crate::storage) fn open(url: &str, pool_size: u32) -> Result<PgStore> {
        let target = parse_url(url).map_err(StoreError::Schema)?;
        let pool = pool::Pool::new(target, pool_size);
        let context = format!("opening the repository at {}", pool.describe());
        pool.with(&context, |c| migrate::migrate(&mut c.client))?;
        Ok(PgStore {
            pool: Arc::new(pool),
            sync_appends: Arc::default(),
            statistics: Arc::default(),
        })
    }

    /// Runs `f` on a pooled connection (see `Store::with_pg`).
    pub fn with_client<T, E>(
        &self,
        context: &str,
        f: impl FnOnce(&mut postgres::Client) -> std::result::Result<T, E>,
    ) -> Result<std::result::Result<T, E>> {
        self.pool.with(context, |c| Ok(f(&mut c.client)))
    }

    /// Nothing to do: every commit is durable.
    pub fn flush(&self) -> Result<usize> {
        Ok(0)
    }

    /// The tables' size on disk (with their indexes and TOAST), or 0 if it cannot be read.
    pub fn size_on_disk(&self) -> u64 {
        const SQL: &str =
            "SELECT COALESCE(SUM(pg_total_relation_size(to_regclass(t))), 0)::BIGINT \
                           FROM UNNEST($1::TEXT[]) AS t";
        let tables = migrate::TABLES;
        self.pool
            .with("reading the repository's size", |c| {
                let st = c.statement(SQL).map_err(db_err("reading the size"))?;
                let row = c
                    .client
                    .query_one(&st, &[&tables])
                    .map_err(db_err("reading the size"))?;
                Ok(row.get::<_, i64>(0))
            })
            .map(|n| u64::try_from(n).unwrap_or(0))
            .unwrap_or(0)
    }

    /// A unique, increasing number (the `recond_ids` sequence).
    pub fn next_id(&self) -> Result<u64> {
        const SQL: &str = "SELECT nextval('recond_ids')";
        let context = "generating an id";
        self.pool.with(context, |c| {
            let st = c.statement(SQL).map_err(db_err(context))?;
            let row = c.client.query_one(&st, &[]).map_err(db_err(context))?;
            from_sql(row.get(0), "an id")
        })
    }
}
