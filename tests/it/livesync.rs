//! liveSync (contract §7) through the real binary: a CSV source synchronized into managed/user
//! by `POST /openidm/system/<name>/<type>?_action=liveSync`, across restarts (SIGTERM and
//! SIGKILL), by a schedule, and recorded in the `sync` audit topic.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

const CONFIG: &str = r#"
[managed.user]
indexed = ["userName"]

[system.hr.account]
connector = "csv"
file = "data/hr.csv"
id_column = "uid"

[[mappings]]
name = "hr_user"
source = "system/hr/account"
target = "managed/user"
properties = [
  { source = "uid", target = "_id" },
  { source = "userName", target = "userName" },
  { source = "sn", target = "sn" },
]
policies = [
  { situation = "ABSENT", action = "CREATE" },
  { situation = "FOUND", action = "LINK" },
  { situation = "CONFIRMED", action = "UPDATE" },
  { situation = "SOURCE_MISSING", action = "DELETE" },
]
"#;

const HEADER: &str = "uid,userName,sn\n";

fn live_sync(s: &Server) -> Value {
    let r = s.post("/openidm/system/hr/account?_action=liveSync", None);
    assert_eq!(r.status, 200, "liveSync: {}", r.body);
    r.body
}

fn user(s: &Server, id: &str) -> Option<Value> {
    let r = s.get(&format!("/openidm/managed/user/{id}"));
    (r.status == 200).then_some(r.body)
}

fn users(s: &Server) -> u64 {
    s.query("/openidm/managed/user", "true")["resultCount"]
        .as_u64()
        .expect("resultCount")
}

/// The sync audit events of mapping hr_user, as (sourceObjectId, situation, action).
fn audit(s: &Server) -> Vec<(String, String, String)> {
    let body = s.query("/openidm/audit/sync", "mapping eq \"hr_user\"");
    body["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|e| {
            let f = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (f("sourceObjectId"), f("situation"), f("action"))
        })
        .collect()
}

#[test]
fn changes_are_picked_up_exactly_once_across_restarts() {
    let mut s = Server::start(
        CONFIG,
        &[("data/hr.csv", &format!("{HEADER}a,ann,Lee\nb,bob,Ray\n"))],
    );

    // First call: the token is recorded, nothing synchronized (IDM).
    let first = live_sync(&s);
    assert_eq!(first["_id"], "SYSTEMHRACCOUNT", "{first}");
    assert_eq!(first["_rev"], "1");
    assert_eq!(first["connectorData"]["nativeType"], "long");
    let t1 = first["connectorData"]["syncToken"]
        .as_u64()
        .expect("numeric token");
    assert_eq!(users(&s), 0, "the first liveSync synchronizes nothing");
    assert!(s
        .path("data/hr.csv.sync")
        .join(format!("{t1}.csv"))
        .exists());

    // Nothing changed: nothing happens, the token still advances.
    let again = live_sync(&s);
    assert!(again["connectorData"]["syncToken"].as_u64().expect("token") > t1);
    assert_eq!(again["_rev"], "2");
    assert_eq!(users(&s), 0);

    // A row added, then changed: created, then updated, once each; unchanged rows are not
    // synchronized.
    s.write(
        "data/hr.csv",
        &format!("{HEADER}a,ann,Lee\nb,bob,Ray\nc,cy,Sun\n"),
    );
    live_sync(&s);
    assert_eq!(users(&s), 1, "only the new row was synchronized");
    assert_eq!(user(&s, "c").expect("c created")["sn"], "Sun");
    s.write(
        "data/hr.csv",
        &format!("{HEADER}a,ann,Lee\nb,bob,Ray\nc,cy,Star\n"),
    );
    live_sync(&s);
    assert_eq!(user(&s, "c").expect("c")["sn"], "Star");
    let events = audit(&s);
    assert_eq!(
        events,
        vec![
            (
                "system/hr/account/c".into(),
                "ABSENT".into(),
                "CREATE".into()
            ),
            (
                "system/hr/account/c".into(),
                "CONFIRMED".into(),
                "UPDATE".into()
            ),
        ],
        "each change went through the mapping exactly once"
    );
    // Only the snapshot of the committed token is kept.
    let snapshots = std::fs::read_dir(s.path("data/hr.csv.sync"))
        .expect("sync folder")
        .count();
    assert_eq!(snapshots, 1);

    // SIGTERM: nothing replayed after the restart.
    s.restart();
    let after = live_sync(&s);
    assert_eq!(
        after["_rev"], "5",
        "the token survived the restart: {after}"
    );
    assert_eq!(audit(&s).len(), 2, "nothing replayed");

    // A change made while the server is down is picked up after the restart.
    s.stop();
    s.write(
        "data/hr.csv",
        &format!("{HEADER}a,ann,Lee\nb,bob,Ray\nc,cy,Star\nd,dee,Moon\n"),
    );
    s.start_again();
    live_sync(&s);
    assert_eq!(user(&s, "d").expect("d created while down")["sn"], "Moon");

    // Delete: SOURCE_MISSING -> DELETE; then SIGKILL right after the token was committed.
    s.write(
        "data/hr.csv",
        &format!("{HEADER}a,ann,Lee\nb,bob,Ray\nd,dee,Moon\n"),
    );
    live_sync(&s);
    assert!(user(&s, "c").is_none(), "c deleted");
    s.kill();
    s.start_again();
    let n = audit(&s).len();
    live_sync(&s);
    assert_eq!(audit(&s).len(), n, "nothing replayed after SIGKILL");
    assert_eq!(users(&s), 1, "d only");
    let events = audit(&s);
    assert_eq!(
        events.last().expect("an event"),
        &(
            "system/hr/account/c".to_string(),
            "SOURCE_MISSING".to_string(),
            "DELETE".to_string()
        )
    );

    // The sync audit events are IDM-shaped and readable by id.
    let q = s.query("/openidm/audit/sync", "true");
    let ev = &q["result"][0];
    for key in [
        "_id",
        "transactionId",
        "timestamp",
        "eventName",
        "userId",
        "action",
        "exception",
        "linkQualifier",
        "mapping",
        "message",
        "situation",
        "sourceObjectId",
        "targetObjectId",
        "status",
    ] {
        assert!(ev.get(key).is_some(), "{key} missing from {ev}");
    }
    assert_eq!(ev["eventName"], "sync");
    assert_eq!(ev["status"], "SUCCESS");
    assert_eq!(ev["targetObjectId"], "managed/user/c");
    let id = ev["_id"].as_str().expect("event id");
    let one = s.get(&format!("/openidm/audit/sync/{id}"));
    assert_eq!(one.status, 200);
    assert_eq!(&one.body, ev);
    assert_eq!(s.get("/openidm/audit/sync/nope").status, 404);
}

#[test]
fn idm_system_form_errors_and_a_missing_snapshot() {
    let s = Server::start(CONFIG, &[("data/hr.csv", &format!("{HEADER}a,ann,Lee\n"))]);
    let r = s.post(
        "/openidm/system?_action=liveSync&source=system/hr/account",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["_id"], "SYSTEMHRACCOUNT");
    let r = s.post(
        "/openidm/system?_action=liveSync&source=system/nope/account",
        None,
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = s.post("/openidm/system?_action=liveSync", None);
    assert_eq!(r.status, 400, "{}", r.body);
    // A set whose system cannot report changes.
    let r = s.post("/openidm/managed/user?_action=liveSync", None);
    assert_eq!(r.status, 400, "{}", r.body);

    // The snapshot of the stored token is gone: a clear error, the token is kept, nothing is
    // synchronized wholesale.
    std::fs::remove_dir_all(s.path("data/hr.csv.sync")).expect("remove sync folder");
    s.write("data/hr.csv", &format!("{HEADER}a,ann,Lee\nb,bob,Ray\n"));
    let r = s.post("/openidm/system/hr/account?_action=liveSync", None);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("is missing"),
        "{}",
        r.body
    );
    assert_eq!(users(&s), 0);
}

#[test]
fn a_schedule_with_a_livesync_invoker_fires_it() {
    // recon.toml's form: `source` instead of `mapping` (IDM's provisioner form of
    // schedule-*.json files is read into the same schedule; see the scheduler's unit tests).
    let config = format!(
        "{CONFIG}\n[[schedules]]\nname = \"hr-live\"\nschedule = \"* * * * * ?\"\nsource = \"system/hr/account\"\n"
    );
    let s = Server::start(&config, &[("data/hr.csv", &format!("{HEADER}a,ann,Lee\n"))]);
    let job = s.get("/openidm/scheduler/job/hr-live");
    assert_eq!(job.status, 200, "{}", job.body);
    assert_eq!(job.body["invokeService"], "provisioner");
    assert_eq!(
        job.body["invokeContext"],
        json!({"action": "liveSync", "source": "system/hr/account"})
    );
    // Wait until the first firing took its snapshot (the token it records), then change the
    // file (atomically, as the schedule keeps reading it).
    let deadline = Instant::now() + Duration::from_secs(30);
    let snapshot_taken = || {
        std::fs::read_dir(s.path("data/hr.csv.sync"))
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".csv"))
            })
            .unwrap_or(false)
    };
    while !snapshot_taken() {
        assert!(
            Instant::now() < deadline,
            "the schedule never fired: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s.write(
        "data/hr.csv.new",
        &format!("{HEADER}a,ann,Lee\nb,bob,Ray\n"),
    );
    std::fs::rename(s.path("data/hr.csv.new"), s.path("data/hr.csv")).expect("rename");
    let deadline = Instant::now() + Duration::from_secs(30);
    while user(&s, "b").is_none() {
        assert!(
            Instant::now() < deadline,
            "the schedule never synchronized b: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(user(&s, "b").expect("b")["sn"], "Ray");
    assert!(
        user(&s, "a").is_none(),
        "a was there before the first liveSync"
    );
}

#[test]
fn implicit_sync_writes_sync_audit_events_too() {
    let config = r#"
[managed.user]
indexed = ["userName"]

[system.lab.account]
connector = "store"

[[mappings]]
name = "user_lab"
source = "managed/user"
target = "system/lab/account"
properties = [ { source = "userName", target = "_id" }, { source = "sn", target = "sn" } ]
policies = [
  { situation = "ABSENT", action = "CREATE" },
  { situation = "CONFIRMED", action = "UPDATE" },
  { situation = "SOURCE_MISSING", action = "DELETE" },
]
"#;
    let s = Server::start(config, &[]);
    let r = s.put(
        "/openidm/managed/user/u1",
        &json!({"userName": "ann", "sn": "Lee"}),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(s.delete("/openidm/managed/user/u1").status, 200);
    let q = s.query("/openidm/audit/sync", "mapping eq \"user_lab\"");
    let got: Vec<(Value, Value, Value, Value)> = q["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|e| {
            (
                e["situation"].clone(),
                e["action"].clone(),
                e["sourceObjectId"].clone(),
                e["targetObjectId"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                json!("ABSENT"),
                json!("CREATE"),
                json!("managed/user/u1"),
                json!("system/lab/account/ann")
            ),
            (
                json!("SOURCE_MISSING"),
                json!("DELETE"),
                json!("managed/user/u1"),
                json!("system/lab/account/ann")
            ),
        ],
        "{q}"
    );
    // Paging: one event per page, the cookie leads to the next.
    let p1 = s.get("/openidm/audit/sync?_queryFilter=true&_pageSize=1");
    assert_eq!(p1.body["resultCount"], 1, "{}", p1.body);
    let cookie = p1.body["pagedResultsCookie"]
        .as_str()
        .expect("cookie")
        .to_string();
    let p2 = s.get(&format!(
        "/openidm/audit/sync?_queryFilter=true&_pageSize=1&_pagedResultsCookie={}",
        enc(&cookie)
    ));
    assert_eq!(
        p2.body["result"][0]["situation"], "SOURCE_MISSING",
        "{}",
        p2.body
    );
    // The recon topic is untouched by implicit synchronization.
    assert_eq!(s.query("/openidm/audit/recon", "true")["resultCount"], 0);
}

/// A liveSync into a managed set is a managed write like any other: the managed user it
/// creates, updates or deletes is synchronized on to managed/user's own mappings (IDM's
/// implicit synchronization), without a reconciliation.
#[test]
fn a_livesync_into_managed_objects_is_synchronized_on() {
    let config = format!(
        r#"{CONFIG}
[system.badge.account]
connector = "store"

[[mappings]]
name = "user_badge"
source = "managed/user"
target = "system/badge/account"
properties = [
  {{ source = "_id", target = "_id" }},
  {{ source = "userName", target = "holder" }},
]
policies = [
  {{ situation = "ABSENT", action = "CREATE" }},
  {{ situation = "CONFIRMED", action = "UPDATE" }},
  {{ situation = "SOURCE_MISSING", action = "DELETE" }},
]
"#
    );
    let s = Server::start(&config, &[("data/hr.csv", &format!("{HEADER}a,ann,Lee\n"))]);
    live_sync(&s);
    s.write("data/hr.csv", &format!("{HEADER}a,ann,Lee\nb,bob,Ray\n"));
    live_sync(&s);
    assert!(user(&s, "b").is_some(), "liveSync created the managed user");
    let badge = s.get("/openidm/system/badge/account/b");
    assert_eq!(
        badge.status, 200,
        "synchronized on to the badge system: {}",
        badge.body
    );
    assert_eq!(badge.body["holder"], "bob");
    s.write("data/hr.csv", &format!("{HEADER}a,ann,Lee\nb,bobby,Ray\n"));
    live_sync(&s);
    let badge = s.get("/openidm/system/badge/account/b");
    assert_eq!(badge.body["holder"], "bobby", "{}", badge.body);
    s.write("data/hr.csv", &format!("{HEADER}a,ann,Lee\n"));
    live_sync(&s);
    assert!(user(&s, "b").is_none());
    assert_eq!(s.get("/openidm/system/badge/account/b").status, 404);
}
