//! Coordination between recond nodes: node liveness and claims with leases, the one mechanism
//! behind "one active run per mapping cluster-wide", "a schedule fires once per tick" and "each
//! page of a clustered run is processed by one node at a time".
//!
//! [`Coordinator`] is a concrete type over two implementations:
//! * `Local` (`local.rs`): in-process maps under one mutex; what a single node needs, at the
//!   cost of a lock and a map operation per call. It is the default.
//! * `Postgres` (`pg.rs`): rows of the `recond_nodes` and `recond_claims` tables of a shared PostgreSQL
//!   repository (schema: `storage/pg/migrations/0002_cluster.sql`), written with plain
//!   statements that CockroachDB and YugabyteDB also run (no advisory locks).
//!
//! Semantics both implementations keep (the tests of each check them):
//! * a claim on a key succeeds when nobody holds it, its lease is past, or the caller already
//!   holds it (a renewal); it fails while another node's lease runs;
//! * a lease is renewed and released only by its holder; a completed (done) claim is never
//!   taken again;
//! * a run's pages are offered once, each taken by one claimer at a time, lowest page first;
//!   a page whose lease ran out is offered again (its node died or stalled); `pages_left`
//!   counts the pages not yet completed; a completed page keeps the result its node left
//!   (`page_results`) until the run's pages are dropped;
//! * a run's notes (its spec, each node's report) are plain values in the run's page scope:
//!   written over by their name, read by any node, dropped with the pages.
//!
//! Every call is blocking (PostgreSQL's client is): call from OS threads, never from an async
//! task.

mod local;
pub mod pg;

use std::sync::Arc;
use std::time::Duration;

pub use local::Local;
pub use pg::PgCoordinator;

/// A coordination failure: the shared database could not be reached or refused a statement.
/// The in-process implementation never fails.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster coordination: {what}: {source}")]
    Database {
        what: String,
        #[source]
        source: postgres::Error,
    },
    /// The repository could not lend a connection.
    #[error("cluster coordination: {0}")]
    Repository(#[source] crate::storage::StoreError),
}

impl ClusterError {
    pub(crate) fn db(what: impl Into<String>) -> impl FnOnce(postgres::Error) -> ClusterError {
        let what = what.into();
        move |source| ClusterError::Database { what, source }
    }
}

/// One page of a clustered run, as claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The claim key (`page_key(run, number)`).
    pub key: String,
    /// 0-based page number within the run.
    pub number: u64,
    /// What the run's starter put in it (the page's source ids, JSON).
    pub payload: String,
}

/// The claim key of a mapping's active run (one per mapping cluster-wide).
pub fn run_key(mapping: &str) -> String {
    format!("run/{mapping}")
}

/// The claim key of one firing of a schedule (`fire_ms`: the firing's time, ms since the
/// epoch), so each tick fires on one node.
pub fn firing_key(schedule: &str, fire_ms: i64) -> String {
    format!("fire/{schedule}/{fire_ms}")
}

/// The claim key of a request to cancel run `run` (made on a node that does not run it; the
/// running node polls for it).
pub fn cancel_key(run: &str) -> String {
    format!("cancel/{run}")
}

/// The scope that groups a run's pages.
pub fn page_scope(run: &str) -> String {
    format!("pages/{run}")
}

/// The claim key of page `number` of a run. Zero-padded, so keys sort in page order.
pub fn page_key(run: &str, number: u64) -> String {
    format!("{}{number:010}", page_prefix(run))
}

/// What every page key of `run` starts with.
fn page_prefix(run: &str) -> String {
    format!("page/{run}/")
}

/// The claim key of note `name` of a clustered run (kept in the run's page scope, done, so
/// no page claim ever takes it and it goes with the pages).
pub fn note_key(run: &str, name: &str) -> String {
    format!("note/{run}/{name}")
}

/// The key prefix of a clustered run's spec: the runs with one are the clustered runs in
/// progress (`Coordinator::clustered_runs`).
const SPEC_PREFIX: &str = "spec/";

/// The key of a clustered run's spec (what a joining node needs to work on its pages).
pub fn spec_key(run: &str) -> String {
    format!("{SPEC_PREFIX}{run}")
}

/// The page number at the end of a page key.
fn page_number(key: &str) -> u64 {
    key.rsplit_once('/')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

/// The coordination of this node with the others (or with itself, on one node).
pub enum Coordinator {
    Local(Local),
    Postgres(PgCoordinator),
}

impl Coordinator {
    /// The single-node coordinator.
    pub fn in_process() -> Coordinator {
        Coordinator::Local(Local::default())
    }

    /// Whether other nodes can see this node's claims (a shared repository).
    pub fn is_shared(&self) -> bool {
        matches!(self, Coordinator::Postgres(_))
    }

    /// Says `node` is live for `ttl` from now.
    pub fn heartbeat(&self, node: &str, ttl: Duration) -> Result<(), ClusterError> {
        match self {
            Coordinator::Local(l) => {
                l.heartbeat(node, ttl);
                Ok(())
            }
            Coordinator::Postgres(p) => p.heartbeat(node, ttl),
        }
    }

    /// The nodes whose heartbeat has not run out, sorted.
    pub fn live_nodes(&self) -> Result<Vec<String>, ClusterError> {
        match self {
            Coordinator::Local(l) => Ok(l.live_nodes()),
            Coordinator::Postgres(p) => p.live_nodes(),
        }
    }

    /// Claims `key` for `node` for `ttl`, carrying `payload`: true when `node` holds it now.
    pub fn claim(
        &self,
        key: &str,
        node: &str,
        ttl: Duration,
        payload: &str,
    ) -> Result<bool, ClusterError> {
        match self {
            Coordinator::Local(l) => Ok(l.claim(key, node, ttl, payload)),
            Coordinator::Postgres(p) => p.claim(key, node, ttl, payload),
        }
    }

    /// Extends `node`'s lease on `key` to `ttl` from now: false when `node` no longer holds
    /// it (another node took it after the lease ran out, or it was completed).
    pub fn renew(&self, key: &str, node: &str, ttl: Duration) -> Result<bool, ClusterError> {
        match self {
            Coordinator::Local(l) => Ok(l.renew(key, node, ttl)),
            Coordinator::Postgres(p) => p.renew(key, node, ttl),
        }
    }

    /// Gives `key` up (only its holder can): true when `node` held it.
    pub fn release(&self, key: &str, node: &str) -> Result<bool, ClusterError> {
        match self {
            Coordinator::Local(l) => Ok(l.release(key, node)),
            Coordinator::Postgres(p) => p.release(key, node),
        }
    }

    /// Marks `key` done (only its holder can): nobody takes it again. True when `node` held
    /// it.
    pub fn complete(&self, key: &str, node: &str) -> Result<bool, ClusterError> {
        match self {
            Coordinator::Local(l) => Ok(l.complete(key, node)),
            Coordinator::Postgres(p) => p.complete(key, node),
        }
    }

    /// The holder of `key` and its payload, while its lease runs and it is not done.
    pub fn holder(&self, key: &str) -> Result<Option<(String, String)>, ClusterError> {
        match self {
            Coordinator::Local(l) => Ok(l.holder(key)),
            Coordinator::Postgres(p) => p.holder(key),
        }
    }

    /// Removes claims whose lease ended more than `older_than` ago: fired ticks, cancel
    /// requests, claims of nodes long gone (the in-process coordinator prunes as it grows, so
    /// there it does nothing).
    pub fn purge_done(&self, older_than: Duration) -> Result<u64, ClusterError> {
        match self {
            Coordinator::Local(_) => Ok(0),
            Coordinator::Postgres(p) => p.purge_done(older_than),
        }
    }

    /// Offers pages of `run`: page `first + i` carries `payloads[i]` (a run's pages may be
    /// offered in several calls, as its source is read). Offering again is harmless: pages
    /// already there are kept as they are.
    pub fn offer_pages(
        &self,
        run: &str,
        first: u64,
        payloads: &[String],
    ) -> Result<(), ClusterError> {
        match self {
            Coordinator::Local(l) => {
                l.offer_pages(run, first, payloads);
                Ok(())
            }
            Coordinator::Postgres(p) => p.offer_pages(run, first, payloads),
        }
    }

    /// Takes the lowest page of `run` that nobody holds (or whose lease ran out) for `node`.
    pub fn claim_page(
        &self,
        run: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<Option<Page>, ClusterError> {
        match self {
            Coordinator::Local(l) => Ok(l.claim_page(run, node, ttl)),
            Coordinator::Postgres(p) => p.claim_page(run, node, ttl),
        }
    }

    /// Extends `node`'s lease on a page: false when it lost the page.
    pub fn renew_page(
        &self,
        run: &str,
        page: &Page,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, ClusterError> {
        match self {
            Coordinator::Local(l) => Ok(l.renew_page(run, &page.key, node, ttl)),
            Coordinator::Postgres(p) => p.renew(&page.key, node, ttl),
        }
    }

    /// Marks a page processed, leaving `result` in its place (what the run's owner needs of
    /// it once every page is done): false when `node` had lost it (another node redoes it).
    pub fn complete_page(
        &self,
        run: &str,
        page: &Page,
        node: &str,
        result: &str,
    ) -> Result<bool, ClusterError> {
        match self {
            Coordinator::Local(l) => Ok(l.complete_page(run, &page.key, node, result)),
            Coordinator::Postgres(p) => p.complete_page(&page.key, node, result),
        }
    }

    /// The results of `run`'s completed pages, in page order.
    pub fn page_results(&self, run: &str) -> Result<Vec<String>, ClusterError> {
        match self {
            Coordinator::Local(l) => Ok(l.page_results(run)),
            Coordinator::Postgres(p) => p.page_results(run),
        }
    }

    /// Writes (or writes over) note `name` of `run`, as `node`.
    pub fn put_note(
        &self,
        run: &str,
        name: &str,
        node: &str,
        value: &str,
    ) -> Result<(), ClusterError> {
        self.put_scoped(run, &note_key(run, name), node, value)
    }

    /// The notes of `run` whose names start with `prefix`: (name, node, value), by name.
    pub fn notes(
        &self,
        run: &str,
        prefix: &str,
    ) -> Result<Vec<(String, String, String)>, ClusterError> {
        let start = note_key(run, prefix);
        let strip = note_key(run, "").len();
        let rows = match self {
            Coordinator::Local(l) => l.scoped(run, &start),
            Coordinator::Postgres(p) => p.scoped(run, &start)?,
        };
        Ok(rows
            .into_iter()
            .map(|(key, node, value)| (key[strip..].to_string(), node, value))
            .collect())
    }

    /// Writes the spec of clustered run `run` (before its pages are offered); it goes with
    /// the run's pages.
    pub fn put_spec(&self, run: &str, node: &str, spec: &str) -> Result<(), ClusterError> {
        match self {
            Coordinator::Local(l) => {
                l.put_scoped(run, &spec_key(run), node, spec);
                Ok(())
            }
            Coordinator::Postgres(p) => p.put_spec(&spec_key(run), node, spec),
        }
    }

    /// The spec of clustered run `run`, while its pages are there.
    pub fn spec(&self, run: &str) -> Result<Option<String>, ClusterError> {
        let key = spec_key(run);
        match self {
            Coordinator::Local(l) => Ok(l
                .scoped(run, &key)
                .into_iter()
                .find(|(k, _, _)| *k == key)
                .map(|(_, _, v)| v)),
            Coordinator::Postgres(p) => p.spec(&key),
        }
    }

    /// The ids of the clustered runs whose spec is there (offered, not over yet).
    pub fn clustered_runs(&self) -> Result<Vec<String>, ClusterError> {
        let keys = match self {
            Coordinator::Local(l) => l.keys_with_prefix(SPEC_PREFIX),
            Coordinator::Postgres(p) => p.spec_keys()?,
        };
        Ok(keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(SPEC_PREFIX).map(str::to_string))
            .collect())
    }

    fn put_scoped(
        &self,
        run: &str,
        key: &str,
        node: &str,
        value: &str,
    ) -> Result<(), ClusterError> {
        match self {
            Coordinator::Local(l) => {
                l.put_scoped(run, key, node, value);
                Ok(())
            }
            Coordinator::Postgres(p) => p.put_scoped(run, key, node, value),
        }
    }

    /// Puts a page back unprocessed (a cancelled run), for any node to take at once.
    pub fn release_page(&self, run: &str, page: &Page, node: &str) -> Result<bool, ClusterError> {
        match self {
            Coordinator::Local(l) => Ok(l.release_page(run, &page.key, node)),
            Coordinator::Postgres(p) => p.release_page(&page.key, node),
        }
    }

    /// How many pages of `run` were offered (completed or not): the next page's number, since
    /// pages are offered in order from 0.
    pub fn pages_offered(&self, run: &str) -> Result<u64, ClusterError> {
        match self {
            Coordinator::Local(l) => Ok(l.pages_offered(run)),
            Coordinator::Postgres(p) => p.pages_offered(run),
        }
    }

    /// How many pages of `run` are not completed yet.
    pub fn pages_left(&self, run: &str) -> Result<u64, ClusterError> {
        match self {
            Coordinator::Local(l) => Ok(l.pages_left(run)),
            Coordinator::Postgres(p) => p.pages_left(run),
        }
    }

    /// Removes every page of `run` (the run ended).
    pub fn drop_pages(&self, run: &str) -> Result<(), ClusterError> {
        match self {
            Coordinator::Local(l) => {
                l.drop_pages(run);
                Ok(())
            }
            Coordinator::Postgres(p) => p.drop_pages(run),
        }
    }
}

/// How long a firing's claim is held before it is marked done. A firing is claimed and
/// completed at once (a node that fails between the two leaves the tick unfired, as a node
/// dying just before its launch would); the lease only bounds that gap.
const FIRING_LEASE: Duration = Duration::from_secs(600);

/// The scheduler's firing claims over the coordinator: one node fires each tick.
pub struct FiringClaimer {
    pub coordinator: Arc<Coordinator>,
    pub node: String,
}

impl crate::scheduler::FiringClaims for FiringClaimer {
    fn claim_firing(&self, name: &str, fire_time: i64) -> bool {
        let key = firing_key(name, fire_time.saturating_mul(1000));
        let claimed = self
            .coordinator
            .claim(&key, &self.node, FIRING_LEASE, "")
            .and_then(|mine| Ok(mine && self.coordinator.complete(&key, &self.node)?));
        match claimed {
            Ok(mine) => mine,
            Err(e) => {
                // Without the repository no run could start anyway: skip rather than risk a
                // second firing.
                tracing::error!(schedule = name, error = %e, "cannot claim a firing; skipped");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_per_kind_and_pages_sort_in_order() {
        assert_ne!(run_key("m"), firing_key("m", 0));
        assert_ne!(run_key("m"), cancel_key("m"));
        assert!(!note_key("r", "spec").starts_with("page/"));
        assert_ne!(spec_key("r"), note_key("r", "spec"));
        assert!(page_key("r", 9) < page_key("r", 10));
        assert_eq!(page_number(&page_key("r-1", 123)), 123);
        assert!(!page_key("r", 1).starts_with(&page_scope("r")));
    }
}
