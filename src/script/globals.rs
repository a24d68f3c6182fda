//! The project globals of IDM's scripts: `identityServer` (properties and locations),
//! `mappingConfig` (the mapping's JSON, converted only when read), `context` (a fixed
//! description of the caller: recond itself), a `linkQualifier` of `"default"` for scripts whose
//! scope does not bind one, and `require` ([`super::require`]).
//!
//! All of them read the environment of the script being evaluated ([`HostEnv::script_env`]),
//! so one context serves scripts of any mapping.

use std::rc::Rc;

use rquickjs::function::Rest;
use rquickjs::{Ctx, Function, Object, Value as JsValue};
use serde_json::json;

use super::convert::{to_js, ConvError};
use super::host::{arg_str, HostEnv};

/// Defines the globals with `define(name, value)` (frozen, non-writable).
pub(super) fn install<'js>(
    ctx: &Ctx<'js>,
    env: &Rc<HostEnv>,
    define: &Function<'js>,
) -> rquickjs::Result<()> {
    define.call::<_, ()>(("identityServer", identity_server(ctx, env)?))?;
    let context = json!({
        "name": "recond",
        "current": {"name": "recond"},
        "security": {
            "authenticationId": "recond",
            "authorization": {"id": "recond", "component": "internal/user",
                              "roles": ["internal/role/openidm-admin"]}
        }
    });
    define.call::<_, ()>(("context", json_value(ctx, &context)?))?;
    define.call::<_, ()>(("linkQualifier", "default"))?;

    let e = env.clone();
    let getter = Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
        match e.script_env().and_then(|s| s.mapping_config.clone()) {
            Some(m) => json_value(&ctx, &m),
            None => Ok(JsValue::new_null(ctx.clone())),
        }
    })?;
    let define_getter: Function = ctx.eval(
        "(function (name, get) {\
            Object.defineProperty(globalThis, name,\
                { get: get, enumerable: false, configurable: false });\
        })",
    )?;
    define_getter.call::<_, ()>(("mappingConfig", getter))?;
    super::require::install(ctx, env, define)
}

fn json_value<'js>(ctx: &Ctx<'js>, v: &serde_json::Value) -> rquickjs::Result<JsValue<'js>> {
    match to_js(ctx, v) {
        Ok(js) => Ok(js),
        Err(ConvError::Js(e)) => Err(e),
        Err(_) => Err(rquickjs::Exception::throw_range(
            ctx,
            "a configuration value is nested too deeply",
        )),
    }
}

/// `identityServer.getProperty(name, default)`, `getInstallLocation()`,
/// `getProjectLocation()`, `getWorkingLocation()`.
fn identity_server<'js>(ctx: &Ctx<'js>, env: &Rc<HostEnv>) -> rquickjs::Result<Object<'js>> {
    let server = Object::new(ctx.clone())?;
    let e = env.clone();
    server.set(
        "getProperty",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, args: Rest<JsValue<'js>>| {
                let name = arg_str(&args, 0)?.unwrap_or_default();
                let found = e.script_env().and_then(|s| s.project.properties.get(&name));
                match found {
                    Some(v) => Ok::<_, rquickjs::Error>(
                        rquickjs::String::from_str(ctx.clone(), &v)?.into_value(),
                    ),
                    None => Ok(args
                        .get(1)
                        .cloned()
                        .unwrap_or_else(|| JsValue::new_null(ctx.clone()))),
                }
            },
        )?,
    )?;
    for name in [
        "getInstallLocation",
        "getProjectLocation",
        "getWorkingLocation",
    ] {
        let e = env.clone();
        server.set(
            name,
            Function::new(ctx.clone(), move || {
                e.script_env()
                    .map(|s| s.project.project_dir.display().to_string())
            })?,
        )?;
    }
    Ok(server)
}
