//! `require(name)`: CommonJS modules (`module.exports` / `exports`) from the project's script
//! folders, as IDM resolves them, and recond's own `lodash`.
//!
//! * A name is looked up as `name`, `name.js` and `name/index.js` under the project folder,
//!   its `script/` folder and the conf folder ([`super::ProjectEnv::roots`]); `./x` and `../x`
//!   resolve against the requiring module's folder. A file found there always wins, so a real
//!   `lodash.js` on the project's script path takes precedence over the built-in one.
//! * Built-in modules: `lodash`, also as `lib/lodash` where IDM keeps it (recond's own
//!   implementation, `lodash.js` beside this file; README lists its functions).
//! * Modules run once per context and are cached by resolved path (a module that throws is
//!   not cached); a module's code runs under the deadline of the script that required it.
//! * Errors in a module name its file and line (the module is compiled with its path as file
//!   name, and the wrapper keeps line numbers).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use rquickjs::function::Rest;
use rquickjs::{Ctx, Exception, Function, Value as JsValue};

use super::compile::eval_options;
use super::host::{arg_str, HostEnv};
use super::ScriptEnv;

/// recond's lodash (written for recond; not lodash's code).
const LODASH: &str = include_str!("lodash.js");
/// The file name errors in a built-in module show.
const BUILTIN_PREFIX: &str = "recond:";

/// The JS side: the cache and `module` objects; `load` and `compile` are native.
const GLUE: &str = r#"(function (load, compile) {
    var cache = Object.create(null);
    function makeRequire(dir) {
        return function require(name) {
            if (typeof name !== 'string' || name === '') {
                throw new TypeError('require: a module name (string) is required');
            }
            var found = load(name, dir);
            var id = found[0];
            if (id in cache) {
                return cache[id].exports;
            }
            var module = { id: id, filename: found[1], exports: {}, loaded: false };
            cache[id] = module;
            try {
                var fn = compile(found[3], found[1]);
                fn.call(module.exports, module.exports, makeRequire(found[2]), module,
                        found[1], found[2]);
            } catch (e) {
                delete cache[id];
                throw e;
            }
            module.loaded = true;
            return module.exports;
        };
    }
    return makeRequire(null);
})"#;

/// A resolved module: id (cache key), file name, folder, source.
struct Module {
    id: String,
    filename: String,
    dir: String,
    source: String,
}

/// Defines `require`.
pub(super) fn install<'js>(
    ctx: &Ctx<'js>,
    env: &Rc<HostEnv>,
    define: &Function<'js>,
) -> rquickjs::Result<()> {
    let e = env.clone();
    let load = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, args: Rest<JsValue<'js>>| {
            let name = arg_str(&args, 0)?.unwrap_or_default();
            let from = arg_str(&args, 1)?;
            let env = e.script_env();
            match resolve(env.as_deref(), &name, from.as_deref()) {
                Ok(m) => Ok(vec![m.id, m.filename, m.dir, m.source]),
                Err(msg) => Err(Exception::throw_message(&ctx, &msg)),
            }
        },
    )?;
    let compile = Function::new(
        ctx.clone(),
        |ctx: Ctx<'js>, source: String, filename: String| -> rquickjs::Result<Function<'js>> {
            // The header shares the module's first line, so line numbers stay the file's.
            let text = format!(
                "(function (exports, require, module, __filename, __dirname) {{{source}\n}})"
            );
            ctx.eval_with_options(text, eval_options(&filename))
        },
    )?;
    let glue: Function = ctx.eval(GLUE)?;
    let require: Function = glue.call((load, compile))?;
    define.call::<_, ()>(("require", require))
}

/// Finds module `name` for a script in `env`, required from folder `from` (a module's).
fn resolve(env: Option<&ScriptEnv>, name: &str, from: Option<&str>) -> Result<Module, String> {
    let relative = name.starts_with("./") || name.starts_with("../");
    let mut bases: Vec<PathBuf> = Vec::new();
    match (relative, from) {
        (true, Some(dir)) if !dir.starts_with(BUILTIN_PREFIX) => bases.push(PathBuf::from(dir)),
        _ => {
            if let Some(env) = env {
                bases.extend(env.project.roots.iter().cloned());
            }
        }
    }
    if Path::new(name).is_absolute() {
        bases = vec![PathBuf::new()];
    }
    let candidates = [
        name.to_string(),
        format!("{name}.js"),
        format!("{name}/index.js"),
    ];
    for base in &bases {
        for c in &candidates {
            let path = base.join(c);
            if path.is_file() {
                let source = std::fs::read_to_string(&path).map_err(|e| {
                    format!("require('{name}'): cannot read {}: {e}", path.display())
                })?;
                let path = path.canonicalize().unwrap_or(path);
                let dir = path
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                let filename = path.display().to_string();
                return Ok(Module {
                    id: filename.clone(),
                    filename,
                    dir,
                    source,
                });
            }
        }
    }
    // IDM ships lodash as `bin/defaults/script/lib/lodash.js`, so samples also say 'lib/lodash'.
    let bare = name.trim_end_matches(".js");
    if bare == "lodash" || bare == "lib/lodash" {
        return Ok(Module {
            id: format!("{BUILTIN_PREFIX}lodash"),
            filename: format!("{BUILTIN_PREFIX}lodash.js"),
            dir: BUILTIN_PREFIX.to_string(),
            source: LODASH.to_string(),
        });
    }
    let searched = bases
        .iter()
        .map(|b| b.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Err(format!(
        "Cannot find module '{name}' (looked in: {})",
        if searched.is_empty() {
            "no script folders: the script is not part of a project"
        } else {
            &searched
        }
    ))
}
