//! CREST `_queryFilter` → SQL `WHERE` text with bound parameters.
//!
//! The text holds only fixed SQL, catalog column names (through the [`Model`]) and
//! placeholders; every value from the filter is a [`Param`]. The translation keeps the
//! in-memory evaluator's shape where SQL allows it:
//!
//! * every comparison is `(col IS NOT NULL AND col op p)`, never NULL, so `!` of a comparison
//!   on a missing (NULL) attribute is true, as it is in memory;
//! * an attribute that is not readable (unknown, write-only, a nested pointer), a value of an
//!   incompatible type (a number against a text column, `null`, an array) or an extended
//!   operator is the constant false;
//! * `co` / `sw` are `LIKE` with `%`, `_` and `\` escaped;
//! * a string compared with a column read as text (timestamps, uuids...) compares the
//!   column's JSON text form, which is what objects carry.
//!
//! String comparisons follow the database (PostgreSQL's `=` is case-sensitive; SQLite's
//! `LIKE` ignores ASCII case), as IDM's connector does: the query runs where the data is.

use serde_json::Value;

use super::db::{ColKind, Column, Dialect, Param};
use super::model::{is_uuid, Model};
use crate::query::{CmpOp, Filter, Pointer};

const TRUE: &str = "(1=1)";
const FALSE: &str = "(1=0)";

/// Appends `f`'s condition to `out`, its values to `params`.
pub fn translate(f: &Filter, m: &Model, d: Dialect, params: &mut Vec<Param>) -> String {
    match f {
        Filter::True => TRUE.into(),
        Filter::False => FALSE.into(),
        Filter::And(items) if items.is_empty() => TRUE.into(),
        Filter::Or(items) if items.is_empty() => FALSE.into(),
        Filter::And(items) => join(items, " AND ", m, d, params),
        Filter::Or(items) => join(items, " OR ", m, d, params),
        Filter::Not(inner) => format!("(NOT {})", translate(inner, m, d, params)),
        Filter::Present(ptr) => match target(ptr, m) {
            Some(Target::Id) => TRUE.into(),
            Some(Target::Column(c)) => {
                format!("(t.{} IS NOT NULL)", super::db::quote_ident(&c.name))
            }
            None => FALSE.into(),
        },
        Filter::Cmp { ptr, op, value } => match target(ptr, m) {
            None => FALSE.into(),
            Some(Target::Id) => match value {
                Value::String(s) => compare_id(m, *op, s, d, params),
                _ => FALSE.into(),
            },
            Some(Target::Column(c)) => compare(c, *op, value, d, params),
        },
    }
}

fn join(items: &[Filter], sep: &str, m: &Model, d: Dialect, params: &mut Vec<Param>) -> String {
    let parts: Vec<String> = items.iter().map(|f| translate(f, m, d, params)).collect();
    format!("({})", parts.join(sep))
}

enum Target<'a> {
    Id,
    Column(&'a Column),
}

fn target<'a>(ptr: &Pointer, m: &'a Model) -> Option<Target<'a>> {
    let [name] = ptr.segments() else {
        return None;
    };
    if name == "_id" {
        return Some(Target::Id);
    }
    m.attr(name)
        .filter(|a| a.readable)
        .map(|a| Target::Column(&a.column))
}

fn push(params: &mut Vec<Param>, d: Dialect, p: Param) -> String {
    params.push(p);
    d.placeholder(params.len())
}

fn op_sql(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
        CmpOp::Co | CmpOp::Sw => "LIKE",
    }
}

/// `%`, `_` and `\` escaped for `LIKE ... ESCAPE '\'`.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `expr` compared with the string `s` as text.
fn text_cmp(expr: &str, op: CmpOp, s: &str, d: Dialect, params: &mut Vec<Param>) -> String {
    let (op_text, value) = match op {
        CmpOp::Co => ("LIKE", format!("%{}%", like_escape(s))),
        CmpOp::Sw => ("LIKE", format!("{}%", like_escape(s))),
        other => (op_sql(other), s.to_string()),
    };
    let p = push(params, d, Param::Text(value));
    let escape = if matches!(op, CmpOp::Co | CmpOp::Sw) {
        " ESCAPE '\\'"
    } else {
        ""
    };
    format!("({expr} IS NOT NULL AND {expr} {op_text} {p}{escape})")
}

fn compare(c: &Column, op: CmpOp, value: &Value, d: Dialect, params: &mut Vec<Param>) -> String {
    let col = format!("t.{}", super::db::quote_ident(&c.name));
    let native = |params: &mut Vec<Param>, p: Param, cast: &str| {
        let ph = push(params, d, p);
        format!("({col} IS NOT NULL AND {col} {} {ph}{cast})", op_sql(op))
    };
    let ordering = !matches!(op, CmpOp::Co | CmpOp::Sw);
    match (c.kind, value) {
        (ColKind::Text, Value::String(s)) => text_cmp(&col, op, s, d, params),
        (ColKind::Uuid, Value::String(s)) if op == CmpOp::Eq && is_uuid(s) => {
            native(params, Param::Text(s.clone()), "")
        }
        (ColKind::Other | ColKind::Uuid, Value::String(s)) => {
            text_cmp(&d.text_expr(c), op, s, d, params)
        }
        (ColKind::Int | ColKind::Float, Value::Number(n)) if ordering => {
            match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => native(params, Param::Int(i), ""),
                // A fraction compared with an integer column: the server widens the column.
                (None, Some(f)) if d == Dialect::Postgres => {
                    native(params, Param::Float(f), "::float8")
                }
                (None, Some(f)) => native(params, Param::Float(f), ""),
                _ => FALSE.into(),
            }
        }
        (ColKind::Other, Value::Number(n)) if ordering && d == Dialect::Sqlite => {
            match n.as_i64() {
                Some(i) => native(params, Param::Int(i), ""),
                None => n
                    .as_f64()
                    .map(|f| native(params, Param::Float(f), ""))
                    .unwrap_or_else(|| FALSE.into()),
            }
        }
        (ColKind::Bool, Value::Bool(b)) if ordering => native(params, Param::Bool(*b), ""),
        _ => FALSE.into(),
    }
}

fn compare_id(m: &Model, op: CmpOp, s: &str, d: Dialect, params: &mut Vec<Param>) -> String {
    let col = format!("t.{}", super::db::quote_ident(&m.key.name));
    match (m.key.kind, op) {
        (ColKind::Text, _) => text_cmp(&col, op, s, d, params),
        (_, CmpOp::Eq) => match m.key_param(s) {
            Some(p) => {
                let ph = push(params, d, p);
                format!("({col} = {ph})")
            }
            None => FALSE.into(),
        },
        _ => text_cmp(&d.text_expr(&m.key), op, s, d, params),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::sql::config::{Backend, DbConfig};
    use crate::connectors::sql::db::TableInfo;
    use crate::query::parse;

    fn model() -> Model {
        let col = |n: &str, k: ColKind| Column {
            name: n.into(),
            sql_type: "t".into(),
            kind: k,
        };
        let info = TableInfo {
            sql_name: "\"u\"".into(),
            columns: vec![
                col("id", ColKind::Int),
                col("userName", ColKind::Text),
                col("age", ColKind::Int),
                col("ok", ColKind::Bool),
                col("seen", ColKind::Other),
                col("pw", ColKind::Text),
            ],
        };
        let cfg = DbConfig {
            backend: Backend::Sqlite("x".into()),
            table: "u".into(),
            key_column: "id".into(),
            password_column: Some("pw".into()),
            change_log_column: None,
            enable_empty_string: false,
        };
        Model::resolve(&cfg, None, &info).expect("resolves")
    }

    fn sql(text: &str, d: Dialect) -> (String, Vec<Param>) {
        let f = parse(text).expect("filter parses");
        let mut params = Vec::new();
        let s = translate(&f, &model(), d, &mut params);
        (s, params)
    }

    #[test]
    fn values_are_bound_never_pasted() {
        let (s, p) = sql(r#"userName eq "x' OR '1'='1""#, Dialect::Postgres);
        assert_eq!(s, r#"(t."userName" IS NOT NULL AND t."userName" = $1)"#);
        assert_eq!(p, vec![Param::Text("x' OR '1'='1".into())]);
        let (s, p) = sql(r#"userName co "50%_\\""#, Dialect::Sqlite);
        assert!(s.contains("LIKE ?1 ESCAPE '\\'"), "{s}");
        assert_eq!(p, vec![Param::Text(r"%50\%\_\\%".into())]);
    }

    #[test]
    fn shapes_and_types() {
        let (s, p) = sql(
            r#"(age ge 18 and !(ok eq true)) or userName sw "a" or seen pr"#,
            Dialect::Postgres,
        );
        assert_eq!(
            s,
            "(((t.\"age\" IS NOT NULL AND t.\"age\" >= $1) AND (NOT (t.\"ok\" IS NOT NULL AND \
             t.\"ok\" = $2))) OR (t.\"userName\" IS NOT NULL AND t.\"userName\" LIKE $3 ESCAPE \
             '\\') OR (t.\"seen\" IS NOT NULL))"
        );
        assert_eq!(
            p,
            vec![Param::Int(18), Param::Bool(true), Param::Text("a%".into())]
        );
        // Incompatible types, unknown and write-only attributes, nested pointers: false.
        for f in [
            "age eq \"x\" and age co 1",
            "userName eq 3",
            "nope eq 1",
            "pw eq \"s\"",
            "a/b eq 1",
            "ok eq 1",
        ] {
            let (s, _) = sql(f, Dialect::Postgres);
            assert!(s.contains("(1=0)"), "{f}: {s}");
        }
        let (s, p) = sql(r#"_id eq "7" or _id eq "x""#, Dialect::Postgres);
        assert_eq!(s, "((t.\"id\" = $1) OR (1=0))");
        assert_eq!(p, vec![Param::Int(7)]);
        let (s, _) = sql("age lt 1.5", Dialect::Postgres);
        assert!(s.ends_with("< $1::float8)"), "{s}");
    }
}
