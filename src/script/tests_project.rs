//! Tests of the project globals: `require` and the built-in lodash, `identityServer`,
//! `mappingConfig`, `config/` reads, crypto, `console`, error positions, and the limits on
//! host results and pending jobs.

use super::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

static N: AtomicU64 = AtomicU64::new(0);

/// A project folder with `files`, removed on drop.
struct Project(PathBuf);

impl Project {
    fn new(files: &[(&str, &str)]) -> Project {
        let dir = std::env::temp_dir().join(format!(
            "recond-scriptproj-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        for (rel, text) in files {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        std::fs::create_dir_all(dir.join("conf")).expect("mkdir");
        Project(dir)
    }

    fn env(&self, mapping: Option<Value>) -> Arc<ScriptEnv> {
        let mut explicit = BTreeMap::new();
        explicit.insert("hr.domain".to_string(), "example.com".to_string());
        let props = crate::idm::Properties::new(explicit, &self.0).expect("props");
        Arc::new(ScriptEnv {
            project: Arc::new(ProjectEnv::new(&self.0, Some(&self.0.join("conf")), props)),
            mapping_config: mapping.map(Arc::new),
        })
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn compiled(env: &Arc<ScriptEnv>, source: &str) -> CompiledScript {
    compile(ScriptSpec {
        name: "t".into(),
        source: source.into(),
        globals: Map::new(),
        env: Some(env.clone()),
    })
    .expect("compiles")
}

fn run(env: &Arc<ScriptEnv>, source: &str) -> Result<Value, ScriptError> {
    let mut cx = ScriptContext::new(ScriptLimits::default(), Arc::new(NoHost)).expect("cx");
    cx.eval(&compiled(env, source), &[])
}

fn ok(env: &Arc<ScriptEnv>, source: &str) -> Value {
    run(env, source).unwrap_or_else(|e| panic!("{source}: {e}"))
}

#[test]
fn builtin_lodash_covers_the_samples_functions() {
    let p = Project::new(&[]);
    let env = p.env(None);
    let cases: &[(&str, Value)] = &[
        ("var _ = require('lodash'); _.isEmpty({}) && _.isEmpty([]) && !_.isEmpty('a')", json!(true)),
        ("var _ = require('lodash'); _.get({a: {b: [1, {c: 3}]}}, 'a.b[1].c')", json!(3)),
        ("var _ = require('lodash'); _.get({}, 'a.b', 'd')", json!("d")),
        ("var _ = require('lodash'); _.find([{k: 1}, {k: 2}], {k: 2})", json!({"k": 2})),
        ("var _ = require('lodash'); _.map({a: 1, b: 2}, function (v, k) { return k + v; })", json!(["a1", "b2"])),
        ("var _ = require('lodash'); _.map([{n: 'x'}], 'n')", json!(["x"])),
        ("var _ = require('lodash'); _.filter([1, 2, 3, 4], function (x) { return x % 2; })", json!([1, 3])),
        ("var _ = require('lodash'); _.reduce([1, 2, 3], function (s, x) { return s + x; }, 10)", json!(16)),
        ("var _ = require('lodash'); var n = 0; _.each([1, 2], function (x) { n += x; }); _.forEach({a: 3}, function (x) { n += x; }); n", json!(6)),
        ("var _ = require('lodash'); _.contains(['a'], 'a') && _.includes('abc', 'b')", json!(true)),
        ("var _ = require('lodash'); [_.isArray([]), _.isObject({}), _.isString(''), _.isFunction(_.map), _.isUndefined(undefined), _.isNull(null)]", json!([true, true, true, true, true, true])),
        ("var _ = require('lodash'); [_.keys({a: 1, b: 2}), _.values({a: 1}), _.has({a: {b: 1}}, 'a.b')]", json!([["a", "b"], [1], true])),
        ("var _ = require('lodash'); [_.omit({a: 1, b: 2}, 'a'), _.pick({a: 1, b: 2}, ['b'])]", json!([{"b": 2}, {"b": 2}])),
        ("var _ = require('lodash'); var o = {a: [1]}; var c = _.cloneDeep(o); c.a.push(2); [o, _.clone([1])]", json!([{"a": [1]}, [1]])),
        ("var _ = require('lodash'); _.isEqual({a: [1, {b: 2}]}, {a: [1, {b: 2}]}) && !_.isEqual([1], [2])", json!(true)),
        ("var _ = require('lodash'); [_.uniq([1, 1, 2]), _.union([1], [2, 1]), _.difference([1, 2, 3], [2]), _.flatten([1, [2, [3]]])]", json!([[1, 2], [1, 2], [1, 3], [1, 2, [3]]])),
        ("var _ = require('lodash'); [_.assign({a: 1}, {b: 2}), _.extend({}, {c: 3}), _.merge({a: {x: 1}}, {a: {y: 2}})]", json!([{"a": 1, "b": 2}, {"c": 3}, {"a": {"x": 1, "y": 2}}])),
        ("var _ = require('lodash'); [_.some([1, 2], function (x) { return x > 1; }), _.every([1, 2], function (x) { return x > 1; })]", json!([true, false])),
        ("var _ = require('lodash'); _.sortBy([{n: 'b'}, {n: 'a'}], 'n')", json!([{"n": "a"}, {"n": "b"}])),
        ("var _ = require('lodash'); _.groupBy(['one', 'two', 'three'], 'length')", json!({"3": ["one", "two"], "5": ["three"]})),
        ("var _ = require('lodash'); [_.indexBy([{id: 'x'}], 'id'), _.keyBy([{id: 'y'}], 'id')]", json!([{"x": {"id": "x"}}, {"y": {"id": "y"}}])),
        ("var _ = require('lodash'); [_.pluck([{a: 1}, {a: 2}], 'a'), _.first([5, 6]), _.last([5, 6]), _.toArray({a: 1}), _.size({a: 1, b: 2})]", json!([[1, 2], 5, 6, [1], 2])),
        ("var _ = require('lodash'); _.chain([3, 1, 2]).sortBy().map(function (x) { return x * 2; }).value()", json!([2, 4, 6])),
    ];
    let mut cx = ScriptContext::new(ScriptLimits::default(), Arc::new(NoHost)).expect("cx");
    for (src, want) in cases {
        let got = cx
            .eval(&compiled(&env, src), &[])
            .unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(&got, want, "{src}");
    }
}

#[test]
fn require_resolves_project_modules_and_a_real_lodash_wins() {
    let p = Project::new(&[
        ("script/util/names.js", "exports.full = function (s) { return s.givenName + ' ' + s.sn; };\nexports.loads = (exports.loads || 0) + 1;"),
        ("script/counter.js", "var helper = require('./util/names');\nmodule.exports = { greet: function (s) { return 'hi ' + helper.full(s); } };"),
        ("lodash.js", "module.exports = { real: true };"),
        ("script/broken.js", "module.exports = 1;\nfunction explode() {\n  throw new Error('boom');\n}\nexplode();"),
    ]);
    let env = p.env(None);
    assert_eq!(
        ok(
            &env,
            "require('counter').greet({givenName: 'Ann', sn: 'Lee'})"
        ),
        json!("hi Ann Lee")
    );
    assert_eq!(ok(&env, "require('lodash').real"), json!(true));
    let mut cx = ScriptContext::new(ScriptLimits::default(), Arc::new(NoHost)).expect("cx");
    let twice = compiled(
        &env,
        "require('util/names.js'); require('util/names').loads",
    );
    assert_eq!(
        cx.eval(&twice, &[]).expect("ok"),
        json!(1),
        "cached per context"
    );
    assert_eq!(cx.eval(&twice, &[]).expect("ok"), json!(1));
    let e = run(&env, "require('nope')").expect_err("missing");
    assert!(e.message.contains("Cannot find module 'nope'"), "{e}");
    let e = run(&env, "var x = 1;\nrequire('broken')").expect_err("throws");
    assert!(
        e.message.contains("broken.js:3") && e.message.contains("explode"),
        "the module's file, line and function: {e}"
    );
    let bare = compile(ScriptSpec {
        name: "t".into(),
        source: "require('lodash').isEmpty([])".into(),
        globals: Map::new(),
        env: None,
    })
    .expect("compiles");
    let mut cx = ScriptContext::new(ScriptLimits::default(), Arc::new(NoHost)).expect("cx");
    assert_eq!(cx.eval(&bare, &[]).expect("built-in"), json!(true));
    let idm_path = compile(ScriptSpec {
        name: "t".into(),
        source: "require('lib/lodash').map([1], function (x) { return x + 1; })".into(),
        ..ScriptSpec::default()
    })
    .expect("compiles");
    assert_eq!(cx.eval(&idm_path, &[]).expect("IDM's path"), json!([2]));
}

#[test]
fn identity_server_mapping_config_and_context() {
    let p = Project::new(&[(
        "conf/provisioner.openicf-hr.json",
        r#"{"name": "hr", "configurationProperties": {"csvFile": "&{idm.instance.dir}/hr.csv"}}"#,
    )]);
    let env = p.env(Some(
        json!({"name": "hrToUser", "source": "system/hr/account"}),
    ));
    assert_eq!(
        ok(&env, "[identityServer.getProperty('hr.domain'), identityServer.getProperty('no.such', 'dflt'), identityServer.getProperty('no.such')]"),
        json!(["example.com", "dflt", null])
    );
    assert_eq!(
        ok(&env, "identityServer.getProjectLocation()"),
        json!(p.0.display().to_string())
    );
    assert_eq!(
        ok(&env, "mappingConfig.name + ':' + mappingConfig.source"),
        json!("hrToUser:system/hr/account")
    );
    assert_eq!(
        ok(&env, "context.security.authenticationId"),
        json!("recond")
    );
    assert_eq!(ok(&env, "linkQualifier"), json!("default"));
    assert_eq!(
        ok(
            &env,
            "openidm.read('config/provisioner.openicf/hr').configurationProperties.csvFile"
        ),
        json!(format!("{}/hr.csv", p.0.display()))
    );
    assert_eq!(ok(&env, "openidm.read('config/sync')"), Value::Null);
    assert_eq!(ok(&env, "console.log('a', {b: 1}); true"), json!(true));
}

#[test]
fn crypto_functions() {
    let p = Project::new(&[]);
    let env = p.env(None);
    assert_eq!(
        ok(&env, "var h = openidm.hash('secret'); [openidm.isHashed(h), openidm.isEncrypted(h), h.$crypto.type]"),
        json!([true, false, "salted-hash"])
    );
    assert_eq!(ok(&env, "openidm.decrypt('clear')"), json!("clear"));
    let e = run(&env, "openidm.encrypt('x', 'AES', 'k')").expect_err("no key");
    assert!(e.message.contains("no encryption key"), "{e}");
}

/// A host whose query returns `n` objects.
struct BigHost(usize);

impl ScriptHost for BigHost {
    fn read(&self, _: &str) -> Result<Option<Value>, String> {
        Ok(None)
    }
    fn query(&self, _: &str, _: &Value) -> Result<Value, String> {
        let result: Vec<Value> = (0..self.0)
            .map(|i| json!({"_id": i.to_string(), "userName": format!("user{i}"), "mail": "x@example.com"}))
            .collect();
        Ok(json!({"result": result}))
    }
    fn create(&self, _: &str, _: Option<&str>, _: &Value) -> Result<Value, String> {
        Ok(Value::Null)
    }
    fn update(&self, _: &str, _: Option<&str>, _: &Value) -> Result<Value, String> {
        Ok(Value::Null)
    }
    fn patch(&self, _: &str, _: Option<&str>, _: &Value) -> Result<Value, String> {
        Ok(Value::Null)
    }
    fn delete(&self, _: &str, _: Option<&str>) -> Result<Value, String> {
        Ok(Value::Null)
    }
    fn action(&self, _: &str, _: &str, _: &Value, _: &Value) -> Result<Value, String> {
        Ok(Value::Null)
    }
}

#[test]
fn host_results_are_bounded_by_the_memory_limit() {
    let limits = ScriptLimits {
        time: Duration::from_secs(5),
        memory_bytes: 4 << 20,
    };
    let q = compile(ScriptSpec {
        name: "q".into(),
        source: "openidm.query('managed/user', {_queryFilter: 'true'}).result.length".into(),
        ..ScriptSpec::default()
    })
    .expect("compiles");
    let mut cx = ScriptContext::new(limits, Arc::new(BigHost(100))).expect("cx");
    assert_eq!(cx.eval(&q, &[]).expect("small result"), json!(100));
    let mut cx = ScriptContext::new(limits, Arc::new(BigHost(200_000))).expect("cx");
    let e = cx.eval(&q, &[]).expect_err("too large");
    assert!(
        e.message.contains("openidm.query returned more than 1 MiB"),
        "a clear error: {e}"
    );
    let catchable = compile(ScriptSpec {
        name: "c".into(),
        source: "try { openidm.query('managed/user', {}); 'no' } catch (e) { 'caught' }".into(),
        ..ScriptSpec::default()
    })
    .expect("compiles");
    assert_eq!(cx.eval(&catchable, &[]).expect("caught"), json!("caught"));
}

#[test]
fn pending_jobs_past_the_time_limit_fail_the_evaluation() {
    let limits = ScriptLimits {
        time: Duration::from_millis(200),
        memory_bytes: 64 << 20,
    };
    let mut cx = ScriptContext::new(limits, Arc::new(NoHost)).expect("cx");
    let looping = compile(ScriptSpec {
        name: "loop".into(),
        source: "function again() { return Promise.resolve().then(again); } again(); 'done'".into(),
        ..ScriptSpec::default()
    })
    .expect("compiles");
    let e = cx.eval(&looping, &[]).expect_err("jobs hit the limit");
    assert_eq!(e.kind, ScriptErrorKind::Timeout, "{e}");
    assert!(e.message.contains("pending Promise jobs"), "{e}");
    let spin = compile(ScriptSpec {
        name: "spin".into(),
        source: "Promise.resolve().then(function () { while (true) {} }); 'done'".into(),
        ..ScriptSpec::default()
    })
    .expect("compiles");
    assert_eq!(
        cx.eval(&spin, &[]).expect_err("spins").kind,
        ScriptErrorKind::Timeout
    );
    let fine = compile(ScriptSpec {
        name: "fine".into(),
        source: "var r; Promise.resolve(2).then(function (v) { r = v; }); 'ok'".into(),
        ..ScriptSpec::default()
    })
    .expect("compiles");
    assert_eq!(
        cx.eval(&fine, &[]).expect("the next script is unaffected"),
        json!("ok")
    );
}

#[test]
fn script_errors_name_the_function() {
    let p = Project::new(&[]);
    let env = p.env(None);
    let e = run(
        &env,
        "function check(s) {\n  throw new Error('bad ' + s);\n}\ncheck('x');",
    )
    .expect_err("throws");
    assert!(
        e.message.contains("at line 2") && e.message.contains("in function check"),
        "{e}"
    );
}
