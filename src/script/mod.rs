//! Embedded JavaScript (QuickJS through `rquickjs`) for IDM "script objects":
//! `{"type": "text/javascript", "source": "...", "globals": {...}}` used as transforms,
//! conditions, correlation queries and the like.
//!
//! Semantics (as IDM's Rhino): a script's value is its *completion value* (`var q = {..}; q;`
//! yields `q`, an `if` statement yields its branch's value), and the variables the caller passes
//! plus the script's `globals` are in scope for that one evaluation only.
//!
//! How it runs:
//! * [`compile`] checks the syntax once, in a throwaway runtime, by evaluating `throw 0;<source>`:
//!   QuickJS parses the whole script before running it, so nothing of the script executes. It
//!   also prepares (see `split`) a function body that returns the completion value when the last
//!   statement is an expression statement.
//! * Each worker thread owns a [`ScriptContext`] (one runtime + context), which compiles each
//!   script at most once per set of variable names into a function whose parameters are the
//!   variables: `(function(source, ...) { P return (S\n); })`. Scripts whose last statement is
//!   not an expression run as `(function(src, source, ...) { return eval(src); })` (direct eval
//!   gives the exact completion value but parses on every call). Both forms keep the script's
//!   `var`/`function` declarations local to the call, so nothing leaks into the next evaluation;
//!   the few scripts that could assign undeclared (global) names get the new global properties
//!   deleted afterwards.
//! * Values cross the boundary by direct conversion (`convert`), never via JSON text.
//!
//! Safety: only the QuickJS core is linked (no `std`/`os` modules: no files, network or
//! processes). Each evaluation has a deadline enforced by QuickJS's interrupt handler; each
//! runtime has a memory limit and a bounded native stack. Errors never panic; after running out
//! of memory the runtime is discarded and rebuilt.

mod convert;
mod host;
mod split;
#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rquickjs::context::EvalOptions;
use rquickjs::function::Args;
use rquickjs::{Context, Ctx, Exception, Function, Object, Persistent, Runtime, Value as JsValue};
use serde_json::{Map, Value};

pub use host::{NoHost, ScriptHost};

use convert::{ConvError, FromJs};

/// A script as configured: `name` says where it comes from (used in every error and log line).
#[derive(Debug, Clone, Default)]
pub struct ScriptSpec {
    /// e.g. `mapping systemHrAccounts_managedUser, properties[2].transform`.
    pub name: String,
    /// The JavaScript source (a global script; its completion value is the result).
    pub source: String,
    /// The script object's `globals`: extra variables in scope for every evaluation.
    pub globals: Map<String, Value>,
}

/// Per-evaluation time limit and per-runtime memory limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptLimits {
    /// Wall-clock limit of one evaluation (including host calls it makes).
    pub time: Duration,
    /// Heap limit of one runtime (one per worker thread); 0 means unlimited.
    pub memory_bytes: usize,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        ScriptLimits {
            time: Duration::from_secs(1),
            memory_bytes: 64 << 20,
        }
    }
}

/// What went wrong; see [`ScriptError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptErrorKind {
    /// The source does not parse (`message` has line and column).
    Syntax,
    /// The script threw (`message` has the error and, when known, the line).
    Thrown,
    /// The evaluation ran past its time limit.
    Timeout,
    /// The runtime ran out of its memory limit.
    OutOfMemory,
    /// A value could not cross between JSON and JS (function, too deep, too large, bad name).
    Conversion,
    /// The engine itself failed.
    Internal,
}

/// A script failure, carrying the script's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    pub kind: ScriptErrorKind,
    pub script: String,
    pub message: String,
}

impl ScriptError {
    fn new(kind: ScriptErrorKind, script: &str, message: impl Into<String>) -> Self {
        ScriptError {
            kind,
            script: script.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, m) = (&self.script, &self.message);
        match self.kind {
            ScriptErrorKind::Syntax => write!(f, "script \"{s}\" failed to compile: {m}"),
            ScriptErrorKind::Thrown => write!(f, "script \"{s}\" threw: {m}"),
            ScriptErrorKind::Timeout | ScriptErrorKind::OutOfMemory => {
                write!(f, "script \"{s}\" {m}")
            }
            ScriptErrorKind::Conversion => write!(f, "script \"{s}\": {m}"),
            ScriptErrorKind::Internal => write!(f, "script \"{s}\": internal error: {m}"),
        }
    }
}

impl std::error::Error for ScriptError {}

/// A syntax-checked script. Cheap to clone; shareable between threads.
#[derive(Clone)]
pub struct CompiledScript {
    inner: Arc<Inner>,
}

struct Inner {
    /// Unique per `compile` call: the key of every context's function cache.
    id: u64,
    spec: ScriptSpec,
    /// Function body returning the completion value (verified to parse), if any.
    fast_body: Option<String>,
    /// Whether the script may create global properties (then they are cleaned up after it).
    may_leak: bool,
}

impl CompiledScript {
    /// The script's name (from its [`ScriptSpec`]).
    pub fn name(&self) -> &str {
        &self.inner.spec.name
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
const FILE: &str = "script";
/// File name QuickJS reports for code run by direct `eval`.
const EVAL_FILE: &str = "<input>";
/// Prefix making QuickJS parse a script without running any of it.
const NO_RUN: &str = "throw 0;";
/// Parameter carrying the source in the eval form (visible to such scripts, hence the name).
const SOURCE_PARAM: &str = "__recond_script_source__";
/// Native stack QuickJS may use; well below the 2 MiB of tokio and std worker threads.
const MAX_STACK: usize = 512 << 10;
/// Compiled functions kept per context before the cache is flushed.
const MAX_CACHED: usize = 4096;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn eval_options(filename: &str) -> EvalOptions {
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

/// Line and column of the first stack frame in `file` (`at f (file:3:14)` or `at file:3:14`).
fn stack_position(stack: &str, file: &str) -> Option<(usize, usize)> {
    stack.lines().find_map(|frame| {
        let frame = frame.trim();
        let loc = match frame.strip_suffix(')') {
            Some(inner) => &inner[inner.rfind('(')? + 1..],
            None => frame.strip_prefix("at ")?,
        };
        let mut parts = loc.rsplitn(3, ':');
        let col = parts.next()?.parse().ok()?;
        let line = parts.next()?.parse().ok()?;
        (parts.next()? == file).then_some((line, col))
    })
}

/// A QuickJS runtime + context with the limits and interrupt handler installed.
fn new_runtime(
    limits: ScriptLimits,
    deadline: Rc<Cell<Option<Instant>>>,
    interrupted: Rc<Cell<bool>>,
) -> rquickjs::Result<(Runtime, Context)> {
    let runtime = Runtime::new()?;
    if limits.memory_bytes > 0 {
        runtime.set_memory_limit(limits.memory_bytes);
    }
    runtime.set_max_stack_size(MAX_STACK);
    runtime.set_interrupt_handler(Some(Box::new(move || {
        // Called every few thousand bytecodes and during regex matching.
        let late = deadline.get().is_some_and(|d| Instant::now() >= d);
        if late {
            interrupted.set(true);
        }
        late
    })));
    let context = Context::full(&runtime)?;
    Ok((runtime, context))
}

/// One cached compiled function.
struct Entry {
    /// Parameter names, in order (scope variables, then globals not shadowed by them).
    names: Vec<String>,
    func: Persistent<Function<'static>>,
    /// For the eval form: the source, passed as first argument.
    source: Option<Persistent<rquickjs::String<'static>>>,
}

/// Hasher for the cache's keys, which are already unique integers.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// JS values a context keeps between evaluations.
struct Held {
    cache: IdMap<Entry>,
    date_proto: Persistent<Object<'static>>,
    well_formed: Persistent<Function<'static>>,
    /// The previous evaluation's arguments and result, released after the next one has
    /// allocated its own: QuickJS frees a 4 KiB allocation arena as soon as it is empty, so
    /// without this every evaluation would create and tear down arenas (measured: a 10-field
    /// object input went from 2.3 to 1.6 µs per evaluation).
    retained: Vec<Persistent<JsValue<'static>>>,
}

/// The runtime and everything holding JS values. Field order matters: persistent JS values
/// must be dropped before the context and runtime that own them.
struct State {
    held: Held,
    /// Enumerable global properties present before any script ran.
    baseline: HashSet<String>,
    context: Context,
    _runtime: Runtime,
}

/// One QuickJS runtime + context, reused for every evaluation on one thread.
pub struct ScriptContext {
    limits: ScriptLimits,
    host: Arc<dyn ScriptHost>,
    deadline: Rc<Cell<Option<Instant>>>,
    interrupted: Rc<Cell<bool>>,
    current: Rc<RefCell<Option<CompiledScript>>>,
    /// `None` only after a failed rebuild; rebuilt on the next evaluation.
    state: Option<State>,
}

impl fmt::Debug for ScriptContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptContext")
            .field("limits", &self.limits)
            .field(
                "cached",
                &self.state.as_ref().map_or(0, |s| s.held.cache.len()),
            )
            .finish()
    }
}

impl ScriptContext {
    /// Creates a runtime with `limits` whose `openidm.*` calls go to `host`.
    pub fn new(
        limits: ScriptLimits,
        host: Arc<dyn ScriptHost>,
    ) -> Result<ScriptContext, ScriptError> {
        let mut cx = ScriptContext {
            limits,
            host,
            deadline: Rc::new(Cell::new(None)),
            interrupted: Rc::new(Cell::new(false)),
            current: Rc::new(RefCell::new(None)),
            state: None,
        };
        cx.state = Some(cx.build_state()?);
        Ok(cx)
    }

    fn build_state(&self) -> Result<State, ScriptError> {
        let fail = |e: rquickjs::Error| {
            let kind = if matches!(e, rquickjs::Error::Allocation) {
                ScriptErrorKind::OutOfMemory
            } else {
                ScriptErrorKind::Internal
            };
            ScriptError::new(kind, "", format!("cannot create a QuickJS context: {e}"))
        };
        let (runtime, context) =
            new_runtime(self.limits, self.deadline.clone(), self.interrupted.clone())
                .map_err(fail)?;
        let env = Rc::new(host::HostEnv {
            host: self.host.clone(),
            current: self.current.clone(),
            deadline: self.deadline.clone(),
            budget: node_budget(self.limits),
        });
        let (date_proto, well_formed, baseline) = context
            .with(|ctx| {
                host::install(&ctx, env)?;
                // Keep the real `eval` so the eval form always performs a direct eval.
                ctx.eval::<(), _>(
                    "Object.defineProperty(globalThis, 'eval', { writable: false, configurable: false });",
                )?;
                let date: Object = ctx.globals().get::<_, Object>("Date")?.get("prototype")?;
                let wf: Function = ctx.eval("(function (s) { return s.toWellFormed(); })")?;
                let baseline = ctx.globals().keys::<String>().collect::<rquickjs::Result<_>>()?;
                Ok::<_, rquickjs::Error>((
                    Persistent::save(&ctx, date),
                    Persistent::save(&ctx, wf),
                    baseline,
                ))
            })
            .map_err(fail)?;
        Ok(State {
            held: Held {
                cache: IdMap::default(),
                date_proto,
                well_formed,
                retained: Vec::new(),
            },
            baseline,
            context,
            _runtime: runtime,
        })
    }

    /// The limits this context was created with.
    pub fn limits(&self) -> ScriptLimits {
        self.limits
    }

    /// Evaluates `script` with `scope` (plus the script's globals, which `scope` overrides) as
    /// variables, returning its completion value as JSON.
    pub fn eval(
        &mut self,
        script: &CompiledScript,
        scope: &[(&str, &Value)],
    ) -> Result<Value, ScriptError> {
        if self.state.is_none() {
            let fresh = self.build_state().map_err(|mut e| {
                e.script = script.name().to_owned();
                e
            })?;
            self.state = Some(fresh);
        }
        let Some(state) = self.state.as_mut() else {
            return Err(ScriptError::new(
                ScriptErrorKind::Internal,
                script.name(),
                "no QuickJS context",
            ));
        };
        let deadline = Instant::now().checked_add(self.limits.time);
        self.deadline.set(deadline);
        self.interrupted.set(false);
        *self.current.borrow_mut() = Some(script.clone());

        let limits = self.limits;
        let interrupted = &self.interrupted;
        let outer_deadline = &self.deadline;
        let State {
            held,
            baseline,
            context,
            ..
        } = state;
        let result = context.with(|ctx| {
            let r = run(&ctx, held, script, scope, limits, deadline).map_err(|f| {
                let eval_form = held
                    .cache
                    .get(&script.inner.id)
                    .is_some_and(|e| e.source.is_some());
                classify(&ctx, f, script, limits, interrupted.get(), eval_form)
            });
            // Promise reactions the script queued run now, under its deadline, so that they
            // cannot pile up in the runtime.
            while deadline.is_none_or(|d| Instant::now() < d) && ctx.execute_pending_job() {}
            outer_deadline.set(None);
            if script.inner.may_leak {
                remove_new_globals(&ctx, baseline);
            }
            r
        });
        self.deadline.set(None);
        *self.current.borrow_mut() = None;

        if let Err(e) = &result {
            if e.kind == ScriptErrorKind::OutOfMemory {
                // The heap may hold the script's garbage (or half-built objects): start afresh.
                self.state = None;
                self.state = self.build_state().ok();
            }
        }
        result
    }
}

/// Maximum JS → JSON nodes per conversion (1 Mi for 64 MiB): bounds the Rust memory and time a
/// small JS graph with shared sub-objects could otherwise expand into.
fn node_budget(limits: ScriptLimits) -> usize {
    if limits.memory_bytes == 0 {
        usize::MAX
    } else {
        (limits.memory_bytes / 64).max(1 << 16)
    }
}

/// Why [`run`] failed, before classification.
enum Failure {
    Js(rquickjs::Error),
    Conv(ConvError),
    BadName(String),
}

impl From<rquickjs::Error> for Failure {
    fn from(e: rquickjs::Error) -> Self {
        Failure::Js(e)
    }
}

impl From<ConvError> for Failure {
    fn from(e: ConvError) -> Self {
        match e {
            ConvError::Js(e) => Failure::Js(e),
            other => Failure::Conv(other),
        }
    }
}

/// Scope variables then unshadowed globals, without duplicates.
fn variables<'a>(
    scope: &'a [(&'a str, &'a Value)],
    globals: &'a Map<String, Value>,
) -> impl Iterator<Item = (&'a str, &'a Value)> + Clone {
    let own = scope
        .iter()
        .enumerate()
        .filter(move |(i, (n, _))| !scope[..*i].iter().any(|(m, _)| m == n))
        .map(|(_, (n, v))| (*n, *v));
    let extra = globals
        .iter()
        .filter(move |(k, _)| !scope.iter().any(|(n, _)| n == k))
        .map(|(k, v)| (k.as_str(), v));
    own.chain(extra)
}

const RESERVED: &[&str] = &[
    "arguments",
    "await",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "eval",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "implements",
    "import",
    "in",
    "instanceof",
    "interface",
    "let",
    "new",
    "null",
    "package",
    "private",
    "protected",
    "public",
    "return",
    "static",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "yield",
];

fn valid_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == b'_' || first == b'$')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
        && !RESERVED.contains(&name)
        && name != SOURCE_PARAM
}

/// Compiles (or fetches) the script's function, calls it and converts the result.
fn run<'js>(
    ctx: &Ctx<'js>,
    held: &mut Held,
    script: &CompiledScript,
    scope: &[(&str, &Value)],
    limits: ScriptLimits,
    deadline: Option<Instant>,
) -> Result<Value, Failure> {
    let inner = &*script.inner;
    let cache = &mut held.cache;
    let vars = variables(scope, &inner.spec.globals);
    let cached = cache.get(&inner.id).filter(|e| {
        e.names.len() == vars.clone().count()
            && e.names
                .iter()
                .map(String::as_str)
                .eq(vars.clone().map(|(n, _)| n))
    });
    let entry = match cached {
        Some(e) => e,
        None => {
            let fresh = compile_entry(ctx, inner, vars.clone())?;
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            match cache.entry(inner.id) {
                std::collections::hash_map::Entry::Occupied(mut slot) => {
                    slot.insert(fresh);
                    slot.into_mut()
                }
                std::collections::hash_map::Entry::Vacant(slot) => slot.insert(fresh),
            }
        }
    };
    let func = entry.func.clone().restore(ctx)?;
    let mut args = Args::new(ctx.clone(), entry.names.len() + 1);
    if let Some(src) = &entry.source {
        args.push_arg(src.clone().restore(ctx)?)?;
    }
    let mut keep = Vec::with_capacity(entry.names.len() + 1);
    for (_, v) in vars {
        let js = convert::to_js(ctx, v)?;
        keep.push(Persistent::save(ctx, js.clone()));
        args.push_arg(js)?;
    }
    let result: JsValue = args.apply(&func)?;
    keep.push(Persistent::save(ctx, result.clone()));
    // Releases the previous evaluation's values (see `Held::retained`).
    held.retained = keep;
    let date = held.date_proto.clone().restore(ctx).ok();
    let wf = held.well_formed.clone().restore(ctx).ok();
    let mut conv = FromJs::new(node_budget(limits), deadline, date, wf);
    match result.type_of() {
        rquickjs::Type::Function | rquickjs::Type::Constructor => {
            Err(Failure::Conv(ConvError::Function(String::new())))
        }
        _ => Ok(conv.convert(&result)?),
    }
}

/// Compiles the function for `inner` with the given parameter names.
fn compile_entry<'js, 'a>(
    ctx: &Ctx<'js>,
    inner: &Inner,
    vars: impl Iterator<Item = (&'a str, &'a Value)>,
) -> Result<Entry, Failure> {
    let names: Vec<String> = vars.map(|(n, _)| n.to_owned()).collect();
    if let Some(bad) = names.iter().find(|n| !valid_identifier(n)) {
        return Err(Failure::BadName(format!(
            "\"{bad}\" cannot be a script variable name"
        )));
    }
    let params = names.join(", ");
    if let Some(body) = &inner.fast_body {
        let text = format!("(function({params}) {{{body}\n}})");
        match ctx.eval_with_options::<Function, _>(text, eval_options(FILE)) {
            Ok(func) => {
                return Ok(Entry {
                    names,
                    func: Persistent::save(ctx, func),
                    source: None,
                })
            }
            Err(rquickjs::Error::Exception) => {
                let thrown = ctx.catch();
                // E.g. `let source = ...` clashing with a parameter: use the eval form.
                if !is_syntax_error(&thrown) {
                    return Err(Failure::Js(ctx.throw(thrown)));
                }
            }
            Err(e) => return Err(Failure::Js(e)),
        }
    }
    let sep = if params.is_empty() { "" } else { ", " };
    let text =
        format!("(function({SOURCE_PARAM}{sep}{params}) {{ return eval({SOURCE_PARAM}); }})");
    let func: Function = ctx.eval_with_options(text, eval_options(FILE))?;
    let source = rquickjs::String::from_str(ctx.clone(), &inner.spec.source)?;
    Ok(Entry {
        names,
        func: Persistent::save(ctx, func),
        source: Some(Persistent::save(ctx, source)),
    })
}

fn is_syntax_error(v: &JsValue<'_>) -> bool {
    v.as_object()
        .and_then(|o| o.get::<_, String>("name").ok())
        .is_some_and(|n| n == "SyntaxError")
}

/// Deletes global properties a script created (e.g. `x = 1` without `var`).
fn remove_new_globals(ctx: &Ctx<'_>, baseline: &HashSet<String>) {
    let globals = ctx.globals();
    let added: Vec<String> = globals
        .keys::<String>()
        .filter_map(Result::ok)
        .filter(|k| !baseline.contains(k))
        .collect();
    for key in added {
        if globals.remove(key.as_str()).is_err() {
            let _ = ctx.catch();
        }
    }
}

/// Turns a failure of [`run`] into the caller's error.
fn classify(
    ctx: &Ctx<'_>,
    failure: Failure,
    script: &CompiledScript,
    limits: ScriptLimits,
    interrupted: bool,
    eval_form: bool,
) -> ScriptError {
    let name = script.name();
    let timeout = || {
        ScriptError::new(
            ScriptErrorKind::Timeout,
            name,
            format!("exceeded its time limit of {} ms", limits.time.as_millis()),
        )
    };
    let oom = || {
        ScriptError::new(
            ScriptErrorKind::OutOfMemory,
            name,
            format!(
                "exceeded the memory limit of {}",
                format_bytes(limits.memory_bytes)
            ),
        )
    };
    let e = match failure {
        Failure::Js(e) => e,
        Failure::BadName(m) => return ScriptError::new(ScriptErrorKind::Conversion, name, m),
        Failure::Conv(c) => {
            let m = match c {
                ConvError::Timeout => return timeout(),
                ConvError::Function(path) => {
                    format!("returned a function (at result{path}), which has no JSON form")
                }
                ConvError::TooDeep => format!(
                    "a value is nested deeper than {} levels (or is cyclic)",
                    convert::MAX_DEPTH
                ),
                ConvError::TooLarge(n) => format!("returned more than {n} values"),
                ConvError::Js(e) => e.to_string(),
            };
            return ScriptError::new(ScriptErrorKind::Conversion, name, m);
        }
    };
    match e {
        rquickjs::Error::Exception => {}
        rquickjs::Error::Allocation => return oom(),
        other => return ScriptError::new(ScriptErrorKind::Internal, name, other.to_string()),
    }
    let thrown = ctx.catch();
    if interrupted {
        return timeout();
    }
    if thrown.is_null() && !script.source().contains("throw") {
        // QuickJS throws null when it cannot even allocate the "out of memory" error.
        return oom();
    }
    let Some(ex) = thrown.as_object().cloned().and_then(Exception::from_object) else {
        let text = match thrown.as_string() {
            Some(s) => s.to_string().unwrap_or_default(),
            None => {
                let mut conv = FromJs::new(10_000, None, None, None);
                match conv.convert(&thrown) {
                    Ok(v) => v.to_string(),
                    Err(_) => {
                        let _ = ctx.catch();
                        "(a value that cannot be shown)".to_owned()
                    }
                }
            }
        };
        return ScriptError::new(ScriptErrorKind::Thrown, name, text);
    };
    let err_name: String = ex.get("name").unwrap_or_else(|_| "Error".into());
    let message = ex.message().unwrap_or_default();
    if err_name == "InternalError" {
        match message.as_str() {
            "out of memory" => return oom(),
            "interrupted" => return timeout(),
            _ => {}
        }
    }
    let mut text = if message.is_empty() {
        err_name
    } else {
        format!("{err_name}: {message}")
    };
    // The eval form's own frames are `<input>`; the function form's are FILE.
    let (first, second) = if eval_form {
        (EVAL_FILE, FILE)
    } else {
        (FILE, EVAL_FILE)
    };
    let stack = ex.stack().unwrap_or_default();
    let position = stack_position(&stack, first).or_else(|| stack_position(&stack, second));
    if let Some((line, _)) = position {
        text.push_str(&format!(" at line {line}"));
    }
    ScriptError::new(ScriptErrorKind::Thrown, name, text)
}

fn format_bytes(n: usize) -> String {
    const MIB: usize = 1 << 20;
    if n == 0 {
        "unlimited".to_owned()
    } else if n & (MIB - 1) == 0 {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} bytes")
    }
}

thread_local! {
    /// This thread's context, with the limits and host identity it was built for.
    static THREAD_CONTEXT: RefCell<Option<(ScriptLimits, usize, ScriptContext)>> =
        const { RefCell::new(None) };
}

/// Runs `f` with this thread's [`ScriptContext`], creating it on first use (or when `limits` or
/// the host changed). Re-entrant: a nested call (e.g. from a host function) gets its own context.
pub fn with_thread_context<R>(
    limits: ScriptLimits,
    host: &Arc<dyn ScriptHost>,
    f: impl FnOnce(&mut ScriptContext) -> R,
) -> Result<R, ScriptError> {
    // The context holds a clone of `host`, so its address cannot be reused while cached.
    let key = Arc::as_ptr(host) as *const () as usize;
    let taken = THREAD_CONTEXT
        .try_with(|slot| slot.try_borrow_mut().ok().and_then(|mut s| s.take()))
        .ok()
        .flatten();
    let mut cx = match taken {
        Some((l, k, cx)) if l == limits && k == key => cx,
        _ => ScriptContext::new(limits, host.clone())?,
    };
    let out = f(&mut cx);
    let _ = THREAD_CONTEXT.try_with(|slot| {
        if let Ok(mut s) = slot.try_borrow_mut() {
            *s = Some((limits, key, cx));
        }
    });
    Ok(out)
}
