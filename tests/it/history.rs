//! Run history: persistence across restarts, association entries, analyze, delete,
//! retention, audit, and crash recovery with a real SIGKILL.

use serde_json::json;

use crate::helpers::*;

#[test]
fn history_survives_a_restart() {
    let mut s = Server::start(HR, &[("data/hr.csv", &format!("{HEADER}{}", people(3, 1)))]);
    let first = s.run("hr", "");
    assert_eq!(s.restart(), Some(0));
    let r = s.get(&format!(
        "/openidm/recon/{}",
        first["_id"].as_str().expect("id")
    ));
    assert_eq!(r.status, 200);
    assert_eq!(r.body["situationSummary"], first["situationSummary"]);
    assert_eq!(r.body["state"], "SUCCESS");
    let list = s.get("/openidm/recon").body;
    assert!(list["reconciliations"]
        .as_array()
        .expect("list")
        .iter()
        .any(|x| x["_id"] == first["_id"]));
}

#[test]
fn associations_analyze_delete_and_paging() {
    let s = Server::start(
        HR,
        &[("data/hr.csv", &format!("{HEADER}{}", people(25, 1)))],
    );
    let run = s.run("hr", "&persistAssociations=true");
    let rid = run["_id"].as_str().expect("id").to_string();
    let sets = s.query("/openidm/recon/assoc", "true");
    let mine: Vec<_> = sets["result"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|x| x["_id"] == rid.as_str())
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["isAnalysis"], "false");
    assert!(mine[0]["finishTime"].is_string());
    let e = s.query(
        &format!("/openidm/recon/assoc/{rid}/entry"),
        "sourceObjectId eq \"u7\"",
    );
    assert_eq!(e["resultCount"], 1);
    let entry = &e["result"][0];
    for (k, v) in [
        ("reconId", rid.as_str()),
        ("mapping", "hr"),
        ("situation", "ABSENT"),
        ("action", "CREATE"),
        ("status", "SUCCESS"),
        ("linkQualifier", "default"),
        ("sourceResourceCollection", "system/hr/account"),
        ("targetResourceCollection", "managed/user"),
        ("targetObjectId", "u7"),
    ] {
        assert_eq!(entry[k], v, "{k} in {entry}");
    }
    // Reference §1.8's shape: no `phase` key (IDM's view does not project it).
    assert!(entry.get("phase").is_none(), "{entry}");
    // Cookie paging and offset paging both reach every entry.
    let mut seen = 0;
    let mut cookie: Option<String> = None;
    loop {
        let mut p = format!("/openidm/recon/assoc/{rid}/entry?_queryFilter=true&_pageSize=4");
        if let Some(c) = &cookie {
            p.push_str(&format!("&_pagedResultsCookie={}", enc(c)));
        }
        let r = s.get(&p);
        seen += r.body["resultCount"].as_u64().unwrap_or(0);
        match r.body["pagedResultsCookie"].as_str() {
            Some(c) => cookie = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, 25);
    let r = s.get(&format!(
        "/openidm/recon/assoc/{rid}/entry?_queryFilter=true&_pageSize=10&_pagedResultsOffset=20"
    ));
    assert_eq!(r.body["resultCount"], 5);
    // Side filters embed the matching objects.
    let r = s.get(&format!(
        "/openidm/recon/assoc/{rid}/entry?_queryFilter=true&targetQueryFilter={}",
        enc("sn eq \"family3\"")
    ));
    assert_eq!(r.body["resultCount"], 1, "{}", r.body);
    assert_eq!(r.body["result"][0]["target"]["_id"], "u3");
    let r = s.get(&format!(
        "/openidm/recon/assoc/{rid}/entry?_queryFilter=true&sourceQueryFilter={}",
        enc("uid eq \"u4\"")
    ));
    assert_eq!(r.body["result"][0]["source"]["userName"], "user4");

    // analyze writes nothing but records what would happen: every object and link is the same
    // before and after.
    s.write(
        "data/hr.csv",
        &format!("{HEADER}{}", people(26, 1).replace("Family1,", "Changed1,")),
    );
    let snapshot = |s: &Server| {
        let objects = s
            .get("/openidm/managed/user?_queryFilter=true&_sortKeys=_id")
            .body["result"]
            .clone();
        let links = s
            .get("/openidm/repo/link?_queryFilter=true&_sortKeys=firstId")
            .body["result"]
            .clone();
        (objects, links)
    };
    let before = snapshot(&s);
    let analysis = s.run("hr", "&persistAssociations=true&analyze=true");
    assert_eq!(
        snapshot(&s),
        before,
        "an analysis run changes no object and no link"
    );
    assert_eq!(counts(&analysis), map(&[("ABSENT", 1), ("CONFIRMED", 25)]));
    let aid = analysis["_id"].as_str().expect("id");
    assert_eq!(
        s.get(&format!("/openidm/recon/assoc/{aid}")).body["isAnalysis"],
        "true"
    );
    let e = s.query(
        &format!("/openidm/recon/assoc/{aid}/entry"),
        "sourceObjectId eq \"u26\"",
    );
    assert_eq!(
        (
            e["result"][0]["situation"].clone(),
            e["result"][0]["action"].clone()
        ),
        (json!("ABSENT"), json!("CREATE"))
    );

    // DELETE removes the run and its association data.
    let r = s.delete(&format!("/openidm/recon/{rid}"));
    assert_eq!(
        (r.status, r.body["_id"].as_str()),
        (200, Some(rid.as_str()))
    );
    assert_eq!(s.get(&format!("/openidm/recon/{rid}")).status, 404);
    assert_eq!(s.get(&format!("/openidm/recon/assoc/{rid}")).status, 404);
    assert_eq!(s.delete(&format!("/openidm/recon/{rid}")).status, 404);
}

#[test]
fn retention_per_mapping_and_kind() {
    let config = format!("[recon]\nkeep_runs_per_mapping = 2\n{HR}").replace(
        "name = \"hr\"",
        "name = \"hr\"\nreconAssociation = { maxAnalysisRunsPerMapping = 1 }",
    );
    let s = Server::start(
        &config,
        &[("data/hr.csv", &format!("{HEADER}{}", people(2, 1)))],
    );
    let ids: Vec<String> = (0..4)
        .map(|_| {
            s.run("hr", "")
                .get("_id")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let a1 = s.run("hr", "&analyze=true&persistAssociations=true")["_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let a2 = s.run("hr", "&analyze=true&persistAssociations=true")["_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let listed: Vec<String> = s.get("/openidm/recon").body["reconciliations"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|x| x["_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        listed,
        vec![ids[2].clone(), ids[3].clone(), a2.clone()],
        "newest last, oldest purged"
    );
    assert_eq!(s.get(&format!("/openidm/recon/{a1}")).status, 404);
}

#[test]
fn audit_levels() {
    let all = format!("[audit]\nrecon = \"all\"\n{HR}");
    let s = Server::start(
        &all,
        &[("data/hr.csv", &format!("{HEADER}{}", people(3, 1)))],
    );
    let run = s.run("hr", "");
    let rid = run["_id"].as_str().expect("id");
    let events = s.query("/openidm/audit/recon", &format!("reconId eq \"{rid}\""));
    assert_eq!(
        events["resultCount"], 5,
        "start + 3 entries + summary: {events}"
    );
    let entry = s.query("/openidm/audit/recon", &format!("reconId eq \"{rid}\" and entryType eq \"entry\" and sourceObjectId eq \"system/hr/account/u1\""));
    assert_eq!(entry["result"][0]["targetObjectId"], "managed/user/u1");
    assert_eq!(entry["result"][0]["situation"], "ABSENT");
    let summary = s.query(
        "/openidm/audit/recon",
        &format!("reconId eq \"{rid}\" and entryType eq \"summary\""),
    );
    assert_eq!(summary["result"][0]["status"], "SUCCESS");
    assert_eq!(summary["result"][0]["messageDetail"]["_id"], rid);
    drop(s);
    let s = Server::start(HR, &[("data/hr.csv", &format!("{HEADER}{}", people(3, 1)))]);
    let rid = s.run("hr", "")["_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        s.query("/openidm/audit/recon", &format!("reconId eq \"{rid}\""))["resultCount"],
        2,
        "summary level: start + summary"
    );
    drop(s);
    let off = format!("[audit]\nrecon = \"off\"\n{HR}");
    let s = Server::start(
        &off,
        &[("data/hr.csv", &format!("{HEADER}{}", people(3, 1)))],
    );
    s.run("hr", "");
    assert_eq!(s.query("/openidm/audit/recon", "true")["resultCount"], 0);
}

#[test]
fn sigkill_mid_run_then_repair() {
    // The run is stopped at a known point (the test hold, after three units committed), not
    // by hoping a big input is still running when the kill comes.
    let n = 5_000;
    let hold = TempDir::new("sigkill-hold");
    let hold_dir = hold.0.display().to_string();
    let config = format!("{HR}\n[recon]\nbatch_size = 100\n");
    let mut s = Server::start_with_env(
        &config,
        &[("data/hr.csv", &format!("{HEADER}{}", people(n, 1)))],
        &[("RECOND_TEST_HOLD_DIR", &hold_dir)],
    );
    std::fs::write(hold.0.join("gate"), "3").expect("gate");
    let r = s.post(
        "/openidm/recon?_action=recon&mapping=hr&persistAssociations=true",
        None,
    );
    let rid = r.body["_id"].as_str().expect("id").to_string();
    crate::helpers::wait_held(&hold.0, std::time::Duration::from_secs(120));
    // The three units let through commit while another worker may already hold; every
    // worker ends up held (the gate is at 0), so the count gets there with the run active.
    s.wait_processed(&rid, 300, "three units committed before the hold");
    s.kill();
    // The restarted server runs freely.
    std::fs::remove_file(hold.0.join("gate")).expect("open the gate");
    s.start_again();
    let run = s.get(&format!("/openidm/recon/{rid}")).body;
    assert_eq!(
        (run["state"].as_str(), run["stage"].as_str()),
        (Some("FAILED"), Some("COMPLETED_FAILED"))
    );
    assert!(run["ended"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(run["message"]
        .as_str()
        .unwrap_or_default()
        .contains("stopped"));
    let entries = s.get(&format!(
        "/openidm/recon/assoc/{rid}/entry?_queryFilter=true&_pageSize=1"
    ));
    assert_eq!(
        entries.status, 200,
        "entries written before the crash stay readable"
    );
    let r = s.post("/openidm/recon?_action=recon&mapping=hr", None);
    let again = s.wait_run(r.body["_id"].as_str().expect("id"));
    assert_eq!(again["state"], "SUCCESS");
    assert_eq!(again["statusSummary"]["FAILURE"], 0);
    let body = s
        .get("/openidm/managed/user?_queryFilter=true&_pageSize=1&_totalPagedResultsPolicy=EXACT")
        .body;
    assert_eq!(body["totalPagedResults"], n as u64);
    // Every link points at an existing target: no target without its link and vice versa.
    let links = s
        .get("/openidm/repo/link?_queryFilter=true&_pageSize=1&_totalPagedResultsPolicy=EXACT")
        .body;
    assert_eq!(links["totalPagedResults"], n as u64);
}

/// A representative part of this file on the PostgreSQL repository (issue #20).
mod on_postgres {
    crate::helpers::on_postgres_too!(
        history_survives_a_restart,
        associations_analyze_delete_and_paging,
        retention_per_mapping_and_kind,
        audit_levels,
        sigkill_mid_run_then_repair,
    );
}
