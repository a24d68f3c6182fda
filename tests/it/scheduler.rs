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
    let other = json!({"enabled": true, "type": "cron", "schedule": "0 0 * * * ?", "invokeService": "script",
        "invokeContext": {"script": {"type": "groovy", "file": "script/clean.groovy"}}});
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
        r.body["resultCount"], 3,
        "the reconciliation, the liveSync and the disabled simple schedule: {}",
        r.body
    );
    assert_eq!(r.body["result"][1]["_id"], "liveok");
    assert_eq!(r.body["result"][1]["invokeService"], "provisioner");
    // What recond does not run is a warning naming the file, never a silent skip.
    let log = s.log();
    for f in ["schedule-other.json", "schedule-live.json"] {
        assert!(
            log.lines().any(|l| l.contains("WARN") && l.contains(f)),
            "{f}:\n{log}"
        );
    }
    assert_eq!(r.body["result"][0]["_id"], "hr15");
    assert_eq!(r.body["result"][0]["enabled"], false);
    assert_eq!(r.body["result"][0]["misfirePolicy"], "doNothing");
    // A disabled simple trigger is loaded as a disabled job.
    let off = &r.body["result"][2];
    assert_eq!(off["_id"], "off", "{off}");
    assert_eq!(off["type"], "simple");
    assert_eq!(off["repeatInterval"], 60000);
    assert_eq!(off["nextRunDate"], serde_json::Value::Null);
    drop(s);

    let dir = TempDir::new("badsched");
    std::fs::create_dir_all(dir.0.join("data")).expect("mkdir");
    std::fs::write(dir.0.join("data/hr.csv"), HEADER).expect("csv");
    for (schedule, mapping, needle) in [
        ("0 61 * * * ?", "hr", "61"),
        ("0 0 * * * ?", "nope", "nope"),
        ("0 0 0 L-3 * ?", "hr", "L-3"),
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

#[test]
fn script_schedules_run_their_javascript() {
    // A script schedule (file under script/, globals, input) and a simple trigger in New York
    // time: the script writes through openidm.create; a failing script is a FAILED firing.
    let ok = json!({"enabled": true, "type": "simple", "repeatInterval": 3_600_000,
        "startTime": "2099-01-01T00:00:00", "timeZone": "America/New_York",
        "invokeService": "script",
        "invokeContext": {"input": {"id": "from-input"},
            "script": {"type": "text/javascript", "file": "make.js", "globals": {"who": "sched"}}}});
    let bad = json!({"enabled": true, "schedule": "0 0 0 1 1 ? 2099", "invokeService": "script",
        "invokeContext": {"script": {"type": "text/javascript", "source": "throw new Error('nope');"}}});
    let script = "openidm.create('managed/user', input.id, {userName: who}); 'made';";
    let s = Server::start(
        &format!("schedules_dir = \"conf\"\n{HR}"),
        &[
            ("data/hr.csv", HEADER),
            ("conf/schedule-make.json", &ok.to_string()),
            ("conf/schedule-bad.json", &bad.to_string()),
            ("script/make.js", script),
        ],
    );
    let job = s.get("/openidm/scheduler/job/make").body;
    assert_eq!(job["invokeService"], "script", "{job}");
    assert_eq!(job["type"], "simple");
    assert_eq!(job["timeZone"], "America/New_York");
    // Midnight in New York on 2099-01-01 is 05:00 UTC.
    assert_eq!(job["nextRunDate"], "2099-01-01T05:00:00.000Z");
    let r = s.post("/openidm/scheduler/job/make?_action=trigger", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let made = s.get("/openidm/managed/user/from-input");
    assert_eq!(made.status, 200, "{}", made.body);
    assert_eq!(made.body["userName"], "sched");
    assert_eq!(
        s.get("/openidm/scheduler/job/make").body["lastRunStatus"],
        "STARTED"
    );
    let r = s.post("/openidm/scheduler/job/bad?_action=trigger", None);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body["message"].as_str().unwrap_or("").contains("nope"),
        "{}",
        r.body
    );
}

#[test]
fn unsupported_schedules_name_the_file_and_key() {
    let dir = TempDir::new("badsched2");
    std::fs::create_dir_all(dir.0.join("conf")).expect("mkdir");
    std::fs::create_dir_all(dir.0.join("data")).expect("mkdir");
    std::fs::write(dir.0.join("data/hr.csv"), HEADER).expect("csv");
    for (file, needle) in [
        (
            json!({"schedule": "0 0 0 LW * ?", "invokeService": "sync",
                "invokeContext": {"action": "reconcile", "mapping": "hr"}}),
            "schedule: invalid cron expression",
        ),
        (
            json!({"schedule": "0 0 * * * ?", "timeZone": "Mars/Olympus", "invokeService": "sync",
                "invokeContext": {"action": "reconcile", "mapping": "hr"}}),
            "timeZone: invalid time zone",
        ),
        (
            json!({"type": "simple", "invokeService": "sync",
                "invokeContext": {"action": "reconcile", "mapping": "hr"}}),
            "repeatInterval: is required",
        ),
    ] {
        std::fs::write(dir.0.join("conf/schedule-x.json"), file.to_string()).expect("file");
        let text = format!("schedules_dir = \"conf\"\n{HR}\n{USERS}");
        std::fs::write(dir.0.join("recon.toml"), text).expect("config");
        let (code, out) = run_binary(
            &["--config", "recon.toml", "--listen", "127.0.0.1:0"],
            &dir.0,
        );
        assert_eq!(code, Some(2), "{needle}: {out}");
        assert!(out.contains("schedule-x.json"), "{out}");
        assert!(out.contains(needle), "{needle}: {out}");
    }
}
