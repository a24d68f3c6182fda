//! The PostgreSQL repository through the public `Store` API, on a real PostgreSQL (one server
//! per test process, one database per test, see `pg_shared`): the write discipline
//! (preconditions, conflicts, nothing of a refused batch written), the database's own link
//! constraints, paging scans, runs, entries, audit, state and liveSync tokens. Migrations,
//! calls from async tasks and planner statistics: `pg_repo_admin`.

use std::ops::ControlFlow;
use std::path::Path;

use recond::storage::{
    index_terms, DataBatch, EntryRecord, Expect, ItemBatch, Link, Repository, RunRecord, Store,
    StoreError, StoreOptions, SyncTokenRecord,
};
use serde_json::{json, Map, Value};

use super::pg_shared::{client, fresh_database};

pub(crate) fn open(url: &str) -> Store {
    Store::open(Path::new("/nonexistent"), &options(url)).expect("open the PostgreSQL repository")
}

pub(crate) fn options(url: &str) -> StoreOptions {
    StoreOptions {
        repository: Repository::Postgres {
            url: url.to_string(),
            pool_size: 4,
        },
        ..StoreOptions::default()
    }
}

pub(crate) fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("object literal")
}

pub(crate) fn link(first: &str, second: &str, rev: u64) -> Link {
    Link {
        link_type: "m".into(),
        qualifier: "default".into(),
        first_id: first.into(),
        second_id: second.into(),
        rev,
    }
}

fn conflict(r: Result<(), StoreError>) -> String {
    match r {
        Err(StoreError::Conflict(m)) => m,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn pg_objects_indexes_links_and_preconditions() {
    let Some(url) = fresh_database("pg_cas") else {
        return;
    };
    let store = open(&url);
    assert!(store.is_shared());
    let terms: Vec<_> = index_terms(&json!("Alice"))
        .into_iter()
        .map(|t| ("userName".to_string(), t))
        .collect();
    let mut b = DataBatch::new();
    b.expect_object("managed/user", "a1", Expect::Absent);
    b.put_object(
        "managed/user",
        "a1",
        1,
        &obj(json!({"userName": "Alice", "z": 1, "a": [1, {"b": null}]})),
        &[],
        &terms,
    )
    .expect("stage");
    b.expect_link("m", "default", "s1", Expect::Absent);
    b.expect_no_link_to_second("m", "default", "a1");
    b.put_link(&link("s1", "a1", 1), None).expect("stage");
    store.apply(b).expect("apply");
    let o = store
        .get_object("managed/user", "a1")
        .expect("read")
        .expect("exists");
    assert_eq!(o.rev, 1);
    let keys: Vec<&str> = o.body.keys().map(String::as_str).collect();
    assert_eq!(keys, ["userName", "z", "a"], "the body's key order is kept");
    let t = index_terms(&json!("ALICE")).remove(0);
    assert_eq!(
        store
            .index_lookup("managed/user", "userName", &t)
            .expect("lookup"),
        vec!["a1".to_string()]
    );
    assert_eq!(
        store.link_by_second("m", "default", "a1").expect("read"),
        Some(link("s1", "a1", 1))
    );

    // Stale revision, an object created twice, a second link to a1: refused.
    let put = |id: &str, rev: u64, expect: Expect| {
        let mut b = DataBatch::new();
        b.expect_object("managed/user", id, expect);
        b.put_object("managed/user", id, rev, &obj(json!({"v": rev})), &[], &[])
            .expect("stage");
        store.apply(b)
    };
    assert!(conflict(put("a1", 2, Expect::Rev(7))).contains("revision 1, expected 7"));
    assert!(conflict(put("a1", 1, Expect::Absent)).contains("already exists"));
    assert!(conflict(put("gone", 2, Expect::Rev(1))).contains("no longer exists"));
    put("a1", 2, Expect::Rev(1)).expect("an update at the read revision");

    // A batch whose last precondition fails writes nothing of its first writes.
    let mut b = DataBatch::new();
    b.expect_object("managed/user", "new", Expect::Absent);
    b.put_object("managed/user", "new", 1, &obj(json!({})), &[], &[])
        .expect("stage");
    b.put_link(&link("s9", "new", 1), None).expect("stage");
    b.expect_link("m", "default", "s1", Expect::Rev(5));
    conflict(store.apply(b));
    assert!(!store.object_exists("managed/user", "new").expect("read"));
    assert_eq!(
        store.link_by_first("m", "default", "s9").expect("read"),
        None
    );

    // The same key expected twice in one batch is refused.
    let mut b = DataBatch::new();
    b.expect_object("managed/user", "a1", Expect::Rev(2));
    b.expect_object("managed/user", "a1", Expect::Rev(2));
    assert!(conflict(store.apply(b)).contains("twice"));

    // Repoint s1 to a2 and delete a1 with its index entry: the old target side goes.
    let mut b = DataBatch::new();
    b.expect_link("m", "default", "s1", Expect::Rev(1));
    b.put_link(&link("s1", "a2", 2), Some("a1")).expect("stage");
    b.delete_object("managed/user", "a1", &terms);
    store.apply(b).expect("apply");
    assert_eq!(
        store.link_by_second("m", "default", "a1").expect("read"),
        None
    );
    assert_eq!(
        store.link_by_second("m", "default", "a2").expect("read"),
        Some(link("s1", "a2", 2))
    );
    assert!(store
        .index_lookup("managed/user", "userName", &t)
        .expect("lookup")
        .is_empty());
    assert!(store.set_is_empty("managed/user").expect("read"));

    // A batch moving a link off a target and linking another source to it: checked on its
    // final state, so it applies.
    let mut b = DataBatch::new();
    b.put_link(&link("s1", "a3", 3), Some("a2")).expect("stage");
    b.put_link(&link("s2", "a2", 1), None).expect("stage");
    store.apply(b).expect("a swap within one batch");
    assert_eq!(
        store.link_by_second("m", "default", "a2").expect("read"),
        Some(link("s2", "a2", 1))
    );
}

/// The database itself refuses a second link for a target or a source, even from a writer
/// that checked nothing: the batch is a conflict and none of it is written.
#[test]
fn pg_the_link_constraints_refuse_a_second_link_and_roll_back_the_batch() {
    let Some(url) = fresh_database("pg_links") else {
        return;
    };
    let store = open(&url);
    let mut b = DataBatch::new();
    b.put_link(&link("s1", "t1", 1), None).expect("stage");
    store.apply(b).expect("first link");
    // A new link to t1 with no precondition: only the database can refuse it. (A link
    // written again for its source replaces it: there is never a second one.)
    let mut b = DataBatch::new();
    b.put_object("managed/x", "witness", 1, &obj(json!({})), &[], &[])
        .expect("stage");
    b.put_link(&link("s2", "t1", 1), None).expect("stage");
    let m = conflict(store.apply(b));
    assert!(m.contains("recond_links"), "{m}");
    assert!(!store.object_exists("managed/x", "witness").expect("read"));
    assert_eq!(
        store.link_by_first("m", "default", "s2").expect("read"),
        None
    );
    // With the raw table: a second row for t1 is refused by the unique key itself.
    let mut c = client(&url);
    let e = c
        .execute(
            "INSERT INTO recond_links VALUES ('m', 'default', 's3', 't1', 1)",
            &[],
        )
        .expect_err("a second link to t1");
    assert_eq!(e.code().map(|c| c.code()), Some("23505"));
    let e = c
        .execute(
            "INSERT INTO recond_links VALUES ('m', 'default', 's1', 't3', 1)",
            &[],
        )
        .expect_err("a second link from s1");
    assert_eq!(e.code().map(|c| c.code()), Some("23505"));
    assert_eq!(store.count_links("m", "default").expect("count"), 1);
}

#[test]
fn pg_scans_page_in_id_order() {
    let Some(url) = fresh_database("pg_scan") else {
        return;
    };
    let store = open(&url);
    let n = 2_345;
    let mut b = DataBatch::new();
    for i in (0..n).rev() {
        b.put_object(
            "managed/x",
            &format!("u{i:05}"),
            1,
            &obj(json!({ "i": i })),
            &[],
            &[],
        )
        .expect("stage");
        b.put_link(&link(&format!("s{i:05}"), &format!("u{i:05}"), 1), None)
            .expect("stage");
    }
    // Byte order, not a locale's: upper case before lower case, "é" after "z".
    for id in ["Z", "é", "z"] {
        b.put_object("managed/x", id, 1, &obj(json!({})), &[], &[])
            .expect("stage");
    }
    b.put_object("managed/xy", "other", 1, &obj(json!({})), &[], &[])
        .expect("stage");
    store.apply(b).expect("apply");
    let mut ids = Vec::new();
    store
        .scan_objects("managed/x", None, &mut |o| {
            ids.push(o.id);
            ControlFlow::Continue(())
        })
        .expect("scan");
    assert_eq!(ids.len(), n + 3);
    assert_eq!(ids[0], "Z");
    assert_eq!(&ids[n + 1..], ["z", "é"]);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "byte order");
    let mut after = Vec::new();
    store
        .scan_objects("managed/x", Some("u01998"), &mut |o| {
            after.push(o.id);
            if after.len() == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .expect("scan");
    assert_eq!(after, ["u01999", "u02000", "u02001"]);
    let mut count = 0;
    store
        .scan_object_ids("managed/x", &mut |_| {
            count += 1;
            ControlFlow::Continue(())
        })
        .expect("scan ids");
    assert_eq!(count, n + 3);
    assert_eq!(
        store.count_objects("managed/x").expect("count"),
        (n + 3) as u64
    );
    assert_eq!(
        store
            .count_objects_until("managed/x", &|| true)
            .expect("count"),
        None
    );
    let mut links = Vec::new();
    store
        .scan_links(Some("m"), Some("default"), &mut |l| {
            links.push(l.first_id);
            ControlFlow::Continue(())
        })
        .expect("scan links");
    assert_eq!(links.len(), n);
    assert!(links.windows(2).all(|w| w[0] < w[1]));
    let mut all = 0;
    store
        .scan_links(None, None, &mut |_| {
            all += 1;
            ControlFlow::Continue(())
        })
        .expect("scan links");
    assert_eq!(all, n);
    assert_eq!(store.count_links("m", "default").expect("count"), n as u64);
    assert!(store.size_on_disk() > 0);
    // A scan's callback may use the store (no connection is held while it runs).
    let mut nested = 0;
    store
        .scan_objects("managed/xy", None, &mut |o| {
            nested += usize::from(store.object_exists("managed/xy", &o.id).expect("read"));
            ControlFlow::Continue(())
        })
        .expect("scan");
    assert_eq!(nested, 1);
}

#[test]
fn pg_runs_entries_audit_state_and_sync() {
    let Some(url) = fresh_database("pg_runs") else {
        return;
    };
    let store = open(&url);
    let run = RunRecord {
        seq: 5,
        id: "x-5".into(),
        mapping: "m".into(),
        completed: false,
        is_analysis: false,
        persist_associations: true,
        source_collection: "a".into(),
        target_collection: "b".into(),
        finish_time: None,
        summary: "{}".into(),
    };
    store.put_run(&run).expect("put run");
    let done = RunRecord {
        completed: true,
        ..run.clone()
    };
    store.put_run(&done).expect("rewrite run");
    store
        .put_run(&RunRecord {
            seq: 6,
            ..run.clone()
        })
        .expect("put run");
    assert_eq!(store.get_run(5).expect("get"), Some(done));
    let mut seqs = Vec::new();
    store
        .scan_runs(&mut |r| {
            seqs.push(r.seq);
            ControlFlow::Continue(())
        })
        .expect("scan");
    assert_eq!(seqs, [5, 6]);
    let mut items = ItemBatch::default();
    let mut events = ItemBatch::default();
    for i in 0..1_500 {
        items
            .put_entry(
                5,
                i,
                &EntryRecord {
                    phase: "source".into(),
                    source_id: Some(format!("s{i}")),
                    ..Default::default()
                },
            )
            .expect("entry");
        events.put_audit(5, i, &json!({ "n": i })).expect("audit");
    }
    items
        .put_entry(6, 0, &EntryRecord::default())
        .expect("entry");
    events
        .put_audit(6, 0, &json!({ "n": "six" }))
        .expect("audit");
    store.apply_entries(items).expect("apply");
    store.apply_audit(events).expect("apply");
    let mut n = 0;
    store
        .scan_entries(5, Some(6), &mut |no, e| {
            assert_eq!(e.source_id, Some(format!("s{no}")));
            n += 1;
            ControlFlow::Continue(())
        })
        .expect("scan");
    assert_eq!(n, 1_500 - 7);
    let mut audit = Vec::new();
    store
        .scan_audit(None, &mut |e| {
            audit.push(e["n"].clone());
            ControlFlow::Continue(())
        })
        .expect("scan");
    assert_eq!(audit.len(), 1_501);
    assert_eq!(audit[1_499], json!(1_499));
    assert_eq!(audit[1_500], json!("six"), "oldest run first");
    store.remove_run(5).expect("remove");
    assert_eq!(store.get_run(5).expect("get"), None);
    assert_eq!(store.pending_purges().expect("pending"), vec![5]);
    assert!(!store.reclaim(5, &|| false).expect("stopped"));
    assert!(store.reclaim(5, &|| true).expect("reclaim"));
    assert!(store.pending_purges().expect("pending").is_empty());
    assert_eq!(store.get_entry(5, 3).expect("get"), None);
    assert!(
        store.get_entry(6, 0).expect("get").is_some(),
        "another run's entries stay"
    );

    store
        .put_meta("scheduler", &vec![1u32, 2, 3])
        .expect("meta");
    assert_eq!(
        store.get_meta::<Vec<u32>>("scheduler").expect("meta"),
        Some(vec![1, 2, 3])
    );
    assert_eq!(store.get_meta::<Vec<u32>>("other").expect("meta"), None);
    let a = store.next_id().expect("id");
    assert!(store.next_id().expect("id") > a);

    let rec = SyncTokenRecord {
        token: "17".into(),
        rev: 1,
        updated_ms: 5,
    };
    store.put_sync_token("system/a/b", &rec).expect("token");
    assert_eq!(
        store.get_sync_token("system/a/b").expect("token"),
        Some(rec)
    );
    let events: Vec<Value> = (0..5).map(|i| json!({ "n": i })).collect();
    store.append_sync_audit(&events).expect("sync audit");
    let mut numbers = Vec::new();
    store
        .scan_sync_audit(None, &mut |no, ev| {
            numbers.push((no, ev["n"].as_i64().expect("n")));
            ControlFlow::Continue(())
        })
        .expect("scan");
    assert_eq!(
        numbers.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    let mut after = Vec::new();
    store
        .scan_sync_audit(Some(numbers[2].0), &mut |_, ev| {
            after.push(ev["n"].as_i64().expect("n"));
            ControlFlow::Continue(())
        })
        .expect("scan");
    assert_eq!(after, [3, 4]);
    // Nothing comes after the largest number (as on the embedded store), no error.
    store
        .scan_sync_audit(Some(u64::MAX), &mut |_, ev| panic!("{ev}"))
        .expect("scan");
    store
        .scan_entries(6, Some(u64::MAX), &mut |no, _| panic!("{no}"))
        .expect("scan");
}

/// Eight writers race to link their own sources to the same targets, each from its own
/// reads: every target ends with exactly one link, refused ones are conflicts.
#[test]
fn pg_racing_writers_link_a_target_once() {
    let Some(url) = fresh_database("pg_race") else {
        return;
    };
    let store = open(&url);
    let targets = 60;
    std::thread::scope(|s| {
        for w in 0..8 {
            let store = &store;
            s.spawn(move || {
                for t in 0..targets {
                    let (first, second) = (format!("w{w}-{t}"), format!("t{t}"));
                    let mut b = DataBatch::new();
                    let taken = store
                        .link_by_second_for(&mut b, "m", "default", &second)
                        .expect("read");
                    if taken.is_some() {
                        continue;
                    }
                    b.expect_link("m", "default", &first, Expect::Absent);
                    b.expect_no_link_to_second("m", "default", &second);
                    b.put_link(&link(&first, &second, 1), None).expect("stage");
                    match store.apply(b) {
                        Ok(()) | Err(StoreError::Conflict(_)) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    let mut per_target = std::collections::HashMap::new();
    store
        .scan_links(Some("m"), None, &mut |l| {
            *per_target.entry(l.second_id).or_insert(0) += 1;
            ControlFlow::Continue(())
        })
        .expect("scan");
    assert_eq!(per_target.len(), targets);
    assert!(per_target.values().all(|n| *n == 1), "{per_target:?}");
}
