//! The database table connector's set called in this process (as the engine and the liveSync
//! service call it), against a real PostgreSQL server and SQLite files: a unit of work's
//! batched writes (one transaction, a bad row failing alone with the database's message),
//! liveSync by `changeLogColumn`, and TLS where the URL asks for it.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::helpers::TempDir;
use crate::pg::Pg;
use recond::objects::{ObjectErrorKind, ObjectSet, WriteOp};

const TABLE: &str = "CREATE TABLE people (
    uid text PRIMARY KEY, email text NOT NULL, changed bigint);";

fn open(url: &str, user: &str, change_log: &str) -> Arc<dyn ObjectSet> {
    let p = recond::idm::Provisioner::parse(
        std::path::Path::new("/p/conf/provisioner.openicf-hrdb.json"),
        json!({
            "connectorRef": {"connectorName":
                "org.identityconnectors.databasetable.DatabaseTableConnector"},
            "configurationProperties": {"url": url, "user": user, "table": "people",
                "keyColumn": "uid", "changeLogColumn": change_log},
            "objectTypes": {"account": {"nativeType": "__ACCOUNT__"}}
        }),
        "hrdb",
    )
    .expect("provisioner");
    recond::connectors::open_set("system/hrdb/account", &Arc::new(p), "account").expect("open")
}

fn create(uid: &str, email: Option<&str>) -> WriteOp {
    let mut body = json!({"uid": uid});
    if let Some(e) = email {
        body["email"] = json!(e);
    }
    WriteOp::Create { id: None, body }
}

/// A batch with a bad row in the middle: the others are written, the bad one fails alone with
/// the database's message; updates and deletes in the same batch; a delete of a missing row is
/// its own NotFound.
fn batch_cases(set: &dyn ObjectSet, rows: &dyn Fn() -> Vec<(String, String)>) {
    // The model is read on first use (as the engine's snapshot read does before a run).
    assert_eq!(set.count().expect("count"), 0);
    assert!(set.batches_writes());
    assert_eq!(
        set.planned_id(None, &json!({"uid": "x1", "email": "e"})),
        Some("x1".to_string())
    );
    let results = set
        .write_batch(vec![
            create("a1", Some("a1@example.com")),
            create("a2", None),
            create("o'neil", Some("o'neil@example.com")),
        ])
        .expect("the batch");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].as_ref().expect("a1")["_id"], "a1");
    let e = results[1].as_ref().expect_err("NOT NULL");
    assert_eq!(e.kind, ObjectErrorKind::BadRequest, "{e}");
    assert!(e.message.to_lowercase().contains("null"), "{e}");
    assert_eq!(results[2].as_ref().expect("o'neil")["_id"], "o'neil");
    assert_eq!(
        rows(),
        vec![
            ("a1".to_string(), "a1@example.com".to_string()),
            ("o'neil".to_string(), "o'neil@example.com".to_string()),
        ]
    );
    let results = set
        .write_batch(vec![
            WriteOp::Update {
                id: "a1".into(),
                body: json!({"email": "new@example.com"}),
            },
            WriteOp::Delete {
                id: "o'neil".into(),
            },
            WriteOp::Delete {
                id: "nobody".into(),
            },
            create("a1", Some("dup@example.com")),
            create("b1", Some("b1@example.com")),
        ])
        .expect("the second batch");
    assert_eq!(
        results[0].as_ref().expect("update")["email"],
        "new@example.com"
    );
    assert_eq!(results[1].as_ref().expect("delete")["_id"], "o'neil");
    assert_eq!(
        results[2]
            .as_ref()
            .map_err(|e| e.kind)
            .expect_err("missing"),
        ObjectErrorKind::NotFound
    );
    assert_eq!(
        results[3]
            .as_ref()
            .map_err(|e| e.kind)
            .expect_err("duplicate"),
        ObjectErrorKind::AlreadyExists
    );
    assert!(results[4].is_ok(), "{:?}", results[4]);
    assert_eq!(
        rows(),
        vec![
            ("a1".to_string(), "new@example.com".to_string()),
            ("b1".to_string(), "b1@example.com".to_string()),
        ]
    );
}

#[test]
fn postgres_batches_commit_good_rows_and_fail_bad_ones_alone() {
    let Some(pg) = Pg::start() else { return };
    pg.exec(TABLE);
    let set = open(&pg.url(), "postgres", "");
    batch_cases(set.as_ref(), &|| {
        pg.client()
            .query("SELECT uid, email FROM people ORDER BY uid", &[])
            .expect("select")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    });
    // A large batch goes out in multi-row statements and comes back in order.
    let ops: Vec<WriteOp> = (0..2500)
        .map(|i| create(&format!("u{i:05}"), Some("x@example.com")))
        .collect();
    let results = set.write_batch(ops).expect("a large batch");
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.as_ref().expect("written")["_id"], format!("u{i:05}"));
    }
}

#[test]
fn sqlite_batches_commit_good_rows_and_fail_bad_ones_alone() {
    let dir = TempDir::new("sqlbatch");
    let file = dir.0.join("app.db");
    rusqlite::Connection::open(&file)
        .and_then(|c| c.execute_batch(TABLE))
        .expect("create the sqlite file");
    let set = open(&format!("jdbc:sqlite:{}", file.display()), "", "");
    batch_cases(set.as_ref(), &|| {
        let c = rusqlite::Connection::open(&file).expect("open");
        let mut st = c
            .prepare("SELECT uid, email FROM people ORDER BY uid")
            .expect("prepare");
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("select")
            .collect::<Result<_, _>>()
            .expect("rows")
    });
}

fn ids(batch: &recond::objects::ChangeBatch) -> Vec<String> {
    batch.changes.iter().map(|c| c.id.clone()).collect()
}

/// liveSync on any database: `exec` runs SQL on it.
fn live_sync_cases(set: &dyn ObjectSet, exec: &dyn Fn(&str)) {
    exec("INSERT INTO people VALUES ('old', 'o@example.com', 5)");
    // The first call answers where the table is now, and no changes.
    let first = set.changes_since(None).expect("first call");
    assert!(first.changes.is_empty(), "{first:?}");
    let again = set.changes_since(Some(&first.token)).expect("nothing new");
    assert!(again.changes.is_empty(), "{again:?}");

    exec(
        "INSERT INTO people VALUES ('b', 'b@example.com', 7), ('a', 'a@example.com', 7);
         UPDATE people SET email = 'old@example.com', changed = 6 WHERE uid = 'old';",
    );
    let b1 = set.changes_since(Some(&first.token)).expect("changes");
    assert_eq!(ids(&b1), ["old", "a", "b"], "in change order: {b1:?}");
    assert_eq!(
        b1.changes[0].object.as_ref().expect("an object")["email"],
        "old@example.com"
    );
    // Asked again from the same token (a crash before it was persisted): the same changes.
    let replay = set.changes_since(Some(&first.token)).expect("replay");
    assert_eq!(ids(&replay), ids(&b1));
    set.token_committed(&b1.token).expect("committed");

    // A row sharing the boundary value, written after the read, is seen once; the rows
    // already seen at that value are not replayed.
    exec("INSERT INTO people VALUES ('c', 'c@example.com', 7)");
    let b2 = set.changes_since(Some(&b1.token)).expect("boundary");
    assert_eq!(ids(&b2), ["c"], "{b2:?}");
    let b3 = set.changes_since(Some(&b2.token)).expect("quiet");
    assert!(b3.changes.is_empty(), "{b3:?}");

    // Deletes leave nothing to see in a change-log column.
    exec("DELETE FROM people WHERE uid = 'a'; UPDATE people SET changed = 9 WHERE uid = 'b'");
    let b4 = set.changes_since(Some(&b3.token)).expect("after a delete");
    assert_eq!(ids(&b4), ["b"], "{b4:?}");

    let e = set
        .changes_since(Some(&json!("not a token")))
        .expect_err("a foreign token");
    assert_eq!(e.kind, ObjectErrorKind::BadRequest, "{e}");
}

#[test]
fn postgres_live_sync_by_change_log_column() {
    let Some(pg) = Pg::start() else { return };
    pg.exec(TABLE);
    let set = open(&pg.url(), "postgres", "changed");
    live_sync_cases(set.as_ref(), &|sql| pg.exec(sql));
    // Without a changeLogColumn the set says liveSync is not supported.
    let plain = open(&pg.url(), "postgres", "");
    let e = plain.changes_since(None).expect_err("no column");
    assert_eq!(e.kind, ObjectErrorKind::NotSupported, "{e}");
    assert!(e.message.contains("changeLogColumn"), "{e}");
}

#[test]
fn sqlite_live_sync_by_change_log_column() {
    let dir = TempDir::new("sqlsync");
    let file = dir.0.join("app.db");
    rusqlite::Connection::open(&file)
        .and_then(|c| c.execute_batch(TABLE))
        .expect("create the sqlite file");
    let set = open(&format!("jdbc:sqlite:{}", file.display()), "", "changed");
    live_sync_cases(set.as_ref(), &|sql| {
        rusqlite::Connection::open(&file)
            .and_then(|c| c.execute_batch(sql))
            .expect("sqlite exec")
    });
}

#[test]
fn tls_where_the_url_asks_for_it() {
    let Some(pg) = Pg::start_tls() else { return };
    pg.exec(TABLE);
    pg.exec("INSERT INTO people VALUES ('t1', 't@example.com', 1)");
    let cert = pg.tls_cert().expect("the server's certificate");
    let base = format!("jdbc:postgresql://127.0.0.1:{}/postgres", pg.port);
    let read = |query: &str| -> Result<Option<Value>, recond::objects::ObjectError> {
        // `tlsonly` may log in over TLS only (pg_hba), so a success proves TLS was used.
        open(&format!("{base}{query}"), "tlsonly", "").read("t1")
    };
    for q in [
        "?sslmode=require".to_string(),
        "?ssl=true&sslfactory=org.postgresql.ssl.NonValidatingFactory".to_string(),
        format!("?sslmode=verify-full&sslrootcert={}", cert.display()),
        format!("?ssl=true&sslrootcert={}", cert.display()),
    ] {
        let v = read(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(v.expect("the row")["email"], "t@example.com", "{q}");
    }
    // Plain TCP is refused by the server for this user; a self-signed certificate is refused
    // by verify-full without the authority; both name the database.
    for q in ["?sslmode=disable", "?ssl=true", "?sslmode=verify-ca"] {
        let e = read(q).expect_err(q);
        assert_eq!(e.kind, ObjectErrorKind::Unavailable, "{q}: {e}");
        assert!(
            e.message.contains("cannot connect to PostgreSQL"),
            "{q}: {e}"
        );
    }
}
