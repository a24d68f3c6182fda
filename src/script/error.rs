//! Script failures: what went wrong, in which script, and where (file, line, function).

use std::fmt;

use rquickjs::{Ctx, Exception};

use super::compile::{CompiledScript, EVAL_FILE, FILE};
use super::context::Failure;
use super::convert::{self, ConvError, FromJs};
use super::ScriptLimits;

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
    pub(super) fn new(kind: ScriptErrorKind, script: &str, message: impl Into<String>) -> Self {
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

/// Line and column of the first stack frame in `file` (`at f (file:3:14)` or `at file:3:14`).
pub(super) fn stack_position(stack: &str, file: &str) -> Option<(usize, usize)> {
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

/// Turns a failure of [`run`] into the caller's error.
pub(super) fn classify(
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
    // Where it was thrown: a required module's file and line, and the function's name.
    if let Some((func, file, line)) = top_frame(&stack) {
        let own = file == FILE || file == EVAL_FILE;
        let named = !matches!(func.as_str(), "" | "<anonymous>" | "<eval>" | "eval");
        if !own {
            text.push_str(&format!(" (thrown at {file}:{line}"));
            if named {
                text.push_str(&format!(", in function {func}"));
            }
            text.push(')');
        } else if named {
            text.push_str(&format!(", in function {func}"));
        }
    }
    ScriptError::new(ScriptErrorKind::Thrown, name, text)
}

/// The first stack frame with a source position: function name, file and line.
pub(super) fn top_frame(stack: &str) -> Option<(String, String, usize)> {
    stack.lines().find_map(|frame| {
        let frame = frame.trim().strip_prefix("at ")?;
        let (func, loc) = match frame.strip_suffix(')') {
            Some(inner) => {
                let open = inner.rfind(" (")?;
                (&inner[..open], &inner[open + 2..])
            }
            None => ("", frame),
        };
        let mut parts = loc.rsplitn(3, ':');
        let _col: usize = parts.next()?.parse().ok()?;
        let line = parts.next()?.parse().ok()?;
        let file = parts.next()?;
        (file != "native").then(|| (func.to_string(), file.to_string(), line))
    })
}

pub(super) fn format_bytes(n: usize) -> String {
    const MIB: usize = 1 << 20;
    if n == 0 {
        "unlimited".to_owned()
    } else if n & (MIB - 1) == 0 {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} bytes")
    }
}
