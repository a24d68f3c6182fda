//! Unit tests for the query module: grammar, evaluation, errors, sorting, fields, robustness.

use super::*;
use serde_json::{json, Value};
use std::cmp::Ordering;

fn p(text: &str) -> Filter {
    match parse(text) {
        Ok(f) => f,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

fn m(text: &str, obj: &Value) -> bool {
    p(text).matches(obj)
}

fn perr(text: &str) -> QueryError {
    match parse(text) {
        Ok(f) => panic!("{text:?} should not parse, got {f:?}"),
        Err(e) => e,
    }
}

fn user() -> Value {
    json!({
        "_id": "u1",
        "_rev": "3",
        "userName": "BJensen",
        "mail": "bjensen@Example.com",
        "age": 42,
        "height": 1.85,
        "active": true,
        "manager": null,
        "roles": ["Admin", "user"],
        "scores": [1, 5, 9],
        "empty": [],
        "nulls": [null],
        "name": {"givenName": "Barbara", "familyName": "Jensen", "a/b": 1, "t~x": 2},
        "addresses": [{"city": "Oslo"}, {"city": "Bergen"}],
        "true": "field named true",
        "unicode": "Ärger STRAßE Σίσυφος"
    })
}

// ---------------------------------------------------------------- operators

#[test]
fn eq_strings_case_insensitive() {
    let u = user();
    assert!(m(r#"userName eq "bjensen""#, &u));
    assert!(m(r#"userName eq "BJENSEN""#, &u));
    assert!(!m(r#"userName eq "bjense""#, &u));
    assert!(m(r#"unicode eq "ärger straße σίσυφος""#, &u));
    assert!(m(r#"unicode eq "ÄRGER STRAßE ΣΊΣΥΦΟΣ""#, &u));
    assert!(!m(r#"unicode eq "Ärger""#, &u));
}

#[test]
fn eq_numbers_and_bools() {
    let u = user();
    assert!(m("age eq 42", &u));
    assert!(m("age eq 42.0", &u));
    assert!(!m("age eq 42.5", &u));
    assert!(m("height eq 1.85", &u));
    assert!(!m("height eq 1", &u));
    assert!(m("active eq true", &u));
    assert!(m("active eq TRUE", &u));
    assert!(!m("active eq false", &u));
    let big = json!({"n": u64::MAX, "i": i64::MIN, "x": 9_007_199_254_740_993_i64});
    assert!(m("n eq 18446744073709551615", &big));
    assert!(m("i eq -9223372036854775808", &big));
    assert!(m("i lt -9223372036854775807", &big));
    // exact, not via f64: 2^53 + 1 differs from the float 2^53
    assert!(!m("x eq 9007199254740992.0", &big));
    assert!(m("x gt 9007199254740992.0", &big));
    assert!(m("x lt 9007199254740993.5", &big));
}

#[test]
fn co_and_sw() {
    let u = user();
    assert!(m(r#"mail co "EXAMPLE""#, &u));
    assert!(m(r#"mail co "@ex""#, &u));
    assert!(m(r#"mail co """#, &u));
    assert!(!m(r#"mail co "examples""#, &u));
    assert!(m(r#"mail sw "BJ""#, &u));
    assert!(m(r#"mail sw """#, &u));
    assert!(!m(r#"mail sw "jensen""#, &u));
    assert!(m(r#"unicode co "straße""#, &u));
    assert!(m(r#"unicode co "ΣΊΣ""#, &u));
    assert!(m(r#"unicode sw "äRGER""#, &u));
    assert!(!m(r#"unicode sw "rger""#, &u));
    assert!(!m(r#"unicode co "straßex""#, &u));
    // co/sw only apply to strings
    assert!(!m("age co 4", &u));
    assert!(!m("age sw 4", &u));
    assert!(!m("active co true", &u));
}

#[test]
fn ordering_operators() {
    let u = user();
    for (f, want) in [
        ("age lt 43", true),
        ("age lt 42", false),
        ("age le 42", true),
        ("age le 41.9", false),
        ("age gt 41.5", true),
        ("age gt 42", false),
        ("age ge 42", true),
        ("age ge 42.01", false),
        ("height gt 1", true),
        ("height lt 2", true),
        (r#"userName lt "c""#, true),
        (r#"userName lt "BJENSEN""#, false),
        (r#"userName le "BJENSEN""#, true),
        (r#"userName ge "bjensen""#, true),
        (r#"userName gt "a""#, true),
        (r#"userName gt "Bz""#, false),
        (r#"userName GT "A""#, true),
        ("active gt false", true),
        ("active lt true", false),
    ] {
        assert_eq!(m(f, &u), want, "{f}");
    }
}

#[test]
fn present() {
    let u = user();
    assert!(m("userName pr", &u));
    assert!(m("userName PR", &u));
    assert!(m("name/givenName pr", &u));
    assert!(!m("manager pr", &u));
    assert!(!m("nope pr", &u));
    assert!(m("roles pr", &u));
    assert!(!m("empty pr", &u));
    assert!(!m("nulls pr", &u));
    assert!(m("active pr", &u));
}

#[test]
fn fields_of_array_elements_match_any_element() {
    let e = serde_json::json!({"changes": [
        {"attribute": "/cn", "after": "A"},
        {"attribute": "/mail", "after": "a@x"}
    ]});
    assert!(m(r#"changes/attribute eq "/mail""#, &e));
    assert!(m(r#"changes/attribute eq "/cn""#, &e));
    assert!(!m(r#"changes/attribute eq "/sn""#, &e));
    assert!(m(r#"changes/1/attribute eq "/mail""#, &e));
    assert!(!m(r#"changes/0/attribute eq "/mail""#, &e));
    assert!(!m(r#"changes/nothing eq "/mail""#, &e));
}

#[test]
fn arrays_match_any_element() {
    let u = user();
    assert!(m(r#"roles eq "admin""#, &u));
    assert!(m(r#"roles eq "USER""#, &u));
    assert!(!m(r#"roles eq "guest""#, &u));
    assert!(m(r#"roles co "dm""#, &u));
    assert!(m(r#"roles sw "us""#, &u));
    assert!(m("scores gt 8", &u));
    assert!(m("scores lt 2", &u));
    assert!(m("scores ge 9", &u));
    assert!(m("scores le 1", &u));
    assert!(!m("scores gt 9", &u));
    assert!(m("scores eq 5", &u));
    assert!(!m("empty eq 1", &u));
    // numeric segments index arrays
    assert!(m(r#"roles/0 eq "admin""#, &u));
    assert!(!m(r#"roles/1 eq "admin""#, &u));
    assert!(!m(r#"roles/9 eq "admin""#, &u));
    assert!(m(r#"addresses/1/city eq "bergen""#, &u));
    assert!(m("/scores/2 eq 9", &u));
}

#[test]
fn type_mismatch_is_false() {
    let u = user();
    for f in [
        r#"age eq "42""#,
        "userName eq 1",
        "active eq 1",
        r#"active eq "true""#,
        "manager eq 0",
        "name eq 1",
        r#"name eq "x""#,
        r#"age lt "z""#,
        "userName gt 0",
        "active lt 2",
    ] {
        assert!(!m(f, &u), "{f}");
    }
    // ... and their negation is true
    assert!(m(r#"!(age eq "42")"#, &u));
}

#[test]
fn missing_field_is_false() {
    let u = user();
    for op in ["eq", "co", "sw", "lt", "le", "gt", "ge"] {
        assert!(!m(&format!(r#"nope {op} "x""#), &u), "{op}");
        assert!(!m(&format!("nope {op} 1"), &u), "{op}");
        assert!(!m(&format!("name/nope/deeper {op} 1"), &u), "{op}");
        assert!(!m(&format!("userName/x {op} 1"), &u), "{op}");
    }
    assert!(m("!(x eq 1)", &u));
    assert!(m("! x eq 1", &u));
}

#[test]
fn true_false_and_extended() {
    let u = user();
    assert!(m("true", &u));
    assert!(m("TRUE", &u));
    assert!(!m("false", &u));
    assert!(!m("False", &u));
    assert!(m("(true)", &u));
    assert!(parse("!false").is_err());
    assert_eq!(p("true"), Filter::True);
    assert_eq!(p("fAlSe"), Filter::False);
    // An operator recond cannot evaluate is an error, never a filter that matches nothing.
    assert!(perr(r#"userName myOp_1.x "BJensen""#)
        .reason
        .contains("unknown operator"));
    assert!(parse(r#"!(userName foo "BJensen")"#).is_err());
    assert!(perr(r#"userName f-o "x""#).reason.contains("operator"));
    assert!(perr(r#"userName fö "x""#).reason.contains("operator"));
    // a field named true needs the slash
    assert!(m(r#"/true eq "FIELD NAMED TRUE""#, &u));
}

#[test]
fn bang_forms() {
    let u = user();
    assert!(!m(r#"!(userName eq "bjensen")"#, &u));
    assert!(!m(r#"! userName eq "bjensen""#, &u));
    assert!(m(r#"!   (userName eq "x")"#, &u));
    assert!(m("!(false)", &u));
    assert!(m("! false", &u));
    assert!(!m("!(true)", &u));
    assert!(m("!(!(true))", &u));
    assert_eq!(
        p("! a eq 1"),
        Filter::Not(Box::new(Filter::eq(Pointer::parse("a"), json!(1))))
    );
    assert_eq!(p("! a eq 1"), p("!(a eq 1)"));
    // `!a` is a pointer token and is rejected
    let e = perr("!a eq 1");
    assert_eq!(e.position, 0);
    assert!(e.reason.contains('!'), "{e}");
    // `!` applies to a primary only: `! !x` and a trailing `!` fail
    assert!(parse("! ! a eq 1").is_err());
    assert!(parse("!").is_err());
    assert!(parse("a eq 1 and !").is_err());
    assert!(parse("!)").is_err());
    // precedence: ! binds tighter than and/or
    assert!(m(r#"! userName eq "x" and age eq 42"#, &u));
    assert!(!m(r#"!(userName eq "x" or age eq 42)"#, &u));
}

#[test]
fn and_or_precedence_and_nesting() {
    let u = user();
    // and binds tighter than or
    assert!(m("age eq 1 and age eq 2 or age eq 42", &u));
    assert!(!m("age eq 1 and (age eq 2 or age eq 42)", &u));
    assert!(m("age eq 42 or age eq 2 and age eq 3", &u));
    assert_eq!(
        p("a eq 1 or b eq 2 and c eq 3"),
        Filter::Or(vec![
            Filter::eq(Pointer::parse("a"), json!(1)),
            Filter::And(vec![
                Filter::eq(Pointer::parse("b"), json!(2)),
                Filter::eq(Pointer::parse("c"), json!(3)),
            ]),
        ])
    );
    assert_eq!(
        p("a eq 1 and b eq 2 and c eq 3"),
        p("(a eq 1 and b eq 2 and c eq 3)")
    );
    assert!(matches!(p("a eq 1 and b eq 2 and c eq 3"), Filter::And(v) if v.len() == 3));
    assert_eq!(p("((((a eq 1))))"), p("a eq 1"));
    assert!(m(
        r#"(userName eq "x" or (age ge 40 and (active eq true)))"#,
        &u
    ));
    assert!(m("(age eq 42)and(active eq true)", &u));
    assert!(m("(age eq 1)or(active eq true)", &u));
}

#[test]
fn keywords_case_insensitive() {
    let u = user();
    assert!(m("age eq 1 OR age eq 42", &u));
    assert!(m("age eq 42 AND active eq true", &u));
    assert!(m("age eq 42 And active Eq TRUE", &u));
    assert!(m("age EQ 42", &u));
    assert!(m(r#"mail CO "example""#, &u));
    assert!(m(r#"mail Sw "bj""#, &u));
    assert!(m("age LT 50 aNd age GE 42 and age Le 42 and age gT 1", &u));
    assert!(m("active eq True", &u));
    assert!(m("(age eq 1) Or TRUE", &u));
}

#[test]
fn strings_quotes_and_escapes() {
    let v = json!({"s": "it's \"quoted\" \\ back", "sp": "a b (c)", "e": ""});
    assert!(m(r#"s eq "it's \"quoted\" \\ back""#, &v));
    assert!(m(r#"s eq 'it\'s "quoted" \\ back'"#, &v));
    assert!(m(r#"sp eq 'a b (c)'"#, &v));
    assert!(m(r#"sp eq "a b (c)""#, &v));
    assert!(m(r#"e eq """#, &v));
    assert!(m("e eq ''", &v));
    // backslash escapes any char
    assert_eq!(
        p(r#"x eq "\a\b""#),
        Filter::eq(Pointer::parse("x"), json!("ab"))
    );
    // errors: unterminated, lone trailing backslash
    let e = perr(r#"s eq "abc"#);
    assert_eq!(e.position, 5);
    assert!(e.reason.contains("unterminated"));
    assert!(parse(r#"s eq "abc\"#).is_err());
    assert!(parse(r"s eq 'abc\").is_err());
    assert!(parse(r#"s eq "abc\""#).is_err());
    assert!(parse(r#"s eq 'abc""#).is_err());
    // a quote inside a token does not open a string
    assert!(matches!(p(r#"a"b eq 1"#), Filter::Cmp { ptr, .. } if ptr.segments() == ["a\"b"]));
    // a string where a pointer is expected
    assert!(parse(r#""s" eq 1"#).is_err());
    // quote()
    assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    let q = format!("s eq {}", quote("it's \"quoted\" \\ back"));
    assert!(m(&q, &v));
}

#[test]
fn numbers() {
    assert_eq!(p("a eq 12"), Filter::eq(Pointer::parse("a"), json!(12)));
    assert_eq!(p("a eq -12"), Filter::eq(Pointer::parse("a"), json!(-12)));
    assert_eq!(p("a eq 1.5"), Filter::eq(Pointer::parse("a"), json!(1.5)));
    assert_eq!(
        p("a eq -0.25"),
        Filter::eq(Pointer::parse("a"), json!(-0.25))
    );
    assert_eq!(
        p("a eq 1.5e3"),
        Filter::eq(Pointer::parse("a"), json!(1500.0))
    );
    assert!(matches!(p("a eq 12"), Filter::Cmp { value: Value::Number(n), .. } if n.is_i64()));
    assert!(matches!(p("a eq 12.0"), Filter::Cmp { value: Value::Number(n), .. } if n.is_f64()));
    for bad in [
        "a eq 1e5",
        "a eq abc",
        "a eq 1.2.3",
        "a eq 1x",
        "a eq .",
        "a eq nan",
        "a eq inf",
        "a eq 1.0e999",
        "a eq 99999999999999999999999",
        "a eq null",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn pointers() {
    let u = user();
    assert_eq!(p(r#"userName eq "x""#), p(r#"/userName eq "x""#));
    assert!(m(r#"/name/givenName eq "barbara""#, &u));
    assert!(m(r#"name/familyName eq "JENSEN""#, &u));
    assert!(m("name/a~1b eq 1", &u));
    assert!(m("/name/t~0x eq 2", &u));
    assert!(!m(r#"name eq "Barbara""#, &u));

    let ptr = Pointer::parse("/a/b~1c/d~0e");
    assert_eq!(ptr.segments(), ["a", "b/c", "d~e"]);
    assert_eq!(ptr.to_string(), "/a/b~1c/d~0e");
    assert_eq!(Pointer::parse("a/b"), Pointer::parse("/a/b"));
    assert!(Pointer::parse("").is_root());
    assert_eq!(Pointer::parse("").to_string(), "");
    assert_eq!(Pointer::parse("/").segments(), [""]);
    assert_eq!(Pointer::parse("~01").segments(), ["~1"]);
    assert_eq!(Pointer::parse("a~2~").segments(), ["a~2~"]);
    assert_eq!(Pointer::parse("a~2~").to_string(), "/a~02~0");

    assert_eq!(Pointer::parse("").get(&u), Some(&u));
    assert_eq!(Pointer::parse("roles/1").get(&u), Some(&json!("user")));
    assert_eq!(Pointer::parse("roles/+1").get(&u), None);
    assert_eq!(Pointer::parse("roles/x").get(&u), None);
    assert_eq!(Pointer::parse("age/0").get(&u), None);
}

#[test]
fn pointer_set_and_remove() {
    let mut v = json!({"a": {"b": 1}, "arr": [1, 2], "s": "x", "n": null});
    Pointer::parse("a/c")
        .set(&mut v, json!(2))
        .expect("set a/c");
    Pointer::parse("x/y/z")
        .set(&mut v, json!(3))
        .expect("set x/y/z");
    Pointer::parse("n/k")
        .set(&mut v, json!(4))
        .expect("set through null");
    Pointer::parse("arr/0")
        .set(&mut v, json!(10))
        .expect("set arr/0");
    Pointer::parse("arr/2")
        .set(&mut v, json!(30))
        .expect("append arr/2");
    Pointer::parse("arr/-")
        .set(&mut v, json!(40))
        .expect("append arr/-");
    assert_eq!(
        v,
        json!({"a": {"b": 1, "c": 2}, "arr": [10, 2, 30, 40], "s": "x", "x": {"y": {"z": 3}}, "n": {"k": 4}})
    );
    assert!(Pointer::parse("").set(&mut v, json!(1)).is_err());
    assert!(Pointer::parse("s/t").set(&mut v, json!(1)).is_err());
    assert!(Pointer::parse("arr/9").set(&mut v, json!(1)).is_err());
    assert!(Pointer::parse("arr/x").set(&mut v, json!(1)).is_err());
    assert!(Pointer::parse("arr/9/x").set(&mut v, json!(1)).is_err());
    let e = Pointer::parse("s/t")
        .set(&mut v, json!(1))
        .expect_err("scalar");
    assert_eq!(e.kind, QueryErrorKind::Pointer);
    assert!(e.to_string().starts_with("Invalid pointer '/s/t'"), "{e}");

    assert_eq!(Pointer::parse("a/b").remove(&mut v), Some(json!(1)));
    assert_eq!(Pointer::parse("a/b").remove(&mut v), None);
    assert_eq!(Pointer::parse("arr/1").remove(&mut v), Some(json!(2)));
    assert_eq!(Pointer::parse("arr/7").remove(&mut v), None);
    assert_eq!(Pointer::parse("s/t").remove(&mut v), None);
    assert_eq!(Pointer::parse("").remove(&mut v), None);
    assert_eq!(v["arr"], json!([10, 30, 40]));
}

// ---------------------------------------------------------------- errors

#[test]
fn error_text_format_and_positions() {
    let e = perr(r#"userName eq"#);
    assert_eq!(
        e.to_string(),
        "Invalid query filter 'userName eq': expected a value at position 11"
    );
    assert_eq!(e.text, "userName eq");
    assert_eq!(e.position, 11);
    assert_eq!(e.reason, "expected a value");
    assert_eq!(e.kind, QueryErrorKind::Filter);

    let e = perr(r#"userName eq "x" bogus"#);
    assert_eq!(e.position, 16);
    assert_eq!(
        e.to_string(),
        "Invalid query filter 'userName eq \"x\" bogus': expected 'and', 'or' or end of filter at position 16"
    );
    // positions are char offsets, not byte offsets
    assert_eq!(perr(r#"ünï eq "ä" bogus"#).position, 11);
    assert_eq!(perr("").position, 0);
    assert_eq!(perr("   ").position, 3);
    assert_eq!(perr("userName").position, 8);
    assert_eq!(perr("userName eq 1 and").position, 17);
    assert_eq!(perr("(a eq 1").position, 7);
    assert_eq!(perr("(a eq 1 b").position, 8);
    assert_eq!(perr("a eq 1)").position, 6);
    assert_eq!(perr(")").position, 0);
    assert_eq!(perr("a eq (").position, 5);
    assert_eq!(perr("a (").position, 2);
    assert_eq!(perr("a eq 1 and and").position, 14);
    assert_eq!(perr("a eq 1 or (b pr c)").position, 16);
    // the first failure in reading order wins over a later tokenising error
    assert_eq!(perr(r#"a eq eq "unterminated"#).position, 5);
    assert!(std::error::Error::source(&e).is_none());
}

#[test]
fn depth_limit() {
    let ok = format!("{}a eq 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert_eq!(p(&ok), p("a eq 1"));
    let deep = format!(
        "{}a eq 1{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    let e = perr(&deep);
    assert_eq!(e.position, MAX_DEPTH);
    assert!(e.reason.contains("nested"));
    let nots = format!("{}a eq 1{}", "!(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(p(&nots).matches(&json!({"a": 1})));
    // very deep input fails cleanly instead of overflowing the stack
    let huge = "(".repeat(500_000);
    assert!(perr(&huge).reason.contains("nested"));
    let huge = "!(".repeat(300_000);
    assert!(parse(&huge).is_err());
}

#[test]
fn length_limit() {
    let long = format!(r#"a eq "{}""#, "x".repeat(MAX_FILTER_LEN));
    let e = perr(&long);
    assert!(e.reason.contains("1 MiB"));
    assert_eq!(e.position, 0);
    let fits = format!(r#"a eq "{}""#, "x".repeat(MAX_FILTER_LEN - 10));
    assert!(parse(&fits).is_ok());
}

// ---------------------------------------------------------------- display

#[test]
fn display_round_trip() {
    for text in [
        r#"userName eq "x""#,
        r#"userName eq 'it\'s'"#,
        r#"a eq "q\"uote\\d""#,
        "a eq 1 and b eq 2",
        "a eq 1 or b eq 2 and c eq 3",
        "(a eq 1 or b eq 2) and !(c pr)",
        "! a eq 1",
        "!(a eq 1 and b eq 2)",
        "!(!(!(x pr)))",
        "true",
        "false",
        "!(true) or FALSE",
        "a gt 1.5 and b lt -2 and c ge 0.000001 and d le 1.0e300",
        "a eq 1.0e300",
        "a eq 123456789.0e-300",
        "a eq 18446744073709551615",
        "a eq -9223372036854775808",
        "a co 'x' or a sw \"y\" or b eq TRUE or c eq false",
        "/true eq 1 and /and eq 2 and /or pr and /pr pr",
        "name/a~1b eq 1 and /x~0y/0 eq 2 and // eq 3 and / eq 4",
        r#"a"b eq 'c' and d' eq "e""#,
        "((a eq 1 and b eq 2) and c eq 3)",
        "ü/ß eq 'ΣΊΣ'",
    ] {
        let f = p(text);
        let shown = f.to_string();
        assert_eq!(parse(&shown), Ok(f.clone()), "{text} -> {shown}");
    }
    assert_eq!(p(r#"userName EQ 'x'"#).to_string(), r#"/userName eq "x""#);
    assert_eq!(p("a eq 1 and b pr").to_string(), "(/a eq 1 and /b pr)");
    assert_eq!(p("!(a eq 1)").to_string(), "!(/a eq 1)");
    assert_eq!(
        p("!(a eq 1 or b eq 1)").to_string(),
        "!(/a eq 1 or /b eq 1)"
    );
    assert_eq!(p("a eq 2.0").to_string(), "/a eq 2.0");
    assert_eq!(
        Filter::eq(Pointer::parse("a"), json!("x")).to_string(),
        r#"/a eq "x""#
    );
}

#[test]
fn equality_terms() {
    let f = p(r#"a eq "x""#);
    assert_eq!(
        f.equality_terms(),
        vec![(&Pointer::parse("a"), &json!("x"))]
    );
    let f = p(r#"a eq "x" and b gt 1 and c eq 2 and (d eq 3 or e eq 4)"#);
    let terms = f.equality_terms();
    assert_eq!(terms.len(), 2);
    assert_eq!(terms[0], (&Pointer::parse("a"), &json!("x")));
    assert_eq!(terms[1], (&Pointer::parse("c"), &json!(2)));
    assert!(p("a eq 1 or b eq 2").equality_terms().is_empty());
    assert!(p("!(a eq 1)").equality_terms().is_empty());
    assert!(p("a gt 1").equality_terms().is_empty());
    assert!(Filter::True.equality_terms().is_empty());
}

#[test]
fn hand_built_filters() {
    let v = json!({"a": 1});
    assert!(Filter::And(vec![]).matches(&v));
    assert!(!Filter::Or(vec![]).matches(&v));
    assert_eq!(Filter::And(vec![]).to_string(), "true");
    assert_eq!(Filter::Or(vec![]).to_string(), "false");
    assert!(Filter::eq(Pointer::parse("/a"), json!(1.0)).matches(&v));
    // null / structured values never match and still display
    assert!(!Filter::eq(Pointer::parse("a"), Value::Null).matches(&json!({"a": null})));
    assert_eq!(
        Filter::eq(Pointer::parse("a"), Value::Null).to_string(),
        "/a eq null"
    );
    assert_eq!(CmpOp::from_name("GE"), Some(CmpOp::Ge));
    assert_eq!(CmpOp::from_name("pr"), None);
}

// ---------------------------------------------------------------- sorting and fields

#[test]
fn compare_values_order() {
    let ordered = [
        json!(null),
        json!(false),
        json!(true),
        json!(-5),
        json!(-4.5),
        json!(0),
        json!(1),
        json!(1.5),
        json!(u64::MAX),
        json!(1e300),
        json!(""),
        json!("a"),
        json!("B"),
        json!("b"),
        json!("ä"),
        json!([]),
        json!([1]),
        json!([1, 2]),
        json!([2]),
        json!({}),
        json!({"a": 1}),
        json!({"a": 2}),
        json!({"b": 0}),
    ];
    for (i, x) in ordered.iter().enumerate() {
        for (j, y) in ordered.iter().enumerate() {
            assert_eq!(compare_values(x, y), i.cmp(&j), "{x} vs {y}");
        }
    }
    assert_eq!(compare_values(&json!(1), &json!(1.0)), Ordering::Equal);
    assert_eq!(compare_values(&json!(-0.0), &json!(0)), Ordering::Equal);
}

#[test]
fn sort_keys_and_sort_cmp() {
    let keys = parse_sort_keys("a,-b,+c").expect("valid sort keys");
    assert_eq!(
        keys,
        vec![
            SortKey {
                ptr: Pointer::parse("a"),
                descending: false
            },
            SortKey {
                ptr: Pointer::parse("b"),
                descending: true
            },
            SortKey {
                ptr: Pointer::parse("c"),
                descending: false
            },
        ]
    );
    assert_eq!(
        parse_sort_keys(" name/given , -x").expect("spaces").len(),
        2
    );
    let e = parse_sort_keys("a,,b").expect_err("empty entry");
    assert_eq!(e.position, 2);
    assert_eq!(e.kind, QueryErrorKind::SortKeys);
    assert_eq!(
        e.to_string(),
        "Invalid sort keys 'a,,b': empty sort key at position 2"
    );
    assert!(parse_sort_keys("").is_err());
    assert!(parse_sort_keys("a,-").is_err());
    assert!(parse_sort_keys("+").is_err());
    assert!(parse_sort_keys("a,").is_err());

    let mut rows = [
        json!({"_id": "1", "n": "bob", "age": 30}),
        json!({"_id": "2", "n": "Alice", "age": 30}),
        json!({"_id": "3", "age": 25}),
        json!({"_id": "4", "n": "alice", "age": 40}),
        json!({"_id": "5", "n": null, "age": 40}),
    ];
    let ids = |rows: &[Value]| {
        rows.iter()
            .map(|r| r["_id"].as_str().unwrap_or("?").to_string())
            .collect::<Vec<_>>()
    };
    rows.sort_by(|a, b| sort_cmp(a, b, &parse_sort_keys("n,_id").expect("keys")));
    assert_eq!(ids(&rows), ["3", "5", "2", "4", "1"]);
    rows.sort_by(|a, b| sort_cmp(a, b, &parse_sort_keys("-n,_id").expect("keys")));
    assert_eq!(ids(&rows), ["1", "4", "2", "3", "5"]);
    rows.sort_by(|a, b| sort_cmp(a, b, &parse_sort_keys("-age,+n").expect("keys")));
    assert_eq!(ids(&rows), ["5", "4", "2", "1", "3"]);
    assert_eq!(sort_cmp(&rows[0], &rows[1], &[]), Ordering::Equal);
}

#[test]
fn fields_and_project() {
    assert!(parse_fields("").is_empty());
    assert!(parse_fields("*").is_empty());
    assert!(parse_fields("a,*").is_empty());
    assert_eq!(
        parse_fields("_id, userName,,name/given"),
        vec![
            Pointer::parse("_id"),
            Pointer::parse("userName"),
            Pointer::parse("name/given")
        ]
    );
    let u = user();
    assert_eq!(project(&u, &[]), u);
    assert_eq!(
        project(
            &u,
            &parse_fields("userName,name/givenName,name/familyName,nope,name/nope")
        ),
        json!({"_id": "u1", "_rev": "3", "userName": "BJensen",
               "name": {"givenName": "Barbara", "familyName": "Jensen"}})
    );
    assert_eq!(
        project(&u, &parse_fields("addresses/0/city,age")),
        json!({"_id": "u1", "_rev": "3", "age": 42, "addresses": [{"city": "Oslo"}, {"city": "Bergen"}]})
    );
    assert_eq!(
        project(&u, &parse_fields("name/givenName,name")),
        json!({"_id": "u1", "_rev": "3", "name": u["name"].clone()})
    );
    assert_eq!(
        project(&u, &parse_fields("age/x,manager")),
        json!({"_id": "u1", "_rev": "3", "manager": null})
    );
    assert_eq!(project(&json!({"a": 1}), &parse_fields("b")), json!({}));
    assert_eq!(project(&json!([1]), &parse_fields("b")), json!([1]));
}

// ---------------------------------------------------------------- robustness

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn randomized_robustness() {
    const ALPHABET: &[&str] = &[
        " ",
        " ",
        " ",
        "(",
        ")",
        "!",
        "! ",
        "!(",
        "\"",
        "'",
        "\\",
        "\\\"",
        "\\'",
        "and",
        "or",
        "AND",
        "Or",
        "pr",
        "PR",
        "true",
        "false",
        "TRUE",
        "eq",
        "EQ",
        "co",
        "sw",
        "lt",
        "le",
        "gt",
        "ge",
        "ext.op",
        "userName",
        "/name/givenName",
        "roles",
        "age",
        "/",
        "~0",
        "~1",
        "0",
        "1",
        "42",
        "-3",
        ".",
        "1.5",
        "e5",
        "\"BJensen\"",
        "'x'",
        "\"a b\"",
        "ü",
        "Σ",
        "ß",
        "é",
        "\u{1F600}",
        "\t",
        "\n",
        "\u{0}",
        "x",
    ];
    let objects = [
        user(),
        json!({}),
        json!(null),
        json!([1, 2]),
        json!({"userName": ["a", {"b": 1}], "age": "42", "roles": null}),
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut parsed = 0;
    for _ in 0..20_000 {
        let mut text = String::new();
        if rng.below(2) == 0 {
            // pure token soup
            for _ in 0..1 + rng.below(14) {
                text.push_str(ALPHABET[rng.below(ALPHABET.len())]);
                if rng.below(3) > 0 {
                    text.push(' ');
                }
            }
        } else {
            // a valid filter with a few random insertions/deletions at char boundaries
            text = gen_filter(&mut rng, 2);
            for _ in 0..1 + rng.below(3) {
                let bounds: Vec<usize> = text
                    .char_indices()
                    .map(|(i, _)| i)
                    .chain([text.len()])
                    .collect();
                let at = bounds[rng.below(bounds.len())];
                if rng.below(2) == 0 {
                    text.insert_str(at, ALPHABET[rng.below(ALPHABET.len())]);
                } else if let Some(next) = bounds.iter().find(|b| **b > at) {
                    text.replace_range(at..*next, "");
                }
            }
        }
        match parse(&text) {
            Ok(f) => {
                parsed += 1;
                for o in &objects {
                    let _ = f.matches(o);
                }
                let _ = f.equality_terms();
                let shown = f.to_string();
                assert_eq!(parse(&shown), Ok(f.clone()), "{text:?} -> {shown:?}");
            }
            Err(e) => {
                assert!(e.position <= text.chars().count(), "{e}");
                assert!(e.to_string().starts_with("Invalid query filter '"));
            }
        }
        let _ = parse_sort_keys(&text).map(|k| {
            objects.iter().for_each(|o| {
                let _ = sort_cmp(o, &objects[0], &k);
            })
        });
        let _ = project(&objects[0], &parse_fields(&text));
    }
    // the alphabet produces a useful share of valid filters
    assert!(parsed > 2_000, "only {parsed} random filters parsed");

    // structured generation: always-valid filters round-trip and evaluate
    let mut rng = XorShift(12345);
    for _ in 0..2_000 {
        let text = gen_filter(&mut rng, 0);
        let f = p(&text);
        for o in &objects {
            let _ = f.matches(o);
        }
        assert_eq!(parse(&f.to_string()), Ok(f.clone()), "{text}");
    }
}

fn gen_filter(rng: &mut XorShift, depth: usize) -> String {
    const PTRS: &[&str] = &[
        "userName",
        "/age",
        "roles",
        "name/givenName",
        "scores/1",
        "x~1y",
        "nope",
    ];
    const OPS: &[&str] = &["eq", "co", "sw", "lt", "le", "gt", "ge", "EQ", "Ge"];
    const VALUES: &[&str] = &[
        "\"bjensen\"",
        "'Admin'",
        "42",
        "1.85",
        "-1",
        "true",
        "FALSE",
        "\"\"",
        "\"a\\\"b\"",
        "0.5e2",
    ];
    let pick = |rng: &mut XorShift, xs: &[&str]| xs[rng.below(xs.len())].to_string();
    match if depth > 4 {
        rng.below(3)
    } else {
        rng.below(7)
    } {
        0 => format!(
            "{} {} {}",
            pick(rng, PTRS),
            pick(rng, OPS),
            pick(rng, VALUES)
        ),
        1 => format!("{} pr", pick(rng, PTRS)),
        2 => pick(rng, &["true", "false", "True"]),
        3 => format!(
            "({} and {})",
            gen_filter(rng, depth + 1),
            gen_filter(rng, depth + 1)
        ),
        4 => format!(
            "{} or {}",
            gen_filter(rng, depth + 1),
            gen_filter(rng, depth + 1)
        ),
        5 => format!("!({})", gen_filter(rng, depth + 1)),
        _ => format!("! {} eq 1", pick(rng, PTRS)),
    }
}

#[test]
fn evaluation_does_not_clone_inputs() {
    // Smoke test of the hot path on a small object: many evaluations complete quickly and
    // agree with a single evaluation (allocation-freedom is by construction: borrowed lookups
    // and iterator comparisons only).
    let u = user();
    let f = p(r#"userName eq "bjensen" and age ge 40 and roles eq "ADMIN""#);
    let mut hits = 0;
    for _ in 0..10_000 {
        if f.matches(&u) {
            hits += 1;
        }
    }
    assert_eq!(hits, 10_000);
}

#[test]
fn a_pointer_reads_the_same_in_a_map_as_in_its_value() {
    let v = json!({"mail": "a@x", "name": {"given": "Ann"}, "tags": ["x", "y"]});
    let m = v.as_object().expect("an object");
    for ptr in [
        "mail",
        "name/given",
        "tags/1",
        "missing",
        "name/missing",
        "tags/7",
    ] {
        let ptr = Pointer::parse(ptr);
        assert_eq!(ptr.get_in(m), ptr.get(&v), "{ptr}");
    }
    assert_eq!(
        Pointer::root().get_in(m),
        None,
        "the root is no member of the map"
    );
}
