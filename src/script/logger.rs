//! `logger` (IDM's SLF4J-style `{}` placeholders) and `console`, both routed to `tracing` with
//! the script's name as a field.

use std::rc::Rc;

use rquickjs::function::Rest;
use rquickjs::{Coerced, Ctx, Function, Object, Type, Value as JsValue};

use super::convert::FromJs;
use super::host::{date_proto, HostEnv};

/// The `logger` object: `error`/`warn`/`info`/`debug`/`trace` with `{}` placeholders, and
/// `isDebugEnabled()` and friends.
pub(super) fn logger<'js>(ctx: &Ctx<'js>, env: &Rc<HostEnv>) -> rquickjs::Result<Object<'js>> {
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
    Ok(logger)
}

/// The `console` object: `log`/`info` (info), `warn`, `error`, `debug`, `trace`; arguments are
/// joined with spaces.
pub(super) fn console<'js>(ctx: &Ctx<'js>, env: &Rc<HostEnv>) -> rquickjs::Result<Object<'js>> {
    let console = Object::new(ctx.clone())?;
    for (name, level) in [
        ("log", tracing::Level::INFO),
        ("info", tracing::Level::INFO),
        ("warn", tracing::Level::WARN),
        ("error", tracing::Level::ERROR),
        ("debug", tracing::Level::DEBUG),
        ("trace", tracing::Level::TRACE),
    ] {
        let e = env.clone();
        console.set(
            name,
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, args: Rest<JsValue<'js>>| {
                    if level_enabled(level) {
                        let message = args
                            .iter()
                            .map(|a| render(&ctx, &e, a))
                            .collect::<Vec<_>>()
                            .join(" ");
                        emit(level, &e.script_name(), &message);
                    }
                },
            )?,
        )?;
    }
    Ok(console)
}

pub(super) fn level_enabled(level: tracing::Level) -> bool {
    match level {
        tracing::Level::ERROR => tracing::enabled!(tracing::Level::ERROR),
        tracing::Level::WARN => tracing::enabled!(tracing::Level::WARN),
        tracing::Level::INFO => tracing::enabled!(tracing::Level::INFO),
        tracing::Level::DEBUG => tracing::enabled!(tracing::Level::DEBUG),
        _ => tracing::enabled!(tracing::Level::TRACE),
    }
}

pub(super) fn emit(level: tracing::Level, script: &str, message: &str) {
    match level {
        tracing::Level::ERROR => tracing::error!(script, "{message}"),
        tracing::Level::WARN => tracing::warn!(script, "{message}"),
        tracing::Level::INFO => tracing::info!(script, "{message}"),
        tracing::Level::DEBUG => tracing::debug!(script, "{message}"),
        _ => tracing::trace!(script, "{message}"),
    }
}

/// Renders one log argument: strings as they are, other values as JSON.
pub(super) fn render<'js>(ctx: &Ctx<'js>, env: &HostEnv, v: &JsValue<'js>) -> String {
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
pub(super) fn substitute<T>(
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
