//! The managed object script hooks (`onCreate`, `onUpdate`, ..., `onRetrieve`) and how they
//! run: compiled once at startup, evaluated in this thread's own QuickJS context (REST handlers
//! call object sets on blocking threads and the engine on its workers, so a thread-local
//! context is never shared), with `openidm.*` going to every object set through [`Registry`].
//!
//! Scope variables follow IDM's: `object`, `newObject`, `oldObject`, `request`, `context`,
//! `resourceName`, and for `onSync` also `syncResults`. Hooks that may change the object (`onCreate` → `object`, `onUpdate` →
//! `object` or `newObject`, the same new object, `onRetrieve` → `object`) are compiled with
//! that variable appended as their completion value, so the object as the script left it
//! comes back.

use std::cell::RefCell;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::bundled::Bundled;
use crate::objects::{ObjectError, ObjectErrorKind};
use crate::script::{self, CompiledScript, ScriptContext, ScriptError, ScriptHost, ScriptLimits};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HookKind {
    OnCreate,
    OnUpdate,
    OnDelete,
    PostCreate,
    PostUpdate,
    PostDelete,
    OnValidate,
    OnRetrieve,
    OnSync,
}

impl HookKind {
    pub const ALL: [HookKind; 9] = [
        HookKind::OnCreate,
        HookKind::OnUpdate,
        HookKind::OnDelete,
        HookKind::PostCreate,
        HookKind::PostUpdate,
        HookKind::PostDelete,
        HookKind::OnValidate,
        HookKind::OnRetrieve,
        HookKind::OnSync,
    ];

    /// The managed.json key.
    pub fn key(self) -> &'static str {
        match self {
            HookKind::OnCreate => "onCreate",
            HookKind::OnUpdate => "onUpdate",
            HookKind::OnDelete => "onDelete",
            HookKind::PostCreate => "postCreate",
            HookKind::PostUpdate => "postUpdate",
            HookKind::PostDelete => "postDelete",
            HookKind::OnValidate => "onValidate",
            HookKind::OnRetrieve => "onRetrieve",
            HookKind::OnSync => "onSync",
        }
    }

    /// The variable whose final value the hook gives back, for hooks that change the object.
    pub fn result_variable(self) -> Option<&'static str> {
        match self {
            HookKind::OnCreate | HookKind::OnRetrieve => Some("object"),
            // IDM binds the new object as both `object` and `newObject`; whichever the script
            // changed is the result (see `run_hook`).
            HookKind::OnUpdate => Some("[object, newObject]"),
            _ => None,
        }
    }

    /// The CREST method of the request the hook runs for (`request.method`).
    fn method(self) -> &'static str {
        match self {
            HookKind::OnCreate | HookKind::PostCreate => "create",
            HookKind::OnUpdate | HookKind::PostUpdate => "update",
            HookKind::OnDelete | HookKind::PostDelete => "delete",
            HookKind::OnValidate => "update",
            HookKind::OnRetrieve => "read",
            HookKind::OnSync => "action",
        }
    }
}

/// A compiled project script with the name its errors carry.
#[derive(Debug, Clone)]
pub struct Script {
    compiled: CompiledScript,
}

impl Script {
    /// `env`: the project's script environment (`require()`, `identityServer`, `config/`
    /// reads), the same as mapping scripts see.
    pub fn compile(
        name: String,
        source: String,
        globals: Map<String, Value>,
        env: Arc<script::ScriptEnv>,
    ) -> Result<Script, ScriptError> {
        script::compile(script::ScriptSpec {
            name,
            source,
            globals,
            env: Some(env),
        })
        .map(|compiled| Script { compiled })
    }

    pub fn name(&self) -> &str {
        self.compiled.name()
    }
}

/// What a hook runs: the project's script, or recond's own version of one IDM bundles.
#[derive(Debug, Clone)]
pub enum Action {
    Script(Script),
    Bundled(Vec<Bundled>),
}

#[derive(Debug, Clone)]
pub struct Hook {
    pub kind: HookKind,
    pub action: Action,
    /// managed.json and the type, for errors.
    pub origin: String,
}

impl Hook {
    /// Whether the hook is (or includes) recond's own `updateConditionalGrantsForUser`.
    pub fn grants_conditional_roles(&self) -> bool {
        matches!(&self.action, Action::Bundled(steps) if steps.contains(&Bundled::ConditionalGrants))
            && matches!(self.kind, HookKind::OnCreate | HookKind::OnUpdate)
    }
}

/// What a script evaluation needs: the limits and the host of `openidm.*`.
#[derive(Clone)]
pub struct Runner {
    pub limits: ScriptLimits,
    pub host: Arc<dyn ScriptHost>,
}

thread_local! {
    /// This thread's context for managed object scripts, with the host it was built for.
    static CONTEXT: RefCell<Option<(usize, ScriptLimits, ScriptContext)>> = const { RefCell::new(None) };
}

impl Runner {
    /// Evaluates `script` with `scope`. Re-entrant: a hook whose `openidm.*` call runs another
    /// hook on this thread gets a fresh context for the inner one.
    pub fn eval(&self, script: &Script, scope: &[(&str, &Value)]) -> Result<Value, ScriptError> {
        let key = Arc::as_ptr(&self.host) as *const () as usize;
        let taken = CONTEXT
            .try_with(|slot| slot.try_borrow_mut().ok().and_then(|mut s| s.take()))
            .ok()
            .flatten();
        let mut cx = match taken {
            Some((k, l, cx)) if k == key && l == self.limits => cx,
            _ => ScriptContext::new(self.limits, self.host.clone())?,
        };
        let out = cx.eval(&script.compiled, scope);
        let _ = CONTEXT.try_with(|slot| {
            if let Ok(mut s) = slot.try_borrow_mut() {
                *s = Some((key, self.limits, cx));
            }
        });
        out
    }

    /// Runs a type hook. `object` / `old` / `new` are bound as IDM binds them for `kind`, and
    /// `sync_results` as `syncResults` (the `onSync` hook); the result is the object as the
    /// hook left it (for the hooks that may change it).
    pub fn run_hook(
        &self,
        hook: &Hook,
        resource: &str,
        object: Option<&Value>,
        old: Option<&Value>,
        new: Option<&Value>,
        sync_results: Option<&Value>,
    ) -> Result<Value, ScriptError> {
        let null = Value::Null;
        let object = match (hook.kind, object) {
            (HookKind::OnUpdate, None) => new,
            (_, o) => o,
        };
        let object = object.unwrap_or(&null);
        let old = old.unwrap_or(&null);
        let new = new.unwrap_or(&null);
        let request = json!({"method": hook.kind.method(), "resourcePath": resource});
        let context = json!({"security": {"authenticationId": "recond"}});
        let resource = Value::String(resource.to_string());
        let mut scope: Vec<(&str, &Value)> = vec![
            ("object", object),
            ("oldObject", old),
            ("newObject", new),
            ("request", &request),
            ("context", &context),
            ("resourceName", &resource),
        ];
        if let Some(r) = sync_results {
            scope.push(("syncResults", r));
        }
        match &hook.action {
            Action::Script(s) if hook.kind == HookKind::OnUpdate => match self.eval(s, &scope)? {
                Value::Array(mut both) if both.len() == 2 => {
                    let n = both.pop().unwrap_or(Value::Null);
                    let o = both.pop().unwrap_or(Value::Null);
                    Ok(if &o != new { o } else { n })
                }
                other => Ok(other),
            },
            Action::Script(s) => self.eval(s, &scope),
            Action::Bundled(steps) => {
                let mut target = object.clone();
                for b in steps {
                    target = b.run(&target).map_err(|message| ScriptError {
                        kind: script::ScriptErrorKind::Thrown,
                        script: format!("{}, {} (recond's own)", hook.origin, hook.kind.key()),
                        message,
                    })?;
                }
                Ok(target)
            }
        }
    }
}

/// The refusal a failed hook gives: what the script threw, without our wrapping. A thrown
/// `{code, message}` object (IDM's way of choosing the status) keeps its 400 or 404; every
/// other refusal is a 403.
pub fn refusal(e: &ScriptError) -> ObjectError {
    if e.kind != script::ScriptErrorKind::Thrown {
        return ObjectError::new(ObjectErrorKind::Forbidden, e.to_string());
    }
    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&e.message) {
        if let Some(code) = m.get("code").and_then(Value::as_u64) {
            let message = match m.get("message") {
                Some(Value::String(s)) => s.clone(),
                _ => e.message.clone(),
            };
            let kind = match code {
                400 => ObjectErrorKind::BadRequest,
                404 => ObjectErrorKind::NotFound,
                _ => ObjectErrorKind::Forbidden,
            };
            return ObjectError::new(kind, message);
        }
    }
    ObjectError::new(ObjectErrorKind::Forbidden, e.message.clone())
}
