//! Tests for the script module (QuickJS embedding, conversion, host objects, limits).

use super::compile::{EVAL_FILE, FILE};
use super::error::stack_position;
use super::*;
use parking_lot::Mutex;
use serde_json::json;
use std::sync::Arc;

fn spec(name: &str, source: &str) -> ScriptSpec {
    ScriptSpec {
        name: name.into(),
        source: source.into(),
        globals: Map::new(),
        env: None,
    }
}

fn script(source: &str) -> CompiledScript {
    compile(spec("test", source)).expect("test script compiles")
}

fn context() -> ScriptContext {
    ScriptContext::new(ScriptLimits::default(), Arc::new(NoHost)).expect("context")
}

fn eval(cx: &mut ScriptContext, source: &str, scope: &[(&str, &Value)]) -> Value {
    cx.eval(&script(source), scope).expect("script succeeds")
}

#[test]
fn completion_values() {
    let mut cx = context();
    assert_eq!(eval(&mut cx, "var q = {a:1}; q;", &[]), json!({"a": 1}));
    assert_eq!(eval(&mut cx, "1 + 2", &[]), json!(3));
    assert_eq!(
        eval(&mut cx, "'a' + 'b';  // trailing comment", &[]),
        json!("ab")
    );
    assert_eq!(
        eval(
            &mut cx,
            "var x = 2;\nif (x > 1) { 'big' } else { 'small' }",
            &[]
        ),
        json!("big")
    );
    assert_eq!(eval(&mut cx, "var x = 1;", &[]), Value::Null);
    assert_eq!(eval(&mut cx, "undefined", &[]), Value::Null);
    assert_eq!(
        eval(&mut cx, "function f(a) { return a * 2; } f(21)", &[]),
        json!(42)
    );
    assert_eq!(eval(&mut cx, "var q = {a: 1}\nq", &[]), json!({"a": 1}));
    assert_eq!(eval(&mut cx, "x = 5; y = x * 2", &[]), json!(10));
    assert_eq!(
        eval(&mut cx, "for (var i = 0, s = 0; i < 4; i++) s += i;", &[]),
        json!(6)
    );
    // Both forms of a block-vs-object ambiguity behave as in a real script.
    assert_eq!(eval(&mut cx, "{a: 1}", &[]), json!(1));
}

#[test]
fn scope_variables_visible_and_not_leaking() {
    let mut cx = context();
    let src = json!("Alice@Example.COM");
    let target = json!({"mail": "old"});
    let s = script("source.toLowerCase() + '|' + target.mail");
    assert_eq!(
        cx.eval(&s, &[("source", &src), ("target", &target)])
            .expect("ok"),
        json!("alice@example.com|old")
    );
    let probe = script("typeof source + ',' + typeof target");
    assert_eq!(
        cx.eval(&probe, &[]).expect("ok"),
        json!("undefined,undefined")
    );

    // Top-level var declarations and implicit globals stay inside one evaluation.
    let declare = script("var leaked = 1; implicit = 2; leaked + implicit");
    assert_eq!(cx.eval(&declare, &[]).expect("ok"), json!(3));
    let check = script("typeof leaked + ',' + typeof implicit");
    assert_eq!(
        cx.eval(&check, &[]).expect("ok"),
        json!("undefined,undefined")
    );
    // The same script again still works (no redeclaration problems), also with `let`.
    assert_eq!(cx.eval(&declare, &[]).expect("ok"), json!(3));
    let with_let = script("let z = 3; const w = 4; z + w");
    assert_eq!(cx.eval(&with_let, &[]).expect("ok"), json!(7));
    assert_eq!(cx.eval(&with_let, &[]).expect("ok"), json!(7));
    // A script redeclaring a scope variable with `let` falls back to the eval form.
    let shadow = script("let source = 'mine'; source");
    assert_eq!(
        cx.eval(&shadow, &[("source", &src)]).expect("ok"),
        json!("mine")
    );
    // Assigning to a scope variable does not change the caller's value or the next run.
    let assign = script("source = 'changed'; source");
    assert_eq!(
        cx.eval(&assign, &[("source", &src)]).expect("ok"),
        json!("changed")
    );
    assert_eq!(
        cx.eval(&s, &[("source", &src), ("target", &target)])
            .expect("ok"),
        json!("alice@example.com|old")
    );
}

#[test]
fn same_script_with_different_variable_sets() {
    let mut cx = context();
    let s = script("typeof a === 'undefined' ? 'no a' : a");
    let one = json!(1);
    assert_eq!(cx.eval(&s, &[]).expect("ok"), json!("no a"));
    assert_eq!(cx.eval(&s, &[("a", &one)]).expect("ok"), json!(1));
    assert_eq!(cx.eval(&s, &[("b", &one)]).expect("ok"), json!("no a"));
    let bad = cx
        .eval(&s, &[("not-an-identifier", &one)])
        .expect_err("bad name");
    assert_eq!(bad.kind, ScriptErrorKind::Conversion);
}

#[test]
fn globals_and_scope_override() {
    let mut cx = context();
    let mut g = spec("g", "prefix + source + (typeof other)");
    g.globals.insert("prefix".into(), json!("p-"));
    g.globals.insert("source".into(), json!("from-globals"));
    let s = compile(g).expect("compiles");
    let src = json!("x");
    assert_eq!(
        cx.eval(&s, &[("source", &src)]).expect("ok"),
        json!("p-xundefined")
    );
    assert_eq!(
        cx.eval(&s, &[]).expect("ok"),
        json!("p-from-globalsundefined")
    );
}

#[test]
fn values_round_trip() {
    let mut cx = context();
    let v = json!({
        "s": "text é ☃", "i": 42, "neg": -7, "big": 9_007_199_254_740_993_i64, "f": 1.5,
        "t": true, "n": null, "arr": [1, "two", [3], {"four": 4}],
        "nested": {"a": {"b": {"c": [null, false]}}}, "empty": {}, "ea": []
    });
    let out = eval(&mut cx, "source", &[("source", &v)]);
    assert_eq!(out["s"], v["s"]);
    assert_eq!(out["i"], json!(42));
    assert_eq!(out["big"], json!(9_007_199_254_740_992_i64)); // JS number precision
    assert_eq!(out["arr"], v["arr"]);
    assert_eq!(out["nested"], v["nested"]);
    assert_eq!(out["empty"], json!({}));
    assert_eq!(out["ea"], json!([]));
    assert_eq!(out["n"], Value::Null);
}

#[test]
fn integers_and_floats() {
    let mut cx = context();
    let one = eval(&mut cx, "1", &[]);
    assert!(one.is_i64(), "{one:?}");
    let two = eval(&mut cx, "4 / 2", &[]);
    assert!(two.is_i64(), "{two:?}");
    assert_eq!(eval(&mut cx, "2 ** 40", &[]), json!(1_099_511_627_776_i64));
    let half = eval(&mut cx, "1 / 2", &[]);
    assert_eq!(half, json!(0.5));
    assert_eq!(eval(&mut cx, "NaN", &[]), Value::Null);
    assert_eq!(eval(&mut cx, "[1/0, -1/0]", &[]), json!([null, null]));
    assert_eq!(eval(&mut cx, "-0", &[]), json!(0));
    assert_eq!(
        eval(&mut cx, "12345678901234567890n", &[]),
        json!("12345678901234567890")
    );
    assert_eq!(eval(&mut cx, "5n", &[]), json!(5));
    assert_eq!(
        eval(&mut cx, "new Date(Date.UTC(2024, 0, 2, 3, 4, 5))", &[]),
        json!("2024-01-02T03:04:05.000Z")
    );
    assert_eq!(
        eval(&mut cx, "[undefined, function(){}.x]", &[]),
        json!([null, null])
    );
}

#[test]
fn functions_cannot_be_returned() {
    let mut cx = context();
    let e = cx
        .eval(&script("(function () {})"), &[])
        .expect_err("function");
    assert_eq!(e.kind, ScriptErrorKind::Conversion);
    let e = cx
        .eval(&script("({a: [1, function () {}]})"), &[])
        .expect_err("function");
    assert!(e.message.contains("result.a[1]"), "{e}");
    let e = cx
        .eval(&script("var o = {}; o.self = o; o"), &[])
        .expect_err("cycle");
    assert_eq!(e.kind, ScriptErrorKind::Conversion);
    assert!(e.to_string().contains("cyclic"), "{e}");
}

#[test]
fn thrown_errors_have_message_and_line() {
    let mut cx = context();
    let s = compile(spec(
        "mapping m, properties[0].transform",
        "var a = 1;\nvar b = null;\nb.x",
    ))
    .expect("ok");
    let e = cx.eval(&s, &[]).expect_err("throws");
    assert_eq!(e.kind, ScriptErrorKind::Thrown);
    assert_eq!(e.script, "mapping m, properties[0].transform");
    assert!(e.message.starts_with("TypeError: "), "{e}");
    assert!(e.message.ends_with(" at line 3"), "{e}");
    assert!(
        e.to_string()
            .starts_with("script \"mapping m, properties[0].transform\" threw: TypeError"),
        "{e}"
    );
    // Eval form (last statement is an `if`).
    let e = cx
        .eval(
            &script("var a = 1;\nif (a) {\n  throw new Error('boom');\n}"),
            &[],
        )
        .expect_err("throws");
    assert_eq!(e.message, "Error: boom at line 3");
    // Non-Error values.
    let e = cx.eval(&script("throw 'plain'"), &[]).expect_err("throws");
    assert_eq!(e.message, "plain");
    let e = cx
        .eval(&script("throw {code: 400, message: 'bad'}"), &[])
        .expect_err("throws");
    assert_eq!(e.kind, ScriptErrorKind::Thrown);
    assert!(e.message.contains("\"code\":400"), "{e}");
    // Deep recursion is a catchable RangeError, not a crash.
    let e = cx
        .eval(&script("function r(n) { return r(n + 1) + 1; } r(0)"), &[])
        .expect_err("deep");
    assert!(e.message.starts_with("RangeError"), "{e}");
    // The context still works.
    assert_eq!(eval(&mut cx, "'ok'", &[]), json!("ok"));
}

#[test]
fn endless_loop_hits_time_limit() {
    let limits = ScriptLimits {
        time: Duration::from_millis(50),
        ..ScriptLimits::default()
    };
    let mut cx = ScriptContext::new(limits, Arc::new(NoHost)).expect("context");
    let e = cx
        .eval(
            &script("try { while (true) {} } catch (e) { 'caught' }"),
            &[],
        )
        .expect_err("times out");
    assert_eq!(e.kind, ScriptErrorKind::Timeout);
    assert_eq!(
        e.to_string(),
        "script \"test\" exceeded its time limit of 50 ms"
    );
    let e = cx
        .eval(&script("var x = 0;\nfor (;;) { x++; }"), &[])
        .expect_err("times out");
    assert_eq!(e.kind, ScriptErrorKind::Timeout);
    assert_eq!(eval(&mut cx, "1 + 1", &[]), json!(2));
}

#[test]
fn runaway_allocation_hits_memory_limit() {
    // A generous time limit: the memory limit must be what stops these loops, even on a
    // loaded machine.
    let limits = ScriptLimits {
        memory_bytes: 8 << 20,
        time: std::time::Duration::from_secs(60),
    };
    let mut cx = ScriptContext::new(limits, Arc::new(NoHost)).expect("context");
    let e = cx
        .eval(
            &script("var a = []; while (true) { a.push({x: 'abc' + a.length}); }"),
            &[],
        )
        .expect_err("oom");
    assert_eq!(e.kind, ScriptErrorKind::OutOfMemory, "{e}");
    assert_eq!(
        e.to_string(),
        "script \"test\" exceeded the memory limit of 8 MiB"
    );
    let e = cx
        .eval(
            &script("var a = []; for (;;) a.push(new Array(100000).fill(1));"),
            &[],
        )
        .expect_err("oom");
    assert_eq!(e.kind, ScriptErrorKind::OutOfMemory, "{e}");
    let src = json!("still works");
    assert_eq!(eval(&mut cx, "source", &[("source", &src)]), src);
}

#[test]
fn syntax_errors_at_compile() {
    let e = compile(spec(
        "bad",
        "var a = 1;\nvar b = 2;\nvar c = foo(1, );\nx = (1 + );",
    ))
    .expect_err("syntax");
    assert_eq!(e.kind, ScriptErrorKind::Syntax);
    assert_eq!(
        e.message,
        "SyntaxError: unexpected token in expression: ')' at line 4, column 10"
    );
    let e = compile(spec("bad", "var a = (;")).expect_err("syntax");
    assert!(e.message.ends_with("at line 1, column 10"), "{e}");
    assert!(
        e.to_string()
            .starts_with("script \"bad\" failed to compile: SyntaxError"),
        "{e}"
    );
    // Unbalanced braces cannot escape into running code at compile time.
    let e = compile(spec("bad", "}); while(true){} (function(){")).expect_err("syntax");
    assert_eq!(e.kind, ScriptErrorKind::Syntax);
    assert!(compile(spec("nul", "1\0")).is_err());
    // Compiling runs nothing: an endless loop compiles instantly.
    assert!(compile(spec("loop", "while (true) {}")).is_ok());
}

#[test]
fn supported_types() {
    assert!(is_supported_type("text/javascript"));
    assert!(is_supported_type("javascript"));
    assert!(!is_supported_type("groovy"));
    assert!(!is_supported_type("text/x-groovy"));
}

/// Fake repository: `managed/user/<id>` objects, queries by `_queryFilter`.
#[derive(Default)]
struct FakeHost {
    calls: Mutex<Vec<String>>,
}

impl ScriptHost for FakeHost {
    fn read(&self, id: &str) -> Result<Option<Value>, String> {
        self.calls.lock().push(format!("read {id}"));
        match id {
            "managed/user/1" => Ok(Some(json!({"_id": "1", "userName": "bjensen"}))),
            "managed/user/fail" => Err("backend down".into()),
            _ => Ok(None),
        }
    }
    fn query(&self, resource: &str, params: &Value) -> Result<Value, String> {
        self.calls.lock().push(format!("query {resource} {params}"));
        Ok(json!({"result": [{"_id": "1", "userName": "bjensen"}], "resultCount": 1}))
    }
    fn create(
        &self,
        resource: &str,
        new_id: Option<&str>,
        content: &Value,
    ) -> Result<Value, String> {
        self.calls
            .lock()
            .push(format!("create {resource} {new_id:?} {content}"));
        Ok(json!({"_id": new_id.unwrap_or("generated")}))
    }
    fn update(&self, id: &str, rev: Option<&str>, content: &Value) -> Result<Value, String> {
        self.calls
            .lock()
            .push(format!("update {id} {rev:?} {content}"));
        Ok(content.clone())
    }
    fn patch(&self, id: &str, rev: Option<&str>, ops: &Value) -> Result<Value, String> {
        self.calls.lock().push(format!("patch {id} {rev:?} {ops}"));
        Ok(json!({}))
    }
    fn delete(&self, id: &str, rev: Option<&str>) -> Result<Value, String> {
        self.calls.lock().push(format!("delete {id} {rev:?}"));
        Ok(json!({"_id": id}))
    }
    fn action(&self, r: &str, a: &str, c: &Value, p: &Value) -> Result<Value, String> {
        self.calls.lock().push(format!("action {r} {a} {c} {p}"));
        Ok(json!({"done": true}))
    }
}

#[test]
fn openidm_host_calls() {
    let host = Arc::new(FakeHost::default());
    let mut cx = ScriptContext::new(ScriptLimits::default(), host.clone()).expect("context");
    let src = json!({"userName": "bjensen"});
    let scope: &[(&str, &Value)] = &[("source", &src)];

    assert_eq!(
        cx.eval(&script("openidm.read('managed/user/1').userName"), scope)
            .expect("ok"),
        json!("bjensen")
    );
    assert_eq!(
        cx.eval(&script("openidm.read('managed/user/2')"), scope)
            .expect("ok"),
        Value::Null
    );

    let correlation =
        script("var qry = {'_queryFilter': 'userName eq \"' + source.userName + '\"'}; qry");
    assert_eq!(
        cx.eval(&correlation, scope).expect("ok"),
        json!({"_queryFilter": "userName eq \"bjensen\""})
    );
    let via_query = script(
        "var res = openidm.query('managed/user', \
           {'_queryFilter': 'userName eq \"' + source.userName + '\"'}, ['_id']);\n\
         res.result.map(function (o) { return o._id; });",
    );
    assert_eq!(cx.eval(&via_query, scope).expect("ok"), json!(["1"]));

    let writes = script(
        "openidm.create('managed/user', null, {a: 1});\n\
         openidm.update('managed/user/1', '3', {b: 2});\n\
         openidm.patch('managed/user/1', null, [{operation: 'replace', field: 'x', value: 1}]);\n\
         openidm.delete('managed/user/1', '4');\n\
         openidm.action('external/email', 'send', {to: 'x'})",
    );
    assert_eq!(cx.eval(&writes, scope).expect("ok"), json!({"done": true}));
    let calls = host.calls.lock().clone();
    assert_eq!(
        calls[2],
        // Keys in the order the script wrote them (serde_json's preserve_order).
        "query managed/user {\"_queryFilter\":\"userName eq \\\"bjensen\\\"\",\"_fields\":\"_id\"}"
    );
    assert_eq!(calls[3], "create managed/user None {\"a\":1}");
    assert_eq!(calls[4], "update managed/user/1 Some(\"3\") {\"b\":2}");
    assert!(
        calls[5].starts_with("patch managed/user/1 None [{"),
        "{}",
        calls[5]
    );
    assert_eq!(calls[6], "delete managed/user/1 Some(\"4\")");
    assert_eq!(calls[7], "action external/email send {\"to\":\"x\"} {}");

    // Host errors are catchable exceptions carrying the host's message...
    let caught = script(
        "try { openidm.read('managed/user/fail'); 'no' } catch (e) { 'caught: ' + e.message }",
    );
    assert_eq!(
        cx.eval(&caught, scope).expect("ok"),
        json!("caught: backend down")
    );
    // ...and uncaught ones fail the script.
    let e = cx
        .eval(&script("openidm.read('managed/user/fail')"), scope)
        .expect_err("throws");
    assert_eq!(e.message, "Error: backend down at line 1");
    // The host objects cannot be replaced by a script.
    assert_eq!(
        cx.eval(&script("openidm = null; typeof openidm"), &[])
            .expect("ok"),
        json!("object")
    );
}

#[test]
fn no_host_refuses() {
    let mut cx = context();
    let e = cx
        .eval(&script("openidm.read('x')"), &[])
        .expect_err("no host");
    assert_eq!(
        e.message,
        "Error: openidm.read is not available here at line 1"
    );
}

#[test]
fn logger_placeholders() {
    assert_eq!(
        logger::substitute("user {} has {}", ["a", "b"].into_iter(), str::to_owned),
        "user a has b"
    );
    assert_eq!(
        logger::substitute("{} and {}", ["a"].into_iter(), str::to_owned),
        "a and {}"
    );
    assert_eq!(
        logger::substitute("none", ["a"].into_iter(), str::to_owned),
        "none"
    );
    let mut cx = context();
    let src = json!({"x": [1]});
    // Calls with every level and argument shape succeed and return undefined.
    let s = script(
        "logger.info('user {} has {}', 'bjensen', source);\n\
         logger.warn('w {}', undefined); logger.error('e'); logger.debug('d {}', 1.5);\n\
         logger.trace(); logger.isDebugEnabled(); 'logged'",
    );
    assert_eq!(
        cx.eval(&s, &[("source", &src)]).expect("ok"),
        json!("logged")
    );
}

#[test]
fn thread_context_is_reused_and_reentrant() {
    let host: Arc<dyn ScriptHost> = Arc::new(NoHost);
    let s = script("typeof cache === 'undefined' ? 1 : 2");
    let a = with_thread_context(ScriptLimits::default(), &host, |cx| {
        let inner = with_thread_context(ScriptLimits::default(), &host, |cx2| {
            cx2.eval(&s, &[]).expect("ok")
        })
        .expect("nested context");
        (cx.eval(&s, &[]).expect("ok"), inner)
    })
    .expect("context");
    assert_eq!(a, (json!(1), json!(1)));
    let b = with_thread_context(ScriptLimits::default(), &host, |cx| cx.eval(&s, &[]))
        .expect("context")
        .expect("ok");
    assert_eq!(b, json!(1));
}

#[test]
fn deep_input_is_rejected_not_crashing() {
    let mut cx = context();
    let mut deep = json!(1);
    for _ in 0..1000 {
        deep = json!([deep]);
    }
    let e = cx
        .eval(&script("source"), &[("source", &deep)])
        .expect_err("too deep");
    assert_eq!(e.kind, ScriptErrorKind::Conversion);
    // A small graph whose tree form is huge (2^40 leaves) hits the node budget.
    let limits = ScriptLimits {
        memory_bytes: 8 << 20,
        ..ScriptLimits::default()
    };
    let mut cx = ScriptContext::new(limits, Arc::new(NoHost)).expect("context");
    let e = cx
        .eval(
            &script("var a = []; for (var i = 0; i < 40; i++) a = [a, a]; a"),
            &[],
        )
        .expect_err("too large");
    assert_eq!(e.kind, ScriptErrorKind::Conversion);
}

#[test]
fn stack_positions() {
    assert_eq!(
        stack_position("    at <anonymous> (script:2:10)\n", FILE),
        Some((2, 10))
    );
    assert_eq!(stack_position("    at script:4:10\n", FILE), Some((4, 10)));
    assert_eq!(
        stack_position(
            "    at <eval> (<input>:3:1)\n    at <anonymous> (script:1:37)\n",
            EVAL_FILE
        ),
        Some((3, 1))
    );
    assert_eq!(stack_position("garbage", FILE), None);
}

/// Minimal subscriber recording events as `LEVEL script=<name> <message>`.
struct Recorder(Arc<Mutex<Vec<String>>>);

struct Fields(String, String);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "script" {
            self.0 = value.to_owned();
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.1 = format!("{value:?}"),
            "script" => self.0 = format!("{value:?}"),
            _ => {}
        }
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut f = Fields(String::new(), String::new());
        event.record(&mut f);
        self.0.lock().push(format!(
            "{} script={} {}",
            event.metadata().level(),
            f.0,
            f.1
        ));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn logger_goes_to_tracing_with_script_name() {
    let want = vec![
        "INFO script=mapping m, onCreate user bjensen has [\"a\",\"b\"] roles undefined",
        "ERROR script=mapping m, onCreate no args {}",
        "DEBUG script=mapping m, onCreate null",
    ];
    // tracing caches callsite interest and the maximum level process-wide; another test
    // thread installing or dropping its own subscriber at the same moment can make one attempt
    // miss events. A logger that drops a level fails every attempt.
    let mut last = Vec::new();
    for _ in 0..5 {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let recorder = Recorder(lines.clone());
        tracing::subscriber::with_default(recorder, || {
            let mut cx = context();
            let s = compile(spec(
                "mapping m, onCreate",
                "logger.info('user {} has {} roles {}', source.name, source.roles, source.n);\n\
                 logger.error('no args {}'); logger.debug('{}', null); 1",
            ))
            .expect("compiles");
            let src = json!({"name": "bjensen", "roles": ["a", "b"]});
            assert_eq!(cx.eval(&s, &[("source", &src)]).expect("ok"), json!(1));
        });
        last = lines.lock().clone();
        if last == want {
            return;
        }
    }
    assert_eq!(last, want);
}

#[test]
fn promise_jobs_run_and_do_not_leak() {
    let mut cx = context();
    let s = script("Promise.resolve(1).then(function (v) { late = v; }); 'sync'");
    assert_eq!(cx.eval(&s, &[]).expect("ok"), json!("sync"));
    assert_eq!(eval(&mut cx, "typeof late", &[]), json!("undefined"));
    assert_eq!(eval(&mut cx, "Promise.resolve(2)", &[]), Value::Null);
}

#[test]
fn awkward_values() {
    let mut cx = context();
    assert_eq!(eval(&mut cx, "'a\\uD800b'", &[]), json!("a\u{FFFD}b"));
    assert_eq!(
        eval(&mut cx, "({[Symbol('s')]: 1, k: Symbol('v')})", &[]),
        json!({"k": null})
    );
    assert_eq!(eval(&mut cx, "new Error('bad')", &[]), json!("Error: bad"));
    assert_eq!(eval(&mut cx, "new Date(NaN)", &[]), Value::Null);
    assert_eq!(eval(&mut cx, "[ , 1]", &[]), json!([null, 1]));
    assert_eq!(eval(&mut cx, "new Proxy({a: 1}, {})", &[]), json!({"a": 1}));
    let getter = "({get a() { throw new Error('getter'); }})";
    let e = cx.eval(&script(getter), &[]).expect_err("getter throws");
    assert_eq!(e.kind, ScriptErrorKind::Thrown);
    assert!(e.message.starts_with("Error: getter"), "{e}");
}

#[test]
fn huge_input_is_out_of_memory() {
    let limits = ScriptLimits {
        memory_bytes: 4 << 20,
        ..ScriptLimits::default()
    };
    let mut cx = ScriptContext::new(limits, Arc::new(NoHost)).expect("context");
    let big = Value::String("x".repeat(8 << 20));
    let e = cx
        .eval(&script("source.length"), &[("source", &big)])
        .expect_err("oom");
    assert_eq!(e.kind, ScriptErrorKind::OutOfMemory, "{e}");
    assert_eq!(eval(&mut cx, "'fine'", &[]), json!("fine"));
}

#[test]
fn pathological_sources_do_not_crash() {
    let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
    let e = compile(spec("deep", &deep)).expect_err("too deep to parse");
    assert!(
        matches!(e.kind, ScriptErrorKind::Syntax | ScriptErrorKind::Internal),
        "{e}"
    );
    let nested = format!("{}1{}", "[".repeat(50), "]".repeat(50));
    let mut cx = context();
    assert!(eval(&mut cx, &nested, &[]).is_array());
}
