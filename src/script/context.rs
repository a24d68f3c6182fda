//! One QuickJS runtime and context per thread: the compiled-function cache, evaluation under
//! the limits, and the thread-local context.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use rquickjs::function::Args;
use rquickjs::{Context, Ctx, Function, Object, Persistent, Runtime, Value as JsValue};
use serde_json::{Map, Value};

use super::compile::{
    eval_options, CompiledScript, Inner, FILE, MAX_CACHED, MAX_STACK, SOURCE_PARAM,
};
use super::convert::{self, ConvError, FromJs};
use super::error::{classify, ScriptError, ScriptErrorKind};
use super::{host, ScriptHost, ScriptLimits};

/// A QuickJS runtime + context with the limits and interrupt handler installed.
pub(super) fn new_runtime(
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
            result_limit: match self.limits.memory_bytes {
                0 => usize::MAX,
                n => n / 4,
            },
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
            _runtime: runtime,
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
            let ran_ok = r.is_ok() && !interrupted.get();
            let mut out_of_time = false;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    out_of_time = true;
                    break;
                }
                if !ctx.execute_pending_job() {
                    break;
                }
            }
            outer_deadline.set(None);
            if script.inner.may_leak {
                remove_new_globals(&ctx, baseline);
            }
            // A job the interrupt handler stopped, or jobs still queued at the deadline: the
            // script's work did not finish, so its entry must not say it did.
            let jobs_failed = ran_ok && (interrupted.get() || out_of_time);
            (r, jobs_failed)
        });
        let (mut result, jobs_failed) = result;
        let jobs_failed = jobs_failed && (self.interrupted.get() || runtime.is_job_pending());
        self.deadline.set(None);
        *self.current.borrow_mut() = None;
        if jobs_failed {
            result = Err(ScriptError::new(
                ScriptErrorKind::Timeout,
                script.name(),
                format!(
                    "exceeded its time limit of {} ms in pending Promise jobs",
                    self.limits.time.as_millis()
                ),
            ));
            // Jobs left in the queue would run under the next script's deadline: start afresh.
            self.state = None;
            self.state = self.build_state().ok();
            return result;
        }

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
pub(super) enum Failure {
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
