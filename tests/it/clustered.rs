//! Clustered reconciliation (`clusteredSourceReconEnabled`) on one node, with the in-process
//! coordinator: the same results as the unclustered run, pages in the summary, a page
//! abandoned mid-way and redone without duplicates, and `waitForCompletion` refused.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::helpers::*;

/// Sources; a page size of 20 makes 16 pages of 320 (two chunks of the pages a single node
/// offers, then processes, before it reads on).
const SOURCES: usize = 320;
const PAGE: usize = 20;

fn config(clustered: bool) -> String {
    let cluster = if clustered {
        format!("clusteredSourceReconEnabled = true\nreconSourceQueryPageSize = {PAGE}\n")
    } else {
        String::new()
    };
    format!(
        r#"
[cluster]
node_id = "node-a"
{HR_SETS}
[[mappings]]
name = "hr"
source = "system/hr/account"
target = "managed/user"
{cluster}taskThreads = 4
correlationQuery = {{ expressionTree = {{ all = ["userName"] }} }}
properties = [
  {{ source = "uid", target = "_id" }},
  {{ source = "userName", target = "userName" }},
  {{ source = "sn", target = "sn" }},
  {{ source = "mail", target = "mail" }},
]
policies = [
  {{ situation = "CONFIRMED", action = "UPDATE" }},
  {{ situation = "FOUND", action = "UPDATE" }},
  {{ situation = "ABSENT", action = "CREATE" }},
  {{ situation = "SOURCE_MISSING", action = "DELETE" }},
  {{ situation = "UNASSIGNED", action = "IGNORE" }},
]
"#
    )
}

/// Starts a run without waiting (a clustered run cannot be waited for) and polls it.
fn run(s: &Server) -> Value {
    let r = s.post("/openidm/recon?_action=recon&mapping=hr", None);
    assert_eq!(r.status, 200, "start: {}", r.body);
    let id = r.body["_id"].as_str().expect("run id").to_string();
    s.wait_run(&id)
}

/// Every target without its revision, by id.
fn targets(s: &Server) -> Vec<Value> {
    let body = s.query("/openidm/managed/user", "true");
    let mut v: Vec<Value> = body["result"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|o| {
            let mut o = o.clone();
            o.as_object_mut().expect("an object").remove("_rev");
            o
        })
        .collect();
    v.sort_by(|a, b| a["_id"].as_str().cmp(&b["_id"].as_str()));
    v
}

/// Every link as (source, target, qualifier), sorted.
fn links(s: &Server) -> Vec<(String, String, String)> {
    let body = s.query("/openidm/repo/link", "linkType eq \"hr\"");
    let mut v: Vec<(String, String, String)> = body["result"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| {
            let f = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (f("firstId"), f("secondId"), f("linkQualifier"))
        })
        .collect();
    v.sort();
    v
}

/// Two targets that correlate (FOUND) and one no source matches (UNASSIGNED).
fn seed_targets(s: &Server) {
    for (id, body) in [
        ("u5", json!({"userName": "user5", "sn": "old"})),
        ("u6", json!({"userName": "user6", "sn": "old"})),
        ("stray", json!({"userName": "nobody"})),
    ] {
        let r = s.put(&format!("/openidm/managed/user/{id}"), &body, &[]);
        assert_eq!(r.status, 201, "{}", r.body);
    }
}

/// The second run's source: 20 gone, 30 new, 10 changed.
fn changed_sources() -> String {
    let mut rows = String::from(HEADER);
    rows.push_str(&people(SOURCES - 20, 20));
    rows.push_str(&people(30, 1000));
    rows.replace("Family30,", "Changed30,")
        .replace("Family31,", "Changed31,")
}

/// What must match between the clustered and the unclustered run.
fn outcome(run: &Value) -> Value {
    json!({
        "state": run["state"],
        "situationSummary": run["situationSummary"],
        "statusSummary": run["statusSummary"],
        "progress": comparable_progress(run),
    })
}

#[test]
fn a_clustered_run_on_one_node_matches_the_unclustered_run() {
    let data = format!("{HEADER}{}", people(SOURCES, 0));
    let plain = Server::start(&config(false), &[("data/hr.csv", &data)]);
    let clustered = Server::start(&config(true), &[("data/hr.csv", &data)]);
    for s in [&plain, &clustered] {
        seed_targets(s);
    }

    // waitForCompletion on a clustered mapping: 400, and no run starts.
    let r = clustered.post(
        "/openidm/recon?_action=recon&mapping=hr&waitForCompletion=true",
        None,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("clustered")),
        "{}",
        r.body
    );
    // The deprecated sync service's recon always waits: refused the same way.
    let r = clustered.post("/openidm/sync?_action=recon&mapping=hr", None);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        clustered.get("/openidm/recon").body["reconciliations"],
        json!([])
    );

    let pages = SOURCES.div_ceil(PAGE) as u64;
    for round in 0..2 {
        if round == 1 {
            for s in [&plain, &clustered] {
                s.write("data/hr.csv", &changed_sources());
            }
        }
        let a = run(&plain);
        let b = run(&clustered);
        assert_eq!(a["state"], "SUCCESS", "{a}");
        assert_eq!(outcome(&a), outcome(&b), "round {round}");
        assert_eq!(a["sourceProcessedByNode"], json!({}));
        let seen = b["progress"]["source"]["existing"]["total"]
            .as_str()
            .and_then(|t| t.parse::<u64>().ok())
            .expect("source total");
        assert_eq!(b["sourceProcessedByNode"], json!({ "node-a": seen }), "{b}");
        let sources = if round == 0 { SOURCES } else { SOURCES + 10 };
        let pages = if round == 0 {
            pages
        } else {
            sources.div_ceil(PAGE) as u64
        };
        assert_eq!(
            b["durationSummary"]["sourcePagePhase"]["count"],
            json!(pages),
            "{b}"
        );
        assert!(a["durationSummary"].get("sourcePagePhase").is_none(), "{a}");
        assert_eq!(targets(&plain), targets(&clustered), "round {round}");
        assert_eq!(links(&plain), links(&clustered), "round {round}");
    }
    // The runs did what the data asks, so the comparison compared something.
    let last = run(&clustered);
    assert_eq!(
        counts(&last),
        map(&[("CONFIRMED", (SOURCES + 10) as u64), ("UNASSIGNED", 1)])
    );
    assert_eq!(targets(&clustered).len(), SOURCES + 10 + 1);
}

#[test]
fn a_page_abandoned_mid_way_is_redone_without_duplicates() {
    let data = format!("{HEADER}{}", people(SOURCES, 0));
    let s = Server::start_with_env(
        &config(true),
        &[("data/hr.csv", &data)],
        &[
            ("RECOND_TEST_ABANDON_PAGE", "2"),
            ("RECOND_TEST_PAGE_LEASE_MS", "300"),
        ],
    );
    let r = run(&s);
    assert_eq!(r["state"], "SUCCESS", "{r}");
    // Page 2's first half was processed, then the page was given up; once its lease ran out
    // it was redone whole: those 25 objects were found linked the second time.
    let half = (PAGE / 2) as u64;
    assert_eq!(
        counts(&r),
        map(&[("ABSENT", SOURCES as u64), ("CONFIRMED", half)])
    );
    assert_eq!(
        r["sourceProcessedByNode"],
        json!({ "node-a": SOURCES as u64 + half })
    );
    assert_eq!(
        r["durationSummary"]["sourcePagePhase"]["count"],
        json!(SOURCES.div_ceil(PAGE) as u64)
    );
    assert!(s.log().contains("page abandoned"), "{}", s.log());
    // No duplicates: one target and one link per source.
    let t = targets(&s);
    assert_eq!(t.len(), SOURCES);
    let l = links(&s);
    assert_eq!(l.len(), SOURCES);
    let firsts: BTreeSet<&str> = l.iter().map(|(f, _, _)| f.as_str()).collect();
    let seconds: BTreeSet<&str> = l.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!((firsts.len(), seconds.len()), (SOURCES, SOURCES));
    assert!(t
        .iter()
        .all(|o| o["_id"].as_str().is_some_and(|id| firsts.contains(id))));
}

/// A store-backed source (pages read by id) with a source query that keeps half of it: the
/// clustered run reconciles exactly what the unclustered one does.
#[test]
fn a_clustered_run_over_a_store_source_with_a_source_query_matches_too() {
    let config = |clustered: bool| {
        let cluster = if clustered {
            // 12 pages of 5: more than a chunk of pages offered at once.
            "clusteredSourceReconEnabled = true\nreconSourceQueryPageSize = 5\n"
        } else {
            ""
        };
        format!(
            r#"
[cluster]
node_id = "node-b"

[managed.user]

[system.lab.account]
connector = "store"

[[mappings]]
name = "hr"
source = "system/lab/account"
target = "managed/user"
{cluster}sourceQuery = {{ _queryFilter = 'sn eq "keep"' }}
runTargetPhase = false
properties = [ {{ source = "key", target = "_id" }}, {{ source = "sn", target = "sn" }} ]
policies = [ {{ situation = "ABSENT", action = "CREATE" }}, {{ situation = "CONFIRMED", action = "UPDATE" }} ]
"#
        )
    };
    let plain = Server::start(&config(false), &[]);
    let clustered = Server::start(&config(true), &[]);
    for s in [&plain, &clustered] {
        for i in 0..120 {
            let sn = if i % 2 == 0 { "keep" } else { "skip" };
            let r = s.put(
                &format!("/openidm/system/lab/account/s{i:03}"),
                &json!({"key": format!("s{i:03}"), "sn": sn}),
                &[],
            );
            assert_eq!(r.status, 201, "{}", r.body);
        }
    }
    let (a, b) = (run(&plain), run(&clustered));
    assert_eq!(a["state"], "SUCCESS", "{a}");
    assert_eq!(outcome(&a), outcome(&b));
    assert_eq!(counts(&b), map(&[("ABSENT", 60)]));
    assert_eq!(b["sourceProcessedByNode"], json!({ "node-b": 60 }));
    assert_eq!(b["durationSummary"]["sourcePagePhase"]["count"], json!(12));
    assert_eq!(targets(&plain), targets(&clustered));
    assert_eq!(links(&plain), links(&clustered));
    assert_eq!(links(&clustered).len(), 60);
}
