//! The shared coordinator: the `recond_nodes` and `recond_claims` tables of a PostgreSQL repository (schema:
//! `storage/pg/migrations/0002_cluster.sql`).
//!
//! Each operation is one statement (offering pages: one transaction), written against
//! `postgres::GenericClient`, so it runs on a plain client, a pooled one or inside a caller's
//! transaction alike. [`PgCoordinator`] borrows a connection of the repository's pool per call
//! (`Store::with_pg`) on a node whose store is the shared repository, or holds a client of its
//! own (tests of the SQL on a bare database).
//!
//! Why it is safe without advisory locks:
//! * a claim is `INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE <lease past or mine>
//!   RETURNING`: concurrent claimers of one key serialise on its row, and the one whose
//!   condition fails gets no row back;
//! * a page is taken with `SELECT ... FOR UPDATE SKIP LOCKED` inside the `UPDATE` that takes
//!   it: two claimers never wait on each other and never get the same page;
//! * leases are computed with the database's `now()`, so nodes' clocks do not matter.
//!
//! CockroachDB and YugabyteDB accept each of these forms (`ON CONFLICT ... DO UPDATE ...
//! WHERE`, `FOR UPDATE SKIP LOCKED`, `interval` arithmetic); that is from their documentation,
//! untested here (neither can be installed on the build machine).

use std::time::Duration;

use parking_lot::Mutex;
use postgres::GenericClient;

use super::{page_key, page_number, page_prefix, page_scope, spec_key, ClusterError, Page};

/// The schema this module needs (also applied by the repository's migrations 0002 and 0003).
pub const MIGRATIONS: [&str; 2] = [
    include_str!("../storage/pg/migrations/0002_cluster.sql"),
    include_str!("../storage/pg/migrations/0003_cluster_runs.sql"),
];

/// The scope of every clustered run's spec row.
const SPECS: &str = "specs";

/// A lease in milliseconds, as the statements take it.
fn ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// Says `node` is live for `ttl` from now.
pub fn heartbeat<C: GenericClient>(
    c: &mut C,
    node: &str,
    ttl: Duration,
) -> Result<(), ClusterError> {
    c.execute(
        "INSERT INTO recond_nodes (node_id, heartbeat_until) \
         VALUES ($1, now() + $2::bigint * interval '1 millisecond') \
         ON CONFLICT (node_id) DO UPDATE SET heartbeat_until = excluded.heartbeat_until",
        &[&node, &ms(ttl)],
    )
    .map_err(ClusterError::db(format!("heartbeat of node {node}")))?;
    Ok(())
}

/// The nodes whose heartbeat has not run out, sorted.
pub fn live_nodes<C: GenericClient>(c: &mut C) -> Result<Vec<String>, ClusterError> {
    let rows = c
        .query(
            "SELECT node_id FROM recond_nodes WHERE heartbeat_until >= now() ORDER BY node_id",
            &[],
        )
        .map_err(ClusterError::db("listing live nodes"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Claims `key` for `node`: true when `node` holds it now (it was free, its lease had run
/// out, or `node` already held it).
pub fn claim<C: GenericClient>(
    c: &mut C,
    key: &str,
    node: &str,
    ttl: Duration,
    payload: &str,
) -> Result<bool, ClusterError> {
    let rows = c
        .query(
            "INSERT INTO recond_claims AS c (key, node_id, lease_until, payload) \
             VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond', $4) \
             ON CONFLICT (key) DO UPDATE \
                SET node_id = excluded.node_id, lease_until = excluded.lease_until, \
                    payload = excluded.payload \
              WHERE NOT c.done AND (c.lease_until < now() OR c.node_id = excluded.node_id) \
             RETURNING c.node_id",
            &[&key, &node, &ms(ttl), &payload],
        )
        .map_err(ClusterError::db(format!("claiming {key}")))?;
    Ok(!rows.is_empty())
}

/// Extends `node`'s lease on `key`: false when `node` no longer holds it.
pub fn renew<C: GenericClient>(
    c: &mut C,
    key: &str,
    node: &str,
    ttl: Duration,
) -> Result<bool, ClusterError> {
    let n = c
        .execute(
            "UPDATE recond_claims SET lease_until = now() + $3::bigint * interval '1 millisecond' \
              WHERE key = $1 AND node_id = $2 AND NOT done",
            &[&key, &node, &ms(ttl)],
        )
        .map_err(ClusterError::db(format!("renewing {key}")))?;
    Ok(n == 1)
}

/// Gives `key` up: true when `node` held it.
pub fn release<C: GenericClient>(c: &mut C, key: &str, node: &str) -> Result<bool, ClusterError> {
    let n = c
        .execute(
            "DELETE FROM recond_claims WHERE key = $1 AND node_id = $2 AND NOT done",
            &[&key, &node],
        )
        .map_err(ClusterError::db(format!("releasing {key}")))?;
    Ok(n == 1)
}

/// Marks `key` done (never taken again): true when `node` held it.
pub fn complete<C: GenericClient>(c: &mut C, key: &str, node: &str) -> Result<bool, ClusterError> {
    mark_done(c, key, node, None)
}

/// Marks `key` done, its payload replaced by `payload` when given: true when `node` held it.
fn mark_done<C: GenericClient>(
    c: &mut C,
    key: &str,
    node: &str,
    payload: Option<&str>,
) -> Result<bool, ClusterError> {
    let n = c
        .execute(
            "UPDATE recond_claims SET done = true, lease_until = now(), \
                    payload = coalesce($3, payload) \
              WHERE key = $1 AND node_id = $2 AND NOT done",
            &[&key, &node, &payload],
        )
        .map_err(ClusterError::db(format!("completing {key}")))?;
    Ok(n == 1)
}

/// The holder of `key` and its payload while its lease runs.
pub fn holder<C: GenericClient>(
    c: &mut C,
    key: &str,
) -> Result<Option<(String, String)>, ClusterError> {
    let row = c
        .query_opt(
            "SELECT node_id, payload FROM recond_claims \
              WHERE key = $1 AND NOT done AND node_id IS NOT NULL AND lease_until >= now()",
            &[&key],
        )
        .map_err(ClusterError::db(format!("reading the holder of {key}")))?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Removes claims whose lease ended more than `older_than` ago (fired ticks, cancel requests,
/// claims of nodes long gone: none of them is held any more), so the table keeps the recent
/// ones only; returns how many went. Pages go with their run.
pub fn purge_done<C: GenericClient>(c: &mut C, older_than: Duration) -> Result<u64, ClusterError> {
    c.execute(
        "DELETE FROM recond_claims WHERE scope IS NULL \
            AND lease_until < now() - $1::bigint * interval '1 millisecond'",
        &[&ms(older_than)],
    )
    .map_err(ClusterError::db("removing old done claims"))
}

/// Offers a run's pages, in one transaction; pages already offered stay as they are.
pub fn offer_pages<C: GenericClient>(
    c: &mut C,
    run: &str,
    first: u64,
    payloads: &[String],
) -> Result<(), ClusterError> {
    let what = || format!("offering the pages of run {run}");
    let mut tx = c.transaction().map_err(ClusterError::db(what()))?;
    let insert = tx
        .prepare(
            "INSERT INTO recond_claims (key, node_id, lease_until, payload, scope) \
             VALUES ($1, NULL, now(), $2, $3) ON CONFLICT (key) DO NOTHING",
        )
        .map_err(ClusterError::db(what()))?;
    let scope = page_scope(run);
    for (i, p) in payloads.iter().enumerate() {
        tx.execute(&insert, &[&page_key(run, first + i as u64), p, &scope])
            .map_err(ClusterError::db(what()))?;
    }
    tx.commit().map_err(ClusterError::db(what()))
}

/// Takes the lowest page of `run` that nobody holds or whose lease ran out.
pub fn claim_page<C: GenericClient>(
    c: &mut C,
    run: &str,
    node: &str,
    ttl: Duration,
) -> Result<Option<Page>, ClusterError> {
    let row = c
        .query_opt(
            "UPDATE recond_claims SET node_id = $2, \
                    lease_until = now() + $3::bigint * interval '1 millisecond' \
              WHERE key = (SELECT key FROM recond_claims \
                            WHERE scope = $1 AND NOT done \
                              AND (node_id IS NULL OR lease_until < now()) \
                            ORDER BY key LIMIT 1 \
                            FOR UPDATE SKIP LOCKED) \
             RETURNING key, payload",
            &[&page_scope(run), &node, &ms(ttl)],
        )
        .map_err(ClusterError::db(format!("claiming a page of run {run}")))?;
    Ok(row.map(|r| {
        let key: String = r.get(0);
        Page {
            number: page_number(&key),
            key,
            payload: r.get(1),
        }
    }))
}

/// Puts a page back for any node to take at once: true when `node` held it.
pub fn release_page<C: GenericClient>(
    c: &mut C,
    key: &str,
    node: &str,
) -> Result<bool, ClusterError> {
    let n = c
        .execute(
            "UPDATE recond_claims SET node_id = NULL, lease_until = now() \
              WHERE key = $1 AND node_id = $2 AND NOT done",
            &[&key, &node],
        )
        .map_err(ClusterError::db(format!("putting back {key}")))?;
    Ok(n == 1)
}

/// Marks a page done with `result` in place of its ids: true when `node` held it.
pub fn complete_page<C: GenericClient>(
    c: &mut C,
    key: &str,
    node: &str,
    result: &str,
) -> Result<bool, ClusterError> {
    mark_done(c, key, node, Some(result))
}

/// The results of `run`'s completed pages, in page order.
pub fn page_results<C: GenericClient>(c: &mut C, run: &str) -> Result<Vec<String>, ClusterError> {
    let rows = c
        .query(
            "SELECT payload FROM recond_claims WHERE scope = $1 AND done \
                AND left(key, length($2)) = $2 ORDER BY key",
            &[&page_scope(run), &page_prefix(run)],
        )
        .map_err(ClusterError::db(format!(
            "reading the page results of run {run}"
        )))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Writes (over) the value at `key` in `run`'s scope: a done row, which no page claim takes
/// and which goes with the run's pages.
pub fn put_scoped<C: GenericClient>(
    c: &mut C,
    run: &str,
    key: &str,
    node: &str,
    value: &str,
) -> Result<(), ClusterError> {
    put_done_row(c, &page_scope(run), key, node, value)
}

/// Writes (over) a done row at `key` in `scope`: never a claim or a page, only a value.
fn put_done_row<C: GenericClient>(
    c: &mut C,
    scope: &str,
    key: &str,
    node: &str,
    value: &str,
) -> Result<(), ClusterError> {
    c.execute(
        "INSERT INTO recond_claims (key, node_id, lease_until, payload, scope, done) \
         VALUES ($1, $2, now(), $3, $4, true) \
         ON CONFLICT (key) DO UPDATE SET node_id = excluded.node_id, payload = excluded.payload",
        &[&key, &node, &value, &scope],
    )
    .map_err(ClusterError::db(format!("writing {key}")))?;
    Ok(())
}

/// The values in `run`'s scope whose keys start with `prefix`: (key, node, value), by key.
pub fn scoped<C: GenericClient>(
    c: &mut C,
    run: &str,
    prefix: &str,
) -> Result<Vec<(String, String, String)>, ClusterError> {
    let rows = c
        .query(
            "SELECT key, coalesce(node_id, ''), payload FROM recond_claims \
              WHERE scope = $1 AND done AND left(key, length($2)) = $2 ORDER BY key",
            &[&page_scope(run), &prefix],
        )
        .map_err(ClusterError::db(format!("reading {prefix}* of run {run}")))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Writes (over) the spec of a clustered run (key `spec_key`, scope `specs`).
pub fn put_spec<C: GenericClient>(
    c: &mut C,
    key: &str,
    node: &str,
    spec: &str,
) -> Result<(), ClusterError> {
    put_done_row(c, SPECS, key, node, spec)
}

/// The spec at `key`, if there.
pub fn spec<C: GenericClient>(c: &mut C, key: &str) -> Result<Option<String>, ClusterError> {
    let row = c
        .query_opt(
            "SELECT payload FROM recond_claims WHERE key = $1 AND scope = $2",
            &[&key, &SPECS],
        )
        .map_err(ClusterError::db(format!("reading {key}")))?;
    Ok(row.map(|r| r.get(0)))
}

/// The keys of every spec (one per clustered run in progress).
pub fn spec_keys<C: GenericClient>(c: &mut C) -> Result<Vec<String>, ClusterError> {
    let rows = c
        .query(
            "SELECT key FROM recond_claims WHERE scope = $1 ORDER BY key",
            &[&SPECS],
        )
        .map_err(ClusterError::db("listing the clustered runs"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// How many pages of `run` were offered, completed or not.
pub fn pages_offered<C: GenericClient>(c: &mut C, run: &str) -> Result<u64, ClusterError> {
    let row = c
        .query_one(
            "SELECT count(*) FROM recond_claims WHERE scope = $1 AND left(key, length($2)) = $2",
            &[&page_scope(run), &page_prefix(run)],
        )
        .map_err(ClusterError::db(format!("counting the pages of run {run}")))?;
    let n: i64 = row.get(0);
    Ok(n.max(0) as u64)
}

/// How many pages of `run` are not completed.
pub fn pages_left<C: GenericClient>(c: &mut C, run: &str) -> Result<u64, ClusterError> {
    let row = c
        .query_one(
            "SELECT count(*) FROM recond_claims WHERE scope = $1 AND NOT done",
            &[&page_scope(run)],
        )
        .map_err(ClusterError::db(format!("counting the pages of run {run}")))?;
    let n: i64 = row.get(0);
    Ok(n.max(0) as u64)
}

/// Removes every page of `run`, with its notes and its spec.
pub fn drop_pages<C: GenericClient>(c: &mut C, run: &str) -> Result<(), ClusterError> {
    c.execute(
        "DELETE FROM recond_claims WHERE scope = $1 OR key = $2",
        &[&page_scope(run), &spec_key(run)],
    )
    .map_err(ClusterError::db(format!("removing the pages of run {run}")))?;
    Ok(())
}

/// Where the shared coordinator's statements run.
enum Connection {
    /// The repository's pool (`[storage] backend = "postgres"`): each call borrows a pooled
    /// connection for its one statement (or transaction), off the async runtime.
    Repository(crate::storage::Store),
    /// One client of its own (tests of the SQL against a bare database); calls take turns.
    /// Always `Some` until the coordinator drops.
    Own(Mutex<Option<postgres::Client>>),
}

/// The shared coordinator.
///
/// With a client of its own, the blocking client runs a small runtime of its own, which tokio
/// refuses to start or drop on a thread inside an async context: connecting and dropping
/// happen on a thread of their own, so the coordinator may be built and dropped anywhere. Its
/// calls come from OS threads (runs, the lease thread) and `spawn_blocking` (requests, the
/// scheduler); the repository's pool moves off the runtime itself.
pub struct PgCoordinator {
    connection: Connection,
}

impl PgCoordinator {
    /// Connects to `url` (`postgres://...`), without TLS, on a client of its own.
    pub fn connect(url: &str) -> Result<PgCoordinator, ClusterError> {
        let url = url.to_string();
        std::thread::spawn(move || postgres::Client::connect(&url, postgres::NoTls))
            .join()
            // A panic there is one here, as if the thread were not needed.
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
            .map(PgCoordinator::new)
            .map_err(ClusterError::db("connecting to the repository"))
    }

    pub fn new(client: postgres::Client) -> PgCoordinator {
        PgCoordinator {
            connection: Connection::Own(Mutex::new(Some(client))),
        }
    }

    /// The coordinator of a node whose store is the shared PostgreSQL repository: its
    /// statements run on the repository's pool (its tables come with the repository's
    /// migration 0002).
    pub fn on_repository(store: crate::storage::Store) -> PgCoordinator {
        PgCoordinator {
            connection: Connection::Repository(store),
        }
    }

    /// Creates the tables when missing (what the repository's migration 0002 does).
    pub fn install_schema(&self) -> Result<(), ClusterError> {
        self.with(|c| {
            MIGRATIONS.iter().try_for_each(|m| {
                c.batch_execute(m)
                    .map_err(ClusterError::db("creating the cluster tables"))
            })
        })
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<R, ClusterError>,
    ) -> Result<R, ClusterError> {
        match &self.connection {
            Connection::Repository(store) => store
                .with_pg("coordinating with the other nodes", f)
                .map_err(ClusterError::Repository)?,
            Connection::Own(client) => {
                let mut client = client.lock();
                f(client
                    .as_mut()
                    .expect("the client is taken only when the coordinator drops"))
            }
        }
    }

    pub fn heartbeat(&self, node: &str, ttl: Duration) -> Result<(), ClusterError> {
        self.with(|c| heartbeat(c, node, ttl))
    }
    pub fn live_nodes(&self) -> Result<Vec<String>, ClusterError> {
        self.with(live_nodes)
    }
    pub fn claim(
        &self,
        key: &str,
        node: &str,
        ttl: Duration,
        payload: &str,
    ) -> Result<bool, ClusterError> {
        self.with(|c| claim(c, key, node, ttl, payload))
    }
    pub fn renew(&self, key: &str, node: &str, ttl: Duration) -> Result<bool, ClusterError> {
        self.with(|c| renew(c, key, node, ttl))
    }
    pub fn release(&self, key: &str, node: &str) -> Result<bool, ClusterError> {
        self.with(|c| release(c, key, node))
    }
    pub fn complete(&self, key: &str, node: &str) -> Result<bool, ClusterError> {
        self.with(|c| complete(c, key, node))
    }
    pub fn holder(&self, key: &str) -> Result<Option<(String, String)>, ClusterError> {
        self.with(|c| holder(c, key))
    }
    pub fn offer_pages(
        &self,
        run: &str,
        first: u64,
        payloads: &[String],
    ) -> Result<(), ClusterError> {
        self.with(|c| offer_pages(c, run, first, payloads))
    }
    pub fn claim_page(
        &self,
        run: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<Option<Page>, ClusterError> {
        self.with(|c| claim_page(c, run, node, ttl))
    }
    pub fn release_page(&self, key: &str, node: &str) -> Result<bool, ClusterError> {
        self.with(|c| release_page(c, key, node))
    }
    pub fn complete_page(&self, key: &str, node: &str, result: &str) -> Result<bool, ClusterError> {
        self.with(|c| complete_page(c, key, node, result))
    }
    pub fn page_results(&self, run: &str) -> Result<Vec<String>, ClusterError> {
        self.with(|c| page_results(c, run))
    }
    pub fn put_scoped(
        &self,
        run: &str,
        key: &str,
        node: &str,
        value: &str,
    ) -> Result<(), ClusterError> {
        self.with(|c| put_scoped(c, run, key, node, value))
    }
    pub fn scoped(
        &self,
        run: &str,
        prefix: &str,
    ) -> Result<Vec<(String, String, String)>, ClusterError> {
        self.with(|c| scoped(c, run, prefix))
    }
    pub fn put_spec(&self, key: &str, node: &str, spec_text: &str) -> Result<(), ClusterError> {
        self.with(|c| put_spec(c, key, node, spec_text))
    }
    pub fn spec(&self, key: &str) -> Result<Option<String>, ClusterError> {
        self.with(|c| spec(c, key))
    }
    pub fn spec_keys(&self) -> Result<Vec<String>, ClusterError> {
        self.with(spec_keys)
    }
    pub fn pages_offered(&self, run: &str) -> Result<u64, ClusterError> {
        self.with(|c| pages_offered(c, run))
    }
    pub fn pages_left(&self, run: &str) -> Result<u64, ClusterError> {
        self.with(|c| pages_left(c, run))
    }
    pub fn purge_done(&self, older_than: Duration) -> Result<u64, ClusterError> {
        self.with(|c| purge_done(c, older_than))
    }
    pub fn drop_pages(&self, run: &str) -> Result<(), ClusterError> {
        self.with(|c| drop_pages(c, run))
    }
}

impl Drop for PgCoordinator {
    fn drop(&mut self) {
        if let Connection::Own(client) = &mut self.connection {
            let Some(client) = client.get_mut().take() else {
                return;
            };
            // Off any async context (see the type's doc).
            let _ = std::thread::spawn(move || drop(client)).join();
        }
    }
}
