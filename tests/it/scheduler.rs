//! Scheduled reconciliation through the real server: job listing, manual trigger, busy
//! mappings, a schedule that runs a real reconciliation, IDM schedule files, bad schedules,
//! the last firing across a restart.

use serde_json::json;

use crate::helpers::*;

fn with_schedule(schedule: &str, extra: &str) -> String {
    format!(
        "{HR}\n[[schedules]]\nname = \"hr-sched\"\nschedule = \"{schedule}\"\nmapping = \"hr\"\n{extra}\n"
    )
}

#[test]
fn jobs_are_listed_and_triggered() {
    let s = Server::start(
        &with_schedule("0 0 3 * * ?", ""),
        &[("data/hr.csv", &format!("{HEADER}{}", people(3, 1)))],
    );
    let r = s.get("/openidm/scheduler/job?_queryFilter=true");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["resultCount"], 1);
    let job = &r.body["result"][0];
    assert_eq!(job["_id"], "hr-sched");
    assert_eq!(job["enabled"], true);
    assert_eq!(job["schedule"], "0 0 3 * * ?");
    assert!(
        job["nextRunDate"]
            .as_str()
            .is_some_and(|d| d.ends_with("T03:00:00.000Z")),
        "{job}"
    );
    let r = s.request(
        "GET",
        "/openidm/scheduler/job/hr-sched",
        None,
        &[("Accept-API-Version", "resource=2.0")],
        Auth::Admin,
    );
    assert_eq!(r.status, 200);
    assert_eq!(s.get("/openidm/scheduler/job/nope").status, 404);

    let r = s.post("/openidm/scheduler/job/hr-sched?_action=trigger", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let rid = r.body["reconId"].as_str().expect("run id").to_string();
    let run = s.wait_run(&rid);
    assert_eq!(run["state"], "SUCCESS");
    assert_eq!(run["parameters"]["schedule"], "hr-sched");
    let job = s.get("/openidm/scheduler/job/hr-sched").body;
    assert_eq!(job["lastRunId"], json!(rid));
    assert_eq!(
        s.post("/openidm/scheduler/job/nope?_action=trigger", None)
            .status,
        404
    );
    // The last firing is remembered across a restart.
    let mut s = s;
    assert_eq!(s.restart(), Some(0));
    let after = s.get("/openidm/scheduler/job/hr-sched").body;
    assert_eq!(after["lastRunId"], json!(rid), "{after}");
    assert_eq!(after["lastRunStatus"], "STARTED");
    assert_eq!(after["lastRunDate"], job["lastRunDate"]);
}

#[test]
fn trigger_while_busy_is_409() {
    let s = Server::start(
        &with_schedule("0 0 3 * * ?", ""),
        &[("data/hr.csv", &format!("{HEADER}{}", people(80_000, 1)))],
    );
    let r = s.post("/openidm/recon?_action=recon&mapping=hr", None);
    let rid = r.body["_id"].as_str().expect("id").to_string();
    let r = s.post("/openidm/scheduler/job/hr-sched?_action=trigger", None);
    assert_eq!(r.status, 409, "{}", r.body);
    s.post(&format!("/openidm/recon/{rid}?_action=cancel"), None);
    s.wait_run(&rid);
}

#[test]
fn a_schedule_runs_a_real_reconciliation() {
    // Every second: the first firing reconciles the CSV end to end.
    let s = Server::start(
        &with_schedule("* * * * * ?", ""),
        &[("data/hr.csv", &format!("{HEADER}{}", people(4, 1)))],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let list = s.get("/openidm/recon").body;
        let scheduled = list["reconciliations"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["parameters"]["schedule"] == "hr-sched" && r["state"] == "SUCCESS")
            .cloned();
        if let Some(run) = scheduled {
            assert_eq!(run["mapping"], "hr");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled run completed:\n{}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(s.get("/openidm/managed/user/u4").status, 200);
}

#[test]
fn idm_schedule_files_and_bad_schedules() {
    let file = json!({
        "enabled": false, "type": "cron", "schedule": "0 0/15 * * * ?", "persisted": true,
        "misfirePolicy": "doNothing", "invokeService": "sync",
        "invokeContext": {"action": "reconcile", "mapping": "hr"}
    });
    let other = json!({"enabled": true, "type": "cron", "schedule": "0 0 * * * ?", "invokeService": "script", "invokeContext": {}});
    // liveSync schedules run (tests/it/livesync.rs); one without a source is a warning.
    let live = json!({"enabled": true, "schedule": "0 0 * * * ?", "invokeService": "sync",
        "invokeContext": {"action": "liveSync", "mapping": "hr"}});
    let live_ok = json!({"enabled": true, "schedule": "0 0 * * * ?", "invokeService": "provisioner",
        "invokeContext": {"action": "liveSync", "source": "system/hr/account"}});
    let off = json!({"enabled": false, "type": "simple", "repeatInterval": 60000,
        "invokeService": "sync", "invokeContext": {"action": "reconcile", "mapping": "hr"}});
    let config = format!("schedules_dir = \"conf\"\n{HR}");
    let s = Server::start(
        &config,
        &[
            ("data/hr.csv", &format!("{HEADER}{}", people(1, 1))),
            ("conf/schedule-hr15.json", &file.to_string()),
            ("conf/schedule-other.json", &other.to_string()),
            ("conf/schedule-live.json", &live.to_string()),
            ("conf/schedule-liveok.json", &live_ok.to_string()),
            ("conf/schedule-off.json", &off.to_string()),
        ],
    );
    let r = s.get("/openidm/scheduler/job?_queryFilter=true");
    assert_eq!(
        r.body["resultCount"], 2,
        "the reconciliation and the liveSync schedule: {}",
        r.body
    );
    assert_eq!(r.body["result"][1]["_id"], "liveok");
    assert_eq!(r.body["result"][1]["invokeService"], "provisioner");
    // What recond does not run is a warning naming the file, never a silent skip.
    let log = s.log();
    for f in [
        "schedule-other.json",
        "schedule-live.json",
        "schedule-off.json",
    ] {
        assert!(
            log.lines().any(|l| l.contains("WARN") && l.contains(f)),
            "{f}:\n{log}"
        );
    }
    assert_eq!(r.body["result"][0]["_id"], "hr15");
    assert_eq!(r.body["result"][0]["enabled"], false);
    assert_eq!(r.body["result"][0]["misfirePolicy"], "doNothing");
    drop(s);

    let dir = TempDir::new("badsched");
    std::fs::create_dir_all(dir.0.join("data")).expect("mkdir");
    std::fs::write(dir.0.join("data/hr.csv"), HEADER).expect("csv");
    for (schedule, mapping, needle) in [
        ("0 61 * * * ?", "hr", "61"),
        ("0 0 * * * ?", "nope", "nope"),
        ("0 0 * L * ?", "hr", "L"),
    ] {
        let text = format!("{HR}\n{USERS}\n[[schedules]]\nname = \"x\"\nschedule = \"{schedule}\"\nmapping = \"{mapping}\"\n");
        std::fs::write(dir.0.join("recon.toml"), text).expect("config");
        let (code, out) = run_binary(
            &["--config", "recon.toml", "--listen", "127.0.0.1:0"],
            &dir.0,
        );
        assert_eq!(code, Some(2), "{schedule}/{mapping}: {out}");
        assert!(out.contains(needle), "{schedule}: {out}");
    }
}
