//! CREST query filters (`_queryFilter`), sort keys (`_sortKeys`) and field selection (`_fields`).
//!
//! Every object set, the link table, association entries, audit events and the reconciliation
//! engine's conditions evaluate filters through this module, so:
//!
//! * [`parse`] never panics and never overflows the stack: input is capped at 1 MiB and
//!   parenthesis nesting at 256 levels; every failure is a [`QueryError`] carrying the filter
//!   text, the char offset where parsing failed and a short reason.
//! * [`Filter::matches`] works on borrowed `serde_json::Value`s and does not allocate for the
//!   common comparisons (string/number/bool `eq`, `co`, `sw`, ordering, `pr`).
//! * `Display` of a parsed [`Filter`] is canonical text that [`parse`] reads back to an equal
//!   filter (up to the nesting limit: the canonical form may add one or two parenthesis levels).
//! * [`compare_values`] is a total order (required by `sort_by`, which may panic otherwise).
//!
//! Submodules: `pointer` (JSON pointers), `parse` (tokeniser + recursive-descent parser),
//! `eval` (filter AST, evaluation, canonical text), `select` (sorting and `_fields`).

mod eval;
mod parse;
mod pointer;
mod select;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub use eval::{compare_values, quote, CmpOp, Filter};
pub use parse::{parse, MAX_DEPTH, MAX_FILTER_LEN};
pub use pointer::{segments_text, Pointer};
pub use select::{parse_fields, parse_sort_keys, project, sort_cmp, SortKey};

/// What the text in a [`QueryError`] was meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryErrorKind {
    /// A `_queryFilter` expression.
    Filter,
    /// A `_sortKeys` list.
    SortKeys,
    /// A JSON pointer used for writing ([`Pointer::set`]); `position` is the segment index.
    Pointer,
}

impl QueryErrorKind {
    fn what(self) -> &'static str {
        match self {
            QueryErrorKind::Filter => "query filter",
            QueryErrorKind::SortKeys => "sort keys",
            QueryErrorKind::Pointer => "pointer",
        }
    }
    fn unit(self) -> &'static str {
        match self {
            QueryErrorKind::Pointer => "segment",
            _ => "position",
        }
    }
}

/// The single error type of the query module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid {} '{text}': {reason} at {} {position}", kind.what(), kind.unit())]
pub struct QueryError {
    pub kind: QueryErrorKind,
    /// The whole text that failed (filter, sort keys, or pointer).
    pub text: String,
    /// Char offset (not byte offset) where parsing failed; segment index for pointer errors.
    pub position: usize,
    /// Short reason, e.g. `expected an operator`.
    pub reason: String,
}

impl QueryError {
    pub(crate) fn new(
        kind: QueryErrorKind,
        text: &str,
        position: usize,
        reason: impl Into<String>,
    ) -> QueryError {
        QueryError {
            kind,
            text: text.to_string(),
            position,
            reason: reason.into(),
        }
    }
}
