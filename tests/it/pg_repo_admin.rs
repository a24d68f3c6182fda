//! The PostgreSQL repository's housekeeping, on a real PostgreSQL (see `pg_shared`):
//! versioned migrations, store calls from async tasks (the blocking client moved off the
//! runtime), and the planner statistics a first load needs.

use std::path::Path;

use recond::storage::{DataBatch, Store, StoreError};
use serde_json::json;

use super::pg_shared::{client, fresh_database};
use super::pg_store::{link, obj, open, options};

/// Migrations: a fresh database is migrated, opening again changes nothing, nodes opening at
/// once all succeed with one version row each, and a newer schema is refused.
#[test]
fn pg_migrations_fresh_idempotent_concurrent_and_newer_refused() {
    let Some(url) = fresh_database("pg_migrate") else {
        return;
    };
    std::thread::scope(|s| {
        let opened: Vec<_> = (0..4)
            .map(|_| s.spawn(|| Store::open(Path::new("/nonexistent"), &options(&url)).map(|_| ())))
            .collect();
        for o in opened {
            o.join()
                .expect("no panic")
                .expect("a node starting at the same time opens");
        }
    });
    let versions = |c: &mut postgres::Client| -> Vec<i32> {
        c.query(
            "SELECT version FROM recond_schema_version ORDER BY version",
            &[],
        )
        .expect("versions")
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let mut c = client(&url);
    let once = versions(&mut c);
    assert_eq!(once.first(), Some(&1));
    drop(open(&url));
    assert_eq!(versions(&mut c), once, "opening again applies nothing");
    c.execute(
        "INSERT INTO recond_schema_version (version, name) VALUES (999, 'future')",
        &[],
    )
    .expect("a newer version");
    match Store::open(Path::new("/nonexistent"), &options(&url)) {
        Err(StoreError::Schema(m)) => assert!(m.contains("999"), "{m}"),
        Err(e) => panic!("expected a schema error, got {e}"),
        Ok(_) => panic!("a newer schema was accepted"),
    }
}

/// The blocking client is moved off the runtime: store calls from async tasks of a
/// multi-threaded runtime (as the HTTP layer makes them) work instead of panicking.
#[test]
fn pg_store_calls_from_async_tasks_work() {
    let Some(url) = fresh_database("pg_async") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Opened on the runtime's own thread (as `App::build` is).
        let store = open(&url);
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut b = DataBatch::new();
                    b.put_object("managed/x", &format!("o{i}"), 1, &obj(json!({})), &[], &[])
                        .expect("stage");
                    store.apply(b).expect("apply from a task");
                    store.flush_async().await.expect("flush");
                    store
                        .object_exists("managed/x", &format!("o{i}"))
                        .expect("read")
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.expect("task"));
        }
        assert_eq!(store.count_objects("managed/x").expect("count"), 8);
    });
}

/// Regression: a first load looked links up by source through the target-side unique index
/// (only link type and qualifier as its condition, every other link read) as long as the
/// tables had no statistics, 4.6 ms an object at 20,000. The repository refreshes them once
/// it has written its first 1,000 rows: the lookups then use the primary key.
#[test]
fn pg_lookups_use_the_right_index_during_a_first_load() {
    let Some(url) = fresh_database("pg_plans") else {
        return;
    };
    let store = open(&url);
    let mut b = DataBatch::new();
    for i in 0..1_500 {
        let id = format!("u{i:06}");
        b.put_link(&link(&id, &id, 1), None).expect("stage");
    }
    store.apply(b).expect("apply");
    let mut c = client(&url);
    let plan = |c: &mut postgres::Client, sql: &str| -> String {
        c.query(sql, &[])
            .expect("explain")
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let by_first = plan(
        &mut c,
        "EXPLAIN SELECT second_id, rev FROM recond_links \
         WHERE link_type = 'm' AND qualifier = 'default' AND first_id = 'u000001'",
    );
    assert!(by_first.contains("recond_links_pkey"), "{by_first}");
    let by_second = plan(
        &mut c,
        "EXPLAIN SELECT first_id, rev FROM recond_links \
         WHERE link_type = 'm' AND qualifier = 'default' AND second_id = 'u000001'",
    );
    assert!(
        by_second.contains("recond_links_one_per_second"),
        "{by_second}"
    );
}
