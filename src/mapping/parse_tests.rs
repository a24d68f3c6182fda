//! Tests of `parse` (one mapping object).

use super::*;
use serde_json::json;
use serde_json::Value;

fn sets() -> Vec<String> {
    vec!["system/hr/account".into(), "managed/user".into()]
}

fn parse(v: Value) -> Result<Mapping, ConfigError> {
    parse_mapping(Path::new("sync.json"), &test_project(), &v, &sets())
}

#[test]
fn parses_a_typical_mapping() {
    let m = parse(json!({
        "name": "hr_user", "source": "system/hr/account", "target": "managed/user",
        "displayName": "UI only",
        "correlationQuery": {"type": "text/javascript", "file": "ui/x.js", "expressionTree": {"all": ["userName", {"any": ["mail"]}]}},
        "properties": [{"source": "email", "target": "mail"}, {"source": "", "target": "raw"}],
        "policies": [{"situation": "ABSENT", "action": "CREATE"}, {"situation": "CONFIRMED", "action": "UPDATE", "condition": "/object/x pr"}],
        "reconAssociation": {"maxNonAnalysisRunsPerMapping": 3}
    }))
    .expect("valid mapping");
    assert_eq!(m.link_type, "hr_user");
    assert!(matches!(
        m.correlation_for("default"),
        Some(Correlation::Tree(ExprTree::All(_)))
    ));
    assert!(m.properties[1]
        .source
        .as_ref()
        .is_some_and(Pointer::is_root));
    assert_eq!(m.max_runs, Some(3));
    assert!(m.prefetch_links && m.enable_linking);
}

#[test]
fn errors_name_the_mapping_and_key() {
    let e = parse(json!({"name": "m", "source": "system/nope", "target": "managed/user"}))
        .expect_err("bad set");
    assert!(e.to_string().contains("mapping \"m\": source"), "{e}");
    let e = parse(
        json!({"name": "m", "source": "system/hr/account", "target": "managed/user",
        "policies": [{"situation": "WHATEVER", "action": "CREATE"}]}),
    )
    .expect_err("bad situation");
    assert!(e.to_string().contains("policies[0].situation"), "{e}");
    let e = parse(
        json!({"name": "m", "source": "system/hr/account", "target": "managed/user",
        "policies": [{"situation": "ABSENT", "action": "MAKE"}]}),
    )
    .expect_err("bad action");
    assert!(e.to_string().contains("MAKE"), "{e}");
    let e = parse(
        json!({"name": "m", "source": "system/hr/account", "target": "managed/user",
        "validSource": {"type": "groovy", "source": "true"}}),
    )
    .expect_err("groovy");
    assert!(
        e.to_string().contains("validSource") && e.to_string().contains("groovy"),
        "{e}"
    );
    let e = parse(
        json!({"name": "m", "source": "system/hr/account", "target": "managed/user",
        "sourceQuery": {"_queryFilter": "a eq"}}),
    )
    .expect_err("bad filter");
    assert!(e.to_string().contains("sourceQuery"), "{e}");
}

#[test]
fn clustered_options_default_and_validate() {
    let base = json!({"name": "m", "source": "system/hr/account", "target": "managed/user"});
    let m = parse(base.clone()).expect("valid");
    assert!(!m.clustered);
    assert_eq!(m.source_page_size, DEFAULT_CLUSTERED_PAGE_SIZE);
    let mut c = base.clone();
    c["clusteredSourceReconEnabled"] = json!(true);
    c["reconSourceQueryPaging"] = json!(true);
    c["reconSourceQueryPageSize"] = json!(50);
    let m = parse(c.clone()).expect("valid");
    assert!(m.clustered);
    assert_eq!(m.source_page_size, 50);
    c["reconSourceQueryPageSize"] = json!(0);
    let e = parse(c.clone()).expect_err("a page of nothing");
    assert!(e.to_string().contains("reconSourceQueryPageSize"), "{e}");
    c["reconSourceQueryPageSize"] = json!(10);
    c["clusteredSourceReconEnabled"] = json!("yes");
    let e = parse(c).expect_err("not a boolean");
    assert!(e.to_string().contains("clusteredSourceReconEnabled"), "{e}");
}
