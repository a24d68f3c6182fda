//! `GET /openidm/metrics/prometheus` and `/openidm/metrics/api` (contract §8): the API's
//! credentials, IDM's `idm_recon_*` names per mapping, and recond's own figures.

use serde_json::json;

use crate::helpers::*;

const LAB: &str = r#"
[managed.user]
[system.lab.account]
connector = "store"
[[mappings]]
name = "lab"
source = "system/lab/account"
target = "managed/user"
properties = [ { source = "userName", target = "userName" } ]
"#;

#[test]
fn prometheus_scrape_shows_runs_entries_store_and_requests() {
    let s = Server::start(LAB, &[]);
    let anonymous = s.request("GET", "/openidm/metrics/prometheus", None, &[], Auth::None);
    assert_eq!(anonymous.status, 401);
    for id in ["a", "b"] {
        let r = s.put(
            &format!("/openidm/system/lab/account/{id}"),
            &json!({"userName": id}),
            &[],
        );
        assert_eq!(r.status, 201);
    }
    let run = s.run("lab", "");
    assert_eq!(run["state"], "SUCCESS");
    let r = s.get("/openidm/metrics/prometheus");
    assert_eq!(r.status, 200);
    assert!(
        r.header("Content-Type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        r.headers
    );
    let text = r.body.as_str().expect("a text body").to_string();
    for expected in [
        "idm_recon_seconds_count{mapping=\"lab\"} 1",
        "idm_recon_source_phase_seconds_count{mapping=\"lab\"} 1",
        "idm_recon_id_queries_seconds_count{mapping=\"lab\",phase=\"target\"} 1",
        "recond_recon_runs_total{mapping=\"lab\",state=\"SUCCESS\"} 1",
        "recond_recon_entries_total{mapping=\"lab\",situation=\"ABSENT\",action=\"CREATE\"} 2",
        "recond_recon_entry_status_total{mapping=\"lab\",status=\"SUCCESS\"} 2",
        "recond_recon_entry_status_total{mapping=\"lab\",status=\"FAILURE\"} 0",
        "recond_recon_runs_active 0",
        "recond_http_request_duration_seconds_count{method=\"PUT\",code=\"201\"} 2",
    ] {
        assert!(text.contains(expected), "{expected} missing in:\n{text}");
    }
    let store = text
        .lines()
        .find_map(|l| l.strip_prefix("recond_store_size_bytes "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("a store size line");
    assert!(store > 0, "the store has data on disk:\n{text}");

    let api = s.get("/openidm/metrics/api");
    assert_eq!(api.status, 200);
    let series = api.body["result"].as_array().expect("result");
    assert!(series.iter().any(|m| m["name"] == "idm_recon_seconds_count"
        && m["mapping"] == "lab"
        && m["value"] == json!(1.0)));
}
