//! Hostile clients and poisoned data, through the real binary: nesting depth on every way in,
//! password-guessing that cannot exhaust the server, slow bodies, curl-style URLs, error bodies
//! that leak nothing, and mistakes caught before a run exists.

use serde_json::{json, Value};

use crate::helpers::*;

const SETS: &str = r#"
[managed.user]
indexed = ["userName"]
"#;

fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |v, _| json!({ "n": v }))
}

#[test]
fn nothing_nested_too_deep_gets_in() {
    let s = Server::start(SETS, &[]);
    let r = s.put("/openidm/managed/user/u1", &json!({"userName": "a"}), &[]);
    assert_eq!(r.status, 201, "{}", r.body);

    // A 5,000-segment field path.
    let path = "/x".repeat(5000);
    let patch = json!([{"operation": "add", "field": path, "value": 1}]);
    let r = s.request(
        "PATCH",
        "/openidm/managed/user/u1",
        Some(&patch),
        &[],
        Auth::Admin,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("segments"),
        "{}",
        r.body
    );

    // A deep value: 100 levels parse (under serde_json's 128) but exceed recond's limit.
    let patch = json!([{"operation": "add", "field": "/deep", "value": nested(100)}]);
    let r = s.request(
        "PATCH",
        "/openidm/managed/user/u1",
        Some(&patch),
        &[],
        Auth::Admin,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["message"].as_str().unwrap_or("").contains("deeper"),
        "{}",
        r.body
    );

    // A deep body on PUT and on create.
    let r = s.put(
        "/openidm/managed/user/u2",
        &json!({"deep": nested(100)}),
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = s.post(
        "/openidm/managed/user?_action=create",
        Some(&json!({"deep": nested(100)})),
    );
    assert_eq!(r.status, 400, "{}", r.body);

    // Many patches, each fine, together too deep.
    let mut field = String::new();
    for _ in 0..70 {
        field.push_str("/p");
        let patch = json!([{"operation": "add", "field": field, "value": {}}]);
        let r = s.request(
            "PATCH",
            "/openidm/managed/user/u1",
            Some(&patch),
            &[],
            Auth::Admin,
        );
        if r.status != 200 {
            assert_eq!(r.status, 400, "{}", r.body);
            break;
        }
    }
    // Everything stored stays readable, alone and in a query.
    let r = s.get("/openidm/managed/user/u1");
    assert_eq!(r.status, 200, "{}", r.body);
    let q = s.query("/openidm/managed/user", "true");
    assert_eq!(q["resultCount"], 1, "{q}");
    let r = s.delete("/openidm/managed/user/u1");
    assert_eq!(r.status, 200, "{}", r.body);
}
