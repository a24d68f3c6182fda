//! The host side of scripts: the [`ScriptHost`] the engine provides, the state host functions
//! share ([`HostEnv`]), argument and result conversion, and [`install`], which defines every
//! global IDM's scripts expect (`openidm`, `logger`, `console`, `identityServer`,
//! `mappingConfig`, `context`, `require`).
//!
//! Invariants: host errors and host panics become catchable JS `Error`s (never a Rust panic
//! through QuickJS); the globals are frozen, non-enumerable, non-writable so one script cannot
//! replace them for the next; what a host call returns into a script is bounded
//! ([`HostEnv::result_limit`]) so a large query fails clearly instead of escaping the memory
//! limit.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use rquickjs::{Coerced, Ctx, Exception, Function, Object, Value as JsValue};
use serde_json::Value;

use super::convert::{to_js, ConvError, FromJs};
use super::{CompiledScript, ScriptEnv};

/// Back end of the `openidm.*` functions. `Err(msg)` becomes a JS exception whose message is
/// `msg`. Implementations may be called re-entrantly from other threads' scripts.
pub trait ScriptHost: Send + Sync {
    /// `openidm.read(id)`: `Ok(None)` for a missing object (the script sees `null`).
    fn read(&self, id: &str) -> Result<Option<Value>, String>;
    /// `openidm.query(resourceName, params)`: returns `{"result": [...], ...}`.
    fn query(&self, resource: &str, params: &Value) -> Result<Value, String>;
    /// `openidm.create(resourceName, newResourceId, content)`.
    fn create(
        &self,
        resource: &str,
        new_id: Option<&str>,
        content: &Value,
    ) -> Result<Value, String>;
    /// `openidm.update(id, rev, content)`.
    fn update(&self, id: &str, rev: Option<&str>, content: &Value) -> Result<Value, String>;
    /// `openidm.patch(id, rev, patchOperations)`.
    fn patch(&self, id: &str, rev: Option<&str>, ops: &Value) -> Result<Value, String>;
    /// `openidm.delete(id, rev)`.
    fn delete(&self, id: &str, rev: Option<&str>) -> Result<Value, String>;
    /// `openidm.action(resource, actionName, content, params)`.
    fn action(
        &self,
        resource: &str,
        action: &str,
        content: &Value,
        params: &Value,
    ) -> Result<Value, String>;
}

/// A host without repository access: every `openidm.*` call throws.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHost;

fn unavailable(f: &str) -> String {
    format!("openidm.{f} is not available here")
}

impl ScriptHost for NoHost {
    fn read(&self, _: &str) -> Result<Option<Value>, String> {
        Err(unavailable("read"))
    }
    fn query(&self, _: &str, _: &Value) -> Result<Value, String> {
        Err(unavailable("query"))
    }
    fn create(&self, _: &str, _: Option<&str>, _: &Value) -> Result<Value, String> {
        Err(unavailable("create"))
    }
    fn update(&self, _: &str, _: Option<&str>, _: &Value) -> Result<Value, String> {
        Err(unavailable("update"))
    }
    fn patch(&self, _: &str, _: Option<&str>, _: &Value) -> Result<Value, String> {
        Err(unavailable("patch"))
    }
    fn delete(&self, _: &str, _: Option<&str>) -> Result<Value, String> {
        Err(unavailable("delete"))
    }
    fn action(&self, _: &str, _: &str, _: &Value, _: &Value) -> Result<Value, String> {
        Err(unavailable("action"))
    }
}

/// What the host functions need from the owning context.
pub(crate) struct HostEnv {
    pub host: Arc<dyn ScriptHost>,
    /// The script being evaluated (for log fields).
    pub current: Rc<RefCell<Option<CompiledScript>>>,
    pub deadline: Rc<Cell<Option<Instant>>>,
    /// Node budget for converting arguments.
    pub budget: usize,
    /// Most bytes (roughly, as JSON) a host call may return into the script.
    pub result_limit: usize,
}

impl HostEnv {
    pub(super) fn script_name(&self) -> String {
        match &*self.current.borrow() {
            Some(s) => s.name().to_owned(),
            None => String::new(),
        }
    }

    /// The environment of the script being evaluated.
    pub(super) fn script_env(&self) -> Option<Arc<ScriptEnv>> {
        self.current
            .borrow()
            .as_ref()
            .and_then(|s| s.env().cloned())
    }
}

/// Converts argument `i` to JSON (`undefined` or missing → null).
pub(super) fn arg_json<'js>(
    ctx: &Ctx<'js>,
    env: &HostEnv,
    args: &[JsValue<'js>],
    i: usize,
) -> rquickjs::Result<Value> {
    let Some(v) = args.get(i) else {
        return Ok(Value::Null);
    };
    let date = date_proto(ctx);
    let mut conv = FromJs::new(env.budget, env.deadline.get(), date, None);
    match conv.convert(v) {
        Ok(x) => Ok(x),
        Err(ConvError::Js(e)) => Err(e),
        Err(ConvError::Function(path)) => Err(Exception::throw_type(
            ctx,
            &format!("argument {} contains a function at {path}", i + 1),
        )),
        Err(ConvError::TooDeep) => Err(Exception::throw_type(
            ctx,
            &format!("argument {} is nested too deeply (or cyclic)", i + 1),
        )),
        Err(ConvError::TooLarge(n)) => Err(Exception::throw_range(
            ctx,
            &format!("argument {} has more than {n} values", i + 1),
        )),
        Err(ConvError::Timeout) => Err(Exception::throw_internal(ctx, "interrupted")),
    }
}

pub(super) fn date_proto<'js>(ctx: &Ctx<'js>) -> Option<Object<'js>> {
    ctx.globals()
        .get::<_, Object>("Date")
        .and_then(|d| d.get::<_, Object>("prototype"))
        .ok()
}

/// Argument `i` as a string; `undefined`/`null`/missing → `None`, others coerced.
pub(super) fn arg_str<'js>(args: &[JsValue<'js>], i: usize) -> rquickjs::Result<Option<String>> {
    match args.get(i) {
        None => Ok(None),
        Some(v) if v.type_of().is_void() => Ok(None),
        Some(v) => Ok(Some(v.get::<Coerced<String>>()?.0)),
    }
}

pub(super) fn required_str<'js>(
    ctx: &Ctx<'js>,
    args: &[JsValue<'js>],
    i: usize,
    what: &str,
) -> rquickjs::Result<String> {
    match arg_str(args, i)? {
        Some(s) => Ok(s),
        None => Err(Exception::throw_type(ctx, &format!("{what} is required"))),
    }
}

/// Runs a host call, turning `Err` and panics into JS exceptions.
pub(super) fn host_call<'js>(
    ctx: &Ctx<'js>,
    env: &HostEnv,
    func: &str,
    call: impl FnOnce() -> Result<Option<Value>, String>,
) -> rquickjs::Result<JsValue<'js>> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(Some(v))) if approx_size(&v, env.result_limit) > env.result_limit => {
            Err(Exception::throw_range(
                ctx,
                &format!(
                    "openidm.{func} returned more than {} into the script, its limit for one \
                     call (a quarter of the script memory limit); page the query with \
                     _pageSize or ask for fewer _fields",
                    super::error::format_bytes(env.result_limit)
                ),
            ))
        }
        Ok(Ok(Some(v))) => match to_js(ctx, &v) {
            Ok(js) => Ok(js),
            Err(ConvError::Js(e)) => Err(e),
            Err(_) => Err(Exception::throw_range(
                ctx,
                &format!("openidm.{func} returned a value nested too deeply"),
            )),
        },
        Ok(Ok(None)) => Ok(JsValue::new_null(ctx.clone())),
        Ok(Err(msg)) => Err(Exception::throw_message(ctx, &msg)),
        Err(_) => Err(Exception::throw_message(
            ctx,
            &format!("openidm.{func} failed: the host panicked"),
        )),
    }
}

/// Roughly how many bytes `v` takes as JSON (plus per-value overhead), counting no further than
/// just past `limit`.
pub(super) fn approx_size(v: &Value, limit: usize) -> usize {
    let mut total = 0usize;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        total += 16;
        match v {
            Value::String(s) => total += s.len(),
            Value::Array(items) => stack.extend(items.iter()),
            Value::Object(m) => {
                for (k, x) in m {
                    total += k.len();
                    stack.push(x);
                }
            }
            _ => {}
        }
        if total > limit {
            break;
        }
    }
    total
}

/// Merges an optional `fields` argument (array or comma list) into query/read params.
pub(super) fn with_fields(mut params: Value, fields: Value) -> Value {
    let list = match fields {
        Value::Array(items) => items
            .iter()
            .filter_map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(","),
        Value::String(s) => s,
        _ => return params,
    };
    if list.is_empty() {
        return params;
    }
    if params.is_null() {
        params = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(m) = &mut params {
        m.entry("_fields").or_insert(Value::String(list));
    }
    params
}

/// Defines every host global in `ctx`.
pub(crate) fn install<'js>(ctx: &Ctx<'js>, env: Rc<HostEnv>) -> rquickjs::Result<()> {
    let define: Function = ctx.eval(
        "(function (name, value) {\
            Object.freeze(value);\
            Object.defineProperty(globalThis, name,\
                { value: value, writable: false, enumerable: false, configurable: false });\
        })",
    )?;
    define.call::<_, ()>(("openidm", super::openidm::object(ctx, &env)?))?;
    define.call::<_, ()>(("logger", super::logger::logger(ctx, &env)?))?;
    define.call::<_, ()>(("console", super::logger::console(ctx, &env)?))?;
    super::globals::install(ctx, &env, &define)?;
    Ok(())
}
