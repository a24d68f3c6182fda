//! The embedded store's object counts per set (`embedded::counts`): kept by every batch,
//! exact under concurrent writers, unknown after a write without preconditions, and the same
//! after a restart (rebuilt at open when unknown or never built).

use std::sync::Arc;

use super::tests::temp_store;
use super::*;

const SET: &str = "managed/user";

fn body() -> serde_json::Map<String, serde_json::Value> {
    serde_json::Map::new()
}

fn create(store: &Store, set: &str, id: &str) -> Result<()> {
    let mut b = DataBatch::new();
    b.expect_object(set, id, Expect::Absent);
    b.put_object(set, id, 1, &body(), &[], &[])?;
    store.apply(b)
}

fn update(store: &Store, id: &str, rev: u64) -> Result<()> {
    let mut b = DataBatch::new();
    b.expect_object(SET, id, Expect::Rev(rev));
    b.put_object(SET, id, rev + 1, &body(), &[], &[])?;
    store.apply(b)
}

fn delete(store: &Store, id: &str, rev: u64) -> Result<()> {
    let mut b = DataBatch::new();
    b.expect_object(SET, id, Expect::Rev(rev));
    b.delete_object(SET, id, &[]);
    store.apply(b)
}

fn counts(store: &Store, set: &str) -> Option<ObjectCounts> {
    store.object_counts(set).expect("read counts")
}

/// The objects of `set` as a scan of its keys finds them.
fn scanned(store: &Store, set: &str) -> u64 {
    let mut n = 0;
    store
        .scan_object_ids(set, &mut |_| {
            n += 1;
            std::ops::ControlFlow::Continue(())
        })
        .expect("scan");
    n
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, &StoreOptions::default()).expect("reopen")
}

#[test]
fn creates_updates_and_deletes_are_counted_per_set() {
    let (store, dir) = temp_store("counts");
    assert_eq!(counts(&store, SET), Some(ObjectCounts::default()));
    for id in ["a", "b", "c"] {
        create(&store, SET, id).expect("create");
    }
    create(&store, "managed/role", "r").expect("create a role");
    update(&store, "a", 1).expect("update");
    delete(&store, "b", 1).expect("delete");
    // A refused precondition writes nothing and counts nothing.
    assert!(matches!(
        create(&store, SET, "a"),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        delete(&store, "b", 1),
        Err(StoreError::Conflict(_))
    ));
    let want = ObjectCounts {
        objects: 2,
        creates: 3,
        deletes: 1,
    };
    assert_eq!(counts(&store, SET), Some(want));
    assert_eq!(counts(&store, "managed/role").map(|c| c.objects), Some(1));
    assert_eq!(scanned(&store, SET), 2);
    drop(store);
    // A restart reads the counts back (nothing is recounted, the counters stay).
    let store = open(&dir);
    assert_eq!(counts(&store, SET), Some(want));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_write_without_preconditions_makes_the_count_unknown_until_the_next_open() {
    let (store, dir) = temp_store("counts-unknown");
    create(&store, SET, "a").expect("create");
    let mut b = DataBatch::new();
    b.put_object(SET, "b", 1, &body(), &[], &[]).expect("stage");
    store.apply(b).expect("apply");
    assert_eq!(counts(&store, SET), None);
    // Other sets keep theirs.
    create(&store, "managed/role", "r").expect("create a role");
    assert_eq!(counts(&store, "managed/role").map(|c| c.objects), Some(1));
    create(&store, SET, "c").expect("create");
    assert_eq!(counts(&store, SET), None, "unknown stays unknown");
    drop(store);
    let store = open(&dir);
    assert_eq!(
        counts(&store, SET),
        Some(ObjectCounts {
            objects: 3,
            creates: 0,
            deletes: 0
        })
    );
    assert_eq!(counts(&store, "managed/role").map(|c| c.objects), Some(1));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_store_without_counts_is_counted_at_open() {
    let (store, dir) = temp_store("counts-old");
    for id in ["a", "b"] {
        create(&store, SET, id).expect("create");
    }
    drop(store);
    // What an older build left: objects, no counts.
    {
        let db = sled::open(&dir).expect("open sled");
        let data = db.open_tree("data").expect("data");
        for k in data.scan_prefix([keys::SET_COUNT]).keys() {
            data.remove(k.expect("key")).expect("remove");
        }
        db.open_tree("meta")
            .expect("meta")
            .remove("object-counts")
            .expect("remove the marker");
        db.flush().expect("flush");
    }
    let store = open(&dir);
    assert_eq!(counts(&store, SET).map(|c| c.objects), Some(2));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn concurrent_writers_leave_an_exact_count_and_readers_never_see_half_a_batch() {
    let (store, dir) = temp_store("counts-race");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A reader checks, while writers run, that every reading matches the counters:
    // objects = creates - deletes (the set started empty).
    let reader = {
        let store = store.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut readings = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || readings == 0 {
                let c = counts(&store, SET).expect("known");
                assert_eq!(c.objects, c.creates - c.deletes, "{c:?}");
                readings += 1;
            }
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let id = format!("t{t}-{i}");
                    // Two threads race for each shared id: exactly one create wins.
                    let shared = format!("shared-{i}");
                    let _ = create(&store, SET, &shared);
                    create(&store, SET, &id).expect("create");
                    if i % 3 == 0 {
                        delete(&store, &id, 1).expect("delete");
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().expect("reader");
    let stored = scanned(&store, SET);
    let c = counts(&store, SET).expect("known");
    assert_eq!(c.objects, stored);
    assert_eq!(stored, 200 + 4 * (200 - 67));
    drop(store);
    let store = open(&dir);
    assert_eq!(counts(&store, SET).map(|c| c.objects), Some(stored));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
