//! The in-process coordinator: what one node needs, as maps under one mutex.
//!
//! It keeps the semantics of the shared implementation (see the module doc of `cluster`), so
//! the runner's clustered path behaves the same on one node as on several. Leases use the
//! monotonic clock. Claims that ended (expired or done) are pruned as the map grows, so a
//! schedule's firings (one key per tick) do not pile up.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{page_key, page_number, Page};

#[derive(Debug, Clone)]
struct Claim {
    /// None: an offered page nobody took yet.
    node: Option<String>,
    until: Instant,
    payload: String,
    done: bool,
}

impl Claim {
    /// Whether `node` may take it now.
    fn takeable_by(&self, node: &str, now: Instant) -> bool {
        !self.done
            && (self.node.is_none() || self.until < now || self.node.as_deref() == Some(node))
    }

    fn held_by(&self, node: &str) -> bool {
        !self.done && self.node.as_deref() == Some(node)
    }
}

#[derive(Default)]
struct State {
    nodes: HashMap<String, Instant>,
    claims: HashMap<String, Claim>,
    /// Size of `claims` after the last prune (it prunes again at twice that).
    pruned_at: usize,
    /// Pages per run id, in page order.
    pages: HashMap<String, BTreeMap<String, Claim>>,
    /// A run's notes and spec per run id: key → (node, value); dropped with its pages.
    scoped: HashMap<String, BTreeMap<String, (String, String)>>,
}

/// The in-process coordinator.
#[derive(Default)]
pub struct Local {
    state: Mutex<State>,
    /// Added to the clock (tests move time forward instead of sleeping).
    skew: Mutex<Duration>,
}

/// Claims kept before the first prune.
const PRUNE_FLOOR: usize = 64;

impl Local {
    fn now(&self) -> Instant {
        Instant::now() + *self.skew.lock()
    }

    /// Test-only: moves this coordinator's clock forward.
    #[cfg(test)]
    pub(crate) fn advance(&self, by: Duration) {
        *self.skew.lock() += by;
    }

    pub(super) fn heartbeat(&self, node: &str, ttl: Duration) {
        let until = self.now() + ttl;
        self.state.lock().nodes.insert(node.to_string(), until);
    }

    pub(super) fn live_nodes(&self) -> Vec<String> {
        let now = self.now();
        let mut live: Vec<String> = self
            .state
            .lock()
            .nodes
            .iter()
            .filter(|(_, until)| **until >= now)
            .map(|(n, _)| n.clone())
            .collect();
        live.sort();
        live
    }

    pub(super) fn claim(&self, key: &str, node: &str, ttl: Duration, payload: &str) -> bool {
        let now = self.now();
        let mut s = self.state.lock();
        if s.claims.len() >= (2 * s.pruned_at).max(PRUNE_FLOOR) {
            s.claims.retain(|_, c| !c.done && c.until >= now);
            s.pruned_at = s.claims.len();
        }
        let fresh = Claim {
            node: Some(node.to_string()),
            until: now + ttl,
            payload: payload.to_string(),
            done: false,
        };
        match s.claims.get_mut(key) {
            Some(c) if !c.takeable_by(node, now) => false,
            Some(c) => {
                *c = fresh;
                true
            }
            None => {
                s.claims.insert(key.to_string(), fresh);
                true
            }
        }
    }

    pub(super) fn renew(&self, key: &str, node: &str, ttl: Duration) -> bool {
        let until = self.now() + ttl;
        match self.state.lock().claims.get_mut(key) {
            Some(c) if c.held_by(node) => {
                c.until = until;
                true
            }
            _ => false,
        }
    }

    pub(super) fn release(&self, key: &str, node: &str) -> bool {
        let mut s = self.state.lock();
        if s.claims.get(key).is_some_and(|c| c.held_by(node)) {
            s.claims.remove(key);
            true
        } else {
            false
        }
    }

    pub(super) fn complete(&self, key: &str, node: &str) -> bool {
        match self.state.lock().claims.get_mut(key) {
            Some(c) if c.held_by(node) => {
                c.done = true;
                true
            }
            _ => false,
        }
    }

    pub(super) fn holder(&self, key: &str) -> Option<(String, String)> {
        let now = self.now();
        let s = self.state.lock();
        let c = s.claims.get(key).filter(|c| !c.done && c.until >= now)?;
        Some((c.node.clone()?, c.payload.clone()))
    }

    pub(super) fn offer_pages(&self, run: &str, first: u64, payloads: &[String]) {
        let now = self.now();
        let mut s = self.state.lock();
        let pages = s.pages.entry(run.to_string()).or_default();
        for (i, p) in payloads.iter().enumerate() {
            pages
                .entry(page_key(run, first + i as u64))
                .or_insert_with(|| Claim {
                    node: None,
                    until: now,
                    payload: p.clone(),
                    done: false,
                });
        }
    }

    pub(super) fn claim_page(&self, run: &str, node: &str, ttl: Duration) -> Option<Page> {
        let now = self.now();
        let mut s = self.state.lock();
        let pages = s.pages.get_mut(run)?;
        // Like the SQL: a page nobody holds or whose lease ran out, lowest first. The caller's
        // own expired page counts too: on one node a single thread claims a run's pages, so
        // a page it still "holds" when it asks again is one it abandoned.
        let (key, c) = pages
            .iter_mut()
            .find(|(_, c)| !c.done && (c.node.is_none() || c.until < now))?;
        c.node = Some(node.to_string());
        c.until = now + ttl;
        Some(Page {
            key: key.clone(),
            number: page_number(key),
            payload: c.payload.clone(),
        })
    }

    fn with_page<R>(
        &self,
        run: &str,
        key: &str,
        node: &str,
        f: impl FnOnce(&mut Claim) -> R,
    ) -> Option<R> {
        let mut s = self.state.lock();
        let c = s.pages.get_mut(run)?.get_mut(key)?;
        c.held_by(node).then(|| f(c))
    }

    pub(super) fn renew_page(&self, run: &str, key: &str, node: &str, ttl: Duration) -> bool {
        let until = self.now() + ttl;
        self.with_page(run, key, node, |c| c.until = until)
            .is_some()
    }

    pub(super) fn complete_page(&self, run: &str, key: &str, node: &str, result: &str) -> bool {
        self.with_page(run, key, node, |c| {
            c.done = true;
            c.payload = result.to_string();
        })
        .is_some()
    }

    pub(super) fn page_results(&self, run: &str) -> Vec<String> {
        self.state.lock().pages.get(run).map_or_else(Vec::new, |p| {
            p.values()
                .filter(|c| c.done)
                .map(|c| c.payload.clone())
                .collect()
        })
    }

    pub(super) fn put_scoped(&self, run: &str, key: &str, node: &str, value: &str) {
        self.state
            .lock()
            .scoped
            .entry(run.to_string())
            .or_default()
            .insert(key.to_string(), (node.to_string(), value.to_string()));
    }

    /// The scoped values of `run` whose keys start with `prefix`: (key, node, value).
    pub(super) fn scoped(&self, run: &str, prefix: &str) -> Vec<(String, String, String)> {
        self.state
            .lock()
            .scoped
            .get(run)
            .map_or_else(Vec::new, |m| {
                m.range(prefix.to_string()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(k, (n, v))| (k.clone(), n.clone(), v.clone()))
                    .collect()
            })
    }

    /// Every scoped key, of any run, that starts with `prefix`.
    pub(super) fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        let s = self.state.lock();
        let mut keys: Vec<String> = s
            .scoped
            .values()
            .flat_map(|m| m.keys().filter(|k| k.starts_with(prefix)).cloned())
            .collect();
        keys.sort();
        keys
    }

    pub(super) fn release_page(&self, run: &str, key: &str, node: &str) -> bool {
        let now = self.now();
        self.with_page(run, key, node, |c| {
            c.node = None;
            c.until = now;
        })
        .is_some()
    }

    pub(super) fn pages_offered(&self, run: &str) -> u64 {
        self.state
            .lock()
            .pages
            .get(run)
            .map_or(0, |p| p.len() as u64)
    }

    pub(super) fn pages_left(&self, run: &str) -> u64 {
        self.state
            .lock()
            .pages
            .get(run)
            .map_or(0, |p| p.values().filter(|c| !c.done).count() as u64)
    }

    pub(super) fn drop_pages(&self, run: &str) {
        let mut s = self.state.lock();
        s.pages.remove(run);
        s.scoped.remove(run);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Coordinator;
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    fn local() -> Coordinator {
        Coordinator::in_process()
    }

    fn advance(c: &Coordinator, by: Duration) {
        match c {
            Coordinator::Local(l) => l.advance(by),
            Coordinator::Postgres(_) => unreachable!("in-process only"),
        }
    }

    #[test]
    fn one_node_wins_a_claim_until_its_lease_runs_out() {
        let c = local();
        assert!(c.claim("k", "a", TTL, "run-1").expect("local"));
        assert!(!c.claim("k", "b", TTL, "run-2").expect("local"));
        assert_eq!(
            c.holder("k").expect("local"),
            Some(("a".into(), "run-1".into()))
        );
        // The holder claiming again renews.
        assert!(c.claim("k", "a", TTL, "run-1").expect("local"));
        advance(&c, TTL + Duration::from_millis(1));
        assert_eq!(c.holder("k").expect("local"), None);
        assert!(c.claim("k", "b", TTL, "run-2").expect("local"));
        assert!(!c.renew("k", "a", TTL).expect("local"), "a lost it");
        assert!(!c.release("k", "a").expect("local"));
        assert!(c.renew("k", "b", TTL).expect("local"));
        assert!(c.release("k", "b").expect("local"));
        assert!(c.claim("k", "a", TTL, "").expect("local"), "released: free");
    }

    #[test]
    fn a_completed_claim_is_never_taken_again() {
        let c = local();
        assert!(c.claim("fire/s/1", "a", TTL, "").expect("local"));
        assert!(!c.complete("fire/s/1", "b").expect("local"));
        assert!(c.complete("fire/s/1", "a").expect("local"));
        advance(&c, TTL * 2);
        assert!(!c.claim("fire/s/1", "b", TTL, "").expect("local"));
        assert!(!c.claim("fire/s/1", "a", TTL, "").expect("local"));
    }

    #[test]
    fn ended_claims_are_pruned_as_the_map_grows() {
        let l = Local::default();
        for i in 0..1000 {
            assert!(l.claim(&format!("fire/s/{i}"), "a", TTL, ""));
            assert!(l.complete(&format!("fire/s/{i}"), "a"));
        }
        assert!(l.state.lock().claims.len() <= PRUNE_FLOOR);
        // A live claim survives every prune.
        assert!(l.claim("run/m", "a", TTL, ""));
        for i in 1000..2000 {
            l.claim(&format!("fire/s/{i}"), "a", Duration::ZERO, "");
        }
        l.advance(Duration::from_millis(1));
        for i in 2000..2200 {
            l.claim(&format!("fire/s/{i}"), "a", Duration::ZERO, "");
        }
        assert!(!l.claim("run/m", "b", TTL, ""));
        assert!(l.state.lock().claims.len() < 1000);
    }

    #[test]
    fn pages_go_out_once_lowest_first_and_come_back_when_their_lease_runs_out() {
        let c = local();
        let payloads: Vec<String> = (0..3).map(|i| format!("[\"p{i}\"]")).collect();
        c.offer_pages("r", 0, &payloads[..2]).expect("local");
        c.offer_pages("r", 2, &payloads[2..]).expect("local");
        c.offer_pages("r", 0, &payloads)
            .expect("offering again adds nothing");
        assert_eq!(c.pages_left("r").expect("local"), 3);
        assert_eq!(c.pages_offered("r").expect("local"), 3);
        let p0 = c.claim_page("r", "a", TTL).expect("local").expect("page 0");
        let p1 = c.claim_page("r", "b", TTL).expect("local").expect("page 1");
        assert_eq!((p0.number, p1.number), (0, 1));
        assert_eq!(p1.payload, "[\"p1\"]");
        let p2 = c.claim_page("r", "a", TTL).expect("local").expect("page 2");
        assert_eq!(c.claim_page("r", "a", TTL).expect("local"), None);
        assert!(c.complete_page("r", &p0, "a", "r0").expect("local"));
        assert!(c.release_page("r", &p2, "a").expect("local"));
        // b stalls on page 1: once its lease runs out, a takes it (then b cannot finish it).
        assert!(c.renew_page("r", &p1, "b", TTL).expect("local"));
        advance(&c, TTL + Duration::from_millis(1));
        let again = c
            .claim_page("r", "a", TTL)
            .expect("local")
            .expect("page 1 again");
        assert_eq!(again.number, 1);
        assert!(!c.complete_page("r", &p1, "b", "lost").expect("local"));
        assert!(!c.renew_page("r", &p1, "b", TTL).expect("local"));
        assert_eq!(c.pages_left("r").expect("local"), 2);
        assert!(c.complete_page("r", &again, "a", "r1").expect("local"));
        let last = c.claim_page("r", "b", TTL).expect("local").expect("page 2");
        assert_eq!(last.number, 2);
        assert!(c.complete_page("r", &last, "b", "r2").expect("local"));
        assert_eq!(c.pages_left("r").expect("local"), 0);
        assert_eq!(c.claim_page("r", "a", TTL).expect("local"), None);
        assert_eq!(c.page_results("r").expect("local"), ["r0", "r1", "r2"]);
        c.drop_pages("r").expect("local");
        assert_eq!(c.pages_left("r").expect("local"), 0);
        assert!(c.page_results("r").expect("local").is_empty());
    }

    #[test]
    fn notes_and_specs_are_written_over_read_by_prefix_and_dropped_with_the_pages() {
        let c = local();
        c.put_spec("r", "a", "{spec}").expect("local");
        c.put_spec("other", "b", "{other}").expect("local");
        c.put_note("r", "report/a", "a", "1").expect("local");
        c.put_note("r", "report/b", "b", "2").expect("local");
        c.put_note("r", "report/a", "a", "3").expect("local");
        c.put_note("r", "x", "a", "no").expect("local");
        assert_eq!(
            c.notes("r", "report/").expect("local"),
            vec![
                ("report/a".to_string(), "a".to_string(), "3".to_string()),
                ("report/b".to_string(), "b".to_string(), "2".to_string()),
            ]
        );
        assert_eq!(c.spec("r").expect("local").as_deref(), Some("{spec}"));
        assert_eq!(c.clustered_runs().expect("local"), ["other", "r"]);
        c.drop_pages("r").expect("local");
        assert_eq!(c.spec("r").expect("local"), None);
        assert!(c.notes("r", "").expect("local").is_empty());
        assert_eq!(c.clustered_runs().expect("local"), ["other"]);
    }

    #[test]
    fn nodes_are_live_while_their_heartbeat_runs() {
        let c = local();
        c.heartbeat("b", TTL).expect("local");
        c.heartbeat("a", TTL * 3).expect("local");
        assert_eq!(c.live_nodes().expect("local"), vec!["a", "b"]);
        advance(&c, TTL * 2);
        assert_eq!(c.live_nodes().expect("local"), vec!["a"]);
    }
}
