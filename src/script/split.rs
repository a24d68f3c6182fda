//! Light-weight lexical analysis of a script's source, used to run scripts fast.
//!
//! IDM scripts are global scripts whose value is their *completion value* (`var q = {..}; q;`
//! yields `q`). QuickJS can only re-run compiled code cheaply as a function, and a function
//! returns what `return` says, so this module looks for the script's last top-level statement
//! and, when it is an expression statement, produces a function body `P return (S\n);` that
//! yields the same value. The lexer here is approximate (it guesses regex versus division like
//! every hand-written JS lexer); it never needs to be right for safety, because:
//!
//! * the caller first checks that the whole source is a valid global script (with QuickJS);
//! * the body is only used after QuickJS accepted it as a function body; a cut made at a wrong
//!   place leaves the prefix `P` ending inside an unterminated literal or comment, which QuickJS
//!   rejects, and then the slower but exact `eval` path is used;
//! * a cut after `}` or at a newline is only taken when the next token cannot continue the
//!   previous statement (an identifier, string or number), so automatic semicolon insertion is
//!   known to end the statement there.
//!
//! It also reports whether a script could create global variables (`x = 1` without `var`,
//! `this.x`, `eval`, ...), so that the caller only pays for the clean-up check when needed.

/// Result of [`analyse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Analysis {
    /// Function body returning the completion value, if the last statement is an expression.
    pub fast_body: Option<String>,
    /// False only when the script certainly cannot add properties to the global object.
    pub may_leak: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Frame {
    Paren,
    Bracket,
    Brace,
    Template,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Boundary {
    /// After a `;` at top level: always ends a statement.
    Semicolon,
    /// After a top-level `}` or at a top-level line break: ends a statement only if the next
    /// token cannot continue it.
    Soft,
}

/// Identifiers through which a script can reach the global object or run generated code.
const LEAKY_WORDS: &[&str] = &[
    "this",
    "globalThis",
    "eval",
    "Function",
    "constructor",
    "Reflect",
    "with",
];

/// Words after which a `/` starts a regular expression rather than a division.
const REGEX_AFTER_WORDS: &[&str] = &[
    "return",
    "typeof",
    "instanceof",
    "in",
    "of",
    "new",
    "delete",
    "void",
    "throw",
    "case",
    "do",
    "else",
    "yield",
    "await",
];

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    stack: Vec<Frame>,
    regex_allowed: bool,
    may_leak: bool,
    boundaries: Vec<(usize, Boundary)>,
    /// Start and end of the last significant token that is not a `;`.
    last_token: Option<(usize, usize)>,
}

/// Analyses `src`; never fails (an unrecognised source just gets no fast path).
pub(crate) fn analyse(src: &str) -> Analysis {
    let mut lx = Lexer {
        src: src.as_bytes(),
        pos: 0,
        stack: Vec::new(),
        regex_allowed: true,
        may_leak: false,
        boundaries: Vec::new(),
        last_token: None,
    };
    if lx.run().is_none() || !lx.stack.is_empty() {
        return Analysis {
            fast_body: None,
            may_leak: true,
        };
    }
    Analysis {
        fast_body: lx.fast_body(src),
        may_leak: lx.may_leak,
    }
}

impl Lexer<'_> {
    fn peek(&self, off: usize) -> Option<u8> {
        self.src.get(self.pos + off).copied()
    }

    fn top_level(&self) -> bool {
        self.stack.is_empty()
    }

    fn significant(&mut self, start: usize, end: usize) {
        self.last_token = Some((start, end));
    }

    /// Scans the whole source; `None` when it cannot be tokenised (unterminated literal, ...).
    fn run(&mut self) -> Option<()> {
        while let Some(b) = self.peek(0) {
            let start = self.pos;
            match b {
                b'\n' => {
                    if self.top_level() {
                        self.boundaries.push((self.pos, Boundary::Soft));
                    }
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' | 0x0b | 0x0c => self.pos += 1,
                b'/' if self.peek(1) == Some(b'/') => {
                    while let Some(c) = self.peek(0) {
                        if c == b'\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                b'/' if self.peek(1) == Some(b'*') => {
                    let rest = self.src.get(self.pos + 2..)?;
                    let close = rest.windows(2).position(|w| w == b"*/")?;
                    self.pos += 2 + close + 2;
                }
                b'/' if self.regex_allowed => {
                    self.regex()?;
                    self.significant(start, self.pos);
                    self.regex_allowed = false;
                }
                b'\'' | b'"' => {
                    self.string(b)?;
                    self.significant(start, self.pos);
                    self.regex_allowed = false;
                }
                b'`' => {
                    self.pos += 1;
                    self.template()?;
                    self.significant(start, self.pos);
                }
                b'(' | b'[' | b'{' => {
                    self.stack.push(match b {
                        b'(' => Frame::Paren,
                        b'[' => Frame::Bracket,
                        _ => Frame::Brace,
                    });
                    self.pos += 1;
                    self.significant(start, self.pos);
                    self.regex_allowed = true;
                }
                b')' | b']' | b'}' => {
                    let frame = self.stack.pop()?;
                    self.pos += 1;
                    match (b, frame) {
                        (b')', Frame::Paren) | (b']', Frame::Bracket) => {
                            self.regex_allowed = false;
                        }
                        (b'}', Frame::Brace) => {
                            self.regex_allowed = true;
                            if self.top_level() {
                                self.boundaries.push((self.pos, Boundary::Soft));
                            }
                        }
                        (b'}', Frame::Template) => {
                            self.template()?;
                        }
                        _ => return None,
                    }
                    self.significant(start, self.pos);
                }
                b';' => {
                    self.pos += 1;
                    if self.top_level() {
                        self.boundaries.push((self.pos, Boundary::Semicolon));
                    }
                    self.regex_allowed = true;
                }
                b'=' => {
                    let run = self.src[self.pos..]
                        .iter()
                        .take_while(|&&c| c == b'=')
                        .count();
                    let after = self.peek(run);
                    let before = start.checked_sub(1).and_then(|i| self.src.get(i).copied());
                    let before2 = start.checked_sub(2).and_then(|i| self.src.get(i).copied());
                    // `==`, `!=`, `<=`, `>=` compare; `<<=`, `>>=`, `>>>=` assign.
                    let comparison = run >= 2
                        || before == Some(b'!')
                        || (matches!(before, Some(b'<' | b'>')) && before2 != before);
                    let arrow = run == 1 && after == Some(b'>');
                    if !comparison && !arrow {
                        self.may_leak = true;
                    }
                    self.pos += if arrow { 2 } else { run };
                    self.significant(start, self.pos);
                    self.regex_allowed = true;
                }
                b'+' | b'-' if self.peek(1) == Some(b) => {
                    self.may_leak = true;
                    self.pos += 2;
                    self.significant(start, self.pos);
                    // `x++ / 2` is a division, `++/re/.x` is nonsense: keep it simple.
                    self.regex_allowed = false;
                }
                c if is_word_byte(c) => {
                    while self.peek(0).is_some_and(is_word_byte) {
                        self.pos += 1;
                    }
                    let word = &self.src[start..self.pos];
                    if LEAKY_WORDS.iter().any(|w| w.as_bytes() == word) {
                        self.may_leak = true;
                    }
                    self.regex_allowed = REGEX_AFTER_WORDS.iter().any(|w| w.as_bytes() == word);
                    self.significant(start, self.pos);
                }
                _ => {
                    // Any other punctuator (or a non-ASCII byte sequence we do not model).
                    self.pos += 1;
                    self.significant(start, self.pos);
                    self.regex_allowed = true;
                }
            }
        }
        Some(())
    }

    fn string(&mut self, quote: u8) -> Option<()> {
        self.pos += 1;
        loop {
            match self.peek(0)? {
                b'\\' => self.pos += 2,
                b'\n' => return None,
                c if c == quote => {
                    self.pos += 1;
                    return Some(());
                }
                _ => self.pos += 1,
            }
        }
    }

    fn regex(&mut self) -> Option<()> {
        self.pos += 1;
        let mut in_class = false;
        loop {
            match self.peek(0)? {
                b'\\' => self.pos += 2,
                b'\n' | b'\r' => return None,
                b'[' => {
                    in_class = true;
                    self.pos += 1;
                }
                b']' => {
                    in_class = false;
                    self.pos += 1;
                }
                b'/' if !in_class => {
                    self.pos += 1;
                    break;
                }
                _ => self.pos += 1,
            }
        }
        while self.peek(0).is_some_and(is_word_byte) {
            self.pos += 1;
        }
        Some(())
    }

    /// Scans template characters up to the closing backtick or a `${` (which opens a frame).
    fn template(&mut self) -> Option<()> {
        loop {
            match self.peek(0)? {
                b'\\' => self.pos += 2,
                b'`' => {
                    self.pos += 1;
                    self.regex_allowed = false;
                    return Some(());
                }
                b'$' if self.peek(1) == Some(b'{') => {
                    self.pos += 2;
                    self.stack.push(Frame::Template);
                    self.regex_allowed = true;
                    return Some(());
                }
                _ => self.pos += 1,
            }
        }
    }

    /// Builds `P return (S\n);` from the last statement boundary, if `S` is eligible.
    fn fast_body(&self, src: &str) -> Option<String> {
        let (last_start, last_end) = self.last_token?;
        let (cut, kind) = self
            .boundaries
            .iter()
            .rev()
            .find(|(pos, _)| *pos <= last_start)
            .copied()
            .unwrap_or((0, Boundary::Semicolon));
        let prefix = src.get(..cut)?;
        let tail = src.get(cut..last_end)?;
        let first = first_token(tail)?;
        // These parse both as statements and as expressions, with different meanings.
        if matches!(first, "{" | "function" | "class" | "async") {
            return None;
        }
        if kind == Boundary::Soft {
            let c = first.as_bytes().first().copied()?;
            let starts_ok =
                c.is_ascii_alphanumeric() || matches!(c, b'_' | b'$' | b'\'' | b'"') || c >= 0x80;
            if !starts_ok || matches!(first, "in" | "instanceof" | "of") {
                return None;
            }
        }
        let mut body = String::with_capacity(src.len() + 16);
        body.push_str(prefix);
        body.push_str(" return (");
        body.push_str(tail);
        body.push_str("\n);");
        Some(body)
    }
}

/// First token of `s` after whitespace and comments: a word, or a single other character.
fn first_token(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c => i += 1,
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let close = b.get(i + 2..)?.windows(2).position(|w| w == b"*/")?;
                i += 2 + close + 2;
            }
            c if is_word_byte(c) => {
                let len = b[i..].iter().take_while(|&&c| is_word_byte(c)).count();
                return s.get(i..i + len);
            }
            _ => {
                let ch_len = s.get(i..)?.chars().next()?.len_utf8();
                return s.get(i..i + ch_len);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(src: &str) -> Option<String> {
        analyse(src).fast_body
    }

    #[test]
    fn single_expression() {
        assert_eq!(
            body("source.toLowerCase()").as_deref(),
            Some(" return (source.toLowerCase()\n);")
        );
        assert_eq!(
            body("source.trim();  // done\n").as_deref(),
            Some(" return (source.trim()\n);")
        );
        assert!(!analyse("source.toLowerCase()").may_leak);
    }

    #[test]
    fn statements_then_expression() {
        assert_eq!(
            body("var q = {a: 1};\nq;").as_deref(),
            Some("var q = {a: 1}; return (\nq\n);")
        );
        assert_eq!(
            body("function f(x) { return x; } f(source)").as_deref(),
            Some("function f(x) { return x; } return ( f(source)\n);")
        );
        assert_eq!(
            body("var q = {a: 1}\nq").as_deref(),
            Some("var q = {a: 1} return (\nq\n);")
        );
        assert!(analyse("var q = {a: 1};\nq;").may_leak);
    }

    #[test]
    fn no_fast_path_when_ambiguous() {
        assert_eq!(body("{a: 1}"), None);
        assert_eq!(body("x = 1; {a: 1}"), None);
        assert_eq!(body("function f() {}"), None);
        assert_eq!(body("var f = g\n(1)"), None);
        assert_eq!(body("var s = a\n  .trim()"), None);
        assert_eq!(
            body("var x = `a${'}'}b`; x"),
            Some("var x = `a${'}'}b`; return ( x\n);".into())
        );
        assert_eq!(body("'unterminated"), None);
        assert_eq!(body("a)"), None);
    }

    #[test]
    fn literals_hide_semicolons() {
        assert_eq!(
            body("var r = /;[/;]/g; s.replace(r, ';')").as_deref(),
            Some("var r = /;[/;]/g; return ( s.replace(r, ';')\n);")
        );
        assert_eq!(
            body("/* a; */ x // b;").as_deref(),
            Some(" return (/* a; */ x\n);")
        );
    }

    #[test]
    fn leak_detection() {
        assert!(!analyse("a == b && c !== d ? (x) => x : e <= f").may_leak);
        assert!(analyse("a = 1").may_leak);
        assert!(analyse("a += 1; a").may_leak);
        assert!(analyse("a++").may_leak);
        assert!(analyse("this.x").may_leak);
        assert!(analyse("[].constructor.constructor('x')").may_leak);
        assert!(analyse("'unterminated").may_leak);
        assert!(!analyse("'a = 1'").may_leak);
    }
}
