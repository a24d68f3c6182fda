//! Round trips and the write discipline of the store, on a temporary sled database.

use std::ops::ControlFlow;

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

fn link(first: &str, second: &str, rev: u64) -> Link {
    Link {
        link_type: "m".into(),
        qualifier: "default".into(),
        first_id: first.into(),
        second_id: second.into(),
        rev,
    }
}

/// A new link staged on what the writer read: its preconditions are taken from the reads.
fn stage_new_link(store: &Store, first: &str, second: &str) -> DataBatch {
    let mut b = DataBatch::new();
    let by_first = store
        .link_by_first_for(&mut b, "m", "default", first)
        .expect("read");
    let by_second = store
        .link_by_second_for(&mut b, "m", "default", second)
        .expect("read");
    assert_eq!((by_first, by_second), (None, None), "both sides free");
    b.expect_link("m", "default", first, Expect::Absent);
    b.expect_no_link_to_second("m", "default", second);
    b.put_link(&link(first, second, 1), None).expect("stage");
    b
}

#[test]
fn a_link_read_for_a_batch_answers_its_precondition_until_the_key_is_written() {
    let (store, dir) = temp_store("noted");
    // Nothing written since the reads: the batch applies.
    store
        .apply(stage_new_link(&store, "s1", "t1"))
        .expect("first link");
    // A link to t2 written by another writer after this batch's reads: the reads are stale
    // and the batch is refused, both when the forward key and when the target side was taken.
    let stale = stage_new_link(&store, "s2", "t2");
    store
        .apply(stage_new_link(&store, "s3", "t2"))
        .expect("the other writer");
    assert!(
        matches!(store.apply(stale), Err(StoreError::Conflict(m)) if m.contains("t2")),
        "a second link to t2 is refused"
    );
    let stale = stage_new_link(&store, "s4", "t4");
    store
        .apply(stage_new_link(&store, "s4", "t5"))
        .expect("the other writer");
    assert!(
        matches!(store.apply(stale), Err(StoreError::Conflict(m)) if m.contains("s4")),
        "a second link from s4 is refused"
    );
    // A read that found the link: an update at its revision applies, a stale one does not.
    let mut b = DataBatch::new();
    let found = store
        .link_by_first_for(&mut b, "m", "default", "s1")
        .expect("read")
        .expect("linked");
    let mut other = DataBatch::new();
    let again = store
        .link_by_first_for(&mut other, "m", "default", "s1")
        .expect("read")
        .expect("linked");
    for batch in [&mut b, &mut other] {
        batch.expect_link("m", "default", "s1", Expect::Rev(found.rev));
        batch.expect_no_link_to_second("m", "default", "t9");
        batch
            .put_link(&link("s1", "t9", found.rev + 1), Some(&again.second_id))
            .expect("stage");
    }
    store.apply(b).expect("repoint at the read revision");
    assert!(
        matches!(store.apply(other), Err(StoreError::Conflict(m)) if m.contains("revision")),
        "the second repoint read revision 1 and is refused"
    );
    let now = store
        .link_by_second("m", "default", "t9")
        .expect("read")
        .expect("repointed");
    assert_eq!((now.first_id.as_str(), now.rev), ("s1", 2));
    assert_eq!(
        store.link_by_second("m", "default", "t1").expect("read"),
        None
    );
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn racing_writers_on_noted_reads_link_a_target_once() {
    let (store, dir) = temp_store("noted-race");
    // Eight writers, each linking its own source to the same 200 targets in turn, each
    // from its own reads: every target ends with exactly one link.
    let targets = 200;
    std::thread::scope(|s| {
        for w in 0..8 {
            let store = &store;
            s.spawn(move || {
                for t in 0..targets {
                    let second = format!("t{t}");
                    let first = format!("w{w}-{t}");
                    let mut b = DataBatch::new();
                    let taken = store
                        .link_by_second_for(&mut b, "m", "default", &second)
                        .expect("read");
                    store
                        .link_by_first_for(&mut b, "m", "default", &first)
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
    let events: Vec<serde_json::Value> = (0..5).map(|i| serde_json::json!({ "n": i })).collect();
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
fn a_borrowed_link_record_is_stored_as_the_owned_one() {
    use records::{LinkRecord, LinkRecordView};
    let owned = codec::encode(&LinkRecord {
        second_id: "t/1".into(),
        rev: 7,
    })
    .expect("encode");
    let view = codec::encode(&LinkRecordView {
        second_id: "t/1",
        rev: 7,
    })
    .expect("encode");
    assert_eq!(owned, view);
    let back: LinkRecordView = codec::decode_borrowed(&view).expect("decode");
    assert_eq!((back.second_id, back.rev), ("t/1", 7));
}
