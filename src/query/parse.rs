//! Tokeniser and recursive-descent parser for CREST query filters.
//!
//! ```text
//! Expr        := OrExpr
//! OrExpr      := AndExpr ( "or" AndExpr )*
//! AndExpr     := NotExpr ( "and" NotExpr )*
//! NotExpr     := "!" PrimaryExpr | PrimaryExpr
//! PrimaryExpr := "(" Expr ")" | Pointer Op Value | Pointer "pr" | "true" | "false"
//! Op          := eq | co | sw | lt | le | gt | ge   (extended operators: a 400)
//! Value       := "..." | '...' | true | false | number
//! ```
//!
//! Tokens are separated by spaces and by parentheses; a quote opens a string only at the start
//! of a token, and a backslash inside a string escapes the next char. `!` is a token only when
//! followed by `(`, a space or the end. Keywords and operator names are case-insensitive.
//! The tokeniser is lazy so the reported position is the first failure in reading order.
//! Recursion only happens at `(`, which is capped at [`MAX_DEPTH`] levels.

use super::{CmpOp, Filter, Pointer, QueryError, QueryErrorKind};
use serde_json::{Number, Value};

/// Maximum parenthesis nesting accepted by [`parse`].
pub const MAX_DEPTH: usize = 256;
/// Maximum filter length in bytes accepted by [`parse`].
pub const MAX_FILTER_LEN: usize = 1 << 20;

/// Parses a `_queryFilter` expression.
pub fn parse(text: &str) -> Result<Filter, QueryError> {
    let err =
        |(position, reason): Fail| QueryError::new(QueryErrorKind::Filter, text, position, reason);
    if text.len() > MAX_FILTER_LEN {
        return Err(err((0, "filter longer than 1 MiB")));
    }
    let mut p = Parser {
        lex: Lexer {
            text,
            byte: 0,
            chr: 0,
        },
        peeked: None,
    };
    p.parse_all().map_err(err)
}

/// Char offset and short reason of a failure.
type Fail = (usize, &'static str);

#[derive(Debug)]
enum Tok<'a> {
    LParen,
    RParen,
    Bang,
    Word(&'a str),
    Str(String),
}

#[derive(Debug)]
struct Token<'a> {
    tok: Tok<'a>,
    /// Char offset of the token's first char.
    pos: usize,
}

struct Lexer<'a> {
    text: &'a str,
    /// Byte offset of the next char (always on a char boundary).
    byte: usize,
    /// Char offset of the next char.
    chr: usize,
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        self.text.get(self.byte..).unwrap_or("")
    }

    fn peek_char(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.byte += c.len_utf8();
        self.chr += 1;
        Some(c)
    }

    fn next_token(&mut self) -> Result<Option<Token<'a>>, Fail> {
        while self.peek_char() == Some(' ') {
            self.bump();
        }
        let pos = self.chr;
        let start = self.byte;
        let Some(c) = self.bump() else {
            return Ok(None);
        };
        let tok = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '!' if matches!(self.peek_char(), None | Some('(' | ' ')) => Tok::Bang,
            '"' | '\'' => {
                let mut s = String::new();
                loop {
                    match self.bump() {
                        None => return Err((pos, "unterminated string")),
                        Some('\\') => match self.bump() {
                            Some(escaped) => s.push(escaped),
                            None => return Err((pos, "unterminated string")),
                        },
                        Some(q) if q == c => break,
                        Some(other) => s.push(other),
                    }
                }
                Tok::Str(s)
            }
            _ => {
                while let Some(n) = self.peek_char() {
                    if matches!(n, ' ' | '(' | ')') {
                        break;
                    }
                    self.bump();
                }
                Tok::Word(self.text.get(start..self.byte).unwrap_or(""))
            }
        };
        Ok(Some(Token { tok, pos }))
    }
}

struct Parser<'a> {
    lex: Lexer<'a>,
    peeked: Option<Option<Token<'a>>>,
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Result<Option<Token<'a>>, Fail> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex.next_token(),
        }
    }

    fn peek(&mut self) -> Result<Option<&Token<'a>>, Fail> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex.next_token()?);
        }
        Ok(self.peeked.as_ref().and_then(Option::as_ref))
    }

    /// Consumes the next token if it is the (case-insensitive) keyword `kw`.
    fn eat_keyword(&mut self, kw: &str) -> Result<bool, Fail> {
        let hit = matches!(self.peek()?, Some(Token { tok: Tok::Word(w), .. }) if w.eq_ignore_ascii_case(kw));
        if hit {
            self.peeked = None;
        }
        Ok(hit)
    }

    /// Char offset of the end of the text, for "unexpected end" failures.
    fn end(&self) -> usize {
        self.lex.chr + self.lex.rest().chars().count()
    }

    fn parse_all(&mut self) -> Result<Filter, Fail> {
        let filter = self.parse_or(0)?;
        match self.next()? {
            None => Ok(filter),
            Some(t) => Err((t.pos, "expected 'and', 'or' or end of filter")),
        }
    }

    fn parse_or(&mut self, depth: usize) -> Result<Filter, Fail> {
        let first = self.parse_and(depth)?;
        if !self.eat_keyword("or")? {
            return Ok(first);
        }
        let mut items = vec![first, self.parse_and(depth)?];
        while self.eat_keyword("or")? {
            items.push(self.parse_and(depth)?);
        }
        Ok(Filter::Or(items))
    }

    fn parse_and(&mut self, depth: usize) -> Result<Filter, Fail> {
        let first = self.parse_not(depth)?;
        if !self.eat_keyword("and")? {
            return Ok(first);
        }
        let mut items = vec![first, self.parse_not(depth)?];
        while self.eat_keyword("and")? {
            items.push(self.parse_not(depth)?);
        }
        Ok(Filter::And(items))
    }

    fn parse_not(&mut self, depth: usize) -> Result<Filter, Fail> {
        if matches!(self.peek()?, Some(Token { tok: Tok::Bang, .. })) {
            self.peeked = None;
            return Ok(Filter::Not(Box::new(self.parse_primary(depth)?)));
        }
        self.parse_primary(depth)
    }

    fn parse_primary(&mut self, depth: usize) -> Result<Filter, Fail> {
        let Some(Token { tok, pos }) = self.next()? else {
            return Err((self.end(), "unexpected end of filter"));
        };
        match tok {
            Tok::LParen => {
                if depth >= MAX_DEPTH {
                    return Err((pos, "filter nested too deeply"));
                }
                let inner = self.parse_or(depth + 1)?;
                match self.next()? {
                    Some(Token {
                        tok: Tok::RParen, ..
                    }) => Ok(inner),
                    Some(t) => Err((t.pos, "expected 'and', 'or' or ')'")),
                    None => Err((self.end(), "missing ')'")),
                }
            }
            Tok::RParen => Err((pos, "unexpected ')'")),
            Tok::Bang => Err((pos, "unexpected '!'")),
            Tok::Str(_) => Err((pos, "expected a field pointer, not a string")),
            Tok::Word(w) if w.eq_ignore_ascii_case("true") => Ok(Filter::True),
            Tok::Word(w) if w.eq_ignore_ascii_case("false") => Ok(Filter::False),
            Tok::Word(w) if w.starts_with('!') => {
                Err((pos, "'!' must be followed by '(' or a space"))
            }
            Tok::Word(w) => self.parse_comparison(Pointer::parse(w)),
        }
    }

    /// The rest of `Pointer Op Value` / `Pointer pr`.
    fn parse_comparison(&mut self, ptr: Pointer) -> Result<Filter, Fail> {
        let (op, op_pos) = match self.next()? {
            Some(Token {
                tok: Tok::Word(w),
                pos,
            }) => (w, pos),
            Some(t) => return Err((t.pos, "expected an operator")),
            None => return Err((self.end(), "expected an operator")),
        };
        if !op
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err((op_pos, "invalid operator"));
        }
        if op.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(ptr));
        }
        // CREST lets a backend define extended operators; recond defines none, and an
        // operator it cannot evaluate must not quietly match nothing.
        let op = CmpOp::from_name(op).ok_or((
            op_pos,
            "unknown operator (eq, co, sw, gt, ge, lt, le or pr)",
        ))?;
        let value = self.parse_value()?;
        Ok(Filter::Cmp { ptr, op, value })
    }

    fn parse_value(&mut self) -> Result<Value, Fail> {
        let (w, pos) = match self.next()? {
            Some(Token {
                tok: Tok::Str(s), ..
            }) => return Ok(Value::String(s)),
            Some(Token {
                tok: Tok::Word(w),
                pos,
            }) => (w, pos),
            Some(t) => return Err((t.pos, "expected a value")),
            None => return Err((self.end(), "expected a value")),
        };
        if w.eq_ignore_ascii_case("true") {
            return Ok(Value::Bool(true));
        }
        if w.eq_ignore_ascii_case("false") {
            return Ok(Value::Bool(false));
        }
        if w.contains('.') {
            return w
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or((pos, "invalid number"));
        }
        if let Ok(i) = w.parse::<i64>() {
            return Ok(Value::from(i));
        }
        // Accepted beyond the grammar so that every JSON integer round-trips through Display.
        if let Ok(u) = w.parse::<u64>() {
            return Ok(Value::from(u));
        }
        Err((
            pos,
            "invalid value (expected a quoted string, true, false or a number)",
        ))
    }
}
