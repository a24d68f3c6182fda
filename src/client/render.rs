//! What the client prints: the situations × actions table of a run, the run list, the short
//! text of one run, and association entries as a table, CSV or JSON. Pure functions from JSON
//! to text, so they are tested without a server.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use serde_json::Value;

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn table() -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t
}

/// Rows: the situations that occurred (with their count); columns: the actions taken (or
/// planned, in an analysis run). Built from `situationActions`, with `situationSummary` for
/// situations no action was counted for.
pub fn situations_by_actions(summary: &Value) -> String {
    let cells = summary
        .get("situationActions")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut actions: Vec<String> = Vec::new();
    for row in cells.values().filter_map(Value::as_object) {
        for a in row.keys() {
            if !actions.contains(a) {
                actions.push(a.clone());
            }
        }
    }
    let mut t = table();
    let mut header = vec![Cell::new("situation"), Cell::new("total")];
    header.extend(actions.iter().map(Cell::new));
    t.set_header(header);
    let mut any = false;
    if let Some(situations) = summary.get("situationSummary").and_then(Value::as_object) {
        for (situation, n) in situations {
            let n = n.as_u64().unwrap_or(0);
            if n == 0 {
                continue;
            }
            any = true;
            let row = cells.get(situation).and_then(Value::as_object);
            let mut r = vec![
                Cell::new(situation),
                Cell::new(n).set_alignment(CellAlignment::Right),
            ];
            for a in &actions {
                let c = row
                    .and_then(|r| r.get(a))
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                r.push(Cell::new(c).set_alignment(CellAlignment::Right));
            }
            t.add_row(r);
        }
    }
    if !any {
        return "no entries were reconciled\n".to_string();
    }
    format!("{t}\n")
}

/// One line of progress, for pipes and logs.
pub fn progress_line(summary: &Value) -> String {
    let p = &summary["progress"];
    let processed = p["source"]["existing"]["processed"].as_u64().unwrap_or(0);
    let total = text(&p["source"]["existing"]["total"]);
    let failures = summary["statusSummary"]["FAILURE"].as_u64().unwrap_or(0);
    format!(
        "{} {} source {processed}/{total} target {} created {} updated {} deleted {} failed {failures}",
        text(&summary["stage"]),
        text(&summary["state"]),
        p["target"]["existing"]["processed"].as_u64().unwrap_or(0),
        p["target"]["created"].as_u64().unwrap_or(0),
        p["target"]["updated"].as_u64().unwrap_or(0),
        p["target"]["deleted"].as_u64().unwrap_or(0),
    )
}

/// The end of a run: its state, counts, message, and the situations × actions table.
pub fn run_report(summary: &Value) -> String {
    let mut out = format!(
        "run {} of {}: {} ({}) in {} ms\n",
        text(&summary["_id"]),
        text(&summary["mapping"]),
        text(&summary["state"]),
        text(&summary["stage"]),
        text(&summary["duration"]),
    );
    if summary.get("analyze") == Some(&Value::Bool(true)) {
        out.push_str("analysis run: the actions below were planned, none was executed\n");
    }
    let status = &summary["statusSummary"];
    out.push_str(&format!(
        "entries: {} succeeded, {} failed\n",
        status["SUCCESS"].as_u64().unwrap_or(0),
        status["FAILURE"].as_u64().unwrap_or(0)
    ));
    if let Some(m) = summary.get("message").and_then(Value::as_str) {
        out.push_str(&format!("message: {m}\n"));
    }
    out.push_str(&situations_by_actions(summary));
    out
}

/// `recond recon list`.
pub fn run_list(runs: &[Value]) -> String {
    if runs.is_empty() {
        return "no runs\n".to_string();
    }
    let mut t = table();
    t.set_header(vec![
        "run id", "mapping", "state", "stage", "started", "ended", "source", "failed",
    ]);
    for r in runs {
        t.add_row(vec![
            text(&r["_id"]),
            text(&r["mapping"]),
            text(&r["state"]),
            text(&r["stage"]),
            text(&r["started"]),
            text(&r["ended"]),
            text(&r["progress"]["source"]["existing"]["processed"]),
            text(&r["statusSummary"]["FAILURE"]),
        ]);
    }
    format!("{t}\n")
}

const ENTRY_COLUMNS: [&str; 7] = [
    "situation",
    "action",
    "status",
    "sourceObjectId",
    "targetObjectId",
    "linkQualifier",
    "message",
];

fn change_lines(entry: &Value) -> Vec<String> {
    let Some(changes) = entry.get("changes").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut lines: Vec<String> = changes
        .iter()
        .map(|c| {
            format!(
                "  {}: {} -> {}",
                text(&c["attribute"]),
                c.get("before").unwrap_or(&Value::Null),
                c.get("after").unwrap_or(&Value::Null)
            )
        })
        .collect();
    if entry.get("changesTruncated") == Some(&Value::Bool(true)) {
        lines.push("  (changes truncated)".to_string());
    }
    lines
}

/// Association entries as a table; with `diff`, each entry's changes under it.
pub fn entries_table(entries: &[Value], diff: bool) -> String {
    if entries.is_empty() {
        return "no entries\n".to_string();
    }
    let mut t = table();
    t.set_header(ENTRY_COLUMNS.to_vec());
    for e in entries {
        t.add_row(
            ENTRY_COLUMNS
                .iter()
                .map(|c| text(&e[*c]))
                .collect::<Vec<_>>(),
        );
        if diff {
            let lines = change_lines(e);
            if !lines.is_empty() {
                let mut row = vec![String::new(); ENTRY_COLUMNS.len()];
                row[0] = "changes".to_string();
                row[ENTRY_COLUMNS.len() - 1] = lines.join("\n");
                t.add_row(row);
            }
        }
    }
    format!("{t}\n")
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Association entries as CSV (header line first); with `diff`, a `changes` column holding
/// the entry's changes as JSON.
pub fn entries_csv(entries: &[Value], diff: bool) -> String {
    let mut header: Vec<&str> = ENTRY_COLUMNS.to_vec();
    if diff {
        header.push("changes");
    }
    let mut out = header.join(",") + "\n";
    for e in entries {
        let mut row: Vec<String> = ENTRY_COLUMNS
            .iter()
            .map(|c| csv_field(&text(&e[*c])))
            .collect();
        if diff {
            row.push(csv_field(
                &e.get("changes").map(Value::to_string).unwrap_or_default(),
            ));
        }
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_has_a_row_per_situation_and_a_column_per_action() {
        let s = json!({
            "situationSummary": {"ABSENT": 2, "CONFIRMED": 1, "FOUND": 0},
            "situationActions": {"ABSENT": {"CREATE": 2}, "CONFIRMED": {"UPDATE": 1}},
        });
        let t = situations_by_actions(&s);
        assert!(
            t.contains("ABSENT") && t.contains("CREATE") && t.contains("UPDATE"),
            "{t}"
        );
        assert!(!t.contains("FOUND"), "{t}");
        assert_eq!(
            situations_by_actions(&json!({"situationSummary": {"ABSENT": 0}})),
            "no entries were reconciled\n"
        );
    }

    #[test]
    fn csv_quotes_and_diff_lines() {
        let e = json!({"situation": "ABSENT", "action": "CREATE", "message": "a, \"b\"",
                       "changes": [{"attribute": "/mail", "before": null, "after": "x@y"}]});
        let csv = entries_csv(std::slice::from_ref(&e), true);
        assert!(csv.contains("\"a, \"\"b\"\"\""), "{csv}");
        assert!(entries_table(&[e], true).contains("/mail: null -> \"x@y\""));
    }
}
