//! Property tests of the filter parser (bounded: a fixed number of cases per property).

use proptest::prelude::*;

use super::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Filter text built from the grammar's pieces, valid or not.
fn filter_text() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("true".to_string()),
        Just("false".to_string()),
        (
            "[a-z/~0-9]{1,8}",
            "eq|co|sw|lt|le|gt|ge|pr|EQ",
            r#""[^"\\]{0,6}"|-?[0-9]{1,4}|true|'x'"#
        )
            .prop_map(|(p, o, v)| if o == "pr" {
                format!("{p} pr")
            } else {
                format!("{p} {o} {v}")
            }),
    ];
    atom.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} and {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} or {b}")),
            inner.prop_map(|a| format!("!({a})")),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_parser_never_panics(text in "\\PC{0,60}") {
        let _ = parse(&text);
    }

    #[test]
    fn the_parser_never_panics_on_near_grammar(text in "[a-z()!\"' /~0-9]{0,40}( and | or | eq | pr )?[a-z()\"'0-9]{0,20}") {
        let _ = parse(&text);
    }

    #[test]
    fn printing_and_parsing_round_trip(text in filter_text()) {
        if let Ok(f) = parse(&text) {
            let shown = f.to_string();
            prop_assert_eq!(parse(&shown), Ok(f), "{} -> {}", text, shown);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// `pointer::field` (a scan in key order up to 16 keys, a hash lookup above) finds what
    /// the map's own lookup finds, on both sides of the bound, for keys present and absent.
    #[test]
    fn field_finds_what_the_map_finds(
        keys in proptest::collection::vec("[a-e]{0,3}", 0..40),
        probe in "[a-e]{0,3}",
    ) {
        let mut m = serde_json::Map::new();
        for (i, k) in keys.iter().enumerate() {
            m.insert(k.clone(), serde_json::Value::from(i));
        }
        prop_assert_eq!(super::pointer::field(&m, &probe), m.get(&probe));
        for k in &keys {
            prop_assert_eq!(super::pointer::field(&m, k), m.get(k));
        }
    }
}
