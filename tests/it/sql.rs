//! The database table connector through the real binary, against a real PostgreSQL server
//! (see `pg`) and SQLite files made here: provisioner files in a temporary IDM conf folder,
//! PostgreSQL → managed (first load and steady run), managed → PostgreSQL (create, update,
//! delete), a SQLite source, filters with quotes and injection attempts, a NOT NULL violation
//! failing one entry, a database that is down, and one stopped while a run holds a unit.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;
use crate::pg::Pg;

fn provisioner(name: &str, url: &str, table: &str, key: &str) -> String {
    json!({
        "name": name,
        "connectorRef": {
            "bundleName": "org.forgerock.openicf.connectors.databasetable-connector",
            "bundleVersion": "[1.5.0.0,1.6.0.0)",
            "connectorName": "org.identityconnectors.databasetable.DatabaseTableConnector"
        },
        "configurationProperties": {
            "url": url, "user": "postgres", "password": "", "table": table,
            "keyColumn": key, "passwordColumn": "pw", "enableEmptyString": false,
            "changeLogColumn": "", "quoting": ""
        },
        "objectTypes": {"account": {
            "$schema": "http://json-schema.org/draft-03/schema",
            "id": "__ACCOUNT__", "type": "object", "nativeType": "__ACCOUNT__",
            "properties": {
                "uid": {"type": "string", "nativeName": "__NAME__", "nativeType": "string"},
                "email": {"type": "string", "nativeName": "email", "nativeType": "string"},
                "age": {"type": "integer", "nativeName": "age", "nativeType": "integer"},
                "active": {"type": "boolean", "nativeName": "active", "nativeType": "boolean"},
                "password": {"type": "string", "nativeName": "__PASSWORD__",
                             "nativeType": "JAVA_TYPE_GUARDEDSTRING",
                             "flags": ["NOT_READABLE", "NOT_RETURNED_BY_DEFAULT"]}
            }
        }}
    })
    .to_string()
}

const FROM_DB: &str = r#"
idm_conf_dir = "conf"

[managed.user]
indexed = ["userName"]

[[mappings]]
name = "hrdb"
source = "system/hrdb/account"
target = "managed/user"
properties = [
  { source = "uid", target = "userName" },
  { source = "email", target = "mail" },
  { source = "age", target = "age" },
]
"#;

const TO_DB: &str = r#"
idm_conf_dir = "conf"

[managed.user]
indexed = ["userName"]

[[mappings]]
name = "out"
source = "managed/user"
target = "system/hrdb/account"
# The test seeds managed users over REST and checks what a reconciliation does with them.
enableSync = false
correlationQuery = { expressionTree = { all = ["uid"] } }
properties = [
  { source = "userName", target = "uid" },
  { source = "mail", target = "email" },
  { source = "password", target = "password" },
]
policies = [
  { situation = "ABSENT", action = "CREATE" },
  { situation = "FOUND", action = "LINK" },
  { situation = "CONFIRMED", action = "UPDATE" },
  { situation = "SOURCE_MISSING", action = "DELETE" },
  { situation = "UNQUALIFIED", action = "DELETE" },
]
"#;

const PEOPLE: &str = "CREATE TABLE people (
    uid text PRIMARY KEY, email text NOT NULL, age integer, active boolean, pw text,
    created timestamptz DEFAULT now());";

fn counts(run: &Value) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = run["situationSummary"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, n)| n.as_u64().filter(|n| *n > 0).map(|n| (k.clone(), n)))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn pairs(p: &[(&str, u64)]) -> Vec<(String, u64)> {
    p.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

fn start_with(config: &str, prov: &str) -> Server {
    Server::start(config, &[("conf/provisioner.openicf-hrdb.json", prov)])
}

fn ids(body: &Value) -> Vec<String> {
    let mut v: Vec<String> = body["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn postgres_table_to_managed_first_load_then_steady() {
    let Some(pg) = Pg::start() else { return };
    pg.exec(PEOPLE);
    pg.exec(
        "INSERT INTO people (uid, email, age, active, pw) VALUES
           ('alice', 'alice@example.com', 34, true, 'secret'),
           ('bob', 'b''ob@example.com', 27, false, NULL),
           ('carol', '50%_off@example.com', NULL, NULL, NULL);",
    );
    let s = start_with(FROM_DB, &provisioner("hrdb", &pg.url(), "people", "uid"));

    // Reads: SQL types as JSON, NULL absent, the password never returned.
    let a = s.get("/openidm/system/hrdb/account/alice");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["_id"], "alice");
    assert_eq!(a.body["uid"], "alice");
    assert_eq!(a.body["age"], 34);
    assert_eq!(a.body["active"], true);
    assert!(a.body.get("password").is_none() && a.body.get("pw").is_none());
    assert!(a.body["_rev"].is_string());
    let c = s.get("/openidm/system/hrdb/account/carol");
    assert!(c.body.get("age").is_none(), "NULL is absent: {}", c.body);
    assert_eq!(s.get("/openidm/system/hrdb/account/nobody").status, 404);

    let run = s.run("hrdb", "");
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(counts(&run), pairs(&[("ABSENT", 3)]));
    let users = s.query("/openidm/managed/user", "userName eq \"bob\"");
    assert_eq!(users["result"][0]["mail"], "b'ob@example.com");
    assert_eq!(users["result"][0]["age"], 27);

    let run = s.run("hrdb", "");
    assert_eq!(counts(&run), pairs(&[("CONFIRMED", 3)]));
    assert_eq!(run["statusSummary"]["FAILURE"], 0, "{run}");
}

#[test]
fn filters_bind_values_and_injection_does_nothing() {
    let Some(pg) = Pg::start() else { return };
    pg.exec(PEOPLE);
    pg.exec(
        "INSERT INTO people (uid, email, age) VALUES
           ('alice', 'alice@example.com', 34), ('bob', 'b''ob@example.com', 27),
           ('carol', '50%_off@example.com', NULL), ('dave', '50xx@example.com', 61);",
    );
    let s = start_with(FROM_DB, &provisioner("hrdb", &pg.url(), "people", "uid"));
    let set = "/openidm/system/hrdb/account";
    for (filter, expected) in [
        (r#"uid eq "x' OR '1'='1""#, vec![]),
        (r#"email eq "x'; DROP TABLE people; --""#, vec![]),
        (r#"email eq "b'ob@example.com""#, vec!["bob"]),
        (r#"email sw "50%""#, vec!["carol"]),
        (r#"email co "%_""#, vec!["carol"]),
        ("age gt 30", vec!["alice", "dave"]),
        ("age le 27 or age ge 61", vec!["bob", "dave"]),
        ("!(age pr)", vec!["carol"]),
        ("!(age gt 30)", vec!["bob", "carol"]),
        ("uid eq \"alice\" and age eq 34", vec!["alice"]),
        ("age eq \"34\"", vec![]),
        (r#"_id eq "dave""#, vec!["dave"]),
        ("true", vec!["alice", "bob", "carol", "dave"]),
        ("false", vec![]),
        ("password eq \"x\"", vec![]),
    ] {
        let body = s.query(set, filter);
        assert_eq!(ids(&body), expected, "{filter}: {body}");
    }
    // Nothing was harmed, and paging by cookie walks the table.
    let count = people_rows(&pg);
    assert_eq!(count, 4);
    let p1 = s.get(&format!("{set}?_queryFilter=true&_pageSize=3"));
    assert_eq!(ids(&p1.body), ["alice", "bob", "carol"]);
    let cookie = p1.body["pagedResultsCookie"].as_str().expect("a cookie");
    let p2 = s.get(&format!(
        "{set}?_queryFilter=true&_pageSize=3&_pagedResultsCookie={cookie}"
    ));
    assert_eq!(ids(&p2.body), ["dave"]);
}

#[test]
fn managed_to_postgres_create_update_delete_and_not_null() {
    let Some(pg) = Pg::start() else { return };
    pg.exec(PEOPLE);
    let s = start_with(TO_DB, &provisioner("hrdb", &pg.url(), "people", "uid"));
    for (id, body) in [
        (
            "m1",
            json!({"userName": "ann", "mail": "ann@example.com", "password": "pw1"}),
        ),
        (
            "m2",
            json!({"userName": "o'neil", "mail": "o'neil@example.com"}),
        ),
        ("m3", json!({"userName": "nomail"})),
    ] {
        let r = s.put(&format!("/openidm/managed/user/{id}"), &body, &[]);
        assert!(r.status == 201 || r.status == 200, "{}", r.body);
    }
    let run = s.run("out", "&persistAssociations=true");
    assert_eq!(counts(&run), pairs(&[("ABSENT", 3)]), "{run}");
    assert_eq!(run["statusSummary"]["SUCCESS"], 2, "{run}");
    assert_eq!(
        run["statusSummary"]["FAILURE"], 1,
        "the NOT NULL row fails alone: {run}"
    );
    let rows = |sql: &str| -> Vec<(String, Option<String>, Option<String>)> {
        pg.client()
            .query(sql, &[])
            .expect("select")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    assert_eq!(
        rows("SELECT uid, email, pw FROM people ORDER BY uid"),
        vec![
            (
                "ann".into(),
                Some("ann@example.com".into()),
                Some("pw1".into())
            ),
            ("o'neil".into(), Some("o'neil@example.com".into()), None),
        ]
    );
    // The failed entry carries the database's message.
    let entries = s.get(&format!(
        "/openidm/recon/assoc/{}/entry?_queryFilter=true",
        run["_id"].as_str().unwrap_or_default(),
    ));
    assert_eq!(entries.status, 200, "{}", entries.body);
    let text = entries.body.to_string();
    assert!(text.contains("null value in column"), "{text}");
    // Over REST the same violation is a 400 with the database's message.
    let r = s.post(
        "/openidm/system/hrdb/account?_action=create",
        Some(&json!({"uid": "x"})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.to_string().contains("null value"), "{}", r.body);

    // Update, then delete through SOURCE_MISSING.
    let r = s.put(
        "/openidm/managed/user/m1",
        &json!({"userName": "ann", "mail": "ann@new.example", "password": "pw1"}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.delete("/openidm/managed/user/m2").status, 200);
    assert_eq!(s.delete("/openidm/managed/user/m3").status, 200);
    let run = s.run("out", "");
    assert_eq!(run["statusSummary"]["FAILURE"], 0, "{run}");
    assert_eq!(
        rows("SELECT uid, email, pw FROM people ORDER BY uid"),
        vec![(
            "ann".into(),
            Some("ann@new.example".into()),
            Some("pw1".into())
        )]
    );
}

#[test]
fn sqlite_source_with_integer_keys_and_booleans() {
    let dir = TempDir::new("sqlite");
    let file = dir.0.join("app.db");
    {
        let c = rusqlite::Connection::open(&file).expect("create sqlite file");
        c.execute_batch(
            "CREATE TABLE people (uid INTEGER PRIMARY KEY, email TEXT NOT NULL, age INTEGER,
                                  active BOOLEAN, pw TEXT);
             INSERT INTO people VALUES (1, 'one@example.com', 30, 1, 'x'),
                                       (2, 'two''s@example.com', NULL, 0, NULL);",
        )
        .expect("fill sqlite");
    }
    let url = format!("jdbc:sqlite:{}", file.display());
    let s = start_with(FROM_DB, &provisioner("hrdb", &url, "people", "uid"));
    let o = s.get("/openidm/system/hrdb/account/1");
    assert_eq!(o.status, 200, "{}", o.body);
    assert_eq!(o.body["_id"], "1");
    assert_eq!(o.body["active"], true);
    assert_eq!(o.body["uid"], "1");
    let body = s.query(
        "/openidm/system/hrdb/account",
        r#"email eq "two's@example.com""#,
    );
    assert_eq!(ids(&body), ["2"]);
    let body = s.query("/openidm/system/hrdb/account", r#"email eq "x' OR 1=1 --""#);
    assert_eq!(ids(&body), Vec::<String>::new());
    let run = s.run("hrdb", "");
    assert_eq!(counts(&run), pairs(&[("ABSENT", 2)]), "{run}");
    let users = s.query("/openidm/managed/user", "userName eq \"2\"");
    assert_eq!(users["result"][0]["mail"], "two's@example.com");
    // Writes go to the file.
    let r = s.put(
        "/openidm/system/hrdb/account/3",
        &json!({"email": "three@example.com", "active": false}),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["_id"], "3");
    let c = rusqlite::Connection::open(&file).expect("open");
    let email: String = c
        .query_row("SELECT email FROM people WHERE uid = 3", [], |r| r.get(0))
        .expect("row 3");
    assert_eq!(email, "three@example.com");
}

#[test]
fn a_database_that_is_down_fails_the_run_fast_and_clearly() {
    let Some(mut pg) = Pg::start() else { return };
    pg.exec(PEOPLE);
    let url = pg.url();
    pg.stop();
    // The server starts while the database is down: connecting is lazy.
    let s = start_with(FROM_DB, &provisioner("hrdb", &url, "people", "uid"));
    let started = Instant::now();
    let r = s.post(
        "/openidm/recon?_action=recon&mapping=hrdb&waitForCompletion=true",
        None,
    );
    // Either refused at the start or a failed run; fast, naming the database either way.
    let text = if r.status == 200 {
        let run = s.wait_run(r.body["_id"].as_str().expect("run id"));
        assert_eq!(run["state"], "FAILED", "{run}");
        run.to_string()
    } else {
        r.body.to_string()
    };
    assert!(started.elapsed() < Duration::from_secs(20), "{text}");
    assert!(
        text.contains("cannot connect to PostgreSQL at 127.0.0.1"),
        "{text}"
    );
    let r = s.get("/openidm/system/hrdb/account/alice");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.to_string().contains("PostgreSQL"), "{}", r.body);
}

#[test]
fn a_lost_connection_fails_fast_and_recovers_when_the_database_returns() {
    let Some(mut pg) = Pg::start() else { return };
    pg.exec(PEOPLE);
    pg.exec("INSERT INTO people (uid, email) VALUES ('alice', 'a@example.com');");
    let s = start_with(FROM_DB, &provisioner("hrdb", &pg.url(), "people", "uid"));
    // A pooled connection now exists; the server goes away under it.
    assert_eq!(s.get("/openidm/system/hrdb/account/alice").status, 200);
    pg.stop();
    let started = Instant::now();
    let r = s.get("/openidm/system/hrdb/account/alice");
    assert!(started.elapsed() < Duration::from_secs(15), "{}", r.body);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.to_string().contains("PostgreSQL at 127.0.0.1"),
        "{}",
        r.body
    );
    pg.restart();
    let r = s.get("/openidm/system/hrdb/account/alice");
    assert_eq!(r.status, 200, "the set reconnects: {}", r.body);
    let run = s.run("hrdb", "");
    assert_eq!(run["state"], "SUCCESS", "{run}");
}

/// The database goes away while a run holds a unit it has assessed (the test hook holds the
/// worker before its writes): the run fails, naming the database, without hanging; nothing of
/// the unit was written or linked, so the run after the database is back creates every row.
#[test]
fn the_database_stopped_mid_run_fails_the_run_clearly() {
    let Some(mut pg) = Pg::start() else { return };
    pg.exec(PEOPLE);
    let hold = TempDir::new("pghold");
    let s = held_server(&pg, TO_DB, &hold);
    for i in 0..3 {
        let body = json!({"userName": format!("u{i}"), "mail": format!("u{i}@example.com")});
        let r = s.put(&format!("/openidm/managed/user/m{i}"), &body, &[]);
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let rid = start_held_run(&s, &hold, "");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !hold.0.join("held").exists() {
        assert!(
            Instant::now() < deadline,
            "the run never reached its writes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    pg.stop();
    std::fs::remove_file(hold.0.join("gate")).expect("open the gate");
    let released = Instant::now();
    let run = s.wait_run(&rid);
    assert!(released.elapsed() < Duration::from_secs(20), "{run}");
    assert_eq!(run["state"], "FAILED", "{run}");
    let text = run.to_string();
    assert!(text.contains("PostgreSQL at 127.0.0.1"), "{text}");

    pg.restart();
    let rows = people_rows(&pg);
    assert_eq!(rows, 0, "nothing of the held unit was written");
    let run = s.run("out", "");
    assert_eq!(
        counts(&run),
        pairs(&[("ABSENT", 3)]),
        "no link was kept: {run}"
    );
    assert_eq!(run["statusSummary"]["SUCCESS"], 3, "{run}");
}

#[test]
fn configuration_errors_name_the_file() {
    let prov = provisioner("hrdb", "jdbc:mysql://127.0.0.1/hr", "people", "uid");
    let dir = TempDir::new("sqlconf");
    std::fs::create_dir_all(dir.0.join("conf")).expect("mkdir");
    std::fs::write(dir.0.join("conf/provisioner.openicf-hrdb.json"), prov).expect("write");
    std::fs::write(dir.0.join("recon.toml"), format!("{FROM_DB}\n{USERS}")).expect("write");
    let (code, out) = run_binary(
        &["--config", "recon.toml", "--listen", "127.0.0.1:0"],
        &dir.0,
    );
    assert_eq!(code, Some(2), "a configuration error: {out}");
    assert!(
        out.contains("jdbc:mysql") && out.contains("provisioner.openicf-hrdb.json"),
        "{out}"
    );
}

/// liveSync over REST through the real server against PostgreSQL, by `changeLogColumn`: the
/// first call records where the table is and synchronizes nothing; rows inserted or changed
/// after it reach managed/user through the mapping; asked again, nothing is repeated.
#[test]
fn postgres_live_sync_over_rest_reaches_managed_users() {
    let Some(pg) = Pg::start() else { return };
    pg.exec(
        "CREATE TABLE people (uid text PRIMARY KEY, email text NOT NULL, age integer,
           active boolean, pw text, changed bigint NOT NULL);
         INSERT INTO people (uid, email, changed) VALUES ('old', 'old@example.com', 1);",
    );
    let mut prov: Value =
        serde_json::from_str(&provisioner("hrdb", &pg.url(), "people", "uid")).expect("json");
    prov["configurationProperties"]["changeLogColumn"] = json!("changed");
    let s = start_with(FROM_DB, &prov.to_string());
    let live = || {
        let r = s.post("/openidm/system/hrdb/account?_action=liveSync", None);
        assert_eq!(r.status, 200, "liveSync: {}", r.body);
        r.body
    };
    let users = || ids(&s.query("/openidm/managed/user", "true"));
    let audited = || {
        s.query("/openidm/audit/sync", "true")["resultCount"]
            .as_u64()
            .expect("resultCount")
    };

    let first = live();
    assert!(first["connectorData"].is_object(), "{first}");
    assert!(users().is_empty(), "the first call only records the token");

    pg.exec(
        "INSERT INTO people (uid, email, age, changed) VALUES ('new', 'new@example.com', 40, 2);
         UPDATE people SET email = 'o2@example.com', changed = 3 WHERE uid = 'old';",
    );
    live();
    assert_eq!(users().len(), 2, "{:?}", users());
    let found = s.query("/openidm/managed/user", "userName eq \"old\"");
    assert_eq!(found["result"][0]["mail"], "o2@example.com", "{found}");
    let found = s.query("/openidm/managed/user", "userName eq \"new\"");
    assert_eq!(found["result"][0]["age"], 40, "{found}");

    let before = audited();
    live();
    assert_eq!(audited(), before, "nothing synchronized twice");
}

/// Starts mapping `out` with the hold gate set to `gate` (empty: hold the first unit; `k`:
/// let `k` units through first) and returns the run's id.
fn start_held_run(s: &Server, hold: &TempDir, gate: &str) -> String {
    std::fs::write(hold.0.join("gate"), gate).expect("gate");
    let r = s.post("/openidm/recon?_action=recon&mapping=out", None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["_id"].as_str().expect("run id").to_string()
}

/// The number of rows in `pg`'s people table.
fn people_rows(pg: &Pg) -> i64 {
    pg.client()
        .query_one("SELECT count(*) FROM people", &[])
        .expect("count")
        .get(0)
}

/// A recond writing managed users to `pg`'s people table with `config`, its runs held by the
/// test hook in `hold`'s folder.
fn held_server(pg: &Pg, config: &str, hold: &TempDir) -> Server {
    Server::start_with_env(
        config,
        &[(
            "conf/provisioner.openicf-hrdb.json",
            &provisioner("hrdb", &pg.url(), "people", "uid"),
        )],
        &[("RECOND_TEST_HOLD_DIR", &hold.0.to_string_lossy())],
    )
}

/// `TO_DB` with units of `n` objects.
fn to_db_in_units_of(n: usize) -> String {
    format!("{TO_DB}\n[recon]\nbatch_size = {n}\n")
}

#[test]
fn a_failed_unit_write_keeps_nothing_of_the_units_staged_after_it() {
    // Units of two: the first commits, the second is held before its writes (the assessing
    // side stages the next units meanwhile), the database stops, the second's batch fails.
    let Some(mut pg) = Pg::start() else { return };
    pg.exec(PEOPLE);
    let hold = TempDir::new("pgpipe");
    let s = held_server(&pg, &to_db_in_units_of(2), &hold);
    for i in 0..8 {
        let body = json!({"userName": format!("u{i}"), "mail": format!("u{i}@example.com")});
        let r = s.put(&format!("/openidm/managed/user/m{i}"), &body, &[]);
        assert_eq!(r.status, 201, "{}", r.body);
    }
    std::fs::write(hold.0.join("gate"), "1").expect("gate");
    let r = s.post(
        "/openidm/recon?_action=recon&mapping=out&persistAssociations=true",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let rid = r.body["_id"].as_str().expect("run id").to_string();
    let held = crate::helpers::wait_held(&hold.0, Duration::from_secs(60));
    assert_eq!(held.lines().count(), 2, "the second unit is held: {held}");
    pg.stop();
    std::fs::remove_file(hold.0.join("gate")).expect("open the gate");
    let run = s.wait_run(&rid);
    assert_eq!(run["state"], "FAILED", "{run}");
    let text = run.to_string();
    assert!(
        text.contains("PostgreSQL at 127.0.0.1"),
        "the run names the database's failure, not a consequence: {text}"
    );

    pg.restart();
    let rows = people_rows(&pg);
    assert_eq!(rows, 2, "only the first unit was written");
    let run = s.run("out", "");
    assert_eq!(
        counts(&run),
        pairs(&[("ABSENT", 6), ("CONFIRMED", 2)]),
        "links only for the first unit: {run}"
    );
    assert_eq!(run["statusSummary"]["FAILURE"], 0, "{run}");
}

#[test]
fn two_units_creating_the_same_target_id_give_one_target_and_one_link() {
    // Units of one; the first is held before its writes while the second (the same target
    // id) is assessed: the second waits for the first and then fails on the existing key.
    let Some(pg) = Pg::start() else { return };
    pg.exec(PEOPLE);
    let hold = TempDir::new("pgsame");
    let s = held_server(&pg, &to_db_in_units_of(1), &hold);
    for i in 0..2 {
        let body = json!({"userName": "same", "mail": format!("m{i}@example.com")});
        let r = s.put(&format!("/openidm/managed/user/m{i}"), &body, &[]);
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let rid = start_held_run(&s, &hold, "");
    crate::helpers::wait_held(&hold.0, Duration::from_secs(60));
    std::fs::remove_file(hold.0.join("gate")).expect("open the gate");
    let run = s.wait_run(&rid);
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(counts(&run), pairs(&[("ABSENT", 2)]), "{run}");
    assert_eq!(run["statusSummary"]["SUCCESS"], 1, "{run}");
    assert_eq!(run["statusSummary"]["FAILURE"], 1, "{run}");
    let rows: i64 = pg
        .client()
        .query_one("SELECT count(*) FROM people WHERE uid = 'same'", &[])
        .expect("count")
        .get(0);
    assert_eq!(rows, 1);
    // One link: the next run confirms one source; the other finds the target taken.
    let run = s.run("out", "");
    assert_eq!(
        counts(&run),
        pairs(&[("CONFIRMED", 1), ("FOUND_ALREADY_LINKED", 1)]),
        "{run}"
    );
}
