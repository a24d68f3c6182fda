//! Object sets over REST: CRUD, revisions, conditional requests, patch, queries, paging,
//! CSV quirks, links, restart persistence.

use serde_json::{json, Value};

use crate::helpers::*;

const SETS: &str = r#"
[managed.user]
indexed = ["userName", "tags"]

[system.lab.account]
connector = "store"

[system.hr.account]
connector = "csv"
file = "data/hr.csv"
id_column = "uid"
"#;

fn ids(body: &Value) -> Vec<String> {
    let mut v: Vec<String> = body["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn crud_revisions_and_conditions() {
    let s = Server::start(SETS, &[("data/hr.csv", "uid,userName\n")]);
    let r = s.put(
        "/openidm/managed/user/a1",
        &json!({"userName": "Alice", "age": 30}),
        &[("If-None-Match", "*")],
    );
    assert_eq!(r.status, 201);
    let rev = r.body["_rev"].as_str().expect("string rev").to_string();
    assert_eq!(
        s.put(
            "/openidm/managed/user/a1",
            &json!({"userName": "x"}),
            &[("If-None-Match", "*")]
        )
        .status,
        412
    );
    assert_eq!(
        s.put(
            "/openidm/managed/user/a1",
            &json!({"userName": "x"}),
            &[("If-Match", "\"999\"")]
        )
        .status,
        412
    );
    let r = s.put(
        "/openidm/managed/user/a1",
        &json!({"userName": "Alice", "age": 31}),
        &[("If-Match", &format!("\"{rev}\""))],
    );
    assert_eq!(r.status, 200);
    assert_ne!(r.body["_rev"], json!(rev));
    let r = s.post(
        "/openidm/managed/user?_action=create",
        Some(&json!({"userName": "bob"})),
    );
    assert_eq!(r.status, 201);
    let bob = r.body["_id"].as_str().expect("id").to_string();
    let r = s.post(
        "/openidm/managed/user?_action=create",
        Some(&json!({"_id": "c1", "userName": "carol"})),
    );
    assert_eq!((r.status, r.body["_id"].as_str()), (201, Some("c1")));
    let r = s.request(
        "PATCH",
        "/openidm/managed/user/a1",
        Some(&json!([
            {"operation": "replace", "field": "/age", "value": 40},
            {"operation": "add", "field": "/tags", "value": "x"},
            {"operation": "increment", "field": "/age", "value": 2}
        ])),
        &[],
        Auth::Admin,
    );
    assert_eq!(
        (r.status, r.body["age"].clone(), r.body["tags"].clone()),
        (200, json!(42), json!("x"))
    );
    let r = s.request(
        "PATCH",
        "/openidm/managed/user/a1",
        Some(&json!([{"operation": "remove", "field": "/nope"}])),
        &[],
        Auth::Admin,
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        s.get("/openidm/managed/user/a1").body["age"],
        42,
        "a failed patch writes nothing"
    );
    let r = s.request(
        "PATCH",
        "/openidm/managed/user/a1",
        Some(&json!({"not": "a list"})),
        &[],
        Auth::Admin,
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        s.request(
            "PATCH",
            "/openidm/managed/user/zz",
            Some(&json!([])),
            &[],
            Auth::Admin
        )
        .status,
        404
    );
    assert_eq!(
        s.put("/openidm/managed/user/x", &json!([1, 2]), &[]).status,
        400,
        "body must be an object"
    );
    assert_eq!(
        s.request(
            "DELETE",
            "/openidm/managed/user/a1",
            None,
            &[("If-Match", "\"1\"")],
            Auth::Admin
        )
        .status,
        412
    );
    let r = s.delete(&format!("/openidm/managed/user/{bob}"));
    assert_eq!((r.status, r.body["userName"].as_str()), (200, Some("bob")));
    assert_eq!(s.get(&format!("/openidm/managed/user/{bob}")).status, 404);
    assert_eq!(s.delete("/openidm/managed/user/nobody").status, 404);
    // The store connector serves the same REST.
    assert_eq!(
        s.put("/openidm/system/lab/account/l1", &json!({"cn": "L"}), &[])
            .status,
        201
    );
    assert_eq!(s.get("/openidm/system/lab/account/l1").body["cn"], "L");
}

#[test]
fn queries_paging_sorting_fields() {
    let s = Server::start(SETS, &[("data/hr.csv", "uid,userName\n")]);
    for i in 0..25 {
        let body = json!({"userName": format!("Person{i:02}"), "age": i, "tags": [format!("t{}", i % 3)], "name": {"given": format!("G{i}")}});
        assert_eq!(
            s.put(&format!("/openidm/managed/user/p{i:02}"), &body, &[])
                .status,
            201
        );
    }
    assert_eq!(
        ids(&s.query("/openidm/managed/user", "userName eq \"PERSON03\"")),
        vec!["p03"]
    );
    assert_eq!(
        ids(&s.query("/openidm/managed/user", "tags eq \"T1\" and age lt 5")),
        vec!["p01", "p04"]
    );
    assert_eq!(
        ids(&s.query(
            "/openidm/managed/user",
            "/name/given sw \"g2\" and !(age gt 21)"
        )),
        vec!["p02", "p20", "p21"]
    );
    assert_eq!(ids(&s.query("/openidm/managed/user", "nope pr")).len(), 0);
    let r = s.get("/openidm/managed/user?_queryId=for-userName&uid=person07");
    assert_eq!(ids(&r.body), vec!["p07"]);
    let r = s.get("/openidm/managed/user?_queryId=query-all-ids");
    assert_eq!(r.body["resultCount"], 25);
    assert!(r.body["result"][0].get("userName").is_none());
    assert_eq!(s.get("/openidm/managed/user?_queryId=nope").status, 400);

    // Cookie paging over everything, in id order.
    let mut seen = Vec::new();
    let mut cookie: Option<String> = None;
    loop {
        let mut path = "/openidm/managed/user?_queryFilter=true&_pageSize=7".to_string();
        if let Some(c) = &cookie {
            path.push_str(&format!("&_pagedResultsCookie={}", enc(c)));
        }
        let r = s.get(&path);
        assert_eq!(r.status, 200, "{}", r.body);
        seen.extend(ids(&r.body));
        match r.body["pagedResultsCookie"].as_str() {
            Some(c) => cookie = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    // Offset paging with an exact total.
    let r = s.get("/openidm/managed/user?_queryFilter=true&_pageSize=10&_pagedResultsOffset=20&_totalPagedResultsPolicy=EXACT");
    assert_eq!(
        (
            r.body["resultCount"].clone(),
            r.body["totalPagedResults"].clone()
        ),
        (json!(5), json!(25))
    );
    // Sorting (descending) with fields.
    let r = s.get("/openidm/managed/user?_queryFilter=age%20ge%2020&_sortKeys=-age&_fields=userName&_pageSize=2");
    let names: Vec<&str> = r.body["result"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|x| x["userName"].as_str())
        .collect();
    assert_eq!(names, vec!["Person24", "Person23"]);
    assert!(r.body["result"][0].get("age").is_none());
    let next = r.body["pagedResultsCookie"]
        .as_str()
        .expect("cookie")
        .to_string();
    let r = s.get(&format!("/openidm/managed/user?_queryFilter=age%20ge%2020&_sortKeys=-age&_pageSize=2&_pagedResultsCookie={}", enc(&next)));
    assert_eq!(ids(&r.body), vec!["p21", "p22"]);
    assert_eq!(r.body["result"][0]["_id"], "p22");
    // Envelope shape.
    let r = s.get("/openidm/managed/user?_queryFilter=false");
    for k in [
        "result",
        "resultCount",
        "pagedResultsCookie",
        "totalPagedResultsPolicy",
        "totalPagedResults",
        "remainingPagedResults",
    ] {
        assert!(r.body.get(k).is_some(), "{k} in {}", r.body);
    }
    assert_eq!(
        s.get("/openidm/managed/user?_queryFilter=true&_pagedResultsCookie=%%%")
            .status,
        400
    );
}

#[test]
fn csv_quirks_and_outside_edits() {
    let csv = "uid, userName, note\n\"u1\", \"alice\", \"has, comma\"\nu2,bob,\n\"u3\",\"carol \"\"cc\"\"\",\"multi\nline\"\n";
    let s = Server::start(SETS, &[("data/hr.csv", csv)]);
    let all = s.query("/openidm/system/hr/account", "true");
    assert_eq!(ids(&all), vec!["u1", "u2", "u3"]);
    let u1 = s.get("/openidm/system/hr/account/u1").body;
    assert_eq!(
        (
            u1["userName"].as_str(),
            u1["note"].as_str(),
            u1["uid"].as_str()
        ),
        (Some("alice"), Some("has, comma"), Some("u1"))
    );
    assert!(
        s.get("/openidm/system/hr/account/u2")
            .body
            .get("note")
            .is_none(),
        "empty cell = absent"
    );
    assert_eq!(
        s.get("/openidm/system/hr/account/u3").body["note"],
        "multi\nline"
    );
    // A write with a new attribute adds a column at the end and keeps the header order.
    let r = s.put(
        "/openidm/system/hr/account/u4",
        &json!({"userName": "dave", "dept": "x"}),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let text = std::fs::read_to_string(s.path("data/hr.csv")).expect("csv");
    let header = text.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("uid, userName, note") && header.ends_with(",dept"),
        "{text}"
    );
    // An outside edit is seen by the next read.
    s.write("data/hr.csv", "uid,userName\nz9,zed\n");
    assert_eq!(
        ids(&s.query("/openidm/system/hr/account", "true")),
        vec!["z9"]
    );
    assert_eq!(s.delete("/openidm/system/hr/account/z9").status, 200);
    assert_eq!(ids(&s.query("/openidm/system/hr/account", "true")).len(), 0);
}

#[test]
fn objects_survive_a_restart() {
    let mut s = Server::start(SETS, &[("data/hr.csv", "uid,userName\n")]);
    s.put("/openidm/managed/user/a", &json!({"userName": "Anna"}), &[]);
    assert_eq!(s.restart(), Some(0));
    assert_eq!(s.get("/openidm/managed/user/a").body["userName"], "Anna");
    assert_eq!(
        ids(&s.query("/openidm/managed/user", "userName eq \"anna\"")),
        vec!["a"]
    );
}

#[test]
fn bad_object_requests_are_crest_errors() {
    let s = Server::start(SETS, &[("data/hr.csv", "uid,userName\n")]);
    assert_eq!(
        s.post(
            "/openidm/managed/user?_action=create",
            Some(&json!("string"))
        )
        .status,
        400
    );
    assert_eq!(
        s.post("/openidm/managed/user?_action=nope", Some(&json!({})))
            .status,
        400
    );
    let long = format!("userName eq \"{}\"", "x".repeat(2_000_000));
    let r = s.get(&format!(
        "/openidm/managed/user?_queryFilter={}",
        enc(&long)
    ));
    // Answered by the request-line check, with a CREST body.
    assert_eq!(r.status, 414, "over-long filter: {}", r.body);
    assert_eq!(r.body["code"], 414);
    assert_eq!(s.get("/openidm/info/ping").status, 200);
    let deep = format!("{}true{}", "(".repeat(1000), ")".repeat(1000));
    assert_eq!(
        s.get(&format!(
            "/openidm/managed/user?_queryFilter={}",
            enc(&deep)
        ))
        .status,
        400
    );
}

/// A representative part of this file on the PostgreSQL repository (issue #20).
mod on_postgres {
    crate::helpers::on_postgres_too!(
        crud_revisions_and_conditions,
        queries_paging_sorting_fields,
        objects_survive_a_restart,
        bad_object_requests_are_crest_errors,
    );
}
