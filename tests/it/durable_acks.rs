//! An acknowledged REST write survives a crash: the server answers a create, update, patch or
//! delete (and the implicit synchronization it caused) only once the change is durable, so a
//! SIGKILL right after the answer loses nothing. The store's background flush is switched
//! off here (`flush_every_ms = 0`), so only the write path itself can make the changes
//! durable: without it, every change below would be lost.

use serde_json::json;

use crate::helpers::*;

const CONFIG: &str = r#"
mappings_file = "conf/sync.json"

[storage]
flush_every_ms = 0

[managed.user]
indexed = ["userName"]

[managed.device]

[system.lab.account]
connector = "store"
"#;

fn mappings() -> String {
    json!({"mappings": [{
        "name": "user_lab", "source": "managed/user", "target": "system/lab/account",
        "properties": [{"source": "userName", "target": "_id"}, {"source": "sn", "target": "sn"}],
        "policies": [
            {"situation": "ABSENT", "action": "CREATE"},
            {"situation": "CONFIRMED", "action": "UPDATE"},
            {"situation": "SOURCE_MISSING", "action": "DELETE"}
        ]
    }]})
    .to_string()
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let sync = mappings();
    let mut s = Server::start(CONFIG, &[("conf/sync.json", &sync)]);
    for i in 0..10 {
        let r = s.put(
            &format!("/openidm/managed/user/u{i}"),
            &json!({"userName": format!("user{i}"), "sn": "One"}),
            &[],
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = s.request(
        "PATCH",
        "/openidm/managed/user/u1",
        Some(&json!([{"operation": "replace", "field": "sn", "value": "Two"}])),
        &[],
        Auth::Admin,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.delete("/openidm/managed/user/u2");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.post(
        "/openidm/managed/user?_action=create",
        Some(&json!({"_id": "u10", "userName": "user10", "sn": "One"})),
    );
    assert!(r.status == 201 || r.status == 200, "{}", r.body);

    // A set no mapping reads from: nothing but the write path can make these durable.
    for i in 0..3 {
        let r = s.put(
            &format!("/openidm/managed/device/d{i}"),
            &json!({"serial": format!("s{i}")}),
            &[],
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = s.delete("/openidm/managed/device/d0");
    assert_eq!(r.status, 200, "{}", r.body);

    s.kill();
    s.start_again();

    for i in (0..11).filter(|i| *i != 2) {
        let r = s.get(&format!("/openidm/managed/user/u{i}"));
        assert_eq!(r.status, 200, "managed/user/u{i} lost: {}", r.body);
        let t = s.get(&format!("/openidm/system/lab/account/user{i}"));
        assert_eq!(t.status, 200, "its target user{i} lost: {}", t.body);
    }
    assert_eq!(s.get("/openidm/managed/user/u1").body["sn"], "Two");
    assert_eq!(s.get("/openidm/system/lab/account/user1").body["sn"], "Two");
    assert_eq!(s.get("/openidm/managed/user/u2").status, 404, "delete lost");
    assert_eq!(
        s.get("/openidm/system/lab/account/user2").status,
        404,
        "the delete's synchronized target delete lost"
    );
    assert_eq!(
        s.get("/openidm/managed/device/d0").status,
        404,
        "delete lost"
    );
    for i in 1..3 {
        let r = s.get(&format!("/openidm/managed/device/d{i}"));
        assert_eq!(r.status, 200, "managed/device/d{i} lost: {}", r.body);
    }
    let links = s.query("/openidm/repo/link", "linkType eq \"user_lab\"");
    assert_eq!(links["resultCount"], 10, "{links}");
}

mod on_postgres {
    crate::helpers::on_postgres_too!(acknowledged_writes_survive_sigkill);
}
