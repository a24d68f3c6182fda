//! Unit tests of the action dispatch (`act`, reference §3.5) and of the object redo on a
//! real store: what each decided action stages (writes, claim keys), how it fails (which
//! kind of error), and what an object refused to the end records.

use super::*;
use crate::app::App;
use crate::config::Config;
use crate::runner::StoreHost;

/// A store-backed mapping `m` from `system/lab/account` to `managed/user` (`key` → `_id`).
/// Policies depend on the link qualifier, so one fixture serves every action: qualifier
/// `link` makes ABSENT a LINK, `create` makes CONFIRMED a CREATE.
struct Fixture {
    _dir: tempfile::TempDir,
    app: App,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = r#"
[server]
data_dir = "db"

[managed.user]
indexed = ["userName"]

[system.lab.account]
connector = "store"

[[users]]
username = "t"
password = "t"

[[mappings]]
name = "m"
source = "system/lab/account"
target = "managed/user"
properties = [ { source = "key", target = "_id" }, { source = "userName", target = "userName" } ]
policies = [
  { situation = "ABSENT", action = "LINK", condition = '/linkQualifier eq "link"' },
  { situation = "ABSENT", action = "CREATE" },
  { situation = "CONFIRMED", action = "CREATE", condition = '/linkQualifier eq "create"' },
  { situation = "CONFIRMED", action = "UPDATE" },
]
"#;
    let path = dir.path().join("recon.toml");
    let config = Config::parse(&path, text, None, None).expect("valid config");
    let app = App::build(config).expect("app");
    Fixture { _dir: dir, app }
}

impl Fixture {
    fn put_target(&self, id: &str, body: Value) {
        let set = self
            .app
            .state
            .objects
            .get("managed/user")
            .expect("target set");
        set.put(id, body, None, false).expect("target");
    }

    /// Runs `f` with a worker context of a full run of `m` (as `execute_phases` builds it).
    fn with_ctx<R>(&self, analyze: bool, f: impl FnOnce(&Ctx<'_>, &mut WorkerScripts) -> R) -> R {
        let inner: &Inner = &self.app.state.runner.inner;
        let mapping = inner.mappings["m"].clone();
        let req = StartRequest {
            mapping: "m".into(),
            kind: ReconKind::Full,
            body: None,
            analyze,
            persist_associations: false,
            user: "t".into(),
            schedule: None,
        };
        let options = effective_options(&mapping, &req).expect("options");
        let run = Arc::new(RunState::new(
            "r".into(),
            1,
            mapping.clone(),
            ReconKind::Full,
            options,
            "t".into(),
        ));
        let source_set = inner.objects.get(&mapping.source).cloned().expect("source");
        let target_set = inner.objects.get(&mapping.target).cloned().expect("target");
        let host: Arc<dyn ScriptHost> = Arc::new(StoreHost::new(inner.objects.clone()));
        let ctx = Ctx {
            inner,
            run: &run,
            mapping: &mapping,
            source_set: source_set.clone(),
            target_set: target_set.clone(),
            targets: Targets::Store(target_set.as_store().expect("store-backed")),
            source_filter: Filter::True,
            full_source: true,
            target_was_empty: false,
            audit_all: false,
            touched: Mutex::new(IdSet::default()),
            touched_unproven: Default::default(),
            host: host.clone(),
            claims: Claims::new(1),
            failure_log: FailureLog::new(),
            correlation_fields: correlation_fields(&mapping),
            secret_attributes: target_set.secret_attributes(),
            counts_before_source: None,
        };
        let mut ws = WorkerScripts {
            ctx: None,
            limits: inner.settings.script_limits,
            host,
        };
        f(&ctx, &mut ws)
    }
}

fn op(situation: Situation, sid: &str, tid: Option<&str>, link: Option<Link>) -> Op {
    Op {
        situation: Some(situation),
        source_id: Some(sid.into()),
        target_id: tid.map(str::to_string),
        link,
        ..Op::default()
    }
}

fn link(q: &str, s: &str, t: &str) -> Link {
    Link {
        link_type: "m".into(),
        qualifier: q.into(),
        first_id: s.into(),
        second_id: t.into(),
        rev: 1,
    }
}

fn target(f: &Fixture, id: &str) -> Value {
    f.with_ctx(false, |ctx, _| {
        let unit = Unit::new(0);
        ctx.read_target(&unit, id)
            .ok()
            .flatten()
            .expect("target exists")
    })
}

#[test]
fn a_failed_create_still_claims_the_id_whose_existence_it_read() {
    // Regression (model test, seed 1074 under four threads): a CREATE that failed because
    // its mapped id existed named no target, so it claimed nothing for that id; a concurrent
    // unit deleting the id was not ordered with it, and the failure was kept although the
    // delete committed first.
    let f = fixture();
    f.put_target("t2", json!({"userName": "dee"}));
    f.with_ctx(false, |ctx, ws| {
        let mut unit = Unit::new(0);
        let source = json!({"_id": "s1", "key": "t2", "userName": "ann"});
        let mut o = op(Situation::Absent, "s1", None, None);
        let r = act(ctx, ws, &mut unit, &mut o, &source, None, "default", true);
        let e = r.expect_err("t2 exists");
        assert!(
            e.to_string().contains("target object already exists"),
            "{e}"
        );
        assert!(
            unit.keys.contains(&claim_key(b't', "", "t2")),
            "the id the CREATE checked is claimed"
        );
    });
}

#[test]
fn create_over_a_known_target_fails_even_when_linked() {
    // Regression (model test, seed 1): CONFIRMED + CREATE made a second target and repointed
    // the link; reference §3.5 says CREATE fails when a target is already known.
    let f = fixture();
    f.put_target("t1", json!({"userName": "ann"}));
    let t1 = target(&f, "t1");
    f.with_ctx(false, |ctx, ws| {
        let mut unit = Unit::new(0);
        let source = json!({"_id": "s1", "userName": "ann"});
        let l = link("create", "s1", "t1");
        let mut o = op(Situation::Confirmed, "s1", Some("t1"), Some(l));
        let r = act(
            ctx,
            ws,
            &mut unit,
            &mut o,
            &source,
            Some(t1),
            "create",
            true,
        );
        assert_eq!(
            r.expect_err("a target is known").to_string(),
            "target object already exists"
        );
        assert_eq!(o.action, Some(Action::Create));
        assert_eq!(unit.batch.mark().len_for_tests(), 0, "nothing staged");
        assert!(!o.link_created);
    });
}

#[test]
fn an_object_refused_to_the_end_is_failed_as_last_assessed_under_its_claims() {
    // Regression (model test, seeds 2263 and 2968 under four threads): after the last refused
    // attempt the object was assessed a fifth time and that assessment, never tried against
    // the store and made after its claims were released, was recorded as failed with the
    // old conflict (an IGNORE entry failing with "written twice in one batch").
    let f = fixture();
    f.put_target("t1", json!({"userName": "ann"}));
    // `Process` is a `'static` trait object: the counter is shared, not borrowed.
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let process = move |_: &Ctx<'_>, _: &mut WorkerScripts, unit: &mut Unit, id: &String| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        // Expects t1 absent: the store refuses every attempt.
        unit.batch
            .expect_object("managed/user", "t1", Expect::Absent);
        unit.keys.push(claim_key(b't', "", "t1"));
        unit.entries.push(EntryRecord {
            source_id: Some(id.clone()),
            situation: Some(format!("attempt {n}")),
            success: true,
            ..EntryRecord::default()
        });
        Ok(())
    };
    f.with_ctx(false, |ctx, ws| {
        let mut w = Worker {
            slot: 0,
            ws: WorkerScripts {
                ctx: None,
                limits: ws.limits,
                host: ws.host.clone(),
            },
        };
        redo_alone(ctx, &mut w, &"s1".to_string(), &process).expect("recorded");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            CAS_ATTEMPTS,
            "no unrefused extra attempt"
        );
        let mut entries = Vec::new();
        ctx.inner
            .store
            .scan_entries(ctx.run.seq, None, &mut |_, e| {
                entries.push(e);
                ControlFlow::Continue(())
            })
            .expect("entries");
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(
            e.situation.as_deref(),
            Some(&*format!("attempt {CAS_ATTEMPTS}"))
        );
        assert!(!e.success);
        assert!(
            e.message
                .as_deref()
                .is_some_and(|m| m.contains("kept changing concurrently")),
            "{e:?}"
        );
        assert!(
            ctx.claims
                .claim(9, &[claim_key(b't', "", "t1")], u64::MAX, &mut Vec::new())
                .is_ok(),
            "the claims were released"
        );
    });
}

#[test]
fn found_update_links_first_and_writes_only_a_changed_target() {
    let f = fixture();
    f.put_target("t1", json!({"userName": "bob"}));
    f.put_target("t2", json!({"userName": "ann"}));
    f.with_ctx(false, |ctx, ws| {
        let mut unit = Unit::new(0);
        let source = json!({"_id": "s1", "key": "t1", "userName": "ann"});
        let mut o = op(Situation::Found, "s1", Some("t1"), None);
        let t1 = ctx.read_target(&unit, "t1").expect("read");
        act(ctx, ws, &mut unit, &mut o, &source, t1, "default", true).expect("updated");
        assert_eq!(o.action, Some(Action::Update));
        assert!(o.link_created && o.target_written && o.executed);

        let mut unit = Unit::new(0);
        let source = json!({"_id": "s2", "key": "t2", "userName": "ann"});
        let mut o = op(Situation::Found, "s2", Some("t2"), None);
        let t2 = ctx.read_target(&unit, "t2").expect("read");
        act(ctx, ws, &mut unit, &mut o, &source, t2, "default", true).expect("linked");
        assert!(o.link_created && o.executed);
        assert!(!o.target_written, "an unchanged target is not written");
    });
}

#[test]
fn impossible_actions_are_constraint_failures_of_the_object() {
    let f = fixture();
    f.put_target("t1", json!({"userName": "ann"}));
    f.with_ctx(false, |ctx, ws| {
        // ABSENT + LINK (qualifier `link`): there is no target to link.
        let mut unit = Unit::new(0);
        let source = json!({"_id": "s1", "key": "t9", "userName": "ann"});
        let mut o = op(Situation::Absent, "s1", None, None);
        let e = act(ctx, ws, &mut unit, &mut o, &source, None, "link", true).expect_err("no target");
        assert!(
            matches!(e, WorkerError::Object(ObjectFailure::Constraint(ref m)) if m == "cannot LINK without a target"),
            "{e:?}"
        );
        // CONFIRMED + UPDATE whose mapped `_id` differs from the target's.
        let mut unit = Unit::new(0);
        let l = link("default", "s1", "t1");
        let mut o = op(Situation::Confirmed, "s1", Some("t1"), Some(l));
        let t1 = ctx.read_target(&unit, "t1").expect("read");
        let e = act(ctx, ws, &mut unit, &mut o, &source, t1, "default", true).expect_err("_id");
        assert!(
            matches!(e, WorkerError::Object(ObjectFailure::Constraint(ref m)) if m == "target '_id' has changed"),
            "{e:?}"
        );
    });
}

#[test]
fn exception_and_analysis_decide_but_stage_nothing() {
    let f = fixture();
    f.with_ctx(false, |ctx, ws| {
        let mut unit = Unit::new(0);
        let source = json!({"_id": "s1", "key": "t1", "userName": "ann"});
        let l = link("default", "s1", "gone");
        let mut o = op(Situation::Missing, "s1", Some("gone"), Some(l));
        act(ctx, ws, &mut unit, &mut o, &source, None, "default", true).expect("decided");
        assert_eq!(o.action, Some(Action::Exception));
        assert_eq!(
            o.exception.as_deref(),
            Some("Situation MISSING marked as EXCEPTION")
        );
        assert_eq!(unit.batch.mark().len_for_tests(), 0);
    });
    f.with_ctx(true, |ctx, ws| {
        let mut unit = Unit::new(0);
        let source = json!({"_id": "s1", "key": "t1", "userName": "ann"});
        let mut o = op(Situation::Absent, "s1", None, None);
        act(ctx, ws, &mut unit, &mut o, &source, None, "default", true).expect("decided");
        assert_eq!(o.action, Some(Action::Create));
        assert!(!o.executed && o.target_id.is_none());
        assert_eq!(
            unit.batch.mark().len_for_tests(),
            0,
            "an analysis writes nothing"
        );
    });
}

#[test]
fn an_operation_that_moves_a_link_claims_the_target_it_moved_away_from() {
    // Regression (model test, seed 156 under four threads): a MISSING source whose link named
    // t4 was re-linked to the t0 it created, claiming only t0; a source of another unit
    // creating t4 was not ordered with it, met the old link in the store's compare-and-swap
    // on every retry, and failed although the re-link committed first.
    let f = fixture();
    f.with_ctx(false, |ctx, _| {
        let mut unit = Unit::new(0);
        let mut o = op(
            Situation::Missing,
            "s3",
            Some("t0"),
            Some(link("default", "s3", "t4")),
        );
        finish_op(ctx, &mut unit, &mut o, "default", "source");
        for t in ["t0", "t4"] {
            assert!(
                unit.keys.contains(&claim_key(b't', "", t)),
                "{t} is claimed: {:?}",
                unit.keys
            );
        }
    });
}
