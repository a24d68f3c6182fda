//! Compiling a script: the syntax check (which runs none of the script) and the fast form.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rquickjs::context::EvalOptions;
use rquickjs::{Ctx, Exception, Value as JsValue};

use super::context::new_runtime;
use super::error::{stack_position, ScriptError, ScriptErrorKind};
use super::{split, ScriptLimits, ScriptSpec};

/// A syntax-checked script. Cheap to clone; shareable between threads.
#[derive(Clone)]
pub struct CompiledScript {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    /// Unique per `compile` call: the key of every context's function cache.
    pub(super) id: u64,
    pub(super) spec: ScriptSpec,
    /// Function body returning the completion value (verified to parse), if any.
    pub(super) fast_body: Option<String>,
    /// Whether the script may create global properties (then they are cleaned up after it).
    pub(super) may_leak: bool,
}

impl CompiledScript {
    /// The script's name (from its [`ScriptSpec`]).
    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }

    /// The project environment the script was compiled for.
    pub fn env(&self) -> Option<&std::sync::Arc<super::ScriptEnv>> {
        self.inner.spec.env.as_ref()
    }

    /// The script's source.
    pub fn source(&self) -> &str {
        &self.inner.spec.source
    }
}

impl fmt::Debug for CompiledScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledScript")
            .field("name", &self.inner.spec.name)
            .field("id", &self.inner.id)
            .field("fast", &self.inner.fast_body.is_some())
            .finish()
    }
}

/// True for the script types this module runs (JavaScript); false for e.g. Groovy.
pub fn is_supported_type(t: &str) -> bool {
    matches!(
        t.trim().to_ascii_lowercase().as_str(),
        "text/javascript"
            | "javascript"
            | "application/javascript"
            | "application/x-javascript"
            | "text/ecmascript"
            | "application/ecmascript"
            | "ecmascript"
            | "js"
    )
}

/// File name QuickJS reports for our wrapper functions (`at <anonymous> (script:3:14)`).
pub(super) const FILE: &str = "script";
/// File name QuickJS reports for code run by direct `eval`.
pub(super) const EVAL_FILE: &str = "<input>";
/// Prefix making QuickJS parse a script without running any of it.
const NO_RUN: &str = "throw 0;";
/// Parameter carrying the source in the eval form (visible to such scripts, hence the name).
pub(super) const SOURCE_PARAM: &str = "__recond_script_source__";
/// Native stack QuickJS may use; well below the 2 MiB of tokio and std worker threads.
pub(super) const MAX_STACK: usize = 512 << 10;
/// Compiled functions kept per context before the cache is flushed.
pub(super) const MAX_CACHED: usize = 4096;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(super) fn eval_options(filename: &str) -> EvalOptions {
    let mut o = EvalOptions::default();
    // Rhino scripts are sloppy-mode code (implicit globals, `with`, ...).
    o.strict = false;
    o.filename = Some(filename.to_owned());
    o
}

/// Checks a script's syntax and prepares its fast form. Runs none of the script's code.
pub fn compile(spec: ScriptSpec) -> Result<CompiledScript, ScriptError> {
    let name = spec.name.as_str();
    let internal = |e: rquickjs::Error| {
        ScriptError::new(
            ScriptErrorKind::Internal,
            name,
            format!("cannot start QuickJS: {e}"),
        )
    };
    let limits = ScriptLimits::default();
    let deadline = Rc::new(Cell::new(None));
    let interrupted = Rc::new(Cell::new(false));
    let (runtime, context) =
        new_runtime(limits, deadline.clone(), interrupted.clone()).map_err(internal)?;
    deadline.set(Some(Instant::now() + limits.time));

    let analysis = split::analyse(&spec.source);
    let fast_body = context.with(|ctx| {
        parse_only(&ctx, &spec.source).map_err(|e| syntax_error(&ctx, name, e))?;
        Ok::<_, ScriptError>(analysis.fast_body.filter(|body| {
            let wrapped = format!("(function(){{{body}\n}})");
            let ok = parse_only(&ctx, &wrapped).is_ok();
            let _ = ctx.catch();
            ok
        }))
    })?;
    drop(context);
    drop(runtime);
    Ok(CompiledScript {
        inner: Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            spec,
            fast_body,
            may_leak: analysis.may_leak,
        }),
    })
}

/// Parses `source` as a global script without running it: `Ok` when it is valid.
fn parse_only<'js>(ctx: &Ctx<'js>, source: &str) -> rquickjs::Result<()> {
    let mut text = String::with_capacity(NO_RUN.len() + source.len());
    text.push_str(NO_RUN);
    text.push_str(source);
    match ctx.eval_with_options::<JsValue, _>(text, eval_options(FILE)) {
        Err(rquickjs::Error::Exception) => {
            let thrown = ctx.catch();
            if thrown.as_int() == Some(0) {
                Ok(())
            } else {
                Err(ctx.throw(thrown))
            }
        }
        Err(e) => Err(e),
        // Unreachable in practice (the first statement throws); treat as valid.
        Ok(_) => Ok(()),
    }
}

/// Builds the compile-time error for a failed [`parse_only`].
fn syntax_error(ctx: &Ctx<'_>, script: &str, e: rquickjs::Error) -> ScriptError {
    match e {
        rquickjs::Error::Exception => {
            let thrown = ctx.catch();
            let Some(ex) = thrown.as_object().cloned().and_then(Exception::from_object) else {
                return ScriptError::new(ScriptErrorKind::Internal, script, "syntax check failed");
            };
            let name: String = ex.get("name").unwrap_or_else(|_| "SyntaxError".into());
            let message = ex.message().unwrap_or_default();
            if name == "InternalError" && message == "out of memory" {
                return ScriptError::new(
                    ScriptErrorKind::OutOfMemory,
                    script,
                    "is too large to compile",
                );
            }
            let mut text = format!("{name}: {message}");
            if let Some((line, col)) = ex.stack().as_deref().and_then(|s| stack_position(s, FILE)) {
                // The NO_RUN prefix shifts the first line.
                let col = if line == 1 {
                    col.saturating_sub(NO_RUN.len())
                } else {
                    col
                };
                text.push_str(&format!(" at line {line}, column {col}"));
            }
            ScriptError::new(ScriptErrorKind::Syntax, script, text)
        }
        rquickjs::Error::InvalidString(_) => ScriptError::new(
            ScriptErrorKind::Syntax,
            script,
            "SyntaxError: the source contains a NUL character",
        ),
        rquickjs::Error::Allocation => ScriptError::new(
            ScriptErrorKind::OutOfMemory,
            script,
            "is too large to compile",
        ),
        other => ScriptError::new(ScriptErrorKind::Internal, script, other.to_string()),
    }
}
