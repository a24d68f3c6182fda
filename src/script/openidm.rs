//! The `openidm` object: CREST calls into the [`ScriptHost`] (`create`, `read`, `update`,
//! `patch`, `delete`, `query`, `action`), `config/...` reads from the project's conf folder, and
//! the crypto functions (`encrypt`, `decrypt`, `isEncrypted`, `hash`, `isHashed`).

use std::rc::Rc;
use std::sync::Arc;

use rquickjs::function::Rest;
use rquickjs::{Ctx, Function, Object, Value as JsValue};
use serde_json::Value;

use super::crypto::{BuiltinCrypto, ScriptCrypto};
use super::host::{arg_json, arg_str, host_call, required_str, with_fields, HostEnv};

/// The `openidm` object.
pub(super) fn object<'js>(ctx: &Ctx<'js>, env: &Rc<HostEnv>) -> rquickjs::Result<Object<'js>> {
    let openidm = Object::new(ctx.clone())?;

    let e = env.clone();
    openidm.set(
        "read",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, args: Rest<JsValue<'js>>| {
                let id = required_str(&ctx, &args, 0, "openidm.read: id")?;
                if let Some(name) = config_name(&id) {
                    let env = e.script_env();
                    return host_call(&ctx, &e, "read", || match env {
                        Some(env) => env.project.read_config(name),
                        None => Ok(None),
                    });
                }
                host_call(&ctx, &e, "read", || e.host.read(&id))
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
                host_call(&ctx, &e, "query", || {
                    e.host.query(&resource, &params).map(Some)
                })
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
                host_call(&ctx, &e, "create", || {
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
                host_call(&ctx, &e, "update", || {
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
                host_call(&ctx, &e, "patch", || {
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
                host_call(&ctx, &e, "delete", || {
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
                host_call(&ctx, &e, "action", || {
                    e.host
                        .action(&resource, &action, &content, &params)
                        .map(Some)
                })
            },
        )?,
    )?;
    crypto(ctx, env, &openidm)?;
    Ok(openidm)
}

/// The configuration object `id` names (`config/sync` → `sync`), if it is under `config/`.
fn config_name(id: &str) -> Option<&str> {
    let rest = id.trim_start_matches('/').strip_prefix("config")?;
    if rest.is_empty() || rest.starts_with('/') {
        Some(rest.trim_start_matches('/'))
    } else {
        None
    }
}

/// The crypto back end of the script being evaluated.
fn crypto_of(e: &HostEnv) -> Arc<dyn ScriptCrypto> {
    match e.script_env() {
        Some(env) => env.project.crypto.clone(),
        None => Arc::new(BuiltinCrypto),
    }
}

/// `encrypt`, `decrypt`, `isEncrypted`, `hash`, `isHashed`.
fn crypto<'js>(ctx: &Ctx<'js>, env: &Rc<HostEnv>, openidm: &Object<'js>) -> rquickjs::Result<()> {
    let e = env.clone();
    openidm.set(
        "encrypt",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, args: Rest<JsValue<'js>>| {
                let value = arg_json(&ctx, &e, &args, 0)?;
                let cipher = arg_str(&args, 1)?.unwrap_or_else(|| "AES/CBC/PKCS5Padding".into());
                let alias = arg_str(&args, 2)?.unwrap_or_else(|| "openidm-sym-default".into());
                let c = crypto_of(&e);
                host_call(&ctx, &e, "encrypt", || {
                    c.encrypt(&value, &cipher, &alias).map(Some)
                })
            },
        )?,
    )?;
    let e = env.clone();
    openidm.set(
        "decrypt",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, args: Rest<JsValue<'js>>| {
                let value = arg_json(&ctx, &e, &args, 0)?;
                let c = crypto_of(&e);
                host_call(&ctx, &e, "decrypt", || c.decrypt(&value).map(Some))
            },
        )?,
    )?;
    let e = env.clone();
    openidm.set(
        "hash",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, args: Rest<JsValue<'js>>| {
                let value = arg_json(&ctx, &e, &args, 0)?;
                let algorithm = arg_str(&args, 1)?;
                let c = crypto_of(&e);
                host_call(&ctx, &e, "hash", || {
                    c.hash(&value, algorithm.as_deref()).map(Some)
                })
            },
        )?,
    )?;
    for (name, hashed) in [("isEncrypted", false), ("isHashed", true)] {
        let e = env.clone();
        openidm.set(
            name,
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, args: Rest<JsValue<'js>>| {
                    let value = arg_json(&ctx, &e, &args, 0)?;
                    let c = crypto_of(&e);
                    Ok::<_, rquickjs::Error>(if hashed {
                        c.is_hashed(&value)
                    } else {
                        c.is_encrypted(&value)
                    })
                },
            )?,
        )?;
    }
    Ok(())
}
