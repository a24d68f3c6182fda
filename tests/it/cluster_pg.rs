//! The shared coordinator's SQL against a real PostgreSQL (`pg`): two "nodes" (two
//! connections, as two processes would have) claiming the same key, leases running out, and
//! `SKIP LOCKED` handing concurrent claimers different pages.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use recond::cluster::{pg, Coordinator, PgCoordinator};

use crate::pg::Pg;

/// Two coordinators on separate connections, as two nodes would be.
fn two_nodes(db: &Pg) -> (Coordinator, Coordinator) {
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", db.port);
    let a = PgCoordinator::connect(&url).expect("node a connects");
    a.install_schema().expect("schema");
    // Installing twice is harmless (a node that starts second runs it too).
    let b = PgCoordinator::connect(&url).expect("node b connects");
    b.install_schema().expect("schema again");
    (Coordinator::Postgres(a), Coordinator::Postgres(b))
}

/// Waits (bounded) until `node`'s lease on `key` has run out by the database's clock (leases
/// are the database's, so the test asks the database instead of guessing).
fn wait_past(c: &Coordinator, key: &str, node: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while c
        .holder(key)
        .expect("holder")
        .is_some_and(|(n, _)| n == node)
    {
        assert!(
            Instant::now() < deadline,
            "the lease on {key} never ran out"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn claims_leases_and_pages_on_a_shared_postgresql() {
    let Some(db) = Pg::start() else { return };
    let (a, b) = two_nodes(&db);
    let long = Duration::from_secs(600);
    let short = Duration::from_millis(300);

    // Two nodes claim the same key at once: exactly one wins.
    let (a, b) = (Arc::new(a), Arc::new(b));
    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = [("a", a.clone()), ("b", b.clone())]
        .into_iter()
        .map(|(node, c)| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                c.claim("run/hr", node, long, &format!("run-of-{node}"))
                    .expect("claim")
            })
        })
        .collect();
    let won: Vec<bool> = racers
        .into_iter()
        .map(|t| t.join().expect("racer"))
        .collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let (winner, loser, wc, lc) = if won[0] {
        ("a", "b", &a, &b)
    } else {
        ("b", "a", &b, &a)
    };
    assert_eq!(
        lc.holder("run/hr").expect("holder"),
        Some((winner.to_string(), format!("run-of-{winner}")))
    );
    assert!(!lc.claim("run/hr", loser, long, "").expect("claim"));
    assert!(!lc.renew("run/hr", loser, long).expect("renew"));
    assert!(!lc.release("run/hr", loser).expect("release"));
    assert!(wc
        .claim("run/hr", winner, long, "again")
        .expect("the holder re-claims"));
    assert!(wc.release("run/hr", winner).expect("release"));
    assert!(lc.claim("run/hr", loser, long, "").expect("released: free"));

    // Lease expiry: a node that stops renewing loses the key to the other.
    assert!(a.claim("fire/nightly/1000", "a", short, "").expect("claim"));
    assert!(!b.claim("fire/nightly/1000", "b", long, "").expect("claim"));
    wait_past(&b, "fire/nightly/1000", "a");
    assert!(b
        .claim("fire/nightly/1000", "b", long, "")
        .expect("expired: b takes it"));
    assert!(
        !a.renew("fire/nightly/1000", "a", long).expect("renew"),
        "a lost it"
    );
    // A completed firing is never taken again, even once its lease is long past.
    assert!(b.complete("fire/nightly/1000", "b").expect("complete"));
    assert!(!a.claim("fire/nightly/1000", "a", long, "").expect("claim"));
    assert!(!b.claim("fire/nightly/1000", "b", long, "").expect("claim"));
    // Old done claims are removed; live ones stay.
    assert!(a.claim("run/kept", "a", long, "").expect("claim"));
    assert_eq!(a.purge_done(long).expect("purge"), 0, "not old enough");
    assert_eq!(a.purge_done(Duration::ZERO).expect("purge"), 1);
    assert_eq!(
        a.holder("run/kept").expect("holder"),
        Some(("a".to_string(), String::new()))
    );
    assert!(a.release("run/kept", "a").expect("release"));

    // Liveness.
    a.heartbeat("a", long).expect("heartbeat");
    b.heartbeat("b", short).expect("heartbeat");
    assert_eq!(a.live_nodes().expect("live"), vec!["a", "b"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.live_nodes().expect("live") != vec!["a"] {
        assert!(Instant::now() < deadline, "b's heartbeat never ran out");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Pages: SKIP LOCKED hands two claimers different pages, lowest first.
    let payloads: Vec<String> = (0..4).map(|i| format!("[\"id{i}\"]")).collect();
    a.offer_pages("run-7", 0, &payloads[..3]).expect("offer");
    a.offer_pages("run-7", 3, &payloads[3..]).expect("offer");
    b.offer_pages("run-7", 0, &payloads)
        .expect("offering again is harmless");
    assert_eq!(a.pages_left("run-7").expect("left"), 4);
    let pa = a
        .claim_page("run-7", "a", long)
        .expect("claim")
        .expect("a page");
    let pb = b
        .claim_page("run-7", "b", long)
        .expect("claim")
        .expect("a page");
    assert_eq!((pa.number, pb.number), (0, 1));
    assert_eq!(pb.payload, "[\"id1\"]");
    assert!(a.complete_page("run-7", &pa, "a", "").expect("complete"));
    assert!(!a
        .complete_page("run-7", &pb, "a", "")
        .expect("not a's page"));
    // b stalls on page 1 with a short lease: once it runs out, a redoes it, and b can no
    // longer complete or renew it.
    assert!(b.renew_page("run-7", &pb, "b", short).expect("renew"));
    let p2 = a
        .claim_page("run-7", "a", long)
        .expect("claim")
        .expect("page 2");
    assert_eq!(p2.number, 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    let again = loop {
        if let Some(p) = a.claim_page("run-7", "a", long).expect("claim") {
            if p.number == 1 {
                break p;
            }
            // Page 3 (fresh) comes before page 1's lease runs out: put it back.
            assert_eq!(p.number, 3);
            assert!(a.release_page("run-7", &p, "a").expect("release"));
        }
        assert!(Instant::now() < deadline, "page 1's lease never ran out");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!b.complete_page("run-7", &pb, "b", "").expect("b lost it"));
    assert!(!b.renew_page("run-7", &pb, "b", long).expect("b lost it"));
    for p in [&again, &p2] {
        assert!(a
            .complete_page("run-7", p, "a", &format!("r{}", p.number))
            .expect("complete"));
    }
    let p3 = b
        .claim_page("run-7", "b", long)
        .expect("claim")
        .expect("page 3");
    assert_eq!(p3.number, 3);
    assert_eq!(a.pages_left("run-7").expect("left"), 1);
    assert!(b.complete_page("run-7", &p3, "b", "r3").expect("complete"));
    assert_eq!(a.pages_left("run-7").expect("left"), 0);
    assert_eq!(a.claim_page("run-7", "a", long).expect("claim"), None);

    // Notes and the spec live in the run's scope: written over by name, never a page, read
    // by any node, gone with the pages; completed pages keep their results in page order.
    a.put_spec("run-7", "a", "{\"mapping\":\"m\"}")
        .expect("spec");
    a.put_note("run-7", "report/a", "a", "1").expect("note");
    b.put_note("run-7", "report/b", "b", "2").expect("note");
    a.put_note("run-7", "report/a", "a", "3")
        .expect("note written over");
    assert_eq!(
        a.pages_left("run-7").expect("left"),
        0,
        "notes are no pages"
    );
    assert_eq!(b.claim_page("run-7", "b", long).expect("claim"), None);
    assert_eq!(
        b.notes("run-7", "report/").expect("notes"),
        vec![
            ("report/a".to_string(), "a".to_string(), "3".to_string()),
            ("report/b".to_string(), "b".to_string(), "2".to_string()),
        ]
    );
    assert_eq!(
        b.spec("run-7").expect("spec").as_deref(),
        Some("{\"mapping\":\"m\"}")
    );
    assert_eq!(b.clustered_runs().expect("runs"), ["run-7"]);
    let results = a.page_results("run-7").expect("results");
    assert_eq!(results.len(), 4, "{results:?}");
    assert_eq!(results[3], "r3");
    a.drop_pages("run-7").expect("drop");
    assert_eq!(b.spec("run-7").expect("spec"), None);
    assert!(b.notes("run-7", "").expect("notes").is_empty());
    assert!(b.clustered_runs().expect("runs").is_empty());

    // Many claimers at once: every page goes out exactly once.
    let n_pages = 40;
    let payloads: Vec<String> = (0..n_pages).map(|i| i.to_string()).collect();
    a.offer_pages("run-8", 0, &payloads).expect("offer");
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", db.port);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
                let node = format!("w{w}");
                let mut mine = Vec::new();
                while let Some(p) =
                    pg::claim_page(&mut client, "run-8", &node, long).expect("claim")
                {
                    assert!(pg::complete(&mut client, &p.key, &node).expect("complete"));
                    mine.push(p.number);
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<u64> = workers
        .into_iter()
        .flat_map(|t| t.join().expect("worker"))
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..n_pages as u64).collect::<Vec<_>>());

    // SKIP LOCKED: a page row locked by an open transaction is skipped, not waited for.
    a.drop_pages("run-8").expect("drop");
    a.offer_pages("run-9", 0, &["x".to_string(), "y".to_string()])
        .expect("offer");
    let mut holder = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let mut tx = holder.transaction().expect("begin");
    let locked = pg::claim_page(&mut tx, "run-9", "slow", long)
        .expect("claim")
        .expect("page 0");
    assert_eq!(locked.number, 0);
    let other = b
        .claim_page("run-9", "b", long)
        .expect("claim")
        .expect("page");
    assert_eq!(other.number, 1, "the locked page is skipped");
    assert_eq!(b.claim_page("run-9", "b", long).expect("claim"), None);
    tx.rollback().expect("rollback");
    let back = b
        .claim_page("run-9", "b", long)
        .expect("claim")
        .expect("page 0");
    assert_eq!(back.number, 0, "rolled back: page 0 is free again");
}
