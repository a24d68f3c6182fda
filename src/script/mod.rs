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

mod compile;
mod context;
mod convert;
mod crypto;
mod env;
mod error;
mod globals;
mod host;
mod logger;
mod openidm;
mod require;
mod split;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_project;

use std::time::Duration;

use serde_json::{Map, Value};

pub use compile::{compile, is_supported_type, CompiledScript};
pub use context::{with_thread_context, ScriptContext};
pub use crypto::{crypto_type, hash_matches, BuiltinCrypto, ScriptCrypto};
pub use env::{ProjectEnv, ScriptEnv};
pub use error::{ScriptError, ScriptErrorKind};
pub use host::{NoHost, ScriptHost};

/// A script as configured: `name` says where it comes from (used in every error and log line).
#[derive(Debug, Clone, Default)]
pub struct ScriptSpec {
    /// e.g. `mapping systemHrAccounts_managedUser, properties[2].transform`.
    pub name: String,
    /// The JavaScript source (a global script; its completion value is the result).
    pub source: String,
    /// The script object's `globals`: extra variables in scope for every evaluation.
    pub globals: Map<String, Value>,
    /// The project and mapping the script belongs to (`require`, `identityServer`,
    /// `mappingConfig`, `config/` reads, crypto); `None` for scripts outside a project.
    pub env: Option<std::sync::Arc<ScriptEnv>>,
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
