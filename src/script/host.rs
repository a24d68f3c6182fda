//! The host objects scripts see: `openidm` (calls into a [`ScriptHost`] the engine provides) and
//! `logger` (IDM-style `{}` placeholders, routed to `tracing` with the script name as a field).
//!
//! Invariants: host errors and host panics become catchable JS `Error`s (never a Rust panic
//! through QuickJS); both objects are frozen, non-enumerable, non-writable globals so one script
//! cannot replace them for the next.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use rquickjs::function::Rest;
use rquickjs::{Coerced, Ctx, Exception, Function, Object, Type, Value as JsValue};
use serde_json::Value;

use super::convert::{to_js, ConvError, FromJs};
use super::CompiledScript;

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
}

impl HostEnv {
    fn script_name(&self) -> String {
        match &*self.current.borrow() {
            Some(s) => s.name().to_owned(),
            None => String::new(),
        }
    }
}

/// Converts argument `i` to JSON (`undefined` or missing → null).
fn arg_json<'js>(
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

fn date_proto<'js>(ctx: &Ctx<'js>) -> Option<Object<'js>> {
    ctx.globals()
        .get::<_, Object>("Date")
        .and_then(|d| d.get::<_, Object>("prototype"))
        .ok()
}

/// Argument `i` as a string; `undefined`/`null`/missing → `None`, others coerced.
fn arg_str<'js>(args: &[JsValue<'js>], i: usize) -> rquickjs::Result<Option<String>> {
    match args.get(i) {
        None => Ok(None),
        Some(v) if v.type_of().is_void() => Ok(None),
        Some(v) => Ok(Some(v.get::<Coerced<String>>()?.0)),
    }
}

fn required_str<'js>(
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
fn host_call<'js>(
    ctx: &Ctx<'js>,
    func: &str,
    call: impl FnOnce() -> Result<Option<Value>, String>,
) -> rquickjs::Result<JsValue<'js>> {
    match catch_unwind(AssertUnwindSafe(call)) {
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

/// Merges an optional `fields` argument (array or comma list) into query/read params.
fn with_fields(mut params: Value, fields: Value) -> Value {
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

/// Defines the `openidm` and `logger` globals in `ctx`.
pub(crate) fn install<'js>(ctx: &Ctx<'js>, env: Rc<HostEnv>) -> rquickjs::Result<()> {
    let openidm = Object::new(ctx.clone())?;

    let e = env.clone();
    openidm.set(
        "read",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, args: Rest<JsValue<'js>>| {
                let id = required_str(&ctx, &args, 0, "openidm.read: id")?;
                host_call(&ctx, "read", || e.host.read(&id))
            },
        )?,
    )?;

    let e = env.clone();
    openidm.set(
        "query",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, args: Rest<JsValue<'js>>| {
                let resource = required_str(&ctx, &args, 0, "openidm.query: resourceName")?;
                let params = arg_json(&ctx, &e, &args, 1)?;
                let params = with_fields(params, arg_json(&ctx, &e, &args, 2)?);
                host_call(&ctx, "query", || e.host.query(&resource, &params).map(Some))
            },
        )?,
    )?;

    let e = env.clone();
    openidm.set(
        "create",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, args: Rest<JsValue<'js>>| {
                let resource = required_str(&ctx, &args, 0, "openidm.create: resourceName")?;
                let new_id = arg_str(&args, 1)?;
                let content = arg_json(&ctx, &e, &args, 2)?;
                host_call(&ctx, "create", || {
                    e.host
                        .create(&resource, new_id.as_deref(), &content)
                        .map(Some)
                })
            },
        )?,
    )?;

    let e = env.clone();
    openidm.set(
        "update",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, args: Rest<JsValue<'js>>| {
                let id = required_str(&ctx, &args, 0, "openidm.update: id")?;
                let rev = arg_str(&args, 1)?;
                let content = arg_json(&ctx, &e, &args, 2)?;
                host_call(&ctx, "update", || {
                    e.host.update(&id, rev.as_deref(), &content).map(Some)
                })
            },
        )?,
    )?;

    let e = env.clone();
    openidm.set(
        "patch",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, args: Rest<JsValue<'js>>| {
                let id = required_str(&ctx, &args, 0, "openidm.patch: id")?;
                let rev = arg_str(&args, 1)?;
                let ops = arg_json(&ctx, &e, &args, 2)?;
                host_call(&ctx, "patch", || {
                    e.host.patch(&id, rev.as_deref(), &ops).map(Some)
                })
            },
        )?,
    )?;

    let e = env.clone();
    openidm.set(
        "delete",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, args: Rest<JsValue<'js>>| {
                let id = required_str(&ctx, &args, 0, "openidm.delete: id")?;
                let rev = arg_str(&args, 1)?;
                host_call(&ctx, "delete", || {
                    e.host.delete(&id, rev.as_deref()).map(Some)
                })
            },
        )?,
    )?;

    let e = env.clone();
    openidm.set(
        "action",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, args: Rest<JsValue<'js>>| {
                let resource = required_str(&ctx, &args, 0, "openidm.action: resource")?;
                let action = required_str(&ctx, &args, 1, "openidm.action: actionName")?;
                let content = arg_json(&ctx, &e, &args, 2)?;
                let params = match arg_json(&ctx, &e, &args, 3)? {
                    Value::Null => Value::Object(serde_json::Map::new()),
                    p => p,
                };
                host_call(&ctx, "action", || {
                    e.host
                        .action(&resource, &action, &content, &params)
                        .map(Some)
                })
            },
        )?,
    )?;

    let logger = Object::new(ctx.clone())?;
    for level in [
        tracing::Level::ERROR,
        tracing::Level::WARN,
        tracing::Level::INFO,
        tracing::Level::DEBUG,
        tracing::Level::TRACE,
    ] {
        let e = env.clone();
        let name = level.as_str().to_ascii_lowercase();
        logger.set(
            name.as_str(),
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, args: Rest<JsValue<'js>>| {
                    if level_enabled(level) {
                        let message = format_message(&ctx, &e, &args);
                        emit(level, &e.script_name(), &message);
                    }
                },
            )?,
        )?;
        let mut enabled = String::from("is");
        enabled.push_str(&name[..1].to_ascii_uppercase());
        enabled.push_str(&name[1..]);
        enabled.push_str("Enabled");
        logger.set(
            enabled.as_str(),
            Function::new(ctx.clone(), move || level_enabled(level))?,
        )?;
    }

    let define: Function = ctx.eval(
        "(function (name, value) {\
            Object.freeze(value);\
            Object.defineProperty(globalThis, name,\
                { value: value, writable: false, enumerable: false, configurable: false });\
        })",
    )?;
    define.call::<_, ()>(("openidm", openidm))?;
    define.call::<_, ()>(("logger", logger))?;
    Ok(())
}

fn level_enabled(level: tracing::Level) -> bool {
    match level {
        tracing::Level::ERROR => tracing::enabled!(tracing::Level::ERROR),
        tracing::Level::WARN => tracing::enabled!(tracing::Level::WARN),
        tracing::Level::INFO => tracing::enabled!(tracing::Level::INFO),
        tracing::Level::DEBUG => tracing::enabled!(tracing::Level::DEBUG),
        _ => tracing::enabled!(tracing::Level::TRACE),
    }
}

fn emit(level: tracing::Level, script: &str, message: &str) {
    match level {
        tracing::Level::ERROR => tracing::error!(script, "{message}"),
        tracing::Level::WARN => tracing::warn!(script, "{message}"),
        tracing::Level::INFO => tracing::info!(script, "{message}"),
        tracing::Level::DEBUG => tracing::debug!(script, "{message}"),
        _ => tracing::trace!(script, "{message}"),
    }
}

/// Renders one log argument: strings as they are, other values as JSON.
fn render<'js>(ctx: &Ctx<'js>, env: &HostEnv, v: &JsValue<'js>) -> String {
    match v.type_of() {
        Type::String => v.get::<Coerced<String>>().map(|s| s.0).unwrap_or_default(),
        Type::Undefined | Type::Uninitialized => "undefined".to_owned(),
        Type::Function | Type::Constructor => "[function]".to_owned(),
        _ => {
            let date = date_proto(ctx);
            let mut conv = FromJs::new(env.budget, env.deadline.get(), date, None);
            match conv.convert(v) {
                Ok(x) => x.to_string(),
                Err(_) => {
                    let _ = ctx.catch();
                    "[unrepresentable]".to_owned()
                }
            }
        }
    }
}

/// Substitutes `{}` placeholders in the first argument (SLF4J style: surplus `{}` stay,
/// surplus arguments are dropped).
fn format_message<'js>(ctx: &Ctx<'js>, env: &HostEnv, args: &[JsValue<'js>]) -> String {
    let Some(first) = args.first() else {
        return String::new();
    };
    let template = render(ctx, env, first);
    substitute(&template, args[1..].iter(), |v| render(ctx, env, v))
}

/// Replaces successive `{}` in `template` with successive rendered arguments.
pub(crate) fn substitute<T>(
    template: &str,
    mut args: impl Iterator<Item = T>,
    mut render: impl FnMut(T) -> String,
) -> String {
    let mut out = String::with_capacity(template.len());
    let mut remaining = template;
    while let Some(at) = remaining.find("{}") {
        let Some(arg) = args.next() else {
            break;
        };
        out.push_str(&remaining[..at]);
        out.push_str(&render(arg));
        remaining = &remaining[at + 2..];
    }
    out.push_str(remaining);
    out
}
