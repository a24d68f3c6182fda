//! Tests of schedule configuration: IDM schedule files, recon.toml tables, validation errors.

// Tests may unwrap: a failure there is the test's report.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};

use super::tests::{parse_reconcile_schedule, raw};
use super::*;

#[test]
fn idm_schedule_file() {
    let file = json!({"enabled": true, "type": "cron", "schedule": "0 0/15 * * * ?",
        "persisted": true, "misfirePolicy": "fireAndProceed", "invokeService": "sync",
        "invokeContext": {"action": "reconcile", "mapping": "systemHrAccounts_managedUser"}});
    let r = parse_reconcile_schedule("schedule-hr.json", &file)
        .unwrap()
        .unwrap();
    assert_eq!(
        r,
        RawSchedule {
            name: "hr".into(),
            schedule: "0 0/15 * * * ?".into(),
            mapping: "systemHrAccounts_managedUser".into(),
            enabled: Some(true),
            misfire_policy: Some("fireAndProceed".into()),
            kind: Some("cron".into()),
            ..RawSchedule::default()
        }
    );
    let s = build_spec(r).unwrap();
    assert_eq!(s.misfire, MisfirePolicy::FireAndProceed);
    assert!(s.enabled);
    assert_eq!(s.rule.tz, TimeZone::UTC);
    assert_eq!(s.tz_text, "UTC");

    let full = json!({"schedule": "0 0 2 * * ?", "invokeService": "org.forgerock.openidm.sync",
        "timeZone": "GMT+2", "enabled": false,
        "invokeContext": {"action": "recon", "mapping": "m", "persistAssociations": true,
                          "analyze": true}});
    let r = parse_reconcile_schedule("conf/schedule-nightly.json", &full)
        .unwrap()
        .unwrap();
    assert_eq!(r.name, "nightly");
    assert_eq!(r.enabled, Some(false));
    assert!(r.persist_associations && r.analyze);
    assert_eq!(r.time_zone.as_deref(), Some("GMT+2"));
    assert_eq!(
        build_spec(r).unwrap().rule.tz,
        TimeZone::fixed(7200).unwrap()
    );

    let not_run = |name: &str, v: &Value| match parse_idm_schedule_file(name, v) {
        Ok(IdmSchedule::NotRun(why)) => why,
        other => panic!("{name}: expected NotRun, got {other:?}"),
    };
    let groovy = json!({"schedule": "* * * * * ?", "invokeService": "script",
        "invokeContext": {"script": {"type": "groovy", "source": "1"}}});
    assert!(not_run("schedule-s.json", &groovy).contains("\"groovy\" scripts"));
    let live = json!({"schedule": "* * * * * ?", "invokeService": "provisioner",
        "invokeContext": {"action": "liveSync", "source": "system/ldap/account"}});
    // liveSync schedules run (IDM's provisioner form, and the sync service with a source).
    let IdmSchedule::Reconcile(r) = parse_idm_schedule_file("schedule-live.json", &live).unwrap()
    else {
        panic!("a liveSync schedule runs")
    };
    assert_eq!(r.live_sync.as_deref(), Some("system/ldap/account"));
    let s = build_spec(*r).unwrap();
    assert!(matches!(&s.invoker, Invoker::LiveSync(set) if set == "system/ldap/account"));
    let job = jobs::job_json(&s, &JobState::default());
    assert_eq!(job["invokeService"], "provisioner");
    assert_eq!(
        job["invokeContext"],
        json!({"action": "liveSync", "source": "system/ldap/account"})
    );
    let mut sync_source = file.clone();
    sync_source["invokeContext"] = json!({"action": "liveSync", "source": "/system/hr/account/"});
    let IdmSchedule::Reconcile(r) =
        parse_idm_schedule_file("schedule-hr.json", &sync_source).unwrap()
    else {
        panic!("a sync-service liveSync schedule runs")
    };
    assert_eq!(r.live_sync.as_deref(), Some("system/hr/account"));
    // The provisioner runs only liveSync; a liveSync without a source, and a disabled
    // schedule recond cannot read, are warnings, never a refusal to start.
    let mut other = live.clone();
    other["invokeContext"]["action"] = json!("test");
    assert!(not_run("schedule-live.json", &other).contains("use \"liveSync\""));
    let mut sync_live = file.clone();
    sync_live["invokeContext"]["action"] = json!("liveSync");
    assert!(not_run("schedule-hr.json", &sync_live).contains("liveSync"));
    let mut off = file.clone();
    off["enabled"] = json!(false);
    off["invokeContext"]["mapping"] = json!(7);
    assert!(not_run("schedule-hr.json", &off).starts_with("disabled"));

    let bad = |patch: Value| {
        let mut v = file.clone();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        parse_reconcile_schedule("schedule-hr.json", &v).unwrap_err()
    };
    let inline = bad(json!({"invokeContext": {"action": "reconcile",
        "mapping": {"name": "x", "source": "a", "target": "b"}}}));
    assert!(inline.starts_with("schedule \"hr\": invokeContext.mapping: inline mapping"));
    assert!(bad(json!({"invokeContext": {"action": "reconcile"}})).contains("is required"));
    assert!(bad(json!({"concurrentExecution": true})).contains("concurrentExecution"));
    assert!(bad(json!({"startTime": 5})).contains("startTime: must be a string"));
    assert!(bad(json!({"repeatCount": "x"})).contains("repeatCount: must be a whole"));
    assert!(bad(json!({"enabled": "yes"})).contains("enabled: must be true or false"));
    assert!(bad(json!({"invokeService": 3})).contains("invokeService: must be a string"));
    let mut no_cron = file.clone();
    no_cron["schedule"] = Value::Null;
    let r = parse_reconcile_schedule("schedule-hr.json", &no_cron)
        .unwrap()
        .unwrap();
    assert!(build_spec(r).unwrap_err().contains("schedule: is required"));
    assert!(bad(
        json!({"invokeContext": {"action": "reconcile", "mapping": "m",
        "analyze": 1}})
    )
    .contains("invokeContext.analyze: must be true or false"));
    assert!(parse_idm_schedule_file("schedule-hr.json", &json!([1])).is_err());
    assert!(parse_idm_schedule_file("schedule-.json", &file).is_err());
    assert!(parse_idm_schedule_file("schedule-hr.json", &json!({})).is_err());
}

#[test]
fn build_spec_errors_name_the_schedule() {
    let e = build_spec(raw("hr", "0 61 * * * ?")).unwrap_err();
    assert!(
        e.starts_with("schedule \"hr\": schedule: invalid cron expression \"0 61 * * * ?\": "),
        "{e}"
    );
    assert!(e.contains("61"), "{e}");
    let mut r = raw("hr", "0 0 * * * ?");
    r.time_zone = Some("Mars/Olympus".into());
    let e = build_spec(r).unwrap_err();
    assert!(e.starts_with("schedule \"hr\": timeZone: invalid time zone \"Mars/Olympus\""));
    let mut r = raw("hr", "0 0 * * * ?");
    r.time_zone = Some("Europe/Paris".into());
    assert_eq!(build_spec(r).unwrap().rule.tz.to_string(), "Europe/Paris");
    let mut r = raw("hr", "");
    r.kind = Some("simple".into());
    assert!(build_spec(r.clone())
        .unwrap_err()
        .contains("repeatInterval: is required"));
    r.repeat_interval = Some(0);
    assert!(build_spec(r.clone())
        .unwrap_err()
        .contains("repeatInterval"));
    r.repeat_interval = Some(1000);
    r.repeat_count = Some(-2);
    assert!(build_spec(r.clone()).unwrap_err().contains("repeatCount"));
    r.repeat_count = None;
    r.start_time = Some("2024-01-02T00:00:00Z".into());
    r.end_time = Some("2024-01-01T00:00:00Z".into());
    assert!(build_spec(r.clone())
        .unwrap_err()
        .contains("endTime: is before"));
    r.end_time = Some("soon".into());
    assert!(build_spec(r.clone())
        .unwrap_err()
        .starts_with("schedule \"hr\": endTime: \"soon\" is not an ISO-8601"));
    r.kind = Some("calendar".into());
    assert!(build_spec(r).unwrap_err().contains("type: \"calendar\""));
    assert!(build_spec(raw("hr", ""))
        .unwrap_err()
        .contains("schedule: is required"));
    let mut r = raw("hr", "0 0 * * * ?");
    r.misfire_policy = Some("fireOnce".into());
    assert!(build_spec(r)
        .unwrap_err()
        .starts_with("schedule \"hr\": misfirePolicy:"));
    let mut r = raw("hr", "0 0 * * * ?");
    r.mapping = String::new();
    assert!(build_spec(r).unwrap_err().contains("mapping"));
    assert!(build_spec(raw("", "0 0 * * * ?")).is_err());
    assert_eq!(
        MisfirePolicy::parse("doNothing"),
        Some(MisfirePolicy::DoNothing)
    );
    assert_eq!(MisfirePolicy::DoNothing.as_str(), "doNothing");
}

#[test]
fn recon_toml_tables_read_like_idm_files() {
    let t = json!({"name": "hr", "type": "simple", "repeatInterval": 60000, "repeatCount": 3,
        "mapping": "m", "analyze": true, "timeZone": "America/New_York",
        "startTime": "2024-03-10T01:00:00"});
    let r = parse_table(&t).unwrap();
    assert_eq!(r.name, "hr");
    assert_eq!(r.mapping, "m");
    assert!(r.analyze);
    let s = build_spec(r).unwrap();
    // 01:00 EST is 06:00 UTC.
    assert_eq!(s.rule.start, Some(1_710_050_400));
    assert!(matches!(
        s.rule.timing,
        Timing::Simple {
            interval_ms: 60000,
            repeat_count: 3
        }
    ));
    let err = |v: Value| parse_table(&v).unwrap_err();
    assert_eq!(
        err(json!({"name": "x", "mapping": "m", "colour": 1})),
        "[[schedules]]: unknown key \"colour\""
    );
    assert_eq!(
        err(json!({"schedule": "* * * * * ?"})),
        "[[schedules]]: name is required"
    );
    // Keys of the flattened invoke context are named as written in the table.
    assert_eq!(
        err(json!({"name": "x", "schedule": "* * * * * ?"})),
        "schedule \"x\": mapping: is required"
    );
    assert!(err(json!({"name": "x", "mapping": "m", "analyze": 1}))
        .contains("schedule \"x\": analyze: must be true or false"));
    assert!(
        err(json!({"name": "x", "mapping": "m", "concurrentExecution": true}))
            .contains("concurrentExecution")
    );
}
